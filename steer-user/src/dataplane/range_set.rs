//! An IPv4 prefix set as the kernel holds it: a range table the classifier reads and a record
//! of the prefixes ([`super::range_map`]), in the two slots of the set's outer array. This
//! module keeps them in step with the prefixes written through it.
//!
//! Every write ends in a *commit*: the record is rewritten from the first entry that changed,
//! and the table is brought to the new set, chunk by chunk in the live table when few chunks
//! changed and there is room (each chunk swaps with one store), or built afresh and published
//! in one step. Either way a packet sees the set before the write or after it, per chunk.
//! A fresh handle (a restarted daemon) reads the record before its first write and has no
//! live table to write into: its first commit builds one.

use std::collections::BTreeSet;

use aya::maps::{Array, ArrayOfMaps, IterableMap, Map, MapData, MapError};
use steer_common::range::{self, Block, record_entry, record_parts};

use super::{
    range_map::{KernelRecord, KernelTable},
    trie::TrieError,
};
use crate::{
    heap::return_freed_memory,
    model::range::{PrefixV4, RangeTable, chunk_ranges, record_blocks, spare_blocks},
};

type Result<T> = std::result::Result<T, TrieError>;

/// Chunks a commit rewrites in place at most; past that a fresh table costs less.
const IN_PLACE_MAX_CHUNKS: usize = 4096;
/// Changes applied to the entries one by one at most (each may shift the entries after it);
/// more are merged in one pass.
const IN_PLACE_MAX_EDITS: usize = 4;

pub struct RangeSet {
    name: &'static str,
    outer: ArrayOfMaps<MapData, Array<MapData, Block>>,
    /// The record's entries (`range::record_entry`), sorted: what the set holds, once
    /// `known`.
    entries: Vec<u64>,
    /// Whether `entries` were read from the kernel's record (or written by this handle).
    known: bool,
    /// The live table, when this handle built it.
    table: Option<KernelTable>,
    record: Option<KernelRecord>,
    /// The kernel may hold something else than the entries (a commit failed part-way, or the
    /// record read was torn): the next commit writes a fresh record and a fresh table, even
    /// with nothing to change.
    dirty: bool,
    /// See [`RangeSet::fail_next_table`].
    fail_next_table: bool,
    /// Tables and records published since the last `take_published`.
    published: u64,
}

