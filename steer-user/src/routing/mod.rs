//! Routing: the per-WAN routing tables and the `ip rule`s that send marked packets to them,
//! kept in line with the configuration over rtnetlink.
//!
//! The classifier stamps each WAN's mark (under `general.mark_mask`); policy routing then sends
//! marked packets out of that WAN. steer computes the routing state it wants from the
//! configuration ([`desired`]) and reconciles the kernel with it ([`Routing::reconcile`]):
//! whatever differs is repaired and reported, one line per item.
//!
//! # What steer owns
//!
//! - **Rules**: exactly the `ip rule`s whose routing protocol is 201 ([`RTPROT_STEER`]; `ip rule`
//!   shows `proto 201`). A rule with any other protocol is never touched, even at one of
//!   steer's priorities.
//! - **The WAN tables**: every route in the table of a configured WAN (`wan.table`) is steer's,
//!   whatever its protocol: a route added there by hand is removed at the next reconcile. But
//!   a table another tool uses (a rule that is not steer's looks it up, and the table holds
//!   routes steer did not make: Tailscale's 52, a running mwan3's) is that tool's: `steer check`
//!   on the router and a reload refuse it, and a daemon that starts with it places nothing
//!   there (no route, no rule that looks it up) and warns ([`TableInUse`]). And a route that is
//!   not steer's that a reconcile removed (or replaced) and that comes back is another tool's:
//!   it is left alone, with a warning, rather than deleted for ever ([`others`]).
//! - **Its routes elsewhere**: a route with protocol 201 in any other table (for example the
//!   table of a WAN since removed from the configuration) is steer's and is removed. No other
//!   route outside the WAN tables is ever touched.
//!
//! # Rules (IPv4 and IPv6 alike)
//!
//! | priority | selector | action |
//! |---|---|---|
//! | 1090 ([`PRIORITY_UNREACHABLE`]) | `fwmark U/mask` | `unreachable` |
//! | 1091 ([`PRIORITY_BLACKHOLE`]) | `fwmark B/mask` | `blackhole` |
//! | 1100 + n ([`PRIORITY_WAN_BASE`]) | `fwmark <wan.mark>/mask` | `lookup <wan.table>` |
//!
//! With `[ipv6] mode = "source"` (source-specific routing), IPv6 also has, before those:
//!
//! | priority | selector | action |
//! |---|---|---|
//! | 1050 ([`PRIORITY_SOURCE_MAIN`]) | all | `lookup main suppress_prefixlength 0` |
//! | 1051 + n ([`PRIORITY_SOURCE_BASE`]) | `from <WAN n's prefix>` | `lookup <wan.table>` |
//!
//! so a packet whose source is in a WAN's delegated prefix leaves by that WAN whatever its mark
//! (its ISP drops any other source), while the main table's routes more specific than a
//! default (the LAN, other local networks) still win.
//!
//! And for every address of a WAN's interface (both families, not link-local ones), first:
//!
//! | priority | selector | action |
//! |---|---|---|
//! | 900 + 2n ([`PRIORITY_OWN_BASE`]) | `from <address>` | `lookup main suppress_prefixlength 0` |
//! | 901 + 2n | `from <address>` | `lookup <wan.table>` |
//!
//! so the router's own packets from a WAN's address (the answers of its SSH or WireGuard
//! server reached through that WAN) leave by that WAN, not by the main table's default, while
//! a LAN host it answers is still reached through the main table.
//!
//! `mask` is `general.mark_mask`; U and B are the two last-resort marks (the highest two values
//! inside the mask: 0xff00 and 0xfe00 for the default mask), which WAN marks may not use; n is
//! the WAN's position in the configuration, the first `[[wan]]` being 0. Other software may use
//! the same priorities: the kernel evaluates rules of equal priority in the order they were
//! added. A packet whose WAN table has no route for its family (a WAN without `gateway6`, for
//! IPv6) falls through to the rules after steer's, normally to the main table.
//!
//! # Routes (in each WAN's table)
//!
//! - IPv4: `default via <gateway> dev <interface>`, or `default dev <interface> scope link` when
//!   the WAN has no gateway (point-to-point links such as PPPoE).
//! - IPv6: `default via <gateway6> dev <interface>` when `gateway6` is set (a link-local gateway
//!   is fine: the route names the interface); no IPv6 route otherwise.
//!
//! They carry protocol 201 and the kernel's default metric (0 for IPv4, 1024 for IPv6).
//!
//! # Reconciling
//!
//! A missing rule or route is added; a route that differs (another gateway, interface, protocol)
//! is replaced in place; anything else steer owns is removed (a rule for an old mark, an extra
//! route in a WAN table, a route for an old gateway). New and replaced items go in before stale
//! ones are removed, so a table is never empty while it is being repaired. A route of steer's
//! whose replacement the kernel refuses (a gateway off a new interface's link, an interface
//! that is down) is removed all the same: a route steer no longer wants, to an interface that
//! may no longer be the WAN's, is worse than none.
//!
//! A route the kernel flags `linkdown` is left alone while its interface really has no carrier
//! (the kernel clears the flag itself when the carrier returns); one still flagged while the
//! carrier is up is deleted and added again.
//!
//! When a WAN's interface does not exist yet or is administratively down, its routes cannot be
//! added (the kernel also removes routes through an interface that goes down): this is reported
//! as a failure, and the next reconcile (the daemon runs one after every link, address, route or
//! rule event, see [`watch`]) adds them once the interface is back. A failure on one item never
//! stops the others.
//!
//! `steer stop` ([`Routing::remove_all`]) removes every protocol-201 rule and every route of
//! the WAN tables (and protocol-201 routes anywhere), but another tool's routes in a table it
//! uses.
//!
//! # Other software's routing
//!
//! Besides the tables, each reconcile reads what others' rules mean for steer's and warns
//! (once; in `steer status` while it holds): a rule that takes a WAN's marked packets before
//! steer's rule ([`ShadowingRule`]), rules whose `fwmark` uses the bits of `mark_mask` (their
//! marked packets may follow steer's rules, and the reverse), and a family steer routes whose
//! main table no rule looks up (`ip rule flush` removes the kernel's `32766: from all lookup
//! main`; it is not steer's to add back, and steer says when it is back).

