//! Published ESP examples through these rules: RFC 7634 Appendix A (ChaCha20-Poly1305,
//! tunnel mode) and draft-mcgrew-gcm-test-01's AES-GCM-ESP cases (RFC 4106 has none of its
//! own and points there), with and without extended sequence numbers.

use zeroize::Zeroizing;

use super::*;
use crate::ike_auth::EspKeys;
use crate::salted_aead::SaltedAead;
use crate::suite::{Encr, Suite};

/// Where an AEAD packet's encrypted part starts: header and 8-byte IV.
const AEAD_HEAD: usize = ESP_HEADER_LEN + 8;

fn unhex(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(char::is_ascii_hexdigit).collect();
    hex::decode(clean).expect("hex")
}

fn inbound(encr: Encr, esn: bool, spi: &str, key_and_salt: &str) -> Inbound {
    let suite = Suite {
        encr,
        prf: None,
        integ: None,
        dh: None,
        esn: Some(esn),
    };
    let keys = EspKeys {
        encr: Zeroizing::new(unhex(key_and_salt)),
        integ: Zeroizing::new(Vec::new()),
    };
    let spi: [u8; 4] = unhex(spi).try_into().expect("4 bytes");
    Inbound::new(spi, &suite, &keys).expect("SA")
}

/// RFC 7634 Appendix A.
mod rfc7634 {
    pub const KEY_AND_SALT: &str = "808182838485868788898a8b8c8d8e8f
        909192939495969798999a9b9c9d9e9f a0a1a2a3";
    pub const SOURCE: &str = "
        45 00 00 54 a6 f2 00 00 40 01 e7 78 c6 33 64 05 c0 00 02 05 08 00 5b 7a 3a 08 00 00
        55 3b ec 10 00 07 36 27 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 15 16 17 18 19 1a 1b
        1c 1d 1e 1f 20 21 22 23 24 25 26 27 28 29 2a 2b 2c 2d 2e 2f 30 31 32 33 34 35 36 37";
    /// The ESP packet without its outer IPv4 header.
    pub const ESP: &str = "
        01 02 03 04 00 00 00 05 10 11 12 13 14 15 16 17 24 03 94 28 b9 7f 41 7e 3c 13 75 3a
        4f 05 08 7b 67 c3 52 e6 a7 fa b1 b9 82 d4 66 ef 40 7a e5 c6 14 ee 80 99 d5 28 44 eb
        61 aa 95 df ab 4c 02 f7 2a a7 1e 7c 4c 4f 64 c9 be fe 2f ac c6 38 e8 f3 cb ec 16 3f
        ac 46 9b 50 27 73 f6 fb 94 e6 64 da 91 65 b8 28 29 f6 41 e0 76 aa a8 26 6b 7f b0 f7
        b1 1b 36 99 07 e1 ad 43";
}

#[test]
fn rfc_7634_appendix_a_opens_to_its_source_packet() {
    let mut sa = inbound(
        Encr::ChaCha20Poly1305,
        false,
        "01020304",
        rfc7634::KEY_AND_SALT,
    );
    let mut packet = unhex(rfc7634::ESP);
    let opened = sa.open(&mut packet).expect("the example opens");
    assert_eq!(opened.seq, 5);
    assert_eq!(opened.next_header, NEXT_IPV4);
    assert_eq!(packet[opened.inner], unhex(rfc7634::SOURCE)[..]);
}

