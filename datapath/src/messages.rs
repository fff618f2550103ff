//! The contract between the control plane and the workers: what each sends the other.
//!
//! Control → worker goes over one `crossbeam` channel per worker, followed by a wake-up of the
//! worker's eventfd. Worker → control is split by urgency: handshake messages go over a bounded
//! channel (full = dropped and counted, so a flood cannot queue without bound), rare events
//! over an unbounded one (they must not be lost).

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use proto::constants::INITIATION_LEN;
use proto::session::Session;

use crate::route::{AllowedIps, PeerId};
use crate::stats::WorkerCounters;

/// Number of low bits of a receiver index that are random; the bits above name the worker
/// that owns the session, so any worker finds the owner of a packet in one step.
pub const INDEX_WORKER_SHIFT: u32 = 24;

/// Most workers a receiver index can name (its top 8 bits).
pub const MAX_WORKERS: usize = 1 << (32 - INDEX_WORKER_SHIFT);

/// The worker that owns receiver index `index`.
#[inline]
pub fn index_owner(index: u32) -> usize {
    (index >> INDEX_WORKER_SHIFT) as usize
}

/// The bit that marks an ESP tunnel's number (an IKEv2 user's): tunnels share the routing
/// table's number space with WireGuard peers, from the top.
pub const ESP_TUNNEL: PeerId = 1 << 31;

/// True if `peer` numbers an ESP tunnel rather than a WireGuard peer.
#[inline]
pub fn is_esp(peer: PeerId) -> bool {
    peer & ESP_TUNNEL != 0
}

/// The worker that owns peer or ESP tunnel `peer` when there are `workers` workers.
#[inline]
pub fn peer_owner(peer: PeerId, workers: usize) -> usize {
    (peer & !ESP_TUNNEL) as usize % workers.max(1)
}

/// The worker that owns the inbound ESP SA with SPI `spi`: its top byte, as a receiver index
/// names its worker (the IKE responder chooses SPIs so, and the NAT-T port is steered by it).
#[inline]
pub fn spi_owner(spi: u32) -> usize {
    (spi >> 24) as usize
}

/// One CHILD_SA's packet rules, both ways.
pub struct EspSa {
    /// What the peer sends us (its SPI is ours, and names this worker).
    pub inbound: ike::esp::Inbound,
    /// What we send the peer.
    pub outbound: ike::esp::Outbound,
}

/// A handshake message (types 1–3, at most 148 bytes) as received, without allocation.
#[derive(Clone, Copy)]
pub struct HandshakeDatagram {
    /// Worker whose socket received it (and should send the answer).
    pub worker: usize,
    /// Source address.
    pub from: SocketAddr,
    /// How it arrived below UDP (AF_XDP): the answer can leave the same way.
    pub link: Option<crate::io::LinkPath>,
    /// When it was received.
    pub at: Instant,
    /// Length of `bytes` used.
    pub len: usize,
    /// The message.
    pub bytes: [u8; INITIATION_LEN],
}

impl HandshakeDatagram {
    /// The message bytes.
    pub fn message(&self) -> &[u8] {
        &self.bytes[..self.len.min(INITIATION_LEN)]
    }
}

