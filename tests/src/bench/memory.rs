//! `cargo xtask bench memory`: where steer's memory goes with big lists, next to ipset and
//! nftables holding the same prefixes, in the same run.
//!
//! Workloads (`cargo xtask bench memory/1M-IPv4` picks one; `empty`, steer with no set, always
//! runs as the floor): 100k and 1M IPv4 prefixes of a real-looking mix (45 % /24, 12 % /32, the
//! rest /16../28), 100k IPv6 (45 % /48, 12 % /128, the rest /29../64, inside 2000::/3), and
//! 1M scattered IPv4 host routes (the worst case of a trie: no two share a node below /16).
//! The reloads replace 1 % of the lines (every hundredth) with prefixes the set does not hold.
//!
//! Each contender runs in a memory cgroup of its own, created for it and removed after
//! (cgroup v2 where the memory controller is there, else v1), so its figures are its own:
//! - steer: `steer run` in the namespace lab with the list; the daemon's VmRSS after the load
//!   and its VmHWM during the first load, during a `steer reload` of the changed list (only
//!   the list changed: the daemon's list path) and during one with the configuration file
//!   changed too (the full path: everything read, compiled, diffed); VmHWM is reset between
//!   steps (`/proc/<pid>/clear_refs` 5), the cgroup's peak too.
//! - ipset: `ipset restore` of a `hash:net` from nothing, then the reload ipset users do (a new
//!   set restored, `swap`, the old one destroyed), in a namespace of its own; the tool's own
//!   account is `ipset list -t`'s "Size in memory".
//! - nft: `nft -f` of an interval set (`flags interval; auto-merge`, which overlapping prefixes
//!   need) from nothing, then `flush set` + `add element` of the changed list in one
//!   transaction (what fw4 does), in a namespace of its own.
//!
//! Columns: `RSS` the resident process after the step (ipset and nft keep none); `peak RSS`
//! the daemon's VmHWM during the step, or the tool process's own peak (`busybox time`'s %M);
//! `kernel` / `k.peak` the cgroup's kernel memory (v1 `memory.kmem.*`, v2 `kernel` in
//! `memory.stat`; no peak on v2); `cgroup` / `cg.peak` all the cgroup holds (user + kernel),
//! now and at its peak during the step; `meminfo` the machine-wide change of Slab +
//! VmallocUsed + Percpu since before the contender started (everything the kernel allocated,
//! accounted to a cgroup or not; noisy when something else runs); `own` what the contender
//! says it holds (steer: the memlock of the BPF maps the daemon holds; ipset: "Size in
//! memory"). ipset allocates part of its hash without cgroup accounting, so its `kernel`
//! understates it: its own account stands for it in the summary. `meminfo` is a cross-check
//! only: frees of earlier steps still running and anything else on the machine move it.

