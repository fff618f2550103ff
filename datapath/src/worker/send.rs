//! The send path: an inner packet from the TUN (or handed over by another worker) is routed
//! to its peer by destination, sealed in place and sent; or staged until a handshake completes.

use std::time::Instant;

use proto::transport::Sealed;

use super::{HandoverKind, Worker, MAX_STAGED};
use crate::inner::{clamp_mss, packet_too_big, TOO_BIG_MAX_LEN};
use crate::io::{Backend, BufId, INNER_OFFSET, WG_HEADER_AT};
use crate::messages::peer_owner;
use crate::route::PeerId;
use crate::stats::DropReason;

impl<B: Backend> Worker<B> {
    /// A packet read from this worker's TUN queue or LAN socket.
    pub(super) fn receive_inner(&mut self, buf: BufId, len: usize, now: Instant) {
        let Some(peer) = self.route_inner(buf, len) else {
            self.backend.free(buf);
            return;
        };
        let owner = peer_owner(peer, self.links.mesh.len());
        if owner != self.id {
            self.hand_over(
                owner,
                HandoverKind::Inner,
                buf,
                INNER_OFFSET..INNER_OFFSET + len,
            );
            return;
        }
        self.send_to_peer(peer, buf, len, now);
    }

    /// A packet handed over by another worker: route again (the table may have changed).
    pub(super) fn send_to_peer_checked(&mut self, buf: BufId, len: usize, now: Instant) {
        match self.route_inner(buf, len) {
            Some(peer) if peer_owner(peer, self.links.mesh.len()) == self.id => {
                self.send_to_peer(peer, buf, len, now)
            }
            Some(_) => {
                self.counters.drop(DropReason::NoRoute);
                self.backend.free(buf);
            }
            None => self.backend.free(buf),
        }
    }

    /// The peer an inner packet is for, counting the drop if there is none.
    fn route_inner(&mut self, buf: BufId, len: usize) -> Option<PeerId> {
        let packet = &self.backend.buf(buf)[INNER_OFFSET..INNER_OFFSET + len];
        let Some(header) = proto::inner::parse(packet) else {
            self.counters.drop(DropReason::BadInnerPacket);
            return None;
        };
        let peer = self.routes.lookup(header.dst);
        if peer.is_none() {
            self.counters.drop(DropReason::NoRoute);
        }
        peer
    }

    /// Clamps a SYN's MSS and refuses packets over the MTU; false if the packet was dropped.
    fn fit_to_tunnel(&mut self, buf: BufId, len: usize) -> bool {
        let mtu = self.mtu;
        let packet = &mut self.backend.buf(buf)[INNER_OFFSET..INNER_OFFSET + len];
        if clamp_mss(packet, mtu) {
            self.counters.mss_clamped += 1;
        }
        if len <= mtu {
            return true;
        }
        if packet.first().is_some_and(|b| b >> 4 == 4)
            && packet.get(6).is_some_and(|f| f & 0x40 == 0)
        {
            // IPv4 without DF: sent as it is, the outer packet is fragmented on the way.
            return true;
        }
        self.counters.drop(DropReason::TooBig);
        if let Some(reply) = self.backend.alloc() {
            let mut scratch = [0u8; TOO_BIG_MAX_LEN];
            let answer = packet_too_big(
                &self.backend.buf(buf)[INNER_OFFSET..INNER_OFFSET + len],
                mtu,
                &mut scratch,
            );
            match answer {
                Some(n) => {
                    // At INNER_OFFSET like every inner packet: the headroom takes the TUN's
                    // vnet header.
                    let at = INNER_OFFSET;
                    self.backend.buf(reply)[at..at + n].copy_from_slice(&scratch[..n]);
                    // Counted as an answer, whichever way it leaves.
                    let _ = self.backend.send_inner(reply, at..at + n);
                    self.counters.icmp_too_big_sent += 1;
                }
                None => self.backend.free(reply),
            }
        }
        self.backend.free(buf);
        false
    }

    /// Seals and sends `buf[INNER_OFFSET..][..len]` to `peer`, or stages it.
    pub(super) fn send_to_peer(&mut self, peer: PeerId, buf: BufId, len: usize, now: Instant) {
        if len > 0 && !self.fit_to_tunnel(buf, len) {
            return;
        }
        if crate::messages::is_esp(peer) {
            return self.send_esp(peer, buf, len, now);
        }
        let mtu = self.mtu;
        let jitter = self.next_jitter();
        let Some(slot) = self.peers.get_mut(peer) else {
            self.counters.drop(DropReason::NoRoute);
            self.backend.free(buf);
            return;
        };
        let link = slot.link;
        let Some(endpoint) = slot.transport.endpoint() else {
            self.counters.drop(DropReason::NoEndpoint);
            self.backend.free(buf);
            return;
        };
        let packet = &mut self.backend.buf(buf)[WG_HEADER_AT..];
        match slot.transport.seal(now, packet, len, mtu, jitter) {
            Sealed::Sent { len: n, rekey } => {
                let at = WG_HEADER_AT;
                self.backend.send_outer(buf, at..at + n, endpoint, link);
                self.counters.tx_datagrams += 1;
                self.counters.tx_bytes += n as u64;
                slot.tx_bytes += n as u64;
                if rekey {
                    self.want_handshake(peer, now);
                }
            }
            Sealed::NoSession => {
                if slot.staged.len() == MAX_STAGED {
                    let (oldest, _) = slot.staged.remove(0);
                    self.backend.free(oldest);
                    self.counters.drop(DropReason::StagedOverflow);
                }
                if slot.staged.capacity() == 0 {
                    // Once per peer: later stagings reuse this space.
                    slot.staged.reserve_exact(MAX_STAGED);
                }
                slot.staged.push((buf, len));
                self.want_handshake(peer, now);
            }
            Sealed::Failed(_) => {
                self.counters.drop(DropReason::SendFailed);
                self.backend.free(buf);
            }
        }
    }

    /// Sends an empty transport message if the peer has a session and an endpoint; without a
    /// session, asks for a handshake instead (as a persistent keepalive must).
    pub(super) fn send_keepalive(&mut self, peer: PeerId, now: Instant) {
        let usable = self
            .peers
            .get_mut(peer)
            .is_some_and(|s| s.transport.endpoint().is_some() && s.transport.can_send(now));
        if !usable {
            let has_endpoint = self
                .peers
                .get(peer)
                .is_some_and(|s| s.transport.endpoint().is_some());
            if has_endpoint {
                self.want_handshake(peer, now);
            }
            return;
        }
        match self.backend.alloc() {
            Some(buf) => self.send_to_peer(peer, buf, 0, now),
            None => self.counters.drop(DropReason::NoBuffer),
        }
    }

    /// Sends what was staged for `peer`; true if there was anything.
    pub(super) fn flush_staged(&mut self, peer: PeerId, now: Instant) -> bool {
        let staged = match self.peer_mut(peer) {
            Some(slot) if !slot.staged.is_empty() => std::mem::take(&mut slot.staged),
            _ => return false,
        };
        let mut staged = staged;
        for (buf, len) in staged.drain(..) {
            self.send_to_peer(peer, buf, len, now);
        }
        // Give the (now empty) vector back so its capacity is reused.
        if let Some(slot) = self.peer_mut(peer) {
            if slot.staged.is_empty() {
                slot.staged = staged;
            }
        }
        true
    }
}
