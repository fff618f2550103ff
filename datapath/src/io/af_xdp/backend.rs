//! The AF_XDP backend: outer datagrams through AF_XDP sockets, everything else through the
//! io_uring backend it wraps (the TUN, the waker, and the kernel's UDP socket, which still
//! gets what the steering program leaves to the kernel and sends where no link path is
//! known). Both share one pool of frames, registered as the sockets' UMEM, so a buffer id
//! means the same frame whichever way a packet came in or goes out.
//!
//! Per batch: sent frames come back from the completion rings, received frames are read from
//! the rx rings (their headers parsed in place), frames go back to the fill rings, and frames
//! to send are written to the tx rings and published with one wake-up per socket (copy mode
//! sends only when woken). The wait itself is io_uring's, which also polls the sockets.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::frame::{self, Mac};
use super::lan_io::take_lan_frame;
use super::neighbours::Neighbours;
use super::socket::{RingSizes, XskSocket};
use super::steering::{Role, SteeredInterface, Steering, SteeringError};
use super::umem;
use crate::io::uring::UringBackend;
use crate::io::{Backend, BufId, EspEncap, InnerWay, LinkPath, OffloadStats, Rx, Via, BUF_SIZE};
use crate::kernel::raw_esp::RawEspSockets;

/// Ring sizes of each socket.
pub const RING_SIZES: RingSizes = RingSizes {
    fill: 1024,
    completion: 1024,
    rx: 1024,
    tx: 1024,
};
/// Frames a worker needs beyond the io_uring backend's own, per socket: a full fill ring and
/// a full tx ring.
pub const FRAMES_PER_SOCKET: usize = (RING_SIZES.fill + RING_SIZES.tx) as usize;
/// The largest inner MTU whose datagrams fit a received frame: the kernel keeps 256 bytes of
/// headroom in each 2,048-byte frame, and the frame carries Ethernet (with up to two VLAN
/// tags), IPv6 and UDP headers, then the tunnel's overhead at its largest: ESP with AES-CBC
/// (SPI, sequence number and IV: 24 bytes; up to 15 of padding, the trailer and a 32-byte
/// ICV after), more than WireGuard's (16-byte header, up to 15 of padding, 16-byte tag).
pub const MAX_MTU: usize = BUF_SIZE
    - 256
    - super::frame::MAX_HEADERS
    - 8
    - ike::esp::ESP_HEADROOM
    - ike::esp::ESP_TAILROOM;
const _: () = assert!(
    proto::constants::TRANSPORT_HEADER_LEN + 15 + proto::constants::TAG_LEN
        <= ike::esp::ESP_HEADROOM + ike::esp::ESP_TAILROOM
);

/// Wake-ups per socket and batch at most: copy mode sends 32 frames per wake-up, so this
/// covers a full tx ring; what is left waits for the next batch, which then does not sleep.
const MAX_KICKS: u32 = RING_SIZES.tx / 32 + 1;

/// Received frames taken from one socket per batch.
const RX_BATCH: u32 = 256;
/// How many frames ahead of the parser the receive loop starts loading them (set by
/// measurement: a few frames' parsing covers a cross-core miss).
const PREFETCH_AHEAD: u32 = 8;

/// A frame no socket of this worker holds (free, or in the worker's hands).
pub(super) const NOBODY: u16 = u16::MAX;

/// One queue of one interface, served by this worker.
pub struct XdpQueue {
    /// The bound socket.
    pub socket: XskSocket,
    /// Our link address on its interface.
    pub mac: Mac,
    /// The interface (and its map) the socket serves.
    pub interface: Arc<SteeredInterface>,
    /// A LAN interface's queue (`inner = "af-xdp"`): IP packets for the VPN come in, decrypted
    /// ones go out.
    pub lan: bool,
    /// Names this queue in the frame owner table (not reused while a queue holding it, live or
    /// retiring, still exists).
    pub id: u16,
    /// Frames lent to the kernel for receiving and not yet back (in the fill ring, the
    /// driver's ring or the rx ring): capped at the fill ring's size, so a backlog in the rx
    /// ring does not drain the pool the TUN and the kernel socket also draw from.
    pub lent: u32,
    /// The last wake-up left frames in the tx ring that the kernel did not take (link down,
    /// device busy): do not spin on them, wait for the next batch.
    pub tx_stalled: bool,
}

