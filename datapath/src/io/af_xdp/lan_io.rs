//! The AF_XDP backend's LAN side (`inner = "af-xdp"`): a frame the LAN program steered to a
//! LAN queue becomes an inner packet for the worker, as if the kernel had forwarded it into
//! the TUN (TTL or hop limit down by one, moved to `INNER_OFFSET`); a decrypted packet for
//! the LAN gets an Ethernet header in its buffer's headroom and leaves by the LAN queue its
//! route names, in the same UMEM, with no copy. What the kernel must handle (its own
//! addresses, next hops it has not resolved, fragments, packets over the LAN's MTU, TTL run
//! out) goes into the TUN instead, counted by `LanFallback`.

use std::net::IpAddr;
use std::ops::Range;

use super::backend::XdpBackend;
use super::lan_frame::{forward, parse_lan, write_ethernet};
use super::neighbours::PathMiss;
use crate::io::{Backend, BufId, LanFallback, BUF_SIZE, INNER_OFFSET, MAX_MTU};

/// Reads the IP packet out of the LAN frame at `buf[frame]`, takes its TTL or hop limit
/// down by one and moves it to `INNER_OFFSET`; its length, or None for a frame that is not
/// a well-formed IP packet the worker could seal.
pub(super) fn take_lan_frame(buf: &mut [u8; BUF_SIZE], frame: Range<usize>) -> Option<usize> {
    let parsed = parse_lan(buf.get(frame.clone())?).ok()?;
    let packet = frame.start + parsed.packet.start..frame.start + parsed.packet.end;
    if packet.len() > MAX_MTU {
        return None;
    }
    // The program leaves TTL 1 to the kernel, so this fails only on a frame it should not
    // have taken.
    forward(&mut buf[packet.clone()]).ok()?;
    buf.copy_within(packet.clone(), INNER_OFFSET);
    Some(packet.len())
}

/// The destination of the IP packet `packet` (checked by the worker already); IPv4
/// fragments are left to the kernel.
fn destination(packet: &[u8]) -> Result<IpAddr, LanFallback> {
    let header = proto::inner::parse(packet).ok_or(LanFallback::NotLan)?;
    // IPv4 flags and fragment offset (parse checked the 20-byte header is there): more
    // fragments, or an offset, is a fragment.
    if header.dst.is_ipv4() && u16::from_be_bytes([packet[6], packet[7]]) & 0x3fff != 0 {
        return Err(LanFallback::Fragment);
    }
    Ok(header.dst)
}

impl XdpBackend {
    /// Sends the decrypted packet `buf[range]` on the LAN queue its route leaves by, to the
    /// next hop the kernel's neighbour table names; the reason when it must go into the TUN
    /// instead (`buf` then untouched).
    pub(super) fn send_lan(&mut self, buf: BufId, range: Range<usize>) -> Result<(), LanFallback> {
        let to = destination(&self.uring.buf(buf)[range.clone()])?;
        let queues = &self.queues;
        let path = self
            .lan_neighbours
            .path_to(to, self.now, |ifindex| {
                queues
                    .iter()
                    .find(|q| q.lan && q.socket.ifindex() == ifindex)
                    .map(|q| q.mac)
            })
            .map_err(|miss| match miss {
                PathMiss::NotOurs => LanFallback::NotLan,
                PathMiss::Unresolved => LanFallback::Unresolved,
            })?;
        let queue = self
            .queues
            .iter()
            .position(|q| q.lan && q.socket.ifindex() == path.ifindex)
            .ok_or(LanFallback::NotLan)?;
        let mtu = self.queues[queue].interface.mtu as usize;
        if mtu != 0 && range.len() > mtu {
            return Err(LanFallback::TooBig);
        }
        let data = self.uring.buf(buf);
        // Inner packets start well past an Ethernet header's length into their buffer.
        if range.start < super::frame::ETH_LEN {
            return Err(LanFallback::NotLan);
        }
        forward(&mut data[range.clone()]).map_err(|_| LanFallback::Ttl)?;
        let frame = write_ethernet(data, range, (path.local_mac, path.next_hop))
            .map_err(|_| LanFallback::NotLan)?;
        if self.push_tx(queue, buf, frame) {
            self.stats.lan_sent += 1;
        }
        Ok(())
    }
}
