//! What is particular to the AF_XDP backend: the steering program follows a listen port set
//! through `wg set`, a program an earlier xgate left attached the old way is replaced, and one
//! xgate did not load is left alone (`af-xdp` refuses to start and says how to fix it;
//! `auto` falls back to io_uring and says why), and interfaces that come up or go away after
//! the start are followed.

mod common;

use std::time::Duration;

use common::{xgate_bin, Rig};
use datapath::io::af_xdp::bpf::{AddressMap, XdpMode, XdpProgram, XskMap};
use datapath::io::af_xdp::program::{steering, Steered, XDP_PASS};
use datapath::kernel::netlink::Netlink;
use testbed::{Implementation, Netns};

/// Attaches a steering program named `name` to `iface` in `ns` the old way (netlink, no link),
/// as a crashed older daemon or another tool would leave it; it stays after this returns.
fn attach_legacy(ns: &Netns, iface: &str, name: &'static str) {
    let iface = iface.to_string();
    ns.enter(move || {
        let map = XskMap::new(1).expect("map");
        let local = AddressMap::new().expect("address map");
        let steered = Steered {
            port: 9,
            ..Steered::default()
        };
        let program = XdpProgram::load(name, &steering(steered, map.fd(), local.fd(), XDP_PASS))
            .expect("program loads");
        let mut netlink = Netlink::open().expect("netlink");
        let index = netlink
            .interface(&iface)
            .expect("interfaces")
            .expect("interface exists")
            .index;
        netlink
            .attach_xdp_legacy(index, program.fd(), XdpMode::Generic.flag())
            .expect("legacy attach");
    })
    .expect("enter");
}

/// The XDP program attached to `iface` in `ns`, by name.
fn attached_program(ns: &Netns, iface: &str) -> Option<String> {
    let iface = iface.to_string();
    ns.enter(move || {
        let mut netlink = Netlink::open().expect("netlink");
        let found = netlink.interface(&iface).expect("interfaces")?;
        let (id, _) = found.xdp?;
        datapath::io::af_xdp::bpf::program_name(id).ok()
    })
    .expect("enter")
}

#[test]
fn a_listen_port_set_through_wg_moves_the_steering() {
    let mut rig = Rig::af_xdp("port");
    let c = rig.add_client(Implementation::WireguardGo);
    rig.start_and_connect();
    rig.wg(&["set", &rig.iface(), "listen-port", "51901"])
        .expect("wg set listen-port");
    rig.port = 51901;
    rig.connect(c, None);
    let before = rig.stat("xdp_rx_frames");
    assert!(
        rig.ping_until_reply(c, "10.77.0.1", Duration::from_secs(10)),
        "no tunnel on the new port: {}",
        rig.log()
    );
    let p = testbed::ping(&rig.clients[c].ns, "10.77.0.1", 5).expect("ping");
    assert_eq!(p.received, 5, "{p:?}");
    let after = rig.stat("xdp_rx_frames");
    assert!(
        after >= before + 5,
        "datagrams to the new port did not come through AF_XDP: {before} -> {after}\n{}",
        rig.log()
    );
}

#[test]
fn a_stale_program_is_replaced_and_a_foreign_one_left_alone() {
    let mut rig = Rig::af_xdp("stale");
    let c = rig.add_client(Implementation::Boringtun);
    attach_legacy(&rig.server.ns, "xtv1s", "xgate_steer");
    rig.start_and_connect();
    assert!(
        rig.log()
            .contains("replaced a steering program left by an earlier xgate"),
        "{}",
        rig.log()
    );
    rig.assert_backend_carried_traffic();
    // A clean exit detaches the program.
    drop(rig.server.take_xgate());
    assert_eq!(attached_program(&rig.server.ns, "xtv1s"), None);

    // Someone else's program: af-xdp refuses to start, naming it and the fix.
    attach_legacy(&rig.server.ns, "xtv1s", "their_prog");
    let config = rig.write_config();
    let out = rig
        .server
        .ns
        .command(xgate_bin().to_str().expect("path"))
        .args(["up", "--config", config.to_str().expect("path")])
        .output()
        .expect("xgate runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started over a foreign program");
    assert!(
        stderr.contains("their_prog") && stderr.contains("xdp off"),
        "error does not name the program and the fix: {stderr}"
    );
    assert_eq!(
        attached_program(&rig.server.ns, "xtv1s").as_deref(),
        Some("their_prog")
    );

    // auto falls back to io_uring, says why, and serves the client.
    rig.backend = "auto";
    rig.start_xgate();
    // The client still holds the first xgate's session: it handshakes again once it notices
    // no answer (as after any restart), within REKEY_TIMEOUT plus the keepalive timeout.
    assert!(
        rig.ping_until_reply(c, "10.77.0.1", Duration::from_secs(30)),
        "no tunnel on the fallback: {}",
        rig.log()
    );
    assert!(rig.log().contains("AF_XDP not used"), "{}", rig.log());
    assert_eq!(rig.stat("xdp_rx_frames"), 0);
    assert_eq!(
        attached_program(&rig.server.ns, "xtv1s").as_deref(),
        Some("their_prog")
    );
}

