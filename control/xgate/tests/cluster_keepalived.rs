//! Two nodes behind one service address moved by keepalived (VRRP), in namespaces joined by
//! a bridge: the clients (wireguard-go and boringtun-cli) know only the service address.
//! Node A dies (xgate and keepalived killed, its links down, as a machine that lost power);
//! keepalived moves the address to node B, whose notify_master runs `xgate cluster
//! take-over`: B starts a handshake with each of A's users, and their traffic resumes. The
//! same without take-over shows what a standard client does on its own: it notices the dead
//! server after about 15 s and handshakes again, now with B.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::{cluster_key, configure, register, until_sessions_recorded};
use common::Rig;
use testbed::keepalived::{Keepalived, VrrpNode};
use testbed::netns::{ip, Netns};
use testbed::postgres::TempPostgres;

/// How long a probe waits for its echo: the resolution of the times measured.
const PROBE: Duration = Duration::from_millis(100);

/// One failover at a time: two at once on a 2-core machine would measure each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

use testbed::{Implementation, WgPeer};

/// The service address the clients connect to.
const SERVICE: &str = "10.99.0.100";

/// Puts a veth from `ns` (as `name`, with `address` if any) into the bridge in `bridge`.
fn attach(ns: &Netns, name: &str, address: Option<&str>, bridge: &Netns, port: &str) {
    ip(&[
        "link",
        "add",
        port,
        "netns",
        bridge.name(),
        "type",
        "veth",
        "peer",
        "name",
        name,
        "netns",
        ns.name(),
    ])
    .expect("veth");
    bridge
        .ip(&["link", "set", port, "master", "br0", "up"])
        .expect("port");
    if let Some(a) = address {
        ns.ip(&["addr", "add", a, "dev", name]).expect("address");
    }
    ns.ip(&["link", "set", name, "up"]).expect("up");
}

/// A client of `kind` in a namespace of its own on the bridge (10.99.0.1n), tunnel address
/// 10.77.0.(n+2), pointed at the service address.
fn client(
    tag: &str,
    n: usize,
    kind: Implementation,
    bridge: &Netns,
    dir: &Path,
) -> (Netns, WgPeer) {
    let ns = Netns::create(&format!("xt-{tag}-c{n}")).expect("client namespace");
    attach(
        &ns,
        "kvc",
        Some(&format!("10.99.0.{}/24", 10 + n)),
        bridge,
        &format!("kvc{tag}{n}"),
    );
    let peer = WgPeer::start(kind, &ns, &format!("kv{tag}{n}"), dir).expect("client");
    let v4 = format!("10.77.0.{}/16", n + 2);
    peer.configure(&ns, &[&v4], 1420).expect("client address");
    peer.set_peer(
        &ns,
        &cluster_key().public_key(),
        Some(&format!("{SERVICE}:51820")),
        "10.77.0.0/16",
        None,
    )
    .expect("client peer");
    (ns, peer)
}

