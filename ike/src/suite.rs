//! The algorithms this implementation speaks, and the choice among an initiator's proposals
//! (RFC 7296 §2.7, §3.3): the first proposal, in the initiator's order, from which one
//! acceptable transform of every needed type can be taken, each the initiator's first
//! acceptable one of its type.

use thiserror::Error;

use crate::keys::KeyLengths;
use crate::prf::Prf;
use crate::proposals::{Proposal, ProtocolId, Transform, TransformType};

/// An encryption transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encr {
    /// ENCR_AES_GCM_16 (20): AES-GCM with a 16-byte ICV (RFC 4106, RFC 5282).
    AesGcm16 {
        /// 128 or 256.
        key_bits: u16,
    },
    /// ENCR_CHACHA20_POLY1305 (28, RFC 7634).
    ChaCha20Poly1305,
    /// ENCR_AES_CBC (12), with a separate integrity transform (older clients).
    AesCbc {
        /// 128 or 256.
        key_bits: u16,
    },
}

impl std::fmt::Display for Encr {
    /// The names operators know: `AES-256-GCM`, `ChaCha20-Poly1305`, `AES-128-CBC`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AesGcm16 { key_bits } => write!(f, "AES-{key_bits}-GCM"),
            Self::ChaCha20Poly1305 => f.write_str("ChaCha20-Poly1305"),
            Self::AesCbc { key_bits } => write!(f, "AES-{key_bits}-CBC"),
        }
    }
}

impl Encr {
    fn from_transform(t: &Transform) -> Option<Self> {
        match (t.id, t.key_bits) {
            (20, Some(bits @ (128 | 256))) => Some(Self::AesGcm16 { key_bits: bits }),
            (28, None) => Some(Self::ChaCha20Poly1305),
            (12, Some(bits @ (128 | 256))) => Some(Self::AesCbc { key_bits: bits }),
            _ => None,
        }
    }

    /// As a transform.
    pub fn transform(self) -> Transform {
        let (id, key_bits) = match self {
            Self::AesGcm16 { key_bits } => (20, Some(key_bits)),
            Self::ChaCha20Poly1305 => (28, None),
            Self::AesCbc { key_bits } => (12, Some(key_bits)),
        };
        Transform::new(TransformType::ENCR, id, key_bits)
    }

    /// Encryption and integrity in one: no integrity transform goes with it.
    pub fn is_aead(self) -> bool {
        !matches!(self, Self::AesCbc { .. })
    }

    /// Its key's length in bytes, with the 4-byte salt of GCM and ChaCha20-Poly1305.
    pub fn key_len(self) -> usize {
        match self {
            Self::AesGcm16 { key_bits } => usize::from(key_bits / 8) + 4,
            Self::ChaCha20Poly1305 => 32 + 4,
            Self::AesCbc { key_bits } => usize::from(key_bits / 8),
        }
    }
}

/// An integrity transform (with AES-CBC only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integ {
    /// AUTH_HMAC_SHA1_96 (2).
    HmacSha1_96,
    /// AUTH_HMAC_SHA2_256_128 (12, RFC 4868).
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (13).
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (14).
    HmacSha512_256,
}

impl std::fmt::Display for Integ {
    /// RFC 4868's names: `HMAC-SHA1-96`, `HMAC-SHA2-256-128`, ...
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::HmacSha1_96 => "HMAC-SHA1-96",
            Self::HmacSha256_128 => "HMAC-SHA2-256-128",
            Self::HmacSha384_192 => "HMAC-SHA2-384-192",
            Self::HmacSha512_256 => "HMAC-SHA2-512-256",
        })
    }
}

impl Integ {
    fn from_id(id: u16) -> Option<Self> {
        match id {
            2 => Some(Self::HmacSha1_96),
            12 => Some(Self::HmacSha256_128),
            13 => Some(Self::HmacSha384_192),
            14 => Some(Self::HmacSha512_256),
            _ => None,
        }
    }

