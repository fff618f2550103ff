//! One IPsec transfer: iperf3 through the tunnel with pings beside it, and what the server's
//! CPU spent on it.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use testbed::Netns;

use super::{IpsecFigure, IpsecServer, Rig, LOADED_PINGS, SECONDS};
use crate::rig::SERVER_TUNNEL_IP;

/// The average round trip of `count` pings 10 ms apart from `ns` to the server's tunnel
/// address, milliseconds (ping on CPU 1, beside the client); fails if more than a fifth went
/// unanswered.
pub(super) fn ping_rtt(ns: &Netns, count: u32) -> Result<f64> {
    let count_text = count.to_string();
    let out = ns
        .command("taskset")
        .args(["-c", "1", "ping", "-n", "-q", "-i", "0.01", "-W", "1"])
        .args(["-c", &count_text, SERVER_TUNNEL_IP])
        .output()
        .context("running ping")?;
    let report = testbed::ping::parse(&String::from_utf8_lossy(&out.stdout))?;
    if report.received * 5 < report.sent * 4 {
        bail!(
            "{} of {} pings through the tunnel came back",
            report.received,
            report.sent
        );
    }
    Ok(report.avg_rtt_ms)
}

/// A round trip, or NaN (shown as such) with a warning: a lossy ping does not cost the
/// section's other figures.
pub(super) fn rtt_or_nan(rtt: Result<f64>, when: &str) -> f64 {
    rtt.unwrap_or_else(|e| {
        eprintln!("  ping through the tunnel ({when}) not measured: {e:#}");
        f64::NAN
    })
}

fn iperf_args(test: &str) -> Vec<String> {
    let mut a: Vec<String> = ["-c", SERVER_TUNNEL_IP, "-p", "5201", "-J", "-t"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.push(SECONDS.to_string());
    if test == "tcp-4" {
        a.extend(["-P".into(), "4".into()]);
    }
    a
}

/// One iperf3 `test` through the tunnel, with pings beside it.
pub(super) fn transfer(
    rig: &Rig,
    kind: IpsecServer,
    test: &'static str,
    idle_rtt_ms: f64,
) -> Result<IpsecFigure> {
    let cpu0 = rig.server_cpu_seconds()?;
    let mut cmd = rig.client_ns.command("taskset");
    cmd.args(["-c", "1", "iperf3"]).args(iperf_args(test));
    // The latency the transfer costs other traffic: pings beside it, from the client.
    let (text, loaded_rtt_ms) = std::thread::scope(|scope| {
        let pings = scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(500));
            ping_rtt(&rig.client_ns, LOADED_PINGS)
        });
        let text = testbed::netns::run(&mut cmd);
        let rtt = pings
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the ping thread panicked")));
        (text, rtt)
    });
    let text = text.with_context(|| format!("iperf3 {test} against {}", kind.label()))?;
    let loaded_rtt_ms = rtt_or_nan(loaded_rtt_ms, test);
    let cpu = rig.server_cpu_seconds()? - cpu0;
    let json: Value = serde_json::from_str(&text).context("iperf3 JSON")?;
    let received = &json["end"]["sum_received"];
    let bytes = received["bytes"].as_f64().unwrap_or(0.0);
    let gb = bytes / 1e9;
    let figure = IpsecFigure {
        server: kind.label(),
        test,
        gbit_per_s: received["bits_per_second"].as_f64().unwrap_or(0.0) / 1e9,
        server_cpu_s: cpu,
        cpu_s_per_gb: if gb > 0.0 { cpu / gb } else { f64::NAN },
        runs: Vec::new(),
        idle_rtt_ms,
        loaded_rtt_ms,
    };
    eprintln!(
        "  {:<20} {:<6} {:>6.2} Gbit/s  {:>6.2} CPU-s/GB  ping {:.3} ms idle, {:.3} ms loaded",
        figure.server,
        figure.test,
        figure.gbit_per_s,
        figure.cpu_s_per_gb,
        idle_rtt_ms,
        loaded_rtt_ms
    );
    Ok(figure)
}
