//! A reload where only a list file changed: its cost follows the change, not the list.
//!
//! The full path of a reload reads the configuration and every list, resolves duplicates over
//! every prefix, compiles the whole desired state and compares it with the whole kernel mirror:
//! about two seconds for a million-line list, whatever changed. Here, when the configuration
//! file and every other file read the same as when the running configuration was loaded
//! ([`Inputs::check`]), the one changed list is parsed (nothing else is), in pieces on every
//! core, sorted, and merged against what its set holds now (the set's prefixes in the kernel
//! mirror, which is exact while [`Inputs`] are kept: the last apply left nothing undone; the
//! mirror remembers them sorted from the last reload of the list, [`PrefixSets::sorted`]); the
//! added and removed prefixes are the diff ([`Diff::of_changes`]).
//!
//! This path is taken only where it gives exactly what the full path would: the set's list
//! file is the only source of its prefixes and no other set reads it, and
//! `general.duplicates = "error"` (so no prefix of the running configuration is in two sets).
//! Anything this path cannot decide exactly — a bad line, a prefix another set holds, a
//! capacity exceeded, a file that cannot be read again — sends the reload down the full path,
//! which reports it as it always has (file:line:column) and changes nothing.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{
    config::{
        Changed, Config, DuplicatePolicy, Entry, Inputs, ListPiece, ListSink, Listed, Origin,
        list_pieces, parse_list_split,
    },
    model::{
        Capacity, Direction, NameIds, PrefixMap, PrefixSets,
        sorted::{SortedPrefixes, V4_KEY_BITS, from_v4_key, from_v6_key, radix_sort, v4_key},
    },
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
    pub direction: Direction,
    /// Prefixes the list has and the set did not hold, and the other way round, against the
    /// mirror's version the change was taken from. The controller turns them into writes
    /// against the mirror of the moment it applies them (a runtime edit may have come between;
    /// see `controller::set_edits`).
    pub added: Vec<Prefix>,
    pub removed: Vec<Prefix>,
    /// The mirror's version `added` and `removed` were taken against (set by the caller).
    pub version: u64,
    pub inputs: Inputs,
    pub lines: usize,
    /// Reading the files again and comparing their stamps (set by the caller).
    pub check: std::time::Duration,
    pub parse: std::time::Duration,
    pub diff_time: std::time::Duration,
}

/// The change of one list file against the mirror `held`, or `None` when
/// only the full path can tell what it means.
pub(super) fn prepare(
    sets: &ListSets,
    inputs: &Inputs,
    mut changed: Vec<Changed>,
    held: &PrefixSets,
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
    // What the set holds now, sorted (remembered from the last reload of this list when the
    // maps changed only through syncs since, collected and sorted otherwise), on a thread of
    // its own while the list is parsed and sorted in pieces, one per core (most routers have
    // two or more).
    std::thread::scope(|scope| {
        let old = scope.spawn(|| held.sorted(set.direction, set.rule));
        diff_list(
            set,
            inputs,
            index,
            &bytes,
            stamp,
            held,
            &sets.capacity,
            || old.join().ok(),
        )
    })
}

/// The change of list file `index` of `set`, now `bytes`; `old` gives what the set holds
/// ([`PrefixSets::sorted`]).
#[allow(clippy::too_many_arguments)]
fn diff_list(
    set: &ListSet,
    inputs: &Inputs,
    index: usize,
    bytes: &[u8],
    stamp: crate::config::Stamp,
    held: &PrefixSets,
    capacity: &Capacity,
    old: impl FnOnce() -> Option<Arc<SortedPrefixes>>,
) -> Option<Delta> {
    let started = std::time::Instant::now();
    // A path of its own for each piece: one count shared by threads that clone it a million
    // times would bounce between their caches on every clone.
    let pieces = parse_list_split(
        bytes,
        set.allow_default_route,
        list_pieces(bytes.len()),
        |piece| Piece::new(Arc::from(inputs.path(index)), piece),
    )?;
    let parse = started.elapsed();
    let started = std::time::Instant::now();
    let new = Listing::join(pieces)?;
    let old = old()?;
    let (added4, removed4) = merge(&old.v4, new.v4.iter().copied());
    let (added6, removed6) = merge(&old.v6, new.v6.iter().copied());
    drop(old);
    let added: Vec<Prefix> = added4
        .into_iter()
        .map(from_v4_key)
        .chain(added6.into_iter().map(from_v6_key))
        .collect();
    let removed: Vec<Prefix> = removed4
        .into_iter()
        .map(from_v4_key)
        .chain(removed6.into_iter().map(from_v6_key))
        .collect();

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
        .any(|m| count[m.index()] > i64::from(capacity.of(*m)))
    {
        return None;
    }
    Some(Delta {
        set: set.name.clone(),
        rule: set.rule,
        entries: new.entries,
        direction: set.direction,
        added,
        removed,
        version: 0,
        inputs: inputs.with([(index, stamp)]),
        lines: new.lines,
        check: std::time::Duration::ZERO,
        parse,
        diff_time: started.elapsed(),
    })
}

