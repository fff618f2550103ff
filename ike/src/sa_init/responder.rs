//! The responder's IKE_SA_INIT: read the request, ask for a cookie when told to, choose a
//! suite, ask for another KE group when the initiator guessed wrong, else answer with SA, KE,
//! nonce and NAT detection, holding the half-open SA.

use ring::rand::SecureRandom;

use super::{
    first_notify, init_message, notifies_of, random, Endpoints, HalfOpen, NONCE_LEN, NONCE_LENS,
    SIGNATURE_HASHES,
};
use crate::cookie::CookieJar;
use crate::dh::{ke_body, read_ke, DhError, KeyExchange};
use crate::error::ParseError;
use crate::header::{ExchangeType, Flags, Header, HEADER_LEN};
use crate::keys::derive_ike_keys;
use crate::message::Message;
use crate::nat::{nat_finding, nat_hash};
use crate::notify::{Notify, NotifyType};
use crate::payloads::{Payload, PayloadType};
use crate::prf::Prf;
use crate::proposals::{read_sa, write_sa, Proposal, ProtocolId, TransformType};
use crate::suite::{choose, Chosen, DhGroup, Policy, Suite};

/// Why a request created no SA.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitRefusal {
    /// Not a readable IKE message.
    #[error("malformed: {0}")]
    Malformed(#[from] ParseError),
    /// Not an IKE_SA_INIT request as a first message is (a response, a nonzero responder
    /// SPI or message ID, another exchange).
    #[error("not an IKE_SA_INIT request")]
    NotARequest,
    /// A payload it must have is missing or unusable.
    #[error("missing or unusable {0}")]
    Missing(&'static str),
    /// A cookie is needed and the request has none that holds (answered with one).
    #[error("cookie needed")]
    CookieNeeded,
    /// No acceptable proposal (answered with NO_PROPOSAL_CHOSEN).
    #[error("no proposal chosen; offered: {0}")]
    NoProposalChosen(String),
    /// The KE payload is for another group than the one chosen (answered with it).
    #[error("KE payload for group {offered}, {wanted:?} chosen")]
    InvalidKe {
        /// The group the initiator guessed.
        offered: u16,
        /// The group chosen.
        wanted: DhGroup,
    },
    /// The key exchange failed (a bad public value, no randomness).
    #[error("key exchange: {0}")]
    KeyExchange(#[from] DhError),
}

/// The responder's answer to one request.
#[derive(Debug)]
pub enum InitAnswer {
    /// A new half-open SA, whose response is to be sent.
    Accepted(Box<HalfOpen>),
    /// No SA; `reply` (a COOKIE, INVALID_KE_PAYLOAD or NO_PROPOSAL_CHOSEN notify) is sent
    /// if there is one, and `why` counted.
    Refused {
        /// What to send back, if anything.
        reply: Option<Vec<u8>>,
        /// Why.
        why: InitRefusal,
    },
}

/// What the responder takes from a request.
struct Request<'a> {
    header: Header,
    offer: Vec<Proposal>,
    ke_group: u16,
    ke: &'a [u8],
    ni: &'a [u8],
    notifies: Vec<Notify<'a>>,
}

fn read_request(bytes: &[u8]) -> Result<Request<'_>, InitRefusal> {
    let m = Message::parse(bytes)?;
    let h = m.header;
    if h.exchange != ExchangeType::IKE_SA_INIT
        || h.flags.is_response()
        || !h.flags.is_initiator()
        || h.message_id != 0
        || h.spi_r != [0; 8]
        || h.spi_i == [0; 8]
    {
        return Err(InitRefusal::NotARequest);
    }
    let sa = m.find(PayloadType::SA).ok_or(InitRefusal::Missing("SA"))?;
    let offer = read_sa(sa.body).map_err(|_| InitRefusal::Missing("SA"))?;
    let ke = m.find(PayloadType::KE).ok_or(InitRefusal::Missing("KE"))?;
    let (ke_group, ke) = read_ke(ke.body)?;
    let ni = m
        .find(PayloadType::NONCE)
        .map(|p| p.body)
        .filter(|n| NONCE_LENS.contains(&n.len()))
        .ok_or(InitRefusal::Missing("nonce of 16 to 256 bytes"))?;
    let notifies = notifies_of(&m)?;
    Ok(Request {
        header: h,
        offer,
        ke_group,
        ke,
        ni,
        notifies,
    })
}

/// Takes the group of the request's KE payload when the chosen proposal offers it too and the
/// policy accepts it: a client that lists another group first (MODP-2048, say) but sent a
/// Curve25519 key is not sent round an INVALID_KE_PAYLOAD to the slower group.
fn take_sent_group(req: &Request<'_>, chosen: &mut Chosen, policy: &Policy) {
    let Some(sent) = DhGroup::from_id(req.ke_group) else {
        return;
    };
    let offered = req
        .offer
        .iter()
        .find(|p| p.number == chosen.proposal.number)
        .is_some_and(|p| {
            p.transforms
                .iter()
                .any(|t| t.kind == TransformType::DH && t.id == req.ke_group)
        });
    if !offered || !policy.dh.contains(&sent) || chosen.suite.dh == Some(sent) {
        return;
    }
    chosen.suite.dh = Some(sent);
    for t in &mut chosen.proposal.transforms {
        if t.kind == TransformType::DH {
            t.id = req.ke_group;
        }
    }
}

