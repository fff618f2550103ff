//! IKE_AUTH with EAP-MSCHAPv2, the initiator's side (tests, the loadtest's simulated users):
//! message 1 without AUTH; the server's signature checked against the CAs given; the EAP
//! identity, the MS-CHAPv2 response to the server's challenge, the server's own proof checked,
//! its acknowledgement; then AUTH made with the MSK, and the server's MSK AUTH checked before
//! the CHILD_SA is taken.

use std::sync::Arc;

use ring::rand::SecureRandom;
use zeroize::Zeroizing;

use super::initiator::{
    error_notify, open_auth_response, prf_of, read_child, seal_first_request, server_signed,
};
use super::{seal_auth, Established, AUTH_MESSAGE_ID};
use crate::certs::{certreq_body, TrustStore};
use crate::eap::mschapv2::{self, NtHash, Opcode, Response, CHALLENGE_LEN};
use crate::eap::{EapCode, EapPacket, EAP_IDENTITY, EAP_MSCHAPV2};
use crate::identity::{
    auth_body, psk_auth, psk_auth_holds, read_auth, signed_octets, AuthMethod, Identity,
};
use crate::notify::NotifyType;
use crate::payloads::{Payload, PayloadType};
use crate::proposals::Proposal;
use crate::sa_init::{HalfOpen, InitiatorError};
use crate::suite::Policy;

/// The CAs a client checks the server's certificate against, the server's identity, and the
/// time the certificate is judged at (Unix seconds).
#[derive(Debug)]
pub struct ServerTrust {
    /// The CAs.
    pub trust: TrustStore,
    /// The server's identity: its IDr must be this, and its certificate name it.
    pub server: Identity,
    /// Unix seconds.
    pub unix_secs: u64,
}

/// Where the client is.
enum Stage {
    /// Message 1 sent: the server's signature and the identity request are awaited.
    Start,
    /// The identity sent: the challenge is awaited.
    Identity { idr_body: Vec<u8> },
    /// The response sent: the server's proof is awaited.
    Response {
        idr_body: Vec<u8>,
        expected: String,
        msk: Zeroizing<Vec<u8>>,
    },
    /// The acknowledgement sent: EAP-Success is awaited.
    Acknowledged {
        idr_body: Vec<u8>,
        msk: Zeroizing<Vec<u8>>,
    },
    /// AUTH sent: the server's AUTH and the CHILD_SA are awaited.
    Auth {
        idr_body: Vec<u8>,
        msk: Zeroizing<Vec<u8>>,
    },
}

/// What a response led to.
#[derive(Debug)]
pub enum EapStep {
    /// Send `request` (the next IKE_AUTH request).
    Send,
    /// Authenticated, with the first CHILD_SA.
    Established(Box<Established>),
    /// The server refused with this error.
    Refused(NotifyType),
}

/// A password user's IKE_AUTH, one exchange after another.
pub struct EapInitiator {
    sa: HalfOpen,
    idi_body: Vec<u8>,
    user: String,
    hash: NtHash,
    server: Arc<ServerTrust>,
    offer: Vec<Proposal>,
    policy: Policy,
    message_id: u32,
    stage: Stage,
    /// The request to send now (again, on a retransmission).
    pub request: Vec<u8>,
}

impl std::fmt::Debug for EapInitiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EapInitiator")
            .field("user", &self.user)
            .field("message_id", &self.message_id)
            .finish_non_exhaustive()
    }
}

impl EapInitiator {
    /// Message 1 of `id` (IKE's identity) logging in as `user` with `password`, on `sa`,
    /// offering `offer` that `policy` takes back, checking the server against `server`.
    pub fn start(
        sa: HalfOpen,
        id: &Identity,
        (user, password): (&str, &str),
        server: Arc<ServerTrust>,
        (offer, policy): (Vec<Proposal>, Policy),
        rng: &dyn SecureRandom,
    ) -> Result<Self, InitiatorError> {
        let idi = id.body();
        let certreq = certreq_body(server.trust.digests());
        let idr = server.server.body();
        // No AUTH: that asks for EAP (RFC 7296 §2.16).
        let head = [
            Payload::plain(PayloadType::IDI, &idi),
            Payload::plain(PayloadType::CERTREQ, &certreq),
            Payload::plain(PayloadType::IDR, &idr),
        ];
        let request = seal_first_request(&sa, &head, &offer, rng)?;
        Ok(Self {
            sa,
            idi_body: idi,
            user: user.to_string(),
            hash: NtHash::of_password(password),
            server,
            offer,
            policy,
            message_id: AUTH_MESSAGE_ID,
            stage: Stage::Start,
            request,
        })
    }

    /// The IKE SA, once the exchanges are over.
    pub fn into_sa(self) -> HalfOpen {
        self.sa
    }

