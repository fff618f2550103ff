//! Outer frames built and read in userspace: Ethernet (with up to two VLAN tags on receipt),
//! IPv4 without options or IPv6 without extension headers, and UDP (checksums included) or
//! raw ESP (IP protocol 50). The XDP program only lets such frames through; anything else
//! stays with the kernel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use thiserror::Error;

use crate::inner::checksum;

/// Ethernet header without a VLAN tag.
pub const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const UDP_LEN: usize = 8;
/// Room to leave in front of a datagram for the headers `write_headers` puts there.
pub const MAX_HEADERS: usize = ETH_LEN + IPV6_LEN + UDP_LEN;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ESP: u8 = 50;
/// Hop limit / TTL of the frames we send (the kernel's default).
const HOP_LIMIT: u8 = 64;

/// A link-layer (MAC) address.
pub type Mac = [u8; 6];

/// Why a received frame was not taken as a datagram for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Shorter than its headers say.
    #[error("truncated frame")]
    Truncated,
    /// Not IPv4/IPv6 carrying UDP or ESP in the forms the steering program lets through.
    #[error("not a plain UDP or ESP frame over IP")]
    Unsteered,
    /// The IPv4 header checksum is wrong.
    #[error("bad IPv4 header checksum")]
    BadIpChecksum,
    /// Its TTL or hop limit ran out: it may not be forwarded.
    #[error("TTL or hop limit exhausted")]
    Expired,
    /// No room before the packet for the link header.
    #[error("no room for the link header")]
    NoRoom,
}

/// A UDP datagram or raw ESP packet read from a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The sender's address and port (0 for raw ESP).
    pub from: SocketAddr,
    /// The address and port it was sent to (ours; port 0 for raw ESP).
    pub to: SocketAddr,
    /// The UDP payload's (or the ESP packet's) place in the frame.
    pub payload: Range<usize>,
    /// IP protocol 50 (raw ESP), not UDP.
    pub raw_esp: bool,
    /// The sender's (or its router's) link address: where replies go.
    pub src_mac: Mac,
    /// Our link address as the sender used it.
    pub dst_mac: Mac,
    /// It carried a VLAN tag (replies would need one: we do not build them).
    pub tagged: bool,
}

pub(super) fn be16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

pub(super) fn mac(bytes: &[u8]) -> Mac {
    let mut out = [0u8; 6];
    out.copy_from_slice(&bytes[..6]);
    out
}

/// Reads the UDP datagram or raw ESP packet in `frame`, checking lengths and the IPv4 header
/// checksum.
///
/// The UDP checksum is not checked: frames sent by the local stack over a veth carry only a
/// partial one (checksum offload), and AF_XDP does not say which frames those are. Nothing is
/// lost by it: every byte of a WireGuard message that matters is authenticated (the AEAD tag,
/// MAC1), so a corrupted payload is refused there, and a source address is only learnt from
/// a message that authenticated.
pub fn parse(frame: &[u8]) -> Result<Received, FrameError> {
    if frame.len() < ETH_LEN {
        return Err(FrameError::Truncated);
    }
    let mut l3 = ETH_LEN;
    let mut ethertype = be16(frame, 12);
    for _ in 0..2 {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        if frame.len() < l3 + 4 {
            return Err(FrameError::Truncated);
        }
        ethertype = be16(frame, l3 + 2);
        l3 += 4;
    }
    let taken = |proto: u8| proto == IPPROTO_UDP || proto == IPPROTO_ESP;
    let (from_ip, to_ip, l4, ip_payload_end, proto) = match ethertype {
        ETHERTYPE_IPV4 => {
            let ip = frame.get(l3..l3 + IPV4_LEN).ok_or(FrameError::Truncated)?;
            if ip[0] != 0x45 || !taken(ip[9]) || be16(ip, 6) & 0x3fff != 0 {
                return Err(FrameError::Unsteered);
            }
            if checksum::of(ip) != 0 {
                return Err(FrameError::BadIpChecksum);
            }
            let total = usize::from(be16(ip, 2));
            if total < IPV4_LEN {
                return Err(FrameError::Truncated);
            }
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            let (src, dst) = (IpAddr::V4(src), IpAddr::V4(dst));
            (src, dst, l3 + IPV4_LEN, l3 + total, ip[9])
        }
        ETHERTYPE_IPV6 => {
            let ip = frame.get(l3..l3 + IPV6_LEN).ok_or(FrameError::Truncated)?;
            if !taken(ip[6]) {
                return Err(FrameError::Unsteered);
            }
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&ip[8..24]);
            dst.copy_from_slice(&ip[24..40]);
            let payload = usize::from(be16(ip, 4));
            (
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                l3 + IPV6_LEN,
                l3 + IPV6_LEN + payload,
                ip[6],
            )
        }
        _ => return Err(FrameError::Unsteered),
    };
    // Ethernet pads short frames: the IP length, not the frame's, says where the data ends.
    if ip_payload_end > frame.len() || l4 > ip_payload_end {
        return Err(FrameError::Truncated);
    }
    let (src_mac, dst_mac, tagged) = (mac(&frame[6..12]), mac(&frame[0..6]), l3 != ETH_LEN);
    if proto == IPPROTO_ESP {
        // Its length is the ESP rules' to judge (the worker counts a short one as malformed).
        return Ok(Received {
            from: SocketAddr::new(from_ip, 0),
            to: SocketAddr::new(to_ip, 0),
            payload: l4..ip_payload_end,
            raw_esp: true,
            src_mac,
            dst_mac,
            tagged,
        });
    }
    let udp = l4;
    if udp + UDP_LEN > ip_payload_end {
        return Err(FrameError::Truncated);
    }
    let udp_len = usize::from(be16(frame, udp + 4));
    if udp_len < UDP_LEN || udp + udp_len > ip_payload_end {
        return Err(FrameError::Truncated);
    }
    let datagram = &frame[udp..udp + udp_len];
    Ok(Received {
        from: SocketAddr::new(from_ip, be16(datagram, 0)),
        to: SocketAddr::new(to_ip, be16(datagram, 2)),
        payload: udp + UDP_LEN..udp + udp_len,
        raw_esp: false,
        src_mac,
        dst_mac,
        tagged,
    })
}

