//! Cache prefetch hints: the worker asks for the lines it will read next before it needs
//! them, where they are far away: written by another CPU (the kernel's copy into an AF_XDP
//! frame on the sender's core), or evicted since (a packet's tag, read when the cipher comes
//! to it, after the rest of a batch of up to 256 frames went through the cache).

/// A prefetch hint for the line holding `byte` (never faults, changes nothing visible).
#[inline(always)]
pub fn line(byte: &u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86-64's baseline, and a prefetch only hints the cache: it
    // dereferences nothing and cannot fault (the address is a live byte besides).
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            (byte as *const u8).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = byte;
}
