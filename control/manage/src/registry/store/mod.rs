//! The database under the registry, on either engine: SQLite (embedded, one file) or
//! PostgreSQL (one registry for several concentrators). The registry's statements are
//! written once, with `?1`-style placeholders and only SQL both engines read alike
//! (`RETURNING`, `ON CONFLICT`, `CAST`); PostgreSQL gets `$1` in their place. What differs
//! — opening, the schema's migrations, taking the write lock, reading an error — lives in
//! the two engine files.
//!
//! - `sqlite`: the embedded file (WAL, synchronous commits, IMMEDIATE transactions).
//! - `postgres`: a server (a transaction-scoped advisory lock serializes every node's writes).

mod postgres;
mod postgres_schema;
mod sqlite;

use super::RegistryError;

pub(super) use self::postgres::{trouble as postgres_trouble, Listener, Postgres};
pub(super) use self::postgres_schema::migrate as migrate_postgres;

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    /// SQL NULL.
    Null,
    /// An integer (SQLite INTEGER, PostgreSQL BIGINT).
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes (SQLite BLOB, PostgreSQL BYTEA).
    Blob(Vec<u8>),
    /// A truth value (SQLite stores 0 or 1).
    Bool(bool),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        // Unix times and counts: far below i64::MAX.
        Self::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Self::Blob(v.to_vec())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// The statement's parameters, each converted to a `Value`.
macro_rules! params {
    ($($p:expr),* $(,)?) => {
        &[$($crate::registry::store::Value::from($p)),*] as &[$crate::registry::store::Value]
    };
}
pub(super) use params;

/// One row of a result, its columns in the statement's order.
#[derive(Debug)]
pub(super) struct Row(pub(super) Vec<Value>);

impl Row {
    fn column(&self, i: usize) -> Result<&Value, RegistryError> {
        self.0
            .get(i)
            .ok_or_else(|| RegistryError::Corrupt(format!("a row without column {i}")))
    }

    fn wrong(&self, i: usize, want: &str) -> RegistryError {
        RegistryError::Corrupt(format!("column {i} holds {:?}, not {want}", self.0.get(i)))
    }

    /// Column `i` as an integer.
    pub(super) fn int(&self, i: usize) -> Result<i64, RegistryError> {
        self.int_opt(i)?.ok_or_else(|| self.wrong(i, "an integer"))
    }

    /// Column `i` as an integer or NULL.
    pub(super) fn int_opt(&self, i: usize) -> Result<Option<i64>, RegistryError> {
        match self.column(i)? {
            Value::Int(v) => Ok(Some(*v)),
            Value::Null => Ok(None),
            _ => Err(self.wrong(i, "an integer")),
        }
    }

    /// Column `i` as text.
    pub(super) fn text(&self, i: usize) -> Result<String, RegistryError> {
        match self.column(i)? {
            Value::Text(v) => Ok(v.clone()),
            _ => Err(self.wrong(i, "text")),
        }
    }

    /// Column `i` as bytes or NULL.
    pub(super) fn blob_opt(&self, i: usize) -> Result<Option<Vec<u8>>, RegistryError> {
        match self.column(i)? {
            Value::Blob(v) => Ok(Some(v.clone())),
            Value::Null => Ok(None),
            _ => Err(self.wrong(i, "bytes")),
        }
    }

    /// Column `i` as bytes.
    pub(super) fn blob(&self, i: usize) -> Result<Vec<u8>, RegistryError> {
        self.blob_opt(i)?.ok_or_else(|| self.wrong(i, "bytes"))
    }
}

/// Runs statements: a connection outside a transaction, or a transaction.
pub(super) trait Sql {
    /// Runs `sql`; returns how many rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, RegistryError>;

    /// Runs `sql`; returns every row.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, RegistryError>;

