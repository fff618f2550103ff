//! The negotiated pseudo-random function (RFC 7296 §2.13, RFC 4868) and `prf+`, which
//! stretches it to any length: T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n).

use ring::hmac;
use zeroize::Zeroizing;

/// A PRF transform this implementation offers and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prf {
    /// PRF_HMAC_SHA1 (2): only what older clients propose (Windows' defaults).
    HmacSha1,
    /// PRF_HMAC_SHA2_256 (5).
    HmacSha256,
    /// PRF_HMAC_SHA2_384 (6).
    HmacSha384,
    /// PRF_HMAC_SHA2_512 (7).
    HmacSha512,
}

/// `prf+` was asked for more than its 255 blocks can give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("prf+ gives at most {max} bytes with this PRF, {asked} were asked")]
pub struct PrfError {
    /// Bytes asked for.
    pub asked: usize,
    /// The most there are.
    pub max: usize,
}

impl Prf {
    /// The PRF with IANA transform ID `id`, if offered here.
    pub fn from_transform(id: u16) -> Option<Self> {
        match id {
            2 => Some(Self::HmacSha1),
            5 => Some(Self::HmacSha256),
            6 => Some(Self::HmacSha384),
            7 => Some(Self::HmacSha512),
            _ => None,
        }
    }

    /// Its IANA transform ID.
    pub fn transform_id(self) -> u16 {
        match self {
            Self::HmacSha1 => 2,
            Self::HmacSha256 => 5,
            Self::HmacSha384 => 6,
            Self::HmacSha512 => 7,
        }
    }

    /// Its output's length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::HmacSha1 => 20,
            Self::HmacSha256 => 32,
            Self::HmacSha384 => 48,
            Self::HmacSha512 => 64,
        }
    }

    /// The length of keys derived for it (SK_d, SK_pi, SK_pr): its output's, the preferred
    /// HMAC key size (RFC 7296 §2.14, RFC 4868 §2.1.2).
    pub fn key_len(self) -> usize {
        self.output_len()
    }

    fn algorithm(self) -> hmac::Algorithm {
        match self {
            Self::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::HmacSha256 => hmac::HMAC_SHA256,
            Self::HmacSha384 => hmac::HMAC_SHA384,
            Self::HmacSha512 => hmac::HMAC_SHA512,
        }
    }

    /// prf(`key`, the concatenation of `parts`).
    pub fn compute(self, key: &[u8], parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
        let key = hmac::Key::new(self.algorithm(), key);
        let mut ctx = hmac::Context::with_key(&key);
        for p in parts {
            ctx.update(p);
        }
        Zeroizing::new(ctx.sign().as_ref().to_vec())
    }

    /// The first `len` bytes of prf+(`key`, the concatenation of `seed`).
    pub fn plus(
        self,
        key: &[u8],
        seed: &[&[u8]],
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, PrfError> {
        let max = 255 * self.output_len();
        if len > max {
            return Err(PrfError { asked: len, max });
        }
        let key = hmac::Key::new(self.algorithm(), key);
        let mut out = Zeroizing::new(Vec::with_capacity(len + self.output_len()));
        let mut previous: Option<hmac::Tag> = None;
        for n in 1..=255u8 {
            if out.len() >= len {
                break;
            }
            let mut ctx = hmac::Context::with_key(&key);
            if let Some(t) = &previous {
                ctx.update(t.as_ref());
            }
            for s in seed {
                ctx.update(s);
            }
            ctx.update(&[n]);
            let t = ctx.sign();
            out.extend_from_slice(t.as_ref());
            previous = Some(t);
        }
        out.truncate(len);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::hmac::Mac;

    /// RFC 4868 §2.7.1 (the PRF test cases, shared with RFC 4231): key, data, and the
    /// PRF-HMAC-SHA-256, -384 and -512 outputs.
    const RFC4868: [(&str, &str, [&str; 3]); 2] = [
        (
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "4869205468657265",
            [
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c\
                 faea9ea9076ede7f4af152e8b2fa9cb6",
                "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
                 daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
            ],
        ),
        (
            "4a656665",
            "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
            [
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
                 8e2240ca5e69e2c78b3239ecfab21649",
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
                 9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ],
        ),
    ];

    fn unhex(s: &str) -> Vec<u8> {
        let clean: String = s.split_whitespace().collect();
        hex::decode(clean).expect("hex")
    }

    #[test]
    fn the_prfs_give_rfc_4868s_answers() {
        let prfs = [Prf::HmacSha256, Prf::HmacSha384, Prf::HmacSha512];
        for (key, data, outputs) in RFC4868 {
            for (prf, expected) in prfs.iter().zip(outputs) {
                let got = prf.compute(&unhex(key), &[&unhex(data)]);
                assert_eq!(hex::encode(&*got), hex::encode(unhex(expected)), "{prf:?}");
            }
        }
    }

    /// prf+ by the letter of RFC 7296 §2.13, on RustCrypto's HMAC: an independent
    /// computation to check ring's against.
    fn plus_independent(key: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut t: Vec<u8> = Vec::new();
        let mut n = 1u16;
        while out.len() < len {
            let mut mac = ::hmac::Hmac::<sha2::Sha384>::new_from_slice(key).expect("any key");
            mac.update(&t);
            mac.update(seed);
            mac.update(&[n as u8]);
            t = mac.finalize().into_bytes().to_vec();
            out.extend_from_slice(&t);
            n += 1;
        }
        out.truncate(len);
        out
    }

    #[test]
    fn prf_plus_matches_an_independent_computation_and_stops_at_255_blocks() {
        let key: Vec<u8> = (0..48).collect();
        let seed: Vec<u8> = (100..180).collect();
        for len in [1, 47, 48, 49, 200, 255 * 48] {
            let got = Prf::HmacSha384
                .plus(&key, &[&seed[..30], &seed[30..]], len)
                .expect("within 255 blocks");
            assert_eq!(*got, plus_independent(&key, &seed, len), "{len} bytes");
        }
        assert_eq!(
            Prf::HmacSha384.plus(&key, &[&seed], 255 * 48 + 1),
            Err(PrfError {
                asked: 255 * 48 + 1,
                max: 255 * 48
            })
        );
    }
}
