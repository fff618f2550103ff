//! The `xgate` command: keys, config, the daemon, and its status.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use plane::config;

#[cfg(test)]
mod config_fuzz;
mod daemon;
mod ike_cli;
mod ike_start;
mod panics;
mod peer_cli;
mod pki_cli;
mod settings;
mod show;
mod template;
mod token_cli;

use peer_cli::{ApiArgs, PeerAction};
use token_cli::TokenAction;

use proto::{PresharedKey, PrivateKey};
use rand_core::RngCore;
use serde_json::Value;
use settings::Settings;

// The daemon's allocations (control plane, session installs, API) come from many threads;
// mimalloc's per-thread heaps keep them off each other's locks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// xgate: a WireGuard-compatible VPN concentrator.
#[derive(Parser)]
#[command(version = VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Print a new private key (base64), as `wg genkey` does.
    Genkey,
    /// Print a new preshared key (base64), as `wg genpsk` does.
    Genpsk,
    /// Read a private key on stdin, print its public key, as `wg pubkey` does.
    Pubkey,
    /// Write a commented default config with a fresh private key.
    Init {
        /// Where to write it.
        #[arg(default_value = "/etc/xgate/xgate.toml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Run the concentrator in the foreground until SIGINT/SIGTERM.
    Up {
        /// Config file; without one, the embedded defaults are used.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Interface name. Without --config: start a bare interface configured only through
        /// its UAPI socket (wg, wg-quick), as wireguard-go does.
        #[arg(long, short)]
        interface: Option<String>,
        /// Accepted for wireguard-go compatibility; xgate up always runs in the foreground.
        #[arg(long, short)]
        foreground: bool,
        /// Log format.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Manage the registry's peers through the HTTP API.
    Peer {
        #[command(subcommand)]
        action: PeerAction,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// IKEv2 users (PSK or certificate) and the IKE SAs that are up, through the HTTP API.
    Ike {
        #[command(subcommand)]
        action: ike_cli::IkeAction,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// A small certificate authority for IKEv2: CA, server and client certificates, CRL.
    Pki {
        #[command(subcommand)]
        action: pki_cli::PkiAction,
    },
    /// Make, list and revoke API tokens (the daemon rereads its token file within a second).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Live status from the HTTP API: peers (endpoint, handshake, traffic) and workers.
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The nodes sharing this node's registry (PostgreSQL), from their heartbeats.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show a running interface (every one without a name, as `wg show`): peers, endpoints,
    /// handshakes, traffic, drops.
    Show {
        /// Interface name.
        interface: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// What to ask of the cluster.
#[derive(Subcommand)]
enum ClusterAction {
    /// Each node: up or silent, heartbeat age, peers, sessions, handshakes per second.
    Status,
    /// Reach every other node's recent users from this node now (for keepalived's
    /// notify_master: the service address just arrived here).
    TakeOver,
}

/// Writes `text` to stdout. A reader that went away (`xgate peer list | head -1`) ends the
/// program quietly with status 0, as `wg` does, instead of a panic on the broken pipe.
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        written => written.context("writing to stdout"),
    }
}

fn print_json(v: &Value) -> Result<()> {
    emit(&format!("{}\n", serde_json::to_string_pretty(v)?))
}

fn read_stdin_key() -> Result<PrivateKey> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading stdin")?;
    PrivateKey::from_base64(&text).map_err(|e| anyhow!("stdin does not hold a private key: {e}"))
}

/// Creates `path` with `mode` (its directory 0700 if missing); an existing file is refused
/// unless `force`, and then takes `mode` too, whatever it was.
fn create_file(path: &Path, mode: u32, force: bool) -> Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(mode);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            anyhow!(
                "{} already exists; pass --force to overwrite it",
                path.display()
            )
        }
        _ => anyhow!("cannot write {}: {e}", path.display()),
    })?;
    // A private key stays 0600 even when --force overwrites a file whose mode was wider
    // (the mode above applies only to a file this call creates).
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(file)
}

