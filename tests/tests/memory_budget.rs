//! `general.max_memory` with the real daemon in the namespace lab: sets whose kernel memory
//! would not fit are refused — at start, at a reload (the list path and the full path) and by a
//! runtime `steer set add` — with the numbers, and the sets in force stay as they were, read
//! back from the pinned maps. Raising the limit lets the same list in. A million prefixes load
//! and reload inside the systemd unit's `MemoryMax=`, a hundred times in a row; under a memory
//! cgroup limit (what `MemoryMax=` sets) steer refuses a start and changes that would not fit,
//! and lists too long to be read before it parses them, at start and at a reload; the kernel
//! kills nothing, and a start refused so leaves no pin behind, or an earlier daemon's exactly
//! as they were.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use steer::{
    dataplane::Maps,
    memory_limit::{BASE_BYTES, BYTES_PER_PREFIX, START_BYTES, need},
    model::{Direction, PrefixMap, footprint::Bytes},
    prefix::Prefix,
};
use steer_tests::{
    bench::memory::{MemCgroup, list_text, real_mix, write_aged},
    daemon::{Daemon, Workdir, steer_in},
    lab::Lab,
    rng::Rng,
    scenario::lab_wans,
};

/// One list-only set `big` on wan2, under `max_memory`.
fn config(work: &Workdir, max_memory: &str) -> String {
    format!(
        r#"
[general]
lan = ["lan0"]
max_memory = "{max_memory}"
{pins}
{wans}
[[policy]]
name = "wan2-first"
members = [{{ wan = "wan2", metric = 1 }}, {{ wan = "wan1", metric = 2 }}]

[[set]]
name = "big"
policy = "wan2-first"
files = ["lists/big.txt"]
{control}"#,
        pins = work.private_paths(),
        wans = lab_wans("targets = [\"192.0.2.1\"]", "targets = [\"192.0.2.2\"]"),
        control = work.control_section()
    )
}

/// 2,000 /24s: a table of three blocks with one spare and a record of one, 1.25 MiB, twice
/// that at a reload's peak.
fn small_list() -> String {
    (0..2000u32)
        .map(|i| format!("10.{}.{}.0/24\n", i / 256, i % 256))
        .collect()
}

/// 40,000 host routes a free address apart (none merge) in `first_octet`.0.0.0/15: 80,000
/// ranges, a record of two blocks: 1.75 MiB, 3.5 MiB at the peak.
fn host_routes(first_octet: u8) -> String {
    (0..40_000u32)
        .map(|i| {
            let a = 2 * i;
            format!("{first_octet}.{}.{}.{}\n", a >> 16, (a >> 8) & 255, a & 255)
        })
        .collect()
}

