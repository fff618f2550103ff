//! `xgate token add|list|revoke`: the API's token file, edited whole (a new file renamed over
//! the old); the daemon rereads it within a second of the change.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::{emit, print_json};

/// Which token file.
#[derive(Args)]
pub struct TokenFileArgs {
    /// The token file (default: the interface's, or the one --config names).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Take `[api] token_file` from this configuration.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Interface whose default token file to edit.
    #[arg(long, default_value = plane::config::DEFAULT_INTERFACE)]
    interface: String,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

impl TokenFileArgs {
    fn path(&self) -> Result<PathBuf> {
        if let Some(p) = &self.token_file {
            return Ok(p.clone());
        }
        if let Some(config) = &self.config {
            let settings = crate::settings::Settings::load(config)
                .map_err(|e| crate::ConfigFailure(format!("{}: {e}", config.display())))?;
            return settings
                .manage
                .api
                .map(|a| a.token_file)
                .with_context(|| format!("{} has no API (no [registry])", config.display()));
        }
        Ok(manage::config::default_token_file(&self.interface))
    }
}

/// What to do with tokens.
#[derive(Subcommand)]
pub enum TokenAction {
    /// Make a token, print it (the only time it is shown) and accept its hash.
    Add {
        /// A label to recognise it by in `token list` and `token revoke`.
        #[arg(default_value = "")]
        label: String,
        /// What it may do: admin (everything) or viewer (read everything, change nothing).
        #[arg(long, default_value = "admin", value_parser = ["admin", "viewer"])]
        role: String,
        #[command(flatten)]
        file: TokenFileArgs,
    },
    /// List the accepted tokens: label, hash prefix, when added.
    List {
        #[command(flatten)]
        file: TokenFileArgs,
    },
    /// Stop accepting a token, given its label or the start of its hash (8+ hex digits).
    Revoke {
        /// Label or hash prefix.
        which: String,
        #[command(flatten)]
        file: TokenFileArgs,
    },
}

/// Now as ISO 8601 UTC.
fn now_iso() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    manage::client::iso8601(&json!(now))
}

/// Runs `action`.
pub fn run(action: TokenAction) -> Result<()> {
    match action {
        TokenAction::Add { label, role, file } => {
            let path = file.path()?;
            let role = manage::api::Role::parse(&role).unwrap_or(manage::api::Role::Viewer);
            let token = manage::api::add_token(&path, &label, role, &now_iso())?;
            eprintln!(
                "added to {}; the API takes it within a second (shown this once)",
                path.display()
            );
            emit(&format!("{token}\n"))
        }
        TokenAction::List { file } => {
            let entries = manage::api::token_entries(&file.path()?)?;
            if file.json {
                let list: Vec<_> = entries
                    .iter()
                    .map(|e| {
                        json!({ "label": e.label, "hash": e.hash, "added": e.added,
                                "role": e.role.name() })
                    })
                    .collect();
                return print_json(&json!(list));
            }
            let mut out = format!("{:<24} {:<7} {:<14} {}\n", "LABEL", "ROLE", "HASH", "ADDED");
            for e in &entries {
                let label = if e.label.is_empty() { "-" } else { &e.label };
                let added = if e.added.is_empty() { "-" } else { &e.added };
                out += &format!(
                    "{label:<24} {:<7} {:<14} {added}\n",
                    e.role.name(),
                    &e.hash[..12.min(e.hash.len())]
                );
            }
            emit(&out)
        }
        TokenAction::Revoke { which, file } => {
            let path = file.path()?;
            let gone = manage::api::revoke_token(&path, &which)?;
            let left = manage::api::read_tokens(&path)?.len();
            let label = if gone.entry.label.is_empty() {
                "-"
            } else {
                &gone.entry.label
            };
            eprintln!(
                "revoked {label} ({}...); {left} token(s) left in {}",
                &gone.entry.hash[..12.min(gone.entry.hash.len())],
                path.display()
            );
            if let Some(secret) = gone.secret_removed {
                eprintln!(
                    "removed {}, which held it: give the CLI another token (--token, \
                     XGATE_TOKEN, --token-file)",
                    secret.display()
                );
            }
            Ok(())
        }
    }
}
