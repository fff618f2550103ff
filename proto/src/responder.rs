//! The responder's rules for an initiation that passed the MAC checks: open it, find the
//! peer by its static key, authenticate its timestamp, hold it to the peer's guard (newer
//! timestamps only, at most INITIATIONS_PER_SECOND), and make the response. A `Tunnel` runs it
//! for its one peer; the daemon's responder threads run it against the directory of every
//! peer. MAC and cookie policy (under load, fair shares) stay with the caller.

use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};

use crate::constants::INITIATIONS_PER_SECOND;
use crate::handshake::{self, HandshakeError, LocalIdentity, RemotePeer, SessionKeys};
use crate::keys::PublicKey;
use crate::tai64n::Tai64N;
use crate::wire::Initiation;

/// Why an authenticated initiation is refused by its peer's guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GuardRefusal {
    /// Its timestamp is not newer than the last one accepted: a replay.
    #[error("initiation timestamp not newer than the last accepted")]
    Replayed,
    /// It came sooner than 1/INITIATIONS_PER_SECOND after the last one accepted.
    #[error("initiations faster than {INITIATIONS_PER_SECOND} per second")]
    TooSoon,
}

/// One peer's guard on initiations.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InitiationGuard {
    last_timestamp: Option<Tai64N>,
    last_accepted: Option<Instant>,
}

impl InitiationGuard {
    /// Accepts an initiation stamped `timestamp` at `now` if it is newer than the last and not
    /// too soon after it, and records it; check and record happen together, so callers that
    /// share a guard between threads hold one lock across this call.
    pub fn admit(&mut self, timestamp: Tai64N, now: Instant) -> Result<(), GuardRefusal> {
        if self.last_timestamp.is_some_and(|t| timestamp <= t) {
            return Err(GuardRefusal::Replayed);
        }
        let min_gap = Duration::from_secs(1) / INITIATIONS_PER_SECOND;
        if self
            .last_accepted
            .is_some_and(|t| now.saturating_duration_since(t) < min_gap)
        {
            return Err(GuardRefusal::TooSoon);
        }
        self.last_timestamp = Some(timestamp);
        self.last_accepted = Some(now);
        Ok(())
    }
}

/// Where the responder finds the peer an initiation names, and that peer's guard.
pub trait ResponderPeers {
    /// How the caller names a peer it found.
    type Peer;
    /// The peer with static key `initiator`, if it is one of ours.
    fn find(&self, initiator: &PublicKey) -> Option<Self::Peer>;
    /// The peer's handshake values.
    fn remote<'a>(&'a self, peer: &'a Self::Peer) -> &'a RemotePeer;
    /// Runs the peer's guard on an authenticated initiation.
    fn admit(
        &mut self,
        peer: &Self::Peer,
        timestamp: Tai64N,
        now: Instant,
    ) -> Result<(), GuardRefusal>;
}

/// Why an initiation got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RespondError {
    /// Its static key did not decrypt for our key.
    #[error("initiation static key did not decrypt: {0}")]
    BadStatic(HandshakeError),
    /// Its static key is not one of our peers'.
    #[error("initiation from an unknown static key")]
    UnknownPeer,
    /// Its timestamp did not authenticate, or the response could not be made.
    #[error(transparent)]
    Handshake(HandshakeError),
    /// The peer's guard refused it.
    #[error(transparent)]
    Refused(#[from] GuardRefusal),
}

/// An answered initiation: the caller stamps the response's MACs, installs a session from
/// `keys` and sends `response`.
pub struct Responded<P> {
    /// The peer it came from.
    pub peer: P,
    /// The response message (MACs still zero).
    pub response: [u8; 92],
    /// The session keys, with `local_index` as the response's sender index.
    pub keys: SessionKeys,
}

/// Answers initiation `init` received at `now`, with our sender index `local_index` in the
/// response.
pub fn respond<D: ResponderPeers, R: RngCore + CryptoRng>(
    local: &LocalIdentity,
    init: &Initiation<'_>,
    now: Instant,
    peers: &mut D,
    local_index: u32,
    rng: &mut R,
) -> Result<Responded<D::Peer>, RespondError> {
    let opened = handshake::open_initiation(local, init).map_err(RespondError::BadStatic)?;
    let peer = peers
        .find(&opened.initiator)
        .ok_or(RespondError::UnknownPeer)?;
    let accepted = handshake::accept_initiation(local, opened, peers.remote(&peer))
        .map_err(RespondError::Handshake)?;
    peers.admit(&peer, accepted.timestamp, now)?;
    let (response, keys) =
        handshake::create_response(&accepted, peers.remote(&peer), local_index, rng)
            .map_err(RespondError::Handshake)?;
    Ok(Responded {
        peer,
        response,
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(n: u8) -> Tai64N {
        Tai64N([0, 0, 0, 0, 0, 0, 0, n, 0, 0, 0, 0])
    }

    #[test]
    fn the_guard_wants_newer_timestamps_no_faster_than_fifty_a_second() {
        let t0 = Instant::now();
        let mut g = InitiationGuard::default();
        assert_eq!(g.admit(stamp(2), t0), Ok(()));
        assert_eq!(
            g.admit(stamp(2), t0 + Duration::from_secs(1)),
            Err(GuardRefusal::Replayed)
        );
        assert_eq!(
            g.admit(stamp(1), t0 + Duration::from_secs(1)),
            Err(GuardRefusal::Replayed)
        );
        assert_eq!(
            g.admit(stamp(3), t0 + Duration::from_millis(10)),
            Err(GuardRefusal::TooSoon)
        );
        // A refusal records nothing: the same initiation a moment later passes.
        assert_eq!(g.admit(stamp(3), t0 + Duration::from_millis(20)), Ok(()));
    }
}
