//! `steer explain`: why a packet goes where it goes. A private copy of the classifier (the same
//! object the daemon runs) is run through BPF_PROG_TEST_RUN on a synthetic packet against the
//! live pinned maps: the XDP program says which rule matched (its verdict metadata), the TC
//! program what mark the packet leaves with. Names come from the pinned maps.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use serde_json::{Value, json};
use steer_common::{DEFAULT_RULE, LB_SLOTS, LOCAL_RULE, action, cond, ipproto, policy_flags};

use super::{dns::LearnedHost, dump::Names};
use crate::{
    dataplane::{
        Dataplane, DataplaneError, Maps,
        ordered::CondProbe,
        run::{run_tc, run_tc_from},
    },
    model::{Direction, Family, LocalKind, RuleKind},
    packet::{Frame, Transport},
    prefix::Prefix,
    status::{Status, WanState},
};

/// The transport protocol of the synthetic packet: `tcp`, `udp`, `icmp` (ICMPv6 for IPv6) or
/// an IP protocol number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Other(u8),
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "icmp" => Ok(Proto::Icmp),
            // As the configuration reads them: `icmpv6` is ICMPv6 alone (IPv6 only).
            "icmpv6" | "ipv6-icmp" => Ok(Proto::Other(IPPROTO_ICMPV6)),
            "sctp" => Ok(Proto::Other(ipproto::IPPROTO_SCTP)),
            "udplite" | "udp-lite" => Ok(Proto::Other(ipproto::IPPROTO_UDPLITE)),
            other => match other.parse::<u8>() {
                Ok(6) => Ok(Proto::Tcp),
                Ok(17) => Ok(Proto::Udp),
                Ok(n) => Ok(Proto::Other(n)),
                Err(_) => Err(format!(
                    "unknown protocol {s:?}: use tcp, udp, icmp (ICMPv6 for IPv6), icmpv6, sctp, \
                     udplite or a protocol number 0-255"
                )),
            },
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proto::Tcp => f.write_str("tcp"),
            Proto::Udp => f.write_str("udp"),
            Proto::Icmp => f.write_str("icmp"),
            Proto::Other(IPPROTO_ICMPV6) => f.write_str("icmpv6"),
            Proto::Other(ipproto::IPPROTO_SCTP) => f.write_str("sctp"),
            Proto::Other(ipproto::IPPROTO_UDPLITE) => f.write_str("udplite"),
            Proto::Other(n) => write!(f, "protocol {n}"),
        }
    }
}

impl Proto {
    fn has_ports(self) -> bool {
        match self {
            Proto::Tcp | Proto::Udp => true,
            Proto::Other(n) => ipproto::has_ports(n),
            Proto::Icmp => false,
        }
    }
}

/// ICMPv6's protocol number.
const IPPROTO_ICMPV6: u8 = 58;

/// The synthetic packet `steer explain` classifies (its command-line arguments).
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Destination address.
    #[arg(value_parser = parse_address)]
    pub dst: IpAddr,
    /// Source address (a LAN host); default 0.0.0.0 or ::.
    #[arg(long, value_parser = parse_address)]
    pub src: Option<IpAddr>,
    /// Transport protocol of the synthetic packet: tcp, udp, icmp (ICMPv6 for IPv6), icmpv6,
    /// sctp, udplite or a protocol number (sets with `proto` conditions and balanced policies
    /// look at it).
    #[arg(long, default_value = "udp")]
    pub proto: Proto,
    /// Source port (tcp, udp, sctp and udplite); default 40000.
    #[arg(long)]
    pub sport: Option<u16>,
    /// Destination port (tcp, udp, sctp and udplite); default 443.
    #[arg(long)]
    pub dport: Option<u16>,
    /// Source MAC address of the frame (sets with `src_macs` look at it).
    #[arg(long, value_parser = parse_mac)]
    pub src_mac: Option<[u8; 6]>,
    /// The LAN interface the packet comes in on (sets with `in` look at it; it must exist in
    /// this network namespace).
    #[arg(long = "in", value_name = "INTERFACE")]
    pub input: Option<String>,
}

/// An address as list files take it, with their messages (`300.1.1.1`, `10.0.0.0/8` and
/// `::ffff:10.0.0.1` say what is wrong and what to write).
fn parse_address(text: &str) -> Result<IpAddr, String> {
    crate::prefix::parse_addr(text).map_err(|e| format!("{}; {}", e.message(), e.hint()))
}

/// The loopback device's index in every network namespace: the device of a test run given none.
const LOOPBACK_IFINDEX: u32 = 1;

/// `aa:bb:cc:dd:ee:ff` (or with dashes), for `--src-mac`.
fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    crate::model::ordered::parse_mac(text)
        .ok_or_else(|| format!("{text:?} is not a MAC address: write aa:bb:cc:dd:ee:ff"))
}

/// An ordered rule that matched: its place in the configuration and the conditions the
/// packet met.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderedMatch {
    /// 1 for the first set with conditions in the configuration.
    pub position: usize,
    pub met: Vec<String>,
    /// The later sets with conditions the packet also meets (position, set): the first one
    /// met decides, so they lose.
    pub later: Vec<(usize, String)>,
}

/// The answer to "why did this packet go out there?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: Proto,
    pub sport: u16,
    pub dport: u16,
    pub src_mac: [u8; 6],
    pub input: Option<String>,
    /// What the command line did not give that sets with conditions look at: where explain
    /// took the input interface and source MAC from, or which sets it could not judge.
    pub host: Vec<String>,
    /// The rule is an ordered rule (a set with conditions): which one and what it checked.
    pub ordered: Option<OrderedMatch>,
    /// The destination is local (reached without a WAN): the prefix and why. Such a packet is
    /// never steered, whatever the rules say.
    pub local: Option<(Prefix, LocalKind)>,
    /// Rule the classifier matched (0: the default rule; meaningless for a local destination).
    pub rule: u32,
    pub set: String,
    /// What the matched rule looks at; `None` for the default rule.
    pub matched_on: Option<Direction>,
    /// The set's prefix that matched (longest), if a set matched.
    pub prefix: Option<Prefix>,
    /// The destination was learned from a DNS answer: that is what matched.
    pub learned: Option<LearnedHost>,
    /// Other sets that also hold the packet's address, each with why it lost (what the packet
    /// would get without the match).
    pub shadowed: Vec<Beaten>,
    /// The matched prefix is a runtime entry (`steer set`): seconds it has left, `None` until
    /// deleted.
    pub runtime: Option<Option<i64>>,
    pub policy: String,
    /// skb->mark as the TC program left it.
    pub mark: u32,
    pub mask: u32,
    pub wan: String,
    pub generation: u32,
    /// Each WAN's state in the packet's address family, when the daemon answered (the policy
    /// decided from these).
    pub health: Vec<WanHealth>,
    /// What an IPv6 source becomes on the WAN (`[ipv6]`), when the daemon answered.
    pub source: Option<String>,
    /// A balanced policy: the slot of its table the packet's hash picked, and that slot's WAN.
    pub balance: Option<Balance>,
    /// Rules steer does not own that take the packet's mark before steer's rule does, when
    /// the daemon answered: the kernel routes the packet by them, not to the WAN's table.
    pub routed_by: Vec<String>,
    /// Connections conntrack holds that this packet belongs to (or may, when the probe did not
    /// name the whole connection): their packets keep the WAN their mark names, whatever the
    /// verdict above says for a new connection.
    pub held: Option<Held>,
    /// Connections that came in from a WAN (a port forward's, a DMZ server's) that the packet
    /// answers: their replies leave by the WAN their mark names, the one they came in on.
    pub answers: Option<Held>,
    /// Why no connection was looked up: explain runs in another network namespace than the
    /// daemon, whose conntrack it cannot read.
    pub unchecked: Option<String>,
    /// An unmarked packet: the main table's default route that takes it, in words.
    pub main_route: Option<String>,
    /// Why no daemon's WAN states are shown (none answers: the verdict is the frozen state
    /// the last one left; or the one answering is another's).
    pub daemon: Option<String>,
}

