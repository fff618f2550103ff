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
use testbed::{config, veth, Implementation, Netns, Server, XgateConfig};

use crate::results::ServerCounters;

/// The server's underlay address (its side of the veth).
pub const SERVER_UNDERLAY: Ipv4Addr = Ipv4Addr::new(10, 181, 0, 1);
/// The users' side of the veth.
const CLIENT_UNDERLAY: Ipv4Addr = Ipv4Addr::new(10, 181, 0, 2);
/// The server's tunnel address (users ping it).
pub const SERVER_TUNNEL_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// Users' source addresses: user i sends from 10.176.0.0 + 1 + i (local to the users'
/// namespace as a whole /14, so no address is configured one by one).
pub(crate) const USER_PREFIX: &str = "10.176.0.0/14";
/// Flood sources (mixed-flood), local the same way.
const FLOOD_PREFIX: &str = "10.182.0.0/24";
/// The servers' UDP port.
pub(crate) const PORT: u16 = 51820;

/// The server's interface name for a run: the UAPI socket (/var/run/wireguard/<name>.sock)
/// is global, so runs side by side (tests) need names of their own.
fn iface_name(tag: &str) -> String {
    let mut name = format!("xl{tag}");
    name.truncate(15);
    name
}
pub(crate) const API: &str = "127.0.0.1:9180";

/// The source address of user `i`.
pub fn user_source(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 176, 0, 0)) + 1 + i)
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
    /// Run the IKEv2 responder too (xgate only), with the CA and certificate in this
    /// directory (made if missing).
    pub ike: Option<PathBuf>,
    /// Two xgate nodes behind a service address instead of one (xgate only).
    pub failover: Option<crate::scenario::Failover>,
}

/// A running server and the users' namespace.
pub struct Target {
    /// Which server.
    pub kind: TargetKind,
    /// The users' namespace (dropped before the server's).
    pub client_ns: Netns,
    /// The server, in its namespace.
    pub server: Server,
    /// Its public key.
    pub public_key: PublicKey,
    /// Its process id.
    pub pid: u32,
    /// Where users send to.
    pub endpoint: SocketAddr,
    /// CPUs it is pinned to.
    pub cpus: usize,
    /// Failover scenarios: node B, the registry, keepalived and the real clients (`server`
    /// is node A).
    pub cluster: Option<crate::cluster_target::Cluster>,
}

impl Target {
    /// Creates both namespaces and starts the server, pinned to `opts.cpus`.
    pub fn start(kind: TargetKind, opts: &TargetOptions) -> Result<Self> {
        if let Some(f) = &opts.failover {
            if kind != TargetKind::Xgate {
                bail!("a failover scenario runs two xgate nodes: use --target xgate");
            }
            return crate::cluster_target::start(opts, f);
        }
        let (mut server, client_ns) = namespaces(opts)?;
        let public_key = match kind {
            TargetKind::Xgate => {
                let mut config = xgate_config(opts);
                if let Some(pki) = &opts.ike {
                    config.ike = Some(crate::ike_target::ike_section(&opts.xgate, pki)?);
                }
                server.start_xgate(&opts.xgate, &config)?
            }
            TargetKind::BoringtunCli | TargetKind::WireguardGo => {
                let implementation = if kind == TargetKind::BoringtunCli {
                    Implementation::Boringtun
                } else {
                    Implementation::WireguardGo
                };
                let address = format!("{SERVER_TUNNEL_IP}/12");
                server.start_peer(implementation, &[&address], PORT)?
            }
        };
        server.pin(&opts.cpus)?;
        Ok(Self {
            kind,
            client_ns,
            pid: server.pid()?,
            server,
            public_key,
            endpoint: SocketAddr::V4(SocketAddrV4::new(SERVER_UNDERLAY, PORT)),
            cpus: opts.cpus.len(),
            cluster: None,
        })
    }

    /// True while the server process runs (in a failover, the survivor).
    pub fn is_running(&mut self) -> bool {
        match self.cluster.as_mut() {
            Some(c) => c.survivor.is_running(),
            None => self.server.is_running(),
        }
    }

    /// The server's log so far (in a failover, the survivor's: node A's went with it).
    pub fn log(&self) -> String {
        match &self.cluster {
            Some(c) => c.survivor.log(),
            None => self.server.log(),
        }
    }

    /// Configures the users on the server; returns each one's tunnel address.
    pub fn register(&self, keys: &[PublicKey]) -> Result<Vec<Ipv4Addr>> {
        match self.kind {
            TargetKind::Xgate => self.register_by_api("lt", keys),
            _ => self.register_by_wg(keys),
        }
    }

    /// Registers `keys` through xgate's API as peers `<prefix>-0`, `<prefix>-1`, ...
    pub(crate) fn register_by_api(
        &self,
        prefix: &str,
        keys: &[PublicKey],
    ) -> Result<Vec<Ipv4Addr>> {
        let mut out = Vec::with_capacity(keys.len());
        // The API takes at most 10,000 peers per request.
        for (c, chunk) in keys.chunks(10_000).enumerate() {
            let peers: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, k)| json!({"name": format!("{prefix}-{}", c * 10_000 + i), "public_key": k.to_base64()}))
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
        let path = self.server.dir.join("loadtest-peers.conf");
        std::fs::write(&path, conf)?;
        let path = path
            .to_str()
            .context("the work directory's path is not UTF-8")?;
        self.server
            .wg(&["addconf", &self.server.iface, path])
            .context("configuring the users with wg addconf")?;
        Ok(addrs)
    }

    /// Sends one API request (xgate only) from inside the server's namespace.
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let token = self
            .server
            .api_token()
            .context("only xgate has an API")?
            .to_string();
        let (method, url) = (method.to_string(), format!("http://{API}{path}"));
        self.server.ns.enter(move || -> Result<Value> {
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

/// The server's namespace (its directory `opts.dir`) and the users', joined by a veth; the
/// users' and flood sources' prefixes local to the users' side and routed back by the
/// server's.
pub(crate) fn namespaces(opts: &TargetOptions) -> Result<(Server, Netns)> {
    let server = Server::new(
        &format!("xlt-srv-{}", opts.tag),
        &iface_name(&opts.tag),
        &opts.dir,
    )?;
    let client_ns = Netns::create(&format!("xlt-cli-{}", opts.tag))?;
    veth(
        &server.ns,
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
        server
            .ns
            .ip(&["route", "add", prefix, "via", &CLIENT_UNDERLAY.to_string()])?;
    }
    Ok((server, client_ns))
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

/// xgate as the loadtest runs it: a worker and a handshake thread per CPU, users in a
/// registry (added through the API) with addresses from 10.96.0.0/12.
pub(crate) fn xgate_config(opts: &TargetOptions) -> XgateConfig {
    let key = PrivateKey::generate(&mut rand_core::OsRng);
    let address = format!("{SERVER_TUNNEL_IP}/12");
    let mut config = XgateConfig::server(&iface_name(&opts.tag), &key, PORT, &[&address])
        .pinned(&opts.cpus)
        .registry_in(&opts.dir);
    config.interface.mtu = Some(1420);
    config.interface.handshake_threads = Some(opts.cpus.len());
    config.pools.push(config::Pool {
        name: Some("default".into()),
        ipv4: Some("10.96.0.0/12".into()),
        ..config::Pool::default()
    });
    if let Some(api) = config.api.as_mut() {
        api.listen = Some(API.into());
    }
    config
}

/// The directory for logs and state of runs (under the system's temporary directory).
pub fn work_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("xgate-loadtest-{tag}"))
}
