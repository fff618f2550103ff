//! Bearer tokens. Only SHA-256 hashes of the tokens are kept (in memory and on disk); a
//! request's token is hashed and compared with each in constant time, so neither the stored
//! form nor the timing of a refusal gives a token away.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::tokens::{Role, Token};
use super::ApiState;

/// At most one log line about refused sign-ins per this long (a guessing client must not
/// fill the journal); each line says how many were left unlogged since the previous one.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Refused sign-ins, for a rate-limited log.
#[derive(Debug, Default)]
pub struct Refusals {
    /// When the last line was logged, and refusals not logged since.
    last: Mutex<Option<(Instant, u64)>>,
}

impl Refusals {
    /// Logs a refusal from `from`, unless a line was logged within `LOG_EVERY`.
    pub(super) fn note(&self, from: Option<SocketAddr>, path: &str) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match &mut *last {
            Some((at, unlogged)) if now.duration_since(*at) < LOG_EVERY => *unlogged += 1,
            _ => {
                let unlogged = last.map_or(0, |(_, n)| n);
                let source = from.map_or_else(|| "unknown".to_string(), |a| a.to_string());
                tracing::warn!(
                    source = %source,
                    path,
                    earlier_unlogged = unlogged,
                    "API sign-in refused: wrong bearer token"
                );
                *last = Some((now, 0));
            }
        }
    }
}

/// The SHA-256 of a token, as stored.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The accepted token `header` (an Authorization value) carries, if any.
pub fn authorized(header: Option<&str>, tokens: &[Token]) -> Option<Token> {
    let token = header.and_then(|h| h.strip_prefix("Bearer "))?;
    matching(token.trim(), tokens)
}

/// The accepted token whose hash is `token`'s, if any.
pub fn matching(token: &str, tokens: &[Token]) -> Option<Token> {
    matching_hash(&hash_token(token), tokens)
}

/// The accepted token with this hash, if any.
pub fn matching_hash(hash: &[u8; 32], tokens: &[Token]) -> Option<Token> {
    // Every stored hash is compared, match or not: the time taken does not depend on which.
    // A hash listed twice takes the lesser role.
    let mut found: Option<Token> = None;
    for t in tokens {
        if bool::from(t.hash.ct_eq(hash)) && found.as_ref().is_none_or(|f| f.role == Role::Admin) {
            found = Some(t.clone());
        }
    }
    found
}

/// Who made a request: the token's role and name (an extension on every authorized request).
#[derive(Debug, Clone)]
pub struct Caller {
    /// What it may do.
    pub role: Role,
    /// Who, for the audit log ("api:LABEL" or "web:LABEL").
    pub actor: String,
}

/// True for a request that only reads.
pub fn reads_only(method: &axum::http::Method) -> bool {
    matches!(
        *method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    )
}

/// True for a read that hands out a secret: an IKEv2 user's client files carry its
/// pre-shared key (WireGuard files carry a placeholder, never a key).
pub fn reveals_secrets(path: &str) -> bool {
    path.strip_prefix("/api/v1/ike/users/")
        .is_some_and(|rest| rest.ends_with("/config") || rest.ends_with("/profile"))
}

/// A viewer's refusal: 403, saying why.
pub fn viewer_refused() -> Response {
    let body = serde_json::json!({
        "error": "this token is a viewer's: it reads, it changes nothing (an admin token \
                  changes; `xgate token add --role admin`)",
    });
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

/// Middleware: lets a request through only with a valid token (401 and nothing else if not).
pub async fn require_token(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Result<Response, Response> {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let found = {
        let tokens = state
            .tokens
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        authorized(header, &tokens)
    };
    let Some(token) = found else {
        let from = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        // A request that carries no token is no sign-in attempt (a probe, a health check,
        // the CLI finding which interface answers): only wrong tokens are logged.
        if header.is_some() {
            state.refusals.note(from, request.uri().path());
        }
        // The interface is named so that a CLI holding another interface's token can find
        // the right one; the name is no secret (`ip link` shows it).
        let body = serde_json::json!({
            "error": "missing or wrong bearer token (send Authorization: Bearer <token>)",
            "interface": state.interface,
        });
        let challenge = [(axum::http::header::WWW_AUTHENTICATE, "Bearer")];
        return Err((StatusCode::UNAUTHORIZED, challenge, Json(body)).into_response());
    };
    let viewer = token.role == Role::Viewer;
    if viewer && (!reads_only(request.method()) || reveals_secrets(request.uri().path())) {
        return Err(viewer_refused());
    }
    let mut request = request;
    request.extensions_mut().insert(Caller {
        role: token.role,
        actor: format!("api:{}", token.who()),
    });
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_listed_token_passes() {
        let token = |t: &str, role| Token {
            hash: hash_token(t),
            role,
            label: t.into(),
        };
        let tokens = [token("alpha", Role::Admin), token("beta", Role::Viewer)];
        let role = |h| authorized(h, &tokens).map(|t| t.role);
        assert_eq!(role(Some("Bearer beta")), Some(Role::Viewer));
        assert_eq!(role(Some("Bearer alpha")), Some(Role::Admin));
        assert_eq!(role(Some("Bearer gamma")), None);
        assert_eq!(role(Some("beta")), None, "scheme required");
        assert_eq!(role(Some("Bearer ")), None);
        assert_eq!(role(None), None);
        assert!(
            authorized(Some("Bearer alpha"), &[]).is_none(),
            "no tokens: nobody"
        );
    }

    #[test]
    fn the_stored_form_is_the_sha256() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            hex::encode(hash_token("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