fn kernel(work: &Workdir) -> BTreeSet<Prefix> {
    let maps = Maps::from_pins(&work.pin_dir).expect("pinned maps");
    maps.prefixes(PrefixMap::DstV4)
        .expect("read map")
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

/// The prefix the kernel's set matches for `addr`, if any.
fn matched(work: &Workdir, addr: &str) -> Option<Prefix> {
    let maps = Maps::from_pins(&work.pin_dir).expect("pinned maps");
    let hits = maps
        .containing(Direction::Dst, addr.parse().unwrap())
        .unwrap();
    hits.first().map(|(p, _)| *p)
}

/// What `steer status` says the sets take in the kernel, against what `steer check` computes
/// for the configuration: the same bytes (the arrays are sized by the functions the check
/// uses).
fn assert_status_memory_is_the_checked_one(work: &Workdir) {
    let status: serde_json::Value =
        serde_json::from_str(&work.steer_ok(&["status", "--json"])).expect("status json");
    let held = status["set_memory"]["bytes"]
        .as_u64()
        .expect("set_memory.bytes");
    let config = steer::config::load(&work.config()).expect("the running configuration");
    let computed = config.set_footprint().in_force();
    assert_eq!(held, computed, "status against check");
    let shown = work.steer_ok(&["status"]);
    assert!(
        shown.contains("kernel memory of the sets: ") && shown.contains("(max_memory "),
        "{shown}"
    );
}

fn settle() {
    std::thread::sleep(Duration::from_millis(1100));
}

/// The refusal names the limit, what the change needs and each map's share.
fn assert_refused_with_numbers(err: &str, need: &str) {
    assert!(err.contains("general.max_memory"), "{err}");
    assert!(err.contains("3.0 MiB"), "the limit: {err}");
    assert!(
        err.contains(&format!("need {need} of kernel memory")),
        "what the sets need: {err}"
    );
    assert!(
        err.contains("IPv4 destination: 40000 prefixes, 1.8 MiB"),
        "the share of each map: {err}"
    );
}

#[test]
fn sets_over_max_memory_are_refused_at_reload_and_by_set_add_and_the_old_sets_stay() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("mem-reload");
    work.write("lists/big.txt", &small_list());
    work.write("steer.toml", &config(&work, "3M"));
    let _daemon = Daemon::start(&lab.router, &work);
    let before = kernel(&work);
    assert_eq!(before.len(), 2000);
    let old = steer::prefix::parse_prefix("10.1.2.0/24", false).unwrap();
    assert_eq!(matched(&work, "10.1.2.3"), Some(old));
    assert_status_memory_is_the_checked_one(&work);

    // The list alone changed: the list path, refused before a write. It counts what the
    // kernel holds (1.25 MiB) and the old and new prefixes together (2 MiB: the additions go
    // in before the removals), built beside it.
    work.write("lists/big.txt", &host_routes(11));
    settle();
    let (ok, _, err) = work.steer(&["reload"]);
    assert!(!ok, "an over-budget list must be refused");
    assert_refused_with_numbers(&err, "3.2 MiB");
    assert!(err.contains("the kernel holds 1.2 MiB"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(kernel(&work), before, "nothing of the list was loaded");
    assert_eq!(matched(&work, "10.1.2.3"), Some(old), "the old set answers");

    // The configuration changed too: the full path refuses it where the limit is written.
    work.write("steer.toml", &format!("# edited\n{}", config(&work, "3M")));
    settle();
    let (ok, _, err) = work.steer(&["reload"]);
    assert!(!ok);
    // The configuration's own need: the new set, and its table rebuilt beside it.
    assert_refused_with_numbers(&err, "3.5 MiB");
    assert!(err.contains("steer.toml:"), "located in the file: {err}");
    assert_eq!(kernel(&work), before);

    // A runtime edit that would not fit is refused the same way.
    work.write("lists/big.txt", &small_list());
    work.write("steer.toml", &config(&work, "3M"));
    settle();
    work.steer_ok(&["reload"]);
    let extra = work.write("extra.txt", &host_routes(11));
    let extra = extra.to_str().unwrap();
    let (ok, _, err) = work.steer(&["set", "big", "add", "--file", extra]);
    assert!(!ok, "an over-budget runtime edit must be refused");
    assert!(err.contains("general.max_memory"), "{err}");
    assert_eq!(kernel(&work), before, "nothing of the edit was loaded");

    // Room for it: the same list goes in.
    work.write("lists/big.txt", &host_routes(10));
    work.write("steer.toml", &config(&work, "4M"));
    settle();
    work.steer_ok(&["reload"]);
    assert_eq!(kernel(&work).len(), 40_000);
    assert_status_memory_is_the_checked_one(&work);
    assert_eq!(matched(&work, "10.1.2.3"), None);
    assert!(matched(&work, "10.0.0.2").is_some());
}

#[test]
fn a_daemon_whose_sets_do_not_fit_does_not_start_and_loads_nothing() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("mem-start");
    work.write("lists/big.txt", &host_routes(10));
    work.write("steer.toml", &config(&work, "3M"));
    let mut daemon = Daemon::spawn(&work, steer_in(&lab.router));
    let status = daemon
        .wait_exit(Duration::from_secs(20))
        .expect("steer run refuses and exits");
    assert!(!status.success());
    assert_refused_with_numbers(&daemon.log_text(), "3.5 MiB");
    assert!(
        Maps::from_pins(&work.pin_dir).is_err(),
        "no map was pinned: nothing was loaded"
    );
}

/// A memory cgroup of its own for the daemon, limited to `bytes`.
fn memory_cgroup(role: &str, bytes: u64) -> MemCgroup {
    let cg = MemCgroup::new(role).expect("a memory cgroup (v2, or v1 with kmem)");
    cg.limit(bytes);
    cg
}

/// The unit's `MemoryMax=`, in bytes.
fn unit_memory_max() -> u64 {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/systemd/steer.service"),
    )
    .expect("the unit");
    let value = unit
        .lines()
        .find_map(|l| l.strip_prefix("MemoryMax="))
        .expect("the unit sets MemoryMax=");
    let mib: u64 = value
        .strip_suffix('M')
        .and_then(|n| n.parse().ok())
        .expect("MemoryMax= in M");
    mib << 20
}

