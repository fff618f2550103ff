//! IKEv2 users: an identity (an e-mail address, a host name or an IP address, as the client
//! sends it in IDi, or its EAP identity), a pre-shared key of their own, a certificate naming
//! that identity or a password (its NT hash only), a group, and addresses from the group's pool, held in the same table as WireGuard peers'
//! addresses. A key another user has is refused: one key shared by everyone lets any user
//! pose as any other.

use std::net::IpAddr;

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use zeroize::Zeroizing;

use super::ipam::{addresses_of, allocate, release, Holder};
use super::{Registry, RegistryError};

/// The shortest pre-shared key taken: a short one falls to an offline guess from one
/// captured IKE_AUTH.
pub const MIN_PSK_LEN: usize = 16;

/// How an IKEv2 user authenticates (Debug leaves the key out).
#[derive(Clone, PartialEq, Eq)]
pub enum IkeUserAuth {
    /// A pre-shared key of its own.
    Psk(Zeroizing<Vec<u8>>),
    /// A certificate naming its identity, issued under the CA configured in `[ike] ca`.
    Certificate,
    /// A password, by EAP-MSCHAPv2: its NT hash (MD4 of the UTF-16 password), all MSCHAPv2
    /// needs and password-equivalent.
    Eap(Zeroizing<[u8; 16]>),
}

impl IkeUserAuth {
    /// The method's name, as the API and the database write it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Psk(_) => "psk",
            Self::Certificate => "certificate",
            Self::Eap(_) => "eap",
        }
    }

    /// The pre-shared key, for a PSK user.
    pub fn psk(&self) -> Option<&[u8]> {
        match self {
            Self::Psk(k) => Some(k),
            Self::Certificate | Self::Eap(_) => None,
        }
    }

    /// The password's NT hash, for a password user.
    pub fn nt_hash(&self) -> Option<&[u8]> {
        match self {
            Self::Eap(h) => Some(&h[..]),
            Self::Psk(_) | Self::Certificate => None,
        }
    }
}

impl std::fmt::Debug for IkeUserAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A new IKEv2 user; the registry adds its id, addresses and times.
#[derive(Clone)]
pub struct NewIkeUser {
    /// Its name (unique among IKEv2 users).
    pub name: String,
    /// Its group, which picks the pool and the client policy.
    pub group: String,
    /// Its identity, as the client sends it.
    pub identity: String,
    /// How it authenticates.
    pub auth: IkeUserAuth,
}

/// An IKEv2 user as the registry holds it (Debug leaves the key out).
#[derive(Clone, PartialEq, Eq)]
pub struct IkeUserRecord {
    /// Unique id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Group.
    pub group: String,
    /// Identity, as written.
    pub identity: String,
    /// How it authenticates.
    pub auth: IkeUserAuth,
    /// Virtual addresses, IPv4 before IPv6.
    pub addresses: Vec<IpAddr>,
    /// Creation time, Unix seconds.
    pub created_at: u64,
}

impl std::fmt::Debug for IkeUserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeUserRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("group", &self.group)
            .field("identity", &self.identity)
            .field("auth", &self.auth.name())
            .field("addresses", &self.addresses)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "id, name, grp, identity, psk, created_at, nt_hash";

