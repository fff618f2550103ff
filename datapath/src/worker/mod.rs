//! A datapath worker: one thread, pinned to one core, owning one outer socket, one TUN queue,
//! one buffer pool and one shard of the peers. It moves transport data and never performs a
//! handshake: handshake messages go to the control plane, sessions come back from it.
//!
//! Each loop iteration takes a batch from the backend, applies control messages (so what was
//! installed before a packet arrived is in place for it), runs every packet through the
//! receive path (`receive`, `esp`) or the send path (`send`), applies control messages
//! again, fires peer timers on a
//! coarse tick, and wakes any worker it handed packets to. No locks, no allocation and no
//! system call per packet: the backend submits the batch's I/O in one call.

mod esp;
#[cfg(debug_assertions)]
pub mod faults;
mod handover;
mod linger;
mod peer;
mod receive;
mod send;
mod strays;

pub use esp::{EspTunnel, EspTunnels};
pub use handover::{Handover, HandoverKind, Mesh, HANDOVER_DEPTH};
pub use peer::{PeerSlot, PeerTable, MAX_STAGED};

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use proto::keyring::Retired;
use rustc_hash::FxHashMap;

use crate::io::{Backend, Rx, OUTER_HEADROOM};
use crate::messages::{HandshakeDatagram, PeerStats, ToWorker, WorkerEvent, WorkerSnapshot};
use crate::route::{PeerId, Routes};
use crate::stats::{DropReason, WorkerCounters};

/// How often peer timers are checked; WireGuard's timers are coarse (seconds).
pub const TICK: Duration = Duration::from_millis(100);
/// How often the worker looks for idle peers.
const COMPACTION_CHECK: Duration = Duration::from_secs(1);
/// A peer with no traffic either way for this long has its sessions compacted (the
/// keepalive timeout: a peer that talks at all talks at least this often).
const IDLE_AFTER: Duration = Duration::from_secs(10);

/// The channels a worker is wired with.
pub struct WorkerLinks {
    /// Messages from the control plane.
    pub control: Receiver<ToWorker>,
    /// Handshake messages to the control plane (bounded; full = drop).
    pub handshakes: Sender<HandshakeDatagram>,
    /// Events to the control plane (unbounded; never lost).
    pub events: Sender<WorkerEvent>,
    /// Every worker's handover queue and waker.
    pub mesh: Arc<Mesh>,
}

/// One datapath worker over backend `B`.
pub struct Worker<B: Backend> {
    id: usize,
    mtu: usize,
    backend: B,
    links: WorkerLinks,
    routes: Routes,
    peers: PeerTable,
    /// Our receiver indices (chosen here: a forged one only misses) to their peers.
    indices: FxHashMap<u32, PeerId>,
    esp: EspTunnels,
    counters: WorkerCounters,
    rx: Vec<Rx>,
    wake_pending: Vec<bool>,
    jitter_state: u64,
    running: bool,
    next_compaction: Option<Instant>,
    strays: strays::StrayBudget,
    /// Whether and how long a poll may wait for a batch to gather.
    linger: linger::Linger,
}

