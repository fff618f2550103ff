use super::*;
use crate::inner::segment::{plan, VnetHdr};
use testbed::packet::{ipv4, ipv6, tcp_v4, udp};

/// A TCP/IPv4 segment with `seq`, `flags` and a timestamp option, its checksums right.
fn tcp4(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    // NOP NOP timestamps.
    tcp_v4(seq, flags, &[1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 3], payload)
}

fn pattern(n: usize, salt: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 13 + salt) as u8).collect()
}

/// Coalesces `packets` as the TUN writer would: the run the first starts, as one buffer with
/// its vnet header in front; returns it and how many packets joined.
fn coalesce(packets: &[Vec<u8>]) -> (Vec<u8>, usize) {
    let mut first = packets[0].clone();
    let head = segment_of(&first, true).expect("first is a data segment or datagram");
    let (mut bytes, mut count, mut push, mut tail) = (first.len(), 1, head.push, Vec::new());
    for p in &packets[1..] {
        let Some(seg) = segment_of(p, true) else {
            break;
        };
        if push || !continues(&first, &head, bytes, count, p, &seg) {
            break;
        }
        tail.extend_from_slice(&p[seg.headers..]);
        bytes += seg.payload;
        count += 1;
        push = ends_run(&head, &seg);
    }
    let pushed = !head.udp && packets[count - 1][33] & TCP_PSH != 0;
    let hdr = finish_head(&mut first, &head, bytes, pushed);
    let mut out = hdr.to_vec();
    out.extend_from_slice(&first);
    out.extend_from_slice(&tail);
    (out, count)
}

/// Cuts a vnet-headed super-packet back into packets with `segment`.
fn recut(super_packet: &[u8]) -> Vec<Vec<u8>> {
    let hdr = VnetHdr::parse(super_packet).expect("vnet header");
    let plan = plan(&hdr, &super_packet[VNET_HDR_LEN..]).expect("plan");
    (0..plan.count())
        .map(|i| {
            let mut out = vec![0u8; 2048];
            let n = plan.write(i, &mut out).expect("segment");
            out.truncate(n);
            out
        })
        .collect()
}

