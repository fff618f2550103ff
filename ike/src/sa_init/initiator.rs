//! The initiator's IKE_SA_INIT (the tests and the loadtest's simulated users): the request,
//! retried with a cookie or another group when the responder asks, and the response read
//! into the same half-open SA the responder holds.

use ring::rand::SecureRandom;

use super::{
    first_notify, init_message, notifies_of, random, Endpoints, HalfOpen, NONCE_LEN, NONCE_LENS,
    SIGNATURE_HASHES,
};
use crate::dh::{ke_body, read_ke, DhError, KeyExchange};
use crate::error::ParseError;
use crate::header::ExchangeType;
use crate::keys::derive_ike_keys;
use crate::message::Message;
use crate::nat::{nat_finding, nat_hash};
use crate::notify::{Notify, NotifyType};
use crate::payloads::{Payload, PayloadType};
use crate::proposals::{read_sa_answer, write_sa, Proposal, ProtocolId};
use crate::suite::{choose, DhGroup, Policy};

/// An IKE_SA_INIT request on its way.
#[derive(Debug)]
pub struct InitiatorInit {
    spi_i: [u8; 8],
    ni: [u8; NONCE_LEN],
    ke: KeyExchange,
    offer: Vec<Proposal>,
    policy: Policy,
    ends: Endpoints,
    /// The responder's cookie, once asked for: every later request carries it.
    cookie: Option<Vec<u8>>,
    /// The request to send (again, on a retransmission).
    pub request: Vec<u8>,
}

/// What the response says.
#[derive(Debug)]
pub enum InitReply {
    /// The IKE SA is half-open: IKE_AUTH follows.
    Established(Box<HalfOpen>),
    /// Send the request again with this cookie (`retry_with_cookie`).
    RetryWithCookie(Vec<u8>),
    /// Send the request again with a KE of this group (`retry_with_group`).
    RetryWithGroup(DhGroup),
    /// The responder refused with this error.
    Refused(NotifyType),
}

/// Where `InitiatorInit::advance` left a login.
#[derive(Debug)]
pub enum Advance {
    /// The IKE SA is half-open: IKE_AUTH follows.
    Established(Box<HalfOpen>),
    /// Send this request (rebuilt with the responder's cookie or group).
    Again(Box<InitiatorInit>),
    /// The responder refused with this error.
    Refused(NotifyType),
    /// Not a usable response: the request as it was, and why.
    NotTaken(Box<InitiatorInit>, InitiatorError),
    /// The response was ours and unusable after the request was spent.
    Failed(InitiatorError),
}

