//! What a worker keeps per peer it owns: sessions, traffic timers, endpoint, packets waiting
//! for a handshake, and counters.

use std::net::SocketAddr;
use std::time::Instant;

use proto::keyring::KeyRing;
use proto::timers::TrafficTimers;

use crate::io::BufId;

/// Packets held per peer while a handshake is pending.
pub const MAX_STAGED: usize = 32;

/// One owned peer.
#[derive(Debug, Default)]
pub struct PeerSlot {
    /// Previous, current and next sessions.
    pub keys: KeyRing,
    /// Keepalive, "no answer" and key-zeroing timers.
    pub timers: TrafficTimers,
    /// Where to send.
    pub endpoint: Option<SocketAddr>,
    /// Inner packets (buffer, length) waiting for a session.
    pub staged: Vec<(BufId, usize)>,
    /// Bytes of authenticated transport messages received.
    pub rx_bytes: u64,
    /// Bytes of transport messages sent.
    pub tx_bytes: u64,
    /// When the current session became usable.
    pub last_handshake: Option<Instant>,
    /// When we last asked the control plane for a handshake (rate limit).
    pub asked_handshake_at: Option<Instant>,
}

impl PeerSlot {
    /// A peer with no sessions; staging capacity reserved up front.
    pub fn new() -> Self {
        Self {
            staged: Vec::with_capacity(MAX_STAGED),
            ..Self::default()
        }
    }
}
