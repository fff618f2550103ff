//! Peers side by side: the same `wireguard-go` client sends through the tunnel to each server
//! (xgate, boringtun-cli, wireguard-go), the server pinned to CPU 0 and everything else on
//! CPU 1. For each test: goodput, inner packets per second delivered by the server, and the
//! server process's own CPU seconds per GB delivered.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::rig::{Rig, ServerKind, SERVER_TUNNEL_IP};

/// Seconds each iperf3 test runs.
pub const SECONDS: u32 = 5;

/// One test against one server.
#[derive(Debug, Clone, Serialize)]
pub struct PeerFigure {
    /// Server label.
    pub server: String,
    /// "tcp-1", "tcp-4", "udp-64", "udp-512" or "udp-1420".
    pub test: String,
    /// Goodput iperf3's receiver saw, Gbit/s.
    pub gbit_per_s: f64,
    /// Tunnel datagrams per second that reached the server (counted on its veth, before GRO).
    pub pps: f64,
    /// Server CPU seconds (all threads, user + system) over the test.
    pub server_cpu_s: f64,
    /// Server CPU seconds per GB of inner bytes delivered.
    pub cpu_s_per_gb: f64,
    /// xgate: packets written into the TUN per write (coalesced TCP runs), when it wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets_per_tun_write: Option<f64>,
    /// xgate: datagrams per send on the kernel's outer socket (UDP_SEGMENT batches), when it
    /// sent that way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datagrams_per_send: Option<f64>,
}

/// xgate's counters of packets against the system calls that carried them: TUN writes and
/// packets written, outer sends and datagrams sent (None for the peers, which have none).
fn offload_counts(rig: &Rig) -> Option<[u64; 4]> {
    let read = |name: &str| rig.server.stat(name).ok();
    Some([
        read("tun_writes")?,
        read("tun_write_calls")?,
        read("tx_datagrams")?,
        read("outer_send_calls")?,
    ])
}

/// `a / b` of two counter deltas, when something was counted.
fn per_call(packets: u64, calls: u64) -> Option<f64> {
    (calls > 0).then(|| packets as f64 / calls as f64)
}

/// The tests: TCP with 1 and 4 streams, UDP with inner packets of 64, 512 and 1420 bytes.
pub const TESTS: [&str; 5] = ["tcp-1", "tcp-4", "udp-64", "udp-512", "udp-1420"];

fn iperf_args(test: &str) -> Vec<String> {
    iperf_args_to(test, SERVER_TUNNEL_IP)
}

/// iperf3's client arguments for `test` against the server at `target`, port 5201.
pub(crate) fn iperf_args_to(test: &str, target: &str) -> Vec<String> {
    let mut a = vec![
        "-c".to_string(),
        target.to_string(),
        "-p".into(),
        "5201".into(),
        "-t".into(),
        SECONDS.to_string(),
        "-J".into(),
    ];
    match test {
        "tcp-1" => {}
        "tcp-4" => a.extend(["-P".into(), "4".into()]),
        udp => {
            // The figure is the inner IP packet; iperf3 takes the UDP payload (28 bytes less).
            let size: usize = udp.trim_start_matches("udp-").parse().unwrap_or(1420);
            a.extend([
                "-u".into(),
                "-b".into(),
                "0".into(),
                "-l".into(),
                (size - 28).to_string(),
            ]);
        }
    }
    a
}

/// Goodput in Gbit/s from iperf3's JSON (the receiver's figure).
pub(crate) fn goodput(json: &Value, udp: bool) -> f64 {
    let end = &json["end"];
    let bps = if udp {
        let s = &end["sum"];
        let lost = s["lost_percent"].as_f64().unwrap_or(0.0);
        s["bits_per_second"].as_f64().unwrap_or(0.0) * (1.0 - lost / 100.0)
    } else {
        end["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
    };
    bps / 1e9
}

/// Runs every test against `server`.
pub fn measure(server: ServerKind, xgate: &Path, dir: &Path) -> Result<Vec<PeerFigure>> {
    let rig = Rig::start(server, xgate, dir)?;
    let _client = rig.wireguard_go_client()?;
    let _iperf = rig.iperf3_server()?;
    let mut out = Vec::new();
    for test in TESTS {
        let cpu0 = rig.server_cpu_seconds()?;
        let (_, b0) = rig.server_tun_rx()?;
        let p0 = rig.server_datagrams_in()?;
        let c0 = offload_counts(&rig);
        let mut cmd = rig.client_ns.command("taskset");
        cmd.args(["-c", "1", "iperf3"]).args(iperf_args(test));
        let text = testbed::netns::run(&mut cmd)
            .with_context(|| format!("iperf3 {test} against {}", server.label()))?;
        let cpu = rig.server_cpu_seconds()? - cpu0;
        let (_, b1) = rig.server_tun_rx()?;
        let p1 = rig.server_datagrams_in()?;
        let calls = c0.zip(offload_counts(&rig)).map(|(a, b)| {
            let d: Vec<u64> = b.iter().zip(a).map(|(b, a)| b.saturating_sub(a)).collect();
            (per_call(d[0], d[1]), per_call(d[2], d[3]))
        });
        let json: Value = serde_json::from_str(&text).context("iperf3 JSON")?;
        let gb = (b1 - b0) as f64 / 1e9;
        let figure = PeerFigure {
            server: server.label(),
            test: test.to_string(),
            gbit_per_s: goodput(&json, test.starts_with("udp")),
            pps: (p1 - p0) as f64 / f64::from(SECONDS),
            server_cpu_s: cpu,
            cpu_s_per_gb: if gb > 0.0 { cpu / gb } else { f64::NAN },
            packets_per_tun_write: calls.and_then(|c| c.0),
            datagrams_per_send: calls.and_then(|c| c.1),
        };
        let per = |v: Option<f64>, what: &str| v.map(|v| format!("  {v:.1} {what}"));
        eprintln!(
            "  {:<14} {:<9} {:>6.2} Gbit/s {:>9.0} pps  {:>5.2} CPU-s/GB{}{}",
            figure.server,
            figure.test,
            figure.gbit_per_s,
            figure.pps,
            figure.cpu_s_per_gb,
            per(figure.packets_per_tun_write, "packets/TUN write").unwrap_or_default(),
            per(figure.datagrams_per_send, "datagrams/send").unwrap_or_default(),
        );
        out.push(figure);
    }
    Ok(out)
}