/// A million IPv4 prefixes of a real-looking mix load inside the unit's `MemoryMax=`: the
/// daemon and its maps in one memory cgroup with that limit, as systemd would run them. The
/// set answers, a reload of a changed list and a full reload go through, and the kernel kills
/// nothing.
#[test]
fn a_million_prefixes_load_and_reload_inside_the_units_memory_limit() {
    steer_tests::require_root();
    let limit = unit_memory_max();
    let cg = memory_cgroup("unit-limit", limit);
    let lab = Lab::new();
    let work = Workdir::new("mem-limit");
    let mut rng = Rng::new(0x5eed_0018);
    let mut set = real_mix(&mut rng, 1_000_000, true);
    work.write("lists/big.txt", &list_text(&set));
    let toml = config(&work, "64M");
    work.write("steer.toml", &toml);
    settle();
    let mut cmd = steer_in(&lab.router);
    cg.enter_on_exec(&mut cmd);
    let daemon = Daemon::spawn(&work, cmd);
    daemon.wait_log("prefix writes", Duration::from_secs(300));
    let listed = set[123_456];
    let inside = match listed {
        Prefix::V4 { addr, .. } => addr.to_string(),
        Prefix::V6 { .. } => unreachable!("an IPv4 mix"),
    };
    assert_eq!(matched(&work, &inside), Some(listed));
    // A reload of the list with 1% of its lines replaced, then one of the configuration too.
    for p in set.iter_mut().step_by(100) {
        if let Prefix::V4 { addr, len } = *p {
            let moved = u32::from(addr) ^ 0x8000_0000;
            *p =
                Prefix::truncating(std::net::Ipv4Addr::from(moved).into(), u32::from(len)).unwrap();
        }
    }
    work.write("lists/big.txt", &list_text(&set));
    settle();
    let out = work.steer_ok(&["reload"]);
    assert!(out.contains("only a list of set big changed"), "{out}");
    work.write("steer.toml", &format!("{toml}# edited\n"));
    settle();
    work.steer_ok(&["reload"]);
    assert_eq!(
        kernel(&work).len(),
        set.iter().collect::<BTreeSet<_>>().len()
    );
    // Shrinking the list to a tenth (the list path), growing it back, then dropping the set
    // (the full path) removes 900k and a million prefixes: removals must fit as additions do.
    for list in [&set[..100_000], &set[..]] {
        work.write("lists/big.txt", &list_text(list));
        settle();
        let out = work.steer_ok(&["reload"]);
        assert!(out.contains("only a list of set big changed"), "{out}");
        assert_eq!(
            kernel(&work).len(),
            list.iter().collect::<BTreeSet<_>>().len()
        );
    }
    let before_set = toml
        .split("[[set]]")
        .next()
        .expect("the text before the set");
    let without_set = format!("{before_set}{}", work.control_section());
    work.write("steer.toml", &without_set);
    settle();
    work.steer_ok(&["reload"]);
    assert!(kernel(&work).is_empty(), "the set is gone");
    assert_eq!(cg.oom_kills(), Some(0), "nothing was killed for memory");
    let peak = cg.total_peak().expect("the cgroup's peak");
    assert!(peak <= limit, "{peak} over {limit}");
    println!(
        "1M IPv4 under MemoryMax={} MiB: the cgroup peaked at {:.1} MB",
        limit >> 20,
        peak as f64 / 1e6
    );
    drop(daemon);
}

/// `count` host routes a free address apart in 10.0.0.0/8 and up (none merge).
fn spread_hosts(count: u32) -> String {
    (0..count)
        .map(|i| {
            let a = (10u32 << 24) + 2 * i;
            format!("{}\n", std::net::Ipv4Addr::from(a))
        })
        .collect()
}

