//! The controller's part of runtime set entries (`steer set`): the one writer of those
//! entries into the prefix maps (through the dataplane's `sync_prefixes`, in its order) and
//! of their journal. The pure rules are in [`crate::runtime_sets`].
//!
//! - An edit is parsed and planned in full against the maps' mirror before the first write;
//!   a refusal changes nothing. A long edit arrives in several requests of one batch, staged
//!   here until its last request.
//! - The table and the journal follow the kernel: they take a change once its writes are in.
//! - Every full apply lays the table over the configuration's desired state ([`overlay`]), so
//!   a reload keeps the runtime entries of the sets it keeps; the records it cannot keep (the
//!   set is gone, or a configuration now holds the prefix) are dropped and said.
//! - A reload of one changed list keeps the set's runtime entries the same way
//!   ([`Controller::fit_list_delta`]).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, Instant},
};

use super::{Controller, Desired, lists::Delta};
use crate::{
    config::Config,
    control::proto::{Batch, SetOp},
    dataplane::{Diff, learned::boottime_secs},
    memory_limit::MemoryLimit,
    model::{Direction, PrefixMap, RuleKind},
    prefix::Prefix,
    runtime_sets::{
        self, Op, Owners, RuntimeSets, SetView,
        journal::{self, Journal, Record},
    },
    status::ReportLine,
};

/// Batches open at once (a client that never finishes one loses it after [`BATCH_IDLE`]).
const MAX_BATCHES: usize = 4;
/// A batch with no request for this long is dropped.
const BATCH_IDLE: Duration = Duration::from_secs(30);

/// Runtime entries, their journal, and edits still arriving.
#[derive(Debug)]
pub(super) struct Runtime {
    pub table: RuntimeSets,
    /// Why the journal could not be opened, if it could not: edits are refused, saying so.
    journal: Result<Journal, String>,
    staged: HashMap<u64, Staged>,
}

#[derive(Debug)]
struct Staged {
    name: String,
    op: SetOp,
    timeout: Option<u64>,
    prefixes: Vec<Prefix>,
    touched: Instant,
}

/// The answer to `steer set NAME list`,
/// `{"entries":[{"prefix":"192.0.2.0/24","expires_in":600}, ...]}` (`expires_in`: seconds left,
/// null for an entry kept until deleted), from a snapshot of the set's entries: taking it costs
/// the event loop nothing, and it is encoded straight to bytes off the loop
/// ([`crate::control::answer`]), entry by entry, without a `String` (or a `serde_json::Value`)
/// for each.
#[derive(Debug)]
pub struct Listing {
    entries: std::sync::Arc<runtime_sets::Entries>,
    /// `CLOCK_BOOTTIME` seconds when it was taken: the time left is counted from then.
    now: u64,
}

impl Listing {
    /// Entries listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl serde::Serialize for Listing {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;

        /// The entries, as a sequence.
        struct Entries<'a>(&'a Listing);

        impl serde::Serialize for Entries<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let now = self.0.now;
                serializer.collect_seq(self.0.entries.iter().map(|(prefix, deadline)| Entry {
                    prefix,
                    expires_in: deadline.map(|at| at.saturating_sub(now)),
                }))
            }
        }

        /// One entry, its prefix written as text without a `String` of its own.
        #[derive(serde::Serialize)]
        struct Entry<'a> {
            #[serde(serialize_with = "as_text")]
            prefix: &'a Prefix,
            expires_in: Option<u64>,
        }

        fn as_text<S: serde::Serializer>(p: &&Prefix, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(p)
        }

        let mut body = serializer.serialize_struct("Listing", 1)?;
        body.serialize_field("entries", &Entries(self))?;
        body.end()
    }
}

