//! The control plane driven directly, with a stand-in worker whose messages the test reads
//! and a clock in the test's hands: tunnel expiry at REJECT_AFTER_TIME, and the admission
//! rules under spoofed floods (a full backlog, or failures charged to a victim's address)
//! never keeping out a client that proves its address.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use datapath::launch::WorkerHandle;
use datapath::messages::{HandshakeDatagram, ToWorker};
use proto::constants::REJECT_AFTER_TIME;
use proto::cookie::CookieJar;
use proto::handshake::{create_initiation, LocalIdentity, RemotePeer};
use proto::tai64n::Tai64N;
use proto::wire::Message;
use proto::{PresharedKey, PrivateKey, PublicKey};
use rand_core::{OsRng, RngCore};

use super::{ControlPlane, PlaneChannels, HANDSHAKE_BACKLOG};
use crate::events::{DownReason, EventSink, TunnelEvent};
use crate::update::{DeviceUpdate, PeerUpdate};

/// Keeps the plane's tunnel events for the test to read.
struct Recorder(Sender<TunnelEvent>);

impl EventSink for Recorder {
    fn publish(&self, event: TunnelEvent) {
        let _ = self.0.send(event);
    }
}

struct Harness {
    plane: ControlPlane,
    handshakes: Sender<HandshakeDatagram>,
    worker: Receiver<ToWorker>,
    /// The other stand-in workers' queues (worker 1 onwards).
    others: Vec<Receiver<ToWorker>>,
    events: Receiver<TunnelEvent>,
    server: PublicKey,
    client: PrivateKey,
}

impl Harness {
    /// A plane with one responder thread, one stand-in worker and one configured client.
    fn new() -> Self {
        Self::with_workers(1)
    }

    /// The same with `n` stand-in workers (the client, peer 0, is worker 0's).
    fn with_workers(n: usize) -> Self {
        let (hs_tx, hs_rx) = bounded(HANDSHAKE_BACKLOG * 2);
        let (_ev_tx, ev_rx) = unbounded();
        let (_req_tx, req_rx) = unbounded();
        let (stop_tx, _stop_rx) = unbounded();
        let (senders, mut receivers): (Vec<_>, Vec<_>) = (0..n.max(1)).map(|_| unbounded()).unzip();
        let worker_rx = receivers.remove(0);
        let (recorder, events) = unbounded();
        let mut plane = ControlPlane::new(
            "xt0",
            0,
            0,
            1,
            PlaneChannels {
                handshakes: hs_rx,
                events: ev_rx,
                requests: req_rx,
                stop: stop_tx,
                workers: senders
                    .into_iter()
                    .map(|tx| WorkerHandle::detached(tx).expect("eventfd"))
                    .collect(),
                sockets: Vec::new(),
                events_out: std::sync::Arc::new(Recorder(recorder)),
                outer: Default::default(),
                live_indices: Default::default(),
            },
        )
        .expect("plane");
        let server = PrivateKey::generate(&mut OsRng);
        let client = PrivateKey::generate(&mut OsRng);
        let server_key = server.public_key();
        plane
            .apply(DeviceUpdate {
                private_key: Some(Some(server)),
                peers: vec![PeerUpdate::new(client.public_key())],
                ..DeviceUpdate::default()
            })
            .expect("configured");
        Self {
            plane,
            handshakes: hs_tx,
            worker: worker_rx,
            others: receivers,
            events,
            server: server_key,
            client,
        }
    }

    /// Hands `messages` to the plane as worker 0 would, a batch at a time.
    fn receive(&mut self, messages: impl IntoIterator<Item = ([u8; 148], SocketAddr)>) {
        self.receive_on(0, messages);
    }

    /// The same as worker `worker` would.
    fn receive_on(
        &mut self,
        worker: usize,
        messages: impl IntoIterator<Item = ([u8; 148], SocketAddr)>,
    ) {
        for (bytes, from) in messages {
            let d = HandshakeDatagram {
                worker,
                from,
                link: None,
                at: Instant::now(),
                len: bytes.len(),
                bytes,
            };
            if self.handshakes.try_send(d).is_err() {
                self.drain_handshakes();
                self.handshakes.try_send(d).expect("room after draining");
            }
        }
        self.drain_handshakes();
    }

