//! The VRRPv3 speakers: one thread of their own (`steer-vrrp`, a current-thread tokio runtime)
//! running one task per `[[vrrp]]` instance with `engine = "steer"`. A task owns its socket and
//! its [`Machine`]: it sends adverts on time whatever the controller is busy with (a reload, a
//! conntrack flush), validates what arrives (a drop is counted by reason and never touches a
//! timer), and reports state changes to the daemon as [`Event`]s. It changes no kernel state:
//! the controller does the takeover steps when it hears of them, and answers with
//! [`Command`]s (the effective priority, a fault).

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot};

use super::{
    machine::{Action, Heard, Machine, Params, State},
    packet::{self, Advert, Dropped, Expect, GROUP_V4, GROUP_V6},
    socket::{VrrpSocket, link_state, primary_address},
};
use crate::config::{Speaker, Vrrp};

/// What an instance tells the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The instance changed state.
    State {
        instance: String,
        state: State,
        why: String,
        master: Option<IpAddr>,
        /// The priority the instance advertises (keepalived's, as its fifo says).
        priority: Option<u8>,
        /// When the change happened (the speaker's decision, or the fifo line read).
        at: Instant,
    },
    /// As master: no other router claims mastership any more; master-only WANs may come up.
    WansClear { instance: String },
    /// As master: announce the addresses again (another router had claimed them).
    Announce { instance: String },
    /// As backup: the instance follows this master now (the first advert accepted from it;
    /// a backup that started so says nothing else).
    Following { instance: String, master: IpAddr },
}

/// What the daemon tells an instance.
#[derive(Debug)]
pub enum Command {
    /// The effective priority (WAN health, failed steps).
    Priority(u8),
    /// Enter (`Some(why)`) or leave the fault state the controller asks for.
    Fault(Option<String>),
    /// The instance's interface went down or came back.
    Link(bool),
    /// New preemption settings (a reload).
    Retune {
        preempt: bool,
        preempt_delay: Duration,
    },
    /// As master: resign (priority 0) and become backup, for this reason (a sibling instance
    /// that shares a master-only WAN follows another router).
    StepDown(String),
    /// Shut down (a master resigns with priority 0); answered once the advert is out.
    Stop(oneshot::Sender<()>),
}

/// Counters and state of one instance, as `steer status` shows them.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub state: Option<State>,
    pub priority: u8,
    pub master: Option<IpAddr>,
    pub source: Option<IpAddr>,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub send_errors: u64,
    pub drops: BTreeMap<&'static str, u64>,
    pub transitions: u64,
    /// When the state last changed, to what, and why.
    pub last: Option<(Instant, State, String)>,
    /// As backup: the master followed and the priority it advertises.
    pub following: Option<(IpAddr, u8)>,
    /// Things worth showing, by kind (`interval`, `unknown_source`, `vrid`): when last
    /// heard, and the words.
    pub notes: BTreeMap<&'static str, (Instant, String)>,
}

/// The views of every instance, shared with the controller.
pub type Board = Arc<Mutex<BTreeMap<String, View>>>;

/// Reads `instance`'s view.
pub fn view(board: &Board, instance: &str) -> View {
    board
        .lock()
        .map(|b| b.get(instance).cloned().unwrap_or_default())
        .unwrap_or_default()
}

/// The speakers' thread and each instance's command channel.
#[derive(Debug)]
pub struct Speakers {
    runtime: Option<tokio::runtime::Handle>,
    thread: Option<std::thread::JoinHandle<()>>,
    stop_thread: Option<oneshot::Sender<()>>,
    /// Instance name -> (its configuration, its command channel).
    instances: BTreeMap<String, (Vrrp, mpsc::UnboundedSender<Command>)>,
    events: mpsc::UnboundedSender<Event>,
    board: Board,
}

impl Speakers {
    /// No instance yet; the thread starts with the first one.
    pub fn new(events: mpsc::UnboundedSender<Event>, board: Board) -> Speakers {
        Speakers {
            runtime: None,
            thread: None,
            stop_thread: None,
            instances: BTreeMap::new(),
            events,
            board,
        }
    }