/// Connections conntrack holds for the probe, grouped by the WAN their mark names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// The probe named one connection: its source, and its ports where the protocol has them.
    pub exact: bool,
    /// (mark under the mask, its WAN in words, how many connections), marked ones only.
    pub by_mark: Vec<(u32, String, usize)>,
    /// Why conntrack could not be read, if so.
    pub error: Option<String>,
}

impl Held {
    /// As `--json` shows it (`held`, `answers`).
    fn to_json(&self) -> serde_json::Value {
        json!({
            "exact": self.exact,
            "connections": self.by_mark.iter().map(|(mark, wan, n)| json!({
                "mark": format!("{mark:#x}"), "wan": wan, "count": n,
            })).collect::<Vec<_>>(),
            "error": self.error,
        })
    }
}

/// How a balanced policy chose the packet's WAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Balance {
    pub slot: u32,
    /// The hash is of the source address alone (`hash = "src"`), not of the whole flow.
    pub by_source: bool,
    /// The WAN the slot holds (the classifier's mark says the same).
    pub wan: String,
}

/// A set that also holds the packet's address, and why it did not decide the packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Beaten {
    pub prefix: Prefix,
    pub set: String,
    /// The address is a host learned from a DNS answer for the set, not one of its prefixes.
    pub learned: bool,
    pub why: Lost,
}

/// Why a set that also holds the packet's address lost, in the classifier's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lost {
    /// A longer prefix of the same kind of set won.
    Shorter,
    /// Sets with conditions come before every plain set.
    Ordered,
    /// Source sets come before hosts learned from DNS and destination prefixes.
    Source,
    /// A host learned from DNS comes before destination prefixes.
    Learned,
    /// A destination the router reaches without a WAN is never steered.
    Local,
}

impl Lost {
    fn as_str(self) -> &'static str {
        match self {
            Lost::Shorter => "shorter",
            Lost::Ordered => "conditions first",
            Lost::Source => "source first",
            Lost::Learned => "learned first",
            Lost::Local => "local",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Lost::Shorter => "shorter, so it loses",
            Lost::Ordered => "sets with conditions come first",
            Lost::Source => "source sets come first",
            Lost::Learned => "a host learned from DNS comes first",
            Lost::Local => "a local destination is never steered",
        }
    }
}

/// What a waiting family waits for. A family carries nothing whatever its probes say while it
/// has no gateway, or (IPv6 under `[ipv6]` npt or source) while its WAN's prefix is unknown:
/// the gateway may be there and the prefix be what is missing.
fn waiting_for(status: &Status, wan: &str, f: &crate::status::FamilyStatus) -> String {
    let prefix_missing = (f.family == Family::V6.name())
        .then_some(status.ipv6.as_ref())
        .flatten()
        .filter(|v6| v6.mode != "masquerade")
        .and_then(|v6| v6.wans.iter().find(|w| w.wan == wan && w.prefix6.is_none()));
    match prefix_missing {
        Some(w) => format!("{} (prefix6); gateway {}", w.origin, f.gateway),
        None => f.gateway.clone(),
    }
}

/// The main table's default route of `family` (the lowest metric, not source-specific), in
/// words, with the WAN it leaves by and that WAN's state.
fn main_default(view: &crate::routing::SystemView, family: Family, status: &Status) -> String {
    let route = view
        .defaults
        .iter()
        .filter(|d| {
            d.family == family && d.table == crate::routing::MAIN_TABLE && d.source.is_none()
        })
        .min_by_key(|d| d.metric);
    let Some(d) = route else {
        return format!(
            "the main table has no {} default route: the packet is dropped (network \
             unreachable)",
            family.name()
        );
    };
    let via = d.gateway.map_or(String::new(), |g| format!("via {g} "));
    let wan = status.wans.iter().find(|w| w.interface == d.interface);
    let by = match wan {
        Some(w) => {
            let state = w
                .families
                .iter()
                .find(|f| f.family == family.name())
                .map_or(w.state, |f| f.state);
            format!(": WAN {} ({})", w.name, state.as_str())
        }
        None => String::new(),
    };
    format!("main table: default {via}dev {}{by}", d.interface)
}

/// `: WAN NAME (state)` when `interface` is a WAN's, its state in `family`; empty otherwise.
fn wan_of_interface(status: &Status, interface: &str, family: Family) -> String {
    let Some(w) = status.wans.iter().find(|w| w.interface == interface) else {
        return String::new();
    };
    let state = w
        .families
        .iter()
        .find(|f| f.family == family.name())
        .map_or(w.state, |f| f.state);
    format!(": WAN {} ({})", w.name, state.as_str())
}

/// One WAN's state in one address family, as the daemon reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WanHealth {
    pub wan: String,
    pub state: WanState,
    pub detail: String,
}