    /// Runs `sql`; returns its first row, if any.
    fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, RegistryError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

/// The connection, on whichever engine the configuration names.
pub(super) enum Engine {
    /// The embedded file.
    Sqlite(rusqlite::Connection),
    /// A PostgreSQL server.
    Postgres(Box<Postgres>),
}

/// A write transaction, holding the registry's write lock until it commits or is dropped
/// (which rolls it back).
pub(super) enum Tx<'a> {
    /// On SQLite: begun IMMEDIATE.
    Sqlite(rusqlite::Transaction<'a>),
    /// On PostgreSQL: holding the registry's advisory lock.
    Postgres(self::postgres::PgTx<'a>),
}

impl Engine {
    /// Begins a write transaction: the write lock is taken first, so two writers (two
    /// connections, or two nodes) are serialized before either reads what it will change.
    pub(super) fn write(&mut self) -> Result<Tx<'_>, RegistryError> {
        match self {
            Self::Sqlite(conn) => Ok(Tx::Sqlite(sqlite::write(conn)?)),
            Self::Postgres(pg) => Ok(Tx::Postgres(pg.write()?)),
        }
    }
}

/// True when a failed statement broke a uniqueness rule, on either engine.
pub(super) fn is_unique_violation(e: &RegistryError) -> bool {
    match e {
        RegistryError::Db(e) => sqlite::is_unique_violation(e),
        RegistryError::Postgres(e) => self::postgres::is_unique_violation(e),
        _ => false,
    }
}

impl Tx<'_> {
    /// Has the commit announced on `channel` to the database's listeners (PostgreSQL's
    /// NOTIFY, sent only if the transaction commits; nothing on SQLite, which has no other
    /// node to tell).
    pub(super) fn announce(&mut self, channel: &str) -> Result<(), RegistryError> {
        match self {
            Self::Sqlite(_) => Ok(()),
            Self::Postgres(tx) => tx.notify(channel),
        }
    }

    /// Makes the transaction's changes lasting.
    pub(super) fn commit(self) -> Result<(), RegistryError> {
        match self {
            Self::Sqlite(tx) => Ok(tx.commit()?),
            Self::Postgres(tx) => tx.commit(),
        }
    }
}

impl Sql for Engine {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, RegistryError> {
        match self {
            Self::Sqlite(conn) => sqlite::execute(conn, sql, params),
            Self::Postgres(pg) => pg.execute(sql, params),
        }
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, RegistryError> {
        match self {
            Self::Sqlite(conn) => sqlite::query(conn, sql, params),
            Self::Postgres(pg) => pg.query(sql, params),
        }
    }
}

impl Sql for Tx<'_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, RegistryError> {
        match self {
            Self::Sqlite(tx) => sqlite::execute(tx, sql, params),
            Self::Postgres(tx) => tx.execute(sql, params),
        }
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, RegistryError> {
        match self {
            Self::Sqlite(tx) => sqlite::query(tx, sql, params),
            Self::Postgres(tx) => tx.query(sql, params),
        }
    }
}

/// `sql` with PostgreSQL's `$N` for each `?N` placeholder (the registry's statements hold
/// no `?` inside a quoted literal).
pub(super) fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_renumbered_for_postgres() {
        assert_eq!(
            numbered_placeholders("SELECT a FROM t WHERE b = ?1 AND (?2 IS NULL OR c = ?12)"),
            "SELECT a FROM t WHERE b = $1 AND ($2 IS NULL OR c = $12)"
        );
        assert_eq!(numbered_placeholders("a ? b"), "a ? b");
    }

    #[test]
    fn rows_say_which_column_is_wrong() {
        let row = Row(vec![Value::Int(3), Value::Null, Value::Text("x".into())]);
        assert_eq!(row.int(0).expect("int"), 3);
        assert_eq!(row.int_opt(1).expect("null"), None);
        assert!(row.int(1).is_err());
        let e = row.int(2).expect_err("text is no integer").to_string();
        assert!(e.contains("column 2"), "{e}");
        assert!(row.text(7).is_err(), "no such column");
    }
}
