//! The TUN's offloads, write side: consecutive TCP segments of one flow, as they come out of
//! the tunnel, are handed to the TUN as one super-packet (the reverse of `segment`), so the
//! kernel's TCP stack takes a whole run in one pass instead of one packet at a time; where
//! the TUN takes UDP super-packets (USO, Linux 6.2), consecutive datagrams of one flow and one
//! size (the last may be shorter) go the same way, one write for the run. The packets are not
//! copied: the first keeps its headers (lengths and checksum fixed to cover the run) and the
//! payloads of the others follow it in the same vectored write.

use super::checksum;
use super::segment::{
    F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, TCP_FIN, TCP_PSH, VNET_HDR_LEN,
};

/// Most segments one super-packet carries.
pub const MAX_RUN: usize = 64;
/// Most bytes one super-packet may have (an IP packet's length field).
const MAX_TOTAL: usize = 65_535;

const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// Where a TCP segment's or UDP datagram's parts are, for deciding whether it continues a
/// run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// A UDP datagram (else a TCP segment).
    pub udp: bool,
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// Bytes of IP and TCP headers.
    pub headers: usize,
    /// Start of the TCP or UDP header.
    pub l4: usize,
    /// Sequence number (TCP).
    pub seq: u32,
    /// Payload bytes.
    pub payload: usize,
    /// Carries PSH (TCP): the run ends with it.
    pub push: bool,
}

/// Where the transport header of a plain IPv4 or IPv6 packet of `protocol` starts: no IPv4
/// options or IPv6 extension headers, not a fragment, lengths that agree with `packet`, and
/// room for `min_l4` bytes of transport header.
fn plain_l4(packet: &[u8], protocol: u8, min_l4: usize) -> Option<(bool, usize)> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 + min_l4
            && packet[0] == 0x45
            && packet[9] == protocol
            && u16::from_be_bytes([packet[2], packet[3]]) as usize == packet.len()
            // Neither more fragments nor an offset: only DF may be set.
            && u16::from_be_bytes([packet[6], packet[7]]) & 0x3fff == 0 =>
        {
            Some((false, 20))
        }
        6 if packet.len() >= 40 + min_l4
            && packet[6] == protocol
            && u16::from_be_bytes([packet[4], packet[5]]) as usize + 40 == packet.len() =>
        {
            Some((true, 40))
        }
        _ => None,
    }
}

/// The segment's layout if `packet` may join a run: a TCP data segment (`tcp_segment`), or,
/// with `udp`, a UDP datagram with some payload.
pub fn segment_of(packet: &[u8], udp: bool) -> Option<Segment> {
    tcp_segment(packet).or_else(|| udp.then(|| udp_datagram(packet)).flatten())
}

/// The datagram's layout if `packet` is a plain UDP datagram with some payload whose length
/// field agrees with the packet.
pub fn udp_datagram(packet: &[u8]) -> Option<Segment> {
    let (v6, l4) = plain_l4(packet, 17, 8)?;
    let udp_len = u16::from_be_bytes([packet[l4 + 4], packet[l4 + 5]]) as usize;
    if udp_len != packet.len() - l4 || udp_len <= 8 {
        return None;
    }
    Some(Segment {
        udp: true,
        v6,
        headers: l4 + 8,
        l4,
        seq: 0,
        payload: udp_len - 8,
        push: false,
    })
}

/// The segment's layout if `packet` is a plain TCP data segment that may join a run: no IP
/// options or extension headers, not a fragment, only ACK (and PSH) set, some payload.
pub fn tcp_segment(packet: &[u8]) -> Option<Segment> {
    let (v6, l4) = plain_l4(packet, 6, 20)?;
    let tcp_len = usize::from(packet[l4 + 12] >> 4) * 4;
    let flags = packet[l4 + 13];
    let headers = l4 + tcp_len;
    if tcp_len < 20
        || headers >= packet.len()
        || flags & TCP_ACK == 0
        || flags & (TCP_FIN | TCP_SYN | TCP_RST) != 0
        || flags & !(TCP_ACK | TCP_PSH) != 0
    {
        return None;
    }
    let seq = u32::from_be_bytes([
        packet[l4 + 4],
        packet[l4 + 5],
        packet[l4 + 6],
        packet[l4 + 7],
    ]);
    Some(Segment {
        udp: false,
        v6,
        headers,
        l4,
        seq,
        payload: packet.len() - headers,
        push: flags & TCP_PSH != 0,
    })
}

