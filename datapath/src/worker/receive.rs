//! The receive path: a datagram from the outer socket is classified; handshake messages go to
//! the control plane, transport messages are opened in place by the owning worker, checked
//! against the sender's allowed IPs and written to the TUN.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use proto::constants::*;
use proto::session::TransportError;
use proto::transport::OpenError;

use super::{HandoverKind, Worker};
use crate::io::{Backend, BufId, InnerWay, LinkPath, Via};
use crate::messages::{index_owner, HandshakeDatagram};
use crate::stats::DropReason;

impl<B: Backend> Worker<B> {
    /// A datagram (or raw ESP packet) `buf[datagram]` from the outer side, come in `via`.
    pub(super) fn receive_outer(
        &mut self,
        buf: BufId,
        datagram: Range<usize>,
        (from, link, via): (SocketAddr, Option<LinkPath>, Via),
        truncated: bool,
        now: Instant,
    ) {
        self.counters.rx_datagrams += 1;
        self.counters.rx_bytes += datagram.len() as u64;
        if truncated {
            self.counters.drop(DropReason::Oversized);
            self.backend.free(buf);
            return;
        }
        if let Via::Esp(encap) = via {
            return self.receive_outer_esp(buf, datagram, (from, encap, link));
        }
        let kind = proto::wire::message_type(&self.backend.buf(buf)[datagram.clone()]);
        let d = datagram;
        match kind {
            Ok(MSG_INITIATION) => self.forward_handshake(buf, d, INITIATION_LEN, (from, link), now),
            Ok(MSG_RESPONSE) => self.forward_handshake(buf, d, RESPONSE_LEN, (from, link), now),
            Ok(MSG_COOKIE_REPLY) => {
                self.forward_handshake(buf, d, COOKIE_REPLY_LEN, (from, link), now)
            }
            Ok(MSG_TRANSPORT) => self.receive_transport(buf, d, from, link, now),
            Ok(_) => {
                self.counters.drop(DropReason::UnknownType);
                self.backend.free(buf);
            }
            Err(_) => {
                self.counters.drop(DropReason::Truncated);
                self.backend.free(buf);
            }
        }
    }

    /// Passes a handshake message of the right size to the control plane, without waiting.
    fn forward_handshake(
        &mut self,
        buf: BufId,
        datagram: Range<usize>,
        exact: usize,
        (from, link): (SocketAddr, Option<LinkPath>),
        now: Instant,
    ) {
        let len = datagram.len();
        if len != exact {
            self.counters.drop(if len < exact {
                DropReason::Truncated
            } else {
                DropReason::Oversized
            });
            self.backend.free(buf);
            return;
        }
        let mut msg = HandshakeDatagram {
            worker: self.id,
            from,
            link,
            at: now,
            len,
            bytes: [0u8; INITIATION_LEN],
        };
        msg.bytes[..len].copy_from_slice(&self.backend.buf(buf)[datagram]);
        self.backend.free(buf);
        match self.links.handshakes.try_send(msg) {
            Ok(()) => self.counters.handshakes_forwarded += 1,
            Err(_) => self.counters.drop(DropReason::HandshakeQueueFull),
        }
    }

    /// Opens a transport message if this worker owns its session; otherwise hands it over.
    pub(super) fn receive_transport(
        &mut self,
        buf: BufId,
        datagram: Range<usize>,
        from: SocketAddr,
        link: Option<LinkPath>,
        now: Instant,
    ) {
        let len = datagram.len();
        let Ok(header) =
            proto::wire::TransportHeader::parse(&self.backend.buf(buf)[datagram.clone()])
        else {
            self.counters.drop(DropReason::Truncated);
            self.backend.free(buf);
            return;
        };
        let owner = index_owner(header.receiver);
        if owner != self.id {
            let mesh = &self.links.mesh;
            if owner < mesh.len() && mesh.live().may_contain(header.receiver) {
                self.hand_over(owner, HandoverKind::Outer(from, link), buf, datagram);
            } else {
                self.stray(buf, header.receiver, from, now);
            }
            return;
        }
        let Some(&peer) = self.indices.get(&header.receiver) else {
            self.stray(buf, header.receiver, from, now);
            return;
        };
        let Some(slot) = self.peers.get_mut(peer) else {
            self.stray(buf, header.receiver, from, now);
            return;
        };
        let packet = &mut self.backend.buf(buf)[datagram.clone()];
        let opened = match slot.transport.open(now, from, header.receiver, packet) {
            Ok(opened) => opened,
            Err(e) => {
                self.counters.drop(match e {
                    OpenError::UnknownIndex(_) => DropReason::UnknownIndex,
                    OpenError::Expired => DropReason::ExpiredSession,
                    OpenError::Transport(TransportError::Replay(_)) => DropReason::Replayed,
                    OpenError::Transport(TransportError::BadTag) => DropReason::BadTag,
                    OpenError::Transport(_) => DropReason::Truncated,
                });
                self.backend.free(buf);
                return;
            }
        };

        // Authenticated: the transport rules have run; what is left is this worker's part.
        slot.rx_bytes += len as u64;
        slot.link = link;
        if opened.confirmed.is_some() {
            slot.last_handshake = Some(now);
        }
        if let Some(retired) = opened.confirmed {
            self.retire(retired);
        }
        if opened.roamed {
            let _ = self
                .links
                .events
                .send(crate::messages::WorkerEvent::EndpointChanged {
                    peer,
                    endpoint: from,
                });
        }
        if opened.rekey {
            self.want_handshake(peer, now);
        }
        if opened.confirmed.is_some() {
            self.flush_staged(peer, now);
        }
        if opened.len == 0 {
            self.backend.free(buf);
            return;
        }
        let at = datagram.start + TRANSPORT_HEADER_LEN;
        self.deliver_inner(peer, buf, at, opened.len);
    }

    /// Drops a transport message for an index no session here has (counted), and reports it
    /// to the control plane within the budget: in a cluster it may come from another node's
    /// user, whom this node can reach at once.
    fn stray(&mut self, buf: BufId, receiver: u32, from: SocketAddr, now: Instant) {
        self.counters.drop(DropReason::UnknownIndex);
        self.backend.free(buf);
        if self.strays.take(now, receiver) {
            let _ = self
                .links
                .events
                .send(crate::messages::WorkerEvent::StrayTransport { receiver, from });
        }
    }

    /// Writes the decrypted packet at `buf[at..at + n]` to the TUN if its source belongs to
    /// the peer that sent it.
    pub(super) fn deliver_inner(
        &mut self,
        peer: crate::route::PeerId,
        buf: BufId,
        at: usize,
        n: usize,
    ) {
        let packet = &self.backend.buf(buf)[at..at + n];
        let Some(header) = proto::inner::parse(packet) else {
            self.counters.drop(DropReason::BadInnerPacket);
            self.backend.free(buf);
            return;
        };
        if self.routes.lookup(header.src) != Some(peer) {
            self.counters.drop(DropReason::SourceNotAllowed);
            self.backend.free(buf);
            return;
        }
        // Clamp SYNs from the peer too, so the server side's segments fit the tunnel.
        let mtu = self.mtu;
        let packet = &mut self.backend.buf(buf)[at..at + header.len];
        if crate::inner::clamp_mss(packet, mtu) {
            self.counters.mss_clamped += 1;
        }
        match self.backend.send_inner(buf, at..at + header.len) {
            InnerWay::Tun => self.counters.tun_writes += 1,
            // Counted by the backend (`lan_tx_packets`).
            InnerWay::Lan => {}
        }
    }
}
