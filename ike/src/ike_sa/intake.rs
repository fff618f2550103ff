//! A request's way in and its answer's way out: a request opened whole, or put together from
//! its fragments (RFC 7383, each checked as it comes); an answer cut into fragments when
//! fragmentation was agreed and it is too large for one datagram.

use ring::rand::SecureRandom;

use super::{request_digest, IkeSa, SaEvent};
use crate::fragments::{split, Taken, FRAGMENT_SIZE};
use crate::protected::{self, Opened, ProtectedError};

/// Why a request is not there to handle.
fn dropped(e: ProtectedError) -> Vec<SaEvent> {
    match e {
        ProtectedError::BadIcv => vec![SaEvent::Dropped("bad ICV")],
        ProtectedError::TooLong => vec![SaEvent::Dropped("fragments past the message size")],
        _ => vec![SaEvent::Dropped("unreadable request")],
    }
}

impl IkeSa {
    /// The request in `bytes`, opened, with the digest its retransmission will match (a
    /// fragmented request's first fragment's). `Err`: the events to return instead (a
    /// fragment kept, a drop).
    pub(super) fn open_request(
        &mut self,
        bytes: &[u8],
        fragmented: bool,
    ) -> Result<(Opened, [u8; 32]), Vec<SaEvent>> {
        if !fragmented {
            let opened = protected::open(&self.keys, bytes, true).map_err(dropped)?;
            return Ok((opened, request_digest(bytes)));
        }
        if !self.keys.fragmentation {
            return Err(vec![SaEvent::Dropped("a fragment where none was agreed")]);
        }
        let number = crate::fragments::fragment_number(bytes);
        let taken = self
            .reassembly
            .take(&self.keys, bytes, true)
            .map_err(dropped)?;
        if number == Some(1) {
            self.first_fragment = Some(request_digest(bytes));
        }
        match taken {
            Taken::Kept => Err(vec![SaEvent::FragmentKept]),
            Taken::Whole(opened) => match self.first_fragment.take() {
                Some(digest) => Ok((opened, digest)),
                None => Err(vec![SaEvent::Dropped("unreadable request")]),
            },
        }
    }

    /// `response` as the datagrams to send: itself, or its fragments.
    pub(super) fn datagrams(&self, response: Vec<u8>, rng: &dyn SecureRandom) -> Vec<Vec<u8>> {
        if !self.keys.fragmentation || response.len() <= FRAGMENT_SIZE {
            return vec![response];
        }
        split(&self.keys, &response, FRAGMENT_SIZE, rng).unwrap_or_else(|_| vec![response])
    }
}
