//! The SA payload's proposals and transforms (RFC 7296 §3.3), read with every length
//! checked, and written. Which proposal to take is `suite`'s business.

use thiserror::Error;

/// Why an SA payload cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SaError {
    /// A substructure shorter than its fixed part, or running past its container.
    #[error("{what} {index} is truncated or runs past its container")]
    Truncated {
        /// "proposal" or "transform".
        what: &'static str,
        /// Its position.
        index: usize,
    },
    /// The last-substructure marks disagree with where the data ends.
    #[error("{what} {index}: its last/more mark disagrees with the data")]
    BadMark {
        /// "proposal" or "transform".
        what: &'static str,
        /// Its position.
        index: usize,
    },
    /// A proposal's transform count disagrees with the transforms in it.
    #[error("proposal {0} says {1} transforms and holds {2}")]
    TransformCount(usize, usize, usize),
    /// Proposals numbered other than 1, 2, 3... (RFC 7296 §3.3.1).
    #[error("proposal {index} is numbered {number}")]
    Numbering {
        /// Its position.
        index: usize,
        /// Its number.
        number: u8,
    },
    /// More than any sound SA payload has.
    #[error("more than {0} proposals or transforms")]
    TooMany(usize),
    /// An empty SA payload.
    #[error("no proposal")]
    Empty,
}

/// The protocol a proposal is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolId(pub u8);

impl ProtocolId {
    /// The IKE SA itself.
    pub const IKE: Self = Self(1);
    /// ESP, a CHILD_SA.
    pub const ESP: Self = Self(3);
}

/// A transform type (RFC 7296 §3.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransformType(pub u8);

impl TransformType {
    /// Encryption (with an AEAD cipher, also integrity).
    pub const ENCR: Self = Self(1);
    /// Pseudo-random function (IKE only).
    pub const PRF: Self = Self(2);
    /// Integrity (absent with an AEAD cipher).
    pub const INTEG: Self = Self(3);
    /// Diffie-Hellman group (key exchange method).
    pub const DH: Self = Self(4);
    /// Extended sequence numbers (ESP only).
    pub const ESN: Self = Self(5);
}

/// The Key Length attribute (RFC 7296 §3.3.5), the only attribute defined.
const KEY_LENGTH: u16 = 14;
/// Attribute Format bit: a 2-byte value follows the type (TV), not a length (TLV).
const AF_TV: u16 = 0x8000;

/// One transform: its type, its ID and its key length in bits, if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transform {
    /// Its type.
    pub kind: TransformType,
    /// Its IANA ID within the type.
    pub id: u16,
    /// The Key Length attribute, in bits (AES's 128, 192 or 256).
    pub key_bits: Option<u16>,
    /// An attribute this implementation does not know was present (RFC 7296 §3.3.6: such a
    /// transform is never chosen).
    pub unknown_attribute: bool,
}

impl Transform {
    /// A transform of `kind` with `id` and, for AES, its key length in bits.
    pub fn new(kind: TransformType, id: u16, key_bits: Option<u16>) -> Self {
        Self {
            kind,
            id,
            key_bits,
            unknown_attribute: false,
        }
    }
}

/// One proposal: its number, protocol, SPI and transforms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Proposal {
    /// 1, 2, 3...: the responder answers with the number it chose.
    pub number: u8,
    /// IKE or ESP.
    pub protocol: ProtocolId,
    /// The sender's SPI for the SA (empty for a first IKE SA, 8 bytes for an IKE rekey,
    /// 4 for ESP).
    pub spi: Vec<u8>,
    /// The transforms: alternatives within a type, all types together.
    pub transforms: Vec<Transform>,
}

/// The most proposals, and transforms in one, read (clients send a few dozen at most).
pub const MAX_ITEMS: usize = 64;

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// The attributes of one transform.
fn read_attributes(mut b: &[u8]) -> Option<(Option<u16>, bool)> {
    let (mut key_bits, mut unknown) = (None, false);
    while !b.is_empty() {
        let head = b.get(..4)?;
        let kind = be16(head);
        if kind & AF_TV != 0 {
            if kind & !AF_TV == KEY_LENGTH {
                key_bits = Some(be16(&head[2..]));
            } else {
                unknown = true;
            }
            b = &b[4..];
        } else {
            let len = usize::from(be16(&head[2..]));
            b.get(4..4 + len)?;
            unknown = true;
            b = &b[4 + len..];
        }
    }
    Some((key_bits, unknown))
}