#[test]
fn a_run_of_segments_becomes_a_super_packet_that_cuts_back_into_the_same_segments() {
    // Four full segments and a shorter last one with PSH, ids counting up as a sender's would.
    let mut packets = Vec::new();
    for i in 0..5u32 {
        let len = if i == 4 { 300 } else { 1000 };
        let flags = if i == 4 { TCP_ACK | TCP_PSH } else { TCP_ACK };
        let mut p = tcp4(7000 + 1000 * i, flags, &pattern(len, i as usize));
        p[4..6].copy_from_slice(&(0x1234 + i as u16).to_be_bytes());
        p[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::of(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        packets.push(p);
    }
    let (super_packet, count) = coalesce(&packets);
    assert_eq!(count, 5);
    let hdr = VnetHdr::parse(&super_packet).expect("header");
    assert_eq!(
        (hdr.gso_type, hdr.gso_size, hdr.hdr_len),
        (GSO_TCPV4, 1000, 52)
    );
    assert_eq!(super_packet.len(), VNET_HDR_LEN + 52 + 4300);
    assert_eq!(
        checksum::of(&super_packet[VNET_HDR_LEN..VNET_HDR_LEN + 20]),
        0
    );
    assert_eq!(recut(&super_packet), packets);
    // The partial checksum is right: finished as the kernel would, the whole verifies.
    let whole = VnetHdr { gso_type: 0, ..hdr };
    let body = &super_packet[VNET_HDR_LEN..];
    let mut out = vec![0u8; body.len()];
    let n = plan(&whole, body)
        .expect("plan")
        .write(0, &mut out)
        .expect("fits");
    let pseudo = checksum::pseudo_header(&out[12..16], &out[16..20], 6, n - 20);
    assert_eq!(checksum::finish(checksum::sum(pseudo, &out[20..n])), 0);
}

#[test]
fn segments_that_cannot_join_end_the_run() {
    let a = tcp4(1, TCP_ACK, &pattern(500, 0));
    let next = |seq: u32| tcp4(seq, TCP_ACK, &pattern(500, 1));
    let mut other_port = next(501);
    other_port[22] ^= 1;
    let mut other_ack = next(501);
    other_ack[31] ^= 1;
    let mut other_window = next(501);
    other_window[35] ^= 1;
    let mut other_ts = next(501);
    other_ts[51] ^= 1;
    let cases = [
        ("sequence gap", next(502)),
        ("other port", other_port),
        ("other ack", other_ack),
        ("other timestamp", other_ts),
        ("other window", other_window),
        ("larger segment", tcp4(501, TCP_ACK, &pattern(600, 1))),
        ("FIN", tcp4(501, TCP_ACK | TCP_FIN, &pattern(500, 1))),
    ];
    for (what, b) in cases {
        let (_, count) = coalesce(&[a.clone(), b]);
        assert_eq!(count, 1, "{what} joined the run");
    }
    assert_eq!(
        coalesce(&[a.clone(), next(501)]).1,
        2,
        "a true continuation joins"
    );
    // After PSH nothing joins.
    let pushed = tcp4(1, TCP_ACK | TCP_PSH, &pattern(500, 0));
    assert_eq!(coalesce(&[pushed, next(501)]).1, 1);
    // Not data segments at all.
    assert!(tcp_segment(&tcp4(1, TCP_ACK, &[])).is_none(), "pure ACK");
    assert!(
        tcp_segment(&tcp4(1, TCP_SYN, &pattern(10, 0))).is_none(),
        "SYN"
    );
    let mut fragment = a.clone();
    fragment[6] |= 0x20;
    assert!(tcp_segment(&fragment).is_none(), "fragment");
    assert!(tcp_segment(&a[..30]).is_none(), "truncated");
}

/// A UDP/IPv4 datagram 10.0.0.1:4000 -> 10.0.0.2:5000 with IP identifier `id`.
fn udp4(id: u16, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let mut p = ipv4(src, dst, 17, &udp(&src, &dst, (4000, 5000), payload));
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[10..12].copy_from_slice(&[0, 0]);
    let c = checksum::of(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

#[test]
fn a_run_of_datagrams_becomes_a_udp_super_packet_that_cuts_back_into_the_same_datagrams() {
    // Four full datagrams and a shorter last one, identifiers counting up.
    let packets: Vec<Vec<u8>> = (0..5u16)
        .map(|i| {
            udp4(
                0x4000 + i,
                &pattern(if i == 4 { 333 } else { 1200 }, i.into()),
            )
        })
        .collect();
    let (super_packet, count) = coalesce(&packets);
    assert_eq!(count, 5);
    let hdr = VnetHdr::parse(&super_packet).expect("header");
    assert_eq!(
        (hdr.flags, hdr.gso_type, hdr.gso_size, hdr.hdr_len),
        (F_NEEDS_CSUM, GSO_UDP_L4, 1200, 28)
    );
    assert_eq!((hdr.csum_start, hdr.csum_offset), (20, 6));
    assert_eq!(super_packet.len(), VNET_HDR_LEN + 28 + 4 * 1200 + 333);
    assert_eq!(recut(&super_packet), packets);

    // IPv6 the same way.
    let (src, dst) = ([0xfd; 16], [0xfe; 16]);
    let v6: Vec<Vec<u8>> = (0..3u8)
        .map(|i| {
            ipv6(
                src,
                dst,
                17,
                &udp(&src, &dst, (53, 5353), &pattern(900, i.into())),
            )
        })
        .collect();
    let (super_v6, count) = coalesce(&v6);
    assert_eq!(count, 3);
    assert_eq!(recut(&super_v6), v6);
}

#[test]
fn datagrams_that_cannot_join_end_the_run() {
    let a = udp4(1, &pattern(500, 0));
    let mut other_port = udp4(2, &pattern(500, 1));
    other_port[23] ^= 1;
    let mut other_ttl = udp4(2, &pattern(500, 1));
    other_ttl[8] ^= 1;
    let cases = [
        ("other port", other_port),
        ("other TTL", other_ttl),
        ("larger datagram", udp4(2, &pattern(600, 1))),
        ("a TCP segment", tcp4(1, TCP_ACK, &pattern(500, 1))),
    ];
    for (what, b) in cases {
        assert_eq!(coalesce(&[a.clone(), b]).1, 1, "{what} joined the run");
    }
    assert_eq!(coalesce(&[a.clone(), udp4(2, &pattern(500, 1))]).1, 2);
    // After a shorter one nothing joins.
    let short = udp4(2, &pattern(100, 1));
    assert_eq!(
        coalesce(&[a.clone(), short, udp4(3, &pattern(500, 2))]).1,
        2
    );
    // Not while the TUN takes no UDP super-packets, and never an empty or odd datagram.
    assert!(segment_of(&a, false).is_none());
    assert!(udp_datagram(&udp4(1, &[])).is_none(), "no payload");
    let mut lying = a.clone();
    lying[24..26].copy_from_slice(&9u16.to_be_bytes());
    assert!(udp_datagram(&lying).is_none(), "UDP length disagrees");
    let mut fragment = a.clone();
    fragment[6] |= 0x20;
    assert!(udp_datagram(&fragment).is_none(), "fragment");
}
