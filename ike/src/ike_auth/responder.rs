//! The responder's IKE_AUTH: open the request, find the user by identity, check its AUTH
//! (its own pre-shared key, or an RFC 7427 signature by a certificate naming it under a
//! trusted CA), choose the ESP suite, narrow the traffic selectors, give the addresses, and answer with
//! its own ID and AUTH, the CP reply, SA and selectors; or answer with the error that says
//! why, encrypted, as RFC 7296 §2.21.2 asks.

use ring::rand::SecureRandom;
use zeroize::Zeroizing;

use super::eap_responder::EapServer;
use super::{child_keys, seal_auth, ChildSa, Established, AUTH_MESSAGE_ID};
use crate::certs::{
    cert_body, is_classic, read_cert_body, verify_classic_auth, verify_signature_auth, CertRefusal,
    PeerRole,
};
use crate::config_payload::{Assignment, ConfigPayload};
use crate::eap::mschapv2::NtHash;
use crate::header::ExchangeType;
use crate::identity::{
    auth_body, psk_auth, psk_auth_holds, read_auth, signed_octets, AuthMethod, Identity,
};
use crate::ike_sa::AuthContext;
use crate::notify::{Notify, NotifyType};
use crate::payloads::{Payload, PayloadType};
use crate::proposals::{read_sa, write_sa, ProtocolId};
use crate::protected::{self, Opened, ProtectedError};
use crate::sa_init::HalfOpen;
use crate::selectors::{narrow, read_ts, ts_body, TrafficSelector};
use crate::suite::{choose, Policy};

/// How a user proves who it is.
#[derive(Clone)]
pub enum UserAuth {
    /// A pre-shared key of its own (the server answers with the same key).
    Psk(Zeroizing<Vec<u8>>),
    /// An RFC 7427 signature by a certificate that names its identity, issued under a trusted
    /// CA (the server answers with its own certificate).
    Certificate,
    /// A password, by EAP-MSCHAPv2 (the server authenticates by its certificate first): the
    /// NT hash of it.
    Eap(NtHash),
}

/// What a user is granted once authenticated (Debug leaves the key out).
#[derive(Clone)]
pub struct Grant {
    /// How it authenticates.
    pub auth: UserAuth,
    /// Its virtual addresses, DNS servers and split-tunnel subnets.
    pub assignment: Assignment,
    /// What it may reach (the responder-side selectors are narrowed to these).
    pub reach: Vec<TrafficSelector>,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("assignment", &self.assignment)
            .field("reach", &self.reach)
            .finish_non_exhaustive()
    }
}

/// Where the responder finds users (the registry, in the daemon).
pub trait Users {
    /// The grant of the user with identity `id`, if there is one.
    fn find(&self, id: &Identity) -> Option<Grant>;

    /// Whether `id` may not try a password now (locked after failures).
    fn locked(&self, _id: &Identity) -> bool {
        false
    }
}

/// Why an IKE_AUTH request did not establish a CHILD_SA.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthRefusal {
    /// Not an IKE_AUTH request of this SA, or unreadable: dropped, no answer.
    #[error("not an IKE_AUTH request of this SA: {0}")]
    NotOurs(&'static str),
    /// The Encrypted payload did not open (forged, or another key): dropped.
    #[error("the Encrypted payload does not open")]
    BadIcv,
    /// A payload it must carry is missing or unreadable.
    #[error("missing or unusable {0}")]
    Missing(&'static str),
    /// No such user, a method other than the user's, or a wrong key (answered
    /// AUTHENTICATION_FAILED).
    #[error("authentication failed for {identity}: {why}")]
    AuthenticationFailed {
        /// The identity given, as people read it.
        identity: String,
        /// What failed.
        why: &'static str,
    },
    /// The user's certificate or signature was refused (answered AUTHENTICATION_FAILED).
    #[error("certificate of {identity} refused: {why}")]
    CertificateRefused {
        /// The identity given.
        identity: String,
        /// What is wrong with it.
        why: CertRefusal,
    },
    /// No acceptable ESP proposal (answered NO_PROPOSAL_CHOSEN).
    #[error("no ESP proposal chosen for {identity}; offered: {offered}")]
    NoProposalChosen {
        /// The identity.
        identity: String,
        /// The offer.
        offered: String,
    },
    /// The selectors asked for lie outside what the user may reach (answered
    /// TS_UNACCEPTABLE).
    #[error("traffic selectors of {0} unacceptable")]
    TsUnacceptable(String),
    /// An address was asked for and there is none (answered INTERNAL_ADDRESS_FAILURE).
    #[error("no address for {0}")]
    NoAddress(String),
}

/// The responder's answer.
#[derive(Debug)]
pub enum AuthAnswer {
    /// Established: send `response`; install `established.child`.
    Accepted {
        /// What was established.
        established: Box<Established>,
        /// The response to send.
        response: Vec<u8>,
    },
    /// EAP goes on: send `response`; the next IKE_AUTH request goes to `eap`.
    Continue {
        /// The response to send.
        response: Vec<u8>,
        /// The conversation, waiting for the client's next message.
        eap: Box<EapServer>,
    },
    /// Nothing established; `response` (an encrypted error notify) is sent if there is one.
    Refused {
        /// What to send back, if anything.
        response: Option<Vec<u8>>,
        /// Why.
        why: AuthRefusal,
    },
}

/// What answers one IKE_AUTH request: the SA, randomness, and the request's message ID.
pub(super) struct Answerer<'a> {
    pub(super) sa: &'a HalfOpen,
    pub(super) rng: &'a dyn SecureRandom,
    pub(super) message_id: u32,
}

