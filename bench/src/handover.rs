//! A TUN packet for a peer another worker owns, two ways, on two cores. "queue" is what the
//! datapath does: the receiving core copies the packet into the owner's handover queue and
//! wakes it once per batch; the owner copies it out and seals it. "atomic nonce" is the
//! alternative: the receiving core seals the packet itself, taking the nonce from the
//! session's send counter shared as an atomic that both cores increment. Both seal the same
//! packets with the same key; the difference per packet is the mechanism's cost. Figures are
//! CPU nanoseconds per packet summed over both threads (each thread's own CPU clock).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use anyhow::Context;
use datapath::kernel::waker::Waker;
use datapath::worker::{HandoverKind, Mesh};
use proto::aead::{wireguard_nonce, Cipher, PacketAead, RingKey};
use serde::Serialize;

use crate::rig::{pin_thread, Rig, ServerKind, SERVER_IFACE, SERVER_TUNNEL_IP};

/// One mechanism at one packet size.
#[derive(Debug, Clone, Serialize)]
pub struct HandoverFigure {
    /// "queue" or "atomic nonce".
    pub mechanism: &'static str,
    /// Inner packet bytes.
    pub payload: usize,
    /// Packets moved and sealed.
    pub packets: u64,
    /// CPU nanoseconds per packet, both threads together.
    pub cpu_ns_per_packet: f64,
}

/// Handovers between wake-ups, as a worker batches them.
pub const WAKE_EVERY: u64 = 32;
/// Packets per round of the queue measurement (well inside the queue's depth).
const BATCH: u64 = 256;

