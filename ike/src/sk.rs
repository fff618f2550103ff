//! The Encrypted payload (RFC 7296 §3.14), and the Encrypted Fragment payload's body (RFC
//! 7383 §2.5) that has the same form:
//!
//! - with an AEAD cipher (RFC 5282 for AES-GCM, RFC 7634 for ChaCha20-Poly1305): IV (8 bytes)
//!   | ciphertext of the inner payloads and one pad-length byte | ICV (16 bytes); the nonce is
//!   the key's salt and the IV, the associated data everything before the IV;
//! - with AES-CBC and an HMAC (the OS clients' defaults): IV (16 random bytes) | ciphertext of
//!   the inner payloads, padding to the block and its length | ICV, the truncated HMAC under
//!   SK_a of the whole message up to the ICV, checked before anything is decrypted.

use ring::rand::SecureRandom;

use crate::cbc::{CbcHmac, BLOCK};
use crate::header::{Header, HEADER_LEN};
use crate::payloads::PayloadType;
use crate::salted_aead::{SaltedAead, ICV_LEN, IV_LEN};
use crate::suite::{Encr, Suite};

/// Why an encrypted message could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkError {
    /// A cipher without what it needs (AES-CBC without an integrity transform).
    #[error("encryption transform {0} has no integrity transform to go with it")]
    Unavailable(Encr),
    /// Key material of the wrong length.
    #[error("key material of the wrong length for {0}")]
    KeyLength(Encr),
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
    /// No randomness for the IV.
    #[error("no randomness for an IV")]
    NoRandomness,
}

/// One direction's protection of IKE messages: the sender's SK_e (and SK_a with CBC).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one at a time, short-lived: no boxing needed
pub enum SkCipher {
    /// AES-GCM-16 or ChaCha20-Poly1305.
    Aead(SaltedAead),
    /// AES-CBC, then the truncated HMAC.
    CbcHmac(CbcHmac),
}

impl SkCipher {
    /// The cipher of `suite` over one direction's keys: SK_e (`encr_key`) and SK_a
    /// (`integ_key`, empty with an AEAD cipher).
    pub fn new(suite: &Suite, encr_key: &[u8], integ_key: &[u8]) -> Result<Self, SkError> {
        let wrong = SkError::KeyLength(suite.encr);
        if suite.encr.is_aead() {
            return SaltedAead::new(suite.encr, encr_key)
                .map(Self::Aead)
                .map_err(|_| wrong);
        }
        let integ = suite.integ.ok_or(SkError::Unavailable(suite.encr))?;
        if encr_key.len() != suite.encr.key_len() {
            return Err(wrong);
        }
        CbcHmac::new(encr_key, integ, integ_key)
            .map(Self::CbcHmac)
            .map_err(|_| wrong)
    }

    fn iv_len(&self) -> usize {
        match self {
            Self::Aead(_) => IV_LEN,
            Self::CbcHmac(_) => BLOCK,
        }
    }

    fn icv_len(&self) -> usize {
        match self {
            Self::Aead(_) => ICV_LEN,
            Self::CbcHmac(c) => c.icv_len(),
        }
    }

    /// The padding (without its length byte) after `len` bytes of inner payloads.
    fn pad_for(&self, len: usize) -> usize {
        match self {
            Self::Aead(_) => 0, // an AEAD needs none: one length byte
            Self::CbcHmac(_) => (BLOCK - (len + 1) % BLOCK) % BLOCK,
        }
    }

    /// The most bytes an Encrypted payload's body takes beyond the inner payloads: IV,
    /// padding and its length, ICV.
    pub fn overhead(&self) -> usize {
        let most_padding = match self {
            Self::Aead(_) => 0,
            Self::CbcHmac(_) => BLOCK - 1,
        };
        self.iv_len() + most_padding + 1 + self.icv_len()
    }

    /// A whole message: `header` (its length and first payload set here), then an Encrypted
    /// payload holding the payload chain `inner` whose first type is `first`, under a random
    /// IV (so answering the same request twice never reuses a GCM nonce).
    pub fn seal(
        &self,
        header: &Header,
        first: PayloadType,
        inner: &[u8],
        rng: &dyn SecureRandom,
    ) -> Result<Vec<u8>, SkError> {
        self.seal_as(header, (PayloadType::SK, &[]), first, inner, rng)
    }

