//! Reconciling the kernel maps with a desired state, writing only the difference, in an order
//! that never lets a packet fall through a gap:
//!
//! 1. capacity is checked before the first write;
//! 2. rules that are new get their policy in both generations (no prefix points at them yet);
//! 3. prefixes are added and changed (batched where the kernel can);
//! 4. the standby generation is brought to the desired policy table (rules being removed keep
//!    their old verdict there, since their prefixes are still in the maps) and the generation
//!    word flips: every packet sees either the old table or the new one;
//! 5. prefixes are removed;
//! 6. removed rules are cleared.
//!
//! A failure before the flip undoes every write made so far (the previous state is restored);
//! a failure after it is retried, and what could not be completed is reported.

use std::collections::{BTreeMap, HashMap, HashSet};

use steer_common::{
    GENERATIONS, LB_SLOTS, LbSlot, MAX_RULES, PolicyEntry, RuleInfo, action, rule_kind,
};

use super::{Capacities, DataplaneError, Direction, Maps, WriteMode};
use crate::prefix::Prefix;

/// Contents of the four prefix maps, as prefix -> rule id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixSets {
    maps: [HashMap<Prefix, u32>; 4],
}

impl PrefixSets {
    /// The four (direction, IPv4?) maps, in a fixed order.
    pub const KEYS: [(Direction, bool); 4] = Direction::ALL;

    fn index(dir: Direction, v4: bool) -> usize {
        dir.index(v4)
    }

    pub fn map(&self, dir: Direction, v4: bool) -> &HashMap<Prefix, u32> {
        &self.maps[Self::index(dir, v4)]
    }

    pub fn map_mut(&mut self, dir: Direction, v4: bool) -> &mut HashMap<Prefix, u32> {
        &mut self.maps[Self::index(dir, v4)]
    }

    pub fn insert(&mut self, dir: Direction, prefix: Prefix, rule: u32) {
        self.map_mut(dir, prefix.is_v4()).insert(prefix, rule);
    }

    pub fn len(&self) -> usize {
        self.maps.iter().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the kernel maps hold now.
    pub fn read(maps: &Maps) -> Result<Self, DataplaneError> {
        let mut out = PrefixSets::default();
        for (dir, v4) in Self::KEYS {
            out.map_mut(dir, v4).extend(maps.prefixes(dir, v4)?);
        }
        Ok(out)
    }
}

/// The desired policy table of one generation: an entry, LB slots (for balanced entries) and
/// names per rule id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyTable {
    pub entries: Vec<PolicyEntry>,
    pub slots: BTreeMap<u32, Box<[LbSlot; LB_SLOTS as usize]>>,
    pub info: Vec<RuleInfo>,
}

impl Default for PolicyTable {
    fn default() -> Self {
        PolicyTable {
            entries: vec![PolicyEntry::default(); MAX_RULES as usize],
            slots: BTreeMap::new(),
            info: vec![RuleInfo::default(); MAX_RULES as usize],
        }
    }
}

impl PolicyTable {
    fn in_use(&self, rule: u32) -> bool {
        self.info[rule as usize].kind != rule_kind::UNUSED
    }

    /// What generation `generation` of the kernel holds: a few batched reads (one per map, and
    /// one per balanced rule), since a sync or a failover reads two generations while the
    /// switch is being timed.
    pub fn read(maps: &Maps, generation: u32) -> Result<Self, DataplaneError> {
        let entries = maps.policies(generation)?;
        let mut slots = BTreeMap::new();
        for (rule, entry) in (0..).zip(&entries) {
            if entry.action == action::BALANCE {
                let held: [LbSlot; LB_SLOTS as usize] = maps
                    .lb_slots(generation, rule)?
                    .try_into()
                    .expect("LB_SLOTS slots");
                slots.insert(rule, Box::new(held));
            }
        }
        Ok(PolicyTable {
            entries,
            slots,
            info: maps.rule_infos(generation)?,
        })
    }
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
    /// Whether prefix additions went out in batches.
    pub batched: bool,
    /// Time spent computing the difference (userspace only).
    pub diff_time: std::time::Duration,
    /// Time spent reading and writing kernel maps.
    pub kernel_time: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(
        "{what} would hold {wanted} prefixes but its capacity is {capacity} \
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
        "the new state is live, but removing {left} stale prefixes failed ({source}); they keep \
         their old verdict until the next reload retries"
    )]
    Incomplete {
        #[source]
        source: DataplaneError,
        left: usize,
    },
}

