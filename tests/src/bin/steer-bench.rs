//! `cargo xtask bench`: steer's benchmarks. Every number is printed next to a baseline measured
//! in the same run (the empty program, per-element loading); nothing here asserts a timing.
//!
//! Groups (filter by name: `cargo xtask bench classifier load`):
//! - `classifier`: BPF_PROG_TEST_RUN ns/packet of the TC and XDP classifiers for growing prefix
//!   sets, against the empty TC/XDP program (the floor).
//! - `load`: bulk-loading 1M IPv4 prefixes, per element and batched.
//! - `reload`: a 1M-line list file parsed, compiled and loaded end to end; then one changed line
//!   applied on reload.
//! - `failover`: in the namespace lab with `steer run`, a 1 ms UDP stream from the LAN client;
//!   time from the fault to the first packet on the other ISP, for carrier loss and for silent
//!   upstream loss (100 ms probes, down_after = 3).
//! - `dns`: the forwarder in front of dnsmasq against dnsmasq alone (dnsperf throughput,
//!   added latency p50/p99), first packets of fresh names, snoop mode's answer-to-insert
//!   latency ([`steer_tests::bench::dns`]).
//! - `forwarding`: real forwarding through a router namespace, one router per contender (no
//!   classification, nftables, iptables+ipset, steer TC, steer XDP+TC, conntrack variants), with
//!   trafgen; packets/s and router CPU per packet, memory and load time of the sets.
//!   `forwarding/100k-IPv4` picks one scenario (10k-IPv4, 100k-IPv4, 1M-IPv4, 100k-IPv6).
//! - `vrrp`: in the HA lab, the master dies; time until the client's traffic flows through the
//!   new master, a steer pair against a keepalived pair, 100 ms and 10 ms adverts
//!   (`steer_tests::ha::bench`).

use std::time::{Duration, Instant};

use aya::{
    Ebpf,
    programs::{SchedClassifier, Xdp},
};
use steer::{
    dataplane::{Dataplane, WriteMode, run::time_per_run},
    model::{Direction, Family, PrefixMap},
    packet::Frame,
    prefix::Prefix,
};
use steer_common::{DEFAULT_RULE, PolicyEntry, action};
use steer_tests::{bench::prefixes, require_root, rng::Rng};

const REPEAT: u32 = 1_000_000;
const RUNS: usize = 3;

fn main() {
    require_root();
    let filters: Vec<String> = std::env::args().skip(1).collect();
    // `forwarding/<scenario>` selects the forwarding group (and one of its scenarios).
    let wanted = |name: &str| {
        filters.is_empty()
            || filters
                .iter()
                .any(|f| name.contains(f.split('/').next().unwrap_or(f)))
    };
    if wanted("classifier") {
        classifier();
    }
    if wanted("load") {
        bulk_load();
    }
    if wanted("reload") {
        list_end_to_end();
    }
    if wanted("failover") {
        failover();
    }
    if wanted("dns") {
        steer_tests::bench::dns::run();
    }
    if wanted("forwarding") {
        let scenarios: Vec<String> = filters
            .iter()
            .filter_map(|f| f.strip_prefix("forwarding/").map(str::to_owned))
            .collect();
        steer_tests::forwarding::bench(&scenarios);
    }
    if wanted("vrrp") {
        steer_tests::ha::bench::run();
    }
}

/// Median of `RUNS` kernel-measured averages over `REPEAT` runs each.
fn median_ns(mut measure: impl FnMut() -> Duration) -> f64 {
    let mut v: Vec<f64> = (0..RUNS).map(|_| measure().as_nanos() as f64).collect();
    v.sort_by(f64::total_cmp);
    v[RUNS / 2]
}

struct Floors {
    _testkit: Ebpf,
    tc: f64,
    xdp: f64,
}

