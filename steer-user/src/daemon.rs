//! `steer run`: the controller in a foreground event loop. Events (control requests, probe
//! rounds, netlink link and routing events, nftables events, SIGHUP, SIGTERM/SIGINT, kernel log
//! records) are handled one at a time by the single task that owns the controller, so no state
//! is shared (read-only snapshots aside) and nothing needs a lock. This module only turns
//! events into controller calls and writes their reports to the log; every kernel change is
//! the controller's. Routing is reconciled at start, shortly after every netlink event that may
//! touch it, and every `RECONCILE_EVERY`; steer's nftables table is checked shortly after every
//! change that touches it, and as often.
//! Work that would hold the loop is done elsewhere: a reload's reading and compiling, conntrack
//! walks, and answers that grow with the data (`steer set NAME list`: the loop takes a snapshot
//! that shares the entries, [`control::answer`] encodes it on a thread of its own).
//!
//! Stopping the daemon (SIGTERM, SIGINT) leaves the pinned classifier, the routing rules and
//! tables and the connection-marking table in place, so a restart or an upgrade never
//! interrupts steering; `steer stop` removes all of it.
//!
//! Under a service manager the daemon reports readiness, reloads and stopping ([`service`]).

mod service;

use std::{collections::BTreeMap, path::Path, time::Duration};

use futures::StreamExt;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
    task::JoinHandle,
};

use crate::{
    capabilities,
    config::{self, Config, ConfigErrors},
    conntrack::{Connection, ConntrackError},
    control::{
        self, Answer, Call, Replier, Request, Response, ServerOptions, WanMode, answer,
        proto::SetOp,
    },
    controller::{Controller, ControllerError, FailoverReport, FlowsBack, Flush, Prepared},
    health::{
        Override, Schedule,
        probe::{ProbeSpec, ProberEvent, spawn_prober},
    },
    instance,
    memory_limit::{MemoryLimit, TooSmallToStart},
    model::{Family, footprint::Bytes},
    notify::Notifier,
    routing::{self, NetEvent},
    status::ReportLine,
};

/// Routing drift is repaired at least this often even without a netlink event.
const RECONCILE_EVERY: Duration = Duration::from_secs(10);
/// Netlink events come in bursts (a link flap touches links, addresses and routes): reconcile
/// once the burst is over.
const RECONCILE_SETTLE: Duration = Duration::from_millis(30);
/// After a check of steer's nftables table that repaired it, the next one an nftables event
/// asks for waits this long (the repair's own events bring one, which finds the table in
/// place): a program that keeps rewriting the table, at whatever pace, gets it back at most
/// this often, not in a loop of repairs and the events they cause.
const MARKING_REPAIR_GAP: Duration = Duration::from_secs(1);

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
    #[error(transparent)]
    Memory(#[from] TooSmallToStart),
    #[error("cannot start the event loop: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("{0}")]
    Dns(String),
    #[error(transparent)]
    Vips(#[from] crate::vrrp::vips::Clashes),
    #[error(transparent)]
    Capabilities(#[from] crate::capabilities::Missing),
}

/// How the event loop ended.
enum Exit {
    /// Signal: leave steering running.
    Leave,
    /// `steer stop`: tear everything down.
    Stop(Replier),
}

/// Runs the daemon until a signal or `steer stop`.
pub fn run(config_path: &Path) -> Result<(), DaemonError> {
    // SIGHUP, SIGTERM and SIGINT are taken before anything else: their default action ends
    // the process, so a reload asked for while the daemon starts (a list updater, a DHCP hook;
    // the start reads lists of a million lines) or a `systemctl restart` would kill the start
    // halfway, leaving its socket behind and maps pinned with no link. A SIGHUP that comes
    // before the daemon runs is kept, and reloads once it does; SIGTERM and SIGINT end the
    // start at its next safe point (see `serve`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let signals = {
        let _entered = runtime.enter();
        Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        }
    };
    // Before a list is read: a start the limit cannot hold is refused, not OOM-killed, and so
    // is a list that cannot be read within it. Nothing is held yet (an earlier daemon's maps,
    // if any, are counted once the pin directory is opened, by the sets' count).
    let limit = MemoryLimit::of_this_process();
    if let Some(limit) = &limit {
        limit.admit_start()?;
        log::info!(
            "memory limit {} ({}): changes that would not fit it are refused",
            Bytes(limit.bytes),
            limit.file.display()
        );
    }
    let budget = limit.map(|limit| config::ListBudget::new(limit, 0, 0));
    let (config, inputs) = config::load_stamped_within(config_path, budget)?;
    for wait in config::take_waits() {
        log::info!("{wait}");
    }
    let needs = capabilities::for_run(&config, capabilities::unprivileged_port_start());
    capabilities::require("run", &needs)?;
    // A broken NOTIFY_SOCKET must not keep steering from starting: the service manager then
    // times the start out, which says more than a refusal here.
    let notifier = Notifier::from_env().unwrap_or_else(|e| {
        log::warn!("{e}: readiness is not reported");
        None
    });
    runtime.block_on(serve(config, inputs, notifier, signals))
}

