//! Notify payloads (RFC 7296 §3.10): errors and status carried by type, with an optional SPI
//! and data. The types this implementation sends or reads are named here.

use crate::error::ParseError;

/// A notify message type; errors are below 16384, status types above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NotifyType(pub u16);

impl NotifyType {
    /// A critical payload the receiver does not know.
    pub const UNSUPPORTED_CRITICAL_PAYLOAD: Self = Self(1);
    /// A major version the receiver does not speak.
    pub const INVALID_MAJOR_VERSION: Self = Self(5);
    /// A malformed message.
    pub const INVALID_SYNTAX: Self = Self(7);
    /// Nothing offered is acceptable.
    pub const NO_PROPOSAL_CHOSEN: Self = Self(14);
    /// The KE payload's group is not the one chosen; the data names the one to use.
    pub const INVALID_KE_PAYLOAD: Self = Self(17);
    /// Authentication failed.
    pub const AUTHENTICATION_FAILED: Self = Self(24);
    /// The responder takes no more CHILD_SAs on this IKE SA (or none made this way).
    pub const NO_ADDITIONAL_SAS: Self = Self(35);
    /// No address could be assigned.
    pub const INTERNAL_ADDRESS_FAILURE: Self = Self(36);
    /// A CHILD_SA a request names (REKEY_SA) does not exist here.
    pub const CHILD_SA_NOT_FOUND: Self = Self(44);
    /// Try again later (a rekey on an SA that is being replaced, RFC 7296 §2.25).
    pub const TEMPORARY_FAILURE: Self = Self(43);
    /// The traffic selectors are not acceptable.
    pub const TS_UNACCEPTABLE: Self = Self(38);
    /// The CHILD_SA a CREATE_CHILD_SA replaces, by the sender's inbound SPI (RFC 7296 §1.3.3).
    pub const REKEY_SA: Self = Self(16393);
    /// A stateless cookie: send the request again with it (RFC 7296 §2.6).
    pub const COOKIE: Self = Self(16390);
    /// A hash of the sender's address and port as it sent them (NAT detection).
    pub const NAT_DETECTION_SOURCE_IP: Self = Self(16388);
    /// A hash of the address and port the sender sent to.
    pub const NAT_DETECTION_DESTINATION_IP: Self = Self(16389);
    /// The sender speaks MOBIKE (RFC 4555): the SA may move to other addresses.
    pub const MOBIKE_SUPPORTED: Self = Self(16396);
    /// The initiator moved: the SA is to use the addresses this message came by (RFC 4555).
    pub const UPDATE_SA_ADDRESSES: Self = Self(16400);
    /// Data the responder echoes back, proving the answer is to this request (RFC 4555).
    pub const COOKIE2: Self = Self(16401);
    /// The sender can take IKE fragments (RFC 7383).
    pub const IKEV2_FRAGMENTATION_SUPPORTED: Self = Self(16430);
    /// The hash algorithms the sender takes in signatures (RFC 7427).
    pub const SIGNATURE_HASH_ALGORITHMS: Self = Self(16431);

    /// An error type (a request carrying one fails).
    pub fn is_error(self) -> bool {
        self.0 < 16384
    }
}

/// One notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notify<'a> {
    /// The protocol its SPI belongs to (0 when it has none).
    pub protocol: u8,
    /// The SPI it concerns, if any.
    pub spi: &'a [u8],
    /// Its type.
    pub kind: NotifyType,
    /// Its data.
    pub data: &'a [u8],
}

impl<'a> Notify<'a> {
    /// A notification with no SPI.
    pub fn new(kind: NotifyType, data: &'a [u8]) -> Self {
        Self {
            protocol: 0,
            spi: &[],
            kind,
            data,
        }
    }

    /// Reads a Notify payload's body.
    pub fn read(body: &'a [u8]) -> Result<Self, ParseError> {
        let truncated = |need| ParseError::Truncated {
            need,
            have: body.len(),
        };
        let head = body.get(..4).ok_or(truncated(4))?;
        let spi_len = usize::from(head[1]);
        let spi = body.get(4..4 + spi_len).ok_or(truncated(4 + spi_len))?;
        Ok(Self {
            protocol: head[0],
            spi,
            kind: NotifyType(u16::from_be_bytes([head[2], head[3]])),
            data: &body[4 + spi_len..],
        })
    }

    /// The payload body (an SPI is at most 8 bytes in any IKE use; longer ones are cut).
    pub fn body(&self) -> Vec<u8> {
        let spi = &self.spi[..self.spi.len().min(8)];
        let mut out = Vec::with_capacity(4 + spi.len() + self.data.len());
        out.push(self.protocol);
        // At most 8, from the line above.
        out.push(spi.len() as u8);
        out.extend_from_slice(&self.kind.0.to_be_bytes());
        out.extend_from_slice(spi);
        out.extend_from_slice(self.data);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notify_reads_back_as_written() {
        let spi = [1, 2, 3, 4];
        let n = Notify {
            protocol: 3,
            spi: &spi,
            kind: NotifyType::TS_UNACCEPTABLE,
            data: b"",
        };
        let body = n.body();
        assert_eq!(body, [3, 4, 0, 38, 1, 2, 3, 4]);
        assert_eq!(Notify::read(&body), Ok(n));
        let cookie = Notify::new(NotifyType::COOKIE, b"cookie-data");
        assert_eq!(Notify::read(&cookie.body()), Ok(cookie));
        assert!(!NotifyType::COOKIE.is_error() && NotifyType::NO_PROPOSAL_CHOSEN.is_error());
    }

    #[test]
    fn a_short_notify_is_refused() {
        assert!(Notify::read(&[0, 0, 0]).is_err());
        assert!(Notify::read(&[3, 4, 0, 38, 1, 2]).is_err(), "SPI cut short");
    }
}
