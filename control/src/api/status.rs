//! `GET /api/v1/status`: the live view operators ask for: each peer's endpoint, latest
//! handshake and traffic (with its registry name where it has one), and each worker's
//! packet counters and drops.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::error::ApiError;
use super::{blocking, ApiState};
use datapath::stats::DropReason;

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
    rx_datagrams: u64,
    tx_datagrams: u64,
    tun_reads: u64,
    tun_writes: u64,
    drops: HashMap<&'static str, u64>,
}

/// GET /api/v1/status
pub async fn status(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let body = blocking(move || {
        let device = state.device()?;
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
            "peers": peers,
            "workers": workers,
        }))
    })
    .await?;
    Ok(Json(body).into_response())
}
