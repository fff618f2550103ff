//! xgate's configuration file as typed sections, written with `toml`: every rig, test and
//! benchmark builds its config here, so a renamed field breaks one place (and the sync test
//! in `control/xgate`, which parses a config with every field set), not six format strings.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use proto::PrivateKey;
use serde::Serialize;

/// The whole file: `[interface]`, `[[peer]]`, `[registry]`, `[api]`, `[[pool]]`, `[[group]]`,
/// `[ike]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct XgateConfig {
    /// `[interface]`.
    pub interface: Interface,
    /// `[[peer]]`s (ignored by xgate when a registry is set).
    #[serde(rename = "peer", skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<Peer>,
    /// `[registry]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<Registry>,
    /// `[api]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<Api>,
    /// `[[pool]]`s.
    #[serde(rename = "pool", skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<Pool>,
    /// `[[group]]`s.
    #[serde(rename = "group", skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
    /// `[ike]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ike: Option<Ike>,
}

/// `[interface]`; `None` leaves a field to xgate's default.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Interface {
    /// Interface (and UAPI socket) name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Private key, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// File holding the private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<PathBuf>,
    /// UDP port (0 = any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    /// Tunnel addresses with prefix lengths.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub address: Vec<String>,
    /// Inner MTU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<usize>,
    /// Datapath workers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// CPU per worker.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<usize>,
    /// Firewall mark on outer packets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fwmark: Option<u32>,
    /// Threads answering handshakes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_threads: Option<usize>,
    /// Outer backend: "io-uring", "af-xdp" or "auto".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Interfaces AF_XDP binds to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outer_interfaces: Vec<String>,
    /// XDP attach mode: "native" or "generic".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp_mode: Option<String>,
    /// The LAN side: "tun", "af-xdp" or "auto".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inner: Option<String>,
    /// The LAN interfaces (`inner` = "af-xdp" or "auto").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lan_interfaces: Vec<String>,
}

/// One `[[peer]]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Peer {
    /// Label in logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Public key, base64.
    pub public_key: String,
    /// Preshared key, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preshared_key: Option<String>,
    /// File holding the preshared key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preshared_key_file: Option<PathBuf>,
    /// Prefixes routed to the peer.
    pub allowed_ips: Vec<String>,
    /// `host:port` to send to before the peer speaks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Keepalive interval in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent_keepalive: Option<u16>,
}

/// `[registry]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Registry {
    /// The SQLite database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// A PostgreSQL database instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Take over a silent node's users (default on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub take_over: Option<bool>,
}

/// `[api]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Api {
    /// Listen address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// File of accepted tokens' hashes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// `host:port` client configurations point at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// DNS servers pushed to clients.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// Keepalive in client configurations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent_keepalive: Option<u16>,
    /// What clients route into the tunnel.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub client_allowed_ips: Vec<String>,
    /// `/metrics` needs the token too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_need_token: Option<bool>,
    /// HTTPS certificate chain (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// HTTPS private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Plain HTTP off loopback, as asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_plaintext: Option<bool>,
    /// The capacity report's directory, for the web console.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_report: Option<String>,
}

/// One `[[pool]]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pool {
    /// Pool name ("default" serves groups without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// IPv4 prefix handed out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    /// IPv6 prefix handed out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    /// Seconds a released address rests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_secs: Option<u64>,
}

/// One `[[group]]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// "full" or "split".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<String>,
    /// What its clients route into the tunnel.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub client_allowed_ips: Vec<String>,
    /// DNS servers pushed to its clients.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// Keepalive in its client configurations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent_keepalive: Option<u16>,
    /// Tunnel MTU in its client configurations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<usize>,
}

/// `[ike]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ike {
    /// Run the IKEv2 responder (unset: when IKEv2 users exist).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// IKE port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// NAT-T port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat_port: Option<u16>,
    /// "when-nat" or "always".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encapsulation: Option<String>,
    /// The server's identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Seconds of quiet before a liveness check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dpd_secs: Option<u64>,
    /// First retransmission timeout of a check, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retransmit_ms: Option<u64>,
    /// Sendings of a check before the peer is dead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retransmit_tries: Option<u32>,
    /// The server's certificate (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Its private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// The CA client certificates must lead to (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// The CA's revocation list (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crl: Option<String>,
    /// Also take SHA-1 and MODP-1024 (Windows' untouched defaults).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy_windows: Option<bool>,
    /// Wrong passwords in a row that lock a password user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lockout_after: Option<u32>,
    /// Seconds a lock lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lockout_secs: Option<u64>,
}

/// Strings from anything printable (addresses, prefixes).
fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

impl XgateConfig {
    /// A server: interface `name` with `key`, listening on `port`, with tunnel `addresses`.
    pub fn server(name: &str, key: &PrivateKey, port: u16, addresses: &[&str]) -> Self {
        Self {
            interface: Interface {
                name: Some(name.into()),
                private_key: Some(key.to_base64()),
                listen_port: Some(port),
                address: strings(addresses),
                ..Interface::default()
            },
            ..Self::default()
        }
    }

    /// Workers pinned one per CPU of `cpus`.
    pub fn pinned(mut self, cpus: &[usize]) -> Self {
        self.interface.workers = Some(cpus.len().max(1));
        self.interface.cpus = cpus.to_vec();
        self
    }

    /// Peers kept in a registry in `dir` (`registry.db`), the API's token file beside it
    /// (`api-tokens`, the first token in `api-tokens.secret`); stale files from an earlier
    /// run there are removed so each start begins empty.
    pub fn registry_in(mut self, dir: &Path) -> Self {
        let (db, tokens) = registry_files(dir);
        for f in [&db, &tokens, &secret_file(&tokens)] {
            let _ = std::fs::remove_file(f);
        }
        self.registry = Some(Registry {
            path: Some(db),
            url: None,
            take_over: None,
        });
        let api = self.api.get_or_insert_with(Api::default);
        api.token_file = Some(tokens);
        self
    }

    /// Adds a peer with `public_key` (base64) routed `allowed_ips`.
    pub fn peer(mut self, public_key: &str, allowed_ips: &[&str]) -> Self {
        self.peers.push(Peer {
            public_key: public_key.into(),
            allowed_ips: strings(allowed_ips),
            ..Peer::default()
        });
        self
    }

    /// The file's text.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).context("serialising the xgate config")
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_toml()?).with_context(|| format!("writing {}", path.display()))
    }

    /// Where the API's first token is (beside the token file), if the config has an API.
    pub fn api_secret_file(&self) -> Option<PathBuf> {
        let tokens = self.api.as_ref()?.token_file.as_ref()?;
        Some(secret_file(tokens))
    }
}

/// The registry database and API token file `registry_in(dir)` uses.
pub fn registry_files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("registry.db"), dir.join("api-tokens"))
}

/// Where xgate keeps the first token it makes for a token file.
pub fn secret_file(token_file: &Path) -> PathBuf {
    let mut name = token_file.as_os_str().to_owned();
    name.push(".secret");
    PathBuf::from(name)
}
