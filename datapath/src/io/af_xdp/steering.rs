//! The daemon's side of AF_XDP: on each outer interface, an XSKMAP and the steering program,
//! attached as a link (native mode where the driver has it, generic otherwise); each worker
//! then binds sockets to the receive queues it owns and puts them in the map. A program left
//! behind by an earlier xgate (attached the old way) is replaced; anyone else's is not
//! touched. Dropping this detaches the programs (a killed process's links go with it).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Mutex;

use thiserror::Error;

use super::backend::{XdpQueue, RING_SIZES};
use super::bpf::{program_name, AddressMap, BpfError, XdpLink, XdpMode, XdpProgram, XskMap};
use super::frame::Mac;
use super::program::{steering, XDP_PASS};
use super::socket::{XskError, XskSocket};
use crate::io::frames::Frames;
use crate::netlink::{Interface, Netlink};

/// The name our steering programs load under (how a stale one is recognised).
pub const PROGRAM_NAME: &str = "xgate_steer";

/// Why AF_XDP could not be set up.
#[derive(Debug, Error)]
pub enum SteeringError {
    /// An interface was named that does not exist.
    #[error("outer interface {0:?} does not exist")]
    NoSuchInterface(String),
    /// No interface qualified.
    #[error("no outer interface to attach to: {0}")]
    NoInterface(String),
    /// Asking the kernel about interfaces failed.
    #[error("reading interfaces over netlink: {0}")]
    Netlink(#[from] std::io::Error),
    /// A bpf(2) step failed.
    #[error("{interface}: {source}")]
    Bpf {
        /// The interface.
        interface: String,
        /// What failed.
        source: BpfError,
    },
    /// Another program holds the interface.
    #[error(
        "{interface} already runs XDP program {name:?} (id {id}) that xgate did not load: \
         detach it (ip link set dev {interface} xdp off) or set backend = \"io-uring\""
    )]
    Occupied {
        /// The interface.
        interface: String,
        /// The other program's name.
        name: String,
        /// Its id.
        id: u32,
    },
    /// Another running xgate holds the interface.
    #[error(
        "{interface} is steered by another running xgate (XDP program id {id}, attached as a \
         link that only its owner can remove): stop that xgate, or give this one other \
         outer_interfaces or backend = \"io-uring\""
    )]
    HeldByAnotherXgate {
        /// The interface.
        interface: String,
        /// The program's id.
        id: u32,
    },
    /// A socket could not be bound.
    #[error(transparent)]
    Socket(#[from] XskError),
}

/// One interface being steered.
#[derive(Debug)]
pub struct SteeredInterface {
    /// Name.
    pub name: String,
    /// Index.
    pub index: u32,
    /// Our link address on it.
    pub mac: Mac,
    /// Receive queues.
    pub queues: u32,
    map: XskMap,
    link: XdpLink,
    /// The program the link runs (swapped by `set_port`).
    program: Mutex<XdpProgram>,
}

impl SteeredInterface {
    /// The mode the program runs in.
    pub fn mode(&self) -> XdpMode {
        self.link.mode()
    }
}

/// The steering programs of all outer interfaces.
#[derive(Debug)]
pub struct Steering {
    interfaces: Vec<SteeredInterface>,
    port: AtomicU16,
    /// The host's addresses: only datagrams to them are steered.
    local: AddressMap,
}

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

fn mac_of(interface: &Interface) -> Mac {
    let mut mac = [0u8; 6];
    if interface.mac.len() == 6 {
        mac.copy_from_slice(&interface.mac);
    }
    mac
}

impl Steering {
    /// Attaches the steering program for `port` to each of `interfaces`: native mode where
    /// the driver supports it, else generic; `force_generic` skips the native attempt.
    pub fn attach(
        netlink: &mut Netlink,
        interfaces: &[Interface],
        port: u16,
        force_generic: bool,
    ) -> Result<Self, SteeringError> {
        let bpf_all = |source| SteeringError::Bpf {
            interface: "(all)".into(),
            source,
        };
        // Every address of the host: the workers' sockets are bound to the wildcard, so a
        // datagram to any of them is ours. (An address added later is not steered: its
        // datagrams take the kernel's path to the same sockets.)
        let local = AddressMap::new().map_err(bpf_all)?;
        for (_, ip) in netlink.addresses()? {
            local.insert(ip).map_err(bpf_all)?;
        }
        let mut steered = Vec::new();
        for interface in interfaces {
            let bpf_err = |source| SteeringError::Bpf {
                interface: interface.name.clone(),
                source,
            };
            let queues = queue_count(&interface.name);
            let map = XskMap::new(queues).map_err(bpf_err)?;
            let program = XdpProgram::load(
                PROGRAM_NAME,
                &steering(port, map.fd(), local.fd(), XDP_PASS),
            )
            .map_err(bpf_err)?;
            let link = attach_replacing_stale(netlink, interface, &program, force_generic)?;
            tracing::info!(
                interface = %interface.name,
                mode = link.mode().name(),
                queues,
                "XDP steering program attached"
            );
            steered.push(SteeredInterface {
                name: interface.name.clone(),
                index: interface.index,
                mac: mac_of(interface),
                queues,
                map,
                link,
                program: Mutex::new(program),
            });
        }
        Ok(Self {
            interfaces: steered,
            port: AtomicU16::new(port),
            local,
        })
    }

