//! The sizing figures as the loadtest measured them: collected from its runs against xgate
//! and the datapath benchmark into `capacity::Measured`, which the `capacity` crate sizes a
//! deployment from (the report here, the web console's capacity page there).

use serde_json::Value;

use crate::results::RunResult;
use capacity::DATAPATH_TEST;
pub use capacity::{human_bytes, size, sizing_line, Measured, Need, Sizing, SizingError};

/// The target whose figures size an xgate deployment.
const XGATE: &str = "xgate";
/// Windows shorter than this (the last, partial second of a run) would inflate a rate.
const MIN_WINDOW_S: f64 = 0.5;

fn positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// Collects the sizing figures from the xgate runs and, if given, a datapath benchmark file.
pub fn measured(runs: &[RunResult], datapath_json: Option<&Value>) -> Measured {
    // A failover run mixes two nodes and a death: cluster_report sizes it on its own.
    let xgate: Vec<&RunResult> = runs
        .iter()
        .filter(|r| r.target == XGATE && r.scenario.failover.is_none())
        .collect();
    let handshakes_per_core_s = xgate
        .iter()
        .filter(|r| positive(r.server.handshakes_per_cpu_second))
        .max_by(|a, b| {
            let (a, b) = (
                a.server.handshakes_per_cpu_second,
                b.server.handshakes_per_cpu_second,
            );
            a.total_cmp(&b)
        })
        .map(|r| (r.server.handshakes_per_cpu_second, r.file_name()));
    // A run where some users never connected measured a rate the server could not keep up
    // with, so it says nothing about the latency at that rate.
    let login_rate_per_core_at_p99 = xgate
        .iter()
        .filter(|r| r.clients.attempts > 0 && r.clients.connected == r.clients.attempts)
        .filter_map(|r| {
            let rate = peak_arrival_rate(r) / r.server.cpus.max(1) as f64;
            positive(rate).then(|| (rate, r.latency.handshake_ms.p99, r.file_name()))
        })
        .collect();
    Measured {
        handshakes_per_core_s,
        login_rate_per_core_at_p99,
        gbps_per_core: datapath_json.and_then(gbps_per_core),
        bytes_per_session: from_largest(&xgate, |r| r.server.bytes_per_session),
        bytes_per_registered_user: from_largest(&xgate, |r| r.server.bytes_per_registered_user),
        ike_setups_per_core_s: costliest_ike_method(&xgate),
        bytes_per_ike_sa: side_by_side_run(&xgate).and_then(|run| {
            xgate_rows(run)
                .filter(|f| positive(f.bytes_per_sa))
                .max_by(|a, b| a.bytes_per_sa.total_cmp(&b.bytes_per_sa))
                .map(|f| (f.bytes_per_sa, run.file_name()))
        }),
    }
}

/// The run whose side by side logged the most users into xgate (where fixed costs weigh
/// least).
fn side_by_side_run<'a>(xgate: &[&'a RunResult]) -> Option<&'a RunResult> {
    xgate
        .iter()
        .copied()
        .filter(|r| xgate_rows(r).next().is_some())
        .max_by_key(|r| xgate_rows(r).map(|f| f.connected).sum::<u64>())
}

/// A run's side-by-side rows for xgate.
fn xgate_rows(run: &RunResult) -> impl Iterator<Item = &crate::ike_load::IkeFigures> {
    run.ike_side_by_side.iter().filter(|f| f.server == XGATE)
}

/// The lowest IKEv2 login rate per CPU-second among the methods of that run (the mix of
/// methods a deployment sees is not known).
fn costliest_ike_method(xgate: &[&RunResult]) -> Option<(f64, String, String)> {
    let run = side_by_side_run(xgate)?;
    xgate_rows(run)
        .filter(|f| positive(f.setups_per_cpu_s()))
        .min_by(|a, b| a.setups_per_cpu_s().total_cmp(&b.setups_per_cpu_s()))
        .map(|f| (f.setups_per_cpu_s(), f.auth.clone(), run.file_name()))
}

