//! Under a handshake flood, legitimate clients still get in on their first attempt.
//!
//! For 20 s a generator sends 16,000 forged initiations per second (valid MAC1, random
//! ephemeral: each costs a responder one X25519 unless it defends itself) and 4,000 replays of
//! real initiations per second, from 64 source addresses. Meanwhile 100 clients with real keys,
//! each from its own address, send one initiation each, 100 ms apart. Every one must get a
//! response (not a cookie reply, which would cost it a 5 s retry) on that first attempt.
//! The run's figures go to bench-results/flood.md and a dated JSON file.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::load::{
    add_peers, by_thread_text, first_attempts, ms, new_keys, percentile, senders, write_results,
    xgate_pid,
};
use common::Rig;
use serde_json::json;
use testbed::flood::{flood, logins, real_initiations, FloodPlan, LoginPlan};
use testbed::machine::Machine;
use testbed::procstat::{cpu_by_thread, cpu_spent};
use testbed::server::show_number;

const CLIENTS: u8 = 100;
const FLOOD_SOURCES: u8 = 64;
const FORGED_PER_SECOND: u32 = 16_000;
const REPLAYED_PER_SECOND: u32 = 4_000;
const FLOOD_TIME: Duration = Duration::from_secs(20);

#[test]
fn legitimate_logins_get_through_a_handshake_flood_on_their_first_attempt() {
    let mut rig = Rig::new("flood");
    let mut clients = new_keys(usize::from(CLIENTS) + 1);
    add_peers(&mut rig, &clients);
    // The last key's real initiations are what the generator replays.
    let victim = clients.pop().expect("a key to replay");
    let client_addrs: Vec<Ipv4Addr> = (1..=CLIENTS)
        .map(|n| Ipv4Addr::new(10, 202, 1, n))
        .collect();
    let flood_addrs: Vec<Ipv4Addr> = (1..=FLOOD_SOURCES)
        .map(|n| Ipv4Addr::new(10, 202, 2, n))
        .collect();
    let all: Vec<Ipv4Addr> = client_addrs.iter().chain(&flood_addrs).copied().collect();
    let senders = senders(&rig, "fv", 202, &all);
    rig.start_xgate();
    let server: SocketAddr = format!("10.202.0.1:{}", rig.port).parse().expect("addr");
    let server_key = rig.server_key.public_key();
    let pid = xgate_pid(&mut rig);

    let flood_plan = FloodPlan {
        server,
        server_key,
        sources: flood_addrs,
        forged_per_second: FORGED_PER_SECOND,
        replays: real_initiations(&victim, server_key, 8),
        replayed_per_second: REPLAYED_PER_SECOND,
        duration: FLOOD_TIME,
    };
    let login_plan = LoginPlan {
        server,
        server_key,
        clients: clients.into_iter().zip(client_addrs).collect(),
        delay: Duration::from_secs(3),
        spacing: Duration::from_millis(100),
        timeout: Duration::from_secs(5),
    };
    let cpu0 = cpu_by_thread(pid);
    let started = Instant::now();
    let (sent, replies) = std::thread::scope(|s| {
        let f = s.spawn(|| senders.enter(move || flood(&flood_plan)));
        let l = s.spawn(|| senders.enter(move || logins(&login_plan)));
        let replies = l.join().expect("logins thread");
        let sent = f.join().expect("flood thread");
        (sent, replies)
    });
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_spent(&cpu0, &cpu_by_thread(pid));
    let sent = sent.expect("enter").expect("flood ran");
    let replies = replies.expect("enter").expect("logins ran");
    let shown = rig.show();
    let stat = |k: &str| show_number(&shown, "stats", k).expect("xgate show");
    let drop = |k: &str| show_number(&shown, "drops", k).expect("xgate show");

    let (answered, cookies, nothing) = first_attempts(&replies);
    let success = answered.len() as f64 / replies.len().max(1) as f64;

    let machine = testbed::machine::Machine::detect();
    let report = json!({
        "machine": machine,
        "plan": {
            "forged_per_second": FORGED_PER_SECOND,
            "replayed_per_second": REPLAYED_PER_SECOND,
            "flood_sources": FLOOD_SOURCES,
            "seconds": FLOOD_TIME.as_secs(),
            "legitimate_clients": CLIENTS,
        },
        "sent": { "forged": sent.forged, "replayed": sent.replayed, "refused_by_kernel": sent.refused },
        "legitimate": {
            "first_attempt_success": success,
            "answered": answered.len(),
            "cookie_replies": cookies,
            "no_reply": nothing,
            "p50_ms": ms(percentile(&answered, 50.0)),
            "p99_ms": ms(percentile(&answered, 99.0)),
            "max_ms": ms(answered.last().copied().unwrap_or_default()),
        },
        "responder": {
            "cpu_seconds": cpu.values().sum::<f64>(),
            "cpu_seconds_by_thread": cpu,
            "wall_seconds": wall,
            "responses_sent": stat("handshake_responses_sent"),
            "cookie_replies_sent": stat("cookie_replies_sent"),
            "over_share": stat("handshake_initiations_over_share"),
            "backlog_full": stat("handshake_initiations_backlog_full"),
            "failing_source": stat("handshake_initiations_failing_source"),
            "bad_static": drop("bad_static"),
            "replayed_initiation": drop("replayed_initiation"),
            "unknown_peer": drop("unknown_peer"),
        },
    });
    write_results("flood", &machine, &report, &markdown(&report, &machine));

    let received = stat("handshake_initiations_received");
    assert!(
        sent.forged + sent.replayed >= u64::from(FORGED_PER_SECOND + REPLAYED_PER_SECOND) * 19,
        "the generator fell short of its rate: {sent:?}"
    );
    assert!(
        received >= (sent.forged + sent.replayed) / 2,
        "the flood did not reach xgate ({received} initiations counted): {report:#}"
    );
    assert!(
        drop("replayed_initiation") >= sent.replayed / 2,
        "replays were not recognised: {report:#}"
    );
    // Each forged initiation that reaches a responder thread costs an X25519 and ends as
    // bad_static; a defended responder makes their sources prove their address instead.
    assert!(
        drop("bad_static") + drop("unknown_peer") < sent.forged / 20,
        "the responder spent a Diffie-Hellman on most forged initiations: {report:#}"
    );
    assert_eq!(
        answered.len(),
        replies.len(),
        "every legitimate client must be answered on its first attempt: {report:#}\nlog:\n{}",
        rig.log()
    );
}

