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
    /// (probes, lost) of the last `loss_window` rounds.
    window: VecDeque<(u32, u32)>,
    manual: Option<Override>,
    /// When the effective state last changed, and why.
    since: Instant,
    reason: String,
}

impl Tracker {
    pub fn new(track: Track, carrier: bool, now: Instant) -> Tracker {
        Tracker {
            track,
            healthy: carrier,
            carrier,
            fails: 0,
            passes: 0,
            last_passed: false,
            failing_since: None,
            window: VecDeque::new(),
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
            (false, true) => format!(
                ", {}/{} good rounds to come back",
                self.passes, self.track.up_after
            ),
            (false, false) => ", waiting for carrier".into(),
            _ => String::new(),
        };
        format!(
            "{state}{manual} for {:.0} s: {}{progress}; loss {:.0}% over {} rounds",
            now.duration_since(self.since).as_secs_f64(),
            self.reason,
            self.loss_percent(),
            self.window.len()
        )
    }

    /// A fresh tracker with the same settings, as at start.
    pub fn restarted(&self, carrier: bool, now: Instant) -> Tracker {
        Tracker::new(self.track.clone(), carrier, now)
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
            ..Tracker::new(self.track.clone(), carrier, now)
        }
    }

    /// Takes a new track configuration (after a reload); the state is kept.
    pub fn retune(&mut self, track: Track) {
        if track.loss_window as usize != self.track.loss_window as usize {
            self.window.clear();
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
        let good = round
            .answers
            .iter()
            .filter(|a| a.is_some_and(|rtt| limit.is_none_or(|l| rtt <= l)))
            .count() as u32;
        let probes = round.answers.len() as u32;
        self.window.push_back((probes, probes - good));
        while self.window.len() > self.track.loss_window as usize {
            self.window.pop_front();
        }
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
                let cause = format!("{} failed rounds in a row (last: {summary})", self.fails);
                return self.change(
                    false,
                    cause,
                    Some(now.saturating_duration_since(since)),
                    Path::Probes,
                    now,
                );
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
        let loss_ok = self
            .track
            .recover_loss_percent
            .or(self.track.max_loss_percent)
            .is_none_or(|r| self.loss_percent() <= f64::from(r));
        if self.carrier && self.passes >= self.track.up_after && loss_ok {
            let cause = format!("{} good rounds in a row (last: {summary})", self.passes);
            return self.change(
                true,
                cause,
                Some(now.saturating_duration_since(round.started)),
                Path::Probes,
                now,
            );
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

    fn loss_percent(&self) -> f64 {
        let (probes, lost) = self
            .window
            .iter()
            .fold((0u32, 0u32), |(p, l), (a, b)| (p + a, l + b));
        if probes == 0 {
            0.0
        } else {
            100.0 * f64::from(lost) / f64::from(probes)
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
            failure: None,
        }
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
        let mut tr = track(100, 1);
        tr.max_loss_percent = Some(20);
        tr.recover_loss_percent = Some(5);
        tr.loss_window = 5;
        let mut t = Tracker::new(tr, true, t0);
        // Half of the probes lost every round: each round passes (reliability 1), loss 50%.
        let half: &[Option<u64>] = &[Some(10), None];
        for i in 0..4 {
            assert_eq!(
                t.round(&round(t0, i, half), t0),
                None,
                "window not full yet"
            );
        }
        let down = t.round(&round(t0, 4, half), t0).expect("loss 50% > 20%");
        assert!(!down.up && down.cause.contains("loss"), "{}", down.cause);
        // Clean rounds: the lossy ones must age out of the window (<= 5% loss) first.
        let mut came_back = None;
        for i in 5..15 {
            if let Some(up) = t.round(&round(t0, i, GOOD), t0) {
                came_back = Some(i);
                assert!(up.up);
                break;
            }
        }
        assert_eq!(came_back, Some(9), "after the whole window is clean again");
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
