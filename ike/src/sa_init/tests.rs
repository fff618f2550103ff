//! IKE_SA_INIT between this crate's initiator and responder: the same keys on both sides,
//! the cookie and INVALID_KE_PAYLOAD round trips, refusals that say why, and NAT detection.

use ring::rand::SystemRandom;

use super::*;
use crate::cookie::CookieJar;
use crate::proposals::{Proposal, ProtocolId, Transform, TransformType};
use crate::suite::{DhGroup, Encr, Policy};

fn t(kind: u8, id: u16, key_bits: Option<u16>) -> Transform {
    Transform::new(TransformType(kind), id, key_bits)
}

/// GCM-256 then ChaCha20-Poly1305, each with SHA2-256/384 PRFs and Curve25519, P-256.
fn offer() -> Vec<Proposal> {
    let rest = [t(2, 5, None), t(2, 6, None), t(4, 31, None), t(4, 19, None)];
    [t(1, 20, Some(256)), t(1, 28, None)]
        .iter()
        .enumerate()
        .map(|(i, e)| Proposal {
            number: i as u8 + 1,
            protocol: ProtocolId::IKE,
            spi: Vec::new(),
            transforms: std::iter::once(*e).chain(rest).collect(),
        })
        .collect()
}

fn ends() -> (Endpoints, Endpoints) {
    let client = "10.0.0.2:500".parse().expect("addr");
    let server = "10.0.0.1:500".parse().expect("addr");
    (
        Endpoints {
            local: client,
            remote: server,
            force_nat_t: false,
        },
        Endpoints {
            local: server,
            remote: client,
            force_nat_t: false,
        },
    )
}

/// Both sides' addresses, the responder's cookie jar and a random source.
struct Pair {
    rng: SystemRandom,
    jar: CookieJar,
    client: Endpoints,
    server: Endpoints,
}

impl Pair {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let jar = CookieJar::new(&rng).expect("jar");
        let (client, server) = ends();
        Self {
            rng,
            jar,
            client,
            server,
        }
    }

    /// A request offering `offer()` with a KE of `group`.
    fn initiate(&self, group: DhGroup) -> InitiatorInit {
        InitiatorInit::start(offer(), Policy::modern(), group, self.client, &self.rng)
            .expect("request")
    }

    /// The responder's answer to `request` at the server's address.
    fn answer(&self, request: &[u8], cookie: bool) -> InitAnswer {
        respond_init(
            request,
            self.server,
            (&Policy::modern(), None),
            (&self.jar, cookie),
            &self.rng,
        )
    }
}

fn accepted(answer: InitAnswer) -> Box<HalfOpen> {
    match answer {
        InitAnswer::Accepted(sa) => sa,
        InitAnswer::Refused { why, .. } => panic!("refused: {why}"),
    }
}

fn refused(answer: InitAnswer) -> (Option<Vec<u8>>, InitRefusal) {
    match answer {
        InitAnswer::Refused { reply, why } => (reply, why),
        InitAnswer::Accepted(_) => panic!("accepted"),
    }
}

#[test]
fn both_sides_derive_the_same_keys() {
    let pair = Pair::new();
    let init = pair.initiate(DhGroup::Curve25519);
    let ours = accepted(pair.answer(&init.request, false));
    let theirs = match init.on_response(&ours.response).expect("response") {
        InitReply::Established(sa) => sa,
        other => panic!("{other:?}"),
    };
    assert_eq!(ours.suite.encr, Encr::AesGcm16 { key_bits: 256 });
    assert_eq!((ours.spi_i, ours.spi_r), (theirs.spi_i, theirs.spi_r));
    assert_eq!(ours.keys, theirs.keys, "the same seven keys");
    assert_eq!(ours.keys.sk_ei.len(), 36);
    assert_eq!(
        (ours.request.clone(), ours.response.clone()),
        (theirs.request, theirs.response)
    );
    // Fragments are not reassembled yet: support is not claimed, whatever the client says.
    assert!(!ours.fragmentation && !theirs.fragmentation && ours.signature_hashes);
    assert_eq!(
        (ours.nat, theirs.nat),
        (Default::default(), Default::default())
    );
}

#[test]
fn a_cookie_is_asked_for_and_then_taken() {
    let pair = Pair::new();
    let init = pair.initiate(DhGroup::Curve25519);
    let (reply, why) = refused(pair.answer(&init.request, true));
    assert_eq!(why, InitRefusal::CookieNeeded);
    let cookie = match init_reply(&init, &reply) {
        InitReply::RetryWithCookie(c) => c,
        other => panic!("{other:?}"),
    };
    let init = init.retry_with_cookie(&cookie).expect("retry");
    let sa = accepted(pair.answer(&init.request, true));
    assert!(matches!(
        init.on_response(&sa.response),
        Ok(InitReply::Established(_))
    ));
    // From another address, the same cookie does not hold.
    let elsewhere = Endpoints {
        remote: "10.0.0.3:500".parse().expect("addr"),
        ..pair.server
    };
    let (_, why) = refused(respond_init(
        &sa.request,
        elsewhere,
        (&Policy::modern(), None),
        (&pair.jar, true),
        &pair.rng,
    ));
    assert_eq!(why, InitRefusal::CookieNeeded);
}

