//! A range table (`steer_common::range`) in the kernel: a BPF array of `u64` sized to its
//! table (`BPF_F_INNER_MAP`), filled through a mapping of its memory (`BPF_F_MMAPABLE`: no
//! syscall per element, a 1M-prefix table is a few MiB of stores), then published into a slot
//! of an array of maps with one update.
//!
//! Publishing is the atomic step: a packet reads the slot once, so it sees the old table or
//! the new one whole. The kernel makes the update wait for an RCU grace period, so when it
//! returns no program still reads the old table, which is then freed with its last handle.

use std::{
    borrow::BorrowMut,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::{Array, ArrayOfMaps, IterableMap, MapData, MapError};
use steer_common::{
    MAP_F_INNER_MAP, MAP_F_MMAPABLE,
    range::{BLOCK, Block},
};

use crate::model::range::RangeTable;

/// A range table's array in the kernel, with its memory mapped into this process.
pub struct KernelTable {
    map: Array<MapData, Block>,
    mapping: Mapping,
}

impl std::fmt::Debug for KernelTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelTable")
            .field("elements", &self.mapping.elements)
            .finish_non_exhaustive()
    }
}

impl KernelTable {
    /// A new array holding `table`, with room for `spare` more blocks (zero).
    pub fn create(table: &RangeTable, spare: u32) -> Result<KernelTable, MapError> {
        let blocks = table.blocks().saturating_add(spare);
        let map = Array::<MapData, Block>::create(blocks, MAP_F_INNER_MAP | MAP_F_MMAPABLE)?;
        let elements = table.elements();
        let mapping = Mapping::of(map.map().fd().as_fd(), blocks as usize * BLOCK as usize)
            .map_err(MapError::IoError)?;
        for (slot, value) in mapping.slots().iter().zip(elements) {
            // Relaxed: no program reads this array before it is published, and publishing is
            // a syscall, which orders these stores before it.
            slot.store(*value, Ordering::Relaxed);
        }
        Ok(KernelTable { map, mapping })
    }

    /// Makes this table the one the programs read in `slot` of `outer`.
    pub fn publish<T: BorrowMut<MapData>>(
        &self,
        outer: &mut ArrayOfMaps<T, Array<MapData, Block>>,
        slot: u32,
    ) -> Result<(), MapError> {
        outer.set(slot, &self.map, 0)
    }

    /// The array's descriptor (for the kernel's account of its memory, say).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.map.map().fd().as_fd()
    }

    /// `u64` elements of the array, spare blocks included.
    pub fn elements(&self) -> usize {
        self.mapping.elements
    }
}

/// The values of an mmapable array of `u64`, shared with the kernel.
struct Mapping {
    ptr: NonNull<AtomicU64>,
    elements: usize,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value until drop; every access goes
// through an atomic, so moving it to another thread is sound.
unsafe impl Send for Mapping {}

impl Mapping {
    fn of(fd: std::os::fd::BorrowedFd<'_>, elements: usize) -> std::io::Result<Mapping> {
        // SAFETY: sysconf has no memory effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let len = (elements * 8).div_ceil(page) * page;
        // SAFETY: a fresh shared mapping of a descriptor borrowed for the call; the kernel checks
        // that the map is mmapable and that `len` is inside its values (an array's values are
        // page-aligned and rounded up to a page); the result is checked before use.
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
            return Err(std::io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<AtomicU64>()).ok_or(std::io::Error::other("mmap"))?;
        Ok(Mapping { ptr, elements, len })
    }

    fn slots(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned, holds `elements` u64 values (the array's, 8
        // bytes apart since an array's element size is its value size rounded up to 8), and
        // lives as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.elements) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `of`, which nothing uses after drop.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}
