//! The WireGuard cross-platform userspace API's text protocol (wireguard.com/xplatform):
//! parsing `set=1` bodies into a `DeviceUpdate`, and writing `get=1` answers as
//! wireguard-go does, so `wg` reads xgate exactly as it reads wireguard-go.
//!
//! One extension, `get_xgate=1`, reports xgate's own counters; `wg` never sends it, and it
//! keeps those keys out of the standard answer, which some UAPI clients parse strictly.

use std::fmt::Write;
use std::net::SocketAddr;

use ipnet::IpNet;
use proto::{PresharedKey, PrivateKey, PublicKey};

use crate::engine::DeviceState;
use crate::stats::{CounterDef, CounterKind};
use crate::update::{DeviceUpdate, PeerUpdate};

/// A `set=1` body that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    /// 1-based line number within the body.
    pub line: usize,
    /// What was wrong.
    pub problem: String,
}

fn bool_value(value: &str) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Parses the lines of a `set=1` body (without the command line and the blank terminator).
pub fn parse_set<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<DeviceUpdate, ParseError> {
    let mut update = DeviceUpdate::default();
    let mut peer: Option<PeerUpdate> = None;
    for (i, line) in lines.into_iter().enumerate() {
        let fail = |problem: String| ParseError {
            line: i + 1,
            problem,
        };
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| fail(format!("{line:?} is not key=value")))?;
        let bad = |what: &str| fail(format!("invalid {what}: {value:?}"));
        // A secret's value is never quoted back: the error may be logged.
        let bad_secret = |what: &str| fail(format!("invalid {what}: not 64 hexadecimal digits"));
        match (key, peer.as_mut()) {
            ("private_key", None) => {
                update.private_key = Some(if value.bytes().all(|b| b == b'0') {
                    None
                } else {
                    Some(PrivateKey::from_hex(value).map_err(|_| bad_secret("private_key"))?)
                });
            }
            ("listen_port", None) => {
                update.listen_port = Some(value.parse().map_err(|_| bad("listen_port"))?)
            }
            ("fwmark", None) => update.fwmark = Some(value.parse().map_err(|_| bad("fwmark"))?),
            ("replace_peers", None) => {
                update.replace_peers = bool_value(value).ok_or_else(|| bad("replace_peers"))?
            }
            ("public_key", _) => {
                if let Some(done) = peer.take() {
                    update.peers.push(done);
                }
                peer = Some(PeerUpdate::new(
                    PublicKey::from_hex(value).map_err(|_| bad("public_key"))?,
                ));
            }
            ("remove", Some(p)) => p.remove = bool_value(value).ok_or_else(|| bad("remove"))?,
            ("update_only", Some(p)) => {
                p.update_only = bool_value(value).ok_or_else(|| bad("update_only"))?
            }
            ("preshared_key", Some(p)) => {
                let k = PresharedKey::from_hex(value).map_err(|_| bad_secret("preshared_key"))?;
                p.preshared_key = Some(if k.is_zero() { None } else { Some(k) });
            }
            ("endpoint", Some(p)) => {
                p.endpoint = Some(
                    crate::config::resolve_endpoint(value)
                        .map_err(|e| fail(format!("invalid endpoint: {e}")))?,
                )
            }
            ("persistent_keepalive_interval", Some(p)) => {
                p.persistent_keepalive = Some(
                    value
                        .parse()
                        .map_err(|_| bad("persistent_keepalive_interval"))?,
                )
            }
            ("replace_allowed_ips", Some(p)) => {
                p.replace_allowed_ips =
                    bool_value(value).ok_or_else(|| bad("replace_allowed_ips"))?
            }
            ("allowed_ip", Some(p)) => match value.strip_prefix('-') {
                Some(net) => p
                    .remove_allowed_ips
                    .push(net.parse::<IpNet>().map_err(|_| bad("allowed_ip"))?),
                None => p
                    .allowed_ips
                    .push(value.parse::<IpNet>().map_err(|_| bad("allowed_ip"))?),
            },
            ("protocol_version", Some(_)) => {
                if value != "1" {
                    return Err(fail(format!("unsupported protocol_version {value}")));
                }
            }
            (k, None)
                if matches!(
                    k,
                    "remove" | "update_only" | "preshared_key" | "endpoint" | "allowed_ip"
                ) =>
            {
                return Err(fail(format!("{k} given before any public_key")));
            }
            (k, _) => return Err(fail(format!("unknown key {k:?}"))),
        }
    }
    if let Some(done) = peer {
        update.peers.push(done);
    }
    Ok(update)
}

