//! The sizing calculator: cores, boxes and memory for a number of users, a traffic volume and a
//! login latency target, from measured figures only (loadtest runs against xgate and the
//! datapath benchmark). A figure that was not measured is an error naming the run to do, never
//! a default.

use anyhow::{bail, ensure, Result};
use serde_json::Value;

use crate::results::RunResult;

/// The target whose figures size an xgate deployment.
const XGATE: &str = "xgate";
/// The datapath test whose CPU cost per byte sizes traffic (one TCP stream, full-size packets).
const DATAPATH_TEST: &str = "tcp-1";
/// Windows shorter than this (the last, partial second of a run) would inflate a rate.
const MIN_WINDOW_S: f64 = 0.5;

/// Figures measured on xgate, each with the run or file it comes from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// Handshakes completed per server CPU-second (the best xgate run).
    pub handshakes_per_core_s: Option<(f64, String)>,
    /// One per xgate run in which every attempt connected: (peak arrivals per second per
    /// server core, handshake p99 in ms, source).
    pub login_rate_per_core_at_p99: Vec<(f64, f64, String)>,
    /// Tunnelled Gbit/s per server core (datapath benchmark, xgate, one TCP stream).
    pub gbps_per_core: Option<(f64, String)>,
    /// Resident bytes per connected idle session (the xgate run with the most users).
    pub bytes_per_session: Option<(f64, String)>,
    /// Resident bytes per registered, unconnected user (the xgate run with the most users).
    pub bytes_per_registered_user: Option<(f64, String)>,
    /// IKEv2 logins per server CPU-second of the costliest method xgate was measured with
    /// side by side: (rate, method, source).
    pub ike_setups_per_core_s: Option<(f64, String, String)>,
    /// Resident bytes per IKEv2 user logged in (IKE SA and CHILD_SA), the largest such
    /// xgate measurement.
    pub bytes_per_ike_sa: Option<(f64, String)>,
}

/// What a deployment must carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    /// Users, all of whom may log in during the surge.
    pub users: u64,
    /// Tunnelled traffic, Gbit/s (0 = size for logins only).
    pub gbps: f64,
    /// Handshake latency the users may see at the 99th percentile, ms.
    pub p99_ms: f64,
    /// Window in which every user logs in, seconds.
    pub surge_seconds: f64,
    /// Cores in one box.
    pub cores_per_box: u32,
    /// The share of the users on IKEv2 (0 to 1), the rest on WireGuard.
    pub ike_share: f64,
}

/// The answer: cores, boxes, memory, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Sizing {
    /// Cores the login surge needs (None when no users are asked for).
    pub cores_for_logins: Option<f64>,
    /// Cores the traffic needs (None when no traffic is asked for).
    pub cores_for_traffic: Option<f64>,
    /// Resident memory for every user registered and connected, bytes (None if not measured).
    pub memory_bytes: Option<f64>,
    /// Cores, rounded up.
    pub cores: u64,
    /// Boxes of `Need::cores_per_box` cores.
    pub boxes: u64,
    /// Which need sets the core count: "login surge" or "throughput".
    pub bound_by: String,
    /// One line per figure with its source; the last is the one-line answer.
    pub lines: Vec<String>,
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

fn positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
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

/// The best login rate per core among the runs that met the latency target.
fn best_login_rate(p99_ms: f64, m: &Measured) -> Result<(f64, f64, String)> {
    let entries = &m.login_rate_per_core_at_p99;
    let best = entries
        .iter()
        .filter(|e| e.1 <= p99_ms && positive(e.0))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some(best) = best {
        return Ok(best.clone());
    }
    match entries.iter().min_by(|a, b| a.1.total_cmp(&b.1)) {
        Some((rate, p99, source)) => bail!(
            "no xgate run met handshake p99 <= {p99_ms} ms: the lowest p99 measured is {p99:.1} ms \
             ({rate:.0} users/s per core, {source}); run a scenario at a lower arrival rate per \
             core, or allow a looser --p99-ms"
        ),
        None => bail!(
            "no xgate run in which every user connected: run a login scenario (e.g. surge) \
             against xgate before sizing for users"
        ),
    }
}

