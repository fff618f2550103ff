//! Starts the workers: one thread per socket/TUN-queue pair, pinned to its CPU, each building
//! its io_uring on its own thread and reporting back before traffic flows.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};

use crate::io::uring::UringBackend;
use crate::messages::{HandshakeDatagram, ToWorker, WorkerEvent};
use crate::waker::Waker;
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
        let mut handles = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        for (id, (socket, queue)) in sockets.into_iter().zip(queues).enumerate() {
            let (tx, rx) = crossbeam_channel::bounded(CONTROL_DEPTH);
            let (ready_tx, ready_rx) = crossbeam_channel::bounded::<io::Result<()>>(1);
            let links = WorkerLinks {
                control: rx,
                handshakes: handshakes.clone(),
                events: events.clone(),
                mesh: mesh.clone(),
            };
            let waker = wakers[id].clone();
            let cpu = config.cpus.get(id).copied().flatten();
            let core = cpu.and_then(|c| cores.iter().find(|core| core.id == c).copied());
            let mtu = config.mtu;
            let vnet = config.tun_vnet_header;
            let thread = std::thread::Builder::new()
                .name(format!("xgate-worker-{id}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    let backend = match UringBackend::new(socket, Arc::new(queue), vnet, waker) {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    if let Some(cpu) = cpu {
                        if let Err(e) = backend.pin_async_workers(cpu) {
                            tracing::debug!(worker = id, cpu, "io_uring helpers not pinned: {e}");
                        }
                    }
                    let _ = ready_tx.send(Ok(()));
                    Worker::new(id, mtu, backend, links).run();
                })?;
            ready_rx
                .recv()
                .map_err(|_| io::Error::other(format!("worker {id} exited during start-up")))??;
            handles.push(WorkerHandle {
                tx,
                waker: wakers[id].clone(),
            });
            threads.push(thread);
        }
        Ok(Self { handles, threads })
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

    /// Stops every worker and waits for them to finish.
    pub fn shutdown(mut self) {
        self.broadcast(|| ToWorker::Shutdown);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
