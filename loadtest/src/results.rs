//! What one run measured, as written to `bench-results/loadtest-<scenario>-<target>-<date>-<commit>.json`
//! and read back by `report` and `size`. Every figure is measured; nothing here is derived
//! from a constant.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::ike_load::IkeFigures;
use crate::scenario::Scenario;

/// Percentiles of one histogram, in milliseconds (or the unit the field says).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest value.
    pub max: f64,
}

impl Summary {
    /// Summarises a histogram of microseconds as milliseconds.
    pub fn of_micros(h: &Histogram<u64>) -> Self {
        Self::scaled(h, 1e-3)
    }

    /// Summarises a histogram, multiplying every value by `scale`.
    pub fn scaled(h: &Histogram<u64>, scale: f64) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let q = |p: f64| h.value_at_quantile(p) as f64 * scale;
        Self {
            count: h.len(),
            mean: h.mean() * scale,
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max() as f64 * scale,
        }
    }
}

/// One second of the run, as the clients and the server saw it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the first arrival (end of this one-second window).
    pub t: f64,
    /// Users that had begun to connect by then.
    pub arrived: u64,
    /// Users with a working tunnel at the end of the window (joined and not left).
    pub connected: u64,
    /// Handshakes completed in the window.
    pub handshakes: u64,
    /// Handshake latency (first initiation to response, retries included) of the handshakes
    /// completed in the window.
    pub handshake_ms: Summary,
    /// Server CPU used in the window, in cores (1.0 = one core busy the whole second).
    pub server_cpu_cores: f64,
    /// Server resident memory at the end of the window, bytes.
    pub server_rss_bytes: u64,
}

/// Handshake counters the server itself reported (xgate's /metrics; none for the peers).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerCounters {
    /// Initiations the server received during the run.
    pub initiations_received: u64,
    /// Responses it sent (handshakes it answered).
    pub responses_sent: u64,
    /// Cookie replies it sent.
    pub cookie_replies_sent: u64,
    /// Initiations refused before any Diffie-Hellman, by reason.
    pub refused: BTreeMap<String, u64>,
    /// Handshake messages rejected after checking, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Sessions active at the end.
    pub sessions_active: u64,
}

/// The server side of a run, from /proc and (for xgate) its metrics endpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerFigures {
    /// CPUs the server was pinned to.
    pub cpus: usize,
    /// CPU seconds used from the first arrival to the end of the run, all threads.
    pub cpu_seconds: f64,
    /// ... by thread name (numbers stripped), over the same time.
    pub cpu_seconds_by_thread: BTreeMap<String, f64>,
    /// Resident memory with every user registered and none connected, bytes.
    pub rss_registered_bytes: u64,
    /// Resident memory with the most users connected, bytes.
    pub rss_connected_bytes: u64,
    /// Resident memory growth per registered user: the lowest reading (registered users
    /// settled, or lower during the run) above the server without users, per user.
    pub bytes_per_registered_user: f64,
    /// Memory per idle session: the reading taken after everyone stayed connected and silent
    /// for the scenario's idle_seconds, above the lowest reading, per session added since,
    /// bytes (the active figure if the scenario waits no idle time).
    pub bytes_per_session: f64,
    /// The same with the sessions active (the reading with the most users connected).
    pub bytes_per_active_session: f64,
    /// Resident memory after the idle wait, bytes (0 if none).
    pub rss_idle_bytes: u64,
    /// Handshakes completed per CPU-second of the server during the login phase.
    pub handshakes_per_cpu_second: f64,
    /// The server's own counters (None for the peers, which have no metrics).
    pub counters: Option<ServerCounters>,
}