impl<B: Backend> Worker<B> {
    /// Worker number `id` of `links.mesh.len()`, with inner MTU `mtu`.
    pub fn new(id: usize, mtu: usize, backend: B, links: WorkerLinks) -> Self {
        let workers = links.mesh.len();
        Self {
            id,
            mtu,
            backend,
            routes: Routes::default(),
            peers: PeerTable::new(id, workers),
            indices: FxHashMap::default(),
            esp: EspTunnels::default(),
            counters: WorkerCounters::default(),
            rx: Vec::with_capacity(1024),
            wake_pending: vec![false; workers],
            jitter_state: 0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1),
            running: true,
            next_compaction: None,
            strays: strays::StrayBudget::default(),
            linger: linger::Linger::new(Duration::ZERO),
            links,
        }
    }

    /// Lets a poll wait up to `linger` for a batch to gather while packets stream in
    /// (`[interface] batch_linger_us`; the policy is `linger::Linger`'s).
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger::Linger::new(linger);
        self
    }

    /// Runs until told to shut down or the interface disappears.
    pub fn run(mut self) {
        let mut next_tick = Instant::now() + TICK;
        while self.running {
            if let Err(e) = self.step(&mut next_tick) {
                let _ = self.links.events.send(WorkerEvent::Failed {
                    worker: self.id,
                    error: e.to_string(),
                });
                return;
            }
        }
    }

    /// One batch: waits for the backend (until `next_tick` at most) and processes what came,
    /// reading the clock once for all of it.
    pub fn step(&mut self, next_tick: &mut Instant) -> std::io::Result<()> {
        self.backend
            .poll_lingering(&mut self.rx, *next_tick, self.linger.next())?;
        self.process_batch(Instant::now(), next_tick);
        Ok(())
    }

    /// One batch as of `now`, for backends that do not wait (tests drive time themselves).
    pub fn step_at(&mut self, now: Instant, next_tick: &mut Instant) -> std::io::Result<()> {
        self.backend
            .poll_lingering(&mut self.rx, *next_tick, self.linger.next())?;
        self.process_batch(now, next_tick);
        Ok(())
    }

    /// True until a shutdown message arrives or the control plane goes away.
    pub fn is_running(&self) -> bool {
        self.running
    }

    fn process_batch(&mut self, now: Instant, next_tick: &mut Instant) {
        // Control first: a session or SA installed before a packet that needs it arrived is
        // in place when that packet is processed.
        self.drain_control(now);
        let mut rx = std::mem::take(&mut self.rx);
        let packets = rx.iter().filter(|r| r.is_packet()).count();
        for i in 0..rx.len() {
            // The next outer packet's last two lines (its tag or ICV, read before its cipher
            // runs) load while this one is handled.
            if let Some(Rx::Outer { buf, at, len, .. }) = rx.get(i + 1) {
                let bytes = self.backend.buf(*buf);
                let end = (at + len).min(bytes.len());
                // Both lines a 16-byte tag may straddle.
                for byte in [end.saturating_sub(16), end.saturating_sub(1)] {
                    crate::io::prefetch::line(&bytes[byte]);
                }
            }
            match rx[i] {
                Rx::Outer {
                    buf,
                    at,
                    len,
                    from,
                    link,
                    truncated,
                    via,
                } => self.receive_outer(buf, at..at + len, (from, link, via), truncated, now),
                Rx::Inner { buf, len } => {
                    self.counters.tun_reads += 1;
                    self.receive_inner(buf, len, now);
                }
                Rx::Lan { buf, len } => self.receive_inner(buf, len, now),
                Rx::Wake => {}
                Rx::InnerClosed => {
                    let _ = self
                        .links
                        .events
                        .send(WorkerEvent::InterfaceGone { worker: self.id });
                }
            }
        }
        rx.clear();
        self.rx = rx;
        self.drain_control(now);
        let handed = self.drain_handovers(now);
        self.linger.note(now, packets, handed);
        if now >= *next_tick {
            self.tick(now);
            *next_tick = now + TICK;
        }
        self.flush_wakes();
        let failures = self.backend.take_send_failures();
        self.counters.drops[DropReason::SendFailed as usize] += failures;
        let offloads = self.backend.take_offload_stats();
        self.counters.drops[DropReason::NoBuffer as usize] += offloads.no_buffer;
        self.counters.drops[DropReason::BadOffload as usize] += offloads.bad_offload;
        self.counters.drops[DropReason::BadFrame as usize] += offloads.bad_frames;
        self.counters.outer_kernel_sends += offloads.kernel_sends;
        self.counters.xdp_rx_frames += offloads.xdp_received;
        self.counters.xdp_tx_frames += offloads.xdp_sent;
        self.counters.coalesced_receives += offloads.coalesced_receives;
        self.counters.tun_super_packets += offloads.super_packets;
        self.counters.tun_coalesced_writes += offloads.coalesced_writes;
        self.counters.tun_write_calls += offloads.tun_write_calls;
        self.counters.outer_send_calls += offloads.outer_send_calls;
        self.counters.lan_rx_packets += offloads.lan_received;
        self.counters.lan_tx_packets += offloads.lan_sent;
        let [not_lan, unresolved, fragment, too_big, ttl] = offloads.lan_fallbacks;
        self.counters.lan_fallback_not_lan += not_lan;
        self.counters.lan_fallback_unresolved += unresolved;
        self.counters.lan_fallback_fragment += fragment;
        self.counters.lan_fallback_too_big += too_big;
        self.counters.lan_fallback_ttl += ttl;
    }

    /// The backend, for tests that inject and inspect packets.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// This worker's counters.
    pub fn counters(&self) -> &WorkerCounters {
        &self.counters
    }

    fn next_jitter(&mut self) -> Duration {
        // xorshift64: jitter needs spread, not secrecy (and no system call per packet).
        let mut x = self.jitter_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter_state = x;
        proto::timers::rekey_jitter((x >> 32) as u32)
    }

    fn peer_mut(&mut self, peer: PeerId) -> Option<&mut PeerSlot> {
        self.peers.get_mut(peer)
    }

    fn retire(&mut self, retired: Retired) {
        let mut indices = [None; 3];
        for (slot, index) in indices.iter_mut().zip(retired.iter()) {
            self.indices.remove(&index);
            *slot = Some(index);
        }
        if indices[0].is_some() {
            let _ = self
                .links
                .events
                .send(WorkerEvent::IndicesRetired { indices });
        }
    }

    /// Asks the control plane for a handshake, at most once per REKEY_TIMEOUT per peer.
    fn want_handshake(&mut self, peer: PeerId, now: Instant) {
        let Some(slot) = self.peer_mut(peer) else {
            return;
        };
        if slot.asked.try_pass(now) {
            let _ = self.links.events.send(WorkerEvent::WantHandshake { peer });
        }
    }

    fn drop_staged(&mut self, peer: PeerId) {
        let staged = match self.peer_mut(peer) {
            Some(slot) => std::mem::take(&mut slot.staged),
            None => return,
        };
        for (buf, _) in &staged {
            self.backend.free(*buf);
        }
        if let Some(slot) = self.peer_mut(peer) {
            slot.staged = staged;
            slot.staged.clear();
        }
    }

    fn drain_control(&mut self, now: Instant) {
        loop {
            match self.links.control.try_recv() {
                Ok(msg) => self.apply(msg, now),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.running = false;
                    return;
                }
            }
        }
    }

    fn apply(&mut self, msg: ToWorker, now: Instant) {
        match msg {
            ToWorker::SetPeer {
                peer,
                persistent_keepalive,
                endpoint,
            } => {
                let Some(slot) = self.peers.get_or_insert(peer) else {
                    // Another worker's peer: a bug upstream, not worth a crash.
                    return;
                };
                if endpoint.is_some_and(|e| slot.transport.set_endpoint(e)) {
                    slot.link = None;
                }
                let interval = Duration::from_secs(u64::from(persistent_keepalive));
                slot.transport.set_persistent_keepalive(Some(interval), now);
            }
            ToWorker::RemovePeer { peer } => {
                self.drop_staged(peer);
                if let Some(mut slot) = self.peers.take(peer) {
                    let retired = slot.transport.clear();
                    self.retire(retired);
                }
            }
            ToWorker::InstallSession {
                peer,
                session,
                endpoint,
            } => self.install(peer, session, endpoint, now),
            ToWorker::InstallEsp {
                tunnel,
                sa,
                endpoint,
                encap,
            } => self.esp.install(tunnel, *sa, (endpoint, encap)),
            ToWorker::RemoveEspSa { tunnel, spi } => self.esp.remove_sa(tunnel, spi, now),
            ToWorker::MoveEsp { tunnel, endpoint } => self.esp.move_to(tunnel, endpoint),
            ToWorker::RemoveEsp { tunnel } => self.esp.remove(tunnel),
            ToWorker::ClearSessions { peer } => {
                self.drop_staged(peer);
                if let Some(slot) = self.peer_mut(peer) {
                    let retired = slot.transport.clear();
                    self.retire(retired);
                }
            }
            ToWorker::HandshakeGaveUp { peer } => {
                self.drop_staged(peer);
                if let Some(slot) = self.peer_mut(peer) {
                    slot.transport.gave_up(now);
                }
            }
            ToWorker::Routes(routes) => self.routes.replace(routes),
            ToWorker::Transmit {
                to,
                link,
                len,
                bytes,
            } => match self.backend.alloc() {
                Some(buf) => {
                    let len = len.min(bytes.len());
                    let at = OUTER_HEADROOM;
                    self.backend.buf(buf)[at..at + len].copy_from_slice(&bytes[..len]);
                    self.backend.send_outer(buf, at..at + len, to, link);
                    self.counters.tx_datagrams += 1;
                    self.counters.tx_bytes += len as u64;
                }
                None => self.counters.drop(DropReason::NoBuffer),
            },
            ToWorker::ReplaceSocket(socket) => self.backend.replace_outer(socket),
            ToWorker::AttachNatT(socket) => self.backend.attach_nat_t(socket),
            ToWorker::Snapshot(reply) => {
                #[cfg(debug_assertions)]
                faults::on_snapshot(self.id);
                let _ = reply.send(self.snapshot());
            }
            ToWorker::Shutdown => self.running = false,
        }
    }

    fn install(
        &mut self,
        peer: PeerId,
        session: Box<proto::session::Session>,
        endpoint: std::net::SocketAddr,
        now: Instant,
    ) {
        let index = session.local_index;
        let Some(slot) = self.peers.get_mut(peer) else {
            // The peer was removed while its handshake completed: free the index.
            let _ = self.links.events.send(WorkerEvent::IndicesRetired {
                indices: [Some(index), None, None],
            });
            return;
        };
        let installed = slot.transport.install(now, session, endpoint);
        // A new session is not idle, however long the peer was quiet before it.
        slot.quiet = (slot.rx_bytes.wrapping_add(slot.tx_bytes), Some(now));
        self.counters.sessions_installed += 1;
        if installed.endpoint_changed {
            slot.link = None;
        }
        slot.asked.reset();
        if installed.confirm {
            slot.last_handshake = Some(now);
        }
        self.indices.insert(index, peer);
        self.retire(installed.retired);
        if installed.confirm {
            // The responder cannot send until we do: staged data, or a keepalive, confirms.
            if !self.flush_staged(peer, now) {
                self.send_keepalive(peer, now);
            }
        }
    }

    /// Frees the expanded keys of peers that have neither sent nor received for IDLE_AFTER
    /// (their next packet rebuilds them): most users of a concentrator are connected and idle.
    fn compact_idle(&mut self, now: Instant) {
        let mut compacted = 0;
        for (_, slot) in self.peers.iter_mut() {
            let activity = slot.rx_bytes.wrapping_add(slot.tx_bytes);
            match slot.quiet {
                (seen, Some(since)) if seen == activity => {
                    if now.saturating_duration_since(since) >= IDLE_AFTER {
                        compacted += slot.transport.compact() as u64;
                    }
                }
                _ => slot.quiet = (activity, Some(now)),
            }
        }
        self.counters.sessions_compacted += compacted;
    }

    fn tick(&mut self, now: Instant) {
        self.esp.sweep(now);
        match self.next_compaction {
            Some(at) if now >= at => {
                self.next_compaction = Some(now + COMPACTION_CHECK);
                self.compact_idle(now);
            }
            Some(_) => {}
            None => self.next_compaction = Some(now + COMPACTION_CHECK),
        }
        let due: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, s)| s.transport.next_deadline().is_some_and(|d| d <= now))
            .map(|(id, _)| id)
            .collect();
        for peer in due {
            let Some(slot) = self.peers.get_mut(peer) else {
                continue;
            };
            if slot.transport.next_deadline().is_none_or(|d| d > now) {
                continue;
            }
            let due = slot.transport.poll(now);
            if let Some(retired) = due.keys_zeroed {
                self.retire(retired);
                self.drop_staged(peer);
            }
            if due.handshake {
                self.want_handshake(peer, now);
            }
            if due.keepalive {
                self.send_keepalive(peer, now);
            }
        }
    }

    fn snapshot(&self) -> WorkerSnapshot {
        WorkerSnapshot {
            worker: self.id,
            counters: self.counters.clone(),
            outer: self.backend.describe(),
            peers: self
                .peers
                .iter()
                .map(|(peer, s)| PeerStats {
                    peer,
                    endpoint: s.transport.endpoint(),
                    rx_bytes: s.rx_bytes,
                    tx_bytes: s.tx_bytes,
                    last_handshake: s.last_handshake,
                })
                .chain(self.esp.iter().map(|(tunnel, t)| PeerStats {
                    peer: tunnel,
                    endpoint: Some(t.endpoint()),
                    rx_bytes: t.rx_bytes,
                    tx_bytes: t.tx_bytes,
                    last_handshake: None,
                }))
                .collect(),
        }
    }

    /// Copies `buf[range]` to worker `to`'s queue and frees the buffer.
    fn hand_over(
        &mut self,
        to: usize,
        kind: HandoverKind,
        buf: crate::io::BufId,
        range: std::ops::Range<usize>,
    ) {
        let outer = matches!(kind, HandoverKind::Outer(..) | HandoverKind::Esp(..));
        let pushed = self
            .links
            .mesh
            .push(to, kind, &self.backend.buf(buf)[range]);
        self.backend.free(buf);
        if pushed {
            self.counters.handed_over += 1;
            if outer {
                self.counters.outer_handed_over += 1;
            }
            if let Some(flag) = self.wake_pending.get_mut(to) {
                *flag = true;
            }
        } else {
            self.counters.drop(DropReason::HandoverFull);
        }
    }

    fn flush_wakes(&mut self) {
        for (to, flag) in self.wake_pending.iter_mut().enumerate() {
            if std::mem::take(flag) {
                self.links.mesh.wake(to);
            }
        }
    }

    /// Processes the packets other workers handed over; returns how many.
    fn drain_handovers(&mut self, now: Instant) -> usize {
        let mut handed = 0;
        while let Some(h) = self.links.mesh.pop(self.id) {
            handed += 1;
            let Some(buf) = self.backend.alloc() else {
                self.counters.drop(DropReason::NoBuffer);
                continue;
            };
            match h.kind {
                HandoverKind::Outer(from, link) => {
                    let at = OUTER_HEADROOM;
                    let end = (at + h.len).min(crate::io::BUF_SIZE);
                    self.backend.buf(buf)[at..end].copy_from_slice(&h.data[..end - at]);
                    self.receive_transport(buf, at..end, from, link, now);
                }
                HandoverKind::Esp(from, encap, link) => {
                    let at = OUTER_HEADROOM;
                    let end = (at + h.len).min(crate::io::BUF_SIZE);
                    self.backend.buf(buf)[at..end].copy_from_slice(&h.data[..end - at]);
                    self.receive_esp(buf, at..end, (from, encap, link));
                }
                HandoverKind::Inner => {
                    let off = crate::io::INNER_OFFSET;
                    let end = (off + h.len).min(crate::io::BUF_SIZE);
                    self.backend.buf(buf)[off..end].copy_from_slice(&h.data[..end - off]);
                    self.send_to_peer_checked(buf, end - off, now);
                }
            }
        }
        handed
    }
}
