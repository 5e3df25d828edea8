//! Typed access to every steer map. Keys and values are the steer-common types; callers speak in
//! prefixes, rule ids, generations and counters, never in raw bytes.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsFd,
    path::Path,
};

use aya::{
    Ebpf,
    maps::{
        Array, IterableMap, Map, MapData, MapError, PerCpuArray, PerCpuValues,
        lpm_trie::{Key, LpmTrie},
    },
    util::nr_cpus,
};
use steer_common::{
    AddrV4, AddrV6, Counter, GENERATIONS, LB_SLOTS, LbSlot, MAX_RULES, MAX_WANS, PolicyEntry,
    RuleInfo, RuleRef, Settings, WanInfo, lb_base, map_names as names, path, policy_index,
};

use super::{DataplaneError, batch};
use crate::prefix::Prefix;

/// Which address of a packet a prefix map matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Src,
    Dst,
}

impl Direction {
    pub fn map_name(self, v4: bool) -> &'static str {
        match (self, v4) {
            (Direction::Dst, true) => names::DST_V4,
            (Direction::Dst, false) => names::DST_V6,
            (Direction::Src, true) => names::SRC_V4,
            (Direction::Src, false) => names::SRC_V6,
        }
    }
}

type TrieV4 = LpmTrie<MapData, AddrV4, RuleRef>;
type TrieV6 = LpmTrie<MapData, AddrV6, RuleRef>;

/// Handles on all steer maps, from a freshly loaded object or from the pins of a running one.
pub struct Maps {
    dst_v4: TrieV4,
    dst_v6: TrieV6,
    src_v4: TrieV4,
    src_v6: TrieV6,
    policy: Array<MapData, PolicyEntry>,
    lb: Array<MapData, LbSlot>,
    active: Array<MapData, u32>,
    settings: Array<MapData, Settings>,
    stats_rule: PerCpuArray<MapData, Counter>,
    stats_wan: PerCpuArray<MapData, Counter>,
    stats_path: PerCpuArray<MapData, Counter>,
    rule_info: Array<MapData, RuleInfo>,
    wan_info: Array<MapData, WanInfo>,
}

impl std::fmt::Debug for Maps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maps").finish_non_exhaustive()
    }
}

/// Batch sizes: large enough to amortise the syscall, small enough to keep buffers modest.
const BATCH: usize = 16 * 1024;

fn map_err(map: &'static str, op: &'static str) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { map, op, source }
}

impl Maps {
    /// Takes the maps out of a loaded object.
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<Self, DataplaneError> {
        Self::build(|name| ebpf.take_map(name).ok_or(DataplaneError::MissingMap(name)))
    }

    /// Opens the maps pinned in `dir` (one file per map name).
    pub fn from_pins(dir: &Path) -> Result<Self, DataplaneError> {
        Self::build(|name| {
            let data = MapData::from_pin(dir.join(name)).map_err(map_err(name, "open pin"))?;
            Map::from_map_data(data).map_err(map_err(name, "open pin"))
        })
    }

    fn build(
        mut take: impl FnMut(&'static str) -> Result<Map, DataplaneError>,
    ) -> Result<Self, DataplaneError> {
        macro_rules! typed {
            ($name:expr) => {{
                let name = $name;
                take(name)?.try_into().map_err(map_err(name, "open"))?
            }};
        }
        Ok(Maps {
            dst_v4: typed!(names::DST_V4),
            dst_v6: typed!(names::DST_V6),
            src_v4: typed!(names::SRC_V4),
            src_v6: typed!(names::SRC_V6),
            policy: typed!(names::POLICY),
            lb: typed!(names::LB),
            active: typed!(names::ACTIVE),
            settings: typed!(names::SETTINGS),
            stats_rule: typed!(names::STATS_RULE),
            stats_wan: typed!(names::STATS_WAN),
            stats_path: typed!(names::STATS_PATH),
            rule_info: typed!(names::RULE_INFO),
            wan_info: typed!(names::WAN_INFO),
        })
    }

    // ---- prefixes -------------------------------------------------------------------------

    /// Maps `prefix` to `rule` (insert or overwrite).
    pub fn set_prefix(
        &mut self,
        dir: Direction,
        prefix: Prefix,
        rule: u32,
    ) -> Result<(), DataplaneError> {
        let value = RuleRef { rule };
        let name = dir.map_name(prefix.is_v4());
        let result = match prefix {
            Prefix::V4 { addr, len } => self.trie_v4_mut(dir).insert(&key_v4(addr, len), value, 0),
            Prefix::V6 { addr, len } => self.trie_v6_mut(dir).insert(&key_v6(addr, len), value, 0),
        };
        result.map_err(map_err(name, "insert"))
    }

    /// Removes `prefix`; returns whether it was there.
    pub fn remove_prefix(
        &mut self,
        dir: Direction,
        prefix: Prefix,
    ) -> Result<bool, DataplaneError> {
        let name = dir.map_name(prefix.is_v4());
        let result = match prefix {
            Prefix::V4 { addr, len } => self.trie_v4_mut(dir).remove(&key_v4(addr, len)),
            Prefix::V6 { addr, len } => self.trie_v6_mut(dir).remove(&key_v6(addr, len)),
        };
        match result {
            Ok(()) => Ok(true),
            Err(MapError::KeyNotFound) => Ok(false),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(false)
            }
            Err(e) => Err(map_err(name, "remove")(e)),
        }
    }

