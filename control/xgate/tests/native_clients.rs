//! The VPN clients built into the operating systems, emulated by strongSwan configured with
//! exactly each one's default proposals (strongSwan's interoperability pages): each connects,
//! gets its address and DNS, pings, and moves 100 MB intact through the workers.
//!
//! - macOS / iOS: AES-CBC-256 with HMAC-SHA2-256 and PRF-SHA2-256, MODP-2048 or ECP-256, ESP
//!   AES-CBC-256 with HMAC-SHA2-256-128, by certificate.
//! - Android: AES-GCM and ECP-256, by certificate with RFC 7427 ECDSA signatures.
//! - Windows: AES-CBC-256, SHA-1 and MODP-1024, ESP AES-CBC-256 with HMAC-SHA1-96: refused
//!   with NO_PROPOSAL_CHOSEN unless `[ike] legacy_windows` is on, and then connected.

mod common;

use std::path::PathBuf;

use common::ike::{
    add_named, add_user, carries_traffic, client_cert, connect_and_check_user, direct,
    ike_rig_with, pki, sas, scratch, HUNDRED_MB,
};
use common::Rig;
use serde_json::Value;
use testbed::{Netns, Strongswan, StrongswanConfig};

/// Windows' untouched defaults.
const WINDOWS_IKE: &str = "aes256-sha1-modp1024";
const WINDOWS_ESP: &str = "aes256-sha1";

/// A rig whose server has a certificate from `xgate pki` (ECDSA), and users authenticated
/// by theirs; `legacy`: `[ike] legacy_windows`. Returns the rig, token and PKI directory.
fn pki_rig(tag: &str, legacy: bool) -> (Rig, String, PathBuf) {
    let mut dir = PathBuf::new();
    let (rig, token) = ike_rig_with(tag, |rig| {
        let d = rig.dir.join("pki");
        pki(&d, &["ca"]);
        pki(&d, &["server", "vpn.example.com"]);
        for name in ["mac", "iphone", "android"] {
            let identity = format!("{name}@example.com");
            pki(&d, &["client", name, "--identity", &identity]);
        }
        let ike = rig.config.ike.as_mut().expect("[ike]");
        let file = |f: &str| Some(d.join(f).to_string_lossy().into_owned());
        ike.certificate = file("server.pem");
        ike.private_key = file("server.key");
        ike.ca = file("ca.pem");
        ike.legacy_windows = Some(legacy);
        dir = d;
    });
    (rig, token, dir)
}

/// The SA of `identity` as xgate lists it.
fn sa_of(rig: &Rig, token: &str, identity: &str) -> Value {
    let state = sas(rig, token);
    let all = state["sas"].as_array().cloned().unwrap_or_default();
    all.into_iter()
        .find(|s| s["identity"] == identity)
        .unwrap_or_else(|| panic!("no SA of {identity}: {state}"))
}

/// One emulated client: its namespace (10.201.`n`.2) and its strongSwan.
struct Device {
    ns: Netns,
    charon: Strongswan,
    identity: String,
    v4: String,
}

/// Certificate user `name` on namespace `n` proposing `ike` and `esp` only.
fn cert_device(
    rig: &Rig,
    token: &str,
    (dir, n): (&PathBuf, u8),
    name: &str,
    proposals: (&str, &str),
) -> Device {
    let user = add_named(rig, token, name, false);
    let v4 = user["addresses"][0]
        .as_str()
        .expect("an address")
        .to_string();
    let ns = direct(rig, n);
    let identity = format!("{name}@example.com");
    let files = client_cert(dir, name, dir.join("ca.pem"));
    let mut config = StrongswanConfig::certificate(&format!("10.201.{n}.1"), &identity, files);
    config.ike_proposals = proposals.0.into();
    config.esp_proposals = proposals.1.into();
    let charon = Strongswan::start(&ns, &scratch(rig, &format!("sw-{name}")), &config)
        .expect("charon starts");
    Device {
        ns,
        charon,
        identity,
        v4,
    }
}