    /// Runs the instances of `config` that steer speaks: new ones start (as backup, or as master
    /// when they own the address), changed ones restart (a master resigns first), removed ones
    /// stop. `priority` gives each instance's effective priority to start with.
    pub async fn sync(&mut self, config: &[Vrrp], priority: impl Fn(&str) -> u8) {
        let wanted: Vec<&Vrrp> = config.iter().filter(|v| v.speaker().is_some()).collect();
        let gone: Vec<String> = self
            .instances
            .iter()
            .filter(|(name, (old, _))| {
                !wanted.iter().any(|v| v.name == **name && !restarts(old, v))
            })
            .map(|(name, _)| name.clone())
            .collect();
        // Changes that do not touch the wire are applied in place (the priority comes with the
        // next weighing).
        for v in &wanted {
            if let (Some((old, tx)), Some(s)) = (self.instances.get_mut(&v.name), v.speaker())
                && *old != **v
                && !restarts(old, v)
            {
                let _ = tx.send(Command::Retune {
                    preempt: s.preempt,
                    preempt_delay: Duration::from_millis(u64::from(s.preempt_delay_ms)),
                });
                *old = (*v).clone();
            }
        }
        for name in gone {
            if let Some((_, tx)) = self.instances.remove(&name) {
                stop(&tx).await;
            }
            if let Ok(mut b) = self.board.lock() {
                b.remove(&name);
            }
        }
        for v in wanted {
            if self.instances.contains_key(&v.name) {
                continue;
            }
            let Some(s) = v.speaker() else { continue };
            let siblings: Vec<u8> = config
                .iter()
                .filter_map(|o| o.speaker().map(|os| (o, os)))
                .filter(|(o, os)| {
                    o.name != v.name && os.interface == s.interface && os.is_v6() == s.is_v6()
                })
                .map(|(_, os)| os.vrid)
                .collect();
            let (tx, rx) = mpsc::unbounded_channel();
            let task = Instance::new(
                v.name.clone(),
                s.clone(),
                priority(&v.name),
                siblings,
                self.events.clone(),
                self.board.clone(),
            );
            self.runtime().spawn(task.run(rx));
            self.instances.insert(v.name.clone(), (v.clone(), tx));
        }
    }

    /// Sends `command` to instance `name` (ignored if it is not running).
    pub fn command(&self, name: &str, command: Command) {
        if let Some((_, tx)) = self.instances.get(name) {
            let _ = tx.send(command);
        }
    }

    /// The link of `interface` went up or down: every instance on it hears of it.
    pub fn link(&self, interface: &str, up: bool) {
        for (v, tx) in self.instances.values() {
            if v.speaker().is_some_and(|s| s.interface == interface) {
                let _ = tx.send(Command::Link(up));
            }
        }
    }

    /// Stops every instance (masters resign with priority 0) and the thread.
    pub async fn shutdown(&mut self) {
        for (_, tx) in std::mem::take(&mut self.instances).into_values() {
            stop(&tx).await;
        }
        if let Some(s) = self.stop_thread.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }

    fn runtime(&mut self) -> tokio::runtime::Handle {
        if let Some(h) = &self.runtime {
            return h.clone();
        }
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("steer-vrrp".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for the VRRP speakers");
                let _ = handle_tx.send(rt.handle().clone());
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
            })
            .expect("spawn the VRRP thread");
        let handle = handle_rx.recv().expect("the VRRP thread's runtime");
        self.runtime = Some(handle.clone());
        self.thread = Some(thread);
        self.stop_thread = Some(stop_tx);
        handle
    }
}

impl Drop for Speakers {
    fn drop(&mut self) {
        if let Some(s) = self.stop_thread.take() {
            let _ = s.send(());
        }
    }
}

/// Whether going from `old` to `new` needs the instance restarted: what goes on the wire, or
/// where, changed (a master then resigns first). Anything else is applied in place.
pub fn restarts(old: &Vrrp, new: &Vrrp) -> bool {
    match (old.speaker(), new.speaker()) {
        (Some(o), Some(n)) => {
            let wire = |s: &Speaker| {
                (
                    s.interface.clone(),
                    s.vrid,
                    s.vips.clone(),
                    s.peers.clone(),
                    s.unicast_src,
                    s.checksum,
                    s.advert_interval_cs,
                    s.holder.clone(),
                )
            };
            wire(o) != wire(n)
        }
        (None, None) => false,
        _ => true,
    }
}

