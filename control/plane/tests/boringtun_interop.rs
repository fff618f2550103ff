//! Cross-implementation: the daemon's own code, a datapath worker over the in-memory backend
//! and the control plane with its responder thread, against the `boringtun` crate's `Tunn`.
//!
//! Every WireGuard message boringtun sends goes through the worker's receive path (and, for
//! handshakes, the plane's admission and responder), and every message the daemon sends
//! comes out of the worker's send path; boringtun judges them. Both clocks are the test's
//! (boringtun's through its `mock-instant` feature), so rekeys and timers happen in
//! milliseconds. Breaking a rule in the worker's receive path (the replay check, expiry, key
//! confirmation) makes a scenario here fail.

use std::mem::take;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use crossbeam_channel::{Receiver, Sender};
use datapath::io::memory::{Incoming, MemoryBackend};
use datapath::kernel::waker::Waker;
use datapath::launch::WorkerHandle;
use datapath::stats::DropReason;
use datapath::worker::{Mesh, Worker, WorkerLinks};
use mock_instant::MockClock;
use plane::engine::{ControlPlane, PlaneChannels, Request, StopReason, HANDSHAKE_QUEUE};
use plane::events::{EventSink, TunnelEvent};
use plane::update::{DeviceUpdate, PeerUpdate};
use proto::{PresharedKey, PrivateKey, PublicKey};
use testbed::packet::numbered_v4;
use x25519_dalek::{PublicKey as XPublic, StaticSecret};

/// boringtun's mock clock is process-wide state: run one scenario at a time.
static CLOCK: Mutex<()> = Mutex::new(());

const BT_ADDR: &str = "192.0.2.2:40000";
const BUFFERS: usize = 256;

/// Tunnel events are not this test's subject.
struct Ignore;

impl EventSink for Ignore {
    fn publish(&self, _: TunnelEvent) {}
}

/// A packet from the boringtun side (10.0.0.2) to the daemon's side (10.0.0.1).
fn from_bt(seq: u32, len: usize) -> Vec<u8> {
    numbered_v4([10, 0, 0, 2], [10, 0, 0, 1], seq, len)
}

/// A packet from the daemon's side to boringtun's.
fn to_bt(seq: u32, len: usize) -> Vec<u8> {
    numbered_v4([10, 0, 0, 1], [10, 0, 0, 2], seq, len)
}

struct Pair {
    worker: Worker<MemoryBackend>,
    plane: ControlPlane,
    next_tick: Instant,
    bt: Tunn,
    base: Instant,
    offset: Duration,
    /// Inner packets each side received, in order.
    at_xgate: Vec<Vec<u8>>,
    at_bt: Vec<Vec<u8>>,
    _requests: Sender<Request>,
    _stop: Receiver<StopReason>,
}

impl Pair {
    /// The daemon with boringtun as its one peer (10.0.0.2/32); with `endpoint`, the daemon
    /// knows where boringtun is and may initiate.
    fn new(psk: Option<[u8; 32]>, endpoint: bool) -> Self {
        let x_priv = PrivateKey::from_bytes([0x11; 32]);
        let b_secret = StaticSecret::from([0x22; 32]);
        let b_public = XPublic::from(&b_secret);
        let base = Instant::now();

        let mesh = Arc::new(Mesh::new(vec![Arc::new(Waker::new().expect("eventfd"))]));
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        let (hs_tx, hs_rx) = crossbeam_channel::bounded(HANDSHAKE_QUEUE);
        let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
        let links = WorkerLinks {
            control: control_rx,
            handshakes: hs_tx,
            events: ev_tx,
            mesh: mesh.clone(),
        };
        let worker = Worker::new(0, 1420, MemoryBackend::new(BUFFERS), links);
        let (requests, requests_rx) = crossbeam_channel::unbounded();
        let (stop_tx, stop) = crossbeam_channel::unbounded();
        let mut plane = ControlPlane::new(
            "xbt0",
            0,
            0,
            1,
            PlaneChannels {
                handshakes: hs_rx,
                events: ev_rx,
                requests: requests_rx,
                stop: stop_tx,
                workers: vec![WorkerHandle::detached(control_tx).expect("eventfd")],
                sockets: Vec::new(),
                events_out: Arc::new(Ignore),
                outer: Default::default(),
                live_indices: mesh.live().clone(),
            },
        )
        .expect("plane");
        let mut peer = PeerUpdate::new(PublicKey(b_public.to_bytes()));
        peer.preshared_key = Some(psk.map(PresharedKey));
        peer.replace_allowed_ips = true;
        peer.allowed_ips = vec!["10.0.0.2/32".parse().expect("net")];
        peer.endpoint = endpoint.then(|| BT_ADDR.parse().expect("addr"));
        plane
            .apply(DeviceUpdate {
                private_key: Some(Some(x_priv.clone())),
                peers: vec![peer],
                ..DeviceUpdate::default()
            })
            .expect("configured");
        let x_public = XPublic::from(x_priv.public_key().0);
        let bt = Tunn::new(b_secret, x_public, psk, None, 7, None);
        let mut pair = Pair {
            worker,
            plane,
            next_tick: base,
            bt,
            base,
            offset: Duration::ZERO,
            at_xgate: Vec::new(),
            at_bt: Vec::new(),
            _requests: requests,
            _stop: stop,
        };
        pair.pump();
        pair
    }

