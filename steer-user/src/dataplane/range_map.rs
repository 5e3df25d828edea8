//! A range table (`steer_common::range`) in the kernel: a BPF array of `u64` sized to its
//! table (`BPF_F_INNER_MAP`), filled through a mapping of its memory (`BPF_F_MMAPABLE`: no
//! syscall per element, a 1M-prefix table is a few MiB of stores), then published into a slot
//! of an array of maps with one update.
//!
//! A small change is written into the live table instead: a chunk's new ranges go to spare
//! room and its direct entry is swapped with one store (`KernelTable::write_chunk`). Its old
//! ranges are never reused in that table (a lookup may still be reading them); the next
//! full build drops them.
//!
//! Each set also keeps its prefixes in the kernel, in a record next to the table
//! (`KernelRecord`), so that `steer dump`, `steer explain` and a restarted daemon can read them.
//!
//! Publishing is the atomic step: a packet reads the slot once, so it sees the old table or
//! the new one whole. The kernel makes the update wait for an RCU grace period, so when it
//! returns no program still reads the old table, which is then freed with its last handle.

use std::{
    borrow::BorrowMut,
    os::fd::AsFd,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering, fence},
    },
    time::{Duration, Instant},
};

use aya::maps::{Array, ArrayOfMaps, IterableMap, MapData, MapError};
use steer_common::{
    MAP_F_INNER_MAP, MAP_F_MMAPABLE,
    range::{self, BLOCK, BLOCK_RANGES, Block},
};

use super::mapping::Mapping;
use crate::model::{
    range::{
        Layout, PrefixV4, RangeTable, lay_out, pack, padding_before, record_blocks, spare_blocks,
        table_ranges,
    },
    range6::{Located, RangeTable6, RegionLayout, locate, named_elements},
};

/// A range table's array in the kernel, with its memory mapped into this process.
pub struct KernelTable {
    blocks: Blocks,
    /// The first range index no chunk uses (ranges are only appended: a range a lookup may be
    /// reading is never written again).
    tail: u32,
    /// Ranges of the array, spare ones included.
    capacity: u32,
    /// Ranges no chunk uses any more (replaced by an incremental write).
    garbage: u32,
}

