//! Test packets: what the tests, the bench and the loadtest put into tunnels and check on the
//! way out (IPv4 and IPv6 packets, UDP datagrams, ICMP echoes, TCP SYNs with an MSS option,
//! TCP data segments, checksums). The checksum here is written apart from the datapath's own
//! (RFC 1071, one byte pair at a time), so a datapath checksum bug cannot cancel out in a
//! test that uses both.

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

/// IP protocol number of ICMP.
pub const ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const TCP: u8 = 6;
/// IP protocol number of UDP.
pub const UDP: u8 = 17;
/// Length of the IPv4 header these builders write (no options).
pub const IPV4_HEADER: usize = 20;
/// Length of the IPv6 header.
pub const IPV6_HEADER: usize = 40;

/// An IPv4 packet `src` -> `dst` (TTL 64, no options, header checksum right) carrying
/// `payload` as `protocol`.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(IPV4_HEADER + payload.len());
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&((IPV4_HEADER + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 64, protocol, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let c = checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An IPv6 packet `src` -> `dst` (hop limit 64) carrying `payload` as `next_header`.
pub fn ipv6(src: [u8; 16], dst: [u8; 16], next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(IPV6_HEADER + payload.len());
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next_header, 64]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// A UDP datagram (header and `payload`) between ports, its checksum right for the IPv4 or
/// IPv6 addresses `src` and `dst` it will travel between.
pub fn udp(src: &[u8], dst: &[u8], ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(8 + payload.len());
    d.extend_from_slice(&ports.0.to_be_bytes());
    d.extend_from_slice(&ports.1.to_be_bytes());
    d.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    let c = transport_checksum(src, dst, UDP, &d);
    d[6..8].copy_from_slice(&c.to_be_bytes());
    d
}

/// An IPv4 UDP-numbered packet of `len` bytes (at least 28): its body starts with `seq` and
/// counts on from it, so loss, reordering or corruption shows when compared.
pub fn numbered_v4(src: [u8; 4], dst: [u8; 4], seq: u32, len: usize) -> Vec<u8> {
    let body: Vec<u8> = seq
        .to_be_bytes()
        .into_iter()
        .chain((0..len.max(28) - IPV4_HEADER - 4).map(|i| (seq as usize + i) as u8))
        .collect();
    ipv4(src, dst, UDP, &body)
}

/// Writes an ICMP echo request `src` -> `dst` filling all of `out` (at least 28 bytes):
/// identifier `id`, sequence `seq`, `stamp` at the start of its data and zeros after, both
/// checksums right. Writes in place, so a sender's loop allocates nothing.
pub fn echo_request_v4(out: &mut [u8], src: [u8; 4], dst: [u8; 4], ids: (u16, u16), stamp: &[u8]) {
    let len = out.len();
    out.fill(0);
    out[0] = 0x45;
    out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    out[4..6].copy_from_slice(&ids.1.to_be_bytes());
    out[8] = 64;
    out[9] = ICMP;
    out[12..16].copy_from_slice(&src);
    out[16..20].copy_from_slice(&dst);
    let c = checksum(&out[..IPV4_HEADER]);
    out[10..12].copy_from_slice(&c.to_be_bytes());
    let icmp = &mut out[IPV4_HEADER..];
    icmp[0] = 8;
    icmp[4..6].copy_from_slice(&ids.0.to_be_bytes());
    icmp[6..8].copy_from_slice(&ids.1.to_be_bytes());
    let n = stamp.len().min(icmp.len() - 8);
    icmp[8..8 + n].copy_from_slice(&stamp[..n]);
    let c = checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
}
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
    // The addresses the datapath's test rig gives its peer (10.77.0.2, fd77::2) and itself.
    let mut v6 = ([0u8; 16], [0u8; 16]);
    v6.0[..2].copy_from_slice(&[0xfd, 0x77]);
    v6.1[..2].copy_from_slice(&[0xfd, 0x77]);
    (v6.0[15], v6.1[15]) = (2, 1);
    let v4 = ([10, 77, 0, 2], [10, 77, 0, 1]);
    let c = if version == 4 {
        transport_checksum(&v4.0, &v4.1, TCP, &tcp)
    } else {
        transport_checksum(&v6.0, &v6.1, TCP, &tcp)
    };
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    if version == 4 {
        ipv4(v4.0, v4.1, TCP, &tcp)
    } else {
        ipv6(v6.0, v6.1, TCP, &tcp)
    }
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
    fn built_packets_carry_correct_checksums_and_lengths() {
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let p = ipv4(a, b, UDP, &udp(&a, &b, (1, 2), b"xyz"));
        assert_eq!((p.len(), checksum(&p[..20])), (31, 0));
        assert_eq!(
            transport_checksum(&a, &b, UDP, &p[20..]),
            0,
            "UDP over IPv4"
        );
        let (a6, b6) = ([0xfd; 16], [0xfe; 16]);
        let p = ipv6(a6, b6, UDP, &udp(&a6, &b6, (1, 2), b"xyz"));
        assert_eq!(u16::from_be_bytes([p[4], p[5]]), 11);
        assert_eq!(
            transport_checksum(&a6, &b6, UDP, &p[40..]),
            0,
            "UDP over IPv6"
        );
        let n = numbered_v4(a, b, 9, 100);
        assert_eq!((n.len(), &n[20..24], n[24]), (100, &[0, 0, 0, 9][..], 9));
        let mut e = [0u8; 60];
        echo_request_v4(&mut e, a, b, (7, 3), &[1, 2]);
        assert_eq!((checksum(&e[..20]), checksum(&e[20..])), (0, 0));
        assert_eq!((e[20], &e[24..30]), (8, &[0, 7, 0, 3, 1, 2][..]));
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