/// Under a memory cgroup too small for steer to start, `steer run` refuses before it reads a
/// list, names the limit and where it comes from, and loads nothing; the kernel kills nothing.
#[test]
fn a_daemon_in_a_cgroup_too_small_to_start_refuses_and_is_not_killed() {
    steer_tests::require_root();
    let cg = memory_cgroup("too-small", 32 << 20);
    let lab = Lab::new();
    let work = Workdir::new("mem-32m");
    work.write("lists/big.txt", &spread_hosts(1_000_000));
    work.write("steer.toml", &config(&work, "1G"));
    let log = start_refused(&lab, &work, &cg);
    assert!(
        log.contains("more than its memory limit of 32.0 MiB"),
        "the limit: {log}"
    );
    assert!(log.contains("needs about 48.0 MiB to start"), "{log}");
    assert!(
        log.contains("memory.max") || log.contains("memory.limit_in_bytes"),
        "where the limit comes from: {log}"
    );
    assert!(log.contains("nothing was loaded"), "{log}");
    assert_eq!(cg.oom_kills(), Some(0), "refused, not killed");
    assert!(
        Maps::from_pins(&work.pin_dir).is_err(),
        "no map was pinned: nothing was loaded"
    );
}

/// `count` IPv6 host routes a free /112 apart in 2001:db8::/32: 86 bytes of kernel memory a
/// prefix against 19 of text, so the sets' count refuses what reading the list lets in.
fn v6_hosts(count: u32) -> String {
    let base = u128::from(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0));
    (0..count)
        .map(|i| {
            format!(
                "{}\n",
                std::net::Ipv6Addr::from(base + (u128::from(i) << 17))
            )
        })
        .collect()
}

/// A memory limit that holds the daemon's start but not `work`'s sets, `prefixes` of them:
/// 2 MiB below what a start loading them needs at its peak (the kernel memory `steer check`
/// computes for them, built from nothing), and well above what reading their list takes (its
/// text and a prefix a line), so that the sets' count refuses them, after the parse.
fn limit_refusing_the_sets(work: &Workdir, prefixes: usize) -> u64 {
    let config = steer::config::load(&work.config()).expect("the configuration");
    let limit = need(config.set_footprint().in_force(), prefixes) - (2 << 20);
    assert!(limit >= START_BYTES + (16 << 20), "room to start: {limit}");
    let text = std::fs::metadata(work.dir.join("lists/big.txt"))
        .expect("the list")
        .len();
    assert!(
        need(0, prefixes) + text + (8 << 20) < limit,
        "room to read the list"
    );
    limit
}

/// Every pin under `pin_dir` and the directories, with their inode: a pin replaced by another
/// (a program pinned again) has another inode.
fn pins(pin_dir: &std::path::Path) -> BTreeMap<std::path::PathBuf, u64> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut dirs = vec![pin_dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let meta = entry.metadata().expect("a pin's metadata");
            if meta.is_dir() {
                dirs.push(entry.path());
            }
            out.insert(entry.path(), meta.ino());
        }
    }
    out
}

/// `steer run` in `lab`'s router inside `cg`, which must refuse to start and exit (not be
/// killed: its status is a failure of its own). Returns its log.
fn start_refused(lab: &Lab, work: &Workdir, cg: &MemCgroup) -> String {
    settle();
    let mut cmd = steer_in(&lab.router);
    cg.enter_on_exec(&mut cmd);
    let mut daemon = Daemon::spawn(work, cmd);
    let status = daemon
        .wait_exit(Duration::from_secs(60))
        .expect("steer run refuses and exits");
    assert!(!status.success());
    daemon.log_text()
}

/// `steer run` in `lab`'s router under a memory limit (a cgroup named after `tag`) that holds
/// its start but not the `hosts` prefixes of its sets: it must refuse and exit, naming the
/// limit, without being killed. Returns its log.
fn start_refused_for_the_sets(lab: &Lab, work: &Workdir, tag: &str, hosts: u32) -> String {
    let cg = memory_cgroup(tag, limit_refusing_the_sets(work, hosts as usize));
    let log = start_refused(lab, work, &cg);
    assert!(log.contains("more than steer's memory limit of"), "{log}");
    assert_eq!(cg.oom_kills(), Some(0), "refused, not killed");
    log
}

/// `steer run` under a memory limit that holds its start but not its sets: it refuses with
/// the numbers, the kernel kills nothing, and it leaves nothing behind: no pin, not the pin
/// directory, no rule, no nftables table, no program on the LAN interface.
#[test]
fn a_start_refused_for_the_memory_limit_leaves_no_pin_and_changes_nothing() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("mem-start-pins");
    let hosts = 400_000;
    work.write("lists/big.txt", &v6_hosts(hosts));
    work.write("steer.toml", &config(&work, "1G"));
    let log = start_refused_for_the_sets(&lab, &work, "start-pins", hosts);
    assert!(
        log.contains(&format!("for the daemon's {hosts} prefixes")),
        "{log}"
    );
    assert!(log.contains("nothing was changed"), "{log}");
    assert_eq!(pins(&work.pin_dir), BTreeMap::new(), "no pin left");
    assert!(!work.pin_dir.exists(), "nor the pin directory it made");
    assert_eq!(lab.steer_traces(), Vec::<String>::new());
}

