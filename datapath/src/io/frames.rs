//! A worker's packet buffers: one page-aligned mapping cut into `BUF_SIZE` frames. Being one
//! mapping, it can also be registered as an AF_XDP UMEM, so the kernel receives into the same
//! frames io_uring reads the TUN into and sends from, and a buffer id means the same frame to
//! both.

use std::io;
use std::ops::{Index, IndexMut};
use std::ptr::NonNull;

use super::BUF_SIZE;

/// The mapping and its frames.
pub struct Frames {
    base: NonNull<u8>,
    count: usize,
}

// SAFETY: the mapping is owned by this value alone; the kernel's accesses are ordered by the
// rings and completions that lend it frames.
unsafe impl Send for Frames {}

impl Frames {
    /// Maps `count` zeroed frames.
    pub fn new(count: usize) -> io::Result<Self> {
        if count == 0 {
            return Ok(Self::empty());
        }
        // SAFETY: an anonymous mapping, checked for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                count * BUF_SIZE,
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
            count,
        })
    }

    /// No frames (nothing mapped).
    pub fn empty() -> Self {
        Self {
            base: NonNull::dangling(),
            count: 0,
        }
    }

    /// Frames in the mapping.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Where the mapping starts and its length in bytes (for registering it with the kernel).
    pub fn region(&self) -> (*mut u8, usize) {
        (self.base.as_ptr(), self.count * BUF_SIZE)
    }
}

impl Index<usize> for Frames {
    type Output = [u8; BUF_SIZE];

    fn index(&self, frame: usize) -> &[u8; BUF_SIZE] {
        assert!(frame < self.count, "frame {frame} out of range");
        // SAFETY: in range, and frames do not overlap.
        unsafe { &*self.base.as_ptr().add(frame * BUF_SIZE).cast() }
    }
}

impl IndexMut<usize> for Frames {
    fn index_mut(&mut self, frame: usize) -> &mut [u8; BUF_SIZE] {
        assert!(frame < self.count, "frame {frame} out of range");
        // SAFETY: in range, frames do not overlap, and `&mut self` keeps the borrow unique on
        // our side (a frame lent to the kernel is not indexed until it comes back).
        unsafe { &mut *self.base.as_ptr().add(frame * BUF_SIZE).cast() }
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        if self.count > 0 {
            // SAFETY: our own mapping; whoever lent frames to the kernel took them back first.
            unsafe { libc::munmap(self.base.as_ptr().cast(), self.count * BUF_SIZE) };
        }
    }
}
