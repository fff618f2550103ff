//! The web console in a real browser (Debian's chromium through chromedriver), against a
//! running xgate in a namespace: sign-in refused and accepted; a wireguard-go client's tunnel
//! shown live without a reload; a user added in the form whose QR code, read back from a
//! screenshot, connects a wireguard-go client, then cut off by revoking in the browser;
//! cross-site and token-less POSTs refused; a viewer sees no form and its forged POST gets
//! 403; every change in the audit log.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::api::{call, json_of, start_with_api, SMALL_POOL};
use common::web::{one_browser, shot, sign_in, CONSOLE};
use common::{xgate_bin, Rig};
use serde_json::json;
use testbed::browser::Browser;
use testbed::{ping, wait_until};

/// The text of the QR code in the PNG `bytes` (a browser screenshot: RGB or RGBA).
fn decode_qr(bytes: &[u8]) -> String {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    let luma = |x: usize, y: usize| {
        let p = &buf[(y * w + x) * channels..][..channels];
        let rgb = &p[..channels.min(3)];
        (rgb.iter().map(|v| u32::from(*v)).sum::<u32>() / rgb.len() as u32) as u8
    };
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, luma);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the screenshot ({w}x{h})");
    grids[0].decode().expect("the QR code decodes").1
}

/// Brings `config` up in client 0's namespace with wg-quick and wireguard-go (the client's
/// own interface goes first); returns the file, for `wg-quick down`.
fn wg_quick_up(rig: &Rig, config: &str) -> PathBuf {
    let client = &rig.clients[0];
    let _ = client.ns.ip(&["link", "del", &client.peer.iface]);
    let file = rig.dir.join("phone.conf");
    std::fs::write(&file, config).expect("config file");
    let up = wg_quick(rig, "up", &file);
    assert!(
        up.status.success(),
        "wg-quick up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    file
}

fn wg_quick(rig: &Rig, verb: &str, file: &Path) -> std::process::Output {
    rig.clients[0]
        .ns
        .command("wg-quick")
        .args([verb, file.to_str().expect("path")])
        .env("WG_QUICK_USERSPACE_IMPLEMENTATION", "wireguard-go")
        .output()
        .expect("wg-quick runs")
}

/// Ids of the registry's peers named `name`.
fn ids_named(rig: &Rig, token: &str, name: &str) -> Vec<i64> {
    let (status, text) = call(
        rig,
        "GET",
        &format!("/api/v1/peers?search={name}"),
        Some(token),
        None,
    );
    assert_eq!(status, 200, "{text}");
    json_of(&text)["peers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p["name"] == json!(name))
                .filter_map(|p| p["id"].as_i64())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_operator_signs_in_sees_tunnels_live_adds_a_user_by_qr_code_and_revokes_it() {
    let _turn = one_browser();
    let (rig, token) = start_with_api("webc", SMALL_POOL);
    let b = Browser::start(&rig.server.ns, &rig.dir, 9515, 1280, 800).expect("browser");
    a_wrong_token_is_refused_and_the_right_one_signs_in(&b, &token);
    a_tunnel_shows_without_a_reload(&rig, &b, &token);
    let file = a_user_added_in_the_form_connects_by_its_qr_code(&rig, &b);
    revoking_in_the_browser_cuts_the_client_off(&rig, &b, &file);
    cross_site_and_token_less_posts_are_refused(&rig, &b, &token);
    every_change_is_audited_and_signing_out_ends_the_session(&b);
}

/// Not signed in, the console sends the browser to the sign-in form; a wrong token stays
/// there, the right one opens the overview.
fn a_wrong_token_is_refused_and_the_right_one_signs_in(b: &Browser, token: &str) {
    b.goto(&format!("{CONSOLE}/")).expect("console");
    assert!(
        b.url().expect("url").ends_with("/login"),
        "{}",
        b.url().unwrap_or_default()
    );
    assert!(!sign_in(b, "xg_wrong"), "a wrong token signs in");
    let error = b.text("#sign-in-error").expect("page").unwrap_or_default();
    assert!(
        error.contains("not accepted"),
        "{error:?}\n{}",
        b.source().unwrap_or_default()
    );
    shot(b, "sign-in");
    assert!(
        sign_in(b, token),
        "the right token: no overview\n{}",
        b.source().unwrap_or_default()
    );
}

/// A client connecting shows in the overview's feed, pushed (no reload), within 2 s.
fn a_tunnel_shows_without_a_reload(rig: &Rig, b: &Browser, token: &str) {
    let key = rig.clients[0].peer.public_key.to_base64();
    let body = json!({ "name": "laptop", "public_key": key });
    let (status, text) = call(rig, "POST", "/api/v1/peers", Some(token), Some(body));
    assert_eq!(status, 201, "{text}");
    let started = Instant::now();
    rig.connect(0, Some(1));
    let shown = b.wait_for(Duration::from_secs(10), |b| {
        b.count("#feed li[data-name='laptop'][data-state='up']")
            .unwrap_or(0)
            > 0
    });
    let took = started.elapsed();
    assert!(shown, "the tunnel never showed\n{}", rig.log());
    println!(
        "wireguard-go client shown online {:.0} ms after it was pointed at xgate",
        took.as_secs_f64() * 1e3
    );
    assert!(took <= Duration::from_secs(2), "shown after {took:?}");
    let online = |b: &Browser| b.text("#online").ok().flatten().as_deref() == Some("1");
    assert!(
        b.wait_for(Duration::from_secs(3), online),
        "the online count never reached 1"
    );
    std::thread::sleep(Duration::from_secs(3));
    // Each worker's row: backend, rates and how busy its thread is.
    let workers = b
        .text("#workers tbody")
        .expect("workers")
        .unwrap_or_default();
    assert!(
        workers.contains("io-uring") && workers.contains('%'),
        "{workers}"
    );
    shot(b, "overview");
}

/// A user added in the form: its QR code, read from the browser's screenshot, is the file
/// shown, and wg-quick brings it up with wireguard-go. Returns the file.
fn a_user_added_in_the_form_connects_by_its_qr_code(rig: &Rig, b: &Browser) -> PathBuf {
    b.goto(&format!("{CONSOLE}/users")).expect("users");
    b.fill("#new-name", "phone").expect("name field");
    b.click("#add-user button[type=submit]").expect("add");
    assert!(
        b.wait_for(Duration::from_secs(5), |b| b.count("#qr").unwrap_or(0) == 1),
        "no QR code"
    );
    let config = decode_qr(&b.element_screenshot("#qr").expect("QR screenshot"));
    let shown = b.text("#config").expect("page").unwrap_or_default();
    assert_eq!(
        config.trim(),
        shown.trim(),
        "the QR code holds the file shown"
    );
    assert!(
        config.contains("PrivateKey = ") && config.contains("Address = 10.77.0.3/32"),
        "{config}"
    );
    shot(b, "user-added");
    let file = wg_quick_up(rig, &config);
    assert!(
        wait_until(Duration::from_secs(15), || {
            ping(&rig.clients[0].ns, "10.77.0.1", 1).is_ok_and(|p| p.received == 1)
        }),
        "no tunnel with the QR code's config\n{}",
        rig.log()
    );
    file
}

/// Revoking the user in the browser cuts its client off.
fn revoking_in_the_browser_cuts_the_client_off(rig: &Rig, b: &Browser, file: &Path) {
    b.goto(&format!("{CONSOLE}/users?q=phone")).expect("search");
    b.click("button[aria-label='Revoke phone']")
        .expect("revoke button");
    let revoked = |b: &Browser| {
        b.text("tr[data-name='phone'] .state")
            .ok()
            .flatten()
            .as_deref()
            == Some("revoked")
    };
    assert!(
        b.wait_for(Duration::from_secs(5), revoked),
        "not shown revoked"
    );
    b.goto(&format!("{CONSOLE}/users")).expect("users");
    shot(b, "users");
    std::thread::sleep(Duration::from_millis(500));
    let after = ping(&rig.clients[0].ns, "10.77.0.1", 2).expect("ping runs");
    let _ = wg_quick(rig, "down", file);
    assert_eq!(after.received, 0, "the revoked client still reaches xgate");
}

/// Every change is in the audit log with who made it; signing out ends the session.
fn every_change_is_audited_and_signing_out_ends_the_session(b: &Browser) {
    b.goto(&format!("{CONSOLE}/audit")).expect("audit page");
    let log = b.text("#audit").expect("audit").unwrap_or_default();
    for needle in [
        "add user",
        "revoke user",
        "created peer \"phone\"",
        "POST /api/v1/peers",
    ] {
        assert!(log.contains(needle), "{needle:?} not in the log:\n{log}");
    }
    shot(b, "audit");
    b.click("header form button[type=submit]")
        .expect("sign out");
    let out = |b: &Browser| b.url().is_ok_and(|u| u.ends_with("/login"));
    assert!(b.wait_for(Duration::from_secs(5), out));
    b.goto(&format!("{CONSOLE}/users")).expect("users");
    assert!(
        b.url().expect("url").ends_with("/login"),
        "signed out, still in"
    );
}

/// A form posted from another site, and a POST of this console's origin without the form's
/// token, change nothing.
fn cross_site_and_token_less_posts_are_refused(rig: &Rig, b: &Browser, token: &str) {
    let page = format!(
        "data:text/html,<form id=f method=post action='{CONSOLE}/users'>\
         <input name=name value=mallory></form><script>f.submit()</script>"
    );
    b.goto(&page).expect("the other site's page");
    assert!(
        b.wait_for(Duration::from_secs(5), |b| {
            b.text("#refusal")
                .ok()
                .flatten()
                .is_some_and(|t| t.contains("cross-site"))
        }),
        "the cross-site POST was not refused: {}",
        b.source().unwrap_or_default()
    );
    b.goto(&format!("{CONSOLE}/users")).expect("users");
    let status = b
        .run_async_script(
            "const done = arguments[arguments.length - 1];\
             fetch('/users', {method: 'POST', body: new URLSearchParams({name: 'mallory'})})\
               .then(r => done(r.status));",
            vec![],
        )
        .expect("fetch");
    assert_eq!(status, json!(403), "a POST without the form's token");
    assert!(
        ids_named(rig, token, "mallory").is_empty(),
        "mallory was created"
    );
}

#[test]
fn a_viewer_sees_everything_and_can_change_nothing() {
    let _turn = one_browser();
    let (rig, token) = start_with_api("webv", SMALL_POOL);
    let (status, text) = call(
        &rig,
        "POST",
        "/api/v1/peers",
        Some(&token),
        Some(json!({ "name": "alice" })),
    );
    assert_eq!(status, 201, "{text}");
    let id = json_of(&text)["peer"]["id"].as_i64().expect("id");
    let token_file = testbed::config::registry_files(&rig.dir).1;
    let out = std::process::Command::new(xgate_bin())
        .args([
            "token",
            "add",
            "watcher",
            "--role",
            "viewer",
            "--token-file",
        ])
        .arg(&token_file)
        .output()
        .expect("xgate token add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let viewer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // The daemon rereads the token file within a second.
    assert!(wait_until(Duration::from_secs(5), || {
        call(&rig, "GET", "/api/v1/peers", Some(&viewer), None).0 == 200
    }));
    let (status, text) = call(
        &rig,
        "POST",
        &format!("/api/v1/peers/{id}/revoke"),
        Some(&viewer),
        None,
    );
    assert_eq!(status, 403, "a viewer's API token revoked: {text}");

    let b = Browser::start(&rig.server.ns, &rig.dir, 9516, 1280, 800).expect("browser");
    assert!(sign_in(&b, &viewer), "the viewer is not signed in");
    assert_eq!(b.text("#role").expect("role").as_deref(), Some("viewer"));
    for page in ["/", "/users", "/audit"] {
        b.goto(&format!("{CONSOLE}{page}")).expect("page");
        assert_eq!(
            b.count("main form[method=post]").expect("forms"),
            0,
            "{page} offers a viewer a form that changes something"
        );
    }
    b.goto(&format!("{CONSOLE}/users")).expect("users");
    assert!(
        b.count("tr[data-name='alice']").expect("rows") == 1,
        "the viewer sees alice"
    );
    // A forged POST with the viewer's own session and form token: still refused.
    let status = b
        .run_async_script(
            "const done = arguments[arguments.length - 1];\
             const csrf = document.querySelector('input[name=csrf]').value;\
             fetch(arguments[0], {method: 'POST', body: new URLSearchParams({csrf})})\
               .then(r => done(r.status));",
            vec![json!(format!("/users/{id}/revoke"))],
        )
        .expect("fetch");
    assert_eq!(status, json!(403), "a viewer's forged revoke");
    let (_, text) = call(
        &rig,
        "GET",
        &format!("/api/v1/peers/{id}"),
        Some(&token),
        None,
    );
    assert!(
        json_of(&text)["revoked_at"].is_null(),
        "alice was revoked: {text}"
    );
}
