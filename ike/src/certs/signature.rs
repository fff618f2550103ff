//! RFC 7427 digital-signature AUTH data: a one-octet length, the DER AlgorithmIdentifier of
//! the signature algorithm, then the signature. The algorithms a peer may use are webpki's
//! (over ring); an identifier names the algorithm, the certificate's key picks the curve.

use rustls_pki_types::{AlgorithmIdentifier, SignatureVerificationAlgorithm};
use webpki::EndEntityCert;

use super::trust::CertRefusal;

/// The signature algorithms a peer's AUTH may use.
const VERIFIERS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// The algorithms a CA's signatures on certificates and CRLs may use.
pub(super) const CHAIN_ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = VERIFIERS;

/// Splits RFC 7427 AUTH data into the AlgorithmIdentifier's contents (inside its SEQUENCE)
/// and the signature.
pub fn read_signature_auth(data: &[u8]) -> Result<(&[u8], &[u8]), CertRefusal> {
    let malformed = || CertRefusal::Unreadable("RFC 7427 AUTH data".into());
    let (&len, rest) = data.split_first().ok_or_else(malformed)?;
    let len = usize::from(len);
    if rest.len() <= len || len < 2 {
        return Err(malformed());
    }
    let (id, signature) = rest.split_at(len);
    // A SEQUENCE with a short-form length that fills the field exactly.
    if id[0] != 0x30 || usize::from(id[1]) != len - 2 {
        return Err(malformed());
    }
    Ok((&id[2..], signature))
}

/// The AUTH data for `signature` made with the algorithm `id` (its AlgorithmIdentifier's
/// contents).
pub(super) fn signature_auth(id: &AlgorithmIdentifier, signature: &[u8]) -> Vec<u8> {
    let inner = id.as_ref();
    let mut out = Vec::with_capacity(3 + inner.len() + signature.len());
    // Every identifier spoken here is under 128 bytes: one length octet each.
    out.push((inner.len() + 2) as u8);
    out.extend_from_slice(&[0x30, inner.len() as u8]);
    out.extend_from_slice(inner);
    out.extend_from_slice(signature);
    out
}

/// Checks RFC 7427 AUTH `data` over `signed` against the end-entity certificate `ee` (DER).
pub fn verify_signature_auth(ee: &[u8], signed: &[u8], data: &[u8]) -> Result<(), CertRefusal> {
    let (id, signature) = read_signature_auth(data)?;
    let der = rustls_pki_types::CertificateDer::from(ee);
    let cert = EndEntityCert::try_from(&der)
        .map_err(|e| CertRefusal::Unreadable(format!("the certificate: {e}")))?;
    let mut named = false;
    for alg in VERIFIERS
        .iter()
        .filter(|a| a.signature_alg_id().as_ref() == id)
    {
        named = true;
        // An identifier may fit several curves; the certificate's key decides which.
        if cert.verify_signature(*alg, signed, signature).is_ok() {
            return Ok(());
        }
    }
    Err(if named {
        CertRefusal::BadSignature
    } else {
        CertRefusal::UnsupportedAlgorithm
    })
}
