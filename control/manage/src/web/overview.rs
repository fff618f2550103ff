//! The overview: users online, handshakes per second, Gbit/s in and out, drops, per-worker
//! load, charts of the last 15 minutes and a feed of tunnels coming up and going down. The
//! page is rendered with the latest figures; `console.js` keeps it live from `/live`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;

use super::guard::SignedIn;
use super::history::{Detail, Sample};
use super::{grouped, render, Nav, Web};

/// The overview page.
#[derive(askama::Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    nav: Nav,
    now: Sample,
    detail: Detail,
    online: String,
}

/// GET /
pub async fn page(State(web): State<Arc<Web>>, SignedIn(session): SignedIn) -> Response {
    let history = &web.api.console.history;
    let now = history.latest().unwrap_or_default();
    render(&OverviewPage {
        nav: Nav::new(&session, "overview"),
        online: grouped(now.online),
        now,
        detail: history.detail(),
    })
}
