//! The signature AUTH methods from before RFC 7427, for clients that do not announce
//! SIGNATURE_HASH_ALGORITHMS (RFC 7296 §3.8, RFC 4754): ECDSA with SHA-256 on P-256 (9) and
//! SHA-384 on P-384 (10), the signature r | s at the curve's size; and RSA with SHA-1 (1),
//! verified only (ring signs no SHA-1). The key comes from the certificate's
//! SubjectPublicKeyInfo, read by x509-parser; ring verifies.

use ring::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::trust::CertRefusal;
use crate::identity::AuthMethod;

/// ECDSA with SHA-384 on P-384 (RFC 4754).
pub(super) const ECDSA_384: AuthMethod = AuthMethod(10);

/// The verification of a classic `method`, if it is one spoken here.
fn algorithm(method: AuthMethod) -> Option<&'static dyn VerificationAlgorithm> {
    match method {
        AuthMethod::ECDSA_256 => Some(&sig::ECDSA_P256_SHA256_FIXED),
        ECDSA_384 => Some(&sig::ECDSA_P384_SHA384_FIXED),
        AuthMethod::RSA_SIG => Some(&sig::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY),
        _ => None,
    }
}

/// Whether `method` is a classic signature method spoken here.
pub fn is_classic(method: AuthMethod) -> bool {
    algorithm(method).is_some()
}

/// Checks classic AUTH `data` of `method` over `signed` against the certificate `ee` (DER).
pub fn verify_classic_auth(
    ee: &[u8],
    method: AuthMethod,
    signed: &[u8],
    data: &[u8],
) -> Result<(), CertRefusal> {
    let alg = algorithm(method).ok_or(CertRefusal::UnsupportedAlgorithm)?;
    let (_, cert) = X509Certificate::from_der(ee)
        .map_err(|e| CertRefusal::Unreadable(format!("the certificate: {e}")))?;
    let key = &cert.tbs_certificate.subject_pki.subject_public_key.data;
    UnparsedPublicKey::new(alg, key.as_ref())
        .verify(signed, data)
        .map_err(|_| CertRefusal::BadSignature)
}
