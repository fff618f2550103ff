//! The change log: every change to a peer or an IKEv2 user writes a row in the same
//! transaction (an outbox), numbered in commit order and naming the node that made it. On
//! PostgreSQL the commit also announces it (NOTIFY), so the other nodes sharing the
//! database read the rows after the last one they applied, apply what they did not make
//! themselves, and after a lost connection start again from there: no change is missed.

use proto::PublicKey;

use super::store::{params, Sql, Tx};
use super::{Registry, RegistryError};

/// What a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A WireGuard peer, by id.
    Peer(i64),
    /// An IKEv2 user, by id.
    IkeUser(i64),
}

/// One row of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its place in the log (increasing in commit order).
    pub seq: i64,
    /// The node that made it.
    pub node: String,
    /// What changed.
    pub subject: Subject,
    /// A peer's public key (kept so a deleted peer can still be taken off other nodes).
    pub public_key: Option<PublicKey>,
    /// When, Unix seconds.
    pub at: u64,
}

/// The channel PostgreSQL announces committed changes on.
pub const CHANNEL: &str = "xgate_changes";

/// Writes the row for a change to `subject` inside the changing transaction `tx`.
pub(super) fn record(
    tx: &mut Tx<'_>,
    node: &str,
    subject: Subject,
    public_key: Option<&PublicKey>,
    now: u64,
) -> Result<(), RegistryError> {
    let (kind, id) = match subject {
        Subject::Peer(id) => ("peer", id),
        Subject::IkeUser(id) => ("ike_user", id),
    };
    tx.execute(
        "INSERT INTO changes (node, kind, subject, public_key, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![node, kind, id, public_key.map(|k| &k.0[..]), now],
    )?;
    tx.announce(CHANNEL)
}

impl Registry {
    /// Names the node whose changes this connection writes (its own are not applied again
    /// when it follows the log).
    pub fn set_node(&mut self, node: &str) {
        self.node = node.to_string();
    }

    /// The node this connection writes changes as.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The newest change's number (0 when the log is empty).
    pub fn last_change(&mut self) -> Result<i64, RegistryError> {
        let row = self
            .engine
            .query_opt("SELECT coalesce(max(seq), 0) FROM changes", params![])?;
        row.map_or(Ok(0), |r| r.int(0))
    }

    /// Up to `limit` changes after number `seq`, in order.
    pub fn changes_after(&mut self, seq: i64, limit: usize) -> Result<Vec<Change>, RegistryError> {
        let rows = self.engine.query(
            "SELECT seq, node, kind, subject, public_key, at FROM changes WHERE seq > ?1 \
             ORDER BY seq LIMIT ?2",
            params![seq, limit.min(i64::MAX as usize) as i64],
        )?;
        rows.iter()
            .map(|r| {
                let id = r.int(3)?;
                let subject = match r.text(2)?.as_str() {
                    "peer" => Subject::Peer(id),
                    "ike_user" => Subject::IkeUser(id),
                    other => return Err(RegistryError::Corrupt(format!("change kind {other:?}"))),
                };
                let public_key = r
                    .blob_opt(4)?
                    .map(|k| {
                        <[u8; 32]>::try_from(k.as_slice())
                            .map(PublicKey)
                            .map_err(|_| RegistryError::Corrupt("a change's public key".into()))
                    })
                    .transpose()?;
                Ok(Change {
                    seq: r.int(0)?,
                    node: r.text(1)?,
                    subject,
                    public_key,
                    at: r.int(5)?.max(0) as u64,
                })
            })
            .collect()
    }
}

/// Announcements of committed changes, from a PostgreSQL registry.
pub struct ChangeListener(super::store::Listener);

impl ChangeListener {
    /// Listens at `location`; `None` for an SQLite file (one node: nothing to follow).
    pub fn open(location: &super::Location) -> Result<Option<Self>, RegistryError> {
        match location {
            super::Location::File(_) => Ok(None),
            super::Location::Postgres(url) => {
                Ok(Some(Self(super::store::Listener::open(url, CHANNEL)?)))
            }
        }
    }

    /// Waits up to `timeout` for announcements; true if any came. An error means the
    /// connection broke: open another and read the log from the last change applied.
    pub fn wait(&mut self, timeout: std::time::Duration) -> Result<bool, RegistryError> {
        self.0.wait(timeout)
    }
}
