//! Test packets: what the tests, the bench and the loadtest put into tunnels and check on the
//! way out (TCP SYNs with an MSS option, TCP data segments, checksums). The checksum here is written apart from the datapath's own (RFC 1071, one byte
//! pair at a time), so a datapath checksum bug cannot cancel out in a test that uses both.

/// The Internet checksum (RFC 1071) of `data`: zero when `data` holds a correct checksum.
pub fn checksum(data: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for pair in data.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        let lo = pair.get(1).map_or(0, |b| u32::from(*b));
        acc += hi | lo;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The checksum of a TCP or UDP `segment` between `src` and `dst` (both IPv4 or both IPv6),
/// over the pseudo-header RFC 793 and RFC 8200 (section 8.1) define.
pub fn transport_checksum(src: &[u8], dst: &[u8], protocol: u8, segment: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(src.len() * 2 + 8 + segment.len() + 1);
    pseudo.extend_from_slice(src);
    pseudo.extend_from_slice(dst);
    if src.len() == 4 {
        pseudo.extend_from_slice(&[0, protocol]);
        pseudo.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    } else {
        pseudo.extend_from_slice(&(segment.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, protocol]);
    }
    pseudo.extend_from_slice(segment);
    checksum(&pseudo)
}

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
        let c = checksum(&ip);
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
    let c = transport_checksum(&p[src], &p[dst], TCP, &tcp);
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
    (
        u16::from_be_bytes([tcp[22], tcp[23]]),
        transport_checksum(&p[src], &p[dst], TCP, tcp) == 0,
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
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let c = transport_checksum(&p[12..16], &p[16..20], TCP, &p[20..]);
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_and_odd_lengths() {
        // RFC 1071 section 3: these bytes sum to 0xddf2 before the complement.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        // A trailing odd byte counts as its pair's high byte.
        assert_eq!(checksum(&[0xab]), !0xab00);
        // A header carrying its own checksum sums to zero.
        let mut h = [
            0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn built_segments_carry_correct_checksums() {
        for version in [4, 6] {
            assert_eq!(mss_and_checksum_ok(&syn(version, 1460)), (1460, true));
        }
        let p = tcp_v4(7, 0x18, &[1, 1, 1, 1], b"data");
        assert_eq!(checksum(&p[..20]), 0, "IPv4 header");
        assert_eq!(
            transport_checksum(&p[12..16], &p[16..20], 6, &p[20..]),
            0,
            "TCP"
        );
    }
}