/// The next proposal or transform in `b`: its 8-byte fixed part, the rest of it, and its
/// length (which counts the fixed part), once the length fits and its mark says "last" (0)
/// exactly when nothing follows, else `more` (2 for proposals, 3 for transforms).
fn substructure<'a>(
    b: &'a [u8],
    what: &'static str,
    index: usize,
    more: u8,
) -> Result<(&'a [u8], &'a [u8], usize), SaError> {
    let truncated = SaError::Truncated { what, index };
    let head = b.get(..8).ok_or(truncated.clone())?;
    let len = usize::from(be16(&head[2..]));
    let body = b.get(8..len.max(8)).filter(|_| len >= 8).ok_or(truncated)?;
    let last = head[0] == 0;
    if (head[0] != 0 && head[0] != more) || last != (len == b.len()) {
        return Err(SaError::BadMark { what, index });
    }
    Ok((head, body, len))
}

/// The transforms in `b`, which must hold exactly `count`.
fn read_transforms(proposal: usize, count: usize, mut b: &[u8]) -> Result<Vec<Transform>, SaError> {
    let mut out = Vec::new();
    let mut index = 0;
    while !b.is_empty() {
        if index == MAX_ITEMS {
            return Err(SaError::TooMany(MAX_ITEMS));
        }
        let (head, body, len) = substructure(b, "transform", index, 3)?;
        let (key_bits, unknown_attribute) = read_attributes(body).ok_or(SaError::Truncated {
            what: "transform",
            index,
        })?;
        out.push(Transform {
            kind: TransformType(head[4]),
            id: be16(&head[6..]),
            key_bits,
            unknown_attribute,
        });
        b = &b[len..];
        index += 1;
    }
    if out.len() != count {
        return Err(SaError::TransformCount(proposal, count, out.len()));
    }
    Ok(out)
}

/// The proposals of an SA payload's body (an offer: numbered 1, 2, 3...).
pub fn read_sa(b: &[u8]) -> Result<Vec<Proposal>, SaError> {
    read_proposals(b, true)
}

/// The one proposal of an answer's SA payload, which keeps the number it had in the offer
/// (RFC 7296 §3.3.1).
pub fn read_sa_answer(b: &[u8]) -> Result<Proposal, SaError> {
    let mut all = read_proposals(b, false)?;
    match (all.pop(), all.is_empty()) {
        (Some(one), true) => Ok(one),
        _ => Err(SaError::TooMany(1)),
    }
}

fn read_proposals(mut b: &[u8], offer: bool) -> Result<Vec<Proposal>, SaError> {
    let mut out = Vec::new();
    let mut index = 0;
    while !b.is_empty() {
        if index == MAX_ITEMS {
            return Err(SaError::TooMany(MAX_ITEMS));
        }
        let (head, body, len) = substructure(b, "proposal", index, 2)?;
        let spi_len = usize::from(head[6]);
        let spi = body
            .get(..spi_len)
            .ok_or(SaError::Truncated {
                what: "proposal",
                index,
            })?
            .to_vec();
        let number = head[4];
        if offer && usize::from(number) != index + 1 {
            return Err(SaError::Numbering { index, number });
        }
        let transforms = read_transforms(index, usize::from(head[7]), &body[spi_len..])?;
        out.push(Proposal {
            number,
            protocol: ProtocolId(head[5]),
            spi,
            transforms,
        });
        b = &b[len..];
        index += 1;
    }
    if out.is_empty() {
        return Err(SaError::Empty);
    }
    Ok(out)
}

/// The body of an SA payload holding `proposals` (numbered as they are).
pub fn write_sa(proposals: &[Proposal]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in proposals.iter().enumerate() {
        let mut transforms = Vec::new();
        for (j, t) in p.transforms.iter().enumerate() {
            let attr_len = if t.key_bits.is_some() { 4 } else { 0 };
            transforms.push(if j + 1 == p.transforms.len() { 0 } else { 3 });
            transforms.push(0);
            transforms.extend_from_slice(&((8 + attr_len) as u16).to_be_bytes());
            transforms.push(t.kind.0);
            transforms.push(0);
            transforms.extend_from_slice(&t.id.to_be_bytes());
            if let Some(bits) = t.key_bits {
                transforms.extend_from_slice(&(AF_TV | KEY_LENGTH).to_be_bytes());
                transforms.extend_from_slice(&bits.to_be_bytes());
            }
        }
        let len = 8 + p.spi.len() + transforms.len();
        out.push(if i + 1 == proposals.len() { 0 } else { 2 });
        out.push(0);
        // Bounded: at most MAX_ITEMS transforms of 12 bytes and an SPI of 255.
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.push(p.number);
        out.push(p.protocol.0);
        out.push(p.spi.len() as u8);
        out.push(p.transforms.len() as u8);
        out.extend_from_slice(&p.spi);
        out.extend_from_slice(&transforms);
    }
    out
}

