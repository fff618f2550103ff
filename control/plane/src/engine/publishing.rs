//! Putting the published state together without stalling the plane. The workers are asked
//! for their counters and peers (a `Gathering`); their answers are then merged with the
//! plane's own peer table a slice of peers per poll (an `Assembly`), so with 100,000 peers no
//! poll spends more than a fraction of a millisecond on it and initiations are admitted in
//! between. The publication it replaces is taken apart a slice per poll too, and its buffer
//! reused, so the plane neither frees nor faults in megabytes at once.

use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use datapath::messages::{is_esp, PeerStats, ToWorker, WorkerSnapshot};
use datapath::stats::WorkerCounters;

use super::published::{self, Gathering};
use super::{ControlPlane, DeviceState, PeerState, PUBLISH_EVERY};

/// Peers merged (or let go) per poll.
pub(super) const SLICE: usize = 2048;

/// A publication being put together.
pub(super) struct Assembly {
    /// When the workers were asked.
    started: Instant,
    /// Their answers, peers taken out.
    answers: Vec<WorkerSnapshot>,
    /// Each WireGuard peer's figures from its worker, by peer number.
    stats: Vec<Option<PeerStats>>,
    /// ESP tunnels as the workers see them.
    esp_tunnels: Vec<PeerStats>,
    /// Peers merged so far.
    peers: Vec<PeerState>,
    /// The next peer number to merge.
    next: usize,
}

/// Buffers kept from one publication to the next.
#[derive(Default)]
pub(super) struct Spare {
    /// The last assembly's figures by peer number (emptied by the next).
    stats: Vec<Option<PeerStats>>,
    /// The replaced publication's peers, let go a slice per poll; once empty, the next
    /// assembly's buffer.
    peers: Vec<PeerState>,
}

impl Assembly {
    /// Sorts the workers' answers by peer number into `stats` (emptied first, sized to
    /// `slots`), keeping `peers` as the buffer to merge into.
    fn new(
        started: Instant,
        mut answers: Vec<WorkerSnapshot>,
        slots: usize,
        (mut stats, mut peers): (Vec<Option<PeerStats>>, Vec<PeerState>),
    ) -> Self {
        stats.clear();
        stats.resize(slots, None);
        peers.clear();
        peers.reserve(slots);
        let mut esp_tunnels = Vec::new();
        for answer in &mut answers {
            for p in std::mem::take(&mut answer.peers) {
                if is_esp(p.peer) {
                    esp_tunnels.push(p);
                } else if let Some(slot) = stats.get_mut(p.peer as usize) {
                    *slot = Some(p);
                }
            }
        }
        Self {
            started,
            answers,
            stats,
            esp_tunnels,
            peers,
            next: 0,
        }
    }
}

