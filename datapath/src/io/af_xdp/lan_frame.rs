//! LAN frames (`inner = "af-xdp"`, issue 20): the IP packet read out of an untagged Ethernet
//! frame the LAN program took, a forwarded packet's TTL or hop limit taken down by one (the
//! IPv4 checksum updated as RFC 1624 says, not recomputed), and an Ethernet header written in
//! front of a decrypted packet for the LAN.

use std::ops::Range;

use super::frame::{be16, mac, FrameError, Mac, ETH_LEN};
use crate::inner::checksum;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;

/// An IP packet in a LAN frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanPacket {
    /// The packet's place in the frame (Ethernet padding after it left out).
    pub packet: Range<usize>,
    /// The sender's link address (the LAN router's, usually).
    pub src_mac: Mac,
}

/// Reads the IP packet in `frame`: untagged Ethernet, IPv4 with a correct header checksum or
/// IPv6, no longer than its header says.
pub fn parse_lan(frame: &[u8]) -> Result<LanPacket, FrameError> {
    let ip = frame.get(ETH_LEN..).ok_or(FrameError::Truncated)?;
    let len = match be16(frame, 12) {
        ETHERTYPE_IPV4 => {
            let header = ip.get(..20).ok_or(FrameError::Truncated)?;
            if header[0] >> 4 != 4 {
                return Err(FrameError::Unsteered);
            }
            let header_len = usize::from(header[0] & 0x0f) * 4;
            let header = ip.get(..header_len).ok_or(FrameError::Truncated)?;
            if header_len < 20 {
                return Err(FrameError::Unsteered);
            }
            if checksum::of(header) != 0 {
                return Err(FrameError::BadIpChecksum);
            }
            let total = usize::from(be16(ip, 2));
            if total < header_len {
                return Err(FrameError::Truncated);
            }
            total
        }
        ETHERTYPE_IPV6 => {
            if ip.len() < 40 {
                return Err(FrameError::Truncated);
            }
            if ip[0] >> 4 != 6 {
                return Err(FrameError::Unsteered);
            }
            40 + usize::from(be16(ip, 4))
        }
        _ => return Err(FrameError::Unsteered),
    };
    if len > ip.len() {
        return Err(FrameError::Truncated);
    }
    Ok(LanPacket {
        packet: ETH_LEN..ETH_LEN + len,
        src_mac: mac(&frame[6..12]),
    })
}

/// Takes one off the TTL (IPv4, updating the header checksum) or hop limit (IPv6) of the
/// packet `ip`, as a router forwarding it does; `Expired` when it was 1 or 0 (the kernel
/// answers those).
pub fn forward(ip: &mut [u8]) -> Result<(), FrameError> {
    match ip.first().map(|b| b >> 4) {
        Some(4) if ip.len() >= 20 => {
            let ttl = ip[8];
            if ttl <= 1 {
                return Err(FrameError::Expired);
            }
            // TTL is the high byte of the 16-bit word at 8 (TTL, protocol).
            let old = u16::from_be_bytes([ttl, ip[9]]);
            let new = u16::from_be_bytes([ttl - 1, ip[9]]);
            let check = checksum::update(be16(ip, 10), old, new);
            ip[8] = ttl - 1;
            ip[10..12].copy_from_slice(&check.to_be_bytes());
            Ok(())
        }
        Some(6) if ip.len() >= 40 => {
            if ip[7] <= 1 {
                return Err(FrameError::Expired);
            }
            ip[7] -= 1;
            Ok(())
        }
        Some(_) if ip.len() < 20 => Err(FrameError::Truncated),
        _ => Err(FrameError::Unsteered),
    }
}