/// The most arrivals in one window of the timeline, per second.
fn peak_arrival_rate(run: &RunResult) -> f64 {
    let (mut t0, mut arrived0) = (0.0, 0u64);
    let mut peak = 0.0_f64;
    for s in &run.timeline {
        let dt = s.t - t0;
        if dt >= MIN_WINDOW_S {
            peak = peak.max(s.arrived.saturating_sub(arrived0) as f64 / dt);
        }
        (t0, arrived0) = (s.t, s.arrived);
    }
    peak
}

/// Per-user memory is best measured with the most users, where fixed costs weigh least; a
/// run with IKEv2 users beside the WireGuard ones is left out (their memory is in its
/// figures, and the IKEv2 part is sized on its own).
fn from_largest(runs: &[&RunResult], figure: fn(&RunResult) -> f64) -> Option<(f64, String)> {
    runs.iter()
        .filter(|r| positive(figure(r)) && r.scenario.ike_users == 0)
        .max_by_key(|r| r.clients.users)
        .map(|r| (figure(r), r.file_name()))
}

fn str_at<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// Gbit/s per core from the datapath benchmark: a CPU-second moves 1 / cpu_s_per_gb GB,
/// that is 8 / cpu_s_per_gb Gbit.
fn gbps_per_core(v: &Value) -> Option<(f64, String)> {
    let entry = v.get("peers")?.as_array()?.iter().find(|p| {
        str_at(p, &["server"]) == Some(XGATE) && str_at(p, &["test"]) == Some(DATAPATH_TEST)
    })?;
    let cpu_s_per_gb = entry.get("cpu_s_per_gb")?.as_f64()?;
    if !positive(cpu_s_per_gb) {
        return None;
    }
    let source = match (
        str_at(v, &["machine", "date"]),
        str_at(v, &["machine", "commit"]),
    ) {
        (Some(date), Some(commit)) => format!("datapath-{date}-{commit}.json"),
        _ => "the datapath benchmark".to_string(),
    };
    Some((8.0 / cpu_s_per_gb, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plots::tests::fake_run;

    /// 100 arrivals a second on 2 cores: 50 users/s per core, everyone connected.
    fn xgate_run(p99: f64) -> RunResult {
        let mut r = fake_run("xgate", "surge", 5);
        r.clients.users = 500;
        r.clients.attempts = 500;
        r.clients.connected = 500;
        r.server.cpus = 2;
        r.server.handshakes_per_cpu_second = 1000.0;
        r.server.bytes_per_session = 4096.0;
        r.server.bytes_per_registered_user = 1024.0;
        r.latency.handshake_ms.p99 = p99;
        r
    }

    fn need(gbps: f64, p99_ms: f64) -> Need {
        Need {
            users: 60_000,
            gbps,
            p99_ms,
            surge_seconds: 60.0,
            cores_per_box: 16,
            ike_share: 0.0,
        }
    }

    fn datapath(cpu_s_per_gb: f64) -> Value {
        serde_json::json!({
            "machine": { "date": "2026-11-26", "commit": "abc" },
            "peers": [
                { "server": "wireguard-go", "test": "tcp-1", "cpu_s_per_gb": 1.0 },
                { "server": "xgate", "test": "tcp-1", "cpu_s_per_gb": cpu_s_per_gb }
            ]
        })
    }

    #[test]
    fn only_complete_xgate_runs_count() {
        let mut partial = xgate_run(10.0);
        partial.clients.connected = 499;
        let mut peer = xgate_run(10.0);
        peer.target = "boringtun-cli".into();
        let m = measured(&[xgate_run(50.0), partial, peer], None);
        assert_eq!(m.login_rate_per_core_at_p99.len(), 1);
        let (rate, p99, _) = &m.login_rate_per_core_at_p99[0];
        assert!((rate - 50.0).abs() < 1e-9 && (p99 - 50.0).abs() < 1e-9);
        assert_eq!(m.bytes_per_session.as_ref().map(|b| b.0), Some(4096.0));
        assert!(m.gbps_per_core.is_none());
    }

    #[test]
    fn a_run_meeting_the_target_sizes_logins() {
        let m = measured(&[xgate_run(50.0)], None);
        let s = size(&need(0.0, 200.0), &m).expect("sized");
        // 60,000 users in 60 s = 1,000/s at 50/s per core.
        assert_eq!(s.cores, 20);
        assert_eq!(s.boxes, 2);
        assert_eq!(s.bound_by, "login surge");
        assert_eq!(s.memory_bytes, Some(60_000.0 * 5120.0));
        assert!(sizing_line(&s).starts_with("60000 users, 0 Gbit/s, p99 <= 200 ms"));
        assert!(
            sizing_line(&s).contains("20 cores (2 boxes of 16)"),
            "{}",
            sizing_line(&s)
        );
    }

    #[test]
    fn throughput_can_bound() {
        let dp = datapath(4.0);
        let m = measured(&[xgate_run(50.0)], Some(&dp));
        let (per_core, source) = m.gbps_per_core.clone().expect("datapath figure");
        assert!((per_core - 2.0).abs() < 1e-9);
        assert_eq!(source, "datapath-2026-11-26-abc.json");
        let s = size(&need(100.0, 200.0), &m).expect("sized");
        assert_eq!(s.cores, 50);
        assert_eq!(s.boxes, 4);
        assert_eq!(s.bound_by, "throughput");
        assert!(sizing_line(&s).contains("datapath-2026-11-26-abc.json"));
    }

    #[test]
    fn a_tighter_target_than_any_run_names_the_lowest_p99() {
        let m = measured(&[xgate_run(50.0), xgate_run(80.0)], None);
        let err = size(&need(0.0, 10.0), &m).expect_err("no run meets 10 ms");
        let msg = format!("{err:#}");
        assert!(msg.contains("50.0 ms") && msg.contains("--p99-ms"), "{msg}");
    }

    #[test]
    fn traffic_without_the_datapath_figure_asks_for_make_bench() {
        let m = measured(&[xgate_run(50.0)], None);
        let err = size(&need(20.0, 200.0), &m).expect_err("no datapath figure");
        assert!(format!("{err:#}").contains("make bench"), "{err:#}");
    }

    #[test]
    fn a_protocol_mix_adds_the_ikev2_logins_and_their_memory() {
        let mut run = xgate_run(50.0);
        let ike = |server: &str, auth: &str, cpu: f64| crate::ike_load::IkeFigures {
            server: server.into(),
            auth: auth.into(),
            users: 1000,
            connected: 1000,
            server_cpu_s: cpu,
            bytes_per_sa: 8192.0,
            ..Default::default()
        };
        // xgate: 2,000 EAP and 4,000 certificate logins per CPU-s; strongSwan's rows ignored.
        run.ike_side_by_side = vec![
            ike("xgate", "eap", 0.5),
            ike("xgate", "cert", 0.25),
            ike("strongswan", "eap", 10.0),
        ];
        let m = measured(&[run], None);
        let (rate, method, _) = m.ike_setups_per_core_s.clone().expect("measured");
        assert_eq!(
            (rate, method.as_str()),
            (2000.0, "eap"),
            "the costliest method"
        );
        let mut n = need(0.0, 200.0);
        n.ike_share = 0.25;
        let s = size(&n, &m).expect("sized");
        // 45,000 WireGuard users in 60 s at 50/s per core = 15 cores; 15,000 IKEv2 logins in
        // 60 s = 250/s at 2,000 per core = 0.125 cores.
        let logins = s.cores_for_logins.expect("logins sized");
        assert!((logins - 15.125).abs() < 1e-9, "{logins}");
        assert_eq!(s.cores, 16);
        assert_eq!(
            s.memory_bytes,
            Some(45_000.0 * 4096.0 + 15_000.0 * 8192.0 + 60_000.0 * 1024.0)
        );
        assert!(s
            .lines
            .iter()
            .any(|l| l.starts_with("IKEv2 logins: 15000 users")));
        // Without the side-by-side figures, the error says which run measures them.
        let err = size(&n, &measured(&[xgate_run(50.0)], None)).expect_err("not measured");
        assert!(format!("{err:#}").contains("surge-mixed"), "{err:#}");
        n.ike_share = 1.5;
        assert!(size(&n, &m).is_err(), "a share above 1 is refused");
    }

    #[test]
    fn no_xgate_run_is_an_error() {
        let err = size(&need(0.0, 200.0), &Measured::default()).expect_err("nothing measured");
        assert!(format!("{err:#}").contains("no xgate run"), "{err:#}");
    }
}