impl Delta {
    /// Takes `added` and `removed` again against `held`, when the maps changed since they were
    /// taken (a runtime edit came between; rare, so plainly).
    pub fn refit(&mut self, held: &PrefixSets) {
        let listed: std::collections::HashSet<Prefix> =
            self.entries.iter().map(|e| e.prefix).collect();
        let mut removed = Vec::new();
        for v4 in [true, false] {
            let map = held.map(PrefixMap::new(self.direction, v4));
            removed.extend(
                map.iter()
                    .filter(|(p, r)| **r == self.rule && !listed.contains(*p))
                    .map(|(p, _)| *p),
            );
        }
        self.added = listed
            .into_iter()
            .filter(|p| held.map(PrefixMap::of(self.direction, p)).get(p) != Some(&self.rule))
            .collect();
        self.removed = removed;
    }
}

/// One piece of a changed list as parsed: the set's entries (each built as it is parsed: no
/// vector of a million `Listed`s in between), and their sort keys with each entry's index in
/// the piece, sorted on the thread that parsed it.
struct Piece {
    file: Arc<Path>,
    entries: Vec<Entry>,
    /// [`v4_key`] above the index.
    v4: Vec<u64>,
    /// Address, length, index.
    v6: Vec<(u128, u8, u32)>,
}

impl Piece {
    fn new(file: Arc<Path>, piece: ListPiece) -> Piece {
        // The first piece has room for the entries of all: they are appended to its own
        // (growing it later copied them all, every page faulted in twice).
        let room = match piece.index {
            0 => piece.lines + piece.lines_after,
            _ => piece.lines,
        };
        Piece {
            file,
            entries: Vec::with_capacity(room),
            v4: Vec::with_capacity(piece.lines),
            v6: Vec::new(),
        }
    }
}

impl ListSink for Piece {
    fn entry(&mut self, listed: Listed) {
        // An index past IDX_BITS spoils the keys; `Listing::join` refuses such a list.
        let index = self.entries.len();
        match listed.prefix {
            Prefix::V4 { addr, len } => self
                .v4
                .push(v4_key(u32::from(addr), len) << IDX_BITS | index as u64),
            Prefix::V6 { addr, len } => self.v6.push((u128::from(addr), len, index as u32)),
        }
        self.entries.push(Entry {
            prefix: listed.prefix,
            origin: Origin {
                file: self.file.clone(),
                line: listed.line,
            },
        });
    }

    fn finish(&mut self) {
        radix_sort(&mut self.v4, IDX_BITS..IDX_BITS + V4_KEY_BITS);
        self.v6.sort_unstable();
    }
}

/// A changed list: its entries as the full path keeps them (file order, each prefix once at
/// its first line), and its prefixes sorted, as [`SortedPrefixes`] has them.
struct Listing {
    entries: Vec<Entry>,
    /// Entries parsed, repeats included.
    lines: usize,
    v4: Vec<u64>,
    v6: Vec<(u128, u8)>,
}

