//! The HTTP API against a running xgate: every peer endpoint for success and for bad input,
//! tokens, and a peer created through the API connecting with a real `wireguard-go` client
//! configured from the file the API returned, then cut off when revoked.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::api::{call, error_of, json_of, start_with_api, SMALL_POOL};
use common::{xgate_bin, Rig};
use serde_json::{json, Value};
use testbed::{ping, wait_until};

#[test]
fn without_a_valid_token_nothing_is_answered() {
    let (rig, token) = start_with_api("apia", SMALL_POOL);
    for t in [None, Some("wrong"), Some("")] {
        let (status, body) = call(&rig, "GET", "/api/v1/peers", t, None);
        assert_eq!(status, 401, "{t:?}: {body}");
        // The message, and the interface served (for the CLI to find its token).
        let refused = json_of(&body);
        assert!(
            refused["error"]
                .as_str()
                .is_some_and(|e| e.contains("bearer token")),
            "{body}"
        );
        assert_eq!(refused["interface"], json!(rig.iface()), "{body}");
    }
    let (status, body) = call(&rig, "GET", "/api/v1/peers/1", Some("nope"), None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = call(&rig, "GET", "/api/v1/nothing", Some(&token), None);
    assert_eq!(status, 404, "{body}");
    error_of(&body);
    let (status, body) = call(&rig, "GET", "/api/v1/peers", Some(&token), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["peers"], json!([]));

    // The description is public, and it and the router agree: every route it lists is
    // served (not the fallback), and it lists every route there is.
    let (status, body) = call(&rig, "GET", "/openapi.json", None, None);
    assert_eq!(status, 200, "{body}");
    let doc = json_of(&body);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    let routes = common::api::ROUTES;
    let documented: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|ops| {
            ops.as_object()
                .map_or(0, |o| o.keys().filter(|k| *k != "parameters").count())
        })
        .sum();
    assert_eq!(
        documented,
        routes.len() + 1,
        "the events stream plus the routes here"
    );
    for (method, path) in routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} undocumented"
        );
        let concrete = path.replace("{id}", "999999");
        let (status, body) = call(&rig, &method.to_uppercase(), &concrete, Some(&token), None);
        assert!(
            status != 405 && !body.contains("no such endpoint"),
            "{method} {path} documented but not served ({status})"
        );
    }
    assert!(doc["paths"]["/api/v1/events"]["get"].is_object());
}

/// A peer the tests below work on: alice, in group eng, with a preshared key and a route.
const ALICE_KEY: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";

#[test]
fn every_peer_endpoint_answers_and_refuses_bad_input() {
    let (rig, token) = start_with_api("apib", SMALL_POOL);
    let t = Some(token.as_str());
    let id = create_alice(&rig, t);
    // Bad input, each with a message naming what was wrong.
    for (method, path, body, want, needle) in bad_requests(id) {
        let (status, text) = call(&rig, method, &path, t, body.clone());
        assert_eq!(status, want, "{method} {path} {body:?}: {text}");
        let msg = error_of(&text);
        assert!(
            msg.contains(needle),
            "{method} {path}: {msg:?} lacks {needle:?}"
        );
    }

    bulk_creation_respects_the_pool(&rig, t);
    listing_pages_and_filters(&rig, t);
    get_change_config_revoke_delete(&rig, t, id);
}

/// Creates alice; returns her id.
fn create_alice(rig: &Rig, t: Option<&str>) -> i64 {
    let key = ALICE_KEY;
    let (status, body) = call(
        rig,
        "POST",
        "/api/v1/peers",
        t,
        Some(json!({"name": "alice", "group": "eng", "public_key": key,
                    "preshared_key": true, "allowed_ips": ["192.168.30.0/24"]})),
    );
    assert_eq!(status, 201, "{body}");
    let created = json_of(&body);
    let alice = &created["peer"];
    assert_eq!(alice["addresses"], json!(["10.77.0.2", "fd77::2"]));
    assert_eq!(alice["has_preshared_key"], json!(true));
    assert!(
        created.get("config").is_none(),
        "no private key to hand out: {body}"
    );
    alice["id"].as_i64().expect("id")
}