impl Explanation {
    /// "src", "dst" or "default", as `steer dump` names rule kinds.
    pub fn matched_on_name(&self) -> &'static str {
        self.matched_on.map_or("default", Direction::as_str)
    }

    /// Says why the daemon's WAN states are missing.
    pub fn with_daemon_note(mut self, note: String) -> Self {
        self.daemon = Some(note);
        self
    }

    /// Adds each WAN's state in the packet's family from the daemon's status, and the rules of
    /// someone else's that route its mark before steer's rule does.
    pub fn with_health(mut self, status: &Status) -> Self {
        if self.local.is_none() {
            let family = Family::of(&self.dst);
            self.routed_by = status
                .routing
                .shadowed
                .iter()
                .filter(|r| r.takes(family, self.mark))
                .map(|r| r.rule.clone())
                .collect();
        }
        let family = Family::of(&self.dst).name();
        self.health = status
            .wans
            .iter()
            .filter_map(|w| {
                let f = w.families.iter().find(|f| f.family == family)?;
                let detail = if f.state == WanState::Waiting {
                    waiting_for(status, &w.name, f)
                } else {
                    f.detail.clone()
                };
                Some(WanHealth {
                    wan: w.name.clone(),
                    state: f.state,
                    detail,
                })
            })
            .collect();
        self
    }

    /// For a packet steer leaves unmarked (policy `main`, a last resort `default`, every WAN
    /// down), the main table decides: adds the default route it takes and, when that leaves by
    /// a WAN, the WAN and its state from the daemon's status.
    pub fn with_main_route(mut self, status: &Status) -> Self {
        if self.local.is_some() || self.mask == 0 || self.mark & self.mask != 0 {
            return self;
        }
        let owned: Vec<u32> = status.wans.iter().map(|w| w.table).collect();
        let family = Family::of(&self.dst);
        let read = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                rt.block_on(async {
                    let routing = crate::routing::Routing::new().map_err(|e| e.to_string())?;
                    routing.system(&owned).await.map_err(|e| e.to_string())
                })
            });
        self.main_route = Some(match read {
            Err(e) => format!("the main table could not be read: {e}"),
            Ok(view) => main_default(&view, family, status),
        });
        self
    }

    /// A local destination is never steered: the main table routes it, and the route it takes
    /// may leave by a WAN (a local prefix through the main default, a route through a WAN's
    /// gateway), where the packet is lost while that WAN is down. Adds that route, with its WAN
    /// and the WAN's state, as an unmarked packet gets.
    pub fn with_local_route(mut self, status: &Status) -> Self {
        if self.local.is_none() {
            return self;
        }
        let family = Family::of(&self.dst);
        self.main_route = Some(match route_to(self.dst) {
            Some(r) => {
                let via = r.gateway.map_or(String::new(), |g| format!("via {g} "));
                format!(
                    "main table: {} {via}dev {}{}",
                    self.dst,
                    r.dev,
                    wan_of_interface(status, &r.dev, family)
                )
            }
            None => format!("the main table has no route to {}", self.dst),
        });
        self
    }

    /// Adds what the packet's IPv6 source becomes on its WAN (`[ipv6]`), from the daemon's
    /// status.
    pub fn with_sources(mut self, status: &Status) -> Self {
        if self.local.is_none() {
            self.source = status
                .ipv6
                .as_ref()
                .and_then(|v6| crate::wan_sources::fate_of(v6, &self.wan, self.src));
        }
        self
    }

    /// Says whether the matched prefix was added at runtime, from the daemon's journal of
    /// runtime entries (`now`: seconds of `CLOCK_BOOTTIME`).
    pub fn with_runtime(mut self, table: &crate::runtime_sets::RuntimeSets, now: u64) -> Self {
        if let Some(p) = &self.prefix {
            self.runtime = table
                .get(&self.set, p)
                .map(|deadline| deadline.map(|at| crate::runtime_sets::seconds_left(at, now)));
        }
        self
    }

    pub fn to_json(&self) -> Value {
        json!({
            "src": self.src, "dst": self.dst,
            "proto": self.proto.to_string(), "sport": self.sport, "dport": self.dport,
            "src_mac": mac_text(&self.src_mac), "in": self.input, "host": self.host,
            "ordered": self.ordered.as_ref().map(|o| json!({
                "position": o.position, "conditions": o.met,
                "later": o.later.iter().map(|(position, set)| json!({ "position": position, "set": set })).collect::<Vec<_>>(),
            })),
            "local": self.local.map(|(p, k)| json!({ "prefix": p.to_string(), "reason": k.describe() })),
            "rule": self.rule, "set": self.set, "matched_on": self.matched_on_name(),
            "prefix": self.prefix.map(|p| p.to_string()),
            "learned": self.learned.as_ref().map(|l| json!({
                "name": l.name, "expires_in_s": l.expires_in,
                "also_set": l.also.as_ref().map(|a| &a.set),
                "also_name": l.also.as_ref().map(|a| &a.name),
                "also_expires_in_s": l.also.as_ref().map(|a| a.expires_in),
            })),
            "runtime": self.runtime.map(|left| json!({ "expires_in_s": left })),
            "shadowed": self.shadowed.iter().map(|b| json!({
                "prefix": b.prefix.to_string(), "set": b.set, "learned": b.learned,
                "reason": b.why.as_str(),
            })).collect::<Vec<_>>(),
            "policy": self.policy, "mark": format!("{:#x}", self.mark), "wan": self.wan,
            "generation": self.generation,
            "health": self.health.iter().map(|h| json!({ "wan": h.wan, "state": h.state.as_str(), "detail": h.detail })).collect::<Vec<_>>(),
            "source": self.source,
            "routed_by": self.routed_by,
            "main_route": self.main_route,
            "daemon": self.daemon,
            "held": self.held.as_ref().map(Held::to_json),
            "connections_unchecked": self.unchecked,
            "answers": self.answers.as_ref().map(Held::to_json),
            "balance": self.balance.as_ref().map(|b| json!({
                "slot": b.slot, "of": LB_SLOTS, "by": if b.by_source { "source" } else { "flow" },
                "wan": b.wan,
            })),
        })
    }
}

impl Explanation {
    /// What conntrack holds for the probe: an existing connection keeps its WAN.
    fn write_held(&self, f: &mut fmt::Formatter<'_>, held: &Held) -> fmt::Result {
        if let Some(err) = &held.error {
            return writeln!(f, "held     conntrack could not be read: {err}");
        }
        let mine = self.mark & self.mask;
        let main = crate::conntrack::main_table_mark(self.mask);
        match (held.exact, held.by_mark.as_slice()) {
            (_, []) => Ok(()),
            (true, [(mark, _, 1)]) if *mark == main && mine == 0 => writeln!(
                f,
                "held     an existing connection, on the main table as this verdict (it started \
                 there, connection mark {mark:#x})"
            ),
            (true, [(mark, _, 1)]) if *mark == main => writeln!(
                f,
                "held     an existing connection started on the main table (connection mark \
                 {mark:#x}): its packets keep leaving by the main table; the verdict above is \
                 a new connection's (a connection stays on the path it started on)"
            ),
            (true, [(mark, wan, 1)]) if *mark == mine => writeln!(
                f,
                "held     an existing connection, marked {mark:#x} ({wan}) as this verdict"
            ),
            (true, [(mark, wan, 1)]) => writeln!(
                f,
                "held     an existing connection is marked {mark:#x} ({wan}): its packets keep \
                 leaving by {wan}; the verdict above is a new connection's (a connection \
                 stays on the WAN it started on)"
            ),
            (_, marks) => {
                let total: usize = marks.iter().map(|(_, _, n)| n).sum();
                let each: Vec<String> = marks
                    .iter()
                    .map(|(mark, wan, n)| format!("{n} on {wan} ({mark:#x})"))
                    .collect();
                writeln!(
                    f,
                    "held     {total} existing connection(s) from {} to {} ({}) keep the WAN \
                     they started on: {}{}",
                    self.src,
                    self.dst,
                    self.proto,
                    each.join(", "),
                    if self.proto.has_ports() {
                        "; give --sport and --dport to name one"
                    } else {
                        ""
                    }
                )
            }
        }
    }

