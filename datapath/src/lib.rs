//! xgate's datapath: per-core workers that move transport data between the outer UDP side and
//! the inner TUN side, and never perform a handshake.
//!
//! - `worker`: the per-core loop, its receive and send paths, and cross-worker handover.
//! - `io`: the backend seam (`io_uring` for real, in-memory for tests).
//! - `route`: cryptokey routing (allowed IPs → peer).
//! - `messages`: the contract with the control plane.
//! - `udp`, `tun`, `waker`: the kernel objects a worker owns; `udp_gso` their offloads.
//! - `steering`: received datagrams go to the socket of the worker that owns their session.
//! - `launch`: starting and stopping the workers.
//! - `netlink`: interfaces, addresses, routes and neighbours, as the kernel sees them.
#![warn(missing_docs)]

pub mod inner;
pub mod io;
pub mod launch;
pub mod messages;
pub mod netlink;
pub mod route;
pub mod stats;
pub mod steering;
pub mod tun;
pub mod udp;
pub mod udp_gso;
pub mod waker;
pub mod worker;
