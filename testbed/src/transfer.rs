//! Checksummed TCP transfers through a tunnel: a deterministic byte stream is written on one
//! side and read on the other, both hashed with SHA-256, so corruption, loss or truncation
//! shows as a mismatch. Each side runs in its own namespace.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::netns::Netns;

const CHUNK: usize = 64 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// What a transfer moved and whether both ends agree.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Bytes received.
    pub bytes: u64,
    /// SHA-256 of what the sender wrote.
    pub sent_sha256: String,
    /// SHA-256 of what the receiver read.
    pub received_sha256: String,
    /// Seconds from connect to the receiver's EOF.
    pub seconds: f64,
}

impl Transfer {
    /// True if every byte arrived intact.
    pub fn intact(&self, expected: u64) -> bool {
        self.bytes == expected && self.sent_sha256 == self.received_sha256
    }

    /// Throughput in Mbit/s.
    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / 1e6 / self.seconds.max(1e-9)
    }
}

/// A cheap deterministic stream (xorshift64*), different for each seed.
struct Stream(u64);

impl Stream {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn receive(listener: TcpListener) -> Result<(u64, String, f64)> {
    listener.set_nonblocking(false)?;
    let (mut conn, _) = listener.accept().context("accepting the transfer")?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    let started = Instant::now();
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = conn.read(&mut buf).context("reading the transfer")?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
    Ok((
        total,
        hex(&hash.finalize()),
        started.elapsed().as_secs_f64(),
    ))
}

fn send(to: SocketAddr, bytes: u64, seed: u64) -> Result<String> {
    let mut conn = None;
    for _ in 0..100 {
        match TcpStream::connect_timeout(&to, Duration::from_secs(2)) {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let Some(mut conn) = conn else {
        bail!("could not connect to {to} through the tunnel");
    };
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut stream = Stream(seed | 1);
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = (left as usize).min(CHUNK);
        stream.fill(&mut buf[..n]);
        conn.write_all(&buf[..n]).context("writing the transfer")?;
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    conn.shutdown(std::net::Shutdown::Write)?;
    Ok(hex(&hash.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends `bytes` from namespace `sender` to `listen` in namespace `receiver` over TCP.
pub fn tcp_transfer(
    receiver: &Netns,
    listen: SocketAddr,
    sender: &Netns,
    bytes: u64,
    seed: u64,
) -> Result<Transfer> {
    let listener = receiver.enter(move || TcpListener::bind(listen))??;
    let rx = std::thread::spawn(move || receive(listener));
    let sent = sender.enter(move || send(listen, bytes, seed))?;
    let (total, received, seconds) = rx
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    Ok(Transfer {
        bytes: total,
        sent_sha256: sent?,
        received_sha256: received,
        seconds,
    })
}
