//! WAN health: the probes sent through each WAN (`probe`), the up/down state machine fed by
//! probe rounds, link events and manual overrides (`tracker`), and [`Health`], which keeps a
//! tracker per configured WAN and address family and hands the controller finished verdicts.
//!
//! Each family of a WAN has its own state when the WAN probes targets of that family: an
//! IPv4-only outage takes down IPv4 and leaves IPv6 where it is. A family without targets of
//! its own follows the other one (a WAN probed over IPv4 only carries IPv6 while its IPv4 is
//! up; `steer check` says so). Carrier and manual overrides apply to both families.

pub mod probe;
pub mod tracker;

use std::{collections::BTreeMap, time::Instant};

pub use tracker::{Override, RoundSummary, Tracker, Transition};

use crate::{config::Wan, model::Family};

/// A WAN whose effective state changed, for one family or both, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub wan: String,
    /// The families that changed; both when they changed together (carrier, an override).
    pub families: Vec<Family>,
    pub transition: Transition,
}

/// The health of every configured WAN, by name.
#[derive(Clone, Debug, Default)]
pub struct Health {
    wans: BTreeMap<String, Tracked>,
}

#[derive(Clone, Debug)]
struct Tracked {
    /// The interface the trackers' history is about.
    interface: String,
    /// By [`Family::index`]; `None` for a family without probe targets of its own.
    trackers: [Option<Tracker>; 2],
}

impl Tracked {
    /// The tracker deciding `family`: its own, else the other family's.
    fn deciding(&self, family: Family) -> Option<&Tracker> {
        self.trackers[family.index()]
            .as_ref()
            .or(self.trackers[family.other().index()].as_ref())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no WAN named `{name}`; configured: {configured}")]
pub struct UnknownWan {
    pub name: String,
    pub configured: String,
}

impl Health {
    /// Keeps trackers per WAN of `wans`: existing ones keep their state (with the new track
    /// settings), new ones and ones moved to another interface start from that interface's
    /// `carrier` (the old interface's carrier says nothing about the new line, and a link that
    /// does not change sends no event), removed ones go.
    pub fn follow(&mut self, wans: &[Wan], carrier: impl Fn(&str) -> bool, now: Instant) {
        self.wans.retain(|name, t| {
            wans.iter()
                .any(|w| w.name == *name && w.interface == t.interface)
        });
        for wan in wans {
            let tracked = self
                .wans
                .entry(wan.name.clone())
                .or_insert_with(|| Tracked {
                    interface: wan.interface.clone(),
                    trackers: [None, None],
                });
            for family in Family::ALL {
                let slot = &mut tracked.trackers[family.index()];
                match (slot.as_mut(), wan.track.probes(family)) {
                    (Some(t), true) => t.retune(wan.track.clone()),
                    (None, true) => {
                        let up = carrier(&wan.interface);
                        *slot = Some(Tracker::new(wan.track.clone(), up, now));
                    }
                    (_, false) => *slot = None,
                }
            }
        }
    }

    /// Whether policies may use `family` of WAN `name` (a WAN nobody tracks counts as up).
    pub fn up(&self, name: &str, family: Family) -> bool {
        self.deciding(name, family).is_none_or(Tracker::up)
    }

    /// The tracker that decides `family` of WAN `name`.
    pub fn deciding(&self, name: &str, family: Family) -> Option<&Tracker> {
        self.wans.get(name)?.deciding(family)
    }

    /// Whether `family` of WAN `name` has a state of its own (probes of that family).
    pub fn tracks(&self, name: &str, family: Family) -> bool {
        self.wans
            .get(name)
            .is_some_and(|t| t.trackers[family.index()].is_some())
    }

    /// Starts `family` of WAN `name` over, as at start (up if `carrier`; probes decide): its
    /// line is new (a gateway appeared, a device was created again). A family without a
    /// tracker of its own follows the other and has nothing to restart.
    pub fn restart(&mut self, name: &str, family: Family, carrier: bool, now: Instant) {
        if let Some(t) = self
            .wans
            .get_mut(name)
            .and_then(|t| t.trackers[family.index()].as_mut())
        {
            *t = t.restarted(carrier, now);
        }
    }

    /// The carrier of `interface` changed (each WAN has its own interface).
    pub fn carrier(&mut self, interface: &str, carrier: bool, now: Instant) -> Option<Verdict> {
        let (wan, t) = self
            .wans
            .iter_mut()
            .find(|(_, t)| t.interface == interface)?;
        joined(wan, &mut t.trackers, |t| t.set_carrier(carrier, now))
    }

    /// A probe round of `family` of `wan` finished.
    pub fn round(
        &mut self,
        wan: &str,
        family: Family,
        round: &probe::Round,
        now: Instant,
    ) -> Option<Verdict> {
        let tracked = self.wans.get_mut(wan)?;
        let transition = tracked.trackers[family.index()]
            .as_mut()?
            .round(&RoundSummary::from(round), now)?;
        // A family without probes of its own follows this one.
        let mut families = vec![family];
        if tracked.trackers[family.other().index()].is_none() {
            families.push(family.other());
        }
        Some(Verdict {
            wan: wan.to_owned(),
            families,
            transition,
        })
    }

    /// Starts every family of WAN `name` afresh, as at start: with `carrier` up until probes
    /// say otherwise, without it down (VRRP brings master-only WANs up and down). A manual
    /// override stays. Reports the families whose effective state changed, with `cause`.
    pub fn restart_wan(
        &mut self,
        name: &str,
        carrier: bool,
        cause: &str,
        now: Instant,
    ) -> Option<Verdict> {
        let t = self.wans.get_mut(name)?;
        joined(name, &mut t.trackers, |tracker| {
            let before = tracker.up();
            let manual = tracker.manual();
            *tracker = tracker.restarted(carrier, now);
            tracker.set_manual(manual, now);
            let up = tracker.up();
            (up != before).then(|| Transition {
                up,
                cause: cause.to_owned(),
                detection: None,
            })
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
        Ok(joined(wan, &mut t.trackers, |t| t.set_manual(manual, now)))
    }
}

/// Applies `change` to both trackers of a WAN and reports the families whose state changed as
/// one verdict (they change for the same reason).
fn joined(
    wan: &str,
    trackers: &mut [Option<Tracker>; 2],
    mut change: impl FnMut(&mut Tracker) -> Option<Transition>,
) -> Option<Verdict> {
    let mut families = Vec::new();
    let mut transition = None;
    for family in Family::ALL {
        if let Some(t) = trackers[family.index()].as_mut()
            && let Some(tr) = change(t)
        {
            families.push(family);
            transition.get_or_insert(tr);
        }
    }
    if families.len() == 1 && trackers[families[0].other().index()].is_none() {
        families.push(families[0].other());
    }
    Some(Verdict {
        wan: wan.to_owned(),
        families,
        transition: transition?,
    })
}

impl From<&probe::Round> for RoundSummary {
    fn from(round: &probe::Round) -> Self {
        RoundSummary {
            started: round.started,
            answers: round.outcomes.iter().map(|(_, o)| o.rtt()).collect(),
            failure: round.first_failure(),
        }
    }
}
