//! The IKEv2 responder (`plane::ike::IkeEngine`, the rules the daemon runs) against random
//! and mutated messages at every stage of an exchange: random datagrams, mutated
//! IKE_SA_INITs, mutated IKE_AUTHs on a real half-open SA, and mutated Deletes on an SA that
//! is up. None may panic; a mutated IKE_AUTH never authenticates, and a mutated Delete never
//! takes the SA down (the authentic one does); and authentic CREATE_CHILD_SAs with random
//! payload bodies, each answered, the user up once. 110,000 cases in all (see
//! `testbed::fuzz`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ike::{
    Assignment, AuthInitiator, DhGroup, Endpoints, ExchangeType, Grant, IdType, Identity,
    InitReply, InitiatorInit, Policy, Protected, Timing, TrafficSelector,
};
use plane::events::{EventSink, TunnelEvent};
use plane::ike::{IkeEngine, IkeSettings, IkeUser};
use proptest::prelude::*;
use ring::rand::SystemRandom;
use testbed::fuzz::campaign;
use zeroize::Zeroizing;

const PSK: &[u8] = b"the fuzz user's own key, 32 long";

struct Quiet;

impl EventSink for Quiet {
    fn publish(&self, _event: TunnelEvent) {}
}

fn client() -> SocketAddr {
    "192.0.2.10:500".parse().expect("addr")
}

fn server() -> SocketAddr {
    "192.0.2.1:500".parse().expect("addr")
}

fn alice() -> Identity {
    Identity {
        kind: IdType::RFC822_ADDR,
        data: b"alice@example.com".to_vec(),
    }
}

fn engine() -> IkeEngine {
    let settings = IkeSettings {
        port: 500,
        nat_port: 4500,
        local_id: Identity::from_text("vpn.example.com"),
        ike: Policy::modern(),
        esp: Policy::modern(),
        timing: Timing::default(),
        cookie_threshold: 1024,
        workers: 1,
        certs: None,
        crl_source: None,
        raw_esp: false,
        lockout_after: 5,
        lockout_for: std::time::Duration::from_secs(300),
        client_ca: None,
    };
    let mut e = IkeEngine::new(settings, Arc::new(Quiet)).expect("engine");
    let user = IkeUser {
        identity: alice(),
        name: "alice".into(),
        grant: Grant {
            auth: ike::UserAuth::Psk(Zeroizing::new(PSK.to_vec())),
            assignment: Assignment {
                v4: Some("10.77.0.2".parse().expect("v4")),
                v6: None,
                dns: Vec::new(),
                subnets: Vec::new(),
            },
            reach: vec![TrafficSelector::prefix(
                "10.77.0.0".parse().expect("net"),
                16,
            )],
        },
    };
    e.set_users(vec![user], true, Instant::now());
    e
}

/// A client's IKE_SA_INIT request.
fn init_request() -> InitiatorInit {
    let offer = Policy::modern().ike_offer(&[]);
    let ends = Endpoints {
        local: client(),
        remote: server(),
        force_nat_t: false,
    };
    InitiatorInit::start(
        offer,
        Policy::modern(),
        DhGroup::Curve25519,
        ends,
        &SystemRandom::new(),
    )
    .expect("init")
}

/// An engine with a half-open SA and the client's IKE_AUTH request for it.
fn half_open() -> (IkeEngine, AuthInitiator) {
    let mut e = engine();
    let init = init_request();
    let now = Instant::now();
    let out = e.on_message(&init.request, client(), server(), now);
    let reply = &out.first().expect("a response").bytes;
    let Ok(InitReply::Established(sa)) = init.on_response(reply) else {
        panic!("no half-open SA");
    };
    let esp = Policy::modern().esp_offer([0xc1, 0, 0, 1], false);
    let auth = AuthInitiator::start(
        *sa,
        &alice(),
        PSK,
        esp,
        Policy::modern(),
        &SystemRandom::new(),
    )
    .expect("auth");
    (e, auth)
}

fn mutate(mut bytes: Vec<u8>, flips: &[(usize, u8)], cut: usize) -> Vec<u8> {
    let len = bytes.len();
    for (at, v) in flips {
        if let Some(b) = bytes.get_mut(at % len.max(1)) {
            *b = *v;
        }
    }
    bytes.truncate(cut.max(1));
    bytes
}