/// The signals the daemon handles, taken as it starts.
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// The stop signal (SIGTERM or SIGINT) that came by now, if one did.
    async fn stop_asked(&mut self) -> Option<&'static str> {
        // The runtime reads the signals that came meanwhile (its self-pipe) when a task yields.
        tokio::task::yield_now().await;
        tokio::select! {
            biased;
            _ = self.term.recv() => Some("SIGTERM"),
            _ = self.int.recv() => Some("SIGINT"),
            () = std::future::ready(()) => None,
        }
    }
}

/// Which prober: a WAN and an address family.
type ProberKey = (String, Family);

/// The probers of the configured WANs, one per WAN and family with probe targets, and the DNS
/// forwarder and snooper, restarted when the configuration changes.
struct Probers {
    tasks: BTreeMap<ProberKey, Prober>,
    tx: mpsc::Sender<ProberEvent<ProberKey>>,
    dns: crate::dns::service::Services,
    learner: std::sync::Arc<dyn crate::dns::Learn>,
}

impl Probers {
    /// Probes the WANs of the running configuration (each family with targets), except those
    /// VRRP holds down, and runs the DNS services it asks for. Returns what the DNS services
    /// report (a forwarder that could not bind, ...).
    fn sync(&mut self, ctl: &Controller) -> Vec<ReportLine> {
        let config = ctl.config();
        let wanted: BTreeMap<ProberKey, ProbeSpec> = config
            .wans
            .iter()
            .filter(|wan| ctl.vrrp_probed(&wan.name))
            .flat_map(|wan| {
                Family::ALL.into_iter().filter_map(move |family| {
                    let spec = ProbeSpec::from_wan(wan, family)?;
                    Some(((wan.name.clone(), family), spec))
                })
            })
            .collect();
        self.tasks.retain(|key, prober| {
            let keep = wanted.get(key) == Some(&prober.spec);
            if !keep {
                prober.task.abort();
            }
            keep
        });
        for (key, spec) in wanted {
            if self.tasks.contains_key(&key) {
                continue;
            }
            let (pace, schedule) = watch::channel(schedule_of(ctl, &key, &spec));
            let task = spawn_prober(key.clone(), spec.clone(), schedule, self.tx.clone());
            self.tasks.insert(key, Prober { spec, task, pace });
        }
        self.pace(ctl);
        self.dns.sync(config, std::sync::Arc::clone(&self.learner))
    }

    /// Hands every prober the pace the controller decides now (a change takes effect at once;
    /// an unchanged one wakes nobody).
    fn pace(&self, ctl: &Controller) {
        for (key, prober) in &self.tasks {
            let wanted = schedule_of(ctl, key, &prober.spec);
            prober.pace.send_if_modified(|s| {
                let changed = *s != wanted;
                *s = wanted;
                changed
            });
        }
    }
}

/// One prober: what it probes, its task, and the pace it follows.
struct Prober {
    spec: ProbeSpec,
    task: JoinHandle<()>,
    pace: watch::Sender<Schedule>,
}

