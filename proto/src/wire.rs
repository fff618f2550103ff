//! The four WireGuard messages as zero-copy views over received bytes, and writers for them.
//!
//! Parsing checks lengths once and hands out references into the buffer; a short or long
//! buffer is an `Err`, never a panic.

use crate::constants::*;

/// Why bytes are not a WireGuard message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Too short to hold even the message type, or shorter than its type requires.
    #[error("truncated message: {len} bytes, type {msg_type} needs {need}")]
    Truncated {
        /// Message type read, or 0 if none could be read.
        msg_type: u32,
        /// Bytes received.
        len: usize,
        /// Bytes the type requires.
        need: usize,
    },
    /// Longer than a handshake message of this type can be.
    #[error("oversized message: {len} bytes, type {msg_type} is exactly {expected}")]
    Oversized {
        /// Message type read.
        msg_type: u32,
        /// Bytes received.
        len: usize,
        /// Exact size of the type.
        expected: usize,
    },
    /// The first four bytes (type and reserved zeros) name no WireGuard message.
    #[error("unknown message type {0:#x}")]
    UnknownType(u32),
}

/// A handshake initiation (type 1, 148 bytes).
#[derive(Debug, Clone, Copy)]
pub struct Initiation<'a> {
    /// The whole message, for MAC computation.
    pub bytes: &'a [u8; INITIATION_LEN],
    /// The initiator's session index.
    pub sender: u32,
    /// The initiator's ephemeral public key.
    pub ephemeral: &'a [u8; 32],
    /// The initiator's static public key, sealed.
    pub encrypted_static: &'a [u8; 48],
    /// The TAI64N timestamp, sealed.
    pub encrypted_timestamp: &'a [u8; 28],
    /// MAC over everything before it.
    pub mac1: &'a [u8; 16],
    /// MAC keyed by a cookie, or zeros.
    pub mac2: &'a [u8; 16],
}

/// A handshake response (type 2, 92 bytes).
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// The whole message, for MAC computation.
    pub bytes: &'a [u8; RESPONSE_LEN],
    /// The responder's session index.
    pub sender: u32,
    /// The initiator's session index this answers.
    pub receiver: u32,
    /// The responder's ephemeral public key.
    pub ephemeral: &'a [u8; 32],
    /// An empty plaintext, sealed: proves the responder derived the same keys.
    pub encrypted_nothing: &'a [u8; 16],
    /// MAC over everything before it.
    pub mac1: &'a [u8; 16],
    /// MAC keyed by a cookie, or zeros.
    pub mac2: &'a [u8; 16],
}

/// A cookie reply (type 3, 64 bytes).
#[derive(Debug, Clone, Copy)]
pub struct CookieReply<'a> {
    /// The sender index of the handshake message this answers.
    pub receiver: u32,
    /// Random XChaCha20 nonce.
    pub nonce: &'a [u8; 24],
    /// The cookie, sealed with the responder's cookie key and the answered MAC1 as AAD.
    pub encrypted_cookie: &'a [u8; 32],
}

/// The header of a transport data message (type 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportHeader {
    /// The receiver's session index.
    pub receiver: u32,
    /// The 64-bit nonce counter.
    pub counter: u64,
}

