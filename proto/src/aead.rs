//! The transport AEAD seam: one small interface that seals and opens a packet in place, with
//! ChaCha20-Poly1305 (WireGuard) and AES-256-GCM (for the ESP datapath) behind it, both from
//! `ring`. Callers build the 96-bit nonce; how it is formed is the protocol's business
//! (WireGuard: 32 zero bits and the 64-bit little-endian counter; ESP: salt and IV).

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};

/// Length of every tag this seam produces.
pub const TAG_LEN: usize = 16;

/// The AEAD refused: a forged or corrupted packet on open, an impossible length on seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("AEAD operation failed (forged, corrupted or over-long packet)")]
pub struct AeadError;

/// A packet cipher with a fixed key: seals and opens in the caller's buffer.
pub trait PacketAead: Send {
    /// Encrypts `data` in place and returns its tag.
    fn seal(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError>;
    /// Checks `tag` and decrypts `data` in place; on error `data` is unspecified.
    fn open(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError>;
}

/// Which cipher a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// ChaCha20-Poly1305 (RFC 8439), WireGuard's transport cipher.
    ChaCha20Poly1305,
    /// AES-256-GCM (uses AES-NI and CLMUL where the CPU has them).
    Aes256Gcm,
}

/// A `ring` key for either cipher.
pub struct RingKey {
    key: LessSafeKey,
}

impl RingKey {
    /// A key for `cipher` (both take 256-bit keys).
    pub fn new(cipher: Cipher, key: &[u8; 32]) -> Self {
        let algorithm = match cipher {
            Cipher::ChaCha20Poly1305 => &CHACHA20_POLY1305,
            Cipher::Aes256Gcm => &AES_256_GCM,
        };
        let unbound = UnboundKey::new(algorithm, key)
            .unwrap_or_else(|_| unreachable!("both ciphers take 32-byte keys"));
        Self {
            key: LessSafeKey::new(unbound),
        }
    }
}

impl Drop for RingKey {
    fn drop(&mut self) {
        // ring keeps no wipe of its own, and sessions drop their expanded keys every time a
        // peer goes idle: overwrite this key with the zero key's expansion in place, and let
        // `black_box` keep the stores the freeing that follows would make look dead.
        let algorithm = self.key.algorithm();
        if let Ok(zero) = UnboundKey::new(algorithm, &[0u8; 32]) {
            self.key = LessSafeKey::new(zero);
        }
        std::hint::black_box(&self.key);
    }
}

impl PacketAead for RingKey {
    fn seal(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), data)
            .map_err(|_| AeadError)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    fn open(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError> {
        let tag = Tag::from(*tag);
        self.key
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                tag,
                data,
                0..,
            )
            .map(|_| ())
            .map_err(|_| AeadError)
    }
}

/// WireGuard's transport nonce: four zero bytes, then the counter little-endian.
pub fn wireguard_nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        hex::decode(s).expect("hex")
    }

    #[test]
    fn chacha20_poly1305_rfc8439_vector() {
        // RFC 8439 §2.8.2.
        let key: [u8; 32] =
            unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
                .try_into()
                .expect("32");
        let nonce: [u8; 12] = unhex("070000004041424344454647").try_into().expect("12");
        let aad = unhex("50515253c0c1c2c3c4c5c6c7");
        let plain = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let k = RingKey::new(Cipher::ChaCha20Poly1305, &key);
        let mut data = plain.to_vec();
        let tag = k.seal(nonce, &aad, &mut data).expect("seal");
        assert_eq!(hex::encode(tag), "1ae10b594f09e26a7e902ecbd0600691");
        assert_eq!(hex::encode(&data[..16]), "d31a8d34648e60db7b86afbc53ef7ec2");
        k.open(nonce, &aad, &mut data, &tag).expect("open");
        assert_eq!(&data[..], &plain[..]);
    }

    #[test]
    fn aes_256_gcm_vector() {
        // McGrew & Viega GCM spec, test case 14: zero key, zero IV, one zero block.
        let k = RingKey::new(Cipher::Aes256Gcm, &[0u8; 32]);
        let mut data = [0u8; 16];
        let tag = k.seal([0u8; 12], &[], &mut data).expect("seal");
        assert_eq!(hex::encode(data), "cea7403d4d606b6e074ec5d3baf39d18");
        assert_eq!(hex::encode(tag), "d0d1c8a799996bf0265b98b5d48ab919");
        k.open([0u8; 12], &[], &mut data, &tag).expect("open");
        assert_eq!(data, [0u8; 16]);
    }

    #[test]
    fn both_ciphers_reject_a_flipped_bit() {
        for cipher in [Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm] {
            let k = RingKey::new(cipher, &[7u8; 32]);
            let mut data = vec![0x42u8; 1420];
            let tag = k.seal(wireguard_nonce(9), b"hdr", &mut data).expect("seal");
            data[700] ^= 0x10;
            assert_eq!(
                k.open(wireguard_nonce(9), b"hdr", &mut data, &tag),
                Err(AeadError),
                "{cipher:?}"
            );
        }
    }
}