fn floors(frame: &[u8]) -> Floors {
    let mut testkit = Ebpf::load(steer::objects::TESTKIT).expect("testkit loads");
    let tc: &mut SchedClassifier = testkit
        .program_mut("testkit_tc_empty")
        .unwrap()
        .try_into()
        .unwrap();
    tc.load().unwrap();
    let tc_ns = median_ns(|| time_per_run(&*tc, frame, REPEAT).unwrap());
    let xdp: &mut Xdp = testkit
        .program_mut("testkit_xdp_empty")
        .unwrap()
        .try_into()
        .unwrap();
    xdp.load().unwrap();
    let xdp_ns = median_ns(|| time_per_run(&*xdp, frame, REPEAT).unwrap());
    Floors {
        _testkit: testkit,
        tc: tc_ns,
        xdp: xdp_ns,
    }
}

fn classifier() {
    println!("\n== classifier: BPF_PROG_TEST_RUN, {REPEAT} repeats per run, median of {RUNS} runs");
    println!(
        "   every packet hits a prefix of the set (a miss when the set is empty); the floor is"
    );
    println!("   the empty program of the same type on the same packet.\n");
    let mut rng = Rng::new(0x5733_7265);
    let probe4 = Frame::udp(
        "192.168.1.10".parse().unwrap(),
        "203.0.113.9".parse().unwrap(),
    )
    .build();
    let floors = floors(&probe4);
    println!(
        "{:<10} {:<22} {:>9} {:>9} {:>10}",
        "program", "prefixes", "ns/pkt", "vs floor", "+ns"
    );
    row("tc", "empty (floor)", floors.tc, floors.tc);
    row("xdp", "empty (floor)", floors.xdp, floors.xdp);
    for (label, count, v4) in [
        ("0 IPv4", 0usize, true),
        ("10k IPv4", 10_000, true),
        ("100k IPv4", 100_000, true),
        ("1M IPv4", 1_000_000, true),
        ("100k IPv6", 100_000, false),
    ] {
        let mut dp = Dataplane::load().expect("steer loads");
        let policy = PolicyEntry {
            action: action::MARK,
            mark: 0x100,
            mask: 0xff00,
            wan: 0,
            ..PolicyEntry::default()
        };
        for rule in [DEFAULT_RULE, 1] {
            for family in Family::ALL {
                dp.maps_mut().set_policy(0, family, rule, policy).unwrap();
            }
        }
        let set = prefixes(&mut rng, count, v4);
        let entries: Vec<(Prefix, u32)> = set.iter().map(|p| (*p, 1)).collect();
        dp.maps_mut()
            .set_prefixes(Direction::Dst, &entries, WriteMode::Batched)
            .expect("load set");
        // Packets that hit prefixes of the set (or, for the empty set, a miss).
        let frames: Vec<Vec<u8>> = (0..4)
            .map(|i| {
                let dst = match set.get(i * set.len().max(1) / 4) {
                    Some(p) => p.addr(),
                    None if v4 => "203.0.113.9".parse().unwrap(),
                    None => "2001:db8::9".parse().unwrap(),
                };
                let src = if v4 { "192.168.1.10" } else { "fd00::10" };
                Frame::udp(src.parse().unwrap(), dst).build()
            })
            .collect();
        let avg = |f: &dyn Fn(&[u8]) -> f64| {
            frames.iter().map(|fr| f(fr)).sum::<f64>() / frames.len() as f64
        };
        let tc = avg(&|fr| median_ns(|| time_per_run(dp.tc(), fr, REPEAT).unwrap()));
        let xdp = avg(&|fr| median_ns(|| time_per_run(dp.xdp(), fr, REPEAT).unwrap()));
        row("tc steer", label, tc, floors.tc);
        row("xdp steer", label, xdp, floors.xdp);
    }
}

fn row(program: &str, prefixes: &str, ns: f64, floor: f64) {
    println!(
        "{program:<10} {prefixes:<22} {ns:>9.1} {:>8.2}x {:>+10.1}",
        ns / floor,
        ns - floor
    );
}

