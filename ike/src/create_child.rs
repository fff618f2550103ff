//! CREATE_CHILD_SA that rekeys a CHILD_SA, the responder's rules (RFC 7296 §1.3.3, §2.8):
//! the request names the SA it replaces (REKEY_SA), offers ESP proposals with the
//! initiator's new SPI, a nonce, a KE when it wants perfect forward secrecy, and selectors;
//! the answer carries the chosen proposal with this side's new SPI, a nonce, a KE for PFS and
//! the selectors the SA already had. The new keys are prf+(SK_d, [g^ir] | Ni | Nr). The old
//! SA stays until the initiator deletes it, so no packet in flight is lost.

use ring::rand::SecureRandom;

use crate::dh::{ke_body, read_ke, KeyExchange};
use crate::ike_auth::{ChildSa, EspKeys};
use crate::keys::child_keymat;
use crate::notify::NotifyType;
use crate::payloads::{Payload, PayloadType};
use crate::proposals::{read_sa, write_sa, ProtocolId};
use crate::sa_init::HalfOpen;
use crate::selectors::{ts_body, TrafficSelector};
use crate::suite::{choose, Policy};

/// The nonce length made here.
const NONCE_LEN: usize = 32;

/// Why a rekey was refused; the notify answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RekeyRefusal {
    /// Not a rekey of a CHILD_SA this side has (a new CHILD_SA, or an IKE SA rekey).
    #[error("not a rekey of a known CHILD_SA")]
    NotARekey,
    /// A payload it must carry is missing or unreadable.
    #[error("missing or unusable {0}")]
    Missing(&'static str),
    /// No acceptable proposal.
    #[error("no proposal chosen; offered: {0}")]
    NoProposalChosen(String),
    /// The KE is for another group than the one chosen (answered with the group wanted).
    #[error("KE for another group than {wanted}")]
    InvalidKe {
        /// The group chosen.
        wanted: u16,
    },
}

impl RekeyRefusal {
    /// The error notify that answers it.
    pub fn notify(&self) -> NotifyType {
        match self {
            Self::NotARekey => NotifyType::NO_ADDITIONAL_SAS,
            Self::Missing(_) => NotifyType::INVALID_SYNTAX,
            Self::NoProposalChosen(_) => NotifyType::NO_PROPOSAL_CHOSEN,
            Self::InvalidKe { .. } => NotifyType::INVALID_KE_PAYLOAD,
        }
    }

    /// The notify's data: the group wanted for INVALID_KE_PAYLOAD, else nothing.
    pub fn data(&self) -> Vec<u8> {
        match self {
            Self::InvalidKe { wanted } => wanted.to_be_bytes().to_vec(),
            _ => Vec::new(),
        }
    }
}

/// A response's payloads, (type, body), in order.
pub type ResponsePayloads = Vec<(PayloadType, Vec<u8>)>;

/// A rekey answered: the new CHILD_SA, and the payloads of the response.
#[derive(Debug)]
pub struct Rekeyed {
    /// The new CHILD_SA (`spi_r` is this side's new inbound SPI).
    pub child: ChildSa,
    /// The response's payloads.
    pub payloads: ResponsePayloads,
}

/// The proposal `policy` chooses for `protocol` among the request's SA payload, and the
/// request's nonce (16 to 256 bytes).
fn chosen_and_nonce<'a>(
    payloads: &[Payload<'a>],
    protocol: ProtocolId,
    policy: &Policy,
) -> Result<(crate::suite::Chosen, &'a [u8]), RekeyRefusal> {
    let find = |k: PayloadType| payloads.iter().find(|p| p.kind == k).map(|p| p.body);
    let offer = find(PayloadType::SA)
        .and_then(|b| read_sa(b).ok())
        .ok_or(RekeyRefusal::Missing("SA"))?;
    let ni = find(PayloadType::NONCE)
        .filter(|n| (16..=256).contains(&n.len()))
        .ok_or(RekeyRefusal::Missing("nonce"))?;
    let chosen =
        choose(&offer, protocol, policy).map_err(|e| RekeyRefusal::NoProposalChosen(e.offered))?;
    Ok((chosen, ni))
}

