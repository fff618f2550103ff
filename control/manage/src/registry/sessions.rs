//! Where each user's session was last seen: its endpoint and the node serving it. Nodes
//! write what changed about once a second; a node taking over a failed one claims that
//! node's recent sessions in one statement (so two survivors never both reach the same
//! users) and starts handshakes toward them at once, newest first.

use std::net::SocketAddr;

use proto::PublicKey;

use super::store::{params, Sql, Value};
use super::{Registry, RegistryError};

/// A session is live while its latest handshake is younger than this (WireGuard's
/// REJECT_AFTER_TIME is 180 s): counted in heartbeats, recorded, and reached for by a node
/// taking over.
pub const RECENT_MS: u64 = 180_000;

/// Sessions written per statement (3 values each, well within both engines' limits).
const ROWS_PER_STATEMENT: usize = 500;

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
    /// Records `seen` as this node's sessions, a few hundred rows per statement (these are
    /// not changes: no log row, and a lost one is written again at the next handshake). A
    /// row with a newer handshake than the one written stays as it is.
    pub fn record_sessions(&mut self, seen: &[SeenSession]) -> Result<(), RegistryError> {
        // One row per user per statement: PostgreSQL refuses to update a row twice in one.
        let mut newest: std::collections::HashMap<PublicKey, SeenSession> =
            std::collections::HashMap::with_capacity(seen.len());
        for s in seen {
            let e = newest.entry(s.public_key).or_insert(*s);
            if s.seen_ms > e.seen_ms {
                *e = *s;
            }
        }
        let rows: Vec<SeenSession> = newest.into_values().collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut sql =
                String::from("INSERT INTO sessions (public_key, node, endpoint, seen_ms) VALUES ");
            let mut values = vec![Value::from(self.node.as_str())];
            for (i, s) in chunk.iter().enumerate() {
                let at = 2 + 3 * i;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("(?{at}, ?1, ?{}, ?{})", at + 1, at + 2));
                values.push(Value::from(&s.public_key.0[..]));
                values.push(Value::from(s.endpoint.to_string()));
                values.push(Value::from(s.seen_ms));
            }
            sql.push_str(
                " ON CONFLICT (public_key) DO UPDATE SET node = excluded.node, \
                 endpoint = excluded.endpoint, seen_ms = excluded.seen_ms \
                 WHERE excluded.seen_ms > sessions.seen_ms",
            );
            self.engine.execute(&sql, &values)?;
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
