//! API errors: a status and a message that says what was wrong, as JSON `{"error": "..."}`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
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
    quoted_within(text, QUOTED_CHARS)
}

/// `text` quoted whole if at most `chars` long, else its start and its length.
pub fn quoted_within(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return format!("{text:?}");
    }
    let start: String = text.chars().take(chars).collect();
    format!("{start:?}... ({} bytes)", text.len())
}

/// Most characters of axum's own rejection texts passed on: they are mostly axum's words
/// (\"Failed to deserialize query string: unknown field `bogus`...\"), with what the caller
/// sent inside.
pub const REJECTION_CHARS: usize = 200;

/// An axum rejection text as an error message: bounded, unquoted.
pub fn rejection_text(text: &str) -> String {
    if text.chars().count() <= REJECTION_CHARS {
        return text.to_string();
    }
    let start: String = text.chars().take(REJECTION_CHARS).collect();
    format!("{start}... ({} bytes)", text.len())
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
            Trouble::Unreachable => {
                tracing::warn!("registry: {e}");
                return Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the registry database cannot be reached ({e}): nothing was saved; \
                         connected users keep their sessions; retry once it is back"
                    ),
                );
            }
            Trouble::Other => {}
        }
        let status = match &e {
            RegistryError::NoSuchPeer(_)
            | RegistryError::NoSuchName(_)
            | RegistryError::NoSuchIkeUser(_) => StatusCode::NOT_FOUND,
            RegistryError::DuplicateKey(_)
            | RegistryError::DuplicateName { .. }
            | RegistryError::DuplicateIkeUser { .. }
            | RegistryError::SharedPsk { .. }
            | RegistryError::AmbiguousName { .. }
            | RegistryError::PoolExhausted { .. }
            | RegistryError::RouteOverlap { .. } => StatusCode::CONFLICT,
            RegistryError::NoPool(_) | RegistryError::WeakPsk(_) => StatusCode::BAD_REQUEST,
            RegistryError::Db(_)
            | RegistryError::Postgres(_)
            | RegistryError::OtherCluster { .. }
            | RegistryError::File { .. }
            | RegistryError::TooNew { .. }
            | RegistryError::Migration(_)
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
        .is_some_and(|v| {
            // The console's refusals are pages, for a person to read.
            v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
        });
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        // The router adds the Allow header after this layer: the message points at it.
        format!(
            "{} is not allowed on {}: the Allow header lists the methods it takes; see \
             /openapi.json",
            quoted(method.as_str()),
            quoted(&path)
        )
    } else {
        let body = axum::body::to_bytes(body, REJECTION_TEXT)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        let text = text.trim();
        if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            rejection_text(text)
        }
    };
    // The answer's other headers (Allow on a 405, say) stay; the body and its type are new.
    let mut answer = ApiError::new(status, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// A JSON body whose rejection is a JSON error that says what was wrong.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            // serde quotes a wrongly typed value whole: only a bounded start of it goes back.
            // The status stays axum's: 415 without a JSON content type, 422 for a body of
            // the wrong shape, 413 past the size limit, 400 for broken JSON.
            Err(rejection) => Err(ApiError::new(
                rejection.status(),
                format!(
                    "malformed request body: {}",
                    rejection_text(&rejection.body_text())
                ),
            )),
        }
    }
}