/// Requests that must be refused, with the status and a word the message must contain
/// (alice is peer `id`).
fn bad_requests(id: i64) -> Vec<(&'static str, String, Option<Value>, u16, &'static str)> {
    let key = ALICE_KEY;
    vec![
        (
            "POST",
            "/api/v1/peers".into(),
            Some(json!("{\"name\": ")),
            400,
            "malformed",
        ),
        (
            "POST",
            "/api/v1/peers".into(),
            Some(json!({"nam": "x"})),
            422,
            "malformed",
        ),
        (
            "POST",
            "/api/v1/peers".into(),
            Some(json!({"name": "dup", "public_key": key})),
            409,
            "exists already",
        ),
        (
            "POST",
            "/api/v1/peers".into(),
            Some(json!({"name": "k", "public_key": "short"})),
            400,
            "public_key",
        ),
        (
            "POST",
            "/api/v1/peers".into(),
            Some(json!({"name": "p", "allowed_ips": ["10.1.2.3/99"]})),
            400,
            "allowed_ips[0]",
        ),
        (
            "POST",
            "/api/v1/peers".into(),
            Some(json!({"name": "", "group": "eng"})),
            400,
            "name",
        ),
        (
            "POST",
            "/api/v1/peers".into(),
            Some(json!({"name": "g", "group": "no spaces"})),
            400,
            "group",
        ),
        (
            "GET",
            "/api/v1/peers/999".into(),
            None,
            404,
            "no peer with id 999",
        ),
        (
            "GET",
            "/api/v1/peers/abc".into(),
            None,
            404,
            "give a peer's id or name",
        ),
        (
            "POST",
            "/api/v1/peers".into(),
            Some(json!({"name": "alice"})),
            409,
            "a peer named \"alice\" exists already (id",
        ),
        (
            "POST",
            "/api/v1/peers".into(),
            Some(json!({"name": "g", "group": "egn"})),
            400,
            "no group \"egn\" here; the groups are default, eng, sales",
        ),
        (
            "PATCH",
            "/api/v1/peers/999".into(),
            Some(json!({"name": "x"})),
            404,
            "999",
        ),
        (
            "PATCH",
            format!("/api/v1/peers/{id}"),
            Some(json!({"allowed_ips": ["nope"]})),
            400,
            "allowed_ips[0]",
        ),
        (
            "POST",
            "/api/v1/peers".into(),
            Some(json!({"name": "p", "allowed_ips": ["10.77.0.0/24"]})),
            409,
            "overlaps address pool",
        ),
        ("POST", "/api/v1/peers/999/revoke".into(), None, 404, "999"),
        ("DELETE", "/api/v1/peers/999".into(), None, 404, "999"),
        ("GET", "/api/v1/peers/999/config".into(), None, 404, "999"),
        ("GET", "/api/v1/peers?limit=0".into(), None, 400, "limit"),
        (
            "GET",
            format!("/api/v1/peers/{id}/config?format=gif"),
            None,
            400,
            "format",
        ),
        (
            "POST",
            "/api/v1/peers/bulk".into(),
            Some(json!({"peers": []})),
            400,
            "1 to 10000",
        ),
    ]
}

/// The pool has .2 to .6: alice holds .2; six more cannot fit, and none is created; four
/// do, with group sales' policy in their files.
fn bulk_creation_respects_the_pool(rig: &Rig, t: Option<&str>) {
    let six: Vec<Value> = (0..6)
        .map(|i| json!({"name": format!("bulk-{i}")}))
        .collect();
    let (status, text) = call(
        rig,
        "POST",
        "/api/v1/peers/bulk",
        t,
        Some(json!({"peers": six})),
    );
    assert_eq!(status, 409, "{text}");
    assert!(error_of(&text).contains("exhausted"), "{text}");
    let four: Vec<Value> = (0..4)
        .map(|i| json!({"name": format!("bulk-{i}"), "group": "sales"}))
        .collect();
    let (status, text) = call(
        rig,
        "POST",
        "/api/v1/peers/bulk",
        t,
        Some(json!({"peers": four})),
    );
    assert_eq!(status, 201, "{text}");
    let bulk = json_of(&text);
    assert_eq!(bulk["peers"].as_array().map(Vec::len), Some(4));
    let sales = bulk["peers"][0]["config"].as_str().unwrap_or_default();
    assert!(sales.contains("PrivateKey = "), "{sales}");
    for line in [
        "AllowedIPs = 0.0.0.0/0, ::/0",
        "DNS = 10.77.0.53",
        "MTU = 1380",
        "PersistentKeepalive = 5",
    ] {
        assert!(sales.contains(line), "group sales' policy: {line}\n{sales}");
    }
}

