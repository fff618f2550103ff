//! A host on the concentrator's LAN (`inner = "af-xdp"`): a namespace on a veth to the
//! concentrator's namespace, routing the VPN's prefixes (10.77.0.0/16, fd77::/64) through the
//! concentrator as a LAN router would, with forwarding on in the concentrator's namespace for
//! what goes through the TUN.

use anyhow::Result;

use crate::netns::{veth_queues, Netns};

/// The concentrator's LAN address.
pub const SERVER_V4: &str = "10.202.0.1";
/// The LAN host's IPv4 address.
pub const HOST_V4: &str = "10.202.0.2";
/// The LAN host's IPv6 address.
pub const HOST_V6: &str = "fd02::2";
/// The LAN's prefixes, as clients route them into the tunnel.
pub const LAN_PREFIXES: &str = "10.202.0.0/24,fd02::/64";

/// Makes namespace `name` a LAN host on a veth (`server_if` on the concentrator's side,
/// `host_if` on its own) with `queues` queues each way.
pub fn lan_host(
    server: &Netns,
    name: &str,
    (server_if, host_if): (&str, &str),
    queues: u32,
) -> Result<Netns> {
    let ns = Netns::create(name)?;
    veth_queues(
        server,
        server_if,
        &format!("{SERVER_V4}/24"),
        &ns,
        host_if,
        &format!("{HOST_V4}/24"),
        queues,
    )?;
    // No duplicate address detection: the addresses are usable at once.
    server.ip(&["-6", "addr", "add", "fd02::1/64", "dev", server_if, "nodad"])?;
    ns.ip(&["-6", "addr", "add", "fd02::2/64", "dev", host_if, "nodad"])?;
    // A veth hands over the packets its namespace makes with the TCP and UDP checksums left
    // to offload (only a pseudo-header sum in place); XDP sees them so, and the tunnel would
    // carry them so. A frame off a wire always has them whole: make the LAN host's so.
    ns.run("ethtool", &["-K", host_if, "tx", "off"])?;
    ns.ip(&["route", "add", "10.77.0.0/16", "via", SERVER_V4])?;
    ns.ip(&["-6", "route", "add", "fd77::/64", "via", "fd02::1"])?;
    for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
        server.run("sysctl", &["-qw", key])?;
    }
    Ok(ns)
}

/// Routes the LAN's prefixes into the WireGuard interface `iface` in client namespace `ns`.
pub fn route_lan_through(ns: &Netns, iface: &str) -> Result<()> {
    ns.ip(&["route", "add", "10.202.0.0/24", "dev", iface])?;
    ns.ip(&["-6", "route", "add", "fd02::/64", "dev", iface])?;
    Ok(())
}
