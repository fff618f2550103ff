//! Random and mutated datagrams into the message reader: every one is read or refused with
//! a reason, never a panic, and what is read re-encodes to a message that reads the same.

use ike::{ExchangeType, Flags, Header, Message, Payload, PayloadType, IKEV2_VERSION};
use proptest::prelude::*;

/// A well-formed IKE_SA_INIT-like message to mutate.
fn seed_message() -> Vec<u8> {
    let header = Header {
        spi_i: [0x11; 8],
        spi_r: [0; 8],
        next_payload: 0,
        version: IKEV2_VERSION,
        exchange: ExchangeType::IKE_SA_INIT,
        flags: Flags::new(true, false),
        message_id: 0,
        length: 0,
    };
    let (sa, ke, nonce) = ([1u8; 44], [2u8; 36], [3u8; 32]);
    let p = |kind, body| Payload {
        kind,
        critical: false,
        body,
        next: PayloadType::NONE,
    };
    Message::encode(
        &header,
        &[
            p(PayloadType::SA, &sa[..]),
            p(PayloadType::KE, &ke[..]),
            p(PayloadType::NONCE, &nonce[..]),
        ],
    )
    .unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Message::parse(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic_and_round_trip(
        flips in proptest::collection::vec((0usize..140, any::<u8>()), 1..6),
        cut in 0usize..160,
    ) {
        let mut bytes = seed_message();
        for (at, v) in flips {
            if let Some(b) = bytes.get_mut(at) {
                *b = v;
            }
        }
        bytes.truncate(cut.max(1));
        if let Ok(m) = Message::parse(&bytes) {
            let again = Message::encode(&m.header, &m.payloads);
            prop_assert!(again.is_ok());
            let again = again.unwrap_or_default();
            // A message with skipped unknown payloads re-encodes shorter; with only known
            // ones it reads back the same (reserved bits aside, which are not kept).
            let chain_len: usize = m.payloads.iter().map(|p| p.body.len() + 4).sum();
            if chain_len + 28 == bytes.len() {
                prop_assert_eq!(Message::parse(&again), Ok(m));
            }
        }
    }
}

/// A strongSwan-like offer: GCM with two groups, then CBC with SHA-256.
fn seed_sa() -> Vec<u8> {
    use ike::{Proposal, ProtocolId, Transform, TransformType};
    let t = |k: u8, id: u16, key_bits: Option<u16>| Transform::new(TransformType(k), id, key_bits);
    ike::write_sa(&[
        Proposal {
            number: 1,
            protocol: ProtocolId::IKE,
            spi: Vec::new(),
            transforms: vec![
                t(1, 20, Some(256)),
                t(2, 5, None),
                t(4, 31, None),
                t(4, 19, None),
            ],
        },
        Proposal {
            number: 2,
            protocol: ProtocolId::IKE,
            spi: Vec::new(),
            transforms: vec![
                t(1, 12, Some(256)),
                t(2, 5, None),
                t(3, 12, None),
                t(4, 14, None),
            ],
        },
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn mutated_sa_payloads_never_panic(
        flips in proptest::collection::vec((0usize..120, any::<u8>()), 1..5),
        cut in 0usize..130,
    ) {
        let mut body = seed_sa();
        for (at, v) in flips {
            if let Some(b) = body.get_mut(at) {
                *b = v;
            }
        }
        body.truncate(cut);
        if let Ok(offer) = ike::read_sa(&body) {
            let _ = ike::choose(&offer, ike::ProtocolId::IKE, &ike::Policy::modern());
            // Unknown attributes are not written back: their transforms are never chosen.
            let clean = offer.iter().all(|p| p.transforms.iter().all(|t| !t.unknown_attribute));
            if clean {
                prop_assert_eq!(ike::read_sa(&ike::write_sa(&offer)).ok(), Some(offer));
            }
        }
    }
}

/// A request from this crate's initiator, and the responder's addresses.
fn seed_request() -> (Vec<u8>, ike::Endpoints) {
    let rng = ring::rand::SystemRandom::new();
    let client: std::net::SocketAddr = "10.0.0.2:500".parse().unwrap_or(([0, 0, 0, 0], 0).into());
    let server: std::net::SocketAddr = "10.0.0.1:500".parse().unwrap_or(([0, 0, 0, 0], 0).into());
    let offer = ike::Policy::modern().ike_offer(&[]);
    let ends = ike::Endpoints {
        local: client,
        remote: server,
        force_nat_t: false,
    };
    let request = ike::InitiatorInit::start(
        offer,
        ike::Policy::modern(),
        ike::DhGroup::Curve25519,
        ends,
        &rng,
    )
    .map(|i| i.request)
    .unwrap_or_default();
    (
        request,
        ike::Endpoints {
            local: server,
            remote: client,
            force_nat_t: false,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// Mutated IKE_SA_INIT requests into the responder: answered, refused with a reason, or
    /// dropped; never a panic, and a reply is always a readable message.
    #[test]
    fn mutated_requests_never_panic_the_responder(
        flips in proptest::collection::vec((0usize..260, any::<u8>()), 0..6),
        cut in 0usize..300,
        cookie in any::<bool>(),
    ) {
        let rng = ring::rand::SystemRandom::new();
        let jar = ike::CookieJar::new(&rng);
        prop_assert!(jar.is_some());
        let Some(jar) = jar else { return Ok(()) };
        let (mut bytes, ends) = seed_request();
        for (at, v) in flips {
            if let Some(b) = bytes.get_mut(at) {
                *b = v;
            }
        }
        bytes.truncate(cut.max(1));
        match ike::respond_init(&bytes, ends, (&ike::Policy::modern(), None), (&jar, cookie), &rng) {
            ike::InitAnswer::Accepted(sa) => prop_assert!(Message::parse(&sa.response).is_ok()),
            ike::InitAnswer::Refused { reply: Some(r), .. } => prop_assert!(Message::parse(&r).is_ok()),
            ike::InitAnswer::Refused { reply: None, .. } => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// The bodies IKE_AUTH carries, read from random bytes: read or refused, never a panic;
    /// what is read writes back to something that reads the same.
    #[test]
    fn random_auth_payload_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        if let Ok(ts) = ike::read_ts(&bytes) {
            prop_assert_eq!(ike::read_ts(&ike::ts_body(&ts)).ok(), Some(ts));
        }
        if let Ok(cp) = ike::ConfigPayload::read(&bytes) {
            let _ = cp.assignment();
            prop_assert_eq!(ike::ConfigPayload::read(&cp.body()).ok(), Some(cp));
        }
        if let Ok(id) = ike::Identity::read(&bytes) {
            let _ = id.display();
        }
        let _ = ike::read_auth(&bytes);
        let _ = ike::Notify::read(&bytes);
    }
}
