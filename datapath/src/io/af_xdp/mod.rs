//! The AF_XDP outer side: an XDP program on each outer interface steers xgate's UDP port to
//! AF_XDP sockets, one per worker and receive queue, whose frames live in the worker's own
//! memory (UMEM); the worker reads and writes Ethernet/IP/UDP headers itself. Everything else
//! goes on to the kernel.
//!
//! - `program`: the steering program (assembled in Rust) and `bpf`: loading and attaching it.
//! - `frame`: outer headers and checksums.
//! - `umem`, `ring`, `socket`: the frames, the rings shared with the kernel, the bound socket.
//! - `lan_program`, `lan_maps`, `lan_frame`: the LAN side's steering program, its maps and its
//!   frames (`inner = "af-xdp"`, being built: issue 20).

pub mod backend;
pub mod bpf;
pub mod frame;
mod frame_send;
pub mod interfaces;
pub mod lan_frame;
mod lan_io;
pub mod lan_maps;
pub mod lan_program;
pub mod lan_steering;
pub mod neighbours;
pub mod program;
mod resync;
pub mod ring;
pub mod socket;
pub mod stale;
pub mod steering;
pub mod umem;

#[cfg(test)]
mod lan_tests;
#[cfg(test)]
mod tests;
