//! Responder threads: the public-key work of answering initiations, in batches, off both the
//! datapath workers and the control-plane thread. Each job is an initiation that passed
//! admission; each outcome is either a response with its session keys, or why there is none.
//! The control plane then picks the receiver index, stamps the MACs, installs and transmits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use datapath::messages::HandshakeDatagram;
use proto::handshake::{LocalIdentity, SessionKeys};
use proto::responder::{respond, GuardRefusal, RespondError};
use proto::wire::Message;

use super::directory::{Directory, PeerKeys};

/// Most jobs in one message to a thread.
const BATCH: usize = 32;
/// Jobs handed out per thread before the control plane waits for outcomes: enough to keep a
/// thread busy between wake-ups, few enough that fair admission decides what runs next.
pub const IN_FLIGHT_PER_THREAD: usize = 16;

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

/// The responder threads and their channels.
pub struct ResponderPool {
    jobs: Sender<Vec<Job>>,
    /// Outcomes, a batch at a time.
    pub outcomes: Receiver<Vec<Outcome>>,
    /// Kept so `outcomes` never reports "disconnected" while the pool exists.
    _outcomes_tx: Sender<Vec<Outcome>>,
    threads: usize,
    in_flight: usize,
    _handles: Vec<JoinHandle<()>>,
}

impl ResponderPool {
    /// Starts `threads` responder threads reading `directory`.
    pub fn start(threads: usize, directory: Arc<Directory>) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Vec<Job>>();
        let (out_tx, out_rx) = crossbeam_channel::unbounded();
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let jobs = jobs_rx.clone();
            let out = out_tx.clone();
            let dir = directory.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("xgate-hs-{i}"))
                    .spawn(move || serve(&jobs, &out, &dir))?,
            );
        }
        Ok(Self {
            jobs: jobs_tx,
            outcomes: out_rx,
            _outcomes_tx: out_tx,
            threads,
            in_flight: 0,
            _handles: handles,
        })
    }

    /// How many more jobs may be handed out now.
    pub fn room(&self) -> usize {
        (self.threads * IN_FLIGHT_PER_THREAD).saturating_sub(self.in_flight)
    }

    /// Hands out admitted initiations, split so every thread gets a share.
    pub fn submit(&mut self, jobs: Vec<Job>) {
        let per = jobs.len().div_ceil(self.threads).clamp(1, BATCH);
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            let batch: Vec<Job> = jobs.by_ref().take(per).collect();
            let n = batch.len();
            if self.jobs.send(batch).is_ok() {
                self.in_flight += n;
            }
        }
    }

    /// Records that `n` outcomes came back.
    pub fn returned(&mut self, n: usize) {
        self.in_flight = self.in_flight.saturating_sub(n);
    }

    /// Jobs handed out whose outcome has not come back.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

fn serve(jobs: &Receiver<Vec<Job>>, out: &Sender<Vec<Outcome>>, dir: &Directory) {
    while let Ok(batch) = jobs.recv() {
        let outcomes = batch
            .into_iter()
            .map(|job| {
                // The guard's flood rule is held to when the initiation arrived (the worker
                // stamped it): no clock is read here, and a backlog's wait counts for nothing.
                let now = job.datagram.at;
                // A bug in one answer must not lose the thread (and its share of the work).
                std::panic::catch_unwind(|| answer(job.datagram, now, dir, &mut rand_core::OsRng))
                    .unwrap_or_else(|_| {
                        tracing::error!(from = %job.datagram.from, "responder failed on an initiation");
                        Err(Unanswered::Internal)
                    })
                    .unwrap_or_else(|why| Outcome::Dropped(why, job.datagram.from, job.proven))
            })
            .collect();
        if out.send(outcomes).is_err() {
            return;
        }
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
