//! Curve25519 key pairs and their text forms: base64 as `wg genkey` prints them, hex as the
//! userspace API (UAPI) speaks them.

use crate::crypto::DhKey;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroize;

/// A key could not be read from its text form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    /// The text is not valid base64 or hex. The decoder's own message is left out: it quotes
    /// the offending character, and the text may be a private key with a typo in it.
    #[error("not valid {encoding}")]
    Encoding {
        /// "base64" or "hex".
        encoding: &'static str,
    },
    /// The text decodes to the wrong number of bytes.
    #[error("decodes to {0} bytes, a key is 32 bytes (44 base64 characters)")]
    Length(usize),
}

/// A 32-byte X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

/// A 32-byte X25519 private key, wiped from memory when dropped.
#[derive(Clone)]
pub struct PrivateKey([u8; 32]);

/// A 32-byte symmetric preshared key, wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct PresharedKey(pub [u8; 32]);

fn decode_base64(text: &str) -> Result<[u8; 32], KeyParseError> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| KeyParseError::Encoding { encoding: "base64" })?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyParseError::Length(bytes.len()))
}

fn decode_hex(text: &str) -> Result<[u8; 32], KeyParseError> {
    let bytes =
        hex::decode(text.trim()).map_err(|_| KeyParseError::Encoding { encoding: "hex" })?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyParseError::Length(bytes.len()))
}

impl PublicKey {
    /// Reads a base64 key as `wg pubkey` prints it.
    pub fn from_base64(text: &str) -> Result<Self, KeyParseError> {
        decode_base64(text).map(Self)
    }
    /// Reads a 64-digit hex key as the UAPI sends it.
    pub fn from_hex(text: &str) -> Result<Self, KeyParseError> {
        decode_hex(text).map(Self)
    }
    /// The key in base64, as `wg` prints it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
    /// The key in lowercase hex, as the UAPI wants it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl PrivateKey {
    /// A fresh key from a cryptographic random source, clamped as `wg genkey` does.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }
    /// Wraps 32 bytes, clamping them as Curve25519 requires.
    pub fn from_bytes(mut bytes: [u8; 32]) -> Self {
        bytes[0] &= 248;
        bytes[31] &= 127;
        bytes[31] |= 64;
        Self(bytes)
    }
    /// Reads a base64 key as `wg genkey` prints it.
    pub fn from_base64(text: &str) -> Result<Self, KeyParseError> {
        decode_base64(text).map(Self::from_bytes)
    }
    /// Reads a 64-digit hex key as the UAPI sends it.
    pub fn from_hex(text: &str) -> Result<Self, KeyParseError> {
        decode_hex(text).map(Self::from_bytes)
    }
    /// The key in base64.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
    /// The key in lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// The raw (clamped) key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.dh_key().public_key())
    }
    /// The key, ready for Diffie-Hellman.
    pub fn dh_key(&self) -> DhKey {
        DhKey::from_bytes(&self.0)
    }
}

impl Drop for PrivateKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

impl PresharedKey {
    /// Reads a base64 key as `wg genpsk` prints it.
    pub fn from_base64(text: &str) -> Result<Self, KeyParseError> {
        decode_base64(text).map(Self)
    }
    /// Reads a 64-digit hex key as the UAPI sends it.
    pub fn from_hex(text: &str) -> Result<Self, KeyParseError> {
        decode_hex(text).map(Self)
    }
    /// The key in lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// The key in base64.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
    /// True for the all-zero key, which means "no preshared key".
    pub fn is_zero(&self) -> bool {
        self.0 == [0u8; 32]
    }
}

impl Drop for PresharedKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresharedKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_key_is_not_quoted_back() {
        let key = PrivateKey::from_bytes([9; 32]).to_base64();
        // A wrong character: the message names the encoding, not the character or where.
        let typo = format!("{}#{}", &key[..10], &key[11..]);
        for shown in [
            PrivateKey::from_base64(&typo).err().map(|e| e.to_string()),
            PresharedKey::from_base64(&typo)
                .err()
                .map(|e| e.to_string()),
        ] {
            assert_eq!(shown.as_deref(), Some("not valid base64"));
        }
        let hex_typo = format!("{}zz", "ab".repeat(31));
        let shown = PrivateKey::from_hex(&hex_typo).err().map(|e| e.to_string());
        assert_eq!(shown.as_deref(), Some("not valid hex"));
        // A wrong length says only the length.
        let short = PrivateKey::from_base64(&key[..40])
            .err()
            .map(|e| e.to_string());
        assert!(short.is_some_and(|s| s.starts_with("decodes to 30 bytes")));
    }

    #[test]
    fn rfc7748_public_key_derivation() {
        // RFC 7748 §6.1: Alice's private key and public key.
        let private =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .expect("hex");
        let private = PrivateKey::from_bytes(private.try_into().expect("32 bytes"));
        assert_eq!(
            private.public_key().to_hex(),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    #[test]
    fn base64_and_hex_round_trip_and_errors() {
        let key = PrivateKey::from_bytes([0x42; 32]);
        let again = PrivateKey::from_base64(&key.to_base64()).expect("round trip");
        assert_eq!(again.as_bytes(), key.as_bytes());
        let public = key.public_key();
        assert_eq!(PublicKey::from_hex(&public.to_hex()), Ok(public));
        assert_eq!(
            PublicKey::from_base64("AAAA"),
            Err(KeyParseError::Length(3))
        );
        assert!(matches!(
            PublicKey::from_base64("not base64!"),
            Err(KeyParseError::Encoding { .. })
        ));
    }
}
