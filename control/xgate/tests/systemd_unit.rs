//! The shipped systemd unit (`packaging/systemd/xgate@.service`) passes `systemd-analyze
//! verify`, restarts xgate on failure, and starts it with arguments xgate accepts.

use std::path::Path;
use std::process::Command;

const UNIT: &str = include_str!("../../../packaging/systemd/xgate@.service");

#[test]
fn the_unit_verifies_and_its_command_line_is_one_xgate_accepts() {
    let bin = env!("CARGO_BIN_EXE_xgate");
    // The unit names the installed binary; verify it against the one just built.
    let dir = std::env::temp_dir().join(format!("xgate-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let unit = dir.join("xgate@.service");
    std::fs::write(&unit, UNIT.replace("/usr/local/bin/xgate", bin)).expect("unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze installed (apt install systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    assert!(UNIT.contains("\nRestart=on-failure\n"));

    // ExecStart's arguments parse: the failure is the missing config, not a usage error.
    let exec = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/xgate"));
    let args: Vec<String> = words
        .map(|w| w.replace("/etc/xgate/%i.toml", "/nonexistent/xgate0.toml"))
        .collect();
    let out = Command::new(bin).args(&args).output().expect("xgate runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("/nonexistent/xgate0.toml") && !stderr.contains("Usage:"),
        "{stderr}"
    );
    assert!(!Path::new("/nonexistent").exists());
}
