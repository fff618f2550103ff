//! The timer rules of the WireGuard paper (§6) as plain state: events and `now` in, actions out.
//!
//! They are split by who sees the events. `TrafficTimers` react to packets moving (keepalives,
//! "no reply, try a new handshake", key zeroing) and live with whoever moves the packets: a
//! datapath worker in the daemon. `HandshakeTimers` govern initiation retransmits and live with
//! whoever performs handshakes: the control plane. A `Tunnel` holds both.

use std::time::{Duration, Instant};

use crate::constants::*;

fn due(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|d| now >= d)
}

fn earliest(deadlines: &[Option<Instant>]) -> Option<Instant> {
    deadlines.iter().flatten().min().copied()
}

/// "At most once per REKEY_TIMEOUT": the rate limit on starting handshakes (the paper's §6.4),
/// kept by whoever starts them and by whoever asks for them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RekeyGate {
    last: Option<Instant>,
}

impl RekeyGate {
    /// True if REKEY_TIMEOUT has passed since the gate was last passed (or it never was).
    #[inline]
    pub fn is_open(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|t| now.saturating_duration_since(t) >= REKEY_TIMEOUT)
    }

    /// Passes the gate at `now` (whether or not it was open).
    #[inline]
    pub fn pass(&mut self, now: Instant) {
        self.last = Some(now);
    }

    /// Passes the gate if it is open; true if it was.
    #[inline]
    pub fn try_pass(&mut self, now: Instant) -> bool {
        let open = self.is_open(now);
        if open {
            self.pass(now);
        }
        open
    }

    /// Opens the gate (a handshake completed: the next request is a new matter).
    #[inline]
    pub fn reset(&mut self) {
        self.last = None;
    }
}

/// The jitter added to REKEY_TIMEOUT and to the "no reply" timer, from 32 random bits: up to
/// REKEY_TIMEOUT_JITTER_MAX, whole milliseconds.
#[inline]
pub fn rekey_jitter(random: u32) -> Duration {
    let max = REKEY_TIMEOUT_JITTER_MAX.as_millis() as u32;
    Duration::from_millis(u64::from(random % (max + 1)))
}

/// What a peer's traffic timers ask for at a given moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TrafficActions {
    /// Send an empty transport message.
    pub send_keepalive: bool,
    /// Start a handshake: data went out but nothing came back for KEEPALIVE + REKEY_TIMEOUT.
    pub initiate_handshake: bool,
    /// Erase all sessions: no new handshake for REJECT_AFTER_TIME × 3.
    pub zero_keys: bool,
}

/// Timers driven by packets sent and received on a peer's sessions.
#[derive(Debug, Default, Clone)]
pub struct TrafficTimers {
    keepalive_due: Option<Instant>,
    need_another_keepalive: bool,
    new_handshake_due: Option<Instant>,
    persistent_interval: Option<Duration>,
    persistent_due: Option<Instant>,
    zero_keys_due: Option<Instant>,
    lastminute_handshake_sent: bool,
}

impl TrafficTimers {
    /// Sets or clears the persistent keepalive; a new interval sends one keepalive at once.
    pub fn set_persistent_keepalive(&mut self, interval: Option<Duration>, now: Instant) {
        let interval = interval.filter(|d| !d.is_zero());
        if interval.is_some() && interval != self.persistent_interval {
            self.persistent_due = Some(now);
        }
        if interval.is_none() {
            self.persistent_due = None;
        }
        self.persistent_interval = interval;
    }

    /// The persistent keepalive interval, if set.
    pub fn persistent_keepalive(&self) -> Option<Duration> {
        self.persistent_interval
    }

    /// A data (non-keepalive) message was sent.
    pub fn on_data_sent(&mut self, now: Instant, jitter: Duration) {
        if self.new_handshake_due.is_none() {
            self.new_handshake_due = Some(now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter);
        }
    }

