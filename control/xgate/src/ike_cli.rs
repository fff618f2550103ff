//! `xgate ike ...`: IKEv2 users and SAs through the HTTP API.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::{json, Value};

use crate::peer_cli::ApiArgs;
use crate::{emit, print_json};

/// What to do with IKEv2.
#[derive(Subcommand)]
pub enum IkeAction {
    /// IKEv2 users: add, list, remove, client configuration.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// The IKE SAs that are up (who, from where, which address, which cipher) and the
    /// responder's counters.
    Status,
}

/// What to do with IKEv2 users.
#[derive(Subcommand)]
pub enum UserAction {
    /// Register an IKEv2 user; prints its pre-shared key (made here unless --psk-file gives
    /// one, none with --certificate or --password) and its addresses.
    Add {
        /// Name, unique among IKEv2 users.
        name: String,
        /// The identity the client sends (default: the name): an e-mail address, a host name
        /// or an IP address.
        #[arg(long)]
        identity: Option<String>,
        /// Group (picks the address pool, DNS and what the user reaches).
        #[arg(long)]
        group: Option<String>,
        /// A file holding the pre-shared key (not on the command line, where `ps` shows it).
        #[arg(long)]
        psk_file: Option<PathBuf>,
        /// Authenticates by a certificate naming its identity (`xgate pki client` issues
        /// one), not a pre-shared key.
        #[arg(long, conflicts_with = "psk_file")]
        certificate: bool,
        /// Logs in with a password (EAP-MSCHAPv2, as the VPN clients of Windows and Apple
        /// systems do): asked for at a terminal, else the first line of standard input. xgate
        /// keeps only its NT hash.
        #[arg(long, conflicts_with_all = ["psk_file", "certificate"])]
        password: bool,
    },
    /// List IKEv2 users.
    List,
    /// Remove an IKEv2 user; its SAs are closed.
    Rm {
        /// User id.
        id: i64,
    },
    /// Print a user's strongSwan client configuration (swanctl.conf, with its key).
    Config {
        /// User id.
        id: i64,
    },
    /// Print the profile that sets up a user's device (what to do with it goes to stderr).
    Profile {
        /// User id.
        id: i64,
        /// mobileconfig (macOS, iOS), powershell (Windows), sswan (strongSwan's Android
        /// app) or swanctl (strongSwan).
        #[arg(long, default_value = "mobileconfig")]
        format: String,
    },
}

/// Runs `action` against the API `api` names.
pub fn run(action: IkeAction, api: &ApiArgs) -> Result<()> {
    let client = api.client()?;
    match action {
        IkeAction::User {
            action:
                UserAction::Add {
                    name,
                    identity,
                    group,
                    psk_file,
                    certificate,
                    password,
                },
        } => {
            let mut body = json!({ "name": name });
            if let Some(i) = identity {
                body["identity"] = json!(i);
            }
            if let Some(g) = group {
                body["group"] = json!(g);
            }
            if certificate {
                body["auth"] = json!("certificate");
            }
            if password {
                body["auth"] = json!("eap");
                body["password"] = json!(read_password()?);
            }
            if let Some(path) = psk_file {
                let psk = std::fs::read_to_string(&path)
                    .with_context(|| format!("--psk-file {}", path.display()))?;
                body["psk"] = json!(psk.trim_end_matches(['\r', '\n']));
            }
            let made = client.post("/api/v1/ike/users", &body)?;
            for warning in made["warnings"].as_array().into_iter().flatten() {
                eprintln!("warning: {}", warning.as_str().unwrap_or_default());
            }
            if api.json {
                return print_json(&made);
            }
            // The table to stderr, the key alone to stdout (`> alice.psk`).
            eprint!("{}", users_table(std::slice::from_ref(&made)));
            match made["psk"].as_str() {
                Some(psk) => emit(&format!("{psk}\n")),
                None if made["auth"] == "eap" => {
                    eprintln!(
                        "it logs in with its password as {} (EAP-MSCHAPv2); the server proves \
                         itself by its certificate ([ike] certificate)",
                        text(&made["identity"])
                    );
                    Ok(())
                }
                None => {
                    eprintln!(
                        "it authenticates by certificate: issue one with `xgate pki client {} \
                         --identity {}`",
                        text(&made["name"]),
                        text(&made["identity"])
                    );
                    Ok(())
                }
            }
        }
        IkeAction::User {
            action: UserAction::List,
        } => {
            let listed = client.get("/api/v1/ike/users")?;
            if api.json {
                return print_json(&listed);
            }
            let users = listed["users"].as_array().cloned().unwrap_or_default();
            emit(&users_table(&users))
        }
        IkeAction::User {
            action: UserAction::Rm { id },
        } => {
            client.delete(&format!("/api/v1/ike/users/{id}"))?;
            if !api.json {
                eprintln!("IKEv2 user {id} removed");
            }
            Ok(())
        }
        IkeAction::User {
            action: UserAction::Config { id },
        } => emit(&client.text(&format!("/api/v1/ike/users/{id}/config"))?),
        IkeAction::User {
            action: UserAction::Profile { id, format },
        } => {
            let path = format!(
                "/api/v1/ike/users/{id}/profile?format={}",
                manage::client::component(&format)
            );
            let profile = client.text(&path)?;
            if let Some(f) = manage::api::ProfileFormat::parse(&format) {
                for line in f.instructions() {
                    eprintln!("{line}");
                }
            }
            emit(&profile)
        }
        IkeAction::Status => {
            let state = client.get("/api/v1/ike/sas")?;
            if api.json {
                return print_json(&state);
            }
            emit(&sas_table(&state))
        }
    }
}

