//! A peer's client configuration as a `wg-quick` file: its addresses and, when the API made
//! its key pair, its private key (shown once, never stored); the server's key and endpoint;
//! and its group's policy: what the client routes into the tunnel, DNS, MTU, keepalive.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use proto::{PrivateKey, PublicKey};

use crate::registry::PeerRecord;

/// What the configurations of one group's clients contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPolicy {
    /// What clients send into the tunnel (0.0.0.0/0 and ::/0: a full tunnel).
    pub allowed_ips: Vec<IpNet>,
    /// DNS servers pushed to clients.
    pub dns: Vec<IpAddr>,
    /// Tunnel MTU.
    pub mtu: usize,
    /// Persistent keepalive in seconds (0 = off).
    pub keepalive: u16,
}

/// What every client's configuration shares, and each group's policy.
#[derive(Debug, Clone)]
pub struct ClientTemplate {
    /// The server's public key.
    pub server_key: PublicKey,
    /// Where clients reach the server (`host:port`).
    pub endpoint: String,
    /// Why `endpoint` is a guess (`[api] endpoint` unset), said with every file handed out.
    pub guessed: Option<String>,
    /// The policy of peers whose group has none of its own (from `[api]`).
    pub default: ClientPolicy,
    /// Policies by group name (`[[group]]`).
    pub groups: HashMap<String, ClientPolicy>,
}

impl ClientTemplate {
    /// The policy for peers of `group`.
    pub fn policy(&self, group: &str) -> &ClientPolicy {
        self.groups.get(group).unwrap_or(&self.default)
    }
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `wg-quick` file for `peer`; without `private_key` the key line is a placeholder for
/// the user to fill in.
pub fn wg_quick(t: &ClientTemplate, peer: &PeerRecord, private_key: Option<&PrivateKey>) -> String {
    let policy = t.policy(&peer.group);
    let mut s = String::new();
    let _ = writeln!(s, "# xgate client configuration for {:?}", peer.name);
    let _ = writeln!(s, "[Interface]");
    match private_key {
        Some(k) => {
            let _ = writeln!(s, "PrivateKey = {}", k.to_base64());
        }
        None => {
            let _ = writeln!(
                s,
                "# The private key of the key pair whose public key is {}",
                peer.public_key
            );
            let _ = writeln!(s, "PrivateKey = <your private key>");
        }
    }
    let hosts: Vec<IpNet> = peer.addresses.iter().map(|a| IpNet::from(*a)).collect();
    let _ = writeln!(s, "Address = {}", join(&hosts));
    if !policy.dns.is_empty() {
        let _ = writeln!(s, "DNS = {}", join(&policy.dns));
    }
    let _ = writeln!(s, "MTU = {}", policy.mtu);
    let _ = writeln!(s, "\n[Peer]");
    let _ = writeln!(s, "PublicKey = {}", t.server_key);
    if let Some(psk) = &peer.preshared_key {
        let _ = writeln!(
            s,
            "PresharedKey = {}",
            proto::PresharedKey(*psk).to_base64()
        );
    }
    let _ = writeln!(s, "Endpoint = {}", t.endpoint);
    let _ = writeln!(s, "AllowedIPs = {}", join(&policy.allowed_ips));
    if policy.keepalive > 0 {
        let _ = writeln!(s, "PersistentKeepalive = {}", policy.keepalive);
    }
    s
}
