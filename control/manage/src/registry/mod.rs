//! The peer registry: every user's key, name, group and tunnel addresses, in an embedded
//! SQLite database (WAL, synchronous commits) or in PostgreSQL (several concentrators, one
//! registry), so a registration that was acknowledged survives a crash or a power cut. One
//! `Registry` is one connection; several may share a database (its writes are serialized).
//!
//! - `store`: the two engines under one way of running statements.
//! - `schema`: SQLite's versioned migrations (PostgreSQL's are in `store`).
//! - `ipam`: address pools and allocation.
//! - `records`: creating, reading, changing and removing peers.
//! - `ike_users`: IKEv2 users (identity, key of their own, group, addresses).
//! - `changes`: the change log other nodes follow.
//! - `cluster`: the cluster's key and its nodes' heartbeats.
//! - `sessions`: where each user's session was last seen, for a node taking over.
//! - `audit`: who changed what, when.

mod audit;
mod changes;
mod cluster;
mod ike_users;
mod ipam;
mod records;
mod routes;
mod schema;
mod sessions;
mod store;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use plane::update::PeerUpdate;
use proto::{PresharedKey, PublicKey};
use rusqlite::Connection;

pub use audit::AuditEntry;
pub use changes::{Change, ChangeListener, Subject, CHANNEL};
pub use cluster::{Heartbeat, NodeRecord, SILENT_AFTER_MS};
pub use ike_users::{IkeUserAuth, IkeUserRecord, NewIkeUser, MIN_PSK_LEN};
pub use ipam::Pool;
pub use records::{ListFilter, NewPeer, PeerChange};
pub use sessions::{unix_ms, SeenSession, INDICES_PER_LOOKUP, RECENT_MS};

/// What went wrong in the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The database itself failed (I/O, full disk, locked past the timeout).
    #[error("registry database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The PostgreSQL registry failed (connection, full disk, lock timeout, a statement).
    #[error("registry database (PostgreSQL): {0}")]
    Postgres(#[from] postgres::Error),
    /// Its file could not be created or closed to other users.
    #[error("registry file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// A peer with this public key exists already.
    #[error("a peer with public key {0} exists already")]
    DuplicateKey(String),
    /// No peer with this id.
    #[error("no peer with id {0}")]
    NoSuchPeer(i64),
    /// Another peer has this name already (names are unique per interface).
    #[error(
        "a peer named {name:?} exists already (id {holder}); choose another name, or remove \
         peer {holder} first (xgate peer rm {holder})"
    )]
    DuplicateName {
        /// The name asked for.
        name: String,
        /// The peer holding it.
        holder: i64,
    },
    /// An IKEv2 user has this name or identity already.
    #[error(
        "an IKEv2 user with {what} exists already (id {holder}); choose another, or remove \
         user {holder} first (xgate ike user rm {holder})"
    )]
    DuplicateIkeUser {
        /// What is taken.
        what: String,
        /// The user holding it.
        holder: i64,
    },
    /// The pre-shared key is another IKEv2 user's.
    #[error(
        "that pre-shared key is another user's (id {holder}); each user needs a key of their \
         own (leave the key out and one is made)"
    )]
    SharedPsk {
        /// The user holding it.
        holder: i64,
    },
    /// A pre-shared key too short to resist an offline guess.
    #[error(
        "a pre-shared key of {0} bytes; use at least 16 (leave the key out and one of 32 random \
         characters is made)"
    )]
    WeakPsk(usize),
    /// No IKEv2 user with this id.
    #[error("no IKEv2 user with id {0}")]
    NoSuchIkeUser(i64),
    /// No peer has this name.
    #[error("no peer named {0:?}")]
    NoSuchName(String),
    /// Several peers have this name (made before names were unique): use an id.
    #[error("several peers are named {name:?} (ids {ids:?}); use an id, or rename all but one")]
    AmbiguousName {
        /// The name.
        name: String,
        /// The peers holding it.
        ids: Vec<i64>,
    },
    /// Every address of a pool's prefix is in use or resting after release.
    #[error("address pool {pool:?} is exhausted ({prefix} has no free address); widen the prefix or remove peers")]
    PoolExhausted {
        /// Pool name.
        pool: String,
        /// The prefix that ran out.
        prefix: IpNet,
    },
    /// A prefix routed to a peer overlaps a pool or another peer's prefix.
    #[error("allowed IP {prefix} overlaps {other}; route a prefix no pool covers and no other peer holds")]
    RouteOverlap {
        /// The prefix asked for.
        prefix: IpNet,
        /// What it overlaps.
        other: String,
    },
    /// The shared registry belongs to a cluster with another WireGuard key.
    #[error(
        "this registry belongs to a cluster whose WireGuard public key is {cluster}, and this \
         node's is {ours}: give every node the cluster's private key file (it is never stored \
         in the database), or point registry.url at this node's own cluster's database"
    )]
    OtherCluster {
        /// The cluster's public key.
        cluster: String,
        /// This node's.
        ours: String,
    },
    /// A group names a pool that is not configured, and there is no "default" pool.
    #[error("no address pool {0:?} (and no \"default\" pool); add one to the configuration")]
    NoPool(String),
    /// The database was written by a newer xgate.
    #[error("the registry database is at schema version {found}, newer than this xgate's {known}: upgrade xgate")]
    TooNew {
        /// The database's version.
        found: usize,
        /// This code's version.
        known: usize,
    },
    /// A schema migration would break the database; nothing was changed.
    #[error("the registry database cannot be upgraded: {0}; it is left as it was")]
    Migration(String),
    /// A stored value this code cannot read back.
    #[error("registry database holds an unreadable value: {0}")]
    Corrupt(String),
    /// The file is not a readable SQLite database, or fails its integrity check.
    #[error(
        "registry file {path} is damaged or not a registry ({why}); restore it from a backup, \
         or move it aside (mv {path} {path}.damaged) to start with an empty registry"
    )]
    Damaged {
        /// The file.
        path: String,
        /// What SQLite said.
        why: String,
    },
}

