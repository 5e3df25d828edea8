//! Prefixes and domains claimed by more than one set of the same direction, resolved by
//! `general.duplicates`: refused (reported where the later set has them, up to a limit per
//! pair of sets) or left to the set that comes first (logged). Repeats inside one set are kept
//! once, silently (an inline prefix over a listed one).
//!
//! A set holds its lists' prefixes sorted ([`SortedPrefixes`]), so the prefixes two sets share
//! are found by intersecting sorted vectors, set by set in order, each against the earlier
//! sets as resolved (what they kept): a shared prefix is found once, against its first holder.
//! Nothing of the size of the lists is made beyond what the sets hold. Only to report a clash
//! are list lines needed: the lists involved are read again ([`PendingSet::list_places`]).

use std::collections::{HashMap, HashSet};

use super::{
    REPORT_LIMIT,
    pending::{ListPlace, PendingSet},
};
use crate::{
    config::{DuplicatePolicy, Entry, Set, diag::Ctx},
    model::{Direction, sorted::SortedPrefixes},
    prefix::Prefix,
};

/// Individual first-set-wins warnings logged per set before summarizing.
const WARN_LIMIT: usize = 10;

/// The first holder of each domain: the set's index and the line it is written on.
type DomainOwners = HashMap<String, (usize, usize)>;

/// The sets with every prefix and domain in one set only; the rest reported or logged.
pub(super) fn resolve(
    cx: &mut Ctx<'_>,
    mut pending: Vec<PendingSet>,
    policy: DuplicatePolicy,
) -> Vec<Set> {
    for set in &mut pending {
        drop_own_repeats(set);
    }
    let names: Vec<String> = pending.iter().map(|s| s.name.clone()).collect();
    let mut domain_owners = DomainOwners::new();
    let mut domains = Vec::with_capacity(pending.len());
    // Each set's inline prefixes sorted once, not once for every later set it is compared
    // with (as resolved: a set's entry is updated once its clashes are dropped).
    let mut inline: Vec<SortedPrefixes> = pending.iter().map(PendingSet::inline_sorted).collect();
    for index in 0..pending.len() {
        let clashes = held_by_earlier(&pending, &inline, index);
        report_prefix_clashes(cx, &pending, index, &clashes, policy);
        drop_clashes(&mut pending[index], &clashes);
        if !clashes.is_empty() {
            inline[index] = pending[index].inline_sorted();
        }
        domains.push(keep_first_domains(
            cx,
            &mut pending[index],
            index,
            &names,
            &mut domain_owners,
            policy,
        ));
    }
    pending
        .into_iter()
        .zip(domains)
        .map(|(set, domains)| Set {
            prefixes: set
                .inline
                .into_iter()
                .map(|(prefix, origin, _)| Entry { prefix, origin })
                .collect(),
            listed: set.listed,
            name: set.name,
            policy: set.policy,
            direction: set.direction,
            files: set.files,
            domains,
            domain_files: Vec::new(),
            filter_aaaa: false,
            allow_default_route: set.allow_default_route,
            conditions: set.conditions,
        })
        .collect()
}

/// A set's prefixes each once: an inline prefix at its first place, and none of its lists'
/// prefixes that is inline.
fn drop_own_repeats(set: &mut PendingSet) {
    let mut seen = HashSet::new();
    set.inline.retain(|(p, _, _)| seen.insert(*p));
    set.listed.subtract(&set.inline_sorted());
}

/// The prefixes of set `index` that an earlier set holds: per earlier set (its index), the
/// shared prefixes, sorted (8 bytes an IPv4 prefix, whatever the overlap).
type Clashes = Vec<(usize, SortedPrefixes)>;

/// The prefixes of set `index` that the earlier sets of its direction hold (as resolved: each
/// shared prefix is found against its first holder).
/// `inline` holds each set's inline prefixes, sorted.
///
/// Every pair of sets is compared: quadratic in the number of sets, which `build` caps
/// (`MAX_RULES`) before this runs.
fn held_by_earlier(pending: &[PendingSet], inline: &[SortedPrefixes], index: usize) -> Clashes {
    let (earlier, set) = (&pending[..index], &pending[index]);
    let own_inline = &inline[index];
    let mut clashes = Vec::new();
    for (other, first) in earlier.iter().enumerate() {
        if first.direction != set.direction {
            continue;
        }
        let first_inline = &inline[other];
        let mut shared = own_inline.common(first_inline);
        shared.union(own_inline.common(&first.listed));
        shared.union(set.listed.common(first_inline));
        shared.union(set.listed.common(&first.listed));
        if !shared.is_empty() {
            clashes.push((other, shared));
        }
    }
    clashes
}

