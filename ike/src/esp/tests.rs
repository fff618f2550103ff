//! ESP packets between an outbound and an inbound SA with the same keys: round trips with
//! both ciphers and with and without ESN, the wire layout, and every drop reason.

use zeroize::Zeroizing;

use super::*;
use crate::ike_auth::EspKeys;
use crate::sk::ICV_LEN;
use crate::suite::{Encr, Suite};

const SPI: [u8; 4] = [0xc0, 0, 0, 7];

fn suite(encr: Encr, esn: bool) -> Suite {
    Suite {
        encr,
        prf: None,
        integ: None,
        dh: None,
        esn: Some(esn),
    }
}

fn keys(encr: Encr) -> EspKeys {
    EspKeys {
        encr: Zeroizing::new((0..encr.key_len() as u8).collect()),
        integ: Zeroizing::new(Vec::new()),
    }
}

fn pair(encr: Encr, esn: bool) -> (Outbound, Inbound) {
    let (s, k) = (suite(encr, esn), keys(encr));
    (
        Outbound::new(SPI, &s, &k).expect("outbound"),
        Inbound::new(SPI, &s, &k).expect("inbound"),
    )
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
fn packets_round_trip_with_both_ciphers_with_and_without_esn() {
    for encr in [Encr::AesGcm16 { key_bits: 256 }, Encr::ChaCha20Poly1305] {
        for esn in [false, true] {
            let (mut out, mut inb) = pair(encr, esn);
            for len in [20, 21, 22, 23, 64, 1420] {
                let inner = ipv4(len);
                let mut packet = seal(&mut out, &inner, NEXT_IPV4);
                assert_eq!((packet.len() - ESP_HEADROOM - ICV_LEN) % 4, 0, "aligned");
                assert_eq!(packet[..4], SPI);
                let opened = inb.open(&mut packet).expect("opens");
                assert_eq!(
                    &packet[opened.inner.clone()],
                    &inner[..],
                    "{encr} esn {esn}"
                );
                assert_eq!(opened.next_header, NEXT_IPV4);
            }
            assert_eq!(out.sent(), 6);
            assert_eq!(inb.highest(), 6);
        }
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
    let (mut out, mut inb) = pair(Encr::ChaCha20Poly1305, false);
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
    let mut other_key = keys(Encr::ChaCha20Poly1305);
    other_key.encr[0] ^= 1;
    let s = suite(Encr::ChaCha20Poly1305, false);
    let mut other = Outbound::new(SPI, &s, &other_key).expect("outbound");
    // A fresh number, so the window lets it through to the ICV check.
    other.skip_to(100);
    let mut wrong_key = seal(&mut other, &ipv4(60), NEXT_IPV4);
    assert_eq!(inb.open(&mut wrong_key), Err(EspDrop::BadIcv));
    let mut short = vec![0u8; 30];
    short[..4].copy_from_slice(&SPI);
    assert_eq!(inb.open(&mut short), Err(EspDrop::Malformed));
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
    let cipher = crate::sk::SkCipher::new(Encr::AesGcm16 { key_bits: 256 }, &k.encr).expect("c");
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
