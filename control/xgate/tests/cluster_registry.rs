//! Two concentrators on one PostgreSQL registry (a throwaway server from Debian's packages):
//! a peer registered through either node's API reaches the other node's interface within a
//! second, a revocation on one cuts a client off the other, concurrent registrations never
//! share an address, and a restarted database loses no change.

mod common;

use std::time::{Duration, Instant};

use common::api::{call, json_of};
use common::cluster::{
    cluster_key, configure, interface_peers, node, register, some_key, until_interface,
};
use common::Rig;
use serde_json::json;
use testbed::postgres::TempPostgres;
use testbed::Implementation;

#[test]
fn a_change_on_one_node_reaches_the_other_within_a_second() {
    let pg = TempPostgres::start("clreg").expect("PostgreSQL");
    let url = pg.database("cluster").expect("database");
    // The pool hands out .2 then .3: bob (B's client 0) is registered first, alice (A's
    // client 1) second.
    let (a, token_a) = node("clra", &url, Implementation::WireguardGo, 2);
    let (b, token_b) = node("clrb", &url, Implementation::Boringtun, 1);
    let key_a = a.clients[1].peer.public_key.to_base64();
    let key_b = b.clients[0].peer.public_key.to_base64();

    // B's client registered on A; A's client on B: each reaches the other node.
    let id_b = register(&a, &token_a, "bob", &key_b);
    let took_b = until_interface(&b, &key_b, true);
    register(&b, &token_b, "alice", &key_a);
    let took_a = until_interface(&a, &key_a, true);
    println!("propagation: A -> B {took_b:?}, B -> A {took_a:?}");
    assert!(took_b <= Duration::from_secs(1), "A -> B took {took_b:?}");
    assert!(took_a <= Duration::from_secs(1), "B -> A took {took_a:?}");
    for (rig, client, name) in [(&a, 1, "alice"), (&b, 0, "bob")] {
        rig.connect(client, None);
        assert!(
            rig.ping_until_reply(client, "10.77.0.1", Duration::from_secs(10)),
            "{name}'s client got no tunnel: {}",
            rig.log()
        );
    }

    // Revoked on A, bob is cut off B.
    let path = format!("/api/v1/peers/{id_b}/revoke");
    let (status, text) = call(&a, "POST", &path, Some(&token_a), None);
    assert_eq!(status, 200, "{text}");
    let took = until_interface(&b, &key_b, false);
    println!("revocation A -> B: {took:?}");
    assert!(took <= Duration::from_secs(1), "revocation took {took:?}");
    assert!(
        !b.ping_until_reply(0, "10.77.0.1", Duration::from_secs(2)),
        "a revoked client still passes traffic through B"
    );
}