/// What `init` makes of the responder's `reply`, without consuming it.
fn init_reply(init: &InitiatorInit, reply: &Option<Vec<u8>>) -> InitReply {
    let bytes = reply.as_deref().expect("a reply");
    let m = Message::parse(bytes).expect("a message");
    assert_eq!(m.header.spi_i, init_spi(init));
    let notifies = notifies_of(&m).expect("notifies");
    if let Some(c) = first_notify(&notifies, NotifyType::COOKIE) {
        return InitReply::RetryWithCookie(c.to_vec());
    }
    let n = notifies.first().expect("a notify");
    if n.kind == NotifyType::INVALID_KE_PAYLOAD {
        let id = u16::from_be_bytes([n.data[0], n.data[1]]);
        return InitReply::RetryWithGroup(DhGroup::from_id(id).expect("a group"));
    }
    InitReply::Refused(n.kind)
}

fn init_spi(init: &InitiatorInit) -> [u8; 8] {
    Message::parse(&init.request).expect("request").header.spi_i
}

#[test]
fn a_ke_group_outside_the_proposal_is_answered_with_the_chosen_one() {
    // MODP-2048's KE, a group the offer (Curve25519, P-256) does not list.
    let pair = Pair::new();
    let init = pair.initiate(DhGroup::Modp2048);
    let (reply, why) = refused(pair.answer(&init.request, false));
    assert_eq!(
        why,
        InitRefusal::InvalidKe {
            offered: 14,
            wanted: DhGroup::Curve25519
        }
    );
    let group = match init_reply(&init, &reply) {
        InitReply::RetryWithGroup(g) => g,
        other => panic!("{other:?}"),
    };
    let init = init.retry_with_group(group, &pair.rng).expect("retry");
    let sa = accepted(pair.answer(&init.request, false));
    assert!(matches!(
        init.on_response(&sa.response),
        Ok(InitReply::Established(_))
    ));
}

/// A cookie asked for, then another group: the request with the new group still carries
/// the cookie (a responder under load would refuse it otherwise); and an INVALID_KE_PAYLOAD
/// naming a group the offer did not list is not taken.
#[test]
fn a_retry_with_another_group_keeps_the_cookie_and_only_offered_groups_are_taken() {
    let pair = Pair::new();
    let init = pair.initiate(DhGroup::Modp2048);
    let (reply, why) = refused(pair.answer(&init.request, true));
    assert_eq!(why, InitRefusal::CookieNeeded);
    let InitReply::RetryWithCookie(cookie) = init_reply(&init, &reply) else {
        panic!("a cookie asked for");
    };
    let init = init.retry_with_cookie(&cookie).expect("retry");
    let (reply, _) = refused(pair.answer(&init.request, true));
    let InitReply::RetryWithGroup(group) = init_reply(&init, &reply) else {
        panic!("another group asked for");
    };
    // The same reply naming MODP-2048, which the offer (Curve25519, P-256) does not list.
    let mut other = reply.clone().expect("reply");
    let at = other.len() - 2;
    assert_eq!(
        other[at..],
        31u16.to_be_bytes(),
        "the notify's group is last"
    );
    other[at..].copy_from_slice(&14u16.to_be_bytes());
    let init = init.retry_with_group(group, &pair.rng).expect("retry");
    let sa = accepted(pair.answer(&init.request, true));
    assert_eq!(sa.suite.dh, Some(DhGroup::Curve25519));
    let second = pair.initiate(DhGroup::Ecp256);
    let mut theirs = other;
    theirs[..8].copy_from_slice(&init_spi(&second));
    assert!(matches!(
        second.on_response(&theirs),
        Err(InitiatorError::Unacceptable(_))
    ));
}

#[test]
fn a_ke_group_the_proposal_offers_is_taken_though_another_comes_first() {
    // P-256's KE, though Curve25519 comes first in the offer: no INVALID_KE round trip.
    let pair = Pair::new();
    let init = pair.initiate(DhGroup::Ecp256);
    let sa = accepted(pair.answer(&init.request, false));
    assert_eq!(sa.suite.dh, Some(DhGroup::Ecp256));
    match init.on_response(&sa.response) {
        Ok(InitReply::Established(theirs)) => assert_eq!(theirs.keys.sk_d, sa.keys.sk_d),
        other => panic!("{other:?}"),
    }
}

#[test]
fn nothing_in_common_is_refused_and_says_what_was_offered() {
    let pair = Pair::new();
    let cbc = vec![Proposal {
        number: 1,
        protocol: ProtocolId::IKE,
        spi: Vec::new(),
        transforms: vec![
            t(1, 12, Some(256)),
            t(2, 2, None),
            t(3, 2, None),
            t(4, 31, None),
        ],
    }];
    let mut lenient = Policy::modern();
    lenient.encr.push(Encr::AesCbc { key_bits: 256 });
    let init = InitiatorInit::start(cbc, lenient, DhGroup::Curve25519, pair.client, &pair.rng)
        .expect("request");
    let (reply, why) = refused(pair.answer(&init.request, false));
    assert_eq!(
        why,
        InitRefusal::NoProposalChosen("1: ENCR 12/256, PRF 2, INTEG 2, DH 31".into())
    );
    let reply = reply.expect("a reply");
    assert!(matches!(
        init.on_response(&reply),
        Ok(InitReply::Refused(NotifyType::NO_PROPOSAL_CHOSEN))
    ));
}

