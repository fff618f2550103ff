//! Stateless cookies (RFC 7296 §2.6): a responder under load answers an IKE_SA_INIT with a
//! COOKIE notify instead of state, and takes the request only when it comes back with the
//! cookie, proving the initiator's address. Cookie = version | HMAC-SHA256(secret, Ni | IPi |
//! SPIi) cut to 16 bytes; the secret changes now and then, and the one before it is still
//! taken, so a cookie made just before a change works.

use std::net::IpAddr;

use ring::hmac;
use ring::rand::SecureRandom;
use subtle::ConstantTimeEq;

/// A cookie's length: one version byte and 16 of the MAC.
pub const COOKIE_LEN: usize = 17;

/// The responder's cookie secrets.
pub struct CookieJar {
    version: u8,
    current: hmac::Key,
    previous: Option<(u8, hmac::Key)>,
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieJar")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

fn fresh(rng: &dyn SecureRandom) -> Option<hmac::Key> {
    let mut secret = [0u8; 32];
    rng.fill(&mut secret).ok()?;
    Some(hmac::Key::new(hmac::HMAC_SHA256, &secret))
}

fn mac(key: &hmac::Key, version: u8, ni: &[u8], ip: IpAddr, spi_i: &[u8; 8]) -> [u8; COOKIE_LEN] {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(ni);
    match ip {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(spi_i);
    let tag = ctx.sign();
    let mut out = [0u8; COOKIE_LEN];
    out[0] = version;
    out[1..].copy_from_slice(&tag.as_ref()[..COOKIE_LEN - 1]);
    out
}

impl CookieJar {
    /// A jar with a fresh secret; `None` if the random source failed.
    pub fn new(rng: &dyn SecureRandom) -> Option<Self> {
        Some(Self {
            version: 0,
            current: fresh(rng)?,
            previous: None,
        })
    }

    /// A new secret; the current one is still taken until the next change.
    pub fn rotate(&mut self, rng: &dyn SecureRandom) -> bool {
        let Some(next) = fresh(rng) else {
            return false;
        };
        let old = std::mem::replace(&mut self.current, next);
        self.previous = Some((self.version, old));
        self.version = self.version.wrapping_add(1);
        true
    }

    /// The cookie for a request with nonce `ni` from `ip` with SPI `spi_i`.
    pub fn make(&self, ni: &[u8], ip: IpAddr, spi_i: &[u8; 8]) -> [u8; COOKIE_LEN] {
        mac(&self.current, self.version, ni, ip, spi_i)
    }

    /// Whether `cookie` was made here, with the current or the previous secret, for this
    /// nonce, address and SPI.
    pub fn check(&self, cookie: &[u8], ni: &[u8], ip: IpAddr, spi_i: &[u8; 8]) -> bool {
        let Some(&version) = cookie.first() else {
            return false;
        };
        let key = if version == self.version {
            &self.current
        } else {
            match &self.previous {
                Some((v, k)) if *v == version => k,
                _ => return false,
            }
        };
        cookie.ct_eq(&mac(key, version, ni, ip, spi_i)).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn a_cookie_holds_for_its_request_and_one_rotation() {
        let rng = SystemRandom::new();
        let mut jar = CookieJar::new(&rng).expect("jar");
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let (ni, spi) = ([5u8; 32], [9u8; 8]);
        let c = jar.make(&ni, ip, &spi);
        assert!(jar.check(&c, &ni, ip, &spi));
        assert!(!jar.check(&c, &[6; 32], ip, &spi), "another nonce");
        assert!(
            !jar.check(&c, &ni, "192.0.2.8".parse().expect("ip"), &spi),
            "another address"
        );
        assert!(!jar.check(&c, &ni, ip, &[8; 8]), "another SPI");
        assert!(!jar.check(&c[..16], &ni, ip, &spi), "cut short");
        assert!(jar.rotate(&rng));
        assert!(
            jar.check(&c, &ni, ip, &spi),
            "the previous secret still holds"
        );
        assert!(jar.rotate(&rng));
        assert!(
            !jar.check(&c, &ni, ip, &spi),
            "two changes later it does not"
        );
    }
}
