//! The initiator's IKE_AUTH with a pre-shared key or a certificate (tests, the loadtest's
//! simulated users, the bench): the request (ID, AUTH, CP request, ESP proposals, selectors for everything) and the reading
//! of the response into the same CHILD_SA the responder installed.

use std::sync::Arc;

use ring::rand::SecureRandom;
use zeroize::Zeroizing;

use super::{child_keys, seal_auth, ChildSa, Established, AUTH_MESSAGE_ID};
use crate::certs::{
    cert_body, certreq_body, read_cert_body, verify_classic_auth, verify_signature_auth,
    Credential, PeerRole, TrustStore,
};
use crate::config_payload::ConfigPayload;
use crate::header::ExchangeType;
use crate::identity::{
    auth_body, psk_auth, psk_auth_holds, read_auth, signed_octets, AuthMethod, Identity,
};
use crate::notify::{Notify, NotifyType};
use crate::payloads::{Payload, PayloadType};
use crate::prf::Prf;
use crate::proposals::{read_sa_answer, write_sa, Proposal, ProtocolId};
use crate::protected::{self, ProtectedError};
use crate::sa_init::{HalfOpen, InitiatorError};
use crate::selectors::{read_ts, ts_body, TrafficSelector};
use crate::suite::{choose, Policy};

/// A client's certificate credential and the CAs it checks the server against.
#[derive(Debug)]
pub struct ClientCerts {
    /// Its own certificate and key.
    pub own: Credential,
    /// The CAs the server's certificate must lead to.
    pub trust: TrustStore,
    /// The server's identity: its IDr must be this, and its certificate name it.
    pub server: Identity,
    /// The wall-clock time the server's certificate is judged at, Unix seconds.
    pub unix_secs: u64,
}

/// How the initiator proves itself, and checks the responder the same way.
#[derive(Debug)]
enum Proof {
    Psk(Zeroizing<Vec<u8>>),
    Certificate(Arc<ClientCerts>),
}

/// An IKE_AUTH request on its way.
#[derive(Debug)]
pub struct AuthInitiator {
    sa: HalfOpen,
    proof: Proof,
    offer: Vec<Proposal>,
    policy: Policy,
    /// The request to send (again, on a retransmission).
    pub request: Vec<u8>,
}

/// What the response says.
#[derive(Debug)]
pub enum AuthOutcome {
    /// Authenticated, with the first CHILD_SA.
    Established(Box<Established>),
    /// The responder refused with this error.
    Refused(NotifyType),
}

