//! Prefixes and domains claimed by more than one set of the same direction, resolved by
//! `general.duplicates`: refused (reported where the later set has them, up to a limit per
//! pair of sets) or left to the set that comes first (logged). Repeats inside one set are kept
//! once, silently, at their first place.
//!
//! Prefixes are found in one pass over every set in order, each prefix's first holder kept in a
//! hash map. A million-line list makes that map the largest step of reading a configuration,
//! so it is split by a hash of the prefix into shards filled on threads of their own: a prefix
//! always lands in the same shard, so each shard sees every holder of its prefixes, in order.
//! Reports are then made set by set, entry by entry, as one sequential pass would make them.

use std::{
    collections::{HashMap, hash_map},
    hash::BuildHasher,
};

use super::{REPORT_LIMIT, pending::PendingSet};
use crate::{
    config::{DuplicatePolicy, Entry, Set, diag::Ctx},
    fast_hash::FastHash,
    model::Direction,
    prefix::Prefix,
};

/// Individual first-set-wins warnings logged per set before summarizing.
const WARN_LIMIT: usize = 10;
/// Fewer entries than this are resolved on the calling thread (a thread costs more).
const PARALLEL_MIN: usize = 1 << 16;
/// Shards at most, one per core.
const MAX_SHARDS: usize = 4;

/// An entry: its set's index and its index among the set's entries.
type At = (u32, u32);
/// The first holder of each prefix.
type PrefixOwners = HashMap<(Direction, Prefix), At, FastHash>;
/// The first holder of each domain: the set's index and the line it is written on.
type DomainOwners = HashMap<String, (usize, usize)>;

/// Entries that are not kept: repeats in their own set, and entries an earlier set holds.
#[derive(Default)]
struct Repeats {
    /// (entry, the entry of an earlier set holding the same prefix).
    clashes: Vec<(At, At)>,
    /// Every entry not kept, the clashing ones included.
    dropped: Vec<At>,
}

/// The sets with every prefix and domain in one set only; the rest reported or logged.
pub(super) fn resolve(
    cx: &mut Ctx<'_>,
    mut pending: Vec<PendingSet>,
    policy: DuplicatePolicy,
) -> Vec<Set> {
    let repeats = find_repeats(&pending);
    let mut clashes = vec![Vec::new(); pending.len()];
    for (at, first) in repeats.clashes {
        clashes[at.0 as usize].push((at.1, first));
    }
    let names: Vec<String> = pending.iter().map(|s| s.name.clone()).collect();
    let mut domain_owners = DomainOwners::new();
    let mut domains = Vec::with_capacity(pending.len());
    for (index, mut set_clashes) in clashes.into_iter().enumerate() {
        set_clashes.sort_unstable();
        report_prefix_clashes(cx, &pending, index, &set_clashes, policy);
        let set = &mut pending[index];
        domains.push(keep_first_domains(
            cx,
            set,
            index,
            &names,
            &mut domain_owners,
            policy,
        ));
    }
    let mut dropped = vec![Vec::new(); pending.len()];
    for (set, entry) in repeats.dropped {
        dropped[set as usize].push(entry);
    }
    pending
        .into_iter()
        .zip(dropped)
        .zip(domains)
        .map(|((set, mut dropped), domains)| {
            dropped.sort_unstable();
            Set {
                prefixes: kept_entries(set.entries, &dropped),
                name: set.name,
                policy: set.policy,
                direction: set.direction,
                files: set.files,
                domains,
                domain_files: Vec::new(),
                filter_aaaa: false,
                allow_default_route: set.allow_default_route,
                conditions: set.conditions,
            }
        })
        .collect()
}

