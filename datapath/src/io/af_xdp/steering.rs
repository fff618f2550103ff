//! The daemon's side of AF_XDP: on each outer interface, an XSKMAP and the steering program,
//! attached as a link (native mode where the driver has it, generic otherwise); each worker
//! then binds sockets to the receive queues it owns and puts them in the map. A program left
//! behind by an earlier xgate (attached the old way) is replaced; anyone else's is not
//! touched. Dropping this detaches the programs (a killed process's links go with it).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use thiserror::Error;

use super::backend::RING_SIZES;
use super::bpf::{AddressMap, BpfError, XdpLink, XdpMode, XdpProgram, XskMap};
use super::frame::Mac;
use super::interfaces::{choose_interfaces, mac_of, queue_count};
use super::program::{steering, Steered, XDP_PASS};
use super::socket::{XskError, XskSocket};
use super::stale::attach_replacing_stale;
use crate::io::frames::Frames;
use crate::kernel::netlink::{Interface, Netlink};
use crate::kernel::raw_esp::RawEspSockets;

/// The name our steering programs load under (how a stale one is recognised).
pub const PROGRAM_NAME: &str = "xgate_steer";

/// Why AF_XDP could not be set up.
#[derive(Debug, Error)]
pub enum SteeringError {
    /// An interface was named that does not exist.
    #[error("outer interface {0:?} does not exist")]
    NoSuchInterface(String),
    /// A LAN interface was named that does not exist.
    #[error("LAN interface {0:?} does not exist")]
    NoSuchLanInterface(String),
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
         outer_interfaces or backend = \"io-uring\" (at run time this is also what an \
         interface that came back before its old sockets closed looks like: tried again)"
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
    /// The raw ESP sockets (for what AF_XDP cannot send yet) could not be opened.
    #[error("raw ESP sockets: {0}")]
    RawEsp(std::io::Error),
}

/// What an interface is to xgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Where peers' datagrams come in and go out.
    Outer,
    /// The inside (`lan_interfaces`): packets for the VPN's prefixes come in, decrypted ones
    /// go out.
    Lan,
}

