//! An IKE SA's CHILD_SAs as the responder keeps them: what a rekey needs (the SPIs and the
//! selectors) for the current one and for older ones the peer has not deleted yet; rekeys
//! answered by `create_child`'s rules, Deletes of ESP SPIs answered with this side's.

use std::time::Instant;

use ring::rand::SecureRandom;

use super::{notify, AuthContext, IkeSa, SaEvent};
use crate::create_child::{offers_ike, respond_ike_rekey, respond_rekey, ResponsePayloads};
use crate::delete::Delete;
use crate::ike_auth::ChildSa;
use crate::notify::{Notify, NotifyType};
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
    /// answered; a rekey of an unknown CHILD_SA is answered CHILD_SA_NOT_FOUND, a further
    /// CHILD_SA beside a live one NO_ADDITIONAL_SAS.
    pub(super) fn create_child(
        &mut self,
        opened: &Opened,
        (now, ctx): (Instant, &AuthContext<'_>),
        rng: &dyn SecureRandom,
    ) -> (ResponsePayloads, Vec<SaEvent>) {
        let Ok(payloads) = opened.payloads() else {
            return (vec![notify(NotifyType::INVALID_SYNTAX)], Vec::new());
        };
        if offers_ike(&payloads) {
            return self.rekey_ike(&payloads, (now, ctx), rng);
        }
        let named = payloads
            .iter()
            .filter(|p| p.kind == PayloadType::NOTIFY)
            .filter_map(|p| Notify::read(p.body).ok())
            .find(|n| n.kind == NotifyType::REKEY_SA)
            .map(|n| (n.protocol, n.spi.to_vec()));
        let old = match &named {
            // A rekey names the CHILD_SA by the SPI the peer receives on.
            Some((protocol, spi)) => {
                let found = self
                    .children
                    .iter()
                    .find(|c| *protocol == ProtocolId::ESP.0 && c.theirs[..] == spi[..]);
                match found {
                    Some(c) if self.children.len() < MAX_CHILDREN => c.clone(),
                    // The peer rekeys without deleting: refused before the list grows.
                    Some(_) => return (vec![notify(NotifyType::NO_ADDITIONAL_SAS)], vec![]),
                    None => return (vec![notify(NotifyType::CHILD_SA_NOT_FOUND)], vec![]),
                }
            }
            // Without REKEY_SA, a CHILD_SA made again after the last one expired (strongSwan's
            // "recreate") gets the selectors the first one had; a second one beside a live
            // CHILD_SA is not taken.
            None => match (&self.first_child, self.children.is_empty()) {
                (Some(first), true) => first.clone(),
                _ => return (vec![notify(NotifyType::NO_ADDITIONAL_SAS)], vec![]),
            },
        };
        let answer = respond_rekey(
            &self.keys,
            &payloads,
            (&old.ts_i, &old.ts_r),
            (ctx.esp, ctx.child_spi),
            rng,
        );
        match answer {
            Ok(rekeyed) => {
                self.children.push(ChildRef::of(&rekeyed.child));
                let event = SaEvent::ChildRekeyed {
                    replaces: named.is_some().then_some(old.ours),
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
        (now, ctx): (Instant, &AuthContext<'_>),
        rng: &dyn SecureRandom,
    ) -> (ResponsePayloads, Vec<SaEvent>) {
        match respond_ike_rekey(&self.keys, payloads, ctx.ike, rng) {
            Ok((keys, out)) => {
                let next = self.successor(keys, now);
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
