//! `inner = "af-xdp"`: a wireguard-go and a boringtun-cli client reach a host on the LAN
//! (ping, 100 MB of TCP with matching SHA-256, IPv4 and IPv6) and the LAN host reaches them,
//! through AF_XDP sockets on the LAN interface both ways; the counters say so, and say that
//! nothing went through the TUN once the LAN host's link address was known. The TUN still
//! carries what the kernel must handle: traffic to the concentrator's own tunnel address. A
//! LAN host writing to a tunnel address no peer has is dropped and counted, and the LAN
//! interface going down and up is followed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Rig, VETH_QUEUES};
use testbed::lan_host::{route_lan_through, HOST_V4, HOST_V6, LAN_PREFIXES};
use testbed::{ping, tcp_transfer, wait_until, Implementation, Netns};

/// The LAN: the concentrator's side and the LAN host's side of one veth.
const LAN_SERVER_IF: &str = "xtlns";
const LAN_HOST_IF: &str = "xtlnc";
const LAN_V4: &str = HOST_V4;
const LAN_V6: &str = HOST_V6;
const TRANSFER: u64 = 100 << 20;

/// The LAN host, on `LAN_SERVER_IF`.
fn lan_host(rig: &Rig) -> Netns {
    let name = format!("xt-{}-lan", rig.tag);
    let ifs = (LAN_SERVER_IF, LAN_HOST_IF);
    testbed::lan_host::lan_host(&rig.server.ns, &name, ifs, VETH_QUEUES).expect("LAN host")
}

/// Points client `i` at the server with the LAN in its allowed IPs and routes.
fn connect_with_lan(rig: &Rig, i: usize) {
    let c = &rig.clients[i];
    let endpoint = format!("{}:{}", c.server_underlay, rig.port);
    c.peer
        .set_peer(
            &c.ns,
            &rig.server_key.public_key(),
            Some(&endpoint),
            &format!("10.77.0.0/16,fd77::/64,{LAN_PREFIXES}"),
            None,
        )
        .expect("client peer set");
    route_lan_through(&c.ns, &c.peer.iface).expect("client routes to the LAN");
}

/// The counters that say which way inner packets went.
#[derive(Debug, Clone, Copy)]
struct Ways {
    lan_rx: u64,
    lan_tx: u64,
    tun_reads: u64,
    tun_writes: u64,
    unresolved: u64,
    not_lan: u64,
}

fn ways(rig: &Rig) -> Ways {
    Ways {
        lan_rx: rig.stat("lan_rx_packets"),
        lan_tx: rig.stat("lan_tx_packets"),
        tun_reads: rig.stat("tun_reads"),
        tun_writes: rig.stat("tun_writes"),
        unresolved: rig.stat("lan_fallback_unresolved"),
        not_lan: rig.stat("lan_fallback_not_lan"),
    }
}

/// Pings `target` from `ns` until a reply comes (the first packets may wait for a
/// handshake or a neighbour), then 5 times, all answered.
fn pings(ns: &Netns, target: &str, rig: &Rig) {
    let first = wait_until(Duration::from_secs(10), || {
        ping(ns, target, 1).is_ok_and(|r| r.received == 1)
    });
    assert!(
        first,
        "{target} never answered {}:\n{}",
        ns.name(),
        rig.log()
    );
    let p = ping(ns, target, 5).expect("ping");
    assert_eq!(p.received, 5, "{} -> {target}: {p:?}", ns.name());
}

/// 100 MB from `sender` to `to` in `receiver`, every byte intact.
fn transfer(receiver: &Netns, to: &str, sender: &Netns, seed: u64) {
    let to: SocketAddr = to.parse().expect("address");
    let t = tcp_transfer(receiver, to, sender, TRANSFER, seed).expect("transfer");
    assert!(
        t.intact(TRANSFER),
        "{to}: {} of {TRANSFER} bytes, sha256 {} vs {}",
        t.bytes,
        t.sent_sha256,
        t.received_sha256
    );
    eprintln!(
        "{} -> {to}: {:.0} Mbit/s",
        sender.name(),
        TRANSFER as f64 * 8.0 / t.seconds / 1e6
    );
}

