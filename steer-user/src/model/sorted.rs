//! Prefixes sorted as `Prefix` sorts (address, then length; IPv4 first), each once: what a
//! set keeps of its list files (`config`) and what a changed list is merged from
//! (`controller::lists`). IPv4 prefixes are integers ([`v4_key`], 8 bytes): a million sort in
//! a few ms, where comparing `Prefix`es took a quarter of a second.

use crate::prefix::Prefix;

/// Prefixes sorted, each once (one rule's in one direction, or a set's list files'): 8 bytes an
/// IPv4 prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SortedPrefixes {
    /// [`v4_key`]s.
    pub v4: Vec<u64>,
    /// Address and length.
    pub v6: Vec<(u128, u8)>,
}

impl SortedPrefixes {
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, prefix: &Prefix) -> bool {
        match *prefix {
            Prefix::V4 { addr, len } => self.v4.binary_search(&v4_key(u32::from(addr), len)),
            Prefix::V6 { addr, len } => self.v6.binary_search(&(u128::from(addr), len)),
        }
        .is_ok()
    }

    /// Sorted prefixes of `prefixes` (any order, repeats allowed).
    pub fn of(prefixes: impl IntoIterator<Item = Prefix>) -> SortedPrefixes {
        let mut out = SortedPrefixes::default();
        for p in prefixes {
            match p {
                Prefix::V4 { addr, len } => out.v4.push(v4_key(u32::from(addr), len)),
                Prefix::V6 { addr, len } => out.v6.push((u128::from(addr), len)),
            }
        }
        out.v4.sort_unstable();
        out.v4.dedup();
        out.v6.sort_unstable();
        out.v6.dedup();
        out
    }

    /// Adds the prefixes of `other`.
    pub fn union(&mut self, other: SortedPrefixes) {
        fn both<T: Ord + Copy>(a: &mut Vec<T>, b: Vec<T>) {
            if a.is_empty() {
                *a = b;
                return;
            }
            let mut out = Vec::with_capacity(a.len() + b.len());
            let (mut i, mut j) = (0, 0);
            while i < a.len() && j < b.len() {
                let (x, y) = (a[i], b[j]);
                out.push(x.min(y));
                i += usize::from(x <= y);
                j += usize::from(y <= x);
            }
            out.extend_from_slice(&a[i..]);
            out.extend_from_slice(&b[j..]);
            *a = out;
        }
        both(&mut self.v4, other.v4);
        both(&mut self.v6, other.v6);
    }

    /// The prefixes both hold.
    pub fn common(&self, other: &SortedPrefixes) -> SortedPrefixes {
        fn both<T: Ord + Copy>(a: &[T], b: &[T]) -> Vec<T> {
            let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
            small
                .iter()
                .filter(|k| large.binary_search(k).is_ok())
                .copied()
                .collect()
        }
        SortedPrefixes {
            v4: both(&self.v4, &other.v4),
            v6: both(&self.v6, &other.v6),
        }
    }

    /// Takes out the prefixes of `other`.
    pub fn subtract(&mut self, other: &SortedPrefixes) {
        if !other.v4.is_empty() {
            self.v4.retain(|k| other.v4.binary_search(k).is_err());
        }
        if !other.v6.is_empty() {
            self.v6.retain(|k| other.v6.binary_search(k).is_err());
        }
    }

    /// The prefixes, IPv4 first, each family in order.
    pub fn iter(&self) -> impl Iterator<Item = Prefix> + Clone + '_ {
        let v4 = self.v4.iter().map(|k| from_v4_key(*k));
        v4.chain(self.v6.iter().map(|k| from_v6_key(*k)))
    }
}

/// The prefix of a [`v4_key`].
pub fn from_v4_key(k: u64) -> Prefix {
    Prefix::V4 {
        addr: std::net::Ipv4Addr::from((k >> 6) as u32),
        len: (k & 63) as u8,
    }
}

/// The prefix of an IPv6 sort key (address, length).
pub fn from_v6_key((addr, len): (u128, u8)) -> Prefix {
    Prefix::V6 {
        addr: std::net::Ipv6Addr::from(addr),
        len,
    }
}

/// An IPv4 prefix as an integer that sorts as `Prefix` does (address, then length): 38 bits.
pub fn v4_key(addr: u32, len: u8) -> u64 {
    u64::from(addr) << 6 | u64::from(len)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn random_set(rng: &mut u64, n: usize) -> BTreeSet<Prefix> {
        (0..n)
            .map(|_| {
                *rng ^= *rng << 13;
                *rng ^= *rng >> 7;
                *rng ^= *rng << 17;
                let a = (*rng >> 20) % 500;
                let (addr, len): (std::net::IpAddr, u32) = if rng.is_multiple_of(3) {
                    (format!("2001:db8:{a:x}::").parse().unwrap(), 48)
                } else {
                    let len = 24 - (*rng >> 40) % 2 * 8;
                    (
                        format!("10.{}.{}.0", a / 256, a % 256).parse().unwrap(),
                        len as u32,
                    )
                };
                Prefix::truncating(addr, len).unwrap()
            })
            .collect()
    }

    /// Union, intersection, difference and membership give what ordinary sets give, in
    /// `Prefix` order (IPv4 first).
    #[test]
    fn set_operations_agree_with_ordinary_sets() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for round in 0..50 {
            let (a, b) = (random_set(&mut rng, 300), random_set(&mut rng, 200));
            let (sa, sb) = (SortedPrefixes::of(a.clone()), SortedPrefixes::of(b.clone()));
            assert_eq!(
                sa.iter().collect::<Vec<_>>(),
                a.iter().copied().collect::<Vec<_>>()
            );
            assert_eq!(sa.len(), a.len());
            let mut union = sa.clone();
            union.union(sb.clone());
            assert_eq!(
                union,
                SortedPrefixes::of(a.union(&b).copied()),
                "round {round}"
            );
            assert_eq!(
                sa.common(&sb),
                SortedPrefixes::of(a.intersection(&b).copied())
            );
            let mut rest = sa.clone();
            rest.subtract(&sb);
            assert_eq!(rest, SortedPrefixes::of(a.difference(&b).copied()));
            for p in b.iter().chain(&a) {
                assert_eq!(sa.contains(p), a.contains(p), "{p}");
            }
        }
    }
}
