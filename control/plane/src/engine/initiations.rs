//! Handshakes we start: initiations to peers with an endpoint, their retransmissions and
//! give-ups on the timer tick, the cookie replies they draw and the responses that finish
//! them into a session installed in the owning worker.

use std::time::Instant;

use datapath::messages::{HandshakeDatagram, ToWorker};
use datapath::route::PeerId;
use proto::constants::REJECT_AFTER_TIME;
use proto::initiator::{InitiatorDue, InitiatorError};
use proto::wire::{CookieReply, Response};

use super::indices::IndexUse;
use super::ControlPlane;
use crate::events::{DownReason, TunnelEvent};
impl ControlPlane {
    /// Finishes a handshake we initiated.
    pub(super) fn complete(&mut self, d: &HandshakeDatagram, resp: &Response<'_>, now: Instant) {
        let Some(IndexUse::Pending(id)) = self.indices.get(resp.receiver) else {
            self.counters.unexpected_index += 1;
            return;
        };
        let Some(identity) = self.identity.as_ref() else {
            return;
        };
        let Some(peer) = self.peers.get_mut(id) else {
            self.counters.unexpected_index += 1;
            return;
        };
        let Some(remote) = peer.keys.as_deref().map(|k| &k.remote) else {
            self.counters.unexpected_index += 1;
            return;
        };
        let keys = match peer.initiator.finish(&identity.local, remote, resp) {
            Ok(k) => k,
            Err(InitiatorError::NotPending(_)) => {
                self.counters.unexpected_index += 1;
                return;
            }
            Err(_) => {
                self.counters.bad_handshake += 1;
                return;
            }
        };
        peer.endpoint = Some(d.from);
        peer.handshake_rx_bytes += d.len as u64;
        let public = peer.public_key;
        self.indices.set(keys.local_index, IndexUse::Session(id));
        self.install(id, &keys, d.from, now);
        self.counters.initiator_completed += 1;
        // One line per user, at debug as the answered ones are: a take-over completes
        // thousands at once.
        tracing::debug!(peer = %public, endpoint = %d.from, "handshake completed (we initiated)");
    }

    pub(super) fn take_cookie(&mut self, reply: &CookieReply<'_>, now: Instant) {
        let Some(IndexUse::Pending(id)) = self.indices.get(reply.receiver) else {
            self.counters.unexpected_index += 1;
            return;
        };
        let Some(peer) = self.peers.get_mut(id) else {
            return;
        };
        let (jar, initiator) = peer.jar_and_initiator();
        match initiator.take_cookie(jar, reply, now) {
            Ok(()) => {
                peer.handshake_rx_bytes += proto::constants::COOKIE_REPLY_LEN as u64;
                self.counters.cookie_replies_received += 1;
            }
            Err(InitiatorError::NotPending(_)) => self.counters.unexpected_index += 1,
            Err(_) => self.counters.bad_cookie += 1,
        }
    }

    /// Sends an initiation to `id` if it has an endpoint and the rate limit allows.
    pub(super) fn initiate(&mut self, id: PeerId, now: Instant, retry: bool) {
        let owner = self.owner(id);
        let stamp = self.clock.tai64n(now);
        let Some(identity) = self.identity.as_ref() else {
            return;
        };
        let Some(peer) = self.peers.get_mut(id) else {
            return;
        };
        let (Some(endpoint), Some(keys)) = (peer.endpoint, peer.keys.clone()) else {
            return;
        };
        if !peer.initiator.may_start(now, retry) {
            return;
        }
        let index = self
            .indices
            .allocate(owner, IndexUse::Pending(id), &mut self.rng);
        let (jar, initiator) = peer.jar_and_initiator();
        let started = initiator.start(
            (&identity.local, &keys.remote),
            (index, stamp),
            jar,
            (now, retry),
            &mut self.rng,
        );
        let Ok(started) = started else {
            self.indices.free(index);
            return;
        };
        if let Some(old) = started.replaced {
            self.indices.free(old);
        }
        peer.handshake_tx_bytes += started.message.len() as u64;
        let public = peer.public_key;
        self.counters.initiations_sent += 1;
        self.transmit(owner, (endpoint, None), &started.message);
        // Logs name a peer by its public key only: the one identity the registry, the API's
        // events and `wg show` share (the plane's slot number means nothing outside it).
        tracing::debug!(peer = %public, %endpoint, retry, "initiation sent");
    }

    /// Retransmits unanswered initiations and gives up after REKEY_ATTEMPT_TIME; reports
    /// tunnels whose newest session is past REJECT_AFTER_TIME as down.
    pub(super) fn on_tick(&mut self, now: Instant) {
        let expired: Vec<PeerId> = self
            .tunnels
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(**at) >= REJECT_AFTER_TIME)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.tunnels.remove(&id);
            if let Some(p) = self.peers.get_mut(id) {
                self.channels.events_out.publish(TunnelEvent::Down {
                    public_key: p.public_key,
                    reason: DownReason::Expired,
                });
            }
        }
        let due: Vec<(PeerId, InitiatorDue)> = self
            .peers
            .iter_mut()
            .filter(|p| p.initiator.next_deadline().is_some_and(|d| d <= now))
            .map(|p| (p.id, p.initiator.poll(now)))
            .collect();
        for (id, action) in due {
            match action {
                InitiatorDue::Retransmit => self.initiate(id, now, true),
                InitiatorDue::GaveUp(index) => {
                    if let Some(index) = index {
                        self.indices.free(index);
                    }
                    if let Some(p) = self.peers.get(id) {
                        tracing::info!(peer = %p.public_key, "handshake did not complete; giving up");
                    }
                    self.send_to_owner(id, ToWorker::HandshakeGaveUp { peer: id });
                }
                InitiatorDue::Wait => {}
            }
        }
    }
}
