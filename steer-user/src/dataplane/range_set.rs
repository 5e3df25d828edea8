//! A prefix set as the kernel holds it: a range table the classifier reads and a record of the
//! prefixes ([`super::range_map`]), in the two slots of the set's outer array. This module
//! keeps them in step with the prefixes written through it, for either family ([`Family`]:
//! [`V4`], [`V6`]).
//!
//! Every write ends in a *commit*: the record is rewritten from the first entry that changed,
//! and the table is brought to the new set: in the live table when few regions changed and
//! there is room (an IPv4 table chunk by chunk, an IPv6 one by the smallest regions holding
//! the changes; each region swaps with one store), otherwise built afresh and published in one
//! step. Either way a packet sees the set before the write or after it, per region.
//! A fresh handle (a restarted daemon) reads the record before its first write and has no
//! live table to write into: its first commit builds one.

use std::{collections::BTreeSet, sync::Arc};

use aya::maps::{Array, ArrayOfMaps, IterableMap, Map, MapData, MapError};
use steer_common::{
    range::{self, Block, record_entry, record_parts},
    range6,
};

use super::range_map::{KernelRecord, KernelTable, KernelTable6};
use crate::{
    heap::return_freed_memory,
    model::{
        range::{PrefixV4, chunk_ranges, record_blocks, spare_blocks},
        range6::{PrefixV6, RangeTable6, RegionLayout},
    },
};

/// What went wrong, and in which map.
#[derive(Debug)]
pub struct SetError {
    pub map: &'static str,
    pub op: &'static str,
    pub source: MapError,
}

type Result<T> = std::result::Result<T, SetError>;

/// Regions (chunks) a commit rewrites in place at most; past that a fresh table costs less.
const IN_PLACE_MAX_REGIONS: usize = 4096;
/// Changes applied to the entries one by one at most (each may shift the entries after it);
/// more are merged in one pass.
pub(crate) const IN_PLACE_MAX_EDITS: usize = 4;

/// What a commit does with the mappings of the arrays it wrote. Mapping an array maps all its
/// pages at once (and unmapping takes them down): for a million prefixes that was most of a
/// one-prefix edit's time (1.3 ms of 1.5). A few edits in place keep them for the next edit
/// of a burst; anything bigger lets them go, since while mapped all their pages count in the
/// daemon's resident memory (the kernel's pages, already counted there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mapped {
    Kept,
    LetGo,
}

/// A prefix of a family: its address (host bits clear) and length.
pub type PrefixOf<F> = (<F as Family>::Addr, u8);

/// What a range set is made of in one address family.
pub trait Family: Sized + 'static {
    /// An address, as an integer.
    type Addr: Copy + Ord + std::fmt::Debug;
    /// A record entry: a prefix and its value, as `u64`s (sorted as their prefixes).
    type Entry: Copy + Eq;
    /// The live table, as this handle built it.
    type Table;
    fn entry(prefix: (Self::Addr, u8), value: u32) -> Self::Entry;
    fn parts(entry: Self::Entry) -> ((Self::Addr, u8), u32);
    /// The entries as the record's elements.
    fn flat(entries: &[Self::Entry]) -> &[u64];
    /// Entries from the record's elements (a partial entry at the end is dropped).
    fn entries(elements: &[u64]) -> Vec<Self::Entry>;
    /// The direct entry (/16 chunk) of an address.
    fn chunk_of(addr: Self::Addr) -> u32;
    /// The first and last address of the `len`-bit prefix of `addr`.
    fn ends(addr: Self::Addr, len: u8) -> (Self::Addr, Self::Addr);
    /// The first address of a chunk.
    fn chunk_start(chunk: u32) -> Self::Addr;
    /// A fresh table of `entries` in the kernel, with spare room for changes.
    fn build(entries: &[Self::Entry]) -> std::result::Result<Self::Table, MapError>;
    fn publish(
        table: &Self::Table,
        outer: &mut ArrayOfMaps<MapData, Array<MapData, Block>>,
    ) -> std::result::Result<(), MapError>;
    /// `u64` elements of the table's array, spare room included.
    fn elements(table: &Self::Table) -> usize;
    /// The regions of the live table to rewrite for changes of the `touched` prefixes, none
    /// inside another (`None` when there are more than `IN_PLACE_MAX_REGIONS`).
    fn regions(table: &Self::Table, touched: &[(Self::Addr, u8)]) -> Option<Vec<Region<Self>>>;
    /// Rewrites `region` in the live table for the prefixes bearing on it (in address order);
    /// false when there is no room left.
    fn write_region(
        table: &mut Self::Table,
        region: Region<Self>,
        bearing: impl Iterator<Item = ((Self::Addr, u8), u32)>,
    ) -> bool;
    /// Lets go of the table's mapping until the next write.
    fn unmap(table: &mut Self::Table);
    /// Whether the table holds so much that no chunk uses any more that it is built afresh:
    /// more than it uses, and more than a block.
    fn too_much_garbage(table: &Self::Table) -> bool;
}

