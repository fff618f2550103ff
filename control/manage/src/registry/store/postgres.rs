//! The PostgreSQL engine: one connection per `Registry` (the daemon's API serializes its
//! calls anyway), statements prepared once per connection, and every write transaction
//! begun by taking one transaction-scoped advisory lock. That lock is SQLite's single
//! writer again, across every node sharing the database: allocation reads the free
//! addresses and then claims one, and no other node can run between the two.
//!
//! A connection that broke (the server restarted, the network failed) is opened again at
//! the next call; the call that found it broken fails with a 503 and changed nothing.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::types::{FromSql, IsNull, ToSql, Type};
use postgres::{Client, NoTls, Statement};

use super::{numbered_placeholders, Row, Value};
use crate::registry::{RegistryError, BUSY_TIMEOUT};

/// The advisory lock every registry write takes (any fixed number; "xgate" in ASCII).
const WRITE_LOCK: i64 = 0x0078_6761_7465;

/// The advisory lock held while one node migrates the schema.
pub(super) const MIGRATION_LOCK: i64 = WRITE_LOCK + 1;

/// How long opening a connection may take, unless the connection string says.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection unused for longer is checked with a round trip before its next call (a
/// read found broken is also run again; a write is not, and fails with a 503).
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// How long that round trip may take. A connection whose server went away without a word
/// answers nothing (the client then waits this long), so it is short: a registry is a
/// database in the same site, a round trip of a millisecond or less.
const CHECK_WAIT: Duration = Duration::from_millis(250);

type BoxError = Box<dyn StdError + Sync + Send>;

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Value::Int(v) => v.to_sql(ty, out),
            Value::Text(v) => v.to_sql(ty, out),
            Value::Blob(v) => v.to_sql(ty, out),
            Value::Bool(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [
            Type::INT8,
            Type::INT4,
            Type::TEXT,
            Type::VARCHAR,
            Type::BYTEA,
            Type::BOOL,
        ]
        .contains(ty)
    }

    postgres::types::to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
            Type::BYTEA => Value::Blob(raw.to_vec()),
            _ => Value::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(ty: &Type) -> bool {
        [
            Type::INT8,
            Type::INT4,
            Type::INT2,
            Type::BOOL,
            Type::BYTEA,
            Type::TEXT,
            Type::VARCHAR,
            Type::NAME,
        ]
        .contains(ty)
    }
}

/// A connection to the registry's PostgreSQL database.
pub(in crate::registry) struct Postgres {
    url: String,
    client: Client,
    /// Prepared statements by their text as the registry writes it.
    prepared: HashMap<String, Statement>,
    /// When the connection was last used.
    used: Instant,
}

/// A write transaction holding the registry's advisory lock.
pub(in crate::registry) struct PgTx<'a> {
    tx: postgres::Transaction<'a>,
    prepared: &'a mut HashMap<String, Statement>,
}

/// Opens a connection with the registry's session settings: a lock waited for longer than
/// the busy timeout fails (503 at the API) rather than hanging the caller.
fn connect(url: &str) -> Result<Client, RegistryError> {
    let mut config: postgres::Config = url.parse()?;
    // A server that stops answering must not hold a caller (and the API's registry lock)
    // for minutes: bounded connects, and TCP that gives up on a silent peer.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_retries(3)
        .tcp_user_timeout(BUSY_TIMEOUT);
    let mut client = config.connect(NoTls)?;
    client.batch_execute(&format!(
        "SET lock_timeout = '{}s'; SET statement_timeout = '{}s'",
        BUSY_TIMEOUT.as_secs(),
        BUSY_TIMEOUT.as_secs() * 3
    ))?;
    Ok(client)
}

impl Postgres {
    /// Connects to `url` (`postgres://user@host/db`, or `host=/run/... dbname=...`).
    pub(in crate::registry) fn open(url: &str) -> Result<Self, RegistryError> {
        Ok(Self {
            url: url.to_string(),
            client: connect(url)?,
            prepared: HashMap::new(),
            used: Instant::now(),
        })
    }

    /// The client, connected again first if the connection broke.
    pub(in crate::registry) fn client(&mut self) -> Result<&mut Client, RegistryError> {
        // The client reads from its connection only during calls, so a server that went
        // away since the last call is noticed here, before anything begins (the call then
        // runs on a new connection instead of failing): by polling what the server sent
        // meanwhile (a shutdown says so), and after an idle spell by one round trip.
        let broken = {
            use postgres::fallible_iterator::FallibleIterator;
            self.client.notifications().iter().next().is_err()
        };
        let idle = self.used.elapsed() > IDLE_CHECK;
        if broken || self.client.is_closed() || (idle && self.client.is_valid(CHECK_WAIT).is_err())
        {
            self.reconnect()?;
        }
        self.used = Instant::now();
        Ok(&mut self.client)
    }

