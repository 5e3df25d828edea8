//! Reconciling the kernel maps with a desired state, writing only the difference, in an order
//! that never lets a packet fall through a gap:
//!
//! 1. capacity is checked before the first write: the prefixes each map may hold, and the
//!    kernel memory of them all at the peak of the change (`general.max_memory`: what the
//!    kernel holds now and what the change builds beside it, see [`check_memory`]);
//! 2. the settings are widened: source lookups are switched on before the first source prefix
//!    of a family lands (a superset of the flags only costs a lookup);
//! 3. rules that are new get their policy in the live generation (no prefix points at them
//!    yet);
//! 4. prefixes are added and changed (one commit per range set), and the ordered rules'
//!    condition maps are written into the bank the classifier does not read, which then goes
//!    live with one word (new ordered rules already have their policy; removed ones keep
//!    theirs until step 7, like removed prefix sets);
//! 5. the scratch generation (the one live before the last flip) is brought to the desired
//!    policy table (rules being removed keep their old verdict there, since their prefixes are
//!    still in the maps) and the generation word flips: every packet sees either the old table
//!    or the new one; the precomputed standbys are dropped at the start (the controller
//!    rebuilds them for the new state, see [`super::generations`]);
//! 6. prefixes are removed;
//! 7. removed rules are cleared;
//! 8. the WAN names `steer dump` shows are written (a slot that changes hands starts its
//!    counters from zero), and the settings narrowed to what the maps now hold.
//!
//! The settings flags of the learned hosts (`HAS_LEARNED_V4`/`V6`) are not the sync's: the DNS
//! learner keeps them with the hosts it writes (`controller::dns`), and every settings write
//! here leaves them as they are ([`SYNC_FLAGS`]).
//!
//! A failure before the flip undoes every write made so far (the previous state is restored);
//! a failure after it is retried where that makes sense, and what could not be completed is
//! reported as [`SyncError::Incomplete`]: the new state is live and the caller must treat it so.
//!
//! This module is the only place that knows the order. Callers hand it a [`MapContents`]
//! (what the maps should hold) and get a [`SyncReport`] or a [`SyncError`].
//!
//! A change of prefixes alone (a list file edited, the configuration otherwise the same) goes
//! through [`sync_prefixes`] with a [`Diff::of_changes`]: the same steps without the policy
//! table (it does not change, so there is no flip): capacity, widened settings, additions,
//! removals, narrowed settings. Its diff comes from the change itself, so its cost follows the
//! change, not the size of the sets.

use std::collections::{BTreeMap, HashSet};

use steer_common::{MAX_RULES, MAX_WANS, Settings, WanInfo, name_to_bytes, settings_flags};

use super::{
    DataplaneError, Maps, maps::WanName, ordered::Resolved, range_set::IN_PLACE_MAX_EDITS,
};
use crate::{
    memory_limit::{self, MemoryLimit},
    model::{
        Capacity, CondTables, Direction, PolicyTable, PrefixMap, PrefixRules, PrefixSets,
        footprint::{Bytes, Footprint},
        range,
        sorted::SortedPrefixes,
    },
    prefix::Prefix,
};

/// Everything steer wants the maps to hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapContents {
    pub prefixes: PrefixSets,
    pub table: PolicyTable,
    /// WAN names by slot, for `steer dump` and per-WAN counters.
    pub wans: BTreeMap<u32, WanName>,
    /// How many prefixes each map may hold.
    pub capacity: Capacity,
    /// Kernel-side per-packet logging.
    pub log_packets: bool,
    /// The ordered rules' condition maps (interface names resolved when written).
    pub ordered: CondTables,
}

/// Additions, changes and removals of one rule's prefixes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
}

/// What a sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Prefix changes per rule id (the rule a prefix has now; removals count for the rule it had).
    pub per_rule: BTreeMap<u32, Changes>,
    /// Element writes to the prefix maps.
    pub prefix_writes: u64,
    /// Element writes to the policy tables and the generation word.
    pub policy_writes: u64,
    /// `(from, to)` when the live generation flipped.
    pub flipped: Option<(u32, u32)>,
    /// Time spent computing the difference (userspace only).
    pub diff_time: std::time::Duration,
    /// Time spent reading and writing kernel maps.
    pub kernel_time: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(
        "{what} sets would hold {wanted} prefixes but its capacity is {capacity} \
         (general.capacity.{key}); sets contributing: {sets}. Raise the capacity or shorten \
         the lists; nothing was changed"
    )]
    Capacity {
        what: &'static str,
        key: &'static str,
        wanted: usize,
        capacity: u32,
        sets: String,
    },
    #[error(
        "the sets would need {} of kernel memory at the peak of the change ({breakdown}), more \
         than general.max_memory allows ({}). Raise it or shorten the lists; nothing was changed",
        Bytes(*.need),
        Bytes(*.max)
    )]
    Memory {
        need: u64,
        max: u64,
        breakdown: String,
    },
    #[error(
        "the change would need about {} at its peak, more than steer's memory limit of {} \
         ({}, systemd's MemoryMax=): {} of kernel memory for the sets ({breakdown}), {} for \
         the daemon's {prefixes} prefixes and {} for the daemon itself. Raise MemoryMax= \
         (rule of thumb: 48M, and 48 bytes a prefix; docs/install.md) or shorten the lists; \
         nothing was changed",
        Bytes(*.total),
        Bytes(.limit.bytes),
        .limit.file.display(),
        Bytes(*.kernel),
        Bytes(memory_limit::BYTES_PER_PREFIX * *.prefixes as u64),
        Bytes(memory_limit::BASE_BYTES)
    )]
    OverLimit {
        total: u64,
        kernel: u64,
        prefixes: usize,
        limit: MemoryLimit,
        breakdown: String,
    },
    #[error(
        "writing the new state failed: {source}; the previous state was restored ({undone} writes undone)"
    )]
    RolledBack {
        #[source]
        source: DataplaneError,
        undone: usize,
    },
    #[error(
        "writing the new state failed: {source}, and undoing it failed too: {undo}; the maps \
         hold a mix of old and new prefixes; run `steer reload` to write the whole state again"
    )]
    RollbackFailed {
        #[source]
        source: DataplaneError,
        undo: DataplaneError,
    },
    #[error(
        "the maps changed while this change was prepared; nothing was changed; run `steer \
         reload` again"
    )]
    Stale,
    #[error(
        "the new state is live, but removing {left} stale prefixes failed ({source}); they keep \
         their old verdict until the next reload retries"
    )]
    Incomplete {
        #[source]
        source: DataplaneError,
        left: usize,
    },
}

