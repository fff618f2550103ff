//! What the plane tells operators: a tunnel or an IKE SA came up or went down. The plane hands each event
//! to a sink it is given (the management service's event hub, which logs it and streams it
//! to API subscribers; a recorder in tests), so it needs no async runtime of its own.

use std::net::{IpAddr, SocketAddr};

use proto::PublicKey;

/// Why a tunnel went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// Its newest session passed REJECT_AFTER_TIME with no new handshake.
    Expired,
    /// The peer was removed.
    Removed,
}

impl DownReason {
    /// The reason as operators read it (`expired`, `removed`).
    pub fn as_str(self) -> &'static str {
        match self {
            DownReason::Expired => "expired",
            DownReason::Removed => "removed",
        }
    }
}

/// A change in a tunnel's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelEvent {
    /// A peer without a usable session got one.
    Up {
        /// The peer.
        public_key: PublicKey,
        /// Where it is.
        endpoint: SocketAddr,
        /// The session's index here (what the peer's transport messages name).
        receiver_index: u32,
    },
    /// A transport message named an index no session here has: in a cluster, perhaps
    /// another node's user, now sending here (not for operators: a cluster's own signal).
    Stray {
        /// The index it named.
        receiver_index: u32,
        /// Where it came from.
        endpoint: SocketAddr,
    },
    /// A peer's tunnel ended.
    Down {
        /// The peer.
        public_key: PublicKey,
        /// Why.
        reason: DownReason,
    },
    /// An IKE SA was authenticated.
    IkeUp {
        /// The user's identity, as people read it.
        identity: String,
        /// Where the user is.
        endpoint: SocketAddr,
        /// The virtual addresses given.
        addresses: Vec<IpAddr>,
    },
    /// An IKE SA ended: "deleted" (by the peer), "dead" (stopped answering), "closed" (by
    /// this side).
    IkeDown {
        /// The user's identity.
        identity: String,
        /// Why.
        reason: &'static str,
    },
}

/// Where the plane publishes tunnel events; called on the control-plane thread, so it must
/// not block.
pub trait EventSink: Send + Sync {
    /// Takes one event.
    fn publish(&self, event: TunnelEvent);
}
