//! The up/down state machine of one WAN. Pure: it is fed link events, probe rounds and manual
//! overrides, and says when the WAN's state changes and why.
//!
//! - Carrier loss takes the WAN down at once. Carrier back does not bring it up: probing does.
//! - A round passes when at least `reliability` targets (all of the round's, if it has fewer)
//!   answered within the latency limit
//!   (`max_latency_ms` while up, the stricter `recover_latency_ms` while down).
//! - Up -> down after `down_after` failed rounds in a row, or when the loss over the last
//!   `loss_window` rounds exceeds `max_loss_percent`.
//! - Down -> up after `up_after` passed rounds in a row, with carrier, and (if set) the loss
//!   over the window at most `recover_loss_percent`. One good probe never re-promotes a WAN.
//! - The loss is the line's, not a target's: it is counted per target over the window, and
//!   the line's loss is the lowest of them (the target that answers best). A target that is
//!   dead or drops pings (a resolver that stops answering them from one ISP) loses 100% on its
//!   own and says nothing of the line: it neither takes a line down nor holds it down. A
//!   line that loses packets loses them for every target, so its best target still shows it
//!   (over a short window a little less than the true loss: the best of several samples). A
//!   line on which every target goes silent has 100% loss, and fails its rounds anyway.
//!   A target that stays silent while others answer is named in the status.
//! - A manual override (`steer wan NAME up|down`) wins over all of it until `auto`.
//!
//! At start a WAN with carrier is taken as up (the optimistic choice mwan3 makes too: a restart
//! must not move traffic off every line until probes have run); probes take it down within
//! `down_after` rounds if it is not. A daemon restarted over the pinned state of an earlier one
//! keeps down what that state had down ([`super::adopted`]): probes bring it up.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use crate::config::Track;

/// A manual override.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Override {
    Up,
    Down,
}

/// One finished probe round, as the tracker needs it: per target, the round-trip time of a
/// valid answer (None: no answer in time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundSummary {
    pub started: Instant,
    pub answers: Vec<Option<Duration>>,
    /// The targets of `answers`, in its order, as the configuration writes them (named in the
    /// status when one stops answering); "target N" for any not given.
    pub targets: Vec<String>,
    /// The first probe that failed before its timeout, as `target: why`; named in the reason
    /// of a change, so that a WAN taken down by answers that do not count (a captive portal's
    /// redirect, a refused connection) says so.
    pub failure: Option<String>,
}

/// A change of the WAN's effective state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub up: bool,
    /// Why, in words ("carrier lost", "3 failed rounds: 0/2 targets answered", ...).
    pub cause: String,
    /// From the first sign of the fault (the start of the first failed round) to the decision;
    /// `None` when the event itself was the sign (carrier, a manual override).
    pub detection: Option<Duration>,
    /// What found it.
    pub path: Path,
    /// Down only because it lost its gateway or IPv6 prefix: it waits for them, and its line
    /// may be fine ("stops carrying, waiting", not "down").
    pub waiting: bool,
}

/// What found a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Probe rounds alone.
    Probes,
    /// The WAN's traffic went unanswered (suspect), and probes confirmed it.
    Passive,
    /// The link's carrier.
    Carrier,
    /// A command, a gateway, VRRP: the event itself.
    Event,
}

impl Path {
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Probes => "probes",
            Path::Passive => "passive",
            Path::Carrier => "carrier",
            Path::Event => "event",
        }
    }
}

/// What the tracker remembers of one target.
#[derive(Clone, Debug, PartialEq, Eq)]
struct TargetRecord {
    name: String,
    /// Its unanswered rounds in a row, and the start of the first of them.
    missed: u32,
    silent_since: Option<Instant>,
}