impl Runtime {
    /// The table the journal next to `socket` describes (entries due by now left out).
    pub fn open(socket: &std::path::Path) -> (Runtime, Vec<ReportLine>) {
        let path = journal::path_for(socket);
        match Journal::open(&path, boottime_secs(), &journal::boot_id()) {
            Ok((journal, table, bad)) => {
                let mut notes = Vec::new();
                if !table.is_empty() {
                    notes.push(ReportLine::info(format!(
                        "{} runtime set entries read back from {}",
                        table.len(),
                        path.display()
                    )));
                }
                if !bad.is_empty() {
                    notes.push(ReportLine::warning(format!(
                        "{}: {}; the file is rewritten at the next `steer set`",
                        path.display(),
                        bad[..bad.len().min(3)].join(", ")
                    )));
                }
                let runtime = Runtime {
                    table,
                    journal: Ok(journal),
                    staged: HashMap::new(),
                };
                (runtime, notes)
            }
            Err(e) => {
                let why = format!(
                    "the runtime set journal {} cannot be read: {e}; `steer set` is refused \
                     until it can: fix the file (or remove it, to start with no runtime \
                     entries) and restart steer",
                    path.display()
                );
                let runtime = Runtime {
                    table: RuntimeSets::default(),
                    journal: Err(why.clone()),
                    staged: HashMap::new(),
                };
                (runtime, vec![ReportLine::error(why)])
            }
        }
    }

    fn record<'a>(&mut self, records: impl IntoIterator<Item = Record<'a>>) -> Option<ReportLine> {
        let journal = self.journal.as_mut().ok()?;
        let written = journal.append(records, &self.table);
        written.err().map(|e| {
            ReportLine::error(format!(
                "writing the runtime set journal {} failed: {e}; the entries are in force, and \
                 the next `steer set` writes the whole journal again (until then a restarted \
                 daemon would not know them)",
                journal.path().display()
            ))
        })
    }

    /// Drops the batches nobody added to for [`BATCH_IDLE`] (a client that went away).
    fn prune_batches(&mut self, now: Instant) {
        self.staged
            .retain(|_, s| now.duration_since(s.touched) < BATCH_IDLE);
    }

    /// Drops a batch whose request was refused: nothing of it is applied.
    fn forget_batch(&mut self, batch: Option<Batch>) {
        if let Some(b) = batch {
            self.staged.remove(&b.id);
        }
    }

    /// Takes a request of a batch: `None` while the batch goes on, the whole edit at its end.
    /// Staged prefixes are parsed (a few bytes each), at most `limit` per batch, in at most
    /// [`MAX_BATCHES`] batches.
    fn gather(
        &mut self,
        name: &str,
        op: SetOp,
        timeout: Option<u64>,
        prefixes: Vec<Prefix>,
        batch: Option<Batch>,
        limit: usize,
    ) -> Result<Option<Vec<Prefix>>, String> {
        let Some(batch) = batch else {
            return Ok(Some(prefixes));
        };
        let now = Instant::now();
        self.prune_batches(now);
        if !self.staged.contains_key(&batch.id) && self.staged.len() >= MAX_BATCHES {
            return Err(format!(
                "{MAX_BATCHES} multi-part edits are already open; finish one or wait {}s",
                BATCH_IDLE.as_secs()
            ));
        }
        let staged = self.staged.entry(batch.id).or_insert_with(|| Staged {
            name: name.to_owned(),
            op,
            timeout,
            prefixes: Vec::new(),
            touched: now,
        });
        if (staged.name.as_str(), staged.op, staged.timeout) != (name, op, timeout) {
            self.staged.remove(&batch.id);
            return Err(format!(
                "batch {} changed its set, operation or timeout midway; it was dropped, \
                 nothing was applied",
                batch.id
            ));
        }
        if staged.prefixes.len() + prefixes.len() > limit {
            self.staged.remove(&batch.id);
            return Err(format!(
                "the edit holds more than {limit} prefixes, more than set {name}'s maps can \
                 hold; nothing was applied"
            ));
        }
        let others: usize = self.staged.values().map(|s| s.prefixes.len()).sum();
        if others + prefixes.len() > limit {
            self.staged.remove(&batch.id);
            return Err(format!(
                "multi-part edits in progress hold {others} prefixes: this one would take more \
                 than {limit}; it was dropped, nothing was applied (retry when they are done)"
            ));
        }
        let staged = self
            .staged
            .get_mut(&batch.id)
            .expect("inserted above, and only this batch was removed");
        staged.prefixes.extend(prefixes);
        staged.touched = now;
        if !batch.last {
            return Ok(None);
        }
        Ok(self.staged.remove(&batch.id).map(|s| s.prefixes))
    }
}

