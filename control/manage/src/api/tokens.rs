//! The token file: the SHA-256 hashes (hex, one per line) of the tokens the API accepts.
//! When it does not exist, a first token is made: its hash goes into the file and the token
//! itself into `<file>.secret` (mode 600) for the local CLI; neither is ever logged.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};

use super::auth::hash_token;
use super::ApiState;

/// How often the token file is looked at for a change.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Where the token made with a new token file is kept.
pub fn secret_path(token_file: &Path) -> PathBuf {
    let mut p = token_file.as_os_str().to_owned();
    p.push(".secret");
    PathBuf::from(p)
}

/// Creates `path` (it must not exist) with `text`, mode 600, synced.
pub(super) fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// A fresh token: "xg_" and 48 hex digits (192 random bits).
pub fn new_token() -> String {
    let mut raw = [0u8; 24];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
    format!("xg_{}", hex::encode(raw))
}

/// The accepted hashes from `path`, making a first token if the file is missing.
pub fn load_or_create(path: &Path) -> Result<Vec<[u8; 32]>> {
    if !path.exists() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let token = new_token();
        write_private(&secret_path(path), &format!("{token}\n"))?;
        write_private(path, &format!("{}\n", hex::encode(hash_token(&token))))?;
        tracing::info!(
            token_file = %path.display(),
            secret = %secret_path(path).display(),
            "made a first API token"
        );
    }
    load(path)
}

/// The accepted hashes from `path`, which must exist (a reload never makes a token).
pub fn load(path: &Path) -> Result<Vec<[u8; 32]>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hashes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let hash = parse_hash(line).ok_or_else(|| {
            anyhow!(
                "{} line {}: not a SHA-256 hash (64 hex digits); make one with \
                     `printf %s TOKEN | sha256sum`",
                path.display(),
                i + 1
            )
        })?;
        hashes.push(hash);
    }
    Ok(hashes)
}

/// Reads `path` again and swaps `state`'s accepted tokens; an unreadable file leaves the
/// old ones in place. Logs what happened.
pub fn reload(state: &ApiState, path: &Path) {
    // Only reads: a missing file is an error here, never a reason to make a new token.
    match load(path) {
        Ok(hashes) => {
            let n = hashes.len();
            state.set_tokens(hashes);
            tracing::info!(file = %path.display(), tokens = n, "API tokens reloaded");
        }
        Err(e) => tracing::error!("API tokens not reloaded, the old ones stay: {e:#}"),
    }
}

/// What tells a changed file: modification time, length and inode (a file replaced by a
/// rename is a new inode).
fn stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Rereads the state's token file whenever it changes (`xgate token add` and `revoke`
/// take effect within a second, no signal needed); runs until the server stops.
pub async fn watch(state: Arc<ApiState>) {
    let Some(path) = state.token_file.clone() else {
        return;
    };
    // File calls off the API's only async thread: a stalled disk must not stall requests.
    let look = |path: PathBuf| async move {
        tokio::task::spawn_blocking(move || stamp(&path))
            .await
            .ok()
            .flatten()
    };
    let mut seen = look(path.clone()).await;
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tick.tick().await;
        let now = look(path.clone()).await;
        if now != seen {
            seen = now;
            let (state, path) = (state.clone(), path.clone());
            let _ = tokio::task::spawn_blocking(move || reload(&state, &path)).await;
        }
    }
}

/// 64 hex digits as a hash.
pub(super) fn parse_hash(text: &str) -> Option<[u8; 32]> {
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
}
