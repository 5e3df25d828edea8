//! `cargo xtask bench`: steer's benchmarks. Every number is printed next to a baseline measured
//! in the same run (the empty program, per-element loading); nothing here asserts a timing.
//!
//! Groups (filter by name: `cargo xtask bench classifier load`):
//! - `classifier`: BPF_PROG_TEST_RUN ns/packet of the TC and XDP classifiers for growing prefix
//!   sets, against the empty TC/XDP program (the floor).
//! - `lookup`: the range table (`steer_common::range`, built but not yet the classifier's)
//!   against the kernel's LPM trie holding the same prefixes, spread (cold-cache) lookups at
//!   10k, 100k and 1M IPv4 prefixes of the real-looking mix and 1M scattered host routes,
//!   against a program that only copies the address (the floor); the kernel memory of both and
//!   the time to build the table.
//! - `rules`: the ordered rules (sets with conditions): ns/packet with 8 and 64 rules using
//!   protocol and ports only, and every condition (MAC, input interface, addresses too),
//!   against the same classifier and prefix set without ordered rules, packets spread.
//! - `load`: bulk-loading 1M IPv4 prefixes into steer's range table, against the same into a
//!   kernel LPM trie in batches.
//! - `reload`: a 1M-line list file through the full path (parsed, compiled, diffed, loaded)
//!   in-process; then `steer run` with it and `steer reload` timed end to end with nothing
//!   changed, one changed line, and a changed configuration file, each with its steps; next to
//!   `nft -f`/`nft add element` on a 1M-element interval set and `ipset restore`/`ipset add` on
//!   a 1M-entry `hash:net` in a namespace of their own.
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
//! - `memory`: `steer run` with 100k and 1M IPv4 prefixes, 100k IPv6 and 1M scattered hosts,
//!   each in a memory cgroup of its own: the daemon's RSS and peaks (first load, a changed list,
//!   a changed configuration) and its kernel memory, next to `ipset restore` and `nft -f`
//!   holding the same prefixes ([`steer_tests::bench::memory`]). `memory/1M-IPv4` picks one.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    programs::{SchedClassifier, TestRun, TestRunOptions, TestRunResult, Xdp},
};
use steer::{
    dataplane::{Dataplane, ordered::Resolved, run::time_per_run},
    model::{CondTables, Conditions, Direction, Family, OrderedRule, PortRange, PrefixMap, Proto},
    packet::{Frame, Transport},
    prefix::Prefix,
};
use steer_common::{DEFAULT_RULE, PolicyEntry, action};
use steer_tests::{bench::prefixes, require_root, rng::Rng};

const REPEAT: u32 = 1_000_000;
/// Distinct packets of a spread (cold-cache) measurement.
const SPREAD: usize = 65_536;
const RUNS: usize = 3;

fn main() {
    require_root();
    let filters: Vec<String> = std::env::args().skip(1).collect();
    // `forwarding/<scenario>` selects the forwarding group (and one of its scenarios).
    let wanted = |name: &str| {
        filters.is_empty()
            || filters
                .iter()
                .any(|f| name == f.split('/').next().unwrap_or(f))
    };
    if wanted("classifier") {
        classifier();
    }
    if wanted("lookup") {
        range_lookup();
    }
    if wanted("rules") {
        ordered_rules();
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
    if wanted("memory") {
        let scenarios: Vec<String> = filters
            .iter()
            .filter_map(|f| f.strip_prefix("memory/").map(str::to_owned))
            .collect();
        steer_tests::bench::memory::run(&scenarios);
    }
}

/// Median of `RUNS` kernel-measured averages over `REPEAT` runs each.
fn median_ns(mut measure: impl FnMut() -> Duration) -> f64 {
    let mut v: Vec<f64> = (0..RUNS).map(|_| measure().as_nanos() as f64).collect();
    v.sort_by(f64::total_cmp);
    v[RUNS / 2]
}

/// Median of `RUNS` rounds of `frames`, each frame run once: the mean kernel-measured time of
/// one run. With destinations spread over a whole set, every lookup walks another part of the
/// tries, and the kernel's own work between runs (a syscall, an skb) leaves the caches as cold
/// as a router's between packets of different flows.
fn spread_ns<P>(prog: &P, frames: &[Vec<u8>]) -> f64
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    median_ns(|| {
        let total: Duration = frames
            .iter()
            .map(|f| time_per_run(prog, f, 1).unwrap())
            .sum();
        total / frames.len() as u32
    })
}

/// The empty programs: the floor of one repeated packet and of spread packets.
struct Floors {
    testkit: Ebpf,
    tc: f64,
    xdp: f64,
}

impl Floors {
    fn program<'a, P>(&'a self, name: &str) -> &'a P
    where
        &'a P: TryFrom<&'a aya::programs::Program>,
    {
        let program = self.testkit.program(name).expect("a testkit program");
        program.try_into().ok().expect("of its type")
    }

    fn tc_spread(&self, frames: &[Vec<u8>]) -> f64 {
        spread_ns(self.program::<SchedClassifier>("testkit_tc_empty"), frames)
    }

    fn xdp_spread(&self, frames: &[Vec<u8>]) -> f64 {
        spread_ns(self.program::<Xdp>("testkit_xdp_empty"), frames)
    }
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
        testkit,
        tc: tc_ns,
        xdp: xdp_ns,
    }
}

