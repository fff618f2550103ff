//! `GET /live`: the overview's server-sent events. On connecting: `history` (the last 15
//! minutes of samples); then each second `sample` (the newest sample and per-worker detail);
//! and `tunnel` as each tunnel comes up or goes down, named from the registry (at most
//! `FEED_PER_SECOND` a second per browser: in a surge the feed is a sample and `sample`
//! carries the count).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use super::guard::SignedIn;
use super::history::EVERY;
use super::Web;
use crate::events::{Event, Stamped};

/// Tunnel events named and sent per second to one browser.
const FEED_PER_SECOND: u32 = 20;

/// One line of the feed.
#[derive(Debug, Serialize)]
struct FeedLine {
    /// Unix seconds.
    at: u64,
    /// "up" or "down".
    state: &'static str,
    /// The user's name (registry), or the key's start when it has none.
    name: String,
    /// Where from (up) or why (down).
    detail: String,
}

/// Where one browser's stream is.
struct Cursor {
    web: Arc<Web>,
    /// The request's headers: its session is looked at again each tick (the stream ends with
    /// the session: signed out, expired, its token revoked).
    headers: axum::http::HeaderMap,
    events: tokio::sync::broadcast::Receiver<Stamped>,
    tick: tokio::time::Interval,
    last_sample: u64,
    window: Instant,
    named: u32,
    history_sent: bool,
}

/// The user a WireGuard key belongs to, by name.
async fn name_of(web: &Arc<Web>, key: &str) -> String {
    let short = || format!("{}…", &key[..key.len().min(10)]);
    let Ok(public) = proto::PublicKey::from_base64(key) else {
        return short();
    };
    let api = web.api.clone();
    let found = tokio::task::spawn_blocking(move || api.peer_name(&public)).await;
    found.ok().flatten().unwrap_or_else(short)
}

/// The feed line for a stamped event, if it is a tunnel's.
async fn feed_line(web: &Arc<Web>, stamped: Stamped) -> Option<FeedLine> {
    let at = stamped.at;
    Some(match stamped.event {
        Event::TunnelUp {
            public_key,
            endpoint,
            ..
        } => FeedLine {
            at,
            state: "up",
            name: name_of(web, &public_key).await,
            detail: format!("from {endpoint}"),
        },
        Event::TunnelDown { public_key, reason } => FeedLine {
            at,
            state: "down",
            name: name_of(web, &public_key).await,
            detail: reason.to_string(),
        },
        Event::IkeSaUp {
            identity, endpoint, ..
        } => FeedLine {
            at,
            state: "up",
            name: identity,
            detail: format!("IKEv2 from {endpoint}"),
        },
        Event::IkeSaDown { identity, reason } => FeedLine {
            at,
            state: "down",
            name: identity,
            detail: format!("IKEv2 {reason}"),
        },
        _ => return None,
    })
}

fn json_event(name: &str, value: &impl Serialize) -> SseEvent {
    SseEvent::default()
        .event(name)
        .data(serde_json::to_string(value).unwrap_or_default())
}

/// The next event for `cursor`'s browser.
async fn next(mut cursor: Cursor) -> Option<(SseEvent, Cursor)> {
    let history = &cursor.web.api.console.history;
    if !cursor.history_sent {
        cursor.history_sent = true;
        let all = history.all();
        cursor.last_sample = all.last().map_or(0, |s| s.t);
        return Some((json_event("history", &all), cursor));
    }
    loop {
        tokio::select! {
            _ = cursor.tick.tick() => {
                let tokens = cursor.web.api.tokens();
                let sessions = &cursor.web.api.console.sessions;
                sessions.find(&cursor.headers, &tokens, Instant::now())?;
                let Some(newest) = history.latest().filter(|s| s.t > cursor.last_sample) else {
                    continue;
                };
                cursor.last_sample = newest.t;
                let body = serde_json::json!({ "sample": newest, "detail": history.detail() });
                return Some((json_event("sample", &body), cursor));
            }
            received = cursor.events.recv() => {
                let stamped = match received {
                    Ok(s) => s,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                };
                if cursor.window.elapsed() >= Duration::from_secs(1) {
                    cursor.window = Instant::now();
                    cursor.named = 0;
                }
                if cursor.named >= FEED_PER_SECOND {
                    continue;
                }
                let web = cursor.web.clone();
                if let Some(line) = feed_line(&web, stamped).await {
                    cursor.named += 1;
                    return Some((json_event("tunnel", &line), cursor));
                }
            }
        }
    }
}

/// GET /live
pub async fn stream(
    State(web): State<Arc<Web>>,
    SignedIn(_): SignedIn,
    headers: axum::http::HeaderMap,
) -> Response {
    let Some(place) = web.api.take_subscriber_place() else {
        return super::guard::refused(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "too many event streams are open; close a console tab",
        );
    };
    let mut tick = tokio::time::interval(EVERY / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let cursor = Cursor {
        headers,
        events: web.api.subscribe_events(),
        web,
        tick,
        last_sample: 0,
        window: Instant::now(),
        named: 0,
        history_sent: false,
    };
    let events: std::pin::Pin<Box<dyn Stream<Item = SseEvent> + Send>> =
        Box::pin(stream::unfold(cursor, next));
    // The place is given back when the stream (and so the closure) is dropped.
    let events = events.map(move |e| {
        let _held = &place;
        Ok::<_, Infallible>(e)
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
