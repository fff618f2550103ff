//! The audit log: who changed what, when; newest first, 100 a page.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::guard::{PageError, SignedIn};
use super::{render, Nav, Web};
use crate::api::blocking;
use crate::registry::AuditEntry;

/// Entries on one page.
const PAGE: usize = 100;

/// The audit page.
#[derive(askama::Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Nav,
    entries: Vec<(String, AuditEntry)>,
    next_before: Option<i64>,
}

/// The page's parameters.
#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    before: Option<i64>,
}

/// Unix milliseconds as UTC `YYYY-MM-DD HH:MM:SS`.
fn utc(ms: u64) -> String {
    let iso = crate::client::iso8601(&serde_json::json!(ms / 1000));
    iso.replace('T', " ").trim_end_matches('Z').to_string()
}

/// GET /audit
pub async fn page(
    State(web): State<Arc<Web>>,
    SignedIn(session): SignedIn,
    Query(q): Query<AuditQuery>,
) -> Result<Response, PageError> {
    let api = web.api.clone();
    let entries = blocking(move || Ok(api.registry_handle().audit_log(q.before, PAGE)?)).await?;
    let next_before = (entries.len() == PAGE)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(render(&AuditPage {
        nav: Nav::new(&session, "audit"),
        entries: entries.into_iter().map(|e| (utc(e.at_ms), e)).collect(),
        next_before,
    }))
}
