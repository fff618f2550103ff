//! Address management: each pool hands out IPv4 and IPv6 host addresses from its prefixes.
//! Every address handed out has a row keyed by the address itself, so the database refuses
//! a second holder; allocation runs inside the creating transaction, so concurrent creations
//! (serialized by SQLite's single writer) never see the same free address. A released
//! address is handed out again only after the pool's hold time, so a revoked user's address
//! does not reach someone else while stale routes or sessions may still point at it. On
//! PostgreSQL the write lock every transaction takes first does what SQLite's single writer
//! does, across every node sharing the database.

use std::net::IpAddr;

use ipnet::IpNet;

use super::store::{params, Sql};
use super::RegistryError;

/// An address pool: the prefixes peers' tunnel addresses come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Name (groups pick a pool by name; "default" otherwise).
    pub name: String,
    /// IPv4 prefix, if the pool hands out IPv4.
    pub v4: Option<IpNet>,
    /// IPv6 prefix, if the pool hands out IPv6.
    pub v6: Option<IpNet>,
    /// Addresses never handed out (the server's own tunnel addresses).
    pub reserved: Vec<IpAddr>,
    /// Seconds a released address rests before it is handed out again.
    pub hold_secs: u64,
}

/// Who holds an address: a WireGuard peer or an IKEv2 user (one table, so no address is ever
/// held twice whatever the protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A WireGuard peer, by id.
    Peer(i64),
    /// An IKEv2 user, by id.
    IkeUser(i64),
}

impl Holder {
    /// The column naming this kind of holder, and the id.
    fn column(self) -> (&'static str, i64) {
        match self {
            Holder::Peer(id) => ("peer_id", id),
            Holder::IkeUser(id) => ("ike_user_id", id),
        }
    }
}

/// Host index `i` of `net` (0 is the network address itself).
fn nth(net: &IpNet, i: u128) -> Option<IpAddr> {
    match net {
        IpNet::V4(n) => {
            let base = u32::from(n.network());
            let i = u32::try_from(i).ok()?;
            Some(IpAddr::V4(base.checked_add(i)?.into()))
        }
        IpNet::V6(n) => {
            let base = u128::from(n.network());
            Some(IpAddr::V6(base.checked_add(i)?.into()))
        }
    }
}

/// Number of addresses in `net` (saturating for IPv6 prefixes shorter than /1).
fn size(net: &IpNet) -> u128 {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
}

/// True for addresses of `net` no host may have: the network address, IPv4 broadcast.
fn unusable(net: &IpNet, i: u128) -> bool {
    i == 0 || (matches!(net, IpNet::V4(_)) && size(net) > 2 && i == size(net) - 1)
}

/// The cursor and row key of one family of a pool.
fn pool_key(pool: &Pool, v6: bool) -> String {
    format!("{}/{}", pool.name, if v6 { 6 } else { 4 })
}

/// Hands one address of `net` (a family of `pool`) to `holder`: a released address whose
/// hold is over, else the next never-used one. Runs inside the caller's transaction.
pub(super) fn allocate(
    tx: &mut impl Sql,
    pool: &Pool,
    net: &IpNet,
    holder: Holder,
    now: u64,
) -> Result<IpAddr, RegistryError> {
    let (column, id) = holder.column();
    let v6 = matches!(net, IpNet::V6(_));
    let key = pool_key(pool, v6);
    let rested = now.saturating_sub(pool.hold_secs) as i64;
    let reuse = tx
        .query_opt(
            "SELECT address FROM addresses WHERE pool = ?1 AND peer_id IS NULL \
             AND ike_user_id IS NULL AND released_at <= ?2 ORDER BY released_at, address LIMIT 1",
            params![key.as_str(), rested],
        )?
        .map(|row| row.text(0))
        .transpose()?;
    if let Some(text) = reuse {
        tx.execute(
            &format!("UPDATE addresses SET {column} = ?1, released_at = NULL WHERE address = ?2"),
            params![id, text.as_str()],
        )?;
        return text
            .parse()
            .map_err(|_| RegistryError::Corrupt(format!("address {text:?} in pool {key}")));
    }
    let mut next: u128 = tx
        .query_opt(
            "SELECT next FROM pool_cursors WHERE pool = ?1",
            params![key.as_str()],
        )?
        .map(|row| row.int(0))
        .transpose()?
        .map_or(0, |n| n.max(0) as u128);
    let total = size(net);
    loop {
        let i = next;
        next += 1;
        if i >= total || i > i64::MAX as u128 - 1 {
            return Err(RegistryError::PoolExhausted {
                pool: pool.name.clone(),
                prefix: *net,
            });
        }
        let Some(addr) = nth(net, i) else { continue };
        if unusable(net, i) || pool.reserved.contains(&addr) {
            continue;
        }
        // A row may already exist (a reserved address recorded by hand): skip it.
        let inserted = tx.execute(
            &format!(
                "INSERT INTO addresses (address, pool, {column}) VALUES (?1, ?2, ?3) \
                 ON CONFLICT DO NOTHING"
            ),
            params![addr.to_string(), key.as_str(), id],
        )?;
        if inserted == 1 {
            tx.execute(
                "INSERT INTO pool_cursors (pool, next) VALUES (?1, ?2) \
                 ON CONFLICT (pool) DO UPDATE SET next = excluded.next",
                params![key.as_str(), next as i64],
            )?;
            return Ok(addr);
        }
    }
}

/// Releases every address of `holder`, to rest for its pool's hold time from `now`.
pub(super) fn release(tx: &mut impl Sql, holder: Holder, now: u64) -> Result<(), RegistryError> {
    let (column, id) = holder.column();
    tx.execute(
        &format!("UPDATE addresses SET {column} = NULL, released_at = ?1 WHERE {column} = ?2"),
        params![now, id],
    )?;
    Ok(())
}

/// The addresses `holder` holds, IPv4 before IPv6 (the order every reader gives).
pub(super) fn addresses_of(
    db: &mut impl Sql,
    holder: Holder,
) -> Result<Vec<IpAddr>, RegistryError> {
    let (column, id) = holder.column();
    let rows = db.query(
        &format!("SELECT address FROM addresses WHERE {column} = ?1"),
        params![id],
    )?;
    let mut out = Vec::new();
    for row in rows {
        let text = row.text(0)?;
        out.push(
            text.parse()
                .map_err(|_| RegistryError::Corrupt(format!("address {text:?}")))?,
        );
    }
    out.sort();
    Ok(out)
}