    /// The connections from a WAN the probe answers: their replies leave by the WAN they came
    /// in on. A conntrack error was said by [`Self::write_held`] already.
    fn write_answers(&self, f: &mut fmt::Formatter<'_>, answers: &Held) -> fmt::Result {
        if answers.error.is_some() && self.held.as_ref().is_some_and(|h| h.error.is_some()) {
            return Ok(());
        }
        if let Some(err) = &answers.error {
            return writeln!(f, "held     conntrack could not be read: {err}");
        }
        match (answers.exact, answers.by_mark.as_slice()) {
            (_, []) => Ok(()),
            (true, [(mark, wan, 1)]) => writeln!(
                f,
                "held     this packet answers a connection that came in by {wan} (marked \
                 {mark:#x}): its replies leave by {wan}, the WAN it came in on, whatever the \
                 verdict above (which is for a connection {} starts)",
                self.src
            ),
            (_, marks) => {
                let total: usize = marks.iter().map(|(_, _, n)| n).sum();
                let each: Vec<String> = marks
                    .iter()
                    .map(|(mark, wan, n)| format!("{n} by {wan} ({mark:#x})"))
                    .collect();
                writeln!(
                    f,
                    "held     {total} connection(s) from {} to {} ({}) came in by a WAN; their \
                     replies leave by the WAN each came in on: {}{}",
                    self.dst,
                    self.src,
                    self.proto,
                    each.join(", "),
                    if self.proto.has_ports() {
                        "; give --sport and --dport to name one"
                    } else {
                        ""
                    }
                )
            }
        }
    }

    /// The sets that also hold the packet's address, each with why it lost.
    fn write_beaten(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.shadowed {
            let (p, s, why) = (b.prefix, &b.set, b.why.describe());
            if b.learned {
                writeln!(f, "         also learned as {p} for set {s} ({why})")?;
            } else {
                writeln!(f, "         also in {p} of set {s} ({why})")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "packet   {} -> {} {}", self.src, self.dst, self.proto)?;
        if self.proto.has_ports() {
            write!(f, " sport {} dport {}", self.sport, self.dport)?;
        }
        write!(f, " from {}", mac_text(&self.src_mac))?;
        match &self.input {
            Some(i) => writeln!(f, " in {i}")?,
            None => writeln!(f)?,
        }
        for note in &self.host {
            writeln!(f, "host     {note}")?;
        }
        if let Some((p, kind)) = self.local {
            writeln!(
                f,
                "local    dst {} in {p} ({}): never steered, the main table routes it",
                self.dst,
                kind.describe()
            )?;
            self.write_beaten(f)?;
            writeln!(f, "mark     {:#x} (unchanged)", self.mark)?;
            if let Some(route) = &self.main_route {
                writeln!(f, "route    {route}")?;
            }
            return writeln!(
                f,
                "(the real classifier ran on this packet against the live maps, policy generation {})",
                self.generation
            );
        }
        match (&self.prefix, self.matched_on) {
            _ if self.ordered.is_some() => {
                let o = self.ordered.as_ref().expect("checked");
                writeln!(
                    f,
                    "matched  rule {} = set {} (set with conditions #{}: the first whose \
                     conditions the packet meets, in configuration order)",
                    self.rule, self.set, o.position
                )?;
                for m in &o.met {
                    writeln!(f, "         {m}")?;
                }
                for (position, set) in &o.later {
                    writeln!(
                        f,
                        "         also meets set {set} (set with conditions #{position}: later, so it loses)"
                    )?;
                }
            }
            _ if self.learned.is_some() => {
                let l = self.learned.as_ref().expect("checked");
                writeln!(
                    f,
                    "matched  rule {} = set {} (dst {} learned from the answer for {}, {})",
                    self.rule,
                    self.set,
                    self.dst,
                    l.name,
                    super::dns::expiry(l.expires_in)
                )?;
                if let Some(a) = &l.also {
                    let then = if a.expires_in >= 0 {
                        " and steers when this one has expired"
                    } else {
                        ""
                    };
                    writeln!(
                        f,
                        "         also claimed by set {} (later in the configuration, so it loses; \
                         its claim, from the answer for {}, {}{then})",
                        a.set,
                        a.name,
                        super::dns::expiry(a.expires_in)
                    )?;
                }
            }
            (Some(p), Some(dir)) => {
                let addr = match dir {
                    Direction::Src => self.src,
                    Direction::Dst => self.dst,
                };
                writeln!(
                    f,
                    "matched  rule {} = set {} ({} {addr} in {p})",
                    self.rule,
                    self.set,
                    dir.as_str()
                )?;
                match self.runtime {
                    Some(Some(left)) => writeln!(
                        f,
                        "         {p} is a runtime entry (steer set), {}",
                        crate::runtime_sets::removal(left)
                    )?,
                    Some(None) => writeln!(
                        f,
                        "         {p} is a runtime entry (steer set), until deleted"
                    )?,
                    None => {}
                }
            }
            _ => writeln!(f, "matched  rule {} = default (no set matched)", self.rule)?,
        }
        self.write_beaten(f)?;
        writeln!(f, "policy   {}", self.policy)?;
        if let Some(b) = &self.balance {
            let by = if b.by_source {
                "the source address's hash (hash = \"src\")"
            } else {
                "the hash of its addresses, protocol and ports"
            };
            writeln!(
                f,
                "balance  slot {} of {LB_SLOTS}, by {by}: {}",
                b.slot, b.wan
            )?;
        }
        writeln!(f, "mark     {:#x} (mask {:#x})", self.mark, self.mask)?;
        writeln!(f, "wan      {}", self.wan)?;
        if let Some(route) = &self.main_route {
            writeln!(f, "route    {route}")?;
        }
        for rule in &self.routed_by {
            writeln!(
                f,
                "         but {rule}, not steer's, comes before steer's rule for mark {:#x}: the \
                 kernel routes the packet by it, so it may not leave by {} (`steer status` \
                 warns about it)",
                self.mark, self.wan
            )?;
        }
        if let Some(source) = &self.source {
            writeln!(f, "source   {source}")?;
        }
        if let Some(held) = &self.held {
            self.write_held(f, held)?;
        }
        if let Some(answers) = &self.answers {
            self.write_answers(f, answers)?;
        }
        if let Some(note) = &self.unchecked {
            writeln!(f, "held     {note}")?;
        }
        let family = Family::of(&self.dst).name();
        for (i, h) in self.health.iter().enumerate() {
            let head = if i == 0 { "health" } else { "" };
            writeln!(f, "{head:<8} {family} {}: {}", h.wan, h.detail)?;
        }
        if let Some(note) = &self.daemon {
            writeln!(f, "daemon   {note}")?;
        }
        writeln!(
            f,
            "(the real classifier ran on this packet against the live maps, policy generation {})",
            self.generation
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(
        "source {src} and destination {dst} are not the same address family; give --src of the family of {dst}"
    )]
    Family { src: IpAddr, dst: IpAddr },
    #[error(
        "{proto} has no ports, so --{option} would be left out of the packet: leave it \
         out, or give --proto tcp, udp, sctp or udplite"
    )]
    NoPorts { proto: Proto, option: &'static str },
    #[error(
        "--proto {proto} is not a protocol of {family} (destination {dst}): give --proto \
         {instead}"
    )]
    ProtoFamily {
        proto: Proto,
        family: &'static str,
        dst: IpAddr,
        instead: &'static str,
    },
    #[error("running the classifier on the synthetic packet failed: {0}")]
    Run(String),
    #[error(
        "there is no interface {0:?} here; --in names the LAN interface the packet comes in on"
    )]
    Interface(String),
    #[error(
        "steer does not classify packets coming in on {name} (its classifier is on {lan}): only \
         what comes in on those is steered (a bridge's ports pass theirs to the bridge); give \
         --in one of them"
    )]
    NotClassified { name: String, lan: String },
    #[error(
        "the classifier's link on {name} ({path}) is attached to no device: someone else \
         detached it (e.g. `bpftool link detach`), or the device was deleted; packets coming in \
         on {name} are not steered until the daemon attaches it again (its periodic check does \
         within seconds, `steer reload` at once)"
    )]
    Detached { name: String, path: String },
}

