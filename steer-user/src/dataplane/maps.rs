//! Typed access to every steer map. Keys and values are the steer-common types; callers speak in
//! prefixes, rule ids, generations and counters, never in raw bytes.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    sync::{Arc, Mutex, MutexGuard},
};

use std::os::fd::AsFd;

use aya::{
    Ebpf, Pod,
    maps::{
        Array, IterableMap, LpmTrie, Map, MapData, MapError, PerCpuArray, PerCpuValues,
        lpm_trie::Key,
    },
    util::nr_cpus,
};
use steer_common::{
    Counter, GENERATIONS, LB_BLOCKS, LB_SLOTS, LbSlot, LocalRef, MAX_RULES, MAX_WANS, PolicyEntry,
    RuleInfo, Settings, WanInfo, action, lb_index, map_names as names, path, policy_index,
    rule_info_index, rule_wan_index,
};

use super::{
    DataplaneError,
    ordered::{CondMaps, Resolved},
    range_set::{Family as RangeFamily, RangeSet, SetError, V4, V6},
    sys,
    word::MappedWord,
};
use crate::model::{range::PrefixV4, range6::PrefixV6};
use crate::{
    model::{
        Direction, Family, FamilyTable, LocalKind, LocalSet, PolicyTable, PrefixMap, PrefixRules,
        PrefixSets, Rule,
    },
    prefix::Prefix,
};

impl From<SetError> for DataplaneError {
    fn from(e: SetError) -> Self {
        DataplaneError::Map {
            map: e.map,
            op: e.op,
            source: Box::new(e.source),
        }
    }
}

/// Handles on all steer maps, from a freshly loaded object or from the pins of a running one.
pub struct Maps {
    dst_v4: RangeSet<V4>,
    dst_v6: RangeSet<V6>,
    src_v4: RangeSet<V4>,
    src_v6: RangeSet<V6>,
    policy: Array<MapData, PolicyEntry>,
    lb: Array<MapData, LbSlot>,
    active: Array<MapData, u32>,
    settings: SettingsWord,
    stats_rule: PerCpuArray<MapData, Counter>,
    stats_wan: PerCpuArray<MapData, Counter>,
    stats_path: PerCpuArray<MapData, Counter>,
    stats_rule_wan: PerCpuArray<MapData, Counter>,
    local_v4: LpmTrie<MapData, [u8; 4], LocalRef>,
    local_v6: LpmTrie<MapData, [u8; 16], LocalRef>,
    rule_info: Array<MapData, RuleInfo>,
    wan_info: Array<MapData, WanInfo>,
    /// Element writes issued through this handle (a batch of n counts n).
    writes: u64,
    /// Fault injection for tests: (writes before the fault, failing writes left).
    fail_after: Option<(u64, u32)>,
    /// Roles of the generations and the slot-table pool (see [`super::generations`]).
    pub(super) book: super::generations::Book,
    /// `ACTIVE` mapped into memory, when the kernel allows it (see [`super::word`]).
    active_word: Option<super::word::MappedWord>,
    /// The condition maps of the ordered rules.
    ordered: CondMaps,
    /// What the live condition bank holds, once this handle wrote it (or found it empty).
    ordered_live: Option<Resolved>,
    /// What the other bank holds after a flip: live again if [`Maps::undo_ordered`] runs.
    ordered_before: Option<Resolved>,
}

impl std::fmt::Debug for Maps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maps").finish_non_exhaustive()
    }
}

/// Map `name`, taken from the object or the pins, opened as its steer type.
pub(super) fn take_as<T: TryFrom<Map, Error = MapError>>(
    take: &mut impl FnMut(&'static str) -> Result<Map, DataplaneError>,
    name: &'static str,
) -> Result<T, DataplaneError> {
    take(name)?.try_into().map_err(map_err(name, "open"))
}

pub(super) fn map_err(
    map: &'static str,
    op: &'static str,
) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map {
        map,
        op,
        source: Box::new(source),
    }
}

/// `SETTINGS[0]`, the classifier's runtime switches. Three owners write it, each only its own
/// flags: the map sync ([`super::sync`]) every flag but the learned hosts' and `KEEP_MARK`, the
/// DNS learner `HAS_LEARNED_V4`/`HAS_LEARNED_V6` (through [`super::learned::LearnedMaps`]), on
/// the threads that relay DNS answers, and the owner of steer's nftables table `KEEP_MARK`
/// ([`Maps::set_keep_mark`]). Every change is a read and a write under one lock, so
/// neither writer can undo the other's.
#[derive(Clone)]
pub struct SettingsWord(Arc<Mutex<Array<MapData, Settings>>>);

impl std::fmt::Debug for SettingsWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettingsWord").finish_non_exhaustive()
    }
}

impl SettingsWord {
    pub(super) fn new(map: Array<MapData, Settings>) -> Self {
        SettingsWord(Arc::new(Mutex::new(map)))
    }

    fn lock(&self) -> MutexGuard<'_, Array<MapData, Settings>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self) -> Result<Settings, DataplaneError> {
        self.lock()
            .get(&0, 0)
            .map_err(map_err(names::SETTINGS, "read"))
    }

    fn set(&self, settings: Settings) -> Result<(), DataplaneError> {
        self.lock()
            .set(0, settings, 0)
            .map_err(map_err(names::SETTINGS, "write"))
    }

    /// Gives the flags of `mask` their values in `flags` and keeps the others, in one read
    /// and one write under the lock; writes only when the word changes, once `before_write`
    /// allowed it. Returns whether it wrote.
    pub(super) fn update(
        &self,
        mask: u32,
        flags: u32,
        before_write: impl FnOnce() -> Result<(), DataplaneError>,
    ) -> Result<bool, DataplaneError> {
        let mut map = self.lock();
        let have = map.get(&0, 0).map_err(map_err(names::SETTINGS, "read"))?;
        let want = Settings {
            flags: (have.flags & !mask) | (flags & mask),
            ..have
        };
        if want == have {
            return Ok(false);
        }
        before_write()?;
        map.set(0, want, 0)
            .map_err(map_err(names::SETTINGS, "write"))?;
        Ok(true)
    }
}

