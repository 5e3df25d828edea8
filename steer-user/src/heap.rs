//! The daemon's heap after a big change: loading or reloading a large set allocates tens of MB
//! for moments (the compiled state, the changes sorted, the merged entries, a range table
//! before it is copied into the kernel's array). glibc's allocator keeps freed memory of that
//! size in the process (its mmap threshold grows with such blocks), so a router would see the
//! peak as the daemon's resident memory for good; this hands it back. musl returns large blocks
//! by itself.

/// Returns the allocator's free memory to the system.
pub fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
