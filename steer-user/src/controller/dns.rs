//! The controller's part of domain sets: the one writer of the learned-host maps.
//!
//! [`Learner`] owns the maps (taken from the dataplane at start) and the lifetime table that
//! mirrors them. The forwarder and the snooper hold it as a [`Learn`] handle: an answer's
//! addresses are written straight into the kernel, one map update each, on the thread that
//! relays the answer, before the answer goes out — never behind a reload or a routing
//! reconcile of the event loop. Everything else that changes these maps comes from the
//! controller's own calls: [`Controller::configure_dns`] after every apply (a reload drops the
//! claims of a removed domain or set and ranks the rest by the new order of the sets: an
//! address another set still claims stays, steered by that set), [`Controller::expire_learned`]
//! on the daemon's timer (a claim expires alone: the runner-up takes over when the winner's
//! claim expires, and the address goes with its last claim), the router's own subnets after every routing change, and `steer stop`,
//! which removes the maps with every other pin.
//!
//! The learner also keeps who the forwarder answers ([`Clients`]), as desired state: the
//! subnets the router routes out of a `general.lan` interface and its own addresses, from
//! every read of the system ([`lan_sources`]), and `dns.clients` from the configuration.
//!
//! A kernel write comes first and the table follows only when it succeeded, so the two never
//! disagree; a failed write is counted and logged once, and the answer still goes out.
//!
//! The classifier probes the learned hosts of a family only while its settings flag says there
//! are some (`HAS_LEARNED_V4`/`V6`). The learner keeps that flag as the table's desired state
//! (`lookups`): the families the table holds, and the one of a host about to be written. So
//! the flag goes on before the first host of a family lands and off only after the last one
//! left; at start it follows what the maps were found holding (hosts outlive the daemon).

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use super::Controller;
use crate::{
    config::{Config, Dns},
    dataplane::{
        DataplaneError,
        learned::{self, LearnedMaps, boottime_secs},
    },
    dns::{
        Learn, Outcome,
        answer::Learnable,
        forwarder::Clients,
        lifetimes::{Change, Claim, Clamp, Entry, Hold, Plan, Table},
        matcher::{DomainSet, Matcher},
        rebind::{Rebind, Refusal},
        stats::{Count, Latency, Stats},
    },
    model::{LocalSet, Rule},
    prefix::Prefix,
    routing::SystemView,
    status::{DnsStatus, ReportLine},
};

/// The learned-host maps and their lifetime table, shared with the forwarder and the snooper.
#[derive(Debug)]
pub struct Learner {
    inner: Mutex<Inner>,
    matcher: RwLock<Arc<Matcher>>,
    stats: Arc<Stats>,
    warned_insert: AtomicBool,
    warned_capacity: AtomicBool,
    /// Who the forwarder answers, made of `client_parts`.
    clients: RwLock<Arc<Clients>>,
    /// The sources found in routing ([`lan_sources`]), and `dns.clients`.
    client_parts: Mutex<[Vec<Prefix>; 2]>,
}

#[derive(Debug)]
struct Inner {
    table: Table,
    /// `None` only when the dataplane had none to give (it always has).
    maps: Option<LearnedMaps>,
    /// The classifier's lookups of learned hosts (IPv4, IPv6) as this learner last wrote them;
    /// `None` until a write succeeded (the next [`lookups`] writes them).
    lookups: Option<[bool; 2]>,
    /// Reading the maps back at start failed: they may hold hosts the table does not know, so
    /// the lookups stay on.
    unread: bool,
    rebind: Rebind,
}

fn clamp_of(dns: Option<&Dns>) -> Clamp {
    Clamp {
        min_ttl: dns.map_or(Dns::DEFAULT_MIN_TTL, |d| d.min_ttl),
        max_ttl: dns.map_or(Dns::DEFAULT_MAX_TTL, |d| d.max_ttl),
    }
}

fn capacity_of(dns: Option<&Dns>) -> [usize; 2] {
    [
        dns.map_or(Dns::DEFAULT_CAPACITY_V4, |d| d.capacity_v4) as usize,
        dns.map_or(Dns::DEFAULT_CAPACITY_V6, |d| d.capacity_v6) as usize,
    ]
}

