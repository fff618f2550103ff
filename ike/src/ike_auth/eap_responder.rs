//! IKE_AUTH with EAP-MSCHAPv2, the responder's side (RFC 7296 §2.16). A first IKE_AUTH
//! request without AUTH asks for EAP: the server answers with its ID, certificate and
//! signature, and asks for the EAP identity. Then, one IKE_AUTH exchange each: the identity
//! (the user looked up, a lock checked, a 16-byte challenge sent), the MS-CHAPv2 response
//! (checked against the user's NT hash; the authenticator response sent), the peer's
//! acknowledgement (EAP-Success sent), and last the peer's AUTH made with the MSK, checked,
//! and answered with the server's own MSK AUTH and the CHILD_SA that message 1 asked for.
//! A wrong password or an unknown user ends it with EAP-Failure and AUTHENTICATION_FAILED.

use ring::rand::SecureRandom;
use zeroize::Zeroizing;

use super::responder::{child, own_signature, shared_key_auth, Answerer};
use super::{AuthAnswer, AuthRefusal, Grant, UserAuth};
use crate::eap::mschapv2::{self, NtHash, Opcode, Response, CHALLENGE_LEN};
use crate::eap::{EapCode, EapPacket, EAP_IDENTITY, EAP_MSCHAPV2};
use crate::header::ExchangeType;
use crate::identity::{psk_auth_holds, read_auth, signed_octets, AuthMethod, Identity};
use crate::ike_sa::AuthContext;
use crate::notify::NotifyType;
use crate::payloads::{read_chain, Payload, PayloadType};
use crate::protected::Opened;
use crate::sa_init::HalfOpen;

/// The refusal's reason for a wrong password (what a lockout counts).
pub const WRONG_PASSWORD: &str = "wrong password";

/// The name this server gives in its MS-CHAPv2 challenge.
const SERVER_NAME: &[u8] = b"xgate";

/// Where the conversation is.
enum Stage {
    /// The EAP identity was asked for.
    Identity,
    /// The challenge was sent to `user`: a password user, or (`Err`) one refused for the
    /// reason given, challenged all the same so the wire does not tell who exists.
    Challenge {
        user: Identity,
        known: Result<(Grant, NtHash), &'static str>,
        challenge: [u8; CHALLENGE_LEN],
    },
    /// The authenticator response was sent; the peer's acknowledgement is awaited.
    Success {
        user: Identity,
        grant: Grant,
        msk: Zeroizing<Vec<u8>>,
    },
    /// EAP-Success was sent; the peer's AUTH (made with the MSK) is awaited.
    Auth {
        user: Identity,
        grant: Grant,
        msk: Zeroizing<Vec<u8>>,
    },
}

/// An EAP conversation inside IKE_AUTH, between two of the client's requests.
pub struct EapServer {
    /// The first IKE_AUTH request's inner payloads (its SA, selectors and CP are answered
    /// at the end) and the type of the first.
    first: (PayloadType, Vec<u8>),
    /// Its IDi body, as the client's AUTH signs it.
    idi_body: Vec<u8>,
    /// The identifier of the last EAP request sent.
    eap_id: u8,
    stage: Stage,
}

impl std::fmt::Debug for EapServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stage = match &self.stage {
            Stage::Identity => "identity",
            Stage::Challenge { .. } => "challenge",
            Stage::Success { .. } => "success",
            Stage::Auth { .. } => "auth",
        };
        f.debug_struct("EapServer")
            .field("stage", &stage)
            .finish_non_exhaustive()
    }
}

/// The answer to the first IKE_AUTH request when it has no AUTH: this server's ID, CERTs
/// and signature, and an EAP Identity request.
pub(super) fn start(
    to: &Answerer<'_>,
    req: &Opened,
    (idi, idi_body): (Identity, &[u8]),
    ctx: &AuthContext<'_>,
) -> AuthAnswer {
    let failed = Some(NotifyType::AUTHENTICATION_FAILED);
    let (certs, auth) = match own_signature(to.sa, ctx, to.rng) {
        Ok(a) => a,
        // EAP authenticates only the user: the server must prove itself by certificate.
        Err(_) => {
            let why = AuthRefusal::AuthenticationFailed {
                identity: idi.display(),
                why: "EAP asked for, and the server has no certificate ([ike] certificate)",
            };
            return to.refuse(failed, why);
        }
    };
    let eap_id = 1;
    let request = EapPacket::typed(EapCode::Request, eap_id, EAP_IDENTITY, &[]).write();
    let idr = ctx.local.body();
    let mut out = vec![Payload::plain(PayloadType::IDR, &idr)];
    out.extend(certs.iter().map(|c| Payload::plain(PayloadType::CERT, c)));
    out.push(Payload::plain(PayloadType::AUTH, &auth));
    out.push(Payload::plain(PayloadType::EAP, &request));
    let Some(response) = to.seal(&out) else {
        return to.refuse(None, AuthRefusal::Missing("room for the response"));
    };
    AuthAnswer::Continue {
        response,
        eap: Box::new(EapServer {
            first: (req.first, req.inner.clone()),
            idi_body: idi_body.to_vec(),
            eap_id,
            stage: Stage::Identity,
        }),
    }
}

