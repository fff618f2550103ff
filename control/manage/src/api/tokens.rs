//! The token file: the SHA-256 hashes (hex, one per line) of the tokens the API accepts.
//! When it does not exist, a first token is made: its hash goes into the file and the token
//! itself into `<file>.secret` (mode 600) for the local CLI; neither is ever logged.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

use super::auth::hash_token;

/// Where the token made with a new token file is kept.
pub fn secret_path(token_file: &Path) -> PathBuf {
    let mut p = token_file.as_os_str().to_owned();
    p.push(".secret");
    PathBuf::from(p)
}

fn write_private(path: &Path, text: &str) -> Result<()> {
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
        let mut raw = [0u8; 24];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
        let token = format!("xg_{}", hex::encode(raw));
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
        let hash = hex::decode(line)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
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
