//! Prefix -> rule for one prefix map, kept compact: a million IPv4 prefixes take 8 MB (the
//! hash map this replaces took 52 MB, with a second copy in the mirror).
//!
//! Each prefix and its rule are one sortable value in the packing of the kernel's record
//! (`steer_common::range::record_entry`: 8 bytes an IPv4 prefix, 24 an IPv6 one), held in a
//! sorted vector. Single inserts and removals go to a small sorted overlay first, merged into
//! the vector once it holds an eighth of it, so a change costs a logarithm and the vector is
//! rewritten only every so often; a bulk insert ([`PrefixRules::insert_all`]) sorts and merges
//! once. Reads see the vector and the overlay together, in prefix order.

use std::{
    cmp::Ordering,
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use steer_common::range::{record_entry, record_parts};

use super::sorted::{SortedPrefixes, from_v4_key, from_v6_key};
use crate::prefix::Prefix;

/// A prefix and its rule as one value that sorts as the prefix does (address, then length),
/// the rule in bits that [`Packed::key`] clears.
trait Packed: Copy + Ord + std::fmt::Debug {
    fn pack(prefix: &Prefix, rule: u32) -> Option<Self>;
    fn unpack(self) -> (Prefix, u32);
    /// The prefix with rule 0: what identifies it.
    fn key(self) -> Self;
}

/// An IPv4 prefix: one record entry.
impl Packed for u64 {
    fn pack(prefix: &Prefix, rule: u32) -> Option<u64> {
        match *prefix {
            Prefix::V4 { addr, len } => Some(record_entry(u32::from(addr), len, rule)),
            Prefix::V6 { .. } => None,
        }
    }
    fn unpack(self) -> (Prefix, u32) {
        let (addr, len, rule) = record_parts(self);
        let addr = Ipv4Addr::from(addr);
        (Prefix::V4 { addr, len }, rule)
    }
    fn key(self) -> u64 {
        self & !0xffff
    }
}

/// An IPv6 prefix: the address's halves, then its length and rule as IPv4's entry holds them
/// (the record's IPv6 entry).
impl Packed for [u64; 3] {
    fn pack(prefix: &Prefix, rule: u32) -> Option<[u64; 3]> {
        match *prefix {
            Prefix::V6 { addr, len } => {
                let addr = u128::from(addr);
                Some([(addr >> 64) as u64, addr as u64, record_entry(0, len, rule)])
            }
            Prefix::V4 { .. } => None,
        }
    }
    fn unpack(self) -> (Prefix, u32) {
        let (_, len, rule) = record_parts(self[2]);
        let addr = Ipv6Addr::from(u128::from(self[0]) << 64 | u128::from(self[1]));
        (Prefix::V6 { addr, len }, rule)
    }
    fn key(self) -> [u64; 3] {
        [self[0], self[1], self[2].key()]
    }
}

/// Changes the overlay takes before it is merged, at least (a fraction of the vector past it).
const MIN_OVERLAY: usize = 4096;

/// The prefixes of one family: a sorted vector and an overlay of changes not merged yet.
#[derive(Clone, Debug)]
struct Layer<P: Packed> {
    /// Sorted, each key once; shared, never changed in place: a copy of the map (a snapshot
    /// for a reload) costs nothing, and the mirror of the kernel shares the range sets' own
    /// entries ([`PrefixRules::of_v4`]).
    base: Arc<Vec<P>>,
    /// By key: `Some` holds the prefix with its rule (new or changed), `None` removes it.
    overlay: BTreeMap<P, Option<P>>,
    len: usize,
}

impl<P: Packed> Default for Layer<P> {
    fn default() -> Self {
        Layer {
            base: Arc::default(),
            overlay: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<P: Packed> Layer<P> {
    fn of(base: Arc<Vec<P>>) -> Layer<P> {
        debug_assert!(base.is_sorted_by(|a, b| a.key() < b.key()));
        Layer {
            len: base.len(),
            base,
            overlay: BTreeMap::new(),
        }
    }

    /// The entries in order, shared unless changes wait in the overlay.
    fn packed(&self) -> Arc<Vec<P>> {
        if self.overlay.is_empty() {
            self.base.clone()
        } else {
            Arc::new(self.iter().collect())
        }
    }

    fn get(&self, key: P) -> Option<P> {
        match self.overlay.get(&key) {
            Some(entry) => *entry,
            None => self.in_base(key).ok().map(|at| self.base[at]),
        }
    }

    fn in_base(&self, key: P) -> Result<usize, usize> {
        self.base.binary_search_by(|e| e.key().cmp(&key))
    }

    /// Sets `key`'s entry to `entry` (`None`: removes it); returns the entry it had.
    fn set(&mut self, key: P, entry: Option<P>) -> Option<P> {
        let old = self.get(key);
        if old == entry {
            return old;
        }
        self.len = self.len + usize::from(entry.is_some()) - usize::from(old.is_some());
        self.overlay.insert(key, entry);
        if self.overlay.len() > MIN_OVERLAY.max(self.base.len() / 8) {
            self.merge();
        }
        old
    }

    /// Merges the overlay into the vector.
    fn merge(&mut self) {
        if self.overlay.is_empty() {
            return;
        }
        let overlay = std::mem::take(&mut self.overlay);
        let added = overlay.values().filter(|e| e.is_some()).count();
        self.merge_sorted(overlay.into_iter(), added);
    }

    /// Applies `changes` (in key order, each key once; `None` removes it) to the vector, in
    /// one pass; `added` of them hold an entry.
    fn merge_sorted(&mut self, changes: impl Iterator<Item = (P, Option<P>)>, added: usize) {
        let mut out = Vec::with_capacity(self.base.len() + added);
        let mut rest = self.base.as_slice();
        for (key, entry) in changes {
            let at = rest.partition_point(|e| e.key() < key);
            out.extend_from_slice(&rest[..at]);
            rest = &rest[at..];
            if rest.first().is_some_and(|e| e.key() == key) {
                rest = &rest[1..];
            }
            out.extend(entry);
        }
        out.extend_from_slice(rest);
        self.base = Arc::new(out);
    }

    /// Every entry, in order.
    fn iter(&self) -> impl Iterator<Item = P> + '_ {
        Merged {
            base: self.base.iter().copied().peekable(),
            overlay: self.overlay.iter().peekable(),
        }
    }

    /// Gives each of `entries` (any order; the last of a key wins) its place.
    fn insert_all(&mut self, mut entries: Vec<P>) {
        self.merge();
        // Stable: of one key's entries the last stays last, and is the one kept. Entries in
        // order (a sync's writes, a set's lists) need no sort, nor its scratch copy.
        if !entries.is_sorted_by_key(|e| e.key()) {
            entries.sort_by_key(|e| e.key());
        }
        let mut kept = 0;
        for at in 0..entries.len() {
            if kept > 0 && entries[kept - 1].key() == entries[at].key() {
                kept -= 1;
            }
            entries[kept] = entries[at];
            kept += 1;
        }
        entries.truncate(kept);
        if self.base.is_empty() {
            self.len = entries.len();
            self.base = Arc::new(entries);
            return;
        }
        let new = entries
            .iter()
            .filter(|e| self.in_base(e.key()).is_err())
            .count();
        let added = entries.len();
        self.merge_sorted(entries.into_iter().map(|e| (e.key(), Some(e))), added);
        self.len += new;
    }

    /// This layer's entries and `other`'s side by side, in order: each key once, with its
    /// entry on either side.
    fn joined<'a>(&'a self, other: &'a Layer<P>) -> impl Iterator<Item = Joined<P>> + 'a {
        let (mut a, mut b) = (self.iter().peekable(), other.iter().peekable());
        std::iter::from_fn(move || {
            let order = match (a.peek(), b.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(x), Some(y)) => x.key().cmp(&y.key()),
            };
            let (x, y) = match order {
                Ordering::Less => (a.next(), None),
                Ordering::Greater => (None, b.next()),
                Ordering::Equal => (a.next(), b.next()),
            };
            Some((x.or(y)?.key(), x, y))
        })
    }
}

/// A key, with its entry on each side of a join.
type Joined<P> = (P, Option<P>, Option<P>);

/// The vector and the overlay read as one, in order.
struct Merged<'a, P: Packed, B: Iterator<Item = P>> {
    base: std::iter::Peekable<B>,
    overlay: std::iter::Peekable<std::collections::btree_map::Iter<'a, P, Option<P>>>,
}

impl<P: Packed, B: Iterator<Item = P>> Iterator for Merged<'_, P, B> {
    type Item = P;

    fn next(&mut self) -> Option<P> {
        loop {
            let order = match (self.base.peek(), self.overlay.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(b), Some((key, _))) => b.key().cmp(key),
            };
            if order != Ordering::Greater {
                let b = self.base.next();
                if order == Ordering::Less {
                    return b;
                }
            }
            if let Some((_, Some(entry))) = self.overlay.next() {
                return Some(*entry);
            }
        }
    }
}