impl Registry {
    /// Creates an IKEv2 user with addresses from its group's pool.
    pub fn create_ike_user(
        &mut self,
        u: &NewIkeUser,
        now: u64,
    ) -> Result<IkeUserRecord, RegistryError> {
        if let Some(psk) = u.auth.psk().filter(|k| k.len() < MIN_PSK_LEN) {
            return Err(RegistryError::WeakPsk(psk.len()));
        }
        let pool = self.pool_for(&u.group)?.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let held = |sql: &str, value: &dyn rusqlite::ToSql| -> Result<Option<i64>, RegistryError> {
            Ok(tx.query_row(sql, [value], |r| r.get(0)).optional()?)
        };
        if let Some(holder) = held("SELECT id FROM ike_users WHERE name = ?1", &u.name)? {
            return Err(RegistryError::DuplicateIkeUser {
                what: format!("name {:?}", u.name),
                holder,
            });
        }
        if let Some(holder) = held("SELECT id FROM ike_users WHERE identity = ?1", &u.identity)? {
            return Err(RegistryError::DuplicateIkeUser {
                what: format!("identity {:?}", u.identity),
                holder,
            });
        }
        if let Some(psk) = u.auth.psk() {
            if let Some(holder) = held("SELECT id FROM ike_users WHERE psk = ?1", &psk)? {
                return Err(RegistryError::SharedPsk { holder });
            }
        }
        tx.execute(
            "INSERT INTO ike_users (name, grp, identity, auth, psk, created_at, updated_at, \
             nt_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
            params![
                u.name,
                u.group,
                u.identity,
                u.auth.name(),
                u.auth.psk(),
                now as i64,
                u.auth.nt_hash()
            ],
        )?;
        let id = tx.last_insert_rowid();
        let addresses = pool
            .v4
            .iter()
            .chain(pool.v6.iter())
            .map(|net| allocate(&tx, &pool, net, Holder::IkeUser(id), now))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        Ok(IkeUserRecord {
            id,
            name: u.name.clone(),
            group: u.group.clone(),
            identity: u.identity.clone(),
            auth: u.auth.clone(),
            addresses,
            created_at: now,
        })
    }

    /// Every IKEv2 user that is not revoked, in id order.
    pub fn ike_users(&self) -> Result<Vec<IkeUserRecord>, RegistryError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM ike_users WHERE revoked_at IS NULL ORDER BY id"
        ))?;
        let rows = stmt.query_map([], raw_user)?;
        let mut out = Vec::new();
        for row in rows {
            let raw = row?;
            let addresses = addresses_of(&self.conn, Holder::IkeUser(raw.id))?;
            out.push(IkeUserRecord { addresses, ..raw });
        }
        Ok(out)
    }

    /// The IKEv2 user `id`.
    pub fn ike_user(&self, id: i64) -> Result<IkeUserRecord, RegistryError> {
        let raw = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM ike_users WHERE id = ?1"),
                params![id],
                raw_user,
            )
            .optional()?
            .ok_or(RegistryError::NoSuchIkeUser(id))?;
        let addresses = addresses_of(&self.conn, Holder::IkeUser(id))?;
        Ok(IkeUserRecord { addresses, ..raw })
    }

    /// Deletes IKEv2 user `id`; its addresses rest for the pool's hold time. Returns it as
    /// it was.
    pub fn delete_ike_user(&mut self, id: i64, now: u64) -> Result<IkeUserRecord, RegistryError> {
        let user = self.ike_user(id)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        release(&tx, Holder::IkeUser(id), now)?;
        tx.execute("DELETE FROM ike_users WHERE id = ?1", params![id])?;
        tx.commit()?;
        Ok(user)
    }
}

/// A row, before its addresses are attached.
fn raw_user(row: &rusqlite::Row<'_>) -> rusqlite::Result<IkeUserRecord> {
    Ok(IkeUserRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        group: row.get(2)?,
        identity: row.get(3)?,
        auth: match (
            row.get::<_, Option<Vec<u8>>>(4)?,
            row.get::<_, Option<Vec<u8>>>(6)?,
        ) {
            (Some(k), _) => IkeUserAuth::Psk(Zeroizing::new(k)),
            // The schema holds it to 16 bytes.
            (None, Some(h)) => IkeUserAuth::Eap(Zeroizing::new(
                <[u8; 16]>::try_from(h.as_slice()).unwrap_or_default(),
            )),
            (None, None) => IkeUserAuth::Certificate,
        },
        addresses: Vec::new(),
        created_at: row.get::<_, i64>(5)?.max(0) as u64,
    })
}