/// Every entry whose prefix an earlier entry of the same direction has, on
/// [`shards`]-many threads.
fn find_repeats(pending: &[PendingSet]) -> Repeats {
    let total: usize = pending.iter().map(|s| s.entries.len()).sum();
    let shards = shards(total);
    if shards == 1 {
        return find_in_shard(pending, (0, 1), total);
    }
    std::thread::scope(|scope| {
        let found: Vec<_> = (0..shards)
            .map(|shard| {
                scope.spawn(move || find_in_shard(pending, (shard, shards), total / shards))
            })
            .collect();
        let mut all = Repeats::default();
        for shard in found {
            let Repeats { clashes, dropped } = shard
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            all.clashes.extend(clashes);
            all.dropped.extend(dropped);
        }
        all
    })
}

fn shards(entries: usize) -> usize {
    if entries < PARALLEL_MIN {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_SHARDS))
}

/// [`find_repeats`] for the prefixes of shard `shard.0` of `shard.1`.
fn find_in_shard(pending: &[PendingSet], shard: (usize, usize), capacity: usize) -> Repeats {
    let mut owners = PrefixOwners::with_capacity_and_hasher(capacity, FastHash);
    let mut found = Repeats::default();
    for (index, set) in pending.iter().enumerate() {
        for (entry, (prefix, _, _)) in set.entries.iter().enumerate() {
            let key = (set.direction, *prefix);
            if shard.1 > 1 && shard_of(&key, shard.1) != shard.0 {
                continue;
            }
            let at = (index as u32, entry as u32);
            match owners.entry(key) {
                hash_map::Entry::Vacant(v) => {
                    v.insert(at);
                }
                hash_map::Entry::Occupied(o) => {
                    let first = *o.get();
                    if first.0 != at.0 {
                        found.clashes.push((at, first));
                    }
                    found.dropped.push(at);
                }
            }
        }
    }
    found
}