    /// The next request carrying `payloads`.
    fn next(
        &mut self,
        payloads: &[Payload<'_>],
        rng: &dyn SecureRandom,
    ) -> Result<EapStep, InitiatorError> {
        self.message_id += 1;
        self.request = seal_auth(&self.sa, (false, self.message_id), payloads, rng)
            .map_err(|_| InitiatorError::Unacceptable("a request that cannot be sealed"))?;
        Ok(EapStep::Send)
    }

    /// Reads the response to the current request.
    pub fn on_response(
        &mut self,
        bytes: &[u8],
        rng: &dyn SecureRandom,
    ) -> Result<EapStep, InitiatorError> {
        let bad = InitiatorError::Unacceptable;
        let opened = open_auth_response(&self.sa, bytes, self.message_id)?;
        let payloads = opened.payloads()?;
        if let Some(kind) = error_notify(&payloads)? {
            return Ok(EapStep::Refused(kind));
        }
        let find = |k: PayloadType| payloads.iter().find(|p| p.kind == k).map(|p| p.body);
        let eap = find(PayloadType::EAP).map(EapPacket::read).transpose();
        let eap = eap.map_err(|_| bad("an unreadable EAP packet"))?;
        let stage = std::mem::replace(&mut self.stage, Stage::Start);
        match (stage, eap) {
            (Stage::Start, Some(p)) if p.kind == Some(EAP_IDENTITY) => {
                let idr_body = find(PayloadType::IDR).ok_or(bad("no IDr"))?.to_vec();
                let idr = Identity::read(&idr_body)?;
                let auth = read_auth(find(PayloadType::AUTH).ok_or(bad("no AUTH"))?)?;
                let prf = prf_of(&self.sa);
                let k = &self.sa.keys;
                let signed =
                    signed_octets(prf, &self.sa.response, &self.sa.ni, &k.sk_pr, &idr_body);
                let s = &self.server;
                if !server_signed(
                    (&s.trust, &s.server, s.unix_secs),
                    &payloads,
                    &idr,
                    auth,
                    &signed,
                ) {
                    return Err(bad("the server's signature does not verify"));
                }
                let answer =
                    EapPacket::typed(EapCode::Response, p.id, EAP_IDENTITY, self.user.as_bytes());
                self.stage = Stage::Identity { idr_body };
                self.next(&[Payload::plain(PayloadType::EAP, &answer.write())], rng)
            }
            (Stage::Identity { idr_body }, Some(p)) if p.kind == Some(EAP_MSCHAPV2) => {
                let (ms_id, challenge) =
                    mschapv2::read_challenge(p.data).map_err(|_| bad("an unreadable challenge"))?;
                let mut peer = [0u8; CHALLENGE_LEN];
                rng.fill(&mut peer).map_err(|_| bad("no randomness"))?;
                let name = self.user.as_bytes();
                let nt = mschapv2::nt_response(&challenge, &peer, name, &self.hash);
                let expected =
                    mschapv2::authenticator_response(&self.hash, &nt, (&challenge, &peer), name);
                let msk = mschapv2::msk(&self.hash, &nt);
                let data = Response {
                    id: ms_id,
                    peer_challenge: peer,
                    nt_response: nt,
                    name,
                }
                .write();
                let answer = EapPacket::typed(EapCode::Response, p.id, EAP_MSCHAPV2, &data).write();
                self.stage = Stage::Response {
                    idr_body,
                    expected,
                    msk,
                };
                self.next(&[Payload::plain(PayloadType::EAP, &answer)], rng)
            }
            (
                Stage::Response {
                    idr_body,
                    expected,
                    msk,
                },
                Some(p),
            ) if p.kind == Some(EAP_MSCHAPV2) => {
                let message =
                    mschapv2::read_success(p.data).map_err(|_| bad("no MS-CHAPv2 success"))?;
                if !message.starts_with(expected.as_bytes()) {
                    return Err(bad(
                        "the server's authenticator response does not prove the password",
                    ));
                }
                let ack = mschapv2::acknowledgement(Opcode::Success);
                let answer = EapPacket::typed(EapCode::Response, p.id, EAP_MSCHAPV2, &ack).write();
                self.stage = Stage::Acknowledged { idr_body, msk };
                self.next(&[Payload::plain(PayloadType::EAP, &answer)], rng)
            }
            (Stage::Acknowledged { idr_body, msk }, Some(p)) if p.code == EapCode::Success => {
                let prf = prf_of(&self.sa);
                let k = &self.sa.keys;
                let signed =
                    signed_octets(prf, &self.sa.request, &self.sa.nr, &k.sk_pi, &self.idi_body);
                let auth = auth_body(AuthMethod::PSK, &psk_auth(prf, &msk, &signed));
                self.stage = Stage::Auth { idr_body, msk };
                self.next(&[Payload::plain(PayloadType::AUTH, &auth)], rng)
            }
            (Stage::Auth { idr_body, msk }, None) => {
                let (method, value) = read_auth(find(PayloadType::AUTH).ok_or(bad("no AUTH"))?)?;
                let prf = prf_of(&self.sa);
                let k = &self.sa.keys;
                let signed =
                    signed_octets(prf, &self.sa.response, &self.sa.ni, &k.sk_pr, &idr_body);
                if method != AuthMethod::PSK || !psk_auth_holds(prf, &msk, &signed, value) {
                    return Err(bad("the server's AUTH was not made with the EAP key"));
                }
                let idr = Identity::read(&idr_body)?;
                let established =
                    read_child(&self.sa, (&self.offer, &self.policy), &payloads, idr)?;
                Ok(EapStep::Established(Box::new(established)))
            }
            (_, Some(p)) if p.code == EapCode::Failure => {
                Ok(EapStep::Refused(NotifyType::AUTHENTICATION_FAILED))
            }
            _ => Err(bad("not the EAP step expected")),
        }
    }
}