/// An earlier daemon's state is pinned (it stopped, leaving the classifier steering): a start
/// under a limit that cannot hold its new sets refuses, and leaves that state exactly as it
/// was: the same pins (none replaced: the same inodes), the same prefixes in the maps, still
/// answering, the classifier still attached, the same rules.
#[test]
fn a_start_refused_for_the_memory_limit_leaves_an_earlier_daemons_pins_as_they_were() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("mem-start-adopt");
    work.write("lists/big.txt", &small_list());
    work.write("steer.toml", &config(&work, "1G"));
    let mut earlier = Daemon::start(&lab.router, &work);
    assert!(earlier.signal_and_wait(libc::SIGTERM, Duration::from_secs(10)));
    let (pinned, held, steering) = (pins(&work.pin_dir), kernel(&work), lab.steer_traces());
    assert!(
        pinned.keys().any(|p| p.ends_with("progs/steer_tc")),
        "{pinned:?}"
    );
    assert!(steering.contains(&"steer_tc".to_owned()), "{steering:?}");
    let old = steer::prefix::parse_prefix("10.1.2.0/24", false).unwrap();

    let hosts = 400_000;
    work.write("lists/big.txt", &v6_hosts(hosts));
    start_refused_for_the_sets(&lab, &work, "start-adopt", hosts);
    assert_eq!(pins(&work.pin_dir), pinned, "the same pins, none replaced");
    assert_eq!(kernel(&work), held, "the same prefixes");
    assert_eq!(matched(&work, "10.1.2.3"), Some(old), "still answering");
    assert_eq!(
        lab.steer_traces(),
        steering,
        "still attached, the same rules"
    );
}

/// What `steer status` says the sets hold in the kernel now.
fn set_memory(work: &Workdir) -> u64 {
    let status: serde_json::Value =
        serde_json::from_str(&work.steer_ok(&["status", "--json"])).expect("status json");
    status["set_memory"]["bytes"]
        .as_u64()
        .expect("set_memory.bytes")
}

/// The limit holds the daemon with 100,000 host routes, and the list now holds far more (the
/// defect: three million lines got the daemon OOM-killed while it parsed them, routing down
/// with it). Each reload is refused before the list is parsed, naming the limit, the list and
/// the numbers — on the list path with a text too long to be read, then with a text that
/// fits but too many lines, and on the full path — the daemon runs on with the old set, the
/// kernel holds what it held, and nothing is killed. A list that fits still goes in.
#[test]
fn a_reload_of_lists_far_over_the_cgroup_limit_is_refused_not_killed() {
    steer_tests::require_root();
    let limit = 64 << 20;
    let cg = memory_cgroup("lists-over", limit);
    let lab = Lab::new();
    let work = Workdir::new("mem-lists-over");
    let held = 100_000;
    work.write("lists/big.txt", &spread_hosts(held));
    work.write("steer.toml", &config(&work, "1G"));
    settle();
    let mut cmd = steer_in(&lab.router);
    cg.enter_on_exec(&mut cmd);
    let daemon = Daemon::spawn(&work, cmd).wait_up(&work);
    let before = kernel(&work);
    assert_eq!(before.len(), held as usize);
    let list = work.dir.join("lists/big.txt");
    let refused = |what: &str, size: String| {
        settle();
        let (ok, _, err) = work.steer(&["reload"]);
        assert_eq!(
            cg.oom_kills(),
            Some(0),
            "{what}: refused, not killed: {err}"
        );
        assert!(!ok, "{what}: refused");
        assert!(
            err.contains(&format!("reading list file {} ({size})", list.display())),
            "{what}: the list and its size: {err}"
        );
        assert!(
            err.contains("would take steer over its memory limit of 64.0 MiB ("),
            "{what}: {err}"
        );
        assert!(
            err.contains("memory.max") || err.contains("memory.limit_in_bytes"),
            "{what}: {err}"
        );
        assert!(err.contains("40.0 MiB for the daemon itself"), "{err}");
        assert!(err.contains("nothing was changed"), "{what}: {err}");
        assert!(work.steer(&["status"]).0, "{what}: the daemon runs on");
        assert_eq!(kernel(&work), before, "{what}: nothing of it was loaded");
        let explain = work.steer_ok(&["explain", "10.0.0.2"]);
        assert!(explain.contains("set big"), "{what}: {explain}");
    };

    let far_over = spread_hosts(3_000_000);
    work.write("lists/big.txt", &far_over);
    refused(
        "3M lines, the list path",
        format!("{}, not read", Bytes(far_over.len() as u64)),
    );

    // A text the limit has room for, but lines it has not: what the daemon needs for them
    // (a prefix a line) and the text together.
    let over = spread_hosts(1_000_000);
    let room = limit - need(set_memory(&work), held as usize);
    let text = over.len() as u64;
    assert!(text + (4 << 20) < room, "{text} leaves room in {room}");
    assert!(need(set_memory(&work), 1_000_000) + text > limit + (4 << 20));
    work.write("lists/big.txt", &over);
    refused(
        "1M lines, the list path",
        format!("1000000 lines, {}", Bytes(text)),
    );

    work.write("lists/big.txt", &far_over);
    work.write("steer.toml", &format!("# edited\n{}", config(&work, "1G")));
    refused(
        "3M lines, the full path",
        format!("{}, not read", Bytes(far_over.len() as u64)),
    );

    work.write("lists/big.txt", &spread_hosts(150_000));
    settle();
    work.steer_ok(&["reload"]);
    assert_eq!(kernel(&work).len(), 150_000);
    assert_eq!(cg.oom_kills(), Some(0));
    drop(daemon);
}

