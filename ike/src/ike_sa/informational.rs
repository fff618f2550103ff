//! INFORMATIONAL requests of an SA that is up (RFC 7296 §1.4): Deletes of the IKE SA or of
//! CHILD_SAs answered with ours, a liveness check answered empty, and MOBIKE's address update
//! (RFC 4555 §3.5) taken, its COOKIE2 echoed.

use super::{notify, DownReason, IkeSa, Phase, SaEvent};
use crate::delete::Delete;
use crate::notify::{Notify, NotifyType};
use crate::payloads::PayloadType;
use crate::proposals::ProtocolId;
use crate::protected::Opened;

impl IkeSa {
    /// An INFORMATIONAL request's answer payloads (Deletes, or none) and its events.
    pub(super) fn informational(
        &mut self,
        opened: &Opened,
    ) -> (Vec<(PayloadType, Vec<u8>)>, Vec<SaEvent>) {
        let Ok(payloads) = opened.payloads() else {
            return (vec![notify(NotifyType::INVALID_SYNTAX)], Vec::new());
        };
        let mut answer = Vec::new();
        let mut events = Vec::new();
        let notifies: Vec<Notify> = payloads
            .iter()
            .filter(|p| p.kind == PayloadType::NOTIFY)
            .filter_map(|p| Notify::read(p.body).ok())
            .collect();
        if notifies
            .iter()
            .any(|n| n.kind == NotifyType::UPDATE_SA_ADDRESSES)
        {
            // RFC 4555 §3.5: the SA follows the addresses this authentic request came by
            // (the caller moves it on `Authentic`); a COOKIE2 is echoed back.
            if self.mobike {
                events.push(SaEvent::AddressesUpdated);
            }
            for n in notifies.iter().filter(|n| n.kind == NotifyType::COOKIE2) {
                answer.push((
                    PayloadType::NOTIFY,
                    Notify::new(NotifyType::COOKIE2, n.data).body(),
                ));
            }
        }
        for p in payloads.iter().filter(|p| p.kind == PayloadType::DELETE) {
            let Ok(d) = Delete::read(p.body) else {
                continue;
            };
            if d.protocol == ProtocolId::IKE {
                // Deleting the IKE SA deletes its CHILD_SAs; the answer is empty.
                self.phase = Phase::Down;
                return (Vec::new(), vec![SaEvent::Down(DownReason::Deleted)]);
            }
            if d.protocol == ProtocolId::ESP {
                let (mine, deleted) = self.delete_children(&d.spis);
                if !mine.spis.is_empty() {
                    answer.push((PayloadType::DELETE, mine.body()));
                }
                events.extend(deleted);
            }
        }
        (answer, events)
    }
}