#[test]
fn interfaces_that_come_and_go_after_the_start_are_followed() {
    let mut rig = Rig::af_xdp("follow");
    let first = rig.add_client(Implementation::WireguardGo);
    rig.start_and_connect();

    // A second underlay interface comes up while xgate runs: steered, and its queues bound.
    let second = rig.add_client(Implementation::Boringtun);
    let attached = testbed::wait_until(Duration::from_secs(5), || {
        rig.log()
            .lines()
            .filter(|l| l.contains("xtv2s"))
            .any(|l| l.contains("AF_XDP socket bound"))
    });
    assert!(attached, "xtv2s not followed:\n{}", rig.log());
    // The config named only the first client: the second is added as an operator would.
    let (key, v4, v6) = {
        let c = &rig.clients[second];
        (c.peer.public_key.to_base64(), c.v4.clone(), c.v6.clone())
    };
    rig.wg(&[
        "set",
        &rig.iface(),
        "peer",
        &key,
        "allowed-ips",
        &format!("{v4}/32,{v6}/128"),
    ])
    .expect("wg set peer");
    rig.connect(second, None);
    assert!(
        rig.ping_until_reply(second, "10.77.0.1", Duration::from_secs(10)),
        "no tunnel over the new interface: {}",
        rig.log()
    );
    let before = rig.stat("xdp_rx_frames");
    let p = testbed::ping(&rig.clients[second].ns, "10.77.0.1", 5).expect("ping");
    assert_eq!(p.received, 5, "{p:?}");
    assert!(rig.stat("xdp_rx_frames") >= before + 5, "{}", rig.log());

    // It goes away again: its sockets are retired, the first client is untouched.
    rig.server
        .ns
        .ip(&["link", "del", "xtv2s"])
        .expect("veth deleted");
    let retired = testbed::wait_until(Duration::from_secs(5), || {
        rig.log()
            .lines()
            .any(|l| l.contains("AF_XDP socket retired") && l.contains("xtv2s"))
    });
    assert!(retired, "xtv2s's sockets not retired:\n{}", rig.log());
    let p = testbed::ping(&rig.clients[first].ns, "10.77.0.1", 5).expect("ping");
    assert_eq!(
        p.received, 5,
        "first client after the second interface left: {p:?}"
    );
    // Let the retired sockets' frames come back, then move data: no buffer runs short.
    std::thread::sleep(Duration::from_millis(1500));
    let up = rig
        .upload(first, "10.77.0.1", 5701, 20 * 1024 * 1024)
        .expect("upload");
    assert!(up.intact(20 * 1024 * 1024), "{up:?}");
    assert_eq!(rig.drops("no_buffer"), 0, "{}", rig.show());
    rig.assert_backend_carried_traffic();
}

/// AF_XDP replies skip the firewall mark and policy routing, so a configured `fwmark` keeps
/// the outer side on io_uring: `af-xdp` refuses to start, `auto` serves through UDP sockets.
#[test]
fn a_configured_fwmark_keeps_the_outer_side_on_io_uring() {
    let mut rig = Rig::af_xdp("fwmark");
    let c = rig.add_client(Implementation::WireguardGo);
    let mut config = rig.config();
    config.interface.fwmark = Some(51820);
    let path = rig.dir.join("fwmark.toml");
    config.write(&path).expect("config written");
    let mut cmd = rig.server.ns.command(xgate_bin().to_str().expect("path"));
    cmd.args(["up", "--config", path.to_str().expect("path")]);
    let log = rig.dir.join("fwmark-refused.log");
    let mut refused = testbed::Daemon::spawn(cmd, &log).expect("xgate runs");
    // Bounded: a regression that starts the daemon must fail here, not hang the suite.
    let exit = refused.wait(Duration::from_secs(15));
    let stderr = refused.log_text();
    drop(refused);
    assert!(
        exit.is_some_and(|code| code != 0),
        "af-xdp started with a fwmark: {stderr}"
    );
    assert!(
        stderr.contains("fwmark") && stderr.contains("io-uring"),
        "the error names neither the mark nor the way out: {stderr}"
    );

    rig.backend = "auto";
    let mut config = rig.config();
    config.interface.fwmark = Some(51820);
    rig.start_xgate_with(&config);
    rig.connect(c, None);
    assert!(
        rig.ping_until_reply(c, "10.77.0.1", Duration::from_secs(10)),
        "no tunnel with a fwmark: {}",
        rig.log()
    );
    assert!(rig.log().contains("fwmark is set"), "{}", rig.log());
    assert_eq!(rig.stat("xdp_rx_frames"), 0);
    assert_eq!(attached_program(&rig.server.ns, "xtv1s"), None);
}
