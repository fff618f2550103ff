//! A client's whole login as one state machine, for the tests, the bench and the loadtest's
//! simulated users: IKE_SA_INIT (sent again with the responder's cookie or group when it
//! asks), then IKE_AUTH by pre-shared key, certificate or password (EAP-MSCHAPv2 over
//! several exchanges). Bytes in, the next request or the end out; sockets, ports and
//! retransmission timing are the caller's.

use std::sync::Arc;

use ring::rand::SecureRandom;

use crate::identity::Identity;
use crate::ike_auth::{
    AuthInitiator, AuthOutcome, ClientCerts, EapInitiator, EapStep, Established, ServerTrust,
};
use crate::nat::NatFinding;
use crate::notify::NotifyType;
use crate::sa_init::{Advance, Endpoints, HalfOpen, InitiatorError, InitiatorInit};
use crate::suite::{DhGroup, Policy};

/// How the user proves itself.
#[derive(Clone)]
pub enum Credentials {
    /// A pre-shared key of its own.
    Psk(Vec<u8>),
    /// A certificate, and the CAs the server is checked against.
    Certificate(Arc<ClientCerts>),
    /// A password by EAP-MSCHAPv2 as `user`, the server checked against `server`.
    Password {
        /// The EAP identity.
        user: String,
        /// The password.
        password: String,
        /// The CAs and identity the server's certificate is checked against.
        server: Arc<ServerTrust>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.method())
    }
}

impl Credentials {
    /// The method's name: "psk", "certificate" or "eap".
    pub fn method(&self) -> &'static str {
        match self {
            Self::Psk(_) => "psk",
            Self::Certificate(_) => "certificate",
            Self::Password { .. } => "eap",
        }
    }
}

/// Who logs in, how, and what it offers.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// The IKE identity (IDi).
    pub identity: Identity,
    /// How it proves itself.
    pub credentials: Credentials,
    /// What it offers for IKE and ESP.
    pub policy: Policy,
    /// The group of its first KE.
    pub group: DhGroup,
    /// Its address and the server's, as NAT detection hashes them.
    pub endpoints: Endpoints,
    /// The SPI it receives ESP on (256 or above).
    pub esp_spi: [u8; 4],
}

/// Where a login stands.
#[derive(Debug)]
enum Stage {
    Init(Box<InitiatorInit>),
    Auth(Box<AuthInitiator>),
    Eap(Box<EapInitiator>),
    Over,
}

/// What a datagram led to.
#[derive(Debug)]
pub enum LoginStep {
    /// Send `Login::request`, the next request (to the NAT-T port once `Login::floated`).
    Send,
    /// Logged in: the SA's first CHILD_SA, and what NAT detection found.
    Established(Box<Established>, NatFinding),
    /// The server refused with this error.
    Refused(NotifyType),
    /// Not a response to the current request (a stray or late datagram): nothing changed.
    Ignored,
}

/// One user's login.
#[derive(Debug)]
pub struct Login {
    config: LoginConfig,
    stage: Stage,
    nat: NatFinding,
    /// The request to send now (again, on a retransmission).
    pub request: Vec<u8>,
    /// IKE_SA_INIT is done: later requests go to the NAT-T port (RFC 7296 §2.23), as the
    /// OS clients do whether or not a NAT was found.
    pub floated: bool,
}

impl Login {
    /// The first IKE_SA_INIT request of `config`.
    pub fn start(config: LoginConfig, rng: &dyn SecureRandom) -> Result<Self, InitiatorError> {
        let p = &config.policy;
        let init = InitiatorInit::start(
            p.ike_offer(&[]),
            p.clone(),
            config.group,
            config.endpoints,
            rng,
        )?;
        Ok(Self {
            request: init.request.clone(),
            config,
            stage: Stage::Init(Box::new(init)),
            nat: NatFinding::default(),
            floated: false,
        })
    }

