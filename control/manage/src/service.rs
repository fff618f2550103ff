//! The management service as the daemon runs it: the registry is opened before anything
//! lasting exists (its peers are part of the interface's first configuration), and the HTTP
//! API is served over it once the control plane runs.

use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use plane::engine::PlaneHandle;
use plane::update::PeerUpdate;
use proto::PublicKey;

use crate::api::{self, ApiServer, ApiState, ClientPolicy, ClientTemplate};
use crate::config::{ApiSettings, ManageSettings, RegistrySettings};
use crate::events::EventHub;
use crate::follower::{FollowFrom, Follower};
use crate::ike_grants::ike_user;
use crate::registry::{Location, PeerRecord, Registry};
use plane::ike::IkeSlot;

/// An open registry and the settings of the API that will serve it.
pub struct Management {
    registry: Registry,
    /// The last change in the registry's log when its peers were read.
    followed_from: i64,
    /// IKEv2 users at start (handed to the responder once it runs).
    ike_users: Vec<crate::registry::IkeUserRecord>,
    settings: RegistrySettings,
    api: Option<ApiSettings>,
    tls: Option<Arc<rustls::ServerConfig>>,
    listener: Option<std::net::TcpListener>,
}

/// Binds the API's address, the first thing a start does: a port another interface's API
/// holds stops the start before any file is made. `None` without an API.
pub fn bind_api(settings: &ManageSettings) -> Result<Option<std::net::TcpListener>> {
    let Some(api) = &settings.api else {
        return Ok(None);
    };
    std::net::TcpListener::bind(api.listen)
        .map(Some)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                anyhow!(
                    "api.listen: {} is in use (the API of another xgate interface, or another \
                 program): give each interface its own, e.g. [api] listen = \"127.0.0.1:{}\"",
                    api.listen,
                    api.listen.port().wrapping_add(1).max(1)
                )
            } else {
                anyhow!(
                    "api.listen: cannot listen on {}: {e}; choose another address or port",
                    api.listen
                )
            }
        })
}

/// What the interface tells the API's client configurations.
pub struct ServerFacts {
    /// The interface's public key.
    pub public_key: PublicKey,
    /// The UDP port it listens on.
    pub listen_port: u16,
    /// Its inner MTU.
    pub mtu: usize,
    /// Its name.
    pub interface: String,
}