use std::{
    collections::{BTreeMap, HashSet},
    ffi::CString,
    fs::File,
    io::Write,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::unix::{ffi::OsStrExt, fs::FileExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use steer::prefix::Prefix;

use crate::{
    daemon::{Daemon, Workdir, steer_bin},
    lab::Lab,
    netns::Netns,
    rng::Rng,
    scenario::lab_wans,
};

const MB: f64 = 1024.0 * 1024.0;
/// Prefix of the cgroup directories this benchmark creates: `steer-bench-mem-<pid>-<tag>`.
const CGROUP_PREFIX: &str = "steer-bench-mem-";

/// `count` distinct prefixes of the real-looking mix: IPv4 45 % /24, 12 % /32, the rest
/// /16../28; IPv6 45 % /48, 12 % /128, the rest /29../64, all inside 2000::/3.
pub fn real_mix(rng: &mut Rng, count: usize, v4: bool) -> Vec<Prefix> {
    distinct(count, || {
        let roll = rng.below(100);
        if v4 {
            let len = match roll {
                0..45 => 24,
                45..57 => 32,
                _ => 16 + rng.below(13) as u32,
            };
            (IpAddr::V4(Ipv4Addr::from(rng.bytes::<4>())), len)
        } else {
            let len = match roll {
                0..45 => 48,
                45..57 => 128,
                _ => 29 + rng.below(36) as u32,
            };
            let mut b = rng.bytes::<16>();
            b[0] = 0x20 | (b[0] & 0x1f);
            (IpAddr::V6(Ipv6Addr::from(b)), len)
        }
    })
}

/// `count` distinct IPv6 prefixes placed as real ones are: inside a few thousand allocations
/// (/29–/32) of the regional registries' blocks (2001::/16, 2400::/12, 2600::/12, 2800::/12,
/// 2a00::/12, 2c00::/12), so that a few dozen /16s hold them all. A quarter are allocations,
/// the rest /48s, hosts and /33–/64 inside them.
pub fn clustered_v6(rng: &mut Rng, count: usize) -> Vec<Prefix> {
    const BLOCKS: [(u16, u32); 6] = [
        (0x2001, 16),
        (0x2400, 12),
        (0x2600, 12),
        (0x2800, 12),
        (0x2a00, 12),
        (0x2c00, 12),
    ];
    let allocations: Vec<u128> = (0..(count / 50).max(4))
        .map(|_| {
            let (top, len) = BLOCKS[rng.below(BLOCKS.len() as u64) as usize];
            let inside = u128::from_be_bytes(rng.bytes::<16>()) >> len;
            (u128::from(top) << 112) | inside
        })
        .collect();
    distinct(count, || {
        let allocation = allocations[rng.below(allocations.len() as u64) as usize];
        let within = u128::from_be_bytes(rng.bytes::<16>()) >> 32;
        let len = match rng.below(100) {
            0..25 => {
                return (
                    IpAddr::V6(Ipv6Addr::from(allocation)),
                    29 + rng.below(4) as u32,
                );
            }
            25..70 => 48,
            70..82 => 128,
            _ => 33 + rng.below(32) as u32,
        };
        let addr = (allocation & !(u128::MAX >> 32)) | within;
        (IpAddr::V6(Ipv6Addr::from(addr)), len)
    })
}

/// `count` distinct IPv4 host routes spread over the whole address space.
pub fn scattered_hosts(rng: &mut Rng, count: usize) -> Vec<Prefix> {
    distinct(count, || (IpAddr::V4(Ipv4Addr::from(rng.bytes::<4>())), 32))
}

fn distinct(count: usize, mut next: impl FnMut() -> (IpAddr, u32)) -> Vec<Prefix> {
    let mut seen = HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let (addr, len) = next();
        let p = Prefix::truncating(addr, len).expect("valid length");
        if seen.insert(p) {
            out.push(p);
        }
    }
    out
}

/// One list: the prefixes loaded first, and the list of the reloads (1 % of lines replaced).
struct Workload {
    name: &'static str,
    what: &'static str,
    v4: bool,
    set: Vec<Prefix>,
    changed: Vec<Prefix>,
}

impl Workload {
    fn new(name: &'static str, what: &'static str, v4: bool, mut all: Vec<Prefix>) -> Workload {
        // `all` holds 1 % more than the set: those replace every hundredth line.
        let count = all.len() * 100 / 101;
        let fresh = all.split_off(count);
        let mut changed = all.clone();
        for (slot, p) in changed.iter_mut().step_by(100).zip(fresh) {
            *slot = p;
        }
        Workload {
            name,
            what,
            v4,
            set: all,
            changed,
        }
    }
}

/// The lists measured: name, what they hold, IPv4 or not, the seed, the prefixes loaded.
const WORKLOADS: [(&str, &str, bool, u64, usize); 4] = [
    (
        "100k-IPv4",
        "45% /24, 12% /32, 43% /16-/28",
        true,
        0x3e3_0100,
        100_000,
    ),
    (
        "1M-IPv4",
        "45% /24, 12% /32, 43% /16-/28",
        true,
        0x3e3_1000,
        1_000_000,
    ),
    (
        "100k-IPv6",
        "45% /48, 12% /128, 43% /29-/64",
        false,
        0x3e3_6100,
        100_000,
    ),
    (
        "1M-hosts",
        "scattered /32s, the worst case",
        true,
        0x3e3_3232,
        1_000_000,
    ),
];

fn workloads(wanted: &dyn Fn(&str) -> bool) -> Vec<Workload> {
    WORKLOADS
        .iter()
        .filter(|(name, ..)| wanted(name))
        .map(|&(name, what, v4, seed, count)| {
            let mut rng = Rng::new(seed);
            // 1 % more than the set: the replacements of the reloads.
            let count = count + count / 100;
            let all = if name == "1M-hosts" {
                scattered_hosts(&mut rng, count)
            } else {
                real_mix(&mut rng, count, v4)
            };
            Workload::new(name, what, v4, all)
        })
        .collect()
}

pub fn list_text(set: &[Prefix]) -> String {
    let mut text = String::with_capacity(set.len() * 20);
    for p in set {
        text.push_str(&p.to_string());
        text.push('\n');
    }
    text
}

/// What one step left behind and cost at its peak; `None` where nothing applies or the
/// reading is not available. Bytes, except `meminfo` (a signed change).
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    rss: Option<u64>,
    peak_rss: Option<u64>,
    kernel: Option<u64>,
    kernel_peak: Option<u64>,
    total: Option<u64>,
    total_peak: Option<u64>,
    meminfo: Option<i64>,
    own: Option<u64>,
    took: Duration,
}

