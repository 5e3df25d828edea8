//! Prefixes and domains claimed by more than one set of the same direction, resolved by
//! `general.duplicates`: refused (reported where the later set has them, up to a limit per
//! pair of sets) or left to the set that comes first (logged). Repeats inside one set are kept
//! once, silently, at their first place.

use std::collections::{HashMap, hash_map};

use super::{REPORT_LIMIT, pending::PendingSet};
use crate::{
    config::{DuplicatePolicy, Entry, Set, diag::Ctx},
    fast_hash::FastHash,
    model::Direction,
    prefix::Prefix,
};

/// Individual first-set-wins warnings logged per set before summarizing.
const WARN_LIMIT: usize = 10;

/// The first holder of each prefix: the set's index and the entry's index in it.
type PrefixOwners = HashMap<(Direction, Prefix), (u32, u32), FastHash>;
/// The first holder of each domain: the set's index and the line it is written on.
type DomainOwners = HashMap<String, (usize, usize)>;

/// The sets with every prefix and domain in one set only; the rest reported or logged.
pub(super) fn resolve(
    cx: &mut Ctx<'_>,
    pending: Vec<PendingSet>,
    policy: DuplicatePolicy,
) -> Vec<Set> {
    let total: usize = pending.iter().map(|s| s.entries.len()).sum();
    let mut prefix_owners = PrefixOwners::with_capacity_and_hasher(total, FastHash);
    let mut domain_owners = DomainOwners::new();
    let mut out: Vec<Set> = Vec::with_capacity(pending.len());
    for (index, mut set) in pending.into_iter().enumerate() {
        let prefixes = keep_first_prefixes(cx, &mut set, index, &out, &mut prefix_owners, policy);
        let domains = keep_first_domains(cx, &mut set, index, &out, &mut domain_owners, policy);
        out.push(Set {
            name: set.name,
            policy: set.policy,
            direction: set.direction,
            prefixes,
            files: set.files,
            domains,
            domain_files: Vec::new(),
            filter_aaaa: false,
            allow_default_route: set.allow_default_route,
        });
    }
    out
}

/// The entries of set `index` that no earlier set holds (each once).
fn keep_first_prefixes(
    cx: &mut Ctx<'_>,
    set: &mut PendingSet,
    index: usize,
    earlier: &[Set],
    owners: &mut PrefixOwners,
    policy: DuplicatePolicy,
) -> Vec<Entry> {
    let entries = std::mem::take(&mut set.entries);
    let mut kept: Vec<Entry> = Vec::with_capacity(entries.len());
    // How many of this set's prefixes each earlier set holds.
    let mut clashes: HashMap<usize, usize> = HashMap::new();
    let mut warned = 0usize;
    for (prefix, origin, written) in entries {
        let (other, idx) = match owners.entry((set.direction, prefix)) {
            hash_map::Entry::Vacant(v) => {
                v.insert((index as u32, kept.len() as u32));
                kept.push(Entry { prefix, origin });
                continue;
            }
            hash_map::Entry::Occupied(o) => *o.get(),
        };
        let other = other as usize;
        if other == index {
            continue; // the same prefix twice in one set: keep the first
        }
        let first = &earlier[other];
        let first_origin = &first.prefixes[idx as usize].origin;
        let count = clashes.entry(other).or_insert(0);
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
                    (&prefix, &origin, written),
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
        report_unshown_clashes(cx, set, earlier, clashes);
    }
    kept
}

/// One line per earlier set that shares more prefixes with `set` than were reported.
fn report_unshown_clashes(
    cx: &mut Ctx<'_>,
    set: &PendingSet,
    earlier: &[Set],
    clashes: HashMap<usize, usize>,
) {
    let mut clashes: Vec<(usize, usize)> = clashes.into_iter().collect();
    clashes.sort_unstable();
    for (other, count) in clashes {
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
                earlier[other].name
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
    earlier: &[Set],
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
                let other_name = &earlier[other].name;
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
    use crate::config::testing::{BASE, Scratch, errors_of};

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
