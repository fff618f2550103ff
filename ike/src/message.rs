//! A whole IKE message: the header and its payload chain, read with the header's length
//! checked against the datagram, and written with the chain's types and the length filled in.

use crate::error::ParseError;
use crate::header::{Header, HEADER_LEN};
use crate::payloads::{read_chain, write_chain, Payload, PayloadType};

/// The longest message taken: what one UDP datagram carries (larger exchanges are split by
/// IKE fragmentation, RFC 7383, into messages of this size or less).
pub const MAX_MESSAGE: usize = 65_535 - 8;

/// A message as read: its header and its payloads, borrowing the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// The header.
    pub header: Header,
    /// The payloads in order (an encrypted payload last, still encrypted).
    pub payloads: Vec<Payload<'a>>,
}

impl<'a> Message<'a> {
    /// Reads `datagram` (without the NAT-T non-ESP marker) as one message.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, ParseError> {
        if datagram.len() > MAX_MESSAGE {
            return Err(ParseError::Oversized {
                len: datagram.len(),
                max: MAX_MESSAGE,
            });
        }
        let header = Header::parse(datagram)?;
        let declared = header.length as usize;
        if declared != datagram.len() {
            return Err(ParseError::LengthMismatch {
                declared,
                actual: datagram.len(),
            });
        }
        let payloads = read_chain(PayloadType(header.next_payload), &datagram[HEADER_LEN..])?;
        Ok(Self { header, payloads })
    }

    /// The first payload of `kind`, if any.
    pub fn find(&self, kind: PayloadType) -> Option<&Payload<'a>> {
        self.payloads.iter().find(|p| p.kind == kind)
    }

    /// Writes a message: `header` with its first-payload type and length set from `payloads`.
    pub fn encode(header: &Header, payloads: &[Payload<'_>]) -> Result<Vec<u8>, ParseError> {
        let mut chain = Vec::new();
        let first = write_chain(&mut chain, payloads)?;
        let len = HEADER_LEN + chain.len();
        if len > MAX_MESSAGE {
            return Err(ParseError::Oversized {
                len,
                max: MAX_MESSAGE,
            });
        }
        let mut out = Vec::with_capacity(len);
        Header {
            next_payload: first.0,
            // Bounded by MAX_MESSAGE above.
            length: len as u32,
            ..*header
        }
        .write(&mut out);
        out.extend_from_slice(&chain);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{ExchangeType, Flags, IKEV2_VERSION};

    fn header() -> Header {
        Header {
            spi_i: [9; 8],
            spi_r: [0; 8],
            next_payload: 0,
            version: IKEV2_VERSION,
            exchange: ExchangeType::IKE_SA_INIT,
            flags: Flags::new(true, false),
            message_id: 0,
            length: 0,
        }
    }

    #[test]
    fn a_message_reads_back_as_written() {
        let nonce = [7u8; 32];
        let payloads = [Payload {
            kind: PayloadType::NONCE,
            critical: false,
            body: &nonce,
            next: PayloadType::NONE,
        }];
        let bytes = Message::encode(&header(), &payloads).expect("encodes");
        assert_eq!(bytes.len(), 28 + 4 + 32);
        let m = Message::parse(&bytes).expect("parses");
        assert_eq!(m.header.length as usize, bytes.len());
        assert_eq!(m.find(PayloadType::NONCE).map(|p| p.body), Some(&nonce[..]));
    }

    #[test]
    fn a_length_that_disagrees_with_the_datagram_is_refused() {
        let bytes = Message::encode(&header(), &[]).expect("encodes");
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Message::parse(&longer),
            Err(ParseError::LengthMismatch {
                declared: 28,
                actual: 29
            })
        );
        assert!(matches!(
            Message::parse(&vec![0u8; MAX_MESSAGE + 1]),
            Err(ParseError::Oversized { .. })
        ));
    }
}
