//! Expiry: a peer whose `expires_at` has passed is revoked (cut off at once, its record
//! kept), looked for every few seconds; each revocation goes into the audit log.

use std::sync::Arc;
use std::time::Duration;

use super::ApiState;

/// How often expiries are looked for.
const EVERY: Duration = Duration::from_secs(5);

/// Revokes the peers whose expiry has passed (blocking).
pub(crate) fn revoke_expired(state: &ApiState) {
    let due = match state.registry().expired(super::now()) {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!("expiries not read: {e}");
            return;
        }
    };
    for id in due {
        match super::revoke_peer(state, id) {
            // Another node of a cluster may have revoked it first: said once, by that node.
            Ok((_, false)) => {}
            Ok((peer, true)) => {
                tracing::info!(id, name = %peer.name, "peer revoked: its expiry passed");
                let detail = format!("revoked peer {:?} (id {id}): its expiry passed", peer.name);
                state.write_audit("xgate", "expiry", &detail);
            }
            Err(e) => tracing::warn!(id, "expired peer not revoked: {}", e.message),
        }
    }
}

/// Revokes expired peers every `EVERY`, for as long as the API runs.
pub async fn run(state: Arc<ApiState>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let state = state.clone();
        let _ = tokio::task::spawn_blocking(move || revoke_expired(&state)).await;
    }
}
