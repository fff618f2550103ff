//! What operators live through: clients roaming mid-transfer, the daemon killed outright and
//! restarted, and xgate acting as a client (the initiator role) of a `wireguard-go` server;
//! each on the io_uring backend and on the AF_XDP backend (the `_af_xdp` tests).

mod common;

use std::time::{Duration, Instant};

use common::{ns_pair, xgate_bin, Rig};
use testbed::clients::wg;
use testbed::server::show_number;
use testbed::{ping, tcp_transfer, Implementation, WgPeer, Xgate, XgateConfig};

fn roam(tag: &str, implementation: Implementation, workers: usize, af_xdp: bool) {
    let mut rig = if af_xdp {
        Rig::af_xdp(tag)
    } else {
        Rig::new(tag)
    };
    rig.workers = workers;
    let c = rig.add_client(implementation);
    rig.start_and_connect();

    // Large enough that the roam lands mid-transfer even on a fast machine (checked below).
    let size = 300 * 1024 * 1024;
    let new_addr = "10.201.1.3";
    let client = &rig.clients[c];
    // Keep the new address when the old primary goes (Linux drops secondaries otherwise).
    let promote = format!("net.ipv4.conf.{}.promote_secondaries=1", client.veth);
    client.ns.run("sysctl", &["-qw", &promote]).expect("sysctl");
    let transfer = std::thread::scope(|s| {
        let rig = &rig;
        let before = rig.dump()[0].rx_bytes;
        let t = s.spawn(move || rig.upload(c, "10.77.0.1", 5401, size));
        // Roam once the transfer is under way (4 MB through), not after a fixed delay.
        let flowing = testbed::wait_until(Duration::from_secs(10), || {
            rig.dump()[0].rx_bytes > before + 4 * 1024 * 1024
        });
        assert!(flowing, "the transfer did not start");
        // The client's underlay address changes under the running transfer.
        let client = &rig.clients[c];
        client
            .ns
            .ip(&[
                "addr",
                "add",
                &format!("{new_addr}/24"),
                "dev",
                &client.veth,
            ])
            .expect("add new address");
        client
            .ns
            .ip(&[
                "addr",
                "del",
                &format!("{}/24", client.underlay),
                "dev",
                &client.veth,
            ])
            .expect("remove old address");
        // A client rebinds its socket on a network change (the official apps do; for these
        // daemons `wg set listen-port` is that rebind), so it sends from the new address and port.
        testbed::clients::wg(
            &client.ns,
            &["set", &client.peer.iface, "listen-port", "40111"],
        )
        .expect("rebind");
        assert!(
            !t.is_finished(),
            "the transfer ended before the roam: make it larger"
        );
        t.join().expect("transfer thread")
    });
    let transfer = transfer.expect("transfer survives roaming");
    assert!(
        transfer.intact(size),
        "transfer across the roam: {transfer:?}"
    );
    let dump = rig.dump();
    assert!(
        dump[0].endpoint == format!("{new_addr}:40111"),
        "server did not follow the client to {new_addr}: endpoint {}",
        dump[0].endpoint
    );
    let p = ping(&rig.clients[c].ns, "10.77.0.1", 3).expect("ping");
    assert_eq!(p.received, 3, "traffic after roaming: {p:?}");
    let shown = rig.show();
    let received = show_number(&shown, "stats", "rx_datagrams").expect("xgate show");
    assert!(received > 100_000, "{shown}");
    rig.assert_backend_carried_traffic();
    if af_xdp {
        // AF_XDP sockets take what arrives on their own queue, whoever owns the session:
        // the hand-over queues carry the rest. They are bounded: when the owner is starved
        // of CPU (tests run side by side on two cores) a queue can fill, and what does not
        // fit is counted and dropped (TCP sends it again). That must stay rare.
        let handover_full = show_number(&shown, "drops", "handover_full").expect("xgate show");
        assert!(
            handover_full * 100 < received,
            "{handover_full} of {received} datagrams dropped at a full hand-over queue"
        );
        return;
    }
    // Steering by receiver index: before and after the roam (a new source address and port,
    // which the flow hash could have put on either socket) every transport datagram reached
    // the owner's socket; none needed handing over.
    assert_eq!(
        show_number(&shown, "stats", "outer_handed_over").expect("xgate show"),
        0,
        "datagrams that reached another worker's socket: {shown}"
    );
}

#[test]
fn wireguard_go_client_roams_mid_transfer() {
    roam("roamg", Implementation::WireguardGo, 2, false);
}

#[test]
fn boringtun_client_roams_mid_transfer() {
    roam("roamb", Implementation::Boringtun, 2, false);
}

#[test]
fn wireguard_go_client_roams_on_one_worker() {
    roam("roam1", Implementation::WireguardGo, 1, false);
}

#[test]
fn wireguard_go_client_roams_mid_transfer_af_xdp() {
    roam("roamgx", Implementation::WireguardGo, 2, true);
}

#[test]
fn boringtun_client_roams_mid_transfer_af_xdp() {
    roam("roambx", Implementation::Boringtun, 2, true);
}

#[test]
fn clients_recover_after_xgate_is_killed_and_restarted() {
    kill_and_restart("rst", false);
}

/// SIGKILL leaves the XDP programs' links to the kernel, which detaches them with the process:
/// the restart attaches afresh, with no clean-up step.
#[test]
fn clients_recover_after_xgate_is_killed_and_restarted_af_xdp() {
    kill_and_restart("rstx", true);
}

