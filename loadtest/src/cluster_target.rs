//! Two xgate nodes on one PostgreSQL registry behind one service address, for failover
//! scenarios. Everything hangs off one bridge: each node by two links (adverts, with an
//! address of its own; service, holding only the service address once keepalived puts it
//! there, so replies leave from it), the users' namespace, and each real client in a
//! namespace of its own. keepalived (VRRP) gives the address to node A first; when A dies,
//! to node B, whose notify_master runs `xgate cluster take-over` when the scenario takes over.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use proto::PrivateKey;
use testbed::bridge::{holds_address, Bridge};
use testbed::keepalived::{Keepalived, VrrpNode};
use testbed::postgres::TempPostgres;
use testbed::{Implementation, Netns, Server, WgPeer};

use crate::scenario::Failover;
use crate::target::{Target, TargetKind, TargetOptions, PORT, SERVER_TUNNEL_IP};

/// The service address users connect to.
pub const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 184, 0, 100);
/// The users' namespace on the bridge: the nodes route the users' prefix to it.
const USERS_ON_BRIDGE: &str = "10.184.0.2";
/// Each node's link for VRRP adverts (10.184.1.n) and its link for the service address.
pub const NODE_LINKS: [&str; 2] = ["lta", "ltv"];
/// The service address's link.
const SERVICE_LINK: &str = "ltv";

/// A real client (wireguard-go or boringtun-cli) in a namespace of its own on the bridge.
pub struct RealClient {
    /// "wireguard-go" or "boringtun-cli".
    pub label: String,
    /// Its process (dropped before its namespace).
    pub peer: WgPeer,
    /// Its namespace.
    pub ns: Netns,
}

/// What a cluster target holds beside node A (the target's own server).
pub struct Cluster {
    /// Node B, which takes the address when A dies.
    pub survivor: Server,
    /// keepalived on A (taken by the failure) and on B.
    pub vrrp: Vec<Option<Keepalived>>,
    /// Real clients beside the simulated users (taken by the failure, which probes them).
    pub clients: Vec<RealClient>,
    /// The registry both nodes share.
    pub postgres: TempPostgres,
    /// The segment everything hangs off.
    pub bridge: Bridge,
    tag: String,
}

/// A name of at most 15 bytes (interface names).
fn short(mut name: String) -> String {
    name.truncate(15);
    name
}

