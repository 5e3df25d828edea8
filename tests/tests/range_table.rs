//! The range table against the kernel's LPM trie, its oracle: the same prefixes in both, the
//! same addresses through the testkit's XDP programs (`testkit_ranges_v4` runs the lookup the
//! classifier will, `steer_common::range::lookup`), every answer equal.
//!
//! The addresses: 10M random ones, and every prefix's first and last address and their
//! neighbours (where a longest match changes). The sets: the real-looking mix with values of
//! every rule, plus what makes longest match hard: the default route, nested chains from /1
//! to /32, prefixes on chunk edges, host routes. Then random changes, applied to the trie
//! entry by entry and to the table by a rebuild, and every answer again.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use steer::{
    dataplane::{Dataplane, run::run_tc},
    model::{
        Direction, Family,
        range::{PrefixV4, RangeTable},
        range6::{PrefixV6, RangeTable6},
    },
    packet::Frame,
    prefix::Prefix,
};
use steer_common::{
    DEFAULT_RULE, GENERATIONS, MAX_RULES, NO_WAN, PolicyEntry, action, range::NONE,
};
use steer_tests::{
    bench::memory::{clustered_v6, real_mix},
    classifier::Classifier,
    daemon::Workdir,
    ranges::{Pair, Program, ends, v4, v6},
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

fn prefix6(addr: u128, len: u8) -> PrefixV6 {
    (
        addr & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0),
        len,
    )
}

fn ends6((addr, len): PrefixV6) -> (u128, u128) {
    (
        addr,
        addr | u128::MAX.checked_shr(u32::from(len)).unwrap_or(0),
    )
}

fn random_v6(rng: &mut Rng) -> u128 {
    u128::from_be_bytes(rng.bytes::<16>())
}

/// IPv6's hard cases: the default route, the first and last host, a chain of nested prefixes
/// of every length, prefixes whose ends sit on /16 edges, and a /48 dense with hosts and
/// nested prefixes (a region split many levels down).
fn hard_cases_v6(rng: &mut Rng) -> Vec<PrefixV6> {
    let mut out = vec![(0, 0), (0, 128), (u128::MAX, 128), prefix6(u128::MAX, 16)];
    let base = random_v6(rng);
    out.extend((1..=128).map(|len| prefix6(base, len)));
    for _ in 0..200 {
        let edge = random_v6(rng) & !(u128::MAX >> 16);
        out.push(prefix6(edge, 16 + rng.below(113) as u8));
        out.push(prefix6(edge.wrapping_sub(1), 17 + rng.below(112) as u8));
    }
    let dense = random_v6(rng) & !(u128::MAX >> 48);
    for _ in 0..3000 {
        let len = 49 + rng.below(80) as u8;
        out.push(prefix6(dense | (random_v6(rng) >> 48), len));
    }
    out
}

/// Every prefix's ends and their neighbours, `random` addresses inside random prefixes of the
/// set and `random` anywhere.
fn probes6(rng: &mut Rng, prefixes: &[PrefixV6], random: usize) -> Vec<u128> {
    let mut out: Vec<u128> = prefixes
        .iter()
        .flat_map(|p| {
            let (first, last) = ends6(*p);
            [first.wrapping_sub(1), first, last, last.wrapping_add(1)]
        })
        .collect();
    for _ in 0..random {
        let (first, last) = ends6(prefixes[rng.below(prefixes.len() as u64) as usize]);
        out.push(first | (random_v6(rng) & (last - first)));
        out.push(random_v6(rng));
    }
    out
}