/// Prefix -> rule id, for one prefix map (either family; a map holds one).
#[derive(Clone, Debug, Default)]
pub struct PrefixRules {
    v4: Layer<u64>,
    v6: Layer<[u64; 3]>,
}

impl PrefixRules {
    /// IPv4 prefixes as a range set keeps its entries (`steer_common::range::record_entry`,
    /// sorted, each prefix once), shared with it.
    pub fn of_v4(entries: Arc<Vec<u64>>) -> PrefixRules {
        PrefixRules {
            v4: Layer::of(entries),
            v6: Layer::default(),
        }
    }

    /// IPv6 prefixes as a range set keeps its entries (the address's halves, then the
    /// length and rule as IPv4's record entry holds them; sorted, each prefix once), shared.
    pub fn of_v6(entries: Arc<Vec<[u64; 3]>>) -> PrefixRules {
        PrefixRules {
            v4: Layer::default(),
            v6: Layer::of(entries),
        }
    }

    /// The IPv4 prefixes as a range set keeps its entries ([`PrefixRules::of_v4`]), shared.
    pub fn entries_v4(&self) -> Arc<Vec<u64>> {
        self.v4.packed()
    }

    /// The IPv6 prefixes as a range set keeps its entries ([`PrefixRules::of_v6`]), shared.
    pub fn entries_v6(&self) -> Arc<Vec<[u64; 3]>> {
        self.v6.packed()
    }