impl Sample {
    fn of_cgroup(cg: Option<&MemCgroup>) -> Sample {
        Sample {
            kernel: cg.and_then(MemCgroup::kernel),
            kernel_peak: cg.and_then(MemCgroup::kernel_peak),
            total: cg.and_then(MemCgroup::total),
            total_peak: cg.and_then(MemCgroup::total_peak),
            ..Sample::default()
        }
    }
}

const HEADER: &str =
    "     RSS  peak RSS    kernel    k.peak    cgroup   cg.peak   meminfo       own    time s";

fn print_row(what: &str, s: &Sample) {
    let mb = |v: Option<u64>| v.map_or("-".to_owned(), |b| format!("{:.1}", b as f64 / MB));
    println!(
        "{what:<42} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9.2}",
        mb(s.rss),
        mb(s.peak_rss),
        mb(s.kernel),
        mb(s.kernel_peak),
        mb(s.total),
        mb(s.total_peak),
        s.meminfo
            .map_or("-".to_owned(), |b| format!("{:+.1}", b as f64 / MB)),
        mb(s.own),
        s.took.as_secs_f64()
    );
}

/// Runs the benchmark; `scenarios` (from `memory/<name>`) picks workloads, none picks all.
pub fn run(scenarios: &[String]) {
    let wanted = |name: &str| scenarios.is_empty() || scenarios.iter().any(|s| s == name);
    let probe = MemCgroup::new("probe");
    let kind = probe.as_ref().map_or(
        "no memory cgroup could be created: cgroup columns empty",
        |c| {
            if c.v2 {
                "cgroup v2"
            } else {
                "cgroup v1 (memory.kmem.*)"
            }
        },
    );
    drop(probe);
    println!(
        "\n== memory: `steer run` against `ipset restore` and `nft -f` holding the same prefixes, each in a memory cgroup of its own ({kind}); MB"
    );
    println!(
        "(RSS: the resident process after the step; peak RSS: its peak during the step (a tool's: busybox time %M); kernel/k.peak: the cgroup's kernel memory;\n \
         cgroup/cg.peak: all the cgroup holds, user + kernel; meminfo: machine-wide change of Slab+VmallocUsed+Percpu since before the contender; own: the contender's own account)"
    );
    let daemon = shipped_steer();
    let size = std::fs::metadata(&daemon).map_or(0, |m| m.len());
    println!(
        "the daemon: {} ({:.2} MB{})",
        daemon.display(),
        size as f64 / MB,
        if std::env::var_os("STEER_SHIPPED_BIN").is_some() {
            ", the binary that ships: static, musl, built for size"
        } else {
            "; not the binary that ships: `cargo xtask bench` measures that one"
        }
    );
    println!("\n-- the floor: steer run with no set");
    println!("{:<42}{HEADER}", "");
    let floor = steer_daemon(None);
    print_row("steer run, no set", &floor.load);
    print_maps(&floor.maps);

    let mut summary = Vec::new();
    for w in workloads(&wanted) {
        let text_len = list_text(&w.set).len();
        println!(
            "\n-- {}: {} prefixes, {} (list file {:.1} MB; the reloads replace 1% of the lines)",
            w.name,
            w.set.len(),
            w.what,
            text_len as f64 / MB
        );
        println!("{:<42}{HEADER}", "");
        let steer = steer_daemon(Some(&w));
        print_row("steer run: first load", &steer.load);
        print_row("steer reload: the list changed", &steer.list);
        print_row("steer reload: configuration changed too", &steer.full);
        if let Some(hundred) = &steer.hundred {
            print_row("steer reload x100 (every 10th: config too)", hundred);
        }
        print_maps(&steer.maps);
        let ipset = ipset(&w);
        print_row("ipset restore: hash:net from nothing", &ipset[0]);
        print_row("ipset restore: new set, swap, destroy old", &ipset[1]);
        let nft = nft(&w);
        print_row("nft -f: interval set from nothing", &nft[0]);
        print_row("nft -f: flush set + add, one transaction", &nft[1]);
        summary.push((w.name, steer, ipset[0], nft[0]));
    }
    if summary.is_empty() {
        return;
    }
    println!(
        "\n-- summary (MB, same run). steer's kernel: its cgroup's kernel memory less the floor's ({}); its set: that plus the daemon's RSS less the floor's ({});",
        mb(floor.load.kernel),
        mb(floor.load.rss)
    );
    println!(
        "   ipset and nft: their cgroup kernel memory, for ipset its own account where larger (it charges only part of its hash to the cgroup);"
    );
    println!(
        "   steer: all its cgroup holds after the load (daemon + kernel); x ipset, x nft: steer's set against theirs"
    );
    println!(
        "{:<10} {:>7} {:>26} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9}",
        "workload",
        "daemon",
        "daemon peak load/list/full",
        "steer k.",
        "ipset k.",
        "nft k.",
        "steer",
        "steer set",
        "x ipset",
        "x nft"
    );
    let less = |a: Option<u64>, b: Option<u64>| Some(a?.saturating_sub(b.unwrap_or(0)));
    for (name, steer, ipset, nft) in summary {
        let kernel = less(steer.load.kernel, floor.load.kernel);
        let set = kernel
            .map(|k| (k + steer.load.rss.unwrap_or(0)).saturating_sub(floor.load.rss.unwrap_or(0)));
        let theirs = |s: &Sample| match (s.kernel, s.own) {
            (Some(k), Some(o)) => Some(k.max(o)),
            (k, o) => k.or(o),
        };
        let (ik, nk) = (theirs(&ipset), theirs(&nft));
        let ratio = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) if b > 0 => format!("{:.2}x", a as f64 / b as f64),
            _ => "-".to_owned(),
        };
        println!(
            "{name:<10} {:>7} {:>26} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9}",
            mb(steer.load.rss),
            format!(
                "{} / {} / {}",
                mb(steer.load.peak_rss),
                mb(steer.list.peak_rss),
                mb(steer.full.peak_rss)
            ),
            mb(kernel),
            mb(ik),
            mb(nk),
            mb(steer.load.total),
            mb(set),
            ratio(set, ik),
            ratio(set, nk)
        );
    }
}

