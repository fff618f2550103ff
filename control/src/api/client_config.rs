//! A peer's client configuration as a `wg-quick` file: its addresses and, when the API made
//! its key pair, its private key (shown once, never stored); the server's key and endpoint;
//! what the client routes into the tunnel.

use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use proto::{PrivateKey, PublicKey};

use crate::registry::Peer;

/// What every client's configuration shares.
#[derive(Debug, Clone)]
pub struct ClientTemplate {
    /// The server's public key.
    pub server_key: PublicKey,
    /// Where clients reach the server (`host:port`).
    pub endpoint: String,
    /// What clients send into the tunnel (the pools' prefixes: a split tunnel).
    pub allowed_ips: Vec<IpNet>,
    /// DNS servers pushed to clients.
    pub dns: Vec<IpAddr>,
    /// Tunnel MTU.
    pub mtu: usize,
    /// Persistent keepalive in seconds (0 = off).
    pub keepalive: u16,
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
pub fn wg_quick(t: &ClientTemplate, peer: &Peer, private_key: Option<&PrivateKey>) -> String {
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
    if !t.dns.is_empty() {
        let _ = writeln!(s, "DNS = {}", join(&t.dns));
    }
    let _ = writeln!(s, "MTU = {}", t.mtu);
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
    let _ = writeln!(s, "AllowedIPs = {}", join(&t.allowed_ips));
    if t.keepalive > 0 {
        let _ = writeln!(s, "PersistentKeepalive = {}", t.keepalive);
    }
    s
}