impl SyncError {
    /// Whether the new state went live despite the error (it failed after the flip): the
    /// caller must then follow the new state, not keep the old one.
    pub fn is_live(&self) -> bool {
        matches!(self, SyncError::Incomplete { .. })
    }
}

/// Checks every map's capacity against the desired contents before anything is written.
pub fn check_capacity(
    want: &PrefixSets,
    capacity: &Capacity,
    rule_name: impl Fn(u32) -> String,
) -> Result<(), SyncError> {
    for prefix_map in PrefixMap::ALL {
        let map = want.map(prefix_map);
        let capacity = capacity.of(prefix_map);
        if map.len() > capacity as usize {
            let mut per_rule: BTreeMap<u32, usize> = BTreeMap::new();
            for rule in map.rules() {
                *per_rule.entry(rule).or_default() += 1;
            }
            let sets = per_rule
                .iter()
                .map(|(r, n)| format!("{} ({n})", rule_name(*r)))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(SyncError::Capacity {
                what: prefix_map.describe(),
                key: prefix_map.key(),
                wanted: map.len(),
                capacity,
                sets,
            });
        }
    }
    Ok(())
}

/// The prefix maps' kernel memory through a change must fit `capacity.memory`, and the whole
/// need of the change the memory cgroup's `limit` (nothing is counted without either).
/// Additions are written before removals, so a map holds its old and new prefixes together
/// for a while, and a commit may build a fresh table and record beside the live ones before
/// those are freed: a map the change touches counts what the kernel holds for it now plus the
/// larger of its merged and its final contents; every other map the larger of what it holds
/// and what it will hold.
fn check_memory(
    maps: &Maps,
    capacity: &Capacity,
    limit: Option<&MemoryLimit>,
    state: &PrefixSets,
    planned: &[PlannedWrites],
    left: &[(Direction, Prefix)],
) -> Result<(), SyncError> {
    let fits = |kernel: u64, prefixes: usize| {
        capacity.memory.is_none_or(|max| kernel <= max)
            && limit.is_none_or(|l| memory_limit::need(kernel, prefixes) <= l.bytes)
    };
    if capacity.memory.is_none() && limit.is_none() || few_within(maps, state, planned, left, fits)
    {
        return Ok(());
    }
    let merged = footprint_after(state, planned, &[]);
    let last = if left.is_empty() {
        merged.clone()
    } else {
        footprint_after(state, planned, left)
    };
    let written = touched_maps(planned, &[]);
    let emptied = touched_maps(&[], left);
    let mut held_now = 0;
    let mut prefixes = 0;
    let mut each = Vec::new();
    for m in PrefixMap::ALL {
        let held = maps.range_bytes(m);
        held_now += held;
        each.push(MapChange {
            held,
            merged: merged.map(m).bytes,
            last: last.map(m).bytes,
            written: written.contains(&m),
            emptied: emptied.contains(&m),
        });
        prefixes += merged.map(m).prefixes.max(state.map(m).len());
    }
    let need = change_peak(&each);
    let breakdown = || {
        format!(
            "{}; the kernel holds {} for the sets now, and a changed set's new table is built \
             beside its old one",
            last.breakdown(),
            Bytes(held_now)
        )
    };
    if let Some(max) = capacity.memory
        && need > max
    {
        return Err(SyncError::Memory {
            need,
            max,
            breakdown: breakdown(),
        });
    }
    if let Some(limit) = limit {
        let total = memory_limit::need(need, prefixes);
        if total > limit.bytes {
            return Err(SyncError::OverLimit {
                total,
                kernel: need,
                prefixes,
                limit: limit.clone(),
                breakdown: breakdown(),
            });
        }
    }
    Ok(())
}

/// Whether a change of a few prefixes fits by a bound that costs nothing to compute, where the
/// exact count would go through every prefix (most of a one-prefix `steer set add` into a
/// million). A few changes go into the live tables' spare room; at worst one rebuilds each map
/// it touches beside the live one, and a fresh build of contents a few prefixes apart from
/// what the kernel holds for the map is at most a quarter larger (the record's and the table's
/// spare room) and a block more in each array.
fn few_within(
    maps: &Maps,
    state: &PrefixSets,
    planned: &[PlannedWrites],
    left: &[(Direction, Prefix)],
    fits: impl Fn(u64, usize) -> bool,
) -> bool {
    let writes: usize = planned.iter().map(|(_, w)| w.len()).sum();
    if writes + left.len() > IN_PLACE_MAX_EDITS {
        return false;
    }
    let touched = touched_maps(planned, left);
    let mut bound = 0;
    for m in PrefixMap::ALL {
        let held = maps.range_bytes(m);
        bound += held;
        if touched.contains(&m) {
            bound += held + held / 4 + range::block_bytes(4);
        }
    }
    fits(bound, state.len() + writes)
}

