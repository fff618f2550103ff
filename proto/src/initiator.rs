//! Our side of a handshake with one peer: when an initiation may go out, making it (stamped
//! with MAC1, and MAC2 once the peer sent a cookie), the retransmission and give-up timers,
//! the cookie reply it may draw, and finishing it with the peer's response. `Tunnel` and the
//! daemon's control plane both start handshakes through this, so these rules and their order
//! are written once. The receiver index is the caller's to choose (the daemon allocates
//! indices across workers), and to release when this gives one back.

use std::time::Instant;

use rand_core::{CryptoRng, RngCore};

use crate::cookie::{CookieError, CookieJar};
use crate::handshake::{
    consume_response, create_initiation, HandshakeError, InitiatorHandshake, LocalIdentity,
    RemotePeer, SessionKeys,
};
use crate::tai64n::Tai64N;
use crate::timers::{rekey_jitter, HandshakeAction, HandshakeTimers};
use crate::wire::{CookieReply, Response};

/// Why a response or cookie reply was not taken.
#[derive(Debug, thiserror::Error)]
pub enum InitiatorError {
    /// No initiation of ours with that index is pending.
    #[error("no initiation pending for index {0:#x}")]
    NotPending(u32),
    /// The response did not authenticate.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The cookie reply did not authenticate.
    #[error(transparent)]
    Cookie(#[from] CookieError),
}

/// What the timers ask of a driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitiatorDue {
    /// Nothing yet.
    Wait,
    /// Send a new initiation (`start` with `retry`).
    Retransmit,
    /// REKEY_ATTEMPT_TIME passed without an answer: the pending initiation is dropped, its
    /// index (if any) is the caller's to release.
    GaveUp(Option<u32>),
}

/// A new initiation, and the index of the one it replaces (the caller's to release).
pub struct Started {
    /// The initiation, MAC1 (and MAC2) stamped.
    pub message: [u8; 148],
    /// The index of the pending initiation it replaces.
    pub replaced: Option<u32>,
}

/// One peer's handshakes in the initiator role.
#[derive(Default)]
pub struct Initiator {
    pending: Option<Box<InitiatorHandshake>>,
    timers: HandshakeTimers,
}

impl Initiator {
    /// True if an initiation may go out now: a retransmission always, a new handshake once
    /// per REKEY_TIMEOUT and not while one is pending.
    pub fn may_start(&self, now: Instant, retry: bool) -> bool {
        retry || (self.timers.can_initiate(now) && !self.timers.is_pending())
    }

    /// Makes an initiation with receiver index `index`, stamps it with `jar`, keeps its state
    /// and arms the retransmit timer (REKEY_TIMEOUT plus jitter from `rng`); `retry` says
    /// `poll` asked for it. Fails only for a peer whose key gives a low-order shared secret
    /// (it can never complete); nothing changes then.
    pub fn start<R: RngCore + CryptoRng>(
        &mut self,
        (local, remote): (&LocalIdentity, &RemotePeer),
        (index, stamp): (u32, Tai64N),
        jar: &mut CookieJar,
        (now, retry): (Instant, bool),
        rng: &mut R,
    ) -> Result<Started, HandshakeError> {
        let (state, mut message) = create_initiation(local, remote, index, stamp, rng)?;
        jar.stamp(&mut message, now);
        let jitter = rekey_jitter(rng.next_u32());
        let replaced = self
            .pending
            .replace(Box::new(state))
            .map(|old| old.local_index);
        self.timers.on_initiation_sent(now, jitter, retry);
        Ok(Started { message, replaced })
    }

    /// Takes a cookie reply to our pending initiation: the next one carries MAC2.
    pub fn take_cookie(
        &self,
        jar: &mut CookieJar,
        reply: &CookieReply<'_>,
        now: Instant,
    ) -> Result<(), InitiatorError> {
        self.pending_for(reply.receiver)?;
        jar.consume(reply, now)?;
        Ok(())
    }

    /// Finishes our pending initiation with the peer's response: the session's keys. The
    /// retransmissions stop.
    pub fn finish(
        &mut self,
        local: &LocalIdentity,
        remote: &RemotePeer,
        response: &Response<'_>,
    ) -> Result<SessionKeys, InitiatorError> {
        let state = self.pending_for(response.receiver)?;
        let keys = consume_response(state, local, remote, response)?;
        self.pending = None;
        self.timers.on_handshake_complete();
        Ok(keys)
    }

    /// A session came up another way (the peer's initiation, confirmed): stop retransmitting.
    pub fn session_up(&mut self) {
        self.timers.on_handshake_complete();
    }

    /// Drops the pending initiation (keys changed or zeroed); returns its index.
    pub fn abandon(&mut self) -> Option<u32> {
        self.pending.take().map(|p| p.local_index)
    }

    /// Runs the retransmit timer if it expired.
    pub fn poll(&mut self, now: Instant) -> InitiatorDue {
        match self.timers.poll(now) {
            HandshakeAction::Wait => InitiatorDue::Wait,
            HandshakeAction::Retransmit => InitiatorDue::Retransmit,
            HandshakeAction::GiveUp => InitiatorDue::GaveUp(self.abandon()),
        }
    }

    /// When `poll` next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// The index of our pending initiation.
    pub fn pending_index(&self) -> Option<u32> {
        self.pending.as_ref().map(|p| p.local_index)
    }

