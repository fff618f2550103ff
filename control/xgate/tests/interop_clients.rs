//! xgate as the server of real WireGuard clients, each in its own network namespace:
//! `wireguard-go` (with `wg`) and `boringtun-cli`. Handshake, ping, 100 MB TCP with SHA-256
//! checked on both ends, IPv6 inside the tunnel, and both clients at once; each on the
//! io_uring backend and on the AF_XDP backend (the `_af_xdp` tests: XDP on the server's
//! two-queue veths, datagrams through AF_XDP sockets).

mod common;

use std::time::Duration;

use common::Rig;
use testbed::server::show_number;
use testbed::{ping, tcp_transfer, Implementation};

const HUNDRED_MB: u64 = 100 * 1024 * 1024;

fn one_client(tag: &str, implementation: Implementation, workers: usize, af_xdp: bool) {
    let mut rig = if af_xdp {
        Rig::af_xdp(tag)
    } else {
        Rig::new(tag)
    };
    rig.workers = workers;
    let c = rig.add_client(implementation);
    rig.start_xgate();
    rig.connect(c, None);

    // Handshake: the first ping triggers it; the server then reports it.
    assert!(
        rig.ping_until_reply(c, "10.77.0.1", Duration::from_secs(10)),
        "no ping reply through the tunnel; xgate log:\n{}",
        rig.log()
    );
    let dump = rig.dump();
    assert_eq!(dump.len(), 1);
    assert!(dump[0].latest_handshake > 0, "server reports no handshake");
    assert_eq!(
        dump[0].endpoint,
        format!("{}:{}", rig.clients[c].underlay, {
            // The client's source port is whatever it bound; read it from the client itself.
            let port = rig.clients[c]
                .ns
                .run("wg", &["show", &rig.clients[c].peer.iface, "listen-port"])
                .expect("port");
            port.trim().to_string()
        })
    );
    let p = ping(&rig.clients[c].ns, "10.77.0.1", 5).expect("ping runs");
    assert_eq!(p.received, 5, "ping loss through the tunnel: {p:?}");

    let up = rig
        .upload(c, "10.77.0.1", 5201, HUNDRED_MB)
        .expect("upload runs");
    assert!(
        up.intact(HUNDRED_MB),
        "100 MB upload corrupted or short: {up:?}"
    );
    // Runs of the client's segments reached the server's TCP as super-packets; the intact
    // upload says each was put together right.
    let stats = rig.show();
    assert!(
        show_number(&stats, "stats", "tun_coalesced_writes").expect("xgate show") > 0,
        "no coalesced TUN write during the upload: {stats}"
    );
    let down = rig
        .download(c, 5202, 20 * 1024 * 1024)
        .expect("download runs");
    assert!(
        down.intact(20 * 1024 * 1024),
        "download corrupted or short: {down:?}"
    );
    // The server's TCP handed the TUN super-packets (TSO) that xgate cut into segments; the
    // intact download says every cut was right.
    let stats = rig.show();
    assert!(
        show_number(&stats, "stats", "tun_super_packets").expect("xgate show") > 0,
        "no TSO super-packet from the TUN during the download: {stats}"
    );

    // IPv6 inside the tunnel.
    let p6 = ping(&rig.clients[c].ns, "fd77::1", 3).expect("ping6 runs");
    assert_eq!(p6.received, 3, "IPv6 ping through the tunnel: {p6:?}");
    let up6 = rig
        .upload(c, "[fd77::1]", 5203, 10 * 1024 * 1024)
        .expect("IPv6 upload runs");
    assert!(
        up6.intact(10 * 1024 * 1024),
        "IPv6 transfer corrupted: {up6:?}"
    );

    rig.assert_backend_carried_traffic();
    if af_xdp {
        // The host's own traffic on the interface XDP is attached to still reaches its
        // kernel: a ping to the server's underlay address, and TCP to another port on it.
        let client = &rig.clients[c];
        let p = ping(&client.ns, &client.server_underlay, 3).expect("underlay ping runs");
        assert_eq!(p.received, 3, "ping to the host beside AF_XDP: {p:?}");
        let addr = format!("{}:5999", client.server_underlay);
        let tcp = tcp_transfer(
            &rig.server.ns,
            addr.parse().expect("addr"),
            &client.ns,
            1024 * 1024,
            9,
        )
        .expect("TCP to the host beside AF_XDP");
        assert!(tcp.intact(1024 * 1024), "{tcp:?}");
    }
    let shown = rig.show();
    assert_eq!(shown["drops"]["bad_tag"], 0, "{shown}");
    assert_eq!(shown["drops"]["replayed"], 0, "{shown}");
    let n = |k: &str| show_number(&shown, "stats", k).expect("xgate show");
    eprintln!(
        "{} on {}: upload {:.0} Mbit/s, download {:.0} Mbit/s; TUN reads {}, handed to their \
         owner: {} inner, {} outer",
        implementation.label(),
        rig.backend,
        up.mbit_per_s(),
        down.mbit_per_s(),
        n("tun_reads"),
        n("handed_over") - n("outer_handed_over"),
        n("outer_handed_over"),
    );
}

#[test]
fn wireguard_go_client() {
    one_client("go", Implementation::WireguardGo, 2, false);
}

#[test]
fn boringtun_client() {
    one_client("bt", Implementation::Boringtun, 2, false);
}

#[test]
fn wireguard_go_client_on_one_worker() {
    one_client("go1", Implementation::WireguardGo, 1, false);
}

#[test]
fn boringtun_client_on_one_worker() {
    one_client("bt1", Implementation::Boringtun, 1, false);
}

#[test]
fn wireguard_go_client_af_xdp() {
    one_client("gox", Implementation::WireguardGo, 2, true);
}

#[test]
fn boringtun_client_af_xdp() {
    one_client("btx", Implementation::Boringtun, 2, true);
}

#[test]
fn wireguard_go_client_on_one_worker_af_xdp() {
    one_client("go1x", Implementation::WireguardGo, 1, true);
}

#[test]
fn both_clients_at_once() {
    both_clients("both", false);
}

#[test]
fn both_clients_at_once_af_xdp() {
    both_clients("bothx", true);
}

fn both_clients(tag: &str, af_xdp: bool) {
    let (rig, go, bt) = Rig::with_both_clients(tag, af_xdp);
    // The concentrator forwards between clients through its own kernel, as a real one would.
    rig.server
        .ns
        .run("sysctl", &["-qw", "net.ipv4.ip_forward=1"])
        .expect("forwarding on");
    let size = 50 * 1024 * 1024;
    let (a, b) = std::thread::scope(|s| {
        let rig = &rig;
        let a = s.spawn(move || rig.upload(go, "10.77.0.1", 5301, size));
        let b = s.spawn(move || rig.upload(bt, "10.77.0.1", 5302, size));
        (a.join().expect("thread"), b.join().expect("thread"))
    });
    let (a, b) = (
        a.expect("wireguard-go upload"),
        b.expect("boringtun upload"),
    );
    assert!(a.intact(size), "wireguard-go transfer: {a:?}");
    assert!(b.intact(size), "boringtun transfer: {b:?}");
    // Client to client through the concentrator: wireguard-go pings boringtun's address.
    let c2c = ping(&rig.clients[go].ns, &rig.clients[bt].v4, 3).expect("ping runs");
    assert_eq!(c2c.received, 3, "client-to-client through xgate: {c2c:?}");
    let dump = rig.dump();
    assert_eq!(dump.len(), 2);
    assert!(dump
        .iter()
        .all(|p| p.latest_handshake > 0 && p.rx_bytes > size));
    rig.assert_backend_carried_traffic();
}
