//! The event loop that drives every simulated user on one thread: arrivals from the
//! schedule, tunnel timers from a heap, datagrams from epoll over one UDP socket per user
//! (each user has its own source address and port). Measures as it goes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

use crate::client::{drop_reason, Attempt, Shared, State};
use crate::results::{ClientFigures, Latencies, Second, Summary};
use crate::schedule::Phase;

/// One simulated user's endpoint.
pub struct User {
    /// Its socket, bound to its own address and an ephemeral port.
    pub socket: UdpSocket,
    /// Its tunnel address (assigned by the server's registry, or by the harness).
    pub tunnel_ip: Ipv4Addr,
    current: Option<u32>,
}

impl User {
    /// Binds a user's socket to `source` (any free port).
    pub fn bind(source: Ipv4Addr, tunnel_ip: Ipv4Addr) -> Result<Self> {
        let socket = UdpSocket::bind(SocketAddrV4::new(source, 0))
            .with_context(|| format!("binding a user socket to {source}"))?;
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket,
            tunnel_ip,
            current: None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Job {
    Tunnel,
    Echo,
    Leave,
}

/// What the engine measured.
pub struct Measured {
    /// Client-side counts.
    pub clients: ClientFigures,
    /// Distributions.
    pub latency: Latencies,
    /// Second by second (server columns are filled in by the caller).
    pub timeline: Vec<Second>,
    /// Seconds from the first arrival to the end.
    pub duration_s: f64,
}

/// Progress the engine reports about four times a second.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Attempts started.
    pub arrived: u64,
    /// Connected now.
    pub connected: u64,
    /// Attempts that have failed (gave up) so far.
    pub failed: u64,
    /// Cookie replies so far.
    pub cookies: u64,
    /// Seconds since the first arrival.
    pub elapsed: f64,
}

fn histogram() -> Histogram<u64> {
    // Microseconds from 1 µs to 10 minutes at 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("3 digits is valid"))
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

struct Epoll(i32);

impl Epoll {
    fn new(users: &[User]) -> Result<Self> {
        // SAFETY: plain syscall; the descriptor is owned by the returned value.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        anyhow::ensure!(
            fd >= 0,
            "epoll_create1: {}",
            std::io::Error::last_os_error()
        );
        let e = Epoll(fd);
        for (i, u) in users.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: both descriptors are open; `ev` is valid for the call.
            let rc =
                unsafe { libc::epoll_ctl(fd, libc::EPOLL_CTL_ADD, u.socket.as_raw_fd(), &mut ev) };
            anyhow::ensure!(rc == 0, "epoll_ctl: {}", std::io::Error::last_os_error());
        }
        Ok(e)
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
        // SAFETY: `events` is a valid buffer of its length.
        let n = unsafe {
            libc::epoll_wait(self.0, events.as_mut_ptr(), events.len() as i32, timeout_ms)
        };
        n.max(0) as usize
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.0) };
    }
}

