//! IKE fragmentation (RFC 7383): once both sides said IKEV2_FRAGMENTATION_SUPPORTED in
//! IKE_SA_INIT, a protected message too large for one datagram travels as several messages
//! with the same ID, each carrying one Encrypted Fragment payload (fragment number, total,
//! then IV, a piece of the inner payload chain and an ICV of its own, the numbers
//! authenticated). Only the first names the first inner payload. The receiver checks each
//! fragment's ICV before keeping it and reads the message once all are in.

use ring::rand::SecureRandom;

use crate::header::{Header, HEADER_LEN};
use crate::message::Message;
use crate::payloads::PayloadType;
use crate::protected::{
    self, cipher_of, header_of, read_ours, sealing, Opened, Protected, ProtectedError,
};
use crate::sa_init::HalfOpen;

/// The largest message this side sends whole, and the size it cuts fragments to (IKE header
/// included): what fits a 1280-byte IP datagram (RFC 7383 §2.5.1, IPv6's minimum MTU) with
/// an IPv6 header, UDP and the non-ESP marker.
pub const FRAGMENT_SIZE: usize = 1280 - 40 - 8 - 4;
/// The most fragments taken for one message.
pub const MAX_FRAGMENTS: u16 = 64;
/// The most bytes one SA holds of a message being put together: a certificate chain fits
/// several times over, and a peer (even one only half-open) can pin no more.
pub const MAX_REASSEMBLY: usize = 16 * 1024;
/// Bytes of a fragment that are not the piece, besides what the cipher adds: header, payload
/// header, numbers.
const FRAME: usize = HEADER_LEN + 4 + 4;

/// Cuts the sealed message `whole` (this side's, of `sa`) into fragments of at most `max`
/// bytes each; a message that fits is returned as it is.
pub fn split(
    sa: &HalfOpen,
    whole: &[u8],
    max: usize,
    rng: &dyn SecureRandom,
) -> Result<Vec<Vec<u8>>, ProtectedError> {
    if whole.len() <= max {
        return Ok(vec![whole.to_vec()]);
    }
    let h = Header::parse(whole).map_err(|_| ProtectedError::NotOurs("unreadable"))?;
    let cipher = cipher_of(sa, h.flags.is_initiator())?;
    let overhead = FRAME + cipher.overhead();
    if max <= overhead {
        return Ok(vec![whole.to_vec()]);
    }
    // Our own message, opened with our own key to recover its chain (the one place that
    // knows the size is here, after sealing), then sealed again in pieces.
    let opened = protected::open(sa, whole, h.flags.is_initiator())?;
    let room = max - overhead;
    let pieces: Vec<&[u8]> = opened.inner.chunks(room).collect();
    let total = u16::try_from(pieces.len()).map_err(|_| ProtectedError::TooLong)?;
    let header = header_of(sa, opened.what);
    let mut out = Vec::with_capacity(pieces.len());
    for (i, piece) in pieces.iter().enumerate() {
        let number = i as u16 + 1; // at most `total`, a u16
        let mut fields = [0u8; 4];
        fields[..2].copy_from_slice(&number.to_be_bytes());
        fields[2..].copy_from_slice(&total.to_be_bytes());
        let first = if number == 1 {
            opened.first
        } else {
            PayloadType::NONE
        };
        let sealed = cipher
            .seal_as(&header, (PayloadType::SKF, &fields), first, piece, rng)
            .map_err(sealing)?;
        out.push(sealed);
    }
    Ok(out)
}

/// The fragment number of a message carrying an Encrypted Fragment payload, if it is one.
pub fn fragment_number(bytes: &[u8]) -> Option<u16> {
    let m = Message::parse(bytes).ok()?;
    let skf = m.find(PayloadType::SKF)?;
    Some(u16::from_be_bytes([*skf.body.first()?, *skf.body.get(1)?]))
}

/// Whether `bytes` is an authentic first fragment of a message of `sa` from the side
/// `by_initiator` names, however the message was cut (a retransmission cut smaller is one).
pub fn authentic_first_fragment(sa: &HalfOpen, bytes: &[u8], by_initiator: bool) -> bool {
    open_piece(sa, bytes, by_initiator).is_ok_and(|p| p.number == 1)
}

/// One fragment, opened.
#[derive(Debug)]
struct Piece {
    what: Protected,
    number: u16,
    total: u16,
    first: PayloadType,
    inner: Vec<u8>,
}

/// Opens one fragment of `sa` sent by the side `by_initiator` names.
fn open_piece(sa: &HalfOpen, bytes: &[u8], by_initiator: bool) -> Result<Piece, ProtectedError> {
    let m = read_ours(sa, bytes, by_initiator)?;
    let h = m.header;
    let skf = m
        .find(PayloadType::SKF)
        .ok_or(ProtectedError::NotOurs("no Encrypted Fragment payload"))?;
    let [n0, n1, t0, t1, ..] = *skf.body else {
        return Err(ProtectedError::NotOurs("a fragment without its numbers"));
    };
    let (number, total) = (u16::from_be_bytes([n0, n1]), u16::from_be_bytes([t0, t1]));
    if number == 0 || number > total || total > MAX_FRAGMENTS {
        return Err(ProtectedError::NotOurs("fragment numbers"));
    }
    let inner = cipher_of(sa, by_initiator)?
        .open(bytes, skf.body.len() - 4)
        .map_err(|_| ProtectedError::BadIcv)?;
    Ok(Piece {
        what: Protected {
            exchange: h.exchange,
            message_id: h.message_id,
            by_initiator,
            response: h.flags.is_response(),
        },
        number,
        total,
        first: skf.next,
        inner,
    })
}

