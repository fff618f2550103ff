//! The IKEv2 endpoints: users (created with a key of their own, made here unless given, or
//! to authenticate by certificate;
//! listed; deleted, which closes their SAs) and the SAs that are up, with the responder's
//! counters.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::{quoted, ApiError};
use super::peer_routes::{check_group, check_known_group, check_name};
use super::profiles::swanctl::endpoint_host;
use super::profiles::{self, Format, IkeServer};
use super::{blocking, ApiJson, ApiState};
use crate::events::Event;
use crate::ike_grants::ike_user;
use crate::registry::{IkeUserAuth, IkeUserRecord, NewIkeUser};

/// Longest pre-shared key taken.
const MAX_PSK: usize = 256;

/// POST /api/v1/ike/users (no Debug: it carries the key).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIkeUser {
    /// Name (unique among IKEv2 users).
    name: String,
    /// Identity the client authenticates as (default: the name).
    identity: Option<String>,
    /// Group (default "default").
    group: Option<String>,
    /// "psk" (the default), "certificate" or "eap".
    auth: Option<String>,
    /// Pre-shared key as text (default: 32 random characters; none with a certificate).
    psk: Option<String>,
    /// The password of an "eap" user: taken once, kept only as its NT hash, never shown.
    password: Option<String>,
}

/// The shortest password taken: MSCHAPv2 falls to an offline guess from one captured login,
/// so a short one is as good as none.
const MIN_PASSWORD: usize = 8;
/// The longest (RFC 2759: 256 characters).
const MAX_PASSWORD: usize = 256;

/// An IKEv2 user as the API shows it (no Debug: the answer that creates it carries the key).
#[derive(Serialize)]
pub struct IkeUserView {
    id: i64,
    name: String,
    group: String,
    identity: String,
    /// "psk", "certificate" or "eap".
    auth: &'static str,
    addresses: Vec<String>,
    created_at: u64,
    /// The key, only in the answer that created the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    psk: Option<String>,
    /// What the caller should know (IKE not running on this interface).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

impl From<&IkeUserRecord> for IkeUserView {
    fn from(u: &IkeUserRecord) -> Self {
        Self {
            id: u.id,
            name: u.name.clone(),
            group: u.group.clone(),
            identity: u.identity.clone(),
            auth: u.auth.name(),
            addresses: u.addresses.iter().map(ToString::to_string).collect(),
            created_at: u.created_at,
            psk: None,
            warnings: Vec::new(),
        }
    }
}

/// 32 random characters of base64: typed as text by every client, 192 bits.
fn random_psk() -> String {
    use base64::Engine as _;
    let mut raw = [0u8; 24];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// The identity in the one form the registry keeps (so two spellings of one identity are
/// one user), or why it is none.
fn canonical_identity(identity: &str) -> Result<String, ApiError> {
    match ike::Identity::check_text(identity) {
        Ok(()) => Ok(ike::Identity::from_text(identity).to_text()),
        Err(why) => Err(ApiError::bad_request(format!(
            "identity: {} is not an identity ({why}): use an e-mail address, a host name or an \
             IP address, as the client sends it",
            quoted(identity)
        ))),
    }
}

/// The warning when users are saved but no responder runs.
const IKE_OFF: &str = "IKEv2 is not running on this interface: the user is saved and can \
    connect once it runs (set [ike] enabled = true, or leave it unset, and restart xgate; \
    the log says why it did not start)";

/// POST /api/v1/ike/users
pub async fn create(
    State(state): State<Arc<ApiState>>,
    ApiJson(body): ApiJson<CreateIkeUser>,
) -> Result<Response, ApiError> {
    check_name("name", &body.name)?;
    let identity = canonical_identity(body.identity.as_deref().unwrap_or(&body.name))?;
    let group = body.group.unwrap_or_else(|| "default".into());
    check_group("group", &group)?;
    check_known_group(&state, "group", &group)?;
    let method = body.auth.as_deref().unwrap_or("psk");
    if body.password.is_some() && method != "eap" {
        return Err(ApiError::bad_request(
            "password: only a password (\"auth\": \"eap\") user has one: leave it out, or \
             set auth to \"eap\"",
        ));
    }
    let psk = match (method, body.psk) {
        ("psk", psk) => Some(psk.unwrap_or_else(random_psk)),
        ("certificate" | "eap", None) => None,
        ("certificate" | "eap", Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "psk: a {method} user has no pre-shared key: leave psk out, or set auth to \
                 \"psk\""
            )))
        }
        (other, _) => {
            return Err(ApiError::bad_request(format!(
                "auth: {} is not a method: use \"psk\", \"certificate\" or \"eap\"",
                quoted(other)
            )))
        }
    };
    let nt_hash = match (method, body.password) {
        ("eap", Some(p)) if (MIN_PASSWORD..=MAX_PASSWORD).contains(&p.chars().count()) => Some(
            Zeroizing::new(*ike::eap::mschapv2::NtHash::of_password(&p).bytes()),
        ),
        ("eap", Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "password: use {MIN_PASSWORD} to {MAX_PASSWORD} characters (MSCHAPv2 falls to \
                 an offline guess of a short one)"
            )))
        }
        ("eap", None) => {
            return Err(ApiError::bad_request(
                "password: an \"eap\" user needs one (`xgate ike user add NAME --password` \
                 asks for it)",
            ))
        }
        _ => None,
    };
    if let Some(psk) = psk.as_ref().filter(|p| p.len() > MAX_PSK) {
        return Err(ApiError::bad_request(format!(
            "psk: {} bytes; at most {MAX_PSK} are taken",
            psk.len()
        )));
    }
    let new = NewIkeUser {
        name: body.name,
        group,
        identity,
        auth: match (&psk, nt_hash) {
            (Some(p), _) => IkeUserAuth::Psk(Zeroizing::new(p.clone().into_bytes())),
            (None, Some(h)) => IkeUserAuth::Eap(h),
            (None, None) => IkeUserAuth::Certificate,
        },
    };
    let view = blocking(move || {
        let _order = state.in_order();
        let user = state.registry().create_ike_user(&new, super::now())?;
        state.events.publish(Event::IkeUserCreated {
            id: user.id,
            name: user.name.clone(),
            identity: user.identity.clone(),
        });
        let mut view = IkeUserView::from(&user);
        view.psk = psk;
        // The first user starts the responder when [ike] enabled is unset.
        match state.ike.get_or_start() {
            (Some(ike), false) => {
                let policy = state.client.policy(&user.group);
                ike.set_users(vec![ike_user(&user, policy)], false);
            }
            (Some(ike), true) => {
                // Read and handed over under the registry's lock: a user deleted or made
                // meanwhile is either in this list or told to the responder after it.
                let mut registry = state.registry();
                let users = registry.ike_users()?;
                let all = users
                    .iter()
                    .map(|u| ike_user(u, state.client.policy(&u.group)));
                ike.set_users(all.collect(), true);
                drop(registry);
            }
            (None, _) => view.warnings.push(IKE_OFF.into()),
        }
        Ok(view)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// GET /api/v1/ike/users
pub async fn list(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let users = blocking(move || Ok(state.registry().ike_users()?)).await?;
    let views: Vec<IkeUserView> = users.iter().map(IkeUserView::from).collect();
    Ok(Json(serde_json::json!({ "users": views })).into_response())
}

/// An IKEv2 user's id from a path.
fn user_id(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "{} is not an IKEv2 user id (a number; `GET /api/v1/ike/users` lists them)",
            quoted(text)
        ))
    })
}