fn mb(v: Option<u64>) -> String {
    v.map_or("-".to_owned(), |b| format!("{:.1}", b as f64 / MB))
}

struct SteerRun {
    /// The daemon's maps after the first load (see [`maps_of`]).
    maps: Vec<(String, u64, u64)>,
    load: Sample,
    list: Sample,
    full: Sample,
    /// A hundred reloads after those (every tenth with the configuration changed): where
    /// the daemon is after them, and its peak through them.
    hundred: Option<Sample>,
}

/// `steer run` in the namespace lab with `w`'s list (no set without one), in a memory cgroup
/// of its own; then a reload of the changed list, and one with the configuration changed too.
fn steer_daemon(w: Option<&Workload>) -> SteerRun {
    let lab = Lab::new();
    let work = Workdir::new("bench-mem");
    let set = if w.is_some() {
        "[[set]]\nname = \"big\"\npolicy = \"p\"\nfiles = [\"lists/big.txt\"]\n"
    } else {
        ""
    };
    let toml = format!(
        "[general]\nlan = [\"lan0\"]\n{}\n{}\n[[policy]]\nname = \"p\"\nmembers = [{{ wan = \"wan2\" }}]\n\
         {set}{}",
        work.private_paths(),
        lab_wans("targets = [\"192.0.2.1\"]", "targets = [\"192.0.2.2\"]"),
        work.control_section()
    );
    if let Some(w) = w {
        work.write("lists/big.txt", &list_text(&w.set));
    }
    work.write("steer.toml", &toml);
    settle_file();
    let mut cg = MemCgroup::new("steer");
    let before = settled_meminfo();
    let mut cmd = lab.router.command(shipped_steer());
    if let Some(cg) = &cg {
        cg.enter_on_exec(&mut cmd);
    }
    let t = Instant::now();
    let mut daemon = Daemon::spawn(&work, cmd).wait_up(&work);
    daemon.wait_log("prefix writes", Duration::from_secs(120));
    let took = t.elapsed();
    let pid = daemon.pid();
    let sample = |cg: &Option<MemCgroup>, took: Duration| {
        let after = settled_meminfo();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        Sample {
            rss: status_kb(&status, "VmRSS:"),
            peak_rss: status_kb(&status, "VmHWM:"),
            meminfo: Some(after as i64 - before as i64),
            own: Some(maps_of(pid).iter().map(|m| m.2).sum()),
            took,
            ..Sample::of_cgroup(cg.as_ref())
        }
    };
    let load = sample(&cg, took);
    let maps = maps_of(pid);
    let Some(w) = w else {
        assert!(daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(10)));
        return SteerRun {
            maps,
            load,
            list: Sample::default(),
            full: Sample::default(),
            hundred: None,
        };
    };
    // Only the list changed: the daemon's list path.
    let reload = |cg: &mut Option<MemCgroup>, list: &[Prefix], config: Option<&str>| {
        work.write("lists/big.txt", &list_text(list));
        if let Some(text) = config {
            work.write("steer.toml", text);
        }
        settle_file();
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        if let Some(cg) = cg.as_mut() {
            cg.reset_peaks();
        }
        let t = Instant::now();
        let out = work.steer_ok(&["reload"]);
        let took = t.elapsed();
        assert_eq!(
            out.contains("only a list of set big changed"),
            config.is_none(),
            "{out}"
        );
        sample(cg, took)
    };
    let list = reload(&mut cg, &w.changed, None);
    let full = reload(&mut cg, &w.set, Some(&format!("{toml}# edited\n")));
    let hundred = (w.name == RELOADED_100_TIMES).then(|| {
        let lists = [list_text(&w.changed), list_text(&w.set)];
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        if let Some(cg) = cg.as_mut() {
            cg.reset_peaks();
        }
        let t = Instant::now();
        for round in 1..=100 {
            write_aged(&work, "lists/big.txt", &lists[round % 2]);
            if round % 10 == 0 {
                write_aged(&work, "steer.toml", &format!("{toml}# round {round}\n"));
            }
            work.steer_ok(&["reload"]);
        }
        sample(&cg, t.elapsed())
    });
    assert!(
        daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(10)),
        "SIGTERM ends the daemon"
    );
    drop(daemon);
    drop(cg);
    SteerRun {
        maps,
        load,
        list,
        full,
        hundred,
    }
}

