//! `GET /api/v1/status`: the live view operators ask for, from the state the control plane
//! publishes every second: each peer's endpoint, latest handshake and traffic (with its
//! registry name where it has one), and each worker's packet counters, packet rates and drops.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::error::ApiError;
use super::{blocking, ApiState};
use crate::registry::Trouble;
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
    /// Outer datagrams received per second, between the plane's last two publications.
    rx_pps: f64,
    /// Outer datagrams sent per second, likewise.
    tx_pps: f64,
    rx_datagrams: u64,
    tx_datagrams: u64,
    tun_reads: u64,
    tun_writes: u64,
    drops: HashMap<&'static str, u64>,
}

/// GET /api/v1/status
pub async fn status(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let published = state.fresh_snapshot().await?;
    let body = blocking(move || {
        let device = &published.state;
        // Names of the registry's active peers; without them while it is away (the
        // interface's own state is what matters then, and it answers).
        let active = state.registry().active();
        let names: HashMap<_, _> = match active {
            Ok(peers) => {
                state.health.reached();
                peers
                    .into_iter()
                    .map(|p| (p.public_key, (p.id, p.name)))
                    .collect()
            }
            Err(e) if e.trouble() == Trouble::Other => return Err(e.into()),
            Err(e) => {
                state.health.unreachable(&e);
                HashMap::new()
            }
        };
        let trouble = state.health.trouble();
        let mut warnings = state.warnings.clone();
        warnings.extend(trouble.as_deref().map(super::registry_health::warning));
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
                rx_pps: published.rates.get(i).map_or(0.0, |r| r.rx_pps),
                tx_pps: published.rates.get(i).map_or(0.0, |r| r.tx_pps),
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
            "age_ms": published.taken.elapsed().as_millis() as u64,
            "firewall": device.firewall,
            "peers": peers,
            "workers": workers,
            "registry": {
                "engine": state.engine,
                "reachable": trouble.is_none(),
                "trouble": trouble,
            },
            "warnings": warnings,
        }))
    })
    .await?;
    Ok(Json(body).into_response())
}
