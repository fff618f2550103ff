//! The token file: the SHA-256 hashes (hex, one per line) of the tokens the API accepts, each
//! with its role (`HASH role=viewer`; a bare hash is an admin's).
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

/// The accepted tokens from `path`, making a first (admin) token if the file is missing.
pub fn load_or_create(path: &Path) -> Result<Vec<Token>> {
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

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Read everything, change nothing.
    Viewer,
}

impl Role {
    /// Its name, as the token file writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Viewer => "viewer",
        }
    }

    /// The role named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(Self::Admin),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
}

/// One accepted token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The SHA-256 of the token.
    pub hash: [u8; 32],
    /// What it may do (a line without `role=` is an admin's, as before roles).
    pub role: Role,
    /// Its label from the comment `xgate token add` writes above it ("" if none).
    pub label: String,
}

impl Token {
    /// Who it is, for the audit log: its label, or the start of its hash.
    pub fn who(&self) -> String {
        if self.label.is_empty() {
            format!("token {}", &hex::encode(self.hash)[..12])
        } else {
            self.label.clone()
        }
    }
}

/// The comment line `xgate token add` writes above a hash: `# token "LABEL", added WHEN`.
pub(super) const LABEL_MARK: &str = "# token ";

/// The label and added time a label comment gives.
pub(super) fn label_of(comment: &str) -> (String, String) {
    comment
        .rsplit_once(", added ")
        .map_or((String::new(), String::new()), |(l, a)| {
            (l.trim_matches('"').to_string(), a.to_string())
        })
}

/// A token line: `HASH` or `HASH role=ROLE`.
fn parse_line(line: &str) -> Result<([u8; 32], Role), String> {
    let mut words = line.split_whitespace();
    let hash = words
        .next()
        .and_then(parse_hash)
        .ok_or("not a SHA-256 hash (64 hex digits); make one with `printf %s TOKEN | sha256sum`")?;
    let role = match words.next() {
        None => Role::Admin,
        Some(word) => word
            .strip_prefix("role=")
            .and_then(Role::parse)
            .ok_or_else(|| format!("{word:?} after the hash: write role=admin or role=viewer"))?,
    };
    if let Some(extra) = words.next() {
        return Err(format!(
            "{extra:?} after the role: one hash and one role per line"
        ));
    }
    Ok((hash, role))
}

/// The accepted tokens from `path`, which must exist (a reload never makes a token).
pub fn load(path: &Path) -> Result<Vec<Token>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut tokens = Vec::new();
    let mut label = String::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix(LABEL_MARK) {
            label = label_of(comment).0;
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            label.clear();
            continue;
        }
        let (hash, role) =
            parse_line(line).map_err(|e| anyhow!("{} line {}: {e}", path.display(), i + 1))?;
        tokens.push(Token {
            hash,
            role,
            label: std::mem::take(&mut label),
        });
    }
    Ok(tokens)
}

/// Reads `path` again and swaps `state`'s accepted tokens; an unreadable file leaves the
/// old ones in place. Logs what happened.
pub fn reload(state: &ApiState, path: &Path) {
    // Only reads: a missing file is an error here, never a reason to make a new token.
    match load(path) {
        Ok(tokens) => {
            let n = tokens.len();
            state.set_tokens(tokens);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_a_hash_and_maybe_a_role() {
        let hash = "ab".repeat(32);
        assert_eq!(parse_line(&hash).map(|(_, r)| r), Ok(Role::Admin));
        assert_eq!(
            parse_line(&format!("{hash} role=viewer")).map(|(_, r)| r),
            Ok(Role::Viewer)
        );
        let wrong = parse_line(&format!("{hash} role=root")).expect_err("no such role");
        assert!(wrong.contains("role=viewer"), "{wrong}");
        assert!(parse_line(&format!("{hash} role=admin extra")).is_err());
        assert!(parse_line("abcd").is_err());
    }
}
