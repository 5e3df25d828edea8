//! Counting: packets offered, received and delivered, and the router thread's CPU time, over a
//! window while trafgen runs; then medians and ratios.

use std::time::{Duration, Instant};

use super::{
    generator::{Generator, Load},
    lab::{ForwardingLab, Router, set_own_priority, thread_runtime_ns},
};

/// What one measurement window saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Packets per second that reached the sinks.
    pub pps: f64,
    /// Router CPU (its NAPI thread) per delivered packet.
    pub ns_per_packet: f64,
    /// Share of the window the router thread was running: near 1 when the router is the
    /// bottleneck.
    pub busy: f64,
    /// Packets per second the generator offered.
    pub offered_pps: f64,
    /// Share of the delivered packets that left by WAN 2 (the bypass WAN).
    pub wan2_share: f64,
}

const MEASURER_PRIORITY: u32 = 70;

#[derive(Clone, Copy, Debug)]
struct Snapshot {
    at: Instant,
    offered: u64,
    delivered: [u64; 2],
    router_ns: u64,
}

fn snapshot(lab: &ForwardingLab, router: &Router) -> Snapshot {
    let before = Instant::now();
    let router_ns = thread_runtime_ns(router.napi_tid);
    let offered = lab.offered(router.index);
    let delivered = [
        lab.delivered(router.index, 0),
        lab.delivered(router.index, 1),
    ];
    let after = Instant::now();
    Snapshot {
        at: before + (after - before) / 2,
        offered,
        delivered,
        router_ns,
    }
}

/// Runs trafgen into `router` for `warmup + window` and counts over the window.
pub fn measure(
    lab: &ForwardingLab,
    router: &Router,
    config: &std::path::Path,
    warmup: Duration,
    window: Duration,
) -> Sample {
    let start = lab.offered(router.index);
    let mut generator = Generator::start(lab, router, config, Load::Flood);
    generator.wait_flowing(|| lab.offered(router.index) > start);
    // Above every thread of the lab: the readings must not wait for the CPU.
    set_own_priority(MEASURER_PRIORITY);
    std::thread::sleep(warmup);
    let a = snapshot(lab, router);
    std::thread::sleep(window);
    let b = snapshot(lab, router);
    set_own_priority(0);
    drop(generator);
    let secs = (b.at - a.at).as_secs_f64();
    let delivered: [u64; 2] = [0, 1].map(|w| b.delivered[w] - a.delivered[w]);
    let total = delivered[0] + delivered[1];
    let cpu = (b.router_ns - a.router_ns) as f64;
    Sample {
        pps: total as f64 / secs,
        ns_per_packet: if total == 0 {
            f64::NAN
        } else {
            cpu / total as f64
        },
        busy: cpu / (secs * 1e9),
        offered_pps: (b.offered - a.offered) as f64 / secs,
        wan2_share: if total == 0 {
            0.0
        } else {
            delivered[1] as f64 / total as f64
        },
    }
}

/// The median of `v` (NaN-free).
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// (max - min) / median: how much the rounds disagreed.
pub fn spread(v: &[f64]) -> f64 {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (hi - lo) / median(v)
}

/// Kernel memory that grows when a set is loaded: slab, vmalloc and per-CPU allocations, in
/// bytes, from /proc/meminfo (machine-wide, so concurrent activity adds noise).
pub fn kernel_memory() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let (key, rest) = l.split_once(':')?;
            matches!(key, "Slab" | "VmallocUsed" | "Percpu")
                .then(|| rest.split_whitespace().next()?.parse::<u64>().ok())?
        })
        .sum::<u64>()
        * 1024
}