impl ControlPlane {
    /// Asks every worker for its counters and peers; the answers and how many were asked.
    fn ask_workers(&self) -> (Receiver<WorkerSnapshot>, usize) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let asked = self
            .channels
            .workers
            .iter()
            .filter(|w| w.send(ToWorker::Snapshot(tx.clone())))
            .count();
        (rx, asked)
    }

    /// Moves the publication along by one step: starts a gathering when one is due, takes
    /// the workers' answers, merges a slice of peers, publishes once all are merged. The
    /// plane never waits for the workers here.
    pub(super) fn publish_state(&mut self, now: Instant) {
        self.let_go_slice();
        if self.assembly.is_some() {
            self.assemble_slice();
            return;
        }
        let complete = match &mut self.gathering {
            Some(g) => g.collect(now),
            None => false,
        };
        if complete {
            if let Some(g) = self.gathering.take() {
                self.last_gathering = g.started;
                // A worker that did not answer in time would read as its counters reset to
                // zero: the previous publication stays instead (the first goes out anyway).
                if g.got.len() >= g.asked || self.board.latest().is_none() {
                    let buffers = (
                        std::mem::take(&mut self.spare.stats),
                        std::mem::take(&mut self.spare.peers),
                    );
                    let slots = self.peers.slot_count();
                    self.assembly = Some(Assembly::new(g.started, g.got, slots, buffers));
                    self.assemble_slice();
                }
            }
        } else if self.gathering.is_none()
            && (now >= self.next_publish
                || (self.publish_soon && now >= self.last_gathering + published::MIN_GAP))
        {
            self.next_publish = now + PUBLISH_EVERY;
            self.publish_soon = false;
            let (answers, asked) = self.ask_workers();
            self.gathering = Some(Gathering {
                answers,
                asked,
                got: Vec::new(),
                started: now,
            });
        }
    }

    /// True while a publication is being merged: the run loop polls again without waiting.
    pub(super) fn publishing(&self) -> bool {
        self.assembly.is_some() || !self.spare.peers.is_empty()
    }

    /// Merges the next slice of peers; publishes when the last one is in.
    fn assemble_slice(&mut self) {
        let Some(mut a) = self.assembly.take() else {
            return;
        };
        let end = a.next + SLICE;
        self.merge_peers(&mut a, end);
        if a.next < self.peers.slot_count() {
            self.assembly = Some(a);
            return;
        }
        let started = a.started;
        let (state, stats) = self.finish(a);
        self.spare.stats = stats;
        if let Some(previous) = self.board.publish(state, started) {
            // Ours alone unless an API reader still holds it (then it goes on their thread).
            if let Ok(p) = std::sync::Arc::try_unwrap(previous) {
                self.spare.peers = p.state.peers;
            }
        }
    }

    /// Drops a slice of the replaced publication's peers.
    fn let_go_slice(&mut self) {
        let n = self.spare.peers.len();
        self.spare.peers.truncate(n.saturating_sub(SLICE));
    }

    /// Merges peers numbered below `end` into `a`.
    fn merge_peers(&self, a: &mut Assembly, end: usize) {
        for p in self.peers.in_slots(a.next..end) {
            let taken = a.stats.get_mut(p.id as usize).and_then(Option::take);
            let stats = taken.as_ref();
            a.peers.push(PeerState {
                public_key: p.public_key,
                preshared_key: p.preshared_key.clone(),
                endpoint: stats.and_then(|s| s.endpoint).or(p.endpoint),
                last_handshake: stats
                    .and_then(|s| s.last_handshake)
                    .map(|t| self.clock.unix(t)),
                receiver_index: p.session_index,
                rx_bytes: stats.map_or(0, |s| s.rx_bytes) + p.handshake_rx_bytes,
                tx_bytes: stats.map_or(0, |s| s.tx_bytes) + p.handshake_tx_bytes,
                persistent_keepalive: p.persistent_keepalive,
                allowed_ips: p.allowed_ips.clone(),
            });
        }
        a.next = end.min(self.peers.slot_count()).max(a.next);
    }

    /// Asks every worker for its counters and peers, waits for them (up to a second), and
    /// merges them with ours in one go: for the UAPI socket, whose `wg set` then `wg show`
    /// must agree.
    pub(super) fn state(&self) -> DeviceState {
        let (rx, asked) = self.ask_workers();
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut got = Vec::with_capacity(asked);
        for _ in 0..asked {
            let Ok(snap) = rx.recv_deadline(deadline) else {
                break;
            };
            got.push(snap);
        }
        let slots = self.peers.slot_count();
        let mut a = Assembly::new(Instant::now(), got, slots, Default::default());
        self.merge_peers(&mut a, slots);
        self.finish(a).0
    }

    /// The interface's state once every peer is merged, and the emptied figures buffer.
    fn finish(&self, a: Assembly) -> (DeviceState, Vec<Option<PeerStats>>) {
        let mut datapath = WorkerCounters::default();
        let mut per_worker = vec![WorkerCounters::default(); self.channels.workers.len()];
        let mut outer = self.channels.outer.per_worker.clone();
        outer.resize(self.channels.workers.len(), String::new());
        for snap in a.answers {
            datapath.add(&snap.counters);
            if let Some(o) = outer.get_mut(snap.worker) {
                o.clone_from(&snap.outer);
            }
            if let Some(w) = per_worker.get_mut(snap.worker) {
                *w = snap.counters;
            }
        }
        let state = DeviceState {
            name: self.name.clone(),
            private_key: self.identity.as_ref().map(|i| i.private.clone()),
            listen_port: self.listen_port,
            fwmark: self.fwmark,
            workers: self.channels.workers.len(),
            backend: match &self.channels.outer.steering {
                Some(s) => format!("af-xdp on {}", s.describe()),
                None => self.channels.outer.summary.clone(),
            },
            backend_per_worker: outer,
            firewall: crate::outer::firewall_path(self.channels.outer.steering.is_some()),
            peers: a.peers,
            datapath,
            per_worker,
            control: self.counters.clone(),
            indices_in_use: self.indices.len(),
            esp_tunnels: a.esp_tunnels,
        };
        (state, a.stats)
    }
}