/// A text of `v`, or "-".
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Addresses as one comma-separated column.
fn addresses(v: &Value) -> String {
    let list: Vec<String> = v.as_array().into_iter().flatten().map(text).collect();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(",")
    }
}

/// IKEv2 users as a table.
fn users_table(users: &[Value]) -> String {
    let mut out = format!(
        "{:<5} {:<16} {:<28} {:<12} {:<10} {}\n",
        "ID", "NAME", "IDENTITY", "AUTH", "GROUP", "ADDRESSES"
    );
    for u in users {
        let _ = writeln!(
            out,
            "{:<5} {:<16} {:<28} {:<12} {:<10} {}",
            text(&u["id"]),
            text(&u["name"]),
            text(&u["identity"]),
            text(&u["auth"]),
            text(&u["group"]),
            addresses(&u["addresses"])
        );
    }
    out
}

/// The SAs that are up, and the counters worth a glance.
fn sas_table(state: &Value) -> String {
    let mut out = format!(
        "{:<28} {:<16} {:<24} {:<26} {:<18} {:>10} {:>10} {}\n",
        "IDENTITY", "NAME", "REMOTE", "ADDRESSES", "CIPHER", "RX BYTES", "TX BYTES", "UP"
    );
    for sa in state["sas"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<28} {:<16} {:<24} {:<26} {:<18} {:>10} {:>10} {}",
            text(&sa["identity"]),
            text(&sa["name"]),
            text(&sa["remote"]),
            addresses(&sa["addresses"]),
            text(&sa["encryption"]),
            text(&sa["rx_bytes"]),
            text(&sa["tx_bytes"]),
            crate::show::ago(sa["up_since"].as_u64())
        );
    }
    let c = &state["counters"];
    let _ = writeln!(
        out,
        "\nusers {}; authenticated {}, refused {} (wrong key or certificate, or unknown user), \
         no proposal {}, cookies sent {}, dead peers {}",
        text(&state["users"]),
        text(&c["auth_succeeded"]),
        text(&c["auth_failed"]),
        text(&c["no_proposal_chosen"]),
        text(&c["cookies_sent"]),
        text(&c["dead_peers"])
    );
    out
}

/// A new user's password: typed twice at a terminal (not echoed), else the first line of
/// standard input (`echo "$PASSWORD" | xgate ike user add bob --password`).
fn read_password() -> Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ").context("reading the password")?;
        let again = rpassword::prompt_password("again: ").context("reading the password")?;
        anyhow::ensure!(
            first == again,
            "the two passwords differ; nothing was saved"
        );
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(
        !password.is_empty(),
        "no password on standard input: type one at a terminal, or pipe it in"
    );
    Ok(password)
}
