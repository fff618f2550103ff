//! What WireGuard reads of the inner (tunnelled) IP packet: its version, addresses and true
//! length, so padding can be trimmed and cryptokey routing applied.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The fields of an inner IPv4 or IPv6 header that routing needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InnerHeader {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Length of the packet according to its header (without WireGuard padding).
    pub len: usize,
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]) as usize)
}

fn addr<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at + N)?.first_chunk::<N>().copied()
}

/// Parses an inner packet's header; `None` if it is not a well-formed IPv4 or IPv6 packet
/// that fits in `packet`.
pub fn parse(packet: &[u8]) -> Option<InnerHeader> {
    match packet.first()? >> 4 {
        4 => {
            let ihl = (packet[0] & 0x0f) as usize * 4;
            let len = be16(packet, 2)?;
            if ihl < 20 || len < ihl || len > packet.len() {
                return None;
            }
            Some(InnerHeader {
                src: IpAddr::V4(Ipv4Addr::from(addr::<4>(packet, 12)?)),
                dst: IpAddr::V4(Ipv4Addr::from(addr::<4>(packet, 16)?)),
                len,
            })
        }
        6 => {
            let len = be16(packet, 4)? + 40;
            if len > packet.len() {
                return None;
            }
            Some(InnerHeader {
                src: IpAddr::V6(Ipv6Addr::from(addr::<16>(packet, 8)?)),
                dst: IpAddr::V6(Ipv6Addr::from(addr::<16>(packet, 24)?)),
                len,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v4_and_v6_and_refuses_lies() {
        let mut v4 = [0u8; 40];
        v4[0] = 0x45;
        v4[2..4].copy_from_slice(&28u16.to_be_bytes());
        v4[12..16].copy_from_slice(&[10, 0, 0, 1]);
        v4[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let h = parse(&v4).expect("v4");
        assert_eq!(h.len, 28);
        assert_eq!(h.src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(h.dst, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        v4[2..4].copy_from_slice(&41u16.to_be_bytes());
        assert_eq!(parse(&v4), None, "claims more bytes than present");

        let mut v6 = [0u8; 48];
        v6[0] = 0x60;
        v6[4..6].copy_from_slice(&8u16.to_be_bytes());
        v6[23] = 1;
        v6[39] = 2;
        let h = parse(&v6).expect("v6");
        assert_eq!(h.len, 48);
        assert_eq!(h.src, "::1".parse::<IpAddr>().expect("addr"));
        assert_eq!(parse(&v6[..47]), None);
        assert_eq!(parse(&[0x50; 20]), None);
        assert_eq!(parse(&[]), None);
    }
}
