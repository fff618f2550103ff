//! Real WireGuard implementations as peers: `wireguard-go`, `boringtun-cli`, and xgate itself,
//! each running in a namespace and configured through its UAPI socket with the real `wg` tool.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use proto::{PrivateKey, PublicKey};

use crate::netns::{run, Netns};
use crate::process::{find_program, wait_until, Daemon};

/// Which userspace WireGuard to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implementation {
    /// wireguard-go (Debian package).
    WireguardGo,
    /// boringtun-cli (crates.io).
    Boringtun,
}

impl Implementation {
    /// The name people know it by.
    pub fn label(self) -> &'static str {
        match self {
            Implementation::WireguardGo => "wireguard-go",
            Implementation::Boringtun => "boringtun-cli",
        }
    }

    fn program(self) -> Result<PathBuf> {
        let name = self.label();
        find_program(name).ok_or_else(|| {
            anyhow!("{name} is not installed; run `make deps` (apt wireguard-go; cargo install boringtun-cli)")
        })
    }
}

/// The UAPI socket of interface `iface`.
pub fn uapi_socket(iface: &str) -> PathBuf {
    Path::new("/var/run/wireguard").join(format!("{iface}.sock"))
}

/// Waits until something answers on `iface`'s UAPI socket.
pub fn wait_for_socket(iface: &str, timeout: Duration) -> bool {
    let path = uapi_socket(iface);
    wait_until(timeout, || UnixStream::connect(&path).is_ok())
}

/// `wg ARGS...` (inside `ns`).
pub fn wg(ns: &Netns, args: &[&str]) -> Result<String> {
    ns.run("wg", args)
}

/// A userspace WireGuard interface in a namespace, with a fresh key.
pub struct WgPeer {
    /// Which implementation.
    pub implementation: Implementation,
    /// Interface name.
    pub iface: String,
    /// Its private key.
    pub private_key: PrivateKey,
    /// Its public key.
    pub public_key: PublicKey,
    /// The process.
    pub daemon: Daemon,
    ns_name: String,
}

impl WgPeer {
    /// Starts `implementation` as interface `iface` in `ns`, logging to `log_dir`.
    pub fn start(
        implementation: Implementation,
        ns: &Netns,
        iface: &str,
        log_dir: &Path,
    ) -> Result<Self> {
        let program = implementation.program()?;
        let mut cmd = ns.command(program.to_str().unwrap_or("wireguard-go"));
        match implementation {
            Implementation::WireguardGo => cmd.args(["-f", iface]).env("LOG_LEVEL", "error"),
            Implementation::Boringtun => cmd.args(["-f", "--disable-drop-privileges", iface]),
        };
        let log = log_dir.join(format!("{}-{iface}.log", implementation.label()));
        let mut daemon = Daemon::spawn(cmd, &log)?;
        if !wait_for_socket(iface, Duration::from_secs(10)) {
            let alive = daemon.is_running();
            bail!(
                "{} {iface} did not open its UAPI socket (running: {alive}): {}",
                implementation.label(),
                daemon.log_text()
            );
        }
        let private_key = PrivateKey::generate(&mut rand_core::OsRng);
        let key_file = log_dir.join(format!("{iface}.key"));
        std::fs::write(&key_file, format!("{}\n", private_key.to_base64()))?;
        wg(
            ns,
            &[
                "set",
                iface,
                "private-key",
                key_file.to_str().unwrap_or_default(),
            ],
        )?;
        Ok(Self {
            implementation,
            iface: iface.to_string(),
            public_key: private_key.public_key(),
            private_key,
            daemon,
            ns_name: ns.name().to_string(),
        })
    }

    /// Adds addresses and brings the interface up.
    pub fn configure(&self, ns: &Netns, addresses: &[&str], mtu: u32) -> Result<()> {
        for a in addresses {
            ns.ip(&["addr", "add", a, "dev", &self.iface])?;
        }
        ns.ip(&["link", "set", &self.iface, "mtu", &mtu.to_string(), "up"])?;
        Ok(())
    }

    /// `wg set IFACE peer KEY [endpoint E] allowed-ips A [persistent-keepalive K]`.
    pub fn set_peer(
        &self,
        ns: &Netns,
        peer: &PublicKey,
        endpoint: Option<&str>,
        allowed_ips: &str,
        keepalive: Option<u16>,
    ) -> Result<()> {
        let key = peer.to_base64();
        let keepalive = keepalive.map(|k| k.to_string());
        let mut args = vec!["set", self.iface.as_str(), "peer", key.as_str()];
        if let Some(e) = endpoint {
            args.extend(["endpoint", e]);
        }
        args.extend(["allowed-ips", allowed_ips]);
        if let Some(k) = keepalive.as_deref() {
            args.extend(["persistent-keepalive", k]);
        }
        wg(ns, &args).map(|_| ())
    }

    /// The namespace this peer runs in.
    pub fn ns_name(&self) -> &str {
        &self.ns_name
    }
}

/// An xgate daemon started by a test or the demo.
pub struct Xgate {
    /// Interface name.
    pub iface: String,
    /// Its public key.
    pub public_key: PublicKey,
    /// The process.
    pub daemon: Daemon,
}

impl Xgate {
    /// Runs `xgate up ARGS...` in `ns` and waits until its UAPI socket answers.
    pub fn start(
        binary: &Path,
        ns: &Netns,
        args: &[&str],
        iface: &str,
        log: &Path,
    ) -> Result<Self> {
        Self::start_with_env(binary, ns, args, iface, log, &[])
    }

    /// The same with `env` added to its environment.
    pub fn start_with_env(
        binary: &Path,
        ns: &Netns,
        args: &[&str],
        iface: &str,
        log: &Path,
        env: &[(String, String)],
    ) -> Result<Self> {
        let mut cmd = ns.command(binary.to_str().unwrap_or("xgate"));
        cmd.arg("up").args(args).env("RUST_LOG", "info");
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let mut daemon = Daemon::spawn(cmd, log)?;
        if !wait_for_socket(iface, Duration::from_secs(15)) {
            let alive = daemon.is_running();
            bail!(
                "xgate {iface} did not open its UAPI socket (running: {alive}): {}",
                daemon.log_text()
            );
        }
        let text = wg(ns, &["show", iface, "public-key"]).context("reading xgate's public key")?;
        let public_key = PublicKey::from_base64(text.trim())
            .map_err(|e| anyhow!("xgate public key {text:?}: {e}"))?;
        Ok(Self {
            iface: iface.to_string(),
            public_key,
            daemon,
        })
    }
}

/// One peer line of `wg show IFACE dump`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpPeer {
    /// Public key, base64.
    pub public_key: String,
    /// Endpoint, or "(none)".
    pub endpoint: String,
    /// Allowed IPs, comma-separated.
    pub allowed_ips: String,
    /// Latest handshake, seconds since the Unix epoch (0 = never).
    pub latest_handshake: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
}

/// The peers `wg show IFACE dump` lists.
pub fn wg_dump_peers(ns: &Netns, iface: &str) -> Result<Vec<DumpPeer>> {
    let text = run(ns.command("wg").args(["show", iface, "dump"]))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() >= 8).then(|| DumpPeer {
                public_key: f[0].to_string(),
                endpoint: f[2].to_string(),
                allowed_ips: f[3].to_string(),
                latest_handshake: f[4].parse().unwrap_or(0),
                rx_bytes: f[5].parse().unwrap_or(0),
                tx_bytes: f[6].parse().unwrap_or(0),
            })
        })
        .collect())
}