/// DELETE /api/v1/ike/users/{id}
pub async fn delete(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = user_id(&id)?;
    blocking(move || {
        let _order = state.in_order();
        let user = state.registry().delete_ike_user(id, super::now())?;
        if let Some(ike) = state.ike.get() {
            ike.remove_users(vec![ike::Identity::from_text(&user.identity)]);
        }
        state.events.publish(Event::IkeUserDeleted {
            id,
            identity: user.identity,
        });
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// GET /api/v1/ike/users/{id}/config: the user's strongSwan client configuration.
pub async fn config(
    state: State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    made_profile(state, id, Format::Swanctl).await
}

/// `?format=` of the profile route.
#[derive(Deserialize)]
pub struct ProfileQuery {
    format: Option<String>,
}

/// GET /api/v1/ike/users/{id}/profile?format=mobileconfig|powershell|sswan|swanctl: the
/// file that sets up the user's device; the `X-Instructions` header says what to do with it.
pub async fn profile(
    state: State<Arc<ApiState>>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<ProfileQuery>,
) -> Result<Response, ApiError> {
    let name = q.format.unwrap_or_else(|| "swanctl".into());
    let Some(format) = Format::parse(&name) else {
        return Err(ApiError::bad_request(format!(
            "format: {} is not a profile: use mobileconfig (macOS, iOS), powershell \
             (Windows), sswan (strongSwan's Android app) or swanctl (strongSwan)",
            quoted(&name)
        )));
    };
    made_profile(state, id, format).await
}

async fn made_profile(
    State(state): State<Arc<ApiState>>,
    id: String,
    format: Format,
) -> Result<Response, ApiError> {
    let id = user_id(&id)?;
    let Some(ike) = state.ike.get() else {
        return Err(ApiError::new(StatusCode::CONFLICT, IKE_OFF));
    };
    let (bytes, name) = blocking(move || {
        let user = state.registry().ike_user(id)?;
        let server = IkeServer {
            address: endpoint_host(&state.client.endpoint),
            identity: ike.identity().to_text(),
            ca: ike.client_ca().map(<[u8]>::to_vec),
        };
        let policy = state.client.policy(&user.group);
        profiles::profile(format, &server, &user, policy)
            .map(|b| (b, user.name.clone()))
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, e.to_string()))
    })
    .await?;
    let (media, suffix) = format.media();
    let disposition = format!("attachment; filename=\"xgate-{name}.{suffix}\"");
    let instructions = format.instructions().join(" ");
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    for (key, value) in [
        (axum::http::header::CONTENT_TYPE.as_str(), media.to_string()),
        (
            axum::http::header::CONTENT_DISPOSITION.as_str(),
            disposition,
        ),
        ("x-instructions", instructions),
    ] {
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            headers.insert(key, v);
        }
    }
    Ok(response)
}

