//! Which receiver indices are live, for a worker to check before it hands a transport packet
//! to the worker its index names: without the check, forged packets naming another worker's
//! indices are copied into that worker's bounded queue and crowd out real handovers.
//!
//! A counting filter with two hashes over 2^22 one-byte counters (4 MiB, whatever the number
//! of workers). The control plane, which hands out and frees every index, counts them in and
//! out (before the handshake response that makes an index usable is sent); workers read it
//! without locks. It never says a live index is absent; with 100,000 live indices it lets
//! through about 0.2 % of forged ones (the owner then drops them by its own exact table).

use std::sync::atomic::{AtomicU8, Ordering};

/// log2 of the number of counters.
const SLOTS_LOG2: u32 = 22;
/// A counter this high stays there: it no longer knows how many indices share it.
const STUCK: u8 = u8::MAX;

/// The live receiver indices, approximately (never a false "absent").
pub struct LiveIndices {
    counters: Box<[AtomicU8]>,
}

impl Default for LiveIndices {
    fn default() -> Self {
        Self {
            counters: (0..1usize << SLOTS_LOG2)
                .map(|_| AtomicU8::new(0))
                .collect(),
        }
    }
}

impl LiveIndices {
    /// The two counters of `index` (multiplicative hashing with two odd constants).
    fn slots(index: u32) -> [usize; 2] {
        let x = u64::from(index);
        let shift = 64 - SLOTS_LOG2;
        [
            (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize,
            (x.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) >> shift) as usize,
        ]
    }

    /// Counts `index` in (the control plane, when it hands the index out).
    pub fn insert(&self, index: u32) {
        for slot in Self::slots(index) {
            let _ = self.counters[slot].fetch_update(Ordering::Release, Ordering::Relaxed, |c| {
                (c < STUCK).then(|| c + 1)
            });
        }
    }

    /// Counts `index` out (the control plane, when it frees the index).
    pub fn remove(&self, index: u32) {
        for slot in Self::slots(index) {
            let _ = self.counters[slot].fetch_update(Ordering::Release, Ordering::Relaxed, |c| {
                (c > 0 && c < STUCK).then(|| c - 1)
            });
        }
    }

    /// False only if `index` is certainly not live.
    #[inline]
    pub fn may_contain(&self, index: u32) -> bool {
        Self::slots(index)
            .iter()
            .all(|&slot| self.counters[slot].load(Ordering::Acquire) > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_indices_are_always_found_and_most_others_are_not() {
        let live = LiveIndices::default();
        let mut x = 0x1234_5678u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let inserted: Vec<u32> = (0..100_000).map(|_| next()).collect();
        for &i in &inserted {
            live.insert(i);
        }
        assert!(inserted.iter().all(|&i| live.may_contain(i)));
        let forged: Vec<u32> = (0..100_000).map(|_| next()).collect();
        let passed = forged.iter().filter(|&&i| live.may_contain(i)).count();
        assert!(passed < 500, "{passed} of 100,000 forged indices pass");
        // Freeing half leaves the other half found (shared counters only count down).
        for &i in &inserted[..50_000] {
            live.remove(i);
        }
        assert!(inserted[50_000..].iter().all(|&i| live.may_contain(i)));
        for &i in &inserted[50_000..] {
            live.remove(i);
        }
        assert!(inserted.iter().all(|&i| !live.may_contain(i)), "all freed");
    }

    #[test]
    fn a_saturated_counter_never_forgets() {
        let live = LiveIndices::default();
        // Indices sharing a first slot: the same index many times over is the worst case.
        for _ in 0..300 {
            live.insert(7);
        }
        for _ in 0..300 {
            live.remove(7);
        }
        assert!(live.may_contain(7), "stuck counters stay set");
    }
}
