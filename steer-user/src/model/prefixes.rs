//! The contents of the four prefix maps as steer wants them (compiled from the configuration)
//! or as the kernel holds them (read back at start, kept current by every sync).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError, TryLockError},
};

use super::{Direction, PrefixMap, sorted::SortedPrefixes};
use crate::{fast_hash::FastHash, prefix::Prefix};

/// Prefix -> rule id, for one prefix map. Hashed with [`FastHash`]: compiling a million-line
/// list inserts a million prefixes here, and the mirror of the maps as many again.
pub type PrefixRules = HashMap<Prefix, u32, FastHash>;

/// Prefix -> rule id, per prefix map.
#[derive(Debug, Default)]
pub struct PrefixSets {
    maps: [PrefixRules; 4],
    /// One rule's prefixes sorted ([`PrefixSets::sorted`]), as of some earlier contents, with
    /// every change made since through [`PrefixSets::insert`] and [`PrefixSets::remove`];
    /// dropped by [`PrefixSets::map_mut`], whose changes it cannot follow. A reload of a
    /// changed list starts from it instead of collecting and sorting the set's million
    /// prefixes again. Behind a lock because that reload reads a shared snapshot.
    sorted: Mutex<Option<Sorted>>,
}

#[derive(Clone, Debug)]
struct Sorted {
    direction: Direction,
    rule: u32,
    base: Arc<SortedPrefixes>,
    /// (prefix, whether it has the rule now), in order.
    changes: Vec<(Prefix, bool)>,
}

/// Changes kept on top of a [`Sorted`] before it is dropped (applying them is a merge; a
/// change this large is cheaper collected again).
const MAX_SORTED_CHANGES: usize = 1 << 16;

impl Clone for PrefixSets {
    /// A copy of the contents, with what is remembered sorted unless a reload is sorting it
    /// right now: a sync on the event loop (which copies a snapshot shared with that reload)
    /// does not wait for it.
    fn clone(&self) -> Self {
        let sorted = match self.sorted.try_lock() {
            Ok(sorted) => sorted.clone(),
            Err(TryLockError::Poisoned(e)) => e.into_inner().clone(),
            Err(TryLockError::WouldBlock) => None,
        };
        PrefixSets {
            maps: self.maps.clone(),
            sorted: Mutex::new(sorted),
        }
    }
}

/// The contents; what is remembered sorted does not count.
impl PartialEq for PrefixSets {
    fn eq(&self, other: &Self) -> bool {
        self.maps == other.maps
    }
}

impl Eq for PrefixSets {}

impl PrefixSets {
    pub fn map(&self, map: PrefixMap) -> &PrefixRules {
        &self.maps[map.index()]
    }

    /// The map to change freely; forgets what [`PrefixSets::sorted`] remembered.
    pub fn map_mut(&mut self, map: PrefixMap) -> &mut PrefixRules {
        *self
            .sorted
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = None;
        &mut self.maps[map.index()]
    }

    /// Makes room for `additional` more prefixes of `direction`'s maps (IPv4, IPv6), so a load
    /// of a million does not grow the tables twenty times; changes no contents.
    pub fn reserve(&mut self, direction: Direction, additional: [usize; 2]) {
        for (v4, n) in [(true, additional[0]), (false, additional[1])] {
            self.maps[PrefixMap::new(direction, v4).index()].reserve(n);
        }
    }

    /// Maps `prefix` of a set matching on `direction` to `rule`.
    pub fn insert(&mut self, direction: Direction, prefix: Prefix, rule: u32) {
        let old = self.maps[PrefixMap::of(direction, &prefix).index()].insert(prefix, rule);
        self.note(direction, prefix, old, Some(rule));
    }

    /// Removes `prefix` of a set matching on `direction`; returns its rule.
    pub fn remove(&mut self, direction: Direction, prefix: &Prefix) -> Option<u32> {
        let old = self.maps[PrefixMap::of(direction, prefix).index()].remove(prefix);
        self.note(direction, *prefix, old, None);
        old
    }