/// One map's memory in a change: its table and record held now, with the writes in
/// (`merged`) and after the removals (`last`), and whether the change writes into it or
/// removes from it.
#[derive(Clone, Copy, Debug)]
struct MapChange {
    held: u64,
    merged: u64,
    last: u64,
    written: bool,
    emptied: bool,
}

/// The most the maps hold during a change. The sync changes the maps one after the other: a
/// changed map's fresh table is built beside the one it replaces (with its writes, the old and
/// the new prefixes together: the additions go in before the removals), and the old one goes
/// when the fresh one is published, before the next map. So the peak is, at some map, the
/// maps done so far as they end, the maps still to do as they are, and that map twice. A
/// change that only removes (a flush) needs what is held and one smaller table, not two of
/// what is held.
fn change_peak(maps: &[MapChange]) -> u64 {
    let mut done = 0;
    let mut to_do: u64 = maps.iter().map(|m| m.held).sum();
    let mut peak = to_do;
    for m in maps {
        to_do -= m.held;
        if m.written || m.emptied {
            let fresh = if m.written {
                m.merged.max(m.last)
            } else {
                m.last
            };
            peak = peak.max(done + to_do + m.held + fresh);
            done += m.last;
        } else {
            done += m.held;
        }
    }
    peak.max(done)
}

/// The maps a change writes into or removes from.
fn touched_maps(planned: &[PlannedWrites], left: &[(Direction, Prefix)]) -> HashSet<PrefixMap> {
    planned
        .iter()
        .filter(|(_, writes)| !writes.is_empty())
        .map(|(map, _)| *map)
        .chain(left.iter().map(|(dir, p)| PrefixMap::of(*dir, p)))
        .collect()
}

/// The memory of the prefix maps once `state` has the writes `planned` and lost `left`: each
/// map's prefixes merged with its writes in one pass (both sorted).
fn footprint_after(
    state: &PrefixSets,
    planned: &[PlannedWrites],
    left: &[(Direction, Prefix)],
) -> Footprint {
    let none = PrefixRules::default();
    let entries = PrefixMap::ALL.into_iter().flat_map(|m| {
        let writes = planned
            .iter()
            .find(|(map, _)| *map == m)
            .map_or(&none, |(_, w)| w);
        let gone = SortedPrefixes::of(
            left.iter()
                .filter(move |(dir, p)| PrefixMap::of(*dir, p) == m)
                .map(|(_, p)| *p),
        );
        state
            .map(m)
            .joined(writes)
            .filter(move |(p, _, _)| !gone.contains(p))
            .filter_map(move |(p, held, written)| Some((m, p, written.or(held)?)))
    });
    Footprint::of(entries)
}

/// A map's contents before a sync wrote it, and how many writes it got: what a rollback puts
/// back.
struct Undo {
    map: PrefixMap,
    before: Before,
    writes: usize,
}

/// What a map held before a sync wrote it.
enum Before {
    /// All of it: a shared copy, no cost.
    Map(PrefixRules),
    /// For a few writes, each written prefix's rule (or none): a shared copy would make the
    /// range set copy all its entries to change a few in place (see [`in_place`]).
    Prefixes(Vec<(Prefix, Option<u32>)>),
}

impl Before {
    /// `map` of `state`, as a rollback of `writes` needs it.
    fn of(state: &PrefixSets, map: PrefixMap, writes: &PrefixRules) -> Before {
        let held = state.map(map);
        if writes.len() <= IN_PLACE_MAX_EDITS {
            Before::Prefixes(writes.keys().map(|p| (p, held.get(&p))).collect())
        } else {
            Before::Map(held.clone())
        }
    }
}

/// The prefix writes that bring `state` to `want`: pure, so a reload computes it on another
/// thread (against a snapshot of the state) and the sync only writes.
#[derive(Debug)]
pub struct Diff {
    planned: Vec<PlannedWrites>,
    left: Vec<(Direction, Prefix)>,
    per_rule: BTreeMap<u32, Changes>,
    took: std::time::Duration,
}

impl Diff {
    pub fn new(state: &PrefixSets, want: &PrefixSets) -> Diff {
        let started = std::time::Instant::now();
        let mut report = SyncReport::default();
        let planned = plan_writes(state, want, &mut report);
        let left = removals(state, want);
        Diff {
            planned,
            left,
            per_rule: report.per_rule,
            took: started.elapsed(),
        }
    }
}

impl Diff {
    /// The writes of a change known in advance: `added` prefixes with their rule, `removed`
    /// prefixes, of sets matching on `dir`. `state` is what the maps hold: an added prefix it
    /// holds with another rule counts as changed, a removed one it does not hold is skipped.
    pub fn of_changes(
        state: &PrefixSets,
        dir: Direction,
        added: Vec<(Prefix, u32)>,
        removed: Vec<Prefix>,
    ) -> Diff {
        let started = std::time::Instant::now();
        let mut per_rule: BTreeMap<u32, Changes> = BTreeMap::new();
        let mut writes = Vec::with_capacity(added.len());
        for (prefix, rule) in added {
            match state.map(PrefixMap::of(dir, &prefix)).get(&prefix) {
                Some(old) if old == rule => continue,
                Some(_) => per_rule.entry(rule).or_default().changed += 1,
                None => per_rule.entry(rule).or_default().added += 1,
            }
            writes.push((prefix, rule));
        }
        let left = removed
            .into_iter()
            .filter(|p| state.map(PrefixMap::of(dir, p)).contains_key(p))
            .map(|p| (dir, p))
            .collect();
        let planned = PrefixMap::of_direction(dir)
            .into_iter()
            .map(|map| {
                let of_map = writes.iter().filter(|(p, _)| p.is_v4() == map.is_v4());
                (map, of_map.copied().collect::<PrefixRules>())
            })
            .filter(|(_, w)| !w.is_empty())
            .collect();
        Diff {
            planned,
            left,
            per_rule,
            took: started.elapsed(),
        }
    }
}