impl Management {
    /// Opens the registry (creating its directory) and reads the peers that are not revoked;
    /// `None` when no registry is configured.
    pub fn open(
        settings: &ManageSettings,
        listener: Option<std::net::TcpListener>,
        cluster_key: Option<PublicKey>,
    ) -> Result<Option<(Self, Vec<PeerUpdate>)>> {
        let Some(registry_settings) = &settings.registry else {
            return Ok(None);
        };
        let location = &registry_settings.location;
        let place = || match location {
            Location::File(path) => format!("registry.path ({})", path.display()),
            Location::Postgres(_) => format!("registry.url ({location})"),
        };
        if let Location::File(path) = location {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                // Closed to other users: the registry holds preshared keys.
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .with_context(|| format!("{}: creating its directory", place()))?;
            }
        }
        // The TLS files are checked before anything lasting exists, like the registry.
        let tls = settings
            .api
            .as_ref()
            .and_then(|a| a.tls.as_ref())
            .map(api::tls_config)
            .transpose()?;
        let started = Instant::now();
        let mut registry =
            Registry::open_at(location, registry_settings.pools.clone()).with_context(place)?;
        registry.set_node(&node_name());
        if let (Location::Postgres(_), Some(key)) = (location, cluster_key) {
            // A node with another key could not answer the cluster's clients.
            registry
                .join_cluster(&key, now_secs())
                .with_context(place)?;
        }
        // Read before the peers: a change made meanwhile by another node is applied again
        // by the follower, which is harmless; one read after would be missed.
        let followed_from = registry.last_change().with_context(place)?;
        let peers = registry.active().with_context(place)?;
        let ike_users = registry.ike_users().with_context(place)?;
        tracing::info!(
            peers = peers.len(),
            ike_users = ike_users.len(),
            ms = started.elapsed().as_millis() as u64,
            registry = %location,
            "registry loaded"
        );
        let management = Self {
            registry,
            followed_from,
            ike_users,
            settings: registry_settings.clone(),
            api: settings.api.clone(),
            tls,
            listener,
        };
        Ok(Some((
            management,
            peers.iter().map(PeerRecord::to_update).collect(),
        )))
    }

    /// Whether the registry holds IKEv2 users.
    pub fn has_ike_users(&self) -> bool {
        !self.ike_users.is_empty()
    }

    /// Serves the HTTP API over the registry (when the API is configured and the interface
    /// has a key for client configurations to name), with what reloads its tokens; hands the
    /// IKEv2 users to the responder when it runs (or to the one the first user starts).
    pub fn serve(
        self,
        plane: PlaneHandle,
        events: EventHub,
        server: Option<ServerFacts>,
        ike_slot: IkeSlot,
    ) -> Result<Option<(ApiServer, TokenReloader)>> {
        let ike = ike_slot.get();
        let (Some(settings), Some(server), Some(listener)) = (&self.api, server, self.listener)
        else {
            if matches!(self.settings.location, Location::Postgres(_)) {
                tracing::warn!(
                    "registry.url: without the API this node neither follows the other nodes' \
                     changes nor writes heartbeats; turn [api] on"
                );
            }
            if let Some(ike) = &ike {
                let policy = pools_policy(&self.settings);
                let users = self.ike_users.iter().map(|u| ike_user(u, &policy));
                ike.set_users(users.collect(), true);
            }
            return Ok(None);
        };
        let client = client_template(&self.settings, settings, &server);
        if let Some(ike) = &ike {
            let users = self
                .ike_users
                .iter()
                .map(|u| ike_user(u, client.policy(&u.group)));
            ike.set_users(users.collect(), true);
        }
        let hashes = api::load_tokens(&settings.token_file)
            .with_context(|| format!("api.token_file ({})", settings.token_file.display()))?;
        let tls = self.tls;
        let warnings: Vec<String> = settings
            .transport_warning()
            .into_iter()
            .chain(client.guessed.clone())
            .collect();
        for w in &warnings {
            tracing::warn!("{w}");
        }
        let node = self.registry.node().to_string();
        let state = Arc::new(
            ApiState::new(
                self.registry,
                plane,
                hashes,
                client,
                settings.metrics_need_token,
                events,
                warnings,
            )
            .serving(&server.interface, settings.token_file.clone())
            .from_config(&settings.source)
            .with_capacity_report(settings.capacity_report.clone())
            .with_ike(ike_slot)
            .on_engine(match self.settings.location {
                Location::File(_) => "sqlite",
                Location::Postgres(_) => "postgres",
            }),
        );
        let scheme = if tls.is_some() { "https" } else { "http" };
        let follow = FollowFrom {
            location: self.settings.location.clone(),
            pools: self.settings.pools.clone(),
            node,
            seq: self.followed_from,
            take_over: self.settings.take_over,
            started_ms: crate::registry::unix_ms(),
        };
        let follower = Follower::start(follow, state.clone()).context("starting the follower")?;
        let server = ApiServer::start(listener, state, tls, api::Limits::default())
            .with_context(|| format!("api.listen: serving on {}", settings.listen))?
            .following(follower);
        tracing::info!(listen = %server.local_addr, scheme, "HTTP API up");
        let reloader = TokenReloader::new(&server, settings.token_file.clone());
        Ok(Some((server, reloader)))
    }
}

/// Reads the API's token file again on request (SIGHUP), keeping the old tokens if the file
/// cannot be read.
pub struct TokenReloader {
    state: Arc<ApiState>,
    file: std::path::PathBuf,
}

