//! The controller's part in VRRP: mastership turned into kernel changes, in checked steps.
//!
//! The speakers (or keepalived's fifo) only report states; everything that changes the kernel
//! happens here, one step after the other, each checked and logged:
//!
//! - **Becoming master**: conntrackd commits the peer's connections (when configured); the
//!   virtual addresses are added (on `holder` for a routed VIP) and announced (gratuitous ARP,
//!   unsolicited NA); once no other router claims mastership ([`Event::WansClear`]; at once for
//!   keepalived) each master-only WAN comes up (link up, or its `up_command`), must show carrier
//!   within `step_timeout_ms` (and its IPv4 gateway, if it has one, answer ARP), has its own addresses announced on its link, its tracking starts
//!   afresh (up, as at start; its probes start) and the policies use it again.
//! - **Leaving master** (backup, fault, shutdown): master-only WANs go down first (their
//!   connections are kept: conntrackd hands them over; their health is remembered), then the
//!   virtual addresses go, then conntrackd's backup (or fault) steps run.
//! - **Failures**: a WAN that does not come up counts as down (its weight comes off the
//!   priority, the peer may take over); addresses that cannot be added put the instance in
//!   fault for [`STEP_FAULT_HOLD`] (it resigns with priority 0). Everything is logged.
//! - **Health**: after every WAN state change the instances are weighed again
//!   ([`crate::vrrp::weigh`]) and the speakers told their priority and fault (keepalived: the
//!   track file).
//!
//! - **Siblings**: instances that list one master-only WAN move together (a keepalived sync
//!   group): when the first of them becomes backup following another router, the others
//!   step down (`Controller::step_down_siblings`); a split that persists is warned of.
//! - **VIPs**: those steer added that the configuration no longer lists are removed at start
//!   and reload; a master puts back a VIP deleted under it (at the kernel's address event,
//!   and at the periodic check).
//!
//! While this router is not master its master-only WANs are down: they are not probed, and
//! their routes are left out of the desired routing (the kernel drops them anyway).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::Controller;
use crate::{
    config::{Engine, NextHop, Vrrp, VrrpWan},
    model::Family,
    routing,
    status::{ReportLine, VrrpStatus, VrrpTransition, VrrpWanStatus},
    vrrp::{
        Board, Command, Engines, Event, State, announce, command, conntrackd,
        follow::write_track_file,
        kernel::{self, AddError, Netlink, Removed},
        speaker,
        weigh::{WanHealth, weigh},
    },
};

/// How long an instance stays in fault after its addresses could not be added.
pub const STEP_FAULT_HOLD: Duration = Duration::from_secs(10);

/// What the controller knows and did about VRRP.
#[derive(Default)]
pub(super) struct VrrpCtl {
    engines: Option<Engines>,
    announcer: announce::Announcer,
    /// Interface -> the task announcing its addresses again (aborted when they are given up).
    again: BTreeMap<String, tokio::task::JoinHandle<()>>,
    nl: Option<Netlink>,
    board: Board,
    roles: BTreeMap<String, Role>,
    /// Master-only WANs this router brought up.
    raised: BTreeSet<String>,
    /// Master-only WANs that did not come up while master: they count as down.
    failed: BTreeSet<String>,
    /// A master-only WAN's health when this router last left MASTER.
    remembered: BTreeMap<String, bool>,
    /// The WAN being handed over right now: its connections are not flushed.
    handing_over: Option<String>,
    /// Instance -> (until, why): in fault after a failed step.
    step_faults: BTreeMap<String, (Instant, String)>,
    /// Instance -> the priority and fault last told to its engine.
    told: BTreeMap<String, (u8, Option<String>)>,
    /// The instances as the engines run them (the configuration of the last sync).
    running: Vec<Vrrp>,
    /// Instance -> when its addresses were last announced again because another router
    /// claimed them: adverts queued while this router was frozen arrive together, and one
    /// announcement per [`REANNOUNCE_EVERY`] is enough.
    reannounced: BTreeMap<String, Instant>,
    /// Instance -> when and what: VIPs a master found missing (added back, or not).
    vip_notes: BTreeMap<String, (Instant, String)>,
    /// Master-only WAN -> since when the instances listing it are split (master of some here,
    /// not of others: the line is up on neither router), and whether that was logged.
    splits: BTreeMap<String, (Instant, bool)>,
    /// Instances a reload added next to a master that has their master-only WANs up: the WANs
    /// stay up until each of these is master too, or follows another router (or faults).
    joining: BTreeSet<String>,
}

/// How long master-only WANs' instances must stay split before the log says so (during a
/// takeover they become master one after the other, a few milliseconds apart).
const SPLIT_WARN_AFTER: Duration = Duration::from_secs(3);

/// At most one announcement (and one log line) per instance this often when other routers'
/// adverts keep claiming its addresses.
const REANNOUNCE_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
struct Role {
    state: State,
    since: Instant,
    why: String,
    master: Option<IpAddr>,
    /// The priority the engine last reported (keepalived's own).
    priority: Option<u8>,
    /// As master: no other router claims mastership any more.
    wans_clear: bool,
}

impl Default for Role {
    fn default() -> Self {
        Role {
            state: State::Initialize,
            since: Instant::now(),
            why: "not started".into(),
            master: None,
            priority: None,
            wans_clear: false,
        }
    }
}

impl Controller {
    /// Starts VRRP: takes every instance as not master (its addresses removed, its master-only
    /// WANs down), then starts the speakers and keepalived readers, which report on `events`.
    pub async fn vrrp_start(&mut self, events: mpsc::UnboundedSender<Event>) -> Vec<ReportLine> {
        self.vrrp.engines = Some(Engines::new(events, self.vrrp.board.clone()));
        self.vrrp_sync().await
    }

