//! `/api/v1/peers`: create (one or in bulk), list, get, change, revoke, delete, and a peer's
//! client configuration. Every change is committed to the registry first (durable once
//! answered) and then applied to the running interface, so a 2xx means both happened.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ipnet::IpNet;
use proto::{PrivateKey, PublicKey};
use serde::{Deserialize, Serialize};

use super::client_config::wg_quick;
use super::error::{quoted, ApiError};
use super::{blocking, ApiJson, ApiState};
use crate::events::Event;
use crate::registry::{ListFilter, NewPeer, PeerChange, PeerRecord};
use plane::update::PeerUpdate;

/// Most peers one bulk request may create.
pub const MAX_BULK: usize = 10_000;
/// Most peers one page lists.
const MAX_PAGE: usize = 1000;

/// A peer to create.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePeer {
    name: String,
    #[serde(default)]
    group: Option<String>,
    /// The client's public key; without one the API makes the key pair and returns the
    /// private key once, in the configuration.
    #[serde(default)]
    public_key: Option<String>,
    /// Give the peer a fresh preshared key.
    #[serde(default)]
    preshared_key: bool,
    /// Networks behind the peer, routed to it besides its own addresses.
    #[serde(default)]
    allowed_ips: Vec<String>,
}

impl CreatePeer {
    /// A peer named `name` in `group`, its key pair made here.
    pub(crate) fn named(name: String, group: Option<String>) -> Self {
        Self {
            name,
            group,
            public_key: None,
            preshared_key: false,
            allowed_ips: Vec::new(),
        }
    }
}

/// Several peers to create at once, all or none.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePeers {
    peers: Vec<CreatePeer>,
}

/// A change to a peer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePeer {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    allowed_ips: Option<Vec<String>>,
    /// Another group (its policy; addresses from its pool if that is another).
    #[serde(default)]
    group: Option<String>,
    /// When the peer is revoked by itself, Unix seconds; 0 removes the expiry.
    #[serde(default)]
    expires_at: Option<u64>,
}

/// Listing parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    revoked: Option<bool>,
    /// Only peers whose name holds this text (any case).
    #[serde(default)]
    search: Option<String>,
}

/// A peer as the API shows it.
#[derive(Debug, Serialize)]
pub struct PeerView {
    pub(crate) id: i64,
    pub(crate) name: String,
    group: String,
    public_key: String,
    has_preshared_key: bool,
    addresses: Vec<String>,
    allowed_ips: Vec<String>,
    created_at: u64,
    updated_at: u64,
    last_handshake: Option<u64>,
    revoked_at: Option<u64>,
    expires_at: Option<u64>,
}

impl From<&PeerRecord> for PeerView {
    fn from(p: &PeerRecord) -> Self {
        Self {
            id: p.id,
            name: p.name.clone(),
            group: p.group.clone(),
            public_key: p.public_key.to_base64(),
            has_preshared_key: p.preshared_key.is_some(),
            addresses: p.addresses.iter().map(ToString::to_string).collect(),
            allowed_ips: p.allowed_ips.iter().map(ToString::to_string).collect(),
            created_at: p.created_at,
            updated_at: p.updated_at,
            last_handshake: p.last_handshake,
            revoked_at: p.revoked_at,
            expires_at: p.expires_at,
        }
    }
}

/// A created peer, with its configuration when the API made its key pair.
#[derive(Debug, Serialize)]
pub(crate) struct Created {
    /// The peer.
    pub(crate) peer: PeerView,
    /// Its `wg-quick` file with the private key, when the API made the key pair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) config: Option<String>,
    /// What the caller should know about the file (a guessed endpoint).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

pub(super) fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{field}: {} is not a name (1-64 printable characters)",
            quoted(name)
        )));
    }
    // Where a peer is named, digits alone are its id, and /peers/bulk is the bulk route.
    if name == "bulk" {
        return Err(ApiError::bad_request(format!(
            "{field}: \"bulk\" is not a name here: /api/v1/peers/bulk is the bulk route"
        )));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(format!(
            "{field}: {} is not a name: digits alone read as a peer id; add a letter",
            quoted(name)
        )));
    }
    Ok(())
}

