//! A small surge against a real xgate: every simulated user connects and gets its echo back
//! through the tunnel, and what the harness wrote agrees with xgate's own counters. Then a
//! mixed flood: users still connect while forged and replayed initiations are dropped. And a
//! mixed surge: IKEv2 users (EAP-MSCHAPv2 and certificates) log in beside WireGuard ones and
//! ping through ESP, then again against a fresh xgate and strongSwan side by side.

mod common;

use loadtest::results::RunResult;
use loadtest::run::run;

/// The runs take turns: each pins its server to CPU 0 and measures it.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn written_and_read_back(r: &RunResult) -> RunResult {
    let dir = std::env::temp_dir().join(format!("xlt-results-{}", std::process::id()));
    let path = r.write(&dir).expect("result written");
    let back = RunResult::read(&path).expect("result read back");
    let _ = std::fs::remove_dir_all(&dir);
    back
}

#[test]
fn a_small_surge_connects_everyone_and_agrees_with_the_server() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Three load threads, so what they measured must add up.
    let mut o = common::options("small", "s");
    o.load_threads = 3;
    let r = run(&o).expect("the run");
    let r = written_and_read_back(&r);
    let c = &r.clients;
    let dump = serde_json::to_string_pretty(&r).unwrap_or_default();
    eprintln!("{dump}");
    assert_eq!(c.users, 500);
    assert_eq!(c.load_threads, 3);
    assert_eq!(c.endpoints, 500, "a source address and port per user");
    assert!(
        c.dropped.is_empty(),
        "nothing the server sent was refused: {dump}"
    );
    assert_eq!(c.connected, 500, "every user connects: {dump}");
    assert_eq!(
        c.first_byte, 500,
        "every user's first echo comes back: {dump}"
    );
    assert!(
        c.bytes_received > 0 && c.bytes_sent >= c.bytes_received,
        "{dump}"
    );
    assert_eq!(
        r.latency.handshake_ms.count, 500,
        "one handshake time per user"
    );
    let s = r.server.counters.as_ref().expect("xgate's counters");
    // The server saw every initiation the users sent and answered each one that connected.
    assert_eq!(s.initiations_received, c.initiations_sent, "{dump}");
    assert!(s.responses_sent >= c.connected, "{dump}");
    assert!(s.responses_sent <= c.initiations_sent, "{dump}");
    if c.retries == 0 {
        assert_eq!(s.responses_sent, c.connected, "{dump}");
    }
    assert_eq!(s.cookie_replies_sent, c.cookie_replies, "{dump}");
    assert!(s.sessions_active >= 500, "a session per user: {dump}");
    assert!(
        r.server.cpu_seconds > 0.0 && r.server.rss_connected_bytes > 0,
        "{dump}"
    );
    let shown: u64 = r.timeline.iter().map(|s| s.handshakes).sum();
    assert_eq!(shown, 500, "the timeline holds every handshake: {dump}");
    let last = r.timeline.last().expect("a timeline");
    assert_eq!((last.arrived, last.connected), (500, 500), "{dump}");
    assert_eq!(c.peak_connected, 500, "{dump}");
}

#[test]
fn users_connect_through_a_mixed_flood_that_is_dropped() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut o = common::options("mixed-flood", "f");
    o.scenario.users = 300;
    o.scenario.seconds = 5.0;
    o.scenario.traffic.seconds = 1.0;
    let r = run(&o).expect("the run");
    let dump = serde_json::to_string_pretty(&r).unwrap_or_default();
    eprintln!("{dump}");
    let f = r.flood.as_ref().expect("flood figures");
    assert!(f.forged_sent > 20_000 && f.replayed_sent > 5_000, "{dump}");
    assert_eq!(r.clients.connected, 300, "every user connects: {dump}");
    let s = r.server.counters.as_ref().expect("xgate's counters");
    // No forged initiation was answered: the users' own and at most the 64 replayed (each a
    // real initiation, once) got responses.
    assert!(
        s.responses_sent <= r.clients.initiations_sent + 64,
        "{dump}"
    );
    let refused: u64 = s.refused.values().sum::<u64>() + s.rejected.values().sum::<u64>();
    // Every forged or replayed initiation was refused, rejected or answered by a cookie.
    assert!(
        refused + s.cookie_replies_sent >= f.forged_sent + f.replayed_sent - f.refused_by_kernel,
        "{dump}"
    );
}

#[test]
fn ikev2_and_wireguard_users_arriving_together_all_connect() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = run(&common::options("small-mixed", "m")).expect("the run");
    let r = written_and_read_back(&r);
    let dump = serde_json::to_string_pretty(&r).unwrap_or_default();
    eprintln!("{dump}");
    assert_eq!(r.clients.connected, 200, "every WireGuard user: {dump}");
    let methods: Vec<(&str, u64)> = r.ike.iter().map(|i| (i.auth.as_str(), i.users)).collect();
    assert_eq!(
        methods,
        [("eap", 25), ("cert", 25)],
        "a row per method: {dump}"
    );
    for ike in &r.ike {
        assert_eq!(ike.connected, 25, "every IKEv2 user logs in: {dump}");
        assert_eq!(
            ike.first_byte, 25,
            "and gets its echo back through ESP: {dump}"
        );
        assert_eq!((ike.refused, ike.failed), (0, 0), "{dump}");
        assert_eq!(ike.setup_ms.count, 25, "one setup time per user");
        assert!(ike.setup_ms.p50 > 0.0 && ike.setup_ms.max >= ike.setup_ms.p50);
    }
    // Side by side: the same users against a fresh xgate and strongSwan, method by method,
    // each server's CPU and memory measured.
    let rows: Vec<(&str, &str)> = r
        .ike_side_by_side
        .iter()
        .map(|i| (i.server.as_str(), i.auth.as_str()))
        .collect();
    let expected = [
        ("xgate", "eap"),
        ("xgate", "cert"),
        ("strongswan", "eap"),
        ("strongswan", "cert"),
    ];
    assert_eq!(rows, expected, "{dump}");
    for f in &r.ike_side_by_side {
        assert_eq!(
            (f.connected, f.first_byte),
            (25, 25),
            "{} {}: {dump}",
            f.server,
            f.auth
        );
        assert!(f.server_cpu_s > 0.0, "{} used CPU: {dump}", f.server);
    }
    // The responder did the work on its own thread.
    let cpu = &r.server.cpu_seconds_by_thread;
    assert!(cpu.get("xgate-ike").is_some_and(|s| *s > 0.0), "{cpu:?}");
}
