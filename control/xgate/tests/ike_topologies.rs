//! IKEv2 users where they really are, all connected at once: one behind a NAT (a router
//! namespace with iptables MASQUERADE), one direct that asks for no UDP encapsulation (xgate
//! claims a NAT so ESP still comes in UDP to the workers), one direct with encapsulation on
//! and MODP-2048 key exchanges,
//! and a WireGuard client beside them on the same two workers. Each user's traffic flows.
//! Also: a user reconnecting by itself after xgate is SIGKILLed and restarted, the first
//! IKEv2 user starting the responder in a running xgate, ESP through AF_XDP sockets on the
//! NAT-T port, and raw ESP (IP protocol 50) through them where no NAT is.

mod common;

use common::api::{call, json_of};
use common::ike::{
    add_user, carries_traffic, connect_and_check_user, direct, ike_rig_with, ipv6_underlay, sas,
    scratch,
};
use common::Rig;
use ike::esp::{Inbound, Outbound, ESP_HEADROOM, ESP_TAILROOM, NEXT_IPV4};
use ring::rand::SystemRandom;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use testbed::ike_client::{set_up, IkeUser, Proof};
use testbed::packet::echo_request_v4;
use testbed::raw_esp::RawEspSocket;
use testbed::{tcp_transfer, veth, Implementation, Netns, Strongswan, StrongswanConfig};

const TEN_MB: u64 = 10 * 1024 * 1024;

/// A router on 10.201.`n`.2 that masquerades a client at 192.168.`n`.2 behind it; returns
/// (router, client).
fn behind_nat(rig: &Rig, n: u8) -> (Netns, Netns) {
    let router = direct(rig, n);
    let client = Netns::create(&format!("xt-{}-n{n}", rig.tag)).expect("namespace");
    let (inside, host) = (format!("192.168.{n}.1/24"), format!("192.168.{n}.2/24"));
    veth(&router, "xtnr", &inside, &client, "xtnc", &host).expect("veth");
    client
        .ip(&["route", "add", "default", "via", &format!("192.168.{n}.1")])
        .expect("default route");
    let run = |program: &str, args: &[&str]| {
        let out = router.command(program).args(args).output().expect(program);
        assert!(out.status.success(), "{program} {args:?}: {out:?}");
    };
    run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    let outside = format!("xtv{n}c");
    run(
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            &outside,
            "-j",
            "MASQUERADE",
        ],
    );
    (router, client)
}

/// Registers the rig's WireGuard client through the API (the pool's first address, as it is
/// set up with) and connects it.
fn connect_wireguard(rig: &Rig, token: &str) {
    // The WireGuard client registered first takes the pool's first address, as it is set up.
    let key = rig.clients[0].peer.public_key.to_base64();
    let body = json!({ "name": "wg", "public_key": key });
    let (status, text) = call(rig, "POST", "/api/v1/peers", Some(token), Some(body));
    assert_eq!(status, 201, "{text}");
    let peer = json_of(&text);
    assert_eq!(
        peer["peer"]["addresses"][0],
        json!(rig.clients[0].v4),
        "{peer}"
    );
    rig.connect(0, None);
    assert!(rig.ping_until_reply(0, "10.77.0.1", Duration::from_secs(10)));
}

/// No ESP or WireGuard drop by a reason that means loss or forgery, and ESP on both workers
/// (the users' SAs are spread over them).
fn no_drops_and_esp_on_both_workers(rig: &Rig) {
    for reason in [
        "esp_unknown_spi",
        "esp_bad_icv",
        "esp_replayed",
        "bad_tag",
        "ike_on_worker",
    ] {
        assert_eq!(rig.drops(reason), 0, "{reason}: {}", rig.show());
    }
    // Both workers carried ESP: the three users' SAs are spread over them.
    let (_, metrics) = call(rig, "GET", "/metrics", None, None);
    let carrying = metrics
        .lines()
        .filter(|l| l.starts_with("xgate_worker_esp_rx_packets_total{worker="))
        .filter(|l| l.rsplit(' ').next().is_some_and(|v| v != "0"))
        .count();
    assert_eq!(carrying, 2, "{metrics}");
}

