//! A spray of forged WireGuard transport messages: receiver indices the sender chose (say,
//! ones naming another worker), random counters and bytes, from many source ports of one
//! address (so a receiver's flow hash spreads them over its queues), at a fixed rate for a
//! fixed time. It only sends to the address it is given (a namespace the caller created).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand_core::{OsRng, RngCore};

use crate::flood::XorShift;

/// What `spray` sends.
pub struct SprayPlan {
    /// Where to.
    pub server: SocketAddr,
    /// From this address (assigned in the sender's namespace)...
    pub source: Ipv4Addr,
    /// ... and this many source ports.
    pub ports: usize,
    /// Receiver indices are one of these high parts, each with random bits under `low_mask`.
    pub index_high: Vec<u32>,
    /// The random part of each index.
    pub low_mask: u32,
    /// Messages per second.
    pub per_second: u32,
    /// How long.
    pub duration: Duration,
}

/// What `spray` sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sprayed {
    /// Messages handed to the kernel.
    pub sent: u64,
    /// Sends the kernel refused (socket buffer full).
    pub refused: u64,
}

/// Sends the plan's spray, paced every millisecond.
pub fn spray(plan: &SprayPlan) -> Result<Sprayed> {
    anyhow::ensure!(!plan.index_high.is_empty(), "the spray needs index_high");
    let sockets = (0..plan.ports.max(1))
        .map(|_| {
            let s = UdpSocket::bind(SocketAddrV4::new(plan.source, 0))
                .with_context(|| format!("binding a socket to {}", plan.source))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut rng = XorShift(OsRng.next_u64() | 1);
    let mut out = Sprayed::default();
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed() < plan.duration {
        let due = (start.elapsed().as_secs_f64() * f64::from(plan.per_second)) as u64;
        while n < due {
            // Type 4, a forged receiver, a random counter, a 16-byte body and a 16-byte tag.
            let mut message = [0u8; 48];
            message[0] = 4;
            let high = plan.index_high[(n as usize) % plan.index_high.len()];
            let index = high | (rng.next_u64() as u32 & plan.low_mask);
            message[4..8].copy_from_slice(&index.to_le_bytes());
            rng.fill(&mut message[8..]);
            let socket = &sockets[(n as usize) % sockets.len()];
            match socket.send_to(&message, plan.server) {
                Ok(_) => out.sent += 1,
                Err(_) => out.refused += 1,
            }
            n += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(out)
}
