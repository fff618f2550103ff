//! Handshakes that reach the control-plane thread: admitting initiations (MACs, replays, fair
//! share, cookie replies), finishing the responses the responder threads made, and passing
//! responses and cookie replies to our own initiations on (`initiations`). Each completed
//! handshake becomes a session installed in the
//! worker that owns the peer, and the response leaves through that same worker, after the
//! install in its queue: the initiator's first data may follow the response within
//! microseconds, and must find its session there. (Cookie replies create no session and
//! leave through the worker that received the initiation.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::TryRecvError;
use datapath::io::LinkPath;
use datapath::messages::{HandshakeDatagram, ToWorker};
use datapath::route::PeerId;
use proto::constants::INITIATION_LEN;
use proto::cookie::MacVerdict;
use proto::handshake::{self, SessionKeys};
use proto::session::Session;
use proto::wire::{Initiation, Message};

use super::indices::IndexUse;
use super::{Closed, ControlPlane, UNDER_LOAD_DEPTH};
use crate::admission::{Refused, SourceKey};
use crate::events::TunnelEvent;
use crate::responders::wireguard::{Answer, Job};
use crate::responders::{Outcome, Unanswered};

/// Handshake messages handled per wake-up before checking other inputs.
const BATCH: usize = 256;

impl ControlPlane {
    /// Handles the handshake messages queued by the workers, up to a batch, then feeds the
    /// responders; how many there were. Err if every worker is gone.
    pub(super) fn on_handshakes(&mut self, now: Instant) -> Result<usize, Closed> {
        let mut handled = 0;
        while handled < BATCH {
            match self.channels.handshakes.try_recv() {
                Ok(d) => self.on_handshake(d, now),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(Closed),
            }
            handled += 1;
        }
        if handled > 0 {
            self.feed_responders();
        }
        Ok(handled)
    }

    /// Takes the responder threads' outcomes, then feeds them more.
    pub(super) fn on_outcomes(&mut self, outcomes: Vec<Outcome>, now: Instant) {
        self.responders.returned(outcomes.len());
        for outcome in outcomes {
            match outcome {
                Outcome::Answered(answer) => self.finish_response(*answer, now),
                Outcome::Dropped(why, from, proven) => {
                    self.count_unanswered(why);
                    self.charge_failure(why, SourceKey::of(from), proven, now);
                }
            }
        }
        self.feed_responders();
    }

    /// Counts a failed initiation against its source (see `Admission::charge_failure`). A
    /// replayed timestamp is never charged to a proven source: a captured initiation can be
    /// resent, MAC2 and all, by whoever saw it. Without a private key nothing is the
    /// source's fault.
    fn charge_failure(&mut self, why: Unanswered, source: SourceKey, proven: bool, now: Instant) {
        match (why, proven) {
            (Unanswered::NoPrivateKey, _) | (Unanswered::Replayed, true) => {}
            _ => self.admission.charge_failure(source, proven, now),
        }
    }

    /// Hands waiting initiations to the responder threads, as far as they have room.
    fn feed_responders(&mut self) {
        let room = self.responders.room();
        if room == 0 || self.admission.waiting() == 0 {
            return;
        }
        let jobs = self.admission.take(room);
        self.responders.submit(jobs);
    }

    fn count_unanswered(&mut self, why: Unanswered) {
        let c = &mut self.counters;
        match why {
            Unanswered::NoPrivateKey => c.no_private_key += 1,
            Unanswered::BadStatic => c.bad_static += 1,
            Unanswered::UnknownPeer => c.unknown_peer += 1,
            Unanswered::Malformed | Unanswered::BadHandshake | Unanswered::Internal => {
                c.bad_handshake += 1
            }
            Unanswered::Replayed => c.replayed_initiation += 1,
            Unanswered::TooSoon => c.initiation_flood += 1,
        }
    }

    /// Sends `message` to `to` from `worker`, the way `link` says where the message being
    /// answered came in (AF_XDP: no neighbour lookup for a reply).
    pub(super) fn transmit(
        &mut self,
        worker: usize,
        (to, link): (SocketAddr, Option<LinkPath>),
        message: &[u8],
    ) {
        let mut bytes = [0u8; INITIATION_LEN];
        let len = message.len().min(INITIATION_LEN);
        bytes[..len].copy_from_slice(&message[..len]);
        self.queue_for(
            worker,
            ToWorker::Transmit {
                to,
                link,
                len,
                bytes,
            },
        );
    }

