//! Messages of an IKE SA once IKE_SA_INIT has made its keys (RFC 7296 §1.2, §3.14): every
//! payload travels inside one Encrypted payload, sealed by the sender with its own key (the
//! original initiator with SK_ei, the original responder with SK_er). The header's flags say
//! which side sent it and whether it is a response, so the receiver knows the key before it
//! reads a byte of the body.

use ring::rand::SecureRandom;

use crate::error::ParseError;
use crate::header::{ExchangeType, Flags, Header, IKEV2_VERSION};
use crate::message::Message;
use crate::payloads::{read_chain, write_chain, Payload, PayloadType};
use crate::sa_init::HalfOpen;
use crate::sk::{SkCipher, SkError};

/// What a protected message is: its exchange and message ID, who sent it, request or
/// response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protected {
    /// The exchange.
    pub exchange: ExchangeType,
    /// The message ID.
    pub message_id: u32,
    /// Sent by the SA's original initiator.
    pub by_initiator: bool,
    /// A response (else a request).
    pub response: bool,
}

/// Why a protected message could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtectedError {
    /// Unreadable, of another SA, from the wrong side, or without an Encrypted payload.
    #[error("not a message of this SA: {0}")]
    NotOurs(&'static str),
    /// The Encrypted payload did not open: forged, corrupted, or another key.
    #[error("the Encrypted payload does not open")]
    BadIcv,
    /// The inner payloads do not parse.
    #[error("inner payloads: {0}")]
    Inner(#[from] ParseError),
    /// The SA's cipher cannot make Encrypted payloads (a bug: the suite chose it).
    #[error("the SA's cipher has no Encrypted payload support")]
    Cipher,
    /// The message would not fit its length fields.
    #[error("the message is too long")]
    TooLong,
    /// No randomness for the IV.
    #[error("no randomness for an IV")]
    NoRandomness,
}

/// A protected message, opened.
#[derive(Debug)]
pub struct Opened {
    /// What it is.
    pub what: Protected,
    /// The first inner payload's type.
    pub first: PayloadType,
    /// The inner payload chain.
    pub inner: Vec<u8>,
}

impl Opened {
    /// The inner payloads, read.
    pub fn payloads(&self) -> Result<Vec<Payload<'_>>, ParseError> {
        read_chain(self.first, &self.inner)
    }
}

/// The cipher the side that sent a message seals with: its SK_e and SK_a.
pub(crate) fn cipher_of(sa: &HalfOpen, by_initiator: bool) -> Result<SkCipher, ProtectedError> {
    let k = &sa.keys;
    let (e, a) = if by_initiator {
        (&k.sk_ei, &k.sk_ai)
    } else {
        (&k.sk_er, &k.sk_ar)
    };
    SkCipher::new(&sa.suite, e, a).map_err(|_| ProtectedError::Cipher)
}

/// The header of a message of `sa` that `what` describes (its first payload and length are
/// the sealer's to set).
pub(crate) fn header_of(sa: &HalfOpen, what: Protected) -> Header {
    Header {
        spi_i: sa.spi_i,
        spi_r: sa.spi_r,
        next_payload: 0,
        version: IKEV2_VERSION,
        exchange: what.exchange,
        flags: Flags::new(what.by_initiator, what.response),
        message_id: what.message_id,
        length: 0,
    }
}

/// A message of `sa` carrying `payloads`, sealed by the side `what` names, under a random IV
/// (unique under the key however often a caller seals: answering the same request twice with
/// different contents must never reuse a GCM nonce; unpredictable, as CBC needs).
pub fn seal(
    sa: &HalfOpen,
    what: Protected,
    payloads: &[Payload<'_>],
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, ProtectedError> {
    let mut chain = Vec::new();
    let first = write_chain(&mut chain, payloads).map_err(|_| ProtectedError::TooLong)?;
    let header = header_of(sa, what);
    cipher_of(sa, what.by_initiator)?
        .seal(&header, first, &chain, rng)
        .map_err(sealing)
}

/// The sealing error as this module names it.
pub(crate) fn sealing(e: SkError) -> ProtectedError {
    match e {
        SkError::NoRandomness => ProtectedError::NoRandomness,
        _ => ProtectedError::TooLong,
    }
}

/// `bytes` read as a message of `sa` sent by the side `by_initiator` names (its SPIs and
/// sender checked, nothing opened yet).
pub(crate) fn read_ours<'a>(
    sa: &HalfOpen,
    bytes: &'a [u8],
    by_initiator: bool,
) -> Result<Message<'a>, ProtectedError> {
    let m = Message::parse(bytes).map_err(|_| ProtectedError::NotOurs("unreadable"))?;
    let h = m.header;
    if h.spi_i != sa.spi_i || h.spi_r != sa.spi_r {
        return Err(ProtectedError::NotOurs("SPIs"));
    }
    if h.flags.is_initiator() != by_initiator {
        return Err(ProtectedError::NotOurs("sent by the wrong side"));
    }
    Ok(m)
}

/// Opens a message of `sa` that the side `by_initiator` names must have sent.
pub fn open(sa: &HalfOpen, bytes: &[u8], by_initiator: bool) -> Result<Opened, ProtectedError> {
    let m = read_ours(sa, bytes, by_initiator)?;
    let h = m.header;
    let sk = m
        .find(PayloadType::SK)
        .ok_or(ProtectedError::NotOurs("no Encrypted payload"))?;
    let inner = cipher_of(sa, by_initiator)?
        .open(bytes, sk.body.len())
        .map_err(|_| ProtectedError::BadIcv)?;
    Ok(Opened {
        what: Protected {
            exchange: h.exchange,
            message_id: h.message_id,
            by_initiator,
            response: h.flags.is_response(),
        },
        first: sk.next,
        inner,
    })
}
