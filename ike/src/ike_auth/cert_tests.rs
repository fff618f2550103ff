//! IKE_AUTH with certificates between this crate's initiator and responder: an ECDSA client
//! and an RSA server prove themselves to each other (RFC 7427); a client certificate from a
//! CA the server does not trust, or a PSK user signing, is refused and told so.

use std::sync::Arc;

use ring::rand::SystemRandom;
use zeroize::Zeroizing;

use super::*;
use crate::certs::{CertAuth, CertRefusal, Credential, TrustStore};
use crate::identity::Identity;
use crate::suite::Policy;
use crate::test_support::{
    auth_ctx, ca, esp_offer, half_open, leaf, registry, server, t, Ca, Registry, NOW,
};

struct Pki {
    server: CertAuth,
    carol: Credential,
    stranger: Credential,
}

fn pki(server_ca: &Ca, client_ca: &Ca) -> Pki {
    let rng = SystemRandom::new();
    let own = |ca: &Ca, alg, name: &str, serial| {
        let (cert, key) = leaf(ca, alg, name, serial, None);
        Credential::from_pem(cert.as_bytes(), key.as_bytes(), &rng).expect("credential")
    };
    let rogue = ca(&rcgen::PKCS_ECDSA_P256_SHA256);
    let trust = |ca: &Ca| TrustStore::from_pem(ca.pem.as_bytes(), None).expect("trust");
    Pki {
        server: CertAuth::new(
            own(server_ca, &rcgen::PKCS_RSA_SHA256, "vpn.example.com", 2),
            Some(trust(client_ca)),
        ),
        carol: own(
            client_ca,
            &rcgen::PKCS_ECDSA_P256_SHA256,
            "carol@example.com",
            3,
        ),
        stranger: own(
            &rogue,
            &rcgen::PKCS_ECDSA_P256_SHA256,
            "carol@example.com",
            3,
        ),
    }
}

fn users_with_carol() -> Registry {
    let mut users = registry();
    let mut grant = users.0[&crate::test_support::alice()].clone();
    grant.auth = UserAuth::Certificate;
    users
        .0
        .insert(Identity::from_text("carol@example.com"), grant);
    users
}

fn attempt(
    own: Credential,
    trust: TrustStore,
    server_auth: &CertAuth,
    users: &Registry,
) -> AuthAnswer {
    attempt_with(own, trust, server_auth, users, true)
}

/// As `attempt`; `rfc7427` false: neither side announced SIGNATURE_HASH_ALGORITHMS, so both
/// sign by their key's own method.
fn attempt_with(
    own: Credential,
    trust: TrustStore,
    server_auth: &CertAuth,
    users: &Registry,
    rfc7427: bool,
) -> AuthAnswer {
    let (mut client_sa, mut server_sa) = half_open();
    client_sa.signature_hashes = rfc7427;
    server_sa.signature_hashes = rfc7427;
    let certs = Arc::new(ClientCerts {
        own,
        trust,
        server: server(),
        unix_secs: NOW,
    });
    let auth = AuthInitiator::start_with_certificate(
        client_sa,
        &Identity::from_text("carol@example.com"),
        certs,
        esp_offer([0xc1, 0, 0, 2], t(1, 20, Some(256))),
        Policy::modern(),
        &SystemRandom::new(),
    )
    .expect("request");
    let esp = Policy::modern();
    let local = server();
    let mut ctx = auth_ctx(users, &local, &esp, [0x5e, 0, 0, 8]);
    ctx.certs = Some(server_auth);
    ctx.unix_secs = NOW;
    let answer = respond_auth(&server_sa, &auth.request, &ctx, &SystemRandom::new());
    if let AuthAnswer::Accepted { response, .. }
    | AuthAnswer::Refused {
        response: Some(response),
        ..
    } = &answer
    {
        let outcome = auth
            .on_response(response)
            .expect("a response the client reads");
        let accepted = matches!(answer, AuthAnswer::Accepted { .. });
        assert_eq!(matches!(outcome, AuthOutcome::Established(_)), accepted);
    }
    answer
}