#[test]
fn three_nodes_registering_at_once_never_share_an_address_and_all_see_every_peer() {
    const EACH: usize = 1000;
    let pg = TempPostgres::start("clcon").expect("PostgreSQL");
    let url = pg.database("cluster").expect("database");
    let nodes: Vec<(Rig, String)> = ["clca", "clcb", "clcc"]
        .iter()
        .map(|tag| node(tag, &url, Implementation::WireguardGo, 0))
        .collect();
    let acked: Vec<Instant> = std::thread::scope(|s| {
        let threads: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, (rig, token))| {
                s.spawn(move || {
                    for n in 0..EACH {
                        register(rig, token, &format!("n{i}-{n}"), &some_key(i, n));
                    }
                    Instant::now()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("registering"))
            .collect()
    });
    let last_ack = acked.into_iter().max().expect("an acknowledgement");
    for (rig, _) in &nodes {
        while interface_peers(rig) < 3 * EACH && last_ack.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let took = last_ack.elapsed();
    println!(
        "every node had all {} peers {took:?} after the last acknowledgement",
        3 * EACH
    );
    for (rig, _) in &nodes {
        assert_eq!(interface_peers(rig), 3 * EACH, "{}", rig.log());
    }
    assert!(took <= Duration::from_secs(1), "took {took:?}");
    let peers = common::api::all_peers(&nodes[0].0, &nodes[0].1);
    assert_eq!(peers.len(), 3 * EACH);
    let mut addresses: Vec<String> = peers
        .iter()
        .flat_map(|p| p["addresses"].as_array().cloned().unwrap_or_default())
        .map(|a| a.as_str().unwrap_or_default().to_string())
        .collect();
    let total = addresses.len();
    addresses.sort();
    addresses.dedup();
    assert_eq!(total, 2 * 3 * EACH, "one IPv4 and one IPv6 address each");
    assert_eq!(addresses.len(), total, "an address was handed out twice");
}

#[test]
fn a_restarted_database_loses_no_change() {
    let pg = TempPostgres::start("clrst").expect("PostgreSQL");
    let url = pg.database("cluster").expect("database");
    let (a, token_a) = node("clsa", &url, Implementation::WireguardGo, 1);
    let (b, token_b) = node("clsb", &url, Implementation::WireguardGo, 0);
    let before = a.clients[0].peer.public_key.to_base64();
    register(&a, &token_a, "before", &before);
    until_interface(&b, &before, true);
    a.connect(0, None);
    assert!(
        a.ping_until_reply(0, "10.77.0.1", Duration::from_secs(10)),
        "{}",
        a.log()
    );

    pg.stop_now();
    // Meanwhile a write is refused, saying why, and nothing is half-made.
    let body = json!({ "name": "during", "public_key": some_key(1, 2) });
    let (status, text) = call(&b, "POST", "/api/v1/peers", Some(&token_b), Some(body));
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("cannot be reached"), "{text}");
    // A's connected user keeps passing traffic; status and metrics say the registry is away.
    assert!(
        a.ping_until_reply(0, "10.77.0.1", Duration::from_secs(5)),
        "{}",
        a.log()
    );
    let (status, text) = call(&a, "GET", "/api/v1/status", Some(&token_a), None);
    assert_eq!(status, 200, "{text}");
    let shown = json_of(&text);
    assert_eq!(shown["registry"]["reachable"], false, "{shown}");
    assert!(
        shown["warnings"].to_string().contains("cannot be reached"),
        "{shown}"
    );
    assert_eq!(shown["peers"].as_array().map(Vec::len), Some(1), "{shown}");
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, text) = call(&a, "GET", "/metrics", None, None);
        assert_eq!(status, 200, "{text}");
        if text.contains("xgate_registry_reachable 0") {
            break;
        }
        assert!(Instant::now() < until, "metrics never said so: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    pg.restart().expect("PostgreSQL back");

    // B's next write reconnects; A's follower reconnects on its own and catches up.
    let after = some_key(1, 3);
    let start = Instant::now();
    register(&b, &token_b, "after", &after);
    let took = until_interface(&a, &after, true);
    println!(
        "after the restart: B's write {:?}, on A {took:?} later",
        start.elapsed()
    );
    assert!(took <= Duration::from_secs(5), "took {took:?}");
    let names: Vec<String> = common::api::all_peers(&a, &token_a)
        .iter()
        .map(|p| p["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        names,
        ["before", "after"],
        "nothing lost, nothing half-made"
    );
}

#[test]
fn a_node_with_another_key_is_refused_and_the_cluster_lists_its_nodes() {
    let pg = TempPostgres::start("clkey").expect("PostgreSQL");
    let url = pg.database("cluster").expect("database");
    let (a, token_a) = node("clka", &url, Implementation::WireguardGo, 0);
    let (b, _) = node("clkb", &url, Implementation::WireguardGo, 0);

    // Another key: refused at start, saying which key the cluster has and what to do.
    let mut c = configure("clkc", &url, Implementation::WireguardGo, 0);
    c.server_key = proto::PrivateKey::generate(&mut rand_core::OsRng);
    let refused = c.server.start_xgate(&common::xgate_bin(), &c.config());
    let text = format!("{:#} {}", refused.expect_err("refused"), c.log());
    let cluster = cluster_key().public_key().to_base64();
    assert!(
        text.contains("belongs to a cluster whose WireGuard public key is")
            && text.contains(&cluster)
            && text.contains("private key file"),
        "{text}"
    );

    // Both nodes heartbeat; the API and the CLI list them.
    let until = Instant::now() + Duration::from_secs(5);
    let listed = loop {
        let (status, text) = call(&a, "GET", "/api/v1/cluster", Some(&token_a), None);
        assert_eq!(status, 200, "{text}");
        let listed = json_of(&text);
        let up = listed["nodes"]
            .as_array()
            .map_or(0, |n| n.iter().filter(|n| n["state"] == "up").count());
        if up == 2 || Instant::now() > until {
            break listed;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(listed["engine"], "postgres", "{listed}");
    let nodes = listed["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 2, "{listed}");
    assert!(nodes.iter().all(|n| n["state"] == "up"), "{listed}");
    assert_eq!(nodes.iter().filter(|n| n["this"] == true).count(), 1);
    let out = a
        .server
        .ns
        .command(common::xgate_bin().to_str().expect("path"))
        .args(["cluster", "status", "--token", &token_a])
        .output()
        .expect("xgate cluster status");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{shown} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("2 nodes") && shown.contains("(this node)"),
        "{shown}"
    );

    // B stops: A lists it as silent within seconds.
    drop(b);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = call(&a, "GET", "/api/v1/cluster", Some(&token_a), None);
        let listed = json_of(&text);
        let silent = listed["nodes"]
            .as_array()
            .map_or(0, |n| n.iter().filter(|n| n["state"] == "silent").count());
        if silent == 1 {
            break;
        }
        assert!(Instant::now() < until, "B never went silent: {listed}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
