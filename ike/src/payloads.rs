//! The generic payload chain (RFC 7296 §3.2): each payload names the type of the next, has a
//! critical bit and a length that includes its own 4-byte header. Every length is checked
//! against what is there before a byte of the body is read.

use crate::error::ParseError;

/// A payload type (RFC 7296 §3.2, RFC 7383 for SKF); others are kept as their number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadType(pub u8);

impl PayloadType {
    /// The end of the chain.
    pub const NONE: Self = Self(0);
    /// Security Association: the proposals.
    pub const SA: Self = Self(33);
    /// Key Exchange: a Diffie-Hellman public value.
    pub const KE: Self = Self(34);
    /// The initiator's identity.
    pub const IDI: Self = Self(35);
    /// The responder's identity.
    pub const IDR: Self = Self(36);
    /// A certificate.
    pub const CERT: Self = Self(37);
    /// A certificate request (the CAs the sender trusts).
    pub const CERTREQ: Self = Self(38);
    /// Authentication data.
    pub const AUTH: Self = Self(39);
    /// A nonce.
    pub const NONCE: Self = Self(40);
    /// A notification (an error or a status).
    pub const NOTIFY: Self = Self(41);
    /// Delete: SAs the sender removed.
    pub const DELETE: Self = Self(42);
    /// Vendor ID.
    pub const VENDOR_ID: Self = Self(43);
    /// The initiator's traffic selectors.
    pub const TSI: Self = Self(44);
    /// The responder's traffic selectors.
    pub const TSR: Self = Self(45);
    /// Encrypted and authenticated: the rest of the message, which it must end.
    pub const SK: Self = Self(46);
    /// Configuration: virtual addresses, DNS.
    pub const CP: Self = Self(47);
    /// EAP.
    pub const EAP: Self = Self(48);
    /// One fragment of an encrypted message (RFC 7383); ends the message too.
    pub const SKF: Self = Self(53);

    /// A type this implementation knows (an unknown one marked critical refuses the message).
    pub fn is_known(self) -> bool {
        matches!(self.0, 33..=48 | 53)
    }

    /// The encrypted payload, whole or a fragment: the last of its chain.
    pub fn is_encrypted(self) -> bool {
        self == Self::SK || self == Self::SKF
    }
}

/// One payload: its type, its critical bit, its body, and the type the next payload has (for
/// an encrypted payload: the type of the first payload inside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload<'a> {
    /// Its type.
    pub kind: PayloadType,
    /// Marked critical: a receiver that does not know the type must refuse the message.
    pub critical: bool,
    /// The body, after the 4-byte generic header.
    pub body: &'a [u8],
    /// The Next Payload field as read (written from the following payload's type).
    pub next: PayloadType,
}

impl<'a> Payload<'a> {
    /// A payload of `kind` with `body`, not marked critical (what this implementation sends).
    pub fn plain(kind: PayloadType, body: &'a [u8]) -> Self {
        Self {
            kind,
            critical: false,
            body,
            next: PayloadType::NONE,
        }
    }
}

/// The most payloads a chain may have (a sound message has a dozen at most).
pub const MAX_PAYLOADS: usize = 64;

/// Reads the chain in `bytes` whose first payload is of type `first`; it must fill `bytes`
/// exactly. Unknown payloads not marked critical are skipped, as RFC 7296 §2.5 asks.
pub fn read_chain(first: PayloadType, bytes: &[u8]) -> Result<Vec<Payload<'_>>, ParseError> {
    let mut out = Vec::new();
    let (mut kind, mut at, mut index) = (first, 0usize, 0usize);
    while kind != PayloadType::NONE {
        if index == MAX_PAYLOADS {
            return Err(ParseError::TooManyPayloads(MAX_PAYLOADS));
        }
        let Some(head) = bytes.get(at..at + 4) else {
            return Err(ParseError::Truncated {
                need: at + 4,
                have: bytes.len(),
            });
        };
        let next = PayloadType(head[0]);
        let critical = head[1] & 0x80 != 0;
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if len < 4 {
            return Err(ParseError::PayloadTooShort { index, len });
        }
        let Some(body) = bytes.get(at + 4..at + len) else {
            return Err(ParseError::PayloadOverrun { index });
        };
        if !kind.is_known() && critical {
            return Err(ParseError::UnsupportedCritical(kind.0));
        }
        if kind.is_known() {
            out.push(Payload {
                kind,
                critical,
                body,
                next,
            });
        }
        at += len;
        index += 1;
        if kind.is_encrypted() {
            // Its Next Payload names what is inside; nothing may follow it.
            if at != bytes.len() {
                return Err(ParseError::PayloadAfterEncrypted);
            }
            return Ok(out);
        }
        kind = next;
    }
    if at != bytes.len() {
        return Err(ParseError::TrailingBytes(bytes.len() - at));
    }
    Ok(out)
}