/// What the control plane tells a worker.
pub enum ToWorker {
    /// Add a peer, or update its settings.
    SetPeer {
        /// The peer.
        peer: PeerId,
        /// Persistent keepalive interval in seconds (0 = off).
        persistent_keepalive: u16,
        /// Configured endpoint, if any (roaming overrides it later).
        endpoint: Option<SocketAddr>,
    },
    /// Forget a peer and its sessions.
    RemovePeer {
        /// The peer.
        peer: PeerId,
    },
    /// A handshake completed: add its session to the peer's key ring.
    InstallSession {
        /// The peer.
        peer: PeerId,
        /// The new session (its index belongs to this worker).
        session: Box<Session>,
        /// Where the peer's handshake came from (or went to).
        endpoint: SocketAddr,
    },
    /// A CHILD_SA for ESP tunnel `tunnel` (which this worker owns), made if new. On a tunnel
    /// that exists (a rekey) its inbound side is ready at once beside the old, and its
    /// outbound side takes over once the peer uses it or the old SA is removed.
    InstallEsp {
        /// The tunnel.
        tunnel: PeerId,
        /// The SA.
        sa: Box<EspSa>,
        /// Where the peer's IKE SA is (its ESP comes from the same address); for a new
        /// tunnel only, as is `encap`: a rekey leaves both as the peer's ESP set them.
        endpoint: SocketAddr,
        /// How ESP travels to it (until the peer's own packets say otherwise).
        encap: crate::io::EspEncap,
    },
    /// A CHILD_SA was deleted: forget the SA received on `spi`.
    RemoveEspSa {
        /// The tunnel.
        tunnel: PeerId,
        /// Our SPI of the SA.
        spi: u32,
    },
    /// The tunnel's IKE SA moved (a NAT rebinding): send there from now on.
    MoveEsp {
        /// The tunnel.
        tunnel: PeerId,
        /// The new address.
        endpoint: SocketAddr,
    },
    /// The tunnel's IKE SA ended: forget it and its SAs.
    RemoveEsp {
        /// The tunnel.
        tunnel: PeerId,
    },
    /// Erase a peer's sessions (key change).
    ClearSessions {
        /// The peer.
        peer: PeerId,
    },
    /// The control plane stopped retrying a handshake: drop staged packets, stop keepalives.
    HandshakeGaveUp {
        /// The peer.
        peer: PeerId,
    },
    /// A new snapshot of the allowed-IPs table.
    Routes(Arc<AllowedIps>),
    /// Send a handshake message from this worker's socket.
    Transmit {
        /// Destination.
        to: SocketAddr,
        /// The way the message being answered came in, if known.
        link: Option<crate::io::LinkPath>,
        /// Bytes of `bytes` used.
        len: usize,
        /// The message.
        bytes: [u8; INITIATION_LEN],
    },
    /// Use this socket from now on (listen port changed).
    ReplaceSocket(Arc<OwnedFd>),
    /// Take UDP-encapsulated ESP on this socket (the worker's on the NAT-T port) from now on.
    AttachNatT(Arc<OwnedFd>),
    /// Report counters and per-peer state.
    Snapshot(Sender<WorkerSnapshot>),
    /// Stop the worker loop.
    Shutdown,
}

/// What a worker tells the control plane that is not a handshake message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEvent {
    /// The peer needs a handshake (data waiting, keys old, or no answer to data).
    WantHandshake {
        /// The peer.
        peer: PeerId,
    },
    /// An authenticated packet came from a new address: the peer roamed.
    EndpointChanged {
        /// The peer.
        peer: PeerId,
        /// Its new address.
        endpoint: SocketAddr,
    },
    /// A transport message came for an index no session of this node has (reported within
    /// a budget per worker; see `worker/strays.rs`).
    StrayTransport {
        /// The index it named.
        receiver: u32,
        /// Where it came from.
        from: SocketAddr,
    },
    /// Sessions were dropped; their indices may be reused.
    IndicesRetired {
        /// Local indices freed.
        indices: [Option<u32>; 3],
    },
    /// The TUN queue was closed under the worker: the interface was deleted.
    InterfaceGone {
        /// The worker that noticed.
        worker: usize,
    },
    /// The worker loop stopped on an error.
    Failed {
        /// The worker.
        worker: usize,
        /// What went wrong.
        error: String,
    },
}

/// A peer's traffic as one worker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer.
    pub peer: PeerId,
    /// Current endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Bytes received in authenticated transport messages.
    pub rx_bytes: u64,
    /// Bytes sent in transport messages.
    pub tx_bytes: u64,
    /// When the current session became usable.
    pub last_handshake: Option<Instant>,
}

/// A worker's answer to `ToWorker::Snapshot`.
#[derive(Debug, Clone)]
pub struct WorkerSnapshot {
    /// The worker.
    pub worker: usize,
    /// Its counters.
    pub counters: WorkerCounters,
    /// Its peers.
    pub peers: Vec<PeerStats>,
    /// How it reaches the outer side now (`Backend::describe`).
    pub outer: String,
}
