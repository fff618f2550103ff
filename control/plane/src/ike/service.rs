//! The IKE responder's threads: one reader per port (500, and 4500 where IKE carries a
//! non-ESP marker), and the thread that owns the `IkeEngine`, answers (IKE_SA_INIT through
//! the fair admission in `intake.rs`), and keeps its timers.
//! The management service reaches it through an `IkeHandle`: users in, state out. Nothing
//! here blocks the WireGuard plane: IKE has threads of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, Sender};
use datapath::kernel::addressed_udp::AddressedSocket;
use datapath::kernel::udp::BindError;
use ike::Identity;

use super::counters::IkeCounters;
use super::engine::{IkeEngine, Outgoing};
use super::intake::{Datagram, InitIntake};
use super::CrlWatch;
use super::{IkeSettings, IkeUser, SaSummary};
use crate::engine::{EspChange, Request as PlaneRequest};
use crate::events::EventSink;

/// How often the SAs' timers are looked at.
const TICK: Duration = Duration::from_millis(100);
/// Datagrams taken from the readers before queued key exchanges are worked on, and key
/// exchanges made, per round of the engine's loop (the intake sees a burst whole before it
/// chooses whom to serve).
const ARRIVALS_PER_ROUND: usize = 256;
const EXCHANGES_PER_ROUND: usize = 16;
/// Datagrams waiting for the engine before more are dropped (at most 64 MiB of them).
const QUEUE: usize = 1024;
/// The largest datagram read (IKE messages are at most 64 KiB; fragments are smaller).
const MAX_DATAGRAM: usize = 65535;
/// How long an answer that brings a new CHILD_SA waits for the control plane to queue the SA
/// for its worker (a plane busy with a handshake surge; the answer goes anyway after this).
const ESP_QUEUED_WITHIN: Duration = Duration::from_millis(100);
/// The non-ESP marker that precedes IKE on the NAT-T port (RFC 3948 §2.2).
const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// What the management service asks of the responder.
enum Request {
    Users { users: Vec<IkeUser>, replace: bool },
    Remove(Vec<Identity>),
    State(Sender<IkeState>),
    Stop,
}

/// The responder's state, for status and metrics.
#[derive(Debug, Clone)]
pub struct IkeState {
    /// The SAs that are up.
    pub sas: Vec<SaSummary>,
    /// The counters.
    pub counters: IkeCounters,
    /// How many users may authenticate.
    pub users: usize,
    /// The ports (IKE, NAT-T).
    pub ports: (u16, u16),
    /// Datagrams dropped because the engine was behind.
    pub queue_full: u64,
    /// ESP datagrams that reached the responder's NAT-T socket rather than a worker's
    /// (steering missed them; dropped).
    pub esp_not_carried: u64,
}

/// What the responder publishes once a second for `/metrics`: small, and read without
/// asking the IKE thread anything.
#[derive(Debug, Clone, Default)]
pub struct IkeStats {
    /// The counters.
    pub counters: IkeCounters,
    /// SAs up.
    pub sas_up: usize,
    /// SAs not (yet) authenticated.
    pub half_open: usize,
    /// Users who may authenticate.
    pub users: usize,
    /// Datagrams dropped because the engine was behind.
    pub queue_full: u64,
    /// ESP datagrams that reached the responder's NAT-T socket rather than a worker's
    /// (steering missed them; dropped).
    pub esp_not_carried: u64,
}

/// How often the statistics are published.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// The latest statistics.
type Board = Arc<Mutex<Option<Arc<IkeStats>>>>;

/// How the rest of xgate reaches the responder.
#[derive(Clone)]
pub struct IkeHandle {
    requests: Sender<Request>,
    identity: Identity,
    client_ca: Option<Arc<Vec<u8>>>,
    board: Board,
}

