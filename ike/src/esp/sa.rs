//! One ESP SA's packet rules in tunnel mode (RFC 4303 §2–3), in place in the caller's
//! buffer:
//!
//! ```text
//! SPI (4) | sequence, low 32 bits (4) | IV (8 or 16) | encrypted: inner packet | TFC padding |
//! padding 1, 2, 3... | pad length (1) | next header (1) | ICV (12 to 32)
//! ```
//!
//! The cipher (`cipher`: an AEAD, or AES-CBC and an HMAC) sets the IV's and ICV's lengths
//! and the block the encrypted part is a multiple of (4 or 16 bytes).

use std::ops::Range;

use super::cipher::EspCipher;
use super::replay::{ReplayRefusal, ReplayWindow};
use crate::cbc::{BLOCK, MAX_ICV};
use crate::ike_auth::EspKeys;
use crate::suite::Suite;

/// SPI and sequence number.
pub const ESP_HEADER_LEN: usize = 8;
/// Bytes an inner packet needs before it to become an ESP packet: header and IV (16 bytes
/// with AES-CBC, 8 with an AEAD; an SA takes what it needs of this).
pub const ESP_HEADROOM: usize = ESP_HEADER_LEN + BLOCK;
/// Bytes an inner packet needs after it: at most 15 of padding (AES-CBC), pad length, next
/// header, ICV (at most 32, HMAC-SHA2-512-256).
pub const ESP_TAILROOM: usize = (BLOCK - 1) + 2 + MAX_ICV;
/// Next header: an IPv4 packet (tunnel mode).
pub const NEXT_IPV4: u8 = 4;
/// Next header: an IPv6 packet (tunnel mode).
pub const NEXT_IPV6: u8 = 41;
/// Next header: a dummy packet, for traffic-flow confidentiality (RFC 4303 §2.6).
pub const NEXT_NONE: u8 = 59;

/// Why an inbound packet was dropped; each is counted by the caller under its own name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EspDrop {
    /// Too short for header, IV, trailer and ICV, or not 4-byte aligned.
    #[error("malformed ESP packet")]
    Malformed,
    /// Another SA's SPI (a routing bug: the caller chose the SA by SPI).
    #[error("not this SA's SPI")]
    WrongSpi,
    /// Received already, or behind the window.
    #[error("replay: {0}")]
    Replayed(ReplayRefusal),
    /// The ICV did not verify: forged, corrupted, or another key.
    #[error("bad ICV")]
    BadIcv,
    /// The padding is not 1, 2, 3, ... or runs past the payload.
    #[error("bad padding")]
    BadPadding,
    /// A dummy packet (next header 59): authentic, carries nothing.
    #[error("dummy packet")]
    Dummy,
    /// Not an IP packet (next header other than 4 or 41 in tunnel mode).
    #[error("next header {0} is not IPv4 or IPv6")]
    BadNextHeader(u8),
    /// The inner packet's own length runs past what arrived.
    #[error("inner packet truncated")]
    InnerTruncated,
}

/// Why an outbound packet could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EspSealError {
    /// Not enough room before or after the inner packet.
    #[error("no room for the ESP header or trailer")]
    NoRoom,
    /// Every sequence number is used: the SA must be rekeyed first.
    #[error("sequence numbers exhausted; rekey")]
    Exhausted,
    /// The cipher refused (a length it cannot take).
    #[error("the cipher refused the packet")]
    Cipher,
}

/// Why an SA could not be made from its keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ESP key: {0}")]
pub struct EspKeyError(pub(super) String);

/// An inbound packet, opened: where the inner packet is, and what it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Its full sequence number.
    pub seq: u64,
    /// The inner IP packet within the buffer (TFC padding cut off).
    pub inner: Range<usize>,
    /// 4 (IPv4) or 41 (IPv6).
    pub next_header: u8,
}

