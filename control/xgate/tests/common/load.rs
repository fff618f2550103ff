//! Helpers for the load tests (flood, surge): a namespace of sender addresses, the
//! responder's CPU by thread, latency percentiles, and where reports go.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use proto::PrivateKey;
use testbed::flood::FirstReply;
use testbed::machine::Machine;
use testbed::{veth, Netns};

use super::Rig;

/// A namespace joined to the rig's server by a veth pair (server side `10.<net>.0.1/16`,
/// sender side `10.<net>.0.2/16`), with `addresses` on the sender side as well.
pub fn senders(rig: &Rig, name: &str, net: u8, addresses: &[Ipv4Addr]) -> Netns {
    let ns = Netns::create(&format!("xt-{}-{name}", rig.tag)).expect("sender namespace");
    let (server_if, sender_if) = (format!("xt{name}s"), format!("xt{name}c"));
    veth(
        &rig.server.ns,
        &server_if,
        &format!("10.{net}.0.1/16"),
        &ns,
        &sender_if,
        &format!("10.{net}.0.2/16"),
    )
    .expect("veth");
    for a in addresses {
        ns.ip(&["addr", "add", &format!("{a}/16"), "dev", &sender_if])
            .expect("source address");
    }
    ns
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `n` fresh client keys.
pub fn new_keys(n: usize) -> Vec<PrivateKey> {
    (0..n)
        .map(|_| PrivateKey::generate(&mut rand_core::OsRng))
        .collect()
}

/// Lists `keys` as peers in the rig's config, peer i with tunnel address 10.77.(1 + i/250).(1 + i%250).
pub fn add_peers<'a>(rig: &mut Rig, keys: impl IntoIterator<Item = &'a PrivateKey>) {
    for (i, key) in keys.into_iter().enumerate() {
        let address = format!("10.77.{}.{}/32", 1 + i / 250, 1 + i % 250);
        rig.config =
            std::mem::take(&mut rig.config).peer(&key.public_key().to_base64(), &[&address]);
    }
}

/// The running xgate's process id.
pub fn xgate_pid(rig: &mut Rig) -> u32 {
    rig.server.pid().expect("xgate pid")
}

/// Writes a run's report: `<name>-<date>-<commit>.json` and `<name>.md` in bench-results/.
pub fn write_results(name: &str, machine: &Machine, report: &serde_json::Value, markdown: &str) {
    let dir = results_dir();
    let json = serde_json::to_string_pretty(report).expect("json");
    std::fs::write(
        dir.join(format!("{name}-{}-{}.json", machine.date, machine.commit)),
        json,
    )
    .expect("json written");
    std::fs::write(dir.join(format!("{name}.md")), markdown).expect("markdown written");
}

/// The handshake times of the logins answered on their first attempt (sorted), and how many
/// got a cookie reply or nothing.
pub fn first_attempts(replies: &[FirstReply]) -> (Vec<Duration>, usize, usize) {
    let mut answered: Vec<Duration> = replies
        .iter()
        .filter_map(|r| match r {
            FirstReply::Answered(d) => Some(*d),
            _ => None,
        })
        .collect();
    answered.sort();
    let cookies = replies
        .iter()
        .filter(|r| matches!(r, FirstReply::CookieReply(_)))
        .count();
    let nothing = replies
        .iter()
        .filter(|r| **r == FirstReply::Nothing)
        .count();
    (answered, cookies, nothing)
}

/// The repository's bench-results/ directory.
pub fn results_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench-results")
}

/// "name 1.2 s, ..." for the threads that used at least 0.05 s.
pub fn by_thread_text(cpu: &BTreeMap<String, f64>) -> String {
    cpu.iter()
        .filter(|(_, s)| **s >= 0.05)
        .map(|(k, s)| format!("{k} {s:.1} s"))
        .collect::<Vec<_>>()
        .join(", ")
}
