//! The overview's figures, sampled once a second from the state the control plane publishes
//! (reading it costs the plane nothing) and kept for the last 15 minutes in memory: users
//! online, handshakes per second, Gbit/s in and out, drops per second, and each worker's
//! packet rates.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plane::engine::Published;
use plane::stats::DropReason;
use serde::Serialize;

use crate::api::ApiState;

/// How often a sample is taken.
pub const EVERY: Duration = Duration::from_secs(1);
/// Samples kept: 15 minutes.
const KEPT: usize = 900;

/// One second of the overview.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    /// Unix seconds.
    pub t: u64,
    /// Users with a session: WireGuard peers with a handshake within 3 minutes, and IKEv2
    /// users with an ESP tunnel.
    pub online: u64,
    /// Handshakes per second: responses sent and our own initiations completed (the
    /// heartbeat's figure).
    pub handshakes: f64,
    /// Gbit/s received from users (datagrams on the outer side, every worker together).
    pub gbps_in: f64,
    /// Gbit/s sent to users, likewise.
    pub gbps_out: f64,
    /// Packets dropped per second, every reason together.
    pub drops: f64,
}

/// What the overview shows beside the charts: now's per-worker and per-reason figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Detail {
    /// Each worker: its backend, datagrams in and out per second, and how busy its thread
    /// was (percent of one core; unknown on the first sample).
    pub workers: Vec<(String, f64, f64, Option<f64>)>,
    /// Drops since start by reason (only reasons that happened).
    pub drops: Vec<(&'static str, u64)>,
}

/// Totals from one publication, for rates between two.
#[derive(Debug, Clone, Copy)]
struct Totals {
    at: std::time::Instant,
    handshakes: u64,
    bytes_in: u64,
    bytes_out: u64,
    drops: u64,
}

fn totals(p: &Published) -> Totals {
    let s = &p.state;
    // The workers' counters only grow (a peer's own bytes go when the peer does).
    Totals {
        at: p.taken,
        handshakes: s.control.responses_sent + s.control.initiator_completed,
        bytes_in: s.datapath.rx_bytes,
        bytes_out: s.datapath.tx_bytes,
        drops: DropReason::ALL
            .iter()
            .map(|r| s.datapath.drops_for(*r))
            .sum(),
    }
}

/// The samples and the latest detail.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
    detail: Mutex<Detail>,
}

impl History {
    /// Every sample kept, oldest first.
    pub fn all(&self) -> Vec<Sample> {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.iter().cloned().collect()
    }

    /// The newest sample, if any.
    pub fn latest(&self) -> Option<Sample> {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.back().cloned()
    }

    /// The newest detail.
    pub fn detail(&self) -> Detail {
        self.detail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn push(&self, sample: Sample, detail: Detail) {
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() == KEPT {
            samples.pop_front();
        }
        samples.push_back(sample);
        *self.detail.lock().unwrap_or_else(PoisonError::into_inner) = detail;
    }
}

/// Users online in `p`: WireGuard peers with a recent handshake and ESP tunnels.
pub fn online(p: &Published) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let recent = Duration::from_millis(crate::registry::RECENT_MS);
    let wg = p
        .state
        .peers
        .iter()
        .filter(|peer| {
            peer.last_handshake
                .is_some_and(|t| now.saturating_sub(t) < recent)
        })
        .count();
    (wg + p.state.esp_tunnels.len()) as u64
}

/// One sample from publication `p`, with rates against `before`, and the workers' busy
/// shares by number.
fn sample(
    p: &Published,
    before: Option<Totals>,
    busy: &std::collections::HashMap<usize, f64>,
) -> (Sample, Detail, Totals) {
    let now = totals(p);
    let rate = |f: fn(&Totals) -> u64| {
        before.map_or(0.0, |b| {
            let secs = now.at.saturating_duration_since(b.at).as_secs_f64();
            if secs <= 0.0 {
                return 0.0;
            }
            f(&now).saturating_sub(f(&b)) as f64 / secs
        })
    };
    let sample = Sample {
        t: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        online: online(p),
        handshakes: rate(|t| t.handshakes),
        gbps_in: rate(|t| t.bytes_in) * 8.0 / 1e9,
        gbps_out: rate(|t| t.bytes_out) * 8.0 / 1e9,
        drops: rate(|t| t.drops),
    };
    let s = &p.state;
    let detail = Detail {
        workers: s
            .backend_per_worker
            .iter()
            .zip(p.rates.iter())
            .enumerate()
            .map(|(i, (backend, r))| {
                let busy = busy.get(&i).map(|b| b * 100.0);
                (backend.clone(), r.rx_pps, r.tx_pps, busy)
            })
            .collect(),
        drops: DropReason::ALL
            .iter()
            .map(|r| (r.name(), s.datapath.drops_for(*r)))
            .filter(|(_, n)| *n > 0)
            .collect(),
    };
    (sample, detail, now)
}

/// Samples `state`'s publications every second, for as long as the API runs.
pub async fn run(state: Arc<ApiState>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut before: Option<(std::time::Instant, Totals)> = None;
    let mut load = super::worker_load::WorkerLoad::default();
    loop {
        tick.tick().await;
        let Some(p) = state.published() else {
            continue;
        };
        // A publication already sampled gives no new rate.
        if before.is_some_and(|(taken, _)| taken == p.taken) {
            continue;
        }
        // A few small /proc reads: off the API's only async thread.
        let busy = match tokio::task::spawn_blocking(move || {
            let shares = load.sample();
            (load, shares)
        })
        .await
        {
            Ok((back, shares)) => {
                load = back;
                shares
            }
            Err(_) => {
                load = super::worker_load::WorkerLoad::default();
                Default::default()
            }
        };
        let (s, d, t) = sample(&p, before.map(|(_, t)| t), &busy);
        state.console.history.push(s, d);
        before = Some((p.taken, t));
    }
}
