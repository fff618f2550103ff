//! A worker following the steering's interface set at run time: sockets bound for the queues
//! it now owns, and sockets of interfaces that left taken out of their map and closed (their
//! poll cancelled first: it holds the file open). The frames a closed socket held come back
//! to the pool a second later, when the kernel's deferred release of the socket (which makes
//! a zero-copy driver let go of them) has long run; the owner table says which they are.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backend::{XdpBackend, XdpQueue, NOBODY};
use super::steering::{SteeredInterface, Steering, SteeringError};
use crate::io::{Backend, BufId};

/// How long after a socket's close its frames are reused.
const RETIRE_AFTER: Duration = Duration::from_secs(1);
/// How soon a bind that failed at run time is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl XdpBackend {
    /// The smallest id no live or retiring queue holds.
    fn free_id(&self) -> u16 {
        (0..NOBODY)
            .find(|id| {
                !self.queues.iter().any(|q| q.id == *id)
                    && !self.retiring.iter().any(|(r, _, _)| r == id)
            })
            .unwrap_or(0)
    }

    /// Binds a socket for `queue` of `interface` (sharing the UMEM registration of a socket
    /// this worker already has) and starts serving it; `grace` as in `SteeredInterface::bind`.
    pub(super) fn add_queue(
        &mut self,
        interface: Arc<SteeredInterface>,
        queue: u32,
        grace: bool,
    ) -> Result<(), SteeringError> {
        let shared = self.queues.first().map(|q| &q.socket);
        let socket = interface.bind(self.uring.frames(), shared, queue, grace)?;
        self.uring.watch(socket.fd());
        let id = self.free_id();
        self.queues.push(XdpQueue::new(socket, interface, id));
        self.tx_pending.push(0);
        Ok(())
    }

    /// Brings the queues in line with the steering's current interfaces; a bind that fails
    /// is tried again a second later.
    pub(super) fn resync(&mut self) {
        // What is queued to send leaves first, by the sockets it was written for.
        self.flush_tx();
        self.seen = self.steering.generation();
        self.retry_at = None;
        let interfaces = self.steering.interfaces();
        let wanted = Steering::owned_queues(&interfaces, self.worker, self.workers);
        let mut i = 0;
        while i < self.queues.len() {
            let q = &self.queues[i];
            let keep = wanted
                .iter()
                .any(|(w, n)| Arc::ptr_eq(w, &q.interface) && *n == q.socket.queue());
            if keep {
                i += 1;
                continue;
            }
            let q = self.queues.remove(i);
            self.tx_pending.remove(i);
            q.interface.unbind(q.socket.queue());
            self.uring.unwatch(q.socket.fd());
            tracing::info!(
                worker = self.worker,
                interface = %q.interface.name,
                queue = q.socket.queue(),
                "AF_XDP socket retired"
            );
            let XdpQueue {
                socket,
                interface,
                id,
                ..
            } = q;
            drop(socket);
            self.retiring
                .push((id, interface, Instant::now() + RETIRE_AFTER));
        }
        for (interface, queue) in wanted {
            let have = self
                .queues
                .iter()
                .any(|q| Arc::ptr_eq(&q.interface, &interface) && q.socket.queue() == queue);
            if have {
                continue;
            }
            let name = interface.name.clone();
            match self.add_queue(interface, queue, false) {
                Ok(()) => tracing::info!(
                    worker = self.worker,
                    interface = %name,
                    queue,
                    "AF_XDP socket bound"
                ),
                Err(e) => {
                    tracing::warn!(worker = self.worker, "AF_XDP socket not bound yet: {e}");
                    self.retry_at = Some(Instant::now() + RETRY_AFTER);
                }
            }
        }
    }

    /// Returns the frames of retired sockets whose time is up.
    pub(super) fn reclaim_retired(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.retiring.len() {
            if self.retiring[i].2 > now {
                i += 1;
                continue;
            }
            let (id, _interface, _) = self.retiring.remove(i);
            for frame in 0..self.owner.len() {
                if self.owner[frame] == id {
                    self.owner[frame] = NOBODY;
                    self.uring.free(BufId(frame as u32));
                }
            }
        }
    }
}