#[test]
fn a_rewritten_source_address_is_found_on_both_sides() {
    let pair = Pair::new();
    let init = pair.initiate(DhGroup::Curve25519);
    // A NAT rewrote 10.0.0.2:500 to 198.51.100.7:40001 on the way.
    let seen = Endpoints {
        remote: "198.51.100.7:40001".parse().expect("addr"),
        ..pair.server
    };
    let sa = accepted(respond_init(
        &init.request,
        seen,
        (&Policy::modern(), None),
        (&pair.jar, false),
        &pair.rng,
    ));
    assert!(sa.nat.peer_behind_nat && !sa.nat.self_behind_nat);
    let theirs = match init.on_response(&sa.response).expect("response") {
        InitReply::Established(sa) => sa,
        other => panic!("{other:?}"),
    };
    assert!(theirs.nat.self_behind_nat && !theirs.nat.peer_behind_nat);
}

#[test]
fn a_responder_that_forces_nat_t_looks_natted_to_the_initiator() {
    let pair = Pair::new();
    let init = pair.initiate(DhGroup::Curve25519);
    let forcing = Endpoints {
        force_nat_t: true,
        ..pair.server
    };
    let sa = accepted(respond_init(
        &init.request,
        forcing,
        (&Policy::modern(), None),
        (&pair.jar, false),
        &pair.rng,
    ));
    assert!(!sa.nat.peer_behind_nat, "no NAT on the way in");
    let theirs = match init.on_response(&sa.response).expect("response") {
        InitReply::Established(sa) => sa,
        other => panic!("{other:?}"),
    };
    assert!(
        theirs.nat.peer_behind_nat && !theirs.nat.self_behind_nat,
        "the initiator must see a NAT at the responder and float to 4500"
    );
}

#[test]
fn what_is_not_a_first_request_is_dropped_with_a_reason() {
    let pair = Pair::new();
    let init = pair.initiate(DhGroup::Curve25519);
    let (reply, why) = refused(pair.answer(&init.request[..40], false));
    assert!(reply.is_none() && matches!(why, InitRefusal::Malformed(_)));
    let sa = accepted(pair.answer(&init.request, false));
    let (reply, why) = refused(pair.answer(&sa.response, false));
    assert!(reply.is_none());
    assert_eq!(why, InitRefusal::NotARequest, "a response is not a request");
}

/// The one Notify a refusal carries: its type and data.
fn lone_notify(reply: &[u8]) -> (NotifyType, Vec<u8>) {
    let m = crate::message::Message::parse(reply).expect("a message");
    let p = m.payloads.first().expect("a payload");
    assert_eq!(p.kind, PayloadType::NOTIFY);
    let n = Notify::read(p.body).expect("a notify");
    (n.kind, n.data.to_vec())
}

#[test]
fn another_major_version_is_told_which_one_is_spoken() {
    let pair = Pair::new();
    let mut request = pair.initiate(DhGroup::Curve25519).request;
    request[17] = 0x30; // IKEv3.0
    let reply = refuse_version(&request).expect("an answer");
    assert_eq!(reply[..8], request[..8], "the initiator's SPI kept");
    assert_eq!(reply[17], 0x20, "our version");
    let (kind, _) = lone_notify(&reply);
    assert_eq!(kind, NotifyType::INVALID_MAJOR_VERSION);
    // Version 2 requests, responses and later exchanges get no such answer.
    assert!(refuse_version(&pair.initiate(DhGroup::Curve25519).request).is_none());
    let mut response = request.clone();
    response[19] |= crate::header::Flags::RESPONSE;
    assert!(refuse_version(&response).is_none());
    assert!(refuse_version(&request[..20]).is_none());
}

#[test]
fn an_unknown_critical_payload_is_refused_by_its_type() {
    let pair = Pair::new();
    let request = pair.initiate(DhGroup::Curve25519).request;
    // Put an unknown payload (type 200) marked critical in front of the chain.
    let body = [0xab; 6];
    let mut m = request[..28].to_vec();
    let first = m[16];
    m[16] = 200;
    m.extend_from_slice(&[first, 0x80, 0, (4 + body.len()) as u8]);
    m.extend_from_slice(&body);
    m.extend_from_slice(&request[28..]);
    let len = (m.len() as u32).to_be_bytes();
    m[24..28].copy_from_slice(&len);
    let (reply, why) = refused(pair.answer(&m, false));
    assert_eq!(
        why,
        InitRefusal::Malformed(crate::error::ParseError::UnsupportedCritical(200))
    );
    let (kind, data) = lone_notify(&reply.expect("an answer"));
    assert_eq!(
        (kind, data),
        (NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![200])
    );
}