/// Takes the `clashes` out of `set`: their first holders keep them.
fn drop_clashes(set: &mut PendingSet, clashes: &Clashes) {
    for (_, shared) in clashes {
        set.listed.subtract(shared);
        set.inline.retain(|(p, _, _)| !shared.contains(p));
    }
}

/// Where an entry of a set is written.
#[derive(Clone, Copy)]
enum Written<'o> {
    /// `prefixes[index]`.
    Inline(u32, &'o crate::config::Origin),
    List(ListPlace),
}

/// The places in `set` of the prefixes `take` accepts, in the order of its entries (inline
/// ones, then its lists, line by line), each prefix at its first place only. `take` is asked
/// once per prefix, in that order, and keeps count of what it accepted: only what will be shown
/// is collected, whatever the overlap.
fn places_in<'s>(
    set: &'s PendingSet,
    mut take: impl FnMut(&Prefix) -> bool,
) -> Vec<(Prefix, Written<'s>)> {
    let mut out = Vec::new();
    let mut inline = std::collections::HashSet::new();
    for (p, origin, i) in &set.inline {
        if inline.insert(*p) && take(p) {
            out.push((*p, Written::Inline(*i, origin)));
        }
    }
    let listed = set.list_places(|p| !inline.contains(p) && take(p));
    out.extend(
        listed
            .into_iter()
            .map(|at| (at.listed.prefix, Written::List(at))),
    );
    out
}

/// `file:line` of each place.
fn shown(set: &PendingSet, written: Written<'_>) -> String {
    match written {
        Written::Inline(_, origin) => origin.to_string(),
        Written::List(at) => set.shown(at),
    }
}