/// What kind of trouble a registry error is, for the API's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// The disk is full: nothing was saved; it works again once there is space.
    DiskFull,
    /// Another process held the database past the busy timeout: nothing was saved.
    Busy,
    /// The database server cannot be reached: nothing was saved.
    Unreachable,
    /// Anything else.
    Other,
}

impl RegistryError {
    /// What kind of trouble this is.
    pub fn trouble(&self) -> Trouble {
        use rusqlite::ErrorCode;
        let code = match self {
            Self::Db(rusqlite::Error::SqliteFailure(e, _)) => e.code,
            Self::Postgres(e) => return store::postgres_trouble(e),
            _ => return Trouble::Other,
        };
        match code {
            ErrorCode::DiskFull => Trouble::DiskFull,
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Trouble::Busy,
            _ => Trouble::Other,
        }
    }
}

/// A peer as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    /// Unique id, assigned at creation.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Group (owner), which picks the address pool and client-config policy.
    pub group: String,
    /// The peer's public key.
    pub public_key: PublicKey,
    /// Optional preshared key.
    pub preshared_key: Option<[u8; 32]>,
    /// Tunnel addresses assigned from the pool (one per family the pool serves).
    pub addresses: Vec<IpAddr>,
    /// Further prefixes routed to the peer (a site behind it).
    pub allowed_ips: Vec<IpNet>,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// Last change, Unix seconds.
    pub updated_at: u64,
    /// Latest completed handshake, Unix seconds.
    pub last_handshake: Option<u64>,
    /// When it was revoked (a revoked peer keeps its row but no addresses and no session).
    pub revoked_at: Option<u64>,
    /// When it is revoked by itself, Unix seconds (none: never).
    pub expires_at: Option<u64>,
}

impl PeerRecord {
    /// Everything routed to the peer: its addresses as host prefixes, then `allowed_ips`.
    pub fn routes(&self) -> Vec<IpNet> {
        self.addresses
            .iter()
            .map(|a| IpNet::from(*a))
            .chain(self.allowed_ips.iter().copied())
            .collect()
    }

    /// What the running interface must know of this peer.
    pub fn to_update(&self) -> PeerUpdate {
        let mut u = PeerUpdate::new(self.public_key);
        u.preshared_key = Some(self.preshared_key.map(PresharedKey));
        u.replace_allowed_ips = true;
        u.allowed_ips = self.routes();
        u
    }
}

/// Where the registry's database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite file on this machine.
    File(PathBuf),
    /// A PostgreSQL database (a `postgres://` URL or `key=value` connection string).
    Postgres(String),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => f.write_str(&without_password(url)),
        }
    }
}

