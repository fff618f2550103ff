//! The registry under the faults trusted daemons are tested against (SQLite's and
//! PostgreSQL's own suites inject the same): a full disk, a database locked by another
//! process past the busy timeout, and a damaged database file at start. After each, every
//! acknowledged registration is there, nothing is half-written, and WireGuard clients are
//! still served, or xgate refuses to start and says which file and what to do.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::api::{all_peers, call, error_of, register_and_connect};
use common::Rig;
use proto::PrivateKey;
use serde_json::json;
use testbed::{ping, Implementation};

/// A registration with a fresh key; its status and body.
fn register(rig: &Rig, token: &str, name: &str) -> (u16, String) {
    let key = PrivateKey::generate(&mut rand_core::OsRng)
        .public_key()
        .to_base64();
    call(
        rig,
        "POST",
        "/api/v1/peers",
        Some(token),
        Some(json!({ "name": name, "public_key": key })),
    )
}

/// The names of every peer the registry lists.
fn names(rig: &Rig, token: &str) -> Vec<String> {
    all_peers(rig, token)
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect()
}

/// A rig whose registry is at `db` (the API's token file stays in the scratch directory).
fn rig_with_registry_at(tag: &str, db: Option<PathBuf>) -> Rig {
    let mut rig = Rig::new(tag);
    rig.add_client(Implementation::WireguardGo);
    rig.use_registry();
    if let (Some(db), Some(registry)) = (db, rig.config.registry.as_mut()) {
        registry.path = Some(db);
    }
    rig
}

/// The client, registered through the API, gets a tunnel.
fn connect_client(rig: &Rig, token: &str) {
    register_and_connect(rig, token, 0, "client", Some(1));
}

/// A small tmpfs mounted at `dir` for the test's life.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs at {}", dir.display());
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem holding `file` until it refuses more.
fn fill(file: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(file).expect("filler");
    let block = vec![0x5a; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn a_full_disk_is_a_507_with_nothing_half_written_and_recovers_once_freed() {
    let dir = common::scratch("dfull").join("registry");
    let fs = Tmpfs::mount(&dir, "2m");
    let mut rig = rig_with_registry_at("dfull", Some(fs.0.join("registry.db")));
    rig.start_xgate();
    let token = rig.server.api_token().expect("token").to_string();
    connect_client(&rig, &token);
    let mut acknowledged = vec!["client".to_string()];
    for i in 0..5 {
        let name = format!("before-{i}");
        let (status, text) = register(&rig, &token, &name);
        assert_eq!(status, 201, "{text}");
        acknowledged.push(name);
    }

    let filler = fs.0.join("filler");
    fill(&filler);
    // Registrations now fail with a message that says so, until one fits no more.
    let mut refused = 0;
    for i in 0..40 {
        let name = format!("full-{i}");
        match register(&rig, &token, &name) {
            (201, _) => acknowledged.push(name),
            (507, text) => {
                assert!(error_of(&text).contains("disk is full"), "{text}");
                refused += 1;
            }
            (status, text) => panic!("{status} on a full disk: {text}\n{}", rig.log()),
        }
    }
    assert!(refused > 0, "the tmpfs never filled");
    // The tunnel is served all the while.
    let p = ping(&rig.clients[0].ns, "10.77.0.1", 3).expect("ping");
    assert_eq!(
        p.received, 3,
        "the client lost its tunnel on a full disk: {p:?}"
    );

    std::fs::remove_file(&filler).expect("free the space");
    let (status, text) = register(&rig, &token, "after");
    assert_eq!(status, 201, "no recovery once space was freed: {text}");
    acknowledged.push("after".into());

    // A restart reads back exactly what was acknowledged.
    rig.start_xgate();
    let mut listed = names(&rig, &token);
    listed.sort();
    acknowledged.sort();
    assert_eq!(listed, acknowledged);
}

#[test]
fn a_registry_locked_past_the_busy_timeout_is_a_503_and_then_works() {
    let mut rig = rig_with_registry_at("dlock", None);
    rig.start_xgate();
    let token = rig.server.api_token().expect("token").to_string();
    connect_client(&rig, &token);
    let db = testbed::config::registry_files(&rig.dir).0;

    // This test's process holds the write lock for longer than xgate waits (10 s).
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&db).expect("open");
        conn.execute_batch("BEGIN EXCLUSIVE").expect("lock");
        let _ = locked_tx.send(());
        std::thread::sleep(Duration::from_secs(14));
        conn.execute_batch("ROLLBACK").expect("unlock");
    });
    locked.recv().expect("the holder took the lock");

    let started = Instant::now();
    let (status, text) = register(&rig, &token, "while-locked");
    assert_eq!(status, 503, "{text}");
    assert!(
        error_of(&text).contains("locked by another process"),
        "{text}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "gave up before the busy timeout"
    );
    let p = ping(&rig.clients[0].ns, "10.77.0.1", 3).expect("ping");
    assert_eq!(
        p.received, 3,
        "the client lost its tunnel while the registry was locked"
    );

    holder.join().expect("holder");
    let (status, text) = register(&rig, &token, "after-lock");
    assert_eq!(status, 201, "{text}");
    let listed = names(&rig, &token);
    assert!(listed.contains(&"after-lock".to_string()));
    assert!(
        !listed.contains(&"while-locked".to_string()),
        "a refused change was saved"
    );
}

/// `xgate up` with the rig's config, expected to fail: its exit code and stderr.
fn up_fails(rig: &Rig) -> (Option<i32>, String) {
    let config = rig.write_config();
    let out = Command::new("timeout")
        .args(["20", "ip", "netns", "exec", rig.server.ns.name()])
        .arg(common::xgate_bin())
        .args(["up", "--config"])
        .arg(&config)
        .output()
        .expect("xgate runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_damaged_registry_is_refused_at_start_naming_the_file_and_the_way_out() {
    let mut rig = rig_with_registry_at("dcorr", None);
    rig.start_xgate();
    let token = rig.server.api_token().expect("token").to_string();
    for i in 0..200 {
        let (status, text) = register(&rig, &token, &format!("peer-{i}"));
        assert_eq!(status, 201, "{text}");
    }
    rig.server.stop();
    let db = testbed::config::registry_files(&rig.dir).0;
    let path = db.display().to_string();

    // Pages past the header overwritten: SQLite opens it, the integrity check does not pass.
    let mut bytes = std::fs::read(&db).expect("database");
    assert!(bytes.len() > 12 * 4096, "a database of several pages");
    for b in &mut bytes[3 * 4096..9 * 4096] {
        *b = 0xa5;
    }
    std::fs::write(&db, &bytes).expect("damage");
    for (what, damage) in [
        ("damaged pages", None),
        ("not a database", Some("not SQLite")),
    ] {
        if let Some(text) = damage {
            std::fs::write(&db, text.repeat(1000)).expect("garbage");
        }
        let (code, stderr) = up_fails(&rig);
        assert!(
            code.is_some_and(|c| c != 0 && c != 124),
            "{what}: exit {code:?}: {stderr}"
        );
        for needle in [path.as_str(), "damaged or not a registry", "move it aside"] {
            assert!(
                stderr.contains(needle),
                "{what}: {needle:?} missing from {stderr}"
            );
        }
        assert!(
            rig.server.ns.ip(&["link", "show", &rig.iface()]).is_err(),
            "{what}: interface left behind"
        );
    }
    // The way out it names works: moved aside, xgate starts with an empty registry.
    std::fs::rename(&db, format!("{path}.damaged")).expect("move aside");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
    rig.start_xgate();
    assert_eq!(names(&rig, &token), Vec::<String>::new());
}
