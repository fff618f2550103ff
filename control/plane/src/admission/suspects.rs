//! Sources whose initiations fail: each forged or replayed initiation costs the responder
//! work (usually one X25519) and gains its sender nothing, so a source has spent its share of
//! responder work once it has sent a few of them. Such a source must then prove its address
//! with MAC2 (it gets cookie replies), and even a proven one gets only a trickle of attempts.
//! A real client fails rarely (a wrong key retried every 5 s) and never comes near the limit.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::fair_queue::SourceKey;

/// Failures a source may have before it is held to MAC2 and a trickle.
const ALLOWANCE: f64 = 16.0;
/// Failures forgiven per second.
const FORGIVEN_PER_SECOND: f64 = 2.0;
/// Sources remembered at most; past that, those forgiven entirely are forgotten first.
const REMEMBERED: usize = 1 << 16;

struct Record {
    allowance: f64,
    at: Instant,
}

impl Record {
    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.allowance = (self.allowance + dt * FORGIVEN_PER_SECOND).min(ALLOWANCE);
        self.at = now;
    }
}

/// Failure allowances of the sources that have failed lately.
#[derive(Default)]
pub struct Suspects {
    records: HashMap<SourceKey, Record>,
}

impl Suspects {
    /// Counts a failed initiation against `source`.
    pub fn charge(&mut self, source: SourceKey, now: Instant) {
        if self.records.len() >= REMEMBERED && !self.records.contains_key(&source) {
            self.forget_forgiven(now);
        }
        let r = self.records.entry(source).or_insert(Record {
            allowance: ALLOWANCE,
            at: now,
        });
        r.refill(now);
        r.allowance -= 1.0;
    }

    /// True if `source` has no failures left: it gets no work without MAC2, and with MAC2
    /// only as its allowance refills.
    pub fn exhausted(&mut self, source: SourceKey, now: Instant) -> bool {
        self.records.get_mut(&source).is_some_and(|r| {
            r.refill(now);
            r.allowance < 1.0
        })
    }

    /// Drops records whose allowance is whole again (or, under a flood from more sources than
    /// we remember, all of them: the fair queue still bounds what they can take).
    fn forget_forgiven(&mut self, now: Instant) {
        let whole = Duration::from_secs_f64(ALLOWANCE / FORGIVEN_PER_SECOND);
        self.records
            .retain(|_, r| now.saturating_duration_since(r.at) < whole);
        if self.records.len() >= REMEMBERED {
            self.records.clear();
        }
    }

    /// Sources remembered.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True if no source is remembered.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn a_source_is_held_after_its_allowance_and_forgiven_over_time() {
        let src = SourceKey::of(SocketAddr::from(([10, 0, 0, 1], 1)));
        let other = SourceKey::of(SocketAddr::from(([10, 0, 0, 2], 1)));
        let t0 = Instant::now();
        let mut s = Suspects::default();
        for _ in 0..ALLOWANCE as usize {
            assert!(!s.exhausted(src, t0));
            s.charge(src, t0);
        }
        assert!(s.exhausted(src, t0), "16 failures spend the allowance");
        assert!(!s.exhausted(other, t0), "others are not affected");
        // Half a second later one failure is forgiven: one more attempt, then held again.
        let t1 = t0 + Duration::from_millis(500);
        assert!(!s.exhausted(src, t1));
        s.charge(src, t1);
        assert!(s.exhausted(src, t1));
    }

    #[test]
    fn forgiven_sources_are_forgotten_when_memory_is_full() {
        let t0 = Instant::now();
        let mut s = Suspects::default();
        for n in 0..REMEMBERED as u32 {
            s.charge(SourceKey::V4(n), t0);
        }
        assert_eq!(s.len(), REMEMBERED);
        let later = t0 + Duration::from_secs(9);
        s.charge(SourceKey::V4(u32::MAX), later);
        assert_eq!(s.len(), 1, "only the newest is remembered");
    }
}
