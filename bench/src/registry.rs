//! The registry at start-up: how long xgate takes to open a registry of many peers and load
//! every active one with its addresses, and how long `xgate up` takes from launch until its
//! socket answers with every one of them configured (what happens before it serves anyone).

use std::path::Path;
use std::time::{Duration, Instant};

use testbed::clients::{wait_for_socket, wg};
use testbed::process::Daemon;
use testbed::{config, Netns, XgateConfig};

use manage::registry::{NewPeer, Pool, Registry};
use proto::PublicKey;
use serde::Serialize;

/// One load of a registry.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryFigure {
    /// Peers in the registry.
    pub peers: usize,
    /// Seconds to create them (one transaction of bulk creations).
    pub create_s: f64,
    /// Seconds to open the database and load every peer with its addresses.
    pub load_s: f64,
    /// Database size on disk, bytes.
    pub file_bytes: u64,
    /// Seconds from launching `xgate up` on this registry until its socket answered (every
    /// peer applied: the daemon opens the socket after it has configured them).
    pub daemon_start_s: f64,
    /// Peers `wg show` listed once it was up.
    pub daemon_peers: usize,
    /// The daemon's resident memory once up, bytes per peer (above a daemon without peers).
    pub daemon_bytes_per_peer: f64,
}

fn pools() -> Vec<Pool> {
    vec![Pool {
        name: "default".into(),
        v4: "10.64.0.0/10".parse().ok(),
        v6: "fd77::/64".parse().ok(),
        reserved: Vec::new(),
        hold_secs: 3600,
    }]
}

/// Starts `xgate up` on the registry at `db` (or with none) in a fresh namespace; returns
/// seconds until its socket answered, the peers `wg show` lists, and its resident memory.
fn start_daemon(xgate: &Path, dir: &Path, db: Option<&Path>) -> anyhow::Result<(f64, usize, u64)> {
    let ns = Netns::create("xbench-reg")?;
    let key = proto::PrivateKey::generate(&mut rand_core::OsRng);
    let mut config = XgateConfig::server("xbreg", &key, 51820, &["10.64.0.1/10", "fd77::1/64"]);
    if let Some(db) = db {
        config.registry = Some(config::Registry {
            path: Some(db.to_path_buf()),
            url: None,
            take_over: None,
        });
        config.pools.push(config::Pool {
            name: Some("default".into()),
            ipv4: Some("10.64.0.0/10".into()),
            ipv6: Some("fd77::/64".into()),
            hold_secs: None,
        });
        config.api = Some(config::Api {
            token_file: Some(dir.join("registry-bench.tokens")),
            ..config::Api::default()
        });
    }
    let path = dir.join("registry-bench.toml");
    config.write(&path)?;
    let mut cmd = ns.command(xgate.to_str().unwrap_or("xgate"));
    cmd.args(["up", "--config", path.to_str().unwrap_or_default()])
        .env("RUST_LOG", "info");
    let started = Instant::now();
    let mut daemon = Daemon::spawn(cmd, &dir.join("registry-bench.log"))?;
    // The daemon opens its socket once every peer is configured.
    if !wait_for_socket("xbreg", Duration::from_secs(30)) {
        anyhow::bail!(
            "xgate did not open its socket (running: {}): {}",
            daemon.is_running(),
            daemon.log_text()
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let listed = wg(&ns, &["show", "xbreg", "peers"])?.lines().count();
    // Let the workers finish taking their peers before reading memory.
    std::thread::sleep(Duration::from_millis(500));
    let rss = daemon.pid().map_or(0, testbed::procstat::rss_bytes);
    daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(10));
    drop(ns);
    Ok((seconds, listed, rss))
}

/// Creates `peers` peers in a fresh database under `dir`, opens and loads it, then starts
/// the daemon (`xgate`) on it.
pub fn measure(dir: &Path, peers: usize, xgate: &Path) -> anyhow::Result<RegistryFigure> {
    let path = dir.join("registry-bench.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let mut registry = Registry::open(&path, pools())?;
    let batch: Vec<NewPeer> = (0..peers)
        .map(|i| {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            NewPeer {
                name: format!("user-{i}"),
                group: "default".into(),
                public_key: PublicKey(key),
                preshared_key: None,
                allowed_ips: Vec::new(),
            }
        })
        .collect();
    let started = Instant::now();
    for chunk in batch.chunks(10_000) {
        registry.create(chunk, 1)?;
    }
    let create_s = started.elapsed().as_secs_f64();
    drop(registry);
    let started = Instant::now();
    let mut registry = Registry::open(&path, pools())?;
    let loaded = registry.active()?;
    let load_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(loaded.len() == peers, "loaded {} of {peers}", loaded.len());
    anyhow::ensure!(
        loaded.iter().all(|p| p.addresses.len() == 2),
        "a peer without both addresses"
    );
    drop(registry);
    let file_bytes = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", path.display())).ok())
        .map(|m| m.len())
        .sum();
    let (_, _, bare_rss) = start_daemon(xgate, dir, None)?;
    let (daemon_start_s, daemon_peers, rss) = start_daemon(xgate, dir, Some(&path))?;
    anyhow::ensure!(
        daemon_peers == peers,
        "the daemon listed {daemon_peers} of {peers} peers"
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(RegistryFigure {
        peers,
        create_s,
        load_s,
        file_bytes,
        daemon_start_s,
        daemon_peers,
        daemon_bytes_per_peer: rss.saturating_sub(bare_rss) as f64 / peers.max(1) as f64,
    })
}
