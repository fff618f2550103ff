//! Recently seen initiation ephemerals: a replayed initiation is byte-for-byte a copy, so its
//! ephemeral key gives it away before any Diffie-Hellman is spent on it. Real clients make a
//! fresh ephemeral for every initiation, retransmissions included. Older replays than this
//! filter remembers still fail the per-peer timestamp check, at the cost of two DH.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

/// Ephemerals remembered per generation; two generations are kept.
const GENERATION: usize = 1 << 16;
/// A generation is retired after this long even if not full.
const GENERATION_AGE: Duration = Duration::from_secs(60);

/// Keyed 64-bit digests of the ephemerals seen lately.
pub struct ReplayFilter {
    keyed: RandomState,
    current: HashSet<u64>,
    previous: HashSet<u64>,
    born: Instant,
}

impl ReplayFilter {
    /// An empty filter.
    pub fn new(now: Instant) -> Self {
        Self {
            keyed: RandomState::new(),
            current: HashSet::with_capacity(GENERATION),
            previous: HashSet::new(),
            born: now,
        }
    }

    /// Records `ephemeral`; false if it was seen before (a replay).
    pub fn first_sighting(&mut self, ephemeral: &[u8; 32], now: Instant) -> bool {
        if self.current.len() >= GENERATION
            || now.saturating_duration_since(self.born) > GENERATION_AGE
        {
            self.previous =
                std::mem::replace(&mut self.current, HashSet::with_capacity(GENERATION));
            self.born = now;
        }
        // The keyed hash stops an attacker from choosing ephemerals that collide.
        let digest = self.keyed.hash_one(ephemeral);
        !self.previous.contains(&digest) && self.current.insert(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_caught_and_a_fresh_key_is_not() {
        let now = Instant::now();
        let mut f = ReplayFilter::new(now);
        assert!(f.first_sighting(&[1; 32], now));
        assert!(f.first_sighting(&[2; 32], now));
        assert!(!f.first_sighting(&[1; 32], now));
        // Still caught one generation later, forgotten after two.
        let later = now + GENERATION_AGE + Duration::from_secs(1);
        assert!(!f.first_sighting(&[1; 32], later));
        let much_later = later + GENERATION_AGE + Duration::from_secs(1);
        assert!(f.first_sighting(&[2; 32], much_later));
    }
}
