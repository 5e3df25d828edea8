//! WAN health: the probes sent through each WAN (`probe`), the up/down state machine fed by
//! probe rounds, link events and manual overrides (`tracker`), and [`Health`], which keeps a
//! tracker per configured WAN and address family and hands the controller finished verdicts.
//!
//! Each family of a WAN has its own state when the WAN probes targets of that family: an
//! IPv4-only outage takes down IPv4 and leaves IPv6 where it is. A family without targets of
//! its own follows the other one (a WAN probed over IPv4 only carries IPv6 while its IPv4 is
//! up; `steer check` says so). Carrier and manual overrides apply to both families.

pub mod adopted;
pub mod pace;
pub mod passive;
pub mod probe;
pub mod tracker;

#[cfg(test)]
mod sim;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

pub use pace::{Pace, Pacer, Schedule};
pub use passive::Suspicion;
pub use tracker::{Override, Path, RoundSummary, TargetHealth, Tracker, Transition};

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
    /// The pace of each tracked family's probes and what its traffic says.
    pacers: [Option<Pacer>; 2],
    /// What each family's probes put on the wire since the daemon started.
    wire: [probe::Wire; 2],
    rounds: [u64; 2],
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
#[error("no WAN named `{name}` or on an interface of that name; configured: {configured}")]
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
                    pacers: [None, None],
                    wire: Default::default(),
                    rounds: [0; 2],
                });
            for family in Family::ALL {
                let slot = &mut tracked.trackers[family.index()];
                let pacer = &mut tracked.pacers[family.index()];
                match (slot.as_mut(), wan.track.probes(family)) {
                    (Some(t), true) => {
                        t.retune(wan.track.clone());
                        pacer
                            .get_or_insert_with(|| Pacer::new(&wan.track))
                            .retune(&wan.track);
                    }
                    (None, true) => {
                        let up = carrier(&wan.interface);
                        *slot = Some(Tracker::new(wan.track.clone(), up, now).of_wan(&wan.name));
                        let mut p = Pacer::new(&wan.track);
                        p.set_down(!up);
                        *pacer = Some(p);
                    }
                    (_, false) => {
                        *slot = None;
                        *pacer = None;
                    }
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

    /// Each probe target of `family` of WAN `name` over the loss window (none for a family
    /// without probes of its own).
    pub fn targets(&self, name: &str, family: Family, now: Instant) -> Vec<TargetHealth> {
        self.wans
            .get(name)
            .and_then(|t| t.trackers[family.index()].as_ref())
            .map(|t| t.targets(now))
            .unwrap_or_default()
    }

    /// Whether `family` of WAN `name` has a state of its own (probes of that family).
    pub fn tracks(&self, name: &str, family: Family) -> bool {
        self.wans
            .get(name)
            .is_some_and(|t| t.trackers[family.index()].is_some())
    }

    /// Starts `family` of WAN `name` over: its line is new (a gateway appeared, a device was
    /// created again). As at start (up if `carrier`; probes decide), unless `found_dead`: its
    /// probes had taken it down before its gateway went away (a lease rebound on a line that
    /// is still dead), and then only `up_after` passed rounds bring it up. A family without a
    /// tracker of its own follows the other and has nothing to restart.
    pub fn restart(
        &mut self,
        name: &str,
        family: Family,
        carrier: bool,
        found_dead: bool,
        now: Instant,
    ) {
        if let Some(t) = self
            .wans
            .get_mut(name)
            .and_then(|t| t.trackers[family.index()].as_mut())
        {
            let why = match (found_dead, carrier) {
                (true, _) => "found dead before its gateway went away: probes bring it back",
                (false, true) => "its gateway appeared",
                (false, false) => "its gateway appeared, without carrier",
            };
            *t = t.restarted_because(carrier, found_dead, why, now);
            if let Some(p) = self
                .wans
                .get_mut(name)
                .and_then(|t| t.pacers[family.index()].as_mut())
            {
                p.set_down(!carrier);
            }
        }
    }

    /// `family` of WAN `name` carried no traffic in the state a restarted daemon adopted, or
    /// is new ([`adopted`]; `why` says which, as the state's reason): it starts down, as a
    /// line found dead, and only `up_after` passed rounds bring it up. Whether that changed
    /// its start: a WAN without carrier is down already, and a family without a tracker of its
    /// own follows the other one.
    pub fn down_at_restart(&mut self, name: &str, family: Family, why: &str, now: Instant) -> bool {
        let Some(tracked) = self.wans.get_mut(name) else {
            return false;
        };
        let Some(t) = tracked.trackers[family.index()].as_mut() else {
            return false;
        };
        if !t.healthy() {
            return false;
        }
        *t = t.restarted_because(t.carrier(), true, why, now);
        tracked.follow_trackers();
        true
    }

    /// The carrier of `interface` changed (each WAN has its own interface).
    pub fn carrier(&mut self, interface: &str, carrier: bool, now: Instant) -> Option<Verdict> {
        let (wan, t) = self
            .wans
            .iter_mut()
            .find(|(_, t)| t.interface == interface)?;
        let verdict = joined(wan, &mut t.trackers, |t| t.set_carrier(carrier, now));
        t.follow_trackers();
        verdict
    }

    /// A probe round of `family` of `wan` finished: the tracker judges it (a change is
    /// reported), the pacer takes its round trips and the probe accounting its packets. A WAN
    /// taken down while its traffic was suspect says so, with the detection time from the
    /// first unanswered packet.
    pub fn round(
        &mut self,
        wan: &str,
        family: Family,
        round: &probe::Round,
        now: Instant,
    ) -> Option<Verdict> {
        let tracked = self.wans.get_mut(wan)?;
        let i = family.index();
        for (target, outcome) in &round.outcomes {
            tracked.wire[i].add(probe::wire(target, outcome));
        }
        tracked.rounds[i] += 1;
        let tracker = tracked.trackers[i].as_mut()?;
        let summary = RoundSummary::from(round);
        let suspicion = tracked.pacers[i]
            .as_ref()
            .and_then(|p| p.suspect().cloned());
        if round.cut_short
            && round
                .outcomes
                .iter()
                .any(|(_, o)| *o == probe::ProbeOutcome::Timeout)
            && !tracked.pacers[i]
                .as_ref()
                .is_some_and(|p| p.judges_cut_short(round.started))
        {
            // It was cut short because the line was silent, and the line answered since: its
            // probes might still have answered within their timeout. Not judged.
            if let Some(p) = tracked.pacers[i].as_mut() {
                p.rtts(round.outcomes.iter().filter_map(|(_, o)| o.rtt()));
            }
            return None;
        }
        let mut transition = tracker.round(&summary, now);
        if let (Some(tr), Some(s)) = (transition.as_mut(), suspicion.as_ref())
            && !tr.up
        {
            tr.cause = format!("{}; confirmed by {}", s.describe(), tr.cause);
            tr.detection =
                Some(now.saturating_duration_since(s.since.min(summary.started))).max(tr.detection);
            tr.path = Path::Passive;
            tracker.explain(&tr.cause);
        }
        let passed = tracker.passed_last();
        let down = !tracker.healthy();
        if let Some(p) = tracked.pacers[i].as_mut()
            && p.round(
                round.started,
                passed,
                round.outcomes.iter().filter_map(|(_, o)| o.rtt()),
                down,
                now,
            )
        {
            log::info!(
                "{wan} {}: probes answer although its traffic did not: not suspect (one-way \
                 traffic?)",
                family.name()
            );
        }
        let transition = transition?;
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

    /// The round of `family` of `wan` that started at `started` has not passed within its
    /// schedule's `late_after`: the next rounds go fast until one passes.
    pub fn late(&mut self, wan: &str, family: Family, started: Instant, answered: usize) {
        if let Some(p) = self.pacer_mut(wan, family) {
            p.late(started, answered);
        }
    }

    /// A sample of the kernel's cumulative counters of `family` of `wan`: packets out that
    /// expect an answer (`asked`) and packets in that count as answers (`answered`), read at
    /// `now`, every 10-20 ms. The probes must not count as asking (an idle line would look
    /// busy to itself); their answers count like any other. Suspicion only makes the probes
    /// fast: it never takes a WAN down by itself, so this never returns a verdict; the change
    /// it reports (suspect, cleared) is for the log. A family without probes of its own has no
    /// pacer: its samples are ignored.
    pub fn traffic(
        &mut self,
        wan: &str,
        family: Family,
        counters: passive::Counters,
        now: Instant,
    ) -> Option<passive::Change> {
        self.pacer_mut(wan, family)?.traffic(counters, now)
    }

    /// When the next probe rounds of `family` of `wan` go (for its prober).
    pub fn schedule(&self, wan: &str, family: Family, now: Instant) -> Option<Schedule> {
        Some(self.pacer(wan, family)?.schedule(now))
    }

    /// When the rounds of `family` of `wan` go while it waits for a gateway
    /// ([`Pacer::waiting_schedule`]).
    pub fn waiting_schedule(&self, wan: &str, family: Family) -> Option<Schedule> {
        Some(self.pacer(wan, family)?.waiting_schedule())
    }

    /// The pace, suspicion and probe cost of `family` of `wan`, for status and metrics.
    pub fn probing(&self, wan: &str, family: Family, now: Instant) -> Option<Probing> {
        let tracked = self.wans.get(wan)?;
        let i = family.index();
        let pacer = tracked.pacers[i].as_ref()?;
        let tracker = tracked.trackers[i].as_ref()?;
        let schedule = pacer.schedule(now);
        let per_round = tracker
            .track()
            .targets
            .iter()
            .filter(|t| Family::of(&t.ip()) == family)
            .fold(probe::Wire::default(), |mut w, t| {
                w.add(probe::wire(
                    t,
                    &probe::ProbeOutcome::Answered(Duration::ZERO),
                ));
                w
            });
        let rounds_per_day = DAY.as_secs_f64() / schedule.interval.as_secs_f64().max(1e-3);
        Some(Probing {
            pace: pacer.pace(now),
            interval: schedule.interval,
            late_after: schedule.late_after,
            passive_window: pacer.passive_window(now),
            suspect: pacer.suspect().map(Suspicion::describe),
            silent_for: pacer
                .silence_since()
                .map(|s| now.saturating_duration_since(s)),
            rounds: tracked.rounds[i],
            wire: tracked.wire[i],
            probes_per_day: (rounds_per_day * per_round.packets_out as f64) as u64,
            bytes_per_day: (rounds_per_day * per_round.bytes() as f64) as u64,
            waiting: false,
        })
    }

    /// Whether `family` of `wan` has traffic worth sampling closely: it asked within `within`,
    /// or it is suspect.
    pub fn watching(&self, wan: &str, family: Family, within: Duration, now: Instant) -> bool {
        self.pacer(wan, family)
            .is_some_and(|p| p.watching(within, now))
    }

    fn pacer(&self, wan: &str, family: Family) -> Option<&Pacer> {
        self.wans.get(wan)?.pacers[family.index()].as_ref()
    }

    fn pacer_mut(&mut self, wan: &str, family: Family) -> Option<&mut Pacer> {
        self.wans.get_mut(wan)?.pacers[family.index()].as_mut()
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
        let verdict = joined(name, &mut t.trackers, |tracker| {
            let before = tracker.up();
            let manual = tracker.manual();
            // The cause is the state's reason: status and explain show it ("held down: this
            // router left VRRP MASTER"), not a start's "no carrier at start".
            *tracker = tracker.restarted_because(carrier, false, cause, now);
            tracker.set_manual(manual, now);
            let up = tracker.up();
            (up != before).then(|| Transition {
                up,
                cause: cause.to_owned(),
                detection: None,
                path: Path::Event,
                waiting: false,
            })
        });
        t.follow_trackers();
        verdict
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

    /// An override set by hand before the daemon restarted ([`Self::set_manual`]) while WAN
    /// `name` was on `interface`, with `why` as the state's reason (`steer status`). Not kept
    /// for a WAN the configuration lacks, or puts on another interface (another line, whose
    /// history a reload drops too: [`Self::follow`]).
    pub fn restore_manual(
        &mut self,
        name: &str,
        manual: Override,
        interface: &str,
        why: &str,
        now: Instant,
    ) -> Restored {
        let Some(t) = self.wans.get_mut(name) else {
            return Restored::NoWan;
        };
        if t.interface != interface {
            return Restored::OtherInterface(t.interface.clone());
        }
        for tracker in t.trackers.iter_mut().flatten() {
            tracker.set_manual(Some(manual), now);
            tracker.explain(why);
        }
        Restored::Kept
    }

    /// Each tracked WAN's name and interface.
    pub fn lines(&self) -> Vec<(String, String)> {
        self.wans
            .iter()
            .map(|(name, t)| (name.clone(), t.interface.clone()))
            .collect()
    }

    /// The WANs forced up or down by hand (the same override holds for both families), each
    /// with its interface.
    pub fn overrides(&self) -> BTreeMap<String, (Override, String)> {
        self.wans
            .iter()
            .filter_map(|(name, t)| {
                let manual = t.trackers.iter().flatten().find_map(Tracker::manual)?;
                Some((name.clone(), (manual, t.interface.clone())))
            })
            .collect()
    }
}

/// What became of an override kept across a restart ([`Health::restore_manual`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restored {
    Kept,
    /// The configuration has no such WAN now.
    NoWan,
    /// The configuration puts the WAN on this other interface now.
    OtherInterface(String),
}

impl Health {}

/// The health of a family that waits for a gateway and is not probed meanwhile, for its
/// status: no state of its line (that would be from before the wait), but what the gateway
/// will find ([`Health::restart`]).
pub fn unprobed_while_waiting(tracker: Option<&Tracker>) -> String {
    match tracker {
        Some(t) if !t.healthy() && t.carrier() => format!(
            "not probed meanwhile (its probes have no way out); found dead before ({}): {} good \
             rounds in a row bring it back once it has one",
            t.reason(),
            t.track().up_after
        ),
        _ => "not probed meanwhile (its probes have no way out); its health starts over when \
              it has one"
            .into(),
    }
}

/// Per day, for the probe cost.
const DAY: Duration = Duration::from_secs(86_400);

/// How `family` of a WAN is probed now, and what its probes cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Probing {
    pub pace: Pace,
    /// Between rounds at this pace.
    pub interval: Duration,
    /// A round not passed by then hastens the next ones.
    pub late_after: Duration,
    /// The traffic's window in force.
    pub passive_window: Duration,
    /// Why the traffic is suspect (`passive: 41 packets out, 0 back in 52 ms`).
    pub suspect: Option<String>,
    /// How long the line has answered nothing, when that is known (a suspicion, or a late
    /// round seen by the counters): confirming rounds end when it reaches the timeout.
    pub silent_for: Option<Duration>,
    /// Rounds and packets since the daemon started.
    pub rounds: u64,
    pub wire: probe::Wire,
    /// Probes (requests) and bytes (both ways) a day at this pace, all answered.
    pub probes_per_day: u64,
    pub bytes_per_day: u64,
    /// Not probed: it waits for a gateway ([`Probing::waiting_for_gateway`]).
    pub waiting: bool,
}

impl Probing {
    /// A family that waits for a gateway is not probed: its probes have no way out, its rounds
    /// are not judged. Nothing of its pace holds then (the pacer, fed no rounds, would show
    /// the last one it had, or a fast pace it never leaves); what was sent before stays.
    pub fn waiting_for_gateway(self) -> Probing {
        Probing {
            interval: Duration::ZERO,
            late_after: Duration::ZERO,
            passive_window: Duration::ZERO,
            suspect: None,
            silent_for: None,
            probes_per_day: 0,
            bytes_per_day: 0,
            waiting: true,
            ..self
        }
    }

    /// The pace's name for the status: "fast", "normal", "quiet", or "waiting" (not probed).
    pub fn pace_name(&self) -> &'static str {
        if self.waiting {
            "waiting"
        } else {
            self.pace.as_str()
        }
    }
}