    /// The rule a packet address hits in one map (longest-prefix match), if any.
    pub fn lookup(
        &self,
        dir: Direction,
        ip: std::net::IpAddr,
    ) -> Result<Option<u32>, DataplaneError> {
        let name = dir.map_name(ip.is_ipv4());
        let found = match ip {
            std::net::IpAddr::V4(a) => self.trie_v4(dir).get(&key_v4(a, 32), 0),
            std::net::IpAddr::V6(a) => self.trie_v6(dir).get(&key_v6(a, 128), 0),
        };
        match found {
            Ok(r) => Ok(Some(r.rule)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(None)
            }
            Err(e) => Err(map_err(name, "lookup")(e)),
        }
    }

    /// Every prefix of one map with its rule, in no particular order.
    pub fn prefixes(&self, dir: Direction, v4: bool) -> Result<Vec<(Prefix, u32)>, DataplaneError> {
        let name = dir.map_name(v4);
        let result = if v4 {
            dump(
                self.trie_v4(dir),
                |raw: [u8; 8]| {
                    let (len, addr) = split_raw_key(&raw);
                    prefix_v4(
                        Ipv4Addr::from(<[u8; 4]>::try_from(addr).expect("4 bytes")),
                        len,
                    )
                },
                |k| prefix_v4(Ipv4Addr::from(k.data()), k.prefix_len()),
            )
        } else {
            dump(
                self.trie_v6(dir),
                |raw: [u8; 20]| {
                    let (len, addr) = split_raw_key(&raw);
                    prefix_v6(
                        Ipv6Addr::from(<[u8; 16]>::try_from(addr).expect("16 bytes")),
                        len,
                    )
                },
                |k| prefix_v6(Ipv6Addr::from(k.data()), k.prefix_len()),
            )
        };
        result.map_err(|e| map_err(name, "dump")(e))
    }

    /// Writes many prefixes of one family and direction. Uses one syscall per batch when the
    /// kernel supports batched updates of LPM tries, per-element updates otherwise; returns
    /// which way it went.
    pub fn set_prefixes(
        &mut self,
        dir: Direction,
        entries: &[(Prefix, u32)],
        mode: WriteMode,
    ) -> Result<WriteMode, DataplaneError> {
        let Some((first, _)) = entries.first() else {
            return Ok(mode);
        };
        let v4 = first.is_v4();
        let name = dir.map_name(v4);
        assert!(
            entries.iter().all(|(p, _)| p.is_v4() == v4),
            "one address family per call"
        );
        if mode == WriteMode::Batched {
            let fd = if v4 {
                self.trie_v4(dir).map().fd().as_fd()
            } else {
                self.trie_v6(dir).map().fd().as_fd()
            };
            match write_batched(fd, entries, v4) {
                Ok(()) => return Ok(WriteMode::Batched),
                Err((0, e)) if batch::is_unsupported(&e) => {}
                Err((_, e)) => return Err(map_err(name, "batch update")(MapError::IoError(e))),
            }
        }
        for (prefix, rule) in entries {
            self.set_prefix(dir, *prefix, *rule)?;
        }
        Ok(WriteMode::PerElement)
    }

