//! The values of an mmapable BPF array (`BPF_F_MMAPABLE`) mapped into the daemon's memory,
//! seen as a slice of atomics: the generation word (`ACTIVE`) and the IPv4 range tables and
//! records are written with plain stores instead of a syscall per element.

use std::{
    os::fd::{AsRawFd, BorrowedFd},
    ptr::NonNull,
};

/// The first `elements` values of an array map of `T`'s size, shared with the kernel. `T` is
/// an atomic integer type: every access is a load or a store of one element.
pub(super) struct Mapping<T> {
    ptr: NonNull<T>,
    elements: usize,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value until drop; every access goes
// through `T`, an atomic, so moving it to or sharing it with another thread is sound.
unsafe impl<T: Sync> Send for Mapping<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for Mapping<T> {}

impl<T> Mapping<T> {
    /// Maps the first `elements` values of the array map `fd` (whole pages), read-only unless
    /// `writable`; fails when the kernel refuses (the map is not mmapable, or too small).
    pub fn of(fd: BorrowedFd<'_>, elements: usize, writable: bool) -> std::io::Result<Mapping<T>> {
        // SAFETY: sysconf has no memory effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let len = (elements * size_of::<T>()).div_ceil(page).max(1) * page;
        let protection = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh shared mapping of a descriptor borrowed for the call; the kernel
        // checks that the map is mmapable and that `len` is inside its values (an array's
        // values are page-aligned and rounded up to a page); the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                protection,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<T>()).ok_or(std::io::Error::other("mmap"))?;
        Ok(Mapping { ptr, elements, len })
    }

    /// The mapped values.
    pub fn slots(&self) -> &[T] {
        // SAFETY: the mapping is page-aligned, holds `elements` values of `T`'s size (the
        // callers map arrays whose element size is that of `T`), and lives as long as self.
        // A read-only mapping is only ever loaded from.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.elements) }
    }
}

impl<T> Drop for Mapping<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `of`, which nothing uses after drop.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}
