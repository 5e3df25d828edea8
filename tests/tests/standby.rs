//! Precomputed failover against the real kernel maps and the real classifier: each standby
//! generation the dataplane keeps for a single-WAN failure gives packets exactly the verdicts
//! of the table the normal path writes for that state; flipping to it is one word written;
//! nothing a kept generation reads is rewritten; a standby written to since it was prepared is
//! never flipped to; a failed build leaves the live generation alone.

use std::collections::BTreeMap;

use steer::{
    config::Config,
    controller::{Desired, desired},
    dataplane::{Dataplane, DataplaneError, Standby, run::run_tc},
    model::{Family, PolicyTable},
    packet::{Frame, Transport},
};
use steer_common::GENERATIONS;
use steer_tests::{classifier::ip, daemon::Workdir, require_root};

/// Three WANs; a weighted policy over all three (the default), a wan3-only policy with an
/// unreachable last resort, a wan2-first policy; sets on both families.
fn config(work: &Workdir) -> Config {
    let wan = |n: u32| {
        format!(
            "[[wan]]\nname = \"wan{n}\"\ninterface = \"sbw{n}\"\nmark = {mark:#x}\ntable = {table}\n\
             gateway = \"10.9.{n}.1\"\ngateway6 = \"fd00:9:{n}::1\"\n[wan.track]\n\
             targets = [\"192.0.2.{n}\"]\n",
            mark = n << 8,
            table = 100 + n,
        )
    };
    let text = format!(
        r#"
[general]
lan = ["lan0"]
{pins}
{w1}{w2}{w3}
[[policy]]
name = "weighted"
members = [{{ wan = "wan1", weight = 3 }}, {{ wan = "wan2" }}, {{ wan = "wan3", weight = 2 }}]

[[policy]]
name = "wan3-only"
members = [{{ wan = "wan3" }}]
last_resort = "unreachable"

[[policy]]
name = "wan2-first"
members = [{{ wan = "wan2" }}, {{ wan = "wan1", metric = 2 }}]

[default]
policy = "weighted"

[[set]]
name = "three"
policy = "wan3-only"
prefixes = ["203.0.113.0/24", "2001:db8:3::/48"]

[[set]]
name = "two"
policy = "wan2-first"
prefixes = ["198.51.100.0/24", "2001:db8:2::/48"]
{control}"#,
        pins = work.private_paths(),
        w1 = wan(1),
        w2 = wan(2),
        w3 = wan(3),
        control = work.control_section()
    );
    work.load_config(&text)
}

