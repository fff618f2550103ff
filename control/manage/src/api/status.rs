//! `GET /api/v1/status`: the live view operators ask for: each peer's endpoint, latest
//! handshake and traffic (with its registry name where it has one), and each worker's
//! packet counters, packet rates and drops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::error::ApiError;
use super::{blocking, ApiState};
use plane::stats::DropReason;

/// One peer's live state.
#[derive(Debug, Serialize)]
pub struct PeerStatus {
    id: Option<i64>,
    name: Option<String>,
    public_key: String,
    endpoint: Option<String>,
    latest_handshake: Option<u64>,
    rx_bytes: u64,
    tx_bytes: u64,
}

/// One worker's counters.
#[derive(Debug, Serialize)]
pub struct WorkerStatus {
    worker: usize,
    /// Outer datagrams received per second, over the time since the previous status sample.
    rx_pps: f64,
    /// Outer datagrams sent per second, likewise.
    tx_pps: f64,
    rx_datagrams: u64,
    tx_datagrams: u64,
    tun_reads: u64,
    tun_writes: u64,
    drops: HashMap<&'static str, u64>,
}

/// Every worker's datagram counters (received, sent) at one moment.
type Sample = (Instant, Vec<(u64, u64)>);

/// The previous sample, for rates.
#[derive(Default)]
pub struct RateSample {
    last: Mutex<Option<Sample>>,
}

/// Rates are taken over at least this long; a fresher previous sample means a short wait.
const MIN_WINDOW: Duration = Duration::from_millis(250);
/// A previous sample older than this is too stale to be the "current" rate.
const MAX_WINDOW: Duration = Duration::from_secs(10);

fn counts(device: &plane::engine::DeviceState) -> Vec<(u64, u64)> {
    device
        .per_worker
        .iter()
        .map(|w| (w.rx_datagrams, w.tx_datagrams))
        .collect()
}

/// GET /api/v1/status
pub async fn status(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let body = blocking(move || {
        let previous = state
            .rates
            .last
            .lock()
            .ok()
            .and_then(|l| l.clone())
            .filter(|(at, _)| at.elapsed() < MAX_WINDOW);
        let (since, before) = match previous {
            Some((at, c)) if at.elapsed() >= MIN_WINDOW => (at, c),
            _ => {
                let at = Instant::now();
                let c = counts(&state.device()?);
                std::thread::sleep(MIN_WINDOW);
                (at, c)
            }
        };
        let device = state.device()?;
        let now = Instant::now();
        let after = counts(&device);
        let secs = now.duration_since(since).as_secs_f64().max(1e-3);
        if let Ok(mut last) = state.rates.last.lock() {
            *last = Some((now, after.clone()));
        }
        let rate = |i: usize, pick: fn(&(u64, u64)) -> u64| -> f64 {
            match (after.get(i), before.get(i)) {
                (Some(a), Some(b)) => pick(a).saturating_sub(pick(b)) as f64 / secs,
                _ => 0.0,
            }
        };
        // Names of the registry's active peers.
        let names: HashMap<_, _> = state
            .registry()?
            .active()?
            .into_iter()
            .map(|p| (p.public_key, (p.id, p.name)))
            .collect();
        let peers: Vec<PeerStatus> = device
            .peers
            .iter()
            .map(|p| {
                let known = names.get(&p.public_key);
                PeerStatus {
                    id: known.map(|k| k.0),
                    name: known.map(|k| k.1.clone()),
                    public_key: p.public_key.to_base64(),
                    endpoint: p.endpoint.map(|e| e.to_string()),
                    latest_handshake: p.last_handshake.map(|t| t.as_secs()),
                    rx_bytes: p.rx_bytes,
                    tx_bytes: p.tx_bytes,
                }
            })
            .collect();
        let workers: Vec<WorkerStatus> = device
            .per_worker
            .iter()
            .enumerate()
            .map(|(i, w)| WorkerStatus {
                worker: i,
                rx_pps: rate(i, |c| c.0),
                tx_pps: rate(i, |c| c.1),
                rx_datagrams: w.rx_datagrams,
                tx_datagrams: w.tx_datagrams,
                tun_reads: w.tun_reads,
                tun_writes: w.tun_writes,
                drops: DropReason::ALL
                    .iter()
                    .map(|r| (r.name(), w.drops_for(*r)))
                    .filter(|(_, n)| *n > 0)
                    .collect(),
            })
            .collect();
        Ok(serde_json::json!({
            "interface": device.name,
            "listen_port": device.listen_port,
            "backend": device.backend,
            "backend_per_worker": device.backend_per_worker,
            "firewall": device.firewall,
            "peers": peers,
            "workers": workers,
            "warnings": state.warnings,
        }))
    })
    .await?;
    Ok(Json(body).into_response())
}
