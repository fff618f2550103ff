//! Outgoing datagrams grouped into sends. Consecutive datagrams to one destination with one
//! size (the last may be shorter) ride in one `sendmsg` with a UDP_SEGMENT control message:
//! one system call, one route lookup and one socket-buffer charge for the whole run. Without
//! GSO (or for a lone datagram) a batch holds exactly one datagram.

use std::io;
use std::mem::zeroed;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::AsRawFd;

use io_uring::opcode;
use io_uring::types::Fd;

use super::{user_data, UringBackend, OP_SEND};
use crate::io::BufId;

use crate::kernel::udp::sockaddr_to;
use crate::kernel::udp_offload::{segment_control, CONTROL_LEN, MAX_GSO_BYTES, MAX_SEGMENTS};

/// One send in preparation or in flight: its datagrams' buffers and the kernel-facing headers.
pub(super) struct SendBatch {
    hdr: libc::msghdr,
    iovs: [libc::iovec; MAX_SEGMENTS],
    addr: libc::sockaddr_storage,
    control: [u64; CONTROL_LEN / 8],
    bufs: [u32; MAX_SEGMENTS],
    starts: [u16; MAX_SEGMENTS],
    count: usize,
    to: Option<SocketAddr>,
    /// Sent from the NAT-T socket rather than the WireGuard one.
    nat_t: bool,
    segment: usize,
    bytes: usize,
    closed: bool,
}

impl SendBatch {
    fn empty() -> Self {
        // SAFETY: msghdr, iovec and sockaddr_storage are plain C structs for which all-zero is
        // a valid (empty) value.
        unsafe {
            Self {
                hdr: zeroed(),
                iovs: zeroed(),
                addr: zeroed(),
                control: [0; CONTROL_LEN / 8],
                bufs: [0; MAX_SEGMENTS],
                starts: [0; MAX_SEGMENTS],
                count: 0,
                to: None,
                nat_t: false,
                segment: 0,
                bytes: 0,
                closed: false,
            }
        }
    }

    /// The datagrams: (buffer, start offset, length).
    pub(super) fn datagrams(&self) -> impl Iterator<Item = (u32, usize, usize)> + '_ {
        (0..self.count).map(|i| {
            (
                self.bufs[i],
                usize::from(self.starts[i]),
                self.iovs[i].iov_len,
            )
        })
    }

    /// Where the datagrams go.
    pub(super) fn destination(&self) -> Option<SocketAddr> {
        self.to
    }

    /// True if it leaves by the NAT-T socket.
    pub(super) fn nat_t(&self) -> bool {
        self.nat_t
    }

    /// Number of datagrams.
    pub(super) fn len(&self) -> usize {
        self.count
    }
}

/// A fixed set of send batches; at most one is open for appending at a time.
pub(super) struct SendBatches {
    slots: Box<[SendBatch]>,
    free: Vec<u32>,
    open: Option<u32>,
    /// Whether datagrams may be combined (off after the kernel refused a segmented send).
    pub(super) gso: bool,
}

impl SendBatches {
    /// `count` batches.
    pub(super) fn new(count: usize) -> Self {
        Self {
            slots: (0..count).map(|_| SendBatch::empty()).collect(),
            free: (0..count as u32).rev().collect(),
            open: None,
            gso: true,
        }
    }

    /// True if a datagram of `len` bytes to `to` (from the NAT-T socket if `nat_t`) can join
    /// the open batch.
    pub(super) fn fits(&self, to: SocketAddr, len: usize, nat_t: bool) -> bool {
        let Some(open) = self.open else { return false };
        let b = &self.slots[open as usize];
        self.gso
            && b.to == Some(to)
            && b.nat_t == nat_t
            && !b.closed
            && b.count < MAX_SEGMENTS
            && len <= b.segment
            && len > 0
            && b.bytes + len <= MAX_GSO_BYTES
    }

    /// Closes the open batch, if any, and returns it for sending.
    pub(super) fn take_open(&mut self) -> Option<u32> {
        self.open.take()
    }

    /// Opens a new batch to `to` (from the NAT-T socket if `nat_t`); false if every batch is
    /// in flight.
    pub(super) fn start(&mut self, to: SocketAddr, nat_t: bool) -> bool {
        debug_assert!(self.open.is_none());
        let Some(slot) = self.free.pop() else {
            return false;
        };
        let b = &mut self.slots[slot as usize];
        b.count = 0;
        b.bytes = 0;
        b.segment = 0;
        b.closed = false;
        b.to = Some(to);
        b.nat_t = nat_t;
        self.open = Some(slot);
        true
    }

    /// Appends `len` bytes at `ptr` (buffer `buf`, offset `start`) to the open batch.
    pub(super) fn append(&mut self, buf: u32, ptr: *mut u8, start: usize, len: usize) {
        let Some(open) = self.open else { return };
        let b = &mut self.slots[open as usize];
        let i = b.count;
        b.iovs[i] = libc::iovec {
            iov_base: ptr.cast(),
            iov_len: len,
        };
        b.bufs[i] = buf;
        b.starts[i] = start as u16;
        if i == 0 {
            b.segment = len;
        } else if len < b.segment {
            // A shorter datagram can only end a segmented send.
            b.closed = true;
        }
        b.count += 1;
        b.bytes += len;
    }

