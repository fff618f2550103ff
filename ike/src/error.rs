//! Why a message was refused. Each reason is distinct, so the responder can count drops by
//! reason, and none quotes more of the message than its numbers.

/// A message that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than what must be there.
    #[error("truncated: {need} bytes needed, {have} present")]
    Truncated {
        /// Bytes the structure needs.
        need: usize,
        /// Bytes there are.
        have: usize,
    },
    /// Longer than any message this implementation takes.
    #[error("oversized: {len} bytes, at most {max} taken")]
    Oversized {
        /// The message's length.
        len: usize,
        /// The most taken.
        max: usize,
    },
    /// The header's length field disagrees with the datagram.
    #[error("the header says {declared} bytes, the datagram has {actual}")]
    LengthMismatch {
        /// What the header says.
        declared: usize,
        /// What arrived.
        actual: usize,
    },
    /// A major version other than 2 (answered with INVALID_MAJOR_VERSION by the rules).
    #[error("IKE major version {0}, not 2")]
    UnsupportedVersion(u8),
    /// A payload whose length is below its own header's 4 bytes.
    #[error("payload {index} claims {len} bytes, less than its 4-byte header")]
    PayloadTooShort {
        /// Its position in the chain.
        index: usize,
        /// The length it claims.
        len: usize,
    },
    /// A payload running past the end of the message.
    #[error("payload {index} runs past the end of the message")]
    PayloadOverrun {
        /// Its position in the chain.
        index: usize,
    },
    /// Bytes after the last payload of the chain.
    #[error("{0} bytes after the last payload")]
    TrailingBytes(usize),
    /// A payload after the encrypted payload, which must be the last.
    #[error("a payload follows the encrypted (SK) payload")]
    PayloadAfterEncrypted,
    /// An unknown payload marked critical (answered with UNSUPPORTED_CRITICAL_PAYLOAD).
    #[error("unknown critical payload type {0}")]
    UnsupportedCritical(u8),
    /// More payloads than any sound message carries.
    #[error("more than {0} payloads")]
    TooManyPayloads(usize),
    /// A field whose value is not allowed where it is.
    #[error("invalid {0}")]
    Invalid(&'static str),
}
