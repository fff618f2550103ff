//! Creating, reading, changing and removing peers. Every change is one transaction that
//! takes the write lock up front, so two connections (or nodes) creating peers at once are
//! serialized before either reads a free address.

use ipnet::IpNet;
use proto::PublicKey;

use super::changes::{record, Subject};
use super::ipam::{addresses_of, allocate, release, Holder};
use super::routes::check_routes;
use super::sessions::forget;
use super::store::{is_unique_violation, params, Row, Sql};
use super::{pool_of, PeerRecord, Registry, RegistryError};

/// What a new peer is made of; the registry adds its id, addresses and times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPeer {
    /// Display name.
    pub name: String,
    /// Group ("default" if none is given).
    pub group: String,
    /// The peer's public key.
    pub public_key: PublicKey,
    /// Optional preshared key.
    pub preshared_key: Option<[u8; 32]>,
    /// Further prefixes routed to the peer.
    pub allowed_ips: Vec<IpNet>,
}

/// A change to an existing peer; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerChange {
    /// New display name.
    pub name: Option<String>,
    /// New preshared key (`Some(None)` removes it).
    pub preshared_key: Option<Option<[u8; 32]>>,
    /// New further prefixes.
    pub allowed_ips: Option<Vec<IpNet>>,
    /// New group: its policy, and addresses from its pool when that pool is another.
    pub group: Option<String>,
    /// New expiry, Unix seconds (`Some(None)` removes it).
    pub expires_at: Option<Option<u64>>,
}

/// Which peers a listing returns: one page, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    /// Only this group.
    pub group: Option<String>,
    /// Only ids above this (the last id of the previous page).
    pub after: i64,
    /// Page size.
    pub limit: usize,
    /// Include revoked peers.
    pub revoked: bool,
    /// Only peers whose name holds this text (any case).
    pub search: Option<String>,
}

