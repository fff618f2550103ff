//! One simulated user's connection attempt: a real `proto` tunnel (the same state machine
//! the daemon and the tests use: retries after REKEY_TIMEOUT with jitter, cookies, MAC2),
//! plus what the harness measures about it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use proto::tunnel::{Event, Received, Tunnel, TunnelConfig, TunnelError};
use proto::{PrivateKey, PublicKey};
use rand_core::OsRng;

use crate::echo;
use crate::schedule::Arrival;

/// Where an attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Its arrival time has not come.
    Waiting,
    /// Initiation sent, no session yet.
    Connecting,
    /// Handshake completed.
    Connected,
    /// The user dropped this connection (churn, reconnect storm).
    Left,
    /// The tunnel gave up after REKEY_ATTEMPT_TIME.
    GaveUp,
}

/// What happened to an attempt when a datagram or timer was handled.
#[derive(Debug, Default, Clone, Copy)]
pub struct Happened {
    /// The handshake completed just now (the first time for this attempt).
    pub connected: bool,
    /// An echo reply came back: its round trip from its send stamp, if it carried one.
    pub echo_rtt: Option<Duration>,
    /// The first echo reply of the attempt came back.
    pub first_byte: bool,
}

/// One connection attempt by one user.
pub struct Attempt {
    /// The arrival it was made for.
    pub arrival: Arrival,
    /// Where it stands.
    pub state: State,
    tunnel: Option<Box<Tunnel<OsRng>>>,
    /// When its first initiation left (virtual clock).
    pub first_sent: Option<Instant>,
    /// Initiations sent, retries included.
    pub initiations: u32,
    /// Cookie replies accepted.
    pub cookies: u32,
    /// When the handshake completed.
    pub connected_at: Option<Instant>,
    /// Initiations and cookies it took to connect (later rekeys are not retries).
    pub to_connect: (u32, u32),
    /// When the first echo reply came back.
    pub first_byte_at: Option<Instant>,
    /// Inner bytes sent and received.
    pub bytes_sent: u64,
    /// Inner bytes received.
    pub bytes_received: u64,
    /// Next echo request due.
    pub next_echo: Option<Instant>,
    /// Echo requests stop after this.
    pub traffic_until: Option<Instant>,
    /// The tunnel deadline currently in the timer heap.
    pub armed: Option<Instant>,
    /// When the first echo sent after the failure (failover scenarios) came back.
    pub resumed_at: Option<Instant>,
    seq: u16,
}

/// What every attempt of a run shares.
pub struct Shared {
    /// The server's endpoint.
    pub server: SocketAddr,
    /// The server's tunnel address (the echo target).
    pub server_ip: Ipv4Addr,
    /// Inner packet size.
    pub packet_bytes: usize,
    /// Echo interval after the first (None: keepalives only).
    pub echo_every: Option<Duration>,
    /// How long each user sends after connecting.
    pub traffic_for: Duration,
    /// Virtual time of offset zero.
    pub start: Instant,
    /// The Unix time at `start`: every tunnel's TAI64N clock is anchored to the same pair,
    /// so a user's later attempts always carry later timestamps.
    pub unix: Duration,
    /// The real instant of offset zero (`start`), once the driver has fixed it; each load
    /// thread takes its own start otherwise.
    pub origin: Option<Instant>,
    /// Failover scenarios: when node A was killed, as nanoseconds after `start` (0 until
    /// then), written by the thread that kills it.
    pub killed: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl Shared {
    /// When node A was killed (on the clock of `start`), once it has been.
    pub fn fail_at(&self) -> Option<Instant> {
        let nanos = self
            .killed
            .as_ref()?
            .load(std::sync::atomic::Ordering::Relaxed);
        (nanos > 0).then(|| self.start + Duration::from_nanos(nanos))
    }
}

/// A short, stable name for why a datagram was dropped.
pub fn drop_reason(e: &TunnelError) -> &'static str {
    match e {
        TunnelError::Wire(_) => "malformed",
        TunnelError::BadMac1 => "bad_mac1",
        TunnelError::Handshake(_) => "handshake_failed",
        TunnelError::UnknownPeer => "unknown_peer",
        TunnelError::ReplayedInitiation => "replayed_initiation",
        TunnelError::InitiationFlood => "initiation_flood",
        TunnelError::UnexpectedIndex(_) => "unexpected_index",
        TunnelError::Cookie(_) => "bad_cookie_reply",
        TunnelError::UnknownIndex(_) => "unknown_index",
        TunnelError::ExpiredSession => "expired_session",
        TunnelError::Transport(_) => "transport_failed",
        TunnelError::BadInnerPacket => "bad_inner_packet",
    }
}