    /// Follows a change of `prefix` from rule `old` to `new` in what is remembered sorted.
    fn note(&mut self, direction: Direction, prefix: Prefix, old: Option<u32>, new: Option<u32>) {
        let sorted = self
            .sorted
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(s) = sorted.as_mut().filter(|s| s.direction == direction) else {
            return;
        };
        let (had, has) = (old == Some(s.rule), new == Some(s.rule));
        if had != has {
            s.changes.push((prefix, has));
        }
        if s.changes.len() > MAX_SORTED_CHANGES {
            *sorted = None;
        }
    }

    /// The prefixes of `rule` in the maps of `direction`, sorted; remembered for the next call
    /// (see the field).
    pub fn sorted(&self, direction: Direction, rule: u32) -> Arc<SortedPrefixes> {
        let mut sorted = self.sorted.lock().unwrap_or_else(PoisonError::into_inner);
        let now = match sorted.as_ref() {
            Some(s) if (s.direction, s.rule) == (direction, rule) && s.changes.is_empty() => {
                return s.base.clone();
            }
            Some(s) if (s.direction, s.rule) == (direction, rule) => s.base.changed(&s.changes),
            _ => SortedPrefixes::collect(|m| self.map(m), direction, rule),
        };
        let now = Arc::new(now);
        *sorted = Some(Sorted {
            direction,
            rule,
            base: now.clone(),
            changes: Vec::new(),
        });
        now
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
        // Rule ids are small: counted in a vector, a million prefixes without a hash each.
        let mut counts: Vec<usize> = Vec::new();
        for rule in self.maps.iter().flat_map(HashMap::values) {
            let at = *rule as usize;
            if at >= counts.len() {
                counts.resize(at + 1, 0);
            }
            counts[at] += 1;
        }
        (0u32..).zip(counts).filter(|(_, n)| *n > 0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(rng: &mut u64) -> u64 {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    }

    fn random_prefix(rng: &mut u64) -> Prefix {
        let r = next(rng);
        // Few distinct prefixes, so that changes meet the same ones again.
        let a = (r >> 40) % 64;
        if r.is_multiple_of(4) {
            crate::prefix::parse_prefix(&format!("2001:db8:{a:x}::/48"), false).unwrap()
        } else {
            crate::prefix::parse_prefix(&format!("10.{}.{a}.0/24", r % 3), false).unwrap()
        }
    }

    /// What is remembered sorted, with the changes made since, is what collecting and sorting
    /// the maps again gives, whatever the changes: inserts, removals, a prefix moving to another
    /// rule or direction and back; and a change it cannot follow drops it.
    #[test]
    fn a_remembered_sorted_set_is_what_sorting_again_gives() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut sets = PrefixSets::default();
        for _ in 0..200 {
            let p = random_prefix(&mut rng);
            sets.insert(Direction::Dst, p, 1 + (next(&mut rng) % 2) as u32);
        }
        let fresh = |s: &PrefixSets, d, r| SortedPrefixes::collect(|m| s.map(m), d, r);
        for round in 0..50 {
            for (d, r) in [
                (Direction::Dst, 1),
                (Direction::Dst, 2),
                (Direction::Src, 1),
            ] {
                if round % 3 == usize::from(d == Direction::Src) {
                    assert_eq!(*sets.sorted(d, r), fresh(&sets, d, r), "round {round}");
                }
            }
            for _ in 0..(next(&mut rng) % 20) {
                let p = random_prefix(&mut rng);
                let d = if next(&mut rng).is_multiple_of(5) {
                    Direction::Src
                } else {
                    Direction::Dst
                };
                match next(&mut rng) % 3 {
                    0 => _ = sets.remove(d, &p),
                    _ => sets.insert(d, p, 1 + (next(&mut rng) % 3) as u32),
                }
            }
            let copy = sets.clone();
            assert_eq!(copy, sets);
            assert_eq!(
                *copy.sorted(Direction::Dst, 1),
                fresh(&sets, Direction::Dst, 1)
            );
        }
        let remembered = sets.sorted(Direction::Dst, 1);
        let p = remembered
            .v4
            .first()
            .map(|k| crate::model::sorted::from_v4_key(*k));
        if let Some(p) = p {
            sets.map_mut(PrefixMap::DstV4).remove(&p);
            assert_eq!(
                *sets.sorted(Direction::Dst, 1),
                fresh(&sets, Direction::Dst, 1)
            );
        }
    }
}
