//! Rule lookup: source rules, then destination rules, then the default rule.

use aya_ebpf::{
    btf_maps::ArrayOfMaps,
    maps::{LpmTrie, lpm_trie::Key},
};
use steer_common::{AddrV4, AddrV6, DEFAULT_RULE, RuleRef, settings_flags, slot_v4, slot_v6};

use crate::{
    maps::{
        DST_V4, DST_V4_SHORT, DST_V6, DST_V6_SHORT, SRC_V4, SRC_V4_SHORT, SRC_V6, SRC_V6_SHORT,
        Slot,
    },
    parse::Parsed,
};

/// The rule of a parsed packet, or `None` when it is not an IP packet the classifier can read.
/// `flags` are `Settings::flags`: source lookups run only when there are source prefixes.
#[inline(always)]
pub fn rule_of(parsed: &Parsed, flags: u32) -> Option<u32> {
    match parsed {
        Parsed::V4 { src, dst } => Some(rule(
            Split(&SRC_V4, &SRC_V4_SHORT),
            Split(&DST_V4, &DST_V4_SHORT),
            (*src, *dst),
            flags & settings_flags::HAS_SRC_V4 != 0,
        )),
        Parsed::V6 { src, dst } => Some(rule(
            Split(&SRC_V6, &SRC_V6_SHORT),
            Split(&DST_V6, &DST_V6_SHORT),
            (*src, *dst),
            flags & settings_flags::HAS_SRC_V6 != 0,
        )),
        Parsed::NotIp | Parsed::Truncated => None,
    }
}

/// An address family's address as the tries key it.
trait Address: Copy {
    /// Full-length prefix: a lookup key for one address.
    const BITS: u32;
    fn slot(&self) -> u32;
}

impl Address for AddrV4 {
    const BITS: u32 = 32;
    #[inline(always)]
    fn slot(&self) -> u32 {
        slot_v4(self)
    }
}

impl Address for AddrV6 {
    const BITS: u32 = 128;
    #[inline(always)]
    fn slot(&self) -> u32 {
        slot_v6(self)
    }
}

/// One split prefix set: its slot tries and its short trie.
struct Split<'a, A: 'static, const N: usize>(&'a ArrayOfMaps<Slot<A>, N>, &'a LpmTrie<A, RuleRef>);

#[inline(always)]
fn rule<A: Address, const N: usize>(
    by_src: Split<'_, A, N>,
    by_dst: Split<'_, A, N>,
    (src, dst): (A, A),
    src_lookup: bool,
) -> u32 {
    if src_lookup && let Some(rule) = by_src.lookup(src) {
        return rule;
    }
    by_dst.lookup(dst).unwrap_or(DEFAULT_RULE)
}

impl<A: Address, const N: usize> Split<'_, A, N> {
    /// Longest-prefix match: the slot trie of the address first (every prefix there is at
    /// least `SLOT_MIN_LEN_V4`/`_V6` long), then the short trie.
    #[inline(always)]
    fn lookup(&self, addr: A) -> Option<u32> {
        let key = Key::new(A::BITS, addr);
        if let Some(hit) = self.0.get(addr.slot()).and_then(|trie| trie.get(&key)) {
            return Some(hit.rule);
        }
        self.1.get(&key).map(|hit| hit.rule)
    }
}
