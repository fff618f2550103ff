//! A real worker over the in-memory backend: sessions sealed by an independent `Session`, every
//! drop reason the datapath owns, handover between two workers, and no leaked buffers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use datapath::io::memory::{Incoming, MemoryBackend};
use datapath::io::INNER_OFFSET;
use datapath::messages::{HandshakeDatagram, ToWorker, WorkerEvent, INDEX_WORKER_SHIFT};
use datapath::route::AllowedIps;
use datapath::stats::DropReason;
use datapath::waker::Waker;
use datapath::worker::{Mesh, Worker, WorkerLinks};
use proto::handshake::SessionKeys;
use proto::session::Session;

const BUFFERS: usize = 256;
const CLIENT: &str = "198.51.100.7:40000";

struct Rig {
    workers: Vec<Worker<MemoryBackend>>,
    controls: Vec<Sender<ToWorker>>,
    handshakes: Receiver<HandshakeDatagram>,
    events: Receiver<WorkerEvent>,
    client: Session,
    next_tick: Instant,
}

fn ipv4(src: [u8; 4], dst: [u8; 4], len: usize, fill: u8) -> Vec<u8> {
    let mut p = vec![fill; len];
    p[0] = 0x45;
    p[1] = 0;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p
}

impl Rig {
    /// `n` workers; peer 0 (owned by worker 0) has 10.77.0.2/32 and a responder session whose
    /// index belongs to worker `session_owner`.
    fn new(n: usize) -> Rig {
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

    fn step_all(&mut self) {
        for _ in 0..2 {
            for w in &mut self.workers {
                w.step(&mut self.next_tick).expect("step");
            }
        }
    }

    fn receive_from_client(&mut self, worker: usize, datagram: Vec<u8>) {
        let from: SocketAddr = CLIENT.parse().expect("addr");
        self.workers[worker]
            .backend_mut()
            .incoming
            .push_back(Incoming::Outer(datagram, from));
        self.step_all();
    }

    fn seal(&mut self, inner: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; INNER_OFFSET + inner.len() + 48];
        buf[INNER_OFFSET..INNER_OFFSET + inner.len()].copy_from_slice(inner);
        let n = self.client.seal(&mut buf, inner.len(), 1420).expect("seal");
        buf.truncate(n);
        buf
    }

    fn drops(&self, reason: DropReason) -> u64 {
        self.workers
            .iter()
            .map(|w| w.counters().drops_for(reason))
            .sum()
    }

    fn written(&mut self, worker: usize) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.workers[worker].backend_mut().inner_written)
    }
}

