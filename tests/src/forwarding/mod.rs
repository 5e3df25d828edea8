//! The forwarding benchmark: steer against nftables and iptables+ipset on the same kind of
//! router, with the same packets, in one run (`cargo xtask bench forwarding`).
//!
//! - [`lab`]: generator → one router per contender → two sinks, the router pinned to one CPU.
//! - [`workload`]: the bypass prefix set and the flows (half to bypass destinations).
//! - [`generator`]: trafgen, pinned to the other CPU.
//! - [`contenders`]: what each router runs; a variant is one more line there.
//! - [`measure`]: counters, the router thread's CPU time, medians.
//! - [`xdp`]: the two raw XDP programs of the plumbing (redirect, drop).

pub mod contenders;
pub mod generator;
pub mod lab;
pub mod measure;
pub mod workload;
pub mod xdp;

use std::time::Duration;

use contenders::{CONTENDERS, Contender, Loaded, Shared};
use generator::TrafgenConfig;
use lab::ForwardingLab;
use measure::{Sample, median, spread};
use workload::Workload;

/// How a run measures.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub rounds: usize,
    pub warmup: Duration,
    pub window: Duration,
    pub flows: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rounds: 5,
            warmup: Duration::from_millis(500),
            window: Duration::from_secs(2),
            flows: 16_384,
        }
    }
}

/// A scenario: a prefix count and family.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub label: &'static str,
    pub count: usize,
    pub v4: bool,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        label: "10k IPv4",
        count: 10_000,
        v4: true,
    },
    Scenario {
        label: "100k IPv4",
        count: 100_000,
        v4: true,
    },
    Scenario {
        label: "1M IPv4",
        count: 1_000_000,
        v4: true,
    },
    Scenario {
        label: "100k IPv6",
        count: 100_000,
        v4: false,
    },
];

/// The results of one scenario.
#[derive(Debug)]
pub struct Results {
    pub scenario: Scenario,
    /// Per contender, the samples of every round.
    pub samples: Vec<Vec<Sample>>,
    pub loads: Vec<Loaded>,
    /// steer's (XDP verdicts used by TC, packets TC classified itself), over the whole run.
    pub steer_paths: Option<(u64, u64)>,
    /// Where a steer router's time goes, from one extra window per steer contender with BPF
    /// run-time statistics on (they cost time themselves, so never during the rounds).
    pub attribution: Vec<Attribution>,
}

/// One steer contender's router CPU per packet, and the part of it in steer's programs.
#[derive(Debug)]
pub struct Attribution {
    pub contender: &'static str,
    pub router_ns: f64,
    pub tc_ns: f64,
    /// For the contenders with XDP.
    pub xdp_ns: Option<f64>,
}

/// Builds the lab for `scenario`, installs every contender and measures `options.rounds` rounds,
/// each running every contender once (the order rotates from round to round).
pub fn run_scenario(scenario: Scenario, contenders: &[Contender], options: &Options) -> Results {
    let w = Workload::new(
        scenario.label,
        scenario.count,
        scenario.v4,
        options.flows,
        0x5eed_0000 + scenario.count as u64 + u64::from(scenario.v4),
    );
    let config = TrafgenConfig::write(&w.trafgen_config());
    let lab = ForwardingLab::new(contenders.len());
    let mut shared = Shared::default();
    let mut loads = Vec::new();
    for (c, router) in contenders.iter().zip(&lab.routers) {
        for layer in c.layers {
            if let Some(loaded) = shared.install(*layer, router, &w) {
                loads.push(loaded);
            }
        }
    }
    let mut samples = vec![Vec::new(); contenders.len()];
    for round in 0..options.rounds {
        for i in 0..contenders.len() {
            let k = (i + round) % contenders.len();
            let s = measure::measure(
                &lab,
                &lab.routers[k],
                &config.path,
                options.warmup,
                options.window,
            );
            samples[k].push(s);
        }
    }
    let steer_paths = shared.steer_paths();
    let attribution = attribute(&lab, &shared, contenders, &config, options);
    Results {
        scenario,
        samples,
        loads,
        steer_paths,
        attribution,
    }
}

/// One window per steer contender with the kernel's BPF run-time statistics on: the programs'
/// nanoseconds per packet next to the router's.
fn attribute(
    lab: &ForwardingLab,
    shared: &Shared,
    contenders: &[Contender],
    config: &TrafgenConfig,
    options: &Options,
) -> Vec<Attribution> {
    use contenders::Layer;
    let Ok(_stats) = aya::sys::enable_stats(aya::sys::Stats::RunTime) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (c, router) in contenders.iter().zip(&lab.routers) {
        if !c
            .layers
            .iter()
            .any(|l| matches!(l, Layer::SteerTc | Layer::SteerXdp))
        {
            continue;
        }
        let Some(before) = shared.steer_program_stats() else {
            continue;
        };
        let s = measure::measure(lab, router, &config.path, options.warmup, options.window);
        let Some(after) = shared.steer_program_stats() else {
            continue;
        };
        // Per delivered packet, like the router's figure (both programs see every packet).
        let per_packet = |i: usize| {
            let runs = after[i].1 - before[i].1;
            let ns = (after[i].0 - before[i].0).as_nanos() as f64;
            if runs == 0 { 0.0 } else { ns / runs as f64 }
        };
        out.push(Attribution {
            contender: c.name,
            router_ns: s.ns_per_packet,
            tc_ns: per_packet(0),
            xdp_ns: c.layers.contains(&Layer::SteerXdp).then(|| per_packet(1)),
        });
    }
    out
}