    /// Its IANA transform ID.
    pub(crate) fn id(self) -> u16 {
        match self {
            Self::HmacSha1_96 => 2,
            Self::HmacSha256_128 => 12,
            Self::HmacSha384_192 => 13,
            Self::HmacSha512_256 => 14,
        }
    }

    /// Its key's length in bytes (the hash's output length, RFC 4868 §2.1.1).
    pub fn key_len(self) -> usize {
        match self {
            Self::HmacSha1_96 => 20,
            Self::HmacSha256_128 => 32,
            Self::HmacSha384_192 => 48,
            Self::HmacSha512_256 => 64,
        }
    }

    /// Its ICV's length in bytes: the HMAC truncated to half the hash (RFC 4868 §2.3; 96
    /// bits for SHA-1, RFC 2404).
    pub fn icv_len(self) -> usize {
        match self {
            Self::HmacSha1_96 => 12,
            Self::HmacSha256_128 => 16,
            Self::HmacSha384_192 => 24,
            Self::HmacSha512_256 => 32,
        }
    }

    /// ring's HMAC of its hash.
    pub(crate) fn hmac(self) -> ring::hmac::Algorithm {
        match self {
            Self::HmacSha1_96 => ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::HmacSha256_128 => ring::hmac::HMAC_SHA256,
            Self::HmacSha384_192 => ring::hmac::HMAC_SHA384,
            Self::HmacSha512_256 => ring::hmac::HMAC_SHA512,
        }
    }
}

/// A Diffie-Hellman group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// 1024-bit MODP (2, RFC 2409): Windows' default, refused unless legacy clients are let in.
    Modp1024,
    /// 2048-bit MODP (14, RFC 3526).
    Modp2048,
    /// NIST P-256 (19, RFC 5903).
    Ecp256,
    /// NIST P-384 (20, RFC 5903).
    Ecp384,
    /// Curve25519 (31, RFC 8031).
    Curve25519,
}

impl DhGroup {
    /// The group with IANA number `id`, if spoken here.
    pub fn from_id(id: u16) -> Option<Self> {
        match id {
            2 => Some(Self::Modp1024),
            14 => Some(Self::Modp2048),
            19 => Some(Self::Ecp256),
            20 => Some(Self::Ecp384),
            31 => Some(Self::Curve25519),
            _ => None,
        }
    }

    /// Its IANA number.
    pub fn id(self) -> u16 {
        match self {
            Self::Modp1024 => 2,
            Self::Modp2048 => 14,
            Self::Ecp256 => 19,
            Self::Ecp384 => 20,
            Self::Curve25519 => 31,
        }
    }
}

/// What the responder accepts, each list in its own order of preference (ties in the
/// initiator's order are broken by the initiator: its first acceptable transform wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Encryption.
    pub encr: Vec<Encr>,
    /// PRFs (IKE only).
    pub prf: Vec<Prf>,
    /// Integrity, for non-AEAD encryption.
    pub integ: Vec<Integ>,
    /// Diffie-Hellman groups (for ESP: PFS groups; "none" is always accepted for ESP).
    pub dh: Vec<DhGroup>,
}

impl Policy {
    /// AES-256-GCM-16 and ChaCha20-Poly1305, HMAC-SHA2 PRFs, Curve25519, P-256, P-384 and
    /// MODP-2048 (last: about a hundred times the curves' cost, for clients that offer
    /// nothing else).
    pub fn modern() -> Self {
        Self {
            encr: vec![Encr::AesGcm16 { key_bits: 256 }, Encr::ChaCha20Poly1305],
            prf: vec![Prf::HmacSha256, Prf::HmacSha384, Prf::HmacSha512],
            integ: Vec::new(),
            dh: vec![
                DhGroup::Curve25519,
                DhGroup::Ecp256,
                DhGroup::Ecp384,
                DhGroup::Modp2048,
            ],
        }
    }