impl Diff {
    /// Drops the removals of prefixes `want` holds: entries joined the desired state after
    /// this diff was taken against it (runtime set entries, added on the event loop), and the
    /// maps keep them.
    pub fn keep_wanted(&mut self, state: &PrefixSets, want: &PrefixSets) {
        let per_rule = &mut self.per_rule;
        self.left.retain(|(dir, p)| {
            let map = PrefixMap::of(*dir, p);
            if !want.map(map).contains_key(p) {
                return true;
            }
            if let Some(c) = state.map(map).get(p).and_then(|r| per_rule.get_mut(&r)) {
                c.removed = c.removed.saturating_sub(1);
            }
            false
        });
    }

    /// What maps holding `state` hold once these writes are made.
    pub fn apply_to(&self, state: &mut PrefixSets) {
        for (map, writes) in &self.planned {
            state.map_mut(*map).extend(writes.iter());
        }
        for (dir, prefix) in &self.left {
            state.remove(*dir, prefix);
        }
    }
}

/// Writes a change of prefixes alone (`diff`, from [`Diff::of_changes`]): the policy table
/// stays as it is. Capacity first, then widened settings, additions (undone on failure),
/// removals, narrowed settings, as [`sync`] does. `changed` names what changed, for a
/// capacity refusal ("the changed list", "set bypass").
pub fn sync_prefixes(
    maps: &mut Maps,
    state: &mut PrefixSets,
    diff: Diff,
    capacity: &Capacity,
    log_packets: bool,
    changed: &str,
) -> Result<SyncReport, SyncError> {
    let Diff {
        planned,
        mut left,
        per_rule,
        took,
    } = diff;
    // `left` holds only prefixes the maps hold (see `Diff::of_changes`).
    let mut wanted = PrefixMap::ALL.map(|m| state.map(m).len());
    for (map, writes) in &planned {
        wanted[map.index()] += writes.count_missing_from(state.map(*map));
    }
    for (dir, p) in &left {
        wanted[PrefixMap::of(*dir, p).index()] -= 1;
    }
    for prefix_map in PrefixMap::ALL {
        let (wanted, cap) = (wanted[prefix_map.index()], capacity.of(prefix_map));
        if wanted > cap as usize {
            return Err(SyncError::Capacity {
                what: prefix_map.describe(),
                key: prefix_map.key(),
                wanted,
                capacity: cap,
                sets: changed.into(),
            });
        }
    }
    let limit = MemoryLimit::of_this_process();
    check_memory(maps, capacity, limit.as_ref(), state, &planned, &left)?;
    let started = std::time::Instant::now();
    let mut report = SyncReport {
        per_rule,
        diff_time: took,
        ..SyncReport::default()
    };
    let start = maps.writes();
    let ordered = maps.ordered_in_use().map_err(|e| rolled_back(e, 0))?;
    let mut widened = settings(state, log_packets, ordered);
    for (map, writes) in &planned {
        if map.direction() == Direction::Src && !writes.is_empty() {
            widened.flags |= if map.is_v4() {
                settings_flags::HAS_SRC_V4
            } else {
                settings_flags::HAS_SRC_V6
            };
        }
    }
    write_settings(maps, widened).map_err(|e| rolled_back(e, 0))?;
    report.policy_writes += maps.writes() - start;
    let mut undo = Vec::new();
    let start = maps.writes();
    if let Err(e) = write_planned(maps, state, planned, &mut undo) {
        return Err(restore(maps, state, undo, &[], e));
    }
    drop(undo);
    remove_stale(maps, state, &mut left, &mut report, None)?;
    report.prefix_writes += maps.writes() - start;
    let start = maps.writes();
    write_settings(maps, settings(state, log_packets, ordered))
        .map_err(|e| SyncError::Incomplete { source: e, left: 0 })?;
    report.policy_writes += maps.writes() - start;
    report.kernel_time = started.elapsed();
    Ok(report)
}