/// Where an edit's time went once it was checked.
#[derive(Clone, Copy, Debug, Default)]
struct WriteTimes {
    kernel: Duration,
    journal: Duration,
}

/// A runtime record a full apply could not keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Dropped {
    pub set: String,
    pub prefix: Prefix,
    pub why: DropReason,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum DropReason {
    /// The configuration no longer has the set.
    SetGone,
    /// The set now has conditions (an ordered rule), which runtime entries cannot join.
    Ordered,
    /// The set's own configuration now holds the prefix (nothing changes in the kernel).
    Configured,
    /// Another set's configuration now holds the prefix.
    TakenBy(String),
    /// The default route, and the set no longer has `allow_default_route`.
    DefaultRoute,
}

/// Lays `table` over `desired`: each runtime entry of a set it keeps joins that set's prefixes,
/// unless a configuration holds the prefix. Returns the records that cannot stay, and how many
/// prefixes each rule gained.
pub(super) fn overlay(
    table: &RuntimeSets,
    desired: &mut Desired,
    allows_default_route: impl Fn(&str) -> bool,
) -> (Vec<Dropped>, Vec<(PrefixMap, Prefix, u32)>) {
    let mut gained = Vec::new();
    if table.is_empty() {
        return (Vec::new(), gained);
    }
    let sets: HashMap<&str, (u32, Direction)> = desired
        .rules
        .values()
        .filter_map(|r| match r.kind {
            RuleKind::Set(direction) => Some((r.name.as_str(), (r.id, direction))),
            _ => None,
        })
        .collect();
    let ordered: std::collections::HashSet<&str> = desired
        .rules
        .values()
        .filter(|r| matches!(r.kind, RuleKind::Ordered(_)))
        .map(|r| r.name.as_str())
        .collect();
    let names: HashMap<u32, &str> = sets.iter().map(|(n, (id, _))| (*id, *n)).collect();
    let prefixes = &mut desired.contents.prefixes;
    let mut dropped = Vec::new();
    for (set, prefix, _) in table.iter() {
        let drop = |why| Dropped {
            set: set.to_owned(),
            prefix: *prefix,
            why,
        };
        let Some((rule, direction)) = sets.get(set) else {
            let why = if ordered.contains(set) {
                DropReason::Ordered
            } else {
                DropReason::SetGone
            };
            dropped.push(drop(why));
            continue;
        };
        if prefix.len() == 0 && !allows_default_route(set) {
            dropped.push(drop(DropReason::DefaultRoute));
            continue;
        }
        let which = PrefixMap::of(*direction, prefix);
        let map = prefixes.map_mut(which);
        match map.get(prefix) {
            Some(r) if r == *rule => dropped.push(drop(DropReason::Configured)),
            Some(r) => {
                let owner = names.get(&r).copied().unwrap_or("?").to_owned();
                dropped.push(drop(DropReason::TakenBy(owner)));
            }
            None => {
                map.insert(*prefix, *rule);
                gained.push((which, *prefix, *rule));
            }
        }
    }
    (dropped, gained)
}

/// Names sets and the places of their configured prefixes, for refusals.
struct ConfigOwners<'a> {
    config: &'a Config,
    names: BTreeMap<u32, String>,
}

impl Owners for ConfigOwners<'_> {
    fn name_of(&self, rule: u32) -> String {
        self.names
            .get(&rule)
            .cloned()
            .unwrap_or_else(|| format!("#{rule}"))
    }

    /// An inline prefix's place, or else the first line of the set's lists that has it: the
    /// running configuration keeps no list lines, so they are read again (a refusal names ten
    /// places at most).
    fn origin(&self, set: &str, prefix: &Prefix) -> Option<String> {
        let set = self.config.set(set)?;
        if let Some(entry) = set.prefixes.iter().find(|e| e.prefix == *prefix) {
            return Some(entry.origin.to_string());
        }
        set.files.iter().find_map(|file| {
            let line = crate::config::list_line_of(&std::fs::read(file).ok()?, prefix)?;
            Some(format!("{}:{line}", file.display()))
        })
    }
}

