//! The CLI as an operator uses it in the first hour: peers by name (unique, and usable
//! wherever an id is), known groups only, listing flags, API tokens added and revoked with
//! `xgate token` taking effect without a restart, a 401 that says where its token came from,
//! and a second interface on a busy API port refused before it writes a single file.

mod common;

use std::process::Command;
use std::time::Duration;

use common::api::{json_of, start_with_api};
use common::{xgate_bin, Rig};
use proto::PrivateKey;
use serde_json::json;
use testbed::config::XgateConfig;
use testbed::wait_until;

const POOL: &str = "10.77.0.0/24";

/// Runs the CLI in the server's namespace: (exit status, stdout, stderr).
fn cli(rig: &Rig, args: &[&str]) -> (i32, String, String) {
    let out = rig
        .server
        .ns
        .command(xgate_bin().to_str().expect("path"))
        .args(args)
        .output()
        .expect("the CLI runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn peers_are_found_by_name_and_names_and_groups_are_checked() {
    let (rig, _token) = start_with_api("opnm", POOL);
    let secret = rig.dir.join("api-tokens.secret");
    let secret = secret.to_str().expect("path");
    let peer = |args: &[&str]| {
        let mut all = vec!["peer"];
        all.extend_from_slice(args);
        all.extend(["--token-file", secret]);
        cli(&rig, &all)
    };
    let (code, _, err) = peer(&["add", "--name", "alice", "--public-key", ALICE]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = peer(&["add", "alice"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("(409): a peer named \"alice\" exists already (id"),
        "{err}"
    );
    let (code, _, err) = peer(&["add", "bob", "--group", "egn"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the groups are default, eng, sales"), "{err}");
    let (code, _, err) = peer(&["add", "bob", "--group", "eng"]);
    assert_eq!(code, 0, "{err}");

    // The name wherever an id goes.
    let (_, shown, err) = peer(&["show", "alice", "--json"]);
    assert_eq!(json_of(&shown)["public_key"], json!(ALICE), "{err}");
    let (_, config, err) = peer(&["config", "alice"]);
    assert!(config.contains("[Interface]"), "{config}{err}");
    let (code, revoked, err) = peer(&["revoke", "alice", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(json_of(&revoked)["revoked_at"].is_u64(), "{revoked}");

    // Listing: revoked peers only when asked; one page with --limit.
    let names = |listing: &str| -> Vec<String> {
        json_of(listing)
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str().map(String::from))
            .collect()
    };
    let (_, active, _) = peer(&["list", "--json"]);
    assert_eq!(names(&active), ["bob"]);
    let (_, all, _) = peer(&["list", "--revoked", "--json"]);
    assert_eq!(names(&all), ["alice", "bob"]);
    let (_, page, more) = peer(&["list", "--revoked", "--limit", "1", "--json"]);
    assert_eq!(names(&page), ["alice"]);
    assert!(more.contains("more: --after "), "{more}");
    let (_, eng, _) = peer(&["list", "--group", "eng", "--json"]);
    assert_eq!(names(&eng), ["bob"]);

    let (code, _, err) = peer(&["rm", "alice"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = peer(&["show", "alice"]);
    assert_eq!(code, 1);
    assert!(err.contains("(404): no peer \"alice\""), "{err}");
}

/// A key for alice, made once.
const ALICE: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";

#[test]
fn tokens_added_and_revoked_with_the_cli_apply_without_a_restart() {
    let (rig, _token) = start_with_api("optk", POOL);
    let tokens = testbed::config::registry_files(&rig.dir).1;
    let tokens = tokens.to_str().expect("path");
    let (code, token, err) = cli(&rig, &["token", "add", "ci-runner", "--token-file", tokens]);
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_string();
    assert!(
        token.starts_with("xg_") && err.contains("shown this once"),
        "{token} {err}"
    );
    let status = |token: &str| cli(&rig, &["status", "--json", "--token", token]);
    // The daemon rereads the file within a second; no signal, no restart.
    assert!(
        wait_until(Duration::from_secs(5), || status(&token).0 == 0),
        "the new token was never accepted: {}",
        status(&token).2
    );
    let (_, listed, _) = cli(&rig, &["token", "list", "--token-file", tokens]);
    assert!(listed.contains("ci-runner"), "{listed}");
    let (code, _, err) = cli(
        &rig,
        &["token", "revoke", "ci-runner", "--token-file", tokens],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        wait_until(Duration::from_secs(5), || status(&token).0 == 1),
        "the revoked token still works"
    );
    // A 401 says where the refused token came from.
    let stale = rig.dir.join("stale.secret");
    std::fs::write(&stale, format!("{token}\n")).expect("stale token file");
    let stale = stale.to_str().expect("path");
    let (code, _, err) = cli(&rig, &["status", "--token-file", stale]);
    assert_eq!(code, 1);
    assert!(
        err.contains("(401)") && err.contains(&format!("the token came from --token-file {stale}")),
        "{err}"
    );
}

#[test]
fn a_second_interface_on_a_busy_api_port_is_refused_before_it_writes_a_file() {
    let (rig, _token) = start_with_api("opbz", POOL);
    let fresh = rig.dir.join("second");
    std::fs::create_dir_all(&fresh).expect("dir");
    let key = PrivateKey::generate(&mut rand_core::OsRng);
    let config =
        XgateConfig::server("xgopbz2", &key, rig.port + 1, &["10.98.0.1/24"]).registry_in(&fresh);
    let path = rig.dir.join("second.toml");
    config.write(&path).expect("config");
    let out = rig
        .server
        .ns
        .command(xgate_bin().to_str().expect("path"))
        .args(["up", "--config", path.to_str().expect("path")])
        .output()
        .expect("xgate runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("api.listen: 127.0.0.1:9180 is in use")
            && err.contains("[api] listen = \"127.0.0.1:9181\""),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&fresh)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    assert!(
        Command::new("ip")
            .args(["-n", rig.server.ns.name(), "link", "show", "xgopbz2"])
            .output()
            .is_ok_and(|o| !o.status.success()),
        "the second interface exists"
    );
}

#[test]
fn without_an_endpoint_xgate_guesses_the_default_routes_address_and_says_so() {
    let mut rig = Rig::new("opep");
    rig.add_client(testbed::Implementation::WireguardGo);
    // The server's default route leads out through client 0's link (nothing is sent to it:
    // the route only picks the source address).
    let (net, _) = rig.clients[0]
        .server_underlay
        .rsplit_once('.')
        .expect("an IPv4 address");
    let via = format!("{net}.2");
    rig.server
        .ns
        .ip(&["route", "add", "default", "via", &via])
        .expect("default route");
    rig.use_registry();
    rig.start_xgate();
    let secret = rig.dir.join("api-tokens.secret");
    let secret = secret.to_str().expect("path");
    let (code, file, err) = cli(&rig, &["peer", "add", "carol", "--token-file", secret]);
    assert_eq!(code, 0, "{err}");
    let guessed = format!("{}:{}", rig.clients[0].server_underlay, rig.port);
    assert!(
        file.contains(&format!("Endpoint = {guessed}")),
        "the default route's address: {file}"
    );
    assert!(
        err.contains(&format!(
            "warning: [api] endpoint is not set: client files carry the guessed endpoint {guessed}"
        )),
        "{err}"
    );
    let (_, status, status_err) = cli(&rig, &["status", "--json", "--token-file", secret]);
    assert!(status_err.contains("guessed endpoint"), "{status_err}");

    // Never connected is null in every JSON output: status, the peer list, and `xgate show`
    // with no interface named (which lists every interface xgate serves here).
    assert_eq!(
        json_of(&status)["peers"][0]["latest_handshake"],
        json!(null),
        "{status}"
    );
    let (_, listed, _) = cli(&rig, &["peer", "list", "--json", "--token-file", secret]);
    assert_eq!(
        json_of(&listed)[0]["last_handshake"],
        json!(null),
        "{listed}"
    );
    let (code, shown, err) = cli(&rig, &["show", "--json"]);
    assert_eq!(code, 0, "{err}");
    let shown = json_of(&shown);
    let ours = shown
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["interface"] == json!(rig.iface()))
        .unwrap_or_else(|| panic!("{} not listed: {shown}", rig.iface()));
    assert_eq!(ours["listen_port"], json!(rig.port), "{ours}");
    assert_eq!(ours["peers"][0]["latest_handshake"], json!(null), "{ours}");
}

#[test]
fn a_second_interface_on_the_same_tunnel_prefix_is_warned_about() {
    let (rig, _token) = start_with_api("opsp", POOL);
    let key = PrivateKey::generate(&mut rand_core::OsRng);
    // 10.77.9.1/16 is inside the first interface's 10.77.0.0/16.
    let config = XgateConfig::server("xgopsp2", &key, rig.port + 1, &["10.77.9.1/16"]);
    let path = rig.dir.join("second.toml");
    config.write(&path).expect("config");
    let mut cmd = rig.server.ns.command(xgate_bin().to_str().expect("path"));
    cmd.args(["up", "--config", path.to_str().expect("path")]);
    let log = rig.dir.join("second.log");
    let mut second = testbed::process::Daemon::spawn(cmd, &log).expect("second xgate");
    let up = wait_until(Duration::from_secs(15), || {
        second.log_text().contains("xgate is up") || !second.is_running()
    });
    let text = second.log_text();
    assert_eq!(
        second.signal_and_wait(libc::SIGTERM, Duration::from_secs(10)),
        Some(0),
        "{text}"
    );
    assert!(up && text.contains("xgate is up"), "{text}");
    assert!(
        text.contains(&format!(
            "interface.address: 10.77.0.0/16 is also claimed by interface {}",
            rig.iface()
        )),
        "{text}"
    );
}