/// Brings the maps to `want`. `state` is what the prefix maps hold (read from the kernel when
/// the dataplane was opened, kept current by every sync): the diff is taken against it (or
/// handed in, taken against that same state elsewhere), so a reload reads no prefix back.
pub fn sync(
    maps: &mut Maps,
    state: &mut PrefixSets,
    want: &MapContents,
    diff: Option<Diff>,
) -> Result<SyncReport, SyncError> {
    let table = &want.table;
    check_capacity(&want.prefixes, &want.capacity, |r| {
        let name = steer_common::name_from_bytes(&table.info[r as usize].set_name);
        if name.is_empty() {
            format!("rule {r}")
        } else {
            format!("set {name}")
        }
    })?;
    let started = std::time::Instant::now();
    let Diff {
        planned,
        mut left,
        per_rule,
        took,
    } = diff.unwrap_or_else(|| Diff::new(state, &want.prefixes));
    let limit = MemoryLimit::of_this_process();
    check_memory(maps, &want.capacity, limit.as_ref(), state, &planned, &left)?;
    let mut report = SyncReport {
        per_rule,
        diff_time: took,
        ..SyncReport::default()
    };

    let start = maps.writes();
    let ordered_now = maps.ordered_in_use().map_err(|e| rolled_back(e, 0))?;
    let ordered_wanted = !want.ordered.is_empty();
    let widened = settings(state, want.log_packets, ordered_now).flags
        | settings(&want.prefixes, false, ordered_wanted).flags;
    write_settings(
        maps,
        Settings {
            flags: widened,
            _pad: 0,
        },
    )
    .map_err(|e| rolled_back(e, 0))?;
    let live_gen = maps.active_generation().map_err(|e| rolled_back(e, 0))?;
    let live = maps.policy_table(live_gen).map_err(|e| rolled_back(e, 0))?;
    let removed_rules: Vec<u32> = (0..MAX_RULES)
        .filter(|r| live.in_use(*r) && !table.in_use(*r))
        .collect();
    let new_rules: Vec<u32> = (0..MAX_RULES)
        .filter(|r| table.in_use(*r) && !live.in_use(*r))
        .collect();

    // The standbys were for the state this replaces; the controller rebuilds them after.
    maps.drop_standbys();
    // New rules: nothing points at them yet, so the live generation can learn them now (the
    // scratch one learns them with the whole table below), and their counters start from zero.
    for rule in &new_rules {
        let learn = maps.write_rule(live_gen, *rule, table);
        if let Err(e) = learn.and_then(|()| maps.reset_rule_counter(*rule)) {
            return Err(restore(maps, state, Vec::new(), &new_rules, e));
        }
    }
    report.policy_writes += maps.writes() - start;

    // Additions and changes.
    let mut undo = Vec::new();
    let start = maps.writes();
    if let Err(e) = write_planned(maps, state, planned, &mut undo) {
        return Err(restore(maps, state, undo, &new_rules, e));
    }
    report.prefix_writes += maps.writes() - start;
    let start = maps.writes();
    let conditions = Resolved::new(&want.ordered, |name| super::ifindex(name).ok());
    let ordered_before = match maps.sync_ordered(&conditions) {
        Ok(before) => before,
        Err(e) => return Err(restore(maps, state, undo, &new_rules, e)),
    };
    report.policy_writes += maps.writes() - start;

    // Standby generation, then the flip.
    let start = maps.writes();
    let mut staged = table.clone();
    for rule in &removed_rules {
        staged.copy_rule(&live, *rule);
    }
    // Any failure up to the flip, finding the standby included, undoes what was written.
    let flip = maps.scratch_generation().and_then(|standby| {
        let changed = write_generation(maps, standby, &staged, &live)?;
        if changed {
            maps.set_active_generation(standby)?;
        }
        Ok((standby, changed))
    });
    let standby = match flip {
        Ok((standby, changed)) => {
            if changed {
                report.flipped = Some((live_gen, standby));
            }
            standby
        }
        Err(e) => {
            if let Some(bank) = ordered_before
                && let Err(undo) = maps.undo_ordered(bank)
            {
                return Err(SyncError::RollbackFailed { source: e, undo });
            }
            return Err(restore(maps, state, undo, &new_rules, e));
        }
    };
    report.policy_writes += maps.writes() - start;

    // From here on the new state is live: what fails is completed later, never undone (and
    // what the maps held before is let go).
    drop(undo);
    let start = maps.writes();
    remove_stale(maps, state, &mut left, &mut report, Some(&want.prefixes))?;
    report.prefix_writes += maps.writes() - start;
    let start = maps.writes();
    // The live generation and the one before it name them; no other generation is kept.
    let now_live = report.flipped.map_or(live_gen, |(_, to)| to);
    for rule in &removed_rules {
        for generation in [now_live, standby] {
            maps.write_rule(generation, *rule, table)
                .map_err(|e| SyncError::Incomplete { source: e, left: 0 })?;
        }
    }
    sync_wan_names(maps, &want.wans).map_err(|e| SyncError::Incomplete { source: e, left: 0 })?;
    write_settings(maps, settings(state, want.log_packets, ordered_wanted))
        .map_err(|e| SyncError::Incomplete { source: e, left: 0 })?;
    report.policy_writes += maps.writes() - start;
    report.kernel_time = started.elapsed();
    Ok(report)
}

/// Brings only the policy table to `table` (scratch generation, then flip): a failover no
/// precomputed standby covers. The standbys are dropped first (they were for the state this
/// replaces, and their generations and blocks become usable).
pub fn flip_policy(
    maps: &mut Maps,
    table: &PolicyTable,
) -> Result<Option<(u32, u32)>, DataplaneError> {
    maps.drop_standbys();
    let live_gen = maps.active_generation()?;
    let live = maps.policy_table(live_gen)?;
    let standby = maps.scratch_generation()?;
    if !write_generation(maps, standby, table, &live)? {
        return Ok(None);
    }
    maps.set_active_generation(standby)?;
    Ok(Some((live_gen, standby)))
}

/// The settings for maps holding `prefixes`: source lookups only for families that have
/// source prefixes, the ordered rules only when there are some.
fn settings(prefixes: &PrefixSets, log_packets: bool, ordered: bool) -> Settings {
    let mut flags = if log_packets {
        settings_flags::LOG_PACKETS
    } else {
        0
    };
    if ordered {
        flags |= settings_flags::HAS_COND;
    }
    if !prefixes.map(PrefixMap::SrcV4).is_empty() {
        flags |= settings_flags::HAS_SRC_V4;
    }
    if !prefixes.map(PrefixMap::SrcV6).is_empty() {
        flags |= settings_flags::HAS_SRC_V6;
    }
    Settings { flags, _pad: 0 }
}