/// The pace the controller decides for the prober of `key` (its timeout-long rounds at the
/// configured interval when the WAN is unknown to it).
fn schedule_of(ctl: &Controller, key: &ProberKey, spec: &ProbeSpec) -> Schedule {
    ctl.probe_schedule(&key.0, key.1).unwrap_or(Schedule {
        interval: spec.timeout,
        late_after: spec.timeout,
        answer_by: None,
    })
}

impl Drop for Probers {
    fn drop(&mut self) {
        for prober in self.tasks.values() {
            prober.task.abort();
        }
    }
}

fn log_lines<'a>(prefix: &str, lines: impl IntoIterator<Item = &'a ReportLine>) {
    for line in lines {
        line.log(prefix);
    }
}

async fn serve(
    config: Config,
    inputs: config::Inputs,
    notifier: Option<Notifier>,
    mut signals: Signals,
) -> Result<(), DaemonError> {
    raise_fd_limit();
    // Everything that can refuse this daemon comes before the first change to the system: the
    // namespace's lock, the control socket, the metrics port, the DNS listen addresses and
    // snoop queue, a VIP that is an address steer did not add (and, in the controller, the pin
    // directory's lock).
    let _instance = instance::lock_namespace()?;
    let (calls_tx, mut calls) = mpsc::channel::<Call>(32);
    let mut server = control::serve(
        ServerOptions::new(config.control.socket.clone()),
        calls_tx.clone(),
    )?;
    let metrics = match config.control.metrics {
        Some(addr) => Some(control::metrics::serve(addr, calls_tx).await?),
        None => None,
    };
    // The DNS forwarder's listen addresses and the snoop queue, bound (not served) here.
    let dns = crate::dns::service::Services::bind(&config).map_err(DaemonError::Dns)?;
    for note in crate::vrrp::vips::check(&config.path, &config.vrrp).await? {
        log::warn!("{note}");
    }
    // The last point where a stop signal leaves the system as it was: nothing is in the
    // kernel yet. One that comes later is handled once the start is complete (the loop
    // below): stopping halfway would leave maps pinned with no link.
    if let Some(sig) = signals.stop_asked().await {
        log::info!("{sig} during the start: stopping before anything was changed in the kernel");
        return Ok(());
    }
    let mut events = routing::watch()?;
    // Changes to steer's nftables table (a firewall restart flushes the ruleset): checked once
    // their burst is over, not at the next periodic check, while port forwards' replies would
    // leave by the main table's WAN.
    let nft_events = crate::conntrack::watch::watch();
    let (mut ctl, report) = Controller::start(config).await?;
    let mut nft_events = match nft_events {
        Ok(watch) => {
            ctl.nftables_events(Ok(()));
            Some(watch)
        }
        Err(e) => {
            log::warn!("{}", nft_events_lost(&e));
            ctl.nftables_events(Err(e.to_string()));
            None
        }
    };
    crate::heap::return_freed_memory();
    ctl.remember_inputs(inputs);
    log_lines("", &report.lines());
    let (vrrp_tx, mut vrrp_events) = mpsc::unbounded_channel();
    log_lines("", &ctl.vrrp_start(vrrp_tx).await);

    let (round_tx, mut rounds) = mpsc::channel::<ProberEvent<ProberKey>>(64);
    let mut probers = Probers {
        tasks: BTreeMap::new(),
        tx: round_tx,
        dns,
        learner: ctl.dns_learner(),
    };
    let dns = probers.sync(&ctl);
    log_lines("", &dns);
    let mut service = service::Service::new(notifier, &ctl, probers.tasks.keys());
    if let Some(e) = dns
        .iter()
        .find(|l| l.severity == crate::status::Severity::Error)
    {
        return Err(DaemonError::Dns(e.text.clone()));
    }
    // Expired learned hosts are removed within this of their expiry.
    let mut expiry = tokio::time::interval(Duration::from_secs(1));
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let Signals {
        mut hup,
        mut term,
        mut int,
    } = signals;
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
    let mut reloads = Reloads::default();
    // The next sample of the WAN traffic counters (its pace follows the traffic).
    let mut next_sample = tokio::time::Instant::now();
    let mut periodic = tokio::time::interval(RECONCILE_EVERY);
    periodic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A reconcile is due at this instant (after a burst of netlink events).
    let mut due: Option<tokio::time::Instant> = None;
    // A check of steer's nftables table is due at this instant (after a burst of nftables
    // events), and not before `marking_quiet` (a second after a repair).
    let (mut marking_due, mut marking_quiet): (Option<tokio::time::Instant>, _) =
        (None, tokio::time::Instant::now());
    log::info!("steer running: control socket {}", server.path().display());

    let (listed_tx, mut listed) = mpsc::unbounded_channel::<Listed>();
    // What answers that grow with the data (`steer set NAME list`) may hold at once.
    let big_answers = answer::Budget::default();
    let exit = loop {
        // Whatever the last event failed over gets its connections cut, in the background.
        let _ = flush_connections(&mut ctl);
        // ... and, with source-specific IPv6, its prefix deprecated on the LAN.
        log_lines("", ctl.deprecate_dead_prefixes().iter());
        // After the event that changed the state was handled (routes, jobs, log): the next
        // single-WAN failure is one word written again.
        log_lines("", ctl.refresh_standbys().iter());
        service.ready_if_due(&ctl).await;
        service.status(&ctl);
        let settle = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let marking_settle = async {
            match marking_due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(event) = vrrp_events.recv() => {
                log_lines("", &ctl.vrrp_event(event).await);
                log_lines("", &probers.sync(&ctl));
                service.probers_now(probers.tasks.keys());
                service.status(&ctl);
            }
            Some(event) = rounds.recv() => {
                match event {
                    ProberEvent::Round(key, round) => {
                        let failover = ctl.probe_round(&key.0, key.1, &round);
                        service.round(&key);
                        after_failover(&mut ctl, &service, failover, &listed_tx);
                        log_lines("", ctl.retry_pending().iter());
                    }
                    ProberEvent::Late(key, started, answered) => {
                        ctl.probe_late(&key.0, key.1, started, answered);
                    }
                }
                probers.pace(&ctl);
            }
            () = service.deadline() => {}
            Some(event) = events.next() => {
                match event {
                    NetEvent::Link { index, name, carrier, admin_up } => {
                        let failover = ctl.carrier(&name, carrier && admin_up);
                        after_failover(&mut ctl, &service, failover, &listed_tx);
                        log_lines("", ctl.lan_link(&name, Some(index)).iter());
                        log_lines("", &ctl.wan_link(&name));
                        if ctl.is_lan(&name) {
                            // A LAN bridge that appears may be br_netfilter's: at once, not
                            // at the next periodic check.
                            log_lines("", ctl.check_conntrack_marking().await.iter());
                        }
                        probers.pace(&ctl);
                    }
                    NetEvent::LinkGone { name, .. } => {
                        let failover = ctl.carrier(&name, false);
                        after_failover(&mut ctl, &service, failover, &listed_tx);
                        log_lines("", ctl.lan_link(&name, None).iter());
                        log_lines("", &ctl.wan_link(&name));
                        probers.pace(&ctl);
                    }
                    NetEvent::Changed => {}
                }
                due.get_or_insert(tokio::time::Instant::now() + RECONCILE_SETTLE);
            }
            () = settle => {
                due = None;
                ctl.addresses_may_have_changed();
                log_lines("", &ctl.vrrp_addresses_changed().await);
                log_lines("", &ctl.refresh_system().await);
                log_lines("", &ctl.reconcile_routing("netlink event").await);
            }
            touched = nft_touched(&mut nft_events) => {
                match touched {
                    Ok(()) => {
                        let at = tokio::time::Instant::now() + RECONCILE_SETTLE;
                        marking_due.get_or_insert(at.max(marking_quiet));
                    }
                    Err(e) => {
                        log::warn!("{}", nft_events_lost(&e));
                        ctl.nftables_events(Err(e.to_string()));
                        nft_events = None;
                    }
                }
            }
            () = marking_settle => {
                marking_due = None;
                let line = ctl.check_conntrack_marking().await;
                if line.is_some() {
                    marking_quiet = tokio::time::Instant::now() + MARKING_REPAIR_GAP;
                }
                log_lines("", line.iter());
            }
            _ = expiry.tick() => {
                let n = ctl.expire_learned();
                if n > 0 {
                    log::debug!("dns: {n} learned hosts expired");
                }
                log_lines("", &ctl.expire_runtime());
            }
            () = tokio::time::sleep_until(next_sample), if ctl.samples_traffic() => {
                let sampled = ctl.sample_traffic();
                next_sample = tokio::time::Instant::now() + sampled.next;
                if sampled.changed {
                    probers.pace(&ctl);
                }
            }
            _ = periodic.tick() => {
                if let Some(line) = server.restore_if_removed() {
                    log::warn!("{line}");
                }
                ctl.unmap_after_edits();
                log_lines("", &ctl.vrrp_tick().await);
                log_lines("", ctl.retry_pending().iter());
                log_lines("", &ctl.check_links());
                log_lines("", &ctl.refresh_system().await);
                log_lines("", &ctl.reconcile_routing("periodic check").await);
                log_lines("", ctl.check_conntrack_marking().await.iter());
            }
            Some(call) = calls.recv() => {
                if call.client_gone() {
                    log::warn!("{}", dropped(&call));
                } else {
                    match call.request {
                        Request::Stop => break Exit::Stop(call.reply),
                        Request::Reload => reloads.request(&ctl, &service, Some(call.reply)),
                        request => handle(&mut ctl, &service, request, &listed_tx, &big_answers)
                            .await
                            .send(call.reply),
                    }
                }
            }
            _ = hup.recv() => {
                log::info!("SIGHUP: reloading {}", ctl.config().path.display());
                reloads.request(&ctl, &service, None);
            }
            Some(flows) = listed.recv() => move_flows_back(&ctl, flows),
            (prepared, waiting) = reloads.prepared() => {
                reloads
                    .finish(&mut ctl, &mut probers, &mut service, prepared, waiting)
                    .await;
            }
            _ = term.recv() => {
                log::info!("SIGTERM");
                break Exit::Leave;
            }
            _ = int.recv() => {
                log::info!("SIGINT");
                break Exit::Leave;
            }
            ready = readable(&mut kernel_log) => {
                if let Ok(mut guard) = ready {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            }
        }
    };
    service.stopping(matches!(exit, Exit::Stop(_)));
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
                    let changes = done.routing.changes.iter().map(|c| &c.line);
                    for line in changes.chain(&done.routing.failures) {
                        log::info!("stop: {line}");
                    }
                    if let Some(e) = &done.nft_error {
                        log::warn!("stop: {e}");
                    }
                    if done.vips_removed > 0 {
                        log::info!("stop: {} VRRP virtual addresses removed", done.vips_removed);
                    }
                    if let Some(e) = &done.vip_error {
                        log::warn!("stop: removing VRRP virtual addresses: {e}");
                    }
                    Response::ok(serde_json::json!({
                        "removed_pins": done.pins, "routing": done.routing.changes,
                        "removed_vips": done.vips_removed,
                    }))
                }
                Err(e) => Response::error(format!("stopping failed: {e}")),
            };
            // Answer first: shutting the server down waits for connections in progress, and the
            // one asking for the stop is one of them.
            let _ = reply.send(response);
            server.shutdown().await;
            match &result {
                Ok(_) => {
                    log::info!("stopped: classifier detached, routing and pinned state removed")
                }
                Err(e) => log::error!("stopping failed: {e}"),
            }
            result.map(|_| ()).map_err(DaemonError::from)
        }
    }
}

