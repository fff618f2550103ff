//! AES-CBC with a truncated HMAC (RFC 3602; RFC 4868, and RFC 2404's HMAC-SHA1-96): the
//! encrypt-then-MAC pair the VPN clients built into Windows and Apple systems propose by
//! default, as the SK payload and ESP will use it. The cipher is AWS-LC's unpadded CBC (ring
//! has no CBC); the MAC is ring's HMAC, truncated to the transform's ICV length and compared
//! in constant time. Nothing here allocates: ICVs come back in a fixed array. ESP's IVs come
//! from `CounterIv`.

use aws_lc_rs::cipher::{
    DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128,
    AES_256,
};
use aws_lc_rs::iv::FixedLength;
use ring::hmac;
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::suite::Integ;

/// AES's block, and CBC's IV, in bytes.
pub const BLOCK: usize = 16;
/// The longest ICV (HMAC-SHA2-512-256).
pub const MAX_ICV: usize = 32;

/// Why a CBC+HMAC key or operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CbcError {
    /// The encryption key is not 16 or 32 bytes, or the integrity key not the HMAC's length.
    #[error("a key of the wrong length")]
    KeyLength,
    /// The data to encrypt or decrypt is not a whole number of blocks.
    #[error("not a whole number of 16-byte blocks")]
    NotBlocks,
}

/// One direction's AES-CBC key and HMAC key.
pub struct CbcHmac {
    encrypt: EncryptingKey,
    decrypt: DecryptingKey,
    mac: hmac::Key,
    icv_len: usize,
}

impl std::fmt::Debug for CbcHmac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CbcHmac")
            .field("icv_len", &self.icv_len)
            .finish_non_exhaustive()
    }
}

impl CbcHmac {
    /// AES-CBC under `encr_key` (16 or 32 bytes) with `integ` under `integ_key`.
    pub fn new(encr_key: &[u8], integ: Integ, integ_key: &[u8]) -> Result<Self, CbcError> {
        let alg = match encr_key.len() {
            16 => &AES_128,
            32 => &AES_256,
            _ => return Err(CbcError::KeyLength),
        };
        if integ_key.len() != integ.key_len() {
            return Err(CbcError::KeyLength);
        }
        let key = || UnboundCipherKey::new(alg, encr_key).map_err(|_| CbcError::KeyLength);
        Ok(Self {
            encrypt: EncryptingKey::cbc(key()?).map_err(|_| CbcError::KeyLength)?,
            decrypt: DecryptingKey::cbc(key()?).map_err(|_| CbcError::KeyLength)?,
            mac: hmac::Key::new(integ.hmac(), integ_key),
            icv_len: integ.icv_len(),
        })
    }

    /// The ICV's length in bytes.
    pub fn icv_len(&self) -> usize {
        self.icv_len
    }

    /// Encrypts `blocks` (whole 16-byte blocks) in place, chained from `iv`.
    pub fn encrypt(&self, iv: [u8; BLOCK], blocks: &mut [u8]) -> Result<(), CbcError> {
        if !blocks.len().is_multiple_of(BLOCK) {
            return Err(CbcError::NotBlocks);
        }
        let context = EncryptionContext::Iv128(FixedLength::from(iv));
        self.encrypt
            .less_safe_encrypt(blocks, context)
            .map(|_| ())
            .map_err(|_| CbcError::NotBlocks)
    }

    /// Decrypts `blocks` (whole 16-byte blocks) in place, chained from `iv`. Check the ICV
    /// first: CBC alone tells nothing of tampering.
    pub fn decrypt(&self, iv: [u8; BLOCK], blocks: &mut [u8]) -> Result<(), CbcError> {
        if !blocks.len().is_multiple_of(BLOCK) {
            return Err(CbcError::NotBlocks);
        }
        let context = DecryptionContext::Iv128(FixedLength::from(iv));
        self.decrypt
            .decrypt(blocks, context)
            .map(|_| ())
            .map_err(|_| CbcError::NotBlocks)
    }

