//! The io_uring backend: receives on the outer UDP socket and the TUN queue, sends and writes
//! from pool buffers, and sleeps in one `io_uring_enter` per batch.
//!
//! Receives stay armed (`RECV_DEPTH` datagrams, `TUN_DEPTH` TUN reads), each into its own pool
//! buffer. Completions are reaped in batches; sends and writes queued while processing a batch
//! are submitted together with the next wait, so a batch costs one system call.
//!
//! Safety: every pointer handed to the kernel (buffer, iovec, msghdr, sockaddr) points into
//! boxed slices that live as long as the backend and never move. A buffer is not reused while
//! an operation on it is in flight (it is off the free list), and dropping the backend cancels
//! and drains all operations before the memory is released.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{opcode, squeue, IoUring};

use super::{Backend, BufId, Rx, BUF_SIZE, INNER_OFFSET};
use crate::udp::{sockaddr_from, sockaddr_to};
use crate::waker::Waker;

/// Datagram receives kept armed on the outer socket.
const RECV_DEPTH: usize = 64;
/// Reads kept armed on the TUN queue.
const TUN_DEPTH: usize = 64;
/// Packet buffers per worker.
pub const POOL_SIZE: usize = 2048;
/// Completions a wait asks for before it returns early: at load, one wake-up handles a batch.
/// Well below the receives kept armed, or every wait would run out its minimum (measured: with
/// 8 armed, decrypt throughput fell tenfold).
const WAIT_BATCH: usize = 32;
const _: () = assert!(WAIT_BATCH * 2 <= RECV_DEPTH + TUN_DEPTH);
/// How long a wait holds out for `WAIT_BATCH` before returning with what it has (kernels with
/// IORING_FEAT_MIN_TIMEOUT, 6.12+). Bounds the latency batching adds.
const MIN_WAIT_USEC: u32 = 50;

const OP_RECV: u64 = 1;
const OP_READ: u64 = 2;
const OP_SEND: u64 = 3;
const OP_WRITE: u64 = 4;
const OP_WAKE: u64 = 5;
const OP_CANCEL: u64 = 6;

fn user_data(op: u64, generation: u8, buf: u32) -> u64 {
    (op << 56) | (u64::from(generation) << 48) | u64::from(buf)
}

fn decode(data: u64) -> (u64, u8, u32) {
    (data >> 56, (data >> 48) as u8, data as u32)
}

/// Kernel-facing metadata of one buffer: where a recvmsg/sendmsg describes it.
struct Slot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
}

/// One worker's io_uring, sockets and buffer pool.
pub struct UringBackend {
    ring: IoUring,
    min_wait: bool,
    outer: Arc<OwnedFd>,
    outer_generation: u8,
    retired_outers: Vec<Arc<OwnedFd>>,
    retired_armed: usize,
    inner: Arc<OwnedFd>,
    waker: Arc<Waker>,
    wake_buf: Box<u64>,
    bufs: Box<[[u8; BUF_SIZE]]>,
    slots: Box<[Slot]>,
    free: Vec<u32>,
    outer_armed: usize,
    inner_armed: usize,
    wake_armed: bool,
    inner_closed: bool,
    in_flight: usize,
    send_failures: u64,
}

