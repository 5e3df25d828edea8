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

mod conntrack_jobs;
pub mod desired;
pub mod dns;
mod failback;
pub mod gateways;
mod hooked_gateways;
mod lan_ports;
mod lines;
mod link_check;
mod lists;
mod local;
mod marking;
mod overrides;
pub mod passive;
mod report;
mod set_edits;
mod standby;
pub mod teardown;
mod vrrp;
mod wan_prefixes;
pub mod wan_watch;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use aya_log::EbpfLogger;

pub use conntrack_jobs::{FlowsBack, Flush};
pub use desired::{Desired, Step, desired};
pub use gateways::{Hooked, Resolved};
pub use report::{ApplyReport, FailoverReport};
pub use teardown::{Teardown, TeardownError, teardown};

use crate::{
    config::{self, Check, Config, ConfigErrors, Failback, Inputs},
    conntrack,
    dataplane::{Adopted, AttachReport, Dataplane, DataplaneError, Diff, LanHook, SyncError},
    health::{Health, Override, Transition, UnknownWan, Verdict, probe::Round},
    model::{Family, LocalScope, NameIds, PrefixSets, Rule},
    policy::{Outcome, Outcomes},
    prefix::Prefix,
    routing::{self, Links, ReconcileReport, Routing, RoutingError},
    status::{
        FailoverTimes, FamilyStatus, LanStatus, LastApply, LastFailover, PolicyStatus, ReportLine,
        SetStatus, ShareStatus, Status, WanState, WanStatus,
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
    /// At start a step after the sync failed: better not to run half attached.
    #[error("steer could not finish starting: {}", .0.join("; "))]
    Start(Vec<String>),
    /// A reload changed what only a restart can change.
    #[error(
        "{}; a reload cannot apply this: restart steer (its service, or `steer run` again) \
         to use the new value",
        .0.join("; ")
    )]
    NeedsRestart(Vec<String>),
    /// A VIP is an address steer did not add (the router's own).
    #[error(transparent)]
    Vips(#[from] crate::vrrp::vips::Clashes),
    /// Another steer's classifier is attached to a LAN interface.
    #[error("{}", .0.join("; "))]
    ForeignClassifier(Vec<String>),
    /// A configured gateway the WAN's table cannot take.
    #[error(transparent)]
    Gateways(#[from] gateways::BadGateways),
    /// A WAN table another tool uses.
    #[error(transparent)]
    TablesInUse(#[from] routing::TablesInUse),
}

/// What differs between `old` and `new` that a running daemon cannot move: where its pinned
/// state, its socket and its metrics listener are.
/// A reload's inputs, taken from the controller so the configuration can be read and
/// compiled on another thread.
#[derive(Clone, Debug)]
pub struct ReloadPlan {
    path: PathBuf,
    rule_ids: NameIds,
    wan_slots: NameIds,
    up: HashSet<(String, Family)>,
    /// What the prefix maps hold, and its version: the diff is taken against it.
    held: (Arc<PrefixSets>, u64),
    /// The files the running configuration was read from, when it was applied cleanly.
    inputs: Option<Inputs>,
    /// The running sets' list files, for a reload where only a list changed.
    lists: lists::ListSets,
    /// Under a memory limit: what the lists may take to be read ([`config::ListBudget`]).
    budget: Option<config::ListBudget>,
}

/// A configuration read, validated and compiled, ready for [`Controller::reload`], with the
/// waits for files that had only just been written ([`config::Wait`]), for the reply.
#[derive(Debug)]
pub struct Prepared(Ready, Vec<ReportLine>);

#[derive(Debug)]
enum Ready {
    /// No file the running configuration was read from changed: nothing was parsed.
    Unchanged {
        inputs: Inputs,
        checked: std::time::Duration,
    },
    /// Only one list file changed: its added and removed prefixes.
    List {
        delta: lists::Delta,
        took: std::time::Duration,
    },
    Changed {
        config: Box<Config>,
        steps: Vec<Compiled>,
        /// `steer check`'s advice on the configuration, taken before the compile moved its
        /// lists' prefixes into the steps (a set's count reads 0 after that).
        advice: Vec<String>,
        inputs: Inputs,
    },
}

impl Prepared {
    /// Whether the configuration had to be read and compiled (some file changed).
    pub fn parsed(&self) -> bool {
        !matches!(self.0, Ready::Unchanged { .. })
    }

    /// The new configuration, when the reload brings one (not when only a list changed).
    pub fn config(&self) -> Option<&Config> {
        match &self.0 {
            Ready::Changed { config, .. } => Some(config),
            _ => None,
        }
    }
}

/// A step with what is computed ahead of the kernel writes: the prefixes per rule it leaves
/// in the maps, and (first step only) its diff against the maps' version it was taken from.
#[derive(Debug)]
struct Compiled {
    step: Step,
    counts: HashMap<u32, usize>,
    diff: Option<(u64, Diff)>,
}

/// A reload's steps, compiled off the event loop, with the advice on the configuration they
/// were compiled from.
struct Precompiled {
    steps: Vec<Compiled>,
    advice: Vec<String>,
}

impl Compiled {
    fn of(step: Step) -> Compiled {
        Compiled {
            counts: step.desired.contents.prefixes.per_rule(),
            step,
            diff: None,
        }
    }
}

impl ReloadPlan {
    /// Reads, validates and compiles the configuration file and diffs it against the maps (the
    /// slow part of a reload: list files of a million lines). Touches nothing in the kernel.
    /// Under a memory limit, no list is read or parsed that would take the daemon over it: the
    /// reload is refused where the configuration names the list.
    pub fn prepare(self) -> Result<Prepared, ConfigErrors> {
        // A pooled thread's earlier reads are not this reload's.
        config::take_waits();
        let ready = self.read_and_compile()?;
        let waited = config::take_waits()
            .iter()
            .map(|w| ReportLine::info(w.to_string()))
            .collect();
        Ok(Prepared(ready, waited))
    }

    fn read_and_compile(self) -> Result<Ready, ConfigErrors> {
        let started = Instant::now();
        if let Some(inputs) = &self.inputs {
            let room = self
                .budget
                .as_ref()
                .map_or(u64::MAX, config::ListBudget::text_room);
            let check = inputs.check_within(room);
            let checked = started.elapsed();
            match check {
                Check::Unchanged => {
                    return Ok(Ready::Unchanged {
                        inputs: inputs.clone(),
                        checked,
                    });
                }
                Check::Changed(changed) => {
                    if let Some(mut delta) = lists::prepare(
                        &self.lists,
                        inputs,
                        changed,
                        &self.held.0,
                        self.budget.clone(),
                    ) {
                        delta.check = checked;
                        delta.version = self.held.1;
                        return Ok(Ready::List {
                            delta,
                            took: started.elapsed(),
                        });
                    }
                }
                Check::Unreadable => {}
            }
        }
        let (mut config, inputs) = config::load_stamped_within(&self.path, self.budget)?;
        let advice = config::advice(&config);
        let steps = desired::steps(&mut config, &self.rule_ids, &self.wan_slots, |w, f| {
            self.up.contains(&(w.to_owned(), f))
        });
        let (held, version) = self.held;
        let mut steps: Vec<Compiled> = steps.into_iter().map(Compiled::of).collect();
        if let Some(first) = steps.first_mut() {
            let diff = Diff::new(&held, &first.step.desired.contents.prefixes);
            first.diff = Some((version, diff));
        }
        Ok(Ready::Changed {
            config: Box::new(config),
            steps,
            advice,
            inputs,
        })
    }
}

fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let show = |v: Option<std::net::SocketAddr>| v.map_or("none".to_owned(), |a| a.to_string());
    [
        (
            "general.pin_dir",
            old.general.pin_dir.display().to_string(),
            new.general.pin_dir.display().to_string(),
            new.general.pin_dir_place,
        ),
        (
            "control.socket",
            old.control.socket.display().to_string(),
            new.control.socket.display().to_string(),
            new.control.socket_place,
        ),
        (
            "control.metrics",
            show(old.control.metrics),
            show(new.control.metrics),
            new.control.metrics_place,
        ),
    ]
    .into_iter()
    .filter(|(_, was, is, _)| was != is)
    .map(|(field, was, is, place)| {
        // Where the new value is written; left out, the default is what changed to.
        let default = if place.0.is_none() {
            " (the default)"
        } else {
            ""
        };
        format!(
            "{}{place}: {field} changed from {was} to {is}{default}",
            new.path.display()
        )
    })
    .collect()
}

pub struct Controller {
    config: Config,
    dp: Dataplane,
    routing: Routing,
    /// The rules the kernel knows, by id (at start: read back from the pinned maps).
    rules: BTreeMap<u32, Rule>,
    wan_slots: NameIds,
    outcomes: BTreeMap<String, Outcomes>,
    /// Per balanced policy, its packet counters per WAN when its WANs last changed: the
    /// measured shares count from there, comparable with the target of now.
    share_marks: BTreeMap<String, ShareMark>,
    adopted: Adopted,
    started: Instant,
    last_apply: Option<(Instant, ApplyReport)>,
    health: Health,
    last_failover: Option<(Instant, FailoverReport)>,
    /// Per WAN family: how often it went up and down (metrics).
    transitions: BTreeMap<(String, Family), (u64, u64)>,
    /// Per WAN family and detection path: how often it went down (metrics).
    detections: BTreeMap<(String, Family, &'static str), u64>,
    /// Detection and switch times of every change (metrics).
    failover_times: FailoverTimes,
    /// The policy table in the kernel is behind the WAN states (a failover's write failed):
    /// retried on every event until it succeeds.
    policy_dirty: bool,
    /// The learned-host maps and their lifetimes (domain sets).
    dns: std::sync::Arc<dns::Learner>,
    /// Each WAN family's next hop, as last resolved from the configuration and the system.
    gateways: BTreeMap<(String, Family), Resolved>,
    /// The local destinations the system's tables gave at the last read ([`local`]).
    local_found: local::Found,
    /// Gateways handed in by DHCP client hooks.
    hooked: Hooked,
    /// Each WAN's delegated IPv6 prefix (`[ipv6]`).
    prefixes6: wan_prefixes::WanPrefixes,
    /// LAN interfaces listed with the bridge they are ports of, at the last read of the system.
    lan_ports: Vec<lan_ports::PortOfListedBridge>,
    /// LAN interfaces whose detached classifier could not be attached again: the periodic
    /// check tries again ([`link_check`]).
    reattach_failed: BTreeSet<String>,
    /// Prefixes per rule id, counted after each sync: a status (a metrics scrape) must not
    /// walk a million prefixes.
    prefix_counts: HashMap<u32, usize>,
    /// Flushes failovers asked for, not yet taken by the daemon ([`Controller::take_flushes`]).
    flushes: Vec<Flush>,
    /// VRRP: roles, the WANs mastership gates, the speakers ([`vrrp`]).
    vrrp: vrrp::VrrpCtl,
    /// Runtime set entries (`steer set`), their journal and edits still arriving.
    runtime: set_edits::Runtime,
    /// The files the running configuration was read from, kept only while the kernel holds
    /// exactly what it asks (the last apply had no failure): a reload that finds them unchanged
    /// has nothing to parse and nothing to write.
    inputs: Option<Inputs>,
    /// Policy tables precomputed for single-WAN failures ([`standby`]).
    standbys: standby::Standbys,
    /// The addresses of each WAN interface, as last read: the router's own packets from them
    /// leave by that WAN ([`routing::own_address_rules`]).
    wan_addresses: BTreeMap<String, Vec<IpAddr>>,
    /// The default route's gateway the main table prefers through each WAN interface, per
    /// family (a DHCP client's, PPP's, a router advertisement's), as last observed.
    main_defaults: BTreeMap<(String, Family), IpAddr>,
    /// WAN families whose gateway went away while they were down: a gateway that comes back
    /// does not bring them up by itself.
    lost_while_down: HashSet<(String, Family)>,
    /// Whether steer's nftables table was installed for br_netfilter
    /// ([`conntrack::bridge_netfilter`]); the periodic check installs it again when that
    /// changes (Docker starting loads br_netfilter).
    marking_bridged: std::sync::atomic::AtomicBool,
    /// What the drift check of steer's nftables table compares with and found ([`marking`]).
    marking: std::sync::Mutex<marking::Marking>,
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
    /// in line. A WAN whose interface has carrier starts up (probes take it down if not),
    /// unless the adopted state had it down ([`crate::health::adopted`]).
    pub async fn start(mut config: Config) -> Result<(Controller, ApplyReport), ControllerError> {
        let routing = Routing::new()?;
        let carriers = link_states(&routing, &config).await;
        let (mut dp, adopted) = Dataplane::open_pinned_verifying(&config.general.pin_dir)?;
        let (learner, learned) = dns::Learner::new(dp.take_learned());
        if learned > 0 {
            log::info!("{learned} learned hosts adopted with their expiries");
        }
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
        let (runtime, runtime_notes) = set_edits::Runtime::open(&config.control.socket);
        let mut health = Health::default();
        health.follow(&config.wans, |i| carrier_of(&carriers, i), Instant::now());
        // What the adopted state had down stays down: the first apply must not send new flows
        // into a line found dead before the restart.
        let held_down = match adopted.maps {
            true => crate::health::adopted::hold_down(
                &mut health,
                dp.maps(),
                &config,
                (&rules, &wan_slots),
                Instant::now(),
            ),
            false => Vec::new(),
        };
        // Overrides set by hand hold across the restart, from the first apply on.
        let (restored, overrides_dropped) = overrides::restore(&mut health, &config.control.socket);
        let (hooked, hooked_notes) = kept_gateways(&config.control.socket, &config.wans);
        let (prefixes6, prefix_notes) =
            wan_prefixes::WanPrefixes::open(&config.control.socket, &config.wans);
        let mut ctl = Controller {
            rules,
            // Until the first apply commits the configuration: all of it but the sets' prefixes
            // (a million entries are not copied to be dropped a moment later).
            config: without_prefixes(&mut config),
            dp,
            routing,
            wan_slots,
            outcomes: BTreeMap::new(),
            share_marks: BTreeMap::new(),
            adopted,
            started: Instant::now(),
            last_apply: None,
            health,
            last_failover: None,
            transitions: BTreeMap::new(),
            detections: BTreeMap::new(),
            failover_times: FailoverTimes::default(),
            policy_dirty: false,
            dns: std::sync::Arc::new(learner),
            gateways: BTreeMap::new(),
            local_found: local::Found::default(),
            hooked,
            prefixes6,
            lan_ports: Vec::new(),
            reattach_failed: BTreeSet::new(),
            prefix_counts: HashMap::new(),
            flushes: Vec::new(),
            vrrp: vrrp::VrrpCtl::default(),
            runtime,
            inputs: None,
            standbys: standby::Standbys::default(),
            lost_while_down: HashSet::new(),
            wan_addresses: BTreeMap::new(),
            main_defaults: BTreeMap::new(),
            marking_bridged: std::sync::atomic::AtomicBool::new(false),
            marking: std::sync::Mutex::default(),
        };
        let mut report = match ctl.apply(config, true, None).await {
            Ok(report) => report,
            Err(e) => return Err(ctl.refused_start(e)),
        };
        ctl.flush_dead_at_start();
        if overrides_dropped && let Some(line) = ctl.keep_overrides() {
            report.notes.push(line);
        }
        if !hooked_notes.is_empty() {
            report.notes.extend(ctl.keep_hooked());
        }
        report.notes.splice(0..0, prefix_notes);
        report.notes.splice(0..0, hooked_notes);
        report.notes.splice(0..0, runtime_notes);
        report.notes.splice(0..0, restored);
        report.notes.splice(0..0, held_down);
        report
            .notes
            .splice(0..0, no_carrier_warnings(&ctl.config, &carriers));
        Ok((ctl, report))
    }

    /// A start that failed before the classifier was attached (the sets refused, for the
    /// memory limit among others, or the programs refused by the verifier) leaves the pin
    /// directory as it found it: the pins it created go, an earlier daemon's stay as they
    /// were (its programs were not replaced: they are pinned once the first state is live).
    /// Nothing else was changed yet: no link, rule or nftables table. A failure after the
    /// attachment ([`ControllerError::Start`]) is left to `steer stop`.
    fn refused_start(mut self, e: ControllerError) -> ControllerError {
        if matches!(e, ControllerError::Start(_)) {
            return e;
        }
        match self.dp.remove_created_pins() {
            Ok(0) => {}
            Ok(n) => log::info!("start refused: the {n} pins it had created were removed"),
            Err(undo) => log::warn!("start refused; removing the pins it created failed: {undo}"),
        }
        e
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What a reload needs to read and compile the configuration off the event loop: the
    /// file, and the rule ids and WAN slots in use (so the compilation keeps them).
    pub fn reload_plan(&self) -> ReloadPlan {
        let up: HashSet<(String, Family)> = self
            .config
            .wans
            .iter()
            .flat_map(|w| Family::ALL.map(|f| (w.name.clone(), f)))
            .filter(|(w, f)| self.usable(w, *f))
            .collect();
        ReloadPlan {
            path: self.config.path.clone(),
            rule_ids: self.rule_ids(),
            wan_slots: self.wan_slots.clone(),
            up,
            held: self.dp.snapshot(),
            inputs: self.inputs.clone(),
            lists: lists::ListSets::of(&self.config, &self.rule_ids()),
            budget: crate::memory_limit::MemoryLimit::of_this_process().map(|limit| {
                config::ListBudget::new(limit, self.dp.set_memory(), self.dp.prefixes().len())
            }),
        }
    }

    /// Remembers the files the running configuration was read from (see [`config::load_stamped`]),
    /// unless the last apply left something undone.
    pub fn remember_inputs(&mut self, inputs: Inputs) {
        let clean = self
            .last_apply
            .as_ref()
            .is_some_and(|(_, r)| r.failures().is_empty());
        self.inputs = clean.then_some(inputs);
    }

    /// Applies a configuration read and compiled by [`ReloadPlan::prepare`]. An error means
    /// nothing changed: the running configuration stays. Once the new configuration is live,
    /// what still fails (attaching to a LAN interface) is in the report. WANs that changed
    /// state while the configuration was being compiled are accounted for before this returns.
    pub async fn reload(&mut self, mut prepared: Prepared) -> Result<ApplyReport, ControllerError> {
        let before = self.dp.maps().writes();
        let waited = std::mem::take(&mut prepared.1);
        let result = self.reload_prepared(prepared).await;
        crate::heap::return_freed_memory();
        let mut report = result?;
        report.notes.splice(0..0, waited);
        report.map_writes = Some(self.dp.maps().writes() - before);
        Ok(report)
    }

    async fn reload_prepared(
        &mut self,
        prepared: Prepared,
    ) -> Result<ApplyReport, ControllerError> {
        let (config, steps, advice, inputs) = match prepared.0 {
            Ready::Unchanged { inputs, checked } => {
                return Ok(self.reload_unchanged(&inputs, checked).await);
            }
            Ready::List { delta, took } => return self.reload_list(delta, took).await,
            Ready::Changed {
                config,
                steps,
                advice,
                inputs,
            } => (*config, steps, advice, inputs),
        };
        let restart = restart_only_changes(&self.config, &config);
        if !restart.is_empty() {
            return Err(ControllerError::NeedsRestart(restart));
        }
        for note in crate::vrrp::vips::check(&config.path, &config.vrrp).await? {
            log::warn!("{note}");
        }
        let carriers = link_states(&self.routing, &config).await;
        let health = self.health.clone();
        self.health
            .follow(&config.wans, |i| carrier_of(&carriers, i), Instant::now());
        let overrides = health.overrides();
        // State handed in for a line follows it: before the apply, which routes by it.
        let (old_lines, new_lines) = (
            lines::lines_of(&self.config.wans),
            lines::lines_of(&config.wans),
        );
        let mut followed = self.carry_overrides(&overrides, &old_lines, &new_lines);
        let hooked = self.hooked.clone();
        followed.extend(self.carry_hooked(&old_lines, &new_lines));
        let prefixes = self.prefixes6.handed();
        followed.extend(self.prefixes6.follow(&old_lines, &new_lines));
        let held = self.configured_counts();
        let old_wans = (self.config.wans.clone(), self.config.general.mark_mask);
        let mut applied = self
            .apply(config, false, Some(Precompiled { steps, advice }))
            .await;
        match &mut applied {
            Ok(report) => {
                // The new policy is live: connections of a WAN it removed go, and those whose
                // mark now leads to another line.
                let changed = Flush::of_changed(&old_wans.0, &self.config.wans, old_wans.1);
                self.queue_new_flushes(changed);
                report.notes.extend(self.emptied_sets(&held));
                report.notes.extend(followed);
                // A WAN removed (or moved to another interface) lost its override, a renamed
                // one has it under its new name: a restarted daemon must find them so.
                if self.health.overrides() != overrides {
                    report.notes.extend(self.keep_overrides());
                }
                if self.hooked != hooked {
                    report.notes.extend(self.keep_hooked());
                }
                if self.prefixes6.handed() != prefixes {
                    report.notes.extend(self.prefixes6.keep());
                }
                self.remember_inputs(inputs);
            }
            Err(_) => {
                // The running configuration stays, and so do the WAN states that go with it;
                // the maps may not be exactly what it asks (a rollback that failed), so the
                // next reload reads everything again.
                self.health = health;
                self.hooked = hooked;
                self.prefixes6.restore_handed(prefixes);
                self.inputs = None;
            }
        }
        applied
    }

    /// A reload where only one list changed ([`lists`]): its added and removed prefixes are
    /// written, the set takes its new entries, nothing else is read or compiled.
    async fn reload_list(
        &mut self,
        delta: lists::Delta,
        prepared: std::time::Duration,
    ) -> Result<ApplyReport, ControllerError> {
        let started = Instant::now();
        if !self.config.sets.iter().any(|s| s.name == delta.set) {
            self.inputs = None;
            return Err(SyncError::Stale.into());
        }
        let mut report = ApplyReport::default();
        let mut delta = delta;
        if delta.version != self.dp.version() {
            delta.refit(self.dp.prefixes());
        }
        let dropped = self.fit_list_delta(&mut delta);
        let taken = self.taken_from_others(&delta);
        let removals = delta.removed.len();
        let diff = self.list_diff(&mut delta);
        // What the list holds was needed for the fit: let go of it before the kernel writes
        // (a block that big goes back to the system when freed, `heap`).
        let listed = std::mem::take(&mut delta.listed).len();
        let general = &self.config.general;
        let synced = self.dp.sync_prefixes(
            diff,
            &general.capacity,
            general.log_packets,
            "the changed list",
        );
        // Only runtime edits keep the arrays mapped for the next edit of a burst.
        self.dp.unmap_ranges();
        match synced {
            Ok(sync) => report.merge_sync(sync),
            Err(e) if e.is_live() => report.notes.push(ReportLine::error(e.to_string())),
            Err(e) => {
                // Nothing changed, but the next reload reads everything again.
                self.inputs = None;
                return Err(e.into());
            }
        }
        report.notes.extend(self.forget_dropped(dropped));
        let held = listed + self.runtime_len(&delta.set);
        self.prefix_counts.insert(delta.rule, held);
        for rule in taken {
            if let Some(count) = self.prefix_counts.get_mut(&rule) {
                *count = count.saturating_sub(1);
            }
        }
        if listed == 0 && removals > 0 {
            report.notes.extend(self.emptied_set(&delta.set, removals));
        }
        report.per_set = per_set(&report.sync, &self.rules, &self.rules);
        report.notes.push(ReportLine::info(format!(
            "only a list of set {} changed: files checked in {:.1} ms, {} lines parsed in {:.1} ms, merged against the set in {:.1} ms; nothing else read or compiled",
            delta.set,
            delta.check.as_secs_f64() * 1e3,
            delta.lines,
            delta.parse.as_secs_f64() * 1e3,
            delta.diff_time.as_secs_f64() * 1e3
        )));
        report.notes.extend(self.writable_by_others());
        report.notes.extend(self.refresh_system().await);
        self.repair_attachments(&mut report).await;
        report.took = prepared + started.elapsed();
        report.after.extend(self.reconcile_routing("reload").await);
        self.last_apply = Some((Instant::now(), report.clone()));
        self.inputs = report.failures().is_empty().then_some(delta.inputs);
        Ok(report)
    }

    /// The rules that lose a prefix to a changed list: another set held it (a runtime entry
    /// of it, added while the list was read), and the list's set takes it over. Their counts
    /// go down with it; the list's set is counted whole.
    fn taken_from_others(&self, delta: &lists::Delta) -> Vec<u32> {
        let held = self.dp.prefixes();
        delta
            .added
            .iter()
            .filter_map(|p| {
                held.map(crate::model::PrefixMap::of(delta.direction, p))
                    .get(p)
            })
            .filter(|rule| *rule != delta.rule)
            .collect()
    }

    /// Configured prefixes (runtime entries not counted) each running set holds in the maps.
    fn configured_counts(&self) -> HashMap<String, usize> {
        self.rule_ids()
            .iter()
            .map(|(name, rule)| {
                let held = self.prefix_counts.get(rule).copied().unwrap_or(0);
                (name.clone(), held.saturating_sub(self.runtime_len(name)))
            })
            .collect()
    }

    /// The sets that held configured prefixes (`before`, [`Controller::configured_counts`])
    /// and hold none now.
    fn emptied_sets(&self, before: &HashMap<String, usize>) -> Vec<ReportLine> {
        let now = self.configured_counts();
        let mut emptied: Vec<(&String, usize)> = now
            .iter()
            .filter(|(_, n)| **n == 0)
            .filter_map(|(name, _)| Some((name, *before.get(name).filter(|b| **b > 0)?)))
            .collect();
        emptied.sort();
        emptied
            .into_iter()
            .filter_map(|(name, held)| self.emptied_set(name, held))
            .collect()
    }

    /// A set whose configuration and list files gave it `held` prefixes and give it none now:
    /// most often a list a failed download left empty or with comments only. It is applied as
    /// it is (an empty list is a valid list), but not silently.
    fn emptied_set(&self, name: &str, held: usize) -> Option<ReportLine> {
        let set = self.config.set(name)?;
        let files: Vec<String> = set.files.iter().map(|f| f.display().to_string()).collect();
        let whence = if files.is_empty() {
            "its configuration gives it none".to_owned()
        } else {
            format!(
                "its list files ({}) give it none: empty, or comments only (a failed download?)",
                files.join(", ")
            )
        };
        Some(ReportLine::warning(format!(
            "set {name} holds no configured prefix now: {whence}, and the {held} it held were \
             removed; if that was not meant, put the list back and run `steer reload`"
        )))
    }

    /// The configuration and list files others may change ([`config::writable_by_others`]),
    /// named at every reload, also those that read nothing but a changed list or nothing at all.
    fn writable_by_others(&self) -> Vec<ReportLine> {
        config::writable_by_others(&self.config)
            .into_iter()
            .map(ReportLine::warning)
            .collect()
    }

    /// The writes of a changed list against what the maps hold now. Takes the delta's removals
    /// (a list cut from a million lines to a few removes a million prefixes: no copy of them).
    fn list_diff(&self, delta: &mut lists::Delta) -> (u64, Diff) {
        let held = self.dp.prefixes();
        let added = delta.added.iter().map(|p| (*p, delta.rule)).collect();
        // Only what the set holds is the set's to remove.
        let mut removed = std::mem::take(&mut delta.removed);
        removed.retain(|p| {
            held.map(crate::model::PrefixMap::of(delta.direction, p))
                .get(p)
                == Some(delta.rule)
        });
        let diff = Diff::of_changes(held, delta.direction, added, removed);
        (self.dp.version(), diff)
    }

    /// What every reload repairs, whatever changed: the classifier on every LAN interface and
    /// steer's nftables table. Something else may have detached or flushed them (a firewall
    /// restart flushes the ruleset), and `steer reload` is how an operator asks for them back.
    async fn repair_attachments(&mut self, report: &mut ApplyReport) {
        self.reconcile_lan(false, report);
        report.notes.extend(self.watch_wans());
        report.notes.extend(self.rp_filter_warnings());
        report.after.extend(self.check_conntrack_marking().await);
    }

    /// A WAN under strict reverse-path filtering loses its answers ([`routing::rp_filter`]).
    fn rp_filter_warnings(&self) -> Vec<ReportLine> {
        let interfaces = self.config.wans.iter().map(|w| w.interface.as_str());
        let conf = std::path::Path::new("/proc/sys/net/ipv4/conf");
        routing::rp_filter::strict_warnings(conf, interfaces)
            .into_iter()
            .map(ReportLine::warning)
            .collect()
    }

    /// A reload that found every file unchanged: the maps already hold what the configuration
    /// asks, so nothing is parsed, compiled or written; the system (gateways, local
    /// destinations) and routing are still read again, as every reload does.
    async fn reload_unchanged(
        &mut self,
        inputs: &Inputs,
        checked: std::time::Duration,
    ) -> ApplyReport {
        let started = Instant::now();
        let mut report = ApplyReport {
            unchanged: true,
            ..ApplyReport::default()
        };
        report.notes.push(ReportLine::info(format!(
            "the configuration and its list files ({} files) are unchanged (checked in {:.1} ms): nothing parsed, nothing to write",
            inputs.len(),
            checked.as_secs_f64() * 1e3
        )));
        report.notes.extend(self.writable_by_others());
        report.notes.extend(self.refresh_system().await);
        self.repair_attachments(&mut report).await;
        report.took = started.elapsed() + checked;
        report.after.extend(self.reconcile_routing("reload").await);
        report
    }

    /// The carrier of an interface changed (netlink). Returns the failover it caused, if any.
    pub fn carrier(&mut self, interface: &str, carrier: bool) -> Option<FailoverReport> {
        self.vrrp_link(interface, carrier);
        let verdict = self.health.carrier(interface, carrier, Instant::now())?;
        Some(self.fail_over(verdict))
    }

    /// A probe round of `family` of `wan` finished.
    pub fn probe_round(
        &mut self,
        wan: &str,
        family: Family,
        round: &Round,
    ) -> Option<FailoverReport> {
        if round.cut_short {
            // A round cut short is judged on the line's silence: an answer the kernel counted
            // since the last sample must be seen first.
            self.sample_wan_traffic(wan);
        }
        if self.unprobed(wan, family) {
            // No gateway: the probes had no way out, and say nothing of the line. The family
            // carries nothing meanwhile, and its health starts over with the gateway. (Judged
            // still when the other family, with a gateway and no probes of its own, follows
            // this one: failing rounds are all that can take it down.)
            return None;
        }
        let verdict = self.health.round(wan, family, round, Instant::now())?;
        Some(self.fail_over(verdict))
    }

    /// Whether the probe rounds of `family` of `wan` go unjudged: it waits for a gateway (its
    /// probes have no way out), and the other family, with a gateway and no probes of its
    /// own, does not follow it ([`Self::probe_round`]).
    fn unprobed(&self, wan: &str, family: Family) -> bool {
        let other = family.other();
        let decides_other = !self.health.tracks(wan, other) && !self.waiting(wan, other);
        self.waiting(wan, family) && !decides_other
    }

    /// Whether `family` of `wan` waits for a gateway.
    fn waiting(&self, wan: &str, family: Family) -> bool {
        self.gateways
            .get(&(wan.to_owned(), family))
            .is_some_and(|r| r.gateway.is_none())
    }

    /// The probe round of `family` of `wan` that started at `started` has not passed within
    /// its `late_after`: its next rounds go fast.
    pub fn probe_late(&mut self, wan: &str, family: Family, started: Instant, answered: usize) {
        log::debug!(
            "{wan} {}: probe round late ({answered} answers so far)",
            family.name()
        );
        if !self.unprobed(wan, family) {
            self.health.late(wan, family, started, answered);
        }
    }

    /// A sample of the kernel's traffic counters of `family` of `wan` (cumulative: packets
    /// out that expect an answer, the daemon's own probes not among them; packets in that
    /// answer, the probes' answers among them). Suspicion only hastens the probes (hand
    /// [`Controller::probe_schedule`] to the prober after this); it never takes a WAN down by
    /// itself. Returns whether the WAN's suspicion changed.
    pub fn traffic(
        &mut self,
        wan: &str,
        family: Family,
        counters: crate::health::passive::Counters,
        now: Instant,
    ) -> bool {
        match self.health.traffic(wan, family, counters, now) {
            Some(crate::health::passive::Change::Suspect(s)) => {
                log::info!(
                    "{wan} {} suspect ({}): probing fast",
                    family.name(),
                    s.describe()
                );
                true
            }
            Some(crate::health::passive::Change::Cleared) => {
                log::debug!("{wan} {}: traffic answered again", family.name());
                true
            }
            None => false,
        }
    }

    /// When the next probe rounds of `family` of `wan` go.
    pub fn probe_schedule(&self, wan: &str, family: Family) -> Option<crate::health::Schedule> {
        if self.unprobed(wan, family) {
            return self.health.waiting_schedule(wan, family);
        }
        self.health.schedule(wan, family, Instant::now())
    }

    /// `steer wan NAME up|down|auto`. The override is kept for a restarted daemon
    /// ([`overrides`]): what says that failed is for the client too.
    pub fn set_manual(
        &mut self,
        wan: &str,
        manual: Option<Override>,
    ) -> Result<(Option<FailoverReport>, Option<ReportLine>), UnknownWan> {
        let before = self.health.overrides();
        let verdict = self.health.set_manual(wan, manual, Instant::now())?;
        let kept = (self.health.overrides() != before)
            .then(|| self.keep_overrides())
            .flatten();
        Ok((verdict.map(|v| self.fail_over(v)), kept))
    }

    /// Gives the overrides set by hand (`overrides`, before the WANs changed from `old` to
    /// `new`) to the WANs renamed on the same interface ([`lines`]): [`Health::follow`] kept
    /// those of the WANs that did not change and dropped the others. What to say of each.
    fn carry_overrides(
        &mut self,
        overrides: &overrides::Overrides,
        old: &[lines::Line],
        new: &[lines::Line],
    ) -> Vec<ReportLine> {
        let mut notes = Vec::new();
        for (wan, (manual, interface)) in overrides {
            let fate = lines::fate(wan, interface, old, new);
            if let lines::Fate::Renamed(to) = &fate {
                let why = format!(
                    "set by hand (`steer wan {wan} {}`) before a reload renamed {wan} {to}; \
                     `steer wan {to} auto` gives it back to health tracking",
                    match manual {
                        crate::health::Override::Up => "up",
                        crate::health::Override::Down => "down",
                    }
                );
                self.health
                    .restore_manual(to, *manual, interface, &why, Instant::now());
            }
            notes.extend(lines::override_note(wan, *manual, interface, &fate));
        }
        notes
    }

    /// Gives the handed-in gateways to the WANs renamed on the same interface, and drops those
    /// of WANs moved or removed, as the WANs change from `old` to `new` ([`lines`]). What to
    /// say of them.
    fn carry_hooked(&mut self, old: &[lines::Line], new: &[lines::Line]) -> Vec<ReportLine> {
        let was_on = |wan: &str| self.config.wan(wan).map(|w| w.interface.clone());
        let (carried, notes) = lines::carry_gateways(&self.hooked, was_on, old, new);
        self.hooked = carried;
        notes
    }

    /// Writes the overrides set by hand for a restarted daemon ([`overrides`]); what failed,
    /// if it did (also logged).
    fn keep_overrides(&self) -> Option<ReportLine> {
        let path = overrides::path_for(&self.config.control.socket);
        let boot = crate::runtime_sets::journal::boot_id();
        let e = overrides::store(&path, &boot, &self.health.overrides()).err()?;
        let line = ReportLine::error(format!(
            "writing {} failed: {e}; the WANs are forced up or down as asked, but a restarted \
             daemon would not know it (it would find them as the file says): free the space \
             (or fix the directory's permissions) and give the `steer wan` command again",
            path.display()
        ));
        log::warn!("{}", line.text);
        Some(line)
    }

    /// Whether `iface` is one of the LAN interfaces the classifier is on.
    pub fn is_lan(&self, iface: &str) -> bool {
        self.config.general.lan.iter().any(|l| l == iface)
    }

    /// A LAN interface appeared, changed or disappeared (`index` None). A recreated interface
    /// (new index) lost its links with the old one: attach again.
    pub fn lan_link(&mut self, iface: &str, index: Option<u32>) -> Option<ReportLine> {
        if !self.is_lan(iface) {
            return None;
        }
        // Rules that name the interface (`in`) follow its new index (or lose the old one). A
        // failure there must not keep the classifier off the interface: attach all the same.
        let refreshed = self.dp.maps_mut().refresh_ordered_interfaces();
        let attached = self.follow_lan_link(iface, index);
        match refreshed {
            Ok(_) => attached,
            Err(e) => Some(ReportLine::error(format!(
                "{iface}: rewriting the rules that name it (`in`) failed: {e}; run `steer reload`{}",
                attached
                    .map(|l| format!(" ({})", l.text))
                    .unwrap_or_default()
            ))),
        }
    }

    /// Attaches the classifier to a LAN interface that (re)appeared, forgets one that went.
    fn follow_lan_link(&mut self, iface: &str, index: Option<u32>) -> Option<ReportLine> {
        match index {
            None => {
                self.dp.forget(iface);
                Some(ReportLine::warning(format!(
                    "{iface}: LAN interface gone (deleted or renamed): classifier detached until \
                     an interface of that name appears"
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

    /// Writes the policy table the WAN states of now ask for, when it is not the live one (a
    /// WAN changed state while a reload was compiled).
    fn follow_wan_states(&mut self) -> Option<ReportLine> {
        match self.write_live_table() {
            Ok(flip) => flip.map(|_| {
                ReportLine::info(
                    "policy table rewritten for WANs that changed state during the reload",
                )
            }),
            Err(e) => Some(ReportLine::error(format!(
                "writing the policy table for the WANs' states failed (retrying): {e}"
            ))),
        }
    }

    /// Retries a policy table write that failed; call on any event.
    pub fn retry_pending(&mut self) -> Option<ReportLine> {
        if !self.policy_dirty {
            return None;
        }
        Some(match self.write_live_table() {
            Ok(_) => ReportLine::warning(
                "policy table written after an earlier failure: the kernel follows the WAN \
                 states again",
            ),
            Err(e) => ReportLine::error(format!("writing the policy table still fails: {e}")),
        })
    }

    /// Makes the policy table of the WANs' states of now the live one (a flip when it differs);
    /// a failure leaves it pending for [`Controller::retry_pending`].
    fn write_live_table(&mut self) -> Result<Option<(u32, u32)>, DataplaneError> {
        self.standbys.fresh = false;
        let (table, outcomes) = self.live_table();
        let flip = self.dp.flip_policy(&table);
        self.policy_dirty = flip.is_err();
        if flip.is_ok() {
            self.set_outcomes(outcomes);
        }
        flip
    }

    /// Takes `outcomes` as the live ones; a balanced policy whose WANs changed starts its
    /// measured shares over (the target changed with them).
    fn set_outcomes(&mut self, outcomes: BTreeMap<String, Outcomes>) {
        self.share_marks.retain(|p, _| outcomes.contains_key(p));
        for (policy, o) in &outcomes {
            let balanced: Vec<&str> = Family::ALL
                .iter()
                .filter_map(|f| match o.family(*f) {
                    Outcome::Balanced(up) => Some(up.iter().map(String::as_str)),
                    _ => None,
                })
                .flatten()
                .collect();
            if balanced.is_empty() {
                self.share_marks.remove(policy);
                continue;
            }
            if self
                .share_marks
                .get(policy)
                .is_some_and(|m| m.outcomes == *o)
            {
                continue;
            }
            let packets = balanced
                .iter()
                .map(|w| ((*w).to_owned(), self.policy_packets(policy, w)))
                .collect();
            let mark = ShareMark {
                outcomes: o.clone(),
                at: Instant::now(),
                packets,
            };
            self.share_marks.insert(policy.clone(), mark);
        }
        self.outcomes = outcomes;
    }

    /// Packets the rules of `policy` have sent to `wan` since the counters started.
    fn policy_packets(&self, policy: &str, wan: &str) -> u64 {
        let Some(slot) = self.wan_slots.get(wan) else {
            return 0;
        };
        self.rules
            .values()
            .filter(|r| r.policy.as_deref() == Some(policy))
            .filter_map(|r| self.dp.maps().rule_wan_counter(r.id, *slot).ok())
            .map(|c| c.packets)
            .sum()
    }

    /// Brings the routing rules and the WANs' tables in line with the configuration; `why`
    /// names the occasion in the report lines.
    pub async fn reconcile_routing(&self, why: &str) -> Vec<ReportLine> {
        self.reconcile_routing_reported(why).await.1
    }

    /// [`Controller::reconcile_routing`] with the report, for a caller that looks at which
    /// routes the kernel refused.
    async fn reconcile_routing_reported(&self, why: &str) -> (ReconcileReport, Vec<ReportLine>) {
        let started = Instant::now();
        let report = self.routing.reconcile(&self.desired_routing()).await;
        let lines = routing_lines(why, &report, started);
        (report, lines)
    }

    /// After WAN `recovered` came back: the listing of connections that policies with
    /// `failback = "move"` may want back on it, for the caller to run off the event loop and
    /// hand to [`Controller::flows_to_move`]. `None` when no policy moves flows back.
    pub fn flows_back(&self, recovered: &str, families: &[Family]) -> Option<FlowsBack> {
        let wanted = self
            .config
            .policies
            .iter()
            .any(|p| p.failback == Failback::Move);
        if !wanted {
            return None;
        }
        let mask = self.config.general.mark_mask;
        // The other WANs' connections, and those that started on the main table: a policy
        // with `last_resort = "default"` sends its flows there while its WANs are down.
        let others = self
            .config
            .wans
            .iter()
            .filter(|w| w.name != recovered)
            .map(|w| w.mark);
        Some(FlowsBack {
            recovered: recovered.to_owned(),
            mask,
            marks: others.chain([conntrack::main_table_mark(mask)]).collect(),
            families: families.to_vec(),
        })
    }

    /// Of the listed connections, those whose policy now sends them elsewhere than the WAN they
    /// are on: to be cut, so they start over on their policy's WAN.
    pub fn flows_to_move(&self, listed: Vec<conntrack::Connection>) -> Vec<conntrack::Connection> {
        let (table, _) = self.live_table();
        let learned = |addr| self.dns.rule_of(addr);
        let verdicts = failback::Verdicts {
            config: &self.config,
            rules: &self.rules,
            prefixes: self.dp.prefixes(),
            local: self.dp.local(),
            table: &table,
            ordered: self.dp.maps().ordered(),
            bank: self.dp.maps().ordered().live_view().ok(),
            learned: &learned,
        };
        listed
            .into_iter()
            .filter(|c| verdicts.should_move(c))
            .collect()
    }

    /// Reads the system (interfaces, default routes, local and main tables) and follows it:
    /// the local destinations (never steered), and each WAN family's gateway. A family whose
    /// gateway appears or goes is failed over like a WAN that comes up or goes down. Call after
    /// every routing change. A failure to read keeps the last state.
    pub async fn refresh_system(&mut self) -> Vec<ReportLine> {
        // Not the whole configuration: its sets may hold a million prefixes.
        let (wans, general) = (self.config.wans.clone(), self.config.general.clone());
        let ipv6 = self.config.ipv6.clone();
        let before = (ipv6.clone(), self.prefixes6.resolved.clone());
        let changes = match self.observe(&wans, &general, ipv6.as_ref()).await {
            Ok(changes) => changes,
            Err(line) => return vec![line],
        };
        let mut lines = changes.lines;
        if self.retranslate(before) {
            lines.extend(self.ensure_conntrack_marking().await);
        }
        for (wan, family, up, cause) in changes.availability {
            if up && !self.health.up(&wan, family) {
                // The gateway is back, the line is not: no policy moves.
                lines.push(ReportLine::info(format!(
                    "{wan} {}: {cause}; still down until probes pass",
                    family.name()
                )));
                continue;
            }
            if !up && !self.health.up(&wan, family) {
                // Already down (its carrier went first, as when a PPP session ends): no
                // policy moves and its connections were flushed then; say it once.
                lines.push(ReportLine::info(format!(
                    "{wan} {}: {cause}; it was down already",
                    family.name()
                )));
                continue;
            }
            let verdict = Verdict {
                wan,
                families: vec![family],
                transition: Transition {
                    up,
                    cause,
                    detection: None,
                    path: crate::health::Path::Event,
                    waiting: !up,
                },
            };
            lines.push(self.fail_over(verdict).line());
        }
        lines
    }

    /// Notes LAN interfaces listed with the bridge they are ports of ([`lan_ports`]): a warning
    /// when such a pair appears, a line when it is gone.
    fn follow_lan_ports(&mut self, general: &config::General, links: &Links) -> Vec<ReportLine> {
        let now = lan_ports::ports_of_listed_bridges(&general.lan, links);
        let mut lines: Vec<ReportLine> = now
            .iter()
            .filter(|p| !self.lan_ports.contains(p))
            .map(|p| ReportLine::warning(p.warning()))
            .collect();
        lines.extend(self.lan_ports.iter().filter(|p| !now.contains(p)).map(|p| {
            ReportLine::info(format!(
                "{}: classified once again ({} and it are no longer both listed, or it is no \
                 longer that bridge's port)",
                p.port, p.bridge
            ))
        }));
        self.lan_ports = now;
        lines
    }

    /// Reads the system and updates the local destinations, the gateways and the IPv6 prefixes
    /// of `wans` (the running configuration's, or those of one about to be applied); says what
    /// changed, and which WAN families became usable or unusable by it.
    async fn observe(
        &mut self,
        wans: &[config::Wan],
        general: &config::General,
        ipv6: Option<&config::Ipv6>,
    ) -> Result<Observed, ReportLine> {
        let tables: Vec<u32> = wans.iter().map(|w| w.table).collect();
        let system = self.routing.system(&tables).await.map_err(|e| {
            ReportLine::error(format!(
                "{e}; local destinations and gateways stay as they were"
            ))
        })?;
        let mut seen = Observed::default();
        seen.lines
            .extend(self.follow_lan_ports(general, &system.links));
        let now = Instant::now();
        // What decides is the gateway and the prefix together ([`Self::carries`]), before and
        // after.
        let before: Vec<Option<bool>> = wans
            .iter()
            .flat_map(|w| Family::ALL.map(|f| (w, f)))
            .map(|(w, f)| {
                let known = self.gateways.contains_key(&(w.name.clone(), f));
                known.then(|| self.carries(&w.name, f))
            })
            .collect();
        seen.lines
            .extend(self.prefixes6.observe(ipv6, wans, &system));
        let mut gateways = BTreeMap::new();
        let mut new_gateway = HashSet::new();
        // Said after the loop, unless the family's change of availability says it (its cause).
        let mut gateway_lines = Vec::new();
        for wan in wans {
            for family in Family::ALL {
                let resolved = gateways::resolve(wan, family, &system, &self.hooked);
                let key = (wan.name.clone(), family);
                let before = self.gateways.get(&key);
                if before != Some(&resolved) {
                    let line = format!(
                        "{} {}: gateway {}",
                        wan.name,
                        family.name(),
                        resolved.describe()
                    );
                    // Waiting for another reason (its device went: a family that never had a
                    // gateway) is no news in the log.
                    let still_waiting =
                        before.is_some_and(|b| b.gateway.is_none()) && resolved.gateway.is_none();
                    if still_waiting {
                        log::debug!("{line}");
                    } else {
                        gateway_lines.push((key.clone(), ReportLine::info(line)));
                    }
                }
                let was = before.is_some_and(|r| r.gateway.is_some());
                let is = resolved.gateway.is_some();
                if was != is {
                    new_gateway.insert(key.clone());
                }
                let found_dead = self.health.deciding(&wan.name, family);
                if was && !is && found_dead.is_some_and(|t| !t.healthy()) {
                    self.lost_while_down.insert(key.clone());
                }
                if !was && before.is_some() && is {
                    // A new gateway is a new line: health starts over, as at start, unless
                    // probes had found the line dead before its gateway went away.
                    let carrier = system.links.get(&wan.interface).is_some_and(|l| l.carrier);
                    let found_dead = self.lost_while_down.remove(&key);
                    self.health
                        .restart(&wan.name, family, carrier, found_dead, now);
                }
                gateways.insert(key, resolved);
            }
        }
        self.gateways = gateways;
        self.wan_addresses = wans
            .iter()
            .map(|w| (w.interface.clone(), system.addresses_of(&w.interface)))
            .collect();
        self.main_defaults = wans
            .iter()
            .flat_map(|w| Family::ALL.map(|f| (w, f)))
            .filter_map(|(w, f)| {
                let gateway = gateways::main_table_gateway(&system, &w.interface, f)?;
                Some(((w.interface.clone(), f), gateway))
            })
            .collect();
        // After the gateways: a route through a WAN's gateway is local only while it is usable.
        self.local_found = local::Found::new(&system, wans);
        // Who the DNS forwarder answers follows the LAN's routes.
        self.dns
            .set_found_clients(dns::lan_sources(&system, &general.lan));
        seen.lines
            .extend(self.sync_local(general.local, &general.local_prefixes));
        let pairs = wans.iter().flat_map(|w| Family::ALL.map(|f| (w, f)));
        for ((wan, family), was) in pairs.zip(before) {
            let is = self.carries(&wan.name, family);
            if was.is_some_and(|was| was != is) {
                let key = (wan.name.clone(), family);
                let cause = if new_gateway.contains(&key) {
                    format!("gateway: {}", self.gateway_of(&wan.name, family).describe())
                } else {
                    format!("IPv6 prefix: {}", self.prefixes6.describe(&wan.name))
                };
                seen.availability
                    .push((wan.name.clone(), family, is, cause));
            }
        }
        let told_with_availability = |key: &(String, Family)| {
            new_gateway.contains(key)
                && seen
                    .availability
                    .iter()
                    .any(|(w, f, ..)| (w, f) == (&key.0, &key.1))
        };
        let gateway_lines: Vec<ReportLine> = gateway_lines
            .into_iter()
            .filter(|(key, _)| !told_with_availability(key))
            .map(|(_, line)| line)
            .collect();
        seen.lines.extend(gateway_lines);
        Ok(seen)
    }

    /// Sets (`Some`) or clears (`None`: back to what the system says, for `family` or both) the
    /// gateway a DHCP client hook hands in for `wan`, a WAN's name or interface (`steer wan NAME
    /// gateway ADDR|auto|auto4|auto6`). A gateway the WAN's table cannot take (not on its
    /// link, the router's own address) is refused and the one before stays.
    pub async fn set_gateway(
        &mut self,
        wan: &str,
        gateway: Option<IpAddr>,
        family: Option<Family>,
    ) -> Result<Vec<ReportLine>, GatewayRefused> {
        let Some(w) = self.config.wan_or_interface(wan) else {
            return Err(unknown_wan(&self.config, wan).into());
        };
        let (name, interface) = (w.name.clone(), w.interface.clone());
        let Some(a) = gateway else {
            self.hooked
                .retain(|(w, f), _| *w != name || family.is_some_and(|family| *f != family));
            let unsaved = self.keep_hooked();
            let mut lines = self.refresh_system().await;
            lines.extend(unsaved);
            lines.extend(self.reconcile_routing("gateway set").await);
            return Ok(lines);
        };
        let family = Family::of(&a);
        let pinned = match w.next_hop(family) {
            config::NextHop::Auto => None,
            config::NextHop::Direct => Some("none".to_owned()),
            config::NextHop::Via(c) => Some(c.to_string()),
        };
        if let Some(pinned) = pinned {
            // The configuration wins over a hook ([`gateways::resolve`]): kept, the hand-in
            // would only say "no change" while the route stays where the file says.
            let field = match family {
                Family::V4 => "gateway",
                Family::V6 => "gateway6",
            };
            return Ok(vec![ReportLine::warning(format!(
                "{name} {}: the configuration pins the gateway ({}: wan[{name}].{field} = \
                 \"{pinned}\"), so {a} handed in is ignored and the route stays {}; to let a \
                 DHCP hook hand the gateway in, set {field} = \"auto\" (or leave it out) and \
                 run `steer reload`",
                family.name(),
                self.config.path.display(),
                self.gateway_of(&name, family).describe()
            ))]);
        }
        // A link-local address is the router's on one link only (fe80::1 on the LAN, a VRRP
        // VIP, says nothing of the ISP's fe80::1 on the WAN).
        let link_local = matches!(a, IpAddr::V6(v6) if v6.is_unicast_link_local());
        if !link_local && self.local_found.is_own_address(a) {
            return Err(GatewayRefused::Refused(format!(
                "{a} is an address of this router, not the next hop of {name}: give the \
                 ISP's router (the lease's `router`); nothing was changed"
            )));
        }
        if let Some(subnet) = self.local_found.subnet_edge_of(a) {
            return Err(GatewayRefused::Refused(format!(
                "{a} is the network or broadcast address of {subnet}, not a host: give the \
                 ISP's router (the lease's `router`); nothing was changed"
            )));
        }
        let key = (name.clone(), Family::of(&a));
        let before = self.hooked.insert(key.clone(), a);
        let mut lines = self.refresh_system().await;
        let (report, routed) = self.reconcile_routing_reported("gateway set").await;
        if lines.is_empty() && routed.is_empty() {
            lines.push(ReportLine::info(format!(
                "{name} {}: gateway {}: no change",
                Family::of(&a).name(),
                self.gateway_of(&name, Family::of(&a)).describe()
            )));
        }
        // Refused only when the link could take it and did not: without an address of the
        // family yet (a DHCP script that hands the router in before the lease's address is
        // applied) or with the link down, the route goes in at the next address or link event.
        let failed = self.refused_route(&report, a, &interface);
        let Some(failed) = failed else {
            lines.extend(self.keep_hooked());
            lines.extend(routed);
            return Ok(lines);
        };
        // The kernel refused the route (an address not on the WAN's link): back to the
        // gateway before, so the WAN's table stays as it was.
        match before {
            Some(b) => self.hooked.insert(key, b),
            None => self.hooked.remove(&key),
        };
        for line in self.refresh_system().await {
            line.log("");
        }
        for line in self.reconcile_routing("gateway refused").await {
            line.log("");
        }
        Err(GatewayRefused::Refused(format!(
            "{a} cannot be the gateway of {name}: {failed}; it stays {}; give an address on \
             {interface}'s link",
            self.gateway_of(&name, Family::of(&a)).describe()
        )))
    }

    /// Refuses `config` when a WAN's configured gateway cannot be its next hop, by the system
    /// as it is now ([`gateways::configured_faults`]). A system that cannot be read is not
    /// judged: the apply's own read says so.
    async fn check_configured_gateways(
        &self,
        config: &Config,
    ) -> Result<(), gateways::BadGateways> {
        let configured = config.wans.iter().any(|w| {
            Family::ALL
                .into_iter()
                .any(|f| matches!(w.next_hop(f), config::NextHop::Via(_)))
        });
        if !configured {
            return Ok(());
        }
        let tables: Vec<u32> = config.wans.iter().map(|w| w.table).collect();
        let Ok(system) = self.routing.system(&tables).await else {
            return Ok(());
        };
        let faults = gateways::configured_faults(&config.path, None, &config.wans, &system);
        if faults.is_empty() {
            return Ok(());
        }
        // Read only now, to name the lines.
        let text = std::fs::read_to_string(&config.path).ok();
        Err(gateways::BadGateways(gateways::configured_faults(
            &config.path,
            text.as_deref(),
            &config.wans,
            &system,
        )))
    }

    /// Writes the handed-in gateways for a restarted daemon ([`hooked_gateways`]). A failure
    /// is a line for whoever handed one in (and the log), as `steer set` says its journal's:
    /// the hook's "done" would otherwise hide that a restart loses the gateway.
    fn keep_hooked(&self) -> Option<ReportLine> {
        let path = hooked_gateways::path_for(&self.config.control.socket);
        let boot = crate::runtime_sets::journal::boot_id();
        let interfaces = lines::interfaces_of(&self.hooked, &self.config.wans);
        let e = hooked_gateways::store(&path, &boot, &self.hooked, &interfaces).err()?;
        Some(ReportLine::error(format!(
            "the handed-in gateways are in use but not saved: writing {} failed: {e}; a \
             restarted daemon would wait for the DHCP hooks to hand them in again: free room \
             there (or fix the error) and hand the gateway in again",
            path.display()
        )))
    }

    /// Netlink said addresses or routes changed: a DHCPv6 client may have rewritten an address
    /// steer deprecated ([`Self::deprecate_dead_prefixes`] looks again).
    pub fn addresses_may_have_changed(&mut self) {
        self.prefixes6.addresses_may_have_changed();
    }

    /// `[ipv6] mode = "source"`: deprecates on the LAN the prefix of every WAN that cannot
    /// carry IPv6 now, and restores the others ([`crate::wan_sources::deprecate`]). Cheap when
    /// nothing changed: the daemon calls it after every event.
    pub fn deprecate_dead_prefixes(&mut self) -> Vec<ReportLine> {
        let now = crate::dataplane::learned::boottime_secs();
        if self.config.ipv6_mode() != Some(config::Ipv6Mode::Source) {
            // Left source mode by a reload: what it deprecated comes back.
            return self.prefixes6.restore_all(&self.config.general.lan, now);
        }
        let (mut dead, mut live) = (Vec::new(), Vec::new());
        // A WAN the VRRP master holds (down on this backup) is neither: its prefix is the
        // master's to advertise.
        for w in self
            .config
            .wans
            .iter()
            .filter(|w| self.vrrp_probed(&w.name))
        {
            if let Some(p) = crate::wan_sources::prefix_of(&self.prefixes6.resolved, &w.name) {
                match self.usable(&w.name, Family::V6) {
                    true => live.push(p),
                    false => dead.push(p),
                }
            }
        }
        self.prefixes6
            .deprecate((dead, live), &self.config.general.lan, now)
    }

    /// Sets (`Some`) or clears (`None`: back to what the system says) the delegated prefix a
    /// DHCPv6 client hook hands in for `wan`, a WAN's name or interface (`steer wan NAME
    /// prefix6 PREFIX|auto`). A bad prefix or WAN is refused and changes nothing.
    pub async fn set_prefix6(
        &mut self,
        wan: &str,
        prefix: Option<String>,
    ) -> Result<Vec<ReportLine>, wan_prefixes::Prefix6Refused> {
        use wan_prefixes::Prefix6Refused;
        let prefix = prefix
            .as_deref()
            .map(crate::wan_sources::learn::parse_hooked)
            .transpose()?;
        let Some(w) = self.config.wan_or_interface(wan) else {
            return Err(unknown_wan(&self.config, wan).into());
        };
        if w.prefix6 != Some(config::Prefix6::Auto) {
            return Err(Prefix6Refused::NotAuto {
                wan: w.name.clone(),
                config: self.config.path.display().to_string(),
            });
        }
        let (name, interface) = (w.name.clone(), w.interface.clone());
        if let Some(p) = prefix
            && let Some(clash) = self.prefix6_clash(&name, p)
        {
            return Err(Prefix6Refused::Overlap {
                prefix: p,
                wan: name,
                clash,
            });
        }
        self.prefixes6.hook(&name, &interface, prefix);
        let mut lines = self.refresh_system().await;
        lines.extend(self.reconcile_routing("prefix6 set").await);
        Ok(lines)
    }

    /// What `prefix` for WAN `wan` would overlap: another WAN's prefix, configured or handed
    /// in, or the LAN's.
    fn prefix6_clash(&self, wan: &str, prefix: Prefix) -> Option<String> {
        use crate::wan_sources::learn::overlaps;
        let configured = self.config.wans.iter().filter_map(|w| match w.prefix6 {
            Some(config::Prefix6::Fixed(p)) if w.name != wan => Some((w.name.as_str(), p)),
            _ => None,
        });
        let mut others = configured.chain(self.prefixes6.hooked_elsewhere(wan));
        if let Some((other, q)) = others.find(|(_, q)| overlaps(prefix, *q)) {
            return Some(format!("WAN {other}'s prefix {q}"));
        }
        let lan = self.config.ipv6.as_ref().and_then(|i| i.lan_prefix);
        lan.filter(|l| overlaps(prefix, *l))
            .map(|l| format!("ipv6.lan_prefix {l}"))
    }

    /// The next hop of `family` of `wan` as last resolved.
    fn gateway_of(&self, wan: &str, family: Family) -> Resolved {
        self.gateways
            .get(&(wan.to_owned(), family))
            .cloned()
            .unwrap_or_else(|| Resolved {
                gateway: None,
                source: "not resolved yet".into(),
            })
    }

    /// The routing the configuration and the resolved gateways ask for, without the routes of
    /// master-only WANs VRRP holds down.
    fn desired_routing(&self) -> routing::Desired {
        let mut d = self.desired_routing_of(&self.config);
        self.vrrp_hold_routes(&mut d);
        d
    }

    /// The WANs' rules and routes under `config` (the running one, or one about to be).
    fn desired_routing_of(&self, config: &Config) -> routing::Desired {
        let prefixes = &self.prefixes6.resolved;
        let mut d = routing::desired(
            config,
            |w, f| self.gateway_of(w, f).gateway,
            |w| crate::wan_sources::prefix_of(prefixes, w),
        );
        d.rules
            .extend(routing::own_address_rules(&config.wans, |interface| {
                self.wan_addresses
                    .get(interface)
                    .cloned()
                    .unwrap_or_default()
            }));
        d
    }

    /// Before a reload's classifier stamps a mark no rule routes yet (a WAN given another mark
    /// or table, a new WAN): the new configuration's rules and routes go in first, so its
    /// flows do not fall through to the main table meanwhile.
    async fn route_new_marks_first(&self, config: &Config) -> Vec<ReportLine> {
        let routed = |w: &config::Wan| {
            self.config
                .wans
                .iter()
                .any(|o| o.mark == w.mark && o.table == w.table)
        };
        if config.wans.iter().all(routed) {
            return Vec::new();
        }
        let started = Instant::now();
        let mut desired = self.desired_routing_of(config);
        self.vrrp_hold_routes_for(config, &mut desired);
        let report = self.routing.add_missing(&desired).await;
        routing_lines("reload, before the new marks", &report, started)
    }

    /// The kernel-side log of the programs (aya-log).
    pub fn kernel_logger(&mut self) -> Result<EbpfLogger<&'static dyn log::Log>, DataplaneError> {
        self.dp.logger()
    }

    /// Stops steering: lets go of the dataplane, then removes everything ([`teardown`]).
    pub async fn stop(mut self) -> Result<Teardown, ControllerError> {
        // Hosts may prefer every WAN's prefix again: nothing steers them away any more.
        let now = crate::dataplane::learned::boottime_secs();
        for line in self.prefixes6.restore_all(&self.config.general.lan, now) {
            log::info!("{}", line.text);
        }
        let Controller { dp, config, .. } = self;
        // Dropping the dataplane closes this process's links and releases the pin-directory
        // lock, so the teardown can unpin (and so detach) them.
        drop(dp);
        let tables: Vec<u32> = config.wans.iter().map(|w| w.table).collect();
        Ok(teardown(&config.general.pin_dir, &tables, &config.control.socket).await?)
    }

    /// Every policy resolved with the WANs as they are now, from the cached compilation.
    fn live_table(&self) -> (crate::model::PolicyTable, BTreeMap<String, Outcomes>) {
        desired::policy_table(&self.config, &self.rules, &self.wan_slots, |w, f| {
            self.usable(w, f)
        })
    }

    /// Writes the local destinations as the last read of the system and the WANs' states make
    /// them ([`local`]); a line when they changed or the write failed.
    fn sync_local(&mut self, scope: LocalScope, configured: &[Prefix]) -> Option<ReportLine> {
        let want = self
            .local_found
            .wanted(scope, configured, |w, f| self.usable(w, f));
        let synced = self.dp.sync_local(&want);
        // The router's own subnets are never learned from DNS answers (rebinding protection).
        self.dns.set_own(self.dp.local());
        match synced {
            Ok((0, 0)) => None,
            Ok((added, removed)) => {
                let steered = self.local_found.steered(|w, f| self.usable(w, f));
                let steered = if steered.is_empty() {
                    String::new()
                } else {
                    let routes: Vec<String> =
                        steered.iter().map(|(p, w)| format!("{p} ({w})")).collect();
                    format!(
                        "; main-table routes steered while their WAN is down: {}",
                        routes.join(", ")
                    )
                };
                Some(ReportLine::info(format!(
                    "local destinations (never steered): {added} added or changed, {removed} \
                     removed, {} in all{steered}",
                    want.len()
                )))
            }
            Err(e) => Some(ReportLine::error(format!(
                "writing the local destinations failed: {e}; retried on the next routing change"
            ))),
        }
    }

    /// Whether policies may send `family` traffic to WAN `wan` now: it is up and can carry it.
    fn usable(&self, wan: &str, family: Family) -> bool {
        self.health.up(wan, family) && self.carries(wan, family)
    }

    /// Whether WAN `wan` can carry `family` as far as the system goes: its gateway is known
    /// and, for IPv6 under npt or source, its prefix.
    fn carries(&self, wan: &str, family: Family) -> bool {
        // Not through gateway_of: a failover asks this for every WAN before its flip.
        self.gateways
            .get(&(wan.to_owned(), family))
            .is_some_and(|r| r.gateway.is_some())
            && (family == Family::V4 || self.prefixes6.carries_ipv6(wan))
    }

    /// A WAN changed state: recompute every policy from the cached compilation (not the whole
    /// configuration), write the standby generation and flip. Flows that were on a WAN that
    /// went down lose their conntrack entries (by mark), so they start over on the WAN that
    /// carries them now.
    fn fail_over(&mut self, verdict: Verdict) -> FailoverReport {
        let Verdict {
            wan,
            families,
            transition,
        } = verdict;
        let started = Instant::now();
        let writes = self.dp.maps().writes();
        // A standby covering this failure goes live first: one word written.
        let precomputed = if transition.up {
            None
        } else {
            self.flip_precomputed(&wan, &families)
        };
        let switched = started.elapsed();
        let switch_writes = self.dp.maps().writes() - writes;
        self.standbys.fresh = false;
        let (table, outcomes) = self.live_table();
        let (flip, switch, precomputed) = match precomputed {
            Some(Ok(done)) if done.table == table => (Ok(done.flip), switched, Some(switch_writes)),
            other => {
                if let Some(e) = other {
                    log::error!(
                        "{wan}: the precomputed standby {}; writing the table the normal way",
                        match e {
                            Ok(_) => "differs from the table computed now (a bug)".to_owned(),
                            Err(e) => format!("could not be flipped to ({e})"),
                        }
                    );
                }
                let flip = self.dp.flip_policy(&table);
                (flip, started.elapsed(), None)
            }
        };
        let moved: Vec<(String, String, String)> = outcomes
            .iter()
            .filter_map(|(p, now)| {
                let before = self.outcomes.get(p)?;
                (before != now).then(|| (p.clone(), before.to_string(), now.to_string()))
            })
            .collect();
        let report = FailoverReport {
            wan,
            families,
            up: transition.up,
            waiting: transition.waiting,
            cause: transition.cause,
            moved,
            detection: transition.detection,
            path: transition.path,
            switch,
            precomputed: precomputed.is_some(),
            writes: precomputed.unwrap_or_else(|| self.dp.maps().writes() - writes),
            flip: flip.as_ref().ok().copied().flatten(),
            error: flip.err().map(|e| e.to_string()),
        };
        if !transition.up && !self.vrrp_keeps_connections(&report.wan) {
            self.flushes
                .extend(self.flush_of(&report.wan, &report.families));
        }
        self.policy_dirty = report.error.is_some();
        if !self.policy_dirty {
            self.set_outcomes(outcomes);
        }
        for f in &report.families {
            let (ups, downs) = self
                .transitions
                .entry((report.wan.clone(), *f))
                .or_default();
            *if report.up { ups } else { downs } += 1;
            if !report.up {
                *self
                    .detections
                    .entry((report.wan.clone(), *f, report.path.as_str()))
                    .or_default() += 1;
            }
        }
        self.failover_times.record(report.detection, report.switch);
        // After the flip, as a routing change: a gateway route of the WAN follows its state.
        let (scope, configured) = (
            self.config.general.local,
            self.config.general.local_prefixes.clone(),
        );
        if let Some(line) = self.sync_local(scope, &configured) {
            line.log(&format!("{}: ", report.wan));
        }
        self.last_failover = Some((Instant::now(), report.clone()));
        self.vrrp_reweigh();
        report
    }

    /// The conntrack flushes failovers asked for since the last call: the caller runs them off
    /// the event loop (the kernel walks its whole conntrack table to delete by mark).
    pub fn take_flushes(&mut self) -> Vec<Flush> {
        std::mem::take(&mut self.flushes)
    }

    /// Queues the flush of every WAN family that is down at start. Such a WAN has no
    /// transition to report, yet connections a previous daemon let through it (it was
    /// restarted while the line was cut) keep its mark and would follow its dead route for as
    /// long as they send.
    fn flush_dead_at_start(&mut self) {
        for wan in &self.config.wans {
            let down: Vec<Family> = Family::ALL
                .into_iter()
                .filter(|f| !self.usable(&wan.name, *f))
                .collect();
            if !down.is_empty() && !self.vrrp_keeps_connections(&wan.name) {
                self.flushes.extend(self.flush_of(&wan.name, &down));
            }
        }
    }

    /// Queues those of `flushes` not queued already: a WAN whose prefix changed has its IPv6
    /// flushed by [`Controller::retranslate`] too, and one flush says it.
    fn queue_new_flushes(&mut self, flushes: Vec<Flush>) {
        for f in flushes {
            let queued = self
                .flushes
                .iter()
                .any(|q| (q.mark, q.mask, &q.families) == (f.mark, f.mask, &f.families));
            if !queued {
                self.flushes.push(f);
            }
        }
    }

    /// The conntrack flush of `families` carrying `wan`'s mark.
    fn flush_of(&self, wan: &str, families: &[Family]) -> Option<Flush> {
        let w = self.config.wan(wan)?;
        Some(Flush {
            wan: wan.to_owned(),
            mark: w.mark,
            mask: self.config.general.mark_mask,
            families: families.to_vec(),
        })
    }

    /// Brings the kernel to `config`: maps (diff-synced, in the dataplane's order), LAN
    /// attachments, connection marking and routing. An error means the maps did not change
    /// and the controller still follows the previous configuration. Once the new policy
    /// generation is live the new configuration is the controller's, and what fails after
    /// that is reported.
    /// `compiled` are the steps when the caller compiled them off the event loop (a reload),
    /// with the WAN states of that moment: the policy table then follows the states of now
    /// before this returns.
    async fn apply(
        &mut self,
        mut config: Config,
        first: bool,
        compiled: Option<Precompiled>,
    ) -> Result<ApplyReport, ControllerError> {
        let started = Instant::now();
        // Gateways may change below even when the sync then fails: standbys are rebuilt.
        self.standbys.fresh = false;
        let old_rules = self.rules.clone();
        let old_wan_slots = self.wan_slots.clone();
        let old_sources = (self.config.ipv6.clone(), self.prefixes6.resolved.clone());
        let mut report = ApplyReport::default();
        // Before anything changes: a configured gateway the kernel would refuse (retried on
        // every event) or one that is the router itself refuses the reload, as `steer wan NAME
        // gateway` refuses it handed in. A start goes on with a warning (an error would end
        // it): the system at boot may not be what it becomes, and the other WANs must fail
        // over meanwhile.
        match self.check_configured_gateways(&config).await {
            Ok(()) => {}
            Err(bad) if first => report
                .notes
                .extend(bad.0.iter().map(|b| ReportLine::warning(b.at_start()))),
            Err(bad) => return Err(bad.into()),
        }
        // Likewise a WAN table another tool uses refuses a reload; at start the reconcile
        // leaves that table alone and warns (the other WANs must fail over meanwhile).
        if !first {
            self.routing
                .check_tables(&self.desired_routing_of(&config))
                .await?;
        }
        // Gateways and local destinations first: which WAN families are usable decides the
        // policy table. A family whose gateway changes here is written by the sync below.
        match self
            .observe(&config.wans, &config.general, config.ipv6.as_ref())
            .await
        {
            Ok(seen) => report.notes.extend(seen.lines),
            Err(line) => report.notes.push(line),
        }
        // What `steer check` notes (a master-only WAN two VRRP instances share, a rule that
        // matches everything) is said at every start and full reload; files others may change
        // are warned about. A reload's compile took the lists' prefixes out of `config`: its
        // advice was taken before.
        let (compiled, advice) = match compiled {
            Some(Precompiled { steps, advice }) => (Some(steps), advice),
            None => (None, config::advice(&config)),
        };
        report.notes.extend(
            advice
                .into_iter()
                .map(|note| ReportLine::info(format!("note: {note}"))),
        );
        report.notes.extend(
            config::writable_by_others(&config)
                .into_iter()
                .map(ReportLine::warning),
        );
        let precompiled = compiled.is_some();
        let steps = compiled.unwrap_or_else(|| {
            desired::steps(&mut config, &self.rule_ids(), &self.wan_slots, |w, f| {
                self.usable(w, f)
            })
            .into_iter()
            .map(Compiled::of)
            .collect()
        });
        // The programs were verified while the first state compiled; no map changes before
        // the kernel accepted them.
        self.dp.ready()?;
        if first {
            // Before anything changes: beside another steer's classifier this one would
            // classify for nothing (the other marks last).
            let foreign: Vec<String> = config
                .general
                .lan
                .iter()
                .filter_map(|iface| self.foreign_classifier(iface))
                .collect();
            if !foreign.is_empty() {
                return Err(ControllerError::ForeignClassifier(foreign));
            }
        }
        if !first {
            // Like the reconcile's after the apply: its failures are retried, not the reload's.
            report
                .after
                .extend(self.route_new_marks_first(&config).await);
        }
        let mut wanted = BTreeMap::new();
        let mut committed = false;
        let mut dropped = Vec::new();
        // The configuration itself goes to the step that applies it whole (steps hold parts).
        let mut whole = Some(config);
        for Compiled {
            mut step,
            mut counts,
            mut diff,
        } in steps
        {
            let rules = step.desired.rules.clone();
            let Some(step_config) = step.config.take().or_else(|| whole.take()) else {
                break;
            };
            let overlaid =
                self.overlay_runtime(&step_config, &mut step.desired, &mut counts, &mut diff);
            match self.dp.sync(&step.desired.contents, diff) {
                Ok(sync) => report.merge_sync(sync),
                Err(e) if e.is_live() => report.notes.push(ReportLine::error(e.to_string())),
                Err(e) if !committed => return Err(e.into()),
                Err(e) => {
                    // An earlier step is live: steer follows it, so the controller and the
                    // kernel agree, and the log says which sets did not make it.
                    report.notes.push(ReportLine::error(format!(
                        "the step that adds the sets {} was refused: {e}. The steps before it \
                         are live: steer runs the new configuration without those sets (they \
                         had to wait for the removed sets' ids); run `steer reload` to add them",
                        missing_sets(&step_config, &self.config)
                    )));
                    break;
                }
            }
            wanted = rules;
            self.commit(step.desired, step_config, counts);
            committed = true;
            dropped = overlaid;
        }
        report.notes.extend(self.forget_dropped(dropped));
        if precompiled && committed {
            report.notes.extend(self.follow_wan_states());
        }
        report.per_set = per_set(&report.sync, &wanted, &old_rules);
        if first {
            // Only now: a start refused above leaves an earlier daemon's program pins alone.
            self.dp.pin_programs()?;
        }
        self.reconcile_lan(first, &mut report);
        if first && !report.failures().is_empty() {
            return Err(ControllerError::Start(report.failures()));
        }
        // After the commit: the WAN slots and WANs are the new configuration's.
        report.notes.extend(self.reset_reused_slots(&old_wan_slots));
        report.notes.extend(self.watch_wans());
        report.notes.extend(self.rp_filter_warnings());
        let dns_lines = self.configure_dns();
        report.notes.extend(dns_lines);
        report.took = started.elapsed();
        report.after.extend(self.ensure_conntrack_marking().await);
        if !first {
            // The table went in above, whatever changed.
            let _ = self.retranslate(old_sources);
        }
        let why = if first { "start" } else { "reload" };
        let (routing, routed) = self.reconcile_routing_reported(why).await;
        report.after.extend(routed);
        if first {
            report
                .after
                .extend(self.drop_stale_hand_ins(&routing).await);
        }
        self.last_apply = Some((Instant::now(), report.clone()));
        Ok(report)
    }

    /// Drops the gateways kept from the daemon before whose routes the kernel refused
    /// (in `routed`): the WAN was renumbered meanwhile, and the DHCP hook hands in the new one
    /// at the next renewal; until then its family waits rather than keep a route that is not
    /// there.
    /// Why IPv4 gateway `gateway` handed in before a restart is stale: its interface holds no
    /// IPv4 address now (the lease expired while no daemon ran, and the hook's `auto4` found
    /// none to tell). IPv6 WANs often hold only a link-local address: not judged.
    fn lease_gone(&self, gateway: IpAddr, interface: &str) -> Option<String> {
        let addressed = self
            .wan_addresses
            .get(interface)
            .is_some_and(|addrs| addrs.iter().any(IpAddr::is_ipv4));
        (gateway.is_ipv4() && !addressed)
            .then(|| format!("{interface} has no IPv4 address: its lease is gone"))
    }

    async fn drop_stale_hand_ins(&mut self, routed: &ReconcileReport) -> Vec<ReportLine> {
        let stale: Vec<((String, Family), IpAddr, String)> = self
            .hooked
            .iter()
            .filter_map(|(key, a)| {
                let wan = self.config.wan(&key.0)?;
                let off_link = |why| {
                    format!(
                        "is not on its link any more ({why}): dropped, the family waits for the \
                         DHCP hook"
                    )
                };
                let why = self
                    .refused_route(routed, *a, &wan.interface)
                    .or_else(|| self.lease_gone(*a, &wan.interface))
                    .map(off_link)
                    .or_else(|| self.superseded(*a, &wan.interface))?;
                Some((key.clone(), *a, why))
            })
            .collect();
        if stale.is_empty() {
            return Vec::new();
        }
        let mut lines: Vec<ReportLine> = stale
            .iter()
            .map(|((wan, _), a, why)| {
                self.hooked.remove(&(wan.clone(), Family::of(a)));
                ReportLine::warning(format!(
                    "{wan}: the gateway {a} handed in to the daemon before {why}"
                ))
            })
            .collect();
        lines.extend(self.keep_hooked());
        lines.extend(self.refresh_system().await);
        lines.extend(self.reconcile_routing("stale gateways dropped").await);
        lines
    }

    /// Why a gateway handed in before a restart gives way to the main table's default route
    /// through `interface`: that route goes via another router of the family, so the DHCP
    /// client (or PPP, or a router advertisement) moved on while no daemon ran and its hook
    /// could not tell. A main table without a default route through the WAN (a client that
    /// installs none, hence the hook) keeps the hand-in.
    fn superseded(&self, gateway: IpAddr, interface: &str) -> Option<String> {
        let now = self
            .main_defaults
            .get(&(interface.to_owned(), Family::of(&gateway)))?;
        (*now != gateway).then(|| {
            format!(
                "is not the main table's any more: its default route through {interface} goes \
                 via {now} now (the lease may have moved while no daemon ran): dropped, that \
                 route is followed"
            )
        })
    }

    /// Why the kernel refused the default route through `gateway` on `interface` in
    /// `report`, when the link could take a route and did not take this one (the gateway is
    /// not on its link): not when it is down or has no address of the family yet (it goes in
    /// at the next event).
    fn refused_route(
        &self,
        report: &ReconcileReport,
        gateway: IpAddr,
        interface: &str,
    ) -> Option<String> {
        let addressed = self
            .wan_addresses
            .get(interface)
            .is_some_and(|addrs| addrs.iter().any(|x| Family::of(x) == Family::of(&gateway)));
        report
            .refused_routes
            .iter()
            .find(|r| {
                r.spec.gateway == Some(gateway)
                    && r.spec.interface == interface
                    && r.errno.is_some_and(|e| e != libc::ENETDOWN)
            })
            .filter(|_| addressed)
            .map(|r| format!("failed: {}: {}", r.spec, r.why))
    }

    fn commit(&mut self, want: Desired, config: Config, counts: HashMap<u32, usize>) {
        self.standbys.fresh = false;
        self.rules = want.rules;
        self.wan_slots = want.wan_slots;
        // A reload may change a balanced policy's sets or weights with its WANs: every
        // measurement starts over.
        self.share_marks.clear();
        self.set_outcomes(want.outcomes);
        // Its plain sets' lists were taken over by the compile (`desired::steps`).
        self.config = config;
        self.policy_dirty = false;
        self.prefix_counts = counts;
    }

    /// Set name -> rule id of what the kernel holds.
    fn rule_ids(&self) -> NameIds {
        desired::rule_ids(&self.rules)
    }

    /// Queues the deletion of the IPv6 connections of each WAN whose source translation changed
    /// since `before` (a reload, a renumbered prefix: [`crate::wan_sources::retranslated`]);
    /// whether there was one.
    fn retranslate(
        &mut self,
        (ipv6, prefixes): (Option<config::Ipv6>, crate::wan_sources::Prefixes),
    ) -> bool {
        let now = (self.config.ipv6.as_ref(), &self.prefixes6.resolved);
        let changed = crate::wan_sources::retranslated((ipv6.as_ref(), &prefixes), now);
        for wan in &changed {
            log::info!(
                "{wan}: its IPv6 source translation changed; its IPv6 connections start over"
            );
            let flush = self.flush_of(wan, &[Family::V6]);
            self.flushes.extend(flush);
        }
        !changed.is_empty()
    }

    /// Whether br_netfilter passes the packets of a LAN bridge through netfilter before the
    /// classifier ([`conntrack::bridge_netfilter`] or the bridge's own option).
    async fn bridged_lan(&self) -> bool {
        let sysctl_on = conntrack::bridge_netfilter();
        let lan = &self.config.general.lan;
        match self.routing.any_bridge_netfiltered(lan, sysctl_on).await {
            Some(bridged) => bridged,
            // The links could not be read: what was found last stands (a flip would drop the
            // forward chain and the kept marks until the next look).
            None => self
                .marking_bridged
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Installs (or replaces) steer's nftables table for the configured WANs and LANs.
    async fn ensure_conntrack_marking(&self) -> Option<ReportLine> {
        self.install_conntrack_marking(self.bridged_lan().await)
    }

    /// [`Self::ensure_conntrack_marking`] for a br_netfilter state already read.
    fn install_conntrack_marking(&self, bridged: bool) -> Option<ReportLine> {
        let wans: Vec<conntrack::MarkedWan> = self
            .config
            .wans
            .iter()
            .map(|w| conntrack::MarkedWan {
                interface: w.interface.clone(),
                mark: w.mark,
            })
            .collect();
        self.install_marking(&wans, bridged)
    }

    /// Attaches to every configured LAN interface (at start: adopting pinned links; later: new
    /// interfaces, and XDP switched on or off) and detaches from those no longer listed. An
    /// interface that fails is reported and the others are still done.
    /// Why another steer's classifier on `iface` is a problem, if there is one.
    fn foreign_classifier(&self, iface: &str) -> Option<String> {
        let foreign = self.dp.foreign_classifiers(iface);
        (!foreign.is_empty()).then(|| {
            format!(
                "{iface}: another steer classifier is attached (program {}): a steer started \
                 with another pin_dir, or under `ip netns exec`, left it, and it marks packets \
                 by its own state, whatever this daemon decides; remove it with `steer stop \
                 --pin-dir DIR` for the pin directory that holds links/tc-{iface} (`ls \
                 /sys/fs/bpf/*/links`)",
                foreign
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    fn reconcile_lan(&mut self, first: bool, report: &mut ApplyReport) {
        let current: Vec<String> = self.dp.attached().map(|(i, _)| i.to_owned()).collect();
        let general = &self.config.general;
        for iface in &general.lan {
            let r = match self.dp.attach(iface, general.xdp) {
                Ok(r) => r,
                Err(DataplaneError::NoInterface(_)) => {
                    // A bridge or VLAN that appears after steer starts (boot order): attached
                    // the moment its link event arrives.
                    report.notes.push(ReportLine::warning(format!(
                        "{iface}: LAN interface does not exist yet: the classifier attaches when it appears"
                    )));
                    continue;
                }
                Err(e) => {
                    report.notes.push(ReportLine::error(format!(
                        "{iface}: attaching the classifier failed: {e}; traffic entering {iface} \
                         is not classified until that is fixed (steer retries when the interface \
                         changes)"
                    )));
                    continue;
                }
            };
            // A link someone else had detached, now attached again, is `reattached_lines`'.
            if let Some(mode) = r.xdp.filter(|_| r.xdp_attached && !r.xdp_was_detached) {
                report.xdp_attached.push((iface.clone(), mode));
            }
            if r.xdp_detached {
                report.xdp_detached.push(iface.clone());
            }
            report.notes.extend(link_check::reattached_lines(iface, &r));
            if let Some(e) = r.xdp_error.filter(|_| !r.xdp_was_detached) {
                report.notes.push(ReportLine::warning(format!(
                    "{iface}: XDP could not be attached ({e}); TC classifies alone"
                )));
            }
            if r.tc_attached || first {
                report.attached.push(iface.clone());
            }
            // At start apply() has refused already if there was one.
            if !first {
                report
                    .notes
                    .extend(self.foreign_classifier(iface).map(ReportLine::error));
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

    /// Each LAN interface of the configuration, in its order, with its classifier, or why
    /// it classifies nothing (or classifies in vain); then any still attached but not
    /// configured (a detach that failed).
    fn lan_status(&self) -> Vec<LanStatus> {
        let attached: BTreeMap<&str, Option<String>> = self
            .dp
            .attached()
            .map(|(i, x)| (i, x.map(|m| m.to_string())))
            .collect();
        let lan = &self.config.general.lan;
        let configured = lan.iter().map(|i| {
            // What the kernel holds, not what this process made: someone else may have
            // detached a link since ([`link_check`]).
            let detached = self.dp.detached_hooks(i);
            let problem = match attached.get(i.as_str()) {
                None if crate::dataplane::ifindex(i).is_err() => Some(
                    "not classified: no such interface; the classifier attaches when it appears"
                        .to_owned(),
                ),
                None => Some(
                    "not classified: attaching failed (see the log); steer retries when the \
                     interface changes"
                        .to_owned(),
                ),
                Some(_) => link_check::detached_problem(&detached).or_else(|| {
                    self.lan_ports
                        .iter()
                        .find(|p| &p.port == i)
                        .map(|p| p.problem())
                }),
            };
            let xdp = attached
                .get(i.as_str())
                .cloned()
                .flatten()
                .filter(|_| !detached.iter().any(|h| matches!(h, LanHook::Xdp(_))));
            LanStatus {
                interface: i.clone(),
                xdp,
                problem,
            }
        });
        let stray = attached
            .iter()
            .filter(|(i, _)| !lan.iter().any(|l| l == *i))
            .map(|(i, x)| LanStatus {
                interface: (*i).to_owned(),
                xdp: x.clone(),
                problem: Some("not in general.lan, still attached".to_owned()),
            });
        configured.chain(stray).collect()
    }

    /// The status document (`steer status`).
    pub async fn status(&self) -> Status {
        let maps = self.dp.maps();
        let per_rule = &self.prefix_counts;
        // The live condition bank numbers the sets with conditions as the classifier tries them.
        let bank = maps.ordered().live().ok();
        let order_of = |rule: u32| {
            let bank = bank.as_ref()?;
            let used = bank.used[0] | bank.used[1];
            (0..steer_common::cond::MAX_RULES as usize)
                .find(|i| used >> i & 1 == 1 && u32::from(bank.rule[*i]) == rule)
                .map(|i| i + 1)
        };
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
                    prefixes: match r.kind {
                        // An ordered rule's prefixes are in the condition maps, as configured.
                        crate::model::RuleKind::Ordered(_) => self
                            .config
                            .sets
                            .iter()
                            .find(|s| s.name == r.name)
                            .map_or(0, |s| s.prefix_count()),
                        _ => per_rule.get(&r.id).copied().unwrap_or(0),
                    },
                    runtime: self.runtime_len(&r.name),
                    packets: counter.packets,
                    bytes: counter.bytes,
                    order: matches!(r.kind, crate::model::RuleKind::Ordered(_))
                        .then(|| order_of(r.id))
                        .flatten(),
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
                let tracker = self.health.deciding(&w.name, Family::V4);
                let state_of = |f: Family| {
                    WanState::of_family(self.carries(&w.name, f), self.usable(&w.name, f))
                };
                WanStatus {
                    name: w.name.clone(),
                    interface: w.interface.clone(),
                    mark: w.mark,
                    table: w.table,
                    state: WanState::of(&Family::ALL.map(state_of)),
                    detail: tracker.map(|t| t.describe(now)).unwrap_or_default(),
                    families: Family::ALL
                        .iter()
                        .map(|f| FamilyStatus {
                            family: f.name().to_owned(),
                            state: state_of(*f),
                            detail: self.family_detail(&w.name, *f, now),
                            gateway: self.gateway_of(&w.name, *f).describe(),
                            went_up: self.transitions_of(&w.name, *f).0,
                            went_down: self.transitions_of(&w.name, *f).1,
                            detected_by: self.detected_by(&w.name, *f),
                            // A held-down master-only WAN is not probed: no pace to show
                            // (its state says it is held down).
                            probes: self
                                .health
                                .probing(&w.name, *f, now)
                                .filter(|_| self.vrrp_probed(&w.name))
                                .map(|p| {
                                    if self.unprobed(&w.name, *f) {
                                        p.waiting_for_gateway()
                                    } else {
                                        p
                                    }
                                })
                                .map(|p| crate::status::ProbeStatus {
                                    pace: p.pace_name().to_owned(),
                                    interval_ms: p.interval.as_millis() as u64,
                                    late_after_ms: p.late_after.as_millis() as u64,
                                    passive_window_ms: p.passive_window.as_millis() as u64,
                                    suspect: p.suspect,
                                    silent_ms: p.silent_for.map(|d| d.as_millis() as u64),
                                    rounds: p.rounds,
                                    packets_out: p.wire.packets_out,
                                    packets_in: p.wire.packets_in,
                                    bytes_out: p.wire.bytes_out,
                                    bytes_in: p.wire.bytes_in,
                                    probes_per_day: p.probes_per_day,
                                    bytes_per_day: p.bytes_per_day,
                                }),
                            targets: self
                                .health
                                .targets(&w.name, *f, now)
                                .into_iter()
                                .map(|t| crate::status::TargetStatus {
                                    target: t.target,
                                    sent: t.sent,
                                    answered: t.answered,
                                    silent_s: t.silent_for.map(|d| d.as_secs()),
                                })
                                .collect(),
                        })
                        .collect(),
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
            lan: self.lan_status(),
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
            set_memory: self.set_memory(),
            routing: self.routing.status(&self.desired_routing()).await,
            last_failover: self.last_failover.as_ref().map(|(at, r)| LastFailover {
                seconds_ago: at.elapsed().as_secs(),
                line: r.to_string(),
            }),
            last_apply: self.last_apply.as_ref().map(|(at, r)| LastApply {
                seconds_ago: at.elapsed().as_secs(),
                changes: r.lines(),
            }),
            dns: self.dns_status(),
            vrrp: self.vrrp_status(),
            ipv6: self.ipv6_status().await,
            failover_times: self.failover_times.clone(),
            standbys: self.standbys.describe(),
            standbys_missing: self.standbys.uncovered.clone(),
            connection_marking: Some(self.marking_status()),
        }
    }

    /// `[ipv6]` as it runs, with the guards' counters read from the kernel.
    async fn ipv6_status(&self) -> Option<crate::status::Ipv6Status> {
        let ipv6 = self.config.ipv6.as_ref()?;
        let counters = tokio::task::spawn_blocking(crate::wan_sources::foreign_drops)
            .await
            .unwrap_or_else(|e| {
                Err(crate::wan_sources::ToolError::Spawn {
                    tool: "nft",
                    source: std::io::Error::other(e),
                })
            });
        Some(crate::wan_sources::status(
            ipv6,
            &self.config.wans,
            &self.prefixes6.resolved,
            self.prefixes6.deprecated(),
            counters,
        ))
    }

    /// The prefix maps' kernel memory now.
    fn set_memory(&self) -> crate::status::SetMemory {
        let limit = crate::memory_limit::MemoryLimit::of_this_process();
        crate::status::SetMemory {
            bytes: self.dp.set_memory(),
            max_memory: self.config.general.capacity.memory,
            limit: limit.as_ref().map(|l| l.bytes),
            limit_file: limit.map(|l| l.file.display().to_string()),
        }
    }

    /// How often `family` of `wan` went down, by what found it.
    fn detected_by(&self, wan: &str, family: Family) -> BTreeMap<String, u64> {
        self.detections
            .range((wan.to_owned(), family, "")..)
            .take_while(|((w, f, _), _)| w == wan && *f == family)
            .map(|((_, _, path), n)| ((*path).to_owned(), *n))
            .collect()
    }

    /// How often `family` of `wan` went (up, down).
    fn transitions_of(&self, wan: &str, family: Family) -> (u64, u64) {
        self.transitions
            .get(&(wan.to_owned(), family))
            .copied()
            .unwrap_or_default()
    }

    /// Why `family` of WAN `wan` is in its state.
    fn family_detail(&self, wan: &str, family: Family, now: Instant) -> String {
        let health = match self.health.deciding(wan, family) {
            Some(t) if self.health.tracks(wan, family) => t.describe(now),
            Some(t) => format!(
                "follows {} (no {} probe targets): {}",
                family.other().name(),
                family.name(),
                t.describe(now)
            ),
            None => "not tracked".into(),
        };
        if self.carries(wan, family) {
            return health;
        }
        // Waiting: what it waits for comes first (the gateway line under it says which
        // gateway); the line's health, which decides nothing until then, after it ("waiting
        // ... up for 97 s" read as a contradiction).
        let waits_for = if self.gateway_of(wan, family).gateway.is_none() {
            "for a gateway".to_owned()
        } else {
            format!("for its IPv6 prefix ({})", self.prefixes6.describe(wan))
        };
        if self.unprobed(wan, family) {
            // Its probes have no way out: a health line would be from before the wait.
            return format!(
                "{waits_for}; {}",
                crate::health::unprobed_while_waiting(self.health.deciding(wan, family))
            );
        }
        format!("{waits_for}; the line's health meanwhile: {health}")
    }

    /// A balanced policy's target and measured share per WAN (empty for any other outcome),
    /// measured since its WANs last changed.
    fn shares(&self, policy: &str, outcomes: &Outcomes) -> Vec<ShareStatus> {
        let outcome = outcomes.family(Family::V4);
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
        let mark = self.share_marks.get(policy);
        let measured: Vec<u64> = members
            .iter()
            .map(|(w, _)| {
                let before = mark.and_then(|m| m.packets.get(*w)).copied().unwrap_or(0);
                self.policy_packets(policy, w).saturating_sub(before)
            })
            .collect();
        let total: u64 = measured.iter().sum();
        let since_seconds = mark.map_or(self.started, |m| m.at).elapsed().as_secs();
        // The counters are per rule and WAN, not per family: a policy whose IPv6 goes to some
        // of the same WANs another way counts those packets in too, and says so (IPv6 to a
        // last resort carries no member's mark and is not counted).
        let v6 = outcomes.family(Family::V6);
        let both_families = v6 != outcome
            && match v6 {
                Outcome::Wan(w) => members.iter().any(|(m, _)| m == w),
                Outcome::Balanced(ws) => ws.iter().any(|w| members.iter().any(|(m, _)| m == w)),
                Outcome::LastResort(_) => false,
            };
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
                measured_packets: packets,
                since_seconds,
                with_other_family: both_families,
            })
            .collect()
    }

    pub fn pin_dir(&self) -> &Path {
        &self.config.general.pin_dir
    }

    /// Whether the kernel's rules and WAN tables are what the configuration asks for (read
    /// back, not assumed from the last reconcile's report).
    pub async fn routing_in_sync(&self) -> bool {
        self.routing.status(&self.desired_routing()).await.in_sync
    }

    /// One line on where steering stands, for the service manager's status (`systemctl
    /// status`): the LAN interfaces classified, and the WANs that carry traffic now.
    pub fn summary(&self) -> String {
        let lan: Vec<&str> = self.dp.attached().map(|(iface, _)| iface).collect();
        let (up, not_up): (Vec<&str>, Vec<&str>) = self
            .config
            .wans
            .iter()
            .map(|w| w.name.as_str())
            .partition(|w| Family::ALL.into_iter().any(|f| self.usable(w, f)));
        // A WAN with no gateway of any family yet (no lease, no PPP session) is waiting, not
        // down: it says nothing of the line.
        let (waiting, down): (Vec<&str>, Vec<&str>) = not_up
            .into_iter()
            .partition(|w| Family::ALL.into_iter().all(|f| self.waiting(w, f)));
        let list = |names: &[&str]| {
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        };
        // Up, but its last probe round failed (a line found dead at start counts down_after
        // rounds before it goes down): not "up" without a word.
        let (failing, up): (Vec<&str>, Vec<&str>) = up.into_iter().partition(|w| {
            Family::ALL
                .into_iter()
                .filter(|f| self.usable(w, *f))
                .all(|f| {
                    self.health.deciding(w, f).is_some_and(|t| {
                        let probed = Family::ALL.into_iter().any(|g| t.track().probes(g));
                        probed && !t.passed_last()
                    })
                })
        });
        let waiting = if waiting.is_empty() {
            String::new()
        } else {
            format!("; waiting for a gateway: {}", waiting.join(", "))
        };
        let failing = if failing.is_empty() {
            String::new()
        } else {
            format!("; up, but failing probes: {}", failing.join(", "))
        };
        format!(
            "classifying {}; WANs up: {}{failing}; down: {}{waiting}",
            list(&lan),
            list(&up),
            list(&down)
        )
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

/// The error for a WAN name (or interface) `wan` the configuration does not have.
/// The gateways hooks handed in to the daemon before this one, in this boot
/// ([`hooked_gateways`]), each following its line to the WANs of `wans` ([`lines`]); what to
/// say of those renamed or dropped, and whether there are any (the file is written again).
fn kept_gateways(socket: &std::path::Path, wans: &[config::Wan]) -> (Hooked, Vec<ReportLine>) {
    let path = hooked_gateways::path_for(socket);
    let (kept, interfaces) = hooked_gateways::load(&path, &crate::runtime_sets::journal::boot_id());
    if !kept.is_empty() {
        log::info!(
            "{}: {} gateway(s) handed in by DHCP hooks to the daemon before",
            path.display(),
            kept.len()
        );
    }
    let old: Vec<lines::Line> = interfaces.into_iter().collect();
    let was_on = |wan: &str| {
        old.iter()
            .find(|(name, _)| name == wan)
            .map(|(_, interface)| interface.clone())
    };
    lines::carry_gateways(&kept, was_on, &old, &lines::lines_of(wans))
}

/// A balanced policy's packet counters per WAN when its WANs last changed.
#[derive(Debug)]
struct ShareMark {
    outcomes: Outcomes,
    at: Instant,
    packets: BTreeMap<String, u64>,
}

/// Why `steer wan NAME gateway ADDR` changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum GatewayRefused {
    #[error(transparent)]
    Wan(#[from] UnknownWan),
    #[error("{0}")]
    Refused(String),
}

fn unknown_wan(config: &Config, wan: &str) -> UnknownWan {
    UnknownWan {
        name: wan.to_owned(),
        configured: config
            .wans
            .iter()
            .map(|w| format!("{} (on {})", w.name, w.interface))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// What reading the system changed.
#[derive(Default)]
struct Observed {
    lines: Vec<ReportLine>,
    /// WAN families whose gateway (or IPv6 prefix) appeared (`true`) or went (`false`), and
    /// the cause in words.
    availability: Vec<(String, Family, bool, String)>,
}

/// The lines a routing reconcile gives: drift repaired (warnings), items that could not be
/// put right (errors), and how long it took when anything changed.
fn routing_lines(why: &str, report: &ReconcileReport, started: Instant) -> Vec<ReportLine> {
    let mut lines: Vec<ReportLine> = report
        .changes
        .iter()
        .map(|c| {
            let line = format!("routing ({why}): {c}");
            if c.kind.is_news() {
                ReportLine::info(line)
            } else {
                ReportLine::warning(line)
            }
        })
        .chain(
            report
                .failures
                .iter()
                .map(|l| ReportLine::error(format!("routing ({why}): {l}"))),
        )
        .chain(
            report
                .warnings
                .iter()
                .map(|l| ReportLine::warning(format!("routing ({why}): {l}"))),
        )
        .chain(
            report
                .cleared
                .iter()
                .map(|l| ReportLine::info(format!("routing ({why}): {l}"))),
        )
        // Not an error: its WAN's link is down (said there), and it goes in when it comes up.
        .chain(
            report
                .waiting
                .iter()
                .map(|l| ReportLine::info(format!("routing ({why}): {l}"))),
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
/// A copy of `config` whose sets hold no prefixes.
fn without_prefixes(config: &mut Config) -> Config {
    let prefixes: Vec<_> = config
        .sets
        .iter_mut()
        .map(|s| {
            (
                std::mem::take(&mut s.prefixes),
                std::mem::take(&mut s.listed),
            )
        })
        .collect();
    let copy = config.clone();
    for (set, (inline, listed)) in config.sets.iter_mut().zip(prefixes) {
        set.prefixes = inline;
        set.listed = listed;
    }
    copy
}

/// The sets of `wanted` that `running` does not have, for messages.
fn missing_sets(wanted: &Config, running: &Config) -> String {
    wanted
        .sets
        .iter()
        .filter(|s| !running.sets.iter().any(|r| r.name == s.name))
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Severity;

    #[test]
    fn what_steer_changes_of_its_own_is_news_and_what_it_repairs_is_a_warning() {
        use crate::routing::{Change, ChangeKind::*};
        let change = |kind, line: &str| Change::new(kind, line.into());
        let report = ReconcileReport {
            changes: vec![
                change(RemovedStale, "removed stale: rule 1090 unreachable (v4)"),
                change(
                    Removed,
                    "removed: rule 900 lookup 101 (v4) (no longer wanted)",
                ),
                change(Created, "created: rule 1100 lookup 101 (v4)"),
                change(Repaired, "repaired: rule 1100 lookup 101 (v4) was missing"),
                change(Changed, "changed: route default via 192.0.2.1 to ..."),
                change(Replaced, "replaced: route default via 192.0.2.9 with ..."),
                change(Added, "added: route default via 192.0.2.1"),
            ],
            ..ReconcileReport::default()
        };
        let severities: Vec<Severity> = routing_lines("netlink event", &report, Instant::now())
            .iter()
            .map(|l| l.severity)
            .collect();
        use Severity::{Info, Warning};
        assert_eq!(
            severities,
            [Warning, Info, Info, Warning, Info, Warning, Info, Info]
        );
    }
}
