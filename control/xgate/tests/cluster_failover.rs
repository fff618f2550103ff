//! A node dies; the survivor reaches its users. Two nodes on one PostgreSQL registry; a
//! wireguard-go and a boringtun-cli client connected through node A, each also linked to
//! node B (as clients on the internet reach either node). Node A is killed (SIGKILL): node
//! B notices its heartbeat stop, claims the sessions A recorded, and starts a handshake with
//! each client at its last endpoint; the clients answer, and their traffic resumes through B.
//! With take-over off, they never do: a standard client keeps knocking at the dead node.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{configure, register, until_sessions_recorded};
use common::Rig;
use testbed::netns::veth;
use testbed::postgres::TempPostgres;

/// How long a probe waits for its echo: the resolution of the times measured.
const PROBE: Duration = Duration::from_millis(100);

/// One failover at a time: two at once on a 2-core machine would measure each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

use testbed::Implementation;

/// Links each of `a`'s clients to node `b` too (10.210.n.0/24), and routes from B to the
/// clients' addresses on A's side through those links.
fn link_clients_to(a: &Rig, b: &Rig) {
    for (i, c) in a.clients.iter().enumerate() {
        let n = i + 1;
        veth(
            &b.server.ns,
            &format!("xfb{n}"),
            &format!("10.210.{n}.1/24"),
            &c.ns,
            &format!("xfc{n}"),
            &format!("10.210.{n}.2/24"),
        )
        .expect("a link to B");
        b.server
            .ns
            .ip(&[
                "route",
                "add",
                &format!("10.201.{n}.0/24"),
                "via",
                &format!("10.210.{n}.2"),
            ])
            .expect("route to the client");
    }
}

/// Two nodes, A's two clients connected through A and passing traffic, A's sessions recorded.
fn connected_pair(pg: &TempPostgres, tag: &str, url: &str, take_over: bool) -> (Rig, Rig) {
    let mut a = configure(&format!("{tag}a"), url, Implementation::WireguardGo, 1);
    a.add_client(Implementation::Boringtun);
    let mut b = configure(&format!("{tag}b"), url, Implementation::WireguardGo, 0);
    for rig in [&mut a, &mut b] {
        if let Some(r) = rig.config.registry.as_mut() {
            r.take_over = Some(take_over);
        }
        rig.start_xgate();
    }
    let token = a.server.api_token().expect("token").trim().to_string();
    for (i, name) in [(0, "go"), (1, "bt")] {
        let key = a.clients[i].peer.public_key.to_base64();
        register(&a, &token, name, &key);
        a.connect(i, None);
        assert!(
            a.ping_until_reply(i, "10.77.0.1", Duration::from_secs(10)),
            "{name}: no tunnel through A: {}",
            a.log()
        );
    }
    link_clients_to(&a, &b);
    // A writes its sessions with its heartbeat, twice a second.
    until_sessions_recorded(pg, url, 2);
    (a, b)
}

/// Kills A; returns how long each client took to pass traffic again (through B), if it did
/// within `limit`.
fn kill_a_and_time(a: &mut Rig, limit: Duration) -> Vec<Option<Duration>> {
    a.xgate().daemon.kill_hard();
    let killed = Instant::now();
    let mut resumed = vec![None; a.clients.len()];
    while killed.elapsed() < limit && resumed.iter().any(Option::is_none) {
        for (i, r) in resumed.iter_mut().enumerate().filter(|(_, r)| r.is_none()) {
            if testbed::ping::answered_within(&a.clients[i].ns, "10.77.0.1", PROBE) {
                *r = Some(killed.elapsed());
            }
        }
    }
    resumed
}

#[test]
fn when_a_node_dies_the_survivor_reaches_its_users_at_once() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pg = TempPostgres::start("clfo").expect("PostgreSQL");
    let url = pg.database("failover").expect("database");
    let (mut a, b) = connected_pair(&pg, "clf", &url, true);
    let resumed = kill_a_and_time(&mut a, Duration::from_secs(20));
    println!("traffic through B again after A's death (wireguard-go, boringtun-cli): {resumed:?}");
    for (i, r) in resumed.iter().enumerate() {
        let took = r.unwrap_or_else(|| panic!("client {i} never resumed: {}", b.log()));
        // B notices A's silence after 1.5 s, at its next heartbeat (0.5 s); the handshake
        // is a round trip; a ping waits up to 1 s for its reply.
        assert!(took <= Duration::from_secs(5), "client {i} took {took:?}");
    }
    assert!(b.log().contains("a node went silent"), "{}", b.log());
}

