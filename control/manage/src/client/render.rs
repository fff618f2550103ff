//! Tables for people: one line per peer or worker, columns aligned.

use serde_json::Value;

fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out += &line(r);
        out.push('\n');
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Peers as the API lists them.
pub fn peer_table(peers: &[Value]) -> String {
    let rows = peers
        .iter()
        .map(|p| {
            let state = if p["revoked_at"].is_null() {
                "active"
            } else {
                "revoked"
            };
            vec![
                text(&p["id"]),
                text(&p["name"]),
                text(&p["group"]),
                text(&p["addresses"]),
                state.to_string(),
                text(&p["public_key"]),
            ]
        })
        .collect();
    table(
        &["ID", "NAME", "GROUP", "ADDRESSES", "STATE", "PUBLIC KEY"],
        rows,
    )
}

/// `/api/v1/status` for people.
pub fn status_table(status: &Value) -> String {
    let empty = Vec::new();
    let peers = status["peers"].as_array().unwrap_or(&empty);
    let rows = peers
        .iter()
        .map(|p| {
            vec![
                text(&p["name"]),
                text(&p["endpoint"]),
                text(&p["latest_handshake"]),
                text(&p["rx_bytes"]),
                text(&p["tx_bytes"]),
                text(&p["public_key"]),
            ]
        })
        .collect();
    let mut out = format!(
        "interface {} (port {}), {} peers\nbackend: {}\nfirewall: {}\n\n",
        text(&status["interface"]),
        text(&status["listen_port"]),
        peers.len(),
        text(&status["backend"]),
        text(&status["firewall"]),
    );
    out += &table(
        &[
            "NAME",
            "ENDPOINT",
            "HANDSHAKE (unix s)",
            "RX BYTES",
            "TX BYTES",
            "PUBLIC KEY",
        ],
        rows,
    );
    let workers = status["workers"].as_array().unwrap_or(&empty);
    let per_worker = status["backend_per_worker"].as_array().unwrap_or(&empty);
    let rows = workers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            vec![
                text(&w["worker"]),
                per_worker.get(i).map_or_else(|| "-".into(), text),
                text(&w["rx_datagrams"]),
                text(&w["tx_datagrams"]),
                text(&w["tun_reads"]),
                text(&w["tun_writes"]),
                w["drops"]
                    .as_object()
                    .map(|d| {
                        d.iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.push('\n');
    out += &table(
        &[
            "WORKER",
            "OUTER",
            "DATAGRAMS IN",
            "DATAGRAMS OUT",
            "TUN READS",
            "TUN WRITES",
            "DROPS",
        ],
        rows,
    );
    out
}