    fn on_handshake(&mut self, d: HandshakeDatagram, now: Instant) {
        let Some(identity) = self.identity.as_ref() else {
            self.counters.no_private_key += 1;
            return;
        };
        let bytes = d.message();
        let verdict = identity.checker.verify(bytes, d.from, now);
        match Message::parse(bytes) {
            Ok(Message::Initiation(init)) => match verdict {
                MacVerdict::BadMac1 => self.counters.bad_mac1 += 1,
                _ => self.admit(d, &init, verdict == MacVerdict::Mac2Valid, now),
            },
            Ok(Message::Response(resp)) => match verdict {
                MacVerdict::BadMac1 => self.counters.bad_mac1 += 1,
                MacVerdict::Mac1Only if self.admission.waiting() > UNDER_LOAD_DEPTH => {
                    self.send_cookie(&d, resp.sender, now)
                }
                _ => self.complete(&d, &resp, now),
            },
            Ok(Message::CookieReply(reply)) => self.take_cookie(&reply, now),
            // Workers forward only well-sized handshake types; anything else is a bug upstream.
            Ok(Message::Transport(_)) | Err(_) => {}
        }
    }

    /// Queues an initiation with a valid MAC1 for the responders, unless it is an exact replay
    /// (dropped: it costs nothing, so it is not held against its source, which may be spoofed)
    /// or its source is refused: it has spent its allowance of failed initiations, or is over
    /// its share of the backlog, or the backlog is full. Sources that proved their address
    /// (`proven`: MAC2 valid) wait in a queue of their own, served first; so a flood from
    /// spoofed addresses cannot keep out a client that answered a cookie. A refused unproven
    /// source gets a cookie reply; a refused proven one is dropped.
    fn admit(&mut self, d: HandshakeDatagram, init: &Initiation<'_>, proven: bool, now: Instant) {
        self.counters.initiations_received += 1;
        let job = Job {
            datagram: d,
            proven,
        };
        let source = SourceKey::of(d.from);
        let c = &mut self.counters;
        match self
            .admission
            .offer(source, proven, init.ephemeral, job, now)
        {
            Ok(()) => return,
            Err(Refused::Replay) => {
                c.replayed_initiation += 1;
                return;
            }
            Err(Refused::FailingSource) => c.initiations_failing_source += 1,
            Err(Refused::OverShare) => c.initiations_over_share += 1,
            Err(Refused::BacklogFull) => c.initiations_backlog_full += 1,
        }
        if proven {
            self.counters.rate_limited += 1;
        } else {
            self.send_cookie(&d, init.sender, now);
        }
    }

    fn send_cookie(&mut self, d: &HandshakeDatagram, sender: u32, now: Instant) {
        let Some(identity) = self.identity.as_mut() else {
            return;
        };
        let reply = identity
            .checker
            .reply(d.message(), sender, d.from, now, &mut self.rng);
        self.counters.cookie_replies_sent += 1;
        self.transmit(d.worker, (d.from, d.link), &reply);
    }

    /// Sends a response a responder thread made: gives it an index and MACs, installs the
    /// session, transmits. Dropped if the peer changed or went while it was being made.
    fn finish_response(&mut self, answer: Answer, now: Instant) {
        let Answer {
            datagram: d,
            peer: keys,
            local,
            mut response,
            keys: mut session,
        } = answer;
        let id = keys.id;
        let owner = self.owner(id);
        let same_identity = self
            .identity
            .as_ref()
            .is_some_and(|i| Arc::ptr_eq(&i.local, &local));
        let Some(peer) = self.peers.get_mut(id) else {
            self.counters.stale_answer += 1;
            return;
        };
        if !same_identity || !peer.keys.as_ref().is_some_and(|k| Arc::ptr_eq(k, &keys)) {
            self.counters.stale_answer += 1;
            return;
        }
        let index = self
            .indices
            .allocate(owner, IndexUse::Session(id), &mut self.rng);
        handshake::assign_response_index(&mut response, &mut session, index);
        peer.endpoint = Some(d.from);
        peer.handshake_rx_bytes += d.len as u64;
        peer.handshake_tx_bytes += response.len() as u64;
        peer.jar().stamp(&mut response, now);
        let public = peer.public_key;
        // Install, then answer through the owner's queue, so the owner has the session before
        // the response is on the wire: the initiator's first data follows it at once. (Sent
        // through the worker that received the initiation, the response could overtake the
        // install and the first packets be dropped as unknown.)
        self.install(id, &session, d.from, now);
        self.transmit(owner, (d.from, d.link), &response);
        self.counters.responses_sent += 1;
        tracing::debug!(peer = %public, from = %d.from, "handshake answered");
    }

    /// Hands a new session to the worker that owns peer `id`.
    pub(super) fn install(
        &mut self,
        id: PeerId,
        keys: &SessionKeys,
        endpoint: SocketAddr,
        now: Instant,
    ) {
        let new_tunnel = self.tunnels.insert(id, now).is_none();
        if let Some(p) = self.peers.get_mut(id) {
            p.session_index = Some(keys.local_index);
            if new_tunnel {
                self.channels.events_out.publish(TunnelEvent::Up {
                    public_key: p.public_key,
                    endpoint,
                    receiver_index: keys.local_index,
                });
            }
        }
        let session = Box::new(Session::new(keys, now));
        self.send_to_owner(
            id,
            ToWorker::InstallSession {
                peer: id,
                session,
                endpoint,
            },
        );
    }
}