#[test]
fn clients_and_a_lan_host_talk_through_af_xdp_on_the_lan_side() {
    let mut rig = Rig::af_xdp("lanx");
    let go = rig.add_client(Implementation::WireguardGo);
    let bt = rig.add_client(Implementation::Boringtun);
    let lan = lan_host(&rig);
    let mut config = rig.config();
    config.interface.outer_interfaces = vec!["xtv1s".into(), "xtv2s".into()];
    config.interface.inner = Some("af-xdp".into());
    config.interface.lan_interfaces = vec![LAN_SERVER_IF.into()];
    rig.start_xgate_with(&config);
    assert!(
        rig.log().contains("(LAN)"),
        "the LAN interface is not steered:\n{}",
        rig.log()
    );
    for c in [go, bt] {
        connect_with_lan(&rig, c);
    }

    // Both ways, both families: the first packets teach the kernel the LAN host's link
    // address (through the TUN), the rest go by AF_XDP.
    for c in [go, bt] {
        let ns = &rig.clients[c].ns;
        pings(ns, LAN_V4, &rig);
        pings(ns, LAN_V6, &rig);
        pings(&lan, &rig.clients[c].v4.clone(), &rig);
        pings(&lan, &rig.clients[c].v6.clone(), &rig);
    }
    let before = ways(&rig);
    let (go_ns, bt_ns) = (&rig.clients[go].ns, &rig.clients[bt].ns);
    transfer(&lan, &format!("{LAN_V4}:5201"), go_ns, 21);
    transfer(go_ns, &format!("[{}]:5202", rig.clients[go].v6), &lan, 22);
    transfer(&lan, &format!("[{LAN_V6}]:5203"), bt_ns, 23);
    transfer(bt_ns, &format!("{}:5204", rig.clients[bt].v4), &lan, 24);
    let after = ways(&rig);
    eprintln!("before the transfers {before:?}\nafter {after:?}");
    // 400 MB in tunnel-sized packets is over 280,000 each way (data one way, ACKs back).
    let (rx, tx) = (after.lan_rx - before.lan_rx, after.lan_tx - before.lan_tx);
    assert!(
        rx > 100_000 && tx > 100_000,
        "the LAN sockets carried rx {rx} tx {tx}"
    );
    assert_eq!(
        after.unresolved, before.unresolved,
        "packets for a known LAN host went through the TUN"
    );
    assert!(
        after.tun_writes - before.tun_writes < 10 && after.tun_reads - before.tun_reads < 10,
        "the TUN carried LAN traffic: {before:?} -> {after:?}"
    );

    // The concentrator's own tunnel address is the kernel's: through the TUN.
    let before = ways(&rig);
    pings(&rig.clients[go].ns, "10.77.0.1", &rig);
    let after = ways(&rig);
    assert!(
        after.not_lan > before.not_lan && after.tun_writes > before.tun_writes,
        "the host's own address did not go through the TUN: {before:?} -> {after:?}"
    );

    // A tunnel address no peer has: steered, dropped, counted; nobody answers.
    let no_route = rig.drops("no_route");
    let rx = rig.stat("lan_rx_packets");
    let p = ping(&lan, "10.77.0.99", 3).expect("ping");
    assert_eq!(p.received, 0, "an address no peer has answered: {p:?}");
    let dropped = rig.drops("no_route") - no_route;
    assert!(dropped >= 3, "3 packets to no peer, {dropped} counted");
    assert!(rig.stat("lan_rx_packets") >= rx + 3, "not steered");

    // The LAN interface goes down and comes back: the LAN path serves again.
    for state in ["down", "up"] {
        rig.server
            .ns
            .ip(&["link", "set", LAN_SERVER_IF, state])
            .expect("LAN link");
    }
    let tx = rig.stat("lan_tx_packets");
    pings(&rig.clients[bt].ns, LAN_V4, &rig);
    pings(&lan, &rig.clients[go].v4.clone(), &rig);
    assert!(
        rig.stat("lan_tx_packets") >= tx + 5,
        "the LAN path did not come back after down and up:\n{}",
        rig.show()
    );
}

#[test]
fn auto_falls_back_to_the_tun_when_the_lan_side_cannot_be_set_up() {
    let mut rig = Rig::af_xdp("lanau");
    let go = rig.add_client(Implementation::WireguardGo);
    let lan = lan_host(&rig);
    let mut config = rig.config();
    config.interface.outer_interfaces = vec!["xtv1s".into()];
    // A LAN interface that does not exist: "auto" says why and keeps the TUN.
    config.interface.inner = Some("auto".into());
    config.interface.lan_interfaces = vec!["xtnolan".into()];
    rig.start_xgate_with(&config);
    assert!(
        rig.log().contains("LAN side not on AF_XDP") && rig.log().contains("xtnolan"),
        "no line saying why the LAN side is on the TUN:\n{}",
        rig.log()
    );
    connect_with_lan(&rig, go);
    pings(&rig.clients[go].ns, LAN_V4, &rig);
    pings(&lan, &rig.clients[go].v4.clone(), &rig);
    let w = ways(&rig);
    assert!(
        w.lan_rx == 0 && w.lan_tx == 0 && w.tun_writes >= 5 && w.tun_reads >= 5,
        "the TUN did not carry the LAN's traffic: {w:?}"
    );
    // "af-xdp" refuses to start instead, naming the field.
    drop(rig.server.take_xgate());
    config.interface.inner = Some("af-xdp".into());
    let path = rig.dir.join("refused.toml");
    config.write(&path).expect("config");
    let out = rig
        .server
        .ns
        .command(common::xgate_bin().to_str().expect("path"))
        .args(["up", "--config", path.to_str().expect("path")])
        .output()
        .expect("xgate runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("lan_interfaces"),
        "af-xdp with a missing LAN interface: {stderr}"
    );
}
