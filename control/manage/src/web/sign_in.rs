//! Signing in with an API token (its role becomes the session's) and signing out.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::guard::{refused, SignedIn};
use super::{render, session, Web};

/// The sign-in page.
#[derive(askama::Template)]
#[template(path = "sign_in.html")]
struct SignInPage<'a> {
    /// Why the last attempt failed ("" at first).
    error: &'a str,
}

/// GET /login
pub async fn form(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let tokens = web.api.tokens();
    if web
        .api
        .console
        .sessions
        .find(&headers, &tokens, Instant::now())
        .is_some()
    {
        return Redirect::to("/").into_response();
    }
    render(&SignInPage { error: "" })
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub struct SignIn {
    token: String,
}

/// POST /login
pub async fn submit(State(web): State<Arc<Web>>, Form(form): Form<SignIn>) -> Response {
    let tokens = web.api.tokens();
    let Some(token) = crate::api::matching_token(form.token.trim(), &tokens) else {
        web.api.note_refused_sign_in("/login");
        let page = SignInPage {
            error: "That token is not accepted. Use an API token (`xgate token add`).",
        };
        return (StatusCode::UNAUTHORIZED, render(&page)).into_response();
    };
    let id = web.api.console.sessions.open(&token, Instant::now());
    let cookie = session::set_cookie(&id, web.secure);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

/// The sign-out form's fields.
#[derive(Deserialize)]
pub struct SignOut {
    #[serde(default)]
    csrf: String,
}

/// POST /logout
pub async fn sign_out(
    State(web): State<Arc<Web>>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Form(form): Form<SignOut>,
) -> Response {
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        form.csrf.as_bytes(),
        session.csrf.as_bytes(),
    )) {
        return refused(StatusCode::FORBIDDEN, "stale form: reload the page");
    }
    web.api.console.sessions.close(&headers);
    let cookie = session::clear_cookie(web.secure);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}
