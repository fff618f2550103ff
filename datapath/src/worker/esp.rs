//! ESP tunnels (IKEv2 users) on a worker: ESP, UDP-encapsulated from the NAT-T port or raw
//! (IP protocol 50, by AF_XDP), is opened by the SA its SPI names (`ike::esp`, the same rules
//! the loadtest runs) and joins the WireGuard inner path (allowed-source check, MSS clamp,
//! TUN); inner packets routed to a tunnel are sealed by its outbound SA and leave the way the
//! peer's own ESP last came (from the NAT-T port, or raw). Keys come from the IKE responder
//! through the control plane; the worker never does IKE.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use ike::esp::{EspDrop, EspSealError, Inbound, Outbound, ESP_HEADER_LEN, NEXT_IPV4, NEXT_IPV6};
use rustc_hash::FxHashMap;

use super::{HandoverKind, Worker};
use crate::io::{Backend, BufId, EspEncap, LinkPath, INNER_OFFSET};
use crate::messages::{spi_owner, EspSa};
use crate::route::PeerId;
use crate::stats::DropReason;

/// Inbound SAs a tunnel keeps at once: the current one, rekeyed ones not yet deleted, and
/// room for a peer that rekeys faster than it deletes (the oldest goes beyond that).
const MAX_INBOUND: usize = 4;

/// An outbound SA and our SPI of the CHILD_SA it belongs to.
struct Sending {
    sa: Outbound,
    pair: u32,
}

/// How long an inbound SA the peer deleted still opens packets: ESP sent before the peer's
/// Delete may arrive after it (the Delete takes the IKE thread and the control plane, the
/// ESP the worker's own queue).
const DRAIN: Duration = Duration::from_secs(2);

/// One IKEv2 user's tunnel, as the worker that owns it keeps it.
pub struct EspTunnel {
    /// The SAs received on, oldest first.
    inbound: Vec<Inbound>,
    /// Inbound SPIs the peer deleted, each open until its time for packets already sent.
    draining: Vec<(u32, Instant)>,
    /// The SA sent on.
    sending: Sending,
    /// A rekey's outbound SA, used once the peer sends on its pair or the old SA goes (the
    /// peer may not have installed it yet when our answer leaves).
    next: Option<Sending>,
    /// Where the peer is.
    endpoint: SocketAddr,
    /// How ESP travels to it.
    encap: EspEncap,
    /// The link path its last authentic packet came by (AF_XDP): replies go back the same
    /// way without a route or neighbour lookup.
    link: Option<LinkPath>,
    /// Bytes of ESP packets received and opened.
    pub rx_bytes: u64,
    /// Bytes of ESP packets sent.
    pub tx_bytes: u64,
}

impl EspTunnel {
    /// Where the peer is.
    pub fn endpoint(&self) -> SocketAddr {
        self.endpoint
    }

    /// Forgets the draining SAs whose time is up; returns their SPIs.
    fn drained(&mut self, now: Instant) -> Vec<u32> {
        let (gone, kept): (Vec<_>, Vec<_>) = self.draining.iter().partition(|(_, t)| *t <= now);
        self.draining = kept;
        let gone: Vec<u32> = gone.into_iter().map(|(spi, _)| spi).collect();
        self.inbound
            .retain(|sa| !gone.contains(&u32::from_be_bytes(sa.spi())));
        gone
    }

    /// Takes the rekey's outbound SA into use.
    fn promote(&mut self) {
        if let Some(next) = self.next.take() {
            self.sending = next;
        }
    }
}

/// A worker's ESP tunnels, and which tunnel each of its inbound SPIs belongs to. Both are
/// looked up per packet with keys this side chose (its SPIs, its peer numbers), so a fast
/// hash serves: a forged SPI only misses, it never goes in.
#[derive(Default)]
pub struct EspTunnels {
    tunnels: FxHashMap<PeerId, EspTunnel>,
    spis: FxHashMap<u32, PeerId>,
}

