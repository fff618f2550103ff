//! Responder threads: the public-key work of answering handshakes, in batches, off both the
//! datapath workers and the control-plane thread. The pool knows nothing of any protocol: a
//! `HandshakeWork` says what a job is and what it becomes (`wireguard` is WireGuard's), and
//! the pool hands out admitted jobs, bounds how many are in flight, and returns outcomes.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

/// Most jobs in one message to a thread.
const BATCH: usize = 32;
/// Jobs handed out per thread before the control plane waits for outcomes: enough to keep a
/// thread busy between wake-ups, few enough that fair admission decides what runs next.
pub const IN_FLIGHT_PER_THREAD: usize = 16;

/// One protocol's public-key work: what a responder thread does with an admitted job.
pub trait HandshakeWork: Send + Sync + 'static {
    /// An admitted handshake message.
    type Job: Send + 'static;
    /// What became of it.
    type Outcome: Send + 'static;
    /// Does the job's work.
    fn run(&self, job: Self::Job) -> Self::Outcome;
    /// What a job becomes when its work panicked (a bug: the thread and its share of the work
    /// must survive it). Made before every job starts, so it must be cheap and quiet: the
    /// pool logs the panic.
    fn failed(&self, job: &Self::Job) -> Self::Outcome;
}

/// The responder threads and their channels.
pub struct ResponderPool<W: HandshakeWork> {
    jobs: Sender<Vec<W::Job>>,
    /// Outcomes, a batch at a time.
    pub outcomes: Receiver<Vec<W::Outcome>>,
    /// Kept so `outcomes` never reports "disconnected" while the pool exists.
    _outcomes_tx: Sender<Vec<W::Outcome>>,
    threads: usize,
    in_flight: usize,
    _handles: Vec<JoinHandle<()>>,
}

impl<W: HandshakeWork> ResponderPool<W> {
    /// Starts `threads` responder threads (named `xgate-hs-N`) doing `work`.
    pub fn start(threads: usize, work: Arc<W>) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Vec<W::Job>>();
        let (out_tx, out_rx) = crossbeam_channel::unbounded();
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let jobs = jobs_rx.clone();
            let out = out_tx.clone();
            let work = work.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("xgate-hs-{i}"))
                    .spawn(move || serve(&jobs, &out, &*work))?,
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
    pub fn submit(&mut self, jobs: Vec<W::Job>) {
        let per = jobs.len().div_ceil(self.threads).clamp(1, BATCH);
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            let batch: Vec<W::Job> = jobs.by_ref().take(per).collect();
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

fn serve<W: HandshakeWork>(jobs: &Receiver<Vec<W::Job>>, out: &Sender<Vec<W::Outcome>>, work: &W) {
    while let Ok(batch) = jobs.recv() {
        let outcomes = batch
            .into_iter()
            .map(|job| {
                let failed = work.failed(&job);
                // The work reads shared state only through its own locks; a panic leaves
                // nothing half-written that the next job would trust.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.run(job)))
                    .unwrap_or_else(|_| {
                        tracing::error!("a responder thread's job panicked; counted as internal");
                        failed
                    })
            })
            .collect();
        if out.send(outcomes).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Doubles numbers; panics on 13. Counts how often `failed` was asked for.
    #[derive(Default)]
    struct Doubler {
        fallbacks: AtomicUsize,
    }

    impl HandshakeWork for Doubler {
        type Job = u32;
        type Outcome = Result<u32, u32>;

        fn run(&self, job: u32) -> Result<u32, u32> {
            assert_ne!(job, 13, "unlucky job");
            Ok(job * 2)
        }

        fn failed(&self, job: &u32) -> Result<u32, u32> {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            Err(*job)
        }
    }

    #[test]
    fn jobs_come_back_answered_and_a_panic_costs_only_its_own_job() {
        let work = Arc::new(Doubler::default());
        let mut pool = ResponderPool::start(2, work.clone()).expect("threads start");
        assert_eq!(pool.room(), 2 * IN_FLIGHT_PER_THREAD);
        pool.submit(vec![1, 13, 3, 4]);
        assert_eq!(pool.in_flight(), 4);
        let mut outcomes = Vec::new();
        while outcomes.len() < 4 {
            let batch = pool
                .outcomes
                .recv_timeout(Duration::from_secs(10))
                .expect("outcomes come back");
            pool.returned(batch.len());
            outcomes.extend(batch);
        }
        outcomes.sort();
        assert_eq!(outcomes, [Ok(2), Ok(6), Ok(8), Err(13)]);
        assert_eq!(pool.in_flight(), 0);
        // The threads survived the panic.
        pool.submit(vec![5]);
        let again = pool.outcomes.recv_timeout(Duration::from_secs(10));
        assert_eq!(again.expect("a thread still serves"), [Ok(10)]);
        assert_eq!(
            work.fallbacks.load(Ordering::Relaxed),
            5,
            "one fallback per job"
        );
    }
}
