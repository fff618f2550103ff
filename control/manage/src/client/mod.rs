//! The CLI's side of the HTTP API: `xgate peer ...` and `xgate status` send requests and
//! print the answers, as tables for people or as JSON for scripts.

mod render;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

pub use render::{cluster_table, iso8601, peer_table, seconds_ago, status_table};

/// A TLS client configuration that trusts exactly the CA certificates in `path`.
fn trusting(path: &Path) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let pem = std::fs::read(path).with_context(|| format!("--ca-file {}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok) {
        roots
            .add(cert)
            .with_context(|| format!("--ca-file {}: a certificate is unusable", path.display()))?;
    }
    if roots.is_empty() {
        return Err(anyhow!(
            "--ca-file {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        ));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS client set-up")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

/// Where the CLI's token came from (a 401 names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token`.
    Given,
    /// `XGATE_TOKEN`.
    Environment,
    /// `--token-file`.
    File(PathBuf),
    /// The secret file the daemon wrote for an interface; `explicit` when `--interface`
    /// named it (else it is the default's, and the API may name another).
    Interface {
        /// The interface.
        name: String,
        /// Named on the command line.
        explicit: bool,
    },
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Given => write!(f, "--token"),
            Self::Environment => write!(f, "XGATE_TOKEN"),
            Self::File(p) => write!(f, "--token-file {}", p.display()),
            Self::Interface { name, .. } => {
                write!(f, "{} (interface {name})", interface_secret(name).display())
            }
        }
    }
}

/// The secret file the daemon writes for `interface` with the default token file.
pub fn interface_secret(interface: &str) -> PathBuf {
    crate::api::secret_path(&crate::config::default_token_file(interface))
}

fn read_secret(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow!(
            "no API token: cannot read {} ({e}); pass --token, set XGATE_TOKEN or --token-file",
            path.display()
        )
    })?;
    Ok(text.trim().to_string())
}

/// The token: given, from `XGATE_TOKEN`, from `file`, or from the secret file the daemon
/// wrote for `interface` (`xgate0` when not given).
pub fn find_token(
    given: Option<String>,
    file: Option<PathBuf>,
    interface: Option<&str>,
) -> Result<(String, TokenSource)> {
    // An empty --token or XGATE_TOKEN counts as unset.
    if let Some(t) = given.filter(|t| !t.trim().is_empty()) {
        return Ok((t.trim().to_string(), TokenSource::Given));
    }
    if let Some(t) = std::env::var("XGATE_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok((t.trim().to_string(), TokenSource::Environment));
    }
    if let Some(path) = file {
        return Ok((read_secret(&path)?, TokenSource::File(path)));
    }
    let name = interface.unwrap_or(plane::config::DEFAULT_INTERFACE);
    let source = TokenSource::Interface {
        name: name.to_string(),
        explicit: interface.is_some(),
    };
    match (read_secret(&interface_secret(name)), interface) {
        (Ok(token), _) => Ok((token, source)),
        // Without --interface the API may serve another interface: its 401 names it, and
        // that interface's file is read then (see `ApiClient::send`).
        (Err(_), None) => Ok((String::new(), source)),
        (Err(e), Some(_)) => Err(e),
    }
}

/// Where the API is and how to authenticate.
pub struct ApiClient {
    base: String,
    token: std::cell::RefCell<(String, TokenSource)>,
    agent: ureq::Agent,
}

/// True if the API URL `base` names this host (loopback or `localhost`).
fn on_this_host(base: &str) -> bool {
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What an error answer says: its message, and the interface a 401 names.
fn refusal(text: &str) -> (String, Option<String>) {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => (
            v["error"].as_str().unwrap_or(text).to_string(),
            v["interface"].as_str().map(String::from),
        ),
        Err(_) => (text.to_string(), None),
    }
}

/// An answer that is not a success: its status (0: none came), message, and the interface a
/// 401 names.
struct Refused(u16, String, Option<String>);

