//! The operators' web console, served by the API itself at `/` (same listener, same TLS):
//! pages rendered on the server from askama templates (checked when xgate is built, HTML
//! escaped), one small script for the live parts, fed by server-sent events, and one style
//! sheet, both compiled into the binary. No build step, nothing fetched from elsewhere.
//!
//! - `session`: sign-in with an API token becomes a session cookie.
//! - `guard`: sessions, same-origin and CSRF checks, roles, security headers.
//! - `sign_in`: the sign-in form and signing out.
//! - `history`: the overview's figures, sampled every second, the last 15 minutes kept;
//!   `worker_load`: how busy each worker thread is, from /proc.
//! - `overview`: the overview page; `live`: its event stream.
//! - `users`: users (WireGuard peers): search, pages, add (QR code once), revoke, delete.
//! - `user_detail`: one user, its group and expiry changed; `dates`: the forms' dates.
//! - `groups`: each group's client policy, pool and users.
//! - `capacity_page`: the latest capacity report and a sizing form answered from it.
//! - `system`: version, settings, workers' backends, IKEv2 SAs, cluster nodes.
//! - `audit_page`: the audit log.
//! - `assets`: the script and the style sheet.

mod assets;
mod audit_page;
mod capacity_page;
mod dates;
mod groups;
mod guard;
pub mod history;
mod live;
mod overview;
mod session;
mod sign_in;
mod system;
mod user_detail;
mod users;
mod worker_load;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::api::ApiState;

/// What the console keeps in the API's state: its sessions and its figures.
#[derive(Debug, Default)]
pub struct Console {
    /// Signed-in browsers.
    pub sessions: session::Sessions,
    /// The overview's last 15 minutes.
    pub history: history::History,
}

/// What the console's handlers share.
pub struct Web {
    /// The API's state (registry, plane, tokens, events).
    pub api: Arc<ApiState>,
    /// Whether it is served over TLS (cookies are then Secure).
    pub secure: bool,
}

/// A rendered template as an HTML answer; a template that fails to render is a 500.
pub fn render(template: &impl askama::Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!("web page not rendered: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "page not rendered").into_response()
        }
    }
}

/// The console's routes (`secure`: served over TLS).
pub fn router(api: Arc<ApiState>, secure: bool) -> Router {
    let web = Arc::new(Web { api, secure });
    Router::new()
        .route("/", get(overview::page))
        .route("/live", get(live::stream))
        .route("/login", get(sign_in::form).post(sign_in::submit))
        .route("/logout", post(sign_in::sign_out))
        .route("/users", get(users::page).post(users::add))
        .route("/users/{id}", get(user_detail::page))
        .route("/users/{id}/change", post(user_detail::change))
        .route("/users/{id}/revoke", post(users::revoke))
        .route("/users/{id}/delete", post(users::delete))
        .route("/groups", get(groups::page))
        .route("/capacity", get(capacity_page::to_page))
        .route("/capacity/", get(capacity_page::page))
        .route("/capacity/{file}", get(capacity_page::plot))
        .route("/system", get(system::page))
        .route("/audit", get(audit_page::page))
        .route("/assets/{name}", get(assets::serve))
        .layer(axum::middleware::from_fn(guard::protect))
        .with_state(web)
}

/// What every page's header shows: who is signed in, the page, the sign-out form's token.
pub struct Nav {
    /// Who is signed in.
    pub who: String,
    /// "admin" or "viewer".
    pub role: &'static str,
    /// Whether the session may change things (forms are shown only then).
    pub admin: bool,
    /// The session's CSRF token, for the page's forms.
    pub csrf: String,
    /// Which page this is.
    pub page: &'static str,
}

impl Nav {
    /// The header for `session` on `page`.
    pub fn new(session: &session::Session, page: &'static str) -> Self {
        Self {
            who: session.actor.trim_start_matches("web:").to_string(),
            role: session.role.name(),
            admin: session.admin(),
            csrf: session.csrf.clone(),
            page,
        }
    }
}

/// Items joined with commas, or "-" for none.
pub fn listed<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        return "-".into();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A count with thin spaces between thousands (12 345).
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    out
}