async fn stop(tx: &mpsc::UnboundedSender<Command>) {
    let (done, wait) = oneshot::channel();
    if tx.send(Command::Stop(done)).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), wait).await;
    }
}

/// How often the log repeats a drop of the same kind from the same source.
const LOG_AGAIN: Duration = Duration::from_secs(60);
/// The same for another virtual router's adverts: a LAN with several VRRP groups is normal,
/// worth a line now and then, not one a minute forever.
const LOG_OTHER_ROUTER_AGAIN: Duration = Duration::from_secs(3600);
/// How many (source, kind) pairs `Instance::log_once` tells apart.
const LOG_SOURCES: usize = 64;
/// How often a socket that could not be opened (link down or without carrier, no address yet,
/// no interface) is tried again (link events usually come first).
const RETRY: Duration = Duration::from_secs(1);

struct Instance {
    name: String,
    cfg: Speaker,
    machine: Machine,
    sock: Option<VrrpSocket>,
    src: Option<IpAddr>,
    vips: Vec<IpAddr>,
    siblings: Vec<u8>,
    /// Why the socket cannot work (no interface, no address, link down).
    link_fault: Option<String>,
    /// The controller's fault (every WAN down, a failed step).
    ctl_fault: Option<String>,
    events: mpsc::UnboundedSender<Event>,
    board: Board,
    logged: HashMap<(IpAddr, &'static str), Instant>,
    /// The master and interval last warned about (another interval than ours).
    interval_warned: Option<(IpAddr, u16)>,
    /// As backup: the master last reported as followed ([`Event::Following`]).
    followed: Option<IpAddr>,
}

impl Instance {
    fn new(
        name: String,
        cfg: Speaker,
        priority: u8,
        siblings: Vec<u8>,
        events: mpsc::UnboundedSender<Event>,
        board: Board,
    ) -> Instance {
        let vips: Vec<IpAddr> = cfg.vips.iter().map(|v| v.addr).collect();
        let params = Params {
            priority,
            interval_cs: cfg.advert_interval_cs,
            preempt: cfg.preempt,
            preempt_delay: Duration::from_millis(u64::from(cfg.preempt_delay_ms)),
            own: cfg.unicast_src.unwrap_or(if cfg.is_v6() {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
            }),
        };
        Instance {
            machine: Machine::new(params, Instant::now()),
            name,
            cfg,
            sock: None,
            src: None,
            vips,
            siblings,
            link_fault: None,
            ctl_fault: None,
            events,
            board,
            logged: HashMap::new(),
            interval_warned: None,
            followed: None,
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        self.update(|v| v.priority = self.machine.params().priority);
        self.connect();
        let now = Instant::now();
        let first = match self.fault() {
            Some(why) => self.machine.set_fault(Some(why), now),
            None => self.machine.start(now),
        };
        self.execute(first);
        loop {
            let deadline = self.machine.next_deadline();
            let retry = self.sock.is_none().then(|| Instant::now() + RETRY);
            let acts = tokio::select! {
                biased;
                () = sleep_until(deadline) => self.machine.tick(Instant::now()),
                c = commands.recv() => match c {
                    Some(Command::Stop(done)) => {
                        let acts = self.machine.shutdown(Instant::now());
                        self.execute(acts);
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        let acts = self.machine.shutdown(Instant::now());
                        self.execute(acts);
                        return;
                    }
                    Some(c) => self.command(c),
                },
                r = recv(&self.sock) => match r {
                    Ok(r) => self.received(r),
                    Err(e) => {
                        log::warn!("vrrp {}: receiving failed: {e}", self.name);
                        Vec::new()
                    }
                },
                () = sleep_until(retry) => self.reconnect(),
            };
            self.execute(acts);
        }
    }

    fn fault(&self) -> Option<String> {
        self.link_fault.clone().or_else(|| self.ctl_fault.clone())
    }

    fn command(&mut self, c: Command) -> Vec<Action> {
        let now = Instant::now();
        match c {
            Command::Priority(p) => {
                let acts = self.machine.set_priority(p, now);
                self.update(|v| v.priority = p.max(1));
                acts
            }
            Command::Fault(f) => {
                self.ctl_fault = f;
                self.machine.set_fault(self.fault(), now)
            }
            Command::Retune {
                preempt,
                preempt_delay,
            } => {
                self.machine.set_preempt(preempt, preempt_delay);
                Vec::new()
            }
            Command::Link(true) => self.reconnect(),
            Command::Link(false) => {
                self.sock = None;
                // The kernel's words when it can say (down, or no carrier), so the retries
                // that read it again find the same fault and change nothing.
                self.link_fault = Some(
                    self.link_down()
                        .unwrap_or_else(|| format!("{} is down", self.cfg.interface)),
                );
                self.machine.set_fault(self.fault(), now)
            }
            Command::StepDown(why) => self.machine.step_down(why, now),
            Command::Stop(_) => Vec::new(),
        }
    }

    /// Why the interface cannot carry adverts now (`None`: it is up with carrier).
    fn link_down(&self) -> Option<String> {
        let i = &self.cfg.interface;
        match link_state(i) {
            None => Some(format!("{i} does not exist")),
            Some(l) if !l.admin_up => Some(format!("{i} is down")),
            Some(l) if !l.carrier => Some(format!("{i} has no carrier")),
            Some(_) => None,
        }
    }

    /// Opens the socket and finds the source address; on failure the instance is in fault.
    /// The link is checked first: a raw socket opens on a link that is down (or has lost its
    /// carrier), and an instance that left fault there would hear nobody and make itself
    /// master on a dead link.
    fn connect(&mut self) {
        if let Some(why) = self.link_down() {
            self.sock = None;
            self.link_fault = Some(why);
            return;
        }
        let v6 = self.cfg.is_v6();
        let src = self
            .cfg
            .unicast_src
            .or_else(|| primary_address(&self.cfg.interface, v6, &self.vips));
        let Some(src) = src else {
            self.sock = None;
            self.link_fault = Some(format!(
                "{} has no {} address to send adverts from",
                self.cfg.interface,
                if v6 { "link-local IPv6" } else { "IPv4" }
            ));
            return;
        };
        let unicast = !self.cfg.peers.is_empty();
        match VrrpSocket::open(&self.cfg.interface, v6, unicast) {
            Ok(s) => {
                self.sock = Some(s);
                self.src = Some(src);
                self.link_fault = None;
                self.machine.set_own(src);
                self.update(|v| v.source = Some(src));
            }
            Err(e) => {
                self.sock = None;
                self.link_fault = Some(format!("VRRP socket on {}: {e}", self.cfg.interface));
            }
        }
    }

    fn reconnect(&mut self) -> Vec<Action> {
        let before = self.fault();
        self.connect();
        let now = Instant::now();
        if before.is_some() || self.fault().is_some() {
            self.machine.set_fault(self.fault(), now)
        } else {
            Vec::new()
        }
    }

    fn received(&mut self, r: super::socket::Received) -> Vec<Action> {
        if Some(r.meta.src) == self.src {
            return Vec::new();
        }
        let expect = Expect {
            vrid: self.cfg.vrid,
            checksum: self.cfg.checksum,
            peers: &self.cfg.peers,
            vips: &self.vips,
            siblings: &self.siblings,
        };
        match packet::validate(&r.payload, r.meta, &expect) {
            Ok(ok) => {
                self.update(|v| v.adverts_received += 1);
                let ours = self.cfg.checksum;
                if ok.checksum != ours {
                    self.log_once(r.meta.src, "checksum_form", || {
                        format!(
                            "{} sends the {} checksum; this instance sends {} (checksum = \"{}\"): \
                             accepted, but that router may drop ours unless both use the same form",
                            r.meta.src,
                            ok.checksum.as_str(),
                            ours.as_str(),
                            ours.as_str()
                        )
                    });
                }
                let now = Instant::now();
                let acts = self.machine.receive(
                    Heard {
                        from: r.meta.src,
                        priority: ok.advert.priority,
                        interval_cs: ok.advert.interval_cs,
                    },
                    now,
                );
                if self.machine.state() == State::Backup
                    && self.machine.master() == Some(r.meta.src)
                    && ok.advert.priority > 0
                {
                    let following = Some((r.meta.src, ok.advert.priority));
                    self.update(|v| v.following = following);
                    self.check_interval(r.meta.src, ok.advert.interval_cs, now);
                    if self.followed != Some(r.meta.src) {
                        self.followed = Some(r.meta.src);
                        let _ = self.events.send(Event::Following {
                            instance: self.name.clone(),
                            master: r.meta.src,
                        });
                    }
                }
                acts
            }
            Err(Dropped::Sibling) => Vec::new(),
            Err(
                d @ (Dropped::UnknownSource(_)
                | Dropped::Unicast(_)
                | Dropped::Multicast
                | Dropped::Addresses { .. }),
            ) => {
                let reason = d.reason();
                self.update(|v| *v.drops.entry(reason).or_default() += 1);
                let from = r.meta.src;
                // Valid but for how it was sent or what it lists: another router claims this
                // virtual router and each drops the other's adverts. Dropped, yet the WANs must
                // not come up, and the user must hear of it.
                match packet::claim(&r.payload, r.meta, &d, &expect) {
                    Some(advert) if advert.priority > 0 => {
                        let now = Instant::now();
                        self.machine.conflict(
                            Heard {
                                from,
                                priority: advert.priority,
                                interval_cs: advert.interval_cs,
                            },
                            now,
                        );
                        let text = self.claim_words(&d, &advert, from, r.meta.dst);
                        self.note(reason, text.clone(), now);
                        self.log_once(from, reason, || text);
                    }
                    _ => self.log_once(from, reason, || format!("dropped: {}", d.describe(from))),
                }
                Vec::new()
            }
            Err(Dropped::Vrid(theirs)) => {
                self.update(|v| *v.drops.entry("vrid").or_default() += 1);
                // Another virtual router is normal; one that claims our addresses is a second
                // master for them.
                let shared: Vec<String> =
                    packet::claimed_by_other_vrid(&r.payload, r.meta, &expect, theirs)
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                let from = r.meta.src;
                if shared.is_empty() {
                    self.log_once(from, "vrid", || {
                        format!("dropped: {}", Dropped::Vrid(theirs).describe(from))
                    });
                } else {
                    let text = format!(
                        "{}, lists {}, a virtual address of this instance (vrid {}): each \
                         router ignores the other's adverts, so both may hold it (a dual \
                         master); give both routers the same vrid (keepalived: \
                         virtual_router_id)",
                        Dropped::Vrid(theirs).describe(from),
                        shared.join(", "),
                        self.cfg.vrid
                    );
                    self.note("vrid", text.clone(), Instant::now());
                    self.log_once(from, "vrid_conflict", || text);
                }
                Vec::new()
            }
            Err(d) => {
                let reason = d.reason();
                self.update(|v| *v.drops.entry(reason).or_default() += 1);
                self.log_once(r.meta.src, reason, || {
                    format!("dropped: {}", d.describe(r.meta.src))
                });
                Vec::new()
            }
        }
    }

    /// What a dropped advert that claims this virtual router (see [`packet::claim`]) means
    /// and what to do, for the log and the status.
    fn claim_words(&self, d: &Dropped, advert: &Advert, from: IpAddr, dst: IpAddr) -> String {
        let peers: Vec<String> = self.cfg.peers.iter().map(ToString::to_string).collect();
        let (what, fix) = match d {
            Dropped::UnknownSource(_) => (
                format!(
                    "{from} advertises this virtual router (vrid {}, priority {}) but is not in `peers` ({})",
                    self.cfg.vrid,
                    advert.priority,
                    peers.join(", ")
                ),
                "fix `peers` (on this router or that one)".to_owned(),
            ),
            Dropped::Unicast(_) => (
                format!(
                    "{} advertises this virtual router (vrid {}, priority {}) by unicast to {dst} \
                     (it has `peers`), while this instance has no `peers` and takes multicast \
                     adverts only",
                    from, self.cfg.vrid, advert.priority
                ),
                "configure `peers` on both routers or on neither".to_owned(),
            ),
            Dropped::Multicast => (
                format!(
                    "{} advertises this virtual router (vrid {}, priority {}) to the VRRP group \
                     (it has no `peers`), while this instance has `peers` ({}) and takes \
                     unicast adverts only",
                    from,
                    self.cfg.vrid,
                    advert.priority,
                    peers.join(", ")
                ),
                "configure `peers` on both routers or on neither".to_owned(),
            ),
            _ => (
                format!(
                    "{} advertises this virtual router (vrid {}, priority {}) with other virtual \
                     addresses ({}) than this instance ({})",
                    from,
                    self.cfg.vrid,
                    advert.priority,
                    packet::list(&advert.addrs),
                    packet::list(&self.vips)
                ),
                "list the same `vips` on both routers (while changing them, change the other \
                 router right after this one)"
                    .to_owned(),
            ),
        };
        format!(
            "{what}: its adverts are dropped, so both routers may be master; master-only WANs \
             not up yet stay down while it advertises (those already up stay up): {fix}"
        )
    }

    /// Warns once per change when the master followed advertises another interval than ours
    /// (a takeover then waits for 3 of its intervals), and says so in the status.
    fn check_interval(&mut self, from: IpAddr, interval_cs: u16, now: Instant) {
        let ours = self.cfg.advert_interval_cs;
        if interval_cs == ours {
            self.interval_warned = None;
            self.update(|v| {
                v.notes.remove("interval");
            });
            return;
        }
        if self.interval_warned == Some((from, interval_cs)) {
            return;
        }
        self.interval_warned = Some((from, interval_cs));
        let cap = super::machine::max_learnt_cs(ours);
        let capped = if interval_cs > cap {
            format!(
                " (taken as {} ms, the most a master's advert may impose here: a forged one \
                 cannot hold this router back for long)",
                u32::from(cap) * 10
            )
        } else {
            String::new()
        };
        let text = format!(
            "the master {from} advertises every {} ms, not the configured {} ms \
             (advert_interval_ms){capped}: a takeover waits ~{:.1} s; set the same interval on \
             both routers",
            u32::from(interval_cs) * 10,
            u32::from(ours) * 10,
            self.machine.master_down_interval().as_secs_f64()
        );
        log::warn!("vrrp {}: {text}", self.name);
        self.note("interval", text, now);
    }

    fn note(&self, kind: &'static str, text: String, now: Instant) {
        self.update(|v| {
            v.notes.insert(kind, (now, text));
        });
    }

    /// Logs `text` for (source, kind) once per [`LOG_AGAIN`]. Sources are the sender's to
    /// choose: past [`LOG_SOURCES`] recent ones, a kind is logged once per [`LOG_AGAIN`] for
    /// all other sources together, so forged sources neither flood the log nor grow memory.
    fn log_once(&mut self, from: IpAddr, kind: &'static str, text: impl FnOnce() -> String) {
        let now = Instant::now();
        let mut key = (from, kind);
        if !self.logged.contains_key(&key) && self.logged.len() >= LOG_SOURCES {
            self.logged
                .retain(|_, at| now.duration_since(*at) < LOG_AGAIN);
            if self.logged.len() >= LOG_SOURCES {
                key = (IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), kind);
            }
        }
        let (again, level) = if kind == "vrid" {
            (LOG_OTHER_ROUTER_AGAIN, log::Level::Info)
        } else {
            (LOG_AGAIN, log::Level::Warn)
        };
        let due = self
            .logged
            .get(&key)
            .is_none_or(|at| now.duration_since(*at) >= again);
        if due {
            self.logged.insert(key, now);
            let more = if key.0 == from {
                ""
            } else {
                " (and more from other sources, counted, not logged)"
            };
            log::log!(level, "vrrp {}: {}{more}", self.name, text());
        }
    }

