//! A Layer-2 segment for several namespaces: a namespace of its own holding bridge `br0`,
//! and veth pairs from other namespaces plugged into it. Nodes that share a service address
//! (VRRP moves it by gratuitous ARP) need a segment like this; a veth pair joins only two.

use anyhow::Result;

use crate::netns::{ip, Netns};

/// A bridge in a namespace of its own; it goes (and every port with it) when dropped.
pub struct Bridge {
    /// The namespace holding `br0` and the bridge's ends of every veth pair.
    pub ns: Netns,
}

impl Bridge {
    /// Creates namespace `name` with bridge `br0` up.
    pub fn create(name: &str) -> Result<Self> {
        let ns = Netns::create(name)?;
        ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        ns.ip(&["link", "set", "br0", "up"])?;
        Ok(Self { ns })
    }

    /// Plugs `ns` in: a veth named `name` in `ns` (with `address`, if any, and up) whose
    /// other end, `port` (unique per bridge, at most 15 bytes), is a port of `br0`.
    pub fn attach(&self, ns: &Netns, name: &str, address: Option<&str>, port: &str) -> Result<()> {
        ip(&[
            "link",
            "add",
            port,
            "netns",
            self.ns.name(),
            "type",
            "veth",
            "peer",
            "name",
            name,
            "netns",
            ns.name(),
        ])?;
        self.ns.ip(&["link", "set", port, "master", "br0", "up"])?;
        if let Some(a) = address {
            ns.ip(&["addr", "add", a, "dev", name])?;
        }
        ns.ip(&["link", "set", name, "up"])?;
        Ok(())
    }
}

/// True while namespace `ns` (by name: a watcher need not own it) has `address` (without
/// its prefix) on `dev`.
pub fn holds_address(ns: &str, dev: &str, address: &str) -> bool {
    ip(&["-n", ns, "-4", "addr", "show", "dev", dev])
        .is_ok_and(|text| text.contains(&format!("inet {address}/")))
}
