//! `steer run`: the controller in a foreground event loop. Events (control requests, probe
//! rounds, netlink link and routing events, SIGHUP, SIGTERM/SIGINT, kernel log records) are
//! handled one at a time by the single task that owns the controller, so no state is shared and
//! nothing needs a lock. Routing is reconciled at start, shortly after every netlink event that
//! may touch it, and every `RECONCILE_EVERY`.
//!
//! Stopping the daemon (SIGTERM, SIGINT) leaves the pinned classifier, the routing rules and
//! tables and the connection-marking table in place, so a restart or an upgrade never
//! interrupts steering; `steer stop` removes all of it.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use futures::StreamExt;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    task::JoinHandle,
};

use crate::{
    config::{self, Config, ConfigErrors},
    conntrack,
    control::{self, Call, Request, Response, ServerOptions, WanMode},
    controller::{ApplyReport, Controller, ControllerError, FailoverReport},
    health::{
        Override, RoundSummary,
        probe::{ProbeSpec, Round, spawn_prober},
    },
    routing::{self, NetEvent, Routing},
};

/// Routing drift is repaired at least this often even without a netlink event.
const RECONCILE_EVERY: Duration = Duration::from_secs(10);
/// Netlink events come in bursts (a link flap touches links, addresses and routes): reconcile
/// once the burst is over.
const RECONCILE_SETTLE: Duration = Duration::from_millis(30);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error(transparent)]
    Routing(#[from] routing::RoutingError),
    #[error("cannot start the event loop: {0}")]
    Runtime(#[from] std::io::Error),
}

/// How the event loop ended.
enum Exit {
    /// Signal: leave steering running.
    Leave,
    /// `steer stop`: tear everything down.
    Stop(tokio::sync::oneshot::Sender<Response>),
}

/// Runs the daemon until a signal or `steer stop`.
pub fn run(config_path: &Path) -> Result<(), DaemonError> {
    let config = config::load(config_path)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(config))
}

/// The probers of the configured WANs, restarted when the configuration changes.
struct Probers {
    tasks: BTreeMap<String, (ProbeSpec, Duration, JoinHandle<()>)>,
    tx: mpsc::Sender<(String, Round)>,
}

impl Probers {
    fn sync(&mut self, config: &Config) {
        self.tasks.retain(|name, (_, _, task)| {
            let keep = config.wan(name).is_some();
            if !keep {
                task.abort();
            }
            keep
        });
        for wan in &config.wans {
            let spec = ProbeSpec::from_wan(wan);
            let interval = Duration::from_millis(u64::from(wan.track.interval_ms));
            let same = self
                .tasks
                .get(&wan.name)
                .is_some_and(|(s, i, _)| *s == spec && *i == interval);
            if same {
                continue;
            }
            if let Some((_, _, old)) = self.tasks.remove(&wan.name) {
                old.abort();
            }
            let task = spawn_prober(wan.name.clone(), spec.clone(), interval, self.tx.clone());
            self.tasks.insert(wan.name.clone(), (spec, interval, task));
        }
    }
}

impl Drop for Probers {
    fn drop(&mut self) {
        for (_, _, task) in self.tasks.values() {
            task.abort();
        }
    }
}

fn summary(round: &Round) -> RoundSummary {
    RoundSummary {
        started: round.started,
        answers: round.outcomes.iter().map(|(_, o)| o.rtt()).collect(),
    }
}

fn log_failover(report: Option<FailoverReport>) {
    if let Some(r) = report {
        if r.error.is_some() {
            log::error!("{r}");
        } else {
            log::warn!("{r}");
        }
    }
}

