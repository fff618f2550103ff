//! Helpers for the tests of several nodes on one PostgreSQL registry.

use std::time::{Duration, Instant};

use serde_json::json;
use testbed::{config, Implementation};

use super::api::{call, json_of};
use super::Rig;

/// The cluster's key: every node has the same private key file.
pub fn cluster_key() -> proto::PrivateKey {
    static KEY: std::sync::OnceLock<proto::PrivateKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| proto::PrivateKey::generate(&mut rand_core::OsRng))
        .clone()
}

/// A node, not started: xgate with `clients` clients of `client`'s kind (client n has the
/// tunnel address .n+2), the cluster's key, the registry at `url`, the API on.
pub fn configure(tag: &str, url: &str, client: Implementation, clients: usize) -> Rig {
    let mut rig = Rig::new(tag);
    rig.server_key = cluster_key();
    for _ in 0..clients {
        rig.add_client(client);
    }
    rig.use_registry();
    if let Some(r) = rig.config.registry.as_mut() {
        r.path = None;
        r.url = Some(url.into());
    }
    let api = rig.config.api.get_or_insert_with(Default::default);
    api.endpoint = Some(format!("vpn.example:{}", rig.port));
    rig.config.pools.push(config::Pool {
        ipv4: Some("10.77.0.0/16".into()),
        ipv6: Some("fd77::/64".into()),
        ..config::Pool::default()
    });
    rig
}

/// A started node (see `configure`) and its API token.
pub fn node(tag: &str, url: &str, client: Implementation, clients: usize) -> (Rig, String) {
    let mut rig = configure(tag, url, client, clients);
    rig.start_xgate();
    let token = rig.server.api_token().expect("token").trim().to_string();
    (rig, token)
}

/// Registers `key` through `rig`'s API; returns the peer's id.
pub fn register(rig: &Rig, token: &str, name: &str, key: &str) -> i64 {
    let body = json!({ "name": name, "public_key": key });
    let (status, text) = call(rig, "POST", "/api/v1/peers", Some(token), Some(body));
    assert_eq!(status, 201, "{text}");
    json_of(&text)["peer"]["id"].as_i64().expect("id")
}

/// How long until `rig`'s interface has (or, with `present` false, lacks) peer `key`.
pub fn until_interface(rig: &Rig, key: &str, present: bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if rig.dump().iter().any(|p| p.public_key == key) == present {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "peer {key} never {}: {}",
        if present { "arrived" } else { "left" },
        rig.log()
    );
}

/// A peer key that is no client's: only its registration matters.
pub fn some_key(node: usize, n: usize) -> String {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&(n as u64).to_le_bytes());
    key[8] = node as u8 + 1;
    proto::PublicKey(key).to_base64()
}

/// Peers on `rig`'s interface.
pub fn interface_peers(rig: &Rig) -> usize {
    rig.dump().len()
}

/// Waits until the registry at `url` holds `n` recorded sessions.
pub fn until_sessions_recorded(pg: &testbed::postgres::TempPostgres, url: &str, n: usize) {
    let until = Instant::now() + Duration::from_secs(10);
    while pg
        .scalar(url, "SELECT count(*) FROM sessions")
        .ok()
        .and_then(|t| t.parse::<usize>().ok())
        != Some(n)
    {
        assert!(Instant::now() < until, "{n} sessions never recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
}
