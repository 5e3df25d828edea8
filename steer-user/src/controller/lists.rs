//! A reload where only a list file changed: its cost follows the change, not the list.
//!
//! The full path of a reload reads the configuration and every list, resolves duplicates over
//! every prefix, compiles the whole desired state and compares it with the whole kernel mirror:
//! about two seconds for a million-line list, whatever changed. Here, when the configuration
//! file and every other file read the same as when the running configuration was loaded
//! ([`Inputs::check`]), the one changed list is parsed (nothing else is), in pieces on every
//! core, sorted, and merged against what its set holds now (the set's prefixes in the kernel
//! mirror, which is exact while [`Inputs`] are kept: the last apply left nothing undone; the
//! mirror keeps its maps sorted); the added and removed prefixes are the diff
//! ([`crate::dataplane::Diff::of_changes`]).
//!
//! Nothing of a million lines is kept but their sort keys (8 bytes an IPv4 entry): the running
//! configuration keeps no list entries ([`crate::sets::compile_taking_lists`]), so none are made. The
//! pieces' keys are merged, each prefix once, and compared with the set's sorted prefixes in
//! one pass, collecting what was added and removed and the list's prefixes (for a change that
//! has to be taken again, [`Delta::refit`]).
//!
//! This path is taken only where it gives exactly what the full path would: the set's list
//! file is the only source of its prefixes and no other set reads it, and
//! `general.duplicates = "error"` (so no prefix of the running configuration is in two sets).
//! Anything this path cannot decide exactly — a bad line, a prefix another set holds, a
//! capacity exceeded, a file that cannot be read again, a list the memory limit cannot take
//! ([`ListBudget`]) — sends the reload down the full path, which reports it as it always has
//! (file:line:column) and changes nothing.

use std::path::PathBuf;

use crate::{
    config::{
        Changed, Config, DuplicatePolicy, Inputs, ListBudget, line_count, list_pieces,
        parse_list_sorted,
    },
    model::{Capacity, Direction, NameIds, PrefixMap, PrefixSets, sorted::SortedPrefixes},
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
        // An ordered rule's list goes through the full path: its prefixes live in the
        // condition maps, which are written a bank at a time.
        let sets = config
            .sets
            .iter()
            .filter(|s| s.conditions.is_none())
            .filter_map(|s| {
                let inline = !s.prefixes.is_empty();
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
    /// The list's prefixes now, each once, sorted.
    pub listed: SortedPrefixes,
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
    /// Entries parsed (a repeated prefix counts each time).
    pub lines: usize,
    /// Reading the files again and comparing their stamps (set by the caller).
    pub check: std::time::Duration,
    pub parse: std::time::Duration,
    pub diff_time: std::time::Duration,
}

/// The change of one list file against the mirror `held`, or `None` when
/// only the full path can tell what it means.
///
/// Under a memory limit, `budget` admits the list before it is parsed; one it refuses goes
/// down the full path too, which refuses it where the configuration names it.
pub(super) fn prepare(
    sets: &ListSets,
    inputs: &Inputs,
    mut changed: Vec<Changed>,
    held: &PrefixSets,
    budget: Option<ListBudget>,
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
    if let Some(mut budget) = budget {
        let lines = line_count(&bytes);
        budget.admit(&resolved, bytes.len() as u64, lines).ok()?;
    }
    diff_list(set, inputs, index, bytes, stamp, held, &sets.capacity)
}

/// The change of list file `index` of `set`, now `bytes`, against what the set holds in the
/// mirror `held`.
fn diff_list(
    set: &ListSet,
    inputs: &Inputs,
    index: usize,
    bytes: Vec<u8>,
    stamp: crate::config::Stamp,
    held: &PrefixSets,
    capacity: &Capacity,
) -> Option<Delta> {
    let started = std::time::Instant::now();
    let parts = list_pieces(bytes.len());
    let (listed, lines) = parse_list_sorted(bytes, set.allow_default_route, parts).ok()?;
    let parse = started.elapsed();
    let started = std::time::Instant::now();
    let Merged { added, removed } = Merged::of(&listed, held, set.direction, set.rule);

    // A prefix another set holds is a duplicate: the full path says where.
    let map_of = |p: &Prefix| PrefixMap::of(set.direction, p);
    if added
        .iter()
        .any(|p| held.map(map_of(p)).get(p).is_some_and(|r| r != set.rule))
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
        listed,
        direction: set.direction,
        added,
        removed,
        version: 0,
        inputs: inputs.with([(index, stamp)]),
        lines,
        check: std::time::Duration::ZERO,
        parse,
        diff_time: started.elapsed(),
    })
}

