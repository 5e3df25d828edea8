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
//! interval the RFC gives B. Each run also prints what the client's wire showed (A's last
//! advert, B's first advert, that is its decision, B's gratuitous ARP, the client's first
//! datagram to B's MAC address), so an outlier says whether B decided late or the traffic did
//! not follow its decision; a run slower than the master-down interval plus one interval
//! prints B's log of it.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use super::{
    HaLab, Side, VIP,
    peers::{Keepalived, KeepalivedOptions, SteerOptions, SteerRouter},
    traffic::Flow,
    wait_for,
    wire::{Frame, Kind, Sniffer},
};

const RUNS: usize = 10;
const PRIO_A: u8 = 250;
const PRIO_B: u8 = 200;
/// The client's stream goes to this UDP port.
const PORT: u16 = 7500;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pair {
    Steer,
    Keepalived,
}

/// The benchmark group.
pub fn run() {
    println!(
        "\n== vrrp: the master dies (links down, then SIGKILL); time until the client's 1 ms UDP \
         stream flows through the new master. A = {PRIO_A}, B = {PRIO_B}; {RUNS} runs each, the \
         deaths spread over one advert interval"
    );
    println!(
        "{:<34} {:>8} {:>9} {:>9} {:>9} {:>9} {:>16}   B's master-down interval",
        "pair", "adverts", "median", "mean", "min", "max", "from last advert"
    );
    let mut means = Vec::new();
    let mut notes = Vec::new();
    for (pair, interval_ms) in [
        (Pair::Steer, 100),
        (Pair::Keepalived, 100),
        (Pair::Steer, 10),
        (Pair::Keepalived, 10),
    ] {
        let (runs, steps) = measure(pair, interval_ms);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mut v: Vec<f64> = runs.iter().map(|r| ms(r.outage)).collect();
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let since: Vec<f64> = runs.iter().filter_map(|r| r.since_advert).map(ms).collect();
        let since_mean = since.iter().sum::<f64>() / since.len().max(1) as f64;
        let interval = Duration::from_millis(u64::from(interval_ms));
        let down = down_interval(interval);
        let name = match pair {
            Pair::Steer => "steer",
            Pair::Keepalived => "keepalived 2.2.7 + notify scripts",
        };
        println!(
            "{name:<34} {interval_ms:>5} ms {median:>6.1} ms {mean:>6.1} ms {:>6.1} ms {:>6.1} ms {since_mean:>13.1} ms   {:.1} ms",
            v[0],
            v[v.len() - 1],
            ms(down)
        );
        means.push(mean);
        if let Some(steps) = steps {
            notes.push(format!(
                "steer at {interval_ms} ms: its takeover steps (VIP, announcements, WAN up with \
                 carrier, routes, steering) took {steps:.1} ms on average after the speaker's decision"
            ));
        }
    }
    for n in notes {
        println!("{n}");
    }
    println!(
        "(from last advert: from the last advert of A on the LAN to the first datagram through B, \
         averaged; the master-down interval plus what B does)"
    );
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

/// One death of the master.
struct Run {
    /// From the death to the first datagram through B.
    outage: Duration,
    /// From A's last advert on the LAN to that datagram.
    since_advert: Option<Duration>,
}

/// What the client's wire showed around one death, in ms from the death (negative: before).
#[derive(Default)]
struct Timeline {
    /// A's last advert before the death, and its priority.
    a_last: Option<(f64, u8)>,
    /// Adverts from A after the death (none should be).
    a_after: usize,
    /// B's first advert after the death: B's decision, as the LAN sees it.
    b_advert: Option<f64>,
    /// B's first gratuitous ARP for the virtual address after the death.
    b_garp: Option<f64>,
    /// The client's first datagram to B's MAC address after the death.
    to_b: Option<f64>,
    /// The client's own ARP requests for the virtual address after the death.
    client_arps: usize,
}

impl Timeline {
    fn read(frames: &[Frame], dead: Instant, b_mac: &str) -> Timeline {
        let rel = |at: Instant| {
            if at >= dead {
                (at - dead).as_secs_f64() * 1e3
            } else {
                -(dead - at).as_secs_f64() * 1e3
            }
        };
        let from = |side: Side| IpAddr::V4(side.lan());
        let after = |f: &&Frame| f.at >= dead;
        let mut t = Timeline {
            a_last: frames
                .iter()
                .filter(|f| f.at < dead)
                .filter(|f| matches!(&f.kind, Kind::Vrrp { src, .. } if *src == from(Side::A)))
                .max_by_key(|f| f.at)
                .map(|f| (rel(f.at), f.priority().unwrap_or(0))),
            ..Timeline::default()
        };
        for f in frames.iter().filter(after) {
            match &f.kind {
                Kind::Vrrp { src, .. } if *src == from(Side::A) => t.a_after += 1,
                Kind::Vrrp { src, .. } if *src == from(Side::B) => {
                    t.b_advert.get_or_insert(rel(f.at));
                }
                Kind::Arp { sender, .. } if *sender == VIP && f.mac() == b_mac => {
                    t.b_garp.get_or_insert(rel(f.at));
                }
                Kind::Arp { op: 1, target, .. } if *target == VIP && f.mac() != b_mac => {
                    t.client_arps += 1;
                }
                Kind::Udp { .. } if f.dst() == b_mac => {
                    t.to_b.get_or_insert(rel(f.at));
                }
                _ => {}
            }
        }
        t
    }

    fn words(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:+.1}"));
        format!(
            "A's last advert {} (priority {}){}; B's first advert {}, its GARP {}; the client \
             sends to B's MAC from {}{}",
            ms(self.a_last.map(|a| a.0)),
            self.a_last.map_or(0, |a| a.1),
            if self.a_after > 0 {
                format!(", {} more from A after the death", self.a_after)
            } else {
                String::new()
            },
            ms(self.b_advert),
            ms(self.b_garp),
            ms(self.to_b),
            if self.client_arps > 0 {
                format!(" (after {} ARP requests of its own)", self.client_arps)
            } else {
                String::new()
            },
        )
    }
}

