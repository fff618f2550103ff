//! The seam between a worker and the kernel: one small trait, so the worker's logic runs the
//! same over io_uring (`uring`), AF_XDP for the outer side (`af_xdp`, over io_uring for the
//! rest), or an in-memory backend in tests (`memory`, built only for tests and with the
//! `testing` feature, which the plane's cross-test turns on).
//!
//! The backend owns a fixed pool of packet buffers. Received packets arrive in pool buffers;
//! the worker processes them in place and either hands the buffer back for sending (the
//! backend frees it when the kernel is done) or frees it. Nothing is allocated per packet.

pub mod af_xdp;
mod buf_ring;
pub mod frames;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod prefetch;
pub mod uring;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes per packet buffer: a 1500-byte-MTU packet plus transport header, padding and tag.
pub const BUF_SIZE: usize = 2048;
/// Bytes kept free in front of every outgoing datagram, where a backend that builds frames
/// itself (AF_XDP) writes the Ethernet, IP and UDP headers.
pub const OUTER_HEADROOM: usize = 64;
const _: () = assert!(OUTER_HEADROOM >= af_xdp::frame::MAX_HEADERS);
/// Room for the largest header a tunnel puts in front of an inner packet: WireGuard's 16-byte
/// transport header, or an ESP SA's SPI, sequence number and IV (24 bytes with AES-CBC).
const TRANSPORT_ROOM: usize = {
    let (wg, esp) = (
        proto::constants::TRANSPORT_HEADER_LEN,
        ike::esp::ESP_HEADROOM,
    );
    if wg > esp {
        wg
    } else {
        esp
    }
};
/// Inner packets are read at this offset so they can be sealed in place behind the transport
/// header, which starts at most `TRANSPORT_ROOM` before it and at least `OUTER_HEADROOM`
/// into the buffer.
pub const INNER_OFFSET: usize = OUTER_HEADROOM + TRANSPORT_ROOM;
/// Where a WireGuard transport header starts, so that its inner packet is at `INNER_OFFSET`.
pub const WG_HEADER_AT: usize = INNER_OFFSET - proto::constants::TRANSPORT_HEADER_LEN;
/// Received datagrams start this far into their buffer: a multishot receive puts its result
/// header (16 bytes) and the sender's address (up to 32 bytes) in front of the payload.
pub const OUTER_OFFSET: usize = 48;
/// Largest inner MTU the buffers allow: a received datagram (headroom, transport header, up to
/// 15 bytes of padding and the tag) must fit.
pub const MAX_MTU: usize = BUF_SIZE - OUTER_OFFSET - INNER_OFFSET - proto::constants::TAG_LEN - 16;
// An ESP packet of that MTU fits too, received (header and IV, padding, trailer and the
// longest ICV after it) and sent (sealed in place from `INNER_OFFSET`).
const _: () =
    assert!(OUTER_OFFSET + ike::esp::ESP_HEADROOM + MAX_MTU + ike::esp::ESP_TAILROOM <= BUF_SIZE);
const _: () = assert!(INNER_OFFSET + MAX_MTU + ike::esp::ESP_TAILROOM <= BUF_SIZE);

/// How a datagram arrived below UDP (AF_XDP only): a reply to the same address can leave the
/// same way without a neighbour lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkPath {
    /// The interface it arrived on.
    pub ifindex: u32,
    /// Our address it was sent to.
    pub local: IpAddr,
    /// Our link address on that interface.
    pub local_mac: [u8; 6],
    /// The link address it came from: the peer's, or its router's.
    pub next_hop: [u8; 6],
}

/// How ESP travels between a tunnel's peer and us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EspEncap {
    /// In UDP on the NAT-T port (RFC 3948): through a NAT, or wherever the peer chose it.
    Udp,
    /// As IP protocol 50 (RFC 4303), no NAT between: AF_XDP only, as the kernel here has no
    /// ESP of its own to take it.
    Raw,
}

