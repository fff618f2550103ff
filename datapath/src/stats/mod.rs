//! Per-worker counters: packets dropped by reason, and traffic totals. Each worker owns its
//! array (no shared cache lines); the control plane sums snapshots when asked. Every counter
//! here is declared once, in the tables below (`table` says how they are read).

mod table;

pub use table::{CounterDef, CounterKind, Family};

/// The family every worker drop is counted in, labelled by reason.
pub const WORKER_DROPS: Family = Family {
    name: "xgate_worker_drops_total",
    help: "Packets a worker dropped, by reason.",
};

/// Declares `DropReason` with its order, its names and its counter definitions.
macro_rules! drop_reasons {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $name:literal, )*) => {
        /// Why a worker dropped a packet.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(usize)]
        pub enum DropReason {
            $( $(#[doc = $doc])+ $variant, )*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: [DropReason; [$($name),*].len()] = [$(DropReason::$variant),*];

            /// Each reason's counter, in the same order.
            pub const DEFS: [CounterDef; [$($name),*].len()] = [$(
                CounterDef {
                    name: $name,
                    kind: CounterKind::Drop,
                    family: Some(WORKER_DROPS),
                    label: Some(("reason", $name)),
                },
            )*];

            /// The name operators see (snake_case, stable: scripts parse it).
            pub fn name(self) -> &'static str {
                Self::DEFS[self as usize].name
            }
        }
    };
}

drop_reasons! {
    /// Shorter than its message type requires.
    Truncated = "truncated",
    /// Longer than its message type allows, or than a receive buffer.
    Oversized = "oversized",
    /// The first four bytes name no WireGuard message.
    UnknownType = "unknown_type",
    /// The control plane's handshake queue was full.
    HandshakeQueueFull = "handshake_queue_full",
    /// A transport message for a receiver index we do not have.
    UnknownIndex = "unknown_index",
    /// A transport message for a session past REJECT_AFTER_TIME.
    ExpiredSession = "expired_session",
    /// A transport counter already seen or behind the replay window.
    Replayed = "replayed",
    /// A transport message whose tag did not verify (forged or corrupted).
    BadTag = "bad_tag",
    /// A decrypted payload that is not a well-formed IP packet.
    BadInnerPacket = "bad_inner_packet",
    /// A decrypted packet whose source is not in the sending peer's allowed IPs.
    SourceNotAllowed = "source_not_allowed",
    /// An inner packet whose destination is in no peer's allowed IPs.
    NoRoute = "no_route",
    /// An inner packet for a peer with no endpoint to send to.
    NoEndpoint = "no_endpoint",
    /// Staged packets overflowed while a handshake was pending.
    StagedOverflow = "staged_overflow",
    /// The queue to another worker was full.
    HandoverFull = "handover_full",
    /// No free packet buffer.
    NoBuffer = "no_buffer",
    /// The kernel refused to send or write the packet.
    SendFailed = "send_failed",
    /// An inner packet larger than the tunnel MTU that may not be fragmented; an ICMP
    /// "packet too big" went back to its sender where one is due.
    TooBig = "too_big",
    /// A TUN super-packet whose offload header could not be followed.
    BadOffload = "bad_offload",
    /// An AF_XDP frame whose IP or UDP header did not add up (length, IPv4 header checksum).
    BadFrame = "bad_frame",
    /// An ESP packet too short for its header, IV, trailer and ICV, or not 4-byte aligned.
    EspMalformed = "esp_malformed",
    /// An ESP packet for an SPI no SA has.
    EspUnknownSpi = "esp_unknown_spi",
    /// An ESP sequence number already received or behind the replay window.
    EspReplayed = "esp_replayed",
    /// An ESP packet whose ICV did not verify (forged or corrupted).
    EspBadIcv = "esp_bad_icv",
    /// An authentic ESP packet whose padding is not 1, 2, 3, ...
    EspBadPadding = "esp_bad_padding",
    /// An authentic ESP packet carrying something other than IPv4 or IPv6 (tunnel mode).
    EspBadNextHeader = "esp_bad_next_header",
    /// An authentic ESP dummy packet (next header 59, traffic-flow confidentiality).
    EspDummy = "esp_dummy",
    /// An outbound ESP SA used every sequence number (it should have been rekeyed).
    EspExhausted = "esp_exhausted",
    /// IKE (the non-ESP marker) that reached a worker on the NAT-T port: steering missed it.
    IkeOnWorker = "ike_on_worker",
}