/// Names of the maps for messages, by (direction, IPv4?).
fn describe(dir: Direction, v4: bool) -> (&'static str, &'static str) {
    [
        ("IPv4 destination sets", "dst_v4"),
        ("IPv6 destination sets", "dst_v6"),
        ("IPv4 source sets", "src_v4"),
        ("IPv6 source sets", "src_v6"),
    ][dir.index(v4)]
}

/// Checks every map's capacity against the desired contents before anything is written.
pub fn check_capacity(
    want: &PrefixSets,
    capacities: &Capacities,
    rule_name: impl Fn(u32) -> String,
) -> Result<(), SyncError> {
    for (dir, v4) in PrefixSets::KEYS {
        let map = want.map(dir, v4);
        let capacity = capacities.of(dir, v4);
        if map.len() > capacity as usize {
            let mut per_rule: BTreeMap<u32, usize> = BTreeMap::new();
            for rule in map.values() {
                *per_rule.entry(*rule).or_default() += 1;
            }
            let sets = per_rule
                .iter()
                .map(|(r, n)| format!("{} ({n})", rule_name(*r)))
                .collect::<Vec<_>>()
                .join(", ");
            let (what, key) = describe(dir, v4);
            return Err(SyncError::Capacity {
                what,
                key,
                wanted: map.len(),
                capacity,
                sets,
            });
        }
    }
    Ok(())
}

/// One prefix write and how to undo it.
struct Undo {
    dir: Direction,
    prefix: Prefix,
    previous: Option<u32>,
}

/// Brings the prefix maps and the live policy table to `want` and `table`. `state` is what
/// the prefix maps hold (read from the kernel when the daemon started, kept current by every
/// sync): the diff is taken against it, so a reload reads nothing back.
pub fn sync(
    maps: &mut Maps,
    state: &mut PrefixSets,
    want: &PrefixSets,
    table: &PolicyTable,
    capacities: &Capacities,
) -> Result<SyncReport, SyncError> {
    check_capacity(want, capacities, |r| {
        let name = steer_common::name_from_bytes(&table.info[r as usize].set_name);
        if name.is_empty() {
            format!("rule {r}")
        } else {
            format!("set {name}")
        }
    })?;
    let started = std::time::Instant::now();
    let mut report = SyncReport::default();
    let planned = plan_writes(state, want, &mut report);
    let mut left = removals(state, want);
    report.diff_time = started.elapsed();
    let live_gen = maps.active_generation().map_err(|e| rolled_back(e, 0))?;
    let live = PolicyTable::read(maps, live_gen).map_err(|e| rolled_back(e, 0))?;
    let removed_rules: Vec<u32> = (0..MAX_RULES)
        .filter(|r| live.in_use(*r) && !table.in_use(*r))
        .collect();
    let new_rules: Vec<u32> = (0..MAX_RULES)
        .filter(|r| table.in_use(*r) && !live.in_use(*r))
        .collect();

    let start = maps.writes();
    // 2. New rules: nothing points at them yet, so both generations can learn them now, and
    // their counters start from zero.
    for rule in &new_rules {
        let learn =
            (0..GENERATIONS).try_for_each(|generation| write_rule(maps, generation, *rule, table));
        if let Err(e) = learn.and_then(|()| maps.reset_rule_counter(*rule)) {
            return Err(restore(maps, state, Vec::new(), &new_rules, e));
        }
    }
    report.policy_writes += maps.writes() - start;

    // 3. Additions and changes.
    let mut undo = Vec::new();
    let start = maps.writes();
    if let Err(e) = write_planned(maps, state, planned, &mut undo, &mut report) {
        return Err(restore(maps, state, undo, &new_rules, e));
    }
    report.prefix_writes += maps.writes() - start;

    // 4. Standby generation, then the flip.
    let start = maps.writes();
    let standby = 1 - live_gen;
    let mut staged = table.clone();
    for rule in &removed_rules {
        copy_rule(&mut staged, &live, *rule);
    }
    let flip = write_generation(maps, standby, &staged, &live).and_then(|changed| {
        if changed {
            maps.set_active_generation(standby).map(|()| true)
        } else {
            Ok(false)
        }
    });
    match flip {
        Ok(true) => report.flipped = Some((live_gen, standby)),
        Ok(false) => {}
        Err(e) => return Err(restore(maps, state, undo, &new_rules, e)),
    }
    report.policy_writes += maps.writes() - start;

    // 5. Removals, once the new verdicts are live. Retried once before giving up.
    let start = maps.writes();
    for attempt in 0..2 {
        match remove_all(maps, state, &mut left, &mut report) {
            Ok(()) => break,
            Err(e) if attempt == 1 => {
                return Err(SyncError::Incomplete {
                    source: e,
                    left: left.len(),
                });
            }
            Err(e) => log::warn!("removing stale prefixes failed ({e}); retrying"),
        }
    }
    report.prefix_writes += maps.writes() - start;

    // 6. Removed rules: no prefix points at them any more.
    let start = maps.writes();
    for rule in &removed_rules {
        for generation in 0..GENERATIONS {
            write_rule(maps, generation, *rule, table)
                .map_err(|e| SyncError::Incomplete { source: e, left: 0 })?;
        }
    }
    report.policy_writes += maps.writes() - start;
    report.kernel_time = started.elapsed() - report.diff_time;
    Ok(report)
}