/// Listing: pages and the group filter.
fn listing_pages_and_filters(rig: &Rig, t: Option<&str>) {
    let (_, text) = call(rig, "GET", "/api/v1/peers?limit=2", t, None);
    let page = json_of(&text);
    assert_eq!(page["peers"].as_array().map(Vec::len), Some(2));
    let after = page["next_after"].as_i64().expect("next page");
    let (_, text) = call(
        rig,
        "GET",
        &format!("/api/v1/peers?limit=10&after={after}"),
        t,
        None,
    );
    assert_eq!(json_of(&text)["peers"].as_array().map(Vec::len), Some(3));
    let (_, text) = call(rig, "GET", "/api/v1/peers?group=eng", t, None);
    assert_eq!(json_of(&text)["peers"][0]["name"], json!("alice"));
}

/// Get, change, config, revoke, delete alice.
fn get_change_config_revoke_delete(rig: &Rig, t: Option<&str>, id: i64) {
    let key = ALICE_KEY;
    let (status, text) = call(rig, "GET", &format!("/api/v1/peers/{id}"), t, None);
    assert_eq!(
        (status, json_of(&text)["name"].clone()),
        (200, json!("alice"))
    );
    let (status, text) = call(
        rig,
        "PATCH",
        &format!("/api/v1/peers/{id}"),
        t,
        Some(json!({"name": "alice-2"})),
    );
    assert_eq!(
        (status, json_of(&text)["name"].clone()),
        (200, json!("alice-2"))
    );
    let (status, text) = call(rig, "GET", &format!("/api/v1/peers/{id}/config"), t, None);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("PrivateKey = <your private key>") && text.contains("PresharedKey = "),
        "{text}"
    );
    assert!(
        text.contains("AllowedIPs = 10.77.0.0/29, fd77::/64") && !text.contains("DNS ="),
        "group eng has no policy of its own: [api]'s split tunnel, no DNS\n{text}"
    );
    let path = format!("/api/v1/peers/{id}/config?format=terminal");
    // A QR code of a file without its private key would not connect: refused, saying why.
    let (status, refused) = call(rig, "GET", &path, t, None);
    assert_eq!(status, 409, "{refused}");
    assert!(error_of(&refused).contains("placeholder"), "{refused}");
    let dump = rig.dump();
    assert!(
        dump.iter().any(|p| p.public_key == key),
        "alice reached the interface: {dump:?}"
    );
    let (status, text) = call(rig, "POST", &format!("/api/v1/peers/{id}/revoke"), t, None);
    assert_eq!(status, 200, "{text}");
    assert!(json_of(&text)["revoked_at"].as_u64().is_some());
    assert!(
        !rig.dump().iter().any(|p| p.public_key == key),
        "revoked peer still on the interface"
    );
    let (status, text) = call(rig, "GET", &format!("/api/v1/peers/{id}/config"), t, None);
    assert_eq!(status, 410, "{text}");
    let (status, _) = call(rig, "DELETE", &format!("/api/v1/peers/{id}"), t, None);
    assert_eq!(status, 204);
    let (status, _) = call(rig, "GET", &format!("/api/v1/peers/{id}"), t, None);
    assert_eq!(status, 404);
}

