//! What one load thread measured, and how the threads' tallies add up to one run: counts
//! add, distributions merge, and the one-second windows (every thread's are aligned on the
//! run's common start) add window by window.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::results::{ClientFigures, Latencies, Second, Summary};

/// An empty histogram of microseconds, 1 µs to 10 minutes at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("3 digits is valid"))
}

/// The distributions a run records.
pub struct Histograms {
    /// Handshake times, every attempt.
    pub handshake: Histogram<u64>,
    /// Handshake times of attempts that connected on their first initiation.
    pub first_attempt: Histogram<u64>,
    /// From the first initiation to the first echo back.
    pub first_byte: Histogram<u64>,
    /// Echo round trips.
    pub rtt: Histogram<u64>,
    /// Handshake times of users coming back (reconnect).
    pub reconnect: Histogram<u64>,
    /// Each connected user's inner receive rate, kbit/s.
    pub kbps: Histogram<u64>,
}

impl Default for Histograms {
    fn default() -> Self {
        Self {
            handshake: histogram(),
            first_attempt: histogram(),
            first_byte: histogram(),
            rtt: histogram(),
            reconnect: histogram(),
            kbps: histogram(),
        }
    }
}

/// One second of one thread's run.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// Where the window ends, from the run's start.
    pub t: Duration,
    /// Attempts started by then.
    pub arrived: u64,
    /// Users connected at its end.
    pub connected: u64,
    /// Handshake times (µs) completed in it.
    pub handshakes: Vec<u64>,
}

/// What the load threads measured together.
pub struct Measured {
    /// Client-side counts.
    pub clients: ClientFigures,
    /// Distributions.
    pub latency: Latencies,
    /// Second by second (server columns are filled in by the caller).
    pub timeline: Vec<Second>,
    /// Seconds from the first arrival to the end.
    pub duration_s: f64,
    /// Failover: for each user connected before the failure, how long after it traffic
    /// came back (None: never).
    pub resumed: Vec<Option<Duration>>,
}

/// One thread's figures (or several threads' added up).
#[derive(Default)]
pub struct Tally {
    /// Client-side counts.
    pub figures: ClientFigures,
    /// Distributions.
    pub histograms: Histograms,
    /// One-second windows.
    pub windows: Vec<Window>,
    /// From the run's start to this thread's end.
    pub elapsed: Duration,
    /// Failover: see [`Measured::resumed`].
    pub resumed: Vec<Option<Duration>>,
}

impl Tally {
    /// Adds `other` (another thread's tally of the same run) to this one.
    pub fn merge(mut self, other: Tally) -> Tally {
        add_figures(&mut self.figures, other.figures);
        let (a, b) = (&mut self.histograms, other.histograms);
        for (to, from) in [
            (&mut a.handshake, &b.handshake),
            (&mut a.first_attempt, &b.first_attempt),
            (&mut a.first_byte, &b.first_byte),
            (&mut a.rtt, &b.rtt),
            (&mut a.reconnect, &b.reconnect),
            (&mut a.kbps, &b.kbps),
        ] {
            // Same bounds on both sides, so adding cannot fail.
            to.add(from).ok();
        }
        self.windows = add_windows(std::mem::take(&mut self.windows), other.windows);
        self.elapsed = self.elapsed.max(other.elapsed);
        self.resumed.extend(other.resumed);
        // The peak of the sum is at least each thread's peak and what any window saw.
        let windows_peak = self.windows.iter().map(|w| w.connected).max();
        self.figures.peak_connected = self.figures.peak_connected.max(windows_peak.unwrap_or(0));
        self
    }

    /// The run's figures, once every thread's tally is in.
    pub fn measured(self) -> Measured {
        Measured {
            latency: self.latencies(),
            timeline: self.timeline(),
            duration_s: self.elapsed.as_secs_f64(),
            clients: self.figures,
            resumed: self.resumed,
        }
    }

    /// The run's latencies.
    pub fn latencies(&self) -> Latencies {
        let h = &self.histograms;
        Latencies {
            handshake_ms: Summary::of_micros(&h.handshake),
            first_attempt_ms: Summary::of_micros(&h.first_attempt),
            first_byte_ms: Summary::of_micros(&h.first_byte),
            rtt_ms: Summary::of_micros(&h.rtt),
            client_kbps: Summary::scaled(&h.kbps, 1.0),
            reconnect_ms: (!h.reconnect.is_empty()).then(|| Summary::of_micros(&h.reconnect)),
        }
    }