/// The workload reloaded a hundred times in a row.
const RELOADED_100_TIMES: &str = "1M-IPv4";

/// Writes `text` into the work directory as if a while ago: steer's reader waits for a file
/// written less than a second before, which would be most of a hundred reloads' time.
pub fn write_aged(work: &Workdir, rel: &str, text: &str) {
    let path = work.write(rel, text);
    let file = File::options()
        .write(true)
        .open(&path)
        .expect("the file just written");
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(5))
        .expect("set its mtime");
}

/// The daemon measured: the binary that ships (`cargo xtask bench` builds this machine's
/// `cargo xtask dist` binary and names it in `STEER_SHIPPED_BIN`), else this build's.
fn shipped_steer() -> PathBuf {
    std::env::var_os("STEER_SHIPPED_BIN").map_or_else(steer_bin, PathBuf::from)
}

/// A list written less than a second ago is waited for by steer's reader (config::read); the
/// benchmark waits instead, so that wait is not part of a step.
fn settle_file() {
    std::thread::sleep(Duration::from_millis(1100));
}

fn status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// A number of a descriptor's `/proc/*/fdinfo` text (`memlock:`, `map_id:`...).
pub fn fdinfo_field(info: &str, key: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|n| n.trim().parse().ok())
}

/// The BPF maps process `pid` holds, each once: (name, max_entries, memlock), largest first.
/// memlock is the kernel's own estimate of a map's memory.
fn maps_of(pid: u32) -> Vec<(String, u64, u64)> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    let mut maps = BTreeMap::new();
    for info in fds
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
    {
        let field = |k: &str| fdinfo_field(&info, k);
        if let (Some(id), Some(max), Some(memlock)) =
            (field("map_id:"), field("max_entries:"), field("memlock:"))
        {
            maps.insert(id, (max, memlock));
        }
    }
    let mut out: Vec<(String, u64, u64)> = maps
        .into_iter()
        .map(|(id, (max, memlock))| {
            let name = aya::maps::MapInfo::from_id(id as u32)
                .ok()
                .and_then(|m| m.name_as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("map {id}"));
            (name, max, memlock)
        })
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.2));
    out
}

/// The largest of `maps` in one line, maps of one name (the inner tries of a map of maps)
/// together.
fn print_maps(maps: &[(String, u64, u64)]) {
    let mut by_name: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for (name, max, memlock) in maps {
        let e = by_name.entry(name).or_default();
        *e = (e.0 + 1, e.1.max(*max), e.2 + memlock);
    }
    let mut groups: Vec<_> = by_name.into_iter().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.1.2));
    let top: Vec<String> = groups
        .iter()
        .take(6)
        .map(|(name, (n, max, memlock))| {
            let count = if *n > 1 {
                format!("{n} maps, max {max} each")
            } else {
                format!("max {max}")
            };
            format!("{name} {:.1} ({count})", *memlock as f64 / MB)
        })
        .collect();
    println!(
        "  steer's BPF maps by memlock (the kernel's estimate), MB: {}; {} maps, {:.1} in all",
        top.join(", "),
        maps.len(),
        maps.iter().map(|m| m.2).sum::<u64>() as f64 / MB
    );
}