impl std::fmt::Debug for KernelTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelTable")
            .field("tail", &self.tail)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl KernelTable {
    /// A new array holding `table`, with room for `spare` more blocks of ranges.
    pub fn create(table: &RangeTable, spare: u32) -> Result<KernelTable, MapError> {
        let count = table.blocks().saturating_add(spare);
        let blocks = Blocks::filled(count, table.elements())?;
        Ok(KernelTable {
            blocks,
            tail: table.ranges(),
            capacity: (count - range::DIRECT_BLOCKS) * BLOCK_RANGES,
            garbage: 0,
        })
    }

    /// A new array holding the table of `sorted` (a set in address order), with spare room
    /// for changes: its ranges counted first, then laid out straight into the array's memory
    /// (no copy of a table of megabytes in the daemon first).
    pub fn create_of_sorted(
        sorted: impl Iterator<Item = (PrefixV4, u32)> + Clone,
    ) -> Result<KernelTable, MapError> {
        let ranges = table_ranges(sorted.clone());
        let used = range::blocks(ranges);
        let count = used.saturating_add(spare_blocks(used));
        let mut blocks = Blocks::create(count)?;
        lay_out(sorted, &mut InSlots(blocks.slots()?));
        blocks.unmap();
        Ok(KernelTable {
            blocks,
            tail: ranges,
            capacity: (count - range::DIRECT_BLOCKS) * BLOCK_RANGES,
            garbage: 0,
        })
    }

    /// Makes this table the one the programs read in `slot` of `outer`.
    pub fn publish<T: BorrowMut<MapData>>(
        &self,
        outer: &mut ArrayOfMaps<T, Array<MapData, Block>>,
        slot: u32,
    ) -> Result<(), MapError> {
        self.blocks.publish(outer, slot)
    }

    /// Gives `chunk` the `ranges` (`range::range` values) in the live table: the ranges go to
    /// unused space first, then the chunk's direct entry names them with one store. Returns
    /// false, writing nothing, when the spare room is used up.
    pub fn write_chunk(&mut self, chunk: u32, ranges: &[u32]) -> bool {
        let Ok(slots) = self.blocks.slots() else {
            return false;
        };
        let old = slots[chunk as usize].load(Ordering::Relaxed);
        let entry = if let [only] = ranges {
            range::leaf(only & range::NONE)
        } else {
            let count = ranges.len() as u32;
            // Whole elements only (a chunk starts at an even range), inside one block.
            let mut first = self.tail.next_multiple_of(2);
            first += padding_before(first, count);
            if first + count > self.capacity {
                return false;
            }
            let (_, base, _) = range::range_place(first);
            let block = range::range_place(first).0 as usize * BLOCK as usize;
            for (i, pair) in ranges.chunks(2).enumerate() {
                // Relaxed: the Release store of the entry below publishes them.
                slots[block + base as usize + i]
                    .store(pack(pair[0], pair.get(1).copied()), Ordering::Relaxed);
            }
            self.tail = first + count;
            range::chunk(first, ranges)
        };
        // Release: a program that reads the new entry reads the ranges written above (it reads
        // them through the entry, an address dependency, which orders its loads).
        slots[chunk as usize].store(entry, Ordering::Release);
        self.garbage += range::chunk_parts(old).1;
        true
    }

    /// Ranges no longer used, against ranges in use: when to build the table afresh.
    pub fn garbage(&self) -> (u32, u32) {
        (self.garbage, self.tail - self.garbage)
    }

    /// The array's descriptor (for the kernel's account of its memory, say).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.blocks.map.map().fd().as_fd()
    }

    /// `u64` elements of the array, spare blocks included.
    pub fn elements(&self) -> usize {
        self.blocks.elements
    }

    /// Lets go of the mapping until the next write.
    pub fn unmap(&mut self) {
        self.blocks.unmap();
    }
}

/// A table laid out into a fresh array's memory (zero, not yet published: no program reads it,
/// and publishing it is a syscall, which orders these stores before it).
struct InSlots<'s>(&'s [AtomicU64]);

impl Layout for InSlots<'_> {
    fn direct(&mut self, chunk: u32, entry: u64) {
        self.0[chunk as usize].store(entry, Ordering::Relaxed);
    }
    fn ranges(&mut self, first: u32, ranges: &[u32]) {
        for (index, r) in (first..).zip(ranges) {
            let (block, element, shift) = range::range_place(index);
            let slot = &self.0[(block * BLOCK + element) as usize];
            slot.fetch_or(u64::from(*r) << shift, Ordering::Relaxed);
        }
    }
}

/// An IPv6 range table's array in the kernel (`steer_common::range6`). A small change is
/// written into it as for IPv4, one region at a time: the new split tables and ranges of the
/// smallest region holding the change go to spare room, then the region's entry (direct, or
/// in a split table) names them with one store (`KernelTable6::write_region`).
pub struct KernelTable6 {
    blocks: Blocks,
    /// The first element no region uses (elements are only appended, as for IPv4).
    tail: usize,
    /// Elements no region uses any more.
    garbage: usize,
}

impl std::fmt::Debug for KernelTable6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelTable6")
            .field("elements", &self.elements())
            .finish_non_exhaustive()
    }
}

impl KernelTable6 {
    /// A new array holding `table`, with room for `spare` more blocks.
    pub fn create(table: &RangeTable6, spare: u32) -> Result<KernelTable6, MapError> {
        let blocks = Blocks::filled(table.blocks().saturating_add(spare), table.elements())?;
        Ok(KernelTable6 {
            blocks,
            tail: table.used(),
            garbage: 0,
        })
    }