/// The request's KE of `group` answered with one of ours: the shared secret and our KE
/// payload's body.
fn exchange(
    payloads: &[Payload<'_>],
    group: crate::suite::DhGroup,
    rng: &dyn SecureRandom,
) -> Result<(zeroize::Zeroizing<Vec<u8>>, Vec<u8>), RekeyRefusal> {
    let (g, theirs) = payloads
        .iter()
        .find(|p| p.kind == PayloadType::KE)
        .and_then(|p| read_ke(p.body).ok())
        .ok_or(RekeyRefusal::Missing("KE"))?;
    if g != group.id() {
        return Err(RekeyRefusal::InvalidKe { wanted: group.id() });
    }
    let ours = KeyExchange::start(group, rng).map_err(|_| RekeyRefusal::Missing("KE"))?;
    let body = ke_body(group, ours.public());
    let shared = ours
        .finish(theirs)
        .map_err(|_| RekeyRefusal::Missing("a usable KE"))?;
    Ok((shared, body))
}

/// Answers a CREATE_CHILD_SA request (`payloads`, decrypted) on IKE SA `sa` that rekeys (or
/// makes again) a CHILD_SA whose selectors were `old` (the caller found it by the REKEY_SA
/// notify), choosing from `esp`, receiving on `new_spi`.
pub fn respond_rekey(
    sa: &HalfOpen,
    payloads: &[Payload<'_>],
    old: (&[TrafficSelector], &[TrafficSelector]),
    (esp, new_spi): (&Policy, [u8; 4]),
    rng: &dyn SecureRandom,
) -> Result<Rekeyed, RekeyRefusal> {
    let (old_ts_i, old_ts_r) = old;
    let has = |k: PayloadType| payloads.iter().any(|p| p.kind == k);
    if !has(PayloadType::TSI) || !has(PayloadType::TSR) {
        return Err(RekeyRefusal::Missing("TSi or TSr"));
    }
    let (chosen, ni) = chosen_and_nonce(payloads, ProtocolId::ESP, esp)?;
    let spi_i = chosen
        .proposal
        .esp_spi()
        .ok_or(RekeyRefusal::Missing("a 4-byte ESP SPI of 256 or above"))?;
    let mut nr = [0u8; NONCE_LEN];
    rng.fill(&mut nr)
        .map_err(|_| RekeyRefusal::Missing("randomness"))?;
    // Perfect forward secrecy when the chosen proposal has a group: a KE of that group.
    let (shared, ke_out) = match chosen.suite.dh {
        Some(group) => {
            let (shared, body) = exchange(payloads, group, rng)?;
            (Some(shared), Some(body))
        }
        None => (None, None),
    };
    let prf = sa
        .suite
        .prf
        .ok_or(RekeyRefusal::Missing("the IKE SA's PRF"))?;
    let lens = chosen.suite.key_lengths();
    let keymat = child_keymat(
        prf,
        &sa.keys.sk_d,
        shared.as_deref().map(|s| &s[..]),
        (ni, &nr),
        2 * (lens.encr + lens.integ),
    )
    .map_err(|_| RekeyRefusal::Missing("ESP key lengths"))?;
    let cut = |at: usize, n: usize| zeroize::Zeroizing::new(keymat[at..at + n].to_vec());
    let i_to_r = EspKeys {
        encr: cut(0, lens.encr),
        integ: cut(lens.encr, lens.integ),
    };
    let r_to_i = EspKeys {
        encr: cut(lens.encr + lens.integ, lens.encr),
        integ: cut(2 * lens.encr + lens.integ, lens.integ),
    };
    let mut answer = chosen.proposal.clone();
    answer.spi = new_spi.to_vec();
    let mut out = vec![
        (PayloadType::SA, write_sa(&[answer])),
        (PayloadType::NONCE, nr.to_vec()),
    ];
    if let Some(ke) = ke_out {
        out.push((PayloadType::KE, ke));
    }
    // The same traffic as before: a rekey changes keys, not what the SA carries.
    out.push((PayloadType::TSI, ts_body(old_ts_i)));
    out.push((PayloadType::TSR, ts_body(old_ts_r)));
    Ok(Rekeyed {
        child: ChildSa {
            spi_i,
            spi_r: new_spi,
            suite: chosen.suite,
            i_to_r,
            r_to_i,
            ts_i: old_ts_i.to_vec(),
            ts_r: old_ts_r.to_vec(),
        },
        payloads: out,
    })
}

/// Answers a CREATE_CHILD_SA request (`payloads`, decrypted) on IKE SA `sa` that rekeys the
/// IKE SA itself (RFC 7296 §1.3.2): its SA payload offers IKE proposals with the initiator's
/// new SPI, a nonce and a KE. Returns the new SA's keys (its messages start at ID 0; the old
/// SA lives until the initiator deletes it) and the response's payloads.
pub fn respond_ike_rekey(
    sa: &HalfOpen,
    payloads: &[Payload<'_>],
    policy: &Policy,
    rng: &dyn SecureRandom,
) -> Result<(HalfOpen, ResponsePayloads), RekeyRefusal> {
    let (chosen, ni) = chosen_and_nonce(payloads, ProtocolId::IKE, policy)?;
    let (Some(group), Some(prf)) = (chosen.suite.dh, chosen.suite.prf) else {
        return Err(RekeyRefusal::Missing("a DH group and a PRF"));
    };
    let spi_i = <[u8; 8]>::try_from(chosen.proposal.spi.as_slice())
        .ok()
        .filter(|spi| *spi != [0; 8])
        .ok_or(RekeyRefusal::Missing("a non-zero 8-byte IKE SPI"))?;
    let (shared, ke) = exchange(payloads, group, rng)?;
    let mut nr = [0u8; NONCE_LEN];
    let mut spi_r = [0u8; 8];
    rng.fill(&mut nr)
        .and_then(|()| rng.fill(&mut spi_r))
        .map_err(|_| RekeyRefusal::Missing("randomness"))?;
    spi_r[0] |= 1; // never the all-zero SPI
    let old_prf = sa
        .suite
        .prf
        .ok_or(RekeyRefusal::Missing("the IKE SA's PRF"))?;
    let keys = crate::keys::derive_rekeyed_ike_keys(
        (old_prf, prf),
        &sa.keys.sk_d,
        &shared,
        (ni, &nr),
        (&spi_i, &spi_r),
        chosen.suite.key_lengths(),
    )
    .map_err(|_| RekeyRefusal::Missing("key lengths within prf+"))?;
    let mut answer = chosen.proposal.clone();
    answer.spi = spi_r.to_vec();
    let out = vec![
        (PayloadType::SA, write_sa(&[answer])),
        (PayloadType::NONCE, nr.to_vec()),
        (PayloadType::KE, ke),
    ];
    let next = HalfOpen {
        spi_i,
        spi_r,
        suite: chosen.suite,
        keys,
        ni: ni.to_vec(),
        nr: nr.to_vec(),
        request: Vec::new(),
        response: Vec::new(),
        nat: sa.nat,
        fragmentation: sa.fragmentation,
        signature_hashes: sa.signature_hashes,
    };
    Ok((next, out))
}

/// Whether an SA payload offers IKE proposals (a rekey of the IKE SA, not of a CHILD_SA).
pub fn offers_ike(payloads: &[Payload<'_>]) -> bool {
    payloads
        .iter()
        .find(|p| p.kind == PayloadType::SA)
        .and_then(|p| read_sa(p.body).ok())
        .is_some_and(|offer| offer.iter().any(|p| p.protocol == ProtocolId::IKE))
}
