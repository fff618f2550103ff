//! Per-worker counters: packets dropped by reason, and traffic totals. Each worker owns its
//! array (no shared cache lines); the control plane sums snapshots when asked.

/// Why a worker dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum DropReason {
    /// Shorter than its message type requires.
    Truncated,
    /// Longer than its message type allows, or than a receive buffer.
    Oversized,
    /// The first four bytes name no WireGuard message.
    UnknownType,
    /// The control plane's handshake queue was full.
    HandshakeQueueFull,
    /// A transport message for a receiver index we do not have.
    UnknownIndex,
    /// A transport message for a session past REJECT_AFTER_TIME.
    ExpiredSession,
    /// A transport counter already seen or behind the replay window.
    Replayed,
    /// A transport message whose tag did not verify (forged or corrupted).
    BadTag,
    /// A decrypted payload that is not a well-formed IP packet.
    BadInnerPacket,
    /// A decrypted packet whose source is not in the sending peer's allowed IPs.
    SourceNotAllowed,
    /// An inner packet whose destination is in no peer's allowed IPs.
    NoRoute,
    /// An inner packet for a peer with no endpoint to send to.
    NoEndpoint,
    /// Staged packets overflowed while a handshake was pending.
    StagedOverflow,
    /// The queue to another worker was full.
    HandoverFull,
    /// No free packet buffer.
    NoBuffer,
    /// The kernel refused to send or write the packet.
    SendFailed,
    /// An inner packet larger than the tunnel MTU that may not be fragmented; an ICMP
    /// "packet too big" went back to its sender where one is due.
    TooBig,
    /// A TUN super-packet whose offload header could not be followed.
    BadOffload,
    /// An AF_XDP frame whose IP or UDP header did not add up (length, IPv4 header checksum).
    BadFrame,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 19] = [
        DropReason::Truncated,
        DropReason::Oversized,
        DropReason::UnknownType,
        DropReason::HandshakeQueueFull,
        DropReason::UnknownIndex,
        DropReason::ExpiredSession,
        DropReason::Replayed,
        DropReason::BadTag,
        DropReason::BadInnerPacket,
        DropReason::SourceNotAllowed,
        DropReason::NoRoute,
        DropReason::NoEndpoint,
        DropReason::StagedOverflow,
        DropReason::HandoverFull,
        DropReason::NoBuffer,
        DropReason::SendFailed,
        DropReason::TooBig,
        DropReason::BadOffload,
        DropReason::BadFrame,
    ];

    /// The name operators see (snake_case, stable: scripts parse it).
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Oversized => "oversized",
            DropReason::UnknownType => "unknown_type",
            DropReason::HandshakeQueueFull => "handshake_queue_full",
            DropReason::UnknownIndex => "unknown_index",
            DropReason::ExpiredSession => "expired_session",
            DropReason::Replayed => "replayed",
            DropReason::BadTag => "bad_tag",
            DropReason::BadInnerPacket => "bad_inner_packet",
            DropReason::SourceNotAllowed => "source_not_allowed",
            DropReason::NoRoute => "no_route",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::StagedOverflow => "staged_overflow",
            DropReason::HandoverFull => "handover_full",
            DropReason::NoBuffer => "no_buffer",
            DropReason::SendFailed => "send_failed",
            DropReason::TooBig => "too_big",
            DropReason::BadOffload => "bad_offload",
            DropReason::BadFrame => "bad_frame",
        }
    }
}

/// One worker's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerCounters {
    /// Drops, indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::ALL.len()],
    /// Datagrams received on the outer socket.
    pub rx_datagrams: u64,
    /// Datagrams sent on the outer socket.
    pub tx_datagrams: u64,
    /// Packets written to the TUN.
    pub tun_writes: u64,
    /// Packets read from the TUN.
    pub tun_reads: u64,
    /// Packets passed to another worker (wrong owner).
    pub handed_over: u64,
    /// Of those, datagrams that arrived on another worker's socket: steering missed them
    /// (initiations are not counted; they go to the control plane).
    pub outer_handed_over: u64,
    /// Handshake messages passed to the control plane.
    pub handshakes_forwarded: u64,
    /// TCP SYNs whose MSS was lowered to fit the tunnel.
    pub mss_clamped: u64,
    /// Outer receives that carried a run of datagrams (UDP_GRO).
    pub coalesced_receives: u64,
    /// TUN reads that carried a super-packet, cut into tunnel-sized packets (TSO/USO).
    pub tun_super_packets: u64,
    /// TUN writes that carried a run of TCP segments as one super-packet.
    pub tun_coalesced_writes: u64,
    /// ICMP "packet too big" errors written back into the TUN.
    pub icmp_too_big_sent: u64,
    /// Bytes of datagrams received on the outer socket.
    pub rx_bytes: u64,
    /// Bytes of datagrams sent on the outer socket.
    pub tx_bytes: u64,
    /// Sessions installed (each a completed handshake's keys).
    pub sessions_installed: u64,
    /// Sessions whose expanded keys were freed while their peer was idle.
    pub sessions_compacted: u64,
    /// Datagrams the AF_XDP backend sent through the kernel's socket (no link path known).
    pub outer_kernel_sends: u64,
    /// Datagrams received through AF_XDP sockets.
    pub xdp_rx_frames: u64,
    /// Datagrams sent through AF_XDP sockets.
    pub xdp_tx_frames: u64,
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

    /// Adds another worker's counters to these.
    pub fn add(&mut self, other: &WorkerCounters) {
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += b;
        }
        self.rx_datagrams += other.rx_datagrams;
        self.tx_datagrams += other.tx_datagrams;
        self.tun_writes += other.tun_writes;
        self.tun_reads += other.tun_reads;
        self.handed_over += other.handed_over;
        self.outer_handed_over += other.outer_handed_over;
        self.handshakes_forwarded += other.handshakes_forwarded;
        self.mss_clamped += other.mss_clamped;
        self.coalesced_receives += other.coalesced_receives;
        self.tun_super_packets += other.tun_super_packets;
        self.tun_coalesced_writes += other.tun_coalesced_writes;
        self.icmp_too_big_sent += other.icmp_too_big_sent;
        self.rx_bytes += other.rx_bytes;
        self.tx_bytes += other.tx_bytes;
        self.sessions_installed += other.sessions_installed;
        self.sessions_compacted += other.sessions_compacted;
        self.outer_kernel_sends += other.outer_kernel_sends;
        self.xdp_rx_frames += other.xdp_rx_frames;
        self.xdp_tx_frames += other.xdp_tx_frames;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_index_their_own_counter() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut a = WorkerCounters::default();
        a.drop(DropReason::BadTag);
        let mut b = WorkerCounters::default();
        b.drop(DropReason::BadTag);
        b.add(&a);
        assert_eq!(b.drops_for(DropReason::BadTag), 2);
        assert_eq!(b.drops_for(DropReason::Replayed), 0);
    }
}