/// A domain list grown far past what the cgroup's limit holds (three million names, 60 MB of
/// text, under 64 MiB) is refused at a reload before it is read, as an address list is,
/// naming the list; the kernel kills nothing and the daemon keeps its sets.
#[test]
fn a_reload_of_a_domain_list_far_over_the_cgroup_limit_is_refused_not_killed() {
    steer_tests::require_root();
    let cg = memory_cgroup("domains-over", 64 << 20);
    let lab = Lab::new();
    let work = Workdir::new("mem-domains-over");
    work.write("lists/big.txt", &small_list());
    let names = work.write("lists/names.txt", "a.example\n");
    let with_names = |edit: &str| {
        format!(
            "# {edit}\n{}\n[[set]]\nname = \"named\"\npolicy = \"wan2-first\"\n\
             domain_files = [\"lists/names.txt\"]\n\n[dns]\nforward = false\nsnoop = true\n",
            config(&work, "1G")
        )
    };
    work.write("steer.toml", &with_names("first"));
    let mut cmd = steer_in(&lab.router);
    cg.enter_on_exec(&mut cmd);
    let daemon = Daemon::spawn(&work, cmd).wait_up(&work);
    let before = kernel(&work);
    let many: String = (0..3_000_000u32)
        .map(|i| format!("n{i}.example.com\n"))
        .collect();
    work.write("lists/names.txt", &many);
    for edit in ["the list path", "the full path"] {
        if edit == "the full path" {
            work.write("steer.toml", &with_names(edit));
        }
        settle();
        let (ok, _, err) = work.steer(&["reload"]);
        assert_eq!(
            cg.oom_kills(),
            Some(0),
            "{edit}: refused, not killed: {err}"
        );
        assert!(!ok, "{edit}: refused");
        assert!(
            err.contains(&format!(
                "reading list file {} ({}, not read) would take steer over its memory limit \
                 of 64.0 MiB (",
                names.display(),
                Bytes(many.len() as u64)
            )),
            "{edit}: {err}"
        );
        assert!(err.contains("domain_files[0]"), "{edit}: {err}");
        assert!(err.contains("nothing was changed"), "{edit}: {err}");
        assert!(work.steer(&["status"]).0, "{edit}: the daemon runs on");
        assert_eq!(kernel(&work), before, "{edit}");
    }
    drop(daemon);
}