mod kernel;
mod others;
mod plan;
pub mod rp_filter;
mod watch;

use std::{collections::HashMap, fmt, net::IpAddr};

/// The crate of the stream trait [`watch`]'s events come through (`futures::StreamExt` gives
/// `next()`), for callers that do not depend on it directly.
pub use futures;

pub use kernel::{LinkInfo, Links};
pub use others::{TableInUse, TablesInUse};
pub use watch::{Watch, watch};

/// Routing protocol number of every rule and route steer creates (`proto 201`).
pub const RTPROT_STEER: u8 = 201;
/// Priority of the rule that sends the "unreachable" last-resort mark to `unreachable`.
pub const PRIORITY_UNREACHABLE: u32 = 1090;
/// Priority of the rule that sends the "blackhole" last-resort mark to `blackhole`.
pub const PRIORITY_BLACKHOLE: u32 = 1091;
/// Priority of the first WAN's rule; WAN n (0-based, configuration order) gets this + n.
pub const PRIORITY_WAN_BASE: u32 = 1100;
/// Source-specific routing: the main table's routes but its default, before the source rules.
pub const PRIORITY_SOURCE_MAIN: u32 = 1050;
/// The rules of the router's own packets from a WAN's addresses: `900 + 2n` (the main table
/// but its default) and `901 + 2n` (the WAN's table) for the n-th WAN, before all the others
/// whatever the number of WANs.
pub const PRIORITY_OWN_BASE: u32 = 900;
/// Source-specific routing: WAN n's prefix goes to its table at this + n.
pub const PRIORITY_SOURCE_BASE: u32 = 1051;
/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

/// Address family of a rule or route.
pub use crate::model::Family;

/// What a rule does with the packets it selects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleAction {
    /// Look the destination up in this table.
    Lookup(u32),
    /// Reject (the sender gets "network unreachable").
    Unreachable,
    /// Drop silently.
    Blackhole,
}

/// One rule: `ip rule add [from <from>] [fwmark <fwmark>/<mask>] <action> [suppress_prefixlength
/// N] pref <priority> proto 201`. `fwmark` and `mask` 0: no mark selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleSpec {
    pub family: Family,
    pub priority: u32,
    pub fwmark: u32,
    pub mask: u32,
    /// Source-specific (`[ipv6] mode = "source"`): only packets from this prefix.
    pub from: Option<crate::prefix::Prefix>,
    pub action: RuleAction,
    /// Ignore a matched route this short or shorter (`suppress_prefixlength 0`: the main
    /// table's routes but its default).
    pub suppress_prefixlength: Option<u8>,
}

impl RuleSpec {
    /// `fwmark <fwmark>/<mask> <action>` at `priority`.
    pub fn marked(
        family: Family,
        priority: u32,
        (fwmark, mask): (u32, u32),
        action: RuleAction,
    ) -> RuleSpec {
        RuleSpec {
            family,
            priority,
            fwmark,
            mask,
            from: None,
            action,
            suppress_prefixlength: None,
        }
    }
}

impl fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {} ", self.priority)?;
        if let Some(from) = self.from {
            write!(f, "from {from} ")?;
        }
        if self.fwmark != 0 || self.mask != 0 {
            write!(f, "fwmark {:#x}/{:#x} ", self.fwmark, self.mask)?;
        }
        match self.action {
            RuleAction::Lookup(t) => write!(f, "lookup {t}")?,
            RuleAction::Unreachable => f.write_str("unreachable")?,
            RuleAction::Blackhole => f.write_str("blackhole")?,
        }
        if let Some(n) = self.suppress_prefixlength {
            write!(f, " suppress_prefixlength {n}")?;
        }
        write!(f, " ({})", self.family)
    }
}

