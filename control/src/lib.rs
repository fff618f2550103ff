//! xgate's control plane and daemon.
//!
//! - `api`: the HTTP API (`/api/v1/`).
//! - `client`: the CLI's side of the API (`xgate peer`, `xgate status`).
//! - `config`: the TOML file, embedded defaults, validation.
//! - `update`: one change type for config files and `wg set`.
//! - `plane`: the control-plane thread: handshakes, peers, indices, state.
//! - `handshake`: fair admission and the responder threads that answer initiations.
//! - `qr`: client configurations as QR codes.
//! - `registry`: the peer registry (SQLite) and address pools.
//! - `uapi`: the WireGuard userspace API socket (`wg`, `wg-quick`).
//! - `events`: tunnel-state and peer-change events (log and API stream).
//! - `daemon`: `xgate up`, from start to clean exit.
//! - `outer`: AF_XDP or io_uring for the outer side, set up before the workers start.
//! - `show`: `xgate show`.
#![warn(missing_docs)]

pub mod api;
pub mod client;
pub mod config;
pub mod daemon;
pub mod events;
pub mod handshake;
pub mod outer;
pub mod plane;
pub mod qr;
pub mod registry;
pub mod show;
pub mod uapi;
pub mod update;
