//! The audit log as the API writes and serves it: every change that succeeded (any method but
//! GET/HEAD/OPTIONS, answered 2xx) is written with who made it (the token's label), what was
//! asked (method and path, or the web form) and what it did (a note the handler leaves on
//! its response); `GET /api/v1/audit` reads it back, newest first.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::{reads_only, Caller};
use super::error::ApiError;
use super::{blocking, ApiState};

/// Most entries one page lists.
const MAX_PAGE: usize = 1000;

/// What a change did, in words: left by a handler on its response for the audit log.
#[derive(Debug, Clone)]
pub struct AuditNote(pub String);

impl ApiState {
    /// Writes an audit entry now; a failure is logged (the change itself is done and stays).
    pub(crate) fn write_audit(&self, actor: &str, action: &str, detail: &str) {
        let at_ms = crate::registry::unix_ms();
        if let Err(e) = self.registry().audit(at_ms, actor, action, detail) {
            tracing::error!(actor, action, detail, "audit entry not written: {e}");
        }
    }
}

/// Middleware (inside the token check): writes an entry for each change that succeeded.
pub async fn record(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    if reads_only(request.method()) {
        return next.run(request).await;
    }
    let action = format!("{} {}", request.method(), request.uri().path());
    let actor = request
        .extensions()
        .get::<Caller>()
        .map_or_else(|| "unknown".to_string(), |c| c.actor.clone());
    let response = next.run(request).await;
    if response.status().is_success() {
        let detail = response
            .extensions()
            .get::<AuditNote>()
            .map_or_else(String::new, |n| n.0.clone());
        // Written before the answer leaves: an acknowledged change is in the log.
        let _ =
            tokio::task::spawn_blocking(move || state.write_audit(&actor, &action, &detail)).await;
    }
    response
}

/// Paging of the log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only entries older than this one (the last id of the previous page).
    #[serde(default)]
    before: Option<i64>,
    /// Page size (default 100).
    #[serde(default)]
    limit: Option<usize>,
}

/// GET /api/v1/audit
pub async fn list(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit: {limit} is out of range (1 to {MAX_PAGE})"
        )));
    }
    let entries = blocking(move || Ok(state.registry().audit_log(q.before, limit)?)).await?;
    let next_before = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(Json(serde_json::json!({ "entries": entries, "next_before": next_before })).into_response())
}
