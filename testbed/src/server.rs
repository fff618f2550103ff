//! One server in a namespace of its own: xgate started from an [`XgateConfig`], or a peer
//! implementation (`wireguard-go`, `boringtun-cli`) configured through `wg`. The namespace
//! tests, the bench and the loadtest all start their server here; each adds its own clients.
//! Dropping it stops the process (by PID), then removes the namespace.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use proto::PublicKey;
use serde_json::Value;

use crate::clients::{wg, Implementation, WgPeer, Xgate};
use crate::config::XgateConfig;
use crate::netns::Netns;

enum Process {
    Xgate(Box<Xgate>),
    Peer(Box<WgPeer>),
}

/// A namespace with (once started) one server process in it.
pub struct Server {
    /// Dropped before the namespace, so the process stops by its own signal handling.
    process: Option<Process>,
    /// The server's namespace.
    pub ns: Netns,
    /// The server's interface (and UAPI socket) name.
    pub iface: String,
    /// Scratch directory: configs, keys, logs.
    pub dir: PathBuf,
    xgate_binary: Option<PathBuf>,
    api_token: Option<String>,
    starts: u32,
    /// Added to xgate's environment (a test's fault trigger, say).
    pub env: Vec<(String, String)>,
}

impl Server {
    /// Creates namespace `ns` for a server whose interface will be `iface`, with `dir` (made
    /// if missing) for its files.
    pub fn new(ns: &str, iface: &str, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            process: None,
            ns: Netns::create(ns)?,
            iface: iface.into(),
            dir: dir.to_path_buf(),
            xgate_binary: None,
            api_token: None,
            starts: 0,
            env: Vec::new(),
        })
    }

    /// Starts `xgate up` from `config` (written to `xgate.toml` in the scratch directory,
    /// the log to `xgate-N.log`), stopping a server already running; waits for its socket
    /// and, when the config has an API, for its first token.
    pub fn start_xgate(&mut self, binary: &Path, config: &XgateConfig) -> Result<PublicKey> {
        self.process = None;
        let path = self.dir.join("xgate.toml");
        config.write(&path)?;
        let log = self.dir.join(format!("xgate-{}.log", self.starts));
        self.starts += 1;
        let path = path
            .to_str()
            .context("the scratch directory's path is not UTF-8")?;
        let args = ["--config", path];
        let xgate = Xgate::start_with_env(binary, &self.ns, &args, &self.iface, &log, &self.env)?;
        self.api_token = match config.api_secret_file() {
            Some(file) => Some(
                std::fs::read_to_string(&file)
                    .with_context(|| format!("xgate made no API token in {}", file.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        let key = xgate.public_key;
        self.xgate_binary = Some(binary.to_path_buf());
        self.process = Some(Process::Xgate(Box::new(xgate)));
        Ok(key)
    }

    /// Starts `implementation` as the server: tunnel `addresses`, inner MTU 1420, UDP `port`.
    pub fn start_peer(
        &mut self,
        implementation: Implementation,
        addresses: &[&str],
        port: u16,
    ) -> Result<PublicKey> {
        self.process = None;
        let peer = WgPeer::start(implementation, &self.ns, &self.iface, &self.dir)?;
        peer.configure(&self.ns, addresses, 1420)?;
        self.wg(&["set", &self.iface, "listen-port", &port.to_string()])?;
        let key = peer.public_key;
        self.process = Some(Process::Peer(Box::new(peer)));
        Ok(key)
    }

    /// The running xgate, mutably (to signal or kill it).
    pub fn xgate_mut(&mut self) -> Option<&mut Xgate> {
        match &mut self.process {
            Some(Process::Xgate(x)) => Some(x),
            _ => None,
        }
    }

    /// Hands over the running xgate (a test then stops it its own way).
    pub fn take_xgate(&mut self) -> Option<Xgate> {
        match self.process.take() {
            Some(Process::Xgate(x)) => Some(*x),
            other => {
                self.process = other;
                None
            }
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(&mut self) {
        self.process = None;
    }

    fn daemon(&self) -> Option<&crate::Daemon> {
        match &self.process {
            Some(Process::Xgate(x)) => Some(&x.daemon),
            Some(Process::Peer(p)) => Some(&p.daemon),
            None => None,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> Result<u32> {
        self.daemon()
            .and_then(crate::Daemon::pid)
            .context("the server is not running")
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        match &mut self.process {
            Some(Process::Xgate(x)) => x.daemon.is_running(),
            Some(Process::Peer(p)) => p.daemon.is_running(),
            None => false,
        }
    }

    /// The server's log so far (empty before it starts).
    pub fn log(&self) -> String {
        self.daemon()
            .map(crate::Daemon::log_text)
            .unwrap_or_default()
    }

    /// Pins every thread of the server (and threads it makes later) to `cpus`.
    pub fn pin(&self, cpus: &[usize]) -> Result<()> {
        crate::process::pin_process(self.pid()?, cpus)
    }

    /// The server's CPU time so far (user + system, all threads), in seconds.
    pub fn cpu_seconds(&self) -> Result<f64> {
        crate::procstat::cpu_seconds(self.pid()?).context("the server exited")
    }

    /// The API token xgate made at its last start (when its config has an API).
    pub fn api_token(&self) -> Option<&str> {
        self.api_token.as_deref()
    }

    /// `wg ARGS` in the server's namespace.
    pub fn wg(&self, args: &[&str]) -> Result<String> {
        wg(&self.ns, args)
    }

    /// Adds a peer by UAPI (`wg set`), the same for every implementation.
    pub fn add_peer(&self, key: &PublicKey, allowed_ips: &str) -> Result<()> {
        let key = key.to_base64();
        self.wg(&["set", &self.iface, "peer", &key, "allowed-ips", allowed_ips])
            .map(|_| ())
    }

    /// A kernel interface counter in the server's namespace (`/sys/class/net/IF/statistics`).
    pub fn link_counter(&self, iface: &str, what: &str) -> Result<u64> {
        let path = format!("/sys/class/net/{iface}/statistics/{what}");
        let text = self.ns.run("cat", &[&path])?;
        text.trim()
            .parse()
            .with_context(|| format!("{path}: {text:?}"))
    }

    /// `xgate show IFACE --json`, parsed (xgate only).
    pub fn show(&self) -> Result<Value> {
        let binary = self.xgate_binary.as_ref().context("xgate never ran here")?;
        let binary = binary.to_str().context("xgate's path is not UTF-8")?;
        let out = self.ns.run(binary, &["show", &self.iface, "--json"])?;
        serde_json::from_str(&out).context("`xgate show --json` printed no JSON")
    }

    /// A datapath counter from `xgate show` (`stats.NAME`); an error if xgate has none by
    /// that name, so a renamed counter fails the test that reads it.
    pub fn stat(&self, name: &str) -> Result<u64> {
        show_number(&self.show()?, "stats", name)
    }

    /// A drop counter from `xgate show` (`drops.REASON`); an error for an unknown reason.
    pub fn drops(&self, reason: &str) -> Result<u64> {
        show_number(&self.show()?, "drops", reason)
    }
}

/// `show[table][name]` as a number, or an error naming what is there.
pub fn show_number(show: &Value, table: &str, name: &str) -> Result<u64> {
    match show[table].get(name) {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| anyhow!("xgate show: {table}.{name} is {v}, not a count")),
        None => {
            let known: Vec<&String> = show[table]
                .as_object()
                .map(|m| m.keys().collect())
                .unwrap_or_default();
            bail!("xgate show has no {table}.{name}; it has {known:?}")
        }
    }
}
