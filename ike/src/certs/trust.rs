//! The trust store: the CA certificates a peer's chain must lead to and the CRLs that revoke
//! what they issued, and the checks of a peer's certificate: chain, validity at the caller's
//! time, revocation, key usage, and that it names the identity the peer claims.

use std::time::Duration;

use ring::digest;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use webpki::{
    CertRevocationList, EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeId, KeyPurposeIdIter,
    KeyUsage, OwnedCertRevocationList, RequiredEkuNotFoundContext, RevocationCheckDepth,
    RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::credential::CredentialError;
use super::names::names_identity;
use super::signature::CHAIN_ALGORITHMS;
use crate::identity::Identity;

/// Why a peer's certificate was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertRefusal {
    /// No CERT payload in the X.509 encoding came.
    #[error("no certificate was sent")]
    Missing,
    /// A certificate or the AUTH data does not parse.
    #[error("unreadable: {0}")]
    Unreadable(String),
    /// The chain leads to no configured CA.
    #[error("the certificate is not issued by a trusted CA")]
    Untrusted,
    /// Past its notAfter.
    #[error("the certificate has expired")]
    Expired,
    /// Before its notBefore.
    #[error("the certificate is not valid yet")]
    NotYetValid,
    /// Listed in a CA's CRL.
    #[error("the certificate is revoked")]
    Revoked,
    /// Its extended key usage rules out IKE.
    #[error("the certificate's extended key usage rules out IKE")]
    WrongUsage,
    /// It does not name the identity the peer sent.
    #[error("the certificate does not name {0}")]
    IdentityMismatch(String),
    /// The AUTH signature does not verify with the certificate's key.
    #[error("the AUTH signature does not verify")]
    BadSignature,
    /// The AUTH's signature algorithm is not one spoken here.
    #[error("the signature algorithm is not supported")]
    UnsupportedAlgorithm,
    /// No certificates are configured on this side.
    #[error("certificate authentication is not configured")]
    NotConfigured,
    /// More certificates than a chain needs: a peer making this side verify many.
    #[error("more than {MAX_CHAIN} certificates were sent")]
    ChainTooLong,
    /// Any other chain error, in webpki's words.
    #[error("the chain is refused: {0}")]
    Other(String),
}

/// The most certificates a peer's chain may hold: its own and three intermediates.
pub const MAX_CHAIN: usize = 4;

/// Which side a certificate is checked for: its extended key usage must allow that role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// A client (the initiator): clientAuth.
    Client,
    /// A server (the responder): serverAuth.
    Server,
}

impl CertRefusal {
    /// Every `reason`, for counters shown at zero before the first refusal.
    pub const REASONS: [&'static str; 13] = [
        "missing",
        "unreadable",
        "untrusted",
        "expired",
        "not_yet_valid",
        "revoked",
        "wrong_usage",
        "identity_mismatch",
        "bad_signature",
        "unsupported_algorithm",
        "not_configured",
        "chain_too_long",
        "other",
    ];

    /// A short name for counting (a metrics label).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Unreadable(_) => "unreadable",
            Self::Untrusted => "untrusted",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Revoked => "revoked",
            Self::WrongUsage => "wrong_usage",
            Self::IdentityMismatch(_) => "identity_mismatch",
            Self::BadSignature => "bad_signature",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::NotConfigured => "not_configured",
            Self::ChainTooLong => "chain_too_long",
            Self::Other(_) => "other",
        }
    }

    fn of(e: webpki::Error) -> Self {
        use webpki::Error as E;
        match e {
            // A chain signature that fails means another key issued it, whatever its name.
            E::UnknownIssuer | E::CaUsedAsEndEntity | E::InvalidSignatureForPublicKey => {
                Self::Untrusted
            }
            E::CertExpired { .. } => Self::Expired,
            E::CertNotValidYet { .. } => Self::NotYetValid,
            E::CertRevoked => Self::Revoked,
            E::RequiredEkuNotFoundContext(_) => Self::WrongUsage,
            E::BadDer | E::BadDerTime | E::TrailingData(_) => Self::Unreadable(e.to_string()),
            other => Self::Other(other.to_string()),
        }
    }
}

/// The extended key usages a peer's certificate may carry for IKE in its role (RFC 4945
/// §5.1.3.12): none at all, its role's (serverAuth or clientAuth), ipsecIKE, or any. A client
/// certificate cannot pose as the server, nor a server's as a user.
struct IkeUsage(PeerRole);

/// id-kp-serverAuth, id-kp-clientAuth (OID contents).
const SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
/// id-kp-ipsecIKE, anyExtendedKeyUsage (OID contents).
const ANY_ROLE: [&[u8]; 2] = [
    &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x11],
    &[0x55, 0x1d, 0x25, 0x00],
];