    pub fn len(&self) -> usize {
        self.v4.len + self.v6.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rule of `prefix`.
    pub fn get(&self, prefix: &Prefix) -> Option<u32> {
        match prefix {
            Prefix::V4 { .. } => rule_of(self.v4.get(key(prefix)?)),
            Prefix::V6 { .. } => rule_of(self.v6.get(key(prefix)?)),
        }
    }

    pub fn contains_key(&self, prefix: &Prefix) -> bool {
        self.get(prefix).is_some()
    }

    /// Gives `prefix` rule `rule` (rule ids are below `steer_common::MAX_RULES`); returns the
    /// rule it had.
    pub fn insert(&mut self, prefix: Prefix, rule: u32) -> Option<u32> {
        debug_assert!(rule < steer_common::MAX_RULES, "rule {rule}");
        match prefix {
            Prefix::V4 { .. } => rule_of(self.v4.set(key(&prefix)?, u64::pack(&prefix, rule))),
            Prefix::V6 { .. } => {
                rule_of(self.v6.set(key(&prefix)?, <[u64; 3]>::pack(&prefix, rule)))
            }
        }
    }

    /// Removes `prefix`; returns its rule.
    pub fn remove(&mut self, prefix: &Prefix) -> Option<u32> {
        match prefix {
            Prefix::V4 { .. } => rule_of(self.v4.set(key(prefix)?, None)),
            Prefix::V6 { .. } => rule_of(self.v6.set(key(prefix)?, None)),
        }
    }

    /// Gives every one of `listed` rule `rule`, taking the sorted prefixes over: IPv4 keys are
    /// repacked where they are (into a map that holds no IPv4 prefix yet, they become its
    /// entries: a million-line list is not copied).
    pub fn insert_sorted(&mut self, listed: SortedPrefixes, rule: u32) {
        let SortedPrefixes { mut v4, v6 } = listed;
        for key in &mut v4 {
            let prefix = from_v4_key(*key);
            *key = u64::pack(&prefix, rule).unwrap_or(*key);
        }
        self.v4.insert_all(v4);
        let v6 = v6
            .into_iter()
            .filter_map(|key| <[u64; 3]>::pack(&from_v6_key(key), rule));
        self.v6.insert_all(v6.collect());
    }

    /// Gives every one of `prefixes` rule `rule` at once (the last of duplicates counts, as
    /// inserting them one by one would): a sort and one merge.
    pub fn insert_all(&mut self, prefixes: impl IntoIterator<Item = Prefix>, rule: u32) {
        self.extend(prefixes.into_iter().map(|p| (p, rule)));
    }

    /// Every prefix with its rule, IPv4 first, each family in prefix order.
    pub fn iter(&self) -> impl Iterator<Item = (Prefix, u32)> + '_ {
        self.v4
            .iter()
            .map(Packed::unpack)
            .chain(self.v6.iter().map(Packed::unpack))
    }

