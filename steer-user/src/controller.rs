//! The controller: owns the running configuration, the dataplane and the WAN health, computes
//! the desired kernel state from them and reconciles. Event handlers (reload, link events,
//! probe rounds, control requests) only call in here; nothing else writes kernel state.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::json;
use steer_common::{
    DEFAULT_RULE, MAX_WANS, Settings, WanInfo, name_from_bytes, name_to_bytes, settings_flags,
};

use crate::{
    config::{self, Config},
    conntrack,
    dataplane::{
        Adopted, Capacities, Dataplane, DataplaneError, Direction, ifindex,
        sync::{self, PolicyTable, PrefixSets, SyncError, SyncReport},
    },
    health::{Override, RoundSummary, Tracker, Transition},
    policy::{self, Outcome, WanView},
    sets::{self, Compiled, Rule},
};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("LAN interface {0} does not exist: fix general.lan or create it; nothing was applied")]
    NoLan(String),
    /// At start a step after the sync failed: better not to run half attached.
    #[error("steer could not finish starting: {}", .0.join("; "))]
    Start(Vec<String>),
}

/// What one apply (start or reload) changed, for the log and for `steer reload`.
#[derive(Clone, Debug, Default)]
pub struct ApplyReport {
    pub sync: SyncReport,
    /// Set name -> (added, changed, removed).
    pub per_set: BTreeMap<String, (usize, usize, usize)>,
    pub attached: Vec<String>,
    pub detached: Vec<String>,
    /// Problems that did not stop the apply (XDP unavailable, ...).
    pub warnings: Vec<String>,
    /// Steps that failed after the new configuration went live (attaching to a LAN interface,
    /// ...): not undone, retried when the interface changes.
    pub failures: Vec<String>,
    pub took: Duration,
}

impl ApplyReport {
    /// One line per change, as the daemon logs them.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .per_set
            .iter()
            .map(|(set, (a, c, r))| format!("set {set}: {a} added, {c} changed, {r} removed"))
            .collect();
        if let Some((from, to)) = self.sync.flipped {
            out.push(format!("policy generation {from} -> {to}"));
        }
        out.extend(
            self.attached
                .iter()
                .map(|i| format!("{i}: classifier attached")),
        );
        out.extend(
            self.detached
                .iter()
                .map(|i| format!("{i}: classifier detached")),
        );
        out.extend(self.warnings.iter().cloned());
        out.extend(self.failures.iter().cloned());
        out.push(format!(
            "{} prefix writes, {} policy writes in {:.1} ms ({:.2} ms of it in the kernel)",
            self.sync.prefix_writes,
            self.sync.policy_writes,
            self.took.as_secs_f64() * 1e3,
            self.sync.kernel_time.as_secs_f64() * 1e3
        ));
        out
    }
}

/// One WAN state change and what it did: the one log line the daemon writes per change.
#[derive(Clone, Debug)]
pub struct FailoverReport {
    pub wan: String,
    pub up: bool,
    pub cause: String,
    /// (policy, before, after) for every policy whose verdict moved.
    pub moved: Vec<(String, String, String)>,
    /// From the first sign of the fault to the decision; `None` when an event (carrier, a
    /// command) was itself the sign.
    pub detection: Option<Duration>,
    /// From the decision to the flipped generation word.
    pub switch: Duration,
    pub flip: Option<(u32, u32)>,
    /// Writing the new policy table failed: the old one stays live (retried).
    pub error: Option<String>,
    /// Conntrack flush of the WAN's mark (on down).
    pub flushed: Option<String>,
}

impl std::fmt::Display for FailoverReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({})",
            self.wan,
            if self.up { "up" } else { "down" },
            self.cause
        )?;
        if self.moved.is_empty() {
            write!(f, "; no policy moved")?;
        } else {
            let moved: Vec<String> = self
                .moved
                .iter()
                .map(|(p, a, b)| format!("{p}: {a} -> {b}"))
                .collect();
            write!(f, "; policies moved: {}", moved.join(", "))?;
        }
        match self.detection {
            Some(d) => write!(f, "; detected in {:.1} ms", d.as_secs_f64() * 1e3)?,
            None => write!(f, "; detected by the event itself")?,
        }
        write!(f, ", switched in {:.2} ms", self.switch.as_secs_f64() * 1e3)?;
        if let Some((from, to)) = self.flip {
            write!(f, " (generation {from} -> {to})")?;
        }
        if let Some(flushed) = &self.flushed {
            write!(f, "; {flushed}")?;
        }
        if let Some(e) = &self.error {
            write!(
                f,
                "; FAILED to write the new policy table, the old one stays live (retrying): {e}"
            )?;
        }
        Ok(())
    }
}

