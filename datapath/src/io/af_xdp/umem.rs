//! A worker's UMEM: one page-aligned, locked mapping cut into equal frames. The kernel copies
//! received frames into it (or, zero-copy, the NIC writes there directly) and sends from it;
//! userspace names a frame by its byte offset.

use std::io;
use std::ptr::NonNull;

/// Bytes per frame: one packet buffer (the kernel keeps 256 bytes of headroom in each).
pub const FRAME_SIZE: usize = 2048;

/// The mapping and its frames.
pub struct Umem {
    base: NonNull<u8>,
    len: usize,
    frames: u32,
}

// SAFETY: the mapping is owned by this value alone; the kernel's accesses are ordered by the
// rings' atomics.
unsafe impl Send for Umem {}

impl Umem {
    /// Maps `frames` zeroed frames.
    pub fn new(frames: u32) -> io::Result<Self> {
        let len = frames as usize * FRAME_SIZE;
        // SAFETY: an anonymous mapping, checked for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            base: NonNull::new(ptr.cast()).expect("mmap succeeded"),
            len,
            frames,
        })
    }

    /// Frames in the UMEM.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// The registration the kernel needs (`XDP_UMEM_REG`).
    pub fn registration(&self) -> libc::xdp_umem_reg {
        libc::xdp_umem_reg {
            addr: self.base.as_ptr() as u64,
            len: self.len as u64,
            chunk_size: FRAME_SIZE as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        }
    }

    /// The offset the kernel knows frame `frame` by.
    pub fn addr(frame: u32) -> u64 {
        u64::from(frame) * FRAME_SIZE as u64
    }

    /// The frame an offset (a descriptor's address) lies in, and where in it.
    pub fn locate(addr: u64) -> (u32, usize) {
        (
            (addr / FRAME_SIZE as u64) as u32,
            (addr % FRAME_SIZE as u64) as usize,
        )
    }

    /// The bytes of frame `frame`.
    pub fn frame(&mut self, frame: u32) -> &mut [u8; FRAME_SIZE] {
        assert!(frame < self.frames, "frame {frame} out of range");
        // SAFETY: in range; frames do not overlap, and `&mut self` keeps the borrow unique on
        // our side (the caller owns the frame: it is in no ring the kernel may touch).
        unsafe { &mut *self.base.as_ptr().add(frame as usize * FRAME_SIZE).cast() }
    }
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: our own mapping; sockets using it are dropped first by their owners.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
