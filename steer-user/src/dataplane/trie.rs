//! A split prefix set as the kernel reads it: an array of LPM tries indexed by the first bits of
//! the address, plus one LPM trie for prefixes shorter than those bits (see
//! `steer_common::SLOTS`). This module hides the split: callers insert, remove and dump
//! prefixes of one family (lookups are the classifier's: `steer explain` runs the real one).
//!
//! Publishing a slot trie in the outer array makes the kernel wait for an RCU grace period
//! (every update of a map-in-map does), so new slot tries are filled first and then published
//! together in one batched update: one wait per load, not one per slot.

use std::{
    cell::OnceCell,
    os::fd::{AsFd, AsRawFd, OwnedFd},
};

use aya::maps::{
    ArrayOfMaps, IterableMap, Map, MapData, MapError,
    lpm_trie::{Key, LpmTrie},
};
use steer_common::{RuleRef, SLOT_TRIE_MAX_ENTRIES, SLOTS};

use super::sys;

/// `BPF_F_NO_PREALLOC`: the kernel refuses LPM tries without it.
const BPF_F_NO_PREALLOC: u32 = 1;
/// Elements per batched syscall.
const BATCH: usize = 16 * 1024;

/// The LPM trie of one slot (or of the short prefixes), keyed by an `N`-byte address.
pub type Trie<const N: usize> = LpmTrie<MapData, [u8; N], RuleRef>;