/// Refuses a group that is neither "default" nor configured (a typo would otherwise put the
/// peer in the default pool and policy without a word).
pub(crate) fn check_known_group(
    state: &ApiState,
    field: &str,
    group: &str,
) -> Result<(), ApiError> {
    if state.groups.iter().any(|g| g == group) {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "{field}: no group {} here; the groups are {} (add a [[group]] or [[pool]] to the \
         configuration for a new one)",
        quoted(group),
        state.groups.join(", ")
    )))
}

pub(super) fn check_group(field: &str, group: &str) -> Result<(), ApiError> {
    let ok = !group.is_empty()
        && group.len() <= 32
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(ApiError::bad_request(format!(
            "{field}: {} is not a group name (1-32 letters, digits, '-' or '_')",
            quoted(group)
        )));
    }
    Ok(())
}

/// Each of `list` as a prefix; an error names the field and the item.
pub(crate) fn parse_prefixes(field: &str, list: &[String]) -> Result<Vec<IpNet>, ApiError> {
    list.iter()
        .enumerate()
        .map(|(i, text)| {
            text.parse::<IpNet>().map_err(|_| {
                ApiError::bad_request(format!(
                    "{field}[{i}]: {} is not a prefix (write it like \"192.168.30.0/24\")",
                    quoted(text)
                ))
            })
        })
        .collect()
}

/// Validates one creation; returns the new peer and the private key the API made, if any.
fn prepare(field: &str, c: CreatePeer) -> Result<(NewPeer, Option<PrivateKey>), ApiError> {
    check_name(&format!("{field}.name"), &c.name)?;
    let group = c.group.unwrap_or_else(|| "default".into());
    check_group(&format!("{field}.group"), &group)?;
    let (public_key, private) = match c.public_key {
        Some(text) => (
            PublicKey::from_base64(&text)
                .map_err(|e| {
                    ApiError::bad_request(format!(
                        "{field}.public_key: not a WireGuard public key ({e}); send `wg pubkey` \
                         output"
                    ))
                })
                .and_then(|k| {
                    // The all-zero point gives every peer the same all-zero shared secret.
                    if k.0.iter().all(|b| *b == 0) {
                        Err(ApiError::bad_request(format!(
                            "{field}.public_key: the all-zero key is not a usable public key; \
                             send `wg pubkey` output"
                        )))
                    } else {
                        Ok(k)
                    }
                })?,
            None,
        ),
        None => {
            let k = PrivateKey::generate(&mut rand_core::OsRng);
            (k.public_key(), Some(k))
        }
    };
    let preshared_key = c.preshared_key.then(|| {
        let mut psk = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut psk);
        psk
    });
    let allowed_ips = parse_prefixes(&format!("{field}.allowed_ips"), &c.allowed_ips)?;
    Ok((
        NewPeer {
            name: c.name,
            group,
            public_key,
            preshared_key,
            allowed_ips,
        },
        private,
    ))
}

/// Creates `batch` (all or none: registry, then interface); `field(i)` names item `i` in an
/// error.
pub(crate) fn create_all(
    state: &ApiState,
    batch: Vec<CreatePeer>,
    field: impl Fn(usize) -> String,
) -> Result<Vec<Created>, ApiError> {
    let mut news = Vec::with_capacity(batch.len());
    let mut keys = Vec::with_capacity(batch.len());
    for (i, c) in batch.into_iter().enumerate() {
        let (n, k) = prepare(&field(i), c)?;
        check_known_group(state, &format!("{}.group", field(i)), &n.group)?;
        news.push(n);
        keys.push(k);
    }
    let _order = state.in_order();
    let made = state.registry().create(&news, super::now())?;
    state.apply(made.iter().map(PeerRecord::to_update).collect())?;
    for p in &made {
        state.events.publish(Event::PeerCreated {
            id: p.id,
            name: p.name.clone(),
            public_key: p.public_key.to_base64(),
        });
    }
    Ok(made
        .iter()
        .zip(keys)
        .map(|(p, k)| Created {
            peer: p.into(),
            config: k.map(|k| wg_quick(&state.client, p, Some(&k))),
            warnings: state.client.guessed.iter().cloned().collect(),
        })
        .collect())
}