/// `steer run` under a limit that holds the daemon, with a list of 1.5 million IPv6 host
/// routes (whose parse alone took the daemon over the limit: it was OOM-killed): it refuses
/// before the list is parsed, naming the limit, the list and the numbers; the kernel kills
/// nothing, and nothing was loaded or changed.
#[test]
fn a_start_whose_lists_cannot_be_read_within_the_cgroup_limit_is_refused_not_killed() {
    steer_tests::require_root();
    let cg = memory_cgroup("start-lists", 64 << 20);
    let lab = Lab::new();
    let work = Workdir::new("mem-start-lists");
    let list = v6_hosts(1_500_000);
    let path = work.write("lists/big.txt", &list);
    work.write("steer.toml", &config(&work, "1G"));
    let log = start_refused(&lab, &work, &cg);
    assert_eq!(cg.oom_kills(), Some(0), "refused, not killed: {log}");
    assert!(
        log.contains(&format!(
            "reading list file {} ({}, not read) would take steer over its memory limit of \
             64.0 MiB (",
            path.display(),
            Bytes(list.len() as u64)
        )),
        "{log}"
    );
    assert!(log.contains("nothing was changed"), "{log}");
    assert!(!work.pin_dir.exists(), "nothing was loaded");
    assert_eq!(lab.steer_traces(), Vec::<String>::new());
}

/// The owner lowers the limit of a running daemon (`systemctl set-property steer
/// MemoryMax=`): a list that would take the daemon over it is refused with the numbers — on
/// the list path, the full path and by `steer set add` — the set in force still answers
/// `explain`, and the kernel kills nothing. Raised again, the same list goes in.
#[test]
fn a_change_over_the_cgroup_limit_is_refused_and_the_old_sets_answer() {
    steer_tests::require_root();
    let cg = memory_cgroup("lowered", 96 << 20);
    let lab = Lab::new();
    let work = Workdir::new("mem-lowered");
    work.write("lists/big.txt", &small_list());
    work.write("steer.toml", &config(&work, "1G"));
    settle();
    let mut cmd = steer_in(&lab.router);
    cg.enter_on_exec(&mut cmd);
    let daemon = Daemon::spawn(&work, cmd).wait_up(&work);
    let old = steer::prefix::parse_prefix("10.1.2.0/24", false).unwrap();
    assert_eq!(matched(&work, "10.1.2.3"), Some(old));
    let shown = work.steer_ok(&["status"]);
    assert!(
        shown.contains("memory limit of the daemon and its maps: 96.0 MiB (/sys/fs/cgroup/"),
        "{shown}"
    );
    let used = cg.total().expect("the cgroup's usage");
    // Room for the daemon to parse the list beside what it holds (about 30 bytes a line), not
    // for what the list needs once loaded (its prefixes in the daemon and the kernel).
    let lowered = (used + (16 << 20))
        .max(BASE_BYTES + (8 << 20))
        .next_multiple_of(1 << 20);
    cg.limit(lowered);
    let hosts = ((lowered - BASE_BYTES) / (BYTES_PER_PREFIX + 40)) as u32 * 3 / 2;
    println!(
        "the daemon used {:.1} MB; limit lowered to {} MiB; {hosts} host routes offered",
        used as f64 / 1e6,
        lowered >> 20
    );
    let assert_refused = |err: &str| {
        assert!(
            err.contains(&format!(
                "more than steer's memory limit of {}.0 MiB",
                lowered >> 20
            )),
            "the limit: {err}"
        );
        assert!(
            err.contains(&format!("for the daemon's {} prefixes", hosts + 2000))
                || err.contains(&format!("for the daemon's {hosts} prefixes")),
            "the prefixes: {err}"
        );
        assert!(
            err.contains("of kernel memory for the sets (IPv4 destination:"),
            "{err}"
        );
        assert!(err.contains("nothing was changed"), "{err}");
        assert!(
            err.contains("memory.max") || err.contains("memory.limit_in_bytes"),
            "{err}"
        );
    };
    let explains_old = || {
        let explain = work.steer_ok(&["explain", "10.1.2.3"]);
        assert!(explain.contains("set big"), "{explain}");
        assert_eq!(matched(&work, "10.1.2.3"), Some(old));
    };

    work.write("lists/big.txt", &spread_hosts(hosts));
    settle();
    let (ok, _, err) = work.steer(&["reload"]);
    assert!(!ok, "the list path refuses");
    assert_refused(&err);
    explains_old();

    work.write("steer.toml", &format!("# edited\n{}", config(&work, "1G")));
    settle();
    let (ok, _, err) = work.steer(&["reload"]);
    assert!(!ok, "the full path refuses");
    assert_refused(&err);
    explains_old();

    work.write("lists/big.txt", &small_list());
    work.write("steer.toml", &config(&work, "1G"));
    settle();
    work.steer_ok(&["reload"]);
    let extra = work.write("extra.txt", &spread_hosts(hosts));
    let (ok, _, err) = work.steer(&["set", "big", "add", "--file", extra.to_str().unwrap()]);
    assert!(!ok, "a runtime edit is refused");
    assert!(
        err.contains(&format!("adding {hosts} entries needs about"))
            && err.contains(&format!(
                "more than steer's memory limit of {}.0 MiB",
                lowered >> 20
            )),
        "{err}"
    );
    assert!(err.contains("refused, nothing changed"), "{err}");
    explains_old();
    assert_eq!(cg.oom_kills(), Some(0), "refused, not killed");

    cg.limit(256 << 20);
    work.write("lists/big.txt", &spread_hosts(hosts));
    settle();
    work.steer_ok(&["reload"]);
    assert_eq!(kernel(&work).len(), hosts as usize);
    assert_eq!(matched(&work, "10.1.2.3"), None);
    drop(daemon);
}