impl Controller {
    /// `steer set NAME add|del|flush`: checks the whole edit, writes it, records it; returns
    /// what to tell (nothing for a request that only continues a batch).
    pub fn edit_set(
        &mut self,
        name: &str,
        wire_op: SetOp,
        tokens: Vec<String>,
        timeout: Option<u64>,
        batch: Option<Batch>,
    ) -> Result<String, String> {
        let started = Instant::now();
        if let Err(why) = &self.runtime.journal {
            return Err(why.clone());
        }
        let view = self.set_view(name)?;
        let limit = [true, false]
            .map(|v4| {
                self.config
                    .general
                    .capacity
                    .of(PrefixMap::new(view.direction, v4))
            })
            .iter()
            .map(|c| *c as usize)
            .sum();
        let op = match (wire_op, timeout) {
            (SetOp::Add, Some(0)) => {
                return Err(
                    "a timeout of 0 seconds: leave --timeout out for an entry that \
                            stays until deleted"
                        .into(),
                );
            }
            (SetOp::Add, t) => Op::Add {
                deadline: t.map(|t| boottime_secs().saturating_add(t)),
            },
            (_, Some(_)) => return Err("only `add` takes a timeout".into()),
            (SetOp::Del, None) => Op::Del,
            (SetOp::Flush, None) if tokens.is_empty() => Op::Flush,
            (SetOp::Flush, None) => {
                return Err(
                    "`flush` takes no prefixes: it deletes every runtime entry of the \
                            set; use `del` for some"
                        .into(),
                );
            }
            (SetOp::List, None) => return Err("`list` is not an edit".into()),
        };
        let refused = |reasons: Vec<String>| {
            format!(
                "steer set {name}: refused, nothing changed:\n  {}",
                reasons.join("\n  ")
            )
        };
        let parsed = runtime_sets::parse(&tokens, view.allow_default_route);
        let parsed = parsed.inspect_err(|_| self.runtime.forget_batch(batch));
        let Some(prefixes) = self.runtime.gather(
            name,
            wire_op,
            timeout,
            parsed.map_err(refused)?,
            batch,
            limit,
        )?
        else {
            return Ok(String::new());
        };
        if let (Op::Add { .. }, Some(limit)) = (op, MemoryLimit::of_this_process()) {
            let held = PrefixMap::ALL
                .iter()
                .map(|m| self.dp.prefixes().map(*m).len())
                .sum();
            limit
                .admit_edit(
                    self.dp.set_memory(),
                    held,
                    self.runtime.table.len(),
                    prefixes.len(),
                )
                .map_err(|why| refused(vec![why]))?;
        }
        let owners = ConfigOwners {
            config: &self.config,
            names: self
                .rules
                .values()
                .map(|r| (r.id, r.name.clone()))
                .collect(),
        };
        let local_notes = match (op, view.direction) {
            (Op::Add { .. }, Direction::Dst) => local_notes(self.dp.local(), &prefixes),
            _ => Vec::new(),
        };
        let plan = runtime_sets::plan(
            &self.runtime.table,
            view,
            op,
            prefixes,
            self.dp.prefixes(),
            &owners,
        )
        .map_err(refused)?;
        let checked = started.elapsed();
        let (mut notes, times) = self.write_plan(name, &view, &plan)?;
        let s = plan.summary;
        let mut message = match op {
            Op::Add { deadline } => format!(
                "set {name}: {} added, {} already there{}, {} in its configuration already",
                s.added,
                s.refreshed,
                match (s.refreshed, deadline) {
                    (0, _) => "",
                    (_, Some(_)) => " (their timeout set anew)",
                    (_, None) => " (kept, with no timeout)",
                },
                s.configured
            ),
            Op::Del | Op::Flush => format!(
                "set {name}: {} removed, {} were not there{}",
                s.removed,
                s.absent,
                if s.absent > 0
                    && self
                        .config
                        .sets
                        .iter()
                        .any(|x| x.name == name && !x.domains.is_empty())
                {
                    " (addresses learned from DNS answers are not runtime entries: they expire \
                     on their own; `steer dump dns` lists them)"
                } else {
                    ""
                }
            ),
        };
        message.push_str(&format!(
            " ({} runtime entries; applied in {:.3} ms: check {:.3} ms, kernel {:.3} ms, \
             journal {:.3} ms)",
            self.runtime.table.len_of(name),
            started.elapsed().as_secs_f64() * 1e3,
            checked.as_secs_f64() * 1e3,
            times.kernel.as_secs_f64() * 1e3,
            times.journal.as_secs_f64() * 1e3
        ));
        notes.insert(0, ReportLine::info(message));
        notes.extend(local_notes);
        let text: Vec<String> = notes.iter().map(|l| l.text.clone()).collect();
        Ok(text.join("\n"))
    }