/// POST /api/v1/peers
pub async fn create(
    State(state): State<Arc<ApiState>>,
    ApiJson(body): ApiJson<CreatePeer>,
) -> Result<Response, ApiError> {
    let mut made = blocking(move || create_all(&state, vec![body], |_| "peer".into())).await?;
    let one = made
        .pop()
        .ok_or_else(|| ApiError::bad_request("nothing created"))?;
    let note = format!("created peer {:?} (id {})", one.peer.name, one.peer.id);
    Ok(noted(
        (StatusCode::CREATED, Json(one)).into_response(),
        note,
    ))
}

/// POST /api/v1/peers/bulk
pub async fn create_bulk(
    State(state): State<Arc<ApiState>>,
    ApiJson(body): ApiJson<CreatePeers>,
) -> Result<Response, ApiError> {
    if body.peers.is_empty() || body.peers.len() > MAX_BULK {
        return Err(ApiError::bad_request(format!(
            "peers: send 1 to {MAX_BULK} peers per request (got {})",
            body.peers.len()
        )));
    }
    let made = blocking(move || create_all(&state, body.peers, |i| format!("peers[{i}]"))).await?;
    let note = format!("created {} peers", made.len());
    let response = (
        StatusCode::CREATED,
        Json(serde_json::json!({ "peers": made })),
    );
    Ok(noted(response.into_response(), note))
}

/// GET /api/v1/peers
pub async fn list(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    if let Some(g) = &q.group {
        check_group("group", g)?;
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit: {limit} is out of range (1 to {MAX_PAGE})"
        )));
    }
    let filter = ListFilter {
        group: q.group,
        after: q.after.unwrap_or(0),
        limit,
        revoked: q.revoked.unwrap_or(true),
        search: q.search.filter(|s| !s.is_empty()),
    };
    let peers = blocking(move || Ok(state.registry().list(&filter)?)).await?;
    let next_after = (peers.len() == limit)
        .then(|| peers.last().map(|p| p.id))
        .flatten();
    let views: Vec<PeerView> = peers.iter().map(PeerView::from).collect();
    Ok(Json(serde_json::json!({ "peers": views, "next_after": next_after })).into_response())
}

/// The peer a path names: digits are its id, anything else its name.
fn peer_id(state: &ApiState, text: &str) -> Result<i64, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no peer {} (give a peer's id or name)", quoted(text)),
        )
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(not_found);
    }
    if check_name("peer", text).is_err() {
        return Err(not_found());
    }
    match state.registry().id_by_name(text) {
        Err(crate::registry::RegistryError::NoSuchName(_)) => Err(not_found()),
        found => Ok(found?),
    }
}

/// GET /api/v1/peers/{id}
pub async fn get(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let peer = blocking(move || {
        let id = peer_id(&state, &id)?;
        Ok(state.registry().get(id)?)
    })
    .await?;
    Ok(Json(PeerView::from(&peer)).into_response())
}

/// PATCH /api/v1/peers/{id}
pub async fn change(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ChangePeer>,
) -> Result<Response, ApiError> {
    if let Some(n) = &body.name {
        check_name("name", n)?;
    }
    let allowed_ips = body
        .allowed_ips
        .as_deref()
        .map(|l| parse_prefixes("allowed_ips", l))
        .transpose()?;
    if let Some(g) = &body.group {
        check_group("group", g)?;
        check_known_group(&state, "group", g)?;
    }
    let change = PeerChange {
        name: body.name,
        preshared_key: None,
        allowed_ips,
        group: body.group,
        expires_at: body.expires_at.map(|t| (t > 0).then_some(t)),
    };
    let peer = blocking(move || {
        let id = peer_id(&state, &id)?;
        change_peer(&state, id, &change)
    })
    .await?;
    let note = format!("changed peer {:?} (id {})", peer.name, peer.id);
    Ok(noted(Json(PeerView::from(&peer)).into_response(), note))
}

