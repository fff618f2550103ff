//! The `[api]` section: where the HTTP API listens, which tokens it accepts, and what the
//! client configurations it hands out contain.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use plane::config::{err, parse_list, ConfigError, STATE_DIR};

/// Where the API listens unless told otherwise (loopback: operators reach it on the box or
/// through their own proxy).
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:9180";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[api]` as written.
pub struct ApiSection {
    listen: Option<String>,
    token_file: Option<PathBuf>,
    endpoint: Option<String>,
    dns: Option<Vec<String>>,
    persistent_keepalive: Option<u16>,
    client_allowed_ips: Option<Vec<String>>,
    metrics_need_token: Option<bool>,
}

/// The API's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// File of accepted tokens' SHA-256 hashes (hex, one per line); created with a fresh
    /// token beside it (`<file>.secret`) when missing.
    pub token_file: PathBuf,
    /// `host:port` client configurations point at (default: this host's name).
    pub endpoint: Option<String>,
    /// DNS servers pushed to clients.
    pub dns: Vec<IpAddr>,
    /// Keepalive in client configurations (0 = off).
    pub persistent_keepalive: u16,
    /// What clients route into the tunnel (default: the pools' prefixes).
    pub client_allowed_ips: Option<Vec<IpNet>>,
    /// `/metrics` needs the token too (by default it is open, as exporters on loopback are).
    pub metrics_need_token: bool,
    /// Per-group client policies (`[[group]]`), overriding the above for their peers.
    pub groups: Vec<super::GroupPolicy>,
}

/// The API settings: on whenever the registry is, off otherwise (an `[api]` section without
/// a registry is an error: the API manages the registry).
pub(super) fn api_settings(
    section: Option<ApiSection>,
    registry: bool,
    base: &Path,
    name: &str,
) -> Result<Option<ApiSettings>, ConfigError> {
    if !registry {
        if section.is_some() {
            return Err(err(
                "api",
                "the API manages the peer registry, and there is no [registry] section",
                "add [registry] (optionally with path = \"...\")",
            ));
        }
        return Ok(None);
    }
    let s = section.unwrap_or_default();
    let listen_text = s.listen.unwrap_or_else(|| DEFAULT_API_LISTEN.into());
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        err(
            "api.listen",
            format!("{listen_text:?} is not an address and port"),
            format!("write it like \"{DEFAULT_API_LISTEN}\""),
        )
    })?;
    let token_file = s.token_file.map_or_else(
        || Path::new(STATE_DIR).join(format!("{name}.api-tokens")),
        |p| base.join(p),
    );
    let dns = parse_list(
        "api.dns",
        &s.dns.unwrap_or_default(),
        "an IP address",
        "write it like \"10.77.0.1\" or \"fd77::1\"",
    )?;
    let client_allowed_ips = s
        .client_allowed_ips
        .map(|list| {
            parse_list::<IpNet>(
                "api.client_allowed_ips",
                &list,
                "a prefix",
                "write it like \"0.0.0.0/0\" (full tunnel) or \"10.0.0.0/8\"",
            )
        })
        .transpose()?;
    Ok(Some(ApiSettings {
        listen,
        token_file,
        endpoint: s.endpoint,
        dns,
        persistent_keepalive: s.persistent_keepalive.unwrap_or(0),
        client_allowed_ips,
        metrics_need_token: s.metrics_need_token.unwrap_or(false),
        groups: Vec::new(),
    }))
}
