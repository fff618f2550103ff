//! A UDP socket that says which of our addresses each datagram arrived at, and sends from the
//! address it is given: IPV6_PKTINFO on a dual-stack socket (IPv4 arrives and leaves as
//! v4-mapped IPv6). IKE needs both: NAT detection hashes our address as the peer sent to it,
//! and an answer must leave from the address its request reached. Blocking, with a short
//! receive timeout so its reader can notice a stop.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use super::udp::{bind_one, classify, local_port, setsockopt_int, sockaddr_from, sockaddr_to};
use super::udp::{check, BindError};

/// How long a `recv` waits before it returns `None`.
pub const RECV_TIMEOUT: Duration = Duration::from_millis(100);

/// Room for one IPV6_PKTINFO control message.
const CONTROL_LEN: usize = 64;

/// A datagram's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// Its length.
    pub len: usize,
    /// Who sent it.
    pub from: SocketAddr,
    /// Our address and port it was sent to.
    pub to: SocketAddr,
}

/// A dual-stack UDP socket on one port that reports and chooses local addresses.
#[derive(Debug)]
pub struct AddressedSocket {
    fd: OwnedFd,
    port: u16,
}

impl AddressedSocket {
    /// Binds `port` on every address; `shared` lets other sockets join the port with
    /// SO_REUSEPORT (after this one proved it was free).
    pub fn bind(port: u16, shared: bool) -> Result<Self, BindError> {
        let io = |e| classify(port, e);
        if shared {
            drop(bind_one(port, false, 0).map_err(io)?);
        }
        let fd = bind_one(port, shared, 0).map_err(io)?;
        let raw = fd.as_raw_fd();
        setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1).map_err(io)?;
        // SAFETY: F_GETFL/F_SETFL on a descriptor this function owns.
        let flags = check(unsafe { libc::fcntl(raw, libc::F_GETFL) }).map_err(io)?;
        // SAFETY: as above; clears O_NONBLOCK so `recv` waits up to its timeout.
        check(unsafe { libc::fcntl(raw, libc::F_SETFL, flags & !libc::O_NONBLOCK) }).map_err(io)?;
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: RECV_TIMEOUT.as_micros() as libc::suseconds_t,
        };
        // SAFETY: passes a pointer to a live timeval and its size.
        check(unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        })
        .map_err(io)?;
        let port = local_port(&fd).map_err(io)?;
        Ok(Self { fd, port })
    }

    /// The port it is bound to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits up to `RECV_TIMEOUT` for a datagram into `buf`; `None` when none came. A datagram
    /// longer than `buf` is cut (its `len` is what was kept).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Arrival>> {
        // SAFETY: all-zero is a valid sockaddr_storage and msghdr.
        let mut from: libc::sockaddr_storage = unsafe { zeroed() };
        let mut control = [0u64; CONTROL_LEN / 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid msghdr; its pointers are set below.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = CONTROL_LEN as _;
        // SAFETY: every pointer in `msg` points at live buffers of the stated sizes.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        // A cut datagram or a cut control message is not read as if whole.
        if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
            return Ok(None);
        }
        let Some(from) = sockaddr_from(&from) else {
            return Ok(None);
        };
        let Some(to) = pktinfo_of(&msg) else {
            return Ok(None);
        };
        Ok(Some(Arrival {
            len: n as usize,
            from,
            to: SocketAddr::new(to, self.port),
        }))
    }

    /// Sends `bytes` to `to` from our address `from`.
    pub fn send(&self, bytes: &[u8], from: IpAddr, to: SocketAddr) -> io::Result<()> {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut dest: libc::sockaddr_storage = unsafe { zeroed() };
        let dest_len = sockaddr_to(to, &mut dest);
        let source = match from {
            IpAddr::V4(a) => a.to_ipv6_mapped(),
            IpAddr::V6(a) => a,
        };
        let mut control = [0u64; CONTROL_LEN / 8];
        let mut iov = libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        // SAFETY: all-zero is a valid msghdr; its pointers are set below.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut dest as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = dest_len;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is a pure computation on a size.
        msg.msg_controllen =
            unsafe { libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) } as _;
        // SAFETY: msg_control points at the live, aligned buffer set above.
        let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        if cmsg.is_null() {
            return Err(io::Error::other("no room for the source address"));
        }
        // SAFETY: the control buffer is aligned (u64) and large enough for one in6_pktinfo
        // message, whose (non-null) header is `cmsg` and whose data CMSG_DATA points at.
        unsafe {
            (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
            (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as _;
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: source.octets(),
                },
                ipi6_ifindex: 0,
            };
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::in6_pktinfo>(), info);
        }
        // SAFETY: every pointer in `msg` points at live buffers of the stated sizes.
        let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsRawFd for AddressedSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

/// The destination address an IPV6_PKTINFO control message names (v4-mapped as IPv4).
fn pktinfo_of(msg: &libc::msghdr) -> Option<IpAddr> {
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR stay within msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: non-null headers returned by the CMSG macros lie inside the buffer.
        let (level, kind, len) =
            unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len) };
        // SAFETY: CMSG_LEN is a pure computation on a size.
        let needed = unsafe { libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) } as _;
        if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO && len >= needed {
            // SAFETY: an IPV6_PKTINFO message carries one in6_pktinfo.
            let info = unsafe {
                std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::in6_pktinfo>())
            };
            let ip = Ipv6Addr::from(info.ipi6_addr.s6_addr);
            return Some(match ip.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(ip),
            });
        }
        // SAFETY: as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_address_a_datagram_reached_and_answers_from_it() {
        let server = AddressedSocket::bind(0, false).expect("bind");
        for (client_bind, server_ip) in [("127.0.0.1:0", "127.0.0.1"), ("[::1]:0", "::1")] {
            let client = std::net::UdpSocket::bind(client_bind).expect("client");
            client
                .set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            let ip: IpAddr = server_ip.parse().expect("ip");
            client
                .send_to(b"hello", SocketAddr::new(ip, server.port()))
                .expect("send");
            let mut buf = [0u8; 64];
            let got = loop {
                if let Some(a) = server.recv(&mut buf).expect("recv") {
                    break a;
                }
            };
            assert_eq!(&buf[..got.len], b"hello");
            assert_eq!(got.to, SocketAddr::new(ip, server.port()));
            assert_eq!(got.from, client.local_addr().expect("addr"));
            server.send(b"back", got.to.ip(), got.from).expect("send");
            let (n, from) = client.recv_from(&mut buf).expect("answer");
            assert_eq!(&buf[..n], b"back");
            assert_eq!(from, got.to, "answered from the address it reached");
        }
    }

    #[test]
    fn recv_returns_none_when_nothing_comes() {
        let server = AddressedSocket::bind(0, false).expect("bind");
        let mut buf = [0u8; 16];
        assert_eq!(server.recv(&mut buf).expect("recv"), None);
    }
}