impl Proposal {
    /// The sender's ESP SPI in this proposal: four bytes, 256 or above (RFC 4303 §2.1: 0 is
    /// never sent, 1 to 255 are reserved by IANA).
    pub fn esp_spi(&self) -> Option<[u8; 4]> {
        let spi = <[u8; 4]>::try_from(self.spi.as_slice()).ok()?;
        (u32::from_be_bytes(spi) >= 256).then_some(spi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kind: TransformType, id: u16, key_bits: Option<u16>) -> Transform {
        Transform::new(kind, id, key_bits)
    }

    fn sample() -> Vec<Proposal> {
        vec![
            Proposal {
                number: 1,
                protocol: ProtocolId::IKE,
                spi: Vec::new(),
                transforms: vec![
                    t(TransformType::ENCR, 20, Some(256)),
                    t(TransformType::PRF, 5, None),
                    t(TransformType::DH, 31, None),
                ],
            },
            Proposal {
                number: 2,
                protocol: ProtocolId::IKE,
                spi: Vec::new(),
                transforms: vec![
                    t(TransformType::ENCR, 12, Some(256)),
                    t(TransformType::PRF, 2, None),
                    t(TransformType::INTEG, 2, None),
                    t(TransformType::DH, 14, None),
                ],
            },
        ]
    }

    #[test]
    fn proposals_read_back_as_written() {
        let body = write_sa(&sample());
        assert_eq!(read_sa(&body), Ok(sample()));
        // Sizes as RFC 7296 §3.3 lays them out: 8 per proposal, 8 per transform, 4 per
        // key-length attribute.
        assert_eq!(body.len(), 8 + 3 * 8 + 4 + 8 + 4 * 8 + 4);
    }

    #[test]
    fn broken_structures_are_refused_with_a_reason() {
        let body = write_sa(&sample());
        assert!(matches!(
            read_sa(&body[..body.len() - 1]),
            Err(SaError::Truncated { .. }) | Err(SaError::BadMark { .. })
        ));
        let mut renumbered = body.clone();
        renumbered[4] = 2;
        assert_eq!(
            read_sa(&renumbered),
            Err(SaError::Numbering {
                index: 0,
                number: 2
            })
        );
        let mut miscounted = body.clone();
        miscounted[7] = 4;
        assert_eq!(read_sa(&miscounted), Err(SaError::TransformCount(0, 4, 3)));
        let mut unmarked = body.clone();
        unmarked[0] = 0; // "last", though another follows
        assert!(matches!(read_sa(&unmarked), Err(SaError::BadMark { .. })));
        assert_eq!(read_sa(&[]), Err(SaError::Empty));
    }

    #[test]
    fn an_answer_keeps_the_number_it_had_in_the_offer() {
        let mut second = sample();
        second.remove(0);
        let body = write_sa(&second);
        assert!(read_sa(&body).is_err(), "an offer starts at 1");
        assert_eq!(read_sa_answer(&body).map(|p| p.number), Ok(2));
        assert!(
            read_sa_answer(&write_sa(&sample())).is_err(),
            "an answer has one proposal"
        );
    }

    #[test]
    fn an_unknown_attribute_marks_its_transform() {
        let mut p = sample();
        p.truncate(1);
        let mut body = write_sa(&p);
        // The first transform's key-length attribute becomes attribute type 15 (unknown).
        let attr = 8 + 8;
        body[attr + 1] = 15;
        let read = read_sa(&body).expect("reads");
        assert!(read[0].transforms[0].unknown_attribute);
        assert_eq!(read[0].transforms[0].key_bits, None);
    }

    #[test]
    fn an_esp_spi_is_four_bytes_and_not_reserved() {
        let with = |spi: &[u8]| Proposal {
            number: 1,
            protocol: ProtocolId::ESP,
            spi: spi.to_vec(),
            transforms: Vec::new(),
        };
        assert_eq!(with(&[0, 0, 1, 0]).esp_spi(), Some([0, 0, 1, 0]));
        assert_eq!(with(&[0xc1, 2, 3, 4]).esp_spi(), Some([0xc1, 2, 3, 4]));
        for bad in [
            &[0u8, 0, 0, 0][..],
            &[0, 0, 0, 255],
            &[0, 0, 1],
            &[1, 0, 0, 0, 0],
        ] {
            assert_eq!(with(bad).esp_spi(), None, "{bad:?}");
        }
    }
}
