//! The key commands are interchangeable with `wg genkey`/`wg pubkey`, and `xgate init` writes
//! a private (0600) config that `xgate up` accepts, without overwriting an existing one.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

fn xgate(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xgate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xgate runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

fn wg_pubkey(private: &str) -> String {
    let mut child = Command::new("wg")
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("wg installed (apt install wireguard-tools)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(private.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn keys_are_interchangeable_with_wg() {
    let (ok, private, _) = xgate(&["genkey"], None);
    assert!(ok && private.len() == 44, "genkey printed {private:?}");
    let (ok, public, _) = xgate(&["pubkey"], Some(&format!("{private}\n")));
    assert!(ok);
    assert_eq!(
        public,
        wg_pubkey(&private),
        "xgate pubkey disagrees with wg pubkey"
    );
    let wg_private = String::from_utf8_lossy(
        &Command::new("wg")
            .arg("genkey")
            .output()
            .expect("wg")
            .stdout,
    )
    .trim()
    .to_string();
    let (_, from_wg, _) = xgate(&["pubkey"], Some(&wg_private));
    assert_eq!(from_wg, wg_pubkey(&wg_private));
    let (ok, _, err) = xgate(&["pubkey"], Some("not a key"));
    assert!(!ok && err.contains("private key"), "{err}");
    let (ok, psk, _) = xgate(&["genpsk"], None);
    assert!(ok && psk.len() == 44);
}

#[test]
fn init_writes_a_private_config_once() {
    let dir = std::env::temp_dir().join("xgate-tests").join("init-cli");
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("xgate.toml");
    let p = path.to_str().expect("path");
    let (ok, _, err) = xgate(&["init", p], None);
    assert!(ok, "{err}");
    let mode = std::fs::metadata(&path)
        .expect("written")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "config holds a private key");
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains("private_key = \"") && text.contains("listen_port = 51820"));
    let (ok, _, err) = xgate(&["init", p], None);
    assert!(!ok && err.contains("--force"), "must not overwrite: {err}");
    let (ok, _, err) = xgate(&["init", "--force", p], None);
    assert!(ok, "{err}");
    assert_ne!(
        std::fs::read_to_string(&path).expect("read"),
        text,
        "--force writes a fresh key"
    );
}

#[test]
fn version_names_the_release_and_the_commit() {
    let (ok, version, _) = xgate(&["--version"], None);
    assert!(ok);
    assert!(version.starts_with("xgate 0.1.0 ("), "{version}");
    let head = Command::new("git")
        .args(["rev-parse", "--short=10", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    if let Some(head) = head.ok().filter(|o| o.status.success()) {
        let commit = String::from_utf8_lossy(&head.stdout).trim().to_string();
        assert!(version.contains(&commit), "{version} lacks {commit}");
    }
}