/// A connection string with any password replaced by `***`, for messages and logs.
pub fn without_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        // postgres://user:secret@host/db (the last '@' ends the credentials: a password
        // may hold one), and ?password=secret.
        let masked = match rest.rsplit_once('@') {
            Some((credentials, host)) => match credentials.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => url.to_string(),
            },
            None => url.to_string(),
        };
        return match masked.split_once("password=") {
            Some((before, after)) => {
                let rest = after.find('&').map_or("", |i| &after[i..]);
                format!("{before}password=***{rest}")
            }
            None => masked,
        };
    }
    // key=value form: password=secret
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One connection to the registry database.
pub struct Registry {
    engine: store::Engine,
    pools: Vec<Pool>,
    /// The node named in the change log's rows this connection writes.
    node: String,
}

impl Registry {
    /// Opens the registry at `location` (creating an SQLite file if needed) and brings its
    /// schema up to date.
    pub fn open_at(location: &Location, pools: Vec<Pool>) -> Result<Self, RegistryError> {
        match location {
            Location::File(path) => Self::open(path, pools),
            Location::Postgres(url) => {
                let mut pg = store::Postgres::open(url)?;
                store::migrate_postgres(pg.client()?)?;
                Ok(Self {
                    engine: store::Engine::Postgres(Box::new(pg)),
                    pools,
                    node: String::new(),
                })
            }
        }
    }

    /// Opens (creating if needed) the SQLite database at `path` and brings its schema up to
    /// date.
    pub fn open(path: &Path, pools: Vec<Pool>) -> Result<Self, RegistryError> {
        close_to_others(path)?;
        let mut conn = Connection::open(path)?;
        // WAL lets readers (listing, status) run beside the writer; FULL syncs every
        // commit, so an acknowledged change survives a power cut, not only a crash.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| damaged(path, e))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        check_whole(&conn, path)?;
        schema::migrate(&mut conn)?;
        Ok(Self {
            engine: store::Engine::Sqlite(conn),
            pools,
            node: String::new(),
        })
    }

    /// The configured pools.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// The pool a group's peers take addresses from, if any serves it.
    pub fn pool_of_group(&self, group: &str) -> Option<&Pool> {
        self.pool_for(group).ok()
    }

    /// The names of the configured pools.
    pub fn pool_names(&self) -> Vec<String> {
        self.pools.iter().map(|p| p.name.clone()).collect()
    }

    /// The pool a group's peers take addresses from.
    fn pool_for(&self, group: &str) -> Result<&Pool, RegistryError> {
        pool_of(&self.pools, group)
    }
}

/// The pool among `pools` that serves `group`: its own, else "default".
fn pool_of<'a>(pools: &'a [Pool], group: &str) -> Result<&'a Pool, RegistryError> {
    pools
        .iter()
        .find(|p| p.name == group)
        .or_else(|| pools.iter().find(|p| p.name == "default"))
        .ok_or_else(|| RegistryError::NoPool(group.to_string()))
}

/// How long a write waits for another process's lock before it fails (503 at the API).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// `e` as a damaged file when SQLite says the file is not a database or is corrupt.
fn damaged(path: &Path, e: rusqlite::Error) -> RegistryError {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) =>
        {
            RegistryError::Damaged {
                path: path.display().to_string(),
                why: e.to_string(),
            }
        }
        _ => RegistryError::Db(e),
    }
}

/// Refuses a database whose pages do not check out (`PRAGMA quick_check`: structure, not
/// every index entry; milliseconds for 100,000 peers), rather than serving from it.
fn check_whole(conn: &Connection, path: &Path) -> Result<(), RegistryError> {
    let verdict: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| damaged(path, e))?;
    if verdict == "ok" {
        Ok(())
    } else {
        Err(RegistryError::Damaged {
            path: path.display().to_string(),
            why: format!("integrity check: {verdict}"),
        })
    }
}

/// Makes the database file (created empty if missing) and any WAL and shared-memory files
/// beside it readable by their owner only: they hold preshared keys. SQLite creates the
/// WAL and shared-memory files later with the database file's mode, so they follow.
fn close_to_others(path: &Path) -> Result<(), RegistryError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |p: &Path| {
        let path = p.display().to_string();
        move |source| RegistryError::File { path, source }
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(fail(path))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        if file.exists() {
            let private = std::fs::Permissions::from_mode(0o600);
            std::fs::set_permissions(file, private).map_err(fail(file))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[macro_use]
mod test_support;
#[cfg(test)]
mod audit_tests;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;
