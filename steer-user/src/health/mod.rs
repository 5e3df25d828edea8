//! WAN health: the probes sent through each WAN (`probe`), the up/down state machine of one WAN
//! fed by probe rounds, link events and manual overrides (`tracker`), and [`Health`], which
//! keeps one tracker per configured WAN and hands the controller finished verdicts.

pub mod probe;
pub mod tracker;

use std::{collections::BTreeMap, time::Instant};

pub use tracker::{Override, RoundSummary, Tracker, Transition};

use crate::config::Wan;

/// A WAN whose effective state changed, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub wan: String,
    pub transition: Transition,
}

/// The health of every configured WAN, by name.
#[derive(Clone, Debug, Default)]
pub struct Health {
    wans: BTreeMap<String, Tracked>,
}

#[derive(Clone, Debug)]
struct Tracked {
    /// The interface the tracker's history is about.
    interface: String,
    tracker: Tracker,
}

#[derive(Debug, thiserror::Error)]
#[error("no WAN named `{name}`; configured: {configured}")]
pub struct UnknownWan {
    pub name: String,
    pub configured: String,
}

impl Health {
    /// Keeps a tracker per WAN of `wans`: existing ones keep their state (with the new track
    /// settings), new ones and ones moved to another interface start from that interface's
    /// `carrier` (the old interface's carrier says nothing about the new line, and a link that
    /// does not change sends no event), removed ones go.
    pub fn follow(&mut self, wans: &[Wan], carrier: impl Fn(&str) -> bool, now: Instant) {
        self.wans.retain(|name, t| {
            wans.iter()
                .any(|w| w.name == *name && w.interface == t.interface)
        });
        for wan in wans {
            match self.wans.get_mut(&wan.name) {
                Some(t) => t.tracker.retune(wan.track.clone()),
                None => {
                    let tracker = Tracker::new(wan.track.clone(), carrier(&wan.interface), now);
                    let interface = wan.interface.clone();
                    self.wans
                        .insert(wan.name.clone(), Tracked { interface, tracker });
                }
            }
        }
    }

    /// Whether policies may use WAN `name` (a WAN nobody tracks counts as up).
    pub fn up(&self, name: &str) -> bool {
        self.tracker(name).is_none_or(Tracker::up)
    }

    pub fn tracker(&self, name: &str) -> Option<&Tracker> {
        self.wans.get(name).map(|t| &t.tracker)
    }

    /// The carrier of `interface` changed (each WAN has its own interface).
    pub fn carrier(&mut self, interface: &str, carrier: bool, now: Instant) -> Option<Verdict> {
        let (wan, t) = self
            .wans
            .iter_mut()
            .find(|(_, t)| t.interface == interface)?;
        let transition = t.tracker.set_carrier(carrier, now)?;
        Some(verdict(wan, transition))
    }

    /// A probe round of `wan` finished.
    pub fn round(&mut self, wan: &str, round: &probe::Round, now: Instant) -> Option<Verdict> {
        let transition = self
            .wans
            .get_mut(wan)?
            .tracker
            .round(&RoundSummary::from(round), now)?;
        Some(verdict(wan, transition))
    }

    /// Starts `wan`'s tracking afresh, as at start: with carrier it is up until probes say
    /// otherwise, without it down (VRRP brings master-only WANs up and down). A manual override
    /// stays. Reports the change of the effective state, with `cause`.
    pub fn restart(
        &mut self,
        wan: &Wan,
        carrier: bool,
        cause: &str,
        now: Instant,
    ) -> Option<Verdict> {
        let t = self.wans.get_mut(&wan.name)?;
        let before = t.tracker.up();
        let manual = t.tracker.manual();
        t.tracker = Tracker::new(wan.track.clone(), carrier, now);
        t.tracker.set_manual(manual, now);
        let up = t.tracker.up();
        (up != before).then(|| {
            verdict(
                &wan.name,
                Transition {
                    up,
                    cause: cause.to_owned(),
                    detection: None,
                },
            )
        })
    }

    /// `steer wan NAME up|down|auto`.
    pub fn set_manual(
        &mut self,
        wan: &str,
        manual: Option<Override>,
        now: Instant,
    ) -> Result<Option<Verdict>, UnknownWan> {
        let Some(t) = self.wans.get_mut(wan) else {
            return Err(UnknownWan {
                name: wan.to_owned(),
                configured: self.wans.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        Ok(t.tracker
            .set_manual(manual, now)
            .map(|transition| verdict(wan, transition)))
    }
}

fn verdict(wan: &str, transition: Transition) -> Verdict {
    Verdict {
        wan: wan.to_owned(),
        transition,
    }
}

impl From<&probe::Round> for RoundSummary {
    fn from(round: &probe::Round) -> Self {
        RoundSummary {
            started: round.started,
            answers: round.outcomes.iter().map(|(_, o)| o.rtt()).collect(),
        }
    }
}
