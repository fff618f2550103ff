//! Keeps the kernel's huge-page collapsing (khugepaged) off the process. The allocator asks
//! for transparent huge pages on its arenas; when it hands parts back and they are touched
//! again, khugepaged later copies them into huge pages, holding the process's memory map and
//! a core for about 20 ms at a time, every 10 s (its scan period). Measured under a
//! 100,000-user ramp, that was the handshake latency's p99. The packet buffers are unaffected
//! (they were never transparent huge pages).

/// Opts the whole process out of transparent huge pages (`PR_SET_THP_DISABLE`), threads
/// started later included.
pub fn refuse_transparent_huge_pages() -> std::io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag on our own mm.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