impl IkeHandle {
    /// The statistics published last (about a second old at most), if any yet.
    pub fn published(&self) -> Option<Arc<IkeStats>> {
        self.board
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// This server's identity, as IKE_AUTH sends it.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The CA certificate (DER) clients check this server by, when it has a certificate.
    pub fn client_ca(&self) -> Option<&[u8]> {
        self.client_ca.as_deref().map(Vec::as_slice)
    }

    /// Adds or replaces users (every user first, when `replace`).
    pub fn set_users(&self, users: Vec<IkeUser>, replace: bool) {
        let _ = self.requests.send(Request::Users { users, replace });
    }

    /// Removes users; their SAs are closed.
    pub fn remove_users(&self, ids: Vec<Identity>) {
        let _ = self.requests.send(Request::Remove(ids));
    }

    /// The current state, or `None` if the responder has stopped or does not answer in time.
    pub fn state(&self) -> Option<IkeState> {
        let (tx, rx) = bounded(1);
        self.requests.send(Request::State(tx)).ok()?;
        rx.recv_timeout(Duration::from_secs(2)).ok()
    }
}

/// The running responder; dropping it sends every peer a Delete and stops its threads.
pub struct IkeService {
    handle: IkeHandle,
    ports: (u16, u16),
    stop: Arc<AtomicBool>,
    engine: Option<JoinHandle<()>>,
    readers: Vec<JoinHandle<()>>,
}

/// Counts shared between the readers and the engine thread.
#[derive(Default)]
struct Shared {
    queue_full: std::sync::atomic::AtomicU64,
    esp: std::sync::atomic::AtomicU64,
}

impl IkeService {
    /// Binds both ports and starts the threads; users' ESP tunnels go to the control plane
    /// through `plane` (none: negotiated and reported only, as in tests of IKE alone).
    pub fn start(
        settings: IkeSettings,
        events: Arc<dyn EventSink>,
        plane: Option<Sender<PlaneRequest>>,
    ) -> Result<Self, BindError> {
        let ike = Arc::new(AddressedSocket::bind(settings.port, false)?);
        // Shared, so the workers' sockets can join the NAT-T port for ESP later.
        let nat = Arc::new(AddressedSocket::bind(settings.nat_port, true)?);
        let ports = (ike.port(), nat.port());
        let identity = settings.local_id.clone();
        let client_ca = settings.client_ca.clone().map(Arc::new);
        let crl = settings
            .crl_source
            .clone()
            .map(|s| CrlWatch::new(s, Instant::now()));
        let engine = IkeEngine::new(settings, events).map_err(|e| BindError::Io {
            port: ports.0,
            source: std::io::Error::other(e),
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        let (dg_tx, dg_rx) = bounded(QUEUE);
        let (req_tx, req_rx) = crossbeam_channel::unbounded();
        let spawn_err = |e: std::io::Error| BindError::Io {
            port: ports.0,
            source: e,
        };
        let mut readers = Vec::new();
        // Threads started before a failure are stopped again (they hold the ports).
        let stop_readers = |readers: &mut Vec<JoinHandle<()>>| {
            stop.store(true, Ordering::Relaxed);
            for r in readers.drain(..) {
                let _ = r.join();
            }
        };
        for (socket, nat_t) in [(ike.clone(), false), (nat.clone(), true)] {
            let (tx, stop, shared) = (dg_tx.clone(), stop.clone(), shared.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("xgate-ike-rx-{}", socket.port()))
                .spawn(move || read(&socket, nat_t, &tx, &stop, &shared));
            match spawned {
                Ok(r) => readers.push(r),
                Err(e) => {
                    stop_readers(&mut readers);
                    return Err(spawn_err(e));
                }
            }
        }
        let sockets = Sockets { ike, nat, plane };
        let board = Board::default();
        let published = board.clone();
        let engine = match std::thread::Builder::new()
            .name("xgate-ike".into())
            .spawn(move || {
                serve(
                    (engine, crl),
                    &sockets,
                    (&dg_rx, &req_rx),
                    &shared,
                    &published,
                )
            }) {
            Ok(e) => e,
            Err(e) => {
                stop_readers(&mut readers);
                return Err(spawn_err(e));
            }
        };
        tracing::info!(port = ports.0, nat_port = ports.1, "IKEv2 responder up");
        Ok(Self {
            handle: IkeHandle {
                requests: req_tx,
                identity,
                client_ca,
                board,
            },
            ports,
            stop,
            engine: Some(engine),
            readers,
        })
    }

    /// The handle.
    pub fn handle(&self) -> IkeHandle {
        self.handle.clone()
    }

    /// The ports bound (IKE, NAT-T).
    pub fn ports(&self) -> (u16, u16) {
        self.ports
    }
}

impl Drop for IkeService {
    fn drop(&mut self) {
        let _ = self.handle.requests.send(Request::Stop);
        if let Some(engine) = self.engine.take() {
            let _ = engine.join();
        }
        self.stop.store(true, Ordering::Relaxed);
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

/// Reads one port until told to stop.
fn read(
    socket: &AddressedSocket,
    nat_t: bool,
    tx: &Sender<Datagram>,
    stop: &AtomicBool,
    shared: &Shared,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut last_warning: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let arrival = match socket.recv(&mut buf) {
            Ok(Some(a)) => a,
            Ok(None) => continue,
            Err(e) => {
                // A lasting error is said once a minute, not ten times a second.
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(port = socket.port(), "IKE socket: {e}");
                    last_warning = Some(Instant::now());
                }
                std::thread::sleep(TICK);
                continue;
            }
        };
        let d = &buf[..arrival.len];
        let bytes = if nat_t {
            match d {
                [0xff] => continue, // a NAT keepalive (RFC 3948 §2.3)
                [0, 0, 0, 0, rest @ ..] => rest.to_vec(),
                _ => {
                    shared.esp.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        } else {
            d.to_vec()
        };
        let dg = Datagram {
            bytes,
            from: arrival.from,
            to: arrival.to,
        };
        if tx.try_send(dg).is_err() {
            shared.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The two sockets, for sending, and the control plane, for ESP tunnels.
struct Sockets {
    ike: Arc<AddressedSocket>,
    nat: Arc<AddressedSocket>,
    plane: Option<Sender<PlaneRequest>>,
}

impl Sockets {
    /// Passes the engine's ESP tunnel changes to the control plane, in order, then sends
    /// `out`. A new SA is in its worker's queue before the answer that lets the peer use it
    /// leaves (the plane says so, within `ESP_QUEUED_WITHIN`), and the worker applies its
    /// queue before the packets of each batch.
    fn deliver(&self, engine: &mut IkeEngine, out: Vec<Outgoing>) {
        if let Some(plane) = &self.plane {
            for change in engine.take_esp() {
                let new_sa = matches!(change, EspChange::Up { .. } | EspChange::Rekeyed { .. });
                if !new_sa {
                    let _ = plane.send(PlaneRequest::Esp(change, None));
                    continue;
                }
                let (tx, rx) = bounded(1);
                if plane.send(PlaneRequest::Esp(change, Some(tx))).is_ok()
                    && rx.recv_timeout(ESP_QUEUED_WITHIN).is_err()
                {
                    tracing::debug!("the control plane was slow to queue an ESP SA");
                }
            }
        } else {
            drop(engine.take_esp());
        }
        self.send(out);
    }

    /// Sends each datagram from the port it names (the NAT-T port with the marker).
    fn send(&self, out: Vec<Outgoing>) {
        for o in out {
            let result = if o.from.port() == self.nat.port() {
                let mut framed = Vec::with_capacity(4 + o.bytes.len());
                framed.extend_from_slice(&NON_ESP_MARKER);
                framed.extend_from_slice(&o.bytes);
                self.nat.send(&framed, o.from.ip(), o.to)
            } else {
                self.ike.send(&o.bytes, o.from.ip(), o.to)
            };
            if let Err(e) = result {
                tracing::debug!(to = %o.to, "IKE send: {e}");
            }
        }
    }
}

/// The engine's thread: datagrams, requests and the tick, until `Request::Stop`; the
/// statistics to `board` once a second.
fn serve(
    (mut engine, mut crl): (IkeEngine, Option<CrlWatch>),
    sockets: &Sockets,
    (datagrams, requests): (&Receiver<Datagram>, &Receiver<Request>),
    shared: &Shared,
    board: &Board,
) {
    let epoch = Instant::now();
    let mut intake = InitIntake::new(epoch);
    let mut next_tick = epoch + TICK;
    let mut next_publish = epoch;
    loop {
        // Queued key exchanges keep the loop from sleeping.
        let wait = if intake.waiting() > 0 {
            Duration::ZERO
        } else {
            next_tick.saturating_duration_since(Instant::now())
        };
        select! {
            recv(datagrams) -> d => {
                let Ok(d) = d else { break };
                let mut out = intake.arrive(&mut engine, d, (Instant::now(), epoch));
                for d in datagrams.try_iter().take(ARRIVALS_PER_ROUND) {
                    out.extend(intake.arrive(&mut engine, d, (Instant::now(), epoch)));
                }
                sockets.deliver(&mut engine, out);
            }
            recv(requests) -> r => {
                let Ok(r) = r else { break };
                let now = Instant::now();
                match r {
                    Request::Users { users, replace } => {
                        let out = engine.set_users(users, replace, now);
                        sockets.deliver(&mut engine, out);
                    }
                    Request::Remove(ids) => {
                        let out = engine.remove_users(&ids, now);
                        sockets.deliver(&mut engine, out);
                    }
                    Request::State(tx) => {
                        let _ = tx.try_send(IkeState {
                            sas: engine.sas(),
                            counters: engine.counters().clone(),
                            users: engine.user_count(),
                            ports: (sockets.ike.port(), sockets.nat.port()),
                            queue_full: shared.queue_full.load(Ordering::Relaxed),
                            esp_not_carried: shared.esp.load(Ordering::Relaxed),
                        });
                    }
                    Request::Stop => {
                        let out = engine.close_all(now);
                        sockets.deliver(&mut engine, out);
                        break;
                    }
                }
            }
            default(wait) => {}
        }
        if intake.waiting() > 0 {
            let out = intake.work(&mut engine, EXCHANGES_PER_ROUND);
            sockets.deliver(&mut engine, out);
        }
        let now = Instant::now();
        if now >= next_tick {
            let out = engine.on_tick(now);
            sockets.deliver(&mut engine, out);
            if let Some(store) = crl.as_mut().and_then(|w| w.poll(now)) {
                let out = engine.replace_trust(store, now);
                sockets.deliver(&mut engine, out);
            }
            next_tick = now + TICK;
        }
        if now >= next_publish {
            let stats = IkeStats {
                counters: engine.counters().clone(),
                sas_up: engine.sas_up(),
                half_open: engine.half_open(),
                users: engine.user_count(),
                queue_full: shared.queue_full.load(Ordering::Relaxed),
                esp_not_carried: shared.esp.load(Ordering::Relaxed),
            };
            *board.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(stats));
            next_publish = now + PUBLISH_EVERY;
        }
    }
}