/// One target of a family over the loss window, for the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetHealth {
    /// As the configuration writes it.
    pub target: String,
    /// Rounds of the window in which it was asked, and in which it answered in time.
    pub sent: u32,
    pub answered: u32,
    /// How long it has not answered (from the start of its first unanswered round in a row),
    /// when its last round went unanswered.
    pub silent_for: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct Tracker {
    track: Track,
    /// What probes and the link say.
    healthy: bool,
    carrier: bool,
    fails: u32,
    passes: u32,
    /// The last round passed.
    last_passed: bool,
    /// Start of the current run of failed rounds.
    failing_since: Option<Instant>,
    /// The targets of the rounds, in their order in `answers`.
    targets: Vec<TargetRecord>,
    /// Per round of the last `loss_window`, per target: whether it answered in time.
    window: VecDeque<Vec<bool>>,
    /// What the last round counted ("1/2 targets answered"): the status shows it as of now,
    /// not as of the last change.
    last_round: Option<String>,
    /// The WAN's name, for the status ("has not answered via wan2").
    wan: String,
    manual: Option<Override>,
    /// When the effective state last changed, and why.
    since: Instant,
    reason: String,
}

impl Tracker {
    /// A tracker of WAN `wan` (named in the status).
    pub fn of_wan(mut self, wan: &str) -> Tracker {
        wan.clone_into(&mut self.wan);
        self
    }

    pub fn new(track: Track, carrier: bool, now: Instant) -> Tracker {
        Tracker {
            track,
            healthy: carrier,
            carrier,
            fails: 0,
            passes: 0,
            last_passed: false,
            failing_since: None,
            targets: Vec::new(),
            window: VecDeque::new(),
            last_round: None,
            wan: String::new(),
            manual: None,
            since: now,
            reason: if carrier {
                "started with carrier".into()
            } else {
                "no carrier at start".into()
            },
        }
    }

    /// Whether policies may use this WAN.
    pub fn up(&self) -> bool {
        match self.manual {
            Some(Override::Up) => true,
            Some(Override::Down) => false,
            None => self.healthy,
        }
    }

    pub fn carrier(&self) -> bool {
        self.carrier
    }

    pub fn track(&self) -> &Track {
        &self.track
    }

    /// Whether probes hold the WAN down (whatever a manual override says).
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Whether the last round passed.
    pub fn passed_last(&self) -> bool {
        self.last_passed
    }

    /// Why the state last changed.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Says why the state changed, in other words than the round's (the traffic found it).
    pub fn explain(&mut self, cause: &str) {
        cause.clone_into(&mut self.reason);
    }

    pub fn manual(&self) -> Option<Override> {
        self.manual
    }