/// The report for people.
fn markdown(report: &serde_json::Value, machine: &Machine) -> String {
    let (date, commit) = (&machine.date, &machine.commit);
    let l = &report["legitimate"];
    let r = &report["responder"];
    let s = &report["sent"];
    let md = format!(
        "# Handshake flood (`cargo test --test flood`)\n\n\
         Machine: {model}, {cores} cores, kernel {kernel}; commit {commit}, {date}.\n\n\
         For {secs} s a generator sent {forged} forged initiations (valid MAC1, random ephemeral) \
         and {replayed} replays of real initiations from {sources} addresses; meanwhile \
         {clients} clients with real keys, each from its own address, sent one initiation \
         each, 100 ms apart.\n\n\
         | figure | value |\n|---|---|\n\
         | legitimate clients answered on first attempt | {answered} of {clients} ({pct:.1}%) |\n\
         | ... got a cookie reply instead | {cookies} |\n\
         | handshake time p50 / p99 / max | {p50:.1} / {p99:.1} / {max:.1} ms |\n\
         | responder CPU over the run (all threads) | {cpu:.1} s in {wall:.1} s |\n\
         | ... by thread | {threads} |\n\
         | responses sent | {responses} |\n\
         | cookie replies sent | {cookie_sent} |\n\
         | initiations refused: source failing / over its share / backlog full | {failing} / {over} / {full} |\n\
         | dropped as replays (no DH) / bad static (one DH) | {replays} / {bad_static} |\n",
        model = report["machine"]["cpu"].as_str().unwrap_or("?"),
        cores = report["machine"]["cores"],
        kernel = report["machine"]["kernel"].as_str().unwrap_or("?"),
        secs = report["plan"]["seconds"],
        forged = s["forged"],
        replayed = s["replayed"],
        sources = report["plan"]["flood_sources"],
        clients = report["plan"]["legitimate_clients"],
        answered = l["answered"],
        pct = l["first_attempt_success"].as_f64().unwrap_or(0.0) * 100.0,
        cookies = l["cookie_replies"],
        p50 = l["p50_ms"].as_f64().unwrap_or(0.0),
        p99 = l["p99_ms"].as_f64().unwrap_or(0.0),
        max = l["max_ms"].as_f64().unwrap_or(0.0),
        cpu = r["cpu_seconds"].as_f64().unwrap_or(0.0),
        wall = r["wall_seconds"].as_f64().unwrap_or(0.0),
        threads = r["cpu_seconds_by_thread"]
            .as_object()
            .map(|m| {
                by_thread_text(
                    &m.iter()
                        .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(0.0)))
                        .collect(),
                )
            })
            .unwrap_or_default(),
        responses = r["responses_sent"],
        cookie_sent = r["cookie_replies_sent"],
        over = r["over_share"],
        full = r["backlog_full"],
        failing = r["failing_source"],
        replays = r["replayed_initiation"],
        bad_static = r["bad_static"],
    );
    md
}