fn bulk_load() {
    const N: usize = 1_000_000;
    println!("\n== load: {N} IPv4 prefixes into an empty DST_V4 trie");
    let mut rng = Rng::new(0x10ad);
    let set = prefixes(&mut rng, N, true);
    let entries: Vec<(Prefix, u32)> = set.iter().map(|p| (*p, 1)).collect();
    let mut results = Vec::new();
    for mode in [WriteMode::PerElement, WriteMode::Batched] {
        let mut dp = Dataplane::load().expect("steer loads");
        let start = Instant::now();
        let used = dp
            .maps_mut()
            .set_prefixes(Direction::Dst, &entries, mode)
            .expect("load");
        let took = start.elapsed();
        let count = dp.maps().prefixes(PrefixMap::DstV4).expect("dump").len();
        assert_eq!(count, N, "every prefix landed");
        results.push((mode, used, took));
    }
    let base = results[0].2.as_secs_f64();
    for (asked, used, took) in results {
        let note = if asked != used {
            " (kernel refused batches; fell back)"
        } else {
            ""
        };
        println!(
            "{:<12} {:>7.3} s  {:>6.0} ns/prefix  {:>5.2}x of per-element{note}",
            format!("{asked:?}"),
            took.as_secs_f64(),
            took.as_nanos() as f64 / N as f64,
            took.as_secs_f64() / base
        );
    }
}