    fn execute(&mut self, acts: Vec<Action>) {
        let changed = acts.iter().any(|a| matches!(a, Action::Became { .. }));
        for a in acts {
            match a {
                Action::Send(p) => self.send(p),
                Action::Announce if !changed => {
                    let _ = self.events.send(Event::Announce {
                        instance: self.name.clone(),
                    });
                }
                Action::Announce => {}
                Action::Became { state, why } => {
                    let master = self.machine.master();
                    log::info!(
                        "vrrp {}: {state} ({why}); priority {}",
                        self.name,
                        self.machine.params().priority
                    );
                    self.followed = None;
                    self.update(|v| {
                        v.state = Some(state);
                        v.master = master;
                        v.following = None;
                        v.transitions += 1;
                        v.last = Some((Instant::now(), state, why.clone()));
                    });
                    let _ = self.events.send(Event::State {
                        instance: self.name.clone(),
                        state,
                        why,
                        master,
                        priority: Some(self.machine.params().priority),
                        at: Instant::now(),
                    });
                }
                Action::WansClear => {
                    let _ = self.events.send(Event::WansClear {
                        instance: self.name.clone(),
                    });
                }
            }
        }
        let master = self.machine.master();
        self.update(|v| v.master = master);
    }

    fn send(&mut self, priority: u8) {
        let (Some(sock), Some(src)) = (&self.sock, self.src) else {
            return;
        };
        let dsts: Vec<IpAddr> = if self.cfg.peers.is_empty() {
            vec![if src.is_ipv6() {
                IpAddr::V6(GROUP_V6)
            } else {
                IpAddr::V4(GROUP_V4)
            }]
        } else {
            self.cfg.peers.clone()
        };
        let advert = Advert {
            vrid: self.cfg.vrid,
            priority,
            interval_cs: self.cfg.advert_interval_cs,
            addrs: self.vips.clone(),
        };
        let (mut sent, mut failed) = (0, Vec::new());
        for dst in dsts {
            let bytes = advert.encode(src, dst, self.cfg.checksum);
            match sock.send(&bytes, src, dst) {
                Ok(()) => sent += 1,
                Err(e) => failed.push((dst, e)),
            }
        }
        let errors = failed.len() as u64;
        for (dst, e) in failed {
            self.log_once(dst, "send", || {
                format!(
                    "sending adverts from {src} to {dst} fails: {e}; the other router \
                             hears nothing from this one and takes over too: check \
                     `unicast_src`, `peers` and the firewall (VRRP is IP protocol 112)"
                )
            });
        }
        self.update(|v| {
            v.adverts_sent += sent;
            v.send_errors += errors;
        });
    }

