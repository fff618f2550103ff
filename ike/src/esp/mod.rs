//! ESP in tunnel mode (RFC 4303) with the ciphers the suites allow: the per-packet rules the
//! datapath's workers run, and the loadtest's simulated users with them.
//!
//! - `sa`: one SA's inbound and outbound packet rules, in place in the caller's buffer.
//! - `cipher`: an SA's cipher, an AEAD or AES-CBC with an HMAC.
//! - `replay`: the anti-replay window with extended sequence numbers.

mod cipher;
mod replay;
mod sa;

pub use replay::{ReplayRefusal, ReplayWindow, WINDOW};
pub use sa::{
    EspDrop, EspKeyError, EspSealError, Inbound, Opened, Outbound, ESP_HEADER_LEN, ESP_HEADROOM,
    ESP_TAILROOM, NEXT_IPV4, NEXT_IPV6, NEXT_NONE,
};

#[cfg(test)]
mod known_answers;
#[cfg(test)]
mod tests;