/// The log line for a call whose client hung up before the daemon got to it: the client
/// reported a failure (its timeout) and exited, so carrying the call out now would change the
/// router behind its user's back (a `stop` minutes after a `kill -CONT`).
fn dropped(call: &Call) -> String {
    format!(
        "control: dropped `steer {}` from pid {} (uid {}): its client hung up before the daemon \
         got to it (it gave up waiting: was the daemon stopped or busy?), so it is not carried \
         out; run the command again if it is still wanted",
        call.request.command(),
        call.peer.pid,
        call.peer.uid
    )
}

/// Connections listed for a recovered WAN, back from the background: (the job, its listing).
type Listed = (FlowsBack, Result<Vec<Connection>, ConntrackError>);

/// Logs a WAN state change; a WAN that came back gets the flows of failback-moving policies:
/// listed in the background, handed back through `listed` to be picked on the event loop.
fn after_failover(
    ctl: &mut Controller,
    service: &service::Service,
    report: Option<FailoverReport>,
    listed: &mpsc::UnboundedSender<Listed>,
) {
    let Some(report) = report else { return };
    report.line().log("");
    service.status(ctl);
    if !report.up {
        return;
    }
    if let Some(job) = ctl.flows_back(&report.wan, &report.families) {
        let listed = listed.clone();
        tokio::task::spawn_blocking(move || {
            let result = job.list();
            let _ = listed.send((job, result));
        });
    }
}