/// Packets for `SPREAD` random addresses, each inside a random prefix of `set` (the whole
/// set, not a corner of it); for an empty set, misses.
fn spread_frames(rng: &mut Rng, set: &[Prefix], v4: bool) -> Vec<Vec<u8>> {
    let src: IpAddr = if v4 { "192.168.1.10" } else { "fd00::10" }
        .parse()
        .unwrap();
    (0..SPREAD)
        .map(|_| {
            let dst = match set.get(rng.below(set.len().max(1) as u64) as usize) {
                Some(p) => random_inside(rng, p),
                None if v4 => IpAddr::V4(Ipv4Addr::from(rng.bytes::<4>())),
                None => IpAddr::V6(Ipv6Addr::from(rng.bytes::<16>())),
            };
            Frame::udp(src, dst).build()
        })
        .collect()
}

/// A random address of prefix `p`.
fn random_inside(rng: &mut Rng, p: &Prefix) -> IpAddr {
    match p.addr() {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shr(u32::from(p.len())).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(
                u32::from(a) | (rng.next_u64() as u32 & mask),
            ))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shr(u32::from(p.len())).unwrap_or(0);
            let random = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
            IpAddr::V6(Ipv6Addr::from(u128::from(a) | (random & mask)))
        }
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
    let mut cold = Vec::new();
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
        let mut dp = marking([DEFAULT_RULE, 1]);
        let set = prefixes(&mut rng, count, v4);
        let entries: Vec<(Prefix, u32)> = set.iter().map(|p| (*p, 1)).collect();
        dp.maps_mut()
            .set_prefixes(Direction::Dst, &entries)
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
        let spread = spread_frames(&mut rng, &set, v4);
        cold.push((
            label,
            spread_ns(dp.tc(), &spread),
            floors.tc_spread(&spread),
            spread_ns(dp.xdp(), &spread),
            floors.xdp_spread(&spread),
        ));
    }
    println!(
        "\n   spread: {SPREAD} packets, each run once, to random addresses of random prefixes \
         of the whole set (a miss when it is empty): every lookup walks another part of the \
         tries, as a router's packets of different flows do. The floor is the empty program \
         on the same packets; +ns is the lookup's cost with caches cold.\n"
    );
    for (label, tc, tc_floor, xdp, xdp_floor) in cold {
        row("tc spread", label, tc, tc_floor);
        row("xdp spread", label, xdp, xdp_floor);
    }
}

fn range_lookup() {
    use steer::model::{range::RangeTable, range6::RangeTable6};
    use steer_tests::{
        bench::memory::{clustered_v6, real_mix, scattered_hosts},
        ranges::{Pair, Program, frame, frame6, v4, v6},
    };
    println!(
        "\n== lookup: the range tables against the kernel's LPM trie, {SPREAD} addresses each \
         inside a random prefix of the set, one per run, median of {RUNS} rounds; the floor is \
         a program that only copies the address. IPv6 \"mix\": spread over 2000::/3; \
         \"clustered\": inside allocations of the registries' blocks, as real sets are\n"
    );
    println!(
        "{:<22} {:>9} {:>10} {:>10} {:>9} {:>11} {:>11} {:>9}",
        "set", "build ms", "floor ns", "trie +ns", "table +ns", "trie MiB", "table MiB", "ranges"
    );
    let mut rng = Rng::new(0x7261_6e67);
    let value = |rng: &mut Rng| rng.below(u64::from(steer_common::MAX_RULES)) as u32;
    let row = |label: &str,
               pair: &Pair,
               frames: &[Vec<u8>],
               programs,
               build: Duration,
               bytes,
               ranges| {
        let (echo, lpm, table) = programs;
        let per_run = |program: Program| {
            median_ns(|| {
                let total: Duration = frames.iter().map(|f| pair.time(program, f).unwrap()).sum();
                total / frames.len() as u32
            })
        };
        let floor = per_run(echo);
        let trie = per_run(lpm);
        let ranged = per_run(table);
        let (trie_bytes, table_bytes): (u64, u64) = bytes;
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        println!(
            "{label:<22} {:>9.1} {floor:>10.0} {:>+10.0} {:>+9.0} {:>11.1} {:>11.1} {ranges:>9}",
            build.as_secs_f64() * 1e3,
            trie - floor,
            ranged - floor,
            mib(trie_bytes),
            mib(table_bytes),
        );
    };
    for (label, set) in [
        ("10k IPv4 mix", real_mix(&mut rng, 10_000, true)),
        ("100k IPv4 mix", real_mix(&mut rng, 100_000, true)),
        ("1M IPv4 mix", real_mix(&mut rng, 1_000_000, true)),
        ("1M IPv4 hosts", scattered_hosts(&mut rng, 1_000_000)),
    ] {
        let entries: Vec<_> = set.iter().map(|p| (v4(p), value(&mut rng))).collect();
        let mut pair = Pair::load();
        pair.lpm_insert(&entries);
        let started = Instant::now();
        let table = RangeTable::build(&entries);
        let build = started.elapsed();
        pair.publish(&table);
        let frames: Vec<Vec<u8>> = spread_frames(&mut rng, &set, true)
            .iter()
            .map(|udp| frame(&[u32::from_be_bytes(udp[30..34].try_into().unwrap())]))
            .collect();
        let programs = (Program::Echo, Program::Lpm, Program::Ranges);
        let bytes = pair.kernel_bytes();
        row(
            label,
            &pair,
            &frames,
            programs,
            build,
            bytes,
            table.ranges(),
        );
    }
    for (label, set) in [
        ("100k IPv6 mix", real_mix(&mut rng, 100_000, false)),
        ("100k IPv6 clustered", clustered_v6(&mut rng, 100_000)),
        ("300k IPv6 clustered", clustered_v6(&mut rng, 300_000)),
    ] {
        let entries: Vec<_> = set.iter().map(|p| (v6(p), value(&mut rng))).collect();
        let mut pair = Pair::load();
        pair.lpm6_insert(&entries);
        let started = Instant::now();
        let table = RangeTable6::build(&entries);
        let build = started.elapsed();
        pair.publish6(&table);
        let frames: Vec<Vec<u8>> = (0..SPREAD)
            .map(|_| {
                let p = &set[rng.below(set.len() as u64) as usize];
                match random_inside(&mut rng, p) {
                    IpAddr::V6(a) => frame6(&[u128::from(a)]),
                    IpAddr::V4(_) => unreachable!("an IPv6 set"),
                }
            })
            .collect();
        let programs = (Program::EchoV6, Program::LpmV6, Program::RangesV6);
        let bytes = pair.kernel_bytes6();
        row(
            label,
            &pair,
            &frames,
            programs,
            build,
            bytes,
            table.ranges(),
        );
    }
}