impl Delta {
    /// Takes `added` and `removed` again against `held`, when the maps changed since they were
    /// taken (a runtime edit came between; rare, so plainly).
    pub fn refit(&mut self, held: &PrefixSets) {
        let mut removed = Vec::new();
        for v4 in [true, false] {
            let map = held.map(PrefixMap::new(self.direction, v4));
            removed.extend(map.of_rule(self.rule).filter(|p| !self.listed.contains(p)));
        }
        self.added = self
            .listed
            .iter()
            .filter(|p| held.map(PrefixMap::of(self.direction, p)).get(p) != Some(self.rule))
            .collect();
        self.removed = removed;
    }
}

/// A changed list against what its set holds: what was added and removed.
#[derive(Debug)]
struct Merged {
    /// Prefixes the list has and the set does not hold, and the other way round.
    added: Vec<Prefix>,
    removed: Vec<Prefix>,
}

impl Merged {
    /// `listed` against the prefixes of `rule` in the maps of `direction` of `held`: both in
    /// prefix order, compared in one pass (nothing of the set's size is made).
    fn of(listed: &SortedPrefixes, held: &PrefixSets, direction: Direction, rule: u32) -> Merged {
        let old = [true, false]
            .into_iter()
            .flat_map(|v4| held.map(PrefixMap::new(direction, v4)).of_rule(rule));
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        let mut old = old.peekable();
        for p in listed.iter() {
            while let Some(o) = old.next_if(|o| *o < p) {
                removed.push(o);
            }
            if old.next_if(|o| *o == p).is_none() {
                added.push(p);
            }
        }
        removed.extend(old);
        Merged { added, removed }
    }
}

#[cfg(test)]
mod tests {
    use crate::dataplane::Diff;
    use std::{
        collections::BTreeSet,
        path::Path,
        time::{Duration, SystemTime},
    };