impl Maps {
    /// Takes the maps out of a loaded object.
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<Self, DataplaneError> {
        Self::build(|name| ebpf.take_map(name).ok_or(DataplaneError::MissingMap(name)))
    }

    /// Opens the maps pinned under the pin directory `root` (read or write, no lock: readers
    /// such as `steer dump` use this while the daemon runs).
    pub fn from_pins(root: &Path) -> Result<Self, DataplaneError> {
        Self::build(|name| open_pin(root, name))
    }

    fn build(
        mut take: impl FnMut(&'static str) -> Result<Map, DataplaneError>,
    ) -> Result<Self, DataplaneError> {
        macro_rules! typed {
            ($name:expr) => {
                take_as(&mut take, $name)?
            };
        }
        fn ranges<F: RangeFamily>(
            take: &mut impl FnMut(&'static str) -> Result<Map, DataplaneError>,
            map: PrefixMap,
        ) -> Result<RangeSet<F>, DataplaneError> {
            Ok(RangeSet::new((map.map_name(), take(map.map_name())?))?)
        }
        let (dst_v4, src_v4) = (
            ranges(&mut take, PrefixMap::DstV4)?,
            ranges(&mut take, PrefixMap::SrcV4)?,
        );
        let (dst_v6, src_v6) = (
            ranges(&mut take, PrefixMap::DstV6)?,
            ranges(&mut take, PrefixMap::SrcV6)?,
        );
        let active_word;
        Ok(Maps {
            dst_v4,
            dst_v6,
            src_v4,
            src_v6,
            policy: typed!(names::POLICY),
            lb: typed!(names::LB),
            active: {
                let map = take(names::ACTIVE)?;
                active_word = match &map {
                    Map::Array(data) => MappedWord::map(data.fd().as_fd()),
                    _ => None,
                };
                map.try_into().map_err(map_err(names::ACTIVE, "open"))?
            },
            settings: SettingsWord::new(typed!(names::SETTINGS)),
            stats_rule: typed!(names::STATS_RULE),
            stats_wan: typed!(names::STATS_WAN),
            stats_path: typed!(names::STATS_PATH),
            stats_rule_wan: typed!(names::STATS_RULE_WAN),
            local_v4: typed!(names::LOCAL_V4),
            local_v6: typed!(names::LOCAL_V6),
            rule_info: typed!(names::RULE_INFO),
            wan_info: typed!(names::WAN_INFO),
            writes: 0,
            fail_after: None,
            book: Default::default(),
            active_word,
            ordered: CondMaps::build(&mut take)?,
            ordered_live: None,
            ordered_before: None,
        })
    }

    /// Element writes issued through this handle so far (prefixes, policy entries, slots,
    /// names, the generation word). A batched write of n elements counts n.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Fault injection for tests of the failure paths: the write that would pass `n` counted
    /// writes fails without reaching the kernel, and so does every write after it, `times`
    /// times in all; then writes work again (so a rollback or a retry can be observed).
    #[doc(hidden)]
    pub fn fail_writes_after(&mut self, n: u64, times: u32) {
        self.fail_after = Some((n, times));
    }

    /// Fault injection for tests: the next fresh IPv4 range table of `dir` fails to build,
    /// after its set's record was written (see [`RangeSet::fail_next_table`]).
    #[doc(hidden)]
    pub fn fail_next_range_table(&mut self, dir: Direction) {
        self.ranges_v4_mut(dir).fail_next_table();
    }

    /// Counts `n` element writes, or refuses them when an injected fault says so.
    fn meter(&mut self, n: u64) -> Result<(), DataplaneError> {
        self.injected_fault(n)?;
        self.writes += n;
        Ok(())
    }

    /// Refuses `n` element writes when an injected fault says so (counts nothing).
    fn injected_fault(&mut self, n: u64) -> Result<(), DataplaneError> {
        if let Some((limit, left)) = self.fail_after
            && self.writes + n > limit
        {
            self.fail_after = (left > 1).then_some((limit, left - 1));
            return Err(DataplaneError::InjectedFault { after: limit });
        }
        Ok(())
    }

    /// Counts the tables and records the range sets published while writing prefixes.
    fn meter_published(&mut self) {
        self.writes += [
            self.dst_v4.take_published(),
            self.dst_v6.take_published(),
            self.src_v4.take_published(),
            self.src_v6.take_published(),
        ]
        .iter()
        .sum::<u64>();
    }

    // ---- prefixes -------------------------------------------------------------------------

    /// Maps `prefix` to `rule` (insert or overwrite).
    pub fn set_prefix(
        &mut self,
        dir: Direction,
        prefix: Prefix,
        rule: u32,
    ) -> Result<(), DataplaneError> {
        self.meter(1)?;
        match prefix {
            Prefix::V4 { addr, len } => self.ranges_v4_mut(dir).insert((addr.into(), len), rule)?,
            Prefix::V6 { addr, len } => self.ranges_v6_mut(dir).insert((addr.into(), len), rule)?,
        }
        self.meter_published();
        Ok(())
    }

    /// Removes `prefix`; returns whether it was there.
    pub fn remove_prefix(
        &mut self,
        dir: Direction,
        prefix: Prefix,
    ) -> Result<bool, DataplaneError> {
        self.meter(1)?;
        Ok(match prefix {
            Prefix::V4 { addr, len } => self.ranges_v4_mut(dir).remove((addr.into(), len))?,
            Prefix::V6 { addr, len } => self.ranges_v6_mut(dir).remove((addr.into(), len))?,
        })
    }

    /// Removes many prefixes of one map (one direction and family), in one commit (which on
    /// failure leaves the set as it was, to be rewritten whole by its next write). Returns how
    /// many of them, from the first, are known removed (all of them on success). The prefixes
    /// go to the range set as its packed keys, with no other copy: a million removals must fit
    /// a router's memory.
    pub fn remove_prefixes<'a>(
        &mut self,
        dir: Direction,
        prefixes: impl ExactSizeIterator<Item = &'a Prefix> + Clone,
    ) -> (usize, Result<(), DataplaneError>) {
        let count = prefixes.len();
        if self.fail_after.is_some() {
            // Element by element, so an injected fault hits exactly where it is armed.
            for (done, prefix) in prefixes.enumerate() {
                if let Err(e) = self.remove_prefix(dir, *prefix) {
                    return (done, Err(e));
                }
            }
            return (count, Ok(()));
        }
        if let Err(e) = self.meter(count as u64) {
            return (0, Err(e));
        }
        let result = match prefixes.clone().next() {
            None => Ok(()),
            Some(Prefix::V4 { .. }) => {
                let raw: Vec<PrefixV4> = prefixes.filter_map(raw_v4).collect();
                assert_eq!(raw.len(), count, "one family a call");
                self.ranges_v4_mut(dir)
                    .remove_many(raw)
                    .map(|_| ())
                    .map_err(Into::into)
            }
            Some(Prefix::V6 { .. }) => {
                let raw: Vec<PrefixV6> = prefixes.filter_map(raw_v6).collect();
                assert_eq!(raw.len(), count, "one family a call");
                self.ranges_v6_mut(dir)
                    .remove_many(raw)
                    .map(|_| ())
                    .map_err(Into::into)
            }
        };
        self.meter_published();
        (if result.is_ok() { count } else { 0 }, result)
    }

    /// Builds the range tables afresh from their records and publishes them (an adopting
    /// daemon: see [`RangeSet::rebuild`]).
    pub(super) fn rebuild_range_tables(&mut self) -> Result<(), DataplaneError> {
        self.dst_v4.rebuild()?;
        self.src_v4.rebuild()?;
        self.dst_v6.rebuild()?;
        self.src_v6.rebuild()?;
        self.meter_published();
        Ok(())
    }

    /// Every prefix of one direction that contains `ip`, with its rule, longest first.
    pub fn containing(
        &self,
        dir: Direction,
        ip: IpAddr,
    ) -> Result<Vec<(Prefix, u32)>, DataplaneError> {
        let map = PrefixMap::new(dir, ip.is_ipv4());
        let mut out: Vec<(Prefix, u32)> = self
            .prefixes(map)?
            .into_iter()
            .filter(|(p, _)| p.contains(ip))
            .collect();
        out.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(out)
    }

    /// Every prefix of one map with its rule, in address order.
    pub fn prefixes(&self, map: PrefixMap) -> Result<Vec<(Prefix, u32)>, DataplaneError> {
        let dir = map.direction();
        Ok(if map.is_v4() {
            let raw = self.ranges_v4(dir).dump()?;
            raw.into_iter()
                .map(|((a, len), r)| (prefix_v4(Ipv4Addr::from(a), len.into()), r))
                .collect()
        } else {
            let raw = self.ranges_v6(dir).dump()?;
            raw.into_iter()
                .map(|((a, len), r)| (prefix_v6(Ipv6Addr::from(a), len.into()), r))
                .collect()
        })
    }

    /// What the four range sets hold, sharing their entries (no copy): the daemon's mirror.
    pub fn held_prefixes(&mut self) -> Result<PrefixSets, DataplaneError> {
        let mut out = PrefixSets::default();
        for map in PrefixMap::ALL {
            *out.map_mut(map) = self.held_map(map)?;
        }
        Ok(out)
    }

    /// What one map's range set holds, sharing its entries.
    pub fn held_map(&mut self, map: PrefixMap) -> Result<PrefixRules, DataplaneError> {
        let dir = map.direction();
        Ok(if map.is_v4() {
            PrefixRules::of_v4(self.ranges_v4_mut(dir).shared_entries()?)
        } else {
            PrefixRules::of_v6(self.ranges_v6_mut(dir).shared_entries()?)
        })
    }

    /// What all four prefix maps hold, as the kernel's records say.
    pub fn prefix_sets(&self) -> Result<PrefixSets, DataplaneError> {
        let mut out = PrefixSets::default();
        for map in PrefixMap::ALL {
            out.map_mut(map).extend(self.prefixes(map)?);
        }
        Ok(out)
    }

    /// Writes many prefixes of one direction, of either family, in one commit of each
    /// family's range set (element by element under fault injection, so that a fault hits
    /// exactly where it is armed).
    pub fn set_prefixes(
        &mut self,
        dir: Direction,
        entries: &[(Prefix, u32)],
    ) -> Result<(), DataplaneError> {
        if self.fail_after.is_some() {
            for (prefix, rule) in entries {
                self.set_prefix(dir, *prefix, *rule)?;
            }
            return Ok(());
        }
        self.meter(entries.len() as u64)?;
        let (mut raw4, mut raw6) = (Vec::new(), Vec::new());
        for &(prefix, rule) in entries {
            match prefix {
                Prefix::V4 { addr, len } => raw4.push(((addr.into(), len), rule)),
                Prefix::V6 { addr, len } => raw6.push(((addr.into(), len), rule)),
            }
        }
        let written = (|| {
            if !raw4.is_empty() {
                self.ranges_v4_mut(dir).insert_many(&raw4)?;
            }
            if !raw6.is_empty() {
                self.ranges_v6_mut(dir).insert_many(&raw6)?;
            }
            Ok(())
        })();
        self.meter_published();
        written
    }

    /// Gives each prefix of `writes` its rule in `map`; its other prefixes stay. One commit
    /// (element by element under fault injection); into an empty map the writes' entries are
    /// shared, not copied.
    pub fn write_map(
        &mut self,
        map: PrefixMap,
        writes: &PrefixRules,
    ) -> Result<(), DataplaneError> {
        let dir = map.direction();
        if self.fail_after.is_some() {
            for (prefix, rule) in writes.iter() {
                self.set_prefix(dir, prefix, rule)?;
            }
            return Ok(());
        }
        self.meter(writes.len() as u64)?;
        let written = if map.is_v4() {
            self.ranges_v4_mut(dir).write_entries(writes.entries_v4())
        } else {
            self.ranges_v6_mut(dir).write_entries(writes.entries_v6())
        };
        self.meter_published();
        Ok(written?)
    }

    /// [`Maps::assign_map`] for a change of `removed` removals: one commit, so an injected
    /// fault refuses it whole (the removals element by element could fail part-way).
    pub fn replace_map(
        &mut self,
        map: PrefixMap,
        rules: &PrefixRules,
        removed: usize,
    ) -> Result<(), DataplaneError> {
        // Checked as those writes; counted as the prefixes that did change.
        self.injected_fault(removed as u64)?;
        self.assign_map(map, rules)
    }

    /// Brings `map` to hold exactly `rules` (sharing their entries) in one commit: what a
    /// rollback puts back. Counts a write per prefix that changed; never fault-injected.
    pub fn assign_map(
        &mut self,
        map: PrefixMap,
        rules: &PrefixRules,
    ) -> Result<(), DataplaneError> {
        let dir = map.direction();
        let changed = if map.is_v4() {
            self.ranges_v4_mut(dir).assign(rules.entries_v4())
        } else {
            self.ranges_v6_mut(dir).assign(rules.entries_v6())
        };
        self.meter_published();
        self.writes += changed? as u64;
        Ok(())
    }

    /// Lets go of the arrays a burst of small edits left mapped (see `range_set::Mapped`).
    pub fn unmap_ranges(&mut self) {
        self.dst_v4.unmap();
        self.src_v4.unmap();
        self.dst_v6.unmap();
        self.src_v6.unmap();
    }

    /// Bytes of one map's range table and record in the kernel (those this handle wrote).
    pub fn range_bytes(&self, map: PrefixMap) -> u64 {
        let dir = map.direction();
        if map.is_v4() {
            self.ranges_v4(dir).kernel_bytes()
        } else {
            self.ranges_v6(dir).kernel_bytes()
        }
    }

    fn ranges_v4(&self, dir: Direction) -> &RangeSet<V4> {
        match dir {
            Direction::Dst => &self.dst_v4,
            Direction::Src => &self.src_v4,
        }
    }
    fn ranges_v6(&self, dir: Direction) -> &RangeSet<V6> {
        match dir {
            Direction::Dst => &self.dst_v6,
            Direction::Src => &self.src_v6,
        }
    }
    fn ranges_v4_mut(&mut self, dir: Direction) -> &mut RangeSet<V4> {
        match dir {
            Direction::Dst => &mut self.dst_v4,
            Direction::Src => &mut self.src_v4,
        }
    }
    fn ranges_v6_mut(&mut self, dir: Direction) -> &mut RangeSet<V6> {
        match dir {
            Direction::Dst => &mut self.dst_v6,
            Direction::Src => &mut self.src_v6,
        }
    }

    // ---- local destinations ----------------------------------------------------------------

    /// Makes `prefix` local for `kind` (insert or overwrite).
    pub fn set_local(&mut self, prefix: Prefix, kind: LocalKind) -> Result<(), DataplaneError> {
        self.meter(1)?;
        let value = LocalRef { kind: kind.raw() };
        let err = map_err(local_name(&prefix), "write");
        match prefix {
            Prefix::V4 { addr, len } => {
                self.local_v4
                    .insert(&Key::new(len.into(), addr.octets()), value, 0)
            }
            Prefix::V6 { addr, len } => {
                self.local_v6
                    .insert(&Key::new(len.into(), addr.octets()), value, 0)
            }
        }
        .map_err(err)
    }

    /// Makes `prefix` no longer local.
    pub fn remove_local(&mut self, prefix: Prefix) -> Result<(), DataplaneError> {
        self.meter(1)?;
        let err = map_err(local_name(&prefix), "remove");
        let result = match prefix {
            Prefix::V4 { addr, len } => self.local_v4.remove(&Key::new(len.into(), addr.octets())),
            Prefix::V6 { addr, len } => self.local_v6.remove(&Key::new(len.into(), addr.octets())),
        };
        match result {
            Err(MapError::KeyNotFound) | Ok(()) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    /// Every local destination with its reason.
    pub fn locals(&self) -> Result<LocalSet, DataplaneError> {
        let mut out = LocalSet::new();
        for entry in self.local_v4.iter() {
            let (key, value) = entry.map_err(map_err(names::LOCAL_V4, "read"))?;
            let prefix = prefix_v4(Ipv4Addr::from(key.data()), key.prefix_len());
            out.extend(LocalKind::from_raw(value.kind).map(|k| (prefix, k)));
        }
        for entry in self.local_v6.iter() {
            let (key, value) = entry.map_err(map_err(names::LOCAL_V6, "read"))?;
            let prefix = prefix_v6(Ipv6Addr::from(key.data()), key.prefix_len());
            out.extend(LocalKind::from_raw(value.kind).map(|k| (prefix, k)));
        }
        Ok(out)
    }

    /// The longest local prefix containing `ip`, with its reason.
    pub fn local_of(&self, ip: IpAddr) -> Result<Option<(Prefix, LocalKind)>, DataplaneError> {
        Ok(self
            .locals()?
            .into_iter()
            .filter(|(p, _)| p.contains(ip))
            .max_by_key(|(p, _)| p.len()))
    }

    // ---- policy tables and the generation word --------------------------------------------

    pub fn policy(
        &self,
        generation: u32,
        family: Family,
        rule: u32,
    ) -> Result<PolicyEntry, DataplaneError> {
        self.policy
            .get(&policy_index(generation, family.raw(), rule), 0)
            .map_err(map_err(names::POLICY, "read"))
    }

    /// The policy entries of every rule id of one family of `generation`, in one read.
    pub fn policies(
        &self,
        generation: u32,
        family: Family,
    ) -> Result<Vec<PolicyEntry>, DataplaneError> {
        read_range(
            &self.policy,
            names::POLICY,
            policy_index(generation, family.raw(), 0),
            MAX_RULES,
        )
    }

    pub fn set_policy(
        &mut self,
        generation: u32,
        family: Family,
        rule: u32,
        entry: PolicyEntry,
    ) -> Result<(), DataplaneError> {
        check_rule(rule)?;
        self.meter(1)?;
        self.policy
            .set(policy_index(generation, family.raw(), rule), entry, 0)
            .map_err(map_err(names::POLICY, "write"))
    }

    /// The slots rule `rule` of `generation` balances over (its entry's block).
    pub fn lb_slots(
        &self,
        generation: u32,
        family: Family,
        rule: u32,
    ) -> Result<Vec<LbSlot>, DataplaneError> {
        self.lb_block(self.policy(generation, family, rule)?.lb)
    }

    /// The slots block `block` of the slot-table pool holds.
    pub fn lb_block(&self, block: u32) -> Result<Vec<LbSlot>, DataplaneError> {
        check_block(block)?;
        read_range(&self.lb, names::LB, lb_index(block, 0), LB_SLOTS)
    }

    /// Writes block `block` of the slot-table pool (one batched write).
    pub fn set_lb_block(
        &mut self,
        block: u32,
        slots: &[LbSlot; LB_SLOTS as usize],
    ) -> Result<(), DataplaneError> {
        check_block(block)?;
        self.meter(u64::from(LB_SLOTS))?;
        write_range(&mut self.lb, names::LB, lb_index(block, 0), slots)
    }

    /// Writes the entries of every rule id of one family of `generation` (one batched write).
    pub fn set_policies(
        &mut self,
        generation: u32,
        family: Family,
        entries: &[PolicyEntry],
    ) -> Result<(), DataplaneError> {
        if entries.len() != MAX_RULES as usize {
            return Err(DataplaneError::RuleOutOfRange(entries.len() as u32));
        }
        self.meter(u64::from(MAX_RULES))?;
        let first = policy_index(generation, family.raw(), 0);
        write_range(&mut self.policy, names::POLICY, first, entries)
    }

    /// Writes the names of every rule id of `generation` (one batched write).
    pub fn set_rule_infos(
        &mut self,
        generation: u32,
        infos: &[RuleInfo],
    ) -> Result<(), DataplaneError> {
        if infos.len() != MAX_RULES as usize {
            return Err(DataplaneError::RuleOutOfRange(infos.len() as u32));
        }
        self.meter(u64::from(MAX_RULES))?;
        let first = rule_info_index(generation, 0);
        write_range(&mut self.rule_info, names::RULE_INFO, first, infos)
    }

    pub fn rule_info(&self, generation: u32, rule: u32) -> Result<RuleInfo, DataplaneError> {
        self.rule_info
            .get(&rule_info_index(generation, rule), 0)
            .map_err(map_err(names::RULE_INFO, "read"))
    }

    /// The names and kinds of every rule id of `generation`, in one read.
    pub fn rule_infos(&self, generation: u32) -> Result<Vec<RuleInfo>, DataplaneError> {
        read_range(
            &self.rule_info,
            names::RULE_INFO,
            rule_info_index(generation, 0),
            MAX_RULES,
        )
    }

    /// The rules of `generation` in use, by id, from one read: the one decoder of
    /// `RULE_INFO`, for a restarted daemon, `steer dump` and `steer explain` alike.
    pub fn rules(&self, generation: u32) -> Result<BTreeMap<u32, Rule>, DataplaneError> {
        Ok((0..)
            .zip(self.rule_infos(generation)?)
            .filter_map(|(id, info)| Some((id, Rule::from_info(id, &info)?)))
            .collect())
    }

    /// What generation `generation` of the policy table holds, as the model says it (entries
    /// without their block numbers, each balanced rule with its slots): a few batched reads,
    /// one per map and family and one per balanced rule.
    pub fn policy_table(&self, generation: u32) -> Result<PolicyTable, DataplaneError> {
        let mut table = PolicyTable {
            info: self.rule_infos(generation)?,
            ..PolicyTable::default()
        };
        for family in Family::ALL {
            let mut entries = self.policies(generation, family)?;
            let mut slots = BTreeMap::new();
            for (rule, entry) in (0..).zip(entries.iter_mut()) {
                if entry.action == action::BALANCE {
                    let held: [LbSlot; LB_SLOTS as usize] =
                        self.lb_block(entry.lb)?.try_into().expect("LB_SLOTS slots");
                    slots.insert(rule, Box::new(held));
                }
                entry.lb = 0;
            }
            *table.family_mut(family) = FamilyTable { entries, slots };
        }
        Ok(table)
    }

    pub fn set_rule_info(
        &mut self,
        generation: u32,
        rule: u32,
        info: RuleInfo,
    ) -> Result<(), DataplaneError> {
        check_rule(rule)?;
        self.meter(1)?;
        self.rule_info
            .set(rule_info_index(generation, rule), info, 0)
            .map_err(map_err(names::RULE_INFO, "write"))
    }

    pub fn wan_info(&self, slot: u32) -> Result<WanInfo, DataplaneError> {
        self.wan_info
            .get(&slot, 0)
            .map_err(map_err(names::WAN_INFO, "read"))
    }

    /// The WAN slots in use, by slot: the one decoder of `WAN_INFO`.
    pub fn wans(&self) -> Result<BTreeMap<u32, WanName>, DataplaneError> {
        let mut wans = BTreeMap::new();
        for slot in 0..MAX_WANS {
            let info = self.wan_info(slot)?;
            if info.in_use != 0 {
                let name = steer_common::name_from_bytes(&info.name).to_owned();
                wans.insert(
                    slot,
                    WanName {
                        name,
                        mark: info.mark,
                        table: info.table,
                    },
                );
            }
        }
        Ok(wans)
    }

    pub fn set_wan_info(&mut self, slot: u32, info: WanInfo) -> Result<(), DataplaneError> {
        self.meter(1)?;
        self.wan_info
            .set(slot, info, 0)
            .map_err(map_err(names::WAN_INFO, "write"))
    }

    /// The generation the classifier reads now.
    pub fn active_generation(&self) -> Result<u32, DataplaneError> {
        if let Some(word) = &self.active_word {
            return Ok(word.load() % GENERATIONS);
        }
        self.active
            .get(&0, 0)
            .map(|g| g % GENERATIONS)
            .map_err(map_err(names::ACTIVE, "read"))
    }

    /// Makes `generation` live with one word write: every packet after it sees the new table.
    pub fn set_active_generation(&mut self, generation: u32) -> Result<(), DataplaneError> {
        self.meter(1)?;
        match &self.active_word {
            Some(word) => word.store(generation % GENERATIONS),
            None => self
                .active
                .set(0, generation % GENERATIONS, 0)
                .map_err(map_err(names::ACTIVE, "write"))?,
        }
        self.note_flip(generation % GENERATIONS);
        Ok(())
    }

    /// Whether the generation word is written by a store into mapped memory (not a syscall).
    pub fn active_is_mapped(&self) -> bool {
        self.active_word.is_some()
    }

    pub fn settings(&self) -> Result<Settings, DataplaneError> {
        self.settings.get()
    }

    /// Writes the whole settings word (tests and benchmarks; the map sync and the DNS learner
    /// change only their own flags, [`Maps::set_flags`]).
    pub fn set_settings(&mut self, settings: Settings) -> Result<(), DataplaneError> {
        self.meter(1)?;
        self.settings.set(settings)
    }

    /// Gives the settings flags of `mask` their values in `flags` and keeps the others (see
    /// [`SettingsWord`]); writes (and counts a write) only when that changes the word.
    pub fn set_flags(&mut self, mask: u32, flags: u32) -> Result<(), DataplaneError> {
        let word = self.settings.clone();
        word.update(mask, flags, || self.meter(1)).map(|_| ())
    }

    /// Whether the classifier keeps a mark a packet arrives with
    /// (`settings_flags::KEEP_MARK`): the flag of the nftables table's owner, on while
    /// br_netfilter runs netfilter's prerouting on bridged packets before the classifier.
    pub fn set_keep_mark(&self, on: bool) -> Result<(), DataplaneError> {
        let flag = steer_common::settings_flags::KEEP_MARK;
        self.settings
            .update(flag, if on { flag } else { 0 }, || Ok(()))
            .map(|_| ())
    }

    /// A handle on the settings word for its other writer, the DNS learner.
    pub(super) fn settings_word(&self) -> SettingsWord {
        self.settings.clone()
    }

    // ---- ordered rules ----------------------------------------------------------------------

    /// The condition maps (read-only access: `steer explain`, `steer dump`).
    pub fn ordered(&self) -> &CondMaps {
        &self.ordered
    }

    /// Brings the ordered rules to `want`: the other bank written whole, then made live with
    /// one word. Returns the bank that was live before when it flipped (for
    /// [`Maps::undo_ordered`]), `None` when the live bank already held `want`.
    pub fn sync_ordered(&mut self, want: &Resolved) -> Result<Option<u32>, DataplaneError> {
        if self.ordered_live.as_ref() == Some(want) {
            return Ok(None);
        }
        let live = self.ordered.live_bank()?;
        if self.ordered_live.is_none()
            && want.tables.is_empty()
            && self.ordered.live()?.used == [0, 0]
        {
            self.ordered_live = Some(want.clone());
            return Ok(None);
        }
        self.meter(1)?;
        let next = live ^ 1;
        self.writes += self.ordered.write_bank(next, want)?;
        self.ordered.set_live_bank(next)?;
        self.ordered_before = self.ordered_live.replace(want.clone());
        Ok(Some(live))
    }

    /// Resolves the live rules' `in` interfaces again and rewrites them when an index changed
    /// (a LAN interface deleted or created again). Returns whether it wrote.
    pub fn refresh_ordered_interfaces(&mut self) -> Result<bool, DataplaneError> {
        let Some(live) = &self.ordered_live else {
            return Ok(false);
        };
        if live.tables.ins.is_empty() {
            return Ok(false);
        }
        let want = Resolved::new(&live.tables, |name| super::ifindex(name).ok());
        Ok(self.sync_ordered(&want)?.is_some())
    }

    /// Whether the live bank holds ordered rules (the classifier must look at them).
    pub fn ordered_in_use(&self) -> Result<bool, DataplaneError> {
        match &self.ordered_live {
            Some(live) => Ok(!live.tables.is_empty()),
            None => Ok(self.ordered.live()?.used != [0, 0]),
        }
    }

    /// Makes `bank` live again (it still holds the rules it had): undoes a
    /// [`Maps::sync_ordered`] whose sync failed before its own flip.
    pub fn undo_ordered(&mut self, bank: u32) -> Result<(), DataplaneError> {
        self.ordered_live = self.ordered_before.take();
        self.ordered.set_live_bank(bank)
    }

    // ---- counters -------------------------------------------------------------------------

    pub fn rule_counter(&self, rule: u32) -> Result<Counter, DataplaneError> {
        sum_cpus(&self.stats_rule, rule, names::STATS_RULE)
    }

    pub fn wan_counter(&self, wan: u32) -> Result<Counter, DataplaneError> {
        sum_cpus(&self.stats_wan, wan, names::STATS_WAN)
    }

    /// What `rule` sent to WAN slot `wan`.
    pub fn rule_wan_counter(&self, rule: u32, wan: u32) -> Result<Counter, DataplaneError> {
        sum_cpus(
            &self.stats_rule_wan,
            rule_wan_index(rule, wan),
            names::STATS_RULE_WAN,
        )
    }

    /// One of `steer_common::path::*`.
    pub fn path_counter(&self, which: u32) -> Result<Counter, DataplaneError> {
        sum_cpus(&self.stats_path, which, names::STATS_PATH)
    }

    /// Zeroes every counter (rules, WANs, paths).
    pub fn reset_counters(&mut self) -> Result<(), DataplaneError> {
        for i in 0..MAX_RULES {
            self.reset_rule_counter(i)?;
        }
        for i in 0..MAX_WANS {
            self.reset_wan_counter(i)?;
        }
        for i in 0..path::COUNT {
            reset(&mut self.stats_path, i, names::STATS_PATH)?;
        }
        Ok(())
    }

    /// Zeroes one rule's counters (a rule id that starts to mean another set), its per-WAN
    /// ones included.
    pub fn reset_rule_counter(&mut self, rule: u32) -> Result<(), DataplaneError> {
        for wan in 0..MAX_WANS {
            reset(
                &mut self.stats_rule_wan,
                rule_wan_index(rule, wan),
                names::STATS_RULE_WAN,
            )?;
        }
        reset(&mut self.stats_rule, rule, names::STATS_RULE)
    }

    /// Zeroes one WAN slot's counters (a slot that starts to mean another WAN).
    pub fn reset_wan_counter(&mut self, slot: u32) -> Result<(), DataplaneError> {
        reset(&mut self.stats_wan, slot, names::STATS_WAN)
    }
}

/// The map `name` pinned under the pin directory `root`.
pub(super) fn open_pin(root: &Path, name: &'static str) -> Result<Map, DataplaneError> {
    let path = super::pin::map_path(root, name);
    super::pinned(&path)?;
    let data = MapData::from_pin(&path).map_err(map_err(name, "open pin"))?;
    Map::from_map_data(data).map_err(map_err(name, "open pin"))
}

/// Elements `first .. first + count` of an array: one batched read, or one read per element
/// where the kernel has no batches for arrays.
fn read_range<V: Pod>(
    map: &Array<MapData, V>,
    name: &'static str,
    first: u32,
    count: u32,
) -> Result<Vec<V>, DataplaneError> {
    // SAFETY: aya checked when it opened the array that its values are `V`-sized, and `V` is the
    // steer-common type of this map.
    match unsafe { sys::lookup_array::<V>(map.map().fd().as_fd(), first, count as usize) } {
        Ok(values) => Ok(values),
        Err(e) if sys::is_unsupported(&e) => (first..first + count)
            .map(|i| map.get(&i, 0).map_err(map_err(name, "read")))
            .collect(),
        Err(e) => Err(map_err(name, "read")(MapError::IoError(e))),
    }
}

/// Writes `values` to the elements from `first` on: one batched write, or one write per element
/// where the kernel has no batches for arrays.
fn write_range<V: Pod>(
    map: &mut Array<MapData, V>,
    name: &'static str,
    first: u32,
    values: &[V],
) -> Result<(), DataplaneError> {
    let keys: Vec<u32> = (first..).take(values.len()).collect();
    // SAFETY: arrays have u32 keys; the values as in `read_range`.
    match unsafe { sys::update(map.map().fd().as_fd(), &keys, values) } {
        Ok(()) => Ok(()),
        Err((0, e)) if sys::is_unsupported(&e) => keys
            .iter()
            .zip(values)
            .try_for_each(|(i, v)| map.set(*i, v, 0))
            .map_err(map_err(name, "write")),
        Err((_, e)) => Err(map_err(name, "write")(MapError::IoError(e))),
    }
}

fn reset(
    map: &mut PerCpuArray<MapData, Counter>,
    index: u32,
    name: &'static str,
) -> Result<(), DataplaneError> {
    let cpus = nr_cpus().map_err(|(_, e)| map_err(name, "count CPUs")(MapError::IoError(e)))?;
    let zero = PerCpuValues::try_from(vec![Counter::default(); cpus]).expect("at least one CPU");
    map.set(index, zero, 0).map_err(map_err(name, "reset"))
}

/// A WAN slot as the kernel keeps it for `steer dump`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WanName {
    pub name: String,
    pub mark: u32,
    pub table: u32,
}

fn local_name(prefix: &Prefix) -> &'static str {
    if prefix.is_v4() {
        names::LOCAL_V4
    } else {
        names::LOCAL_V6
    }
}

/// An IPv4 prefix as a range set takes it.
fn raw_v4(prefix: &Prefix) -> Option<PrefixV4> {
    match prefix {
        Prefix::V4 { addr, len } => Some((u32::from(*addr), *len)),
        Prefix::V6 { .. } => None,
    }
}

fn raw_v6(prefix: &Prefix) -> Option<PrefixV6> {
    match prefix {
        Prefix::V6 { addr, len } => Some((u128::from(*addr), *len)),
        Prefix::V4 { .. } => None,
    }
}

fn check_block(block: u32) -> Result<(), DataplaneError> {
    if block < LB_BLOCKS {
        Ok(())
    } else {
        Err(DataplaneError::BlockOutOfRange(block))
    }
}

fn check_rule(rule: u32) -> Result<(), DataplaneError> {
    if rule < MAX_RULES {
        Ok(())
    } else {
        Err(DataplaneError::RuleOutOfRange(rule))
    }
}

fn sum_cpus(
    map: &PerCpuArray<MapData, Counter>,
    index: u32,
    name: &'static str,
) -> Result<Counter, DataplaneError> {
    let values = map.get(&index, 0).map_err(map_err(name, "read"))?;
    Ok(values.iter().fold(Counter::default(), |acc, c| Counter {
        packets: acc.packets + c.packets,
        bytes: acc.bytes + c.bytes,
    }))
}

// Keys read back from the kernel are steer's own: lengths are in range and host bits clear.
fn prefix_v4(addr: Ipv4Addr, len: u32) -> Prefix {
    Prefix::V4 {
        addr,
        len: len.min(32) as u8,
    }
}

fn prefix_v6(addr: Ipv6Addr, len: u32) -> Prefix {
    Prefix::V6 {
        addr,
        len: len.min(128) as u8,
    }
}

#[cfg(test)]
mod tests {
    use steer_common::{action, name_to_bytes};