/// IPv4: a record entry is one `u64` (`range::record_entry`), the table a `range` table.
#[derive(Debug)]
pub struct V4;

impl Family for V4 {
    type Addr = u32;
    type Entry = u64;
    type Table = KernelTable;

    fn entry((addr, len): PrefixV4, value: u32) -> u64 {
        record_entry(addr, len, value)
    }
    fn parts(entry: u64) -> (PrefixV4, u32) {
        let (addr, len, value) = record_parts(entry);
        ((addr, len), value)
    }
    fn flat(entries: &[u64]) -> &[u64] {
        entries
    }
    fn entries(elements: &[u64]) -> Vec<u64> {
        elements.to_vec()
    }
    fn chunk_of(addr: u32) -> u32 {
        addr >> range::OFFSET_BITS
    }
    fn ends(addr: u32, len: u8) -> (u32, u32) {
        let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        (addr & !host, addr | host)
    }
    fn chunk_start(chunk: u32) -> u32 {
        chunk << range::OFFSET_BITS
    }
    fn build(entries: &[u64]) -> std::result::Result<KernelTable, MapError> {
        KernelTable::create_of_sorted(entries.iter().map(|e| V4::parts(*e)))
    }
    fn publish(
        table: &KernelTable,
        outer: &mut ArrayOfMaps<MapData, Array<MapData, Block>>,
    ) -> std::result::Result<(), MapError> {
        table.publish(outer, range::TABLE)
    }
    fn elements(table: &KernelTable) -> usize {
        table.elements()
    }
    /// An IPv4 table is rewritten by whole chunks.
    fn regions(_: &KernelTable, touched: &[PrefixV4]) -> Option<Vec<Region<V4>>> {
        let chunks = chunks_of::<V4>(touched)?;
        Some(chunks.into_iter().map(Region::chunk).collect())
    }
    fn write_region(
        table: &mut KernelTable,
        region: Region<V4>,
        bearing: impl Iterator<Item = (PrefixV4, u32)>,
    ) -> bool {
        let chunk = region.index as u32;
        table.write_chunk(chunk, &chunk_ranges(chunk, bearing))
    }
    fn unmap(table: &mut KernelTable) {
        table.unmap();
    }
    fn too_much_garbage(table: &KernelTable) -> bool {
        let (garbage, used) = table.garbage();
        garbage > used.max(range::BLOCK_RANGES)
    }
}

/// IPv6: a record entry is three `u64`s (the address's halves, then its length and value as
/// IPv4's low half), the table a `range6` table.
#[derive(Debug)]
pub struct V6;

impl Family for V6 {
    type Addr = u128;
    type Entry = [u64; 3];
    type Table = KernelTable6;