    /// One line for `steer status`.
    pub fn describe(&self, now: Instant) -> String {
        let state = if self.up() { "up" } else { "down" };
        let manual = match self.manual {
            Some(Override::Up) => " (forced up by `steer wan`)",
            Some(Override::Down) => " (forced down by `steer wan`)",
            None => "",
        };
        let progress = match (self.healthy, self.carrier) {
            (true, _) if self.fails > 0 => {
                format!(", {}/{} failed rounds", self.fails, self.track.down_after)
            }
            (false, true) => {
                // Good rounds that are already enough are no progress: the loss holds it.
                let rounds = (self.passes < self.track.up_after).then(|| {
                    format!(
                        "{}/{} good rounds to come back",
                        self.passes, self.track.up_after
                    )
                });
                let held = self.loss_holds_down().map(|(field, limit)| {
                    format!(
                        "held down: loss {:.0}% over {} rounds > {field} {limit}",
                        self.loss_percent(),
                        self.window.len()
                    )
                });
                [rounds, held]
                    .into_iter()
                    .flatten()
                    .map(|p| format!(", {p}"))
                    .collect()
            }
            (false, false) => ", waiting for carrier".into(),
            _ => String::new(),
        };
        let last = self
            .last_round
            .as_ref()
            .map(|l| format!("; last round: {l}"))
            .unwrap_or_default();
        let via = if self.wan.is_empty() {
            "via this WAN".to_owned()
        } else {
            format!("via {}", self.wan)
        };
        let silent: String = self
            .targets(now)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| self.silent_alone(*i))
            .map(|(_, t)| {
                format!(
                    "; {} has not answered {via} for {:.0} s ({}/{} over the window)",
                    t.target,
                    t.silent_for.unwrap_or_default().as_secs_f64(),
                    t.answered,
                    t.sent
                )
            })
            .collect();
        format!(
            "{state}{manual} for {:.0} s: {}{progress}{last}; loss {:.0}% over {} rounds{silent}",
            now.duration_since(self.since).as_secs_f64(),
            self.reason,
            self.loss_percent(),
            self.window.len()
        )
    }

    /// Each target over the loss window.
    pub fn targets(&self, now: Instant) -> Vec<TargetHealth> {
        self.targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let (sent, answered) = self.counts(i);
                TargetHealth {
                    target: t.name.clone(),
                    sent,
                    answered,
                    silent_for: t.silent_since.map(|s| now.saturating_duration_since(s)),
                }
            })
            .collect()
    }

    /// Whether target `i` has gone unanswered for `down_after` rounds in a row while another
    /// target answered the last round: dead, or dropping probes via this WAN (the line itself
    /// carries).
    fn silent_alone(&self, i: usize) -> bool {
        let others_answer = self.window.back().is_some_and(|r| r.iter().any(|ok| *ok));
        others_answer
            && self
                .targets
                .get(i)
                .is_some_and(|t| t.missed >= self.track.down_after.max(1))
    }

    /// A fresh tracker with the same settings, as at start.
    pub fn restarted(&self, carrier: bool, now: Instant) -> Tracker {
        Tracker::new(self.track.clone(), carrier, now).of_wan(&self.wan)
    }

    /// A fresh tracker with the same settings, up with `carrier` (as at start) unless
    /// `found_dead`: then only `up_after` passed rounds in a row bring it up (its line was
    /// found dead before, and a new gateway does not mend it). `why` is the state's reason.
    /// A manual override stays: it holds until `steer wan NAME auto`, whatever the line does.
    pub fn restarted_because(
        &self,
        carrier: bool,
        found_dead: bool,
        why: &str,
        now: Instant,
    ) -> Tracker {
        // A line that probes had found dead stays down through the restart: how long it has
        // been down goes on from then, not from the new gateway.
        let since = if found_dead && !self.healthy {
            self.since
        } else {
            now
        };
        Tracker {
            healthy: carrier && !found_dead,
            reason: why.to_owned(),
            since,
            manual: self.manual,
            ..Tracker::new(self.track.clone(), carrier, now).of_wan(&self.wan)
        }
    }

    /// Takes a new track configuration (after a reload); the state is kept.
    pub fn retune(&mut self, track: Track) {
        if track.loss_window != self.track.loss_window || track.targets != self.track.targets {
            // Per target: a window of other targets says nothing of these.
            self.window.clear();
            self.targets.clear();
        }
        self.track = track;
    }

    /// The link's carrier changed.
    pub fn set_carrier(&mut self, carrier: bool, now: Instant) -> Option<Transition> {
        if carrier == self.carrier {
            return None;
        }
        self.carrier = carrier;
        // Either way the probe history no longer says anything about the line.
        self.fails = 0;
        self.passes = 0;
        self.failing_since = None;
        if carrier {
            self.reason = "carrier back, probing".into();
            return None;
        }
        self.change(false, "carrier lost".into(), None, Path::Carrier, now)
    }

    /// A probe round finished.
    pub fn round(&mut self, round: &RoundSummary, now: Instant) -> Option<Transition> {
        let limit = self.latency_limit();
        let answered: Vec<bool> = round
            .answers
            .iter()
            .map(|a| a.is_some_and(|rtt| limit.is_none_or(|l| rtt <= l)))
            .collect();
        let good = answered.iter().filter(|ok| **ok).count() as u32;
        let probes = round.answers.len() as u32;
        self.record(round, &answered);

        // Targets are split by family: a family with fewer targets than `reliability` needs
        // all of its own.
        let passed = good >= self.track.reliability.min(probes);
        let summary = format!(
            "{good}/{probes} targets answered{}{}",
            limit
                .map(|l| format!(" within {} ms", l.as_millis()))
                .unwrap_or_default(),
            round
                .failure
                .as_ref()
                .map(|f| format!("; {f}"))
                .unwrap_or_default()
        );
        self.last_passed = passed;
        self.last_round = Some(summary.clone());
        if passed {
            self.fails = 0;
            self.failing_since = None;
            self.passes = self.passes.saturating_add(1);
        } else {
            self.passes = 0;
            self.fails = self.fails.saturating_add(1);
            self.failing_since.get_or_insert(round.started);
        }
        if self.healthy {
            let since = self.failing_since.unwrap_or(round.started);
            if self.fails >= self.track.down_after {
                let reason = format!("{} failed rounds in a row", self.fails);
                let cause = format!("{reason} (last: {summary})");
                let changed = self.change(
                    false,
                    cause,
                    Some(now.saturating_duration_since(since)),
                    Path::Probes,
                    now,
                );
                // The status shows the last round as of now (`last_round`), not this one.
                self.reason = reason;
                return changed;
            }
            if let Some(max) = self.track.max_loss_percent
                && self.window_full()
                && self.loss_percent() > f64::from(max)
            {
                let cause = format!(
                    "loss {:.0}% over {} rounds exceeds {max}%",
                    self.loss_percent(),
                    self.window.len()
                );
                return self.change(
                    false,
                    cause,
                    Some(now.saturating_duration_since(self.window_started(round))),
                    Path::Probes,
                    now,
                );
            }
            return None;
        }
        let loss_ok = self.loss_holds_down().is_none();
        if self.carrier && self.passes >= self.track.up_after && loss_ok {
            let reason = format!("{} good rounds in a row", self.passes);
            let cause = format!("{reason} (last: {summary})");
            let changed = self.change(
                true,
                cause,
                Some(now.saturating_duration_since(round.started)),
                Path::Probes,
                now,
            );
            self.reason = reason;
            return changed;
        }
        None
    }

    /// `steer wan NAME up|down|auto`.
    pub fn set_manual(&mut self, manual: Option<Override>, now: Instant) -> Option<Transition> {
        let before = self.up();
        self.manual = manual;
        let after = self.up();
        if before == after {
            return None;
        }
        self.since = now;
        self.reason = match manual {
            Some(_) => "set by hand".into(),
            None => "back to health tracking".into(),
        };
        Some(Transition {
            up: after,
            cause: self.reason.clone(),
            detection: None,
            path: Path::Event,
            waiting: false,
        })
    }

    fn latency_limit(&self) -> Option<Duration> {
        let ms = if self.healthy {
            self.track.max_latency_ms
        } else {
            self.track.recover_latency_ms.or(self.track.max_latency_ms)
        };
        ms.map(|m| Duration::from_millis(u64::from(m)))
    }

    /// When the rounds now in the loss window started (approximately: the newest round's start
    /// minus the window's length in rounds).
    fn window_started(&self, newest: &RoundSummary) -> Instant {
        let rounds = self.window.len().saturating_sub(1) as u32;
        newest
            .started
            .checked_sub(Duration::from_millis(u64::from(self.track.interval_ms)) * rounds)
            .unwrap_or(newest.started)
    }

    fn window_full(&self) -> bool {
        self.window.len() >= self.track.loss_window as usize
    }

    /// The line's loss over the window: that of its best target (see the module's doc).
    fn loss_percent(&self) -> f64 {
        (0..self.targets.len())
            .map(|i| self.counts(i))
            .filter(|(sent, _)| *sent > 0)
            .map(|(sent, answered)| 100.0 * f64::from(sent - answered) / f64::from(sent))
            .reduce(f64::min)
            .unwrap_or(0.0)
    }

    /// Rounds of the window that asked target `i`, and that it answered in time.
    fn counts(&self, i: usize) -> (u32, u32) {
        self.window
            .iter()
            .fold((0, 0), |(sent, answered), round| match round.get(i) {
                Some(ok) => (sent + 1, answered + u32::from(*ok)),
                None => (sent, answered),
            })
    }

    /// The limit (its field and value) the loss over the window exceeds, keeping a WAN that
    /// is down from coming back.
    fn loss_holds_down(&self) -> Option<(&'static str, u32)> {
        let (field, limit) = match (self.track.recover_loss_percent, self.track.max_loss_percent) {
            (Some(r), _) => ("recover_loss_percent", r),
            (None, Some(m)) => ("max_loss_percent", m),
            (None, None) => return None,
        };
        (self.loss_percent() > f64::from(limit)).then_some((field, limit))
    }

    /// Takes a round's answers (in time or not) into the window and the targets' records.
    fn record(&mut self, round: &RoundSummary, answered: &[bool]) {
        let name = |i: usize| {
            round
                .targets
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("target {}", i + 1))
        };
        let same = self.targets.len() == answered.len()
            && self
                .targets
                .iter()
                .enumerate()
                .all(|(i, t)| t.name == name(i));
        if !same {
            // Other targets (a reload): their history starts here.
            self.window.clear();
            self.targets = (0..answered.len())
                .map(|i| TargetRecord {
                    name: name(i),
                    missed: 0,
                    silent_since: None,
                })
                .collect();
        }
        for (t, ok) in self.targets.iter_mut().zip(answered) {
            if *ok {
                t.missed = 0;
                t.silent_since = None;
            } else {
                t.missed = t.missed.saturating_add(1);
                t.silent_since.get_or_insert(round.started);
            }
        }
        self.window.push_back(answered.to_vec());
        while self.window.len() > self.track.loss_window as usize {
            self.window.pop_front();
        }
    }

    /// Records a change of the tracked state; reports it only if the effective state changed
    /// (an override hides it).
    fn change(
        &mut self,
        healthy: bool,
        cause: String,
        detection: Option<Duration>,
        path: Path,
        now: Instant,
    ) -> Option<Transition> {
        let before = self.up();
        // `since` dates the state: a line already down that also loses its carrier (its
        // device went away) has been down since it was found dead.
        if healthy != self.healthy {
            self.since = now;
        }
        self.healthy = healthy;
        self.fails = 0;
        self.passes = 0;
        self.failing_since = None;
        self.reason = cause.clone();
        (self.up() != before).then_some(Transition {
            up: healthy,
            cause,
            detection,
            path,
            waiting: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(down_after: u32, up_after: u32) -> Track {
        crate::config::testing::icmp_track(100, 100, down_after, up_after)
    }

    fn round(t0: Instant, i: u64, answers: &[Option<u64>]) -> RoundSummary {
        RoundSummary {
            started: t0 + Duration::from_millis(100 * i),
            answers: answers
                .iter()
                .map(|a| a.map(Duration::from_millis))
                .collect(),
            targets: ["192.0.2.1", "192.0.2.2"][..answers.len()]
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
            failure: None,
        }
    }

    /// A track with loss limits: down over 20%, back at 5% or less.
    fn lossy_track(down_after: u32, up_after: u32, window: u32) -> Track {
        let mut tr = track(down_after, up_after);
        tr.max_loss_percent = Some(20);
        tr.recover_loss_percent = Some(5);
        tr.loss_window = window;
        tr
    }

    const GOOD: &[Option<u64>] = &[Some(10), Some(12)];
    const BAD: &[Option<u64>] = &[None, None];

    #[test]
    fn a_restart_of_a_line_found_dead_needs_up_after_good_rounds() {
        let t0 = Instant::now();
        let t = Tracker::new(track(3, 2), true, t0);
        let fresh = t.restarted_because(true, false, "its gateway appeared", t0);
        assert!(fresh.up());
        let mut dead = t.restarted_because(true, true, "found dead", t0);
        assert!(!dead.up());
        // Down since t0; a restart a minute later keeps that age.
        let later = dead.restarted_because(true, true, "found dead", t0 + Duration::from_secs(60));
        assert_eq!(later.since, t0);
        assert!(
            later
                .describe(t0 + Duration::from_secs(60))
                .contains("for 60 s")
        );
        assert_eq!(
            dead.round(&round(t0, 0, GOOD), t0),
            None,
            "one round is not enough"
        );
        let back = dead.round(&round(t0, 1, GOOD), t0).expect("up after 2");
        assert!(back.up && dead.up());
    }

    #[test]
    fn down_after_consecutive_failures_only() {
        let t0 = Instant::now();
        let mut t = Tracker::new(track(3, 5), true, t0);
        for (i, r) in [BAD, BAD, GOOD, BAD, BAD].iter().enumerate() {
            assert_eq!(
                t.round(&round(t0, i as u64, r), t0),
                None,
                "round {i}: not 3 in a row"
            );
        }
        let tr = t
            .round(&round(t0, 5, BAD), t0 + Duration::from_millis(600))
            .expect("third failure in a row");
        assert!(!tr.up);
        assert!(tr.cause.contains("3 failed rounds"), "{}", tr.cause);
        assert_eq!(
            tr.detection,
            Some(Duration::from_millis(300)),
            "from the start of the first failed round of the run"
        );
        assert!(!t.up());
    }

    #[test]
    fn the_reason_names_a_probe_that_failed_before_its_timeout() {
        let t0 = Instant::now();
        let mut t = Tracker::new(track(1, 5), true, t0);
        let failed = RoundSummary {
            failure: Some("http://192.0.2.1/: HTTP status 302 (wanted 200-299)".into()),
            ..round(t0, 0, BAD)
        };
        let tr = t.round(&failed, t0).expect("down after one failed round");
        assert_eq!(
            tr.cause,
            "1 failed rounds in a row (last: 0/2 targets answered; \
             http://192.0.2.1/: HTTP status 302 (wanted 200-299))"
        );
        assert!(
            t.describe(t0).contains("HTTP status 302"),
            "{}",
            t.describe(t0)
        );
    }

    #[test]
    fn one_good_round_never_re_promotes() {
        let t0 = Instant::now();
        let mut t = Tracker::new(track(1, 5), true, t0);
        assert!(t.round(&round(t0, 0, BAD), t0).is_some());
        for i in 1..=4 {
            assert_eq!(
                t.round(&round(t0, i, GOOD), t0),
                None,
                "{i} good rounds are not enough"
            );
        }
        assert_eq!(
            t.round(&round(t0, 5, BAD), t0),
            None,
            "a failure restarts the count"
        );
        for i in 6..=9 {
            assert_eq!(t.round(&round(t0, i, GOOD), t0), None);
        }
        let tr = t
            .round(&round(t0, 10, GOOD), t0)
            .expect("five good rounds in a row");
        assert!(tr.up && tr.cause.contains("5 good rounds"));
    }

    #[test]
    fn carrier_loss_is_immediate_and_carrier_back_waits_for_probes() {
        let t0 = Instant::now();
        let mut t = Tracker::new(track(3, 2), true, t0);
        let tr = t.set_carrier(false, t0).expect("down at once");
        assert_eq!(
            (tr.up, tr.cause.as_str(), tr.detection),
            (false, "carrier lost", None)
        );
        assert_eq!(
            t.round(&round(t0, 0, GOOD), t0),
            None,
            "no rounds count without carrier"
        );
        assert_eq!(
            t.set_carrier(true, t0),
            None,
            "carrier alone does not bring it up"
        );
        assert_eq!(t.round(&round(t0, 1, GOOD), t0), None);
        assert!(
            t.round(&round(t0, 2, GOOD), t0)
                .expect("up_after good rounds")
                .up
        );
    }

    #[test]
    fn a_line_found_dead_that_then_loses_its_carrier_has_been_down_since_it_was_found_dead() {
        let t0 = Instant::now();
        let mut t = Tracker::new(track(1, 2), true, t0);
        assert!(!t.round(&round(t0, 0, BAD), t0).expect("down").up);
        let later = t0 + Duration::from_secs(30);
        assert_eq!(t.set_carrier(false, later), None, "down already");
        let status = t.describe(later);
        assert!(status.contains("for 30 s: carrier lost"), "{status}");
    }

    #[test]
    fn reliability_and_latency_limits_with_stricter_recovery() {
        let t0 = Instant::now();
        let mut tr = track(1, 1);
        tr.reliability = 2;
        tr.max_latency_ms = Some(100);
        tr.recover_latency_ms = Some(50);
        let mut t = Tracker::new(tr, true, t0);
        assert_eq!(
            t.round(&round(t0, 0, &[Some(90), Some(99)]), t0),
            None,
            "both within 100 ms"
        );
        assert!(
            t.round(&round(t0, 1, &[Some(10), None]), t0).is_some(),
            "one of two is below reliability 2"
        );
        assert_eq!(
            t.round(&round(t0, 2, &[Some(70), Some(80)]), t0),
            None,
            "fine while up, too slow to recover"
        );
        assert!(
            t.round(&round(t0, 3, &[Some(40), Some(45)]), t0)
                .expect("recovered")
                .up
        );
    }

    #[test]
    fn loss_over_the_window_takes_it_down_and_must_heal_to_come_back() {
        let t0 = Instant::now();
        let mut t = Tracker::new(lossy_track(100, 1, 5), true, t0);
        // The line loses half of the probes, to either target: each round passes (reliability
        // 1), and the target that answers best still loses 40%.
        let (a, b): (&[Option<u64>], &[Option<u64>]) = (&[Some(10), None], &[None, Some(10)]);
        for i in 0..4 {
            let r = if i % 2 == 0 { a } else { b };
            assert_eq!(t.round(&round(t0, i, r), t0), None, "window not full yet");
        }
        let down = t.round(&round(t0, 4, a), t0).expect("loss 40% > 20%");
        assert!(!down.up, "{}", down.cause);
        assert_eq!(down.cause, "loss 40% over 5 rounds exceeds 20%");
        // Clean rounds: the lossy ones must age out of the window (<= 5% loss) first, and
        // meanwhile the status says it is the loss that holds it down, not a count of good
        // rounds that is met already.
        let mut came_back = None;
        for i in 5..15 {
            if let Some(up) = t.round(&round(t0, i, GOOD), t0) {
                came_back = Some(i);
                assert!(up.up);
                break;
            }
            let said = t.describe(t0);
            assert!(
                said.contains("held down: loss ") && said.contains("> recover_loss_percent 5"),
                "{said}"
            );
            assert!(!said.contains("good rounds to come back"), "{said}");
        }
        // The lossy round 4 was answered by 192.0.2.1: its window is clean once rounds 0-3
        // (its losses at 1 and 3) have aged out.
        assert_eq!(came_back, Some(8), "once the best target's window is clean");
    }

    #[test]
    fn a_dead_target_on_a_healthy_line_is_no_loss_and_is_named() {
        let t0 = Instant::now();
        let mut t = Tracker::new(lossy_track(3, 5, 20), true, t0).of_wan("wan1");
        // 192.0.2.2 drops every probe (a resolver that stopped answering pings from this
        // ISP); 192.0.2.1 answers each one: every round passes, the line loses nothing.
        let one: &[Option<u64>] = &[Some(10), None];
        for i in 0..60 {
            assert_eq!(t.round(&round(t0, i, one), t0), None, "round {i}");
        }
        assert!(t.up());
        let now = t0 + Duration::from_secs(6);
        let said = t.describe(now);
        assert!(said.contains("loss 0% over 20 rounds"), "{said}");
        assert!(
            said.contains("192.0.2.2 has not answered via wan1 for 6 s (0/20 over the window)"),
            "{said}"
        );
        assert!(said.contains("last round: 1/2 targets answered"), "{said}");
        assert!(!said.contains("192.0.2.1 has not"), "{said}");
        let targets = t.targets(now);
        assert_eq!(
            targets
                .iter()
                .map(|t| (t.target.as_str(), t.answered, t.sent))
                .collect::<Vec<_>>(),
            [("192.0.2.1", 20, 20), ("192.0.2.2", 0, 20)]
        );
        assert_eq!(targets[0].silent_for, None);
        assert_eq!(targets[1].silent_for, Some(Duration::from_secs(6)));

        // Held down by something else, it comes back with the dead target still dead.
        let mut down = Tracker::new(lossy_track(3, 5, 20), true, t0);
        assert!(down.round(&round(t0, 0, BAD), t0).is_none());
        assert!(down.round(&round(t0, 1, BAD), t0).is_none());
        assert!(!down.round(&round(t0, 2, BAD), t0).expect("down").up);
        let back = (3..30).find_map(|i| down.round(&round(t0, i, one), t0));
        assert!(back.expect("comes back").up);
    }

    #[test]
    fn a_lossy_line_shows_its_loss_through_two_answering_targets() {
        let t0 = Instant::now();
        let mut t = Tracker::new(lossy_track(100, 5, 10), true, t0);
        // 30% of each target's probes lost, not in the same rounds: every round passes.
        let lost_a = [1, 4, 7];
        let lost_b = [2, 5, 8];
        let mut down = None;
        for i in 0..10u64 {
            let r = [
                (!lost_a.contains(&i)).then_some(10),
                (!lost_b.contains(&i)).then_some(10),
            ];
            if let Some(tr) = t.round(&round(t0, i, &r), t0) {
                down = Some((i, tr));
            }
        }
        let (i, tr) = down.expect("30% > 20%");
        assert_eq!(i, 9, "when the window is full");
        assert_eq!(tr.cause, "loss 30% over 10 rounds exceeds 20%");
        let said = t.describe(t0);
        assert!(!said.contains("has not answered"), "{said}");
    }

    #[test]
    fn a_line_whose_targets_all_die_goes_down_by_its_rounds() {
        let t0 = Instant::now();
        let mut t = Tracker::new(lossy_track(3, 5, 20), true, t0);
        for i in 0..2 {
            assert_eq!(t.round(&round(t0, i, BAD), t0), None);
        }
        let tr = t.round(&round(t0, 2, BAD), t0).expect("down");
        assert!(
            tr.cause.starts_with("3 failed rounds in a row"),
            "{}",
            tr.cause
        );
        let said = t.describe(t0);
        assert!(said.contains("loss 100% over 3 rounds"), "{said}");
        assert!(
            !said.contains("has not answered"),
            "the line, not a target: {said}"
        );
    }

    #[test]
    fn the_status_shows_the_last_round_as_of_now_not_as_of_the_change() {
        let t0 = Instant::now();
        let mut t = Tracker::new(track(1, 2), true, t0);
        assert!(t.round(&round(t0, 0, BAD), t0).is_some());
        assert!(t.round(&round(t0, 1, GOOD), t0).is_none());
        let up = t.round(&round(t0, 2, GOOD), t0).expect("up");
        assert_eq!(
            up.cause, "2 good rounds in a row (last: 2/2 targets answered)",
            "the change says the round that made it"
        );
        t.round(&round(t0, 3, &[Some(10), None]), t0);
        let said = t.describe(t0);
        assert!(
            said.contains("2 good rounds in a row; last round: 1/2 targets answered"),
            "{said}"
        );
        assert!(!said.contains("2/2"), "{said}");
    }

    #[test]
    fn manual_override_wins_until_auto() {
        let t0 = Instant::now();
        let mut t = Tracker::new(track(1, 1), true, t0);
        assert!(
            !t.set_manual(Some(Override::Down), t0)
                .expect("forced down")
                .up
        );
        assert_eq!(
            t.round(&round(t0, 0, GOOD), t0),
            None,
            "probes do not undo a manual down"
        );
        assert_eq!(t.set_carrier(false, t0), None, "hidden by the override");
        assert_eq!(
            t.set_manual(None, t0),
            None,
            "auto: tracked state is down too (no carrier)"
        );
        assert!(!t.up());
        assert!(t.set_manual(Some(Override::Up), t0).expect("forced up").up);
        assert!(t.describe(t0).contains("forced up"));
        // A restart of its line (a new gateway, held down at a daemon restart) keeps it.
        let t = t.restarted_because(true, true, "found dead", t0);
        assert_eq!(t.manual(), Some(Override::Up));
        assert!(t.up());
    }
}
