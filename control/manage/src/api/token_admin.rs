//! `xgate token add|list|revoke`: edits of the token file. Each edit holds an exclusive lock
//! (`<file>.lock`) from reading the file to renaming the new one over it, so two commands at
//! once each see the other's result, and the daemon only ever reads a whole file.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

use super::auth::hash_token;
use super::tokens::{label_of, load, new_token, secret_path, write_private, Role, LABEL_MARK};

/// One accepted token as the file lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// Its hash, hex.
    pub hash: String,
    /// The label given at `xgate token add` ("" for the first token, or one written by hand).
    pub label: String,
    /// When it was added, as written ("" if unknown).
    pub added: String,
    /// What it may do.
    pub role: Role,
}

/// `path` with `suffix` appended to its name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// The entries of a token file's `text`, with the labels `add` wrote.
fn parse(text: &str) -> Vec<TokenEntry> {
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
        let (label, added) = comment.take().map(label_of).unwrap_or_default();
        let mut words = line.split_whitespace();
        let hash = words.next().unwrap_or_default().to_lowercase();
        // `load` has refused any other role word already.
        let role = words
            .next()
            .and_then(|w| w.strip_prefix("role="))
            .and_then(Role::parse)
            .unwrap_or(Role::Admin);
        out.push(TokenEntry {
            hash,
            label,
            added,
            role,
        });
    }
    out
}

/// The tokens `path` accepts, with their labels.
pub fn entries(path: &Path) -> Result<Vec<TokenEntry>> {
    load(path)?;
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(parse(&text))
}

/// Runs `change` on the file's text under the lock and writes what it returns whole (a new
/// file renamed over the old, the directory synced so the rename survives a crash).
fn edit<T>(path: &Path, change: impl FnOnce(&str) -> Result<(String, T)>) -> Result<T> {
    if !path.exists() {
        return Err(anyhow!(
            "no token file at {}: xgate makes it at its first start; for another interface or a \
             configured [api] token_file, pass --interface, --config or --token-file",
            path.display()
        ));
    }
    let lock_path = beside(path, ".lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    load(path)?;
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (new_text, out) = change(&text)?;
    let staged = beside(path, &format!(".new.{}", std::process::id()));
    let _ = fs::remove_file(&staged);
    write_private(&staged, &new_text)?;
    fs::rename(&staged, path).with_context(|| format!("replacing {}", path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))?;
    }
    Ok(out)
}

/// Adds a fresh token with `role`, labelled `label` (added at `added`, as written) to `path`;
/// returns the token, which is stored nowhere.
pub fn add(path: &Path, label: &str, role: Role, added: &str) -> Result<String> {
    if label.chars().any(char::is_control) || label.contains('"') || label.chars().count() > 64 {
        return Err(anyhow!(
            "the label {label:?} cannot be used: at most 64 printable characters, no quotes"
        ));
    }
    edit(path, |text| {
        if !label.is_empty() && parse(text).iter().any(|e| e.label == label) {
            return Err(anyhow!(
                "a token labelled {label:?} exists already in {}; choose another label",
                path.display()
            ));
        }
        let mut text = text.to_string();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        let token = new_token();
        // An admin's line stays a bare hash, as files written before roles read.
        let role = match role {
            Role::Admin => String::new(),
            other => format!(" role={}", other.name()),
        };
        text += &format!(
            "{LABEL_MARK}\"{label}\", added {added}\n{}{role}\n",
            hex::encode(hash_token(&token))
        );
        Ok((text, token))
    })
}

/// What a revocation did: the entry removed, and the secret file removed with it when it
/// held that very token (the CLI's default token would otherwise be a dead one).
#[derive(Debug)]
pub struct Revoked {
    /// The entry.
    pub entry: TokenEntry,
    /// The secret file removed, if it held the token.
    pub secret_removed: Option<PathBuf>,
}

