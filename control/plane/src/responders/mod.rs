//! The responder threads beside the control-plane thread: they answer admitted initiations
//! in batches (`pool`, generic over a protocol's `HandshakeWork`; `wireguard` is WireGuard's),
//! reading the peers' keys from a shared directory (`directory`), whose
//! new entries get their static-static Diffie-Hellman precomputed in idle time (`warmup`).
//!
//! The path of an initiation: a worker forwards it; the control-plane thread checks MAC1
//! (and MAC2) and admits it (`crate::admission`); the responder threads open it and make the
//! response; the response comes back for an index, MACs, install and transmit; a failure is
//! charged to its source.

pub mod directory;
pub mod pool;
pub mod warmup;
pub mod wireguard;

pub use directory::{Directory, PeerKeys};
pub use pool::{HandshakeWork, ResponderPool};
pub use wireguard::{Outcome, Unanswered, WireguardResponder};