    /// The ICV over `parts` joined: the HMAC truncated to `icv_len` (the first bytes of the
    /// returned array).
    pub fn icv(&self, parts: &[&[u8]]) -> [u8; MAX_ICV] {
        let mut ctx = hmac::Context::with_key(&self.mac);
        for part in parts {
            ctx.update(part);
        }
        let tag = ctx.sign();
        let mut out = [0u8; MAX_ICV];
        out[..self.icv_len].copy_from_slice(&tag.as_ref()[..self.icv_len]);
        out
    }

    /// Whether `received` is the ICV over `parts`, compared in constant time.
    pub fn icv_holds(&self, parts: &[&[u8]], received: &[u8]) -> bool {
        received.len() == self.icv_len
            && bool::from(self.icv(parts)[..self.icv_len].ct_eq(received))
    }
}

/// Unpredictable CBC IVs from a packet counter, without a random draw per packet (RFC 3602
/// §3 asks that IVs not be predictable): each is the counter, as a block, encrypted with AES
/// under a key of its own (one block of ECB).
pub struct CounterIv {
    key: EncryptingKey,
}

impl std::fmt::Debug for CounterIv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterIv").finish_non_exhaustive()
    }
}

impl CounterIv {
    /// IVs under the AES-128 key `key`.
    pub fn new(key: &[u8; 16]) -> Result<Self, CbcError> {
        let unbound = UnboundCipherKey::new(&AES_128, key).map_err(|_| CbcError::KeyLength)?;
        Ok(Self {
            key: EncryptingKey::ecb(unbound).map_err(|_| CbcError::KeyLength)?,
        })
    }