/// A byte count in the unit that reads best.
pub fn human_bytes(b: f64) -> String {
    const KIB: f64 = 1024.0;
    match b {
        b if b >= KIB * KIB * KIB => format!("{:.1} GiB", b / (KIB * KIB * KIB)),
        b if b >= KIB * KIB => format!("{:.0} MiB", b / (KIB * KIB)),
        b if b >= KIB => format!("{:.1} KiB", b / KIB),
        b => format!("{b:.0} B"),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A need that can be sized: positive durations and targets, something to size.
fn check(need: &Need) -> Result<()> {
    ensure!(
        positive(need.surge_seconds),
        "the surge must last more than 0 s (got {})",
        need.surge_seconds
    );
    ensure!(
        positive(need.p99_ms),
        "the p99 target must be above 0 ms (got {})",
        need.p99_ms
    );
    ensure!(
        need.gbps.is_finite() && need.gbps >= 0.0,
        "traffic must be 0 or more Gbit/s (got {})",
        need.gbps
    );
    ensure!(need.cores_per_box > 0, "a box needs at least one core");
    ensure!(
        (0.0..=1.0).contains(&need.ike_share),
        "the IKEv2 share of the users must be 0 to 1 (got {})",
        need.ike_share
    );
    ensure!(
        need.users > 0 || need.gbps > 0.0,
        "nothing to size: give users or Gbit/s"
    );
    Ok(())
}

/// Cores a need takes, and why (the figure and its source).
type Cores = Option<(f64, String)>;

/// The users on WireGuard and on IKEv2.
fn split(need: &Need) -> (f64, f64) {
    let ike = (need.users as f64 * need.ike_share).round();
    (need.users as f64 - ike, ike)
}

/// Cores the login surge needs (WireGuard and IKEv2 logins together); lines of working in
/// `lines`.
fn login_cores(need: &Need, m: &Measured, lines: &mut Vec<String>) -> Result<Cores> {
    if need.users == 0 {
        return Ok(None);
    }
    let (wg_users, ike_users) = split(need);
    let mut cores = 0.0;
    let mut why = Vec::new();
    if wg_users > 0.0 {
        let (rate, p99, source) = best_login_rate(need.p99_ms, m)?;
        let arrivals = wg_users / need.surge_seconds;
        let c = arrivals / rate;
        lines.push(format!(
            "login surge: {wg_users:.0} WireGuard users over {} s = {arrivals:.0} arrivals/s; \
             xgate took {rate:.0} arrivals/s per core with handshake p99 {p99:.1} ms <= {} ms \
             ({source}): {c:.2} cores",
            need.surge_seconds, need.p99_ms
        ));
        cores += c;
        why.push(format!(
            "{rate:.0} users/s per core at p99 {p99:.1} ms, {source}"
        ));
    }
    if ike_users > 0.0 {
        let Some((rate, method, source)) = &m.ike_setups_per_core_s else {
            bail!(
                "{ike_users:.0} IKEv2 users need xgate's IKEv2 logins per CPU-second, which no \
                 run measured: run surge-mixed (make surge), whose side-by-side part measures \
                 them, or size with --ike-share 0"
            );
        };
        let arrivals = ike_users / need.surge_seconds;
        let c = arrivals / rate;
        lines.push(format!(
            "IKEv2 logins: {ike_users:.0} users over {} s = {arrivals:.0} logins/s; xgate made \
             {rate:.0} per CPU-second by {method}, the costliest method measured ({source}; a \
             throughput figure, its latency is in that run's side-by-side table): {c:.2} cores",
            need.surge_seconds
        ));
        cores += c;
        why.push(format!(
            "{rate:.0} IKEv2 logins per CPU-s by {method}, {source}"
        ));
    }
    Ok(Some((cores, why.join("; "))))
}

/// Cores the traffic needs; a line of working in `lines`.
fn traffic_cores(need: &Need, m: &Measured, lines: &mut Vec<String>) -> Result<Cores> {
    if need.gbps > 0.0 {
        let Some((per_core, source)) = &m.gbps_per_core else {
            bail!(
                "{} Gbit/s needs the Gbit/s per core of xgate ({DATAPATH_TEST} in the datapath \
                 benchmark), which was not given: run `make bench` (writes \
                 bench-results/datapath-*.json)",
                need.gbps
            );
        };
        ensure!(
            positive(*per_core),
            "{source} gives {per_core} Gbit/s per core"
        );
        let cores = need.gbps / per_core;
        lines.push(format!(
            "throughput: {} Gbit/s at {per_core:.2} Gbit/s per core ({source}): {cores:.2} cores",
            need.gbps
        ));
        return Ok(Some((
            cores,
            format!("{per_core:.1} Gbit/s per core, {source}"),
        )));
    }
    Ok(None)
}

/// Memory for the users (sessions, IKEv2 SAs and registrations), when every figure it takes
/// was measured.
fn memory(need: &Need, m: &Measured, lines: &mut Vec<String>) -> Option<f64> {
    if need.users == 0 {
        return None;
    }
    let (wg_users, ike_users) = split(need);
    let ike = match &m.bytes_per_ike_sa {
        _ if ike_users == 0.0 => Some((0.0, String::new())),
        Some((b, src)) => Some((
            *b,
            format!(" + {ike_users:.0} x {b:.0} B per IKEv2 user, {src}"),
        )),
        None => None,
    };
    match (&m.bytes_per_session, &m.bytes_per_registered_user, ike) {
        (Some((session, s_src)), Some((registered, r_src)), Some((per_sa, ike_part))) => {
            let bytes = wg_users * session + ike_users * per_sa + need.users as f64 * registered;
            lines.push(format!(
                "memory: {wg_users:.0} x {session:.0} B per WireGuard session, {s_src}{ike_part} \
                 + {} x {registered:.0} B per registered user, {r_src} = {}",
                need.users,
                human_bytes(bytes)
            ));
            Some(bytes)
        }
        _ => {
            lines.push(
                "memory: not sized (bytes per session and per registered user come from a run \
                 against xgate that connects users; per IKEv2 user from surge-mixed's side by \
                 side)"
                    .to_string(),
            );
            None
        }
    }
}

/// Sizes a deployment for `need` from the measured figures; errors name the missing figure
/// and the run that would measure it.
pub fn size(need: &Need, m: &Measured) -> Result<Sizing> {
    check(need)?;
    let mut lines = Vec::new();
    // (cores, why) per need; `why` names the figure and its source for the answer line.
    let logins = login_cores(need, m, &mut lines)?;
    let traffic = traffic_cores(need, m, &mut lines)?;
    let wg_users = split(need).0;
    match &m.handshakes_per_core_s {
        Some((h, source)) if wg_users > 0.0 => lines.push(format!(
            "handshakes: {h:.0} per CPU-second ({source}); every WireGuard user reconnecting at \
             once costs {:.1} CPU-seconds",
            wg_users / h
        )),
        _ => {}
    }
    let memory_bytes = memory(need, m, &mut lines);

    let traffic_cores = traffic.as_ref().map_or(0.0, |t| t.0);
    let (bound_by, exact, why) = match (logins.clone(), traffic.clone()) {
        (Some((c, why)), _) if c >= traffic_cores => ("login surge", c, why),
        (_, Some((c, why))) => ("throughput", c, why),
        (Some((c, why)), None) => ("login surge", c, why),
        (None, None) => bail!("nothing to size: give users or Gbit/s"),
    };
    // A hair below a whole number is float noise from the division, not a fraction of a core.
    let cores = ((exact - 1e-9).ceil().max(1.0)) as u64;
    let boxes = cores.div_ceil(u64::from(need.cores_per_box));
    let memory = memory_bytes
        .map(|b| format!(", {} of memory", human_bytes(b)))
        .unwrap_or_default();
    lines.push(format!(
        "{} users, {} Gbit/s, p99 <= {} ms over a {} s surge: {} ({} of {}){memory} — bound by \
         {bound_by} ({why})",
        need.users,
        need.gbps,
        need.p99_ms,
        need.surge_seconds,
        plural(cores, "core", "cores"),
        plural(boxes, "box", "boxes"),
        need.cores_per_box,
    ));
    Ok(Sizing {
        cores_for_logins: logins.map(|l| l.0),
        cores_for_traffic: traffic.map(|t| t.0),
        memory_bytes,
        cores,
        boxes,
        bound_by: bound_by.to_string(),
        lines,
    })
}

/// The one-line answer of a sizing (its last line).
pub fn sizing_line(s: &Sizing) -> String {
    s.lines.last().cloned().unwrap_or_default()
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
