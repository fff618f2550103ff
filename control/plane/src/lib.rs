//! xgate's handshake plane: everything between the datapath workers and the management
//! service that is synchronous and must keep up with a login surge.
//!
//! - `engine`: the control-plane thread: handshakes it admits, answers and starts, peers
//!   and their routes, receiver indices, counters, configuration changes, state queries.
//! - `admission`: replay filter, suspects, fair queues: where floods stop.
//! - `ike`: the IKEv2 responder on UDP 500/4500 (its own threads).
//! - `responders`: the threads that do the public-key work of answering initiations.
//! - `uapi`: the WireGuard userspace API socket (`wg`, `wg-quick`, `xgate show`).
//! - `update`: one change type for config files, `wg set` and the HTTP API.
//! - `config`: the `[interface]` and `[[peer]]` sections, validated; keys.
//! - `outer`: AF_XDP or io_uring for the outer side, set up before the workers start.
//! - `events`: what the plane reports (tunnels up and down) and the sink it reports to.
//!
//! No HTTP, no SQL, no async runtime: the management service talks to this crate through
//! `engine::PlaneHandle` and `events::EventSink`.
#![warn(missing_docs)]

pub mod admission;
pub mod config;
pub mod engine;
pub mod events;
pub mod ike;
pub mod outer;
pub mod responders;
/// The workers' counters and drop reasons, as the plane reports them per worker.
pub use datapath::stats;
pub mod uapi;
pub mod update;
