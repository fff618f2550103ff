//! A worker following the steering's interface set at run time: sockets bound for the queues
//! it now owns, and sockets of interfaces that left taken out of their map, their poll
//! cancelled, and closed a second later, when the kernel can no longer write into the frames
//! they held; those frames then come back to the pool (the owner table says which).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backend::{XdpBackend, XdpQueue, NOBODY};
use super::steering::{SteeredInterface, Steering, SteeringError};
use crate::io::{Backend, BufId};

/// How long a retired socket stays open before its frames are reused.
const RETIRE_AFTER: Duration = Duration::from_secs(1);

impl XdpBackend {
    /// Binds a socket for `queue` of `interface` (sharing the UMEM registration of a socket
    /// this worker already has) and starts serving it.
    pub(super) fn add_queue(
        &mut self,
        interface: Arc<SteeredInterface>,
        queue: u32,
    ) -> Result<(), SteeringError> {
        let shared = self
            .queues
            .first()
            .or_else(|| self.retiring.first().map(|(q, _)| q))
            .map(|q| &q.socket);
        let socket = interface.bind(self.uring.frames(), shared, queue)?;
        self.uring.watch(socket.fd());
        let id = self.next_id;
        // Ids name queues in the owner table; NOBODY is reserved.
        self.next_id = self.next_id.wrapping_add(1) % NOBODY;
        self.queues.push(XdpQueue::new(socket, interface, id));
        self.tx_pending.push(0);
        Ok(())
    }

    /// Brings the queues in line with the steering's current interfaces.
    pub(super) fn resync(&mut self) {
        // What is queued to send leaves first, by the sockets it was written for.
        self.flush_tx();
        self.seen = self.steering.generation();
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
            self.retiring.push((q, Instant::now() + RETIRE_AFTER));
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
            match self.add_queue(interface, queue) {
                Ok(()) => tracing::info!(
                    worker = self.worker,
                    interface = %name,
                    queue,
                    "AF_XDP socket bound"
                ),
                Err(e) => tracing::warn!(worker = self.worker, "AF_XDP socket not bound: {e}"),
            }
        }
    }

    /// Closes retired sockets whose time is up and returns the frames they held.
    pub(super) fn reclaim_retired(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.retiring.len() {
            if self.retiring[i].1 > now {
                i += 1;
                continue;
            }
            let (q, _) = self.retiring.remove(i);
            let id = q.id;
            drop(q);
            for frame in 0..self.owner.len() {
                if self.owner[frame] == id {
                    self.owner[frame] = NOBODY;
                    self.uring.free(BufId(frame as u32));
                }
            }
        }
    }
}
