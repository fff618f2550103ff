//! `xgate show`: the running daemon's interface, peers and counters, read through its UAPI
//! socket (the same `get=1` answer `wg show` reads, plus xgate's counters).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use proto::PublicKey;
use serde::Serialize;

use plane::uapi;

/// One peer as `xgate show` reports it.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct ShownPeer {
    /// Public key, base64.
    pub public_key: String,
    /// Endpoint, if known.
    pub endpoint: Option<String>,
    /// Allowed IPs.
    pub allowed_ips: Vec<String>,
    /// Latest handshake, seconds since the Unix epoch (`null` in JSON: never).
    pub latest_handshake: Option<u64>,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Persistent keepalive in seconds (0 = off).
    pub persistent_keepalive: u64,
}

/// The whole report.
#[derive(Debug, Default, Serialize)]
pub struct Shown {
    /// Interface name.
    pub interface: String,
    /// Public key, base64.
    pub public_key: Option<String>,
    /// Listen port.
    pub listen_port: u16,
    /// Workers.
    pub workers: u64,
    /// Peers.
    pub peers: Vec<ShownPeer>,
    /// Counters (`stat_*` keys without the prefix).
    pub stats: BTreeMap<String, u64>,
    /// Drops by reason.
    pub drops: BTreeMap<String, u64>,
}

fn key_b64(hex: &str) -> String {
    PublicKey::from_hex(hex).map_or_else(|_| hex.to_string(), |k| k.to_base64())
}

/// Reads the report from the daemon serving `interface`.
pub fn fetch(interface: &str) -> Result<Shown> {
    let get = uapi::query(interface, "get=1").with_context(|| format!("reading {interface}"))?;
    let stats = uapi::query(interface, "get_xgate=1")
        .with_context(|| format!("{interface} is not served by xgate (no get_xgate answer)"))?;
    let mut shown = Shown {
        interface: interface.to_string(),
        ..Default::default()
    };
    for line in &get {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let num = || v.parse::<u64>().unwrap_or(0);
        match (k, shown.peers.last_mut()) {
            ("listen_port", None) => shown.listen_port = v.parse().unwrap_or(0),
            ("public_key", _) => shown.peers.push(ShownPeer {
                public_key: key_b64(v),
                ..Default::default()
            }),
            ("endpoint", Some(p)) => p.endpoint = Some(v.to_string()),
            ("allowed_ip", Some(p)) => p.allowed_ips.push(v.to_string()),
            ("last_handshake_time_sec", Some(p)) => {
                p.latest_handshake = Some(num()).filter(|t| *t > 0);
            }
            ("rx_bytes", Some(p)) => p.rx_bytes = num(),
            ("tx_bytes", Some(p)) => p.tx_bytes = num(),
            ("persistent_keepalive_interval", Some(p)) => p.persistent_keepalive = num(),
            _ => {}
        }
    }
    for line in &stats {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let n = v.parse::<u64>().unwrap_or(0);
        if let Some(name) = k.strip_prefix("drop_") {
            shown.drops.insert(name.to_string(), n);
        } else if let Some(name) = k.strip_prefix("stat_") {
            shown.stats.insert(name.to_string(), n);
        } else if k == "public_key" {
            shown.public_key = Some(key_b64(v));
        } else if k == "workers" {
            shown.workers = n;
        }
    }
    Ok(shown)
}

/// Every interface xgate serves here (a UAPI socket that answers xgate's extension),
/// by name; an empty list when none runs.
pub fn fetch_all() -> Result<Vec<Shown>> {
    let mut names: Vec<String> = match std::fs::read_dir(uapi::SOCKET_DIR) {
        Ok(dir) => dir
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".sock"))
                    .map(String::from)
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("listing {}", uapi::SOCKET_DIR)),
    };
    names.sort();
    // A socket of wireguard-go, or a stale one, is not xgate's: skipped. One this user may
    // not open is said, not taken for "nothing runs".
    let mut shown = Vec::new();
    for name in &names {
        match fetch(name) {
            Ok(s) => shown.push(s),
            Err(e) if denied(&e) => return Err(e),
            Err(_) => {}
        }
    }
    Ok(shown)
}

/// True if `e` comes from a permission the system refused.
fn denied(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    })
}

/// How long ago a Unix time was, as `wg show` says it ("never" for none).
pub fn ago(epoch_secs: Option<u64>) -> String {
    let Some(epoch_secs) = epoch_secs else {
        return "never".into();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let s = now.saturating_sub(epoch_secs);
    match s {
        0..=119 => format!("{s} seconds ago"),
        120..=7199 => format!("{} minutes ago", s / 60),
        _ => format!("{} hours ago", s / 3600),
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// The report for people.
pub fn render(s: &Shown) -> String {
    let mut out = format!("interface: {}\n", s.interface);
    if let Some(k) = &s.public_key {
        out += &format!("  public key: {k}\n");
    }
    out += &format!(
        "  listening port: {}\n  workers: {}\n",
        s.listen_port, s.workers
    );
    for p in &s.peers {
        out += &format!("\npeer: {}\n", p.public_key);
        if let Some(e) = &p.endpoint {
            out += &format!("  endpoint: {e}\n");
        }
        let ips = if p.allowed_ips.is_empty() {
            "(none)".to_string()
        } else {
            p.allowed_ips.join(", ")
        };
        out += &format!("  allowed ips: {ips}\n");
        out += &format!("  latest handshake: {}\n", ago(p.latest_handshake));
        out += &format!(
            "  transfer: {} received, {} sent\n",
            bytes(p.rx_bytes),
            bytes(p.tx_bytes)
        );
        if p.persistent_keepalive > 0 {
            out += &format!(
                "  persistent keepalive: every {} seconds\n",
                p.persistent_keepalive
            );
        }
    }
    let drops: Vec<_> = s.drops.iter().filter(|(_, n)| **n > 0).collect();
    out += "\ndropped packets:";
    if drops.is_empty() {
        out += " none\n";
    } else {
        out += "\n";
        for (name, n) in drops {
            out += &format!("  {name}: {n}\n");
        }
    }
    out
}