/// A map taken out of the loaded object (or opened from its pin), with its name.
pub type NamedMap = (&'static str, Map);

/// A prefix as the kernel keys it: length in bits and the address bytes (network order).
pub type RawPrefix<const N: usize> = (u32, [u8; N]);

pub struct SplitTrie<const N: usize> {
    name: &'static str,
    short_name: &'static str,
    /// Prefixes shorter than this go to the short trie.
    slot_min_len: u32,
    slot_of: fn(&[u8; N]) -> u32,
    outer: ArrayOfMaps<MapData, Trie<N>>,
    /// A second descriptor of `outer` for batched reads (aya does not expose its own).
    outer_fd: OwnedFd,
    short: Trie<N>,
    /// Handles on the slot tries, opened on first use. Only tries are kept, never the absence
    /// of one: a publish that failed half-way may have made tries live that this process did
    /// not record, and the next look at such a slot must find them in the kernel.
    slots: Vec<OnceCell<Trie<N>>>,
    /// Outer-array writes not yet reported by `take_published`.
    published: u64,
}

impl<const N: usize> std::fmt::Debug for SplitTrie<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitTrie")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What went wrong, and in which map.
#[derive(Debug)]
pub struct TrieError {
    pub map: &'static str,
    pub op: &'static str,
    pub source: MapError,
}

type Result<T> = std::result::Result<T, TrieError>;

impl<const N: usize> SplitTrie<N> {
    pub fn new(
        (name, outer): NamedMap,
        (short_name, short): NamedMap,
        slot_min_len: u32,
        slot_of: fn(&[u8; N]) -> u32,
    ) -> Result<Self> {
        let outer_fd = match &outer {
            Map::ArrayOfMaps(data) => data.fd().as_fd().try_clone_to_owned(),
            _ => Err(std::io::Error::other("not an array of maps")),
        }
        .map_err(|e| err(name, "open")(MapError::IoError(e)))?;
        let outer: ArrayOfMaps<MapData, Trie<N>> = outer.try_into().map_err(err(name, "open"))?;
        let short: Trie<N> = short.try_into().map_err(err(short_name, "open"))?;
        let slots = (0..SLOTS).map(|_| OnceCell::new()).collect();
        Ok(SplitTrie {
            name,
            short_name,
            slot_min_len,
            slot_of,
            outer,
            outer_fd,
            short,
            slots,
            published: 0,
        })
    }

    /// The trie of `slot`, if it has one.
    fn slot(&self, slot: u32) -> Result<Option<&Trie<N>>> {
        let cell = &self.slots[slot as usize];
        if let Some(open) = cell.get() {
            return Ok(Some(open));
        }
        match self.outer.get(&slot, 0) {
            Ok(trie) => Ok(Some(cell.get_or_init(|| trie))),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(err(self.name, "open slot")(e)),
        }
    }

    /// The trie of `slot`, created and published in the outer array if it has none. An empty
    /// published trie changes no lookup (it misses, and the short trie answers as before).
    fn slot_mut(&mut self, slot: u32) -> Result<&mut Trie<N>> {
        if self.slot(slot)?.is_none() {
            let trie = self.new_slot_trie()?;
            self.publish(vec![(slot, trie)])?;
        }
        Ok(self.slots[slot as usize]
            .get_mut()
            .expect("opened or published above"))
    }

    fn new_slot_trie(&self) -> Result<Trie<N>> {
        Trie::<N>::create(SLOT_TRIE_MAX_ENTRIES, BPF_F_NO_PREALLOC)
            .map_err(err(self.name, "create slot trie"))
    }

    /// Makes filled slot tries visible to the classifier: one batched update of the outer array
    /// (one RCU wait), or one update per slot where the kernel has no batches for it. On failure
    /// the tries written before it stay live, and are recorded as such.
    fn publish(&mut self, new: Vec<(u32, Trie<N>)>) -> Result<()> {
        if new.is_empty() {
            return Ok(());
        }
        let keys: Vec<u32> = new.iter().map(|(slot, _)| *slot).collect();
        let fds: Vec<u32> = new
            .iter()
            .map(|(_, t)| t.map().fd().as_fd().as_raw_fd() as u32)
            .collect();
        // SAFETY: an array of maps has u32 keys (the slot) and u32 values (a map fd on write).
        let (written, result) = match unsafe { sys::update(self.outer_fd.as_fd(), &keys, &fds) } {
            Ok(()) => (new.len(), Ok(())),
            Err((0, e)) if sys::is_unsupported(&e) => self.publish_each(&new),
            Err((written, e)) => (
                written,
                Err(err(self.name, "publish slot tries")(MapError::IoError(e))),
            ),
        };
        self.published += written as u64;
        for (slot, trie) in new.into_iter().take(written) {
            self.slots[slot as usize] = OnceCell::from(trie);
        }
        result
    }

    /// One outer-array update per slot; returns how many were written.
    fn publish_each(&mut self, new: &[(u32, Trie<N>)]) -> (usize, Result<()>) {
        for (written, (slot, trie)) in new.iter().enumerate() {
            if let Err(e) = self.outer.set(*slot, trie, 0) {
                return (written, Err(err(self.name, "publish slot trie")(e)));
            }
        }
        (new.len(), Ok(()))
    }

    /// Slot tries published in the outer array since the last call (kernel writes the caller
    /// counts along with the prefixes).
    pub fn take_published(&mut self) -> u64 {
        std::mem::take(&mut self.published)
    }

    fn is_short(&self, len: u32) -> bool {
        len < self.slot_min_len
    }

    /// Maps a prefix to `rule` (insert or overwrite).
    pub fn insert(&mut self, (len, addr): RawPrefix<N>, rule: u32) -> Result<()> {
        let key = Key::new(len, addr);
        let value = RuleRef { rule };
        if self.is_short(len) {
            return self
                .short
                .insert(&key, value, 0)
                .map_err(err(self.short_name, "insert"));
        }
        let name = self.name;
        let slot = (self.slot_of)(&addr);
        self.slot_mut(slot)?
            .insert(&key, value, 0)
            .map_err(err(name, "insert"))
    }

    /// Removes a prefix; returns whether it was there.
    pub fn remove(&mut self, (len, addr): RawPrefix<N>) -> Result<bool> {
        let key = Key::new(len, addr);
        let (result, name) = if self.is_short(len) {
            (self.short.remove(&key), self.short_name)
        } else {
            let name = self.name;
            match self.slots_get_mut((self.slot_of)(&addr))? {
                Some(trie) => (trie.remove(&key), name),
                None => return Ok(false),
            }
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(err(name, "remove")(e)),
        }
    }

    fn slots_get_mut(&mut self, slot: u32) -> Result<Option<&mut Trie<N>>> {
        self.slot(slot)?;
        Ok(self.slots[slot as usize].get_mut())
    }

    /// Every prefix that can contain `addr`, with its rule: the contents of the short trie and
    /// of the address's slot trie (the caller keeps those that do).
    pub fn candidates(&self, addr: [u8; N]) -> Result<Vec<(RawPrefix<N>, u32)>> {
        let mut out = dump_trie(&self.short).map_err(err(self.short_name, "dump"))?;
        if let Some(trie) = self.slot((self.slot_of)(&addr))? {
            out.extend(dump_trie(trie).map_err(err(self.name, "dump"))?);
        }
        Ok(out)
    }

    /// Every prefix with its rule, in no particular order.
    pub fn dump(&self) -> Result<Vec<(RawPrefix<N>, u32)>> {
        let mut out = dump_trie(&self.short).map_err(err(self.short_name, "dump"))?;
        for trie in self.slot_tries()? {
            out.extend(dump_trie(trie).map_err(err(self.name, "dump"))?);
        }
        Ok(out)
    }

    /// The slot tries there are: one batched read of the outer array where the kernel can
    /// (empty slots are skipped; used ones answer the map id of their trie), one lookup per
    /// slot otherwise.
    fn slot_tries(&self) -> Result<Vec<&Trie<N>>> {
        // SAFETY: an array of maps reads back u32 keys (the slot) and u32 values (a map id).
        match unsafe { sys::lookup_all::<u32, u32>(self.outer_fd.as_fd(), self.slots.len()) } {
            Ok(used) => used
                .into_iter()
                .map(|(slot, id)| self.slot_by_id(slot, id))
                .collect(),
            Err(e) if sys::is_unsupported(&e) => (0..SLOTS)
                .filter_map(|slot| self.slot(slot).transpose())
                .collect(),
            Err(e) => Err(err(self.name, "list slots")(MapError::IoError(e))),
        }
    }

    /// The trie of a used `slot`, opened from the map id the outer array answered for it
    /// unless it is open already.
    fn slot_by_id(&self, slot: u32, id: u32) -> Result<&Trie<N>> {
        let cell = &self.slots[slot as usize];
        if let Some(open) = cell.get() {
            return Ok(open);
        }
        let trie = MapData::from_id(id)
            .and_then(Map::from_map_data)
            .and_then(Trie::<N>::try_from)
            .map_err(err(self.name, "open slot"))?;
        Ok(cell.get_or_init(|| trie))
    }

    /// Writes many prefixes, one `BPF_MAP_UPDATE_BATCH` per slot trie and chunk when `batched`
    /// and the kernel supports it, per element otherwise. Slot tries that do not exist yet are
    /// filled before they are published, all at once. With `parallel`, a large write fills the
    /// slot tries on several threads: each trie has its own lock in the kernel, and the
    /// kernel's insert (an allocation and a walk per prefix) is the whole cost of a load.
    /// Returns whether batches were used.
    pub fn insert_many(
        &mut self,
        entries: &[(RawPrefix<N>, u32)],
        batched: bool,
        parallel: bool,
    ) -> Result<bool> {
        let mut by_slot: Vec<Vec<(Key<[u8; N]>, RuleRef)>> =
            (0..SLOTS).map(|_| Vec::new()).collect();
        for &((len, addr), rule) in entries {
            if self.is_short(len) {
                self.insert((len, addr), rule)?;
            } else {
                by_slot[(self.slot_of)(&addr) as usize]
                    .push((Key::new(len, addr), RuleRef { rule }));
            }
        }
        let mut fresh = Vec::new();
        for (slot, group) in by_slot.iter().enumerate() {
            if !group.is_empty() && self.slot(slot as u32)?.is_none() {
                fresh.push((slot as u32, self.new_slot_trie()?));
            }
        }
        let mut work: Vec<Fill<'_, N>> = self
            .slots
            .iter_mut()
            .zip(&by_slot)
            .filter_map(|(cell, group)| Some((cell.get_mut()?, group.as_slice())))
            .filter(|(_, group)| !group.is_empty())
            .collect();
        work.extend(
            fresh
                .iter_mut()
                .map(|(slot, trie)| (trie, by_slot[*slot as usize].as_slice())),
        );
        let used_batches = fill_all(work, batched, parallel).map_err(err(self.name, "insert"))?;
        self.publish(fresh)?;
        Ok(used_batches)
    }
}

/// One trie and the prefixes to write into it.
type Fill<'a, const N: usize> = (&'a mut Trie<N>, &'a [(Key<[u8; N]>, RuleRef)]);

/// Below this many prefixes one thread fills every trie (a thread costs more than it saves).
const PARALLEL_FROM: usize = 32 * 1024;

/// Fills each trie with its group; with `parallel`, on as many threads as the machine has (up
/// to four), each taking about the same number of prefixes. Returns whether batches were used.
fn fill_all<const N: usize>(
    mut work: Vec<Fill<'_, N>>,
    batched: bool,
    parallel: bool,
) -> std::result::Result<bool, MapError> {
    let total: usize = work.iter().map(|(_, g)| g.len()).sum();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    if !parallel || total < PARALLEL_FROM || threads == 1 {
        let mut used = false;
        for (trie, group) in work {
            used |= fill(trie, group, batched)?;
        }
        return Ok(used);
    }
    // Largest groups first, each to the least loaded thread.
    work.sort_by_key(|(_, g)| std::cmp::Reverse(g.len()));
    let mut shares: Vec<(usize, Vec<Fill<'_, N>>)> =
        (0..threads).map(|_| (0, Vec::new())).collect();
    for item in work {
        let least = shares
            .iter_mut()
            .min_by_key(|(load, _)| *load)
            .expect("at least one thread");
        least.0 += item.1.len();
        least.1.push(item);
    }
    std::thread::scope(|scope| {
        let running: Vec<_> = shares
            .into_iter()
            .map(|(_, share)| {
                scope.spawn(move || -> std::result::Result<bool, MapError> {
                    let mut used = false;
                    for (trie, group) in share {
                        used |= fill(trie, group, batched)?;
                    }
                    Ok(used)
                })
            })
            .collect();
        let mut used = false;
        for thread in running {
            used |= thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        }
        Ok(used)
    })
}

/// Writes `group` into one trie; returns whether batches were used.
fn fill<const N: usize>(
    trie: &mut Trie<N>,
    group: &[(Key<[u8; N]>, RuleRef)],
    batched: bool,
) -> std::result::Result<bool, MapError> {
    if batched {
        let fd = trie.map().fd().as_fd();
        let mut supported = true;
        for chunk in group.chunks(BATCH) {
            let (keys, values): (Vec<_>, Vec<_>) = chunk.iter().copied().unzip();
            // SAFETY: aya's lpm_trie::Key<[u8; N]> is the kernel's packed LPM key of a slot trie
            // (prefix length, then N address bytes), and RuleRef its value.
            match unsafe { sys::update::<Key<[u8; N]>, RuleRef>(fd, &keys, &values) } {
                Ok(()) => {}
                Err((0, e)) if sys::is_unsupported(&e) => {
                    supported = false;
                    break;
                }
                Err((_, e)) => return Err(MapError::IoError(e)),
            }
        }
        if supported {
            return Ok(true);
        }
    }
    for (key, value) in group {
        trie.insert(key, value, 0)?;
    }
    Ok(false)
}

fn dump_trie<const N: usize>(
    trie: &Trie<N>,
) -> std::result::Result<Vec<(RawPrefix<N>, u32)>, MapError> {
    // SAFETY: as in `fill`, the trie's key and value.
    match unsafe { sys::lookup_all::<Key<[u8; N]>, RuleRef>(trie.map().fd().as_fd(), BATCH) } {
        Ok(raw) => Ok(raw
            .into_iter()
            .map(|(k, v)| ((k.prefix_len(), k.data()), v.rule))
            .collect()),
        Err(e) if sys::is_unsupported(&e) => trie
            .iter()
            .map(|kv| kv.map(|(k, v)| ((k.prefix_len(), k.data()), v.rule)))
            .collect(),
        Err(e) => Err(MapError::IoError(e)),
    }
}

fn is_not_found(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound | MapError::ElementNotFound => true,
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

fn err(map: &'static str, op: &'static str) -> impl FnOnce(MapError) -> TrieError {
    move |source| TrieError { map, op, source }
}

#[cfg(test)]
mod tests {
    use steer_common::{SLOT_MIN_LEN_V4, map_names, slot_v4};

    use super::*;

    /// `BPF_F_RDONLY_PROG`: a map flag the outer array's template lacks, so the kernel refuses
    /// to publish a trie that has it.
    const BPF_F_RDONLY_PROG: u32 = 1 << 7;

    fn dst_v4(ebpf: &mut aya::Ebpf) -> SplitTrie<4> {
        let mut take = |name| (name, ebpf.take_map(name).expect("map in the object"));
        SplitTrie::new(
            take(map_names::DST_V4),
            take(map_names::DST_V4_SHORT),
            SLOT_MIN_LEN_V4,
            slot_v4,
        )
        .expect("split trie opens")
    }

    /// A batched publish that the kernel fails part-way leaves the tries before the failure
    /// live: later removals must find their prefixes, and later inserts must add to them.
    #[test]
    #[cfg_attr(
        not(feature = "privileged-tests"),
        ignore = "needs root: `cargo xtask test` runs it"
    )]
    fn a_publish_that_fails_part_way_keeps_track_of_what_went_live() {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "this test creates BPF maps: run it as root");
        let mut ebpf = aya::EbpfLoader::new()
            .load(crate::objects::STEER)
            .expect("steer object loads");
        let mut trie = dst_v4(&mut ebpf);
        let net = (16, [10, 1, 0, 0]);
        // Asked before the publish: an answer "no trie here" must not be kept.
        assert!(!trie.remove(net).unwrap());

        let mut live = trie.new_slot_trie().unwrap();
        live.insert(&Key::new(net.0, net.1), RuleRef { rule: 7 }, 0)
            .unwrap();
        let refused =
            Trie::<4>::create(SLOT_TRIE_MAX_ENTRIES, BPF_F_NO_PREALLOC | BPF_F_RDONLY_PROG)
                .expect("a trie the outer array refuses");
        let failed = trie.publish(vec![(10, live), (11, refused)]);
        assert!(failed.is_err(), "the kernel refused the second trie");
        assert_eq!(trie.take_published(), 1, "the first trie went live");
        assert!(trie.slot(11).unwrap().is_none());

        trie.insert((16, [10, 2, 0, 0]), 8).unwrap();
        let mut held = trie.dump().unwrap();
        held.sort();
        assert_eq!(held, vec![(net, 7), ((16, [10, 2, 0, 0]), 8)]);
        assert!(
            trie.remove(net).unwrap(),
            "the live prefix was found and removed"
        );
        assert_eq!(trie.dump().unwrap(), vec![((16, [10, 2, 0, 0]), 8)]);
    }
}
