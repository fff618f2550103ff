//! IKE_SA_INIT, both roles (RFC 7296 §1.2, §2.6, §2.7, §2.10, §2.23): the responder's rules
//! in `responder`, the initiator's (tests, the loadtest) in `initiator`; both end in the same
//! half-open SA.

mod initiator;
mod responder;

pub use initiator::{Advance, InitReply, InitiatorError, InitiatorInit};
pub use responder::{
    cookie_holds, cookie_reply, refuse_version, respond_init, InitAnswer, InitRefusal,
};

use std::net::SocketAddr;

use ring::rand::SecureRandom;

use crate::dh::DhError;
use crate::error::ParseError;
use crate::header::{ExchangeType, Flags, Header, IKEV2_VERSION};
use crate::keys::IkeKeys;
use crate::message::Message;
use crate::nat::NatFinding;
use crate::notify::{Notify, NotifyType};
use crate::payloads::{Payload, PayloadType};
use crate::suite::Suite;

/// The shortest and longest nonce taken (RFC 7296 §3.9).
const NONCE_LENS: std::ops::RangeInclusive<usize> = 16..=256;
/// The length of the nonces made here.
const NONCE_LEN: usize = 32;
/// The hash algorithms taken in RFC 7427 signatures: SHA2-256, -384, -512.
const SIGNATURE_HASHES: [u8; 6] = [0, 2, 0, 3, 0, 4];

/// The addresses of a datagram as seen here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    /// Our address it arrived at (or leaves from).
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// Claim a NAT in front of this side (a NAT_DETECTION_SOURCE_IP that matches no address),
    /// so the peer moves to UDP 4500 and encapsulates ESP even where no NAT is: for a side
    /// that takes ESP only in UDP (RFC 7296 §2.23 lets a host do this).
    pub force_nat_t: bool,
}

/// An IKE SA after IKE_SA_INIT: its SPIs, suite and keys, the nonces and both messages (the
/// AUTH exchange signs them), and what NAT detection found.
#[derive(Debug)]
pub struct HalfOpen {
    /// The initiator's SPI.
    pub spi_i: [u8; 8],
    /// The responder's SPI.
    pub spi_r: [u8; 8],
    /// The negotiated algorithms.
    pub suite: Suite,
    /// The keys.
    pub keys: IkeKeys,
    /// The initiator's nonce.
    pub ni: Vec<u8>,
    /// The responder's nonce.
    pub nr: Vec<u8>,
    /// The request as sent.
    pub request: Vec<u8>,
    /// The response as sent.
    pub response: Vec<u8>,
    /// NAT detection's finding, from this side's view.
    pub nat: NatFinding,
    /// Both sides can take IKE fragments (RFC 7383).
    pub fragmentation: bool,
    /// Both sides take RFC 7427 signatures.
    pub signature_hashes: bool,
}

/// The data of the first notification of `kind`, if any.
fn first_notify<'a>(notifies: &[Notify<'a>], kind: NotifyType) -> Option<&'a [u8]> {
    notifies.iter().find(|n| n.kind == kind).map(|n| n.data)
}

/// Every notification of a message, read.
fn notifies_of<'a>(m: &Message<'a>) -> Result<Vec<Notify<'a>>, ParseError> {
    m.payloads
        .iter()
        .filter(|p| p.kind == PayloadType::NOTIFY)
        .map(|p| Notify::read(p.body))
        .collect()
}

/// An IKE_SA_INIT message with `payloads`, a response or a request.
fn init_message(
    spis: ([u8; 8], [u8; 8]),
    response: bool,
    payloads: &[Payload<'_>],
) -> Result<Vec<u8>, ParseError> {
    let header = Header {
        spi_i: spis.0,
        spi_r: spis.1,
        next_payload: 0,
        version: IKEV2_VERSION,
        exchange: ExchangeType::IKE_SA_INIT,
        flags: Flags::new(!response, response),
        message_id: 0,
        length: 0,
    };
    Message::encode(&header, payloads)
}

/// `N` random bytes.
fn random<const N: usize>(rng: &dyn SecureRandom) -> Result<[u8; N], DhError> {
    let mut out = [0u8; N];
    rng.fill(&mut out).map_err(|_| DhError::NoRandomness)?;
    Ok(out)
}

#[cfg(test)]
mod tests;