impl EspTunnels {
    /// Installs a CHILD_SA (see `ToWorker::InstallEsp`).
    pub fn install(
        &mut self,
        tunnel: PeerId,
        sa: EspSa,
        (endpoint, encap): (SocketAddr, EspEncap),
    ) {
        let spi = u32::from_be_bytes(sa.inbound.spi());
        let sending = Sending {
            sa: sa.outbound,
            pair: spi,
        };
        self.spis.insert(spi, tunnel);
        match self.tunnels.get_mut(&tunnel) {
            Some(t) => {
                if t.inbound.len() == MAX_INBOUND {
                    let oldest = u32::from_be_bytes(t.inbound.remove(0).spi());
                    self.spis.remove(&oldest);
                    t.draining.retain(|(spi, _)| *spi != oldest);
                }
                // A CHILD_SA made again after the last was deleted: its pair is gone, so the
                // new SA sends at once.
                let pair = t.sending.pair;
                let current = !t.draining.iter().any(|(spi, _)| *spi == pair)
                    && t.inbound
                        .iter()
                        .any(|sa| u32::from_be_bytes(sa.spi()) == pair);
                t.inbound.push(sa.inbound);
                if current {
                    t.next = Some(sending);
                } else {
                    t.sending = sending;
                    t.next = None;
                }
                // Where and how to send stay as the peer's own ESP (and MoveEsp) left them:
                // a peer that chose UDP where no NAT is keeps it across rekeys.
            }
            None => {
                self.tunnels.insert(
                    tunnel,
                    EspTunnel {
                        inbound: vec![sa.inbound],
                        draining: Vec::new(),
                        sending,
                        next: None,
                        endpoint,
                        encap,
                        link: None,
                        rx_bytes: 0,
                        tx_bytes: 0,
                    },
                );
            }
        }
    }

    /// The peer deleted the SA received on `spi` at `now`: it drains (still opening what was
    /// sent before the Delete) for `DRAIN`; if it was the pair of the SA sent on, the rekey's
    /// takes over at once.
    pub fn remove_sa(&mut self, tunnel: PeerId, spi: u32, now: Instant) {
        let Some(t) = self.tunnels.get_mut(&tunnel) else {
            return;
        };
        let held = t
            .inbound
            .iter()
            .any(|sa| u32::from_be_bytes(sa.spi()) == spi);
        if held && !t.draining.iter().any(|(s, _)| *s == spi) {
            t.draining.push((spi, now + DRAIN));
        }
        if t.next.as_ref().is_some_and(|n| n.pair == spi) {
            // The rekey's SA went before it was used.
            t.next = None;
        } else if t.sending.pair == spi {
            t.promote();
        }
    }

    /// Forgets every inbound SA whose draining is over at `now`.
    pub fn sweep(&mut self, now: Instant) {
        for t in self.tunnels.values_mut() {
            for spi in t.drained(now) {
                self.spis.remove(&spi);
            }
        }
    }

    /// Sends to `endpoint` from now on (the IKE SA moved, as through a NAT rebinding: a raw
    /// tunnel stays raw until the peer's ESP says otherwise).
    pub fn move_to(&mut self, tunnel: PeerId, endpoint: SocketAddr) {
        if let Some(t) = self.tunnels.get_mut(&tunnel) {
            t.endpoint = endpoint;
            // The path learned to the old address is no path to the new one.
            t.link = None;
        }
    }

    /// Forgets a tunnel and its SAs.
    pub fn remove(&mut self, tunnel: PeerId) {
        if let Some(t) = self.tunnels.remove(&tunnel) {
            for sa in &t.inbound {
                self.spis.remove(&u32::from_be_bytes(sa.spi()));
            }
        }
    }

    /// Every tunnel, with its number.
    pub fn iter(&self) -> impl Iterator<Item = (PeerId, &EspTunnel)> + '_ {
        self.tunnels.iter().map(|(id, t)| (*id, t))
    }
}

/// The counter an inbound refusal goes to.
fn drop_reason(e: EspDrop) -> DropReason {
    match e {
        EspDrop::Malformed => DropReason::EspMalformed,
        EspDrop::WrongSpi => DropReason::EspUnknownSpi,
        EspDrop::Replayed(_) => DropReason::EspReplayed,
        EspDrop::BadIcv => DropReason::EspBadIcv,
        EspDrop::BadPadding => DropReason::EspBadPadding,
        EspDrop::Dummy => DropReason::EspDummy,
        EspDrop::BadNextHeader(_) => DropReason::EspBadNextHeader,
        EspDrop::InnerTruncated => DropReason::BadInnerPacket,
    }
}

