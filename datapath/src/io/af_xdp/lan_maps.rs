//! The maps the LAN steering program reads and writes: the prefixes the VPN serves (its
//! pools and the peers' allowed IPs, an LPM trie: a destination inside one is taken to the
//! workers), and per-CPU counts of the packets for those prefixes it still left to the kernel,
//! by reason.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use ipnet::IpNet;

use super::bpf::{
    bpf, fd_from, map_delete, map_update, object_name, BpfError, MapCreateAttr, MapElemAttr,
    MAP_CREATE, MAP_LOOKUP_ELEM,
};

const MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const MAP_TYPE_LPM_TRIE: u32 = 11;
/// `BPF_F_NO_PREALLOC`: an LPM trie must be created with it.
const NO_PREALLOC: u32 = 1;

/// Prefixes a `RouteMap` holds at most.
pub const MAX_PREFIXES: u32 = 65_536;

/// An LPM trie key: the prefix length over the 128-bit address (IPv4 as ::ffff:a.b.c.d/96+n).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixKey {
    /// Bits of `addr` that count.
    pub prefix_len: u32,
    /// The address, IPv4 mapped into IPv6.
    pub addr: [u8; 16],
}

impl PrefixKey {
    /// The key of `net`.
    pub fn of(net: IpNet) -> Self {
        match net.trunc() {
            IpNet::V4(v4) => Self {
                prefix_len: 96 + u32::from(v4.prefix_len()),
                addr: v4.addr().to_ipv6_mapped().octets(),
            },
            IpNet::V6(v6) => Self {
                prefix_len: u32::from(v6.prefix_len()),
                addr: v6.addr().octets(),
            },
        }
    }

    /// The key a single address is looked up by.
    pub fn host(ip: IpAddr) -> Self {
        Self::of(IpNet::from(ip))
    }
}

/// The prefixes whose traffic from the LAN the workers take.
#[derive(Debug)]
pub struct RouteMap {
    fd: OwnedFd,
}

impl RouteMap {
    /// An empty trie.
    pub fn new() -> Result<Self, BpfError> {
        let mut attr = MapCreateAttr {
            map_type: MAP_TYPE_LPM_TRIE,
            key_size: std::mem::size_of::<PrefixKey>() as u32,
            value_size: 1,
            max_entries: MAX_PREFIXES,
            map_flags: NO_PREALLOC,
            map_name: object_name("xgate_lan_nets"),
            ..Default::default()
        };
        let fd = fd_from(bpf("MAP_CREATE lpm_trie", MAP_CREATE, &mut attr)?);
        Ok(Self { fd })
    }

    /// Adds `net`.
    pub fn insert(&self, net: IpNet) -> Result<(), BpfError> {
        map_update(
            "MAP_UPDATE_ELEM lpm_trie",
            &self.fd,
            &PrefixKey::of(net),
            &1u8,
        )
    }

    /// Takes `net` out (exactly that prefix; a longer or shorter one stays).
    pub fn remove(&self, net: IpNet) -> Result<(), BpfError> {
        map_delete("MAP_DELETE_ELEM lpm_trie", &self.fd, &PrefixKey::of(net))
    }

    /// True when some prefix in the map holds `ip` (the longest-prefix match the program
    /// makes).
    pub fn covers(&self, ip: IpAddr) -> bool {
        let mut value = 0u8;
        lookup(&self.fd, &PrefixKey::host(ip), &mut value).is_ok()
    }

    /// The map's descriptor (programs refer to it).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Why the LAN program left a packet for the VPN's prefixes to the kernel (which forwards
/// it into the TUN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanPass {
    /// An IPv4 fragment (the kernel reassembles).
    Fragment,
    /// IPv4 options.
    Options,
    /// TTL or hop limit 1 or 0 (the kernel answers Time Exceeded).
    Ttl,
    /// A packet longer than the tunnels' MTU (the kernel fragments it or answers "too big"),
    /// or a frame larger than an AF_XDP frame takes (as GRO makes in generic mode).
    TooLong,
}

impl LanPass {
    /// Every reason, in slot order.
    pub const ALL: [LanPass; 4] = [
        LanPass::Fragment,
        LanPass::Options,
        LanPass::Ttl,
        LanPass::TooLong,
    ];

    /// Its slot in the counters map.
    pub fn slot(self) -> u32 {
        self as u32
    }

    /// The name operators see.
    pub fn name(self) -> &'static str {
        match self {
            LanPass::Fragment => "fragment",
            LanPass::Options => "ip_options",
            LanPass::Ttl => "ttl",
            LanPass::TooLong => "too_long",
        }
    }
}

/// Per-CPU counts of `LanPass` reasons, bumped by the program.
#[derive(Debug)]
pub struct PassCounters {
    fd: OwnedFd,
    cpus: usize,
}

impl PassCounters {
    /// Zeroed counters, a slot per reason on every possible CPU.
    pub fn new() -> Result<Self, BpfError> {
        let mut attr = MapCreateAttr {
            map_type: MAP_TYPE_PERCPU_ARRAY,
            key_size: 4,
            value_size: 8,
            max_entries: LanPass::ALL.len() as u32,
            map_name: object_name("xgate_lan_pass"),
            ..Default::default()
        };
        let fd = fd_from(bpf("MAP_CREATE percpu_array", MAP_CREATE, &mut attr)?);
        Ok(Self {
            fd,
            cpus: possible_cpus(),
        })
    }

    /// Each reason's count, summed over the CPUs.
    pub fn read(&self) -> Result<[u64; LanPass::ALL.len()], BpfError> {
        let mut out = [0u64; LanPass::ALL.len()];
        // The kernel writes one 8-byte value per possible CPU.
        let mut values = vec![0u64; self.cpus];
        for (slot, total) in out.iter_mut().enumerate() {
            lookup(&self.fd, &(slot as u32), &mut values[..])?;
            *total = values.iter().sum();
        }
        Ok(out)
    }

    /// The map's descriptor (programs refer to it).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Reads the value at `key` into `value` (sized as the map's value, per CPU for per-CPU maps).
fn lookup<K, V: ?Sized>(fd: &OwnedFd, key: &K, value: &mut V) -> Result<(), BpfError> {
    let mut attr = MapElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: key as *const K as u64,
        value: value as *mut V as *mut u8 as u64,
        ..Default::default()
    };
    bpf("MAP_LOOKUP_ELEM", MAP_LOOKUP_ELEM, &mut attr).map(drop)
}

/// CPUs the kernel may bring up (`/sys/devices/system/cpu/possible`, as "0-3" or "0,2-5"): a
/// per-CPU map holds a value for each. Unreadable, the most a kernel may have (`NR_CPUS`
/// at most 8,192): a buffer too large is only zeroes summed, one too small would be overrun.
fn possible_cpus() -> usize {
    let Ok(text) = std::fs::read_to_string("/sys/devices/system/cpu/possible") else {
        return 8192;
    };
    let counted: Option<usize> = text
        .trim()
        .split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => (b.parse::<usize>().ok()? + 1).checked_sub(a.parse::<usize>().ok()?),
            None => part.parse::<usize>().ok().map(|_| 1),
        })
        .sum();
    counted.unwrap_or(8192)
}