    fn drain_handshakes(&mut self) {
        while self
            .plane
            .on_handshakes(Instant::now())
            .expect("workers connected")
            > 0
        {}
    }

    /// Lets the responder thread finish one batch and the plane take it.
    fn one_outcome_batch(&mut self) {
        let outcomes = self
            .plane
            .responders
            .outcomes
            .recv_timeout(Duration::from_secs(5))
            .expect("the responder thread answers");
        self.plane.on_outcomes(outcomes, Instant::now());
    }

    /// What the plane asked the worker to send to `to` so far.
    fn sent_to(&self, to: SocketAddr) -> Vec<Vec<u8>> {
        self.worker
            .try_iter()
            .filter_map(|m| match m {
                ToWorker::Transmit {
                    to: t, len, bytes, ..
                } if t == to => Some(bytes[..len].to_vec()),
                _ => None,
            })
            .collect()
    }

    /// A real initiation from the client, stamped by `jar` (MAC2 too once it holds a cookie).
    fn initiation(&self, jar: &mut CookieJar, index: u32) -> [u8; 148] {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
        self.initiation_at(jar, index, unix + Duration::from_millis(u64::from(index)))
    }

    /// The same with timestamp `unix` (a fresh ephemeral each time: never an exact copy).
    fn initiation_at(&self, jar: &mut CookieJar, index: u32, unix: Duration) -> [u8; 148] {
        let local = LocalIdentity::new(&self.client);
        let remote = RemotePeer::new(&local, self.server, None);
        let ts = Tai64N::from_unix(unix);
        let (_, mut m) = create_initiation(&local, &remote, index, ts, &mut OsRng).expect("init");
        jar.stamp(&mut m, Instant::now());
        m
    }

    /// An initiation forged to cost a DH: random ephemeral and ciphertext, valid MAC1.
    fn junk(&self) -> [u8; 148] {
        let mut m = [0u8; 148];
        m[0] = 1;
        OsRng.fill_bytes(&mut m[4..116]);
        CookieJar::for_recipient(&self.server).stamp(&mut m, Instant::now());
        m
    }
}

fn addr(n: u32) -> SocketAddr {
    SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 | n), 40000))
}

/// Takes the cookie from the plane's reply into `jar`; panics if there was none.
fn take_cookie(jar: &mut CookieJar, sent: &[Vec<u8>]) {
    let reply = sent
        .iter()
        .find_map(|m| match Message::parse(m) {
            Ok(Message::CookieReply(r)) => Some(r),
            _ => None,
        })
        .expect("a cookie reply");
    jar.consume(&reply, Instant::now()).expect("cookie opens");
}

#[test]
fn the_response_leaves_through_the_owner_after_the_session_is_installed_there() {
    // The initiation arrives on worker 1; the client is worker 0's. Had the response left
    // through worker 1, the client's first packets could reach worker 0 before its install.
    let mut h = Harness::with_workers(2);
    let mut jar = CookieJar::for_recipient(&h.server);
    let m = h.initiation(&mut jar, 1);
    h.receive_on(1, [(m, addr(1))]);
    h.one_outcome_batch();
    let owner: Vec<ToWorker> = h.worker.try_iter().collect();
    let install = owner
        .iter()
        .position(|m| matches!(m, ToWorker::InstallSession { .. }))
        .expect("the session is installed in its owner");
    let response = owner
        .iter()
        .position(|m| matches!(m, ToWorker::Transmit { to, .. } if *to == addr(1)))
        .expect("the response leaves through the owner");
    assert!(install < response, "install first, then the response");
    let elsewhere = h.others[0]
        .try_iter()
        .filter(|m| {
            matches!(
                m,
                ToWorker::Transmit { .. } | ToWorker::InstallSession { .. }
            )
        })
        .count();
    assert_eq!(
        elsewhere, 0,
        "the receiving worker neither answers nor installs"
    );
}

