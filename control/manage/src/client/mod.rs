//! The CLI's side of the HTTP API: `xgate peer ...` and `xgate status` send requests and
//! print the answers, as tables for people or as JSON for scripts.

mod render;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

pub use render::{peer_table, status_table};

/// Where the API is and how to authenticate.
pub struct ApiClient {
    base: String,
    token: String,
    agent: ureq::Agent,
}

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

/// The token: given, from `XGATE_TOKEN`, or from the secret file the daemon wrote for
/// `interface` (or `file`).
pub fn find_token(given: Option<String>, file: Option<PathBuf>, interface: &str) -> Result<String> {
    // An empty --token or XGATE_TOKEN counts as unset.
    let given = given.filter(|t| !t.trim().is_empty());
    let env = || {
        std::env::var("XGATE_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
    };
    if let Some(t) = given.or_else(env) {
        return Ok(t.trim().to_string());
    }
    let path = file.unwrap_or_else(|| {
        Path::new(plane::config::STATE_DIR).join(format!("{interface}.api-tokens.secret"))
    });
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow!(
            "no API token: cannot read {} ({e}); pass --token, set XGATE_TOKEN or --token-file",
            path.display()
        )
    })?;
    Ok(text.trim().to_string())
}

impl ApiClient {
    /// A client for the API at `base` (such as `http://127.0.0.1:9180`); an `https://` API's
    /// certificate is checked against the CA certificates in `ca_file` (PEM) when given.
    pub fn new(base: &str, token: String, ca_file: Option<&Path>) -> Result<Self> {
        let mut agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60));
        if let Some(path) = ca_file {
            agent = agent.tls_config(trusting(path)?);
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent: agent.build(),
        })
    }

    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<String> {
        let url = format!("{}{path}", self.base);
        let req = self
            .agent
            .request(method, &url)
            .set("Authorization", &format!("Bearer {}", self.token));
        let result = match body {
            Some(b) => req.send_json(b.clone()),
            None => req.call(),
        };
        match result {
            Ok(r) => r.into_string().context("reading the API's answer"),
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                let message = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(String::from))
                    .unwrap_or(text);
                Err(anyhow!("the API refused ({code}): {message}"))
            }
            Err(e) => Err(anyhow!(
                "cannot reach the API at {}: {e}; is xgate up with a registry, and is --api right?",
                self.base
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

    /// Every peer, following the pages.
    pub fn all_peers(&self, group: Option<&str>) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let mut path = format!("/api/v1/peers?limit=1000&after={after}");
            if let Some(g) = group {
                path += &format!("&group={g}");
            }
            let page = self.get(&path)?;
            if let Some(peers) = page["peers"].as_array() {
                out.extend(peers.iter().cloned());
            }
            match page["next_after"].as_i64() {
                Some(next) => after = next,
                None => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_token_counts_as_unset() {
        let file = std::env::temp_dir().join(format!("xgate-token-{}", std::process::id()));
        std::fs::write(&file, "from-the-file\n").expect("token file");
        let found = find_token(Some("  ".into()), Some(file.clone()), "xgate0");
        let _ = std::fs::remove_file(&file);
        assert_eq!(found.expect("read from the file"), "from-the-file");
        assert_eq!(
            find_token(Some(" given ".into()), None, "xgate0").expect("given"),
            "given"
        );
    }
}