/// The `get=1` answer (without the final `errno=0` and blank line).
pub fn format_get(state: &DeviceState) -> String {
    let mut out = String::new();
    if let Some(k) = &state.private_key {
        let _ = writeln!(out, "private_key={}", k.to_hex());
    }
    let _ = writeln!(out, "listen_port={}", state.listen_port);
    if state.fwmark != 0 {
        let _ = writeln!(out, "fwmark={}", state.fwmark);
    }
    for p in &state.peers {
        let _ = writeln!(out, "public_key={}", p.public_key.to_hex());
        let psk = p
            .preshared_key
            .as_ref()
            .map_or_else(|| "0".repeat(64), PresharedKey::to_hex);
        let _ = writeln!(out, "preshared_key={psk}");
        let _ = writeln!(out, "protocol_version=1");
        if let Some(e) = p.endpoint {
            let _ = writeln!(out, "endpoint={}", format_endpoint(e));
        }
        let (sec, nsec) = p
            .last_handshake
            .map_or((0, 0), |d| (d.as_secs(), d.subsec_nanos()));
        let _ = writeln!(out, "last_handshake_time_sec={sec}");
        let _ = writeln!(out, "last_handshake_time_nsec={nsec}");
        let _ = writeln!(out, "tx_bytes={}", p.tx_bytes);
        let _ = writeln!(out, "rx_bytes={}", p.rx_bytes);
        let _ = writeln!(
            out,
            "persistent_keepalive_interval={}",
            p.persistent_keepalive
        );
        for net in &p.allowed_ips {
            let _ = writeln!(out, "allowed_ip={net}");
        }
    }
    out
}

fn format_endpoint(e: SocketAddr) -> String {
    match e {
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        SocketAddr::V4(v4) => v4.to_string(),
    }
}

