//! The outer UDP sockets: one per worker, all bound to the listen port with SO_REUSEPORT, in
//! worker order so `reuseport` can pick a worker's socket; dual-stack (IPv4 arrives as
//! v4-mapped IPv6).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Why the outer sockets could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Something else holds the port.
    #[error("UDP port {port} is already in use")]
    InUse {
        /// The port.
        port: u16,
    },
    /// Binding a port below 1024 without privilege.
    #[error("no permission to bind UDP port {port}")]
    Permission {
        /// The port.
        port: u16,
    },
    /// Any other socket error.
    #[error("UDP socket on port {port}: {source}")]
    Io {
        /// The port.
        port: u16,
        /// The error.
        source: io::Error,
    },
}

/// Socket buffer size asked for on each outer socket (the kernel doubles it for overhead).
const SOCKET_BUFFER: libc::c_int = 4 << 20;

pub(crate) fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub(crate) fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its size.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// Writes `addr` into `storage` (IPv4 as v4-mapped IPv6, since our sockets are dual-stack);
/// returns the length to pass to the kernel.
pub fn sockaddr_to(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    let v6 = match addr {
        SocketAddr::V4(a) => SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0),
        SocketAddr::V6(a) => a,
    };
    // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
    let sin6 =
        unsafe { &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
    sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sin6.sin6_port = v6.port().to_be();
    sin6.sin6_flowinfo = 0;
    sin6.sin6_addr.s6_addr = v6.ip().octets();
    sin6.sin6_scope_id = v6.scope_id();
    size_of::<libc::sockaddr_in6>() as libc::socklen_t
}

/// Reads an address the kernel wrote (v4-mapped IPv6 comes back as IPv4).
pub fn sockaddr_from(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, sin6.sin6_scope_id)),
            })
        }
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        _ => None,
    }
}

pub(crate) fn bind_one(port: u16, reuse: bool, fwmark: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket call; the result is checked and owned at once.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_INET6,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    })?;
    // SAFETY: `fd` is a fresh descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0)?;
    if reuse {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    if fwmark != 0 {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_MARK, fwmark as libc::c_int)?;
    }
    // Bursts (a login surge, a flood) outrun a default 208 KiB buffer; the FORCE variants
    // pass rmem_max/wmem_max when we are root, the plain ones are the best effort otherwise.
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if setsockopt_int(fd, libc::SOL_SOCKET, force, SOCKET_BUFFER).is_err() {
            let _ = setsockopt_int(fd, libc::SOL_SOCKET, plain, SOCKET_BUFFER);
        }
    }
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = sockaddr_to(
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
        &mut storage,
    );
    // SAFETY: storage holds a sockaddr_in6 of `len` bytes.
    check(unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) })?;
    Ok(sock)
}

/// The port a socket is bound to.
pub fn local_port(sock: &OwnedFd) -> io::Result<u16> {
    // SAFETY: all-zero is a valid sockaddr_storage; getsockname writes at most `len` bytes.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` and `len` outlive the call; the kernel writes at most `len` bytes.
    check(unsafe {
        libc::getsockname(
            sock.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    sockaddr_from(&storage)
        .map(|a| a.port())
        .ok_or_else(|| io::Error::other("unexpected address family"))
}

/// A bind error by what the system said.
pub(crate) fn classify(port: u16, e: io::Error) -> BindError {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => BindError::InUse { port },
        Some(libc::EACCES | libc::EPERM) => BindError::Permission { port },
        _ => BindError::Io { port, source: e },
    }
}

/// Opens `count` sockets on `port` (0 = any free port), sharing it with SO_REUSEPORT.
///
/// SO_REUSEPORT would let a second xgate (same user) silently share the port and steal half
/// its traffic, so the port is first claimed once without it to prove nobody else holds it.
pub fn bind_sockets(port: u16, count: usize, fwmark: u32) -> Result<Vec<OwnedFd>, BindError> {
    let port = if port == 0 {
        let probe = bind_one(0, false, 0).map_err(|e| classify(0, e))?;
        local_port(&probe).map_err(|e| BindError::Io { port: 0, source: e })?
    } else {
        drop(bind_one(port, false, 0).map_err(|e| classify(port, e))?);
        port
    };
    let sockets = (0..count.max(1))
        .map(|_| bind_one(port, true, fwmark).map_err(|e| classify(port, e)))
        .collect::<Result<Vec<_>, _>>()?;
    if sockets.len() > 1 {
        if let Err(e) = crate::kernel::reuseport::attach(&sockets[0]) {
            // Still correct: packets on the wrong worker are handed over to their owner.
            tracing::warn!("steering by receiver index unavailable ({e}); using the flow hash");
        }
    }
    Ok(sockets)
}

/// Opens `count` sockets that join the SO_REUSEPORT group already holding `port` (the IKE
/// responder's NAT-T socket, which proved the port free), in worker order after it, and steers
/// the group by ESP SPI (`reuseport::attach_esp`).
pub fn join_nat_t(port: u16, count: usize, fwmark: u32) -> Result<Vec<OwnedFd>, BindError> {
    let sockets = (0..count.max(1))
        .map(|_| bind_one(port, true, fwmark).map_err(|e| classify(port, e)))
        .collect::<Result<Vec<_>, _>>()?;
    if let Err(e) = crate::kernel::reuseport::attach_esp(&sockets[0]) {
        // Still correct for ESP (handed over to the SPI's worker), but IKE would reach the
        // workers, which drop it: say so loudly.
        tracing::warn!("steering of the NAT-T port unavailable ({e}); IKE on it may be lost");
    }
    Ok(sockets)
}

/// Sets the firewall mark on a socket (`wg set fwmark`).
pub fn set_fwmark(sock: &OwnedFd, fwmark: u32) -> io::Result<()> {
    setsockopt_int(
        sock.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_MARK,
        fwmark as libc::c_int,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trips_and_unmaps_v4() {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut s: libc::sockaddr_storage = unsafe { zeroed() };
        for text in ["192.0.2.7:51820", "[2001:db8::1]:443"] {
            let a: SocketAddr = text.parse().expect("addr");
            sockaddr_to(a, &mut s);
            assert_eq!(sockaddr_from(&s), Some(a));
        }
    }

    #[test]
    fn port_in_use_is_reported_as_such() {
        let first = bind_sockets(0, 2, 0).expect("free port");
        let port = local_port(&first[0]).expect("port");
        assert_eq!(
            local_port(&first[1]).expect("port"),
            port,
            "workers share the port"
        );
        match bind_sockets(port, 1, 0) {
            Err(BindError::InUse { port: p }) => assert_eq!(p, port),
            other => panic!("expected InUse, got {other:?}"),
        }
    }
}
