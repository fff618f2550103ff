//! What stands between a browser and a change: the signed-in session (pages send a browser
//! without one to the sign-in form), the origin of every POST (a request another site made
//! is refused by the browser's own Sec-Fetch-Site and Origin headers), the form's CSRF token,
//! and the session's role. Every answer carries a strict Content-Security-Policy.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequestParts, Request};
use axum::http::header::{self, HeaderValue};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use subtle::ConstantTimeEq;

use super::session::Session;
use super::Web;
use crate::api::ApiError;

/// Scripts and styles only from this server, images also inline (the QR code), nothing
/// framed, forms only posted here.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// Middleware: a POST from another site is refused before anything else looks at it (its
/// session, its form); every answer gets the security headers.
pub async fn protect(request: Request, next: Next) -> Response {
    let mut response = match same_origin_unless_reading(&request) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        // Not no-referrer: under it, browsers send `Origin: null` with their own POSTs.
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The page a refusal shows.
#[derive(askama::Template)]
#[template(path = "refused.html")]
struct Refused<'a> {
    why: &'a str,
}

/// A refusal as a small HTML page (the browser shows why).
pub fn refused(status: StatusCode, why: &str) -> Response {
    (status, super::render(&Refused { why })).into_response()
}

/// Why a change was refused (answered as a `refused` page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(pub StatusCode, pub &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        refused(self.0, self.1)
    }
}

/// An API error answered as a refusal page: what the console's handlers return with `?`.
#[derive(Debug)]
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<Refusal> for PageError {
    fn from(r: Refusal) -> Self {
        Self(ApiError::new(r.0, r.1))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        refused(self.0.status, &self.0.message)
    }
}

/// The signed-in session of a request; without one, a page request is sent to the sign-in
/// form and anything else gets 401.
pub struct SignedIn(pub Session);

impl FromRequestParts<Arc<Web>> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Response> {
        let tokens = web.api.tokens();
        match web
            .api
            .console
            .sessions
            .find(&parts.headers, &tokens, Instant::now())
        {
            Some(session) => Ok(Self(session)),
            None if parts.method == axum::http::Method::GET => {
                Err(Redirect::to("/login").into_response())
            }
            None => Err(refused(
                StatusCode::UNAUTHORIZED,
                "not signed in (or the session ended): sign in again at /login",
            )),
        }
    }
}

fn same_origin_unless_reading(request: &Request) -> Result<(), Refusal> {
    if matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) {
        return Ok(());
    }
    same_origin(request.headers())
}

/// Refuses a POST another site made: browsers say so in Sec-Fetch-Site, and in Origin
/// (which must then be this server's own, as the Host header names it).
pub fn same_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let cross = || {
        Refusal(
            StatusCode::FORBIDDEN,
            "cross-site request refused: changes are only taken from this console's own pages",
        )
    };
    // A page's script cannot set Sec-Fetch-Site: where a browser sends it, it decides.
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            _ => Err(cross()),
        };
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, h)| h.as_bytes());
        if host.is_none() || origin_host != host {
            return Err(cross());
        }
    }
    Ok(())
}

/// Lets a change through only from an admin's session with the session's CSRF token (its
/// origin was checked by `protect`).
pub fn may_change(session: &Session, csrf: &str) -> Result<(), Refusal> {
    if !bool::from(session.csrf.as_bytes().ct_eq(csrf.as_bytes())) {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or stale: reload the page and try again",
        ));
    }
    if !session.admin() {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "this session is a viewer's: it reads, it changes nothing (sign in with an admin \
             token to change)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("value"));
        }
        h
    }

    #[test]
    fn only_this_servers_own_pages_may_post() {
        assert!(
            same_origin(&with(&[("host", "10.0.0.1:8080")])).is_ok(),
            "old browser"
        );
        let own = with(&[
            ("host", "10.0.0.1:8080"),
            ("origin", "http://10.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert!(same_origin(&own).is_ok());
        for bad in [
            with(&[("host", "10.0.0.1:8080"), ("sec-fetch-site", "cross-site")]),
            with(&[("host", "10.0.0.1:8080"), ("sec-fetch-site", "same-site")]),
            with(&[("host", "10.0.0.1:8080"), ("origin", "http://evil.example")]),
            with(&[("host", "10.0.0.1:8080"), ("origin", "null")]),
            with(&[("origin", "http://10.0.0.1:8080")]),
        ] {
            assert!(same_origin(&bad).is_err(), "{bad:?}");
        }
    }
}
