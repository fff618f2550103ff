//! Certificate authentication (RFC 7296 §3.6, §3.7, RFC 7427): the CERT and CERTREQ payloads,
//! the trust store a peer's chain is checked against (`trust`), whether a certificate names an
//! identity (`names`), RFC 7427 signatures in the AUTH payload (`signature`) and the
//! methods from before it (`classic`), and this side's own certificate and key
//! (`credential`). Chains, validity, revocation and signatures are
//! checked by webpki; names are read by x509-parser. The time is the caller's: no clock here.

mod classic;
mod credential;
mod names;
mod signature;
mod trust;

#[cfg(test)]
mod tests;

pub use classic::{is_classic, verify_classic_auth};
pub use credential::{Credential, CredentialError};
pub use names::names_identity;
pub use signature::{read_signature_auth, verify_signature_auth};
pub use trust::{CertRefusal, PeerRole, TrustStore, MAX_CHAIN};

/// The DER certificates of the PEM text `pem`, in order.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, CredentialError> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CredentialError::Pem(e.to_string()))
}

/// The CERT/CERTREQ encoding of a DER X.509 certificate ("X.509 Certificate - Signature").
pub const X509_SIGNATURE: u8 = 4;

/// A CERT payload's body carrying the DER certificate `der`.
pub fn cert_body(der: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + der.len());
    out.push(X509_SIGNATURE);
    out.extend_from_slice(der);
    out
}

/// The DER certificate in a CERT payload's body, if it carries one in the X.509 encoding
/// (other encodings, such as hash-and-URL, are not taken).
pub fn read_cert_body(body: &[u8]) -> Option<&[u8]> {
    match body.split_first() {
        Some((&X509_SIGNATURE, der)) if !der.is_empty() => Some(der),
        _ => None,
    }
}

/// A CERTREQ payload's body naming the CAs whose SubjectPublicKeyInfo SHA-1 digests are
/// `digests` (RFC 7296 §3.7).
pub fn certreq_body(digests: &[[u8; 20]]) -> Vec<u8> {
    let mut out = vec![X509_SIGNATURE];
    for d in digests {
        out.extend_from_slice(d);
    }
    out
}

/// Certificate authentication on the responder: its own certificate and key, and the CAs
/// clients' certificates must lead to (absent: no client certificate is taken).
#[derive(Debug)]
pub struct CertAuth {
    /// This side's certificate chain and key.
    pub own: std::sync::Arc<Credential>,
    /// The CAs and CRLs clients are checked against.
    pub trust: Option<TrustStore>,
    certreq: Option<Vec<u8>>,
}

impl CertAuth {
    /// Certificate authentication with `own` credential, checking clients against `trust`.
    pub fn new(own: Credential, trust: Option<TrustStore>) -> Self {
        Self::sharing(std::sync::Arc::new(own), trust)
    }

    /// The same own credential, checking clients against `trust` (new CRLs, say).
    pub fn with_trust(&self, trust: Option<TrustStore>) -> Self {
        Self::sharing(self.own.clone(), trust)
    }

    fn sharing(own: std::sync::Arc<Credential>, trust: Option<TrustStore>) -> Self {
        let certreq = trust.as_ref().map(|t| certreq_body(t.digests()));
        Self {
            own,
            trust,
            certreq,
        }
    }

    /// The CERTREQ body IKE_SA_INIT answers carry, when client certificates are taken.
    pub fn certreq(&self) -> Option<&[u8]> {
        self.certreq.as_deref()
    }
}
