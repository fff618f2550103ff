//! The standard WireGuard tools drive xgate unchanged: `wg show ... dump` agrees with
//! `xgate show`; `wg set` adds and removes peers live; `wg showconf` and `wg syncconf`
//! round-trip; `xgate up --interface NAME` starts a bare interface configured only through its
//! socket; and `wg-quick up` starts xgate via WG_QUICK_USERSPACE_IMPLEMENTATION.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{ns_pair, write, xgate_bin, Rig};
use testbed::clients::{uapi_socket, wait_for_socket, wg};
use testbed::{ping, wait_until, Daemon, Implementation, WgPeer};

#[test]
fn wg_show_dump_agrees_with_xgate_show() {
    dump_agrees("dump", false);
}

#[test]
fn wg_show_dump_agrees_with_xgate_show_af_xdp() {
    dump_agrees("dumpx", true);
}

fn dump_agrees(tag: &str, af_xdp: bool) {
    let (rig, go, bt) = Rig::with_both_clients(tag, af_xdp);
    for c in [go, bt] {
        assert!(rig.ping_until_reply(c, "10.77.0.1", Duration::from_secs(10)));
    }
    rig.upload(go, "10.77.0.1", 5701, 2 * 1024 * 1024)
        .expect("traffic");

    // Counters move only with traffic; compare once two consecutive reads agree.
    let agreed = wait_until(Duration::from_secs(10), || {
        let dump = rig.dump();
        let shown = rig.show();
        let peers = shown["peers"].as_array().cloned().unwrap_or_default();
        dump.len() == 2
            && peers.len() == 2
            && dump.iter().all(|d| {
                peers.iter().any(|p| {
                    p["public_key"] == d.public_key.as_str()
                        && p["endpoint"] == d.endpoint.as_str()
                        && p["latest_handshake"] == d.latest_handshake
                        && p["rx_bytes"] == d.rx_bytes
                        && p["tx_bytes"] == d.tx_bytes
                        && d.latest_handshake > 0
                        && d.rx_bytes > 0
                })
            })
    });
    assert!(
        agreed,
        "wg show dump:\n{:#?}\nxgate show:\n{}",
        rig.dump(),
        rig.show()
    );
    // And wg's view of the interface itself.
    let listen = rig
        .wg(&["show", &rig.iface(), "listen-port"])
        .expect("listen-port");
    assert_eq!(listen.trim(), "51820");
    rig.assert_backend_carried_traffic();
}

#[test]
fn wg_set_adds_and_removes_peers_live() {
    let mut rig = Rig::new("live");
    rig.start_xgate();
    // The peer is added after start, by wg alone.
    let c = rig.add_client(Implementation::WireguardGo);
    let client_key = rig.clients[c].peer.public_key.to_base64();
    let iface = rig.iface();
    rig.wg(&[
        "set",
        &iface,
        "peer",
        &client_key,
        "allowed-ips",
        "10.77.0.2/32,fd77::2/128",
    ])
    .expect("wg set");
    rig.connect(c, None);
    assert!(
        rig.ping_until_reply(c, "10.77.0.1", Duration::from_secs(10)),
        "peer added by wg set cannot connect: {}",
        rig.log()
    );
    let showconf = rig.wg(&["showconf", &iface]).expect("showconf");
    assert!(
        showconf.contains(&format!("PublicKey = {client_key}")),
        "{showconf}"
    );
    assert!(
        showconf.contains("AllowedIPs = 10.77.0.2/32, fd77::2/128"),
        "{showconf}"
    );

    rig.wg(&["set", &iface, "peer", &client_key, "remove"])
        .expect("wg set remove");
    assert!(rig.dump().is_empty(), "peer still listed after removal");
    let p = ping(&rig.clients[c].ns, "10.77.0.1", 2).expect("ping runs");
    assert_eq!(p.received, 0, "a removed peer still gets through");

    // syncconf: put the peer back from a file (as wg-quick strip output would), no restart.
    let conf = format!(
        "[Interface]\nPrivateKey = {}\nListenPort = 51820\n\n[Peer]\nPublicKey = {client_key}\nAllowedIPs = 10.77.0.2/32\n",
        rig.server_key.to_base64()
    );
    let file = write(&rig.dir, "sync.conf", &conf);
    rig.wg(&["syncconf", &iface, file.to_str().expect("path")])
        .expect("wg syncconf");
    assert!(
        rig.ping_until_reply(c, "10.77.0.1", Duration::from_secs(20)),
        "peer restored by syncconf cannot connect"
    );
    assert_eq!(rig.dump().len(), 1);
}

