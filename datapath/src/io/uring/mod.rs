//! The io_uring backend: receives on the outer UDP socket and the TUN queue, sends and writes
//! from pool buffers, and sleeps in one `io_uring_enter` per batch.
//!
//! Receiving costs no submission per packet: one multishot `recvmsg` on the outer socket and
//! one multishot read on the TUN (single reads where the kernel lacks it) stay armed, and the
//! kernel takes a pool buffer from a provided-buffer ring (`buf_ring`) for each packet. The
//! worker's freed buffers refill the rings once per batch. Completions are reaped in batches;
//! sends and writes queued while processing a batch are submitted together with the next wait,
//! so a batch costs one system call. Consecutive datagrams to one peer leave in one segmented
//! send (UDP_SEGMENT, `send_batch`), one by one where the kernel or device refuses that.
//!
//! Safety: every pointer handed to the kernel (buffer, iovec, msghdr, sockaddr, ring entry)
//! points into boxed slices or mappings that live as long as the backend and never move. A
//! buffer is not reused while the kernel may write or read it (it is off the free list while
//! lent to a ring or in flight), and dropping the backend cancels and drains all operations
//! before the memory is released.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};

mod completions;
mod offload;
mod send_batch;
mod tun_write;
mod wait;
mod watch;

use offload::LargeBuffers;
use send_batch::SendBatches;
use tun_write::TunRuns;

use super::buf_ring::BufRing;
use super::frames::Frames;
use super::{
    Backend, BufId, EspEncap, InnerWay, OffloadStats, Rx, BUF_SIZE, INNER_OFFSET, OUTER_OFFSET,
};
use crate::kernel::udp_offload::{enable_gro, CONTROL_LEN};
use crate::kernel::waker::Waker;

/// Buffers lent to the kernel for outer datagrams (a power of two).
const OUTER_RING: u16 = 512;
/// Large buffers lent to the kernel for coalesced (UDP_GRO) receives (a power of two).
const GRO_BUFS: u16 = 64;
/// One coalesced receive: up to 64 KiB of payload behind the result header, address and
/// control message.
const GRO_BUF_SIZE: usize = (1 << 16) + 128;
/// Large buffers lent to the kernel for TUN reads with a vnet header (a power of two).
const TSO_BUFS: u16 = 64;
/// One TUN read with a vnet header: a header and up to 64 KiB of super-packet.
const TSO_BUF_SIZE: usize = (1 << 16) + 64;
/// Buffers lent to the kernel for TUN reads (a power of two).
const TUN_RING: u16 = 256;
/// Single reads kept armed on the TUN where multishot reads are not supported (before 6.7).
const TUN_DEPTH: usize = 64;
/// Packet buffers per worker.
pub const POOL_SIZE: usize = 2048;
const _: () = assert!(POOL_SIZE <= u16::MAX as usize, "buffer ids are 16 bits");
const _: () = assert!((OUTER_RING as usize + TUN_RING as usize) * 2 <= POOL_SIZE);
/// Outgoing sends in preparation or in flight (each one datagram or one segmented run).
const SEND_BATCHES: usize = 1024;
/// Coalesced TUN writes in preparation or in flight.
const TUN_RUNS: usize = 256;
/// Completions a wait asks for before it returns early: at load, one wake-up handles a batch.
const WAIT_BATCH: usize = crate::io::BATCH;
/// How long a wait holds out for `WAIT_BATCH` before returning with what it has (kernels with
/// IORING_FEAT_MIN_TIMEOUT, 6.12+). Bounds the latency batching adds.
const MIN_WAIT_USEC: u32 = 50;
/// The sender's address area in front of each received datagram (a sockaddr_in6, rounded up
/// so the payload is 16-byte aligned).
const NAME_LEN: usize = OUTER_OFFSET - RECVMSG_OUT_LEN;
/// `struct io_uring_recvmsg_out`: name, control and payload lengths, and flags (u32 each).
const RECVMSG_OUT_LEN: usize = 16;
const _: () = assert!(NAME_LEN >= size_of::<libc::sockaddr_in6>());

const GROUP_OUTER: u16 = 0;
const GROUP_TUN: u16 = 1;

const OP_RECV: u64 = 1;
const OP_READ: u64 = 2;
const OP_SEND: u64 = 3;
const OP_WRITE: u64 = 4;
const OP_WAKE: u64 = 5;
const OP_CANCEL: u64 = 6;
const OP_WRITEV: u64 = 7;
const OP_POLL: u64 = 8;
const OP_RECV_NAT_T: u64 = 9;

