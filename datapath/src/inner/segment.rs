//! The TUN's offloads, read side: with IFF_VNET_HDR each packet the kernel hands over starts
//! with a `virtio_net_hdr`, and with TSO/USO enabled a packet may be a super-packet of up to
//! 64 KiB that the kernel left for us to cut into MSS-sized segments (and whose checksum it left
//! for us to finish). Cutting here, before encryption, lets one TUN read feed a whole run of
//! datagrams to one peer, which then leaves in one segmented UDP send.

use super::checksum;

/// Bytes of the `virtio_net_hdr` in front of every TUN packet when IFF_VNET_HDR is on.
pub const VNET_HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum from `csum_start` on is left to us.
pub(super) const F_NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;
pub(super) const GSO_TCPV4: u8 = 1;
pub(super) const GSO_TCPV6: u8 = 4;
pub(super) const GSO_UDP_L4: u8 = 5;
/// Flag bit on `gso_type`: the flow uses ECN (CWR goes on the first segment only).
const GSO_ECN: u8 = 0x80;

pub(super) const TCP_FIN: u8 = 0x01;
pub(super) const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// The `virtio_net_hdr` fields (little-endian on the wire, as the TUN uses on x86 and arm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`, possibly with the ECN bit.
    pub gso_type: u8,
    /// Length of the headers (a hint; recomputed from the packet).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts (the transport header).
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads the header from the first `VNET_HDR_LEN` bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let b = bytes.get(..VNET_HDR_LEN)?;
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }
}

/// Why a packet from the TUN could not be cut into segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// A segmentation type this code does not do (legacy UFO, unknown values).
    #[error("unsupported segmentation type {0}")]
    Unsupported(u8),
    /// Headers or offsets that do not fit the packet.
    #[error("malformed offloaded packet")]
    Malformed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One packet, at most a checksum to finish.
    Whole,
    Tcp,
    Udp,
}

/// How one packet from the TUN becomes packets for the tunnel.
#[derive(Debug, Clone, Copy)]
pub struct Segments<'a> {
    hdr: VnetHdr,
    packet: &'a [u8],
    kind: Kind,
    /// Start of the transport header.
    l4: usize,
    /// Bytes of headers every segment repeats.
    headers: usize,
    /// Payload bytes per segment.
    size: usize,
    count: usize,
}

/// Plans the segments of `packet` (without its vnet header) described by `hdr`.
pub fn plan<'a>(hdr: &VnetHdr, packet: &'a [u8]) -> Result<Segments<'a>, SegmentError> {
    let whole = Segments {
        hdr: *hdr,
        packet,
        kind: Kind::Whole,
        l4: 0,
        headers: packet.len(),
        size: 0,
        count: 1,
    };
    let kind = match hdr.gso_type & !GSO_ECN {
        GSO_NONE => {
            if hdr.flags & F_NEEDS_CSUM != 0
                && usize::from(hdr.csum_start) + usize::from(hdr.csum_offset) + 2 > packet.len()
            {
                return Err(SegmentError::Malformed);
            }
            return Ok(whole);
        }
        GSO_TCPV4 | GSO_TCPV6 => Kind::Tcp,
        GSO_UDP_L4 => Kind::Udp,
        other => return Err(SegmentError::Unsupported(other)),
    };
    let l4 = usize::from(hdr.csum_start);
    let version = packet.first().map(|b| b >> 4);
    let ip_ok = match version {
        Some(4) => l4 >= 20 && usize::from(packet[0] & 0x0f) * 4 == l4,
        Some(6) => l4 >= 40,
        _ => false,
    };
    if !ip_ok || hdr.gso_size == 0 {
        return Err(SegmentError::Malformed);
    }
    let l4_len = match kind {
        Kind::Tcp => {
            let offset = packet.get(l4 + 12).ok_or(SegmentError::Malformed)?;
            usize::from(offset >> 4) * 4
        }
        _ => 8,
    };
    let headers = l4 + l4_len;
    let min = if kind == Kind::Tcp { 20 } else { 8 };
    if l4_len < min || headers > packet.len() {
        return Err(SegmentError::Malformed);
    }
    let size = usize::from(hdr.gso_size);
    let payload = packet.len() - headers;
    Ok(Segments {
        kind,
        l4,
        headers,
        size,
        count: payload.div_ceil(size).max(1),
        ..whole
    })
}

