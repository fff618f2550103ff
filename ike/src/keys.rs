//! Keys (RFC 7296 §2.14, §2.17, §2.18): SKEYSEED from the nonces and the Diffie-Hellman
//! secret, the IKE SA's seven keys from prf+ over it, a CHILD_SA's keying material from
//! SK_d, and the SKEYSEED of a rekeyed IKE SA.

use zeroize::Zeroizing;

use crate::prf::{Prf, PrfError};

/// Key lengths of the negotiated transforms, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLengths {
    /// Integrity key (0 with an AEAD cipher, which has none).
    pub integ: usize,
    /// Encryption key, with the salt for AES-GCM and ChaCha20-Poly1305 (RFC 5282, RFC 7634:
    /// 4 bytes after the key).
    pub encr: usize,
}

/// An IKE SA's keys (their Debug shows lengths only: a test's panic or a log line must not
/// print them).
#[derive(Clone, PartialEq, Eq)]
pub struct IkeKeys {
    /// SKEYSEED, kept for nothing but tests and logs of lengths.
    pub skeyseed: Zeroizing<Vec<u8>>,
    /// Derives CHILD_SA keys and the next SKEYSEED.
    pub sk_d: Zeroizing<Vec<u8>>,
    /// Integrity, initiator to responder.
    pub sk_ai: Zeroizing<Vec<u8>>,
    /// Integrity, responder to initiator.
    pub sk_ar: Zeroizing<Vec<u8>>,
    /// Encryption, initiator to responder.
    pub sk_ei: Zeroizing<Vec<u8>>,
    /// Encryption, responder to initiator.
    pub sk_er: Zeroizing<Vec<u8>>,
    /// The initiator's AUTH computation.
    pub sk_pi: Zeroizing<Vec<u8>>,
    /// The responder's AUTH computation.
    pub sk_pr: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for IkeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeKeys")
            .field("d", &self.sk_d.len())
            .field("a", &self.sk_ai.len())
            .field("e", &self.sk_ei.len())
            .field("p", &self.sk_pi.len())
            .finish_non_exhaustive()
    }
}

/// The seven keys of an IKE SA from its `skeyseed`: prf+(SKEYSEED, Ni | Nr | SPIi | SPIr),
/// cut in order SK_d, SK_ai, SK_ar, SK_ei, SK_er, SK_pi, SK_pr.
fn keys_from_skeyseed(
    prf: Prf,
    skeyseed: Zeroizing<Vec<u8>>,
    nonces: (&[u8], &[u8]),
    spis: (&[u8; 8], &[u8; 8]),
    lens: KeyLengths,
) -> Result<IkeKeys, PrfError> {
    let p = prf.key_len();
    let total = 3 * p + 2 * lens.integ + 2 * lens.encr;
    let stream = prf.plus(&skeyseed, &[nonces.0, nonces.1, spis.0, spis.1], total)?;
    let mut at = 0;
    let mut take = |n: usize| {
        let k = Zeroizing::new(stream[at..at + n].to_vec());
        at += n;
        k
    };
    Ok(IkeKeys {
        sk_d: take(p),
        sk_ai: take(lens.integ),
        sk_ar: take(lens.integ),
        sk_ei: take(lens.encr),
        sk_er: take(lens.encr),
        sk_pi: take(p),
        sk_pr: take(p),
        skeyseed,
    })
}

/// A new IKE SA's keys: SKEYSEED = prf(Ni | Nr, g^ir), then its seven keys. HMAC PRFs take
/// the whole of Ni | Nr as their key (only fixed-key-size PRFs would halve it).
pub fn derive_ike_keys(
    prf: Prf,
    nonces: (&[u8], &[u8]),
    shared: &[u8],
    spis: (&[u8; 8], &[u8; 8]),
    lens: KeyLengths,
) -> Result<IkeKeys, PrfError> {
    let mut key = Zeroizing::new(Vec::with_capacity(nonces.0.len() + nonces.1.len()));
    key.extend_from_slice(nonces.0);
    key.extend_from_slice(nonces.1);
    let skeyseed = prf.compute(&key, &[shared]);
    keys_from_skeyseed(prf, skeyseed, nonces, spis, lens)
}

