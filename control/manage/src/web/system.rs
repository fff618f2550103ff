//! The system: what runs (version, where the settings came from, the interface, each worker's
//! backend), the registry, the IKEv2 responder's SAs, and the nodes sharing the registry.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

use super::guard::SignedIn;
use super::{render, Nav, Web};

/// One IKEv2 SA's row.
struct SaRow {
    identity: String,
    remote: String,
    addresses: String,
    encryption: String,
}

/// One cluster node's row.
struct NodeRow {
    node: String,
    state: String,
    heartbeat_ms: String,
    sessions: String,
    handshakes_per_s: String,
}

/// The system page.
#[derive(askama::Template)]
#[template(path = "system.html")]
struct SystemPage {
    nav: Nav,
    version: &'static str,
    source: String,
    interface: String,
    listen_port: String,
    firewall: String,
    workers: Vec<String>,
    engine: &'static str,
    /// "off", or why the SAs could not be read.
    ike: String,
    sas: Vec<SaRow>,
    nodes: Vec<NodeRow>,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn sa_rows(sas: &Value) -> Vec<SaRow> {
    let list = sas["sas"].as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|s| SaRow {
            identity: text(&s["identity"]),
            remote: text(&s["remote"]),
            addresses: s["addresses"]
                .as_array()
                .map(|a| a.iter().map(text).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            encryption: text(&s["encryption"]),
        })
        .collect()
}

fn node_rows(cluster: &Value) -> Vec<NodeRow> {
    let list = cluster["nodes"].as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|n| NodeRow {
            node: format!(
                "{}{}",
                text(&n["node"]),
                if n["this"] == Value::Bool(true) {
                    " (this node)"
                } else {
                    ""
                }
            ),
            state: text(&n["state"]),
            heartbeat_ms: text(&n["heartbeat_age_ms"]),
            sessions: text(&n["sessions"]),
            handshakes_per_s: text(&n["handshakes_per_s"]),
        })
        .collect()
}

/// GET /system
pub async fn page(State(web): State<Arc<Web>>, SignedIn(session): SignedIn) -> Response {
    let api = web.api.clone();
    let (ike, cluster) = tokio::task::spawn_blocking(move || (api.ike_sas(), api.cluster_nodes()))
        .await
        .unwrap_or((None, Ok(Value::Null)));
    let (ike, sas) = match ike {
        None => (
            "off (no IKEv2 user, or [ike] enabled = false)".to_string(),
            Vec::new(),
        ),
        Some(Ok(v)) => {
            let ports = text(&v["ports"]);
            (format!("on, UDP ports {ports}"), sa_rows(&v))
        }
        Some(Err(e)) => (e.message, Vec::new()),
    };
    let published = web.api.published();
    let state = published.as_ref().map(|p| &p.state);
    render(&SystemPage {
        nav: Nav::new(&session, "system"),
        version: env!("CARGO_PKG_VERSION"),
        source: web.api.source().to_string(),
        interface: web.api.interface().to_string(),
        listen_port: state.map_or_else(|| "-".into(), |s| s.listen_port.to_string()),
        firewall: state.map_or_else(|| "-".into(), |s| s.firewall.to_string()),
        workers: state
            .map(|s| s.backend_per_worker.clone())
            .unwrap_or_default(),
        engine: web.api.engine(),
        ike,
        sas,
        nodes: cluster.map(|c| node_rows(&c)).unwrap_or_default(),
    })
}
