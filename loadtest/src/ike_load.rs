//! Simulated IKEv2 users beside the WireGuard ones: each logs in with the `ike` crate's
//! `Login` (IKE_SA_INIT, then IKE_AUTH by EAP-MSCHAPv2, an ECDSA certificate or a pre-shared
//! key, the server's certificate checked) from a socket and source address of its own, then
//! pings the server through its CHILD_SA's ESP (in UDP to 4500, once a second as ping does)
//! until a reply. Requests are sent again after 1 s, doubling, five times in all. Runs on a
//! thread of its own, arrivals spread evenly over the window; measures setup and first-byte
//! times by login method.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use ike::esp::{Inbound, Outbound, ESP_HEADROOM, ESP_TAILROOM, NEXT_IPV4};
use ike::{Credentials, DhGroup, Endpoints, Identity, Login, LoginConfig, LoginStep, Policy};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::echo;
use crate::epoll::Epoll;
use crate::results::Summary;

/// The non-ESP marker in front of IKE on the NAT-T port (RFC 3948).
const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// First retransmission timeout (doubled each time) and sendings in all.
const RETRANSMIT: Duration = Duration::from_secs(1);
const TRIES: u32 = 5;

/// One IKEv2 user to simulate.
#[derive(Debug, Clone)]
pub struct IkeUserSpec {
    /// How it logs in, as the scenario names it ("eap", "cert", "psk").
    pub method: &'static str,
    /// Its IKE identity (IDi).
    pub identity: String,
    /// How it logs in.
    pub credentials: Credentials,
    /// Its source address.
    pub source: Ipv4Addr,
}

/// What the IKEv2 users measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IkeFigures {
    /// Users simulated.
    pub users: u64,
    /// How they logged in ("eap", "cert", "psk").
    pub auth: String,
    /// The server that answered them (empty in files from before the field: the run's
    /// target).
    #[serde(default)]
    pub server: String,
    /// Logged in.
    pub connected: u64,
    /// Whose echo came back through ESP.
    pub first_byte: u64,
    /// Refused by the server, by its error notify number.
    pub refused: u64,
    /// Gave up after their retransmissions, or failed a response.
    pub failed: u64,
    /// Requests sent again.
    pub retransmissions: u64,
    /// First IKE_SA_INIT to the end of IKE_AUTH, milliseconds.
    pub setup_ms: Summary,
    /// Login to the first echo reply through ESP, milliseconds.
    pub first_byte_ms: Summary,
    /// Side by side only: the server's CPU seconds (all its threads) over these logins.
    #[serde(default)]
    pub server_cpu_s: f64,
    /// Side by side only: what the server spends idle over as long (its rate measured just
    /// before), part of `server_cpu_s`.
    #[serde(default)]
    pub idle_cpu_s: f64,
    /// Side by side only: `server_cpu_s` by thread name (clock ticks), where it went.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub cpu_by_thread: std::collections::BTreeMap<String, f64>,
    /// Side by side only: the server's resident memory growth per user logged in (one IKE
    /// SA with its CHILD_SA), bytes.
    #[serde(default)]
    pub bytes_per_sa: f64,
}

impl IkeFigures {
    /// Logins per second of the server's CPU net of its idle spending (side by side only; 0
    /// when not measured).
    pub fn setups_per_cpu_s(&self) -> f64 {
        let net = self.server_cpu_s - self.idle_cpu_s;
        if net > 0.0 {
            self.connected as f64 / net
        } else {
            0.0
        }
    }
}

/// Where a user stands.
enum Stage {
    Waiting,
    LoggingIn {
        login: Box<Login>,
        sent: u32,
        next: Instant,
    },
    Connected {
        out: Box<Outbound>,
        inbound: Box<Inbound>,
        /// The user's tunnel address.
        src: Ipv4Addr,
        since: Instant,
        /// When the echo goes again if no reply came (as ping does, once a second).
        next_echo: Instant,
    },
    Done,
}

struct User {
    /// Its method's place in the figures.
    method: usize,
    at: Instant,
    started: Option<Instant>,
    stage: Stage,
}

fn histogram() -> Histogram<u64> {
    // Microseconds up to an hour, three significant figures (as the WireGuard side).
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("a histogram"))
}