impl UringBackend {
    /// A backend over an outer UDP socket, a TUN queue and this worker's waker.
    pub fn new(outer: Arc<OwnedFd>, inner: Arc<OwnedFd>, waker: Arc<Waker>) -> io::Result<Self> {
        // Deferred task work: completions are processed only when this thread waits, not in
        // interrupts of its work; falls back for kernels before 6.1.
        let ring = IoUring::builder()
            .setup_cqsize((POOL_SIZE * 2) as u32)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(1024)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize((POOL_SIZE * 2) as u32)
                    .setup_single_issuer()
                    .build(1024)
            })?;
        let min_wait = ring.params().is_feature_min_timeout();
        // SAFETY: msghdr, iovec and sockaddr_storage are plain C structs for which all-zero is
        // a valid (empty) value.
        let slots = (0..POOL_SIZE)
            .map(|_| unsafe {
                Slot {
                    hdr: zeroed(),
                    iov: zeroed(),
                    addr: zeroed(),
                }
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Ok(Self {
            ring,
            min_wait,
            outer,
            outer_generation: 0,
            retired_outers: Vec::new(),
            retired_armed: 0,
            inner,
            waker,
            wake_buf: Box::new(0),
            bufs: vec![[0u8; BUF_SIZE]; POOL_SIZE].into_boxed_slice(),
            slots,
            free: (0..POOL_SIZE as u32).rev().collect(),
            outer_armed: 0,
            inner_armed: 0,
            wake_armed: false,
            inner_closed: false,
            in_flight: 0,
            send_failures: 0,
        })
    }

    /// Queues an operation; false if the kernel's queue stayed full (the operation's buffer
    /// is back on the free list and, for a send, counted as failed).
    fn push(&mut self, entry: squeue::Entry) -> bool {
        // SAFETY: the entry's pointers refer to `bufs`, `slots` or `wake_buf`, which outlive
        // the operation (see the module comment).
        unsafe {
            if self.ring.submission().push(&entry).is_err() {
                // Submission queue full: hand what is queued to the kernel and retry.
                let _ = self.ring.submit();
                if self.ring.submission().push(&entry).is_err() {
                    // Still full (the kernel is backed up): give up on this one operation.
                    let (op, _, buf) = decode(entry.get_user_data());
                    if matches!(op, OP_RECV | OP_READ | OP_SEND | OP_WRITE) {
                        self.free.push(buf);
                    }
                    if matches!(op, OP_SEND | OP_WRITE) {
                        self.send_failures += 1;
                    }
                    return false;
                }
            }
        }
        self.in_flight += 1;
        true
    }

    fn prepare_msghdr(
        &mut self,
        buf: u32,
        range: Range<usize>,
        to: Option<SocketAddr>,
    ) -> *mut libc::msghdr {
        let b = buf as usize;
        let base = self.bufs[b][range.start..].as_mut_ptr();
        let slot = &mut self.slots[b];
        slot.iov = libc::iovec {
            iov_base: base.cast(),
            iov_len: range.len(),
        };
        // SAFETY: all-zero is a valid msghdr.
        slot.hdr = unsafe { zeroed() };
        slot.hdr.msg_name = (&mut slot.addr as *mut libc::sockaddr_storage).cast();
        slot.hdr.msg_namelen = match to {
            Some(addr) => sockaddr_to(addr, &mut slot.addr),
            None => size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        };
        slot.hdr.msg_iov = &mut slot.iov;
        slot.hdr.msg_iovlen = 1;
        &mut slot.hdr
    }

    fn arm_outer(&mut self) -> bool {
        let Some(buf) = self.free.pop() else {
            return false;
        };
        let hdr = self.prepare_msghdr(buf, 0..BUF_SIZE, None);
        let fd = Fd(self.outer.as_raw_fd());
        let entry = opcode::RecvMsg::new(fd, hdr).build().user_data(user_data(
            OP_RECV,
            self.outer_generation,
            buf,
        ));
        let queued = self.push(entry);
        if queued {
            self.outer_armed += 1;
        }
        queued
    }

    fn arm_inner(&mut self) -> bool {
        let Some(buf) = self.free.pop() else {
            return false;
        };
        let ptr = self.bufs[buf as usize][INNER_OFFSET..].as_mut_ptr();
        let entry = opcode::Read::new(
            Fd(self.inner.as_raw_fd()),
            ptr,
            (BUF_SIZE - INNER_OFFSET) as u32,
        )
        .build()
        .user_data(user_data(OP_READ, 0, buf));
        let queued = self.push(entry);
        if queued {
            self.inner_armed += 1;
        }
        queued
    }

    fn arm_wake(&mut self) {
        let ptr: *mut u64 = &mut *self.wake_buf;
        let entry = opcode::Read::new(Fd(self.waker.as_raw_fd()), ptr.cast(), 8)
            .build()
            .user_data(user_data(OP_WAKE, 0, 0));
        self.wake_armed = self.push(entry);
    }

    fn rearm(&mut self) {
        if !self.wake_armed {
            self.arm_wake();
        }
        while self.outer_armed < RECV_DEPTH && self.arm_outer() {}
        while !self.inner_closed && self.inner_armed < TUN_DEPTH && self.arm_inner() {}
    }

    fn reap(&mut self, out: &mut Vec<Rx>) {
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            self.in_flight = self.in_flight.saturating_sub(1);
            let (op, generation, buf) = decode(cqe.user_data());
            let res = cqe.result();
            match op {
                OP_RECV => {
                    if generation != self.outer_generation {
                        self.retired_armed = self.retired_armed.saturating_sub(1);
                        if self.retired_armed == 0 {
                            self.retired_outers.clear();
                        }
                        self.free.push(buf);
                        continue;
                    }
                    self.outer_armed -= 1;
                    if res < 0 {
                        self.free.push(buf);
                        continue;
                    }
                    let slot = &self.slots[buf as usize];
                    match sockaddr_from(&slot.addr) {
                        Some(from) => out.push(Rx::Outer {
                            buf: BufId(buf),
                            len: res as usize,
                            from,
                            truncated: slot.hdr.msg_flags & libc::MSG_TRUNC != 0,
                        }),
                        None => self.free.push(buf),
                    }
                }
                OP_READ => {
                    self.inner_armed -= 1;
                    if res > 0 {
                        out.push(Rx::Inner {
                            buf: BufId(buf),
                            len: res as usize,
                        });
                    } else {
                        self.free.push(buf);
                        // EOF or EBADFD: the interface was deleted. EINTR/EAGAIN just re-arm.
                        let transient =
                            matches!(-res, libc::EINTR | libc::EAGAIN | libc::ECANCELED);
                        if (res == 0 || !transient) && !self.inner_closed {
                            self.inner_closed = true;
                            out.push(Rx::InnerClosed);
                        }
                    }
                }
                OP_SEND | OP_WRITE => {
                    if res < 0 {
                        self.send_failures += 1;
                    }
                    self.free.push(buf);
                }
                OP_WAKE => {
                    self.wake_armed = false;
                    out.push(Rx::Wake);
                }
                _ => {}
            }
        }
    }

    /// Cancels every operation and waits (up to `limit`) for the kernel to let go of them.
    fn drain(&mut self, limit: Duration) -> bool {
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

impl Backend for UringBackend {
    fn poll(&mut self, out: &mut Vec<Rx>, deadline: Instant) -> io::Result<()> {
        self.rearm();
        let wait = if self.ring.completion().is_empty() {
            deadline.saturating_duration_since(Instant::now())
        } else {
            Duration::ZERO
        };
        let ts = Timespec::new()
            .sec(wait.as_secs())
            .nsec(wait.subsec_nanos());
        let (want, min_wait) = match (wait.is_zero(), self.min_wait) {
            (true, _) => (0, 0),
            (false, true) => (WAIT_BATCH, MIN_WAIT_USEC),
            (false, false) => (1, 0),
        };
        let args = SubmitArgs::new().min_wait_usec(min_wait).timespec(&ts);
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        self.reap(out);
        Ok(())
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

    fn send_outer(&mut self, buf: BufId, range: Range<usize>, to: SocketAddr) {
        let hdr = self.prepare_msghdr(buf.0, range, Some(to));
        let fd = Fd(self.outer.as_raw_fd());
        let entry = opcode::SendMsg::new(fd, hdr).build().user_data(user_data(
            OP_SEND,
            self.outer_generation,
            buf.0,
        ));
        let _ = self.push(entry);
    }

    fn send_inner(&mut self, buf: BufId, range: Range<usize>) {
        let ptr = self.bufs[buf.0 as usize][range.start..].as_ptr();
        let entry = opcode::Write::new(Fd(self.inner.as_raw_fd()), ptr, range.len() as u32)
            .build()
            .user_data(user_data(OP_WRITE, 0, buf.0));
        let _ = self.push(entry);
    }

    fn replace_outer(&mut self, socket: Arc<OwnedFd>) {
        let old = std::mem::replace(&mut self.outer, socket);
        let old_fd: RawFd = old.as_raw_fd();
        self.retired_armed += self.outer_armed;
        self.outer_armed = 0;
        self.outer_generation = self.outer_generation.wrapping_add(1);
        if self.retired_armed > 0 {
            self.retired_outers.push(old);
        }
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(old_fd)).all())
            .build()
            .user_data(user_data(OP_CANCEL, 0, 0));
        let _ = self.push(cancel);
    }

    fn take_send_failures(&mut self) -> u64 {
        std::mem::take(&mut self.send_failures)
    }
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        if !self.drain(Duration::from_secs(2)) {
            // The kernel still holds pointers into our buffers: leaking them is the only safe
            // choice. This happens only if operations refuse to cancel for two seconds.
            let bufs = std::mem::take(&mut self.bufs);
            let slots = std::mem::take(&mut self.slots);
            let wake = std::mem::replace(&mut self.wake_buf, Box::new(0));
            std::mem::forget((bufs, slots, wake));
            tracing::warn!("io_uring operations did not drain; leaked their buffers");
        }
    }
}