    /// Lets go of the prefix arrays that runtime edits left mapped (the periodic tick).
    pub fn unmap_after_edits(&mut self) {
        self.dp.unmap_ranges();
    }

    /// `steer set NAME list`: the set's runtime entries and their time left, as a snapshot
    /// that shares the table (an edit meanwhile copies the set once): nothing is copied or
    /// formatted on the event loop.
    pub fn list_set(&self, name: &str) -> Result<Listing, String> {
        self.set_view(name)?;
        Ok(Listing {
            entries: self.runtime.table.snapshot(name),
            now: boottime_secs(),
        })
    }

    /// Removes the runtime entries whose timeout ran out (the daemon's one-second timer).
    pub fn expire_runtime(&mut self) -> Vec<ReportLine> {
        self.runtime.prune_batches(Instant::now());
        let due = self.runtime.table.expired(boottime_secs());
        if due.is_empty() {
            return Vec::new();
        }
        let mut by_set: BTreeMap<String, Vec<Prefix>> = BTreeMap::new();
        for (set, p) in due {
            by_set.entry(set).or_default().push(p);
        }
        let mut lines = Vec::new();
        for (set, prefixes) in by_set {
            let Ok(view) = self.set_view(&set) else {
                continue;
            };
            let plan = runtime_sets::Plan {
                removals: prefixes.clone(),
                forget: prefixes,
                ..runtime_sets::Plan::default()
            };
            match self.write_plan(&set, &view, &plan) {
                Ok((notes, _)) => {
                    lines.push(ReportLine::info(format!(
                        "set {set}: {} runtime entries expired",
                        plan.forget.len()
                    )));
                    lines.extend(notes);
                }
                Err(e) => lines.push(ReportLine::error(e)),
            }
        }
        lines
    }

