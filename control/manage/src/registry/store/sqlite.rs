//! The SQLite engine: statements through rusqlite's cache of prepared statements, and the
//! write lock as an IMMEDIATE transaction.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::{Row, Value};
use crate::registry::RegistryError;

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Blob(v) => ValueRef::Blob(v),
            Value::Bool(v) => ValueRef::Integer(i64::from(*v)),
        }))
    }
}

/// A column as read.
fn value(v: ValueRef<'_>) -> Result<Value, RegistryError> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Text(t) => Value::Text(
            std::str::from_utf8(t)
                .map_err(|_| RegistryError::Corrupt("text that is not UTF-8".into()))?
                .to_string(),
        ),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        ValueRef::Real(r) => return Err(RegistryError::Corrupt(format!("a real number {r}"))),
    })
}

/// Begins an IMMEDIATE transaction: SQLite's write lock is taken at once (waiting up to the
/// busy timeout), not at the first write.
pub(super) fn write(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>, RegistryError> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

/// Runs `sql` on `conn` (a connection or, through deref, a transaction).
pub(super) fn execute(
    conn: &Connection,
    sql: &str,
    params: &[Value],
) -> Result<u64, RegistryError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let n = stmt.execute(rusqlite::params_from_iter(params))?;
    Ok(n as u64)
}

/// Runs `sql` on `conn`; every row.
pub(super) fn query(
    conn: &Connection,
    sql: &str,
    params: &[Value],
) -> Result<Vec<Row>, RegistryError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let columns = stmt.column_count();
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let values = (0..columns)
            .map(|i| value(row.get_ref(i)?))
            .collect::<Result<Vec<_>, RegistryError>>()?;
        out.push(Row(values));
    }
    Ok(out)
}

/// True when SQLite refused a row for a UNIQUE or PRIMARY KEY rule.
pub(super) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}
