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

/// Seconds since the Unix epoch, now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How long ago Unix time `v` was, for people ("never" for null).
fn ago(v: &Value, now: u64) -> String {
    let Some(t) = v.as_u64() else {
        return "never".into();
    };
    seconds_ago(now.saturating_sub(t))
}

/// `s` seconds ago, for people, in the unit that reads best.
pub fn seconds_ago(s: u64) -> String {
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// Unix time `v` as ISO 8601 UTC (`2026-12-03T05:30:00Z`); "-" for null.
pub fn iso8601(v: &Value) -> String {
    let Some(t) = v.as_u64() else {
        return "-".into();
    };
    let (days, secs) = (t / 86_400, t % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Peers as the API lists them.
pub fn peer_table(peers: &[Value]) -> String {
    let now = unix_now();
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
                ago(&p["last_handshake"], now),
                iso8601(&p["created_at"]),
                text(&p["public_key"]),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "GROUP",
            "ADDRESSES",
            "STATE",
            "HANDSHAKE",
            "CREATED",
            "PUBLIC KEY",
        ],
        rows,
    )
}

/// `xgate cluster status`: the nodes sharing the registry, one row each.
pub fn cluster_table(cluster: &Value) -> String {
    let empty = Vec::new();
    let nodes = cluster["nodes"].as_array().unwrap_or(&empty);
    let rows = nodes
        .iter()
        .map(|n| {
            let name = text(&n["node"]);
            vec![
                if n["this"].as_bool() == Some(true) {
                    format!("{name} (this node)")
                } else {
                    name
                },
                text(&n["state"]),
                format!("{} ms", text(&n["heartbeat_age_ms"])),
                text(&n["peers"]),
                text(&n["sessions"]),
                text(&n["handshakes_per_s"]),
            ]
        })
        .collect();
    let mut out = format!(
        "registry: {}, {} nodes\n\n",
        text(&cluster["engine"]),
        nodes.len()
    );
    out += &table(
        &[
            "NODE",
            "STATE",
            "HEARTBEAT",
            "PEERS",
            "SESSIONS",
            "HANDSHAKES/S",
        ],
        rows,
    );
    out
}

/// `/api/v1/status` for people.
pub fn status_table(status: &Value) -> String {
    let now = unix_now();
    let empty = Vec::new();
    let peers = status["peers"].as_array().unwrap_or(&empty);
    let rows = peers
        .iter()
        .map(|p| {
            vec![
                text(&p["name"]),
                text(&p["endpoint"]),
                ago(&p["latest_handshake"], now),
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
            "HANDSHAKE",
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_read_as_people_say_them() {
        assert_eq!(ago(&json!(null), 1000), "never");
        assert_eq!(ago(&json!(995), 1000), "5 s ago");
        assert_eq!(ago(&json!(1000 - 600), 1000), "10 min ago");
        assert_eq!(ago(&json!(0), 3 * 86_400), "3 d ago");
        assert_eq!(iso8601(&json!(0)), "1970-01-01T00:00:00Z");
        // 2026-12-03T05:30:00Z, and a leap day.
        assert_eq!(iso8601(&json!(1_796_275_800u64)), "2026-12-03T05:30:00Z");
        assert_eq!(iso8601(&json!(951_782_400u64)), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(&json!(null)), "-");
    }
}
