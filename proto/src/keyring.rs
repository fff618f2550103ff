//! A peer's sessions: previous, current and next, and the rules that rotate them.
//!
//! An initiator's new session is usable at once and becomes current. A responder's new session
//! waits as "next" until the initiator proves it holds the keys by sending on it; only then does
//! it become current (WireGuard paper §5.4.6, the kernel module's `noise.c`).

use std::time::Instant;

use crate::constants::*;
use crate::session::Session;

/// Which of a peer's three sessions something refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The session before the current one, kept for packets still in flight.
    Previous,
    /// The session used for sending.
    Current,
    /// A responder's newest session, not yet confirmed by the initiator.
    Next,
}

/// Local indices of sessions dropped by a rotation, so their owner can forget them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Retired {
    indices: [Option<u32>; 3],
}

impl Retired {
    fn push(&mut self, session: Option<Box<Session>>) {
        if let Some(s) = session {
            if let Some(slot) = self.indices.iter_mut().find(|i| i.is_none()) {
                *slot = Some(s.local_index);
            }
        }
    }

    /// The retired local indices.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.indices.iter().flatten().copied()
    }
}

/// The previous, current and next sessions of one peer. Sessions are boxed: a peer without
/// one (most of a large registry at any moment) then costs three pointers, not three sessions.
#[derive(Debug, Default)]
pub struct KeyRing {
    previous: Option<Box<Session>>,
    current: Option<Box<Session>>,
    next: Option<Box<Session>>,
}

impl KeyRing {
    /// Adds a session from a completed handshake, rotating the others.
    pub fn install(&mut self, session: Box<Session>) -> Retired {
        let mut retired = Retired::default();
        if session.initiator {
            match self.next.take() {
                // An unconfirmed responder session loses to ours but may still see packets.
                Some(next) => {
                    retired.push(self.previous.replace(next));
                    retired.push(self.current.take());
                }
                None => retired.push(std::mem::replace(&mut self.previous, self.current.take())),
            }
            self.current = Some(session);
        } else {
            retired.push(self.next.replace(session));
            retired.push(self.previous.take());
        }
        retired
    }

    /// The session an incoming packet with receiver `index` belongs to.
    pub fn find(&mut self, index: u32) -> Option<(Slot, &mut Session)> {
        for (slot, s) in [
            (Slot::Current, &mut self.current),
            (Slot::Next, &mut self.next),
            (Slot::Previous, &mut self.previous),
        ] {
            if let Some(s) = s.as_deref_mut().filter(|s| s.local_index == index) {
                return Some((slot, s));
            }
        }
        None
    }

    /// The initiator has sent on our "next" session: it becomes current.
    pub fn confirm_next(&mut self) -> Retired {
        let mut retired = Retired::default();
        if let Some(next) = self.next.take() {
            let old_current = self.current.replace(next);
            retired.push(std::mem::replace(&mut self.previous, old_current));
        }
        retired
    }

    /// The session to send with, if one is usable at `now`.
    pub fn sending(&mut self, now: Instant) -> Option<&mut Session> {
        self.current.as_deref_mut().filter(|s| s.is_valid(now))
    }

    /// The current session, usable or not.
    pub fn current(&self) -> Option<&Session> {
        self.current.as_deref()
    }

    /// True if the peer has no session at all.
    pub fn is_empty(&self) -> bool {
        self.previous.is_none() && self.current.is_none() && self.next.is_none()
    }

    /// Frees every session's expanded keys (the peer is idle); returns how many it freed.
    pub fn compact(&mut self) -> usize {
        let mut freed = 0;
        for s in [&mut self.previous, &mut self.current, &mut self.next]
            .into_iter()
            .flatten()
        {
            if !s.is_compact() {
                s.compact();
                freed += 1;
            }
        }
        freed
    }