impl Learner {
    /// Takes the maps and reads back what they hold (claims an earlier daemon learned keep
    /// their expiries), and switches the classifier's lookups of learned hosts to the families
    /// found there (whatever the settings said: a daemon may have stopped between a removal
    /// and the flag). Returns the learner and how many entries it found.
    pub fn new(maps: Option<LearnedMaps>) -> (Learner, usize) {
        let mut table = Table::new(clamp_of(None), capacity_of(None));
        let mut found = 0;
        let mut unread = false;
        if let Some(m) = &maps {
            match m.entries() {
                Ok(entries) => {
                    found = entries.len();
                    for (addr, v) in entries {
                        let hold = |(rule, expires, name)| Hold {
                            rule,
                            expires,
                            name,
                        };
                        let (win, also) = learned::claims(&v);
                        table.commit(
                            addr,
                            Entry {
                                win: hold(win),
                                also: also.map(hold),
                            },
                        );
                    }
                }
                Err(e) => {
                    log::error!("reading the learned hosts back failed: {e}");
                    unread = true;
                }
            }
        }
        let mut inner = Inner {
            table,
            maps,
            lookups: None,
            unread,
            rebind: Rebind {
                enabled: true,
                ..Rebind::default()
            },
        };
        if let Err(e) = lookups(&mut inner, None) {
            log::error!("switching the lookups of learned hosts failed: {e}; retried later");
        }
        let learner = Learner {
            inner: Mutex::new(inner),
            matcher: RwLock::new(Arc::new(Matcher::default())),
            stats: Arc::new(Stats::default()),
            warned_insert: AtomicBool::new(false),
            warned_capacity: AtomicBool::new(false),
            clients: RwLock::default(),
            client_parts: Mutex::default(),
        };
        (learner, found)
    }