#[test]
fn a_tunnel_is_reported_down_when_its_session_passes_reject_after_time() {
    let mut h = Harness::new();
    let mut jar = CookieJar::for_recipient(&h.server);
    let init = h.initiation(&mut jar, 7);
    h.receive([(init, addr(1))]);
    h.one_outcome_batch();
    let up = Instant::now();
    let event = h.events.try_recv().expect("an event");
    assert!(matches!(event, TunnelEvent::Up { .. }), "{event:?}");

    h.plane
        .on_tick(up + REJECT_AFTER_TIME - Duration::from_secs(1));
    assert!(h.events.try_recv().is_err(), "still up a second before");
    h.plane
        .on_tick(up + REJECT_AFTER_TIME + Duration::from_secs(1));
    let event = h.events.try_recv().expect("an event");
    assert!(
        matches!(
            event,
            TunnelEvent::Down {
                reason: DownReason::Expired,
                ..
            }
        ),
        "{event:?}"
    );
    assert_eq!(h.plane.counters.responses_sent, 1);
}

#[test]
fn a_spoofed_flood_that_fills_the_backlog_does_not_keep_out_a_proven_client() {
    let mut h = Harness::new();
    // Junk from more addresses than the backlog holds: each gets a slot until it is full.
    let flood: Vec<_> = (1..=HANDSHAKE_BACKLOG as u32 + 500)
        .map(|n| (h.junk(), addr(n)))
        .collect();
    h.receive(flood);
    assert!(h.plane.counters.initiations_backlog_full > 0);
    let client = addr(0x00ff_0001);
    let mut jar = CookieJar::for_recipient(&h.server);
    let first = h.initiation(&mut jar, 1);
    h.receive([(first, client)]);
    let sent = h.sent_to(client);
    take_cookie(&mut jar, &sent);
    // Proven now: it goes ahead of the thousands of unproven initiations still waiting.
    let second = h.initiation(&mut jar, 2);
    h.receive([(second, client)]);
    let mut answered = false;
    for _ in 0..20 {
        h.one_outcome_batch();
        if h.sent_to(client).iter().any(|m| m.len() == 92) {
            answered = true;
            break;
        }
    }
    assert!(answered, "no response to the proven client");
    assert!(
        h.plane.admission.waiting_unproven() > HANDSHAKE_BACKLOG / 2,
        "answered ahead of the flood, not after it ({} still waiting)",
        h.plane.admission.waiting_unproven()
    );
}

#[test]
fn failures_spoofed_from_a_clients_address_cost_it_a_cookie_not_its_access() {
    let mut h = Harness::new();
    let victim = addr(77);
    // Junk "from" the victim: each costs the responder a DH and fails.
    let junk: Vec<_> = (0..40).map(|_| (h.junk(), victim)).collect();
    h.receive(junk);
    while h.plane.responders.in_flight() > 0 {
        h.one_outcome_batch();
    }
    assert!(h.plane.counters.bad_static >= 16, "{:?}", h.plane.counters);
    let _ = h.sent_to(victim);
    // The address must now prove itself: a cookie, not a DH.
    let mut jar = CookieJar::for_recipient(&h.server);
    let first = h.initiation(&mut jar, 1);
    h.receive([(first, victim)]);
    assert!(h.plane.counters.initiations_failing_source > 0);
    take_cookie(&mut jar, &h.sent_to(victim));
    // Proven, the real client is answered: spoofed failures never limit proven traffic.
    let second = h.initiation(&mut jar, 2);
    h.receive([(second, victim)]);
    h.one_outcome_batch();
    assert!(
        h.sent_to(victim).iter().any(|m| m.len() == 92),
        "the proven client was not answered: {:?}",
        h.plane.counters
    );
}