async fn serve(config: Config) -> Result<(), DaemonError> {
    raise_fd_limit();
    let routing = Routing::new()?;
    let mut events = routing::watch()?;
    let carriers = link_states(&routing, &config).await;
    for wan in config
        .wans
        .iter()
        .filter(|w| carriers.get(&w.interface) != Some(&true))
    {
        log::warn!(
            "{}: interface {} has no carrier (or does not exist): starting down",
            wan.name,
            wan.interface
        );
    }
    let (mut ctl, report) = Controller::start(config, |iface| {
        carriers.get(iface).copied().unwrap_or(false)
    })?;
    log_apply("", &report);
    ensure_conntrack_marking(&ctl);
    reconcile(&routing, &ctl, "start").await;

    let (round_tx, mut rounds) = mpsc::channel::<(String, Round)>(64);
    let mut probers = Probers {
        tasks: BTreeMap::new(),
        tx: round_tx,
    };
    probers.sync(ctl.config());

    let (calls_tx, mut calls) = mpsc::channel::<Call>(32);
    let metrics = match ctl.config().control.metrics {
        Some(addr) => Some(control::metrics::serve(addr, calls_tx.clone()).await?),
        None => None,
    };
    let server = control::serve(ServerOptions::new(ctl.socket()), calls_tx)?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut kernel_log = match ctl.dataplane().logger() {
        // SAFETY: the logger owns its ring buffer's descriptor and keeps it open, unchanged,
        // for as long as the AsyncFd holds the logger.
        Ok(l) => Some(
            unsafe { AsyncFd::register(l) }.map_err(|e| std::io::Error::other(e.to_string()))?,
        ),
        Err(e) => {
            log::warn!("kernel-side log unavailable: {e}");
            None
        }
    };
    let mut periodic = tokio::time::interval(RECONCILE_EVERY);
    periodic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A reconcile is due at this instant (after a burst of netlink events).
    let mut due: Option<tokio::time::Instant> = None;
    log::info!("steer running: control socket {}", server.path().display());

    let exit = loop {
        let settle = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some((wan, round)) = rounds.recv() => {
                log_failover(ctl.probe_round(&wan, &summary(&round)));
                if let Some(line) = ctl.retry_pending() {
                    log::warn!("{line}");
                }
            }
            Some(event) = events.next() => match event {
                NetEvent::Link { index, name, carrier, admin_up } => {
                    log_failover(ctl.carrier(&name, carrier && admin_up));
                    if let Some(line) = ctl.lan_link(&name, Some(index)) {
                        log::warn!("{line}");
                    }
                    due.get_or_insert(tokio::time::Instant::now() + RECONCILE_SETTLE);
                }
                NetEvent::LinkGone { name, .. } => {
                    log_failover(ctl.carrier(&name, false));
                    if let Some(line) = ctl.lan_link(&name, None) {
                        log::warn!("{line}");
                    }
                    due.get_or_insert(tokio::time::Instant::now() + RECONCILE_SETTLE);
                }
                NetEvent::Changed => {
                    due.get_or_insert(tokio::time::Instant::now() + RECONCILE_SETTLE);
                }
            },
            () = settle => {
                due = None;
                reconcile(&routing, &ctl, "netlink event").await;
            }
            _ = periodic.tick() => {
                if let Some(line) = ctl.retry_pending() {
                    log::warn!("{line}");
                }
                reconcile(&routing, &ctl, "periodic check").await;
                check_conntrack_marking(&ctl).await;
            }
            Some(call) = calls.recv() => {
                if call.request == Request::Stop {
                    break Exit::Stop(call.reply);
                }
                let response = handle(&mut ctl, &routing, &mut probers, call.request).await;
                let _ = call.reply.send(response);
            }
            _ = hup.recv() => {
                log::info!("SIGHUP: reloading {}", ctl.config().path.display());
                let _ = reload(&mut ctl, &routing, &mut probers).await;
            }
            _ = term.recv() => break Exit::Leave,
            _ = int.recv() => break Exit::Leave,
            ready = readable(&mut kernel_log) => {
                if let Ok(mut guard) = ready {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            }
        }
    };
    drop(probers);
    if let Some(task) = metrics {
        task.abort();
    }
    match exit {
        Exit::Leave => {
            server.shutdown().await;
            log::info!(
                "stopping the daemon; steering keeps running with its last state (`steer stop` removes it)"
            );
            Ok(())
        }
        Exit::Stop(reply) => {
            let tables: Vec<u32> = ctl.config().wans.iter().map(|w| w.table).collect();
            let routes = routing.remove_all(&tables).await;
            for line in routes.changes.iter().chain(&routes.failures) {
                log::info!("stop: {line}");
            }
            if let Err(e) = conntrack::uninstall() {
                log::warn!("stop: {e}");
            }
            let result = ctl.teardown();
            let response = match &result {
                Ok(n) => Response::ok(
                    serde_json::json!({ "removed_pins": n, "routing": routes.changes }),
                ),
                Err(e) => Response::error(format!("stopping failed: {e}")),
            };
            // Answer first: shutting the server down waits for connections in progress, and the
            // one asking for the stop is one of them.
            let _ = reply.send(response);
            server.shutdown().await;
            log::info!("stopped: classifier detached, routing and pinned state removed");
            result.map(|_| ()).map_err(DaemonError::from)
        }
    }
}

