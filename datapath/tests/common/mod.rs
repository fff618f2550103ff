//! The worker rig shared by the datapath tests: real workers over the in-memory backend, a
//! peer with a session whose client side the test holds, and helpers to move packets.
#![allow(dead_code)]

pub mod esp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use datapath::io::memory::{Incoming, MemoryBackend};
use datapath::kernel::waker::Waker;
use datapath::messages::{HandshakeDatagram, ToWorker, WorkerEvent};
use datapath::route::AllowedIps;
use datapath::stats::DropReason;
use datapath::worker::{Mesh, Worker, WorkerLinks};
use proto::constants::TRANSPORT_HEADER_LEN as INNER_OFFSET;
use proto::handshake::SessionKeys;
use proto::session::Session;

pub const BUFFERS: usize = 256;
pub const CLIENT: &str = "198.51.100.7:40000";

pub struct Rig {
    pub workers: Vec<Worker<MemoryBackend>>,
    pub controls: Vec<Sender<ToWorker>>,
    pub handshakes: Receiver<HandshakeDatagram>,
    pub events: Receiver<WorkerEvent>,
    pub client: Session,
    pub next_tick: Instant,
}

/// A UDP-carrying IPv4 packet of `len` bytes, its body `fill`.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], len: usize, fill: u8) -> Vec<u8> {
    testbed::packet::ipv4(src, dst, testbed::packet::UDP, &vec![fill; len - 20])
}

impl Rig {
    /// `n` workers; peer 0 (owned by worker 0) has 10.77.0.2/32 and a responder session whose
    /// index belongs to worker `session_owner`.
    pub fn new(n: usize) -> Rig {
        let wakers: Vec<_> = (0..n)
            .map(|_| Arc::new(Waker::new().expect("eventfd")))
            .collect();
        let mesh = Arc::new(Mesh::new(wakers));
        let (hs_tx, hs_rx) = crossbeam_channel::bounded(4);
        let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
        let mut workers = Vec::new();
        let mut controls = Vec::new();
        for id in 0..n {
            let (tx, rx) = crossbeam_channel::unbounded();
            let links = WorkerLinks {
                control: rx,
                handshakes: hs_tx.clone(),
                events: ev_tx.clone(),
                mesh: mesh.clone(),
            };
            workers.push(Worker::new(id, 1420, MemoryBackend::new(BUFFERS), links));
            controls.push(tx);
        }
        let now = Instant::now();
        let server_index = 0x0000_0005; // worker 0
                                        // The control plane would count the index in as it handed it out.
        mesh.live().insert(server_index);
        let server = SessionKeys {
            local_index: server_index,
            remote_index: 77,
            send: [0xaa; 32],
            recv: [0xbb; 32],
            initiator: false,
        };
        let client = SessionKeys {
            local_index: 77,
            remote_index: server_index,
            send: [0xbb; 32],
            recv: [0xaa; 32],
            initiator: true,
        };
        let mut routes = AllowedIps::default();
        routes.insert("10.77.0.2/32".parse().expect("net"), 0);
        routes.insert("fd77::2/128".parse().expect("net"), 0);
        let routes = Arc::new(routes);
        for c in &controls {
            c.send(ToWorker::Routes(routes.clone())).expect("send");
        }
        controls[0]
            .send(ToWorker::SetPeer {
                peer: 0,
                persistent_keepalive: 0,
                endpoint: None,
            })
            .expect("send");
        controls[0]
            .send(ToWorker::InstallSession {
                peer: 0,
                session: Box::new(Session::new(&server, now)),
                endpoint: CLIENT.parse().expect("addr"),
            })
            .expect("send");
        let mut rig = Rig {
            workers,
            controls,
            handshakes: hs_rx,
            events: ev_rx,
            client: Session::new(&client, now),
            next_tick: now + std::time::Duration::from_secs(3600),
        };
        rig.step_all();
        rig
    }

    /// Every worker steps as of `now` (its tick runs: timers, draining SAs).
    pub fn step_all_at(&mut self, now: Instant) {
        for w in &mut self.workers {
            let mut tick = now;
            w.step_at(now, &mut tick).expect("step");
        }
    }

    pub fn step_all(&mut self) {
        for _ in 0..2 {
            for w in &mut self.workers {
                w.step(&mut self.next_tick).expect("step");
            }
        }
    }

    pub fn receive_from_client(&mut self, worker: usize, datagram: Vec<u8>) {
        let from: SocketAddr = CLIENT.parse().expect("addr");
        self.workers[worker]
            .backend_mut()
            .incoming
            .push_back(Incoming::Outer(datagram, from));
        self.step_all();
    }

    /// A packet read from worker `worker`'s TUN queue, then a step of every worker.
    pub fn receive_from_tun(&mut self, worker: usize, packet: Vec<u8>) {
        self.workers[worker]
            .backend_mut()
            .incoming
            .push_back(Incoming::Inner(packet));
        self.step_all();
    }

    pub fn seal(&mut self, inner: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; INNER_OFFSET + inner.len() + 48];
        buf[INNER_OFFSET..INNER_OFFSET + inner.len()].copy_from_slice(inner);
        let n = self.client.seal(&mut buf, inner.len(), 1420).expect("seal");
        buf.truncate(n);
        buf
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.workers
            .iter()
            .map(|w| w.counters().drops_for(reason))
            .sum()
    }

    pub fn written(&mut self, worker: usize) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.workers[worker].backend_mut().inner_written)
    }
}
