//! The Encrypted payload (RFC 7296 §3.14) with an AEAD cipher (RFC 5282 for AES-GCM, RFC 7634
//! for ChaCha20-Poly1305): IV (8 bytes) | ciphertext of the inner payloads, padding and its
//! length | ICV (16 bytes). The nonce is the key's 4-byte salt and the IV; the associated data
//! is everything before the IV (the IKE header and the payload's generic header).

use ring::aead;

use crate::header::{Header, HEADER_LEN};
use crate::payloads::PayloadType;
use crate::suite::Encr;

/// The IV's length.
pub const IV_LEN: usize = 8;
/// The ICV's length.
pub const ICV_LEN: usize = 16;
/// The salt at the end of the key material.
const SALT_LEN: usize = 4;

/// Why an encrypted message could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkError {
    /// A cipher not handled here (AES-CBC with HMAC comes with the clients that need it).
    #[error("encryption transform {0:?} is not available for the Encrypted payload")]
    Unavailable(Encr),
    /// Key material of the wrong length.
    #[error("key material of {got} bytes, {want} needed")]
    KeyLength {
        /// Bytes given.
        got: usize,
        /// Bytes needed.
        want: usize,
    },
    /// Not a message whose last payload is an Encrypted payload with room for IV and ICV.
    #[error("no well-formed Encrypted payload")]
    NoPayload,
    /// The ICV did not verify: forged, corrupted, or another key.
    #[error("the ICV does not verify")]
    BadIcv,
    /// The padding length runs past the plaintext.
    #[error("bad padding")]
    BadPadding,
    /// The message would exceed its length field.
    #[error("message too long")]
    TooLong,
}

/// One direction's AEAD with a 4-byte salt (nonce = salt | 8-byte IV), as IKE's Encrypted
/// payload (RFC 5282, RFC 7634 §3) and ESP (RFC 4106, RFC 7634 §2) both use it: the one
/// place this crate keys `ring`'s AES-GCM (AES-NI where the CPU has it) and
/// ChaCha20-Poly1305.
pub struct SkCipher {
    key: aead::LessSafeKey,
    salt: [u8; SALT_LEN],
}

impl std::fmt::Debug for SkCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkCipher").finish_non_exhaustive()
    }
}