/// The settings flags the sync owns: all but the learned hosts' (the DNS learner's) and
/// `KEEP_MARK` (the nftables table's owner's: [`super::Maps::set_keep_mark`]).
pub const SYNC_FLAGS: u32 =
    !(settings_flags::HAS_LEARNED_V4 | settings_flags::HAS_LEARNED_V6 | settings_flags::KEEP_MARK);

/// Brings the flags the sync owns to `want`'s, leaving the learned hosts' as they are.
fn write_settings(maps: &mut Maps, want: Settings) -> Result<(), DataplaneError> {
    maps.set_flags(SYNC_FLAGS, want.flags)
}

/// Writes the WAN names where they differ; a slot that changes hands starts its counters from
/// zero.
fn sync_wan_names(maps: &mut Maps, wans: &BTreeMap<u32, WanName>) -> Result<(), DataplaneError> {
    for slot in 0..MAX_WANS {
        let want = wans
            .get(&slot)
            .map(|w| WanInfo {
                name: name_to_bytes(&w.name),
                mark: w.mark,
                table: w.table,
                in_use: 1,
                _pad: 0,
            })
            .unwrap_or_default();
        let have = maps.wan_info(slot)?;
        if have != want {
            if have.name != want.name {
                maps.reset_wan_counter(slot)?;
            }
            maps.set_wan_info(slot, want)?;
        }
    }
    Ok(())
}

fn rolled_back(source: DataplaneError, undone: usize) -> SyncError {
    SyncError::RolledBack { source, undone }
}

/// Writes `table` into `generation` (not the live one), only where it differs from what that
/// generation holds. Returns whether the table differs from `live` at all (if not, no flip is
/// needed).
fn write_generation(
    maps: &mut Maps,
    generation: u32,
    table: &PolicyTable,
    live: &PolicyTable,
) -> Result<bool, DataplaneError> {
    maps.write_table(generation, table)?;
    Ok(live != table)
}

/// The additions and changes of one map: prefix -> rule, compact (8 bytes an IPv4 prefix).
pub type PlannedWrites = (PrefixMap, PrefixRules);

/// The additions and changes, per map, counted into `report`: every prefix of `want` that
/// `state` does not hold with the same rule. A map `state` has nothing of is written whole:
/// its writes share `want`'s entries (a first load copies nothing).
pub fn plan_writes(
    state: &PrefixSets,
    want: &PrefixSets,
    report: &mut SyncReport,
) -> Vec<PlannedWrites> {
    let mut planned = Vec::new();
    // Per rule id (small): (added, changed), counted without a map lookup per prefix.
    let mut counts: Vec<(usize, usize)> = Vec::new();
    let mut count = |rule: u32, changed: bool| {
        let at = rule as usize;
        if at >= counts.len() {
            counts.resize(at + 1, (0, 0));
        }
        if changed {
            counts[at].1 += 1;
        } else {
            counts[at].0 += 1;
        }
    };
    for (map, wanted) in want.iter() {
        let have = state.map(map);
        let writes = if have.is_empty() {
            wanted.rules().for_each(|rule| count(rule, false));
            wanted.clone()
        } else {
            let changed = wanted.joined(have).filter_map(|(prefix, rule, old)| {
                let rule = rule?;
                match old {
                    Some(old) if old == rule => None,
                    old => {
                        count(rule, old.is_some());
                        Some((prefix, rule))
                    }
                }
            });
            changed.collect()
        };
        if !writes.is_empty() {
            planned.push((map, writes));
        }
    }
    for (rule, (added, changed)) in (0u32..).zip(counts) {
        if added + changed > 0 {
            let c = report.per_rule.entry(rule).or_default();
            c.added += added;
            c.changed += changed;
        }
    }
    planned
}

fn write_planned(
    maps: &mut Maps,
    state: &mut PrefixSets,
    planned: Vec<PlannedWrites>,
    undo: &mut Vec<Undo>,
) -> Result<(), DataplaneError> {
    for (map, writes) in planned {
        // Recorded before writing: a failing write may have written part of it.
        let before = Before::of(state, map, &writes);
        let few = matches!(before, Before::Prefixes(_));
        undo.push(Undo {
            map,
            before,
            writes: writes.len(),
        });
        if few {
            in_place(maps, state, map, |maps| maps.write_map(map, &writes))??;
        } else {
            maps.write_map(map, &writes)?;
            follow(maps, state, map, |held| held.extend(writes.iter()));
        }
    }
    Ok(())
}

/// Runs `write`, a change of a few prefixes of `map`, with the mirror's hold on the map's
/// entries let go: the range set then changes its own vector in place instead of copying it
/// first (a vector shared is copied on write: 8 MB for a million prefixes, most of a small
/// edit's time). The mirror then shares what the range set holds, whether `write` succeeded
/// or not (a failed commit puts the range set's entries back).
fn in_place<T>(
    maps: &mut Maps,
    state: &mut PrefixSets,
    map: PrefixMap,
    write: impl FnOnce(&mut Maps) -> T,
) -> Result<T, DataplaneError> {
    // Known first (read from the record if need be): the mirror can then always follow.
    maps.held_map(map)?;
    *state.map_mut(map) = PrefixRules::default();
    let out = write(maps);
    *state.map_mut(map) = maps.held_map(map)?;
    Ok(out)
}

/// Brings `state`'s `map` to what its range set holds after a write: its entries shared, not a
/// second copy merged here (`change` makes one only if they cannot be read).
fn follow(
    maps: &mut Maps,
    state: &mut PrefixSets,
    map: PrefixMap,
    change: impl FnOnce(&mut PrefixRules),
) {
    match maps.held_map(map) {
        Ok(held) => *state.map_mut(map) = held,
        Err(_) => change(state.map_mut(map)),
    }
}