    /// `modern`, then what the VPN clients built into Windows, macOS and iOS propose by
    /// default: AES-CBC (256, then 128) with HMAC-SHA2 (RFC 4868). The server's own policy.
    pub fn native_clients() -> Self {
        let mut p = Self::modern();
        p.encr.extend([
            Encr::AesCbc { key_bits: 256 },
            Encr::AesCbc { key_bits: 128 },
        ]);
        p.integ = vec![
            Integ::HmacSha256_128,
            Integ::HmacSha384_192,
            Integ::HmacSha512_256,
        ];
        p
    }

    /// This policy and what only Windows' untouched defaults need (the `legacy_windows`
    /// setting): HMAC-SHA1-96, PRF-HMAC-SHA1 and the 1024-bit MODP group, last in each list.
    /// They weaken every SA that picks them: MODP-1024 is within reach of a well-funded
    /// attacker's precomputation, and SHA-1 is deprecated for IKEv2 (RFC 8247).
    pub fn with_legacy(mut self) -> Self {
        self.integ.push(Integ::HmacSha1_96);
        self.prf.push(Prf::HmacSha1);
        self.dh.push(DhGroup::Modp1024);
        self
    }
}

/// The negotiated algorithms of one SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suite {
    /// Encryption.
    pub encr: Encr,
    /// PRF (IKE SAs).
    pub prf: Option<Prf>,
    /// Integrity (non-AEAD encryption only).
    pub integ: Option<Integ>,
    /// Diffie-Hellman group (IKE SAs; CHILD_SAs with PFS).
    pub dh: Option<DhGroup>,
    /// Extended sequence numbers (CHILD_SAs).
    pub esn: Option<bool>,
}

impl Suite {
    /// Its cipher as operators name it: `AES-256-GCM`, or `AES-256-CBC/HMAC-SHA2-256-128`.
    pub fn cipher_name(&self) -> String {
        match self.integ {
            Some(i) => format!("{}/{i}", self.encr),
            None => self.encr.to_string(),
        }
    }

    /// The lengths of the keys this suite needs.
    pub fn key_lengths(&self) -> KeyLengths {
        KeyLengths {
            integ: self.integ.map_or(0, Integ::key_len),
            encr: self.encr.key_len(),
        }
    }
}

/// What was chosen: the suite, and the proposal to answer with (the initiator's number and
/// one transform of each type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The algorithms.
    pub suite: Suite,
    /// The proposal for the response's SA payload (its SPI is the initiator's: the caller
    /// puts its own in for ESP).
    pub proposal: Proposal,
}

/// Nothing offered is acceptable (answered with NO_PROPOSAL_CHOSEN); says what was offered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("no proposal chosen; offered: {offered}")]
pub struct NoProposalChosen {
    /// The offer, as "1: ENCR 20/256, PRF 5, DH 31; 2: ..." (type, ID, key bits).
    pub offered: String,
}

