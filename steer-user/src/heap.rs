//! The daemon's heap after a big change: loading or reloading a large set allocates tens of MB
//! for moments (the compiled state, the changes sorted, the merged entries, a range table
//! before it is copied into the kernel's array). glibc's allocator keeps freed memory of that
//! size in the process (its mmap threshold grows with such blocks), so a router would see the
//! peak as the daemon's resident memory for good; this hands it back. musl returns large blocks
//! by itself.

/// Sets the allocator up for a daemon whose big blocks come and go: every block of 256 KiB or
/// more is a mapping of its own, unmapped when it is freed (glibc otherwise raises that
/// threshold to the largest block freed, up to 32 MiB, and serves the next ones from its
/// heaps), and a heap's free top is given back past 1 MiB. Without it, the tens of MB a reload
/// parses and sorts on other threads stayed in their arenas: `malloc_trim` gives back free
/// memory inside an arena but never the free top of a thread's one. Measured with `cargo
/// xtask bench memory/1M-IPv4`: the daemon held 108 MB after a full reload, 83 MB of it the
/// free tops of three thread arenas.
pub fn return_big_blocks_when_freed() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's thresholds; it has no preconditions and
    // is called before any thread of the daemon allocates.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
    }
}

/// Returns the allocator's free memory to the system.
pub fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