impl SkCipher {
    /// The cipher for `encr` over key material `key` (SK_ei or SK_er: key then salt).
    pub fn new(encr: Encr, key: &[u8]) -> Result<Self, SkError> {
        let algorithm = match encr {
            Encr::AesGcm16 { key_bits: 128 } => &aead::AES_128_GCM,
            Encr::AesGcm16 { key_bits: 256 } => &aead::AES_256_GCM,
            Encr::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
            other => return Err(SkError::Unavailable(other)),
        };
        let want = encr.key_len();
        if key.len() != want {
            return Err(SkError::KeyLength {
                got: key.len(),
                want,
            });
        }
        let (k, s) = key.split_at(want - SALT_LEN);
        let unbound = aead::UnboundKey::new(algorithm, k).map_err(|_| SkError::KeyLength {
            got: key.len(),
            want,
        })?;
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
    ) -> Result<[u8; ICV_LEN], SkError> {
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(&iv), aead::Aad::from(aad), data)
            .map_err(|_| SkError::TooLong)?;
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
    ) -> Result<(), SkError> {
        let tag = aead::Tag::from(*icv);
        self.key
            .open_in_place_separate_tag(self.nonce(&iv), aead::Aad::from(aad), tag, data, 0..)
            .map(|_| ())
            .map_err(|_| SkError::BadIcv)
    }

    /// A whole message: `header` (its length and first payload set here), then an Encrypted
    /// payload holding the payload chain `inner` whose first type is `first`, under `iv`
    /// (which must never repeat under this key: the message ID is a good one).
    pub fn seal(
        &self,
        header: &Header,
        first: PayloadType,
        inner: &[u8],
        iv: [u8; IV_LEN],
    ) -> Result<Vec<u8>, SkError> {
        self.seal_as(header, (PayloadType::SK, &[]), first, inner, iv)
    }

    /// As `seal`, the payload being `kind` with `fields` between its generic header and the
    /// IV (an Encrypted Fragment payload's numbers, RFC 7383 §2.5); they are authenticated.
    pub fn seal_as(
        &self,
        header: &Header,
        (kind, fields): (PayloadType, &[u8]),
        first: PayloadType,
        inner: &[u8],
        iv: [u8; IV_LEN],
    ) -> Result<Vec<u8>, SkError> {
        let plain_len = inner.len() + 1; // no padding: an AEAD needs none; one length byte
        let body_len = fields.len() + IV_LEN + plain_len + ICV_LEN;
        let total = HEADER_LEN + 4 + body_len;
        let (Ok(len16), Ok(total32)) = (u16::try_from(4 + body_len), u32::try_from(total)) else {
            return Err(SkError::TooLong);
        };
        let mut out = Vec::with_capacity(total);
        Header {
            next_payload: kind.0,
            length: total32,
            ..*header
        }
        .write(&mut out);
        out.push(first.0);
        out.push(0);
        out.extend_from_slice(&len16.to_be_bytes());
        out.extend_from_slice(fields);
        let aad_end = out.len();
        out.extend_from_slice(&iv);
        out.extend_from_slice(inner);
        out.push(0); // pad length
        let (aad, rest) = out.split_at_mut(aad_end);
        let icv = self.seal_in_place(iv, aad, &mut rest[IV_LEN..])?;
        out.extend_from_slice(&icv);
        Ok(out)
    }

    /// Opens the Encrypted payload that ends `message` (already read as a message: its last
    /// payload is SK with `body`); returns the inner chain's bytes, padding removed.
    pub fn open(&self, message: &[u8], body_len: usize) -> Result<Vec<u8>, SkError> {
        if body_len < IV_LEN + 1 + ICV_LEN || body_len + 4 + HEADER_LEN > message.len() {
            return Err(SkError::NoPayload);
        }
        let aad_end = message.len() - body_len;
        let (aad, body) = message.split_at(aad_end);
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&body[..IV_LEN]);
        let mut sealed = body[IV_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(self.nonce(&iv), aead::Aad::from(aad), &mut sealed)
            .map_err(|_| SkError::BadIcv)?;
        let (&pad, rest) = plain.split_last().ok_or(SkError::BadPadding)?;
        let keep = rest
            .len()
            .checked_sub(usize::from(pad))
            .ok_or(SkError::BadPadding)?;
        Ok(rest[..keep].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{ExchangeType, Flags, IKEV2_VERSION};
    use crate::message::Message;
    use crate::payloads::{read_chain, write_chain, Payload};

    fn header() -> Header {
        Header {
            spi_i: [1; 8],
            spi_r: [2; 8],
            next_payload: 0,
            version: IKEV2_VERSION,
            exchange: ExchangeType::IKE_AUTH,
            flags: Flags::new(true, false),
            message_id: 1,
            length: 0,
        }
    }

    fn inner() -> Vec<u8> {
        let mut chain = Vec::new();
        let id = [1u8, 0, 0, 0, 10, 0, 0, 2];
        let auth = [2u8; 36];
        let p = |kind, body| Payload {
            kind,
            critical: false,
            body,
            next: PayloadType::NONE,
        };
        write_chain(
            &mut chain,
            &[
                p(PayloadType::IDI, &id[..]),
                p(PayloadType::AUTH, &auth[..]),
            ],
        )
        .expect("chain");
        chain
    }

    /// The message's SK body length, as the reader gives it.
    fn sk_body_len(message: &[u8]) -> usize {
        let m = Message::parse(message).expect("a message");
        m.find(PayloadType::SK).expect("an SK payload").body.len()
    }

    #[test]
    fn sealed_messages_open_and_nothing_else_does() {
        for (encr, len) in [
            (Encr::AesGcm16 { key_bits: 256 }, 36),
            (Encr::AesGcm16 { key_bits: 128 }, 20),
            (Encr::ChaCha20Poly1305, 36),
        ] {
            let key: Vec<u8> = (0..len as u8).collect();
            let sk = SkCipher::new(encr, &key).expect("cipher");
            let sealed = sk
                .seal(&header(), PayloadType::IDI, &inner(), [9; 8])
                .expect("seals");
            let body = sk_body_len(&sealed);
            let opened = sk.open(&sealed, body).expect("opens");
            assert_eq!(opened, inner(), "{encr:?}");
            let chain = read_chain(PayloadType::IDI, &opened).expect("inner chain");
            assert_eq!(chain.len(), 2);
            for at in [0, 20, 30, 40, sealed.len() - 1] {
                let mut forged = sealed.clone();
                forged[at] ^= 1;
                assert_eq!(sk.open(&forged, body), Err(SkError::BadIcv), "byte {at}");
            }
            let mut other = key.clone();
            other[0] ^= 1;
            let wrong = SkCipher::new(encr, &other).expect("cipher");
            assert_eq!(wrong.open(&sealed, body), Err(SkError::BadIcv));
        }
    }

    #[test]
    fn chacha_matches_an_independent_implementation() {
        use chacha20poly1305::aead::{AeadInPlace, KeyInit};
        let key: Vec<u8> = (100..136).collect();
        let sk = SkCipher::new(Encr::ChaCha20Poly1305, &key).expect("cipher");
        let sealed = sk
            .seal(&header(), PayloadType::IDI, &inner(), [7; 8])
            .expect("seals");
        // RFC 7634 §2: key | salt; nonce salt | IV; AAD everything before the IV.
        let cipher = chacha20poly1305::ChaCha20Poly1305::new_from_slice(&key[..32]).expect("key");
        let nonce = [&key[32..], &[7u8; 8][..]].concat();
        let aad_end = HEADER_LEN + 4;
        let mut buf = sealed[aad_end + IV_LEN..sealed.len() - ICV_LEN].to_vec();
        let tag = &sealed[sealed.len() - ICV_LEN..];
        cipher
            .decrypt_in_place_detached(
                chacha20poly1305::Nonce::from_slice(&nonce),
                &sealed[..aad_end],
                &mut buf,
                chacha20poly1305::Tag::from_slice(tag),
            )
            .expect("RustCrypto opens it");
        assert_eq!(buf[..buf.len() - 1], inner()[..]);
        assert_eq!(buf.last(), Some(&0), "no padding");
    }

    #[test]
    fn short_payloads_and_bad_keys_are_refused() {
        let key = [0u8; 36];
        let sk = SkCipher::new(Encr::ChaCha20Poly1305, &key).expect("cipher");
        assert_eq!(sk.open(&[0u8; 60], 20), Err(SkError::NoPayload));
        assert!(matches!(
            SkCipher::new(Encr::ChaCha20Poly1305, &key[..32]),
            Err(SkError::KeyLength { got: 32, want: 36 })
        ));
        assert!(matches!(
            SkCipher::new(Encr::AesCbc { key_bits: 256 }, &key[..32]),
            Err(SkError::Unavailable(_))
        ));
    }
}
