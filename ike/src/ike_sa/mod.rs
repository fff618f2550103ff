//! An IKE SA as the responder keeps it, from the end of IKE_SA_INIT to its end (RFC 7296
//! §1.4, §2.1–2.4): the IKE_AUTH that brings it up; each request of the peer answered once,
//! in message-ID order, and its retransmissions answered again from the kept response;
//! INFORMATIONAL requests (a liveness check, a Delete) answered; and this side's own liveness
//! check when the peer has been quiet, retransmitted with a doubling timeout until the peer is
//! declared dead. Bytes and `now` go in; messages, events and a deadline come out.

use std::time::{Duration, Instant};

use ring::rand::SecureRandom;

use crate::certs::CertAuth;
use crate::delete::Delete;
use crate::fragments::{authentic_first_fragment, fragment_number, Reassembly};
use crate::header::{ExchangeType, Header};
use crate::identity::Identity;
use crate::ike_auth::{
    respond_auth_opened, AuthAnswer, AuthRefusal, ChildSa, EapServer, Established, Users,
};
use crate::notify::{Notify, NotifyType};
use crate::payloads::{Payload, PayloadType};
use crate::protected::{self, Opened, Protected, ProtectedError};
use crate::sa_init::HalfOpen;
use crate::suite::Policy;

/// How long a refused SA stays to answer retransmissions of its IKE_AUTH.
const REFUSED_KEPT: Duration = Duration::from_secs(10);

/// A digest of a request, to tell its retransmission from another message with its ID.
fn request_digest(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A Notify payload of `kind` with no data, as a (type, body) pair for a response.
fn notify(kind: NotifyType) -> (PayloadType, Vec<u8>) {
    (PayloadType::NOTIFY, Notify::new(kind, &[]).body())
}

/// The SA's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a half-open SA waits for its IKE_AUTH.
    pub auth_within: Duration,
    /// How long the peer may be quiet before this side checks it is alive.
    pub dpd_after: Duration,
    /// The first retransmission timeout of this side's requests (doubled each time).
    pub retransmit: Duration,
    /// Transmissions of a request before the peer is declared dead.
    pub tries: u32,
}

impl Default for Timing {
    /// 30 s for IKE_AUTH and of quiet; a request sent 5 times, 2 s then doubling (the peer is
    /// dead 62 s after the first check).
    fn default() -> Self {
        Self {
            auth_within: Duration::from_secs(30),
            dpd_after: Duration::from_secs(30),
            retransmit: Duration::from_secs(2),
            tries: 5,
        }
    }
}

/// What the responder needs to answer an IKE_AUTH: where users are found, its own identity,
/// the ESP policy, and the SPI the CHILD_SA will be received on (the caller's: it names the
/// worker that owns it).
pub struct AuthContext<'a> {
    /// The users.
    pub users: &'a dyn Users,
    /// This server's identity.
    pub local: &'a Identity,
    /// The ESP proposals taken.
    pub esp: &'a Policy,
    /// The IKE proposals taken (a rekey of the IKE SA chooses among them).
    pub ike: &'a Policy,
    /// The inbound SPI of the next CHILD_SA (IKE_AUTH's, or a rekey's).
    pub child_spi: [u8; 4],
    /// Certificate authentication, when configured.
    pub certs: Option<&'a CertAuth>,
    /// The wall-clock time, Unix seconds (certificates' validity is judged at it).
    pub unix_secs: u64,
}

/// Why an SA ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// The peer deleted it.
    Deleted,
    /// The peer stopped answering liveness checks.
    Dead,
    /// No IKE_AUTH came in time.
    AuthTimeout,
    /// IKE_AUTH was refused (the refusal was answered).
    AuthFailed,
    /// This side deleted it.
    Closed,
}

