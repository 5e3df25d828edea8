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
    let profile = profile_router_cpu(router, window);
    std::thread::sleep(window);
    let b = snapshot(lab, router);
    if let Some(mut perf) = profile {
        let _ = perf.wait();
    }
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

/// With `STEER_FWD_PERF=<dir>`, a `perf record -g` of the router CPU over the window, into
/// `<dir>/router<k>.data` (to find where a contender's time goes; it costs time itself, so the
/// figures of such a run are not the benchmark's).
fn profile_router_cpu(router: &Router, window: Duration) -> Option<std::process::Child> {
    let dir = std::env::var("STEER_FWD_PERF").ok()?;
    std::process::Command::new("perf")
        .args(["record", "-q", "-g", "-C"])
        .arg(super::lab::ROUTER_CPU.to_string())
        .arg("-o")
        .arg(format!("{dir}/router{}.data", router.index))
        .args(["--", "sleep"])
        .arg(format!("{:.3}", window.as_secs_f64()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()
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

/// Kernel memory charged to this process's memory cgroup, in bytes: what a set loaded by this
/// process or its children (`nft`, `ipset`) costs, without the machine-wide noise of
/// /proc/meminfo. Read only; cgroup v1 (`memory.kmem.usage_in_bytes`) or v2 (`kernel` in
/// `memory.stat`). `None` where neither is readable.
pub fn kernel_memory() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            let file = format!("/sys/fs/cgroup/memory{path}/memory.kmem.usage_in_bytes");
            if let Ok(v) = std::fs::read_to_string(file) {
                return v.trim().parse().ok();
            }
        } else if controllers.is_empty() {
            let stat = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.stat")).ok();
            if let Some(v) = stat.as_deref().and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("kernel "))
                    .and_then(|n| n.trim().parse().ok())
            }) {
                return Some(v);
            }
        }
    }
    None
}

/// Waits (bounded) until this cgroup's kernel memory stops moving: namespaces of an earlier
/// scenario are torn down asynchronously, and their memory returns while the next set loads.
pub fn settle_kernel_memory() {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = kernel_memory();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        let now = kernel_memory();
        match (last, now) {
            (Some(a), Some(b)) if a.abs_diff(b) < 256 * 1024 => return,
            (None, _) | (_, None) => return,
            _ => last = now,
        }
    }
}