fn list_end_to_end() {
    use std::collections::BTreeMap;

    use steer::{config, controller::desired};

    const N: usize = 1_000_000;
    println!(
        "\n== reload: a {N}-line list file, end to end (config::load, compile, sync into the kernel)"
    );
    let dir = std::env::temp_dir().join(format!("steer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mut rng = Rng::new(0x11575);
    let set = prefixes(&mut rng, N, true);
    let write_list = |set: &[Prefix]| {
        let mut text = String::with_capacity(N * 18);
        for p in set {
            text.push_str(&p.to_string());
            text.push('\n');
        }
        std::fs::write(dir.join("big.txt"), text).expect("write list");
    };
    write_list(&set);
    let cfg_path = dir.join("steer.toml");
    std::fs::write(
        &cfg_path,
        "[general]\nlan = [\"lan0\"]\n[[wan]]\nname = \"wan1\"\ninterface = \"wan1\"\nmark = 0x100\ntable = 101\n\
         [wan.track]\ntargets = [\"192.0.2.1\"]\n[[policy]]\nname = \"p\"\nmembers = [{ wan = \"wan1\" }]\n\
         [[set]]\nname = \"big\"\npolicy = \"p\"\nfiles = [\"big.txt\"]\n",
    )
    .expect("write config");

    let mut dp = Dataplane::load().expect("steer loads");
    let ids = BTreeMap::new();
    let run = |dp: &mut Dataplane| {
        let t0 = Instant::now();
        let cfg = config::load(&cfg_path).expect("valid config");
        let t1 = Instant::now();
        let d = desired(&cfg, &ids, &BTreeMap::new(), |_, _| true);
        let t2 = Instant::now();
        let report = dp.sync(&d.contents, None).expect("sync");
        let t3 = Instant::now();
        (t1 - t0, t2 - t1, t3 - t2, report)
    };
    let (parse, compile, load, first) = run(&mut dp);
    let total = parse + compile + load;
    println!(
        "{:<34} {:>9.3} s",
        "parse + validate (config::load)",
        parse.as_secs_f64()
    );
    println!(
        "{:<34} {:>9.3} s",
        "compile (rule ids, policy table)",
        compile.as_secs_f64()
    );
    println!(
        "{:<34} {:>9.3} s   ({} prefix writes, diff {:.3} s, kernel {:.3} s)",
        "sync into the kernel",
        load.as_secs_f64(),
        first.prefix_writes,
        first.diff_time.as_secs_f64(),
        first.kernel_time.as_secs_f64()
    );
    println!(
        "{:<34} {:>9.3} s   (target <= 5 s)",
        "end to end",
        total.as_secs_f64()
    );

    // One line changes.
    let mut changed = set.clone();
    changed[N / 2] = Prefix::truncating("172.31.255.0".parse().unwrap(), 24).unwrap();
    write_list(&changed);
    let (parse2, compile2, sync2, again) = run(&mut dp);
    println!("\none changed line, reloaded:");
    println!("{:<34} {:>9.3} s", "parse + validate", parse2.as_secs_f64());
    println!("{:<34} {:>9.3} s", "compile", compile2.as_secs_f64());
    println!(
        "{:<34} {:>9.3} ms  ({} prefix writes; diff {:.1} ms)",
        "sync",
        sync2.as_secs_f64() * 1e3,
        again.prefix_writes,
        again.diff_time.as_secs_f64() * 1e3
    );
    println!(
        "{:<34} {:>9.3} ms  (target <= 5 ms; {:.5}x the first load's kernel work)",
        "kernel work",
        again.kernel_time.as_secs_f64() * 1e3,
        again.kernel_time.as_secs_f64() / first.kernel_time.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn failover() {
    use steer_tests::{
        lab::{Lab, Stream, Wan},
        scenario::{Options, Scenario},
    };

    const RUNS: usize = 5;
    let options = Options {
        interval_ms: 100,
        timeout_ms: 80,
        down_after: 3,
        up_after: 3,
        ..Options::default()
    };
    println!(
        "\n== failover: lab + steer run, 1 ms UDP stream to the default server, {RUNS} runs each; probes every {} ms, down_after = {}",
        options.interval_ms, options.down_after
    );
    let s = Scenario::start("bench-failover", &options);
    let measure = |fault: &dyn Fn(), repair: &dyn Fn()| -> Vec<Duration> {
        (0..RUNS)
            .map(|_| {
                let stream = Stream::start(
                    &s.lab,
                    Lab::SERVER_A.into(),
                    7300,
                    Duration::from_millis(1),
                    Duration::from_secs(10),
                );
                std::thread::sleep(Duration::from_millis(200));
                assert!(
                    stream
                        .first_via_after(Wan::One, stream.started_at())
                        .is_some(),
                    "traffic starts on WAN 1"
                );
                let at = Instant::now();
                fault();
                let moved = stream
                    .wait_first_via(Wan::Two, at, Duration::from_secs(5))
                    .at;
                drop(stream);
                repair();
                s.wait_wan("wan1", "up", Duration::from_secs(10));
                moved - at
            })
            .collect()
    };
    let carrier = measure(&|| s.lab.cut_carrier(Wan::One), &|| {
        s.lab.restore_carrier(Wan::One)
    });
    let silent = measure(&|| s.lab.blackhole_upstream(Wan::One), &|| {
        s.lab.restore_upstream(Wan::One)
    });
    let bound = Duration::from_millis(u64::from(options.interval_ms * options.down_after));
    report_failover(
        "carrier loss",
        &carrier,
        Duration::from_millis(50),
        "the 50 ms target",
    );
    report_failover(
        "silent upstream loss",
        &silent,
        bound,
        "down_after x interval",
    );
    println!("(fault = the moment the test starts the `ip`/`nft` command that causes it)");
    let log = s.daemon.log_text();
    if let Some(line) = log
        .lines()
        .rev()
        .find(|l| l.contains("wan1 down (carrier lost)"))
    {
        println!(
            "daemon: {}",
            line.split_once("] ").map(|(_, r)| r).unwrap_or(line)
        );
    }
    if let Some(line) = log
        .lines()
        .rev()
        .find(|l| l.contains("wan1 down (3 failed rounds"))
    {
        println!(
            "daemon: {}",
            line.split_once("] ").map(|(_, r)| r).unwrap_or(line)
        );
    }
}

fn report_failover(what: &str, runs: &[Duration], baseline: Duration, baseline_name: &str) {
    let mut v: Vec<f64> = runs.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    v.sort_by(f64::total_cmp);
    let median = v[v.len() / 2];
    println!(
        "{what:<22} median {median:>7.1} ms  min {:>7.1}  max {:>7.1}   {:.2}x {baseline_name} ({} ms)",
        v[0],
        v[v.len() - 1],
        median / (baseline.as_secs_f64() * 1e3),
        baseline.as_millis()
    );
}
