//! This node's heartbeat (what it serves, twice a second), its users' sessions (endpoint and
//! latest handshake) for a node that may take them over, and the watch on other nodes'
//! heartbeats (`takeover`), on a thread and a connection of their own: applying a large
//! change from another node must not delay a heartbeat past the silence that would make this
//! live node look dead.
//!
//! Sessions come from two sources. Every tunnel that comes up is on the event stream and is
//! written within `FRESH`; the interface's published state (taken once a second) is compared
//! with what was written at each heartbeat and catches the rest (a roamed endpoint, a rekey,
//! events the stream dropped in a surge). A node that dies loses at most the sessions of its
//! last `FRESH` to the survivors, whose clients then come back on their own after ~15 s.
//!
//! Each session is recorded with its index here. A transport message that reaches another
//! node (the service address moved, or a router spread the anycast address anew) names an
//! index that node does not have; its datapath reports it (`Stray`), and that node looks
//! the index up, claims the session and starts a handshake with the user at its recorded
//! address (at the message's port when the address is the same), without waiting for this
//! node's heartbeat to stop. Claimed users are handed to a thread of their own
//! (`xgate-reach`): asking the plane may wait in a surge, and the heartbeat must not.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use proto::PublicKey;
use std::sync::mpsc::Sender;
use tokio::sync::broadcast;

use super::takeover::{Reach, Takeover};
use super::{FollowFrom, RETRY};
use crate::api::ApiState;
use crate::events::{Event, Stamped, Stray};
use crate::registry::{
    unix_ms, Heartbeat, Registry, RegistryError, SeenSession, INDICES_PER_LOOKUP,
};

/// How often this node writes its heartbeat (a multiple of `FRESH`).
const BEAT: Duration = Duration::from_millis(500);

/// How often the sessions that came up since are written (and strays looked up).
const FRESH: Duration = Duration::from_millis(20);

/// An index whose user was reached is not looked up again for this long (a user sends
/// many messages before the handshake it is sent answers).
const STRAY_QUIET: Duration = Duration::from_secs(5);

/// An index not found is not looked up again for this long (its session may be recorded a
/// moment later, after a rekey).
const STRAY_MISS_QUIET: Duration = Duration::from_secs(1);

/// What was written: the last beat and the handshake count then, and each session.
struct Beats {
    last: Option<(Instant, u64)>,
    /// Each session written: its handshake time as written.
    written: HashMap<PublicKey, u64>,
    events: broadcast::Receiver<Stamped>,
    /// Transport messages for unknown indices (only when this node takes over).
    strays: Option<broadcast::Receiver<Stray>>,
    /// Indices looked up lately, and until when not to look them up again.
    looked_up: HashMap<u32, Instant>,
    /// The last lookup failed (said once).
    stray_trouble: bool,
    /// Claimed sessions, to the thread that asks the plane to reach them (which may wait
    /// on the plane for seconds in a surge: never this thread).
    reach: Sender<Reach>,
}

/// Runs the heartbeat thread until `stop`, with a second thread that reaches the users it
/// claims: connects, beats, and after a failure says so once and tries again every `RETRY`.
pub(super) fn run(from: FollowFrom, state: &ApiState, stop: &AtomicBool) {
    let (reach, claimed) = std::sync::mpsc::channel::<Reach>();
    std::thread::scope(|scope| {
        let reacher = std::thread::Builder::new()
            .name("xgate-reach".into())
            .spawn_scoped(scope, move || {
                for (node, sessions) in claimed {
                    let reached = super::takeover::reach(state, &node, &sessions);
                    tracing::debug!(node = %node, reached, "cluster: handshakes started");
                }
            });
        if let Err(e) = reacher {
            tracing::error!("cluster: cannot start the thread that reaches taken-over users: {e}");
            return;
        }
        let beats = Beats {
            last: None,
            written: HashMap::new(),
            events: state.subscribe_events(),
            strays: from.take_over.then(|| state.subscribe_strays()),
            looked_up: HashMap::new(),
            stray_trouble: false,
            reach,
        };
        keep_beating(&from, state, stop, beats);
        // `beats` (and with it the sender) is gone: the reaching thread ends, and the scope
        // waits for it.
    });
}