impl From<ExplainError> for super::CliError {
    fn from(e: ExplainError) -> Self {
        match e {
            ExplainError::Dataplane(d) => super::CliError::Dataplane(d),
            other => super::CliError::Refused(other.to_string()),
        }
    }
}

/// The index of `name`, an interface the classifier pinned under `pin_dir` is attached to.
fn classified_ifindex(pin_dir: &Path, name: &str) -> Result<u32, ExplainError> {
    let index =
        crate::dataplane::ifindex(name).map_err(|_| ExplainError::Interface(name.into()))?;
    use crate::dataplane::pin::{LinkKind, linked_interfaces};
    // Pins that cannot be read are left to the load after this, which says why.
    let Ok(lan) = linked_interfaces(pin_dir, LinkKind::Tc) else {
        return Ok(index);
    };
    if !lan.iter().any(|l| l == name) {
        return Err(ExplainError::NotClassified {
            name: name.to_owned(),
            lan: if lan.is_empty() {
                "no interface".to_owned()
            } else {
                lan.join(", ")
            },
        });
    }
    // What the kernel holds, not what is pinned: a detached link stays pinned.
    let pin = pin_dir.join("links").join(LinkKind::Tc.pin_name(name));
    if crate::dataplane::sys::pinned_link_ifindex(&pin).is_ok_and(|i| i == 0) {
        return Err(ExplainError::Detached {
            name: name.to_owned(),
            path: pin.display().to_string(),
        });
    }
    Ok(index)
}

/// ICMPv6 (58) in IPv4, or ICMP (1) in IPv6, is no packet a host sends: refused, as the
/// configuration refuses `icmpv6` for IPv4, rather than classified as something else.
fn proto_of_family(proto: Proto, dst: IpAddr) -> Result<(), ExplainError> {
    let (family, instead) = match (proto, dst) {
        (Proto::Other(IPPROTO_ICMPV6), IpAddr::V4(_)) => ("IPv4", "icmp"),
        (Proto::Other(1), IpAddr::V6(_)) => ("IPv6", "icmp or icmpv6"),
        _ => return Ok(()),
    };
    Err(ExplainError::ProtoFamily {
        proto,
        family,
        dst,
        instead,
    })
}

/// The probe's ports, defaulted; a port given for a protocol without ports is refused rather
/// than dropped without a word.
fn ports(probe: &Probe) -> Result<(u16, u16), ExplainError> {
    let has_ports = match probe.proto {
        Proto::Tcp | Proto::Udp => true,
        Proto::Icmp => false,
        Proto::Other(n) => ipproto::has_ports(n),
    };
    if !has_ports {
        for (option, given) in [("sport", probe.sport), ("dport", probe.dport)] {
            if given.is_some() {
                return Err(ExplainError::NoPorts {
                    proto: probe.proto,
                    option,
                });
            }
        }
    }
    Ok((probe.sport.unwrap_or(40000), probe.dport.unwrap_or(443)))
}

/// The source MAC of a probe given none.
const PLACEHOLDER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// What the probe did not say about the host that sends it, found in the kernel.
#[derive(Debug, Default)]
struct UnstatedHost {
    /// The LAN interface the route to the source leaves by (name, index).
    input: Option<(String, u32)>,
    /// The source's (or its gateway's) link-layer address in the neighbour table.
    mac: Option<[u8; 6]>,
    /// What was taken from where, and what could not be judged.
    notes: Vec<String>,
}

/// Sets with conditions on the input interface or the source MAC cannot be judged without
/// them: when the probe gives neither and such sets exist, the kernel of this namespace is
/// asked, for a source on a LAN: the route to the source names the interface its packets come
/// in on, the neighbour table its MAC. What cannot be found is said, with the set names and
/// the option to give.
fn unstated_host(
    pin_dir: &Path,
    maps: &Maps,
    probe: &Probe,
    family: Family,
) -> Result<UnstatedHost, ExplainError> {
    let bank = maps.ordered().live()?;
    let names = Names::read(maps)?;
    let looking_at = |any: usize| -> Vec<String> {
        let bits = bank.used[family.index()] & !bank.any[any];
        (0..cond::MAX_RULES as usize)
            .filter(|i| bits >> i & 1 == 1)
            .map(|i| names.set(u32::from(bank.rule[i])))
            .collect()
    };
    let by_in = if probe.input.is_none() {
        looking_at(cond::any::IN)
    } else {
        Vec::new()
    };
    let by_mac = if probe.src_mac.is_none() {
        looking_at(cond::any::MAC)
    } else {
        Vec::new()
    };
    let mut host = UnstatedHost::default();
    if by_in.is_empty() && by_mac.is_empty() {
        return Ok(host);
    }
    let route = probe.src.and_then(route_to);
    if let (Some(src), Some(r)) = (probe.src, &route) {
        if !by_in.is_empty() {
            match classified_ifindex(pin_dir, &r.dev) {
                Ok(index) => {
                    host.input = Some((r.dev.clone(), index));
                    host.notes.push(format!(
                        "in {} (the interface of this router's route to {src}; --in gives \
                         another)",
                        r.dev
                    ));
                }
                Err(_) => host.notes.push(format!(
                    "the route to {src} leaves by {}, on which steer does not classify",
                    r.dev
                )),
            }
        }
        let neighbour = r.gateway.unwrap_or(src);
        if !by_mac.is_empty()
            && let Some(mac) = neighbour_mac(neighbour, &r.dev)
        {
            host.mac = Some(mac);
            host.notes.push(format!(
                "from {} ({neighbour}'s entry in the neighbour table on {}; --src-mac gives \
                 another)",
                mac_text(&mac),
                r.dev
            ));
        }
    }
    if host.input.is_none() && !by_in.is_empty() {
        host.notes.push(unjudged(
            &by_in,
            "the input interface",
            "no LAN interface",
            "--in",
        ));
    }
    if host.mac.is_none() && !by_mac.is_empty() {
        let placeholder = format!("the placeholder MAC {}", mac_text(&PLACEHOLDER_MAC));
        host.notes.push(unjudged(
            &by_mac,
            "the source MAC",
            &placeholder,
            "--src-mac",
        ));
    }
    Ok(host)
}

