//! When one WAN family's next probe round goes out. Pure: fed probe rounds, late rounds, the
//! tracker's state and the traffic's counters (through [`Passive`]), it says the pace.
//!
//! - **Fast** (`failure_interval_ms`) while a round is *late* (not passed within the line's
//!   round-trip bound, long before its timeout) and after a failed round; while the traffic
//!   is suspect, a burst ([`BURST_SPACING`] apart): the traffic's silence is already one sign,
//!   the burst's `down_after` rounds confirm it. Rounds overlap: a fast round does not wait
//!   for the slow one before it, so `down_after` failed rounds are in about one timeout plus
//!   `down_after - 1` fast intervals after the first late probe.
//! - While the line is known to be silent (the traffic is suspect, or, with the counters, a
//!   round is late), the schedule also says when it will have answered nothing for
//!   `timeout_ms` since the silence began ([`Schedule::answer_by`]): the confirming rounds end
//!   then (or at their round-trip bound, whichever is later), not a whole timeout after they
//!   start. Such a round is *cut short*; its failure counts only if the silence it was cut for
//!   still stands when it ends (`Health::round`), so an answer that arrives within the
//!   timeout, however late, is never a down.
//! - **Quiet** (`quiet_interval_ms`) while the WAN's own traffic was answered within the last
//!   `interval_ms`: the traffic proves the line better than a probe would. Back to normal as
//!   soon as it stops being answered, or a probe fails.
//! - **Normal** (`interval_ms`) otherwise, and while the WAN is down (recovery keeps its pace
//!   and its `up_after`).
//!
//! Lateness only hastens probes; it never fails one: a line whose round trip jumps (within
//! the timeout) costs a few fast probes and no down.

use std::time::{Duration, Instant};

use super::passive::{Change, Counters, Passive, Suspicion};
use crate::config::Track;

/// A round is never late before this, however short the line's round trip: a round trip of
/// 0.2 ms with a little scheduling jitter must not hasten every probe.
pub const LATE_FLOOR: Duration = Duration::from_millis(10);

/// Between the rounds that confirm a suspicion (a burst of `down_after` rounds).
pub const BURST_SPACING: Duration = Duration::from_millis(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pace {
    Fast,
    Normal,
    Quiet,
}

impl Pace {
    pub fn as_str(self) -> &'static str {
        match self {
            Pace::Fast => "fast",
            Pace::Normal => "normal",
            Pace::Quiet => "quiet",
        }
    }
}

/// What the prober needs: how long after a round started the next one starts, when a round
/// that has not passed yet is late, and (while the line is silent) when a round may fail
/// before its timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub interval: Duration,
    pub late_after: Duration,
    /// While the line is silent: the instant it will have answered nothing for `timeout_ms`
    /// ([`Pacer::answer_by`]).
    pub answer_by: Option<Instant>,
}

impl Schedule {
    /// How long a round that starts at `started` waits for its answers: `timeout`, or, while
    /// the line is silent, until it has been silent for `timeout`, but never less than the
    /// line's round-trip bound (`late_after`).
    pub fn round_timeout(&self, started: Instant, timeout: Duration) -> Duration {
        match self.answer_by {
            Some(by) => by
                .saturating_duration_since(started)
                .max(self.late_after)
                .min(timeout),
            None => timeout,
        }
    }
}

/// Round-trip estimate of a line's probes (RFC 6298's smoothed RTT and variation).
#[derive(Clone, Copy, Debug, Default)]
struct Rtt {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl Rtt {
    fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(s) => {
                let diff = s.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((s * 7 + rtt) / 8);
            }
        }
    }

    /// srtt + 4 × rttvar, as TCP's retransmission timeout.
    fn bound(&self) -> Option<Duration> {
        self.srtt.map(|s| s + self.rttvar * 4)
    }
}

