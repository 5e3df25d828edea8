//! The generation word `ACTIVE` mapped into the daemon's memory (the map is
//! `BPF_F_MMAPABLE`): a flip is one aligned 32-bit store, no syscall, so a failover a standby
//! covers reaches the kernel in the time of a store. Without the mapping (an old kernel, a
//! map pinned without the flag) the word is written with the map syscall as before.

use std::{
    os::fd::BorrowedFd,
    sync::atomic::{AtomicU32, Ordering},
};

use super::mapping::Mapping;

/// One page of an array map of `u32`, shared with the kernel; element 0 is the word.
pub(super) struct MappedWord(Mapping<AtomicU32>);

impl MappedWord {
    /// Maps the first page of the array map `fd`; `None` when the kernel refuses (the map
    /// is not mmapable).
    pub fn map(fd: BorrowedFd<'_>) -> Option<MappedWord> {
        Mapping::of(fd, 1, true).ok().map(MappedWord)
    }

    fn word(&self) -> &AtomicU32 {
        &self.0.slots()[0]
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
