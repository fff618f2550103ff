//! When a worker's poll may linger for a batch (`[interface] batch_linger_us`): only while
//! packets arrive fast enough that at least `MIN_GATHER` come within the linger, for no
//! longer than a batch takes at that rate, and not after a batch that took nothing (the
//! stream paused; the rate, measured over 1 ms windows, would say so only later). The
//! backend skips the linger when a batch already waits. While traffic is idle nothing is
//! held (a ping, a handshake, a reply the kernel wrote back at once); in a stream, single
//! datagrams are taken a batch per wake-up instead of one or two, and a packet among them
//! may wait up to the linger.

use std::time::{Duration, Instant};

use crate::io::BATCH;
/// The arrival rate is measured over windows at least this long.
const RATE_WINDOW: Duration = Duration::from_millis(1);
/// A linger is worth its latency only if it is expected to gather at least this many.
const MIN_GATHER: f64 = 4.0;
/// No linger within this long of a batch that drained handed-over packets: while another
/// worker keeps handing over (a roamed session), a batch that found the mesh queue empty
/// must not sleep through the next hand-over, whose wake-up does not end a linger.
const HANDOVER_QUIET: Duration = Duration::from_millis(20);

/// The worker's linger policy and the arrival rate it is judged by.
#[derive(Debug, Clone)]
pub struct Linger {
    max: Duration,
    window_start: Option<Instant>,
    window_packets: usize,
    /// Packets per second over the last closed window.
    rate: f64,
    /// The last batch took no packet.
    empty: bool,
    /// When a batch last drained packets other workers handed over.
    handed_at: Option<Instant>,
    /// Whether that was within `HANDOVER_QUIET` of the last batch.
    handed: bool,
}

impl Linger {
    /// A policy that lingers up to `max` (zero: never).
    pub fn new(max: Duration) -> Self {
        Self {
            max,
            window_start: None,
            window_packets: 0,
            rate: 0.0,
            empty: false,
            handed_at: None,
            handed: false,
        }
    }

    /// Notes a batch of `packets` taken from this worker's ring at `now`, and `handed`
    /// packets drained from other workers.
    pub fn note(&mut self, now: Instant, packets: usize, handed: usize) {
        self.empty = packets == 0;
        if handed > 0 {
            self.handed_at = Some(now);
        }
        self.handed = self
            .handed_at
            .is_some_and(|at| now.saturating_duration_since(at) < HANDOVER_QUIET);
        self.window_packets += packets;
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= RATE_WINDOW {
            self.rate = self.window_packets as f64 / elapsed.as_secs_f64();
            self.window_start = Some(now);
            self.window_packets = 0;
        }
    }

    /// How long the next poll may linger.
    pub fn next(&self) -> Duration {
        // Handed-over packets come through the mesh, with a wake-up that does not end a
        // linger: while they come, lingering would let the mesh queue fill.
        if self.max.is_zero() || self.handed || self.empty {
            return Duration::ZERO;
        }
        if self.rate * self.max.as_secs_f64() < MIN_GATHER {
            return Duration::ZERO;
        }
        self.max
            .min(Duration::from_secs_f64(BATCH as f64 / self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_micros(250);

    /// Feeds `batches` batches of `size`, `every` apart from `start`; returns the last time.
    fn stream(
        l: &mut Linger,
        start: Instant,
        every: Duration,
        size: usize,
        batches: u32,
    ) -> Instant {
        let mut t = start;
        for _ in 0..batches {
            t += every;
            l.note(t, size, 0);
        }
        t
    }

    #[test]
    fn a_stream_of_small_batches_lingers_for_a_batch_at_most() {
        let mut l = Linger::new(MAX);
        // 3 packets every 25 us: 120,000 per second; a batch takes 267 us, more than MAX.
        stream(&mut l, Instant::now(), Duration::from_micros(25), 3, 100);
        assert_eq!(l.next(), MAX);
        // 2 packets every 2 us: 1,000,000 per second; a batch takes 32 us.
        let mut l = Linger::new(MAX);
        stream(&mut l, Instant::now(), Duration::from_micros(2), 2, 2000);
        let d = l.next();
        assert!(
            d > Duration::from_micros(30) && d < Duration::from_micros(34),
            "{d:?}"
        );
    }

    #[test]
    fn idle_traffic_and_zero_never_linger() {
        // A packet every 10 ms (a ping): nothing would gather.
        let mut l = Linger::new(MAX);
        stream(&mut l, Instant::now(), Duration::from_millis(10), 1, 20);
        assert_eq!(l.next(), Duration::ZERO);
        // Busy, small batches, lingering off.
        let mut l = Linger::new(Duration::ZERO);
        stream(&mut l, Instant::now(), Duration::from_micros(25), 3, 100);
        assert_eq!(l.next(), Duration::ZERO);
    }

    #[test]
    fn full_batches_still_ask_for_a_linger_the_backend_skips_while_a_batch_waits() {
        // 40 every 25 us: 1.6 M per second, a batch in 20 us.
        let mut l = Linger::new(MAX);
        stream(&mut l, Instant::now(), Duration::from_micros(25), 40, 100);
        let d = l.next();
        assert!(
            d > Duration::from_micros(19) && d < Duration::from_micros(21),
            "{d:?}"
        );
    }

    #[test]
    fn a_batch_with_handed_over_packets_ends_the_lingering() {
        let mut l = Linger::new(MAX);
        let t = stream(&mut l, Instant::now(), Duration::from_micros(25), 3, 100);
        assert_eq!(l.next(), MAX);
        l.note(t + Duration::from_micros(25), 3, 1);
        assert_eq!(l.next(), Duration::ZERO);
        // A batch that found the mesh queue empty right after: still no linger.
        l.note(t + Duration::from_micros(50), 3, 0);
        assert_eq!(l.next(), Duration::ZERO);
        // Hand-overs stopped a while ago: the stream may linger again.
        let later = stream(
            &mut l,
            t + HANDOVER_QUIET,
            Duration::from_micros(25),
            3,
            100,
        );
        assert!(later > t + HANDOVER_QUIET);
        assert_eq!(l.next(), MAX);
    }

    #[test]
    fn a_batch_that_took_nothing_ends_the_lingering_until_packets_come_again() {
        let mut l = Linger::new(MAX);
        let t = stream(&mut l, Instant::now(), Duration::from_micros(25), 3, 100);
        assert_eq!(l.next(), MAX);
        // A linger that gathered nothing: the stream paused, though the rate does not say so.
        l.note(t + Duration::from_micros(250), 0, 0);
        assert_eq!(l.next(), Duration::ZERO);
        l.note(t + Duration::from_micros(300), 2, 0);
        assert_eq!(l.next(), MAX);
    }

    #[test]
    fn a_pause_after_a_stream_ends_the_lingering() {
        let mut l = Linger::new(MAX);
        let t = stream(&mut l, Instant::now(), Duration::from_micros(25), 3, 100);
        assert_eq!(l.next(), MAX);
        // One packet 50 ms later: the window that closes with it is nearly empty.
        l.note(t + Duration::from_millis(50), 1, 0);
        assert_eq!(l.next(), Duration::ZERO);
    }
}
