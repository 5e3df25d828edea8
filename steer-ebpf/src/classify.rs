//! Rule lookup, in a fixed order: local destinations (never steered), the ordered rules (sets
//! with conditions, first match, [`crate::cond`]), source rules, hosts learned from DNS answers
//! (exact), destination rules, the default rule. And the hashes a
//! balanced rule picks its slot by.

use aya_ebpf::{
    btf_maps::ArrayOfMaps,
    maps::{HashMap, LpmTrie, lpm_trie::Key},
};
use steer_common::{
    AddrV4, AddrV6, DEFAULT_RULE, FragKey, LOCAL_RULE, Learned, LocalRef, flow_hash, range, range6,
    settings_flags, src_hash, words_v4, words_v6,
};

use crate::{
    cond::{Input, NO_MATCH, ordered_rule},
    maps::{
        DST_V4, DST_V6, FRAGS, LEARNED_V4, LEARNED_V6, LOCAL_V4, LOCAL_V6, RangeBlocks, SRC_V4,
        SRC_V6,
    },
    parse::{FragKind, Kind, Parsed, Transport},
};

/// The rule of a parsed packet (`LOCAL_RULE` for a local destination), or `None` when it is
/// not an IP packet the classifier can read. `flags` are `Settings::flags`: source lookups run
/// only when there are source prefixes, learned-host lookups only when hosts of the family are
/// learned, the ordered rules only when there are some.
#[inline(always)]
pub fn rule_of(parsed: &Parsed, input: &Input, flags: u32) -> Option<u32> {
    match parsed.kind {
        Kind::V4 => Some(rule_v4(parsed, input, flags)),
        Kind::V6 => Some(rule_v6(parsed, input, flags)),
        Kind::NotIp | Kind::Truncated => None,
    }
}

// The lookups of each family are a function of their own (a BPF-to-BPF call): their keys live
// in its frame, not in the program's, which the parser and the hashes nearly fill.

#[inline(never)]
fn rule_v4(parsed: &Parsed, input: &Input, flags: u32) -> u32 {
    rule(
        parsed,
        input,
        &LOCAL_V4,
        &LEARNED_V4,
        Ranges(&SRC_V4),
        Ranges(&DST_V4),
        (parsed.src_v4(), parsed.dst_v4()),
        flags,
        (settings_flags::HAS_SRC_V4, settings_flags::HAS_LEARNED_V4),
    )
}

#[inline(never)]
fn rule_v6(parsed: &Parsed, input: &Input, flags: u32) -> u32 {
    rule(
        parsed,
        input,
        &LOCAL_V6,
        &LEARNED_V6,
        Ranges(&SRC_V6),
        Ranges(&DST_V6),
        (parsed.src, parsed.dst),
        flags,
        (settings_flags::HAS_SRC_V6, settings_flags::HAS_LEARNED_V6),
    )
}

/// The hash a balanced rule picks its slot by: the source hash with `by_source`, the flow
/// hash otherwise. A later fragment has no ports: it takes the hash its datagram's first
/// fragment recorded, so one flow's datagrams leave by one WAN however they were cut.
#[inline(always)]
pub fn hash_of(parsed: &Parsed, by_source: bool) -> u32 {
    let (s, d, family) = match parsed.kind {
        Kind::V4 => (words_v4(&parsed.src_v4()), words_v4(&parsed.dst_v4()), 4),
        Kind::V6 => (words_v6(&parsed.src), words_v6(&parsed.dst), 6),
        Kind::NotIp | Kind::Truncated => return 0,
    };
    if by_source {
        src_hash(&s)
    } else {
        flow(&s, &d, &parsed.l4, family)
    }
}

#[inline(always)]
fn flow(src: &[u32; 4], dst: &[u32; 4], l4: &Transport, family: u32) -> u32 {
    let hash = flow_hash(src, dst, l4.proto, l4.sport, l4.dport);
    match l4.frag {
        FragKind::No => hash,
        FragKind::First => {
            let key = frag_key(src, dst, l4.frag_id, l4.proto, family);
            // A full table only means a later fragment falls back to the address hash.
            let _ = FRAGS.insert(key, hash, 0);
            hash
        }
        FragKind::Later => {
            let key = frag_key(src, dst, l4.frag_id, l4.proto, family);
            // SAFETY: the value is a plain u32 copied out at once.
            unsafe { FRAGS.get(key) }.copied().unwrap_or(hash)
        }
    }
}