/// A default route in a WAN's table: `default via <gateway> dev <interface> table <table>`, or
/// `default dev <interface> scope link table <table>` without a gateway.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteSpec {
    pub family: Family,
    pub table: u32,
    pub gateway: Option<IpAddr>,
    pub interface: String,
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("route default")?;
        match self.gateway {
            Some(gw) => write!(f, " via {gw} dev {}", self.interface)?,
            None => write!(f, " dev {} scope link", self.interface)?,
        }
        write!(f, " table {} ({})", self.table, self.family)
    }
}

/// The routing state steer wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub rules: Vec<RuleSpec>,
    pub routes: Vec<RouteSpec>,
    /// The tables steer owns (every route in them is steer's): the WANs' tables, each once. The
    /// table of every route in `routes` is among them.
    pub tables: Vec<u32>,
    /// The WANs' marks and tables as the configuration writes them, for what steer says about
    /// other software's rules and routes ([`others`]).
    pub wans: Vec<WanSource>,
    /// `general.mark_mask`, as the configuration writes it.
    pub mask: Source<u32>,
}

/// A value of the configuration and where it is written, as messages name it:
/// `/etc/steer/steer.toml:14:9: wan[wan2].table = 52`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source<T> {
    pub value: T,
    /// `FILE[:LINE:COLUMN]: FIELD = VALUE`.
    pub written: String,
}

impl<T: fmt::LowerHex> Source<T> {
    fn hex(value: T, file: &std::path::Path, place: &crate::config::Written, field: &str) -> Self {
        let written = format!("{}{place}: {field} = {value:#x}", file.display());
        Source { value, written }
    }
}

/// One WAN's mark and table, as the configuration writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WanSource {
    pub name: String,
    pub mark: Source<u32>,
    pub table: Source<u32>,
}

impl Desired {
    /// Every rule and route, as reports name them.
    pub fn items(&self) -> impl Iterator<Item = String> + '_ {
        self.rules
            .iter()
            .map(ToString::to_string)
            .chain(self.routes.iter().map(ToString::to_string))
    }
}

/// Where a WAN's default route of one family goes, once it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gateway {
    /// `default via <address>`.
    Via(IpAddr),
    /// `default dev <interface> scope link`: a point-to-point link.
    Direct,
}

/// The rules that send the router's own packets from an address of a WAN's interface out of
/// that WAN (see the module documentation), `addresses` giving an interface's.
pub fn own_address_rules(
    wans: &[crate::config::Wan],
    addresses: impl Fn(&str) -> Vec<IpAddr>,
) -> Vec<RuleSpec> {
    let mut rules = Vec::new();
    for (n, wan) in wans.iter().enumerate() {
        let priority = PRIORITY_OWN_BASE.saturating_add(2 * n as u32);
        for addr in addresses(&wan.interface) {
            let from = |priority, table| RuleSpec {
                from: Some(crate::prefix::Prefix::host(addr)),
                ..RuleSpec::marked(
                    Family::of(&addr),
                    priority,
                    (0, 0),
                    RuleAction::Lookup(table),
                )
            };
            rules.push(RuleSpec {
                suppress_prefixlength: Some(0),
                ..from(priority, MAIN_TABLE)
            });
            rules.push(from(priority + 1, wan.table));
        }
    }
    rules
}

/// The rules, routes and tables `config` asks for (see the [module documentation](self)), with
/// each WAN family's default route going where `gateway` says; a family whose gateway is not
/// known yet gets no route.
pub fn desired(
    config: &crate::config::Config,
    gateway: impl Fn(&str, Family) -> Option<Gateway>,
    prefix6: impl Fn(&str) -> Option<crate::prefix::Prefix>,
) -> Desired {
    let mask = config.general.mark_mask;
    let (unreachable, blackhole) = crate::model::last_resort_marks(mask);
    let mut d = Desired::default();
    for family in Family::ALL {
        d.rules.push(RuleSpec::marked(
            family,
            PRIORITY_UNREACHABLE,
            (unreachable, mask),
            RuleAction::Unreachable,
        ));
        d.rules.push(RuleSpec::marked(
            family,
            PRIORITY_BLACKHOLE,
            (blackhole, mask),
            RuleAction::Blackhole,
        ));
        for (n, wan) in config.wans.iter().enumerate() {
            d.rules.push(RuleSpec::marked(
                family,
                PRIORITY_WAN_BASE.saturating_add(n as u32),
                (wan.mark, mask),
                RuleAction::Lookup(wan.table),
            ));
        }
    }
    if config.ipv6_mode() == Some(crate::config::Ipv6Mode::Source) {
        d.rules.extend(source_rules(&config.wans, prefix6));
    }
    for wan in &config.wans {
        for family in Family::ALL {
            let Some(gw) = gateway(&wan.name, family) else {
                continue;
            };
            d.routes.push(RouteSpec {
                family,
                table: wan.table,
                gateway: match gw {
                    Gateway::Via(a) => Some(a),
                    Gateway::Direct => None,
                },
                interface: wan.interface.clone(),
            });
        }
        if !d.tables.contains(&wan.table) {
            d.tables.push(wan.table);
        }
        let file = &config.path;
        d.wans.push(WanSource {
            name: wan.name.clone(),
            mark: Source::hex(
                wan.mark,
                file,
                &wan.mark_place,
                &format!("wan[{}].mark", wan.name),
            ),
            table: Source {
                value: wan.table,
                written: format!(
                    "{}{}: wan[{}].table = {}",
                    file.display(),
                    wan.table_place,
                    wan.name,
                    wan.table
                ),
            },
        });
    }
    d.mask = Source::hex(
        mask,
        &config.path,
        &config.general.mark_mask_place,
        "general.mark_mask",
    );
    if config.general.mark_mask_place.0.is_none() {
        d.mask.written.push_str(" (the default)");
    }
    d
}

