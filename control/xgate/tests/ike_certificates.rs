//! IKEv2 with certificates against strongSwan: a CA, the server's certificate and client
//! certificates all made by `xgate pki`; users made through the API to authenticate by
//! certificate. An untrusted, an expired and a revoked certificate are each refused and
//! counted by reason; then a PSK user, an ECDSA user and an RSA user connect at once, each
//! with its registry address and DNS, and each carries 100 MB intact. The RSA user's
//! strongSwan cuts its IKE_AUTH into 500-byte fragments (RFC 7383). A certificate revoked
//! while xgate runs has its SA closed within seconds, and is refused at its next login.

mod common;

use std::path::PathBuf;

use common::api::call;
use common::ike::{
    add_named, carries_traffic, client_cert, connect_and_check_user, direct, ike_rig_with, pki,
    sas, scratch, HUNDRED_MB,
};
use common::Rig;
use std::time::Duration;

use testbed::{wait_until, CertFiles, Netns, Strongswan, StrongswanConfig};

/// strongSwan in `ns` as `name` with `cert`, towards 10.201.`n`.1; `fragments`: it cuts its
/// IKE messages into 500-byte fragments (RFC 7383).
fn charon(
    rig: &Rig,
    ns: &Netns,
    n: u8,
    (name, cert): (&str, CertFiles),
    fragments: bool,
) -> Strongswan {
    let mut config = StrongswanConfig::certificate(
        &format!("10.201.{n}.1"),
        &format!("{name}@example.com"),
        cert,
    );
    if fragments {
        config.fragment_size = Some(500);
    }
    Strongswan::start(ns, &scratch(rig, &format!("sw-{name}")), &config).expect("charon")
}

