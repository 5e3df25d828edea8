//! `cargo xtask bench dns`: the forwarder against dnsmasq alone, in the same run.
//!
//! - Throughput: dnsperf (Debian) from the router namespace, 4 clients, 3 alternating rounds
//!   of 3 s against dnsmasq directly (127.0.0.1:5353) and against steer's forwarder
//!   (10.10.0.1:53) in front of it (which goes first alternates), with names of a domain set (every answer goes through the
//!   learner, and a name's first answer each second writes the kernel); the CPU time steer and
//!   dnsmasq spend per relayed query.
//! - Added latency: closed-loop queries one at a time, the two paths taking turns query by
//!   query (so the machine's load weighs on both alike); p50/p99 of each and the difference.
//! - First packets: 1,000 fresh names, each connected to the moment its answer arrives; how many
//!   first packets left by the wrong WAN.
//! - Snoop mode: answers from a resolver on the internet held until learned; the daemon's
//!   answer-to-verdict latency, and the client's query latency with the daemon and without it
//!   (the queue then has no listener and answers pass unseen).

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use steer::dns::wire;

use crate::{
    dns::{
        DnsScenario, Dnsmasq, FORWARDER, FirstPackets, UPSTREAM, exchange, host_v4, hosts_file,
        resolve_and_connect,
    },
    lab::Wan,
    netns::Netns,
};

const NAMES: usize = 10_000;
/// dnsperf rounds per path, and seconds per round.
const ROUNDS: usize = 3;
const SECONDS: u32 = 3;

/// User and system CPU time of a process so far, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last `)`.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let field = |n: usize| -> u64 {
        rest.split_whitespace()
            .nth(n - 3)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0)
    };
    field(14) + field(15)
}

fn hosts(dir: &Path, prefix: &str, first_host: usize) -> String {
    hosts_file(
        dir,
        &format!("{prefix}-hosts"),
        (0..NAMES).map(|i| format!("{} {prefix}{i}.fresh.example", host_v4(first_host + i))),
    )
}

/// dnsperf's queries per second and average latency (s) against `server`.
fn dnsperf(t: &DnsScenario, server: SocketAddr, data: &Path) -> (f64, f64) {
    let out = t.s.lab.router.try_run(&format!(
        "dnsperf -s {} -p {} -d {} -l {SECONDS} -c 4 -q 200 -t 2",
        server.ip(),
        server.port(),
        data.display()
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("dnsperf printed no `{name}`:\n{text}"))
    };
    (field("Queries per second:"), field("Average Latency (s):"))
}

/// p50 and p99 (µs) of `n` closed-loop queries from `ns` to `server` for the names
/// `{prefix}{i}.fresh.example`.
fn closed_loop(ns: &Netns, server: SocketAddr, n: usize, prefix: &str) -> (f64, f64) {
    let mut v: Vec<f64> = ns.enter(|| {
        (0..n)
            .map(|i| {
                let name = format!("{prefix}{}.fresh.example", i % NAMES);
                let q = wire::query(i as u16, &name, wire::rtype::A);
                let started = Instant::now();
                exchange(server, &q, Duration::from_secs(2)).expect("an answer");
                started.elapsed().as_secs_f64() * 1e6
            })
            .collect()
    });
    v.sort_by(f64::total_cmp);
    (v[n / 2], v[n * 99 / 100])
}

/// p50 and p99 (µs) of each of `servers`, asked in turn (one query to each, then the next
/// name): a burst of load on the machine weighs on every path alike instead of on whichever
/// ran while it lasted.
fn closed_loop_interleaved<const N: usize>(
    ns: &Netns,
    servers: [SocketAddr; N],
    n: usize,
    prefix: &str,
) -> [(f64, f64); N] {
    let mut v: [Vec<f64>; N] = std::array::from_fn(|_| Vec::with_capacity(n));
    ns.enter(|| {
        for i in 0..n {
            let name = format!("{prefix}{}.fresh.example", i % NAMES);
            let q = wire::query(i as u16, &name, wire::rtype::A);
            for j in 0..N {
                // Which path goes first alternates too.
                let k = (j + i) % N;
                let started = Instant::now();
                exchange(servers[k], &q, Duration::from_secs(2)).expect("an answer");
                v[k].push(started.elapsed().as_secs_f64() * 1e6);
            }
        }
    });
    v.map(|mut v| {
        v.sort_by(f64::total_cmp);
        (v[n / 2], v[n * 99 / 100])
    })
}