/// Which of xgate's ways in an outer packet came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A datagram to the WireGuard listen port.
    Listen,
    /// ESP, in UDP to the NAT-T port or as IP protocol 50 (then `from`'s port is 0).
    Esp(EspEncap),
}

impl Via {
    /// The way a datagram from one of the kernel's UDP sockets came: the NAT-T socket's
    /// (`nat_t`) or the listen socket's.
    pub fn of_port(nat_t: bool) -> Self {
        if nat_t {
            Self::Esp(EspEncap::Udp)
        } else {
            Self::Listen
        }
    }
}

/// A packet buffer in the backend's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufId(pub u32);

/// Packets that make a batch: a poll that finds this many takes them at once, a lingering
/// one (`Backend::poll_lingering`) waits for this many at most.
pub const BATCH: usize = 32;

/// Something the backend received or noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rx {
    /// A datagram (or raw ESP packet) from the outer side, at `buf[at..at + len]`.
    Outer {
        /// Buffer holding it.
        buf: BufId,
        /// Where in the buffer it starts.
        at: usize,
        /// Bytes received.
        len: usize,
        /// Sender.
        from: SocketAddr,
        /// How it arrived, where the backend knows (AF_XDP).
        link: Option<LinkPath>,
        /// The datagram was larger than the buffer and was cut.
        truncated: bool,
        /// The way it came in.
        via: Via,
    },
    /// A packet from the TUN, at `buf[INNER_OFFSET..INNER_OFFSET + len]`.
    Inner {
        /// Buffer holding it.
        buf: BufId,
        /// Bytes read.
        len: usize,
    },
    /// A packet from a LAN interface's AF_XDP socket (`inner = "af-xdp"`), its TTL or hop
    /// limit already taken down by one, at `buf[INNER_OFFSET..INNER_OFFSET + len]`.
    Lan {
        /// Buffer holding it.
        buf: BufId,
        /// Its length.
        len: usize,
    },
    /// Another thread woke this worker (control message or handed-over packets).
    Wake,
    /// The TUN queue is gone (interface deleted).
    InnerClosed,
}

impl Rx {
    /// A packet (from either side), not a notice.
    pub fn is_packet(&self) -> bool {
        matches!(self, Rx::Outer { .. } | Rx::Inner { .. } | Rx::Lan { .. })
    }
}

/// Which way an inner packet left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InnerWay {
    /// Into the TUN (the kernel forwards it).
    Tun,
    /// Framed and sent on a LAN interface's AF_XDP socket.
    Lan,
}

/// Why a packet for the LAN went into the TUN although the LAN side runs on AF_XDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanFallback {
    /// Its route leaves by no LAN interface (the host's own address, another network).
    NotLan,
    /// The next hop's link address is not in the kernel's neighbour table yet: the kernel
    /// resolves it as it forwards the packet.
    Unresolved,
    /// An IPv4 fragment.
    Fragment,
    /// Longer than the LAN interface's MTU: the kernel fragments it or answers "too big".
    TooBig,
    /// TTL or hop limit 1 or 0: the kernel answers Time Exceeded.
    Ttl,
}

impl LanFallback {
    /// How many reasons there are.
    pub const COUNT: usize = 5;
}