#[derive(Clone, Debug)]
pub struct Pacer {
    interval: Duration,
    failure_interval: Duration,
    quiet_interval: Option<Duration>,
    timeout: Duration,
    passive_on: bool,
    passive_window: Duration,
    rtt: Rtt,
    passive: Passive,
    /// The start of a round that was late and has not finished yet.
    late: Option<Instant>,
    /// The start of the first late round with no answer, kept while rounds fail: the line is
    /// silent since then unless the traffic counters (which count the probes' answers too)
    /// saw an answer after it, or a finished round had one. Only with the counters: the
    /// rounds alone report an answer when the round ends, which may be after the silence is
    /// judged.
    silent: Option<Instant>,
    /// The last finished round failed.
    failing: bool,
    /// The tracker holds the WAN down.
    down: bool,
}

impl Pacer {
    pub fn new(track: &Track) -> Pacer {
        let mut p = Pacer {
            interval: Duration::ZERO,
            failure_interval: Duration::ZERO,
            quiet_interval: None,
            timeout: Duration::ZERO,
            passive_on: false,
            passive_window: Duration::ZERO,
            rtt: Rtt::default(),
            passive: Passive::default(),
            late: None,
            silent: None,
            failing: false,
            down: false,
        };
        p.retune(track);
        p
    }

    /// New settings (a reload); what was learned about the line stays.
    pub fn retune(&mut self, track: &Track) {
        let ms = |v: u32| Duration::from_millis(u64::from(v));
        self.interval = ms(track.interval_ms);
        self.failure_interval = ms(track.pace.failure_interval_ms);
        self.quiet_interval = track.pace.quiet_interval_ms.map(ms);
        self.timeout = ms(track.timeout_ms);
        self.passive_on = track.pace.passive;
        self.passive_window = ms(track.pace.passive_window_ms);
    }

    /// The pace of now.
    pub fn pace(&self, now: Instant) -> Pace {
        if self.down {
            // Recovery keeps the normal pace (and `up_after`): a dead line is not probed fast.
            Pace::Normal
        } else if self.late.is_some() || self.failing || self.suspect().is_some() {
            Pace::Fast
        } else if self.quiet_interval.is_some() && self.passive.proven_within(self.interval, now) {
            Pace::Quiet
        } else {
            Pace::Normal
        }
    }

    /// The schedule while the family waits for a gateway: its rounds go unjudged (their probes
    /// have no way out) and feed nothing here, so a fast pace would never end: the configured
    /// interval, never late (a late round would make it fast).
    pub fn waiting_schedule(&self) -> Schedule {
        Schedule {
            interval: self.interval,
            late_after: self.timeout,
            answer_by: None,
        }
    }

    pub fn schedule(&self, now: Instant) -> Schedule {
        let interval = match self.pace(now) {
            // The traffic already says the line is silent: the confirming rounds go as one
            // burst, so the decision waits one timeout, not down_after - 1 fast intervals more.
            Pace::Fast if self.suspect().is_some() => BURST_SPACING.min(self.failure_interval),
            Pace::Fast => self.failure_interval,
            Pace::Normal => self.interval,
            Pace::Quiet => self.quiet_interval.unwrap_or(self.interval),
        };
        Schedule {
            interval,
            late_after: self.late_after(),
            answer_by: self.answer_by(),
        }
    }

    /// While the line is silent (and the WAN up): the start of the silence plus
    /// `timeout_ms`. By then the line has answered nothing at all, neither the LAN's traffic
    /// nor the probes, for as long as the configuration allows an answer to take, so a
    /// confirming round need not wait its own full timeout: it fails at this instant or at
    /// its round-trip bound, whichever is later. A line whose round trip jumps within the
    /// timeout still answers before it.
    pub fn answer_by(&self) -> Option<Instant> {
        self.silence_since().map(|s| s + self.timeout)
    }