/// Sends an IKE request: to 500 before the float, then to 4500 behind the marker.
fn send_ike(socket: &UdpSocket, server: Ipv4Addr, login: &Login) {
    let _ = if login.floated {
        let mut d = NON_ESP_MARKER.to_vec();
        d.extend_from_slice(&login.request);
        socket.send_to(&d, SocketAddr::from((server, 4500)))
    } else {
        socket.send_to(&login.request, SocketAddr::from((server, 500)))
    };
}

/// Runs `users` (arriving evenly over `window` from `start`) against the server at
/// `server` (its tunnel address `server_ip`), for at most `bound`; figures by method, in
/// the order the methods first appear, each naming `label` as the server.
pub fn run(
    specs: &[IkeUserSpec],
    (server, server_ip, label): (Ipv4Addr, Ipv4Addr, &str),
    (start, window, bound): (Instant, Duration, Duration),
) -> Result<Vec<IkeFigures>> {
    let rng = SystemRandom::new();
    let sockets: Vec<UdpSocket> = specs
        .iter()
        .map(|s| {
            let socket = UdpSocket::bind((s.source, 0))
                .with_context(|| format!("binding an IKEv2 user's socket to {}", s.source))?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })
        .collect::<Result<_>>()?;
    let epoll = Epoll::new(&sockets)?;
    let methods = methods_of(specs);
    let n = specs.len().max(1) as u32;
    let mut users: Vec<User> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| User {
            method: methods.iter().position(|m| *m == s.method).unwrap_or(0),
            at: start + window.mul_f64(i as f64 / f64::from(n)),
            started: None,
            stage: Stage::Waiting,
        })
        .collect();
    let mut figures: Vec<IkeFigures> = methods
        .iter()
        .map(|m| IkeFigures {
            users: specs.iter().filter(|s| s.method == *m).count() as u64,
            auth: m.to_string(),
            server: label.to_string(),
            ..IkeFigures::default()
        })
        .collect();
    let mut times: Vec<(Histogram<u64>, Histogram<u64>)> =
        methods.iter().map(|_| (histogram(), histogram())).collect();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = vec![0u8; 65536];
    let end = start + bound;
    while Instant::now() < end && users.iter().any(|u| !matches!(u.stage, Stage::Done)) {
        let now = Instant::now();
        for (i, u) in users.iter_mut().enumerate() {
            let f = &mut figures[u.method];
            match &mut u.stage {
                Stage::Waiting if now >= u.at => {
                    let login = start_login(&specs[i], &sockets[i], server, &rng)?;
                    send_ike(&sockets[i], server, &login);
                    u.started = Some(now);
                    u.stage = Stage::LoggingIn {
                        login: Box::new(login),
                        sent: 1,
                        next: now + RETRANSMIT,
                    };
                }
                Stage::LoggingIn { login, sent, next } if now >= *next => {
                    if *sent >= TRIES {
                        f.failed += 1;
                        u.stage = Stage::Done;
                    } else {
                        send_ike(&sockets[i], server, login);
                        f.retransmissions += 1;
                        *sent += 1;
                        *next = now + RETRANSMIT * (1 << (*sent - 1));
                    }
                }
                Stage::Connected { since, .. } if now >= *since + Duration::from_secs(5) => {
                    // No echo back within 5 s: counted as connected without a first byte.
                    u.stage = Stage::Done;
                }
                Stage::Connected {
                    out,
                    src,
                    next_echo,
                    ..
                } if now >= *next_echo => {
                    send_echo(&sockets[i], server, (out, *src, server_ip));
                    *next_echo = now + Duration::from_secs(1);
                }
                _ => {}
            }
        }
        let ready = epoll.wait(&mut events, 2);
        for ev in &events[..ready] {
            let i = ev.u64 as usize;
            while let Ok((len, _)) = sockets[i].recv_from(&mut buf) {
                let now = Instant::now();
                let u = &mut users[i];
                let (f, (setup, first)) = (&mut figures[u.method], &mut times[u.method]);
                let to = (&sockets[i], server, server_ip);
                let happened = on_datagram(u, to, &mut buf[..len], now, (&rng, f))?;
                let since_start = u
                    .started
                    .map_or(0, |t0| now.saturating_duration_since(t0).as_micros() as u64);
                let _ = match happened {
                    Some(Milestone::Connected) => setup.record(since_start),
                    Some(Milestone::FirstByte) => first.record(since_start),
                    None => Ok(()),
                };
            }
        }
    }
    for u in &users {
        if matches!(u.stage, Stage::Waiting | Stage::LoggingIn { .. }) {
            figures[u.method].failed += 1;
        }
    }
    for (f, (setup, first)) in figures.iter_mut().zip(&times) {
        f.setup_ms = Summary::of_micros(setup);
        f.first_byte_ms = Summary::of_micros(first);
    }
    Ok(figures)
}

