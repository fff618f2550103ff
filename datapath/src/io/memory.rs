//! An in-memory backend: packets are injected and collected by the caller. Lets tests drive a
//! real worker's logic without sockets or a TUN.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Backend, BufId, EspEncap, InnerWay, Rx, Via, BUF_SIZE, INNER_OFFSET, OUTER_OFFSET};

/// A packet for the worker to receive.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// A datagram from the outer side.
    Outer(Vec<u8>, SocketAddr),
    /// A datagram to the NAT-T port (UDP-encapsulated ESP).
    NatT(Vec<u8>, SocketAddr),
    /// An ESP packet as IP protocol 50 (as AF_XDP hands them over; the port is 0).
    RawEsp(Vec<u8>, SocketAddr),
    /// A packet from the TUN.
    Inner(Vec<u8>),
}

/// Buffers in memory; what the worker sends is collected for inspection.
pub struct MemoryBackend {
    bufs: Vec<[u8; BUF_SIZE]>,
    free: Vec<u32>,
    /// Packets the next `poll` delivers.
    pub incoming: VecDeque<Incoming>,
    /// Datagrams the worker sent, with their destination.
    pub outer_sent: Vec<(Vec<u8>, SocketAddr)>,
    /// ESP packets the worker sent, with their destination and how.
    pub esp_sent: Vec<(Vec<u8>, SocketAddr, EspEncap)>,
    /// Packets the worker wrote to the TUN.
    pub inner_written: Vec<Vec<u8>>,
    /// Keep copies of what is sent and written (off: only count, allocating nothing).
    pub record: bool,
    /// Datagrams sent, recorded or not.
    pub outer_sent_count: u64,
    /// Packets written to the TUN, recorded or not.
    pub inner_written_count: u64,
    /// The linger the worker asked for at its last poll (this backend never waits).
    pub last_linger: Duration,
}

impl MemoryBackend {
    /// A backend with `buffers` packet buffers.
    pub fn new(buffers: usize) -> Self {
        Self {
            bufs: vec![[0u8; BUF_SIZE]; buffers],
            free: (0..buffers as u32).rev().collect(),
            incoming: VecDeque::new(),
            outer_sent: Vec::new(),
            esp_sent: Vec::new(),
            inner_written: Vec::new(),
            record: true,
            outer_sent_count: 0,
            inner_written_count: 0,
            last_linger: Duration::ZERO,
        }
    }

    /// Buffers currently free (a leak shows as a number that does not come back).
    pub fn free_buffers(&self) -> usize {
        self.free.len()
    }
}

impl Backend for MemoryBackend {
    fn poll_lingering(
        &mut self,
        out: &mut Vec<Rx>,
        deadline: Instant,
        linger: Duration,
    ) -> io::Result<()> {
        self.last_linger = linger;
        self.poll(out, deadline)
    }

    fn poll(&mut self, out: &mut Vec<Rx>, _deadline: Instant) -> io::Result<()> {
        while let Some(item) = self.incoming.pop_front() {
            let Some(buf) = self.free.pop() else {
                self.incoming.push_front(item);
                break;
            };
            let b = &mut self.bufs[buf as usize];
            let outer = match item {
                Incoming::Outer(bytes, from) => Some((bytes, from, Via::Listen)),
                Incoming::NatT(bytes, from) => Some((bytes, from, Via::Esp(EspEncap::Udp))),
                Incoming::RawEsp(bytes, from) => Some((bytes, from, Via::Esp(EspEncap::Raw))),
                Incoming::Inner(bytes) => {
                    let len = bytes.len().min(BUF_SIZE - INNER_OFFSET);
                    b[INNER_OFFSET..INNER_OFFSET + len].copy_from_slice(&bytes[..len]);
                    out.push(Rx::Inner {
                        buf: BufId(buf),
                        len,
                    });
                    None
                }
            };
            if let Some((bytes, from, via)) = outer {
                // Same layout as io_uring's multishot receive: payload after a headroom.
                let room = BUF_SIZE - OUTER_OFFSET;
                let len = bytes.len().min(room);
                b[OUTER_OFFSET..OUTER_OFFSET + len].copy_from_slice(&bytes[..len]);
                out.push(Rx::Outer {
                    buf: BufId(buf),
                    at: OUTER_OFFSET,
                    len,
                    from,
                    link: None,
                    truncated: bytes.len() > room,
                    via,
                });
            }
        }
        Ok(())
    }

    fn buf(&mut self, buf: BufId) -> &mut [u8; BUF_SIZE] {
        &mut self.bufs[buf.0 as usize]
    }

    fn alloc(&mut self) -> Option<BufId> {
        self.free.pop().map(BufId)
    }

    fn free(&mut self, buf: BufId) {
        self.free.push(buf.0);
    }

    fn send_outer(
        &mut self,
        buf: BufId,
        range: Range<usize>,
        to: SocketAddr,
        _link: Option<super::LinkPath>,
    ) {
        debug_assert!(
            range.start >= super::OUTER_HEADROOM,
            "no room for outer headers"
        );
        self.outer_sent_count += 1;
        if self.record {
            self.outer_sent
                .push((self.bufs[buf.0 as usize][range].to_vec(), to));
        }
        self.free.push(buf.0);
    }

    fn send_esp(
        &mut self,
        buf: BufId,
        range: Range<usize>,
        (to, encap, _link): (SocketAddr, EspEncap, Option<super::LinkPath>),
    ) {
        debug_assert!(range.start >= super::OUTER_HEADROOM);
        self.outer_sent_count += 1;
        if self.record {
            self.esp_sent
                .push((self.bufs[buf.0 as usize][range].to_vec(), to, encap));
        }
        self.free.push(buf.0);
    }

    fn send_inner(&mut self, buf: BufId, range: Range<usize>) -> InnerWay {
        self.inner_written_count += 1;
        if self.record {
            self.inner_written
                .push(self.bufs[buf.0 as usize][range].to_vec());
        }
        self.free.push(buf.0);
        InnerWay::Tun
    }

    fn replace_outer(&mut self, _socket: Arc<OwnedFd>) {}

    fn attach_nat_t(&mut self, _socket: Arc<OwnedFd>) {}

    fn take_send_failures(&mut self) -> u64 {
        0
    }
}