    /// The prefixes of `rule`, in order.
    pub fn of_rule(&self, rule: u32) -> impl Iterator<Item = Prefix> + '_ {
        self.iter().filter(move |(_, r)| *r == rule).map(|(p, _)| p)
    }

    pub fn keys(&self) -> impl Iterator<Item = Prefix> + '_ {
        self.iter().map(|(p, _)| p)
    }

    /// How many prefixes of this map `other` does not hold: each looked up when this map is
    /// small beside `other` (a few edits of a million-prefix set), one merge of both otherwise.
    pub fn count_missing_from(&self, other: &PrefixRules) -> usize {
        if self.len().saturating_mul(64) < other.len() {
            self.keys().filter(|p| !other.contains_key(p)).count()
        } else {
            self.joined(other)
                .filter(|(_, mine, theirs)| mine.is_some() && theirs.is_none())
                .count()
        }
    }

    /// Every prefix of this map or `other`, in order, with its rule in each: a merge of the
    /// two sorted maps, where looking each up in the other would search it.
    pub fn joined<'a>(
        &'a self,
        other: &'a PrefixRules,
    ) -> impl Iterator<Item = (Prefix, Option<u32>, Option<u32>)> + 'a {
        fn side<P: Packed>((key, a, b): Joined<P>) -> (Prefix, Option<u32>, Option<u32>) {
            let rule = |e: P| e.unpack().1;
            (key.unpack().0, a.map(rule), b.map(rule))
        }
        self.v4
            .joined(&other.v4)
            .map(side)
            .chain(self.v6.joined(&other.v6).map(side))
    }

    /// Every rule, one per prefix.
    pub fn rules(&self) -> impl Iterator<Item = u32> + '_ {
        self.iter().map(|(_, r)| r)
    }
}

/// The rule of an entry.
fn rule_of<P: Packed>(entry: Option<P>) -> Option<u32> {
    entry.map(|e| e.unpack().1)
}

/// What identifies `prefix` in its family's layer.
fn key<P: Packed>(prefix: &Prefix) -> Option<P> {
    P::pack(prefix, 0)
}

