use super::*;
use crate::inner::checksum::{finish, pseudo_header, sum};
use testbed::packet::{ipv6, tcp_v4, udp, UDP};

/// A TCP/IPv4 segment with sequence number 1000 and no options.
fn ipv4_tcp(payload: &[u8], flags: u8) -> Vec<u8> {
    tcp_v4(1000, flags, &[], payload)
}

fn ipv6_udp(payload: &[u8]) -> Vec<u8> {
    let (src, dst) = ([0xfd; 16], [0xfe; 16]);
    ipv6(src, dst, UDP, &udp(&src, &dst, (12345, 53), payload))
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// True if the transport checksum of `seg` (transport header at `l4`) verifies.
fn transport_checksum_ok(seg: &[u8], l4: usize, protocol: u8) -> bool {
    let (src, dst) = if seg[0] >> 4 == 4 {
        (&seg[12..16], &seg[16..20])
    } else {
        (&seg[8..24], &seg[24..40])
    };
    let pseudo = pseudo_header(src, dst, protocol, seg.len() - l4);
    finish(sum(pseudo, &seg[l4..])) == 0
}

fn cut(hdr: &VnetHdr, packet: &[u8]) -> Vec<Vec<u8>> {
    let plan = plan(hdr, packet).expect("plan");
    (0..plan.count())
        .map(|i| {
            let mut out = vec![0u8; 2048];
            let n = plan.write(i, &mut out).expect("segment fits");
            assert!(n <= plan.max_len());
            out.truncate(n);
            out
        })
        .collect()
}

#[test]
fn a_tcp_super_packet_becomes_mss_segments_with_fixed_headers() {
    let payload = pattern(3500);
    let flags = TCP_CWR | TCP_PSH | TCP_FIN | 0x10;
    let packet = ipv4_tcp(&payload, flags);
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4 | GSO_ECN,
        hdr_len: 40,
        gso_size: 1000,
        csum_start: 20,
        csum_offset: 16,
    };
    let segs = cut(&hdr, &packet);
    assert_eq!(
        segs.iter().map(Vec::len).collect::<Vec<_>>(),
        [1040, 1040, 1040, 540]
    );
    let mut joined = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(
            u16::from_be_bytes([s[2], s[3]]) as usize,
            s.len(),
            "IP length {i}"
        );
        assert_eq!(
            u16::from_be_bytes([s[4], s[5]]),
            0x1234 + i as u16,
            "IP id {i}"
        );
        assert_eq!(checksum::of(&s[..20]), 0, "IP header checksum {i}");
        let seq = u32::from_be_bytes([s[24], s[25], s[26], s[27]]);
        assert_eq!(seq, 1000 + 1000 * i as u32, "sequence {i}");
        let f = s[33];
        assert_eq!(f & TCP_CWR != 0, i == 0, "CWR only on the first: {i}");
        assert_eq!(
            f & (TCP_FIN | TCP_PSH) != 0,
            i == 3,
            "FIN/PSH only on the last: {i}"
        );
        assert!(f & 0x10 != 0, "ACK on every segment");
        assert!(transport_checksum_ok(s, 20, 6), "TCP checksum {i}");
        joined.extend_from_slice(&s[40..]);
    }
    assert_eq!(joined, payload);
}

#[test]
fn a_udp_super_packet_over_ipv6_becomes_datagrams_with_fixed_lengths() {
    let payload = pattern(2500);
    let packet = ipv6_udp(&payload);
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_UDP_L4,
        hdr_len: 48,
        gso_size: 1200,
        csum_start: 40,
        csum_offset: 6,
    };
    let segs = cut(&hdr, &packet);
    assert_eq!(
        segs.iter().map(Vec::len).collect::<Vec<_>>(),
        [1248, 1248, 148]
    );
    let mut joined = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(
            u16::from_be_bytes([s[4], s[5]]) as usize,
            s.len() - 40,
            "IPv6 length {i}"
        );
        assert_eq!(
            u16::from_be_bytes([s[44], s[45]]) as usize,
            s.len() - 40,
            "UDP length {i}"
        );
        assert!(transport_checksum_ok(s, 40, 17), "UDP checksum {i}");
        joined.extend_from_slice(&s[48..]);
    }
    assert_eq!(joined, payload);
}

#[test]
fn a_partial_checksum_on_a_single_packet_is_finished() {
    let payload = pattern(301);
    let mut packet = ipv4_tcp(&payload, 0x18);
    // What the kernel leaves in the field: the folded pseudo-header sum, not complemented.
    let pseudo = pseudo_header(&packet[12..16], &packet[16..20], 6, packet.len() - 20);
    let partial = !finish(pseudo);
    packet[36..38].copy_from_slice(&partial.to_be_bytes());
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: 20,
        csum_offset: 16,
        ..VnetHdr::default()
    };
    let segs = cut(&hdr, &packet);
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].len(), packet.len());
    assert!(transport_checksum_ok(&segs[0], 20, 6));
    // Without NEEDS_CSUM the packet passes untouched.
    let untouched = cut(&VnetHdr::default(), &packet);
    assert_eq!(untouched[0], packet);
}

#[test]
fn malformed_or_unknown_offloads_are_refused() {
    let packet = ipv4_tcp(&pattern(100), 0x10);
    let tso = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        gso_size: 50,
        csum_start: 20,
        csum_offset: 16,
        ..VnetHdr::default()
    };
    assert!(plan(&tso, &packet).is_ok());
    let cases = [
        (VnetHdr { gso_size: 0, ..tso }, SegmentError::Malformed),
        (
            VnetHdr {
                csum_start: 24,
                ..tso
            },
            SegmentError::Malformed,
        ),
        (VnetHdr { gso_type: 3, ..tso }, SegmentError::Unsupported(3)),
        (
            VnetHdr {
                gso_type: 0,
                csum_start: 200,
                ..tso
            },
            SegmentError::Malformed,
        ),
    ];
    for (hdr, want) in cases {
        assert_eq!(plan(&hdr, &packet).err(), Some(want), "{hdr:?}");
    }
    assert_eq!(
        plan(&tso, &packet[..30]).err(),
        Some(SegmentError::Malformed)
    );
    // A TCP header length below 20 bytes (data offset 4) would put fields past the header.
    let mut short = packet.clone();
    short[32] = 0x40;
    assert_eq!(plan(&tso, &short).err(), Some(SegmentError::Malformed));
    assert_eq!(VnetHdr::parse(&[0; 9]), None);
    let mut small = [0u8; 64];
    assert_eq!(
        plan(&tso, &packet).expect("plan").write(0, &mut small),
        None
    );
    assert_eq!(
        plan(&tso, &packet)
            .expect("plan")
            .write(2, &mut [0u8; 2048]),
        None
    );
}