fn user_data(op: u64, generation: u8, buf: u32) -> u64 {
    (op << 56) | (u64::from(generation) << 48) | u64::from(buf)
}

fn decode(data: u64) -> (u64, u8, u32) {
    (data >> 56, (data >> 48) as u8, data as u32)
}

/// How the TUN is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TunReads {
    /// One multishot read stays armed.
    Multishot,
    /// The kernel refused multishot reads: `TUN_DEPTH` single reads stay armed.
    Single,
}

/// One worker's io_uring, sockets and buffer pool.
pub struct UringBackend {
    ring: IoUring,
    /// The ring runs task work only when this thread enters it, and flags when there is some.
    deferred: bool,
    min_wait: bool,
    outer: Arc<OwnedFd>,
    outer_generation: u8,
    retired_outers: Vec<Arc<OwnedFd>>,
    retired_armed: usize,
    /// This worker's socket on the NAT-T port (UDP-encapsulated ESP), if IKE runs; its
    /// receives share the outer buffer ring.
    nat_t: Option<Arc<OwnedFd>>,
    nat_t_armed: bool,
    inner: Arc<OwnedFd>,
    waker: Arc<Waker>,
    wake_buf: Box<u64>,
    recv_template: Box<libc::msghdr>,
    outer_ring: BufRing,
    /// Outer receives land in `gro_bufs` and are split into pool buffers (UDP_GRO is on);
    /// otherwise each datagram lands in a pool buffer of its own.
    gro: bool,
    gro_bufs: LargeBuffers,
    /// TUN packets carry a vnet header and may be super-packets: reads land in `tso_bufs`.
    tun_vnet: bool,
    tso_bufs: LargeBuffers,
    offload_stats: OffloadStats,
    tun_ring: BufRing,
    tun_reads: TunReads,
    bufs: Frames,
    sends: SendBatches,
    tun_runs: TunRuns,
    free: Vec<u32>,
    outer_armed: bool,
    inner_armed: usize,
    wake_armed: bool,
    inner_closed: bool,
    in_flight: usize,
    send_failures: u64,
    cqes: Vec<cqueue::Entry>,
    /// Descriptors whose readiness ends a wait (AF_XDP sockets), and whether a multishot poll
    /// is armed on each; `None` once unwatched (slots are not reused, so a late completion of
    /// a cancelled poll cannot touch another descriptor's).
    watched: Vec<Option<(RawFd, bool)>>,
}

impl UringBackend {
    /// A backend over an outer UDP socket, a TUN queue (`inner_vnet`: opened with
    /// IFF_VNET_HDR) and this worker's waker, with `POOL_SIZE` buffers.
    pub fn new(
        outer: Arc<OwnedFd>,
        inner: Arc<OwnedFd>,
        inner_vnet: bool,
        waker: Arc<Waker>,
    ) -> io::Result<Self> {
        Self::with_pool(outer, inner, inner_vnet, waker, POOL_SIZE, true)
    }