/// Sets `sets` that look at `what`, judged against `judged_by`: what the verdict may miss.
fn unjudged(sets: &[String], what: &str, judged_by: &str, option: &str) -> String {
    format!(
        "sets with conditions on {what} ({}) were judged against {judged_by}, not the real \
         host's: give {option} (or --src of a host on a LAN, to look it up)",
        sets.join(", ")
    )
}

/// This namespace's route to a host (`ip -j route get`): the interface, and the gateway when
/// the host is not on a link of the router's.
struct RouteTo {
    dev: String,
    gateway: Option<IpAddr>,
}

fn route_to(addr: IpAddr) -> Option<RouteTo> {
    let out = ip_json(&["route", "get", &addr.to_string()])?;
    parse_route_to(&out)
}

fn parse_route_to(json: &Value) -> Option<RouteTo> {
    let route = json.as_array()?.first()?;
    if route["type"].as_str().is_some_and(|t| t != "unicast") {
        return None;
    }
    Some(RouteTo {
        dev: route["dev"].as_str()?.to_owned(),
        gateway: route["gateway"].as_str().and_then(|g| g.parse().ok()),
    })
}

/// The link-layer address of `addr` on `dev` in the neighbour table (`ip -j neigh show`).
fn neighbour_mac(addr: IpAddr, dev: &str) -> Option<[u8; 6]> {
    let out = ip_json(&["neigh", "show", "to", &addr.to_string(), "dev", dev])?;
    parse_neighbour_mac(&out)
}

fn parse_neighbour_mac(json: &Value) -> Option<[u8; 6]> {
    json.as_array()?
        .iter()
        .find_map(|n| crate::model::ordered::parse_mac(n["lladdr"].as_str()?))
}

/// `ip -j ARGS`' output; `None` when `ip` cannot be run or fails.
fn ip_json(args: &[&str]) -> Option<Value> {
    let mut command = std::process::Command::new("ip");
    command.arg("-j").args(args);
    let ran = crate::tool::run(command, None).ok()??;
    if !ran.status.success() {
        return None;
    }
    serde_json::from_slice(&ran.stdout).ok()
}

