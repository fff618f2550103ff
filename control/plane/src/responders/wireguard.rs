//! WireGuard's work on the responder threads: an admitted initiation in, a response with its
//! session keys (or why there is none) out, by `proto::responder`'s rules. The control plane
//! then picks the receiver index, stamps the MACs, installs and transmits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use datapath::messages::HandshakeDatagram;
use proto::handshake::{LocalIdentity, SessionKeys};
use proto::responder::{respond, GuardRefusal, RespondError};
use proto::wire::Message;

use super::directory::{Directory, PeerKeys};
use super::pool::HandshakeWork;

/// An admitted initiation.
#[derive(Clone, Copy)]
pub struct Job {
    /// The datagram.
    pub datagram: HandshakeDatagram,
    /// Its MAC2 was valid: its source address is proven.
    pub proven: bool,
}

/// What became of a job.
pub enum Outcome {
    /// Authenticated and answered: the response still needs its index and MACs.
    Answered(Box<Answer>),
    /// Not answered: why, where it came from, and whether that source was proven.
    Dropped(Unanswered, SocketAddr, bool),
}

/// A response ready but for its index and MACs.
pub struct Answer {
    /// The initiation it answers.
    pub datagram: HandshakeDatagram,
    /// The peer, as it was when the job ran (the control plane checks it is still current).
    pub peer: Arc<PeerKeys>,
    /// Our identity the job ran with (likewise checked: a new private key voids the answer).
    pub local: Arc<LocalIdentity>,
    /// The response, sender index and MACs zero.
    pub response: [u8; 92],
    /// The session's keys (local index zero).
    pub keys: SessionKeys,
}

/// Why an admitted initiation got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// We have no private key.
    NoPrivateKey,
    /// Not a well-formed initiation.
    Malformed,
    /// Its static key did not decrypt for us.
    BadStatic,
    /// Its static key is no peer's.
    UnknownPeer,
    /// Its timestamp did not authenticate, or a key was low-order.
    BadHandshake,
    /// Its timestamp was not newer than the last one accepted.
    Replayed,
    /// Too soon after the peer's last accepted initiation.
    TooSoon,
    /// The responder failed on it (a bug; logged).
    Internal,
}

/// Answers WireGuard initiations from the peers in a shared directory.
pub struct WireguardResponder {
    directory: Arc<Directory>,
}

impl WireguardResponder {
    /// Answers for the peers in `directory`.
    pub fn new(directory: Arc<Directory>) -> Self {
        Self { directory }
    }
}

impl HandshakeWork for WireguardResponder {
    type Job = Job;
    type Outcome = Outcome;

    fn run(&self, job: Job) -> Outcome {
        // The guard's flood rule is held to when the initiation arrived (the worker stamped
        // it): no clock is read here, and a backlog's wait counts for nothing.
        let now = job.datagram.at;
        answer(job.datagram, now, &self.directory, &mut rand_core::OsRng)
            .unwrap_or_else(|why| Outcome::Dropped(why, job.datagram.from, job.proven))
    }

    fn failed(&self, job: &Job) -> Outcome {
        Outcome::Dropped(Unanswered::Internal, job.datagram.from, job.proven)
    }
}

/// Answers one initiation by the responder rules (`proto::responder`), received by `now`.
fn answer(
    datagram: HandshakeDatagram,
    now: Instant,
    mut dir: &Directory,
    rng: &mut rand_core::OsRng,
) -> Result<Outcome, Unanswered> {
    let local = dir.local().ok_or(Unanswered::NoPrivateKey)?;
    let Ok(Message::Initiation(init)) = Message::parse(datagram.message()) else {
        return Err(Unanswered::Malformed);
    };
    // The sender index is the control plane's to pick (it knows which are free).
    let responded = respond(&local, &init, now, &mut dir, 0, rng).map_err(|e| match e {
        RespondError::BadStatic(_) => Unanswered::BadStatic,
        RespondError::UnknownPeer => {
            tracing::debug!(from = %datagram.from, "initiation from unknown peer");
            Unanswered::UnknownPeer
        }
        RespondError::Handshake(_) => Unanswered::BadHandshake,
        RespondError::Refused(GuardRefusal::Replayed) => {
            tracing::debug!(from = %datagram.from, "replayed initiation dropped");
            Unanswered::Replayed
        }
        RespondError::Refused(GuardRefusal::TooSoon) => Unanswered::TooSoon,
    })?;
    Ok(Outcome::Answered(Box::new(Answer {
        datagram,
        peer: responded.peer,
        local,
        response: responded.response,
        keys: responded.keys,
    })))
}
