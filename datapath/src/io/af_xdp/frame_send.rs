//! The AF_XDP backend's send path: the queue and link path towards a peer (the one its
//! datagram came by, else the kernel's route and neighbour tables), the headers written in
//! the frame's headroom, the frame put on the queue's tx ring; raw ESP the kernel must carry
//! through its raw socket.

use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::Range;

use super::backend::XdpBackend;
use super::frame::{self, Path};
use super::umem;
use crate::io::{Backend, BufId, LinkPath};

impl XdpBackend {
    /// The queue to send to `to` by, from our `port` (or as raw ESP), and the frame's path:
    /// the way `link` says, else the way the kernel's route and neighbour tables say (if
    /// through one of our interfaces).
    fn route(
        &mut self,
        to: SocketAddr,
        link: Option<LinkPath>,
        (port, raw_esp): (u16, bool),
    ) -> Option<(usize, Path)> {
        let link = match link {
            Some(link) => link,
            None => {
                let queues = &self.queues;
                self.neighbours
                    .path_to(to.ip(), self.now, |ifindex| {
                        queues
                            .iter()
                            .find(|q| !q.lan && q.socket.ifindex() == ifindex)
                            .map(|q| q.mac)
                    })
                    .ok()?
            }
        };
        let from = match (link.local, to) {
            (std::net::IpAddr::V4(ip), SocketAddr::V4(_)) => {
                SocketAddr::V4(SocketAddrV4::new(ip, port))
            }
            (std::net::IpAddr::V6(ip), SocketAddr::V6(_)) => {
                SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0))
            }
            _ => return None,
        };
        let queue = self
            .queues
            .iter()
            .position(|q| q.socket.ifindex() == link.ifindex)?;
        Some((
            queue,
            Path {
                from,
                to,
                src_mac: link.local_mac,
                dst_mac: link.next_hop,
                raw_esp,
            },
        ))
    }

    /// Sends `range` of `buf` to `to` from our `port` (or, `raw_esp`, as IP protocol 50) in
    /// a frame of its own on the AF_XDP socket of the queue towards it (a full ring drops it
    /// and counts it); false, with `buf` untouched, when it must go the kernel's way (no path
    /// through our interfaces, or no room before the payload for the headers).
    pub(super) fn send_frame(
        &mut self,
        buf: BufId,
        range: Range<usize>,
        (to, link, port, raw_esp): (SocketAddr, Option<LinkPath>, u16, bool),
    ) -> bool {
        let Some((queue, path)) = self.route(to, link, (port, raw_esp)) else {
            return false;
        };
        if range.start < frame::headers_len(&to, raw_esp) {
            return false;
        }
        let frame = frame::write_headers(self.uring.buf(buf), range, &path);
        if self.push_tx(queue, buf, frame) {
            self.stats.xdp_sent += 1;
        }
        true
    }

    /// Writes the frame at `buf[frame]` to `queue`'s tx ring (published by the next
    /// `flush_tx`); a ring that stays full drops it and counts a send failure (false).
    pub(super) fn push_tx(&mut self, queue: usize, buf: BufId, frame: Range<usize>) -> bool {
        let pending = self.tx_pending[queue];
        if self.queues[queue].socket.tx.free(pending + 1) <= pending {
            // Ring full: send what it holds, then try once more.
            self.flush_tx();
            self.complete();
        }
        let pending = self.tx_pending[queue];
        let tx = &mut self.queues[queue].socket.tx;
        if tx.free(pending + 1) <= pending {
            self.uring.free(buf);
            self.send_failures += 1;
            return false;
        }
        tx.write(
            pending,
            libc::xdp_desc {
                addr: umem::addr(buf.0) + frame.start as u64,
                len: frame.len() as u32,
                options: 0,
            },
        );
        self.tx_pending[queue] += 1;
        self.owner[buf.0 as usize] = self.queues[queue].id;
        true
    }

    /// Sends the raw ESP packet `buf[range]` to `to` through the kernel's raw socket (one
    /// system call: for a peer AF_XDP has no link path to, its neighbour entry not complete
    /// or its interface not steered); a failure is counted.
    pub(super) fn send_raw_by_kernel(&mut self, range: &Range<usize>, to: IpAddr, buf: BufId) {
        if self.raw_sockets.as_ref().is_none_or(|s| s.is_closed()) {
            self.raw_sockets = self.steering.raw_esp_sockets();
        }
        let sent = match &self.raw_sockets {
            Some(sender) => sender.send(&self.uring.buf(buf)[range.clone()], to),
            None => Err(std::io::Error::from(std::io::ErrorKind::NotConnected)),
        };
        if let Err(e) = sent {
            tracing::debug!("raw ESP to {to} through the kernel: {e}");
            self.send_failures += 1;
        }
    }
}