    /// A data (non-keepalive) message was received.
    pub fn on_data_received(&mut self, now: Instant) {
        if self.keepalive_due.is_none() {
            self.keepalive_due = Some(now + KEEPALIVE_TIMEOUT);
        } else {
            self.need_another_keepalive = true;
        }
    }

    /// Any authenticated message (data, keepalive or handshake) was sent.
    pub fn on_authenticated_sent(&mut self, now: Instant) {
        self.keepalive_due = None;
        self.traversal(now);
    }

    /// Any authenticated message was received.
    pub fn on_authenticated_received(&mut self, now: Instant) {
        self.new_handshake_due = None;
        self.traversal(now);
    }

    fn traversal(&mut self, now: Instant) {
        if let Some(interval) = self.persistent_interval {
            self.persistent_due = Some(now + interval);
        }
    }

    /// A new session was derived from a handshake.
    pub fn on_session_derived(&mut self, now: Instant) {
        self.zero_keys_due = Some(now + REJECT_AFTER_TIME * 3);
        self.lastminute_handshake_sent = false;
    }

    /// Handshake attempts were given up: stop keepalives, make sure old keys get erased.
    pub fn on_handshake_gave_up(&mut self, now: Instant) {
        self.keepalive_due = None;
        if self.zero_keys_due.is_none() {
            self.zero_keys_due = Some(now + REJECT_AFTER_TIME * 3);
        }
    }

    /// Claims the one "about to expire" rekey allowed per session (see
    /// `KeyRing::wants_rekey_after_receive`); true the first time after each new session.
    pub fn claim_lastminute_handshake(&mut self) -> bool {
        !std::mem::replace(&mut self.lastminute_handshake_sent, true)
    }

    /// Fires every expired timer and says what to do.
    pub fn poll(&mut self, now: Instant) -> TrafficActions {
        let mut actions = TrafficActions::default();
        if due(self.keepalive_due, now) {
            actions.send_keepalive = true;
            self.keepalive_due = if std::mem::take(&mut self.need_another_keepalive) {
                Some(now + KEEPALIVE_TIMEOUT)
            } else {
                None
            };
        }
        if due(self.persistent_due, now) {
            actions.send_keepalive = true;
            self.persistent_due = self.persistent_interval.map(|i| now + i);
        }
        if due(self.new_handshake_due, now) {
            actions.initiate_handshake = true;
            self.new_handshake_due = None;
        }
        if due(self.zero_keys_due, now) {
            actions.zero_keys = true;
            self.zero_keys_due = None;
        }
        actions
    }

    /// When `poll` next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        earliest(&[
            self.keepalive_due,
            self.persistent_due,
            self.new_handshake_due,
            self.zero_keys_due,
        ])
    }
}

/// What the handshake timers ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeAction {
    /// Nothing yet.
    Wait,
    /// Send the initiation again (a new one, with a fresh ephemeral key).
    Retransmit,
    /// Stop trying: REKEY_ATTEMPT_TIME has passed without an answer.
    GiveUp,
}

/// Retransmission of unanswered initiations, and the rate limit on starting new ones.
#[derive(Debug, Default, Clone)]
pub struct HandshakeTimers {
    last_initiation: RekeyGate,
    retransmit_due: Option<Instant>,
    attempts: u32,
}

impl HandshakeTimers {
    /// False within REKEY_TIMEOUT of the last initiation: at most one per REKEY_TIMEOUT.
    pub fn can_initiate(&self, now: Instant) -> bool {
        self.last_initiation.is_open(now)
    }

    /// An initiation went out; `retry` is true when `poll` asked for it.
    pub fn on_initiation_sent(&mut self, now: Instant, jitter: Duration, retry: bool) {
        if !retry {
            self.attempts = 0;
        }
        self.last_initiation.pass(now);
        self.retransmit_due = Some(now + REKEY_TIMEOUT + jitter);
    }

    /// The handshake completed: stop retransmitting.
    pub fn on_handshake_complete(&mut self) {
        self.retransmit_due = None;
        self.attempts = 0;
    }