    /// Fills in the batch's msghdr for sending and returns it.
    pub(super) fn prepare(&mut self, slot: u32) -> *mut libc::msghdr {
        let b = &mut self.slots[slot as usize];
        // SAFETY: all-zero is a valid msghdr.
        b.hdr = unsafe { zeroed() };
        if let Some(to) = b.to {
            b.hdr.msg_namelen = sockaddr_to(to, &mut b.addr);
            b.hdr.msg_name = (&mut b.addr as *mut libc::sockaddr_storage).cast();
        }
        b.hdr.msg_iov = b.iovs.as_mut_ptr();
        b.hdr.msg_iovlen = b.count;
        if b.count > 1 {
            b.hdr.msg_controllen = segment_control(&mut b.control, b.segment as u16);
            b.hdr.msg_control = b.control.as_mut_ptr().cast();
        }
        &mut b.hdr
    }

    /// A batch, to read its datagrams after the send completed.
    pub(super) fn get(&self, slot: u32) -> &SendBatch {
        &self.slots[slot as usize]
    }

    /// Returns a batch to the free set.
    pub(super) fn release(&mut self, slot: u32) {
        self.slots[slot as usize].count = 0;
        self.free.push(slot);
    }
}

impl UringBackend {
    /// Hands the open send batch, if any, to the kernel.
    pub(super) fn submit_open_batch(&mut self) {
        let Some(slot) = self.sends.take_open() else {
            return;
        };
        let socket = match (self.sends.get(slot).nat_t(), &self.nat_t) {
            (true, Some(nat_t)) => nat_t.as_raw_fd(),
            _ => self.outer.as_raw_fd(),
        };
        let hdr = self.sends.prepare(slot);
        let fd = Fd(socket);
        let entry = opcode::SendMsg::new(fd, hdr).build().user_data(user_data(
            OP_SEND,
            self.outer_generation,
            slot,
        ));
        self.offload_stats.outer_send_calls += 1;
        let _ = self.push(entry);
    }

    /// A send batch is done: its buffers go back to the pool; `failed` counts its datagrams.
    pub(super) fn finish_send(&mut self, slot: u32, failed: bool) {
        let batch = self.sends.get(slot);
        if failed {
            self.send_failures += batch.len() as u64;
        }
        for (buf, _, _) in batch.datagrams() {
            self.free.push(buf);
        }
        self.sends.release(slot);
    }

    /// A send batch's completion. A segmented send the kernel refused is retried datagram by
    /// datagram, and where the refusal says the device cannot segment, GSO stays off.
    pub(super) fn on_send(&mut self, slot: u32, res: i32) {
        let batch = self.sends.get(slot);
        if res >= 0 || batch.len() < 2 {
            self.finish_send(slot, res < 0);
            return;
        }
        let Some(to) = batch.destination() else {
            self.finish_send(slot, true);
            return;
        };
        let nat_t = batch.nat_t();
        let mut retry = [(0u32, 0usize, 0usize); MAX_SEGMENTS];
        let mut n = 0;
        for d in batch.datagrams() {
            retry[n] = d;
            n += 1;
        }
        self.sends.release(slot);
        let refused = matches!(
            -res,
            libc::EIO | libc::EOPNOTSUPP | libc::ENOPROTOOPT | libc::EINVAL
        );
        if !refused || !self.sends.gso {
            // Transient (a full buffer, no route, too big for the path): the datagrams are
            // lost as single sends would be; retrying them later could reorder the flow.
            self.send_failures += n as u64;
            for &(buf, _, _) in &retry[..n] {
                self.free.push(buf);
            }
            return;
        }
        // The kernel or device cannot segment: GSO stays off for this backend, and these
        // datagrams go once more one by one (the only time a flow may see them reordered).
        tracing::warn!(
            "the kernel refused a segmented UDP send ({}); sending datagrams one by one",
            io::Error::from_raw_os_error(-res)
        );
        self.sends.gso = false;
        for &(buf, start, len) in &retry[..n] {
            self.send_one(BufId(buf), start..start + len, to, false, nat_t);
        }
    }

    /// Adds a datagram to the open batch (or a new one); `join` false keeps it on its own.
    /// It leaves by the NAT-T socket if `nat_t`.
    pub(super) fn send_one(
        &mut self,
        buf: BufId,
        range: Range<usize>,
        to: SocketAddr,
        join: bool,
        nat_t: bool,
    ) {
        let len = range.len();
        if !join || !self.sends.fits(to, len, nat_t) {
            self.submit_open_batch();
            if !self.sends.start(to, nat_t) {
                // Every batch is in flight: drop this datagram, as a full socket buffer would.
                self.free.push(buf.0);
                self.send_failures += 1;
                return;
            }
        }
        let ptr = self.bufs[buf.0 as usize][range.start..].as_mut_ptr();
        self.sends.append(buf.0, ptr, range.start, len);
        if !join {
            self.submit_open_batch();
        }
    }
}