    fn now(&self) -> Instant {
        self.base + self.offset
    }

    fn drops(&self, reason: DropReason) -> u64 {
        self.worker.counters().drops_for(reason)
    }

    /// One round of the daemon alone: the worker, the plane (waiting for its responder
    /// thread), the worker again; what it sends stays in the backend.
    fn run_daemon(&mut self) {
        let now = self.now();
        self.worker
            .step_at(now, &mut self.next_tick)
            .expect("worker step");
        self.plane.poll(now).expect("plane inputs open");
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.plane.answering() > 0 {
            assert!(Instant::now() < deadline, "the responder thread answers");
            std::thread::sleep(Duration::from_millis(1));
            self.plane.poll(now).expect("plane inputs open");
        }
        self.worker
            .step_at(now, &mut self.next_tick)
            .expect("worker step");
    }

    /// Runs the worker and the plane until neither has anything more to do, boringtun
    /// answering whatever the daemon sent.
    fn pump(&mut self) {
        for _ in 0..64 {
            self.run_daemon();
            let backend = self.worker.backend_mut();
            let sent = take(&mut backend.outer_sent);
            let written = take(&mut backend.inner_written);
            let moved = !sent.is_empty() || !written.is_empty();
            self.at_xgate.extend(written);
            for (datagram, to) in sent {
                assert_eq!(
                    to,
                    BT_ADDR.parse().expect("addr"),
                    "sent to boringtun's address"
                );
                self.deliver_to_bt(&datagram)
                    .unwrap_or_else(|e| panic!("boringtun refused a datagram of the daemon: {e}"));
            }
            if !moved && self.worker.backend_mut().incoming.is_empty() {
                return;
            }
        }
        panic!("the daemon and boringtun did not settle");
    }

    /// Hands a datagram from boringtun to the worker (it arrives at the next pump).
    fn arrive(&mut self, datagram: Vec<u8>) {
        let from = BT_ADDR.parse().expect("addr");
        self.worker
            .backend_mut()
            .incoming
            .push_back(Incoming::Outer(datagram, from));
    }

    /// boringtun's verdict on a datagram from the daemon; its replies go to the worker.
    fn deliver_to_bt(&mut self, datagram: &[u8]) -> Result<(), String> {
        let from = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let mut buf = vec![0u8; 2048];
        let mut replies = Vec::new();
        let result = match self.bt.decapsulate(Some(from), datagram, &mut buf) {
            TunnResult::Err(e) => Err(format!("{e:?}")),
            TunnResult::WriteToNetwork(d) => {
                replies.push(d.to_vec());
                Ok(())
            }
            TunnResult::WriteToTunnelV4(p, _) | TunnResult::WriteToTunnelV6(p, _) => {
                self.at_bt.push(p.to_vec());
                Ok(())
            }
            TunnResult::Done => Ok(()),
        };
        // boringtun asks to be called again while it has queued packets to flush.
        if !replies.is_empty() {
            while let TunnResult::WriteToNetwork(d) = self.bt.decapsulate(None, &[], &mut buf) {
                replies.push(d.to_vec());
            }
        }
        for r in replies {
            self.arrive(r);
        }
        result
    }

    /// An inner packet from the daemon's TUN.
    fn xgate_sends(&mut self, packet: Vec<u8>) {
        self.worker
            .backend_mut()
            .incoming
            .push_back(Incoming::Inner(packet));
        self.pump();
    }