    /// After a reload: instances that changed (or went) and are master leave mastership first;
    /// then every instance is settled as not master unless it is, and the engines follow the
    /// configuration.
    pub async fn vrrp_sync(&mut self) -> Vec<ReportLine> {
        let mut lines = Vec::new();
        if self.config.vrrp.is_empty() && self.vrrp.roles.is_empty() {
            return lines;
        }
        if self.vrrp.nl.is_none() {
            match Netlink::new() {
                Ok(nl) => self.vrrp.nl = Some(nl),
                Err(e) => lines.push(ReportLine::error(format!(
                    "vrrp: cannot open a netlink socket: {e}"
                ))),
            }
        }
        let leaving: Vec<String> = self
            .vrrp
            .roles
            .iter()
            .filter(|(_, r)| r.state == State::Master)
            .map(|(n, _)| n.clone())
            .filter(|n| self.vrrp_changed(n))
            .collect();
        for name in leaving {
            lines.extend(self.leave(&name, State::Initialize).await);
        }
        let names: Vec<String> = self.config.vrrp.iter().map(|v| v.name.clone()).collect();
        self.vrrp.roles.retain(|n, _| names.contains(n));
        self.vrrp.joining.retain(|n| names.contains(n));
        lines.extend(self.settle().await);
        // A master that stays one may have gained master-only WANs.
        for v in self.config.vrrp.clone() {
            let role = self.vrrp.roles.get(&v.name);
            if role.is_some_and(|r| r.state == State::Master && r.wans_clear) {
                lines.extend(self.raise_wans(&v).await);
            }
        }
        self.vrrp.told.clear();
        let config = self.config.vrrp.clone();
        let priorities: BTreeMap<String, u8> = config
            .iter()
            .map(|v| (v.name.clone(), weigh(v, |w| self.wan_health(w)).priority))
            .collect();
        if let Some(engines) = self.vrrp.engines.as_mut() {
            let errors = engines
                .sync(&config, |n| priorities.get(n).copied().unwrap_or(100))
                .await;
            lines.extend(errors.into_iter().map(ReportLine::error));
        }
        self.vrrp_reweigh();
        self.vrrp.running = config.clone();
        lines
    }

    /// Whether instance `name` must restart for the configuration now loaded (it is gone, or
    /// what it puts on the wire changed).
    fn vrrp_changed(&self, name: &str) -> bool {
        let now = self.config.vrrp.iter().find(|v| v.name == name);
        let before = self.vrrp.running.iter().find(|v| v.name == name);
        match (before, now) {
            (Some(b), Some(n)) => speaker::restarts(b, n),
            _ => true,
        }
    }

    /// Makes the kernel match "not master" for every instance that is not: addresses removed,
    /// master-only WANs that no master instance holds down.
    async fn settle(&mut self) -> Vec<ReportLine> {
        let mut lines = Vec::new();
        for v in self.config.vrrp.clone() {
            let role = self.vrrp.roles.entry(v.name.clone()).or_default().state;
            if role != State::Master {
                lines.extend(self.remove_vips(&v).await);
            }
        }
        lines.extend(self.remove_stale_vips().await);
        for w in self.master_only_wans() {
            if self.mastered_by_all(&w.wan, false) {
                continue;
            }
            // Up here, and held back only by instances this reload adds: lowering it now and
            // raising it once they are master too would bounce the line (its probes, its
            // health) for nothing. It waits for them instead (see `joining`).
            let listing: Vec<&Vrrp> = self
                .config
                .vrrp
                .iter()
                .filter(|v| v.holds_master_only(&w.wan))
                .collect();
            let (held, waiting): (Vec<&Vrrp>, Vec<&Vrrp>) = listing
                .into_iter()
                .partition(|v| self.vrrp_state(&v.name) == State::Master);
            let new = |v: &Vrrp| {
                v.speaker().is_some() && !self.vrrp.running.iter().any(|r| r.name == v.name)
            };
            if self.vrrp.raised.contains(&w.wan)
                && !held.is_empty()
                && waiting.iter().all(|v| new(v))
            {
                let names: Vec<String> = waiting.iter().map(|v| v.name.clone()).collect();
                self.vrrp.joining.extend(names);
                continue;
            }
            // Named after an instance that holds it down (not master here), with its settings.
            let Some((v, w)) = self
                .config
                .vrrp
                .iter()
                .filter(|v| self.vrrp_state(&v.name) != State::Master)
                .find_map(|v| {
                    let own = v.wans.iter().find(|x| x.master_only && x.wan == w.wan)?;
                    Some((v.clone(), own.clone()))
                })
            else {
                continue;
            };
            lines.extend(
                self.lower_wan(&v, &w, "held down: this router is not VRRP master", false)
                    .await,
            );
        }
        lines
    }

    /// Removes the addresses steer added as VIPs that no master instance of the configuration
    /// holds: VIPs a reload dropped (`leave` and `remove_vips` only know the VIPs configured
    /// now), and those an earlier run left before a restart with fewer VIPs.
    async fn remove_stale_vips(&mut self) -> Vec<ReportLine> {
        let Some(nl) = self.vrrp.nl.clone() else {
            return Vec::new();
        };
        let keep: Vec<(String, IpAddr)> = self
            .config
            .vrrp
            .iter()
            .filter(|v| self.vrrp_state(&v.name) == State::Master)
            .filter_map(Vrrp::speaker)
            .flat_map(|s| {
                s.vips
                    .iter()
                    .map(|vip| (s.vip_interface().to_owned(), vip.addr))
            })
            .collect();
        match nl.remove_vips_except(&keep).await {
            Ok(removed) if removed.is_empty() => Vec::new(),
            Ok(removed) => vec![ReportLine::info(format!(
                "vrrp: removed {}: added by steer as virtual addresses, no longer in the \
                 configuration",
                removed.join(", ")
            ))],
            Err(e) => vec![ReportLine::error(format!(
                "vrrp: removing virtual addresses no longer configured: {e}"
            ))],
        }
    }

