//! Passive liveness of one WAN family: what its own traffic says. Pure: fed the kernel's
//! cumulative counters (`asked`: packets out that expect an answer, `answered`: packets in
//! that count as answers) with the time they were read, it says when the line is *suspect*.
//!
//! The rule:
//! - The WAN is *waiting* from the first sample that saw an ask after the last answer (by the
//!   kernel's timestamps when a sample saw both), since that ask; any growth of `answered`
//!   ends the wait.
//! - Waiting for the window `W` makes it suspect. `W` is the configured `passive_window_ms`,
//!   widened to the line's round-trip bound (srtt + 4 × rttvar of its probes, as TCP's RTO)
//!   and to the longest wait that recently ended with an answer (a line that answers in bursts
//!   every 200 ms teaches the window 200 ms).
//! - One-way traffic never makes a WAN suspect: waiting only counts while the WAN is *armed*,
//!   that is when it answered something within the last [`ARMED_FOR`]. A UDP stream nobody
//!   answers, with nothing else on the line, never arms it; inbound-only traffic never grows
//!   `asked`. A suspicion that probes then refute (a probe round that started after the wait
//!   began passed, and still no traffic answer) mutes suspicion for a while, doubling each
//!   time up to [`MUTE_MAX`]: one-way traffic next to answered probes costs a few fast probes
//!   now and then, never a false down.
//! - Suspicion never takes the WAN down by itself: it makes the probes fast and lets their
//!   rounds end once the line has been silent for the timeout since [`Suspicion::since`]
//!   (see `pace`); the tracker's `down_after` decides.

use std::time::{Duration, Instant};

/// An answer within this long arms the detector: older traffic says nothing about whether
/// this line's asks are ever answered.
pub const ARMED_FOR: Duration = Duration::from_secs(30);
/// The first mute after a refuted suspicion; doubles each time up to [`MUTE_MAX`].
pub const MUTE_FIRST: Duration = Duration::from_secs(1);
pub const MUTE_MAX: Duration = Duration::from_secs(64);
/// A wait that ended with an answer widens the window for this long.
pub const LEARNED_FOR: Duration = Duration::from_secs(60);

/// The traffic of a WAN family is suspect: it sent, and nothing came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suspicion {
    /// The first sample where the unanswered asks were seen.
    pub since: Instant,
    /// Packets out that expect an answer since then.
    pub out: u64,
    /// How long it has waited (at the last sample).
    pub waited: Duration,
}

impl Suspicion {
    /// For status and the cause of a change: `passive: 41 packets out, 0 back in 52 ms`.
    pub fn describe(&self) -> String {
        format!(
            "passive: {} packets out, 0 back in {} ms",
            self.out,
            self.waited.as_millis()
        )
    }
}

/// One reading of a WAN family's counters: the kernel's cumulative counts and when the last
/// ask and the last answer went by (its timestamps, on the daemon's clock; `None`: not known).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub asked: u64,
    pub answered: u64,
    pub last_ask: Option<Instant>,
    pub last_answer: Option<Instant>,
}

impl Counters {
    /// Counts without timestamps.
    pub fn new(asked: u64, answered: u64) -> Counters {
        Counters {
            asked,
            answered,
            ..Counters::default()
        }
    }

