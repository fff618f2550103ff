//! Twenty crashes: xgate killed outright (SIGKILL) at a random moment while a client's traffic
//! flows and registrations stream in through the API, then started again, twenty times over.
//! Every registration the API acknowledged is there at the end, every stored peer is whole,
//! and the client is served again.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::api::{all_peers, call, register_and_connect};
use common::Rig;
use proto::PrivateKey;
use rand_core::RngCore;
use serde_json::json;
use testbed::Implementation;

const CYCLES: usize = 20;

#[test]
fn twenty_sigkills_under_traffic_and_api_writes_lose_nothing_acknowledged() {
    let mut rig = Rig::new("kill20");
    rig.add_client(Implementation::WireguardGo);
    rig.use_registry();
    rig.start_xgate();
    let token = rig.server.api_token().expect("token").to_string();
    register_and_connect(&rig, &token, 0, "client", Some(1));

    let acknowledged = Mutex::new(vec!["client".to_string()]);
    for cycle in 0..CYCLES {
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let rig = &rig;
            // Registrations until the daemon dies under them.
            s.spawn(|| {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) && i > 0 {
                        break;
                    }
                    let name = format!("c{cycle}-{i}");
                    let key = PrivateKey::generate(&mut rand_core::OsRng).public_key();
                    let body = json!({ "name": name, "public_key": key.to_base64() });
                    match call(rig, "POST", "/api/v1/peers", Some(&token), Some(body)) {
                        (201, _) => acknowledged.lock().expect("list").push(name),
                        (0, _) => break, // no answer: the daemon is gone
                        _ => {}
                    }
                }
            });
            // Traffic through the tunnel meanwhile.
            let ns = rig.clients[0].ns.name().to_string();
            s.spawn(move || {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "exec", &ns, "ping", "-q", "-i", "0.05", "-c", "10"])
                    .args(["-W", "1", "10.77.0.1"])
                    .output();
            });
            let wait = 150 + rand_core::OsRng.next_u32() % 600;
            std::thread::sleep(Duration::from_millis(u64::from(wait)));
            let pid = rig.server.pid().expect("xgate's pid");
            // SAFETY: signals the daemon this test started, by its PID.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            stop.store(true, Ordering::Relaxed);
        });
        rig.xgate().daemon.kill_hard(); // reaps it
        rig.start_xgate();
    }

    // Every acknowledged registration survived, and every stored peer is whole.
    let peers = all_peers(&rig, &token);
    let stored: Vec<&str> = peers.iter().filter_map(|p| p["name"].as_str()).collect();
    let acknowledged = acknowledged.into_inner().expect("list");
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|n| !stored.contains(&n.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged but lost after {CYCLES} crashes, such as {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(
        acknowledged.len() > CYCLES,
        "too few registrations to mean anything: {}",
        acknowledged.len()
    );
    for p in &peers {
        assert!(
            p["addresses"].as_array().is_some_and(|a| !a.is_empty()),
            "a peer stored without its addresses: {p}"
        );
    }
    eprintln!(
        "{CYCLES} SIGKILLs: {} registrations acknowledged, {} stored (some stored but killed \
         before their answer)",
        acknowledged.len(),
        stored.len()
    );
    // The client is served again, on its own (its next handshake).
    assert!(
        rig.ping_until_reply(0, "10.77.0.1", Duration::from_secs(20)),
        "the client is not served after the crashes: {}",
        rig.log()
    );
}
