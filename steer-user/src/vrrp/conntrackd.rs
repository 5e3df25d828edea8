//! conntrackd (Debian `conntrackd`, FT-FW mode) on a mastership change, as its primary-backup
//! script and the OpenWrt HA guide do by hand:
//!
//! - becoming master, before the addresses move and the WANs come up: `-c` commits the external
//!   cache (the peer's connections) into the kernel's table; after them (as the script runs
//!   beside keepalived's own address moves), `-f` flushes both caches, `-R` resynchronises the
//!   internal cache with the kernel, `-B` sends a bulk update to the peer;
//! - becoming backup: `-t` shortens the kernel's timers (the zombie entries of the old master
//!   expire), `-n` asks the new master for a resynchronisation;
//! - fault or shutdown: `-t`.
//!
//! Each step is run as `conntrackd -C <config> <flag>` with the instance's step timeout; a
//! failure is reported and the next steps still run (the takeover does not wait for it), but
//! after a step that timed out (a conntrackd that does not answer) the others are skipped: a
//! hung conntrackd holds the addresses back one timeout, not one per step.

use std::{path::Path, time::Duration};

use super::command;
use crate::status::ReportLine;

/// The step of becoming master that comes before the addresses.
pub const MASTER: &[(&str, &str)] = &[("-c", "commit the external cache")];
/// The steps of becoming master that come after the addresses and the WANs.
pub const MASTER_AFTER: &[(&str, &str)] = &[
    ("-f", "flush the caches"),
    ("-R", "resync the internal cache with the kernel"),
    ("-B", "send a bulk update"),
];
/// The steps of becoming backup.
pub const BACKUP: &[(&str, &str)] = &[
    ("-t", "shorten the kernel's timers"),
    ("-n", "request a resync"),
];
/// The steps of a fault or a shutdown.
pub const FAULT: &[(&str, &str)] = &[("-t", "shorten the kernel's timers")];

/// What [`steps`] did: one line per step, and whether conntrackd stopped answering (the
/// caller skips the steps it would run next for the same change).
#[derive(Debug, Default)]
pub struct Ran {
    pub lines: Vec<ReportLine>,
    pub hung: bool,
}

/// Runs `steps`; one line per step.
pub async fn steps(
    instance: &str,
    config: &Path,
    steps: &[(&str, &str)],
    timeout: Duration,
) -> Ran {
    let conf = config.to_string_lossy();
    let mut out = Vec::new();
    for (i, (flag, what)) in steps.iter().enumerate() {
        let started = std::time::Instant::now();
        match command::run("conntrackd", &["-C", &conf, flag], &[], timeout).await {
            Ok(took) => out.push(ReportLine::info(format!(
                "vrrp {instance}: conntrackd {flag} ({what}) in {:.1} ms",
                took.as_secs_f64() * 1e3
            ))),
            Err(e) => {
                out.push(ReportLine::error(format!(
                    "vrrp {instance}: conntrackd {flag} ({what}) failed: {e}"
                )));
                if started.elapsed() >= timeout {
                    let skipped: Vec<&str> = steps[i + 1..].iter().map(|(f, _)| *f).collect();
                    if !skipped.is_empty() {
                        out.push(ReportLine::error(format!(
                            "vrrp {instance}: conntrackd does not answer: {} skipped",
                            skipped.join(", ")
                        )));
                    }
                    return Ran {
                        lines: out,
                        hung: true,
                    };
                }
            }
        }
    }
    Ran {
        lines: out,
        hung: false,
    }
}