impl std::fmt::Debug for RangeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeSet")
            .field("name", &self.name)
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl RangeSet {
    /// Opens the set's outer array. Its record is read when a write first needs it: readers
    /// (`steer status`, `dump`, `explain`) read the kernel's record themselves, or not at all.
    pub fn new((name, outer): (&'static str, Map)) -> Result<RangeSet> {
        let outer: ArrayOfMaps<MapData, Array<MapData, Block>> =
            outer.try_into().map_err(err(name, "open"))?;
        Ok(RangeSet {
            name,
            outer,
            known: false,
            dirty: false,
            fail_next_table: false,
            entries: Vec::new(),
            table: None,
            record: None,
            published: 0,
        })
    }

    /// The kernel's record: its entries (none when there is no record yet), or `None` when it
    /// was left half-written.
    fn read_record(&self) -> Result<Option<Vec<u64>>> {
        match self.outer.get(&range::RECORD, 0) {
            Ok(record) => KernelRecord::read(record.map()).map_err(err(self.name, "read record")),
            Err(MapError::KeyNotFound) => Ok(Some(Vec::new())),
            Err(e) => Err(err(self.name, "open record")(e)),
        }
    }

    /// Takes the kernel's record as what the set holds, before the first write.
    fn know(&mut self) -> Result<()> {
        if self.known {
            return Ok(());
        }
        match self.read_record()? {
            Some(entries) => self.entries = entries,
            None => {
                log::warn!(
                    "{}: its record was left half-written (a writer died mid-write); the set \
                     is taken as empty and this write rewrites it whole",
                    self.name
                );
                self.dirty = true;
            }
        }
        self.known = true;
        Ok(())
    }

    /// Tables and records published since the last call (kernel writes the caller counts).
    pub fn take_published(&mut self) -> u64 {
        std::mem::take(&mut self.published)
    }

    /// Maps a prefix to `rule` (insert or overwrite).
    pub fn insert(&mut self, prefix: PrefixV4, rule: u32) -> Result<()> {
        self.apply(vec![(prefix, Some(rule))]).map(|_| ())
    }

    /// Removes a prefix; returns whether it was there.
    pub fn remove(&mut self, prefix: PrefixV4) -> Result<bool> {
        self.apply(vec![(prefix, None)]).map(|removed| removed > 0)
    }

    /// Writes many prefixes in one commit (a prefix given twice keeps its last rule).
    pub fn insert_many(&mut self, entries: &[(PrefixV4, u32)]) -> Result<()> {
        self.apply(entries.iter().map(|(p, r)| (*p, Some(*r))).collect())
            .map(|_| ())
    }

    /// Removes many prefixes in one commit; returns how many were there.
    pub fn remove_many(&mut self, prefixes: &[PrefixV4]) -> Result<usize> {
        self.apply(prefixes.iter().map(|p| (*p, None)).collect())
    }

    /// Every prefix that contains `addr`, with its rule, as the kernel's record holds them.
    pub fn candidates(&self, addr: u32) -> Result<Vec<(PrefixV4, u32)>> {
        let mut all = self.dump()?;
        all.retain(|((network, len), _)| prefix_of(addr, *len).0 == *network);
        Ok(all)
    }

    /// Every prefix with its rule, in address order, as the kernel's record holds them.
    pub fn dump(&self) -> Result<Vec<(PrefixV4, u32)>> {
        let entries = self.read_record()?.ok_or_else(|| {
            err(self.name, "read record")(MapError::IoError(std::io::Error::other(
                "the record is being written or was left half-written",
            )))
        })?;
        Ok(entries.into_iter().map(entry_parts).collect())
    }

    /// Fault injection for tests: the next fresh table fails to build, after the record was
    /// written (the kernel is then ahead of what the set holds).
    #[doc(hidden)]
    pub fn fail_next_table(&mut self) {
        self.fail_next_table = true;
    }

    /// Where the entry of a prefix is (or would be).
    fn find(&self, addr: u32, len: u8) -> std::result::Result<usize, usize> {
        let key = record_entry(addr, len, 0) >> 16;
        self.entries.binary_search_by_key(&key, |e| e >> 16)
    }

    /// Applies `changes` (a rule, or `None` to remove) to the entries and commits them;
    /// returns how many removals found their prefix.
    fn apply(&mut self, mut changes: Vec<(PrefixV4, Option<u32>)>) -> Result<usize> {
        self.know()?;
        // Stable: a prefix given twice keeps its last change.
        changes.sort_by_key(|(p, _)| *p);
        if changes.len() <= IN_PLACE_MAX_EDITS {
            return self.apply_in_place(&changes);
        }
        let mut merged = Vec::with_capacity(self.entries.len() + changes.len());
        let mut old = self.entries.iter().copied().peekable();
        let mut first_change = None;
        let mut removed = 0;
        let mut touched = Vec::with_capacity(changes.len());
        for &((addr, len), rule) in last_of_each(&changes) {
            let key = record_entry(addr, len, 0) >> 16;
            while let Some(e) = old.next_if(|e| e >> 16 < key) {
                merged.push(e);
            }
            let previous = old.next_if(|e| e >> 16 == key);
            let new = rule.map(|r| record_entry(addr, len, r));
            if previous == new {
                if let Some(e) = previous {
                    merged.push(e);
                }
                continue;
            }
            removed += usize::from(previous.is_some() && new.is_none());
            first_change.get_or_insert(merged.len());
            merged.extend(new);
            touched.push((addr, len));
        }
        merged.extend(old);
        let Some(first_change) = first_change else {
            return self.commit_if_dirty().map(|()| 0);
        };
        let before = std::mem::replace(&mut self.entries, merged);
        if let Err(e) = self.commit(first_change, &touched) {
            self.entries = before;
            return Err(e);
        }
        drop((before, changes, touched));
        return_freed_memory();
        Ok(removed)
    }

    /// [`RangeSet::apply`] for a few changes: each goes into the entries where it belongs,
    /// shifting those after it, instead of a merged copy of the whole set.
    fn apply_in_place(&mut self, changes: &[(PrefixV4, Option<u32>)]) -> Result<usize> {
        let mut undo = Vec::new();
        let mut removed = 0;
        let mut touched = Vec::new();
        for &((addr, len), rule) in last_of_each(changes) {
            let new = rule.map(|r| record_entry(addr, len, r));
            let (at, previous) = match self.find(addr, len) {
                Ok(at) if new == Some(self.entries[at]) => continue,
                Ok(at) => (at, Some(self.entries[at])),
                Err(_) if new.is_none() => continue,
                Err(at) => (at, None),
            };
            match new {
                Some(entry) if previous.is_some() => self.entries[at] = entry,
                Some(entry) => self.entries.insert(at, entry),
                None => {
                    self.entries.remove(at);
                    removed += 1;
                }
            }
            undo.push((addr, len, previous));
            touched.push((addr, len));
        }
        let Some(first_change) = touched
            .iter()
            .map(|(a, l)| self.find(*a, *l).unwrap_or_else(|at| at))
            .min()
        else {
            return self.commit_if_dirty().map(|()| 0);
        };
        if let Err(e) = self.commit(first_change, &touched) {
            for (addr, len, previous) in undo.into_iter().rev() {
                match (self.find(addr, len), previous) {
                    (Ok(at), Some(entry)) => self.entries[at] = entry,
                    (Ok(at), None) => _ = self.entries.remove(at),
                    (Err(at), Some(entry)) => self.entries.insert(at, entry),
                    (Err(_), None) => {}
                }
            }
            return Err(e);
        }
        Ok(removed)
    }

    /// After a failed commit nothing is known of what reached the kernel (the record or some
    /// chunks may hold the change): the next commit writes a fresh record and a fresh table,
    /// even one with nothing to change (a rollback that puts back what the entries already
    /// hold).
    fn forget_kernel(&mut self) {
        self.table = None;
        self.record = None;
        self.dirty = true;
    }

    fn commit_if_dirty(&mut self) -> Result<()> {
        if self.dirty {
            self.commit(0, &[])?;
        }
        Ok(())
    }

    /// Brings the kernel to the entries: the record from `first_change` on, and the chunks the
    /// `touched` prefixes cover (everything when the kernel is not known to match).
    fn commit(&mut self, first_change: usize, touched: &[PrefixV4]) -> Result<()> {
        if self.dirty {
            self.record = None;
            self.table = None;
        }
        if let Err(e) = self
            .commit_record(first_change)
            .and_then(|()| self.commit_table(touched))
        {
            self.forget_kernel();
            return Err(e);
        }
        self.dirty = false;
        Ok(())
    }

    fn commit_table(&mut self, touched: &[PrefixV4]) -> Result<()> {
        // Each prefix touches a chunk at least: many prefixes go straight to a fresh table.
        let in_place = self.table.is_some() && touched.len() <= IN_PLACE_MAX_CHUNKS && {
            let chunks = chunks_of(touched);
            chunks.len() <= IN_PLACE_MAX_CHUNKS && chunks.iter().all(|c| self.rewrite_chunk(*c))
        };
        if !in_place || self.table.as_ref().is_some_and(too_much_garbage) {
            self.build_table()?;
        }
        Ok(())
    }

    fn commit_record(&mut self, first_change: usize) -> Result<()> {
        match &self.record {
            // A record more than twice the size a fresh one would have is made afresh, so a
            // set that shrank gives its memory back.
            Some(record)
                if record.fits(self.entries.len())
                    && record.blocks() <= 2 * record_blocks(self.entries.len()) =>
            {
                record.write(&self.entries, first_change);
                Ok(())
            }
            _ => {
                // A first record (this handle has none: a fresh start, or a restart whose
                // record it read), a bigger one or a smaller one.
                let record =
                    KernelRecord::create(&self.entries).map_err(err(self.name, "create record"))?;
                record
                    .publish(&mut self.outer, range::RECORD)
                    .map_err(err(self.name, "publish record"))?;
                self.published += 1;
                self.record = Some(record);
                Ok(())
            }
        }
    }

    /// Rewrites one chunk in the live table; false when it has no room left.
    fn rewrite_chunk(&mut self, chunk: u32) -> bool {
        let ranges = chunk_ranges(chunk, self.bearing_on(chunk));
        self.table
            .as_mut()
            .is_some_and(|table| table.write_chunk(chunk, &ranges))
    }

    /// The prefixes that bear on `chunk`, in address order: those containing it, then those
    /// inside it.
    fn bearing_on(&self, chunk: u32) -> impl Iterator<Item = (PrefixV4, u32)> + '_ {
        let start = chunk << range::OFFSET_BITS;
        // Shorter first: their first addresses never decrease, so this is address order.
        let containing = (0..=range::DIRECT_BITS as u8).filter_map(move |len| {
            self.find(prefix_of(start, len).0, len)
                .ok()
                .map(|i| self.entries[i])
        });
        let first = self
            .entries
            .partition_point(|e| (e >> 32) < u64::from(start));
        let end = u64::from(start) + u64::from(range::CHUNK);
        let inside = self.entries[first..]
            .iter()
            .copied()
            .take_while(move |e| (e >> 32) < end)
            .filter(|e| record_parts(*e).1 > range::DIRECT_BITS as u8);
        containing.chain(inside).map(entry_parts)
    }

    /// Writes a fresh record and a fresh table from the entries and publishes them (a restarted
    /// daemon does this first: the kernel then holds what it read, whatever an earlier daemon
    /// left half-done, and this handle can write into both).
    pub fn rebuild(&mut self) -> Result<()> {
        self.know()?;
        self.dirty = true;
        self.commit(0, &[])?;
        return_freed_memory();
        Ok(())
    }

    /// Bytes of the table and the record this handle wrote (spare room included).
    pub fn kernel_bytes(&self) -> u64 {
        let table = self.table.as_ref().map_or(0, KernelTable::elements);
        let record = self.record.as_ref().map_or(0, KernelRecord::elements);
        (table + record) as u64 * 8
    }

    /// Builds the table afresh from the entries and publishes it.
    fn build_table(&mut self) -> Result<()> {
        if std::mem::take(&mut self.fail_next_table) {
            return Err(err(self.name, "create table")(MapError::IoError(
                std::io::Error::other("injected fault"),
            )));
        }
        let table = RangeTable::of_sorted(self.entries.iter().map(|e| entry_parts(*e)));
        let kernel = KernelTable::create(&table, spare_blocks(table.blocks()))
            .map_err(err(self.name, "create table"))?;
        kernel
            .publish(&mut self.outer, range::TABLE)
            .map_err(err(self.name, "publish table"))?;
        self.published += 1;
        self.table = Some(kernel);
        Ok(())
    }
}