    fn entry((addr, len): PrefixV6, value: u32) -> [u64; 3] {
        [
            (addr >> 64) as u64,
            addr as u64,
            record_entry(0, len, value),
        ]
    }
    fn parts([hi, lo, rest]: [u64; 3]) -> (PrefixV6, u32) {
        let (_, len, value) = record_parts(rest);
        ((u128::from(hi) << 64 | u128::from(lo), len), value)
    }
    fn flat(entries: &[[u64; 3]]) -> &[u64] {
        entries.as_flattened()
    }
    fn entries(elements: &[u64]) -> Vec<[u64; 3]> {
        elements
            .chunks_exact(3)
            .map(|e| [e[0], e[1], e[2]])
            .collect()
    }
    fn chunk_of(addr: u128) -> u32 {
        (addr >> (128 - range6::DIRECT_BITS)) as u32
    }
    fn ends(addr: u128, len: u8) -> (u128, u128) {
        let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        (addr & !host, addr | host)
    }
    fn chunk_start(chunk: u32) -> u128 {
        u128::from(chunk) << (128 - range6::DIRECT_BITS)
    }
    fn build(entries: &[[u64; 3]]) -> std::result::Result<KernelTable6, MapError> {
        let table = RangeTable6::of_sorted(entries.iter().map(|e| V6::parts(*e)));
        KernelTable6::create(&table, spare_blocks(table.blocks()))
    }
    fn publish(
        table: &KernelTable6,
        outer: &mut ArrayOfMaps<MapData, Array<MapData, Block>>,
    ) -> std::result::Result<(), MapError> {
        table.publish(outer, range::TABLE)
    }
    fn elements(table: &KernelTable6) -> usize {
        table.elements()
    }
    /// An IPv6 table is rewritten by the smallest regions holding the changes (a prefix
    /// across chunks: each of its chunks).
    fn regions(table: &KernelTable6, touched: &[PrefixV6]) -> Option<Vec<Region<V6>>> {
        let mut regions = Vec::new();
        for &(addr, len) in touched {
            let (first, last) = V6::ends(addr, len);
            match table.locate(first, last) {
                Some(at) => regions.push(Region {
                    prefix: at.region,
                    depth: at.depth,
                    index: at.index,
                }),
                None => regions.extend(
                    chunks_of::<V6>(&[(addr, len)])?
                        .into_iter()
                        .map(Region::chunk),
                ),
            }
            if regions.len() > IN_PLACE_MAX_REGIONS {
                return None;
            }
        }
        // In address order, a region before those inside it: regions are prefixes, so one
        // that starts inside the last kept one lies inside it, and is dropped.
        regions.sort_by_key(|r| r.prefix);
        let mut kept: Vec<Region<V6>> = Vec::with_capacity(regions.len());
        for region in regions {
            let inside = kept
                .last()
                .is_some_and(|outer| region.prefix.0 <= V6::ends(outer.prefix.0, outer.prefix.1).1);
            if !inside {
                kept.push(region);
            }
        }
        Some(kept)
    }
    fn write_region(
        table: &mut KernelTable6,
        region: Region<V6>,
        bearing: impl Iterator<Item = (PrefixV6, u32)>,
    ) -> bool {
        table.write_region(region.index, |origin| {
            RegionLayout::of(region.prefix, region.depth, origin, bearing)
        })
    }
    fn unmap(table: &mut KernelTable6) {
        table.unmap();
    }
    fn too_much_garbage(table: &KernelTable6) -> bool {
        let (garbage, used) = table.garbage();
        garbage > used.max(range::BLOCK as usize)
    }
}