impl ExtendedKeyUsageValidator for IkeUsage {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let role = match self.0 {
            PeerRole::Client => CLIENT_AUTH,
            PeerRole::Server => SERVER_AUTH,
        };
        let mut present = Vec::new();
        for id in iter {
            let id = id?;
            if ANY_ROLE
                .iter()
                .chain([&role])
                .any(|u| KeyPurposeId::new(u) == id)
            {
                return Ok(());
            }
            present.push(id.to_decoded_oid());
        }
        if present.is_empty() {
            return Ok(());
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(
            RequiredEkuNotFoundContext {
                required: KeyUsage::client_auth(),
                present,
            },
        ))
    }
}

/// The CAs trusted, their CRLs, and the digests a CERTREQ names them by.
#[derive(Debug)]
pub struct TrustStore {
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<CertRevocationList<'static>>,
    digests: Vec<[u8; 20]>,
}

impl TrustStore {
    /// A store of the CA certificates in `ca_pem` and the CRLs in `crl_pem` (PEM text; a
    /// CRL for a CA makes its revocations count).
    pub fn from_pem(ca_pem: &[u8], crl_pem: Option<&[u8]>) -> Result<Self, CredentialError> {
        use rustls_pki_types::pem::PemObject;
        let cas = CertificateDer::pem_slice_iter(ca_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CredentialError::Pem(format!("the CA file: {e}")))?;
        let crls = match crl_pem {
            None => Vec::new(),
            Some(pem) => CertificateRevocationListDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CredentialError::Pem(format!("the CRL file: {e}")))?,
        };
        Self::new(&cas, &crls)
    }

    /// A store of the DER CA certificates `cas` and DER CRLs `crls`.
    pub fn new(
        cas: &[CertificateDer<'_>],
        crls: &[CertificateRevocationListDer<'_>],
    ) -> Result<Self, CredentialError> {
        if cas.is_empty() {
            return Err(CredentialError::Pem("no CA certificate found".into()));
        }
        let mut anchors = Vec::with_capacity(cas.len());
        let mut digests = Vec::with_capacity(cas.len());
        for ca in cas {
            let anchor = webpki::anchor_from_trusted_cert(ca)
                .map_err(|e| CredentialError::Certificate(format!("a CA certificate: {e}")))?;
            anchors.push(anchor.to_owned());
            let (_, parsed) = X509Certificate::from_der(ca)
                .map_err(|e| CredentialError::Certificate(format!("a CA certificate: {e}")))?;
            let spki = digest::digest(
                &digest::SHA1_FOR_LEGACY_USE_ONLY,
                parsed.tbs_certificate.subject_pki.raw,
            );
            let mut d = [0u8; 20];
            d.copy_from_slice(spki.as_ref());
            digests.push(d);
        }
        let crls = crls
            .iter()
            .map(|c| {
                OwnedCertRevocationList::from_der(c)
                    .map(CertRevocationList::from)
                    .map_err(|e| CredentialError::Certificate(format!("a CRL: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            anchors,
            crls,
            digests,
        })
    }

    /// The CAs' SubjectPublicKeyInfo SHA-1 digests, as a CERTREQ names them.
    pub fn digests(&self) -> &[[u8; 20]] {
        &self.digests
    }

    /// Checks a peer's `chain` (its own certificate first, then any intermediates, DER)
    /// at `unix_secs`: at most `MAX_CHAIN` long, issued under a trusted CA, valid then, not
    /// revoked, usable for IKE in `role`, naming `id`.
    pub fn verify(
        &self,
        chain: &[&[u8]],
        (id, role): (&Identity, PeerRole),
        unix_secs: u64,
    ) -> Result<(), CertRefusal> {
        if chain.len() > MAX_CHAIN {
            return Err(CertRefusal::ChainTooLong);
        }
        let (ee, rest) = chain.split_first().ok_or(CertRefusal::Missing)?;
        let ee_der = CertificateDer::from(*ee);
        let cert = EndEntityCert::try_from(&ee_der).map_err(CertRefusal::of)?;
        let intermediates: Vec<CertificateDer<'_>> =
            rest.iter().map(|c| CertificateDer::from(*c)).collect();
        let crls: Vec<&CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = RevocationOptionsBuilder::new(&crls).ok().map(|b| {
            b.with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(UnknownStatusPolicy::Allow)
                .build()
        });
        let time = UnixTime::since_unix_epoch(Duration::from_secs(unix_secs));
        cert.verify_for_usage(
            CHAIN_ALGORITHMS,
            &self.anchors,
            &intermediates,
            time,
            IkeUsage(role),
            revocation,
            None,
        )
        .map_err(CertRefusal::of)?;
        if !names_identity(ee, id)? {
            return Err(CertRefusal::IdentityMismatch(id.display()));
        }
        Ok(())
    }
}