impl TokenReloader {
    /// A reloader for `server`'s tokens from `file`.
    pub fn new(server: &ApiServer, file: std::path::PathBuf) -> Self {
        Self {
            state: server.state(),
            file,
        }
    }

    /// Reads the file and swaps the accepted tokens; logs what happened.
    pub fn reload(&self) {
        api::reload(&self.state, &self.file);
    }
}

/// What every client configuration the API hands out shares.
fn client_template(
    registry: &RegistrySettings,
    api: &ApiSettings,
    server: &ServerFacts,
) -> ClientTemplate {
    let allowed_ips = api
        .client_allowed_ips
        .clone()
        .unwrap_or_else(|| pool_prefixes(registry));
    let (endpoint, guessed) = match &api.endpoint {
        Some(e) => (e.clone(), None),
        None => {
            let e = guess_endpoint(server.listen_port);
            let warning = format!(
                "[api] endpoint is not set: client files carry the guessed endpoint {e}; set \
                 endpoint = \"vpn.example.com:{}\" in [api] to the name or address clients reach",
                server.listen_port
            );
            (e, Some(warning))
        }
    };
    let default = ClientPolicy {
        allowed_ips,
        dns: api.dns.clone(),
        mtu: server.mtu,
        keepalive: api.persistent_keepalive,
    };
    let groups = api
        .groups
        .iter()
        .map(|g| {
            let policy = ClientPolicy {
                allowed_ips: g
                    .client_allowed_ips
                    .clone()
                    .unwrap_or_else(|| default.allowed_ips.clone()),
                dns: g.dns.clone().unwrap_or_else(|| default.dns.clone()),
                mtu: g.mtu.unwrap_or(default.mtu),
                keepalive: g.persistent_keepalive.unwrap_or(default.keepalive),
            };
            (g.name.clone(), policy)
        })
        .collect();
    ClientTemplate {
        server_key: server.public_key,
        endpoint,
        guessed,
        default,
        groups,
    }
}

/// Every pool's prefixes: what clients reach when nothing else is configured.
fn pool_prefixes(registry: &RegistrySettings) -> Vec<ipnet::IpNet> {
    registry
        .pools
        .iter()
        .flat_map(|p| p.v4.iter().chain(p.v6.iter()).copied())
        .collect()
}

/// The policy of clients when no `[api]` gives one: the pools, no DNS.
fn pools_policy(registry: &RegistrySettings) -> ClientPolicy {
    ClientPolicy {
        allowed_ips: pool_prefixes(registry),
        dns: Vec::new(),
        mtu: 0,
        keepalive: 0,
    }
}

/// Where clients probably reach this host: its source address toward the default route
/// (found by connecting a UDP socket, which sends nothing), else its host name.
fn guess_endpoint(port: u16) -> String {
    // Documentation addresses (RFC 5737, RFC 3849): only the route lookup matters.
    for probe in ["192.0.2.1:9", "[2001:db8::1]:9"] {
        let local = std::net::UdpSocket::bind(if probe.starts_with('[') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        })
        .and_then(|s| s.connect(probe).and_then(|()| s.local_addr()));
        if let Ok(a) = local {
            if !a.ip().is_unspecified() && !a.ip().is_loopback() {
                return std::net::SocketAddr::new(a.ip(), port).to_string();
            }
        }
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{port}")
}

/// This node's name in the registry's change log: the host's name, the daemon's process and
/// a random tag, so two daemons sharing a database (two hosts, two namespaces of one, or two
/// containers whose daemons are both process 1) never take each other's changes for their
/// own.
fn node_name() -> String {
    use rand_core::RngCore;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "xgate".into());
    let tag = rand_core::OsRng.next_u32() & 0xffff;
    format!("{host}/{}-{tag:04x}", std::process::id())
}

/// Seconds since the Unix epoch.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