/// Undoes the additions and changes of a failed sync and forgets the rules it introduced;
/// `state` follows. The widened settings stay: a superset of the flags only costs a lookup,
/// and the next sync narrows them.
fn restore(
    maps: &mut Maps,
    state: &mut PrefixSets,
    undo: Vec<Undo>,
    new_rules: &[u32],
    source: DataplaneError,
) -> SyncError {
    let undone = undo.iter().map(|u| u.writes).sum();
    // A map written twice goes back to what it had before the first write.
    let mut seen = HashSet::new();
    for Undo { map, before, .. } in undo.into_iter().filter(|u| seen.insert(u.map)) {
        let put_back = match before {
            Before::Map(before) => maps
                .assign_map(map, &before)
                .map(|()| *state.map_mut(map) = before),
            Before::Prefixes(before) => put_back(maps, state, map, before),
        };
        if let Err(undo) = put_back {
            return SyncError::RollbackFailed { source, undo };
        }
    }
    let unused = PolicyTable::default();
    let live = match maps.active_generation() {
        Ok(g) => g,
        Err(undo) => return SyncError::RollbackFailed { source, undo },
    };
    for rule in new_rules {
        if let Err(undo) = maps.write_rule(live, *rule, &unused) {
            return SyncError::RollbackFailed { source, undo };
        }
    }
    SyncError::RolledBack { source, undone }
}

/// Gives each prefix of `before` its rule back in `map` (removes it where it had none) in one
/// commit of the map as it was; the mirror follows. A rollback: rare, so the map is merged
/// whole rather than changed in place.
fn put_back(
    maps: &mut Maps,
    state: &mut PrefixSets,
    map: PrefixMap,
    before: Vec<(Prefix, Option<u32>)>,
) -> Result<(), DataplaneError> {
    let mut restored = state.map(map).clone();
    for (prefix, rule) in before {
        match rule {
            Some(rule) => _ = restored.insert(prefix, rule),
            None => _ = restored.remove(&prefix),
        }
    }
    maps.assign_map(map, &restored)?;
    *state.map_mut(map) = restored;
    Ok(())
}

/// Every prefix `state` holds that `want` does not.
pub fn removals(state: &PrefixSets, want: &PrefixSets) -> Vec<(Direction, Prefix)> {
    let mut out = Vec::new();
    for (map, held) in state.iter() {
        out.extend(
            held.joined(want.map(map))
                .filter(|(_, _, wanted)| wanted.is_none())
                .map(|(p, _, _)| (map.direction(), p)),
        );
    }
    out
}

/// Removes the stale prefixes, once the new verdicts are live; retried once before giving up.
/// With `want` (a whole desired state), a map that then holds exactly what `want` has for it
/// takes `want`'s entries whole (shared: no merged copy of a big set).
fn remove_stale(
    maps: &mut Maps,
    state: &mut PrefixSets,
    left: &mut Vec<(Direction, Prefix)>,
    report: &mut SyncReport,
    want: Option<&PrefixSets>,
) -> Result<(), SyncError> {
    for attempt in 0..2 {
        match remove_all(maps, state, left, report, want) {
            Ok(()) => return Ok(()),
            Err(e) if attempt == 1 => {
                return Err(SyncError::Incomplete {
                    source: e,
                    left: left.len(),
                });
            }
            Err(e) => log::warn!("removing stale prefixes failed ({e}); retrying"),
        }
    }
    Ok(())
}

fn remove_all(
    maps: &mut Maps,
    state: &mut PrefixSets,
    left: &mut Vec<(Direction, Prefix)>,
    report: &mut SyncReport,
    want: Option<&PrefixSets>,
) -> Result<(), DataplaneError> {
    // One map after the other, each a run of `left` (sorted in place): a million removals
    // cost no copy of themselves here, and what is done is how far the runs got.
    left.sort_unstable_by_key(|(dir, p)| PrefixMap::of(*dir, p).index());
    let mut done = 0;
    let mut result = Ok(());
    while done < left.len() {
        let (dir, first) = left[done];
        let map = PrefixMap::of(dir, &first);
        let run = left[done..]
            .iter()
            .take_while(|(d, p)| PrefixMap::of(*d, p) == map)
            .count();
        let prefixes = || left[done..done + run].iter().map(|(_, p)| p);
        // A few go in place; many, where they leave exactly the desired map, take its entries
        // whole (shared, no merge of a copy).
        let few = run <= IN_PLACE_MAX_EDITS;
        let whole = want
            .filter(|_| !few)
            .map(|want| want.map(map))
            .filter(|want| without(state.map(map), prefixes(), want));
        // Counted before they go; a run that stopped part way keeps the rest, with their
        // rules, which are then taken back off.
        let mut removed_of = rule_counts(state.map(map), prefixes());
        let (removed, outcome) = match whole {
            Some(want) => match maps.replace_map(map, want, run) {
                Ok(()) => (run, Ok(())),
                Err(e) => (0, Err(e)),
            },
            None if few => in_place(maps, state, map, |maps| {
                maps.remove_prefixes(dir, prefixes())
            })?,
            None => maps.remove_prefixes(dir, prefixes()),
        };
        if !few {
            follow(maps, state, map, |held| {
                for prefix in prefixes().take(removed) {
                    held.remove(prefix);
                }
            });
        }
        for (rule, n) in rule_counts(state.map(map), prefixes().skip(removed)) {
            *removed_of.entry(rule).or_default() -= n;
        }
        for (rule, n) in removed_of {
            report.per_rule.entry(rule).or_default().removed += n;
        }
        done += removed;
        if let Err(e) = outcome {
            result = Err(e);
            break;
        }
    }
    left.drain(..done);
    result
}