impl Tracked {
    /// Tells the pacers what the trackers decided outside a round (carrier, a restart).
    fn follow_trackers(&mut self) {
        for (t, p) in self.trackers.iter().zip(self.pacers.iter_mut()) {
            if let (Some(t), Some(p)) = (t, p) {
                p.set_down(!t.healthy());
            }
        }
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
            targets: round.outcomes.iter().map(|(t, _)| t.to_string()).collect(),
            failure: round.first_failure(),
        }
    }
}

#[cfg(test)]
mod state_tests {
    use std::time::{Duration, Instant};

    use super::{Health, unprobed_while_waiting};
    use crate::model::Family;

    /// The health of one WAN, `dsl`, probed every 100 ms, followed from `t0`.
    fn dsl(t0: Instant) -> Health {
        let mut health = Health::default();
        let wan = crate::config::Wan {
            track: crate::config::testing::icmp_track(100, 80, 3, 3),
            ..crate::config::testing::wan("dsl", "eth1")
        };
        health.follow(&[wan], |_| true, t0);
        health
    }

    #[test]
    fn a_wan_held_down_says_why_not_no_carrier_at_start() {
        let t0 = Instant::now();
        let mut health = dsl(t0);
        health.restart_wan("dsl", false, "held down: this router left VRRP MASTER", t0);
        let said = health.deciding("dsl", Family::V4).unwrap().describe(t0);
        assert!(
            said.contains("held down: this router left VRRP MASTER"),
            "{said}"
        );
        assert!(!said.contains("no carrier at start"), "{said}");
    }

