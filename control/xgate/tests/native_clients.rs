//! The VPN clients built into the operating systems, emulated by strongSwan configured with
//! exactly each one's default proposals (strongSwan's interoperability pages): each connects,
//! gets its address and DNS, pings, and moves 100 MB intact through the workers.
//!
//! - macOS / iOS: AES-CBC-256 with HMAC-SHA2-256 and PRF-SHA2-256, MODP-2048 or ECP-256, ESP
//!   AES-CBC-256 with HMAC-SHA2-256-128, by certificate and by password (EAP-MSCHAPv2).
//! - Android: AES-GCM and ECP-256, by certificate with RFC 7427 ECDSA signatures.
//! - Windows: AES-CBC-256, SHA-1 and MODP-1024, ESP AES-CBC-256 with HMAC-SHA1-96, by
//!   password (EAP-MSCHAPv2, its IKE identity its address): refused with NO_PROPOSAL_CHOSEN
//!   unless `[ike] legacy_windows` is on, and then connected.
//!
//! And passwords: a wrong one is refused with AUTHENTICATION_FAILED and counted, and never
//! reaches the log; a user locked after two wrong ones is refused even with the right one
//! while another user logs in, and gets in once the lock has run out.

mod common;

use std::path::PathBuf;

use std::time::Duration;

use common::api::call;
use common::ike::{
    add_named, add_user, carries_traffic, client_cert, connect_and_check_user, direct,
    ike_rig_with, pki, sas, scratch, HUNDRED_MB,
};
use common::Rig;
use serde_json::{json, Value};
use testbed::{wait_until, EapLogin, Netns, Strongswan, StrongswanConfig};

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
        ike.lockout_after = Some(2);
        ike.lockout_secs = Some(4);
        dir = d;
    });
    (rig, token, dir)
}

/// Makes password user `name` (its EAP identity) through the API; returns its address.
fn add_password_user(rig: &Rig, token: &str, name: &str, password: &str) -> String {
    let body = json!({ "name": name, "auth": "eap", "password": password });
    let (status, text) = call(rig, "POST", "/api/v1/ike/users", Some(token), Some(body));
    assert_eq!(status, 201, "{text}");
    assert!(
        !text.contains(password),
        "the password is never shown back: {text}"
    );
    let user: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(user["auth"], "eap", "{user}");
    user["addresses"][0]
        .as_str()
        .expect("an address")
        .to_string()
}

/// Makes password user `name` with `xgate ike user add NAME --password`, the password piped
/// in; returns its id and address.
fn cli_password_user(rig: &Rig, token: &str, name: &str, password: &str) -> (i64, String) {
    use std::io::Write as _;
    let mut child = rig
        .server
        .ns
        .command(common::xgate_bin().to_str().expect("path"))
        .args(["ike", "user", "add", name, "--password", "--token", token])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("xgate runs");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{password}").expect("the password goes in");
    drop(stdin);
    let out = child.wait_with_output().expect("xgate ends");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{said}");
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout for a password user"
    );
    assert!(
        said.contains("EAP-MSCHAPv2") && !said.contains(password),
        "{said}"
    );
    let (status, text) = call(rig, "GET", "/api/v1/ike/users", Some(token), None);
    assert_eq!(status, 200, "{text}");
    let listed: Value = serde_json::from_str(&text).expect("JSON");
    assert!(!text.contains(password), "the list shows no password");
    let user = listed["users"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["name"] == name).cloned())
        .expect("listed");
    let address = user["addresses"][0].as_str().expect("an address");
    (user["id"].as_i64().expect("an id"), address.to_string())
}

/// The swanctl.conf xgate exports for password user `id`, its password put in, connects
/// from a namespace of its own (the server's CA placed beside it).
fn exported_swanctl_conf_connects(
    rig: &Rig,
    token: &str,
    (id, password): (i64, &str),
    ca: &PathBuf,
) {
    let out = rig
        .server
        .ns
        .command(common::xgate_bin().to_str().expect("path"))
        .args(["ike", "user", "config", &id.to_string(), "--token", token])
        .output()
        .expect("xgate runs");
    let conf = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && conf.contains("eap-mschapv2"),
        "{conf}"
    );
    assert!(
        conf.contains("secret = \"PASSWORD\""),
        "a placeholder, not a password: {conf}"
    );
    let conf = conf.replace("PASSWORD", password);
    let client = common::client_ns(&rig.server.ns, &rig.tag);
    let dir = scratch(rig, "sw-exported");
    std::fs::create_dir_all(dir.join("x509ca")).expect("x509ca");
    std::fs::copy(ca, dir.join("x509ca/ca.pem")).expect("the CA");
    let c = Strongswan::start_with_swanctl(&client, &dir, &conf).expect("charon");
    let (ok, out) = c.initiate(20).expect("swanctl");
    assert!(
        ok,
        "the exported file did not connect: {out}\n{conf}\n{}",
        c.log()
    );
}

