//! Taking over a silent node's users. When another node's heartbeat stops, this node claims
//! the sessions it served in the last few minutes (one statement: a session another survivor
//! claimed first is not among them) and starts a handshake with each user at its last
//! endpoint, newest first. A standard client answers an initiation at once, so its traffic
//! resumes through this node in about a round trip, instead of after the ~15 s in which it
//! would notice the dead server on its own (and then knock at the dead server again).
//!
//! Silence is judged by this node's own clock: a node is silent when the heartbeat it wrote
//! has not changed for `SILENT_AFTER_MS` here. Nodes' clocks may differ; and after this node
//! itself was cut off from the registry, every heartbeat it sees again counts as new.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use plane::update::PeerUpdate;
use std::sync::mpsc::Sender;

use crate::api::ApiState;
use crate::registry::{unix_ms, Registry, RegistryError, SeenSession, RECENT_MS, SILENT_AFTER_MS};

/// Initiations handed to the plane per request: between two, it answers other handshakes.
const CHUNK: usize = 250;

/// After each chunk the plane is left alone as long as the chunk took it, times this:
/// each initiation brings back a response that costs the plane's thread more than making
/// the initiation did (and its handshake queue holds 8,192 messages for both). Unpaced, 500
/// at a time, 12,000 users handed over back to back overflowed that queue: a fifth of them
/// waited for their initiation's retry, 5 s later (all back after 7.6 s; paced so, 2.9 s;
/// with twice the rest, 4.0 s).
const REST: u32 = 1;

/// What this node saw of another: its last heartbeat value, when that value last changed
/// (here), and whether its users were taken over since.
struct Seen {
    beat_ms: u64,
    changed: Instant,
    taken: bool,
}

/// The other nodes as this node has watched them.
#[derive(Default)]
pub(super) struct Takeover {
    seen: HashMap<String, Seen>,
}

impl Takeover {
    /// Forgets what was seen: after this node could not read the registry for a while,
    /// every node is given a fresh `SILENT_AFTER_MS` from now.
    pub(super) fn restart(&mut self) {
        self.seen.clear();
    }

    /// Takes over every node whose heartbeat stopped changing since the last look: claims
    /// its sessions and hands them to `reach` (the thread that asks the plane).
    pub(super) fn look(
        &mut self,
        registry: &mut Registry,
        reach: &Sender<Reach>,
    ) -> Result<(), RegistryError> {
        let me = registry.node().to_string();
        let silence = Duration::from_millis(SILENT_AFTER_MS);
        let now = Instant::now();
        let nodes = registry.nodes()?;
        self.seen
            .retain(|name, _| nodes.iter().any(|n| &n.node == name));
        for n in nodes.into_iter().filter(|n| n.node != me) {
            let seen = self.seen.entry(n.node.clone()).or_insert(Seen {
                beat_ms: n.beat.now_ms,
                changed: now,
                taken: false,
            });
            if seen.beat_ms != n.beat.now_ms {
                // Heard from again (a node back after a cut is taken over anew if it stops).
                *seen = Seen {
                    beat_ms: n.beat.now_ms,
                    changed: now,
                    taken: false,
                };
                continue;
            }
            if seen.taken || now.duration_since(seen.changed) < silence {
                continue;
            }
            seen.taken = true;
            let taken =
                registry.take_over_sessions(&n.node, unix_ms().saturating_sub(RECENT_MS))?;
            tracing::info!(
                node = %n.node,
                sessions = taken.len(),
                "cluster: a node went silent; starting handshakes with its recent users"
            );
            // The receiving thread lives as long as this one's loop.
            let _ = reach.send((n.node, taken));
        }
        Ok(())
    }
}

/// Sessions claimed from a node, for the plane to reach.
pub(super) type Reach = (String, Vec<SeenSession>);

/// Starts a handshake with each of `sessions`' users (claimed from `node`) at its last
/// endpoint, a chunk at a time, paced by what each chunk cost the plane; returns how many
/// the interface took.
pub(crate) fn reach(state: &ApiState, node: &str, sessions: &[SeenSession]) -> usize {
    let mut reached = 0;
    for (n, chunk) in sessions.chunks(CHUNK).enumerate() {
        let started = Instant::now();
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
        match state.apply_followed(updates, None) {
            Ok(()) => reached += chunk.len(),
            Err(e) => tracing::warn!("cluster: taking over {node}'s users: {}", e.message),
        }
        if (n + 1) * CHUNK < sessions.len() {
            std::thread::sleep(started.elapsed() * REST);
        }
    }
    reached
}
