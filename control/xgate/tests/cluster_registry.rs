//! Two concentrators on one PostgreSQL registry (a throwaway server from Debian's packages):
//! a peer registered through either node's API reaches the other node's interface within a
//! second, a revocation on one cuts a client off the other, concurrent registrations never
//! share an address, and a restarted database loses no change.

mod common;

use std::time::{Duration, Instant};

use common::api::{call, json_of};
use common::Rig;
use serde_json::json;
use testbed::postgres::TempPostgres;
use testbed::{config, Implementation};

/// A node: xgate with `clients` clients of `client`'s kind (client n has the tunnel
/// address .n+2), the registry at `url`, the API on.
fn node(tag: &str, url: &str, client: Implementation, clients: usize) -> (Rig, String) {
    let mut rig = Rig::new(tag);
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
    rig.start_xgate();
    let token = rig.server.api_token().expect("token").trim().to_string();
    (rig, token)
}

/// Registers `key` through `rig`'s API; returns the peer's id.
fn register(rig: &Rig, token: &str, name: &str, key: &str) -> i64 {
    let body = json!({ "name": name, "public_key": key });
    let (status, text) = call(rig, "POST", "/api/v1/peers", Some(token), Some(body));
    assert_eq!(status, 201, "{text}");
    json_of(&text)["peer"]["id"].as_i64().expect("id")
}

/// How long until `rig`'s interface has (or, with `present` false, lacks) peer `key`.
fn until_interface(rig: &Rig, key: &str, present: bool) -> Duration {
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

/// A peer key that is no client's: only its registration matters.
fn some_key(node: usize, n: usize) -> String {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&(n as u64).to_le_bytes());
    key[8] = node as u8 + 1;
    proto::PublicKey(key).to_base64()
}

/// Peers on `rig`'s interface.
fn interface_peers(rig: &Rig) -> usize {
    rig.dump().len()
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
    let (a, token_a) = node("clsa", &url, Implementation::WireguardGo, 0);
    let (b, token_b) = node("clsb", &url, Implementation::WireguardGo, 0);
    register(&a, &token_a, "before", &some_key(0, 1));
    until_interface(&b, &some_key(0, 1), true);

    pg.stop_now();
    // Meanwhile a write is refused, saying why, and nothing is half-made.
    let body = json!({ "name": "during", "public_key": some_key(1, 2) });
    let (status, text) = call(&b, "POST", "/api/v1/peers", Some(&token_b), Some(body));
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("cannot be reached"), "{text}");
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