impl XdpQueue {
    /// A queue served through `socket` on `interface`, known as `id` in the owner table.
    pub fn new(socket: XskSocket, interface: Arc<SteeredInterface>, id: u16) -> Self {
        Self {
            socket,
            mac: interface.mac,
            lan: interface.role == Role::Lan,
            interface,
            id,
            lent: 0,
            tx_stalled: false,
        }
    }
}

/// A worker's AF_XDP sockets over its io_uring backend.
pub struct XdpBackend {
    // Declared first: the sockets close before the io_uring backend unmaps the frames. (Its
    // multishot polls hold the sockets' files until its drain cancels them; the UMEM's pages
    // stay pinned by the kernel for as long as it needs them, so unmapping is safe either way.)
    pub(super) queues: Vec<XdpQueue>,
    /// Descriptors written to each tx ring and not yet published.
    pub(super) tx_pending: Vec<u32>,
    /// Queues taken out of service (their sockets closed): their ids, the interface (kept so
    /// its link outlives them) and when their frames may be reused.
    pub(super) retiring: Vec<(u16, Arc<SteeredInterface>, Instant)>,
    /// A bind that failed is tried again at this time.
    pub(super) retry_at: Option<Instant>,
    /// Frames all fill rings together may hold (the rest stays for the TUN and the kernel
    /// socket, and for sending).
    pub(super) fill_budget: u32,
    /// Which queue holds each frame (`NOBODY`: none): a retired queue's frames come back.
    pub(super) owner: Vec<u16>,
    pub(super) steering: Arc<Steering>,
    /// The steering generation the queues match.
    pub(super) seen: u64,
    pub(super) worker: usize,
    pub(super) workers: usize,
    pub(super) uring: UringBackend,
    /// The listen port: the source port of frames we build.
    port: u16,
    /// The NAT-T port, once IKE runs: ESP arriving there is UDP-encapsulated, and ESP in UDP
    /// is sent from it.
    nat_port: Option<u16>,
    /// The raw ESP sockets, taken from the steering the first time one is needed.
    pub(super) raw_sockets: Option<Arc<RawEspSockets>>,
    pub(super) stats: OffloadStats,
    /// Frames dropped because a tx ring stayed full.
    pub(super) send_failures: u64,
    /// Paths to peers no datagram has come from yet.
    pub(super) neighbours: Neighbours,
    /// Paths to LAN hosts and routers, through the LAN interfaces only.
    pub(super) lan_neighbours: Neighbours,
    /// The clock as of the last wait's end: what this batch's sends look paths up at (one
    /// reading per batch, not per packet).
    pub(super) now: Instant,
}

impl XdpBackend {
    /// Wraps `uring` for worker `worker` of `workers`: binds sockets (over `uring`'s frames)
    /// to the receive queues of `steering`'s interfaces that the worker owns; `port` is the
    /// listen port. On failure the io_uring backend comes back with the error.
    pub fn new(
        uring: UringBackend,
        steering: Arc<Steering>,
        worker: usize,
        workers: usize,
        port: u16,
    ) -> Result<Self, (Box<UringBackend>, SteeringError)> {
        let frames = uring.frames().len();
        let mut backend = Self {
            queues: Vec::new(),
            tx_pending: Vec::new(),
            retiring: Vec::new(),
            retry_at: None,
            fill_budget: (frames / 2) as u32,
            owner: vec![NOBODY; frames],
            seen: steering.generation(),
            steering,
            worker,
            workers,
            uring,
            port,
            nat_port: None,
            raw_sockets: None,
            stats: OffloadStats::default(),
            send_failures: 0,
            neighbours: Neighbours::default(),
            lan_neighbours: Neighbours::default(),
            now: Instant::now(),
        };
        let interfaces = backend.steering.interfaces();
        for (interface, queue) in Steering::owned_queues(&interfaces, worker, workers) {
            if let Err(e) = backend.add_queue(interface, queue, true) {
                // Sockets bound so far close before the frames go back.
                backend.queues.clear();
                return Err((Box::new(backend.into_uring()), e));
            }
        }
        backend.fill();
        Ok(backend)
    }