impl ApiClient {
    /// A client for the API at `base` (such as `http://127.0.0.1:9180`); an `https://` API's
    /// certificate is checked against the CA certificates in `ca_file` (PEM) when given.
    pub fn new(base: &str, token: (String, TokenSource), ca_file: Option<&Path>) -> Result<Self> {
        let mut agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60));
        if let Some(path) = ca_file {
            agent = agent.tls_config(trusting(path)?);
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token: std::cell::RefCell::new(token),
            agent: agent.build(),
        })
    }

    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<String> {
        match self.send_once(method, path, body) {
            // The default interface's token, and the API serves another interface: that
            // interface's token, once.
            Err(Refused(401, _, Some(served))) if self.may_switch_to(&served) => {
                let token = read_secret(&interface_secret(&served))?;
                *self.token.borrow_mut() = (
                    token,
                    TokenSource::Interface {
                        name: served,
                        explicit: false,
                    },
                );
                self.send_once(method, path, body)
                    .map_err(|r| self.explain(r))
            }
            other => other.map_err(|r| self.explain(r)),
        }
    }

    /// Whether a 401 naming interface `served` may lead to that interface's local secret:
    /// only from an API on this host (a remote one, or someone in the middle, must not pick
    /// which local token is sent to it) and only for a real interface name.
    fn may_switch_to(&self, served: &str) -> bool {
        matches!(&self.token.borrow().1,
            TokenSource::Interface { name, explicit: false } if name != served)
            && plane::config::validate_interface_name(served).is_ok()
            && on_this_host(&self.base)
            && interface_secret(served).exists()
    }

    fn explain(&self, r: Refused) -> anyhow::Error {
        match r {
            Refused(0, message, _) => anyhow!("{message}"),
            Refused(401, message, _) => {
                let (token, source) = &*self.token.borrow();
                if token.is_empty() {
                    // The default interface's file was missing, and no other was found.
                    return match &source {
                        TokenSource::Interface { name, .. } => {
                            read_secret(&interface_secret(name)).err()
                        }
                        _ => None,
                    }
                    .unwrap_or_else(|| anyhow!("no API token"));
                }
                anyhow!("the API refused (401): {message}; the token came from {source}")
            }
            Refused(code, message, _) => anyhow!("the API refused ({code}): {message}"),
        }
    }

    fn send_once(&self, method: &str, path: &str, body: Option<&Value>) -> Result<String, Refused> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.request(method, &url);
        let token = self.token.borrow().0.clone();
        if !token.is_empty() {
            req = req.set("Authorization", &format!("Bearer {token}"));
        }
        let result = match body {
            Some(b) => req.send_json(b.clone()),
            None => req.call(),
        };
        match result {
            Ok(r) => r
                .into_string()
                .map_err(|e| Refused(0, format!("reading the API's answer: {e}"), None)),
            Err(ureq::Error::Status(code, r)) => {
                let (message, interface) = refusal(&r.into_string().unwrap_or_default());
                Err(Refused(code, message, interface))
            }
            Err(e) => Err(Refused(
                0,
                format!(
                    "cannot reach the API at {}: {e}; is xgate up with a registry, and is \
                     --api right?",
                    self.base
                ),
                None,
            )),
        }
    }

    fn json(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let text = self.send(method, path, body)?;
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .with_context(|| format!("the API's answer to {path} is not JSON"))
    }

    /// GET, JSON answer.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.json("GET", path, None)
    }

    /// POST with a JSON body, JSON answer.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.json("POST", path, Some(body))
    }

    /// DELETE.
    pub fn delete(&self, path: &str) -> Result<()> {
        self.send("DELETE", path, None).map(|_| ())
    }

    /// GET, text answer.
    pub fn text(&self, path: &str) -> Result<String> {
        self.send("GET", path, None)
    }

    /// One page of peers: `(peers, next_after)`.
    pub fn peer_page(
        &self,
        filter: &PeerFilter,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<Value>, Option<i64>)> {
        let mut path = format!(
            "/api/v1/peers?limit={limit}&after={after}&revoked={}",
            filter.revoked
        );
        if let Some(g) = &filter.group {
            path += &format!("&group={}", component(g));
        }
        let page = self.get(&path)?;
        let peers = page["peers"].as_array().cloned().unwrap_or_default();
        Ok((peers, page["next_after"].as_i64()))
    }

    /// Every peer `filter` lets through with an id above `after`, following the pages.
    pub fn all_peers(&self, filter: &PeerFilter, mut after: i64) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        loop {
            let (peers, next) = self.peer_page(filter, after, 1000)?;
            out.extend(peers);
            match next {
                Some(next) => after = next,
                None => return Ok(out),
            }
        }
    }
}

/// Which peers a listing shows.
#[derive(Debug, Clone, Default)]
pub struct PeerFilter {
    /// Only this group.
    pub group: Option<String>,
    /// Revoked peers too.
    pub revoked: bool,
}

/// `text` as one path segment or query value (a peer's name may hold any printable
/// character).
pub fn component(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_api_on_this_host_may_pick_the_local_token() {
        for base in [
            "http://127.0.0.1:9180",
            "https://[::1]:9180/",
            "http://localhost",
        ] {
            assert!(on_this_host(base), "{base}");
        }
        for base in [
            "http://192.0.2.1:9180",
            "https://vpn.example.com",
            "http://[2001:db8::1]",
        ] {
            assert!(!on_this_host(base), "{base}");
        }
    }

    #[test]
    fn an_empty_token_counts_as_unset() {
        let file = std::env::temp_dir().join(format!("xgate-token-{}", std::process::id()));
        std::fs::write(&file, "from-the-file\n").expect("token file");
        let found = find_token(Some("  ".into()), Some(file.clone()), None);
        let _ = std::fs::remove_file(&file);
        assert_eq!(found.expect("read from the file").0, "from-the-file");
        assert_eq!(
            find_token(Some(" given ".into()), None, None)
                .expect("given")
                .0,
            "given"
        );
    }
}
