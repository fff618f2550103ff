//! One direction's AEAD with a 4-byte salt (nonce = salt | 8-byte IV), as IKE's Encrypted
//! payload (RFC 5282, RFC 7634 §3) and ESP (RFC 4106, RFC 7634 §2) both use it: the one place
//! this crate keys `ring`'s AES-GCM (AES-NI where the CPU has it) and ChaCha20-Poly1305.

use ring::aead;

use crate::suite::Encr;

/// The IV's length.
pub const IV_LEN: usize = 8;
/// The ICV's length.
pub const ICV_LEN: usize = 16;
/// The salt at the end of the key material.
const SALT_LEN: usize = 4;

/// Why a salted AEAD key or operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AeadError {
    /// Not an AEAD cipher.
    #[error("{0} is not an AEAD cipher")]
    NotAead(Encr),
    /// Key material of the wrong length.
    #[error("key material of {got} bytes, {want} needed")]
    KeyLength {
        /// Bytes given.
        got: usize,
        /// Bytes needed.
        want: usize,
    },
    /// More data than the cipher takes under one nonce.
    #[error("too long for the cipher")]
    TooLong,
    /// The ICV did not verify: forged, corrupted, or another key.
    #[error("the ICV does not verify")]
    BadIcv,
}

/// AES-GCM-16 or ChaCha20-Poly1305 with its salt.
pub struct SaltedAead {
    key: aead::LessSafeKey,
    salt: [u8; SALT_LEN],
}

impl std::fmt::Debug for SaltedAead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaltedAead").finish_non_exhaustive()
    }
}

impl SaltedAead {
    /// The cipher for `encr` over key material `key` (key then salt).
    pub fn new(encr: Encr, key: &[u8]) -> Result<Self, AeadError> {
        let algorithm = match encr {
            Encr::AesGcm16 { key_bits: 128 } => &aead::AES_128_GCM,
            Encr::AesGcm16 { key_bits: 256 } => &aead::AES_256_GCM,
            Encr::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
            other => return Err(AeadError::NotAead(other)),
        };
        let want = encr.key_len();
        let wrong = AeadError::KeyLength {
            got: key.len(),
            want,
        };
        if key.len() != want {
            return Err(wrong);
        }
        let (k, s) = key.split_at(want - SALT_LEN);
        let unbound = aead::UnboundKey::new(algorithm, k).map_err(|_| wrong)?;
        let mut salt = [0; SALT_LEN];
        salt.copy_from_slice(s);
        Ok(Self {
            key: aead::LessSafeKey::new(unbound),
            salt,
        })
    }

    fn nonce(&self, iv: &[u8; IV_LEN]) -> aead::Nonce {
        let mut n = [0u8; 12];
        n[..SALT_LEN].copy_from_slice(&self.salt);
        n[SALT_LEN..].copy_from_slice(iv);
        aead::Nonce::assume_unique_for_key(n)
    }

    /// Encrypts `data` in place under `iv` with `aad`; returns the ICV.
    pub fn seal_in_place(
        &self,
        iv: [u8; IV_LEN],
        aad: &[u8],
        data: &mut [u8],
    ) -> Result<[u8; ICV_LEN], AeadError> {
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(&iv), aead::Aad::from(aad), data)
            .map_err(|_| AeadError::TooLong)?;
        let mut icv = [0u8; ICV_LEN];
        icv.copy_from_slice(tag.as_ref());
        Ok(icv)
    }

    /// Checks `icv` and decrypts `data` in place (on error `data` is unspecified).
    pub fn open_in_place(
        &self,
        iv: [u8; IV_LEN],
        aad: &[u8],
        data: &mut [u8],
        icv: &[u8; ICV_LEN],
    ) -> Result<(), AeadError> {
        let tag = aead::Tag::from(*icv);
        self.key
            .open_in_place_separate_tag(self.nonce(&iv), aead::Aad::from(aad), tag, data, 0..)
            .map(|_| ())
            .map_err(|_| AeadError::BadIcv)
    }
}
