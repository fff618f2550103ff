//! The web console's pages in a real browser: each at 1280x800 and at a phone's width, every
//! control labelled, Tab reaching the controls; groups, a user's group and expiry changed,
//! the capacity report with a sizing from its figures, and the system page.

mod common;

use std::time::Duration;

use common::api::{call, json_of, start_with_api_and, SMALL_POOL};
use common::web::{one_browser, shot, sign_in, CONSOLE};
use common::Rig;
use serde_json::json;
use testbed::browser::Browser;

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
        let body = json!({ "name": name, "group": "sales" });
        let (status, text) = call(&rig, "POST", "/api/v1/peers", Some(&token), Some(body));
        assert_eq!(status, 201, "{text}");
    }
    let b = Browser::start(&rig.server.ns, &rig.dir, 9517, 1280, 800).expect("browser");
    assert!(sign_in(&b, &token), "not signed in");
    every_page_reads_at_desktop_and_phone_width(&b);
    tab_reaches_the_users_controls(&b);
    groups_show_their_policy_and_users(&b);
    a_users_group_and_expiry_change(&rig, &b, &token);
    capacity_shows_the_report_and_sizes(&b);
    system_says_what_runs(&b);
}

/// Each page, at 1280x800 and at a phone's 390x844: one heading, every control labelled,
/// nothing to scroll sideways.
fn every_page_reads_at_desktop_and_phone_width(b: &Browser) {
    let pages = [
        "/",
        "/users",
        "/users/1",
        "/groups",
        "/capacity/",
        "/system",
        "/audit",
    ];
    for (width, height) in [(1280, 800), (390, 844)] {
        b.fit_viewport(width, height).expect("viewport");
        for page in pages {
            b.goto(&format!("{CONSOLE}{page}")).expect("page");
            assert_eq!(
                b.count("main h1").expect("heading"),
                1,
                "{page}: no heading"
            );
            let missing = unlabelled(b);
            assert!(
                missing.is_empty(),
                "{page}: controls without a label: {missing:?}"
            );
            assert!(
                overflow(b) <= 0,
                "{page} at {width}x{height} scrolls sideways"
            );
        }
    }
    b.goto(&format!("{CONSOLE}/")).expect("overview");
    std::thread::sleep(Duration::from_millis(1500));
    shot(b, "overview-phone");
    b.fit_viewport(1280, 800).expect("viewport");
}

/// Keyboard only: Tab reaches the search, the new user's name and its group.
fn tab_reaches_the_users_controls(b: &Browser) {
    b.goto(&format!("{CONSOLE}/users")).expect("users");
    let reached: Vec<String> = (0..30).map(|_| b.tab().expect("tab")).collect();
    for id in ["q", "new-name", "new-group"] {
        assert!(
            reached.iter().any(|r| r == id),
            "Tab never reaches #{id}: {reached:?}"
        );
    }
}

/// Groups: sales is a full tunnel with its own DNS and MTU, and holds both users.
fn groups_show_their_policy_and_users(b: &Browser) {
    b.goto(&format!("{CONSOLE}/groups")).expect("groups");
    let sales = b
        .text("tr[data-group='sales']")
        .expect("row")
        .unwrap_or_default();
    for needle in ["full", "10.77.0.53", "1380", "2"] {
        assert!(sales.contains(needle), "{needle:?} not in {sales:?}");
    }
    shot(b, "groups");
}

/// A user's page changes its group, its expiry and the routes behind it; the API reads them
/// back.
fn a_users_group_and_expiry_change(rig: &Rig, b: &Browser, token: &str) {
    b.goto(&format!("{CONSOLE}/users/1")).expect("alice");
    b.run_script(
        "document.getElementById('user-group-select').value = 'eng';\
         document.getElementById('user-expiry').value = '2031-05-17';\
         document.getElementById('user-routes').value = '192.168.77.0/24';",
        vec![],
    )
    .expect("form");
    b.click("#change-user button[type=submit]").expect("save");
    let moved = |b: &Browser| b.text("#user-group").ok().flatten().as_deref() == Some("eng");
    assert!(
        b.wait_for(Duration::from_secs(5), moved),
        "not moved to eng"
    );
    let expires = b.text("#user-expires").expect("expiry").unwrap_or_default();
    assert!(expires.contains("2031-05-17"), "{expires}");
    shot(b, "user");
    let (_, text) = call(rig, "GET", "/api/v1/peers/1", Some(token), None);
    let alice = json_of(&text);
    // Through the end of 2031-05-17 UTC: revoked at 2031-05-18T00:00:00Z.
    assert_eq!(
        (alice["group"].as_str(), alice["expires_at"].as_u64()),
        (Some("eng"), Some(1_936_828_800))
    );
    assert_eq!(alice["allowed_ips"], json!(["192.168.77.0/24"]), "{text}");
}

/// Capacity: the report with its plots, and a sizing answered from its figures.
fn capacity_shows_the_report_and_sizes(b: &Browser) {
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
    let sized = |b: &Browser| {
        b.text("#sizing-answer li:last-child")
            .ok()
            .flatten()
            .is_some_and(|t| t.starts_with("50000 users, 10 Gbit/s") && t.contains("cores"))
    };
    assert!(
        b.wait_for(Duration::from_secs(5), sized),
        "no sizing: {:?}",
        b.text("#sizing-answer").ok().flatten()
    );
    shot(b, "capacity");
}

/// System: the settings file, the registry's engine, each worker's backend.
fn system_says_what_runs(b: &Browser) {
    b.goto(&format!("{CONSOLE}/system")).expect("system");
    let facts = b.text("#system-facts").expect("facts").unwrap_or_default();
    assert!(
        facts.contains("sqlite") && facts.contains(".toml"),
        "{facts}"
    );
    assert!(b.count("#system-workers tbody tr").expect("workers") >= 1);
    shot(b, "system");
}