#[test]
fn bare_interface_is_configured_through_its_socket_alone() {
    let (dir, server_ns, client_ns) = ns_pair("bare");
    let mut cmd = server_ns.command(xgate_bin().to_str().expect("path"));
    cmd.args(["up", "--interface", "xtbares", "--foreground"]);
    let _daemon = Daemon::spawn(cmd, &dir.join("xgate.log")).expect("xgate");
    assert!(
        wait_for_socket("xtbares", Duration::from_secs(10)),
        "no socket for the bare interface"
    );
    let shown = wg(&server_ns, &["show", "xtbares"]).expect("wg show");
    assert!(
        !shown.contains("public key"),
        "a bare interface has no key yet: {shown}"
    );

    let client =
        WgPeer::start(Implementation::WireguardGo, &client_ns, "xtbarec", &dir).expect("client");
    client
        .configure(&client_ns, &["10.79.0.2/24"], 1420)
        .expect("client address");
    let server_key = proto::PrivateKey::generate(&mut rand_core::OsRng);
    let conf = format!(
        "[Interface]\nPrivateKey = {}\nListenPort = 51821\n\n[Peer]\nPublicKey = {}\nAllowedIPs = 10.79.0.2/32\n",
        server_key.to_base64(),
        client.public_key
    );
    let file = write(&dir, "bare.conf", &conf);
    wg(
        &server_ns,
        &["setconf", "xtbares", file.to_str().expect("path")],
    )
    .expect("wg setconf");
    server_ns
        .ip(&["addr", "add", "10.79.0.1/24", "dev", "xtbares"])
        .expect("address");
    server_ns.ip(&["link", "set", "xtbares", "up"]).expect("up");
    assert_eq!(
        wg(&server_ns, &["show", "xtbares", "listen-port"])
            .expect("port")
            .trim(),
        "51821"
    );
    client
        .set_peer(
            &client_ns,
            &server_key.public_key(),
            Some("10.201.1.1:51821"),
            "10.79.0.0/24",
            None,
        )
        .expect("client peer");
    assert!(
        wait_until(Duration::from_secs(10), || ping(&client_ns, "10.79.0.1", 1)
            .is_ok_and(|r| r.received == 1)),
        "client of a socket-configured xgate cannot connect"
    );
}

#[test]
fn wg_quick_starts_and_stops_xgate() {
    let (dir, server_ns, client_ns) = ns_pair("quick");

    // The peer: a wireguard-go client.
    let client =
        WgPeer::start(Implementation::WireguardGo, &client_ns, "xtquickc", &dir).expect("client");
    client
        .configure(&client_ns, &["10.80.0.2/24"], 1420)
        .expect("address");

    let server_key = proto::PrivateKey::generate(&mut rand_core::OsRng);
    let conf = format!(
        "[Interface]\nPrivateKey = {}\nListenPort = 51822\nAddress = 10.80.0.1/24\n\n[Peer]\nPublicKey = {}\nAllowedIPs = 10.80.0.2/32\n",
        server_key.to_base64(),
        client.public_key
    );
    let file = write(&dir, "xtquick0.conf", &conf);
    let userspace = PathBuf::from(env!("CARGO_BIN_EXE_xgate-userspace"));
    let quick = |verb: &str| {
        server_ns
            .command("wg-quick")
            .args([verb, file.to_str().expect("path")])
            .env("WG_QUICK_USERSPACE_IMPLEMENTATION", &userspace)
            .output()
            .expect("wg-quick runs")
    };
    let out = quick("up");
    assert!(
        out.status.success(),
        "wg-quick up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    client
        .set_peer(
            &client_ns,
            &server_key.public_key(),
            Some("10.201.1.1:51822"),
            "10.80.0.0/24",
            None,
        )
        .expect("client peer");
    assert!(
        wait_until(Duration::from_secs(10), || ping(&client_ns, "10.80.0.1", 1)
            .is_ok_and(|r| r.received == 1)),
        "no traffic through the wg-quick interface"
    );

    // wg-quick down deletes the interface; xgate notices, exits and removes its socket.
    let out = quick("down");
    assert!(
        out.status.success(),
        "wg-quick down failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(Duration::from_secs(10), || !uapi_socket("xtquick0")
            .exists()),
        "xgate did not stop after wg-quick down"
    );
    assert!(
        wait_until(Duration::from_secs(5), || server_ns.pids().iter().all(
            |p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .map_or(true, |c| c.trim() != "xgate")
            }
        )),
        "xgate process still running"
    );
}