    /// As `seal`, the payload being `kind` with `fields` between its generic header and the
    /// IV (an Encrypted Fragment payload's numbers, RFC 7383 §2.5); they are authenticated.
    pub fn seal_as(
        &self,
        header: &Header,
        (kind, fields): (PayloadType, &[u8]),
        first: PayloadType,
        inner: &[u8],
        rng: &dyn SecureRandom,
    ) -> Result<Vec<u8>, SkError> {
        let (iv_len, icv_len) = (self.iv_len(), self.icv_len());
        let pad = self.pad_for(inner.len());
        let plain_len = inner.len() + pad + 1;
        let body_len = fields.len() + iv_len + plain_len + icv_len;
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
        let iv_at = out.len();
        let mut iv = [0u8; BLOCK];
        rng.fill(&mut iv[..iv_len])
            .map_err(|_| SkError::NoRandomness)?;
        out.extend_from_slice(&iv[..iv_len]);
        out.extend_from_slice(inner);
        out.resize(out.len() + pad, 0);
        out.push(pad as u8); // below BLOCK
        let (signed, rest) = out.split_at_mut(iv_at + iv_len);
        match self {
            Self::Aead(aead) => {
                let mut nonce = [0u8; IV_LEN];
                nonce.copy_from_slice(&iv[..IV_LEN]);
                let icv = aead
                    .seal_in_place(nonce, &signed[..iv_at], rest)
                    .map_err(|_| SkError::TooLong)?;
                out.extend_from_slice(&icv);
            }
            Self::CbcHmac(cbc) => {
                cbc.encrypt(iv, rest).map_err(|_| SkError::TooLong)?;
                let icv = cbc.icv(&[&out]);
                out.extend_from_slice(&icv[..icv_len]);
            }
        }
        Ok(out)
    }