impl Segments<'_> {
    /// How many packets this makes.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The size of the largest segment.
    pub fn max_len(&self) -> usize {
        match self.kind {
            Kind::Whole => self.packet.len(),
            _ => self.headers + self.size.min(self.packet.len() - self.headers),
        }
    }

    /// Writes segment `i` into `out` with lengths, identifiers, sequence numbers and checksums
    /// fixed; returns its length, or None if `out` is too small or `i` out of range.
    pub fn write(&self, i: usize, out: &mut [u8]) -> Option<usize> {
        if i >= self.count {
            return None;
        }
        if self.kind == Kind::Whole {
            let n = self.packet.len();
            out.get_mut(..n)?.copy_from_slice(self.packet);
            if self.hdr.flags & F_NEEDS_CSUM != 0 {
                let start = usize::from(self.hdr.csum_start);
                let at = start + usize::from(self.hdr.csum_offset);
                // The field holds the pseudo-header sum: summing over it finishes the job.
                let c = checksum::finish(checksum::sum(0, &out[start..n]));
                out[at..at + 2].copy_from_slice(&nonzero(c).to_be_bytes());
            }
            return Some(n);
        }
        let payload = &self.packet[self.headers..];
        let from = i * self.size;
        let chunk = &payload[from..(from + self.size).min(payload.len())];
        let n = self.headers + chunk.len();
        let out = out.get_mut(..n)?;
        out[..self.headers].copy_from_slice(&self.packet[..self.headers]);
        out[self.headers..].copy_from_slice(chunk);
        let (l4, last) = (self.l4, i + 1 == self.count);

        let (src, dst) = if out[0] >> 4 == 4 {
            out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            let id = u16::from_be_bytes([out[4], out[5]]).wrapping_add(i as u16);
            out[4..6].copy_from_slice(&id.to_be_bytes());
            out[10..12].copy_from_slice(&[0, 0]);
            let c = checksum::of(&out[..l4]);
            out[10..12].copy_from_slice(&c.to_be_bytes());
            (12..16, 16..20)
        } else {
            out[4..6].copy_from_slice(&((n - 40) as u16).to_be_bytes());
            (8..24, 24..40)
        };
        let (protocol, check_at) = match self.kind {
            Kind::Tcp => {
                let seq = u32::from_be_bytes([out[l4 + 4], out[l4 + 5], out[l4 + 6], out[l4 + 7]])
                    .wrapping_add(from as u32);
                out[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
                if !last {
                    out[l4 + 13] &= !(TCP_FIN | TCP_PSH);
                }
                if i > 0 {
                    out[l4 + 13] &= !TCP_CWR;
                }
                (6, l4 + 16)
            }
            _ => {
                out[l4 + 4..l4 + 6].copy_from_slice(&((n - l4) as u16).to_be_bytes());
                (17, l4 + 6)
            }
        };
        out[check_at..check_at + 2].copy_from_slice(&[0, 0]);
        let pseudo = checksum::pseudo_header(&out[src], &out[dst], protocol, n - l4);
        let c = checksum::finish(checksum::sum(pseudo, &out[l4..]));
        out[check_at..check_at + 2].copy_from_slice(&nonzero(c).to_be_bytes());
        Some(n)
    }
}

/// A computed checksum of zero is sent as 0xffff (the same value in one's complement; zero in
/// UDP means "no checksum").
fn nonzero(c: u16) -> u16 {
    if c == 0 {
        0xffff
    } else {
        c
    }
}

#[cfg(test)]
mod tests;
