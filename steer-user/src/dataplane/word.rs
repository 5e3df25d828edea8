//! The generation word `ACTIVE` mapped into the daemon's memory (the map is
//! `BPF_F_MMAPABLE`): a flip is one aligned 32-bit store, no syscall, so a failover a standby
//! covers reaches the kernel in the time of a store. Without the mapping (an old kernel, a
//! map pinned without the flag) the word is written with the map syscall as before.

use std::{
    os::fd::{AsRawFd, BorrowedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, Ordering},
};

/// One page of an array map of `u32`, shared with the kernel; element 0 is the word.
pub(super) struct MappedWord {
    ptr: NonNull<AtomicU32>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value until drop; every access
// goes through an atomic, so moving it to or sharing it with another thread is sound.
unsafe impl Send for MappedWord {}
// SAFETY: as above: only atomic loads and stores reach the memory.
unsafe impl Sync for MappedWord {}

impl MappedWord {
    /// Maps the first page of the array map `fd`; `None` when the kernel refuses (the map
    /// is not mmapable).
    pub fn map(fd: BorrowedFd<'_>) -> Option<MappedWord> {
        // SAFETY: sysconf has no memory effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let len = usize::try_from(page).ok().filter(|l| *l >= 4)?;
        // SAFETY: a fresh shared mapping of a file descriptor we borrow for the call; the
        // kernel checks that the map is mmapable and the range inside it, and the result is
        // checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        Some(MappedWord {
            ptr: NonNull::new(ptr.cast::<AtomicU32>())?,
            len,
        })
    }

    fn word(&self) -> &AtomicU32 {
        // SAFETY: the mapping is page-aligned, at least 4 bytes, and lives as long as self.
        unsafe { self.ptr.as_ref() }
    }

    /// The word as the classifier reads it.
    pub fn load(&self) -> u32 {
        self.word().load(Ordering::SeqCst)
    }

    /// Writes the word: packets that read it after this see the new value. SeqCst: every map
    /// write made before (the standby's entries, by syscall) is visible first.
    pub fn store(&self, value: u32) {
        self.word().store(value, Ordering::SeqCst);
    }
}

impl Drop for MappedWord {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`, which nothing uses after drop.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}
