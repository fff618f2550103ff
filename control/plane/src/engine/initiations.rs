//! Handshakes we start: initiations to peers with an endpoint, their retransmissions and
//! give-ups on the timer tick, the cookie replies they draw and the responses that finish
//! them into a session installed in the owning worker.

use std::time::Instant;

use datapath::messages::{HandshakeDatagram, ToWorker};
use datapath::route::PeerId;
use proto::constants::REJECT_AFTER_TIME;
use proto::handshake;
use proto::timers::HandshakeAction;
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
        let (Some(pending), Some(remote)) = (peer.pending.as_ref(), peer.remote()) else {
            self.counters.unexpected_index += 1;
            return;
        };
        let keys = match handshake::consume_response(pending, &identity.local, remote, resp) {
            Ok(k) => k,
            Err(_) => {
                self.counters.bad_handshake += 1;
                return;
            }
        };
        peer.pending = None;
        peer.timers.on_handshake_complete();
        peer.endpoint = Some(d.from);
        peer.handshake_rx_bytes += d.len as u64;
        let public = peer.public_key;
        self.indices.set(keys.local_index, IndexUse::Session(id));
        self.install(id, &keys, d.from, now);
        self.counters.initiator_completed += 1;
        tracing::info!(peer = %public, endpoint = %d.from, "handshake completed (we initiated)");
    }

    pub(super) fn take_cookie(&mut self, reply: &CookieReply<'_>, now: Instant) {
        let Some(IndexUse::Pending(id)) = self.indices.get(reply.receiver) else {
            self.counters.unexpected_index += 1;
            return;
        };
        let Some(peer) = self.peers.get_mut(id) else {
            return;
        };
        match peer.jar().consume(reply, now) {
            Ok(()) => {
                peer.handshake_rx_bytes += proto::constants::COOKIE_REPLY_LEN as u64;
                self.counters.cookie_replies_received += 1;
            }
            Err(_) => self.counters.bad_cookie += 1,
        }
    }

    /// Sends an initiation to `id` if it has an endpoint and the rate limit allows.
    pub(super) fn initiate(&mut self, id: PeerId, now: Instant, retry: bool) {
        let jitter = self.jitter();
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
        if !retry && (!peer.timers.can_initiate(now) || peer.timers.is_pending()) {
            return;
        }
        if let Some(old) = peer.pending.take() {
            self.indices.free(old.local_index);
        }
        let index = self
            .indices
            .allocate(owner, IndexUse::Pending(id), &mut self.rng);
        let Ok((state, mut message)) = handshake::create_initiation(
            &identity.local,
            &keys.remote,
            index,
            stamp,
            &mut self.rng,
        ) else {
            self.indices.free(index);
            return;
        };
        peer.jar().stamp(&mut message, now);
        peer.pending = Some(Box::new(state));
        peer.handshake_tx_bytes += message.len() as u64;
        peer.timers.on_initiation_sent(now, jitter, retry);
        self.counters.initiations_sent += 1;
        self.transmit(owner, (endpoint, None), &message);
        tracing::debug!(peer = id, %endpoint, retry, "initiation sent");
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
        let due: Vec<(PeerId, HandshakeAction)> = self
            .peers
            .iter_mut()
            .filter(|p| p.timers.next_deadline().is_some_and(|d| d <= now))
            .map(|p| (p.id, p.timers.poll(now)))
            .collect();
        for (id, action) in due {
            match action {
                HandshakeAction::Retransmit => self.initiate(id, now, true),
                HandshakeAction::GiveUp => {
                    if let Some(p) = self.peers.get_mut(id) {
                        if let Some(pending) = p.pending.take() {
                            self.indices.free(pending.local_index);
                        }
                        tracing::info!(peer = %p.public_key, "handshake did not complete; giving up");
                    }
                    self.send_to_owner(id, ToWorker::HandshakeGaveUp { peer: id });
                }
                HandshakeAction::Wait => {}
            }
        }
    }
}
