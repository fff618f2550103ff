//! The handshake's primitives, as the WireGuard paper (§5.4) names them: HASH, MAC, HMAC, KDF1-3,
//! AEAD, XAEAD and DH. Transport data uses `ring` directly (see `session`).

use aws_lc_rs::agreement::{self, UnparsedPublicKey, X25519};
use blake2::digest::consts::U16;
use blake2::digest::{FixedOutput, KeyInit, Mac as _, Update};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::SimpleHmac;
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};

use crate::constants::TAG_LEN;

/// A 32-byte symmetric key or hash value.
pub type Key = [u8; 32];

/// The AEAD tag did not verify: the data was forged, corrupted or sealed under another key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication tag did not verify")]
pub struct OpenError;

/// `HASH(a || b || ...)`: BLAKE2s with a 32-byte output.
pub fn hash(parts: &[&[u8]]) -> Key {
    let mut h = Blake2s256::new();
    for part in parts {
        Digest::update(&mut h, part);
    }
    h.finalize().into()
}

/// `MAC(key, a || b || ...)`: keyed BLAKE2s with a 16-byte output (not HMAC).
pub fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    // Keys are 16 or 32 bytes here, always within BLAKE2s's key limit.
    let mut m = <Blake2sMac<U16> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| {
        unreachable!("BLAKE2s MAC keys used by WireGuard are at most 32 bytes")
    });
    for part in parts {
        Update::update(&mut m, part);
    }
    m.finalize_fixed().into()
}

/// `HMAC(key, a || b || ...)` with BLAKE2s, as used by the KDF.
fn hmac(key: &[u8], parts: &[&[u8]]) -> Key {
    let mut m = <SimpleHmac<Blake2s256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    for part in parts {
        hmac::Mac::update(&mut m, part);
    }
    m.finalize().into_bytes().into()
}

/// `KDF1(key, input)`: one 32-byte output of HKDF over BLAKE2s.
pub fn kdf1(key: &Key, input: &[u8]) -> Key {
    let prk = hmac(key, &[input]);
    hmac(&prk, &[&[1]])
}

/// `KDF2(key, input)`: two 32-byte outputs of HKDF over BLAKE2s.
pub fn kdf2(key: &Key, input: &[u8]) -> (Key, Key) {
    let prk = hmac(key, &[input]);
    let t1 = hmac(&prk, &[&[1]]);
    let t2 = hmac(&prk, &[&t1, &[2]]);
    (t1, t2)
}

/// `KDF3(key, input)`: three 32-byte outputs of HKDF over BLAKE2s.
pub fn kdf3(key: &Key, input: &[u8]) -> (Key, Key, Key) {
    let prk = hmac(key, &[input]);
    let t1 = hmac(&prk, &[&[1]]);
    let t2 = hmac(&prk, &[&t1, &[2]]);
    let t3 = hmac(&prk, &[&t2, &[3]]);
    (t1, t2, t3)
}

/// The 96-bit ChaCha20-Poly1305 nonce WireGuard derives from a 64-bit counter.
pub fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

fn chacha_key(key: &Key) -> LessSafeKey {
    // A 32-byte key is always the right length for ChaCha20-Poly1305.
    LessSafeKey::new(
        UnboundKey::new(&CHACHA20_POLY1305, key)
            .unwrap_or_else(|_| unreachable!("ChaCha20-Poly1305 takes 32-byte keys")),
    )
}

/// `AEAD(key, counter, plaintext, aad)`: seals `buf[..len - 16]` in place and writes the tag
/// into the last 16 bytes of `buf`.
pub fn aead_seal(key: &Key, counter: u64, aad: &[u8], buf: &mut [u8]) {
    let split = buf.len() - TAG_LEN;
    let (data, tag_out) = buf.split_at_mut(split);
    let tag = chacha_key(key)
        .seal_in_place_separate_tag(nonce(counter), Aad::from(aad), data)
        .unwrap_or_else(|_| unreachable!("handshake plaintexts are far below ring's limit"));
    tag_out.copy_from_slice(tag.as_ref());
}

/// Opens `ciphertext || tag` into `out` (whose length is the plaintext's).
pub fn aead_open(
    key: &Key,
    counter: u64,
    aad: &[u8],
    sealed: &[u8],
    out: &mut [u8],
) -> Result<(), OpenError> {
    if sealed.len() != out.len() + TAG_LEN {
        return Err(OpenError);
    }
    let (data, tag) = sealed.split_at(out.len());
    out.copy_from_slice(data);
    let tag = Tag::try_from(tag).map_err(|_| OpenError)?;
    chacha_key(key)
        .open_in_place_separate_tag(nonce(counter), Aad::from(aad), tag, out, 0..)
        .map(|_| ())
        .map_err(|_| OpenError)
}

/// `XAEAD(key, nonce, plaintext, aad)`: XChaCha20-Poly1305 for cookie replies; returns
/// `ciphertext || tag` for a 16-byte cookie.
pub fn xaead_seal(key: &Key, nonce: &[u8; 24], aad: &[u8], cookie: &[u8; 16]) -> [u8; 32] {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(cookie);
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(nonce), aad, &mut out[..16])
        .unwrap_or_else(|_| unreachable!("a 16-byte cookie is within XChaCha20's limit"));
    out[16..].copy_from_slice(&tag);
    out
}