/// Whether the responder proved it is `idr` by a signature (its AUTH `(method, value)` over
/// `signed`) with a certificate among `payloads` that leads to `trust` and names `server`,
/// judged at `unix_secs`.
pub(super) fn server_signed(
    (trust, server, unix_secs): (&TrustStore, &Identity, u64),
    payloads: &[Payload<'_>],
    idr: &Identity,
    (method, value): (AuthMethod, &[u8]),
    signed: &[u8],
) -> bool {
    let chain: Vec<&[u8]> = payloads
        .iter()
        .filter(|p| p.kind == PayloadType::CERT)
        .filter_map(|p| read_cert_body(p.body))
        .collect();
    let signature_holds = |ee: &[u8]| {
        if method == AuthMethod::DIGITAL_SIGNATURE {
            verify_signature_auth(ee, signed, value).is_ok()
        } else {
            verify_classic_auth(ee, method, signed, value).is_ok()
        }
    };
    idr == server
        && trust
            .verify(&chain, (idr, PeerRole::Server), unix_secs)
            .is_ok()
        && chain.first().is_some_and(|ee| signature_holds(ee))
}

/// The initiator's first IKE_AUTH request: `head` (IDi and what its method sends: CERTs,
/// CERTREQ, IDr, AUTH), then the CP request for addresses, the ESP `offer` and selectors for
/// everything, sealed.
pub(super) fn seal_first_request(
    sa: &HalfOpen,
    head: &[Payload<'_>],
    offer: &[Proposal],
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, InitiatorError> {
    let (cp, sa_body) = (ConfigPayload::ask_for_addresses().body(), write_sa(offer));
    let everything = ts_body(&TrafficSelector::everything());
    let mut payloads = head.to_vec();
    payloads.extend([
        Payload::plain(PayloadType::CP, &cp),
        Payload::plain(PayloadType::SA, &sa_body),
        Payload::plain(PayloadType::TSI, &everything),
        Payload::plain(PayloadType::TSR, &everything),
    ]);
    seal_auth(sa, (false, AUTH_MESSAGE_ID), &payloads, rng)
        .map_err(|_| InitiatorError::Unacceptable("a request that cannot be sealed"))
}

/// `bytes` opened as the responder's answer to IKE_AUTH request `message_id` of `sa`;
/// anything else is `NotOurs`, a forged answer unacceptable.
pub(super) fn open_auth_response(
    sa: &HalfOpen,
    bytes: &[u8],
    message_id: u32,
) -> Result<crate::protected::Opened, InitiatorError> {
    let opened = match protected::open(sa, bytes, false) {
        Ok(o) => o,
        Err(ProtectedError::BadIcv) => {
            return Err(InitiatorError::Unacceptable(
                "an Encrypted payload that does not open",
            ))
        }
        Err(_) => return Err(InitiatorError::NotOurs),
    };
    let w = opened.what;
    if w.exchange != ExchangeType::IKE_AUTH || !w.response || w.message_id != message_id {
        return Err(InitiatorError::NotOurs);
    }
    Ok(opened)
}

/// Whether `payloads` carry a Notify of `kind`.
pub(crate) fn has_notify(payloads: &[Payload<'_>], kind: NotifyType) -> bool {
    payloads
        .iter()
        .filter(|p| p.kind == PayloadType::NOTIFY)
        .any(|p| Notify::read(p.body).is_ok_and(|n| n.kind == kind))
}

/// The first error notify among `payloads`, if any.
pub(super) fn error_notify(payloads: &[Payload<'_>]) -> Result<Option<NotifyType>, InitiatorError> {
    for p in payloads.iter().filter(|p| p.kind == PayloadType::NOTIFY) {
        let n = Notify::read(p.body)?;
        if n.kind.is_error() {
            return Ok(Some(n.kind));
        }
    }
    Ok(None)
}

pub(super) fn prf_of(sa: &HalfOpen) -> Prf {
    sa.suite.prf.unwrap_or(Prf::HmacSha256)
}

impl AuthInitiator {
    /// The request of the user `id` with `psk` on the half-open `sa`, offering `offer` (ESP
    /// proposals carrying this side's 4-byte SPI) that `policy` accepts back.
    pub fn start(
        sa: HalfOpen,
        id: &Identity,
        psk: &[u8],
        offer: Vec<Proposal>,
        policy: Policy,
        rng: &dyn SecureRandom,
    ) -> Result<Self, InitiatorError> {
        let proof = Proof::Psk(Zeroizing::new(psk.to_vec()));
        Self::request(sa, id, proof, (offer, policy), rng)
    }

    /// As `start`, authenticating with the certificate in `certs` (an RFC 7427 signature).
    pub fn start_with_certificate(
        sa: HalfOpen,
        id: &Identity,
        certs: Arc<ClientCerts>,
        offer: Vec<Proposal>,
        policy: Policy,
        rng: &dyn SecureRandom,
    ) -> Result<Self, InitiatorError> {
        Self::request(sa, id, Proof::Certificate(certs), (offer, policy), rng)
    }

    fn request(
        sa: HalfOpen,
        id: &Identity,
        proof: Proof,
        (offer, policy): (Vec<Proposal>, Policy),
        rng: &dyn SecureRandom,
    ) -> Result<Self, InitiatorError> {
        let prf = prf_of(&sa);
        let signed = signed_octets(prf, &sa.request, &sa.nr, &sa.keys.sk_pi, &id.body());
        // With a certificate: CERT payloads, and a CERTREQ so the responder sends its own
        // (strongSwan sends it only when asked).
        let (certs, certreq, auth) = match &proof {
            Proof::Psk(psk) => (
                Vec::new(),
                None,
                auth_body(AuthMethod::PSK, &psk_auth(prf, psk, &signed)),
            ),
            Proof::Certificate(c) => {
                // RFC 7427 when the responder announced it, else the key's own method.
                let (method, data) = if sa.signature_hashes {
                    c.own
                        .sign_auth(&signed, rng)
                        .map(|d| (AuthMethod::DIGITAL_SIGNATURE, d))
                } else {
                    c.own.sign_classic(&signed, rng)
                }
                .map_err(|_| InitiatorError::Unacceptable("a key that cannot sign"))?;
                let chain = c.own.chain().iter().map(|d| cert_body(d)).collect();
                let certreq = certreq_body(c.trust.digests());
                (chain, Some(certreq), auth_body(method, &data))
            }
        };
        let idi = id.body();
        let mut head = vec![Payload::plain(PayloadType::IDI, &idi)];
        head.extend(certs.iter().map(|c| Payload::plain(PayloadType::CERT, c)));
        if let Some(body) = &certreq {
            head.push(Payload::plain(PayloadType::CERTREQ, body));
        }
        head.push(Payload::plain(PayloadType::AUTH, &auth));
        let request = seal_first_request(&sa, &head, &offer, rng)?;
        Ok(Self {
            sa,
            proof,
            offer,
            policy,
            request,
        })
    }

    /// Whether the responder's AUTH `(method, value)` over `signed` proves it is `idr`.
    fn responder_proven(
        &self,
        payloads: &[Payload<'_>],
        idr: &Identity,
        (method, value): (AuthMethod, &[u8]),
        signed: &[u8],
    ) -> bool {
        match &self.proof {
            Proof::Psk(psk) => {
                method == AuthMethod::PSK && psk_auth_holds(prf_of(&self.sa), psk, signed, value)
            }
            Proof::Certificate(c) => {
                let server = (&c.trust, &c.server, c.unix_secs);
                server_signed(server, payloads, idr, (method, value), signed)
            }
        }
    }

    /// The IKE SA the request travels on (its keys carry the SA's later exchanges).
    pub fn sa(&self) -> &HalfOpen {
        &self.sa
    }

    /// The IKE SA, once the exchange is over.
    pub fn into_sa(self) -> HalfOpen {
        self.sa
    }

    /// Reads the response.
    pub fn on_response(&self, bytes: &[u8]) -> Result<AuthOutcome, InitiatorError> {
        let bad = InitiatorError::Unacceptable;
        let opened = open_auth_response(&self.sa, bytes, AUTH_MESSAGE_ID)?;
        let payloads = opened.payloads()?;
        let find = |k: PayloadType| payloads.iter().find(|p| p.kind == k).map(|p| p.body);
        if let Some(kind) = error_notify(&payloads)? {
            return Ok(AuthOutcome::Refused(kind));
        }
        let idr_body = find(PayloadType::IDR).ok_or(bad("no IDr"))?;
        let idr = Identity::read(idr_body)?;
        let (method, value) = read_auth(find(PayloadType::AUTH).ok_or(bad("no AUTH"))?)?;
        let prf = prf_of(&self.sa);
        // The responder signed its IDr body as it sent it.
        let signed = signed_octets(
            prf,
            &self.sa.response,
            &self.sa.ni,
            &self.sa.keys.sk_pr,
            idr_body,
        );
        if !self.responder_proven(&payloads, &idr, (method, value), &signed) {
            return Err(bad("the responder's AUTH does not verify"));
        }
        let established = read_child(&self.sa, (&self.offer, &self.policy), &payloads, idr)?;
        Ok(AuthOutcome::Established(Box::new(established)))
    }
}

/// The CHILD_SA the responder's final IKE_AUTH response (`payloads`) made of our `offer`
/// (taken back by `policy`), with the responder `idr`.
pub(super) fn read_child(
    sa: &HalfOpen,
    (offer, policy): (&[Proposal], &Policy),
    payloads: &[Payload<'_>],
    idr: Identity,
) -> Result<Established, InitiatorError> {
    let bad = InitiatorError::Unacceptable;
    let find = |k: PayloadType| payloads.iter().find(|p| p.kind == k).map(|p| p.body);
    let prf = prf_of(sa);
    let answer = vec![read_sa_answer(find(PayloadType::SA).ok_or(bad("no SA"))?)
        .map_err(|_| bad("an unreadable SA"))?];
    let ours = |p: &Proposal| {
        offer
            .iter()
            .any(|o| o.number == p.number && p.transforms.iter().all(|t| o.transforms.contains(t)))
    };
    if answer.len() != 1 || !ours(&answer[0]) {
        return Err(bad("an ESP SA that was not offered"));
    }
    let suite = choose(&answer, ProtocolId::ESP, policy)
        .map_err(|_| bad("an ESP SA outside the policy"))?
        .suite;
    let spi_r = answer[0]
        .esp_spi()
        .ok_or(bad("an ESP SPI not of 4 bytes, or below 256"))?;
    let our = offer
        .iter()
        .find(|o| o.number == answer[0].number)
        .ok_or(bad("no proposal"))?;
    let spi_i =
        <[u8; 4]>::try_from(our.spi.as_slice()).map_err(|_| bad("our SPI not of 4 bytes"))?;
    let ts_i = read_ts(find(PayloadType::TSI).ok_or(bad("no TSi"))?)?;
    let ts_r = read_ts(find(PayloadType::TSR).ok_or(bad("no TSr"))?)?;
    let assignment = find(PayloadType::CP)
        .map(ConfigPayload::read)
        .transpose()?
        .map(|c| c.assignment())
        .unwrap_or_default();
    let (i_to_r, r_to_i) = child_keys(prf, &sa.keys.sk_d, (&sa.ni, &sa.nr), &suite)
        .map_err(|_| bad("ESP key lengths"))?;
    Ok(Established {
        peer: idr,
        child: ChildSa {
            spi_i,
            spi_r,
            suite,
            i_to_r,
            r_to_i,
            ts_i,
            ts_r,
        },
        assignment,
        peer_certs: payloads
            .iter()
            .filter(|p| p.kind == PayloadType::CERT)
            .filter_map(|p| read_cert_body(p.body))
            .map(<[u8]>::to_vec)
            .collect(),
        mobike: has_notify(payloads, NotifyType::MOBIKE_SUPPORTED),
    })
}