    /// boringtun encapsulates `packet`; the datagram is delivered (and pumped) if `deliver`.
    fn bt_sends(&mut self, packet: &[u8], deliver: bool) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        let d = match self.bt.encapsulate(packet, &mut buf) {
            TunnResult::WriteToNetwork(d) => d.to_vec(),
            TunnResult::Done => return None,
            other => panic!("unexpected encapsulate result {other:?}"),
        };
        if deliver {
            self.arrive(d.clone());
            self.pump();
        }
        Some(d)
    }

    fn advance(&mut self, by: Duration) {
        self.offset += by;
        MockClock::advance(by);
        self.next_tick = self.now();
        let mut buf = vec![0u8; 2048];
        if let TunnResult::WriteToNetwork(d) = self.bt.update_timers(&mut buf) {
            let d = d.to_vec();
            self.arrive(d);
        }
        self.pump();
    }

    fn handshakes(&self) -> u64 {
        self.worker.counters().sessions_installed
    }

    /// 10,000 packets (5,000 each way), advancing 15 s every 250, so about 600 s pass and
    /// sessions are replaced every 120 s.
    fn exchange_through_rekeys(&mut self) {
        let mut seq = 0u32;
        for _round in 0..40 {
            for _ in 0..125 {
                let p = to_bt(seq, 28 + (seq as usize * 37) % 1392);
                let before = self.at_bt.len();
                self.xgate_sends(p.clone());
                assert_eq!(
                    self.at_bt.len(),
                    before + 1,
                    "packet {seq} did not reach boringtun"
                );
                assert_eq!(self.at_bt.last(), Some(&p));
                seq += 1;
                let q = from_bt(seq, 28 + (seq as usize * 53) % 1392);
                let before = self.at_xgate.len();
                self.bt_sends(&q, true);
                assert_eq!(
                    self.at_xgate.len(),
                    before + 1,
                    "packet {seq} did not reach the TUN"
                );
                assert_eq!(self.at_xgate.last(), Some(&q));
                seq += 1;
            }
            self.advance(Duration::from_secs(15));
        }
        assert_eq!(seq, 10_000);
    }

    /// Replays, a counter outside the window, a forged tag and an expired session, each
    /// counted by reason and none written to the TUN; and boringtun refuses the daemon's.
    fn check_rejections(&mut self) {
        let d = self.bt_sends(&from_bt(1, 100), true).expect("datagram");
        let (written, replayed) = (self.at_xgate.len(), self.drops(DropReason::Replayed));
        self.arrive(d);
        self.pump();
        assert_eq!(self.at_xgate.len(), written, "a duplicate reached the TUN");
        assert_eq!(self.drops(DropReason::Replayed), replayed + 1);

        let mut forged = self.bt_sends(&from_bt(2, 100), false).expect("datagram");
        let last = forged.len() - 1;
        forged[last] ^= 0x55;
        let bad_tag = self.drops(DropReason::BadTag);
        self.arrive(forged);
        self.pump();
        assert_eq!(self.at_xgate.len(), written, "a forgery reached the TUN");
        assert_eq!(self.drops(DropReason::BadTag), bad_tag + 1);

        let early = self.bt_sends(&from_bt(3, 60), false).expect("datagram");
        for i in 0..proto::replay::WINDOW_SIZE as u32 + 10 {
            self.bt_sends(&from_bt(10 + i, 40), true);
        }
        let written = self.at_xgate.len();
        self.arrive(early);
        self.pump();
        assert_eq!(
            self.at_xgate.len(),
            written,
            "a packet behind the window reached the TUN"
        );
        assert_eq!(self.drops(DropReason::Replayed), replayed + 2);

        // The daemon's datagrams: boringtun takes each once.
        let sent_before = self.at_bt.len();
        self.worker
            .backend_mut()
            .incoming
            .push_back(Incoming::Inner(to_bt(5, 80)));
        let now = self.now();
        self.worker
            .step_at(now, &mut self.next_tick)
            .expect("worker step");
        let sent = take(&mut self.worker.backend_mut().outer_sent);
        assert_eq!(sent.len(), 1, "one sealed datagram");
        self.deliver_to_bt(&sent[0].0).expect("first copy accepted");
        assert!(
            self.deliver_to_bt(&sent[0].0).is_err(),
            "boringtun accepted a replay"
        );
        assert_eq!(self.at_bt.len(), sent_before + 1);
    }

    /// A datagram of a session past REJECT_AFTER_TIME is refused as expired.
    fn check_expiry(&mut self) {
        let late = self.bt_sends(&from_bt(7, 60), false).expect("datagram");
        self.offset += Duration::from_secs(181);
        MockClock::advance(Duration::from_secs(181));
        let (written, expired) = (self.at_xgate.len(), self.drops(DropReason::ExpiredSession));
        self.arrive(late);
        self.pump();
        assert_eq!(
            self.at_xgate.len(),
            written,
            "an expired session's packet reached the TUN"
        );
        assert_eq!(self.drops(DropReason::ExpiredSession), expired + 1);
    }
}

