//! The server under test, in a namespace of its own, and the users' namespace joined to it
//! by a veth pair: xgate (users registered through its HTTP API) or a peer implementation
//! (`boringtun-cli`, `wireguard-go`; users configured through `wg addconf`). Everything is
//! removed when dropped: processes by PID, namespaces by name.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use proto::{PrivateKey, PublicKey};
use serde_json::{json, Value};
use testbed::clients::wg;
use testbed::{veth, Implementation, Netns, WgPeer, Xgate};

use crate::results::ServerCounters;

/// The server's underlay address (its side of the veth).
pub const SERVER_UNDERLAY: Ipv4Addr = Ipv4Addr::new(10, 181, 0, 1);
/// The users' side of the veth.
const CLIENT_UNDERLAY: Ipv4Addr = Ipv4Addr::new(10, 181, 0, 2);
/// The server's tunnel address (users ping it).
pub const SERVER_TUNNEL_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// Users' source addresses: user i sends from 10.180.0.0 + 1 + i (local to the users'
/// namespace as a whole /16, so no address is configured one by one).
const USER_PREFIX: &str = "10.180.0.0/16";
/// Flood sources (mixed-flood), local the same way.
const FLOOD_PREFIX: &str = "10.182.0.0/24";
const PORT: u16 = 51820;

/// The server's interface name for a run: the UAPI socket (/var/run/wireguard/<name>.sock)
/// is global, so runs side by side (tests) need names of their own.
fn iface_name(tag: &str) -> String {
    let mut name = format!("xl{tag}");
    name.truncate(15);
    name
}
const API: &str = "127.0.0.1:9180";

/// The source address of user `i`.
pub fn user_source(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 180, 0, 0)) + 1 + i)
}

/// The source address of flood source `i` (0..=253).
pub fn flood_source(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 182, 0, 1 + (i % 254) as u8)
}

/// Which server a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetKind {
    /// xgate (`xgate up`).
    Xgate,
    /// boringtun-cli from crates.io.
    BoringtunCli,
    /// wireguard-go from Debian.
    WireguardGo,
}

impl TargetKind {
    /// The name in reports and file names.
    pub fn label(self) -> &'static str {
        match self {
            TargetKind::Xgate => "xgate",
            TargetKind::BoringtunCli => "boringtun-cli",
            TargetKind::WireguardGo => "wireguard-go",
        }
    }
}

/// How to start a target.
#[derive(Debug, Clone)]
pub struct TargetOptions {
    /// The `xgate` binary.
    pub xgate: PathBuf,
    /// Logs, keys, registry.
    pub dir: PathBuf,
    /// CPUs the server is pinned to (all its threads).
    pub cpus: Vec<usize>,
    /// Makes namespace names unique per run.
    pub tag: String,
}

enum Process {
    Xgate(Box<Xgate>),
    Peer(Box<WgPeer>),
}

/// A running server and the users' namespace.
pub struct Target {
    /// Which server.
    pub kind: TargetKind,
    /// The users' namespace (dropped before the server's).
    pub client_ns: Netns,
    process: Process,
    /// The server's namespace.
    pub server_ns: Netns,
    /// Its public key.
    pub public_key: PublicKey,
    /// Its process id.
    pub pid: u32,
    /// Where users send to.
    pub endpoint: SocketAddr,
    /// CPUs it is pinned to.
    pub cpus: usize,
    token: Option<String>,
    dir: PathBuf,
    iface: String,
}

fn pin(pid: u32, cpus: &[usize]) -> Result<()> {
    let list: Vec<String> = cpus.iter().map(ToString::to_string).collect();
    testbed::netns::run(std::process::Command::new("taskset").args([
        "-a",
        "-cp",
        &list.join(","),
        &pid.to_string(),
    ]))
    .with_context(|| format!("pinning the server ({pid}) to CPUs {list:?}"))?;
    Ok(())
}