/// Changes peer `id` (registry, then interface, if it is not revoked).
pub(crate) fn change_peer(
    state: &ApiState,
    id: i64,
    change: &PeerChange,
) -> Result<PeerRecord, ApiError> {
    let _order = state.in_order();
    let peer = state.registry().update(id, change, super::now())?;
    if peer.revoked_at.is_none() {
        state.apply(vec![peer.to_update()])?;
    }
    state.events.publish(Event::PeerChanged { id });
    Ok(peer)
}

/// `response` with `note` for the audit log.
fn noted(mut response: Response, note: String) -> Response {
    response.extensions_mut().insert(super::AuditNote(note));
    response
}

/// Revokes peer `id` (registry, then interface); a second revoke changes nothing. Says
/// whether this call revoked it.
pub(crate) fn revoke_peer(state: &ApiState, id: i64) -> Result<(PeerRecord, bool), ApiError> {
    let _order = state.in_order();
    let (peer, revoked) = state.registry().revoke_once(id, super::now())?;
    // A second revoke changes nothing and says nothing again.
    if revoked {
        state.apply(vec![PeerUpdate::removal(peer.public_key)])?;
        state.events.publish(Event::PeerRevoked {
            id,
            public_key: peer.public_key.to_base64(),
        });
    }
    Ok((peer, revoked))
}

/// Deletes peer `id` (registry, then interface); returns what it was.
pub(crate) fn delete_peer(state: &ApiState, id: i64) -> Result<PeerRecord, ApiError> {
    let _order = state.in_order();
    let mut registry = state.registry();
    let peer = registry.get(id)?;
    registry.delete(id, super::now())?;
    drop(registry);
    state.apply(vec![PeerUpdate::removal(peer.public_key)])?;
    state.events.publish(Event::PeerDeleted {
        id,
        public_key: peer.public_key.to_base64(),
    });
    Ok(peer)
}

/// POST /api/v1/peers/{id}/revoke
pub async fn revoke(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (peer, now) = blocking(move || {
        let id = peer_id(&state, &id)?;
        revoke_peer(&state, id)
    })
    .await?;
    let note = if now {
        format!("revoked peer {:?} (id {})", peer.name, peer.id)
    } else {
        format!("peer {:?} (id {}) was revoked already", peer.name, peer.id)
    };
    Ok(noted(Json(PeerView::from(&peer)).into_response(), note))
}

/// DELETE /api/v1/peers/{id}
pub async fn delete(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let peer = blocking(move || {
        let id = peer_id(&state, &id)?;
        delete_peer(&state, id)
    })
    .await?;
    let note = format!("deleted peer {:?} (id {})", peer.name, peer.id);
    Ok(noted(StatusCode::NO_CONTENT.into_response(), note))
}

/// Why a stored peer's file is not given as a QR code.
pub const NO_KEY_FOR_QR: &str = "a QR code of this file would carry a placeholder instead of \
    the private key, which xgate never stores (it is shown once, when xgate makes the key \
    pair): create the peer with `xgate peer add --qr` for a working code, or fill in \
    PrivateKey and encode the file yourself";

/// How the configuration is wanted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigQuery {
    /// "wg-quick" (default), "png" (QR code) or "terminal" (QR code in block characters).
    #[serde(default)]
    format: Option<String>,
}

/// GET /api/v1/peers/{id}/config: the `wg-quick` file (private key as a placeholder); a QR
/// code of it is refused, since it would not connect.
pub async fn config(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Query(q): Query<ConfigQuery>,
) -> Result<Response, ApiError> {
    let format = q.format.unwrap_or_else(|| "wg-quick".into());
    if !matches!(format.as_str(), "wg-quick" | "png" | "terminal") {
        return Err(ApiError::bad_request(format!(
            "format: {} is not one of wg-quick, png, terminal",
            quoted(&format)
        )));
    }
    if format != "wg-quick" {
        return Err(ApiError::new(StatusCode::CONFLICT, NO_KEY_FOR_QR));
    }
    let text = blocking(move || {
        let id = peer_id(&state, &id)?;
        let peer = state.registry().get(id)?;
        if peer.revoked_at.is_some() {
            return Err(ApiError::new(
                StatusCode::GONE,
                format!("peer {id} is revoked; create a new peer for this user"),
            ));
        }
        Ok(wg_quick(&state.client, &peer, None))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}
