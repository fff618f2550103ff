//! Diffie-Hellman for the KE payload (RFC 7296 §3.4): an ephemeral key per exchange, its
//! public value in IKE's form, and the shared secret g^ir. Curve25519 (RFC 8031: 32 bytes
//! each way), P-256 and P-384 (RFC 5903: x | y out, the x coordinate shared), on ring; the
//! MODP groups 2 and 14 in `modp`.

use ring::agreement;
use ring::rand::SecureRandom;
use zeroize::Zeroizing;

use crate::error::ParseError;
use crate::modp::{Group, Secret};
use crate::suite::DhGroup;

/// Why a key exchange could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DhError {
    /// A group this implementation does not compute (yet).
    #[error("Diffie-Hellman group {0} is not available")]
    Unavailable(u16),
    /// The peer's public value has the wrong length or is not a point of the group.
    #[error("the peer's public value for group {group} is unusable ({len} bytes)")]
    BadPublicValue {
        /// The group.
        group: u16,
        /// Its length.
        len: usize,
    },
    /// The random source failed.
    #[error("no randomness for an ephemeral key")]
    NoRandomness,
}

/// An ephemeral private key: ring's for the curves, an exponent for MODP.
enum Private {
    Ring(agreement::EphemeralPrivateKey),
    Modp(Secret),
}

/// One side's ephemeral key for one exchange.
pub struct KeyExchange {
    group: DhGroup,
    private: Private,
    public: Vec<u8>,
}

impl std::fmt::Debug for KeyExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyExchange")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

fn algorithm(group: DhGroup) -> Result<&'static agreement::Algorithm, DhError> {
    match group {
        DhGroup::Curve25519 => Ok(&agreement::X25519),
        DhGroup::Ecp256 => Ok(&agreement::ECDH_P256),
        DhGroup::Ecp384 => Ok(&agreement::ECDH_P384),
        DhGroup::Modp1024 | DhGroup::Modp2048 => Err(DhError::Unavailable(group.id())),
    }
}

impl KeyExchange {
    /// A fresh MODP exponent of `group` and its public value.
    fn start_modp(group: DhGroup, modp: Group, rng: &dyn SecureRandom) -> Result<Self, DhError> {
        let secret = Secret::generate(modp, rng).ok_or(DhError::NoRandomness)?;
        Ok(Self {
            group,
            public: secret.public(),
            private: Private::Modp(secret),
        })
    }
}

/// The length of a public value of `group` in a KE payload.
pub fn public_len(group: DhGroup) -> usize {
    match group {
        DhGroup::Curve25519 => 32,
        DhGroup::Ecp256 => 64,
        DhGroup::Ecp384 => 96,
        DhGroup::Modp1024 => 128,
        DhGroup::Modp2048 => 256,
    }
}

impl KeyExchange {
    /// A fresh ephemeral key of `group`.
    pub fn start(group: DhGroup, rng: &dyn SecureRandom) -> Result<Self, DhError> {
        match group {
            DhGroup::Modp1024 => return Self::start_modp(group, Group::Modp1024, rng),
            DhGroup::Modp2048 => return Self::start_modp(group, Group::Modp2048, rng),
            _ => {}
        }
        let private = agreement::EphemeralPrivateKey::generate(algorithm(group)?, rng)
            .map_err(|_| DhError::NoRandomness)?;
        let public = private
            .compute_public_key()
            .map_err(|_| DhError::NoRandomness)?;
        let bytes = public.as_ref();
        // The NIST curves: ring gives 0x04 | x | y; IKE sends x | y (RFC 5903 §7).
        let public = match group {
            DhGroup::Ecp256 | DhGroup::Ecp384 => bytes[1..].to_vec(),
            _ => bytes.to_vec(),
        };
        Ok(Self {
            group,
            private: Private::Ring(private),
            public,
        })
    }