/// Restores steer's nftables table if something removed it. `nft` runs off the event loop, so
/// probes and requests are not held up by it.
async fn check_conntrack_marking(ctl: &Controller) {
    match tokio::task::spawn_blocking(conntrack::table_present).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            log::warn!(
                "nftables table inet {} was missing: restoring it",
                conntrack::NFT_TABLE
            );
            ensure_conntrack_marking(ctl);
        }
        // Said at start and on every reload already (installing failed the same way); the
        // periodic check only repeats it at debug level.
        Ok(Err(e)) => log::debug!("{e}"),
        Err(e) => log::warn!("checking the nftables table failed: {e}"),
    }
}

fn ensure_conntrack_marking(ctl: &Controller) {
    let config = ctl.config();
    let marks: Vec<u32> = config.wans.iter().map(|w| w.mark).collect();
    if let Err(e) = conntrack::install(config.general.mark_mask, &marks) {
        log::warn!("{e}");
    }
}

async fn reconcile(routing: &Routing, ctl: &Controller, why: &str) {
    let started = Instant::now();
    let report = routing.reconcile(&routing::desired(ctl.config())).await;
    for line in &report.changes {
        log::warn!("routing ({why}): {line}");
    }
    for line in &report.failures {
        log::error!("routing ({why}): {line}");
    }
    if !report.changes.is_empty() {
        log::info!(
            "routing reconciled in {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
    }
}

async fn readable<T: std::os::fd::AsRawFd>(
    fd: &mut Option<AsyncFd<T>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyMutGuard<'_, T>> {
    match fd {
        Some(fd) => fd.readable_mut().await,
        None => std::future::pending().await,
    }
}

async fn handle(
    ctl: &mut Controller,
    routing: &Routing,
    probers: &mut Probers,
    request: Request,
) -> Response {
    match request {
        Request::Status => {
            let mut status = ctl.status();
            let routing_status = routing.status(&routing::desired(ctl.config())).await;
            status["routing"] = serde_json::to_value(routing_status).unwrap_or_default();
            Response::ok(status)
        }
        Request::Reload => match reload(ctl, routing, probers).await {
            Ok(lines) => Response::ok(serde_json::json!({ "changes": lines })),
            Err(e) => Response::error(e),
        },
        Request::Wan { name, mode } => {
            let manual = match mode {
                WanMode::Up => Some(Override::Up),
                WanMode::Down => Some(Override::Down),
                WanMode::Auto => None,
            };
            match ctl.set_manual(&name, manual) {
                Ok(report) => {
                    let message = match &report {
                        Some(r) => r.to_string(),
                        None => format!("{name}: no change in where traffic goes"),
                    };
                    log_failover(report);
                    Response::ok(serde_json::json!({ "message": message }))
                }
                Err(e) => Response::error(e),
            }
        }
        Request::Stop => unreachable!("handled by the event loop"),
    }
}

/// Reloads and logs the outcome; an invalid configuration keeps the running one.
async fn reload(
    ctl: &mut Controller,
    routing: &Routing,
    probers: &mut Probers,
) -> Result<Vec<String>, String> {
    let refused = |e: &dyn std::fmt::Display| {
        let msg = format!("reload refused, still running the previous configuration:\n{e}");
        log::error!("{msg}");
        msg
    };
    let next = config::load(&ctl.config().path).map_err(|e| refused(&e))?;
    // The link state of every interface the new file names, before anything is decided.
    let carriers = link_states(routing, &next).await;
    let report = ctl
        .reload(next, |iface| carriers.get(iface).copied().unwrap_or(false))
        .map_err(|e| refused(&e))?;
    log_apply("reload: ", &report);
    ensure_conntrack_marking(ctl);
    reconcile(routing, ctl, "reload").await;
    probers.sync(ctl.config());
    Ok(report.lines())
}

/// Logs what an apply did: warnings as warnings, failed steps as errors.
fn log_apply(prefix: &str, report: &ApplyReport) {
    for line in report.lines() {
        if report.failures.contains(&line) {
            log::error!("{prefix}{line}");
        } else if report.warnings.contains(&line) {
            log::warn!("{prefix}{line}");
        } else {
            log::info!("{prefix}{line}");
        }
    }
}

/// Carrier (and admin up) of every WAN interface of `config`, by interface name, from one link
/// dump. If the dump fails every WAN is taken to have carrier: its probes decide.
async fn link_states(routing: &Routing, config: &Config) -> BTreeMap<String, bool> {
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

/// Raises the soft limit on open files to the hard one: every slot trie of the prefix sets is
/// an open map (up to 4 x 256), and probes open sockets on top.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on a zeroed struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                log::warn!(
                    "cannot raise the open-file limit: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}
