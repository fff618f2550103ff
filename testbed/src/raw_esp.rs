//! A raw ESP socket (IP protocol 50, IPv4 or IPv6) for a test client with no NAT in front of
//! it: what
//! strongSwan's kernel-libipsec cannot be before 5.9.11 (it always asks for UDP
//! encapsulation), so the tests seal and open the ESP themselves (`ike::esp`) and send it raw.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::packet::IPV4_HEADER;

/// A raw ESP socket in the namespace it was opened in.
pub struct RawEspSocket {
    fd: OwnedFd,
    v6: bool,
}

impl RawEspSocket {
    /// Opens one for the family of `peer` (needs CAP_NET_RAW: the tests run as root).
    pub fn open(peer: IpAddr) -> Result<Self> {
        let v6 = peer.is_ipv6();
        let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
        // SAFETY: plain socket call; the result is checked and owned at once.
        let fd = unsafe {
            libc::socket(
                family,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::IPPROTO_ESP,
            )
        };
        if fd < 0 {
            bail!("raw ESP socket: {}", io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, v6 })
    }

    /// Lets the kernel cut packets larger than the path's MTU into fragments (rather than
    /// refuse them), as a client behind a small MTU does.
    pub fn allow_fragments(&self) -> Result<()> {
        let (level, name, value) = match self.v6 {
            true => (
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_DONT,
            ),
            false => (
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DONT,
            ),
        };
        // SAFETY: passes a pointer to a live c_int and its size.
        let ret = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&value as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if ret < 0 {
            bail!("MTU discovery off: {}", io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends the ESP packet `packet` (SPI onwards) to `to`; the kernel writes the IP header.
    pub fn send_to(&self, packet: &[u8], to: IpAddr) -> Result<()> {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut addr: libc::sockaddr_storage = unsafe { zeroed() };
        let len = match to {
            IpAddr::V4(v4) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
                let sin = unsafe {
                    &mut *(&mut addr as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
                };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_addr.s_addr = u32::from(v4).to_be();
                size_of::<libc::sockaddr_in>()
            }
            IpAddr::V6(v6) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
                let sin6 = unsafe {
                    &mut *(&mut addr as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
                };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_addr.s6_addr = v6.octets();
                size_of::<libc::sockaddr_in6>()
            }
        };
        // SAFETY: the buffer and the address are live for the call, with their own lengths.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&addr as *const libc::sockaddr_storage).cast(),
                len as libc::socklen_t,
            )
        };
        if sent < 0 {
            bail!("raw ESP to {to}: {}", io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next ESP packet from `from` (SPI onwards; an IPv4 header taken off), within
    /// `wait`; `None` if none came.
    pub fn recv_from(&self, from: IpAddr, wait: Duration) -> Option<Vec<u8>> {
        let until = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < until {
            // SAFETY: all-zero is a valid sockaddr_storage.
            let mut sender: libc::sockaddr_storage = unsafe { zeroed() };
            let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: the buffer and the address storage are live, with their own lengths.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut sender as *mut libc::sockaddr_storage).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            let packet = &buf[..n as usize];
            if sender_of(&sender) != Some(from) {
                continue;
            }
            // IPv4 hands the header over too (without options from our peers).
            return match self.v6 {
                true => Some(packet.to_vec()),
                false => (packet.len() > IPV4_HEADER && packet[0] == 0x45)
                    .then(|| packet[IPV4_HEADER..].to_vec()),
            };
        }
        None
    }
}

/// The address the kernel wrote for a sender.
fn sender_of(storage: &libc::sockaddr_storage) -> Option<IpAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(IpAddr::from(
                u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(IpAddr::from(sin6.sin6_addr.s6_addr))
        }
        _ => None,
    }
}
