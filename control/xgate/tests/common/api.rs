//! Helpers for the tests that drive xgate's HTTP API.

use std::time::Duration;

use serde_json::Value;
use testbed::{config, Implementation};

use super::Rig;

/// Sends one request from inside the server's namespace; returns status and body.
pub fn call(
    rig: &Rig,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let url = format!("http://127.0.0.1:9180{path}");
    let (method, token) = (method.to_string(), token.map(String::from));
    rig.server
        .ns
        .enter(move || {
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(20))
                .build();
            let mut req = agent.request(&method, &url);
            if let Some(t) = token {
                req = req.set("Authorization", &format!("Bearer {t}"));
            }
            let result = match body {
                Some(Value::String(raw)) => req
                    .set("Content-Type", "application/json")
                    .send_string(&raw),
                Some(v) => req.send_json(v),
                None => req.call(),
            };
            match result {
                Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
                Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
                Err(e) => (0, e.to_string()),
            }
        })
        .expect("request from the server namespace")
}

/// Every peer the registry lists, page by page.
pub fn all_peers(rig: &Rig, token: &str) -> Vec<Value> {
    let mut peers = Vec::new();
    let mut after = 0;
    loop {
        let path = format!("/api/v1/peers?limit=1000&after={after}");
        let (status, text) = call(rig, "GET", &path, Some(token), None);
        assert_eq!(status, 200, "{text}");
        let page = json_of(&text);
        peers.extend(page["peers"].as_array().cloned().unwrap_or_default());
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => return peers,
        }
    }
}

/// Registers client `i` through the API as `name`, points it at the server (keepalive
/// `keepalive`) and waits for its first ping reply.
pub fn register_and_connect(rig: &Rig, token: &str, i: usize, name: &str, keepalive: Option<u16>) {
    let key = rig.clients[i].peer.public_key.to_base64();
    let body = serde_json::json!({ "name": name, "public_key": key });
    let (status, text) = call(rig, "POST", "/api/v1/peers", Some(token), Some(body));
    assert_eq!(status, 201, "{text}");
    rig.connect(i, keepalive);
    assert!(
        rig.ping_until_reply(i, "10.77.0.1", Duration::from_secs(10)),
        "no tunnel for {name}: {}",
        rig.log()
    );
}

pub fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The error message of an error answer (which must be exactly `{"error": "..."}`).
pub fn error_of(text: &str) -> String {
    let v = json_of(text);
    let obj = v.as_object().expect("an object");
    assert_eq!(obj.len(), 1, "an error carries its message only: {text}");
    obj["error"].as_str().expect("error string").to_string()
}

/// A pool of six addresses (.2 to .6 usable beside the server's .1), small enough to run out.
pub const SMALL_POOL: &str = "10.77.0.0/29";

/// A rig whose xgate keeps peers in a registry with an IPv4 pool `v4_pool` (and fd77::/64)
/// and serves the API; returns it with the first API token xgate made.
pub fn start_with_api(tag: &str, v4_pool: &str) -> (Rig, String) {
    start_with_api_and(tag, v4_pool, |_| {})
}

/// The same, with `prepare` run on the rig's settings before xgate starts.
pub fn start_with_api_and(
    tag: &str,
    v4_pool: &str,
    prepare: impl FnOnce(&mut Rig),
) -> (Rig, String) {
    let mut rig = Rig::new(tag);
    rig.add_client(Implementation::WireguardGo);
    rig.use_registry();
    let api = rig.config.api.get_or_insert_with(Default::default);
    // The endpoint in client files is client 1's view of the server.
    api.endpoint = Some(format!("{}:{}", rig.clients[0].server_underlay, rig.port));
    api.persistent_keepalive = Some(5);
    rig.config.pools.push(config::Pool {
        ipv4: Some(v4_pool.into()),
        ipv6: Some("fd77::/64".into()),
        ..config::Pool::default()
    });
    // Group "sales" has a policy of its own (full tunnel, DNS, MTU); other groups take [api]'s.
    rig.config.groups.push(config::Group {
        name: "sales".into(),
        tunnel: Some("full".into()),
        dns: vec!["10.77.0.53".into()],
        mtu: Some(1380),
        ..config::Group::default()
    });
    // Group "eng" exists with no policy of its own: its peers' files take [api]'s.
    rig.config.groups.push(config::Group {
        name: "eng".into(),
        ..config::Group::default()
    });
    prepare(&mut rig);
    rig.start_xgate();
    // xgate made a first token and kept it beside the hash file.
    let secret = rig.server.api_token().expect("token secret").to_string();
    let tokens = testbed::config::registry_files(&rig.dir).1;
    let hashes = std::fs::read_to_string(&tokens).expect("token hashes");
    assert!(
        !hashes.contains(secret.trim()),
        "the token file holds hashes, not tokens"
    );
    (rig, secret.trim().to_string())
}

/// Every route the API serves besides the event stream, as (method, path): the OpenAPI
/// description must list exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/peers"),
    ("get", "/api/v1/peers"),
    ("post", "/api/v1/peers/bulk"),
    ("get", "/api/v1/peers/{id}"),
    ("patch", "/api/v1/peers/{id}"),
    ("delete", "/api/v1/peers/{id}"),
    ("post", "/api/v1/peers/{id}/revoke"),
    ("get", "/api/v1/peers/{id}/config"),
    ("post", "/api/v1/ike/users"),
    ("get", "/api/v1/ike/users"),
    ("delete", "/api/v1/ike/users/{id}"),
    ("get", "/api/v1/ike/users/{id}/config"),
    ("get", "/api/v1/ike/users/{id}/profile"),
    ("get", "/api/v1/ike/sas"),
    ("get", "/api/v1/status"),
    ("get", "/api/v1/cluster"),
    ("post", "/api/v1/cluster/take-over"),
    ("get", "/api/v1/audit"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];
