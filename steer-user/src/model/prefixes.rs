//! The contents of the four prefix maps as steer wants them (compiled from the configuration)
//! or as the kernel holds them (read back at start, kept current by every sync).

use std::{collections::HashMap, net::IpAddr};

use super::{Direction, PrefixMap, PrefixRules, sorted::SortedPrefixes};
use crate::prefix::Prefix;

/// Prefix -> rule id, per prefix map, each map compact and sorted ([`PrefixRules`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixSets {
    maps: [PrefixRules; 4],
}

impl PrefixSets {
    pub fn map(&self, map: PrefixMap) -> &PrefixRules {
        &self.maps[map.index()]
    }

    pub fn map_mut(&mut self, map: PrefixMap) -> &mut PrefixRules {
        &mut self.maps[map.index()]
    }

    /// Maps `prefix` of a set matching on `direction` to `rule`.
    pub fn insert(&mut self, direction: Direction, prefix: Prefix, rule: u32) {
        self.maps[PrefixMap::of(direction, &prefix).index()].insert(prefix, rule);
    }

    /// Maps every one of `prefixes` of a set matching on `direction` to `rule`, at once (a
    /// sort and a merge per map: a million-line list is not a million inserts).
    pub fn insert_all(
        &mut self,
        direction: Direction,
        prefixes: impl Iterator<Item = Prefix> + Clone,
        rule: u32,
    ) {
        for v4 in [true, false] {
            let of_family = prefixes.clone().filter(|p| p.is_v4() == v4);
            self.maps[PrefixMap::new(direction, v4).index()].insert_all(of_family, rule);
        }
    }

    /// Maps the sorted prefixes `listed` of a set matching on `direction` to `rule`, taking
    /// them over ([`PrefixRules::insert_sorted`]).
    pub fn insert_sorted(&mut self, direction: Direction, listed: SortedPrefixes, rule: u32) {
        let SortedPrefixes { v4, v6 } = listed;
        let v4 = SortedPrefixes { v4, v6: Vec::new() };
        let v6 = SortedPrefixes { v4: Vec::new(), v6 };
        self.maps[PrefixMap::new(direction, true).index()].insert_sorted(v4, rule);
        self.maps[PrefixMap::new(direction, false).index()].insert_sorted(v6, rule);
    }

    /// Removes `prefix` of a set matching on `direction`; returns its rule.
    pub fn remove(&mut self, direction: Direction, prefix: &Prefix) -> Option<u32> {
        self.maps[PrefixMap::of(direction, prefix).index()].remove(prefix)
    }

    /// Every map with its contents, in [`PrefixMap::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (PrefixMap, &PrefixRules)> {
        PrefixMap::ALL.into_iter().map(|m| (m, self.map(m)))
    }

    pub fn len(&self) -> usize {
        self.maps.iter().map(PrefixRules::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The longest prefix of `map` containing `ip`, with its rule: the classifier's answer,
    /// computed here for what the kernel cannot be asked (existing connections).
    pub fn longest(&self, map: PrefixMap, ip: IpAddr) -> Option<(Prefix, u32)> {
        let held = self.map(map);
        if held.is_empty() || ip.is_ipv4() != map.is_v4() {
            return None;
        }
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        (0..=bits).rev().find_map(|len| {
            let p = Prefix::truncating(ip, len).ok()?;
            held.get(&p).map(|rule| (p, rule))
        })
    }

    /// How many prefixes each rule has, over all maps.
    pub fn per_rule(&self) -> HashMap<u32, usize> {
        // Rule ids are small: counted in a vector, a million prefixes without a hash each.
        let mut counts: Vec<usize> = Vec::new();
        for rule in self.maps.iter().flat_map(PrefixRules::rules) {
            let at = rule as usize;
            if at >= counts.len() {
                counts.resize(at + 1, 0);
            }
            counts[at] += 1;
        }
        (0u32..).zip(counts).filter(|(_, n)| *n > 0).collect()
    }
}
