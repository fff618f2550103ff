//! A transport session: one pair of keys from a handshake, its send counter and its replay
//! window. Seals and opens transport messages in place, in the caller's buffer.
//!
//! Buffer layout for both directions: `[16-byte header][payload][16-byte tag]`. A sender reads
//! its plaintext into the buffer at offset 16, so sealing needs no copy.

use std::time::Instant;

use zeroize::Zeroize;

use crate::aead::{wireguard_nonce, Cipher, PacketAead, RingKey};

use crate::constants::*;
use crate::handshake::SessionKeys;
use crate::replay::{ReplayError, ReplayWindow};
use crate::wire::TransportHeader;

/// Why a transport message could not be sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The message is shorter than a header and a tag.
    #[error("transport message of {0} bytes is shorter than the 32-byte minimum")]
    Truncated(usize),
    /// The receiver index is not this session's.
    #[error("receiver index {0:#x} is not this session's")]
    WrongIndex(u32),
    /// Replay protection refused the counter.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The tag did not verify: forged or corrupted.
    #[error("transport message did not authenticate")]
    BadTag,
    /// The session has sent REJECT_AFTER_MESSAGES messages and must not send more.
    #[error("send counter exhausted; a new handshake is needed")]
    CounterExhausted,
    /// The buffer has no room for padding and the tag.
    #[error("buffer of {have} bytes cannot hold a sealed message of {need}")]
    NoRoom {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}

/// Keys and counters of one handshake's session.
pub struct Session {
    /// Our index (receiver field of packets sent to us).
    pub local_index: u32,
    /// The peer's index (receiver field of packets we send).
    pub remote_index: u32,
    /// When the handshake that made this session completed.
    pub created: Instant,
    /// True if we were the initiator.
    pub initiator: bool,
    /// The keys as the handshake gave them (wiped on drop).
    raw: [[u8; 32]; 2],
    /// The keys expanded for `ring` (544 bytes each, sized for AES-GCM's tables): dropped
    /// while the session is idle (`compact`), rebuilt by its next packet. With the replay
    /// window small until the session carries traffic, an idle session costs about 150
    /// bytes instead of 1.7 KiB.
    ciphers: Option<Box<Ciphers>>,
    send_counter: u64,
    replay: ReplayWindow,
}

/// Both directions' expanded keys.
struct Ciphers {
    send: RingKey,
    recv: RingKey,
}

