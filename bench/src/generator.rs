//! The decrypt path alone: simulated clients make real handshakes with the server, then send
//! pre-encrypted transport packets (every counter distinct) as fast as the sending core can.
//! What is measured is what the server delivers into its TUN, per wall second and per second
//! of its own CPU.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use proto::{Event, PrivateKey, Tunnel, TunnelConfig};
use serde::Serialize;

use crate::rig::{Rig, ServerKind, SERVER_ENDPOINT};

/// One decrypt-path run.
#[derive(Debug, Clone, Serialize)]
pub struct DecryptFigure {
    /// Server label.
    pub server: String,
    /// Inner packet size, bytes.
    pub size: usize,
    /// Simulated clients (each its own socket and session).
    pub clients: usize,
    /// Transport packets the generator sent.
    pub sent: u64,
    /// Packets the server wrote into its TUN.
    pub delivered: u64,
    /// Delivered packets per wall-clock second.
    pub pps: f64,
    /// Inner Gbit/s delivered.
    pub gbit_per_s: f64,
    /// Server CPU seconds used.
    pub server_cpu_s: f64,
    /// Delivered packets per second of server CPU: the per-core decrypt rate.
    pub pps_per_core: f64,
    /// CPU seconds the whole machine was busy (every core, generator and kernel included).
    pub machine_cpu_s: f64,
    /// Delivered packets per busy second of the whole machine: counts the kernel's receive
    /// work wherever it ran (with XDP on a veth it runs on the sender's core).
    pub pps_per_machine_cpu: f64,
}

/// Seconds every CPU of the machine has been busy so far (`/proc/stat`: all but idle and
/// I/O wait).
pub(crate) fn machine_busy_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = fields
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, v)| v)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(busy as f64 / hz)
}

/// A simulated client with its handshake done and its packets sealed.
pub struct Loaded {
    /// Its socket, connected to the server.
    pub socket: UdpSocket,
    /// Its sealed datagrams.
    pub packets: Vec<Vec<u8>>,
}

/// Where the decrypt section's packets go: not an address of the server, so its kernel
/// counts the packet in and drops it (no forwarding) and nothing is sent back.
pub(crate) const NOWHERE: [u8; 4] = [10, 77, 250, 250];

fn inner_packet(src: [u8; 4], dst: [u8; 4], size: usize) -> Vec<u8> {
    let body = vec![0u8; size.saturating_sub(testbed::packet::IPV4_HEADER)];
    testbed::packet::ipv4(src, dst, testbed::packet::UDP, &body)
}

/// Handshakes as client `n` (tunnel address 10.77.1.n+2) and seals `count` packets of
/// `size` bytes to `dst`. Runs inside the client namespace (the socket belongs to it).
pub(crate) fn load(
    key: PrivateKey,
    server: proto::PublicKey,
    n: usize,
    (size, dst): (usize, [u8; 4]),
    count: usize,
) -> Result<Loaded> {
    let endpoint: SocketAddr = SERVER_ENDPOINT.parse()?;
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.connect(endpoint)?;
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut tunnel = Tunnel::new(
        TunnelConfig {
            private_key: key,
            peer_public_key: server,
            preshared_key: None,
            persistent_keepalive: None,
            mtu: 1420,
        },
        Instant::now(),
        unix,
        rand_core::OsRng,
    );
    tunnel.set_endpoint(endpoint);
    let mut done = false;
    for attempt in 0..10 {
        tunnel.initiate(Instant::now(), attempt > 0);
        while let Some(d) = tunnel.poll_transmit() {
            socket.send(&d)?;
        }
        let mut buf = [0u8; 256];
        if let Ok(len) = socket.recv(&mut buf) {
            let _ = tunnel.handle_datagram(Instant::now(), endpoint, &mut buf[..len]);
            while let Some(e) = tunnel.poll_event() {
                done |= matches!(e, Event::HandshakeComplete { .. });
            }
        }
        if done {
            break;
        }
    }
    if !done {
        bail!("simulated client {n} got no handshake response from {SERVER_ENDPOINT}");
    }
    let src = [10, 77, 1, (n + 2) as u8];
    let packet = inner_packet(src, dst, size);
    let now = Instant::now();
    let mut packets = Vec::with_capacity(count);
    for _ in 0..count {
        tunnel.send(now, &packet);
        packets.push(
            tunnel
                .poll_transmit()
                .ok_or_else(|| anyhow!("no sealed packet"))?,
        );
    }
    // The responder needs our first transport packet to confirm; drain anything it sent.
    socket.set_nonblocking(true)?;
    Ok(Loaded { socket, packets })
}

