//! IKE_AUTH with a pre-shared key per user, a certificate, or a password by EAP-MSCHAPv2
//! (RFC 7296 §1.2, §2.15–2.17, RFC 7427): the responder's rules in `responder` and
//! `eap_responder`, the initiator's (tests, the loadtest) in `initiator`. Both end in the
//! same established IKE SA and first CHILD_SA (ESP keys per direction, traffic selectors, the
//! virtual addresses).

mod eap_initiator;
mod eap_responder;
mod initiator;
mod responder;

#[cfg(test)]
mod cert_tests;
#[cfg(test)]
mod eap_tests;
#[cfg(test)]
mod tests;

pub use eap_initiator::{EapInitiator, EapStep, ServerTrust};
pub use eap_responder::{EapServer, WRONG_PASSWORD};
pub use initiator::{AuthInitiator, AuthOutcome, ClientCerts};
pub use responder::{
    respond_auth, respond_auth_opened, AuthAnswer, AuthRefusal, Grant, UserAuth, Users,
};

use ring::rand::SecureRandom;
use zeroize::Zeroizing;

use crate::config_payload::Assignment;
use crate::header::ExchangeType;
use crate::identity::Identity;
use crate::keys::child_keymat;
use crate::payloads::Payload;
use crate::prf::{Prf, PrfError};
use crate::protected::{self, Protected, ProtectedError};
use crate::sa_init::HalfOpen;
use crate::selectors::TrafficSelector;
use crate::suite::Suite;

/// The message ID of the IKE_AUTH exchange (the first after IKE_SA_INIT).
pub const AUTH_MESSAGE_ID: u32 = 1;

/// One direction's ESP keys: encryption (with salt), integrity (empty with an AEAD). Debug
/// shows their lengths only.
#[derive(Clone, PartialEq, Eq)]
pub struct EspKeys {
    /// Encryption key and salt.
    pub encr: Zeroizing<Vec<u8>>,
    /// Integrity key.
    pub integ: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for EspKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EspKeys")
            .field("encr", &self.encr.len())
            .field("integ", &self.integ.len())
            .finish()
    }
}

/// A CHILD_SA: its SPIs, suite, keys per direction and traffic selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSa {
    /// The SPI the initiator receives on (its proposal's).
    pub spi_i: [u8; 4],
    /// The SPI the responder receives on.
    pub spi_r: [u8; 4],
    /// The ESP algorithms.
    pub suite: Suite,
    /// Keys of initiator → responder traffic.
    pub i_to_r: EspKeys,
    /// Keys of responder → initiator traffic.
    pub r_to_i: EspKeys,
    /// The initiator's side's selectors (the client's virtual addresses).
    pub ts_i: Vec<TrafficSelector>,
    /// The responder's side's selectors (what the client reaches).
    pub ts_r: Vec<TrafficSelector>,
}

/// An authenticated IKE SA with its first CHILD_SA.
#[derive(Debug)]
pub struct Established {
    /// The peer's identity.
    pub peer: Identity,
    /// The first CHILD_SA.
    pub child: ChildSa,
    /// The addresses and DNS given to (or received by) the initiator.
    pub assignment: Assignment,
    /// The peer's certificates as it sent them, end entity first (empty with a PSK): a
    /// responder checks them again when its CRLs change.
    pub peer_certs: Vec<Vec<u8>>,
    /// Both sides said MOBIKE_SUPPORTED (RFC 4555): the client may move the SA.
    pub mobike: bool,
}

/// The CHILD_SA's keys, cut from KEYMAT in RFC 7296 §2.17's order: initiator → responder
/// encryption and integrity, then responder → initiator.
fn child_keys(
    prf: Prf,
    sk_d: &[u8],
    nonces: (&[u8], &[u8]),
    suite: &Suite,
) -> Result<(EspKeys, EspKeys), PrfError> {
    let lens = suite.key_lengths();
    let keymat = child_keymat(prf, sk_d, None, nonces, 2 * (lens.encr + lens.integ))?;
    let mut at = 0;
    let mut take = |n: usize| {
        let k = Zeroizing::new(keymat[at..at + n].to_vec());
        at += n;
        k
    };
    let i_to_r = EspKeys {
        encr: take(lens.encr),
        integ: take(lens.integ),
    };
    let r_to_i = EspKeys {
        encr: take(lens.encr),
        integ: take(lens.integ),
    };
    Ok((i_to_r, r_to_i))
}

/// An IKE_AUTH message `message_id` of `sa` with `payloads` sealed in an Encrypted payload:
/// the initiator's request (`response` false, SK_ei) or the responder's answer (SK_er).
fn seal_auth(
    sa: &HalfOpen,
    (response, message_id): (bool, u32),
    payloads: &[Payload<'_>],
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, ProtectedError> {
    let what = Protected {
        exchange: ExchangeType::IKE_AUTH,
        message_id,
        by_initiator: !response,
        response,
    };
    protected::seal(sa, what, payloads, rng)
}
