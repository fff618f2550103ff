//! Nothing acknowledged is lost: peers are created concurrently through the API while the
//! daemon is killed with SIGKILL part-way; after a restart every peer whose creation was
//! answered 2xx is there with the same id and addresses, every address is unique, and no
//! peer is half-written.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::api::{all_peers, start_with_api};
use serde_json::{json, Value};

const PEERS: usize = 1000;
const THREADS: usize = 16;

#[test]
fn acknowledged_creations_survive_sigkill() {
    let (mut rig, token) = start_with_api("apik", "10.77.0.0/16");
    // Kill after a varying number of answers, between 10% and 60% of the way, so the kill
    // lands mid-stream (checked below) at a different point each run.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as usize);
    let kill_after = PEERS / 10 + nanos % (PEERS / 2);

    let acked: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
    let answered = Arc::new(AtomicUsize::new(0));
    let url = "http://127.0.0.1:9180/api/v1/peers".to_string();
    let mut running = rig.server.take_xgate().expect("running");
    let ns = &rig.server.ns;
    std::thread::scope(|outer| {
        let (acked, counter, token) = (acked.clone(), answered.clone(), token.clone());
        let creators = outer.spawn(move || {
            ns.enter(move || {
                // Threads spawned here inherit the namespace.
                std::thread::scope(|s| {
                    for t in 0..THREADS {
                        let (acked, counter, token, url) = (&acked, &counter, &token, &url);
                        s.spawn(move || {
                            let agent = ureq::AgentBuilder::new()
                                .timeout(Duration::from_secs(10))
                                .build();
                            for i in (t..PEERS).step_by(THREADS) {
                                let name = format!("user-{i}");
                                let sent = agent
                                    .post(url)
                                    .set("Authorization", &format!("Bearer {token}"))
                                    .send_json(json!({ "name": name }));
                                counter.fetch_add(1, Ordering::Relaxed);
                                let Ok(r) = sent else { continue };
                                if let Ok(v) = r.into_json::<Value>() {
                                    if let Ok(mut m) = acked.lock() {
                                        m.insert(name, v["peer"].clone());
                                    }
                                }
                            }
                        });
                    }
                });
            })
        });
        assert!(
            testbed::wait_until(Duration::from_secs(120), || {
                answered.load(Ordering::Relaxed) >= kill_after
            }),
            "creations stalled before the kill"
        );
        running.daemon.kill_hard();
        creators
            .join()
            .expect("creator thread")
            .expect("creators ran in the namespace");
    });
    let acked = acked.lock().expect("acked").clone();
    assert!(
        !acked.is_empty() && acked.len() < PEERS,
        "the kill was not mid-stream: {} of {PEERS} acknowledged",
        acked.len()
    );

    rig.start_xgate();
    let found = all_peers(&rig, &token);
    let by_name: HashMap<String, &Value> = found
        .iter()
        .map(|p| (p["name"].as_str().unwrap_or_default().to_string(), p))
        .collect();
    for (name, peer) in &acked {
        let stored = by_name
            .get(name)
            .unwrap_or_else(|| panic!("{name} was acknowledged and is gone"));
        assert_eq!(stored["id"], peer["id"], "{name}");
        assert_eq!(stored["addresses"], peer["addresses"], "{name}");
    }
    let mut seen = HashSet::new();
    for p in &found {
        let addrs = p["addresses"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            addrs.len(),
            2,
            "half-written peer (one address per family expected): {p}"
        );
        for a in addrs {
            assert!(seen.insert(a.to_string()), "address {a} held twice");
        }
    }
    eprintln!(
        "killed after {kill_after} answers: {} acknowledged, {} stored",
        acked.len(),
        found.len()
    );
}