/// What the SA asks of its caller.
#[derive(Debug)]
pub enum SaEvent {
    /// Send these bytes to the peer.
    Send(Vec<u8>),
    /// Authenticated: the user and the first CHILD_SA, to install.
    Up(Box<Established>),
    /// IKE_AUTH refused, and the refusal answered (the SA then goes down).
    AuthRefused(AuthRefusal),
    /// A message was dropped (counted by this reason).
    Dropped(&'static str),
    /// A fragment of a request was kept; the request is not whole yet (RFC 7383).
    FragmentKept,
    /// A retransmitted request was answered again.
    Retransmission,
    /// The peer moved the SA to the addresses its request came by (MOBIKE).
    AddressesUpdated,
    /// A message from the peer authenticated: the peer is where it came from (RFC 7296
    /// §2.23 moves an SA only on such a message).
    Authentic,
    /// The peer deleted the CHILD_SA this side receives on `spi`.
    ChildDeleted([u8; 4]),
    /// The peer rekeyed the IKE SA: the successor, already up, holds the CHILD_SAs; this SA
    /// stays until the peer deletes it (that end is no user's going down).
    IkeRekeyed(Box<IkeSa>),
    /// The peer rekeyed the CHILD_SA this side receives on `replaces` (or, with `None`, made
    /// one again after the last expired): install `child` (an old one stays until the peer
    /// deletes it).
    ChildRekeyed {
        /// This side's inbound SPI of the SA replaced, if any.
        replaces: Option<[u8; 4]>,
        /// The new CHILD_SA.
        child: Box<ChildSa>,
    },
    /// The SA is over: remove it and everything it installed.
    Down(DownReason),
}

/// Where the SA is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for IKE_AUTH.
    Authenticating,
    /// Authenticated.
    Up,
    /// IKE_AUTH was refused and answered; retransmissions of it are answered again until
    /// the SA is removed.
    Refused { until: Instant },
    /// Rekeyed: its successor carries on; this SA only answers (a retransmission, its own
    /// Delete) until the peer deletes it, or `until`.
    Rekeyed { until: Instant },
    /// Over.
    Down,
}

/// A request of this side on its way.
#[derive(Debug)]
struct Outstanding {
    message_id: u32,
    bytes: Vec<u8>,
    next_at: Instant,
    sent: u32,
}

/// One IKE SA, responder side.
#[derive(Debug)]
pub struct IkeSa {
    keys: HalfOpen,
    phase: Phase,
    timing: Timing,
    /// The message ID the peer's next request must carry.
    peer_next: u32,
    /// The peer's latest request answered (its ID and a digest of its bytes, or of its first
    /// fragment's) and the response's datagrams, for its retransmissions.
    answer: Option<(u32, [u8; 32], Vec<Vec<u8>>)>,
    /// The fragments of the request being put together.
    reassembly: Reassembly,
    /// The digest of that request's first fragment, once in.
    first_fragment: Option<[u8; 32]>,
    /// This side's request waiting for its response.
    ours: Option<Outstanding>,
    /// The message ID of this side's next request.
    our_next: u32,
    /// When the peer last sent something that authenticated (or when the SA began).
    heard: Instant,
    /// Its CHILD_SAs: the current one last, older ones until the peer deletes them.
    children: Vec<ChildRef>,
    /// The first CHILD_SA (its selectors serve one made again after all expired).
    first_child: Option<ChildRef>,
    /// An EAP conversation under way in IKE_AUTH.
    eap: Option<Box<EapServer>>,
    /// Both sides speak MOBIKE: the peer may move the SA with UPDATE_SA_ADDRESSES.
    mobike: bool,
    started: Instant,
}

impl IkeSa {
    /// The SA IKE_SA_INIT left half-open at `now`; its next request must be IKE_AUTH.
    pub fn new(keys: HalfOpen, timing: Timing, now: Instant) -> Self {
        Self {
            keys,
            phase: Phase::Authenticating,
            timing,
            peer_next: crate::ike_auth::AUTH_MESSAGE_ID,
            answer: None,
            reassembly: Reassembly::default(),
            first_fragment: None,
            ours: None,
            our_next: 0,
            heard: now,
            started: now,
            children: Vec::new(),
            first_child: None,
            eap: None,
            mobike: false,
        }
    }

    /// The SA that replaces this one after a rekey of the IKE SA: new keys and SPIs, message
    /// IDs from 0, this SA's CHILD_SAs, up from now. This one only answers from then on.
    fn successor(&mut self, keys: HalfOpen, now: Instant) -> IkeSa {
        self.phase = Phase::Rekeyed {
            until: now + self.timing.auth_within,
        };
        self.ours = None;
        IkeSa {
            keys,
            phase: Phase::Up,
            timing: self.timing,
            peer_next: 0,
            answer: None,
            reassembly: Reassembly::default(),
            first_fragment: None,
            ours: None,
            our_next: 0,
            heard: self.heard,
            started: self.started,
            children: std::mem::take(&mut self.children),
            first_child: self.first_child.take(),
            eap: None,
            mobike: self.mobike,
        }
    }