impl Answerer<'_> {
    /// An encrypted IKE_AUTH response carrying `payloads`.
    pub(super) fn seal(&self, payloads: &[Payload<'_>]) -> Option<Vec<u8>> {
        seal_auth(self.sa, (true, self.message_id), payloads, self.rng).ok()
    }

    /// The refusal, with its error notify (after `before`, an EAP-Failure say) sealed when
    /// the SA can still carry one.
    pub(super) fn refuse_after(
        &self,
        before: &[Payload<'_>],
        kind: Option<NotifyType>,
        why: AuthRefusal,
    ) -> AuthAnswer {
        let response = kind.and_then(|k| {
            let body = Notify::new(k, &[]).body();
            let mut out = before.to_vec();
            out.push(Payload::plain(PayloadType::NOTIFY, &body));
            self.seal(&out)
        });
        AuthAnswer::Refused { response, why }
    }

    /// The refusal, with its error notify.
    pub(super) fn refuse(&self, kind: Option<NotifyType>, why: AuthRefusal) -> AuthAnswer {
        self.refuse_after(&[], kind, why)
    }
}

fn open(sa: &HalfOpen, bytes: &[u8]) -> Result<Opened, AuthRefusal> {
    protected::open(sa, bytes, true).map_err(|e| match e {
        ProtectedError::BadIcv => AuthRefusal::BadIcv,
        _ => AuthRefusal::NotOurs("not an IKE_AUTH request of this SA"),
    })
}

/// The responder's rules for the IKE_AUTH request `bytes` on the half-open `sa`: `ctx` finds
/// the user and gives this server's identity, the ESP policy, the SPI this side receives the
/// CHILD_SA on (chosen by the caller: it names the owning worker) and the certificates.
pub fn respond_auth(
    sa: &HalfOpen,
    bytes: &[u8],
    ctx: &AuthContext<'_>,
    rng: &dyn SecureRandom,
) -> AuthAnswer {
    match open(sa, bytes) {
        Ok(req) => respond_auth_opened(sa, &req, ctx, rng),
        Err(why) => AuthAnswer::Refused {
            response: None,
            why,
        },
    }
}

/// As `respond_auth`, for a request already opened (a whole one, or one put together from
/// its fragments).
pub fn respond_auth_opened(
    sa: &HalfOpen,
    req: &Opened,
    ctx: &AuthContext<'_>,
    rng: &dyn SecureRandom,
) -> AuthAnswer {
    let w = req.what;
    if w.exchange != ExchangeType::IKE_AUTH || w.response || w.message_id != AUTH_MESSAGE_ID {
        return AuthAnswer::Refused {
            response: None,
            why: AuthRefusal::NotOurs("header"),
        };
    }
    let to = Answerer {
        sa,
        rng,
        message_id: AUTH_MESSAGE_ID,
    };
    let Ok(payloads) = req.payloads() else {
        return to.refuse(
            Some(NotifyType::INVALID_SYNTAX),
            AuthRefusal::Missing("inner payloads"),
        );
    };
    let find = |k: PayloadType| payloads.iter().find(|p| p.kind == k).map(|p| p.body);
    let Some(idi_body) = find(PayloadType::IDI) else {
        return to.refuse(
            Some(NotifyType::INVALID_SYNTAX),
            AuthRefusal::Missing("IDi"),
        );
    };
    let Ok(idi) = Identity::read(idi_body) else {
        return to.refuse(
            Some(NotifyType::INVALID_SYNTAX),
            AuthRefusal::Missing("IDi"),
        );
    };
    // No AUTH: the client asks to log in by EAP (RFC 7296 §2.16).
    let Some(auth) = find(PayloadType::AUTH) else {
        return super::eap_responder::start(&to, req, (idi, idi_body), ctx);
    };
    let auth_failed = Some(NotifyType::AUTHENTICATION_FAILED);
    let Some(grant) = ctx.users.find(&idi) else {
        let why = AuthRefusal::AuthenticationFailed {
            identity: idi.display(),
            why: "no such user",
        };
        return to.refuse(auth_failed, why);
    };
    let peer = (&idi, idi_body, auth);
    let (peer_certs, own_auth) = match check_peer(sa, &payloads, peer, &grant, ctx)
        .and_then(|certs| own_auth(sa, &grant, ctx, rng).map(|a| (certs, a)))
    {
        Ok(a) => a,
        Err(why) => return to.refuse(auth_failed, why),
    };
    let mut answer = child(
        &to,
        &payloads,
        (idi, grant, Some(ctx.local), own_auth),
        (ctx.esp, ctx.child_spi),
    );
    if let AuthAnswer::Accepted { established, .. } = &mut answer {
        established.peer_certs = peer_certs;
    }
    answer
}

/// Checks the peer's AUTH over its signed octets by the user's own method; the certificates
/// it was checked with (none with a PSK).
fn check_peer(
    sa: &HalfOpen,
    payloads: &[Payload<'_>],
    (idi, idi_body, auth): (&Identity, &[u8], &[u8]),
    grant: &Grant,
    ctx: &AuthContext<'_>,
) -> Result<Vec<Vec<u8>>, AuthRefusal> {
    let failed = |why| AuthRefusal::AuthenticationFailed {
        identity: idi.display(),
        why,
    };
    let refused = |why| AuthRefusal::CertificateRefused {
        identity: idi.display(),
        why,
    };
    let prf = sa.suite.prf.unwrap_or(crate::prf::Prf::HmacSha256);
    // The initiator signed its IDi body as it sent it (reserved bytes and all).
    let signed = signed_octets(prf, &sa.request, &sa.nr, &sa.keys.sk_pi, idi_body);
    match (&grant.auth, read_auth(auth)) {
        (UserAuth::Psk(psk), Ok((AuthMethod::PSK, value))) => {
            if psk_auth_holds(prf, psk, &signed, value) {
                Ok(Vec::new())
            } else {
                Err(failed("wrong pre-shared key"))
            }
        }
        (UserAuth::Certificate, Ok((method, value)))
            if method == AuthMethod::DIGITAL_SIGNATURE || is_classic(method) =>
        {
            let trust = ctx.certs.and_then(|c| c.trust.as_ref());
            let trust = trust.ok_or(refused(CertRefusal::NotConfigured))?;
            let chain: Vec<&[u8]> = payloads
                .iter()
                .filter(|p| p.kind == PayloadType::CERT)
                .filter_map(|p| read_cert_body(p.body))
                .collect();
            let role = PeerRole::Client;
            trust
                .verify(&chain, (idi, role), ctx.unix_secs)
                .map_err(refused)?;
            let ee = chain.first().ok_or(refused(CertRefusal::Missing))?;
            if method == AuthMethod::DIGITAL_SIGNATURE {
                verify_signature_auth(ee, &signed, value).map_err(refused)?;
            } else {
                verify_classic_auth(ee, method, &signed, value).map_err(refused)?;
            }
            Ok(chain.iter().map(|c| c.to_vec()).collect())
        }
        (UserAuth::Eap(_), _) => Err(failed("an AUTH without EAP for a password (EAP) user")),
        (UserAuth::Psk(_), _) => Err(failed("not a pre-shared-key AUTH for a PSK user")),
        (UserAuth::Certificate, _) => Err(failed(
            "not a signature AUTH (RFC 7427, or RSA or ECDSA's own) for a certificate user",
        )),
    }
}

/// This side's CERT payloads' bodies and its AUTH payload's body.
pub(super) type OwnAuth = (Vec<Vec<u8>>, Vec<u8>);

/// This side's CERT payloads' bodies and AUTH payload's body, by the user's method.
fn own_auth(
    sa: &HalfOpen,
    grant: &Grant,
    ctx: &AuthContext<'_>,
    rng: &dyn SecureRandom,
) -> Result<OwnAuth, AuthRefusal> {
    match &grant.auth {
        UserAuth::Psk(psk) => Ok((Vec::new(), shared_key_auth(sa, ctx.local, psk))),
        UserAuth::Certificate | UserAuth::Eap(_) => own_signature(sa, ctx, rng),
    }
}

/// The signed octets of this side (the responder) over its identity `local`.
pub(super) fn responder_octets(sa: &HalfOpen, local: &Identity) -> Vec<u8> {
    let prf = sa.suite.prf.unwrap_or(crate::prf::Prf::HmacSha256);
    signed_octets(prf, &sa.response, &sa.ni, &sa.keys.sk_pr, &local.body())
}

/// This side's AUTH body with a shared key (a PSK, or EAP's MSK).
pub(super) fn shared_key_auth(sa: &HalfOpen, local: &Identity, key: &[u8]) -> Vec<u8> {
    let prf = sa.suite.prf.unwrap_or(crate::prf::Prf::HmacSha256);
    let signed = responder_octets(sa, local);
    auth_body(AuthMethod::PSK, &psk_auth(prf, key, &signed))
}

/// This side's CERT bodies and an AUTH body signed by its certificate's key.
pub(super) fn own_signature(
    sa: &HalfOpen,
    ctx: &AuthContext<'_>,
    rng: &dyn SecureRandom,
) -> Result<OwnAuth, AuthRefusal> {
    let signed = responder_octets(sa, ctx.local);
    match ctx.certs {
        Some(certs) => {
            // RFC 7427 only for a peer that announced it (§4); else the key's own method.
            let (method, data) = if sa.signature_hashes {
                certs
                    .own
                    .sign_auth(&signed, rng)
                    .map(|d| (AuthMethod::DIGITAL_SIGNATURE, d))
            } else {
                certs.own.sign_classic(&signed, rng)
            }
            .map_err(|e| {
                let why = CertRefusal::Other(format!("the server cannot sign for this peer: {e}"));
                AuthRefusal::CertificateRefused {
                    identity: ctx.local.display(),
                    why,
                }
            })?;
            let chain = certs.own.chain().iter().map(|c| cert_body(c)).collect();
            Ok((chain, auth_body(method, &data)))
        }
        None => Err(AuthRefusal::CertificateRefused {
            identity: ctx.local.display(),
            why: CertRefusal::NotConfigured,
        }),
    }
}

/// The CHILD_SA half of an authenticated request, and the response: this side's ID (`idr`,
/// left out after EAP, which sent it first), CERTs and AUTH, then CP, SA and selectors.
pub(super) fn child(
    to: &Answerer<'_>,
    payloads: &[Payload<'_>],
    (idi, grant, idr, (certs, auth)): (Identity, Grant, Option<&Identity>, OwnAuth),
    (esp, spi_r): (&Policy, [u8; 4]),
) -> AuthAnswer {
    let sa = to.sa;
    let who = idi.display();
    let find = |k: PayloadType| payloads.iter().find(|p| p.kind == k).map(|p| p.body);
    let offer = find(PayloadType::SA).and_then(|b| read_sa(b).ok());
    let (tsi, tsr) = (
        find(PayloadType::TSI).and_then(|b| read_ts(b).ok()),
        find(PayloadType::TSR).and_then(|b| read_ts(b).ok()),
    );
    let (Some(offer), Some(tsi), Some(tsr)) = (offer, tsi, tsr) else {
        return to.refuse(
            Some(NotifyType::INVALID_SYNTAX),
            AuthRefusal::Missing("SA, TSi or TSr"),
        );
    };
    // The first CHILD_SA takes its keys from the IKE SA's exchange: a DH group offered in
    // IKE_AUTH is ignored (RFC 7296 §1.2), as strongSwan does.
    let offer: Vec<_> = offer
        .into_iter()
        .map(|mut p| {
            p.transforms
                .retain(|t| t.kind != crate::proposals::TransformType::DH);
            p
        })
        .collect();
    let chosen = match choose(&offer, ProtocolId::ESP, esp) {
        Ok(c) => c,
        Err(e) => {
            let why = AuthRefusal::NoProposalChosen {
                identity: who,
                offered: e.offered,
            };
            return to.refuse(Some(NotifyType::NO_PROPOSAL_CHOSEN), why);
        }
    };
    let Some(spi_i) = chosen.proposal.esp_spi() else {
        return to.refuse(
            Some(NotifyType::INVALID_SYNTAX),
            AuthRefusal::Missing("a 4-byte ESP SPI of 256 or above"),
        );
    };
    let cp = find(PayloadType::CP).and_then(|b| ConfigPayload::read(b).ok());
    // The client's side: its virtual addresses (or, without CP, what it asked within reach).
    let own: Vec<TrafficSelector> = [
        grant
            .assignment
            .v4
            .map(|a| TrafficSelector::prefix(a.into(), 32)),
        grant
            .assignment
            .v6
            .map(|(a, _)| TrafficSelector::prefix(a.into(), 128)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if cp.is_some() && own.is_empty() {
        return to.refuse(
            Some(NotifyType::INTERNAL_ADDRESS_FAILURE),
            AuthRefusal::NoAddress(who),
        );
    }
    let ts_i = narrow(&tsi, &own);
    let ts_r = narrow(&tsr, &grant.reach);
    if ts_i.is_empty() || ts_r.is_empty() {
        return to.refuse(
            Some(NotifyType::TS_UNACCEPTABLE),
            AuthRefusal::TsUnacceptable(who),
        );
    }
    let prf = sa.suite.prf.unwrap_or(crate::prf::Prf::HmacSha256);
    let Ok((i_to_r, r_to_i)) = child_keys(prf, &sa.keys.sk_d, (&sa.ni, &sa.nr), &chosen.suite)
    else {
        return to.refuse(None, AuthRefusal::Missing("ESP key lengths"));
    };
    let mut answer = chosen.proposal.clone();
    answer.spi = spi_r.to_vec();
    let sa_body = write_sa(&[answer]);
    let cp_reply = cp.map(|c| ConfigPayload::reply(&c, &grant.assignment).body());
    let (idr, tsi_body, tsr_body) = (idr.map(Identity::body), ts_body(&ts_i), ts_body(&ts_r));
    let mut out: Vec<Payload<'_>> = idr
        .iter()
        .map(|b| Payload::plain(PayloadType::IDR, b))
        .collect();
    out.extend(certs.iter().map(|c| Payload::plain(PayloadType::CERT, c)));
    out.push(Payload::plain(PayloadType::AUTH, &auth));
    if let Some(c) = &cp_reply {
        out.push(Payload::plain(PayloadType::CP, c));
    }
    // MOBIKE when the client speaks it: its SA may then move (RFC 4555 §3.3).
    let mobike = super::initiator::has_notify(payloads, NotifyType::MOBIKE_SUPPORTED);
    let mobike_body = Notify::new(NotifyType::MOBIKE_SUPPORTED, &[]).body();
    if mobike {
        out.push(Payload::plain(PayloadType::NOTIFY, &mobike_body));
    }
    out.extend([
        Payload::plain(PayloadType::SA, &sa_body),
        Payload::plain(PayloadType::TSI, &tsi_body),
        Payload::plain(PayloadType::TSR, &tsr_body),
    ]);
    let Some(response) = to.seal(&out) else {
        return to.refuse(None, AuthRefusal::Missing("room for the response"));
    };
    AuthAnswer::Accepted {
        established: Box::new(Established {
            peer: idi,
            child: ChildSa {
                spi_i,
                spi_r,
                suite: chosen.suite,
                i_to_r,
                r_to_i,
                ts_i,
                ts_r,
            },
            assignment: grant.assignment,
            peer_certs: Vec::new(),
            mobike,
        }),
        response,
    }
}