impl Target {
    /// Creates both namespaces and starts the server, pinned to `opts.cpus`.
    pub fn start(kind: TargetKind, opts: &TargetOptions) -> Result<Self> {
        std::fs::create_dir_all(&opts.dir)
            .with_context(|| format!("creating {}", opts.dir.display()))?;
        let server_ns = Netns::create(&format!("xlt-srv-{}", opts.tag))?;
        let client_ns = Netns::create(&format!("xlt-cli-{}", opts.tag))?;
        veth(
            &server_ns,
            "xlts",
            &format!("{SERVER_UNDERLAY}/24"),
            &client_ns,
            "xltc",
            &format!("{CLIENT_UNDERLAY}/24"),
        )?;
        for prefix in [USER_PREFIX, FLOOD_PREFIX] {
            // Every address of the prefix is local to the users' namespace (bindable)...
            client_ns.ip(&["route", "add", "local", prefix, "dev", "lo"])?;
            // ...and the server routes replies to it over the veth.
            server_ns.ip(&["route", "add", prefix, "via", &CLIENT_UNDERLAY.to_string()])?;
        }
        let iface = iface_name(&opts.tag);
        let (process, public_key, pid, token) = match kind {
            TargetKind::Xgate => start_xgate(&server_ns, opts)?,
            TargetKind::BoringtunCli | TargetKind::WireguardGo => {
                let implementation = if kind == TargetKind::BoringtunCli {
                    Implementation::Boringtun
                } else {
                    Implementation::WireguardGo
                };
                let peer = WgPeer::start(implementation, &server_ns, &iface, &opts.dir)?;
                peer.configure(&server_ns, &[&format!("{SERVER_TUNNEL_IP}/12")], 1420)?;
                wg(
                    &server_ns,
                    &["set", &iface, "listen-port", &PORT.to_string()],
                )?;
                let pid = peer.daemon.pid().context("the server exited")?;
                let key = peer.public_key;
                (Process::Peer(Box::new(peer)), key, pid, None)
            }
        };
        pin(pid, &opts.cpus)?;
        Ok(Self {
            kind,
            client_ns,
            process,
            server_ns,
            public_key,
            pid,
            endpoint: SocketAddr::V4(SocketAddrV4::new(SERVER_UNDERLAY, PORT)),
            cpus: opts.cpus.len(),
            token,
            dir: opts.dir.clone(),
            iface,
        })
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        match &mut self.process {
            Process::Xgate(x) => x.daemon.is_running(),
            Process::Peer(p) => p.daemon.is_running(),
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        match &self.process {
            Process::Xgate(x) => x.daemon.log_text(),
            Process::Peer(p) => p.daemon.log_text(),
        }
    }

    /// Configures the users on the server; returns each one's tunnel address.
    pub fn register(&self, keys: &[PublicKey]) -> Result<Vec<Ipv4Addr>> {
        match self.kind {
            TargetKind::Xgate => self.register_by_api(keys),
            _ => self.register_by_wg(keys),
        }
    }

    fn register_by_api(&self, keys: &[PublicKey]) -> Result<Vec<Ipv4Addr>> {
        let mut out = Vec::with_capacity(keys.len());
        // The API takes at most 10,000 peers per request.
        for (c, chunk) in keys.chunks(10_000).enumerate() {
            let peers: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, k)| json!({"name": format!("lt-{}", c * 10_000 + i), "public_key": k.to_base64()}))
                .collect();
            let answer = self.api(
                "POST",
                "/api/v1/peers/bulk",
                Some(json!({ "peers": peers })),
            )?;
            let made = answer["peers"]
                .as_array()
                .context("the bulk answer has no peers list")?;
            anyhow::ensure!(
                made.len() == chunk.len(),
                "asked for {} peers, got {}",
                chunk.len(),
                made.len()
            );
            for m in made {
                let addr = m["peer"]["addresses"]
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .find(|s| !s.contains(':'))
                    })
                    .and_then(|s| s.split('/').next())
                    .and_then(|s| s.parse::<Ipv4Addr>().ok())
                    .with_context(|| format!("no IPv4 tunnel address in {m}"))?;
                out.push(addr);
            }
        }
        Ok(out)
    }

    fn register_by_wg(&self, keys: &[PublicKey]) -> Result<Vec<Ipv4Addr>> {
        let first = u32::from(SERVER_TUNNEL_IP) + 1;
        let addrs: Vec<Ipv4Addr> = (0..keys.len() as u32)
            .map(|i| Ipv4Addr::from(first + i))
            .collect();
        let mut conf = String::with_capacity(keys.len() * 100);
        for (k, a) in keys.iter().zip(&addrs) {
            conf += &format!(
                "[Peer]\nPublicKey = {}\nAllowedIPs = {a}/32\n\n",
                k.to_base64()
            );
        }
        let path = self.dir.join("loadtest-peers.conf");
        std::fs::write(&path, conf)?;
        wg(
            &self.server_ns,
            &["addconf", &self.iface, path.to_str().unwrap_or_default()],
        )
        .context("configuring the users with wg addconf")?;
        Ok(addrs)
    }

    /// Sends one API request (xgate only) from inside the server's namespace.
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let token = self.token.clone().context("only xgate has an API")?;
        let (method, url) = (method.to_string(), format!("http://{API}{path}"));
        self.server_ns.enter(move || -> Result<Value> {
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(120))
                .build();
            let req = agent
                .request(&method, &url)
                .set("Authorization", &format!("Bearer {token}"));
            let answer = match body {
                Some(b) => req.send_json(b),
                None => req.call(),
            };
            match answer {
                Ok(r) => {
                    let text = r.into_string()?;
                    if text.trim_start().starts_with('{') {
                        Ok(serde_json::from_str(&text)?)
                    } else {
                        Ok(Value::String(text))
                    }
                }
                Err(ureq::Error::Status(code, r)) => {
                    bail!(
                        "{method} {url}: {code}: {}",
                        r.into_string().unwrap_or_default()
                    )
                }
                Err(e) => bail!("{method} {url}: {e}"),
            }
        })?
    }

    /// xgate's own handshake counters (None for the peers, which publish none).
    pub fn counters(&self) -> Result<Option<ServerCounters>> {
        if self.kind != TargetKind::Xgate {
            return Ok(None);
        }
        let text = match self.api("GET", "/metrics", None)? {
            Value::String(s) => s,
            other => bail!("/metrics answered JSON: {other}"),
        };
        Ok(Some(parse_counters(&text)))
    }
}

