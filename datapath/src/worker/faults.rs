//! Test-only fault injection, compiled into debug builds only (release binaries have none):
//! with `XGATE_TEST_FAULT_FILE` naming a file, worker N panics when asked for its state while
//! that file holds `panic-worker-N`. Tests use it to check that a dead worker stops the
//! daemon rather than leaving it up without the worker.

use std::sync::OnceLock;

/// The variable naming the trigger file.
pub const FAULT_FILE_VAR: &str = "XGATE_TEST_FAULT_FILE";

/// Panics if the trigger file asks worker `id` to.
pub(super) fn on_snapshot(id: usize) {
    static FILE: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    let Some(path) = FILE.get_or_init(|| std::env::var_os(FAULT_FILE_VAR).map(Into::into)) else {
        return;
    };
    let asked = std::fs::read_to_string(path).unwrap_or_default();
    if asked.trim() == format!("panic-worker-{id}") {
        panic!("test fault: worker {id} panics as {} asked", path.display());
    }
}
