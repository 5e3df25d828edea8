//! Passive liveness of one WAN family: what its own traffic says. Pure: fed the kernel's
//! cumulative counters (`asked`: packets out that expect an answer, `answered`: packets in
//! that count as answers) with the time they were read, it says when the line is *suspect*.
//!
//! The rule:
//! - The WAN is *waiting* from the first sample where `asked` grew since the last answer; any
//!   growth of `answered` ends the wait.
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
    pub fn sample(
        &mut self,
        asked: u64,
        answered: u64,
        window: Duration,
        may_suspect: bool,
        now: Instant,
    ) -> Option<Change> {
        let (last_asked, last_answered) = self.last.replace((asked, answered))?;
        if asked > last_asked {
            self.last_ask = Some(now);
        }
        if asked < last_asked || answered < last_answered {
            self.waiting = None;
            return self.suspect.take().map(|_| Change::Cleared);
        }
        if answered > last_answered {
            if let Some((since, _)) = self.waiting.take() {
                let waited = now.saturating_duration_since(since);
                if self.learned.is_none_or(|(d, at)| {
                    waited > d || now.saturating_duration_since(at) > LEARNED_FOR
                }) {
                    self.learned = Some((waited, now));
                }
            }
            self.last_answer = Some(now);
            return self.suspect.take().map(|_| Change::Cleared);
        }
        if !may_suspect {
            // A wait of a WAN that is down says nothing about its round trip: it must not
            // teach the window (the first answer after a long outage would widen it to the
            // outage for a minute, and hide the next silence).
            self.waiting = None;
            return None;
        }
        if asked > last_asked && self.waiting.is_none() {
            self.waiting = Some((now, last_asked));
        }
        let (since, before) = self.waiting?;
        let waited = now.saturating_duration_since(since);
        if let Some(s) = self.suspect.as_mut() {
            s.out = asked - before;
            s.waited = waited;
            return None;
        }
        if !may_suspect
            || waited < self.window(window, now)
            || !self.armed(since)
            || self.muted(now)
        {
            return None;
        }
        let s = Suspicion {
            since,
            out: asked - before,
            waited,
        };
        self.suspect = Some(s.clone());
        Some(Change::Suspect(s))
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

    /// The sample that last saw an answer.
    pub fn last_answer(&self) -> Option<Instant> {
        self.last_answer
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
            p.sample(10, 10, W, true, t0),
            None,
            "the first sample is the base"
        );
        assert_eq!(
            p.sample(12, 12, W, true, t0 + ms(10)),
            None,
            "answered: armed"
        );
        assert_eq!(
            p.sample(15, 12, W, true, t0 + ms(20)),
            None,
            "waiting from here"
        );
        assert_eq!(
            p.sample(20, 12, W, true, t0 + ms(60)),
            None,
            "40 ms < 50 ms"
        );
        let Some(Change::Suspect(s)) = p.sample(41 + 12, 12, W, true, t0 + ms(72)) else {
            panic!("52 ms without an answer");
        };
        assert_eq!(s.since, t0 + ms(20));
        assert_eq!(s.describe(), "passive: 41 packets out, 0 back in 52 ms");
        assert_eq!(
            p.sample(60, 12, W, true, t0 + ms(90)),
            None,
            "still suspect"
        );
        assert_eq!(p.suspect().map(|s| s.out), Some(48));
        assert_eq!(
            p.sample(60, 13, W, true, t0 + ms(100)),
            Some(Change::Cleared),
            "one answer clears it"
        );
        assert!(p.suspect().is_none());
    }

    #[test]
    fn one_way_traffic_is_never_suspect() {
        let t0 = Instant::now();
        let mut p = Passive::default();
        // Asks and never an answer (a UDP stream nobody answers): never armed.
        for i in 0..30_000u64 {
            assert_eq!(p.sample(i * 10, 0, W, true, t0 + ms(i)), None, "at {i} ms");
        }
        // Inbound only: answers without asks never wait.
        let mut q = Passive::default();
        for i in 0..30_000u64 {
            assert_eq!(q.sample(0, i * 10, W, true, t0 + ms(i)), None, "at {i} ms");
        }
    }

    #[test]
    fn a_refuted_suspicion_mutes_suspicion_for_longer_each_time() {
        let t0 = Instant::now();
        let mut p = Passive::default();
        p.sample(0, 0, W, true, t0);
        p.sample(1, 1, W, true, t0 + ms(1));
        // One-way asks from now on; a probe refutes each suspicion.
        let mut suspicions = Vec::new();
        for i in 2..20_000u64 {
            let now = t0 + ms(i);
            if let Some(Change::Suspect(s)) = p.sample(i, 1, W, true, now) {
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
        p.sample(0, 0, W, true, t0);
        // Asks every ms, answers every 200 ms (the first at once): the first gap suspects, later
        // ones do not.
        let mut suspect = 0;
        for i in 1..5_000u64 {
            let answered = i.div_ceil(200);
            if let Some(Change::Suspect(_)) = p.sample(i, answered, W, true, t0 + ms(i)) {
                suspect += 1;
            }
        }
        assert_eq!(suspect, 1, "only before it learned the 200 ms gap");
        assert!(p.window(W, t0 + ms(5_000)) >= ms(199));
    }
}
