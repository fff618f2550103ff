//! A change to the interface, as both the TOML config and the UAPI `set=1` command express it.
//! One type, one apply path: a config file and `wg setconf` of the same settings do the same.

use std::net::SocketAddr;

use ipnet::IpNet;
use proto::{PresharedKey, PrivateKey, PublicKey};

/// Changes to the interface and its peers, applied in order.
#[derive(Debug, Default, Clone)]
pub struct DeviceUpdate {
    /// `Some(None)` removes the key; `Some(Some(k))` sets it.
    pub private_key: Option<Option<PrivateKey>>,
    /// New listen port (0 = any free port).
    pub listen_port: Option<u16>,
    /// New firewall mark (0 = none).
    pub fwmark: Option<u32>,
    /// Remove every peer before applying `peers`.
    pub replace_peers: bool,
    /// Per-peer changes.
    pub peers: Vec<PeerUpdate>,
}

/// Changes to one peer, named by its public key.
#[derive(Debug, Clone)]
pub struct PeerUpdate {
    /// The peer.
    pub public_key: PublicKey,
    /// Remove the peer.
    pub remove: bool,
    /// Only change an existing peer; never create one.
    pub update_only: bool,
    /// `Some(None)` removes the preshared key.
    pub preshared_key: Option<Option<PresharedKey>>,
    /// New endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive in seconds (0 = off).
    pub persistent_keepalive: Option<u16>,
    /// Clear the allowed IPs before adding `allowed_ips`.
    pub replace_allowed_ips: bool,
    /// Prefixes to add.
    pub allowed_ips: Vec<IpNet>,
    /// Prefixes to remove.
    pub remove_allowed_ips: Vec<IpNet>,
    /// Start a handshake with the peer now, as initiator, at its endpoint: a cluster node
    /// taking over a failed node's users (their clients answer at once, instead of noticing
    /// the dead server only after about 15 s).
    pub initiate: bool,
}

impl PeerUpdate {
    /// The removal of peer `public_key`.
    pub fn removal(public_key: PublicKey) -> Self {
        let mut u = Self::new(public_key);
        u.remove = true;
        u
    }

    /// An update naming `public_key` that changes nothing yet.
    pub fn new(public_key: PublicKey) -> Self {
        Self {
            public_key,
            remove: false,
            update_only: false,
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: None,
            replace_allowed_ips: false,
            allowed_ips: Vec::new(),
            remove_allowed_ips: Vec::new(),
            initiate: false,
        }
    }
}