#[test]
fn a_peer_made_by_the_api_connects_with_its_config_and_is_cut_off_when_revoked() {
    let (rig, token) = start_with_api("apic", SMALL_POOL);
    let t = Some(token.as_str());
    let (status, text) = call(
        &rig,
        "POST",
        "/api/v1/peers",
        t,
        Some(json!({"name": "laptop"})),
    );
    assert_eq!(status, 201, "{text}");
    let created = json_of(&text);
    let config = created["config"]
        .as_str()
        .expect("config with the new private key");
    let id = created["peer"]["id"].as_i64().expect("id");

    // The client takes the file as wg-quick would: the WireGuard part through `wg setconf`.
    let c = &rig.clients[0];
    let file = rig.dir.join(format!("{}.conf", c.peer.iface));
    std::fs::write(&file, config).expect("config file");
    let stripped =
        c.ns.run("wg-quick", &["strip", file.to_str().expect("path")])
            .expect("wg-quick strip");
    let wg_file = rig.dir.join("client.wg");
    std::fs::write(&wg_file, stripped).expect("stripped file");
    c.ns.run(
        "wg",
        &["setconf", &c.peer.iface, wg_file.to_str().expect("path")],
    )
    .expect("wg setconf");
    // Its Address line is the address the rig gave this client.
    assert!(
        config.contains(&format!("Address = {}/32, {}/128", c.v4, c.v6)),
        "{config}"
    );
    assert!(
        rig.ping_until_reply(0, "10.77.0.1", Duration::from_secs(10)),
        "no tunnel with the API's config: {}",
        rig.log()
    );
    // The tunnel's coming up reaches the registry (written in batches every 2 s).
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let recorded = wait_until(Duration::from_secs(6), || {
        let (_, text) = call(&rig, "GET", &format!("/api/v1/peers/{id}"), t, None);
        json_of(&text)["last_handshake"]
            .as_u64()
            .is_some_and(|at| at + 30 >= before)
    });
    assert!(recorded, "last_handshake never reached the registry");

    let (status, text) = call(&rig, "POST", &format!("/api/v1/peers/{id}/revoke"), t, None);
    assert_eq!(status, 200, "{text}");
    let revoked = Instant::now();
    std::thread::sleep(Duration::from_secs(1).saturating_sub(revoked.elapsed()));
    let p = ping(&c.ns, "10.77.0.1", 2).expect("ping runs");
    assert_eq!(p.received, 0, "traffic 1 s after the revoke: {p:?}");
}