    fn pending_for(&self, index: u32) -> Result<&InitiatorHandshake, InitiatorError> {
        self.pending
            .as_deref()
            .filter(|p| p.local_index == index)
            .ok_or(InitiatorError::NotPending(index))
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::constants::{REKEY_ATTEMPT_TIME, REKEY_TIMEOUT};
    use crate::handshake::{accept_initiation, create_response, open_initiation};
    use crate::keys::PrivateKey;
    use crate::wire::Message;

    struct Pair {
        a: LocalIdentity,
        b: LocalIdentity,
        b_seen_by_a: RemotePeer,
        a_seen_by_b: RemotePeer,
        rng: ChaCha8Rng,
    }

    fn pair() -> Pair {
        let mut rng = ChaCha8Rng::seed_from_u64(15);
        let (ka, kb) = (
            PrivateKey::generate(&mut rng),
            PrivateKey::generate(&mut rng),
        );
        let (a, b) = (LocalIdentity::new(&ka), LocalIdentity::new(&kb));
        Pair {
            b_seen_by_a: RemotePeer::new(&a, kb.public_key(), None),
            a_seen_by_b: RemotePeer::new(&b, ka.public_key(), None),
            a,
            b,
            rng,
        }
    }

    /// B's response to A's initiation `message`, from B's index 99.
    fn respond(p: &mut Pair, message: &[u8]) -> [u8; 92] {
        let Ok(Message::Initiation(init)) = Message::parse(message) else {
            panic!("not an initiation");
        };
        let opened = open_initiation(&p.b, &init).expect("opens");
        let accepted = accept_initiation(&p.b, opened, &p.a_seen_by_b).expect("accepted");
        create_response(&accepted, &p.a_seen_by_b, 99, &mut p.rng)
            .expect("response")
            .0
    }

    #[test]
    fn an_initiation_is_rate_limited_retransmitted_replaced_and_finished() {
        let mut p = pair();
        let mut jar = CookieJar::for_recipient(&p.b.public_key());
        let mut i = Initiator::default();
        let t0 = Instant::now();
        assert!(i.may_start(t0, false));
        let first = i
            .start(
                (&p.a, &p.b_seen_by_a),
                (7, Tai64N([1; 12])),
                &mut jar,
                (t0, false),
                &mut p.rng,
            )
            .expect("starts");
        assert_eq!((first.replaced, i.pending_index()), (None, Some(7)));
        // Pending and within REKEY_TIMEOUT: no new handshake, but a retry may go.
        assert!(!i.may_start(t0, false) && i.may_start(t0, true));
        assert_eq!(i.poll(t0), InitiatorDue::Wait);
        let due = i.next_deadline().expect("retransmit armed");
        assert!(due >= t0 + REKEY_TIMEOUT);
        assert_eq!(i.poll(due), InitiatorDue::Retransmit);
        let second = i
            .start(
                (&p.a, &p.b_seen_by_a),
                (8, Tai64N([2; 12])),
                &mut jar,
                (due, true),
                &mut p.rng,
            )
            .expect("restarts");
        assert_eq!(
            second.replaced,
            Some(7),
            "the old index is the caller's to free"
        );

        // A response to the replaced initiation is not taken; one to the current one is.
        let stale = respond(&mut p, &first.message);
        let Ok(Message::Response(r)) = Message::parse(&stale) else {
            panic!("not a response");
        };
        assert!(matches!(
            i.finish(&p.a, &p.b_seen_by_a, &r),
            Err(InitiatorError::NotPending(7))
        ));
        let fresh = respond(&mut p, &second.message);
        let Ok(Message::Response(r)) = Message::parse(&fresh) else {
            panic!("not a response");
        };
        let keys = i.finish(&p.a, &p.b_seen_by_a, &r).expect("finishes");
        assert_eq!((keys.local_index, keys.remote_index), (8, 99));
        assert_eq!((i.pending_index(), i.next_deadline()), (None, None));
    }

    #[test]
    fn unanswered_initiations_give_up_and_release_their_index() {
        let mut p = pair();
        let mut jar = CookieJar::for_recipient(&p.b.public_key());
        let mut i = Initiator::default();
        let start = Instant::now();
        let mut now = start;
        let mut index = 1;
        i.start(
            (&p.a, &p.b_seen_by_a),
            (index, Tai64N([0; 12])),
            &mut jar,
            (now, false),
            &mut p.rng,
        )
        .expect("starts");
        let give_up_by = start + REKEY_ATTEMPT_TIME + REKEY_TIMEOUT * 3;
        loop {
            now = i.next_deadline().expect("armed");
            assert!(now <= give_up_by, "never gave up");
            match i.poll(now) {
                InitiatorDue::Retransmit => {
                    index += 1;
                    let s = i
                        .start(
                            (&p.a, &p.b_seen_by_a),
                            (index, Tai64N([0; 12])),
                            &mut jar,
                            (now, true),
                            &mut p.rng,
                        )
                        .expect("restarts");
                    assert_eq!(s.replaced, Some(index - 1));
                }
                InitiatorDue::GaveUp(released) => {
                    assert_eq!(released, Some(index));
                    break;
                }
                InitiatorDue::Wait => panic!("woken for nothing"),
            }
        }
        assert!(now >= start + REKEY_ATTEMPT_TIME, "gave up early");
        assert_eq!(i.pending_index(), None);
    }
}
