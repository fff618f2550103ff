//! `GET /api/v1/cluster`: the nodes sharing this registry, from their heartbeats: each one's
//! state (up, or silent when its heartbeat stopped), what it serves and how busy it is.
//! `POST /api/v1/cluster/take-over`: this node reaches every other node's recent users now
//! (what a VRRP master runs when the service address arrives: `xgate cluster take-over`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;
use super::{blocking, ApiState};

use crate::registry::{unix_ms, RECENT_MS, SILENT_AFTER_MS};

/// GET /api/v1/cluster
pub async fn cluster(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let body = blocking(move || cluster_json(&state)).await?;
    Ok(Json(body).into_response())
}

/// The nodes sharing the registry, as `GET /api/v1/cluster` answers (blocking).
pub(crate) fn cluster_json(state: &ApiState) -> Result<serde_json::Value, ApiError> {
    let mut registry = state.registry();
    let this = registry.node().to_string();
    let nodes = registry.nodes()?;
    drop(registry);
    let now_ms = unix_ms();
    let listed: Vec<_> = nodes
        .iter()
        .map(|n| {
            let age = now_ms.saturating_sub(n.beat.now_ms);
            serde_json::json!({
                "node": n.node,
                "this": n.node == this,
                "state": if age > SILENT_AFTER_MS { "silent" } else { "up" },
                "heartbeat_age_ms": age,
                "started_ms": n.beat.started_ms,
                "peers": n.beat.peers,
                "sessions": n.beat.sessions,
                "handshakes": n.beat.handshakes,
                "handshakes_per_s": n.beat.handshakes_per_s,
            })
        })
        .collect();
    Ok(serde_json::json!({
        "engine": state.engine,
        "node": this,
        "nodes": listed,
    }))
}

/// POST /api/v1/cluster/take-over
pub async fn take_over(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let body = blocking(move || {
        // Claimed under the registry's lock, reached after it is let go: the handshakes
        // take the plane a while, and other requests and the heartbeat must not wait.
        let since = unix_ms().saturating_sub(RECENT_MS);
        let mut registry = state.registry();
        let me = registry.node().to_string();
        let mut claimed = Vec::new();
        for n in registry.nodes()?.into_iter().filter(|n| n.node != me) {
            let sessions = registry.take_over_sessions(&n.node, since)?;
            claimed.push((n.node, sessions));
        }
        drop(registry);
        let taken: Vec<_> = claimed
            .iter()
            .map(|(node, sessions)| {
                let reached = crate::follower::takeover::reach(&state, node, sessions);
                tracing::info!(
                    node = %node,
                    sessions = sessions.len(),
                    reached,
                    "cluster: taking over on request; starting handshakes with its recent users"
                );
                serde_json::json!({ "node": node, "sessions": sessions.len(), "reached": reached })
            })
            .collect();
        Ok(serde_json::json!({ "node": me, "taken": taken }))
    })
    .await?;
    Ok(Json(body).into_response())
}
