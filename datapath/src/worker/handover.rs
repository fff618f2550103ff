//! Cross-worker handover: a packet that reaches the wrong worker is copied into the owner's
//! bounded lock-free queue and the owner is woken once per batch (a transport packet only if
//! its receiver index is live: forged ones must not fill the queue). This keeps each session's
//! replay window and send counter touched by exactly one thread.

use std::net::SocketAddr;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::io::BUF_SIZE;
use crate::kernel::waker::Waker;
use crate::live_indices::LiveIndices;

/// Packets a worker's handover queue holds before further handovers are dropped.
pub const HANDOVER_DEPTH: usize = 1024;

/// Which path a handed-over packet continues on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoverKind {
    /// An outer transport datagram (the bytes start at the WireGuard header).
    Outer(SocketAddr, Option<crate::io::LinkPath>),
    /// ESP, UDP-encapsulated from the NAT-T port or raw (the bytes start at the SPI), and
    /// the link path it came by.
    Esp(SocketAddr, crate::io::EspEncap, Option<crate::io::LinkPath>),
    /// An inner packet from the TUN (the bytes start at the IP header).
    Inner,
}

/// One handed-over packet, stored inline so the queue never allocates.
pub struct Handover {
    /// Which path it continues on.
    pub kind: HandoverKind,
    /// Bytes used in `data`.
    pub len: usize,
    /// The packet.
    pub data: [u8; BUF_SIZE],
}

/// Every worker's handover queue and waker, and the live indices a handover is checked
/// against, shared by all workers.
pub struct Mesh {
    queues: Vec<ArrayQueue<Handover>>,
    wakers: Vec<Arc<Waker>>,
    live: Arc<LiveIndices>,
}

impl Mesh {
    /// A mesh over the workers' wakers (one queue each), with no index live yet.
    pub fn new(wakers: Vec<Arc<Waker>>) -> Self {
        Self {
            queues: wakers
                .iter()
                .map(|_| ArrayQueue::new(HANDOVER_DEPTH))
                .collect(),
            wakers,
            live: Arc::new(LiveIndices::default()),
        }
    }

    /// The live receiver indices, which the control plane keeps.
    pub fn live(&self) -> &Arc<LiveIndices> {
        &self.live
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.wakers.len()
    }

    /// True for a mesh without workers.
    pub fn is_empty(&self) -> bool {
        self.wakers.is_empty()
    }

    /// Queues a copy of `bytes` for worker `to`; false if its queue is full.
    pub fn push(&self, to: usize, kind: HandoverKind, bytes: &[u8]) -> bool {
        let Some(queue) = self.queues.get(to) else {
            return false;
        };
        if queue.is_full() || bytes.len() > BUF_SIZE {
            return false;
        }
        let mut h = Handover {
            kind,
            len: bytes.len(),
            data: [0u8; BUF_SIZE],
        };
        h.data[..bytes.len()].copy_from_slice(bytes);
        queue.push(h).is_ok()
    }

    /// Takes the next packet handed to worker `me`.
    pub fn pop(&self, me: usize) -> Option<Handover> {
        self.queues.get(me)?.pop()
    }

    /// Wakes worker `to`.
    pub fn wake(&self, to: usize) {
        if let Some(w) = self.wakers.get(to) {
            w.wake();
        }
    }

    /// The waker of worker `to`.
    pub fn waker(&self, to: usize) -> Option<&Arc<Waker>> {
        self.wakers.get(to)
    }
}