    fn update(&self, f: impl FnOnce(&mut View)) {
        if let Ok(mut b) = self.board.lock() {
            f(b.entry(self.name.clone()).or_default());
        }
    }
}

async fn recv(sock: &Option<VrrpSocket>) -> std::io::Result<super::socket::Received> {
    match sock {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn instance(extra: &str) -> Vrrp {
        let text = format!(
            "[general]\nlan = [\"br-lan\"]\n[[wan]]\nname = \"wan1\"\ninterface = \"eth1\"\n\
             mark = 0x100\ntable = 101\n[wan.track]\ntargets = [\"192.0.2.1\"]\n\
             [[vrrp]]\nname = \"lan\"\ninterface = \"br-lan\"\nvrid = 1\n\
             vips = [\"192.168.1.1/24\"]\n{extra}\n"
        );
        crate::config::parse(&text, Path::new("/nonexistent/steer.toml"))
            .unwrap()
            .vrrp
            .remove(0)
    }

    #[test]
    fn only_what_goes_on_the_wire_restarts_an_instance() {
        let base = instance("");
        for same in [
            "priority = 200",
            "preempt = false",
            "preempt_delay_ms = 5000",
        ] {
            assert!(!restarts(&base, &instance(same)), "{same}");
        }
        for changed in [
            "advert_interval_ms = 100",
            "checksum = \"plain\"",
            "holder = \"vip0\"",
            "peers = [\"192.168.1.3\"]",
        ] {
            assert!(restarts(&base, &instance(changed)), "{changed}");
        }
    }
}