#[inline(always)]
fn frag_key(src: &[u32; 4], dst: &[u32; 4], id: u32, proto: u8, family: u32) -> FragKey {
    let bytes = |w: &[u32; 4]| {
        let mut out = [0u8; 16];
        let mut i = 0;
        while i < 4 {
            let b = w[i].to_ne_bytes();
            out[i * 4] = b[0];
            out[i * 4 + 1] = b[1];
            out[i * 4 + 2] = b[2];
            out[i * 4 + 3] = b[3];
            i += 1;
        }
        out
    };
    FragKey {
        src: bytes(src),
        dst: bytes(dst),
        id,
        family_proto: family | (u32::from(proto) << 8),
    }
}

const _: () = assert!(align_of::<AddrV4>() == 1 && align_of::<AddrV6>() == 1);

/// An address family's address as the maps key it.
trait Address: Copy {
    /// Full-length prefix: a lookup key for one address.
    const BITS: u32;
}

impl Address for AddrV4 {
    const BITS: u32 = 32;
}

impl Address for AddrV6 {
    const BITS: u32 = 128;
}

/// A prefix set: the longest prefix containing an address, and its rule.
trait PrefixSet<A> {
    fn lookup(&self, addr: A) -> Option<u32>;
}

/// A prefix set's range table ([`range`] for IPv4, [`range6`] for IPv6).
struct Ranges<'a>(&'a ArrayOfMaps<RangeBlocks, { range::SLOTS as usize }>);

impl PrefixSet<AddrV4> for Ranges<'_> {
    #[inline(always)]
    fn lookup(&self, addr: AddrV4) -> Option<u32> {
        let table = self.0.get(range::TABLE)?;
        match range::lookup(u32::from_be_bytes(addr), |block| table.get(block)) {
            range::NONE => None,
            rule => Some(rule),
        }
    }
}

impl PrefixSet<AddrV6> for Ranges<'_> {
    // A function of its own (a BPF-to-BPF call): the search's state lives in its frame, which
    // the source and the destination lookups share.
    #[inline(never)]
    fn lookup(&self, addr: AddrV6) -> Option<u32> {
        let table = self.0.get(range::TABLE)?;
        let (hi, lo) = range6::halves(&addr);
        match range6::lookup(hi, lo, |block| table.get(block)) {
            range::NONE => None,
            rule => Some(rule),
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rule<A: Address>(
    parsed: &Parsed,
    input: &Input,
    local: &LpmTrie<A, LocalRef>,
    learned: &HashMap<A, Learned>,
    by_src: impl PrefixSet<A>,
    by_dst: impl PrefixSet<A>,
    (src, dst): (A, A),
    flags: u32,
    (has_src, has_learned): (u32, u32),
) -> u32 {
    // One key for every lookup of the destination: the hash lookup reads its address part,
    // so the learned hosts cost no stack of their own (the XDP program is near the limit).
    let dst_key = Key::new(A::BITS, dst);
    if local.get(&dst_key).is_some() {
        return LOCAL_RULE;
    }
    if flags & settings_flags::HAS_COND != 0 {
        let rule = ordered_rule(parsed, input);
        if rule != NO_MATCH {
            return rule;
        }
    }
    if flags & has_src != 0
        && let Some(rule) = by_src.lookup(src)
    {
        return rule;
    }
    // A learned host is more specific than any prefix: it comes before the destination sets.
    // The hash is probed only while hosts of the family are learned.
    if flags & has_learned != 0 {
        // SAFETY: the addresses are byte arrays (alignment 1, asserted above), so a reference
        // to the key's address part is aligned although the key is packed.
        let dst_addr: &A = unsafe { &*core::ptr::addr_of!(dst_key.data) };
        if let Some(hit) = learned.get_ptr(dst_addr) {
            // SAFETY: the map returned a pointer to a live value; one u32 is copied out at once.
            return unsafe { (*hit).rule };
        }
    }
    by_dst.lookup(dst).unwrap_or(DEFAULT_RULE)
}