/// A record entry as a prefix and its rule.
fn entry_parts(entry: u64) -> (PrefixV4, u32) {
    let (addr, len, rule) = record_parts(entry);
    ((addr, len), rule)
}

/// The last change of each prefix (changes sorted by prefix, stably).
fn last_of_each(
    changes: &[(PrefixV4, Option<u32>)],
) -> impl Iterator<Item = &(PrefixV4, Option<u32>)> {
    changes
        .iter()
        .enumerate()
        .filter(|(i, (prefix, _))| changes.get(i + 1).is_none_or(|(next, _)| next != prefix))
        .map(|(_, change)| change)
}

/// A table whose unused ranges outnumber its used ones is built afresh.
fn too_much_garbage(table: &KernelTable) -> bool {
    let (garbage, used) = table.garbage();
    garbage > used.max(range::BLOCK_RANGES)
}

/// The chunks the prefixes cover.
fn chunks_of(prefixes: &[PrefixV4]) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for &(addr, len) in prefixes {
        let (first, last) = (addr, prefix_of(addr, len).1);
        out.extend(first >> range::OFFSET_BITS..=last >> range::OFFSET_BITS);
    }
    out
}

/// The first and last address of the `len`-bit prefix of `addr`.
fn prefix_of(addr: u32, len: u8) -> (u32, u32) {
    let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
    (addr & !host, addr | host)
}

fn err(map: &'static str, op: &'static str) -> impl FnOnce(MapError) -> TrieError {
    move |source| TrieError { map, op, source }
}
