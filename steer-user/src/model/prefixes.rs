//! The contents of the four prefix maps as steer wants them (compiled from the configuration)
//! or as the kernel holds them (read back at start, kept current by every sync).

use std::collections::HashMap;

use super::{Direction, PrefixMap};
use crate::prefix::Prefix;

/// Prefix -> rule id, per prefix map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixSets {
    maps: [HashMap<Prefix, u32>; 4],
}

impl PrefixSets {
    pub fn map(&self, map: PrefixMap) -> &HashMap<Prefix, u32> {
        &self.maps[map.index()]
    }

    pub fn map_mut(&mut self, map: PrefixMap) -> &mut HashMap<Prefix, u32> {
        &mut self.maps[map.index()]
    }

    /// Maps `prefix` of a set matching on `direction` to `rule`.
    pub fn insert(&mut self, direction: Direction, prefix: Prefix, rule: u32) {
        self.map_mut(PrefixMap::of(direction, &prefix))
            .insert(prefix, rule);
    }

    /// Every map with its contents, in [`PrefixMap::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (PrefixMap, &HashMap<Prefix, u32>)> {
        PrefixMap::ALL.into_iter().map(|m| (m, self.map(m)))
    }

    pub fn len(&self) -> usize {
        self.maps.iter().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