/// `xgate ike user profile ID --format FORMAT`: the file, and what stderr said.
fn cli_profile(rig: &Rig, token: &str, id: i64, format: &str) -> (String, String) {
    let out = rig
        .server
        .ns
        .command(common::xgate_bin().to_str().expect("path"))
        .args([
            "ike",
            "user",
            "profile",
            &id.to_string(),
            "--format",
            format,
        ])
        .args(["--token", token])
        .output()
        .expect("xgate runs");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{format}: {said}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), said)
}

/// maria's Apple profile is a property list with the CA and an IKEv2 payload asking for
/// AES-256-GCM and P-256, her Android profile names the same, and what to do is said.
fn apple_and_android_profiles_hold(rig: &Rig, token: &str, maria: i64) {
    let (text, said) = cli_profile(rig, token, maria, "mobileconfig");
    assert_eq!(
        said.lines().count(),
        3,
        "three lines of instructions: {said}"
    );
    let v = plist::Value::from_reader_xml(text.as_bytes()).expect("a property list");
    let top = v.as_dictionary().expect("a dictionary");
    let payloads = top["PayloadContent"].as_array().expect("payloads");
    let kinds: Vec<_> = payloads
        .iter()
        .filter_map(|p| p.as_dictionary()?.get("PayloadType")?.as_string())
        .collect();
    assert_eq!(kinds, ["com.apple.security.root", "com.apple.vpn.managed"]);
    let ike = payloads[1].as_dictionary().expect("vpn")["IKEv2"]
        .as_dictionary()
        .expect("IKEv2");
    assert_eq!(ike["RemoteAddress"].as_string(), Some("10.201.1.1"));
    assert_eq!(ike["RemoteIdentifier"].as_string(), Some("vpn.example.com"));
    assert_eq!(ike["AuthName"].as_string(), Some("maria"));
    let sa = ike["IKESecurityAssociationParameters"]
        .as_dictionary()
        .expect("SA");
    assert_eq!(sa["EncryptionAlgorithm"].as_string(), Some("AES-256-GCM"));
    assert_eq!(sa["DiffieHellmanGroup"].as_signed_integer(), Some(19));
    let (text, _) = cli_profile(rig, token, maria, "sswan");
    let android: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(android["type"], "ikev2-eap");
    assert_eq!(android["local"]["eap_id"], "maria");
    assert_eq!(android["ike-proposal"], "aes256gcm16-prfsha256-ecp256");
}

/// Bad password-user requests each get a 400 that says what to do.
fn bad_password_requests_are_refused(rig: &Rig, token: &str) {
    for (body, says) in [
        (json!({ "name": "x", "auth": "eap" }), "needs one"),
        (
            json!({ "name": "x", "auth": "eap", "password": "short" }),
            "8 to 256",
        ),
        (
            json!({ "name": "x", "password": "long enough here" }),
            "only a password",
        ),
        (
            json!({ "name": "x", "auth": "eap", "password": "long enough", "psk": "0123456789abcdef" }),
            "no pre-shared key",
        ),
        (json!({ "name": "x", "auth": "mschap" }), "is not a method"),
    ] {
        let (status, text) = call(
            rig,
            "POST",
            "/api/v1/ike/users",
            Some(token),
            Some(body.clone()),
        );
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(says), "{body}: {text}");
    }
}

/// strongSwan on namespace `n` logging in as `user` with `password` (IKE identity
/// `ike_id`), proposing `proposals`.
fn eap_device(
    rig: &Rig,
    (dir, n): (&PathBuf, u8),
    (ike_id, user, password): (&str, &str, &str),
    proposals: (&str, &str),
) -> (Netns, Strongswan) {
    let ns = direct(rig, n);
    let login = EapLogin {
        user: user.into(),
        password: password.into(),
        ca: dir.join("ca.pem"),
    };
    let mut config = StrongswanConfig::eap(&format!("10.201.{n}.1"), ike_id, login);
    config.ike_proposals = proposals.0.into();
    config.esp_proposals = proposals.1.into();
    // A directory of its own each time: a charon leaves its socket and pid file behind.
    static STARTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let k = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = scratch(rig, &format!("sw-{user}-{n}-{k}"));
    let charon = Strongswan::start(&ns, &dir, &config).expect("charon starts");
    (ns, charon)
}

