//! What the loadtest's tests share: how a run against the workspace's xgate is set up.

use std::path::PathBuf;

use loadtest::run::RunOptions;
use loadtest::scenario::Scenario;
use loadtest::target::TargetKind;

/// The workspace's xgate binary (`cargo test --workspace` builds it before any test runs).
fn xgate_binary() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    ["target/debug/xgate", "target/release/xgate"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.is_file())
        .expect("the xgate binary (cargo build -p xgate)")
}

/// A run of built-in `scenario` against xgate pinned to CPU 0, one load thread, names
/// made unique by `tag` and this process.
pub fn options(scenario: &str, tag: &str) -> RunOptions {
    RunOptions {
        scenario: Scenario::load(scenario).expect("built-in scenario"),
        target: TargetKind::Xgate,
        xgate: xgate_binary(),
        server_cpus: vec![0],
        load_cpus: Vec::new(),
        load_threads: 1,
        progress: false,
        tag: format!("{tag}{}", std::process::id()),
    }
}
