//! This side's certificate chain and private key, and the RFC 7427 AUTH data it signs with:
//! ECDSA (P-256 with SHA-256, P-384 with SHA-384) or RSA (PKCS#1 v1.5 with SHA-256), by ring;
//! and for a peer without RFC 7427, ECDSA's classic method (RFC 4754).

use ring::rand::SecureRandom;
use ring::signature::{self as sig, EcdsaKeyPair, KeyPair, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{alg_id, AlgorithmIdentifier, CertificateDer, PrivateKeyDer};

use super::classic::ECDSA_384;
use super::names::names_identity;
use super::signature::{signature_auth, verify_signature_auth};
use crate::identity::{AuthMethod, Identity};

/// Why a certificate, key or CA could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The PEM text holds nothing usable.
    #[error("{0}")]
    Pem(String),
    /// A certificate or CRL does not parse.
    #[error("{0}")]
    Certificate(String),
    /// The private key is of a kind not spoken here, or does not parse.
    #[error("{0}")]
    Key(String),
    /// The key does not belong to the certificate.
    #[error("the private key does not match the certificate")]
    Mismatch,
    /// The certificate does not name this side's identity.
    #[error("the certificate does not name {0} in its subjectAltName")]
    Identity(String),
}

/// An ECDSA key twice: for RFC 7427 (ASN.1 signatures, named by `id`) and for its classic
/// `method` (r | s).
struct EcdsaKeys {
    rfc7427: EcdsaKeyPair,
    id: AlgorithmIdentifier,
    classic: EcdsaKeyPair,
    method: AuthMethod,
}

/// Boxed alike: the two differ in size by hundreds of bytes.
enum SigningKey {
    Ecdsa(Box<EcdsaKeys>),
    Rsa(Box<RsaKeyPair>),
}

/// A certificate chain (own certificate first) and its private key.
pub struct Credential {
    chain: Vec<Vec<u8>>,
    key: SigningKey,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("chain", &self.chain.len())
            .field("key", &self.key_kind())
            .finish()
    }
}

fn signing_key(key: &PrivateKeyDer<'_>, rng: &dyn SecureRandom) -> Result<SigningKey, String> {
    match key {
        PrivateKeyDer::Pkcs8(der) => {
            let der = der.secret_pkcs8_der();
            let ecdsa = [
                (
                    &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
                    alg_id::ECDSA_SHA256,
                    &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                    AuthMethod::ECDSA_256,
                ),
                (
                    &sig::ECDSA_P384_SHA384_ASN1_SIGNING,
                    alg_id::ECDSA_SHA384,
                    &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
                    ECDSA_384,
                ),
            ];
            for (alg, id, fixed, method) in ecdsa {
                if let (Ok(k), Ok(f)) = (
                    EcdsaKeyPair::from_pkcs8(alg, der, rng),
                    EcdsaKeyPair::from_pkcs8(fixed, der, rng),
                ) {
                    return Ok(SigningKey::Ecdsa(Box::new(EcdsaKeys {
                        rfc7427: k,
                        id,
                        classic: f,
                        method,
                    })));
                }
            }
            RsaKeyPair::from_pkcs8(der)
                .map(|k| SigningKey::Rsa(Box::new(k)))
                .map_err(|e| format!("a PKCS#8 key that is neither ECDSA P-256/P-384 nor RSA: {e}"))
        }
        PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der())
            .map(|k| SigningKey::Rsa(Box::new(k)))
            .map_err(|e| format!("an RSA key ring does not take: {e}")),
        _ => Err("an EC key in SEC1 form: convert it with `openssl pkcs8 -topk8 -nocrypt`".into()),
    }
}

impl Credential {
    /// The chain in `cert_pem` (own certificate first) with the key in `key_pem` (PKCS#8,
    /// or PKCS#1 for RSA); refused when the key is not the certificate's.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        rng: &dyn SecureRandom,
    ) -> Result<Self, CredentialError> {
        let chain: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(cert_pem)
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<_, _>>()
            .map_err(|e| CredentialError::Pem(format!("the certificate file: {e}")))?;
        if chain.is_empty() {
            return Err(CredentialError::Pem(
                "no CERTIFICATE block in the certificate file".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| CredentialError::Pem(format!("the key file: {e}")))?;
        let key = signing_key(&key, rng).map_err(CredentialError::Key)?;
        let made = Self { chain, key };
        // The key must sign what the certificate's public key verifies.
        let probe = b"xgate: does this key belong to this certificate?";
        let auth = made.sign_auth(probe, rng)?;
        verify_signature_auth(&made.chain[0], probe, &auth)
            .map_err(|_| CredentialError::Mismatch)?;
        Ok(made)
    }

    /// The chain, own certificate first (DER), as CERT payloads carry it.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// Refuses an identity the certificate does not name (a peer would refuse it too).
    pub fn check_identity(&self, id: &Identity) -> Result<(), CredentialError> {
        match names_identity(&self.chain[0], id) {
            Ok(true) => Ok(()),
            _ => Err(CredentialError::Identity(id.display())),
        }
    }

    /// The key's kind, as people read it.
    pub fn key_kind(&self) -> &'static str {
        match &self.key {
            SigningKey::Ecdsa(k) if k.rfc7427.public_key().as_ref().len() == 65 => "ECDSA P-256",
            SigningKey::Ecdsa(..) => "ECDSA P-384",
            SigningKey::Rsa(_) => "RSA",
        }
    }

    /// The classic AUTH method and data (for a peer without RFC 7427): an ECDSA key's r | s
    /// (RFC 4754); an RSA key would need SHA-1 signatures, which are not made here.
    pub fn sign_classic(
        &self,
        signed: &[u8],
        rng: &dyn SecureRandom,
    ) -> Result<(AuthMethod, Vec<u8>), CredentialError> {
        match &self.key {
            SigningKey::Ecdsa(k) => {
                let s = k
                    .classic
                    .sign(rng, signed)
                    .map_err(|_| CredentialError::Key("the key failed to sign".into()))?;
                Ok((k.method, s.as_ref().to_vec()))
            }
            SigningKey::Rsa(_) => Err(CredentialError::Key(
                "an RSA key signs only RFC 7427 AUTH (the classic method is SHA-1): the peer \
                 must announce SIGNATURE_HASH_ALGORITHMS, or the server use an ECDSA key"
                    .into(),
            )),
        }
    }

    /// The RFC 7427 AUTH data: this key's signature over `signed`.
    pub fn sign_auth(
        &self,
        signed: &[u8],
        rng: &dyn SecureRandom,
    ) -> Result<Vec<u8>, CredentialError> {
        let failed = |_| CredentialError::Key("the key failed to sign".into());
        match &self.key {
            SigningKey::Ecdsa(k) => {
                let s = k.rfc7427.sign(rng, signed).map_err(failed)?;
                Ok(signature_auth(&k.id, s.as_ref()))
            }
            SigningKey::Rsa(k) => {
                let mut s = vec![0; k.public().modulus_len()];
                k.sign(&sig::RSA_PKCS1_SHA256, rng, signed, &mut s)
                    .map_err(failed)?;
                Ok(signature_auth(&alg_id::RSA_PKCS1_SHA256, &s))
            }
        }
    }
}