/// Source-specific routing's IPv6 rules (see the module documentation), for the WANs whose
/// prefix is known.
fn source_rules(
    wans: &[crate::config::Wan],
    prefix6: impl Fn(&str) -> Option<crate::prefix::Prefix>,
) -> Vec<RuleSpec> {
    let mut rules = vec![RuleSpec {
        suppress_prefixlength: Some(0),
        ..RuleSpec::marked(
            Family::V6,
            PRIORITY_SOURCE_MAIN,
            (0, 0),
            RuleAction::Lookup(MAIN_TABLE),
        )
    }];
    for (n, wan) in wans.iter().enumerate() {
        if let Some(p) = prefix6(&wan.name) {
            rules.push(RuleSpec {
                from: Some(p),
                ..RuleSpec::marked(
                    Family::V6,
                    PRIORITY_SOURCE_BASE.saturating_add(n as u32),
                    (0, 0),
                    RuleAction::Lookup(wan.table),
                )
            });
        }
    }
    rules
}

/// What `steer check` says, where it runs, of `config`'s WAN tables and marks against the
/// rules and routes other software keeps: a table another tool uses refuses it
/// ([`TableInUse`]); the notes name the rules of others that take steer's marked packets first
/// or use its mark bits, and the routes steer did not make in a WAN table (steer removes them
/// at start). Off the router (none of the WANs' interfaces is here) nothing is judged, as
/// `steer check` may run anywhere; kernel state that cannot be read is a note. Call it inside
/// a tokio runtime.
pub async fn check(config: &crate::config::Config) -> Result<Vec<String>, TablesInUse> {
    let d = desired(config, |_, _| None, |_| None);
    let not_checked = |e: String| {
        Ok(vec![format!(
            "routing: the WAN tables and marks were not checked against this machine's rules: {e}"
        )])
    };
    let routing = match Routing::new() {
        Ok(r) => r,
        Err(e) => return not_checked(e.to_string()),
    };
    let s = match kernel::Snapshot::read(&routing.handle, &d.tables).await {
        Ok(s) => s,
        Err(e) => return not_checked(kernel::describe_error(&e)),
    };
    if !config
        .wans
        .iter()
        .any(|w| s.links.get(&w.interface).is_some())
    {
        return Ok(Vec::new());
    }
    let in_use = others::tables_in_use(&d, &s, &Default::default());
    if !in_use.is_empty() {
        return Err(TablesInUse(in_use));
    }
    let shadowed = plan::shadowing_rules(&d, &s);
    let skip: Vec<String> = shadowed.iter().map(|w| w.rule.clone()).collect();
    let mut notes: Vec<String> = shadowed.into_iter().map(|w| w.line).collect();
    notes.extend(
        others::mark_overlaps(&d, &s, &skip)
            .into_iter()
            .map(|w| w.line),
    );
    notes.extend(others::leftovers(&d, &s));
    Ok(notes)
}

/// What a reconcile (or removal) found and did.
#[derive(Debug, Clone, Default)]
pub struct ReconcileReport {
    /// One line per difference found and what was done, e.g. `repaired: rule 1100 fwmark
    /// 0x100/0xff00 lookup 101 (v4) was missing`, `removed stale: route default via 100.64.1.9
    /// dev wan1 table 101 (v4)`. Empty when nothing differed.
    pub changes: Vec<Change>,
    /// One line per item that could not be put right, with the reason, e.g. `failed: route
    /// default via 100.64.1.9 dev wan1 table 101 (v4): Network is unreachable (os error 101);
    /// retrying on the next link or address event and at every periodic check`.
    pub failures: Vec<String>,
    /// One line per route that cannot be placed because its interface is down or has no
    /// carrier, said once (not a failure: it is placed when the link comes up), e.g. `route
    /// default via 100.64.1.1 dev wan1 table 101 (v4) waits for wan1 to come up (...)`.
    pub waiting: Vec<String>,
    /// The default routes among the failures, with the kernel's error number: whether a
    /// gateway was refused (not on its link) or only waits (its link has no address of the
    /// family yet). Routes whose link is down are in `waiting`, not here.
    pub refused_routes: Vec<RefusedRoute>,
    /// What steer found of other software's routing, each said once: the ones found since the
    /// last reconcile. Rules of someone else's that take steer's marked packets first
    /// ([`ShadowingRule`]), a WAN table another tool uses ([`TableInUse`]), a route of another
    /// tool's that came back after steer removed it, rules that use steer's mark bits, a family
    /// no rule looks up the main table for.
    pub warnings: Vec<String>,
    /// Warnings said before that no longer hold, when that is news (a WAN table steer places
    /// its routes in again, the main table looked up again).
    pub cleared: Vec<String>,
    /// The routes of others that this reconcile removed or replaced, as their descriptions.
    pub taken: Vec<String>,
}

