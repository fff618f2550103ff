//! The `xgate` command: keys, config, the daemon, and its status.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use control::config::{self, Settings};
use proto::{PresharedKey, PrivateKey};
use rand_core::RngCore;

// The daemon's allocations (control plane, session installs, API) come from many threads;
// mimalloc's per-thread heaps keep them off each other's locks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// xgate: a WireGuard-compatible VPN concentrator.
#[derive(Parser)]
#[command(version, about)]
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
    /// Show a running interface: peers, endpoints, handshakes, traffic, drops.
    Show {
        /// Interface name.
        #[arg(default_value = config::DEFAULT_INTERFACE)]
        interface: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

fn read_stdin_key() -> Result<PrivateKey> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading stdin")?;
    PrivateKey::from_base64(&text).map_err(|e| anyhow!("stdin does not hold a private key: {e}"))
}

fn init(path: &PathBuf, force: bool) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            anyhow!(
                "{} already exists; pass --force to overwrite it",
                path.display()
            )
        }
        _ => anyhow!("cannot write {}: {e}", path.display()),
    })?;
    let key = PrivateKey::generate(&mut rand_core::OsRng);
    file.write_all(config::default_config_text(&key).as_bytes())?;
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
        Command::Genkey => println!(
            "{}",
            PrivateKey::generate(&mut rand_core::OsRng).to_base64()
        ),
        Command::Genpsk => {
            let mut k = [0u8; 32];
            rand_core::OsRng.fill_bytes(&mut k);
            println!("{}", PresharedKey(k).to_base64());
        }
        Command::Pubkey => println!("{}", read_stdin_key()?.public_key()),
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
                        .map_err(|e| anyhow!("config {}: {e}", path.display()))?;
                    if let Some(name) = interface {
                        datapath::tun::validate_name(&name)
                            .map_err(|e| anyhow!("--interface: {e}"))?;
                        s.name = name;
                    }
                    s
                }
                (None, Some(name)) => Settings::bare(name).map_err(|e| anyhow!("{e}"))?,
                (None, None) => Settings::defaults().map_err(|e| anyhow!("{e}"))?,
            };
            init_logging(log_format);
            control::daemon::up(settings)?;
        }
        Command::Show { interface, json } => {
            let shown = control::show::fetch(&interface)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                print!("{}", control::show::render(&shown));
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: what failed and how to fix it, as operators read it in a journal.
            eprintln!("xgate: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
