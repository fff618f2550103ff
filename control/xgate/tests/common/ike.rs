//! The IKEv2 tests' rig: xgate with a registry, a pool and the responder, strongSwan users
//! made through the API, and the checks that a user is connected and its traffic flows
//! through ESP.

use serde_json::{json, Value};
use testbed::config::{self, Ike};
use testbed::ping::ping_every;
use testbed::{ping, tcp_transfer, veth, CertFiles, Netns, Strongswan};

use super::api::{call, json_of};
use super::Rig;

/// 100 MiB, the size of a full transfer.
pub const HUNDRED_MB: u64 = 100 * 1024 * 1024;

/// A rig with a registry, the API, a pool of 10.77.0.0/24 and fd77::/64, DNS for clients,
/// and the IKEv2 responder with short liveness timers; returns it with the API token.
pub fn ike_rig(tag: &str) -> (Rig, String) {
    ike_rig_with(tag, |_| {})
}

/// `ike_rig`, with `prepare` run on the rig (its config made) before xgate starts: workers,
/// clients, `[ike]` changes.
pub fn ike_rig_with(tag: &str, prepare: impl FnOnce(&mut Rig)) -> (Rig, String) {
    testbed::process::find_program("swanctl").expect("swanctl (strongswan-swanctl) is installed");
    let mut rig = Rig::new(tag);
    rig.use_registry();
    let api = rig.config.api.get_or_insert_with(Default::default);
    api.dns = vec!["10.77.0.53".into()];
    // Where exported client files point.
    api.endpoint = Some("10.201.1.1:51820".into());
    api.client_allowed_ips = vec!["10.77.0.0/16".into(), "fd77::/64".into()];
    rig.config.pools.push(config::Pool {
        ipv4: Some("10.77.0.0/24".into()),
        ipv6: Some("fd77::/64".into()),
        ..config::Pool::default()
    });
    rig.config.ike = Some(Ike {
        enabled: Some(true),
        identity: Some("vpn.example.com".into()),
        dpd_secs: Some(2),
        retransmit_ms: Some(300),
        retransmit_tries: Some(2),
        ..Ike::default()
    });
    prepare(&mut rig);
    rig.start_xgate();
    let token = rig
        .server
        .api_token()
        .expect("an API token")
        .trim()
        .to_string();
    (rig, token)
}

/// Creates IKEv2 user `name` with `identity` through the API; returns its key and address.
pub fn add_user(rig: &Rig, token: &str, name: &str, identity: &str) -> (String, String) {
    let body = json!({ "name": name, "identity": identity });
    let (status, text) = call(rig, "POST", "/api/v1/ike/users", Some(token), Some(body));
    assert_eq!(status, 201, "{text}");
    let user = json_of(&text);
    let psk = user["psk"]
        .as_str()
        .expect("the key, shown once")
        .to_string();
    let v4 = user["addresses"][0]
        .as_str()
        .expect("an address")
        .to_string();
    assert!(v4.starts_with("10.77.0."), "{user}");
    (psk, v4)
}

/// `GET /api/v1/ike/sas`.
pub fn sas(rig: &Rig, token: &str) -> Value {
    let (status, text) = call(rig, "GET", "/api/v1/ike/sas", Some(token), None);
    assert_eq!(status, 200, "{text}");
    json_of(&text)
}

/// Connects `c` and checks both sides agree on the SA of alice@example.com and the address
/// `v4`.
pub fn connect_and_check(rig: &Rig, token: &str, client: &Netns, c: &Strongswan, v4: &str) {
    connect_and_check_user(rig, token, (client, c), "alice@example.com", v4);
}

/// Connects strongSwan `c` in `client` and checks both sides agree on the SA of `identity`
/// and the address `v4`.
pub fn connect_and_check_user(
    rig: &Rig,
    token: &str,
    (client, c): (&Netns, &Strongswan),
    identity: &str,
    v4: &str,
) {
    let (ok, out) = c.initiate(20).expect("swanctl");
    assert!(
        ok,
        "strongSwan: {out}\ncharon log:\n{}\nxgate log:\n{}",
        c.log(),
        rig.log()
    );
    let listed = c.list_sas().expect("list");
    assert!(
        listed.contains("ESTABLISHED") && listed.contains("INSTALLED"),
        "{listed}"
    );
    assert!(listed.contains(v4), "the registry's address: {listed}");
    // charon put the address on an interface of the client's namespace.
    let addrs = client.ip(&["-o", "addr"]).unwrap_or_default();
    assert!(addrs.contains(&format!("{v4}/32")), "{addrs}");
    assert!(
        c.resolv_conf().contains("10.77.0.53"),
        "the DNS server from [api] dns reached the client: {:?}\n{}",
        c.resolv_conf(),
        c.log()
    );
    let state = sas(rig, token);
    let up = state["sas"].as_array().expect("sas");
    assert!(
        up.iter()
            .any(|s| s["identity"] == identity && s["addresses"][0] == v4),
        "{state}"
    );
}