/// Where a frame we send goes, at the link and network layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    /// Our address and port (the listen port or the NAT-T port; unused for raw ESP).
    pub from: SocketAddr,
    /// The peer's address and port.
    pub to: SocketAddr,
    /// Our interface's link address.
    pub src_mac: Mac,
    /// The next hop's link address.
    pub dst_mac: Mac,
    /// Raw ESP (IP protocol 50): no UDP header, and the ports unused.
    pub raw_esp: bool,
}

/// Bytes of headers `write_headers` puts in front of a datagram (or, `raw_esp`, an ESP
/// packet) to `to`.
pub fn headers_len(to: &SocketAddr, raw_esp: bool) -> usize {
    let udp = if raw_esp { 0 } else { UDP_LEN };
    ETH_LEN
        + udp
        + match to {
            SocketAddr::V4(_) => IPV4_LEN,
            SocketAddr::V6(_) => IPV6_LEN,
        }
}

/// Writes Ethernet, IP and UDP headers (or, for raw ESP, Ethernet and IP) in front of the
/// payload at `buf[payload]`; returns the whole frame's range. `payload.start` must be at
/// least `headers_len`, and both ends of the path of one family.
pub fn write_headers(buf: &mut [u8], payload: Range<usize>, path: &Path) -> Range<usize> {
    let start = payload.start - headers_len(&path.to, path.raw_esp);
    let (proto, l4_len) = if path.raw_esp {
        (IPPROTO_ESP, payload.len())
    } else {
        (IPPROTO_UDP, payload.len() + UDP_LEN)
    };
    let frame = &mut buf[start..payload.end];
    frame[0..6].copy_from_slice(&path.dst_mac);
    frame[6..12].copy_from_slice(&path.src_mac);
    let (l4, pseudo) = match (path.from.ip(), path.to.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            let ip = &mut frame[ETH_LEN..ETH_LEN + IPV4_LEN];
            ip[0] = 0x45;
            ip[1] = 0;
            ip[2..4].copy_from_slice(&((IPV4_LEN + l4_len) as u16).to_be_bytes());
            // Don't Fragment is set, so the identification need not be unique (RFC 6864).
            ip[4..6].copy_from_slice(&[0, 0]);
            ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
            ip[8] = HOP_LIMIT;
            ip[9] = proto;
            ip[10..12].copy_from_slice(&[0, 0]);
            ip[12..16].copy_from_slice(&src.octets());
            ip[16..20].copy_from_slice(&dst.octets());
            let check = checksum::of(ip);
            ip[10..12].copy_from_slice(&check.to_be_bytes());
            let pseudo = checksum::sum(checksum::sum(0, &src.octets()), &dst.octets());
            (ETH_LEN + IPV4_LEN, pseudo)
        }
        (src, dst) => {
            let src = ipv6_of(src);
            let dst = ipv6_of(dst);
            frame[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            let ip = &mut frame[ETH_LEN..ETH_LEN + IPV6_LEN];
            ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
            ip[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            ip[6] = proto;
            ip[7] = HOP_LIMIT;
            ip[8..24].copy_from_slice(&src.octets());
            ip[24..40].copy_from_slice(&dst.octets());
            let pseudo = checksum::sum(checksum::sum(0, &src.octets()), &dst.octets());
            (ETH_LEN + IPV6_LEN, pseudo)
        }
    };
    if path.raw_esp {
        // ESP carries no checksum: its ICV covers it.
        return start..payload.end;
    }
    let (udp, udp_len) = (l4, l4_len);
    let header = &mut frame[udp..udp + UDP_LEN];
    header[0..2].copy_from_slice(&path.from.port().to_be_bytes());
    header[2..4].copy_from_slice(&path.to.port().to_be_bytes());
    header[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    header[6..8].copy_from_slice(&[0, 0]);
    let acc = pseudo
        .wrapping_add(u32::from(IPPROTO_UDP))
        .wrapping_add(udp_len as u32);
    let mut check = checksum::finish(checksum::sum(acc, &frame[udp..]));
    // A computed zero is sent as all ones: zero would mean "no checksum" (RFC 768).
    if check == 0 {
        check = 0xffff;
    }
    frame[udp + 6..udp + 8].copy_from_slice(&check.to_be_bytes());
    start..payload.end
}

fn ipv6_of(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: Mac = [0x02, 0, 0, 0, 0, 1];
    const THEIRS: Mac = [0x02, 0, 0, 0, 0, 2];

    fn path(from: &str, to: &str) -> Path {
        Path {
            from: from.parse().expect("address"),
            to: to.parse().expect("address"),
            src_mac: OURS,
            dst_mac: THEIRS,
            raw_esp: false,
        }
    }

    fn esp_path(from: &str, to: &str) -> Path {
        let at = |ip: &str| SocketAddr::new(ip.parse().expect("address"), 0);
        Path {
            from: at(from),
            to: at(to),
            raw_esp: true,
            ..path("10.0.0.1:1", "10.0.0.2:1")
        }
    }

    fn build(path: &Path, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; MAX_HEADERS + payload.len()];
        buf[MAX_HEADERS..].copy_from_slice(payload);
        let end = buf.len();
        let range = write_headers(&mut buf, MAX_HEADERS..end, path);
        buf[range].to_vec()
    }

    #[test]
    fn ipv4_frame_round_trips_and_matches_a_known_header_checksum() {
        let p = path("10.0.0.1:51820", "10.0.0.2:40000");
        let frame = build(&p, b"hello");
        assert_eq!(frame.len(), ETH_LEN + IPV4_LEN + UDP_LEN + 5);
        // Header checksum worked by hand: 4500 0021 0000 4000 4011 [cksum] 0a00 0001 0a00 0002.
        assert_eq!(be16(&frame, ETH_LEN + 10), 0x26ca);
        let got = parse(&frame).expect("parses");
        assert_eq!(got.from, p.from);
        assert_eq!(got.to, p.to);
        assert_eq!(&frame[got.payload.clone()], b"hello");
        assert_eq!(got.src_mac, OURS);
        assert_eq!(got.dst_mac, THEIRS);
    }

    #[test]
    fn ipv6_frame_round_trips_and_odd_lengths_check_out() {
        let p = path("[fd00::1]:51820", "[fd00::2]:40000");
        for len in [0usize, 1, 7, 148, 1421] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let frame = build(&p, &payload);
            let got = parse(&frame).expect("parses");
            assert_eq!(&frame[got.payload.clone()], &payload[..]);
            assert_eq!(got.to, p.to);
        }
    }

    /// The UDP checksum over the pseudo-header verifies (sums to zero), computed here
    /// independently of `write_headers`.
    fn udp_checksum_verifies(frame: &[u8]) -> bool {
        let got = parse(frame).expect("parses");
        let udp = &frame[got.payload.start - UDP_LEN..got.payload.end];
        let mut acc = 0u32;
        for ip in [got.from.ip(), got.to.ip()] {
            acc = match ip {
                IpAddr::V4(v4) => checksum::sum(acc, &v4.octets()),
                IpAddr::V6(v6) => checksum::sum(acc, &v6.octets()),
            };
        }
        acc += u32::from(IPPROTO_UDP) + udp.len() as u32;
        be16(udp, 6) != 0 && checksum::finish(checksum::sum(acc, udp)) == 0
    }

    #[test]
    fn udp_checksums_verify_and_the_ip_header_checksum_is_checked() {
        for p in [
            path("10.0.0.1:51820", "10.0.0.2:40000"),
            path("[fd00::1]:51820", "[fd00::2]:40000"),
        ] {
            for len in [0usize, 1, 2, 33, 1420] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                let frame = build(&p, &payload);
                assert!(udp_checksum_verifies(&frame), "{p:?} {len}");
                let mut bad = frame.clone();
                let last = bad.len() - 1;
                bad[last] ^= 0x40;
                assert!(len == 0 || !udp_checksum_verifies(&bad));
            }
        }
        let mut bad = build(&path("10.0.0.1:1", "10.0.0.2:2"), b"x");
        bad[ETH_LEN + 8] = 1; // TTL
        assert_eq!(parse(&bad), Err(FrameError::BadIpChecksum));
    }

    #[test]
    fn vlan_tags_padding_and_truncation() {
        let p = path("10.0.0.1:51820", "10.0.0.2:40000");
        let frame = build(&p, b"hi");
        // Two tags inserted after the MAC addresses are stepped over.
        let mut tagged = frame[..12].to_vec();
        tagged.extend_from_slice(&[0x88, 0xa8, 0, 7, 0x81, 0x00, 0, 9]);
        tagged.extend_from_slice(&frame[12..]);
        let got = parse(&tagged).expect("parses");
        assert!(got.tagged);
        assert_eq!(&tagged[got.payload], b"hi");
        assert!(!parse(&frame).expect("parses").tagged);
        // Ethernet's minimum-size padding after the datagram is ignored.
        let mut padded = frame.clone();
        padded.resize(60, 0);
        assert_eq!(parse(&padded).expect("parses").payload.len(), 2);
        // Every cut short of the whole datagram is refused, none panics.
        for cut in 0..frame.len() {
            assert!(parse(&frame[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn fragments_options_and_other_protocols_are_not_taken() {
        let frame = build(&path("10.0.0.1:1", "10.0.0.2:2"), b"x");
        let mut fragment = frame.clone();
        fragment[ETH_LEN + 6] |= 0x20; // more fragments
        assert_eq!(parse(&fragment), Err(FrameError::Unsteered));
        let mut tcp = frame.clone();
        tcp[ETH_LEN + 9] = 6;
        assert_eq!(parse(&tcp), Err(FrameError::Unsteered));
        let mut arp = frame;
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse(&arp), Err(FrameError::Unsteered));
    }

    /// Raw ESP (IP protocol 50) frames: built with no UDP header, read back with the ports
    /// zero, the IP lengths right; a short or padded one is cut by the IP length.
    #[test]
    fn raw_esp_frames_round_trip_without_a_udp_header() {
        let esp: Vec<u8> = (0..60u8).collect();
        for (p, ip_len) in [
            (esp_path("10.0.0.1", "10.0.0.2"), IPV4_LEN),
            (esp_path("fd00::1", "fd00::2"), IPV6_LEN),
        ] {
            assert_eq!(headers_len(&p.to, true), ETH_LEN + ip_len);
            let frame = build(&p, &esp);
            assert_eq!(frame.len(), ETH_LEN + ip_len + esp.len());
            let got = parse(&frame).expect("parses");
            assert!(got.raw_esp);
            assert_eq!((got.from, got.to), (p.from, p.to));
            assert_eq!(&frame[got.payload.clone()], &esp[..]);
            let mut padded = frame.clone();
            padded.extend_from_slice(&[0; 9]);
            assert_eq!(parse(&padded).expect("parses").payload, got.payload);
            for cut in 0..ETH_LEN + ip_len {
                assert!(parse(&frame[..cut]).is_err(), "cut at {cut}");
            }
            // Cut inside the ESP packet: the IP length says more than the frame holds.
            assert_eq!(parse(&frame[..frame.len() - 1]), Err(FrameError::Truncated));
        }
        let v4 = build(&esp_path("10.0.0.1", "10.0.0.2"), &esp);
        assert_eq!(v4[ETH_LEN + 9], 50);
        assert_eq!(checksum::of(&v4[ETH_LEN..ETH_LEN + IPV4_LEN]), 0);
        let mut fragment = v4;
        fragment[ETH_LEN + 7] = 1; // an offset: a later fragment
        assert_eq!(parse(&fragment), Err(FrameError::Unsteered));
    }
}