/// The users' login methods, in the order they first appear.
pub fn methods_of(specs: &[IkeUserSpec]) -> Vec<&'static str> {
    let mut methods = Vec::new();
    for s in specs {
        if !methods.contains(&s.method) {
            methods.push(s.method);
        }
    }
    methods
}

/// A user's IKE_SA_INIT: its identity and credentials, the modern proposals, a fresh SPI.
fn start_login(
    s: &IkeUserSpec,
    socket: &UdpSocket,
    server: Ipv4Addr,
    rng: &SystemRandom,
) -> Result<Login> {
    let mut spi = [0u8; 4];
    rng.fill(&mut spi)
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    spi[0] |= 0x80;
    let config = LoginConfig {
        identity: Identity::from_text(&s.identity),
        credentials: s.credentials.clone(),
        policy: Policy::modern(),
        group: DhGroup::Curve25519,
        endpoints: Endpoints {
            local: socket.local_addr()?,
            remote: SocketAddr::from((server, 500)),
            force_nat_t: false,
        },
        esp_spi: spi,
    };
    Login::start(config, rng).map_err(|e| anyhow::anyhow!("IKE_SA_INIT: {e}"))
}

/// What a datagram completed for its user.
enum Milestone {
    Connected,
    FirstByte,
}

/// One datagram for user `u`: the next login step, or ESP carrying the echo reply.
fn on_datagram(
    u: &mut User,
    (socket, server, server_ip): (&UdpSocket, Ipv4Addr, Ipv4Addr),
    datagram: &mut [u8],
    now: Instant,
    (rng, f): (&SystemRandom, &mut IkeFigures),
) -> Result<Option<Milestone>> {
    let is_ike = datagram.starts_with(&NON_ESP_MARKER);
    match &mut u.stage {
        Stage::LoggingIn { login, sent, next } => {
            let ike = if is_ike {
                &datagram[4..]
            } else {
                &datagram[..]
            };
            match login.on_response(ike, rng) {
                Ok(LoginStep::Send) => {
                    send_ike(socket, server, login);
                    *sent = 1;
                    *next = now + RETRANSMIT;
                }
                Ok(LoginStep::Ignored) => {}
                Ok(LoginStep::Established(est, _)) => {
                    f.connected += 1;
                    let child = &est.child;
                    let out = Outbound::new(child.spi_r, &child.suite, &child.i_to_r)
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    let inbound = Inbound::new(child.spi_i, &child.suite, &child.r_to_i)
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    let mut out = Box::new(out);
                    let src = est.assignment.v4.unwrap_or(Ipv4Addr::UNSPECIFIED);
                    send_echo(socket, server, (&mut out, src, server_ip));
                    u.stage = Stage::Connected {
                        out,
                        inbound: Box::new(inbound),
                        src,
                        since: now,
                        next_echo: now + Duration::from_secs(1),
                    };
                    return Ok(Some(Milestone::Connected));
                }
                Ok(LoginStep::Refused(_)) => {
                    f.refused += 1;
                    u.stage = Stage::Done;
                }
                Err(_) => {
                    f.failed += 1;
                    u.stage = Stage::Done;
                }
            }
        }
        Stage::Connected { inbound, .. } if !is_ike => {
            if let Ok(opened) = inbound.open(datagram) {
                if echo::parse_reply(&datagram[opened.inner]).is_some() {
                    f.first_byte += 1;
                    u.stage = Stage::Done;
                    return Ok(Some(Milestone::FirstByte));
                }
            }
        }
        _ => {}
    }
    Ok(None)
}

/// One echo request from `src` to `dst` through ESP in UDP to 4500.
fn send_echo(
    socket: &UdpSocket,
    server: Ipv4Addr,
    (out, src, dst): (&mut Outbound, Ipv4Addr, Ipv4Addr),
) {
    let mut buf = [0u8; 256];
    let inner = echo::request(&mut buf[ESP_HEADROOM..], 64, src, dst, 1, 0, 0).len();
    let at = ESP_HEADROOM..ESP_HEADROOM + inner;
    debug_assert!(at.end + ESP_TAILROOM <= buf.len());
    if let Ok(range) = out.seal(&mut buf, at, NEXT_IPV4) {
        let _ = socket.send_to(&buf[range], SocketAddr::from((server, 4500)));
    }
}