#[test]
fn apple_and_android_defaults_connect_and_windows_defaults_need_legacy_mode() {
    let (rig, token, dir) = pki_rig("natv", false);
    let devices = [
        cert_device(
            &rig,
            &token,
            (&dir, 2),
            "mac",
            ("aes256-sha256-modp2048", "aes256-sha256"),
        ),
        cert_device(
            &rig,
            &token,
            (&dir, 3),
            "iphone",
            ("aes256-sha256-ecp256", "aes256-sha256"),
        ),
        cert_device(
            &rig,
            &token,
            (&dir, 4),
            "android",
            ("aes256gcm16-prfsha256-ecp256", "aes256gcm16"),
        ),
    ];
    for d in &devices {
        connect_and_check_user(&rig, &token, (&d.ns, &d.charon), &d.identity, &d.v4);
    }
    for (d, cipher) in devices.iter().zip([
        "AES-256-CBC/HMAC-SHA2-256-128",
        "AES-256-CBC/HMAC-SHA2-256-128",
        "AES-256-GCM",
    ]) {
        assert_eq!(sa_of(&rig, &token, &d.identity)["encryption"], cipher);
        let listed = d.charon.list_sas().expect("list");
        carries_traffic(&rig, &d.ns, &d.charon, HUNDRED_MB);
        eprintln!("{}: {listed}", d.identity);
    }
    let mac = devices[0].charon.list_sas().expect("list");
    assert!(
        mac.contains("AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048"),
        "the macOS row's IKE suite: {mac}"
    );
    assert!(mac.contains("AES_CBC-256/HMAC_SHA2_256_128"), "{mac}");
    assert_eq!(rig.drops("esp_bad_icv"), 0, "{}", rig.show());

    // Windows' defaults, legacy mode off: NO_PROPOSAL_CHOSEN, counted.
    let (psk, _) = add_user(&rig, &token, "win", "win@example.com");
    let ns = direct(&rig, 5);
    let mut config = StrongswanConfig::psk("10.201.5.1", "win@example.com", &psk);
    config.ike_proposals = WINDOWS_IKE.into();
    config.esp_proposals = WINDOWS_ESP.into();
    let windows = Strongswan::start(&ns, &scratch(&rig, "sw-win"), &config).expect("charon");
    let (ok, out) = windows.initiate(10).expect("swanctl");
    assert!(!ok, "SHA-1 and MODP-1024 taken with legacy mode off: {out}");
    let told = testbed::wait_until(std::time::Duration::from_secs(5), || {
        windows.log().contains("NO_PROPOSAL_CHOSEN")
    });
    assert!(told, "{}", windows.log());
    let refused = sas(&rig, &token)["counters"]["inits_no_proposal"].as_u64();
    assert!(refused >= Some(1), "counted: {}", sas(&rig, &token));
}

#[test]
fn windows_defaults_connect_in_legacy_mode() {
    let (rig, token, _) = pki_rig("natw", true);
    let (psk, v4) = add_user(&rig, &token, "win", "win@example.com");
    let ns = direct(&rig, 2);
    let mut config = StrongswanConfig::psk("10.201.2.1", "win@example.com", &psk);
    config.ike_proposals = WINDOWS_IKE.into();
    config.esp_proposals = WINDOWS_ESP.into();
    let c = Strongswan::start(&ns, &scratch(&rig, "sw-win"), &config).expect("charon");
    connect_and_check_user(&rig, &token, (&ns, &c), "win@example.com", &v4);
    let listed = c.list_sas().expect("list");
    assert!(
        listed.contains("AES_CBC-256/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024"),
        "{listed}"
    );
    assert_eq!(
        sa_of(&rig, &token, "win@example.com")["encryption"],
        "AES-256-CBC/HMAC-SHA1-96"
    );
    carries_traffic(&rig, &ns, &c, HUNDRED_MB);
    assert!(
        rig.log().contains("ike.legacy_windows is on"),
        "the start-up log says what legacy mode weakens"
    );
}
