//! Writes into a TUN opened with a vnet header. Consecutive TCP segments of one flow (and UDP
//! datagrams, where the TUN takes UDP super-packets) are gathered into a run
//! (`inner::coalesce`) and written as one super-packet by one vectored write, the payloads taken from their own pool buffers without copying; anything else is
//! written alone behind a header that marks it checksum-verified (the AEAD already proved it
//! intact, as the kernel's WireGuard marks its decrypted packets).

use std::mem::zeroed;
use std::ops::Range;
use std::os::fd::AsRawFd;

use io_uring::opcode;
use io_uring::types::Fd;

use super::{user_data, UringBackend, OP_WRITE, OP_WRITEV};
use crate::io::BufId;

use crate::inner::coalesce::{continues, ends_run, finish_head, segment_of, Segment, MAX_RUN};
use crate::inner::segment::VNET_HDR_LEN;

/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum needs no verification.
pub(super) const DATA_VALID: u8 = 2;

/// One run of segments being gathered or in flight.
pub(super) struct Run {
    hdr: [u8; VNET_HDR_LEN],
    iovs: [libc::iovec; MAX_RUN + 1],
    bufs: [u32; MAX_RUN],
    count: usize,
    /// Where the first packet is in its buffer.
    first: Range<usize>,
    head: Option<Segment>,
    /// Bytes of the super-packet so far.
    bytes: usize,
    /// The last segment had PSH or was short: nothing more joins.
    closed: bool,
    push: bool,
}

impl Run {
    fn empty() -> Self {
        Self {
            hdr: [0; VNET_HDR_LEN],
            // SAFETY: all-zero iovecs are valid (empty).
            iovs: unsafe { zeroed() },
            bufs: [0; MAX_RUN],
            count: 0,
            first: 0..0,
            head: None,
            bytes: 0,
            closed: false,
            push: false,
        }
    }

    /// The run's buffers.
    pub(super) fn bufs(&self) -> &[u32] {
        &self.bufs[..self.count]
    }
}

/// A fixed set of runs; at most one is open for gathering.
pub(super) struct TunRuns {
    runs: Box<[Run]>,
    free: Vec<u32>,
    open: Option<u32>,
    /// The TUN takes UDP super-packets: UDP datagrams form runs too.
    pub(super) udp: bool,
}

/// What `TunRuns::offer` did with a packet.
pub(super) enum Offer {
    /// It joined the open run.
    Joined,
    /// It opened a new run (there was none open).
    Opened,
    /// It does not join the open run, or cannot start one: flush the open run first, then
    /// offer it again or write it alone.
    Alone,
}

impl TunRuns {
    /// `count` runs.
    pub(super) fn new(count: usize) -> Self {
        Self {
            runs: (0..count).map(|_| Run::empty()).collect(),
            free: (0..count as u32).rev().collect(),
            open: None,
            udp: false,
        }
    }

    /// The open run, if any, closed for writing.
    pub(super) fn take_open(&mut self) -> Option<u32> {
        self.open.take()
    }

    /// True if the open run would take `packet`.
    fn joins(&self, open: u32, first: &[u8], packet: &[u8]) -> Option<(Segment, Segment)> {
        let run = &self.runs[open as usize];
        let head = run.head?;
        let seg = segment_of(packet, self.udp)?;
        (!run.closed && continues(first, &head, run.bytes, run.count, packet, &seg))
            .then_some((head, seg))
    }

    /// True if a run is open.
    pub(super) fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Offers `packet` (at `ptr`, `at` bytes into buffer `buf`) to the open run or, with none
    /// open, to a new one. `first` is the open run's first packet (anything if none is open).
    pub(super) fn offer(
        &mut self,
        first: &[u8],
        buf: u32,
        at: usize,
        ptr: *mut u8,
        packet: &[u8],
    ) -> Offer {
        if let Some(open) = self.open {
            let Some((head, seg)) = self.joins(open, first, packet) else {
                return Offer::Alone;
            };
            let run = &mut self.runs[open as usize];
            run.iovs[run.count + 1] = libc::iovec {
                // SAFETY: the payload lies inside the packet `ptr` points to.
                iov_base: unsafe { ptr.add(seg.headers) }.cast(),
                iov_len: seg.payload,
            };
            run.bufs[run.count] = buf;
            run.count += 1;
            run.bytes += seg.payload;
            run.push = seg.push;
            run.closed = ends_run(&head, &seg);
            return Offer::Joined;
        }
        let Some(seg) = segment_of(packet, self.udp).filter(|s| !s.push) else {
            return Offer::Alone;
        };
        let Some(slot) = self.free.pop() else {
            return Offer::Alone;
        };
        let run = &mut self.runs[slot as usize];
        run.iovs[1] = libc::iovec {
            iov_base: ptr.cast(),
            iov_len: packet.len(),
        };
        run.bufs[0] = buf;
        run.first = at..at + packet.len();
        run.count = 1;
        run.head = Some(seg);
        run.bytes = packet.len();
        run.closed = false;
        run.push = false;
        self.open = Some(slot);
        Offer::Opened
    }

