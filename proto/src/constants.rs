//! Protocol constants from the WireGuard paper (§5.4 and §6) and the reference implementations.

use std::time::Duration;

/// Noise protocol name hashed into the initial chaining key.
pub const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
/// WireGuard identifier mixed into the initial hash.
pub const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
/// Label for the MAC1 key: `HASH(LABEL_MAC1 || responder static public key)`.
pub const LABEL_MAC1: &[u8] = b"mac1----";
/// Label for the cookie encryption key: `HASH(LABEL_COOKIE || responder static public key)`.
pub const LABEL_COOKIE: &[u8] = b"cookie--";

/// Message type of a handshake initiation.
pub const MSG_INITIATION: u32 = 1;
/// Message type of a handshake response.
pub const MSG_RESPONSE: u32 = 2;
/// Message type of a cookie reply.
pub const MSG_COOKIE_REPLY: u32 = 3;
/// Message type of a transport data message.
pub const MSG_TRANSPORT: u32 = 4;

/// Size of a handshake initiation on the wire.
pub const INITIATION_LEN: usize = 148;
/// Size of a handshake response on the wire.
pub const RESPONSE_LEN: usize = 92;
/// Size of a cookie reply on the wire.
pub const COOKIE_REPLY_LEN: usize = 64;
/// Transport header: type (4), receiver index (4), counter (8).
pub const TRANSPORT_HEADER_LEN: usize = 16;
/// Poly1305 tag appended to every AEAD ciphertext.
pub const TAG_LEN: usize = 16;
/// Smallest valid transport message: header and the tag of an empty (keepalive) payload.
pub const TRANSPORT_MIN_LEN: usize = TRANSPORT_HEADER_LEN + TAG_LEN;
/// Transport payloads are zero-padded to a multiple of this many bytes.
pub const PADDING_MULTIPLE: usize = 16;

/// Start a new handshake after sending this many messages with one key.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// Never use a key for more than this many messages.
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
/// The initiator starts a new handshake when its current key is this old.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// A key this old is never used again, for sending or receiving.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// Give up retrying a handshake after this long.
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// Retransmit an unanswered initiation after this long (plus jitter).
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound of the random jitter added to REKEY_TIMEOUT.
pub const REKEY_TIMEOUT_JITTER_MAX: Duration = Duration::from_millis(333);
/// Send a keepalive when data was received but nothing sent for this long.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Number of initiation retransmissions before giving up (REKEY_ATTEMPT_TIME / REKEY_TIMEOUT).
pub const MAX_TIMER_HANDSHAKES: u32 = 18;
/// A responder accepts at most this many initiations per second from one peer.
pub const INITIATIONS_PER_SECOND: u32 = 50;
/// The responder's cookie secret is replaced after this long.
pub const COOKIE_SECRET_MAX_AGE: Duration = Duration::from_secs(120);
/// An initiator stops using a received cookie this long before the responder would rotate it.
pub const COOKIE_SECRET_LATENCY: Duration = Duration::from_secs(5);