fn assert_agree6(pair: &Pair, addrs: &[u128], what: &str) {
    let ranges = pair.answers6(Program::RangesV6, addrs);
    let lpm = pair.answers6(Program::LpmV6, addrs);
    let wrong: Vec<(u128, u32, u32)> = addrs
        .iter()
        .zip(ranges.iter().zip(&lpm))
        .filter(|(_, (r, l))| r != l)
        .map(|(a, (r, l))| (*a, *r, *l))
        .collect();
    assert!(
        wrong.is_empty(),
        "{what}: IPv6 range table and LPM trie disagree on {} of {} addresses; first (address, \
         range table, trie): {:x?}",
        wrong.len(),
        addrs.len(),
        &wrong[..wrong.len().min(5)]
    );
    let hits = lpm.iter().filter(|v| **v != NONE).count();
    assert!(
        hits > addrs.len() / 4,
        "{what}: only {hits} addresses hit the set"
    );
}

#[test]
fn the_ipv6_range_table_answers_as_the_lpm_trie_before_and_after_changes() {
    require_root();
    let mut rng = Rng::from_env_or_time("range_table_v6");
    let mut set: BTreeMap<PrefixV6, u32> = BTreeMap::new();
    let prefixes = clustered_v6(&mut rng, 100_000)
        .into_iter()
        .chain(real_mix(&mut rng, 20_000, false));
    for p in prefixes.map(|p| v6(&p)).chain(hard_cases_v6(&mut rng)) {
        set.insert(p, random_value(&mut rng));
    }
    let entries: Vec<(PrefixV6, u32)> = set.iter().map(|(p, v)| (*p, *v)).collect();
    let mut pair = Pair::load();
    pair.lpm6_insert(&entries);
    pair.publish6(&RangeTable6::build(&entries));
    let keys: Vec<PrefixV6> = set.keys().copied().collect();
    let addrs = probes6(&mut rng, &keys, RANDOM_ADDRESSES / 2);
    assert_agree6(&pair, &addrs, "the first load");

    // Random changes: 2,000 prefixes removed, 2,000 added inside existing ones, 2,000 given
    // another value; the trie changes entry by entry, the table is rebuilt.
    let removed: Vec<PrefixV6> = (0..2000)
        .map(|_| keys[rng.below(keys.len() as u64) as usize])
        .filter(|p| set.remove(p).is_some())
        .collect();
    pair.lpm6_remove(&removed);
    let mut written = Vec::new();
    for i in 0..4000 {
        let p = if i < 2000 {
            let parent = keys[rng.below(keys.len() as u64) as usize];
            let len = (parent.1.max(16) + rng.below(24) as u8).min(128);
            prefix6(
                random_v6(&mut rng)
                    .checked_shr(u32::from(parent.1))
                    .unwrap_or(0)
                    | ends6(parent).0,
                len,
            )
        } else {
            keys[rng.below(keys.len() as u64) as usize]
        };
        let value = random_value(&mut rng);
        set.insert(p, value);
        written.push((p, value));
    }
    pair.lpm6_insert(&written);
    let entries: Vec<(PrefixV6, u32)> = set.iter().map(|(p, v)| (*p, *v)).collect();
    pair.publish6(&RangeTable6::build(&entries));
    let mut changed: Vec<PrefixV6> = set.keys().copied().collect();
    changed.extend(&removed);
    let addrs = probes6(&mut rng, &changed, 500_000);
    assert_agree6(&pair, &addrs, "after the changes");
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

/// The classifier's own IPv4 set through one change at a time, each written into the live
/// table (a chunk's new ranges, then one store): after every change its answers equal the
/// trie's, and a change publishes no new table.
#[test]
fn the_classifier_answers_as_the_lpm_trie_through_changes_written_in_place() {
    require_root();
    let mut rng = Rng::from_env_or_time("range_table_in_place");
    let mut set: BTreeMap<PrefixV4, u32> = BTreeMap::new();
    for p in real_mix(&mut rng, 50_000, true).iter().map(v4) {
        set.insert(p, 1 + random_value(&mut rng) % (MAX_RULES - 1));
    }
    for p in hard_cases(&mut rng) {
        set.insert(p, 1 + random_value(&mut rng) % (MAX_RULES - 1));
    }
    let entries: Vec<(PrefixV4, u32)> = set.iter().map(|(p, v)| (*p, *v)).collect();
    let mut classifier = Classifier::load();
    classifier
        .dp
        .maps_mut()
        .set_prefixes(Direction::Dst, &as_prefixes(&entries))
        .expect("first load");
    let mut pair = Pair::load();
    pair.lpm_insert(&entries);
    let keys: Vec<PrefixV4> = set.keys().copied().collect();
    for change in 0..300 {
        let p = match change % 3 {
            0 => keys[rng.below(keys.len() as u64) as usize],
            _ => {
                let parent = keys[rng.below(keys.len() as u64) as usize];
                let len = (parent.1 + 1 + rng.below(8) as u8).min(32);
                let (first, last) = ends(parent);
                prefix(first | (rng.next_u64() as u32 & (first ^ last)), len)
            }
        };
        let before = classifier.dp.maps().writes();
        if change % 5 == 0 && set.remove(&p).is_some() {
            classifier
                .dp
                .maps_mut()
                .remove_prefix(Direction::Dst, as_prefix(p))
                .expect("remove");
            pair.lpm_remove(&[p]);
        } else {
            let value = 1 + random_value(&mut rng) % (MAX_RULES - 1);
            set.insert(p, value);
            classifier
                .dp
                .maps_mut()
                .set_prefix(Direction::Dst, as_prefix(p), value)
                .expect("insert");
            pair.lpm_insert(&[(p, value)]);
        }
        // One write: no table published. A prefix of /3 or shorter covers more chunks than
        // are rewritten in place, and gets a fresh table.
        if p.1 > 3 {
            assert_eq!(
                classifier.dp.maps().writes() - before,
                1,
                "change {change} ({p:x?}) was written in place"
            );
        }
        let mut addrs = probes(&mut rng, std::iter::once(p), 64);
        if change % 50 == 49 {
            addrs.extend(probes(&mut rng, set.keys().copied(), 0));
        }
        let lpm = pair.answers(Program::Lpm, &addrs);
        for (addr, want) in addrs.iter().zip(lpm) {
            let want = if want == NONE { DEFAULT_RULE } else { want };
            let frame = Frame::udp(
                "192.168.1.10".parse().unwrap(),
                Ipv4Addr::from(*addr).into(),
            )
            .build();
            assert_eq!(
                classifier.tc(&frame).rule,
                Some(want),
                "change {change} ({p:x?}): address {addr:#010x}"
            );
        }
    }
}

/// The same for an IPv6 set: each change is written into the live table (a chunk's new split
/// tables and ranges, then one store), and after each the classifier answers as the trie.
#[test]
fn the_classifier_answers_as_the_ipv6_lpm_trie_through_changes_written_in_place() {
    require_root();
    let mut rng = Rng::from_env_or_time("range_table_v6_in_place");
    let mut set: BTreeMap<PrefixV6, u32> = BTreeMap::new();
    let rule = |rng: &mut Rng| 1 + random_value(rng) % (MAX_RULES - 1);
    for p in clustered_v6(&mut rng, 30_000).iter().map(v6) {
        set.insert(p, rule(&mut rng));
    }
    for p in hard_cases_v6(&mut rng) {
        set.insert(p, rule(&mut rng));
    }
    let entries: Vec<(PrefixV6, u32)> = set.iter().map(|(p, v)| (*p, *v)).collect();
    let as_prefix6 = |(addr, len): PrefixV6| {
        Prefix::new(Ipv6Addr::from(addr).into(), u32::from(len)).expect("a valid prefix")
    };
    let mut classifier = Classifier::load();
    let all: Vec<(Prefix, u32)> = entries.iter().map(|(p, v)| (as_prefix6(*p), *v)).collect();
    classifier
        .dp
        .maps_mut()
        .set_prefixes(Direction::Dst, &all)
        .expect("first load");
    let mut pair = Pair::load();
    pair.lpm6_insert(&entries);
    let keys: Vec<PrefixV6> = set.keys().copied().collect();
    let mut fresh = 0;
    for change in 0..300 {
        let p = match change % 3 {
            0 => keys[rng.below(keys.len() as u64) as usize],
            _ => {
                let parent = keys[rng.below(keys.len() as u64) as usize];
                let len = (parent.1 + 1 + rng.below(24) as u8).min(128);
                let (first, last) = ends6(parent);
                prefix6(first | (random_v6(&mut rng) & (first ^ last)), len)
            }
        };
        let before = classifier.dp.maps().writes();
        if change % 5 == 0 && set.remove(&p).is_some() {
            classifier
                .dp
                .maps_mut()
                .remove_prefix(Direction::Dst, as_prefix6(p))
                .expect("remove");
            pair.lpm6_remove(&[p]);
        } else {
            let value = rule(&mut rng);
            set.insert(p, value);
            classifier
                .dp
                .maps_mut()
                .set_prefix(Direction::Dst, as_prefix6(p), value)
                .expect("insert");
            pair.lpm6_insert(&[(p, value)]);
        }
        // One write when written in place; a table published too when the spare room ran out
        // or the garbage outgrew the table (IPv6 regions are bigger than IPv4 chunks, so that
        // happens now and then in 300 changes).
        if classifier.dp.maps().writes() - before > 1 {
            fresh += 1;
        }
        let mut addrs = probes6(&mut rng, &[p], 32);
        if change % 50 == 49 {
            addrs.extend(probes6(&mut rng, &keys, 0));
        }
        let lpm = pair.answers6(Program::LpmV6, &addrs);
        for (addr, want) in addrs.iter().zip(lpm) {
            let want = if want == NONE { DEFAULT_RULE } else { want };
            let frame =
                Frame::udp("fd00::10".parse().unwrap(), Ipv6Addr::from(*addr).into()).build();
            assert_eq!(
                classifier.tc(&frame).rule,
                Some(want),
                "change {change} ({p:x?}): address {addr:x}"
            );
        }
    }
    assert!(
        fresh <= 15,
        "{fresh} of 300 changes published a fresh table: they are meant to be written in place"
    );
}

fn as_prefix((addr, len): PrefixV4) -> Prefix {
    Prefix::new(Ipv4Addr::from(addr).into(), u32::from(len)).expect("a valid prefix")
}

fn as_prefixes(entries: &[(PrefixV4, u32)]) -> Vec<(Prefix, u32)> {
    entries.iter().map(|(p, v)| (as_prefix(*p), *v)).collect()
}

/// Whole tables swapped in while another copy of the classifier (as `steer explain` loads it)
/// runs packets on the same maps: a packet to a prefix that every table holds never gets
/// another mark, however the swaps and the in-place writes interleave with it.
#[test]
fn tables_swapped_under_load_never_give_a_wrong_mark() {
    swaps_under_load(Family::V4);
}

/// The same for an IPv6 set: /48s spread over more /16s than a change rewrites in place.
#[test]
fn ipv6_tables_swapped_under_load_never_give_a_wrong_mark() {
    swaps_under_load(Family::V6);
}

fn swaps_under_load(family: Family) {
    require_root();
    let work = Workdir::new("range-swap");
    let (mut dp, _) = Dataplane::open_pinned(&work.pin_dir).expect("open pinned");
    for (rule, mark) in [(DEFAULT_RULE, 0x100), (1, 0x200), (2, 0x300)] {
        let entry = PolicyEntry {
            action: action::MARK,
            mark,
            mask: 0xff00,
            wan: NO_WAN,
            ..PolicyEntry::default()
        };
        for generation in 0..GENERATIONS {
            dp.maps_mut()
                .set_policy(generation, family, rule, entry)
                .expect("policy");
        }
    }
    let mut rng = Rng::from_env_or_time("range_swap");
    // A /24 (IPv6: a /48 in 2000::/3), and a host of it.
    let v6 = family == Family::V6;
    let random_prefix = |rng: &mut Rng| -> Prefix {
        let addr: IpAddr = if v6 {
            Ipv6Addr::from(random_v6(rng) >> 3 | 1 << 125).into()
        } else {
            Ipv4Addr::from(rng.next_u64() as u32).into()
        };
        Prefix::truncating(addr, if v6 { 48 } else { 24 }).expect("a valid prefix")
    };
    let host_of = |rng: &mut Rng, p: &Prefix| -> IpAddr {
        match p.addr() {
            IpAddr::V4(a) => Ipv4Addr::from(u32::from(a) | (1 + rng.below(254) as u32)).into(),
            IpAddr::V6(a) => Ipv6Addr::from(u128::from(a) | u128::from(rng.next_u64() | 1)).into(),
        }
    };
    // The prefix beside `p` (its last bit flipped).
    let beside = |p: &Prefix| -> Prefix {
        let addr: IpAddr = match p.addr() {
            IpAddr::V4(a) => Ipv4Addr::from(u32::from(a) ^ 0x100).into(),
            IpAddr::V6(a) => Ipv6Addr::from(u128::from(a) ^ 1 << 80).into(),
        };
        Prefix::truncating(addr, p.len().into()).expect("a valid prefix")
    };
    let stable: Vec<Prefix> = (0..256).map(|_| random_prefix(&mut rng)).collect();
    // Spread over more /16s than are rewritten in place: each write of them is a fresh table.
    let flipping: Vec<Prefix> = (0..20_000)
        .map(|_| random_prefix(&mut rng))
        .filter(|p| !stable.contains(p))
        .collect();
    let stable_entries: Vec<(Prefix, u32)> = stable.iter().map(|p| (*p, 1)).collect();
    dp.maps_mut()
        .set_prefixes(Direction::Dst, &stable_entries)
        .expect("stable prefixes");
    let client: IpAddr = if v6 { "fd00::10" } else { "192.168.1.10" }
        .parse()
        .unwrap();
    let frames: Vec<Vec<u8>> = stable
        .iter()
        .take(64)
        .map(|p| Frame::udp(client, host_of(&mut rng, p)).build())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let lookups = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, lookups, pins) = (stop.clone(), lookups.clone(), work.pin_dir.clone());
        std::thread::spawn(move || {
            let beside = Dataplane::load_beside(&pins).expect("load beside");
            let mut wrong = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for frame in &frames {
                    let mark = run_tc(beside.tc(), frame, 0).expect("test run").mark;
                    lookups.fetch_add(1, Ordering::Relaxed);
                    if mark != 0x200 {
                        wrong.push(mark);
                    }
                }
            }
            wrong
        })
    };
    // The reader loads its own copy of the classifier first (the verifier takes a while): the
    // swaps start once its lookups do.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while lookups.load(Ordering::Relaxed) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let flip_entries: Vec<(Prefix, u32)> = flipping.iter().map(|p| (*p, 2)).collect();
    let mut swaps = 0;
    for cycle in 0..30 {
        let before = dp.maps().writes();
        dp.maps_mut()
            .set_prefixes(Direction::Dst, &flip_entries)
            .expect("add the spread prefixes");
        swaps += dp.maps().writes() - before - flip_entries.len() as u64;
        let (removed, result) = dp
            .maps_mut()
            .remove_prefixes(Direction::Dst, flipping.iter());
        result.expect("remove the spread prefixes");
        assert_eq!(removed, flipping.len());
        // And one change written in place, next to a probed prefix.
        dp.maps_mut()
            .set_prefix(Direction::Dst, beside(&stable[cycle % 64]), 2)
            .expect("in place");
    }
    stop.store(true, Ordering::Relaxed);
    let wrong = reader.join().expect("reader thread");
    let n = lookups.load(Ordering::Relaxed);
    assert!(n > 1_000, "the lookups ran alongside the swaps ({n})");
    assert!(
        swaps >= 30,
        "the spread writes published fresh tables ({swaps})"
    );
    assert!(
        wrong.is_empty(),
        "{} of {n} lookups got another mark: {wrong:x?}",
        wrong.len()
    );
}
