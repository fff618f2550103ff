//! TAI64N timestamps: what a responder uses to reject replayed initiations.
//!
//! The core never reads a clock. A `WallClock` is anchored once (a monotonic `Instant` paired
//! with the Unix time at that instant) and turns later `Instant`s into timestamps, so a test that
//! advances its fake clock also advances the timestamps, and timestamps never go backwards.

use std::time::{Duration, Instant};

use crate::constants::INITIATIONS_PER_SECOND;

/// A 12-byte TAI64N label: big-endian seconds (offset by 2^62 + 10) then big-endian nanoseconds.
/// Byte order makes lexicographic comparison the same as time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tai64N(pub [u8; 12]);

/// TAI64 labels start at 2^62; TAI runs 10 s ahead of the Unix epoch's UTC here.
const TAI64_BASE: u64 = (1 << 62) + 10;

/// Nanoseconds are rounded down to a power of two below 1 s / INITIATIONS_PER_SECOND, so the
/// timestamp does not leak a precise clock (the kernel module whitens the same way).
const WHITENING_MASK: u32 = {
    let step = 1_000_000_000 / INITIATIONS_PER_SECOND;
    let pow2 = 1u32 << (31 - step.leading_zeros());
    !(pow2 - 1)
};

impl Tai64N {
    /// The timestamp for a time since the Unix epoch, whitened.
    pub fn from_unix(since_epoch: Duration) -> Self {
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&(TAI64_BASE + since_epoch.as_secs()).to_be_bytes());
        let nanos = since_epoch.subsec_nanos() & WHITENING_MASK;
        out[8..].copy_from_slice(&nanos.to_be_bytes());
        Self(out)
    }

    /// Seconds and nanoseconds since the Unix epoch this label stands for.
    pub fn to_unix(&self) -> Duration {
        let mut secs = [0u8; 8];
        secs.copy_from_slice(&self.0[..8]);
        let mut nanos = [0u8; 4];
        nanos.copy_from_slice(&self.0[8..]);
        Duration::new(
            u64::from_be_bytes(secs).saturating_sub(TAI64_BASE),
            u32::from_be_bytes(nanos).min(999_999_999),
        )
    }
}

/// Maps monotonic `Instant`s to wall-clock time from a single anchor.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    anchor: Instant,
    anchor_unix: Duration,
}

impl WallClock {
    /// Anchors `anchor` (an `Instant`) at `unix` (time since the Unix epoch at that instant).
    pub fn new(anchor: Instant, unix: Duration) -> Self {
        Self {
            anchor,
            anchor_unix: unix,
        }
    }

    /// Time since the Unix epoch at `now`.
    pub fn unix(&self, now: Instant) -> Duration {
        match now.checked_duration_since(self.anchor) {
            Some(ahead) => self.anchor_unix + ahead,
            None => self
                .anchor_unix
                .saturating_sub(self.anchor.duration_since(now)),
        }
    }

    /// The TAI64N timestamp at `now`.
    pub fn tai64n(&self, now: Instant) -> Tai64N {
        Tai64N::from_unix(self.unix(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_like_time_and_round_trips() {
        let a = Tai64N::from_unix(Duration::new(1_700_000_000, 0));
        let b = Tai64N::from_unix(Duration::new(1_700_000_000, 500_000_000));
        let c = Tai64N::from_unix(Duration::new(1_700_000_001, 0));
        assert!(a < b && b < c);
        assert_eq!(c.to_unix(), Duration::new(1_700_000_001, 0));
        assert_eq!(
            &a.0[..8],
            &(0x4000_0000_0000_000a_u64 + 1_700_000_000).to_be_bytes()
        );
    }

    #[test]
    fn whitens_nanoseconds_to_16ms_steps() {
        assert_eq!(WHITENING_MASK, !((1 << 24) - 1));
        let a = Tai64N::from_unix(Duration::new(5, 1));
        let b = Tai64N::from_unix(Duration::new(5, 16_000_000));
        assert_eq!(a, b, "two stamps within one 2^24 ns step are equal");
    }

    #[test]
    fn wall_clock_follows_injected_instants() {
        let t0 = Instant::now();
        let clock = WallClock::new(t0, Duration::from_secs(1000));
        assert_eq!(
            clock.unix(t0 + Duration::from_secs(120)),
            Duration::from_secs(1120)
        );
        assert!(clock.tai64n(t0) < clock.tai64n(t0 + Duration::from_secs(1)));
    }
}