#[test]
fn rfc_7634_appendix_a_trailer_and_ciphertext_are_what_sealing_makes() {
    // The same source packet sealed here gets the example's trailer (padding 01 02, pad
    // length 2, next header 4); under the example's nonce and AAD the cipher gives its
    // ciphertext and tag.
    let source = unhex(rfc7634::SOURCE);
    let suite = Suite {
        encr: Encr::ChaCha20Poly1305,
        prf: None,
        integ: None,
        dh: None,
        esn: Some(false),
    };
    let keys = EspKeys {
        encr: Zeroizing::new(unhex(rfc7634::KEY_AND_SALT)),
        integ: Zeroizing::new(Vec::new()),
    };
    let mut out = Outbound::new([1, 2, 3, 4], &suite, &keys).expect("SA");
    let mut buf = vec![0u8; ESP_HEADROOM + source.len() + ESP_TAILROOM];
    buf[ESP_HEADROOM..ESP_HEADROOM + source.len()].copy_from_slice(&source);
    let at = out
        .seal(
            &mut buf,
            ESP_HEADROOM..ESP_HEADROOM + source.len(),
            NEXT_IPV4,
        )
        .expect("seals");
    let ours = buf[at].to_vec();
    let cipher = SaltedAead::new(Encr::ChaCha20Poly1305, &keys.encr).expect("cipher");
    let mut plain = ours[AEAD_HEAD..ours.len() - 16].to_vec();
    let icv: [u8; 16] = ours[ours.len() - 16..].try_into().expect("icv");
    let iv: [u8; 8] = ours[8..16].try_into().expect("iv");
    cipher
        .open_in_place(iv, &ours[..8], &mut plain, &icv)
        .expect("our packet opens");
    assert_eq!(plain[source.len()..], [1, 2, 2, 4], "the example's trailer");
    let example = unhex(rfc7634::ESP);
    let mut body = plain;
    let tag = cipher
        .seal_in_place(
            [0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17],
            &[1, 2, 3, 4, 0, 0, 0, 5],
            &mut body,
        )
        .expect("seal");
    assert_eq!(body[..], example[16..example.len() - 16]);
    assert_eq!(tag[..], example[example.len() - 16..]);
}

/// An AES-GCM-ESP case of draft-mcgrew-gcm-test-01: its packet opens under its key, the
/// plaintext is its plaintext, and the number is taken. The draft's trailers say next
/// header 1 (its plaintexts are synthetic), which tunnel mode refuses after authenticating.
fn gcm_case(bits: u16, esn: bool, spi: &str, key_and_salt: &str, packet: &str, plain: &str) {
    let mut sa = inbound(Encr::AesGcm16 { key_bits: bits }, esn, spi, key_and_salt);
    let mut packet = unhex(packet);
    assert_eq!(sa.open(&mut packet), Err(EspDrop::BadNextHeader(1)));
    let plain = unhex(plain);
    assert_eq!(packet[AEAD_HEAD..AEAD_HEAD + plain.len()], plain[..]);
    assert!(sa.highest() > 0, "authenticated, so the number is used");
}

#[test]
fn gcm_case_2_aes_128() {
    gcm_case(
        128,
        false,
        "0000a5f8",
        "feffe9928665731c6d6a8f9467308308 cafebabe",
        "0000a5f80000000afacedbaddecaf888 deb22cd9b07c72c16e3a65beeb8df304
         a5a5897d33ae530f1ba76d5d114d2a5c 3de81827c10e9a4f51330d0eec416642
         cfbb85a5b47e48a4ec3b9ba95d918bd1 83b70d3aa8bc6ee4c309e9d85a41ad4a",
        "4500003e698f000080114dccc0a80102 c0a801010a980035002a2343b2d00100
         00010000000000000373697009637962 65726369747902646b00000100010001",
    );
}

#[test]
fn gcm_case_3_aes_256() {
    gcm_case(
        256,
        false,
        "4a2cbfe3",
        "abbccddef00112233445566778899aab abbccddef00112233445566778899aab 11223344",
        "4a2cbfe3000000020102030405060708 ff425c9b724599df7a3bcd510194e00d
         6a78107f1b0b1cbf06efae9d65a5d763 748a637985771d347f0545659f14e99d
         ef842d8eb335f4eecfdbf831824b4c49 15956c96",
        "4500003069a6400080062690c0a80102 9389155e0a9e008b2dc57ee000000000
         7002400020bf0000020405b401010402 01020201",
    );
}

#[test]
fn gcm_case_14_aes_256_with_the_last_extended_sequence_number() {
    // Only the low 32 bits travel; from an empty window, all-ones infers the block before
    // block 0, i.e. 2^64 - 1, which is the number the draft authenticated.
    gcm_case(
        256,
        true,
        "796b6963",
        "6c6567616c697a656d6172696a75616e 61616e64646f69746265666f72656961 7475726e",
        "796b6963ffffffff333021696765746d f97ab2aa356d8edce17644ac8c78e25d
         d24dedbb29ebf1b64a274b39b49c3a86 4cd3d78ca4ae68a32b42458fb57dbe82
         1dcc63b9d0937ba2945f669368661a32 9fb4c053",
        "45000030da3a00008001df3bc0a80005 c0a800010800c6cd0200070061626364
         65666768696a6b6c6d6e6f7071727374 01020201",
    );
}
