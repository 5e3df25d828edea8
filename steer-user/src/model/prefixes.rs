//! The contents of the four prefix maps as steer wants them (compiled from the configuration)
//! or as the kernel holds them (read back at start, kept current by every sync).

use std::{collections::HashMap, net::IpAddr};

use super::{Direction, FastHash, PrefixMap};
use crate::prefix::Prefix;

/// Prefix -> rule id of one map, with the fast hasher ([`FastHash`]): a load of a million
/// prefixes builds and probes these tables several million times.
pub type PrefixTable = HashMap<Prefix, u32, FastHash>;

/// Prefix -> rule id, per prefix map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixSets {
    maps: [PrefixTable; 4],
}

impl PrefixSets {
    pub fn map(&self, map: PrefixMap) -> &PrefixTable {
        &self.maps[map.index()]
    }

    pub fn map_mut(&mut self, map: PrefixMap) -> &mut PrefixTable {
        &mut self.maps[map.index()]
    }

    /// Maps `prefix` of a set matching on `direction` to `rule`.
    pub fn insert(&mut self, direction: Direction, prefix: Prefix, rule: u32) {
        self.map_mut(PrefixMap::of(direction, &prefix))
            .insert(prefix, rule);
    }

    /// Every map with its contents, in [`PrefixMap::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (PrefixMap, &PrefixTable)> {
        PrefixMap::ALL.into_iter().map(|m| (m, self.map(m)))
    }

    pub fn len(&self) -> usize {
        self.maps.iter().map(HashMap::len).sum()
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
        // Rule ids are small: counted in a vector, a million prefixes without a hash each.
        let mut counts: Vec<usize> = Vec::new();
        for rule in self.maps.iter().flat_map(|m| m.values()) {
            let at = *rule as usize;
            if at >= counts.len() {
                counts.resize(at + 1, 0);
            }
            counts[at] += 1;
        }
        (0u32..).zip(counts).filter(|(_, n)| *n > 0).collect()
    }
}
