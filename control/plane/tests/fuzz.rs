//! Property campaigns over the handshake plane's input paths (see `testbed::fuzz`): the UAPI
//! `set=1` parser on lines built from its keys with valid and mangled values, and the
//! admission rules on arbitrary sequences of offers, failures, takes and time.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use plane::admission::{Admission, SourceKey};
use plane::uapi::protocol::parse_set;
use proptest::prelude::*;
use testbed::fuzz::campaign;

const KEYS: [&str; 14] = [
    "private_key",
    "listen_port",
    "fwmark",
    "replace_peers",
    "public_key",
    "remove",
    "update_only",
    "preshared_key",
    "endpoint",
    "persistent_keepalive_interval",
    "replace_allowed_ips",
    "allowed_ip",
    "protocol_version",
    "bogus",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{64}",
        "[0-9a-fA-Fxz]{0,70}",
        "(true|false|0|1|yes)",
        "[0-9]{1,6}",
        "-?[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}/[0-9]{1,2}",
        "\\[?[0-9a-f:]{2,20}\\]?(:[0-9]{1,5})?(/[0-9]{1,3})?",
        "[0-9.]{7,15}:[0-9]{1,6}",
        ".{0,24}",
    ]
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        9 => (0..KEYS.len(), value()).prop_map(|(k, v)| format!("{}={v}", KEYS[k])),
        1 => ".{0,40}",
    ]
}

#[test]
fn fuzz_uapi_set_parser() {
    let body = proptest::collection::vec(line(), 0..12);
    campaign("uapi_set", 150_000, body, |lines| {
        match parse_set(lines.iter().map(String::as_str)) {
            Ok(update) => {
                // Every peer it reports came from a public_key line.
                let keys = lines
                    .iter()
                    .filter(|l| l.starts_with("public_key="))
                    .count();
                prop_assert!(update.peers.len() <= keys);
            }
            Err(e) => {
                // A secret's value is never quoted back (errors are logged).
                let text = e.to_string();
                for l in &lines {
                    for secret in ["private_key=", "preshared_key="] {
                        if let Some(v) = l.strip_prefix(secret).filter(|v| v.len() >= 8) {
                            prop_assert!(!text.contains(v), "{text} quotes {v}");
                        }
                    }
                }
                prop_assert!(e.line >= 1 && e.line <= lines.len());
            }
        }
        Ok(())
    });
}

/// One step of an admission sequence.
#[derive(Debug, Clone)]
enum Step {
    Offer { source: u8, proven: bool, print: u8 },
    Fail { source: u8, proven: bool },
    Take(usize),
    Wait(u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (any::<u8>(), any::<bool>(), any::<u8>())
            .prop_map(|(source, proven, print)| Step::Offer { source, proven, print }),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(source, proven)| Step::Fail { source, proven }),
        2 => (0usize..20).prop_map(Step::Take),
        1 => any::<u16>().prop_map(Step::Wait),
    ]
}

#[test]
fn fuzz_admission() {
    let steps = proptest::collection::vec(step(), 1..60);
    campaign("admission", 60_000, steps, |steps| {
        let (backlog, proven_backlog) = (16, 8);
        let mut now = Instant::now();
        let mut gate: Admission<u32> = Admission::new(backlog, proven_backlog, now);
        let (mut queued, mut taken) = (HashSet::new(), HashSet::new());
        for (n, step) in steps.into_iter().enumerate() {
            let job = n as u32;
            let key = |s: u8| SourceKey::of(SocketAddr::from(([10, 0, 0, s % 16], 1)));
            match step {
                Step::Offer {
                    source,
                    proven,
                    print,
                } => {
                    let fingerprint = [print; 32];
                    if gate
                        .offer(key(source), proven, &fingerprint, job, now)
                        .is_ok()
                    {
                        queued.insert(job);
                    }
                }
                Step::Fail { source, proven } => gate.charge_failure(key(source), proven, now),
                Step::Take(room) => {
                    let jobs = gate.take(room);
                    prop_assert!(jobs.len() <= room);
                    for j in jobs {
                        // Each admitted job comes out once, and only admitted ones do.
                        prop_assert!(queued.remove(&j), "job {j} out twice or never queued");
                        taken.insert(j);
                    }
                }
                Step::Wait(ms) => now += Duration::from_millis(u64::from(ms)),
            }
            prop_assert_eq!(gate.waiting(), queued.len());
            prop_assert!(gate.waiting() <= backlog + proven_backlog);
            prop_assert!(gate.waiting_unproven() <= backlog);
        }
        // Nothing admitted is lost: the rest comes out.
        let rest = gate.take(usize::MAX);
        prop_assert_eq!(rest.len(), queued.len());
        Ok(())
    });
}