impl PartialEq for PrefixRules {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for PrefixRules {}

impl FromIterator<(Prefix, u32)> for PrefixRules {
    fn from_iter<I: IntoIterator<Item = (Prefix, u32)>>(iter: I) -> Self {
        let mut out = PrefixRules::default();
        out.extend(iter);
        out
    }
}

impl Extend<(Prefix, u32)> for PrefixRules {
    fn extend<I: IntoIterator<Item = (Prefix, u32)>>(&mut self, iter: I) {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (p, rule) in iter {
            match p {
                Prefix::V4 { .. } => v4.extend(u64::pack(&p, rule)),
                Prefix::V6 { .. } => v6.extend(<[u64; 3]>::pack(&p, rule)),
            }
        }
        self.v4.insert_all(v4);
        self.v6.insert_all(v6);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn next(rng: &mut u64) -> u64 {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    }

    fn random_prefix(rng: &mut u64) -> Prefix {
        let r = next(rng);
        // Few distinct prefixes, so that changes meet the same ones again; both families,
        // and lengths that share an address.
        let a = (r >> 40) % 3000;
        let text = if r.is_multiple_of(4) {
            format!("2001:db8:{a:x}::/{}", 48 - (r >> 20) % 2 * 16)
        } else {
            format!("10.{}.{}.0/{}", a / 256, a % 256, 24 - (r >> 20) % 3 * 4)
        };
        Prefix::truncating(
            text.split('/').next().unwrap().parse().unwrap(),
            text.split('/').nth(1).unwrap().parse().unwrap(),
        )
        .unwrap()
    }

    /// Whatever the mix of inserts, removals, rule changes and bulk inserts, the compact map
    /// holds what an ordinary map holds, in prefix order, and reads each prefix as it does:
    /// across many merges of the overlay.
    #[test]
    fn the_compact_map_holds_what_a_map_holds() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut compact = PrefixRules::default();
        let mut want: BTreeMap<Prefix, u32> = BTreeMap::new();
        for round in 0..40 {
            for _ in 0..(next(&mut rng) % 9000) {
                let p = random_prefix(&mut rng);
                let rule = (next(&mut rng) % 200) as u32;
                if next(&mut rng).is_multiple_of(3) {
                    assert_eq!(compact.remove(&p), want.remove(&p), "remove {p}");
                } else {
                    assert_eq!(compact.insert(p, rule), want.insert(p, rule), "insert {p}");
                }
            }
            if round % 5 == 0 {
                let rule = (next(&mut rng) % 200) as u32;
                let bulk: Vec<Prefix> = (0..(next(&mut rng) % 5000))
                    .map(|_| random_prefix(&mut rng))
                    .collect();
                compact.insert_all(bulk.iter().copied(), rule);
                want.extend(bulk.iter().map(|p| (*p, rule)));
            }
            assert_eq!(compact.len(), want.len(), "round {round}");
            let got: Vec<(Prefix, u32)> = compact.iter().collect();
            let expected: Vec<(Prefix, u32)> = want.iter().map(|(p, r)| (*p, *r)).collect();
            assert_eq!(got, expected, "round {round}");
            for _ in 0..500 {
                let p = random_prefix(&mut rng);
                assert_eq!(compact.get(&p), want.get(&p).copied(), "{p}");
            }
            let copy: PrefixRules = want.iter().map(|(p, r)| (*p, *r)).collect();
            assert_eq!(copy, compact);
        }
    }

    /// A million IPv4 prefixes take 8 bytes each, and the overlay stays small.
    #[test]
    fn an_ipv4_prefix_takes_eight_bytes() {
        let mut map = PrefixRules::default();
        for i in 0..100_000u32 {
            let p = Prefix::V4 {
                addr: Ipv4Addr::from(i << 8),
                len: 24,
            };
            map.insert(p, 7);
        }
        assert_eq!(map.len(), 100_000);
        assert!(map.v4.overlay.len() <= MIN_OVERLAY.max(map.v4.base.len() / 8));
        assert!(map.v4.base.capacity() * size_of::<u64>() < 100_000 * 8 * 2);
        assert_eq!(size_of::<[u64; 3]>(), 24);
    }
}
