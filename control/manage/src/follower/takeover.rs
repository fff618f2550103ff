//! Taking over a silent node's users. When another node's heartbeat stops, this node claims
//! the sessions it served in the last few minutes (one statement: a session another survivor
//! claimed first is not among them) and starts a handshake with each user at its last
//! endpoint, newest first. A standard client answers an initiation at once, so its traffic
//! resumes through this node in about a round trip, instead of after the ~15 s in which it
//! would notice the dead server on its own (and then knock at the dead server again).

use std::collections::HashSet;

use plane::update::PeerUpdate;

use super::beats::unix_ms;
use crate::api::ApiState;
use crate::registry::{Registry, RegistryError, SILENT_AFTER_MS};

/// Sessions older than this are not reached for: their users were idle, and handshake
/// again on their own when they next send.
const RECENT_MS: u64 = 180_000;

/// Initiations handed to the plane per request: between two, it answers other handshakes.
const CHUNK: usize = 500;

/// The silent nodes already taken over (a node heard from again leaves the set).
#[derive(Default)]
pub(super) struct Takeover {
    done: HashSet<String>,
}

impl Takeover {
    /// Takes over every node that went silent since the last look.
    pub(super) fn look(
        &mut self,
        registry: &mut Registry,
        state: &ApiState,
    ) -> Result<(), RegistryError> {
        let now = unix_ms();
        let me = registry.node().to_string();
        for n in registry.nodes()? {
            let silent = now.saturating_sub(n.beat.now_ms) > SILENT_AFTER_MS;
            if n.node == me || !silent {
                self.done.remove(&n.node);
                continue;
            }
            if !self.done.insert(n.node.clone()) {
                continue;
            }
            let sessions = take_over_node(registry, state, &n.node)?;
            tracing::info!(
                node = %n.node,
                sessions,
                "cluster: a node went silent; starting handshakes with its recent users"
            );
        }
        Ok(())
    }
}

/// Claims for this node the sessions `node` saw in the last few minutes and starts a
/// handshake with each of those users at its last endpoint, newest first; returns how many.
pub(crate) fn take_over_node(
    registry: &mut Registry,
    state: &ApiState,
    node: &str,
) -> Result<usize, RegistryError> {
    let since = unix_ms().saturating_sub(RECENT_MS);
    let taken = registry.take_over_sessions(node, since)?;
    for chunk in taken.chunks(CHUNK) {
        let updates = chunk
            .iter()
            .map(|s| {
                let mut u = PeerUpdate::new(s.public_key);
                u.update_only = true;
                u.endpoint = Some(s.endpoint);
                u.initiate = true;
                u
            })
            .collect();
        if let Err(e) = state.apply_followed(updates, None) {
            tracing::warn!("cluster: taking over {node}'s users: {}", e.message);
        }
    }
    Ok(taken.len())
}