pub struct Controller {
    config: Config,
    dp: Dataplane,
    /// What the prefix maps hold (read at start, kept current by every sync).
    prefixes: PrefixSets,
    /// The rules the kernel knows, by id (at start: read back from the pinned maps).
    rules: BTreeMap<u32, Rule>,
    wan_slots: NameIds,
    outcomes: BTreeMap<String, Outcome>,
    adopted: Adopted,
    started: Instant,
    last_apply: Option<(Instant, ApplyReport)>,
    /// Health of every configured WAN, by name.
    health: BTreeMap<String, Tracker>,
    last_failover: Option<(Instant, FailoverReport)>,
    /// The policy table in the kernel is behind the WAN states (a failover's write failed):
    /// retried on every event until it succeeds.
    policy_dirty: bool,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("config", &self.config.path)
            .finish_non_exhaustive()
    }
}

fn capacities(c: &config::Capacity) -> Capacities {
    Capacities {
        dst_v4: c.dst_v4,
        dst_v6: c.dst_v6,
        src_v4: c.src_v4,
        src_v6: c.src_v6,
    }
}

impl Controller {
    /// Opens (or adopts) the pinned dataplane, reads what the maps hold, applies `config` and
    /// attaches the classifier to the LAN interfaces. `carrier` tells whether each WAN's
    /// interface has carrier now (a WAN with carrier starts up; probes take it down if not).
    pub fn start(
        config: Config,
        carrier: impl Fn(&str) -> bool,
    ) -> Result<(Controller, ApplyReport), ControllerError> {
        check_lan(&config)?;
        let (dp, adopted) = Dataplane::open_pinned(
            &config.general.pin_dir,
            capacities(&config.general.capacity),
        )?;
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
        let prefixes = PrefixSets::read(&dp.maps)?;
        let (rules, wan_slots) = previous_ids(&dp)?;
        let mut ctl = Controller {
            rules,
            config: config.clone(),
            dp,
            prefixes,
            wan_slots,
            outcomes: BTreeMap::new(),
            adopted,
            started: Instant::now(),
            last_apply: None,
            health: BTreeMap::new(),
            last_failover: None,
            policy_dirty: false,
        };
        ctl.track_wans(&config, &carrier);
        let report = ctl.apply(config, true)?;
        Ok((ctl, report))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn dataplane(&mut self) -> &mut Dataplane {
        &mut self.dp
    }

    /// Set name -> rule id of what the kernel holds.
    fn rule_ids(&self) -> NameIds {
        self.rules
            .values()
            .filter(|r| r.id != DEFAULT_RULE)
            .map(|r| (r.name.clone(), r.id))
            .collect()
    }

    /// Applies a new, validated configuration (re-read from the file by the caller). An error
    /// means nothing changed: the running configuration stays. Once the new configuration is
    /// live, what still fails (attaching to a LAN interface) is in the report's failures.
    /// `carrier` gives the link state of interfaces WANs are new on.
    pub fn reload(
        &mut self,
        config: Config,
        carrier: impl Fn(&str) -> bool,
    ) -> Result<ApplyReport, ControllerError> {
        check_lan(&config)?;
        let health = self.health.clone();
        self.track_wans(&config, &carrier);
        let applied = self.apply(config, false);
        if applied.is_err() {
            // The running configuration stays, and so do the WAN states that go with it.
            self.health = health;
        }
        applied
    }

    /// Keeps a tracker per configured WAN: existing ones keep their state (with the new track
    /// settings), new ones and ones moved to another interface start from that interface's
    /// `carrier` (the old interface's carrier says nothing about the new line, and a link that
    /// does not change sends no event), removed ones go.
    fn track_wans(&mut self, config: &Config, carrier: &dyn Fn(&str) -> bool) {
        let now = Instant::now();
        let running = &self.config;
        self.health.retain(|name, _| {
            let (old, new) = (running.wan(name), config.wan(name));
            new.is_some_and(|n| old.is_none_or(|o| o.interface == n.interface))
        });
        for wan in &config.wans {
            match self.health.get_mut(&wan.name) {
                Some(t) => t.retune(wan.track.clone()),
                None => {
                    let t = Tracker::new(wan.track.clone(), carrier(&wan.interface), now);
                    self.health.insert(wan.name.clone(), t);
                }
            }
        }
    }

    /// The carrier of an interface changed (netlink). Returns the failover it caused, if any.
    pub fn carrier(&mut self, interface: &str, carrier: bool) -> Option<FailoverReport> {
        // The configuration gives every WAN its own interface.
        let wan = self
            .config
            .wans
            .iter()
            .find(|w| w.interface == interface)?
            .name
            .clone();
        let transition = self
            .health
            .get_mut(&wan)?
            .set_carrier(carrier, Instant::now())?;
        self.fail_over(&wan, transition)
    }

    /// A probe round of `wan` finished.
    pub fn probe_round(&mut self, wan: &str, round: &RoundSummary) -> Option<FailoverReport> {
        let transition = self.health.get_mut(wan)?.round(round, Instant::now())?;
        self.fail_over(wan, transition)
    }

    /// `steer wan NAME up|down|auto`.
    pub fn set_manual(
        &mut self,
        wan: &str,
        manual: Option<Override>,
    ) -> Result<Option<FailoverReport>, String> {
        let Some(tracker) = self.health.get_mut(wan) else {
            let names: Vec<&str> = self.config.wans.iter().map(|w| w.name.as_str()).collect();
            return Err(format!(
                "no WAN named `{wan}`; configured: {}",
                names.join(", ")
            ));
        };
        Ok(tracker
            .set_manual(manual, Instant::now())
            .and_then(|t| self.fail_over(wan, t)))
    }

    /// A LAN interface appeared, changed or disappeared (`index` None). A recreated interface
    /// (new index) lost its links with the old one: attach again.
    pub fn lan_link(&mut self, iface: &str, index: Option<u32>) -> Option<String> {
        if !self.config.general.lan.iter().any(|l| l == iface) {
            return None;
        }
        match index {
            None => {
                self.dp.forget(iface);
                Some(format!(
                    "{iface}: LAN interface gone, its classifier links with it"
                ))
            }
            Some(i) if self.dp.attached_index(iface) == Some(i) => None,
            Some(_) => Some(match self.dp.attach(iface, self.config.general.xdp) {
                Ok(r) => format!(
                    "{iface}: LAN interface (re)appeared: classifier attached{}",
                    xdp_note(&r)
                ),
                Err(e) => format!("{iface}: attaching the classifier failed: {e}"),
            }),
        }
    }

    /// Retries a policy table write that failed; call on any event.
    pub fn retry_pending(&mut self) -> Option<String> {
        if !self.policy_dirty {
            return None;
        }
        let (table, outcomes) = self.live_table();
        match sync::flip_policy(&mut self.dp.maps, &table) {
            Ok(_) => {
                self.policy_dirty = false;
                self.outcomes = outcomes;
                Some("policy table written after an earlier failure: the kernel follows the WAN states again".into())
            }
            Err(e) => Some(format!("writing the policy table still fails: {e}")),
        }
    }

    /// Every policy resolved with the WANs as they are now, from the cached compilation.
    fn live_table(&self) -> (PolicyTable, BTreeMap<String, Outcome>) {
        policy::table(&self.config, &self.rules, |name| {
            let up = self.health.get(name).is_none_or(Tracker::up);
            wan_view(&self.config, &self.wan_slots, name, up)
        })
    }

    /// A WAN changed state: recompute every policy from the cached compilation (not the whole
    /// configuration), write the standby generation and flip. Flows that were on a WAN that
    /// went down lose their conntrack entries (by mark), so they start over on the WAN that
    /// carries them now.
    fn fail_over(&mut self, wan: &str, transition: Transition) -> Option<FailoverReport> {
        let started = Instant::now();
        let (table, outcomes) = self.live_table();
        let flip = sync::flip_policy(&mut self.dp.maps, &table);
        let switch = started.elapsed();
        let moved: Vec<(String, String, String)> = outcomes
            .iter()
            .filter_map(|(p, now)| {
                let before = self.outcomes.get(p)?;
                (before != now).then(|| (p.clone(), before.to_string(), now.to_string()))
            })
            .collect();
        let mut report = FailoverReport {
            wan: wan.to_owned(),
            up: transition.up,
            cause: transition.cause,
            moved,
            detection: transition.detection,
            switch,
            flip: flip.as_ref().ok().copied().flatten(),
            error: flip.err().map(|e| e.to_string()),
            flushed: None,
        };
        if !transition.up
            && let Some(w) = self.config.wan(wan)
        {
            let mask = self.config.general.mark_mask;
            report.flushed = Some(match conntrack::flush_mark(w.mark, mask) {
                Ok(()) => format!(
                    "conntrack entries with mark {:#x}/{mask:#x} flushed",
                    w.mark
                ),
                Err(e) => format!("conntrack flush failed: {e}"),
            });
        }
        self.policy_dirty = report.error.is_some();
        if !self.policy_dirty {
            self.outcomes = outcomes;
        }
        self.last_failover = Some((Instant::now(), report.clone()));
        Some(report)
    }

    /// Brings the kernel to `config`: prefix maps and policy table (diff-synced), WAN names,
    /// settings, then LAN attachments. An error means the sync failed and the kernel and the
    /// controller still follow the previous configuration. Once the sync succeeded the new
    /// configuration is live, and what fails after that is reported as a warning.
    fn apply(&mut self, config: Config, first: bool) -> Result<ApplyReport, ControllerError> {
        let started = Instant::now();
        let old_rules = self.rules.clone();
        let states: BTreeMap<String, bool> = self
            .health
            .iter()
            .map(|(n, t)| (n.clone(), t.up()))
            .collect();
        let up = |w: &str| states.get(w).copied().unwrap_or(true);
        let mut want = desired(&config, &self.rule_ids(), &self.wan_slots, up);
        self.dp.capacities = capacities(&config.general.capacity);
        let mut report = ApplyReport::default();
        if !want.compiled.recycled.is_empty() {
            // A new set would take the id of a set removed in this same reload while that set's
            // prefixes are still in the maps. Remove the old sets first, then add the new ones.
            let mut first_step = config.clone();
            first_step
                .sets
                .retain(|s| !want.compiled.recycled.contains(&s.name));
            let step = desired(&first_step, &self.rule_ids(), &self.wan_slots, up);
            report.sync = self.sync_to(&first_step, &step)?;
            self.commit(step, first_step);
            want = desired(&config, &self.rule_ids(), &self.wan_slots, up);
        }
        let sync = self.sync_to(&config, &want)?;
        merge(&mut report.sync, sync);
        report.per_set = per_set(&report.sync, &want.compiled.rules, &old_rules);
        self.commit(want, config);
        self.finish_live(first, &mut report);
        if first && !report.failures.is_empty() {
            return Err(ControllerError::Start(report.failures));
        }
        for set in self.config.sets.iter().filter(|s| !s.domains.is_empty()) {
            report.warnings.push(format!(
                "set {}: its {} domain(s) are not steered yet: learning addresses from DNS answers \
                 comes with the [dns] section, which this version does not have",
                set.name,
                set.domains.len()
            ));
        }
        report.took = started.elapsed();
        self.last_apply = Some((Instant::now(), report.clone()));
        Ok(report)
    }

    /// The steps after the new configuration went live: WAN names for `steer dump`, then the
    /// LAN attachments. Nothing here is undone on failure (the maps already follow the new
    /// configuration): failures are reported, and a LAN interface is attached again when it
    /// changes.
    fn finish_live(&mut self, first: bool, report: &mut ApplyReport) {
        if let Err(e) = self.write_wan_info() {
            report.failures.push(format!(
                "writing the WAN names for `steer dump` failed: {e}; `steer dump` may show \
                 stale WAN names until the next reload"
            ));
        }
        self.reconcile_lan(first, report);
    }

    /// One sync, with the settings flags widened around it: source lookups are switched on
    /// before the first source prefix lands and off only after the last one left.
    fn sync_to(&mut self, config: &Config, want: &Desired) -> Result<SyncReport, ControllerError> {
        let (before, after) = (
            self.settings_for(config, &self.prefixes),
            self.settings_for(config, &want.compiled.prefixes),
        );
        self.write_settings(Settings {
            flags: before.flags | after.flags,
            _pad: 0,
        })?;
        let report = sync::sync(
            &mut self.dp.maps,
            &mut self.prefixes,
            &want.compiled.prefixes,
            &want.table,
            &self.dp.capacities,
        )?;
        let now = self.settings_for(config, &self.prefixes);
        self.write_settings(now)?;
        Ok(report)
    }

    fn commit(&mut self, want: Desired, config: Config) {
        self.rules = want.compiled.rules;
        self.wan_slots = want.wan_slots;
        self.outcomes = want.outcomes;
        self.config = config;
        self.policy_dirty = false;
    }

    fn settings_for(&self, config: &Config, prefixes: &PrefixSets) -> Settings {
        let mut flags = if config.general.log_packets {
            settings_flags::LOG_PACKETS
        } else {
            0
        };
        if !prefixes.map(Direction::Src, true).is_empty() {
            flags |= settings_flags::HAS_SRC_V4;
        }
        if !prefixes.map(Direction::Src, false).is_empty() {
            flags |= settings_flags::HAS_SRC_V6;
        }
        Settings { flags, _pad: 0 }
    }

    fn write_settings(&mut self, want: Settings) -> Result<(), DataplaneError> {
        if self.dp.maps.settings()? != want {
            self.dp.maps.set_settings(want)?;
        }
        Ok(())
    }

    /// WAN names for `steer dump`; a slot that changes hands starts its counters from zero.
    fn write_wan_info(&mut self) -> Result<(), DataplaneError> {
        for slot in 0..MAX_WANS {
            let want = self
                .config
                .wans
                .iter()
                .find(|w| self.wan_slots.get(&w.name) == Some(&slot))
                .map(|w| WanInfo {
                    name: name_to_bytes(&w.name),
                    mark: w.mark,
                    table: w.table,
                    in_use: 1,
                    _pad: 0,
                })
                .unwrap_or_default();
            let have = self.dp.maps.wan_info(slot)?;
            if have != want {
                if have.name != want.name {
                    self.dp.maps.reset_wan_counter(slot)?;
                }
                self.dp.maps.set_wan_info(slot, want)?;
            }
        }
        Ok(())
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
                    report.failures.push(format!(
                        "{iface}: attaching the classifier failed: {e}; traffic entering {iface} \
                         is not classified until that is fixed (steer retries when the interface \
                         changes)"
                    ));
                    continue;
                }
            };
            if let Some(mode) = r.xdp {
                log::info!("{iface}: XDP pre-classifier attached ({mode})");
            }
            if let Some(e) = r.xdp_error {
                report.warnings.push(format!(
                    "{iface}: XDP could not be attached ({e}); TC classifies alone"
                ));
            }
            if r.tc_attached || first {
                report.attached.push(iface.clone());
            }
        }
        for iface in current.iter().filter(|i| !general.lan.contains(i)) {
            match self.dp.detach(iface) {
                Ok(()) => report.detached.push(iface.clone()),
                Err(e) => report.failures.push(format!(
                    "{iface}: detaching the classifier failed: {e}; it still classifies there"
                )),
            }
        }
        match self.dp.detach_unconfigured() {
            Ok(gone) => report.detached.extend(gone),
            Err(e) => report.failures.push(format!(
                "removing links of interfaces no longer configured failed: {e}"
            )),
        }
    }

    /// Detaches everything and removes all pinned state (`steer stop`).
    pub fn teardown(self) -> Result<usize, ControllerError> {
        let root = self.config.general.pin_dir.clone();
        let Controller { mut dp, .. } = self;
        let ifaces: Vec<String> = dp.attached().map(|(i, _)| i.to_owned()).collect();
        for iface in ifaces {
            dp.detach(&iface)?;
        }
        drop(dp); // releases the pin-directory lock
        Ok(crate::dataplane::remove_pinned(&root)?)
    }

    /// The status document (`steer status`).
    pub fn status(&self) -> serde_json::Value {
        let generation = self.dp.maps.active_generation().ok();
        let mut per_rule: HashMap<u32, usize> = HashMap::new();
        for (dir, v4) in PrefixSets::KEYS {
            for rule in self.prefixes.map(dir, v4).values() {
                *per_rule.entry(*rule).or_default() += 1;
            }
        }
        let sets: Vec<serde_json::Value> = self
            .rules
            .values()
            .map(|r| {
                let counter = self.dp.maps.rule_counter(r.id).unwrap_or_default();
                json!({
                    "name": r.name, "rule": r.id,
                    "match": Direction::rule_kind_name(r.kind),
                    "policy": r.policy, "prefixes": per_rule.get(&r.id).copied().unwrap_or(0),
                    "packets": counter.packets, "bytes": counter.bytes,
                })
            })
            .collect();
        let now = Instant::now();
        let wans: Vec<serde_json::Value> = self
            .config
            .wans
            .iter()
            .map(|w| {
                let slot = self.wan_slots.get(&w.name).copied().unwrap_or(0);
                let counter = self.dp.maps.wan_counter(slot).unwrap_or_default();
                let health = self.health.get(&w.name);
                json!({
                    "name": w.name, "interface": w.interface, "mark": format!("{:#x}", w.mark),
                    "table": w.table,
                    "state": if health.is_none_or(Tracker::up) { "up" } else { "down" },
                    "detail": health.map(|t| t.describe(now)),
                    "carrier": health.map(Tracker::carrier),
                    "packets": counter.packets, "bytes": counter.bytes,
                })
            })
            .collect();
        let policies: Vec<serde_json::Value> = self
            .outcomes
            .iter()
            .map(|(p, o)| json!({ "name": p, "now": o.to_string() }))
            .collect();
        let lan: Vec<serde_json::Value> = self
            .dp
            .attached()
            .map(|(i, x)| json!({ "interface": i, "xdp": x.map(|m| m.to_string()) }))
            .collect();
        json!({
            "config": self.config.path,
            "pin_dir": self.config.general.pin_dir,
            "uptime_s": self.started.elapsed().as_secs(),
            "generation": generation,
            "adopted": self.adopted.maps,
            "policy_in_sync": !self.policy_dirty,
            "lan": lan,
            "wans": wans,
            "policies": policies,
            "sets": sets,
            "last_failover": self.last_failover.as_ref().map(|(at, r)| json!({
                "seconds_ago": at.elapsed().as_secs(), "line": r.to_string(),
            })),
            "last_apply": self.last_apply.as_ref().map(|(at, r)| json!({
                "seconds_ago": at.elapsed().as_secs(), "changes": r.lines(),
            })),
        })
    }

    pub fn pin_dir(&self) -> &Path {
        &self.config.general.pin_dir
    }

    pub fn socket(&self) -> PathBuf {
        self.config.control.socket.clone()
    }
}