    /// The interfaces steered.
    pub fn interfaces(&self) -> &[SteeredInterface] {
        &self.interfaces
    }

    /// The port steered.
    pub fn port(&self) -> u16 {
        self.port.load(Ordering::Relaxed)
    }

    /// Steers `port` instead (the listen port changed): each link swaps to a new program in
    /// one step.
    pub fn set_port(&self, port: u16) -> Result<(), SteeringError> {
        for i in &self.interfaces {
            let bpf_err = |source| SteeringError::Bpf {
                interface: i.name.clone(),
                source,
            };
            let program = XdpProgram::load(
                PROGRAM_NAME,
                &steering(port, i.map.fd(), self.local.fd(), XDP_PASS),
            )
            .map_err(bpf_err)?;
            i.link.replace(&program).map_err(bpf_err)?;
            if let Ok(mut held) = i.program.lock() {
                *held = program;
            }
        }
        self.port.store(port, Ordering::Relaxed);
        Ok(())
    }

    /// Binds sockets for the queues worker `worker` of `workers` owns (queue q belongs to
    /// worker q mod workers) over `frames`, and puts them in the maps.
    pub fn bind_worker(
        &self,
        worker: usize,
        workers: usize,
        frames: &Frames,
    ) -> Result<Vec<XdpQueue>, SteeringError> {
        let mut queues: Vec<XdpQueue> = Vec::new();
        for i in &self.interfaces {
            for queue in (0..i.queues).filter(|q| *q as usize % workers.max(1) == worker) {
                let socket =
                    bind_with_grace(frames, queues.first().map(|q| &q.socket), i.index, queue)?;
                i.map
                    .insert(queue, socket.fd())
                    .map_err(|source| SteeringError::Bpf {
                        interface: i.name.clone(),
                        source,
                    })?;
                queues.push(XdpQueue::new(socket, i.mac));
            }
        }
        Ok(queues)
    }

    /// How the workers would be served, for logs and `xgate status`, e.g.
    /// `eth0 native 4 queues`.
    pub fn describe(&self) -> String {
        self.interfaces
            .iter()
            .map(|i| format!("{} {} {} queue(s)", i.name, i.mode().name(), i.queues))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How long a busy queue is retried: the sockets of a process that was just killed are
/// released by the kernel a little later (deferred work), and a supervisor may restart at once.
const BIND_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

fn bind_with_grace(
    frames: &Frames,
    shared_with: Option<&XskSocket>,
    ifindex: u32,
    queue: u32,
) -> Result<XskSocket, XskError> {
    let until = std::time::Instant::now() + BIND_GRACE;
    loop {
        match XskSocket::bind(frames, shared_with, ifindex, queue, RING_SIZES) {
            Err(e) if e.os_error() == Some(libc::EBUSY) && std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Attaches `program` to `interface`, native first unless `force_generic`; a program an
/// earlier xgate left attached the old way is removed first.
fn attach_replacing_stale(
    netlink: &mut Netlink,
    interface: &Interface,
    program: &XdpProgram,
    force_generic: bool,
) -> Result<XdpLink, SteeringError> {
    let modes: &[XdpMode] = if force_generic {
        &[XdpMode::Generic]
    } else {
        &[XdpMode::Native, XdpMode::Generic]
    };
    let mut last = None;
    for &mode in modes {
        match XdpLink::attach(program, interface.index, mode) {
            Ok(link) => return Ok(link),
            Err(e) if matches!(e.os_error(), Some(libc::EBUSY | libc::EEXIST)) => {
                remove_stale(netlink, interface)?;
                return XdpLink::attach(program, interface.index, mode).map_err(|source| {
                    SteeringError::Bpf {
                        interface: interface.name.clone(),
                        source,
                    }
                });
            }
            Err(e) => {
                tracing::debug!(interface = %interface.name, mode = mode.name(), "XDP attach refused: {e}");
                last = Some(e);
            }
        }
    }
    Err(SteeringError::Bpf {
        interface: interface.name.clone(),
        source: last.expect("at least one mode was tried"),
    })
}

/// Removes the program on `interface` if an earlier xgate left it; refuses anyone else's.
fn remove_stale(netlink: &mut Netlink, interface: &Interface) -> Result<(), SteeringError> {
    let current = netlink
        .interfaces()?
        .into_iter()
        .find(|i| i.index == interface.index)
        .and_then(|i| i.xdp);
    let Some((id, attached)) = current else {
        return Ok(());
    };
    let name = program_name(id).unwrap_or_else(|e| format!("(name unreadable: {e})"));
    if name != PROGRAM_NAME {
        return Err(SteeringError::Occupied {
            interface: interface.name.clone(),
            name,
            id,
        });
    }
    let flags = match attached {
        netlink_packet_route::link::XdpAttached::SocketBuffer => XdpMode::Generic.flag(),
        _ => XdpMode::Native.flag(),
    };
    netlink.detach_xdp(interface.index, flags).map_err(|e| {
        // Detaching fails when the program is held by a link: another xgate is running.
        tracing::debug!(interface = %interface.name, "netlink XDP detach refused: {e}");
        SteeringError::HeldByAnotherXgate {
            interface: interface.name.clone(),
            id,
        }
    })?;
    tracing::warn!(
        interface = %interface.name,
        id,
        "replaced a steering program left by an earlier xgate"
    );
    Ok(())
}