    /// The group.
    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// The public value, as the KE payload carries it.
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// The shared secret with the peer's public value `peer` (its KE payload's data).
    pub fn finish(self, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, DhError> {
        let bad = DhError::BadPublicValue {
            group: self.group.id(),
            len: peer.len(),
        };
        if peer.len() != public_len(self.group) {
            return Err(bad);
        }
        let private = match self.private {
            Private::Ring(k) => k,
            Private::Modp(secret) => return secret.agree(peer).ok_or(bad),
        };
        let wire;
        let peer = match self.group {
            DhGroup::Ecp256 | DhGroup::Ecp384 => {
                wire = [&[0x04][..], peer].concat();
                &wire[..]
            }
            _ => peer,
        };
        let alg = private.algorithm();
        let shared = agreement::agree_ephemeral(
            private,
            &agreement::UnparsedPublicKey::new(alg, peer),
            |k| Zeroizing::new(k.to_vec()),
        )
        .map_err(|_| bad.clone())?;
        // RFC 8031 §2: an all-zero Curve25519 result (a low-order point) is refused.
        if shared.iter().all(|b| *b == 0) {
            return Err(bad);
        }
        Ok(shared)
    }
}

/// A KE payload's body: the group, two reserved bytes, the public value.
pub fn ke_body(group: DhGroup, public: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + public.len());
    out.extend_from_slice(&group.id().to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(public);
    out
}

/// A KE payload's group number and public value.
pub fn read_ke(body: &[u8]) -> Result<(u16, &[u8]), ParseError> {
    let head = body.get(..4).ok_or(ParseError::Truncated {
        need: 4,
        have: body.len(),
    })?;
    Ok((u16::from_be_bytes([head[0], head[1]]), &body[4..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn both_sides_agree_in_each_group() {
        let rng = SystemRandom::new();
        for (group, secret) in [
            (DhGroup::Curve25519, 32),
            (DhGroup::Ecp256, 32),
            (DhGroup::Ecp384, 48),
            (DhGroup::Modp2048, 256),
            (DhGroup::Modp1024, 128),
        ] {
            let a = KeyExchange::start(group, &rng).expect("a");
            let b = KeyExchange::start(group, &rng).expect("b");
            assert_eq!(a.public().len(), public_len(group));
            let (pa, pb) = (a.public().to_vec(), b.public().to_vec());
            let sa = a.finish(&pb).expect("a finishes");
            let sb = b.finish(&pa).expect("b finishes");
            assert_eq!(sa, sb, "{group:?}");
            assert_eq!(sa.len(), secret);
        }
    }

    #[test]
    fn curve25519_agrees_with_an_independent_implementation() {
        let rng = SystemRandom::new();
        let ours = KeyExchange::start(DhGroup::Curve25519, &rng).expect("ours");
        let theirs = x25519_dalek::StaticSecret::from([0x42; 32]);
        let their_public = x25519_dalek::PublicKey::from(&theirs);
        let mut our_public = [0u8; 32];
        our_public.copy_from_slice(ours.public());
        let expected = theirs.diffie_hellman(&x25519_dalek::PublicKey::from(our_public));
        let shared = ours.finish(their_public.as_bytes()).expect("finishes");
        assert_eq!(&shared[..], expected.as_bytes());
    }

    /// P-384 against AWS-LC's (an independent implementation of the curve): our public value
    /// as IKE carries it (x | y) is theirs without the 0x04, and both secrets are the same.
    #[test]
    fn p384_agrees_with_an_independent_implementation() {
        use aws_lc_rs::agreement as lc;
        let rng = SystemRandom::new();
        let ours = KeyExchange::start(DhGroup::Ecp384, &rng).expect("ours");
        let theirs = lc::PrivateKey::generate(&lc::ECDH_P384).expect("theirs");
        let their_public = theirs.compute_public_key().expect("public");
        assert_eq!(their_public.as_ref().len(), 97);
        let our_wire = [&[0x04][..], ours.public()].concat();
        let expected = lc::agree(
            &theirs,
            lc::UnparsedPublicKey::new(&lc::ECDH_P384, &our_wire),
            aws_lc_rs::error::Unspecified,
            |k| Ok(k.to_vec()),
        )
        .expect("they agree");
        let shared = ours.finish(&their_public.as_ref()[1..]).expect("finishes");
        assert_eq!(&shared[..], &expected[..]);
        let p = KeyExchange::start(DhGroup::Ecp384, &rng).expect("p");
        assert!(p.finish(&[7; 96]).is_err(), "not a point on P-384");
    }

    #[test]
    fn bad_public_values_are_refused() {
        let rng = SystemRandom::new();
        let a = KeyExchange::start(DhGroup::Curve25519, &rng).expect("a");
        assert!(matches!(
            a.finish(&[0; 31]),
            Err(DhError::BadPublicValue { .. })
        ));
        let a = KeyExchange::start(DhGroup::Curve25519, &rng).expect("a");
        assert!(
            a.finish(&[0; 32]).is_err(),
            "a low-order point gives an all-zero secret"
        );
        let p = KeyExchange::start(DhGroup::Ecp256, &rng).expect("p");
        assert!(p.finish(&[7; 64]).is_err(), "not a point on P-256");
        let body = ke_body(DhGroup::Ecp256, &[1; 64]);
        assert_eq!(read_ke(&body), Ok((19, &[1u8; 64][..])));
        assert!(read_ke(&[0, 19, 0]).is_err());
    }
}