fn kill_and_restart(tag: &str, af_xdp: bool) {
    let (mut rig, go, bt) = Rig::with_both_clients(tag, af_xdp);
    for c in [go, bt] {
        assert!(
            rig.ping_until_reply(c, "10.77.0.1", Duration::from_secs(10)),
            "no tunnel before the kill"
        );
    }

    let mut old = rig.server.take_xgate().expect("running");
    old.daemon.kill_hard();
    // The kernel removes the TUN with the process; the UAPI socket file stays behind, stale.
    assert!(
        testbed::wait_until(Duration::from_secs(5), || rig
            .server
            .ns
            .ip(&["link", "show", &rig.iface()])
            .is_err()),
        "interface outlived SIGKILL by 5 s"
    );
    assert!(
        testbed::clients::uapi_socket(&rig.iface()).exists(),
        "expected a stale socket to prove restart copes"
    );

    let restarted = Instant::now();
    rig.start_xgate();
    // No manual step: the clients keep sending, notice no answer, and handshake again.
    let recovered = std::thread::scope(|s| {
        let rig = &rig;
        let a = s.spawn(move || rig.ping_until_reply(go, "10.77.0.1", Duration::from_secs(30)));
        let b = s.spawn(move || rig.ping_until_reply(bt, "10.77.0.1", Duration::from_secs(30)));
        (a.join().expect("thread"), b.join().expect("thread"))
    });
    let took = restarted.elapsed();
    assert!(
        recovered.0,
        "wireguard-go did not recover within 30 s: {}",
        rig.log()
    );
    assert!(
        recovered.1,
        "boringtun did not recover within 30 s: {}",
        rig.log()
    );
    assert!(took < Duration::from_secs(30), "recovery took {took:?}");
    eprintln!(
        "both clients passed traffic {:.1} s after the restart",
        took.as_secs_f64()
    );
    let up = rig
        .upload(go, "10.77.0.1", 5501, 5 * 1024 * 1024)
        .expect("transfer after restart");
    assert!(up.intact(5 * 1024 * 1024));
    rig.assert_backend_carried_traffic();
}

#[test]
fn xgate_initiates_to_a_wireguard_go_server() {
    initiate("init", "io-uring");
}

/// The first datagrams to a configured endpoint leave through the kernel (no link path
/// known yet); the answers come in through AF_XDP and later ones leave through it.
#[test]
fn xgate_initiates_to_a_wireguard_go_server_af_xdp() {
    initiate("initx", "af-xdp");
}

fn initiate(tag: &str, backend: &str) {
    let (dir, server_ns, client_ns) = ns_pair(tag);
    // Interface names carry the tag: UAPI socket paths are global, and tests run in parallel.
    let (server_if, client_if) = (format!("xt{tag}s"), format!("xt{tag}c"));

    // wireguard-go is the server this time.
    let server = WgPeer::start(Implementation::WireguardGo, &server_ns, &server_if, &dir)
        .expect("wireguard-go");
    wg(&server_ns, &["set", &server_if, "listen-port", "51820"]).expect("port");
    server
        .configure(&server_ns, &["10.78.0.1/24"], 1420)
        .expect("address");

    let key = proto::PrivateKey::generate(&mut rand_core::OsRng);
    server
        .set_peer(&server_ns, &key.public_key(), None, "10.78.0.2/32", None)
        .expect("server knows xgate");
    let mut config = XgateConfig::server(&client_if, &key, 0, &["10.78.0.2/24"]);
    config.interface.workers = Some(2);
    config.interface.backend = Some(backend.into());
    config.peers.push(testbed::config::Peer {
        public_key: server.public_key.to_base64(),
        endpoint: Some("10.201.1.1:51820".into()),
        allowed_ips: vec!["10.78.0.0/24".into()],
        ..testbed::config::Peer::default()
    });
    let path = dir.join("client.toml");
    config.write(&path).expect("config written");
    let xgate = Xgate::start(
        &xgate_bin(),
        &client_ns,
        &["--config", path.to_str().expect("path")],
        &client_if,
        &dir.join("xgate.log"),
    )
    .expect("xgate as client");

    // Data for the server makes xgate initiate; the staged packet follows the handshake.
    let p = ping(&client_ns, "10.78.0.1", 3).expect("ping");
    assert!(
        p.received >= 2,
        "xgate → wireguard-go: {p:?}\n{}",
        xgate.daemon.log_text()
    );
    let size = 20 * 1024 * 1024;
    let up = tcp_transfer(
        &server_ns,
        "10.78.0.1:5601".parse().expect("addr"),
        &client_ns,
        size,
        3,
    )
    .expect("upload");
    assert!(up.intact(size), "{up:?}");
    let down = tcp_transfer(
        &client_ns,
        "10.78.0.2:5602".parse().expect("addr"),
        &server_ns,
        size,
        4,
    )
    .expect("download");
    assert!(down.intact(size), "{down:?}");
    let hs = wg(&server_ns, &["show", &server_if, "latest-handshakes"]).expect("wg show");
    assert!(
        hs.split_whitespace().nth(1).is_some_and(|t| t != "0"),
        "wireguard-go saw no handshake: {hs}"
    );
    if backend == "af-xdp" {
        let shown = client_ns
            .run(
                xgate_bin().to_str().expect("path"),
                &["show", &client_if, "--json"],
            )
            .expect("xgate show");
        let shown: serde_json::Value = serde_json::from_str(&shown).expect("json");
        let n = |k: &str| show_number(&shown, "stats", k).expect("xgate show");
        assert!(
            n("outer_kernel_sends") > 0,
            "the first initiation has no link path: {shown}"
        );
        assert!(
            n("xdp_rx_frames") > 1000 && n("xdp_tx_frames") > 1000,
            "{shown}"
        );
    }
}