    /// Since when the line has answered nothing, if it is known to be silent: since the
    /// traffic's first unanswered ask (a suspicion), or since the first late round (with the
    /// traffic counters). `None` while the WAN is down: recovery keeps its full timeouts.
    pub fn silence_since(&self) -> Option<Instant> {
        if self.down {
            return None;
        }
        match (self.suspect().map(|s| s.since), self.silent()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The late rounds' silence, unless the counters saw an answer since it began.
    fn silent(&self) -> Option<Instant> {
        self.silent.filter(|s| !self.passive.answered_after(*s))
    }

    /// Whether a round that started at `started` and was cut short (it ended at
    /// [`Pacer::answer_by`]) is judged: only if the silence it was cut for still stands, with
    /// nothing come back since. Otherwise its probes might still have been answered within
    /// their timeout.
    pub fn judges_cut_short(&self, started: Instant) -> bool {
        self.silence_since().is_some_and(|s| s <= started)
    }

    /// When a round that has not passed is late: the line's round-trip bound, at least
    /// [`LATE_FLOOR`], at most the timeout (no estimate yet: the timeout).
    pub fn late_after(&self) -> Duration {
        self.rtt
            .bound()
            .map_or(self.timeout, |b| b.max(LATE_FLOOR))
            .min(self.timeout)
    }

    /// Whether the traffic is worth watching closely now: it asked within `within`, or it is
    /// suspect.
    pub fn watching(&self, within: Duration, now: Instant) -> bool {
        self.passive_on && (self.suspect().is_some() || self.passive.asked_within(within, now))
    }

    /// The window the traffic is judged over: `passive_window_ms`, widened to the line's
    /// round-trip bound and to what late answers taught, but never past the timeout (unless
    /// `passive_window_ms` itself is longer): a wait longer than the timeout is a failure by
    /// the configuration's own measure, and a wider window would only leave a cut under
    /// traffic to the probes for the minute a round-trip spike is remembered.
    pub fn passive_window(&self, now: Instant) -> Duration {
        let w = self
            .rtt
            .bound()
            .map_or(self.passive_window, |b| b.max(self.passive_window));
        self.passive
            .window(w, now)
            .min(self.timeout.max(self.passive_window))
    }

    pub fn suspect(&self) -> Option<&Suspicion> {
        self.passive_on.then(|| self.passive.suspect()).flatten()
    }

    /// The round that started at `started` has not passed within [`Pacer::late_after`]; it had
    /// `answered` answers by then.
    pub fn late(&mut self, started: Instant, answered: usize) {
        if self.late.is_none_or(|l| started < l) {
            self.late = Some(started);
        }
        // A round late with some answers (a target of several is down) is no silence.
        if answered == 0
            && self.passive_on
            && self.passive.sampled()
            && !self.passive.answered_after(started)
        {
            self.silent = Some(self.silent().map_or(started, |s| s.min(started)));
        }
    }

    /// A round finished: `passed` or not, the round trips of its answers, whether the WAN is
    /// down now (after the tracker took it). Returns whether it refuted a suspicion.
    pub fn round(
        &mut self,
        started: Instant,
        passed: bool,
        rtts: impl IntoIterator<Item = Duration>,
        down: bool,
        now: Instant,
    ) -> bool {
        self.rtts(rtts);
        if down {
            self.silent = None;
        }
        if self.late.is_some_and(|l| started >= l) {
            self.late = None;
        }
        self.failing = !passed && !down;
        if down && !self.down {
            self.passive.confirmed();
        }
        self.down = down;
        passed && self.passive.probe_passed(started, now)
    }

    /// Round trips of a finished round's answers (judged or not): the line's estimate learns
    /// them, and an answer ends a silence.
    pub fn rtts(&mut self, rtts: impl IntoIterator<Item = Duration>) {
        for rtt in rtts {
            self.rtt.sample(rtt);
            self.silent = None;
        }
    }

    /// The tracker's state changed by something else than a round (carrier, a restart).
    pub fn set_down(&mut self, down: bool) {
        if down {
            self.passive.confirmed();
            self.late = None;
            self.silent = None;
            self.failing = false;
        }
        self.down = down;
    }

    /// A sample of the traffic counters; off (`passive = false`), nothing changes.
    pub fn traffic(&mut self, counters: Counters, now: Instant) -> Option<Change> {
        if !self.passive_on {
            return None;
        }
        let window = self.passive_window(now);
        self.passive.sample(counters, window, !self.down, now)
    }
}
