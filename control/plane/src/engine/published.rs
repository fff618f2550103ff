//! The state the plane publishes for readers that must cost it nothing (the HTTP API's
//! `/metrics` and status): gathered from the workers once per `PUBLISH_EVERY` without waiting
//! for them, and left on a board any thread reads by cloning a pointer. A scrape, however
//! frequent, never reaches the thread that admits handshakes.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use datapath::messages::WorkerSnapshot;

use super::DeviceState;

/// How often the state is gathered and published (so how old a reader's view can be).
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// A gathering ends this long after it started, answered or not.
pub(super) const GATHER_TIMEOUT: Duration = Duration::from_secs(1);
/// Changes make the plane gather again at most this often (a script adding peers one by
/// one must not make every worker copy all its peers per request).
pub(super) const MIN_GAP: Duration = Duration::from_millis(200);

/// One worker's outer datagram rates between the last two publications.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WorkerRates {
    /// Datagrams received per second.
    pub rx_pps: f64,
    /// Datagrams sent per second.
    pub tx_pps: f64,
}

/// One publication.
#[derive(Debug)]
pub struct Published {
    /// The interface's state.
    pub state: DeviceState,
    /// When the workers were asked for it.
    pub taken: Instant,
    /// Each worker's rates since the publication before (zero for the first).
    pub rates: Vec<WorkerRates>,
}

/// Where the latest publication is left.
#[derive(Default)]
pub struct Board {
    latest: Mutex<Option<Arc<Published>>>,
}

impl Board {
    /// The latest publication, if any yet.
    pub fn latest(&self) -> Option<Arc<Published>> {
        // The lock only guards a pointer swap: nothing can be left half-done by a panic.
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Publishes `state`, taken at `taken`, with rates against the previous publication;
    /// gives back the publication it replaced.
    pub(super) fn publish(&self, state: DeviceState, taken: Instant) -> Option<Arc<Published>> {
        let previous = self.latest();
        let rates = match &previous {
            Some(p) if taken > p.taken => {
                let secs = taken.duration_since(p.taken).as_secs_f64();
                let per_second = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs;
                state
                    .per_worker
                    .iter()
                    .zip(&p.state.per_worker)
                    .map(|(now, before)| WorkerRates {
                        rx_pps: per_second(now.rx_datagrams, before.rx_datagrams),
                        tx_pps: per_second(now.tx_datagrams, before.tx_datagrams),
                    })
                    .collect()
            }
            _ => vec![WorkerRates::default(); state.per_worker.len()],
        };
        let published = Arc::new(Published {
            state,
            taken,
            rates,
        });
        let replaced = self
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(published);
        // `previous` was a second pointer to the same publication.
        drop(previous);
        replaced
    }
}

/// A gathering in progress: the workers asked, their answers so far.
pub(super) struct Gathering {
    /// Where the answers arrive.
    pub answers: Receiver<WorkerSnapshot>,
    /// Workers asked.
    pub asked: usize,
    /// Answers received.
    pub got: Vec<WorkerSnapshot>,
    /// When it was started.
    pub started: Instant,
}

impl Gathering {
    /// Takes the answers waiting; true once every worker answered, none can any more (a
    /// worker that stopped dropped its request: the closed channel would keep waking the
    /// plane), or the time is up.
    pub fn collect(&mut self, now: Instant) -> bool {
        loop {
            match self.answers.try_recv() {
                Ok(s) => self.got.push(s),
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return true,
            }
        }
        self.got.len() >= self.asked || now >= self.started + GATHER_TIMEOUT
    }
}
