//! The inner traffic of a simulated user: ICMP echo requests to the server's tunnel
//! address, which the server's kernel answers back through the tunnel. Each request
//! carries the time it was sent, so a reply alone gives the round trip.

use std::net::Ipv4Addr;

#[cfg(test)]
use testbed::packet::checksum;
use testbed::packet::echo_request_v4;

const IP_HEADER: usize = 20;
const ICMP_HEADER: usize = 8;
/// Smallest echo this module builds: headers plus the 8-byte send stamp.
pub const MIN_LEN: usize = IP_HEADER + ICMP_HEADER + 8;

/// Writes an echo request of `len` bytes (at least MIN_LEN) into `out`; returns the packet.
pub fn request(
    out: &mut [u8],
    len: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    id: u16,
    seq: u16,
    sent_nanos: u64,
) -> &[u8] {
    let len = len.clamp(MIN_LEN, out.len());
    let p = &mut out[..len];
    echo_request_v4(
        p,
        src.octets(),
        dst.octets(),
        (id, seq),
        &sent_nanos.to_be_bytes(),
    );
    p
}

/// An echo reply: its identifier and the send stamp it carries back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// ICMP identifier.
    pub id: u16,
    /// Nanoseconds stamp from the request.
    pub sent_nanos: u64,
}

/// Parses an IPv4 echo reply; anything else is None.
pub fn parse_reply(packet: &[u8]) -> Option<Reply> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    if packet[0] >> 4 != 4 || *packet.get(9)? != 1 || ihl < IP_HEADER {
        return None;
    }
    let icmp = packet.get(ihl..)?;
    if *icmp.first()? != 0 || icmp.len() < ICMP_HEADER + 8 {
        return None;
    }
    Some(Reply {
        id: u16::from_be_bytes([icmp[4], icmp[5]]),
        sent_nanos: u64::from_be_bytes(icmp[8..16].try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_has_valid_checksums_and_its_reply_parses() {
        let mut buf = [0u8; 1500];
        let src = Ipv4Addr::new(10, 96, 0, 2);
        let dst = Ipv4Addr::new(10, 96, 0, 1);
        let p = request(&mut buf, 128, src, dst, 7, 3, 123_456).to_vec();
        assert_eq!(p.len(), 128);
        assert_eq!(checksum(&p[..20]), 0, "IPv4 header checksum");
        assert_eq!(checksum(&p[20..]), 0, "ICMP checksum");
        assert!(parse_reply(&p).is_none(), "a request is not a reply");
        // What the server's kernel sends back: type 0, addresses swapped, same payload.
        let mut reply = p.clone();
        reply[20] = 0;
        assert_eq!(
            parse_reply(&reply),
            Some(Reply {
                id: 7,
                sent_nanos: 123_456
            })
        );
        assert!(parse_reply(&reply[..30]).is_none(), "truncated");
    }
}