/// Runs the attempts (sorted by arrival) to the end: every attempt settled or `bound`
/// passed. `shared.start` must lie in the future of the virtual clock origin given by
/// `virtual_now` at the moment `run` is called.
pub fn run(
    users: &mut [User],
    attempts: &mut [Attempt],
    shared: &Shared,
    bound: Duration,
    mut progress: impl FnMut(Progress),
) -> Result<Measured> {
    let epoll = Epoll::new(users)?;
    // The virtual clock: offset zero of the schedule is `shared.start`, now.
    let real_start = Instant::now();
    let vnow = || shared.start + real_start.elapsed();
    let end_by = shared.start + bound;
    let mut heap: BinaryHeap<Reverse<(Instant, u32, Job)>> = BinaryHeap::new();
    let mut next_arrival = 0usize;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = vec![0u8; 2048];

    let (mut hs, mut first, mut ttfb, mut rtt, mut reconnect) = (
        histogram(),
        histogram(),
        histogram(),
        histogram(),
        histogram(),
    );
    let mut second_hs = histogram();
    let mut timeline = Vec::new();
    let mut next_second = shared.start + Duration::from_secs(1);
    let mut next_report = real_start;
    let mut figures = ClientFigures {
        attempts: attempts.len() as u64,
        ..ClientFigures::default()
    };
    let (mut connected_now, mut arrived, mut gave_up) = (0u64, 0u64, 0u64);
    let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
    let mut send_errors = 0u64;
    let mut next_settle_check = shared.start;
    let mut cookies = 0u64;

    macro_rules! send_all {
        ($a:expr, $user:expr) => {{
            let socket = &users[$user as usize].socket;
            $a.transmit(|d| {
                if socket.send_to(d, shared.server).is_err() {
                    send_errors += 1;
                }
            });
        }};
    }
    macro_rules! rearm {
        ($i:expr) => {{
            let a = &mut attempts[$i as usize];
            let d = a.deadline();
            if d != a.armed {
                a.armed = d;
                if let Some(d) = d {
                    heap.push(Reverse((d, $i, Job::Tunnel)));
                }
            }
        }};
    }

    loop {
        let now = vnow();
        // Arrivals due.
        while next_arrival < attempts.len()
            && shared.start + attempts[next_arrival].arrival.at <= now
        {
            let i = next_arrival as u32;
            next_arrival += 1;
            let user = attempts[i as usize].arrival.user;
            // A user coming back drops whatever it had.
            if let Some(prev) = users[user as usize].current.replace(i) {
                let p = &mut attempts[prev as usize];
                if p.state == State::Connected {
                    connected_now -= 1;
                }
                p.leave();
            }
            let a = &mut attempts[i as usize];
            a.start(now);
            arrived += 1;
            send_all!(a, user);
            if let Some(leave) = a.arrival.leave_at {
                heap.push(Reverse((shared.start + leave, i, Job::Leave)));
            }
            rearm!(i);
        }
        // Timers due.
        while let Some(Reverse((at, i, job))) = heap.peek().copied() {
            if at > now {
                break;
            }
            heap.pop();
            let a = &mut attempts[i as usize];
            let user = a.arrival.user;
            match job {
                Job::Tunnel if a.armed == Some(at) => {
                    a.armed = None;
                    let before = a.state;
                    a.on_timeout(now);
                    if a.state == State::GaveUp && before != State::GaveUp {
                        gave_up += 1;
                    }
                }
                Job::Tunnel => continue,
                Job::Echo if a.next_echo == Some(at) => {
                    let ip = users[user as usize].tunnel_ip;
                    a.on_echo(now, shared, ip);
                    if let Some(n) = a.next_echo {
                        heap.push(Reverse((n, i, Job::Echo)));
                    }
                }
                Job::Echo => continue,
                Job::Leave => {
                    if a.state == State::Connected {
                        connected_now -= 1;
                    }
                    a.leave();
                    if users[user as usize].current == Some(i) {
                        users[user as usize].current = None;
                    }
                    continue;
                }
            }
            send_all!(attempts[i as usize], user);
            rearm!(i);
        }
        // One-second windows for the timeline.
        while now >= next_second {
            timeline.push(Second {
                t: next_second.duration_since(shared.start).as_secs_f64(),
                arrived,
                connected: connected_now,
                handshakes: second_hs.len(),
                handshake_ms: Summary::of_micros(&second_hs),
                ..Second::default()
            });
            second_hs.reset();
            next_second += Duration::from_secs(1);
        }
        figures.peak_connected = figures.peak_connected.max(connected_now);
        if Instant::now() >= next_report {
            next_report += Duration::from_millis(250);
            progress(Progress {
                arrived,
                connected: connected_now,
                failed: gave_up,
                cookies,
                elapsed: now.saturating_duration_since(shared.start).as_secs_f64(),
            });
        }
        // Done when everyone has arrived and settled (checked every 100 ms: it walks every
        // attempt), or at the bound.
        if now >= end_by {
            break;
        }
        if next_arrival == attempts.len() && now >= next_settle_check {
            next_settle_check = now + Duration::from_millis(100);
            if attempts.iter().all(|a| settled(a, now)) {
                break;
            }
        }
        // Wait for datagrams until the next thing is due (at most 20 ms, to settle-check).
        let mut wake = now + Duration::from_millis(20);
        if let Some(Reverse((at, _, _))) = heap.peek() {
            wake = wake.min(*at);
        }
        if let Some(a) = attempts.get(next_arrival) {
            wake = wake.min(shared.start + a.arrival.at);
        }
        let timeout = wake.saturating_duration_since(vnow());
        let ms = timeout.as_micros().div_ceil(1000) as i32;
        let n = epoll.wait(&mut events, ms);
        let now = vnow();
        for ev in &events[..n] {
            let u = ev.u64 as usize;
            while let Ok((len, _)) = users[u].socket.recv_from(&mut buf) {
                let Some(i) = users[u].current else {
                    *dropped.entry("no_current_attempt".into()).or_default() += 1;
                    continue;
                };
                let a = &mut attempts[i as usize];
                let cookies_before = a.cookies;
                let result = a.on_datagram(now, shared, &mut buf[..len]);
                cookies += u64::from(a.cookies - cookies_before);
                match result {
                    Ok(h) => {
                        if h.connected {
                            connected_now += 1;
                            if let Some(t) = a.handshake_time() {
                                hs.record(micros(t)).ok();
                                second_hs.record(micros(t)).ok();
                                if a.first_attempt() {
                                    first.record(micros(t)).ok();
                                }
                                if a.arrival.phase == Phase::Reconnect {
                                    reconnect.record(micros(t)).ok();
                                }
                            }
                            if let Some(e) = a.next_echo {
                                heap.push(Reverse((e, i, Job::Echo)));
                            }
                        }
                        if h.first_byte {
                            if let (Some(b), Some(s)) = (a.first_byte_at, a.first_sent) {
                                ttfb.record(micros(b.saturating_duration_since(s))).ok();
                            }
                        }
                        if let Some(r) = h.echo_rtt {
                            rtt.record(micros(r)).ok();
                        }
                    }
                    Err(e) => *dropped.entry(drop_reason(&e).into()).or_default() += 1,
                }
                send_all!(attempts[i as usize], u as u32);
                rearm!(i);
            }
        }
    }
    let end = vnow();
    if send_errors > 0 {
        dropped.insert("send_refused_by_kernel".into(), send_errors);
    }

    // Totals.
    let mut kbps = histogram();
    let traffic_s = shared.traffic_for.as_secs_f64().max(1e-3);
    for a in attempts.iter() {
        figures.initiations_sent += u64::from(a.initiations);
        figures.retries += u64::from(a.initiations.saturating_sub(1));
        figures.cookie_replies += u64::from(a.cookies);
        figures.bytes_sent += a.bytes_sent;
        figures.bytes_received += a.bytes_received;
        if a.connected_at.is_some() {
            figures.connected += 1;
            if a.first_attempt() {
                figures.connected_first_attempt += 1;
            }
            if shared.echo_every.is_some() {
                kbps.record(((a.bytes_received * 8) as f64 / traffic_s / 1e3).max(1.0) as u64)
                    .ok();
            }
        }
        if a.first_byte_at.is_some() {
            figures.first_byte += 1;
        }
        if let Some(f) = a.failure() {
            *figures.failures.entry(f.into()).or_default() += 1;
        }
    }
    figures.dropped = dropped;
    Ok(Measured {
        clients: figures,
        latency: Latencies {
            handshake_ms: Summary::of_micros(&hs),
            first_attempt_ms: Summary::of_micros(&first),
            first_byte_ms: Summary::of_micros(&ttfb),
            rtt_ms: Summary::of_micros(&rtt),
            client_kbps: Summary::scaled(&kbps, 1.0),
            reconnect_ms: (!reconnect.is_empty()).then(|| Summary::of_micros(&reconnect)),
        },
        timeline,
        duration_s: end.saturating_duration_since(shared.start).as_secs_f64(),
    })
}

/// An attempt needs nothing more from the run: it left, gave up, or is connected with its
/// traffic done and its first echo back (or given up on after 5 s).
fn settled(a: &Attempt, now: Instant) -> bool {
    match a.state {
        State::Left | State::GaveUp => true,
        State::Connected => {
            let traffic_done = a.traffic_until.is_none_or(|t| now >= t);
            let echo_done = a.first_byte_at.is_some()
                || a.connected_at
                    .is_some_and(|c| now >= c + Duration::from_secs(5));
            traffic_done && echo_done
        }
        _ => false,
    }
}
