//! xgate's datapath: per-core workers that move transport data between the outer UDP side and
//! the inner TUN side, and never perform a handshake.
//!
//! - `worker`: the per-core loop, its receive and send paths, and cross-worker handover.
//! - `io`: the backend seam: `io_uring` and AF_XDP for real, in-memory for tests.
//! - `route`: cryptokey routing (allowed IPs → peer).
//! - `messages`: the contract with the control plane.
//! - `kernel`: the kernel objects beneath the backends: outer UDP sockets and their offloads,
//!   reuseport steering to the owning worker, TUN queues, the waker, rtnetlink.
//! - `launch`: starting and stopping the workers.
#![warn(missing_docs)]

pub mod inner;
pub mod io;
pub mod kernel;
pub mod launch;
pub mod live_indices;
pub mod messages;
pub mod raw_esp_reader;
pub mod route;
pub mod stats;
pub mod worker;