/// The SKEYSEED of an IKE SA that replaces one (RFC 7296 §2.18): prf(SK_d (old),
/// g^ir (new) | Ni | Nr), with the old SA's PRF.
pub fn rekey_skeyseed(
    old_prf: Prf,
    old_sk_d: &[u8],
    shared: &[u8],
    nonces: (&[u8], &[u8]),
) -> Zeroizing<Vec<u8>> {
    old_prf.compute(old_sk_d, &[shared, nonces.0, nonces.1])
}

/// A CHILD_SA's keying material (RFC 7296 §2.17): prf+(SK_d, [g^ir (new) |] Ni | Nr), the
/// Diffie-Hellman secret only with PFS.
pub fn child_keymat(
    prf: Prf,
    sk_d: &[u8],
    shared: Option<&[u8]>,
    nonces: (&[u8], &[u8]),
    len: usize,
) -> Result<Zeroizing<Vec<u8>>, PrfError> {
    match shared {
        Some(g) => prf.plus(sk_d, &[g, nonces.0, nonces.1], len),
        None => prf.plus(sk_d, &[nonces.0, nonces.1], len),
    }
}

/// The keys of a rekeyed IKE SA: its SKEYSEED from the old SA, its seven keys with the new
/// SA's PRF, nonces and SPIs.
pub fn derive_rekeyed_ike_keys(
    prfs: (Prf, Prf),
    old_sk_d: &[u8],
    shared: &[u8],
    nonces: (&[u8], &[u8]),
    spis: (&[u8; 8], &[u8; 8]),
    lens: KeyLengths,
) -> Result<IkeKeys, PrfError> {
    let skeyseed = rekey_skeyseed(prfs.0, old_sk_d, shared, nonces);
    keys_from_skeyseed(prfs.1, skeyseed, nonces, spis, lens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    fn spi(s: &str) -> [u8; 8] {
        <[u8; 8]>::try_from(unhex(s)).expect("8 bytes")
    }

    /// An IKEv2 KDF sample from NIST's CAVS (SP 800-135 component test, SHA-1), as
    /// reproduced in libreswan's CAVP test program: inputs, and SKEYSEED, the 132-byte DKM,
    /// the CHILD_SA DKMs without and with a new Diffie-Hellman secret, and the rekeyed
    /// SKEYSEED.
    mod cavs {
        pub const GIR: &str = "4b2c1f971981a8ad8d0abeafabf38cf75fc8349c148142465ed9c8b516b8be52";
        pub const GIR_NEW: &str =
            "863f3c9d06efd39d2b907b97f8699e5dd5251ef64a2a176f36ee40c87d4f9330";
        pub const NI: &str = "32b50d5f4a3763f3";
        pub const NR: &str = "9206a04b26564cb1";
        pub const SPII: &str = "34c9e7c188868785";
        pub const SPIR: &str = "3ff77d760d2b2199";
        pub const SKEYSEED: &str = "a9a7b222b59f8f48645f28a1db5b5f5d7479cba7";
        pub const DKM: &str = "a14293677cc80ff8f9cc0eee30d895da9d8f405666e30ef0dfcb63c634a46002\
            a2a63080e514a062768b76606f9fa5e992204fc5a670bde3f10d6b027113936a5c55b648a194ae587b\
            0088d52204b702c979fa280870d2ed41efa9c549fd11198af1670b143d384bd275c5f594cf266b05eb\
            adca855e4249520a441a81157435a7a56cc4";
        pub const DKM_CHILD: &str = "8059e3ee8810e6c3a91bc8bcd2a7a41151b8d0e6ae239c7b38093ad85e\
            f4c5811a8e7b5d1cdabd9560b2d5e092d1f24e2d4b85eccdf0ad0dc9abd94b51ee71814ca6dbc8bb51\
            b6309f5b9545c7eb35cf5580b1e521a8fe20754a2d883ba0c2cf285f524aea6545b33106bc03e61429\
            6d319d41d4b50b3f510b1c0a22f3e664994d234cb4";
        pub const DKM_CHILD_DH: &str = "bb43244c1860ad65ee1e211ffe8bb3661750c8f89cb9f547df7f4f\
            a61d37301628190e38c66232eab4b3ab14c400a5197dd3730ed4820a8a10394d51e1c0400052f63ebd\
            36b0e7ef53aaed31eba4a5080d7d4b5666023a8bbb5ffb7857240f9a05884d1b7d2f933708450b7b32\
            88f1fc863ab49fa901227cffc06e27899c7054d56fd74c";
        pub const SKEYSEED_REKEY: &str = "63e81194946ebd05df7df5ebf5d8750056bf1f1d";
    }

    fn strip(s: &str) -> String {
        s.split_whitespace().collect()
    }

    #[test]
    fn the_kdf_gives_nists_cavs_answers() {
        let (ni, nr) = (unhex(cavs::NI), unhex(cavs::NR));
        let (spi_i, spi_r) = (spi(cavs::SPII), spi(cavs::SPIR));
        // 3 x 20 (SK_d, SK_pi, SK_pr) + 2 x 20 (integrity) + 2 x 16 (encryption) = 132, the
        // DKM's length: the seven keys in order are the DKM.
        let lens = KeyLengths {
            integ: 20,
            encr: 16,
        };
        let keys = derive_ike_keys(
            Prf::HmacSha1,
            (&ni, &nr),
            &unhex(cavs::GIR),
            (&spi_i, &spi_r),
            lens,
        )
        .expect("derives");
        assert_eq!(hex::encode(&*keys.skeyseed), cavs::SKEYSEED);
        let dkm: Vec<u8> = [
            &keys.sk_d,
            &keys.sk_ai,
            &keys.sk_ar,
            &keys.sk_ei,
            &keys.sk_er,
            &keys.sk_pi,
            &keys.sk_pr,
        ]
        .iter()
        .flat_map(|k| k.iter().copied())
        .collect();
        assert_eq!(hex::encode(dkm), strip(cavs::DKM));

        let child = child_keymat(Prf::HmacSha1, &keys.sk_d, None, (&ni, &nr), 132).expect("keymat");
        assert_eq!(hex::encode(&*child), strip(cavs::DKM_CHILD));
        let gir_new = unhex(cavs::GIR_NEW);
        let pfs = child_keymat(Prf::HmacSha1, &keys.sk_d, Some(&gir_new), (&ni, &nr), 132)
            .expect("keymat");
        assert_eq!(hex::encode(&*pfs), strip(cavs::DKM_CHILD_DH));
        let rekeyed = rekey_skeyseed(Prf::HmacSha1, &keys.sk_d, &gir_new, (&ni, &nr));
        assert_eq!(hex::encode(&*rekeyed), cavs::SKEYSEED_REKEY);
    }

    #[test]
    fn aead_suites_have_no_integrity_keys() {
        let keys = derive_ike_keys(
            Prf::HmacSha256,
            (&[1; 32], &[2; 32]),
            &[3; 32],
            (&[4; 8], &[5; 8]),
            KeyLengths { integ: 0, encr: 36 },
        )
        .expect("derives");
        assert!(keys.sk_ai.is_empty() && keys.sk_ar.is_empty());
        assert_eq!(
            (keys.sk_ei.len(), keys.sk_d.len(), keys.sk_pr.len()),
            (36, 32, 32)
        );
        assert_ne!(keys.sk_ei, keys.sk_er);
    }
}