/// Slab + VmallocUsed + Percpu of /proc/meminfo, in bytes.
fn meminfo_kernel() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    ["Slab:", "VmallocUsed:", "Percpu:"]
        .iter()
        .filter_map(|k| status_kb(&text, k))
        .sum()
}

/// [`meminfo_kernel`] once it stops moving (RCU-deferred frees of an earlier step, the
/// teardown of namespaces and maps): three readings half a second apart within 256 kB,
/// bounded at 15 s.
fn settled_meminfo() -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut window = vec![meminfo_kernel()];
    loop {
        std::thread::sleep(Duration::from_millis(500));
        window.push(meminfo_kernel());
        if window.len() > 3 {
            window.remove(0);
        }
        let (lo, hi) = (window.iter().min(), window.iter().max());
        let steady = window.len() == 3 && hi.zip(lo).is_some_and(|(h, l)| h - l < 256 * 1024);
        if steady || Instant::now() > deadline {
            return *window.last().expect("a reading");
        }
    }
}

/// Runs `program args` in `ns` and `cg` to completion; panics with its stderr unless it
/// succeeds. Its time and its peak RSS. The peak comes from `busybox time` (installed by the
/// xtask), which forks the tool from its own small process: a child forked straight from this
/// benchmark would report this process's RSS at the fork as its `ru_maxrss` (the kernel
/// carries the forked copy's high-water mark across exec).
fn run_tool(
    ns: &Netns,
    cg: Option<&MemCgroup>,
    scratch: &Workdir,
    program: &str,
    args: &[&str],
) -> (Duration, Option<u64>) {
    let err_path = scratch.dir.join(format!("{program}.err"));
    let err = File::create(&err_path).expect("stderr file");
    let mut cmd = ns.command("busybox");
    cmd.args(["time", "-f", "steer-bench maxrss_kb=%M", program])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    if let Some(cg) = cg {
        cg.enter_on_exec(&mut cmd);
    }
    let t = Instant::now();
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("busybox time {program}: {e}"));
    let took = t.elapsed();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.success(), "{program} {args:?} failed: {err}");
    let peak = busybox_maxrss_kb(&err).map(|kb| kb * 1024 / busybox_time_factor());
    (took, peak)
}

fn busybox_maxrss_kb(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("steer-bench maxrss_kb="))
        .and_then(|kb| kb.trim().parse().ok())
}

/// What `busybox time`'s %M is to be divided by: busybox 1.35 takes `ru_maxrss` (KiB) for a
/// count of pages and prints it times the page size in KiB. Measured once, on a shell that
/// prints its own VmHWM: 1 or the page size in KiB, whichever is nearer.
fn busybox_time_factor() -> u64 {
    static FACTOR: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *FACTOR.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let page_kb = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) } / 1024).max(1) as u64;
        let out = Command::new("busybox")
            .args([
                "time",
                "-f",
                "steer-bench maxrss_kb=%M",
                "busybox",
                "sh",
                "-c",
            ])
            .arg("grep VmHWM /proc/$$/status")
            .output()
            .expect("busybox (cargo xtask setup installs it)");
        let hwm = status_kb(&String::from_utf8_lossy(&out.stdout), "VmHWM:").map(|b| b / 1024);
        let said = busybox_maxrss_kb(&String::from_utf8_lossy(&out.stderr));
        match (hwm, said) {
            (Some(hwm), Some(said)) if hwm > 0 && said * 2 > hwm * (page_kb + 1) => page_kb,
            _ => 1,
        }
    })
}

/// `ipset restore` of a hash:net from nothing, then a reload as ipset users do it (a new set,
/// swap, destroy the old), in a namespace and a memory cgroup of their own.
fn ipset(w: &Workload) -> [Sample; 2] {
    let ns = Netns::new("mem-ipset");
    let scratch = Workdir::new("bench-mem-tool");
    let family = if w.v4 { "inet" } else { "inet6" };
    let restore = |name: &str, set: &[Prefix]| {
        let mut s = format!(
            "create {name} hash:net family {family} maxelem {}\n",
            set.len() * 2
        );
        for p in set {
            s.push_str(&format!("add {name} {p}\n"));
        }
        s
    };
    let first = scratch.write("first", &restore("benchmem", &w.set));
    let mut second = restore("benchmem2", &w.changed);
    second.push_str("swap benchmem2 benchmem\ndestroy benchmem2\n");
    let second = scratch.write("second", &second);
    let own = || {
        ns.run("ipset list -t benchmem")
            .lines()
            .find_map(|l| l.strip_prefix("Size in memory:"))
            .and_then(|n| n.trim().parse().ok())
    };
    let samples = load_and_reload(
        &ns,
        &scratch,
        "ipset",
        &["restore", "-f"],
        [first, second],
        own,
    );
    let _ = ns.try_run("ipset destroy benchmem");
    samples
}

