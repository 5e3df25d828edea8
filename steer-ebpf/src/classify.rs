//! Rule lookup, in a fixed order: local destinations (never steered), the ordered rules (sets
//! with conditions, first match, [`crate::cond`]), source rules, hosts learned from DNS answers
//! (exact), destination rules, the default rule. And the hashes a
//! balanced rule picks its slot by.
//!
//! Fragments: only the first fragment of a datagram has the ports, so it alone can meet a port
//! rule or be hashed by flow. Its rule and flow hash are recorded in `FRAGS`
//! ([`steer_common::FragEntry`]) and every later fragment of the datagram takes them, so the
//! datagram is steered and counted whole even where nothing reassembles it before routing
//! (no connection tracking in the router's namespace).

use aya_ebpf::{
    btf_maps::ArrayOfMaps,
    maps::{HashMap, LpmTrie, lpm_trie::Key},
};
use steer_common::{
    AddrV4, AddrV6, DEFAULT_RULE, FragEntry, FragKey, LOCAL_RULE, Learned, LocalRef, MAX_RULES,
    flow_hash, range, range6, settings_flags, src_hash, words_v4, words_v6,
};

use crate::{
    cond::{Input, NO_MATCH, ordered_rule},
    maps::{
        DST_V4, DST_V6, FRAGS, LEARNED_V4, LEARNED_V6, LOCAL_V4, LOCAL_V6, RangeBlocks, SRC_V4,
        SRC_V6,
    },
    parse::{FragKind, Kind, Parsed},
};

/// The rule of a parsed packet (`LOCAL_RULE` for a local destination), or `None` when it is
/// not an IP packet the classifier can read. `flags` are `Settings::flags`: source lookups run
/// only when there are source prefixes, learned-host lookups only when hosts of the family are
/// learned, the ordered rules only when there are some. A later fragment takes the rule its
/// first fragment recorded; one that finds none (it overtook its first fragment, or the entry
/// was evicted) is looked up like any packet, without ports.
#[inline(always)]
pub fn rule_of(parsed: &Parsed, input: &Input, flags: u32) -> Option<u32> {
    let rule = match parsed.kind {
        Kind::V4 => rule_v4(parsed, input, flags),
        Kind::V6 => rule_v6(parsed, input, flags),
        Kind::NotIp | Kind::Truncated => return None,
    };
    if parsed.l4.frag == FragKind::No {
        return Some(rule);
    }
    Some(fragment_rule(parsed, rule))
}

/// The rule of a fragment whose own lookup gave `rule`: a first fragment records it, a later
/// one takes what its first fragment recorded (or `rule` without a record). A call of its own
/// after the lookups, not branches before them: the verifier then walks the lookups once per
/// family, as for any packet (branching on the fragment kind first doubled the time the kernel
/// took to verify the programs at every start). A later fragment's own lookup is wasted work
/// when its first fragment recorded the rule; fragments are rare.
#[inline(never)]
fn fragment_rule(parsed: &Parsed, rule: u32) -> u32 {
    if parsed.l4.frag == FragKind::First {
        record(parsed, rule);
        return rule;
    }
    match recorded_rule(parsed) {
        UNRECORDED => rule,
        recorded => recorded,
    }
}

/// What [`recorded_rule`] returns when no first fragment recorded a rule: no rule has this id,
/// and it is not `LOCAL_RULE`.
const UNRECORDED: u32 = MAX_RULES;

// The fragment table's key and value live in frames of their own (BPF-to-BPF calls), as the
// lookups' keys do below: the program's frame is nearly full.

/// Records a first fragment's rule and flow hash for the fragments after it. A local
/// destination is not recorded: the later fragments find it by their address as well.
#[inline(never)]
fn record(parsed: &Parsed, rule: u32) {
    if rule == LOCAL_RULE {
        return;
    }
    let entry = FragEntry {
        rule,
        hash: hash_of(parsed, false),
    };
    // A full table only means a later fragment is classified without its ports.
    let _ = FRAGS.insert(frag_key(parsed), entry, 0);
}

/// The rule a later fragment's first fragment recorded, or [`UNRECORDED`].
#[inline(never)]
fn recorded_rule(parsed: &Parsed) -> u32 {
    // SAFETY: the value is plain integers, one copied out at once.
    unsafe { FRAGS.get(frag_key(parsed)) }.map_or(UNRECORDED, |e| e.rule)
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
/// fragment recorded, so one flow's datagrams leave by one WAN however they were cut; without
/// a record, its hash is that of its addresses and protocol.
#[inline(always)]
pub fn hash_of(parsed: &Parsed, by_source: bool) -> u32 {
    let (s, d) = match parsed.kind {
        Kind::V4 => (words_v4(&parsed.src_v4()), words_v4(&parsed.dst_v4())),
        Kind::V6 => (words_v6(&parsed.src), words_v6(&parsed.dst)),
        Kind::NotIp | Kind::Truncated => return 0,
    };
    if by_source {
        src_hash(&s)
    } else {
        flow(parsed, &s, &d)
    }
}

#[inline(always)]
fn flow(parsed: &Parsed, src: &[u32; 4], dst: &[u32; 4]) -> u32 {
    let l4 = &parsed.l4;
    let hash = flow_hash(src, dst, l4.proto, l4.sport, l4.dport);
    if l4.frag != FragKind::Later {
        return hash;
    }
    // SAFETY: the value is plain integers, one copied out at once.
    unsafe { FRAGS.get(frag_key(parsed)) }.map_or(hash, |e| e.hash)
}

/// A fragment's datagram: its addresses as parsed (IPv4 in the first 4 bytes, the rest zero),
/// its identification, its family and transport protocol.
#[inline(always)]
fn frag_key(parsed: &Parsed) -> FragKey {
    let family = if parsed.kind == Kind::V6 { 6 } else { 4 };
    FragKey {
        src: parsed.src,
        dst: parsed.dst,
        id: parsed.l4.frag_id,
        family_proto: family | (u32::from(parsed.l4.proto) << 8),
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