    /// Where the open run's first packet is: its buffer and range.
    pub(super) fn open_first(&self) -> Option<(u32, Range<usize>)> {
        self.open.map(|o| self.first_of(o))
    }

    /// Where run `slot`'s first packet is.
    pub(super) fn first_of(&self, slot: u32) -> (u32, Range<usize>) {
        let run = &self.runs[slot as usize];
        (run.bufs[0], run.first.clone())
    }

    /// A run's buffers.
    pub(super) fn get(&self, slot: u32) -> &Run {
        &self.runs[slot as usize]
    }

    /// Readies run `slot` for writing: fixes its first packet (`first`) into the head of a
    /// super-packet and returns the iovecs to write; a run of one is written as it is.
    pub(super) fn prepare(&mut self, slot: u32, first: &mut [u8]) -> (*const libc::iovec, usize) {
        let run = &mut self.runs[slot as usize];
        run.hdr = [0; VNET_HDR_LEN];
        match run.head {
            Some(head) if run.count > 1 => {
                run.hdr = finish_head(first, &head, run.bytes, run.push);
            }
            _ => run.hdr[0] = DATA_VALID,
        }
        run.iovs[0] = libc::iovec {
            iov_base: run.hdr.as_mut_ptr().cast(),
            iov_len: VNET_HDR_LEN,
        };
        (run.iovs.as_ptr(), run.count + 1)
    }

    /// Returns a run to the free set.
    pub(super) fn release(&mut self, slot: u32) {
        let run = &mut self.runs[slot as usize];
        run.count = 0;
        run.head = None;
        self.free.push(slot);
    }
}

impl UringBackend {
    /// Lets UDP datagrams form runs too: only for a TUN that accepted TUN_F_USO4 and
    /// TUN_F_USO6 (`kernel::tun::Tun::takes_udp_super_packets`).
    pub fn allow_udp_runs(&mut self, allowed: bool) {
        self.tun_runs.udp = allowed && self.tun_vnet;
    }

    /// Writes an inner packet into the TUN: joined to a run of its flow's segments where it
    /// can be, else alone.
    pub(super) fn write_inner(&mut self, buf: BufId, range: Range<usize>) {
        if !self.tun_vnet {
            self.write_alone(buf, range);
            return;
        }
        for _ in 0..2 {
            let (first_buf, first) = self.tun_runs.open_first().unwrap_or((buf.0, range.clone()));
            let ptr = self.bufs[buf.0 as usize][range.start..].as_mut_ptr();
            let first = &self.bufs[first_buf as usize][first];
            let packet = &self.bufs[buf.0 as usize][range.clone()];
            match self.tun_runs.offer(first, buf.0, range.start, ptr, packet) {
                Offer::Joined | Offer::Opened => return,
                // The flow's earlier packets go first; then this one may start a new run.
                Offer::Alone if self.tun_runs.is_open() => self.submit_open_run(),
                Offer::Alone => break,
            }
        }
        self.write_alone(buf, range);
    }

    /// Writes one packet into the TUN (behind a vnet header marking it verified, where the
    /// TUN has them); the buffer is freed when the write completes.
    pub(super) fn write_alone(&mut self, buf: BufId, range: Range<usize>) {
        let mut start = range.start;
        if self.tun_vnet {
            let Some(header) = start.checked_sub(VNET_HDR_LEN) else {
                self.free.push(buf.0);
                self.send_failures += 1;
                return;
            };
            let b = &mut self.bufs[buf.0 as usize];
            b[header..start].fill(0);
            b[header] = DATA_VALID;
            start = header;
        }
        let ptr = self.bufs[buf.0 as usize][start..].as_ptr();
        let entry = opcode::Write::new(Fd(self.inner.as_raw_fd()), ptr, (range.end - start) as u32)
            .build()
            .user_data(user_data(OP_WRITE, 0, buf.0));
        self.offload_stats.tun_write_calls += 1;
        let _ = self.push(entry);
    }

    /// Hands the open TUN run, if any, to the kernel as one vectored write.
    pub(super) fn submit_open_run(&mut self) {
        let Some(slot) = self.tun_runs.take_open() else {
            return;
        };
        let (b, first) = self.tun_runs.first_of(slot);
        let (iovs, n) = self
            .tun_runs
            .prepare(slot, &mut self.bufs[b as usize][first]);
        if n > 2 {
            self.offload_stats.coalesced_writes += 1;
        }
        let entry = opcode::Writev::new(Fd(self.inner.as_raw_fd()), iovs, n as u32)
            .build()
            .user_data(user_data(OP_WRITEV, 0, slot));
        self.offload_stats.tun_write_calls += 1;
        let _ = self.push(entry);
    }

    /// A TUN run is written (or failed): its buffers go back to the pool.
    pub(super) fn finish_run(&mut self, slot: u32, failed: bool) {
        let run = self.tun_runs.get(slot);
        if failed {
            self.send_failures += run.bufs().len() as u64;
        }
        for &b in run.bufs() {
            self.free.push(b);
        }
        self.tun_runs.release(slot);
    }
}