    /// The IV of packet `counter`.
    pub fn iv(&self, counter: u64) -> [u8; BLOCK] {
        let mut block = [0u8; BLOCK];
        block[8..].copy_from_slice(&counter.to_be_bytes());
        // One whole block never fails; were it to, a zero-extended counter would still be
        // unique (only its unpredictability lost).
        let _ = self
            .key
            .less_safe_encrypt(&mut block, EncryptionContext::None);
        block
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::hmac::Mac;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    fn block(s: &str) -> [u8; BLOCK] {
        h(s).try_into().expect("a block")
    }

    /// RFC 3602 §4 case 1 (AES-128) and NIST SP 800-38A F.2.5 (AES-256, two blocks): the
    /// ciphertexts, and back.
    #[test]
    fn aes_cbc_matches_rfc_3602_and_sp_800_38a() {
        let sha1_key = [0u8; 20];
        let k128 = h("06a9214036b8a15b512e03d534120006");
        let c = CbcHmac::new(&k128, Integ::HmacSha1_96, &sha1_key).expect("key");
        let mut data = b"Single block msg".to_vec();
        let iv = block("3dafba429d9eb430b422da802c9fac41");
        c.encrypt(iv, &mut data).expect("encrypt");
        assert_eq!(data, h("e353779c1079aeb82708942dbe77181a"));
        c.decrypt(iv, &mut data).expect("decrypt");
        assert_eq!(data, b"Single block msg");

        let k256 = h("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
        let c = CbcHmac::new(&k256, Integ::HmacSha256_128, &[7; 32]).expect("key");
        let iv = block("000102030405060708090a0b0c0d0e0f");
        let mut data = h("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51");
        c.encrypt(iv, &mut data).expect("encrypt");
        assert_eq!(
            data,
            h("f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d")
        );
        c.decrypt(iv, &mut data).expect("decrypt");
        assert_eq!(&data[..16], &h("6bc1bee22e409f96e93d7e117393172a")[..]);
        assert_eq!(c.encrypt(iv, &mut [0u8; 17]), Err(CbcError::NotBlocks));
        assert_eq!(c.decrypt(iv, &mut [0u8; 15]), Err(CbcError::NotBlocks));
    }

    /// RFC 4231 test case 2 ("Jefe") truncated as RFC 4868 does, RFC 2202's for SHA-1, and
    /// each against RustCrypto's HMAC over parts split anywhere.
    #[test]
    fn icvs_are_the_truncated_hmacs_of_rfc_4231_and_2202() {
        let data = b"what do ya want for nothing?";
        let cases = [
            (Integ::HmacSha1_96, "effcdf6ae5eb2fa2d27416d5"),
            (Integ::HmacSha256_128, "5bdcc146bf60754e6a042426089575c7"),
            (
                Integ::HmacSha384_192,
                "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47",
            ),
            (
                Integ::HmacSha512_256,
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554",
            ),
        ];
        for (integ, want) in cases {
            // The vectors' key is "Jefe": shorter than the HMAC's own length, which this
            // type refuses, so the check runs through ring's key directly.
            let mac = hmac::Key::new(integ.hmac(), b"Jefe");
            let tag = hmac::sign(&mac, data);
            assert_eq!(&tag.as_ref()[..integ.icv_len()], &h(want)[..], "{integ:?}");
        }
        // With keys of the right length, against an independent HMAC.
        let key = [0x0bu8; 32];
        let c = CbcHmac::new(&[1; 32], Integ::HmacSha256_128, &key).expect("key");
        let icv = c.icv(&[b"what do ya ", b"want for ", b"nothing?"]);
        let mut theirs = ::hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
        theirs.update(data);
        let full = theirs.finalize().into_bytes();
        assert_eq!(&icv[..16], &full[..16]);
        assert!(c.icv_holds(&[data], &full[..16]));
        let mut forged = full[..16].to_vec();
        forged[15] ^= 1;
        assert!(!c.icv_holds(&[data], &forged));
        assert!(!c.icv_holds(&[data], &full[..15]), "a short ICV");
        let key = [0x0cu8; 64];
        let c = CbcHmac::new(&[1; 16], Integ::HmacSha512_256, &key).expect("key");
        let mut theirs = ::hmac::Hmac::<sha2::Sha512>::new_from_slice(&key).expect("key");
        theirs.update(data);
        assert_eq!(&c.icv(&[data])[..32], &theirs.finalize().into_bytes()[..32]);
    }

    /// FIPS-197 appendix C.1's AES-128 block, and each counter's IV a different block.
    #[test]
    fn counter_ivs_are_aes_of_the_counter() {
        let key: [u8; 16] = h("000102030405060708090a0b0c0d0e0f")
            .try_into()
            .expect("key");
        let ivs = CounterIv::new(&key).expect("key");
        // The counter block is 0 | counter; with the same key, a one-block CBC from a zero
        // IV is ECB.
        let c = CbcHmac::new(&key, Integ::HmacSha1_96, &[0; 20]).expect("key");
        let mut expected = [0u8; BLOCK];
        expected[15] = 7;
        c.encrypt([0; BLOCK], &mut expected).expect("encrypt");
        assert_eq!(ivs.iv(7), expected);
        let seen: std::collections::HashSet<[u8; BLOCK]> = (0..1000).map(|n| ivs.iv(n)).collect();
        assert_eq!(seen.len(), 1000);
        let mut fips = h("00112233445566778899aabbccddeeff");
        c.encrypt([0; BLOCK], &mut fips).expect("encrypt");
        assert_eq!(fips, h("69c4e0d86a7b0430d8cdb78070b4c55a"), "FIPS-197 C.1");
    }

    #[test]
    fn keys_of_the_wrong_length_are_refused() {
        for (encr, integ, ikey) in [
            (24usize, Integ::HmacSha256_128, 32usize),
            (32, Integ::HmacSha256_128, 20),
            (16, Integ::HmacSha1_96, 32),
        ] {
            assert_eq!(
                CbcHmac::new(&vec![1; encr], integ, &vec![2; ikey]).err(),
                Some(CbcError::KeyLength),
                "{encr} {integ:?} {ikey}"
            );
        }
    }
}
