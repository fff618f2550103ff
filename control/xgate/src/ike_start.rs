//! The IKEv2 responder's start: at `xgate up` when `[ike] enabled = true` or the registry
//! holds IKEv2 users, or later, when the first user is made (`enabled` unset). Either way the
//! responder's NAT-T socket heads the port's SO_REUSEPORT group and each worker then joins it
//! with a socket of its own for ESP (`ToWorker::AttachNatT`). Under AF_XDP, raw ESP (IP
//! protocol 50) is steered to the workers first, and the responder then lets peers with no
//! NAT between send ESP unencapsulated.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use crossbeam_channel::Sender;
use datapath::io::af_xdp::steering::Steering;
use datapath::kernel::udp::BindError;
use datapath::launch::{WorkerHandle, Workers};
use datapath::messages::ToWorker;
use datapath::worker::Mesh;
use manage::events::EventHub;
use manage::Management;
use plane::config::IkeConfig;
use plane::engine::PlaneHandle;
use plane::ike::{IkeHandle, IkeService, IkeSlot};

/// How long busy IKE ports are retried at start: a crashed xgate's sockets outlive it briefly.
const PORT_GRACE: Duration = Duration::from_secs(2);

/// The running responder, stopped (every peer sent a Delete) when the daemon drops this.
pub struct IkeGuard(Arc<Mutex<Option<IkeService>>>);

impl Drop for IkeGuard {
    fn drop(&mut self) {
        let service = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        drop(service);
    }
}

/// What starting the responder needs.
struct Launcher {
    config: IkeConfig,
    sink: Arc<dyn plane::events::EventSink>,
    plane: Sender<plane::engine::Request>,
    workers: Vec<WorkerHandle>,
    /// The AF_XDP steering, which then takes raw ESP and the NAT-T port's ESP too.
    steering: Option<Arc<Steering>>,
    /// The workers' handover queues: raw ESP the kernel got is handed to its worker there.
    mesh: Arc<Mesh>,
    fwmark: u32,
    running: Arc<Mutex<Option<IkeService>>>,
}

impl Launcher {
    /// Steers raw ESP (and, once bound, the NAT-T port's ESP) to the workers, binds the ports
    /// (retrying a busy one for `grace`), has every worker join the NAT-T port, and keeps
    /// the service. A failed start takes the raw ESP steering back: another IKE daemon on
    /// this host (the usual reason) keeps its ESP.
    fn launch(&self, grace: Duration) -> Result<IkeHandle> {
        // Raw ESP reaches the workers only by AF_XDP: steered before the first SA is made,
        // so an SA the responder lets go unencapsulated always has a way in.
        let raw_esp = match &self.steering {
            Some(steering) if self.config.settings.raw_esp => {
                match steering.set_raw_esp(true, self.fwmark) {
                    Ok(()) => self.read_kernel_esp(steering),
                    Err(e) => {
                        tracing::warn!(
                            "AF_XDP does not steer raw ESP ({e}); every IKEv2 peer is asked \
                             to encapsulate ESP in UDP"
                        );
                        false
                    }
                }
            }
            _ => false,
        };
        let started = self.start_service(grace, raw_esp);
        if started.is_err() && raw_esp {
            if let Some(steering) = &self.steering {
                if let Err(e) = steering.set_raw_esp(false, self.fwmark) {
                    tracing::warn!("raw ESP still steered after a failed IKE start: {e}");
                }
            }
        }
        started
    }

    /// Starts the reader of the raw ESP the kernel gets instead of AF_XDP (it ends when the
    /// steering closes the sockets); false, with raw ESP no longer steered, if it cannot.
    fn read_kernel_esp(&self, steering: &Steering) -> bool {
        let reader = steering
            .raw_esp_sockets()
            .map(|s| datapath::raw_esp_reader::spawn(s, self.mesh.clone()));
        match reader {
            Some(Ok(_)) => true,
            failed => {
                tracing::warn!(
                    "raw ESP not taken (its reader did not start: {:?}); every IKEv2 peer is \
                     asked to encapsulate ESP in UDP",
                    failed.map(|r| r.err())
                );
                let _ = steering.set_raw_esp(false, self.fwmark);
                false
            }
        }
    }