/// Brings only the policy table to `table` (standby, then flip): what a failover does.
pub fn flip_policy(
    maps: &mut Maps,
    table: &PolicyTable,
) -> Result<Option<(u32, u32)>, DataplaneError> {
    let live_gen = maps.active_generation()?;
    let live = PolicyTable::read(maps, live_gen)?;
    let standby = 1 - live_gen;
    if !write_generation(maps, standby, table, &live)? {
        return Ok(None);
    }
    maps.set_active_generation(standby)?;
    Ok(Some((live_gen, standby)))
}

fn rolled_back(source: DataplaneError, undone: usize) -> SyncError {
    SyncError::RolledBack { source, undone }
}

fn write_rule(
    maps: &mut Maps,
    generation: u32,
    rule: u32,
    table: &PolicyTable,
) -> Result<(), DataplaneError> {
    if let Some(slots) = table.slots.get(&rule) {
        maps.set_lb_slots(generation, rule, slots)?;
    }
    maps.set_policy(generation, rule, table.entries[rule as usize])?;
    maps.set_rule_info(generation, rule, table.info[rule as usize])
}

fn copy_rule(to: &mut PolicyTable, from: &PolicyTable, rule: u32) {
    let r = rule as usize;
    to.entries[r] = from.entries[r];
    to.info[r] = from.info[r];
    match from.slots.get(&rule) {
        Some(s) => to.slots.insert(rule, s.clone()),
        None => to.slots.remove(&rule),
    };
}

/// Writes `table` into `generation`, only where it differs from what that generation holds.
/// Returns whether the table differs from `live` at all (if not, no flip is needed).
fn write_generation(
    maps: &mut Maps,
    generation: u32,
    table: &PolicyTable,
    live: &PolicyTable,
) -> Result<bool, DataplaneError> {
    let held = PolicyTable::read(maps, generation)?;
    for rule in 0..MAX_RULES {
        let r = rule as usize;
        if let Some(slots) = table.slots.get(&rule)
            && held.slots.get(&rule) != Some(slots)
        {
            maps.set_lb_slots(generation, rule, slots)?;
        }
        if held.entries[r] != table.entries[r] {
            maps.set_policy(generation, rule, table.entries[r])?;
        }
        if held.info[r] != table.info[r] {
            maps.set_rule_info(generation, rule, table.info[r])?;
        }
    }
    Ok(live != table)
}

/// The additions and changes of one map: (direction, IPv4?, prefix -> rule).
type PlannedWrites = (Direction, bool, Vec<(Prefix, u32)>);

