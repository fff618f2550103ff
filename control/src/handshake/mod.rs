//! The handshake service's parts that run beside the control-plane thread: fair admission
//! (`admission`), the replay filter that costs no Diffie-Hellman (`replay_filter`), the peer
//! keys the responder threads read (`peer_keys`), the responder threads (`responder`), and
//! the idle-time precomputation of new peers' static-static values (`warmup`).
//!
//! The path of an initiation: a worker forwards it; the control-plane thread checks MAC1
//! (and MAC2), drops exact replays, holds sources whose initiations keep failing to MAC2
//! (`suspects`), and offers it to the fair queue, which refuses sources over their share of
//! the backlog. Refused sources without MAC2 get a cookie reply. Admitted initiations go to
//! the responder threads in batches; their responses come back for an index, MACs, install
//! and transmit; their failures are charged to their source.

pub mod admission;
pub mod peer_keys;
pub mod replay_filter;
pub mod responder;
pub mod suspects;
pub mod warmup;

pub use admission::{FairQueue, Refusal, SourceKey};
pub use peer_keys::{Directory, PeerKeys};
pub use replay_filter::ReplayFilter;
pub use responder::{Outcome, ResponderPool, Unanswered};
pub use suspects::Suspects;
