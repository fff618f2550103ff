//! ESP's anti-replay window with 64-bit extended sequence numbers (RFC 4303 §3.4.3 and
//! Appendix A): only the low 32 bits travel; the high 32 are inferred from where the window
//! stands, the packet is authenticated with the inferred number, and only then is the
//! window moved. The bitmap is a ring of 64-bit words (RFC 6479's design): moving the window
//! clears whole words, so a packet costs the same however far ahead it is.

/// Words in the ring.
const WORDS: usize = 32;
/// Bits in the ring; one word is always being recycled, so the window is a word less.
const BITS: u64 = WORDS as u64 * 64;
/// How far behind the highest number received a packet may be and still be taken.
pub const WINDOW: u64 = BITS - 64;

/// Why a sequence number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayRefusal {
    /// Received already.
    #[error("sequence number {0} was received already")]
    Duplicate(u64),
    /// Behind the window.
    #[error("sequence number {0} is behind the window")]
    TooOld(u64),
}

/// The numbers received within `WINDOW` of the highest.
#[derive(Clone)]
pub struct ReplayWindow {
    /// The highest number received (0: none yet; ESP numbers start at 1).
    top: u64,
    words: [u64; WORDS],
    /// Whether the SA uses 64-bit numbers (else the high half is always 0).
    esn: bool,
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("top", &self.top)
            .field("esn", &self.esn)
            .finish_non_exhaustive()
    }
}

impl ReplayWindow {
    /// An empty window; `esn` when the SA negotiated extended sequence numbers.
    pub fn new(esn: bool) -> Self {
        Self {
            top: 0,
            words: [0; WORDS],
            esn,
        }
    }

    /// The full sequence number a packet carrying `low` most likely has (RFC 4303 A2.2): in
    /// the window's current 2^32 block, or the next one if that puts it ahead of the window,
    /// or the previous one when the window straddles a block boundary.
    pub fn infer(&self, low: u32) -> u64 {
        if !self.esn {
            return u64::from(low);
        }
        let (th, tl) = ((self.top >> 32) as u32, self.top as u32);
        let bottom = tl.wrapping_sub(WINDOW as u32 - 1);
        let high = if u64::from(tl) >= WINDOW - 1 {
            // The window lies within one block.
            if low >= bottom {
                th
            } else {
                th.wrapping_add(1)
            }
        } else if low >= bottom {
            // The window straddles two blocks and `low` is in the earlier one.
            th.wrapping_sub(1)
        } else {
            th
        };
        (u64::from(high) << 32) | u64::from(low)
    }

    /// Whether `seq` may be taken (not received, not behind the window); changes nothing.
    pub fn check(&self, seq: u64) -> Result<(), ReplayRefusal> {
        if seq > self.top {
            return Ok(());
        }
        if seq == 0 || self.top - seq >= WINDOW {
            return Err(ReplayRefusal::TooOld(seq));
        }
        let (word, bit) = Self::slot(seq);
        if self.words[word] & bit != 0 {
            return Err(ReplayRefusal::Duplicate(seq));
        }
        Ok(())
    }

    /// Records `seq`, once its packet authenticated; refuses it as `check` would.
    pub fn accept(&mut self, seq: u64) -> Result<(), ReplayRefusal> {
        self.check(seq)?;
        if seq > self.top {
            let (old, new) = (self.top / 64, seq / 64);
            // Words the window moves past are cleared before they are reused.
            let clear = (new - old).min(WORDS as u64);
            for i in 1..=clear {
                self.words[((old + i) % WORDS as u64) as usize] = 0;
            }
            self.top = seq;
        }
        let (word, bit) = Self::slot(seq);
        self.words[word] |= bit;
        Ok(())
    }

    /// The highest number received.
    pub fn top(&self) -> u64 {
        self.top
    }

    fn slot(seq: u64) -> (usize, u64) {
        (((seq / 64) % WORDS as u64) as usize, 1 << (seq % 64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_out_of_order_duplicates_and_old_numbers() {
        let mut w = ReplayWindow::new(false);
        assert_eq!(
            w.check(0),
            Err(ReplayRefusal::TooOld(0)),
            "ESP counts from 1"
        );
        for seq in [1, 2, 5, 4, 3] {
            assert_eq!(w.accept(seq), Ok(()), "{seq}");
        }
        assert_eq!(w.accept(4), Err(ReplayRefusal::Duplicate(4)));
        w.accept(10_000).expect("far ahead");
        assert_eq!(
            w.accept(10_000 - WINDOW),
            Err(ReplayRefusal::TooOld(10_000 - WINDOW))
        );
        w.accept(10_000 - WINDOW + 1)
            .expect("the window's last slot");
        assert_eq!(
            w.accept(10_000 - WINDOW + 1),
            Err(ReplayRefusal::Duplicate(10_000 - WINDOW + 1))
        );
        // A jump past the whole ring forgets everything before it.
        w.accept(10_000 + 5 * BITS).expect("a long jump");
        assert!(w.check(10_000 + 5 * BITS - 1).is_ok());
    }

    #[test]
    fn the_high_half_is_inferred_across_a_block_boundary() {
        let mut w = ReplayWindow::new(true);
        let edge = (1u64 << 32) - 3;
        w.accept(edge).expect("near the end of block 0");
        // Just past the boundary: the next block.
        assert_eq!(w.infer(2), (1 << 32) | 2);
        w.accept((1 << 32) | 2).expect("into block 1");
        // The window now straddles the boundary: a late packet of block 0 is inferred there.
        assert_eq!(w.infer(u32::MAX), (1u64 << 32) - 1);
        w.accept((1u64 << 32) - 1)
            .expect("late but within the window");
        assert_eq!(
            w.accept(w.infer(u32::MAX - 1)),
            Ok(()),
            "the other late one"
        );
        assert_eq!(
            w.accept(w.infer(2)),
            Err(ReplayRefusal::Duplicate((1 << 32) | 2))
        );
        // Without ESN the high half is always zero.
        assert_eq!(ReplayWindow::new(false).infer(7), 7);
    }

    #[test]
    fn matches_a_plain_set_on_random_arrivals() {
        // A reference model: every number taken once, unless behind the window.
        let mut w = ReplayWindow::new(true);
        let mut seen = std::collections::HashSet::new();
        let mut top = 0u64;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let seq = (i + 1).saturating_sub(x % 3000) + (x % 7) * (i % 5);
            let seq = seq.max(1);
            let expect_ok = !seen.contains(&seq) && (seq > top || top - seq < WINDOW);
            assert_eq!(w.accept(seq).is_ok(), expect_ok, "seq {seq} top {top}");
            if expect_ok {
                seen.insert(seq);
                top = top.max(seq);
            }
        }
    }
}
