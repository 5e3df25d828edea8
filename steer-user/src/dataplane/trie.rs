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
    /// filled before they are published, all at once; with `parallel`, the tries are filled on
    /// several threads ([`fill_all`]). Returns whether batches were used.
    pub fn insert_many(
        &mut self,
        entries: &[(RawPrefix<N>, u32)],
        batched: bool,
        parallel: bool,
    ) -> Result<bool> {
        let mut by_slot: Vec<Group<N>> = (0..SLOTS).map(|_| Vec::new()).collect();
        for &((len, addr), rule) in entries {
            if self.is_short(len) {
                self.insert((len, addr), rule)?;
            } else {
                by_slot[(self.slot_of)(&addr) as usize]
                    .push((Key::new(len, addr), RuleRef { rule }));
            }
        }
        let mut fresh = Vec::new();
        for (slot, _) in by_slot.iter().enumerate().filter(|(_, g)| !g.is_empty()) {
            if self.slot(slot as u32)?.is_none() {
                fresh.push((slot as u32, self.new_slot_trie()?));
            }
        }
        let mut created = fresh.iter_mut().peekable();
        let targets: Vec<_> = self
            .slots
            .iter_mut()
            .zip(by_slot.iter_mut())
            .enumerate()
            .filter(|(_, (_, group))| !group.is_empty())
            .map(|(slot, (cell, group))| {
                let trie = match cell.get_mut() {
                    Some(open) => open,
                    None => {
                        let (_, trie) = created
                            .next_if(|(s, _)| *s == slot as u32)
                            .expect("created above");
                        trie
                    }
                };
                (trie, group)
            })
            .collect();
        let used_batches =
            fill_all(targets, batched, parallel).map_err(err(self.name, "insert"))?;
        self.publish(fresh)?;
        Ok(used_batches)
    }
}

/// Tries filled at once, at most: each trie has a lock of its own in the kernel, and most of a
/// load's time is the kernel inserting into tries.
const FILLERS: usize = 4;
/// Fewer elements than this are written on one thread (a thread costs more than it saves).
const PARALLEL_MIN: usize = 1 << 16;

/// Writes each group into its trie ([`fill`]); with `parallel`, on one thread per core (up to [`FILLERS`]), each
/// taking tries in turn for about the same number of elements; each group is sorted first, so
/// that consecutive inserts walk the same nodes of the trie. Returns whether batches were used.
fn fill_all<const N: usize>(
    targets: Vec<(&mut Trie<N>, &mut Group<N>)>,
    batched: bool,
    parallel: bool,
) -> std::result::Result<bool, MapError> {
    let total: usize = targets.iter().map(|(_, g)| g.len()).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if total < PARALLEL_MIN || !parallel {
        1
    } else {
        cores.min(FILLERS)
    };
    let mut shares: Vec<Vec<_>> = (0..threads).map(|_| Vec::new()).collect();
    let sizes: Vec<usize> = targets.iter().map(|(_, g)| g.len()).collect();
    for (target, share) in targets.into_iter().zip(share_of(&sizes, threads)) {
        shares[share].push(target);
    }
    let mut shares = shares.into_iter();
    let first = shares.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let others: Vec<_> = shares
            .map(|share| scope.spawn(move || fill_share(share, batched)))
            .collect();
        let mut used = fill_share(first, batched)?;
        for other in others {
            used |= other.join().map_err(|_| {
                MapError::IoError(std::io::Error::other("a thread filling tries panicked"))
            })??;
        }
        Ok(used)
    })
}

/// The share (of `threads`) each of consecutive groups of `sizes` elements goes to: runs of
/// groups of about the same total, in order (a group goes where its middle falls).
fn share_of(sizes: &[usize], threads: usize) -> impl Iterator<Item = usize> {
    let total: usize = sizes.iter().sum::<usize>().max(1);
    sizes.iter().scan(0, move |taken, size| {
        let share = ((*taken + size / 2) * threads / total).min(threads.max(1) - 1);
        *taken += size;
        Some(share)
    })
}

/// Prefixes bound for one slot trie, as the kernel keys them.
type Group<const N: usize> = Vec<(Key<[u8; N]>, RuleRef)>;

/// Fills tries one after the other, each group sorted first (see [`fill_all`]).
fn fill_share<const N: usize>(
    share: Vec<(&mut Trie<N>, &mut Group<N>)>,
    batched: bool,
) -> std::result::Result<bool, MapError> {
    share.into_iter().try_fold(false, |used, (trie, group)| {
        // Stable: a prefix written twice keeps its last rule.
        group.sort_by_key(|(k, _)| (k.data(), k.prefix_len()));
        Ok(fill(trie, group, batched)? | used)
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
    use steer_common::{SLOT_MIN_LEN_V6, map_names, slot_v6};

    use super::*;

    /// `BPF_F_RDONLY_PROG`: a map flag the outer array's template lacks, so the kernel refuses
    /// to publish a trie that has it.
    const BPF_F_RDONLY_PROG: u32 = 1 << 7;

    fn dst_v6(ebpf: &mut aya::Ebpf) -> SplitTrie<16> {
        let mut take = |name| (name, ebpf.take_map(name).expect("map in the object"));
        SplitTrie::new(
            take(map_names::DST_V6),
            take(map_names::DST_V6_SHORT),
            SLOT_MIN_LEN_V6,
            slot_v6,
        )
        .expect("split trie opens")
    }

    #[test]
    fn tries_are_shared_out_in_runs_of_about_the_same_size() {
        let sizes = [10, 10, 10, 10, 30, 5, 5, 20];
        let shares: Vec<usize> = share_of(&sizes, 2).collect();
        assert_eq!(shares, [0, 0, 0, 0, 1, 1, 1, 1]);
        let shares: Vec<usize> = share_of(&sizes, 4).collect();
        assert!(shares.windows(2).all(|w| w[0] <= w[1]), "{shares:?}");
        assert_eq!(shares.last(), Some(&3));
        assert!(share_of(&sizes, 1).all(|s| s == 0));
        assert!(share_of(&[0, 0], 2).all(|s| s == 0));
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
        let mut trie = dst_v6(&mut ebpf);
        // Both prefixes are in slot 10 (`slot_v6`: 0x00 rotated, xor 0x0a).
        let v6 = |third| {
            let mut a = [0u8; 16];
            a[1] = 0x0a;
            a[3] = third;
            (32, a)
        };
        let (net, other) = (v6(1), v6(2));
        assert_eq!(slot_v6(&net.1), 10);
        // Asked before the publish: an answer "no trie here" must not be kept.
        assert!(!trie.remove(net).unwrap());

        let mut live = trie.new_slot_trie().unwrap();
        live.insert(&Key::new(net.0, net.1), RuleRef { rule: 7 }, 0)
            .unwrap();
        let refused =
            Trie::<16>::create(SLOT_TRIE_MAX_ENTRIES, BPF_F_NO_PREALLOC | BPF_F_RDONLY_PROG)
                .expect("a trie the outer array refuses");
        let failed = trie.publish(vec![(10, live), (11, refused)]);
        assert!(failed.is_err(), "the kernel refused the second trie");
        assert_eq!(trie.take_published(), 1, "the first trie went live");
        assert!(trie.slot(11).unwrap().is_none());

        trie.insert(other, 8).unwrap();
        let mut held = trie.dump().unwrap();
        held.sort();
        assert_eq!(held, vec![(net, 7), (other, 8)]);
        assert!(
            trie.remove(net).unwrap(),
            "the live prefix was found and removed"
        );
        assert_eq!(trie.dump().unwrap(), vec![(other, 8)]);
    }
}
