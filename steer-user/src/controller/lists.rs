//! A reload where only a list file changed: its cost follows the change, not the list.
//!
//! The full path of a reload reads the configuration and every list, resolves duplicates over
//! every prefix, compiles the whole desired state and compares it with the whole kernel mirror:
//! about two seconds for a million-line list, whatever changed. Here, when the configuration
//! file and every other file read the same as when the running configuration was loaded
//! ([`Inputs::check`]), the one changed list is parsed (nothing else is), sorted, and merged
//! against what its set holds now (the set's prefixes in the kernel mirror, which is exact while
//! [`Inputs`] are kept: the last apply left nothing undone); the added and removed prefixes are
//! the diff ([`Diff::of_changes`]).
//!
//! This path is taken only where it gives exactly what the full path would: the set's list
//! file is the only source of its prefixes and no other set reads it, and
//! `general.duplicates = "error"` (so no prefix of the running configuration is in two sets).
//! Anything this path cannot decide exactly — a bad line, a prefix another set holds, a
//! capacity exceeded, a file that cannot be read again — sends the reload down the full path,
//! which reports it as it always has (file:line:column) and changes nothing.

use std::{path::PathBuf, sync::Arc};

use crate::{
    config::{Changed, Config, DuplicatePolicy, Entry, Inputs, Origin, parse_list_bytes},
    dataplane::Diff,
    model::{Capacity, Direction, NameIds, PrefixMap, PrefixSets},
    prefix::Prefix,
};

/// What a reload needs of the running configuration to apply a changed list without reading
/// the rest: small (no prefixes), taken on the event loop.
#[derive(Clone, Debug)]
pub(super) struct ListSets {
    sets: Vec<ListSet>,
    duplicates_refused: bool,
    capacity: Capacity,
}

#[derive(Clone, Debug)]
struct ListSet {
    name: String,
    rule: u32,
    direction: Direction,
    /// The list files, resolved as `Set::files` holds them.
    files: Vec<PathBuf>,
    /// Its one list file is all it has (no inline prefixes).
    list_only: bool,
    allow_default_route: bool,
}

impl ListSets {
    pub fn of(config: &Config, rule_ids: &NameIds) -> ListSets {
        let sets = config
            .sets
            .iter()
            .filter_map(|s| {
                // Inline prefixes come first in a set's entries: a set whose first entry is
                // not from the configuration file has none.
                let inline = s
                    .prefixes
                    .first()
                    .is_some_and(|e| *e.origin.file == *config.path);
                Some(ListSet {
                    name: s.name.clone(),
                    rule: *rule_ids.get(&s.name)?,
                    direction: s.direction,
                    files: s.files.clone(),
                    list_only: s.files.len() == 1 && !inline,
                    allow_default_route: s.allow_default_route,
                })
            })
            .collect();
        ListSets {
            sets,
            duplicates_refused: config.general.duplicates == DuplicatePolicy::Error,
            capacity: config.general.capacity,
        }
    }
}

/// A changed list, ready to be written.
#[derive(Debug)]
pub(super) struct Delta {
    pub set: String,
    pub rule: u32,
    /// The set's entries now, as the full path would have them (file order, each once).
    pub entries: Vec<Entry>,
    /// Against the mirror's version it was taken from.
    pub diff: (u64, Diff),
    pub inputs: Inputs,
    pub lines: usize,
    pub parse: std::time::Duration,
    pub diff_time: std::time::Duration,
}