#[test]
fn the_daemon_initiates_to_boringtun_through_rekeys() {
    let _clock = CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut pair = Pair::new(None, true);
    // The packet waits in the worker while the plane initiates; boringtun answers.
    pair.xgate_sends(to_bt(0, 64));
    assert_eq!(pair.handshakes(), 1, "handshake completed");
    assert_eq!(
        pair.at_bt,
        vec![to_bt(0, 64)],
        "the staged packet went out after it"
    );
    pair.exchange_through_rekeys();
    eprintln!("sessions installed: {}", pair.handshakes());
    assert!(
        pair.handshakes() >= 4,
        "only {} sessions: fewer than 3 rekeys",
        pair.handshakes()
    );
    pair.check_rejections();
    pair.check_expiry();
    assert_eq!(
        pair.worker.backend_mut().free_buffers(),
        BUFFERS,
        "no buffer leaked"
    );
}

#[test]
fn boringtun_initiates_to_the_daemon_through_rekeys_with_psk() {
    let _clock = CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut pair = Pair::new(Some([0x5a; 32]), false);
    // boringtun stages the packet and sends an initiation: the worker forwards it, the plane
    // admits it and the responder thread answers; boringtun's staged packet confirms.
    let init = pair.bt_sends(&from_bt(0, 64), false).expect("initiation");
    assert_eq!(init.len(), 148);
    pair.arrive(init);
    pair.pump();
    assert_eq!(pair.handshakes(), 1);
    assert_eq!(
        pair.at_xgate,
        vec![from_bt(0, 64)],
        "the confirming packet reached the TUN"
    );
    pair.exchange_through_rekeys();
    eprintln!("sessions installed: {}", pair.handshakes());
    assert!(
        pair.handshakes() >= 4,
        "only {} sessions: fewer than 3 rekeys",
        pair.handshakes()
    );
    pair.check_rejections();
    pair.check_expiry();
    assert_eq!(
        pair.worker.backend_mut().free_buffers(),
        BUFFERS,
        "no buffer leaked"
    );
}

#[test]
fn a_replayed_initiation_gets_no_second_response() {
    let _clock = CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut pair = Pair::new(None, false);
    let init = pair.bt_sends(&from_bt(0, 64), false).expect("initiation");
    pair.arrive(init.clone());
    pair.pump();
    assert_eq!(pair.handshakes(), 1);
    pair.advance(Duration::from_secs(1));
    pair.arrive(init);
    pair.pump();
    assert_eq!(pair.handshakes(), 1, "a replayed initiation made a session");
}

#[test]
fn a_packet_sent_before_the_responder_session_is_confirmed_still_arrives() {
    let _clock = CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut pair = Pair::new(None, false);
    let init = pair.bt_sends(&from_bt(0, 64), false).expect("initiation");
    pair.arrive(init);
    // The response is made but not yet at boringtun: the daemon's session is unconfirmed, so
    // a packet for boringtun waits in the worker (which, as the kernel module does, asks for
    // a handshake of its own meanwhile).
    pair.run_daemon();
    pair.worker
        .backend_mut()
        .incoming
        .push_back(Incoming::Inner(to_bt(1, 64)));
    pair.run_daemon();
    assert!(pair.at_bt.is_empty());
    // Now boringtun gets the response and sends its staged packet, which confirms.
    pair.pump();
    assert_eq!(pair.at_xgate, vec![from_bt(0, 64)]);
    assert_eq!(
        pair.at_bt,
        vec![to_bt(1, 64)],
        "the waiting packet went out"
    );
}
