//! The Delete payload (RFC 7296 §3.11): the SAs its sender has removed. Deleting the IKE SA
//! names no SPI (the header's SPIs say which); deleting CHILD_SAs names the SPIs the sender
//! receives on.

use crate::error::ParseError;
use crate::proposals::ProtocolId;

/// One Delete payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// The protocol of the SAs: IKE (the SA the message belongs to) or ESP.
    pub protocol: ProtocolId,
    /// The SPIs (4 bytes each for ESP; none for IKE).
    pub spis: Vec<[u8; 4]>,
}

impl Delete {
    /// The deletion of the IKE SA itself.
    pub fn ike() -> Self {
        Self {
            protocol: ProtocolId::IKE,
            spis: Vec::new(),
        }
    }

    /// Reads a Delete payload's body. SPIs of a size other than 4 (ESP) or 0 (IKE) are
    /// refused.
    pub fn read(body: &[u8]) -> Result<Self, ParseError> {
        if body.len() < 4 {
            return Err(ParseError::Truncated {
                need: 4,
                have: body.len(),
            });
        }
        let protocol = ProtocolId(body[0]);
        let size = usize::from(body[1]);
        let count = usize::from(u16::from_be_bytes([body[2], body[3]]));
        let rest = &body[4..];
        let spis = match (protocol, size) {
            (ProtocolId::IKE, 0) => Vec::new(),
            (_, 4) if rest.len() == 4 * count => rest
                .chunks_exact(4)
                .map(|c| [c[0], c[1], c[2], c[3]])
                .collect(),
            (_, 4) => {
                return Err(ParseError::Truncated {
                    need: 4 + 4 * count,
                    have: body.len(),
                })
            }
            _ => return Err(ParseError::Invalid("a Delete payload's SPI size")),
        };
        Ok(Self { protocol, spis })
    }

    /// The payload body.
    pub fn body(&self) -> Vec<u8> {
        let size = if self.spis.is_empty() { 0 } else { 4 };
        let count = u16::try_from(self.spis.len()).unwrap_or(u16::MAX);
        let mut out = vec![self.protocol.0, size];
        out.extend_from_slice(&count.to_be_bytes());
        for spi in self.spis.iter().take(usize::from(count)) {
            out.extend_from_slice(spi);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ike_and_esp_deletes_read_back() {
        let ike = Delete::ike();
        assert_eq!(ike.body(), [1, 0, 0, 0]);
        assert_eq!(Delete::read(&ike.body()), Ok(ike));
        let esp = Delete {
            protocol: ProtocolId::ESP,
            spis: vec![[1, 2, 3, 4], [5, 6, 7, 8]],
        };
        assert_eq!(esp.body(), [3, 4, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Delete::read(&esp.body()), Ok(esp));
    }

    #[test]
    fn counts_that_disagree_with_the_length_are_refused() {
        assert!(Delete::read(&[3, 4, 0, 2, 1, 2, 3, 4]).is_err());
        assert!(Delete::read(&[3, 4]).is_err());
        assert!(Delete::read(&[3, 8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
