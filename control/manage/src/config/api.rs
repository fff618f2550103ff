//! The `[api]` section: where the HTTP API listens, which tokens it accepts, and what the
//! client configurations it hands out contain.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use plane::config::{err, parse_list, ConfigError, STATE_DIR};

/// The token file of interface `name` when `[api] token_file` is not set.
pub fn default_token_file(name: &str) -> std::path::PathBuf {
    Path::new(STATE_DIR).join(format!("{name}.api-tokens"))
}

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
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    insecure_plaintext: Option<bool>,
    capacity_report: Option<PathBuf>,
}

/// The PEM files the API serves HTTPS with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
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
    /// HTTPS instead of HTTP.
    pub tls: Option<TlsFiles>,
    /// Plain HTTP on an address other hosts reach, as the operator asked (warned about at
    /// start and in every status answer).
    pub insecure_plaintext: bool,
    /// Where the settings came from (the config file's path, or "embedded defaults"), for
    /// the web console's system page.
    pub source: String,
    /// The directory of the loadtest's capacity report (`capacity.md`, its plots and
    /// `capacity-figures.json`), shown and sized from on the web console's capacity page.
    pub capacity_report: Option<PathBuf>,
}

impl ApiSettings {
    /// The warning plain HTTP off loopback earns, if this API has it.
    pub fn transport_warning(&self) -> Option<String> {
        (self.tls.is_none() && !self.listen.ip().is_loopback()).then(|| {
            format!(
                "the HTTP API on {} is plain HTTP reachable from other hosts \
                 (insecure_plaintext = true): tokens and client private keys cross the network \
                 in clear; set tls_cert and tls_key in [api]",
                self.listen
            )
        })
    }
}

/// HTTPS files, or plain HTTP where that is safe or asked for: a non-loopback address
/// without TLS would carry tokens, client private keys and preshared keys in clear.
fn transport(
    listen: SocketAddr,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    insecure_plaintext: bool,
    base: &Path,
) -> Result<Option<TlsFiles>, ConfigError> {
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: base.join(cert),
            key: base.join(key),
        }),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(err(
                "api.tls_cert",
                "HTTPS needs both a certificate and its key, and only one is set",
                "set both tls_cert and tls_key (PEM files), or neither",
            ))
        }
    };
    if tls.is_some() && insecure_plaintext {
        return Err(err(
            "api.insecure_plaintext",
            "it is set together with tls_cert and tls_key, which serve HTTPS",
            "remove insecure_plaintext",
        ));
    }
    if tls.is_none() && !insecure_plaintext && !listen.ip().is_loopback() {
        return Err(err(
            "api.listen",
            format!(
                "{listen} is reachable from other hosts, and plain HTTP there would carry tokens \
                 and client private keys in clear"
            ),
            "set tls_cert and tls_key (PEM files) to serve HTTPS, or insecure_plaintext = true \
             if a TLS proxy or a private network protects it, or listen on 127.0.0.1",
        ));
    }
    Ok(tls)
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
    let token_file = s
        .token_file
        .map_or_else(|| default_token_file(name), |p| base.join(p));
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
    let insecure_plaintext = s.insecure_plaintext.unwrap_or(false);
    let tls = transport(listen, s.tls_cert, s.tls_key, insecure_plaintext, base)?;
    Ok(Some(ApiSettings {
        listen,
        token_file,
        endpoint: s.endpoint,
        dns,
        persistent_keepalive: s.persistent_keepalive.unwrap_or(0),
        client_allowed_ips,
        metrics_need_token: s.metrics_need_token.unwrap_or(false),
        groups: Vec::new(),
        tls,
        insecure_plaintext,
        source: "embedded defaults".into(),
        capacity_report: s.capacity_report.map(|p| base.join(p)),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::parse;
    use super::*;

    fn api(section: &str) -> Result<ApiSettings, String> {
        let text = format!("[registry]\n[api]\n{section}");
        parse(&text).map(|s| s.api.expect("the API is on with the registry"))
    }

    #[test]
    fn plain_http_is_refused_off_loopback_naming_both_ways_out() {
        for listen in ["0.0.0.0:9180", "192.0.2.7:9180", "[::]:9180"] {
            let e = api(&format!("listen = \"{listen}\"")).expect_err(listen);
            assert!(
                e.contains("api.listen")
                    && e.contains("tls_cert and tls_key")
                    && e.contains("insecure_plaintext = true"),
                "{e}"
            );
        }
        // Loopback needs neither, and carries no warning.
        for listen in ["127.0.0.1:9180", "[::1]:9180"] {
            let s = api(&format!("listen = \"{listen}\"")).expect(listen);
            assert!(s.tls.is_none() && s.transport_warning().is_none());
        }
    }

    #[test]
    fn insecure_plaintext_is_allowed_but_warned_about() {
        let s = api("listen = \"0.0.0.0:9180\"\ninsecure_plaintext = true").expect("asked for");
        let warning = s.transport_warning().expect("a warning");
        assert!(warning.contains("0.0.0.0:9180") && warning.contains("tls_cert"));
    }

    #[test]
    fn tls_needs_both_files_and_no_plaintext_flag() {
        let s = api("listen = \"0.0.0.0:9180\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"")
            .expect("HTTPS");
        let tls = s.tls.clone().expect("TLS files");
        assert_eq!(tls.cert, Path::new("/etc/xgate/c.pem"));
        assert_eq!(tls.key, Path::new("/etc/xgate/k.pem"));
        assert!(s.transport_warning().is_none());
        let e = api("tls_cert = \"c.pem\"").expect_err("no key");
        assert!(e.contains("set both tls_cert and tls_key"), "{e}");
        let e = api("tls_cert = \"c\"\ntls_key = \"k\"\ninsecure_plaintext = true")
            .expect_err("contradiction");
        assert!(e.contains("api.insecure_plaintext"), "{e}");
    }
}