#[test]
fn without_take_over_a_standard_client_keeps_knocking_at_the_dead_node() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pg = TempPostgres::start("clfn").expect("PostgreSQL");
    let url = pg.database("failover").expect("database");
    let (mut a, b) = connected_pair(&pg, "cln", &url, false);
    let resumed = kill_a_and_time(&mut a, Duration::from_secs(8));
    println!("take-over off, after 8 s: {resumed:?}");
    assert!(
        resumed.iter().all(Option::is_none),
        "a client reached B on its own: {resumed:?}"
    );
    assert!(!b.log().contains("a node went silent"), "{}", b.log());
}

#[test]
fn on_request_a_node_takes_over_at_once_as_a_vrrp_master_would() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pg = TempPostgres::start("clfr").expect("PostgreSQL");
    let url = pg.database("failover").expect("database");
    let (a, b) = connected_pair(&pg, "clr", &url, true);
    let token = b.server.api_token().expect("token").trim().to_string();
    // What keepalived's notify_master runs on B when the service address arrives there.
    let asked = Instant::now();
    let out = b
        .server
        .ns
        .command(common::xgate_bin().to_str().expect("path"))
        .args(["cluster", "take-over", "--token", &token])
        .output()
        .expect("xgate cluster take-over");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("2 sessions claimed, 2 handshakes started"),
        "{said}"
    );
    // Both clients handshake with B (A still runs: they simply move).
    let keys: Vec<String> = a
        .clients
        .iter()
        .map(|c| c.peer.public_key.to_base64())
        .collect();
    let until = asked + Duration::from_secs(5);
    loop {
        let with_b = b
            .dump()
            .iter()
            .filter(|p| keys.contains(&p.public_key) && p.latest_handshake > 0)
            .count();
        if with_b == keys.len() {
            break;
        }
        assert!(
            Instant::now() < until,
            "not every client handshook with B: {}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "both clients handshook with B {:?} after the request",
        asked.elapsed()
    );
    for i in 0..a.clients.len() {
        assert!(
            a.ping_until_reply(i, "10.77.0.1", Duration::from_secs(3)),
            "client {i}"
        );
    }
}

#[test]
fn a_users_messages_reaching_another_node_make_it_reach_that_user_at_once() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pg = TempPostgres::start("clfs").expect("PostgreSQL");
    let url = pg.database("failover").expect("database");
    let (a, b) = connected_pair(&pg, "cls", &url, true);
    // A router spreads the address anew (ECMP): the clients' packets to A's address, still
    // sealed for their sessions with A, now reach B. A stays up, so only the index can tell
    // B whose they are.
    let started = Instant::now();
    for (i, c) in a.clients.iter().enumerate() {
        let n = i + 1;
        b.server
            .ns
            .ip(&[
                "addr",
                "add",
                &format!("{}/32", c.server_underlay),
                "dev",
                &format!("xfb{n}"),
            ])
            .expect("A's address on B");
        c.ns.ip(&[
            "route",
            "add",
            &format!("{}/32", c.server_underlay),
            "via",
            &format!("10.210.{n}.1"),
        ])
        .expect("the route to A's address through B");
    }
    let mut resumed = vec![None; a.clients.len()];
    while started.elapsed() < Duration::from_secs(10) && resumed.iter().any(Option::is_none) {
        let round = Instant::now();
        for (i, r) in resumed.iter_mut().enumerate().filter(|(_, r)| r.is_none()) {
            let probe = started.elapsed();
            if testbed::ping::answered_within(&a.clients[i].ns, "10.77.0.1", PROBE) {
                *r = Some(probe);
            }
        }
        // At least a probe's wait per round, even if ping fails at once.
        std::thread::sleep(PROBE.saturating_sub(round.elapsed()));
    }
    println!("through B after the packets moved (wireguard-go, boringtun-cli): {resumed:?}");
    for (i, r) in resumed.iter().enumerate() {
        let took = r.unwrap_or_else(|| panic!("client {i} never came back: {}", b.log()));
        // Without the index a client would come back only after its own ~15 s.
        assert!(took <= Duration::from_secs(3), "client {i} took {took:?}");
    }
    let strays = b.server.drops("unknown_index").expect("counted");
    assert!(
        strays >= 2,
        "B counted {strays} messages for unknown indices"
    );
    assert!(!b.log().contains("a node went silent"), "{}", b.log());
}