/// The client side of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientFigures {
    /// Users in the scenario (each with its own key).
    pub users: u64,
    /// Source address and port pairs they sent from: one per user unless the process may not
    /// open that many sockets (then users share them, told apart by receiver index).
    pub endpoints: u64,
    /// Connection attempts (users plus reconnections).
    pub attempts: u64,
    /// Attempts that completed a handshake.
    pub connected: u64,
    /// ... on their first initiation (no retry, no cookie).
    pub connected_first_attempt: u64,
    /// Attempts whose first ping through the tunnel came back.
    pub first_byte: u64,
    /// Initiations sent, retries included.
    pub initiations_sent: u64,
    /// Initiations sent again before their user connected (later rekeys not counted).
    pub retries: u64,
    /// Cookie replies received.
    pub cookie_replies: u64,
    /// Attempts that did not connect, by reason.
    pub failures: BTreeMap<String, u64>,
    /// Datagrams the clients dropped, by reason (forged, unexpected index, ...).
    pub dropped: BTreeMap<String, u64>,
    /// Inner bytes sent through tunnels (ICMP echo requests).
    pub bytes_sent: u64,
    /// Inner bytes received through tunnels (echo replies).
    pub bytes_received: u64,
    /// Most users connected at the same time.
    pub peak_connected: u64,
    /// CPU seconds the load generator used (its own bound, reported so a slow client is seen).
    pub loadgen_cpu_seconds: f64,
    /// Threads the users were spread over (0 in results from before there was a choice: 1).
    #[serde(default)]
    pub load_threads: u64,
}

/// Latency and throughput distributions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latencies {
    /// First initiation to completed handshake, retries included, ms.
    pub handshake_ms: Summary,
    /// The same for handshakes completed on their first initiation, ms.
    pub first_attempt_ms: Summary,
    /// Start of the connection to the first echo reply through the tunnel, ms.
    pub first_byte_ms: Summary,
    /// Round trip of echo requests after the first, ms.
    pub rtt_ms: Summary,
    /// Per-client inner throughput received over its traffic time, kbit/s.
    pub client_kbps: Summary,
    /// Handshake latency of the reconnections only (reconnect storm), ms.
    pub reconnect_ms: Option<Summary>,
}

/// What the mixed-flood scenario sent beside the users.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FloodFigures {
    /// Forged initiations (random ephemeral and ciphertext, valid MAC1).
    pub forged_sent: u64,
    /// Replays of real initiations.
    pub replayed_sent: u64,
    /// Sends the kernel refused.
    pub refused_by_kernel: u64,
}

/// One run: scenario, target, machine and every measurement.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunResult {
    /// Format version of this file.
    pub version: u32,
    /// Machine and commit.
    pub machine: testbed::machine::Machine,
    /// Which server: "xgate", "boringtun-cli" or "wireguard-go".
    pub target: String,
    /// The scenario as run.
    pub scenario: Scenario,
    /// Seconds from the first arrival to the end of the run.
    pub duration_s: f64,
    /// Client-side figures.
    pub clients: ClientFigures,
    /// Distributions.
    pub latency: Latencies,
    /// Server-side figures.
    pub server: ServerFigures,
    /// Second by second.
    pub timeline: Vec<Second>,
    /// The flood beside the users (mixed-flood only).
    pub flood: Option<FloodFigures>,
    /// The `/metrics` scraper beside the run (scenarios that scrape only).
    #[serde(default)]
    pub scrapes: Option<crate::scraper::ScrapeFigures>,
    /// The IKEv2 users beside the WireGuard ones, by login method (scenarios with
    /// `ike_users` only; a file from before methods were mixed holds one, not a list).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    pub ike: Vec<IkeFigures>,
    /// The same IKEv2 users after the run, against a fresh xgate and each of the scenario's
    /// `ike_peers`, one method after another (each row's server CPU and memory its own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ike_side_by_side: Vec<IkeFigures>,
    /// Failover scenarios: how long the users took to pass traffic again after node A died.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<crate::failover::FailoverFigures>,
}

/// `ike` as older files have it (null or one object) or as a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IkeFigures>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Shape {
        Many(Vec<IkeFigures>),
        One(Box<IkeFigures>),
    }
    Ok(match Option::<Shape>::deserialize(d)? {
        Some(Shape::Many(v)) => v,
        Some(Shape::One(f)) => vec![*f],
        None => Vec::new(),
    })
}

/// The current format version.
pub const VERSION: u32 = 1;

