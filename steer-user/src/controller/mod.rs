//! The controller: the one owner of every kernel change steer makes.
//!
//! It holds the running configuration, the dataplane (maps and attachments), the routing
//! socket, the WAN health, and the connection-marking table. It computes the desired state
//! ([`desired`], pure) and reconciles the kernel with it: maps through the dataplane's sync,
//! routing through [`Routing`], connection marks and flushes through [`conntrack`]. The daemon
//! only turns events (signals, netlink, probe rounds, control requests, timers) into calls
//! here; the CLI only reads pinned state or asks the daemon. New writers of kernel state (learned
//! DNS addresses, VIPs) plug in as further methods of this type, never beside it.
//!
//! Failure rule: when a change fails before it went live, nothing changed and the controller
//! keeps its view; when it fails after (the new policy generation is live), the controller
//! takes the new state as its own and reports what is incomplete. Either way its view and the
//! kernel agree.

pub mod desired;
mod failback;
mod report;
pub mod teardown;
mod vrrp;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::Instant,
};

use aya_log::EbpfLogger;

pub use desired::{Desired, desired};
pub use report::{ApplyReport, FailoverReport};
pub use teardown::{Teardown, TeardownError, teardown};

use crate::{
    config::{Config, Failback},
    conntrack,
    dataplane::{Adopted, AttachReport, Dataplane, DataplaneError, SyncError, ifindex},
    health::{Health, Override, UnknownWan, Verdict, probe::Round},
    model::{NameIds, Rule, local_set},
    policy::Outcome,
    routing::{ReconcileReport, Routing, RoutingError},
    status::{
        LanStatus, LastApply, LastFailover, PolicyStatus, ReportLine, SetStatus, ShareStatus,
        Status, WanState, WanStatus,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Routing(#[from] RoutingError),
    #[error(transparent)]
    Teardown(#[from] TeardownError),
    #[error("LAN interface {0} does not exist: fix general.lan or create it; nothing was applied")]
    NoLan(String),
    /// At start a step after the sync failed: better not to run half attached.
    #[error("steer could not finish starting: {}", .0.join("; "))]
    Start(Vec<String>),
}

pub struct Controller {
    config: Config,
    dp: Dataplane,
    routing: Routing,
    /// The rules the kernel knows, by id (at start: read back from the pinned maps).
    rules: BTreeMap<u32, Rule>,
    wan_slots: NameIds,
    outcomes: BTreeMap<String, Outcome>,
    adopted: Adopted,
    started: Instant,
    last_apply: Option<(Instant, ApplyReport)>,
    health: Health,
    last_failover: Option<(Instant, FailoverReport)>,
    /// The policy table in the kernel is behind the WAN states (a failover's write failed):
    /// retried on every event until it succeeds.
    policy_dirty: bool,
    /// VRRP: roles, the WANs mastership gates, the speakers ([`vrrp`]).
    vrrp: vrrp::VrrpCtl,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("config", &self.config.path)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// Opens (or adopts) the pinned dataplane, reads what the maps hold, applies `config`,
    /// attaches the classifier to the LAN interfaces, and brings connection marking and routing
    /// in line. A WAN whose interface has carrier starts up (probes take it down if not).
    pub async fn start(config: Config) -> Result<(Controller, ApplyReport), ControllerError> {
        check_lan(&config)?;
        let routing = Routing::new()?;
        let carriers = link_states(&routing, &config).await;
        let (dp, adopted) = Dataplane::open_pinned(&config.general.pin_dir)?;
        if adopted.maps {
            log::info!(
                "adopting pinned state in {} (classifier attached to: {})",
                config.general.pin_dir.display(),
                if adopted.tc_links.is_empty() {
                    "none".to_owned()
                } else {
                    adopted.tc_links.join(", ")
                }
            );
        }
        let (rules, wan_slots) = previous_ids(&dp)?;
        let mut health = Health::default();
        health.follow(&config.wans, |i| carrier_of(&carriers, i), Instant::now());
        let mut ctl = Controller {
            rules,
            config: config.clone(),
            dp,
            routing,
            wan_slots,
            outcomes: BTreeMap::new(),
            adopted,
            started: Instant::now(),
            last_apply: None,
            health,
            last_failover: None,
            policy_dirty: false,
            vrrp: vrrp::VrrpCtl::default(),
        };
        let mut report = ctl.apply(config, true).await?;
        report
            .notes
            .splice(0..0, no_carrier_warnings(&ctl.config, &carriers));
        Ok((ctl, report))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Applies a new, validated configuration (re-read from the file by the caller). An error
    /// means nothing changed: the running configuration stays. Once the new configuration is
    /// live, what still fails (attaching to a LAN interface) is in the report.
    pub async fn reload(&mut self, config: Config) -> Result<ApplyReport, ControllerError> {
        check_lan(&config)?;
        let carriers = link_states(&self.routing, &config).await;
        let health = self.health.clone();
        self.health
            .follow(&config.wans, |i| carrier_of(&carriers, i), Instant::now());
        let applied = self.apply(config, false).await;
        if applied.is_err() {
            // The running configuration stays, and so do the WAN states that go with it.
            self.health = health;
        }
        applied
    }

    /// The carrier of an interface changed (netlink). Returns the failover it caused, if any.
    pub fn carrier(&mut self, interface: &str, carrier: bool) -> Option<FailoverReport> {
        self.vrrp_link(interface, carrier);
        let verdict = self.health.carrier(interface, carrier, Instant::now())?;
        Some(self.fail_over(verdict))
    }

    /// A probe round of `wan` finished.
    pub fn probe_round(&mut self, wan: &str, round: &Round) -> Option<FailoverReport> {
        let verdict = self.health.round(wan, round, Instant::now())?;
        Some(self.fail_over(verdict))
    }

    /// `steer wan NAME up|down|auto`.
    pub fn set_manual(
        &mut self,
        wan: &str,
        manual: Option<Override>,
    ) -> Result<Option<FailoverReport>, UnknownWan> {
        let verdict = self.health.set_manual(wan, manual, Instant::now())?;
        Ok(verdict.map(|v| self.fail_over(v)))
    }

    /// A LAN interface appeared, changed or disappeared (`index` None). A recreated interface
    /// (new index) lost its links with the old one: attach again.
    pub fn lan_link(&mut self, iface: &str, index: Option<u32>) -> Option<ReportLine> {
        if !self.config.general.lan.iter().any(|l| l == iface) {
            return None;
        }
        match index {
            None => {
                self.dp.forget(iface);
                Some(ReportLine::warning(format!(
                    "{iface}: LAN interface gone, its classifier links with it"
                )))
            }
            Some(i) if self.dp.attached_index(iface) == Some(i) => None,
            Some(_) => Some(match self.dp.attach(iface, self.config.general.xdp) {
                Ok(r) => ReportLine::warning(format!(
                    "{iface}: LAN interface (re)appeared: classifier attached{}",
                    xdp_note(&r)
                )),
                Err(e) => {
                    ReportLine::error(format!("{iface}: attaching the classifier failed: {e}"))
                }
            }),
        }
    }

    /// Retries a policy table write that failed; call on any event.
    pub fn retry_pending(&mut self) -> Option<ReportLine> {
        if !self.policy_dirty {
            return None;
        }
        let (table, outcomes) = self.live_table();
        match self.dp.flip_policy(&table) {
            Ok(_) => {
                self.policy_dirty = false;
                self.outcomes = outcomes;
                Some(ReportLine::warning(
                    "policy table written after an earlier failure: the kernel follows the WAN \
                     states again",
                ))
            }
            Err(e) => Some(ReportLine::error(format!(
                "writing the policy table still fails: {e}"
            ))),
        }
    }

    /// Brings the routing rules and the WANs' tables in line with the configuration; `why`
    /// names the occasion in the report lines.
    pub async fn reconcile_routing(&self, why: &str) -> Vec<ReportLine> {
        let started = Instant::now();
        let report = self.routing.reconcile(&self.routing_desired()).await;
        routing_lines(why, &report, started)
    }

    /// After WAN `recovered` came back: cuts the flows of policies with `failback = "move"`
    /// that a failover had put on another WAN, so they start over on it. Their connection
    /// entries are listed and deleted off the event loop.
    pub async fn move_flows_back(&self, recovered: &str) -> Option<ReportLine> {
        let wanted = self
            .config
            .policies
            .iter()
            .any(|p| p.failback == Failback::Move);
        if !wanted {
            return None;
        }
        let mask = self.config.general.mark_mask;
        let marks: Vec<u32> = self
            .config
            .wans
            .iter()
            .filter(|w| w.name != recovered)
            .map(|w| w.mark)
            .collect();
        let listed = tokio::task::spawn_blocking(move || {
            marks
                .iter()
                .map(|m| conntrack::connections(*m, mask))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
        let conns = match listed {
            Ok(Ok(lists)) => lists.into_iter().flatten(),
            Ok(Err(e)) => return Some(ReportLine::error(format!("moving flows back: {e}"))),
            Err(e) => return Some(ReportLine::error(format!("moving flows back: {e}"))),
        };
        let (table, _) = self.live_table();
        let verdicts = failback::Verdicts {
            config: &self.config,
            rules: &self.rules,
            prefixes: self.dp.prefixes(),
            local: self.dp.local(),
            table: &table,
        };
        let moving: Vec<conntrack::Connection> =
            conns.filter(|c| verdicts.should_move(c)).collect();
        let found = moving.len();
        let cut = tokio::task::spawn_blocking(move || {
            moving
                .iter()
                .filter(|c| conntrack::delete(c).is_ok())
                .count()
        })
        .await
        .unwrap_or(0);
        Some(ReportLine::info(format!(
            "{recovered} back: {cut} of {found} flows of policies with failback = \"move\" cut, so they start over on their policy's WAN"
        )))
    }

    /// Brings the local destinations (never steered) in line with the kernel's local and main
    /// tables: call after every routing change. A failure to read the tables keeps the last
    /// set.
    pub async fn refresh_local(&mut self) -> Option<ReportLine> {
        let found = match self.routing.local_destinations().await {
            Ok(found) => found,
            Err(e) => {
                return Some(ReportLine::error(format!(
                    "{e}; the local destinations stay as they were"
                )));
            }
        };
        let want = local_set(
            self.config.general.local,
            found,
            &self.config.general.local_prefixes,
        );
        match self.dp.sync_local(&want) {
            Ok((0, 0)) => None,
            Ok((added, removed)) => Some(ReportLine::info(format!(
                "local destinations (never steered): {added} added or changed, {removed} removed, {} in all",
                want.len()
            ))),
            Err(e) => Some(ReportLine::error(format!(
                "writing the local destinations failed: {e}; retried on the next routing change"
            ))),
        }
    }

    /// Restores steer's nftables table if something removed it. `nft` runs off the event
    /// loop, so probes and requests are not held up by it.
    pub async fn check_conntrack_marking(&self) -> Option<ReportLine> {
        match tokio::task::spawn_blocking(conntrack::table_present).await {
            Ok(Ok(true)) => None,
            Ok(Ok(false)) => {
                log::warn!(
                    "nftables table inet {} was missing: restoring it",
                    conntrack::NFT_TABLE
                );
                self.ensure_conntrack_marking()
            }
            // Said at start and on every reload already (installing failed the same way); the
            // periodic check only repeats it at debug level.
            Ok(Err(e)) => {
                log::debug!("{e}");
                None
            }
            Err(e) => Some(ReportLine::warning(format!(
                "checking the nftables table failed: {e}"
            ))),
        }
    }

    /// The kernel-side log of the programs (aya-log).
    pub fn kernel_logger(&mut self) -> Result<EbpfLogger<&'static dyn log::Log>, DataplaneError> {
        self.dp.logger()
    }

    /// Stops steering: lets go of the dataplane, then removes everything ([`teardown`]).
    pub async fn stop(self) -> Result<Teardown, ControllerError> {
        let Controller { dp, config, .. } = self;
        // Dropping the dataplane closes this process's links and releases the pin-directory
        // lock, so the teardown can unpin (and so detach) them.
        drop(dp);
        let tables: Vec<u32> = config.wans.iter().map(|w| w.table).collect();
        Ok(teardown(&config.general.pin_dir, &tables).await?)
    }

    /// Every policy resolved with the WANs as they are now, from the cached compilation.
    fn live_table(&self) -> (crate::model::PolicyTable, BTreeMap<String, Outcome>) {
        desired::policy_table(&self.config, &self.rules, &self.wan_slots, |w| {
            self.health.up(w)
        })
    }

    /// A WAN changed state: recompute every policy from the cached compilation (not the whole
    /// configuration), write the standby generation and flip. Flows that were on a WAN that
    /// went down lose their conntrack entries (by mark), so they start over on the WAN that
    /// carries them now.
    fn fail_over(&mut self, verdict: Verdict) -> FailoverReport {
        let Verdict { wan, transition } = verdict;
        let started = Instant::now();
        let (table, outcomes) = self.live_table();
        let flip = self.dp.flip_policy(&table);
        let switch = started.elapsed();
        let moved: Vec<(String, String, String)> = outcomes
            .iter()
            .filter_map(|(p, now)| {
                let before = self.outcomes.get(p)?;
                (before != now).then(|| (p.clone(), before.to_string(), now.to_string()))
            })
            .collect();
        let mut report = FailoverReport {
            wan,
            up: transition.up,
            cause: transition.cause,
            moved,
            detection: transition.detection,
            switch,
            flip: flip.as_ref().ok().copied().flatten(),
            error: flip.err().map(|e| e.to_string()),
            flushed: None,
        };
        if !transition.up && !self.vrrp_keeps_connections(&report.wan) {
            report.flushed = self.flush_connections(&report.wan);
        }
        self.policy_dirty = report.error.is_some();
        if !self.policy_dirty {
            self.outcomes = outcomes;
        }
        self.last_failover = Some((Instant::now(), report.clone()));
        self.vrrp_reweigh();
        report
    }

    /// Deletes the conntrack entries carrying `wan`'s mark, in words.
    fn flush_connections(&self, wan: &str) -> Option<String> {
        let w = self.config.wan(wan)?;
        let mask = self.config.general.mark_mask;
        Some(match conntrack::flush_mark(w.mark, mask) {
            Ok(()) => format!(
                "conntrack entries with mark {:#x}/{mask:#x} flushed",
                w.mark
            ),
            Err(e) => format!("conntrack flush failed: {e}"),
        })
    }

    /// Brings the kernel to `config`: maps (diff-synced, in the dataplane's order), LAN
    /// attachments, connection marking and routing. An error means the maps did not change
    /// and the controller still follows the previous configuration. Once the new policy
    /// generation is live the new configuration is the controller's, and what fails after
    /// that is reported.
    async fn apply(&mut self, config: Config, first: bool) -> Result<ApplyReport, ControllerError> {
        let started = Instant::now();
        let old_rules = self.rules.clone();
        let mut report = ApplyReport::default();
        let steps = desired::steps(&config, &self.rule_ids(), &self.wan_slots, |w| {
            self.health.up(w)
        });
        let mut wanted = BTreeMap::new();
        for step in steps {
            wanted.clone_from(&step.desired.rules);
            match self.dp.sync(&step.desired.contents) {
                Ok(sync) => report.merge_sync(sync),
                Err(e) if e.is_live() => report.notes.push(ReportLine::error(e.to_string())),
                Err(e) => return Err(e.into()),
            }
            self.commit(step.desired, step.config);
        }
        report.per_set = per_set(&report.sync, &wanted, &old_rules);
        report.notes.extend(self.refresh_local().await);
        self.reconcile_lan(first, &mut report);
        if first && !report.failures().is_empty() {
            return Err(ControllerError::Start(report.failures()));
        }
        for set in self.config.sets.iter().filter(|s| !s.domains.is_empty()) {
            report.notes.push(ReportLine::warning(format!(
                "set {}: its {} domain(s) are not steered yet: learning addresses from DNS answers \
                 comes with the [dns] section, which this version does not have",
                set.name,
                set.domains.len()
            )));
        }
        report.took = started.elapsed();
        report.after.extend(self.ensure_conntrack_marking());
        let why = if first { "start" } else { "reload" };
        report.after.extend(self.reconcile_routing(why).await);
        self.last_apply = Some((Instant::now(), report.clone()));
        Ok(report)
    }

    fn commit(&mut self, want: Desired, config: Config) {
        self.rules = want.rules;
        self.wan_slots = want.wan_slots;
        self.outcomes = want.outcomes;
        self.config = config;
        self.policy_dirty = false;
    }

    /// Set name -> rule id of what the kernel holds.
    fn rule_ids(&self) -> NameIds {
        desired::rule_ids(&self.rules)
    }

    /// Installs (or replaces) steer's nftables table for the configured WANs and LANs.
    fn ensure_conntrack_marking(&self) -> Option<ReportLine> {
        let wans: Vec<conntrack::MarkedWan> = self
            .config
            .wans
            .iter()
            .map(|w| conntrack::MarkedWan {
                interface: w.interface.clone(),
                mark: w.mark,
            })
            .collect();
        let general = &self.config.general;
        conntrack::install(general.mark_mask, &wans, &general.lan)
            .err()
            .map(|e| ReportLine::warning(e.to_string()))
    }

    /// Attaches to every configured LAN interface (at start: adopting pinned links; later: new
    /// interfaces, and XDP switched on or off) and detaches from those no longer listed. An
    /// interface that fails is reported and the others are still done.
    fn reconcile_lan(&mut self, first: bool, report: &mut ApplyReport) {
        let current: Vec<String> = self.dp.attached().map(|(i, _)| i.to_owned()).collect();
        let general = &self.config.general;
        for iface in &general.lan {
            let r = match self.dp.attach(iface, general.xdp) {
                Ok(r) => r,
                Err(e) => {
                    report.notes.push(ReportLine::error(format!(
                        "{iface}: attaching the classifier failed: {e}; traffic entering {iface} \
                         is not classified until that is fixed (steer retries when the interface \
                         changes)"
                    )));
                    continue;
                }
            };
            if let Some(mode) = r.xdp {
                log::info!("{iface}: XDP pre-classifier attached ({mode})");
            }
            if let Some(e) = r.xdp_error {
                report.notes.push(ReportLine::warning(format!(
                    "{iface}: XDP could not be attached ({e}); TC classifies alone"
                )));
            }
            if r.tc_attached || first {
                report.attached.push(iface.clone());
            }
        }
        for iface in current.iter().filter(|i| !general.lan.contains(i)) {
            match self.dp.detach(iface) {
                Ok(()) => report.detached.push(iface.clone()),
                Err(e) => report.notes.push(ReportLine::error(format!(
                    "{iface}: detaching the classifier failed: {e}; it still classifies there"
                ))),
            }
        }
        match self.dp.detach_unconfigured() {
            Ok(gone) => report.detached.extend(gone),
            Err(e) => report.notes.push(ReportLine::error(format!(
                "removing links of interfaces no longer configured failed: {e}"
            ))),
        }
    }

    /// The status document (`steer status`).
    pub async fn status(&self) -> Status {
        let maps = self.dp.maps();
        let per_rule = self.dp.prefixes().per_rule();
        let sets = self
            .rules
            .values()
            .map(|r| {
                let counter = maps.rule_counter(r.id).unwrap_or_default();
                SetStatus {
                    name: r.name.clone(),
                    rule: r.id,
                    matches: r.kind.name().to_owned(),
                    policy: r.policy.clone(),
                    prefixes: per_rule.get(&r.id).copied().unwrap_or(0),
                    packets: counter.packets,
                    bytes: counter.bytes,
                }
            })
            .collect();
        let now = Instant::now();
        let wans = self
            .config
            .wans
            .iter()
            .map(|w| {
                let slot = self.wan_slots.get(&w.name).copied().unwrap_or(0);
                let counter = maps.wan_counter(slot).unwrap_or_default();
                let tracker = self.health.tracker(&w.name);
                WanStatus {
                    name: w.name.clone(),
                    interface: w.interface.clone(),
                    mark: w.mark,
                    table: w.table,
                    state: WanState::from_up(self.health.up(&w.name)),
                    detail: tracker.map(|t| t.describe(now)).unwrap_or_default(),
                    carrier: tracker.is_some_and(|t| t.carrier()),
                    packets: counter.packets,
                    bytes: counter.bytes,
                }
            })
            .collect();
        Status {
            config: self.config.path.clone(),
            pin_dir: self.config.general.pin_dir.clone(),
            uptime_s: self.started.elapsed().as_secs(),
            generation: maps.active_generation().ok(),
            adopted: self.adopted.maps,
            policy_in_sync: !self.policy_dirty,
            lan: self
                .dp
                .attached()
                .map(|(i, x)| LanStatus {
                    interface: i.to_owned(),
                    xdp: x.map(|m| m.to_string()),
                })
                .collect(),
            wans,
            policies: self
                .outcomes
                .iter()
                .map(|(p, o)| PolicyStatus {
                    name: p.clone(),
                    now: o.to_string(),
                    shares: self.shares(p, o),
                })
                .collect(),
            sets,
            routing: self.routing.status(&self.routing_desired()).await,
            last_failover: self.last_failover.as_ref().map(|(at, r)| LastFailover {
                seconds_ago: at.elapsed().as_secs(),
                line: r.to_string(),
            }),
            last_apply: self.last_apply.as_ref().map(|(at, r)| LastApply {
                seconds_ago: at.elapsed().as_secs(),
                changes: r.lines(),
            }),
            vrrp: self.vrrp_status(),
        }
    }

    /// A balanced policy's target and measured share per WAN (empty for any other outcome).
    fn shares(&self, policy: &str, outcome: &Outcome) -> Vec<ShareStatus> {
        let (Outcome::Balanced(up), Some(p)) = (outcome, self.config.policy(policy)) else {
            return Vec::new();
        };
        let members: Vec<(&str, u32)> = p
            .members
            .iter()
            .filter(|m| up.contains(&m.wan))
            .map(|m| (m.wan.as_str(), m.weight))
            .collect();
        let weights: u32 = members.iter().map(|(_, w)| w).sum();
        let rules: Vec<u32> = self
            .rules
            .values()
            .filter(|r| r.policy.as_deref() == Some(policy))
            .map(|r| r.id)
            .collect();
        let sent = |wan: &str| -> u64 {
            let Some(slot) = self.wan_slots.get(wan) else {
                return 0;
            };
            rules
                .iter()
                .filter_map(|r| self.dp.maps().rule_wan_counter(*r, *slot).ok())
                .map(|c| c.packets)
                .sum()
        };
        let measured: Vec<u64> = members.iter().map(|(w, _)| sent(w)).collect();
        let total: u64 = measured.iter().sum();
        members
            .iter()
            .zip(measured)
            .map(|((wan, weight), packets)| ShareStatus {
                wan: (*wan).to_owned(),
                target_percent: 100.0 * f64::from(*weight) / f64::from(weights.max(1)),
                measured_percent: if total == 0 {
                    0.0
                } else {
                    100.0 * packets as f64 / total as f64
                },
            })
            .collect()
    }

    pub fn pin_dir(&self) -> &Path {
        &self.config.general.pin_dir
    }

    pub fn socket(&self) -> PathBuf {
        self.config.control.socket.clone()
    }
}

fn xdp_note(r: &AttachReport) -> String {
    match (&r.xdp, &r.xdp_error) {
        (Some(mode), _) => format!(" (with XDP, {mode})"),
        (None, Some(e)) => format!(" (XDP failed: {e})"),
        _ => String::new(),
    }
}

/// Every configured LAN interface must exist before anything is applied.
fn check_lan(config: &Config) -> Result<(), ControllerError> {
    match config.general.lan.iter().find(|i| ifindex(i).is_err()) {
        Some(missing) => Err(ControllerError::NoLan(missing.clone())),
        None => Ok(()),
    }
}

/// The lines a routing reconcile gives: drift repaired (warnings), items that could not be
/// put right (errors), and how long it took when anything changed.
fn routing_lines(why: &str, report: &ReconcileReport, started: Instant) -> Vec<ReportLine> {
    let mut lines: Vec<ReportLine> = report
        .changes
        .iter()
        .map(|l| ReportLine::warning(format!("routing ({why}): {l}")))
        .chain(
            report
                .failures
                .iter()
                .map(|l| ReportLine::error(format!("routing ({why}): {l}"))),
        )
        .collect();
    if !report.changes.is_empty() {
        lines.push(ReportLine::info(format!(
            "routing reconciled in {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        )));
    }
    lines
}

/// Carrier (and admin up) of every WAN interface of `config`, by interface name, from one link
/// dump. If the dump fails every WAN is taken to have carrier: its probes decide.
async fn link_states(routing: &Routing, config: &Config) -> HashMap<String, bool> {
    let links = match routing.link_states().await {
        Ok(links) => Some(links),
        Err(e) => {
            log::warn!("cannot read the link states: {e}; assuming carrier, probes decide");
            None
        }
    };
    config
        .wans
        .iter()
        .map(|w| {
            let up = links.as_ref().is_none_or(|links| {
                links
                    .get(&w.interface)
                    .is_some_and(|&(_, carrier, admin_up)| carrier && admin_up)
            });
            (w.interface.clone(), up)
        })
        .collect()
}

fn carrier_of(carriers: &HashMap<String, bool>, interface: &str) -> bool {
    carriers.get(interface).copied().unwrap_or(false)
}

fn no_carrier_warnings(config: &Config, carriers: &HashMap<String, bool>) -> Vec<ReportLine> {
    config
        .wans
        .iter()
        .filter(|w| !carrier_of(carriers, &w.interface))
        .map(|w| {
            ReportLine::warning(format!(
                "{}: interface {} has no carrier (or does not exist): starting down",
                w.name, w.interface
            ))
        })
        .collect()
}

/// The rules and WAN slots the pinned maps already hold, so a restart keeps every id.
fn previous_ids(dp: &Dataplane) -> Result<(BTreeMap<u32, Rule>, NameIds), DataplaneError> {
    let maps = dp.maps();
    let rules = maps.rules(maps.active_generation()?)?;
    let wans = maps
        .wans()?
        .into_iter()
        .map(|(slot, w)| (w.name, slot))
        .collect();
    Ok((rules, wans))
}

/// Per-set change counts: rules of the new compilation, plus removed sets from the old one.
fn per_set(
    sync: &crate::dataplane::SyncReport,
    new: &BTreeMap<u32, Rule>,
    old: &BTreeMap<u32, Rule>,
) -> BTreeMap<String, (usize, usize, usize)> {
    let name_of = |id: u32| {
        new.get(&id)
            .or_else(|| old.get(&id))
            .map(|r| r.name.clone())
            .unwrap_or_else(|| format!("rule {id}"))
    };
    sync.per_rule
        .iter()
        .map(|(id, c)| (name_of(*id), (c.added, c.changed, c.removed)))
        .collect()
}
