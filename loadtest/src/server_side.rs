//! What a run learns about its server from outside: the timeline's CPU and memory columns
//! from the samples, memory per session and per registered user, handshakes per CPU-second,
//! and resident memory once it has settled.

use std::time::Duration;

use crate::results::ServerFigures;
use crate::sampler::Sample;
use crate::scenario::Scenario;
use crate::tally::Measured;

/// Everyone stays connected and silent, so the server can show what an idle session
/// costs: its memory then (scenarios with idle seconds).
pub(crate) fn idle_rss(s: &Scenario, pid: u32) -> Option<u64> {
    if s.idle_seconds <= 0.0 {
        return None;
    }
    eprintln!(
        "idle for {:.0} s before reading memory per idle session",
        s.idle_seconds
    );
    std::thread::sleep(Duration::from_secs_f64(s.idle_seconds));
    Some(testbed::procstat::rss_bytes(pid))
}

/// Fills the timeline's server columns from the samples and derives the server figures.
pub(crate) fn server_figures(
    m: &mut Measured,
    samples: &[Sample],
    cpus: usize,
    (rss_empty, rss_registered, rss_idle): (u64, u64, Option<u64>),
    cpu_seconds_by_thread: std::collections::BTreeMap<String, f64>,
    counters: Option<crate::results::ServerCounters>,
) -> ServerFigures {
    for (k, sec) in m.timeline.iter_mut().enumerate() {
        if let (Some(a), Some(b)) = (samples.get(k), samples.get(k + 1)) {
            sec.server_cpu_cores = (b.cpu_s - a.cpu_s) / (b.t - a.t).max(1e-3);
            sec.server_rss_bytes = b.rss;
        }
    }
    let cpu_seconds = match (samples.first(), samples.last()) {
        (Some(a), Some(b)) => b.cpu_s - a.cpu_s,
        _ => 0.0,
    };
    // Memory per session: growth above the lowest reading (the registered users' settled
    // reading, or a lower one during the run, with the sessions it already had: the allocator
    // returns what the registration's threads freed only once other threads allocate), per
    // session added since.
    let rss_connected = samples.iter().map(|s| s.rss).max().unwrap_or(0);
    let seen = m.timeline.iter().filter(|s| s.server_rss_bytes > 0);
    // A reading with more than a tenth of the sessions already up is no floor.
    let most = m.clients.peak_connected.max(1);
    let floor = seen
        .clone()
        .map(|s| (s.server_rss_bytes, s.connected))
        .filter(|&(_, sessions)| sessions * 10 <= most)
        .chain([(rss_registered, 0)])
        .min_by_key(|&(rss, _)| rss)
        .unwrap_or((rss_registered, 0));
    let peak = seen
        .max_by_key(|s| (s.connected, s.server_rss_bytes))
        .map_or((rss_connected, 0), |s| (s.server_rss_bytes, s.connected));
    let connected_end = m.timeline.last().map_or(0, |s| s.connected);
    let per = |rss: u64, sessions: u64| {
        if sessions > floor.1 {
            rss.saturating_sub(floor.0) as f64 / (sessions - floor.1) as f64
        } else {
            0.0
        }
    };
    let bytes_per_active_session = per(peak.0, peak.1);
    let bytes_per_session = rss_idle.map_or(bytes_per_active_session, |r| per(r, connected_end));
    // Handshakes per CPU-second over the seconds in which handshakes completed.
    let (hs, cpu): (u64, f64) = m
        .timeline
        .iter()
        .filter(|s| s.handshakes > 0)
        .fold((0, 0.0), |(h, c), s| {
            (h + s.handshakes, c + s.server_cpu_cores)
        });
    let users = m.clients.users.max(1) as f64;
    ServerFigures {
        cpus,
        cpu_seconds,
        cpu_seconds_by_thread,
        rss_registered_bytes: rss_registered,
        rss_connected_bytes: rss_connected,
        bytes_per_registered_user: floor.0.saturating_sub(rss_empty) as f64 / users,
        bytes_per_session,
        bytes_per_active_session,
        rss_idle_bytes: rss_idle.unwrap_or(0),
        handshakes_per_cpu_second: if cpu > 0.0 { hs as f64 / cpu } else { 0.0 },
        counters,
    }
}

/// The server's resident memory once at least `min_wait` has passed and it has stopped
/// falling (at most `min_wait` + 10 s).
pub(crate) fn settled_rss(pid: u32, min_wait: Duration) -> u64 {
    std::thread::sleep(min_wait);
    let mut readings = vec![testbed::procstat::rss_bytes(pid)];
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(250));
        readings.push(testbed::procstat::rss_bytes(pid));
        // Settled: no reading in the last second is 1% below the one a second earlier.
        if let [.., earlier, _, _, _, last] = readings[..] {
            if last as f64 >= earlier as f64 * 0.99 {
                break;
            }
        }
    }
    readings.last().copied().unwrap_or(0)
}