impl RunResult {
    /// The file name this run is written under.
    pub fn file_name(&self) -> String {
        format!(
            "loadtest-{}-{}-{}-{}.json",
            self.scenario.name, self.target, self.machine.date, self.machine.commit
        )
    }

    /// Reads a result file.
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let r: RunResult = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a loadtest result", path.display()))?;
        anyhow::ensure!(
            r.version == VERSION,
            "{} has format version {} (this build reads {VERSION}): run the scenario again",
            path.display(),
            r.version
        );
        Ok(r)
    }

    /// Writes the run into `dir`; returns the path.
    pub fn write(&self, dir: &Path) -> Result<std::path::PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(self.file_name());
        testbed::interrupt::write_result(&path, serde_json::to_string_pretty(self)?)?;
        Ok(path)
    }
}

/// The files in `dir` named `<prefix>...json`, sorted by name.
fn json_files(dir: &Path, prefix: &str) -> Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".json"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The newest result of each (scenario, target) in `dir`, by date then file name.
pub fn latest_results(dir: &Path) -> Result<Vec<RunResult>> {
    type Stamp = (String, std::time::SystemTime);
    let mut latest: BTreeMap<(String, String), (Stamp, RunResult)> = BTreeMap::new();
    for p in json_files(dir, "loadtest-")? {
        let r = RunResult::read(&p)?;
        let key = (r.scenario.name.clone(), r.target.clone());
        // The run's date, then when the file was written (several runs a day).
        let written = std::fs::metadata(&p)
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        let when = (r.machine.date.clone(), written);
        if latest.get(&key).is_none_or(|(d, _)| *d <= when) {
            latest.insert(key, (when, r));
        }
    }
    anyhow::ensure!(
        !latest.is_empty(),
        "no loadtest results in {}: run `make surge` first",
        dir.display()
    );
    Ok(latest.into_values().map(|(_, r)| r).collect())
}

/// The newest datapath benchmark result (`make bench`) in `dir`, if any.
pub fn latest_datapath(dir: &Path) -> Result<Option<(std::path::PathBuf, serde_json::Value)>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    // The report of the last `make bench` names its JSON: that is the newest, whatever the
    // files' times (a fresh clone gives them all the same one).
    if let Ok(report) = std::fs::read_to_string(dir.join("datapath.md")) {
        let named = report
            .split('`')
            .find(|w| w.starts_with("datapath-") && w.ends_with(".json"))
            .map(|name| dir.join(name));
        if let Some(path) = named.filter(|p| p.is_file()) {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            return Ok(Some((path, v)));
        }
    }
    // Else the newest by the run's date, then by when the file was written.
    type Newest = (
        (String, std::time::SystemTime),
        std::path::PathBuf,
        serde_json::Value,
    );
    let mut newest: Option<Newest> = None;
    for path in json_files(dir, "datapath-")? {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let date = v["machine"]["date"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let written = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        let key = (date, written);
        if newest.as_ref().is_none_or(|(k, _, _)| key >= *k) {
            newest = Some((key, path, v));
        }
    }
    Ok(newest.map(|(_, path, v)| (path, v)))
}

#[cfg(test)]
mod tests {
    use super::latest_datapath;

    #[test]
    fn the_datapath_report_names_the_latest_run_whatever_the_file_names() {
        let dir = std::env::temp_dir().join(format!("xlt-latest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        // Same date; the newer run's commit sorts first by name.
        for (name, gbit) in [
            ("datapath-2026-11-26-d9aaaa.json", 1.0),
            ("datapath-2026-11-26-d5bbbb.json", 2.0),
        ] {
            let json = format!("{{\"machine\": {{\"date\": \"2026-11-26\"}}, \"x\": {gbit}}}");
            std::fs::write(dir.join(name), json).expect("json");
        }
        std::fs::write(
            dir.join("datapath.md"),
            "Machine: x. All figures: `datapath-2026-11-26-d5bbbb.json`. Reproduce",
        )
        .expect("md");
        let (path, v) = latest_datapath(&dir).expect("read").expect("found");
        assert!(
            path.ends_with("datapath-2026-11-26-d5bbbb.json"),
            "{path:?}"
        );
        assert_eq!(v["x"], 2.0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