impl Attempt {
    /// Builds the attempt's tunnel and its first initiation ahead of time, stamped for the
    /// arrival (`shared.start + arrival.at`): the bytes are exactly those a client starting
    /// then would send, but the Diffie-Hellman work is done before the run so one load core
    /// can offer more handshakes than a server core answers.
    pub fn prepare(
        arrival: Arrival,
        key: &PrivateKey,
        server_key: PublicKey,
        tunnel_ip: Ipv4Addr,
        keepalive: Option<Duration>,
        shared: &Shared,
    ) -> Self {
        let config = TunnelConfig {
            private_key: key.clone(),
            peer_public_key: server_key,
            preshared_key: None,
            persistent_keepalive: keepalive,
            mtu: 1420,
        };
        let mut tunnel = Box::new(Tunnel::new(config, shared.start, shared.unix, OsRng));
        tunnel.set_endpoint(shared.server);
        let at = shared.start + arrival.at;
        // The first echo is staged behind the handshake and leaves as soon as it completes.
        let mut buf = [0u8; 1500];
        let first = echo::request(
            &mut buf,
            shared.packet_bytes,
            tunnel_ip,
            shared.server_ip,
            arrival.user as u16,
            0,
            0,
        );
        tunnel.send(at, first);
        Self {
            arrival,
            state: State::Waiting,
            tunnel: Some(tunnel),
            first_sent: None,
            initiations: 0,
            cookies: 0,
            connected_at: None,
            to_connect: (0, 0),
            first_byte_at: None,
            bytes_sent: first.len() as u64,
            bytes_received: 0,
            next_echo: None,
            traffic_until: None,
            armed: None,
            resumed_at: None,
            seq: 1,
        }
    }

    /// Starts the attempt (its precomputed initiation is taken by `transmit`).
    pub fn start(&mut self, now: Instant) {
        self.state = State::Connecting;
        self.first_sent = Some(now);
    }

    /// Drops the connection: the tunnel and its keys are gone.
    pub fn leave(&mut self) {
        self.tunnel = None;
        if matches!(
            self.state,
            State::Connecting | State::Connected | State::Waiting
        ) {
            self.state = State::Left;
        }
    }

    /// Takes every datagram the tunnel wants sent, counting initiations.
    pub fn transmit(&mut self, mut send: impl FnMut(&[u8])) {
        let Some(t) = self.tunnel.as_mut() else {
            return;
        };
        while let Some(d) = t.poll_transmit() {
            if d.first() == Some(&1) {
                self.initiations += 1;
            }
            send(&d);
        }
    }

