//! `steer run`: the controller in a foreground event loop. Events (control requests, probe
//! rounds, netlink link and routing events, SIGHUP, SIGTERM/SIGINT, kernel log records) are
//! handled one at a time by the single task that owns the controller, so no state is shared and
//! nothing needs a lock. This module only turns events into controller calls and writes their
//! reports to the log; every kernel change is the controller's. Routing is reconciled at start,
//! shortly after every netlink event that may touch it, and every `RECONCILE_EVERY`.
//!
//! Stopping the daemon (SIGTERM, SIGINT) leaves the pinned classifier, the routing rules and
//! tables and the connection-marking table in place, so a restart or an upgrade never
//! interrupts steering; `steer stop` removes all of it.

use std::{collections::BTreeMap, path::Path, time::Duration};

use futures::StreamExt;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    task::JoinHandle,
};

use crate::{
    config::{self, Config, ConfigErrors},
    control::{self, Call, Request, Response, ServerOptions, WanMode},
    controller::{Controller, ControllerError, FailoverReport},
    health::{
        Override,
        probe::{ProbeSpec, Round, spawn_prober},
    },
    instance,
    model::Family,
    routing::{self, NetEvent},
    status::ReportLine,
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
    #[error(transparent)]
    Instance(#[from] instance::InstanceError),
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

/// Which prober: a WAN and an address family.
type ProberKey = (String, Family);

/// The probers of the configured WANs, one per WAN and family with probe targets, restarted
/// when the configuration changes.
struct Probers {
    tasks: BTreeMap<ProberKey, (ProbeSpec, Duration, JoinHandle<()>)>,
    tx: mpsc::Sender<(ProberKey, Round)>,
}

impl Probers {
    /// Probes the WANs of the running configuration (each family with targets), except those
    /// VRRP holds down.
    fn sync(&mut self, ctl: &Controller) {
        let config = ctl.config();
        let wanted: BTreeMap<ProberKey, (ProbeSpec, Duration)> = config
            .wans
            .iter()
            .filter(|wan| ctl.vrrp_probed(&wan.name))
            .flat_map(|wan| {
                let interval = Duration::from_millis(u64::from(wan.track.interval_ms));
                Family::ALL.into_iter().filter_map(move |family| {
                    let spec = ProbeSpec::from_wan(wan, family)?;
                    Some(((wan.name.clone(), family), (spec, interval)))
                })
            })
            .collect();
        self.tasks.retain(|key, (spec, interval, task)| {
            let keep = wanted.get(key) == Some(&(spec.clone(), *interval));
            if !keep {
                task.abort();
            }
            keep
        });
        for (key, (spec, interval)) in wanted {
            if self.tasks.contains_key(&key) {
                continue;
            }
            let task = spawn_prober(key.clone(), spec.clone(), interval, self.tx.clone());
            self.tasks.insert(key, (spec, interval, task));
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

fn log_lines<'a>(prefix: &str, lines: impl IntoIterator<Item = &'a ReportLine>) {
    for line in lines {
        line.log(prefix);
    }
}

async fn serve(config: Config) -> Result<(), DaemonError> {
    raise_fd_limit();
    // Everything that can refuse this daemon comes before the first change to the system: the
    // namespace's lock, the control socket, the metrics port (and, in the controller, the pin
    // directory's lock).
    let _instance = instance::lock_namespace()?;
    let (calls_tx, mut calls) = mpsc::channel::<Call>(32);
    let server = control::serve(
        ServerOptions::new(config.control.socket.clone()),
        calls_tx.clone(),
    )?;
    let metrics = match config.control.metrics {
        Some(addr) => Some(control::metrics::serve(addr, calls_tx).await?),
        None => None,
    };
    let mut events = routing::watch()?;
    let (mut ctl, report) = Controller::start(config).await?;
    log_lines("", &report.lines());
    let (vrrp_tx, mut vrrp_events) = mpsc::unbounded_channel();
    log_lines("", &ctl.vrrp_start(vrrp_tx).await);

    let (round_tx, mut rounds) = mpsc::channel::<(ProberKey, Round)>(64);
    let mut probers = Probers {
        tasks: BTreeMap::new(),
        tx: round_tx,
    };
    probers.sync(&ctl);
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut kernel_log = match ctl.kernel_logger() {
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
            Some(event) = vrrp_events.recv() => {
                log_lines("", &ctl.vrrp_event(event).await);
                probers.sync(&ctl);
            }
            Some(((wan, family), round)) = rounds.recv() => {
                let failover = ctl.probe_round(&wan, family, &round);
                after_failover(&mut ctl, failover).await;
                log_lines("", ctl.retry_pending().iter());
            }
            Some(event) = events.next() => {
                match event {
                    NetEvent::Link { index, name, carrier, admin_up } => {
                        let failover = ctl.carrier(&name, carrier && admin_up);
                        after_failover(&mut ctl, failover).await;
                        log_lines("", ctl.lan_link(&name, Some(index)).iter());
                    }
                    NetEvent::LinkGone { name, .. } => {
                        let failover = ctl.carrier(&name, false);
                        after_failover(&mut ctl, failover).await;
                        log_lines("", ctl.lan_link(&name, None).iter());
                    }
                    NetEvent::Changed => {}
                }
                due.get_or_insert(tokio::time::Instant::now() + RECONCILE_SETTLE);
            }
            () = settle => {
                due = None;
                log_lines("", &ctl.refresh_system().await);
                log_lines("", &ctl.reconcile_routing("netlink event").await);
            }
            _ = periodic.tick() => {
                log_lines("", &ctl.vrrp_tick());
                log_lines("", ctl.retry_pending().iter());
                log_lines("", &ctl.refresh_system().await);
                log_lines("", &ctl.reconcile_routing("periodic check").await);
                log_lines("", ctl.check_conntrack_marking().await.iter());
            }
            Some(call) = calls.recv() => {
                if call.request == Request::Stop {
                    break Exit::Stop(call.reply);
                }
                let response = handle(&mut ctl, &mut probers, call.request).await;
                let _ = call.reply.send(response);
            }
            _ = hup.recv() => {
                log::info!("SIGHUP: reloading {}", ctl.config().path.display());
                let _ = reload(&mut ctl, &mut probers).await;
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
    log_lines("", &ctl.vrrp_shutdown().await);
    drop(probers);
    drop(kernel_log);
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
            let result = ctl.stop().await;
            let response = match &result {
                Ok(done) => {
                    for line in done.routing.changes.iter().chain(&done.routing.failures) {
                        log::info!("stop: {line}");
                    }
                    if let Some(e) = &done.nft_error {
                        log::warn!("stop: {e}");
                    }
                    Response::ok(serde_json::json!({
                        "removed_pins": done.pins, "routing": done.routing.changes,
                    }))
                }
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

/// Logs a WAN state change; a WAN that came back gets the flows of failback-moving policies.
async fn after_failover(ctl: &mut Controller, report: Option<FailoverReport>) {
    let Some(report) = report else { return };
    report.line().log("");
    if report.up {
        log_lines("", ctl.move_flows_back(&report.wan).await.iter());
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

async fn handle(ctl: &mut Controller, probers: &mut Probers, request: Request) -> Response {
    match request {
        Request::Status => match serde_json::to_value(ctl.status().await) {
            Ok(body) => Response::ok(body),
            Err(e) => Response::error(format!("cannot encode the status: {e}")),
        },
        Request::Reload => match reload(ctl, probers).await {
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
                    after_failover(ctl, report).await;
                    Response::ok(serde_json::json!({ "message": message }))
                }
                Err(e) => Response::error(e.to_string()),
            }
        }
        Request::Gateway { name, gateway } => match ctl.set_gateway(&name, gateway).await {
            Ok(lines) => {
                log_lines("", &lines);
                let text: Vec<String> = lines.iter().map(|l| l.text.clone()).collect();
                Response::ok(serde_json::json!({ "message": text.join("\n") }))
            }
            Err(e) => Response::error(e.to_string()),
        },
        Request::Stop => unreachable!("handled by the event loop"),
    }
}

/// Reloads and logs the outcome; an invalid configuration keeps the running one.
async fn reload(ctl: &mut Controller, probers: &mut Probers) -> Result<Vec<ReportLine>, String> {
    let refused = |e: &dyn std::fmt::Display| {
        let msg = format!("reload refused, still running the previous configuration:\n{e}");
        log::error!("{msg}");
        msg
    };
    let next = config::load(&ctl.config().path).map_err(|e| refused(&e))?;
    let report = ctl.reload(next).await.map_err(|e| refused(&e))?;
    let lines = report.lines();
    log_lines("reload: ", &lines);
    log_lines("reload: ", &ctl.vrrp_sync().await);
    probers.sync(ctl);
    Ok(lines)
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