/// The change of one list file against the mirror `held` (version `version`), or `None` when
/// only the full path can tell what it means.
pub(super) fn prepare(
    sets: &ListSets,
    inputs: &Inputs,
    mut changed: Vec<Changed>,
    held: &PrefixSets,
    version: u64,
) -> Option<Delta> {
    if !sets.duplicates_refused || changed.len() != 1 || changed[0].index == 0 {
        return None;
    }
    let Changed {
        index,
        bytes,
        stamp,
    } = changed.pop()?;
    let named = inputs.path(index);
    let resolved = std::path::absolute(named).ok()?;
    let mut readers = sets.sets.iter().filter(|s| s.files.contains(&resolved));
    let set = readers.next()?;
    if readers.next().is_some() || !set.list_only {
        return None;
    }
    let started = std::time::Instant::now();
    let listed = parse_list_bytes(&bytes, set.allow_default_route).ok()?;
    drop(bytes);
    let parse = started.elapsed();
    let started = std::time::Instant::now();

    // The new list, sorted, each prefix once at its first line (as the full path keeps it).
    let mut order: Vec<(Prefix, u32)> = listed
        .iter()
        .enumerate()
        .map(|(i, l)| (l.prefix, i as u32))
        .collect();
    order.sort_unstable();
    order.dedup_by_key(|(p, _)| *p);
    let mut keep = vec![false; listed.len()];
    for (_, i) in &order {
        keep[*i as usize] = true;
    }
    // What the set holds now, sorted.
    let mut old: Vec<Prefix> = [true, false]
        .into_iter()
        .flat_map(|v4| held.map(PrefixMap::new(set.direction, v4)).iter())
        .filter(|(_, r)| **r == set.rule)
        .map(|(p, _)| *p)
        .collect();
    old.sort_unstable();
    let (added, removed) = merge(&old, order.iter().map(|(p, _)| *p));
    drop(old);
    drop(order);

    // A prefix another set holds is a duplicate: the full path says where.
    let map_of = |p: &Prefix| PrefixMap::of(set.direction, p);
    if added
        .iter()
        .any(|p| held.map(map_of(p)).get(p).is_some_and(|r| *r != set.rule))
    {
        return None;
    }
    let mut count = PrefixMap::ALL.map(|m| held.map(m).len() as i64);
    for p in &added {
        count[map_of(p).index()] += 1;
    }
    for p in &removed {
        count[map_of(p).index()] -= 1;
    }
    if PrefixMap::ALL
        .iter()
        .any(|m| count[m.index()] > i64::from(sets.capacity.of(*m)))
    {
        return None;
    }
    let file: Arc<std::path::Path> = Arc::from(named);
    let entries: Vec<Entry> = listed
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(l, _)| Entry {
            prefix: l.prefix,
            origin: Origin {
                file: file.clone(),
                line: l.line,
            },
        })
        .collect();
    let lines = listed.len();
    drop(listed);
    let added = added.into_iter().map(|p| (p, set.rule)).collect();
    let diff = Diff::of_changes(held, set.direction, added, removed);
    Some(Delta {
        set: set.name.clone(),
        rule: set.rule,
        entries,
        diff: (version, diff),
        inputs: inputs.with([(index, stamp)]),
        lines,
        parse,
        diff_time: started.elapsed(),
    })
}

/// Merges two sorted, duplicate-free runs: what `new` has that `old` has not (added), and what
/// `old` has that `new` has not (removed).
fn merge(old: &[Prefix], new: impl Iterator<Item = Prefix>) -> (Vec<Prefix>, Vec<Prefix>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let mut old = old.iter().peekable();
    for p in new {
        while let Some(o) = old.next_if(|o| **o < p) {
            removed.push(*o);
        }
        if old.next_if(|o| **o == p).is_none() {
            added.push(p);
        }
    }
    removed.extend(old);
    (added, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        crate::prefix::parse_prefix(s, false).unwrap()
    }

    #[test]
    fn a_sorted_merge_finds_exactly_what_was_added_and_removed() {
        let mut old = vec![p("10.0.0.0/8"), p("192.0.2.0/24"), p("2001:db8::/32")];
        old.sort_unstable();
        let mut new = vec![p("10.0.0.0/8"), p("198.51.100.0/24"), p("2001:db8::/32")];
        new.sort_unstable();
        let (added, removed) = merge(&old, new.into_iter());
        assert_eq!(added, vec![p("198.51.100.0/24")]);
        assert_eq!(removed, vec![p("192.0.2.0/24")]);
        let (a, r) = merge(&old, old.clone().into_iter());
        assert!(a.is_empty() && r.is_empty());
        let (a, r) = merge(&[], old.clone().into_iter());
        assert_eq!((a.len(), r.len()), (3, 0));
        let (a, r) = merge(&old, std::iter::empty());
        assert_eq!((a.len(), r.len()), (0, 3));
    }
}
