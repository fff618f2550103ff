//! The registry's schema as a list of migrations. The database records how many it has
//! applied (`PRAGMA user_version`); opening applies the rest in one transaction each, so a
//! database is always at a version this code knows, never half-way.

use rusqlite::{Connection, OptionalExtension};

use super::RegistryError;

/// Each entry moves the schema one version up. Never edit an entry once released: add one.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: peers, their addresses, and the address pools' cursors.
    // AUTOINCREMENT: an id is never given twice, so a script holding a deleted peer's id
    // cannot reach a newer peer with it.
    "CREATE TABLE peers (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        name           TEXT NOT NULL,
        grp            TEXT NOT NULL DEFAULT 'default',
        public_key     BLOB NOT NULL UNIQUE CHECK (length(public_key) = 32),
        preshared_key  BLOB CHECK (preshared_key IS NULL OR length(preshared_key) = 32),
        allowed_ips    TEXT NOT NULL DEFAULT '',
        created_at     INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL,
        last_handshake INTEGER,
        revoked_at     INTEGER
    );
    CREATE INDEX peers_by_group ON peers (grp, id);
    CREATE TABLE addresses (
        address     TEXT PRIMARY KEY,
        pool        TEXT NOT NULL,
        peer_id     INTEGER REFERENCES peers (id) ON DELETE SET NULL,
        released_at INTEGER
    );
    CREATE INDEX addresses_by_peer ON addresses (peer_id);
    CREATE INDEX addresses_free ON addresses (pool, released_at) WHERE peer_id IS NULL;
    CREATE TABLE pool_cursors (
        pool TEXT PRIMARY KEY,
        next INTEGER NOT NULL
    );",
    // 2: peers found by name (names are unique per interface from here on; a registry made
    // earlier may hold duplicates, which are left alone and found only by id).
    "CREATE INDEX peers_by_name ON peers (name);",
    // 3: IKEv2 users: an identity and a key of their own each; their addresses in the same
    // table as the peers', so no address is held twice whatever the protocol.
    "CREATE TABLE ike_users (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        name        TEXT NOT NULL UNIQUE,
        grp         TEXT NOT NULL DEFAULT 'default',
        identity    TEXT NOT NULL UNIQUE,
        psk         BLOB NOT NULL CHECK (length(psk) >= 16),
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        revoked_at  INTEGER
    );
    ALTER TABLE addresses ADD COLUMN ike_user_id INTEGER
        REFERENCES ike_users (id) ON DELETE SET NULL;
    CREATE INDEX addresses_by_ike_user ON addresses (ike_user_id);
    DROP INDEX addresses_free;
    CREATE INDEX addresses_free ON addresses (pool, released_at)
        WHERE peer_id IS NULL AND ike_user_id IS NULL;
    CREATE TRIGGER addresses_one_holder_insert BEFORE INSERT ON addresses
        WHEN NEW.peer_id IS NOT NULL AND NEW.ike_user_id IS NOT NULL
        BEGIN SELECT RAISE(ABORT, 'an address has one holder'); END;
    CREATE TRIGGER addresses_one_holder_update BEFORE UPDATE ON addresses
        WHEN NEW.peer_id IS NOT NULL AND NEW.ike_user_id IS NOT NULL
        BEGIN SELECT RAISE(ABORT, 'an address has one holder'); END;",
    // 4: IKEv2 users authenticate by a key of their own or by a certificate: `psk` is NULL
    // exactly for the latter. SQLite changes a column's constraint only by rebuilding the
    // table (its documented procedure; `migrate` holds foreign keys off meanwhile, so the
    // addresses keep their holders).
    "CREATE TABLE ike_users_v4 (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        name        TEXT NOT NULL UNIQUE,
        grp         TEXT NOT NULL DEFAULT 'default',
        identity    TEXT NOT NULL UNIQUE,
        auth        TEXT NOT NULL DEFAULT 'psk' CHECK (auth IN ('psk', 'certificate')),
        psk         BLOB CHECK (psk IS NULL OR length(psk) >= 16),
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        revoked_at  INTEGER,
        CHECK ((auth = 'psk') = (psk IS NOT NULL))
    );
    INSERT INTO ike_users_v4 (id, name, grp, identity, auth, psk, created_at, updated_at,
                              revoked_at)
        SELECT id, name, grp, identity, 'psk', psk, created_at, updated_at, revoked_at
        FROM ike_users;
    -- The id counter carries over, so a deleted user's id is never given again.
    UPDATE sqlite_sequence SET seq = max(seq, (SELECT seq FROM sqlite_sequence
                                               WHERE name = 'ike_users'))
        WHERE name = 'ike_users_v4'
          AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'ike_users');
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'ike_users_v4', seq FROM sqlite_sequence WHERE name = 'ike_users'
          AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'ike_users_v4');
    DROP TABLE ike_users;
    ALTER TABLE ike_users_v4 RENAME TO ike_users;",
    // 5: IKEv2 users may also log in with a password (EAP-MSCHAPv2): only its NT hash is
    // kept (MSCHAPv2 needs it, and it is password-equivalent), set exactly for them. The
    // table is rebuilt as in 4 to widen `auth`'s constraint.
    "CREATE TABLE ike_users_v5 (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        name        TEXT NOT NULL UNIQUE,
        grp         TEXT NOT NULL DEFAULT 'default',
        identity    TEXT NOT NULL UNIQUE,
        auth        TEXT NOT NULL DEFAULT 'psk' CHECK (auth IN ('psk', 'certificate', 'eap')),
        psk         BLOB CHECK (psk IS NULL OR length(psk) >= 16),
        nt_hash     BLOB CHECK (nt_hash IS NULL OR length(nt_hash) = 16),
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        revoked_at  INTEGER,
        CHECK ((auth = 'psk') = (psk IS NOT NULL)),
        CHECK ((auth = 'eap') = (nt_hash IS NOT NULL))
    );
    INSERT INTO ike_users_v5 (id, name, grp, identity, auth, psk, created_at, updated_at,
                              revoked_at)
        SELECT id, name, grp, identity, auth, psk, created_at, updated_at, revoked_at
        FROM ike_users;
    UPDATE sqlite_sequence SET seq = max(seq, (SELECT seq FROM sqlite_sequence
                                               WHERE name = 'ike_users'))
        WHERE name = 'ike_users_v5'
          AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'ike_users');
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'ike_users_v5', seq FROM sqlite_sequence WHERE name = 'ike_users'
          AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'ike_users_v5');
    DROP TABLE ike_users;
    ALTER TABLE ike_users_v5 RENAME TO ike_users;",
    // 6: the change log: one row per change to a peer or an IKEv2 user, in commit order,
    // naming the node that made it; other nodes sharing the database apply what they did
    // not make themselves (PostgreSQL; an SQLite file has one node, and keeps the same log).
    "CREATE TABLE changes (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        node        TEXT NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('peer', 'ike_user')),
        subject     INTEGER NOT NULL,
        public_key  BLOB,
        at          INTEGER NOT NULL
    );",
    // 7: the cluster's identity (its WireGuard public key; the private key is never stored)
    // and its nodes' heartbeats (milliseconds: a silent node is noticed within seconds).
    "CREATE TABLE cluster (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        public_key  BLOB NOT NULL CHECK (length(public_key) = 32),
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE nodes (
        node          TEXT PRIMARY KEY,
        started_ms    INTEGER NOT NULL,
        heartbeat_ms  INTEGER NOT NULL,
        peers         INTEGER NOT NULL DEFAULT 0,
        sessions      INTEGER NOT NULL DEFAULT 0,
        handshakes    INTEGER NOT NULL DEFAULT 0,
        handshakes_per_s INTEGER NOT NULL DEFAULT 0
    );",
    // 8: where each user's session was last seen: its endpoint and the node serving it, so
    // a node taking over a failed one's users can reach them at once.
    "CREATE TABLE sessions (
        public_key  BLOB PRIMARY KEY CHECK (length(public_key) = 32),
        node        TEXT NOT NULL,
        endpoint    TEXT NOT NULL,
        seen_ms     INTEGER NOT NULL
    );
    CREATE INDEX sessions_by_node ON sessions (node, seen_ms);",
    // 9: each session's index on its node: a transport message naming it at another node
    // tells that node whose user it is.
    "ALTER TABLE sessions ADD COLUMN receiver_index INTEGER;
    CREATE INDEX sessions_by_index ON sessions (receiver_index);",
    // 10: the audit log: who changed what, when (API calls and the web UI's forms).
    "CREATE TABLE audit (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms   INTEGER NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        detail  TEXT NOT NULL DEFAULT ''
    );",
    // 11: a peer's expiry (Unix seconds): revoked when it passes.
    "ALTER TABLE peers ADD COLUMN expires_at INTEGER;",
    // 12: the expiry watch (every node, every 5 s) reads only the peers that expire.
    "CREATE INDEX peers_by_expiry ON peers (expires_at) WHERE expires_at IS NOT NULL;",
];

/// The schema version this code writes.
pub const VERSION: usize = MIGRATIONS.len();

/// Brings `conn` up to `VERSION`; refuses a database written by a newer xgate.
pub fn migrate(conn: &mut Connection) -> Result<(), RegistryError> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > VERSION {
        return Err(RegistryError::TooNew {
            found: current,
            known: VERSION,
        });
    }
    if current == VERSION {
        return Ok(());
    }
    // A table rebuilt by a migration must not take its rows' references with it: foreign
    // keys are off while migrating (the pragma is ignored inside a transaction), and checked
    // whole afterwards.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let migrated = (|| -> Result<(), RegistryError> {
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            let broken: Option<String> = tx
                .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
                .optional()?;
            if let Some(table) = broken {
                return Err(RegistryError::Migration(format!(
                    "migration {} leaves a dangling reference in {table}",
                    i + 1
                )));
            }
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(())
    })();
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrated
}
