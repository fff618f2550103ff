//! xgate as an IKEv2 server for the loadtest: a CA and a server certificate made by `xgate
//! pki` in the run's directory, the `[ike]` section naming them, and IKEv2 users registered
//! through the API (a key each, or a password), handed to `ike_load` with what each logs in
//! with.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use ike::{Credentials, Identity, ServerTrust, TrustStore};
use serde_json::json;
use testbed::config;
use testbed::pki::xgate_pki as pki;

use crate::ike_load::IkeUserSpec;
use crate::target::{user_source, Target};

/// The server's IKE identity in loadtest runs.
pub const IKE_IDENTITY: &str = "vpn.loadtest";

/// Makes the CA and server certificate in `dir`/pki; returns the `[ike]` section using them.
pub fn ike_section(xgate: &Path, dir: &Path) -> Result<config::Ike> {
    let d = dir.join("pki");
    let _ = std::fs::remove_dir_all(&d);
    pki(xgate, &d, &["ca"])?;
    pki(xgate, &d, &["server", IKE_IDENTITY])?;
    let file = |f: &str| Some(d.join(f).to_string_lossy().into_owned());
    Ok(config::Ike {
        enabled: Some(true),
        identity: Some(IKE_IDENTITY.into()),
        certificate: file("server.pem"),
        private_key: file("server.key"),
        ..config::Ike::default()
    })
}

impl Target {
    /// Registers `n` IKEv2 users logging in by `auth` ("eap" or "psk"); their source addresses
    /// follow the first `after` (the WireGuard users').
    pub fn register_ike(&self, n: u32, auth: &str, after: u32) -> Result<Vec<IkeUserSpec>> {
        let ca = std::fs::read(self.server.dir.join("pki/ca.pem")).context("the loadtest CA")?;
        let trust = TrustStore::from_pem(&ca, None).map_err(|e| anyhow::anyhow!("{e}"))?;
        let unix_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let server = Arc::new(ServerTrust {
            trust,
            server: Identity::from_text(IKE_IDENTITY),
            unix_secs,
        });
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let name = format!("ike-{i}");
            let password = format!("loadtest password {i:08}");
            let body = match auth {
                "eap" => json!({ "name": name, "auth": "eap", "password": password }),
                _ => json!({ "name": name, "identity": format!("{name}@loadtest") }),
            };
            let made = self.api("POST", "/api/v1/ike/users", Some(body))?;
            let credentials = match auth {
                "eap" => Credentials::Password {
                    user: name.clone(),
                    password,
                    server: server.clone(),
                },
                _ => Credentials::Psk(
                    made["psk"]
                        .as_str()
                        .context("no key in the answer")?
                        .as_bytes()
                        .to_vec(),
                ),
            };
            out.push(IkeUserSpec {
                identity: made["identity"].as_str().unwrap_or(&name).to_string(),
                credentials,
                source: user_source(after + i),
            });
        }
        Ok(out)
    }
}