/// ESP carries the user's traffic through the workers: pings to the server's tunnel address
/// answered, then `bytes` over TCP with matching SHA-256 (from the client's virtual address,
/// over charon's kernel-libipsec and xgate's workers).
pub fn carries_traffic(rig: &Rig, client: &Netns, c: &Strongswan, bytes: u64) {
    let p = ping(client, "10.77.0.1", 5).expect("ping runs");
    assert_eq!(p.received, 5, "{p:?}\n{}\n{}", c.log(), rig.log());
    if bytes > 0 {
        let t = tcp_transfer(
            &rig.server.ns,
            "10.77.0.1:5999".parse().expect("addr"),
            client,
            bytes,
            7,
        )
        .expect("TCP through ESP");
        assert!(t.intact(bytes), "{t:?}");
        eprintln!(
            "{} MB through ESP at {:.0} Mbit/s",
            bytes >> 20,
            t.mbit_per_s()
        );
    }
}

/// Rekeys in the next 2 x `seconds` lose nothing. First pings every 10 ms, alone, for
/// `seconds`: every one answered. Then back-to-back 100 MB transfers for as long: each
/// intact, and since TCP would hide a loss, xgate's counts of what a rekey could drop (ESP for
/// an SPI not yet or no longer installed, a replay, a bad ICV) must not move at all. (Pings
/// beside the transfers would also count the client's own congestion drops.)
pub fn nothing_lost_for(rig: &Rig, client: &Netns, c: &Strongswan, seconds: u32) {
    let rekey_drops =
        || ["esp_unknown_spi", "esp_replayed", "esp_bad_icv"].map(|reason| rig.drops(reason));
    let before = rekey_drops();
    let count = seconds * 100;
    let pings = ping_every(client, "10.77.0.1", count, 0.01).expect("ping runs");
    assert_eq!(
        pings.received,
        count,
        "pings lost: {pings:?}\n{}\n{}",
        c.log(),
        rig.log()
    );
    let until = std::time::Instant::now() + std::time::Duration::from_secs(seconds.into());
    let mut transfers = 0;
    while std::time::Instant::now() < until {
        carries_traffic(rig, client, c, HUNDRED_MB);
        transfers += 1;
    }
    assert_eq!(
        rekey_drops(),
        before,
        "ESP dropped under the rekeys: {}",
        rig.show()
    );
    eprintln!("{count} pings, then {transfers} transfers of 100 MB, nothing lost");
}

/// A directory `name` in the rig's scratch directory.
pub fn scratch(rig: &Rig, name: &str) -> std::path::PathBuf {
    rig.dir.join(name)
}

/// A namespace on its own veth to the server: 10.201.`n`.2, the server 10.201.`n`.1.
pub fn direct(rig: &Rig, n: u8) -> Netns {
    let ns = Netns::create(&format!("xt-{}-d{n}", rig.tag)).expect("namespace");
    let (server, client) = (format!("10.201.{n}.1/24"), format!("10.201.{n}.2/24"));
    veth(
        &rig.server.ns,
        &format!("xtv{n}s"),
        &server,
        &ns,
        &format!("xtv{n}c"),
        &client,
    )
    .expect("veth");
    ns
}

/// Gives the server's end of a veth `prefix::1/64` and the client's `prefix::2/64`
/// (`interfaces`: server side, client side), and waits until duplicate address detection is
/// done (before, a client would send from its link-local address).
pub fn ipv6_underlay(server: &Netns, client: &Netns, interfaces: (&str, &str), prefix: &str) {
    server
        .ip(&[
            "-6",
            "addr",
            "add",
            &format!("{prefix}::1/64"),
            "dev",
            interfaces.0,
        ])
        .expect("server v6");
    client
        .ip(&[
            "-6",
            "addr",
            "add",
            &format!("{prefix}::2/64"),
            "dev",
            interfaces.1,
        ])
        .expect("client v6");
    for ns in [server, client] {
        let settled = testbed::wait_until(std::time::Duration::from_secs(10), || {
            ns.ip(&["-6", "addr", "show", "tentative"])
                .is_ok_and(|out| out.trim().is_empty())
        });
        assert!(settled, "IPv6 addresses still tentative in {}", ns.name());
    }
}

/// Runs `xgate pki ARGS --dir DIR`; panics with its output when it fails.
pub fn pki(dir: &std::path::Path, args: &[&str]) {
    if let Err(e) = testbed::pki::xgate_pki(&super::xgate_bin(), dir, args) {
        panic!("{e:#}");
    }
}

/// The files of client `name` issued in `dir`, with the CA `ca` to check the server by.
pub fn client_cert(dir: &std::path::Path, name: &str, ca: std::path::PathBuf) -> CertFiles {
    CertFiles {
        name: name.into(),
        cert: dir.join(format!("clients/{name}.pem")),
        key: dir.join(format!("clients/{name}.key")),
        ca,
    }
}

/// Makes user `name` (identity NAME@example.com) through the API; `psk` false: by
/// certificate. Returns the answer.
pub fn add_named(rig: &Rig, token: &str, name: &str, psk: bool) -> serde_json::Value {
    let mut body = json!({ "name": name, "identity": format!("{name}@example.com") });
    if !psk {
        body["auth"] = json!("certificate");
    }
    let (status, text) = call(rig, "POST", "/api/v1/ike/users", Some(token), Some(body));
    assert_eq!(status, 201, "{text}");
    serde_json::from_str(&text).expect("JSON")
}
