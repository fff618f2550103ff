//! The few `bpf(2)` commands AF_XDP needs: an XSKMAP, loading the steering program (with the
//! verifier's log when it refuses), running it on test packets, and attaching it to an
//! interface as a link. Every object is a file descriptor: closing it releases the object, and
//! a link closed (or its process killed) detaches its program.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use thiserror::Error;

use super::program::Insn;

// bpf(2) commands (linux/bpf.h).
pub(super) const MAP_CREATE: libc::c_int = 0;
pub(super) const MAP_LOOKUP_ELEM: libc::c_int = 1;
pub(super) const MAP_UPDATE_ELEM: libc::c_int = 2;
pub(super) const MAP_DELETE_ELEM: libc::c_int = 3;
const PROG_LOAD: libc::c_int = 5;
const PROG_TEST_RUN: libc::c_int = 10;
const PROG_GET_FD_BY_ID: libc::c_int = 13;
const OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const LINK_CREATE: libc::c_int = 28;
const LINK_UPDATE: libc::c_int = 29;

const MAP_TYPE_HASH: u32 = 1;
const MAP_TYPE_XSKMAP: u32 = 17;
const PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP`: the attach type of an XDP link.
const ATTACH_XDP: u32 = 37;
/// `BPF_ANY`: create or replace a map element.
const UPDATE_ANY: u64 = 0;

/// How an XDP program runs on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver, before any socket buffer is built (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// After the socket buffer is built, on any interface (`XDP_FLAGS_SKB_MODE`).
    Generic,
}

impl XdpMode {
    /// The `XDP_FLAGS_*` bit that asks for this mode.
    pub fn flag(self) -> u32 {
        match self {
            XdpMode::Native => 1 << 2,
            XdpMode::Generic => 1 << 1,
        }
    }

    /// The name operators see (`xgate status`, logs).
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

/// A `bpf(2)` call that failed.
#[derive(Debug, Error)]
pub enum BpfError {
    /// The kernel refused a command.
    #[error("bpf({command}): {source}{}", hint(source))]
    Call {
        /// What was asked.
        command: &'static str,
        /// The kernel's answer.
        source: io::Error,
    },
    /// The verifier refused the program; its log says why.
    #[error("the kernel's verifier refused the XDP program: {source}\n{log}")]
    Verifier {
        /// The kernel's answer.
        source: io::Error,
        /// The verifier's log (the last lines say which instruction and why).
        log: String,
    },
}

/// What to do about the errors a missing privilege or limit gives.
fn hint(source: &io::Error) -> &'static str {
    match source.raw_os_error() {
        Some(libc::EPERM) => {
            " (needs CAP_BPF and CAP_NET_ADMIN, or root; on kernels before 5.11 also a higher \
             memlock limit: LimitMEMLOCK=infinity)"
        }
        Some(libc::ENOMEM) => " (raise the memlock limit: LimitMEMLOCK=infinity)",
        _ => "",
    }
}

impl BpfError {
    /// The OS error behind this failure.
    pub fn os_error(&self) -> Option<i32> {
        match self {
            BpfError::Call { source, .. } | BpfError::Verifier { source, .. } => {
                source.raw_os_error()
            }
        }
    }
}

/// Calls `bpf(cmd, attr, size_of(attr))`; returns the non-negative result.
pub(super) fn bpf<A>(
    command: &'static str,
    cmd: libc::c_int,
    attr: &mut A,
) -> Result<libc::c_long, BpfError> {
    // SAFETY: `attr` is a live, initialised repr(C) struct laid out like the command's part of
    // `union bpf_attr` (zero where unused); the kernel reads and may write at most its size.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut A).cast::<libc::c_void>(),
            std::mem::size_of::<A>() as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(BpfError::Call {
            command,
            source: io::Error::last_os_error(),
        });
    }
    Ok(ret)
}

pub(super) fn fd_from(ret: libc::c_long) -> OwnedFd {
    // SAFETY: the commands that create objects return a new descriptor only this call owns.
    unsafe { OwnedFd::from_raw_fd(ret as RawFd) }
}

/// A 16-byte object name, cut and NUL-terminated.
pub(super) fn object_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (slot, byte) in out.iter_mut().zip(name.bytes().take(15)) {
        *slot = byte;
    }
    out
}

#[repr(C)]
#[derive(Default)]
pub(super) struct MapCreateAttr {
    pub(super) map_type: u32,
    pub(super) key_size: u32,
    pub(super) value_size: u32,
    pub(super) max_entries: u32,
    pub(super) map_flags: u32,
    pub(super) inner_map_fd: u32,
    pub(super) numa_node: u32,
    pub(super) map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
pub(super) struct MapElemAttr {
    pub(super) map_fd: u32,
    pub(super) _pad: u32,
    pub(super) key: u64,
    pub(super) value: u64,
    pub(super) flags: u64,
}

/// Creates or replaces the element at `key` of map `fd` (key and value sized as the map says).
pub(super) fn map_update<K, V>(
    command: &'static str,
    fd: &OwnedFd,
    key: &K,
    value: &V,
) -> Result<(), BpfError> {
    let mut attr = MapElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: key as *const K as u64,
        value: value as *const V as u64,
        flags: UPDATE_ANY,
        ..Default::default()
    };
    bpf(command, MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// Deletes the element at `key` of map `fd`.
pub(super) fn map_delete<K>(command: &'static str, fd: &OwnedFd, key: &K) -> Result<(), BpfError> {
    let mut attr = MapElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: key as *const K as u64,
        ..Default::default()
    };
    bpf(command, MAP_DELETE_ELEM, &mut attr).map(drop)
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The start of `struct bpf_prog_info`, up to its name.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// An XSKMAP: slot `i` holds the AF_XDP socket of receive queue `i`.
#[derive(Debug)]
pub struct XskMap {
    fd: OwnedFd,
    slots: u32,
}

impl XskMap {
    /// A map with one slot per receive queue.
    pub fn new(slots: u32) -> Result<Self, BpfError> {
        let mut attr = MapCreateAttr {
            map_type: MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries: slots.max(1),
            map_name: object_name("xgate_xsks"),
            ..Default::default()
        };
        let fd = fd_from(bpf("MAP_CREATE xskmap", MAP_CREATE, &mut attr)?);
        Ok(Self { fd, slots })
    }

    /// Slots in the map.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Puts the socket for receive queue `queue` in its slot.
    pub fn insert(&self, queue: u32, socket: RawFd) -> Result<(), BpfError> {
        map_update("MAP_UPDATE_ELEM xskmap", &self.fd, &queue, &(socket as u32))
    }

    /// Empties the slot of receive queue `queue` (its packets go to the kernel again).
    pub fn remove(&self, queue: u32) -> Result<(), BpfError> {
        map_delete("MAP_DELETE_ELEM xskmap", &self.fd, &queue)
    }

    /// The map's descriptor (programs refer to it).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The host's own addresses, as the steering program looks them up: 16-byte keys (IPv6, or
/// IPv4 mapped as ::ffff:a.b.c.d), one-byte values.
#[derive(Debug)]
pub struct AddressMap {
    fd: OwnedFd,
}

/// Addresses an `AddressMap` holds at most.
pub const MAX_ADDRESSES: u32 = 1024;

impl AddressMap {
    /// An empty map.
    pub fn new() -> Result<Self, BpfError> {
        let mut attr = MapCreateAttr {
            map_type: MAP_TYPE_HASH,
            key_size: 16,
            value_size: 1,
            max_entries: MAX_ADDRESSES,
            map_name: object_name("xgate_local"),
            ..Default::default()
        };
        let fd = fd_from(bpf("MAP_CREATE hash", MAP_CREATE, &mut attr)?);
        Ok(Self { fd })
    }

    fn key(ip: std::net::IpAddr) -> [u8; 16] {
        match ip {
            std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(v6) => v6.octets(),
        }
    }

    /// Takes `ip` out.
    pub fn remove(&self, ip: std::net::IpAddr) -> Result<(), BpfError> {
        map_delete("MAP_DELETE_ELEM hash", &self.fd, &Self::key(ip))
    }

    /// Adds `ip`.
    pub fn insert(&self, ip: std::net::IpAddr) -> Result<(), BpfError> {
        map_update("MAP_UPDATE_ELEM hash", &self.fd, &Self::key(ip), &1u8)
    }

    /// The map's descriptor (programs refer to it).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A loaded XDP program.
#[derive(Debug)]
pub struct XdpProgram {
    fd: OwnedFd,
}

/// Bytes of verifier log asked for when a load fails.
const LOG_SIZE: usize = 1 << 16;

impl XdpProgram {
    /// Loads `insns` as an XDP program named `name`; a refusal carries the verifier's log.
    pub fn load(name: &str, insns: &[Insn]) -> Result<Self, BpfError> {
        let license = c"GPL";
        let mut attr = ProgLoadAttr {
            prog_type: PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: object_name(name),
            expected_attach_type: ATTACH_XDP,
            ..Default::default()
        };
        match bpf("PROG_LOAD", PROG_LOAD, &mut attr) {
            Ok(ret) => Ok(Self { fd: fd_from(ret) }),
            // Only a refusal by the verifier has a log worth asking for.
            Err(e) if !matches!(e.os_error(), Some(libc::EINVAL | libc::EACCES)) => Err(e),
            Err(_) => {
                // Load again with the log on: the cheap path stays free of a 64 KiB buffer.
                let mut log = vec![0u8; LOG_SIZE];
                attr.log_level = 1;
                attr.log_size = LOG_SIZE as u32;
                attr.log_buf = log.as_mut_ptr() as u64;
                match bpf("PROG_LOAD", PROG_LOAD, &mut attr) {
                    Ok(ret) => Ok(Self { fd: fd_from(ret) }),
                    Err(BpfError::Call { source, .. }) => {
                        let text = CStr::from_bytes_until_nul(&log)
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        Err(BpfError::Verifier { source, log: text })
                    }
                    Err(other) => Err(other),
                }
            }
        }
    }

    /// The program's descriptor.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Runs the program once on `packet` as if received on receive queue 0 of no interface;
    /// returns its verdict (`XDP_*`).
    pub fn test_run(&self, packet: &[u8]) -> Result<u32, BpfError> {
        let mut out = vec![0u8; packet.len() + 512];
        let mut attr = TestRunAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            data_size_in: packet.len() as u32,
            data_size_out: out.len() as u32,
            data_in: packet.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat: 1,
            ..Default::default()
        };
        bpf("PROG_TEST_RUN", PROG_TEST_RUN, &mut attr)?;
        Ok(attr.retval)
    }
}

/// The name of the loaded program with kernel id `id`, if it still exists.
pub fn program_name(id: u32) -> Result<String, BpfError> {
    let mut attr = GetFdByIdAttr {
        id,
        ..Default::default()
    };
    let fd = fd_from(bpf("PROG_GET_FD_BY_ID", PROG_GET_FD_BY_ID, &mut attr)?);
    let mut info = ProgInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfo>() as u32,
        info: &mut info as *mut ProgInfo as u64,
    };
    bpf("OBJ_GET_INFO_BY_FD", OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(CStr::from_bytes_until_nul(&info.name)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default())
}

/// A program attached to an interface; detached when dropped (or when the process dies).
#[derive(Debug)]
pub struct XdpLink {
    fd: OwnedFd,
    ifindex: u32,
    mode: XdpMode,
}

impl XdpLink {
    /// Attaches `program` to interface `ifindex` in `mode`.
    pub fn attach(program: &XdpProgram, ifindex: u32, mode: XdpMode) -> Result<Self, BpfError> {
        let mut attr = LinkCreateAttr {
            prog_fd: program.fd() as u32,
            target_ifindex: ifindex,
            attach_type: ATTACH_XDP,
            flags: mode.flag(),
        };
        let fd = fd_from(bpf("LINK_CREATE xdp", LINK_CREATE, &mut attr)?);
        Ok(Self { fd, ifindex, mode })
    }

    /// Swaps the attached program for `program` in one step (no packet sees neither).
    pub fn replace(&self, program: &XdpProgram) -> Result<(), BpfError> {
        let mut attr = LinkUpdateAttr {
            link_fd: self.fd.as_raw_fd() as u32,
            new_prog_fd: program.fd() as u32,
            ..Default::default()
        };
        bpf("LINK_UPDATE xdp", LINK_UPDATE, &mut attr).map(drop)
    }

    /// The interface it is attached to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The mode it runs in.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }
}
