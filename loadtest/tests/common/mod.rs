//! What the loadtest's tests share: the xgate binary they run against.

use std::path::PathBuf;

/// The workspace's xgate binary (`cargo test --workspace` builds it before any test runs).
pub fn xgate_binary() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    ["target/debug/xgate", "target/release/xgate"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.is_file())
        .expect("the xgate binary (cargo build -p xgate)")
}