/// The receiving side of an SA.
pub struct Inbound {
    spi: [u8; 4],
    cipher: EspCipher,
    window: ReplayWindow,
    esn: bool,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("spi", &self.spi)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Inbound {
    /// The SA received on `spi` with `keys` of `suite`.
    pub fn new(spi: [u8; 4], suite: &Suite, keys: &EspKeys) -> Result<Self, EspKeyError> {
        let esn = suite.esn.unwrap_or(false);
        Ok(Self {
            spi,
            cipher: EspCipher::new(suite, keys)?,
            window: ReplayWindow::new(esn),
            esn,
        })
    }

    /// The SPI.
    pub fn spi(&self) -> [u8; 4] {
        self.spi
    }

    /// The highest sequence number received.
    pub fn highest(&self) -> u64 {
        self.window.top()
    }

    /// Checks and decrypts `packet` (starting at the SPI) in place.
    pub fn open(&mut self, packet: &mut [u8]) -> Result<Opened, EspDrop> {
        let len = packet.len();
        let c = &self.cipher;
        let head = ESP_HEADER_LEN + c.iv_len();
        let sealed = len
            .checked_sub(head + c.icv_len())
            .filter(|n| *n >= 4 && n % c.block() == 0)
            .ok_or(EspDrop::Malformed)?;
        if packet[..4] != self.spi {
            return Err(EspDrop::WrongSpi);
        }
        let low = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let seq = self.window.infer(low);
        self.window.check(seq).map_err(EspDrop::Replayed)?;
        c.open(packet, seq, self.esn)?;
        let body = &packet[head..head + sealed];
        // Authentic from here on: the number is taken even if the contents are refused.
        self.window.accept(seq).map_err(EspDrop::Replayed)?;
        let next_header = body[sealed - 1];
        let pad = usize::from(body[sealed - 2]);
        let payload = sealed.checked_sub(pad + 2).ok_or(EspDrop::BadPadding)?;
        let padding_ok = body[payload..payload + pad]
            .iter()
            .enumerate()
            .all(|(i, b)| usize::from(*b) == i + 1);
        if !padding_ok {
            return Err(EspDrop::BadPadding);
        }
        let inner_len = match next_header {
            NEXT_IPV4 => ip_length(&body[..payload], 2, 0)?,
            NEXT_IPV6 => ip_length(&body[..payload], 4, 40)?,
            NEXT_NONE => return Err(EspDrop::Dummy),
            other => return Err(EspDrop::BadNextHeader(other)),
        };
        Ok(Opened {
            seq,
            inner: head..head + inner_len,
            next_header,
        })
    }
}

/// The inner packet's length from its own header (the 16-bit field at `at`, plus `fixed`):
/// whatever follows it in the payload is TFC padding, ignored.
fn ip_length(payload: &[u8], at: usize, fixed: usize) -> Result<usize, EspDrop> {
    let field = payload.get(at..at + 2).ok_or(EspDrop::InnerTruncated)?;
    let len = fixed + usize::from(u16::from_be_bytes([field[0], field[1]]));
    if len > payload.len() || len < at + 2 {
        return Err(EspDrop::InnerTruncated);
    }
    Ok(len)
}

/// The sending side of an SA.
pub struct Outbound {
    spi: [u8; 4],
    cipher: EspCipher,
    /// The next sequence number (ESP counts from 1).
    next: u64,
    esn: bool,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("spi", &self.spi)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Outbound {
    /// The SA sent on the peer's `spi` with `keys` of `suite`.
    pub fn new(spi: [u8; 4], suite: &Suite, keys: &EspKeys) -> Result<Self, EspKeyError> {
        Ok(Self {
            spi,
            cipher: EspCipher::new(suite, keys)?,
            next: 1,
            esn: suite.esn.unwrap_or(false),
        })
    }

    /// Moves the counter (tests of the end of the sequence space).
    #[cfg(test)]
    pub(crate) fn skip_to(&mut self, next: u64) {
        self.next = next;
    }

    /// Sequence numbers used so far.
    pub fn sent(&self) -> u64 {
        self.next - 1
    }

    /// Makes the ESP packet of the inner packet at `inner` (of protocol `next_header`) in
    /// `buf`: the header goes in the `ESP_HEADROOM` bytes before it (as much as the cipher
    /// needs), the trailer and ICV in the `ESP_TAILROOM` after. Returns where the ESP packet
    /// is.
    pub fn seal(
        &mut self,
        buf: &mut [u8],
        inner: Range<usize>,
        next_header: u8,
    ) -> Result<Range<usize>, EspSealError> {
        let c = &self.cipher;
        let start = inner
            .start
            .checked_sub(ESP_HEADER_LEN + c.iv_len())
            .filter(|_| inner.start <= inner.end)
            .ok_or(EspSealError::NoRoom)?;
        let block = c.block();
        let pad = (block - (inner.len() + 2) % block) % block;
        let sealed_end = inner.end + pad + 2;
        let end = sealed_end + c.icv_len();
        if end > buf.len() {
            return Err(EspSealError::NoRoom);
        }
        let limit = if self.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        if self.next > limit {
            return Err(EspSealError::Exhausted);
        }
        let seq = self.next;
        self.next += 1;
        buf[start..start + 4].copy_from_slice(&self.spi);
        buf[start + 4..start + 8].copy_from_slice(&(seq as u32).to_be_bytes());
        for (i, b) in buf[inner.end..inner.end + pad].iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        buf[sealed_end - 2] = pad as u8;
        buf[sealed_end - 1] = next_header;
        self.cipher.seal(&mut buf[start..end], seq, self.esn)?;
        Ok(start..end)
    }
}