/// Opens an encrypted cookie (`ciphertext || tag`, 32 bytes) sealed by `xaead_seal`.
pub fn xaead_open(
    key: &Key,
    nonce: &[u8; 24],
    aad: &[u8],
    sealed: &[u8; 32],
) -> Result<[u8; 16], OpenError> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut cookie = [0u8; 16];
    cookie.copy_from_slice(&sealed[..16]);
    let tag = chacha20poly1305::Tag::from_slice(&sealed[16..]);
    cipher
        .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, &mut cookie, tag)
        .map_err(|_| OpenError)?;
    Ok(cookie)
}

/// An X25519 private key, held for Diffie-Hellman. The four X25519 of a handshake are
/// nearly all of a responder's work: AWS-LC's (assembly for ADX/BMI2 CPUs) takes about half
/// the time of x25519-dalek's portable code here, and unlike `ring` it takes static keys.
/// AWS-LC wipes the key when it is freed.
pub struct DhKey(agreement::PrivateKey);

impl DhKey {
    /// The key with these bytes (clamped, as X25519 does).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(
            agreement::PrivateKey::from_private_key(&X25519, bytes)
                .expect("X25519 takes any 32 bytes as a private key"),
        )
    }

    /// The matching public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        if let Ok(p) = self.0.compute_public_key() {
            out.copy_from_slice(p.as_ref());
        }
        out
    }
}

/// `DH(private, public)`: X25519. Returns `None` for a low-order public key (all-zero output),
/// which the Noise spec and the reference implementations reject.
pub fn dh(private: &DhKey, public: &[u8; 32]) -> Option<Key> {
    let peer = UnparsedPublicKey::new(&X25519, public);
    agreement::agree(&private.0, peer, (), |shared| {
        let mut out = [0u8; 32];
        out.copy_from_slice(shared);
        Ok(out)
    })
    .ok()
}

/// Constant-time equality of two byte strings of the same length.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blake2s_matches_rfc7693_test_vector() {
        // RFC 7693 Appendix B: BLAKE2s-256("abc").
        let expected = "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982";
        assert_eq!(hex::encode(hash(&[b"abc"])), expected);
        assert_eq!(hash(&[b"a", b"bc"]), hash(&[b"abc"]));
    }

    #[test]
    fn aead_round_trip_and_tamper() {
        let key = [7u8; 32];
        let mut buf = [0u8; 12 + TAG_LEN];
        buf[..12].copy_from_slice(b"hello world!");
        aead_seal(&key, 3, b"aad", &mut buf);
        let mut out = [0u8; 12];
        aead_open(&key, 3, b"aad", &buf, &mut out).expect("opens");
        assert_eq!(&out, b"hello world!");
        assert!(aead_open(&key, 4, b"aad", &buf, &mut out).is_err());
        assert!(aead_open(&key, 3, b"aae", &buf, &mut out).is_err());
        buf[0] ^= 1;
        assert!(aead_open(&key, 3, b"aad", &buf, &mut out).is_err());
    }

    #[test]
    fn xaead_round_trip_and_tamper() {
        let key = [9u8; 32];
        let nonce = [1u8; 24];
        let mut sealed = xaead_seal(&key, &nonce, b"mac1", &[5u8; 16]);
        assert_eq!(xaead_open(&key, &nonce, b"mac1", &sealed), Ok([5u8; 16]));
        assert!(xaead_open(&key, &nonce, b"mac2", &sealed).is_err());
        sealed[31] ^= 0x80;
        assert!(xaead_open(&key, &nonce, b"mac1", &sealed).is_err());
    }

    #[test]
    fn dh_rejects_low_order_points() {
        let secret = DhKey::from_bytes(&[3u8; 32]);
        assert_eq!(dh(&secret, &[0u8; 32]), None);
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(dh(&secret, &one), None, "the point of order 4");
        let other = DhKey::from_bytes(&[4u8; 32]);
        let shared = dh(&secret, &other.public_key()).expect("contributory");
        let back = dh(&other, &secret.public_key()).expect("contributory");
        assert_eq!(shared, back);
    }

    #[test]
    fn dh_matches_rfc7748_and_an_independent_implementation() {
        // RFC 7748 section 6.1: Alice's and Bob's keys and their shared secret.
        let alice: [u8; 32] =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .expect("hex")
                .try_into()
                .expect("32 bytes");
        let bob_public: [u8; 32] =
            hex::decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
                .expect("hex")
                .try_into()
                .expect("32 bytes");
        let shared = dh(&DhKey::from_bytes(&alice), &bob_public).expect("contributory");
        assert_eq!(
            hex::encode(shared),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
        assert_eq!(
            hex::encode(DhKey::from_bytes(&alice).public_key()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        // And x25519-dalek agrees on random keys.
        for i in 0..64u8 {
            let (a, b) = ([i.wrapping_mul(7) ^ 0x55; 32], [i.wrapping_add(99); 32]);
            let dalek = x25519_dalek::StaticSecret::from(a).diffie_hellman(
                &x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(b)),
            );
            let ours = dh(&DhKey::from_bytes(&a), &DhKey::from_bytes(&b).public_key());
            assert_eq!(ours, Some(dalek.to_bytes()));
        }
    }
}