    /// Begins a write transaction and takes the registry's write lock.
    pub(super) fn write(&mut self) -> Result<PgTx<'_>, RegistryError> {
        self.client()?;
        let mut tx = self.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        Ok(PgTx {
            tx,
            prepared: &mut self.prepared,
        })
    }

    /// Runs `sql` outside a transaction.
    pub(super) fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, RegistryError> {
        self.client()?;
        let stmt = prepare(&mut self.client, &mut self.prepared, sql)?;
        Ok(self.client.execute(&stmt, &refs(params))?)
    }

    /// Runs `sql` outside a transaction; every row.
    pub(super) fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, RegistryError> {
        match self.query_once(sql, params) {
            // A read changes nothing: on a connection found broken it is run again once,
            // on a new one.
            Err(RegistryError::Postgres(e)) if connection_lost(&e) => {
                self.reconnect()?;
                self.query_once(sql, params)
            }
            other => other,
        }
    }

    fn query_once(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, RegistryError> {
        self.client()?;
        let stmt = prepare(&mut self.client, &mut self.prepared, sql)?;
        rows(self.client.query(&stmt, &refs(params))?)
    }

    fn reconnect(&mut self) -> Result<(), RegistryError> {
        self.client = connect(&self.url)?;
        self.prepared.clear();
        self.used = Instant::now();
        Ok(())
    }
}

impl PgTx<'_> {
    /// Runs `sql` in the transaction.
    pub(super) fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, RegistryError> {
        let stmt = prepare(&mut self.tx, self.prepared, sql)?;
        Ok(self.tx.execute(&stmt, &refs(params))?)
    }

    /// Runs `sql` in the transaction; every row.
    pub(super) fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, RegistryError> {
        let stmt = prepare(&mut self.tx, self.prepared, sql)?;
        rows(self.tx.query(&stmt, &refs(params))?)
    }

    /// Announces the commit on `channel` (delivered only if the transaction commits).
    pub(super) fn notify(&mut self, channel: &str) -> Result<(), RegistryError> {
        Ok(self.tx.batch_execute(&format!("NOTIFY {channel}"))?)
    }

    /// Commits, which also lets the write lock go.
    pub(super) fn commit(self) -> Result<(), RegistryError> {
        Ok(self.tx.commit()?)
    }
}

/// A connection that listens for announcements on one channel.
pub(in crate::registry) struct Listener {
    client: Client,
}

impl Listener {
    /// Connects to `url` and listens on `channel`.
    pub(in crate::registry) fn open(url: &str, channel: &str) -> Result<Self, RegistryError> {
        let mut client = connect(url)?;
        client.batch_execute(&format!("LISTEN {channel}"))?;
        Ok(Self { client })
    }

    /// Waits up to `timeout` for an announcement and takes any others already there; true
    /// if there was one. A broken connection is an error.
    pub(in crate::registry) fn wait(&mut self, timeout: Duration) -> Result<bool, RegistryError> {
        use postgres::fallible_iterator::FallibleIterator;
        let came = {
            let mut notifications = self.client.notifications();
            let first = notifications.timeout_iter(timeout).next()?;
            // Others already here are the same news: read it once.
            while first.is_some() && notifications.iter().next()?.is_some() {}
            first.is_some()
        };
        if !came && self.client.is_closed() {
            // The next statement reports why.
            self.client.batch_execute("")?;
        }
        Ok(came)
    }
}

/// The statement for `sql`, prepared on first use.
fn prepare(
    on: &mut impl postgres::GenericClient,
    prepared: &mut HashMap<String, Statement>,
    sql: &str,
) -> Result<Statement, RegistryError> {
    if let Some(stmt) = prepared.get(sql) {
        return Ok(stmt.clone());
    }
    let stmt = on.prepare(&numbered_placeholders(sql))?;
    prepared.insert(sql.to_string(), stmt.clone());
    Ok(stmt)
}

fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

fn rows(found: Vec<postgres::Row>) -> Result<Vec<Row>, RegistryError> {
    found
        .into_iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.try_get::<_, Value>(i))
                .collect::<Result<Vec<_>, _>>()
                .map(Row)
                .map_err(RegistryError::from)
        })
        .collect()
}

/// True when `e` says the connection is gone (closed, an I/O failure, a connection
/// exception or the server shutting down), not that a statement failed.
fn connection_lost(e: &postgres::Error) -> bool {
    let io = StdError::source(e).is_some_and(|s| s.is::<std::io::Error>());
    let code = e.code().map(SqlState::code);
    e.is_closed() || io || code.is_some_and(|c| c.starts_with("08") || c.starts_with("57P0"))
}

/// True when PostgreSQL refused a row for a UNIQUE or PRIMARY KEY rule.
pub(super) fn is_unique_violation(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// The kind of trouble a PostgreSQL error is: a full disk, or a server that is away,
/// restarting or holding a lock past the timeout (all: nothing was saved, retry later).
pub(in crate::registry) fn trouble(e: &postgres::Error) -> crate::registry::Trouble {
    use crate::registry::Trouble;
    let Some(code) = e.code() else {
        // No SQLSTATE: the connection failed or closed.
        return Trouble::Unreachable;
    };
    if *code == SqlState::DISK_FULL {
        Trouble::DiskFull
    } else if [
        SqlState::LOCK_NOT_AVAILABLE,
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::QUERY_CANCELED,
    ]
    .contains(code)
    {
        Trouble::Busy
    } else if code.code().starts_with("08") || code.code().starts_with("57P") {
        // Connection exceptions; the server shutting down or restarting.
        Trouble::Unreachable
    } else {
        Trouble::Other
    }
}
