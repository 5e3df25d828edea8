//! The controller: owns the running configuration and the dataplane, computes the desired
//! kernel state from them and reconciles. Event handlers (reload, control requests) only call
//! in here; nothing else writes kernel state.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::json;
use steer_common::{
    DEFAULT_RULE, MAX_WANS, Settings, WanInfo, name_from_bytes, name_to_bytes, rule_kind,
    settings_flags,
};

use crate::{
    config::{self, Config, ConfigErrors},
    conntrack,
    dataplane::{
        Adopted, Capacities, Dataplane, DataplaneError, XdpAttachMode,
        sync::{self, PolicyTable, PrefixSets, SyncError, SyncReport},
    },
    health::{Override, RoundSummary, Tracker, Transition},
    policy::{self, Outcome, WanView},
    sets::{self, Compiled},
};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("interface {iface}: {source}")]
    Attach {
        iface: String,
        #[source]
        source: DataplaneError,
    },
}

/// What one apply (start or reload) changed, for the log and for `steer reload`.
#[derive(Clone, Debug, Default)]
pub struct ApplyReport {
    pub sync: SyncReport,
    /// Set name -> (added, changed, removed).
    pub per_set: BTreeMap<String, (usize, usize, usize)>,
    pub attached: Vec<String>,
    pub detached: Vec<String>,
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
    /// From the first sign of the fault to the decision.
    pub detection: Duration,
    /// From the decision to the flipped generation word.
    pub switch: Duration,
    pub flip: Option<(u32, u32)>,
    /// Writing the new policy table failed: the old one stays live.
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
        write!(
            f,
            "; detected in {:.1} ms, switched in {:.2} ms",
            self.detection.as_secs_f64() * 1e3,
            self.switch.as_secs_f64() * 1e3
        )?;
        if let Some((from, to)) = self.flip {
            write!(f, " (generation {from} -> {to})")?;
        }
        if let Some(flushed) = &self.flushed {
            write!(f, "; {flushed}")?;
        }
        if let Some(e) = &self.error {
            write!(
                f,
                "; FAILED to write the new policy table, the old one stays live: {e}"
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
    compiled: Compiled,
    rule_ids: BTreeMap<String, u32>,
    wan_slots: BTreeMap<String, u32>,
    outcomes: BTreeMap<String, Outcome>,
    adopted: Adopted,
    started: Instant,
    last_apply: Option<(Instant, ApplyReport)>,
    /// Health of every configured WAN, by name.
    health: BTreeMap<String, Tracker>,
    last_failover: Option<(Instant, FailoverReport)>,
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
        let (rule_ids, wan_slots) = previous_ids(&dp)?;
        let mut ctl = Controller {
            compiled: Compiled {
                rules: BTreeMap::new(),
                prefixes: PrefixSets::default(),
            },
            config: config.clone(),
            dp,
            prefixes,
            rule_ids,
            wan_slots,
            outcomes: BTreeMap::new(),
            adopted,
            started: Instant::now(),
            last_apply: None,
            health: BTreeMap::new(),
            last_failover: None,
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

    /// Re-reads the configuration file. An invalid file changes nothing: the running
    /// configuration stays and the errors are returned.
    pub fn reload(&mut self) -> Result<ApplyReport, ControllerError> {
        let config = config::load(&self.config.path)?;
        // New WANs start as if they had carrier; the daemon feeds their real link state next.
        self.track_wans(&config, &|_: &str| true);
        self.apply(config, false)
    }

    /// Keeps a tracker per configured WAN: existing ones keep their state (with the new track
    /// settings), new ones start from `carrier`, removed ones go.
    fn track_wans(&mut self, config: &Config, carrier: &dyn Fn(&str) -> bool) {
        let now = Instant::now();
        self.health.retain(|name, _| config.wan(name).is_some());
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

    /// A WAN changed state: recompute every policy from the cached compilation, write the
    /// standby generation and flip. Flows that were on a WAN that went down lose their
    /// conntrack entries (by mark), so they start over on the WAN that carries them now.
    fn fail_over(&mut self, wan: &str, transition: Transition) -> Option<FailoverReport> {
        let started = Instant::now();
        let (table, outcomes) = policy::table(&self.config, &self.compiled.rules, |name| {
            let w = self.config.wan(name)?;
            let slot = *self.wan_slots.get(name)?;
            Some(WanView {
                slot,
                mark: w.mark,
                up: self.health.get(name).is_none_or(Tracker::up),
            })
        });
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
            report.flushed = Some(
                match conntrack::flush_mark(w.mark, self.config.general.mark_mask) {
                    Ok(()) => format!(
                        "conntrack entries with mark {:#x}/{:#x} flushed",
                        w.mark, self.config.general.mark_mask
                    ),
                    Err(e) => format!("conntrack flush failed: {e}"),
                },
            );
        }
        if report.error.is_none() {
            self.outcomes = outcomes;
        }
        self.last_failover = Some((Instant::now(), report.clone()));
        Some(report)
    }

    /// Brings the kernel to `config`: prefix maps and policy table (diff-synced), WAN names,
    /// settings, then LAN attachments.
    fn apply(&mut self, config: Config, first: bool) -> Result<ApplyReport, ControllerError> {
        let started = Instant::now();
        let Desired {
            compiled,
            wan_slots,
            table,
            outcomes,
        } = desired(&config, &self.rule_ids, &self.wan_slots, |w| {
            self.health.get(w).is_none_or(Tracker::up)
        });
        self.dp.capacities = capacities(&config.general.capacity);
        let sync = sync::sync(
            &mut self.dp.maps,
            &mut self.prefixes,
            &compiled.prefixes,
            &table,
            &self.dp.capacities,
        )?;
        self.write_wan_info(&config, &wan_slots)?;
        self.write_settings(&config)?;
        let (attached, detached) = self.reconcile_lan(&config, first)?;
        let mut report = ApplyReport {
            sync,
            attached,
            detached,
            ..Default::default()
        };
        report.per_set = per_set(&report.sync, &compiled, &self.compiled);
        report.took = started.elapsed();
        self.rule_ids = compiled
            .rules
            .values()
            .filter(|r| r.id != DEFAULT_RULE)
            .map(|r| (r.name.clone(), r.id))
            .collect();
        self.wan_slots = wan_slots;
        self.compiled = compiled;
        self.outcomes = outcomes;
        self.config = config;
        self.last_apply = Some((Instant::now(), report.clone()));
        Ok(report)
    }

    fn write_wan_info(
        &mut self,
        config: &Config,
        slots: &BTreeMap<String, u32>,
    ) -> Result<(), DataplaneError> {
        for slot in 0..MAX_WANS {
            let want = config
                .wans
                .iter()
                .find(|w| slots.get(&w.name) == Some(&slot))
                .map(|w| WanInfo {
                    name: name_to_bytes(&w.name),
                    mark: w.mark,
                    table: w.table,
                    in_use: 1,
                    _pad: 0,
                })
                .unwrap_or_default();
            if self.dp.maps.wan_info(slot)? != want {
                self.dp.maps.set_wan_info(slot, want)?;
            }
        }
        Ok(())
    }

    fn write_settings(&mut self, config: &Config) -> Result<(), DataplaneError> {
        let flags = if config.general.log_packets {
            settings_flags::LOG_PACKETS
        } else {
            0
        };
        let want = Settings { flags, _pad: 0 };
        if self.dp.maps.settings()? != want {
            self.dp.maps.set_settings(want)?;
        }
        Ok(())
    }

    /// Attaches to LAN interfaces that are new (or whose XDP setting changed) and detaches
    /// from those no longer listed. At start every configured interface is (re)attached, which
    /// adopts the links an earlier daemon pinned.
    fn reconcile_lan(
        &mut self,
        config: &Config,
        first: bool,
    ) -> Result<(Vec<String>, Vec<String>), ControllerError> {
        let current: BTreeMap<String, Option<XdpAttachMode>> =
            self.dp.attached().map(|(i, m)| (i.to_owned(), m)).collect();
        let xdp_changed = config.general.xdp != self.config.general.xdp;
        let mut attached = Vec::new();
        for iface in &config.general.lan {
            if !first && current.contains_key(iface) && !xdp_changed {
                continue;
            }
            let mode = self
                .dp
                .attach(iface, config.general.xdp)
                .map_err(|source| ControllerError::Attach {
                    iface: iface.clone(),
                    source,
                })?;
            if let Some(mode) = mode {
                log::info!("{iface}: XDP pre-classifier attached ({mode})");
            }
            attached.push(iface.clone());
        }
        let mut detached = Vec::new();
        for iface in current.keys().filter(|i| !config.general.lan.contains(i)) {
            self.dp.detach(iface)?;
            detached.push(iface.clone());
        }
        detached.extend(self.dp.detach_unconfigured()?);
        Ok((attached, detached))
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
        let sets: Vec<serde_json::Value> = self
            .compiled
            .rules
            .values()
            .map(|r| {
                let counter = self.dp.maps.rule_counter(r.id).unwrap_or_default();
                let prefixes: usize = PrefixSets::KEYS
                    .iter()
                    .map(|(d, v4)| self.prefixes.map(*d, *v4).values().filter(|id| **id == r.id).count())
                    .sum();
                json!({
                    "name": r.name, "rule": r.id,
                    "match": match r.kind { rule_kind::SRC => "src", rule_kind::DST => "dst", _ => "default" },
                    "policy": r.policy, "prefixes": prefixes,
                    "packets": counter.packets, "bytes": counter.bytes,
                })
            })
            .collect();
        let wans: Vec<serde_json::Value> = self
            .config
            .wans
            .iter()
            .map(|w| {
                let slot = self.wan_slots.get(&w.name).copied().unwrap_or(0);
                let counter = self.dp.maps.wan_counter(slot).unwrap_or_default();
                json!({
                    "name": w.name, "interface": w.interface, "mark": format!("{:#x}", w.mark),
                    "table": w.table,
                    "state": if self.health.get(&w.name).is_none_or(Tracker::up) { "up" } else { "down" },
                    "detail": self.health.get(&w.name).map(|t| t.describe(Instant::now())),
                    "carrier": self.health.get(&w.name).map(Tracker::carrier),
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
        let w = config.wan(name)?;
        Some(WanView {
            slot: wan_slots[name],
            mark: w.mark,
            up: up(name),
        })
    });
    Desired {
        compiled,
        wan_slots,
        table,
        outcomes,
    }
}

/// Set names and WAN slots the pinned maps already use, so a restart keeps every id.
fn previous_ids(dp: &Dataplane) -> Result<(NameIds, NameIds), DataplaneError> {
    let generation = dp.maps.active_generation()?;
    let mut rules = BTreeMap::new();
    for rule in DEFAULT_RULE + 1..steer_common::MAX_RULES {
        let info = dp.maps.rule_info(generation, rule)?;
        if info.kind != rule_kind::UNUSED {
            rules.insert(name_from_bytes(&info.set_name).to_owned(), rule);
        }
    }
    let mut wans = BTreeMap::new();
    for slot in 0..MAX_WANS {
        let info = dp.maps.wan_info(slot)?;
        if info.in_use != 0 {
            wans.insert(name_from_bytes(&info.name).to_owned(), slot);
        }
    }
    Ok((rules, wans))
}

/// Per-set change counts: rules of the new compilation, plus removed sets from the old one.
fn per_set(
    sync: &SyncReport,
    new: &Compiled,
    old: &Compiled,
) -> BTreeMap<String, (usize, usize, usize)> {
    let name_of = |id: u32| {
        new.rules
            .get(&id)
            .or_else(|| old.rules.get(&id))
            .map(|r| r.name.clone())
            .unwrap_or_else(|| format!("rule {id}"))
    };
    sync.per_rule
        .iter()
        .map(|(id, c)| (name_of(*id), (c.added, c.changed, c.removed)))
        .collect()
}