/// One difference a reconcile put right: its report line, and whose doing it was.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    pub kind: ChangeKind,
    pub line: String,
}

/// What a change did to an item, and so whose doing the difference was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    /// Placed for the first time.
    Created,
    /// Placed beside an earlier form of it, which a later reconcile removes.
    Added,
    /// Steer's own earlier form of it (another lease, a reload) brought up to date.
    Changed,
    /// Steer's own item removed: it is no longer wanted.
    Removed,
    /// Put back: an earlier reconcile placed it and someone removed it.
    Repaired,
    /// Put in place of a form steer never placed (someone else's).
    Replaced,
    /// An item steer owns but never placed, left by someone or something else, removed.
    RemovedStale,
}

impl ChangeKind {
    /// Steer's own doing, news at INFO; the others put right what someone else did, drift
    /// worth a warning.
    pub fn is_news(self) -> bool {
        matches!(
            self,
            ChangeKind::Created | ChangeKind::Added | ChangeKind::Changed | ChangeKind::Removed
        )
    }
}

impl Change {
    pub fn new(kind: ChangeKind, line: String) -> Self {
        Self { kind, line }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

impl PartialEq<str> for Change {
    fn eq(&self, other: &str) -> bool {
        self.line == other
    }
}

impl PartialEq<&str> for Change {
    fn eq(&self, other: &&str) -> bool {
        self.line == *other
    }
}

impl PartialEq<String> for Change {
    fn eq(&self, other: &String) -> bool {
        &self.line == other
    }
}

impl serde::Serialize for Change {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.line)
    }
}

/// A default route the kernel did not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRoute {
    pub spec: RouteSpec,
    /// `None` when steer did not ask (its interface does not exist).
    pub errno: Option<i32>,
    /// In words, as the failure line gives it.
    pub why: String,
}

impl ReconcileReport {
    /// Nothing differed and nothing failed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.failures.is_empty() && self.waiting.is_empty()
    }
}

/// Desired versus actual, for `steer status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoutingStatus {
    /// One entry per desired item (`<item>: ok`, `<item>: missing`, `<item>: differs: found
    /// <what>`), one per stale item steer owns (`stale: <item>`) and one per rule of someone
    /// else's that takes steer's marked packets first (`warning: ...`).
    pub items: Vec<String>,
    /// Every desired item is ok and nothing is stale.
    pub in_sync: bool,
    /// The rules steer does not own that take packets with a WAN's mark before steer's rule
    /// for it (also among `items`).
    #[serde(default)]
    pub shadowed: Vec<ShadowingRule>,
}

/// A rule steer does not own that the kernel reaches before steer's rule for a mark, and that
/// takes packets with that mark: they do not leave by the WAN steer chose.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShadowingRule {
    /// "IPv4" or "IPv6".
    pub family: String,
    /// The mark (under `mask`) of steer's rule it comes before.
    pub mark: u32,
    pub mask: u32,
    /// The rule, as `ip rule` would show it.
    pub rule: String,
    /// The warning, in words.
    pub line: String,
}

impl ShadowingRule {
    /// Whether it takes a packet of `family` stamped `mark`.
    pub fn takes(&self, family: Family, mark: u32) -> bool {
        self.family == family.name() && (self.mark ^ mark) & self.mask == 0
    }
}

/// Why routing could not start, or could not read the kernel's interfaces.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("routing needs a tokio runtime (create Routing and watch() from inside one)")]
    NoRuntime,
    #[error("cannot open a netlink route socket: {0}")]
    Socket(#[source] std::io::Error),
    /// The kernel's answer to a link dump, in words.
    #[error("cannot read the kernel's interfaces: {0}")]
    Links(String),
    /// The kernel's answer to a route dump, in words.
    #[error("cannot read the kernel's routes: {0}")]
    Routes(String),
}

/// steer's view of the kernel's routing: reads and changes rules and routes over an rtnetlink
/// socket whose connection task runs on the tokio runtime that created it.
#[derive(Debug, Clone)]
pub struct Routing {
    handle: rtnetlink::Handle,
    /// What earlier reconciles put in place: a missing item is then "repaired", otherwise
    /// "created".
    placed: std::sync::Arc<std::sync::Mutex<plan::Placed>>,
    /// The warnings the last reconcile found: a reconcile runs at every routing event, and a
    /// warning is said once, not at each.
    said: std::sync::Arc<std::sync::Mutex<Vec<others::Warning>>>,
    /// What earlier reconciles learned of other software's routes and tables.
    others: std::sync::Arc<std::sync::Mutex<plan::Others>>,
    /// Routes that wait for their interface to come up ([`kernel::Waits`]).
    waits: std::sync::Arc<std::sync::Mutex<kernel::Waits>>,
}