pub struct RangeSet<F: Family> {
    name: &'static str,
    outer: ArrayOfMaps<MapData, Array<MapData, Block>>,
    /// The record's entries, sorted: what the set holds, once `known`. Shared with the
    /// daemon's mirror of the maps ([`RangeSet::shared_entries`]): a change makes a new vector
    /// (or copies this one first), never changes one a reader holds.
    entries: Arc<Vec<F::Entry>>,
    /// Whether `entries` were read from the kernel's record (or written by this handle).
    known: bool,
    /// The live table, when this handle built it.
    table: Option<F::Table>,
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

impl<F: Family> std::fmt::Debug for RangeSet<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeSet")
            .field("name", &self.name)
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl<F: Family> RangeSet<F> {
    /// Opens the set's outer array. Its record is read when a write first needs it: readers
    /// (`steer status`, `dump`, `explain`) read the kernel's record themselves, or not at all.
    pub fn new((name, outer): (&'static str, Map)) -> Result<RangeSet<F>> {
        let outer: ArrayOfMaps<MapData, Array<MapData, Block>> =
            outer.try_into().map_err(err(name, "open"))?;
        Ok(RangeSet {
            name,
            outer,
            known: false,
            dirty: false,
            fail_next_table: false,
            entries: Arc::default(),
            table: None,
            record: None,
            published: 0,
        })
    }

    /// The kernel's record: its entries (none when there is no record yet), or `None` when it
    /// was left half-written.
    fn read_record(&self) -> Result<Option<Vec<F::Entry>>> {
        match self.outer.get(&range::RECORD, 0) {
            Ok(record) => KernelRecord::read(record.map())
                .map(|read| read.map(|elements| F::entries(&elements)))
                .map_err(err(self.name, "read record")),
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
            Some(entries) => self.entries = Arc::new(entries),
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
    pub fn insert(&mut self, prefix: PrefixOf<F>, rule: u32) -> Result<()> {
        self.apply(vec![(prefix, Some(rule))]).map(|_| ())
    }

    /// Removes a prefix; returns whether it was there.
    pub fn remove(&mut self, prefix: PrefixOf<F>) -> Result<bool> {
        self.apply(vec![(prefix, None)]).map(|removed| removed > 0)
    }

    /// Writes many prefixes in one commit (a prefix given twice keeps its last rule).
    pub fn insert_many(&mut self, entries: &[(PrefixOf<F>, u32)]) -> Result<()> {
        self.apply(entries.iter().map(|(p, r)| (*p, Some(*r))).collect())
            .map(|_| ())
    }

    /// Removes many prefixes in one commit; returns how many were there.
    pub fn remove_many(&mut self, mut prefixes: Vec<PrefixOf<F>>) -> Result<usize> {
        if prefixes.len() <= IN_PLACE_MAX_REGIONS {
            return self.apply(prefixes.into_iter().map(|p| (p, None)).collect());
        }
        // Many: one pass over the entries keeps the others, beside nothing but the removed
        // keys themselves (sorted in place), where a merge of changes would take a list of
        // changes, a list of touched prefixes and a merged copy as long as both.
        self.know()?;
        prefixes.sort_unstable();
        prefixes.dedup();
        let walk = || marked_gone::<F>(&self.entries, &prefixes);
        let removed = walk().filter(|(_, gone)| *gone).count();
        let Some(first_change) = walk().position(|(_, gone)| gone) else {
            return self.commit_if_dirty().map(|()| 0);
        };
        let mut kept = Vec::with_capacity(self.entries.len() - removed);
        kept.extend(walk().filter(|(_, gone)| !gone).map(|(e, _)| e));
        let before = std::mem::replace(&mut self.entries, Arc::new(kept));
        // More touched prefixes than regions rewritten in place: the table is built afresh.
        if let Err(e) = self.commit(first_change, &prefixes, Mapped::LetGo) {
            self.entries = before;
            return Err(e);
        }
        drop((before, prefixes));
        return_freed_memory();
        Ok(removed)
    }

    /// What the set holds (read from the kernel's record first unless known), shared: the
    /// daemon's mirror keeps these entries instead of a copy of its own.
    pub fn shared_entries(&mut self) -> Result<Arc<Vec<F::Entry>>> {
        self.know()?;
        Ok(self.entries.clone())
    }

    /// Makes the set hold exactly `entries` (sorted by prefix, each once), kept as they are
    /// shared (no copy), in one commit: the regions that changed are rewritten in place when
    /// few did, else the table is built afresh. Returns how many prefixes changed.
    pub fn assign(&mut self, entries: Arc<Vec<F::Entry>>) -> Result<usize> {
        self.know()?;
        let Differences {
            first,
            touched,
            count,
        } = differences::<F>(&self.entries, &entries);
        let Some(first) = first else {
            return self.commit_if_dirty().map(|()| 0);
        };
        let before = std::mem::replace(&mut self.entries, entries);
        if let Err(e) = self.commit(first, &touched, Mapped::LetGo) {
            self.entries = before;
            return Err(e);
        }
        drop((before, touched));
        return_freed_memory();
        Ok(count)
    }

    /// Gives each of `writes` (sorted by prefix, each once) its rule; every other prefix
    /// stays. Into an empty set, `writes` become its entries as they are (shared, no copy).
    pub fn write_entries(&mut self, writes: Arc<Vec<F::Entry>>) -> Result<()> {
        self.know()?;
        if self.entries.is_empty() {
            return self.assign(writes).map(|_| ());
        }
        if writes.len() <= IN_PLACE_MAX_EDITS {
            let changes = writes.iter().map(|e| {
                let (prefix, rule) = F::parts(*e);
                (prefix, Some(rule))
            });
            return self.apply(changes.collect()).map(|_| ());
        }
        let merged = upserted::<F>(&self.entries, &writes);
        self.assign(Arc::new(merged)).map(|_| ())
    }

    /// Every prefix with its rule, in address order, as the kernel's record holds them.
    pub fn dump(&self) -> Result<Vec<(PrefixOf<F>, u32)>> {
        let entries = self.read_record()?.ok_or_else(|| {
            err(self.name, "read record")(MapError::IoError(std::io::Error::other(
                "the record is being written or was left half-written",
            )))
        })?;
        Ok(entries.into_iter().map(F::parts).collect())
    }

    /// Fault injection for tests: the next fresh table fails to build, after the record was
    /// written (the kernel is then ahead of what the set holds).
    #[doc(hidden)]
    pub fn fail_next_table(&mut self) {
        self.fail_next_table = true;
    }

    /// Where the entry of a prefix is (or would be).
    fn find(&self, prefix: PrefixOf<F>) -> std::result::Result<usize, usize> {
        self.entries
            .binary_search_by_key(&prefix, |e| F::parts(*e).0)
    }

    /// Applies `changes` (a rule, or `None` to remove) to the entries and commits them;
    /// returns how many removals found their prefix.
    fn apply(&mut self, mut changes: Vec<(PrefixOf<F>, Option<u32>)>) -> Result<usize> {
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
        for &(prefix, rule) in last_of_each(&changes) {
            while let Some(e) = old.next_if(|e| F::parts(*e).0 < prefix) {
                merged.push(e);
            }
            let previous = old.next_if(|e| F::parts(*e).0 == prefix);
            let new = rule.map(|r| F::entry(prefix, r));
            if previous == new {
                if let Some(e) = previous {
                    merged.push(e);
                }
                continue;
            }
            removed += usize::from(previous.is_some() && new.is_none());
            first_change.get_or_insert(merged.len());
            merged.extend(new);
            touched.push(prefix);
        }
        merged.extend(old);
        let Some(first_change) = first_change else {
            return self.commit_if_dirty().map(|()| 0);
        };
        let before = std::mem::replace(&mut self.entries, Arc::new(merged));
        if let Err(e) = self.commit(first_change, &touched, Mapped::LetGo) {
            self.entries = before;
            return Err(e);
        }
        drop((before, changes, touched));
        return_freed_memory();
        Ok(removed)
    }

    /// [`RangeSet::apply`] for a few changes: each goes into the entries where it belongs,
    /// shifting those after it, instead of a merged copy of the whole set.
    fn apply_in_place(&mut self, changes: &[(PrefixOf<F>, Option<u32>)]) -> Result<usize> {
        let mut undo = Vec::new();
        let mut removed = 0;
        let mut touched = Vec::new();
        for &(prefix, rule) in last_of_each(changes) {
            let new = rule.map(|r| F::entry(prefix, r));
            let (at, previous) = match self.find(prefix) {
                Ok(at) if new == Some(self.entries[at]) => continue,
                Ok(at) => (at, Some(self.entries[at])),
                Err(_) if new.is_none() => continue,
                Err(at) => (at, None),
            };
            let entries = Arc::make_mut(&mut self.entries);
            match new {
                Some(entry) if previous.is_some() => entries[at] = entry,
                Some(entry) => entries.insert(at, entry),
                None => {
                    entries.remove(at);
                    removed += 1;
                }
            }
            undo.push((prefix, previous));
            touched.push(prefix);
        }
        let Some(first_change) = touched
            .iter()
            .map(|p| self.find(*p).unwrap_or_else(|at| at))
            .min()
        else {
            return self.commit_if_dirty().map(|()| 0);
        };
        if let Err(e) = self.commit(first_change, &touched, Mapped::Kept) {
            for (prefix, previous) in undo.into_iter().rev() {
                let at = self.find(prefix);
                let entries = Arc::make_mut(&mut self.entries);
                match (at, previous) {
                    (Ok(at), Some(entry)) => entries[at] = entry,
                    (Ok(at), None) => _ = entries.remove(at),
                    (Err(at), Some(entry)) => entries.insert(at, entry),
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

    /// Lets go of the table's and the record's mappings: the next write maps them again.
    /// Those a few in-place edits left mapped go on the daemon's periodic tick.
    pub fn unmap(&mut self) {
        if let Some(table) = self.table.as_mut() {
            F::unmap(table);
        }
        if let Some(record) = self.record.as_mut() {
            record.unmap();
        }
    }

    fn commit_if_dirty(&mut self) -> Result<()> {
        if self.dirty {
            self.commit(0, &[], Mapped::LetGo)?;
        }
        Ok(())
    }

    /// Brings the kernel to the entries: the record from `first_change` on, and the chunks the
    /// `touched` prefixes cover (everything when the kernel is not known to match).
    fn commit(
        &mut self,
        first_change: usize,
        touched: &[PrefixOf<F>],
        mapped: Mapped,
    ) -> Result<()> {
        if self.dirty {
            self.record = None;
            self.table = None;
        }
        if let Err(e) = self
            .commit_record(first_change, mapped)
            .and_then(|()| self.commit_table(touched))
        {
            self.forget_kernel();
            return Err(e);
        }
        self.dirty = false;
        if mapped == Mapped::LetGo {
            self.unmap();
        }
        Ok(())
    }

    fn commit_table(&mut self, touched: &[PrefixOf<F>]) -> Result<()> {
        // Each prefix touches a region at least: many prefixes go straight to a fresh table.
        let regions = match &self.table {
            Some(table) if touched.len() <= IN_PLACE_MAX_REGIONS => F::regions(table, touched),
            _ => None,
        };
        let in_place = regions.is_some_and(|regions| {
            regions
                .into_iter()
                .all(|region| self.rewrite_region(region))
        });
        if !in_place || self.table.as_ref().is_some_and(F::too_much_garbage) {
            self.build_table()?;
        }
        Ok(())
    }

    /// Rewrites one region in the live table; false when it has no room left.
    fn rewrite_region(&mut self, region: Region<F>) -> bool {
        let bearing: Vec<_> = self.bearing_on(region.prefix).collect();
        self.table
            .as_mut()
            .is_some_and(|table| F::write_region(table, region, bearing.into_iter()))
    }

    /// The prefixes that bear on `region`, in address order: those containing it, then those
    /// inside it.
    fn bearing_on(
        &self,
        (start, len): PrefixOf<F>,
    ) -> impl Iterator<Item = (PrefixOf<F>, u32)> + '_ {
        let last = F::ends(start, len).1;
        // Shorter first: their first addresses never decrease, so this is address order.
        let containing = (0..=len).filter_map(move |l| {
            self.find((F::ends(start, l).0, l))
                .ok()
                .map(|i| self.entries[i])
        });
        let first = self
            .entries
            .partition_point(|e| F::parts(*e).0 < (start, len));
        let inside = self.entries[first..]
            .iter()
            .copied()
            .take_while(move |e| F::parts(*e).0.0 <= last)
            .filter(move |e| F::parts(*e).0.1 > len);
        containing.chain(inside).map(F::parts)
    }

    /// Writes the record from `first_change` on, then, unless a few edits keep it
    /// ([`Mapped`]), lets go of its mapping before the table is built (both mapped at once
    /// counted twice in the daemon's memory at the peak).
    fn commit_record(&mut self, first_change: usize, mapped: Mapped) -> Result<()> {
        self.write_record(first_change)?;
        if mapped == Mapped::LetGo
            && let Some(record) = self.record.as_mut()
        {
            record.unmap();
        }
        Ok(())
    }

    fn write_record(&mut self, first_change: usize) -> Result<()> {
        let elements = F::flat(self.entries.as_slice());
        let width = size_of::<F::Entry>() / size_of::<u64>();
        match &self.record {
            // A record more than twice the size a fresh one would have is made afresh, so a
            // set that shrank gives its memory back.
            Some(record)
                if record.fits(elements.len())
                    && record.blocks() <= 2 * record_blocks(elements.len()) =>
            {
                record
                    .write(elements, first_change * width)
                    .map_err(err(self.name, "write record"))
            }
            _ => {
                // A first record (this handle has none: a fresh start, or a restart whose
                // record it read), a bigger one or a smaller one.
                let record =
                    KernelRecord::create(elements).map_err(err(self.name, "create record"))?;
                record
                    .publish(&mut self.outer, range::RECORD)
                    .map_err(err(self.name, "publish record"))?;
                self.published += 1;
                self.record = Some(record);
                Ok(())
            }
        }
    }

    /// Writes a fresh record and a fresh table from the entries and publishes them (a restarted
    /// daemon does this first: the kernel then holds what it read, whatever an earlier daemon
    /// left half-done, and this handle can write into both).
    pub fn rebuild(&mut self) -> Result<()> {
        self.know()?;
        // A set that never held a prefix has no record: there is nothing to adopt, and a
        // fresh start would allocate nothing for it either.
        let never_written = matches!(
            self.outer.get(&range::RECORD, 0),
            Err(MapError::KeyNotFound)
        );
        if never_written && self.entries.is_empty() && !self.dirty {
            return Ok(());
        }
        self.dirty = true;
        self.commit(0, &[], Mapped::LetGo)?;
        return_freed_memory();
        Ok(())
    }

    /// Bytes of the table and the record this handle wrote (spare room included).
    pub fn kernel_bytes(&self) -> u64 {
        let table = self.table.as_ref().map_or(0, F::elements);
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
        let kernel = F::build(&self.entries).map_err(err(self.name, "create table"))?;
        F::publish(&kernel, &mut self.outer).map_err(err(self.name, "publish table"))?;
        self.published += 1;
        self.table = Some(kernel);
        Ok(())
    }
}

/// Where two sets of entries (each sorted by prefix, each prefix once) differ.
struct Differences<F: Family> {
    /// The index in the new entries of the first one that differs (`None`: none does).
    first: Option<usize>,
    /// The prefixes that differ, in order; past `IN_PLACE_MAX_REGIONS` no more are kept (a
    /// change that big builds a fresh table, whatever the rest are).
    touched: Vec<PrefixOf<F>>,
    /// How many prefixes differ.
    count: usize,
}

/// Where `new` differs from `old`: in one pass over both.
fn differences<F: Family>(old: &[F::Entry], new: &[F::Entry]) -> Differences<F> {
    let (mut i, mut j) = (0, 0);
    let mut out = Differences {
        first: None,
        touched: Vec::new(),
        count: 0,
    };
    loop {
        let (a, b) = (old.get(i).copied(), new.get(j).copied());
        if a == b && a.is_some() {
            (i, j) = (i + 1, j + 1);
            continue;
        }
        // The new entries are the same up to here.
        let at = j;
        let prefix = match (a.map(|e| F::parts(e).0), b.map(|e| F::parts(e).0)) {
            (None, None) => return out,
            // The rule changed.
            (Some(x), Some(y)) if x == y => {
                (i, j) = (i + 1, j + 1);
                x
            }
            // Gone.
            (Some(x), Some(y)) if x < y => {
                i += 1;
                x
            }
            (Some(x), None) => {
                i += 1;
                x
            }
            // New.
            (_, Some(y)) => {
                j += 1;
                y
            }
        };
        out.first.get_or_insert(at);
        out.count += 1;
        if out.touched.len() <= IN_PLACE_MAX_REGIONS {
            out.touched.push(prefix);
        }
    }
}

/// Each of `entries` (sorted) with whether its prefix is in `gone` (sorted): one merge walk.
fn marked_gone<'a, F: Family>(
    entries: &'a [F::Entry],
    gone: &'a [PrefixOf<F>],
) -> impl Iterator<Item = (F::Entry, bool)> + 'a {
    let mut next = 0;
    entries.iter().map(move |e| {
        let prefix = F::parts(*e).0;
        while next < gone.len() && gone[next] < prefix {
            next += 1;
        }
        (*e, gone.get(next) == Some(&prefix))
    })
}

/// `entries` with each of `writes` (both sorted by prefix, each prefix once) in its place:
/// a write replaces the entry of its prefix.
fn upserted<F: Family>(entries: &[F::Entry], writes: &[F::Entry]) -> Vec<F::Entry> {
    let mut out = Vec::with_capacity(entries.len() + writes.len());
    let mut rest = entries;
    for w in writes {
        let key = F::parts(*w).0;
        let at = rest.partition_point(|e| F::parts(*e).0 < key);
        out.extend_from_slice(&rest[..at]);
        rest = &rest[at..];
        if rest.first().is_some_and(|e| F::parts(*e).0 == key) {
            rest = &rest[1..];
        }
        out.push(*w);
    }
    out.extend_from_slice(rest);
    out
}

/// The last change of each prefix (changes sorted by prefix, stably).
fn last_of_each<P: PartialEq>(
    changes: &[(P, Option<u32>)],
) -> impl Iterator<Item = &(P, Option<u32>)> {
    changes
        .iter()
        .enumerate()
        .filter(|(i, (prefix, _))| changes.get(i + 1).is_none_or(|(next, _)| next != prefix))
        .map(|(_, change)| change)
}

/// The chunks the prefixes cover (`None` when more than `IN_PLACE_MAX_REGIONS`).
fn chunks_of<F: Family>(prefixes: &[PrefixOf<F>]) -> Option<BTreeSet<u32>> {
    let mut out = BTreeSet::new();
    for &(addr, len) in prefixes {
        let (first, last) = F::ends(addr, len);
        let (first, last) = (F::chunk_of(first), F::chunk_of(last));
        if (last - first) as usize >= IN_PLACE_MAX_REGIONS {
            return None;
        }
        out.extend(first..=last);
        if out.len() > IN_PLACE_MAX_REGIONS {
            return None;
        }
    }
    Some(out)
}

/// A region of a live table that a change rewrites: a prefix, with where its entry is.
#[derive(Debug)]
pub struct Region<F: Family> {
    pub prefix: PrefixOf<F>,
    /// Splits above its entry (an IPv4 chunk, or an IPv6 direct entry: none).
    pub depth: u32,
    /// The element of its entry.
    pub index: usize,
}

impl<F: Family> Region<F> {
    /// The region of a whole chunk: its direct entry.
    fn chunk(chunk: u32) -> Region<F> {
        Region {
            prefix: (F::chunk_start(chunk), range::DIRECT_BITS as u8),
            depth: 0,
            index: chunk as usize,
        }
    }
}

fn err(map: &'static str, op: &'static str) -> impl FnOnce(MapError) -> SetError {
    move |source| SetError { map, op, source }
}