    /// `new` with `pool` buffers (at least `POOL_SIZE`, at most 65,535: ids are 16 bits), and
    /// coalesced outer receives (UDP_GRO) only if `gro`. With AF_XDP beside it GRO stays off:
    /// in generic XDP mode the kernel would coalesce datagrams for xgate's port before the XDP
    /// program sees them, into frames too large for an AF_XDP frame.
    pub fn with_pool(
        outer: Arc<OwnedFd>,
        inner: Arc<OwnedFd>,
        inner_vnet: bool,
        waker: Arc<Waker>,
        pool: usize,
        gro: bool,
    ) -> io::Result<Self> {
        let pool = pool.clamp(POOL_SIZE, u16::MAX as usize);
        // Deferred task work: completions are processed only when this thread enters the
        // ring, not in interrupts of its work; the TASKRUN flag tells it when there is some, so
        // even a submission that does not wait posts them. Falls back for kernels before 6.1.
        let (ring, deferred) = match IoUring::builder()
            .setup_cqsize((pool * 2) as u32)
            .setup_clamp()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .build(1024)
        {
            Ok(ring) => (ring, true),
            Err(e) => {
                tracing::warn!("io_uring without deferred task work ({e}): needs Linux 6.1");
                let ring = IoUring::builder()
                    .setup_cqsize((pool * 2) as u32)
                    .setup_clamp()
                    .setup_single_issuer()
                    .build(1024)?;
                (ring, false)
            }
        };
        let min_wait = ring.params().is_feature_min_timeout();
        // Coalesced receives where the kernel allows them: one completion per run of datagrams.
        let gro = gro && enable_gro(outer.as_raw_fd());
        let entries = if gro { GRO_BUFS } else { OUTER_RING };
        let mut outer_ring = BufRing::register(&ring.submitter(), entries, GROUP_OUTER)
            .map_err(|e| annotate(e, "registering the outer buffer ring (needs Linux 5.19+)"))?;
        let mut gro_bufs = LargeBuffers::new(if gro { GRO_BUFS } else { 0 }, GRO_BUF_SIZE);
        gro_bufs.lend_all(&mut outer_ring);
        let entries = if inner_vnet { TSO_BUFS } else { TUN_RING };
        let mut tun_ring = BufRing::register(&ring.submitter(), entries, GROUP_TUN)
            .map_err(|e| annotate(e, "registering the TUN buffer ring (needs Linux 5.19+)"))?;
        let mut tso_bufs = LargeBuffers::new(if inner_vnet { TSO_BUFS } else { 0 }, TSO_BUF_SIZE);
        tso_bufs.lend_all(&mut tun_ring);
        // SAFETY: all-zero is a valid (empty) msghdr. Only the name and control lengths of the template matter: they
        // fix where in each buffer the kernel puts the address and the payload.
        let mut recv_template: Box<libc::msghdr> = Box::new(unsafe { zeroed() });
        recv_template.msg_namelen = NAME_LEN as libc::socklen_t;
        if gro {
            recv_template.msg_controllen = CONTROL_LEN;
        }
        Ok(Self {
            ring,
            deferred,
            min_wait,
            outer,
            outer_generation: 0,
            retired_outers: Vec::new(),
            retired_armed: 0,
            nat_t: None,
            nat_t_armed: false,
            inner,
            waker,
            wake_buf: Box::new(0),
            recv_template,
            outer_ring,
            gro,
            gro_bufs,
            tun_vnet: inner_vnet,
            tso_bufs,
            offload_stats: OffloadStats::default(),
            tun_ring,
            tun_reads: TunReads::Multishot,
            bufs: Frames::new(pool)?,
            sends: SendBatches::new(SEND_BATCHES),
            tun_runs: TunRuns::new(if inner_vnet { TUN_RUNS } else { 0 }),
            free: (0..pool as u32).rev().collect(),
            outer_armed: false,
            inner_armed: 0,
            wake_armed: false,
            inner_closed: false,
            in_flight: 0,
            send_failures: 0,
            cqes: Vec::with_capacity(pool * 2),
            watched: Vec::new(),
        })
    }

    /// The ring runs completions' task work only when this worker enters it (Linux 6.1+),
    /// as the batching assumes.
    pub fn defers_task_work(&self) -> bool {
        self.deferred
    }

    /// The buffers' memory (an AF_XDP socket registers it as its UMEM).
    pub fn frames(&self) -> &Frames {
        &self.bufs
    }