/// Cuts, in the background, the listed connections the controller picks to move back.
fn move_flows_back(ctl: &Controller, (job, result): Listed) {
    match result {
        Ok(conns) => {
            let moving = ctl.flows_to_move(conns);
            // Nothing to move is the common case (one recovery per family): not news.
            if moving.is_empty() {
                log::debug!("{}: no flow to move back", job.recovered);
                return;
            }
            tokio::task::spawn_blocking(move || log::info!("{}", job.cut(&moving)));
        }
        Err(e) => log::error!("moving flows back to {}: {e}", job.recovered),
    }
}

/// Answers `message` once the conntrack flushes the request queued are done (their lines
/// after it, each after `separator`), without holding the event loop.
fn answer_after_flush(ctl: &mut Controller, message: String, separator: &str) -> Reply {
    let Some(flush) = flush_connections(ctl) else {
        return Reply::Now(Response::ok(serde_json::json!({ "message": message })));
    };
    let separator = separator.to_owned();
    Reply::Later(tokio::spawn(async move {
        let flushed = flush.await.unwrap_or_default();
        let message = format!("{message}{separator}{}", flushed.join(&separator));
        Response::ok(serde_json::json!({ "message": message })).into()
    }))
}

/// Runs the conntrack flushes failovers asked for, off the event loop; the task ends with their
/// report lines (also logged).
fn flush_connections(ctl: &mut Controller) -> Option<JoinHandle<Vec<String>>> {
    let flushes = ctl.take_flushes();
    if flushes.is_empty() {
        return None;
    }
    Some(tokio::spawn(async move {
        let lines = tokio::task::spawn_blocking(move || {
            flushes
                .iter()
                .filter_map(Flush::run)
                .collect::<Vec<String>>()
        })
        .await
        .unwrap_or_else(|e| vec![format!("conntrack flush failed: {e}")]);
        for line in &lines {
            log::info!("{line}");
        }
        lines
    }))
}