/// How many of `prefixes` `held` has, by rule.
fn rule_counts<'a>(
    held: &PrefixRules,
    prefixes: impl Iterator<Item = &'a Prefix>,
) -> BTreeMap<u32, usize> {
    let mut counts = BTreeMap::new();
    for rule in prefixes.filter_map(|p| held.get(p)) {
        *counts.entry(rule).or_default() += 1;
    }
    counts
}

/// Whether `held` without the prefixes `gone` is exactly `want`: one pass over both.
fn without<'a>(
    held: &PrefixRules,
    gone: impl Iterator<Item = &'a Prefix>,
    want: &PrefixRules,
) -> bool {
    let gone = SortedPrefixes::of(gone.copied());
    held.len() == want.len() + gone.len()
        && held.joined(want).all(|(p, h, w)| match (h, w) {
            (Some(h), Some(w)) => h == w,
            (Some(_), None) => gone.contains(&p),
            (None, _) => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(entries: &[(Direction, &str, u32)]) -> PrefixSets {
        let mut s = PrefixSets::default();
        for (dir, p, rule) in entries {
            let (addr, len) = p.split_once('/').unwrap();
            s.insert(
                *dir,
                Prefix::new(addr.parse().unwrap(), len.parse().unwrap()).unwrap(),
                *rule,
            );
        }
        s
    }

    #[test]
    fn a_change_peaks_at_one_new_table_beside_what_the_maps_hold() {
        let map = |held, merged, last, written, emptied| MapChange {
            held,
            merged,
            last,
            written,
            emptied,
        };
        // A flush of a set in two maps: one smaller table at a time beside what is held, not
        // twice what is held.
        assert_eq!(
            change_peak(&[map(30, 30, 27, false, true), map(10, 10, 9, false, true)]),
            40 + 27
        );
        // Writes: the old and new prefixes together beside what is held.
        assert_eq!(
            change_peak(&[map(40, 50, 50, true, false), map(5, 5, 5, false, false)]),
            40 + 50 + 5
        );
        assert_eq!(change_peak(&[map(10, 15, 12, true, true)]), 10 + 15);
        // Two maps that grow: the second is built beside the first one's new table.
        assert_eq!(
            change_peak(&[map(1, 10, 10, true, false), map(1, 10, 10, true, false)]),
            10 + 1 + 10
        );
        // Untouched: what is held.
        assert_eq!(change_peak(&[map(40, 40, 40, false, false)]), 40);
    }

    #[test]
    fn the_plan_writes_only_new_and_changed_prefixes_and_removes_only_stale_ones() {
        use Direction::{Dst, Src};
        let state = sets(&[
            (Dst, "10.0.0.0/8", 1),
            (Dst, "2001:db8::/32", 1),
            (Src, "192.168.1.0/24", 2),
            (Dst, "203.0.113.0/24", 3),
        ]);
        let want = sets(&[
            (Dst, "10.0.0.0/8", 1),      // kept
            (Dst, "2001:db8::/32", 4),   // changed
            (Src, "192.168.1.0/24", 2),  // kept
            (Src, "fd00::/8", 2),        // added
            (Dst, "198.51.100.0/24", 3), // added; 203.0.113.0/24 goes
        ]);
        let mut report = SyncReport::default();
        let planned = plan_writes(&state, &want, &mut report);
        let p = |s: &str| {
            let (a, l) = s.split_once('/').unwrap();
            Prefix::new(a.parse().unwrap(), l.parse().unwrap()).unwrap()
        };
        let planned: Vec<(PrefixMap, Vec<(Prefix, u32)>)> = planned
            .into_iter()
            .map(|(map, writes)| (map, writes.iter().collect()))
            .collect();
        assert_eq!(
            planned,
            vec![
                (PrefixMap::DstV4, vec![(p("198.51.100.0/24"), 3)]),
                (PrefixMap::DstV6, vec![(p("2001:db8::/32"), 4)]),
                (PrefixMap::SrcV6, vec![(p("fd00::/8"), 2)]),
            ]
        );
        assert_eq!(report.per_rule[&2].added, 1);
        assert_eq!(report.per_rule[&3].added, 1);
        assert_eq!(report.per_rule[&4].changed, 1);
        assert!(
            !report.per_rule.contains_key(&1),
            "unchanged rules are not reported"
        );
        assert_eq!(removals(&state, &want), vec![(Dst, p("203.0.113.0/24"))]);
        assert!(plan_writes(&want, &want, &mut SyncReport::default()).is_empty());
        assert!(removals(&want, &want).is_empty());
    }

    #[test]
    fn source_lookups_are_on_exactly_for_families_with_source_prefixes() {
        use Direction::{Dst, Src};
        assert_eq!(settings(&PrefixSets::default(), false, false).flags, 0);
        assert_eq!(
            settings(&sets(&[(Dst, "10.0.0.0/8", 1)]), true, false).flags,
            settings_flags::LOG_PACKETS
        );
        assert_eq!(
            settings(&sets(&[(Src, "10.0.0.0/8", 1)]), false, false).flags,
            settings_flags::HAS_SRC_V4
        );
        assert_eq!(
            settings(
                &sets(&[(Src, "fd00::/8", 1), (Src, "10.0.0.0/8", 1)]),
                false,
                false
            )
            .flags,
            settings_flags::HAS_SRC_V4 | settings_flags::HAS_SRC_V6
        );
    }
}