    /// The rule a learned host steers to, if `addr` is one.
    pub fn rule_of(&self, addr: IpAddr) -> Option<u32> {
        self.lock().table.get(&addr).map(|e| e.rule())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn current(&self) -> Arc<Matcher> {
        self.matcher
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes a new configuration: the sets' domains (with the rule ids the kernel uses), the
    /// lifetimes, capacities and rebinding protection. Claims whose name no longer matches the
    /// set that made them are dropped, the rest ranked by the new order of the sets; an address
    /// left without claims is removed. Returns how many addresses were removed.
    pub fn configure(&self, config: &Config, rules: &BTreeMap<u32, Rule>) -> usize {
        let ids: BTreeMap<&str, u32> = rules.values().map(|r| (r.name.as_str(), r.id)).collect();
        let dns = config.dns.as_ref();
        let sets = if dns.is_some() {
            config
                .sets
                .iter()
                .filter(|s| !s.domains.is_empty())
                .filter_map(|s| {
                    Some(DomainSet {
                        rule: *ids.get(s.name.as_str())?,
                        name: s.name.clone(),
                        domains: s.domains.clone(),
                        filter_aaaa: s.filter_aaaa,
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let matcher = Arc::new(Matcher::new(sets));
        let mut inner = self.lock();
        inner.table.clamp = clamp_of(dns);
        inner.table.capacity = capacity_of(dns);
        inner.rebind.enabled = dns.is_none_or(|d| d.rebind_protection);
        inner.rebind.allow = dns.map(|d| d.rebind_allow.clone()).unwrap_or_default();
        self.set_client_part(1, dns.map(|d| d.clients.clone()).unwrap_or_default());
        *self.matcher.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&matcher);
        let keep = |addr: &IpAddr, h: &Hold| {
            matcher
                .find(&h.name)
                .is_some_and(|m| m.set.rule == h.rule && !(addr.is_ipv6() && m.set.filter_aaaa))
        };
        let changes = inner.table.revise(keep, |r| matcher.rank(r));
        let removed = apply(&mut inner, changes);
        self.stats.add(Count::Removed, removed as u64);
        removed
    }

    /// The sources found in routing that the forwarder answers ([`lan_sources`]).
    pub fn set_found_clients(&self, found: Vec<Prefix>) {
        self.set_client_part(0, found);
    }

    /// Brings [`Clients`] to `part` (0: found in routing, 1: configured) and the other part.
    fn set_client_part(&self, part: usize, prefixes: Vec<Prefix>) {
        let mut parts = self.client_parts.lock().unwrap_or_else(|p| p.into_inner());
        parts[part] = prefixes;
        let next = Clients::new(parts.concat());
        let mut clients = self.clients.write().unwrap_or_else(|p| p.into_inner());
        if **clients != next {
            let shown: Vec<String> = next.prefixes().iter().map(ToString::to_string).collect();
            log::debug!(
                "dns forwarder: answers {} and the loopback",
                shown.join(", ")
            );
            *clients = Arc::new(next);
        }
    }

    /// The router's own destinations (never learned).
    pub fn set_own(&self, local: &LocalSet) {
        self.lock().rebind.own = local.keys().copied().collect();
    }

    /// Drops the claims expired at `now` (seconds of `CLOCK_BOOTTIME`): an address whose
    /// winner's claim expired passes to the runner-up, one without claims left is removed.
    /// Returns how many addresses were removed.
    pub fn expire(&self, now: u64) -> usize {
        let mut inner = self.lock();
        if inner.table.next_expiry().is_none_or(|t| t > now) {
            return 0;
        }
        let changes = inner.table.expire(now);
        let n = apply(&mut inner, changes);
        self.stats.add(Count::Expired, n as u64);
        n
    }

    /// The DNS section of the status.
    pub fn status(&self, dns: &Dns) -> DnsStatus {
        let (counts, capacity) = {
            let inner = self.lock();
            (inner.table.counts(), inner.table.capacity)
        };
        let (counters, refused, latency) = self.stats.snapshot();
        DnsStatus {
            listen: if dns.forward {
                dns.listen.iter().map(|a| a.to_string()).collect()
            } else {
                Vec::new()
            },
            upstreams: dns.upstreams.iter().map(|a| a.to_string()).collect(),
            snoop_queue: dns.snoop.then_some(dns.snoop_queue),
            entries_v4: counts[0],
            entries_v6: counts[1],
            capacity_v4: capacity[0],
            capacity_v6: capacity[1],
            counters,
            refused,
            latency,
        }
    }

    /// An entry the table holds (tests).
    pub fn entry(&self, addr: &IpAddr) -> Option<Entry> {
        self.lock().table.get(addr).cloned()
    }

    /// Logs a failure the first time it happens.
    fn warn_once(&self, flag: &AtomicBool, text: impl FnOnce() -> String) {
        if !flag.swap(true, Ordering::Relaxed) {
            log::warn!("{} (logged once; counted in `steer status`)", text());
        }
    }
}

/// The lookups of learned hosts (IPv4, IPv6) the classifier needs: the families the table
/// holds, and `adding`'s (a host about to be written). The kernel holds no host the table does
/// not, under the lock (a host leaves the kernel before the table and enters the table after
/// the kernel), but when the maps could not be read back.
fn wanted_lookups(inner: &Inner, adding: Option<IpAddr>) -> [bool; 2] {
    let mut want = inner.table.counts().map(|n| n > 0 || inner.unread);
    if let Some(addr) = adding {
        want[usize::from(addr.is_ipv6())] = true;
    }
    want
}

/// Brings the classifier's lookups of learned hosts to [`wanted_lookups`]: before a host is
/// written (`adding`), after hosts were removed, and at start.
fn lookups(inner: &mut Inner, adding: Option<IpAddr>) -> Result<(), DataplaneError> {
    let want = wanted_lookups(inner, adding);
    if inner.lookups == Some(want) {
        return Ok(());
    }
    if let Some(m) = inner.maps.as_mut() {
        m.set_lookups(want)?;
    }
    inner.lookups = Some(want);
    Ok(())
}

/// Removes `addrs` from the kernel, then from the table, then switches off the lookups of a
/// family left without hosts; returns how many went.
fn remove(inner: &mut Inner, addrs: &[IpAddr]) -> usize {
    let mut n = 0;
    for addr in addrs {
        let gone = match inner.maps.as_mut() {
            Some(m) => m.remove(*addr),
            None => Ok(true),
        };
        match gone {
            Ok(_) => {
                inner.table.remove(addr);
                n += 1;
            }
            Err(e) => log::error!("removing learned host {addr} failed: {e}; retried later"),
        }
    }
    if n > 0
        && let Err(e) = lookups(inner, None)
    {
        log::error!("switching off the lookups of learned hosts failed: {e}; retried later");
    }
    n
}

/// Carries out what dropping claims changed ([`Table::revise`]): rewrites first (a rewrite
/// that fails leaves the entry as it was, and an expiry is tried again on the next tick), then
/// removals. Returns how many addresses were removed.
fn apply(inner: &mut Inner, changes: Vec<(IpAddr, Change)>) -> usize {
    let mut gone = Vec::new();
    for (addr, change) in changes {
        match change {
            Change::Write(entry) => {
                if let Err(e) = write(inner, addr, entry) {
                    log::error!("rewriting learned host {addr} failed: {e}");
                }
            }
            Change::Remove => gone.push(addr),
        }
    }
    remove(inner, &gone)
}

/// Switches on the lookups of `addr`'s family, writes `entry` into the kernel, then records it.
fn write(inner: &mut Inner, addr: IpAddr, entry: Entry) -> Result<(), String> {
    lookups(inner, Some(addr)).map_err(|e| e.to_string())?;
    fn claimed(h: &Hold) -> learned::Claimed<'_> {
        (h.rule, h.expires, &h.name)
    }
    let value = learned::entry(claimed(&entry.win), entry.also.as_ref().map(claimed));
    if let Some(m) = inner.maps.as_mut()
        && let Err(e) = m.insert(addr, &value)
    {
        // Not written: the family's lookup goes off again if it has no other host.
        let _ = lookups(inner, None);
        return Err(e.to_string());
    }
    inner.table.commit(addr, entry);
    Ok(())
}

/// The sources the forwarder answers as the system is: the subnets the router routes out of
/// an interface of `lan` (connected ones and those behind LAN hosts), and the router's own
/// addresses. Not IPv6 link-local ones: every interface has `fe80::/64`, the WAN's too, and a
/// client asks a listen address (never link-local) from an address of its scope.
pub fn lan_sources(system: &SystemView, lan: &[String]) -> Vec<Prefix> {
    let lan: Vec<u32> = lan
        .iter()
        .filter_map(|name| system.links.get(name).map(|l| l.index))
        .collect();
    let link_local = |p: &Prefix| match p.addr() {
        IpAddr::V6(a) => a.is_unicast_link_local(),
        IpAddr::V4(_) => false,
    };
    system
        .routes_out
        .iter()
        .filter(|(p, oif)| lan.contains(oif) && !link_local(p))
        .map(|(p, _)| *p)
        .chain(system.addresses.iter().map(|(_, a)| Prefix::host(*a)))
        .collect()
}

impl Learn for Learner {
    fn matcher(&self) -> Arc<Matcher> {
        self.current()
    }

    fn clients(&self) -> Arc<Clients> {
        self.clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn stats(&self) -> &Stats {
        &self.stats
    }

    fn learn(&self, what: &Learnable) -> Outcome {
        let started = Instant::now();
        let mut out = Outcome::default();
        let now = boottime_secs();
        let mut inner = self.lock();
        // Under the lock, so a reload cannot slip between: the rule must still be the set's.
        let matcher = self.current();
        if matcher.find(&what.name).map(|m| m.set.rule) != Some(what.rule) {
            return out;
        }
        for (addr, ttl) in &what.addrs {
            if let Some(why) = inner.rebind.check(*addr) {
                self.stats.refused(why);
                out.refused += 1;
                continue;
            }
            let claim = Claim {
                rule: what.rule,
                rank: what.rank,
                name: &what.name,
                ttl: *ttl,
            };
            match inner.table.plan(*addr, &claim, now, |r| matcher.rank(r)) {
                Plan::Refused(why) => {
                    self.stats.refused(why);
                    out.refused += 1;
                    if why == Refusal::Capacity {
                        self.warn_once(&self.warned_capacity, || {
                            format!(
                                "the learned hosts of {} are at capacity: {addr} ({}) not learned; raise dns.capacity_{}",
                                if addr.is_ipv4() { "IPv4" } else { "IPv6" },
                                what.name,
                                if addr.is_ipv4() { "v4" } else { "v6" }
                            )
                        });
                    }
                }
                Plan::Unchanged => out.unchanged += 1,
                Plan::Write { entry, new } => match write(&mut inner, *addr, entry) {
                    Ok(()) => {
                        self.stats.inc(if new {
                            Count::Learned
                        } else {
                            Count::Refreshed
                        });
                        out.written += 1;
                    }
                    Err(e) => {
                        self.stats.inc(Count::InsertFailed);
                        out.failed += 1;
                        self.warn_once(&self.warned_insert, || {
                            format!("writing learned host {addr} ({}) failed: {e}", what.name)
                        });
                    }
                },
            }
        }
        drop(inner);
        if out.written > 0 {
            self.stats.record(Latency::Insert, started.elapsed());
        }
        out
    }
}

impl Controller {
    /// The handle the forwarder and the snooper learn through.
    pub fn dns_learner(&self) -> Arc<Learner> {
        Arc::clone(&self.dns)
    }

    /// Brings the learner to the running configuration (after every apply): drops the claims
    /// of removed domains and sets, ranks the rest by the new order of the sets, and removes
    /// the addresses no set claims any more.
    pub(super) fn configure_dns(&mut self) -> Vec<ReportLine> {
        let mut lines = Vec::new();
        self.dns.set_own(self.dp.local());
        let removed = self.dns.configure(&self.config, &self.rules);
        if removed > 0 {
            lines.push(ReportLine::info(format!(
                "dns: {removed} learned hosts removed (no configured set claims them any more)"
            )));
        }
        if let Some(d) = self.config.dns.as_ref() {
            let st = self.dns.status(d);
            for (family, held, capacity) in [
                ("IPv4", st.entries_v4, st.capacity_v4),
                ("IPv6", st.entries_v6, st.capacity_v6),
            ] {
                if held > capacity {
                    lines.push(ReportLine::warning(format!(
                        "dns: {held} learned {family} hosts are held, over capacity_{} = \
                         {capacity}: they stay until they expire, and no new host is learned \
                         until fewer than {capacity} are left; raise it, or wait",
                        if family == "IPv4" { "v4" } else { "v6" }
                    )));
                }
            }
        }
        if self.config.dns.is_none() {
            for set in self.config.sets.iter().filter(|s| !s.domains.is_empty()) {
                lines.push(ReportLine::warning(format!(
                    "set {}: its {} domain(s) are not steered: learning addresses from DNS answers needs a [dns] section",
                    set.name,
                    set.domains.len()
                )));
            }
        }
        lines
    }

    /// Removes the learned hosts that expired (the daemon's timer); returns how many.
    pub fn expire_learned(&mut self) -> usize {
        self.dns.expire(boottime_secs())
    }

    /// The DNS section of `steer status`.
    pub(super) fn dns_status(&self) -> Option<DnsStatus> {
        self.config.dns.as_ref().map(|d| self.dns.status(d))
    }

    /// Installs steer's nftables table, with the IPv6 source chains of `[ipv6]` and snoop
    /// mode's chain when it is on, for br_netfilter on a LAN bridge when `bridged`
    /// ([`crate::conntrack::ruleset_with`]). A kernel without nftables' `queue` expression
    /// refuses that chain: the table goes in without it and the same rules go into an iptables
    /// chain of steer's (NFQUEUE target) instead.
    pub(super) fn install_marking(
        &self,
        wans: &[crate::conntrack::MarkedWan],
        bridged: bool,
    ) -> Option<ReportLine> {
        use crate::{conntrack, wan_sources};
        let general = &self.config.general;
        // The guards' counts so far: installing the table again must not reset them.
        let kept = match &self.config.ipv6 {
            Some(_) => wan_sources::foreign_drops().unwrap_or_default(),
            None => Default::default(),
        };
        let sources = wan_sources::chains(
            self.config.ipv6.as_ref(),
            &self.config.wans,
            &self.prefixes6.resolved,
            &kept,
        );
        // A kernel or nft that refuses the IPv6 chains (prefix NAT, fib, masquerade) must not
        // take connection marking down with them: the table goes in without them, and that
        // is said as an error.
        let refused = std::cell::RefCell::new(None);
        // Whether a ruleset went in: the classifier keeps marks only beside a table that
        // restores them before it and marks new connections after it.
        let installed = std::cell::Cell::new(false);
        // The ruleset that went in last, which the drift check holds nft's listing against.
        let rendered = std::cell::RefCell::new(None);
        let install = |extra: &str| {
            let with = format!("{sources}{extra}");
            let mask = general.mark_mask;
            let mut sent = with.as_str();
            let done = match conntrack::install_with(mask, wans, bridged, &with) {
                Err(e) if !sources.is_empty() => {
                    let without = conntrack::install_with(mask, wans, bridged, extra);
                    if without.is_ok() {
                        *refused.borrow_mut() = Some(e);
                    }
                    sent = extra;
                    without
                }
                done => done,
            };
            if done.is_ok() {
                installed.set(true);
                *rendered.borrow_mut() = Some(conntrack::ruleset_with(mask, wans, bridged, sent));
            }
            done
        };
        let line = self.install_marking_with(install);
        self.remember_installed_marking(rendered.into_inner());
        let line = match (
            line,
            installed.get().then(|| self.keep_marks(bridged)).flatten(),
        ) {
            (Some(a), Some(b)) => Some(ReportLine::new(
                a.severity.max(b.severity),
                format!("{}; {}", a.text, b.text),
            )),
            (a, b) => a.or(b),
        };
        let Some(e) = refused.into_inner() else {
            return line;
        };
        let ipv6 = format!(
            "nftables refused the [ipv6] chains ({e}): IPv6 sources are neither translated nor \
             guarded; connection marking is installed without them"
        );
        Some(ReportLine::error(match line {
            Some(other) => format!("{ipv6}; {}", other.text),
            None => ipv6,
        }))
    }

    /// Tells the classifier to keep the marks packets arrive with while br_netfilter runs
    /// netfilter's prerouting on bridged packets before it (see
    /// `steer_common::settings_flags::KEEP_MARK`); says so when that changes.
    fn keep_marks(&self, bridged: bool) -> Option<ReportLine> {
        use std::sync::atomic::Ordering;
        if let Err(e) = self.dp.maps().set_keep_mark(bridged) {
            return Some(ReportLine::error(format!(
                "br_netfilter: cannot tell the classifier to keep connection marks: {e}"
            )));
        }
        if self.marking_bridged.swap(bridged, Ordering::Relaxed) == bridged {
            return None;
        }
        Some(ReportLine::warning(if bridged {
            "br_netfilter passes bridged packets through netfilter \
             (net.bridge.bridge-nf-call-iptables or -ip6tables = 1, or a LAN bridge's own \
             nf_call_iptables): steer's table now restores a connection's mark before the \
             classifier on a LAN bridge, which keeps it, and marks new connections in the \
             forward hook"
                .to_owned()
        } else {
            "br_netfilter no longer passes bridged packets through netfilter: connection marks \
             are set and restored after the classifier again"
                .to_owned()
        }))
    }

    /// [`Self::install_marking`] through `install` (steer's table with more chains in it).
    fn install_marking_with(
        &self,
        mut install: impl FnMut(&str) -> Result<(), crate::conntrack::ConntrackError>,
    ) -> Option<ReportLine> {
        use crate::dns::snoop;
        let general = &self.config.general;
        let snoop_queue = self
            .config
            .dns
            .as_ref()
            .filter(|d| d.snoop)
            .map(|d| d.snoop_queue);
        let Some(queue) = snoop_queue else {
            snoop::remove_fallback_if_installed();
            return install("")
                .err()
                .map(|e| ReportLine::warning(e.to_string()));
        };
        let chain = snoop::nft_chain(&general.lan, queue);
        if install(&chain).is_ok() {
            snoop::remove_fallback_if_installed();
            return None;
        }
        if let Err(e) = install("") {
            return Some(ReportLine::warning(e.to_string()));
        }
        match snoop::install_fallback(&general.lan, queue) {
            Ok(()) => {
                // Said once per install, not in debug only: the fallback puts chains in the
                // mangle tables of iptables, where an administrator would not look for steer.
                log::info!(
                    "dns snoop: nftables refused the queue rule here (no `queue` expression in \
                     this kernel); answers are queued by the iptables fallback instead: chain \
                     {} in the mangle tables of iptables and ip6tables, jumped to from FORWARD \
                     (`steer stop` removes it)",
                    snoop::FALLBACK_CHAIN
                );
                None
            }
            Err(e) => Some(ReportLine::error(format!(
                "dns snoop: cannot queue DNS answers (nftables refused its queue rule and {e}); \
                 snooped answers pass unlearned"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner(unread: bool) -> Inner {
        Inner {
            table: Table::new(clamp_of(None), capacity_of(None)),
            maps: None,
            lookups: None,
            unread,
            rebind: Rebind::default(),
        }
    }

    fn host(name: &str) -> Entry {
        Entry::new(Hold {
            rule: 2,
            expires: 100,
            name: name.into(),
        })
    }

    /// The forwarder answered a WAN host: who it answers is what the router routes out of a
    /// LAN interface (and its own addresses), not a WAN's subnet nor what lies behind it.
    #[test]
    fn the_forwarder_answers_what_is_routed_out_of_the_lan_and_the_router_itself() {
        use crate::routing::LinkInfo;
        let p = |s: &str| crate::prefix::parse_prefix(s, false).unwrap();
        let mut system = SystemView::default();
        for (index, name) in [(2, "br-lan"), (3, "wan"), (4, "wg0")] {
            system.links.insert(LinkInfo {
                index,
                name: name.into(),
                carrier: true,
                admin_up: true,
                point_to_point: false,
                bridge: false,
                bridge_nf_call: false,
                ppp: false,
                master: None,
            });
        }
        system.routes_out = vec![
            (p("192.168.60.0/24"), 2),
            (p("10.50.0.0/16"), 2), // behind a LAN host
            (p("fd10::/64"), 2),
            (p("fe80::/64"), 2),
            (p("100.64.1.0/30"), 3),
            (p("203.0.113.0/24"), 3),
            (p("fe80::/64"), 3),
            (p("10.8.0.0/24"), 4),
        ];
        system.addresses = vec![(3, "100.64.1.2".parse().unwrap())];
        let found: Vec<String> = lan_sources(&system, &["br-lan".into(), "gone".into()])
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "192.168.60.0/24",
                "10.50.0.0/16",
                "fd10::/64",
                "100.64.1.2/32"
            ]
        );
        // dns.clients adds a VPN's.
        let (learner, _) = Learner::new(None);
        learner.set_found_clients(lan_sources(&system, &["br-lan".into()]));
        let clients = learner.clients();
        assert!(clients.admits("192.168.60.9".parse().unwrap()));
        assert!(
            !clients.admits("100.64.1.1".parse().unwrap()),
            "the WAN's subnet"
        );
        assert!(!clients.admits("10.8.0.2".parse().unwrap()));
        learner.set_client_part(1, vec![p("10.8.0.0/24")]);
        assert!(learner.clients().admits("10.8.0.2".parse().unwrap()));
        assert!(learner.clients().admits("192.168.60.9".parse().unwrap()));
    }

    #[test]
    fn lookups_follow_the_families_held_and_the_host_being_written() {
        let (v4, v6): (IpAddr, IpAddr) = (
            "198.51.100.7".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
        );
        let mut i = inner(false);
        assert_eq!(wanted_lookups(&i, None), [false, false]);
        assert_eq!(wanted_lookups(&i, Some(v6)), [false, true]);
        write(&mut i, v4, host("a.video.example")).unwrap();
        assert_eq!(i.lookups, Some([true, false]));
        write(&mut i, v6, host("b.video.example")).unwrap();
        assert_eq!(i.lookups, Some([true, true]));
        assert_eq!(remove(&mut i, &[v6]), 1);
        assert_eq!(i.lookups, Some([true, false]));
        assert_eq!(remove(&mut i, &[v4]), 1);
        assert_eq!(i.lookups, Some([false, false]));
        // Maps that could not be read back may hold hosts the table does not know.
        assert_eq!(wanted_lookups(&inner(true), None), [true, true]);
    }
}
