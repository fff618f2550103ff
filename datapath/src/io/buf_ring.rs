//! A provided-buffer ring: pool buffers lent to the kernel, which picks one for each datagram
//! or read as it arrives. One armed multishot operation then receives without a submission
//! per packet, and the worker gets each buffer back by id in the completion.
//!
//! The ring is an array of `(addr, len, bid)` entries shared with the kernel. We add at the
//! tail and publish the tail once per batch; the kernel consumes from its head. `lent` counts
//! entries added and not yet seen consumed, so adding never overruns the kernel's head.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;

/// One registered buffer ring (buffer group).
pub struct BufRing {
    base: NonNull<BufRingEntry>,
    entries: u16,
    tail: u16,
    lent: usize,
    group: u16,
}

impl BufRing {
    /// Maps a ring of `entries` (a power of two) and registers it as buffer group `group`.
    pub fn register(submitter: &Submitter<'_>, entries: u16, group: u16) -> io::Result<Self> {
        assert!(
            entries.is_power_of_two(),
            "buffer ring size must be a power of two"
        );
        let bytes = usize::from(entries) * std::mem::size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping has no preconditions; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<BufRingEntry>()).ok_or_else(io::Error::last_os_error)?;
        let ring = Self {
            base,
            entries,
            tail: 0,
            lent: 0,
            group,
        };
        // SAFETY: the mapping is page-aligned, `entries` long and lives until `Drop`, which runs
        // only after the io_uring (and so the registration) is gone or drained.
        unsafe { submitter.register_buf_ring_with_flags(ptr as u64, entries, group, 0) }?;
        Ok(ring)
    }

    /// The buffer group id operations name to pick from this ring.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Entries the kernel has room for.
    pub fn room(&self) -> usize {
        usize::from(self.entries) - self.lent
    }

    /// Lends `len` bytes at `addr` to the kernel as buffer `bid` (visible after `publish`).
    pub fn push(&mut self, addr: *mut u8, len: u32, bid: u16) {
        debug_assert!(self.room() > 0);
        let index = usize::from(self.tail & (self.entries - 1));
        // SAFETY: `index` is inside the mapping, and the kernel does not read entries past the
        // published tail, so writing this one races with nothing.
        let entry = unsafe { &mut *self.base.as_ptr().add(index) };
        entry.set_addr(addr as u64);
        entry.set_len(len);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        self.lent += 1;
    }

    /// Makes the entries pushed so far visible to the kernel.
    pub fn publish(&self) {
        // SAFETY: the tail field lives in the first entry of the mapping and is only written
        // here; the kernel reads it with acquire semantics.
        let tail = unsafe { &*BufRingEntry::tail(self.base.as_ptr()).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    /// The kernel used one lent buffer (a completion named it).
    pub fn taken(&mut self) {
        self.lent = self.lent.saturating_sub(1);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        let bytes = usize::from(self.entries) * std::mem::size_of::<BufRingEntry>();
        // SAFETY: the mapping was made in `register` with this size. The kernel pinned its
        // pages at registration, so unmapping here cannot pull memory from under it.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), bytes);
        }
    }
}
