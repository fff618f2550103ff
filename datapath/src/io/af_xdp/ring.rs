//! The four single-producer, single-consumer rings an AF_XDP socket shares with the kernel
//! (fill, completion, rx, tx), mapped from the socket. Indices run freely and wrap; the
//! producer publishes with a release store after writing entries, the consumer releases them
//! with a release store after reading, and each side caches the other's index so a batch reads
//! the shared one once.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// One mapped ring of `T` entries.
pub struct Ring<T: Copy> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    entries: NonNull<T>,
    mask: u32,
    /// Our index (producer side: next to write; consumer side: next to read).
    local: u32,
    /// The other side's index as last read.
    remote: u32,
    map: NonNull<libc::c_void>,
    map_len: usize,
}

// SAFETY: the ring is a mapping owned by this value; moving it to another thread moves the
// only user-side handle (the kernel side is synchronised through the atomics).
unsafe impl<T: Copy> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// Maps the ring of `size` entries at page offset `pgoff` of `socket`, laid out as
    /// `offsets` says.
    pub fn map(
        socket: &OwnedFd,
        pgoff: libc::off_t,
        size: u32,
        offsets: &libc::xdp_ring_offset,
    ) -> io::Result<Self> {
        let map_len = offsets.desc as usize + size as usize * std::mem::size_of::<T>();
        // SAFETY: maps a region the kernel sized for this ring; checked for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                socket.as_raw_fd(),
                pgoff,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = ptr.cast::<u8>();
        let at = |off: u64| {
            // SAFETY: the offsets the kernel reported lie inside the mapping.
            NonNull::new(unsafe { base.add(off as usize) }).expect("mapping is not null")
        };
        let producer = at(offsets.producer).cast();
        let consumer = at(offsets.consumer).cast();
        Ok(Self {
            producer,
            consumer,
            flags: at(offsets.flags).cast(),
            entries: at(offsets.desc).cast(),
            mask: size - 1,
            local: 0,
            remote: 0,
            map: NonNull::new(ptr).expect("mmap succeeded"),
            map_len,
        })
    }

    fn load(index: NonNull<AtomicU32>) -> u32 {
        // SAFETY: the index lives in the mapping for as long as the ring.
        unsafe { index.as_ref() }.load(Ordering::Acquire)
    }

    fn store(index: NonNull<AtomicU32>, value: u32) {
        // SAFETY: as in `load`.
        unsafe { index.as_ref() }.store(value, Ordering::Release);
    }

    /// The kernel asks to be woken (`XDP_RING_NEED_WAKEUP`) before it will move this ring on.
    pub fn needs_wakeup(&self) -> bool {
        // SAFETY: as in `load`.
        unsafe { self.flags.as_ref() }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // Producer side (fill, tx).

    /// Free entries the producer may write (re-reading the consumer only when short of `want`).
    pub fn free(&mut self, want: u32) -> u32 {
        let size = self.mask + 1;
        let mut free = size - self.local.wrapping_sub(self.remote);
        if free < want {
            self.remote = Self::load(self.consumer);
            free = size - self.local.wrapping_sub(self.remote);
        }
        free
    }

    /// Writes the `n`th entry after the last published one (`n` below what `free` allowed).
    pub fn write(&mut self, n: u32, entry: T) {
        let slot = (self.local.wrapping_add(n) & self.mask) as usize;
        // SAFETY: the slot is inside the ring and owned by the producer until published.
        unsafe { self.entries.as_ptr().add(slot).write(entry) };
    }

    /// Hands `n` written entries to the kernel.
    pub fn publish(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
        Self::store(self.producer, self.local);
    }

    /// Entries published and not yet consumed by the kernel.
    pub fn outstanding(&mut self) -> u32 {
        self.remote = Self::load(self.consumer);
        self.local.wrapping_sub(self.remote)
    }

    // Consumer side (rx, completion).

    /// Entries ready to read (re-reading the producer only when none are cached).
    pub fn ready(&mut self) -> u32 {
        let mut ready = self.remote.wrapping_sub(self.local);
        if ready == 0 {
            self.remote = Self::load(self.producer);
            ready = self.remote.wrapping_sub(self.local);
        }
        ready
    }

    /// The `n`th ready entry (`n` below what `ready` returned).
    pub fn read(&self, n: u32) -> T {
        let slot = (self.local.wrapping_add(n) & self.mask) as usize;
        // SAFETY: the slot is inside the ring and published by the kernel, not yet released.
        unsafe { self.entries.as_ptr().add(slot).read() }
    }

    /// Gives `n` read entries back to the kernel.
    pub fn release(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
        Self::store(self.consumer, self.local);
    }
}

impl<T: Copy> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping this ring made; no pointer into it outlives the ring.
        unsafe { libc::munmap(self.map.as_ptr(), self.map_len) };
    }
}