/// The handshake counters in a Prometheus text exposition.
pub fn parse_counters(text: &str) -> ServerCounters {
    let mut c = ServerCounters::default();
    let label = |name: &str| -> Option<String> {
        let start = name.find("reason=\"")? + 8;
        Some(name[start..].split('"').next()?.to_string())
    };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<u64>() else {
            continue;
        };
        let family = name.split('{').next().unwrap_or(name);
        match family {
            "xgate_handshake_initiations_received_total" => c.initiations_received += v,
            "xgate_handshakes_completed_total" if name.contains("responder") => {
                c.responses_sent += v
            }
            "xgate_cookie_replies_sent_total" => c.cookie_replies_sent += v,
            "xgate_sessions_active" => c.sessions_active += v,
            "xgate_handshake_initiations_refused_total" => {
                if let Some(r) = label(name) {
                    *c.refused.entry(r).or_default() += v;
                }
            }
            "xgate_handshake_rejected_total" => {
                if let Some(r) = label(name) {
                    *c.rejected.entry(r).or_default() += v;
                }
            }
            _ => {}
        }
    }
    c
}

/// `after - before`, counter by counter (sessions_active is a gauge: taken from `after`).
pub fn counters_delta(before: &ServerCounters, after: &ServerCounters) -> ServerCounters {
    let minus = |a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>| {
        a.iter()
            .map(|(k, v)| (k.clone(), v.saturating_sub(b.get(k).copied().unwrap_or(0))))
            .filter(|(_, v)| *v > 0)
            .collect()
    };
    ServerCounters {
        initiations_received: after
            .initiations_received
            .saturating_sub(before.initiations_received),
        responses_sent: after.responses_sent.saturating_sub(before.responses_sent),
        cookie_replies_sent: after
            .cookie_replies_sent
            .saturating_sub(before.cookie_replies_sent),
        refused: minus(&after.refused, &before.refused),
        rejected: minus(&after.rejected, &before.rejected),
        sessions_active: after.sessions_active,
    }
}

fn start_xgate(
    ns: &Netns,
    opts: &TargetOptions,
) -> Result<(Process, PublicKey, u32, Option<String>)> {
    let key = PrivateKey::generate(&mut rand_core::OsRng);
    let dir = &opts.dir;
    let (db, tokens) = (
        dir.join("loadtest-registry.db"),
        dir.join("loadtest-api-tokens"),
    );
    for f in [
        db.clone(),
        tokens.clone(),
        dir.join("loadtest-api-tokens.secret"),
    ] {
        let _ = std::fs::remove_file(f);
    }
    let cpus: Vec<String> = opts.cpus.iter().map(ToString::to_string).collect();
    let iface = iface_name(&opts.tag);
    let config = format!(
        "[interface]\nname = \"{iface}\"\nprivate_key = \"{}\"\nlisten_port = {PORT}\n\
         address = [\"{SERVER_TUNNEL_IP}/12\"]\nmtu = 1420\nworkers = {n}\ncpus = [{}]\n\
         handshake_threads = {n}\n\n[registry]\npath = \"{}\"\n\n[[pool]]\nname = \"default\"\n\
         ipv4 = \"10.96.0.0/12\"\n\n[api]\nlisten = \"{API}\"\ntoken_file = \"{}\"\n",
        key.to_base64(),
        cpus.join(", "),
        db.display(),
        tokens.display(),
        n = opts.cpus.len(),
    );
    let path = dir.join("loadtest-xgate.toml");
    std::fs::write(&path, config)?;
    let x = Xgate::start(
        &opts.xgate,
        ns,
        &["--config", path.to_str().unwrap_or_default()],
        &iface,
        &dir.join("loadtest-xgate.log"),
    )?;
    let pid = x.daemon.pid().context("xgate exited")?;
    let secret = std::fs::read_to_string(dir.join("loadtest-api-tokens.secret"))
        .context("xgate made no API token")?;
    Ok((
        Process::Xgate(Box::new(x)),
        key.public_key(),
        pid,
        Some(secret.trim().to_string()),
    ))
}

/// The directory for logs and state of runs (under the system's temporary directory).
pub fn work_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("xgate-loadtest-{tag}"))
}