/// The next change to steer's nftables table; never, when its events are not watched.
async fn nft_touched(watch: &mut Option<crate::conntrack::watch::Watch>) -> std::io::Result<()> {
    match watch {
        Some(w) => w.touched().await,
        None => std::future::pending().await,
    }
}

/// The log line for nftables events that cannot be watched.
fn nft_events_lost(e: &std::io::Error) -> String {
    format!(
        "nftables events: cannot watch them ({e}); steer's table inet {} is checked at the \
         periodic check only (every {} s), so a firewall restart that flushes the ruleset \
         leaves connections unmarked until then",
        crate::conntrack::NFT_TABLE,
        RECONCILE_EVERY.as_secs()
    )
}

async fn readable<T: std::os::fd::AsRawFd>(
    fd: &mut Option<AsyncFd<T>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyMutGuard<'_, T>> {
    match fd {
        Some(fd) => fd.readable_mut().await,
        None => std::future::pending().await,
    }
}

/// How a control request is answered: at once, or by a task (a flush, a big answer encoded)
/// that does not hold up the event loop.
enum Reply {
    Now(Response),
    Later(JoinHandle<Answer>),
}

impl Reply {
    fn send(self, to: Replier) {
        match self {
            Reply::Now(response) => {
                let _ = to.send(response);
            }
            Reply::Later(task) => {
                tokio::spawn(async move {
                    let answer = task
                        .await
                        .unwrap_or_else(|e| Response::error(format!("request failed: {e}")).into());
                    let _ = to.send(answer);
                });
            }
        }
    }
}