    /// The configured set `name`, as an edit sees it.
    fn set_view<'a>(&self, name: &'a str) -> Result<SetView<'a>, String> {
        let set = self.config.sets.iter().find(|s| s.name == name);
        let rule = self.rule_ids().get(name).copied();
        match (set, rule) {
            (Some(set), Some(_)) if set.conditions.is_some() => Err(format!(
                "set {name:?} has conditions (an ordered rule): its prefixes change only with \
                 the configuration; edit its prefixes or files and run `steer reload`, or keep \
                 runtime entries in a set without conditions"
            )),
            (Some(set), Some(rule)) => Ok(SetView {
                name,
                rule,
                direction: set.direction,
                allow_default_route: set.allow_default_route,
            }),
            _ => {
                // Sets with conditions are refused above: not among the ones to name.
                let names: Vec<&str> = self
                    .config
                    .sets
                    .iter()
                    .filter(|s| s.conditions.is_none())
                    .map(|s| s.name.as_str())
                    .collect();
                Err(format!(
                    "no set named {name:?} runs; `steer set` edits configured sets ({})",
                    if names.is_empty() {
                        "there are none: add a [[set]] and reload".to_owned()
                    } else {
                        names.join(", ")
                    }
                ))
            }
        }
    }

    /// Writes a plan's prefixes, then records it in the table and the journal. Returns what
    /// to tell and the time each took.
    fn write_plan(
        &mut self,
        name: &str,
        view: &SetView,
        plan: &runtime_sets::Plan,
    ) -> Result<(Vec<ReportLine>, WriteTimes), String> {
        let (rule, direction) = (view.rule, view.direction);
        let mut notes = Vec::new();
        let mut times = WriteTimes::default();
        if !plan.writes.is_empty() || !plan.removals.is_empty() {
            let added = plan.writes.iter().map(|p| (*p, rule)).collect();
            let diff =
                Diff::of_changes(self.dp.prefixes(), direction, added, plan.removals.clone());
            let general = &self.config.general;
            let what = format!("set {name} with its runtime entries");
            match self.dp.sync_prefixes(
                (self.dp.version(), diff),
                &general.capacity,
                general.log_packets,
                &what,
            ) {
                Ok(report) => times.kernel = report.kernel_time,
                Err(e) if e.is_live() => notes.push(ReportLine::error(e.to_string())),
                Err(e) => return Err(format!("steer set {name}: {e}")),
            }
            let count = self.prefix_counts.entry(rule).or_default();
            *count = (*count + plan.writes.len()).saturating_sub(plan.removals.len());
        }
        let name = name.to_owned();
        for (p, deadline) in &plan.records {
            self.runtime.table.insert(&name, *p, *deadline);
        }
        for p in &plan.forget {
            self.runtime.table.remove(&name, p);
        }
        let adds = plan.records.iter().map(|(p, d)| Record::Add(&name, *p, *d));
        let dels = plan.forget.iter().map(|p| Record::Del(&name, *p));
        let flushed = plan.forget.len() > 1 && self.runtime.table.entries(&name).next().is_none();
        let records: Vec<Record> = if flushed {
            adds.chain([Record::Flush(&name)]).collect()
        } else {
            adds.chain(dels).collect()
        };
        let started = Instant::now();
        notes.extend(self.runtime.record(records));
        times.journal = started.elapsed();
        Ok((notes, times))
    }

    /// Lays the runtime entries over a step of `config` about to be applied (see [`overlay`]). A diff
    /// taken before they were laid over keeps them if the maps already hold each of them where
    /// the step puts it; otherwise (a set changed direction) it is dropped, and the sync takes
    /// the whole difference again.
    pub(super) fn overlay_runtime(
        &self,
        config: &Config,
        desired: &mut Desired,
        counts: &mut HashMap<u32, usize>,
        diff: &mut Option<(u64, Diff)>,
    ) -> Vec<Dropped> {
        let allows = |set: &str| config.set(set).is_some_and(|s| s.allow_default_route);
        let (dropped, gained) = overlay(&self.runtime.table, desired, allows);
        let held = self.dp.prefixes();
        let covered = gained
            .iter()
            .all(|(map, p, rule)| held.map(*map).get(p) == Some(*rule));
        for (_, _, rule) in &gained {
            *counts.entry(*rule).or_default() += 1;
        }
        match diff {
            Some((_, d)) if covered && !gained.is_empty() => {
                d.keep_wanted(held, &desired.contents.prefixes)
            }
            Some(_) if !covered => *diff = None,
            _ => {}
        }
        dropped
    }

    /// Forgets the records a committed apply could not keep, and says so per set.
    pub(super) fn forget_dropped(&mut self, dropped: Vec<Dropped>) -> Vec<ReportLine> {
        let mut per_set: BTreeMap<(String, &str, String), Vec<Prefix>> = BTreeMap::new();
        for d in dropped {
            // Entries the set's own configuration now holds stay in the kernel as configured
            // ones; the others are gone from the set (from the kernel, or to another set).
            let what = match d.why {
                DropReason::Configured => "are configured now",
                _ => "dropped",
            };
            let why = match d.why {
                DropReason::SetGone => "the set is no longer configured".to_owned(),
                DropReason::Ordered => "the set has conditions now (an ordered rule), and \
                                        `steer set` edits only sets without them"
                    .to_owned(),
                DropReason::Configured => "its configuration now holds them".to_owned(),
                DropReason::TakenBy(other) => format!("set {other}'s configuration holds them"),
                DropReason::DefaultRoute => "the set no longer has allow_default_route".to_owned(),
            };
            per_set
                .entry((d.set, what, why))
                .or_default()
                .push(d.prefix);
        }
        let mut lines = Vec::new();
        let mut forgotten: Vec<(String, Prefix)> = Vec::new();
        for ((set, what, why), prefixes) in per_set {
            let shown: Vec<String> = prefixes.iter().take(5).map(|p| p.to_string()).collect();
            lines.push(ReportLine::warning(format!(
                "set {set}: {} runtime entries {what} ({}{}): {why}",
                prefixes.len(),
                shown.join(", "),
                if prefixes.len() > 5 { ", ..." } else { "" }
            )));
            for p in prefixes {
                self.runtime.table.remove(&set, &p);
                forgotten.push((set.clone(), p));
            }
        }
        let records = forgotten.iter().map(|(s, p)| Record::Del(s, *p));
        let records: Vec<Record> = records.collect();
        if !records.is_empty() {
            lines.extend(self.runtime.record(records));
        }
        lines
    }

    /// Fits a changed list to the set's runtime entries: a prefix the list drops stays when it
    /// is a runtime entry. Returns the records to forget once the list is written: runtime
    /// entries the list now holds (they become configured), and prefixes the list adds that
    /// another set holds at runtime (they move to the list's set).
    pub(super) fn fit_list_delta(&self, delta: &mut Delta) -> Vec<Dropped> {
        let table = &self.runtime.table;
        if table.is_empty() {
            return Vec::new();
        }
        let own: HashSet<Prefix> = table.entries(&delta.set).map(|(p, _)| *p).collect();
        delta.removed.retain(|p| !own.contains(p));
        let mut now_listed: Vec<Prefix> = own
            .iter()
            .filter(|p| delta.listed.contains(p))
            .copied()
            .collect();
        now_listed.sort_unstable();
        let mut dropped: Vec<Dropped> = now_listed
            .iter()
            .map(|p| Dropped {
                set: delta.set.clone(),
                prefix: *p,
                why: DropReason::Configured,
            })
            .collect();
        let names: HashMap<u32, &str> = self
            .rules
            .values()
            .map(|r| (r.id, r.name.as_str()))
            .collect();
        let held = self.dp.prefixes();
        for p in &delta.added {
            let owner = held
                .map(PrefixMap::of(delta.direction, p))
                .get(p)
                .filter(|r| *r != delta.rule)
                .and_then(|r| names.get(&r));
            if let Some(owner) = owner.filter(|o| table.get(o, p).is_some()) {
                dropped.push(Dropped {
                    set: (*owner).to_owned(),
                    prefix: *p,
                    why: DropReason::TakenBy(delta.set.clone()),
                });
            }
        }
        dropped
    }

    /// Runtime entries of `set`.
    pub(super) fn runtime_len(&self, set: &str) -> usize {
        self.runtime.table.len_of(set)
    }
}