    use super::*;

    /// The batched range reads and writes reach exactly the elements of their generation,
    /// rule and block, at both ends of each array (where the batch cursor is easiest to get
    /// wrong).
    #[test]
    #[cfg_attr(
        not(feature = "privileged-tests"),
        ignore = "needs root: `cargo xtask test` runs it"
    )]
    fn range_reads_and_writes_hit_exactly_their_elements() {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "this test creates BPF maps: run it as root");
        let mut ebpf = aya::EbpfLoader::new()
            .load(crate::objects::STEER)
            .expect("steer object loads");
        let mut maps = Maps::from_ebpf(&mut ebpf).expect("maps open");
        let (last, top) = (MAX_RULES - 1, GENERATIONS - 1);
        let tag = |generation: u32, family: Family, rule: u32| {
            generation * 1000 + family.raw() * 500 + rule + 1
        };
        // Blocks at both ends of the pool, and next to them.
        let mut blocks = [
            0,
            LB_BLOCKS - 1,
            1,
            LB_BLOCKS - 2,
            2,
            LB_BLOCKS - 3,
            3,
            LB_BLOCKS - 4,
        ]
        .into_iter();
        let mut used = Vec::new();
        for (generation, rule) in [(0, 0), (0, last), (top, 0), (top, last)] {
            for family in Family::ALL {
                let tag = tag(generation, family, rule);
                let block = blocks.next().unwrap();
                let entry = PolicyEntry {
                    action: action::BALANCE,
                    mark: tag,
                    mask: 0xff00,
                    wan: generation,
                    lb: block,
                    ..PolicyEntry::default()
                };
                maps.set_policy(generation, family, rule, entry).unwrap();
                let slots: [LbSlot; LB_SLOTS as usize] = std::array::from_fn(|i| LbSlot {
                    mark: tag,
                    wan: i as u32,
                });
                maps.set_lb_block(block, &slots).unwrap();
                used.push(block);
            }
            let info = RuleInfo {
                set_name: name_to_bytes(&format!("set{}", tag(generation, Family::V4, rule))),
                ..RuleInfo::default()
            };
            maps.set_rule_info(generation, rule, info).unwrap();
        }
        for block in 0..LB_BLOCKS {
            let slots = maps.lb_block(block).unwrap();
            let one_by_one: Vec<LbSlot> = (0..LB_SLOTS)
                .map(|i| maps.lb.get(&lb_index(block, i), 0).unwrap())
                .collect();
            assert_eq!(slots, one_by_one, "block {block}");
            if !used.contains(&block) {
                assert!(
                    slots.iter().all(|s| *s == LbSlot::default()),
                    "block {block}"
                );
            }
        }
        for generation in 0..GENERATIONS {
            let infos = maps.rule_infos(generation).unwrap();
            assert_eq!(infos.len(), MAX_RULES as usize);
            for family in Family::ALL {
                let entries = maps.policies(generation, family).unwrap();
                assert_eq!(entries.len(), MAX_RULES as usize);
                for rule in 0..MAX_RULES {
                    let r = rule as usize;
                    assert_eq!(entries[r], maps.policy(generation, family, rule).unwrap());
                    assert_eq!(infos[r], maps.rule_info(generation, rule).unwrap());
                }
                if generation != 0 && generation != top {
                    assert!(entries.iter().all(|e| *e == PolicyEntry::default()));
                    continue;
                }
                for rule in [0, last] {
                    let tag = tag(generation, family, rule);
                    assert_eq!(entries[rule as usize].mark, tag);
                    let slots = maps.lb_slots(generation, family, rule).unwrap();
                    assert!(
                        slots
                            .iter()
                            .zip(0..)
                            .all(|(s, i)| *s == LbSlot { mark: tag, wan: i })
                    );
                }
                assert_eq!(
                    entries[1],
                    PolicyEntry::default(),
                    "untouched rules stay empty"
                );
            }
        }
    }
}