/// `cargo xtask bench forwarding[/<scenario>]`.
pub fn bench(scenario_filters: &[String]) {
    let missing = contenders::missing_tools();
    assert!(
        missing.is_empty(),
        "the forwarding benchmark needs {}: run `cargo xtask setup`",
        missing.join(", ")
    );
    // A shorter run while working on the benchmark itself: STEER_FWD_ROUNDS=1.
    let rounds = std::env::var("STEER_FWD_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(Options::default().rounds);
    let options = Options {
        rounds,
        ..Options::default()
    };
    println!(
        "\n== forwarding: trafgen -> router -> two WAN sinks; {} flows, half to bypass prefixes; \
         median of {} rounds of {:.1} s, contenders interleaved",
        options.flows,
        options.rounds,
        options.window.as_secs_f64()
    );
    println!(
        "   router work: one NAPI thread pinned to CPU {} (SCHED_FIFO); generator on CPU {}. \
         ns/pkt = that thread's CPU time per delivered packet; busy = its share of the window.",
        lab::ROUTER_CPU,
        lab::GENERATOR_CPU
    );
    let mut all = Vec::new();
    for s in SCENARIOS {
        let wanted = scenario_filters.is_empty()
            || scenario_filters
                .iter()
                .any(|f| s.label.replace(' ', "-").eq_ignore_ascii_case(f));
        if !wanted {
            continue;
        }
        let results = run_scenario(*s, CONTENDERS, &options);
        print_results(&results, CONTENDERS);
        all.push(results);
    }
    print_loads(&all);
}

fn print_results(r: &Results, contenders: &[Contender]) {
    if r.samples.iter().all(Vec::is_empty) {
        return;
    }
    println!(
        "\n-- {} prefixes ({} rounds)\n",
        r.scenario.label,
        r.samples.first().map_or(0, Vec::len)
    );
    println!(
        "{:<31} {:>7} {:>6} {:>6} {:>7} {:>6} {:>6} {:>5} {:>5} {:>11}",
        "contender",
        "kpps",
        "/floor",
        "/nft",
        "ns/pkt",
        "/floor",
        "/nft",
        "busy",
        "wan2",
        "spread p/ns"
    );
    let med =
        |i: usize, f: fn(&Sample) -> f64| median(&r.samples[i].iter().map(f).collect::<Vec<_>>());
    let (floor_pps, floor_ns) = (med(0, |s| s.pps), med(0, |s| s.ns_per_packet));
    let (nft_pps, nft_ns) = (med(1, |s| s.pps), med(1, |s| s.ns_per_packet));
    for (i, c) in contenders.iter().enumerate() {
        let (pps, ns) = (med(i, |s| s.pps), med(i, |s| s.ns_per_packet));
        let wan2 = med(i, |s| s.wan2_share);
        let expected = if c.classifies() { 0.5 } else { 0.0 };
        let flag = if (wan2 - expected).abs() > 0.02 {
            " MARKS WRONG"
        } else {
            ""
        };
        let pps_all: Vec<f64> = r.samples[i].iter().map(|s| s.pps).collect();
        let ns_all: Vec<f64> = r.samples[i].iter().map(|s| s.ns_per_packet).collect();
        println!(
            "{:<31} {:>7.1} {:>6.2} {:>6.2} {:>7.0} {:>6.2} {:>6.2} {:>4.0}% {:>4.0}% {:>4.0}%/{:>3.0}%{flag}",
            c.name,
            pps / 1e3,
            pps / floor_pps,
            pps / nft_pps,
            ns,
            ns / floor_ns,
            ns / nft_ns,
            med(i, |s| s.busy) * 100.0,
            wan2 * 100.0,
            spread(&pps_all) * 100.0,
            spread(&ns_all) * 100.0
        );
    }
    let offered = median(
        &r.samples
            .iter()
            .flatten()
            .map(|s| s.offered_pps)
            .collect::<Vec<_>>(),
    );
    println!(
        "(generator offered {:.0} kpps, median over all windows)",
        offered / 1e3
    );
    for a in &r.attribution {
        let xdp = match a.xdp_ns {
            Some(ns) => format!(" + XDP program {ns:.0} ns"),
            None => String::new(),
        };
        println!(
            "({}, BPF run-time statistics on: router {:.0} ns/pkt, steer's TC program {:.0} ns{xdp})",
            a.contender, a.router_ns, a.tc_ns
        );
    }
    if let Some((meta, tc)) = r.steer_paths {
        println!(
            "(steer: {meta} packets classified in XDP and taken from the metadata by TC, {tc} classified by TC itself)"
        );
    }
}

fn print_loads(all: &[Results]) {
    let rows: Vec<(&str, &Loaded)> = all
        .iter()
        .filter(|r| r.scenario.count >= 100_000)
        .flat_map(|r| r.loads.iter().map(move |l| (r.scenario.label, l)))
        .collect();
    if rows.is_empty() {
        return;
    }
    println!("\n-- loading the bypass set (first load of each kind per scenario)\n");
    println!(
        "{:<10} {:<32} {:>9} {:>11} {:>14}",
        "prefixes", "structure", "load s", "kernel MB", "own account MB"
    );
    println!(
        "(kernel MB: kernel memory charged to this process's cgroup by the load; own account: \
         ipset's memsize, the BPF maps' memlock)"
    );
    let mut seen = std::collections::HashSet::new();
    for (label, l) in rows {
        if !seen.insert((label, l.what)) {
            continue;
        }
        println!(
            "{:<10} {:<32} {:>9.2} {:>11} {:>14}",
            label,
            l.what,
            l.time.as_secs_f64(),
            l.kernel_memory
                .map_or("-".to_owned(), |b| format!("{:.1}", b as f64 / 1e6)),
            l.own_account
                .map_or("-".to_owned(), |b| format!("{:.1}", b as f64 / 1e6))
        );
    }
}