/// What a backend's offloads did since the last look.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OffloadStats {
    /// Dropped: no free pool buffer for a packet cut from a coalesced receive or super-packet.
    pub no_buffer: u64,
    /// Dropped: a TUN super-packet whose offload header could not be followed.
    pub bad_offload: u64,
    /// Outer receives that carried more than one datagram (UDP_GRO).
    pub coalesced_receives: u64,
    /// TUN reads that carried a super-packet cut into several packets (TSO/USO).
    pub super_packets: u64,
    /// TUN writes that carried a run of TCP segments as one super-packet.
    pub coalesced_writes: u64,
    /// Dropped: AF_XDP frames whose headers did not add up.
    pub bad_frames: u64,
    /// Datagrams sent through the kernel's socket because no link path to their peer was
    /// known (AF_XDP backend).
    pub kernel_sends: u64,
    /// Datagrams received through AF_XDP sockets.
    pub xdp_received: u64,
    /// Datagrams sent through AF_XDP sockets.
    pub xdp_sent: u64,
    /// Writes into the TUN (a run of coalesced segments is one).
    pub tun_write_calls: u64,
    /// Sends on the outer sockets (a UDP_SEGMENT batch is one).
    pub outer_send_calls: u64,
    /// Packets received on LAN interfaces' AF_XDP sockets.
    pub lan_received: u64,
    /// Packets sent on LAN interfaces' AF_XDP sockets.
    pub lan_sent: u64,
    /// Packets for the LAN written into the TUN instead, by `LanFallback`.
    pub lan_fallbacks: [u64; LanFallback::COUNT],
}

/// What a worker needs from the kernel.
pub trait Backend {
    /// Waits until something arrives or `deadline` passes; appends what arrived to `out`.
    fn poll(&mut self, out: &mut Vec<Rx>, deadline: Instant) -> io::Result<()>;
    /// As `poll`, but when fewer than a batch of packets wait, first waits up to `linger`
    /// (never past `deadline`) for a batch to gather: fewer wake-ups and bigger TUN writes
    /// per packet under load, for at most `linger` of added latency. io_uring lingers only
    /// once a packet waits, AF_XDP also with none; backends that cannot count what waits
    /// just poll.
    fn poll_lingering(
        &mut self,
        out: &mut Vec<Rx>,
        deadline: Instant,
        linger: Duration,
    ) -> io::Result<()> {
        let _ = linger;
        self.poll(out, deadline)
    }
    /// The bytes of a buffer.
    fn buf(&mut self, buf: BufId) -> &mut [u8; BUF_SIZE];
    /// A free buffer, if the pool has one.
    fn alloc(&mut self) -> Option<BufId>;
    /// Returns a buffer to the pool.
    fn free(&mut self, buf: BufId);
    /// Sends `buf[range]` to `to` on the outer side, the way `link` says where it is known;
    /// the buffer is freed once sent. `range` starts at `OUTER_HEADROOM` or later.
    fn send_outer(
        &mut self,
        buf: BufId,
        range: Range<usize>,
        to: SocketAddr,
        link: Option<LinkPath>,
    );
    /// Sends the ESP packet `buf[range]` to `to` the way `encap` says (`how` = to, encap,
    /// link path): from the NAT-T port, or as IP protocol 50 (`to`'s port unused; a backend
    /// that cannot counts a send failure), by the link path given if any (AF_XDP). The
    /// buffer is freed once sent. `range` starts at `OUTER_HEADROOM` or later.
    fn send_esp(
        &mut self,
        buf: BufId,
        range: Range<usize>,
        how: (SocketAddr, EspEncap, Option<LinkPath>),
    );
    /// Writes `buf[range]` into the TUN, or sends it on a LAN interface where the backend
    /// serves one; the buffer is freed once written. At least 16 bytes (a transport header's
    /// worth) lie before the range: a backend may write a header there.
    fn send_inner(&mut self, buf: BufId, range: Range<usize>) -> InnerWay;
    /// Switches to a new outer socket (listen port changed).
    fn replace_outer(&mut self, socket: Arc<OwnedFd>);
    /// Receives and sends UDP-encapsulated ESP on `socket` (this worker's on the NAT-T port)
    /// from now on.
    fn attach_nat_t(&mut self, socket: Arc<OwnedFd>);
    /// Sends or writes that the kernel refused since the last call (and resets the count).
    fn take_send_failures(&mut self) -> u64;
    /// What the offloads did since the last call (and resets the counts).
    fn take_offload_stats(&mut self) -> OffloadStats {
        OffloadStats::default()
    }
    /// How this backend reaches the outer side, for `xgate status`.
    fn describe(&self) -> String {
        "io-uring".into()
    }
}