/// One interface being steered.
#[derive(Debug)]
pub struct SteeredInterface {
    /// Name.
    pub name: String,
    /// Outer or LAN.
    pub role: Role,
    /// Index.
    pub index: u32,
    /// Our link address on it.
    pub mac: Mac,
    /// Receive queues.
    pub queues: u32,
    /// The largest IP packet it carries, as the kernel said when it was attached.
    pub mtu: u32,
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

/// The steering programs of all outer interfaces, kept in step with the host's interfaces and
/// addresses by `refresh`; workers follow `generation`.
#[derive(Debug)]
pub struct Steering {
    interfaces: Mutex<Vec<Arc<SteeredInterface>>>,
    port: AtomicU16,
    /// The NAT-T port whose ESP is steered too (0: none, until IKE starts).
    nat_port: AtomicU16,
    /// Raw ESP (IP protocol 50) is steered too (from when IKE starts).
    raw_esp: AtomicBool,
    /// The raw ESP sockets (what AF_XDP does not carry, both ways), while it is steered.
    raw_sockets: Mutex<Option<Arc<RawEspSockets>>>,
    /// The host's addresses: only datagrams to them are steered.
    local: AddressMap,
    /// What `local` holds.
    local_set: Mutex<HashSet<IpAddr>>,
    /// The interfaces asked for (`outer_interfaces`; empty: the automatic choice).
    wanted: Vec<String>,
    /// The LAN interfaces (`lan_interfaces`; never chosen as outer ones), and what their
    /// programs read.
    pub(super) lan: Option<super::lan_steering::LanSide>,
    /// Generic XDP only.
    force_generic: bool,
    /// Moves on every change of the interface set.
    generation: AtomicU64,
    /// The last refresh could not attach to every interface that qualifies (one just
    /// released, say): it should run again soon.
    incomplete: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves consistent data (plain collections).
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Steering {
    /// Attaches the steering program for `port` to the interfaces `wanted` names (or, if
    /// empty, to every up, non-loopback interface with an address): native mode where the
    /// driver supports it, else generic; `force_generic` skips the native attempt. No
    /// interface qualifying yet is not an error: `refresh` attaches them when they come.
    pub fn attach(
        netlink: &mut Netlink,
        wanted: &[String],
        port: u16,
        force_generic: bool,
    ) -> Result<Self, SteeringError> {
        Self::attach_with_lan(netlink, (wanted, &[], 0), port, force_generic)
    }

    /// As `attach`, and the LAN program on each of `lan` (`inner = "af-xdp"`): the outer
    /// interfaces `outer` names, or the automatic choice without the LAN ones. LAN packets
    /// longer than `inner_mtu` (the tunnels') go to the kernel, which fragments them or
    /// answers "too big" as it forwards them into the TUN.
    pub fn attach_with_lan(
        netlink: &mut Netlink,
        (wanted, lan, inner_mtu): (&[String], &[String], usize),
        port: u16,
        force_generic: bool,
    ) -> Result<Self, SteeringError> {
        let local = AddressMap::new().map_err(|source| SteeringError::Bpf {
            interface: "(all)".into(),
            source,
        })?;
        let steering = Self {
            interfaces: Mutex::new(Vec::new()),
            port: AtomicU16::new(port),
            nat_port: AtomicU16::new(0),
            raw_esp: AtomicBool::new(false),
            raw_sockets: Mutex::new(None),
            local,
            local_set: Mutex::new(HashSet::new()),
            wanted: wanted.to_vec(),
            lan: super::lan_steering::LanSide::new(lan, inner_mtu)?,
            force_generic,
            generation: AtomicU64::new(0),
            incomplete: AtomicBool::new(false),
        };
        steering.sync_addresses(netlink)?;
        let chosen = match steering.choose_outer(netlink) {
            Ok(c) => c,
            Err(SteeringError::NoInterface(why)) => {
                tracing::warn!("AF_XDP: {why}; steering starts when an interface comes up");
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let mut attached = Vec::new();
        for interface in &chosen {
            attached.push(Arc::new(steering.attach_one(
                netlink,
                interface,
                Role::Outer,
            )?));
        }
        for interface in steering.choose_lan(netlink, true)? {
            attached.push(Arc::new(steering.attach_one(
                netlink,
                &interface,
                Role::Lan,
            )?));
        }
        *lock(&steering.interfaces) = attached;
        Ok(steering)
    }

    fn attach_one(
        &self,
        netlink: &mut Netlink,
        interface: &Interface,
        role: Role,
    ) -> Result<SteeredInterface, SteeringError> {
        let bpf_err = |source| SteeringError::Bpf {
            interface: interface.name.clone(),
            source,
        };
        let queues = queue_count(&interface.name);
        let map = XskMap::new(queues).map_err(bpf_err)?;
        let insns = match (role, &self.lan) {
            (Role::Lan, Some(lan)) => lan.program(interface, map.fd(), self.local.fd()),
            _ => steering(self.steered(), map.fd(), self.local.fd(), XDP_PASS),
        };
        let program = XdpProgram::load(PROGRAM_NAME, &insns).map_err(bpf_err)?;
        let link = attach_replacing_stale(netlink, interface, &program, self.force_generic)?;
        tracing::info!(
            interface = %interface.name,
            role = ?role,
            mode = link.mode().name(),
            queues,
            "XDP steering program attached"
        );
        Ok(SteeredInterface {
            name: interface.name.clone(),
            role,
            index: interface.index,
            mac: mac_of(interface),
            queues,
            mtu: interface.mtu,
            map,
            link,
            program: Mutex::new(program),
        })
    }

    /// The outer interfaces: those named, or the automatic choice, never a LAN one.
    fn choose_outer(&self, netlink: &mut Netlink) -> Result<Vec<Interface>, SteeringError> {
        let lan = self.lan.as_ref().map(|l| l.names()).unwrap_or_default();
        let mut chosen = choose_interfaces(netlink, &self.wanted, None)?;
        chosen.retain(|i| !lan.contains(&i.name));
        if chosen.is_empty() && self.wanted.is_empty() {
            return Err(SteeringError::NoInterface(
                "no interface other than loopback and the LAN ones is up with an address".into(),
            ));
        }
        Ok(chosen)
    }

    /// Puts the host's current addresses in the address map (and takes gone ones out).
    fn sync_addresses(&self, netlink: &mut Netlink) -> Result<(), SteeringError> {
        let now: HashSet<IpAddr> = netlink.addresses()?.into_iter().map(|(_, ip)| ip).collect();
        let mut held = lock(&self.local_set);
        for ip in held.difference(&now) {
            let _ = self.local.remove(*ip);
        }
        for ip in now.difference(&held) {
            self.local
                .insert(*ip)
                .map_err(|source| SteeringError::Bpf {
                    interface: "(all)".into(),
                    source,
                })?;
        }
        *held = now;
        Ok(())
    }

    /// Follows the host: addresses into the map, programs attached to interfaces that now
    /// qualify and detached from those that no longer do. Returns whether the set changed
    /// (then `generation` moved and workers rebind).
    pub fn refresh(&self, netlink: &mut Netlink) -> Result<bool, SteeringError> {
        self.sync_addresses(netlink)?;
        let outer = match self.choose_outer(netlink) {
            Ok(c) => c,
            Err(SteeringError::NoInterface(_)) | Err(SteeringError::NoSuchInterface(_)) => {
                // Named interfaces that are gone simply leave the set.
                let all = netlink.interfaces()?;
                all.into_iter()
                    .filter(|i| self.wanted.contains(&i.name))
                    .collect()
            }
            Err(e) => return Err(e),
        };
        let lan = self.choose_lan(netlink, false)?;
        let chosen: Vec<(Interface, Role)> = outer
            .into_iter()
            .map(|i| (i, Role::Outer))
            .chain(lan.into_iter().map(|i| (i, Role::Lan)))
            .collect();
        let mut current = lock(&self.interfaces);
        let before = current.len();
        current.retain(|s| {
            let keep = chosen
                .iter()
                .any(|(c, role)| c.index == s.index && c.name == s.name && *role == s.role);
            if !keep {
                tracing::info!(interface = %s.name, "XDP steering program detached (interface gone or no longer qualifies)");
            }
            keep
        });
        let mut changed = current.len() != before;
        let mut incomplete = false;
        for (interface, role) in &chosen {
            if current.iter().any(|s| s.index == interface.index) {
                continue;
            }
            match self.attach_one(netlink, interface, *role) {
                Ok(s) => {
                    current.push(Arc::new(s));
                    changed = true;
                }
                Err(e) => {
                    tracing::warn!(
                        "AF_XDP not attached to {} (tried again): {e}",
                        interface.name
                    );
                    incomplete = true;
                }
            }
        }
        self.incomplete.store(incomplete, Ordering::Relaxed);
        if changed {
            self.generation.fetch_add(1, Ordering::Release);
        }
        Ok(changed)
    }

    /// The last `refresh` left a qualifying interface without a program: run it again.
    pub fn incomplete(&self) -> bool {
        self.incomplete.load(Ordering::Relaxed)
    }

    /// Moves on every change of the interface set.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The interfaces steered now.
    pub fn interfaces(&self) -> Vec<Arc<SteeredInterface>> {
        lock(&self.interfaces).clone()
    }

    /// The port steered.
    pub fn port(&self) -> u16 {
        self.port.load(Ordering::Relaxed)
    }

    /// What the programs steer now.
    fn steered(&self) -> Steered {
        Steered {
            port: self.port(),
            nat_port: self.nat_port.load(Ordering::Relaxed),
            raw_esp: self.raw_esp.load(Ordering::Relaxed),
        }
    }

    /// Steers `port` instead (the listen port changed): each link swaps to a new program in
    /// one step.
    pub fn set_port(&self, port: u16) -> Result<(), SteeringError> {
        self.port.store(port, Ordering::Relaxed);
        self.reload()
    }

    /// Steers UDP-encapsulated ESP arriving on `port` too (IKE there still goes to the
    /// kernel's socket): set when the IKE responder starts.
    pub fn set_nat_port(&self, port: u16) -> Result<(), SteeringError> {
        self.nat_port.store(port, Ordering::Relaxed);
        self.reload()
    }

    /// Steers raw ESP (IP protocol 50) to the workers too, or no longer, and opens (marked
    /// `fwmark`) or closes the raw sockets for what AF_XDP does not carry: set before the
    /// IKE responder starts, which then lets peers with no NAT between send ESP
    /// unencapsulated. On failure what was steered before stays.
    pub fn set_raw_esp(&self, raw: bool, fwmark: u32) -> Result<(), SteeringError> {
        let sockets = match raw {
            true => Some(Arc::new(
                RawEspSockets::open(fwmark).map_err(SteeringError::RawEsp)?,
            )),
            false => None,
        };
        let was = self.raw_esp.swap(raw, Ordering::Relaxed);
        if let Err(e) = self.reload() {
            self.raw_esp.store(was, Ordering::Relaxed);
            let _ = self.reload();
            return Err(e);
        }
        if let Some(old) = std::mem::replace(&mut *lock(&self.raw_sockets), sockets) {
            old.close();
        }
        Ok(())
    }

    /// The raw ESP sockets, while raw ESP is steered.
    pub fn raw_esp_sockets(&self) -> Option<Arc<RawEspSockets>> {
        lock(&self.raw_sockets).clone()
    }

    /// Each link swaps to the program for what is steered now in one step.
    fn reload(&self) -> Result<(), SteeringError> {
        let steered = self.steered();
        // The LAN program does not depend on what the outer side steers.
        for i in lock(&self.interfaces)
            .iter()
            .filter(|i| i.role == Role::Outer)
        {
            let bpf_err = |source| SteeringError::Bpf {
                interface: i.name.clone(),
                source,
            };
            let program = XdpProgram::load(
                PROGRAM_NAME,
                &steering(steered, i.map.fd(), self.local.fd(), XDP_PASS),
            )
            .map_err(bpf_err)?;
            i.link.replace(&program).map_err(bpf_err)?;
            *lock(&i.program) = program;
        }
        Ok(())
    }

    /// The queues of `interfaces` worker `worker` of `workers` owns (queue q belongs to
    /// worker q mod workers), as (interface, queue) pairs, LAN interfaces' included.
    pub fn owned_queues(
        interfaces: &[Arc<SteeredInterface>],
        worker: usize,
        workers: usize,
    ) -> Vec<(Arc<SteeredInterface>, u32)> {
        interfaces
            .iter()
            .flat_map(|i| {
                (0..i.queues)
                    .filter(move |q| *q as usize % workers.max(1) == worker)
                    .map(move |q| (i.clone(), q))
            })
            .collect()
    }

    /// How the outer side is served, for logs and `xgate status`, e.g.
    /// `eth0 native 4 queue(s)`.
    pub fn describe(&self) -> String {
        let list = lock(&self.interfaces)
            .iter()
            .map(|i| {
                let lan = if i.role == Role::Lan { " (LAN)" } else { "" };
                format!("{}{lan} {} {} queue(s)", i.name, i.mode().name(), i.queues)
            })
            .collect::<Vec<_>>()
            .join(", ");
        if list.is_empty() {
            "no interface yet".into()
        } else {
            list
        }
    }
}

impl SteeredInterface {
    /// Binds a socket for `queue` over `frames` (sharing `shared_with`'s UMEM registration)
    /// and puts it in the map. With `grace`, a queue still held by a just-killed process is
    /// waited for (at start); without, a busy queue fails at once (at run time a worker must
    /// not sleep: it tries again later).
    pub fn bind(
        &self,
        frames: &Frames,
        shared_with: Option<&XskSocket>,
        queue: u32,
        grace: bool,
    ) -> Result<XskSocket, SteeringError> {
        let socket = if grace {
            bind_with_grace(frames, shared_with, self.index, queue)?
        } else {
            XskSocket::bind(frames, shared_with, self.index, queue, RING_SIZES)?
        };
        self.map
            .insert(queue, socket.fd())
            .map_err(|source| SteeringError::Bpf {
                interface: self.name.clone(),
                source,
            })?;
        Ok(socket)
    }

    /// Takes `queue`'s socket out of the map (its frames go to the kernel again).
    pub fn unbind(&self, queue: u32) {
        let _ = self.map.remove(queue);
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
