//! `/metrics` against a running xgate: the Prometheus text parses, and its counters move as
//! the traffic of a real `wireguard-go` client predicts.

mod common;

use std::time::Duration;

use common::api::{call, json_of, register_and_connect, start_with_api, SMALL_POOL};
use common::Rig;
use serde_json::json;
use testbed::ping;

/// The samples of a /metrics answer, parsed by an independent Prometheus text parser.
fn scrape(rig: &Rig, token: Option<&str>) -> prometheus_parse::Scrape {
    let (status, text) = call(rig, "GET", "/metrics", token, None);
    assert_eq!(status, 200, "{text}");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not Prometheus text format ({e}):\n{text}"))
}

/// The sum of a metric's samples (over all label sets), or of those whose `key` is `value`.
fn total(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn metrics_parse_and_move_as_the_traffic_predicts() {
    let (rig, token) = start_with_api("apim", SMALL_POOL);
    let before = scrape(&rig, None);
    assert_eq!(total(&before, "xgate_registry_peers", None), 0.0);
    assert_eq!(total(&before, "xgate_peers", None), 0.0);
    assert_eq!(
        total(&before, "xgate_handshakes_completed_total", None),
        0.0
    );
    register_and_connect(&rig, &token, 0, "metered", None);
    let sent = 20;
    let p = ping(&rig.clients[0].ns, "10.77.0.1", sent).expect("ping");
    assert_eq!(p.received, sent, "{p:?}");

    // /metrics shows the state the control plane publishes once a second.
    std::thread::sleep(plane::engine::PUBLISH_EVERY + Duration::from_millis(300));
    let after = scrape(&rig, None);
    assert_eq!(total(&after, "xgate_registry_peers", None), 1.0);
    assert_eq!(total(&after, "xgate_peers", None), 1.0);
    assert_eq!(total(&after, "xgate_sessions_active", None), 1.0);
    assert!(total(&after, "xgate_handshake_initiations_received_total", None) >= 1.0);
    assert!(
        total(
            &after,
            "xgate_handshakes_completed_total",
            Some(("role", "responder"))
        ) >= 1.0
    );
    // Every ping request arrived as a datagram and left as one reply (and the first pings,
    // a keepalive and the handshake add a few more).
    let rx = total(&after, "xgate_worker_rx_datagrams_total", None);
    let tx = total(&after, "xgate_worker_tx_datagrams_total", None);
    assert!(rx >= f64::from(sent) + 1.0, "rx {rx}");
    assert!(tx >= f64::from(sent), "tx {tx}");
    assert!(total(&after, "xgate_worker_tun_writes_total", None) >= f64::from(sent));
    // Each ping is an 84-byte ICMP packet: sealed, over 100 bytes of datagram each way.
    assert!(total(&after, "xgate_worker_rx_bytes_total", None) >= 100.0 * f64::from(sent));
    assert!(total(&after, "xgate_worker_tx_bytes_total", None) >= 100.0 * f64::from(sent));
    assert!(total(&after, "xgate_worker_key_installs_total", None) >= 1.0);
    assert!(
        total(
            &after,
            "xgate_transport_bytes_total",
            Some(("direction", "rx"))
        ) > 0.0
    );
    // Two workers report, each with every drop reason.
    let workers: std::collections::HashSet<_> = after
        .samples
        .iter()
        .filter(|s| s.metric == "xgate_worker_drops_total")
        .filter_map(|s| s.labels.get("worker").map(String::from))
        .collect();
    assert_eq!(workers.len(), 2, "{workers:?}");
    // The API timed its own requests (the scrape before, the creation).
    let timed = after
        .samples
        .iter()
        .find(|s| s.metric == "xgate_api_request_duration_seconds")
        .map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            _ => 0.0,
        })
        .unwrap_or(0.0);
    assert!(timed >= 2.0, "requests timed: {timed}");
    // Gzipped when asked, as Prometheus asks (curl decompresses it).
    let out = rig
        .server
        .ns
        .command("curl")
        .args([
            "-sS",
            "--compressed",
            "-D",
            "-",
            "http://127.0.0.1:9180/metrics",
        ])
        .output()
        .expect("curl installed (apt install curl)");
    let answer = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        answer.contains("content-encoding: gzip") && answer.contains("\nxgate_peers 1\n"),
        "{answer}"
    );

    // Status: each worker's packet rate between the plane's last two publications (one a
    // second), while pings flow for three seconds.
    let pinger = std::thread::spawn({
        let ns = rig.clients[0].ns.name().to_string();
        move || {
            std::process::Command::new("ip")
                .args([
                    "netns", "exec", &ns, "ping", "-q", "-i", "0.02", "-c", "150",
                ])
                .args(["10.77.0.1"])
                .output()
        }
    });
    std::thread::sleep(plane::engine::PUBLISH_EVERY * 2 + Duration::from_millis(300));
    let (status, text) = call(&rig, "GET", "/api/v1/status", Some(&token), None);
    assert_eq!(status, 200, "{text}");
    let live = json_of(&text);
    let pps: f64 = live["workers"]
        .as_array()
        .map(|w| w.iter().filter_map(|w| w["rx_pps"].as_f64()).sum())
        .unwrap_or(0.0);
    assert!(
        pps > 5.0 && pps < 500.0,
        "50 pings/s in flight, workers report {pps} datagrams/s: {live}"
    );
    assert_eq!(live["peers"][0]["name"], json!("metered"), "{live}");
    let _ = pinger.join();
}
