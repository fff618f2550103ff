//! Bad configuration: a missing key file, an unparsable key, overlapping allowed IPs, a port in
//! use and no permission to create a TUN. Each must give one line on stderr that names the field
//! or cause and how to fix it, a non-zero exit, and leave no interface and no socket behind.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_root, scratch, write, xgate_bin};
use proto::PrivateKey;
use testbed::clients::uapi_socket;
use testbed::Netns;

struct Outcome {
    code: Option<i32>,
    stderr: String,
}

/// Runs `xgate up --config FILE` in `ns` (through `prefix`, e.g. setpriv), up to 10 s.
fn up(ns: &Netns, prefix: &[&str], config: &std::path::Path) -> Outcome {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name()])
        .args(prefix)
        .arg(xgate_bin());
    cmd.args(["up", "--config"]).arg(config);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xgate");
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            use std::io::Read;
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            return Outcome {
                code: status.code(),
                stderr,
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("xgate started despite a bad config {}", config.display());
}

fn check(ns: &Netns, iface: &str, outcome: &Outcome, must_mention: &[&str]) {
    assert_ne!(
        outcome.code,
        Some(0),
        "exit code must be non-zero; stderr: {}",
        outcome.stderr
    );
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line, got: {:?}",
        outcome.stderr
    );
    for word in must_mention {
        assert!(
            lines[0].contains(word),
            "{:?} does not mention {word:?}",
            lines[0]
        );
    }
    assert!(
        ns.ip(&["link", "show", iface]).is_err(),
        "interface {iface} left behind"
    );
    assert!(
        !uapi_socket(iface).exists(),
        "socket for {iface} left behind"
    );
}

fn config(name: &str, key_line: &str, peers: &str, port: u16) -> String {
    format!("[interface]\nname = \"{name}\"\n{key_line}\nlisten_port = {port}\naddress = [\"10.77.0.1/16\"]\n{peers}")
}

#[test]
fn missing_and_unparsable_keys_name_the_field() {
    require_root();
    let dir = scratch("cfgkey");
    let ns = Netns::create("xt-cfgkey").expect("ns");
    let missing = write(
        &dir,
        "a.toml",
        &config(
            "xtcfa",
            "private_key_file = \"/nonexistent/xgate.key\"",
            "",
            51820,
        ),
    );
    let o = up(&ns, &[], &missing);
    check(
        &ns,
        "xtcfa",
        &o,
        &[
            "interface.private_key_file",
            "/nonexistent/xgate.key",
            "xgate genkey",
        ],
    );

    let garbled = write(
        &dir,
        "b.toml",
        &config("xtcfb", "private_key = \"not-a-key\"", "", 51820),
    );
    let o = up(&ns, &[], &garbled);
    check(&ns, "xtcfb", &o, &["interface.private_key", "xgate genkey"]);
    // A file xgate cannot use exits 3 (documented: 1 is a failure while running).
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    assert!(
        o.stderr
            .starts_with(&format!("xgate: error: {}: ", garbled.display())),
        "one prefix, the file's name: {}",
        o.stderr
    );
}

#[test]
fn an_api_off_loopback_needs_tls_and_usable_tls_files() {
    require_root();
    let dir = scratch("cfgapi");
    let ns = Netns::create("xt-cfgapi").expect("ns");
    let key = PrivateKey::generate(&mut rand_core::OsRng);
    let interface = config(
        "xtcfapi",
        &format!("private_key = \"{}\"", key.to_base64()),
        "",
        51820,
    );
    let with_api = |api: &str| {
        format!(
            "{interface}[registry]\npath = \"{0}/r.db\"\n[api]\ntoken_file = \"{0}/tokens\"\n{api}",
            dir.display()
        )
    };
    let plain = write(&dir, "a.toml", &with_api("listen = \"0.0.0.0:9180\"\n"));
    let o = up(&ns, &[], &plain);
    check(
        &ns,
        "xtcfapi",
        &o,
        &[
            "api.listen",
            "tls_cert and tls_key",
            "insecure_plaintext = true",
        ],
    );

    // TLS files that hold no certificate are refused before the interface exists.
    write(&dir, "cert.pem", "not a certificate\n");
    write(&dir, "key.pem", "not a key\n");
    let files = format!(
        "listen = \"0.0.0.0:9180\"\ntls_cert = \"{0}/cert.pem\"\ntls_key = \"{0}/key.pem\"\n",
        dir.display()
    );
    let broken = write(&dir, "b.toml", &with_api(&files));
    let o = up(&ns, &[], &broken);
    check(
        &ns,
        "xtcfapi",
        &o,
        &["api.tls_cert", "cert.pem", "no PEM certificate"],
    );
}

#[test]
fn overlapping_allowed_ips_name_both_peers() {
    require_root();
    let dir = scratch("cfgovl");
    let ns = Netns::create("xt-cfgovl").expect("ns");
    let key = PrivateKey::generate(&mut rand_core::OsRng);
    let p1 = PrivateKey::generate(&mut rand_core::OsRng).public_key();
    let p2 = PrivateKey::generate(&mut rand_core::OsRng).public_key();
    let peers = format!(
        "[[peer]]\npublic_key = \"{p1}\"\nallowed_ips = [\"10.77.0.2/32\"]\n[[peer]]\npublic_key = \"{p2}\"\nallowed_ips = [\"10.77.0.9/24\", \"10.77.0.2/32\"]\n"
    );
    let path = write(
        &dir,
        "c.toml",
        &config(
            "xtcfc",
            &format!("private_key = \"{}\"", key.to_base64()),
            &peers,
            51820,
        ),
    );
    let o = up(&ns, &[], &path);
    check(
        &ns,
        "xtcfc",
        &o,
        &["peer[1].allowed_ips[1]", "10.77.0.2/32", "peer[0]"],
    );
}

#[test]
fn port_in_use_is_reported_with_the_port() {
    require_root();
    let dir = scratch("cfgport");
    let ns = Netns::create("xt-cfgport").expect("ns");
    let holder = ns
        .enter(|| UdpSocket::bind("0.0.0.0:51999"))
        .expect("enter")
        .expect("hold the port");
    let key = PrivateKey::generate(&mut rand_core::OsRng);
    let path = write(
        &dir,
        "d.toml",
        &config(
            "xtcfd",
            &format!("private_key = \"{}\"", key.to_base64()),
            "",
            51999,
        ),
    );
    let o = up(&ns, &[], &path);
    check(
        &ns,
        "xtcfd",
        &o,
        &["listen_port", "51999", "already in use", "choose another"],
    );
    assert_eq!(o.code, Some(1), "a failure while starting, not a bad file");
    drop(holder);
}

#[test]
fn no_permission_for_tun_says_what_to_grant() {
    require_root();
    let dir = scratch("cfgperm");
    let ns = Netns::create("xt-cfgperm").expect("ns");
    let key = PrivateKey::generate(&mut rand_core::OsRng);
    let path = write(
        &dir,
        "e.toml",
        &config(
            "xtcfe",
            &format!("private_key = \"{}\"", key.to_base64()),
            "",
            51820,
        ),
    );
    // Root without CAP_NET_ADMIN: what a container or a mis-set systemd unit looks like.
    let o = up(
        &ns,
        &["setpriv", "--bounding-set", "-net_admin", "--"],
        &path,
    );
    check(
        &ns,
        "xtcfe",
        &o,
        &["TUN", "xtcfe", "permission denied", "CAP_NET_ADMIN"],
    );
}