/// True if `next` (laid out as `seg`) continues the run that `first` (laid out as `head`)
/// starts: same flow and header fields, the next sequence number (TCP), the run's segment
/// size (or less, ending it), and room left.
pub fn continues(
    first: &[u8],
    head: &Segment,
    bytes: usize,
    count: usize,
    next: &[u8],
    seg: &Segment,
) -> bool {
    let same = |r: std::ops::Range<usize>| first.get(r.clone()) == next.get(r);
    let ip_same = if head.v6 {
        // Version, class, flow label; next header, hop limit; addresses.
        same(0..4) && same(6..40)
    } else {
        // Version, TOS; flags, TTL, protocol; addresses.
        same(0..2) && same(6..10) && same(12..20)
    };
    let l4 = head.l4;
    let room = seg.payload <= head.payload && count < MAX_RUN && bytes + seg.payload <= MAX_TOTAL;
    if head.udp || seg.udp {
        // Same ports; lengths and checksums differ per datagram.
        return ip_same && seg.udp && head.udp && seg.v6 == head.v6 && same(l4..l4 + 4) && room;
    }
    ip_same
        && seg.v6 == head.v6
        && seg.headers == head.headers
        // Ports, acknowledgement, header length, window, options (timestamps included).
        && same(l4..l4 + 4)
        && same(l4 + 8..l4 + 13)
        && same(l4 + 14..l4 + 16)
        && same(l4 + 20..head.headers)
        && seg.seq == head.seq.wrapping_add((bytes - first.len()) as u32 + head.payload as u32)
        && room
}

/// True if nothing may join a run after `seg` (laid out as a run headed by `head`): it
/// carries PSH, or it is shorter than the run's segment size.
pub fn ends_run(head: &Segment, seg: &Segment) -> bool {
    seg.push || seg.payload < head.payload
}

/// Turns the first packet of a run of `count` segments and `total` bytes into the head of one
/// super-packet and returns the vnet header to write before it. `push` sets PSH (the last
/// segment had it).
pub fn finish_head(
    first: &mut [u8],
    head: &Segment,
    total: usize,
    push: bool,
) -> [u8; VNET_HDR_LEN] {
    let l4 = head.l4;
    let (src, dst) = if head.v6 {
        first[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        (8..24, 24..40)
    } else {
        first[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        first[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::of(&first[..20]);
        first[10..12].copy_from_slice(&c.to_be_bytes());
        (12..16, 16..20)
    };
    let (protocol, check_at, gso) = if head.udp {
        // The UDP length covers the run: the kernel rewrites it (and adjusts the checksum)
        // for each datagram it cuts.
        first[l4 + 4..l4 + 6].copy_from_slice(&((total - l4) as u16).to_be_bytes());
        (17, 6, GSO_UDP_L4)
    } else {
        if push {
            first[l4 + 13] |= TCP_PSH;
        }
        (6, 16, if head.v6 { GSO_TCPV6 } else { GSO_TCPV4 })
    };
    // The kernel finishes the checksum from csum_start: the field holds the pseudo-header sum.
    let pseudo = checksum::pseudo_header(&first[src], &first[dst], protocol, total - l4);
    let partial = !checksum::finish(pseudo);
    first[l4 + check_at..l4 + check_at + 2].copy_from_slice(&partial.to_be_bytes());

    let mut hdr = [0u8; VNET_HDR_LEN];
    hdr[0] = F_NEEDS_CSUM;
    hdr[1] = gso;
    hdr[2..4].copy_from_slice(&(head.headers as u16).to_le_bytes());
    hdr[4..6].copy_from_slice(&(head.payload as u16).to_le_bytes());
    hdr[6..8].copy_from_slice(&(l4 as u16).to_le_bytes());
    hdr[8..10].copy_from_slice(&(check_at as u16).to_le_bytes());
    hdr
}

#[cfg(test)]
mod tests;