/// A note for each added destination prefix that a local destination covers: the classifier
/// never steers it while that holds (a LAN subnet, the router's own address), so the entry
/// takes no effect (the first few, then how many more).
fn local_notes(local: &crate::model::LocalSet, added: &[Prefix]) -> Vec<ReportLine> {
    const SHOWN: usize = 5;
    let covered: Vec<(Prefix, Prefix)> = added
        .iter()
        .filter_map(|p| {
            local
                .keys()
                .find(|l| l.len() <= p.len() && l.contains(p.addr()))
                .map(|l| (*p, *l))
        })
        .collect();
    let mut notes: Vec<ReportLine> = covered
        .iter()
        .take(SHOWN)
        .map(|(p, l)| {
            ReportLine::warning(format!(
                "note: {p} lies in the local destination {l} (`steer dump local`): never \
                 steered while the router reaches it without a WAN"
            ))
        })
        .collect();
    if covered.len() > SHOWN {
        notes.push(ReportLine::warning(format!(
            "note: and {} more added prefixes in local destinations",
            covered.len() - SHOWN
        )));
    }
    notes
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{controller::desired, model::NameIds, prefix::parse_prefix};

    fn p(s: &str) -> Prefix {
        parse_prefix(s, true).unwrap()
    }

    #[test]
    fn the_overlay_adds_what_it_can_keep_and_names_what_it_cannot() {
        let text = format!(
            r#"
[general]
lan = ["lan0"]
{wans}[[policy]]
name = "p"
members = [{{ wan = "wan2" }}]
[[set]]
name = "bypass"
policy = "p"
prefixes = ["203.0.113.0/24"]
[[set]]
name = "kids"
policy = "p"
match = "src"
prefixes = ["192.168.1.64/27"]
[[set]]
name = "voip"
policy = "p"
proto = ["udp"]
"#,
            wans = crate::config::testing::TWO_WANS
        );
        let config = crate::config::parse(&text, Path::new("/nonexistent/steer.toml")).unwrap();
        let mut want = desired::desired(&config, &NameIds::new(), &NameIds::new(), |_, _| true);
        let mut table = RuntimeSets::default();
        table.insert("bypass", p("198.51.100.0/24"), None);
        table.insert("bypass", p("203.0.113.0/24"), Some(9));
        table.insert("kids", p("192.168.1.80/28"), None);
        table.insert("bypass", p("192.168.1.64/27"), None);
        table.insert("gone", p("10.0.0.0/8"), None);
        table.insert("voip", p("10.1.0.0/16"), None);
        let (dropped, gained) = overlay(&table, &mut want, |_| false);
        assert_eq!(gained.len(), 3);
        let ids = want.rule_ids();
        let held = &want.contents.prefixes;
        assert_eq!(
            held.map(PrefixMap::DstV4).get(&p("198.51.100.0/24")),
            Some(ids["bypass"])
        );
        assert_eq!(
            held.map(PrefixMap::SrcV4).get(&p("192.168.1.80/28")),
            Some(ids["kids"]),
            "a source set's entry goes to the source map"
        );
        assert_eq!(
            held.map(PrefixMap::DstV4).get(&p("192.168.1.64/27")),
            Some(ids["bypass"]),
            "the same prefix in another map is no conflict"
        );
        let why: Vec<(&str, DropReason)> = dropped
            .iter()
            .map(|d| (d.set.as_str(), d.why.clone()))
            .collect();
        assert_eq!(
            why,
            [
                ("bypass", DropReason::Configured),
                ("gone", DropReason::SetGone),
                ("voip", DropReason::Ordered)
            ]
        );
    }

    #[test]
    fn a_listing_is_the_set_when_it_was_taken_written_as_listed_entries() {
        let mut table = RuntimeSets::default();
        table.insert("bypass", p("198.51.100.0/24"), None);
        table.insert("bypass", p("2001:db8::/32"), Some(1000));
        table.insert("bypass", p("192.0.2.0/24"), Some(90));
        table.insert("other", p("10.0.0.0/8"), None);
        let listing = Listing {
            entries: table.snapshot("bypass"),
            now: 100,
        };
        // Later edits do not show in it (the table copies the set for them).
        table.insert("bypass", p("203.0.113.0/24"), None);
        assert!(table.remove("bypass", &p("198.51.100.0/24")));
        assert_eq!(listing.len(), 3);
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Listed {
            prefix: String,
            expires_in: Option<u64>,
        }
        #[derive(serde::Deserialize)]
        struct Body {
            entries: Vec<Listed>,
        }
        let line = crate::control::answer::Encoded::ok(&listing).unwrap();
        let text = std::str::from_utf8(line.line()).unwrap();
        assert!(
            text.starts_with(
                r#"{"ok":true,"body":{"entries":[{"prefix":"192.0.2.0/24","expires_in":0},"#
            ),
            "{text}"
        );
        let response: crate::control::Response = serde_json::from_str(text).unwrap();
        let body: Body = serde_json::from_value(response.body).unwrap();
        let listed = |prefix: &str, expires_in| Listed {
            prefix: prefix.into(),
            expires_in,
        };
        assert_eq!(
            body.entries,
            [
                listed("192.0.2.0/24", Some(0)),
                listed("198.51.100.0/24", None),
                listed("2001:db8::/32", Some(900)),
            ]
        );
        let none = Listing {
            entries: table.snapshot("nothing"),
            now: 0,
        };
        assert!(none.is_empty());
        assert_eq!(
            crate::control::answer::Encoded::ok(&none).unwrap().line(),
            b"{\"ok\":true,\"body\":{\"entries\":[]}}\n"
        );
    }
}