/// The script keepalived runs on becoming master: `xgate cluster take-over`.
fn take_over_script(rig: &Rig, token: &str) -> PathBuf {
    let path = rig.dir.join("take-over.sh");
    let text = format!(
        "#!/bin/sh\nexec {} cluster take-over --token {token} >> {} 2>&1\n",
        common::xgate_bin().display(),
        rig.dir.join("take-over.log").display()
    );
    std::fs::write(&path, text).expect("script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("mode");
    path
}

/// True while `rig`'s node holds the service address.
fn holds_service_address(rig: &Rig) -> bool {
    rig.server
        .ns
        .ip(&["-4", "addr", "show", "dev", "kvv"])
        .is_ok_and(|text| text.contains(&format!("{SERVICE}/")))
}

/// What a failover measured: when the address reached B after A's death, and when each
/// client passed traffic again after that.
struct Failover {
    moved: Duration,
    resumed: Vec<Option<Duration>>,
}

/// Nodes A and B on the registry at `url`, each with keepalived on the bridge; A holds the
/// service address when this returns.
fn pair_behind_keepalived(
    tag: &str,
    url: &str,
    take_over: bool,
    bridge: &Netns,
) -> (Vec<Rig>, Vec<Keepalived>) {
    let mut nodes: Vec<Rig> = ["a", "b"]
        .iter()
        .map(|n| configure(&format!("{tag}{n}"), url, Implementation::WireguardGo, 0))
        .collect();
    let mut vrrp = Vec::new();
    for (i, rig) in nodes.iter_mut().enumerate() {
        if let Some(r) = rig.config.registry.as_mut() {
            r.take_over = Some(take_over);
        }
        rig.start_xgate();
        let ns = &rig.server.ns;
        attach(
            ns,
            "kvs",
            Some(&format!("10.99.1.{}/24", i + 1)),
            bridge,
            &format!("kvs{tag}{i}"),
        );
        // The service side has no address of its own: replies leave from the service address.
        attach(ns, "kvv", None, bridge, &format!("kvv{tag}{i}"));
        let token = rig.server.api_token().expect("token").trim().to_string();
        let script = take_over.then(|| take_over_script(rig, &token));
        let name = format!("node{i}");
        let node = VrrpNode {
            name: &name,
            interface: "kvs",
            address: &format!("{SERVICE}/24"),
            address_dev: "kvv",
            priority: if i == 0 { 150 } else { 100 },
            notify_master: script.as_deref(),
        };
        vrrp.push(Keepalived::start(ns, &rig.dir, &node).expect("keepalived"));
    }
    let until = Instant::now() + Duration::from_secs(10);
    while !holds_service_address(&nodes[0]) || holds_service_address(&nodes[1]) {
        assert!(
            Instant::now() < until,
            "A never took the address: {}",
            vrrp[0].log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (nodes, vrrp)
}

/// Two nodes behind keepalived, two clients connected through A; A dies. `limit`: how long
/// after the address moved to wait for the clients.
fn fail_over(tag: &str, take_over: bool, limit: Duration) -> Failover {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pg = TempPostgres::start(&format!("{tag}pg")).expect("PostgreSQL");
    let url = pg.database("keepalived").expect("database");
    let bridge = Netns::create(&format!("xt-{tag}-br")).expect("bridge namespace");
    bridge
        .ip(&["link", "add", "br0", "type", "bridge"])
        .expect("bridge");
    bridge.ip(&["link", "set", "br0", "up"]).expect("bridge up");
    let (mut nodes, mut vrrp) = pair_behind_keepalived(tag, &url, take_over, &bridge);
    let dir = nodes[0].dir.clone();
    let clients: Vec<(Netns, WgPeer)> = [Implementation::WireguardGo, Implementation::Boringtun]
        .iter()
        .enumerate()
        .map(|(n, kind)| client(tag, n, *kind, &bridge, &dir))
        .collect();
    let token = nodes[0]
        .server
        .api_token()
        .expect("token")
        .trim()
        .to_string();
    for (n, (ns, peer)) in clients.iter().enumerate() {
        register(
            &nodes[0],
            &token,
            &format!("user{n}"),
            &peer.public_key.to_base64(),
        );
        let up = Instant::now() + Duration::from_secs(10);
        while !testbed::ping::ping(ns, "10.77.0.1", 1).is_ok_and(|p| p.received == 1) {
            assert!(
                Instant::now() < up,
                "client {n}: no tunnel through A: {}",
                nodes[0].log()
            );
        }
    }
    // A records its sessions with its heartbeat, twice a second.
    until_sessions_recorded(&pg, &url, 2);

    // A loses power: its daemons stop and its links go dark.
    let killed = Instant::now();
    nodes[0].xgate().daemon.kill_hard();
    vrrp[0].kill();
    for link in ["kvs", "kvv"] {
        nodes[0]
            .server
            .ns
            .ip(&["link", "set", link, "down"])
            .expect("link down");
    }
    while !holds_service_address(&nodes[1]) {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "the address never moved: {}",
            vrrp[1].log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let moved = killed.elapsed();
    let mut resumed = vec![None; clients.len()];
    while killed.elapsed() < moved + limit && resumed.iter().any(Option::is_none) {
        for (n, r) in resumed.iter_mut().enumerate().filter(|(_, r)| r.is_none()) {
            if testbed::ping::answered_within(&clients[n].0, "10.77.0.1", PROBE) {
                *r = Some(killed.elapsed().saturating_sub(moved));
            }
        }
    }
    if resumed.iter().any(Option::is_none) {
        println!(
            "B's log: {}\nB's keepalived: {}",
            nodes[1].log(),
            vrrp[1].log()
        );
    }
    drop(clients);
    Failover { moved, resumed }
}

#[test]
fn behind_keepalived_the_new_master_reaches_the_dead_nodes_users_at_once() {
    let f = fail_over("kvt", true, Duration::from_secs(10));
    println!(
        "take-over: address moved {:?} after A's death; traffic again {:?} after the move",
        f.moved, f.resumed
    );
    for (n, r) in f.resumed.iter().enumerate() {
        let took = r.unwrap_or_else(|| panic!("client {n} never resumed"));
        assert!(
            took <= Duration::from_secs(5),
            "client {n} took {took:?} after the move"
        );
    }
}

#[test]
fn behind_keepalived_without_take_over_a_standard_client_needs_about_15_s() {
    let f = fail_over("kvn", false, Duration::from_secs(30));
    println!(
        "no take-over: address moved {:?} after A's death; traffic again {:?} after the move",
        f.moved, f.resumed
    );
    for (n, r) in f.resumed.iter().enumerate() {
        let took = r.unwrap_or_else(|| panic!("client {n} never resumed within 30 s"));
        assert!(
            took >= Duration::from_secs(5),
            "client {n} came back by itself in {took:?}"
        );
    }
}