/// Any WireGuard message.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// Type 1.
    Initiation(Initiation<'a>),
    /// Type 2.
    Response(Response<'a>),
    /// Type 3.
    CookieReply(CookieReply<'a>),
    /// Type 4: the header; the ciphertext follows it in the buffer.
    Transport(TransportHeader),
}

/// Offset of MAC1 in an initiation; MAC1 covers every byte before it.
pub const INITIATION_MAC1_OFFSET: usize = 116;
/// Offset of MAC1 in a response.
pub const RESPONSE_MAC1_OFFSET: usize = 60;

fn arr<const N: usize>(b: &[u8], at: usize) -> Option<&[u8; N]> {
    b.get(at..at + N)?.first_chunk::<N>()
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    arr::<4>(b, at).map(|a| u32::from_le_bytes(*a))
}

/// Reads the message type (the first four bytes, little-endian, reserved bytes included).
pub fn message_type(bytes: &[u8]) -> Result<u32, WireError> {
    u32_at(bytes, 0).ok_or(WireError::Truncated {
        msg_type: 0,
        len: bytes.len(),
        need: 4,
    })
}

fn exact<const N: usize>(bytes: &[u8], msg_type: u32) -> Result<&[u8; N], WireError> {
    match bytes.len() {
        n if n < N => Err(WireError::Truncated {
            msg_type,
            len: n,
            need: N,
        }),
        n if n > N => Err(WireError::Oversized {
            msg_type,
            len: n,
            expected: N,
        }),
        _ => bytes.first_chunk::<N>().ok_or(WireError::Truncated {
            msg_type,
            len: bytes.len(),
            need: N,
        }),
    }
}

impl<'a> Message<'a> {
    /// Parses any message, checking its type and length.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        let truncated = |t, need| WireError::Truncated {
            msg_type: t,
            len: bytes.len(),
            need,
        };
        match message_type(bytes)? {
            MSG_INITIATION => {
                let b = exact::<INITIATION_LEN>(bytes, MSG_INITIATION)?;
                let t = MSG_INITIATION;
                Ok(Message::Initiation(Initiation {
                    bytes: b,
                    sender: u32_at(b, 4).ok_or(truncated(t, 8))?,
                    ephemeral: arr(b, 8).ok_or(truncated(t, 40))?,
                    encrypted_static: arr(b, 40).ok_or(truncated(t, 88))?,
                    encrypted_timestamp: arr(b, 88).ok_or(truncated(t, 116))?,
                    mac1: arr(b, 116).ok_or(truncated(t, 132))?,
                    mac2: arr(b, 132).ok_or(truncated(t, 148))?,
                }))
            }
            MSG_RESPONSE => {
                let b = exact::<RESPONSE_LEN>(bytes, MSG_RESPONSE)?;
                let t = MSG_RESPONSE;
                Ok(Message::Response(Response {
                    bytes: b,
                    sender: u32_at(b, 4).ok_or(truncated(t, 8))?,
                    receiver: u32_at(b, 8).ok_or(truncated(t, 12))?,
                    ephemeral: arr(b, 12).ok_or(truncated(t, 44))?,
                    encrypted_nothing: arr(b, 44).ok_or(truncated(t, 60))?,
                    mac1: arr(b, 60).ok_or(truncated(t, 76))?,
                    mac2: arr(b, 76).ok_or(truncated(t, 92))?,
                }))
            }
            MSG_COOKIE_REPLY => {
                let b = exact::<COOKIE_REPLY_LEN>(bytes, MSG_COOKIE_REPLY)?;
                let t = MSG_COOKIE_REPLY;
                Ok(Message::CookieReply(CookieReply {
                    receiver: u32_at(b, 4).ok_or(truncated(t, 8))?,
                    nonce: arr(b, 8).ok_or(truncated(t, 32))?,
                    encrypted_cookie: arr(b, 32).ok_or(truncated(t, 64))?,
                }))
            }
            MSG_TRANSPORT => TransportHeader::parse(bytes).map(Message::Transport),
            other => Err(WireError::UnknownType(other)),
        }
    }
}

impl TransportHeader {
    /// Parses the header of a transport message; the buffer must also hold at least a tag.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let truncated = WireError::Truncated {
            msg_type: MSG_TRANSPORT,
            len: bytes.len(),
            need: TRANSPORT_MIN_LEN,
        };
        if bytes.len() < TRANSPORT_MIN_LEN {
            return Err(truncated);
        }
        let counter = arr::<8>(bytes, 8).ok_or(truncated)?;
        Ok(Self {
            receiver: u32_at(bytes, 4).ok_or(truncated)?,
            counter: u64::from_le_bytes(*counter),
        })
    }

    /// Writes the header into the first 16 bytes of `out`.
    pub fn emit(&self, out: &mut [u8; TRANSPORT_HEADER_LEN]) {
        out[0..4].copy_from_slice(&MSG_TRANSPORT.to_le_bytes());
        out[4..8].copy_from_slice(&self.receiver.to_le_bytes());
        out[8..16].copy_from_slice(&self.counter.to_le_bytes());
    }
}

/// Writes the fields of an initiation (MACs left zero: see `cookie`).
pub fn emit_initiation(
    sender: u32,
    ephemeral: &[u8; 32],
    encrypted_static: &[u8; 48],
    encrypted_timestamp: &[u8; 28],
) -> [u8; INITIATION_LEN] {
    let mut m = [0u8; INITIATION_LEN];
    m[0..4].copy_from_slice(&MSG_INITIATION.to_le_bytes());
    m[4..8].copy_from_slice(&sender.to_le_bytes());
    m[8..40].copy_from_slice(ephemeral);
    m[40..88].copy_from_slice(encrypted_static);
    m[88..116].copy_from_slice(encrypted_timestamp);
    m
}

