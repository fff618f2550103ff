//! IKE_AUTH with a PSK between this crate's initiator and responder: the same CHILD_SA on
//! both sides, the addresses and DNS from the grant, selectors narrowed to it; a wrong key,
//! an unknown user, a forged message and a proposal with nothing in common each refused
//! with their reason.

use ring::rand::SystemRandom;

use super::*;
use crate::identity::{IdType, Identity};
use crate::notify::NotifyType;
use crate::selectors::TrafficSelector;
use crate::suite::{Encr, Policy};
use crate::test_support::{alice, auth_ctx, esp_offer, half_open, registry, server, t};

#[test]
fn a_psk_user_gets_the_same_child_sa_on_both_sides() {
    let (client_sa, server_sa) = half_open();
    let offer = esp_offer([0xc1, 0, 0, 1], t(1, 28, None));
    let auth = AuthInitiator::start(
        client_sa,
        &alice(),
        b"alice's own key, 32 bytes long!!",
        offer,
        Policy::modern(),
        &SystemRandom::new(),
    )
    .expect("request");
    let answer = respond_auth(
        &server_sa,
        &auth.request,
        &auth_ctx(&registry(), &server(), &Policy::modern(), [0x5e, 0, 0, 7]),
        &SystemRandom::new(),
    );
    let (ours, response) = match answer {
        AuthAnswer::Accepted {
            established,
            response,
        } => (established, response),
        AuthAnswer::Refused { why, .. } => panic!("{why}"),
        AuthAnswer::Continue { .. } => panic!("EAP"),
    };
    let theirs = match auth.on_response(&response).expect("response") {
        AuthOutcome::Established(e) => e,
        AuthOutcome::Refused(n) => panic!("{n:?}"),
    };
    assert_eq!(ours.peer, alice());
    assert_eq!(theirs.peer, server());
    assert_eq!(
        ours.child, theirs.child,
        "the same SPIs, suite, keys and selectors"
    );
    assert_eq!(ours.child.suite.encr, Encr::ChaCha20Poly1305);
    assert_eq!(
        (ours.child.spi_i, ours.child.spi_r),
        ([0xc1, 0, 0, 1], [0x5e, 0, 0, 7])
    );
    assert_eq!(ours.child.i_to_r.encr.len(), 36);
    assert_ne!(ours.child.i_to_r, ours.child.r_to_i);
    assert_eq!(theirs.assignment, registry().0[&alice()].assignment);
    // Everything asked for, narrowed: the client's own addresses, and what it may reach.
    assert_eq!(
        ours.child.ts_i,
        vec![
            TrafficSelector::prefix("10.77.0.2".parse().expect("a"), 32),
            TrafficSelector::prefix("fd77::2".parse().expect("a"), 128),
        ]
    );
    assert_eq!(ours.child.ts_r, registry().0[&alice()].reach);
}

fn refused(answer: AuthAnswer) -> (Option<Vec<u8>>, AuthRefusal) {
    match answer {
        AuthAnswer::Refused { response, why } => (response, why),
        AuthAnswer::Accepted { .. } | AuthAnswer::Continue { .. } => panic!("not refused"),
    }
}

#[test]
fn a_wrong_key_or_an_unknown_user_is_refused_and_told_so() {
    let (client_sa, server_sa) = half_open();
    let offer = esp_offer([1, 2, 3, 4], t(1, 20, Some(256)));
    let auth = AuthInitiator::start(
        client_sa,
        &alice(),
        b"not alice's key",
        offer,
        Policy::modern(),
        &SystemRandom::new(),
    )
    .expect("request");
    let (response, why) = refused(respond_auth(
        &server_sa,
        &auth.request,
        &auth_ctx(&registry(), &server(), &Policy::modern(), [9; 4]),
        &SystemRandom::new(),
    ));
    assert_eq!(
        why,
        AuthRefusal::AuthenticationFailed {
            identity: "alice@example.com".into(),
            why: "wrong pre-shared key"
        }
    );
    let response = response.expect("an encrypted AUTHENTICATION_FAILED");
    assert!(matches!(
        auth.on_response(&response),
        Ok(AuthOutcome::Refused(NotifyType::AUTHENTICATION_FAILED))
    ));

    let (client_sa, server_sa) = half_open();
    let mallory = Identity {
        kind: IdType::FQDN,
        data: b"mallory".to_vec(),
    };
    let auth = AuthInitiator::start(
        client_sa,
        &mallory,
        b"whatever",
        esp_offer([1; 4], t(1, 28, None)),
        Policy::modern(),
        &SystemRandom::new(),
    )
    .expect("request");
    let (_, why) = refused(respond_auth(
        &server_sa,
        &auth.request,
        &auth_ctx(&registry(), &server(), &Policy::modern(), [9; 4]),
        &SystemRandom::new(),
    ));
    assert!(matches!(
        why,
        AuthRefusal::AuthenticationFailed {
            why: "no such user",
            ..
        }
    ));
}

#[test]
fn forged_requests_and_foreign_proposals_are_refused() {
    let (client_sa, server_sa) = half_open();
    let psk = b"alice's own key, 32 bytes long!!";
    let offer = esp_offer([1; 4], t(1, 12, Some(128)));
    let mut lenient = Policy::modern();
    lenient.encr.push(Encr::AesCbc { key_bits: 128 });
    let auth = AuthInitiator::start(
        client_sa,
        &alice(),
        psk,
        offer,
        lenient,
        &SystemRandom::new(),
    )
    .expect("request");
    let mut forged = auth.request.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let (response, why) = refused(respond_auth(
        &server_sa,
        &forged,
        &auth_ctx(&registry(), &server(), &Policy::modern(), [9; 4]),
        &SystemRandom::new(),
    ));
    assert_eq!(
        (response, why),
        (None, AuthRefusal::BadIcv),
        "dropped unanswered"
    );
    let (response, why) = refused(respond_auth(
        &server_sa,
        &auth.request,
        &auth_ctx(&registry(), &server(), &Policy::modern(), [9; 4]),
        &SystemRandom::new(),
    ));
    assert!(matches!(why, AuthRefusal::NoProposalChosen { .. }), "{why}");
    assert!(matches!(
        auth.on_response(&response.expect("a response")),
        Ok(AuthOutcome::Refused(NotifyType::NO_PROPOSAL_CHOSEN))
    ));
}
