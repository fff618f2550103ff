//! Following the registry's change log when several nodes share it (PostgreSQL): a thread
//! listens for the database's announcements, reads the log after the last change applied,
//! and applies to this node's interface what other nodes changed; a second thread writes
//! this node's heartbeat and sessions (`beats`) and takes over the users of a node that went
//! silent (`takeover`). A peer made or changed
//! is set from its current row, a revoked or deleted one removed, and the IKEv2 users
//! handed over again after any change to them. Reading the current row makes applying a
//! change twice harmless; the log's order and the last number applied make missing one
//! impossible, also across a lost connection (it starts again from that number).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use plane::update::PeerUpdate;

use crate::api::ApiState;
use crate::registry::{ChangeListener, Location, Pool, Registry, RegistryError, Subject};

mod beats;
pub(crate) mod takeover;

/// How long a wait for an announcement lasts before the stop flag is looked at (and the
/// log read anyway, in case an announcement was lost).
const WAIT: Duration = Duration::from_millis(500);

/// Pause after a failure before connecting again.
pub(super) const RETRY: Duration = Duration::from_millis(500);

/// Changes read per query while catching up.
const PAGE: usize = 1000;

/// The running follower and heartbeat threads; they stop when dropped.
pub struct Follower {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// What the follower needs to read the log.
#[derive(Clone)]
pub struct FollowFrom {
    /// The shared registry.
    pub location: Location,
    /// Its pools (as every connection to it is opened with).
    pub pools: Vec<Pool>,
    /// This node's name in the log: its own changes are applied already.
    pub node: String,
    /// The last change the interface's first configuration includes.
    pub seq: i64,
    /// When this node started, Unix milliseconds (in its heartbeat).
    pub started_ms: u64,
    /// Whether this node starts handshakes toward a silent node's recent users.
    pub take_over: bool,
}

impl Follower {
    /// Follows the log at `from.location` into `state`'s interface; `None` for an SQLite
    /// registry, which has no other node.
    pub fn start(from: FollowFrom, state: Arc<ApiState>) -> std::io::Result<Option<Self>> {
        if matches!(from.location, Location::File(_)) {
            return Ok(None);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, beat_flag) = (stop.clone(), stop.clone());
        let beat_from = from.clone();
        let beat_state = state.clone();
        let mut threads = vec![std::thread::Builder::new()
            .name("xgate-beat".into())
            .spawn(move || beats::run(beat_from, &beat_state, &beat_flag))?];
        let follow = std::thread::Builder::new()
            .name("xgate-follow".into())
            .spawn(move || run(from, &state, &flag));
        match follow {
            Ok(t) => threads.push(t),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                for t in threads {
                    let _ = t.join();
                }
                return Err(e);
            }
        }
        Ok(Some(Self { stop, threads }))
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn run(mut from: FollowFrom, state: &ApiState, stop: &AtomicBool) {
    let mut failing = false;
    while !stop.load(Ordering::Relaxed) {
        match follow(&mut from, state, stop, &mut failing) {
            Ok(()) => return,
            Err(e) => {
                if let FollowError::Registry(e) = &e {
                    state.registry_reached(Some(e));
                }
                if !failing {
                    tracing::warn!(
                        "registry: following other nodes' changes: {e}; retrying every {} ms \
                         from change {}",
                        RETRY.as_millis(),
                        from.seq
                    );
                }
                failing = true;
                let until = Instant::now() + RETRY;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// Connects, then applies changes as they are announced until stopped (`Ok`) or the
/// connection breaks (`Err`).
fn follow(
    from: &mut FollowFrom,
    state: &ApiState,
    stop: &AtomicBool,
    failing: &mut bool,
) -> Result<(), FollowError> {
    // Listening starts before the first read: a change committed in between is announced.
    let mut listener = ChangeListener::open(&from.location)?.ok_or(FollowError::NotShared)?;
    let mut registry = Registry::open_at(&from.location, from.pools.clone())?;
    registry.set_node(&from.node);
    if *failing {
        tracing::info!(
            from = from.seq,
            "registry: following other nodes' changes again"
        );
        *failing = false;
    }
    state.registry_reached(None);
    while !stop.load(Ordering::Relaxed) {
        catch_up(&mut registry, from, state)?;
        listener.wait(WAIT)?;
    }
    Ok(())
}

/// Applies every change after `from.seq` made by another node.
fn catch_up(
    registry: &mut Registry,
    from: &mut FollowFrom,
    state: &ApiState,
) -> Result<(), FollowError> {
    loop {
        let changes = registry.changes_after(from.seq, PAGE)?;
        let Some(last) = changes.last().map(|c| c.seq) else {
            return Ok(());
        };
        // Rows read and applied under the order lock: this node's own change to the same
        // peer, made meanwhile, lands after this and so stays.
        let _order = state.in_order();
        let mut peers = Vec::new();
        let mut ike_users = false;
        for c in changes.iter().filter(|c| c.node != from.node) {
            match c.subject {
                Subject::Peer(id) => match registry.get(id) {
                    Ok(p) if p.revoked_at.is_none() => peers.push(p.to_update()),
                    Ok(p) => peers.push(PeerUpdate::removal(p.public_key)),
                    Err(RegistryError::NoSuchPeer(_)) => {
                        peers.extend(c.public_key.map(PeerUpdate::removal));
                    }
                    Err(e) => return Err(e.into()),
                },
                Subject::IkeUser(_) => ike_users = true,
            }
        }
        let users = if ike_users {
            Some(registry.ike_users()?)
        } else {
            None
        };
        let applied = peers.len();
        if let Err(e) = state.apply_followed(peers, users.as_deref()) {
            // The interface refused (a prefix a config-file peer holds, say) or is stopping:
            // waiting would hold every later change behind this one.
            tracing::warn!(
                through = last,
                "registry: other nodes' changes not applied here: {}",
                e.message
            );
        }
        tracing::debug!(
            applied,
            through = last,
            "registry: other nodes' changes applied"
        );
        from.seq = last;
    }
}

/// Why following stopped for a while.
#[derive(Debug, thiserror::Error)]
enum FollowError {
    /// Reading the log failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The registry is a file: there is nothing to follow.
    #[error("the registry is not shared")]
    NotShared,
}
