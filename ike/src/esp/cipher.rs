//! An ESP SA's cipher (RFC 4303 §3.3–3.4), one of two kinds:
//!
//! - an AEAD (AES-GCM-16, RFC 4106; ChaCha20-Poly1305, RFC 7634): an 8-byte IV, the 64-bit
//!   sequence number (unique under the key with no random draw), the SPI and sequence number
//!   as associated data, payloads aligned to 4 bytes;
//! - AES-CBC with an HMAC (RFC 3602, RFC 4868): a 16-byte IV from `CounterIv` (unpredictable,
//!   with no random draw per packet), payloads padded to the block, and the ICV over SPI,
//!   sequence number, IV and ciphertext (with ESN, the sequence number's high half after the
//!   ciphertext, RFC 4303 §3.3.2.1), checked before anything is decrypted.

use ring::hmac;

use super::sa::{EspDrop, EspKeyError, EspSealError, ESP_HEADER_LEN};
use crate::cbc::{CbcHmac, CounterIv, BLOCK};
use crate::ike_auth::EspKeys;
use crate::salted_aead::{SaltedAead, ICV_LEN, IV_LEN};
use crate::suite::Suite;

/// Labels the key of a CBC SA's IV sequence, derived from its integrity key.
const IV_KEY_LABEL: &[u8] = b"xgate ESP AES-CBC IV key";

/// An SA's cipher.
// Held in place in the SA: a box would cost a pointer chase per packet.
#[allow(clippy::large_enum_variant)]
pub(super) enum EspCipher {
    /// AES-GCM-16 or ChaCha20-Poly1305.
    Aead(SaltedAead),
    /// AES-CBC and a truncated HMAC, with the IV sequence for sending.
    CbcHmac(CbcHmac, CounterIv),
}

/// The associated data of an AEAD: SPI, then (with ESN) the high half, then the low half.
fn aad(spi: &[u8], seq: u64, esn: bool, out: &mut [u8; 12]) -> usize {
    out[..4].copy_from_slice(spi);
    if esn {
        out[4..8].copy_from_slice(&((seq >> 32) as u32).to_be_bytes());
        out[8..12].copy_from_slice(&(seq as u32).to_be_bytes());
        12
    } else {
        out[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        8
    }
}

impl EspCipher {
    /// The cipher of `suite` over one direction's `keys`.
    pub(super) fn new(suite: &Suite, keys: &EspKeys) -> Result<Self, EspKeyError> {
        if suite.encr.is_aead() {
            return SaltedAead::new(suite.encr, &keys.encr)
                .map(Self::Aead)
                .map_err(|e| EspKeyError(e.to_string()));
        }
        let integ = suite
            .integ
            .ok_or_else(|| EspKeyError(format!("{} without an integrity transform", suite.encr)))?;
        let cbc = CbcHmac::new(&keys.encr, integ, &keys.integ)
            .map_err(|e| EspKeyError(format!("{}: {e}", suite.encr)))?;
        // The IV key: secret as the integrity key it comes from, and no other key.
        let mac = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &keys.integ),
            IV_KEY_LABEL,
        );
        let mut iv_key = [0u8; 16];
        iv_key.copy_from_slice(&mac.as_ref()[..16]);
        let ivs = CounterIv::new(&iv_key).map_err(|e| EspKeyError(e.to_string()))?;
        Ok(Self::CbcHmac(cbc, ivs))
    }

    /// Bytes of IV after the ESP header.
    pub(super) fn iv_len(&self) -> usize {
        match self {
            Self::Aead(_) => IV_LEN,
            Self::CbcHmac(..) => BLOCK,
        }
    }

    /// What the encrypted part's length is a multiple of.
    pub(super) fn block(&self) -> usize {
        match self {
            Self::Aead(_) => 4,
            Self::CbcHmac(..) => BLOCK,
        }
    }

    /// Bytes of ICV.
    pub(super) fn icv_len(&self) -> usize {
        match self {
            Self::Aead(_) => ICV_LEN,
            Self::CbcHmac(c, _) => c.icv_len(),
        }
    }

    /// Seals `packet`: SPI and low sequence number written, the IV's room after them, the
    /// plaintext with its trailer, then the ICV's room. Writes the IV, encrypts, writes the
    /// ICV.
    pub(super) fn seal(&self, packet: &mut [u8], seq: u64, esn: bool) -> Result<(), EspSealError> {
        let (iv_len, icv_len) = (self.iv_len(), self.icv_len());
        let body = ESP_HEADER_LEN + iv_len;
        let icv_at = packet
            .len()
            .checked_sub(icv_len)
            .filter(|at| *at >= body)
            .ok_or(EspSealError::NoRoom)?;
        match self {
            Self::Aead(aead) => {
                let iv = seq.to_be_bytes();
                packet[ESP_HEADER_LEN..body].copy_from_slice(&iv);
                let mut ad = [0u8; 12];
                let ad_len = aad(&packet[..4], seq, esn, &mut ad);
                let icv = aead
                    .seal_in_place(iv, &ad[..ad_len], &mut packet[body..icv_at])
                    .map_err(|_| EspSealError::Cipher)?;
                packet[icv_at..].copy_from_slice(&icv);
            }
            Self::CbcHmac(cbc, ivs) => {
                let iv = ivs.iv(seq);
                packet[ESP_HEADER_LEN..body].copy_from_slice(&iv);
                cbc.encrypt(iv, &mut packet[body..icv_at])
                    .map_err(|_| EspSealError::Cipher)?;
                let high = ((seq >> 32) as u32).to_be_bytes();
                let high: &[u8] = if esn { &high } else { &[] };
                let icv = cbc.icv(&[&packet[..icv_at], high]);
                packet[icv_at..].copy_from_slice(&icv[..icv_len]);
            }
        }
        Ok(())
    }

    /// Checks the ICV of `packet` (a whole ESP packet whose full sequence number is `seq`)
    /// and decrypts its encrypted part in place (on error the buffer is unspecified).
    pub(super) fn open(&self, packet: &mut [u8], seq: u64, esn: bool) -> Result<(), EspDrop> {
        let (iv_len, icv_len) = (self.iv_len(), self.icv_len());
        let body = ESP_HEADER_LEN + iv_len;
        let icv_at = packet.len() - icv_len; // the caller checked the length
        match self {
            Self::Aead(aead) => {
                let mut iv = [0u8; IV_LEN];
                iv.copy_from_slice(&packet[ESP_HEADER_LEN..body]);
                let mut ad = [0u8; 12];
                let ad_len = aad(&packet[..4], seq, esn, &mut ad);
                let (sealed, icv) = packet[body..].split_at_mut(icv_at - body);
                let mut tag = [0u8; ICV_LEN];
                tag.copy_from_slice(icv);
                aead.open_in_place(iv, &ad[..ad_len], sealed, &tag)
                    .map_err(|_| EspDrop::BadIcv)
            }
            Self::CbcHmac(cbc, _) => {
                let high = ((seq >> 32) as u32).to_be_bytes();
                let high: &[u8] = if esn { &high } else { &[] };
                let (signed, icv) = packet.split_at_mut(icv_at);
                if !cbc.icv_holds(&[signed, high], icv) {
                    return Err(EspDrop::BadIcv);
                }
                let mut iv = [0u8; BLOCK];
                iv.copy_from_slice(&signed[ESP_HEADER_LEN..body]);
                cbc.decrypt(iv, &mut signed[body..])
                    .map_err(|_| EspDrop::Malformed)
            }
        }
    }
}