impl Listing {
    /// The pieces in file order, joined; `None` for a list too long for the keys' index bits.
    fn join(pieces: Vec<Piece>) -> Option<Listing> {
        let lines: usize = pieces.iter().map(|p| p.entries.len()).sum();
        if lines >= 1 << IDX_BITS {
            return None;
        }
        let (mut entries, mut v4, mut v6) = (Vec::new(), Vec::new(), Vec::new());
        for mut piece in pieces {
            let offset = entries.len();
            piece.v4.iter_mut().for_each(|k| *k += offset as u64);
            piece.v6.iter_mut().for_each(|k| k.2 += offset as u32);
            v4 = merge_runs(v4, piece.v4);
            v6 = merge_runs(v6, piece.v6);
            // The first piece's entries are kept where they are: appending them to an empty
            // vector would copy them (half the list, every page of it faulted in again).
            if entries.is_empty() {
                entries = std::mem::take(&mut piece.entries);
            } else {
                entries.append(&mut piece.entries);
            }
        }
        // A prefix listed again is kept at its first line: the lowest index of its run.
        let mut repeats = Vec::new();
        let v4 = first_of_runs(v4, |k| (k >> IDX_BITS, k & IDX_MASK), &mut repeats);
        let v6 = first_of_runs(v6, |(a, l, i)| ((a, l), u64::from(i)), &mut repeats);
        if !repeats.is_empty() {
            repeats.sort_unstable();
            let mut at = 0;
            let mut next = repeats.iter().peekable();
            entries.retain(|_| {
                at += 1;
                next.next_if_eq(&&(at - 1)).is_none()
            });
        }
        Some(Listing {
            entries,
            lines,
            v4,
            v6,
        })
    }
}

/// Two sorted runs as one (`a`'s allocation reused when `b` is empty, and the other way).
fn merge_runs<T: Ord + Copy>(a: Vec<T>, b: Vec<T>) -> Vec<T> {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let mut b = b.into_iter().peekable();
    for x in a {
        while let Some(y) = b.next_if(|y| *y < x) {
            out.push(y);
        }
        out.push(x);
    }
    out.extend(b);
    out
}

/// The keys of `sorted` (key, index) pairs, each once: the first of its run. The indices of
/// the others go to `repeats`. (Collected in place: the keys take the pairs' memory.)
fn first_of_runs<T, K: PartialEq + Copy>(
    sorted: Vec<T>,
    split: impl Fn(T) -> (K, u64),
    repeats: &mut Vec<u64>,
) -> Vec<K> {
    let mut last = None;
    sorted
        .into_iter()
        .filter_map(|t| {
            let (key, index) = split(t);
            if last == Some(key) {
                repeats.push(index);
                return None;
            }
            last = Some(key);
            Some(key)
        })
        .collect()
}

/// Bits of an entry's index below an IPv4 key while sorting (a 64 MB list has fewer lines).
const IDX_BITS: u32 = 26;
const IDX_MASK: u64 = (1 << IDX_BITS) - 1;

