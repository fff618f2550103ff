//! The control plane: one thread that owns everything slow or shared. It admits and finishes
//! handshakes (`answers`; the public-key work of answering runs on the responder threads of
//! `crate::responders`) and runs our own (`initiations`), keeps the peers and their routes
//! (`known_peers`), hands out receiver indices (`indices`), applies configuration changes, and
//! answers state queries. Workers get sessions, routes and transmit requests from it over
//! their channels.

mod answers;
mod changes;
mod counters;
mod device_state;
mod esp_tunnels;
mod handle;
mod indices;
mod initiations;
pub mod known_peers;
mod published;
mod publishing;
#[cfg(test)]
mod tests;

pub use counters::ControlCounters;
pub use device_state::{DeviceState, PeerState};
pub use esp_tunnels::EspChange;
pub use handle::{AskError, PlaneHandle};
pub use published::{Board, Published, WorkerRates, PUBLISH_EVERY};

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};
use datapath::launch::WorkerHandle;
use datapath::messages::{peer_owner, HandshakeDatagram, ToWorker, WorkerEvent};
use datapath::route::PeerId;
use ipnet::IpNet;
use proto::cookie::CookieChecker;
use proto::handshake::LocalIdentity;
use proto::tai64n::WallClock;
use proto::PrivateKey;

use crate::admission::Admission;
use crate::events::EventSink;
use crate::responders::wireguard::Job;
use crate::responders::{ResponderPool, WireguardResponder};
use crate::update::DeviceUpdate;
use indices::Indices;
use known_peers::Peers;

/// How often handshake retransmissions and load are checked.
const TICK: Duration = Duration::from_millis(100);
/// Capacity of the workers' handshake queue to the control plane.
pub const HANDSHAKE_QUEUE: usize = 4096;
/// Initiations that may wait, per responder thread, all sources together: at about 6,000
/// handshakes per second per thread the last one waits 1.4 s, inside the initiator's 5 s
/// retransmission timer. Refusing sooner would cost a user a cookie and that 5 s wait.
pub const HANDSHAKE_BACKLOG: usize = 8192;
/// The same for sources that proved their address with MAC2 (served first).
pub const PROVEN_BACKLOG: usize = 1024;
/// Above this many waiting initiations, responses to our own initiations without a valid MAC2
/// get a cookie reply instead of a Diffie-Hellman.
const UNDER_LOAD_DEPTH: usize = 512;

/// Why the daemon should stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT or SIGTERM.
    Signal(i32),
    /// The TUN interface was deleted (e.g. `ip link del`, `wg-quick down`).
    InterfaceGone,
    /// The UAPI socket file was deleted.
    SocketRemoved,
    /// A worker stopped on an error.
    WorkerFailed(String),
    /// A thread the daemon cannot do without panicked (which, where, why).
    Panicked(String),
}

/// Why a configuration change could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// The new listen port is taken.
    #[error("listen port {0} is in use")]
    PortInUse(u16),
    /// Sockets could not be opened or changed.
    #[error("{0}")]
    Io(String),
}

impl SetError {
    /// The errno the UAPI reports for this error.
    pub fn errno(&self) -> i32 {
        match self {
            SetError::PortInUse(_) => libc::EADDRINUSE,
            SetError::Io(_) => libc::EIO,
        }
    }
}

/// A request from the UAPI server or the daemon.
pub enum Request {
    /// Report the interface's state.
    Get(Sender<DeviceState>),
    /// Apply a change.
    Set(DeviceUpdate, Sender<Result<(), SetError>>),
    /// An IKEv2 user's ESP tunnel changed (from the IKE responder); the sender, if any, is
    /// told once the change is in the owning worker's queue.
    Esp(EspChange, Option<Sender<()>>),
}

