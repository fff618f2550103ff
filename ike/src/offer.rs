//! What an initiator proposes: a `Policy` written as the proposals of an SA payload, so the
//! loadtest, the bench's client and the tests offer what the responder's own policy names
//! rather than transform numbers typed out again.

use crate::proposals::{Proposal, ProtocolId, Transform, TransformType};
use crate::suite::{Encr, Policy};

/// ESN transform IDs: without, then with (most clients' default first).
const ESN_CHOICES: [u16; 2] = [0, 1];

impl Policy {
    /// The IKE SA proposals of this policy: every cipher, PRF and group in one proposal (AEAD
    /// ciphers; the others, with the integrity transforms, in a second). `spi`: empty for a
    /// first IKE SA, the new 8-byte SPI for a rekey.
    pub fn ike_offer(&self, spi: &[u8]) -> Vec<Proposal> {
        let mut rest: Vec<Transform> = self
            .prf
            .iter()
            .map(|p| Transform::new(TransformType::PRF, p.transform_id(), None))
            .collect();
        rest.extend(self.dh.iter().map(|g| dh(g.id())));
        self.proposals(ProtocolId::IKE, spi, &rest)
    }

    /// The CHILD_SA (ESP) proposals of this policy with our inbound SPI `spi`: every cipher,
    /// both ESN choices, and the policy's groups when `pfs` (a rekey's own key exchange).
    pub fn esp_offer(&self, spi: [u8; 4], pfs: bool) -> Vec<Proposal> {
        let mut rest: Vec<Transform> = ESN_CHOICES
            .iter()
            .map(|id| Transform::new(TransformType::ESN, *id, None))
            .collect();
        if pfs {
            rest.extend(self.dh.iter().map(|g| dh(g.id())));
        }
        self.proposals(ProtocolId::ESP, &spi, &rest)
    }

    /// One proposal of the AEAD ciphers and one of the others with integrity, each followed
    /// by `rest`; empty halves are left out.
    fn proposals(&self, protocol: ProtocolId, spi: &[u8], rest: &[Transform]) -> Vec<Proposal> {
        let (aead, classic): (Vec<Encr>, Vec<Encr>) = self.encr.iter().partition(|e| e.is_aead());
        let integ: Vec<Transform> = self
            .integ
            .iter()
            .map(|i| Transform::new(TransformType::INTEG, i.id(), None))
            .collect();
        let mut out = Vec::new();
        for (ciphers, integ) in [(aead, &[][..]), (classic, &integ[..])] {
            if ciphers.is_empty() || (ciphers.iter().any(|e| !e.is_aead()) && integ.is_empty()) {
                continue;
            }
            let mut transforms: Vec<Transform> = ciphers.iter().map(|e| e.transform()).collect();
            transforms.extend_from_slice(integ);
            transforms.extend_from_slice(rest);
            out.push(Proposal {
                number: out.len() as u8 + 1,
                protocol,
                spi: spi.to_vec(),
                transforms,
            });
        }
        out
    }
}

fn dh(id: u16) -> Transform {
    Transform::new(TransformType::DH, id, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prf::Prf;
    use crate::suite::{choose, DhGroup, Integ};

    /// The responder's own choice function takes the offer of the same policy, and picks
    /// the first of each list.
    #[test]
    fn a_policy_s_offer_is_taken_by_the_same_policy() {
        let policy = Policy::modern();
        let chosen = choose(&policy.ike_offer(&[]), ProtocolId::IKE, &policy).expect("chosen");
        assert_eq!(chosen.suite.encr, Encr::AesGcm16 { key_bits: 256 });
        assert_eq!(chosen.suite.prf, Some(Prf::HmacSha256));
        assert_eq!(chosen.suite.dh, Some(DhGroup::Curve25519));
        let esp = policy.esp_offer([0xc1, 0, 0, 1], false);
        let chosen = choose(&esp, ProtocolId::ESP, &policy).expect("chosen");
        assert_eq!((chosen.suite.esn, chosen.suite.dh), (Some(false), None));
        assert_eq!(chosen.proposal.spi, vec![0xc1, 0, 0, 1]);
        let pfs = policy.esp_offer([0xc1, 0, 0, 2], true);
        assert!(pfs[0]
            .transforms
            .iter()
            .any(|t| t.kind == TransformType::DH));
    }

    /// A non-AEAD cipher goes in a proposal of its own with the integrity transforms (RFC 7296
    /// §3.3: an AEAD proposal carries none), and without them it is not offered at all.
    #[test]
    fn classic_ciphers_get_a_proposal_of_their_own() {
        let mut policy = Policy::modern();
        policy.encr.push(Encr::AesCbc { key_bits: 256 });
        assert_eq!(policy.ike_offer(&[]).len(), 1);
        policy.integ = vec![Integ::HmacSha256_128];
        let offer = policy.ike_offer(&[]);
        assert_eq!(offer.len(), 2);
        assert_eq!(offer[1].number, 2);
        assert!(offer[0]
            .transforms
            .iter()
            .all(|t| t.kind != TransformType::INTEG));
        assert!(offer[1]
            .transforms
            .iter()
            .any(|t| t.kind == TransformType::INTEG));
    }
}
