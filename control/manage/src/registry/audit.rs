//! The audit log: one row per change an operator made (who, what, when), written after the
//! change is committed and applied, kept in the registry so every node of a cluster shows
//! the same log.

use super::store::{params, Sql};
use super::{Registry, RegistryError};

/// Longest actor, action or detail kept (a longer one is cut at a character boundary).
pub(super) const MAX_TEXT: usize = 512;

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    /// Its place in the log (increasing).
    pub id: i64,
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// Who: the token's label (or the start of its hash), and how ("api" or "web").
    pub actor: String,
    /// What was asked: the method and path, or the form's action.
    pub action: String,
    /// What it did, in words ("" when the action says it all).
    pub detail: String,
}

/// `text` cut to at most `MAX_TEXT` bytes.
fn bounded(text: &str) -> &str {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Registry {
    /// Appends an entry made at `at_ms` (Unix milliseconds).
    pub fn audit(
        &mut self,
        at_ms: u64,
        actor: &str,
        action: &str,
        detail: &str,
    ) -> Result<(), RegistryError> {
        self.engine.execute(
            "INSERT INTO audit (at_ms, actor, action, detail) VALUES (?1, ?2, ?3, ?4)",
            params![at_ms, bounded(actor), bounded(action), bounded(detail)],
        )?;
        Ok(())
    }

    /// Up to `limit` entries older than entry `before` (all when `None`), newest first.
    pub fn audit_log(
        &mut self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, RegistryError> {
        let rows = self.engine.query(
            "SELECT id, at_ms, actor, action, detail FROM audit \
             WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
            params![
                before.unwrap_or(i64::MAX),
                limit.min(i64::MAX as usize) as i64
            ],
        )?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.int(0)?,
                    at_ms: r.int(1)?.max(0) as u64,
                    actor: r.text(2)?,
                    action: r.text(3)?,
                    detail: r.text(4)?,
                })
            })
            .collect()
    }
}