    /// Opens the Encrypted payload that ends `message` (already read as a message: its last
    /// payload is SK, `body_len` bytes of IV, ciphertext and ICV); returns the inner chain's
    /// bytes, padding removed.
    pub fn open(&self, message: &[u8], body_len: usize) -> Result<Vec<u8>, SkError> {
        let (iv_len, icv_len) = (self.iv_len(), self.icv_len());
        let sealed_len = body_len
            .checked_sub(iv_len + icv_len)
            .filter(|n| *n >= 1 && body_len + 4 + HEADER_LEN <= message.len())
            .ok_or(SkError::NoPayload)?;
        let iv_at = message.len() - body_len;
        let (signed, icv) = message.split_at(message.len() - icv_len);
        let mut iv = [0u8; BLOCK];
        iv[..iv_len].copy_from_slice(&signed[iv_at..iv_at + iv_len]);
        let mut plain = signed[iv_at + iv_len..].to_vec();
        match self {
            Self::Aead(aead) => {
                let mut nonce = [0u8; IV_LEN];
                nonce.copy_from_slice(&iv[..IV_LEN]);
                let mut tag = [0u8; ICV_LEN];
                tag.copy_from_slice(icv);
                aead.open_in_place(nonce, &signed[..iv_at], &mut plain, &tag)
                    .map_err(|_| SkError::BadIcv)?;
            }
            Self::CbcHmac(cbc) => {
                if !sealed_len.is_multiple_of(BLOCK) {
                    return Err(SkError::NoPayload);
                }
                // Encrypt-then-MAC: nothing is decrypted before the ICV holds.
                if !cbc.icv_holds(&[signed], icv) {
                    return Err(SkError::BadIcv);
                }
                cbc.decrypt(iv, &mut plain)
                    .map_err(|_| SkError::NoPayload)?;
            }
        }
        let (&pad, rest) = plain.split_last().ok_or(SkError::BadPadding)?;
        let keep = rest
            .len()
            .checked_sub(usize::from(pad))
            .ok_or(SkError::BadPadding)?;
        plain.truncate(keep);
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{ExchangeType, Flags, IKEV2_VERSION};
    use crate::message::Message;
    use crate::payloads::{read_chain, write_chain, Payload};
    use crate::suite::Integ;
    use ring::rand::SystemRandom;

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

    fn suite(encr: Encr, integ: Option<Integ>) -> Suite {
        Suite {
            encr,
            prf: None,
            integ,
            dh: None,
            esn: None,
        }
    }

    /// Keys of the right lengths for `s`, counting up from `from`.
    fn keys(s: &Suite, from: u8) -> (Vec<u8>, Vec<u8>) {
        let kl = s.key_lengths();
        let e = (0..kl.encr).map(|i| from.wrapping_add(i as u8)).collect();
        let a = (0..kl.integ)
            .map(|i| from.wrapping_add(99 + i as u8))
            .collect();
        (e, a)
    }

    #[test]
    fn sealed_messages_open_and_nothing_else_does() {
        let rng = SystemRandom::new();
        for s in crate::test_support::every_cipher(None) {
            let (e, a) = keys(&s, 0);
            let sk = SkCipher::new(&s, &e, &a).expect("cipher");
            // Every length across a block boundary, to exercise CBC's padding.
            for cut in [0, 1, 15, 16, 17] {
                let data = &inner()[..inner().len() - cut];
                let sealed = sk
                    .seal(&header(), PayloadType::IDI, data, &rng)
                    .expect("seals");
                let body = sk_body_len(&sealed);
                assert!(body <= data.len() + sk.overhead(), "{s:?}");
                assert_eq!(sk.open(&sealed, body).expect("opens"), data, "{s:?}");
            }
            let sealed = sk
                .seal(&header(), PayloadType::IDI, &inner(), &rng)
                .expect("seals");
            let body = sk_body_len(&sealed);
            let opened = sk.open(&sealed, body).expect("opens");
            let chain = read_chain(PayloadType::IDI, &opened).expect("inner chain");
            assert_eq!(chain.len(), 2);
            for at in [0, 20, 30, 40, 50, sealed.len() - 1] {
                let mut forged = sealed.clone();
                forged[at] ^= 1;
                assert_eq!(
                    sk.open(&forged, body),
                    Err(SkError::BadIcv),
                    "{s:?} byte {at}"
                );
            }
            let (e2, a2) = keys(&s, 1);
            // Another SK_e: an AEAD refuses; CBC's ICV (SK_a) holds but nothing readable comes
            // out. Another SK_a: refused.
            let other_e = SkCipher::new(&s, &e2, &a).expect("cipher");
            assert_ne!(other_e.open(&sealed, body), Ok(inner()), "{s:?}");
            if !a.is_empty() {
                let other_a = SkCipher::new(&s, &e, &a2).expect("cipher");
                assert_eq!(other_a.open(&sealed, body), Err(SkError::BadIcv), "{s:?}");
            }
        }
    }

    #[test]
    fn chacha_matches_an_independent_implementation() {
        use chacha20poly1305::aead::{AeadInPlace, KeyInit};
        let key: Vec<u8> = (100..136).collect();
        let s = suite(Encr::ChaCha20Poly1305, None);
        let sk = SkCipher::new(&s, &key, &[]).expect("cipher");
        let sealed = sk
            .seal(&header(), PayloadType::IDI, &inner(), &SystemRandom::new())
            .expect("seals");
        // RFC 7634 §2: key | salt; nonce salt | IV; AAD everything before the IV.
        let cipher = chacha20poly1305::ChaCha20Poly1305::new_from_slice(&key[..32]).expect("key");
        let aad_end = HEADER_LEN + 4;
        let nonce = [&key[32..], &sealed[aad_end..aad_end + IV_LEN]].concat();
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

    /// RFC 7296 §3.14 with CBC: a 16-byte IV, whole blocks, the last byte the pad length, and
    /// the ICV an independent HMAC-SHA2-256 of the whole message before it, truncated to 128
    /// bits (RFC 4868).
    #[test]
    fn the_cbc_layout_and_icv_are_rfc_7296s() {
        use ::hmac::Mac;
        let s = suite(Encr::AesCbc { key_bits: 256 }, Some(Integ::HmacSha256_128));
        let (e, a) = keys(&s, 7);
        let sk = SkCipher::new(&s, &e, &a).expect("cipher");
        let sealed = sk
            .seal(&header(), PayloadType::IDI, &inner(), &SystemRandom::new())
            .expect("seals");
        let body = sk_body_len(&sealed);
        assert_eq!((body - 16 - 16) % 16, 0, "IV, whole blocks, ICV");
        let (signed, icv) = sealed.split_at(sealed.len() - 16);
        let mut mac = ::hmac::Hmac::<sha2::Sha256>::new_from_slice(&a).expect("key");
        mac.update(signed);
        assert_eq!(mac.finalize().into_bytes()[..16], icv[..]);
        let SkCipher::CbcHmac(cbc) = &sk else {
            unreachable!("a CBC suite")
        };
        let iv_at = sealed.len() - body;
        let iv: [u8; 16] = sealed[iv_at..iv_at + 16].try_into().expect("iv");
        let mut plain = signed[iv_at + 16..].to_vec();
        cbc.decrypt(iv, &mut plain).expect("decrypts");
        let pad = usize::from(*plain.last().expect("pad length"));
        assert_eq!(plain.len() - 1 - pad, inner().len());
        assert_eq!(plain[..inner().len()], inner()[..]);
    }

    #[test]
    fn short_payloads_and_bad_keys_are_refused() {
        let s = suite(Encr::ChaCha20Poly1305, None);
        let sk = SkCipher::new(&s, &[0u8; 36], &[]).expect("cipher");
        assert_eq!(sk.open(&[0u8; 60], 20), Err(SkError::NoPayload));
        assert!(matches!(
            SkCipher::new(&s, &[0u8; 32], &[]),
            Err(SkError::KeyLength(_))
        ));
        let cbc = suite(Encr::AesCbc { key_bits: 256 }, None);
        assert!(matches!(
            SkCipher::new(&cbc, &[0u8; 32], &[]),
            Err(SkError::Unavailable(_))
        ));
        let cbc = suite(Encr::AesCbc { key_bits: 256 }, Some(Integ::HmacSha1_96));
        let sk = SkCipher::new(&cbc, &[0u8; 32], &[0u8; 20]).expect("cipher");
        // Not whole blocks between IV and ICV.
        let mut m = vec![0u8; HEADER_LEN + 4 + 16 + 20 + 12];
        let len = m.len();
        assert_eq!(sk.open(&m, len - HEADER_LEN - 4), Err(SkError::NoPayload));
        m.truncate(HEADER_LEN + 4 + 16 + 12);
        assert_eq!(sk.open(&m, 28), Err(SkError::NoPayload), "no ciphertext");
    }
}
