//! MAC1, MAC2 and cookie replies (WireGuard paper §5.4.7): the DoS defence.
//!
//! MAC1 proves the sender knows our public key. When a responder is under load it answers
//! handshake messages without a valid MAC2 with a cookie reply: an encrypted, short-lived
//! `MAC(secret, source address)` that the sender must key MAC2 with. That proves the source
//! address is real (it received the reply) before any Diffie-Hellman is spent.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rand_core::{CryptoRng, RngCore};

use crate::constants::{
    COOKIE_REPLY_LEN, COOKIE_SECRET_LATENCY, COOKIE_SECRET_MAX_AGE, INITIATION_LEN, RESPONSE_LEN,
};
use crate::crypto::{ct_eq, mac, xaead_open, xaead_seal, Key};
use crate::wire::{emit_cookie_reply, CookieReply, INITIATION_MAC1_OFFSET, RESPONSE_MAC1_OFFSET};

/// Where MAC1 starts in a handshake message of this length (None for other lengths).
fn mac1_offset(len: usize) -> Option<usize> {
    match len {
        INITIATION_LEN => Some(INITIATION_MAC1_OFFSET),
        RESPONSE_LEN => Some(RESPONSE_MAC1_OFFSET),
        _ => None,
    }
}

/// Checks MAC1 of a received initiation or response against our MAC1 key.
pub fn verify_mac1(mac1_key: &Key, message: &[u8]) -> bool {
    let Some(at) = mac1_offset(message.len()) else {
        return false;
    };
    let expected = mac(mac1_key, &[&message[..at]]);
    ct_eq(&expected, &message[at..at + 16])
}

/// The MAC1 a message carries (zeros for a message of the wrong length).
pub fn mac1_of(message: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    if let Some(at) = mac1_offset(message.len()) {
        out.copy_from_slice(&message[at..at + 16]);
    }
    out
}

fn address_bytes(source: SocketAddr, out: &mut [u8; 18]) -> &[u8] {
    let port = source.port().to_be_bytes();
    match source.ip() {
        IpAddr::V4(ip) => {
            out[..4].copy_from_slice(&ip.octets());
            out[4..6].copy_from_slice(&port);
            &out[..6]
        }
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => address_bytes(SocketAddr::new(IpAddr::V4(v4), source.port()), out),
            None => {
                out[..16].copy_from_slice(&ip.octets());
                out[16..].copy_from_slice(&port);
                &out[..]
            }
        },
    }
}

/// The responder's side: checks MACs and makes cookie replies. One per local identity.
pub struct CookieChecker {
    mac1_key: Key,
    cookie_key: Key,
    secret: [u8; 32],
    secret_born: Option<Instant>,
}

/// What MAC checks concluded about a received handshake message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacVerdict {
    /// MAC1 is wrong: drop without reply.
    BadMac1,
    /// MAC1 is right, MAC2 absent or wrong: under load, answer with a cookie reply.
    Mac1Only,
    /// Both MACs are right: the source address is proven.
    Mac2Valid,
}

impl CookieChecker {
    /// A checker for the identity whose keys are given (see `LocalIdentity`).
    pub fn new(mac1_key: Key, cookie_key: Key) -> Self {
        Self {
            mac1_key,
            cookie_key,
            secret: [0; 32],
            secret_born: None,
        }
    }

    fn refresh_secret<R: RngCore + CryptoRng>(&mut self, now: Instant, rng: &mut R) {
        let stale = match self.secret_born {
            Some(born) => now.saturating_duration_since(born) >= COOKIE_SECRET_MAX_AGE,
            None => true,
        };
        if stale {
            rng.fill_bytes(&mut self.secret);
            self.secret_born = Some(now);
        }
    }

    fn cookie_for(&self, source: SocketAddr) -> [u8; 16] {
        let mut buf = [0u8; 18];
        mac(&self.secret, &[address_bytes(source, &mut buf)])
    }

    /// Checks MAC1 and, if a cookie secret is live, MAC2 for a message from `source`.
    pub fn verify(&self, message: &[u8], source: SocketAddr, now: Instant) -> MacVerdict {
        if !verify_mac1(&self.mac1_key, message) {
            return MacVerdict::BadMac1;
        }
        let live = self
            .secret_born
            .is_some_and(|born| now.saturating_duration_since(born) < COOKIE_SECRET_MAX_AGE);
        if !live {
            return MacVerdict::Mac1Only;
        }
        let len = message.len();
        let expected = mac(&self.cookie_for(source), &[&message[..len - 16]]);
        if ct_eq(&expected, &message[len - 16..]) {
            MacVerdict::Mac2Valid
        } else {
            MacVerdict::Mac1Only
        }
    }

    /// A cookie reply to the handshake message `message` (whose sender index is `sender`).
    pub fn reply<R: RngCore + CryptoRng>(
        &mut self,
        message: &[u8],
        sender: u32,
        source: SocketAddr,
        now: Instant,
        rng: &mut R,
    ) -> [u8; COOKIE_REPLY_LEN] {
        self.refresh_secret(now, rng);
        let cookie = self.cookie_for(source);
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let sealed = xaead_seal(&self.cookie_key, &nonce, &mac1_of(message), &cookie);
        emit_cookie_reply(sender, &nonce, &sealed)
    }
}

