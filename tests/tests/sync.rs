//! Map sync against the real kernel maps: only the difference is written, additions and
//! changes before removals, capacity checked first, failures rolled back or completed.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use steer::{
    config::Config,
    controller::desired,
    dataplane::{Dataplane, DataplaneError, SyncError, SyncReport, run::run_tc},
    model::{Capacity, Direction, Family, NameIds, PrefixMap, PrefixSets},
    packet::Frame,
};
use steer_common::{GENERATIONS, MAX_RULES, action, rule_kind};
use steer_tests::{classifier::ip, daemon::Workdir, lab::Wan, require_root, scenario::lab_wans};

/// The lab's two WANs, a wan2-first and a wan1 policy, the default rule on wan1, and the given
/// sets.
fn config_text(work: &Workdir, sets: &str) -> String {
    format!(
        r#"
[general]
lan = ["lan0"]
{pins}
{wans}
[[policy]]
name = "via-wan1"
members = [{{ wan = "wan1" }}]

[[policy]]
name = "via-wan2"
members = [{{ wan = "wan2" }}, {{ wan = "wan1", metric = 2 }}]

[default]
policy = "via-wan1"
{sets}
{control}"#,
        pins = work.private_paths(),
        wans = lab_wans("targets = [\"192.0.2.1\"]", "targets = [\"192.0.2.2\"]"),
        control = work.control_section()
    )
}

fn load(work: &Workdir, sets: &str) -> Config {
    work.load_config(&config_text(work, sets))
}

/// What the controller keeps between syncs (the dataplane keeps what the maps hold).
struct Applied {
    rule_ids: NameIds,
    wan_slots: NameIds,
    /// Capacities instead of the configuration's.
    capacity: Option<Capacity>,
}

impl Applied {
    fn new() -> Applied {
        Applied {
            rule_ids: BTreeMap::new(),
            wan_slots: BTreeMap::new(),
            capacity: None,
        }
    }

    fn apply(&mut self, dp: &mut Dataplane, cfg: &Config) -> Result<SyncReport, SyncError> {
        let mut d = desired(cfg, &self.rule_ids, &self.wan_slots, |_, _| true);
        if let Some(capacity) = self.capacity {
            d.contents.capacity = capacity;
        }
        let report = dp.sync(&d.contents, None)?;
        self.rule_ids = d.rule_ids();
        self.wan_slots = d.wan_slots;
        Ok(report)
    }
}

fn list(lines: impl Iterator<Item = String>) -> String {
    let mut s = String::from("# generated\n");
    for l in lines {
        s.push_str(&l);
        s.push('\n');
    }
    s
}

/// The i-th /24 counting up from 10.0.0.0/24.
fn prefix24(i: usize) -> String {
    format!("{}.{}.{}.0/24", 10 + i / 65536, (i / 256) % 256, i % 256)
}

const BYPASS_FROM_LIST: &str = r#"
[[set]]
name = "bypass"
policy = "via-wan2"
files = ["lists/bypass.txt"]
"#;

fn kernel_matches_state(dp: &Dataplane) {
    assert_eq!(
        &dump(dp),
        dp.prefixes(),
        "the kernel holds exactly what the sync recorded"
    );
}

/// What the prefix maps hold, read back from the kernel.
fn dump(dp: &Dataplane) -> PrefixSets {
    dp.maps().prefix_sets().expect("dump")
}