/// Writes the fields of a response (MACs left zero: see `cookie`).
pub fn emit_response(
    sender: u32,
    receiver: u32,
    ephemeral: &[u8; 32],
    encrypted_nothing: &[u8; 16],
) -> [u8; RESPONSE_LEN] {
    let mut m = [0u8; RESPONSE_LEN];
    m[0..4].copy_from_slice(&MSG_RESPONSE.to_le_bytes());
    m[4..8].copy_from_slice(&sender.to_le_bytes());
    m[8..12].copy_from_slice(&receiver.to_le_bytes());
    m[12..44].copy_from_slice(ephemeral);
    m[44..60].copy_from_slice(encrypted_nothing);
    m
}

/// Writes a cookie reply.
pub fn emit_cookie_reply(
    receiver: u32,
    nonce: &[u8; 24],
    encrypted_cookie: &[u8; 32],
) -> [u8; COOKIE_REPLY_LEN] {
    let mut m = [0u8; COOKIE_REPLY_LEN];
    m[0..4].copy_from_slice(&MSG_COOKIE_REPLY.to_le_bytes());
    m[4..8].copy_from_slice(&receiver.to_le_bytes());
    m[8..32].copy_from_slice(nonce);
    m[32..64].copy_from_slice(encrypted_cookie);
    m
}

/// The receiver index of a handshake response or transport message, without full parsing:
/// lets a datapath route a packet to the worker owning that index in one step.
pub fn receiver_index(bytes: &[u8]) -> Option<u32> {
    match message_type(bytes).ok()? {
        MSG_RESPONSE if bytes.len() == RESPONSE_LEN => u32_at(bytes, 8),
        MSG_COOKIE_REPLY if bytes.len() == COOKIE_REPLY_LEN => u32_at(bytes, 4),
        MSG_TRANSPORT if bytes.len() >= TRANSPORT_MIN_LEN => u32_at(bytes, 4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_type_at_its_exact_size() {
        let init = emit_initiation(7, &[1; 32], &[2; 48], &[3; 28]);
        match Message::parse(&init) {
            Ok(Message::Initiation(i)) => {
                assert_eq!(i.sender, 7);
                assert_eq!(i.ephemeral, &[1; 32]);
                assert_eq!(i.encrypted_static, &[2; 48]);
                assert_eq!(i.encrypted_timestamp, &[3; 28]);
            }
            other => panic!("unexpected {other:?}"),
        }
        let resp = emit_response(9, 7, &[4; 32], &[5; 16]);
        assert!(
            matches!(Message::parse(&resp), Ok(Message::Response(r)) if r.receiver == 7 && r.sender == 9)
        );
        assert_eq!(receiver_index(&resp), Some(7));
        let cookie = emit_cookie_reply(7, &[6; 24], &[7; 32]);
        assert!(matches!(Message::parse(&cookie), Ok(Message::CookieReply(c)) if c.receiver == 7));
        let mut transport = [0u8; 48];
        TransportHeader {
            receiver: 0xdead_beef,
            counter: 42,
        }
        .emit((&mut transport[..16]).try_into().expect("16 bytes"));
        assert_eq!(
            TransportHeader::parse(&transport),
            Ok(TransportHeader {
                receiver: 0xdead_beef,
                counter: 42
            })
        );
    }

    #[test]
    fn rejects_wrong_sizes_and_types() {
        let init = emit_initiation(1, &[0; 32], &[0; 48], &[0; 28]);
        assert!(matches!(
            Message::parse(&init[..100]),
            Err(WireError::Truncated { need: 148, .. })
        ));
        let mut long = init.to_vec();
        long.push(0);
        assert!(matches!(
            Message::parse(&long),
            Err(WireError::Oversized { expected: 148, .. })
        ));
        assert_eq!(
            Message::parse(&[9, 0, 0, 0, 1, 2]).err(),
            Some(WireError::UnknownType(9))
        );
        // Non-zero reserved bytes make the 32-bit type unknown, as in wireguard-go.
        assert_eq!(
            Message::parse(&[1, 1, 0, 0]).err(),
            Some(WireError::UnknownType(0x101))
        );
        assert!(matches!(
            Message::parse(&[4, 0, 0, 0, 1, 2, 3, 4]),
            Err(WireError::Truncated { need: 32, .. })
        ));
        assert!(matches!(
            Message::parse(&[1, 0]),
            Err(WireError::Truncated { need: 4, .. })
        ));
    }
}
