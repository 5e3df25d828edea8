//! [`Health`] with its pacing on a virtual clock: a simulated line, a prober that follows the
//! schedule as `probe::spawn_prober` does (rounds start `interval` after the previous one
//! started, overlap, report themselves late at `late_after`), and the kernel's traffic
//! counters sampled at the controller's pace (every 10 ms while traffic asks, 100 ms
//! otherwise, and before a round cut short is judged). Every case of issue 20 in virtual milliseconds.
//!
//! As in the kernel, the counters' answers include the answers to the probes themselves
//! (`steer_wan_ingress` counts every answer on the WAN), while only the LAN's traffic asks.

use std::time::{Duration, Instant};

use super::{Health, Path, Transition, probe};
use crate::controller::passive::{SAMPLE_BUSY, SAMPLE_IDLE};
use crate::{
    config::{Pacing, ProbeTarget, Track, Wan},
    model::Family,
};

/// How the simulated line answers a probe sent at `t` ms: its round trip, or `None` (lost).
type Line = Box<dyn FnMut(u64) -> Option<u64>>;
/// The LAN traffic's cumulative (asked, answered) at `t` ms; `None`: no sample (no counters).
type Traffic = Box<dyn FnMut(u64) -> Option<(u64, u64)>>;

struct Pending {
    start: u64,
    /// Per target: when its answer arrives (absolute ms), if it does within the timeout.
    answers: Vec<Option<u64>>,
    /// How long it waits for its answers (its schedule's round timeout).
    timeout: u64,
    late_after: u64,
    late_sent: bool,
}

struct Sim {
    health: Health,
    t0: Instant,
    timeout: u64,
    needed: usize,
    line: Line,
    traffic: Traffic,
    last_start: Option<u64>,
    pending: Vec<Pending>,
    rounds: u64,
    /// When each round started (ms).
    starts: Vec<u64>,
    /// (ms, transition)
    changes: Vec<(u64, Transition)>,
    suspected: u64,
    targets: Vec<ProbeTarget>,
    /// Probe answers arrived so far: the kernel counts them as answers too.
    probe_answers: u64,
    /// The kernel's counters of now (asked, answered with the probes' answers), and the ms
    /// of the last ask and the last answer (its timestamps).
    counts: Option<(u64, u64)>,
    /// When the counters are read next (ms).
    next_sample: u64,
    last_ask: Option<u64>,
    last_answer: Option<u64>,
}

fn track(interval_ms: u32, timeout_ms: u32, down_after: u32, up_after: u32) -> Track {
    crate::config::testing::icmp_track(interval_ms, timeout_ms, down_after, up_after)
}

/// The lab's tracking: 100 ms rounds, 80 ms timeout, down after 3, up after 3.
fn lab() -> Track {
    track(100, 80, 3, 3)
}