/// The `get_xgate=1` answer: interface facts and every counter, `key=value` per line.
pub fn format_xgate_stats(state: &DeviceState) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "interface={}", state.name);
    if let Some(k) = &state.private_key {
        let _ = writeln!(out, "public_key={}", k.public_key().to_hex());
    }
    let _ = writeln!(out, "workers={}", state.workers);
    let _ = writeln!(out, "stat_indices_in_use={}", state.indices_in_use);
    // Work first, then drops; within each, the workers' counters then the plane's.
    for kind in [CounterKind::Stat, CounterKind::Drop] {
        let prefix = match kind {
            CounterKind::Stat => "stat",
            CounterKind::Drop => "drop",
        };
        let mut line = |def: &CounterDef, v: u64| {
            if def.kind == kind {
                let _ = writeln!(out, "{prefix}_{}={v}", def.name);
            }
        };
        state.datapath.for_each(&mut line);
        state.control.for_each(&mut line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ControlCounters, PeerState};
    use std::time::Duration;

    fn hex_key(n: u8) -> String {
        PrivateKey::from_bytes([n; 32]).public_key().to_hex()
    }

    #[test]
    fn parses_what_wg_setconf_sends() {
        let peer = hex_key(2);
        let body = format!(
            "private_key={}\nlisten_port=51820\nreplace_peers=true\npublic_key={peer}\npreshared_key={}\nendpoint=192.0.2.1:51820\npersistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=10.77.0.2/32\nallowed_ip=fd77::2/128\npublic_key={}\nremove=true",
            PrivateKey::from_bytes([1; 32]).to_hex(),
            "11".repeat(32),
            hex_key(3)
        );
        let u = parse_set(body.lines()).expect("valid");
        assert!(u.private_key.is_some_and(|k| k.is_some()));
        assert_eq!(u.listen_port, Some(51820));
        assert!(u.replace_peers);
        assert_eq!(u.peers.len(), 2);
        let p = &u.peers[0];
        assert_eq!(p.endpoint, Some("192.0.2.1:51820".parse().expect("addr")));
        assert_eq!(p.persistent_keepalive, Some(25));
        assert_eq!(p.allowed_ips.len(), 2);
        assert!(p.replace_allowed_ips);
        assert!(u.peers[1].remove);
    }

    #[test]
    fn zero_keys_mean_remove_and_errors_name_the_line() {
        let u = parse_set([format!("private_key={}", "0".repeat(64)).as_str()]).expect("valid");
        assert!(matches!(u.private_key, Some(None)));
        let e = parse_set(["listen_port=99999"]).expect_err("port too big");
        assert_eq!(e.line, 1);
        let e = parse_set(["endpoint=1.2.3.4:5"]).expect_err("no peer yet");
        assert!(e.problem.contains("before any public_key"));
        assert!(parse_set(["bogus=1"]).is_err());
        let bad_ip = format!("public_key={}\nallowed_ip=10.0.0.300/32", hex_key(2));
        assert_eq!(parse_set(bad_ip.lines()).expect_err("bad ip").line, 2);
    }

    #[test]
    fn get_answer_has_wireguard_go_shape() {
        let state = DeviceState {
            name: "xg".into(),
            private_key: Some(PrivateKey::from_bytes([1; 32])),
            listen_port: 51820,
            fwmark: 0,
            workers: 2,
            backend: "io-uring".into(),
            backend_per_worker: Vec::new(),
            firewall: "",
            peers: vec![PeerState {
                public_key: PrivateKey::from_bytes([2; 32]).public_key(),
                preshared_key: None,
                endpoint: Some("[2001:db8::1]:4000".parse().expect("addr")),
                last_handshake: Some(Duration::new(1_700_000_000, 5)),
                receiver_index: Some(7),
                rx_bytes: 10,
                tx_bytes: 20,
                persistent_keepalive: 0,
                allowed_ips: vec!["10.77.0.2/32".parse().expect("net")],
            }],
            datapath: Default::default(),
            per_worker: Vec::new(),
            control: ControlCounters::default(),
            indices_in_use: 1,
            esp_tunnels: Vec::new(),
        };
        let text = format_get(&state);
        assert!(text.contains("endpoint=[2001:db8::1]:4000\n"));
        assert!(text.contains("last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\n"));
        assert!(text.contains(&format!("preshared_key={}\n", "0".repeat(64))));
        assert!(text.contains("allowed_ip=10.77.0.2/32\n"));
        // Round trip: what get prints, set accepts.
        let peer_lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                !l.starts_with("last_handshake")
                    && !l.ends_with("_bytes=10")
                    && !l.ends_with("_bytes=20")
            })
            .filter(|l| !l.starts_with("private_key") && !l.starts_with("listen_port"))
            .collect();
        assert!(parse_set(peer_lines).is_ok());
        let stats = format_xgate_stats(&state);
        assert!(stats.contains("drop_bad_tag=0\n"));
        // The workers' and the plane's tables share one namespace per kind: no name twice.
        let keys: Vec<&str> = stats.lines().filter_map(|l| l.split('=').next()).collect();
        let unique: std::collections::HashSet<&&str> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "a counter name repeats:\n{stats}");
        for key in [
            "stat_handshake_initiations_received",
            "stat_xdp_tx_frames",
            "drop_stale_answer",
        ] {
            assert!(keys.contains(&key), "{key} missing");
        }
    }
}
