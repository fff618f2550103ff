//! One peer's transport side: its sessions, its traffic timers and its endpoint, and the rules
//! for a transport message received and an inner packet sent. `Tunnel` holds one; a datapath
//! worker holds one per peer it owns. Both run these transitions and nothing else, so the
//! daemon's packets follow the rules the cross-implementation tests check.
//!
//! Each step says what the caller must do (retire indices, flush staged packets, ask for a
//! handshake, tell whoever follows endpoints) and leaves buffers, staging, counters and
//! channels to the caller. Asking for a handshake is rate-limited by the caller (its own
//! `RekeyGate`), since what "asking" means differs: a `Tunnel` initiates, a worker sends a
//! request to the control plane.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::keyring::{receivable, KeyRing, Retired, Slot};
use crate::session::{Session, TransportError};
use crate::timers::TrafficTimers;

/// Why a transport message was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// No session of this peer has the receiver index.
    #[error("unknown receiver index {0:#x}")]
    UnknownIndex(u32),
    /// The session is older than REJECT_AFTER_TIME.
    #[error("session expired")]
    Expired,
    /// Truncated, replayed, or it did not authenticate.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// What an accepted transport message asks of its receiver.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// Plaintext bytes (padded) after the transport header; 0 for a keepalive.
    pub len: usize,
    /// It confirmed our responder session (the handshake is complete): these indices were
    /// retired by the rotation, and staged packets may go now.
    pub confirmed: Option<Retired>,
    /// The endpoint moved to the sender's address.
    pub roamed: bool,
    /// The session is about to expire: ask for a handshake (once per session).
    pub rekey: bool,
}

/// What sealing an inner packet came to.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// `len` bytes of transport message are ready for the endpoint; `rekey` asks for a
    /// handshake (the session is old or has sent many messages).
    Sent {
        /// Bytes of the sealed message.
        len: usize,
        /// Ask for a handshake.
        rekey: bool,
    },
    /// No session can send: stage the packet and ask for a handshake.
    NoSession,
    /// The session refused (no room in the buffer, counter exhausted).
    Failed(TransportError),
}

/// What installing a new session asks of its owner.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    /// Indices of sessions the rotation dropped.
    pub retired: Retired,
    /// We initiated the handshake: the responder cannot send until we do, so send staged
    /// packets now, or a keepalive.
    pub confirm: bool,
    /// The endpoint changed to where the handshake came from.
    pub endpoint_changed: bool,
}

/// What the traffic timers ask for at a given moment.
#[must_use]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Every session was erased (REJECT_AFTER_TIME × 3 without a handshake): these indices
    /// are free.
    pub keys_zeroed: Option<Retired>,
    /// Send an empty transport message (or, without a session, ask for a handshake).
    pub keepalive: bool,
    /// Data went out unanswered: ask for a handshake.
    pub handshake: bool,
}

/// A peer's sessions, traffic timers and endpoint.
#[derive(Debug, Default)]
pub struct Transport {
    keys: KeyRing,
    timers: TrafficTimers,
    endpoint: Option<SocketAddr>,
}

impl Transport {
    /// Opens the transport message in `datagram` (addressed to local index `receiver`) in
    /// place. Only an authenticated message changes any state: key confirmation, timers, the
    /// endpoint, and the last-minute rekey.
    pub fn open(
        &mut self,
        now: Instant,
        from: SocketAddr,
        receiver: u32,
        datagram: &mut [u8],
    ) -> Result<Opened, OpenError> {
        let (slot, session) = self
            .keys
            .find(receiver)
            .ok_or(OpenError::UnknownIndex(receiver))?;
        if !receivable(session, now) {
            return Err(OpenError::Expired);
        }
        let len = session.open(datagram)?;
        let confirmed = (slot == Slot::Next).then(|| self.keys.confirm_next());
        self.timers.on_authenticated_received(now);
        let roamed = self.endpoint != Some(from);
        self.endpoint = Some(from);
        let rekey =
            self.keys.wants_rekey_after_receive(now) && self.timers.claim_lastminute_handshake();
        if len > 0 {
            self.timers.on_data_received(now);
        }
        Ok(Opened {
            len,
            confirmed,
            roamed,
            rekey,
        })
    }

    /// Seals the `len` bytes of inner packet at `buf[16..]` (0 for a keepalive) in place, as
    /// `Session::seal` lays it out; `jitter` spreads the "no reply" timer (`rekey_jitter`).
    pub fn seal(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        mtu: usize,
        jitter: Duration,
    ) -> Sealed {
        let Some(session) = self.keys.sending(now) else {
            return Sealed::NoSession;
        };
        match session.seal(buf, len, mtu) {
            Ok(sealed) => {
                if len > 0 {
                    self.timers.on_data_sent(now, jitter);
                }
                self.timers.on_authenticated_sent(now);
                Sealed::Sent {
                    len: sealed,
                    rekey: self.keys.wants_rekey_after_send(now),
                }
            }
            Err(e) => Sealed::Failed(e),
        }
    }

    /// Installs the session a completed handshake made, with the peer at `from`. The
    /// handshake message we received counts as authenticated traffic in, and, when we
    /// responded, the response as traffic out (as the kernel module counts them).
    pub fn install(&mut self, now: Instant, session: Box<Session>, from: SocketAddr) -> Installed {
        let initiator = session.initiator;
        let retired = self.keys.install(session);
        self.timers.on_session_derived(now);
        self.timers.on_authenticated_received(now);
        if !initiator {
            self.timers.on_authenticated_sent(now);
        }
        let endpoint_changed = self.endpoint != Some(from);
        self.endpoint = Some(from);
        Installed {
            retired,
            confirm: initiator,
            endpoint_changed,
        }
    }

    /// Fires the traffic timers that expired at `now`.
    pub fn poll(&mut self, now: Instant) -> Due {
        let actions = self.timers.poll(now);
        Due {
            keys_zeroed: actions.zero_keys.then(|| self.keys.clear()),
            keepalive: actions.send_keepalive,
            handshake: actions.initiate_handshake,
        }
    }

    /// When `poll` next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// An initiation of ours went out: it counts as authenticated traffic out.
    pub fn handshake_sent(&mut self, now: Instant) {
        self.timers.on_authenticated_sent(now);
    }

    /// Handshake attempts were given up: no more keepalives; old keys still get erased.
    pub fn gave_up(&mut self, now: Instant) {
        self.timers.on_handshake_gave_up(now);
    }

    /// True if a session can send now.
    pub fn can_send(&mut self, now: Instant) -> bool {
        self.keys.sending(now).is_some()
    }

    /// Drops every session (keys changed, peer removed); their indices are free.
    pub fn clear(&mut self) -> Retired {
        self.keys.clear()
    }

    /// Frees the expanded keys of idle sessions; how many were freed.
    pub fn compact(&mut self) -> usize {
        self.keys.compact()
    }

    /// Sets or clears the persistent keepalive (a new interval sends one at once).
    pub fn set_persistent_keepalive(&mut self, interval: Option<Duration>, now: Instant) {
        self.timers.set_persistent_keepalive(interval, now);
    }

    /// Where the peer is: configured, or where its last authenticated message came from.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.endpoint
    }

    /// Sets the endpoint, as configuration does; true if it changed.
    pub fn set_endpoint(&mut self, endpoint: SocketAddr) -> bool {
        let changed = self.endpoint != Some(endpoint);
        self.endpoint = Some(endpoint);
        changed
    }

    /// The sessions, for inspection.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }
}
