//! Users (WireGuard peers): a page of 100 at a time, searched by name on the server (an
//! index-ordered scan: 100,000 users answer within milliseconds), each with its addresses,
//! live state and traffic; adding one shows its QR code and configuration once; revoking and
//! deleting. Changes go through the same functions as the API's, and into the audit log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use base64::Engine as _;
use serde::Deserialize;

use super::guard::{may_change, PageError, SignedIn};
use super::{grouped, render, Nav, Web};
use crate::api::{blocking, ApiError, ApiState};
use crate::registry::{ListFilter, PeerRecord};

/// Users on one page.
const PAGE: usize = 100;

/// One row of the table.
struct Row {
    id: i64,
    name: String,
    group: String,
    addresses: String,
    /// "online", "offline" or "revoked".
    status: &'static str,
    last_handshake: String,
    traffic: String,
    /// The expiry date, or "never".
    expires: String,
}

/// The users page.
#[derive(askama::Template)]
#[template(path = "users.html")]
struct UsersPage {
    nav: Nav,
    rows: Vec<Row>,
    search: String,
    total: String,
    next_after: Option<i64>,
    groups: Vec<String>,
    server_ms: String,
}

/// The page shown once after adding a user.
#[derive(askama::Template)]
#[template(path = "user_added.html")]
struct AddedPage {
    nav: Nav,
    name: String,
    file_name: String,
    config: String,
    config_base64: String,
    qr_base64: String,
}

/// The listing's parameters.
#[derive(Debug, Deserialize)]
pub struct UsersQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    after: Option<i64>,
}

/// `bytes` in B, kB, MB or GB.
pub(super) fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GB", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1} kB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// How long ago `t` (since the Unix epoch) was.
pub(super) fn ago(t: Duration) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    crate::client::seconds_ago(now.saturating_sub(t).as_secs())
}