/// One SA that is up, as the API shows it.
#[derive(Debug, Serialize)]
struct SaView {
    identity: String,
    name: String,
    remote: String,
    addresses: Vec<String>,
    encryption: String,
    up_since: u64,
    /// Bytes of ESP received and sent (the workers' counts, at most a second old).
    rx_bytes: u64,
    tx_bytes: u64,
    /// When a CHILD_SA and the IKE SA were last rekeyed (Unix seconds), if ever.
    child_rekeyed: Option<u64>,
    ike_rekeyed: Option<u64>,
}

fn unix(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// GET /api/v1/ike/sas
pub async fn sas(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let body = blocking(move || sas_json(&state)).await?;
    Ok(Json(body).into_response())
}

/// The IKEv2 responder's SAs and counters, as `GET /api/v1/ike/sas` answers (blocking).
pub(crate) fn sas_json(state: &ApiState) -> Result<serde_json::Value, ApiError> {
    let Some(ike) = state.ike.get() else {
        return Err(ApiError::new(StatusCode::CONFLICT, IKE_OFF));
    };
    let st = ike.state().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the IKEv2 responder did not answer (shutting down?)",
        )
    })?;
    let published = state.plane.published();
    let bytes = |tunnel: Option<u32>| {
        let tunnels = published.as_ref().map(|p| &p.state.esp_tunnels);
        tunnels
            .and_then(|t| t.iter().find(|p| Some(p.peer) == tunnel))
            .map_or((0, 0), |p| (p.rx_bytes, p.tx_bytes))
    };
    let sas: Vec<SaView> = st
        .sas
        .iter()
        .map(|s| {
            let (rx_bytes, tx_bytes) = bytes(s.tunnel);
            SaView {
                identity: s.identity.display(),
                name: s.name.clone(),
                remote: s.remote.to_string(),
                addresses: s.addresses.iter().map(ToString::to_string).collect(),
                encryption: s.encryption.clone(),
                up_since: unix(s.since),
                rx_bytes,
                tx_bytes,
                child_rekeyed: s.child_rekeyed.map(unix),
                ike_rekeyed: s.ike_rekeyed.map(unix),
            }
        })
        .collect();
    let c = &st.counters;
    Ok(serde_json::json!({
        "ports": [st.ports.0, st.ports.1],
        "users": st.users,
        "sas": sas,
        "counters": {
            "inits_accepted": c.inits_accepted,
            "init_retransmissions": c.init_retransmissions,
            "cookies_sent": c.cookies_sent,
            "no_proposal_chosen": c.no_proposal_chosen,
            "inits_no_proposal": c.inits_no_proposal,
            "invalid_ke": c.invalid_ke,
            "auth_succeeded": c.auth_succeeded,
            "auth_failed": c.auth_failed,
            "auth_failed_reasons": c.auth_failed_reasons,
            "users_locked": c.users_locked,
            "cert_refused": c.cert_refused,
            "ts_unacceptable": c.ts_unacceptable,
            "address_failures": c.address_failures,
            "auth_malformed": c.auth_malformed,
            "half_open_expired": c.half_open_expired,
            "retransmissions_answered": c.retransmissions_answered,
            "fragments_kept": c.fragments_kept,
            "children_deleted": c.children_deleted,
            "children_rekeyed": c.children_rekeyed,
            "children_created": c.children_created,
            "ike_rekeyed": c.ike_rekeyed,
            "mobike_moves": c.mobike_moves,
            "dead_peers": c.dead_peers,
            "certificate_withdrawn": c.certificate_withdrawn,
            "dropped": c.dropped,
            "queue_full": st.queue_full,
            "esp_not_carried": st.esp_not_carried,
        },
    }))
}
