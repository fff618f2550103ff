//! The steering's LAN side (`inner = "af-xdp"`, issue 20): the interfaces named as LAN ones
//! get the LAN program (`lan_program`) instead of the outer one, reading the prefixes the VPN
//! serves from one `RouteMap` and counting what they leave to the kernel in one
//! `PassCounters`, both shared by every LAN interface. The plane keeps the prefixes current.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::Mutex;

use ipnet::IpNet;

use super::interfaces::mac_of;
use super::lan_maps::{LanPass, PassCounters, RouteMap};
use super::lan_program::{lan_steering, LanMaps, LanSteered};
use super::program::{Insn, XDP_PASS};
use super::steering::{Steering, SteeringError};
use crate::io::BUF_SIZE;
use crate::kernel::netlink::{Interface, Netlink};

/// The longest frame the LAN program takes: what an AF_XDP frame holds after the kernel's
/// 256 bytes of headroom.
const MAX_LAN_FRAME: usize = BUF_SIZE - 256;
/// An Ethernet header without VLAN tags (the program leaves tagged frames to the kernel).
const ETHERNET_HEADER: usize = 14;

/// The LAN interfaces and the maps their programs read.
#[derive(Debug)]
pub struct LanSide {
    names: Vec<String>,
    /// The longest frame taken: a packet of the tunnels' MTU in its Ethernet header.
    max_frame: u16,
    routes: RouteMap,
    counters: PassCounters,
    /// What `routes` holds.
    served: Mutex<BTreeSet<IpNet>>,
}

fn bpf_err(source: super::bpf::BpfError) -> SteeringError {
    SteeringError::Bpf {
        interface: "(LAN)".into(),
        source,
    }
}

impl LanSide {
    /// The LAN side for the interfaces `names` (None when there are none), taking packets up
    /// to `inner_mtu` bytes long (0: as long as a frame holds).
    pub(super) fn new(names: &[String], inner_mtu: usize) -> Result<Option<Self>, SteeringError> {
        if names.is_empty() {
            return Ok(None);
        }
        let longest = match inner_mtu {
            0 => MAX_LAN_FRAME,
            mtu => (mtu + ETHERNET_HEADER).min(MAX_LAN_FRAME),
        };
        Ok(Some(Self {
            names: names.to_vec(),
            max_frame: longest as u16,
            routes: RouteMap::new().map_err(bpf_err)?,
            counters: PassCounters::new().map_err(bpf_err)?,
            served: Mutex::new(BTreeSet::new()),
        }))
    }

    /// The LAN interfaces' names.
    pub(super) fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// The LAN program for `interface`, its sockets in `xsk`, the host's addresses in `local`.
    pub(super) fn program(&self, interface: &Interface, xsk: RawFd, local: RawFd) -> Vec<Insn> {
        let lan = LanSteered {
            mac: mac_of(interface),
            max_frame: self.max_frame,
        };
        let maps = LanMaps {
            xsk,
            local,
            routes: self.routes.fd(),
            counters: self.counters.fd(),
        };
        lan_steering(lan, maps, XDP_PASS)
    }
}

impl Steering {
    /// The LAN interfaces that exist now; at start a missing one is an error (a typo should
    /// not start a concentrator that forwards nothing), later it just leaves the set.
    pub(super) fn choose_lan(
        &self,
        netlink: &mut Netlink,
        at_start: bool,
    ) -> Result<Vec<Interface>, SteeringError> {
        let Some(lan) = &self.lan else {
            return Ok(Vec::new());
        };
        let all = netlink.interfaces()?;
        let mut chosen = Vec::new();
        for name in &lan.names {
            match all.iter().find(|i| &i.name == name) {
                Some(i) => chosen.push(i.clone()),
                None if at_start => return Err(SteeringError::NoSuchLanInterface(name.clone())),
                None => {}
            }
        }
        Ok(chosen)
    }

    /// Makes `nets` the prefixes whose traffic from the LAN the workers take (the pools and
    /// the peers' allowed IPs): what is new goes in, what is gone comes out.
    pub fn set_lan_prefixes(&self, nets: &[IpNet]) -> Result<(), SteeringError> {
        let Some(lan) = &self.lan else {
            return Ok(());
        };
        let wanted: BTreeSet<IpNet> = nets.iter().map(IpNet::trunc).collect();
        let mut served = lan.served.lock().unwrap_or_else(|p| p.into_inner());
        for net in served.difference(&wanted) {
            let _ = lan.routes.remove(*net);
        }
        for net in wanted.difference(&served) {
            lan.routes.insert(*net).map_err(bpf_err)?;
        }
        *served = wanted;
        Ok(())
    }

    /// True when LAN interfaces are steered (`inner = "af-xdp"`).
    pub fn has_lan(&self) -> bool {
        self.lan.is_some()
    }

    /// True when the LAN programs take traffic for `ip` (some served prefix holds it).
    pub fn lan_serves(&self, ip: IpAddr) -> bool {
        self.lan.as_ref().is_some_and(|l| l.routes.covers(ip))
    }

    /// What the LAN programs left to the kernel for the VPN's prefixes, by reason (None
    /// without a LAN side).
    pub fn lan_passes(&self) -> Option<Vec<(LanPass, u64)>> {
        let counts = self.lan.as_ref()?.counters.read().ok()?;
        Some(LanPass::ALL.iter().copied().zip(counts).collect())
    }
}