#[test]
fn a_restated_or_changed_preshared_key_keeps_the_replay_guard() {
    let mut h = Harness::new();
    let client = addr(5);
    let mut jar = CookieJar::for_recipient(&h.server);
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let first = h.initiation_at(&mut jar, 1, stamp);
    h.receive([(first, client)]);
    h.one_outcome_batch();
    assert!(h.sent_to(client).iter().any(|m| m.len() == 92), "answered");
    // `wg setconf` restates the (absent) preshared key, then one is set: neither may let an
    // initiation with an already accepted timestamp through again.
    for (what, psk) in [("restated", None), ("changed", Some(PresharedKey([7; 32])))] {
        let mut update = PeerUpdate::new(h.client.public_key());
        update.preshared_key = Some(psk);
        h.plane
            .apply(DeviceUpdate {
                peers: vec![update],
                ..DeviceUpdate::default()
            })
            .expect("applied");
        let replayed = h.plane.counters.replayed_initiation;
        let again = h.initiation_at(&mut jar, 2, stamp);
        h.receive([(again, client)]);
        h.one_outcome_batch();
        assert_eq!(
            h.plane.counters.replayed_initiation,
            replayed + 1,
            "an old timestamp after the preshared key was {what}"
        );
        assert!(!h.sent_to(client).iter().any(|m| m.len() == 92));
    }
}

/// The snapshot requests waiting in a stand-in worker's queue.
fn snapshot_requests(
    queue: &Receiver<ToWorker>,
) -> Vec<Sender<datapath::messages::WorkerSnapshot>> {
    queue
        .try_iter()
        .filter_map(|m| match m {
            ToWorker::Snapshot(reply) => Some(reply),
            _ => None,
        })
        .collect()
}

fn answer(reply: &Sender<datapath::messages::WorkerSnapshot>, worker: usize, datagrams: u64) {
    let counters = datapath::stats::WorkerCounters {
        rx_datagrams: datagrams,
        tx_datagrams: datagrams / 2,
        ..Default::default()
    };
    let snapshot = datapath::messages::WorkerSnapshot {
        worker,
        counters,
        peers: Vec::new(),
        outer: String::new(),
    };
    reply.send(snapshot).expect("the plane listens");
}

#[test]
fn the_state_is_published_for_the_api_without_waiting_for_a_worker() {
    use super::published::GATHER_TIMEOUT;
    use super::PUBLISH_EVERY;
    let mut h = Harness::with_workers(2);
    let board = h.plane.board();
    let start = Instant::now();
    h.plane.publish_state(start);
    let first = snapshot_requests(&h.worker);
    let second = snapshot_requests(&h.others[0]);
    assert_eq!(
        (first.len(), second.len()),
        (1, 1),
        "each worker asked once"
    );
    // Worker 1 is slow: the plane goes on, and publishes without it once the time is up.
    answer(&first[0], 0, 1000);
    h.plane.publish_state(start + Duration::from_millis(10));
    assert!(board.latest().is_none(), "published before the time was up");
    assert!(
        start.elapsed() < GATHER_TIMEOUT / 2,
        "the plane waited for the slow worker"
    );
    h.plane.publish_state(start + GATHER_TIMEOUT);
    let p = board.latest().expect("published");
    assert_eq!(p.state.per_worker[0].rx_datagrams, 1000);
    assert_eq!(p.state.per_worker[1].rx_datagrams, 0);
    assert_eq!(p.state.peers.len(), 1, "the configured client");

    // The next round, a second later: both answer, and rates are taken between the two.
    let next = start + PUBLISH_EVERY * 2;
    h.plane.publish_state(next);
    answer(&snapshot_requests(&h.worker)[0], 0, 3000);
    answer(&snapshot_requests(&h.others[0])[0], 1, 500);
    h.plane.publish_state(next + Duration::from_millis(1));
    let p = board.latest().expect("published again");
    let secs = (next - start).as_secs_f64();
    assert!(
        (p.rates[0].rx_pps - 2000.0 / secs).abs() < 1e-6,
        "{:?}",
        p.rates
    );
    assert!(
        (p.rates[1].rx_pps - 500.0 / secs).abs() < 1e-6,
        "{:?}",
        p.rates
    );
    assert!(
        (p.rates[0].tx_pps - 1000.0 / secs).abs() < 1e-6,
        "{:?}",
        p.rates
    );

    // Once there is a publication, one a worker did not answer for is not made: its
    // counters would read as reset to zero. The previous one stays.
    let third = next + PUBLISH_EVERY * 2;
    h.plane.publish_state(third);
    answer(&snapshot_requests(&h.worker)[0], 0, 9000);
    h.plane.publish_state(third + GATHER_TIMEOUT);
    let kept = board.latest().expect("still published");
    assert_eq!(
        kept.taken, p.taken,
        "a partial gathering replaced a whole one"
    );
    assert_eq!(kept.state.per_worker[1].rx_datagrams, 500);
}

