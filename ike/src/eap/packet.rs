//! An EAP packet (RFC 3748 §4): code, identifier, length, and for requests and responses a
//! type and its data. The length must be the packet's own: an EAP payload carries one packet.

/// EAP's Identity type (RFC 3748 §5.1).
pub const EAP_IDENTITY: u8 = 1;
/// EAP's Nak type (RFC 3748 §5.3.1): the peer wants another method.
pub const EAP_NAK: u8 = 3;
/// EAP-MSCHAPv2's type.
pub const EAP_MSCHAPV2: u8 = 26;

/// An EAP packet's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EapCode {
    /// From the authenticator.
    Request,
    /// From the peer.
    Response,
    /// The authenticator's verdict: in.
    Success,
    /// The authenticator's verdict: out.
    Failure,
}

impl EapCode {
    fn from_u8(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Request,
            2 => Self::Response,
            3 => Self::Success,
            4 => Self::Failure,
            _ => return None,
        })
    }

    fn to_u8(self) -> u8 {
        match self {
            Self::Request => 1,
            Self::Response => 2,
            Self::Success => 3,
            Self::Failure => 4,
        }
    }

    /// Requests and responses carry a type; Success and Failure nothing.
    fn has_type(self) -> bool {
        matches!(self, Self::Request | Self::Response)
    }
}

/// Why bytes are not an EAP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EapError {
    /// Shorter than its header (and type, for a request or response).
    #[error("EAP packet truncated")]
    Truncated,
    /// Its length field is not its length.
    #[error("EAP length {said} for {have} bytes")]
    Length {
        /// What the packet says.
        said: usize,
        /// What arrived.
        have: usize,
    },
    /// A code RFC 3748 does not define.
    #[error("unknown EAP code {0}")]
    Code(u8),
}

/// An EAP packet, read (borrowing its data) or to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EapPacket<'a> {
    /// Its code.
    pub code: EapCode,
    /// The identifier that pairs a response with its request.
    pub id: u8,
    /// The type (requests and responses).
    pub kind: Option<u8>,
    /// The type's data.
    pub data: &'a [u8],
}

impl<'a> EapPacket<'a> {
    /// Reads `bytes` as one whole EAP packet.
    pub fn read(bytes: &'a [u8]) -> Result<Self, EapError> {
        let [code, id, l0, l1, rest @ ..] = bytes else {
            return Err(EapError::Truncated);
        };
        let code = EapCode::from_u8(*code).ok_or(EapError::Code(*code))?;
        let said = usize::from(u16::from_be_bytes([*l0, *l1]));
        if said != bytes.len() {
            return Err(EapError::Length {
                said,
                have: bytes.len(),
            });
        }
        let (kind, data) = if code.has_type() {
            let (kind, data) = rest.split_first().ok_or(EapError::Truncated)?;
            (Some(*kind), data)
        } else {
            (None, rest)
        };
        Ok(Self {
            code,
            id: *id,
            kind,
            data,
        })
    }

    /// Its bytes (a Success or Failure carries neither type nor data).
    pub fn write(&self) -> Vec<u8> {
        let typed = self.code.has_type();
        let len = 4 + if typed { 1 + self.data.len() } else { 0 };
        let mut out = Vec::with_capacity(len);
        out.push(self.code.to_u8());
        out.push(self.id);
        // An EAP payload's body fits a u16 (the IKE payload length caps it).
        out.extend_from_slice(&(len.min(usize::from(u16::MAX)) as u16).to_be_bytes());
        if typed {
            out.push(self.kind.unwrap_or(0));
            out.extend_from_slice(self.data);
        }
        out
    }

    /// A request or response of `kind` carrying `data`.
    pub fn typed(code: EapCode, id: u8, kind: u8, data: &'a [u8]) -> Self {
        Self {
            code,
            id,
            kind: Some(kind),
            data,
        }
    }

    /// A Success or Failure.
    pub fn verdict(success: bool, id: u8) -> Self {
        Self {
            code: if success {
                EapCode::Success
            } else {
                EapCode::Failure
            },
            id,
            kind: None,
            data: &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip_and_bad_ones_are_refused() {
        let identity = EapPacket::typed(EapCode::Response, 7, EAP_IDENTITY, b"alice");
        let bytes = identity.write();
        assert_eq!(bytes, [2, 7, 0, 10, 1, b'a', b'l', b'i', b'c', b'e']);
        assert_eq!(EapPacket::read(&bytes), Ok(identity));
        let success = EapPacket::verdict(true, 9).write();
        assert_eq!(success, [3, 9, 0, 4]);
        assert_eq!(
            EapPacket::read(&success).map(|p| (p.code, p.kind)),
            Ok((EapCode::Success, None))
        );
        assert_eq!(EapPacket::read(&[1, 1, 0]), Err(EapError::Truncated));
        assert_eq!(
            EapPacket::read(&[1, 1, 0, 4]),
            Err(EapError::Truncated),
            "no type"
        );
        assert_eq!(
            EapPacket::read(&[2, 1, 0, 9, 1, 0]),
            Err(EapError::Length { said: 9, have: 6 })
        );
        assert_eq!(EapPacket::read(&[9, 1, 0, 4]), Err(EapError::Code(9)));
    }
}
