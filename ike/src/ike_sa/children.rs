//! An IKE SA's CHILD_SAs as the responder keeps them: what a rekey needs (the SPIs and the
//! selectors) for the current one and for older ones the peer has not deleted yet; rekeys
//! answered by `create_child`'s rules, Deletes of ESP SPIs answered with this side's.

use ring::rand::SecureRandom;

use super::{notify, AuthContext, IkeSa, SaEvent};
use crate::create_child::{offers_ike, respond_ike_rekey, respond_rekey, RekeyRefusal};
use crate::delete::Delete;
use crate::ike_auth::ChildSa;
use crate::notify::Notify;
use crate::payloads::PayloadType;
use crate::proposals::ProtocolId;
use crate::protected::Opened;
use crate::selectors::TrafficSelector;

/// One CHILD_SA: this side's inbound SPI, the peer's, and the selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChildRef {
    ours: [u8; 4],
    theirs: [u8; 4],
    ts_i: Vec<TrafficSelector>,
    ts_r: Vec<TrafficSelector>,
}

impl ChildRef {
    /// The record of `child`.
    pub(super) fn of(child: &ChildSa) -> Self {
        Self {
            ours: child.spi_r,
            theirs: child.spi_i,
            ts_i: child.ts_i.clone(),
            ts_r: child.ts_r.clone(),
        }
    }
}

/// Most CHILD_SAs kept per IKE SA (the current one and rekeyed ones not yet deleted).
const MAX_CHILDREN: usize = 4;

impl IkeSa {
    /// A CREATE_CHILD_SA request: a rekey of this IKE SA or of a CHILD_SA it has is
    /// answered; anything else (a further CHILD_SA beside a live one) is refused with its
    /// notify.
    pub(super) fn create_child(
        &mut self,
        opened: &Opened,
        ctx: &AuthContext<'_>,
        rng: &dyn SecureRandom,
    ) -> (Vec<(PayloadType, Vec<u8>)>, Vec<SaEvent>) {
        let Ok(payloads) = opened.payloads() else {
            return (
                vec![notify(crate::notify::NotifyType::INVALID_SYNTAX)],
                Vec::new(),
            );
        };
        if offers_ike(&payloads) {
            return self.rekey_ike(&payloads, ctx, rng);
        }
        if self.children.len() >= MAX_CHILDREN {
            // The peer rekeys without deleting: refuse before the list grows without end.
            return (
                vec![notify(crate::notify::NotifyType::NO_ADDITIONAL_SAS)],
                Vec::new(),
            );
        }
        let found = self
            .children
            .iter()
            .find(|c| {
                payloads
                    .iter()
                    .filter(|p| p.kind == PayloadType::NOTIFY)
                    .filter_map(|p| Notify::read(p.body).ok())
                    .any(|n| n.kind == crate::notify::NotifyType::REKEY_SA && n.spi == c.theirs)
            })
            .cloned();
        // Without REKEY_SA, a CHILD_SA made again after the last one expired (strongSwan's
        // "recreate") gets the selectors the first one had; a second one beside a live
        // CHILD_SA is not taken.
        let recreate = self.children.is_empty().then(|| self.first_child.clone());
        let Some(old) = found.clone().or(recreate.flatten()) else {
            let refusal = RekeyRefusal::NotARekey;
            return (vec![notify(refusal.notify())], Vec::new());
        };
        let answer = respond_rekey(
            &self.keys,
            &payloads,
            (old.theirs, &old.ts_i, &old.ts_r),
            (ctx.esp, ctx.child_spi),
            rng,
        );
        match answer {
            Ok(rekeyed) => {
                self.children.push(ChildRef::of(&rekeyed.child));
                if found.is_none() {
                    // A CHILD_SA made again: nothing of this side's is replaced.
                    return (
                        rekeyed.payloads,
                        vec![SaEvent::ChildRekeyed {
                            replaces: [0; 4],
                            child: Box::new(rekeyed.child),
                        }],
                    );
                }
                let event = SaEvent::ChildRekeyed {
                    replaces: old.ours,
                    child: Box::new(rekeyed.child),
                };
                (rekeyed.payloads, vec![event])
            }
            Err(refusal) => {
                let body = Notify::new(refusal.notify(), &refusal.data()).body();
                (vec![(PayloadType::NOTIFY, body)], Vec::new())
            }
        }
    }

    /// A rekey of this IKE SA: the successor SA (its CHILD_SAs move to it; this one stays to
    /// answer retransmissions and take the peer's Delete) and the response's payloads.
    fn rekey_ike(
        &mut self,
        payloads: &[crate::payloads::Payload<'_>],
        ctx: &AuthContext<'_>,
        rng: &dyn SecureRandom,
    ) -> (Vec<(PayloadType, Vec<u8>)>, Vec<SaEvent>) {
        match respond_ike_rekey(&self.keys, payloads, ctx.ike, rng) {
            Ok((keys, out)) => {
                let next = self.successor(keys);
                (out, vec![SaEvent::IkeRekeyed(Box::new(next))])
            }
            Err(refusal) => {
                let body = Notify::new(refusal.notify(), &refusal.data()).body();
                (vec![(PayloadType::NOTIFY, body)], Vec::new())
            }
        }
    }

    /// The peer deleted the CHILD_SAs it receives on `spis`: this side's matching SPIs (for
    /// the answer) and the events.
    pub(super) fn delete_children(&mut self, spis: &[[u8; 4]]) -> (Delete, Vec<SaEvent>) {
        let mut mine = Delete {
            protocol: ProtocolId::ESP,
            spis: Vec::new(),
        };
        let mut events = Vec::new();
        self.children.retain(|c| {
            let gone = spis.contains(&c.theirs);
            if gone {
                mine.spis.push(c.ours);
                events.push(SaEvent::ChildDeleted(c.ours));
            }
            !gone
        });
        (mine, events)
    }
}