    fn trie_v4(&self, dir: Direction) -> &TrieV4 {
        match dir {
            Direction::Dst => &self.dst_v4,
            Direction::Src => &self.src_v4,
        }
    }
    fn trie_v6(&self, dir: Direction) -> &TrieV6 {
        match dir {
            Direction::Dst => &self.dst_v6,
            Direction::Src => &self.src_v6,
        }
    }
    fn trie_v4_mut(&mut self, dir: Direction) -> &mut TrieV4 {
        match dir {
            Direction::Dst => &mut self.dst_v4,
            Direction::Src => &mut self.src_v4,
        }
    }
    fn trie_v6_mut(&mut self, dir: Direction) -> &mut TrieV6 {
        match dir {
            Direction::Dst => &mut self.dst_v6,
            Direction::Src => &mut self.src_v6,
        }
    }

    // ---- policy tables and the generation word --------------------------------------------

    pub fn policy(&self, generation: u32, rule: u32) -> Result<PolicyEntry, DataplaneError> {
        self.policy
            .get(&policy_index(generation, rule), 0)
            .map_err(map_err(names::POLICY, "read"))
    }

    pub fn set_policy(
        &mut self,
        generation: u32,
        rule: u32,
        entry: PolicyEntry,
    ) -> Result<(), DataplaneError> {
        check_rule(rule)?;
        self.policy
            .set(policy_index(generation, rule), entry, 0)
            .map_err(map_err(names::POLICY, "write"))
    }

    pub fn lb_slots(&self, generation: u32, rule: u32) -> Result<Vec<LbSlot>, DataplaneError> {
        let base = lb_base(generation, rule);
        (base..base + LB_SLOTS)
            .map(|i| self.lb.get(&i, 0).map_err(map_err(names::LB, "read")))
            .collect()
    }

    pub fn set_lb_slots(
        &mut self,
        generation: u32,
        rule: u32,
        slots: &[LbSlot; LB_SLOTS as usize],
    ) -> Result<(), DataplaneError> {
        check_rule(rule)?;
        let base = lb_base(generation, rule);
        for (i, slot) in (base..).zip(slots) {
            self.lb
                .set(i, slot, 0)
                .map_err(map_err(names::LB, "write"))?;
        }
        Ok(())
    }

    pub fn rule_info(&self, generation: u32, rule: u32) -> Result<RuleInfo, DataplaneError> {
        self.rule_info
            .get(&policy_index(generation, rule), 0)
            .map_err(map_err(names::RULE_INFO, "read"))
    }

    pub fn set_rule_info(
        &mut self,
        generation: u32,
        rule: u32,
        info: RuleInfo,
    ) -> Result<(), DataplaneError> {
        check_rule(rule)?;
        self.rule_info
            .set(policy_index(generation, rule), info, 0)
            .map_err(map_err(names::RULE_INFO, "write"))
    }

    pub fn wan_info(&self, slot: u32) -> Result<WanInfo, DataplaneError> {
        self.wan_info
            .get(&slot, 0)
            .map_err(map_err(names::WAN_INFO, "read"))
    }

    pub fn set_wan_info(&mut self, slot: u32, info: WanInfo) -> Result<(), DataplaneError> {
        self.wan_info
            .set(slot, info, 0)
            .map_err(map_err(names::WAN_INFO, "write"))
    }

    /// The generation the classifier reads now.
    pub fn active_generation(&self) -> Result<u32, DataplaneError> {
        self.active
            .get(&0, 0)
            .map(|g| g % GENERATIONS)
            .map_err(map_err(names::ACTIVE, "read"))
    }

    /// Makes `generation` live with one word write: every packet after it sees the new table.
    pub fn set_active_generation(&mut self, generation: u32) -> Result<(), DataplaneError> {
        self.active
            .set(0, generation % GENERATIONS, 0)
            .map_err(map_err(names::ACTIVE, "write"))
    }

    pub fn settings(&self) -> Result<Settings, DataplaneError> {
        self.settings
            .get(&0, 0)
            .map_err(map_err(names::SETTINGS, "read"))
    }

    pub fn set_settings(&mut self, settings: Settings) -> Result<(), DataplaneError> {
        self.settings
            .set(0, settings, 0)
            .map_err(map_err(names::SETTINGS, "write"))
    }

    // ---- counters -------------------------------------------------------------------------

    pub fn rule_counter(&self, rule: u32) -> Result<Counter, DataplaneError> {
        sum_cpus(&self.stats_rule, rule, names::STATS_RULE)
    }