async fn handle(
    ctl: &mut Controller,
    service: &service::Service,
    request: Request,
    listed: &mpsc::UnboundedSender<Listed>,
    big_answers: &answer::Budget,
) -> Reply {
    match request {
        Request::Status => Reply::Now(match serde_json::to_value(ctl.status().await) {
            Ok(body) => Response::ok(body),
            Err(e) => Response::error(format!("cannot encode the status: {e}")),
        }),
        Request::Wan { name, mode } => {
            let manual = match mode {
                WanMode::Up => Some(Override::Up),
                WanMode::Down => Some(Override::Down),
                WanMode::Auto => None,
            };
            match ctl.set_manual(&name, manual) {
                Ok((report, not_kept)) => {
                    let mut message = match &report {
                        Some(r) => r.to_string(),
                        None => format!("{name}: no change in where traffic goes"),
                    };
                    // The override holds now; that a restart would lose it is the client's
                    // to know too.
                    if let Some(line) = not_kept {
                        message = format!("{message}\n{}", line.text);
                    }
                    after_failover(ctl, service, report, listed);
                    answer_after_flush(ctl, message, "; ")
                }
                Err(e) => Reply::Now(Response::error(e.to_string())),
            }
        }
        Request::Gateway {
            name,
            gateway,
            family,
        } => {
            let family = match family.as_deref() {
                None => None,
                Some("ipv4") => Some(Family::V4),
                Some("ipv6") => Some(Family::V6),
                Some(other) => {
                    return Reply::Now(Response::error(format!(
                        "family `{}`: use ipv4 or ipv6",
                        crate::shown::shown(other)
                    )));
                }
            };
            Reply::Now(match ctl.set_gateway(&name, gateway, family).await {
                Ok(lines) => {
                    log_lines("", &lines);
                    let text: Vec<String> = lines.iter().map(|l| l.text.clone()).collect();
                    Response::ok(serde_json::json!({ "message": text.join("\n") }))
                }
                Err(e) => Response::error(e.to_string()),
            })
        }
        Request::Prefix6 { name, prefix } => match ctl.set_prefix6(&name, prefix).await {
            Ok(lines) => {
                log_lines("", &lines);
                let text: Vec<String> = lines.iter().map(|l| l.text.clone()).collect();
                // The WAN's old IPv6 flows (a renumbered prefix) are cut before the answer.
                answer_after_flush(ctl, text.join("\n"), "\n")
            }
            Err(e) => Reply::Now(Response::error(e.to_string())),
        },
        // A snapshot here; the list (3.6 MB for 50,000 entries) is encoded off the loop,
        // within the budget of big answers.
        Request::Set {
            name,
            op: SetOp::List,
            ..
        } => match ctl.list_set(&name) {
            Ok(listing) => {
                let what = format!("the list of set {}", crate::shown::shown(&name));
                match big_answers.encode(&what, listing.len(), listing) {
                    Ok(task) => Reply::Later(task),
                    Err(busy) => Reply::Now(busy),
                }
            }
            Err(e) => Reply::Now(Response::error(e)),
        },
        Request::Set {
            name,
            op,
            prefixes,
            timeout,
            batch,
        } => Reply::Now(match ctl.edit_set(&name, op, prefixes, timeout, batch) {
            Ok(message) => {
                if !message.is_empty() {
                    log::info!("{message}");
                }
                Response::ok(serde_json::json!({ "message": message }))
            }
            Err(e) => Response::error(e),
        }),
        Request::Reload | Request::Stop => unreachable!("handled by the event loop"),
    }
}

/// Reloads: the configuration is read and compiled on a blocking thread while the event loop
/// goes on handling carrier events, probes and failovers; only the kernel writes happen on the
/// loop. One reload runs at a time; requests that come meanwhile share the next one (the file
/// may have changed since the running one read it).
#[derive(Default)]
struct Reloads {
    running: Option<(JoinHandle<Result<Prepared, ConfigErrors>>, Waiting)>,
    next: Option<Waiting>,
}