/// The script keepalived runs on becoming master: `xgate cluster take-over`.
fn take_over_script(xgate: &Path, dir: &Path, token: &str) -> Result<PathBuf> {
    let path = dir.join("take-over.sh");
    let text = format!(
        "#!/bin/sh\nexec {} cluster take-over --token {token} >> {} 2>&1\n",
        xgate.display(),
        dir.join("take-over.log").display()
    );
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// Node `i` (0 = A, 1 = B): xgate on the registry at `url` with the cluster's `key`, its
/// links on the bridge, its keepalived.
fn start_node(
    opts: &TargetOptions,
    (i, key, url): (usize, &PrivateKey, &str),
    f: &Failover,
    bridge: &Bridge,
) -> Result<(Server, Keepalived)> {
    let letter = ["a", "b"][i];
    let node_opts = TargetOptions {
        dir: opts.dir.join(letter),
        tag: format!("{letter}{}", opts.tag),
        ..opts.clone()
    };
    let mut config = crate::target::xgate_config(&node_opts);
    config.interface.private_key = Some(key.to_base64());
    if let Some(r) = config.registry.as_mut() {
        r.path = None;
        r.url = Some(url.into());
        r.take_over = Some(f.take_over);
    }
    let iface = config.interface.name.clone().unwrap_or_default();
    let mut server = Server::new(
        &format!("xlt-{letter}-{}", opts.tag),
        &iface,
        &node_opts.dir,
    )?;
    let ns = &server.ns;
    bridge.attach(
        ns,
        NODE_LINKS[0],
        Some(&format!("10.184.1.{}/24", i + 1)),
        &short(format!("lta{i}{}", opts.tag)),
    )?;
    bridge.attach(
        ns,
        SERVICE_LINK,
        None,
        &short(format!("ltv{i}{}", opts.tag)),
    )?;
    // Replies to the users leave by the service link (from the service address, once here).
    ns.ip(&[
        "route",
        "add",
        crate::target::USER_PREFIX,
        "via",
        USERS_ON_BRIDGE,
        "dev",
        SERVICE_LINK,
        "onlink",
    ])?;
    server.start_xgate(&opts.xgate, &config)?;
    server.pin(&opts.cpus)?;
    let token = server.api_token().context("xgate made no API token")?;
    let script = match f.take_over {
        true => Some(take_over_script(&opts.xgate, &node_opts.dir, token)?),
        false => None,
    };
    let name = format!("node-{letter}");
    let address = format!("{SERVICE_IP}/24");
    let vrrp = Keepalived::start(
        &server.ns,
        &node_opts.dir,
        &VrrpNode {
            name: &name,
            interface: NODE_LINKS[0],
            address: &address,
            address_dev: SERVICE_LINK,
            priority: if i == 0 { 150 } else { 100 },
            notify_master: script.as_deref(),
        },
    )?;
    Ok((server, vrrp))
}

/// Starts the registry, the bridge, the users' namespace and both nodes; returns once node
/// A holds the service address.
pub(crate) fn start(opts: &TargetOptions, f: &Failover) -> Result<Target> {
    let tag = &opts.tag;
    let postgres = TempPostgres::start(&format!("lt{tag}"))?;
    let url = postgres.database("failover")?;
    let bridge = Bridge::create(&format!("xlt-br-{tag}"))?;
    let client_ns = Netns::create(&format!("xlt-cli-{tag}"))?;
    bridge.attach(
        &client_ns,
        "ltc",
        Some(&format!("{USERS_ON_BRIDGE}/24")),
        &short(format!("ltc{tag}")),
    )?;
    client_ns.ip(&[
        "route",
        "add",
        "local",
        crate::target::USER_PREFIX,
        "dev",
        "lo",
    ])?;
    let key = PrivateKey::generate(&mut rand_core::OsRng);
    let (a, vrrp_a) = start_node(opts, (0, &key, &url), f, &bridge)?;
    let (survivor, vrrp_b) = start_node(opts, (1, &key, &url), f, &bridge)?;
    let until = Instant::now() + Duration::from_secs(10);
    let service = SERVICE_IP.to_string();
    // A alone: both holding it (their adverts not heard) would measure nothing.
    while !holds_address(a.ns.name(), SERVICE_LINK, &service)
        || holds_address(survivor.ns.name(), SERVICE_LINK, &service)
    {
        if Instant::now() > until {
            bail!(
                "node A never held the service address alone: {}\n{}",
                vrrp_a.log(),
                vrrp_b.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Target {
        kind: TargetKind::Xgate,
        client_ns,
        pid: a.pid()?,
        server: a,
        public_key: key.public_key(),
        endpoint: SocketAddr::V4(SocketAddrV4::new(SERVICE_IP, PORT)),
        cpus: opts.cpus.len(),
        cluster: Some(Cluster {
            survivor,
            vrrp: vec![Some(vrrp_a), Some(vrrp_b)],
            clients: Vec::new(),
            postgres,
            bridge,
            tag: tag.clone(),
        }),
    })
}

impl Cluster {
    /// Waits until node B's interface has `peers` peers (the registry's changes reached it).
    pub fn until_survivor_has(&self, peers: usize) -> Result<()> {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let has = testbed::clients::wg_dump_peers(&self.survivor.ns, &self.survivor.iface)
                .map(|d| d.len())
                .unwrap_or(0);
            if has >= peers {
                return Ok(());
            }
            if Instant::now() > until {
                bail!("node B has {has} of {peers} peers after 60 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts real client `n` of `kind`, with tunnel address `tunnel_ip` (registered on the
    /// registry by the caller), pointed at the service address; returns once it pings.
    pub fn add_client(&mut self, kind: Implementation, key_dir: &Path) -> Result<&RealClient> {
        let n = self.clients.len();
        let tag = &self.tag;
        let ns = Netns::create(&format!("xlt-rc{n}-{tag}"))?;
        self.bridge.attach(
            &ns,
            "ltr",
            Some(&format!("10.184.0.{}/24", 10 + n)),
            &short(format!("ltr{n}{tag}")),
        )?;
        let peer = WgPeer::start(kind, &ns, &short(format!("xr{n}{tag}")), key_dir)?;
        self.clients.push(RealClient {
            label: kind.label().into(),
            peer,
            ns,
        });
        Ok(&self.clients[n])
    }
}

impl RealClient {
    /// Gives the client its tunnel address and the cluster as its peer; waits for a ping.
    pub fn connect(&self, tunnel_ip: Ipv4Addr, server_key: &proto::PublicKey) -> Result<()> {
        self.peer
            .configure(&self.ns, &[&format!("{tunnel_ip}/12")], 1420)?;
        self.peer.set_peer(
            &self.ns,
            server_key,
            Some(&format!("{SERVICE_IP}:{PORT}")),
            "10.96.0.0/12",
            None,
        )?;
        let until = Instant::now() + Duration::from_secs(10);
        let target = SERVER_TUNNEL_IP.to_string();
        while !testbed::ping::answered_within(&self.ns, &target, Duration::from_millis(500)) {
            if Instant::now() > until {
                bail!("{} never passed traffic through node A", self.label);
            }
        }
        Ok(())
    }
}

impl Target {
    /// A failover target made ready: the scenario's real clients connected through node A,
    /// every user on node B too; returns what the failure kills and who it watches.
    pub(crate) fn ready_for_failure(
        &mut self,
        f: &Failover,
        (users, traffic_seconds): (usize, f64),
    ) -> Result<crate::failover::Doomed> {
        let dir = self.server.dir.clone();
        for (n, label) in f.clients.iter().enumerate() {
            let kind = match label.as_str() {
                "boringtun-cli" => Implementation::Boringtun,
                _ => Implementation::WireguardGo,
            };
            let cluster = self.cluster.as_mut().context("not a cluster target")?;
            let client = cluster.add_client(kind, &dir)?;
            let (key, name) = (client.peer.public_key, format!("real{n}-{}", client.label));
            let ip = *self
                .register_by_api(&name, &[key])?
                .first()
                .context("the registry gave the client no address")?;
            let cluster = self.cluster.as_ref().context("not a cluster target")?;
            if let Some(c) = cluster.clients.last() {
                c.connect(ip, &self.public_key)?;
            }
        }
        let cluster = self.cluster.as_mut().context("not a cluster target")?;
        cluster.until_survivor_has(users + f.clients.len())?;
        Ok(crate::failover::Doomed {
            after: Duration::from_secs_f64(f.at_seconds),
            xgate: self.server.take_xgate().context("node A is not running")?,
            vrrp: cluster.vrrp[0]
                .take()
                .context("node A's keepalived is gone")?,
            node_ns: self.server.ns.name().to_string(),
            survivor_ns: cluster.survivor.ns.name().to_string(),
            clients: std::mem::take(&mut cluster.clients),
            // Until the users stop sending (at least 20 s: see Scenario::check).
            patience: Duration::from_secs_f64(traffic_seconds - f.at_seconds),
        })
    }
}