#[test]
fn one_changed_line_in_a_large_list_touches_only_that_entry() {
    require_root();
    const N: usize = 100_000;
    let work = Workdir::new("oneline");
    work.write("lists/bypass.txt", &list((0..N).map(prefix24)));
    let mut dp = Dataplane::load().expect("load");
    let mut applied = Applied::new();
    let first = applied
        .apply(&mut dp, &load(&work, BYPASS_FROM_LIST))
        .expect("first sync");
    assert_eq!(first.per_rule.values().map(|c| c.added).sum::<usize>(), N);

    // Line 5001 changes from 10.19.136.0/24 to 11.200.0.0/24 (a slot that has a trie already).
    let kernel_before = dump(&dp);
    work.write(
        "lists/bypass.txt",
        &list((0..N).map(|i| {
            if i == 5000 {
                "11.200.0.0/24".into()
            } else {
                prefix24(i)
            }
        })),
    );
    let before = dp.maps().writes();
    let report = applied
        .apply(&mut dp, &load(&work, BYPASS_FROM_LIST))
        .expect("reload");
    assert_eq!(
        report.prefix_writes, 2,
        "one addition and one removal: {report:?}"
    );
    assert_eq!(report.policy_writes, 0, "no policy changed");
    assert_eq!(
        dp.maps().writes() - before,
        2,
        "nothing else was written to the kernel"
    );
    assert_eq!(report.flipped, None);
    let c = report
        .per_rule
        .values()
        .next()
        .expect("the bypass rule changed");
    assert_eq!((c.added, c.changed, c.removed), (1, 0, 1));
    kernel_matches_state(&dp);
    // Independently of the write meter: the kernel's contents differ in exactly those two.
    let kernel_after = dump(&dp);
    let (old, new) = (
        kernel_before.map(PrefixMap::DstV4),
        kernel_after.map(PrefixMap::DstV4),
    );
    let gone: Vec<_> = old.keys().filter(|p| !new.contains_key(p)).collect();
    let came: Vec<_> = new.keys().filter(|p| !old.contains_key(p)).collect();
    assert_eq!(
        (gone.len(), came.len()),
        (1, 1),
        "gone {gone:?}, came {came:?}"
    );
    assert_eq!(gone[0].to_string(), "10.19.136.0/24");
    assert_eq!(came[0].to_string(), "11.200.0.0/24");
    assert!(
        old.iter()
            .all(|(p, r)| p == gone[0] || new.get(&p) == Some(r)),
        "every other entry kept its rule"
    );

    // Reloading the same thing writes nothing at all.
    let before = dp.maps().writes();
    let again = applied
        .apply(&mut dp, &load(&work, BYPASS_FROM_LIST))
        .expect("no-op reload");
    assert_eq!((again.prefix_writes, again.policy_writes), (0, 0));
    assert_eq!(dp.maps().writes(), before);
}

