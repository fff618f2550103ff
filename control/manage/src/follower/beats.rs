//! This node's heartbeat (what it serves, about once a second) and its users' sessions as
//! they change (endpoint and latest handshake), for a node that may take them over.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proto::PublicKey;

use crate::api::ApiState;
use crate::registry::{unix_ms, Heartbeat, Registry, RegistryError, SeenSession};

/// How often this node writes its heartbeat.
const BEAT: Duration = Duration::from_millis(500);

/// What was written: the last beat and the handshake count then, and each session.
#[derive(Default)]
pub(super) struct Beats {
    last: Option<(Instant, u64)>,
    written: HashMap<PublicKey, (SocketAddr, u64)>,
}

impl Beats {
    /// True when a heartbeat is due.
    pub(super) fn due(&self) -> bool {
        self.last.is_none_or(|(at, _)| at.elapsed() >= BEAT)
    }

    /// Writes the heartbeat, and the sessions whose endpoint or handshake changed.
    pub(super) fn write(
        &mut self,
        registry: &mut Registry,
        started_ms: u64,
        state: &ApiState,
    ) -> Result<(), RegistryError> {
        let (peers, sessions, handshakes) = state.node_figures();
        let per_s = self.last.map_or(0, |(at, before)| {
            let secs = at.elapsed().as_secs_f64().max(0.001);
            (handshakes.saturating_sub(before) as f64 / secs).round() as u64
        });
        registry.heartbeat(&Heartbeat {
            started_ms,
            now_ms: unix_ms(),
            peers,
            sessions,
            handshakes,
            handshakes_per_s: per_s,
        })?;
        self.last = Some((Instant::now(), handshakes));
        let changed: Vec<SeenSession> = state
            .live_sessions()
            .into_iter()
            .filter(|s| self.written.get(&s.public_key) != Some(&(s.endpoint, s.seen_ms)))
            .collect();
        registry.record_sessions(&changed)?;
        for s in changed {
            self.written.insert(s.public_key, (s.endpoint, s.seen_ms));
        }
        Ok(())
    }
}