    /// The entry of the smallest region holding `first..=last` (`None` across chunks).
    pub fn locate(&self, first: u128, last: u128) -> Option<Located> {
        let slots = self.blocks.slots().ok()?;
        locate(first, last, |i| slots[i].load(Ordering::Relaxed))
    }

    /// Gives the entry at element `index` the layout `lay` makes at the first unused element,
    /// in the live table: the elements first, then the entry with one store. Returns false,
    /// writing nothing, when the spare room is used up or there is no layout.
    pub fn write_region(
        &mut self,
        index: usize,
        lay: impl FnOnce(usize) -> Option<RegionLayout>,
    ) -> bool {
        let Ok(slots) = self.blocks.slots() else {
            return false;
        };
        let Some(layout) = lay(self.tail) else {
            return false;
        };
        let end = self.tail + layout.elements.len();
        if end > slots.len() {
            return false;
        }
        for (slot, value) in slots[self.tail..end].iter().zip(&layout.elements) {
            // Relaxed: the Release store of the entry below publishes them.
            slot.store(*value, Ordering::Relaxed);
        }
        let element = |i: u32| slots[i as usize].load(Ordering::Relaxed);
        self.garbage += named_elements(element(index as u32), &element);
        // Release: a program that reads the new entry reads what it names (through the entry,
        // an address dependency, which orders its loads).
        slots[index].store(layout.entry, Ordering::Release);
        self.tail = end;
        true
    }

    /// Elements no longer used, against elements in use: when to build the table afresh.
    pub fn garbage(&self) -> (usize, usize) {
        (self.garbage, self.tail - self.garbage)
    }

    /// Makes this table the one the programs read in `slot` of `outer`.
    pub fn publish<T: BorrowMut<MapData>>(
        &self,
        outer: &mut ArrayOfMaps<T, Array<MapData, Block>>,
        slot: u32,
    ) -> Result<(), MapError> {
        self.blocks.publish(outer, slot)
    }

    /// The array's descriptor.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.blocks.map.map().fd().as_fd()
    }

    /// `u64` elements of the array.
    pub fn elements(&self) -> usize {
        self.blocks.elements
    }

    /// Lets go of the mapping until the next write.
    pub fn unmap(&mut self) {
        self.blocks.unmap();
    }
}

/// A set's record in the kernel: its prefixes, sorted (`steer_common::range::RECORD`).
pub struct KernelRecord {
    blocks: Blocks,
}

impl std::fmt::Debug for KernelRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelRecord")
            .field("elements", &self.blocks.elements)
            .finish_non_exhaustive()
    }
}

impl KernelRecord {
    /// A new record holding `entries`, with room for about an eighth more.
    pub fn create(entries: &[u64]) -> Result<KernelRecord, MapError> {
        let record = KernelRecord {
            blocks: Blocks::create(record_blocks(entries.len()))?,
        };
        record.write(entries, 0)?;
        Ok(record)
    }

    /// `u64` elements of the record's array, spare room included.
    pub fn elements(&self) -> usize {
        self.blocks.elements
    }

    /// Lets go of the mapping until the next write.
    pub fn unmap(&mut self) {
        self.blocks.unmap();
    }

    /// Blocks of the record's array.
    pub fn blocks(&self) -> u32 {
        (self.elements() / BLOCK as usize) as u32
    }

    /// Whether `entries` fit.
    pub fn fits(&self, entries: usize) -> bool {
        range::RECORD_HEADER + entries <= self.blocks.elements
    }

