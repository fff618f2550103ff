//! NAT detection (RFC 7296 §2.23): each side sends SHA-1(SPIi | SPIr | address | port) of
//! the addresses it sent from and to; a hash that does not match what the receiver sees means
//! a NAT in between, and both move to UDP 4500 with ESP encapsulated (RFC 3948).

use std::net::{IpAddr, SocketAddr};

use ring::digest;

/// The NAT detection hash of `addr` for the IKE SA with SPIs `spi_i`, `spi_r` (the
/// responder's SPI is zero in the first request).
pub fn nat_hash(spi_i: &[u8; 8], spi_r: &[u8; 8], addr: SocketAddr) -> [u8; 20] {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(spi_i);
    ctx.update(spi_r);
    match addr.ip() {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&addr.port().to_be_bytes());
    let mut out = [0; 20];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// What the NAT detection notifies of a message say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NatFinding {
    /// The sender is behind a NAT (its source hash matches no address it could have had as
    /// seen here).
    pub peer_behind_nat: bool,
    /// This side is behind a NAT (the peer's destination hash is not our address as we see it).
    pub self_behind_nat: bool,
}

/// Compares a message's NAT detection hashes with the addresses as seen here: `from` (the
/// sender's address as it arrived) and `to` (our address it arrived at). `sources` are every
/// NAT_DETECTION_SOURCE_IP hash (a sender with several addresses sends several).
pub fn nat_finding(
    spis: (&[u8; 8], &[u8; 8]),
    sources: &[&[u8]],
    destination: Option<&[u8]>,
    from: SocketAddr,
    to: SocketAddr,
) -> NatFinding {
    let seen_from = nat_hash(spis.0, spis.1, from);
    let seen_to = nat_hash(spis.0, spis.1, to);
    NatFinding {
        peer_behind_nat: !sources.is_empty() && !sources.iter().any(|h| *h == seen_from),
        self_behind_nat: destination.is_some_and(|h| h != seen_to),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_covers_spis_address_and_port() {
        let (i, r) = ([1u8; 8], [0u8; 8]);
        let a: SocketAddr = "192.0.2.1:500".parse().expect("addr");
        // SHA-1 of the 8 + 8 + 4 + 2 bytes, computed independently with `sha1sum` over
        // printf '\x01' x 8, '\x00' x 8, '\xc0\x00\x02\x01\x01\xf4'.
        assert_eq!(
            hex::encode(nat_hash(&i, &r, a)),
            "2c6b22492699e7fb9906e70f1f6f3c0d2f6c17d4"
        );
        let b: SocketAddr = "192.0.2.1:4500".parse().expect("addr");
        assert_ne!(nat_hash(&i, &r, a), nat_hash(&i, &r, b));
        let v6: SocketAddr = "[2001:db8::1]:500".parse().expect("addr");
        assert_ne!(nat_hash(&i, &r, a), nat_hash(&i, &r, v6));
    }

    #[test]
    fn a_rewritten_source_is_a_nat() {
        let (i, r) = ([7u8; 8], [0u8; 8]);
        let client: SocketAddr = "10.0.0.2:500".parse().expect("addr");
        let seen: SocketAddr = "198.51.100.7:41000".parse().expect("addr");
        let server: SocketAddr = "203.0.113.1:500".parse().expect("addr");
        let src = nat_hash(&i, &r, client);
        let dst = nat_hash(&i, &r, server);
        let f = nat_finding((&i, &r), &[&src], Some(&dst), seen, server);
        assert_eq!(
            f,
            NatFinding {
                peer_behind_nat: true,
                self_behind_nat: false
            }
        );
        let direct = nat_finding((&i, &r), &[&src], Some(&dst), client, server);
        assert_eq!(direct, NatFinding::default());
    }
}