    /// The timeline, one entry per window (server columns are filled in by the caller).
    pub fn timeline(&self) -> Vec<Second> {
        let mut h = histogram();
        self.windows
            .iter()
            .map(|w| {
                h.reset();
                for &m in &w.handshakes {
                    h.record(m).ok();
                }
                Second {
                    t: w.t.as_secs_f64(),
                    arrived: w.arrived,
                    connected: w.connected,
                    handshakes: w.handshakes.len() as u64,
                    handshake_ms: Summary::of_micros(&h),
                    ..Second::default()
                }
            })
            .collect()
    }
}

/// Adds two threads' client figures (the peak is settled by the caller).
fn add_figures(a: &mut ClientFigures, b: ClientFigures) {
    a.users += b.users;
    a.endpoints += b.endpoints;
    a.attempts += b.attempts;
    a.connected += b.connected;
    a.connected_first_attempt += b.connected_first_attempt;
    a.first_byte += b.first_byte;
    a.initiations_sent += b.initiations_sent;
    a.retries += b.retries;
    a.cookie_replies += b.cookie_replies;
    add_counts(&mut a.failures, b.failures);
    add_counts(&mut a.dropped, b.dropped);
    a.bytes_sent += b.bytes_sent;
    a.bytes_received += b.bytes_received;
    a.peak_connected = a.peak_connected.max(b.peak_connected);
    a.loadgen_cpu_seconds += b.loadgen_cpu_seconds;
}

fn add_counts(a: &mut BTreeMap<String, u64>, b: BTreeMap<String, u64>) {
    for (k, v) in b {
        *a.entry(k).or_default() += v;
    }
}

/// Window-by-window sums. A thread that ended sooner still holds its last count of arrivals
/// and connected users in the windows after its end.
fn add_windows(a: Vec<Window>, b: Vec<Window>) -> Vec<Window> {
    let n = a.len().max(b.len());
    let last = |v: &[Window]| v.last().map_or((0, 0), |w| (w.arrived, w.connected));
    let (a_last, b_last) = (last(&a), last(&b));
    let mut a = a.into_iter();
    let mut b = b.into_iter();
    (0..n)
        .map(|_| match (a.next(), b.next()) {
            (Some(mut x), Some(y)) => {
                x.t = x.t.max(y.t);
                x.arrived += y.arrived;
                x.connected += y.connected;
                x.handshakes.extend(y.handshakes);
                x
            }
            (Some(mut x), None) => {
                x.arrived += b_last.0;
                x.connected += b_last.1;
                x
            }
            (None, Some(mut y)) => {
                y.arrived += a_last.0;
                y.connected += a_last.1;
                y
            }
            (None, None) => Window::default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(t: u64, arrived: u64, connected: u64, handshakes: &[u64]) -> Window {
        Window {
            t: Duration::from_secs(t),
            arrived,
            connected,
            handshakes: handshakes.to_vec(),
        }
    }

    fn tally(windows: Vec<Window>, connected: u64, peak: u64) -> Tally {
        let mut t = Tally {
            windows,
            ..Tally::default()
        };
        t.figures.connected = connected;
        t.figures.peak_connected = peak;
        t.figures.failures.insert("timeout".into(), 1);
        for w in &t.windows {
            for &m in &w.handshakes {
                t.histograms.handshake.record(m).expect("in bounds");
            }
        }
        t
    }

    #[test]
    fn threads_add_up_window_by_window() {
        let a = tally(
            vec![window(1, 10, 8, &[100, 200]), window(2, 20, 18, &[300])],
            18,
            18,
        );
        let b = tally(vec![window(1, 5, 5, &[1000])], 5, 5);
        let m = a.merge(b);
        assert_eq!(m.figures.connected, 23);
        assert_eq!(m.figures.failures["timeout"], 2);
        assert_eq!(m.histograms.handshake.len(), 4);
        assert_eq!(m.windows.len(), 2);
        assert_eq!((m.windows[0].arrived, m.windows[0].connected), (15, 13));
        // The second thread ended after one window; its users stay counted.
        assert_eq!((m.windows[1].arrived, m.windows[1].connected), (25, 23));
        assert_eq!(m.figures.peak_connected, 23);
        let timeline = m.timeline();
        assert_eq!(timeline[0].handshakes, 3);
        assert!((timeline[0].handshake_ms.max - 1.0).abs() < 0.01);
        assert_eq!(m.latencies().handshake_ms.count, 4);
    }
}
