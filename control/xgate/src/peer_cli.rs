//! `xgate peer ...`: the registry's peers through the HTTP API, named by id or by name.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use manage::client::{component, peer_table, ApiClient, PeerFilter};
use serde_json::{json, Value};

use crate::{emit, print_json};

/// How to reach the API.
#[derive(Args)]
pub struct ApiArgs {
    /// The API's address.
    #[arg(long, global = true, default_value = "http://127.0.0.1:9180")]
    api: String,
    /// Bearer token (default: $XGATE_TOKEN, then --token-file, then the interface's secret
    /// file).
    #[arg(long, global = true)]
    token: Option<String>,
    /// File holding the token.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for an https:// API (default: the public web roots).
    #[arg(long, global = true)]
    ca_file: Option<PathBuf>,
    /// Interface whose token file to read (default: xgate0, or the one the API serves).
    #[arg(long, global = true)]
    interface: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ApiArgs {
    /// A client for the API these arguments name, with the token they lead to.
    pub fn client(&self) -> Result<ApiClient> {
        let token = manage::client::find_token(
            self.token.clone(),
            self.token_file.clone(),
            self.interface.as_deref(),
        )?;
        ApiClient::new(&self.api, token, self.ca_file.as_deref())
    }
}

/// What to do with peers.
#[derive(Subcommand)]
pub enum PeerAction {
    /// Register a peer; without --public-key xgate makes the key pair and prints the client's
    /// wg-quick file (the only time its private key is shown).
    Add {
        /// Display name, unique on the interface (or --name).
        #[arg(required_unless_present = "name_flag", conflicts_with = "name_flag")]
        name: Option<String>,
        /// Display name, as the positional argument.
        #[arg(long = "name", value_name = "NAME")]
        name_flag: Option<String>,
        /// Group (picks the address pool and client policy); one the configuration names.
        #[arg(long)]
        group: Option<String>,
        /// The client's public key (`wg pubkey`).
        #[arg(long)]
        public_key: Option<String>,
        /// Give the peer a preshared key.
        #[arg(long)]
        psk: bool,
        /// A network behind the peer (repeatable).
        #[arg(long = "allowed-ip")]
        allowed_ips: Vec<String>,
        /// Also print the client's configuration as a QR code (for the mobile apps).
        #[arg(long)]
        qr: bool,
    },
    /// List peers (not revoked ones unless --revoked).
    List {
        /// Only this group.
        #[arg(long)]
        group: Option<String>,
        /// Revoked peers too.
        #[arg(long)]
        revoked: bool,
        /// One page of at most this many (1..=1000); the next page's --after goes to stderr.
        #[arg(long)]
        limit: Option<usize>,
        /// Only peers with ids above this (with --limit: where the previous page ended).
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
    /// Show one peer.
    Show {
        /// Peer id or name.
        peer: String,
    },
    /// Cut a peer off now (its record stays).
    Revoke {
        /// Peer id or name.
        peer: String,
    },
    /// Remove a peer.
    Rm {
        /// Peer id or name.
        peer: String,
    },
    /// Print a peer's wg-quick file (private key as a placeholder).
    Config {
        /// Peer id or name.
        peer: String,
        /// As a QR code in the terminal.
        #[arg(long)]
        qr: bool,
    },
}

/// The API path of the peer an id or a name designates.
fn peer_path(peer: &str) -> String {
    format!("/api/v1/peers/{}", component(peer))
}

/// Runs `action` against the API `api` names.
pub fn run(action: PeerAction, api: &ApiArgs) -> Result<()> {
    let client = api.client()?;
    let one = |v: &Value| -> Result<()> {
        if api.json {
            print_json(v)
        } else {
            emit(&peer_table(std::slice::from_ref(v)))
        }
    };
    match action {
        PeerAction::Add {
            name,
            name_flag,
            group,
            public_key,
            psk,
            allowed_ips,
            qr,
        } => {
            let name = name.or(name_flag).unwrap_or_default();
            let mut body =
                json!({ "name": name, "preshared_key": psk, "allowed_ips": allowed_ips });
            if let Some(g) = group {
                body["group"] = json!(g);
            }
            if let Some(k) = public_key {
                body["public_key"] = json!(k);
            }
            let made = client.post("/api/v1/peers", &body)?;
            for warning in made["warnings"].as_array().into_iter().flatten() {
                eprintln!("warning: {}", warning.as_str().unwrap_or_default());
            }
            if api.json {
                return print_json(&made);
            }
            match made["config"].as_str() {
                // Stdout holds exactly the client's file (`> alice.conf`), or its QR code;
                // the summary goes to stderr.
                Some(config) => {
                    eprint!("{}", peer_table(&[made["peer"].clone()]));
                    if qr {
                        emit(&manage::qr::terminal(config)?)?;
                    } else {
                        emit(config)?;
                    }
                }
                None => one(&made["peer"])?,
            }
        }
        PeerAction::List {
            group,
            revoked,
            limit,
            after,
        } => list(
            &client,
            api.json,
            PeerFilter { group, revoked },
            limit,
            after,
        )?,
        PeerAction::Show { peer } => one(&client.get(&peer_path(&peer))?)?,
        PeerAction::Revoke { peer } => {
            one(&client.post(&format!("{}/revoke", peer_path(&peer)), &json!({}))?)?
        }
        PeerAction::Rm { peer } => {
            client.delete(&peer_path(&peer))?;
            if !api.json {
                eprintln!("peer {peer} removed");
            }
        }
        PeerAction::Config { peer, qr } => {
            if qr {
                return Err(anyhow!("{}", manage::api::NO_KEY_FOR_QR));
            }
            emit(&client.text(&format!("{}/config", peer_path(&peer)))?)?;
        }
    }
    Ok(())
}

/// `peer list`: every page, or the one `limit` asks for (the next page's start on stderr).
fn list(
    client: &ApiClient,
    json: bool,
    filter: PeerFilter,
    limit: Option<usize>,
    after: i64,
) -> Result<()> {
    let peers = match limit {
        Some(limit) => {
            let (peers, next) = client.peer_page(&filter, after, limit)?;
            if let Some(next) = next {
                eprintln!("more: --after {next}");
            }
            peers
        }
        None => client.all_peers(&filter, after)?,
    };
    if json {
        print_json(&Value::Array(peers))
    } else {
        emit(&peer_table(&peers))
    }
}
