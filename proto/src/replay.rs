//! The sliding anti-replay window for transport counters.
//!
//! A ring of 64-bit words in the style of RFC 6479: advancing the window clears whole words
//! instead of shifting bits, so each packet costs O(1) whatever its distance from the top.

use crate::constants::REJECT_AFTER_MESSAGES;

/// Words of the ring once a session carries traffic: a 4,032-counter window (the kernel
/// module's was 2,048 for years), in 512 bytes. Each worker owns its sessions, so reordering
/// stays within a batch or a hand-over.
const WORDS: usize = 64;
const BITS: u64 = (WORDS as u64) * 64;
/// How far behind the highest counter seen a packet may arrive and still be accepted.
/// One word of the ring is always being recycled, so it does not count.
pub const WINDOW_SIZE: u64 = BITS - 64;
/// Words of the ring a session starts with: most sessions of a large concentrator are idle
/// (a keepalive now and then), and 512 bytes each would be half of what a session costs.
const SMALL_WORDS: usize = 4;
/// The window while the ring is small.
pub const SMALL_WINDOW_SIZE: u64 = (SMALL_WORDS as u64) * 64 - 64;
/// The first accepted counter at or past this grows the ring to its full size: the session
/// carries traffic, and reordering may reach further.
pub const GROW_AT: u64 = 1024;

/// Why a counter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The counter was already received.
    #[error("counter {counter} was already received")]
    Duplicate {
        /// The repeated counter.
        counter: u64,
    },
    /// The counter is older than the window.
    #[error("counter {counter} is behind the window (highest seen {highest})")]
    TooOld {
        /// The counter received.
        counter: u64,
        /// The highest counter accepted so far.
        highest: u64,
    },
    /// The counter is past the point where the key must be retired.
    #[error("counter {0} is past REJECT_AFTER_MESSAGES")]
    Exhausted(u64),
}

/// The ring of received-counter bits: small while the session is idle, full once it is not.
#[derive(Clone)]
enum Ring {
    Small([u64; SMALL_WORDS]),
    Full(Box<[u64; WORDS]>),
}

/// Which counters have been received, within the window of the highest.
#[derive(Clone)]
pub struct ReplayWindow {
    /// One more than the highest counter accepted (0 = nothing accepted yet).
    next: u64,
    ring: Ring,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self {
            next: 0,
            ring: Ring::Small([0; SMALL_WORDS]),
        }
    }
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("next", &self.next)
            .field("window", &self.window())
            .finish_non_exhaustive()
    }
}

impl Ring {
    fn words(&self) -> &[u64] {
        match self {
            Ring::Small(w) => w,
            Ring::Full(w) => &w[..],
        }
    }

    fn words_mut(&mut self) -> &mut [u64] {
        match self {
            Ring::Small(w) => w,
            Ring::Full(w) => &mut w[..],
        }
    }
}

/// The word of a ring of `len` words and the bit in it that stand for `counter`.
fn slot(counter: u64, len: usize) -> (usize, u64) {
    (((counter / 64) % len as u64) as usize, 1 << (counter % 64))
}

impl ReplayWindow {
    /// How far behind the highest counter a packet may be accepted now.
    pub fn window(&self) -> u64 {
        self.ring.words().len() as u64 * 64 - 64
    }