    /// The authentication method.
    pub fn method(&self) -> &'static str {
        self.config.credentials.method()
    }

    /// Reads a datagram that may be the response to the current request.
    pub fn on_response(
        &mut self,
        bytes: &[u8],
        rng: &dyn SecureRandom,
    ) -> Result<LoginStep, InitiatorError> {
        match std::mem::replace(&mut self.stage, Stage::Over) {
            Stage::Init(init) => match init.advance(bytes, rng) {
                Advance::NotTaken(init, _) => {
                    self.stage = Stage::Init(init);
                    Ok(LoginStep::Ignored)
                }
                Advance::Again(init) => {
                    self.request = init.request.clone();
                    self.stage = Stage::Init(init);
                    Ok(LoginStep::Send)
                }
                Advance::Refused(why) => Ok(LoginStep::Refused(why)),
                Advance::Failed(e) => Err(e),
                Advance::Established(sa) => self.authenticate(*sa, rng),
            },
            Stage::Auth(auth) => match auth.on_response(bytes) {
                Err(InitiatorError::NotOurs) => {
                    self.stage = Stage::Auth(auth);
                    Ok(LoginStep::Ignored)
                }
                Err(e) => Err(e),
                Ok(AuthOutcome::Established(est)) => Ok(LoginStep::Established(est, self.nat)),
                Ok(AuthOutcome::Refused(why)) => Ok(LoginStep::Refused(why)),
            },
            Stage::Eap(mut eap) => match eap.on_response(bytes, rng) {
                Err(InitiatorError::NotOurs) => {
                    self.stage = Stage::Eap(eap);
                    Ok(LoginStep::Ignored)
                }
                Err(e) => Err(e),
                Ok(EapStep::Send) => {
                    self.request = eap.request.clone();
                    self.stage = Stage::Eap(eap);
                    Ok(LoginStep::Send)
                }
                Ok(EapStep::Established(est)) => Ok(LoginStep::Established(est, self.nat)),
                Ok(EapStep::Refused(why)) => Ok(LoginStep::Refused(why)),
            },
            Stage::Over => Ok(LoginStep::Ignored),
        }
    }

    /// IKE_SA_INIT done: IKE_AUTH's first request by the user's method.
    fn authenticate(
        &mut self,
        sa: HalfOpen,
        rng: &dyn SecureRandom,
    ) -> Result<LoginStep, InitiatorError> {
        self.nat = sa.nat;
        self.floated = true;
        let c = &self.config;
        let (offer, policy) = (c.policy.esp_offer(c.esp_spi, false), c.policy.clone());
        let (stage, request) = match &c.credentials {
            Credentials::Psk(psk) => {
                let a = AuthInitiator::start(sa, &c.identity, psk, offer, policy, rng)?;
                let request = a.request.clone();
                (Stage::Auth(Box::new(a)), request)
            }
            Credentials::Certificate(certs) => {
                let a = AuthInitiator::start_with_certificate(
                    sa,
                    &c.identity,
                    certs.clone(),
                    offer,
                    policy,
                    rng,
                )?;
                let request = a.request.clone();
                (Stage::Auth(Box::new(a)), request)
            }
            Credentials::Password {
                user,
                password,
                server,
            } => {
                let login = (user.as_str(), password.as_str());
                let e = EapInitiator::start(
                    sa,
                    &c.identity,
                    login,
                    server.clone(),
                    (offer, policy),
                    rng,
                )?;
                let request = e.request.clone();
                (Stage::Eap(Box::new(e)), request)
            }
        };
        self.stage = stage;
        self.request = request;
        Ok(LoginStep::Send)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use ring::rand::SystemRandom;

    use super::*;
    use crate::cookie::CookieJar;
    use crate::ike_sa::{AuthContext, IkeSa, SaEvent, Timing};
    use crate::sa_init::{respond_init, InitAnswer};
    use crate::test_support::{alice, auth_ctx, registry, server, Registry};

    const CLIENT: &str = "10.0.0.2:500";
    const SERVER: &str = "10.0.0.1:500";

    fn config(credentials: Credentials, group: DhGroup) -> LoginConfig {
        LoginConfig {
            identity: alice(),
            credentials,
            policy: Policy::modern(),
            group,
            endpoints: Endpoints {
                local: CLIENT.parse().expect("addr"),
                remote: SERVER.parse().expect("addr"),
                force_nat_t: false,
            },
            esp_spi: [0xc1, 0, 0, 9],
        }
    }

    /// Runs `login` against this crate's responder (a cookie asked for first when
    /// `cookie`), to its end; returns the end and the requests it took.
    fn against_the_responder(mut login: Login, users: &Registry, cookie: bool) -> (LoginStep, u32) {
        let rng = SystemRandom::new();
        let jar = CookieJar::new(&rng).expect("jar");
        let ends = Endpoints {
            local: SERVER.parse().expect("addr"),
            remote: CLIENT.parse().expect("addr"),
            force_nat_t: false,
        };
        let (local, esp) = (server(), Policy::modern());
        let ctx: AuthContext<'_> = auth_ctx(users, &local, &esp, [0x5e, 0, 0, 1]);
        let mut ike_sa: Option<IkeSa> = None;
        for requests in 1..=10 {
            let reply = match ike_sa.as_mut() {
                None => {
                    match respond_init(&login.request, ends, (&esp, None), (&jar, cookie), &rng) {
                        InitAnswer::Accepted(sa) => {
                            let response = sa.response.clone();
                            ike_sa = Some(IkeSa::new(*sa, Timing::default(), Instant::now()));
                            response
                        }
                        InitAnswer::Refused { reply, why } => {
                            reply.unwrap_or_else(|| panic!("{why:?}"))
                        }
                    }
                }
                Some(sa) => {
                    let events = sa.on_message(&login.request, Instant::now(), &ctx, &rng);
                    let sent = events.iter().find_map(|e| match e {
                        SaEvent::Send(b) => Some(b.clone()),
                        _ => None,
                    });
                    sent.expect("an answer")
                }
            };
            // A stray datagram first: ignored, nothing lost.
            assert!(matches!(
                login.on_response(&[0u8; 40], &rng),
                Ok(LoginStep::Ignored)
            ));
            match login.on_response(&reply, &rng).expect("taken") {
                LoginStep::Send => continue,
                end => return (end, requests),
            }
        }
        panic!("no end after ten requests");
    }

    #[test]
    fn a_psk_user_logs_in_after_a_cookie_and_another_group() {
        let rng = SystemRandom::new();
        let psk = Credentials::Psk(b"alice's own key, 32 bytes long!!".to_vec());
        // P-384 first: the responder (Curve25519 first) asks for its own group again.
        let login = Login::start(config(psk, DhGroup::Ecp384), &rng).expect("start");
        assert!(!login.floated);
        let (end, requests) = against_the_responder(login, &registry(), true);
        let LoginStep::Established(est, nat) = end else {
            panic!("{end:?}")
        };
        assert_eq!(est.peer, server());
        assert!(!nat.peer_behind_nat && !nat.self_behind_nat);
        assert!(
            requests >= 3,
            "a cookie, then IKE_SA_INIT, then IKE_AUTH: {requests}"
        );
    }

    #[test]
    fn a_wrong_key_ends_refused() {
        let rng = SystemRandom::new();
        let wrong = Credentials::Psk(b"not alice's key, though as long!".to_vec());
        let login = Login::start(config(wrong, DhGroup::Curve25519), &rng).expect("start");
        assert_eq!(login.method(), "psk");
        let (end, _) = against_the_responder(login, &registry(), false);
        assert!(
            matches!(end, LoginStep::Refused(NotifyType::AUTHENTICATION_FAILED)),
            "{end:?}"
        );
    }
}
