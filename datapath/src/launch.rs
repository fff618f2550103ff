//! Starts the workers: one thread per socket/TUN-queue pair, pinned to its CPU, each building
//! its io_uring on its own thread and reporting back before traffic flows.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};

use crate::io::af_xdp::backend::{XdpBackend, FRAMES_PER_SOCKET};
use crate::io::af_xdp::steering::Steering;
use crate::io::uring::{UringBackend, POOL_SIZE};
use crate::io::Backend;
use crate::kernel::waker::Waker;
use crate::messages::{HandshakeDatagram, ToWorker, WorkerEvent};
use crate::worker::{Mesh, Worker, WorkerLinks};

/// Control messages a worker's channel holds before `send` blocks the control plane briefly.
const CONTROL_DEPTH: usize = 4096;

/// The control plane's handle on one worker.
#[derive(Clone)]
pub struct WorkerHandle {
    tx: Sender<ToWorker>,
    waker: Arc<Waker>,
}

impl WorkerHandle {
    /// A handle whose messages go to `tx` with no worker behind it: lets tests stand in for
    /// a worker and read what the control plane sends it.
    pub fn detached(tx: Sender<ToWorker>) -> io::Result<Self> {
        Ok(Self {
            tx,
            waker: Arc::new(Waker::new()?),
        })
    }

    /// Sends a message and wakes the worker. Returns false if the worker has stopped.
    pub fn send(&self, msg: ToWorker) -> bool {
        let sent = self.send_unwoken(msg);
        self.waker.wake();
        sent
    }

