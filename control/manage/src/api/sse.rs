//! `GET /api/v1/events`: tunnel up/down and peer changes as server-sent events, one JSON
//! object per event (its `event` field also names the SSE event). A subscriber that falls
//! behind gets a `lagged` event saying how many it missed. At most `MAX_SUBSCRIBERS` streams
//! are open at once.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;

use super::error::ApiError;
use super::ApiState;

/// Event streams open at once.
pub const MAX_SUBSCRIBERS: usize = 64;

/// A subscriber's place, given back when its stream ends.
pub(crate) struct Place(Arc<ApiState>);

impl Place {
    /// A place for one more stream, if any is free.
    pub(crate) fn take(state: &Arc<ApiState>) -> Option<Self> {
        let place = Self(state.clone());
        let taken = state.subscribers.fetch_add(1, Ordering::AcqRel);
        // Dropped at once when the cap was reached: the count goes back down.
        (taken < MAX_SUBSCRIBERS).then_some(place)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// GET /api/v1/events
pub async fn stream(State(state): State<Arc<ApiState>>) -> Response {
    let Some(place) = Place::take(&state) else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{MAX_SUBSCRIBERS} event streams are open already; close one, or poll \
                 /api/v1/status instead"
            ),
        )
        .into_response();
    };
    let rx = state.events.subscribe();
    let events = futures_util::stream::unfold((rx, place), |(mut rx, place)| async move {
        let event = match rx.recv().await {
            Ok(stamped) => SseEvent::default()
                .event(stamped.event.name())
                .data(serde_json::to_string(&stamped).unwrap_or_default()),
            Err(RecvError::Lagged(n)) => SseEvent::default()
                .event("lagged")
                .data(format!("{{\"missed\":{n}}}")),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), (rx, place)))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
