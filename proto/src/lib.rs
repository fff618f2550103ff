//! Sans-IO WireGuard for xgate.
//!
//! Bytes and `Instant`s in; bytes, events and deadlines out. Nothing here opens a socket,
//! spawns a thread or reads a clock, so the daemon, the load generator and the tests all run
//! the same protocol code, and a test can drive hours of timers in milliseconds.
//!
//! - `wire`: the four message formats as zero-copy views.
//! - `crypto`, `keys`: the primitives and key encodings.
//! - `handshake`, `cookie`, `tai64n`: Noise_IKpsk2, MAC1/MAC2 and cookie replies, timestamps.
//! - `aead`: the packet-cipher seam (ChaCha20-Poly1305, AES-256-GCM).
//! - `session`, `replay`, `keyring`: transport keys, the anti-replay window, key rotation.
//! - `timers`: the timer rules, split by who sees the events.
//! - `transport`: one peer's sessions, traffic timers and endpoint, and the receive and send
//!   rules over them (what a datapath worker runs per peer).
//! - `initiator`: our handshakes: when to start one, the cookie it draws, retransmits and
//!   give-up, finishing with the response (what the control plane runs per peer).
//! - `responder`: answering an initiation: peer lookup, authentication, the replay and flood
//!   guard (what the responder threads run).
//! - `tunnel`: all of it composed into one peer.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod aead;
pub mod constants;
pub mod cookie;
pub mod crypto;
pub mod handshake;
pub mod initiator;
pub mod inner;
pub mod keyring;
pub mod keys;
pub mod replay;
pub mod responder;
pub mod session;
pub mod tai64n;
pub mod timers;
pub mod transport;
pub mod tunnel;
pub mod wire;

pub use keys::{PresharedKey, PrivateKey, PublicKey};
pub use tunnel::{Event, Received, Tunnel, TunnelConfig, TunnelError};