    /// Sends a message without waking the worker (unless its channel is full): for senders
    /// that queue many messages and then call `wake` once. Returns false if it has stopped.
    pub fn send_unwoken(&self, msg: ToWorker) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => true,
            // Control traffic must not be lost: wait for room (the worker drains every batch).
            Err(TrySendError::Full(msg)) => {
                self.waker.wake();
                self.tx.send(msg).is_ok()
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Wakes the worker to read what was sent with `send_unwoken`.
    pub fn wake(&self) {
        self.waker.wake();
    }
}

/// The running workers.
pub struct Workers {
    /// One handle per worker, by worker number.
    pub handles: Vec<WorkerHandle>,
    /// How each worker reaches the outer side, by worker number (for logs and status).
    pub outer: Vec<String>,
    /// The live receiver indices the workers check handovers against (the control plane
    /// keeps them).
    pub live_indices: Arc<crate::live_indices::LiveIndices>,
    /// The workers' handover queues, which packets read outside them also join.
    pub mesh: Arc<Mesh>,
    threads: Vec<JoinHandle<()>>,
}

/// How to start the workers.
pub struct LaunchConfig {
    /// Inner MTU.
    pub mtu: usize,
    /// CPU to pin each worker to (`None` = leave unpinned).
    pub cpus: Vec<Option<usize>>,
    /// The TUN queues were opened with IFF_VNET_HDR (`Tun::vnet_header`).
    pub tun_vnet_header: bool,
    /// The TUN takes UDP super-packets (`Tun::takes_udp_super_packets`).
    pub tun_udp_super_packets: bool,
    /// AF_XDP steering set up on the outer interfaces: each worker binds sockets to the
    /// queues it owns (`None`: io_uring UDP only).
    pub xdp: Option<Arc<Steering>>,
    /// The listen port (the source port of frames built for AF_XDP).
    pub listen_port: u16,
    /// A worker that cannot bind its AF_XDP sockets runs on io_uring alone, saying why,
    /// instead of failing the start (`backend = "auto"`).
    pub xdp_fallback: bool,
    /// How long a worker waits for a batch to gather under load (`Worker::with_linger`).
    pub batch_linger: Duration,
}

/// What one worker is started with, beside its sockets and links.
struct WorkerSettings {
    mtu: usize,
    /// The TUN queue has a virtio-net header; it takes UDP super-packets.
    tun: (bool, bool),
    cpu: Option<usize>,
    port: u16,
    fallback: bool,
    linger: Duration,
}

/// Builds worker `id`'s backend on its own thread and runs it; says how it went on `ready`.
#[allow(clippy::too_many_arguments)]
fn run_worker(
    id: usize,
    workers: usize,
    settings: WorkerSettings,
    socket: Arc<OwnedFd>,
    queue: OwnedFd,
    waker: Arc<Waker>,
    xdp: Option<Arc<Steering>>,
    links: WorkerLinks,
    ready: Sender<io::Result<String>>,
) {
    let WorkerSettings {
        mtu,
        tun: (vnet, uso),
        cpu,
        port,
        fallback,
        linger,
    } = settings;
    let sockets = xdp.as_ref().map_or(0, |s| {
        s.interfaces()
            .iter()
            .map(|i| {
                (0..i.queues)
                    .filter(|q| *q as usize % workers == id)
                    .count()
            })
            .sum::<usize>()
    });
    // Room for the sockets of today's interfaces and one more queue's (interfaces that come
    // up later; beyond that, fill rings get what the pool can spare).
    let pool = POOL_SIZE + (sockets + 1) * FRAMES_PER_SOCKET;
    let gro = xdp.is_none();
    let mut uring = match UringBackend::with_pool(socket, Arc::new(queue), vnet, waker, pool, gro) {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    uring.allow_udp_runs(uso);
    if let Some(cpu) = cpu {
        if let Err(e) = uring.pin_async_workers(cpu) {
            tracing::debug!(worker = id, cpu, "io_uring helpers not pinned: {e}");
        }
    }
    let Some(steering) = xdp else {
        let described = if uring.defers_task_work() {
            "io-uring".to_string()
        } else {
            "io-uring (without deferred task work: Linux before 6.1)".to_string()
        };
        let _ = ready.send(Ok(described));
        return serve(Worker::new(id, mtu, uring, links), linger);
    };
    match XdpBackend::new(uring, steering, id, workers, port) {
        Ok(backend) => {
            let _ = ready.send(Ok(backend.summary()));
            serve(Worker::new(id, mtu, backend, links), linger);
        }
        Err((uring, e)) if fallback => {
            tracing::warn!(
                worker = id,
                "AF_XDP sockets not bound ({e}); this worker uses io_uring"
            );
            let _ = ready.send(Ok(format!("io-uring (AF_XDP failed: {e})")));
            serve(Worker::new(id, mtu, *uring, links), linger);
        }
        Err((_, e)) => {
            let _ = ready.send(Err(io::Error::other(e.to_string())));
        }
    }
}

fn serve<B: Backend>(worker: Worker<B>, linger: Duration) {
    worker.with_linger(linger).run();
}

impl Workers {
    /// Starts one worker per (socket, TUN queue) pair.
    pub fn launch(
        config: LaunchConfig,
        sockets: Vec<Arc<OwnedFd>>,
        queues: Vec<OwnedFd>,
        handshakes: Sender<HandshakeDatagram>,
        events: Sender<WorkerEvent>,
    ) -> io::Result<Self> {
        let n = sockets.len().min(queues.len());
        let wakers = (0..n)
            .map(|_| Waker::new().map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        let mesh = Arc::new(Mesh::new(wakers.clone()));
        // Filled as workers start, so a failure part-way stops the ones already running.
        let mut workers = Self {
            handles: Vec::with_capacity(n),
            outer: Vec::with_capacity(n),
            live_indices: mesh.live().clone(),
            mesh: mesh.clone(),
            threads: Vec::with_capacity(n),
        };
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        for (id, (socket, queue)) in sockets.into_iter().zip(queues).enumerate() {
            let (tx, rx) = crossbeam_channel::bounded(CONTROL_DEPTH);
            let (ready_tx, ready_rx) = crossbeam_channel::bounded::<io::Result<String>>(1);
            let links = WorkerLinks {
                control: rx,
                handshakes: handshakes.clone(),
                events: events.clone(),
                mesh: mesh.clone(),
            };
            let waker = wakers[id].clone();
            let cpu = config.cpus.get(id).copied().flatten();
            let core = cpu.and_then(|c| cores.iter().find(|core| core.id == c).copied());
            let settings = WorkerSettings {
                mtu: config.mtu,
                tun: (config.tun_vnet_header, config.tun_udp_super_packets),
                cpu,
                port: config.listen_port,
                fallback: config.xdp_fallback,
                linger: config.batch_linger,
            };
            let xdp = config.xdp.clone();
            let thread = std::thread::Builder::new()
                .name(format!("xgate-worker-{id}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    run_worker(id, n, settings, socket, queue, waker, xdp, links, ready_tx);
                })?;
            let described = ready_rx
                .recv()
                .map_err(|_| io::Error::other(format!("worker {id} exited during start-up")))??;
            workers.outer.push(described);
            workers.handles.push(WorkerHandle {
                tx,
                waker: wakers[id].clone(),
            });
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// True if no worker runs.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Sends `msg()` to every worker.
    pub fn broadcast(&self, msg: impl Fn() -> ToWorker) {
        for h in &self.handles {
            h.send(msg());
        }
    }

    /// Stops every worker and waits for them to finish (as dropping does).
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.broadcast(|| ToWorker::Shutdown);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