    /// Runs the kernel's async helper threads for this ring on `cpu` only, so a worker pinned
    /// to one core keeps its work there.
    pub fn pin_async_workers(&self, cpu: usize) -> io::Result<()> {
        // SAFETY: all-zero is an empty cpu_set_t; CPU_SET stays inside it for cpu < 1024.
        let mut set: libc::cpu_set_t = unsafe { zeroed() };
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::other(format!("CPU {cpu} is out of range")));
        }
        // SAFETY: `cpu` was checked against CPU_SETSIZE above.
        unsafe { libc::CPU_SET(cpu, &mut set) };
        self.ring.submitter().register_iowq_aff(&set)
    }

    /// Queues an operation; false if the kernel's queue stayed full (a send's or write's
    /// buffers are back on the free list and counted as failed).
    fn push(&mut self, entry: squeue::Entry) -> bool {
        // SAFETY: the entry's pointers refer to `bufs`, `slots`, `recv_template` or `wake_buf`,
        // which outlive the operation (see the module comment).
        unsafe {
            if self.ring.submission().push(&entry).is_err() {
                // Submission queue full: hand what is queued to the kernel and retry.
                let _ = self.ring.submit();
                if self.ring.submission().push(&entry).is_err() {
                    // Still full (the kernel is backed up): give up on this one operation.
                    let (op, _, buf) = decode(entry.get_user_data());
                    match op {
                        OP_WRITE => {
                            self.free.push(buf);
                            self.send_failures += 1;
                        }
                        OP_SEND => self.finish_send(buf, true),
                        OP_WRITEV => self.finish_run(buf, true),
                        _ => {}
                    }
                    return false;
                }
            }
        }
        self.in_flight += 1;
        true
    }

    /// Lends free buffers to both rings until they are full (or the pool runs low).
    fn refill(&mut self) {
        // Coalesced receives use their own buffers, re-lent as soon as they are split.
        let mut outer = if self.gro { 0 } else { self.outer_ring.room() };
        let mut tun = self.tun_ring.room();
        if self.inner_closed || self.tun_vnet {
            tun = 0;
        }
        while outer + tun > 0 {
            let Some(buf) = self.free.pop() else { break };
            let base = self.bufs[buf as usize].as_mut_ptr();
            // Alternate so a short pool is shared between the two directions.
            if outer > 0 && (tun == 0 || outer >= tun) {
                self.outer_ring.push(base, BUF_SIZE as u32, buf as u16);
                outer -= 1;
            } else {
                // SAFETY: INNER_OFFSET is inside the buffer.
                let at = unsafe { base.add(INNER_OFFSET) };
                self.tun_ring
                    .push(at, (BUF_SIZE - INNER_OFFSET) as u32, buf as u16);
                tun -= 1;
            }
        }
        self.outer_ring.publish();
        self.tun_ring.publish();
    }

    fn arm_outer(&mut self) {
        let fd = Fd(self.outer.as_raw_fd());
        let template: *const libc::msghdr = &*self.recv_template;
        let entry = opcode::RecvMsgMulti::new(fd, template, self.outer_ring.group())
            .build()
            .user_data(user_data(OP_RECV, self.outer_generation, 0));
        self.outer_armed = self.push(entry);
    }

    fn arm_nat_t(&mut self) {
        let Some(socket) = &self.nat_t else { return };
        let fd = Fd(socket.as_raw_fd());
        let template: *const libc::msghdr = &*self.recv_template;
        let entry = opcode::RecvMsgMulti::new(fd, template, self.outer_ring.group())
            .build()
            .user_data(user_data(OP_RECV_NAT_T, 0, 0));
        self.nat_t_armed = self.push(entry);
    }

    fn arm_inner(&mut self) {
        let fd = Fd(self.inner.as_raw_fd());
        let group = self.tun_ring.group();
        let entry = match self.tun_reads {
            TunReads::Multishot => opcode::ReadMulti::new(fd, 0, group).build(),
            TunReads::Single => opcode::Read::new(fd, std::ptr::null_mut(), 0)
                .buf_group(group)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT),
        };
        if self.push(entry.user_data(user_data(OP_READ, 0, 0))) {
            self.inner_armed += 1;
        }
    }

    fn arm_wake(&mut self) {
        let ptr: *mut u64 = &mut *self.wake_buf;
        let entry = opcode::Read::new(Fd(self.waker.as_raw_fd()), ptr.cast(), 8)
            .build()
            .user_data(user_data(OP_WAKE, 0, 0));
        self.wake_armed = self.push(entry);
    }

    fn rearm(&mut self) {
        self.refill();
        if !self.wake_armed {
            self.arm_wake();
        }
        if !self.outer_armed {
            self.arm_outer();
        }
        if !self.nat_t_armed {
            self.arm_nat_t();
        }
        self.arm_watched();
        let depth = match self.tun_reads {
            TunReads::Multishot => 1,
            TunReads::Single => TUN_DEPTH,
        };
        while !self.inner_closed && self.inner_armed < depth {
            let before = self.inner_armed;
            self.arm_inner();
            if self.inner_armed == before {
                break;
            }
        }
    }

    /// Cancels every operation and waits (up to `limit`) for the kernel to let go of them.
    fn drain(&mut self, limit: Duration) -> bool {
        self.submit_open_batch();
        self.submit_open_run();
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(user_data(OP_CANCEL, 0, 0));
        let _ = self.push(cancel);
        let until = Instant::now() + limit;
        let mut sink = Vec::new();
        while self.in_flight > 0 && Instant::now() < until {
            let ts = Timespec::new().nsec(50_000_000);
            let _ = self
                .ring
                .submitter()
                .submit_with_args(1, &SubmitArgs::new().timespec(&ts));
            self.inner_closed = true;
            self.reap(&mut sink);
            sink.clear();
        }
        self.in_flight == 0
    }
}

#[cfg(test)]
mod tests;

/// Adds what xgate was doing to an OS error, keeping its kind.
fn annotate(e: io::Error, doing: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{doing}: {e}"))
}

impl Backend for UringBackend {
    fn poll(&mut self, out: &mut Vec<Rx>, deadline: Instant) -> io::Result<()> {
        self.poll_lingering(out, deadline, Duration::ZERO)
    }

