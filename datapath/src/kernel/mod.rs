//! The kernel objects a worker owns or the datapath asks about, each a thin typed wrapper
//! over its system calls: the outer UDP sockets and their offloads, the reuseport steering
//! program on them, the TUN queues, the eventfd that wakes a worker, and rtnetlink; and a
//! socket that reports and picks local addresses, for the handshake plane's IKE ports; and
//! raw ESP sockets that only send, for AF_XDP's fallback; and the process's huge-page policy.

pub mod addressed_udp;
pub mod huge_pages;

pub mod netlink;
pub mod raw_esp;
pub mod reuseport;
pub mod tun;
pub mod udp;
pub mod udp_offload;
pub mod waker;
