//! The event loop that drives one thread's share of the simulated users: arrivals from the
//! schedule, tunnel timers from a heap, datagrams from epoll over the users' UDP sockets.
//! Each user has a socket of its own (its own source address and port) unless the process
//! may not open that many files; then a few users share one, and replies are told apart by
//! their receiver index, which the user chose. Measures as it goes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use crate::client::{drop_reason, Attempt, Shared, State};
use crate::epoll::Epoll;
use crate::results::ClientFigures;
use crate::schedule::Phase;
use crate::tally::{Histograms, Tally, Window};
use anyhow::{Context, Result};

/// A socket bound to `source` (any free port), for one or more users.
pub fn bind_endpoint(source: Ipv4Addr) -> Result<UdpSocket> {
    let socket = UdpSocket::bind(SocketAddrV4::new(source, 0))
        .with_context(|| format!("binding a user socket to {source}"))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// One simulated user.
pub struct User {
    /// Index of its socket.
    pub endpoint: u32,
    /// Its tunnel address (assigned by the server's registry, or by the harness).
    pub tunnel_ip: Ipv4Addr,
    current: Option<u32>,
}

impl User {
    /// A user sending through socket `endpoint`.
    pub fn new(endpoint: u32, tunnel_ip: Ipv4Addr) -> Self {
        Self {
            endpoint,
            tunnel_ip,
            current: None,
        }
    }
}

/// The receiver index of a datagram sent to us (response, cookie reply, transport).
fn receiver_index(d: &[u8]) -> Option<u32> {
    let at = match d.first()? {
        2 => 8,
        3 | 4 => 4,
        _ => return None,
    };
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

/// The sender index of a handshake message we send (initiation or response).
fn sender_index(d: &[u8]) -> Option<u32> {
    match d.first()? {
        1 | 2 => Some(u32::from_le_bytes(d.get(4..8)?.try_into().ok()?)),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Job {
    Tunnel,
    Echo,
    Leave,
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

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// One run's state: the users' sockets and attempts, the timer heap, the routes replies
/// take on shared sockets, and what has been measured so far.
struct Run<'a> {
    sockets: &'a [UdpSocket],
    users: &'a mut [User],
    attempts: &'a mut [Attempt],
    shared: &'a Shared,
    /// (socket, index we chose) -> attempt: how replies on a shared socket find their user.
    routes: HashMap<(u32, u32), u32>,
    /// A socket with one user routes everything to it (initiations from the server too,
    /// which name no receiver); shared sockets route by receiver index.
    alone: Vec<Option<u32>>,
    sharing: Vec<u32>,
    heap: BinaryHeap<Reverse<(Instant, u32, Job)>>,
    next_arrival: usize,
    histograms: Histograms,
    /// Handshake times (µs) completed in the current one-second window.
    this_second: Vec<u64>,
    timeline: Vec<Window>,
    next_second: Instant,
    figures: ClientFigures,
    connected_now: u64,
    arrived: u64,
    gave_up: u64,
    cookies: u64,
    send_errors: u64,
    dropped: BTreeMap<String, u64>,
}

impl<'a> Run<'a> {
    fn new(
        sockets: &'a [UdpSocket],
        users: &'a mut [User],
        attempts: &'a mut [Attempt],
        shared: &'a Shared,
    ) -> Self {
        let mut alone: Vec<Option<u32>> = vec![None; sockets.len()];
        let mut sharing = vec![0u32; sockets.len()];
        for (u, user) in users.iter().enumerate() {
            sharing[user.endpoint as usize] += 1;
            alone[user.endpoint as usize] = Some(u as u32);
        }
        let figures = ClientFigures {
            attempts: attempts.len() as u64,
            ..ClientFigures::default()
        };
        Self {
            routes: HashMap::with_capacity(attempts.len()),
            sockets,
            users,
            attempts,
            shared,
            alone,
            sharing,
            heap: BinaryHeap::new(),
            next_arrival: 0,
            histograms: Histograms::default(),
            this_second: Vec::new(),
            timeline: Vec::new(),
            next_second: shared.start + Duration::from_secs(1),
            figures,
            connected_now: 0,
            arrived: 0,
            gave_up: 0,
            cookies: 0,
            send_errors: 0,
            dropped: BTreeMap::new(),
        }
    }

    /// Sends what attempt `i` has queued, remembering the indices it chose.
    fn send(&mut self, i: u32) {
        let endpoint = self.users[self.attempts[i as usize].arrival.user as usize].endpoint;
        let socket = &self.sockets[endpoint as usize];
        let (routes, errors, server) =
            (&mut self.routes, &mut self.send_errors, self.shared.server);
        self.attempts[i as usize].transmit(|d| {
            if let Some(index) = sender_index(d) {
                routes.insert((endpoint, index), i);
            }
            if socket.send_to(d, server).is_err() {
                *errors += 1;
            }
        });
    }

    /// Puts attempt `i`'s next tunnel deadline on the heap if it changed.
    fn rearm(&mut self, i: u32) {
        let a = &mut self.attempts[i as usize];
        let d = a.deadline();
        if d != a.armed {
            a.armed = d;
            if let Some(d) = d {
                self.heap.push(Reverse((d, i, Job::Tunnel)));
            }
        }
    }

    /// Starts every attempt whose arrival is due.
    fn arrivals(&mut self, now: Instant) {
        while self.next_arrival < self.attempts.len()
            && self.shared.start + self.attempts[self.next_arrival].arrival.at <= now
        {
            let i = self.next_arrival as u32;
            self.next_arrival += 1;
            let user = self.attempts[i as usize].arrival.user;
            // A user coming back drops whatever it had.
            if let Some(prev) = self.users[user as usize].current.replace(i) {
                let p = &mut self.attempts[prev as usize];
                if p.state == State::Connected {
                    self.connected_now -= 1;
                }
                p.leave();
            }
            self.attempts[i as usize].start(now);
            self.arrived += 1;
            self.send(i);
            if let Some(leave) = self.attempts[i as usize].arrival.leave_at {
                self.heap
                    .push(Reverse((self.shared.start + leave, i, Job::Leave)));
            }
            self.rearm(i);
        }
    }

    /// Runs every timer due: tunnel deadlines, echoes, departures.
    fn timers(&mut self, now: Instant) {
        while let Some(Reverse((at, i, job))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            let a = &mut self.attempts[i as usize];
            let user = a.arrival.user as usize;
            match job {
                Job::Tunnel if a.armed == Some(at) => {
                    a.armed = None;
                    let before = a.state;
                    a.on_timeout(now);
                    if a.state == State::GaveUp && before != State::GaveUp {
                        self.gave_up += 1;
                    }
                }
                Job::Echo if a.next_echo == Some(at) => {
                    a.on_echo(now, self.shared, self.users[user].tunnel_ip);
                    if let Some(n) = a.next_echo {
                        self.heap.push(Reverse((n, i, Job::Echo)));
                    }
                }
                Job::Leave => {
                    if a.state == State::Connected {
                        self.connected_now -= 1;
                    }
                    a.leave();
                    if self.users[user].current == Some(i) {
                        self.users[user].current = None;
                    }
                    continue;
                }
                // A deadline or echo superseded since it was pushed.
                Job::Tunnel | Job::Echo => continue,
            }
            self.send(i);
            self.rearm(i);
        }
    }

    /// Closes the one-second timeline windows that have ended.
    fn windows(&mut self, now: Instant) {
        while now >= self.next_second {
            let t = self.next_second.duration_since(self.shared.start);
            let handshakes = std::mem::take(&mut self.this_second);
            self.timeline
                .push(window(t, self.arrived, self.connected_now, handshakes));
            self.next_second += Duration::from_secs(1);
        }
        self.figures.peak_connected = self.figures.peak_connected.max(self.connected_now);
    }

    fn progress(&self, now: Instant) -> Progress {
        Progress {
            arrived: self.arrived,
            connected: self.connected_now,
            failed: self.gave_up,
            cookies: self.cookies,
            elapsed: now
                .saturating_duration_since(self.shared.start)
                .as_secs_f64(),
        }
    }

    /// When the loop must look again: the next timer or arrival, at most 20 ms away.
    fn wake(&self, now: Instant) -> Instant {
        let mut wake = now + Duration::from_millis(20);
        if let Some(Reverse((at, _, _))) = self.heap.peek() {
            wake = wake.min(*at);
        }
        if let Some(a) = self.attempts.get(self.next_arrival) {
            wake = wake.min(self.shared.start + a.arrival.at);
        }
        wake
    }

    /// Everyone has arrived and settled.
    fn all_settled(&self, now: Instant) -> bool {
        self.next_arrival == self.attempts.len() && self.attempts.iter().all(|a| settled(a, now))
    }

    /// Hands every datagram waiting on socket `e` to its attempt.
    fn receive(&mut self, e: u32, now: Instant, buf: &mut [u8]) {
        while let Ok((len, _)) = self.sockets[e as usize].recv_from(buf) {
            let route = match self.alone[e as usize] {
                Some(u) if self.sharing[e as usize] == 1 => self.users[u as usize].current,
                _ => receiver_index(&buf[..len])
                    .and_then(|r| self.routes.get(&(e, r)))
                    .copied(),
            };
            let Some(i) = route else {
                let why = if self.sharing[e as usize] == 1 {
                    "to_a_user_who_left"
                } else {
                    "unknown_receiver"
                };
                *self.dropped.entry(why.into()).or_default() += 1;
                continue;
            };
            self.deliver(i, now, &mut buf[..len]);
            self.send(i);
            self.rearm(i);
        }
    }

    /// One datagram to attempt `i`, and what it measured.
    fn deliver(&mut self, i: u32, now: Instant, datagram: &mut [u8]) {
        let a = &mut self.attempts[i as usize];
        let cookies_before = a.cookies;
        let result = a.on_datagram(now, self.shared, datagram);
        self.cookies += u64::from(a.cookies - cookies_before);
        let h = match result {
            Ok(h) => h,
            Err(e) => {
                *self.dropped.entry(drop_reason(&e).into()).or_default() += 1;
                return;
            }
        };
        let hist = &mut self.histograms;
        if h.connected {
            self.connected_now += 1;
            if let Some(t) = a.handshake_time() {
                hist.handshake.record(micros(t)).ok();
                self.this_second.push(micros(t));
                if a.first_attempt() {
                    hist.first_attempt.record(micros(t)).ok();
                }
                if a.arrival.phase == Phase::Reconnect {
                    hist.reconnect.record(micros(t)).ok();
                }
            }
            if let Some(e) = a.next_echo {
                self.heap.push(Reverse((e, i, Job::Echo)));
            }
        }
        if h.first_byte {
            if let (Some(b), Some(s)) = (a.first_byte_at, a.first_sent) {
                hist.first_byte
                    .record(micros(b.saturating_duration_since(s)))
                    .ok();
            }
        }
        if let Some(r) = h.echo_rtt {
            hist.rtt.record(micros(r)).ok();
        }
    }

    /// The totals, once the loop has ended at `end`.
    fn finish(mut self, end: Instant) -> Tally {
        // The last, partial window.
        let tail = end.saturating_duration_since(self.next_second - Duration::from_secs(1));
        if !tail.is_zero() {
            let t = end.saturating_duration_since(self.shared.start);
            let handshakes = std::mem::take(&mut self.this_second);
            self.timeline
                .push(window(t, self.arrived, self.connected_now, handshakes));
        }
        if self.send_errors > 0 {
            self.dropped
                .insert("send_refused_by_kernel".into(), self.send_errors);
        }
        let kbps = &mut self.histograms.kbps;
        let traffic_s = self.shared.traffic_for.as_secs_f64().max(1e-3);
        let figures = &mut self.figures;
        for a in self.attempts.iter() {
            figures.initiations_sent += u64::from(a.initiations);
            figures.retries += u64::from(a.retries());
            figures.cookie_replies += u64::from(a.cookies);
            figures.bytes_sent += a.bytes_sent;
            figures.bytes_received += a.bytes_received;
            if a.connected_at.is_some() {
                figures.connected += 1;
                if a.first_attempt() {
                    figures.connected_first_attempt += 1;
                }
                if self.shared.echo_every.is_some() {
                    let k = (a.bytes_received * 8) as f64 / traffic_s / 1e3;
                    kbps.record(k.max(1.0) as u64).ok();
                }
            }
            if a.first_byte_at.is_some() {
                figures.first_byte += 1;
            }
            if let Some(f) = a.failure() {
                *figures.failures.entry(f.into()).or_default() += 1;
            }
        }
        let resumed = match self.shared.fail_at() {
            Some(f) => self
                .attempts
                .iter()
                .filter_map(|a| a.resumed_after(f))
                .collect(),
            None => Vec::new(),
        };
        figures.dropped = self.dropped;
        Tally {
            figures: self.figures,
            histograms: self.histograms,
            windows: self.timeline,
            elapsed: end.saturating_duration_since(self.shared.start),
            resumed,
        }
    }
}

/// Runs the attempts (sorted by arrival) to the end: every attempt settled or `bound`
/// passed. `shared.start` must lie in the future of the virtual clock origin given by
/// `virtual_now` at the moment `run` is called.
pub fn run(
    sockets: &[UdpSocket],
    users: &mut [User],
    attempts: &mut [Attempt],
    shared: &Shared,
    bound: Duration,
    mut progress: impl FnMut(Progress),
) -> Result<Tally> {
    let epoll = Epoll::new(sockets)?;
    let mut run = Run::new(sockets, users, attempts, shared);
    // The virtual clock: offset zero of the schedule is `shared.start`, at the driver's
    // origin (so every thread, and a failure, keep one clock), or now.
    let real_start = shared.origin.unwrap_or_else(Instant::now);
    let vnow = || shared.start + real_start.elapsed();
    let end_by = shared.start + bound;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = vec![0u8; 2048];
    let mut next_report = real_start;
    let mut next_settle_check = shared.start;
    loop {
        let now = vnow();
        run.arrivals(now);
        run.timers(now);
        run.windows(now);
        if Instant::now() >= next_report {
            next_report += Duration::from_millis(250);
            progress(run.progress(now));
        }
        // Done when everyone has arrived and settled (checked every 100 ms: it walks every
        // attempt), or at the bound.
        if now >= end_by {
            break;
        }
        if now >= next_settle_check {
            next_settle_check = now + Duration::from_millis(100);
            if run.all_settled(now) {
                break;
            }
        }
        // Wait for datagrams until the next thing is due.
        let timeout = run.wake(now).saturating_duration_since(vnow());
        let n = epoll.wait(&mut events, timeout.as_micros().div_ceil(1000) as i32);
        let now = vnow();
        for ev in &events[..n] {
            run.receive(ev.u64 as u32, now, &mut buf);
        }
    }
    Ok(run.finish(vnow()))
}

/// The window ending `t` into the run.
fn window(t: Duration, arrived: u64, connected: u64, handshakes: Vec<u64>) -> Window {
    Window {
        t,
        arrived,
        connected,
        handshakes,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_read_where_each_message_keeps_them() {
        let mut response = [0u8; 92];
        response[0] = 2;
        response[4..8].copy_from_slice(&7u32.to_le_bytes());
        response[8..12].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(receiver_index(&response), Some(9));
        assert_eq!(
            sender_index(&response),
            Some(7),
            "a response we send names our index"
        );
        let mut initiation = [0u8; 148];
        initiation[0] = 1;
        initiation[4..8].copy_from_slice(&5u32.to_le_bytes());
        assert_eq!(sender_index(&initiation), Some(5));
        assert_eq!(
            receiver_index(&initiation),
            None,
            "initiations carry no receiver"
        );
        for kind in [3u8, 4] {
            let mut m = [0u8; 64];
            m[0] = kind;
            m[4..8].copy_from_slice(&11u32.to_le_bytes());
            assert_eq!(receiver_index(&m), Some(11));
            assert_eq!(sender_index(&m), None);
        }
        assert_eq!(receiver_index(&[2, 0, 0]), None, "truncated");
        assert_eq!(receiver_index(&[]), None);
    }
}
