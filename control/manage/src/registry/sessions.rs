//! Where each user's session was last seen: its endpoint and the node serving it. Nodes
//! write what changed about once a second; a node taking over a failed one claims that
//! node's recent sessions in one statement (so two survivors never both reach the same
//! users) and starts handshakes toward them at once, newest first.

use std::net::SocketAddr;

use proto::PublicKey;

use super::store::{params, Sql};
use super::{Registry, RegistryError};

/// A session is live while its latest handshake is younger than this (WireGuard's
/// REJECT_AFTER_TIME is 180 s): counted in heartbeats, recorded, and reached for by a node
/// taking over.
pub const RECENT_MS: u64 = 180_000;

/// Unix milliseconds now.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A session as recorded: whose, where its client was, when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenSession {
    /// The user's public key.
    pub public_key: PublicKey,
    /// Its client's address and port.
    pub endpoint: SocketAddr,
    /// Its latest handshake, Unix milliseconds.
    pub seen_ms: u64,
}

impl Registry {
    /// Records `seen` as this node's sessions (each statement on its own: these are not
    /// changes, and a lost one is written again at the next handshake). A row with a newer
    /// handshake than the one written stays as it is.
    pub fn record_sessions(&mut self, seen: &[SeenSession]) -> Result<(), RegistryError> {
        let node = self.node.clone();
        for s in seen {
            self.engine.execute(
                "INSERT INTO sessions (public_key, node, endpoint, seen_ms) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (public_key) DO UPDATE \
                 SET node = excluded.node, endpoint = excluded.endpoint, \
                 seen_ms = excluded.seen_ms WHERE excluded.seen_ms > sessions.seen_ms",
                params![
                    &s.public_key.0[..],
                    node.as_str(),
                    s.endpoint.to_string(),
                    s.seen_ms
                ],
            )?;
        }
        Ok(())
    }

    /// Claims for this node the sessions node `from` saw since `since_ms`, and returns
    /// them newest first. One statement: a session claimed by another survivor first is
    /// not returned here.
    pub fn take_over_sessions(
        &mut self,
        from: &str,
        since_ms: u64,
    ) -> Result<Vec<SeenSession>, RegistryError> {
        let node = self.node.clone();
        // In a transaction, which is never run twice: a claim whose answer was lost with the
        // connection is not made again (the second run would return nothing).
        let mut tx = self.engine.write()?;
        let rows = tx.query(
            "UPDATE sessions SET node = ?1 WHERE node = ?2 AND seen_ms >= ?3 \
             RETURNING public_key, endpoint, seen_ms",
            params![node.as_str(), from, since_ms],
        )?;
        tx.commit()?;
        let mut taken = Vec::with_capacity(rows.len());
        for r in &rows {
            let key = <[u8; 32]>::try_from(r.blob(0)?.as_slice())
                .map_err(|_| RegistryError::Corrupt("a session's public key".into()))?;
            let text = r.text(1)?;
            let endpoint = text
                .parse()
                .map_err(|_| RegistryError::Corrupt(format!("session endpoint {text:?}")))?;
            taken.push(SeenSession {
                public_key: PublicKey(key),
                endpoint,
                seen_ms: r.int(2)?.max(0) as u64,
            });
        }
        taken.sort_by_key(|s| std::cmp::Reverse(s.seen_ms));
        Ok(taken)
    }
}

/// Forgets the session of peer `key` (revoked or deleted: no node may reach for it).
pub(super) fn forget(tx: &mut super::store::Tx<'_>, key: &PublicKey) -> Result<(), RegistryError> {
    tx.execute(
        "DELETE FROM sessions WHERE public_key = ?1",
        params![&key.0[..]],
    )?;
    Ok(())
}
