//! What the API gives its clients: at most `connections` at once, a deadline for a TLS
//! handshake and for a request's headers, a body of at most `MAX_BODY` bytes (refused by its
//! declared length before any handler or extractor runs, and cut off there if it was not
//! declared), and an answer within `request_timeout`.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::Limited;

use super::error::ApiError;

/// Connections, deadlines: what a server gives each client.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; further ones wait in the listen backlog.
    pub connections: usize,
    /// A client has this long to finish its TLS handshake.
    pub handshake_timeout: Duration,
    /// And this long to send a request's headers (an idle keep-alive connection too).
    pub header_timeout: Duration,
    /// A request not answered in this long gets 503 (an event stream counts as answered once
    /// its headers are sent).
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connections: 256,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// The largest request body, in bytes (a bulk request of `MAX_BULK` peers fits well within).
pub const MAX_BODY: usize = 16 << 20;
/// Middleware: the body limit, then the deadline.
pub async fn limit(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is {} bytes and the API takes at most {MAX_BODY}; \
                 send large peer lists in several bulk requests",
                declared.unwrap_or(0)
            ),
        )
        .into_response();
    }
    let request = request.map(|body| Body::new(Limited::new(body, MAX_BODY)));
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no answer within {} s; a change may still complete: read it back before \
                 retrying",
                limits.request_timeout.as_secs_f64()
            ),
        )
        .into_response(),
    }
}
