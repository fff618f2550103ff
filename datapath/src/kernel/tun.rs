//! The inner side: a multi-queue TUN interface, one queue per worker, and its configuration
//! (MTU, addresses, up) through the classic interface ioctls.
//!
//! The interface is not persistent: it disappears when the last queue closes, so a daemon that
//! exits (or is killed) leaves nothing behind.

use std::ffi::CString;
use std::io;
use std::mem::zeroed;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use ipnet::IpNet;

/// Why the TUN interface could not be created or configured.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    /// Creating TUN interfaces needs CAP_NET_ADMIN.
    #[error("no permission to create TUN interface {name}")]
    Permission {
        /// Interface name.
        name: String,
    },
    /// The kernel has no TUN driver or /dev/net/tun is missing.
    #[error("/dev/net/tun is not available ({source})")]
    NoDevice {
        /// The error opening it.
        source: io::Error,
    },
    /// An interface of that name exists and is not a TUN we can attach to.
    #[error("interface {name} already exists and is not a free multi-queue TUN")]
    Busy {
        /// Interface name.
        name: String,
    },
    /// The name is empty, too long (15 bytes at most) or contains '/' or NUL.
    #[error("invalid interface name {0:?}: 1-15 characters, no '/', no spaces")]
    BadName(String),
    /// A configuration ioctl failed.
    #[error("configuring {name}: {what}: {source}")]
    Config {
        /// Interface name.
        name: String,
        /// What was being configured.
        what: String,
        /// The error.
        source: io::Error,
    },
}

/// An open multi-queue TUN interface.
#[derive(Debug)]
pub struct Tun {
    name: String,
    queues: Vec<OwnedFd>,
    vnet_header: bool,
    offloads: libc::c_uint,
}

/// What the TUN may hand us and take from us, most first: checksums left partial, TCP
/// super-packets (with ECN) and, from Linux 6.2, UDP super-packets.
const OFFLOAD_CHOICES: [libc::c_uint; 3] = [
    libc::TUN_F_CSUM
        | libc::TUN_F_TSO4
        | libc::TUN_F_TSO6
        | libc::TUN_F_TSO_ECN
        | libc::TUN_F_USO4
        | libc::TUN_F_USO6,
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN,
    0,
];

fn ifreq_for(name: &str) -> libc::ifreq {
    // SAFETY: all-zero is a valid ifreq.
    let mut req: libc::ifreq = unsafe { zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

/// Checks an interface name as the kernel would.
pub fn validate_name(name: &str) -> Result<(), TunError> {
    let ok = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace() || b == b':');
    if ok {
        Ok(())
    } else {
        Err(TunError::BadName(name.to_string()))
    }
}

impl Tun {
    /// Creates (or attaches to) TUN interface `name` with `queues` queues. With `offload`,
    /// every packet carries a `virtio_net_hdr` and the kernel may pass 64 KiB TCP/UDP
    /// super-packets both ways (`inner::segment`), as far as it supports them.
    pub fn open(name: &str, queues: usize, offload: bool) -> Result<Self, TunError> {
        validate_name(name)?;
        let mut fds = Vec::with_capacity(queues);
        for _ in 0..queues.max(1) {
            let path = CString::new("/dev/net/tun").map_err(|_| TunError::BadName(name.into()))?;
            // SAFETY: opens a path from a valid C string; the result is checked.
            let fd = unsafe {
                libc::open(
                    path.as_ptr(),
                    libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
                )
            };
            if fd < 0 {
                return Err(TunError::NoDevice {
                    source: io::Error::last_os_error(),
                });
            }
            // SAFETY: `fd` is a fresh descriptor we own.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let mut req = ifreq_for(name);
            let vnet = if offload { libc::IFF_VNET_HDR } else { 0 };
            req.ifr_ifru.ifru_flags =
                (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE | vnet) as libc::c_short;
            // SAFETY: TUNSETIFF reads and writes an ifreq we own.
            if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
                let e = io::Error::last_os_error();
                return Err(match e.raw_os_error() {
                    Some(libc::EPERM | libc::EACCES) => TunError::Permission { name: name.into() },
                    Some(libc::EBUSY | libc::EINVAL | libc::EEXIST) => {
                        TunError::Busy { name: name.into() }
                    }
                    _ => TunError::Config {
                        name: name.into(),
                        what: "TUNSETIFF".into(),
                        source: e,
                    },
                });
            }
            fds.push(fd);
        }
        let mut offloads = 0;
        if offload {
            // The device-wide features; the first the kernel accepts wins.
            let queue = fds.first().map(|f| f.as_raw_fd()).unwrap_or(-1);
            for choice in OFFLOAD_CHOICES {
                // SAFETY: TUNSETOFFLOAD takes its flags by value.
                if unsafe { libc::ioctl(queue, libc::TUNSETOFFLOAD, libc::c_ulong::from(choice)) }
                    == 0
                {
                    offloads = choice;
                    break;
                }
            }
        }
        Ok(Self {
            name: name.to_string(),
            queues: fds,
            vnet_header: offload,
            offloads,
        })
    }

    /// True if each packet read or written carries a `virtio_net_hdr`.
    pub fn vnet_header(&self) -> bool {
        self.vnet_header
    }

    /// The TUN_F_* offloads the kernel accepted (0: whole packets with finished checksums).
    pub fn offloads(&self) -> libc::c_uint {
        self.offloads
    }

    /// True if the kernel takes UDP super-packets from us (TUN_F_USO4 and TUN_F_USO6).
    pub fn takes_udp_super_packets(&self) -> bool {
        let uso = libc::TUN_F_USO4 | libc::TUN_F_USO6;
        self.offloads & uso == uso
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes the queues out, one per worker.
    pub fn take_queues(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.queues)
    }
}

