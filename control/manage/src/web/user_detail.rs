//! One user: its key, addresses, routes, live endpoint, last handshake and traffic, when it
//! was made and when it expires; an admin changes its group, expiry date and the networks
//! routed to it here.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::dates::{date_of_expiry, expiry_from_date};
use super::guard::{may_change, PageError, SignedIn};
use super::{listed, render, Nav, Web};
use crate::api::{blocking, ApiError};
use crate::registry::{PeerChange, PeerRecord};

/// What the page shows of the interface's live state.
#[derive(Default)]
struct Live {
    endpoint: String,
    last_handshake: String,
    traffic: String,
    online: bool,
}

/// The user page.
#[derive(askama::Template)]
#[template(path = "user.html")]
struct UserPage {
    nav: Nav,
    peer: PeerRecord,
    public_key: String,
    addresses: String,
    routes: String,
    /// The routes as the form edits them ("" for none).
    routes_field: String,
    created: String,
    expires: String,
    live: Live,
    groups: Vec<String>,
    /// Whether the user's group is still configured (else the form offers it too, so that
    /// saving the expiry or routes does not move the user).
    group_configured: bool,
}

/// The live state of `peer` from the plane's latest publication.
fn live(web: &Web, peer: &PeerRecord) -> Live {
    let Some(p) = web.api.published() else {
        return Live::default();
    };
    let Some(state) = p
        .state
        .peers
        .iter()
        .find(|s| s.public_key == peer.public_key)
    else {
        return Live::default();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let recent = Duration::from_millis(crate::registry::RECENT_MS);
    Live {
        endpoint: state.endpoint.map_or_else(|| "-".into(), |e| e.to_string()),
        last_handshake: state
            .last_handshake
            .map_or_else(|| "never".into(), super::users::ago),
        traffic: format!(
            "{} in, {} out",
            super::users::size(state.rx_bytes),
            super::users::size(state.tx_bytes)
        ),
        online: state
            .last_handshake
            .is_some_and(|t| now.saturating_sub(t) < recent),
    }
}

/// GET /users/{id}
pub async fn page(
    State(web): State<Arc<Web>>,
    SignedIn(session): SignedIn,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    let api = web.api.clone();
    let peer = blocking(move || Ok(api.registry_handle().get(id)?)).await?;
    Ok(render(&UserPage {
        nav: Nav::new(&session, "users"),
        public_key: peer.public_key.to_base64(),
        addresses: listed(&peer.addresses),
        routes: listed(&peer.allowed_ips),
        routes_field: peer
            .allowed_ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        created: crate::client::iso8601(&serde_json::json!(peer.created_at)),
        expires: peer.expires_at.map(date_of_expiry).unwrap_or_default(),
        live: live(&web, &peer),
        groups: web.api.group_names().to_vec(),
        group_configured: web.api.group_names().contains(&peer.group),
        peer,
    }))
}

/// The change form's fields.
#[derive(Debug, Deserialize)]
pub struct ChangeForm {
    #[serde(default)]
    csrf: String,
    group: String,
    /// `YYYY-MM-DD`, or empty for no expiry.
    #[serde(default)]
    expires: String,
    /// Networks behind the user, routed to it: prefixes separated by commas or spaces.
    #[serde(default)]
    routes: String,
}

/// POST /users/{id}/change
pub async fn change(
    State(web): State<Arc<Web>>,
    SignedIn(session): SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<ChangeForm>,
) -> Result<Response, PageError> {
    may_change(&session, &form.csrf)?;
    let expires_at = if form.expires.trim().is_empty() {
        None
    } else {
        Some(expiry_from_date(&form.expires).ok_or_else(|| {
            ApiError::bad_request(
                "the expiry is not a date: write it as YYYY-MM-DD (or leave it empty)",
            )
        })?)
    };
    let api = web.api.clone();
    blocking(move || {
        let now = api.registry_handle().get(id)?;
        // Only a group that changed is checked and moved: one no longer configured stays.
        let group = (form.group != now.group).then_some(form.group);
        if let Some(g) = &group {
            crate::api::check_known_group(&api, "group", g)?;
        }
        let listed: Vec<String> = form
            .routes
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|r| !r.is_empty())
            .map(String::from)
            .collect();
        let routes = crate::api::parse_prefixes("routes", &listed)?;
        let change = PeerChange {
            group,
            expires_at: Some(expires_at),
            allowed_ips: (routes != now.allowed_ips).then_some(routes),
            ..PeerChange::default()
        };
        let peer = crate::api::change_peer(&api, id, &change)?;
        let until = expires_at.map_or_else(
            || "no expiry".into(),
            |t| format!("expires {}", date_of_expiry(t)),
        );
        let routes: Vec<String> = peer.allowed_ips.iter().map(ToString::to_string).collect();
        let note = format!(
            "peer {:?} (id {id}): group {}, {until}, routes [{}]",
            peer.name,
            peer.group,
            routes.join(", ")
        );
        api.write_audit(&session.actor, "change user", &note);
        Ok(())
    })
    .await?;
    Ok(Redirect::to(&format!("/users/{id}")).into_response())
}
