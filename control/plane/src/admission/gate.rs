//! The flood defence in front of the responder threads, for any handshake protocol: it holds
//! jobs of a type it knows nothing about, keyed by where they came from and whether that
//! source proved its address (WireGuard: MAC2 after a cookie; IKEv2: the COOKIE notify).
//!
//! In order: exact replays are dropped before any public-key work (`ReplayFilter`, by a
//! fingerprint the protocol picks); sources whose jobs keep failing are held (`Suspects`);
//! the rest wait in per-source fair queues (`FairQueue`), proven sources in a queue of their
//! own. The protocol decides what a refusal costs the sender (a cookie, or nothing).

use std::time::Instant;

use super::{FairQueue, Refusal, ReplayFilter, SourceKey, Suspects};

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A byte-for-byte copy of a job seen lately.
    Replay,
    /// Its source has spent its allowance of failed jobs.
    FailingSource,
    /// Its source already has its share of the backlog waiting.
    OverShare,
    /// The whole backlog is full.
    BacklogFull,
}

/// Queues of admitted handshake jobs of type `J`, and the rules that admit them.
pub struct Admission<J> {
    /// Jobs from sources that have not proved their address, per source.
    unproven: FairQueue<J>,
    /// Jobs from sources that proved their address, served first.
    proven: FairQueue<J>,
    /// Fingerprints of recent jobs (exact replays cost no public-key work).
    replays: ReplayFilter,
    /// Unproven sources whose jobs keep failing (they must prove their address).
    suspects: Suspects,
    /// Proven sources whose jobs keep failing (they get a trickle).
    proven_suspects: Suspects,
    /// Jobs handed out so far (every fourth slot goes to unproven sources).
    fed: u64,
}

impl<J> Admission<J> {
    /// Empty queues: `backlog` jobs in all from unproven sources, `proven_backlog` from
    /// proven ones.
    pub fn new(backlog: usize, proven_backlog: usize, now: Instant) -> Self {
        Self {
            unproven: FairQueue::new(backlog),
            proven: FairQueue::new(proven_backlog),
            replays: ReplayFilter::new(now),
            suspects: Suspects::default(),
            proven_suspects: Suspects::default(),
            fed: 0,
        }
    }

    /// Queues `job` from `source`, unless `fingerprint` (bytes a sender makes fresh for every
    /// message, such as an ephemeral key) was seen lately or the source is refused.
    pub fn offer(
        &mut self,
        source: SourceKey,
        proven: bool,
        fingerprint: &[u8; 32],
        job: J,
        now: Instant,
    ) -> Result<(), Refused> {
        if !self.replays.first_sighting(fingerprint, now) {
            return Err(Refused::Replay);
        }
        let (suspects, queue) = if proven {
            (&mut self.proven_suspects, &mut self.proven)
        } else {
            (&mut self.suspects, &mut self.unproven)
        };
        if suspects.exhausted(source, now) {
            return Err(Refused::FailingSource);
        }
        queue.offer(source, job).map_err(|(why, _)| match why {
            Refusal::OverShare => Refused::OverShare,
            Refusal::Overflow => Refused::BacklogFull,
        })
    }

    /// Counts a failed job against its source: an unproven one must then prove its address
    /// (anyone can spoof one), a proven one is limited to a trickle.
    pub fn charge_failure(&mut self, source: SourceKey, proven: bool, now: Instant) {
        if proven {
            self.proven_suspects.charge(source, now);
        } else {
            self.suspects.charge(source, now);
        }
    }

    /// Up to `room` jobs for the responder threads: proven sources first, but every fourth
    /// slot to an unproven one if any waits, so busy proven sources cannot starve clients that
    /// have not been asked to prove their address yet.
    pub fn take(&mut self, room: usize) -> Vec<J> {
        let mut jobs = Vec::with_capacity(room.min(self.waiting()));
        while jobs.len() < room {
            self.fed = self.fed.wrapping_add(1);
            let next = if self.fed.is_multiple_of(4) {
                self.unproven.pop().or_else(|| self.proven.pop())
            } else {
                self.proven.pop().or_else(|| self.unproven.pop())
            };
            match next {
                Some(job) => jobs.push(job),
                None => break,
            }
        }
        jobs
    }

    /// Jobs waiting, proven or not.
    pub fn waiting(&self) -> usize {
        self.unproven.len() + self.proven.len()
    }

    /// Jobs waiting from unproven sources.
    pub fn waiting_unproven(&self) -> usize {
        self.unproven.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn source(n: u8) -> SourceKey {
        SourceKey::of(SocketAddr::from(([192, 0, 2, n], 4000)))
    }

    fn fingerprint(n: u32) -> [u8; 32] {
        let mut f = [0u8; 32];
        f[..4].copy_from_slice(&n.to_le_bytes());
        f
    }

    #[test]
    fn replays_are_refused_before_queueing_and_proven_jobs_go_first() {
        let now = Instant::now();
        let mut a: Admission<&str> = Admission::new(64, 64, now);
        assert_eq!(
            a.offer(source(1), false, &fingerprint(1), "u1", now),
            Ok(())
        );
        assert_eq!(
            a.offer(source(1), false, &fingerprint(1), "copy", now),
            Err(Refused::Replay)
        );
        for n in 2..5 {
            assert_eq!(a.offer(source(2), true, &fingerprint(n), "p", now), Ok(()));
        }
        assert_eq!(a.waiting(), 4);
        // Three proven, then the unproven one in the fourth slot.
        assert_eq!(a.take(4), ["p", "p", "p", "u1"]);
        assert_eq!(a.take(4), Vec::<&str>::new());
    }

    #[test]
    fn a_source_that_keeps_failing_is_held_and_shares_are_kept() {
        let now = Instant::now();
        let mut a: Admission<u32> = Admission::new(64, 64, now);
        let mut refused = None;
        for n in 0..100 {
            a.charge_failure(source(3), false, now);
            if let Err(why) = a.offer(source(3), false, &fingerprint(n), n, now) {
                refused = Some(why);
                break;
            }
        }
        assert_eq!(refused, Some(Refused::FailingSource));
        // The failures were charged to the unproven source only.
        assert_eq!(a.offer(source(3), true, &fingerprint(1000), 0, now), Ok(()));

        // One busy source gets its share of the backlog, then is refused; a newcomer is not.
        let mut b: Admission<u32> = Admission::new(8, 8, now);
        let mut n = 0;
        while b.offer(source(4), false, &fingerprint(n), n, now).is_ok() {
            n += 1;
        }
        assert_eq!(
            b.offer(source(4), false, &fingerprint(n + 1), 0, now),
            Err(Refused::OverShare)
        );
        assert_eq!(
            b.offer(source(5), false, &fingerprint(n + 2), 0, now),
            Ok(())
        );
    }
}