/// A hundred reloads of a million IPv4 prefixes in a row, under the unit's `MemoryMax=`: lists
/// changing by 1% (the list path), every tenth with the configuration changed too (the full
/// path). Nothing accumulates (the daemon's resident memory and its peak after the hundredth
/// are those after the tenth), the kernel kills nothing, and the maps hold the last list.
#[test]
fn a_hundred_reloads_of_a_million_prefixes_keep_the_daemon_where_it_was() {
    steer_tests::require_root();
    let limit = unit_memory_max();
    let mut cg = memory_cgroup("reloads", limit);
    let lab = Lab::new();
    let work = Workdir::new("mem-reloads");
    let mut rng = Rng::new(0x5eed_0100);
    // 1% more than the set: those replace every hundredth line in the second list.
    let mut all = real_mix(&mut rng, 1_010_000, true);
    let fresh = all.split_off(1_000_000);
    let mut other = all.clone();
    for (slot, p) in other.iter_mut().step_by(100).zip(fresh) {
        *slot = p;
    }
    let lists = [list_text(&all), list_text(&other)];
    write_aged(&work, "lists/big.txt", &lists[0]);
    let toml = config(&work, "1G");
    write_aged(&work, "steer.toml", &toml);
    let mut cmd = steer_in(&lab.router);
    cg.enter_on_exec(&mut cmd);
    let daemon = Daemon::spawn(&work, cmd);
    daemon.wait_log("prefix writes", Duration::from_secs(300));
    let pid = daemon.pid();
    let status_kb = |key: &str| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let mut after_ten = (0, 0);
    for round in 1..=100 {
        write_aged(&work, "lists/big.txt", &lists[round % 2]);
        let full = round % 10 == 0;
        if full {
            write_aged(&work, "steer.toml", &format!("{toml}# round {round}\n"));
        }
        let out = work.steer_ok(&["reload"]);
        assert_eq!(
            out.contains("only a list of set big changed"),
            !full,
            "round {round}: {out}"
        );
        if round == 10 {
            after_ten = (status_kb("VmRSS:"), status_kb("VmHWM:"));
            cg.reset_peaks();
        }
    }
    let after_hundred = (status_kb("VmRSS:"), status_kb("VmHWM:"));
    println!(
        "100 reloads of 1M IPv4 (debug build): VmRSS {} -> {} kB, VmHWM {} -> {} kB from the \
         10th to the 100th; the cgroup peaked at {:.1} MB",
        after_ten.0,
        after_hundred.0,
        after_ten.1,
        after_hundred.1,
        cg.total_peak().unwrap_or(0) as f64 / 1e6
    );
    // A leak of one byte a prefix a reload would be 90 MB by now; the allowance is what the
    // allocator may keep of its free memory between two reloads.
    assert!(
        after_hundred.0 <= after_ten.0 + 4096,
        "resident memory grew: {after_ten:?} -> {after_hundred:?}"
    );
    assert!(
        after_hundred.1 <= after_ten.1 + 4096,
        "the peak grew: {after_ten:?} -> {after_hundred:?}"
    );
    assert_eq!(cg.oom_kills(), Some(0), "nothing was killed for memory");
    assert!(cg.total_peak().expect("the cgroup's peak") <= limit);
    assert_eq!(kernel(&work).len(), all.len(), "the last list is loaded");
    drop(daemon);
}