fn flips() -> impl Strategy<Value = Vec<(usize, u8)>> {
    proptest::collection::vec((0usize..2048, any::<u8>()), 1..5)
}

#[test]
fn fuzz_ike_responder() {
    let mut total = 0;
    total += campaign(
        "ike_random_datagrams",
        40_000,
        proptest::collection::vec(any::<u8>(), 0..400),
        |bytes| {
            let mut e = engine();
            e.on_message(&bytes, client(), server(), Instant::now());
            prop_assert_eq!(e.sas_up(), 0);
            Ok(())
        },
    );
    let init = init_request().request;
    total += campaign(
        "ike_mutated_sa_init",
        30_000,
        (flips(), 1usize..400),
        |(f, cut)| {
            let mut e = engine();
            let bytes = mutate(init.clone(), &f, cut);
            e.on_message(&bytes, client(), server(), Instant::now());
            e.on_tick(Instant::now());
            prop_assert_eq!(e.sas_up(), 0);
            Ok(())
        },
    );
    total += campaign(
        "ike_mutated_auth",
        15_000,
        (flips(), 1usize..600),
        |(f, cut)| {
            let (mut e, auth) = half_open();
            let bytes = mutate(auth.request.clone(), &f, cut);
            let out = e.on_message(&bytes, client(), server(), Instant::now());
            if bytes != auth.request {
                prop_assert_eq!(e.sas_up(), 0, "a mutated IKE_AUTH authenticated");
            }
            for o in out {
                // What the responder answered is one of its own messages, however bad.
                prop_assert!(ike::Header::parse(&o.bytes).is_ok());
            }
            Ok(())
        },
    );
    total += campaign(
        "ike_mutated_informational",
        15_000,
        (flips(), 1usize..200),
        |(f, cut)| {
            let (mut e, auth) = half_open();
            let out = e.on_message(&auth.request, client(), server(), Instant::now());
            prop_assert_eq!(e.sas_up(), 1);
            prop_assert!(!out.is_empty());
            let what = Protected {
                exchange: ExchangeType::INFORMATIONAL,
                message_id: 2,
                by_initiator: true,
                response: false,
            };
            let request =
                ike::protected_seal(auth.sa(), what, &[], &SystemRandom::new()).expect("seal");
            let bytes = mutate(request.clone(), &f, cut);
            e.on_message(&bytes, client(), server(), Instant::now());
            if bytes != request {
                prop_assert_eq!(e.sas_up(), 1, "a mutated request took the SA down");
            }
            Ok(())
        },
    );
    total += campaign(
        "ike_sealed_create_child",
        10_000,
        (
            proptest::collection::vec(
                (0u8..6, proptest::collection::vec(any::<u8>(), 0..80)),
                0..6,
            ),
            any::<bool>(),
        ),
        |(parts, rekey_named)| {
            // Authentic CREATE_CHILD_SAs (sealed with the real keys) whose payloads are
            // random bodies of the types a rekey carries: what only a signed-in peer reaches.
            let (mut e, auth) = half_open();
            e.on_message(&auth.request, client(), server(), Instant::now());
            let kinds = [
                ike::PayloadType::SA,
                ike::PayloadType::NONCE,
                ike::PayloadType::KE,
                ike::PayloadType::TSI,
                ike::PayloadType::TSR,
                ike::PayloadType::NOTIFY,
            ];
            let rekey = ike::Notify {
                protocol: 3,
                spi: &[0xc1, 0, 0, 1],
                kind: ike::NotifyType::REKEY_SA,
                data: &[],
            }
            .body();
            let mut payloads: Vec<ike::Payload<'_>> = parts
                .iter()
                .map(|(k, body)| ike::Payload::plain(kinds[usize::from(*k)], body))
                .collect();
            if rekey_named {
                payloads.push(ike::Payload::plain(ike::PayloadType::NOTIFY, &rekey));
            }
            let what = Protected {
                exchange: ExchangeType::CREATE_CHILD_SA,
                message_id: 2,
                by_initiator: true,
                response: false,
            };
            let request = ike::protected_seal(auth.sa(), what, &payloads, &SystemRandom::new())
                .expect("seal");
            let out = e.on_message(&request, client(), server(), Instant::now());
            prop_assert_eq!(out.len(), 1, "every authentic request is answered");
            prop_assert_eq!(e.sas_up(), 1, "the user stays up, once");
            Ok(())
        },
    );
    assert!(total >= 100_000, "{total} cases");
}
