//! A handshake flood and the logins that must get through it.
//!
//! `flood` sends, from many source addresses, initiations forged to cost a responder a
//! Diffie-Hellman (random ephemeral and ciphertext under a valid MAC1) mixed with replays of
//! real initiations, at a fixed rate for a fixed time. `logins` runs legitimate initiators
//! (real keys, the `proto` handshake), one initiation each, and records what came back first.
//! Both only send to the address they are given (a namespace the caller created).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use proto::cookie::CookieJar;
use proto::handshake::{consume_response, create_initiation, LocalIdentity, RemotePeer};
use proto::tai64n::Tai64N;
use proto::wire::Message;
use proto::{PrivateKey, PublicKey};
use rand_core::{OsRng, RngCore};

/// What `flood` sends.
pub struct FloodPlan {
    /// The responder.
    pub server: SocketAddr,
    /// The responder's public key (MAC1 is computed from it).
    pub server_key: PublicKey,
    /// Addresses to send from (each must be assigned in the sender's namespace).
    pub sources: Vec<Ipv4Addr>,
    /// Forged initiations per second.
    pub forged_per_second: u32,
    /// Real initiations to replay over and over.
    pub replays: Vec<[u8; 148]>,
    /// Replayed initiations per second.
    pub replayed_per_second: u32,
    /// How long to send.
    pub duration: Duration,
}

/// What `flood` sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct FloodSent {
    /// Forged initiations sent.
    pub forged: u64,
    /// Replayed initiations sent.
    pub replayed: u64,
    /// Sends the kernel refused (socket buffer full).
    pub refused: u64,
}

/// A fast generator for forged bytes (they only need to look random, not be secret).
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Fills `out` with random bytes.
    pub(crate) fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let b = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