impl Routing {
    /// Opens the netlink socket and spawns its connection task on the current tokio runtime
    /// (the daemon uses a current-thread runtime). Fails outside a runtime.
    pub fn new() -> Result<Routing, RoutingError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| RoutingError::NoRuntime)?;
        // Strict checking makes the kernel filter route dumps by table and protocol.
        let (conn, handle, _) =
            rtnetlink::new_connection_with_strict_check().map_err(RoutingError::Socket)?;
        rt.spawn(conn);
        Ok(Routing {
            handle,
            placed: Default::default(),
            said: Default::default(),
            others: Default::default(),
            waits: Default::default(),
        })
    }

    /// Makes the kernel match `desired`: adds what is missing, replaces what differs, removes
    /// what steer owns but does not want (see the [module documentation](self)). Idempotent: a
    /// second call with no drift in between returns an empty report.
    pub async fn reconcile(&self, desired: &Desired) -> ReconcileReport {
        let (snapshot, plan) = match self.planned(desired).await {
            Ok(planned) => planned,
            Err(mut report) => {
                report.failures[0].push_str(kernel::RETRYING);
                return report;
            }
        };
        let (found, shared) = (plan.warnings, plan.shared);
        let (mut report, waits) = self.execute(&snapshot.links, plan.steps).await;
        {
            let mut said = self.said.lock().unwrap_or_else(|e| e.into_inner());
            let new = |w: &&others::Warning| !said.iter().any(|s| s.about == w.about);
            report.warnings = found.iter().filter(new).map(|w| w.line.clone()).collect();
            let gone = |w: &&others::Warning| !found.iter().any(|f| f.about == w.about);
            report.cleared = said
                .iter()
                .filter(gone)
                .filter_map(|w| w.cleared.clone())
                .collect();
            *said = found;
        }
        {
            let mut others = self.others.lock().unwrap_or_else(|e| e.into_inner());
            others.taken.extend(report.taken.iter().cloned());
            others.shared = shared;
        }
        let failed = |item: &String| {
            let head = format!("failed: {item}: ");
            report.failures.iter().any(|f| f.starts_with(&head)) || waits.waits(item)
        };
        // What is in place now, not everything ever placed: an item no longer desired (a WAN
        // a reload removed) that comes back later is new again, not "repaired".
        *self.placed.lock().unwrap_or_else(|e| e.into_inner()) =
            desired.items().filter(|i| !failed(i)).collect();
        report
    }

    /// Adds what `desired` has and the kernel lacks, and changes nothing else: a reload that
    /// gives a WAN another mark or table puts the new rule and route in before the classifier
    /// stamps the new mark (a full reconcile after it removes the old ones).
    pub async fn add_missing(&self, desired: &Desired) -> ReconcileReport {
        let (snapshot, plan) = match self.planned(desired).await {
            Ok(planned) => planned,
            Err(report) => return report,
        };
        self.execute(&snapshot.links, plan.additions()).await.0
    }

    /// [`kernel::execute`] with the routes that wait for their interface, kept for the next
    /// reconcile; and what waits now.
    async fn execute(
        &self,
        links: &kernel::Links,
        steps: Vec<kernel::Step>,
    ) -> (ReconcileReport, kernel::Waits) {
        let lock = || self.waits.lock().unwrap_or_else(|e| e.into_inner());
        // Not held across the kernel's answers.
        let mut waits = lock().clone();
        let report = kernel::execute(&self.handle, links, steps, &mut waits).await;
        *lock() = waits.clone();
        (report, waits)
    }

    /// The kernel's state and the plan from it to `desired`, or the report of a failed read.
    async fn planned(
        &self,
        desired: &Desired,
    ) -> Result<(kernel::Snapshot, plan::Plan), ReconcileReport> {
        let snapshot = kernel::Snapshot::read(&self.handle, &desired.tables)
            .await
            .map_err(|e| ReconcileReport {
                failures: vec![format!(
                    "failed: reading the kernel's rules and routes: {}",
                    kernel::describe_error(&e)
                )],
                ..ReconcileReport::default()
            })?;
        let plan = self.plan(desired, &snapshot);
        Ok((snapshot, plan))
    }

    fn plan(&self, desired: &Desired, snapshot: &kernel::Snapshot) -> plan::Plan {
        let placed = self.placed.lock().unwrap_or_else(|e| e.into_inner());
        let others = self.others.lock().unwrap_or_else(|e| e.into_inner());
        plan::plan(desired, snapshot, &placed, &others)
    }

    /// Refuses `desired` (a configuration about to be applied) when one of its WAN tables is
    /// another tool's ([`TableInUse`]): a reload then changes nothing. A table the running
    /// daemon already leaves alone (found so at start, or since: that tool came later) is not
    /// refused: the reload changes nothing there either, and the warning stands. Kernel state
    /// that cannot be read is not judged: the reconcile that follows says so.
    pub async fn check_tables(&self, desired: &Desired) -> Result<(), TablesInUse> {
        let Ok(snapshot) = kernel::Snapshot::read(&self.handle, &desired.tables).await else {
            return Ok(());
        };
        let known = self
            .others
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shared
            .clone();
        let mut found = others::tables_in_use(desired, &snapshot, &known);
        found.retain(|t| !known.contains_key(&t.table));
        if found.is_empty() {
            Ok(())
        } else {
            Err(TablesInUse(found))
        }
    }

    /// Desired versus actual, without changing anything.
    pub async fn status(&self, desired: &Desired) -> RoutingStatus {
        match kernel::Snapshot::read(&self.handle, &desired.tables).await {
            Ok(snapshot) => {
                let plan = self.plan(desired, &snapshot);
                RoutingStatus {
                    in_sync: plan.in_sync,
                    items: plan.status,
                    shadowed: plan.shadowed,
                }
            }
            Err(e) => RoutingStatus {
                items: vec![format!(
                    "cannot read the kernel's rules and routes: {}",
                    kernel::describe_error(&e)
                )],
                in_sync: false,
                shadowed: Vec::new(),
            },
        }
    }

    /// Removes every protocol-201 rule, every route in `owned_tables` and every protocol-201
    /// route anywhere (`steer stop`).
    pub async fn remove_all(&self, owned_tables: &[u32]) -> ReconcileReport {
        let snapshot = match kernel::Snapshot::read(&self.handle, owned_tables).await {
            Ok(s) => s,
            Err(e) => {
                return ReconcileReport {
                    failures: vec![format!(
                        "failed: reading the kernel's rules and routes: {}",
                        kernel::describe_error(&e)
                    )],
                    ..ReconcileReport::default()
                };
            }
        };
        let steps = plan::removal(&snapshot, owned_tables);
        let mut waits = kernel::Waits::default();
        kernel::execute(&self.handle, &snapshot.links, steps, &mut waits).await
    }

    /// What the system says about the WANs' surroundings, from one read: every interface,
    /// the default routes outside steer's tables (`owned_tables`), and the destinations the
    /// router reaches without a WAN.
    pub async fn system(&self, owned_tables: &[u32]) -> Result<SystemView, RoutingError> {
        let routes = |e: rtnetlink::Error| RoutingError::Routes(kernel::describe_error(&e));
        let mut links = kernel::Links::default();
        for l in self.links().await? {
            links.insert(l);
        }
        let defaults = kernel::default_routes(&self.handle, owned_tables, &links)
            .await
            .map_err(routes)?;
        let found = kernel::local_routes(&self.handle).await.map_err(routes)?;
        Ok(SystemView {
            links,
            defaults,
            local: found.local,
            through_gateways: found.through_gateways,
            delegated: found.delegated,
            addresses: found.addresses,
            routes_out: found.routes_out,
            on_link: found.on_link,
        })
    }

    /// Whether br_netfilter passes the packets of any of the bridges `names` through netfilter
    /// (one link dump): `sysctl_on` (the namespace's `bridge-nf-call-*`) for every bridge, or
    /// the bridge's own `nf_call_iptables`. `None` when the dump failed.
    pub async fn any_bridge_netfiltered(&self, names: &[String], sysctl_on: bool) -> Option<bool> {
        let links = self.links().await.ok()?;
        Some(
            links
                .iter()
                .any(|l| l.bridge && names.contains(&l.name) && (sysctl_on || l.bridge_nf_call)),
        )
    }

    /// The index, carrier (IFF_LOWER_UP) and administrative state (IFF_UP) of every interface,
    /// by name, from a single link dump: one request however many interfaces the caller needs.
    pub async fn link_states(&self) -> Result<HashMap<String, (u32, bool, bool)>, RoutingError> {
        Ok(self
            .links()
            .await?
            .into_iter()
            .map(|l| (l.name, (l.index, l.carrier, l.admin_up)))
            .collect())
    }

    async fn links(&self) -> Result<Vec<kernel::LinkInfo>, RoutingError> {
        kernel::dump_links(&self.handle)
            .await
            .map_err(|e| RoutingError::Links(kernel::describe_error(&e)))
    }

    /// The index, carrier (IFF_LOWER_UP) and administrative state (IFF_UP) of the interface
    /// called `name`; `None` if there is none.
    pub async fn link_state(&self, name: &str) -> Option<(u32, bool, bool)> {
        kernel::link_by_name(&self.handle, name)
            .await
            .map(|l| (l.index, l.carrier, l.admin_up))
    }
}

