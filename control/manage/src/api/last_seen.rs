//! Keeps the registry's `last_handshake` up to date: tunnel-up events are gathered and written
//! in one transaction every few seconds, so a login surge costs a handful of commits, not one
//! per user. (Rekeys of a live tunnel are not events; `GET /api/v1/status` has the live time.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proto::PublicKey;
use tokio::sync::broadcast::error::RecvError;

use super::ApiState;
use crate::events::Event;

/// How long tunnel-up times gather before they are written.
const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// Runs until the event hub closes (the daemon is stopping).
pub async fn record(state: Arc<ApiState>) {
    let mut events = state.events.subscribe();
    let mut pending: HashMap<PublicKey, u64> = HashMap::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(stamped) => {
                    if let Event::TunnelUp { public_key, .. } = &stamped.event {
                        if let Ok(key) = PublicKey::from_base64(public_key) {
                            pending.insert(key, stamped.at);
                        }
                    }
                }
                // Missed events only leave older times; the next tunnel-up mends them.
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "tunnel events missed while recording handshakes");
                }
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                if pending.is_empty() {
                    continue;
                }
                let batch: Vec<(PublicKey, u64)> = pending.drain().collect();
                let state = state.clone();
                let written = tokio::task::spawn_blocking(move || {
                    state
                        .registry()
                        .record_handshakes(&batch)
                        .map_err(|e| e.to_string())
                })
                .await;
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!("recording latest handshakes: {e}"),
                    Err(e) => tracing::warn!("recording latest handshakes: {e}"),
                }
            }
        }
    }
}