impl EapServer {
    /// The client's next IKE_AUTH request, `req`, of the half-open `sa`.
    pub fn step(
        mut self: Box<Self>,
        sa: &HalfOpen,
        req: &Opened,
        ctx: &AuthContext<'_>,
        rng: &dyn SecureRandom,
    ) -> AuthAnswer {
        let w = req.what;
        if w.exchange != ExchangeType::IKE_AUTH || w.response {
            return AuthAnswer::Refused {
                response: None,
                why: AuthRefusal::NotOurs("header"),
            };
        }
        let to = Answerer {
            sa,
            rng,
            message_id: w.message_id,
        };
        let Ok(payloads) = req.payloads() else {
            return to.refuse(
                Some(NotifyType::INVALID_SYNTAX),
                AuthRefusal::Missing("inner payloads"),
            );
        };
        let find = |k: PayloadType| payloads.iter().find(|p| p.kind == k).map(|p| p.body);
        if let Stage::Auth { .. } = self.stage {
            return match find(PayloadType::AUTH) {
                Some(auth) => self.finish(&to, auth, ctx),
                None => to.refuse(
                    Some(NotifyType::INVALID_SYNTAX),
                    AuthRefusal::Missing("AUTH"),
                ),
            };
        }
        let packet = find(PayloadType::EAP).and_then(|b| EapPacket::read(b).ok());
        let Some(packet) = packet.filter(|p| p.code == EapCode::Response && p.id == self.eap_id)
        else {
            return self.fail(&to, "", "not the EAP response asked for");
        };
        let stage = std::mem::replace(&mut self.stage, Stage::Identity);
        match stage {
            Stage::Identity => self.identity(&to, &packet, ctx),
            Stage::Challenge {
                user,
                known,
                challenge,
            } => self.response(&to, &packet, (user, known), &challenge),
            Stage::Success { user, grant, msk } => {
                if packet.kind != Some(EAP_MSCHAPV2)
                    || mschapv2::opcode_of(packet.data) != Some(Opcode::Success as u8)
                {
                    return self.fail(&to, &user.display(), "the client refused our response");
                }
                let done = EapPacket::verdict(true, self.eap_id).write();
                self.stage = Stage::Auth { user, grant, msk };
                self.send(&to, &done)
            }
            Stage::Auth { .. } => self.fail(&to, "", "EAP after EAP-Success"),
        }
    }

    /// Sends `eap` (an EAP packet) in this exchange's response, the conversation going on.
    fn send(self: Box<Self>, to: &Answerer<'_>, eap: &[u8]) -> AuthAnswer {
        match to.seal(&[Payload::plain(PayloadType::EAP, eap)]) {
            Some(response) => AuthAnswer::Continue {
                response,
                eap: self,
            },
            None => to.refuse(None, AuthRefusal::Missing("room for the response")),
        }
    }

    /// Ends the conversation with EAP-Failure and AUTHENTICATION_FAILED.
    fn fail(&self, to: &Answerer<'_>, identity: &str, why: &'static str) -> AuthAnswer {
        let failure = EapPacket::verdict(false, self.eap_id).write();
        let why = AuthRefusal::AuthenticationFailed {
            identity: identity.to_string(),
            why,
        };
        to.refuse_after(
            &[Payload::plain(PayloadType::EAP, &failure)],
            Some(NotifyType::AUTHENTICATION_FAILED),
            why,
        )
    }