    /// A speaker or keepalived reported something.
    pub async fn vrrp_event(&mut self, event: Event) -> Vec<ReportLine> {
        let mut lines = Vec::new();
        match event {
            Event::State {
                instance,
                state,
                why,
                master,
                priority,
                at,
            } => {
                let Some(v) = self.vrrp_instance(&instance) else {
                    return lines;
                };
                let role = self.vrrp.roles.entry(instance.clone()).or_default();
                let before = role.state;
                // A state reported again (keepalived repeating MASTER) keeps what was heard.
                let wans_clear = state == before && role.wans_clear;
                *role = Role {
                    state,
                    since: at,
                    why: why.clone(),
                    master,
                    priority,
                    wans_clear,
                };
                let line = format!("vrrp {instance}: {before} -> {state} ({why})");
                // A repeated state tells nothing (an instance that left MASTER for a reload
                // that restarts it, its steps logged, and now stops).
                if state != before || state == State::Master {
                    lines.push(if state == State::Master || before == State::Master {
                        ReportLine::warning(line)
                    } else {
                        ReportLine::info(line)
                    });
                }
                if state == State::Master && before != State::Master {
                    lines.extend(self.take_over(&v).await);
                } else if state != State::Master && before == State::Master {
                    lines.extend(self.leave(&instance, state).await);
                } else if state != State::Master {
                    lines.extend(self.remove_vips(&v).await);
                }
                if let (State::Backup, Some(other)) = (state, master) {
                    lines.extend(self.step_down_siblings(&v, other));
                }
                // A joining instance (see `joining`) that started as backup waits on: it may
                // still become master.
                if self.vrrp.joining.contains(&instance)
                    && (state != State::Backup || master.is_some())
                {
                    lines.extend(self.joined(&v).await);
                }
                self.note_splits();
            }
            Event::WansClear { instance } => {
                let Some(v) = self.vrrp_instance(&instance) else {
                    return lines;
                };
                // Events wait while the controller works (a slow conntrackd, a step): a speaker
                // may have gone back to backup since it said this, and its WANs must stay down.
                if !self.speaker_master(&v) {
                    return lines;
                }
                let role = self.vrrp.roles.entry(instance).or_default();
                role.wans_clear = true;
                if role.state == State::Master {
                    lines.extend(self.raise_wans(&v).await);
                }
            }
            Event::Following { instance, master } => {
                let Some(v) = self.vrrp_instance(&instance) else {
                    return lines;
                };
                lines.extend(self.step_down_siblings(&v, master));
                if self.vrrp.joining.contains(&instance) {
                    lines.extend(self.joined(&v).await);
                }
                self.note_splits();
            }
            Event::Announce { instance } => {
                let Some(v) = self.vrrp_instance(&instance) else {
                    return lines;
                };
                let now = Instant::now();
                let due = self
                    .vrrp
                    .reannounced
                    .get(&instance)
                    .is_none_or(|at| now.duration_since(*at) >= REANNOUNCE_EVERY);
                if self.vrrp_state(&instance) == State::Master && due {
                    self.vrrp.reannounced.insert(instance, now);
                    let when = "again (another router had claimed them)";
                    lines.extend(self.announce_vips(&v, when));
                    // The other router may have brought the shared line up while it believed
                    // it was master (a split brain, this router frozen): the modem still sends
                    // to its MAC until this one says where the line's addresses are.
                    lines.extend(self.announce_wans(&v, when).await);
                }
            }
        }
        self.vrrp_reweigh();
        lines
    }

    /// Ends step faults whose time is up, puts back the VIPs a master lost (netlink events
    /// catch most at once: this is the check if one was lost), and warns of master-only WANs
    /// up nowhere because their instances are split; call periodically.
    pub async fn vrrp_tick(&mut self) -> Vec<ReportLine> {
        let now = Instant::now();
        let before = self.vrrp.step_faults.len();
        self.vrrp.step_faults.retain(|_, (until, _)| *until > now);
        if before != self.vrrp.step_faults.len() {
            self.vrrp_reweigh();
        }
        let mut lines = self.restore_vips().await;
        self.note_splits();
        let due: Vec<String> = self
            .vrrp
            .splits
            .iter()
            .filter(|(_, (since, warned))| !warned && since.elapsed() >= SPLIT_WARN_AFTER)
            .map(|(w, _)| w.clone())
            .collect();
        for wan in due {
            if let Some(text) = self.split_words(&wan) {
                lines.push(ReportLine::warning(format!("vrrp: {text}")));
            }
            if let Some(s) = self.vrrp.splits.get_mut(&wan) {
                s.1 = true;
            }
        }
        lines
    }

    /// Instances that share a master-only WAN move together (keepalived's sync group): when
    /// the group's leader (see `Controller::sync_leader`) becomes backup following
    /// `other`, its siblings that are master here step down, so the other router holds them
    /// all and the line comes up there. Otherwise equal priorities broken by each family's own
    /// address (an IPv4 and an IPv6 instance) could leave each router master of one, and the
    /// line down on both for good. The backups then follow the other router at an equal
    /// priority, so the pair stays that way.
    fn step_down_siblings(&self, v: &Vrrp, other: IpAddr) -> Vec<ReportLine> {
        let mut lines = Vec::new();
        let Some(engines) = &self.vrrp.engines else {
            return lines;
        };
        let mut told: BTreeSet<String> = BTreeSet::new();
        for w in v.wans.iter().filter(|w| w.master_only) {
            if self.sync_leader(&w.wan).as_deref() != Some(v.name.as_str()) {
                continue;
            }
            for sib in &self.config.vrrp {
                if sib.name == v.name
                    || sib.speaker().is_none()
                    || !sib.holds_master_only(&w.wan)
                    || self.vrrp_state(&sib.name) != State::Master
                    || !self.speaker_master(sib)
                    || !told.insert(sib.name.clone())
                {
                    continue;
                }
                let why = format!(
                    "{} follows {other} and shares the master-only WAN {} with this instance: \
                     stepping down with it, so one router is master of both",
                    v.name, w.wan
                );
                lines.push(ReportLine::info(format!("vrrp {}: {why}", sib.name)));
                engines.command(&sib.name, Command::StepDown(why));
            }
        }
        lines
    }

