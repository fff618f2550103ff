//! ESP packets between an outbound and an inbound SA with the same keys: round trips with
//! every cipher (AEADs and AES-CBC with each HMAC) with and without ESN, the wire layouts,
//! and every drop reason.

use zeroize::Zeroizing;

use super::*;
use crate::ike_auth::EspKeys;
use crate::salted_aead::ICV_LEN;
use crate::suite::{Encr, Integ, Suite};

const SPI: [u8; 4] = [0xc0, 0, 0, 7];
const CBC: Encr = Encr::AesCbc { key_bits: 256 };

fn suite(encr: Encr, esn: bool) -> Suite {
    Suite {
        encr,
        prf: None,
        integ: (!encr.is_aead()).then_some(Integ::HmacSha256_128),
        dh: None,
        esn: Some(esn),
    }
}

fn keys_of(s: &Suite) -> EspKeys {
    let kl = s.key_lengths();
    EspKeys {
        encr: Zeroizing::new((0..kl.encr as u8).collect()),
        integ: Zeroizing::new((0..kl.integ as u8).map(|b| b ^ 0x5a).collect()),
    }
}

fn keys(encr: Encr) -> EspKeys {
    keys_of(&suite(encr, false))
}

fn pair_of(s: &Suite) -> (Outbound, Inbound) {
    let k = keys_of(s);
    (
        Outbound::new(SPI, s, &k).expect("outbound"),
        Inbound::new(SPI, s, &k).expect("inbound"),
    )
}

fn pair(encr: Encr, esn: bool) -> (Outbound, Inbound) {
    pair_of(&suite(encr, esn))
}

/// An IPv4 packet of `len` bytes (its header's total length says so).
fn ipv4(len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    for (i, b) in p.iter_mut().enumerate().skip(20) {
        *b = i as u8;
    }
    p
}

/// `inner` sealed into a fresh buffer with room around it; returns the ESP packet.
fn seal(out: &mut Outbound, inner: &[u8], next: u8) -> Vec<u8> {
    let mut buf = vec![0u8; ESP_HEADROOM + inner.len() + ESP_TAILROOM];
    buf[ESP_HEADROOM..ESP_HEADROOM + inner.len()].copy_from_slice(inner);
    let at = out
        .seal(&mut buf, ESP_HEADROOM..ESP_HEADROOM + inner.len(), next)
        .expect("seals");
    buf[at].to_vec()
}

#[test]
fn packets_round_trip_with_every_cipher_with_and_without_esn() {
    for esn in [false, true] {
        for s in crate::test_support::every_cipher(Some(esn)) {
            let (mut out, mut inb) = pair_of(&s);
            let (iv, icv, block) = match s.integ {
                None => (8, ICV_LEN, 4),
                Some(i) => (16, i.icv_len(), 16),
            };
            for len in [20, 21, 22, 23, 64, 1420] {
                let inner = ipv4(len);
                let mut packet = seal(&mut out, &inner, NEXT_IPV4);
                let sealed = packet.len() - ESP_HEADER_LEN - iv - icv;
                assert_eq!(sealed % block, 0, "aligned, {s:?}");
                assert!(sealed < len + 2 + block, "no more padding than needed");
                assert_eq!(packet[..4], SPI);
                let opened = inb.open(&mut packet).expect("opens");
                assert_eq!(&packet[opened.inner.clone()], &inner[..], "{s:?}");
                assert_eq!(opened.next_header, NEXT_IPV4);
            }
            assert_eq!(out.sent(), 6);
            assert_eq!(inb.highest(), 6);
        }
    }
}

/// RFC 4303 with RFC 3602 and RFC 4868: a 16-byte IV that is not the sequence number,
/// whole blocks, and the ICV an independent HMAC-SHA2-256-128 over SPI, sequence number, IV
/// and ciphertext, and with ESN the high half after them.
#[test]
fn cbc_packets_carry_an_unpredictable_iv_and_the_rfcs_icv() {
    use ::hmac::Mac;
    for esn in [false, true] {
        let s = suite(CBC, esn);
        let k = keys_of(&s);
        let (mut out, _) = pair_of(&s);
        let n = if esn { 0x1_0000_0005 } else { 5 };
        out.skip_to(n);
        let packet = seal(&mut out, &ipv4(40), NEXT_IPV4);
        assert_eq!(packet[4..8], [0, 0, 0, 5]);
        let iv = &packet[8..24];
        assert_ne!(iv[8..], n.to_be_bytes(), "not the counter");
        assert_eq!((packet.len() - 24 - 16) % 16, 0);
        let (signed, icv) = packet.split_at(packet.len() - 16);
        let mut mac = ::hmac::Hmac::<sha2::Sha256>::new_from_slice(&k.integ).expect("key");
        mac.update(signed);
        if esn {
            mac.update(&1u32.to_be_bytes());
        }
        assert_eq!(mac.finalize().into_bytes()[..16], icv[..], "esn {esn}");
        let next = seal(&mut out, &ipv4(40), NEXT_IPV4);
        assert_ne!(next[8..24], packet[8..24], "a new IV each packet");
    }
}

#[test]
fn the_wire_carries_the_low_sequence_bits_and_the_sequence_as_iv() {
    let (mut out, _) = pair(Encr::AesGcm16 { key_bits: 256 }, true);
    let first = seal(&mut out, &ipv4(40), NEXT_IPV4);
    let second = seal(&mut out, &ipv4(40), NEXT_IPV4);
    assert_eq!(first[4..8], [0, 0, 0, 1]);
    assert_eq!(second[4..8], [0, 0, 0, 2]);
    assert_eq!(second[8..16], 2u64.to_be_bytes());
}

