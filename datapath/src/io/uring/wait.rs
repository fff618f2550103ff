//! How a worker's ring waits: sleep until something comes, gather a batch within
//! `MIN_WAIT_USEC` where the kernel can, and, when the worker asks (`worker::linger`), linger
//! for the rest of a batch while only a few packets wait (for the AF_XDP backend, whose
//! frames wait outside the ring, also while none does).

use std::io;
use std::time::Duration;

use io_uring::types::{SubmitArgs, Timespec};

use super::{UringBackend, MIN_WAIT_USEC, WAIT_BATCH};
use crate::io::Rx;

/// What a look at the ring without sleeping found.
enum Waiting {
    /// This many packets (maybe none).
    Packets(usize),
    /// A notice: a wake-up or the TUN closing.
    Notice,
}

impl UringBackend {
    /// Submits what is queued, then sleeps until something comes or `left` runs out, unless
    /// completions already wait; with a `linger`, when fewer than a batch of packets wait
    /// (and no wake-up), sleeps up to `linger` for the rest of a batch. Takes what came.
    pub(super) fn wait_lingering(
        &mut self,
        out: &mut Vec<Rx>,
        left: Duration,
        linger: Duration,
    ) -> io::Result<()> {
        let linger = linger.min(left);
        if linger.is_zero() || !self.anything_waiting() {
            self.wait(left)?;
            self.reap(out);
            return Ok(());
        }
        match self.take_waiting(out)? {
            Waiting::Notice => Ok(()),
            Waiting::Packets(0) => {
                self.wait(left)?;
                self.reap(out);
                Ok(())
            }
            Waiting::Packets(n) => self.rest_of_batch(out, n, linger),
        }
    }

    /// Lingers up to `linger` for a batch for the AF_XDP backend, whose frames wait outside
    /// this ring (so only its own completions can end the wait early): takes what this ring
    /// has first, and does not wait if that holds a wake-up.
    pub(crate) fn linger(&mut self, out: &mut Vec<Rx>, linger: Duration) -> io::Result<()> {
        match self.take_waiting(out)? {
            Waiting::Packets(n) => self.rest_of_batch(out, n, linger),
            Waiting::Notice => Ok(()),
        }
    }

    /// With `taken` packets already taken, sleeps up to `linger` for the completions that
    /// would make a batch, and takes what came. (They may carry several packets each, as a
    /// coalesced receive does: the worker's policy caps the linger at what a batch takes.)
    fn rest_of_batch(
        &mut self,
        out: &mut Vec<Rx>,
        taken: usize,
        linger: Duration,
    ) -> io::Result<()> {
        if taken < WAIT_BATCH {
            self.enter(WAIT_BATCH - taken, 0, Some(linger))?;
            self.reap(out);
        }
        Ok(())
    }

    /// Completions wait, the kernel flags deferred work that will post some, or queued
    /// submissions (a batch's sends and writes) will complete when submitted.
    fn anything_waiting(&mut self) -> bool {
        self.queue_open_work();
        let mut sq = self.ring.submission();
        sq.sync();
        let pending = !sq.is_empty() || sq.taskrun();
        drop(sq);
        pending || !self.ring.completion().is_empty()
    }

    /// Submits what is queued, posts deferred completions without sleeping (the TASKRUN flag
    /// tells the submission there are some) and takes them: how many packets that was, or
    /// that it held a notice (a wake-up, the TUN closing), which must not wait. Sends and
    /// writes that completed leave nothing in `out` and do not count.
    fn take_waiting(&mut self, out: &mut Vec<Rx>) -> io::Result<Waiting> {
        self.enter(0, 0, None)?;
        let before = out.len();
        self.reap(out);
        let taken = &out[before..];
        let packets = taken.iter().filter(|r| r.is_packet()).count();
        Ok(if taken.len() > packets {
            Waiting::Notice
        } else {
            Waiting::Packets(packets)
        })
    }

    /// Submits what is queued and sleeps until something comes (a batch, within
    /// MIN_WAIT_USEC, where the kernel can) or `left` runs out; does not sleep if completions
    /// already wait or `left` is zero.
    fn wait(&mut self, left: Duration) -> io::Result<()> {
        self.queue_open_work();
        if left.is_zero() || !self.ring.completion().is_empty() {
            return self.enter(0, 0, None);
        }
        if self.min_wait {
            self.enter(WAIT_BATCH, MIN_WAIT_USEC, Some(left))
        } else {
            self.enter(1, 0, Some(left))
        }
    }

    /// Queues the open send batch and TUN run and re-arms the receives.
    fn queue_open_work(&mut self) {
        self.submit_open_batch();
        self.submit_open_run();
        self.rearm();
    }

    /// Submits what is queued; with `wait` (not zero), also sleeps up to that long for `want`
    /// completions, any one ending the sleep after `min_wait` microseconds (0: not used).
    /// Deferred completions are posted either way when the kernel flags some (io-uring
    /// 0.7.16 enters with GETEVENTS when IORING_SQ_TASKRUN is set).
    fn enter(&mut self, want: usize, min_wait: u32, wait: Option<Duration>) -> io::Result<()> {
        self.queue_open_work();
        let (want, wait) = match wait.filter(|w| !w.is_zero()) {
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
}