#[test]
fn transport_both_ways_and_every_drop_reason() {
    let mut rig = Rig::new(1);
    let ping = ipv4([10, 77, 0, 2], [10, 77, 0, 1], 84, 0x11);

    // Client → TUN: the first packet confirms the responder's session.
    let d = rig.seal(&ping);
    rig.receive_from_client(0, d.clone());
    assert_eq!(rig.written(0), vec![ping.clone()]);

    // TUN → client: routed by destination, sealed, sent to the endpoint, opens at the client.
    let reply = ipv4([10, 77, 0, 1], [10, 77, 0, 2], 84, 0x22);
    rig.workers[0]
        .backend_mut()
        .incoming
        .push_back(Incoming::Inner(reply.clone()));
    rig.step_all();
    let sent = std::mem::take(&mut rig.workers[0].backend_mut().outer_sent);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, CLIENT.parse::<SocketAddr>().expect("addr"));
    let mut datagram = sent[0].0.clone();
    let n = rig.client.open(&mut datagram).expect("client opens");
    assert_eq!(
        &datagram[INNER_OFFSET..INNER_OFFSET + reply.len()],
        &reply[..]
    );
    assert!(n >= reply.len());

    // Replayed counter.
    rig.receive_from_client(0, d);
    assert_eq!(rig.drops(DropReason::Replayed), 1);
    // Forged tag.
    let mut forged = rig.seal(&ping);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    rig.receive_from_client(0, forged);
    assert_eq!(rig.drops(DropReason::BadTag), 1);
    // Inner source outside the peer's allowed IPs.
    let spoofed = rig.seal(&ipv4([10, 99, 0, 5], [10, 77, 0, 1], 60, 0));
    rig.receive_from_client(0, spoofed);
    assert_eq!(rig.drops(DropReason::SourceNotAllowed), 1);
    // Decrypts, but is not an IP packet.
    let junk = rig.seal(&[0x99; 40]);
    rig.receive_from_client(0, junk);
    assert_eq!(rig.drops(DropReason::BadInnerPacket), 1);
    // Unknown receiver index, truncated, unknown type, wrong-size handshake.
    let mut unknown = rig.seal(&ping);
    unknown[4..8].copy_from_slice(&0x0000_0999u32.to_le_bytes());
    rig.receive_from_client(0, unknown);
    assert_eq!(rig.drops(DropReason::UnknownIndex), 1);
    rig.receive_from_client(0, vec![4, 0, 0, 0, 1, 2, 3]);
    rig.receive_from_client(0, vec![1, 0]);
    assert_eq!(rig.drops(DropReason::Truncated), 2);
    rig.receive_from_client(0, vec![7, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(rig.drops(DropReason::UnknownType), 1);
    let mut long = vec![0u8; 149];
    long[0] = 1;
    rig.receive_from_client(0, long);
    assert_eq!(rig.drops(DropReason::Oversized), 1);
    // A well-sized initiation goes to the control plane, untouched.
    let mut init = vec![0x5a; 148];
    init[..4].copy_from_slice(&[1, 0, 0, 0]);
    rig.receive_from_client(0, init.clone());
    let got = rig.handshakes.try_recv().expect("forwarded");
    assert_eq!(got.message(), &init[..]);
    // No route for an inner destination.
    rig.workers[0]
        .backend_mut()
        .incoming
        .push_back(Incoming::Inner(ipv4([10, 77, 0, 1], [10, 88, 0, 1], 40, 0)));
    rig.step_all();
    assert_eq!(rig.drops(DropReason::NoRoute), 1);

    // Legitimate traffic still flows after all that.
    let d = rig.seal(&ping);
    rig.receive_from_client(0, d);
    assert_eq!(rig.written(0), vec![ping]);
    assert_eq!(
        rig.workers[0].backend_mut().free_buffers(),
        BUFFERS,
        "a buffer leaked"
    );
}

#[test]
fn handshake_queue_full_is_counted_not_blocking() {
    let mut rig = Rig::new(1);
    let mut init = vec![0u8; 148];
    init[0] = 1;
    for _ in 0..10 {
        rig.receive_from_client(0, init.clone());
    }
    assert_eq!(rig.handshakes.len(), 4);
    assert_eq!(rig.drops(DropReason::HandshakeQueueFull), 6);
}

#[test]
fn packets_reaching_the_wrong_worker_are_handed_to_the_owner() {
    let mut rig = Rig::new(2);
    let ping = ipv4([10, 77, 0, 2], [10, 77, 0, 1], 100, 0x33);
    // The session's index names worker 0; the datagram arrives at worker 1.
    let d = rig.seal(&ping);
    rig.receive_from_client(1, d);
    assert_eq!(
        rig.written(0),
        vec![ping],
        "owner wrote it to its TUN queue"
    );
    assert!(rig.written(1).is_empty());
    assert_eq!(rig.workers[1].counters().handed_over, 1);

    // An inner packet read on worker 1 for peer 0 (owned by worker 0) is sealed by worker 0.
    let reply = ipv4([10, 77, 0, 1], [10, 77, 0, 2], 64, 0x44);
    rig.workers[1]
        .backend_mut()
        .incoming
        .push_back(Incoming::Inner(reply.clone()));
    rig.step_all();
    let sent = std::mem::take(&mut rig.workers[0].backend_mut().outer_sent);
    assert_eq!(sent.len(), 1);
    let mut datagram = sent[0].0.clone();
    rig.client.open(&mut datagram).expect("opens");
    assert_eq!(
        &datagram[INNER_OFFSET..INNER_OFFSET + reply.len()],
        &reply[..]
    );

    // An index naming a worker that does not exist is unknown, not handed anywhere.
    let mut bogus = rig.seal(&reply);
    bogus[4..8].copy_from_slice(&(9u32 << INDEX_WORKER_SHIFT).to_le_bytes());
    rig.receive_from_client(0, bogus);
    assert_eq!(rig.drops(DropReason::UnknownIndex), 1);
    for w in &mut rig.workers {
        assert_eq!(w.backend_mut().free_buffers(), BUFFERS);
    }
    drop(rig.events);
    drop(rig.controls);
}