#[test]
fn replays_forgeries_and_other_keys_are_dropped_by_reason() {
    for encr in [Encr::ChaCha20Poly1305, CBC] {
        dropped_by_reason(encr);
    }
}

fn dropped_by_reason(encr: Encr) {
    let (mut out, mut inb) = pair(encr, false);
    let packet = seal(&mut out, &ipv4(60), NEXT_IPV4);
    let mut first = packet.clone();
    inb.open(&mut first).expect("first time");
    let mut again = packet.clone();
    assert_eq!(
        inb.open(&mut again),
        Err(EspDrop::Replayed(ReplayRefusal::Duplicate(1)))
    );
    for at in [4, 8, 20, packet.len() - 1] {
        let mut forged = seal(&mut out, &ipv4(60), NEXT_IPV4);
        forged[at] ^= 0x40;
        // A changed sequence number reads as a new number, whose ICV fails too.
        assert_eq!(inb.open(&mut forged), Err(EspDrop::BadIcv), "byte {at}");
    }
    let mut other_key = keys(encr);
    other_key.encr[0] ^= 1;
    other_key.integ.iter_mut().for_each(|b| *b ^= 1);
    let s = suite(encr, false);
    let mut other = Outbound::new(SPI, &s, &other_key).expect("outbound");
    // A fresh number, so the window lets it through to the ICV check.
    other.skip_to(100);
    let mut wrong_key = seal(&mut other, &ipv4(60), NEXT_IPV4);
    assert_eq!(inb.open(&mut wrong_key), Err(EspDrop::BadIcv));
    for len in [30, 8 + 16 + 16 + 15] {
        let mut short = vec![0u8; len];
        short[..4].copy_from_slice(&SPI);
        assert_eq!(inb.open(&mut short), Err(EspDrop::Malformed), "{len} bytes");
    }
    let mut elsewhere = seal(&mut out, &ipv4(60), NEXT_IPV4);
    elsewhere[0] ^= 1;
    assert_eq!(inb.open(&mut elsewhere), Err(EspDrop::WrongSpi));
}

#[test]
fn dummy_packets_are_taken_silently_and_tfc_padding_is_cut() {
    let (mut out, mut inb) = pair(Encr::AesGcm16 { key_bits: 256 }, false);
    let mut dummy = seal(&mut out, &[0u8; 12], NEXT_NONE);
    assert_eq!(inb.open(&mut dummy), Err(EspDrop::Dummy));
    // An inner packet followed by TFC padding: the IP header says where it ends.
    let mut padded = ipv4(48);
    padded.extend_from_slice(&[0u8; 30]);
    let mut packet = seal(&mut out, &padded, NEXT_IPV4);
    let opened = inb.open(&mut packet).expect("opens");
    assert_eq!(opened.inner.len(), 48);
    // An inner header that claims more than arrived.
    let mut lying = ipv4(48);
    lying[2..4].copy_from_slice(&100u16.to_be_bytes());
    let mut packet = seal(&mut out, &lying, NEXT_IPV4);
    assert_eq!(inb.open(&mut packet), Err(EspDrop::InnerTruncated));
    let mut transport = seal(&mut out, &ipv4(40), 17);
    assert_eq!(inb.open(&mut transport), Err(EspDrop::BadNextHeader(17)));
}

#[test]
fn bad_padding_is_refused_even_when_authentic() {
    let (_, mut inb) = pair(Encr::AesGcm16 { key_bits: 256 }, false);
    let k = keys(Encr::AesGcm16 { key_bits: 256 });
    let cipher =
        crate::salted_aead::SaltedAead::new(Encr::AesGcm16 { key_bits: 256 }, &k.encr).expect("c");
    // A 20-byte inner packet, then padding that must read 1, 2 but reads 1, 9.
    let mut body = ipv4(20);
    body.extend_from_slice(&[1, 9, 2, NEXT_IPV4]);
    let seq = 9u64;
    let aad = [&SPI[..], &(seq as u32).to_be_bytes()[..]].concat();
    let icv = cipher
        .seal_in_place(seq.to_be_bytes(), &aad, &mut body)
        .expect("seal");
    let mut packet = [&aad[..], &seq.to_be_bytes()[..], &body[..], &icv[..]].concat();
    assert_eq!(inb.open(&mut packet), Err(EspDrop::BadPadding));
    // Authentic, so its number is used up all the same.
    assert_eq!(inb.highest(), 9);
}

#[test]
fn sequence_numbers_run_out_without_esn() {
    let (mut out, _) = pair(Encr::ChaCha20Poly1305, false);
    out.skip_to(u64::from(u32::MAX));
    let inner = ipv4(20);
    let mut buf = vec![0u8; ESP_HEADROOM + 20 + ESP_TAILROOM];
    buf[ESP_HEADROOM..ESP_HEADROOM + 20].copy_from_slice(&inner);
    assert!(out
        .seal(&mut buf, ESP_HEADROOM..ESP_HEADROOM + 20, 4)
        .is_ok());
    assert_eq!(
        out.seal(&mut buf, ESP_HEADROOM..ESP_HEADROOM + 20, 4),
        Err(EspSealError::Exhausted)
    );
    assert_eq!(
        out.seal(&mut buf, 4..24, 4),
        Err(EspSealError::NoRoom),
        "no headroom"
    );
}
