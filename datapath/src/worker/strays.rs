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

/// What is left of this window's budget of stray reports.
#[derive(Default)]
pub(super) struct StrayBudget {
    window: Option<Instant>,
    left: u32,
}

impl StrayBudget {
    /// Takes one report from the budget at `now`; false when this window's is spent.
    pub(super) fn take(&mut self, now: Instant) -> bool {
        if self.window.is_none_or(|w| now >= w + STRAY_WINDOW) {
            self.window = Some(now);
            self.left = STRAYS_PER_WINDOW;
        }
        let some = self.left > 0;
        self.left = self.left.saturating_sub(1);
        some
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_its_budget_and_the_next_window_a_new_one() {
        let t0 = Instant::now();
        let mut b = StrayBudget::default();
        let taken = (0..STRAYS_PER_WINDOW + 10).filter(|_| b.take(t0)).count();
        assert_eq!(taken, STRAYS_PER_WINDOW as usize);
        assert!(!b.take(t0 + STRAY_WINDOW / 2), "still the same window");
        assert!(b.take(t0 + STRAY_WINDOW), "a new window");
    }
}
