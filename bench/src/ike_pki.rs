//! The certificates the IKE setup rate is measured with: a CA, the server's certificate for
//! vpn.example.com and one client certificate per user, all ECDSA P-256, made by `xgate pki`
//! once per run and used by both servers.

use std::path::{Path, PathBuf};

use anyhow::Result;
use testbed::pki::{issue_client, xgate_pki as pki};
use testbed::CertFiles;

use testbed::ike_client::{IkeUser, Proof};

/// The domain of the certificate users' identities (c0@cert.example.com ...).
pub const CERT_DOMAIN: &str = "cert.example.com";

/// The CA's directory and the users it issued for.
pub struct BenchPki {
    /// Where `xgate pki` wrote everything.
    pub dir: PathBuf,
    /// One user per client certificate.
    pub users: Vec<IkeUser>,
}

impl BenchPki {
    /// Makes the CA, the server's certificate and `users` client certificates under `dir`.
    pub fn make(xgate: &Path, dir: &Path, users: usize) -> Result<Self> {
        let dir = dir.join("pki");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        pki(xgate, &dir, &["ca"])?;
        pki(xgate, &dir, &["server", "vpn.example.com"])?;
        let mut made = Vec::with_capacity(users);
        for i in 0..users {
            let (name, identity) = (format!("c{i}"), format!("c{i}@{CERT_DOMAIN}"));
            let certs = issue_client(xgate, &dir, (&name, &identity), "vpn.example.com")?;
            made.push(IkeUser {
                identity,
                proof: Proof::Certificate(certs),
            });
        }
        Ok(Self { dir, users: made })
    }

    /// The server's certificate files, for strongSwan as the responder.
    pub fn server_files(&self) -> CertFiles {
        CertFiles {
            name: "server".into(),
            cert: self.dir.join("server.pem"),
            key: self.dir.join("server.key"),
            ca: self.dir.join("ca.pem"),
        }
    }

    /// A file of the CA's directory, as a config value.
    pub fn path(&self, file: &str) -> Option<String> {
        Some(self.dir.join(file).to_string_lossy().into_owned())
    }
}
