//! xgate's management service: everything asynchronous and persistent, apart from the
//! handshake plane it talks to through `plane::engine::PlaneHandle` and the events it
//! receives as `plane::events::EventSink`.
//!
//! - `service`: the registry opened at start, the HTTP API served over it.
//! - `api`: the HTTP API (`/api/v1/`, `/metrics`, the event stream).
//! - `registry`: the peer registry (SQLite) and address pools.
//! - `config`: the `[registry]`, `[[pool]]`, `[api]` and `[[group]]` sections.
//! - `client`: the CLI's side of the API (`xgate peer`, `xgate status`).
//! - `events`: tunnel-state and peer-change events (log and API stream).
//! - `ike_grants`: what an IKEv2 user is granted, for the responder.
//! - `qr`: client configurations as QR codes.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod api;
pub mod client;
pub mod config;
pub mod events;
pub mod follower;
pub mod ike_grants;
pub mod qr;
pub mod registry;
pub mod service;
pub mod web;

pub use service::{Management, ServerFacts, TokenReloader};