/// `nft -f` of an interval set from nothing, then `flush set` + `add element` of the changed
/// list in one transaction, in a namespace and a memory cgroup of their own.
fn nft(w: &Workload) -> [Sample; 2] {
    let ns = Netns::new("mem-nft");
    let scratch = Workdir::new("bench-mem-tool");
    let add = |s: &mut String, set: &[Prefix]| {
        for chunk in set.chunks(10_000) {
            s.push_str("add element inet benchmem s { ");
            for (i, p) in chunk.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                s.push_str(&p.to_string());
            }
            s.push_str(" }\n");
        }
    };
    let ty = if w.v4 { "ipv4_addr" } else { "ipv6_addr" };
    let mut first = format!(
        "table inet benchmem {{\n\tset s {{ type {ty}; flags interval; auto-merge; }}\n}}\n"
    );
    add(&mut first, &w.set);
    let first = scratch.write("first.nft", &first);
    let mut second = String::from("flush set inet benchmem s\n");
    add(&mut second, &w.changed);
    let second = scratch.write("second.nft", &second);
    let samples = load_and_reload(&ns, &scratch, "nft", &["-f"], [first, second], || None);
    let _ = ns.try_run("nft delete table inet benchmem");
    samples
}

/// Runs `tool` with `args` and the first file in a memory cgroup of its own, then (its peaks
/// reset) with the second: the load's sample and the reload's. `own` is the tool's own account
/// of what it holds, read after each run.
fn load_and_reload(
    ns: &Netns,
    scratch: &Workdir,
    tool: &str,
    args: &[&str],
    files: [PathBuf; 2],
    own: impl Fn() -> Option<u64>,
) -> [Sample; 2] {
    let mut cg = MemCgroup::new(tool);
    let before = settled_meminfo();
    let step = |cg: &Option<MemCgroup>, file: &Path| {
        let file = file.to_string_lossy();
        let args: Vec<&str> = args.iter().copied().chain([file.as_ref()]).collect();
        let (took, peak) = run_tool(ns, cg.as_ref(), scratch, tool, &args);
        let after = settled_meminfo();
        Sample {
            peak_rss: peak,
            meminfo: Some(after as i64 - before as i64),
            own: own(),
            took,
            ..Sample::of_cgroup(cg.as_ref())
        }
    };
    let load = step(&cg, &files[0]);
    if let Some(cg) = cg.as_mut() {
        cg.reset_peaks();
    }
    let reload = step(&cg, &files[1]);
    [load, reload]
}

/// A memory cgroup created for one contender: processes started with
/// [`MemCgroup::enter_on_exec`] (and their children) are charged to it, the BPF maps and
/// kernel objects they create too. On drop, what still runs in it (only processes this
/// benchmark started) is killed and the directory removed.
#[derive(Debug)]
pub struct MemCgroup {
    pub dir: PathBuf,
    v2: bool,
    /// v2: `memory.peak` held open, so a write resets the peak this descriptor reads (6.12+).
    peak: Option<File>,
    /// v2: the peak was asked to reset and the kernel refused (older kernel): no peak since.
    peak_stale: bool,
}

impl MemCgroup {
    /// A fresh directory in the v2 hierarchy when its memory controller can be used there,
    /// else in the v1 memory hierarchy under this process's own cgroup. None if neither.
    pub fn new(role: &str) -> Option<MemCgroup> {
        let (parent, v2) = cgroup_parent()?;
        sweep_stale(&parent);
        let dir = parent.join(format!(
            "{CGROUP_PREFIX}{}-{}-{role}",
            std::process::id(),
            crate::unique_tag()
        ));
        std::fs::create_dir(&dir).ok()?;
        let peak = if v2 {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(dir.join("memory.peak"))
                .ok()
        } else {
            None
        };
        Some(MemCgroup {
            dir,
            v2,
            peak,
            peak_stale: false,
        })
    }