/// The heartbeat loop across reconnections.
fn keep_beating(from: &FollowFrom, state: &ApiState, stop: &AtomicBool, mut beats: Beats) {
    let mut takeover = Takeover::default();
    let mut failing = false;
    while !stop.load(Ordering::Relaxed) {
        let Err(e) = beat(from, state, stop, (&mut beats, &mut takeover), &mut failing) else {
            return;
        };
        state.registry_reached(Some(&e));
        if !failing {
            tracing::warn!(
                "registry: writing this node's heartbeat: {e}; retrying every {} ms",
                RETRY.as_millis()
            );
        }
        failing = true;
        let until = Instant::now() + RETRY;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Connects, then beats until stopped (`Ok`) or the connection breaks (`Err`).
fn beat(
    from: &FollowFrom,
    state: &ApiState,
    stop: &AtomicBool,
    (beats, takeover): (&mut Beats, &mut Takeover),
    failing: &mut bool,
) -> Result<(), RegistryError> {
    let mut registry = Registry::open_at(&from.location, from.pools.clone())?;
    registry.set_node(&from.node);
    if *failing {
        tracing::info!("registry: writing this node's heartbeat again");
        state.registry_reached(None);
        *failing = false;
    }
    // After this node could not read the registry, every node gets a fresh silence.
    takeover.restart();
    while !stop.load(Ordering::Relaxed) {
        let next = Instant::now() + FRESH;
        // The heartbeat first: nothing else here may make a live node look silent.
        if beats.due() {
            beats.write(&mut registry, from.started_ms, state)?;
            if from.take_over {
                takeover.look(&mut registry, &beats.reach)?;
            }
        }
        beats.write_fresh(&mut registry)?;
        beats.reach_strays(&mut registry);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok(())
}

impl Beats {
    /// True when a heartbeat is due.
    fn due(&self) -> bool {
        // Half a tick early rather than a tick late: the loop wakes every `FRESH`.
        self.last
            .is_none_or(|(at, _)| at.elapsed() + FRESH / 2 >= BEAT)
    }

    /// Writes the sessions that came up since the last look (from the event stream).
    fn write_fresh(&mut self, registry: &mut Registry) -> Result<(), RegistryError> {
        let now_ms = unix_ms();
        let mut fresh = Vec::new();
        loop {
            match self.events.try_recv() {
                Ok(Stamped {
                    event:
                        Event::TunnelUp {
                            public_key,
                            endpoint,
                            receiver_index,
                        },
                    ..
                }) => {
                    let key = PublicKey::from_base64(&public_key).ok();
                    if let (Some(public_key), Ok(endpoint)) = (key, endpoint.parse()) {
                        fresh.push(SeenSession {
                            public_key,
                            endpoint,
                            seen_ms: now_ms,
                            receiver_index: Some(receiver_index),
                        });
                    }
                }
                Ok(_) => {}
                // Dropped in a surge: the next heartbeat's comparison finds them.
                Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        self.record(registry, fresh)
    }

    /// Looks up the indices of the transport messages that came for no session here (at
    /// most `INDICES_PER_LOOKUP` new ones per tick; the rest of a flood is dropped, and its
    /// users are reached by the silence take-over); claims each one another node recorded,
    /// and starts a handshake with its user. A failed lookup is reported, not fatal: the
    /// heartbeat notices a lost connection.
    fn reach_strays(&mut self, registry: &mut Registry) {
        let Some(strays) = self.strays.as_mut() else {
            return;
        };
        let now = Instant::now();
        self.looked_up.retain(|_, until| now < *until);
        let mut batch = Vec::new();
        loop {
            match strays.try_recv() {
                Ok((index, from)) => {
                    if batch.len() < INDICES_PER_LOOKUP && !self.looked_up.contains_key(&index) {
                        // A miss may be a session recorded a moment later: asked again soon.
                        self.looked_up.insert(index, now + STRAY_MISS_QUIET);
                        batch.push((index, from));
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            return;
        }
        let since = unix_ms().saturating_sub(crate::registry::RECENT_MS);
        let claimed = match registry.take_over_by_index(&batch, since) {
            Ok(c) => {
                self.stray_trouble = false;
                c
            }
            Err(e) => {
                if !self.stray_trouble {
                    tracing::warn!("cluster: looking up transport messages' indices: {e}");
                }
                self.stray_trouble = true;
                return;
            }
        };
        let mut by_node: HashMap<String, Vec<SeenSession>> = HashMap::new();
        for (node, session) in claimed {
            if let Some(i) = session.receiver_index {
                self.looked_up.insert(i, now + STRAY_QUIET);
            }
            by_node.entry(node).or_default().push(session);
        }
        for (node, sessions) in by_node {
            tracing::debug!(
                node = %node,
                sessions = sessions.len(),
                "cluster: other nodes' users are sending here; starting handshakes with them"
            );
            let _ = self.reach.send((node, sessions));
        }
    }

    /// Writes the heartbeat, then the sessions with a handshake newer than written.
    fn write(
        &mut self,
        registry: &mut Registry,
        started_ms: u64,
        state: &ApiState,
    ) -> Result<(), RegistryError> {
        // The beat's time is the tick's, not the write's end: beats stay 500 ms apart.
        let at = Instant::now();
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
        self.last = Some((at, handshakes));
        self.changed_sessions(registry, state)
    }

    /// Writes the sessions of the published state whose handshake is newer than written.
    fn changed_sessions(
        &mut self,
        registry: &mut Registry,
        state: &ApiState,
    ) -> Result<(), RegistryError> {
        // The published state is up to a second old: a session written since from the
        // event stream carries a later time than its handshake and is not written again.
        // (A roam without a handshake waits for the next one, within two minutes.)
        let changed: Vec<SeenSession> = state
            .live_sessions()
            .into_iter()
            .filter(|s| {
                self.written
                    .get(&s.public_key)
                    .is_none_or(|&seen| seen < s.seen_ms)
            })
            .collect();
        self.record(registry, changed)
    }

    fn record(
        &mut self,
        registry: &mut Registry,
        sessions: Vec<SeenSession>,
    ) -> Result<(), RegistryError> {
        if sessions.is_empty() {
            return Ok(());
        }
        registry.record_sessions(&sessions)?;
        for s in sessions {
            self.written.insert(s.public_key, s.seen_ms);
        }
        Ok(())
    }
}
