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
    let mut seen = stamp(&path);
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tick.tick().await;
        let now = stamp(&path);
        if now != seen {
            seen = now;
            reload(&state, &path);
        }
    }
}

/// 64 hex digits as a hash.
fn parse_hash(text: &str) -> Option<[u8; 32]> {
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
}

/// What introduces the comment `xgate token add` writes above a hash.
const LABEL_MARK: &str = "# token ";

/// One accepted token as the file lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// Its hash, hex.
    pub hash: String,
    /// The label given at `xgate token add` ("" for a hash written by hand).
    pub label: String,
    /// When it was added, as written ("" if unknown).
    pub added: String,
}

/// The tokens `path` accepts, with the labels `add` wrote.
pub fn entries(path: &Path) -> Result<Vec<TokenEntry>> {
    load(path)?;
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    let mut comment: Option<&str> = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix(LABEL_MARK) {
            comment = Some(rest);
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            comment = None;
            continue;
        }
        let (label, added) = comment
            .take()
            .and_then(|c| c.rsplit_once(", added "))
            .map_or((String::new(), String::new()), |(l, a)| {
                (l.trim_matches('"').to_string(), a.to_string())
            });
        out.push(TokenEntry {
            hash: line.to_lowercase(),
            label,
            added,
        });
    }
    Ok(out)
}

/// Writes `text` to `path` whole or not at all (a new file renamed over it, mode 600), so the
/// daemon never reads half a file.
fn replace(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut staged = path.as_os_str().to_owned();
    staged.push(".new");
    let staged = PathBuf::from(staged);
    let _ = fs::remove_file(&staged);
    write_private(&staged, text)?;
    fs::rename(&staged, path).with_context(|| format!("replacing {}", path.display()))
}

/// Adds a fresh token labelled `label` (added at `added`, as written) to `path`, creating
/// the file if needed; returns the token, which is stored nowhere.
pub fn add(path: &Path, label: &str, added: &str) -> Result<String> {
    if label.chars().any(char::is_control) || label.contains('"') || label.len() > 64 {
        return Err(anyhow!(
            "the label {label:?} cannot be used: at most 64 printable characters, no quotes"
        ));
    }
    let mut text = match fs::read_to_string(path) {
        Ok(t) => {
            load(path)?;
            t
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(anyhow!("reading {}: {e}", path.display())),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let token = new_token();
    text += &format!(
        "{LABEL_MARK}\"{label}\", added {added}\n{}\n",
        hex::encode(hash_token(&token))
    );
    replace(path, &text)?;
    Ok(token)
}

/// Removes from `path` the token whose label is `which`, or whose hash starts with it (at
/// least 8 hex digits); returns what was removed. Several matches remove nothing.
pub fn revoke(path: &Path, which: &str) -> Result<TokenEntry> {
    let all = entries(path)?;
    let by_hash = which.len() >= 8 && which.bytes().all(|b| b.is_ascii_hexdigit());
    let matches: Vec<&TokenEntry> = all
        .iter()
        .filter(|e| e.label == which || (by_hash && e.hash.starts_with(&which.to_lowercase())))
        .collect();
    let gone = match matches.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(anyhow!(
                "no token in {} is labelled {which:?} or has a hash starting so; \
                 `xgate token list` shows them",
                path.display()
            ))
        }
        _ => {
            return Err(anyhow!(
                "{} tokens match {which:?}; give more of the hash (`xgate token list`)",
                matches.len()
            ))
        }
    };
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut kept: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.trim().eq_ignore_ascii_case(&gone.hash) {
            // Its label comment goes with it.
            if kept
                .last()
                .is_some_and(|l| l.trim().starts_with(LABEL_MARK))
            {
                kept.pop();
            }
            continue;
        }
        kept.push(line);
    }
    let mut out = kept.join("\n");
    out.push('\n');
    replace(path, &out)?;
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_tokens_are_accepted_listed_and_revoked() {
        let dir = std::env::temp_dir().join(format!("xgate-tokens-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("t.api-tokens");
        let first = add(&path, "alice", "2026-12-03T07:00:00Z").expect("add");
        let second = add(&path, "bob", "2026-12-03T07:01:00Z").expect("add");
        let hashes = load(&path).expect("load");
        assert_eq!(hashes, vec![hash_token(&first), hash_token(&second)]);
        let listed = entries(&path).expect("entries");
        assert_eq!(listed[0].label, "alice");
        assert_eq!(listed[1].added, "2026-12-03T07:01:00Z");
        assert!(revoke(&path, "carol").is_err(), "no such label");
        let gone = revoke(&path, &listed[1].hash[..12]).expect("by hash prefix");
        assert_eq!(gone.label, "bob");
        assert_eq!(load(&path).expect("load"), vec![hash_token(&first)]);
        revoke(&path, "alice").expect("by label");
        assert!(load(&path).expect("load").is_empty());
        assert!(!fs::read_to_string(&path).expect("file").contains("alice"));
        let _ = fs::remove_dir_all(&dir);
    }
}