/// A response that cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitiatorError {
    /// Not a readable message.
    #[error("malformed: {0}")]
    Malformed(#[from] ParseError),
    /// Not the response to this request.
    #[error("not the response to this request")]
    NotOurs,
    /// The responder chose what was not offered, or left out what it must send.
    #[error("the response is not acceptable: {0}")]
    Unacceptable(&'static str),
    /// The key exchange failed.
    #[error("key exchange: {0}")]
    KeyExchange(#[from] DhError),
}

impl InitiatorInit {
    /// A request offering `offer` (what `policy` accepts back) with a KE of `group`.
    pub fn start(
        offer: Vec<Proposal>,
        policy: Policy,
        group: DhGroup,
        ends: Endpoints,
        rng: &dyn SecureRandom,
    ) -> Result<Self, InitiatorError> {
        let mut spi_i: [u8; 8] = random(rng)?;
        spi_i[0] |= 1;
        let mut init = Self {
            spi_i,
            ni: random(rng)?,
            ke: KeyExchange::start(group, rng)?,
            offer,
            policy,
            ends,
            cookie: None,
            request: Vec::new(),
        };
        init.request = init.build(None)?;
        Ok(init)
    }

    /// The request, with the COOKIE notify first when there is one (RFC 7296 §2.6).
    fn build(&self, cookie: Option<&[u8]>) -> Result<Vec<u8>, ParseError> {
        let sa = write_sa(&self.offer);
        let ke = ke_body(self.ke.group(), self.ke.public());
        let zero = [0u8; 8];
        // Claiming a NAT: the hash of an address no socket of ours has (port 0), so the
        // responder sees a mismatch, the same one in a retry with a cookie.
        let source = match self.ends.force_nat_t {
            true => std::net::SocketAddr::new(self.ends.local.ip(), 0),
            false => self.ends.local,
        };
        let src = nat_hash(&self.spi_i, &zero, source);
        let dst = nat_hash(&self.spi_i, &zero, self.ends.remote);
        let cookie = cookie.map(|c| Notify::new(NotifyType::COOKIE, c).body());
        let notifies = [
            Notify::new(NotifyType::NAT_DETECTION_SOURCE_IP, &src).body(),
            Notify::new(NotifyType::NAT_DETECTION_DESTINATION_IP, &dst).body(),
            // No IKEV2_FRAGMENTATION_SUPPORTED: this initiator reads only whole responses.
            Notify::new(NotifyType::SIGNATURE_HASH_ALGORITHMS, &SIGNATURE_HASHES).body(),
        ];
        let mut payloads = Vec::new();
        if let Some(c) = &cookie {
            payloads.push(Payload::plain(PayloadType::NOTIFY, c));
        }
        payloads.push(Payload::plain(PayloadType::SA, &sa));
        payloads.push(Payload::plain(PayloadType::KE, &ke));
        payloads.push(Payload::plain(PayloadType::NONCE, &self.ni));
        payloads.extend(
            notifies
                .iter()
                .map(|n| Payload::plain(PayloadType::NOTIFY, n)),
        );
        init_message((self.spi_i, zero), false, &payloads)
    }

    /// The same request (SPI, nonce, KE) with the responder's cookie.
    pub fn retry_with_cookie(mut self, cookie: &[u8]) -> Result<Self, InitiatorError> {
        self.cookie = Some(cookie.to_vec());
        self.request = self.build(Some(cookie))?;
        Ok(self)
    }

    /// The request with a KE of the group the responder chose (and the cookie, if one was
    /// asked for).
    pub fn retry_with_group(
        mut self,
        group: DhGroup,
        rng: &dyn SecureRandom,
    ) -> Result<Self, InitiatorError> {
        self.ke = KeyExchange::start(group, rng)?;
        self.request = self.build(self.cookie.as_deref())?;
        Ok(self)
    }

    /// Whether `bytes` reads as the response to this request (checked before `on_response`
    /// consumes the request: a stray datagram then costs nothing).
    pub fn is_response_to(&self, bytes: &[u8]) -> bool {
        crate::header::Header::parse(bytes).is_ok_and(|h| {
            h.spi_i == self.spi_i
                && h.exchange == ExchangeType::IKE_SA_INIT
                && h.flags.is_response()
                && !h.flags.is_initiator()
                && h.message_id == 0
        })
    }

    /// What the response `bytes` asks for, without taking the request; `None`: it accepts,
    /// and the SA is to be made.
    fn read(&self, bytes: &[u8]) -> Result<Option<InitReply>, InitiatorError> {
        let m = Message::parse(bytes)?;
        if !self.is_response_to(bytes) {
            return Err(InitiatorError::NotOurs);
        }
        let notifies = notifies_of(&m)?;
        if let Some(cookie) = first_notify(&notifies, NotifyType::COOKIE) {
            return Ok(Some(InitReply::RetryWithCookie(cookie.to_vec())));
        }
        if let Some(data) = first_notify(&notifies, NotifyType::INVALID_KE_PAYLOAD) {
            let group = data
                .get(..2)
                .and_then(|g| DhGroup::from_id(u16::from_be_bytes([g[0], g[1]])))
                .ok_or(InitiatorError::Unacceptable(
                    "INVALID_KE_PAYLOAD names no group",
                ))?;
            // Only a group of the offer: anything else would be the responder's choice.
            let offered = self
                .offer
                .iter()
                .flat_map(|p| &p.transforms)
                .any(|t| t.kind == crate::proposals::TransformType::DH && t.id == group.id());
            if !offered {
                return Err(InitiatorError::Unacceptable(
                    "INVALID_KE_PAYLOAD names a group not offered",
                ));
            }
            // The group already sent: a retry would only be refused again.
            if group == self.ke.group() {
                return Err(InitiatorError::Unacceptable(
                    "INVALID_KE_PAYLOAD names the group already sent",
                ));
            }
            return Ok(Some(InitReply::RetryWithGroup(group)));
        }
        if let Some(e) = notifies.iter().find(|n| n.kind.is_error()) {
            return Ok(Some(InitReply::Refused(e.kind)));
        }
        Ok(None)
    }

    /// Reads the response to this request.
    pub fn on_response(self, bytes: &[u8]) -> Result<InitReply, InitiatorError> {
        match self.read(bytes)? {
            None => {
                let m = Message::parse(bytes)?;
                let notifies = notifies_of(&m)?;
                self.establish(&m, &notifies, bytes)
            }
            Some(other) => Ok(other),
        }
    }

    /// Reads the response `bytes` and goes on: the half-open SA; this request again, rebuilt
    /// with the cookie or group the responder asked for; a refusal; or, for a datagram that
    /// is no usable response, this request unchanged.
    pub fn advance(self, bytes: &[u8], rng: &dyn SecureRandom) -> Advance {
        match self.read(bytes) {
            Err(e) => Advance::NotTaken(Box::new(self), e),
            Ok(Some(InitReply::RetryWithCookie(c))) => match self.retry_with_cookie(&c) {
                Ok(again) => Advance::Again(Box::new(again)),
                Err(e) => Advance::Failed(e),
            },
            Ok(Some(InitReply::RetryWithGroup(g))) => match self.retry_with_group(g, rng) {
                Ok(again) => Advance::Again(Box::new(again)),
                Err(e) => Advance::Failed(e),
            },
            Ok(Some(InitReply::Refused(why))) => Advance::Refused(why),
            Ok(Some(InitReply::Established(sa))) => Advance::Established(sa),
            Ok(None) => match self.on_response(bytes) {
                Ok(InitReply::Established(sa)) => Advance::Established(sa),
                Ok(_) => Advance::Failed(InitiatorError::Unacceptable("an accepting response")),
                Err(e) => Advance::Failed(e),
            },
        }
    }

    /// The half-open SA from an accepting response.
    fn establish(
        self,
        m: &Message<'_>,
        notifies: &[Notify<'_>],
        bytes: &[u8],
    ) -> Result<InitReply, InitiatorError> {
        let unacceptable = InitiatorError::Unacceptable;
        let sa = m.find(PayloadType::SA).ok_or(unacceptable("no SA"))?;
        let answer = vec![read_sa_answer(sa.body).map_err(|_| unacceptable("unreadable SA"))?];
        let offered = |p: &Proposal| {
            self.offer.iter().any(|o| {
                o.number == p.number && p.transforms.iter().all(|t| o.transforms.contains(t))
            })
        };
        if answer.len() != 1 || !offered(&answer[0]) {
            return Err(unacceptable("an SA that was not offered"));
        }
        let suite = choose(&answer, ProtocolId::IKE, &self.policy)
            .map_err(|_| unacceptable("an SA outside the policy"))?
            .suite;
        let (Some(group), Some(prf)) = (suite.dh, suite.prf) else {
            return Err(unacceptable("no DH group or PRF"));
        };
        let ke = m.find(PayloadType::KE).ok_or(unacceptable("no KE"))?;
        let (ke_group, theirs) = read_ke(ke.body)?;
        if ke_group != group.id() || group != self.ke.group() {
            return Err(unacceptable("a KE of another group"));
        }
        let nr = m
            .find(PayloadType::NONCE)
            .map(|p| p.body)
            .filter(|n| NONCE_LENS.contains(&n.len()))
            .ok_or(unacceptable("no nonce of 16 to 256 bytes"))?;
        let shared = self.ke.finish(theirs)?;
        let spis = (&self.spi_i, &m.header.spi_r);
        let keys = derive_ike_keys(prf, (&self.ni, nr), &shared, spis, suite.key_lengths())
            .map_err(|_| unacceptable("key lengths beyond prf+"))?;
        let sources: Vec<&[u8]> = notifies
            .iter()
            .filter(|n| n.kind == NotifyType::NAT_DETECTION_SOURCE_IP)
            .map(|n| n.data)
            .collect();
        let destination = first_notify(notifies, NotifyType::NAT_DETECTION_DESTINATION_IP);
        let nat = nat_finding(
            spis,
            &sources,
            destination,
            self.ends.remote,
            self.ends.local,
        );
        let has = |k| first_notify(notifies, k).is_some();
        Ok(InitReply::Established(Box::new(HalfOpen {
            spi_i: self.spi_i,
            spi_r: m.header.spi_r,
            suite,
            keys,
            ni: self.ni.to_vec(),
            nr: nr.to_vec(),
            request: self.request,
            response: bytes.to_vec(),
            nat,
            fragmentation: has(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED),
            signature_hashes: has(NotifyType::SIGNATURE_HASH_ALGORITHMS),
        })))
    }
}