/// UNSUPPORTED_CRITICAL_PAYLOAD with the payload's type, for a request refused because of an
/// unknown payload marked critical (RFC 7296 §2.5); nothing for other refusals.
fn critical_reply(bytes: &[u8], why: &InitRefusal) -> Option<Vec<u8>> {
    let InitRefusal::Malformed(ParseError::UnsupportedCritical(kind)) = why else {
        return None;
    };
    let spi_i = first_request_spi(bytes)?;
    notify_reply(
        spi_i,
        Notify::new(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, &[*kind]),
    )
}

/// The answer to an IKE_SA_INIT request of another major version: an unauthenticated
/// INVALID_MAJOR_VERSION in a version 2 header, the request's SPI and message ID kept
/// (RFC 7296 §2.5); nothing for anything else (a response, another exchange, a short one).
pub fn refuse_version(bytes: &[u8]) -> Option<Vec<u8>> {
    // Only a higher version is told (RFC 7296 §2.5); an older one is noise.
    if bytes.get(17)? >> 4 <= 2 {
        return None;
    }
    let spi_i = first_request_spi(bytes)?;
    notify_reply(spi_i, Notify::new(NotifyType::INVALID_MAJOR_VERSION, &[]))
}

/// The initiator's SPI of what looks like a first IKE_SA_INIT request: a request of the
/// initiator, no responder SPI, message ID 0, a non-zero SPI, a length that is the datagram's
/// and room for at least one payload (so an answer is never much larger than what came).
fn first_request_spi(bytes: &[u8]) -> Option<[u8; 8]> {
    let b = bytes.get(..HEADER_LEN)?;
    let (exchange, flags) = (ExchangeType(b[18]), Flags(b[19]));
    let declared = u32::from_be_bytes([b[24], b[25], b[26], b[27]]) as usize;
    let shaped = exchange == ExchangeType::IKE_SA_INIT
        && flags.is_initiator()
        && !flags.is_response()
        && b[8..16] == [0; 8]
        && b[20..24] == [0; 4]
        && b[..8] != [0; 8]
        && declared == bytes.len()
        && bytes.len() >= HEADER_LEN + 8;
    shaped.then(|| b[..8].try_into().ok()).flatten()
}

/// A response carrying one notification and nothing else (no SA is made).
fn notify_reply(spi_i: [u8; 8], n: Notify<'_>) -> Option<Vec<u8>> {
    let body = n.body();
    init_message(
        (spi_i, [0; 8]),
        true,
        &[Payload::plain(PayloadType::NOTIFY, &body)],
    )
    .ok()
}

/// Whether the IKE_SA_INIT request `bytes` from `remote` carries a cookie `jar` made for it
/// (its sender proved its address). Cheap: no key exchange.
pub fn cookie_holds(bytes: &[u8], jar: &CookieJar, remote: std::net::IpAddr) -> bool {
    let Ok(req) = read_request(bytes) else {
        return false;
    };
    first_notify(&req.notifies, NotifyType::COOKIE)
        .is_some_and(|c| jar.check(c, req.ni, remote, &req.header.spi_i))
}

/// The COOKIE reply to the IKE_SA_INIT request `bytes` from `remote` (RFC 7296 §2.6), for a
/// responder that will not spend a key exchange on it before the sender proves its address.
pub fn cookie_reply(bytes: &[u8], jar: &CookieJar, remote: std::net::IpAddr) -> Option<Vec<u8>> {
    let req = read_request(bytes).ok()?;
    let spi_i = req.header.spi_i;
    let cookie = jar.make(req.ni, remote, &spi_i);
    notify_reply(spi_i, Notify::new(NotifyType::COOKIE, &cookie))
}

