//! IKE_AUTH with EAP-MSCHAPv2 between this crate's initiator and responder: a password user
//! logs in over five exchanges and both sides hold the same CHILD_SA; a wrong password, an
//! unknown user, a locked user and a PSK user trying EAP are each refused with
//! AUTHENTICATION_FAILED and their reason, after the same exchanges (no user enumeration);
//! without a server certificate EAP is refused.

use std::sync::Arc;

use ring::rand::SystemRandom;

use super::*;
use crate::certs::{CertAuth, Credential, TrustStore};
use crate::eap::mschapv2::NtHash;
use crate::identity::Identity;
use crate::ike_sa::AuthContext;
use crate::notify::NotifyType;
use crate::protected;
use crate::suite::Policy;
use crate::test_support::{
    auth_ctx, ca, esp_offer, half_open, leaf, registry, server, t, Registry, NOW,
};

const PASSWORD: &str = "correct horse battery staple";

/// The registry with bob, a password user.
fn users() -> Registry {
    let mut users = registry();
    let mut grant = users.0[&crate::test_support::alice()].clone();
    grant.auth = UserAuth::Eap(NtHash::of_password(PASSWORD));
    users.0.insert(Identity::from_text("bob"), grant);
    users
}

/// `Registry`, every user locked.
struct Locked(Registry);

impl Users for Locked {
    fn find(&self, id: &Identity) -> Option<Grant> {
        self.0.find(id)
    }
    fn locked(&self, _: &Identity) -> bool {
        true
    }
}

/// The server's certificate and key, and the CA a client checks it by.
fn server_pki() -> (CertAuth, TrustStore) {
    let authority = ca(&rcgen::PKCS_ECDSA_P256_SHA256);
    let (cert, key) = leaf(
        &authority,
        &rcgen::PKCS_ECDSA_P256_SHA256,
        "vpn.example.com",
        2,
        None,
    );
    let own = Credential::from_pem(cert.as_bytes(), key.as_bytes(), &SystemRandom::new())
        .expect("credential");
    let trust = TrustStore::from_pem(authority.pem.as_bytes(), None).expect("trust");
    (CertAuth::new(own, None), trust)
}

/// Both sides' ends: the server's answer to the last request, and the client's view.
struct Ends {
    server: Result<Box<Established>, AuthRefusal>,
    client: EapStep,
    exchanges: u32,
}

/// `user` logs in with `password` against `users` (the server with a certificate, unless
/// `certs` is false).
fn log_in(user: &str, password: &str, users: &dyn Users, certs: bool) -> Ends {
    let rng = SystemRandom::new();
    let (client_sa, server_sa) = half_open();
    let (server_auth, trust) = server_pki();
    let trust = Arc::new(ServerTrust {
        trust,
        server: server(),
        unix_secs: NOW,
    });
    let offer = esp_offer([0xc1, 0, 0, 3], t(1, 20, Some(256)));
    let mut client = EapInitiator::start(
        client_sa,
        &Identity::from_text("10.0.0.2"),
        (user, password),
        trust,
        (offer, Policy::modern()),
        &rng,
    )
    .expect("message 1");
    let (local, esp, nobody) = (server(), Policy::modern(), registry());
    let mut ctx = AuthContext {
        users,
        ..auth_ctx(&nobody, &local, &esp, [0x5e, 0, 0, 9])
    };
    ctx.unix_secs = NOW;
    if certs {
        ctx.certs = Some(&server_auth);
    }
    let mut conversation: Option<Box<EapServer>> = None;
    for exchanges in 1..=6 {
        let opened = protected::open(&server_sa, &client.request, true).expect("opens");
        let answer = match conversation.take() {
            Some(eap) => eap.step(&server_sa, &opened, &ctx, &rng),
            None => respond_auth_opened(&server_sa, &opened, &ctx, &rng),
        };
        let (response, server_end) = match answer {
            AuthAnswer::Continue { response, eap } => {
                conversation = Some(eap);
                (response, None)
            }
            AuthAnswer::Accepted {
                established,
                response,
            } => (response, Some(Ok(established))),
            AuthAnswer::Refused { response, why } => {
                (response.expect("a refusal answered"), Some(Err(why)))
            }
        };
        let step = client
            .on_response(&response, &rng)
            .expect("the client reads it");
        if let Some(server) = server_end {
            return Ends {
                server,
                client: step,
                exchanges,
            };
        }
        assert!(matches!(step, EapStep::Send), "{step:?}");
    }
    panic!("no end after six exchanges");
}

#[test]
fn a_password_user_logs_in_and_both_sides_hold_the_same_child_sa() {
    let ends = log_in("bob", PASSWORD, &users(), true);
    assert_eq!(
        ends.exchanges, 5,
        "message 1, identity, response, acknowledgement, AUTH"
    );
    let ours = ends.server.expect("accepted");
    let EapStep::Established(theirs) = ends.client else {
        panic!("{:?}", ends.client)
    };
    assert_eq!(
        ours.peer,
        Identity::from_text("bob"),
        "the EAP identity is the user"
    );
    assert_eq!(theirs.peer, server());
    assert_eq!(
        ours.child, theirs.child,
        "the same SPIs, keys and selectors"
    );
    assert_eq!(ours.assignment.v4, Some("10.77.0.2".parse().expect("v4")));
    // A DOMAIN\ in front of the name is what Windows sends; the hash ignores it.
    let ends = log_in("CORP\\bob", PASSWORD, &users(), true);
    assert!(
        ends.server.is_err(),
        "CORP\\bob is not a user name in the registry"
    );
}

#[test]
fn wrong_passwords_unknown_locked_and_psk_users_are_refused_by_reason() {
    let reason = |ends: Ends| {
        assert!(
            matches!(
                ends.client,
                EapStep::Refused(NotifyType::AUTHENTICATION_FAILED)
            ),
            "{:?}",
            ends.client
        );
        match ends.server {
            Err(AuthRefusal::AuthenticationFailed { why, .. }) => why,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        reason(log_in("bob", "wrong", &users(), true)),
        "wrong password"
    );
    assert_eq!(
        reason(log_in("carol", PASSWORD, &users(), true)),
        "no such user"
    );
    assert_eq!(
        reason(log_in("bob", PASSWORD, &Locked(users()), true)),
        "locked after repeated failures"
    );
    assert_eq!(
        reason(log_in("alice@example.com", PASSWORD, &users(), true)),
        "not a password (EAP) user"
    );
    let why = reason(log_in("bob", PASSWORD, &users(), false));
    assert!(why.contains("no certificate"), "{why}");
    // Nothing on the wire tells who exists: an unknown or locked user is challenged and
    // refused after its response, as a wrong password is.
    let wrong = log_in("bob", "wrong", &users(), true).exchanges;
    assert_eq!(wrong, 3, "message 1, identity, response");
    assert_eq!(log_in("carol", PASSWORD, &users(), true).exchanges, wrong);
    assert_eq!(
        log_in("bob", PASSWORD, &Locked(users()), true).exchanges,
        wrong
    );
}