/// A single-WAN failure: the WAN and the families it loses.
type Failure = (&'static str, Vec<Family>);

fn failures() -> Vec<Failure> {
    let mut out = Vec::new();
    for wan in ["wan1", "wan2", "wan3"] {
        out.push((wan, Family::ALL.to_vec()));
        out.push((wan, vec![Family::V4]));
        out.push((wan, vec![Family::V6]));
    }
    out
}

/// The table the normal path computes for the WANs with `failure` down.
fn table_for(cfg: &Config, d: &Desired, failure: &Failure) -> PolicyTable {
    desired::policy_table(cfg, &d.rules, &d.wan_slots, |w, f| {
        !(w == failure.0 && failure.1.contains(&f))
    })
    .0
}

/// Frames to every set and the default on both families, many flows each (balanced rules
/// spread them over their slots).
fn frames() -> Vec<Vec<u8>> {
    let pairs = [
        ("192.168.1.2", "203.0.113.5"),
        ("192.168.1.2", "198.51.100.5"),
        ("192.168.1.2", "93.184.216.34"),
        ("fd00::2", "2001:db8:3::5"),
        ("fd00::2", "2001:db8:2::5"),
        ("fd00::2", "2606:4700::1111"),
    ];
    let mut out = Vec::new();
    for (src, dst) in pairs {
        for port in 0..64u16 {
            let frame = Frame::udp(ip(src), ip(dst)).with_transport(Transport::Udp {
                sport: 30000 + port * 7,
                dport: 443,
            });
            out.push(frame.build());
        }
    }
    out
}

/// The marks the live maps give `frames`.
fn verdicts(dp: &Dataplane, frames: &[Vec<u8>]) -> Vec<u32> {
    frames
        .iter()
        .map(|f| run_tc(dp.tc(), f, 0).expect("test run").mark)
        .collect()
}

fn loaded(cfg: &Config) -> (Dataplane, Desired) {
    let mut dp = Dataplane::load().expect("load");
    let d = desired(cfg, &BTreeMap::new(), &BTreeMap::new(), |_, _| true);
    dp.sync(&d.contents, None).expect("first sync");
    (dp, d)
}

#[test]
fn each_standby_gives_the_verdicts_of_the_normally_written_table_and_flips_with_one_write() {
    require_root();
    let work = Workdir::new("standby-verdicts");
    let cfg = config(&work);
    let (mut dp, d) = loaded(&cfg);
    // The reference: the normal path (write the table, then flip) on maps of its own.
    let (mut reference, _) = loaded(&cfg);
    let frames = frames();
    let base = d.contents.table.clone();
    let base_verdicts = verdicts(&dp, &frames);
    let mut flipped = 0;
    for failure in failures() {
        let want = table_for(&cfg, &d, &failure);
        assert_ne!(
            want, base,
            "{failure:?} changes some policy in this configuration"
        );
        // As many standbys as fit, this failure's first: the others share the pool.
        dp.drop_standbys();
        let mine = dp.prepare_standby(&want).expect("standby");
        let mut kept = vec![(mine, want.clone())];
        for other in failures() {
            let table = table_for(&cfg, &d, &other);
            match dp.prepare_standby(&table) {
                Ok(s) => kept.push((s, table)),
                Err(DataplaneError::NoFreeGeneration) => break,
                Err(e) => panic!("{other:?}: {e}"),
            }
        }
        assert_eq!(
            kept.len() as u32,
            GENERATIONS - 2,
            "every generation but the live and the previous one holds a standby"
        );
        // Nothing a kept generation reads was rewritten by the later builds.
        let live = dp.maps().active_generation().unwrap();
        assert_eq!(dp.maps().policy_table(live).unwrap(), base);
        for (s, table) in &kept {
            assert_ne!(s.generation, live);
            assert_eq!(&dp.maps().policy_table(s.generation).unwrap(), table);
        }
        assert_eq!(
            verdicts(&dp, &frames),
            base_verdicts,
            "standbys are not read"
        );

        assert!(
            dp.maps().active_is_mapped(),
            "the flip is a store, no syscall"
        );
        let before = dp.maps().writes();
        let (from, to) = dp.flip_to_standby(mine).expect("flip");
        assert_eq!((from, to), (live, mine.generation));
        assert_eq!(dp.maps().writes() - before, 1, "one word: ACTIVE");
        let got = verdicts(&dp, &frames);

        reference.flip_policy(&want).expect("write then flip");
        assert_eq!(
            got,
            verdicts(&reference, &frames),
            "{failure:?}: the standby and the normally written table agree on every packet"
        );
        assert_ne!(got, base_verdicts, "{failure:?} moved some packet");
        flipped += 1;

        // Back to the state with every WAN up, the normal way, on both.
        dp.flip_policy(&base).expect("back");
        reference.flip_policy(&base).expect("back");
        assert_eq!(verdicts(&dp, &frames), base_verdicts);
    }
    assert_eq!(flipped, failures().len());
}

#[test]
fn the_verdicts_cover_weights_last_resort_and_both_families() {
    require_root();
    let work = Workdir::new("standby-cases");
    let cfg = config(&work);
    let (mut dp, d) = loaded(&cfg);
    let frames = frames();
    let wan3_down = table_for(&cfg, &d, &("wan3", Family::ALL.to_vec()));
    let s = dp.prepare_standby(&wan3_down).expect("standby");
    dp.flip_to_standby(s).expect("flip");
    let got = verdicts(&dp, &frames);
    let (unreachable, _) = steer::model::last_resort_marks(cfg.general.mark_mask);
    // 64 flows per destination, in the order of `frames`.
    let of = |i: usize| &got[i * 64..(i + 1) * 64];
    for (i, family) in [(0, "v4"), (3, "v6")] {
        assert!(
            of(i).iter().all(|m| *m == unreachable),
            "{family}: the wan3-only rule, all its WANs down, is unreachable"
        );
        assert!(
            of(i + 1).iter().all(|m| *m == 0x200),
            "{family}: wan2-first"
        );
        let default = of(i + 2);
        assert!(
            default.iter().all(|m| *m == 0x100 || *m == 0x200),
            "{family}: weighted over wan1 and wan2 only: {default:x?}"
        );
        let wan1 = default.iter().filter(|m| **m == 0x100).count();
        assert!(
            wan1 > 64 / 2 && wan1 < 64,
            "{family}: weight 3 against 1: {wan1} of 64 flows on wan1"
        );
    }
}

#[test]
fn a_standby_written_since_or_dropped_is_never_flipped_to() {
    require_root();
    let work = Workdir::new("standby-stale");
    let cfg = config(&work);
    let (mut dp, d) = loaded(&cfg);
    let base = d.contents.table.clone();
    let wan1_down = table_for(&cfg, &d, &("wan1", Family::ALL.to_vec()));
    let s = dp.prepare_standby(&wan1_down).expect("standby");
    // A write-then-flip (a failover no standby covered) drops every standby.
    let wan2_down = table_for(&cfg, &d, &("wan2", Family::ALL.to_vec()));
    dp.flip_policy(&wan2_down).expect("normal failover");
    let live = dp.maps().active_generation().unwrap();
    let before = dp.maps().writes();
    assert!(matches!(
        dp.flip_to_standby(s),
        Err(DataplaneError::StandbyNotReady(g)) if g == s.generation
    ));
    assert_eq!(dp.maps().writes(), before, "not a single write");
    assert_eq!(dp.maps().active_generation().unwrap(), live);
    assert_eq!(dp.maps().policy_table(live).unwrap(), wan2_down);
    // A reload (a sync) drops them too.
    let s = dp.prepare_standby(&base).expect("standby");
    dp.sync(&d.contents, None).expect("reload");
    assert!(dp.flip_to_standby(s).is_err());
}

#[test]
fn a_failed_standby_build_leaves_the_live_generation_alone() {
    require_root();
    let work = Workdir::new("standby-fault");
    let cfg = config(&work);
    let (mut dp, d) = loaded(&cfg);
    let frames = frames();
    let base_verdicts = verdicts(&dp, &frames);
    let live = dp.maps().active_generation().unwrap();
    let held = dp.maps().policy_table(live).unwrap();
    // Each build goes to a generation never written (the earlier standbys stay ready), so
    // every one has writes to fail.
    let mut ready = Vec::new();
    for (after, failure) in [0u64, 1, 3, 10].into_iter().zip(failures()) {
        let table = table_for(&cfg, &d, &failure);
        let start = dp.maps().writes();
        dp.maps_mut().fail_writes_after(start + after, 1);
        let failed = dp.prepare_standby(&table);
        assert!(
            matches!(failed, Err(DataplaneError::InjectedFault { .. })),
            "{failure:?}, fault after {after} writes: {failed:?}"
        );
        assert_eq!(dp.maps().active_generation().unwrap(), live);
        assert_eq!(dp.maps().policy_table(live).unwrap(), held);
        assert_eq!(verdicts(&dp, &frames), base_verdicts);
        let generations: Vec<u32> = ready
            .iter()
            .map(|(s, _): &(Standby, _)| s.generation)
            .collect();
        assert_eq!(
            dp.maps().standby_generations(),
            generations,
            "the failed one is not ready"
        );
        for (s, t) in &ready {
            assert_eq!(
                &dp.maps().policy_table(s.generation).unwrap(),
                t,
                "kept standbys intact"
            );
        }
        // The next build works and its standby is right.
        let s = dp.prepare_standby(&table).expect("standby");
        assert_eq!(dp.maps().policy_table(s.generation).unwrap(), table);
        ready.push((s, table));
    }
}

/// The standbys `steer status` lists.
fn standbys(st: &serde_json::Value) -> Vec<String> {
    st["standbys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_str().map(str::to_owned))
        .collect()
}

fn has_standby(st: &serde_json::Value, wan: &str) -> bool {
    standbys(st)
        .iter()
        .any(|l| l.starts_with(&format!("{wan} down (")))
}

/// The daemon end to end: a covered failure is one word written before anything else, the
/// standbys are rebuilt for the state after it (a second failure is covered too), and a
/// reload rebuilds them for the new configuration.
#[test]
fn the_daemon_flips_a_standby_first_and_rebuilds_them_after_each_change_and_reload() {
    use std::time::Duration;

    use steer_tests::{
        lab::{Lab, udp_via},
        scenario::{Options, Scenario, config_text},
    };
    const N: usize = 20;
    let settle = Duration::from_secs(5);
    // Probes never take a WAN down on their own here (100 failed rounds).
    let options = Options {
        down_after: 100,
        ..Options::default()
    };
    let s = Scenario::start("standby-daemon", &options);
    let (a, b) = (Lab::SERVER_A.into(), Lab::SERVER_B.into());
    s.wait_until("standbys for both WANs", settle, |st| {
        has_standby(st, "wan1") && has_standby(st, "wan2")
    });
    let text = s.steer(&["status"]);
    assert!(text.contains("precomputed failover: wan1 down ("), "{text}");
    assert_eq!(udp_via(&s.lab, a, 6301, N), [N, 0]);

    let out = s.steer(&["wan", "wan1", "down"]);
    assert!(
        out.contains("wan1 down (set by hand)")
            && out.contains("(precomputed standby, 1 map writes, generation"),
        "the flip is the only write before the rest: {out}"
    );
    assert_eq!(udp_via(&s.lab, a, 6302, N), [0, N], "default moved to wan2");
    // Rebuilt for wan1 down: wan2's failure is covered, wan1's (already down) is not.
    s.wait_until("standbys rebuilt for wan1 down", settle, |st| {
        has_standby(st, "wan2") && !has_standby(st, "wan1")
    });
    let out = s.steer(&["wan", "wan2", "down"]);
    assert!(
        out.contains("wan2 down (set by hand)")
            && out.contains("(precomputed standby, 1 map writes, generation"),
        "the second failure uses a rebuilt standby: {out}"
    );
    assert_eq!(
        udp_via(&s.lab, a, 6303, N),
        [0, 0],
        "both down: the default policy's last resort (unreachable)"
    );
    // Recoveries are written then flipped (no standby is kept for them).
    for wan in ["wan1", "wan2"] {
        let out = s.steer(&["wan", wan, "auto"]);
        assert!(
            out.contains(&format!("{wan} up")) && !out.contains("precomputed"),
            "{out}"
        );
    }
    assert_eq!(udp_via(&s.lab, b, 6304, N), [0, N], "bypass prefers wan2");

    // A reload that sends the bypass set to wan1 first: the standbys follow it.
    let text = config_text(&s.work, &options).replace(
        "name = \"bypass\"\npolicy = \"wan2-first\"",
        "name = \"bypass\"\npolicy = \"wan1-first\"",
    );
    assert!(text.contains("policy = \"wan1-first\"\nprefixes"), "{text}");
    s.work.write("steer.toml", &text);
    s.steer(&["reload"]);
    assert_eq!(
        udp_via(&s.lab, b, 6305, N),
        [N, 0],
        "bypass now prefers wan1"
    );
    s.wait_until("standbys rebuilt after the reload", settle, |st| {
        has_standby(st, "wan1") && has_standby(st, "wan2")
    });
    let out = s.steer(&["wan", "wan1", "down"]);
    assert!(
        out.contains("(precomputed standby, 1 map writes, generation"),
        "a standby of the new configuration (a stale one would not match): {out}"
    );
    assert_eq!(udp_via(&s.lab, b, 6306, N), [0, N], "bypass moved to wan2");
    assert_eq!(udp_via(&s.lab, a, 6307, N), [0, N], "default moved to wan2");
    let st = s.status();
    assert!(
        st["failover_times"]["switch"]["count"].as_u64() >= Some(4),
        "{st}"
    );
    // For the record (`--nocapture`): decision -> kernel of each change.
    for line in s.daemon.log_text().lines() {
        if let Some((_, switched)) = line.split_once("switched in ") {
            eprintln!("switched in {switched}");
        }
    }
}

/// A daemon of the previous layout (two generations: POLICY of 2 x 2 x 256 entries, LB of a
/// slot table per rule) left its maps pinned: this steer refuses to adopt them, saying which
/// map, what differs and what to do, and creates nothing.
#[test]
fn maps_pinned_with_the_two_generation_layout_are_refused_with_the_reason() {
    use steer_common::{FAMILIES, MAX_RULES, PolicyEntry};
    require_root();
    let work = Workdir::new("standby-upgrade");
    std::fs::create_dir_all(work.pin_dir.join("maps")).unwrap();
    let old =
        aya::maps::Array::<aya::maps::MapData, PolicyEntry>::create(2 * FAMILIES * MAX_RULES, 0)
            .expect("create a map");
    old.pin(work.pin_dir.join("maps/POLICY")).expect("pin it");
    let err = Dataplane::open_pinned(&work.pin_dir).expect_err("must not adopt it");
    let msg = err.to_string();
    let needs = format!(
        "capacity (max entries) is {}, this steer needs {}",
        2 * FAMILIES * MAX_RULES,
        GENERATIONS * FAMILIES * MAX_RULES
    );
    assert!(
        msg.contains("maps/POLICY") && msg.contains(&needs) && msg.contains("steer stop"),
        "{msg}"
    );
    assert!(!work.pin_dir.join("maps/LB").exists());
    assert!(!work.pin_dir.join("progs/steer_tc").exists());
}