    /// The rest of `launch`, with raw ESP steered (`raw_esp`) or not.
    fn start_service(&self, grace: Duration, raw_esp: bool) -> Result<IkeHandle> {
        let until = Instant::now() + grace;
        let service = loop {
            let mut settings = self.config.settings.clone();
            settings.raw_esp = raw_esp;
            match IkeService::start(settings, self.sink.clone(), Some(self.plane.clone())) {
                Err(BindError::InUse { .. }) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => break other.map_err(ike_error)?,
            }
        };
        let nat_port = service.ports().1;
        let sockets = datapath::kernel::udp::join_nat_t(nat_port, self.workers.len(), self.fwmark)
            .map_err(|e| anyhow!("ike: the workers' ESP sockets on port {nat_port}: {e}"))?;
        for (worker, socket) in self.workers.iter().zip(sockets) {
            worker.send(ToWorker::AttachNatT(Arc::new(socket)));
        }
        // After the workers know the port (they apply their queue before each batch): ESP
        // there then reaches them by AF_XDP; IKE still goes to the kernel's socket.
        if let Some(steering) = &self.steering {
            if let Err(e) = steering.set_nat_port(nat_port) {
                tracing::warn!(
                    "AF_XDP does not steer ESP on port {nat_port} ({e}); it goes through the \
                     kernel's socket"
                );
            }
        }
        let handle = service.handle();
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) = Some(service);
        Ok(handle)
    }
}

/// What a failed IKE start tells the operator.
fn ike_error(e: BindError) -> anyhow::Error {
    match e {
        BindError::InUse { port } => anyhow!(
            "ike: UDP port {port} is in use (another IKE daemon, such as strongSwan's \
             charon?): stop it, or set [ike] enabled = false"
        ),
        other => anyhow!("ike: {other}"),
    }
}

/// `start` for `xgate up`: with the registry (if any), the events hub and the plane the
/// daemon runs, over its workers.
pub fn for_daemon(
    mut config: IkeConfig,
    (management, events, plane): (Option<&Management>, &EventHub, &PlaneHandle),
    (workers, steering): (&Workers, Option<Arc<Steering>>),
    fwmark: u32,
) -> Result<(IkeGuard, IkeSlot)> {
    config.settings.workers = workers.len();
    if config.legacy_windows {
        tracing::warn!("{}", plane::config::LEGACY_WARNING);
    }
    let has_users = management.is_some_and(Management::has_ike_users);
    let sink: Arc<dyn plane::events::EventSink> = Arc::new(events.clone());
    let handles = workers.handles.clone();
    let started = start(
        config,
        has_users,
        (sink, plane.requests()),
        (handles, steering, workers.mesh.clone()),
        fwmark,
    )?;
    if management.is_none() && started.1.get().is_some() {
        tracing::warn!("IKEv2 runs without a registry: no user can authenticate");
    }
    Ok(started)
}

/// Starts the responder now if `[ike]` asks for it or `has_users`; returns the guard that
/// stops it and the slot the management service reaches it through (able to start it when
/// the first user is made, unless `enabled = false` or it runs already).
fn start(
    config: IkeConfig,
    has_users: bool,
    (sink, plane): (
        Arc<dyn plane::events::EventSink>,
        Sender<plane::engine::Request>,
    ),
    (workers, steering, mesh): (Vec<WorkerHandle>, Option<Arc<Steering>>, Arc<Mesh>),
    fwmark: u32,
) -> Result<(IkeGuard, IkeSlot)> {
    let enabled = config.enabled;
    let running = Arc::new(Mutex::new(None));
    let launcher = Arc::new(Launcher {
        config,
        sink,
        plane,
        workers,
        steering,
        mesh,
        fwmark,
        running: running.clone(),
    });
    let guard = IkeGuard(running);
    let mut handle = None;
    if enabled.unwrap_or(has_users) {
        match launcher.launch(PORT_GRACE) {
            Ok(h) => handle = Some(h),
            // Asked for in so many words: a start without it is a failed start.
            Err(e) if enabled == Some(true) => return Err(e),
            // Started only because users exist: WireGuard still serves; the log says why not.
            Err(e) => tracing::error!("IKEv2 is not running: {e:#}"),
        }
    }
    let starter: Option<plane::ike::IkeStarter> = match (enabled, &handle) {
        (None, None) => Some(Box::new(move || {
            tracing::info!("the first IKEv2 user: starting the responder");
            launcher
                .launch(Duration::ZERO)
                .map_err(|e| tracing::error!("IKEv2 did not start: {e:#}"))
                .ok()
        })),
        _ => None,
    };
    Ok((guard, IkeSlot::new(handle, starter)))
}