#[test]
fn users_behind_a_nat_direct_and_beside_wireguard_all_at_once() {
    testbed::process::find_program("iptables").expect("iptables is installed");
    let (rig, token) = ike_rig_with("iket", |rig| {
        rig.workers = 2;
        rig.add_client(Implementation::WireguardGo);
    });
    connect_wireguard(&rig, &token);

    let alice_ns = direct(&rig, 2);
    let (_router, bob_ns) = behind_nat(&rig, 3);
    let carol_ns = direct(&rig, 4);
    let mut users = Vec::new();
    for (name, ns, n, encap) in [
        ("alice", &alice_ns, 2, false),
        ("bob", &bob_ns, 3, false),
        ("carol", &carol_ns, 4, true),
    ] {
        let identity = format!("{name}@example.com");
        let (psk, v4) = add_user(&rig, &token, name, &identity);
        let mut config = StrongswanConfig::psk(&format!("10.201.{n}.1"), &identity, &psk);
        config.encap = encap;
        if name == "carol" {
            // MODP-2048 (group 14) for her IKE SA and her CHILD_SAs' PFS.
            config.ike_proposals = "aes256gcm16-prfsha256-modp2048".into();
            config.esp_proposals = "aes256gcm16-modp2048".into();
        }
        let c = Strongswan::start(ns, &scratch(&rig, name), &config).expect("charon");
        connect_and_check_user(&rig, &token, (ns, &c), &identity, &v4);
        users.push((name, ns, c, v4));
    }
    // All three up at once; bob as his router's address, moved to the NAT-T port.
    let state = sas(&rig, &token);
    let up = state["sas"].as_array().expect("sas");
    assert_eq!(up.len(), 3, "{state}");
    let bob = up
        .iter()
        .find(|s| s["identity"] == "bob@example.com")
        .expect("bob's SA");
    assert!(
        bob["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with("10.201.3.2:")),
        "{state}"
    );
    for (name, ns, c, _) in &users {
        eprintln!("{name}:");
        carries_traffic(&rig, ns, c, TEN_MB);
        let listed = c.list_sas().expect("list");
        assert!(listed.contains("UDP"), "{name}'s ESP is in UDP: {listed}");
        if *name == "carol" {
            assert!(listed.contains("MODP_2048"), "{listed}");
        }
    }
    // The WireGuard client carries on beside them.
    let wg = &rig.clients[0];
    let t = tcp_transfer(
        &rig.server.ns,
        "10.77.0.1:5998".parse().expect("addr"),
        &wg.ns,
        TEN_MB,
        3,
    )
    .expect("TCP through WireGuard");
    assert!(t.intact(TEN_MB), "{t:?}");
    no_drops_and_esp_on_both_workers(&rig);
}

#[test]
fn after_a_sigkill_and_restart_the_user_reconnects_by_itself_within_30_s() {
    let (mut rig, token) = ike_rig_with("iker", |_| {});
    let client = direct(&rig, 2);
    let (psk, v4) = add_user(&rig, &token, "alice", "alice@example.com");
    let mut config = StrongswanConfig::psk("10.201.2.1", "alice@example.com", &psk);
    config.dpd_secs = Some(2);
    let c = Strongswan::start(&client, &scratch(&rig, "sw"), &config).expect("charon");
    connect_and_check_user(&rig, &token, (&client, &c), "alice@example.com", &v4);
    carries_traffic(&rig, &client, &c, 0);

    let mut old = rig.server.take_xgate().expect("running");
    old.daemon.kill_hard();
    let killed = std::time::Instant::now();
    drop(old);
    rig.start_xgate();
    // No step on the client: its liveness check finds the old SA gone and it connects again.
    let back = testbed::wait_until(Duration::from_secs(30), || {
        testbed::ping(&client, "10.77.0.1", 1).is_ok_and(|p| p.received == 1)
    });
    assert!(
        back,
        "no tunnel 30 s after the restart\n{}\n{}",
        c.log(),
        rig.log()
    );
    eprintln!(
        "reconnected {:.1} s after the SIGKILL",
        killed.elapsed().as_secs_f64()
    );
    let state = sas(&rig, &token);
    assert_eq!(state["sas"][0]["addresses"][0], json!(v4), "{state}");
    carries_traffic(&rig, &client, &c, TEN_MB);
}

#[test]
fn the_first_ikev2_user_starts_the_responder_without_a_restart() {
    // [ike] enabled left unset, and no IKEv2 user yet: no responder at start.
    let (rig, token) = ike_rig_with("ikeo", |rig| {
        if let Some(ike) = rig.config.ike.as_mut() {
            ike.enabled = None;
        }
    });
    let (status, text) = call(&rig, "GET", "/api/v1/ike/sas", Some(&token), None);
    assert_eq!(status, 409, "no responder before the first user: {text}");
    let client = direct(&rig, 2);
    let (psk, v4) = add_user(&rig, &token, "alice", "alice@example.com");
    let config = StrongswanConfig::psk("10.201.2.1", "alice@example.com", &psk);
    let c = Strongswan::start(&client, &scratch(&rig, "sw"), &config).expect("charon");
    connect_and_check_user(&rig, &token, (&client, &c), "alice@example.com", &v4);
    carries_traffic(&rig, &client, &c, TEN_MB);
}

/// AF_XDP frames in and out, datagrams sent through the kernel's sockets, ESP packets in and
/// out, as the server counts them.
fn esp_counts(rig: &Rig) -> [u64; 5] {
    [
        "xdp_rx_frames",
        "xdp_tx_frames",
        "outer_kernel_sends",
        "esp_rx_packets",
        "esp_tx_packets",
    ]
    .map(|s| rig.stat(s))
}

#[test]
fn esp_comes_and_goes_through_af_xdp_on_the_nat_t_port() {
    let (rig, token) = ike_rig_with("ikex", |rig| rig.backend = "af-xdp");
    let client = direct(&rig, 2);
    let (psk, v4) = common::ike::add_user(&rig, &token, "alice", "alice@example.com");
    let config = StrongswanConfig::psk("10.201.2.1", "alice@example.com", &psk);
    let charon = Strongswan::start(&client, &scratch(&rig, "sw-x"), &config).expect("charon");
    let who = (&client, &charon);
    connect_and_check_user(&rig, &token, who, "alice@example.com", &v4);
    let counts = || esp_counts(&rig);
    let before = counts();
    carries_traffic(&rig, &client, &charon, TEN_MB);
    let after = counts();
    eprintln!("rx, tx, kernel sends, ESP in, ESP out: {before:?} -> {after:?}");
    let esp_in = after[3] - before[3];
    // The ESP of the transfer came in by AF_XDP (IKE, if any, by the kernel's socket), and
    // the answers left by it too: none through the kernel's socket. A packet the program
    // passes to the kernel (a fragment, reassembled there) reaches the worker by the NAT-T
    // socket instead: one such was seen in a CI run, so a few in a thousand are let by.
    assert!(esp_in > 1000, "{}", rig.show());
    let by_xdp = after[0] - before[0];
    assert!(
        by_xdp * 1000 >= esp_in * 997,
        "{by_xdp} of {esp_in}: {}",
        rig.show()
    );
    assert!(after[1] - before[1] > 100, "{}", rig.show());
    assert_eq!(after[2], before[2], "{}", rig.show());
}

/// Seals `inner` with `out` for `socket` to send raw to `server`.
fn send_raw(
    socket: &RawEspSocket,
    out: &mut Outbound,
    inner: &[u8],
    server: IpAddr,
) -> anyhow::Result<()> {
    let at = ESP_HEADROOM..ESP_HEADROOM + inner.len();
    let mut buf = vec![0u8; at.end + ESP_TAILROOM];
    buf[at.clone()].copy_from_slice(inner);
    let range = out
        .seal(&mut buf, at, NEXT_IPV4)
        .map_err(|x| anyhow::anyhow!("{x:?}"))?;
    socket.send_to(&buf[range], server)
}

/// Pings through the tunnel the testbed's IKE client sets up as `identity` from `local` to
/// `server` (honest NAT detection: none), sending ESP raw and reading the answers raw;
/// returns how many of `pings` were answered. Then one more, 1,600 bytes, that leaves in two
/// fragments (the AF_XDP program leaves those to the kernel, which puts them together).
fn raw_esp_pings(
    (identity, psk): (&str, String),
    (local, server): (&str, IpAddr),
    pings: u16,
) -> anyhow::Result<u16> {
    let user = IkeUser {
        identity: identity.into(),
        proof: Proof::Psk(psk),
    };
    let at = SocketAddr::new(server, 500);
    let (est, nat) = set_up(local, at, &user, &SystemRandom::new())?;
    let e = |e: &dyn std::fmt::Debug| anyhow::anyhow!("{e:?}");
    // The responder claims no NAT where it takes raw ESP.
    if nat.peer_behind_nat || nat.self_behind_nat {
        return Err(e(&format!("NAT detection found {nat:?}")));
    }
    let child = &est.child;
    let mut out = Outbound::new(child.spi_r, &child.suite, &child.i_to_r).map_err(|x| e(&x))?;
    let mut back = Inbound::new(child.spi_i, &child.suite, &child.r_to_i).map_err(|x| e(&x))?;
    let src = est.assignment.v4.ok_or_else(|| e(&"no address"))?.octets();
    let socket = RawEspSocket::open(server)?;
    let mut answered = 0;
    for seq in 0..pings {
        let mut ping = vec![0u8; 84];
        echo_request_v4(&mut ping, src, [10, 77, 0, 1], (0x7e57, seq), b"raw ESP");
        send_raw(&socket, &mut out, &ping, server)?;
        let Some(mut esp) = socket.recv_from(server, Duration::from_secs(2)) else {
            continue;
        };
        let opened = back.open(&mut esp).map_err(|x| e(&x))?;
        let reply = &esp[opened.inner];
        // An echo reply from 10.77.0.1 to us, with our sequence number.
        let ours = reply.len() >= 28
            && reply[9] == 1
            && reply[12..16] == [10, 77, 0, 1]
            && reply[16..20] == src
            && reply[20] == 0
            && reply[26..28] == seq.to_be_bytes();
        answered += u16::from(ours);
    }
    socket.allow_fragments()?;
    let mut big = vec![0u8; 1600];
    let ids = (0x7e57, pings);
    echo_request_v4(&mut big, src, [10, 77, 0, 1], ids, b"fragmented");
    send_raw(&socket, &mut out, &big, server)?;
    Ok(answered)
}

/// With AF_XDP, 20 pings from the testbed's IKE client (no NAT) through raw ESP from
/// `local` to `server`, then one in fragments; every answer raw, every ESP packet in and
/// out by AF_XDP but the fragmented one, which comes through the kernel's raw socket.
fn raw_esp_through_af_xdp(rig: &Rig, token: &str, client: &Netns, ends: (&'static str, IpAddr)) {
    const PINGS: u16 = 20;
    // The client's interface came after the start: ESP before its socket is bound would pass
    // to the kernel (the reader would still take it, but this test wants AF_XDP).
    let bound = testbed::wait_until(Duration::from_secs(5), || {
        rig.log()
            .lines()
            .any(|l| l.contains("xtv2s") && l.contains("AF_XDP socket bound"))
    });
    assert!(bound, "xtv2s not steered:\n{}", rig.log());
    let (psk, _v4) = add_user(rig, token, "alice", "alice@example.com");
    let counts = || esp_counts(rig);
    let before = counts();
    let answered = client
        .enter(move || raw_esp_pings(("alice@example.com", psk), ends, PINGS))
        .expect("enter")
        .unwrap_or_else(|e| panic!("{e}: {}", rig.show()));
    eprintln!(
        "rx, tx, kernel sends, ESP in, ESP out: {before:?} -> {:?}",
        counts()
    );
    assert_eq!(answered, PINGS, "{}", rig.show());
    // The fragmented one came by the kernel's raw socket and its reader to the worker.
    let whole = testbed::wait_until(Duration::from_secs(3), || {
        rig.stat("esp_rx_packets") - before[3] > u64::from(PINGS)
    });
    assert!(whole, "the fragmented ESP packet was lost: {}", rig.show());
    let after = counts();
    assert!(after[4] - before[4] >= u64::from(PINGS), "{}", rig.show());
    // In and out by AF_XDP, nothing through the kernel's sockets.
    assert!(after[0] - before[0] >= u64::from(PINGS), "{}", rig.show());
    assert!(after[1] - before[1] >= u64::from(PINGS), "{}", rig.show());
    assert_eq!(after[2], before[2], "{}", rig.show());
    for reason in [
        "esp_unknown_spi",
        "esp_bad_icv",
        "esp_replayed",
        "esp_malformed",
    ] {
        assert_eq!(rig.drops(reason), 0, "{reason}: {}", rig.show());
    }
}

/// A user with no NAT in front sends ESP unencapsulated (the testbed's IKE client and a raw
/// socket: strongSwan's kernel-libipsec here always asks for UDP): the responder does not
/// claim a NAT, the ESP comes in as IP protocol 50 through AF_XDP, and the answers leave the
/// same way (the client's raw socket sees only IP protocol 50).
#[test]
fn raw_esp_comes_and_goes_through_af_xdp_where_no_nat_is() {
    let (rig, token) = ike_rig_with("ikew", |rig| rig.backend = "af-xdp");
    let client = direct(&rig, 2);
    let server = IpAddr::from([10, 201, 2, 1]);
    raw_esp_through_af_xdp(&rig, &token, &client, ("10.201.2.2", server));
}

/// The same over an IPv6 underlay: IKE, raw ESP frames and IPv6 fragments.
#[test]
fn raw_esp_over_an_ipv6_underlay() {
    let (rig, token) = ike_rig_with("ikev", |rig| rig.backend = "af-xdp");
    let client = direct(&rig, 2);
    ipv6_underlay(&rig.server.ns, &client, ("xtv2s", "xtv2c"), "fd89");
    let server = "fd89::1".parse().expect("v6");
    raw_esp_through_af_xdp(&rig, &token, &client, ("[fd89::2]", server));
}
