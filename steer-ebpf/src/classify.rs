//! Rule lookup: source rules, then destination rules, then the default rule.

use aya_ebpf::maps::lpm_trie::Key;
use steer_common::{AddrV4, AddrV6, DEFAULT_RULE};

use crate::{
    maps::{DST_V4, DST_V6, SRC_V4, SRC_V6},
    parse::Parsed,
};

/// The rule of a parsed packet, or `None` when it is not an IP packet the classifier can read.
#[inline(always)]
pub fn rule_of(parsed: &Parsed) -> Option<u32> {
    match parsed {
        Parsed::V4 { src, dst } => Some(rule_v4(*src, *dst)),
        Parsed::V6 { src, dst } => Some(rule_v6(*src, *dst)),
        Parsed::NotIp | Parsed::Truncated => None,
    }
}

#[inline(always)]
fn rule_v4(src: AddrV4, dst: AddrV4) -> u32 {
    if let Some(hit) = SRC_V4.get(Key::new(32, src)) {
        return hit.rule;
    }
    if let Some(hit) = DST_V4.get(Key::new(32, dst)) {
        return hit.rule;
    }
    DEFAULT_RULE
}

#[inline(always)]
fn rule_v6(src: AddrV6, dst: AddrV6) -> u32 {
    if let Some(hit) = SRC_V6.get(Key::new(128, src)) {
        return hit.rule;
    }
    if let Some(hit) = DST_V6.get(Key::new(128, dst)) {
        return hit.rule;
    }
    DEFAULT_RULE
}
