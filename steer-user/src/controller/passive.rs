//! Passive liveness, the controller's part: the WAN traffic counters the kernel keeps
//! (`dataplane::wan_traffic`) are sampled every [`SAMPLE_EVERY`] and handed to the health
//! state ([`crate::health::Health::traffic`]), which turns "sent, and nothing back" into a
//! suspect WAN (its probes go fast) and answered traffic into quiet probes.

use std::time::{Duration, Instant};

use super::Controller;
use crate::model::Family;

/// How often the counters are read: well inside the shortest passive window (50 ms by
/// default), so a silence is seen within a fraction of it.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);

impl Controller {
    /// Whether any WAN's traffic is watched (the sampling timer runs only then).
    pub fn samples_traffic(&self) -> bool {
        self.config.wans.iter().any(|w| w.track.pace.passive)
    }

    /// Reads the traffic counters of every WAN whose `passive` is on and hands them to the
    /// health state. Returns whether a WAN's suspicion changed (its probes' pace did).
    pub fn sample_traffic(&mut self) -> bool {
        let now = Instant::now();
        let watched: Vec<(String, u32)> = self
            .config
            .wans
            .iter()
            .filter(|w| w.track.pace.passive)
            .filter_map(|w| Some((w.name.clone(), *self.wan_slots.get(&w.name)?)))
            .collect();
        let mut changed = false;
        for (wan, slot) in watched {
            let samples = match self.dp.wan_traffic(slot) {
                Ok(s) => s,
                Err(e) => {
                    log::debug!("{wan}: traffic counters unreadable: {e}");
                    continue;
                }
            };
            for family in Family::ALL {
                let s = samples[family.index()];
                changed |= self.traffic(&wan, family, s.asked, s.answered, now);
            }
        }
        changed
    }
}