fn init(path: &Path, force: bool) -> Result<()> {
    let mut file = create_file(path, 0o600, force)?;
    let key = PrivateKey::generate(&mut rand_core::OsRng);
    file.write_all(template::default_config_text(&key).as_bytes())?;
    eprintln!(
        "wrote {} (public key {}); start with: xgate up --config {}",
        path.display(),
        key.public_key(),
        path.display()
    );
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Genkey => emit(&format!(
            "{}\n",
            PrivateKey::generate(&mut rand_core::OsRng).to_base64()
        ))?,
        Command::Genpsk => {
            let mut k = [0u8; 32];
            rand_core::OsRng.fill_bytes(&mut k);
            emit(&format!("{}\n", PresharedKey(k).to_base64()))?;
        }
        Command::Pubkey => emit(&format!("{}\n", read_stdin_key()?.public_key()))?,
        Command::Init { path, force } => init(&path, force)?,
        Command::Up {
            config,
            interface,
            foreground: _,
            log_format,
        } => {
            let settings = match (&config, &interface) {
                (Some(path), _) => {
                    let mut s = Settings::load(path)
                        .map_err(|e| ConfigFailure(format!("{}: {e}", path.display())))?;
                    if let Some(name) = interface {
                        config::validate_interface_name(&name)
                            .map_err(|e| ConfigFailure(format!("--interface: {e}")))?;
                        s.interface.name = name;
                    }
                    s
                }
                (None, Some(name)) => {
                    Settings::bare(name).map_err(|e| ConfigFailure(e.to_string()))?
                }
                (None, None) => Settings::defaults().map_err(|e| ConfigFailure(e.to_string()))?,
            };
            init_logging(log_format);
            daemon::up(settings)?;
        }
        Command::Peer { action, api } => peer_cli::run(action, &api)?,
        Command::Ike { action, api } => ike_cli::run(action, &api)?,
        Command::Token { action } => token_cli::run(action)?,
        Command::Pki { action } => pki_cli::run(action)?,
        Command::Status { api } => {
            let status = api.client()?.get("/api/v1/status")?;
            for warning in status["warnings"].as_array().into_iter().flatten() {
                eprintln!("warning: {}", warning.as_str().unwrap_or_default());
            }
            if api.json {
                print_json(&status)?;
            } else {
                emit(&manage::client::status_table(&status))?;
            }
        }
        Command::Cluster {
            action: ClusterAction::TakeOver,
            api,
        } => {
            let taken = api
                .client()?
                .post("/api/v1/cluster/take-over", &serde_json::json!({}))?;
            if api.json {
                print_json(&taken)?;
            } else {
                for t in taken["taken"].as_array().into_iter().flatten() {
                    println!(
                        "{}: {} sessions claimed, {} handshakes started",
                        t["node"].as_str().unwrap_or_default(),
                        t["sessions"],
                        t["reached"]
                    );
                }
            }
        }
        Command::Cluster {
            action: ClusterAction::Status,
            api,
        } => {
            let cluster = api.client()?.get("/api/v1/cluster")?;
            if api.json {
                print_json(&cluster)?;
            } else {
                emit(&manage::client::cluster_table(&cluster))?;
            }
        }
        Command::Show { interface, json } => match interface {
            Some(name) => {
                let shown = show::fetch(&name)?;
                if json {
                    print_json(&serde_json::to_value(&shown)?)?;
                } else {
                    emit(&show::render(&shown))?;
                }
            }
            None => {
                let all = show::fetch_all()?;
                if json {
                    print_json(&serde_json::to_value(&all)?)?;
                } else if all.is_empty() {
                    eprintln!("no xgate interface is running here");
                } else {
                    let texts: Vec<String> = all.iter().map(show::render).collect();
                    emit(&texts.join("\n"))?;
                }
            }
        },
    }
    Ok(())
}

/// The version and the commit it was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("XGATE_COMMIT"), ")");

/// A configuration file or option that cannot be used (exit status 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigFailure(pub String);

/// Exit statuses: 0 done, 1 failed while running, 2 usage (clap's), 3 configuration.
const EXIT_CONFIG: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: what failed and how to fix it, as operators read it in a journal.
            eprintln!("xgate: error: {e:#}");
            if e.downcast_ref::<ConfigFailure>().is_some() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