    /// Drops every session (key change, or REJECT_AFTER_TIME × 3 without a handshake).
    pub fn clear(&mut self) -> Retired {
        let mut retired = Retired::default();
        retired.push(self.previous.take());
        retired.push(self.current.take());
        retired.push(self.next.take());
        retired
    }

    /// After sending: should the sender start a new handshake to keep keys fresh?
    /// (Too many messages, or the initiator's session is REKEY_AFTER_TIME old.)
    pub fn wants_rekey_after_send(&self, now: Instant) -> bool {
        self.current.as_ref().is_some_and(|s| {
            s.send_counter() > REKEY_AFTER_MESSAGES
                || (s.initiator && now.saturating_duration_since(s.created) > REKEY_AFTER_TIME)
        })
    }

    /// After receiving: an initiator whose session is about to expire rekeys now rather than
    /// waiting for its next send (REJECT_AFTER_TIME − KEEPALIVE_TIMEOUT − REKEY_TIMEOUT).
    pub fn wants_rekey_after_receive(&self, now: Instant) -> bool {
        self.current.as_ref().is_some_and(|s| {
            s.initiator
                && now.saturating_duration_since(s.created)
                    > REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
        })
    }
}

/// True if a session may still open packets at `now` (younger than REJECT_AFTER_TIME).
pub fn receivable(session: &Session, now: Instant) -> bool {
    now.saturating_duration_since(session.created) < REJECT_AFTER_TIME
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::SessionKeys;
    use std::time::Duration;

    fn session(index: u32, initiator: bool, now: Instant) -> Box<Session> {
        Box::new(Session::new(
            &SessionKeys {
                local_index: index,
                remote_index: index + 100,
                send: [index as u8; 32],
                recv: [index as u8; 32],
                initiator,
            },
            now,
        ))
    }

    #[test]
    fn initiator_sessions_rotate_current_into_previous() {
        let now = Instant::now();
        let mut ring = KeyRing::default();
        assert_eq!(ring.install(session(1, true, now)).iter().count(), 0);
        assert_eq!(ring.install(session(2, true, now)).iter().count(), 0);
        let retired: Vec<_> = ring.install(session(3, true, now)).iter().collect();
        assert_eq!(retired, vec![1]);
        assert_eq!(ring.sending(now).map(|s| s.local_index), Some(3));
        assert!(matches!(ring.find(2), Some((Slot::Previous, _))));
    }

    #[test]
    fn responder_session_waits_in_next_until_confirmed() {
        let now = Instant::now();
        let mut ring = KeyRing::default();
        ring.install(session(1, true, now));
        ring.install(session(2, true, now));
        let retired: Vec<_> = ring.install(session(3, false, now)).iter().collect();
        assert_eq!(retired, vec![1], "the previous session is dropped");
        assert_eq!(ring.sending(now).map(|s| s.local_index), Some(2));
        assert!(matches!(ring.find(3), Some((Slot::Next, _))));
        assert_eq!(ring.confirm_next().iter().count(), 0);
        assert_eq!(ring.sending(now).map(|s| s.local_index), Some(3));
        assert!(matches!(ring.find(2), Some((Slot::Previous, _))));
    }

    #[test]
    fn expired_sessions_are_not_used_and_rekey_rules() {
        let now = Instant::now();
        let mut ring = KeyRing::default();
        ring.install(session(1, true, now));
        assert!(!ring.wants_rekey_after_send(now));
        assert!(ring.wants_rekey_after_send(now + REKEY_AFTER_TIME + Duration::from_secs(1)));
        assert!(ring.wants_rekey_after_receive(now + Duration::from_secs(166)));
        assert!(!ring.wants_rekey_after_receive(now + Duration::from_secs(164)));
        assert!(ring.sending(now + REJECT_AFTER_TIME).is_none());
        let retired: Vec<_> = ring.clear().iter().collect();
        assert_eq!(retired, vec![1]);
        assert!(ring.is_empty());
    }
}