impl Ciphers {
    fn new(raw: &[[u8; 32]; 2]) -> Box<Self> {
        Box::new(Self {
            send: key(&raw[0]),
            recv: key(&raw[1]),
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.raw.zeroize();
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("initiator", &self.initiator)
            .field("send_counter", &self.send_counter)
            .finish_non_exhaustive()
    }
}

fn key(bytes: &[u8; 32]) -> RingKey {
    RingKey::new(Cipher::ChaCha20Poly1305, bytes)
}

/// How long a payload of `len` bytes becomes once padded for a tunnel of `mtu` bytes.
pub fn padded_len(len: usize, mtu: usize) -> usize {
    let padded = len.div_ceil(PADDING_MULTIPLE) * PADDING_MULTIPLE;
    if len <= mtu {
        padded.min(mtu)
    } else {
        padded
    }
}

impl Session {
    /// A session from a completed handshake's keys, created at `now`.
    pub fn new(keys: &SessionKeys, now: Instant) -> Self {
        let mut session = Self {
            local_index: keys.local_index,
            remote_index: keys.remote_index,
            created: now,
            initiator: keys.initiator,
            raw: [keys.send, keys.recv],
            ciphers: None,
            send_counter: 0,
            replay: ReplayWindow::default(),
        };
        // Expanded here (by whoever makes the session), not by the worker's first packet.
        session.ciphers = Some(Ciphers::new(&session.raw));
        session
    }

    /// Frees the expanded keys (an idle session); its next packet rebuilds them.
    pub fn compact(&mut self) {
        self.ciphers = None;
    }

    /// True while the expanded keys are freed.
    pub fn is_compact(&self) -> bool {
        self.ciphers.is_none()
    }

    fn ciphers(&mut self) -> &Ciphers {
        let raw = &self.raw;
        self.ciphers.get_or_insert_with(|| Ciphers::new(raw))
    }

    /// The counter the next sealed message will carry.
    pub fn send_counter(&self) -> u64 {
        self.send_counter
    }

    /// True while the session may still seal and open (younger than REJECT_AFTER_TIME and
    /// counter below REJECT_AFTER_MESSAGES).
    pub fn is_valid(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.created) < REJECT_AFTER_TIME
            && self.send_counter < REJECT_AFTER_MESSAGES
    }

    /// Seals `buf[16..16 + len]` in place: pads it for `mtu`, encrypts, writes the header and
    /// tag. Returns the length of the whole message from offset 0.
    pub fn seal(
        &mut self,
        buf: &mut [u8],
        len: usize,
        mtu: usize,
    ) -> Result<usize, TransportError> {
        if self.send_counter >= REJECT_AFTER_MESSAGES {
            return Err(TransportError::CounterExhausted);
        }
        let padded = padded_len(len, mtu);
        let total = TRANSPORT_HEADER_LEN + padded + TAG_LEN;
        if buf.len() < total {
            return Err(TransportError::NoRoom {
                need: total,
                have: buf.len(),
            });
        }
        let counter = self.send_counter;
        self.send_counter += 1;
        let have = buf.len();
        let (header, rest) = buf.split_at_mut(TRANSPORT_HEADER_LEN);
        rest[len..padded].fill(0);
        let (payload, tail) = rest.split_at_mut(padded);
        let tag = self
            .ciphers()
            .send
            .seal(wireguard_nonce(counter), &[], payload)
            .map_err(|_| TransportError::NoRoom { need: total, have })?;
        tail[..TAG_LEN].copy_from_slice(&tag);
        if let Some(h) = header.first_chunk_mut::<TRANSPORT_HEADER_LEN>() {
            TransportHeader {
                receiver: self.remote_index,
                counter,
            }
            .emit(h);
        }
        Ok(total)
    }

    /// Opens a whole transport message in place. On success the plaintext (still padded) is
    /// at `msg[16..16 + n]`, and `n` is returned.
    pub fn open(&mut self, msg: &mut [u8]) -> Result<usize, TransportError> {
        let header =
            TransportHeader::parse(msg).map_err(|_| TransportError::Truncated(msg.len()))?;
        if header.receiver != self.local_index {
            return Err(TransportError::WrongIndex(header.receiver));
        }
        self.replay.check(header.counter)?;
        let recv = &self.ciphers().recv;
        let body = &mut msg[TRANSPORT_HEADER_LEN..];
        let n = body.len() - TAG_LEN;
        let (payload, tag) = body.split_at_mut(n);
        let tag = tag.first_chunk::<TAG_LEN>().ok_or(TransportError::BadTag)?;
        recv.open(wireguard_nonce(header.counter), &[], payload, tag)
            .map_err(|_| TransportError::BadTag)?;
        // Only an authenticated counter may move the window.
        self.replay.accept(header.counter)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_session_stays_small() {
        // What 100,000 idle sessions cost: the expanded keys and the full replay ring are
        // only allocated while the session carries traffic.
        assert!(
            std::mem::size_of::<Session>() <= 160,
            "{}",
            std::mem::size_of::<Session>()
        );
    }

    fn pair() -> (Session, Session) {
        let now = Instant::now();
        let a = SessionKeys {
            local_index: 1,
            remote_index: 2,
            send: [1; 32],
            recv: [2; 32],
            initiator: true,
        };
        let b = SessionKeys {
            local_index: 2,
            remote_index: 1,
            send: [2; 32],
            recv: [1; 32],
            initiator: false,
        };
        (Session::new(&a, now), Session::new(&b, now))
    }

    #[test]
    fn padding_rule() {
        assert_eq!(padded_len(0, 1420), 0);
        assert_eq!(padded_len(1, 1420), 16);
        assert_eq!(padded_len(16, 1420), 16);
        assert_eq!(padded_len(1419, 1420), 1420, "never pads past the MTU");
        assert_eq!(padded_len(1500, 1420), 1504);
    }

    #[test]
    fn seal_open_round_trip_replay_and_tamper() {
        let (mut a, mut b) = pair();
        let mut buf = [0u8; 128];
        buf[16..21].copy_from_slice(b"hello");
        let n = a.seal(&mut buf, 5, 1420).expect("seal");
        assert_eq!(n, 16 + 16 + 16);
        let sent = buf;
        let len = b.open(&mut buf[..n]).expect("open");
        assert_eq!(&buf[16..16 + len], b"hello\0\0\0\0\0\0\0\0\0\0\0");

        let mut replay = sent;
        assert!(matches!(
            b.open(&mut replay[..n]),
            Err(TransportError::Replay(ReplayError::Duplicate {
                counter: 0
            }))
        ));

        let mut buf = [0u8; 128];
        let n = a.seal(&mut buf, 0, 1420).expect("keepalive");
        assert_eq!(n, 32);
        buf[31] ^= 1;
        assert_eq!(b.open(&mut buf[..n]), Err(TransportError::BadTag));
        // A forged packet does not burn its counter: the genuine one still opens.
        buf[31] ^= 1;
        assert_eq!(b.open(&mut buf[..n]), Ok(0));
    }

    #[test]
    fn a_compacted_session_rebuilds_its_keys_and_keeps_its_counters() {
        let (mut a, mut b) = pair();
        let mut buf = [0u8; 128];
        let n = a.seal(&mut buf, 0, 1420).expect("seal");
        let first = buf;
        assert_eq!(b.open(&mut buf[..n]), Ok(0));
        a.compact();
        b.compact();
        assert!(a.is_compact() && b.is_compact());
        let mut replay = first;
        assert!(
            matches!(b.open(&mut replay[..n]), Err(TransportError::Replay(_))),
            "the replay window survives compaction"
        );
        let mut buf = [0u8; 128];
        buf[16..19].copy_from_slice(b"abc");
        let n = a.seal(&mut buf, 3, 1420).expect("seal after compaction");
        assert_eq!(a.send_counter(), 2, "the send counter survives compaction");
        assert!(!a.is_compact(), "sealing rebuilt the keys");
        assert_eq!(b.open(&mut buf[..n]), Ok(16));
        assert_eq!(&buf[16..19], b"abc");
    }

    #[test]
    fn wrong_index_and_short_messages() {
        let (mut a, mut b) = pair();
        let mut buf = [0u8; 64];
        let n = a.seal(&mut buf, 0, 1420).expect("seal");
        assert_eq!(a.open(&mut buf[..n]), Err(TransportError::WrongIndex(2)));
        assert_eq!(b.open(&mut buf[..20]), Err(TransportError::Truncated(20)));
        assert!(matches!(
            a.seal(&mut [0u8; 40], 20, 1420),
            Err(TransportError::NoRoom { .. })
        ));
    }
}
