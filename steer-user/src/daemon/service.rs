//! What the daemon tells its service manager (systemd's `Type=notify`): `READY=1` once steering
//! is in place, `RELOADING=1` / `READY=1` around a reload, `STOPPING=1`, and a `STATUS=` line
//! after every change of where traffic goes.
//!
//! Ready means more than "the socket is bound": the classifier is attached (done by the time
//! the controller has started), the kernel's rules and WAN tables read back as the
//! configuration asks, and every WAN's health has been checked by its first probe round, so a
//! unit ordered `After=steer.service` finds traffic classified onto WANs that were seen to work
//! (or taken down), not the optimistic carrier-only start state.
//!
//! A probe round always ends within its timeout, and routing is retried on every netlink event
//! and every 10 s; the deadline only bounds the wait when the kernel keeps refusing (no
//! CAP_NET_ADMIN, a table another program holds). Then the daemon says it is ready all the
//! same, with a `STATUS=` and a warning naming what is not in place: never reporting ready
//! would have the service manager kill and restart it in a loop that cannot fix either.

use std::{collections::BTreeSet, time::Duration};

use crate::{
    controller::Controller,
    notify::{self, Notifier},
};

use super::ProberKey;

/// Slack on top of the slowest probe timeout before readiness stops waiting for first rounds.
const FIRST_ROUND_SLACK: Duration = Duration::from_secs(5);

pub(super) struct Service {
    notifier: Option<Notifier>,
    /// Probers whose first round has not come back; `None` once `READY=1` was sent.
    waiting: Option<BTreeSet<ProberKey>>,
    deadline: tokio::time::Instant,
    /// The `STATUS=` last sent, so that an unchanged one is not sent again.
    last_status: std::cell::RefCell<String>,
}

impl Service {
    /// Waits for the first round of each of `probers` (those running after start).
    pub(super) fn new<'a>(
        notifier: Option<Notifier>,
        ctl: &Controller,
        probers: impl IntoIterator<Item = &'a ProberKey>,
    ) -> Service {
        let slowest = ctl
            .config()
            .wans
            .iter()
            .map(|w| Duration::from_millis(u64::from(w.track.timeout_ms)))
            .max()
            .unwrap_or_default();
        Service {
            notifier,
            waiting: Some(probers.into_iter().cloned().collect()),
            deadline: tokio::time::Instant::now() + slowest * 2 + FIRST_ROUND_SLACK,
            last_status: Default::default(),
        }
    }

    pub(super) fn is_ready(&self) -> bool {
        self.waiting.is_none()
    }

    /// A probe round of `key` came back (and the controller has taken it).
    pub(super) fn round(&mut self, key: &ProberKey) {
        if let Some(waiting) = &mut self.waiting {
            waiting.remove(key);
        }
    }

    /// Probers were stopped (VRRP holds a WAN down, a reload removed it): no first round of
    /// theirs will come.
    pub(super) fn probers_now<'a>(&mut self, running: impl IntoIterator<Item = &'a ProberKey>) {
        if let Some(waiting) = &mut self.waiting {
            let running: BTreeSet<&ProberKey> = running.into_iter().collect();
            waiting.retain(|k| running.contains(k));
        }
    }

    /// Sends `READY=1` once every first round is in and routing is in sync, or the deadline
    /// passed.
    pub(super) async fn ready_if_due(&mut self, ctl: &Controller) {
        let Some(waiting) = &self.waiting else { return };
        let late = tokio::time::Instant::now() >= self.deadline;
        if !waiting.is_empty() && !late {
            return;
        }
        // Read back only once the probes are in: it is a netlink dump.
        let routed = ctl.routing_in_sync().await;
        if !routed && !late {
            return;
        }
        let mut missing: Vec<String> = waiting.iter().map(|(w, f)| format!("{w} {f}")).collect();
        if !missing.is_empty() {
            missing = vec![format!("no first probe round of {}", missing.join(", "))];
        }
        if !routed {
            missing.push("routing not in sync (`steer status` says what)".to_owned());
        }
        self.waiting = None;
        let mut status = ctl.summary();
        if !missing.is_empty() {
            log::warn!("ready, but: {}", missing.join("; "));
            status = format!("NOT IN PLACE: {}; {status}", missing.join("; "));
        }
        let line = format!("STATUS={status}");
        notify::send(self.notifier.as_ref(), &["READY=1", &line]);
        *self.last_status.borrow_mut() = format!("STATUS={}", ctl.summary());
        log::info!("ready: {status}");
    }

    /// Resolves when readiness stops waiting for first rounds (never once ready).
    pub(super) async fn deadline(&self) {
        if self.waiting.is_none() {
            return std::future::pending().await;
        }
        tokio::time::sleep_until(self.deadline).await;
    }

    /// Tells the service manager where traffic goes, if that changed since it was last told
    /// (a failover, a gateway a DHCP lease brought, a LAN interface that appeared): called
    /// after every event.
    pub(super) fn status(&self, ctl: &Controller) {
        if self.is_ready() {
            let status = format!("STATUS={}", ctl.summary());
            if *self.last_status.borrow() != status {
                notify::send(self.notifier.as_ref(), &[&status]);
                *self.last_status.borrow_mut() = status;
            }
        }
    }

    /// A reload starts. Before readiness nothing is said: `READY=1` is still to come.
    pub(super) fn reloading(&self) {
        if self.is_ready() {
            let now = notify::monotonic_usec();
            notify::send(
                self.notifier.as_ref(),
                &["RELOADING=1", &now, "STATUS=reloading the configuration"],
            );
        }
    }

    /// A reload ended (applied or refused: either way a configuration runs).
    pub(super) fn reloaded(&self, ctl: &Controller, refused: bool) {
        if self.is_ready() {
            let status = format!(
                "STATUS={}{}",
                if refused {
                    "reload refused, previous configuration kept; "
                } else {
                    ""
                },
                ctl.summary()
            );
            notify::send(self.notifier.as_ref(), &["READY=1", &status]);
            // The refusal stays said until where traffic goes changes.
            *self.last_status.borrow_mut() = format!("STATUS={}", ctl.summary());
        }
    }

    pub(super) fn stopping(&self, teardown: bool) {
        let status = if teardown {
            "STATUS=stopping: removing steering (steer stop)"
        } else {
            "STATUS=stopping the daemon; steering stays in place"
        };
        notify::send(self.notifier.as_ref(), &["STOPPING=1", status]);
    }
}