#[test]
fn additions_land_before_removals_so_lookups_never_fall_through() {
    require_root();
    // Config A covers 10.1.0.0/16 with one prefix; config B with its 256 /24s. Either way a
    // packet to 10.1.x.y belongs to the bypass set (wan2, 0x200). Removing before adding would
    // let it fall through to the default rule (wan1, 0x100) for a moment.
    let work = Workdir::new("nogap");
    let a = "[[set]]\nname = \"bypass\"\npolicy = \"via-wan2\"\nprefixes = [\"10.1.0.0/16\"]\n"
        .to_owned();
    let b_prefixes: Vec<String> = (0..256).map(|i| format!("\"10.1.{i}.0/24\"")).collect();
    let b = format!(
        "[[set]]\nname = \"bypass\"\npolicy = \"via-wan2\"\nprefixes = [{}]\n",
        b_prefixes.join(", ")
    );
    let (cfg_a, cfg_b) = (load(&work, &a), load(&work, &b));
    let (mut dp, _) = Dataplane::open_pinned(&work.pin_dir).expect("open pinned");
    let mut applied = Applied::new();
    applied.apply(&mut dp, &cfg_a).expect("initial sync");

    let stop = Arc::new(AtomicBool::new(false));
    let (lookups, wrong) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let reader = {
        let (stop, lookups, wrong, pins) = (
            stop.clone(),
            lookups.clone(),
            wrong.clone(),
            work.pin_dir.clone(),
        );
        std::thread::spawn(move || {
            // A second copy of the classifier on the same maps, as `steer explain` uses.
            let beside = Dataplane::load_beside(&pins).expect("load beside");
            ready_tx.send(()).expect("main thread waits");
            let frames: Vec<Vec<u8>> = (0..64)
                .map(|i| {
                    Frame::udp(ip("192.168.1.10"), ip(&format!("10.1.{}.{}", i * 4, i + 1))).build()
                })
                .collect();
            let mut bad = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for f in &frames {
                    let mark = run_tc(beside.tc(), f, 0).expect("test run").mark;
                    lookups.fetch_add(1, Ordering::Relaxed);
                    if mark != Wan::Two.mark() {
                        wrong.fetch_add(1, Ordering::Relaxed);
                        bad.push(mark);
                    }
                }
            }
            bad
        })
    };
    ready
        .recv_timeout(Duration::from_secs(30))
        .expect("the lookup loop started");
    let deadline = Instant::now() + Duration::from_secs(30);
    while lookups.load(Ordering::Relaxed) < 100 {
        if reader.is_finished() {
            match reader.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(bad) => panic!("the lookup loop ended before any sync: marks {bad:x?}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "the lookup loop made {} lookups in 30 s",
            lookups.load(Ordering::Relaxed)
        );
        std::thread::yield_now();
    }
    for cycle in 0..40 {
        let r1 = applied.apply(&mut dp, &cfg_b).expect("A -> B");
        let r2 = applied.apply(&mut dp, &cfg_a).expect("B -> A");
        if cycle == 0 {
            assert_eq!(r1.prefix_writes, 257, "256 additions and one removal");
            assert_eq!(r2.prefix_writes, 257);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let bad = reader.join().expect("reader thread");
    let n = lookups.load(Ordering::Relaxed);
    assert!(
        n > 2_000,
        "the lookup loop ran alongside the syncs ({n} lookups)"
    );
    assert_eq!(
        wrong.load(Ordering::Relaxed),
        0,
        "lookups that fell through during a sync: marks {bad:x?}"
    );
    kernel_matches_state(&dp);
}

#[test]
fn capacity_is_checked_before_the_first_write() {
    require_root();
    let work = Workdir::new("capacity");
    let sets = "[[set]]\nname = \"big\"\npolicy = \"via-wan2\"\nprefixes = [\"10.0.0.0/24\", \"10.0.1.0/24\", \"10.0.2.0/24\"]\n\
                [[set]]\nname = \"small\"\npolicy = \"via-wan1\"\nprefixes = [\"10.9.0.0/16\"]\n";
    let cfg = load(&work, sets);
    let mut dp = Dataplane::load().expect("load");
    let mut applied = Applied::new();
    applied.capacity = Some(Capacity {
        dst_v4: 3,
        ..Capacity::default()
    });
    let err = applied
        .apply(&mut dp, &cfg)
        .expect_err("4 prefixes do not fit 3");
    let msg = err.to_string();
    for needle in [
        "IPv4 destination sets would hold 4 prefixes",
        "capacity is 3",
        "general.capacity.dst_v4",
        "set big (3)",
        "set small (1)",
        "nothing was changed",
    ] {
        assert!(msg.contains(needle), "message lacks `{needle}`: {msg}");
    }
    assert_eq!(dp.maps().writes(), 0, "not a single write");
    assert!(dump(&dp).is_empty());
}

/// A set that shrinks gives its memory back: the record is made afresh when it is more than
/// twice the size it needs, so the kernel then holds what `steer check` computes for the
/// configuration.
#[test]
fn a_set_that_shrinks_gives_its_record_back() {
    require_root();
    let work = Workdir::new("shrink");
    work.write("lists/bypass.txt", &list((0..100_000).map(prefix24)));
    let mut dp = Dataplane::load().expect("load");
    let mut applied = Applied::new();
    let big = load(&work, BYPASS_FROM_LIST);
    applied.apply(&mut dp, &big).expect("first sync");
    let held = |dp: &Dataplane| dp.maps().range_bytes(PrefixMap::DstV4);
    assert_eq!(
        held(&dp),
        big.set_footprint().map(PrefixMap::DstV4).bytes,
        "a fresh set holds what check computes"
    );
    work.write("lists/bypass.txt", &list((0..300).map(prefix24)));
    let small = load(&work, BYPASS_FROM_LIST);
    applied.apply(&mut dp, &small).expect("shrinking sync");
    assert_eq!(
        held(&dp),
        small.set_footprint().map(PrefixMap::DstV4).bytes,
        "the shrunk set's record and table are sized to it"
    );
    kernel_matches_state(&dp);
}

/// A fresh dataplane synced to a list of 300 /24s (10.0.0.0/24 on).
fn synced_300_prefix_list(name: &str) -> (Workdir, Dataplane, Applied) {
    require_root();
    let work = Workdir::new(name);
    work.write("lists/bypass.txt", &list((0..300).map(prefix24)));
    let mut dp = Dataplane::load().expect("load");
    let mut applied = Applied::new();
    applied
        .apply(&mut dp, &load(&work, BYPASS_FROM_LIST))
        .expect("first sync");
    (work, dp, applied)
}

#[test]
fn a_write_failing_midway_restores_the_previous_state() {
    let (work, mut dp, mut applied) = synced_300_prefix_list("rollback");
    let kernel_before = dump(&dp);
    let generation_before = dp.maps().active_generation().unwrap();

    // The new list adds 200 prefixes and drops 100; the 50th addition fails.
    work.write("lists/bypass.txt", &list((100..500).map(prefix24)));
    let cfg = load(&work, BYPASS_FROM_LIST);
    let start = dp.maps().writes();
    dp.maps_mut().fail_writes_after(start + 49, 1);
    let err = applied.apply(&mut dp, &cfg).expect_err("injected failure");
    match &err {
        SyncError::RolledBack {
            source: DataplaneError::InjectedFault { .. },
            undone,
        } => assert!(*undone >= 49),
        other => panic!("expected a rollback, got {other}"),
    }
    assert!(
        err.to_string().contains("the previous state was restored"),
        "{err}"
    );
    assert_eq!(dump(&dp), kernel_before, "every prefix as before");
    assert_eq!(dp.prefixes(), &kernel_before, "the recorded state agrees");
    assert_eq!(
        dp.maps().active_generation().unwrap(),
        generation_before,
        "no flip"
    );

    // The same reload without the fault goes through completely.
    applied.apply(&mut dp, &cfg).expect("retry");
    kernel_matches_state(&dp);
    assert_eq!(dp.prefixes().len(), 400);
}

/// A change of a few prefixes is written in place (the mirror lets go of the set's entries
/// while it is); when one of its writes fails, the rollback gives each written prefix back
/// what it had, and the kernel and the mirror agree with the state before.
#[test]
fn a_few_writes_failing_are_put_back_prefix_by_prefix() {
    let (work, mut dp, mut applied) = synced_300_prefix_list("few-rollback");
    let kernel_before = dump(&dp);
    work.write("lists/bypass.txt", &list((0..303).map(prefix24)));
    let cfg = load(&work, BYPASS_FROM_LIST);
    let start = dp.maps().writes();
    dp.maps_mut().fail_writes_after(start + 1, 1);
    let err = applied.apply(&mut dp, &cfg).expect_err("injected failure");
    assert!(
        matches!(err, SyncError::RolledBack { .. }),
        "expected a rollback, got {err}"
    );
    assert_eq!(dump(&dp), kernel_before, "the first write was taken back");
    assert_eq!(dp.prefixes(), &kernel_before, "the mirror agrees");

    applied.apply(&mut dp, &cfg).expect("retry");
    kernel_matches_state(&dp);
    assert_eq!(dp.prefixes().len(), 303);
    // A few removals go in place too.
    work.write("lists/bypass.txt", &list((2..303).map(prefix24)));
    applied
        .apply(&mut dp, &load(&work, BYPASS_FROM_LIST))
        .expect("two removed");
    kernel_matches_state(&dp);
    assert_eq!(dp.prefixes().len(), 301);
}

/// A change to thousands of /16s gets a fresh range table; when that fails after the set's
/// record went to the kernel, the rollback brings the record (what `steer dump` and a restarted
/// daemon read) and the table back to the previous set, and packets are steered as before.
#[test]
fn a_fresh_range_table_failing_after_its_record_is_rolled_back_whole() {
    let (work, mut dp, mut applied) = synced_300_prefix_list("range-rollback");
    let kernel_before = dump(&dp);
    // 5,000 /24s in 5,000 /16s: more than are rewritten in place.
    let spread = (0..5000).map(|i| format!("{}.{}.7.0/24", 20 + i / 256, i % 256));
    work.write(
        "lists/bypass.txt",
        &list((0..300).map(prefix24).chain(spread)),
    );
    let cfg = load(&work, BYPASS_FROM_LIST);
    dp.maps_mut().fail_next_range_table(Direction::Dst);
    let err = applied.apply(&mut dp, &cfg).expect_err("injected failure");
    assert!(
        matches!(err, SyncError::RolledBack { .. }),
        "expected a rollback, got {err}"
    );
    assert_eq!(dump(&dp), kernel_before, "the kernel's record as before");
    kernel_matches_state(&dp);
    let classify = |dp: &Dataplane, dst: &str| {
        run_tc(dp.tc(), &Frame::udp(ip("192.168.1.10"), ip(dst)).build(), 0)
            .expect("test run")
            .mark
    };
    assert_eq!(classify(&dp, "10.0.5.9"), Wan::Two.mark(), "a kept prefix");
    assert_eq!(classify(&dp, "21.3.7.9"), Wan::One.mark(), "not added");

    applied.apply(&mut dp, &cfg).expect("retry");
    kernel_matches_state(&dp);
    assert_eq!(
        classify(&dp, "21.3.7.9"),
        Wan::Two.mark(),
        "added on the retry"
    );
}

#[test]
fn a_removal_failing_after_the_flip_is_completed_later() {
    require_root();
    let work = Workdir::new("complete");
    let with = format!(
        "{BYPASS_FROM_LIST}[[set]]\nname = \"old\"\npolicy = \"via-wan2\"\nprefixes = [\"172.16.0.0/12\"]\n"
    );
    work.write("lists/bypass.txt", &list((0..10).map(prefix24)));
    let mut dp = Dataplane::load().expect("load");
    let mut applied = Applied::new();
    applied
        .apply(&mut dp, &load(&work, &with))
        .expect("first sync");
    // Drop set `old` and five list lines: removals only; fail the first removal and its retry.
    work.write("lists/bypass.txt", &list((0..5).map(prefix24)));
    let cfg = load(&work, BYPASS_FROM_LIST);
    let start = dp.maps().writes();
    // The first removal fails, and so does its retry.
    dp.maps_mut().fail_writes_after(start, 2);
    let err = applied.apply(&mut dp, &cfg).expect_err("removals fail");
    assert!(
        matches!(err, SyncError::Incomplete { left: 6, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("the new state is live"), "{err}");
    // Until then the leftover prefixes keep their old verdict (set `old` still stamps wan2).
    let mark = |dp: &Dataplane, dst: &str| {
        run_tc(dp.tc(), &Frame::udp(ip("192.168.1.2"), ip(dst)).build(), 0)
            .unwrap()
            .mark
    };
    assert_eq!(mark(&dp, "172.16.1.1"), Wan::Two.mark());
    // The next sync completes it.
    let report = applied.apply(&mut dp, &cfg).expect("completes");
    assert_eq!(report.prefix_writes, 6);
    kernel_matches_state(&dp);
    assert_eq!(
        mark(&dp, "172.16.1.1"),
        Wan::One.mark(),
        "now the default rule"
    );
    let live = dp.maps().active_generation().unwrap();
    for generation in 0..GENERATIONS {
        let unused = (0..MAX_RULES)
            .filter(|r| dp.maps().rule_info(generation, *r).unwrap().kind == rule_kind::UNUSED)
            .count();
        // Generations no flip used yet name nothing (standbys are the controller's).
        let allowed = if generation == live {
            vec![MAX_RULES - 2]
        } else {
            vec![MAX_RULES - 2, MAX_RULES]
        };
        assert!(
            allowed.contains(&(unused as u32)),
            "generation {generation} (live {live}) names only default and bypass ({unused} unused)"
        );
    }
}

#[test]
fn a_policy_change_flips_once_and_writes_no_prefix() {
    require_root();
    let work = Workdir::new("flip");
    work.write("lists/bypass.txt", &list((0..1000).map(prefix24)));
    let mut dp = Dataplane::load().expect("load");
    let mut applied = Applied::new();
    applied
        .apply(&mut dp, &load(&work, BYPASS_FROM_LIST))
        .expect("first sync");
    let mark = |dp: &Dataplane| {
        run_tc(
            dp.tc(),
            &Frame::udp(ip("192.168.1.2"), ip("10.2.3.4")).build(),
            0,
        )
        .unwrap()
        .mark
    };
    assert_eq!(mark(&dp), Wan::Two.mark());
    let to_wan1 = BYPASS_FROM_LIST.replace("via-wan2", "via-wan1");
    let gen_before = dp.maps().active_generation().unwrap();
    let report = applied
        .apply(&mut dp, &load(&work, &to_wan1))
        .expect("policy change");
    assert_eq!(report.prefix_writes, 0);
    assert_eq!(report.flipped, Some((gen_before, 1 - gen_before)));
    assert_eq!(mark(&dp), Wan::One.mark());
    let live = dp.maps().policy(1 - gen_before, Family::V4, 1).unwrap();
    assert_eq!((live.action, live.mark), (action::MARK, Wan::One.mark()));
}

#[test]
fn reordering_or_renaming_nothing_keeps_rule_ids_and_writes_nothing() {
    require_root();
    let work = Workdir::new("ids");
    let sets = "[[set]]\nname = \"a\"\npolicy = \"via-wan2\"\nprefixes = [\"10.0.0.0/8\"]\n\
                [[set]]\nname = \"b\"\npolicy = \"via-wan1\"\nmatch = \"src\"\nprefixes = [\"192.168.1.0/28\", \"fd00::/64\"]\n";
    let swapped = "[[set]]\nname = \"b\"\npolicy = \"via-wan1\"\nmatch = \"src\"\nprefixes = [\"fd00::/64\", \"192.168.1.0/28\"]\n\
                   [[set]]\nname = \"a\"\npolicy = \"via-wan2\"\nprefixes = [\"10.0.0.0/8\"]\n";
    let mut dp = Dataplane::load().expect("load");
    let mut applied = Applied::new();
    applied.apply(&mut dp, &load(&work, sets)).expect("first");
    let ids = applied.rule_ids.clone();
    let r = applied
        .apply(&mut dp, &load(&work, swapped))
        .expect("swapped");
    assert_eq!(applied.rule_ids, ids);
    assert_eq!((r.prefix_writes, r.policy_writes), (0, 0));
}
