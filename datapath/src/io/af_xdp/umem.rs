//! A worker's frames as an AF_XDP UMEM: the kernel knows a frame by its byte offset in the
//! mapping and keeps 256 bytes of headroom in front of each received frame.

use crate::io::frames::Frames;
use crate::io::BUF_SIZE;

/// The registration the kernel needs (`XDP_UMEM_REG`).
pub fn registration(frames: &Frames) -> libc::xdp_umem_reg {
    let (base, len) = frames.region();
    libc::xdp_umem_reg {
        addr: base as u64,
        len: len as u64,
        chunk_size: BUF_SIZE as u32,
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    }
}

/// The offset the kernel knows frame `frame` by.
pub fn addr(frame: u32) -> u64 {
    u64::from(frame) * BUF_SIZE as u64
}

/// The frame an offset (a descriptor's address) lies in, and where in it.
pub fn locate(addr: u64) -> (u32, usize) {
    (
        (addr / BUF_SIZE as u64) as u32,
        (addr % BUF_SIZE as u64) as usize,
    )
}

/// Starts loading the first cache line of `len` bytes at `at` in `frame` and, with `tail`,
/// the last. Where the kernel's copy into the UMEM ran on another CPU (a veth's sender, a
/// NIC whose interrupts go to another core), the header the parser reads first and the
/// ICV/tag at the end (read before the cipher streams through the middle) would each be a
/// cross-core miss on the worker's critical path.
pub fn prefetch(frame: &[u8; BUF_SIZE], at: usize, len: usize, tail: bool) {
    crate::io::prefetch::line(&frame[at.min(BUF_SIZE - 1)]);
    if tail {
        crate::io::prefetch::line(&frame[(at + len).saturating_sub(1).min(BUF_SIZE - 1)]);
    }
}