fn xdp_note(r: &crate::dataplane::AttachReport) -> String {
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

fn merge(into: &mut SyncReport, more: SyncReport) {
    for (rule, c) in more.per_rule {
        let e = into.per_rule.entry(rule).or_default();
        e.added += c.added;
        e.changed += c.changed;
        e.removed += c.removed;
    }
    into.prefix_writes += more.prefix_writes;
    into.policy_writes += more.policy_writes;
    into.flipped = more.flipped.or(into.flipped);
    into.batched |= more.batched;
    into.diff_time += more.diff_time;
    into.kernel_time += more.kernel_time;
}

/// Names and the ids the kernel knows them by.
pub type NameIds = BTreeMap<String, u32>;

/// The kernel state a configuration asks for.
#[derive(Clone, Debug)]
pub struct Desired {
    pub compiled: Compiled,
    pub wan_slots: NameIds,
    pub table: PolicyTable,
    /// Policy name -> where it sends traffic now.
    pub outcomes: BTreeMap<String, Outcome>,
}

/// Computes the desired state of `config`, keeping earlier rule ids and WAN slots, with each
/// WAN up or down as `up` says.
pub fn desired(
    config: &Config,
    rule_ids: &NameIds,
    wan_slots: &NameIds,
    up: impl Fn(&str) -> bool,
) -> Desired {
    let compiled = sets::compile(config, rule_ids);
    let wan_slots = sets::wan_slots(config, wan_slots);
    let (table, outcomes) = policy::table(config, &compiled.rules, |name| {
        wan_view(config, &wan_slots, name, up(name))
    });
    Desired {
        compiled,
        wan_slots,
        table,
        outcomes,
    }
}

/// How the policies see WAN `name`: its slot, its mark and whether it is up.
fn wan_view(config: &Config, wan_slots: &NameIds, name: &str, up: bool) -> Option<WanView> {
    Some(WanView {
        slot: *wan_slots.get(name)?,
        mark: config.wan(name)?.mark,
        up,
    })
}

/// The rules and WAN slots the pinned maps already hold, so a restart keeps every id.
fn previous_ids(dp: &Dataplane) -> Result<(BTreeMap<u32, Rule>, NameIds), DataplaneError> {
    let generation = dp.maps.active_generation()?;
    let rules = dp
        .maps
        .rules_in_use(generation)?
        .into_iter()
        .map(|(id, info)| {
            let policy =
                Some(name_from_bytes(&info.policy_name).to_owned()).filter(|p| !p.is_empty());
            let name = name_from_bytes(&info.set_name).to_owned();
            let rule = Rule {
                id,
                name,
                policy,
                kind: info.kind,
            };
            (id, rule)
        })
        .collect();
    let wans = dp
        .maps
        .wans_in_use()?
        .into_iter()
        .map(|(slot, info)| (name_from_bytes(&info.name).to_owned(), slot))
        .collect();
    Ok((rules, wans))
}

/// Per-set change counts: rules of the new compilation, plus removed sets from the old one.
fn per_set(
    sync: &SyncReport,
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
