//! The MODP groups for the KE payload: 2048-bit (group 14, RFC 3526 §3) and, for the
//! Windows client's default only, 1024-bit (group 2, RFC 2409 §6.2). g = 2, a 256-bit random
//! exponent (RFC 3526 §8 asks for at least twice the group's strength), and constant-time
//! modular exponentiation (`crypto-bigint`; ring has no finite-field Diffie-Hellman), both
//! groups in 2048-bit arithmetic (the 1024-bit prime fits; it costs that legacy group what
//! group 14 costs, which does not matter for the clients that need it). Public values and the
//! shared secret are the prime's length, big-endian, zero-padded (RFC 7296 §3.4, §2.14).

use std::sync::LazyLock;

use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Encoding, U2048};
use ring::rand::SecureRandom;
use zeroize::{Zeroize, Zeroizing};

/// The prime of RFC 3526 §3 (group 14).
pub(crate) const PRIME_2048: U2048 = U2048::from_be_hex(concat!(
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

/// The prime of RFC 2409 §6.2 (group 2), in the upper half's zeros.
pub(crate) const PRIME_1024: U2048 = U2048::from_be_hex(concat!(
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1",
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD",
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245",
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381",
    "FFFFFFFFFFFFFFFF",
));

/// Bytes of the arithmetic (and of a group 14 value).
const WIDE: usize = 256;
/// Bits of the secret exponent.
const EXPONENT_BITS: usize = 256;

/// A MODP group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// 1024-bit, group 2.
    Modp1024,
    /// 2048-bit, group 14.
    Modp2048,
}

/// The primes' Montgomery parameters, computed once each.
static PARAMS_2048: LazyLock<DynResidueParams<{ U2048::LIMBS }>> =
    LazyLock::new(|| DynResidueParams::new(&PRIME_2048));
static PARAMS_1024: LazyLock<DynResidueParams<{ U2048::LIMBS }>> =
    LazyLock::new(|| DynResidueParams::new(&PRIME_1024));

impl Group {
    fn prime(self) -> &'static U2048 {
        match self {
            Self::Modp1024 => &PRIME_1024,
            Self::Modp2048 => &PRIME_2048,
        }
    }

    fn params(self) -> DynResidueParams<{ U2048::LIMBS }> {
        match self {
            Self::Modp1024 => *PARAMS_1024,
            Self::Modp2048 => *PARAMS_2048,
        }
    }

    /// Bytes of a public value or shared secret.
    pub(crate) fn len(self) -> usize {
        match self {
            Self::Modp1024 => 128,
            Self::Modp2048 => 256,
        }
    }
}

/// An ephemeral secret exponent of a group.
pub(crate) struct Secret {
    group: Group,
    exponent: Zeroizing<[u8; WIDE]>,
}

/// base^x mod p, as the group's length of big-endian bytes (the exponent's copies wiped).
fn power(base: &U2048, exponent: &Secret) -> Zeroizing<Vec<u8>> {
    let group = exponent.group;
    let mut x = U2048::from_be_slice(&exponent.exponent[..]);
    let mut y = DynResidue::new(base, group.params())
        .pow_bounded_exp(&x, EXPONENT_BITS)
        .retrieve();
    x.zeroize();
    let mut wide = y.to_be_bytes();
    y.zeroize();
    let out = Zeroizing::new(wide[WIDE - group.len()..].to_vec());
    wide.zeroize();
    out
}

impl Secret {
    /// A fresh exponent of `group`; `None` without randomness.
    pub(crate) fn generate(group: Group, rng: &dyn SecureRandom) -> Option<Self> {
        let mut exponent = Zeroizing::new([0u8; WIDE]);
        rng.fill(&mut exponent[WIDE - EXPONENT_BITS / 8..]).ok()?;
        Some(Self { group, exponent })
    }

    /// g^x mod p, as the KE payload carries it.
    pub(crate) fn public(&self) -> Vec<u8> {
        power(&U2048::from_u8(2), self).to_vec()
    }

    /// peer^x mod p; `None` for a peer value outside 2..p-2 (RFC 6989 §2.1: 0, 1 and p-1
    /// give away the secret) or of the wrong length.
    pub(crate) fn agree(&self, peer: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let len = self.group.len();
        if peer.len() != len {
            return None;
        }
        let mut wide = [0u8; WIDE];
        wide[WIDE - len..].copy_from_slice(peer);
        let y = U2048::from_be_slice(&wide);
        let p_minus_1 = self.group.prime().wrapping_sub(&U2048::ONE);
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

    const GROUPS: [Group; 2] = [Group::Modp1024, Group::Modp2048];

    fn prime_bytes(group: Group) -> Vec<u8> {
        group.prime().to_be_bytes()[WIDE - group.len()..].to_vec()
    }

    #[test]
    fn both_sides_agree_with_an_independent_computation() {
        let rng = SystemRandom::new();
        for group in GROUPS {
            let (a, b) = (
                Secret::generate(group, &rng).expect("a"),
                Secret::generate(group, &rng).expect("b"),
            );
            let (pa, pb) = (a.public(), b.public());
            assert_eq!((pa.len(), pb.len()), (group.len(), group.len()));
            let s = a.agree(&pb).expect("a agrees");
            assert_eq!(s, b.agree(&pa).expect("b agrees"));
            let p = BigUint::from_bytes_be(&prime_bytes(group));
            let x = BigUint::from_bytes_be(&a.exponent[..]);
            let expected = BigUint::from(2u8).modpow(&x, &p);
            let mut padded = vec![0u8; group.len()];
            let e = expected.to_bytes_be();
            padded[group.len() - e.len()..].copy_from_slice(&e);
            assert_eq!(pa, padded, "g^x against num-bigint, {group:?}");
            let shared = BigUint::from_bytes_be(&pb).modpow(&x, &p);
            assert_eq!(BigUint::from_bytes_be(&s), shared, "y^x against num-bigint");
        }
    }

    #[test]
    fn the_primes_are_the_rfcs() {
        for group in GROUPS {
            let p = prime_bytes(group);
            let len = group.len();
            // Their ends and the pi digits both are built from: 2^n - 2^(n-64) - 1 + ...
            assert_eq!(p[..8], [0xff; 8]);
            assert_eq!(p[len - 8..], [0xff; 8]);
            assert_eq!(p[8..12], [0xc9, 0x0f, 0xda, 0xa2], "pi's first digits");
            // Fermat: 2^(p-1) = 1 mod p, as for a prime.
            let big = BigUint::from_bytes_be(&p);
            let one = BigUint::from(1u8);
            assert_eq!(BigUint::from(2u8).modpow(&(&big - &one), &big), one);
        }
        // The same digits of pi in both, up to where group 2's own constant is added.
        let (small, large) = (prime_bytes(Group::Modp1024), prime_bytes(Group::Modp2048));
        assert_eq!(small[..116], large[..116]);
        assert_ne!(small[116..120], large[116..120]);
    }

    #[test]
    fn unsafe_peer_values_are_refused() {
        let rng = SystemRandom::new();
        for group in GROUPS {
            let a = Secret::generate(group, &rng).expect("a");
            let len = group.len();
            let p = prime_bytes(group);
            let mut p_minus_1 = p.clone();
            p_minus_1[len - 1] -= 1;
            let mut one = vec![0u8; len];
            one[len - 1] = 1;
            for bad in [vec![0u8; len], one, p_minus_1, p] {
                assert!(a.agree(&bad).is_none());
            }
            assert!(a.agree(&vec![2; len - 1]).is_none(), "wrong length");
        }
    }
}