/// Configures an interface through ioctls on a throwaway socket.
pub struct Interface {
    name: String,
}

fn control_socket(family: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket call; the result is checked.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ioctl(fd: RawFd, request: libc::Ioctl, arg: *mut libc::c_void) -> io::Result<()> {
    // SAFETY: callers pass a pointer to the struct the request expects.
    if unsafe { libc::ioctl(fd, request, arg) } < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Interface {
    /// The interface called `name`.
    pub fn new(name: &str) -> Self {
        Self { name: name.into() }
    }

    fn err(&self, what: impl Into<String>, source: io::Error) -> TunError {
        TunError::Config {
            name: self.name.clone(),
            what: what.into(),
            source,
        }
    }

    /// Sets the MTU.
    pub fn set_mtu(&self, mtu: usize) -> Result<(), TunError> {
        let sock = control_socket(libc::AF_INET).map_err(|e| self.err("socket", e))?;
        let mut req = ifreq_for(&self.name);
        req.ifr_ifru.ifru_mtu = mtu as libc::c_int;
        ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFMTU as libc::Ioctl,
            (&mut req as *mut libc::ifreq).cast(),
        )
        .map_err(|e| self.err(format!("MTU {mtu}"), e))
    }

    /// Brings the interface up.
    pub fn up(&self) -> Result<(), TunError> {
        let sock = control_socket(libc::AF_INET).map_err(|e| self.err("socket", e))?;
        let mut req = ifreq_for(&self.name);
        ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFFLAGS as libc::Ioctl,
            (&mut req as *mut libc::ifreq).cast(),
        )
        .map_err(|e| self.err("read flags", e))?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFFLAGS as libc::Ioctl,
            (&mut req as *mut libc::ifreq).cast(),
        )
        .map_err(|e| self.err("set up", e))
    }

    fn index(&self, sock: &OwnedFd) -> Result<libc::c_int, TunError> {
        let mut req = ifreq_for(&self.name);
        ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFINDEX as libc::Ioctl,
            (&mut req as *mut libc::ifreq).cast(),
        )
        .map_err(|e| self.err("interface index", e))?;
        // SAFETY: SIOCGIFINDEX filled the ifindex member of the union.
        Ok(unsafe { req.ifr_ifru.ifru_ifindex })
    }

    /// Adds an address with its prefix (the kernel adds the connected route).
    pub fn add_address(&self, net: IpNet) -> Result<(), TunError> {
        match net.addr() {
            IpAddr::V4(a) => {
                let sock = control_socket(libc::AF_INET).map_err(|e| self.err("socket", e))?;
                let sin = |ip: std::net::Ipv4Addr| {
                    // SAFETY: all-zero is a valid sockaddr_in.
                    let mut s: libc::sockaddr_in = unsafe { zeroed() };
                    s.sin_family = libc::AF_INET as libc::sa_family_t;
                    s.sin_addr.s_addr = u32::from(ip).to_be();
                    // SAFETY: sockaddr_in and sockaddr have the same size on Linux.
                    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(s) }
                };
                let mut req = ifreq_for(&self.name);
                req.ifr_ifru.ifru_addr = sin(a);
                ioctl(
                    sock.as_raw_fd(),
                    libc::SIOCSIFADDR as libc::Ioctl,
                    (&mut req as *mut libc::ifreq).cast(),
                )
                .map_err(|e| self.err(format!("address {net}"), e))?;
                let mask = match net {
                    IpNet::V4(n) => n.netmask(),
                    IpNet::V6(_) => unreachable!("matched IPv4 above"),
                };
                req.ifr_ifru.ifru_netmask = sin(mask);
                ioctl(
                    sock.as_raw_fd(),
                    libc::SIOCSIFNETMASK as libc::Ioctl,
                    (&mut req as *mut libc::ifreq).cast(),
                )
                .map_err(|e| self.err(format!("netmask of {net}"), e))
            }
            IpAddr::V6(a) => {
                let sock =
                    control_socket(libc::AF_INET6).map_err(|e| self.err("IPv6 socket", e))?;
                let mut req = libc::in6_ifreq {
                    ifr6_addr: libc::in6_addr {
                        s6_addr: a.octets(),
                    },
                    ifr6_prefixlen: u32::from(net.prefix_len()),
                    ifr6_ifindex: self.index(&sock)?,
                };
                ioctl(
                    sock.as_raw_fd(),
                    libc::SIOCSIFADDR as libc::Ioctl,
                    (&mut req as *mut libc::in6_ifreq).cast(),
                )
                .map_err(|e| self.err(format!("address {net}"), e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked() {
        assert!(validate_name("xgate0").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("sixteen-chars-xx").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("a b").is_err());
    }
}
