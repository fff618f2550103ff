//! The IKE header (RFC 7296 §3.1): both SPIs, the first payload's type, the version, the
//! exchange, the flags, the message ID and the whole message's length, in 28 bytes.

use crate::error::ParseError;

/// The header's size.
pub const HEADER_LEN: usize = 28;
/// Major version 2, minor 0, as sent.
pub const IKEV2_VERSION: u8 = 0x20;

/// An exchange type (RFC 7296 §3.1); others are kept as their number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExchangeType(pub u8);

impl ExchangeType {
    /// Nonces, Diffie-Hellman values and proposals: the first exchange.
    pub const IKE_SA_INIT: Self = Self(34);
    /// Identities, authentication and the first CHILD_SA, encrypted.
    pub const IKE_AUTH: Self = Self(35);
    /// A further CHILD_SA, or the rekey of one or of the IKE SA.
    pub const CREATE_CHILD_SA: Self = Self(36);
    /// Liveness checks, deletes and notifications.
    pub const INFORMATIONAL: Self = Self(37);
}

/// The header's flags byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// Set in a response.
    pub const RESPONSE: u8 = 0x20;
    /// "I could speak a higher version" (never set by this implementation).
    pub const VERSION: u8 = 0x10;
    /// Set by the original initiator of the IKE SA, in requests and responses alike.
    pub const INITIATOR: u8 = 0x08;

    /// Flags for a message of the original initiator (`initiator`) that is, or is not, a
    /// `response`.
    pub fn new(initiator: bool, response: bool) -> Self {
        let mut f = 0;
        if initiator {
            f |= Self::INITIATOR;
        }
        if response {
            f |= Self::RESPONSE;
        }
        Self(f)
    }

    /// A response, not a request.
    pub fn is_response(self) -> bool {
        self.0 & Self::RESPONSE != 0
    }

    /// Sent by the IKE SA's original initiator.
    pub fn is_initiator(self) -> bool {
        self.0 & Self::INITIATOR != 0
    }
}

/// The fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The initiator's SPI (never zero).
    pub spi_i: [u8; 8],
    /// The responder's SPI (zero in the first IKE_SA_INIT request).
    pub spi_r: [u8; 8],
    /// The type of the first payload.
    pub next_payload: u8,
    /// Major (high nibble) and minor version.
    pub version: u8,
    /// The exchange.
    pub exchange: ExchangeType,
    /// Response and initiator flags.
    pub flags: Flags,
    /// Matches a response to its request; counts requests per direction.
    pub message_id: u32,
    /// The whole message's length, header included.
    pub length: u32,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Header {
    /// Reads the header at the start of `bytes`; refuses a short one or a major version
    /// other than 2 (minor versions are ignored, as RFC 7296 §2.5 asks).
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let Some(b) = bytes.get(..HEADER_LEN) else {
            return Err(ParseError::Truncated {
                need: HEADER_LEN,
                have: bytes.len(),
            });
        };
        let version = b[17];
        if version >> 4 != 2 {
            return Err(ParseError::UnsupportedVersion(version >> 4));
        }
        let mut spi_i = [0; 8];
        let mut spi_r = [0; 8];
        spi_i.copy_from_slice(&b[0..8]);
        spi_r.copy_from_slice(&b[8..16]);
        Ok(Self {
            spi_i,
            spi_r,
            next_payload: b[16],
            version,
            exchange: ExchangeType(b[18]),
            flags: Flags(b[19]),
            message_id: be32(&b[20..24]),
            length: be32(&b[24..28]),
        })
    }

    /// Appends the header's 28 bytes to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i);
        out.extend_from_slice(&self.spi_r);
        out.push(self.next_payload);
        out.push(self.version);
        out.push(self.exchange.0);
        out.push(self.flags.0);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_reads_back_as_written() {
        let h = Header {
            spi_i: [1, 2, 3, 4, 5, 6, 7, 8],
            spi_r: [0; 8],
            next_payload: 33,
            version: IKEV2_VERSION,
            exchange: ExchangeType::IKE_SA_INIT,
            flags: Flags::new(true, false),
            message_id: 0,
            length: 28,
        };
        let mut out = Vec::new();
        h.write(&mut out);
        assert_eq!(out.len(), HEADER_LEN);
        assert_eq!(&out[16..20], &[33, 0x20, 34, 0x08]);
        assert_eq!(Header::parse(&out), Ok(h));
        assert!(h.flags.is_initiator() && !h.flags.is_response());
    }

    #[test]
    fn short_headers_and_other_versions_are_refused() {
        assert_eq!(
            Header::parse(&[0; 27]),
            Err(ParseError::Truncated { need: 28, have: 27 })
        );
        let mut ikev1 = [0u8; 28];
        ikev1[17] = 0x10;
        assert_eq!(
            Header::parse(&ikev1),
            Err(ParseError::UnsupportedVersion(1))
        );
        let mut minor = [0u8; 28];
        minor[17] = 0x21;
        assert!(Header::parse(&minor).is_ok(), "a minor version is ignored");
    }
}