/// A freshly loaded object whose generation 0 marks `rules` with WAN 0's mark.
fn marking(rules: impl IntoIterator<Item = u32>) -> Dataplane {
    let mut dp = Dataplane::load().expect("steer loads");
    let policy = PolicyEntry {
        action: action::MARK,
        mark: 0x100,
        mask: 0xff00,
        wan: 0,
        ..PolicyEntry::default()
    };
    for rule in rules {
        for family in Family::ALL {
            dp.maps_mut().set_policy(0, family, rule, policy).unwrap();
        }
    }
    dp
}

/// The per-packet cost of the ordered rules: one lookup per condition kind in use, whatever
/// the number of rules. Baseline: the same object with the same 10k-prefix set and no ordered
/// rules, on the same spread packets.
fn ordered_rules() {
    println!(
        "\n== rules: sets with conditions (ordered rules), BPF_PROG_TEST_RUN, {SPREAD} spread \
         packets (random destinations of a 10k-prefix set, random ports and MACs), median of \
         {RUNS} rounds; `tc`/`xdp`: 8 of those packets repeated {REPEAT} times each (hot \
         caches, the program's own cost); baseline: no ordered rules\n"
    );
    let mut rng = Rng::new(0x0dde_07ed);
    let set = prefixes(&mut rng, 10_000, true);
    let macs: Vec<[u8; 6]> = (0..16).map(|_| rng.bytes::<6>()).collect();
    let frames: Vec<Vec<u8>> = (0..SPREAD)
        .map(|_| {
            let p = &set[rng.below(set.len() as u64) as usize];
            let dst = random_inside(&mut rng, p);
            let src = IpAddr::V4(Ipv4Addr::new(192, 168, 1, rng.below(250) as u8 + 1));
            let (sport, dport) = (rng.below(65535) as u16 + 1, rng.below(65535) as u16 + 1);
            let transport = if rng.chance(50) {
                Transport::Tcp { sport, dport }
            } else {
                Transport::Udp { sport, dport }
            };
            Frame::udp(src, dst)
                .with_transport(transport)
                .with_src_mac(macs[rng.below(16) as usize])
                .build()
        })
        .collect();
    let rules_of = |rng: &mut Rng, n: usize, every: bool| -> Vec<OrderedRule> {
        (0..n)
            .map(|i| {
                let port = rng.below(60000) as u16 + 1;
                let mut c = Conditions {
                    protos: vec![if i % 2 == 0 { Proto::TCP } else { Proto::UDP }],
                    dports: vec![PortRange {
                        first: port,
                        last: port.saturating_add(200),
                    }],
                    ..Conditions::default()
                };
                let mut own = None;
                if every {
                    c.sports = vec![PortRange {
                        first: 1024,
                        last: 65535,
                    }];
                    c.src_macs = vec![macs[i % 16]];
                    c.ins = vec!["lo".into()];
                    c.src_prefixes = vec![Prefix::new("192.168.1.0".parse().unwrap(), 24).unwrap()];
                    own = Some(
                        (0..16)
                            .map(|_| set[rng.below(set.len() as u64) as usize])
                            .collect(),
                    );
                }
                OrderedRule {
                    rule: 2 + i as u32,
                    direction: Direction::Dst,
                    prefixes: own,
                    conditions: c,
                }
            })
            .collect()
    };
    let cases = [
        ("none (baseline)", Vec::new()),
        ("8, proto+dport", rules_of(&mut rng, 8, false)),
        ("64, proto+dport", rules_of(&mut rng, 64, false)),
        ("8, every kind", rules_of(&mut rng, 8, true)),
        ("64, every kind", rules_of(&mut rng, 64, true)),
    ];
    println!(
        "{:<10} {:<22} {:>9} {:>9} {:>10}",
        "program", "ordered rules", "ns/pkt", "vs base", "+ns"
    );
    let mut base = [0.0; 4];
    for (label, rules) in cases {
        let mut dp = marking(0..70);
        let entries: Vec<(Prefix, u32)> = set.iter().map(|p| (*p, 1)).collect();
        dp.maps_mut()
            .set_prefixes(Direction::Dst, &entries)
            .expect("load set");
        let tables = CondTables::compile(&rules).expect("compile");
        let resolved = Resolved::new(&tables, |name| steer::dataplane::ifindex(name).ok());
        dp.maps_mut().sync_ordered(&resolved).expect("write rules");
        let mut settings = dp.maps().settings().unwrap();
        if !rules.is_empty() {
            settings.flags |= steer_common::settings_flags::HAS_COND;
        }
        dp.maps_mut().set_settings(settings).unwrap();
        let hot = |prog: &dyn Fn(&[u8]) -> Duration| {
            frames[..8]
                .iter()
                .map(|f| median_ns(|| prog(f)))
                .sum::<f64>()
                / 8.0
        };
        let measured = [
            hot(&|f| time_per_run(dp.tc(), f, REPEAT).unwrap()),
            hot(&|f| time_per_run(dp.xdp(), f, REPEAT).unwrap()),
            spread_ns(dp.tc(), &frames),
            spread_ns(dp.xdp(), &frames),
        ];
        if rules.is_empty() {
            base = measured;
        }
        for (i, program) in ["tc", "xdp", "tc spread", "xdp spread"].iter().enumerate() {
            row(program, label, measured[i], base[i]);
        }
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
    use steer_tests::ranges::{Pair, v4};
    const N: usize = 1_000_000;
    println!(
        "\n== load: {N} IPv4 prefixes into an empty set: steer's range table (one commit: sort, \
         build, one mapping written, one publish), against the same prefixes written into a \
         kernel LPM trie in batches (what IPv4 sets were before stop 29)"
    );
    let mut rng = Rng::new(0x10ad);
    let set = prefixes(&mut rng, N, true);
    let entries: Vec<(Prefix, u32)> = set.iter().map(|p| (*p, 1)).collect();
    let mut sorted = entries.clone();
    sorted.sort_unstable();
    let mut trie = Pair::load();
    let raw: Vec<_> = set.iter().map(|p| (v4(p), 1)).collect();
    let start = Instant::now();
    trie.lpm_insert_batched(&raw);
    let baseline = start.elapsed();
    println!(
        "{:<26} {:>7.3} s  {:>6.0} ns/prefix",
        "LPM trie, batched",
        baseline.as_secs_f64(),
        baseline.as_nanos() as f64 / N as f64
    );
    for (label, input) in [("range table", &entries), ("range table, sorted", &sorted)] {
        let mut dp = Dataplane::load().expect("steer loads");
        let start = Instant::now();
        dp.maps_mut()
            .set_prefixes(Direction::Dst, input)
            .expect("load");
        let took = start.elapsed();
        let count = dp.maps().prefixes(PrefixMap::DstV4).expect("dump").len();
        assert_eq!(count, N, "every prefix landed");
        println!(
            "{label:<26} {:>7.3} s  {:>6.0} ns/prefix  {:>5.2}x of the trie's time",
            took.as_secs_f64(),
            took.as_nanos() as f64 / N as f64,
            took.as_secs_f64() / baseline.as_secs_f64()
        );
    }
}

fn list_end_to_end() {
    use std::collections::BTreeMap;

    use steer::{config, controller::desired};

    const N: usize = 1_000_000;
    println!(
        "\n== reload: a {N}-line list file; the full path in-process, then `steer run` and `steer reload` end to end, next to nft and ipset"
    );
    let dir = std::env::temp_dir().join(format!("steer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mut rng = Rng::new(0x11575);
    let set = prefixes(&mut rng, N, true);
    let list_text = |set: &[Prefix]| {
        let mut text = String::with_capacity(N * 18);
        for p in set {
            text.push_str(&p.to_string());
            text.push('\n');
        }
        text
    };
    let write_list = |set: &[Prefix]| {
        std::fs::write(dir.join("big.txt"), list_text(set)).expect("write list");
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
    // A list written less than a second ago is waited for (config::read): not part of a step.
    settle_file();

    println!(
        "\n-- the full path (config::load, compile, whole-state diff, sync): every reload before issue 15, now a changed configuration file"
    );
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
        "{:<34} {:>9.3} s",
        "end to end, from nothing",
        (parse + compile + load).as_secs_f64()
    );
    let mut changed = set.clone();
    changed[N / 2] = Prefix::truncating("172.31.255.0".parse().unwrap(), 24).unwrap();
    write_list(&changed);
    settle_file();
    let (parse2, compile2, sync2, again) = run(&mut dp);
    println!("one changed line, full path:");
    println!(
        "{:<34} {:>9.3} s",
        "  parse + validate",
        parse2.as_secs_f64()
    );
    println!("{:<34} {:>9.3} s", "  compile", compile2.as_secs_f64());
    println!(
        "{:<34} {:>9.3} s   ({} prefix writes; diff {:.3} s, kernel {:.2} ms)",
        "  sync",
        sync2.as_secs_f64(),
        again.prefix_writes,
        again.diff_time.as_secs_f64(),
        again.kernel_time.as_secs_f64() * 1e3
    );
    let full_line = parse2 + compile2 + sync2;
    println!("{:<34} {:>9.3} s", "  end to end", full_line.as_secs_f64());
    drop(dp);
    let _ = std::fs::remove_dir_all(&dir);

    let daemon = daemon_reloads(&set, &list_text);
    let base = set_baselines(&set);
    println!("\n-- ratios (same run; every command timed as a whole process)");
    let ratio = |what: &str, ours: Duration, theirs: Duration, name: &str| {
        println!(
            "{what:<44} {:>9.1} ms  {:>7.2}x {name} ({:.1} ms)",
            ms(ours),
            ours.as_secs_f64() / theirs.as_secs_f64(),
            ms(theirs)
        );
    };
    ratio(
        "steer reload, one changed line",
        daemon.one_line,
        base.nft_add,
        "nft add element",
    );
    ratio(
        "steer reload, one changed line",
        daemon.one_line,
        base.nft_plain_add,
        "nft add, no auto-merge",
    );
    ratio(
        "steer reload, one changed line",
        daemon.one_line,
        base.ipset_add,
        "ipset add",
    );
    ratio(
        "steer set add, one prefix",
        daemon.runtime_add,
        base.ipset_add,
        "ipset add",
    );
    ratio(
        "steer set add, one prefix",
        daemon.runtime_add,
        base.nft_add,
        "nft add element",
    );
    ratio(
        "steer reload, nothing changed",
        daemon.unchanged,
        base.nft_add,
        "nft add element",
    );
    ratio(
        "steer reload, one changed line",
        daemon.one_line,
        full_line,
        "the full path in-process",
    );
    ratio(
        "steer run, 1M loaded from nothing",
        daemon.start,
        base.nft_load,
        "nft -f",
    );
    ratio(
        "steer run, 1M loaded from nothing",
        daemon.start,
        base.ipset_load,
        "ipset restore",
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A list written less than a second ago is waited for by steer's reader (config::read); the
/// bench waits instead, so that wait is not counted in a step.
fn settle_file() {
    std::thread::sleep(Duration::from_millis(1100));
}

/// `ms` from the first `<number> ms` after `after` in `text`.
fn ms_after(text: &str, after: &str) -> Option<f64> {
    let rest = &text[text.find(after)? + after.len()..];
    let end = rest.find(" ms")?;
    rest[..end].trim().rsplit(' ').next()?.parse().ok()
}

struct DaemonTimes {
    start: Duration,
    unchanged: Duration,
    one_line: Duration,
    runtime_add: Duration,
}

/// `steer run` with the 1M-line list in the namespace lab, then `steer reload`s timed end to
/// end (the CLI process included), with the steps the daemon reports.
fn daemon_reloads(set: &[Prefix], list_text: &dyn Fn(&[Prefix]) -> String) -> DaemonTimes {
    use steer_tests::{
        daemon::{Daemon, Workdir},
        lab::Lab,
        scenario::lab_wans,
    };
    const RUNS: usize = 5;
    println!(
        "\n-- the daemon: `steer run` in the namespace lab, `steer reload` (CLI process included)"
    );
    let lab = Lab::new();
    let work = Workdir::new("bench-reload");
    work.write("lists/big.txt", &list_text(set));
    let toml = format!(
        "[general]\nlan = [\"lan0\"]\n{}\n{}\n[[policy]]\nname = \"p\"\nmembers = [{{ wan = \"wan2\" }}]\n\
         [[set]]\nname = \"big\"\npolicy = \"p\"\nfiles = [\"lists/big.txt\"]\n{}",
        work.private_paths(),
        lab_wans("targets = [\"192.0.2.1\"]", "targets = [\"192.0.2.2\"]"),
        work.control_section()
    );
    work.write("steer.toml", &toml);
    settle_file();
    let t = Instant::now();
    let daemon = Daemon::start(&lab.router, &work);
    let start = t.elapsed();
    let memory = |what: &str| {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap_or_default();
        let field = |k: &str| {
            status
                .lines()
                .find(|l| l.starts_with(k))
                .map(|l| l[k.len()..].trim().to_owned())
                .unwrap_or_default()
        };
        println!(
            "{what:<44} VmRSS {:>10}  VmHWM {:>10}",
            field("VmRSS:"),
            field("VmHWM:")
        );
    };
    let log = daemon.log_text();
    let applied = log
        .lines()
        .find(|l| l.contains("prefix writes"))
        .and_then(|l| ms_after(l, "policy writes in"));
    println!(
        "{:<44} {:>9.1} ms  (until it answers; the daemon's own apply: {:.1} ms)",
        "steer run, 1M loaded from nothing",
        ms(start),
        applied.unwrap_or(f64::NAN)
    );
    memory("after the load");

    let reload = || {
        let t = Instant::now();
        let out = work.steer_ok(&["reload"]);
        (t.elapsed(), out)
    };
    let mut unchanged = Vec::new();
    let mut checked = Vec::new();
    for _ in 0..RUNS {
        let (took, out) = reload();
        assert!(out.contains("are unchanged"), "{out}");
        assert!(out.contains("0 map writes in all"), "{out}");
        unchanged.push(took);
        checked.extend(ms_after(&out, "checked in"));
    }
    checked.sort_by(f64::total_cmp);
    let unchanged = median(unchanged);
    println!(
        "{:<44} {:>9.1} ms  (check: read + hash the files {:.1} ms; 0 map writes)",
        "steer reload, nothing changed (median)",
        ms(unchanged),
        checked[checked.len() / 2]
    );

    let mut one = Vec::new();
    let mut steps: Vec<[f64; 5]> = Vec::new();
    let mut changed = set.to_vec();
    for i in 0..RUNS {
        changed[N_HALF] = Prefix::truncating(
            std::net::IpAddr::V4(std::net::Ipv4Addr::new(172, 31, i as u8, 0)),
            24,
        )
        .unwrap();
        work.write("lists/big.txt", &list_text(&changed));
        settle_file();
        let (took, out) = reload();
        assert!(out.contains("only a list of set big changed"), "{out}");
        assert!(out.contains("1 added, 0 changed, 1 removed"), "{out}");
        one.push(took);
        steps.push([
            ms_after(&out, "files checked in").unwrap_or(f64::NAN),
            ms_after(&out, "lines parsed in").unwrap_or(f64::NAN),
            ms_after(&out, "merged against the set in").unwrap_or(f64::NAN),
            out.lines()
                .find(|l| l.contains("of it in the kernel"))
                .and_then(|l| ms_after(l, "ms ("))
                .unwrap_or(f64::NAN),
            out.lines()
                .find(|l| l.contains("prefix writes"))
                .and_then(|l| ms_after(l, "policy writes in"))
                .unwrap_or(f64::NAN),
        ]);
    }
    let step = |k: usize| {
        let mut v: Vec<f64> = steps.iter().map(|s| s[k]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let one_line = median(one);
    println!("steer reload, one changed line (median of {RUNS}; 1 added, 1 removed):");
    println!(
        "{:<44} {:>9.1} ms",
        "  check (read + hash every file)",
        step(0)
    );
    println!(
        "{:<44} {:>9.1} ms  ({:.0} ns/line)",
        "  parse the changed list",
        step(1),
        step(1) * 1e6 / set.len() as f64
    );
    println!(
        "{:<44} {:>9.1} ms",
        "  diff (sorted merge against the set)",
        step(2)
    );
    println!("{:<44} {:>9.1} ms", "  compile", 0.0);
    println!("{:<44} {:>9.2} ms", "  kernel", step(3));
    println!("{:<44} {:>9.1} ms", "  in the daemon, all told", step(4));
    println!(
        "{:<44} {:>9.1} ms  (target <= 150 ms)",
        "  end to end (`steer reload` process)",
        ms(one_line)
    );
    memory("after the reloads");

    // The configuration file changed: the full path, in the same daemon.
    let mut full = Vec::new();
    for i in 0..2 {
        work.write("steer.toml", &format!("{toml}# edit {i}\n"));
        settle_file();
        let (took, out) = reload();
        assert!(!out.contains("only a list"), "{out}");
        full.push(took);
    }
    println!(
        "{:<44} {:>9.1} ms  (the full path: everything read, compiled, diffed)",
        "steer reload, configuration file changed",
        ms(median(full))
    );
    memory("after full reloads");
    let runtime_add = runtime_edits(&work, set);
    drop(daemon);
    DaemonTimes {
        start,
        unchanged,
        one_line,
        runtime_add,
    }
}

/// `steer set big add` of one prefix into the 1M-prefix set: the whole CLI process (what
/// `ipset add` is timed as), the daemon's own time with its kernel part, and the control
/// socket round trip without the process start. Returns the CLI's median.
fn runtime_edits(work: &steer_tests::daemon::Workdir, set: &[Prefix]) -> Duration {
    const RUNS: usize = 20;
    // Host prefixes the 1M set does not hold, in /16s it uses.
    let held: std::collections::HashSet<&Prefix> = set.iter().collect();
    let fresh: Vec<String> = set
        .iter()
        .filter(|p| p.is_v4())
        .map(|p| Prefix::host(p.addr()))
        .filter(|p| !held.contains(p))
        .take(2 * RUNS)
        .map(|p| p.to_string())
        .collect();
    let mut cli = Vec::new();
    let mut applied = Vec::new();
    let mut check = Vec::new();
    let mut kernel = Vec::new();
    let mut journal = Vec::new();
    for prefix in &fresh[..RUNS] {
        let t = Instant::now();
        let out = work.steer_ok(&["set", "big", "add", prefix]);
        cli.push(t.elapsed());
        assert!(out.contains("1 added"), "{out}");
        applied.extend(ms_after(&out, "applied in"));
        check.extend(ms_after(&out, "check"));
        kernel.extend(ms_after(&out, "kernel"));
        journal.extend(ms_after(&out, "journal"));
        work.steer_ok(&["set", "big", "del", prefix]);
    }
    let mut round_trips = Vec::new();
    for prefix in &fresh[RUNS..] {
        let request = |op| steer::control::Request::Set {
            name: "big".into(),
            op,
            prefixes: vec![prefix.clone()],
            timeout: None,
            batch: None,
        };
        let t = Instant::now();
        let answer = steer::control::call(
            &work.socket,
            &request(steer::control::proto::SetOp::Add),
            Duration::from_secs(5),
        )
        .expect("set add");
        round_trips.push(t.elapsed());
        assert!(answer.ok, "{answer:?}");
        let _ = steer::control::call(
            &work.socket,
            &request(steer::control::proto::SetOp::Del),
            Duration::from_secs(5),
        );
    }
    let mid = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let cli = median(cli);
    println!("steer set big add PREFIX, one prefix into the 1M set (median of {RUNS}):");
    println!(
        "{:<44} {:>9.3} ms",
        "  check (parse, against the sets)",
        mid(check)
    );
    println!("{:<44} {:>9.3} ms", "  kernel", mid(kernel));
    println!("{:<44} {:>9.3} ms", "  journal", mid(journal));
    println!(
        "{:<44} {:>9.3} ms",
        "  in the daemon, all told",
        mid(applied)
    );
    println!(
        "{:<44} {:>9.3} ms  (target <= 1 ms)",
        "  control socket round trip",
        ms(median(round_trips))
    );
    println!(
        "{:<44} {:>9.1} ms",
        "  end to end (`steer set` process)",
        ms(cli)
    );
    cli
}

const N_HALF: usize = 500_000;

struct Baselines {
    nft_load: Duration,
    nft_add: Duration,
    nft_plain_add: Duration,
    ipset_load: Duration,
    ipset_add: Duration,
}

/// nftables and ipset holding the same 1M prefixes, in a namespace of their own: loading them,
/// then adding one element (median of 5), each command timed as a whole process.
fn set_baselines(set: &[Prefix]) -> Baselines {
    use steer_tests::netns::Netns;
    println!(
        "\n-- baselines in a namespace of their own: nft (interval set, auto-merge) and ipset (hash:net)"
    );
    let ns = Netns::new("bench-sets");
    let dir = std::env::temp_dir().join(format!("steer-bench-sets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let timed = |cmd: &str| {
        let t = Instant::now();
        ns.run(cmd);
        t.elapsed()
    };
    let floor = median((0..5).map(|_| timed("true")).collect());
    // The parser alone, in this process: ns per line of a 1M-line list.
    let text = set.iter().map(|p| format!("{p}\n")).collect::<String>();
    let parse = median(
        (0..3)
            .map(|_| {
                let t = Instant::now();
                let listed = steer::config::parse_list_bytes(text.as_bytes(), false).expect("list");
                assert_eq!(listed.len(), set.len());
                t.elapsed()
            })
            .collect(),
    );
    println!(
        "{:<44} {:>9.1} ms  ({:.0} ns/line; in-process, median of 3)",
        "parse_list_bytes: the 1M-line list",
        ms(parse),
        parse.as_nanos() as f64 / set.len() as f64
    );
    drop(text);
    let mut nft = String::from(
        "table inet bench {\n\tset s { type ipv4_addr; flags interval; auto-merge; }\n}\n",
    );
    for chunk in set.chunks(10_000) {
        nft.push_str("add element inet bench s { ");
        for (i, p) in chunk.iter().enumerate() {
            if i > 0 {
                nft.push_str(", ");
            }
            nft.push_str(&p.to_string());
        }
        nft.push_str(" }\n");
    }
    std::fs::write(dir.join("nft"), nft).expect("nft script");
    let nft_load = timed(&format!("nft -f {}", dir.join("nft").display()));
    let add = |fmt: &dyn Fn(u8) -> String| median((0..5u8).map(|i| timed(&fmt(i))).collect());
    let nft_add = add(&|i| format!("nft add element inet bench s {{ 172.30.{i}.0/24 }}"));
    let _ = ns.try_run("nft delete table inet bench");
    // Without auto-merge (an add then does not read the whole set back): the set holds the
    // prefixes that do not overlap an earlier one, as an interval set without it must.
    let mut sorted = set.to_vec();
    sorted.sort_unstable();
    let mut disjoint: Vec<Prefix> = Vec::with_capacity(sorted.len());
    for p in sorted {
        if disjoint.last().is_none_or(|q| !q.contains(p.addr())) {
            disjoint.push(p);
        }
    }
    let mut plain =
        String::from("table inet bench {\n\tset s { type ipv4_addr; flags interval; }\n}\n");
    for chunk in disjoint.chunks(10_000) {
        plain.push_str("add element inet bench s { ");
        for (i, p) in chunk.iter().enumerate() {
            if i > 0 {
                plain.push_str(", ");
            }
            plain.push_str(&p.to_string());
        }
        plain.push_str(" }\n");
    }
    std::fs::write(dir.join("nft-plain"), plain).expect("nft script");
    let disjoint_len = disjoint.len();
    let nft_plain_load = timed(&format!("nft -f {}", dir.join("nft-plain").display()));
    // Addresses no element holds (an interval set without auto-merge refuses an overlap).
    let free: Vec<std::net::Ipv4Addr> = (0u32..)
        .map(|a| std::net::Ipv4Addr::from(a.wrapping_mul(0x9e37_79b9)))
        .filter(|a| {
            let at = disjoint.partition_point(|p| p.addr() <= std::net::IpAddr::V4(*a));
            at == 0 || !disjoint[at - 1].contains(std::net::IpAddr::V4(*a))
        })
        .take(5)
        .collect();
    let nft_plain_add =
        add(&|i| format!("nft add element inet bench s {{ {} }}", free[i as usize]));
    let mut ipset = format!(
        "create bench hash:net family inet maxelem {}\n",
        set.len() * 2
    );
    for p in set {
        ipset.push_str(&format!("add bench {p}\n"));
    }
    std::fs::write(dir.join("ipset"), ipset).expect("ipset file");
    let ipset_load = timed(&format!("ipset restore -f {}", dir.join("ipset").display()));
    let ipset_add = add(&|i| format!("ipset add bench 172.30.{i}.0/24"));
    let _ = ns.try_run("nft delete table inet bench; ipset destroy bench");
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{:<44} {:>9.1} ms  (`ip netns exec <ns> true` alone: {:.1} ms, included in each)",
        "nft -f: 1M-element interval set from nothing",
        ms(nft_load),
        ms(floor)
    );
    println!(
        "{:<44} {:>9.1} ms  (median of 5; auto-merge reads the set back)",
        "nft add element: one prefix",
        ms(nft_add)
    );
    println!(
        "{:<44} {:>9.1} ms  ({} disjoint elements, no auto-merge)",
        "nft -f: interval set without auto-merge",
        ms(nft_plain_load),
        disjoint_len
    );
    println!(
        "{:<44} {:>9.1} ms  (median of 5)",
        "nft add element, no auto-merge",
        ms(nft_plain_add)
    );
    println!(
        "{:<44} {:>9.1} ms",
        "ipset restore: 1M-entry hash:net from nothing",
        ms(ipset_load)
    );
    println!(
        "{:<44} {:>9.1} ms  (median of 5)",
        "ipset add: one prefix",
        ms(ipset_add)
    );
    Baselines {
        nft_load,
        nft_add,
        nft_plain_add,
        ipset_load,
        ipset_add,
    }
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
    let busy = silent_cut_under_ping(&s, RUNS);
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
    println!("  (a one-way UDP stream: nothing it sends asks, so the probes find the fault)");
    let (outages, detections): (Vec<Duration>, Vec<Duration>) = busy.into_iter().unzip();
    report_failover(
        "silent, ping every 5 ms",
        &outages,
        bound,
        "down_after x interval",
    );
    println!(
        "  (the longest the pinging client went without a reply; the traffic's silence is the first sign)"
    );
    report_failover(
        "  its detection",
        &detections,
        Duration::from_millis(100),
        "the 100 ms target",
    );
    probe_counts(&s);
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
    // The daemon's own decision -> ACTIVE written, from its failover lines.
    let mut switched: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("wan1 down ("))
        .filter_map(switched_us)
        .collect();
    switched.sort_by(f64::total_cmp);
    if !switched.is_empty() {
        let precomputed = log
            .lines()
            .filter(|l| l.contains("wan1 down (") && l.contains("precomputed standby"))
            .count();
        println!(
            "daemon: decision -> kernel on wan1 down: median {:.1} µs, min {:.1}, max {:.1} over {} failovers ({precomputed} by a precomputed standby)",
            switched[switched.len() / 2],
            switched[0],
            switched[switched.len() - 1],
            switched.len()
        );
    }
    switch_ratio(&s.work);
}

/// "switched in 12 µs" / "switched in 0.52 ms" of a failover line, in µs.
fn switched_us(line: &str) -> Option<f64> {
    let rest = line.split_once("switched in ")?.1;
    let mut words = rest.split_whitespace();
    let value: f64 = words.next()?.parse().ok()?;
    match words.next()? {
        "µs" => Some(value),
        u if u.starts_with("ms") => Some(value * 1e3),
        _ => None,
    }
}

/// Failover decision -> kernel, in-process on the lab's configuration: a precomputed standby
/// (one word written) against write-then-flip (the table computed, written to the scratch
/// generation, then flipped), alternating in the same run.
fn switch_ratio(work: &steer_tests::daemon::Workdir) {
    use std::collections::BTreeMap;

    use steer::controller::{desired, desired::policy_table};
    use steer_tests::scenario::{Options, config_text};

    const ROUNDS: usize = 200;
    let cfg = work.load_config(&config_text(work, &Options::default()));
    let mut dp = Dataplane::load().expect("steer loads");
    let d = desired(&cfg, &BTreeMap::new(), &BTreeMap::new(), |_, _| true);
    dp.sync(&d.contents, None).expect("sync");
    let base = d.contents.table.clone();
    let wan1_down = |w: &str, _: Family| w != "wan1";
    let down = policy_table(&cfg, &d.rules, &d.wan_slots, wan1_down).0;
    let (mut written, mut standby) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let table = policy_table(&cfg, &d.rules, &d.wan_slots, wan1_down).0;
        dp.flip_policy(&table).expect("write then flip");
        written.push(t.elapsed());
        dp.flip_policy(&base).expect("back");
        let ready = dp.prepare_standby(&down).expect("standby");
        let before = dp.maps().writes();
        let t = Instant::now();
        dp.flip_to_standby(ready).expect("flip");
        standby.push(t.elapsed());
        assert_eq!(dp.maps().writes() - before, 1);
        dp.flip_policy(&base).expect("back");
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e6
    };
    let (w, p) = (median(&mut written), median(&mut standby));
    println!(
        "failover decision -> kernel (in-process, {ROUNDS} rounds each): precomputed standby {p:.1} µs, write-then-flip {w:.1} µs; {:.3}x ({:.0}x faster)",
        p / w,
        w / p
    );
}

/// Silent upstream loss while the client pings through WAN 1 every 5 ms: (the longest the
/// client went without a reply, the daemon's detection time), per run.
fn silent_cut_under_ping(
    s: &steer_tests::scenario::Scenario,
    runs: usize,
) -> Vec<(Duration, Duration)> {
    use steer_tests::lab::{
        Lab, Wan,
        ping::{ClientPing, epoch_now},
    };
    (0..runs)
        .map(|_| {
            let ping = ClientPing::start(&s.lab, &s.work.dir, Lab::SERVER_A.into(), 5, 6);
            // Answered traffic arms the detector and quiets the probes.
            std::thread::sleep(Duration::from_millis(1_500));
            let cut = epoch_now();
            s.lab.blackhole_upstream(Wan::One);
            s.wait_wan("wan1", "down", Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(800));
            let outage = ping
                .longest_gap_ms(cut - 0.2)
                .expect("replies around the cut");
            drop(ping);
            s.lab.restore_upstream(Wan::One);
            s.wait_wan("wan1", "up", Duration::from_secs(10));
            let log = s.daemon.log_text();
            let detected = log
                .lines()
                .rev()
                .find(|l| l.contains("wan1 down ("))
                .and_then(|l| ms_after(l, "detected in"))
                .expect("a detection time");
            (
                Duration::from_secs_f64(outage / 1e3),
                Duration::from_secs_f64(detected / 1e3),
            )
        })
        .collect()
}

/// Probes WAN 1 sends in 10 s idle and in 10 s of answered traffic (the client pinging every
/// 5 ms), from `steer status`.
fn probe_counts(s: &steer_tests::scenario::Scenario) {
    use steer_tests::lab::{Lab, ping::ClientPing};
    const SECS: u64 = 10;
    let sent = || {
        s.status()["wans"][0]["families"][0]["probes"]["packets_out"]
            .as_u64()
            .expect("probe counters in status")
    };
    let window = |busy: bool| {
        let ping = busy.then(|| {
            let p = ClientPing::start(
                &s.lab,
                &s.work.dir,
                Lab::SERVER_A.into(),
                5,
                SECS as u32 + 2,
            );
            std::thread::sleep(Duration::from_millis(500));
            p
        });
        let before = sent();
        std::thread::sleep(Duration::from_secs(SECS));
        let n = sent() - before;
        drop(ping);
        n
    };
    let idle = window(false);
    let busy = window(true);
    println!(
        "probes in {SECS} s, WAN 1 (IPv4)        idle {idle}, with answered traffic {busy}   {:.3}x idle (target <= 0.1x)",
        busy as f64 / idle.max(1) as f64
    );
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
