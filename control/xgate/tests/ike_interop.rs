//! IKEv2 in the daemon against strongSwan, the reference implementation: a user made through
//! the HTTP API (identity, a key of its own, addresses from the registry's pool) connects
//! with a real `charon` (kernel-libipsec, NAT-T as it needs) to `xgate up`. strongSwan must
//! report the IKE and the CHILD SA established with the address the registry gave, xgate
//! must list the SA; a client that vanishes is found dead and its SA removed; a wrong key is
//! refused and counted while the right one still connects. AES-256-GCM, ChaCha20-Poly1305,
//! and an IPv6 underlay.

mod common;

use std::time::Duration;

use common::api::call;
use common::ike::{
    add_user, carries_traffic, connect_and_check, ike_rig, ipv6_underlay, nothing_lost_for, sas,
    scratch, HUNDRED_MB,
};
use common::{client_ns, Rig};
use testbed::{ping, wait_until, Strongswan, StrongswanConfig};

/// ESP with an SPI nobody has, and a real SPI's packet with a bad ICV and replayed, sent at
/// the NAT-T port: each dropped and counted by reason, and the user's traffic carries on.
fn refuses_forged_esp(rig: &Rig, client: &testbed::Netns, c: &Strongswan) {
    // Our SPI of the SA is strongSwan's outbound one: "out  c1a2b3c4,  0 bytes, ...".
    let listed = c.list_sas().expect("list");
    let theirs = listed
        .split_whitespace()
        .skip_while(|w| *w != "out")
        .nth(1)
        .and_then(|w| u32::from_str_radix(w.trim_end_matches(','), 16).ok())
        .expect("our inbound SPI in strongSwan's listing (its \"out\")");
    let before = (rig.drops("esp_unknown_spi"), rig.drops("esp_bad_icv"));
    client
        .enter(move || {
            let s = std::net::UdpSocket::bind("10.201.1.2:0").expect("socket");
            let mut forged = vec![0x5au8; 120];
            forged[..4].copy_from_slice(&0x00ab_cdefu32.to_be_bytes());
            s.send_to(&forged, "10.201.1.1:4500").expect("send");
            forged[..4].copy_from_slice(&theirs.to_be_bytes());
            forged[4..8].copy_from_slice(&1_000_000u32.to_be_bytes());
            s.send_to(&forged, "10.201.1.1:4500").expect("send");
        })
        .expect("namespace");
    let counted = wait_until(Duration::from_secs(5), || {
        rig.drops("esp_unknown_spi") > before.0 && rig.drops("esp_bad_icv") > before.1
    });
    assert!(counted, "{}", rig.show());
    carries_traffic(rig, client, c, 0);
}

