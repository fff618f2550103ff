//! Admission: which initiations get the responder threads' time. The control-plane thread
//! drops exact replays before any Diffie-Hellman (`replay_filter`), holds sources whose
//! initiations keep failing to MAC2 (`suspects`), and offers the rest to per-source fair
//! queues that refuse sources over their share of the backlog (`fair_queue`). Refused sources
//! without MAC2 get a cookie reply. `gate` puts the three together for any protocol's jobs.

pub mod fair_queue;
pub mod gate;
pub mod replay_filter;
pub mod suspects;

pub use fair_queue::{FairQueue, Refusal, SourceKey};
pub use gate::{Admission, Refused};
pub use replay_filter::ReplayFilter;
pub use suspects::Suspects;
