//! Whether the registry database answers, as the API last found it. A node that cannot reach
//! its (shared) registry keeps serving its connected users from memory; status and
//! `/metrics` keep answering from what the plane publishes, and say the registry is away.

use std::sync::{Mutex, PoisonError};

use crate::registry::RegistryError;

/// The registry's health as last seen by a call.
#[derive(Debug, Default)]
pub struct RegistryHealth {
    inner: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Why the last call failed to reach the database, while it does.
    trouble: Option<String>,
    /// Peers in the registry when it last answered.
    count: u64,
}

impl RegistryHealth {
    /// Records the answer to a call that counts the peers; returns the count to show (the
    /// last one known while the database is away).
    pub fn counted(&self, answer: Result<u64, RegistryError>) -> u64 {
        let mut seen = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match answer {
            Ok(n) => {
                seen.trouble = None;
                seen.count = n;
            }
            Err(e) => seen.trouble = Some(e.to_string()),
        }
        seen.count
    }

    /// Records that the database answered.
    pub fn reached(&self) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .trouble = None;
    }

    /// Records that it did not, and why.
    pub fn unreachable(&self, e: &RegistryError) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .trouble = Some(e.to_string());
    }

    /// Why the database cannot be reached, if it cannot.
    pub fn trouble(&self) -> Option<String> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .trouble
            .clone()
    }
}

/// The warning status gives while the registry is away.
pub fn warning(trouble: &str) -> String {
    format!(
        "the registry database cannot be reached ({trouble}): connected users keep their \
         sessions; changes are refused (503) until it is back"
    )
}