    /// Writes `entries`, whose first `unchanged` are already there, under the sequence
    /// number: a reader that overlaps the write sees it odd or changed, and reads again.
    pub fn write(&self, entries: &[u64], unchanged: usize) -> Result<(), MapError> {
        let slots = self.blocks.slots()?;
        let seq = &slots[range::RECORD_SEQ];
        let start = seq.load(Ordering::Relaxed);
        seq.store(start | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (slot, entry) in slots[range::RECORD_HEADER + unchanged..]
            .iter()
            .zip(&entries[unchanged..])
        {
            slot.store(*entry, Ordering::Relaxed);
        }
        slots[range::RECORD_COUNT].store(entries.len() as u64, Ordering::Relaxed);
        seq.store((start | 1) + 1, Ordering::Release);
        Ok(())
    }

    /// Makes this record the one in `slot` of `outer`.
    pub fn publish<T: BorrowMut<MapData>>(
        &self,
        outer: &mut ArrayOfMaps<T, Array<MapData, Block>>,
        slot: u32,
    ) -> Result<(), MapError> {
        self.blocks.publish(outer, slot)
    }

    /// The entries of a record written by another process (or this one), read consistently;
    /// `None` when a write never ended (its writer died mid-write: the sequence number stays
    /// odd) or never let a reader through within a second.
    pub fn read(map: &MapData) -> Result<Option<Vec<u64>>, MapError> {
        let elements = map.info()?.max_entries() as usize * BLOCK as usize;
        let mapping: Mapping<AtomicU64> =
            Mapping::of(map.fd().as_fd(), elements, false).map_err(MapError::IoError)?;
        let slots = mapping.slots();
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            let before = slots[range::RECORD_SEQ].load(Ordering::Acquire);
            let count = (slots[range::RECORD_COUNT].load(Ordering::Relaxed) as usize)
                .min(elements - range::RECORD_HEADER);
            let entries: Vec<u64> = slots[range::RECORD_HEADER..range::RECORD_HEADER + count]
                .iter()
                .map(|e| e.load(Ordering::Relaxed))
                .collect();
            fence(Ordering::Acquire);
            if before & 1 == 0 && slots[range::RECORD_SEQ].load(Ordering::Relaxed) == before {
                return Ok(Some(entries));
            }
            std::thread::yield_now();
        }
        Ok(None)
    }
}

/// An mmapable array of blocks, mapped for writing when a write needs it: a table's or a
/// record's. The mapping is let go after each commit ([`Blocks::unmap`]): while mapped, every
/// page of the array counts in the daemon's resident memory (16 MB at 1M prefixes) although
/// it is the kernel's, already counted there.
struct Blocks {
    map: Array<MapData, Block>,
    elements: usize,
    mapping: OnceLock<Mapping<AtomicU64>>,
}

impl Blocks {
    fn create(count: u32) -> Result<Blocks, MapError> {
        let map = Array::<MapData, Block>::create(count, MAP_F_INNER_MAP | MAP_F_MMAPABLE)?;
        Ok(Blocks {
            map,
            elements: count as usize * BLOCK as usize,
            mapping: OnceLock::new(),
        })
    }

    /// A new array of `count` blocks starting with `elements` (not mapped any more: the
    /// caller's copy of them is still in memory).
    fn filled(count: u32, elements: &[u64]) -> Result<Blocks, MapError> {
        let mut blocks = Blocks::create(count)?;
        for (slot, value) in blocks.slots()?.iter().zip(elements) {
            // Relaxed: no program reads this array before it is published, and publishing is
            // a syscall, which orders these stores before it.
            slot.store(*value, Ordering::Relaxed);
        }
        blocks.unmap();
        Ok(blocks)
    }

    /// The array's values, mapped now unless they are.
    fn slots(&self) -> Result<&[AtomicU64], MapError> {
        if let Some(mapping) = self.mapping.get() {
            return Ok(mapping.slots());
        }
        let fd = self.map.map().fd().as_fd();
        let mapping = Mapping::of(fd, self.elements, true).map_err(MapError::IoError)?;
        Ok(self.mapping.get_or_init(|| mapping).slots())
    }

    fn unmap(&mut self) {
        self.mapping.take();
    }

    fn publish<T: BorrowMut<MapData>>(
        &self,
        outer: &mut ArrayOfMaps<T, Array<MapData, Block>>,
        slot: u32,
    ) -> Result<(), MapError> {
        outer.set(slot, &self.map, 0)
    }
}
