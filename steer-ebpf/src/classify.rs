//! Rule lookup: source rules, then destination rules, then the default rule.

use aya_ebpf::{
    btf_maps::ArrayOfMaps,
    maps::{LpmTrie, lpm_trie::Key},
};
use steer_common::{AddrV4, AddrV6, DEFAULT_RULE, RuleRef, settings_flags, slot_v4, slot_v6};

use crate::{
    maps::{
        DST_V4, DST_V4_SHORT, DST_V6, DST_V6_SHORT, SRC_V4, SRC_V4_SHORT, SRC_V6, SRC_V6_SHORT,
        SlotV4, SlotV6,
    },
    parse::Parsed,
};

/// The rule of a parsed packet, or `None` when it is not an IP packet the classifier can read.
/// `flags` are `Settings::flags`: source lookups run only when there are source prefixes.
#[inline(always)]
pub fn rule_of(parsed: &Parsed, flags: u32) -> Option<u32> {
    match parsed {
        Parsed::V4 { src, dst } => {
            Some(rule_v4(*src, *dst, flags & settings_flags::HAS_SRC_V4 != 0))
        }
        Parsed::V6 { src, dst } => {
            Some(rule_v6(*src, *dst, flags & settings_flags::HAS_SRC_V6 != 0))
        }
        Parsed::NotIp | Parsed::Truncated => None,
    }
}

#[inline(always)]
fn rule_v4(src: AddrV4, dst: AddrV4, by_source: bool) -> u32 {
    if by_source && let Some(rule) = lookup_v4(&SRC_V4, &SRC_V4_SHORT, src) {
        return rule;
    }
    lookup_v4(&DST_V4, &DST_V4_SHORT, dst).unwrap_or(DEFAULT_RULE)
}

#[inline(always)]
fn rule_v6(src: AddrV6, dst: AddrV6, by_source: bool) -> u32 {
    if by_source && let Some(rule) = lookup_v6(&SRC_V6, &SRC_V6_SHORT, src) {
        return rule;
    }
    lookup_v6(&DST_V6, &DST_V6_SHORT, dst).unwrap_or(DEFAULT_RULE)
}

/// Longest-prefix match in a split set: the slot trie of the address first (every prefix there
/// is at least `SLOT_MIN_LEN_V4` long), then the short trie.
#[inline(always)]
fn lookup_v4<const N: usize>(
    slots: &ArrayOfMaps<SlotV4, N>,
    short: &LpmTrie<AddrV4, RuleRef>,
    addr: AddrV4,
) -> Option<u32> {
    let key = Key::new(32, addr);
    if let Some(hit) = slots.get(slot_v4(&addr)).and_then(|trie| trie.get(&key)) {
        return Some(hit.rule);
    }
    short.get(&key).map(|hit| hit.rule)
}

#[inline(always)]
fn lookup_v6<const N: usize>(
    slots: &ArrayOfMaps<SlotV6, N>,
    short: &LpmTrie<AddrV6, RuleRef>,
    addr: AddrV6,
) -> Option<u32> {
    let key = Key::new(128, addr);
    if let Some(hit) = slots.get(slot_v6(&addr)).and_then(|trie| trie.get(&key)) {
        return Some(hit.rule);
    }
    short.get(&key).map(|hit| hit.rule)
}
