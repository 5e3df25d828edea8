//! Passive liveness, the controller's part: the WAN traffic counters the kernel keeps
//! (`dataplane::wan_traffic`) are sampled and handed to the health state
//! ([`crate::health::Health::traffic`]), which turns "sent, and nothing back" into a suspect
//! WAN (its probes go fast) and answered traffic into quiet probes.
//!
//! The pace of the sampling follows the traffic: every [`SAMPLE_BUSY`] while some WAN's
//! traffic asks (or is suspect), so a silence is seen within a fraction of the 50 ms window;
//! every [`SAMPLE_IDLE`] otherwise, since a line with nothing asking cannot fall silent. A
//! wake-up every 10 ms is most of an idle daemon's CPU (about 1 % of a core on this machine).

use std::time::{Duration, Instant};

use super::Controller;
use crate::{
    dataplane::{TrafficSample, wan_traffic::monotonic_now_ns},
    health::passive::Counters,
    model::Family,
};

/// Between samples while traffic asks.
pub const SAMPLE_BUSY: Duration = Duration::from_millis(10);
/// Between samples while nothing asks: the first asks after a quiet spell are seen within
/// this, and the next sample is a busy one.
pub const SAMPLE_IDLE: Duration = Duration::from_millis(100);

/// What a round of samples found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampled {
    /// A WAN's suspicion changed: its probes' pace did.
    pub changed: bool,
    /// When to sample again.
    pub next: Duration,
}

impl Controller {
    /// Whether any WAN's traffic is watched (the sampling timer runs only then).
    pub fn samples_traffic(&self) -> bool {
        self.config.wans.iter().any(|w| w.track.pace.passive)
    }

    /// Reads the traffic counters of every WAN whose `passive` is on and hands them to the
    /// health state.
    pub fn sample_traffic(&mut self) -> Sampled {
        self.sample_wans(None)
    }

    /// Reads the counters of `wan` alone (before judging its round cut short).
    pub fn sample_wan_traffic(&mut self, wan: &str) {
        self.sample_wans(Some(wan));
    }

    /// The counters of every watched WAN, or of `only` that one.
    fn sample_wans(&mut self, only: Option<&str>) -> Sampled {
        let now = Instant::now();
        let mono_ns = monotonic_now_ns();
        let watched: Vec<(String, u32)> = self
            .config
            .wans
            .iter()
            .filter(|w| w.track.pace.passive && only.is_none_or(|o| o == w.name))
            .filter_map(|w| Some((w.name.clone(), *self.wan_slots.get(&w.name)?)))
            .collect();
        let mut changed = false;
        let mut busy = false;
        for (wan, slot) in watched {
            let samples = match self.dp.wan_traffic(slot) {
                Ok(s) => s,
                Err(e) => {
                    log::debug!("{wan}: traffic counters unreadable: {e}");
                    continue;
                }
            };
            for family in Family::ALL {
                let counters = counters_of(&samples[family.index()], now, mono_ns);
                changed |= self.traffic(&wan, family, counters, now);
                busy |= self.health.watching(&wan, family, SAMPLE_IDLE, now);
            }
        }
        Sampled {
            changed,
            next: if busy { SAMPLE_BUSY } else { SAMPLE_IDLE },
        }
    }
}

/// The kernel's counters of one WAN family, their timestamps put on the daemon's clock: `now`
/// is when the monotonic clock (the kernel's `bpf_ktime_get_ns`) read `mono_ns`.
fn counters_of(s: &TrafficSample, now: Instant, mono_ns: u64) -> Counters {
    let at = |ns: u64| {
        (ns != 0)
            .then(|| now.checked_sub(Duration::from_nanos(mono_ns.saturating_sub(ns))))
            .flatten()
    };
    Counters {
        asked: s.asked,
        answered: s.answered,
        last_ask: at(s.last_asked_ns),
        last_answer: at(s.last_answered_ns),
    }
}