/// Sends every client's packets, 64 per `sendmmsg`, round-robin over clients; returns how
/// many the kernel took.
fn blast(clients: &[Loaded]) -> u64 {
    const BATCH: usize = 64;
    let mut sent = 0u64;
    let mut next = vec![0usize; clients.len()];
    // SAFETY: iovec is a plain C struct; all-zero is valid.
    let mut iovs: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; BATCH];
    // SAFETY: mmsghdr is a plain C struct; all-zero is valid.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    loop {
        let mut any = false;
        for (c, client) in clients.iter().enumerate() {
            let start = next[c];
            let end = (start + BATCH).min(client.packets.len());
            if start == end {
                continue;
            }
            any = true;
            for (i, p) in client.packets[start..end].iter().enumerate() {
                iovs[i] = libc::iovec {
                    iov_base: p.as_ptr() as *mut libc::c_void,
                    iov_len: p.len(),
                };
                msgs[i].msg_hdr.msg_iov = &mut iovs[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: msgs[..n] point at iovecs that point into live packet buffers.
            let r = unsafe {
                libc::sendmmsg(
                    client.socket.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    (end - start) as u32,
                    0,
                )
            };
            // A full socket buffer (EAGAIN) skips this round for the client: the packets
            // are offered again next time round.
            if r > 0 {
                sent += r as u64;
                next[c] += r as usize;
            }
        }
        if !any {
            return sent;
        }
    }
}

/// What one blast delivered.
pub struct Delivery {
    sent: u64,
    delivered: u64,
    bytes: u64,
    secs: f64,
    cpu: f64,
    machine: f64,
}

impl DecryptFigure {
    /// One line on stderr.
    pub fn print(&self) {
        eprintln!(
            "  {:<20} {:>4} B x{} clients: sent {:>8} delivered {:>8} {:>9.0} pps {:>9.0} \
             pps/core {:>9.0} pps/machine-CPU",
            self.server,
            self.size,
            self.clients,
            self.sent,
            self.delivered,
            self.pps,
            self.pps_per_core,
            self.pps_per_machine_cpu
        );
    }

    /// The figure of a delivery to server `server` of `clients` clients' `size`-byte packets.
    pub fn of(server: String, size: usize, clients: usize, d: Delivery) -> Self {
        let per = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { f64::NAN };
        DecryptFigure {
            server,
            size,
            clients,
            sent: d.sent,
            delivered: d.delivered,
            pps: d.delivered as f64 / d.secs,
            gbit_per_s: d.bytes as f64 * 8.0 / d.secs / 1e9,
            server_cpu_s: d.cpu,
            pps_per_core: per(d.delivered, d.cpu),
            machine_cpu_s: d.machine,
            pps_per_machine_cpu: per(d.delivered, d.machine),
        }
    }
}

