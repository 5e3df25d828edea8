//! The maps of the steer object. Names, sizes and layouts come from steer-common.

use aya_ebpf::{
    btf_maps::{Array as BtfArray, ArrayOfMaps},
    macros::{btf_map, map},
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray},
};
use steer_common::{
    AddrV4, AddrV6, CondAddrV4, CondAddrV6, CondBank, CondIfKey, CondMacKey, Counter, FAMILIES,
    FRAGS_MAX_ENTRIES, FragEntry, FragKey, GENERATIONS, LB_BLOCKS, LB_SLOTS, LEARNED_MAX_ENTRIES,
    LOCAL_MAX_ENTRIES, LbSlot, Learned, LocalRef, MAP_F_INNER_MAP, MAP_F_MMAPABLE,
    MAP_F_NO_PREALLOC, MAX_RULES, MAX_WANS, PolicyEntry, PortClasses, RuleInfo, Settings,
    WAN_DEVICES_MAX_ENTRIES, WanDevice, WanInfo, WanTraffic, cond, path, range,
};

/// A range table or record (created, sized to its set, and filled by userspace).
pub type RangeBlocks = BtfArray<range::Block, 1, { (MAP_F_INNER_MAP | MAP_F_MMAPABLE) as usize }>;

#[btf_map]
pub static DST_V4: ArrayOfMaps<RangeBlocks, { range::SLOTS as usize }> = ArrayOfMaps::new();
#[btf_map]
pub static DST_V6: ArrayOfMaps<RangeBlocks, { range::SLOTS as usize }> = ArrayOfMaps::new();
#[btf_map]
pub static SRC_V4: ArrayOfMaps<RangeBlocks, { range::SLOTS as usize }> = ArrayOfMaps::new();
#[btf_map]
pub static SRC_V6: ArrayOfMaps<RangeBlocks, { range::SLOTS as usize }> = ArrayOfMaps::new();

#[map]
pub static LOCAL_V4: LpmTrie<AddrV4, LocalRef> = LpmTrie::with_max_entries(LOCAL_MAX_ENTRIES, 0);
#[map]
pub static LOCAL_V6: LpmTrie<AddrV6, LocalRef> = LpmTrie::with_max_entries(LOCAL_MAX_ENTRIES, 0);
/// Hosts learned from DNS answers: exact addresses, written only by the daemon.
#[map]
pub static LEARNED_V4: HashMap<AddrV4, Learned> =
    HashMap::with_max_entries(LEARNED_MAX_ENTRIES, MAP_F_NO_PREALLOC);
#[map]
pub static LEARNED_V6: HashMap<AddrV6, Learned> =
    HashMap::with_max_entries(LEARNED_MAX_ENTRIES, MAP_F_NO_PREALLOC);
#[map]
pub static FRAGS: LruHashMap<FragKey, FragEntry> =
    LruHashMap::with_max_entries(FRAGS_MAX_ENTRIES, 0);

#[map]
pub static POLICY: Array<PolicyEntry> =
    Array::with_max_entries(GENERATIONS * FAMILIES * MAX_RULES, 0);
/// A pool of slot tables shared by all generations (`PolicyEntry::lb` names a block).
#[map]
pub static LB: Array<LbSlot> = Array::with_max_entries(LB_BLOCKS * LB_SLOTS, 0);
#[map]
pub static ACTIVE: Array<u32> = Array::with_max_entries(1, MAP_F_MMAPABLE);
#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

#[map]
pub static STATS_RULE: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_RULES, 0);
#[map]
pub static STATS_WAN: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_WANS, 0);
#[map]
pub static STATS_PATH: PerCpuArray<Counter> = PerCpuArray::with_max_entries(path::COUNT, 0);
#[map]
pub static STATS_RULE_WAN: PerCpuArray<Counter> =
    PerCpuArray::with_max_entries(MAX_RULES * MAX_WANS, 0);

// Read only by userspace (`steer dump` while the daemon is down); kept in the object so they are
// created and pinned with the rest.
#[map]
pub static RULE_INFO: Array<RuleInfo> = Array::with_max_entries(GENERATIONS * MAX_RULES, 0);
#[map]
pub static WAN_INFO: Array<WanInfo> = Array::with_max_entries(MAX_WANS, 0);

/// Adds one packet of `bytes` to a per-CPU counter.
#[inline(always)]
pub fn count(map: &PerCpuArray<Counter>, index: u32, bytes: u32) {
    if let Some(c) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, valid for the program's lifetime; preemption is off.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += u64::from(bytes);
        }
    }
}

// ---- passive liveness (wan.rs) ---------------------------------------------------------------

/// The WAN devices, written by userspace; a device not in it is not watched.
#[map]
pub static WAN_DEVICES: HashMap<u32, WanDevice> =
    HashMap::with_max_entries(WAN_DEVICES_MAX_ENTRIES, 0);
#[map]
pub static WAN_TRAFFIC: PerCpuArray<WanTraffic> =
    PerCpuArray::with_max_entries(MAX_WANS * FAMILIES, 0);

// ---- ordered rules (cond.rs) -----------------------------------------------------------------

#[map]
pub static COND_ACTIVE: Array<u32> = Array::with_max_entries(1, 0);
#[map]
pub static COND_BANK: Array<CondBank> = Array::with_max_entries(cond::BANKS, 0);
#[map]
pub static COND_PROTO: Array<u64> = Array::with_max_entries(cond::BANKS * FAMILIES * 256, 0);
#[map]
pub static COND_PORT_CLASS: Array<PortClasses> =
    Array::with_max_entries(cond::BANKS * 2 * cond::PORT_VALUES, 0);
#[map]
pub static COND_PORT_BITS: Array<u64> =
    Array::with_max_entries(cond::BANKS * 2 * cond::PORT_CLASSES, 0);
#[map]
pub static COND_MAC: HashMap<CondMacKey, u64> =
    HashMap::with_max_entries(cond::MAC_MAX_ENTRIES, MAP_F_NO_PREALLOC);
#[map]
pub static COND_IN: HashMap<CondIfKey, u64> = HashMap::with_max_entries(cond::IN_MAX_ENTRIES, 0);
#[map]
pub static COND_DST_V4: LpmTrie<CondAddrV4, u64> =
    LpmTrie::with_max_entries(cond::ADDR_MAX_ENTRIES, 0);
#[map]
pub static COND_DST_V6: LpmTrie<CondAddrV6, u64> =
    LpmTrie::with_max_entries(cond::ADDR_MAX_ENTRIES, 0);
#[map]
pub static COND_SRC_V4: LpmTrie<CondAddrV4, u64> =
    LpmTrie::with_max_entries(cond::ADDR_MAX_ENTRIES, 0);
#[map]
pub static COND_SRC_V6: LpmTrie<CondAddrV6, u64> =
    LpmTrie::with_max_entries(cond::ADDR_MAX_ENTRIES, 0);
