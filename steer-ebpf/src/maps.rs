//! The maps of the steer object. Names, sizes and layouts come from steer-common.

use aya_ebpf::{
    macros::map,
    maps::{Array, LpmTrie, PerCpuArray},
};
use steer_common::{
    AddrV4, AddrV6, Counter, DEFAULT_CAPACITY_DST_V4, DEFAULT_CAPACITY_DST_V6,
    DEFAULT_CAPACITY_SRC_V4, DEFAULT_CAPACITY_SRC_V6, GENERATIONS, LB_SLOTS, LbSlot, MAX_RULES,
    MAX_WANS, PolicyEntry, RuleInfo, RuleRef, Settings, WanInfo, path,
};

#[map]
pub static DST_V4: LpmTrie<AddrV4, RuleRef> = LpmTrie::with_max_entries(DEFAULT_CAPACITY_DST_V4, 0);
#[map]
pub static DST_V6: LpmTrie<AddrV6, RuleRef> = LpmTrie::with_max_entries(DEFAULT_CAPACITY_DST_V6, 0);
#[map]
pub static SRC_V4: LpmTrie<AddrV4, RuleRef> = LpmTrie::with_max_entries(DEFAULT_CAPACITY_SRC_V4, 0);
#[map]
pub static SRC_V6: LpmTrie<AddrV6, RuleRef> = LpmTrie::with_max_entries(DEFAULT_CAPACITY_SRC_V6, 0);

#[map]
pub static POLICY: Array<PolicyEntry> = Array::with_max_entries(GENERATIONS * MAX_RULES, 0);
#[map]
pub static LB: Array<LbSlot> = Array::with_max_entries(GENERATIONS * MAX_RULES * LB_SLOTS, 0);
#[map]
pub static ACTIVE: Array<u32> = Array::with_max_entries(1, 0);
#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

#[map]
pub static STATS_RULE: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_RULES, 0);
#[map]
pub static STATS_WAN: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_WANS, 0);
#[map]
pub static STATS_PATH: PerCpuArray<Counter> = PerCpuArray::with_max_entries(path::COUNT, 0);

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
