//! The in-process loops `valgrind --tool=callgrind` counts: sealing or opening N transport
//! packets with xgate's `Session` and with the `boringtun` crate's `Tunn`. Set-up is the same
//! whatever N is, so the count at N minus the count at 0, over N, is the cost per packet.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use anyhow::{bail, Result};
use boringtun::noise::{Tunn, TunnResult};
use proto::handshake::SessionKeys;
use proto::session::Session;
use x25519_dalek::{PublicKey, StaticSecret};

/// Which implementation's transport path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Implementation {
    /// xgate's `proto::session::Session`.
    Xgate,
    /// The `boringtun` crate's `noise::Tunn`.
    Boringtun,
}

/// Seal or open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Op {
    /// Encrypt inner packets into transport messages.
    Seal,
    /// Decrypt transport messages.
    Open,
}

/// How many packets the sealing side prepares for an open run (the most `count` may be).
pub const PREPARED: usize = 10_000;

fn inner(size: usize) -> Vec<u8> {
    let mut p = vec![0x42u8; size];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(size as u16).to_be_bytes());
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 77, 0, 2]);
    p[16..20].copy_from_slice(&[10, 77, 0, 1]);
    p
}

/// Runs `count` operations; returns a checksum of the output so nothing is optimised away.
pub fn run(implementation: Implementation, op: Op, size: usize, count: usize) -> Result<u64> {
    if count > PREPARED {
        bail!("count {count} is more than the {PREPARED} packets prepared");
    }
    match implementation {
        Implementation::Xgate => xgate(op, size, count),
        Implementation::Boringtun => boringtun(op, size, count),
    }
}

fn xgate(op: Op, size: usize, count: usize) -> Result<u64> {
    let now = Instant::now();
    let keys = |initiator: bool| SessionKeys {
        local_index: if initiator { 1 } else { 2 },
        remote_index: if initiator { 2 } else { 1 },
        send: if initiator { [1; 32] } else { [2; 32] },
        recv: if initiator { [2; 32] } else { [1; 32] },
        initiator,
    };
    let mut a = Session::new(&keys(true), now);
    let mut b = Session::new(&keys(false), now);
    let packet = inner(size);
    let mut buf = vec![0u8; 16 + size + 32];
    let mut sum = 0u64;
    let seal = |s: &mut Session, buf: &mut Vec<u8>| -> Result<usize> {
        buf[16..16 + size].copy_from_slice(&packet);
        Ok(s.seal(buf, size, 1420)?)
    };
    let sealed: Vec<Vec<u8>> = if op == Op::Open {
        (0..PREPARED)
            .map(|_| seal(&mut a, &mut buf).map(|n| buf[..n].to_vec()))
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    for i in 0..count {
        match op {
            Op::Seal => sum += seal(&mut a, &mut buf)? as u64 + u64::from(buf[20]),
            Op::Open => {
                buf[..sealed[i].len()].copy_from_slice(&sealed[i]);
                sum += b.open(&mut buf[..sealed[i].len()])? as u64;
            }
        }
    }
    Ok(sum)
}

fn boringtun(op: Op, size: usize, count: usize) -> Result<u64> {
    let a_secret = StaticSecret::from([3u8; 32]);
    let b_secret = StaticSecret::from([4u8; 32]);
    let mut a = Tunn::new(
        a_secret.clone(),
        PublicKey::from(&b_secret),
        None,
        None,
        1,
        None,
    );
    let mut b = Tunn::new(b_secret, PublicKey::from(&a_secret), None, None, 2, None);
    let mut out_a = vec![0u8; 2048];
    let mut out_b = vec![0u8; 2048];
    // Handshake: initiation a → b, response b → a.
    let init = match a.format_handshake_initiation(&mut out_a, false) {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        other => bail!("boringtun initiation: {other:?}"),
    };
    let response = match b.decapsulate(None, &init, &mut out_b) {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        other => bail!("boringtun response: {other:?}"),
    };
    if let TunnResult::Err(e) = a.decapsulate(None, &response, &mut out_a) {
        bail!("boringtun handshake: {e:?}");
    }
    let packet = inner(size);
    let from = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    let seal = |a: &mut Tunn, out: &mut Vec<u8>| -> Result<Vec<u8>> {
        match a.encapsulate(&packet, out) {
            TunnResult::WriteToNetwork(d) => Ok(d.to_vec()),
            other => bail!("boringtun encapsulate: {other:?}"),
        }
    };
    let mut sum = 0u64;
    match op {
        Op::Seal => {
            for _ in 0..count {
                match a.encapsulate(&packet, &mut out_a) {
                    TunnResult::WriteToNetwork(d) => sum += d.len() as u64,
                    other => bail!("boringtun encapsulate: {other:?}"),
                }
            }
        }
        Op::Open => {
            let sealed: Vec<Vec<u8>> = (0..PREPARED)
                .map(|_| seal(&mut a, &mut out_a))
                .collect::<Result<_>>()?;
            for d in &sealed[..count] {
                match b.decapsulate(from, d, &mut out_b) {
                    TunnResult::WriteToTunnelV4(p, _) => sum += p.len() as u64,
                    other => bail!("boringtun decapsulate: {other:?}"),
                }
            }
        }
    }
    Ok(sum)
}
