//! The budget of reports a worker makes of transport messages for indices no session here
//! has (see `receive.rs`): enough for a node taking over another's users to hear of each,
//! bounded so a flood of forged indices cannot become a flood of events.

use std::time::{Duration, Instant};

/// How many transport messages for unknown indices a worker reports per window: a node
/// taking over another's users needs to hear of them, a flood of forged indices must not
/// become a flood of events.
pub(super) const STRAYS_PER_WINDOW: u32 = 64;
/// The window of that budget.
const STRAY_WINDOW: Duration = Duration::from_millis(100);

/// Indices reported in the current window, not reported again in it (a user sends many
/// messages before a handshake reaches it): a busy user must not spend everyone's budget.
/// Cleared with each window, so an index still arriving is reported again (its lookup may
/// have missed a session recorded a moment later).
const RECENT: usize = 16;

/// What is left of this window's budget of stray reports, and the indices reported lately.
#[derive(Default)]
pub(super) struct StrayBudget {
    window: Option<Instant>,
    left: u32,
    recent: [Option<u32>; RECENT],
    next: usize,
}

impl StrayBudget {
    /// Takes a report of `index` from the budget at `now`; false when it was reported lately
    /// or this window's budget is spent.
    pub(super) fn take(&mut self, now: Instant, index: u32) -> bool {
        if self.window.is_none_or(|w| now >= w + STRAY_WINDOW) {
            self.window = Some(now);
            self.left = STRAYS_PER_WINDOW;
            self.recent = [None; RECENT];
            self.next = 0;
        }
        if self.recent.contains(&Some(index)) {
            return false;
        }
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        self.recent[self.next] = Some(index);
        self.next = (self.next + 1) % RECENT;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_its_budget_and_the_next_window_a_new_one() {
        let t0 = Instant::now();
        let mut b = StrayBudget::default();
        assert!(b.take(t0, 1));
        assert!(!b.take(t0, 1), "reported lately");
        let taken = (2..STRAYS_PER_WINDOW + 10)
            .filter(|&i| b.take(t0, i))
            .count();
        assert_eq!(
            taken,
            STRAYS_PER_WINDOW as usize - 1,
            "the rest of the budget"
        );
        let fresh = STRAYS_PER_WINDOW + 100;
        assert!(
            !b.take(t0 + STRAY_WINDOW / 2, fresh),
            "still the same window"
        );
        assert!(b.take(t0 + STRAY_WINDOW, fresh), "a new window");
        assert!(
            b.take(t0 + STRAY_WINDOW, 1),
            "a new window forgets the recent ones"
        );
        assert!(!b.take(t0 + STRAY_WINDOW, 1));
        assert!(b.take(t0 + STRAY_WINDOW * 2, 1), "and again");
    }
}