    fn poll_lingering(
        &mut self,
        out: &mut Vec<Rx>,
        deadline: Instant,
        linger: Duration,
    ) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.wait_lingering(out, left, linger)
    }

    fn buf(&mut self, buf: BufId) -> &mut [u8; BUF_SIZE] {
        &mut self.bufs[buf.0 as usize]
    }

    fn alloc(&mut self) -> Option<BufId> {
        self.free.pop().map(BufId)
    }

    fn free(&mut self, buf: BufId) {
        self.free.push(buf.0);
    }

    fn send_outer(
        &mut self,
        buf: BufId,
        range: Range<usize>,
        to: SocketAddr,
        _link: Option<super::LinkPath>,
    ) {
        self.send_one(buf, range, to, true, false);
    }

    fn send_esp(
        &mut self,
        buf: BufId,
        range: Range<usize>,
        (to, encap, _link): (SocketAddr, EspEncap, Option<super::LinkPath>),
    ) {
        // Raw ESP is never negotiated over this backend (the responder then always asks for
        // UDP): one would have no socket to leave by.
        if self.nat_t.is_none() || encap == EspEncap::Raw {
            self.free.push(buf.0);
            self.send_failures += 1;
            return;
        }
        self.send_one(buf, range, to, true, true);
    }

    fn send_inner(&mut self, buf: BufId, range: Range<usize>) -> InnerWay {
        self.write_inner(buf, range);
        InnerWay::Tun
    }

    fn replace_outer(&mut self, socket: Arc<OwnedFd>) {
        // What was sent before the switch leaves by the socket it was meant for.
        self.submit_open_batch();
        if self.gro && !enable_gro(socket.as_raw_fd()) {
            // Still correct: each datagram arrives alone in a coalescing buffer.
            tracing::debug!("UDP_GRO refused on the new outer socket");
        }
        // Issued now, while the old socket is certainly open (it may close below).
        let _ = self.ring.submit();
        let old = std::mem::replace(&mut self.outer, socket);
        let old_fd: RawFd = old.as_raw_fd();
        if self.outer_armed {
            self.retired_armed += 1;
        }
        self.outer_armed = false;
        self.outer_generation = self.outer_generation.wrapping_add(1);
        if self.retired_armed > 0 {
            self.retired_outers.push(old);
        }
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(old_fd)).all())
            .build()
            .user_data(user_data(OP_CANCEL, 0, 0));
        let _ = self.push(cancel);
        let _ = self.ring.submit();
    }

    fn attach_nat_t(&mut self, socket: Arc<OwnedFd>) {
        if self.nat_t.is_some() {
            // The responder starts once per daemon; a second socket would need the first's
            // receive cancelled, which nothing asks for.
            tracing::warn!("a second NAT-T socket offered to a worker; keeping the first");
            return;
        }
        if self.gro && !enable_gro(socket.as_raw_fd()) {
            // Still correct: each datagram arrives alone in a coalescing buffer.
            tracing::debug!("UDP_GRO refused on the NAT-T socket");
        }
        // Armed before the next wait.
        self.nat_t = Some(socket);
    }

    fn take_send_failures(&mut self) -> u64 {
        std::mem::take(&mut self.send_failures)
    }

    fn take_offload_stats(&mut self) -> OffloadStats {
        std::mem::take(&mut self.offload_stats)
    }
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        if !self.drain(Duration::from_secs(2)) {
            // The kernel still holds pointers into our buffers: leaking them is the only safe
            // choice. This happens only if operations refuse to cancel for two seconds.
            let bufs = std::mem::replace(&mut self.bufs, Frames::empty());
            let sends = std::mem::replace(&mut self.sends, SendBatches::new(0));
            let gro_bufs = std::mem::replace(&mut self.gro_bufs, LargeBuffers::new(0, 1));
            let tso_bufs = std::mem::replace(&mut self.tso_bufs, LargeBuffers::new(0, 1));
            let runs = std::mem::replace(&mut self.tun_runs, TunRuns::new(0));
            let wake = std::mem::replace(&mut self.wake_buf, Box::new(0));
            // SAFETY: all-zero is a valid msghdr.
            let template =
                std::mem::replace(&mut self.recv_template, Box::new(unsafe { zeroed() }));
            std::mem::forget((bufs, sends, runs, gro_bufs, tso_bufs, wake, template));
            tracing::warn!("io_uring operations did not drain; leaked their buffers");
        }
    }
}