    /// The EAP identity: the user looked up; then the challenge, to every identity alike
    /// (an unknown, locked or non-password user is refused after its response, for its own
    /// reason, exactly as a wrong password is: nothing on the wire tells who exists).
    fn identity(
        mut self: Box<Self>,
        to: &Answerer<'_>,
        packet: &EapPacket<'_>,
        ctx: &AuthContext<'_>,
    ) -> AuthAnswer {
        let name = std::str::from_utf8(packet.data).ok().map(str::trim);
        let Some(name) = name.filter(|n| packet.kind == Some(EAP_IDENTITY) && !n.is_empty()) else {
            return self.fail(to, "", "no readable EAP identity");
        };
        let user = Identity::from_text(name);
        let known = if ctx.users.locked(&user) {
            Err("locked after repeated failures")
        } else {
            match ctx.users.find(&user) {
                None => Err("no such user"),
                Some(grant) => match grant.auth.clone() {
                    UserAuth::Eap(hash) => Ok((grant, hash)),
                    _ => Err("not a password (EAP) user"),
                },
            }
        };
        let mut challenge = [0u8; CHALLENGE_LEN];
        if to.rng.fill(&mut challenge).is_err() {
            return to.refuse(None, AuthRefusal::Missing("randomness for a challenge"));
        }
        self.eap_id = self.eap_id.wrapping_add(1);
        let data = mschapv2::challenge_packet(self.eap_id, &challenge, SERVER_NAME);
        let request = EapPacket::typed(EapCode::Request, self.eap_id, EAP_MSCHAPV2, &data);
        let bytes = request.write();
        self.stage = Stage::Challenge {
            user,
            known,
            challenge,
        };
        self.send(to, &bytes)
    }

    /// The MS-CHAPv2 response: checked against the user's NT hash; then this side's proof.
    fn response(
        mut self: Box<Self>,
        to: &Answerer<'_>,
        packet: &EapPacket<'_>,
        (user, known): (Identity, Result<(Grant, NtHash), &'static str>),
        challenge: &[u8; CHALLENGE_LEN],
    ) -> AuthAnswer {
        let who = user.display();
        let (grant, hash) = match known {
            Ok(k) => k,
            Err(why) => return self.fail(to, &who, why),
        };
        if packet.kind != Some(EAP_MSCHAPV2) {
            return self.fail(to, &who, "the client does not speak EAP-MSCHAPv2");
        }
        let Ok(r) = Response::read(packet.data) else {
            return self.fail(to, &who, "an unreadable MS-CHAPv2 response");
        };
        let pair = (challenge, &r.peer_challenge);
        if !mschapv2::nt_response_holds(pair, r.name, &hash, &r.nt_response) {
            return self.fail(to, &who, WRONG_PASSWORD);
        }
        let proof = mschapv2::authenticator_response(&hash, &r.nt_response, pair, r.name);
        let msk = mschapv2::msk(&hash, &r.nt_response);
        let ms_id = r.id;
        self.eap_id = self.eap_id.wrapping_add(1);
        let data = mschapv2::success_packet(ms_id, &proof);
        let bytes = EapPacket::typed(EapCode::Request, self.eap_id, EAP_MSCHAPV2, &data).write();
        self.stage = Stage::Success { user, grant, msk };
        self.send(to, &bytes)
    }

    /// The client's AUTH made with the MSK: checked, then the CHILD_SA message 1 asked for.
    fn finish(
        self: Box<Self>,
        to: &Answerer<'_>,
        auth: &[u8],
        ctx: &AuthContext<'_>,
    ) -> AuthAnswer {
        let Stage::Auth { user, grant, msk } = self.stage else {
            return to.refuse(None, AuthRefusal::NotOurs("not at the end of EAP"));
        };
        let sa = to.sa;
        let prf = sa.suite.prf.unwrap_or(crate::prf::Prf::HmacSha256);
        let signed = signed_octets(prf, &sa.request, &sa.nr, &sa.keys.sk_pi, &self.idi_body);
        let holds = matches!(read_auth(auth), Ok((AuthMethod::PSK, value))
            if psk_auth_holds(prf, &msk, &signed, value));
        if !holds {
            let why = AuthRefusal::AuthenticationFailed {
                identity: user.display(),
                why: "an AUTH not made with the EAP key",
            };
            return to.refuse(Some(NotifyType::AUTHENTICATION_FAILED), why);
        }
        let own = (Vec::new(), shared_key_auth(sa, ctx.local, &msk));
        let (first, inner) = &self.first;
        let Ok(payloads) = read_chain(*first, inner) else {
            return to.refuse(Some(NotifyType::INVALID_SYNTAX), AuthRefusal::Missing("SA"));
        };
        child(
            to,
            &payloads,
            (user, grant, None, own),
            (ctx.esp, ctx.child_spi),
        )
    }
}