    /// Whether the last ask went out after the last answer came in: something is unanswered.
    fn ask_after_answer(&self) -> bool {
        match (self.last_ask, self.last_answer) {
            (Some(ask), Some(answer)) => ask > answer,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// What a sample changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The WAN just became suspect.
    Suspect(Suspicion),
    /// An answer ended a suspicion.
    Cleared,
}

#[derive(Clone, Debug, Default)]
pub struct Passive {
    /// The last sample's counters.
    last: Option<(u64, u64)>,
    /// Waiting since (first sample with unanswered asks), and `asked` before them.
    waiting: Option<(Instant, u64)>,
    last_answer: Option<Instant>,
    /// The last sample where `asked` grew: traffic of the LAN that expects answers.
    last_ask: Option<Instant>,
    suspect: Option<Suspicion>,
    /// The longest wait that ended with an answer, and when.
    learned: Option<(Duration, Instant)>,
    muted_until: Option<Instant>,
    /// The next mute's length.
    mute: Option<Duration>,
}

impl Passive {
    /// A new sample of the cumulative counters; `window` is the configured window widened to
    /// the line's round-trip bound; `may_suspect` false (the WAN is down already) only keeps
    /// the counters and the answers. A counter that went backwards (the kernel program was
    /// reloaded) starts the detector over.
    ///
    /// A wait starts at the first sample with asks after the last answer: asks alone, or asks
    /// and answers where the kernel's timestamps say an ask went out after the last answer (a
    /// request sent right after its predecessor's reply, within one sample, and then nothing
    /// more: a TCP conversation over a line cut just then). It starts at the last ask's
    /// timestamp when known, the sample's time otherwise: never before the first unanswered
    /// ask, so a wait is never longer than the line's real silence.
    pub fn sample(
        &mut self,
        c: Counters,
        window: Duration,
        may_suspect: bool,
        now: Instant,
    ) -> Option<Change> {
        let (last_asked, last_answered) = self.last.replace((c.asked, c.answered))?;
        let asked_more = c.asked > last_asked;
        if asked_more {
            self.last_ask = Some(now);
        }
        if c.asked < last_asked || c.answered < last_answered {
            self.waiting = None;
            return self.suspect.take().map(|_| Change::Cleared);
        }
        let answered_more = c.answered > last_answered;
        let mut cleared = None;
        if answered_more {
            if let Some((since, _)) = self.waiting.take() {
                self.learn(now.saturating_duration_since(since), now);
            }
            self.last_answer = Some(now);
            cleared = self.suspect.take().map(|_| Change::Cleared);
        }
        if !may_suspect {
            // A wait of a WAN that is down says nothing about its round trip: it must not
            // teach the window (the first answer after a long outage would widen it to the
            // outage for a minute, and hide the next silence).
            self.waiting = None;
            return cleared;
        }
        if asked_more && self.waiting.is_none() && (!answered_more || c.ask_after_answer()) {
            let since = c.last_ask.map_or(now, |ask| ask.min(now));
            self.waiting = Some((since, last_asked));
        }
        if cleared.is_some() {
            return cleared;
        }
        let (since, before) = self.waiting?;
        let waited = now.saturating_duration_since(since);
        if let Some(s) = self.suspect.as_mut() {
            s.out = c.asked - before;
            s.waited = waited;
            return None;
        }
        if waited < self.window(window, now) || !self.armed(since) || self.muted(now) {
            return None;
        }
        let s = Suspicion {
            since,
            out: c.asked - before,
            waited,
        };
        self.suspect = Some(s.clone());
        Some(Change::Suspect(s))
    }

    /// A wait of `waited` ended with an answer at `now`: the longest recent one widens the
    /// window.
    fn learn(&mut self, waited: Duration, now: Instant) {
        if self
            .learned
            .is_none_or(|(d, at)| waited > d || now.saturating_duration_since(at) > LEARNED_FOR)
        {
            self.learned = Some((waited, now));
        }
    }

    /// The window in force: `window` widened to the longest recent wait that ended with an
    /// answer (by a quarter, for jitter).
    pub fn window(&self, window: Duration, now: Instant) -> Duration {
        match self.learned {
            Some((d, at)) if now.saturating_duration_since(at) <= LEARNED_FOR => {
                window.max(d + d / 4)
            }
            _ => window,
        }
    }

    pub fn suspect(&self) -> Option<&Suspicion> {
        self.suspect.as_ref()
    }

    /// Whether the traffic answered within `within` of `now`.
    pub fn answered_within(&self, within: Duration, now: Instant) -> bool {
        self.last_answer
            .is_some_and(|a| now.saturating_duration_since(a) <= within)
    }

    /// Whether the counters were read at least once.
    pub fn sampled(&self) -> bool {
        self.last.is_some()
    }

    /// Whether an answer was seen (at a sample) after `at`.
    pub fn answered_after(&self, at: Instant) -> bool {
        self.last_answer.is_some_and(|a| a > at)
    }

    /// Whether the LAN's traffic asked something within `within` of `now`.
    pub fn asked_within(&self, within: Duration, now: Instant) -> bool {
        self.last_ask
            .is_some_and(|a| now.saturating_duration_since(a) <= within)
    }

    /// Whether the line carried traffic that asks and got answers, both within `within` of
    /// `now`: what proves it better than a probe. Answers alone do not (the kernel counts the
    /// answers to steer's own probes too, but only the LAN's traffic as asking).
    pub fn proven_within(&self, within: Duration, now: Instant) -> bool {
        self.answered_within(within, now) && self.asked_within(within, now)
    }

    /// A probe round that started at `started` passed. If it started after the wait began, the
    /// line works and the traffic's silence was one-way: the suspicion ends and suspicion is
    /// muted (longer each time). Returns whether a suspicion was refuted.
    pub fn probe_passed(&mut self, started: Instant, now: Instant) -> bool {
        let Some(s) = &self.suspect else {
            return false;
        };
        if started < s.since {
            return false;
        }
        self.suspect = None;
        self.waiting = None;
        let mute = self.mute.unwrap_or(MUTE_FIRST);
        self.muted_until = Some(now + mute);
        self.mute = Some((mute * 2).min(MUTE_MAX));
        true
    }

    /// The WAN went down (whatever found it): the traffic's silence was real; the next
    /// suspicion is not muted.
    pub fn confirmed(&mut self) {
        self.suspect = None;
        self.waiting = None;
        self.muted_until = None;
        self.mute = None;
    }

    fn armed(&self, since: Instant) -> bool {
        self.last_answer
            .is_some_and(|a| since.saturating_duration_since(a) <= ARMED_FOR)
    }

    fn muted(&self, now: Instant) -> bool {
        self.muted_until.is_some_and(|u| now < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_millis(50);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn sent_and_nothing_back_for_the_window_is_suspect_and_any_answer_clears() {
        let t0 = Instant::now();
        let mut p = Passive::default();
        assert_eq!(
            p.sample(Counters::new(10, 10), W, true, t0),
            None,
            "the first sample is the base"
        );
        assert_eq!(
            p.sample(Counters::new(12, 12), W, true, t0 + ms(10)),
            None,
            "answered: armed"
        );
        assert_eq!(
            p.sample(Counters::new(15, 12), W, true, t0 + ms(20)),
            None,
            "waiting from here"
        );
        assert_eq!(
            p.sample(Counters::new(20, 12), W, true, t0 + ms(60)),
            None,
            "40 ms < 50 ms"
        );
        let Some(Change::Suspect(s)) = p.sample(Counters::new(41 + 12, 12), W, true, t0 + ms(72))
        else {
            panic!("52 ms without an answer");
        };
        assert_eq!(s.since, t0 + ms(20));
        assert_eq!(s.describe(), "passive: 41 packets out, 0 back in 52 ms");
        assert_eq!(
            p.sample(Counters::new(60, 12), W, true, t0 + ms(90)),
            None,
            "still suspect"
        );
        assert_eq!(p.suspect().map(|s| s.out), Some(48));
        assert_eq!(
            p.sample(Counters::new(60, 13), W, true, t0 + ms(100)),
            Some(Change::Cleared),
            "one answer clears it"
        );
        assert!(p.suspect().is_none());
    }

    #[test]
    fn an_ask_read_with_an_answer_is_waited_on_when_it_went_out_after_it() {
        let t0 = Instant::now();
        let at = |n: u64| t0 + ms(n);
        let stamped = |asked, answered, ask: u64, answer: u64| Counters {
            asked,
            answered,
            last_ask: Some(at(ask)),
            last_answer: Some(at(answer)),
        };
        // A second of answered traffic arms it: a request and its answer in every sample.
        let armed = || {
            let mut p = Passive::default();
            for i in 0..100 {
                let c = stamped(i + 1, i + 1, i * 10 + 3, i * 10 + 4);
                p.sample(c, W, true, at(i * 10 + 10));
            }
            p
        };
        // Then one sample reads an answer (at 1003) and the request sent after it (at 1007),
        // and nothing more comes.
        let mut p = armed();
        assert_eq!(
            p.sample(stamped(102, 101, 1007, 1003), W, true, at(1010)),
            None
        );
        let mut suspected = None;
        for t in (1020..=1100).step_by(10) {
            if let Some(Change::Suspect(s)) =
                p.sample(stamped(102, 101, 1007, 1003), W, true, at(t))
            {
                suspected = Some((t, s));
                break;
            }
        }
        let (t, s) = suspected.expect("the request sent after the last answer is waited on");
        assert_eq!(s.since, at(1007), "the wait starts at the request");
        assert_eq!(t, 1060);
        // The same sample where the request went out before the answer (the answer is its
        // own): nothing is waited on.
        let mut q = armed();
        for t in (1010..=1200).step_by(10) {
            assert_eq!(
                q.sample(stamped(101, 101, 1003, 1004), W, true, at(t)),
                None
            );
        }
    }

    #[test]
    fn one_way_traffic_is_never_suspect() {
        let t0 = Instant::now();
        let mut p = Passive::default();
        // Asks and never an answer (a UDP stream nobody answers): never armed.
        for i in 0..30_000u64 {
            assert_eq!(
                p.sample(Counters::new(i * 10, 0), W, true, t0 + ms(i)),
                None,
                "at {i} ms"
            );
        }
        // Inbound only: answers without asks never wait.
        let mut q = Passive::default();
        for i in 0..30_000u64 {
            assert_eq!(
                q.sample(Counters::new(0, i * 10), W, true, t0 + ms(i)),
                None,
                "at {i} ms"
            );
        }
    }

    #[test]
    fn a_refuted_suspicion_mutes_suspicion_for_longer_each_time() {
        let t0 = Instant::now();
        let mut p = Passive::default();
        p.sample(Counters::new(0, 0), W, true, t0);
        p.sample(Counters::new(1, 1), W, true, t0 + ms(1));
        // One-way asks from now on; a probe refutes each suspicion.
        let mut suspicions = Vec::new();
        for i in 2..20_000u64 {
            let now = t0 + ms(i);
            if let Some(Change::Suspect(s)) = p.sample(Counters::new(i, 1), W, true, now) {
                suspicions.push(i);
                assert!(p.probe_passed(s.since + ms(5), now + ms(5)));
            }
        }
        assert_eq!(
            suspicions,
            vec![52, 1057, 3062, 7067, 15072],
            "each refuted suspicion mutes 1 s, 2 s, 4 s, 8 s"
        );
    }

    #[test]
    fn a_late_answer_teaches_the_window() {
        let t0 = Instant::now();
        let mut p = Passive::default();
        p.sample(Counters::new(0, 0), W, true, t0);
        // Asks every ms, answers every 200 ms (the first at once): the first gap suspects, later
        // ones do not.
        let mut suspect = 0;
        for i in 1..5_000u64 {
            let answered = i.div_ceil(200);
            if let Some(Change::Suspect(_)) =
                p.sample(Counters::new(i, answered), W, true, t0 + ms(i))
            {
                suspect += 1;
            }
        }
        assert_eq!(suspect, 1, "only before it learned the 200 ms gap");
        assert!(p.window(W, t0 + ms(5_000)) >= ms(199));
    }
}
