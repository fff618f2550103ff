//! `xgate-loadtest`: a login surge of simulated users against xgate or its peers, and the
//! capacity report built from what it measured.
//!
//! Each user is a real WireGuard client as far as the server can tell: its own key pair,
//! its own source address and port, the `proto` tunnel state machine (real X25519, cookie
//! handling, retries after REKEY_TIMEOUT with jitter, transport encryption). Load threads
//! ([`threads`]) each drive their share of them ([`engine`]) and their tallies add up
//! ([`tally`]); the scenario says who arrives when ([`schedule`]). IKEv2
//! users, when the scenario has them, log in beside them on a thread of their own
//! ([`ike_load`]), and again afterwards against a fresh xgate and strongSwan side by side
//! ([`ike_side_by_side`]).
#![warn(missing_docs)]

pub mod client;
pub mod cluster_report;
pub mod cluster_target;
pub mod echo;
pub mod engine;
pub mod epoll;
pub mod failover;
pub mod failover_plot;
pub mod ike_load;
pub mod ike_report;
pub mod ike_side_by_side;
pub mod ike_target;
pub mod plots;
pub mod report;
pub mod results;
pub mod run;
pub mod sampler;
pub mod scenario;
pub mod schedule;
pub mod scraper;
pub mod server_side;
pub mod sizing;
pub mod tally;
pub mod target;
pub mod threads;