/// Who waits for a reload's outcome (nobody for SIGHUP).
type Waiting = Vec<Replier>;

impl Reloads {
    fn request(&mut self, ctl: &Controller, service: &service::Service, reply: Option<Replier>) {
        if self.running.is_some() {
            self.next.get_or_insert_with(Vec::new).extend(reply);
            return;
        }
        service.reloading();
        self.start(ctl, reply.into_iter().collect());
    }

    /// Reads and compiles the configuration on a blocking thread for those `waiting`.
    fn start(&mut self, ctl: &Controller, waiting: Waiting) {
        let plan = ctl.reload_plan();
        let task = tokio::task::spawn_blocking(move || plan.prepare());
        self.running = Some((task, waiting));
    }

    /// Waits for the running reload's preparation (never, when none runs).
    async fn prepared(&mut self) -> (Result<Prepared, String>, Waiting) {
        let Some((task, _)) = &mut self.running else {
            return std::future::pending().await;
        };
        let prepared = match task.await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(e) => Err(format!("reading the configuration failed: {e}")),
        };
        let (_, waiting) = self.running.take().expect("running");
        (prepared, waiting)
    }

    /// Applies a prepared reload, answers who waited, and starts the next one if asked. The
    /// service manager hears `READY=1` before anyone gets an answer, so `systemctl reload`
    /// (whose `ExecReload=steer reload` returns on the answer) ends with the service ready.
    async fn finish(
        &mut self,
        ctl: &mut Controller,
        probers: &mut Probers,
        service: &mut service::Service,
        prepared: Result<Prepared, String>,
        waiting: Waiting,
    ) {
        let applied = apply_reload(ctl, probers, prepared).await;
        service.probers_now(probers.tasks.keys());
        let next = self.next.take();
        if next.is_none() {
            service.reloaded(ctl, applied.is_err());
        }
        // The connections the reload restarts (a WAN's IPv6 renumbered) are cut before anyone
        // hears the reload is done, off the event loop: a flow that goes on after the answer
        // starts over with the new translation instead of meeting the guard.
        let flush = flush_connections(ctl);
        tokio::spawn(async move {
            let flushed = match flush {
                Some(task) => task.await.unwrap_or_default(),
                None => Vec::new(),
            };
            let response = match applied {
                Ok(mut lines) => {
                    lines.extend(flushed.into_iter().map(ReportLine::info));
                    Response::ok(serde_json::json!({ "changes": lines }))
                }
                Err(e) => Response::error(e),
            };
            for reply in waiting {
                let _ = reply.send(response.clone());
            }
        });
        crate::heap::return_freed_memory();
        if let Some(next) = next {
            self.start(ctl, next);
        }
    }
}

/// Applies a reload and logs the outcome; an invalid configuration keeps the running one.
async fn apply_reload(
    ctl: &mut Controller,
    probers: &mut Probers,
    prepared: Result<Prepared, String>,
) -> Result<Vec<ReportLine>, String> {
    let refused = |e: &dyn std::fmt::Display| {
        let msg = format!("reload refused, still running the previous configuration:\n{e}");
        log::error!("{msg}");
        msg
    };
    let prepared = prepared.map_err(|e| refused(&e))?;
    // A DNS listen address or snoop queue that is taken refuses the reload before anything
    // changes, as it refuses a start.
    if let Some(config) = prepared.config() {
        probers.dns.prepare(config).map_err(|e| refused(&e))?;
    }
    let report = ctl.reload(prepared).await.map_err(|e| {
        probers.dns.release();
        refused(&e)
    })?;
    let lines = report.lines();
    log_lines("reload: ", &lines);
    log_lines("reload: ", &ctl.vrrp_sync().await);
    log_lines("reload: ", &probers.sync(ctl));
    Ok(lines)
}

/// Raises the soft limit on open files to the hard one: every map is an open descriptor (the
/// prefix sets' tables and records among them), and probes open sockets on top.
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
