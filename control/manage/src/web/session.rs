//! Browser sessions: an operator signs in with an API token once and the browser then holds
//! a random session id in a cookie (HttpOnly, SameSite=Strict, Secure under TLS). Only the
//! id's SHA-256 is kept, in memory; a session ends at its expiry, at sign-out, at a restart,
//! or as soon as its token leaves the token file.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::header::COOKIE;
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::api::{Role, Token};

/// The cookie's name.
pub const COOKIE_NAME: &str = "xgate_session";
/// How long a session lasts from sign-in.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at once; signing in past this ends the oldest.
const MAX_SESSIONS: usize = 1024;

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// What it may do (its token's role).
    pub role: Role,
    /// Who, for the audit log.
    pub actor: String,
    /// The token forms must carry (random, per session).
    pub csrf: String,
    /// The token's hash: the session ends when the token is no longer accepted.
    token: [u8; 32],
    /// When it ends.
    expires: Instant,
}

impl Session {
    /// True for an admin's session.
    pub fn admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// The open sessions, by the SHA-256 of their id.
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<HashMap<[u8; 32], Session>>,
}

/// 32 random bytes as hex.
fn random_hex() -> String {
    let mut raw = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
    hex::encode(raw)
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// Opens a session for `token`; returns the id the cookie carries.
    pub fn open(&self, token: &Token, now: Instant) -> String {
        let id = random_hex();
        let session = Session {
            role: token.role,
            actor: format!("web:{}", token.who()),
            csrf: random_hex(),
            token: token.hash,
            expires: now + LIFETIME,
        };
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|_, s| s.expires > now);
        if open.len() >= MAX_SESSIONS {
            if let Some(oldest) = open.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                open.remove(&oldest);
            }
        }
        open.insert(key(&id), session);
        id
    }

    /// The live session the request's cookie names, if its token is still in `tokens`.
    pub fn find(&self, headers: &HeaderMap, tokens: &[Token], now: Instant) -> Option<Session> {
        let id = cookie(headers, COOKIE_NAME)?;
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let k = key(id);
        let mut session = open.get(&k)?.clone();
        // The token as the file has it now: a role changed there changes the session's too.
        let current = crate::api::matching_token_hash(&session.token, tokens);
        let Some(token) = current.filter(|_| session.expires > now) else {
            open.remove(&k);
            return None;
        };
        session.role = token.role;
        session.actor = format!("web:{}", token.who());
        Some(session)
    }

    /// Ends the session the request's cookie names.
    pub fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE_NAME) {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            open.remove(&key(id));
        }
    }
}

/// The value of cookie `name` in the request's Cookie headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The Set-Cookie value for a new session (`secure` under TLS).
pub fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        LIFETIME.as_secs()
    )
}

/// The Set-Cookie value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::hash_token;

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, cookie.parse().expect("header"));
        h
    }

    #[test]
    fn a_session_lives_until_expiry_sign_out_or_its_token_goes() {
        let token = Token {
            hash: hash_token("t"),
            role: Role::Viewer,
            label: "ops".into(),
        };
        let sessions = Sessions::default();
        let now = Instant::now();
        let id = sessions.open(&token, now);
        let h = headers(&format!("other=1; {COOKIE_NAME}={id}"));
        let tokens = [token.clone()];
        let s = sessions.find(&h, &tokens, now).expect("open");
        assert_eq!((s.role, s.actor.as_str()), (Role::Viewer, "web:ops"));
        assert!(sessions
            .find(&headers(&format!("{COOKIE_NAME}=x{id}")), &tokens, now)
            .is_none());
        assert!(
            sessions.find(&h, &tokens, now + LIFETIME).is_none(),
            "expired"
        );
        let id = sessions.open(&token, now);
        let h = headers(&format!("{COOKIE_NAME}={id}"));
        assert!(sessions.find(&h, &[], now).is_none(), "token revoked");
        assert!(
            sessions.find(&h, &tokens, now).is_none(),
            "and it stays ended"
        );
        let id = sessions.open(&token, now);
        let h = headers(&format!("{COOKIE_NAME}={id}"));
        sessions.close(&h);
        assert!(sessions.find(&h, &tokens, now).is_none(), "signed out");
        let id = sessions.open(&token, now);
        let h = headers(&format!("{COOKIE_NAME}={id}"));
        let promoted = [Token {
            role: Role::Admin,
            ..token.clone()
        }];
        let s = sessions.find(&h, &promoted, now).expect("open");
        assert_eq!(s.role, Role::Admin, "the token file's role now");
        assert!(set_cookie(&id, true).contains("HttpOnly; SameSite=Strict; Max-Age=28800; Secure"));
    }
}