fn thread_cpu() -> Duration {
    // SAFETY: all-zero is a valid timespec; clock_gettime writes into it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f` on a thread pinned to `cpu` and returns its result and CPU time.
fn on<T: Send + 'static>(
    cpu: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<(T, Duration)> {
    std::thread::spawn(move || {
        pin_thread(&[cpu]);
        let start = thread_cpu();
        let out = f();
        (out, thread_cpu() - start)
    })
}

fn key() -> RingKey {
    RingKey::new(Cipher::ChaCha20Poly1305, &[0x5a; 32])
}

/// Both mechanisms at 64 and 1420 bytes, `packets` each.
pub fn measure(packets: u64) -> anyhow::Result<Vec<HandoverFigure>> {
    let mut out = Vec::new();
    for payload in [64usize, 1420] {
        out.push(queue(payload, packets)?);
        out.push(atomic(payload, packets));
    }
    Ok(out)
}

/// What the atomic counter costs the owner on every packet it seals itself, the common
/// case: nanoseconds per increment, plain and atomic, one thread, nobody else touching it.
#[derive(Debug, Clone, Serialize)]
pub struct CounterFigure {
    /// A plain `u64` increment (what the owner does today).
    pub plain_ns: f64,
    /// An uncontended atomic fetch_add.
    pub atomic_ns: f64,
}

/// Times `n` increments each way.
pub fn counters(n: u64) -> CounterFigure {
    let per = |d: Duration| d.as_nanos() as f64 / n as f64;
    let start = thread_cpu();
    let mut plain = 0u64;
    for _ in 0..n {
        plain = std::hint::black_box(plain) + 1;
    }
    let plain_ns = per(thread_cpu() - start);
    let counter = AtomicU64::new(std::hint::black_box(plain));
    let start = thread_cpu();
    for _ in 0..n {
        std::hint::black_box(counter.fetch_add(1, Ordering::Relaxed));
    }
    CounterFigure {
        plain_ns,
        atomic_ns: per(thread_cpu() - start),
    }
}

/// How many TUN packets cross workers in practice: counters of a 2-worker xgate after TCP
/// with 4 streams each way through it.
#[derive(Debug, Clone, Serialize)]
pub struct CrossingFigure {
    /// Packets read from the TUN.
    pub tun_reads: u64,
    /// Of those, handed to the worker that owns their peer.
    pub handed_over: u64,
}

/// Runs iperf3 TCP, 4 streams, up and down through a 2-worker xgate and reads its counters.
pub fn crossing(xgate: &Path, dir: &Path) -> anyhow::Result<CrossingFigure> {
    let rig = Rig::start(ServerKind::Xgate(2), xgate, dir)?;
    let _client = rig.wireguard_go_client()?;
    let _iperf = rig.iperf3_server()?;
    for reverse in [false, true] {
        let mut cmd = rig.client_ns.command("iperf3");
        cmd.args(["-c", SERVER_TUNNEL_IP, "-p", "5201", "-t", "3", "-P", "4"]);
        if reverse {
            cmd.arg("-R");
        }
        testbed::netns::run(&mut cmd).context("iperf3 through 2 workers")?;
    }
    let text = rig.server.ns.run(
        xgate.to_str().unwrap_or_default(),
        &["show", SERVER_IFACE, "--json"],
    )?;
    let shown: serde_json::Value = serde_json::from_str(&text).context("xgate show --json")?;
    let n = |k: &str| shown["stats"][k].as_u64().unwrap_or(0);
    Ok(CrossingFigure {
        tun_reads: n("tun_reads"),
        handed_over: n("handed_over").saturating_sub(n("outer_handed_over")),
    })
}

fn queue(payload: usize, packets: u64) -> anyhow::Result<HandoverFigure> {
    let wakers = vec![Arc::new(Waker::new()?), Arc::new(Waker::new()?)];
    let mesh = Arc::new(Mesh::new(wakers));
    // Rounds: the sender hands over a batch, then the owner takes it. Between rounds both
    // block on the barrier (no CPU), so each thread's CPU time is its share of the work,
    // including the cache misses of packets written on one core and read on the other.
    let barrier = Arc::new(Barrier::new(2));
    let rounds = packets / BATCH;
    let owner = {
        let (mesh, barrier) = (mesh.clone(), barrier.clone());
        on(1, move || {
            let key = key();
            let mut buf = [0u8; 2048];
            let mut sealed = 0u64;
            for _ in 0..rounds {
                barrier.wait();
                while let Some(h) = mesh.pop(1) {
                    // As the owner does: into a pool buffer, then sealed in place.
                    buf[..h.len].copy_from_slice(&h.data[..h.len]);
                    let _ = key.seal(wireguard_nonce(sealed), &[], &mut buf[..h.len]);
                    sealed += 1;
                }
                barrier.wait();
            }
            sealed
        })
    };
    let sender = {
        let (mesh, barrier) = (mesh.clone(), barrier.clone());
        on(0, move || {
            let packet = vec![0x45u8; payload];
            let mut lost = 0u64;
            for _ in 0..rounds {
                for i in 1..=BATCH {
                    if !mesh.push(1, HandoverKind::Inner, &packet) {
                        lost += 1;
                    }
                    if i % WAKE_EVERY == 0 {
                        mesh.wake(1);
                    }
                }
                barrier.wait();
                barrier.wait();
            }
            lost
        })
    };
    let (lost, send_cpu) = sender
        .join()
        .map_err(|_| anyhow::anyhow!("handover sender panicked"))?;
    let (sealed, owner_cpu) = owner
        .join()
        .map_err(|_| anyhow::anyhow!("handover owner panicked"))?;
    let moved = rounds * BATCH;
    anyhow::ensure!(
        lost == 0 && sealed == moved,
        "handover lost {lost} and sealed {sealed} of {moved} packets"
    );
    Ok(HandoverFigure {
        mechanism: "queue",
        payload,
        packets: moved,
        cpu_ns_per_packet: (send_cpu + owner_cpu).as_nanos() as f64 / moved as f64,
    })
}

fn atomic(payload: usize, packets: u64) -> HandoverFigure {
    let counter = Arc::new(AtomicU64::new(0));
    let half = packets / 2;
    let cores: Vec<_> = [0usize, 1]
        .into_iter()
        .map(|cpu| {
            let counter = counter.clone();
            on(cpu, move || {
                let key = key();
                let mut buf = vec![0x45u8; payload];
                for _ in 0..half {
                    // Both cores send for the same session: each nonce is taken once.
                    let nonce = counter.fetch_add(1, Ordering::Relaxed);
                    let _ = key.seal(wireguard_nonce(nonce), &[], &mut buf);
                }
            })
        })
        .collect();
    let total: Duration = cores
        .into_iter()
        .filter_map(|h| h.join().ok())
        .map(|((), cpu)| cpu)
        .sum();
    HandoverFigure {
        mechanism: "atomic nonce",
        payload,
        packets: half * 2,
        cpu_ns_per_packet: total.as_nanos() as f64 / (half * 2) as f64,
    }
}