impl Sim {
    fn new(track: Track, line: Line, traffic: Traffic) -> Sim {
        let t0 = Instant::now();
        let wan = Wan {
            track: track.clone(),
            ..crate::config::testing::wan("wan1", "eth1")
        };
        let mut health = Health::default();
        health.follow(&[wan], |_| true, t0);
        Sim {
            health,
            t0,
            timeout: u64::from(track.timeout_ms),
            needed: track.reliability as usize,
            line,
            traffic,
            last_start: None,
            pending: Vec::new(),
            rounds: 0,
            starts: Vec::new(),
            changes: Vec::new(),
            suspected: 0,
            targets: track.targets,
            probe_answers: 0,
            counts: None,
            next_sample: 0,
            last_ask: None,
            last_answer: None,
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Runs the virtual clock from `from` to `to` ms, one ms at a time.
    fn run(&mut self, from: u64, to: u64) {
        for t in from..to {
            self.step(t);
        }
    }

    fn step(&mut self, t: u64) {
        let now = self.at(t);
        self.probe_answers += self
            .pending
            .iter()
            .flat_map(|p| &p.answers)
            .filter(|a| **a == Some(t))
            .count() as u64;
        self.count(t);
        if t >= self.next_sample {
            self.sample(t);
            // The controller's pace: close while traffic asks or is suspect, slow otherwise.
            let watching = self
                .health
                .watching("wan1", Family::V4, SAMPLE_IDLE, self.at(t));
            let pace = if watching { SAMPLE_BUSY } else { SAMPLE_IDLE };
            self.next_sample = t + pace.as_millis() as u64;
        }
        self.finish_rounds(t);
        let schedule = self
            .health
            .schedule("wan1", Family::V4, now)
            .expect("tracked");
        let due = self
            .last_start
            .is_none_or(|l| t >= l + schedule.interval.as_millis() as u64);
        if due {
            self.last_start = Some(t);
            self.rounds += 1;
            self.starts.push(t);
            let timeout = schedule
                .round_timeout(now, Duration::from_millis(self.timeout))
                .as_millis() as u64;
            let answers = (0..self.targets.len())
                .map(|_| {
                    (self.line)(t)
                        .filter(|rtt| *rtt <= timeout)
                        .map(|rtt| t + rtt)
                })
                .collect();
            self.pending.push(Pending {
                start: t,
                answers,
                timeout,
                late_after: schedule.late_after.as_millis() as u64,
                late_sent: false,
            });
        }
    }

    /// The kernel counting at `t` ms: the counters and the timestamps of the last ask and
    /// answer.
    fn count(&mut self, t: u64) {
        let Some((asked, answered)) = (self.traffic)(t) else {
            return;
        };
        let answered = answered + self.probe_answers;
        let (before_asked, before_answered) = self.counts.unwrap_or_default();
        if asked > before_asked {
            self.last_ask = Some(t);
        }
        if answered > before_answered {
            self.last_answer = Some(t);
        }
        self.counts = Some((asked, answered));
    }

    /// The traffic counters read at `t` ms, as `controller::passive` does.
    fn sample(&mut self, t: u64) {
        let Some((asked, answered)) = self.counts else {
            return;
        };
        let counters = super::passive::Counters {
            asked,
            answered,
            last_ask: self.last_ask.map(|ms| self.at(ms)),
            last_answer: self.last_answer.map(|ms| self.at(ms)),
        };
        if let Some(super::passive::Change::Suspect(_)) =
            self.health
                .traffic("wan1", Family::V4, counters, self.at(t))
        {
            self.suspected += 1;
        }
    }

    fn finish_rounds(&mut self, t: u64) {
        let now = self.at(t);
        let mut i = 0;
        while i < self.pending.len() {
            let t0 = self.t0;
            let p = &mut self.pending[i];
            let answered = p
                .answers
                .iter()
                .filter(|a| a.is_some_and(|a| a <= t))
                .count();
            let all = p.answers.iter().all(Option::is_some);
            let end = if all {
                p.answers.iter().flatten().max().copied().unwrap_or(p.start)
            } else {
                p.start + p.timeout
            };
            if !p.late_sent
                && p.late_after < p.timeout
                && t >= p.start + p.late_after
                && answered < self.needed
            {
                p.late_sent = true;
                let started = t0 + Duration::from_millis(p.start);
                self.health.late("wan1", Family::V4, started, answered);
            }
            if t < end {
                i += 1;
                continue;
            }
            let p = self.pending.remove(i);
            let round = probe::Round {
                started: self.at(p.start),
                outcomes: self
                    .targets
                    .iter()
                    .zip(&p.answers)
                    .map(|(target, a)| {
                        let outcome = match a {
                            Some(at) => {
                                probe::ProbeOutcome::Answered(Duration::from_millis(at - p.start))
                            }
                            None => probe::ProbeOutcome::Timeout,
                        };
                        (target.clone(), outcome)
                    })
                    .collect(),
                cut_short: p.timeout < self.timeout,
            };
            if round.cut_short {
                // As the controller does: the counters first.
                self.sample(t);
            }
            if let Some(v) = self.health.round("wan1", Family::V4, &round, now) {
                self.changes.push((t, v.transition));
            }
        }
    }

    fn up(&self) -> bool {
        self.health.up("wan1", Family::V4)
    }

    fn downs(&self) -> Vec<&(u64, Transition)> {
        self.changes.iter().filter(|(_, c)| !c.up).collect()
    }
}

/// A deterministic generator for loss (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// A line that answers in `rtt` ms until `cut` ms, then never.
fn cut_at(rtt: u64, cut: u64) -> Line {
    Box::new(move |t| (t < cut).then_some(rtt))
}

/// The traffic counters are not read (`passive = false`, or no WAN programs).
fn no_counters() -> Traffic {
    Box::new(|_| None)
}

/// The counters are read, and the LAN sends nothing: only the probes' answers count.
fn idle_lan() -> Traffic {
    Box::new(|_| Some((0, 0)))
}

/// Busy two-way traffic: 10 packets out a ms, each answered `rtt` ms later, until `cut`;
/// after it the asks go on and nothing comes back.
fn two_way(rtt: u64, cut: u64) -> Traffic {
    Box::new(move |t| {
        let asked = t * 10;
        let answered = t.min(cut).saturating_sub(rtt) * 10;
        Some((asked, answered))
    })
}

/// Cut -> down (virtual ms) for a cut at every phase of the 100 ms round schedule.
fn idle_cut_detections(counters: fn() -> Traffic) -> Vec<u64> {
    let mut detections = Vec::new();
    for phase in (0..100).step_by(7) {
        let cut = 5_000 + phase;
        let mut sim = Sim::new(lab(), cut_at(1, cut), counters());
        sim.run(0, cut + 1_000);
        let downs = sim.downs();
        assert_eq!(downs.len(), 1, "phase {phase}: one change to down");
        let (at, tr) = downs[0];
        assert_eq!(tr.path, Path::Probes);
        assert!(tr.cause.contains("3 failed rounds"), "{}", tr.cause);
        detections.push(at - cut);
    }
    detections
}

#[test]
fn idle_silent_cut_is_down_within_about_one_interval_plus_fast_probes() {
    let without = idle_cut_detections(no_counters);
    let with = idle_cut_detections(idle_lan);
    eprintln!("idle silent cut -> down (virtual ms, by phase), probes alone: {without:?}");
    eprintln!("idle silent cut -> down (virtual ms, by phase), with the counters: {with:?}");
    for detections in [&without, &with] {
        let max = *detections.iter().max().unwrap();
        let mean = detections.iter().sum::<u64>() / detections.len() as u64;
        // Without fast probes: the first failed round starts within 100 ms of the cut and the
        // third one ends 2 intervals and a timeout later (up to 380 ms).
        assert!(
            max < 3 * 100,
            "cut -> down in {detections:?} ms: always faster than down_after x interval"
        );
        assert!(
            mean <= 200,
            "cut -> down in {detections:?} ms: {mean} on average"
        );
    }
    // With the counters, the fast rounds after the first late one end when the line has
    // answered nothing for a timeout since that round started: the decision comes with the
    // first late round's own failure, at most one interval and a timeout after the cut.
    assert!(
        with.iter().all(|d| *d <= 100 + 80 + 1),
        "cut -> down in {with:?} ms"
    );
    assert!(with.iter().zip(&without).all(|(w, o)| w <= o));
}

#[test]
fn a_dead_target_of_two_needed_is_found_as_fast_with_the_counters_as_without() {
    // Reliability 2 of 2 targets; the second target dies at `dead` (its probes go unanswered,
    // the first's still answer): the line is not silent, the rounds fail on the dead target.
    let dead = 5_037;
    let down_after_death = |counters: fn() -> Traffic| {
        let mut call = 0u64;
        let line: Line = Box::new(move |t| {
            call += 1;
            (call % 2 == 1 || t < dead).then_some(1)
        });
        let mut lab = lab();
        lab.reliability = 2;
        let mut sim = Sim::new(lab, line, counters());
        sim.run(0, dead + 2_000);
        let downs = sim.downs();
        assert_eq!(downs.len(), 1, "{:?}", sim.changes);
        downs[0].0 - dead
    };
    let (with, without) = (down_after_death(idle_lan), down_after_death(no_counters));
    assert!(
        with <= without,
        "down {with} ms after the death with the counters, {without} without"
    );
    assert!(with < 300, "{with} ms");
}

#[test]
fn probes_go_normal_before_a_cut_and_fast_after_it() {
    let cut = 5_037;
    let mut sim = Sim::new(lab(), cut_at(1, cut), no_counters());
    let mut down_at = None;
    for t in 0..cut + 400 {
        sim.step(t);
        if !sim.up() {
            down_at.get_or_insert(t);
        }
    }
    let down_at = down_at.expect("down");
    let gaps = |from: u64, to: u64| -> Vec<u64> {
        let starts: Vec<u64> = sim
            .starts
            .iter()
            .copied()
            .filter(|s| (from..to).contains(s))
            .collect();
        starts.windows(2).map(|w| w[1] - w[0]).collect()
    };
    let before = gaps(0, cut);
    assert!(
        before.iter().all(|g| *g == 100),
        "before the cut: {before:?}"
    );
    // The first round after the cut goes at the normal pace; it is late (no answer within the
    // 10 ms floor), and the next ones go every failure_interval until down.
    let fast = u64::from(Pacing::defaults(100).failure_interval_ms);
    let first = *sim
        .starts
        .iter()
        .find(|s| **s >= cut)
        .expect("a round after the cut");
    assert_eq!(
        first - sim.starts[sim.starts.iter().position(|s| *s == first).unwrap() - 1],
        100
    );
    let after = gaps(first, down_at);
    assert!(
        !after.is_empty() && after.iter().all(|g| *g == fast),
        "after the cut: {after:?}"
    );
    // Down: back to the normal pace (recovery).
    let down = gaps(down_at, cut + 400);
    assert!(
        down.iter().skip(1).all(|g| *g == 100),
        "while down: {down:?}"
    );
}

#[test]
fn silent_cut_under_two_way_traffic_is_suspected_then_confirmed_by_probes() {
    let cut = 20_005;
    let mut sim = Sim::new(lab(), cut_at(1, cut), two_way(1, cut));
    sim.run(0, cut);
    let quiet = sim.rounds;
    assert!(
        quiet <= 20,
        "{quiet} rounds in 20 s of busy traffic (quiet pace)"
    );
    assert!(sim.up());
    let probing = |sim: &Sim, t: u64| sim.health.probing("wan1", Family::V4, sim.at(t)).unwrap();
    assert_eq!(probing(&sim, cut).silent_for, None);
    sim.run(cut, cut + 70);
    let silent = probing(&sim, cut + 70)
        .silent_for
        .expect("silent, for status");
    assert!(
        (Duration::from_millis(60)..=Duration::from_millis(70)).contains(&silent),
        "{silent:?}: since the last ask the first sample after the cut saw after the last answer"
    );
    sim.run(cut + 70, cut + 1_000);
    let downs = sim.downs();
    assert_eq!(downs.len(), 1);
    let (at, tr) = downs[0];
    assert_eq!(tr.path, Path::Passive, "{}", tr.cause);
    assert!(
        tr.cause.starts_with("passive: ") && tr.cause.contains(" packets out, 0 back in "),
        "{}",
        tr.cause
    );
    assert!(
        tr.cause.contains("confirmed by 3 failed rounds"),
        "{}",
        tr.cause
    );
    let detection = tr.detection.expect("timed");
    eprintln!(
        "busy silent cut -> down in {} virtual ms (detection {detection:?}): {}",
        at - cut,
        tr.cause
    );
    // Suspect after the 50 ms window; the burst's rounds fail once the line has answered
    // nothing for the 80 ms timeout since the first unanswered ask (seen up to one 10 ms
    // sample after the cut), not a whole timeout after the burst starts.
    assert!(
        at - cut <= 80 + 10 + 15,
        "cut -> down in {} ms (the timeout since the first unanswered ask, and a sample)",
        at - cut
    );
    assert!(detection >= Duration::from_millis(at - cut - 20));
    assert_eq!(sim.suspected, 1);
}

/// A request/response conversation (a TCP stream of small requests): a request every 5 ms,
/// answered 1 ms later, the next one sent 4 ms after the answer. After `cut` the request in
/// flight goes unanswered and nothing more asks (TCP waits ~200 ms to retransmit).
fn conversation(cut: u64) -> Traffic {
    Box::new(move |t| {
        let last_request = cut.div_ceil(5) * 5;
        let asked = t.min(last_request) / 5 + 1;
        let answered = (t.min(cut).saturating_sub(1) / 5 + 1).min(asked);
        Some((asked, answered))
    })
}

#[test]
fn a_conversation_s_last_request_is_waited_on_whatever_sample_it_falls_in() {
    // The last request before the cut is often read in the same 10 ms sample as the answer
    // before it: the kernel's timestamps say it went out after that answer, so the wait
    // starts there. Every phase of the sampling.
    for phase in 0..10 {
        let cut = 20_003 + phase;
        let mut sim = Sim::new(lab(), cut_at(1, cut), conversation(cut));
        sim.run(0, cut + 1_000);
        let downs = sim.downs();
        assert_eq!(downs.len(), 1, "phase {phase}");
        let (at, tr) = downs[0];
        assert_eq!(tr.path, Path::Passive, "phase {phase}: {}", tr.cause);
        assert!(
            at - cut <= 80 + 10 + 15,
            "phase {phase}: down {} ms after the cut",
            at - cut
        );
    }
}

#[test]
fn a_silent_cut_after_a_recovery_is_seen_by_the_traffic_again() {
    // Cut at 5 s, restored at 8 s, cut again at 20 s; the LAN asks all along (some of its
    // asks still leave by this WAN while it is down), and is answered while the line is up.
    let (cut1, back, cut2) = (5_005, 8_000, 20_005);
    let up = move |t: u64| t < cut1 || (back..cut2).contains(&t);
    let traffic: Traffic = Box::new(move |t| {
        let answered_ms = t.min(cut1) + t.clamp(back, cut2).saturating_sub(back);
        Some((t * 10, answered_ms.saturating_sub(1) * 10))
    });
    let mut sim = Sim::new(lab(), Box::new(move |t| up(t).then_some(1)), traffic);
    sim.run(0, cut2 + 1_000);
    let downs = sim.downs();
    assert_eq!(downs.len(), 2, "{downs:?}");
    for (at, tr) in &downs {
        assert_eq!(
            tr.path,
            Path::Passive,
            "down at {at} ms: a wait while down must not widen the window: {}",
            tr.cause
        );
    }
    assert!(
        downs[1].0 - cut2 <= 250,
        "second cut -> down in {} ms",
        downs[1].0 - cut2
    );
}

#[test]
fn recovery_keeps_up_after() {
    let cut = 3_000;
    let back = 6_000;
    let line: Line = Box::new(move |t| (!(cut..back).contains(&t)).then_some(1));
    let mut sim = Sim::new(lab(), line, no_counters());
    sim.run(0, back);
    assert!(!sim.up());
    let rounds_down = sim.rounds;
    let mut up_at = None;
    for t in back..back + 2_000 {
        sim.step(t);
        if sim.up() {
            up_at.get_or_insert(sim.rounds - rounds_down);
        }
    }
    let rounds = up_at.expect("back up");
    assert!(
        (3..=4).contains(&rounds),
        "up after {rounds} rounds (up_after 3, at the normal pace)"
    );
    let ups: Vec<_> = sim.changes.iter().filter(|(_, c)| c.up).collect();
    assert!(
        ups[0].1.cause.contains("3 good rounds"),
        "{}",
        ups[0].1.cause
    );
}

#[test]
fn one_way_udp_never_makes_a_wan_suspect_or_down() {
    // 1000 packets/s out, nothing back, healthy probes, 30 s.
    let traffic: Traffic = Box::new(|t| Some((t, 0)));
    let mut sim = Sim::new(lab(), Box::new(|_| Some(1)), traffic);
    sim.run(0, 30_000);
    assert!(sim.changes.is_empty(), "{:?}", sim.changes);
    // The probes' own answers arm the detector: each suspicion is refuted by the next fast
    // round and mutes the following one for 1, 2, 4, 8, 16 s.
    assert!(
        (1..=6).contains(&sim.suspected),
        "{} suspicions in 30 s",
        sim.suspected
    );
    // About the normal pace: a few fast rounds at each suspicion, and now and then a quiet
    // gap (a probe's answer next to the stream's asks looks like answered traffic until the
    // next interval passes without one).
    assert!(
        (250..=320).contains(&sim.rounds),
        "{} rounds: about the normal pace",
        sim.rounds
    );
}

#[test]
fn one_way_udp_after_answered_traffic_costs_a_few_fast_probes_never_a_down() {
    // Answered traffic for a second, then a one-way stream for 60 s.
    let traffic: Traffic = Box::new(|t| Some((t, t.min(1_000))));
    let mut sim = Sim::new(lab(), Box::new(|_| Some(1)), traffic);
    sim.run(0, 61_000);
    assert!(sim.changes.is_empty(), "{:?}", sim.changes);
    // Each refuted suspicion mutes the next for 1, 2, 4, 8, 16, 32 s.
    assert!(
        (1..=7).contains(&sim.suspected),
        "{} suspicions in 60 s",
        sim.suspected
    );
}

#[test]
fn five_percent_loss_is_no_down() {
    // With the counters, a lost round makes the line silent and the next rounds may be cut
    // short; the next answer ends the silence.
    for counters in [no_counters, idle_lan] {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let line: Line = Box::new(move |_| (rng.below(100) >= 5).then_some(2));
        let mut sim = Sim::new(lab(), line, counters());
        // An hour of virtual time.
        sim.run(0, 3_600_000);
        assert!(sim.changes.is_empty(), "{:?}", sim.changes);
        // Lost probes hasten the next rounds a little; far from fast all the time.
        assert!(
            sim.rounds < 36_000 * 12 / 10,
            "{} rounds in an hour at 100 ms",
            sim.rounds
        );
    }
}

#[test]
fn a_line_that_loses_bursts_shorter_than_the_timeout_is_no_down() {
    // Every probe sent in a 60 ms stretch of each 1.73 s is lost (a radio fading; the stretch
    // falls at every phase of the rounds): the rounds after a lost one are cut short at the
    // end of the silence they were sent into, and the next answer ends it first.
    let line: Line = Box::new(|t| (t % 1_730 >= 60).then_some(3));
    let mut sim = Sim::new(lab(), line, idle_lan());
    sim.run(0, 600_000);
    assert!(sim.changes.is_empty(), "{:?}", sim.changes);
}

#[test]
fn a_round_trip_jump_within_the_timeout_is_no_down() {
    // 500 ms rounds, 400 ms timeout; the round trip jumps from 20 to 300 ms at 10 s.
    let line: Line = Box::new(|t| Some(if t < 10_000 { 20 } else { 300 }));
    let traffic: Traffic = Box::new(|t| {
        let rtt = if t < 10_000 { 20 } else { 300 };
        Some((t, t.saturating_sub(rtt)))
    });
    let mut sim = Sim::new(track(500, 400, 3, 3), line, traffic);
    sim.run(0, 60_000);
    assert!(sim.changes.is_empty(), "{:?}", sim.changes);
    let window = sim
        .health
        .probing("wan1", Family::V4, sim.at(60_000))
        .expect("probed")
        .passive_window;
    assert!(
        window >= Duration::from_millis(300),
        "the window adapted to the round trip: {window:?}"
    );
    assert!(
        window <= Duration::from_millis(400),
        "and never past the timeout: {window:?}"
    );
}

#[test]
fn a_round_trip_jump_under_busy_traffic_at_the_lab_pace_is_no_down() {
    // 100 ms rounds, 400 ms timeout: the traffic's silence makes the line suspect and the
    // burst's rounds may fail before their own timeout, but never before the line has
    // answered nothing for the whole timeout; the 300 ms answers come first.
    let jump = 10_000;
    let rtt = move |t: u64| if t < jump { 2 } else { 300 };
    let traffic: Traffic = Box::new(move |t| {
        let answered_by = (0..=t).rev().take_while(|s| s + rtt(*s) > t).count() as u64;
        Some((t * 10, (t + 1 - answered_by) * 10))
    });
    let mut sim = Sim::new(
        track(100, 400, 3, 3),
        Box::new(move |t| Some(rtt(t))),
        traffic,
    );
    sim.run(0, 30_000);
    assert!(sim.changes.is_empty(), "{:?}", sim.changes);
    assert!(sim.suspected >= 1, "the jump made the traffic suspect");
}

#[test]
fn a_wan_answering_only_every_200_ms_is_no_down() {
    // Probes and traffic alike are answered at the next multiple of 200 ms.
    let line: Line = Box::new(|t| Some(200 - t % 200));
    let traffic: Traffic = Box::new(|t| Some((t * 5, (t / 200) * 1_000)));
    let mut sim = Sim::new(track(500, 400, 3, 3), line, traffic);
    sim.run(0, 60_000);
    assert!(sim.changes.is_empty(), "{:?}", sim.changes);
    assert!(sim.suspected <= 2, "{} suspicions", sim.suspected);
}

#[test]
fn busy_two_way_traffic_costs_a_tenth_of_idle_probes() {
    let mut idle = Sim::new(lab(), Box::new(|_| Some(1)), no_counters());
    idle.run(0, 60_000);
    let mut busy = Sim::new(lab(), Box::new(|_| Some(1)), two_way(1, u64::MAX));
    busy.run(0, 60_000);
    eprintln!(
        "rounds in 60 virtual s: idle {}, busy {}",
        idle.rounds, busy.rounds
    );
    assert!(
        busy.rounds * 10 <= idle.rounds,
        "busy {} rounds, idle {}",
        busy.rounds,
        idle.rounds
    );
    // Traffic stops: back to the normal pace.
    let stopped: Traffic = Box::new(|t| Some(if t < 30_000 { (t, t) } else { (30_000, 30_000) }));
    let mut sim = Sim::new(lab(), Box::new(|_| Some(1)), stopped);
    sim.run(0, 30_000);
    let quiet = sim.rounds;
    sim.run(30_000, 40_000);
    assert!(
        sim.rounds - quiet >= 95,
        "{} rounds in the 10 s after the traffic stopped",
        sim.rounds - quiet
    );
}

#[test]
fn probe_cost_is_counted_per_round() {
    let mut sim = Sim::new(lab(), Box::new(|_| Some(1)), no_counters());
    sim.run(0, 1_000);
    let p = sim
        .health
        .probing("wan1", Family::V4, sim.at(1_000))
        .expect("probed");
    assert_eq!(p.rounds, sim.rounds - sim.pending.len() as u64);
    // Two ICMP echo requests and replies a round, 76 bytes each with the IPv4 header.
    assert_eq!(p.wire.packets_out, 2 * p.rounds);
    assert_eq!(p.wire.bytes_out, 2 * 76 * p.rounds);
    assert_eq!(p.wire.bytes_in, 2 * 76 * p.rounds);
    assert_eq!(p.probes_per_day, 2 * 864_000);
    assert_eq!(p.bytes_per_day, 864_000 * 4 * 76);
}
