//! The web console in a real browser (Debian's chromium through chromedriver), against a
//! running xgate in a namespace: sign-in refused and accepted; a wireguard-go client's tunnel
//! shown live without a reload; a user added in the form whose QR code, read back from a
//! screenshot, connects a wireguard-go client, then cut off by revoking in the browser;
//! cross-site and token-less POSTs refused; a viewer sees no form and its forged POST gets
//! 403; every change in the audit log.

mod common;

use std::time::{Duration, Instant};

use common::api::{call, json_of, start_with_api, start_with_api_and, SMALL_POOL};
use common::{xgate_bin, Rig};
use serde_json::json;
use testbed::browser::Browser;
use testbed::{ping, wait_until};

/// Held by each test while it runs: one browser at a time on a small CI machine.
static ONE_BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The lock above, also after another test failed holding it.
fn one_browser() -> std::sync::MutexGuard<'static, ()> {
    ONE_BROWSER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The console as the browser in the server's namespace reaches it.
const CONSOLE: &str = "http://127.0.0.1:9180";

/// Saves a screenshot of the page as `name`.png: into the directory `XGATE_SCREENSHOTS`
/// names (`make screenshots` gives docs/screenshots), else beside the browser's profile.
fn shot(b: &Browser, name: &str) {
    let dir = std::env::var_os("XGATE_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| b.dir.clone());
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    let png = b.screenshot().expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
}

/// Signs in with `token`; true if the overview then shows.
fn sign_in(b: &Browser, token: &str) -> bool {
    b.goto(&format!("{CONSOLE}/login")).expect("sign-in page");
    b.fill("#token", token).expect("token field");
    b.click("#sign-in button[type=submit]").expect("submit");
    b.wait_for(Duration::from_secs(5), |b| {
        b.count("#online").unwrap_or(0) == 1
    })
}

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
fn wg_quick_up(rig: &Rig, config: &str) -> std::path::PathBuf {
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

fn wg_quick(rig: &Rig, verb: &str, file: &std::path::Path) -> std::process::Output {
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

    // Not signed in: the console sends the browser to the sign-in form; a wrong token stays.
    b.goto(&format!("{CONSOLE}/")).expect("console");
    assert!(
        b.url().expect("url").ends_with("/login"),
        "{}",
        b.url().unwrap_or_default()
    );
    assert!(!sign_in(&b, "xg_wrong"), "a wrong token signs in");
    let error = b.text("#sign-in-error").expect("page").unwrap_or_default();
    assert!(
        error.contains("not accepted"),
        "{error:?}\n{}",
        b.source().unwrap_or_default()
    );
    shot(&b, "sign-in");
    assert!(
        sign_in(&b, &token),
        "the right token: no overview\n{}",
        b.source().unwrap_or_default()
    );

    // A client connecting shows in the feed, pushed: no reload.
    let key = rig.clients[0].peer.public_key.to_base64();
    let body = json!({ "name": "laptop", "public_key": key });
    let (status, text) = call(&rig, "POST", "/api/v1/peers", Some(&token), Some(body));
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
    assert!(
        b.wait_for(Duration::from_secs(3), |b| b
            .text("#online")
            .ok()
            .flatten()
            .as_deref()
            == Some("1")),
        "the online count never reached 1"
    );
    std::thread::sleep(Duration::from_secs(3));
    shot(&b, "overview");

    // Add a user in the form: its QR code, as the browser draws it, is a working config.
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
    shot(&b, "user-added");
    let file = wg_quick_up(&rig, &config);
    assert!(
        wait_until(Duration::from_secs(15), || {
            ping(&rig.clients[0].ns, "10.77.0.1", 1).is_ok_and(|p| p.received == 1)
        }),
        "no tunnel with the QR code's config\n{}",
        rig.log()
    );

    // Revoke it in the browser: the client is cut off.
    b.goto(&format!("{CONSOLE}/users?q=phone")).expect("search");
    b.click("button[aria-label='Revoke phone']")
        .expect("revoke button");
    assert!(
        b.wait_for(Duration::from_secs(5), |b| {
            b.text("tr[data-name='phone'] .state")
                .ok()
                .flatten()
                .as_deref()
                == Some("revoked")
        }),
        "not shown revoked"
    );
    b.goto(&format!("{CONSOLE}/users")).expect("users");
    shot(&b, "users");
    std::thread::sleep(Duration::from_millis(500));
    let after = ping(&rig.clients[0].ns, "10.77.0.1", 2).expect("ping runs");
    let _ = wg_quick(&rig, "down", &file);
    assert_eq!(after.received, 0, "the revoked client still reaches xgate");

    cross_site_and_token_less_posts_are_refused(&rig, &b, &token);

    // Every change is in the audit log, with who made it.
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
    shot(&b, "audit");
    b.click("header form button[type=submit]")
        .expect("sign out");
    assert!(b.wait_for(Duration::from_secs(5), |b| b
        .url()
        .is_ok_and(|u| u.ends_with("/login"))));
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

/// The repository's capacity report (what `make surge` writes).
fn bench_results() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench-results");
    std::fs::canonicalize(&dir)
        .expect("bench-results")
        .display()
        .to_string()
}

/// Controls on the page with no label a screen reader could read: no <label for>, no
/// aria-label, no text of their own (hidden inputs aside).
fn unlabelled(b: &Browser) -> Vec<String> {
    let found = b
        .run_script(
            "return Array.from(document.querySelectorAll('input, select, textarea, button'))\
               .filter(e => e.type !== 'hidden')\
               .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')\
                            && !(e.tagName === 'BUTTON' && e.textContent.trim()))\
               .map(e => e.outerHTML.slice(0, 120));",
            vec![],
        )
        .expect("script");
    found
        .as_array()
        .map(|a| a.iter().map(|v| v.to_string()).collect())
        .unwrap_or_default()
}

/// How far the page is wider than the window (0: nothing to scroll sideways).
fn overflow(b: &Browser) -> i64 {
    b.run_script(
        "return document.documentElement.scrollWidth - window.innerWidth;",
        vec![],
    )
    .expect("script")
    .as_i64()
    .unwrap_or(i64::MAX)
}

#[test]
fn every_page_is_labelled_reachable_by_keyboard_and_fits_a_phone() {
    let _turn = one_browser();
    let (rig, token) = start_with_api_and("webp", SMALL_POOL, |rig| {
        let api = rig.config.api.get_or_insert_with(Default::default);
        api.capacity_report = Some(bench_results());
    });
    for name in ["alice", "bob"] {
        let (status, text) = call(
            &rig,
            "POST",
            "/api/v1/peers",
            Some(&token),
            Some(json!({ "name": name, "group": "sales" })),
        );
        assert_eq!(status, 201, "{text}");
    }
    let b = Browser::start(&rig.server.ns, &rig.dir, 9517, 1280, 800).expect("browser");
    assert!(sign_in(&b, &token), "not signed in");
    let pages = [
        "/",
        "/users",
        "/users/1",
        "/groups",
        "/capacity/",
        "/system",
        "/audit",
    ];
    for (width, height, suffix) in [(1280, 800, ""), (390, 844, "-phone")] {
        b.fit_viewport(width, height).expect("viewport");
        for page in pages {
            b.goto(&format!("{CONSOLE}{page}")).expect("page");
            assert_eq!(
                b.count("main h1").expect("heading"),
                1,
                "{page}: no heading"
            );
            let missing = unlabelled(&b);
            assert!(
                missing.is_empty(),
                "{page}: controls without a label: {missing:?}"
            );
            assert!(
                overflow(&b) <= 0,
                "{page} at {width}x{height} scrolls sideways"
            );
        }
        if !suffix.is_empty() {
            b.goto(&format!("{CONSOLE}/")).expect("overview");
            std::thread::sleep(Duration::from_millis(1500));
            shot(&b, &format!("overview{suffix}"));
        }
    }
    b.fit_viewport(1280, 800).expect("viewport");

    // Keyboard only: Tab reaches the search, the new user's name and its group.
    b.goto(&format!("{CONSOLE}/users")).expect("users");
    let mut reached = Vec::new();
    for _ in 0..30 {
        reached.push(b.tab().expect("tab"));
    }
    for id in ["q", "new-name", "new-group"] {
        assert!(
            reached.iter().any(|r| r == id),
            "Tab never reaches #{id}: {reached:?}"
        );
    }

    // Groups: sales is a full tunnel with its own DNS and MTU, and holds both users.
    b.goto(&format!("{CONSOLE}/groups")).expect("groups");
    let sales = b
        .text("tr[data-group='sales']")
        .expect("row")
        .unwrap_or_default();
    for needle in ["full", "10.77.0.53", "1380", "2"] {
        assert!(sales.contains(needle), "{needle:?} not in {sales:?}");
    }
    shot(&b, "groups");

    // A user's page changes its group and its expiry; the list shows the date.
    b.goto(&format!("{CONSOLE}/users/1")).expect("alice");
    b.run_script(
        "document.getElementById('user-group-select').value = 'eng';\
         document.getElementById('user-expiry').value = '2031-05-17';",
        vec![],
    )
    .expect("form");
    b.click("#change-user button[type=submit]").expect("save");
    assert!(b.wait_for(Duration::from_secs(5), |b| {
        b.text("#user-group").ok().flatten().as_deref() == Some("eng")
    }));
    let expires = b.text("#user-expires").expect("expiry").unwrap_or_default();
    assert!(expires.contains("2031-05-17"), "{expires}");
    shot(&b, "user");
    let (_, text) = call(&rig, "GET", "/api/v1/peers/1", Some(&token), None);
    let alice = json_of(&text);
    assert_eq!(
        (alice["group"].as_str(), alice["expires_at"].as_u64()),
        (Some("eng"), Some(1_936_828_800))
    );

    // Capacity: the report with its plots, and a sizing answered from its figures.
    b.goto(&format!("{CONSOLE}/capacity/")).expect("capacity");
    let report = b.text("#report").expect("report").unwrap_or_default();
    assert!(
        report.contains("xgate capacity report"),
        "{}",
        &report[..report.len().min(300)]
    );
    let plots = b
        .run_script(
            "return Array.from(document.querySelectorAll('#report img'))\
               .filter(i => i.complete && i.naturalWidth > 0).length;",
            vec![],
        )
        .expect("plots");
    assert!(plots.as_u64().unwrap_or(0) >= 3, "plots shown: {plots}");
    b.fill("#size-users", "50000").expect("users");
    b.fill("#size-gbps", "10").expect("gbps");
    b.fill("#size-window", "30").expect("window");
    b.click("#sizing button[type=submit]").expect("size");
    assert!(
        b.wait_for(Duration::from_secs(5), |b| {
            b.text("#sizing-answer li:last-child")
                .ok()
                .flatten()
                .is_some_and(|t| t.starts_with("50000 users, 10 Gbit/s") && t.contains("cores"))
        }),
        "no sizing: {:?}",
        b.text("#sizing-answer").ok().flatten()
    );
    shot(&b, "capacity");

    b.goto(&format!("{CONSOLE}/system")).expect("system");
    let facts = b.text("#system-facts").expect("facts").unwrap_or_default();
    assert!(
        facts.contains("sqlite") && facts.contains(".toml"),
        "{facts}"
    );
    assert!(b.count("#system-workers tbody tr").expect("workers") >= 1);
    shot(&b, "system");
}