#[test]
fn certificates_are_checked_and_psk_ecdsa_and_rsa_users_connect_at_once() {
    let mut pki_dir = PathBuf::new();
    let (rig, token) = ike_rig_with("ikec", |rig| {
        let d = rig.dir.join("pki");
        pki(&d, &["ca"]);
        pki(&d, &["server", "vpn.example.com", "--rsa"]);
        pki(&d, &["client", "carol", "--identity", "carol@example.com"]);
        pki(
            &d,
            &["client", "dave", "--identity", "dave@example.com", "--rsa"],
        );
        let expired = ["client", "erin", "--identity", "erin@example.com"];
        pki(&d, &[&expired[..], &["--expires", "2020-01-01"]].concat());
        pki(&d, &["client", "frank", "--identity", "frank@example.com"]);
        pki(&d, &["revoke", "frank"]);
        // mallory's certificate names her, but comes from a CA the server does not know.
        let rogue = rig.dir.join("rogue");
        pki(&rogue, &["ca", "--name", "xgate CA"]);
        pki(
            &rogue,
            &["client", "mallory", "--identity", "mallory@example.com"],
        );
        let ike = rig.config.ike.as_mut().expect("[ike]");
        let file = |f: &str| Some(d.join(f).to_string_lossy().into_owned());
        ike.certificate = file("server.pem");
        ike.private_key = file("server.key");
        ike.ca = file("ca.pem");
        ike.crl = file("crl.pem");
        pki_dir = d;
    });
    let ca = pki_dir.join("ca.pem");
    let alice = add_named(&rig, &token, "alice", true);
    for name in ["carol", "dave", "erin", "frank", "mallory"] {
        let user = add_named(&rig, &token, name, false);
        assert_eq!(user["auth"], "certificate", "{user}");
        assert!(
            user.get("psk").is_none(),
            "no key for a certificate user: {user}"
        );
    }

    // Each bad certificate: strongSwan is told AUTHENTICATION_FAILED, xgate counts why.
    let bad = direct(&rig, 2);
    let rogue_dir = rig.dir.join("rogue");
    for (name, dir, reason) in [
        ("mallory", &rogue_dir, "untrusted"),
        ("erin", &pki_dir, "expired"),
        ("frank", &pki_dir, "revoked"),
    ] {
        let c = charon(
            &rig,
            &bad,
            2,
            (name, client_cert(dir, name, ca.clone())),
            false,
        );
        let (ok, out) = c.initiate(10).expect("swanctl");
        assert!(!ok, "{name} connected: {out}");
        let refused = &sas(&rig, &token)["counters"]["cert_refused"][reason];
        assert_eq!(refused.as_u64(), Some(1), "{name}: {}", sas(&rig, &token));
        assert!(
            c.log().contains("AUTHENTICATION_FAILED"),
            "{name}: {}",
            c.log()
        );
    }
    drop(bad);

    // Three users at once, one per method, each from its own namespace.
    let nets: Vec<Netns> = (3..=5).map(|n| direct(&rig, n)).collect();
    let psk = alice["psk"].as_str().expect("alice's key");
    let psk_conf = StrongswanConfig::psk("10.201.3.1", "alice@example.com", psk);
    let files = |name: &str| client_cert(&pki_dir, name, ca.clone());
    let clients = [
        Strongswan::start(&nets[0], &scratch(&rig, "sw-alice"), &psk_conf).expect("charon"),
        charon(&rig, &nets[1], 4, ("carol", files("carol")), false),
        // dave's IKE_AUTH (an RSA certificate) arrives in fragments.
        charon(&rig, &nets[2], 5, ("dave", files("dave")), true),
    ];
    let users = sas(&rig, &token);
    let address_of = |name: &str| {
        let (status, text) = call(&rig, "GET", "/api/v1/ike/users", Some(&token), None);
        assert_eq!(status, 200, "{text}");
        let listed: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let user = listed["users"]
            .as_array()
            .and_then(|u| u.iter().find(|u| u["name"] == name).cloned())
            .expect("listed");
        user["addresses"][0].as_str().expect("address").to_string()
    };
    for (i, name) in ["alice", "carol", "dave"].iter().enumerate() {
        let identity = format!("{name}@example.com");
        let v4 = address_of(name);
        connect_and_check_user(&rig, &token, (&nets[i], &clients[i]), &identity, &v4);
    }
    for (i, c) in clients.iter().enumerate() {
        carries_traffic(&rig, &nets[i], c, HUNDRED_MB);
    }
    let up = sas(&rig, &token);
    assert_eq!(up["sas"].as_array().map(Vec::len), Some(3), "{up}\n{users}");
    let kept = up["counters"]["fragments_kept"].as_u64().unwrap_or(0);
    assert!(kept >= 2, "dave's IKE_AUTH in fragments: {up}");
    // Revoked while xgate runs: the CRL is read again within seconds, carol's SA is closed
    // with a Delete (the others stay), and her next login is refused for it.
    pki(&pki_dir, &["revoke", "carol"]);
    let identities = || -> Vec<String> {
        let list = sas(&rig, &token);
        let sas = list["sas"].as_array().cloned().unwrap_or_default();
        sas.iter()
            .filter_map(|s| s["identity"].as_str().map(str::to_string))
            .collect()
    };
    let closed = wait_until(Duration::from_secs(10), || {
        !identities().iter().any(|i| i == "carol@example.com")
    });
    assert!(closed, "carol still connected: {}", sas(&rig, &token));
    assert_eq!(
        identities().len(),
        2,
        "alice and dave stay: {}",
        sas(&rig, &token)
    );
    let withdrawn = sas(&rig, &token)["counters"]["certificate_withdrawn"].as_u64();
    assert_eq!(withdrawn, Some(1), "{}", sas(&rig, &token));
    // charon was told with a Delete: it holds no SA either.
    let told = wait_until(Duration::from_secs(5), || {
        clients[1]
            .list_sas()
            .is_ok_and(|l| !l.contains("ESTABLISHED"))
    });
    assert!(told, "{}", clients[1].list_sas().unwrap_or_default());
    let revoked = || sas(&rig, &token)["counters"]["cert_refused"]["revoked"].as_u64();
    let refused = wait_until(Duration::from_secs(15), || {
        let _ = clients[1].initiate(5);
        revoked() == Some(2)
    });
    assert!(refused, "carol still gets in: {}", sas(&rig, &token));
    eprintln!("certificate refusals: {}", up["counters"]["cert_refused"]);
}
