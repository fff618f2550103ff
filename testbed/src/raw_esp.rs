//! A raw IPv4 ESP socket (IP protocol 50) for a test client with no NAT in front of it: what
//! strongSwan's kernel-libipsec cannot be before 5.9.11 (it always asks for UDP
//! encapsulation), so the tests seal and open the ESP themselves (`ike::esp`) and send it raw.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::packet::IPV4_HEADER;

/// A raw ESP socket in the namespace it was opened in.
pub struct RawEspSocket {
    fd: OwnedFd,
}

impl RawEspSocket {
    /// Opens one (needs CAP_NET_RAW: the tests run as root).
    pub fn open() -> Result<Self> {
        // SAFETY: plain socket call; the result is checked and owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::IPPROTO_ESP,
            )
        };
        if fd < 0 {
            bail!("raw ESP socket: {}", io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Lets the kernel cut packets larger than the path's MTU into IPv4 fragments (rather
    /// than refuse them), as a client behind a small MTU does.
    pub fn allow_fragments(&self) -> Result<()> {
        let value: libc::c_int = libc::IP_PMTUDISC_DONT;
        // SAFETY: passes a pointer to a live c_int and its size.
        let ret = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&value as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if ret < 0 {
            bail!("IP_MTU_DISCOVER: {}", io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends the ESP packet `packet` (SPI onwards) to `to`; the kernel writes the IP header.
    pub fn send_to(&self, packet: &[u8], to: Ipv4Addr) -> Result<()> {
        // SAFETY: all-zero is a valid sockaddr_in.
        let mut addr: libc::sockaddr_in = unsafe { zeroed() };
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(to).to_be();
        // SAFETY: the buffer and the address are live for the call, with their own lengths.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&addr as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            bail!("raw ESP to {to}: {}", io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next ESP packet from `from` (SPI onwards, its IPv4 header taken off), within
    /// `wait`; `None` if none came.
    pub fn recv_from(&self, from: Ipv4Addr, wait: Duration) -> Option<Vec<u8>> {
        let until = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < until {
            // SAFETY: the buffer is live and its length is its own.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            let packet = &buf[..n as usize];
            // IPv4 without options, from the peer asked for: that is the answer.
            if packet.len() > IPV4_HEADER && packet[0] == 0x45 && packet[12..16] == from.octets() {
                return Some(packet[IPV4_HEADER..].to_vec());
            }
        }
        None
    }
}