/// A message being put together from its fragments.
#[derive(Debug, Default)]
pub struct Reassembly {
    what: Option<Protected>,
    first: Option<PayloadType>,
    pieces: Vec<Option<Vec<u8>>>,
    held: usize,
}

/// What a fragment did.
#[derive(Debug)]
pub enum Taken {
    /// Kept (or a copy of one kept); the message is not whole yet.
    Kept,
    /// The last one missing: the whole message.
    Whole(Opened),
}

impl Reassembly {
    /// Takes the fragment `bytes` of `sa` (sent by the side `by_initiator` names): its ICV
    /// checked first. A fragment of a message with more fragments than the one held starts
    /// over (the sender cut it smaller); one with fewer is dropped (RFC 7383 §2.6).
    pub fn take(
        &mut self,
        sa: &HalfOpen,
        bytes: &[u8],
        by_initiator: bool,
    ) -> Result<Taken, ProtectedError> {
        let piece = open_piece(sa, bytes, by_initiator)?;
        let held = self.what.filter(|w| w.message_id == piece.what.message_id);
        match held {
            Some(w) if w != piece.what => return Err(ProtectedError::NotOurs("header")),
            Some(_) if usize::from(piece.total) < self.pieces.len() => {
                return Err(ProtectedError::NotOurs("an older cut of the message"))
            }
            Some(_) if usize::from(piece.total) == self.pieces.len() => {}
            _ => {
                *self = Self {
                    what: Some(piece.what),
                    first: None,
                    pieces: vec![None; usize::from(piece.total)],
                    held: 0,
                }
            }
        }
        let at = usize::from(piece.number) - 1;
        if self.pieces[at].is_none() {
            self.held += piece.inner.len();
            if self.held > MAX_REASSEMBLY {
                *self = Self::default();
                return Err(ProtectedError::TooLong);
            }
            if piece.number == 1 {
                self.first = Some(piece.first);
            }
            self.pieces[at] = Some(piece.inner);
        }
        if self.pieces.iter().any(Option::is_none) {
            return Ok(Taken::Kept);
        }
        let (Some(what), Some(first)) = (self.what, self.first) else {
            return Ok(Taken::Kept);
        };
        let inner = self.pieces.iter().flatten().flatten().copied().collect();
        *self = Self::default();
        Ok(Taken::Whole(Opened { what, first, inner }))
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;

    use super::*;
    use crate::header::ExchangeType;
    use crate::payloads::Payload;
    use crate::test_support::half_open;

    fn big_message(sa: &HalfOpen) -> Vec<u8> {
        let cert = vec![0x42u8; 3000];
        let what = Protected {
            exchange: ExchangeType::IKE_AUTH,
            message_id: 1,
            by_initiator: true,
            response: false,
        };
        let payloads = [
            Payload::plain(PayloadType::IDI, b"\x03\0\0\0carol@example.com"),
            Payload::plain(PayloadType::CERT, &cert),
        ];
        protected::seal(sa, what, &payloads, &SystemRandom::new()).expect("sealed")
    }

    #[test]
    fn a_large_message_is_cut_and_put_back_together_in_any_order() {
        let (client, server) = half_open();
        let whole = big_message(&client);
        let rng = SystemRandom::new();
        let mut fragments = split(&client, &whole, FRAGMENT_SIZE, &rng).expect("split");
        assert_eq!(fragments.len(), 3);
        assert!(fragments.iter().all(|f| f.len() <= FRAGMENT_SIZE));
        assert_eq!(fragment_number(&fragments[1]), Some(2));
        fragments.swap(0, 2);
        let mut r = Reassembly::default();
        assert!(matches!(
            r.take(&server, &fragments[0], true),
            Ok(Taken::Kept)
        ));
        assert!(matches!(
            r.take(&server, &fragments[0], true),
            Ok(Taken::Kept)
        ));
        assert!(matches!(
            r.take(&server, &fragments[1], true),
            Ok(Taken::Kept)
        ));
        let Ok(Taken::Whole(opened)) = r.take(&server, &fragments[2], true) else {
            panic!("not whole");
        };
        let expected = protected::open(&server, &whole, true).expect("whole opens");
        assert_eq!(opened.inner, expected.inner);
        assert_eq!(opened.first, PayloadType::IDI);
        assert_eq!(opened.what, expected.what);
        assert_eq!(
            split(&client, &[0; 100], FRAGMENT_SIZE, &rng)
                .expect("s")
                .len(),
            1
        );
    }

    #[test]
    fn forged_or_impossible_fragments_are_refused() {
        let (client, server) = half_open();
        let rng = SystemRandom::new();
        let fragments = split(&client, &big_message(&client), 700, &rng).expect("split");
        let mut r = Reassembly::default();
        let mut forged = fragments[1].clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(
            r.take(&server, &forged, true).map(|_| ()),
            Err(ProtectedError::BadIcv)
        );
        let mut renumbered = fragments[1].clone();
        renumbered[HEADER_LEN + 4..HEADER_LEN + 6].copy_from_slice(&9u16.to_be_bytes());
        assert!(
            r.take(&server, &renumbered, true).is_err(),
            "past the total"
        );
        let mut sent_back = fragments[0].clone();
        sent_back[HEADER_LEN + 6..HEADER_LEN + 8].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            r.take(&server, &sent_back, true).map(|_| ()),
            Err(ProtectedError::BadIcv),
            "the numbers are authenticated"
        );
        assert!(
            r.take(&server, &fragments[0], false).is_err(),
            "from the wrong side"
        );
    }
}