/// The responder's rules for one IKE_SA_INIT request `bytes` arriving on `ends`; the cookie
/// jar, and whether this source must prove its address (the admission gate says). `certreq`,
/// a CERTREQ payload's body naming the CAs trusted, asks clients for their certificates.
pub fn respond_init(
    bytes: &[u8],
    ends: Endpoints,
    (policy, certreq): (&Policy, Option<&[u8]>),
    cookies: (&CookieJar, bool),
    rng: &dyn SecureRandom,
) -> InitAnswer {
    let refused = |reply, why| InitAnswer::Refused { reply, why };
    let req = match read_request(bytes) {
        Ok(r) => r,
        Err(why) => return refused(critical_reply(bytes, &why), why),
    };
    let spi_i = req.header.spi_i;
    let (jar, require_cookie) = cookies;
    if require_cookie {
        let holds = first_notify(&req.notifies, NotifyType::COOKIE)
            .is_some_and(|c| jar.check(c, req.ni, ends.remote.ip(), &spi_i));
        if !holds {
            let cookie = jar.make(req.ni, ends.remote.ip(), &spi_i);
            let reply = notify_reply(spi_i, Notify::new(NotifyType::COOKIE, &cookie));
            return refused(reply, InitRefusal::CookieNeeded);
        }
    }
    let mut chosen = match choose(&req.offer, ProtocolId::IKE, policy) {
        Ok(c) => c,
        Err(e) => {
            let reply = notify_reply(spi_i, Notify::new(NotifyType::NO_PROPOSAL_CHOSEN, &[]));
            return refused(reply, InitRefusal::NoProposalChosen(e.offered));
        }
    };
    take_sent_group(&req, &mut chosen, policy);
    let (Some(group), Some(prf)) = (chosen.suite.dh, chosen.suite.prf) else {
        return refused(None, InitRefusal::Missing("DH group or PRF"));
    };
    if req.ke_group != group.id() {
        let wanted = group.id().to_be_bytes();
        let reply = notify_reply(spi_i, Notify::new(NotifyType::INVALID_KE_PAYLOAD, &wanted));
        let why = InitRefusal::InvalidKe {
            offered: req.ke_group,
            wanted: group,
        };
        return refused(reply, why);
    }
    let suite = (chosen.suite, prf, group);
    match accept(&req, bytes, (ends, certreq), suite, &chosen.proposal, rng) {
        Ok(sa) => InitAnswer::Accepted(Box::new(sa)),
        Err(why) => refused(None, why),
    }
}

/// The key exchange, the keys and the response of an accepted request.
fn accept(
    req: &Request<'_>,
    bytes: &[u8],
    (ends, certreq): (Endpoints, Option<&[u8]>),
    (suite, prf, group): (Suite, Prf, DhGroup),
    proposal: &Proposal,
    rng: &dyn SecureRandom,
) -> Result<HalfOpen, InitRefusal> {
    let spi_i = req.header.spi_i;
    let ours = KeyExchange::start(group, rng)?;
    let ke = ke_body(group, ours.public());
    let shared = ours.finish(req.ke)?;
    let nr: [u8; NONCE_LEN] = random(rng)?;
    let mut spi_r: [u8; 8] = random(rng)?;
    spi_r[0] |= 1; // never the all-zero SPI
    let nonces = (req.ni, &nr[..]);
    let keys = derive_ike_keys(prf, nonces, &shared, (&spi_i, &spi_r), suite.key_lengths())
        .map_err(|_| InitRefusal::Missing("key lengths within prf+"))?;
    let sources: Vec<&[u8]> = req
        .notifies
        .iter()
        .filter(|n| n.kind == NotifyType::NAT_DETECTION_SOURCE_IP)
        .map(|n| n.data)
        .collect();
    let destination = first_notify(&req.notifies, NotifyType::NAT_DETECTION_DESTINATION_IP);
    // The initiator hashed with a zero responder SPI: it had none yet.
    let nat = nat_finding(
        (&spi_i, &[0; 8]),
        &sources,
        destination,
        ends.remote,
        ends.local,
    );
    // RFC 7383: fragments are taken, and large answers cut, when the initiator said it can.
    let fragmentation =
        first_notify(&req.notifies, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
    let signature_hashes =
        first_notify(&req.notifies, NotifyType::SIGNATURE_HASH_ALGORITHMS).is_some();
    let sa = write_sa(std::slice::from_ref(proposal));
    let nat_src = if ends.force_nat_t {
        random::<20>(rng)?
    } else {
        nat_hash(&spi_i, &spi_r, ends.local)
    };
    let nat_dst = nat_hash(&spi_i, &spi_r, ends.remote);
    let mut notifies = vec![
        Notify::new(NotifyType::NAT_DETECTION_SOURCE_IP, &nat_src).body(),
        Notify::new(NotifyType::NAT_DETECTION_DESTINATION_IP, &nat_dst).body(),
    ];
    if fragmentation {
        notifies.push(Notify::new(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED, &[]).body());
    }
    if signature_hashes {
        let hashes = Notify::new(NotifyType::SIGNATURE_HASH_ALGORITHMS, &SIGNATURE_HASHES);
        notifies.push(hashes.body());
    }
    let mut payloads = vec![
        Payload::plain(PayloadType::SA, &sa),
        Payload::plain(PayloadType::KE, &ke),
        Payload::plain(PayloadType::NONCE, &nr),
    ];
    if let Some(body) = certreq {
        payloads.push(Payload::plain(PayloadType::CERTREQ, body));
    }
    payloads.extend(
        notifies
            .iter()
            .map(|n| Payload::plain(PayloadType::NOTIFY, n)),
    );
    let response = init_message((spi_i, spi_r), true, &payloads)?;
    Ok(HalfOpen {
        spi_i,
        spi_r,
        suite,
        keys,
        ni: req.ni.to_vec(),
        nr: nr.to_vec(),
        request: bytes.to_vec(),
        response,
        nat,
        fragmentation,
        signature_hashes,
    })
}
