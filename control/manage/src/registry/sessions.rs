//! Where each user's session was last seen: its endpoint, its index and the node serving
//! it. Nodes write new sessions within a few tens of milliseconds and rekeys with their
//! heartbeat; a node taking over a failed one claims that node's recent sessions in one
//! statement (so two survivors never both reach the same users) and starts handshakes
//! toward them at once, newest first; a node that a user's transport message reached claims
//! that user's session by the index the message named.

use std::net::SocketAddr;

use proto::PublicKey;

use super::store::{params, Sql, Value};
use super::{Registry, RegistryError};

/// A session is live while its latest handshake is younger than this (WireGuard's
/// REJECT_AFTER_TIME is 180 s): counted in heartbeats, recorded, and reached for by a node
/// taking over.
pub const RECENT_MS: u64 = 180_000;

/// Rows per statement, largest first: a batch is cut into these so that only eight
/// statement texts exist (each is prepared once per connection and kept), none above
/// 2,001 values (both engines take far more).
const ROWS_PER_STATEMENT: [usize; 8] = [500, 100, 50, 20, 10, 5, 2, 1];

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
    /// The session's index on the node that recorded it, if known.
    pub receiver_index: Option<u32>,
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
        // In key order: two nodes writing overlapping rows lock them in the same order, and
        // so never deadlock.
        let mut rows: Vec<SeenSession> = newest.into_values().collect();
        rows.sort_unstable_by_key(|s| s.public_key.0);
        let mut rest = &rows[..];
        while !rest.is_empty() {
            let size = ROWS_PER_STATEMENT
                .into_iter()
                .find(|&n| n <= rest.len())
                .unwrap_or(1);
            let (chunk, after) = rest.split_at(size);
            rest = after;
            let mut sql = String::from(
                "INSERT INTO sessions (public_key, node, endpoint, seen_ms, receiver_index) \
                 VALUES ",
            );
            let mut values = vec![Value::from(self.node.as_str())];
            for (i, s) in chunk.iter().enumerate() {
                let at = 2 + 4 * i;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(?{at}, ?1, ?{}, ?{}, ?{})",
                    at + 1,
                    at + 2,
                    at + 3
                ));
                values.push(Value::from(&s.public_key.0[..]));
                values.push(Value::from(s.endpoint.to_string()));
                values.push(Value::from(s.seen_ms));
                values.push(
                    s.receiver_index
                        .map_or(Value::Null, |i| Value::from(u64::from(i))),
                );
            }
            sql.push_str(
                " ON CONFLICT (public_key) DO UPDATE SET node = excluded.node, \
                 endpoint = excluded.endpoint, seen_ms = excluded.seen_ms, \
                 receiver_index = excluded.receiver_index \
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
             RETURNING public_key, endpoint, seen_ms, receiver_index",
            params![node.as_str(), from, since_ms],
        )?;
        tx.commit()?;
        let mut taken = rows
            .iter()
            .map(seen_session)
            .collect::<Result<Vec<_>, _>>()?;
        taken.sort_by_key(|s| std::cmp::Reverse(s.seen_ms));
        Ok(taken)
    }
}

/// Indices looked up per statement (fewer are padded with the first: one statement text).
pub const INDICES_PER_LOOKUP: usize = 32;

impl Registry {
    /// Claims for this node the sessions other nodes recorded since `since_ms` under the
    /// indices of `strays` (transport messages that came here for sessions this node does
    /// not have); returns each with the node it was taken from. At most
    /// `INDICES_PER_LOOKUP` are looked up, in one read without the write lock; each claim
    /// is one conditional statement, so a session is never claimed twice, nor claimed after
    /// its node recorded a newer one. A user is reached where the message came from only if
    /// that is the address recorded for it (a new port after a NAT rebinding): a forged
    /// message cannot point a handshake at anyone else.
    pub fn take_over_by_index(
        &mut self,
        strays: &[(u32, SocketAddr)],
        since_ms: u64,
    ) -> Result<Vec<(String, SeenSession)>, RegistryError> {
        let strays = &strays[..strays.len().min(INDICES_PER_LOOKUP)];
        let Some(&(first, _)) = strays.first() else {
            return Ok(Vec::new());
        };
        let me = self.node.clone();
        let list: Vec<String> = (0..INDICES_PER_LOOKUP)
            .map(|k| format!("?{}", 3 + k))
            .collect();
        let sql = format!(
            "SELECT public_key, endpoint, seen_ms, receiver_index, node FROM sessions \
             WHERE node <> ?1 AND seen_ms >= ?2 AND receiver_index IN ({})",
            list.join(", ")
        );
        let mut values = vec![Value::from(me.as_str()), Value::from(since_ms)];
        values.extend((0..INDICES_PER_LOOKUP).map(|k| {
            let index = strays.get(k).map_or(first, |s| s.0);
            Value::from(u64::from(index))
        }));
        let rows = self.engine.query(&sql, &values)?;
        let mut found: Vec<(String, SeenSession)> = Vec::with_capacity(rows.len());
        for r in &rows {
            found.push((r.text(4)?, seen_session(r)?));
        }
        let mut claimed = Vec::new();
        for &(index, from) in strays {
            // Indices are random per node, so two nodes' users may share one: reach neither
            // (a handshake to the wrong one would go unanswered; theirs come back alone).
            let mut named = found
                .iter()
                .filter(|(_, s)| s.receiver_index == Some(index));
            let (Some((node, session)), None) = (named.next(), named.next()) else {
                continue;
            };
            let updated = self.engine.execute(
                "UPDATE sessions SET node = ?1 \
                 WHERE public_key = ?2 AND node = ?3 AND receiver_index = ?4",
                params![
                    me.as_str(),
                    &session.public_key.0[..],
                    node.as_str(),
                    u64::from(index)
                ],
            );
            // Sessions claimed already must still be reached: the error can wait for the
            // next call (or the heartbeat's) when there are some.
            let n = match updated {
                Ok(n) => n,
                Err(_) if !claimed.is_empty() => break,
                Err(e) => return Err(e),
            };
            if n == 1 {
                let mut s = *session;
                if from.ip() == s.endpoint.ip() {
                    s.endpoint = from;
                }
                claimed.push((node.clone(), s));
            }
        }
        Ok(claimed)
    }
}

/// A session from a row of (public_key, endpoint, seen_ms, receiver_index).
fn seen_session(r: &super::store::Row) -> Result<SeenSession, RegistryError> {
    let key = <[u8; 32]>::try_from(r.blob(0)?.as_slice())
        .map_err(|_| RegistryError::Corrupt("a session's public key".into()))?;
    let text = r.text(1)?;
    let endpoint = text
        .parse()
        .map_err(|_| RegistryError::Corrupt(format!("session endpoint {text:?}")))?;
    Ok(SeenSession {
        public_key: PublicKey(key),
        endpoint,
        seen_ms: r.int(2)?.max(0) as u64,
        receiver_index: r.int_opt(3)?.and_then(|i| u32::try_from(i).ok()),
    })
}

/// Forgets the session of peer `key` (revoked or deleted: no node may reach for it).
pub(super) fn forget(tx: &mut super::store::Tx<'_>, key: &PublicKey) -> Result<(), RegistryError> {
    tx.execute(
        "DELETE FROM sessions WHERE public_key = ?1",
        params![&key.0[..]],
    )?;
    Ok(())
}
