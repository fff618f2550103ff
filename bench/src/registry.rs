//! The registry at start-up: how long xgate takes to open a registry of many peers and load
//! every active one with its addresses (what `xgate up` does before it serves anyone).

use std::path::Path;
use std::time::Instant;

use control::registry::{NewPeer, Pool, Registry};
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

/// Creates `peers` peers in a fresh database under `dir`, then opens and loads it.
pub fn measure(dir: &Path, peers: usize) -> anyhow::Result<RegistryFigure> {
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
    let registry = Registry::open(&path, pools())?;
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
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(RegistryFigure {
        peers,
        create_s,
        load_s,
        file_bytes,
    })
}
