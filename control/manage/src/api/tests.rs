//! The API's own limits, over real loopback connections: the body cap before any handler,
//! the request deadline, the connection cap, the header deadline, the subscriber cap, and a
//! registry lock poisoned by a panic.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::PrivateKey;

use super::*;
use crate::events::EventHub;

const TOKEN: &str = "test-token";
/// A viewer's token the test state also accepts.
pub(super) const VIEWER: &str = "viewer-token";

/// A server over a fresh registry and a control plane that never answers (its request
/// channel stays open), held to `limits`.
fn server(tag: &str, limits: Limits) -> (ApiServer, Arc<ApiState>, impl Drop) {
    let dir = std::env::temp_dir().join(format!("xgate-api-unit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let registry = Registry::open(&dir.join("r.db"), Vec::new()).expect("registry");
    let (requests, silent_plane) = crossbeam_channel::unbounded();
    let state = test_state(registry, requests, TOKEN);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let server = ApiServer::start(listener, state.clone(), None, limits).expect("server");
    let scratch = Scratch {
        dir,
        _silent_plane: silent_plane,
    };
    (server, state, scratch)
}

/// API state over `registry`, reaching the plane through `requests`, accepting `token`.
pub(super) fn test_state(
    registry: Registry,
    requests: crossbeam_channel::Sender<plane::engine::Request>,
    token: &str,
) -> Arc<ApiState> {
    let client = ClientTemplate {
        server_key: PrivateKey::from_bytes([7; 32]).public_key(),
        endpoint: "vpn.example:51820".into(),
        guessed: None,
        default: ClientPolicy {
            allowed_ips: Vec::new(),
            dns: Vec::new(),
            mtu: 1420,
            keepalive: 0,
        },
        groups: Default::default(),
    };
    Arc::new(ApiState::new(
        registry,
        PlaneHandle::new(requests, Default::default()),
        vec![
            super::Token {
                hash: hash_token(token),
                role: super::Role::Admin,
                label: "test".into(),
            },
            super::Token {
                hash: hash_token(VIEWER),
                role: super::Role::Viewer,
                label: "watcher".into(),
            },
        ],
        client,
        false,
        EventHub::default(),
        Vec::new(),
    ))
}

/// The scratch directory (removed on drop) and the plane's end of the request channel.
struct Scratch {
    dir: std::path::PathBuf,
    _silent_plane: crossbeam_channel::Receiver<plane::engine::Request>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn connect(server: &ApiServer) -> TcpStream {
    let s = TcpStream::connect(server.local_addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// Sends `head` (and no body) and reads what comes back within the read timeout.
fn exchange(s: &mut TcpStream, head: &str) -> String {
    s.write_all(head.as_bytes()).expect("send");
    let mut got = vec![0; 8192];
    let n = s.read(&mut got).unwrap_or(0);
    String::from_utf8_lossy(&got[..n]).into_owned()
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
}

#[test]
fn an_oversized_body_is_refused_by_its_length_before_authentication() {
    let (server, _state, _scratch) = server("body", Limits::default());
    let mut s = connect(&server);
    let head = format!(
        "POST /api/v1/peers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    let answer = exchange(&mut s, &head);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("at most 16777216"), "{answer}");
}

#[test]
fn a_request_past_its_deadline_gets_503_saying_so() {
    let limits = Limits {
        request_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let (server, _state, _scratch) = server("deadline", limits);
    let mut s = connect(&server);
    let started = Instant::now();
    // The plane never answers, so the status waits past the deadline.
    let answer = exchange(&mut s, &get("/api/v1/status"));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("no answer within 0.5 s"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn connections_past_the_cap_wait_until_one_closes() {
    let limits = Limits {
        connections: 2,
        ..Limits::default()
    };
    let (server, _state, _scratch) = server("conns", limits);
    let first = connect(&server);
    let mut second = connect(&server);
    assert!(exchange(&mut second, &get("/openapi.json")).starts_with("HTTP/1.1 200"));
    let mut third = connect(&server);
    third
        .set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    let waiting = exchange(&mut third, &get("/openapi.json"));
    assert!(waiting.is_empty(), "served past the cap: {waiting}");
    drop(first);
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut got = vec![0; 256];
    let n = third.read(&mut got).unwrap_or(0);
    assert!(
        got[..n].starts_with(b"HTTP/1.1 200"),
        "not served once a slot freed: {:?}",
        String::from_utf8_lossy(&got[..n])
    );
}

#[test]
fn a_connection_that_sends_no_headers_is_closed_at_the_deadline() {
    let limits = Limits {
        header_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let (server, _state, _scratch) = server("headers", limits);
    let mut silent = connect(&server);
    let started = Instant::now();
    let mut got = Vec::new();
    let _ = silent.read_to_end(&mut got);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "an idle connection was kept {:?}",
        started.elapsed()
    );
}

#[test]
fn event_subscribers_past_the_cap_get_503() {
    let (server, _state, _scratch) = server("sse", Limits::default());
    let mut open = Vec::new();
    for _ in 0..MAX_SUBSCRIBERS {
        let mut s = connect(&server);
        let answer = exchange(&mut s, &get("/api/v1/events"));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        open.push(s);
    }
    let mut one_more = connect(&server);
    let answer = exchange(&mut one_more, &get("/api/v1/events"));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("event streams are open already"),
        "{answer}"
    );
}

#[test]
fn a_panic_while_holding_the_registry_does_not_disable_it() {
    let (_server, state, _scratch) = server("poison", Limits::default());
    let holder = state.clone();
    let panicked = std::thread::spawn(move || {
        let _held = holder.registry();
        panic!("a handler bug");
    })
    .join();
    assert!(panicked.is_err() && state.registry.is_poisoned());
    let count = state.registry().count();
    assert_eq!(count.expect("counts"), 0);
}

#[test]
fn errors_quote_a_bounded_start_of_bad_input() {
    assert_eq!(super::error::quoted("abc"), "\"abc\"");
    let long = "x".repeat(1 << 20);
    let q = super::error::quoted(&long);
    assert!(q.len() < 80 && q.ends_with("(1048576 bytes)"), "{q}");
}

/// Sends one JSON request through the router of `super::fuzz::app`.
fn send(app: &Router, method: &str, path: &str, body: String) -> (StatusCode, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    super::fuzz::send_on(&runtime, app, method, path, body.into_bytes())
}

#[test]
fn huge_values_and_the_all_zero_key_get_short_400s() {
    let dir = std::env::temp_dir().join(format!("xgate-api-bounded-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let app = super::fuzz::app(&dir);
    let huge = "n".repeat(10 << 20);
    for body in [
        serde_json::json!({ "name": huge }).to_string(),
        serde_json::json!({ "name": "ok", "preshared_key": huge }).to_string(),
        serde_json::json!({ "name": "ok", "allowed_ips": [huge] }).to_string(),
    ] {
        let (status, text) = send(&app, "POST", "/api/v1/peers", body);
        // 400 for a bad value, 422 for one of the wrong type (the preshared key's flag).
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{status} {}",
            &text[..text.len().min(200)]
        );
        assert!(text.len() < 1024, "a {}-byte error", text.len());
    }
    let zero = proto::PublicKey([0; 32]).to_base64();
    let body = serde_json::json!({ "name": "zero", "public_key": zero }).to_string();
    let (status, text) = send(&app, "POST", "/api/v1/peers", body);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("all-zero key"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The JSON of an answer (the test fails if it is not JSON).
fn json_body(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

#[test]
fn names_are_unique_work_where_ids_do_and_groups_must_exist() {
    use serde_json::json;
    let dir = std::env::temp_dir().join(format!("xgate-api-names-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let app = super::fuzz::app(&dir);
    let post = |path: &str, body: serde_json::Value| send(&app, "POST", path, body.to_string());
    let (status, text) = post("/api/v1/peers", json!({ "name": "alice laptop" }));
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let alice = json_body(&text)["peer"]["id"].as_i64().expect("an id");
    let (status, text) = post("/api/v1/peers", json!({ "name": "alice laptop" }));
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    assert!(
        text.contains(&format!("(id {alice})")),
        "names the holder: {text}"
    );
    let (status, _) = post("/api/v1/peers", json!({ "name": "bob" }));
    assert_eq!(status, StatusCode::CREATED);
    let (status, text) = send(
        &app,
        "PATCH",
        "/api/v1/peers/bob",
        json!({ "name": "alice laptop" }).to_string(),
    );
    assert_eq!(status, StatusCode::CONFLICT, "a rename too: {text}");
    let (status, text) = post(
        "/api/v1/peers",
        json!({ "name": "carol", "group": "sales" }),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("the groups are default"), "{text}");
    let (status, text) = post("/api/v1/peers", json!({ "name": "1234" }));
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "digits read as an id: {text}"
    );

    // The name (percent-encoded in the path) wherever an id goes.
    let by_name = "/api/v1/peers/alice%20laptop";
    let (status, text) = send(&app, "GET", by_name, String::new());
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(json_body(&text)["id"], json!(alice));
    let (status, text) = send(&app, "GET", &format!("{by_name}/config"), String::new());
    assert!(
        status == StatusCode::OK && text.contains("[Interface]"),
        "{text}"
    );
    let (status, text) = post(&format!("{by_name}/revoke"), json!({}));
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(json_body(&text)["revoked_at"].is_u64(), "{text}");
    let (status, text) = send(&app, "DELETE", by_name, String::new());
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    let (status, text) = send(&app, "GET", by_name, String::new());
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(json_body(&text)["error"].is_string());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn query_path_and_method_errors_are_json_too() {
    let dir = std::env::temp_dir().join(format!("xgate-api-shapes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let app = super::fuzz::app(&dir);
    // Each with a word of what was wrong.
    let cases = [
        ("GET", "/api/v1/peers?limit=many", 400, "limit"),
        ("GET", "/api/v1/peers?bogus=1", 400, "bogus"),
        ("GET", "/api/v1/peers/1/config?format", 400, "format"),
        ("PUT", "/api/v1/peers", 405, "Allow header"),
        ("DELETE", "/api/v1/status", 405, "Allow header"),
        ("GET", "/api/v1/nothing-here", 404, "no such endpoint"),
    ];
    for (method, path, expected, says) in cases {
        let expected = StatusCode::from_u16(expected).expect("a status");
        let (status, text) = send(&app, method, path, String::new());
        assert_eq!(status, expected, "{method} {path}: {text}");
        let message = json_body(&text)["error"]
            .as_str()
            .map(String::from)
            .unwrap_or_default();
        assert!(message.contains(says), "{method} {path}: {text}");
    }
    // The 405 keeps its Allow header.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let request = axum::http::Request::builder()
        .method("PUT")
        .uri("/api/v1/peers")
        .header("Authorization", "Bearer fuzz-token")
        .body(axum::body::Body::empty())
        .expect("a request");
    let answer = runtime
        .block_on(tower::ServiceExt::oneshot(app.clone(), request))
        .expect("infallible");
    let allow = answer.headers().get(axum::http::header::ALLOW);
    assert!(
        allow.is_some_and(|a| a.to_str().is_ok_and(|a| a.contains("POST"))),
        "{:?}",
        answer.headers()
    );
    // A wrongly typed body keeps axum's status (422) in the same shape.
    let (status, text) = send(&app, "POST", "/api/v1/peers", r#"{"name": 7}"#.to_string());
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert!(json_body(&text)["error"].is_string());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends one request with `token` through `app`.
fn send_as(
    app: &Router,
    token: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (StatusCode, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let body = body.as_bytes().to_vec();
    super::fuzz::send_as_on(&runtime, app, token, (method, path), body)
}

#[test]
fn viewers_read_admins_change_and_every_change_is_audited() {
    let dir = std::env::temp_dir().join(format!("xgate-api-roles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let app = super::fuzz::app(&dir);
    let body = r#"{"name":"alice"}"#;
    let (status, text) = send_as(&app, VIEWER, "POST", "/api/v1/peers", body);
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("viewer"), "{text}");
    let (status, _) = send_as(&app, VIEWER, "GET", "/api/v1/peers", "");
    assert_eq!(status, StatusCode::OK, "viewers read");
    let (status, text) = send_as(&app, super::fuzz::TOKEN, "POST", "/api/v1/peers", body);
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let (status, _) = send_as(
        &app,
        super::fuzz::TOKEN,
        "POST",
        "/api/v1/peers/alice/revoke",
        "",
    );
    assert_eq!(status, StatusCode::OK);
    // A refused change is not a change: not in the log.
    let (status, _) = send_as(
        &app,
        super::fuzz::TOKEN,
        "POST",
        "/api/v1/peers",
        r#"{"name":""}"#,
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, text) = send_as(&app, VIEWER, "GET", "/api/v1/audit", "");
    assert_eq!(status, StatusCode::OK, "{text}");
    let log = json_body(&text);
    let entries = log["entries"].as_array().expect("entries");
    let seen: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or(""),
                e["action"].as_str().unwrap_or(""),
                e["detail"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "api:test",
                "POST /api/v1/peers/alice/revoke",
                "revoked peer \"alice\" (id 1)"
            ),
            (
                "api:test",
                "POST /api/v1/peers",
                "created peer \"alice\" (id 1)"
            ),
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