/// Merges two sorted, duplicate-free runs: what `new` has that `old` has not (added), and what
/// `old` has that `new` has not (removed).
fn merge<T: Ord + Copy>(old: &[T], new: impl Iterator<Item = T>) -> (Vec<T>, Vec<T>) {
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
    use crate::dataplane::Diff;
    use std::{
        path::Path,
        time::{Duration, SystemTime},
    };

    use super::*;
    use crate::{
        config::{Check, testing::TWO_WANS},
        controller::desired::rule_ids,
        sets::compile,
    };

    /// Writes `text` to `path`, dated `age` ago: steer's reader waits for a file modified in
    /// the last second, and each version gets a time of its own.
    fn write_dated(path: &Path, text: &str, age: u64) {
        std::fs::write(path, text).unwrap();
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(age))
            .unwrap();
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("steer-lists-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const LIST: &str =
        "# list\r\n10.0.0.0/8\r\n192.0.2.7\n2001:db8::/32 # v6\n10.0.0.0/8\n\n198.51.100.0/24\n";

    /// Set `a` holds 203.0.113.0/24 inline; set `big` is list-only.
    fn setup(tag: &str) -> (PathBuf, PathBuf) {
        let dir = scratch(tag);
        let toml = dir.join("steer.toml");
        write_dated(
            &toml,
            &format!(
                "[general]\nlan = [\"br-lan\"]\n{TWO_WANS}\n[[policy]]\nname = \"p\"\nmembers = [{{ wan = \"wan1\" }}]\n\
                 [[set]]\nname = \"a\"\npolicy = \"p\"\nprefixes = [\"203.0.113.0/24\"]\n\
                 [[set]]\nname = \"big\"\npolicy = \"p\"\nfiles = [\"big.txt\"]\n"
            ),
            60,
        );
        write_dated(&dir.join("big.txt"), LIST, 60);
        (dir, toml)
    }

    #[test]
    fn a_changed_list_gives_exactly_what_the_full_path_gives() {
        let (dir, toml) = setup("same");
        let (before, inputs) = crate::config::load_stamped(&toml).unwrap();
        let compiled = compile(&before, &NameIds::new());
        let ids = rule_ids(&compiled.rules);
        let held = compiled.prefixes;
        let lists = ListSets::of(&before, &ids);
        // A line gone, lines added (one twice, one of them at the top), a line moved.
        write_dated(
            &dir.join("big.txt"),
            "172.16.0.0/12\n# list\n198.51.100.0/24\n10.0.0.0/8\n2001:db8::/32\n172.16.0.0/12\nfd00::/8\n",
            50,
        );
        let Check::Changed(changed) = inputs.check() else {
            panic!("the list changed")
        };
        let delta = prepare(&lists, &inputs, changed, &held).expect("a list-only change");
        let (after, after_inputs) = crate::config::load_stamped(&toml).unwrap();
        assert_eq!(delta.entries, after.set("big").unwrap().prefixes);
        assert_eq!(delta.inputs, after_inputs);
        let added = delta.added.iter().map(|p| (*p, delta.rule)).collect();
        let diff = Diff::of_changes(&held, delta.direction, added, delta.removed.clone());
        let mut state = held.clone();
        diff.apply_to(&mut state);
        assert_eq!(state, compile(&after, &ids).prefixes);
        assert!(after_inputs.unchanged());
        // Again, against the maps the first change left: what the set holds is now remembered
        // from the first prepare, with the writes since.
        write_dated(
            &dir.join("big.txt"),
            "fd00::/8\n10.0.0.0/8\n192.0.2.0/24\n",
            40,
        );
        let Check::Changed(changed) = after_inputs.check() else {
            panic!("the list changed again")
        };
        let lists = ListSets::of(&after, &ids);
        let delta = prepare(&lists, &after_inputs, changed, &state).expect("a list-only change");
        let (last, _) = crate::config::load_stamped(&toml).unwrap();
        let added = delta.added.iter().map(|p| (*p, delta.rule)).collect();
        Diff::of_changes(&state, delta.direction, added, delta.removed).apply_to(&mut state);
        assert_eq!(state, compile(&last, &ids).prefixes);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_change_taken_against_an_older_mirror_is_taken_again() {
        let (dir, toml) = setup("refit");
        let (config, inputs) = crate::config::load_stamped(&toml).unwrap();
        let compiled = compile(&config, &NameIds::new());
        let ids = rule_ids(&compiled.rules);
        let (big, a) = (ids["big"], ids["a"]);
        let p = |s: &str| crate::prefix::parse_prefix(s, true).unwrap();
        // At the snapshot, 172.16.0.0/12 is in big (a runtime entry) and 192.0.2.7 in big.
        let mut snapshot = compiled.prefixes.clone();
        snapshot.insert(Direction::Dst, p("172.16.0.0/12"), big);
        write_dated(
            &dir.join("big.txt"),
            "10.0.0.0/8
172.16.0.0/12
2001:db8::/32
198.51.100.0/24
",
            50,
        );
        let Check::Changed(changed) = inputs.check() else {
            panic!("changed")
        };
        let lists = ListSets::of(&config, &ids);
        let mut delta = prepare(&lists, &inputs, changed, &snapshot).expect("list-only");
        assert!(
            !delta.added.contains(&p("172.16.0.0/12")),
            "held at the snapshot"
        );
        assert_eq!(delta.removed, [p("192.0.2.7/32")]);
        // Then the runtime entry went, and 192.0.2.7 moved to set a at runtime.
        let mut now = compiled.prefixes.clone();
        now.insert(Direction::Dst, p("192.0.2.7/32"), a);
        delta.refit(&now);
        assert_eq!(delta.added, [p("172.16.0.0/12")]);
        assert!(delta.removed.is_empty(), "{:?}", delta.removed);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_only_the_full_path_can_tell_is_left_to_it() {
        let (dir, toml) = setup("full");
        let (config, inputs) = crate::config::load_stamped(&toml).unwrap();
        let compiled = compile(&config, &NameIds::new());
        let ids = rule_ids(&compiled.rules);
        let lists = ListSets::of(&config, &ids);
        let changed = |text: &str, age: u64| {
            write_dated(&dir.join("big.txt"), text, age);
            match inputs.check() {
                Check::Changed(c) => c,
                other => panic!("{other:?}"),
            }
        };
        let delta = |c| prepare(&lists, &inputs, c, &compiled.prefixes);
        // A bad line (the full path says where), a prefix set `a` holds (a duplicate).
        assert!(delta(changed("10.0.0.0/8\n010.1.1.1\n", 50)).is_none());
        assert!(delta(changed("10.0.0.0/8\n203.0.113.0/24\n", 40)).is_none());
        // The configuration file changed too.
        let mut two = changed("10.0.0.0/8\n", 30);
        write_dated(
            &toml,
            &(std::fs::read_to_string(&toml).unwrap() + "#\n"),
            30,
        );
        let Check::Changed(both) = inputs.check() else {
            panic!()
        };
        assert_eq!(both.len(), 2);
        assert!(delta(both).is_none());
        two.truncate(1);
        // A set with inline prefixes and a list is not list-only.
        let mut mixed = config.clone();
        mixed.sets[1]
            .prefixes
            .insert(0, config.sets[0].prefixes[0].clone());
        let lists = ListSets::of(&mixed, &ids);
        assert!(prepare(&lists, &inputs, two, &compiled.prefixes).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn p(s: &str) -> Prefix {
        crate::prefix::parse_prefix(s, false).unwrap()
    }

    /// A list parsed in pieces and joined is what the full path keeps, in any number of pieces:
    /// the entries in file order, each prefix once at its first line, and the prefixes sorted.
    #[test]
    fn pieces_join_into_what_the_full_path_keeps() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut text = String::from("\u{feff}# list\n");
        for i in 0..3000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Few distinct prefixes: many repeats, across pieces too.
            let a = (rng >> 40) % 200;
            match rng % 5 {
                0 => text.push_str(&format!("2001:db8:{a:x}::/48\n")),
                1 => text.push_str(&format!("# {i}\n\n")),
                _ => text.push_str(&format!("10.{}.{}.0/24\r\n", a % 7, a)),
            }
        }
        let file: Arc<Path> = Arc::from(Path::new("big.txt"));
        let mut seen = std::collections::HashSet::new();
        let want: Vec<Entry> = crate::config::parse_list(&text, false)
            .unwrap()
            .into_iter()
            .filter(|l| seen.insert(l.prefix))
            .map(|l| Entry {
                prefix: l.prefix,
                origin: Origin {
                    file: file.clone(),
                    line: l.line,
                },
            })
            .collect();
        let mut sorted: Vec<Prefix> = want.iter().map(|e| e.prefix).collect();
        sorted.sort_unstable();
        for parts in 1..=4 {
            let pieces = parse_list_split(text.as_bytes(), false, parts, |piece| {
                Piece::new(file.clone(), piece)
            })
            .unwrap();
            assert_eq!(pieces.len(), parts);
            let got = Listing::join(pieces).unwrap();
            assert_eq!(got.entries, want, "{parts} pieces");
            assert!(got.lines > want.len());
            let v4 = got.v4.into_iter().map(from_v4_key);
            let v6 = got.v6.into_iter().map(from_v6_key);
            assert_eq!(v4.chain(v6).collect::<Vec<_>>(), sorted, "{parts} pieces");
        }
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