impl ListFilter {
    /// The LIKE pattern for `search`: its wildcards taken literally (each engine folds its
    /// case, in the statement).
    fn pattern(&self) -> Option<String> {
        let text = self.search.as_deref()?;
        let mut out = String::with_capacity(text.len() + 2);
        out.push('%');
        for c in text.chars() {
            if matches!(c, '%' | '_' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('%');
        Some(out)
    }
}

/// The search condition of a listing, on parameter `n` (a LIKE pattern or NULL).
fn search(n: usize) -> String {
    // Both sides through the engine's own lower(): SQLite folds ASCII only, PostgreSQL every
    // letter, and each matches a name written in the very case searched for.
    format!("AND (CAST(?{n} AS TEXT) IS NULL OR lower(name) LIKE lower(?{n}) ESCAPE '\\')")
}

impl Default for ListFilter {
    fn default() -> Self {
        Self {
            group: None,
            after: 0,
            limit: 100,
            revoked: true,
            search: None,
        }
    }
}

const PEER_COLUMNS: &str = "id, name, grp, public_key, preshared_key, allowed_ips, created_at, \
                            updated_at, last_handshake, revoked_at, expires_at";

fn key32(bytes: Vec<u8>, what: &str) -> Result<[u8; 32], RegistryError> {
    bytes
        .try_into()
        .map_err(|_| RegistryError::Corrupt(format!("{what} is not 32 bytes")))
}

fn prefixes_text(nets: &[IpNet]) -> String {
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The row's columns, before addresses are attached.
fn peer_from_row(row: &Row) -> Result<RawPeer, RegistryError> {
    Ok(RawPeer {
        id: row.int(0)?,
        name: row.text(1)?,
        group: row.text(2)?,
        public_key: row.blob(3)?,
        preshared_key: row.blob_opt(4)?,
        allowed_ips: row.text(5)?,
        created_at: row.int(6)?,
        updated_at: row.int(7)?,
        last_handshake: row.int_opt(8)?,
        revoked_at: row.int_opt(9)?,
        expires_at: row.int_opt(10)?,
    })
}

struct RawPeer {
    id: i64,
    name: String,
    group: String,
    public_key: Vec<u8>,
    preshared_key: Option<Vec<u8>>,
    allowed_ips: String,
    created_at: i64,
    updated_at: i64,
    last_handshake: Option<i64>,
    revoked_at: Option<i64>,
    expires_at: Option<i64>,
}

impl RawPeer {
    fn finish(self, addresses: Vec<std::net::IpAddr>) -> Result<PeerRecord, RegistryError> {
        let allowed_ips = self
            .allowed_ips
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .map_err(|_| RegistryError::Corrupt(format!("allowed IP {s:?}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(PeerRecord {
            id: self.id,
            name: self.name,
            group: self.group,
            public_key: PublicKey(key32(self.public_key, "a public key")?),
            preshared_key: self
                .preshared_key
                .map(|k| key32(k, "a preshared key"))
                .transpose()?,
            addresses,
            allowed_ips,
            created_at: self.created_at.max(0) as u64,
            updated_at: self.updated_at.max(0) as u64,
            last_handshake: self.last_handshake.map(|t| t.max(0) as u64),
            revoked_at: self.revoked_at.map(|t| t.max(0) as u64),
            expires_at: self.expires_at.map(|t| t.max(0) as u64),
        })
    }
}

/// The ids of the peers named `name`, in order.
fn ids_named(db: &mut impl Sql, name: &str) -> Result<Vec<i64>, RegistryError> {
    db.query(
        "SELECT id FROM peers WHERE name = ?1 ORDER BY id",
        params![name],
    )?
    .iter()
    .map(|row| row.int(0))
    .collect()
}

/// Refuses `name` when a peer other than `except` holds it (revoked peers too: their record
/// stays, and a name must lead to one peer).
fn check_name_free(
    db: &mut impl Sql,
    name: &str,
    except: Option<i64>,
) -> Result<(), RegistryError> {
    match ids_named(db, name)?
        .into_iter()
        .find(|id| Some(*id) != except)
    {
        Some(holder) => Err(RegistryError::DuplicateName {
            name: name.to_string(),
            holder,
        }),
        None => Ok(()),
    }
}

impl Registry {
    /// Creates `peers` in one transaction, all or none, each with addresses from its group's
    /// pool; returns them in order.
    pub fn create(
        &mut self,
        peers: &[NewPeer],
        now: u64,
    ) -> Result<Vec<PeerRecord>, RegistryError> {
        let pools: Vec<_> = peers
            .iter()
            .map(|p| self.pool_for(&p.group).cloned())
            .collect::<Result<_, _>>()?;
        let mut tx = self.engine.write()?;
        let mut made = Vec::with_capacity(peers.len());
        for (p, pool) in peers.iter().zip(&pools) {
            // Checked against the rows inserted so far too: a batch cannot overlap itself,
            // nor name two peers alike.
            check_name_free(&mut tx, &p.name, None)?;
            check_routes(&mut tx, &self.pools, None, &p.allowed_ips)?;
            let inserted = tx.query_opt(
                "INSERT INTO peers (name, grp, public_key, preshared_key, allowed_ips, \
                 created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) RETURNING id",
                params![
                    p.name.as_str(),
                    p.group.as_str(),
                    &p.public_key.0[..],
                    p.preshared_key.as_ref().map(|k| &k[..]),
                    prefixes_text(&p.allowed_ips),
                    now
                ],
            );
            let id = match inserted {
                Err(e) if is_unique_violation(&e) => {
                    return Err(RegistryError::DuplicateKey(p.public_key.to_base64()));
                }
                Ok(Some(row)) => row.int(0)?,
                Ok(None) => return Err(RegistryError::Corrupt("an insert without an id".into())),
                Err(e) => return Err(e),
            };
            let mut addresses = pool
                .v4
                .iter()
                .chain(pool.v6.iter())
                .map(|net| allocate(&mut tx, pool, net, Holder::Peer(id), now))
                .collect::<Result<Vec<_>, _>>()?;
            addresses.sort();
            record(
                &mut tx,
                &self.node,
                Subject::Peer(id),
                Some(&p.public_key),
                now,
            )?;
            // Everything the row holds is known here: no need to read it back.
            made.push(PeerRecord {
                id,
                name: p.name.clone(),
                group: p.group.clone(),
                public_key: p.public_key,
                preshared_key: p.preshared_key,
                addresses,
                allowed_ips: p.allowed_ips.clone(),
                created_at: now,
                updated_at: now,
                last_handshake: None,
                revoked_at: None,
                expires_at: None,
            });
        }
        tx.commit()?;
        Ok(made)
    }

    /// The peer with id `id`.
    pub fn get(&mut self, id: i64) -> Result<PeerRecord, RegistryError> {
        let raw = self
            .engine
            .query_opt(
                &format!("SELECT {PEER_COLUMNS} FROM peers WHERE id = ?1"),
                params![id],
            )?
            .ok_or(RegistryError::NoSuchPeer(id))?;
        let raw = peer_from_row(&raw)?;
        let addresses = addresses_of(&mut self.engine, Holder::Peer(id))?;
        raw.finish(addresses)
    }

    /// The peer with public key `key`, if any.
    pub fn find_by_key(&mut self, key: &PublicKey) -> Result<Option<PeerRecord>, RegistryError> {
        let id = self
            .engine
            .query_opt(
                "SELECT id FROM peers WHERE public_key = ?1",
                params![&key.0[..]],
            )?
            .map(|row| row.int(0))
            .transpose()?;
        id.map(|id| self.get(id)).transpose()
    }

    /// The id of the peer named `name`.
    pub fn id_by_name(&mut self, name: &str) -> Result<i64, RegistryError> {
        let ids = ids_named(&mut self.engine, name)?;
        match ids.as_slice() {
            [] => Err(RegistryError::NoSuchName(name.to_string())),
            [id] => Ok(*id),
            _ => Err(RegistryError::AmbiguousName {
                name: name.to_string(),
                ids,
            }),
        }
    }

    /// One page of peers.
    pub fn list(&mut self, filter: &ListFilter) -> Result<Vec<PeerRecord>, RegistryError> {
        // The casts give PostgreSQL the parameters' types where nothing else does.
        let rows = self.engine.query(
            &format!(
                "SELECT {PEER_COLUMNS} FROM peers WHERE id > ?1 \
                 AND (CAST(?2 AS TEXT) IS NULL OR grp = ?2) \
                 AND (CAST(?3 AS BOOLEAN) OR revoked_at IS NULL) {} ORDER BY id LIMIT ?4",
                search(5)
            ),
            params![
                filter.after,
                filter.group.as_deref(),
                filter.revoked,
                filter.limit.min(i64::MAX as usize) as i64,
                filter.pattern()
            ],
        )?;
        rows.iter()
            .map(|row| {
                let raw = peer_from_row(row)?;
                let addresses = addresses_of(&mut self.engine, Holder::Peer(raw.id))?;
                raw.finish(addresses)
            })
            .collect()
    }

    /// How many peers `filter` selects, all pages together (`after` and `limit` aside).
    pub fn count_matching(&mut self, filter: &ListFilter) -> Result<u64, RegistryError> {
        let row = self.engine.query_opt(
            &format!(
                "SELECT count(*) FROM peers WHERE (CAST(?1 AS TEXT) IS NULL OR grp = ?1) \
                 AND (CAST(?2 AS BOOLEAN) OR revoked_at IS NULL) {}",
                search(3)
            ),
            params![filter.group.as_deref(), filter.revoked, filter.pattern()],
        )?;
        row.map_or(Ok(0), |r| Ok(r.int(0)?.max(0) as u64))
    }

    /// Every peer that is not revoked, with its addresses (what the daemon loads at start).
    pub fn active(&mut self) -> Result<Vec<PeerRecord>, RegistryError> {
        let mut by_peer: std::collections::HashMap<i64, Vec<std::net::IpAddr>> =
            std::collections::HashMap::new();
        let rows = self.engine.query(
            "SELECT peer_id, address FROM addresses WHERE peer_id IS NOT NULL",
            params![],
        )?;
        for row in rows {
            let (id, text) = (row.int(0)?, row.text(1)?);
            let addr = text
                .parse()
                .map_err(|_| RegistryError::Corrupt(format!("address {text:?}")))?;
            by_peer.entry(id).or_default().push(addr);
        }
        let rows = self.engine.query(
            &format!("SELECT {PEER_COLUMNS} FROM peers WHERE revoked_at IS NULL ORDER BY id"),
            params![],
        )?;
        rows.iter()
            .map(|row| {
                let raw = peer_from_row(row)?;
                let mut addresses = by_peer.remove(&raw.id).unwrap_or_default();
                addresses.sort();
                raw.finish(addresses)
            })
            .collect()
    }

    /// Changes peer `id`.
    pub fn update(
        &mut self,
        id: i64,
        change: &PeerChange,
        now: u64,
    ) -> Result<PeerRecord, RegistryError> {
        let mut tx = self.engine.write()?;
        let n = tx.execute(
            "UPDATE peers SET updated_at = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        if n == 0 {
            return Err(RegistryError::NoSuchPeer(id));
        }
        if let Some(name) = &change.name {
            check_name_free(&mut tx, name, Some(id))?;
            tx.execute(
                "UPDATE peers SET name = ?2 WHERE id = ?1",
                params![id, name.as_str()],
            )?;
        }
        if let Some(psk) = &change.preshared_key {
            tx.execute(
                "UPDATE peers SET preshared_key = ?2 WHERE id = ?1",
                params![id, psk.as_ref().map(|k| &k[..])],
            )?;
        }
        if let Some(nets) = &change.allowed_ips {
            check_routes(&mut tx, &self.pools, Some(id), nets)?;
            tx.execute(
                "UPDATE peers SET allowed_ips = ?2 WHERE id = ?1",
                params![id, prefixes_text(nets)],
            )?;
        }
        if let Some(group) = &change.group {
            move_group(&mut tx, &self.pools, id, group, now)?;
        }
        if let Some(expiry) = change.expires_at {
            tx.execute(
                "UPDATE peers SET expires_at = ?2 WHERE id = ?1",
                params![id, expiry],
            )?;
        }
        record(&mut tx, &self.node, Subject::Peer(id), None, now)?;
        tx.commit()?;
        self.get(id)
    }

    /// Ids of the peers whose expiry has passed at `now` and are not revoked yet.
    pub fn expired(&mut self, now: u64) -> Result<Vec<i64>, RegistryError> {
        let rows = self.engine.query(
            "SELECT id FROM peers WHERE expires_at <= ?1 AND revoked_at IS NULL ORDER BY id",
            params![now],
        )?;
        rows.iter().map(|r| r.int(0)).collect()
    }

    /// Revokes peer `id`: it keeps its row (for the record) but loses its addresses, which
    /// rest for the pool's hold time. Revoking twice is not an error.
    pub fn revoke(&mut self, id: i64, now: u64) -> Result<PeerRecord, RegistryError> {
        self.revoke_once(id, now).map(|(peer, _)| peer)
    }

    /// The same, and whether this call revoked it (false: it was revoked already, and
    /// nothing changed).
    pub fn revoke_once(&mut self, id: i64, now: u64) -> Result<(PeerRecord, bool), RegistryError> {
        let mut tx = self.engine.write()?;
        let n = tx.execute(
            "UPDATE peers SET revoked_at = ?2, updated_at = ?2 \
             WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now],
        )?;
        if n == 0 {
            drop(tx);
            return self.get(id).map(|peer| (peer, false));
        }
        release(&mut tx, Holder::Peer(id), now)?;
        if let Some(key) = tx
            .query_opt("SELECT public_key FROM peers WHERE id = ?1", params![id])?
            .map(|r| r.blob(0))
            .transpose()?
        {
            forget(&mut tx, &PublicKey(key32(key, "a public key")?))?;
        }
        record(&mut tx, &self.node, Subject::Peer(id), None, now)?;
        tx.commit()?;
        self.get(id).map(|peer| (peer, true))
    }

    /// Deletes peer `id` and releases its addresses.
    pub fn delete(&mut self, id: i64, now: u64) -> Result<(), RegistryError> {
        let mut tx = self.engine.write()?;
        let key = tx
            .query_opt("SELECT public_key FROM peers WHERE id = ?1", params![id])?
            .ok_or(RegistryError::NoSuchPeer(id))?
            .blob(0)?;
        let key = PublicKey(key32(key, "a public key")?);
        release(&mut tx, Holder::Peer(id), now)?;
        forget(&mut tx, &key)?;
        tx.execute("DELETE FROM peers WHERE id = ?1", params![id])?;
        // The key goes with the row: the log keeps it, so other nodes can drop the peer.
        record(&mut tx, &self.node, Subject::Peer(id), Some(&key), now)?;
        tx.commit()?;
        Ok(())
    }

    /// Records when peers (by key) last completed a handshake, in one transaction; a time
    /// never moves back, and keys no longer registered are skipped.
    pub fn record_handshakes(&mut self, seen: &[(PublicKey, u64)]) -> Result<(), RegistryError> {
        let mut tx = self.engine.write()?;
        for (key, at) in seen {
            tx.execute(
                "UPDATE peers SET last_handshake = ?2 WHERE public_key = ?1 \
                 AND (last_handshake IS NULL OR last_handshake < ?2)",
                params![&key.0[..], *at],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Number of peers, revoked included.
    pub fn count(&mut self) -> Result<u64, RegistryError> {
        let n = self
            .engine
            .query_opt("SELECT count(*) FROM peers", params![])?
            .map(|row| row.int(0))
            .transpose()?
            .unwrap_or(0);
        Ok(n.max(0) as u64)
    }
}

/// Puts peer `id` in `group` inside `tx`; a peer with addresses whose new group draws
/// from another pool gets new addresses there (the old ones rest for their hold time).
fn move_group(
    tx: &mut super::store::Tx<'_>,
    pools: &[super::Pool],
    id: i64,
    group: &str,
    now: u64,
) -> Result<(), RegistryError> {
    let row = tx
        .query_opt(
            "SELECT grp, revoked_at FROM peers WHERE id = ?1",
            params![id],
        )?
        .ok_or(RegistryError::NoSuchPeer(id))?;
    let (old, revoked) = (row.text(0)?, row.int_opt(1)?.is_some());
    let (from, to) = (pool_of(pools, &old)?, pool_of(pools, group)?);
    tx.execute(
        "UPDATE peers SET grp = ?2 WHERE id = ?1",
        params![id, group],
    )?;
    if from.name != to.name && !revoked {
        release(tx, Holder::Peer(id), now)?;
        for net in to.v4.iter().chain(to.v6.iter()) {
            allocate(tx, to, net, Holder::Peer(id), now)?;
        }
    }
    Ok(())
}
