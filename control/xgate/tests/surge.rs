//! A login surge is answered, not pushed into cookie retries.
//!
//! 3,000 clients with real keys, ten behind each of 300 addresses, each send one initiation,
//! all within one second (3,000 per second; wireguard-go answered 1,700 of 4,000 per second
//! on first attempt here and boringtun-cli about 4 to 11, ../shared/DESIGN.md). Every client
//! must get a response on that first attempt: a cookie reply would cost it a 5 s retry. The
//! figures go to bench-results/surge.md and a dated JSON file.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::load::{
    add_peers, by_thread_text, first_attempts, ms, new_keys, percentile, senders, write_results,
    xgate_pid,
};
use common::Rig;
use serde_json::json;
use testbed::flood::{logins, LoginPlan};
use testbed::procstat::{cpu_by_thread, cpu_spent};
use testbed::server::show_number;

const CLIENTS: usize = 3_000;
const ADDRESSES: usize = 300;
const SURGE_TIME: Duration = Duration::from_secs(1);

#[test]
fn a_login_surge_is_answered_on_first_attempts() {
    let mut rig = Rig::new("surge");
    let keys = new_keys(CLIENTS);
    add_peers(&mut rig, &keys);
    let addresses: Vec<Ipv4Addr> = (0..ADDRESSES)
        .map(|i| Ipv4Addr::new(10, 203, 1 + (i / 250) as u8, 1 + (i % 250) as u8))
        .collect();
    let senders = senders(&rig, "sv", 203, &addresses);
    rig.start_xgate();
    let server: SocketAddr = format!("10.203.0.1:{}", rig.port).parse().expect("addr");
    let pid = xgate_pid(&mut rig);
    let plan = LoginPlan {
        server,
        server_key: rig.server_key.public_key(),
        clients: keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| (k, addresses[i % ADDRESSES]))
            .collect(),
        delay: Duration::from_millis(200),
        spacing: SURGE_TIME / CLIENTS as u32,
        timeout: Duration::from_secs(5),
    };

    let cpu0 = cpu_by_thread(pid);
    let started = Instant::now();
    let replies = senders
        .enter(move || logins(&plan))
        .expect("enter")
        .expect("logins ran");
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_spent(&cpu0, &cpu_by_thread(pid));
    let (answered, cookies, nothing) = first_attempts(&replies);
    let shown = rig.show();
    let stat = |k: &str| show_number(&shown, "stats", k).expect("xgate show");

    let machine = testbed::machine::Machine::detect();
    let report = json!({
        "machine": machine,
        "plan": {
            "clients": CLIENTS,
            "addresses": ADDRESSES,
            "seconds": SURGE_TIME.as_secs_f64(),
        },
        "first_attempt_success": answered.len() as f64 / replies.len().max(1) as f64,
        "answered": answered.len(),
        "cookie_replies": cookies,
        "no_reply": nothing,
        "p50_ms": ms(percentile(&answered, 50.0)),
        "p99_ms": ms(percentile(&answered, 99.0)),
        "max_ms": ms(answered.last().copied().unwrap_or_default()),
        "wall_seconds": wall,
        "responder_cpu_seconds": cpu.values().sum::<f64>(),
        "responder_cpu_seconds_by_thread": cpu,
        "responses_sent": stat("handshake_responses_sent"),
        "cookie_replies_sent": stat("cookie_replies_sent"),
    });
    let md = format!(
        "# Login surge (`cargo test --test surge`)\n\n\
         Machine: {model}, {cores} cores, kernel {kernel}; commit {commit}, {date}.\n\n\
         {CLIENTS} clients with real keys, {per} behind each of {ADDRESSES} addresses, each sent \
         one initiation, all within {secs:.1} s ({rate:.0} per second).\n\n\
         | figure | value |\n|---|---|\n\
         | answered on first attempt | {ok} of {CLIENTS} |\n\
         | ... got a cookie reply instead / nothing | {cookies} / {nothing} |\n\
         | handshake time p50 / p99 / max | {p50:.1} / {p99:.1} / {max:.1} ms |\n\
         | responder CPU (all threads) | {cpu:.2} s, {per_hs:.0} µs per handshake |\n\
         | ... by thread | {threads} |\n",
        model = machine.cpu,
        cores = machine.cores,
        kernel = machine.kernel,
        commit = machine.commit,
        date = machine.date,
        per = CLIENTS / ADDRESSES,
        secs = SURGE_TIME.as_secs_f64(),
        rate = CLIENTS as f64 / SURGE_TIME.as_secs_f64(),
        ok = answered.len(),
        p50 = ms(percentile(&answered, 50.0)),
        p99 = ms(percentile(&answered, 99.0)),
        max = ms(answered.last().copied().unwrap_or_default()),
        cpu = cpu.values().sum::<f64>(),
        per_hs = cpu.values().sum::<f64>() * 1e6 / answered.len().max(1) as f64,
        threads = by_thread_text(&cpu),
    );
    write_results("surge", &machine, &report, &md);

    assert_eq!(
        answered.len(),
        CLIENTS,
        "every client of the surge must be answered on its first attempt: {report:#}\nlog:\n{}",
        rig.log()
    );
    assert_eq!(stat("cookie_replies_sent"), 0, "{report:#}");
}
