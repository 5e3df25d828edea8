//! The range table against the kernel's LPM trie, its oracle: the same prefixes in both, the
//! same addresses through the testkit's XDP programs (`testkit_ranges_v4` runs the lookup the
//! classifier will, `steer_common::range::lookup`), every answer equal.
//!
//! The addresses: 10M random ones, and every prefix's first and last address and their
//! neighbours (where a longest match changes). The sets: the real-looking mix with values of
//! every rule, plus what makes longest match hard: the default route, nested chains from /1
//! to /32, prefixes on chunk edges, host routes. Then random changes, applied to the trie
//! entry by entry and to the table by a rebuild, and every answer again.

use std::collections::BTreeMap;

use steer::model::range::{PrefixV4, RangeTable};
use steer_common::{MAX_RULES, range::NONE};
use steer_tests::{
    bench::memory::real_mix,
    ranges::{Pair, Program, ends, v4},
    require_root,
    rng::Rng,
};

const RANDOM_ADDRESSES: usize = 10_000_000;

fn prefix(addr: u32, len: u8) -> PrefixV4 {
    (
        addr & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0),
        len,
    )
}

/// The hard cases: the default route, a chain of nested prefixes of every length, prefixes
/// whose ends sit on /16 chunk edges, and the first and last host of the space.
fn hard_cases(rng: &mut Rng) -> Vec<PrefixV4> {
    let mut out = vec![(0, 0), (0, 32), (u32::MAX, 32), prefix(u32::MAX, 16)];
    let base = rng.next_u64() as u32;
    out.extend((1..=32).map(|len| prefix(base, len)));
    for _ in 0..200 {
        let edge = (rng.next_u64() as u32) & 0xffff_0000;
        out.push(prefix(edge, 16 + rng.below(17) as u8));
        out.push(prefix(edge.wrapping_sub(1), 17 + rng.below(16) as u8));
    }
    out
}

fn random_value(rng: &mut Rng) -> u32 {
    rng.below(u64::from(MAX_RULES)) as u32
}

/// Every prefix's ends and their neighbours, and `random` random addresses.
fn probes(rng: &mut Rng, prefixes: impl Iterator<Item = PrefixV4>, random: usize) -> Vec<u32> {
    let mut out: Vec<u32> = prefixes
        .flat_map(|p| {
            let (first, last) = ends(p);
            [first.wrapping_sub(1), first, last, last.wrapping_add(1)]
        })
        .collect();
    out.extend((0..random).map(|_| rng.next_u64() as u32));
    out
}

fn assert_agree(pair: &Pair, addrs: &[u32], what: &str) {
    let ranges = pair.answers(Program::Ranges, addrs);
    let lpm = pair.answers(Program::Lpm, addrs);
    let wrong: Vec<(u32, u32, u32)> = addrs
        .iter()
        .zip(ranges.iter().zip(&lpm))
        .filter(|(_, (r, l))| r != l)
        .map(|(a, (r, l))| (*a, *r, *l))
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "{what}: range table and LPM trie disagree on {} of {} addresses; first (address, \
         range table, trie): {wrong:x?}",
        addrs
            .iter()
            .zip(ranges.iter().zip(&lpm))
            .filter(|(_, (r, l))| r != l)
            .count(),
        addrs.len()
    );
    // Not a vacuous agreement: most answers of a dense set are hits.
    let hits = lpm.iter().filter(|v| **v != NONE).count();
    assert!(hits > 0, "{what}: no address hit the set");
}

#[test]
fn the_range_table_answers_as_the_lpm_trie_before_and_after_changes() {
    require_root();
    let mut rng = Rng::from_env_or_time("range_table");
    let mut set: BTreeMap<PrefixV4, u32> = BTreeMap::new();
    for p in real_mix(&mut rng, 200_000, true).iter().map(v4) {
        set.insert(p, random_value(&mut rng));
    }
    for p in hard_cases(&mut rng) {
        set.insert(p, random_value(&mut rng));
    }
    let entries: Vec<(PrefixV4, u32)> = set.iter().map(|(p, v)| (*p, *v)).collect();
    let mut pair = Pair::load();
    pair.lpm_insert(&entries);
    pair.publish(&RangeTable::build(&entries));
    let addrs = probes(&mut rng, set.keys().copied(), RANDOM_ADDRESSES);
    assert_agree(&pair, &addrs, "the first load");

    // Random changes: 2,000 prefixes removed, 2,000 added (some inside existing ones), 2,000
    // given another value; the trie changes entry by entry, the table is rebuilt.
    let keys: Vec<PrefixV4> = set.keys().copied().collect();
    let mut touched = Vec::new();
    let removed: Vec<PrefixV4> = (0..2000)
        .map(|_| keys[rng.below(keys.len() as u64) as usize])
        .filter(|p| set.remove(p).is_some())
        .collect();
    pair.lpm_remove(&removed);
    touched.extend(&removed);
    let mut written = Vec::new();
    for i in 0..4000 {
        let p = if i < 2000 {
            let parent = keys[rng.below(keys.len() as u64) as usize];
            let len = (parent.1.max(8) + rng.below(8) as u8).min(32);
            prefix(rng.next_u64() as u32 | ends(parent).0, len)
        } else {
            keys[rng.below(keys.len() as u64) as usize]
        };
        let value = random_value(&mut rng);
        set.insert(p, value);
        written.push((p, value));
        touched.push(p);
    }
    pair.lpm_insert(&written);
    let entries: Vec<(PrefixV4, u32)> = set.iter().map(|(p, v)| (*p, *v)).collect();
    pair.publish(&RangeTable::build(&entries));
    let addrs = probes(&mut rng, set.keys().chain(&touched).copied(), 1_000_000);
    assert_agree(&pair, &addrs, "after the changes");
}

#[test]
fn an_empty_table_and_a_default_route() {
    require_root();
    let mut rng = Rng::new(1);
    let mut pair = Pair::load();
    pair.publish(&RangeTable::build(&[]));
    let addrs = probes(&mut rng, std::iter::empty(), 10_000);
    assert!(
        pair.answers(Program::Ranges, &addrs)
            .iter()
            .all(|v| *v == NONE)
    );
    let default = [((0, 0), 7)];
    pair.lpm_insert(&default);
    pair.publish(&RangeTable::build(&default));
    assert!(
        pair.answers(Program::Ranges, &addrs)
            .iter()
            .all(|v| *v == 7)
    );
    assert_agree(&pair, &addrs, "the default route");
}