/// Writes an Ethernet header from `src` to `dst` just before the IP packet at
/// `buf[packet]`; returns the frame's range.
pub fn write_ethernet(
    buf: &mut [u8],
    packet: Range<usize>,
    (src, dst): (Mac, Mac),
) -> Result<Range<usize>, FrameError> {
    if packet.is_empty() {
        return Err(FrameError::Truncated);
    }
    let ethertype = match buf.get(packet.start).map(|b| b >> 4) {
        Some(4) => ETHERTYPE_IPV4,
        Some(6) => ETHERTYPE_IPV6,
        _ => return Err(FrameError::Unsteered),
    };
    let start = packet
        .start
        .checked_sub(ETH_LEN)
        .ok_or(FrameError::NoRoom)?;
    if packet.end > buf.len() {
        return Err(FrameError::Truncated);
    }
    let header = &mut buf[start..packet.start];
    header[0..6].copy_from_slice(&dst);
    header[6..12].copy_from_slice(&src);
    header[12..14].copy_from_slice(&ethertype.to_be_bytes());
    Ok(start..packet.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTER: Mac = [2, 0, 0, 0, 0, 1];
    const US: Mac = [2, 0, 0, 0, 0, 2];

    /// An IPv4 packet of `len` bytes with its header checksum set.
    fn ipv4(len: usize, ttl: u8) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[8] = ttl;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 202, 0, 2]);
        p[16..20].copy_from_slice(&[10, 77, 0, 9]);
        let c = checksum::of(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn framed(packet: &[u8], pad: usize) -> Vec<u8> {
        let mut buf = vec![0u8; ETH_LEN];
        buf.extend_from_slice(packet);
        buf.extend(std::iter::repeat_n(0xee, pad));
        let end = ETH_LEN + packet.len();
        let range = write_ethernet(&mut buf, ETH_LEN..end, (ROUTER, US)).expect("room");
        assert_eq!(range, 0..end);
        buf
    }

    #[test]
    fn a_padded_ipv4_frame_gives_its_packet_and_sender() {
        let packet = ipv4(46, 64);
        let frame = framed(&packet, 14);
        let got = parse_lan(&frame).expect("parsed");
        assert_eq!(
            got.packet,
            ETH_LEN..ETH_LEN + 46,
            "Ethernet padding left out"
        );
        assert_eq!(got.src_mac, ROUTER);
        assert_eq!(&frame[0..6], &US);
        assert_eq!(&frame[got.packet], &packet[..]);
    }

    #[test]
    fn broken_frames_are_refused_with_their_reason() {
        let mut bad_sum = framed(&ipv4(40, 64), 0);
        bad_sum[ETH_LEN + 12] ^= 1;
        assert_eq!(parse_lan(&bad_sum), Err(FrameError::BadIpChecksum));
        let mut long = ipv4(40, 64);
        long[2..4].copy_from_slice(&60u16.to_be_bytes());
        let c = checksum::update(be16(&long, 10), 40, 60);
        long[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(parse_lan(&framed(&long, 0)), Err(FrameError::Truncated));
        let mut v6 = vec![0u8; 40 + 8];
        v6[0] = 0x60;
        v6[4..6].copy_from_slice(&16u16.to_be_bytes());
        assert_eq!(parse_lan(&framed(&v6, 0)), Err(FrameError::Truncated));
        let mut arp = framed(&ipv4(40, 64), 0);
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(parse_lan(&arp), Err(FrameError::Unsteered));
        assert_eq!(parse_lan(&[0u8; 10]), Err(FrameError::Truncated));
    }

    #[test]
    fn forwarding_takes_one_off_the_ttl_and_keeps_the_checksum_right() {
        for ttl in [2u8, 64, 255] {
            let mut p = ipv4(60, ttl);
            forward(&mut p).expect("forwarded");
            assert_eq!(p[8], ttl - 1);
            assert_eq!(
                checksum::of(&p[..20]),
                0,
                "header checksum still holds at {ttl}"
            );
        }
        let mut v6 = vec![0u8; 48];
        v6[0] = 0x60;
        v6[7] = 9;
        forward(&mut v6).expect("forwarded");
        assert_eq!(v6[7], 8);
        for ttl in [0u8, 1] {
            assert_eq!(forward(&mut ipv4(60, ttl)), Err(FrameError::Expired));
            v6[7] = ttl;
            assert_eq!(forward(&mut v6), Err(FrameError::Expired));
        }
        assert_eq!(forward(&mut [0x45; 8]), Err(FrameError::Truncated));
        assert_eq!(forward(&mut [0x10; 60]), Err(FrameError::Unsteered));
    }

    #[test]
    fn the_link_header_needs_room_and_an_ip_packet() {
        let mut buf = ipv4(40, 64);
        assert_eq!(
            write_ethernet(&mut buf, 0..40, (US, ROUTER)),
            Err(FrameError::NoRoom)
        );
        let mut not_ip = vec![0u8; 60];
        assert_eq!(
            write_ethernet(&mut not_ip, 14..60, (US, ROUTER)),
            Err(FrameError::Unsteered)
        );
    }
}
