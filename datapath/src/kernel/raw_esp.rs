//! Raw ESP (IP protocol 50) through the kernel: one raw socket per family, for what AF_XDP
//! does not carry. Workers send by it to a peer AF_XDP has no link path for (its neighbour
//! entry not complete, or an interface not steered), the kernel writing the IP header and
//! resolving the neighbour; and it receives what reached the kernel instead of an AF_XDP
//! socket (a queue without one, an interface not steered, IPv4 fragments the kernel put back
//! together, IPv6 extension headers), which `raw_esp_reader` hands to the workers.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use super::udp::{check, setsockopt_int, sockaddr_from, sockaddr_to};

/// A raw ESP socket per family.
#[derive(Debug)]
pub struct RawEspSockets {
    v4: OwnedFd,
    /// None where the host has no IPv6.
    v6: Option<OwnedFd>,
    /// Raw ESP is no longer steered: the reader stops.
    closed: AtomicBool,
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
    Ok(sock)
}

/// An ESP packet the kernel received: where it starts in the buffer, its length, its sender.
pub type Received = (usize, usize, IpAddr);

impl RawEspSockets {
    /// Opens the sockets, each marked `fwmark` (0: none), as the outer UDP sockets are.
    pub fn open(fwmark: u32) -> io::Result<Self> {
        Ok(Self {
            v4: open(libc::AF_INET, fwmark)?,
            v6: open(libc::AF_INET6, fwmark).ok(),
            closed: AtomicBool::new(false),
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

    /// Waits up to `timeout_ms` for either socket to have a packet; true if one has.
    pub fn wait(&self, timeout_ms: i32) -> bool {
        let mut fds = [self.v4.as_raw_fd(), -1].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        if let Some(v6) = &self.v6 {
            fds[1].fd = v6.as_raw_fd();
        }
        // SAFETY: a live array of pollfds and its length (a negative fd is skipped).
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
        ready > 0
    }

    /// The next ESP packet either socket holds, read into `buf` (IPv4's header stepped over),
    /// without waiting; `None` when there is none.
    pub fn recv(&self, buf: &mut [u8]) -> Option<Received> {
        let v4 = recv_on(&self.v4, buf).and_then(|(n, from)| {
            // The IPv4 socket hands over the IP header too: its length is in the header.
            let ihl = usize::from(buf.first()? & 0x0f) * 4;
            (ihl >= 20 && n >= ihl).then_some((ihl, n - ihl, from))
        });
        v4.or_else(|| {
            let (n, from) = recv_on(self.v6.as_ref()?, buf)?;
            Some((0, n, from))
        })
    }

    /// Stops the reader (raw ESP is no longer steered).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// `close` was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

/// One datagram from `fd` into `buf`, without waiting: its length and sender.
fn recv_on(fd: &OwnedFd, buf: &mut [u8]) -> Option<(usize, IpAddr)> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut from: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the buffer and the address storage are live, with their own lengths.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&mut from as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if n < 0 {
        return None;
    }
    Some((n as usize, sockaddr_from(&from)?.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw ESP packet sent to loopback comes back to the same sockets (raw sockets see
    /// every packet of their protocol), its IPv4 header stepped over and its sender told
    /// (the sockets need CAP_NET_RAW: the tests run as root).
    #[test]
    fn raw_esp_goes_out_and_comes_in() {
        let sockets = RawEspSockets::open(0).expect("raw ESP sockets (needs CAP_NET_RAW)");
        let packet = [0x12u8, 0x34, 0x56, 0x78, 0, 0, 0, 1, 0xaa, 0xbb];
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        sockets.send(&packet, lo).expect("sent");
        assert!(sockets.wait(2000), "nothing came back");
        let mut buf = [0u8; 128];
        let (at, len, from) = sockets.recv(&mut buf).expect("a packet");
        assert_eq!((&buf[at..at + len], from), (&packet[..], lo));
        let v6: IpAddr = "::1".parse().expect("ip");
        if sockets.v6.is_some() && sockets.send(&packet, v6).is_ok() {
            assert!(sockets.wait(2000));
            let (at, len, from) = sockets.recv(&mut buf).expect("a v6 packet");
            assert_eq!((&buf[at..at + len], from), (&packet[..], v6));
        }
        assert!(sockets.recv(&mut buf).is_none());
        assert!(!sockets.is_closed());
        sockets.close();
        assert!(sockets.is_closed());
    }
}
