//! Raw ESP (IP protocol 50) sent through the kernel, for the few packets AF_XDP has no link
//! path for yet (the peer's neighbour entry not complete): one raw socket per family, the
//! kernel writing the IP header and resolving the neighbour. They only send: a socket filter
//! drops everything they would receive (AF_XDP takes ESP before the kernel sees it, and what
//! reaches the kernel would otherwise queue unread).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::udp::{check, setsockopt_int, sockaddr_to};

/// A raw ESP socket per family that sends only.
#[derive(Debug)]
pub struct RawEspSender {
    v4: OwnedFd,
    /// None where the host has no IPv6.
    v6: Option<OwnedFd>,
}

fn open(family: libc::c_int, fwmark: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket call; the result is checked and owned at once.
    let fd = check(unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            libc::IPPROTO_ESP,
        )
    })?;
    // SAFETY: `fd` is a fresh descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    if fwmark != 0 {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_MARK, fwmark as libc::c_int)?;
    }
    // Classic BPF "return 0": every packet the socket would receive is dropped.
    let mut drop_all = [libc::sock_filter {
        code: 0x06, // BPF_RET | BPF_K
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let program = libc::sock_fprog {
        len: 1,
        filter: drop_all.as_mut_ptr(),
    };
    // SAFETY: passes a pointer to a live sock_fprog (whose filter outlives the call) and its
    // size; the kernel copies the program.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&program as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })?;
    Ok(sock)
}

impl RawEspSender {
    /// Opens the sockets, each marked `fwmark` (0: none), as the outer UDP sockets are.
    pub fn open(fwmark: u32) -> io::Result<Self> {
        Ok(Self {
            v4: open(libc::AF_INET, fwmark)?,
            v6: open(libc::AF_INET6, fwmark).ok(),
        })
    }

    /// Sends the ESP packet `packet` (SPI onwards) to `to` without waiting.
    pub fn send(&self, packet: &[u8], to: IpAddr) -> io::Result<()> {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let (fd, len) = match to {
            IpAddr::V4(v4) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
                let sin = unsafe {
                    &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
                };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_addr.s_addr = u32::from(v4).to_be();
                (&self.v4, size_of::<libc::sockaddr_in>() as libc::socklen_t)
            }
            IpAddr::V6(_) => {
                let Some(v6) = &self.v6 else {
                    return Err(io::Error::from(io::ErrorKind::Unsupported));
                };
                // A raw IPv6 socket's "port" is the protocol, or 0 for its own.
                (v6, sockaddr_to(SocketAddr::new(to, 0), &mut storage))
            }
        };
        // SAFETY: the buffer and the address are live for the call and their lengths are
        // theirs.
        check(unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&storage as *const libc::sockaddr_storage).cast(),
                len,
            ) as libc::c_int
        })
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(fd: &OwnedFd, buf: &mut [u8], flags: libc::c_int) -> isize {
        // SAFETY: the buffer is live and its length is its own.
        unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) }
    }

    /// A raw ESP packet to loopback arrives, IP header first, at an unfiltered raw socket (a
    /// listener here), and not at the sender's own (the sockets need CAP_NET_RAW: the tests
    /// run as root).
    #[test]
    fn sends_raw_esp_and_receives_nothing() {
        // SAFETY: plain socket call; the result is checked and owned at once.
        let fd = check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ESP) })
            .expect("raw socket (needs CAP_NET_RAW)");
        // SAFETY: `fd` is a fresh descriptor.
        let listener = unsafe { OwnedFd::from_raw_fd(fd) };
        let timeout = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: passes a pointer to a live timeval and its size.
        check(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        })
        .expect("timeout");
        let sender = RawEspSender::open(0).expect("raw ESP sockets");
        let packet = [0x12u8, 0x34, 0x56, 0x78, 0, 0, 0, 1, 0xaa, 0xbb];
        sender
            .send(&packet, "127.0.0.1".parse().expect("ip"))
            .expect("sent");
        let mut buf = [0u8; 128];
        let n = recv(&listener, &mut buf, 0);
        assert_eq!(n, 20 + packet.len() as isize, "IPv4 header and the packet");
        assert_eq!(buf[9], 50);
        assert_eq!(&buf[20..n as usize], &packet[..]);
        assert_eq!(recv(&sender.v4, &mut buf, libc::MSG_DONTWAIT), -1);
    }
}
