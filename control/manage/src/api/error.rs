//! API errors: a status and a message that says what was wrong, as JSON `{"error": "..."}`.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::registry::{RegistryError, Trouble, BUSY_TIMEOUT};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What was wrong, for the caller.
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

/// Most characters of a caller's value an error quotes back.
const QUOTED_CHARS: usize = 40;

/// `text` quoted for an error message: whole if short, else its start and its length (an
/// error never echoes unbounded input).
pub fn quoted(text: &str) -> String {
    if text.chars().count() <= QUOTED_CHARS {
        return format!("{text:?}");
    }
    let start: String = text.chars().take(QUOTED_CHARS).collect();
    format!("{start:?}... ({} bytes)", text.len())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, Json(body)).into_response()
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e.trouble() {
            Trouble::DiskFull => {
                tracing::error!("registry: {e}");
                return Self::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "the registry's disk is full: nothing was saved; free space on it and retry",
                );
            }
            Trouble::Busy => {
                tracing::warn!("registry: {e}");
                return Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the registry database is locked by another process (waited {} s): \
                         nothing was saved; retry",
                        BUSY_TIMEOUT.as_secs()
                    ),
                );
            }
            Trouble::Other => {}
        }
        let status = match &e {
            RegistryError::NoSuchPeer(_) | RegistryError::NoSuchName(_) => StatusCode::NOT_FOUND,
            RegistryError::DuplicateKey(_)
            | RegistryError::DuplicateName { .. }
            | RegistryError::AmbiguousName { .. }
            | RegistryError::PoolExhausted { .. }
            | RegistryError::RouteOverlap { .. } => StatusCode::CONFLICT,
            RegistryError::NoPool(_) => StatusCode::BAD_REQUEST,
            RegistryError::Db(_)
            | RegistryError::File { .. }
            | RegistryError::TooNew { .. }
            | RegistryError::Corrupt(_)
            | RegistryError::Damaged { .. } => {
                tracing::error!("registry: {e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Self::new(status, e.to_string())
    }
}

/// Longest error text from axum's own rejections that is carried over into the JSON shape.
const REJECTION_TEXT: usize = 4096;

/// Middleware: every error answer has the one JSON shape, also those axum makes itself (a
/// method a path does not take, a malformed query string or path); their status stays.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = response
            .headers()
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        format!(
            "{method} is not allowed on {} (allowed: {allowed}); see /openapi.json",
            quoted(&path)
        )
    } else {
        let body = axum::body::to_bytes(response.into_body(), REJECTION_TEXT)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        let text = text.trim();
        if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            // axum's texts quote the caller's value: bounded like every other echo.
            quoted(text).trim_matches('"').to_string()
        }
    };
    ApiError::new(status, message).into_response()
}