    pub fn wan_counter(&self, wan: u32) -> Result<Counter, DataplaneError> {
        sum_cpus(&self.stats_wan, wan, names::STATS_WAN)
    }

    /// One of `steer_common::path::*`.
    pub fn path_counter(&self, which: u32) -> Result<Counter, DataplaneError> {
        sum_cpus(&self.stats_path, which, names::STATS_PATH)
    }

    /// Zeroes every counter (rules, WANs, paths).
    pub fn reset_counters(&mut self) -> Result<(), DataplaneError> {
        let cpus = nr_cpus()
            .map_err(|(_, e)| map_err(names::STATS_RULE, "count CPUs")(MapError::IoError(e)))?;
        let zero = || PerCpuValues::try_from(vec![Counter::default(); cpus]).expect("non-empty");
        for (map, name, len) in [
            (&mut self.stats_rule, names::STATS_RULE, MAX_RULES),
            (&mut self.stats_wan, names::STATS_WAN, MAX_WANS),
            (&mut self.stats_path, names::STATS_PATH, path::COUNT),
        ] {
            for i in 0..len {
                map.set(i, zero(), 0).map_err(map_err(name, "reset"))?;
            }
        }
        Ok(())
    }
}

/// How `Maps::set_prefixes` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// `BPF_MAP_UPDATE_BATCH`, falling back to per-element when the kernel refuses.
    Batched,
    /// One `BPF_MAP_UPDATE_ELEM` per prefix.
    PerElement,
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

pub(crate) fn key_v4(addr: Ipv4Addr, len: u8) -> Key<AddrV4> {
    Key::new(u32::from(len), addr.octets())
}

pub(crate) fn key_v6(addr: Ipv6Addr, len: u8) -> Key<AddrV6> {
    Key::new(u32::from(len), addr.octets())
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

/// Splits a raw kernel key `{ prefix_len: u32 (host order), addr }` (packed).
fn split_raw_key(raw: &[u8]) -> (u32, &[u8]) {
    (
        u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]),
        &raw[4..],
    )
}

fn raw_key<const N: usize>(len: u8, addr: &[u8]) -> [u8; N] {
    let mut raw = [0u8; N];
    raw[..4].copy_from_slice(&u32::from(len).to_ne_bytes());
    raw[4..].copy_from_slice(addr);
    raw
}

/// Reads a whole trie: batched when the kernel can, element by element otherwise.
fn dump<const N: usize, A: aya::Pod>(
    trie: &LpmTrie<MapData, A, RuleRef>,
    decode_raw: impl Fn([u8; N]) -> Prefix,
    decode_key: impl Fn(Key<A>) -> Prefix,
) -> Result<Vec<(Prefix, u32)>, MapError>
where
    [u8; N]: Default,
{
    match batch::lookup_all::<[u8; N], u32>(trie.map().fd().as_fd(), BATCH) {
        Ok(raw) => Ok(raw
            .into_iter()
            .map(|(k, rule)| (decode_raw(k), rule))
            .collect()),
        Err(e) if batch::is_unsupported(&e) => trie
            .iter()
            .map(|kv| kv.map(|(k, v)| (decode_key(k), v.rule)))
            .collect(),
        Err(e) => Err(MapError::IoError(e)),
    }
}

fn write_batched(
    fd: std::os::fd::BorrowedFd<'_>,
    entries: &[(Prefix, u32)],
    v4: bool,
) -> Result<(), (usize, std::io::Error)> {
    let mut done = 0;
    for chunk in entries.chunks(BATCH) {
        let values: Vec<u32> = chunk.iter().map(|(_, r)| *r).collect();
        let result = if v4 {
            let keys: Vec<[u8; 8]> = chunk
                .iter()
                .map(|(p, _)| raw_key(p.len(), &octets(p)))
                .collect();
            batch::update(fd, &keys, &values)
        } else {
            let keys: Vec<[u8; 20]> = chunk
                .iter()
                .map(|(p, _)| raw_key(p.len(), &octets(p)))
                .collect();
            batch::update(fd, &keys, &values)
        };
        result.map_err(|(n, e)| (done + n, e))?;
        done += chunk.len();
    }
    Ok(())
}

fn octets(p: &Prefix) -> Vec<u8> {
    match p {
        Prefix::V4 { addr, .. } => addr.octets().to_vec(),
        Prefix::V6 { addr, .. } => addr.octets().to_vec(),
    }
}