/// The histogram of what was recorded between `before` and `now` (two status snapshots).
fn since(now: &serde_json::Value, before: &serde_json::Value) -> serde_json::Value {
    let counts = |h: &serde_json::Value| -> Vec<u64> {
        h["counts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_u64())
            .collect()
    };
    let (a, b) = (counts(now), counts(before));
    let diff: Vec<u64> = a
        .iter()
        .enumerate()
        .map(|(i, n)| n.saturating_sub(b.get(i).copied().unwrap_or(0)))
        .collect();
    serde_json::json!({
        "bounds_us": now["bounds_us"].clone(),
        "counts": diff,
        "count": diff.iter().sum::<u64>(),
    })
}

fn pct(h: &serde_json::Value, q: f64) -> String {
    let counts: Vec<u64> = h["counts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_u64())
        .collect();
    let bounds: Vec<u64> = h["bounds_us"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_u64())
        .collect();
    let total: u64 = counts.iter().sum();
    let want = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= want {
            return bounds
                .get(i)
                .map_or("> 5 s".into(), |b| format!("<= {b} us"));
        }
    }
    "-".into()
}

pub fn run() {
    println!(
        "\n== dns: steer's forwarder in front of dnsmasq 2.90 vs dnsmasq alone (same run, router namespace)"
    );
    let t = DnsScenario::start("bench-dns", "", |dir| vec![hosts(dir, "n", 256)]);
    let data = t.s.work.dir.join("queries.txt");
    let mut q = String::new();
    for i in 0..NAMES {
        q.push_str(&format!("n{i}.fresh.example A\n"));
    }
    std::fs::write(&data, q).expect("query file");
    let alone: SocketAddr = UPSTREAM.parse().expect("addr");
    let steer: SocketAddr = FORWARDER.parse().expect("addr");
    // Warm both (dnsmasq's hosts are in memory; steer learns every name once).
    let _ = closed_loop(&t.s.lab.router, steer, NAMES, "n");
    // Alternating rounds, so that the load of the machine weighs on both alike.
    let (steer_pid, dnsmasq_pid) = (t.s.daemon.pid(), t.dnsmasq.pid().expect("dnsmasq runs"));
    let mut ratios = Vec::new();
    let (mut steer_cpu, mut dnsmasq_cpu, mut relayed) = (0u64, 0u64, 0.0);
    for round in 1..=ROUNDS {
        // Which path goes first alternates from round to round.
        let mut via_steer = || {
            let before = (cpu_ticks(steer_pid), cpu_ticks(dnsmasq_pid));
            let r = dnsperf(&t, steer, &data);
            steer_cpu += cpu_ticks(steer_pid) - before.0;
            dnsmasq_cpu += cpu_ticks(dnsmasq_pid) - before.1;
            r
        };
        let ((qps_alone, avg_alone), (qps_steer, avg_steer)) = if round % 2 == 1 {
            let a = dnsperf(&t, alone, &data);
            (a, via_steer())
        } else {
            let s = via_steer();
            (dnsperf(&t, alone, &data), s)
        };
        relayed += qps_steer * SECONDS as f64;
        ratios.push(qps_steer / qps_alone);
        println!(
            "round {round}: dnsmasq alone {qps_alone:>8.0} q/s (avg {:>6.0} us)   steer -> dnsmasq {qps_steer:>8.0} q/s (avg {:>6.0} us)   {:.2}x",
            avg_alone * 1e6,
            avg_steer * 1e6,
            qps_steer / qps_alone
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "throughput: median {:.2}x dnsmasq-alone (target >= 0.8x); CPU per relayed query: steer {:.1} us, dnsmasq {:.1} us",
        ratios[ratios.len() / 2],
        steer_cpu as f64 * 1e4 / relayed,
        dnsmasq_cpu as f64 * 1e4 / relayed
    );
    let upstream_before = t.s.status()["dns"]["latency"]["upstream"].clone();
    let [(p50_a, p99_a), (p50_s, p99_s)] =
        closed_loop_interleaved(&t.s.lab.router, [alone, steer], 5000, "n");
    let upstream = since(
        &t.s.status()["dns"]["latency"]["upstream"],
        &upstream_before,
    );
    println!("closed loop, 5000 queries one at a time to each path, the paths taking turns:");
    println!(
        "{:<28} p50 {:>7.1} us   p99 {:>7.1} us",
        "dnsmasq alone", p50_a, p99_a
    );
    println!(
        "{:<28} p50 {:>7.1} us   p99 {:>7.1} us   added p50 {:+.1} us, p99 {:+.1} us (target <= 1000 us); {:.2}x / {:.2}x",
        "steer -> dnsmasq",
        p50_s,
        p99_s,
        p50_s - p50_a,
        p99_s - p99_a,
        p50_s / p50_a,
        p99_s / p99_a
    );
    // Where steer's tail comes from: its own wait for dnsmasq (query sent upstream to answer
    // read, as the daemon sees it) against the whole path the client sees.
    println!(
        "  of which steer -> dnsmasq -> steer (daemon's view, same queries): p50 {}, p99 {}",
        pct(&upstream, 0.5),
        pct(&upstream, 0.99)
    );
    let st = t.s.status();
    let insert = &st["dns"]["latency"]["insert"];
    println!(
        "kernel writes per answer (daemon): p50 {}, p99 {} over {} answers",
        pct(insert, 0.5),
        pct(insert, 0.99),
        insert["count"]
    );

    // First packets of fresh names (not asked before).
    let rx = FirstPackets::start(&t.s.lab, 9996);
    t.s.lab.client.enter(|| {
        for i in 0..1000u64 {
            resolve_and_connect(steer, &format!("n{}.fresh.example", 9000 + i), i, 9996);
        }
    });
    let seen = rx.wait(1000, Duration::from_secs(5));
    let missed = seen.values().filter(|w| **w != Some(Wan::Two)).count();
    println!(
        "first packets of 1000 fresh names on the set's WAN: {} arrived, {missed} misses (target 0)",
        seen.len()
    );
    drop(rx);
    drop(t);
    snoop();
}

fn snoop() {
    let tail = format!(
        "{}\n[dns]\nforward = false\nsnoop = true\n",
        crate::dns::SETS
    );
    let mut t = DnsScenario::start_with("bench-snoop", &tail, |lab, dir| {
        lab.internet.run("ip addr add 203.0.113.53/32 dev lo");
        Dnsmasq::start(
            &lab.internet,
            dir,
            "203.0.113.53:53".parse().expect("addr"),
            &[hosts(dir, "s", 20_000)],
        )
    });
    let server: SocketAddr = "203.0.113.53:53".parse().expect("addr");
    let (p50_on, p99_on) = closed_loop(&t.s.lab.client, server, 3000, "s");
    let snoop = t.s.status()["dns"]["latency"]["snoop"].clone();
    t.s.daemon.kill9();
    let (p50_off, p99_off) = closed_loop(&t.s.lab.client, server, 3000, "s");
    println!("snoop mode, 3000 answers from a resolver on the internet, held until learned:");
    println!(
        "answer-to-insert (daemon: queued answer to verdict): p50 {}, p99 {} over {} answers",
        pct(&snoop, 0.5),
        pct(&snoop, 0.99),
        snoop["count"]
    );
    println!(
        "client query latency: with snoop p50 {p50_on:.1} us p99 {p99_on:.1} us; without (daemon gone, queue bypassed) p50 {p50_off:.1} us p99 {p99_off:.1} us; added p50 {:+.1} us, p99 {:+.1} us",
        p50_on - p50_off,
        p99_on - p99_off
    );
}
