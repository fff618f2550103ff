//! A whole WireGuard peer in one sans-IO state machine: handshakes in both roles, cookies,
//! sessions and timers. The loadtest's simulated clients and the tests drive it. It is
//! composed of the pieces the daemon runs split between its threads: `Transport` (a datapath
//! worker's per-peer state and rules), `responder::respond` (the responder threads') and
//! `Initiator` with the cookie jar (the control plane's).
//!
//! Shape (as in quinn-proto): feed it datagrams with `handle_datagram`, packets to send with
//! `send`, and the time with `handle_timeout`; take datagrams out with `poll_transmit`, events
//! with `poll_event`, and the next deadline with `poll_timeout`. It never reads a clock.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};

use crate::constants::*;
use crate::cookie::{CookieChecker, CookieError, CookieJar, MacVerdict};
use crate::handshake::{HandshakeError, LocalIdentity, RemotePeer};
use crate::initiator::{Initiator, InitiatorDue, InitiatorError};
use crate::inner;
use crate::keys::{PresharedKey, PrivateKey, PublicKey};
use crate::responder::{self, GuardRefusal, InitiationGuard, RespondError, ResponderPeers};
use crate::session::{Session, TransportError};
use crate::tai64n::{Tai64N, WallClock};
use crate::timers::rekey_jitter;
use crate::transport::{OpenError, Sealed, Transport};
use crate::wire::{Message, WireError};

/// Packets queued while waiting for a handshake (the kernel module keeps 128).
const MAX_STAGED: usize = 128;

/// Everything a tunnel needs to know about both ends.
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    /// Our static private key.
    pub private_key: PrivateKey,
    /// The peer's static public key.
    pub peer_public_key: PublicKey,
    /// Optional preshared key (post-quantum hedge).
    pub preshared_key: Option<PresharedKey>,
    /// Send a keepalive after this long without sending anything.
    pub persistent_keepalive: Option<Duration>,
    /// Inner MTU, for padding.
    pub mtu: usize,
}

/// Why a datagram was refused. Every variant is a drop, never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    /// Not a WireGuard message.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// MAC1 does not match our public key.
    #[error("bad MAC1")]
    BadMac1,
    /// The handshake message did not authenticate.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// An initiation from a static key that is not our peer's.
    #[error("initiation from an unknown static key")]
    UnknownPeer,
    /// An initiation whose timestamp is not newer than the last one accepted.
    #[error("replayed initiation (timestamp not newer than the last accepted)")]
    ReplayedInitiation,
    /// More than INITIATIONS_PER_SECOND initiations from the peer.
    #[error("initiation flood from the peer")]
    InitiationFlood,
    /// A response or cookie reply with no matching initiation pending.
    #[error("unexpected response or cookie reply for index {0:#x}")]
    UnexpectedIndex(u32),
    /// A cookie reply that did not authenticate.
    #[error(transparent)]
    Cookie(#[from] CookieError),
    /// A transport message for a session we do not have.
    #[error("unknown receiver index {0:#x}")]
    UnknownIndex(u32),
    /// A transport message for a session older than REJECT_AFTER_TIME.
    #[error("session expired")]
    ExpiredSession,
    /// The transport message did not open.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The decrypted payload is not an IP packet.
    #[error("decrypted payload is not a well-formed IP packet")]
    BadInnerPacket,
}

impl From<InitiatorError> for TunnelError {
    fn from(e: InitiatorError) -> Self {
        match e {
            InitiatorError::NotPending(index) => TunnelError::UnexpectedIndex(index),
            InitiatorError::Handshake(e) => TunnelError::Handshake(e),
            InitiatorError::Cookie(e) => TunnelError::Cookie(e),
        }
    }
}

/// What a successfully handled datagram was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A handshake or cookie message, handled; there may be datagrams to transmit.
    Handshake,
    /// An empty transport message.
    Keepalive,
    /// An inner IP packet, at this range of the datagram buffer (padding trimmed).
    Packet(Range<usize>),
}

/// Things that happened that a driver may want to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A handshake completed; `initiator` says which side we were.
    HandshakeComplete {
        /// True if we initiated it.
        initiator: bool,
    },
    /// A cookie reply was accepted: the peer is under load and the next initiation carries MAC2.
    CookieReceived,
    /// Handshake retransmits reached REKEY_ATTEMPT_TIME without an answer.
    HandshakeGaveUp,
    /// All session keys were erased after REJECT_AFTER_TIME × 3 without a handshake.
    KeysZeroed,
}