#[test]
fn an_ecdsa_client_and_an_rsa_server_prove_themselves_to_each_other() {
    let (server_ca, client_ca) = (
        ca(&rcgen::PKCS_RSA_SHA256),
        ca(&rcgen::PKCS_ECDSA_P256_SHA256),
    );
    let Pki { server, carol, .. } = pki(&server_ca, &client_ca);
    let trust = TrustStore::from_pem(server_ca.pem.as_bytes(), None).expect("trust");
    match attempt(carol, trust, &server, &users_with_carol()) {
        AuthAnswer::Accepted { established, .. } => {
            assert_eq!(established.peer.display(), "carol@example.com");
        }
        AuthAnswer::Refused { why, .. } => panic!("{why}"),
        AuthAnswer::Continue { .. } => panic!("EAP"),
    }
}

#[test]
fn a_stranger_certificate_or_a_signing_psk_user_is_refused_and_told_so() {
    let (server_ca, client_ca) = (
        ca(&rcgen::PKCS_ECDSA_P256_SHA256),
        ca(&rcgen::PKCS_ECDSA_P256_SHA256),
    );
    let Pki {
        server,
        carol,
        stranger,
    } = pki(&server_ca, &client_ca);
    let trust = || TrustStore::from_pem(server_ca.pem.as_bytes(), None).expect("trust");
    let AuthAnswer::Refused { response, why } =
        attempt(stranger, trust(), &server, &users_with_carol())
    else {
        panic!("a stranger accepted");
    };
    assert_eq!(
        why,
        AuthRefusal::CertificateRefused {
            identity: "carol@example.com".into(),
            why: CertRefusal::Untrusted
        }
    );
    // The client read AUTHENTICATION_FAILED in it (`attempt` checks the outcome).
    assert!(response.is_some(), "an error notify is sent");
    // carol as a PSK user: her signature is not the method her record says.
    let mut psk_carol = users_with_carol();
    for g in psk_carol.0.values_mut() {
        g.auth = UserAuth::Psk(Zeroizing::new(b"carol's own key, 32 bytes long!!".to_vec()));
    }
    let AuthAnswer::Refused { why, .. } = attempt(carol, trust(), &server, &psk_carol) else {
        panic!("a PSK user accepted by signature");
    };
    assert!(
        matches!(why, AuthRefusal::AuthenticationFailed { .. }),
        "{why}"
    );
}

#[test]
fn without_rfc_7427_ecdsa_signs_by_its_own_method_and_an_rsa_server_says_why_it_cannot() {
    let p256 = &rcgen::PKCS_ECDSA_P256_SHA256;
    let (server_ca, client_ca) = (ca(p256), ca(p256));
    let rng = SystemRandom::new();
    let own = |ca: &Ca, alg, name: &str, serial| {
        let (cert, key) = leaf(ca, alg, name, serial, None);
        Credential::from_pem(cert.as_bytes(), key.as_bytes(), &rng).expect("credential")
    };
    let trust = |ca: &Ca| TrustStore::from_pem(ca.pem.as_bytes(), None).expect("trust");
    let server_key = own(&server_ca, p256, "vpn.example.com", 2);
    let ecdsa_server = CertAuth::new(server_key, Some(trust(&client_ca)));
    let carol = || own(&client_ca, p256, "carol@example.com", 3);
    let users = users_with_carol();
    match attempt_with(carol(), trust(&server_ca), &ecdsa_server, &users, false) {
        AuthAnswer::Accepted { established, .. } => {
            assert_eq!(established.peer.display(), "carol@example.com");
        }
        AuthAnswer::Refused { why, .. } => panic!("{why}"),
        AuthAnswer::Continue { .. } => panic!("EAP"),
    }
    let rsa = &rcgen::PKCS_RSA_SHA256;
    let rsa_key = own(&server_ca, rsa, "vpn.example.com", 4);
    let rsa_server = CertAuth::new(rsa_key, Some(trust(&client_ca)));
    let AuthAnswer::Refused { why, .. } =
        attempt_with(carol(), trust(&server_ca), &rsa_server, &users, false)
    else {
        panic!("an RSA server answered a client without RFC 7427");
    };
    assert!(why.to_string().contains("SHA-1"), "{why}");
}