/// The runs, and for a steer pair the mean of B's own takeover steps (from its log).
fn measure(pair: Pair, interval_ms: u32) -> (Vec<Run>, Option<f64>) {
    let lab = HaLab::new();
    let sniff = Sniffer::start_udp(&lab.client, "eth0", Some(PORT));
    let b_mac = lab.lan_mac(Side::B);
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
    let (mut a, b) = (start(Side::A, PRIO_A), start(Side::B, PRIO_B));
    let flow = Flow::start(&lab, PORT, Duration::from_millis(1));
    let name = match pair {
        Pair::Steer => "steer",
        Pair::Keepalived => "keepalived",
    };
    let mut runs = Vec::new();
    let interval = Duration::from_millis(u64::from(interval_ms));
    let from_a = IpAddr::V4(Side::A.lan());
    for run in 0..RUNS as u32 {
        settled(&lab, &flow);
        let b_log_from = b_log(&b).len();
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
        let last = sniff
            .frames()
            .into_iter()
            .filter(|f| f.at < dead && matches!(&f.kind, Kind::Vrrp { src, .. } if *src == from_a))
            .map(|f| f.at)
            .max();
        let outage = back - dead;
        // Let the re-announcements and B's log catch up before reading them.
        std::thread::sleep(Duration::from_millis(50));
        let t = Timeline::read(&sniff.frames(), dead, &b_mac);
        println!(
            "  {name} {interval_ms} ms run {run}: outage {:.1} ms; {}",
            outage.as_secs_f64() * 1e3,
            t.words()
        );
        // A run slower than B's master-down interval plus an interval: B's log of it.
        if outage > down_interval(interval) + interval {
            for l in b_log(&b).get(b_log_from..).unwrap_or_default().lines() {
                println!("      B: {l}");
            }
        }
        runs.push(Run {
            outage,
            since_advert: last.map(|l| back - l),
        });
        lab.set_lan(Side::A, true);
        match &mut a {
            Router::Steer(r) => r.restart(&lab),
            Router::Keepalived(k) => k.restart(lab.router(Side::A)),
        }
    }
    let steps = match &b {
        Router::Steer(r) => {
            let took: Vec<f64> = r
                .log()
                .lines()
                .filter_map(|l| l.split_once("master-only WANs up and steered, "))
                .filter_map(|(_, rest)| rest.split_once(" ms")?.0.parse().ok())
                .collect();
            (!took.is_empty()).then(|| took.iter().sum::<f64>() / took.len() as f64)
        }
        Router::Keepalived(_) => None,
    };
    (runs, steps)
}

/// B's log so far (steer's; keepalived's own).
fn b_log(b: &Router) -> String {
    match b {
        Router::Steer(r) => r.log(),
        Router::Keepalived(k) => k.log(),
    }
}

/// The master-down interval the RFC gives B.
fn down_interval(interval: Duration) -> Duration {
    interval * 3 + interval * u32::from(256 - u16::from(PRIO_B)) / 256
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