/// The id of user `name`.
fn user_id(rig: &Rig, token: &str, name: &str) -> i64 {
    let (_, text) = call(rig, "GET", "/api/v1/ike/users", Some(token), None);
    let listed: Value = serde_json::from_str(&text).expect("JSON");
    let users = listed["users"].as_array().cloned().unwrap_or_default();
    let user = users.iter().find(|u| u["name"] == name).expect("listed");
    user["id"].as_i64().expect("an id")
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
    // macOS by password: its IKE identity an e-mail address, its EAP identity the user name;
    // the user made with the CLI, the password read from standard input.
    bad_password_requests_are_refused(&rig, &token);
    let (maria, v4) = cli_password_user(&rig, &token, "maria", "maria's own password");
    let apple = ("maria@example.com", "maria", "maria's own password");
    let (ns, charon) = eap_device(
        &rig,
        (&dir, 6),
        apple,
        ("aes256-sha256-modp2048", "aes256-sha256"),
    );
    connect_and_check_user(&rig, &token, (&ns, &charon), "maria", &v4);
    assert_eq!(
        sa_of(&rig, &token, "maria")["encryption"],
        "AES-256-CBC/HMAC-SHA2-256-128"
    );
    carries_traffic(&rig, &ns, &charon, HUNDRED_MB);
    let ca = dir.join("ca.pem");
    exported_swanctl_conf_connects(&rig, &token, (maria, "maria's own password"), &ca);
    apple_and_android_profiles_hold(&rig, &token, maria);
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

    // Windows' defaults by password, legacy mode off: NO_PROPOSAL_CHOSEN, counted.
    add_password_user(&rig, &token, "win", "win's own password");
    let login = ("10.201.5.2", "win", "win's own password");
    let (_ns, windows) = eap_device(&rig, (&dir, 5), login, (WINDOWS_IKE, WINDOWS_ESP));
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
fn windows_defaults_log_in_by_password_in_legacy_mode_and_wrong_passwords_lock() {
    let (rig, token, dir) = pki_rig("natw", true);
    let v4 = add_password_user(&rig, &token, "walter", "walter's own password");
    // Windows sends its address as IKE identity, the user name by EAP.
    let windows = ("10.201.2.2", "walter", "walter's own password");
    let (ns, c) = eap_device(&rig, (&dir, 2), windows, (WINDOWS_IKE, WINDOWS_ESP));
    connect_and_check_user(&rig, &token, (&ns, &c), "walter", &v4);
    let listed = c.list_sas().expect("list");
    assert!(
        listed.contains("AES_CBC-256/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024"),
        "{listed}"
    );
    assert_eq!(
        sa_of(&rig, &token, "walter")["encryption"],
        "AES-256-CBC/HMAC-SHA1-96"
    );
    carries_traffic(&rig, &ns, &c, HUNDRED_MB);
    assert!(
        rig.log().contains("ike.legacy_windows is on"),
        "the start-up log says what legacy mode weakens"
    );
    drop(c);
    // The PowerShell profile sets Windows to AES-GCM, SHA2-256 and P-256: that proposal
    // (emulated) connects too.
    let walter = user_id(&rig, &token, "walter");
    let (script, said) = cli_profile(&rig, &token, walter, "powershell");
    assert_eq!(said.lines().count(), 3, "{said}");
    assert!(
        script.contains("-TunnelType Ikev2 -AuthenticationMethod Eap")
            && script.contains("-CipherTransformConstants GCMAES256")
            && script.contains("-IntegrityCheckMethod SHA256 -DHGroup ECP256"),
        "{script}"
    );
    let gcm = ("aes256gcm16-prfsha256-ecp256", "aes256gcm16");
    let (ns, c) = eap_device(
        &rig,
        (&dir, 5),
        ("10.201.5.2", "walter", "walter's own password"),
        gcm,
    );
    connect_and_check_user(&rig, &token, (&ns, &c), "walter", &v4);
    assert_eq!(sa_of(&rig, &token, "walter")["encryption"], "AES-256-GCM");
    carries_traffic(&rig, &ns, &c, HUNDRED_MB);
    drop(c);
    wrong_passwords_lock_one_user_only(&rig, &token, &dir);
}

/// Wrong passwords: refused, counted, never logged; two lock the user (the right one is
/// refused then too) while another user logs in; the lock runs out after 4 s.
fn wrong_passwords_lock_one_user_only(rig: &Rig, token: &str, dir: &PathBuf) {
    const WRONG: &str = "not-walters-password-7QX";
    let v4 = add_password_user(rig, token, "wanda", "wanda's own password");
    // A namespace of its own each attempt: a deleted one's veth goes away asynchronously.
    let try_with = |n: u8, user: &str, password: &str| {
        let ike_id = format!("10.201.{n}.2");
        let login = (ike_id.as_str(), user, password);
        let (ns, c) = eap_device(
            rig,
            (dir, n),
            login,
            ("aes256-sha256-ecp256", "aes256-sha256"),
        );
        let (ok, out) = c.initiate(10).expect("swanctl");
        (ns, c, ok, out)
    };
    let reasons = || sas(rig, token)["counters"]["auth_failed_reasons"].clone();
    for attempt in 1..=2u64 {
        let (_ns, c, ok, out) = try_with(5 + attempt as u8, "walter", WRONG);
        assert!(!ok, "a wrong password connected: {out}");
        let told = wait_until(Duration::from_secs(5), || {
            c.log().contains("AUTHENTICATION_FAILED")
        });
        assert!(told, "{}", c.log());
        assert_eq!(
            reasons()["wrong password"].as_u64(),
            Some(attempt),
            "{}",
            reasons()
        );
    }
    assert_eq!(sas(rig, token)["counters"]["users_locked"], 1);
    let (_ns, _c, ok, _) = try_with(8, "walter", "walter's own password");
    assert!(!ok, "a locked user got in with the right password");
    assert_eq!(
        reasons()["locked after repeated failures"].as_u64(),
        Some(1),
        "{}",
        reasons()
    );
    // Another user is not locked out.
    let (ns, c) = eap_device(
        rig,
        (dir, 4),
        ("10.201.4.2", "wanda", "wanda's own password"),
        ("aes256-sha256-ecp256", "aes256-sha256"),
    );
    connect_and_check_user(rig, token, (&ns, &c), "wanda", &v4);
    // The lock runs out (4 s after the second failure).
    std::thread::sleep(Duration::from_secs(4));
    let (_ns, c, ok, out) = try_with(9, "walter", "walter's own password");
    assert!(ok, "still locked: {out}\n{}", c.log());
    assert!(!rig.log().contains(WRONG), "a password reached the log");
    assert!(!rig.log().contains("walter's own password"));
}

/// MOBIKE (RFC 4555): a laptop's address changes in the middle of a 100 MB transfer (Wi-Fi
/// to LTE, here one address for another); strongSwan moves the SA with UPDATE_SA_ADDRESSES,
/// the transfer finishes intact, and it is still the same IKE SA.
#[test]
fn a_client_that_changes_address_keeps_its_ike_sa_and_its_transfer() {
    let (rig, token, _) = pki_rig("natm", false);
    let (psk, v4) = add_user(&rig, &token, "lena", "lena@example.com");
    let ns = direct(&rig, 2);
    // The new address must outlive the old one (a secondary goes with its primary unless
    // promoted).
    ns.run(
        "sysctl",
        &["-qw", "net.ipv4.conf.xtv2c.promote_secondaries=1"],
    )
    .expect("sysctl");
    let mut config = StrongswanConfig::psk("10.201.2.1", "lena@example.com", &psk);
    config.ike_proposals = "aes256-sha256-ecp256".into();
    config.esp_proposals = "aes256-sha256".into();
    config.mobike = true;
    let c = Strongswan::start(&ns, &scratch(&rig, "sw-lena"), &config).expect("charon");
    connect_and_check_user(&rig, &token, (&ns, &c), "lena@example.com", &v4);
    let transfer = std::thread::scope(|s| {
        let t = s.spawn(|| {
            let listen = "10.77.0.1:5998".parse().expect("addr");
            testbed::tcp_transfer(&rig.server.ns, listen, &ns, HUNDRED_MB, 11)
        });
        // Mid-transfer the old address goes and a new one comes.
        std::thread::sleep(Duration::from_millis(600));
        ns.ip(&["addr", "add", "10.201.2.7/24", "dev", "xtv2c"])
            .expect("new address");
        ns.ip(&["addr", "del", "10.201.2.2/24", "dev", "xtv2c"])
            .expect("old address gone");
        t.join().expect("the transfer thread")
    });
    let t = transfer.expect("TCP through the moved SA");
    assert!(t.intact(HUNDRED_MB), "{t:?}\n{}", c.log());
    let moved = wait_until(Duration::from_secs(10), || {
        sa_of(&rig, &token, "lena@example.com")["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with("10.201.2.7:"))
    });
    assert!(moved, "{}\n{}", sas(&rig, &token), c.log());
    let counters = &sas(&rig, &token)["counters"];
    assert!(counters["mobike_moves"].as_u64() >= Some(1), "{counters}");
    assert_eq!(
        counters["auth_succeeded"], 1,
        "the same IKE SA throughout: {counters}"
    );
    assert!(c.log().contains("N(UPD_SA_ADDR)"), "{}", c.log());
    carries_traffic(&rig, &ns, &c, 0);
}