/// Runs the classifier of the steer pinned under `pin_dir` on one synthetic packet.
pub fn explain(pin_dir: &Path, probe: &Probe) -> Result<Explanation, ExplainError> {
    let dst = probe.dst;
    let src = probe.src.unwrap_or(match dst {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(ExplainError::Family { src, dst });
    }
    proto_of_family(probe.proto, dst)?;
    let (sport, dport) = ports(probe)?;
    let transport = match probe.proto {
        Proto::Tcp => Transport::Tcp { sport, dport },
        Proto::Udp => Transport::Udp { sport, dport },
        Proto::Icmp if dst.is_ipv4() => Transport::Other(1),
        Proto::Icmp => Transport::Other(58),
        Proto::Other(proto) if ipproto::has_ports(proto) => Transport::Ports {
            proto,
            sport,
            dport,
        },
        Proto::Other(n) => Transport::Other(n),
    };
    let given_ifindex = match &probe.input {
        Some(name) => Some(classified_ifindex(pin_dir, name)?),
        None => None,
    };
    let dp = Dataplane::load_beside(pin_dir)?;
    let host = unstated_host(pin_dir, dp.maps(), probe, Family::of(&dst))?;
    let ifindex = given_ifindex.or(host.input.as_ref().map(|(_, index)| *index));
    let input = probe
        .input
        .clone()
        .or(host.input.as_ref().map(|(name, _)| name.clone()));
    let src_mac = probe.src_mac.or(host.mac).unwrap_or(PLACEHOLDER_MAC);
    let frame = Frame::udp(src, dst)
        .with_transport(transport)
        .with_src_mac(src_mac)
        .build();
    // The TC program, which sees the input device of a test run (XDP's would need a driver
    // queue), says which rule it applied.
    let tc = match ifindex {
        Some(index) => run_tc_from(dp.tc(), &frame, index),
        None => run_tc(dp.tc(), &frame, 0),
    }
    .map_err(|e| ExplainError::Run(e.to_string()))?;
    let maps = dp.maps();
    let names = Names::read(maps)?;
    let rule = tc.rule.unwrap_or(DEFAULT_RULE);
    let mut e = Explanation {
        src,
        dst,
        proto: probe.proto,
        sport,
        dport,
        src_mac,
        input,
        host: host.notes,
        ordered: None,
        local: None,
        rule,
        set: String::new(),
        matched_on: None,
        prefix: None,
        learned: None,
        shadowed: Vec::new(),
        runtime: None,
        policy: "-".into(),
        mark: tc.mark,
        mask: 0,
        wan: "none (local destination: main table)".into(),
        generation: names.generation,
        health: Vec::new(),
        source: None,
        balance: None,
        routed_by: Vec::new(),
        held: None,
        answers: None,
        unchecked: None,
        main_route: None,
        daemon: None,
    };
    if rule == LOCAL_RULE {
        e.local = maps.local_of(dst)?;
        for (dir, addr) in [(Direction::Src, src), (Direction::Dst, dst)] {
            for (p, r) in maps.containing(dir, addr)? {
                e.shadowed.push(Beaten {
                    prefix: p,
                    set: names.set(r),
                    learned: false,
                    why: Lost::Local,
                });
            }
        }
        return Ok(e);
    }
    let kind = names.kind(rule);
    e.matched_on = kind.direction();
    let beaten = |prefix, r, why| Beaten {
        prefix,
        set: names.set(r),
        learned: false,
        why,
    };
    if let RuleKind::Ordered(_) = kind {
        let mut matched = ordered_match(maps, &e, rule)?;
        let probe = CondProbe {
            src,
            dst,
            proto: transport.proto(),
            ports: transport.ports(),
            mac: Some(src_mac),
            // A test run without an input device runs on the namespace's loopback.
            ifindex: Some(ifindex.unwrap_or(LOOPBACK_IFINDEX)),
        };
        matched.later = later_ordered(maps, &names, &probe, matched.position)?;
        e.ordered = Some(matched);
        e.prefix = ordered_prefix(maps, &e, rule)?;
        for (dir, addr) in [(Direction::Src, src), (Direction::Dst, dst)] {
            for (p, r) in maps.containing(dir, addr)? {
                e.shadowed.push(beaten(p, r, Lost::Ordered));
            }
        }
        e.shadowed
            .extend(learned_loser(pin_dir, dst, &names, Lost::Ordered)?);
    } else if let Some(dir) = e.matched_on {
        let addr = match dir {
            Direction::Src => src,
            Direction::Dst => dst,
        };
        if dir == Direction::Dst {
            e.learned = super::dns::learned_host(pin_dir, dst, rule, &names)?;
        }
        let why = if e.learned.is_some() {
            Lost::Learned
        } else {
            Lost::Shorter
        };
        for (p, r) in maps.containing(dir, addr)? {
            if r == rule && e.prefix.is_none() {
                e.prefix = Some(p);
            } else if r != rule {
                e.shadowed.push(beaten(p, r, why));
            }
        }
        if dir == Direction::Src {
            // A source set's match decides before anything about the destination.
            e.shadowed
                .extend(learned_loser(pin_dir, dst, &names, Lost::Source)?);
            for (p, r) in maps.containing(Direction::Dst, dst)? {
                e.shadowed.push(beaten(p, r, Lost::Source));
            }
        }
    }
    let entry = maps.policy(names.generation, Family::of(&dst), rule)?;
    e.set = names.set(rule);
    e.policy = names.policy(rule);
    e.mask = entry.mask;
    e.wan = names.wan_of_mark(tc.mark, entry.mask);
    if entry.action == action::BALANCE {
        let by_source = entry.flags & policy_flags::HASH_SRC != 0;
        let slot = balance_hash(src, dst, &transport, by_source) & (LB_SLOTS - 1);
        let held = maps.lb_block(entry.lb)?;
        let mark = held.get(slot as usize).map_or(0, |s| s.mark);
        e.balance = Some(Balance {
            slot,
            by_source,
            wan: names.wan_of_mark(mark, entry.mask),
        });
    }
    match conntrack_elsewhere(pin_dir) {
        Some(note) => e.unchecked = Some(note),
        // Without a source there is no connection to look for.
        None if probe.src.is_some() => {
            // One listing serves both questions: conntrack is walked once.
            let listed = crate::conntrack::netlink::connections(0, 0, &[Family::of(&e.dst)])
                .map_err(|err| err.to_string());
            let proto = transport.proto();
            e.held = Some(held_connections(&e, probe, proto, &names, &listed));
            e.answers = Some(answered_connections(&e, probe, proto, &names, &listed));
        }
        None => {}
    }
    Ok(e)
}

/// Why this namespace's conntrack is not the daemon's: the state under `pin_dir` was pinned
/// from another network namespace (bpffs is one for all of them, and the control socket may be
/// reachable from here too; conntrack is per namespace). `None` when it is this one's, or when
/// the state records no namespace.
fn conntrack_elsewhere(pin_dir: &Path) -> Option<String> {
    let owner = crate::dataplane::pin_owner::recorded_owner(pin_dir)
        .ok()
        .flatten()?;
    let here = crate::netns::this_namespace().ok()?;
    if crate::netns::same_namespace(owner, here) {
        return None;
    }
    let found = crate::netns::find_namespace(owner);
    Some(elsewhere_note(
        found.as_ref().map(|f| (f.describe(), f.run_there())),
        owner.netns_ino,
    ))
}

/// The note for connections not checked: the daemon's namespace (`found`: how it is named and
/// the command that runs in it), or its inode when it is gone.
fn elsewhere_note(found: Option<(String, Option<String>)>, ino: u64) -> String {
    let head = "connections were not checked: explain runs in another network namespace than \
                the daemon's";
    match found {
        Some((name, Some(run))) => format!(
            "{head}, {name}, and conntrack is per namespace: run it there, `{run} steer \
             explain ...`"
        ),
        Some((name, None)) => {
            format!("{head}, {name}, and conntrack is per namespace: run it there")
        }
        None => format!(
            "{head} (net:[{ino}], which no longer exists: the state pinned here is a stale \
             router's)"
        ),
    }
}

/// The marked connections conntrack holds that the probe answers: ones that came in from a WAN
/// to the probe's source (a port forward, a DMZ's server), whose reply direction is the probe
/// (with its ports when the probe gave them). The `inet steer` table marked them with the WAN
/// they came in on and gives their replies that mark back, so the replies leave by that WAN
/// whatever the classifier's verdict.
fn answered_connections(
    e: &Explanation,
    probe: &Probe,
    proto: u8,
    names: &Names,
    listed: &Listed,
) -> Held {
    connections_counted(e, probe, names, listed, |c, exact_ports| {
        c.proto == proto
            && c.reply.is_some_and(|r| {
                r.src == e.src
                    && r.dst == e.dst
                    && (!exact_ports || (r.sport == e.sport && r.dport == e.dport))
            })
    })
}

/// The marked connections conntrack holds from the probe's source to its destination (with its
/// protocol, and its ports when the probe gave them): the `inet steer` table gives their
/// packets the connection's mark back, so a connection stays on the WAN it started on after
/// a failback with `keep`, a reload or a weight change; one that started on the main table
/// stays there ([`crate::conntrack::main_table_mark`]).
fn held_connections(
    e: &Explanation,
    probe: &Probe,
    proto: u8,
    names: &Names,
    listed: &Listed,
) -> Held {
    connections_counted(e, probe, names, listed, |c, exact_ports| {
        c.src == e.src
            && c.dst == e.dst
            && c.proto == proto
            && (!exact_ports || (c.sport == e.sport && c.dport == e.dport))
    })
}

/// The connections of the probe's family conntrack listed, or why it could not.
type Listed = Result<Vec<crate::conntrack::Connection>, String>;

/// The marked connections of `listed` that `wanted` picks (given whether the probe named both
/// ports), counted by mark and named by the WAN (or the main table) the mark holds them on.
fn connections_counted(
    e: &Explanation,
    probe: &Probe,
    names: &Names,
    listed: &Listed,
    wanted: impl Fn(&crate::conntrack::Connection, bool) -> bool,
) -> Held {
    let exact_ports = probe.sport.is_some() && probe.dport.is_some();
    let exact = !e.proto.has_ports() || exact_ports;
    let conns = match listed {
        Ok(conns) => conns,
        Err(err) => {
            return Held {
                exact,
                by_mark: Vec::new(),
                error: Some(err.clone()),
            };
        }
    };
    let mut by_mark: std::collections::BTreeMap<u32, usize> = Default::default();
    for c in conns
        .iter()
        .filter(|c| c.mark & e.mask != 0 && wanted(c, exact_ports))
    {
        *by_mark.entry(c.mark & e.mask).or_default() += 1;
    }
    Held {
        exact,
        by_mark: by_mark
            .into_iter()
            .map(|(mark, n)| {
                let on = if mark == crate::conntrack::main_table_mark(e.mask) {
                    "the main table".to_owned()
                } else {
                    names.wan_of_mark(mark, e.mask)
                };
                (mark, on, n)
            })
            .collect(),
        error: None,
    }
}

/// The hash a balanced policy picks its slot by, as the classifier computes it (steer-common
/// holds the one definition both use).
fn balance_hash(src: IpAddr, dst: IpAddr, transport: &Transport, by_source: bool) -> u32 {
    let words = |a: IpAddr| match a {
        IpAddr::V4(v4) => steer_common::words_v4(&v4.octets()),
        IpAddr::V6(v6) => steer_common::words_v6(&v6.octets()),
    };
    if by_source {
        return steer_common::src_hash(&words(src));
    }
    let (sport, dport) = transport.ports().unwrap_or((0, 0));
    steer_common::flow_hash(&words(src), &words(dst), transport.proto(), sport, dport)
}

/// The host learned from DNS for `dst`, as a set that lost for `why`.
fn learned_loser(
    pin_dir: &Path,
    dst: IpAddr,
    names: &Names,
    why: Lost,
) -> Result<Option<Beaten>, ExplainError> {
    Ok(super::dns::learned_rule(pin_dir, dst)?.map(|rule| Beaten {
        prefix: Prefix::host(dst),
        set: names.set(rule),
        learned: true,
        why,
    }))
}

/// The bit of `rule` in the live condition bank and its place.
fn ordered_bit(bank: &steer_common::CondBank, rule: u32) -> Option<usize> {
    let family_bits = bank.used[0] | bank.used[1];
    (0..cond::MAX_RULES as usize)
        .find(|i| family_bits >> i & 1 == 1 && u32::from(bank.rule[*i]) == rule)
}

/// What the ordered rule `rule` checked of the packet: each condition it has, with the
/// packet's value that met it.
fn ordered_match(maps: &Maps, e: &Explanation, rule: u32) -> Result<OrderedMatch, ExplainError> {
    let bank = maps.ordered().live()?;
    let Some(i) = ordered_bit(&bank, rule) else {
        return Ok(OrderedMatch {
            position: 0,
            met: Vec::new(),
            later: Vec::new(),
        });
    };
    let bit = 1u64 << i;
    let family = Family::of(&e.dst).index();
    let constrains = |any: usize| bank.any[any] & bit == 0;
    let mut met = Vec::new();
    if constrains(cond::any::PROTO) {
        met.push(format!("protocol {}", e.proto));
    }
    if constrains(cond::any::SPORT) {
        met.push(format!("source port {}", e.sport));
    }
    if constrains(cond::any::DPORT) {
        met.push(format!("destination port {}", e.dport));
    }
    if constrains(cond::any::MAC) {
        met.push(format!("source MAC {}", mac_text(&e.src_mac)));
    }
    if constrains(cond::any::IN) {
        met.push(format!("came in on {}", e.input.as_deref().unwrap_or("?")));
    }
    for (dir, any, addr) in [
        (Direction::Src, cond::any::SRC_V4, e.src),
        (Direction::Dst, cond::any::DST_V4, e.dst),
    ] {
        if constrains(any + family)
            && let Some(p) = maps.ordered().prefix_of(dir, addr, bit)?
        {
            met.push(format!("{} {addr} in {p}", dir.noun()));
        }
    }
    Ok(OrderedMatch {
        position: i + 1,
        met,
        later: Vec::new(),
    })
}

/// The sets with conditions after position `won` that the packet also meets. Empty when the
/// maps' first rule met is not the classifier's (`position` 0: not found in the live bank),
/// so that explain never names losers of a match it cannot reproduce.
fn later_ordered(
    maps: &Maps,
    names: &Names,
    probe: &CondProbe,
    won: usize,
) -> Result<Vec<(usize, String)>, ExplainError> {
    let live = maps.ordered().live_view()?;
    let met = maps.ordered().met(&live, probe)?;
    if won == 0 || met.trailing_zeros() as usize + 1 != won {
        return Ok(Vec::new());
    }
    Ok((won..cond::MAX_RULES as usize)
        .filter(|i| met >> i & 1 == 1)
        .map(|i| (i + 1, names.set(u32::from(live.header.rule[i]))))
        .collect())
}

/// The ordered rule's own prefix containing the packet's address on its side.
fn ordered_prefix(maps: &Maps, e: &Explanation, rule: u32) -> Result<Option<Prefix>, ExplainError> {
    let bank = maps.ordered().live()?;
    let (Some(i), Some(dir)) = (ordered_bit(&bank, rule), e.matched_on) else {
        return Ok(None);
    };
    let addr = if dir == Direction::Src { e.src } else { e.dst };
    Ok(maps.ordered().prefix_of(dir, addr, 1u64 << i)?)
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `icmpv6` is ICMPv6 alone, refused with an IPv4 destination; sctp and udplite are taken
    /// by name, as the ports error names them.
    #[test]
    fn protocols_are_taken_by_name_and_refused_in_the_wrong_family() {
        let v4: IpAddr = "9.9.9.9".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let icmpv6: Proto = "icmpv6".parse().unwrap();
        let err = proto_of_family(icmpv6, v4).unwrap_err().to_string();
        assert_eq!(
            err,
            "--proto icmpv6 is not a protocol of IPv4 (destination 9.9.9.9): give --proto icmp"
        );
        assert!(proto_of_family(icmpv6, v6).is_ok());
        assert!(proto_of_family("1".parse().unwrap(), v6).is_err());
        assert!(proto_of_family(Proto::Icmp, v6).is_ok());
        assert_eq!("sctp".parse::<Proto>(), Ok(Proto::Other(132)));
        assert_eq!("udplite".parse::<Proto>(), Ok(Proto::Other(136)));
        assert!("sctp".parse::<Proto>().unwrap().has_ports());
    }

    /// `ip -j route get`: a host on a link, one behind a gateway, the router's own address.
    #[test]
    fn the_route_to_a_host_names_its_interface_and_gateway() {
        let on_link: Value = serde_json::from_str(
            r#"[{"dst":"192.168.2.10","dev":"lan2","prefsrc":"192.168.2.1","flags":[],"uid":0,"cache":[]}]"#,
        )
        .unwrap();
        let r = parse_route_to(&on_link).expect("a route");
        assert_eq!((r.dev.as_str(), r.gateway), ("lan2", None));
        let routed: Value = serde_json::from_str(
            r#"[{"dst":"10.9.0.5","gateway":"192.168.1.254","dev":"br0","prefsrc":"192.168.1.1","flags":[],"uid":0,"cache":[]}]"#,
        )
        .unwrap();
        let r = parse_route_to(&routed).expect("a route");
        assert_eq!(r.gateway, Some("192.168.1.254".parse().unwrap()));
        let local: Value = serde_json::from_str(
            r#"[{"type":"local","dst":"192.168.1.1","dev":"lo","prefsrc":"192.168.1.1","flags":[],"uid":0,"cache":["local"]}]"#,
        )
        .unwrap();
        assert!(parse_route_to(&local).is_none());
    }

    #[test]
    fn the_neighbour_table_gives_a_hosts_mac_when_it_has_one() {
        let known: Value = serde_json::from_str(
            r#"[{"dst":"192.168.2.10","lladdr":"02:11:22:33:44:55","state":["REACHABLE"]}]"#,
        )
        .unwrap();
        assert_eq!(
            parse_neighbour_mac(&known),
            Some([0x02, 0x11, 0x22, 0x33, 0x44, 0x55])
        );
        let failed: Value =
            serde_json::from_str(r#"[{"dst":"192.168.2.10","state":["FAILED"]}]"#).unwrap();
        assert_eq!(parse_neighbour_mac(&failed), None);
    }

    /// Run from another namespace, explain says why it names no held connection and how to
    /// run it where the daemon is.
    #[test]
    fn connections_not_checked_elsewhere_say_where_to_run_explain() {
        let note = elsewhere_note(
            Some((
                "router (/run/netns/router)".into(),
                Some("ip netns exec router".into()),
            )),
            7,
        );
        assert!(
            note.starts_with("connections were not checked: explain runs in another network")
                && note.contains("router (/run/netns/router)")
                && note.contains("`ip netns exec router steer explain ...`"),
            "{note}"
        );
        let gone = elsewhere_note(None, 4026532000);
        assert!(
            gone.contains("net:[4026532000], which no longer exists"),
            "{gone}"
        );
    }
}