#[test]
fn the_cli_drives_the_api_for_people_and_for_scripts() {
    let (rig, _token) = start_with_api("apil", SMALL_POOL);
    let secret = rig.dir.join("api-tokens.secret");
    let xgate = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--token-file", secret.to_str().expect("path")]);
        rig.server.ns.run(xgate_bin().to_str().expect("path"), &all)
    };
    let made = json_of(&xgate(&["peer", "add", "alice", "--group", "eng", "--json"]).expect("add"));
    let id = made["peer"]["id"].as_i64().expect("id");
    assert!(made["config"]
        .as_str()
        .is_some_and(|c| c.contains("PrivateKey = ")));
    // Stdout is exactly the client's file (the summary went to stderr).
    let human = xgate(&["peer", "add", "bob"]).expect("add bob");
    assert!(
        human.lines().find(|l| !l.starts_with('#')) == Some("[Interface]")
            && !human.contains("NAME"),
        "{human}"
    );

    let table = xgate(&["peer", "list"]).expect("list");
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains("alice") && table.contains("bob"), "{table}");
    let eng = json_of(&xgate(&["peer", "list", "--group", "eng", "--json"]).expect("list eng"));
    assert_eq!(eng.as_array().map(Vec::len), Some(1), "{eng}");
    let shown = json_of(&xgate(&["peer", "show", &id.to_string(), "--json"]).expect("show"));
    assert_eq!(shown["name"], json!("alice"));
    let config = xgate(&["peer", "config", &id.to_string()]).expect("config");
    let qr = xgate(&["peer", "config", &id.to_string(), "--qr"]).expect_err("config --qr");
    assert!(qr.to_string().contains("placeholder"), "{qr}");
    assert!(
        config.contains("Endpoint = ") && config.contains("<your private key>"),
        "{config}"
    );
    let status = json_of(&xgate(&["status", "--json"]).expect("status"));
    assert_eq!(
        status["peers"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    assert_eq!(
        status["workers"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    let people = xgate(&["status"]).expect("status table");
    assert!(
        people.contains("alice") && people.contains("WORKER"),
        "{people}"
    );

    let revoked = xgate(&["peer", "revoke", &id.to_string()]).expect("revoke");
    assert!(revoked.contains("revoked"), "{revoked}");
    xgate(&["peer", "rm", &id.to_string()]).expect("rm");
    let missing = xgate(&["peer", "show", &id.to_string()]).expect_err("gone");
    assert!(
        missing
            .to_string()
            .contains(&format!("no peer with id {id}")),
        "{missing}"
    );
    let refused = rig
        .server
        .ns
        .run(
            xgate_bin().to_str().expect("path"),
            &["peer", "list", "--token", "wrong"],
        )
        .expect_err("wrong token");
    assert!(refused.to_string().contains("401"), "{refused}");
}

#[test]
fn tunnel_and_peer_events_stream_in_order_and_reach_the_log() {
    use std::io::BufRead;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let (rig, token) = start_with_api("apie", SMALL_POOL);
    let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let connected = Arc::new(AtomicBool::new(false));
    let key = rig.clients[0].peer.public_key.to_base64();
    std::thread::scope(|s| {
        let (seen_r, connected_r, token_r) = (seen.clone(), connected.clone(), token.clone());
        let ns = &rig.server.ns;
        let reader = s.spawn(move || {
            let (seen, connected, token) = (seen_r, connected_r, token_r);
            ns.enter(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout_read(Duration::from_secs(30))
                    .build();
                let r = agent
                    .get("http://127.0.0.1:9180/api/v1/events")
                    .set("Authorization", &format!("Bearer {token}"))
                    .call()
                    .expect("event stream");
                connected.store(true, Ordering::SeqCst);
                let mut name = String::new();
                for line in std::io::BufReader::new(r.into_reader()).lines() {
                    let Ok(line) = line else { break };
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_string();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        let v: Value = serde_json::from_str(d).expect("event data is JSON");
                        let done = name == "peer_deleted";
                        seen.lock().expect("seen").push((name.clone(), v));
                        if done {
                            break;
                        }
                    }
                }
            })
        });
        assert!(
            testbed::wait_until(Duration::from_secs(10), || connected.load(Ordering::SeqCst)),
            "event stream did not open"
        );
        let t = Some(token.as_str());
        let (status, text) = call(
            &rig,
            "POST",
            "/api/v1/peers",
            t,
            Some(json!({"name": "ev", "public_key": key})),
        );
        assert_eq!(status, 201, "{text}");
        let id = json_of(&text)["peer"]["id"].as_i64().expect("id");
        rig.connect(0, None);
        assert!(
            rig.ping_until_reply(0, "10.77.0.1", Duration::from_secs(10)),
            "no tunnel"
        );
        let (status, _) = call(&rig, "POST", &format!("/api/v1/peers/{id}/revoke"), t, None);
        assert_eq!(status, 200);
        let (status, _) = call(&rig, "DELETE", &format!("/api/v1/peers/{id}"), t, None);
        assert_eq!(status, 204);
        reader
            .join()
            .expect("reader")
            .expect("reader in the namespace");
    });
    let seen = seen.lock().expect("seen").clone();
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    // The revocation takes the tunnel down before it is answered (and announced).
    assert_eq!(
        names,
        [
            "peer_created",
            "tunnel_up",
            "tunnel_down",
            "peer_revoked",
            "peer_deleted"
        ],
        "{seen:?}"
    );
    for (name, v) in &seen {
        assert_eq!(v["event"], json!(name), "{v}");
        assert!(v["at"].as_u64().is_some(), "{v}");
        assert_eq!(v["public_key"], json!(key), "{name}: {v}");
    }
    assert_eq!(seen[2].1["reason"], json!("removed"));
    assert!(seen[1].1["endpoint"]
        .as_str()
        .is_some_and(|e| e.starts_with("10.201.1.2:")));
    let log = rig.log();
    assert!(
        log.contains("xgate::events") && log.contains("\"event\":\"peer_revoked\""),
        "changes are logged at info: {log}"
    );
    assert!(
        !log.contains("\"event\":\"tunnel_up\""),
        "a tunnel per user is logged at debug only: {log}"
    );
}
