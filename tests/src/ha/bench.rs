//! `cargo xtask bench vrrp`: how long the client's traffic stops when the master dies, for a
//! steer pair and a keepalived pair (with the notify scripts that bring the WAN up and down,
//! what users run today), with the same adverts, in the same run.
//!
//! Each run: the master (A, priority 250) dies — its links go down, then its process gets
//! SIGKILL — while the client sends a 1 ms UDP stream to the server; the outage is from the
//! moment A's links are down to the arrival of the first datagram sent after it (through B,
//! priority 200). Then A comes back, preempts, and the next run starts. The deaths are spread
//! evenly over one advert interval (the outage depends on how long before the death A's last
//! advert went out). Nothing is asserted: the numbers are printed next to the master-down
//! interval the RFC gives B.

use std::time::{Duration, Instant};

use super::{
    HaLab, Side,
    peers::{Keepalived, KeepalivedOptions, SteerOptions, SteerRouter},
    traffic::Flow,
    wait_for,
};

const RUNS: usize = 7;
const PRIO_A: u8 = 250;
const PRIO_B: u8 = 200;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pair {
    Steer,
    Keepalived,
}

/// The benchmark group.
pub fn run() {
    println!(
        "\n== vrrp: the master dies (links down, then SIGKILL); time until the client's 1 ms UDP \
         stream flows through the new master. A = {PRIO_A}, B = {PRIO_B}; {RUNS} runs each"
    );
    println!(
        "{:<34} {:>8} {:>9} {:>9} {:>9} {:>9}   B's master-down interval",
        "pair", "adverts", "median", "mean", "min", "max"
    );
    let mut means = Vec::new();
    for (pair, interval_ms) in [
        (Pair::Steer, 100),
        (Pair::Keepalived, 100),
        (Pair::Steer, 10),
        (Pair::Keepalived, 10),
    ] {
        let mut v: Vec<f64> = measure(pair, interval_ms)
            .iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect();
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let interval = Duration::from_millis(u64::from(interval_ms));
        let down = interval * 3 + interval * u32::from(256 - u16::from(PRIO_B)) / 256;
        println!(
            "{:<34} {:>5} ms {:>6.1} ms {:>6.1} ms {:>6.1} ms {:>6.1} ms   {:.1} ms",
            match pair {
                Pair::Steer => "steer",
                Pair::Keepalived => "keepalived 2.2.7 + notify scripts",
            },
            interval_ms,
            median,
            mean,
            v[0],
            v[v.len() - 1],
            down.as_secs_f64() * 1e3
        );
        means.push(mean);
    }
    println!(
        "targets (means): steer <= keepalived at 100 ms adverts ({:.1} vs {:.1} ms); steer \
         under 50 ms with 10 ms adverts ({:.1} ms)",
        means[0], means[1], means[2]
    );
}

/// One router of a pair.
enum Router {
    Steer(SteerRouter),
    Keepalived(Keepalived),
}

fn measure(pair: Pair, interval_ms: u32) -> Vec<Duration> {
    let lab = HaLab::new();
    let steer = |priority| SteerOptions {
        priority,
        interval_ms,
        ..SteerOptions::default()
    };
    let keepalived = |priority| KeepalivedOptions {
        priority,
        interval_ms,
        ..KeepalivedOptions::default()
    };
    let start = |side: Side, priority: u8| match pair {
        Pair::Steer => Router::Steer(SteerRouter::start(&lab, side, &steer(priority))),
        Pair::Keepalived => {
            Router::Keepalived(Keepalived::start(lab.router(side), &keepalived(priority)))
        }
    };
    let (mut a, _b) = (start(Side::A, PRIO_A), start(Side::B, PRIO_B));
    let flow = Flow::start(&lab, 7500, Duration::from_millis(1));
    let mut outages = Vec::new();
    let interval = Duration::from_millis(u64::from(interval_ms));
    for run in 0..RUNS as u32 {
        settled(&lab, &flow);
        // The outage depends on when in A's advert cycle it dies: spread the deaths evenly
        // over one interval.
        std::thread::sleep(interval * (2 * run + 1) / (2 * RUNS as u32));
        lab.kill_links(Side::A);
        let dead = Instant::now();
        match &mut a {
            Router::Steer(r) => r.kill9(),
            Router::Keepalived(k) => k.kill9(),
        }
        let back = flow
            .wait_sent_after(dead, Duration::from_secs(10))
            .expect("the traffic resumes through B");
        outages.push(back - dead);
        lab.set_lan(Side::A, true);
        match &mut a {
            Router::Steer(r) => r.restart(&lab),
            Router::Keepalived(k) => k.restart(lab.router(Side::A)),
        }
    }
    outages
}

/// Waits until A is master with its WAN up, B is not, and the traffic flows; then a second more.
fn settled(lab: &HaLab, flow: &Flow) {
    wait_for(
        "A master again",
        Duration::from_secs(30),
        || {
            lab.has_vip(Side::A)
                && lab.wan_up(Side::A)
                && !lab.wan_up(Side::B)
                && !lab.has_vip(Side::B)
        },
        String::new,
    );
    let now = Instant::now();
    flow.wait_sent_after(now, Duration::from_secs(10))
        .expect("the traffic flows through A");
    std::thread::sleep(Duration::from_millis(1000));
}
