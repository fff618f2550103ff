//! What the registry's tests share: a fresh database on either engine, and the peers and
//! pools they make.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use proto::PublicKey;

use super::{Location, NewPeer, Pool, Registry};

/// A fresh database: an SQLite file (removed, with its WAL files, when the guard drops), or
/// a database of its own on the test binary's throwaway PostgreSQL server.
pub(super) enum TempDb {
    Sqlite(PathBuf),
    Postgres(String),
}

/// Runs each named test once per engine (`NAME::sqlite`, `NAME::postgres`): the test is a
/// function taking its `TempDb`.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            #[test]
            fn sqlite() {
                super::$name(super::TempDb::new(stringify!($name)));
            }

            #[test]
            fn postgres() {
                super::$name(super::TempDb::postgres(stringify!($name)));
            }
        })*
    };
}

impl TempDb {
    /// A database of its own on the shared PostgreSQL server.
    pub(super) fn postgres(tag: &str) -> Self {
        let server = testbed::postgres::TempPostgres::shared().expect("PostgreSQL");
        let tag: String = tag.chars().take(40).collect();
        Self::Postgres(server.database(&tag).expect("a database"))
    }

    pub(super) fn location(&self) -> Location {
        match self {
            Self::Sqlite(path) => Location::File(path.clone()),
            Self::Postgres(url) => Location::Postgres(url.clone()),
        }
    }

    /// The SQLite file (tests of SQLite's own migrations).
    pub(super) fn path(&self) -> &PathBuf {
        match self {
            Self::Sqlite(path) => path,
            Self::Postgres(_) => panic!("an SQLite-only test on PostgreSQL"),
        }
    }

    pub(super) fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join("xgate-registry-tests");
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(format!(
            "{tag}-{}-{}.db",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let db = Self::Sqlite(path);
        db.remove();
        db
    }

    fn remove(&self) {
        if let Self::Sqlite(path) = self {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.remove();
    }
}

pub(super) const HOLD: u64 = 3600;

pub(super) fn pool(v4: &str, v6: Option<&str>) -> Pool {
    Pool {
        name: "default".into(),
        v4: Some(v4.parse().expect("v4 prefix")),
        v6: v6.map(|p| p.parse().expect("v6 prefix")),
        reserved: vec![
            "10.77.0.1".parse().expect("ip"),
            "fd77::1".parse().expect("ip"),
        ],
        hold_secs: HOLD,
    }
}

pub(super) fn open(db: &TempDb, pools: Vec<Pool>) -> Registry {
    Registry::open_at(&db.location(), pools).expect("open registry")
}

pub(super) fn new_peer(n: u8, group: &str) -> NewPeer {
    let mut key = [0u8; 32];
    key[0] = n;
    key[31] = 0x42;
    NewPeer {
        name: format!("user-{n}"),
        group: group.into(),
        public_key: PublicKey(key),
        preshared_key: n.is_multiple_of(2).then_some([n; 32]),
        allowed_ips: if n == 3 {
            vec!["192.168.30.0/24".parse().expect("prefix")]
        } else {
            Vec::new()
        },
    }
}

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}