    /// The tunnel's next deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.tunnel.as_ref().and_then(|t| t.poll_timeout())
    }

    /// Runs expired tunnel timers (retransmits, keepalives, give-up).
    pub fn on_timeout(&mut self, now: Instant) {
        if let Some(t) = self.tunnel.as_mut() {
            t.handle_timeout(now);
        }
        self.take_events(now);
    }

    /// Sends the next echo request if traffic is due; returns when the next one is.
    pub fn on_echo(&mut self, now: Instant, shared: &Shared, tunnel_ip: Ipv4Addr) {
        self.next_echo = None;
        let (Some(until), Some(every), Some(t)) =
            (self.traffic_until, shared.echo_every, self.tunnel.as_mut())
        else {
            return;
        };
        if now >= until {
            return;
        }
        let stamp = now.saturating_duration_since(shared.start).as_nanos() as u64;
        let mut buf = [0u8; 1500];
        let p = echo::request(
            &mut buf,
            shared.packet_bytes,
            tunnel_ip,
            shared.server_ip,
            self.arrival.user as u16,
            self.seq,
            stamp,
        );
        self.seq = self.seq.wrapping_add(1);
        self.bytes_sent += p.len() as u64;
        t.send(now, p);
        self.next_echo = Some(now + every);
    }

    /// Handles a datagram from the server.
    pub fn on_datagram(
        &mut self,
        now: Instant,
        shared: &Shared,
        datagram: &mut [u8],
    ) -> Result<Happened, TunnelError> {
        let Some(t) = self.tunnel.as_mut() else {
            return Ok(Happened::default());
        };
        let received = t.handle_datagram(now, shared.server, datagram)?;
        let mut happened = self.take_events(now);
        if let Received::Packet(range) = received {
            if let Some(reply) = echo::parse_reply(&datagram[range.clone()]) {
                self.bytes_received += range.len() as u64;
                let sent = shared.start + Duration::from_nanos(reply.sent_nanos);
                if self.first_byte_at.is_none() {
                    self.first_byte_at = Some(now);
                    happened.first_byte = true;
                } else if reply.sent_nanos > 0 {
                    happened.echo_rtt = Some(now.saturating_duration_since(sent));
                }
                // Traffic resumed: an echo sent after the failure came back. (The first echo
                // is stamped 0: it was sent with the handshake, before any failure.)
                if self.resumed_at.is_none()
                    && reply.sent_nanos > 0
                    && shared.fail_at().is_some_and(|f| sent >= f)
                {
                    self.resumed_at = Some(now);
                }
            }
        }
        if happened.connected {
            self.traffic_until = Some(now + shared.traffic_for);
            self.next_echo = shared.echo_every.map(|e| now + e);
        }
        Ok(happened)
    }

    fn take_events(&mut self, now: Instant) -> Happened {
        let mut happened = Happened::default();
        let Some(t) = self.tunnel.as_mut() else {
            return happened;
        };
        while let Some(e) = t.poll_event() {
            match e {
                Event::HandshakeComplete { .. } if self.connected_at.is_none() => {
                    self.connected_at = Some(now);
                    self.to_connect = (self.initiations, self.cookies);
                    self.state = State::Connected;
                    happened.connected = true;
                }
                Event::CookieReceived => self.cookies += 1,
                Event::HandshakeGaveUp if self.state == State::Connecting => {
                    self.state = State::GaveUp;
                }
                _ => {}
            }
        }
        happened
    }

    /// Handshake time: first initiation to completion, retries included.
    pub fn handshake_time(&self) -> Option<Duration> {
        Some(
            self.connected_at?
                .saturating_duration_since(self.first_sent?),
        )
    }

    /// Failover: for a user connected before the failure, how long after it an echo came
    /// back again (`Some(None)`: never); `None` for everyone else.
    pub fn resumed_after(&self, fail_at: Instant) -> Option<Option<Duration>> {
        if self.connected_at? >= fail_at {
            return None;
        }
        Some(
            self.resumed_at
                .map(|r| r.saturating_duration_since(fail_at)),
        )
    }

    /// Connected on its first initiation, with no cookie.
    pub fn first_attempt(&self) -> bool {
        self.connected_at.is_some() && self.to_connect == (1, 0)
    }

    /// Initiations sent again before it connected (or in all, if it never did).
    pub fn retries(&self) -> u32 {
        let sent = if self.connected_at.is_some() {
            self.to_connect.0
        } else {
            self.initiations
        };
        sent.saturating_sub(1)
    }

    /// Why an attempt that never connected failed.
    pub fn failure(&self) -> Option<&'static str> {
        if self.connected_at.is_some() {
            return None;
        }
        Some(match self.state {
            State::GaveUp => "gave_up_after_rekey_attempt_time",
            State::Waiting => "never_started",
            _ if self.cookies > 0 => "cookie_then_no_answer",
            _ if self.initiations > 1 => "no_answer_after_retries",
            State::Left => "left_before_connecting",
            _ => "no_answer",
        })
    }
}