#[test]
fn strongswan_connects_is_found_dead_and_a_wrong_key_is_refused() {
    let (rig, token) = ike_rig("ikep");
    let client = client_ns(&rig.server.ns, "ikep");
    let (psk, v4) = add_user(&rig, &token, "alice", "alice@example.com");
    let mut config = StrongswanConfig::psk("10.201.1.1", "alice@example.com", &psk);
    let mut charon =
        Strongswan::start(&client, &scratch(&rig, "sw1"), &config).expect("charon starts");
    connect_and_check(&rig, &token, &client, &charon, &v4);
    carries_traffic(&rig, &client, &charon, HUNDRED_MB);
    // The SA's ESP bytes, as the workers count them (published once a second).
    let counted = wait_until(Duration::from_secs(5), || {
        sas(&rig, &token)["sas"][0]["rx_bytes"].as_u64() > Some(HUNDRED_MB)
    });
    assert!(counted, "{}", sas(&rig, &token));
    refuses_forged_esp(&rig, &client, &charon);

    // The client vanishes: 2 s of quiet, a check sent twice (0.3 s, then 0.6 s), then dead.
    charon.kill();
    let gone = wait_until(Duration::from_secs(15), || {
        sas(&rig, &token)["sas"]
            .as_array()
            .is_some_and(Vec::is_empty)
    });
    assert!(gone, "the SA outlived its client: {}", sas(&rig, &token));
    assert_eq!(sas(&rig, &token)["counters"]["dead_peers"], 1);
    // Its tunnel is gone from the workers: the address routes nowhere.
    let unrouted = rig.drops("no_route");
    let _ = ping(&rig.server.ns, &v4, 1);
    let dropped = wait_until(Duration::from_secs(5), || rig.drops("no_route") > unrouted);
    assert!(dropped, "{}", rig.show());
    drop(charon);

    // A wrong key is refused with AUTHENTICATION_FAILED and counted.
    config.psk = "not alice's key, though long enough".into();
    let wrong = Strongswan::start(&client, &scratch(&rig, "sw2"), &config).expect("charon");
    let (ok, out) = wrong.initiate(15).expect("swanctl");
    assert!(!ok, "a wrong key connected: {out}");
    // charon's log file is written a moment after swanctl returns.
    let said = wait_until(Duration::from_secs(5), || {
        wrong.log().contains("AUTHENTICATION_FAILED")
    });
    assert!(said, "{}", wrong.log());
    assert_eq!(sas(&rig, &token)["counters"]["auth_failed"], 1);
    // And /metrics says so within its publication period.
    let scraped = wait_until(Duration::from_secs(5), || {
        let (_, text) = call(&rig, "GET", "/metrics", None, None);
        text.lines()
            .any(|l| l == "xgate_ike_auth_total{outcome=\"authentication_failed\"} 1")
            && text
                .lines()
                .any(|l| l == "xgate_ike_sas_ended_total{reason=\"dead\"} 1")
    });
    assert!(scraped, "{}", call(&rig, "GET", "/metrics", None, None).1);
    drop(wrong);

    // And the right key still connects.
    config.psk = psk;
    let again = Strongswan::start(&client, &scratch(&rig, "sw3"), &config).expect("charon");
    connect_and_check(&rig, &token, &client, &again, &v4);
}

#[test]
fn strongswan_connects_with_chacha20_poly1305() {
    let (rig, token) = ike_rig("ikec");
    let client = client_ns(&rig.server.ns, "ikec");
    let (psk, v4) = add_user(&rig, &token, "alice", "alice@example.com");
    let mut config = StrongswanConfig::psk("10.201.1.1", "alice@example.com", &psk);
    config.ike_proposals = "chacha20poly1305-prfsha256-x25519".into();
    // Every three seconds a CHILD_SA rekey, with perfect forward secrecy.
    config.esp_proposals = "chacha20poly1305-x25519".into();
    config.rekey_secs = Some(3);
    let c = Strongswan::start(&client, &scratch(&rig, "sw"), &config).expect("charon");
    connect_and_check(&rig, &token, &client, &c, &v4);
    let listed = c.list_sas().expect("list");
    assert!(listed.contains("CHACHA20_POLY1305"), "{listed}");
    assert_eq!(
        sas(&rig, &token)["sas"][0]["encryption"],
        "ChaCha20-Poly1305"
    );
    // strongSwan rekeys the CHILD_SA (with a new X25519) every 3 s and deletes the old one,
    // under pings and then under transfers, which lose nothing.
    nothing_lost_for(&rig, &client, &c, 8);
    let c_now = &sas(&rig, &token)["counters"];
    assert!(
        c_now["children_rekeyed"].as_u64() >= Some(4),
        "rekeys under the pings and under the transfers: {c_now}"
    );
    let rekeyed = wait_until(Duration::from_secs(20), || {
        let c = &sas(&rig, &token)["counters"];
        c["children_rekeyed"].as_u64() >= Some(2) && c["children_deleted"].as_u64() >= Some(2)
    });
    assert!(rekeyed, "{}\n{}", sas(&rig, &token), c.log());
    let listed = c.list_sas().expect("list");
    assert!(
        listed.contains("ESTABLISHED") && listed.contains("INSTALLED"),
        "{listed}"
    );
    let state = sas(&rig, &token);
    assert!(state["sas"][0]["child_rekeyed"].is_u64(), "{state}");
    assert_eq!(
        state["counters"]["auth_succeeded"], 1,
        "the same IKE SA throughout"
    );
}

