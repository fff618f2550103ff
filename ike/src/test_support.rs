//! Fixtures the exchange tests share: a user registry with alice, the server's identity,
//! ESP offers, and an IKE_SA_INIT run between this crate's initiator and responder.

use std::collections::HashMap;

use ring::rand::SystemRandom;
use zeroize::Zeroizing;

use crate::config_payload::Assignment;
use crate::cookie::CookieJar;
use crate::identity::{IdType, Identity};
use crate::ike_auth::{Grant, Users};
use crate::proposals::{Proposal, ProtocolId, Transform, TransformType};
use crate::sa_init::{respond_init, Endpoints, HalfOpen, InitAnswer, InitReply, InitiatorInit};
use crate::selectors::TrafficSelector;
use crate::suite::Policy;

pub struct Registry(pub HashMap<Identity, Grant>);

impl Users for Registry {
    fn find(&self, id: &Identity) -> Option<Grant> {
        self.0.get(id).cloned()
    }
}

pub fn alice() -> Identity {
    Identity {
        kind: IdType::RFC822_ADDR,
        data: b"alice@example.com".to_vec(),
    }
}

pub fn server() -> Identity {
    Identity {
        kind: IdType::FQDN,
        data: b"vpn.example.com".to_vec(),
    }
}

pub fn registry() -> Registry {
    let grant = Grant {
        psk: Zeroizing::new(b"alice's own key, 32 bytes long!!".to_vec()),
        assignment: Assignment {
            v4: Some("10.77.0.2".parse().expect("v4")),
            v6: Some(("fd77::2".parse().expect("v6"), 64)),
            dns: vec!["10.77.0.53".parse().expect("dns")],
            subnets: vec![("10.77.0.0".parse().expect("net"), 16)],
        },
        reach: vec![TrafficSelector::prefix(
            "10.77.0.0".parse().expect("net"),
            16,
        )],
    };
    Registry(HashMap::from([(alice(), grant)]))
}

pub fn t(kind: u8, id: u16, key_bits: Option<u16>) -> Transform {
    Transform::new(TransformType(kind), id, key_bits)
}

pub fn esp_offer(spi: [u8; 4], encr: Transform) -> Vec<Proposal> {
    vec![Proposal {
        number: 1,
        protocol: ProtocolId::ESP,
        spi: spi.to_vec(),
        transforms: vec![encr, t(5, 0, None)],
    }]
}

/// IKE_SA_INIT done: the initiator's and the responder's half-open SA.
pub fn half_open() -> (HalfOpen, HalfOpen) {
    let rng = SystemRandom::new();
    let jar = CookieJar::new(&rng).expect("jar");
    let (c, s) = (
        "10.0.0.2:500".parse().expect("a"),
        "10.0.0.1:500".parse().expect("a"),
    );
    let offer = vec![Proposal {
        number: 1,
        protocol: ProtocolId::IKE,
        spi: Vec::new(),
        transforms: vec![t(1, 20, Some(256)), t(2, 5, None), t(4, 31, None)],
    }];
    let client = Endpoints {
        local: c,
        remote: s,
        force_nat_t: false,
    };
    let init = InitiatorInit::start(
        offer,
        Policy::modern(),
        crate::suite::DhGroup::Curve25519,
        client,
        &rng,
    )
    .expect("init");
    let server_ends = Endpoints {
        local: s,
        remote: c,
        force_nat_t: false,
    };
    let ours = match respond_init(
        &init.request,
        server_ends,
        &Policy::modern(),
        (&jar, false),
        &rng,
    ) {
        InitAnswer::Accepted(sa) => *sa,
        InitAnswer::Refused { why, .. } => panic!("{why}"),
    };
    let theirs = match init.on_response(&ours.response).expect("response") {
        InitReply::Established(sa) => *sa,
        other => panic!("{other:?}"),
    };
    (theirs, ours)
}