/// Removes from `path` the token whose label is `which`, or whose hash starts with it (at
/// least 8 hex digits). Several matches remove nothing.
pub fn revoke(path: &Path, which: &str) -> Result<Revoked> {
    if which.trim().is_empty() {
        return Err(anyhow!(
            "say which token: its label or the start of its hash (`xgate token list`)"
        ));
    }
    let entry = edit(path, |text| {
        let all = parse(text);
        let by_hash = which.len() >= 8 && which.bytes().all(|b| b.is_ascii_hexdigit());
        let lower = which.to_lowercase();
        let matches: Vec<&TokenEntry> = all
            .iter()
            .filter(|e| e.label == which || (by_hash && e.hash.starts_with(&lower)))
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
        let mut kept: Vec<&str> = Vec::new();
        for line in text.lines() {
            let hash = line.split_whitespace().next().unwrap_or_default();
            if !line.trim().starts_with('#') && hash.eq_ignore_ascii_case(&gone.hash) {
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
        Ok((out, gone))
    })?;
    let secret = secret_path(path);
    let holds_it =
        fs::read_to_string(&secret).is_ok_and(|t| hex::encode(hash_token(t.trim())) == entry.hash);
    let secret_removed = if holds_it {
        fs::remove_file(&secret).with_context(|| format!("removing {}", secret.display()))?;
        Some(secret)
    } else {
        None
    };
    Ok(Revoked {
        entry,
        secret_removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_tokens_are_accepted_listed_and_revoked() {
        let dir = std::env::temp_dir().join(format!("xgate-tokens-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("t.api-tokens");
        assert!(
            add(&path, "alice", Role::Admin, "now").is_err(),
            "no file: not made here"
        );
        let first = super::super::tokens::load_or_create(&path).expect("first token");
        let alice = add(&path, "alice", Role::Admin, "2026-12-03T07:00:00Z").expect("add");
        assert!(
            add(&path, "alice", Role::Admin, "later").is_err(),
            "labels are unique"
        );
        let bob = add(&path, "bob", Role::Viewer, "2026-12-03T07:01:00Z").expect("add");
        let hashes: Vec<_> = load(&path).expect("load").iter().map(|t| t.hash).collect();
        assert_eq!(hashes[1..], [hash_token(&alice), hash_token(&bob)]);
        let loaded = load(&path).expect("load");
        assert_eq!(
            (loaded[1].role, loaded[2].role, loaded[2].label.as_str()),
            (Role::Admin, Role::Viewer, "bob")
        );
        let listed = entries(&path).expect("entries");
        assert_eq!(listed[2].role, Role::Viewer);
        assert_eq!(
            (listed[0].label.as_str(), listed[1].label.as_str()),
            ("", "alice")
        );
        assert_eq!(listed[2].added, "2026-12-03T07:01:00Z");
        assert!(revoke(&path, "carol").is_err(), "no such label");
        assert!(
            revoke(&path, " ").is_err(),
            "an empty label matches nothing"
        );
        let gone = revoke(&path, &listed[2].hash[..12]).expect("by hash prefix");
        assert_eq!(gone.entry.label, "bob");
        assert!(gone.secret_removed.is_none());
        revoke(&path, "alice").expect("by label");
        assert!(!fs::read_to_string(&path).expect("file").contains("alice"));
        // The first token's secret file goes with it.
        let gone = revoke(&path, &listed[0].hash[..8]).expect("the first token");
        assert_eq!(gone.secret_removed, Some(secret_path(&path)));
        assert!(load(&path).expect("load").is_empty() && first.len() == 1);
        assert!(!secret_path(&path).exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn concurrent_edits_lose_nothing() {
        let dir = std::env::temp_dir().join(format!("xgate-tokens-race-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("t.api-tokens");
        fs::write(&path, "").expect("empty token file");
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    (0..10)
                        .map(|i| add(&path, &format!("t{t}-{i}"), Role::Admin, "now").expect("add"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let tokens: Vec<String> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("thread"))
            .collect();
        let hashes: Vec<_> = load(&path).expect("load").iter().map(|t| t.hash).collect();
        assert_eq!(hashes.len(), 40, "every added token is in the file");
        assert!(tokens.iter().all(|t| hashes.contains(&hash_token(t))));
        let _ = fs::remove_dir_all(&dir);
    }
}
