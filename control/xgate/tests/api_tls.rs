//! The API off loopback: over HTTPS a client that trusts the operator's CA completes requests
//! (xgate's own CLI, on rustls, and curl, on OpenSSL), while plain HTTP to the same port gets
//! no HTTP answer; plain HTTP off loopback, when asked for, is warned about in every status.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{xgate_bin, Rig};
use testbed::{Implementation, Netns};

/// Runs `program args` in `ns`, returning its whole output.
fn run_in(ns: &Netns, program: &Path, args: &[&str]) -> Output {
    ns.command(&program.to_string_lossy())
        .args(args)
        .output()
        .expect("the command runs")
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl installed (apt install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA, and a certificate it signed for `address`: (CA, certificate, key).
fn certificates(dir: &Path, address: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=xgate test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(dir, &ca);
    let mut request = vec!["req", "-subj", "/CN=xgate API"];
    request.extend(ec);
    request.extend(["-keyout", "api.key", "-out", "api.csr"]);
    openssl(dir, &request);
    std::fs::write(
        dir.join("san.ext"),
        format!("subjectAltName=IP:{address}\nextendedKeyUsage=serverAuth\n"),
    )
    .expect("extension file");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "api.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "api.pem",
        ],
    );
    (dir.join("ca.pem"), dir.join("api.pem"), dir.join("api.key"))
}

#[test]
fn https_answers_clients_that_trust_the_ca_and_plain_http_gets_nothing() {
    let mut rig = Rig::new("apitls");
    rig.add_client(Implementation::WireguardGo);
    rig.use_registry();
    let address = rig.clients[0].server_underlay.clone();
    let (ca, cert, key) = certificates(&rig.dir, &address);
    let api = rig.config.api.get_or_insert_with(Default::default);
    api.listen = Some(format!("{address}:9180"));
    api.tls_cert = Some(cert);
    api.tls_key = Some(key);
    rig.start_xgate();
    let token = rig.server.api_token().expect("token").trim().to_string();
    let url = format!("https://{address}:9180");
    let client_ns = &rig.clients[0].ns;

    // xgate's CLI (rustls), trusting the CA.
    let ca_text = ca.to_string_lossy().to_string();
    let args = [
        "status",
        "--api",
        &url,
        "--ca-file",
        &ca_text,
        "--token",
        &token,
    ];
    let out = run_in(client_ns, &xgate_bin(), &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("firewall: kernel UDP"),
        "xgate status over HTTPS: {stdout} {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        rig.log()
    );
    // Without the CA the certificate is not trusted, and nothing is sent.
    let out = run_in(client_ns, &xgate_bin(), &args[..3]);
    assert!(
        !out.status.success(),
        "an untrusted certificate was accepted"
    );

    // curl (OpenSSL), trusting the CA.
    let bearer = format!("Authorization: Bearer {token}");
    let status_url = format!("{url}/api/v1/status");
    let curl = [
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        &ca_text,
        "-H",
        &bearer,
        &status_url,
    ];
    let out = run_in(client_ns, Path::new("curl"), &curl);
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && body.contains("\"firewall\""),
        "curl over HTTPS: {body} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The web console over the same HTTPS: its session cookie is Secure (and HttpOnly,
    // SameSite=Strict), never sent back over plain HTTP.
    let form = format!("token={token}");
    let login_url = format!("{url}/login");
    let login = [
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        &ca_text,
        "-o",
        "/dev/null",
        "-D",
        "-",
        "--data",
        &form,
        &login_url,
    ];
    let out = run_in(client_ns, Path::new("curl"), &login);
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let cookie = head
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .unwrap_or_default();
    for attribute in ["httponly", "samesite=strict", "secure"] {
        assert!(
            cookie.contains(attribute),
            "the console's cookie over HTTPS lacks {attribute}: {head}"
        );
    }

    // Plain HTTP to the HTTPS port: no HTTP answer, and no status data.
    let target = format!("{address}:9180");
    let answer = client_ns
        .enter(move || {
            let mut s = TcpStream::connect(&target).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(15)))
                .expect("timeout");
            let request = format!("GET /api/v1/status HTTP/1.1\r\nHost: x\r\n{bearer}\r\n\r\n");
            s.write_all(request.as_bytes()).expect("send");
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            got
        })
        .expect("from the client namespace");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        !text.contains("HTTP/") && !text.contains("peers") && answer.len() < 64,
        "plain HTTP got an answer: {text:?}"
    );
}

#[test]
fn plain_http_off_loopback_when_asked_is_warned_about_at_start_and_in_status() {
    let mut rig = Rig::new("apipln");
    rig.add_client(Implementation::WireguardGo);
    rig.use_registry();
    let api = rig.config.api.get_or_insert_with(Default::default);
    api.listen = Some("0.0.0.0:9180".into());
    api.insecure_plaintext = Some(true);
    rig.start_xgate();
    let token = rig.server.api_token().expect("token").trim().to_string();
    let args = [
        "status",
        "--api",
        "http://127.0.0.1:9180",
        "--token",
        &token,
    ];
    let out = run_in(&rig.server.ns, &xgate_bin(), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("warning:") && stderr.contains("plain HTTP"),
        "xgate status: {stderr}"
    );
    let log = rig.log();
    assert!(
        log.contains("plain HTTP reachable from other hosts"),
        "no warning at start: {log}"
    );
}