#[test]
fn many_peers_are_published_a_slice_at_a_time_each_with_its_figures() {
    use super::publishing::SLICE;
    let mut h = Harness::new();
    let n = SLICE * 2 + 100;
    let keys: Vec<PublicKey> = (0..n)
        .map(|_| PrivateKey::generate(&mut OsRng).public_key())
        .collect();
    h.plane
        .apply(DeviceUpdate {
            peers: keys.iter().map(|k| PeerUpdate::new(*k)).collect(),
            ..DeviceUpdate::default()
        })
        .expect("peers added");
    let board = h.plane.board();
    let start = Instant::now();
    h.plane.publish_state(start);
    let reply = snapshot_requests(&h.worker).pop().expect("worker asked");
    // The worker knows every peer (numbers 0..=n; 0 is the harness's client) and has
    // counted bytes for each: peer i received i bytes.
    let peers = (0..=n as u32)
        .map(|id| datapath::messages::PeerStats {
            peer: id,
            endpoint: None,
            rx_bytes: u64::from(id),
            tx_bytes: 0,
            last_handshake: None,
        })
        .collect();
    reply
        .send(datapath::messages::WorkerSnapshot {
            worker: 0,
            counters: Default::default(),
            peers,
            outer: String::new(),
        })
        .expect("the plane listens");
    let mut polls = 0;
    while board.latest().is_none() {
        h.plane.publish_state(start + Duration::from_millis(1));
        polls += 1;
        assert!(polls < 10, "never published");
    }
    assert!(polls >= 3, "{n} peers merged in {polls} polls: not sliced");
    let p = board.latest().expect("published");
    assert_eq!(p.state.peers.len(), n + 1);
    let by_key: std::collections::HashMap<_, _> = p
        .state
        .peers
        .iter()
        .map(|s| (s.public_key, s.rx_bytes))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(by_key[k], i as u64 + 1, "peer {i}'s own figures");
    }
}

#[test]
fn an_update_that_asks_for_it_starts_a_handshake_at_the_given_endpoint() {
    let mut h = Harness::new();
    let update = |key: PublicKey, to: SocketAddr, initiate: bool| {
        let mut u = PeerUpdate::new(key);
        u.update_only = true;
        u.endpoint = Some(to);
        u.initiate = initiate;
        DeviceUpdate {
            peers: vec![u],
            ..DeviceUpdate::default()
        }
    };
    // An endpoint alone starts nothing (xgate initiates when it has data).
    let client = h.client.public_key();
    h.plane
        .apply(update(client, addr(7), false))
        .expect("applied");
    assert!(h.sent_to(addr(7)).is_empty());
    // Asked to, it sends an initiation there at once (a node taking over a silent one's
    // users).
    h.plane
        .apply(update(client, addr(8), true))
        .expect("applied");
    let sent = h.sent_to(addr(8));
    assert_eq!(sent.len(), 1, "one initiation");
    assert!(matches!(
        Message::parse(&sent[0]),
        Ok(Message::Initiation(_))
    ));
    // A key that is no peer's is neither created nor reached for.
    let stranger = PrivateKey::generate(&mut OsRng).public_key();
    h.plane
        .apply(update(stranger, addr(9), true))
        .expect("applied");
    assert!(h.sent_to(addr(9)).is_empty());
    assert_eq!(h.plane.peers.len(), 1);
}