/// Why a cookie reply was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// We sent nothing a cookie reply could answer.
    #[error("cookie reply without a handshake message awaiting it")]
    Unexpected,
    /// It did not decrypt with the peer's cookie key and our last MAC1.
    #[error("cookie reply did not authenticate")]
    BadCookie,
}

/// The sender's side, one per peer: stamps MAC1/MAC2 and keeps the latest cookie.
pub struct CookieJar {
    mac1_key: Key,
    cookie_key: Key,
    cookie: Option<([u8; 16], Instant)>,
    last_mac1: Option<[u8; 16]>,
}

impl CookieJar {
    /// A jar for messages to the peer whose keys are given (see `RemotePeer`).
    pub fn new(mac1_key: Key, cookie_key: Key) -> Self {
        Self {
            mac1_key,
            cookie_key,
            cookie: None,
            last_mac1: None,
        }
    }

    /// A jar for messages to the holder of `public` (the keys depend only on the recipient).
    pub fn for_recipient(public: &crate::keys::PublicKey) -> Self {
        use crate::constants::{LABEL_COOKIE, LABEL_MAC1};
        Self::new(
            crate::crypto::hash(&[LABEL_MAC1, &public.0]),
            crate::crypto::hash(&[LABEL_COOKIE, &public.0]),
        )
    }

    /// Fills in MAC1 and MAC2 of an outgoing initiation or response.
    pub fn stamp(&mut self, message: &mut [u8], now: Instant) {
        let Some(at) = mac1_offset(message.len()) else {
            return;
        };
        let mac1 = mac(&self.mac1_key, &[&message[..at]]);
        message[at..at + 16].copy_from_slice(&mac1);
        self.last_mac1 = Some(mac1);
        let fresh = self.cookie.filter(|(_, got)| {
            now.saturating_duration_since(*got) < COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY
        });
        let mac2 = match fresh {
            Some((cookie, _)) => mac(&cookie, &[&message[..at + 16]]),
            None => [0u8; 16],
        };
        message[at + 16..at + 32].copy_from_slice(&mac2);
    }

    /// Takes the cookie from a reply to our last stamped message.
    pub fn consume(&mut self, reply: &CookieReply<'_>, now: Instant) -> Result<(), CookieError> {
        let aad = self.last_mac1.ok_or(CookieError::Unexpected)?;
        let cookie = xaead_open(&self.cookie_key, reply.nonce, &aad, reply.encrypted_cookie)
            .map_err(|_| CookieError::BadCookie)?;
        self.cookie = Some((cookie, now));
        // One reply per message: a replayed reply must not refresh the cookie's age.
        self.last_mac1 = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{create_initiation, LocalIdentity, RemotePeer};
    use crate::keys::PrivateKey;
    use crate::tai64n::Tai64N;
    use crate::wire::Message;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use std::time::Duration;

    #[test]
    fn cookie_round_trip_makes_mac2_valid_from_that_address_only() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let now = Instant::now();
        let client = LocalIdentity::new(&PrivateKey::from_bytes([1; 32]));
        let server = LocalIdentity::new(&PrivateKey::from_bytes([2; 32]));
        let to_server = RemotePeer::new(&client, server.public_key(), None);
        let mut jar = CookieJar::for_recipient(&to_server.public_key());
        let mut checker = CookieChecker::new(server.mac1_key, server.cookie_key);
        let from: SocketAddr = "192.0.2.1:4000".parse().expect("addr");

        let (_, mut init) =
            create_initiation(&client, &to_server, 5, Tai64N::default(), &mut rng).expect("init");
        jar.stamp(&mut init, now);
        assert_eq!(checker.verify(&init, from, now), MacVerdict::Mac1Only);
        let reply = checker.reply(&init, 5, from, now, &mut rng);
        let Ok(Message::CookieReply(reply)) = Message::parse(&reply) else {
            panic!("cookie reply parses")
        };
        assert_eq!(reply.receiver, 5);
        jar.consume(&reply, now).expect("cookie accepted");
        assert_eq!(jar.consume(&reply, now), Err(CookieError::Unexpected));

        jar.stamp(&mut init, now);
        assert_eq!(checker.verify(&init, from, now), MacVerdict::Mac2Valid);
        let elsewhere: SocketAddr = "192.0.2.1:4001".parse().expect("addr");
        assert_eq!(checker.verify(&init, elsewhere, now), MacVerdict::Mac1Only);
        // Cookies age out on the sender's side before the responder rotates its secret.
        jar.stamp(&mut init, now + Duration::from_secs(116));
        assert_eq!(init[132..], [0u8; 16]);
        init[0x20] ^= 1;
        assert_eq!(checker.verify(&init, from, now), MacVerdict::BadMac1);
    }
}