crate::counters! {
    /// One worker's counters.
    pub struct WorkerCounters {
        drops: [DropReason];
        /// Datagrams received on the outer socket.
        rx_datagrams: Stat "rx_datagrams" => "xgate_worker_rx_datagrams_total";
        /// Datagrams sent on the outer socket.
        tx_datagrams: Stat "tx_datagrams" => "xgate_worker_tx_datagrams_total";
        /// Packets read from the TUN (a super-packet counts once).
        tun_reads: Stat "tun_reads" => "xgate_worker_tun_reads_total";
        /// Packets written into the TUN.
        tun_writes: Stat "tun_writes" => "xgate_worker_tun_writes_total";
        /// Packets passed to the worker that owns their peer.
        handed_over: Stat "handed_over" => "xgate_worker_handed_over_total";
        /// Of those, datagrams that arrived on another worker's socket: steering missed them
        /// (initiations are not counted; they go to the control plane).
        outer_handed_over: Stat "outer_handed_over";
        /// Handshake messages passed to the control plane.
        handshakes_forwarded: Stat "handshakes_forwarded";
        /// TCP SYNs whose MSS was lowered to fit the tunnel.
        mss_clamped: Stat "mss_clamped";
        /// Outer receives that carried a run of datagrams (UDP_GRO).
        coalesced_receives: Stat "coalesced_receives";
        /// TUN reads that carried a super-packet, cut into tunnel-sized packets (TSO/USO).
        tun_super_packets: Stat "tun_super_packets";
        /// TUN writes that carried a run of TCP segments as one super-packet.
        tun_coalesced_writes: Stat "tun_coalesced_writes";
        /// Writes into the TUN, a coalesced run counting once (`tun_writes` counts packets).
        tun_write_calls: Stat "tun_write_calls";
        /// Sends on the outer sockets through the kernel, a UDP_SEGMENT batch counting once
        /// (`tx_datagrams` counts datagrams, AF_XDP's included).
        outer_send_calls: Stat "outer_send_calls";
        /// ICMP "packet too big" errors written back into the TUN.
        icmp_too_big_sent: Stat "icmp_too_big_sent";
        /// Bytes of datagrams received on the outer socket.
        rx_bytes: Stat "rx_bytes" => "xgate_worker_rx_bytes_total";
        /// Bytes of datagrams sent on the outer socket.
        tx_bytes: Stat "tx_bytes" => "xgate_worker_tx_bytes_total";
        /// Sessions installed in the worker (a completed handshake's keys each).
        sessions_installed: Stat "sessions_installed" => "xgate_worker_key_installs_total";
        /// Sessions whose expanded keys were freed while their peer was idle (rebuilt by its
        /// next packet).
        sessions_compacted: Stat "sessions_compacted" => "xgate_worker_sessions_compacted_total";
        /// Datagrams the AF_XDP backend sent through the kernel's UDP socket (no link path to
        /// the peer known yet).
        outer_kernel_sends: Stat "outer_kernel_sends" => "xgate_worker_outer_kernel_sends_total";
        /// Datagrams received through AF_XDP sockets.
        xdp_rx_frames: Stat "xdp_rx_frames" => "xgate_worker_xdp_rx_frames_total";
        /// Datagrams sent through AF_XDP sockets.
        xdp_tx_frames: Stat "xdp_tx_frames" => "xgate_worker_xdp_tx_frames_total";
        /// Authentic ESP packets opened (dummies not counted).
        esp_rx_packets: Stat "esp_rx_packets" => "xgate_worker_esp_rx_packets_total";
        /// ESP packets sealed and sent.
        esp_tx_packets: Stat "esp_tx_packets" => "xgate_worker_esp_tx_packets_total";
        /// NAT-T keepalives (a lone 0xFF byte, RFC 3948 §2.3) received on the NAT-T port.
        nat_keepalives: Stat "nat_keepalives";
        /// Packets from the LAN received on its AF_XDP sockets (`inner = "af-xdp"`).
        lan_rx_packets: Stat "lan_rx_packets" => "xgate_worker_lan_rx_packets_total";
        /// Decrypted packets sent to the LAN on its AF_XDP sockets.
        lan_tx_packets: Stat "lan_tx_packets" => "xgate_worker_lan_tx_packets_total";
        /// Packets for the LAN written into the TUN: their route leaves by no LAN interface
        /// (the host's own address, another network).
        lan_fallback_not_lan: Stat "lan_fallback_not_lan";
        /// ... because the next hop's link address was not known yet.
        lan_fallback_unresolved: Stat "lan_fallback_unresolved";
        /// ... because they were IPv4 fragments.
        lan_fallback_fragment: Stat "lan_fallback_fragment";
        /// ... because they were longer than the LAN interface's MTU.
        lan_fallback_too_big: Stat "lan_fallback_too_big";
        /// ... because their TTL or hop limit ran out.
        lan_fallback_ttl: Stat "lan_fallback_ttl";
    }
}

impl WorkerCounters {
    /// Counts one drop.
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    /// The count for one reason.
    pub fn drops_for(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn reasons_index_their_own_counter() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert_eq!(DropReason::DEFS[i].name, r.name());
        }
        let mut a = WorkerCounters {
            rx_bytes: 5,
            ..Default::default()
        };
        a.drop(DropReason::BadTag);
        let mut b = WorkerCounters::default();
        b.drop(DropReason::BadTag);
        b.add(&a);
        assert_eq!(b.drops_for(DropReason::BadTag), 2);
        assert_eq!(b.drops_for(DropReason::Replayed), 0);
        assert_eq!(b.rx_bytes, 5);
    }

    #[test]
    fn every_counter_is_visited_once_with_its_own_value() {
        let mut c = WorkerCounters {
            tun_writes: 7,
            sessions_installed: 3,
            ..Default::default()
        };
        c.drop(DropReason::NoRoute);
        let mut seen = HashSet::new();
        let mut total = 0;
        c.for_each(|def, v| {
            assert!(seen.insert((def.kind, def.name)), "{} twice", def.name);
            total += v;
            match def.name {
                "tun_writes" => assert_eq!(v, 7),
                "sessions_installed" => {
                    assert_eq!(v, 3);
                    assert_eq!(
                        def.family.map(|f| f.name),
                        Some("xgate_worker_key_installs_total")
                    );
                }
                "no_route" => assert_eq!(v, 1),
                _ => assert_eq!(v, 0, "{}", def.name),
            }
        });
        assert_eq!(total, 11);
        assert_eq!(
            seen.len(),
            WorkerCounters::DEFS.len() + DropReason::ALL.len()
        );
    }

    #[test]
    fn exported_names_follow_prometheus_conventions() {
        for def in WorkerCounters::DEFS.iter().chain(DropReason::DEFS.iter()) {
            if let Some(f) = def.family {
                assert!(
                    f.name.starts_with("xgate_") && f.name.ends_with("_total"),
                    "{}",
                    f.name
                );
                assert!(!f.help.trim().is_empty(), "{} has no HELP", f.name);
            }
        }
    }
}