/// One WireGuard peer, driven from outside.
pub struct Tunnel<R: RngCore + CryptoRng> {
    local: LocalIdentity,
    peer: RemotePeer,
    checker: CookieChecker,
    jar: CookieJar,
    clock: WallClock,
    rng: R,
    mtu: usize,
    under_load: bool,
    guard: InitiationGuard,
    transport: Transport,
    initiator: Initiator,
    staged: VecDeque<Vec<u8>>,
    outbox: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
}

impl<R: RngCore + CryptoRng> Tunnel<R> {
    /// A tunnel created at `now`, when the Unix time was `unix_now` (anchors TAI64N stamps).
    pub fn new(config: TunnelConfig, now: Instant, unix_now: Duration, rng: R) -> Self {
        let local = LocalIdentity::new(&config.private_key);
        let peer = RemotePeer::new(&local, config.peer_public_key, config.preshared_key);
        let mut transport = Transport::default();
        transport.set_persistent_keepalive(config.persistent_keepalive, now);
        Self {
            checker: CookieChecker::new(local.mac1_key, local.cookie_key),
            jar: CookieJar::for_recipient(&config.peer_public_key),
            clock: WallClock::new(now, unix_now),
            local,
            peer,
            rng,
            mtu: config.mtu,
            under_load: false,
            guard: InitiationGuard::default(),
            transport,
            initiator: Initiator::default(),
            staged: VecDeque::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Where the peer was last heard from (or was told to be).
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.transport.endpoint()
    }

    /// Sets the peer's address, as a configured endpoint does.
    pub fn set_endpoint(&mut self, endpoint: SocketAddr) {
        let _ = self.transport.set_endpoint(endpoint);
    }

    /// Makes the responder side demand MAC2 (cookies) from initiations, as under load.
    pub fn set_under_load(&mut self, under_load: bool) {
        self.under_load = under_load;
    }

    /// True if a session is ready to send on.
    pub fn is_established(&mut self, now: Instant) -> bool {
        self.transport.can_send(now)
    }

    /// The next datagram to send to the peer's endpoint.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.transport.next_deadline(),
            self.initiator.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn jitter(&mut self) -> Duration {
        rekey_jitter(self.rng.next_u32())
    }

    /// Starts a handshake now: retransmissions pass `retry`, others are rate-limited.
    pub fn initiate(&mut self, now: Instant, retry: bool) {
        if !self.initiator.may_start(now, retry) {
            return;
        }
        let index = self.rng.next_u32();
        let stamp = self.clock.tai64n(now);
        let Ok(started) = self.initiator.start(
            (&self.local, &self.peer),
            (index, stamp),
            &mut self.jar,
            (now, retry),
            &mut self.rng,
        ) else {
            // Only a low-order peer key fails here; such a peer can never complete.
            return;
        };
        self.outbox.push_back(started.message.to_vec());
        self.transport.handshake_sent(now);
    }

    /// Encrypts an inner packet for the peer, or stages it and starts a handshake.
    pub fn send(&mut self, now: Instant, packet: &[u8]) {
        let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + packet.len() + PADDING_MULTIPLE + TAG_LEN];
        buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + packet.len()].copy_from_slice(packet);
        let jitter = self.jitter();
        match self
            .transport
            .seal(now, &mut buf, packet.len(), self.mtu, jitter)
        {
            Sealed::Sent { len, rekey } => {
                buf.truncate(len);
                self.outbox.push_back(buf);
                if rekey {
                    self.initiate(now, false);
                }
            }
            // A session that cannot seal is as good as none: stage and get a new one.
            Sealed::NoSession | Sealed::Failed(_) => {
                if !packet.is_empty() {
                    if self.staged.len() == MAX_STAGED {
                        self.staged.pop_front();
                    }
                    self.staged.push_back(packet.to_vec());
                }
                self.initiate(now, false);
            }
        }
    }

    fn flush_staged(&mut self, now: Instant) -> bool {
        let staged = std::mem::take(&mut self.staged);
        let any = !staged.is_empty();
        for packet in staged {
            self.send(now, &packet);
        }
        any
    }

    /// Handles a datagram from `from`. Decryption happens in place, so a `Packet` result
    /// points into `datagram`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &mut [u8],
    ) -> Result<Received, TunnelError> {
        match Message::parse(datagram)? {
            Message::Initiation(init) => {
                match self.checker.verify(init.bytes, from, now) {
                    MacVerdict::BadMac1 => return Err(TunnelError::BadMac1),
                    MacVerdict::Mac1Only if self.under_load => {
                        let reply =
                            self.checker
                                .reply(init.bytes, init.sender, from, now, &mut self.rng);
                        self.outbox.push_back(reply.to_vec());
                        return Ok(Received::Handshake);
                    }
                    _ => {}
                }
                let index = self.rng.next_u32();
                let mut peers = OnePeer {
                    remote: &self.peer,
                    guard: &mut self.guard,
                };
                let answered =
                    responder::respond(&self.local, &init, now, &mut peers, index, &mut self.rng)
                        .map_err(|e| match e {
                        RespondError::BadStatic(e) | RespondError::Handshake(e) => {
                            TunnelError::Handshake(e)
                        }
                        RespondError::UnknownPeer => TunnelError::UnknownPeer,
                        RespondError::Refused(GuardRefusal::Replayed) => {
                            TunnelError::ReplayedInitiation
                        }
                        RespondError::Refused(GuardRefusal::TooSoon) => {
                            TunnelError::InitiationFlood
                        }
                    })?;
                let mut msg = answered.response;
                self.jar.stamp(&mut msg, now);
                self.outbox.push_back(msg.to_vec());
                let session = Box::new(Session::new(&answered.keys, now));
                let _ = self.transport.install(now, session, from);
                Ok(Received::Handshake)
            }
            Message::Response(resp) => {
                if self.checker.verify(resp.bytes, from, now) == MacVerdict::BadMac1 {
                    return Err(TunnelError::BadMac1);
                }
                let keys = self.initiator.finish(&self.local, &self.peer, &resp)?;
                let session = Box::new(Session::new(&keys, now));
                let _ = self.transport.install(now, session, from);
                self.events
                    .push_back(Event::HandshakeComplete { initiator: true });
                // The responder cannot send until we do: confirm with data or a keepalive.
                if !self.flush_staged(now) {
                    self.send(now, &[]);
                }
                Ok(Received::Handshake)
            }
            Message::CookieReply(reply) => {
                self.initiator.take_cookie(&mut self.jar, &reply, now)?;
                self.events.push_back(Event::CookieReceived);
                Ok(Received::Handshake)
            }
            Message::Transport(header) => {
                self.receive_transport(now, from, header.receiver, datagram)
            }
        }
    }

    fn receive_transport(
        &mut self,
        now: Instant,
        from: SocketAddr,
        index: u32,
        datagram: &mut [u8],
    ) -> Result<Received, TunnelError> {
        let opened = self
            .transport
            .open(now, from, index, datagram)
            .map_err(|e| match e {
                OpenError::UnknownIndex(i) => TunnelError::UnknownIndex(i),
                OpenError::Expired => TunnelError::ExpiredSession,
                OpenError::Transport(e) => TunnelError::Transport(e),
            })?;
        if opened.confirmed.is_some() {
            self.initiator.session_up();
            self.events
                .push_back(Event::HandshakeComplete { initiator: false });
            self.flush_staged(now);
        }
        if opened.rekey {
            self.initiate(now, false);
        }
        if opened.len == 0 {
            return Ok(Received::Keepalive);
        }
        let body = &datagram[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + opened.len];
        let header = inner::parse(body).ok_or(TunnelError::BadInnerPacket)?;
        Ok(Received::Packet(
            TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + header.len,
        ))
    }

    /// Runs every timer that has expired at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.initiator.poll(now) {
            InitiatorDue::Retransmit => self.initiate(now, true),
            InitiatorDue::GaveUp(_) => {
                self.staged.clear();
                self.transport.gave_up(now);
                self.events.push_back(Event::HandshakeGaveUp);
            }
            InitiatorDue::Wait => {}
        }
        let due = self.transport.poll(now);
        if due.keys_zeroed.is_some() {
            self.initiator.abandon();
            self.events.push_back(Event::KeysZeroed);
        }
        if due.handshake {
            self.initiate(now, false);
        }
        if due.keepalive {
            // Without a session this starts a handshake, as a persistent keepalive should.
            self.send(now, &[]);
        }
    }
}

/// The one peer a `Tunnel` answers, as the responder rules look peers up.
struct OnePeer<'a> {
    remote: &'a RemotePeer,
    guard: &'a mut InitiationGuard,
}

impl ResponderPeers for OnePeer<'_> {
    type Peer = ();

    fn find(&self, initiator: &PublicKey) -> Option<()> {
        (*initiator == self.remote.public_key()).then_some(())
    }

    fn remote<'a>(&'a self, _: &'a ()) -> &'a RemotePeer {
        self.remote
    }

    fn admit(&mut self, _: &(), timestamp: Tai64N, now: Instant) -> Result<(), GuardRefusal> {
        self.guard.admit(timestamp, now)
    }
}