/// The kernel's interfaces and routes as steer reads them around its own (see
/// [`Routing::system`]).
#[derive(Debug, Clone, Default)]
pub struct SystemView {
    pub links: kernel::Links,
    /// Default routes outside steer's tables.
    pub defaults: Vec<DefaultRoute>,
    /// Destinations reached without a WAN.
    pub local: Vec<(crate::prefix::Prefix, crate::model::LocalKind)>,
    /// The main-table routes among them whose next hop is a gateway, with the interface each
    /// leaves by (local only while a WAN there is up: `controller::local`).
    pub through_gateways: Vec<(crate::prefix::Prefix, u32)>,
    /// The main table's reject routes for global IPv6 prefixes: how DHCPv6 clients hold a
    /// delegated prefix (its parts go to the LAN).
    pub delegated: Vec<DelegatedRoute>,
    /// The router's own addresses, with the interface (by index) holding each: the families a
    /// point-to-point link carries, the sources of a WAN's own traffic.
    pub addresses: Vec<(u32, IpAddr)>,
    /// The main table's unicast routes but the default, with the interface each leaves by:
    /// who is behind which interface (the DNS forwarder answers the LAN's).
    pub routes_out: Vec<(crate::prefix::Prefix, u32)>,
    /// The ones among them without a gateway, by interface: the subnets on each link (where
    /// the kernel takes a gateway for a route through that interface).
    pub on_link: Vec<(crate::prefix::Prefix, u32)>,
}

