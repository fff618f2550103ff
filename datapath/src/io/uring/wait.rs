//! How a worker's ring waits: sleep until something comes, gather a batch within
//! `MIN_WAIT_USEC` where the kernel can, and linger for the rest of a batch when only a few
//! packets wait (`[interface] batch_linger_us`).

use std::io;
use std::time::{Duration, Instant};

use io_uring::types::{SubmitArgs, Timespec};

use super::{UringBackend, MIN_WAIT_USEC, WAIT_BATCH};
use crate::io::Rx;

impl UringBackend {
    /// Submits what is queued and sleeps until something comes or `deadline` passes; when
    /// `linger` is not zero and fewer than a batch of completions wait, sleeps up to
    /// `linger` (within `deadline`) for the rest of a batch (`Backend::poll_lingering`).
    pub(super) fn wait(&mut self, deadline: Instant, linger: Duration) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        // A zero wait must not enter the ring to sleep at all (a minimum wait would apply).
        let sleep = |d: Duration| (!d.is_zero()).then_some(d);
        if !linger.is_zero() && self.ring.completion().is_empty() {
            // Completions of deferred task work are posted only when this thread enters the
            // ring: post them, without sleeping, to see how many packets wait.
            self.enter(1, 0, Some(Duration::ZERO))?;
        }
        let waiting = self.ring.completion().len();
        match (waiting, self.min_wait) {
            // Nothing waiting: sleep until something comes (a batch, within
            // MIN_WAIT_USEC, where the kernel can).
            (0, true) => self.enter(WAIT_BATCH, MIN_WAIT_USEC, sleep(left))?,
            (0, false) => self.enter(1, 0, sleep(left))?,
            // Less than a batch waiting: linger for the rest of one, if asked.
            (n, _) if n < WAIT_BATCH && !linger.is_zero() => {
                self.enter(WAIT_BATCH, 0, sleep(linger.min(left)))?
            }
            _ => self.enter(0, 0, None)?,
        }
        Ok(())
    }

    /// Submits what is queued; with `wait`, also posts deferred completions and sleeps up
    /// to that long (zero: not at all) for `want` of them; after `min_wait` microseconds (0:
    /// not used), any completion ends the sleep.
    fn enter(&mut self, want: usize, min_wait: u32, wait: Option<Duration>) -> io::Result<()> {
        self.submit_open_batch();
        self.submit_open_run();
        self.rearm();
        let (want, wait) = match wait {
            Some(wait) => (want, wait),
            None => (0, Duration::ZERO),
        };
        let ts = Timespec::new()
            .sec(wait.as_secs())
            .nsec(wait.subsec_nanos());
        let args = SubmitArgs::new().min_wait_usec(min_wait).timespec(&ts);
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Waits up to `linger` for a batch of completions whatever is already waiting, then
    /// takes what came: for a wrapping backend whose packets wait outside this ring.
    pub fn linger(&mut self, out: &mut Vec<Rx>, linger: Duration) -> io::Result<()> {
        self.enter(WAIT_BATCH, 0, Some(linger))?;
        self.reap(out);
        Ok(())
    }
}
