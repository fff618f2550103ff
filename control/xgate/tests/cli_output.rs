//! What the CLI writes is what scripts and shells expect: `xgate peer add NAME > NAME.conf`
//! leaves exactly the client's wg-quick file (which `wg-quick up` brings up with wireguard-go
//! and connects), and a reader that stops early (`| head -1`) ends the CLI quietly.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{xgate_bin, Rig};
use serde_json::json;
use testbed::{ping, wait_until, Implementation};

/// A rig whose xgate keeps peers in a registry with a /16 pool; client files point at
/// client 0's view of the server. Returns it with the token file's path.
fn rig(tag: &str) -> (Rig, String) {
    let mut rig = Rig::new(tag);
    rig.add_client(Implementation::WireguardGo);
    rig.use_registry();
    let endpoint = format!("{}:{}", rig.clients[0].server_underlay, rig.port);
    rig.config.api.get_or_insert_with(Default::default).endpoint = Some(endpoint);
    rig.start_xgate();
    let secret = rig.dir.join("api-tokens.secret");
    (rig, secret.to_string_lossy().into_owned())
}

#[test]
fn peer_add_redirected_to_a_file_is_a_file_wg_quick_brings_up() {
    let (rig, secret) = rig("cliq");
    let file = rig.dir.join("alice.conf");
    // As an operator types it: the summary on the terminal (stderr), the file in the file.
    let shell = format!(
        "{} peer add alice --token-file {secret} > {}",
        xgate_bin().display(),
        file.display()
    );
    let out = rig
        .server
        .ns
        .command("sh")
        .args(["-c", &shell])
        .output()
        .expect("sh runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("alice"),
        "the summary goes to stderr: {stderr}"
    );
    let conf = std::fs::read_to_string(&file).expect("alice.conf");
    // Comments, then the file itself: no table before it.
    let first = conf.lines().find(|l| !l.starts_with('#'));
    assert_eq!(first, Some("[Interface]"), "{conf}");

    // The client namespace's own WireGuard interface goes; wg-quick brings up alice.conf
    // with wireguard-go, and it connects.
    let client = &rig.clients[0];
    client
        .ns
        .ip(&["link", "del", &client.peer.iface])
        .expect("free the client namespace");
    let quick = |verb: &str| {
        client
            .ns
            .command("wg-quick")
            .args([verb, file.to_str().expect("path")])
            .env("WG_QUICK_USERSPACE_IMPLEMENTATION", "wireguard-go")
            .output()
            .expect("wg-quick runs")
    };
    let up = quick("up");
    assert!(
        up.status.success(),
        "wg-quick up ./alice.conf: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let connected = wait_until(Duration::from_secs(15), || {
        ping(&client.ns, "10.77.0.1", 1).is_ok_and(|p| p.received == 1)
    });
    let down = quick("down");
    assert!(connected, "no tunnel with alice.conf: {}", rig.log());
    assert!(down.status.success());
}

#[test]
fn a_reader_that_stops_early_ends_the_cli_quietly() {
    let (rig, secret) = rig("clih");
    let token = std::fs::read_to_string(&secret).expect("token");
    // Enough peers that the table outgrows the pipe's buffer before head exits.
    let peers: Vec<_> = (0..1500)
        .map(|i| json!({ "name": format!("p{i}") }))
        .collect();
    let (status, text) = common::api::call(
        &rig,
        "POST",
        "/api/v1/peers/bulk",
        Some(token.trim()),
        Some(json!({ "peers": peers })),
    );
    assert_eq!(status, 201, "{}", &text[..text.len().min(300)]);
    for command in ["peer list", "peer list --json"] {
        let shell = format!(
            "{} {command} --token-file {secret} | head -1",
            xgate_bin().display()
        );
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                rig.server.ns.name(),
                "bash",
                "-o",
                "pipefail",
                "-c",
            ])
            .arg(&shell)
            .output()
            .expect("bash runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("panicked") && stderr.trim().is_empty(),
            "{command} | head -1: {:?} {stderr}",
            out.status
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    }
}