impl SystemView {
    /// Whether the interface `index` holds an address of `family`; a link-local one counts
    /// only with `link_local` (a PPP device's, from IPv6CP).
    pub fn has_address(&self, index: u32, family: Family, link_local: bool) -> bool {
        self.addresses.iter().any(|(i, a)| {
            *i == index && Family::of(a) == family && (link_local || !is_link_local(a))
        })
    }

    /// The addresses the interface called `name` holds, but link-local ones.
    pub fn addresses_of(&self, name: &str) -> Vec<IpAddr> {
        let Some(index) = self.links.get(name).map(|l| l.index) else {
            return Vec::new();
        };
        self.addresses
            .iter()
            .filter(|(i, a)| *i == index && !is_link_local(a))
            .map(|(_, a)| *a)
            .collect()
    }
}

fn is_link_local(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.is_unicast_link_local(),
    }
}

/// `unreachable 2001:db8:1::/56 dev lo proto dhcp`: a DHCPv6 client's (dhcpcd,
/// systemd-networkd; netifd's with `proto static` and metric 2^31 - 1) hold on a delegated
/// prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegatedRoute {
    pub prefix: crate::prefix::Prefix,
    pub protocol: u8,
    pub metric: u32,
}

impl DelegatedRoute {
    /// "unreachable route, proto dhcp".
    pub fn origin(&self) -> String {
        format!(
            "unreachable route, proto {}",
            kernel::protocol_name(self.protocol)
        )
    }
}

/// A default route some other software installed (a DHCP client, pppd, the kernel from router
/// advertisements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    pub family: Family,
    /// The interface it leaves by.
    pub interface: String,
    /// Its next hop; `None` for `default dev X`.
    pub gateway: Option<IpAddr>,
    pub table: u32,
    pub protocol: u8,
    pub metric: u32,
    /// Only for some sources (`default from PREFIX`), as OpenWrt's netifd installs IPv6
    /// defaults for the delegated prefixes: its next hop is the line's all the same, and its
    /// prefix tells which line a delegated prefix came by.
    pub source: Option<crate::prefix::Prefix>,
}

impl DefaultRoute {
    /// Where it came from, in words: "table main, proto dhcp".
    /// Who installed it, in words ("proto static").
    pub fn protocol_text(&self) -> String {
        format!("proto {}", kernel::protocol_name(self.protocol))
    }

    pub fn origin(&self) -> String {
        let table = match self.table {
            MAIN_TABLE => "main".to_owned(),
            t => t.to_string(),
        };
        let from = self.source.map_or(String::new(), |p| format!(", from {p}"));
        format!(
            "table {table}, proto {}{from}",
            kernel::protocol_name(self.protocol)
        )
    }
}

/// Kernel routing events the controller cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// An interface appeared or its state changed: carrier is IFF_LOWER_UP, admin_up IFF_UP.
    /// Only changes are reported (a link's first event after [`watch`] starts always is).
    Link {
        index: u32,
        name: String,
        carrier: bool,
        admin_up: bool,
    },
    /// An interface was removed.
    LinkGone { index: u32, name: String },
    /// An address, route or rule changed (or events were lost): routing may need a reconcile.
    /// Consecutive ones that are already queued are merged into one.
    Changed,
}

#[cfg(test)]
mod tests {
    use super::Routing;

    /// The single dump reports an interface as the lookup by name does (`lo`: every network
    /// namespace has it, and nothing changes it while the test runs).
    #[tokio::test]
    async fn link_states_agree_with_link_state() {
        let routing = Routing::new().expect("a netlink route socket");
        let all = routing.link_states().await.expect("a link dump");
        let lo = routing.link_state("lo").await.expect("lo exists");
        assert_eq!(all.get("lo"), Some(&lo));
        assert!(all.values().all(|&(index, _, _)| index > 0));
    }
}