/// `xgate ike ...` with the rig's API and token, run in the server's namespace.
fn xgate_ike(rig: &Rig, token: &str, args: &[&str]) -> String {
    let out = rig
        .server
        .ns
        .command(common::xgate_bin().to_str().expect("path"))
        .arg("ike")
        .args(args)
        .args(["--token", token])
        .output()
        .expect("xgate runs");
    assert!(
        out.status.success(),
        "xgate ike {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_user_made_with_the_cli_connects_with_the_exported_swanctl_conf() {
    let (rig, token) = ike_rig("ikex");
    let client = client_ns(&rig.server.ns, "ikex");
    let psk = xgate_ike(
        &rig,
        &token,
        &["user", "add", "bob", "--identity", "bob@example.com"],
    );
    assert!(psk.trim().len() >= 16, "the key alone on stdout: {psk:?}");
    let listed = xgate_ike(&rig, &token, &["user", "list"]);
    assert!(listed.contains("bob@example.com"), "{listed}");
    let conf = xgate_ike(&rig, &token, &["user", "config", "1"]);
    assert!(conf.contains(psk.trim()), "the file carries the key");
    let c = Strongswan::start_with_swanctl(&client, &scratch(&rig, "sw"), &conf).expect("charon");
    let (ok, out) = c.initiate(20).expect("swanctl");
    assert!(
        ok,
        "the exported file did not connect: {out}\n{conf}\n{}",
        c.log()
    );
    carries_traffic(&rig, &client, &c, 0);
    let status = xgate_ike(&rig, &token, &["status"]);
    assert!(
        status.contains("bob@example.com") && status.contains("10.77.0.2"),
        "{status}"
    );
    // Removing the user closes its SA: charon is told with a Delete.
    xgate_ike(&rig, &token, &["user", "rm", "1"]);
    let closed = wait_until(Duration::from_secs(10), || {
        c.list_sas().is_ok_and(|l| !l.contains("ESTABLISHED"))
    });
    assert!(closed, "{}", c.list_sas().unwrap_or_default());
}

#[test]
fn strongswan_connects_over_an_ipv6_underlay() {
    let (rig, token) = ike_rig("ike6");
    let client = client_ns(&rig.server.ns, "ike6");
    ipv6_underlay(&rig.server.ns, &client, ("xtv1s", "xtv1c"), "fd88");
    let (psk, v4) = add_user(&rig, &token, "alice", "alice@example.com");
    let mut config = StrongswanConfig::psk("fd88::1", "alice@example.com", &psk);
    // P-384 and HMAC-SHA2-384 here (RFC 5903's group 20), in IKE_SA_INIT and every rekey.
    config.ike_proposals = "aes256gcm16-prfsha384-ecp384".into();
    // The IKE SA is rekeyed every three seconds; the user and the CHILD_SA carry on.
    config.ike_rekey_secs = Some(3);
    let c = Strongswan::start(&client, &scratch(&rig, "sw"), &config).expect("charon");
    connect_and_check(&rig, &token, &client, &c, &v4);
    nothing_lost_for(&rig, &client, &c, 8);
    let ike_now = &sas(&rig, &token)["counters"]["ike_rekeyed"];
    assert!(
        ike_now.as_u64() >= Some(4),
        "IKE rekeys under the pings and under the transfers: {ike_now}"
    );
    let rekeyed = wait_until(Duration::from_secs(15), || {
        sas(&rig, &token)["counters"]["ike_rekeyed"].as_u64() >= Some(2)
    });
    assert!(rekeyed, "{}\n{}", sas(&rig, &token), c.log());
    let listed = c.list_sas().expect("list");
    assert!(
        listed.contains("ESTABLISHED") && listed.contains("INSTALLED"),
        "{listed}"
    );
    let state = sas(&rig, &token);
    assert_eq!(state["sas"].as_array().map(Vec::len), Some(1), "{state}");
    assert!(state["sas"][0]["ike_rekeyed"].is_u64(), "{state}");
    assert_eq!(
        state["counters"]["auth_succeeded"], 1,
        "rekeyed, never reauthenticated"
    );
    let state = sas(&rig, &token);
    assert!(
        state["sas"][0]["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with("[fd88::2]")),
        "{state}"
    );
}