impl<B: Backend> Worker<B> {
    /// ESP from the outer side (a datagram on the NAT-T port, which may also be a NAT
    /// keepalive, or a raw ESP packet): on to the worker its SPI names.
    pub(super) fn receive_outer_esp(
        &mut self,
        buf: BufId,
        datagram: Range<usize>,
        (from, encap, link): (SocketAddr, EspEncap, Option<LinkPath>),
    ) {
        let bytes = &self.backend.buf(buf)[datagram.clone()];
        if encap == EspEncap::Udp && bytes == [0xff] {
            self.counters.nat_keepalives += 1;
            self.backend.free(buf);
            return;
        }
        if bytes.len() < ESP_HEADER_LEN {
            self.counters.drop(DropReason::EspMalformed);
            self.backend.free(buf);
            return;
        }
        let spi = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if spi == 0 {
            // On the NAT-T port, IKE behind its marker (the kernel's socket should have had
            // it); raw, a reserved SPI no SA has.
            self.counters.drop(match encap {
                EspEncap::Udp => DropReason::IkeOnWorker,
                EspEncap::Raw => DropReason::EspUnknownSpi,
            });
            self.backend.free(buf);
            return;
        }
        let owner = spi_owner(spi);
        if owner == self.id {
            return self.receive_esp(buf, datagram, (from, encap, link));
        }
        if owner < self.links.mesh.len() {
            self.hand_over(owner, HandoverKind::Esp(from, encap, link), buf, datagram);
        } else {
            self.counters.drop(DropReason::EspUnknownSpi);
            self.backend.free(buf);
        }
    }

    /// Opens an ESP packet of one of this worker's SAs and passes its inner packet on.
    pub(super) fn receive_esp(
        &mut self,
        buf: BufId,
        datagram: Range<usize>,
        (from, encap, link): (SocketAddr, EspEncap, Option<LinkPath>),
    ) {
        let packet = &mut self.backend.buf(buf)[datagram.clone()];
        let spi = match packet.get(..4) {
            Some(s) => u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
            None => 0,
        };
        let tunnel = self.esp.spis.get(&spi).copied();
        let t = tunnel.and_then(|id| self.esp.tunnels.get_mut(&id));
        let (Some(tunnel), Some(t)) = (tunnel, t) else {
            self.counters.drop(DropReason::EspUnknownSpi);
            self.backend.free(buf);
            return;
        };
        let Some(sa) = t
            .inbound
            .iter_mut()
            .find(|sa| sa.spi() == spi.to_be_bytes())
        else {
            self.counters.drop(DropReason::EspUnknownSpi);
            self.backend.free(buf);
            return;
        };
        match sa.open(packet) {
            Ok(opened) => {
                t.rx_bytes += datagram.len() as u64;
                // Authentic: the peer is where, and as, it came from (a NAT may have rebound
                // it; a peer may encapsulate where no NAT is, RFC 3948 §2.2 lets it).
                t.endpoint = from;
                t.encap = encap;
                t.link = link;
                if t.next.as_ref().is_some_and(|n| n.pair == spi) {
                    t.promote();
                }
                self.counters.esp_rx_packets += 1;
                let at = datagram.start + opened.inner.start;
                self.deliver_inner(tunnel, buf, at, opened.inner.len());
            }
            Err(e) => {
                self.counters.drop(drop_reason(e));
                self.backend.free(buf);
            }
        }
    }

    /// Seals the inner packet at `buf[INNER_OFFSET..][..len]` for tunnel `tunnel` and sends it
    /// the tunnel's way (from the NAT-T port, or raw).
    pub(super) fn send_esp(&mut self, tunnel: PeerId, buf: BufId, len: usize, _now: Instant) {
        let Some(t) = self.esp.tunnels.get_mut(&tunnel) else {
            self.counters.drop(DropReason::NoRoute);
            self.backend.free(buf);
            return;
        };
        let packet = self.backend.buf(buf);
        let next_header = match packet[INNER_OFFSET] >> 4 {
            4 => NEXT_IPV4,
            6 => NEXT_IPV6,
            _ => {
                self.counters.drop(DropReason::BadInnerPacket);
                self.backend.free(buf);
                return;
            }
        };
        let inner = INNER_OFFSET..INNER_OFFSET + len;
        match t.sending.sa.seal(&mut packet[..], inner, next_header) {
            Ok(range) => {
                let n = range.len() as u64;
                t.tx_bytes += n;
                let (to, encap, link) = (t.endpoint, t.encap, t.link);
                self.backend.send_esp(buf, range, (to, encap, link));
                self.counters.esp_tx_packets += 1;
                self.counters.tx_datagrams += 1;
                self.counters.tx_bytes += n;
            }
            Err(e) => {
                self.counters.drop(match e {
                    EspSealError::Exhausted => DropReason::EspExhausted,
                    EspSealError::NoRoom | EspSealError::Cipher => DropReason::SendFailed,
                });
                self.backend.free(buf);
            }
        }
    }
}