    /// Checks a counter without recording it: call before spending time on decryption.
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(ReplayError::Exhausted(counter));
        }
        if counter >= self.next {
            return Ok(());
        }
        if self.next - counter > self.window() {
            return Err(ReplayError::TooOld {
                counter,
                highest: self.next - 1,
            });
        }
        let words = self.ring.words();
        let (word, bit) = slot(counter, words.len());
        if words[word] & bit != 0 {
            return Err(ReplayError::Duplicate { counter });
        }
        Ok(())
    }

    /// Records a counter whose packet authenticated; fails if it is a replay after all.
    pub fn accept(&mut self, counter: u64) -> Result<(), ReplayError> {
        self.check(counter)?;
        if counter >= GROW_AT {
            self.grow();
        }
        let next = self.next;
        let words = self.ring.words_mut();
        let len = words.len() as u64;
        if counter >= next {
            // Clear the words the window slides over, at most the whole ring.
            let top_word = next.saturating_sub(1) / 64;
            let new_word = counter / 64;
            let clear = (new_word - top_word).min(len);
            for i in 1..=clear {
                words[((top_word + i) % len) as usize] = 0;
            }
            if next == 0 {
                words[slot(counter, words.len()).0] = 0;
            }
            self.next = counter + 1;
        }
        let (word, bit) = slot(counter, words.len());
        words[word] |= bit;
        Ok(())
    }

    /// Moves a small ring's bits into a full one. Counters older than the small ring kept
    /// are marked received: refusing one that was not is safe, accepting a replay is not.
    fn grow(&mut self) {
        let Ring::Small(small) = &self.ring else {
            return;
        };
        let mut full = Box::new([if self.next == 0 { 0 } else { u64::MAX }; WORDS]);
        if let Some(highest) = self.next.checked_sub(1) {
            let top = highest / 64;
            for n in top.saturating_sub(SMALL_WORDS as u64 - 1)..=top {
                full[slot(n * 64, WORDS).0] = small[slot(n * 64, SMALL_WORDS).0];
            }
        }
        self.ring = Ring::Full(full);
    }

    /// The highest counter accepted, if any.
    pub fn highest(&self) -> Option<u64> {
        self.next.checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// A window already grown to its full size (the session carried traffic).
    fn busy() -> ReplayWindow {
        let mut w = ReplayWindow::default();
        w.accept(GROW_AT).expect("fresh");
        assert_eq!(w.window(), WINDOW_SIZE);
        w
    }

    #[test]
    fn in_order_out_of_order_duplicate_and_too_old() {
        let mut w = ReplayWindow::default();
        for c in 0..100 {
            w.accept(c).expect("fresh");
        }
        assert_eq!(w.window(), SMALL_WINDOW_SIZE, "an idle session's window");
        assert_eq!(w.accept(50), Err(ReplayError::Duplicate { counter: 50 }));
        let mut w = busy();
        let base = GROW_AT + 1;
        for c in base..base + 100 {
            w.accept(c).expect("fresh");
        }
        assert_eq!(
            w.accept(base + 50),
            Err(ReplayError::Duplicate { counter: base + 50 })
        );
        let (m200, m150) = (base + 200, base + 150);
        w.accept(m200).expect("jump ahead");
        w.accept(m150).expect("late but inside the window");
        assert_eq!(
            w.accept(m150),
            Err(ReplayError::Duplicate { counter: m150 })
        );
        w.accept(m200 + WINDOW_SIZE).expect("far ahead");
        assert_eq!(
            w.accept(m200),
            Err(ReplayError::TooOld {
                counter: m200,
                highest: m200 + WINDOW_SIZE
            })
        );
        w.accept(m200 + 1).expect("exactly at the window's edge");
        assert_eq!(
            w.check(REJECT_AFTER_MESSAGES),
            Err(ReplayError::Exhausted(REJECT_AFTER_MESSAGES))
        );
    }

    #[test]
    fn growing_keeps_what_the_small_ring_knew_and_refuses_what_it_did_not() {
        let mut w = ReplayWindow::default();
        for c in (0..GROW_AT).step_by(2) {
            w.accept(c).expect("fresh");
        }
        w.accept(GROW_AT).expect("grows");
        assert_eq!(w.window(), WINDOW_SIZE);
        // Within the small ring's reach: odd counters were never seen, even ones were.
        for c in GROW_AT - SMALL_WINDOW_SIZE..GROW_AT {
            assert_eq!(w.check(c).is_ok(), c % 2 == 1, "counter {c}");
        }
        // Beyond it nothing is known: refused, never accepted twice.
        for c in 0..GROW_AT - SMALL_WINDOW_SIZE - 64 {
            assert!(w.check(c).is_err(), "counter {c}");
        }
    }

    #[test]
    fn window_is_at_least_2048() {
        let mut w = busy();
        w.accept(10_000).expect("first");
        w.accept(10_000 - 2048).expect("2048 behind is accepted");
        const { assert!(WINDOW_SIZE >= 2048) };
    }

    #[test]
    fn a_huge_jump_clears_every_stale_bit() {
        let mut w = busy();
        for c in GROW_AT + 1..GROW_AT + BITS {
            w.accept(c).expect("fresh");
        }
        let far = 10 * BITS + 5;
        w.accept(far).expect("jump");
        for c in far + 1 - WINDOW_SIZE..far {
            w.check(c).expect("never seen, so must be accepted");
        }
    }

    proptest! {
        /// Against a model: a counter is accepted iff it is new and within the window (the
        /// small one until a counter at or past GROW_AT is accepted), and not older than
        /// what the small ring held when it grew.
        #[test]
        fn matches_a_set_model(counters in proptest::collection::vec(0u64..30_000, 1..600)) {
            let mut w = ReplayWindow::default();
            let mut seen = BTreeSet::new();
            let mut highest: Option<u64> = None;
            let mut floor: Option<u64> = None;
            for c in counters {
                let window = if floor.is_some() { WINDOW_SIZE } else { SMALL_WINDOW_SIZE };
                let too_old = highest.is_some_and(|h| c < h && h + 1 - c > window);
                let below_floor = floor.is_some_and(|f| c < f);
                let expect_ok = !seen.contains(&c) && !too_old && !below_floor;
                prop_assert_eq!(w.accept(c).is_ok(), expect_ok, "counter {}", c);
                if expect_ok {
                    if floor.is_none() && c >= GROW_AT {
                        let top = highest.map_or(0, |h| h / 64);
                        floor = Some(if highest.is_some() {
                            top.saturating_sub(SMALL_WORDS as u64 - 1) * 64
                        } else {
                            0
                        });
                    }
                    seen.insert(c);
                    highest = Some(highest.map_or(c, |h| h.max(c)));
                }
            }
        }
    }
}