fn bind_all(sources: &[Ipv4Addr]) -> Result<Vec<UdpSocket>> {
    sources
        .iter()
        .map(|a| {
            let s = UdpSocket::bind(SocketAddrV4::new(*a, 0))
                .with_context(|| format!("binding a socket to {a}"))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect()
}

/// Sends the plan's flood, paced every millisecond; returns what was sent.
pub fn flood(plan: &FloodPlan) -> Result<FloodSent> {
    let sockets = bind_all(&plan.sources)?;
    anyhow::ensure!(!sockets.is_empty(), "the flood needs source addresses");
    let mut jar = CookieJar::for_recipient(&plan.server_key);
    let mut rng = XorShift(OsRng.next_u64() | 1);
    let mut sent = FloodSent::default();
    let start = Instant::now();
    let mut next_socket = 0usize;
    while start.elapsed() < plan.duration {
        let t = start.elapsed().as_secs_f64();
        let forged_due = (t * f64::from(plan.forged_per_second)) as u64;
        let replay_due = if plan.replays.is_empty() {
            0
        } else {
            (t * f64::from(plan.replayed_per_second)) as u64
        };
        let mut send = |message: &[u8], sent: &mut FloodSent| {
            let socket = &sockets[next_socket % sockets.len()];
            next_socket += 1;
            if socket.send_to(message, plan.server).is_err() {
                sent.refused += 1;
            }
        };
        // Forged and replayed interleave one for one while both are due.
        while sent.forged < forged_due || sent.replayed < replay_due {
            if sent.forged < forged_due {
                let mut message = [0u8; 148];
                message[0] = 1;
                rng.fill(&mut message[4..116]);
                jar.stamp(&mut message, Instant::now());
                sent.forged += 1;
                send(&message, &mut sent);
            }
            if sent.replayed < replay_due {
                let replay = plan.replays[(sent.replayed as usize) % plan.replays.len()];
                sent.replayed += 1;
                send(&replay, &mut sent);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(sent)
}

/// `count` real initiations from `key` to the server, with ascending timestamps, MAC1 set.
pub fn real_initiations(key: &PrivateKey, server_key: PublicKey, count: usize) -> Vec<[u8; 148]> {
    let local = LocalIdentity::new(key);
    let remote = RemotePeer::new(&local, server_key, None);
    let mut jar = CookieJar::for_recipient(&server_key);
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (0..count)
        .filter_map(|i| {
            let ts = Tai64N::from_unix(unix + Duration::from_millis(i as u64));
            let (_, mut m) =
                create_initiation(&local, &remote, OsRng.next_u32(), ts, &mut OsRng).ok()?;
            jar.stamp(&mut m, Instant::now());
            Some(m)
        })
        .collect()
}

/// What came back first for one login.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FirstReply {
    /// A response that completed the handshake, after this long.
    Answered(Duration),
    /// A cookie reply (the client would now wait REKEY_TIMEOUT before trying again).
    CookieReply(Duration),
    /// A reply that did not authenticate.
    Bad,
    /// Nothing within the timeout.
    Nothing,
}

/// Legitimate initiators: one initiation each, started `spacing` apart after `delay`.
pub struct LoginPlan {
    /// The responder.
    pub server: SocketAddr,
    /// The responder's public key.
    pub server_key: PublicKey,
    /// Each client's key and the address it sends from.
    pub clients: Vec<(PrivateKey, Ipv4Addr)>,
    /// Wait before the first login.
    pub delay: Duration,
    /// Time between logins.
    pub spacing: Duration,
    /// How long a client waits for its first reply (a standard client retries after 5 s).
    pub timeout: Duration,
}

struct Pending {
    socket: usize,
    local: LocalIdentity,
    remote: RemotePeer,
    state: Option<proto::handshake::InitiatorHandshake>,
    sent_at: Option<Instant>,
    result: Option<FirstReply>,
}

/// Runs the logins; returns each client's first reply, in client order. Clients that share
/// an address share its socket (replies are told apart by their receiver index), so tens of
/// thousands of clients need only as many sockets as addresses.
pub fn logins(plan: &LoginPlan) -> Result<Vec<FirstReply>> {
    let mut addresses: Vec<Ipv4Addr> = plan.clients.iter().map(|c| c.1).collect();
    addresses.sort();
    addresses.dedup();
    let sockets = bind_all(&addresses)?;
    let mut clients: Vec<Pending> = plan
        .clients
        .iter()
        .map(|(key, addr)| {
            let local = LocalIdentity::new(key);
            let remote = RemotePeer::new(&local, plan.server_key, None);
            Pending {
                socket: addresses.binary_search(addr).unwrap_or(0),
                local,
                remote,
                state: None,
                sent_at: None,
                result: None,
            }
        })
        .collect();
    // Sender index -> client; client i uses index i + 1 (unique within the run).
    let start = Instant::now();
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut jar = CookieJar::for_recipient(&plan.server_key);
    let mut started = 0;
    let mut waiting = 0usize;
    let mut buf = [0u8; 256];
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while started < clients.len() || waiting > 0 {
        let now = Instant::now();
        // Start whoever is due.
        while started < clients.len()
            && now >= start + plan.delay + plan.spacing.mul_f64(started as f64)
        {
            let c = &mut clients[started];
            let ts = Tai64N::from_unix(unix + now.duration_since(start));
            let index = started as u32 + 1;
            let (state, mut m) = create_initiation(&c.local, &c.remote, index, ts, &mut OsRng)
                .map_err(|e| anyhow::anyhow!("initiation: {e}"))?;
            jar.stamp(&mut m, now);
            sockets[c.socket]
                .send_to(&m, plan.server)
                .context("sending an initiation")?;
            c.state = Some(state);
            c.sent_at = Some(Instant::now());
            started += 1;
            waiting += 1;
        }
        for fd in &mut fds {
            fd.revents = 0;
        }
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1) };
        for (socket, fd) in sockets.iter().zip(&fds) {
            if fd.revents & libc::POLLIN == 0 {
                continue;
            }
            while let Ok((n, _)) = socket.recv_from(&mut buf) {
                let (receiver, reply) = match Message::parse(&buf[..n]) {
                    Ok(Message::Response(r)) => (r.receiver, Some(r)),
                    Ok(Message::CookieReply(c)) => (c.receiver, None),
                    _ => continue,
                };
                let Some(c) = (receiver as usize)
                    .checked_sub(1)
                    .and_then(|i| clients.get_mut(i))
                else {
                    continue;
                };
                let (Some(sent_at), None) = (c.sent_at, c.result) else {
                    continue;
                };
                let elapsed = sent_at.elapsed();
                c.result = Some(match (reply, &c.state) {
                    (Some(r), Some(s)) if consume_response(s, &c.local, &c.remote, &r).is_ok() => {
                        FirstReply::Answered(elapsed)
                    }
                    (Some(_), _) => FirstReply::Bad,
                    (None, _) => FirstReply::CookieReply(elapsed),
                });
                waiting -= 1;
            }
        }
        for c in clients.iter_mut() {
            if c.result.is_none() && c.sent_at.is_some_and(|t| t.elapsed() > plan.timeout) {
                c.result = Some(FirstReply::Nothing);
                waiting -= 1;
            }
        }
    }
    Ok(clients
        .into_iter()
        .map(|c| c.result.unwrap_or(FirstReply::Nothing))
        .collect())
}
