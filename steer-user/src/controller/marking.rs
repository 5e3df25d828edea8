//! The drift check of steer's nftables table (connection marking): what it found last and what
//! it repaired, for `steer status`.

use std::{sync::Mutex, time::Instant};

use super::Controller;
use crate::{
    conntrack,
    status::{MarkingRepair, MarkingStatus, ReportLine},
};

/// What the drift check knows of steer's table.
#[derive(Debug, Default)]
pub(super) struct Marking {
    /// `nft -s list table inet steer` right after steer installed it, what the check compares
    /// the table with; `None` when it could not be installed or listed (the check then only
    /// sees whether the table is there).
    installed: Option<String>,
    /// The ruleset steer sent last: without a listing to compare with, the check holds the
    /// table's chains and their numbers of rules against it ([`conntrack::shape_drift`]).
    rendered: Option<String>,
    /// What the last check found, and when.
    found: Option<(Instant, Found)>,
    /// The last repair: when, and what was wrong.
    repaired: Option<(Instant, String)>,
    /// Whether nftables events are watched (the daemon subscribes): `Err` says why not.
    events: Option<Result<(), String>>,
}

#[derive(Debug)]
enum Found {
    InPlace,
    Missing,
    Changed(String),
    /// Not installed, or not readable: why.
    Unknown(String),
}

impl Controller {
    /// Compares steer's nftables table with what steer installed (something may have deleted
    /// it, emptied it or changed it: a firewall restart flushes the ruleset) and installs it
    /// again when it differs, saying what was wrong. `nft` runs off the event loop, so probes
    /// and requests are not held up by it.
    pub async fn check_conntrack_marking(&self) -> Option<ReportLine> {
        let installed_for = self
            .marking_bridged
            .load(std::sync::atomic::Ordering::Relaxed);
        let bridged = self.bridged_lan().await;
        if bridged != installed_for {
            return self.install_conntrack_marking(bridged);
        }
        let listed = match tokio::task::spawn_blocking(conntrack::listing).await {
            Ok(listed) => listed,
            Err(e) => {
                return Some(ReportLine::warning(format!(
                    "checking the nftables table failed: {e}"
                )));
            }
        };
        let found = match listed {
            Ok(Some(now)) => {
                let (listed, rendered) = {
                    let m = lock(&self.marking);
                    (m.installed.clone(), m.rendered.clone())
                };
                let drift = match (listed, rendered) {
                    (Some(want), _) => conntrack::drift(&want, &now),
                    (None, Some(sent)) => conntrack::shape_drift(&sent, &now),
                    (None, None) => None,
                };
                match drift {
                    None => Found::InPlace,
                    Some(what) => Found::Changed(what),
                }
            }
            Ok(None) => Found::Missing,
            // Said at start and on every reload already (installing failed the same way); the
            // periodic check only repeats it at debug level.
            Err(e) => {
                log::debug!("{e}");
                Found::Unknown(e.to_string())
            }
        };
        let what = match &found {
            Found::InPlace | Found::Unknown(_) => {
                lock(&self.marking).found = Some((Instant::now(), found));
                return None;
            }
            Found::Missing => "it was missing".to_owned(),
            Found::Changed(what) => format!("it had been changed: {what}"),
        };
        {
            let mut marking = lock(&self.marking);
            marking.found = Some((Instant::now(), found));
            marking.repaired = Some((Instant::now(), what.clone()));
        }
        let failed = self.install_conntrack_marking(bridged);
        Some(failed.unwrap_or_else(|| {
            ReportLine::warning(format!(
                "nftables table inet {table} {was}: restored. Until then connections may not have \
                 been marked (a port forward's replies could leave by another WAN than the one \
                 it came in on); if this repeats, find what rewrites the ruleset (a firewall \
                 reload that flushes it, `nft flush table`, another program) and have it leave \
                 table inet {table} alone",
                table = conntrack::NFT_TABLE,
                was = what.strip_prefix("it ").unwrap_or(&what),
            ))
        }))
    }

    /// Called once steer's table was installed (`rendered`: the ruleset that went in) or could
    /// not be (`None`): takes the listing the drift check compares with. A listing that does
    /// not have the chains and rules steer just sent (something emptied the table in between:
    /// a firewall's next command) is not taken; the check then holds the table against the
    /// ruleset's chains and rules alone, and finds it changed.
    pub(super) fn remember_installed_marking(&self, rendered: Option<String>) {
        let listed = rendered
            .is_some()
            .then(|| conntrack::listing().ok().flatten())
            .flatten();
        let found = match (&rendered, &listed) {
            (Some(sent), Some(listed)) => match conntrack::shape_drift(sent, listed) {
                None => Found::InPlace,
                Some(what) => Found::Changed(what),
            },
            (Some(_), None) => Found::Unknown("installed, but `nft list` failed".into()),
            (None, _) => Found::Unknown("steer could not install it (see the log)".into()),
        };
        let mut marking = lock(&self.marking);
        marking.installed = listed.filter(|_| matches!(found, Found::InPlace));
        marking.rendered = rendered;
        marking.found = Some((Instant::now(), found));
    }

    /// Whether nftables events are watched (the daemon subscribed to them), or why not.
    pub fn nftables_events(&self, watched: Result<(), String>) {
        lock(&self.marking).events = Some(watched);
    }

    /// The connection-marking line of `steer status`.
    pub(super) fn marking_status(&self) -> MarkingStatus {
        let marking = lock(&self.marking);
        let (table, checked_seconds_ago) = match &marking.found {
            None => ("not checked yet".to_owned(), None),
            Some((at, found)) => (
                match found {
                    Found::InPlace => "in place".to_owned(),
                    Found::Missing => "missing".to_owned(),
                    Found::Changed(what) => format!("changed ({what})"),
                    Found::Unknown(why) => format!("unknown ({why})"),
                },
                Some(at.elapsed().as_secs()),
            ),
        };
        MarkingStatus {
            table,
            checked_seconds_ago,
            last_repair: marking.repaired.as_ref().map(|(at, what)| MarkingRepair {
                seconds_ago: at.elapsed().as_secs(),
                what: what.clone(),
            }),
            watched: match &marking.events {
                Some(Ok(())) => "on nftables events and at the periodic check".to_owned(),
                Some(Err(e)) => format!("at the periodic check only (nftables events: {e})"),
                None => "at the periodic check".to_owned(),
            },
        }
    }
}

/// The state, even if a panic elsewhere poisoned the lock (it holds no invariant a half-done
/// update could break).
fn lock(m: &Mutex<Marking>) -> std::sync::MutexGuard<'_, Marking> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