/// The additions and changes, per map, counted into `report`.
fn plan_writes(
    state: &PrefixSets,
    want: &PrefixSets,
    report: &mut SyncReport,
) -> Vec<PlannedWrites> {
    let mut planned = Vec::new();
    for (dir, v4) in PrefixSets::KEYS {
        let have = state.map(dir, v4);
        let mut writes: Vec<(Prefix, u32)> = Vec::new();
        for (prefix, rule) in want.map(dir, v4) {
            match have.get(prefix) {
                Some(old) if old == rule => continue,
                Some(_) => report.per_rule.entry(*rule).or_default().changed += 1,
                None => report.per_rule.entry(*rule).or_default().added += 1,
            }
            writes.push((*prefix, *rule));
        }
        if !writes.is_empty() {
            planned.push((dir, v4, writes));
        }
    }
    planned
}

fn write_planned(
    maps: &mut Maps,
    state: &mut PrefixSets,
    planned: Vec<PlannedWrites>,
    undo: &mut Vec<Undo>,
    report: &mut SyncReport,
) -> Result<(), DataplaneError> {
    for (dir, v4, writes) in planned {
        let have = state.map(dir, v4);
        // Record the undo before writing: a failing batch may have written part of it.
        for (prefix, _) in &writes {
            undo.push(Undo {
                dir,
                prefix: *prefix,
                previous: have.get(prefix).copied(),
            });
        }
        let mode = if writes.len() > 16 {
            WriteMode::Batched
        } else {
            WriteMode::PerElement
        };
        report.batched |= maps.set_prefixes(dir, &writes, mode)? == WriteMode::Batched;
        let have = state.map_mut(dir, v4);
        for (prefix, rule) in writes {
            have.insert(prefix, rule);
        }
    }
    Ok(())
}

/// Undoes the additions and changes of a failed sync, and forgets the rules it introduced;
/// `state` follows.
fn restore(
    maps: &mut Maps,
    state: &mut PrefixSets,
    undo: Vec<Undo>,
    new_rules: &[u32],
    source: DataplaneError,
) -> SyncError {
    let undone = undo.len();
    for u in undo.into_iter().rev() {
        let result = match u.previous {
            Some(rule) => maps.set_prefix(u.dir, u.prefix, rule),
            None => maps.remove_prefix(u.dir, u.prefix).map(|_| ()),
        };
        if let Err(undo) = result {
            return SyncError::RollbackFailed { source, undo };
        }
        let have = state.map_mut(u.dir, u.prefix.is_v4());
        match u.previous {
            Some(rule) => have.insert(u.prefix, rule),
            None => have.remove(&u.prefix),
        };
    }
    let unused = PolicyTable::default();
    for rule in new_rules {
        for generation in 0..GENERATIONS {
            if let Err(undo) = write_rule(maps, generation, *rule, &unused) {
                return SyncError::RollbackFailed { source, undo };
            }
        }
    }
    SyncError::RolledBack { source, undone }
}

fn removals(state: &PrefixSets, want: &PrefixSets) -> Vec<(Direction, Prefix)> {
    let mut out = Vec::new();
    for (dir, v4) in PrefixSets::KEYS {
        let keep: &HashMap<Prefix, u32> = want.map(dir, v4);
        out.extend(
            state
                .map(dir, v4)
                .keys()
                .filter(|p| !keep.contains_key(*p))
                .map(|p| (dir, *p)),
        );
    }
    out
}

fn remove_all(
    maps: &mut Maps,
    state: &mut PrefixSets,
    left: &mut Vec<(Direction, Prefix)>,
    report: &mut SyncReport,
) -> Result<(), DataplaneError> {
    let mut done = HashSet::new();
    let result = left.iter().try_for_each(|(dir, prefix)| {
        maps.remove_prefix(*dir, *prefix)?;
        if let Some(rule) = state.map_mut(*dir, prefix.is_v4()).remove(prefix) {
            report.per_rule.entry(rule).or_default().removed += 1;
        }
        done.insert((*dir, *prefix));
        Ok(())
    });
    left.retain(|k| !done.contains(k));
    result
}