    /// True while an initiation awaits its response.
    pub fn is_pending(&self) -> bool {
        self.retransmit_due.is_some()
    }

    /// Fires the retransmit timer if it expired.
    pub fn poll(&mut self, now: Instant) -> HandshakeAction {
        if !due(self.retransmit_due, now) {
            return HandshakeAction::Wait;
        }
        self.retransmit_due = None;
        if self.attempts > MAX_TIMER_HANDSHAKES {
            self.attempts = 0;
            return HandshakeAction::GiveUp;
        }
        self.attempts += 1;
        HandshakeAction::Retransmit
    }

    /// When `poll` next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.retransmit_due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_JITTER: Duration = Duration::ZERO;

    #[test]
    fn passive_keepalive_after_receiving_data_without_replying() {
        let t0 = Instant::now();
        let mut t = TrafficTimers::default();
        t.on_data_received(t0);
        assert_eq!(
            t.poll(t0 + Duration::from_secs(9)),
            TrafficActions::default()
        );
        assert!(t.poll(t0 + KEEPALIVE_TIMEOUT).send_keepalive);
        assert!(t.next_deadline().is_none());

        // Sending anything cancels the pending keepalive.
        t.on_data_received(t0);
        t.on_authenticated_sent(t0 + Duration::from_secs(1));
        assert!(!t.poll(t0 + Duration::from_secs(20)).send_keepalive);
    }

    #[test]
    fn new_handshake_when_data_gets_no_answer() {
        let t0 = Instant::now();
        let mut t = TrafficTimers::default();
        t.on_data_sent(t0, NO_JITTER);
        assert!(t.poll(t0 + Duration::from_secs(15)).initiate_handshake);
        t.on_data_sent(t0, NO_JITTER);
        t.on_authenticated_received(t0 + Duration::from_secs(1));
        assert!(!t.poll(t0 + Duration::from_secs(30)).initiate_handshake);
    }

    #[test]
    fn persistent_keepalive_fires_once_at_set_then_each_idle_interval() {
        let t0 = Instant::now();
        let mut t = TrafficTimers::default();
        t.set_persistent_keepalive(Some(Duration::from_secs(25)), t0);
        assert!(t.poll(t0).send_keepalive);
        t.on_authenticated_sent(t0);
        assert!(!t.poll(t0 + Duration::from_secs(24)).send_keepalive);
        assert!(t.poll(t0 + Duration::from_secs(25)).send_keepalive);
        t.set_persistent_keepalive(None, t0);
        assert!(!t.poll(t0 + Duration::from_secs(100)).send_keepalive);
    }

    #[test]
    fn keys_zeroed_three_reject_times_after_the_last_session() {
        let t0 = Instant::now();
        let mut t = TrafficTimers::default();
        t.on_session_derived(t0);
        assert!(!t.poll(t0 + Duration::from_secs(539)).zero_keys);
        assert!(t.poll(t0 + Duration::from_secs(540)).zero_keys);
        assert!(t.claim_lastminute_handshake());
        assert!(!t.claim_lastminute_handshake());
    }

    #[test]
    fn retransmits_every_rekey_timeout_then_gives_up() {
        let mut now = Instant::now();
        let mut h = HandshakeTimers::default();
        assert!(h.can_initiate(now));
        h.on_initiation_sent(now, NO_JITTER, false);
        assert!(!h.can_initiate(now + Duration::from_secs(4)));
        let mut retransmits = 0;
        loop {
            now += REKEY_TIMEOUT;
            match h.poll(now) {
                HandshakeAction::Retransmit => {
                    retransmits += 1;
                    h.on_initiation_sent(now, NO_JITTER, true);
                }
                HandshakeAction::GiveUp => break,
                HandshakeAction::Wait => panic!("timer should have fired"),
            }
        }
        assert_eq!(retransmits, MAX_TIMER_HANDSHAKES + 1);
        assert!(!h.is_pending());
    }
}
