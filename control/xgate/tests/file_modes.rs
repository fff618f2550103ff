//! Files closed to other users: what `xgate init` writes and what `xgate up` creates (the
//! registry's directory and database files, the API's token files, the UAPI socket) are the
//! owner's alone, and an unprivileged user can read none of them.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{scratch, xgate_bin, Rig};
use testbed::config::{Api, Registry};
use testbed::Implementation;

/// The permission bits of `path` (without following a symlink, so a socket is itself).
fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Runs `program args` as the unprivileged user nobody; true if it succeeded.
fn as_nobody(program: &str, args: &[&str]) -> bool {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", program])
        .args(args)
        .output()
        .expect("setpriv runs")
        .status
        .success()
}

#[test]
fn init_force_writes_its_key_file_owner_only_whatever_the_old_mode() {
    common::require_root();
    let dir = scratch("modei");
    let path = dir.join("etc").join("xgate.toml");
    let out = Command::new(xgate_bin())
        .args(["init", path.to_str().expect("utf-8")])
        .output()
        .expect("xgate init runs");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&path), 0o600, "a new config file holds a private key");
    assert_eq!(
        mode(path.parent().expect("dir")),
        0o700,
        "its new directory"
    );

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = Command::new(xgate_bin())
        .args(["init", "--force", path.to_str().expect("utf-8")])
        .output()
        .expect("xgate init --force runs");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&path), 0o600, "--force over a 0644 file");
    // A file that is not behind a closed directory: nobody is refused by its own mode.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let parent = path.parent().expect("dir");
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    assert!(
        !as_nobody("cat", &[path.to_str().expect("utf-8")]),
        "nobody read the private key in {}",
        path.display()
    );
}

#[test]
fn the_registry_tokens_and_socket_are_closed_to_other_users() {
    let mut rig = Rig::new("modeu");
    rig.add_client(Implementation::WireguardGo);
    // A state directory xgate must create itself.
    let state = rig.dir.join("state");
    rig.config.registry = Some(Registry {
        path: Some(state.join("registry.db")),
        url: None,
        take_over: None,
    });
    rig.config.api = Some(Api {
        token_file: Some(state.join("api-tokens")),
        ..Api::default()
    });
    rig.start_xgate();

    assert_eq!(
        mode(&state),
        0o700,
        "the state directory {}",
        state.display()
    );
    let mut private = vec![
        state.join("registry.db"),
        state.join("api-tokens"),
        state.join("api-tokens.secret"),
    ];
    for extra in ["registry.db-wal", "registry.db-shm"] {
        if state.join(extra).exists() {
            private.push(state.join(extra));
        }
    }
    assert!(
        private.len() >= 4,
        "the registry runs in WAL mode: {private:?}"
    );
    for file in &private {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    let socket = testbed::clients::uapi_socket(&rig.iface());
    assert_eq!(mode(&socket), 0o600, "{}", socket.display());

    // Open the directory to everyone: the files' own modes must still refuse.
    std::fs::set_permissions(&rig.dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for file in &private {
        assert!(
            !as_nobody("cat", &[file.to_str().expect("utf-8")]),
            "nobody read {}",
            file.display()
        );
    }
    assert!(
        !as_nobody("wg", &["show", &rig.iface()]),
        "nobody talked to the UAPI socket"
    );
    // And root still can: the checks above refuse for the mode, not for a broken file.
    assert!(rig.wg(&["show", &rig.iface()]).is_ok());
    assert!(Path::new(&socket).exists());
}
