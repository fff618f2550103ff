//! Packet builders shared by unit and integration tests (not part of the datapath).

use super::checksum;

const TCP: u8 = 6;
const SYN: u8 = 0x02;
const OPT_MSS: u8 = 2;

/// An IPv4 or IPv6 TCP SYN with options `[MSS mss, NOP, NOP, SACK-permitted]` and a
/// correct checksum.
pub fn syn(version: u8, mss: u16) -> Vec<u8> {
    let mut tcp = vec![0u8; 28];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&443u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    tcp[12] = 7 << 4;
    tcp[13] = SYN;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    tcp[20..28].copy_from_slice(&[OPT_MSS, 4, (mss >> 8) as u8, mss as u8, 1, 1, 4, 2]);
    let mut p = if version == 4 {
        let mut ip = vec![0x45, 0, 0, 48, 0, 1, 0x40, 0, 64, TCP, 0, 0];
        ip.extend_from_slice(&[10, 77, 0, 2, 10, 77, 0, 1]);
        let c = checksum::of(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip
    } else {
        let mut ip = vec![0x60, 0, 0, 0, 0, 28, TCP, 64];
        ip.extend_from_slice(&[0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        ip.extend_from_slice(&[0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ip
    };
    let (src, dst) = if version == 4 {
        (12..16, 16..20)
    } else {
        (8..24, 24..40)
    };
    let pseudo = checksum::pseudo_header(&p[src], &p[dst], TCP, tcp.len());
    let c = checksum::finish(checksum::sum(pseudo, &tcp));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&tcp);
    p
}

/// The MSS option of a SYN built by `syn`, and whether its TCP checksum verifies.
pub fn mss_and_checksum_ok(p: &[u8]) -> (u16, bool) {
    let (off, src, dst) = if p[0] >> 4 == 4 {
        (20, 12..16, 16..20)
    } else {
        (40, 8..24, 24..40)
    };
    let tcp = &p[off..];
    let pseudo = checksum::pseudo_header(&p[src], &p[dst], TCP, tcp.len());
    (
        u16::from_be_bytes([tcp[22], tcp[23]]),
        checksum::finish(checksum::sum(pseudo, tcp)) == 0,
    )
}

/// A TCP/IPv4 data segment 10.0.0.1:5000 -> 10.0.0.2:80 (IP id 0x1234, DF, ack 9, window
/// 512) with `seq`, `flags`, TCP `options` (a multiple of 4 bytes) and `payload`, its
/// checksums right.
pub fn tcp_v4(seq: u32, flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let tcp_len = 20 + options.len();
    let total = 20 + tcp_len + payload.len();
    let mut p = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, TCP, 0, 0];
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    p.extend_from_slice(&[0x13, 0x88, 0, 80]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[
        0,
        0,
        0,
        9,
        (tcp_len as u8 / 4) << 4,
        flags,
        2,
        0,
        0,
        0,
        0,
        0,
    ]);
    p.extend_from_slice(options);
    p.extend_from_slice(payload);
    let c = checksum::of(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let pseudo = checksum::pseudo_header(&p[12..16], &p[16..20], TCP, total - 20);
    let c = checksum::finish(checksum::sum(pseudo, &p[20..]));
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}