/// The longest payload body (its length field is 16 bits and counts its 4-byte header).
pub const MAX_BODY: usize = u16::MAX as usize - 4;

/// Appends `payloads` as a chain to `out`; each one's Next Payload is the type of the one
/// after it, the last one's its own `next` (the inner first type for an encrypted payload,
/// else `NONE`). Returns the first payload's type, for the header; a body over `MAX_BODY`
/// is refused, with `out` unchanged.
pub fn write_chain(out: &mut Vec<u8>, payloads: &[Payload<'_>]) -> Result<PayloadType, ParseError> {
    if let Some(p) = payloads.iter().find(|p| p.body.len() > MAX_BODY) {
        return Err(ParseError::Oversized {
            len: p.body.len(),
            max: MAX_BODY,
        });
    }
    for (i, p) in payloads.iter().enumerate() {
        let next = payloads.get(i + 1).map_or(p.next, |n| n.kind);
        // Checked above: fits in 16 bits.
        let len = (p.body.len() + 4) as u16;
        out.push(next.0);
        out.push(if p.critical { 0x80 } else { 0 });
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(p.body);
    }
    Ok(payloads.first().map_or(PayloadType::NONE, |p| p.kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kind: PayloadType, body: &[u8]) -> Payload<'_> {
        Payload::plain(kind, body)
    }

    #[test]
    fn a_chain_reads_back_as_written() {
        let chain = [
            p(PayloadType::SA, b"proposals"),
            p(PayloadType::KE, b"dh"),
            p(PayloadType::NONCE, b"nonce-nonce"),
        ];
        let mut out = Vec::new();
        let first = write_chain(&mut out, &chain).expect("small bodies");
        assert_eq!(first, PayloadType::SA);
        let read = read_chain(first, &out).expect("reads");
        let kinds: Vec<_> = read.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            [PayloadType::SA, PayloadType::KE, PayloadType::NONCE]
        );
        assert_eq!(read[2].body, b"nonce-nonce");
    }

    #[test]
    fn bad_lengths_and_unknown_critical_payloads_are_refused() {
        let mut out = Vec::new();
        write_chain(&mut out, &[p(PayloadType::NONCE, b"0123456789abcdef")]).expect("writes");
        assert!(matches!(
            read_chain(PayloadType::NONCE, &out[..10]),
            Err(ParseError::PayloadOverrun { index: 0 })
        ));
        let mut short = out.clone();
        short[3] = 3;
        assert!(matches!(
            read_chain(PayloadType::NONCE, &short),
            Err(ParseError::PayloadTooShort { index: 0, len: 3 })
        ));
        let mut trailing = out.clone();
        trailing.push(0);
        assert_eq!(
            read_chain(PayloadType::NONCE, &trailing),
            Err(ParseError::TrailingBytes(1))
        );
        // An unknown type: skipped, unless critical.
        let unknown = [0u8, 0, 0, 6, 1, 2];
        assert_eq!(read_chain(PayloadType(200), &unknown), Ok(Vec::new()));
        let critical = [0u8, 0x80, 0, 6, 1, 2];
        assert_eq!(
            read_chain(PayloadType(200), &critical),
            Err(ParseError::UnsupportedCritical(200))
        );
    }

    #[test]
    fn the_encrypted_payload_ends_the_chain() {
        let sk = Payload {
            kind: PayloadType::SK,
            critical: true,
            body: b"iv-ciphertext-icv",
            next: PayloadType::IDI,
        };
        let mut out = Vec::new();
        write_chain(&mut out, &[sk]).expect("writes");
        let read = read_chain(PayloadType::SK, &out).expect("reads");
        assert_eq!(
            read[0].next,
            PayloadType::IDI,
            "names the first inner payload"
        );
        out.extend_from_slice(&[0, 0, 0, 4]);
        assert_eq!(
            read_chain(PayloadType::SK, &out),
            Err(ParseError::PayloadAfterEncrypted)
        );
    }
}
