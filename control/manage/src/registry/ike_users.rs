//! IKEv2 users: an identity (an e-mail address, a host name or an IP address, as the client
//! sends it in IDi, or its EAP identity), a pre-shared key of their own, a certificate naming
//! that identity or a password (its NT hash only), a group, and addresses from the group's pool, held in the same table as WireGuard peers'
//! addresses. A key another user has is refused: one key shared by everyone lets any user
//! pose as any other.

use std::net::IpAddr;

use zeroize::Zeroizing;

use super::changes::{record, Subject};
use super::ipam::{addresses_of, allocate, release, Holder};
use super::store::{params, Row, Sql, Value};
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
        let mut tx = self.engine.write()?;
        let mut held = |sql: &str, value: Value| -> Result<Option<i64>, RegistryError> {
            tx.query_opt(sql, &[value])?
                .map(|row| row.int(0))
                .transpose()
        };
        if let Some(holder) = held(
            "SELECT id FROM ike_users WHERE name = ?1",
            u.name.as_str().into(),
        )? {
            return Err(RegistryError::DuplicateIkeUser {
                what: format!("name {:?}", u.name),
                holder,
            });
        }
        if let Some(holder) = held(
            "SELECT id FROM ike_users WHERE identity = ?1",
            u.identity.as_str().into(),
        )? {
            return Err(RegistryError::DuplicateIkeUser {
                what: format!("identity {:?}", u.identity),
                holder,
            });
        }
        if let Some(psk) = u.auth.psk() {
            if let Some(holder) = held("SELECT id FROM ike_users WHERE psk = ?1", psk.into())? {
                return Err(RegistryError::SharedPsk { holder });
            }
        }
        let id = tx
            .query_opt(
                "INSERT INTO ike_users (name, grp, identity, auth, psk, created_at, updated_at, \
                 nt_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7) RETURNING id",
                params![
                    u.name.as_str(),
                    u.group.as_str(),
                    u.identity.as_str(),
                    u.auth.name(),
                    u.auth.psk(),
                    now,
                    u.auth.nt_hash()
                ],
            )?
            .ok_or_else(|| RegistryError::Corrupt("an insert without an id".into()))?
            .int(0)?;
        let addresses = pool
            .v4
            .iter()
            .chain(pool.v6.iter())
            .map(|net| allocate(&mut tx, &pool, net, Holder::IkeUser(id), now))
            .collect::<Result<Vec<_>, _>>()?;
        record(&mut tx, &self.node, Subject::IkeUser(id), None, now)?;
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
    pub fn ike_users(&mut self) -> Result<Vec<IkeUserRecord>, RegistryError> {
        let rows = self.engine.query(
            &format!("SELECT {COLUMNS} FROM ike_users WHERE revoked_at IS NULL ORDER BY id"),
            params![],
        )?;
        let mut out = Vec::new();
        for row in rows {
            let raw = raw_user(&row)?;
            let addresses = addresses_of(&mut self.engine, Holder::IkeUser(raw.id))?;
            out.push(IkeUserRecord { addresses, ..raw });
        }
        Ok(out)
    }

    /// The IKEv2 user `id`.
    pub fn ike_user(&mut self, id: i64) -> Result<IkeUserRecord, RegistryError> {
        let row = self
            .engine
            .query_opt(
                &format!("SELECT {COLUMNS} FROM ike_users WHERE id = ?1"),
                params![id],
            )?
            .ok_or(RegistryError::NoSuchIkeUser(id))?;
        let raw = raw_user(&row)?;
        let addresses = addresses_of(&mut self.engine, Holder::IkeUser(id))?;
        Ok(IkeUserRecord { addresses, ..raw })
    }

    /// Deletes IKEv2 user `id`; its addresses rest for the pool's hold time. Returns it as
    /// it was.
    pub fn delete_ike_user(&mut self, id: i64, now: u64) -> Result<IkeUserRecord, RegistryError> {
        let user = self.ike_user(id)?;
        let mut tx = self.engine.write()?;
        release(&mut tx, Holder::IkeUser(id), now)?;
        tx.execute("DELETE FROM ike_users WHERE id = ?1", params![id])?;
        record(&mut tx, &self.node, Subject::IkeUser(id), None, now)?;
        tx.commit()?;
        Ok(user)
    }
}

/// A row, before its addresses are attached.
fn raw_user(row: &Row) -> Result<IkeUserRecord, RegistryError> {
    Ok(IkeUserRecord {
        id: row.int(0)?,
        name: row.text(1)?,
        group: row.text(2)?,
        identity: row.text(3)?,
        auth: match (row.blob_opt(4)?, row.blob_opt(6)?) {
            (Some(k), _) => IkeUserAuth::Psk(Zeroizing::new(k)),
            // The schema holds it to 16 bytes.
            (None, Some(h)) => IkeUserAuth::Eap(Zeroizing::new(
                <[u8; 16]>::try_from(h.as_slice()).unwrap_or_default(),
            )),
            (None, None) => IkeUserAuth::Certificate,
        },
        addresses: Vec::new(),
        created_at: row.int(5)?.max(0) as u64,
    })
}
