//! A property campaign over the API's JSON bodies (see `testbed::fuzz`): creations, bulk
//! creations and changes with fields of every JSON type drawn from valid and mangled forms,
//! extra fields and raw bytes, sent through the real router to a real registry. Every answer
//! is a success or an error that says what was wrong; never a 500, never a panic.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ipnet::IpNet;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use testbed::fuzz::campaign;
use tower::ServiceExt;

use super::*;
use crate::registry::Pool;

pub(super) const TOKEN: &str = "fuzz-token";

fn text() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z0-9 _-]{0,70}".prop_map(Value::from),
        "[A-Za-z0-9+/]{43}=".prop_map(Value::from),
        "(10\\.77|fd77:|0\\.0\\.0\\.0|::)[0-9a-f.:]{0,10}/[0-9]{1,3}".prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ]
}

fn field() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => text(),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<bool>().prop_map(Value::from),
        1 => Just(Value::Null),
        2 => proptest::collection::vec(text(), 0..3).prop_map(Value::from),
    ]
}

const FIELDS: [&str; 6] = [
    "name",
    "group",
    "public_key",
    "preshared_key",
    "allowed_ips",
    "bogus",
];

fn object() -> impl Strategy<Value = Value> {
    proptest::collection::vec((0..FIELDS.len(), field()), 0..6).prop_map(|fields| {
        let mut m = Map::new();
        for (k, v) in fields {
            m.insert(FIELDS[k].into(), v);
        }
        Value::Object(m)
    })
}

/// A request: method, path and body bytes.
fn request() -> impl Strategy<Value = (&'static str, String, Vec<u8>)> {
    let json_bytes = |v: Value| serde_json::to_vec(&v).unwrap_or_default();
    prop_oneof![
        4 => object().prop_map(move |o| ("POST", "/api/v1/peers".to_string(), json_bytes(o))),
        // Valid creations, some with a preshared key or extra networks, so the campaign also
        // reaches the registry and the plane.
        1 => ("[a-z][a-z0-9-]{0,20}", any::<bool>(), proptest::option::of(text()))
            .prop_map(move |(name, psk, net)| {
                let mut o = json!({ "name": name, "preshared_key": psk });
                if let Some(net) = net {
                    o["allowed_ips"] = json!([net]);
                }
                ("POST", "/api/v1/peers".to_string(), json_bytes(o))
            }),
        1 => proptest::collection::vec(object(), 0..3).prop_map(move |peers| {
            ("POST", "/api/v1/peers/bulk".to_string(), json_bytes(json!({ "peers": peers })))
        }),
        2 => ("[0-9a-z-]{0,6}", object()).prop_map(move |(id, o)| {
            ("PATCH", format!("/api/v1/peers/{id}"), json_bytes(o))
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| ("POST", "/api/v1/peers".to_string(), b)),
    ]
}

/// Sends one JSON request with the token through `app` on `runtime`: status and body.
pub(super) fn send_on(
    runtime: &tokio::runtime::Runtime,
    app: &Router,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, String) {
    send_as_on(runtime, app, TOKEN, (method, path), body)
}

/// The same with `token`.
pub(super) fn send_as_on(
    runtime: &tokio::runtime::Runtime,
    app: &Router,
    token: &str,
    (method, path): (&str, &str),
    body: Vec<u8>,
) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .body(Body::from(body))
        .expect("a request");
    runtime.block_on(async {
        let response = app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_BODY)
            .await
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    })
}

/// The router over a fresh registry with a /16 pool, and a control plane that accepts every
/// change.
pub(super) fn app(dir: &std::path::Path) -> Router {
    let pool = Pool {
        name: "default".into(),
        v4: "10.77.0.0/16".parse::<IpNet>().ok(),
        v6: "fd77::/64".parse::<IpNet>().ok(),
        reserved: Vec::new(),
        hold_secs: 0,
    };
    let registry = Registry::open(&dir.join("r.db"), vec![pool]).expect("registry");
    let (requests, plane) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for request in plane {
            if let plane::engine::Request::Set(_, reply) = request {
                let _ = reply.send(Ok(()));
            }
        }
    });
    let state = super::tests::test_state(registry, requests, TOKEN);
    router(state, Limits::default(), false)
}

#[test]
fn fuzz_api_json_bodies() {
    let dir = std::env::temp_dir().join(format!("xgate-api-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let app = app(&dir);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let created = std::sync::atomic::AtomicU64::new(0);
    let cases = campaign("api_json", 40_000, request(), |(method, path, body)| {
        let (status, text) = send_on(&runtime, &app, method, &path, body);
        prop_assert!(
            status != StatusCode::INTERNAL_SERVER_ERROR,
            "{method} {path}: 500 {text}"
        );
        if status == StatusCode::CREATED {
            created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if status.is_client_error() || status.is_server_error() {
            let v: Value = serde_json::from_str(&text)
                .map_err(|_| TestCaseError::fail(format!("{status}: not JSON: {text}")))?;
            prop_assert!(v["error"].as_str().is_some_and(|m| !m.is_empty()), "{text}");
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&dir);
    // The campaign reached the registry, not only the refusals.
    let created = created.into_inner();
    assert!(
        created * 100 > u64::from(cases),
        "only {created} of {cases} requests created a peer"
    );
}