    /// Makes `cmd`'s process join this cgroup before it executes (so all it allocates, from
    /// its first page on, is charged here).
    pub fn enter_on_exec(&self, cmd: &mut Command) {
        let procs = CString::new(self.dir.join("cgroup.procs").as_os_str().as_bytes())
            .expect("a path without NUL");
        // SAFETY: between fork and exec only async-signal-safe calls (open, write, close)
        // on memory allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0": the writing process itself.
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(err);
                }
                Ok(())
            });
        }
    }

    fn read(&self, file: &str) -> Option<u64> {
        std::fs::read_to_string(self.dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// All the cgroup holds: user and kernel memory.
    pub fn total(&self) -> Option<u64> {
        self.read(if self.v2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        })
    }

    /// The peak of [`MemCgroup::total`] since the cgroup was made or its peaks last reset.
    pub fn total_peak(&self) -> Option<u64> {
        if !self.v2 {
            return self.read("memory.max_usage_in_bytes");
        }
        if self.peak_stale {
            return None;
        }
        let file = self.peak.as_ref()?;
        let mut buf = [0u8; 32];
        let n = file.read_at(&mut buf, 0).ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
    }

    /// Kernel memory charged to the cgroup (slab, vmalloc, percpu, page tables, stacks,
    /// sockets: BPF maps and programs, ipsets, nftables objects, where they are accounted).
    pub fn kernel(&self) -> Option<u64> {
        if !self.v2 {
            return self.read("memory.kmem.usage_in_bytes");
        }
        let stat = std::fs::read_to_string(self.dir.join("memory.stat")).ok()?;
        let field = |k: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(' '))
                .and_then(|n| n.trim().parse::<u64>().ok())
        };
        field("kernel").or_else(|| {
            let parts = [
                "slab",
                "percpu",
                "vmalloc",
                "kernel_stack",
                "pagetables",
                "sock",
            ];
            Some(parts.iter().filter_map(|k| field(k)).sum())
        })
    }

    /// The peak of [`MemCgroup::kernel`] (v1 only).
    pub fn kernel_peak(&self) -> Option<u64> {
        if self.v2 {
            None
        } else {
            self.read("memory.kmem.max_usage_in_bytes")
        }
    }

    /// Limits what the cgroup may hold, user and kernel memory together (`memory.max`, or v1's
    /// `memory.limit_in_bytes`, which charges kernel memory too).
    pub fn limit(&self, bytes: u64) {
        let file = if self.v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        std::fs::write(self.dir.join(file), bytes.to_string()).expect("set the memory limit");
    }

    /// Processes the kernel killed for want of memory in the cgroup.
    pub fn oom_kills(&self) -> Option<u64> {
        let (file, key) = if self.v2 {
            ("memory.events", "oom_kill ")
        } else {
            ("memory.oom_control", "oom_kill ")
        };
        let text = std::fs::read_to_string(self.dir.join(file)).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|n| n.trim().parse().ok())
    }

    /// Starts the peaks over from the current usage.
    pub fn reset_peaks(&mut self) {
        if self.v2 {
            let ok = self
                .peak
                .as_mut()
                .is_some_and(|f| f.write_all(b"reset\n").is_ok());
            self.peak_stale = !ok;
        } else {
            for file in [
                "memory.max_usage_in_bytes",
                "memory.kmem.max_usage_in_bytes",
            ] {
                let _ = std::fs::write(self.dir.join(file), "0");
            }
        }
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        self.peak = None;
        for _ in 0..100 {
            let procs = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
            let pids: Vec<i32> = procs
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: kill(2) of a process this benchmark started into this cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Where this benchmark's cgroups go, and whether that is cgroup v2: the root of a v2
/// hierarchy whose memory controller is enabled for its children; else this process's own
/// cgroup in the v1 memory hierarchy.
fn cgroup_parent() -> Option<(PathBuf, bool)> {
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let root = Path::new(root);
        let has_memory = |file: &str| {
            std::fs::read_to_string(root.join(file))
                .is_ok_and(|s| s.split_whitespace().any(|c| c == "memory"))
        };
        if has_memory("cgroup.controllers") && has_memory("cgroup.subtree_control") {
            return Some((root.to_path_buf(), true));
        }
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.trim_start_matches('/').to_owned())
    })?;
    let dir = Path::new("/sys/fs/cgroup/memory").join(path);
    dir.join("memory.kmem.usage_in_bytes")
        .exists()
        .then_some((dir, false))
}

/// Removes this benchmark's cgroup directories left by runs that no longer exist.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let dead = name
            .strip_prefix(CGROUP_PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if dead {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}