/// Sends everything `loaded` holds (from CPU 1) and waits until the server's TUN count
/// (`tun_rx`) stops moving; the server's CPU time comes from `cpu`. A profiler started by
/// `perf` records the blast. Returns the figure `make` makes of the delivery, and the profile.
pub fn deliver<P, M>(
    loaded: &[Loaded],
    (tun_rx, cpu): (impl Fn() -> Result<(u64, u64)>, impl Fn() -> Result<f64>),
    perf: P,
    make: M,
) -> Result<(DecryptFigure, Option<String>)>
where
    P: FnOnce() -> Result<Option<Profiler>>,
    M: FnOnce(Delivery) -> DecryptFigure,
{
    let cpu0 = cpu()?;
    let machine0 = machine_busy_seconds()?;
    let (p0, b0) = tun_rx()?;
    let perf = perf()?;
    let start = Instant::now();
    let sent = crate::rig::on_cpu(1, || blast(loaded));
    // Wait for the server to finish what is queued: until its TUN count stops moving.
    let mut last = (p0, b0);
    let mut last_change = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = tun_rx()?;
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() > Duration::from_millis(300) {
            break;
        }
    }
    let secs = last_change.duration_since(start).as_secs_f64().max(1e-3);
    let profile = perf.map(Profiler::finish).transpose()?;
    // Busy time up to the last delivery, not the idle wait after it (the waiting loop itself
    // is a few reads per 50 ms).
    let delivery = Delivery {
        sent,
        delivered: last.0 - p0,
        bytes: last.1 - b0,
        secs,
        cpu: cpu()? - cpu0,
        machine: machine_busy_seconds()? - machine0,
    };
    Ok((make(delivery), profile))
}

/// Runs the generator against `server`: `clients` simulated clients, `count` packets each.
pub fn measure(
    server: ServerKind,
    xgate: &std::path::Path,
    dir: &std::path::Path,
    size: usize,
    clients: usize,
    count: usize,
    profile: bool,
) -> Result<(DecryptFigure, Option<String>)> {
    let rig = Rig::start(server, xgate, dir)?;
    let mut keys = Vec::new();
    for n in 0..clients {
        let key = PrivateKey::generate(&mut rand_core::OsRng);
        rig.server
            .add_peer(&key.public_key(), &format!("10.77.1.{}/32", n + 2))?;
        keys.push(key);
    }
    let server_key = rig.server_key;
    let loaded = rig
        .client_ns
        .enter(move || -> Result<Vec<Loaded>> {
            keys.into_iter()
                .enumerate()
                .map(|(n, key)| load(key, server_key, n, (size, NOWHERE), count))
                .collect()
        })?
        .context("simulated clients")?;
    std::thread::sleep(Duration::from_millis(200));

    let tun_rx = || rig.server_tun_rx();
    let cpu = || rig.server_cpu_seconds();
    let perf = || {
        if !profile {
            return Ok(None);
        }
        rig.server
            .pid()
            .ok()
            .map(|pid| Profiler::start(pid, dir))
            .transpose()
    };
    let (figure, profile) = deliver(&loaded, (tun_rx, cpu), perf, |d| {
        DecryptFigure::of(server.label(), size, clients, d)
    })?;
    figure.print();
    Ok((figure, profile))
}

/// `perf record -e cpu-clock` attached to the server while the generator runs.
pub struct Profiler {
    child: std::process::Child,
    data: std::path::PathBuf,
}

impl Profiler {
    /// Starts recording process `pid` into `dir`.
    pub fn start(pid: u32, dir: &std::path::Path) -> Result<Profiler> {
        let data = dir.join("perf.data");
        let child = std::process::Command::new("perf")
            .args([
                "record",
                "-q",
                "-e",
                "cpu-clock",
                "-F",
                "2000",
                "-p",
                &pid.to_string(),
                "-o",
            ])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting perf (apt install linux-perf)")?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(Profiler { child, data })
    }

    /// Stops recording and returns the top of `perf report`.
    pub(crate) fn finish(mut self) -> Result<String> {
        // SAFETY: signals the perf process we started, by its PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        let out = std::process::Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--no-children",
                "--sort",
                "dso,symbol",
                "--percent-limit",
                "1",
                "-i",
            ])
            .arg(&self.data)
            .output()
            .context("perf report")?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .map(|l| l.trim_end_matches([' ', '-']))
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .take(30)
            .collect::<Vec<_>>()
            .join("\n"))
    }
}
