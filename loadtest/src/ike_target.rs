//! The IKEv2 side of a run: a CA and a server certificate made by `xgate pki` once per run,
//! the users (EAP passwords, ECDSA P-256 client certificates, pre-shared keys, the methods in
//! turn) made once and handed to every server that gets them, the `[ike]` section naming
//! the certificates, and the users registered with xgate through its API.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use ike::{Credentials, Identity, ServerTrust, TrustStore};
use serde_json::json;
use testbed::config;
use testbed::pki::{issue_client, xgate_pki as pki};

use crate::ike_load::IkeUserSpec;
use crate::target::{user_source, Target};

/// The server's IKE identity in loadtest runs.
pub const IKE_IDENTITY: &str = "vpn.loadtest";

/// The domain of a method's user identities (ike-7@cert.loadtest): the peers tell the
/// methods apart by it.
pub fn domain(method: &str) -> String {
    format!("{method}.loadtest")
}

/// Makes the CA and server certificate in `pki` unless they are there; returns the `[ike]`
/// section using them (the CA also vouching for the certificate users).
pub fn ike_section(xgate: &Path, pki_dir: &Path) -> Result<config::Ike> {
    if !pki_dir.join("server.pem").is_file() {
        let _ = std::fs::remove_dir_all(pki_dir);
        pki(xgate, pki_dir, &["ca"])?;
        pki(xgate, pki_dir, &["server", IKE_IDENTITY])?;
    }
    let file = |f: &str| Some(pki_dir.join(f).to_string_lossy().into_owned());
    Ok(config::Ike {
        enabled: Some(true),
        identity: Some(IKE_IDENTITY.into()),
        certificate: file("server.pem"),
        private_key: file("server.key"),
        ca: file("ca.pem"),
        ..config::Ike::default()
    })
}

/// `n` IKEv2 users, given `methods` in turn, their source addresses after the first `after`
/// (the WireGuard users'); certificate users' certificates are issued by the CA in `pki_dir`.
pub fn ike_users(
    xgate: &Path,
    pki_dir: &Path,
    (n, methods): (u32, &[&'static str]),
    after: u32,
) -> Result<Vec<IkeUserSpec>> {
    let ca = std::fs::read(pki_dir.join("ca.pem")).context("the loadtest CA")?;
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
        let method = methods[i as usize % methods.len().max(1)];
        let name = format!("ike-{i}");
        let identity = format!("{name}@{}", domain(method));
        let credentials = match method {
            "eap" => Credentials::Password {
                user: identity.clone(),
                password: format!("loadtest password {i:08}"),
                server: server.clone(),
            },
            "cert" => Credentials::Certificate(issue_client(
                xgate,
                pki_dir,
                (&name, &identity),
                IKE_IDENTITY,
            )?),
            _ => Credentials::Psk(format!("the loadtest key of user {i:08}").into_bytes()),
        };
        out.push(IkeUserSpec {
            method,
            identity,
            credentials,
            source: user_source(after + i),
        });
    }
    Ok(out)
}

impl Target {
    /// Registers the IKEv2 users with xgate through its API, each with its method.
    pub fn register_ike(&self, users: &[IkeUserSpec]) -> Result<()> {
        for (i, u) in users.iter().enumerate() {
            let (name, identity) = (format!("ike-{i}"), u.identity.as_str());
            let body = match &u.credentials {
                Credentials::Password { password, .. } => {
                    json!({ "name": name, "identity": identity, "auth": "eap", "password": password })
                }
                Credentials::Certificate(_) => {
                    json!({ "name": name, "identity": identity, "auth": "certificate" })
                }
                Credentials::Psk(key) => json!({
                    "name": name,
                    "identity": identity,
                    "psk": String::from_utf8_lossy(key),
                }),
            };
            self.api("POST", "/api/v1/ike/users", Some(body))
                .with_context(|| format!("registering IKEv2 user {identity}"))?;
        }
        Ok(())
    }
}
