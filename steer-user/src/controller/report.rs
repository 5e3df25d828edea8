//! What the controller tells the daemon it did: one [`ApplyReport`] per start or reload, one
//! [`FailoverReport`] per WAN state change. Both come out as [`ReportLine`]s with a severity.

use std::{collections::BTreeMap, time::Duration};

use crate::{
    dataplane::{SyncReport, XdpAttachMode},
    model::Family,
    status::ReportLine,
};

/// What one apply (start or reload) changed, for the log and for `steer reload`.
#[derive(Clone, Debug, Default)]
pub struct ApplyReport {
    pub sync: SyncReport,
    /// Set name -> (added, changed, removed).
    pub per_set: BTreeMap<String, (usize, usize, usize)>,
    pub attached: Vec<String>,
    pub detached: Vec<String>,
    /// LAN interfaces the XDP pre-classifier was attached to now, in its mode.
    pub xdp_attached: Vec<(String, XdpAttachMode)>,
    /// LAN interfaces the XDP pre-classifier was detached from, XDP being off now.
    pub xdp_detached: Vec<String>,
    /// Warnings (XDP unavailable, a WAN without carrier, ...) and failed steps (attaching to a
    /// LAN interface, ...). Failures after the new configuration went live are not undone:
    /// they are retried when the interface changes.
    pub notes: Vec<ReportLine>,
    /// Connection marking and routing, brought in line after the maps.
    pub after: Vec<ReportLine>,
    pub took: Duration,
    /// A reload that found no file changed: nothing was parsed or written.
    pub unchanged: bool,
    /// Every kernel map write a reload made (prefixes, policy, settings, names, local
    /// destinations), from the dataplane's write meter.
    pub map_writes: Option<u64>,
}

impl ApplyReport {
    /// One line per change, as the daemon logs them.
    pub fn lines(&self) -> Vec<ReportLine> {
        let mut out: Vec<ReportLine> = self
            .per_set
            .iter()
            .map(|(set, (a, c, r))| {
                ReportLine::info(format!("set {set}: {a} added, {c} changed, {r} removed"))
            })
            .collect();
        if let Some((from, to)) = self.sync.flipped {
            out.push(ReportLine::info(format!(
                "policy generation {from} -> {to}"
            )));
        }
        out.extend(
            self.attached
                .iter()
                .map(|i| ReportLine::info(format!("{i}: classifier attached"))),
        );
        out.extend(
            self.detached
                .iter()
                .map(|i| ReportLine::info(format!("{i}: classifier detached"))),
        );
        out.extend(self.xdp_attached.iter().map(|(i, mode)| {
            ReportLine::info(format!("{i}: XDP pre-classifier attached ({mode})"))
        }));
        out.extend(self.xdp_detached.iter().map(|i| {
            ReportLine::info(format!(
                "{i}: XDP pre-classifier detached (xdp is off); TC classifies alone"
            ))
        }));
        out.extend(self.notes.iter().cloned());
        out.push(ReportLine::info(format!(
            "{} prefix writes, {} policy writes in {:.1} ms ({:.2} ms of it in the kernel)",
            self.sync.prefix_writes,
            self.sync.policy_writes,
            self.took.as_secs_f64() * 1e3,
            self.sync.kernel_time.as_secs_f64() * 1e3
        )));
        if let Some(n) = self.map_writes {
            out.push(ReportLine::info(format!("{n} map writes in all")));
        }
        out.extend(self.after.iter().cloned());
        out
    }

    /// The failed steps, in words.
    pub fn failures(&self) -> Vec<String> {
        self.notes
            .iter()
            .filter(|l| l.severity == crate::status::Severity::Error)
            .map(|l| l.text.clone())
            .collect()
    }

    /// Adds what a later sync step did to this report.
    pub fn merge_sync(&mut self, more: SyncReport) {
        let into = &mut self.sync;
        for (rule, c) in more.per_rule {
            let e = into.per_rule.entry(rule).or_default();
            e.added += c.added;
            e.changed += c.changed;
            e.removed += c.removed;
        }
        into.prefix_writes += more.prefix_writes;
        into.policy_writes += more.policy_writes;
        into.flipped = more.flipped.or(into.flipped);
        into.diff_time += more.diff_time;
        into.kernel_time += more.kernel_time;
    }
}

/// One WAN state change and what it did: the one log line the daemon writes per change.
#[derive(Clone, Debug)]
pub struct FailoverReport {
    pub wan: String,
    /// The families that changed (both, or one).
    pub families: Vec<Family>,
    pub up: bool,
    /// Down only for want of a gateway or IPv6 prefix (see `Transition::waiting`).
    pub waiting: bool,
    pub cause: String,
    /// (policy, before, after) for every policy whose verdict moved.
    pub moved: Vec<(String, String, String)>,
    /// From the first sign of the fault to the decision; `None` when an event (carrier, a
    /// command) was itself the sign.
    pub detection: Option<Duration>,
    /// What found it (probes, the traffic, the carrier, an event).
    pub path: crate::health::Path,
    /// From the decision to the flipped generation word.
    pub switch: Duration,
    /// A precomputed standby went live (one word written), not a table written then flipped.
    pub precomputed: bool,
    /// Kernel map writes from the decision to the flip, the flip included (the write meter).
    pub writes: u64,
    pub flip: Option<(u32, u32)>,
    /// Writing the new policy table failed: the old one stays live (retried).
    pub error: Option<String>,
}

impl FailoverReport {
    /// The report as one log line: a warning (a WAN changed state), an error when the new
    /// policy table could not be written.
    pub fn line(&self) -> ReportLine {
        if self.error.is_some() {
            ReportLine::error(self.to_string())
        } else {
            ReportLine::warning(self.to_string())
        }
    }
}

impl std::fmt::Display for FailoverReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let family = match self.families.as_slice() {
            [one] => format!(" {}", one.name()),
            _ => String::new(),
        };
        // Status says "waiting" of such a family, and so does this line.
        let word = match (self.up, self.waiting) {
            (true, _) => "up",
            (false, true) => "stops carrying, waiting",
            (false, false) => "down",
        };
        write!(f, "{}{family} {word} ({})", self.wan, self.cause)?;
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
            Some(d) => write!(
                f,
                "; detected in {:.1} ms by {}",
                d.as_secs_f64() * 1e3,
                self.path.as_str()
            )?,
            None => write!(f, "; detected by the event itself")?,
        }
        if self.switch < Duration::from_millis(1) {
            write!(f, ", switched in {} µs", self.switch.as_micros())?;
        } else {
            write!(f, ", switched in {:.2} ms", self.switch.as_secs_f64() * 1e3)?;
        }
        match (self.flip, self.precomputed) {
            (Some((from, to)), true) => write!(
                f,
                " (precomputed standby, {} map writes, generation {from} -> {to})",
                self.writes
            )?,
            (Some((from, to)), false) => write!(
                f,
                " ({} map writes, generation {from} -> {to})",
                self.writes
            )?,
            (None, _) => {}
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
