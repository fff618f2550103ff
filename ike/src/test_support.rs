//! Fixtures the exchange tests share: a user registry with alice, the server's identity,
//! ESP offers, an IKE_SA_INIT run between this crate's initiator and responder, and a small
//! PKI (CA, leaf certificates, CRL) made by rcgen.

use std::collections::HashMap;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
    SignatureAlgorithm,
};
use ring::rand::SystemRandom;
use zeroize::Zeroizing;

use crate::config_payload::Assignment;
use crate::cookie::CookieJar;
use crate::identity::{IdType, Identity};
use crate::ike_auth::{Grant, UserAuth, Users};
use crate::ike_sa::AuthContext;
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

/// What the responder answers IKE_AUTH with: `users`, this server `local`, the ESP `esp`
/// policy, the CHILD_SA's inbound SPI; no certificates.
pub fn auth_ctx<'a>(
    users: &'a Registry,
    local: &'a Identity,
    esp: &'a Policy,
    child_spi: [u8; 4],
) -> AuthContext<'a> {
    AuthContext {
        users,
        local,
        esp,
        ike: esp,
        child_spi,
        certs: None,
        unix_secs: 0,
    }
}

pub fn registry() -> Registry {
    let grant = Grant {
        auth: UserAuth::Psk(Zeroizing::new(b"alice's own key, 32 bytes long!!".to_vec())),
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

/// Every cipher spoken, as suites: the AEADs, and AES-CBC (128 and 256) with each HMAC;
/// `esn` as an ESP suite carries it (`None` for IKE's Encrypted payload).
pub fn every_cipher(esn: Option<bool>) -> Vec<crate::suite::Suite> {
    use crate::suite::{Encr, Integ, Suite};
    let suite = |encr, integ| Suite {
        encr,
        prf: None,
        integ,
        dh: None,
        esn,
    };
    let mut out = vec![
        suite(Encr::AesGcm16 { key_bits: 256 }, None),
        suite(Encr::AesGcm16 { key_bits: 128 }, None),
        suite(Encr::ChaCha20Poly1305, None),
    ];
    for integ in [
        Integ::HmacSha1_96,
        Integ::HmacSha256_128,
        Integ::HmacSha384_192,
        Integ::HmacSha512_256,
    ] {
        for key_bits in [128, 256] {
            out.push(suite(Encr::AesCbc { key_bits }, Some(integ)));
        }
    }
    out
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
    let offer = Policy::modern().ike_offer(&[]);
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
        (&Policy::modern(), None),
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

// A PKI made by rcgen, independent of the checking code.

/// 2026-12-01, inside every validity window made here except the deliberate ones.
pub const NOW: u64 = 1_796_083_200;

pub struct Ca {
    pub issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

pub fn ca(alg: &'static SignatureAlgorithm) -> Ca {
    let key = KeyPair::generate_for(alg).expect("CA key");
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "test CA");
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = p.self_signed(&key).expect("CA certificate");
    Ca {
        issuer: Issuer::new(p, key),
        pem: cert.pem(),
    }
}

/// A certificate for `san` issued by `ca` (cert PEM, key PEM); `window` sets validity.
pub fn leaf(
    ca: &Ca,
    alg: &'static SignatureAlgorithm,
    san: &str,
    serial: u64,
    window: Option<(i32, i32)>,
) -> (String, String) {
    let key = KeyPair::generate_for(alg).expect("leaf key");
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, san);
    p.subject_alt_names = vec![if san.contains('@') {
        SanType::Rfc822Name(san.try_into().expect("mail"))
    } else {
        SanType::DnsName(san.try_into().expect("name"))
    }];
    p.serial_number = Some(SerialNumber::from(serial));
    if let Some((from, to)) = window {
        p.not_before = date_time_ymd(from, 1, 1);
        p.not_after = date_time_ymd(to, 1, 1);
    }
    let cert = p.signed_by(&key, &ca.issuer).expect("leaf certificate");
    (cert.pem(), key.serialize_pem())
}

pub fn crl(ca: &Ca, serials: &[u64]) -> String {
    let p = CertificateRevocationListParams {
        this_update: date_time_ymd(2026, 1, 1),
        next_update: date_time_ymd(2099, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: date_time_ymd(2026, 6, 1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    p.signed_by(&ca.issuer)
        .expect("CRL")
        .pem()
        .expect("CRL PEM")
}

pub fn der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::{pem::PemObject, CertificateDer};
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("PEM")
        .to_vec()
}
