//! The contents of the four prefix maps as steer wants them (compiled from the configuration)
//! or as the kernel holds them (read back at start, kept current by every sync).

use std::{collections::HashMap, net::IpAddr};

use super::{Direction, PrefixMap};
use crate::{fast_hash::FastHash, prefix::Prefix};

/// Prefix -> rule id, for one prefix map. Hashed with [`FastHash`]: compiling a million-line
/// list inserts a million prefixes here, and the mirror of the maps as many again.
pub type PrefixRules = HashMap<Prefix, u32, FastHash>;

/// Prefix -> rule id, per prefix map.
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
        self.map_mut(PrefixMap::of(direction, &prefix))
            .insert(prefix, rule);
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
            held.get(&p).map(|rule| (p, *rule))
        })
    }

    /// How many prefixes each rule has, over all maps.
    pub fn per_rule(&self) -> HashMap<u32, usize> {
        let mut counts = HashMap::new();
        for rule in self.maps.iter().flat_map(HashMap::values) {
            *counts.entry(*rule).or_default() += 1;
        }
        counts
    }
}
