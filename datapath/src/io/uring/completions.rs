//! Completions: what the kernel finished since the last wait, turned into what the worker
//! sees. Outer datagrams (from the multishot receive, cut up if UDP_GRO coalesced them), TUN
//! packets (cut up if they are offload super-packets), sends and writes done (their buffers
//! return to the pool), and the re-arming of receives the kernel ended.

use std::mem::{size_of, zeroed};
use std::net::SocketAddr;

use io_uring::cqueue;
use io_uring::types::RecvMsgOut;

use super::{
    decode, TunReads, UringBackend, OP_POLL, OP_READ, OP_RECV, OP_RECV_NAT_T, OP_SEND, OP_WAKE,
    OP_WRITE, OP_WRITEV,
};
use crate::io::{BufId, Rx, Via, BUF_SIZE, OUTER_OFFSET};
use crate::kernel::udp::sockaddr_from;

impl UringBackend {
    /// A completion of the outer multishot receive, on the WireGuard port or (`nat_t`) the
    /// NAT-T port.
    pub(super) fn on_recv(
        &mut self,
        res: i32,
        flags: u32,
        (generation, nat_t): (u8, bool),
        out: &mut Vec<Rx>,
    ) {
        let more = cqueue::more(flags);
        let buf = cqueue::buffer_select(flags);
        if buf.is_some() {
            self.outer_ring.taken();
        }
        if nat_t {
            if !more {
                self.nat_t_armed = false;
            }
        } else if generation != self.outer_generation {
            // A receive on a socket since replaced: let its buffer go.
            if let Some(b) = buf {
                self.recycle_outer(b);
            }
            if !more {
                self.retired_armed = self.retired_armed.saturating_sub(1);
                if self.retired_armed == 0 {
                    self.retired_outers.clear();
                }
            }
            return;
        }
        if !more && !nat_t {
            // Ended (out of buffers, cancelled or an error): re-armed before the next wait.
            self.outer_armed = false;
        }
        let Some(b) = buf else { return };
        if res < 0 {
            self.recycle_outer(b);
            return;
        }
        if self.gro {
            self.split_coalesced(b, res as usize, nat_t, out);
            self.recycle_outer(b);
            return;
        }
        let b = u32::from(b);
        if b as usize >= self.bufs.len() {
            return;
        }
        let data = &self.bufs[b as usize][..(res as usize).min(BUF_SIZE)];
        let Ok(msg) = RecvMsgOut::parse(data, &self.recv_template) else {
            self.free.push(b);
            return;
        };
        let len = msg.payload_data().len();
        let truncated = msg.is_payload_truncated();
        match sender(&msg) {
            Some(from) => out.push(Rx::Outer {
                buf: BufId(b),
                at: OUTER_OFFSET,
                len,
                from,
                link: None,
                truncated,
                via: Via::of_port(nat_t),
            }),
            None => self.free.push(b),
        }
    }

    /// A completion of a TUN read (multishot or single).
    pub(super) fn on_read(&mut self, res: i32, flags: u32, out: &mut Vec<Rx>) {
        let buf = cqueue::buffer_select(flags);
        if buf.is_some() {
            self.tun_ring.taken();
        }
        if !cqueue::more(flags) {
            self.inner_armed = self.inner_armed.saturating_sub(1);
        }
        if let Some(b) = buf {
            if res > 0 && self.tun_vnet {
                self.split_super_packet(b, res as usize, out);
                self.recycle_tun(b);
                return;
            }
            if res > 0 && usize::from(b) < self.bufs.len() {
                out.push(Rx::Inner {
                    buf: BufId(u32::from(b)),
                    len: res as usize,
                });
                return;
            }
            self.recycle_tun(b);
        }
        if res > 0 {
            return;
        }
        match -res {
            // Multishot reads not supported here: fall back to single reads for good.
            libc::EINVAL | libc::EOPNOTSUPP if self.tun_reads == TunReads::Multishot => {
                tracing::debug!("multishot TUN reads unsupported; using single reads");
                self.tun_reads = TunReads::Single;
            }
            // Transient: re-armed before the next wait.
            libc::EINTR | libc::EAGAIN | libc::ECANCELED | libc::ENOBUFS => {}
            // EOF or EBADFD: the interface was deleted.
            _ => {
                if !self.inner_closed {
                    self.inner_closed = true;
                    out.push(Rx::InnerClosed);
                }
            }
        }
    }

    pub(super) fn reap(&mut self, out: &mut Vec<Rx>) {
        // Copied out first: handling a completion needs the backend, the queue borrows it.
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.extend(&mut self.ring.completion());
        for cqe in cqes.drain(..) {
            if !cqueue::more(cqe.flags()) {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            let (op, generation, buf) = decode(cqe.user_data());
            let res = cqe.result();
            match op {
                OP_RECV => self.on_recv(res, cqe.flags(), (generation, false), out),
                OP_RECV_NAT_T => self.on_recv(res, cqe.flags(), (generation, true), out),
                OP_READ => self.on_read(res, cqe.flags(), out),
                OP_SEND => self.on_send(buf, res),
                OP_WRITEV => self.finish_run(buf, res < 0),
                OP_WRITE => {
                    if res < 0 {
                        self.send_failures += 1;
                    }
                    self.free.push(buf);
                }
                OP_WAKE => {
                    self.wake_armed = false;
                    out.push(Rx::Wake);
                }
                // Only ends the wait (the owner of the descriptor looks at it); a poll that
                // ended is re-armed before the next wait.
                OP_POLL if !cqueue::more(cqe.flags()) => {
                    if let Some(Some(w)) = self.watched.get_mut(buf as usize) {
                        w.1 = false;
                    }
                }
                _ => {}
            }
        }
        self.cqes = cqes;
    }
}

/// The sender of a received datagram.
pub(super) fn sender(msg: &RecvMsgOut<'_>) -> Option<SocketAddr> {
    // SAFETY: all-zero is a valid sockaddr_storage; at most its size is copied in.
    let mut addr: libc::sockaddr_storage = unsafe { zeroed() };
    let name = msg.name_data();
    let n = name.len().min(size_of::<libc::sockaddr_storage>());
    // SAFETY: `addr` has room for `n` bytes and does not overlap the message.
    unsafe {
        std::ptr::copy_nonoverlapping(
            name.as_ptr(),
            (&mut addr as *mut libc::sockaddr_storage).cast::<u8>(),
            n,
        );
    }
    sockaddr_from(&addr)
}
