//! What the plane reports of the interface: its state for `wg show`, `xgate show`, the
//! UAPI's `get` and the API's status, assembled from the workers' answers and its own.

use std::net::SocketAddr;
use std::time::Duration;

use datapath::stats::WorkerCounters;
use ipnet::IpNet;
use proto::{PresharedKey, PrivateKey, PublicKey};

use super::ControlCounters;

/// A peer's state for `wg show` and `xgate show`.
#[derive(Debug, Clone)]
pub struct PeerState {
    /// Its public key.
    pub public_key: PublicKey,
    /// Its preshared key, if any.
    pub preshared_key: Option<PresharedKey>,
    /// Current endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Time of the latest handshake, since the Unix epoch.
    pub last_handshake: Option<Duration>,
    /// The index of its newest session here (what its transport messages name).
    pub receiver_index: Option<u32>,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Persistent keepalive in seconds (0 = off).
    pub persistent_keepalive: u16,
    /// Allowed IPs.
    pub allowed_ips: Vec<IpNet>,
}

/// The interface's state.
#[derive(Debug, Clone)]
pub struct DeviceState {
    /// Interface name.
    pub name: String,
    /// Private key, if set.
    pub private_key: Option<PrivateKey>,
    /// Listen port.
    pub listen_port: u16,
    /// Firewall mark.
    pub fwmark: u32,
    /// Number of workers.
    pub workers: usize,
    /// What the outer side runs on.
    pub backend: String,
    /// How each worker reaches the outer side.
    pub backend_per_worker: Vec<String>,
    /// Which way outer traffic passes the host firewall.
    pub firewall: &'static str,
    /// Peers.
    pub peers: Vec<PeerState>,
    /// Workers' counters, summed.
    pub datapath: WorkerCounters,
    /// Each worker's counters, by worker number.
    pub per_worker: Vec<WorkerCounters>,
    /// Control plane counters.
    pub control: ControlCounters,
    /// Receiver indices in use (sessions and pending initiations).
    pub indices_in_use: usize,
    /// ESP tunnels (IKEv2 users) as their workers see them: endpoint and bytes.
    pub esp_tunnels: Vec<datapath::messages::PeerStats>,
}