    /// The instance whose mastership the others listing master-only WAN `wan` follow: the
    /// IPv4 one first, then by VRID (both routers agree on these, whatever the instances are
    /// called). Only instances steer speaks.
    fn sync_leader(&self, wan: &str) -> Option<String> {
        self.config
            .vrrp
            .iter()
            .filter(|v| v.holds_master_only(wan))
            .filter_map(|v| {
                v.speaker()
                    .map(|s| ((s.is_v6(), s.vrid, v.name.clone()), v))
            })
            .min_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, v)| v.name.clone())
    }

    /// A joining instance (see `joining`) is master now, or is not going to be: the
    /// master-only WANs it lists that are up but no longer mastered by every instance
    /// listing them go down.
    async fn joined(&mut self, v: &Vrrp) -> Vec<ReportLine> {
        self.vrrp.joining.remove(&v.name);
        let mut lines = Vec::new();
        for w in v.wans.iter().filter(|w| w.master_only) {
            if !self.vrrp.raised.contains(&w.wan) || self.mastered_by_all(&w.wan, false) {
                continue;
            }
            let cause = format!("held down: this router is not VRRP master of {}", v.name);
            lines.extend(self.lower_wan(v, w, &cause, false).await);
        }
        lines
    }

    /// Records which master-only WANs have their instances split now (see `splits`).
    fn note_splits(&mut self) {
        let now = Instant::now();
        let split: Vec<String> = self
            .master_only_wans()
            .into_iter()
            .map(|w| w.wan)
            .filter(|w| self.split_words(w).is_some())
            .collect();
        self.vrrp.splits.retain(|w, _| split.contains(w));
        for w in split {
            self.vrrp.splits.entry(w).or_insert((now, false));
        }
    }

    /// Why master-only WAN `wan` is up on neither router, if its instances are split: this
    /// router is master of some, and another router of the others.
    fn split_words(&self, wan: &str) -> Option<String> {
        let listing: Vec<&Vrrp> = self
            .config
            .vrrp
            .iter()
            .filter(|v| v.holds_master_only(wan))
            .collect();
        let (mine, theirs): (Vec<&Vrrp>, Vec<&Vrrp>) = listing
            .iter()
            .partition(|v| self.vrrp_state(&v.name) == State::Master);
        let followed: Vec<String> = theirs
            .iter()
            .filter_map(|v| {
                let role = self.vrrp.roles.get(&v.name)?;
                let master = role
                    .master
                    .or_else(|| speaker::view(&self.vrrp.board, &v.name).master)?;
                (role.state == State::Backup).then(|| format!("{} (master {master})", v.name))
            })
            .collect();
        if mine.is_empty() || followed.is_empty() {
            return None;
        }
        let mine: Vec<&str> = mine.iter().map(|v| v.name.as_str()).collect();
        Some(format!(
            "{wan} is up on neither router: this router is master of {}, another router of {}; \
             a master-only WAN comes up only where every instance listing it is master. Give \
             the instances listing it one priority per router (e.g. all 150 on one router, all \
             100 on the other) and the same `preempt`",
            mine.join(", "),
            followed.join(", ")
        ))
    }

    /// Addresses changed (netlink): a master's VIP may have been deleted under it.
    pub async fn vrrp_addresses_changed(&mut self) -> Vec<ReportLine> {
        self.restore_vips().await
    }

    /// A master whose VIP was deleted (by hand, a network manager, a DHCP client flushing the
    /// interface) would go on advertising it, and the other router would never take it over,
    /// while no host reaches it: each master instance's VIPs are added back (as keepalived
    /// does), said loudly and shown in the status.
    async fn restore_vips(&mut self) -> Vec<ReportLine> {
        let Some(nl) = self.vrrp.nl.clone() else {
            return Vec::new();
        };
        let mut lines = Vec::new();
        for v in self.config.vrrp.clone() {
            let Some(s) = v.speaker() else { continue };
            if self.vrrp_state(&v.name) != State::Master || !self.speaker_master(&v) {
                continue;
            }
            let mut back = Vec::new();
            for vip in &s.vips {
                match nl.add_vip(s.vip_interface(), vip).await {
                    Ok(true) => back.push(vip.to_string()),
                    Ok(false) | Err(AddError::NotOurs) => {}
                    Err(AddError::Failed(e)) => {
                        let text = format!(
                            "{vip} is missing from {} while this router is master, and adding \
                             it back failed: {e}",
                            s.vip_interface()
                        );
                        // Every address event tries again: the same failure is logged once a
                        // minute.
                        let said = self.vrrp.vip_notes.get(&v.name).is_some_and(|(at, t)| {
                            *t == text && at.elapsed() < Duration::from_secs(60)
                        });
                        if !said {
                            lines.push(ReportLine::error(format!("vrrp {}: {text}", v.name)));
                            self.vrrp
                                .vip_notes
                                .insert(v.name.clone(), (Instant::now(), text));
                        }
                    }
                }
            }
            if back.is_empty() {
                continue;
            }
            let text = format!(
                "{} went missing from {} while this router is master (deleted by hand, or by a \
                 network manager or DHCP client): added back; find what removes it",
                back.join(", "),
                s.vip_interface()
            );
            lines.push(ReportLine::warning(format!("vrrp {}: {text}", v.name)));
            self.vrrp
                .vip_notes
                .insert(v.name.clone(), (Instant::now(), text));
            lines.extend(self.announce_vips(&v, "after adding them back"));
        }
        lines
    }

    /// Stopping the daemon: every instance steer speaks leaves mastership (WANs down first,
    /// then the addresses), then the speakers resign with priority 0. Instances keepalived
    /// speaks stay as they are: keepalived still runs them.
    pub async fn vrrp_shutdown(&mut self) -> Vec<ReportLine> {
        let mut lines = Vec::new();
        let masters: Vec<String> = self
            .config
            .vrrp
            .iter()
            .filter(|v| v.speaker().is_some() && self.vrrp_state(&v.name) == State::Master)
            .map(|v| v.name.clone())
            .collect();
        for name in masters {
            lines.extend(self.leave(&name, State::Initialize).await);
        }
        if let Some(engines) = self.vrrp.engines.as_mut() {
            engines.shutdown().await;
        }
        lines
    }

    /// Whether WAN `wan` is probed now: not while it is held down (master-only, not master).
    pub fn vrrp_probed(&self, wan: &str) -> bool {
        !self.is_master_only(wan) || self.vrrp.raised.contains(wan)
    }

    /// The shared views of the speakers.
    pub fn vrrp_board(&self) -> Board {
        self.vrrp.board.clone()
    }

    /// A link changed: the speakers on it hear of it.
    pub(super) fn vrrp_link(&self, interface: &str, up: bool) {
        if let Some(e) = &self.vrrp.engines {
            e.link(interface, up);
        }
    }

    /// The WAN being handed over, or held down, keeps its connections (no flush when it goes
    /// down, or when its learned gateway goes with its link): conntrackd hands them over.
    pub(super) fn vrrp_keeps_connections(&self, wan: &str) -> bool {
        self.vrrp.handing_over.as_deref() == Some(wan) || !self.vrrp_probed(wan)
    }

    /// Leaves the routes of held-down master-only WANs out of `d`.
    pub(super) fn vrrp_hold_routes(&self, d: &mut routing::Desired) {
        self.vrrp_hold_routes_for(&self.config, d);
    }

    /// [`Controller::vrrp_hold_routes`] for `config` (one about to be applied): its
    /// master-only WANs that are not up here have no routes.
    pub(super) fn vrrp_hold_routes_for(
        &self,
        config: &crate::config::Config,
        d: &mut routing::Desired,
    ) {
        let held: Vec<&str> = config
            .wans
            .iter()
            .filter(|w| config.is_master_only(&w.name) && !self.vrrp.raised.contains(&w.name))
            .map(|w| w.interface.as_str())
            .collect();
        d.routes.retain(|r| !held.contains(&r.interface.as_str()));
    }

    /// Weighs every instance again and tells its engine what changed.
    pub(super) fn vrrp_reweigh(&mut self) {
        let now = Instant::now();
        for v in self.config.vrrp.clone() {
            let w = weigh(&v, |vw| self.wan_health(vw));
            let fault = w.fault.clone().or_else(|| {
                self.vrrp
                    .step_faults
                    .get(&v.name)
                    .filter(|(until, _)| *until > now)
                    .map(|(_, why)| why.clone())
            });
            let told = (w.priority, fault.clone());
            if self.vrrp.told.get(&v.name) == Some(&told) {
                continue;
            }
            match &v.engine {
                Engine::Steer(_) => {
                    if let Some(e) = &self.vrrp.engines {
                        e.command(&v.name, Command::Priority(w.priority));
                        e.command(&v.name, Command::Fault(fault.clone()));
                    }
                }
                Engine::Keepalived(f) => {
                    if let Some(path) = &f.track_file {
                        let value = if fault.is_some() {
                            254
                        } else {
                            w.track_value()
                        };
                        if let Err(e) = write_track_file(path, value) {
                            log::error!(
                                "vrrp {}: writing the track file {}: {e}",
                                v.name,
                                path.display()
                            );
                            continue;
                        }
                    }
                }
            }
            if self.vrrp.told.contains_key(&v.name) {
                let fault_words = fault
                    .as_deref()
                    .map(|f| format!("; fault: {f}"))
                    .unwrap_or_default();
                match v.engine {
                    Engine::Steer(_) => {
                        log::info!("vrrp {}: priority {}{fault_words}", v.name, w.why);
                    }
                    Engine::Keepalived(_) => log::info!(
                        "vrrp {}: track file {} (weights of the WANs down: {}){fault_words}",
                        v.name,
                        if fault.is_some() {
                            254
                        } else {
                            w.track_value()
                        },
                        w.penalty
                    ),
                }
            }
            self.vrrp.told.insert(v.name.clone(), told);
        }
    }

    /// Every instance for `steer status`.
    pub(super) fn vrrp_status(&self) -> Vec<VrrpStatus> {
        self.config
            .vrrp
            .iter()
            .map(|v| {
                let role = self.vrrp.roles.get(&v.name).cloned().unwrap_or_default();
                let view = speaker::view(&self.vrrp.board, &v.name);
                let w = weigh(v, |vw| self.wan_health(vw));
                let (fault_told, effective) = self
                    .vrrp
                    .told
                    .get(&v.name)
                    .map(|(p, f)| (f.clone(), *p))
                    .unwrap_or((None, w.priority));
                let s = v.speaker();
                let (base, effective, why) = match (s, role.priority) {
                    (Some(_), _) => (v.base_priority(), effective, w.why),
                    (None, reported) => {
                        let p = reported.unwrap_or(0);
                        let why = format!(
                            "keepalived's own; steer's track file holds {} ({})",
                            w.track_value(),
                            w.why
                        );
                        (p, p, why)
                    }
                };
                VrrpStatus {
                    name: v.name.clone(),
                    engine: if s.is_some() { "steer" } else { "keepalived" }.into(),
                    interface: s.map(|s| s.interface.clone()),
                    vrid: s.map(|s| s.vrid),
                    state: role.state.as_str().into(),
                    base_priority: base,
                    effective_priority: effective,
                    priority_why: why,
                    fault: fault_told,
                    master: role.master.or(view.master).map(|m| m.to_string()),
                    vips: s
                        .map(|s| s.vips.iter().map(ToString::to_string).collect())
                        .unwrap_or_default(),
                    last_transition: Some(VrrpTransition {
                        seconds_ago: role.since.elapsed().as_secs(),
                        to: role.state.as_str().into(),
                        why: role.why.clone(),
                    }),
                    transitions: view.transitions,
                    adverts_sent: view.adverts_sent,
                    send_errors: view.send_errors,
                    adverts_received: view.adverts_received,
                    dropped: view
                        .drops
                        .iter()
                        .map(|(k, n)| ((*k).to_owned(), *n))
                        .collect(),
                    wans: v
                        .wans
                        .iter()
                        .map(|w| VrrpWanStatus {
                            wan: w.wan.clone(),
                            master_only: w.master_only,
                            weight: w.weight,
                            state: self.wan_words(w),
                        })
                        .collect(),
                    notes: self.vrrp_notes(v, &role, &view, effective),
                }
            })
            .collect()
    }

    /// What `steer status` adds below an instance: whom a backup follows and why it stays
    /// backup, and what the speaker noticed (another interval, adverts of an unconfigured
    /// source or of another VRID claiming our addresses; the last two while heard lately).
    fn vrrp_notes(&self, v: &Vrrp, role: &Role, view: &speaker::View, ours: u8) -> Vec<String> {
        let mut notes = Vec::new();
        if let (Some(s), State::Backup, Some((master, p))) =
            (v.speaker(), role.state, view.following)
        {
            let why = if p > ours {
                "a higher priority than ours".to_owned()
            } else if p == ours {
                "the same priority as ours, from a higher address or first".to_owned()
            } else if !s.preempt {
                format!("lower than ours ({ours}), but preempt = false keeps this router backup")
            } else {
                format!(
                    "lower than ours ({ours}): taking over once preempt_delay_ms ({}) has passed",
                    s.preempt_delay_ms
                )
            };
            notes.push(format!("following master {master} (priority {p}; {why})"));
        }
        for w in v.wans.iter().filter(|w| w.master_only) {
            if let Some(text) = self.split_words(&w.wan) {
                notes.push(text);
            }
        }
        if let Some((at, text)) = self.vrrp.vip_notes.get(&v.name) {
            let age = at.elapsed().as_secs();
            if age < 120 {
                notes.push(format!("{text} ({age} s ago)"));
            }
        }
        for (kind, (at, text)) in &view.notes {
            let age = at.elapsed().as_secs();
            if *kind == "interval" {
                if role.state == State::Backup {
                    notes.push(text.clone());
                }
            } else if age < 120 {
                notes.push(format!("{text} (last heard {age} s ago)"));
            }
        }
        notes
    }

    fn wan_words(&self, w: &VrrpWan) -> String {
        let held = || self.held_because(&w.wan);
        match self.wan_health(w) {
            WanHealth::Up => "up".into(),
            WanHealth::Failed => "down (did not come up)".into(),
            WanHealth::Down => "down".into(),
            WanHealth::Unprobed(None) => format!("held down ({})", held()),
            WanHealth::Unprobed(Some(true)) => format!("held down ({}; was up)", held()),
            WanHealth::Unprobed(Some(false)) => format!("held down ({}; was down)", held()),
        }
    }

    /// Why master-only WAN `wan` is held down: not master, or not master of every instance
    /// that lists it (the other router is master of one).
    fn held_because(&self, wan: &str) -> String {
        let listing: Vec<&Vrrp> = self
            .config
            .vrrp
            .iter()
            .filter(|v| v.holds_master_only(wan))
            .collect();
        let not_master: Vec<&str> = listing
            .iter()
            .filter(|v| self.vrrp_state(&v.name) != State::Master)
            .map(|v| v.name.as_str())
            .collect();
        if not_master.is_empty() || not_master.len() == listing.len() {
            "not master".into()
        } else {
            format!("not master of {}", not_master.join(", "))
        }
    }

    fn wan_health(&self, w: &VrrpWan) -> WanHealth {
        if w.master_only && !self.vrrp.raised.contains(&w.wan) {
            if self.vrrp.failed.contains(&w.wan) {
                WanHealth::Failed
            } else {
                WanHealth::Unprobed(self.vrrp.remembered.get(&w.wan).copied())
            }
        } else if self.wan_up(&w.wan) {
            WanHealth::Up
        } else {
            WanHealth::Down
        }
    }

    /// Whether WAN `name` counts as up for VRRP: every family it carries is up (a router whose
    /// IPv4 is down while IPv6 works cannot serve the LAN as well as its peer).
    fn wan_up(&self, name: &str) -> bool {
        Family::ALL.into_iter().all(|f| self.health.up(name, f))
    }

    /// The IPv4 gateway of `wan` to check a raised link with: the configured one, else the one
    /// learned (none on a point-to-point link or while the DHCP client has not installed it).
    fn ipv4_gateway(&self, wan: &crate::config::Wan) -> Option<std::net::Ipv4Addr> {
        match wan.gateway {
            NextHop::Via(IpAddr::V4(gw)) => Some(gw),
            NextHop::Via(_) | NextHop::Direct => None,
            NextHop::Auto => match self.gateway_of(&wan.name, Family::V4).gateway {
                Some(routing::Gateway::Via(IpAddr::V4(gw))) => Some(gw),
                _ => None,
            },
        }
    }

    /// Whether the speaker of `v` is master right now (its board, not the events still
    /// queued); true for an instance keepalived speaks (its fifo is all there is).
    fn speaker_master(&self, v: &Vrrp) -> bool {
        v.speaker().is_none()
            || speaker::view(&self.vrrp.board, &v.name).state == Some(State::Master)
    }

    fn vrrp_instance(&self, name: &str) -> Option<Vrrp> {
        self.config.vrrp.iter().find(|v| v.name == name).cloned()
    }

    fn vrrp_state(&self, name: &str) -> State {
        self.vrrp
            .roles
            .get(name)
            .map_or(State::Initialize, |r| r.state)
    }

    fn is_master_only(&self, wan: &str) -> bool {
        self.config.is_master_only(wan)
    }

    /// Every master-only WAN, once (the first instance's settings for it).
    fn master_only_wans(&self) -> Vec<VrrpWan> {
        let mut out: Vec<VrrpWan> = Vec::new();
        for v in &self.config.vrrp {
            for w in v.wans.iter().filter(|w| w.master_only) {
                if !out.iter().any(|o| o.wan == w.wan) {
                    out.push(w.clone());
                }
            }
        }
        out
    }

    /// Whether every instance that lists `wan` as master-only is master here (and, with
    /// `clear`, heard no other master since): a line shared by an IPv4 and an IPv6 instance
    /// must not come up on a router that is master of one while the other router is master of
    /// the other, which raises it too.
    fn mastered_by_all(&self, wan: &str, clear: bool) -> bool {
        let mut listing = self
            .config
            .vrrp
            .iter()
            .filter(|v| v.holds_master_only(wan))
            .peekable();
        listing.peek().is_some()
            && listing.all(|v| {
                self.vrrp
                    .roles
                    .get(&v.name)
                    .is_some_and(|r| r.state == State::Master && (!clear || r.wans_clear))
            })
    }

    fn step_timeout(v: &Vrrp) -> Duration {
        Duration::from_millis(u64::from(v.step_timeout_ms))
    }

    async fn take_over(&mut self, v: &Vrrp) -> Vec<ReportLine> {
        let mut lines = Vec::new();
        // A conntrackd that does not answer the commit is not asked the rest.
        let mut conntrackd_hung = false;
        if let Some(conf) = &v.conntrackd {
            let ran =
                conntrackd::steps(&v.name, conf, conntrackd::MASTER, Self::step_timeout(v)).await;
            conntrackd_hung = ran.hung;
            lines.extend(ran.lines);
        }
        if let Some(s) = v.speaker() {
            let Some(nl) = self.vrrp.nl.clone() else {
                return lines;
            };
            for vip in &s.vips {
                let added = nl.add_vip(s.vip_interface(), vip).await;
                if let Err(AddError::NotOurs) = added {
                    // Master all the same: the address works; but it stays when this router
                    // leaves MASTER, so both routers would answer for it.
                    lines.push(ReportLine::warning(format!(
                        "vrrp {}: {vip} is on {} already, not added by steer (by hand, or a \
                         network manager): it stays there when this router leaves MASTER; \
                         remove it (`ip addr del {vip} dev {}`) and let steer add it",
                        v.name,
                        s.vip_interface(),
                        s.vip_interface()
                    )));
                } else if let Err(e) = added {
                    let why = format!("the virtual address could not be added: {e}");
                    lines.push(ReportLine::error(format!(
                        "vrrp {}: {why}; in fault for {} s",
                        v.name,
                        STEP_FAULT_HOLD.as_secs()
                    )));
                    self.vrrp
                        .step_faults
                        .insert(v.name.clone(), (Instant::now() + STEP_FAULT_HOLD, why));
                    return lines;
                }
            }
            lines.push(ReportLine::info(format!(
                "vrrp {}: {} virtual address(es) on {}, {:.1} ms after becoming master",
                v.name,
                s.vips.len(),
                s.vip_interface(),
                self.since_master(&v.name)
            )));
            lines.extend(self.announce_vips(v, "after taking over"));
        } else if let Some(r) = self.vrrp.roles.get_mut(&v.name) {
            // keepalived says nothing of other routers' adverts: the WANs come up at once.
            r.wans_clear = true;
        }
        if self.vrrp.roles.get(&v.name).is_some_and(|r| r.wans_clear) {
            lines.extend(self.raise_wans(v).await);
        }
        if let Some(conf) = v.conntrackd.as_ref().filter(|_| !conntrackd_hung) {
            let after = conntrackd::MASTER_AFTER;
            let ran = conntrackd::steps(&v.name, conf, after, Self::step_timeout(v)).await;
            lines.extend(ran.lines);
        }
        lines
    }

    /// Announces the instance's addresses on its interface (not on a routed VIP's holder: no
    /// host lives there).
    fn announce_vips(&mut self, v: &Vrrp, when: &str) -> Vec<ReportLine> {
        let Some(s) = v.speaker() else {
            return Vec::new();
        };
        if s.vip_interface() != s.interface {
            return Vec::new();
        }
        let addrs: Vec<IpAddr> = s.vips.iter().map(|v| v.addr).collect();
        self.announce_again(&s.interface, addrs.clone());
        vec![match self.vrrp.announcer.announce(&s.interface, &addrs) {
            Ok(n) => ReportLine::info(format!(
                "vrrp {}: addresses announced {when} ({n} packets on {})",
                v.name, s.interface
            )),
            Err(e) => ReportLine::warning(format!("vrrp {}: announcing failed: {e}", v.name)),
        }]
    }

    /// Announces the addresses of the master-only WANs of `v` that are up here (as
    /// [`Controller::raise_wans`] does when it brings one up).
    async fn announce_wans(&mut self, v: &Vrrp, when: &str) -> Vec<ReportLine> {
        let Some(nl) = self.vrrp.nl.clone() else {
            return Vec::new();
        };
        let mut lines = Vec::new();
        for w in v.wans.iter().filter(|w| w.master_only) {
            if !self.vrrp.raised.contains(&w.wan) {
                continue;
            }
            let Some(wan) = self.config.wan(&w.wan).cloned() else {
                continue;
            };
            let addrs: Vec<IpAddr> = nl
                .ipv4_addresses(&wan.interface)
                .await
                .into_iter()
                .map(IpAddr::V4)
                .collect();
            if addrs.is_empty() {
                continue;
            }
            self.announce_again(&wan.interface, addrs.clone());
            lines.push(match self.vrrp.announcer.announce(&wan.interface, &addrs) {
                Ok(n) => ReportLine::info(format!(
                    "vrrp {}: {}'s addresses announced {when} ({n} packets on {})",
                    v.name, wan.name, wan.interface
                )),
                Err(e) => ReportLine::warning(format!(
                    "vrrp {}: announcing {}'s addresses failed: {e}",
                    v.name, wan.name
                )),
            });
        }
        lines
    }

    async fn raise_wans(&mut self, v: &Vrrp) -> Vec<ReportLine> {
        let mut lines = Vec::new();
        let Some(nl) = self.vrrp.nl.clone() else {
            return lines;
        };
        let mut raised = false;
        for w in v.wans.iter().filter(|w| w.master_only) {
            if self.vrrp.raised.contains(&w.wan) || !self.mastered_by_all(&w.wan, true) {
                continue;
            }
            if !self.speaker_master(v) {
                break;
            }
            let Some(wan) = self.config.wan(&w.wan).cloned() else {
                continue;
            };
            let started = Instant::now();
            let timeout = Self::step_timeout(v);
            let up = match &w.up_command {
                Some(cmd) => command::shell(cmd, &env(&v.name, &wan.name, &wan.interface), timeout)
                    .await
                    .map(|_| ()),
                None => nl.set_link(&wan.interface, true).await,
            };
            let up = match up {
                Ok(()) => nl.wait_carrier(&wan.interface, started + timeout).await,
                Err(e) => Err(e),
            };
            // With an IPv4 gateway (configured, or already learned): it must answer ARP (the
            // link works both ways).
            let up = match (up, self.ipv4_gateway(&wan)) {
                (Ok(_), Some(gw)) => match nl.ipv4_addresses(&wan.interface).await.first() {
                    Some(src) => {
                        self.vrrp
                            .announcer
                            .gateway_answers(&wan.interface, *src, gw, started + timeout)
                            .await
                    }
                    None => Err(format!("{} has no IPv4 address", wan.interface)),
                },
                (up, _) => up,
            };
            match up {
                Ok(_) => {
                    raised = true;
                    self.vrrp.raised.insert(w.wan.clone());
                    self.vrrp.failed.remove(&w.wan);
                    let addrs: Vec<IpAddr> = nl
                        .ipv4_addresses(&wan.interface)
                        .await
                        .into_iter()
                        .map(IpAddr::V4)
                        .collect();
                    let announced = if addrs.is_empty() {
                        String::new()
                    } else {
                        self.announce_again(&wan.interface, addrs.clone());
                        match self.vrrp.announcer.announce(&wan.interface, &addrs) {
                            Ok(_) => ", its addresses announced".into(),
                            Err(e) => format!(" (announcing its addresses failed: {e})"),
                        }
                    };
                    lines.push(ReportLine::info(format!(
                        "vrrp {}: {} up in {:.1} ms{announced}; probing it",
                        v.name,
                        wan.name,
                        started.elapsed().as_secs_f64() * 1e3
                    )));
                    let verdict = self.health.restart_wan(
                        &wan.name,
                        true,
                        "brought up: this router is VRRP master",
                        Instant::now(),
                    );
                    if let Some(verdict) = verdict {
                        lines.push(self.fail_over(verdict).line());
                    }
                }
                Err(e) => {
                    self.vrrp.failed.insert(w.wan.clone());
                    lines.push(ReportLine::error(format!(
                        "vrrp {}: {} did not come up within {} ms: {e}; it counts as down \
                         (weight {} off the priority)",
                        v.name,
                        wan.name,
                        timeout.as_millis(),
                        w.weight
                    )));
                    lines.extend(self.wan_down_step(v, w, &wan).await);
                }
            }
        }
        if raised {
            // The WAN's routes now, not at the next netlink-triggered reconcile.
            let report = self.routing.reconcile(&self.desired_routing()).await;
            lines.extend(
                report
                    .changes
                    .iter()
                    .map(|c| ReportLine::info(format!("vrrp {}: routing: {c}", v.name))),
            );
            lines.extend(
                report
                    .failures
                    .iter()
                    .map(|f| ReportLine::error(format!("vrrp {}: routing: {f}", v.name))),
            );
            // A route whose link is down waits for it (said once, not an error).
            lines.extend(
                report
                    .waiting
                    .iter()
                    .map(|w| ReportLine::info(format!("vrrp {}: routing: {w}", v.name))),
            );
            lines.push(ReportLine::info(format!(
                "vrrp {}: master-only WANs up and steered, {:.1} ms after becoming master",
                v.name,
                self.since_master(&v.name)
            )));
            lines.extend(self.refresh_system().await);
        }
        lines
    }

    /// Milliseconds since instance `name` last changed state.
    fn since_master(&self, name: &str) -> f64 {
        self.vrrp
            .roles
            .get(name)
            .map_or(0.0, |r| r.since.elapsed().as_secs_f64() * 1e3)
    }

    /// Leaving MASTER for `to`: WANs down first, then the addresses, then conntrackd.
    async fn leave(&mut self, name: &str, to: State) -> Vec<ReportLine> {
        let mut lines = Vec::new();
        let Some(v) = self
            .vrrp_instance(name)
            .or_else(|| self.vrrp.running.iter().find(|v| v.name == name).cloned())
        else {
            return lines;
        };
        if let Some(r) = self.vrrp.roles.get_mut(name)
            && r.state == State::Master
        {
            r.state = to;
        }
        for w in v.wans.iter().filter(|w| w.master_only) {
            // A reload that removed this instance (or its mention of the WAN): a WAN every
            // instance listing it now is still master of stays as it is (lowering it flushed
            // its connections and counted it down).
            // A WAN the configuration no longer runs master-only is an ordinary WAN now.
            if self.mastered_by_all(&w.wan, false) || !self.is_master_only(&w.wan) {
                continue;
            }
            // Its health is remembered only if it was tried here (up, or failed to come up):
            // one held down because another instance listing it was not master says nothing
            // of the line.
            let remember = self.vrrp.raised.contains(&w.wan) || self.vrrp.failed.contains(&w.wan);
            lines.extend(
                self.lower_wan(&v, w, "held down: this router left VRRP MASTER", remember)
                    .await,
            );
        }
        lines.extend(self.remove_vips(&v).await);
        if let Some(conf) = &v.conntrackd {
            let steps = if to == State::Backup {
                conntrackd::BACKUP
            } else {
                conntrackd::FAULT
            };
            let ran = conntrackd::steps(name, conf, steps, Self::step_timeout(&v)).await;
            lines.extend(ran.lines);
        }
        lines
    }

    /// Takes master-only WAN `w` down for instance `v` (remembering its health when
    /// `remember`), without flushing its connections.
    async fn lower_wan(
        &mut self,
        v: &Vrrp,
        w: &VrrpWan,
        cause: &str,
        remember: bool,
    ) -> Vec<ReportLine> {
        let mut lines = Vec::new();
        let Some(wan) = self.config.wan(&w.wan).cloned() else {
            return lines;
        };
        if remember {
            let was_up = !self.vrrp.failed.contains(&w.wan) && self.wan_up(&w.wan);
            self.vrrp.remembered.insert(w.wan.clone(), was_up);
        }
        self.vrrp.raised.remove(&w.wan);
        self.vrrp.failed.remove(&w.wan);
        self.stop_announcing(&wan.interface);
        self.vrrp.handing_over = Some(w.wan.clone());
        if let Some(verdict) = self
            .health
            .restart_wan(&wan.name, false, cause, Instant::now())
        {
            lines.push(self.fail_over(verdict).line());
        }
        self.vrrp.handing_over = None;
        lines.extend(self.wan_down_step(v, w, &wan).await);
        lines
    }

    /// Sets the WAN's link down, or runs its `down_command`.
    async fn wan_down_step(
        &self,
        v: &Vrrp,
        w: &VrrpWan,
        wan: &crate::config::Wan,
    ) -> Vec<ReportLine> {
        let started = Instant::now();
        let done = match (&w.down_command, &self.vrrp.nl) {
            (Some(cmd), _) => command::shell(
                cmd,
                &env(&v.name, &wan.name, &wan.interface),
                Self::step_timeout(v),
            )
            .await
            .map(|_| ()),
            (None, Some(nl)) => match nl.link(&wan.interface).await {
                Some(l) if l.admin_up => nl.set_link(&wan.interface, false).await,
                _ => return Vec::new(),
            },
            (None, None) => return Vec::new(),
        };
        vec![match done {
            Ok(()) => ReportLine::info(format!(
                "vrrp {}: {} down in {:.1} ms",
                v.name,
                wan.name,
                started.elapsed().as_secs_f64() * 1e3
            )),
            Err(e) => ReportLine::error(format!(
                "vrrp {}: taking {} down failed: {e}",
                v.name, wan.name
            )),
        }]
    }

    /// Announces `addrs` on `interface` again a few times ([`announce::AGAIN`]).
    fn announce_again(&mut self, interface: &str, addrs: Vec<IpAddr>) {
        let task = announce::announce_later(interface.to_owned(), addrs);
        if let Some(old) = self.vrrp.again.insert(interface.to_owned(), task) {
            old.abort();
        }
    }

    fn stop_announcing(&mut self, interface: &str) {
        if let Some(task) = self.vrrp.again.remove(interface) {
            task.abort();
        }
    }

    async fn remove_vips(&mut self, v: &Vrrp) -> Vec<ReportLine> {
        let (Some(s), Some(nl)) = (v.speaker(), self.vrrp.nl.clone()) else {
            return Vec::new();
        };
        self.stop_announcing(&s.interface);
        let mut removed = 0;
        let mut lines = Vec::new();
        for vip in &s.vips {
            match nl.del_vip(s.vip_interface(), vip).await {
                Ok(Removed::Yes) => removed += 1,
                Ok(Removed::Absent) => {}
                // Refused at start and reload; added since, by someone else: not ours.
                Ok(Removed::NotOurs) => lines.push(ReportLine::warning(format!(
                    "vrrp {}: {vip} on {} was not added by steer (no proto {}): left in place",
                    v.name,
                    s.vip_interface(),
                    kernel::VIP_PROTO
                ))),
                Err(e) => lines.push(ReportLine::error(format!("vrrp {}: {e}", v.name))),
            }
        }
        if removed > 0 {
            lines.push(ReportLine::info(format!(
                "vrrp {}: {removed} virtual address(es) removed from {}",
                v.name,
                s.vip_interface()
            )));
        }
        lines
    }
}

/// What an `up_command` / `down_command` finds in its environment.
fn env<'a>(instance: &'a str, wan: &'a str, interface: &'a str) -> [(&'static str, &'a str); 3] {
    [
        ("STEER_VRRP_INSTANCE", instance),
        ("STEER_WAN", wan),
        ("STEER_INTERFACE", interface),
    ]
}
