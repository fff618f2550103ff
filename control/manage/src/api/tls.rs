//! HTTPS for the API: the operator's PEM certificate chain and key, loaded into a rustls
//! server configuration (TLS 1.2 and 1.3, ring's ciphers).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::config::TlsFiles;

/// Why the API's TLS files cannot serve HTTPS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("api.{field} ({}): cannot read it: {source}", path.display())]
    Read {
        /// `tls_cert` or `tls_key`.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("api.tls_cert ({}): no PEM certificate (-----BEGIN CERTIFICATE-----) in it", .0.display())]
    NoCertificate(PathBuf),
    /// The key file holds no PEM private key.
    #[error(
        "api.tls_key ({}): no PEM private key (PKCS#8, PKCS#1 or SEC1) in it",
        .0.display()
    )]
    NoKey(PathBuf),
    /// rustls refused the pair (a key that is not the certificate's, an unsupported key type).
    #[error("api.tls_cert and api.tls_key: {0}; check that the key belongs to the certificate")]
    Refused(rustls::Error),
}

fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        field,
        path: path.to_path_buf(),
        source,
    })
}

/// A server configuration over `files`; the certificate chain is sent leaf first, as written.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = read("tls_cert", &files.cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(files.cert.clone()));
    }
    // The key's bytes are never quoted back: a parse error says only that none was found.
    let key_pem = read("tls_key", &files.key)?;
    let key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey(files.key.clone()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Refused)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::Refused)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
