//! A cluster's identity and membership in its shared registry. The nodes share the
//! interface's private key (provisioned as a file on each: it is never stored in the
//! database); the database records the matching public key when the first node joins, and
//! refuses a node whose key differs. Each node writes a heartbeat row about every second,
//! with what it serves, so any node can list the cluster and notice one that went silent.

use proto::PublicKey;

use super::store::{params, Sql};
use super::{Registry, RegistryError};

/// A node's heartbeat as it writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Heartbeat {
    /// When the node started, Unix milliseconds.
    pub started_ms: u64,
    /// Now, Unix milliseconds.
    pub now_ms: u64,
    /// Peers on its interface.
    pub peers: u64,
    /// Peers with a session (a handshake within the last 3 minutes).
    pub sessions: u64,
    /// Handshakes completed since it started.
    pub handshakes: u64,
    /// Handshakes per second over the last beat.
    pub handshakes_per_s: u64,
}

/// A node as the registry lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Its name (host/process).
    pub node: String,
    /// What it last wrote.
    pub beat: Heartbeat,
}

/// A node whose last heartbeat is older than this is silent: listed so, and its users
/// taken over by the others.
pub const SILENT_AFTER_MS: u64 = 1500;

/// Heartbeats older than this are forgotten (a node that stopped long ago).
const FORGET_MS: u64 = 24 * 3600 * 1000;

impl Registry {
    /// Joins the cluster whose interface has `public_key`: the first node records it; a
    /// node with another key is refused (it could not answer the cluster's clients).
    pub fn join_cluster(&mut self, public_key: &PublicKey, now: u64) -> Result<(), RegistryError> {
        let mut tx = self.engine.write()?;
        let found = tx
            .query_opt("SELECT public_key FROM cluster WHERE id = 1", params![])?
            .map(|r| r.blob(0))
            .transpose()?;
        match found {
            None => {
                tx.execute(
                    "INSERT INTO cluster (id, public_key, created_at) VALUES (1, ?1, ?2)",
                    params![&public_key.0[..], now],
                )?;
            }
            Some(key) if key == public_key.0 => {}
            Some(key) => {
                let theirs = <[u8; 32]>::try_from(key.as_slice())
                    .map(|k| PublicKey(k).to_base64())
                    .unwrap_or_else(|_| "(unreadable)".into());
                return Err(RegistryError::OtherCluster {
                    cluster: theirs,
                    ours: public_key.to_base64(),
                });
            }
        }
        tx.commit()
    }

    /// Writes this node's heartbeat (and forgets nodes silent for a day). Heartbeats are
    /// not changes: no write lock, no change log, each statement on its own.
    pub fn heartbeat(&mut self, beat: &Heartbeat) -> Result<(), RegistryError> {
        let node = self.node.clone();
        self.engine.execute(
            "INSERT INTO nodes (node, started_ms, heartbeat_ms, peers, sessions, handshakes, \
             handshakes_per_s) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (node) DO UPDATE \
             SET heartbeat_ms = excluded.heartbeat_ms, peers = excluded.peers, \
             sessions = excluded.sessions, handshakes = excluded.handshakes, \
             handshakes_per_s = excluded.handshakes_per_s",
            params![
                node.as_str(),
                beat.started_ms,
                beat.now_ms,
                beat.peers,
                beat.sessions,
                beat.handshakes,
                beat.handshakes_per_s
            ],
        )?;
        self.engine.execute(
            "DELETE FROM nodes WHERE heartbeat_ms < ?1",
            params![beat.now_ms.saturating_sub(FORGET_MS)],
        )?;
        // Sessions no node would reach for any more.
        self.engine.execute(
            "DELETE FROM sessions WHERE seen_ms < ?1",
            params![beat.now_ms.saturating_sub(FORGET_MS)],
        )?;
        Ok(())
    }

    /// Every node that wrote a heartbeat in the last day, newest start first.
    pub fn nodes(&mut self) -> Result<Vec<NodeRecord>, RegistryError> {
        let rows = self.engine.query(
            "SELECT node, started_ms, heartbeat_ms, peers, sessions, handshakes, \
             handshakes_per_s FROM nodes ORDER BY started_ms DESC, node",
            params![],
        )?;
        let n = |r: &super::store::Row, i| r.int(i).map(|v| v.max(0) as u64);
        rows.iter()
            .map(|r| {
                Ok(NodeRecord {
                    node: r.text(0)?,
                    beat: Heartbeat {
                        started_ms: n(r, 1)?,
                        now_ms: n(r, 2)?,
                        peers: n(r, 3)?,
                        sessions: n(r, 4)?,
                        handshakes: n(r, 5)?,
                        handshakes_per_s: n(r, 6)?,
                    },
                })
            })
            .collect()
    }
}
