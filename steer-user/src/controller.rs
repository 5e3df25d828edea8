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
    dataplane::{
        Adopted, Capacities, Dataplane, DataplaneError, XdpAttachMode,
        sync::{self, PolicyTable, PrefixSets, SyncError, SyncReport},
    },
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
    /// attaches the classifier to the LAN interfaces.
    pub fn start(config: Config) -> Result<(Controller, ApplyReport), ControllerError> {
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
        };
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
        self.apply(config, false)
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
        } = desired(&config, &self.rule_ids, &self.wan_slots, |_| true);
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
                    "table": w.table, "state": "up", "packets": counter.packets, "bytes": counter.bytes,
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