    /// A family that waits for a gateway is not probed: no pace, no daily cost (it showed the
    /// pacer's last pace, fast every 20 ms and 1.31 GB a day, with no probe on the wire), and
    /// no health line of before the wait.
    #[test]
    fn a_family_waiting_for_a_gateway_shows_no_pace_nor_cost() {
        let t0 = Instant::now();
        let mut health = dsl(t0);
        let probing = health.probing("dsl", Family::V4, t0).expect("probed");
        assert!(probing.bytes_per_day > 0 && !probing.waiting);
        assert_ne!(probing.pace_name(), "waiting");
        let waiting = probing.clone().waiting_for_gateway();
        assert_eq!(waiting.pace_name(), "waiting");
        assert_eq!(
            (
                waiting.interval,
                waiting.probes_per_day,
                waiting.bytes_per_day
            ),
            (Duration::ZERO, 0, 0)
        );
        assert_eq!(waiting.rounds, probing.rounds, "what was sent before stays");
        // Its rounds, unjudged, never end a fast pace: while it waits they go at the
        // configured interval (it went fast every 20 ms for as long as it waited).
        health.late("dsl", Family::V4, t0, 0);
        let fast = health.schedule("dsl", Family::V4, t0).expect("paced");
        assert!(fast.interval < Duration::from_millis(100), "{fast:?}");
        let resting = health.waiting_schedule("dsl", Family::V4).expect("paced");
        assert_eq!(resting.interval, Duration::from_millis(100));
        assert_eq!(resting.answer_by, None);
        let said = unprobed_while_waiting(health.deciding("dsl", Family::V4));
        assert!(said.starts_with("not probed meanwhile"), "{said}");
        assert!(!said.contains("up for"), "{said}");
    }
}