    /// The SPIs (initiator's, responder's).
    pub fn spis(&self) -> ([u8; 8], [u8; 8]) {
        (self.keys.spi_i, self.keys.spi_r)
    }

    /// The SA's keys and what IKE_SA_INIT agreed.
    pub fn keys(&self) -> &HalfOpen {
        &self.keys
    }

    /// Authenticated and not over.
    pub fn is_up(&self) -> bool {
        matches!(self.phase, Phase::Up)
    }

    /// When `poll` next has something to do (`None` once over).
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Authenticating => Some(self.started + self.timing.auth_within),
            Phase::Up => Some(match &self.ours {
                Some(o) => o.next_at,
                None => self.heard + self.timing.dpd_after,
            }),
            Phase::Refused { until } | Phase::Rekeyed { until } => Some(until),
            Phase::Down => None,
        }
    }

    /// A message from the peer, received at `now`.
    pub fn on_message(
        &mut self,
        bytes: &[u8],
        now: Instant,
        ctx: &AuthContext<'_>,
        rng: &dyn SecureRandom,
    ) -> Vec<SaEvent> {
        if self.phase == Phase::Down {
            return vec![SaEvent::Dropped("the SA is over")];
        }
        let Ok(h) = Header::parse(bytes) else {
            return vec![SaEvent::Dropped("unreadable header")];
        };
        if !h.flags.is_initiator() {
            return vec![SaEvent::Dropped("sent as the responder")];
        }
        if h.flags.is_response() {
            return self.on_response(bytes, h, now);
        }
        let fragmented = h.next_payload == PayloadType::SKF.0;
        if let Some((id, digest, response)) = &self.answer {
            // RFC 7296 §2.1: the same request again is a retransmission, answered with the
            // same response (its work is not redone). Only the same bytes count: a packet
            // that merely reuses the ID proves nothing and moves nothing. A fragmented one is
            // answered on its first fragment alone (RFC 7383 §2.6.1), checked by its ICV: the
            // sender may have cut it smaller this time.
            if h.message_id == *id {
                if fragmented {
                    // Its first fragment, authentic, however the sender cut it this time.
                    if fragment_number(bytes) != Some(1) {
                        return vec![SaEvent::Dropped("a fragment of an answered request")];
                    }
                    if !authentic_first_fragment(&self.keys, bytes, true) {
                        return vec![SaEvent::Dropped("bad ICV")];
                    }
                } else if *digest != request_digest(bytes) {
                    return vec![SaEvent::Dropped("another request with an answered ID")];
                }
                let mut again: Vec<SaEvent> = response.iter().cloned().map(SaEvent::Send).collect();
                again.push(SaEvent::Retransmission);
                return again;
            }
        }
        if h.message_id != self.peer_next {
            return vec![SaEvent::Dropped("message ID outside the window")];
        }
        match self.phase {
            Phase::Authenticating if h.exchange != ExchangeType::IKE_AUTH => {
                return vec![SaEvent::Dropped("a request before IKE_AUTH")]
            }
            Phase::Refused { .. } => return vec![SaEvent::Dropped("the SA was refused")],
            Phase::Down => return Vec::new(),
            _ => {}
        }
        let (opened, digest) = match self.open_request(bytes, fragmented) {
            Ok(r) => r,
            Err(events) => return events,
        };
        if self.phase == Phase::Authenticating {
            self.authenticate(&opened, digest, now, ctx, rng)
        } else {
            self.on_request(&opened, digest, now, ctx, rng)
        }
    }

    /// IKE_AUTH, answered by `respond_auth`'s rules (EAP's, once a conversation is under
    /// way: several IKE_AUTH exchanges).
    fn authenticate(
        &mut self,
        request: &Opened,
        digest: [u8; 32],
        now: Instant,
        ctx: &AuthContext<'_>,
        rng: &dyn SecureRandom,
    ) -> Vec<SaEvent> {
        let answer = match self.eap.take() {
            Some(eap) => eap.step(&self.keys, request, ctx, rng),
            None => respond_auth_opened(&self.keys, request, ctx, rng),
        };
        match answer {
            AuthAnswer::Continue { response, eap } => {
                self.eap = Some(eap);
                self.heard = now;
                let sent = self.answered(digest, response, rng);
                let mut events = vec![SaEvent::Authentic];
                events.extend(sent.into_iter().map(SaEvent::Send));
                events
            }
            AuthAnswer::Accepted {
                established,
                response,
            } => {
                self.children.push(ChildRef::of(&established.child));
                self.first_child = Some(ChildRef::of(&established.child));
                self.mobike = established.mobike;
                self.phase = Phase::Up;
                self.heard = now;
                let sent = self.answered(digest, response, rng);
                let mut events = vec![SaEvent::Authentic];
                events.extend(sent.into_iter().map(SaEvent::Send));
                events.push(SaEvent::Up(established));
                events
            }
            AuthAnswer::Refused {
                response: Some(response),
                why,
            } => {
                // Kept a while so a lost refusal is answered again; removed at `until`.
                self.phase = Phase::Refused {
                    until: now + REFUSED_KEPT,
                };
                let sent = self.answered(digest, response, rng);
                let mut events = vec![SaEvent::Authentic];
                events.extend(sent.into_iter().map(SaEvent::Send));
                events.push(SaEvent::AuthRefused(why));
                events
            }
            AuthAnswer::Refused {
                response: None,
                why: AuthRefusal::BadIcv,
            } => vec![SaEvent::Dropped("bad ICV")],
            AuthAnswer::Refused { response: None, .. } => {
                vec![SaEvent::Dropped("an IKE_AUTH that cannot be answered")]
            }
        }
    }

    /// Keeps the response to the request just handled (whose digest is `digest`) for its
    /// retransmissions; returns the datagrams to send.
    fn answered(
        &mut self,
        digest: [u8; 32],
        response: Vec<u8>,
        rng: &dyn SecureRandom,
    ) -> Vec<Vec<u8>> {
        let sent = self.datagrams(response, rng);
        self.answer = Some((self.peer_next, digest, sent.clone()));
        self.peer_next = self.peer_next.wrapping_add(1);
        sent
    }

    /// A request of an SA that is up.
    fn on_request(
        &mut self,
        opened: &Opened,
        digest: [u8; 32],
        now: Instant,
        ctx: &AuthContext<'_>,
        rng: &dyn SecureRandom,
    ) -> Vec<SaEvent> {
        self.heard = now;
        let (payloads, mut events) = match opened.what.exchange {
            ExchangeType::INFORMATIONAL => self.informational(opened),
            // A rekeyed SA makes nothing more (RFC 7296 §2.25): its successor does.
            ExchangeType::CREATE_CHILD_SA if matches!(self.phase, Phase::Rekeyed { .. }) => {
                (vec![notify(NotifyType::TEMPORARY_FAILURE)], vec![])
            }
            ExchangeType::CREATE_CHILD_SA => self.create_child(opened, (now, ctx), rng),
            // An exchange not taken here (a second IKE_AUTH, say) is answered, so the peer
            // does not retransmit it until it gives up.
            _ => (vec![notify(NotifyType::INVALID_SYNTAX)], vec![]),
        };
        let out: Vec<Payload<'_>> = payloads
            .iter()
            .map(|(kind, body)| Payload::plain(*kind, body))
            .collect();
        let what = Protected {
            exchange: opened.what.exchange,
            message_id: opened.what.message_id,
            by_initiator: false,
            response: true,
        };
        let Ok(response) = protected::seal(&self.keys, what, &out, rng) else {
            return vec![SaEvent::Dropped("a response that cannot be sealed")];
        };
        let sent = self.answered(digest, response, rng);
        let mut all = vec![SaEvent::Authentic];
        all.extend(sent.into_iter().map(SaEvent::Send));
        all.append(&mut events);
        all
    }

    /// A response to this side's request.
    fn on_response(&mut self, bytes: &[u8], h: Header, now: Instant) -> Vec<SaEvent> {
        let Some(o) = &self.ours else {
            return vec![SaEvent::Dropped("a response to no request")];
        };
        if h.message_id != o.message_id {
            return vec![SaEvent::Dropped("a response to no request")];
        }
        match protected::open(&self.keys, bytes, true) {
            Ok(opened) if opened.what.response => {
                self.ours = None;
                self.heard = now;
                vec![SaEvent::Authentic]
            }
            Ok(_) => vec![SaEvent::Dropped("unreadable response")],
            Err(ProtectedError::BadIcv) => vec![SaEvent::Dropped("bad ICV")],
            Err(_) => vec![SaEvent::Dropped("unreadable response")],
        }
    }

    /// Timers at `now`: the IKE_AUTH wait, the liveness check and its retransmissions.
    pub fn poll(&mut self, now: Instant, rng: &dyn SecureRandom) -> Vec<SaEvent> {
        match self.phase {
            Phase::Authenticating if now >= self.started + self.timing.auth_within => {
                self.phase = Phase::Down;
                vec![SaEvent::Down(DownReason::AuthTimeout)]
            }
            Phase::Up => self.poll_liveness(now, rng),
            Phase::Refused { until } if now >= until => {
                self.phase = Phase::Down;
                vec![SaEvent::Down(DownReason::AuthFailed)]
            }
            Phase::Rekeyed { until } if now >= until => {
                // The peer never deleted it: its successor has long taken over.
                self.phase = Phase::Down;
                vec![SaEvent::Down(DownReason::Closed)]
            }
            _ => Vec::new(),
        }
    }

    fn poll_liveness(&mut self, now: Instant, rng: &dyn SecureRandom) -> Vec<SaEvent> {
        if let Some(o) = &mut self.ours {
            if now < o.next_at {
                return Vec::new();
            }
            if o.sent >= self.timing.tries {
                self.phase = Phase::Down;
                return vec![SaEvent::Down(DownReason::Dead)];
            }
            let wait = self.timing.retransmit.saturating_mul(1 << o.sent.min(16));
            o.sent += 1;
            o.next_at = now + wait;
            return vec![SaEvent::Send(o.bytes.clone())];
        }
        if now < self.heard + self.timing.dpd_after {
            return Vec::new();
        }
        // An empty INFORMATIONAL request: the peer's answer is the proof of life.
        match self.request(ExchangeType::INFORMATIONAL, &[], now, rng) {
            Some(bytes) => vec![SaEvent::Send(bytes)],
            None => vec![SaEvent::Dropped("a liveness check that cannot be sealed")],
        }
    }

    /// This side's request carrying `payloads`, kept for retransmission.
    fn request(
        &mut self,
        exchange: ExchangeType,
        payloads: &[Payload<'_>],
        now: Instant,
        rng: &dyn SecureRandom,
    ) -> Option<Vec<u8>> {
        let what = Protected {
            exchange,
            message_id: self.our_next,
            by_initiator: false,
            response: false,
        };
        let bytes = protected::seal(&self.keys, what, payloads, rng).ok()?;
        self.ours = Some(Outstanding {
            message_id: self.our_next,
            bytes: bytes.clone(),
            next_at: now + self.timing.retransmit,
            sent: 1,
        });
        self.our_next = self.our_next.wrapping_add(1);
        Some(bytes)
    }

    /// Ends the SA from this side (a revoked user, a shutdown): the Delete to send, best
    /// effort (no retransmission: the SA is gone here whatever the peer does; with a liveness
    /// check outstanding it even exceeds the peer's window of one, and may be dropped there).
    pub fn close(&mut self, now: Instant, rng: &dyn SecureRandom) -> Vec<SaEvent> {
        if !self.is_up() {
            self.phase = Phase::Down;
            return vec![SaEvent::Down(DownReason::Closed)];
        }
        let delete = Delete::ike().body();
        let sent = self.request(
            ExchangeType::INFORMATIONAL,
            &[Payload::plain(PayloadType::DELETE, &delete)],
            now,
            rng,
        );
        self.phase = Phase::Down;
        self.ours = None;
        sent.map(SaEvent::Send)
            .into_iter()
            .chain([SaEvent::Down(DownReason::Closed)])
            .collect()
    }
}

mod children;
mod informational;
mod intake;
#[cfg(test)]
mod tests;

use children::ChildRef;
