//! Which interfaces AF_XDP serves, and how many receive queues each has.

use super::frame::Mac;
use super::steering::SteeringError;
use crate::kernel::netlink::{Interface, Netlink};

/// The receive queues of `name`: the driver's channel count where it reports one (ethtool),
/// else one.
pub fn queue_count(name: &str) -> u32 {
    #[repr(C)]
    struct Channels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    let mut channels = Channels {
        cmd: ETHTOOL_GCHANNELS,
        max_rx: 0,
        max_tx: 0,
        max_other: 0,
        max_combined: 0,
        rx_count: 0,
        tx_count: 0,
        other_count: 0,
        combined_count: 0,
    };
    // SAFETY: an ifreq for SIOCETHTOOL whose data pointer refers to `channels`, alive for the
    // call; the socket is closed right after.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return 1;
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes().take(15)) {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_data = (&mut channels as *mut Channels).cast();
        let ret = libc::ioctl(fd, libc::SIOCETHTOOL, &mut ifr);
        libc::close(fd);
        if ret < 0 {
            return 1;
        }
    }
    // Receive-only channels and combined ones each bring a receive queue.
    (channels.rx_count + channels.combined_count).max(1)
}

/// The interfaces AF_XDP should serve: those named in `wanted`, or else every interface that
/// is up, not loopback, has a link address, and carries `bound` (any address if `bound` is
/// `None`, a wildcard bind).
pub fn choose_interfaces(
    netlink: &mut Netlink,
    wanted: &[String],
    bound: Option<std::net::IpAddr>,
) -> Result<Vec<Interface>, SteeringError> {
    let all = netlink.interfaces()?;
    if !wanted.is_empty() {
        return wanted
            .iter()
            .map(|name| {
                all.iter()
                    .find(|i| &i.name == name)
                    .cloned()
                    .ok_or_else(|| SteeringError::NoSuchInterface(name.clone()))
            })
            .collect();
    }
    let addresses = netlink.addresses()?;
    let chosen: Vec<Interface> = all
        .into_iter()
        .filter(|i| i.up && !i.loopback && i.mac.len() == 6)
        .filter(|i| {
            addresses
                .iter()
                .any(|(index, ip)| *index == i.index && bound.is_none_or(|b| b == *ip))
        })
        .collect();
    if chosen.is_empty() {
        return Err(SteeringError::NoInterface(match bound {
            Some(ip) => format!("no interface that is up carries {ip}"),
            None => "no interface other than loopback is up with an address".into(),
        }));
    }
    Ok(chosen)
}

/// The interface's link address (zeros if it has none of six bytes).
pub fn mac_of(interface: &Interface) -> Mac {
    let mut mac = [0u8; 6];
    if interface.mac.len() == 6 {
        mac.copy_from_slice(&interface.mac);
    }
    mac
}