/// The control-plane thread, stopped and joined when dropped.
pub struct RunningPlane {
    shutdown: Option<Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RunningPlane {
    fn drop(&mut self) {
        drop(self.shutdown.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Our private key with everything derived from it.
struct Identity {
    private: PrivateKey,
    local: Arc<LocalIdentity>,
    checker: CookieChecker,
}

/// The channels and handles the control plane is wired with.
pub struct PlaneChannels {
    /// Handshake messages from workers.
    pub handshakes: Receiver<HandshakeDatagram>,
    /// Events from workers.
    pub events: Receiver<WorkerEvent>,
    /// Requests from the UAPI server and the daemon.
    pub requests: Receiver<Request>,
    /// Where to say the daemon should stop.
    pub stop: Sender<StopReason>,
    /// The workers.
    pub workers: Vec<WorkerHandle>,
    /// The workers' outer sockets (for listen port and fwmark changes).
    pub sockets: Vec<Arc<OwnedFd>>,
    /// Where tunnel up/down events go.
    pub events_out: Arc<dyn EventSink>,
    /// The outer side (AF_XDP or io_uring).
    pub outer: OuterSummary,
    /// The live receiver indices the workers check handovers against; the plane counts
    /// each index in as it hands it out and out as it frees it.
    pub live_indices: Arc<datapath::live_indices::LiveIndices>,
}

/// What the control plane knows of the outer side.
#[derive(Default)]
pub struct OuterSummary {
    /// What it runs on (`af-xdp on eth0 native 4 queue(s)`, `io-uring (...)`).
    pub summary: String,
    /// How each worker reaches it, by worker number.
    pub per_worker: Vec<String>,
    /// The steering programs, to follow listen-port changes.
    pub steering: Option<Arc<datapath::io::af_xdp::steering::Steering>>,
    /// The address pools: with the peers' allowed IPs, what the LAN side steers to the
    /// workers (`inner = "af-xdp"`).
    pub lan_pools: Vec<IpNet>,
}

/// The plane's inputs closed: every worker, or everyone who could send requests, is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the control plane's inputs are closed")]
pub struct Closed;

/// The control plane's state.
pub struct ControlPlane {
    name: String,
    identity: Option<Identity>,
    listen_port: u16,
    fwmark: u32,
    peers: Peers,
    indices: Indices,
    channels: PlaneChannels,
    rng: rand_core::OsRng,
    clock: WallClock,
    counters: ControlCounters,
    routes_dirty: bool,
    /// ESP tunnels' routed addresses, by tunnel.
    esp_routes: std::collections::HashMap<PeerId, Vec<IpNet>>,
    /// Peers with a usable session, and when their newest one was installed.
    tunnels: std::collections::HashMap<PeerId, Instant>,
    /// Initiations waiting for a responder thread (proven sources, by MAC2, first); exact
    /// replays (by ephemeral) and failing sources are refused there.
    admission: Admission<Job>,
    /// Workers sent messages (`queue_for`) since they were last woken.
    unwoken: Vec<bool>,
    /// The threads that answer initiations.
    responders: ResponderPool<WireguardResponder>,
    /// When `on_tick` is next due.
    next_tick: Instant,
    /// Where the state is published for the API.
    board: Arc<Board>,
    /// The workers' answers for the next publication, while they come in.
    gathering: Option<published::Gathering>,
    /// The next publication, while its peers are merged a slice per poll.
    assembly: Option<publishing::Assembly>,
    /// Buffers kept from one publication to the next.
    spare: publishing::Spare,
    /// When the next gathering starts.
    next_publish: Instant,
    /// A change was applied: gather again without waiting for `next_publish`.
    publish_soon: bool,
    /// When the latest gathering started (changes gather at most once per `MIN_GAP`).
    last_gathering: Instant,
}

impl ControlPlane {
    /// A control plane for interface `name`, listening on `listen_port`, with
    /// `handshake_threads` responder threads.
    pub fn new(
        name: &str,
        listen_port: u16,
        fwmark: u32,
        handshake_threads: usize,
        channels: PlaneChannels,
    ) -> std::io::Result<Self> {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let peers = Peers::default();
        peers.directory().warm_in_background()?;
        let workers = channels.workers.len();
        let responders = ResponderPool::start(
            handshake_threads,
            Arc::new(WireguardResponder::new(peers.directory())),
        )?;
        Ok(Self {
            name: name.to_string(),
            identity: None,
            listen_port,
            fwmark,
            peers,
            indices: Indices::new(channels.live_indices.clone()),
            channels,
            rng: rand_core::OsRng,
            clock: WallClock::new(Instant::now(), unix),
            counters: ControlCounters::default(),
            routes_dirty: false,
            esp_routes: std::collections::HashMap::new(),
            tunnels: std::collections::HashMap::new(),
            admission: Admission::new(
                HANDSHAKE_BACKLOG * handshake_threads.max(1),
                PROVEN_BACKLOG,
                Instant::now(),
            ),
            unwoken: vec![false; workers],
            responders,
            next_tick: Instant::now() + TICK,
            board: Arc::new(Board::default()),
            gathering: None,
            assembly: None,
            spare: publishing::Spare::default(),
            next_publish: Instant::now(),
            publish_soon: false,
            last_gathering: Instant::now(),
        })
    }

    /// Where this plane publishes its state once per `PUBLISH_EVERY`.
    pub fn board(&self) -> Arc<Board> {
        self.board.clone()
    }

    /// Runs the plane on a thread of its own until the returned guard is dropped.
    pub fn spawn(self) -> std::io::Result<RunningPlane> {
        let (shutdown, until) = crossbeam_channel::bounded(0);
        let thread = std::thread::Builder::new()
            .name("xgate-control".into())
            .spawn(move || self.run(until))?;
        Ok(RunningPlane {
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// Runs until `shutdown` closes (or an input the plane cannot do without does): waits
    /// until something arrives or the tick is due, reads the clock once, and polls.
    pub fn run(mut self, shutdown: Receiver<()>) {
        loop {
            // A publication being merged goes on at the next poll, whatever arrives.
            let wait = if self.publishing() {
                Duration::ZERO
            } else {
                self.next_tick.saturating_duration_since(Instant::now())
            };
            let ready = {
                let mut inputs = Select::new();
                inputs.recv(&shutdown);
                inputs.recv(&self.channels.handshakes);
                inputs.recv(&self.responders.outcomes);
                inputs.recv(&self.channels.events);
                inputs.recv(&self.channels.requests);
                if let Some(g) = &self.gathering {
                    inputs.recv(&g.answers);
                }
                inputs.ready_timeout(wait)
            };
            if ready == Ok(0) || self.poll(Instant::now()).is_err() {
                return;
            }
        }
    }

    /// Handles everything waiting as of `now`: a batch of handshake messages, the responder
    /// threads' outcomes, worker events and requests, and the tick when due; then wakes the
    /// workers it sent messages and publishes changed routes. The run loop and tests drive
    /// the plane through this alone. Err once the workers or the requesters are gone.
    pub fn poll(&mut self, now: Instant) -> Result<(), Closed> {
        self.on_handshakes(now)?;
        while let Ok(outcomes) = self.responders.outcomes.try_recv() {
            self.on_outcomes(outcomes, now);
        }
        loop {
            match self.channels.events.try_recv() {
                Ok(e) => self.on_event(e, now),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(Closed),
            }
        }
        loop {
            match self.channels.requests.try_recv() {
                Ok(r) => self.on_request(r),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(Closed),
            }
        }
        if now >= self.next_tick {
            self.on_tick(now);
            self.next_tick = now + TICK;
        }
        self.publish_state(now);
        self.wake_workers();
        self.publish_routes();
        Ok(())
    }

    /// Responder jobs handed out whose outcome has not come back.
    pub fn answering(&self) -> usize {
        self.responders.in_flight()
    }

    /// Applies a change directly (the daemon's initial configuration).
    pub fn apply(&mut self, update: DeviceUpdate) -> Result<(), SetError> {
        let r = self.apply_update(update);
        self.wake_workers();
        self.publish_routes();
        r
    }

    /// Wakes the workers that were sent messages by `queue_for` since their last wake; every
    /// entry point (an event of the run loop, `apply`) ends with it.
    fn wake_workers(&mut self) {
        for (w, flag) in self.channels.workers.iter().zip(&mut self.unwoken) {
            if std::mem::take(flag) {
                w.wake();
            }
        }
    }

    fn owner(&self, peer: PeerId) -> usize {
        peer_owner(peer, self.channels.workers.len())
    }

    /// Sends `msg` to worker `worker`, waking it once for everything sent in this event
    /// (`wake_workers`) rather than once per message.
    fn queue_for(&mut self, worker: usize, msg: ToWorker) {
        if let Some(w) = self.channels.workers.get(worker) {
            w.send_unwoken(msg);
            if let Some(flag) = self.unwoken.get_mut(worker) {
                *flag = true;
            }
        }
    }

    fn send_to_owner(&mut self, peer: PeerId, msg: ToWorker) {
        self.queue_for(self.owner(peer), msg);
    }

    fn on_event(&mut self, event: WorkerEvent, now: Instant) {
        match event {
            WorkerEvent::WantHandshake { peer } => self.initiate(peer, now, false),
            WorkerEvent::EndpointChanged { peer, endpoint } => {
                if let Some(p) = self.peers.get_mut(peer) {
                    p.endpoint = Some(endpoint);
                }
            }
            WorkerEvent::StrayTransport { receiver, from } => {
                self.channels
                    .events_out
                    .publish(crate::events::TunnelEvent::Stray {
                        receiver_index: receiver,
                        endpoint: from,
                    });
            }
            WorkerEvent::IndicesRetired { indices } => {
                for i in indices.into_iter().flatten() {
                    self.indices.free(i);
                }
            }
            WorkerEvent::InterfaceGone { .. } => {
                let _ = self.channels.stop.send(StopReason::InterfaceGone);
            }
            WorkerEvent::Failed { worker, error } => {
                let _ = self.channels.stop.send(StopReason::WorkerFailed(format!(
                    "worker {worker}: {error}"
                )));
            }
        }
    }

    fn on_request(&mut self, request: Request) {
        match request {
            Request::Get(reply) => {
                let _ = reply.send(self.state());
            }
            Request::Set(update, reply) => {
                let _ = reply.send(self.apply(update));
                // Readers of the published state see a change as soon as the workers answer.
                self.publish_soon = true;
            }
            Request::Esp(change, queued) => {
                self.on_esp(change);
                if let Some(tx) = queued {
                    // The user's first echo can come back from the kernel a few hundred
                    // microseconds after the answer leaves: its route must be out before.
                    self.publish_routes();
                    let _ = tx.send(());
                }
            }
        }
    }

    fn publish_routes(&mut self) {
        if std::mem::take(&mut self.routes_dirty) {
            let snapshot = Arc::new(self.peers.routes.clone());
            for w in &self.channels.workers {
                w.send(ToWorker::Routes(snapshot.clone()));
            }
            self.publish_lan_prefixes();
        }
    }

    /// Tells the LAN side (if any) which destinations to steer to the workers: the pools and
    /// the allowed IPs outside them, merged where they adjoin.
    fn publish_lan_prefixes(&self) {
        let Some(steering) = self
            .channels
            .outer
            .steering
            .as_ref()
            .filter(|s| s.has_lan())
        else {
            return;
        };
        let pools = &self.channels.outer.lan_pools;
        let mut nets = pools.clone();
        nets.extend(
            self.peers
                .routes
                .prefixes()
                .filter(|n| !pools.iter().any(|p| p.contains(n))),
        );
        if let Err(e) = steering.set_lan_prefixes(&IpNet::aggregate(&nets)) {
            tracing::warn!("LAN prefixes not all steered (their packets go through the TUN): {e}");
        }
    }
}
