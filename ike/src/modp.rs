//! The 2048-bit MODP group (group 14, RFC 3526 §3) for the KE payload: g = 2, a 256-bit
//! random exponent (RFC 3526 §8 asks for at least twice the group's 112-bit strength), and
//! constant-time modular exponentiation (`crypto-bigint`; ring has no finite-field
//! Diffie-Hellman). Public values and the shared secret are 256 bytes, big-endian, zero-padded
//! to the prime's length (RFC 7296 §3.4, §2.14).

use std::sync::LazyLock;

use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Encoding, U2048};
use ring::rand::SecureRandom;
use zeroize::{Zeroize, Zeroizing};

/// The prime of RFC 3526 §3.
pub(crate) const PRIME: U2048 = U2048::from_be_hex(concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1",
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD",
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245",
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D",
    "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F",
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D",
    "670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9",
    "DE2BCBF6955817183995497CEA956AE515D2261898FA0510",
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
));

/// Bytes of a public value or shared secret.
pub(crate) const LEN: usize = 256;
/// Bits of the secret exponent.
const EXPONENT_BITS: usize = 256;

/// An ephemeral secret exponent.
pub(crate) struct Secret(Zeroizing<[u8; LEN]>);

/// The prime's Montgomery parameters, computed once.
static PARAMS: LazyLock<DynResidueParams<{ U2048::LIMBS }>> =
    LazyLock::new(|| DynResidueParams::new(&PRIME));

/// base^x mod p, as 256 big-endian bytes (the exponent's copies wiped after use).
fn power(base: &U2048, exponent: &Secret) -> Zeroizing<Vec<u8>> {
    let mut x = U2048::from_be_slice(&exponent.0[..]);
    let mut y = DynResidue::new(base, *PARAMS)
        .pow_bounded_exp(&x, EXPONENT_BITS)
        .retrieve();
    x.zeroize();
    let out = Zeroizing::new(y.to_be_bytes().to_vec());
    y.zeroize();
    out
}

impl Secret {
    /// A fresh exponent; `None` without randomness.
    pub(crate) fn generate(rng: &dyn SecureRandom) -> Option<Self> {
        let mut bytes = Zeroizing::new([0u8; LEN]);
        rng.fill(&mut bytes[LEN - EXPONENT_BITS / 8..]).ok()?;
        Some(Self(bytes))
    }

    /// g^x mod p, as the KE payload carries it.
    pub(crate) fn public(&self) -> Vec<u8> {
        power(&U2048::from_u8(2), self).to_vec()
    }

    /// peer^x mod p; `None` for a peer value outside 2..p-2 (RFC 6989 §2.1: 0, 1 and p-1
    /// give away the secret) or of the wrong length.
    pub(crate) fn agree(&self, peer: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if peer.len() != LEN {
            return None;
        }
        let y = U2048::from_be_slice(peer);
        let p_minus_1 = PRIME.wrapping_sub(&U2048::ONE);
        if y <= U2048::ONE || y >= p_minus_1 {
            return None;
        }
        Some(power(&y, self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigUint;
    use ring::rand::SystemRandom;

    #[test]
    fn both_sides_agree_with_an_independent_computation() {
        let rng = SystemRandom::new();
        let (a, b) = (
            Secret::generate(&rng).expect("a"),
            Secret::generate(&rng).expect("b"),
        );
        let (pa, pb) = (a.public(), b.public());
        let s = a.agree(&pb).expect("a agrees");
        assert_eq!(s, b.agree(&pa).expect("b agrees"));
        let p = BigUint::from_bytes_be(&PRIME.to_be_bytes());
        let x = BigUint::from_bytes_be(&a.0[..]);
        let expected = BigUint::from(2u8).modpow(&x, &p);
        let mut padded = vec![0u8; LEN];
        let e = expected.to_bytes_be();
        padded[LEN - e.len()..].copy_from_slice(&e);
        assert_eq!(pa, padded, "g^x against num-bigint");
        let shared = BigUint::from_bytes_be(&pb).modpow(&x, &p);
        assert_eq!(BigUint::from_bytes_be(&s), shared, "y^x against num-bigint");
    }

    #[test]
    fn the_prime_is_rfc_3526s() {
        let p = PRIME.to_be_bytes();
        // Its ends and the pi digits RFC 3526 §3 builds it from: 2^2048 - 2^1984 - 1 + ...
        assert_eq!(p[..8], [0xff; 8]);
        assert_eq!(p[LEN - 8..], [0xff; 8]);
        assert_eq!(p[8..12], [0xc9, 0x0f, 0xda, 0xa2], "pi's first digits");
        // (p - 1) / 2 is prime for a safe prime: at least check 2^(p-1) = 1 mod p (Fermat).
        let big = BigUint::from_bytes_be(&p);
        let one = BigUint::from(1u8);
        assert_eq!(BigUint::from(2u8).modpow(&(&big - &one), &big), one);
    }

    #[test]
    fn unsafe_peer_values_are_refused() {
        let rng = SystemRandom::new();
        let a = Secret::generate(&rng).expect("a");
        let p = PRIME.to_be_bytes();
        let mut p_minus_1 = p;
        p_minus_1[LEN - 1] -= 1;
        let mut one = [0u8; LEN];
        one[LEN - 1] = 1;
        for bad in [[0u8; LEN], one, p_minus_1, p] {
            assert!(a.agree(&bad).is_none());
        }
        assert!(a.agree(&[2; 255]).is_none(), "wrong length");
    }
}