/// The shard of a prefix: the hash mixed again, so that a shard's keys do not all share the
/// hash bits its map places them by.
fn shard_of(key: &(Direction, Prefix), shards: usize) -> usize {
    let mixed = FastHash.hash_one(key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((u128::from(mixed) * shards as u128) >> 64) as usize
}

/// The entries whose index is not in `dropped` (sorted), in their order.
fn kept_entries(
    entries: Vec<(Prefix, crate::config::Origin, super::pending::Written)>,
    dropped: &[u32],
) -> Vec<Entry> {
    let mut kept = Vec::with_capacity(entries.len() - dropped.len());
    let mut next_dropped = dropped.iter().peekable();
    for (index, (prefix, origin, _)) in entries.into_iter().enumerate() {
        if next_dropped.next_if_eq(&&(index as u32)).is_some() {
            continue;
        }
        kept.push(Entry { prefix, origin });
    }
    kept
}

/// Reports (or logs, by `policy`) the entries of set `index` that earlier sets hold:
/// `clashes` are (entry, first holder), in the order of the set's entries.
fn report_prefix_clashes(
    cx: &mut Ctx<'_>,
    pending: &[PendingSet],
    index: usize,
    clashes: &[(u32, At)],
    policy: DuplicatePolicy,
) {
    let set = &pending[index];
    // How many of this set's prefixes each earlier set holds.
    let mut counts: HashMap<usize, usize> = HashMap::new();
    let mut warned = 0usize;
    for &(entry, (other, other_entry)) in clashes {
        let (prefix, origin, written) = &set.entries[entry as usize];
        let first = &pending[other as usize];
        let first_origin = &first.entries[other_entry as usize].1;
        let count = counts.entry(other as usize).or_insert(0);
        *count += 1;
        match policy {
            DuplicatePolicy::Error if *count <= REPORT_LIMIT => {
                let message = format!(
                    "{prefix} is in set `{}` ({origin}) and also in set `{}` ({first_origin}); a {} prefix can belong to one set only",
                    set.name,
                    first.name,
                    set.direction.noun()
                );
                set.report_entry(
                    cx,
                    (prefix, origin, *written),
                    message,
                    "remove it from one of the sets, or set general.duplicates = \"first-set-wins\" to let the earlier set keep it",
                );
            }
            DuplicatePolicy::Error => {}
            DuplicatePolicy::FirstSetWins => {
                warned += 1;
                if warned <= WARN_LIMIT {
                    log::warn!(
                        "set `{}`: {prefix} ({origin}) is already in set `{}` ({first_origin}); dropped from `{}` (general.duplicates = \"first-set-wins\")",
                        set.name,
                        first.name,
                        set.name
                    );
                }
            }
        }
    }
    if warned > WARN_LIMIT {
        log::warn!(
            "set `{}`: {} more prefixes already in earlier sets were dropped (general.duplicates = \"first-set-wins\")",
            set.name,
            warned - WARN_LIMIT
        );
    }
    if policy == DuplicatePolicy::Error {
        report_unshown_clashes(cx, pending, set, counts);
    }
}

/// One line per earlier set that shares more prefixes with `set` than were reported.
fn report_unshown_clashes(
    cx: &mut Ctx<'_>,
    pending: &[PendingSet],
    set: &PendingSet,
    counts: HashMap<usize, usize>,
) {
    let mut counts: Vec<(usize, usize)> = counts.into_iter().collect();
    counts.sort_unstable();
    for (other, count) in counts {
        if count <= REPORT_LIMIT {
            continue;
        }
        cx.err_value(
            &set.span,
            &set.label,
            "",
            format!(
                "{} more prefixes of set `{}` are also in set `{}` (not shown)",
                count - REPORT_LIMIT,
                set.name,
                pending[other].name
            ),
            "remove them from one of the sets, or set general.duplicates = \"first-set-wins\"",
        );
    }
}

/// The domains of set `index` that no earlier set holds. Only dst sets have domains (a src set
/// with domains is reported already).
fn keep_first_domains(
    cx: &mut Ctx<'_>,
    set: &mut PendingSet,
    index: usize,
    names: &[String],
    owners: &mut DomainOwners,
    policy: DuplicatePolicy,
) -> Vec<String> {
    let mut domains = Vec::with_capacity(set.domains.len());
    for (d, span, i) in std::mem::take(&mut set.domains) {
        if set.direction != Direction::Dst {
            continue;
        }
        match owners.get(&d) {
            Some(&(other, line)) if other != index => {
                let other_name = &names[other];
                let config_file = cx.file.display();
                match policy {
                    DuplicatePolicy::Error => cx.err(
                        &span,
                        format!("{}.domains[{i}]", set.label),
                        format!("domain `{d}` is also in set `{other_name}` ({config_file}:{line})"),
                        "remove it from one of the sets, or set general.duplicates = \"first-set-wins\" to let the earlier set keep it",
                    ),
                    DuplicatePolicy::FirstSetWins => log::warn!(
                        "set `{}`: domain `{d}` is already in set `{other_name}` ({config_file}:{line}); dropped (general.duplicates = \"first-set-wins\")",
                        set.name
                    ),
                }
            }
            _ => {
                let line = cx.line_of(&span);
                owners.entry(d.clone()).or_insert((index, line));
                domains.push(d);
            }
        }
    }
    domains
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use crate::config::{
        parse,
        testing::{BASE, Scratch, errors_of},
    };

    /// Lines for a list: `count` /24s spread over 10.0.0.0/8, every `repeat_every`-th one a
    /// repeat of an earlier line; starting at block `first`.
    fn list_lines(first: u32, count: u32, repeat_every: u32) -> Vec<String> {
        (0..count)
            .map(|i| {
                let block = if i % repeat_every == repeat_every - 1 {
                    first + i / 2
                } else {
                    first + i
                };
                format!("10.{}.{}.0/24", (block >> 8) & 0xff, block & 0xff)
            })
            .collect()
    }

    /// What one sequential pass keeps: each line's first place, minus what `earlier` has.
    fn first_places(lines: &[String], earlier: &HashSet<String>) -> Vec<String> {
        let mut seen = HashSet::new();
        lines
            .iter()
            .filter(|l| !earlier.contains(*l) && seen.insert((*l).clone()))
            .cloned()
            .collect()
    }

    #[test]
    fn sharded_resolution_keeps_and_reports_what_one_pass_would() {
        // Above PARALLEL_MIN together, so the shards run on threads of their own.
        let a = list_lines(0, 40_000, 7);
        let b = list_lines(30_000, 40_000, 5);
        assert!(a.len() + b.len() >= super::PARALLEL_MIN);
        let dir = Scratch::new("dup-sharded");
        dir.write("a.txt", &a.join("\n"));
        dir.write("b.txt", &b.join("\n"));
        let sets = "[[set]]\nname = \"a\"\npolicy = \"p\"\nfiles = [\"a.txt\"]\n\
                    [[set]]\nname = \"b\"\npolicy = \"p\"\nfiles = [\"b.txt\"]\n";

        let wins = BASE.replace("[general]", "[general]\nduplicates = \"first-set-wins\"");
        let path = dir.write("wins.toml", &format!("{wins}\n{sets}"));
        let text = std::fs::read_to_string(&path).unwrap();
        let config = parse(&text, &path).expect("valid with first-set-wins");
        let kept = |i: usize| -> Vec<String> {
            config.sets[i]
                .prefixes
                .iter()
                .map(|e| e.prefix.to_string())
                .collect()
        };
        let want_a = first_places(&a, &HashSet::new());
        let want_b = first_places(&b, &want_a.iter().cloned().collect());
        assert_eq!(kept(0), want_a);
        assert_eq!(kept(1), want_b);
        let line_of = |p: &str| {
            config.sets[1]
                .prefixes
                .iter()
                .find(|e| e.prefix.to_string() == p)
                .map(|e| e.origin.line as usize)
        };
        assert_eq!(
            line_of(&want_b[0]),
            b.iter().position(|l| *l == want_b[0]).map(|i| i + 1)
        );

        let path = dir.write("error.toml", &format!("{BASE}\n{sets}"));
        let errors = errors_of(&path);
        // b's lines that a has, in b's order: the first REPORT_LIMIT are reported one by one.
        let a_has: HashSet<&String> = a.iter().collect();
        let clashing: Vec<usize> = (0..b.len()).filter(|i| a_has.contains(&b[*i])).collect();
        assert!(clashing.len() > super::REPORT_LIMIT);
        let lines: Vec<usize> = errors
            .iter()
            .filter(|e| e.line > 0 && e.file.ends_with("b.txt"))
            .map(|e| e.line)
            .collect();
        let want: Vec<usize> = clashing
            .iter()
            .take(super::REPORT_LIMIT)
            .map(|i| i + 1)
            .collect();
        assert_eq!(lines, want);
        let summary = format!(
            "{} more prefixes of set `b` are also in set `a` (not shown)",
            clashing.len() - super::REPORT_LIMIT
        );
        assert!(
            errors.iter().any(|e| e.message == summary),
            "no `{summary}` in {errors:#?}"
        );
    }

    #[test]
    fn a_listed_duplicate_names_the_files_entry_it_came_from() {
        let dir = Scratch::new("dup-field");
        let list_path = dir.write("l.txt", "# x\n198.51.100.0/24\n");
        let config = dir.write(
            "steer.toml",
            &format!(
                "{BASE}\n[[set]]\nname = \"a\"\npolicy = \"p\"\nprefixes = [\"198.51.100.0/24\"]\n\
                 \n[[set]]\nname = \"b\"\npolicy = \"p\"\nfiles = [\"\", \"l.txt\"]\n"
            ),
        );
        let errors = errors_of(&config);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_eq!(errors[0].field, "set[b].files[0]");
        assert_eq!(errors[0].message, "empty file name");
        let dup = &errors[1];
        assert_eq!(
            (dup.file.as_path(), dup.line, dup.column),
            (list_path.as_path(), 2, 1)
        );
        assert_eq!(dup.field, "set[b].files[1]");
        assert!(dup.message.contains("also in set `a`"), "{}", dup.message);
    }
}