    use super::*;
    use crate::{
        config::{Check, ListSink, Listed, parse_list_split, testing::TWO_WANS},
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
        let delta = prepare(&lists, &inputs, changed, &held, None).expect("a list-only change");
        let (after, after_inputs) = crate::config::load_stamped(&toml).unwrap();
        assert_eq!(delta.listed, after.set("big").unwrap().listed);
        assert_eq!(delta.inputs, after_inputs);
        let added = delta.added.iter().map(|p| (*p, delta.rule)).collect();
        let diff = Diff::of_changes(&held, delta.direction, added, delta.removed.clone());
        let mut state = held.clone();
        diff.apply_to(&mut state);
        assert_eq!(state, compile(&after, &ids).prefixes);
        assert!(after_inputs.unchanged());
        // Again, against the maps the first change left (the mirror with that change's writes).
        write_dated(
            &dir.join("big.txt"),
            "fd00::/8\n10.0.0.0/8\n192.0.2.0/24\n",
            40,
        );
        let Check::Changed(changed) = after_inputs.check() else {
            panic!("the list changed again")
        };
        let lists = ListSets::of(&after, &ids);
        let delta =
            prepare(&lists, &after_inputs, changed, &state, None).expect("a list-only change");
        let (last, _) = crate::config::load_stamped(&toml).unwrap();
        let added = delta.added.iter().map(|p| (*p, delta.rule)).collect();
        Diff::of_changes(&state, delta.direction, added, delta.removed).apply_to(&mut state);
        assert_eq!(state, compile(&last, &ids).prefixes);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Under a memory limit a changed list is admitted before it is parsed: one whose lines
    /// the limit cannot take is left to the full path, which names it; one whose text alone
    /// does not fit is not even read by the check. With room for it, the list path takes it.
    #[test]
    fn a_list_the_memory_limit_cannot_take_is_left_to_the_full_path() {
        use crate::memory_limit::{MemoryLimit, need};
        let (dir, toml) = setup("budget");
        let (before, inputs) = crate::config::load_stamped(&toml).unwrap();
        let compiled = compile(&before, &NameIds::new());
        let lists = ListSets::of(&before, &rule_ids(&compiled.rules));
        let held = compiled.prefixes.len();
        let hosts = 200_000;
        let big: String = (0..hosts)
            .map(|i| format!("{}\n", std::net::Ipv4Addr::from((10 << 24) + 2 * i)))
            .collect();
        let text = big.len() as u64;
        write_dated(&dir.join("big.txt"), &big, 50);
        let budget = |bytes| {
            let file = "/sys/fs/cgroup/steer.service/memory.max".into();
            ListBudget::new(MemoryLimit { bytes, file }, 0, held)
        };
        let list_path = |budget: &ListBudget| {
            let Check::Changed(changed) = inputs.check_within(budget.text_room()) else {
                panic!("its text fits: it is read")
            };
            prepare(
                &lists,
                &inputs,
                changed,
                &compiled.prefixes,
                Some(budget.clone()),
            )
        };

        // Room for its text and a MiB, not for its 200,000 lines (3 MiB).
        let no_room_for_lines = budget(need(0, held) + text + (1 << 20));
        assert!(list_path(&no_room_for_lines).is_none());
        let full = crate::config::load_stamped_within(&toml, Some(no_room_for_lines));
        let err = full.unwrap_err().to_string();
        assert!(err.contains("set[big].files[0]"), "{err}");
        assert!(
            err.contains(&format!(
                "reading list file {}",
                dir.join("big.txt").display()
            )),
            "{err}"
        );
        assert!(err.contains(&format!("({hosts} lines,")), "{err}");

        let no_room_for_text = budget(need(0, held) + text - 1);
        let check = inputs.check_within(no_room_for_text.text_room());
        assert!(matches!(check, Check::Unreadable), "not read: {check:?}");
        let full = crate::config::load_stamped_within(&toml, Some(no_room_for_text));
        let err = full.unwrap_err().to_string();
        assert!(err.contains(", not read) would take steer over"), "{err}");

        let room = budget(need(0, hosts as usize) + text);
        let delta = list_path(&room).expect("the list path takes it");
        assert_eq!(delta.added.len(), hosts as usize);
        assert!(crate::config::load_stamped_within(&toml, Some(room)).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The daemon's compile takes the lists' prefixes over instead of copying them, and
    /// gives the same desired state.
    #[test]
    fn compiling_takes_the_lists_over_and_gives_what_copying_gives() {
        let (dir, toml) = setup("taking");
        let (mut config, _) = crate::config::load_stamped(&toml).unwrap();
        let copied = compile(&config, &NameIds::new());
        let taken = crate::sets::compile_taking_lists(&mut config, &NameIds::new());
        assert_eq!(taken, copied);
        assert!(copied.prefixes.len() > 1, "{:?}", copied.prefixes);
        assert!(config.sets.iter().all(|s| s.listed.is_empty()));
        assert!(!config.sets[0].prefixes.is_empty(), "inline prefixes stay");
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
        let mut delta = prepare(&lists, &inputs, changed, &snapshot, None).expect("list-only");
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
        let delta = |c| prepare(&lists, &inputs, c, &compiled.prefixes, None);
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
        assert!(prepare(&lists, &inputs, two, &compiled.prefixes, None).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn p(s: &str) -> Prefix {
        crate::prefix::parse_prefix(s, false).unwrap()
    }

    /// A list parsed in pieces and joined is what the full path keeps, in any number of pieces:
    /// each prefix once, sorted.
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
        let all = crate::config::parse_list(&text, false).unwrap();
        let sorted: Vec<Prefix> = all
            .iter()
            .map(|l| l.prefix)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for parts in 1..=4 {
            let (listed, lines) =
                parse_list_sorted(text.clone().into_bytes(), false, parts).unwrap();
            assert_eq!(lines, all.len());
            assert!(lines > sorted.len());
            // Against an empty set, every prefix is added, sorted.
            let got = Merged::of(&listed, &PrefixSets::default(), Direction::Dst, 1);
            assert_eq!(listed.iter().collect::<Vec<_>>(), sorted, "{parts} pieces");
            assert_eq!(got.added, sorted, "{parts} pieces");
            assert!(got.removed.is_empty());
        }
    }

    /// The lean path (the list parsed in pieces into sorted keys, merged against what the set
    /// holds) against the full path (`parse_list_bytes`, each prefix once, the difference of
    /// two sets) on the same bytes: random lists of
    /// every form (IPv4 and IPv6, repeats, comments, blank lines, CRLF, whitespace, a
    /// byte-order mark) and, in some, a bad line (host bits set, a leading zero, not UTF-8, a
    /// default route), in any number of pieces, against a random set.
    #[test]
    fn the_lean_path_gives_what_the_full_path_gives() {
        let mut rng = 0x5eed_1e5a_u64 | 1;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        // Lists taken, lists with a bad line, entries that repeat a prefix: each form is seen.
        let (mut taken, mut refused, mut repeated) = (0, 0, 0);
        for round in 0..300 {
            // Few addresses, so that prefixes repeat within and across pieces.
            let pool = 1 + next(256);
            let mut text: Vec<u8> = Vec::new();
            if next(5) == 0 {
                text.extend("\u{feff}".as_bytes());
            }
            let mut listed = Vec::new();
            for _ in 0..next(3000) {
                let a = next(pool);
                let line = match next(14) {
                    0..4 => format!("10.{}.{}.0/24", a % 5, a),
                    4 => format!("192.0.2.{a}"),
                    5 => format!("172.{}.0.0/16", 16 + a % 16),
                    6 => format!("2001:db8:{a:x}::/48"),
                    7 => format!("fd00::{a:x}"),
                    8 => format!("  10.9.{a}.0/24 # indented"),
                    9 => format!("10.{}.{}.0/24\r", a % 5, a),
                    10 => "# a comment".to_owned(),
                    11 => String::new(),
                    12 => format!("2001:DB8:{a:x}::/48"),
                    _ => format!("198.51.{}.0/24#x", a % 200),
                };
                listed.push(line);
            }
            let bad = [
                "10.0.0.1/8",
                "2001:db8::1/32",
                "010.1.1.1",
                "0.0.0.0/0",
                "10.0.0.0/33",
                "nonsense",
            ];
            if round % 8 == 5 {
                // Sorted, as many lists are written (a repeat next to its first): no sort.
                let mut sorted: Vec<Prefix> = (0..next(2000))
                    .map(|_| p(&format!("10.{}.{}.0/24", next(3), next(256))))
                    .collect();
                sorted.sort_unstable();
                listed = sorted.iter().map(Prefix::to_string).collect();
            }
            let mut lines: Vec<Vec<u8>> = listed.into_iter().map(String::into_bytes).collect();
            if round % 4 == 1 && !lines.is_empty() {
                let at = next(lines.len() as u64) as usize;
                lines[at] = bad[next(bad.len() as u64) as usize].as_bytes().to_vec();
            }
            if round % 16 == 3 && !lines.is_empty() {
                let at = next(lines.len() as u64) as usize;
                lines[at] = b"10.1.\xff.0/24".to_vec();
            }
            for line in &lines {
                text.extend(line);
                text.push(b'\n');
            }
            if next(2) == 0 {
                text.pop();
            }
            // What the set holds: some of the pool and some prefixes the list never has.
            let mut held = BTreeSet::new();
            for _ in 0..next(400) {
                let a = next(pool);
                held.insert(match next(3) {
                    0 => p(&format!("10.{}.{}.0/24", a % 5, a)),
                    1 => p(&format!("2001:db8:{a:x}::/48")),
                    _ => p(&format!("203.0.113.{}", a % 256)),
                });
            }
            // The set is rule 1; rule 2 holds other prefixes of the pool, never removed.
            let mut old = PrefixSets::default();
            for p in &held {
                old.insert(Direction::Dst, *p, 1);
            }
            for _ in 0..next(50) {
                let other = p(&format!("172.{}.0.0/16", 16 + next(pool) % 16));
                if !held.contains(&other) {
                    old.insert(Direction::Dst, other, 2);
                }
            }

            let full = crate::config::parse_list_bytes(&text, false).ok();
            for parts in 1..=4 {
                let lean =
                    parse_list_sorted(text.clone(), false, parts)
                        .ok()
                        .map(|(listed, lines)| {
                            let merged = Merged::of(&listed, &old, Direction::Dst, 1);
                            let repeats = lines - listed.len();
                            (listed, merged.added, merged.removed, repeats)
                        });
                let shown = String::from_utf8_lossy(&text);
                let Some(want) = &full else {
                    assert!(lean.is_none(), "round {round}, {parts} pieces: {shown}");
                    refused += 1;
                    continue;
                };
                taken += 1;
                let (listed, added, removed, repeats) =
                    lean.unwrap_or_else(|| panic!("round {round}, {parts} pieces: {shown}"));
                let now: BTreeSet<Prefix> = want.iter().map(|l| l.prefix).collect();
                assert_eq!(
                    listed.iter().collect::<Vec<_>>(),
                    now.iter().copied().collect::<Vec<_>>(),
                    "round {round}, {parts} pieces"
                );
                assert_eq!(
                    repeats,
                    want.len() - now.len(),
                    "round {round}, {parts} pieces"
                );
                repeated += repeats;
                assert_eq!(
                    added,
                    now.difference(&held).copied().collect::<Vec<_>>(),
                    "round {round}, {parts} pieces"
                );
                assert_eq!(
                    removed,
                    held.difference(&now).copied().collect::<Vec<_>>(),
                    "round {round}, {parts} pieces"
                );
            }
        }
        assert!(
            taken > 600 && refused > 200,
            "{taken} taken, {refused} refused"
        );
        assert!(repeated > 0);
    }

    /// The changed-list path on a 1M-line list (60% /24, 25% /16../23, 15% /32, as `cargo xtask
    /// bench reload` has it), one line changed: parse (ns/line) and diff (ms), median of 5,
    /// next to the whole-file parser on the same text. Not a test: run it with
    /// `cargo test --release -p steer-user --lib lists::tests::bench_one_changed_line --
    /// --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement (release mode), not a test"]
    fn bench_one_changed_line() {
        const N: usize = 1_000_000;
        let mut rng = 0x11575_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut seen = std::collections::HashSet::new();
        let mut lines = Vec::with_capacity(N);
        while lines.len() < N {
            let len = match next() % 100 {
                0..60 => 24,
                60..85 => 16 + (next() % 8) as u32,
                _ => 32,
            };
            let addr = (next() >> 32) as u32 & u32::MAX.checked_shl(32 - len).unwrap_or(0);
            if seen.insert((addr, len)) {
                lines.push(match len {
                    32 => format!("{}", std::net::Ipv4Addr::from(addr)),
                    _ => format!("{}/{len}", std::net::Ipv4Addr::from(addr)),
                });
            }
        }
        let text = |lines: &[String]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        let dir = scratch("bench");
        let toml = dir.join("steer.toml");
        write_dated(
            &toml,
            &format!(
                "[general]\nlan = [\"br-lan\"]\n{TWO_WANS}\n[[policy]]\nname = \"p\"\nmembers = [{{ wan = \"wan1\" }}]\n\
                 [[set]]\nname = \"big\"\npolicy = \"p\"\nfiles = [\"big.txt\"]\n"
            ),
            600,
        );
        write_dated(&dir.join("big.txt"), &text(&lines), 600);
        let (config, inputs) = crate::config::load_stamped(&toml).unwrap();
        let compiled = compile(&config, &NameIds::new());
        let ids = rule_ids(&compiled.rules);
        let held = compiled.prefixes;
        let lists = ListSets::of(&config, &ids);
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let whole = text(&lines);
        let gauge = median(
            (0..3)
                .map(|_| {
                    let t = std::time::Instant::now();
                    let got = crate::config::parse_list_bytes(whole.as_bytes(), false).unwrap();
                    assert_eq!(got.len(), N);
                    t.elapsed().as_nanos() as f64 / N as f64
                })
                .collect(),
        );
        let (mut parse, mut diff, mut total) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..5 {
            let mut changed = lines.clone();
            changed[N / 2] = format!("172.31.{round}.0/24");
            write_dated(&dir.join("big.txt"), &text(&changed), 500 - round as u64);
            let Check::Changed(c) = inputs.check() else {
                panic!("the list changed")
            };
            let t = std::time::Instant::now();
            let delta = prepare(&lists, &inputs, c, &held, None).expect("a list-only change");
            total.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!((delta.added.len(), delta.removed.len()), (1, 1));
            parse.push(delta.parse.as_secs_f64() * 1e3);
            diff.push(delta.diff_time.as_secs_f64() * 1e3);
            drop(delta);
        }
        // Its steps, on the changed text of the last round.
        let bytes = std::fs::read(dir.join("big.txt")).unwrap();
        let parts = list_pieces(bytes.len());
        let rule = ids["big"];
        let timed = |f: &mut dyn FnMut()| {
            median(
                (0..5)
                    .map(|_| {
                        let t = std::time::Instant::now();
                        f();
                        t.elapsed().as_secs_f64() * 1e3
                    })
                    .collect(),
            )
        };
        struct Count(usize);
        impl ListSink for Count {
            fn entry(&mut self, _: Listed) {
                self.0 += 1;
            }
        }
        let scan = timed(&mut || {
            let n = parse_list_split(&bytes, false, parts, |_| Count(0)).unwrap();
            assert_eq!(n.iter().map(|c| c.0).sum::<usize>(), N);
        });
        let pieces = timed(&mut || {
            parse_list_sorted(bytes.clone(), false, parts).unwrap();
        });
        let merged = median(
            (0..5)
                .map(|_| {
                    let (listed, _) = parse_list_sorted(bytes.clone(), false, parts).unwrap();
                    let t = std::time::Instant::now();
                    Merged::of(&listed, &held, Direction::Dst, rule);
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect(),
        );
        let one = timed(&mut || {
            parse_list_sorted(bytes.clone(), false, 1).unwrap();
        });
        // The same list written sorted, as many are: its keys need no sort.
        let mut ordered: Vec<Prefix> = lines.iter().map(|l| p(l)).collect();
        ordered.sort_unstable();
        let ordered: String = ordered.iter().map(|p| format!("{p}\n")).collect();
        let sorted = timed(&mut || {
            parse_list_sorted(ordered.clone().into_bytes(), false, parts).unwrap();
        });
        println!(
            "steps (median of 5): lines parsed into a count {scan:.1} ms, into \
             sorted keys {pieces:.1} ms (in one piece on one core: {one:.1} ms, {:.1} \
             ns/line; the list written sorted: {sorted:.1} ms); merged against the set \
             {merged:.1} ms",
            one * 1e6 / N as f64
        );
        let (parse, diff, total) = (median(parse), median(diff), median(total));
        println!(
            "1M-line list, one line changed (median of 5): parse {parse:.1} ms ({:.1} ns/line, \
             {} pieces), diff {diff:.1} ms, prepare {total:.1} ms; parse_list_bytes (one \
             thread, whole list) {gauge:.1} ns/line",
            parse * 1e6 / N as f64,
            list_pieces(whole.len()),
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Only the set's own rule counts as held: another set's prefixes are neither removed nor
    /// taken as held.
    #[test]
    fn a_sorted_merge_finds_exactly_what_was_added_and_removed() {
        let mut held = PrefixSets::default();
        for q in ["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"] {
            held.insert(Direction::Dst, p(q), 1);
        }
        held.insert(Direction::Dst, p("172.16.0.0/12"), 2);
        let listed = |l: &[&str]| SortedPrefixes::of(l.iter().map(|q| p(q)));
        let now = listed(&[
            "10.0.0.0/8",
            "172.16.0.0/12",
            "198.51.100.0/24",
            "2001:db8::/32",
        ]);
        let got = Merged::of(&now, &held, Direction::Dst, 1);
        assert_eq!(got.added, [p("172.16.0.0/12"), p("198.51.100.0/24")]);
        assert_eq!(got.removed, [p("192.0.2.0/24")]);
        let same = listed(&["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"]);
        let got = Merged::of(&same, &held, Direction::Dst, 1);
        assert!(got.added.is_empty() && got.removed.is_empty());
        let got = Merged::of(&same, &PrefixSets::default(), Direction::Dst, 1);
        assert_eq!((got.added.len(), got.removed.len()), (3, 0));
        let got = Merged::of(&SortedPrefixes::default(), &held, Direction::Dst, 1);
        assert_eq!((got.added.len(), got.removed.len()), (0, 3));
        let got = Merged::of(&same, &held, Direction::Src, 1);
        assert_eq!((got.added.len(), got.removed.len()), (3, 0));
    }
}