    fn into_uring(self) -> UringBackend {
        let Self {
            queues, mut uring, ..
        } = self;
        // Their polls go too: a poll on a closed descriptor would end every wait at once.
        for q in &queues {
            uring.unwatch(q.socket.fd());
        }
        drop(queues);
        uring
    }

    /// How this worker reaches the outer side, for logs and `xgate status`.
    pub fn summary(&self) -> String {
        let list = self
            .queues
            .iter()
            .map(|q| {
                let copy = if q.socket.zero_copy() {
                    "zero-copy"
                } else {
                    "copy"
                };
                let lan = if q.lan { " (LAN)" } else { "" };
                format!(
                    "{}{lan} queue {} {copy}",
                    q.interface.name,
                    q.socket.queue()
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        if list.is_empty() {
            "af-xdp (no queue of its own yet)".into()
        } else {
            format!("af-xdp ({list})")
        }
    }

    /// The sockets (mode, statistics).
    pub fn queues(&self) -> &[XdpQueue] {
        &self.queues
    }

    /// Lends free frames to every fill ring, up to its size.
    fn fill(&mut self) {
        let mut budget = self
            .fill_budget
            .saturating_sub(self.queues.iter().map(|q| q.lent).sum());
        for q in &mut self.queues {
            let fill = &mut q.socket.fill;
            let room = fill
                .free(RING_SIZES.fill)
                .min(RING_SIZES.fill.saturating_sub(q.lent))
                .min(budget);
            budget -= room;
            let mut n = 0;
            while n < room {
                let Some(buf) = self.uring.alloc() else { break };
                fill.write(n, umem::addr(buf.0));
                self.owner[buf.0 as usize] = q.id;
                n += 1;
            }
            if n > 0 {
                fill.publish(n);
                q.lent += n;
            }
            if fill.needs_wakeup() {
                q.socket.kick_rx();
            }
        }
    }

    /// Takes sent frames back from the completion rings.
    pub(super) fn complete(&mut self) {
        for q in &mut self.queues {
            let done = q.socket.completion.ready();
            for i in 0..done {
                let (frame, _) = umem::locate(q.socket.completion.read(i));
                if let Some(o) = self.owner.get_mut(frame as usize) {
                    *o = NOBODY;
                    self.uring.free(BufId(frame));
                }
            }
            q.socket.completion.release(done);
        }
    }

    /// Publishes what each tx ring holds and wakes the kernel to send it.
    pub(super) fn flush_tx(&mut self) {
        for (q, pending) in self.queues.iter_mut().zip(&mut self.tx_pending) {
            if *pending == 0 {
                continue;
            }
            q.socket.tx.publish(std::mem::take(pending));
        }
        for q in &mut self.queues {
            q.tx_stalled = false;
            if q.socket.zero_copy() {
                // The driver sends by itself; it asks for one wake-up when it wants one.
                if q.socket.tx.needs_wakeup() {
                    if let Err(e) = q.socket.kick_tx() {
                        tracing::debug!("AF_XDP send wake-up failed: {e}");
                    }
                }
                continue;
            }
            // Copy mode sends only inside a wake-up, 32 frames each.
            for _ in 0..MAX_KICKS {
                let before = q.socket.tx.outstanding();
                if before == 0 {
                    break;
                }
                if let Err(e) = q.socket.kick_tx() {
                    tracing::debug!("AF_XDP send wake-up failed: {e}");
                }
                if q.socket.tx.outstanding() >= before {
                    q.tx_stalled = true;
                    break;
                }
            }
        }
    }

    /// Reads received frames into `out`.
    fn receive(&mut self, out: &mut Vec<Rx>) {
        for q in &mut self.queues {
            let ready = q.socket.rx.ready().min(RX_BATCH);
            q.lent = q.lent.saturating_sub(ready);
            let frames = self.owner.len();
            for i in 0..ready.min(PREFETCH_AHEAD) {
                prefetch_rx(q, &mut self.uring, frames, i);
            }
            for i in 0..ready {
                if i + PREFETCH_AHEAD < ready {
                    prefetch_rx(q, &mut self.uring, frames, i + PREFETCH_AHEAD);
                }
                let desc = q.socket.rx.read(i);
                let (frame, offset) = umem::locate(desc.addr);
                let buf = BufId(frame);
                match self.owner.get_mut(frame as usize) {
                    Some(o) => *o = NOBODY,
                    // Not one of our frames: the kernel would not hand one out; skip it.
                    None => continue,
                }
                let end = offset + desc.len as usize;
                if end > BUF_SIZE {
                    self.stats.bad_frames += 1;
                    self.uring.free(buf);
                    continue;
                }
                if q.lan {
                    let taken = take_lan_frame(self.uring.buf(buf), offset..end);
                    match taken {
                        Some(len) => {
                            self.stats.lan_received += 1;
                            out.push(Rx::Lan { buf, len });
                        }
                        None => {
                            self.stats.bad_frames += 1;
                            self.uring.free(buf);
                        }
                    }
                    continue;
                }
                match frame::parse(&self.uring.buf(buf)[offset..end]) {
                    Ok(got) => {
                        // Our own address, not the frame's destination: that may have been a
                        // broadcast or multicast one.
                        let link = (!got.tagged).then_some(LinkPath {
                            ifindex: q.socket.ifindex(),
                            local: got.to.ip(),
                            local_mac: q.mac,
                            next_hop: got.src_mac,
                        });
                        self.stats.xdp_received += 1;
                        out.push(Rx::Outer {
                            buf,
                            at: offset + got.payload.start,
                            len: got.payload.len(),
                            from: got.from,
                            link,
                            truncated: false,
                            via: if got.raw_esp {
                                Via::Esp(EspEncap::Raw)
                            } else {
                                Via::of_port(self.nat_port == Some(got.to.port()))
                            },
                        });
                    }
                    Err(_) => {
                        self.stats.bad_frames += 1;
                        self.uring.free(buf);
                    }
                }
            }
            q.socket.rx.release(ready);
        }
    }
}

/// Starts loading received frame `i` of `q`, if it is one of ours: its head, and on an outer
/// queue its tail too (the ICV or tag; a LAN frame is plaintext).
fn prefetch_rx(q: &XdpQueue, uring: &mut UringBackend, frames: usize, i: u32) {
    let desc = q.socket.rx.read(i);
    let (frame, offset) = umem::locate(desc.addr);
    if (frame as usize) < frames {
        umem::prefetch(uring.buf(BufId(frame)), offset, desc.len as usize, !q.lan);
    }
}

impl Backend for XdpBackend {
    fn poll(&mut self, out: &mut Vec<Rx>, deadline: Instant) -> io::Result<()> {
        self.poll_lingering(out, deadline, Duration::ZERO)
    }

    fn poll_lingering(
        &mut self,
        out: &mut Vec<Rx>,
        deadline: Instant,
        linger: Duration,
    ) -> io::Result<()> {
        self.flush_tx();
        self.complete();
        if self.steering.generation() != self.seen
            || self.retry_at.is_some_and(|t| Instant::now() >= t)
        {
            self.resync();
        }
        if !self.retiring.is_empty() {
            self.reclaim_retired(Instant::now());
        }
        self.fill();
        let (mut frames, mut reclaim, mut kick) = (0, false, false);
        for q in &mut self.queues {
            frames += q.socket.rx.ready();
            reclaim |= q.socket.completion.ready() > 0;
            kick |= !q.socket.zero_copy() && !q.tx_stalled && q.socket.tx.outstanding() > 0;
        }
        let waiting = frames > 0 || reclaim || kick;
        // With sockets of its own the policy's linger holds even with no frame waiting yet:
        // their readiness comes with the first frame, so waking then would take one or two.
        let below_batch = (frames as usize) < crate::io::BATCH && !kick && !self.queues.is_empty();
        // The clock is read only when a linger is possible.
        let linger = if below_batch && !linger.is_zero() {
            linger.min(deadline.saturating_duration_since(Instant::now()))
        } else {
            Duration::ZERO
        };
        if !linger.is_zero() {
            // The sockets' readiness is one poll completion however many frames come, so
            // the wait lasts the whole linger unless the TUN fills a batch first.
            self.uring.linger(out, linger)?;
        } else {
            let until = if waiting { Instant::now() } else { deadline };
            self.uring.poll(out, until)?;
        }
        self.now = Instant::now();
        self.receive(out);
        self.complete();
        self.fill();
        Ok(())
    }

    fn buf(&mut self, buf: BufId) -> &mut [u8; BUF_SIZE] {
        self.uring.buf(buf)
    }

    fn alloc(&mut self) -> Option<BufId> {
        self.uring.alloc()
    }

    fn free(&mut self, buf: BufId) {
        self.uring.free(buf);
    }

    fn send_outer(
        &mut self,
        buf: BufId,
        range: Range<usize>,
        to: SocketAddr,
        link: Option<LinkPath>,
    ) {
        if !self.send_frame(buf, range.clone(), (to, link, self.port, false)) {
            self.stats.kernel_sends += 1;
            self.uring.send_outer(buf, range, to, None);
        }
    }

    fn send_esp(
        &mut self,
        buf: BufId,
        range: Range<usize>,
        (to, encap, link): (SocketAddr, EspEncap, Option<LinkPath>),
    ) {
        let sent = match (encap, self.nat_port) {
            (EspEncap::Raw, _) => self.send_frame(buf, range.clone(), (to, link, 0, true)),
            (EspEncap::Udp, Some(port)) => {
                self.send_frame(buf, range.clone(), (to, link, port, false))
            }
            (EspEncap::Udp, None) => false,
        };
        if sent {
            return;
        }
        self.stats.kernel_sends += 1;
        match encap {
            EspEncap::Udp => self.uring.send_esp(buf, range, (to, encap, None)),
            EspEncap::Raw => {
                self.send_raw_by_kernel(&range, to.ip(), buf);
                self.uring.free(buf);
            }
        }
    }

    fn send_inner(&mut self, buf: BufId, range: Range<usize>) -> InnerWay {
        if self.queues.iter().any(|q| q.lan) {
            match self.send_lan(buf, range.clone()) {
                Ok(()) => return InnerWay::Lan,
                Err(reason) => self.stats.lan_fallbacks[reason as usize] += 1,
            }
        }
        self.uring.send_inner(buf, range)
    }

    fn replace_outer(&mut self, socket: Arc<OwnedFd>) {
        if let Ok(port) = crate::kernel::udp::local_port(&socket) {
            self.port = port;
        }
        self.uring.replace_outer(socket);
    }

    fn attach_nat_t(&mut self, socket: Arc<OwnedFd>) {
        self.nat_port = crate::kernel::udp::local_port(&socket).ok();
        self.uring.attach_nat_t(socket);
    }

    fn take_send_failures(&mut self) -> u64 {
        self.uring.take_send_failures() + std::mem::take(&mut self.send_failures)
    }

    fn describe(&self) -> String {
        self.summary()
    }

    fn take_offload_stats(&mut self) -> OffloadStats {
        let mut stats = self.uring.take_offload_stats();
        let mine = std::mem::take(&mut self.stats);
        stats.bad_frames += mine.bad_frames;
        stats.kernel_sends += mine.kernel_sends;
        stats.xdp_received += mine.xdp_received;
        stats.xdp_sent += mine.xdp_sent;
        stats.lan_received += mine.lan_received;
        stats.lan_sent += mine.lan_sent;
        for (total, n) in stats.lan_fallbacks.iter_mut().zip(mine.lan_fallbacks) {
            *total += n;
        }
        stats
    }
}
