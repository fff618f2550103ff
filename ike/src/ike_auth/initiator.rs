//! The initiator's IKE_AUTH with a pre-shared key (tests, the loadtest's simulated users):
//! the request (ID, AUTH, CP request, ESP proposals, selectors for everything) and the reading
//! of the response into the same CHILD_SA the responder installed.

use ring::rand::SecureRandom;
use zeroize::Zeroizing;

use super::{child_keys, seal_auth, ChildSa, Established, AUTH_MESSAGE_ID};
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

/// An IKE_AUTH request on its way.
#[derive(Debug)]
pub struct AuthInitiator {
    sa: HalfOpen,
    psk: Zeroizing<Vec<u8>>,
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

fn prf_of(sa: &HalfOpen) -> Prf {
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
        let prf = prf_of(&sa);
        let signed = signed_octets(prf, &sa.request, &sa.nr, &sa.keys.sk_pi, id);
        let auth = auth_body(AuthMethod::PSK, &psk_auth(prf, psk, &signed));
        let (idi, cp, sa_body) = (
            id.body(),
            ConfigPayload::ask_for_addresses().body(),
            write_sa(&offer),
        );
        let everything = ts_body(&TrafficSelector::everything());
        let payloads = [
            Payload::plain(PayloadType::IDI, &idi),
            Payload::plain(PayloadType::AUTH, &auth),
            Payload::plain(PayloadType::CP, &cp),
            Payload::plain(PayloadType::SA, &sa_body),
            Payload::plain(PayloadType::TSI, &everything),
            Payload::plain(PayloadType::TSR, &everything),
        ];
        let request = seal_auth(&sa, false, &payloads, rng)
            .map_err(|_| InitiatorError::Unacceptable("a request that cannot be sealed"))?;
        Ok(Self {
            sa,
            psk: Zeroizing::new(psk.to_vec()),
            offer,
            policy,
            request,
        })
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
        let opened = match protected::open(&self.sa, bytes, false) {
            Ok(o) => o,
            Err(ProtectedError::BadIcv) => {
                return Err(bad("an Encrypted payload that does not open"))
            }
            Err(_) => return Err(InitiatorError::NotOurs),
        };
        let w = opened.what;
        if w.exchange != ExchangeType::IKE_AUTH || !w.response || w.message_id != AUTH_MESSAGE_ID {
            return Err(InitiatorError::NotOurs);
        }
        let payloads = opened.payloads()?;
        let find = |k: PayloadType| payloads.iter().find(|p| p.kind == k).map(|p| p.body);
        for p in payloads.iter().filter(|p| p.kind == PayloadType::NOTIFY) {
            let n = Notify::read(p.body)?;
            if n.kind.is_error() {
                return Ok(AuthOutcome::Refused(n.kind));
            }
        }
        let idr = Identity::read(find(PayloadType::IDR).ok_or(bad("no IDr"))?)?;
        let (method, value) = read_auth(find(PayloadType::AUTH).ok_or(bad("no AUTH"))?)?;
        let prf = prf_of(&self.sa);
        let signed = signed_octets(
            prf,
            &self.sa.response,
            &self.sa.ni,
            &self.sa.keys.sk_pr,
            &idr,
        );
        if method != AuthMethod::PSK || !psk_auth_holds(prf, &self.psk, &signed, value) {
            return Err(bad("the responder's AUTH does not verify"));
        }
        let answer = vec![read_sa_answer(find(PayloadType::SA).ok_or(bad("no SA"))?)
            .map_err(|_| bad("an unreadable SA"))?];
        let ours = |p: &Proposal| {
            self.offer.iter().any(|o| {
                o.number == p.number && p.transforms.iter().all(|t| o.transforms.contains(t))
            })
        };
        if answer.len() != 1 || !ours(&answer[0]) {
            return Err(bad("an ESP SA that was not offered"));
        }
        let suite = choose(&answer, ProtocolId::ESP, &self.policy)
            .map_err(|_| bad("an ESP SA outside the policy"))?
            .suite;
        let spi_r = <[u8; 4]>::try_from(answer[0].spi.as_slice())
            .map_err(|_| bad("an SPI not of 4 bytes"))?;
        let our = self
            .offer
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
        let (i_to_r, r_to_i) =
            child_keys(prf, &self.sa.keys.sk_d, (&self.sa.ni, &self.sa.nr), &suite)
                .map_err(|_| bad("ESP key lengths"))?;
        Ok(AuthOutcome::Established(Box::new(Established {
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
        })))
    }
}
