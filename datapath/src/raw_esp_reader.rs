//! The kernel's share of raw ESP: packets that reached the kernel instead of an AF_XDP socket
//! (a queue without one, an interface not steered, IPv4 fragments the kernel put back
//! together, IPv6 extension headers) are read from the raw ESP sockets by one thread and
//! handed to the worker their SPI names, as a frame on the wrong worker is. Rare by design
//! (one system call a packet), so that nothing a peer sends raw is lost where AF_XDP cannot
//! take it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::io::{EspEncap, BUF_SIZE, OUTER_HEADROOM};
use crate::kernel::raw_esp::RawEspSockets;
use crate::messages::spi_owner;
use crate::worker::{HandoverKind, Mesh};

/// How long a wait lasts before the thread looks whether it should stop.
const WAIT_MS: i32 = 200;

/// Starts the reader of `sockets`, handing what it reads over `mesh`; it ends once
/// `sockets.close()` is called.
pub fn spawn(sockets: Arc<RawEspSockets>, mesh: Arc<Mesh>) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("xgate-raw-esp".into())
        .spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !sockets.is_closed() {
                if !sockets.wait(WAIT_MS) {
                    continue;
                }
                while let Some((at, len, from)) = sockets.recv(&mut buf) {
                    hand_over(&mesh, &buf[at..at + len], SocketAddr::new(from, 0));
                }
            }
        })
}

/// Queues `esp` for the worker its SPI names; too short, SPI 0 (reserved), no such worker,
/// too large for a buffer or a full queue: dropped (the last counted by nobody but the log).
fn hand_over(mesh: &Mesh, esp: &[u8], from: SocketAddr) {
    let Some(spi) = esp.get(..4) else {
        return;
    };
    let spi = u32::from_be_bytes([spi[0], spi[1], spi[2], spi[3]]);
    let owner = spi_owner(spi);
    if spi == 0 || owner >= mesh.len() || esp.len() > BUF_SIZE - OUTER_HEADROOM {
        tracing::debug!(%from, len = esp.len(), "raw ESP through the kernel not taken");
        return;
    }
    if mesh.push(owner, HandoverKind::Esp(from, EspEncap::Raw, None), esp) {
        mesh.wake(owner);
    } else {
        tracing::debug!(%from, "raw ESP through the kernel dropped: worker {owner}'s queue is full");
    }
}
