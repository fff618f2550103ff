//! The receive sides of the kernel offloads: a coalesced UDP receive (UDP_GRO) and a TUN
//! super-packet (IFF_VNET_HDR with TSO/USO) both land in a large buffer of their own and are
//! cut here into one pool buffer per packet, so the worker sees ordinary packets. The large
//! buffer goes straight back to its ring.

use io_uring::types::RecvMsgOut;

use super::completions::sender;
use super::UringBackend;
use crate::inner::segment::{plan, VnetHdr, VNET_HDR_LEN};
use crate::io::buf_ring::BufRing;
use crate::io::{BufId, Rx, Via, BUF_SIZE, INNER_OFFSET, OUTER_OFFSET};
use crate::kernel::udp_offload::gro_segment_size;

/// A set of equal large buffers lent to one provided-buffer ring.
pub(super) struct LargeBuffers {
    mem: Box<[u8]>,
    size: usize,
}

impl LargeBuffers {
    /// `count` buffers of `size` bytes (none for `count` 0).
    pub(super) fn new(count: u16, size: usize) -> Self {
        Self {
            mem: vec![0u8; usize::from(count) * size].into_boxed_slice(),
            size,
        }
    }

    fn count(&self) -> usize {
        self.mem.len().checked_div(self.size).unwrap_or(0)
    }

    /// The first `len` bytes of buffer `i`.
    fn bytes(&self, i: u16, len: usize) -> Option<&[u8]> {
        let start = usize::from(i) * self.size;
        self.mem.get(start..start + len.min(self.size))
    }

    /// Lends buffer `i` to `ring` (published with the ring's next publish).
    pub(super) fn lend(&mut self, ring: &mut BufRing, i: u16) {
        if usize::from(i) < self.count() {
            // SAFETY: buffer `i` lies inside `mem`, which never moves while lent.
            let at = unsafe { self.mem.as_mut_ptr().add(usize::from(i) * self.size) };
            ring.push(at, self.size as u32, i);
        }
    }

    /// Lends every buffer to `ring`.
    pub(super) fn lend_all(&mut self, ring: &mut BufRing) {
        for i in 0..self.count() as u16 {
            self.lend(ring, i);
        }
        ring.publish();
    }
}

impl UringBackend {
    /// Copies each datagram of a coalesced receive into a pool buffer of its own.
    pub(super) fn split_coalesced(&mut self, big: u16, res: usize, nat_t: bool, out: &mut Vec<Rx>) {
        let Some(data) = self.gro_bufs.bytes(big, res) else {
            return;
        };
        let Ok(msg) = RecvMsgOut::parse(data, &self.recv_template) else {
            return;
        };
        let Some(from) = sender(&msg) else { return };
        let payload = msg.payload_data();
        let cut = msg.is_payload_truncated();
        let segment = gro_segment_size(msg.control_data())
            .unwrap_or(payload.len())
            .max(1);
        if payload.len() > segment {
            self.offload_stats.coalesced_receives += 1;
        }
        for datagram in payload.chunks(segment) {
            let Some(b) = self.free.pop() else {
                self.offload_stats.no_buffer += 1;
                continue;
            };
            let n = datagram.len().min(BUF_SIZE - OUTER_OFFSET);
            self.bufs[b as usize][OUTER_OFFSET..OUTER_OFFSET + n].copy_from_slice(&datagram[..n]);
            out.push(Rx::Outer {
                buf: BufId(b),
                at: OUTER_OFFSET,
                len: n,
                from,
                link: None,
                truncated: cut || n < datagram.len(),
                via: Via::of_port(nat_t),
            });
        }
    }

    /// Gives an outer receive buffer back: a coalescing buffer to the ring, a pool buffer to
    /// the pool.
    pub(super) fn recycle_outer(&mut self, b: u16) {
        if self.gro {
            self.gro_bufs.lend(&mut self.outer_ring, b);
        } else {
            self.free.push(u32::from(b));
        }
    }

    /// Cuts a packet read from the TUN (behind its vnet header) into pool buffers at
    /// INNER_OFFSET, one per segment.
    pub(super) fn split_super_packet(&mut self, big: u16, res: usize, out: &mut Vec<Rx>) {
        let Some(data) = self.tso_bufs.bytes(big, res) else {
            return;
        };
        let Some(hdr) = VnetHdr::parse(data) else {
            self.offload_stats.bad_offload += 1;
            return;
        };
        let segments = match plan(&hdr, &data[VNET_HDR_LEN..]) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("TUN packet dropped: {e}");
                self.offload_stats.bad_offload += 1;
                return;
            }
        };
        if segments.count() > 1 {
            self.offload_stats.super_packets += 1;
        }
        for i in 0..segments.count() {
            let Some(b) = self.free.pop() else {
                self.offload_stats.no_buffer += 1;
                continue;
            };
            match segments.write(i, &mut self.bufs[b as usize][INNER_OFFSET..]) {
                Some(len) => out.push(Rx::Inner { buf: BufId(b), len }),
                None => {
                    // A segment larger than a pool buffer: more than any tunnel MTU allows.
                    self.free.push(b);
                    self.offload_stats.bad_offload += 1;
                }
            }
        }
    }

    /// Gives a TUN read buffer back: a large buffer to the ring, a pool buffer to the pool.
    pub(super) fn recycle_tun(&mut self, b: u16) {
        if self.tun_vnet {
            self.tso_bufs.lend(&mut self.tun_ring, b);
        } else {
            self.free.push(u32::from(b));
        }
    }
}
