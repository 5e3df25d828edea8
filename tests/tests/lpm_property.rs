//! Property test: random prefix sets in the kernel's LPM tries against a userspace oracle.
//! Every lookup goes through the real TC and XDP programs; the oracle is a plain linear
//! longest-prefix search with the documented order (source rules, then destination rules,
//! then the default rule). 100 % agreement is required.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use steer::{
    model::{Direction, PrefixMap},
    packet::Frame,
    prefix::Prefix,
};
use steer_common::MAX_RULES;
use steer_tests::{classifier::Classifier, rng::Rng};

const LOOKUPS: usize = 10_000;

/// The prefix sets of one round: prefix -> rule, per direction.
#[derive(Default)]
struct Sets {
    src: BTreeMap<Prefix, u32>,
    dst: BTreeMap<Prefix, u32>,
}

impl Sets {
    fn oracle(&self, src: IpAddr, dst: IpAddr) -> u32 {
        longest(&self.src, src)
            .or_else(|| longest(&self.dst, dst))
            .unwrap_or(steer_common::DEFAULT_RULE)
    }
}

fn longest(set: &BTreeMap<Prefix, u32>, ip: IpAddr) -> Option<u32> {
    set.iter()
        .filter(|(p, _)| p.contains(ip))
        .max_by_key(|(p, _)| p.len())
        .map(|(_, r)| *r)
}

fn random_addr(rng: &mut Rng, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(rng.bytes::<4>()))
    } else {
        IpAddr::V6(Ipv6Addr::from(rng.bytes::<16>()))
    }
}

/// An address inside `p`: its network bits, random host bits.
fn inside(rng: &mut Rng, p: &Prefix) -> IpAddr {
    let host = random_addr(rng, p.is_v4());
    match (p, host) {
        (Prefix::V4 { addr, len }, IpAddr::V4(h)) => {
            let mask = if *len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(*len))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(*addr) | (u32::from(h) & !mask)))
        }
        (Prefix::V6 { addr, len }, IpAddr::V6(h)) => {
            let mask = if *len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(*len))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(*addr) | (u128::from(h) & !mask)))
        }
        _ => unreachable!("same family"),
    }
}

/// A random prefix: mostly nested under an existing one (so longest-match really has to choose),
/// otherwise fresh, with lengths spread over the whole range.
fn random_prefix(rng: &mut Rng, v4: bool, existing: &[Prefix]) -> Prefix {
    let width = if v4 { 32 } else { 128 };
    if !existing.is_empty() && rng.chance(60) {
        let parent = existing[rng.below(existing.len() as u64) as usize];
        let len = u32::from(parent.len())
            + 1
            + rng.below(u64::from(width - u32::from(parent.len())).max(1)) as u32;
        return Prefix::truncating(inside(rng, &parent), len.min(width)).expect("valid length");
    }
    let len = match rng.below(10) {
        0 => rng.below(8) as u32,                    // very short, even /0
        1..=2 => width,                              // hosts
        _ => rng.below(u64::from(width) + 1) as u32, // anything
    };
    Prefix::truncating(random_addr(rng, v4), len).expect("valid length")
}

fn random_sets(rng: &mut Rng, v4: bool, dst_count: usize, src_count: usize) -> Sets {
    let mut sets = Sets::default();
    for (set, count) in [(&mut sets.dst, dst_count), (&mut sets.src, src_count)] {
        let mut made = Vec::new();
        for _ in 0..count {
            let p = random_prefix(rng, v4, &made);
            made.push(p);
            set.insert(p, 1 + rng.below(u64::from(MAX_RULES) - 1) as u32);
        }
    }
    sets
}

fn load(c: &mut Classifier, sets: &Sets) {
    for v4 in [true, false] {
        if sets.src.keys().any(|p| p.is_v4() == v4) {
            c.with_source_lookups(v4);
        }
    }
    for (dir, set) in [(Direction::Dst, &sets.dst), (Direction::Src, &sets.src)] {
        for (p, rule) in set {
            c.dp.maps_mut().set_prefix(dir, *p, *rule).expect("insert");
        }
    }
}

/// A lookup address: usually inside one of the set's prefixes, sometimes anywhere.
fn probe(rng: &mut Rng, v4: bool, set: &BTreeMap<Prefix, u32>, inside_percent: u64) -> IpAddr {
    if !set.is_empty() && rng.chance(inside_percent) {
        let p = set
            .keys()
            .nth(rng.below(set.len() as u64) as usize)
            .expect("index in range");
        inside(rng, p)
    } else {
        random_addr(rng, v4)
    }
}

fn check_agreement(c: &Classifier, sets: &Sets, rng: &mut Rng, v4: bool, round: &str) {
    for i in 0..LOOKUPS {
        let src = probe(rng, v4, &sets.src, 20);
        let dst = probe(rng, v4, &sets.dst, 80);
        let want = sets.oracle(src, dst);
        let frame = Frame::udp(src, dst).build();
        let tc_mark = c.tc(&frame).mark;
        assert_eq!(
            tc_mark,
            want << 8,
            "{round} lookup {i}: {src} -> {dst}: TC mark {tc_mark:#x}, oracle rule {want}"
        );
        let xdp_rule = c.xdp(&frame).meta.expect("IP frame gets a verdict").rule;
        assert_eq!(xdp_rule, want, "{round} lookup {i}: {src} -> {dst}: XDP");
    }
}

fn property(v4: bool) {
    let family = if v4 { "IPv4" } else { "IPv6" };
    let mut rng = Rng::from_env_or_time(family);
    let mut c = Classifier::load();
    // Rule r stamps r << 8 under 0xff00; the default rule (0) has no policy: unmarked.
    for rule in 1..MAX_RULES {
        c.mark_rule(rule, rule << 8);
    }
    let mut sets = random_sets(&mut rng, v4, 3000, 200);
    load(&mut c, &sets);
    check_agreement(&c, &sets, &mut rng, v4, &format!("{family} full"));

    // Delete a random half; the kernel must fall back exactly as the oracle does.
    for (dir, set) in [
        (Direction::Dst, &mut sets.dst),
        (Direction::Src, &mut sets.src),
    ] {
        let doomed: Vec<Prefix> = set.keys().copied().filter(|_| rng.chance(50)).collect();
        for p in doomed {
            assert!(
                c.dp.maps_mut().remove_prefix(dir, p).expect("remove"),
                "{p} was in the map"
            );
            set.remove(&p);
        }
    }
    check_agreement(
        &c,
        &sets,
        &mut rng,
        v4,
        &format!("{family} after deletions"),
    );

    // The map holds exactly what the oracle holds.
    for (dir, set) in [(Direction::Dst, &sets.dst), (Direction::Src, &sets.src)] {
        let mut dumped = c.dp.maps().prefixes(PrefixMap::new(dir, v4)).expect("dump");
        dumped.sort();
        assert_eq!(
            dumped,
            set.iter().map(|(p, r)| (*p, *r)).collect::<Vec<_>>(),
            "{family} {dir:?} dump"
        );
    }
}

#[test]
fn ipv4_lpm_agrees_with_the_oracle() {
    property(true);
}

#[test]
fn ipv6_lpm_agrees_with_the_oracle() {
    property(false);
}