/// The table's rows: the registry's peers with the interface's live state of each.
fn rows(api: &ApiState, peers: &[PeerRecord]) -> Vec<Row> {
    let wanted: HashMap<[u8; 32], usize> = peers
        .iter()
        .enumerate()
        .map(|(i, p)| (p.public_key.0, i))
        .collect();
    let mut live = vec![None; peers.len()];
    if let Some(p) = api.published() {
        for peer in &p.state.peers {
            if let Some(i) = wanted.get(&peer.public_key.0) {
                live[*i] = Some((peer.last_handshake, peer.rx_bytes, peer.tx_bytes));
            }
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let recent = Duration::from_millis(crate::registry::RECENT_MS);
    peers
        .iter()
        .zip(live)
        .map(|(p, live)| {
            let (handshake, rx, tx) = live.unwrap_or((None, 0, 0));
            let online = handshake.is_some_and(|t| now.saturating_sub(t) < recent);
            let status = match (p.revoked_at.is_some(), online) {
                (true, _) => "revoked",
                (false, true) => "online",
                (false, false) => "offline",
            };
            let last = handshake
                .or_else(|| p.last_handshake.map(Duration::from_secs))
                .map_or_else(|| "never".to_string(), ago);
            Row {
                id: p.id,
                name: p.name.clone(),
                group: p.group.clone(),
                addresses: p
                    .addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                status,
                last_handshake: last,
                traffic: format!("{} in, {} out", size(rx), size(tx)),
                expires: p
                    .expires_at
                    .map_or_else(|| "never".into(), super::dates::date_of_expiry),
            }
        })
        .collect()
}

/// GET /users
pub async fn page(
    State(web): State<Arc<Web>>,
    SignedIn(session): SignedIn,
    Query(q): Query<UsersQuery>,
) -> Result<Response, PageError> {
    let started = Instant::now();
    let api = web.api.clone();
    let search = q.q.trim().to_string();
    let filter = ListFilter {
        after: q.after.unwrap_or(0),
        limit: PAGE,
        search: (!search.is_empty()).then(|| search.clone()),
        ..ListFilter::default()
    };
    let (rows, total, last) = blocking(move || {
        let mut registry = api.registry_handle();
        let peers = registry.list(&filter)?;
        let total = registry.count_matching(&filter)?;
        drop(registry);
        Ok((rows(&api, &peers), total, peers.last().map(|p| p.id)))
    })
    .await?;
    let full = rows.len() == PAGE;
    let server = started.elapsed();
    let page = UsersPage {
        nav: Nav::new(&session, "users"),
        rows,
        search,
        total: grouped(total),
        next_after: last.filter(|_| full),
        groups: web.api.group_names().to_vec(),
        server_ms: format!("{:.1}", server.as_secs_f64() * 1e3),
    };
    let mut response = render(&page);
    // What the server spent, for the browser's developer tools and the timing test.
    let timing = format!("app;dur={:.2}", server.as_secs_f64() * 1e3);
    if let Ok(v) = HeaderValue::from_str(&timing) {
        response.headers_mut().insert("server-timing", v);
    }
    Ok(response)
}

/// The add-user form's fields.
#[derive(Debug, Deserialize)]
pub struct AddUser {
    #[serde(default)]
    csrf: String,
    name: String,
    #[serde(default)]
    group: String,
}

/// POST /users: makes the user's key pair and shows its configuration once.
pub async fn add(
    State(web): State<Arc<Web>>,
    SignedIn(session): SignedIn,
    Form(form): Form<AddUser>,
) -> Result<Response, PageError> {
    may_change(&session, &form.csrf)?;
    let api = web.api.clone();
    let actor = session.actor.clone();
    let group = (!form.group.is_empty()).then_some(form.group);
    let name = form.name.trim().to_string();
    let made = blocking(move || {
        let made = api.create_peer_with_keys(name, group)?;
        let note = format!("created peer {:?} (id {})", made.peer.name, made.peer.id);
        api.write_audit(&actor, "add user", &note);
        Ok(made)
    })
    .await?;
    let config = made.config.unwrap_or_default();
    let png = crate::qr::png(&config)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let qr = base64::engine::general_purpose::STANDARD.encode(png);
    let file_name: String = made
        .peer
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(render(&AddedPage {
        nav: Nav::new(&session, "users"),
        name: made.peer.name,
        file_name: format!("{file_name}.conf"),
        config_base64: base64::engine::general_purpose::STANDARD.encode(&config),
        config,
        qr_base64: qr,
    }))
}

/// A change form's fields (the token only).
#[derive(Debug, Deserialize)]
pub struct Change {
    #[serde(default)]
    csrf: String,
}

/// Runs `change` on user `id` for an admin's form; back to the users page after.
async fn change_user(
    web: Arc<Web>,
    session: super::session::Session,
    csrf: String,
    id: i64,
    what: &'static str,
) -> Result<Response, PageError> {
    may_change(&session, &csrf)?;
    let api = web.api.clone();
    blocking(move || {
        let (peer, now) = match what {
            "revoke" => crate::api::revoke_peer(&api, id)?,
            _ => (crate::api::delete_peer(&api, id)?, true),
        };
        let note = if now {
            format!("{what}d peer {:?} (id {id})", peer.name)
        } else {
            format!("peer {:?} (id {id}) was revoked already", peer.name)
        };
        api.write_audit(&session.actor, &format!("{what} user"), &note);
        Ok(())
    })
    .await?;
    Ok(Redirect::to("/users").into_response())
}

/// POST /users/{id}/revoke
pub async fn revoke(
    State(web): State<Arc<Web>>,
    SignedIn(session): SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<Change>,
) -> Result<Response, PageError> {
    change_user(web, session, form.csrf, id, "revoke").await
}

/// POST /users/{id}/delete
pub async fn delete(
    State(web): State<Arc<Web>>,
    SignedIn(session): SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<Change>,
) -> Result<Response, PageError> {
    change_user(web, session, form.csrf, id, "delete").await
}