/// Reports (or logs, by `policy`) the prefixes of set `index` that earlier sets hold
/// (`clashes`), in the order of the set's entries: up to [`REPORT_LIMIT`] per earlier set,
/// then how many more; or up to [`WARN_LIMIT`] warnings, then how many more. A clash whose
/// line cannot be read again (its list changed since) is counted in those sums, never lost.
fn report_prefix_clashes(
    cx: &mut Ctx<'_>,
    pending: &[PendingSet],
    index: usize,
    clashes: &Clashes,
    policy: DuplicatePolicy,
) {
    if clashes.is_empty() {
        return;
    }
    let set = &pending[index];
    let owner = |p: &Prefix| clashes.iter().find(|(_, s)| s.contains(p)).map(|(o, _)| *o);
    // Where this set has them (only those that will be shown), then where their first
    // holders have them.
    let mut budget: HashMap<usize, usize> = HashMap::new();
    let mut warned = 0;
    let places = places_in(set, |p| {
        let Some(other) = owner(p) else {
            return false;
        };
        let shown = budget.entry(other).or_default();
        let room = match policy {
            DuplicatePolicy::Error => *shown < REPORT_LIMIT,
            DuplicatePolicy::FirstSetWins => warned < WARN_LIMIT,
        };
        if room {
            *shown += 1;
            warned += 1;
        }
        room
    });
    let shown_here: Vec<(Prefix, Written<'_>, usize)> = places
        .into_iter()
        .filter_map(|(p, written)| Some((p, written, owner(&p)?)))
        .collect();
    let mut first_places: HashMap<(usize, Prefix), String> = HashMap::new();
    for (other, _) in clashes {
        let theirs: std::collections::HashSet<Prefix> = shown_here
            .iter()
            .filter(|(_, _, o)| o == other)
            .map(|(p, _, _)| *p)
            .collect();
        let first = &pending[*other];
        for (p, written) in places_in(first, |p| theirs.contains(p)) {
            first_places.insert((*other, p), shown(first, written));
        }
    }
    for (prefix, written, other) in &shown_here {
        let first = &pending[*other];
        let origin = shown(set, *written);
        let first_origin = first_places
            .get(&(*other, *prefix))
            .map_or("its list files, changed since", String::as_str);
        match policy {
            DuplicatePolicy::Error => {
                let message = format!(
                    "{prefix} is in set `{}` ({origin}) and also in set `{}` ({first_origin}); a {} prefix can belong to one set only",
                    set.name,
                    first.name,
                    set.direction.noun()
                );
                let hint = "remove it from one of the sets, or set general.duplicates = \"first-set-wins\" to let the earlier set keep it";
                match written {
                    Written::Inline(i, _) => set.report_inline(cx, *i, message, hint),
                    Written::List(at) => set.report_listed(cx, *at, message, hint),
                }
            }
            DuplicatePolicy::FirstSetWins => log::warn!(
                "set `{}`: {prefix} ({origin}) is already in set `{}` ({first_origin}); dropped from `{}` (general.duplicates = \"first-set-wins\")",
                set.name,
                first.name,
                set.name
            ),
        }
    }
    let total: usize = clashes.iter().map(|(_, s)| s.len()).sum();
    match policy {
        DuplicatePolicy::Error => {
            let shown_with =
                |other: usize| shown_here.iter().filter(|(_, _, o)| *o == other).count();
            for (other, shared) in clashes {
                report_unshown_clashes(cx, pending, set, *other, shared.len() - shown_with(*other));
            }
        }
        DuplicatePolicy::FirstSetWins if total > shown_here.len() => log::warn!(
            "set `{}`: {} more prefixes already in earlier sets were dropped (general.duplicates = \"first-set-wins\")",
            set.name,
            total - shown_here.len()
        ),
        DuplicatePolicy::FirstSetWins => {}
    }
}

/// One line for the prefixes `set` shares with earlier set `other` that were not reported one
/// by one (past the limit, or whose lines could not be read again).
fn report_unshown_clashes(
    cx: &mut Ctx<'_>,
    pending: &[PendingSet],
    set: &PendingSet,
    other: usize,
    unshown: usize,
) {
    if unshown == 0 {
        return;
    }
    cx.err_value(
        &set.span,
        &set.label,
        "",
        format!(
            "{unshown} more prefixes of set `{}` are also in set `{}` (not shown)",
            set.name, pending[other].name
        ),
        "remove them from one of the sets, or set general.duplicates = \"first-set-wins\"",
    );
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
    use std::collections::{BTreeSet, HashSet};

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

    /// Two big lists sharing 10,000 prefixes, with repeats inside each: kept and reported as
    /// one sequential pass over every entry would (the first holder keeps a prefix; the
    /// later set's clashes reported at their first lines, in its order, up to the limit).
    #[test]
    fn resolution_keeps_and_reports_what_one_pass_would() {
        let a = list_lines(0, 40_000, 7);
        let b = list_lines(30_000, 40_000, 5);
        let dir = Scratch::new("dup-sharded");
        dir.write("a.txt", &a.join("\n"));
        dir.write("b.txt", &b.join("\n"));
        let sets = "[[set]]\nname = \"a\"\npolicy = \"p\"\nfiles = [\"a.txt\"]\n\
                    [[set]]\nname = \"b\"\npolicy = \"p\"\nfiles = [\"b.txt\"]\n";

        let wins = BASE.replace("[general]", "[general]\nduplicates = \"first-set-wins\"");
        let path = dir.write("wins.toml", &format!("{wins}\n{sets}"));
        let text = std::fs::read_to_string(&path).unwrap();
        let config = parse(&text, &path).expect("valid with first-set-wins");
        let kept = |i: usize| -> BTreeSet<String> {
            config.sets[i]
                .all_prefixes()
                .map(|p| p.to_string())
                .collect()
        };
        let want_a = first_places(&a, &HashSet::new());
        let want_b = first_places(&b, &want_a.iter().cloned().collect());
        assert_eq!(kept(0), want_a.iter().cloned().collect());
        assert_eq!(kept(1), want_b.iter().cloned().collect());
        assert_eq!(config.sets[1].prefix_count(), want_b.len());

        let path = dir.write("error.toml", &format!("{BASE}\n{sets}"));
        let errors = errors_of(&path);
        // The prefixes of b that a has, each at its first line of b, in b's order: the first
        // REPORT_LIMIT are reported one by one (a repeat inside b is not reported again).
        let a_has: HashSet<&String> = a.iter().collect();
        let mut seen = HashSet::new();
        let clashing: Vec<usize> = (0..b.len())
            .filter(|i| a_has.contains(&b[*i]) && seen.insert(&b[*i]))
            .collect();
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
        // Each names the first holder's line in its list, read again for the message.
        let first = errors.iter().find(|e| e.file.ends_with("b.txt")).unwrap();
        let a_line = a.iter().position(|l| *l == b[clashing[0]]).unwrap() + 1;
        assert!(
            first.message.contains(&format!("a.txt:{a_line})")),
            "{}",
            first.message
        );
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