fn describe(offered: &[Proposal]) -> String {
    let name = |k: TransformType| match k.0 {
        1 => "ENCR".to_string(),
        2 => "PRF".to_string(),
        3 => "INTEG".to_string(),
        4 => "DH".to_string(),
        5 => "ESN".to_string(),
        n => format!("type{n}"),
    };
    offered
        .iter()
        .take(16)
        .map(|p| {
            let ts: Vec<String> = p
                .transforms
                .iter()
                .take(32)
                .map(|t| match t.key_bits {
                    Some(b) => format!("{} {}/{b}", name(t.kind), t.id),
                    None => format!("{} {}", name(t.kind), t.id),
                })
                .collect();
            format!("{}: {}", p.number, ts.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The initiator's first transform of `kind` that `accept` takes.
fn first<T>(
    p: &Proposal,
    kind: TransformType,
    accept: impl Fn(&Transform) -> Option<T>,
) -> Option<T> {
    p.transforms
        .iter()
        .filter(|t| t.kind == kind && !t.unknown_attribute)
        .find_map(accept)
}

fn has(p: &Proposal, kind: TransformType) -> bool {
    p.transforms.iter().any(|t| t.kind == kind)
}

/// The suite `policy` takes from proposal `p` for `protocol`, if any.
fn suite_of(p: &Proposal, protocol: ProtocolId, policy: &Policy) -> Option<Suite> {
    let known = |k: TransformType| (1..=5).contains(&k.0);
    if p.protocol != protocol || !p.transforms.iter().all(|t| known(t.kind)) {
        return None;
    }
    let encr = first(p, TransformType::ENCR, |t| {
        Encr::from_transform(t).filter(|e| policy.encr.contains(e))
    })?;
    let integ = if encr.is_aead() {
        // An AEAD cipher comes alone, or with integrity "none" (RFC 5282 §8).
        if p.transforms
            .iter()
            .any(|t| t.kind == TransformType::INTEG && t.id != 0)
        {
            return None;
        }
        None
    } else {
        Some(first(p, TransformType::INTEG, |t| {
            Integ::from_id(t.id).filter(|i| policy.integ.contains(i))
        })?)
    };
    let group = |t: &Transform| DhGroup::from_id(t.id).filter(|g| policy.dh.contains(g));
    let (prf, dh, esn) = if protocol == ProtocolId::IKE {
        let prf = first(p, TransformType::PRF, |t| {
            Prf::from_transform(t.id).filter(|f| policy.prf.contains(f))
        })?;
        (Some(prf), Some(first(p, TransformType::DH, group)?), None)
    } else {
        // ESP: PFS only if offered (an offer of "none", 0, takes none); ESN as offered.
        let dh = if has(p, TransformType::DH) {
            first(p, TransformType::DH, |t| {
                if t.id == 0 {
                    Some(None)
                } else {
                    group(t).map(Some)
                }
            })?
        } else {
            None
        };
        let esn = first(p, TransformType::ESN, |t| match t.id {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        })?;
        (None, dh, Some(esn))
    };
    Some(Suite {
        encr,
        prf,
        integ,
        dh,
        esn,
    })
}

/// The answer's proposal: the initiator's number and SPI, one transform of each type.
fn answer(p: &Proposal, s: &Suite) -> Proposal {
    let mut transforms = vec![s.encr.transform()];
    if let Some(f) = s.prf {
        transforms.push(Transform::new(TransformType::PRF, f.transform_id(), None));
    }
    if let Some(i) = s.integ {
        transforms.push(Transform::new(TransformType::INTEG, i.id(), None));
    }
    if let Some(g) = s.dh {
        transforms.push(Transform::new(TransformType::DH, g.id(), None));
    }
    if let Some(e) = s.esn {
        transforms.push(Transform::new(TransformType::ESN, u16::from(e), None));
    }
    Proposal {
        number: p.number,
        protocol: p.protocol,
        spi: p.spi.clone(),
        transforms,
    }
}

/// The first of `offered` (in the initiator's order) for `protocol` that `policy` accepts.
pub fn choose(
    offered: &[Proposal],
    protocol: ProtocolId,
    policy: &Policy,
) -> Result<Chosen, NoProposalChosen> {
    offered
        .iter()
        .find_map(|p| {
            suite_of(p, protocol, policy).map(|suite| Chosen {
                proposal: answer(p, &suite),
                suite,
            })
        })
        .ok_or_else(|| NoProposalChosen {
            offered: describe(offered),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(number: u8, protocol: ProtocolId, ts: &[(u8, u16, Option<u16>)]) -> Proposal {
        Proposal {
            number,
            protocol,
            spi: Vec::new(),
            transforms: ts
                .iter()
                .map(|&(k, id, bits)| Transform::new(TransformType(k), id, bits))
                .collect(),
        }
    }

    #[test]
    fn the_initiators_first_acceptable_proposal_and_transforms_win() {
        // CBC/SHA-1/MODP-1024 first (refused: not in the policy), then GCM with two DH
        // groups, the initiator preferring P-256.
        let offer = [
            proposal(
                1,
                ProtocolId::IKE,
                &[(1, 12, Some(256)), (2, 2, None), (3, 2, None), (4, 2, None)],
            ),
            proposal(
                2,
                ProtocolId::IKE,
                &[
                    (1, 20, Some(256)),
                    (2, 7, None),
                    (2, 5, None),
                    (4, 19, None),
                    (4, 31, None),
                ],
            ),
        ];
        let chosen = choose(&offer, ProtocolId::IKE, &Policy::modern()).expect("a suite");
        assert_eq!(chosen.proposal.number, 2);
        assert_eq!(chosen.suite.encr, Encr::AesGcm16 { key_bits: 256 });
        assert_eq!(
            chosen.suite.prf,
            Some(Prf::HmacSha512),
            "the initiator's first"
        );
        assert_eq!(chosen.suite.dh, Some(DhGroup::Ecp256));
        assert_eq!(
            chosen.suite.key_lengths(),
            KeyLengths { integ: 0, encr: 36 }
        );
        assert_eq!(chosen.proposal.transforms.len(), 3, "one of each type");
    }

    #[test]
    fn nothing_in_common_says_what_was_offered() {
        let offer = [proposal(
            1,
            ProtocolId::IKE,
            &[(1, 12, Some(128)), (2, 2, None), (3, 2, None), (4, 2, None)],
        )];
        let e = choose(&offer, ProtocolId::IKE, &Policy::modern()).expect_err("nothing");
        assert_eq!(e.offered, "1: ENCR 12/128, PRF 2, INTEG 2, DH 2");
    }

    #[test]
    fn aead_with_integrity_and_unknown_types_are_refused() {
        let with_integ = [proposal(
            1,
            ProtocolId::IKE,
            &[
                (1, 20, Some(256)),
                (2, 5, None),
                (3, 12, None),
                (4, 31, None),
            ],
        )];
        assert!(choose(&with_integ, ProtocolId::IKE, &Policy::modern()).is_err());
        let with_none = [proposal(
            1,
            ProtocolId::IKE,
            &[
                (1, 20, Some(256)),
                (2, 5, None),
                (3, 0, None),
                (4, 31, None),
            ],
        )];
        assert!(choose(&with_none, ProtocolId::IKE, &Policy::modern()).is_ok());
        let unknown_type = [proposal(
            1,
            ProtocolId::IKE,
            &[
                (1, 20, Some(256)),
                (2, 5, None),
                (4, 31, None),
                (9, 1, None),
            ],
        )];
        assert!(choose(&unknown_type, ProtocolId::IKE, &Policy::modern()).is_err());
        let wrong_key = [proposal(
            1,
            ProtocolId::IKE,
            &[(1, 20, Some(192)), (2, 5, None), (4, 31, None)],
        )];
        assert!(choose(&wrong_key, ProtocolId::IKE, &Policy::modern()).is_err());
    }

    #[test]
    fn esp_takes_esn_as_offered_and_pfs_only_when_offered() {
        let plain = [proposal(
            1,
            ProtocolId::ESP,
            &[(1, 28, None), (5, 1, None), (5, 0, None)],
        )];
        let s = choose(&plain, ProtocolId::ESP, &Policy::modern())
            .expect("esp")
            .suite;
        assert_eq!(
            (s.encr, s.esn, s.dh, s.prf),
            (Encr::ChaCha20Poly1305, Some(true), None, None)
        );
        let pfs = [proposal(
            1,
            ProtocolId::ESP,
            &[(1, 20, Some(256)), (4, 31, None), (5, 0, None)],
        )];
        let s = choose(&pfs, ProtocolId::ESP, &Policy::modern())
            .expect("esp")
            .suite;
        assert_eq!((s.dh, s.esn), (Some(DhGroup::Curve25519), Some(false)));
        let no_esn = [proposal(1, ProtocolId::ESP, &[(1, 20, Some(256))])];
        assert!(
            choose(&no_esn, ProtocolId::ESP, &Policy::modern()).is_err(),
            "ESN is required"
        );
        let ike_for_esp = [proposal(
            1,
            ProtocolId::IKE,
            &[(1, 20, Some(256)), (5, 0, None)],
        )];
        assert!(choose(&ike_for_esp, ProtocolId::ESP, &Policy::modern()).is_err());
    }
}
