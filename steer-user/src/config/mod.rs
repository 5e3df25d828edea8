//! Configuration: TOML parsing and complete validation.
//!
//! [`load`] and [`parse`] either return a fully valid [`Config`] (list files read, every
//! reference resolved, every range and cross-field rule checked) or every problem found, each
//! located by file, line and column with the field, the value, what is wrong and what would be
//! valid. Nothing in the system should be changed from a configuration that did not pass.
//!
//! This module holds the valid configuration's types. Each section of the file has a module
//! that owns its keys (a field table), their raw form and their checks: `general`, `wan`,
//! `track` (`[wan.track]`), `policy`, `set` (with its list files and duplicates), `default` and
//! `control`; `root` lists the sections and checks them in order, `endpoints` is the partial
//! read behind [`load_endpoints`]. What the sections share: `document` (syntax, schema walk,
//! deserialization, the order of diagnostics), `schema` (field tables and the walk), `diag`
//! (diagnostics and the context that collects them), `check` (ranges, choices, paths,
//! uniqueness), `names`, `references` (names one section defines and another uses),
//! `suggest` ("did you mean"), `notes` (advice on a valid file), `read` (which files are
//! read and how), `targets` (probe targets, socket addresses) and `list` (the
//! list-file format).
//!
//! The user-facing reference is `docs/configuration.md`.

mod check;
mod control;
mod default;
mod diag;
mod dns;
mod document;
mod endpoints;
mod general;
mod ipv6;
mod list;
mod list_budget;
mod names;
mod notes;
mod policy;
mod read;
mod references;
mod root;
mod schema;
mod set;
mod suggest;
mod targets;
#[cfg(test)]
pub(crate) mod testing;
mod track;
mod vrrp;
mod wan;

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    path::{Path, PathBuf},
    sync::Arc,
};

pub use diag::{ConfigErrors, Diagnostic};
pub use dns::Dns;
pub use list::{
    ListError, ListErrorKind, ListPiece, ListSink, Listed, line_count, list_line_of, list_pieces,
    parse_list, parse_list_bytes, parse_list_sorted, parse_list_split,
};
pub use list_budget::{ListBudget, ListOverLimit};
pub use names::{ifname_problem, normalize_domain, valid_name};
pub use notes::{
    advice, interface_notes, local_targets, missing_interfaces, notes, own_address_notes,
    writable_by_others,
};
pub use read::{
    Changed, Check, Inputs, MAX_CONFIG_BYTES, MAX_LIST_BYTES, ReadError, Stamp, Unsettled, Wait,
    content_hash, read_file, take_waits,
};
pub use vrrp::{AllWansDown, Checksum, Engine, Follow, Speaker, Vip, Vrrp, VrrpWan};

pub use crate::model::{Capacity, LocalScope};
use crate::{
    model::{Direction, sorted::SortedPrefixes},
    prefix::Prefix,
};

/// Default directory for pinned maps and programs.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/steer";
/// Default control socket.
pub const DEFAULT_SOCKET: &str = "/run/steer/steer.sock";
/// Default `general.mark_mask`.
pub const DEFAULT_MARK_MASK: u32 = 0xff00;
/// Largest accepted map capacity (entries).
pub const MAX_CAPACITY: u32 = 16_777_216;
/// The built-in policy a set names to leave its traffic unsteered (the main routing table).
pub const MAIN_POLICY: &str = "main";

/// A whole, valid configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The configuration file, as given.
    pub path: PathBuf,
    pub general: General,
    pub wans: Vec<Wan>,
    pub policies: Vec<Policy>,
    pub sets: Vec<Set>,
    /// The policy for traffic that no set matches; `None` leaves it unmarked (main table).
    pub default: Option<DefaultRule>,
    pub control: Control,
    /// How domain sets learn their addresses; `None`: domains are not steered.
    pub dns: Option<Dns>,
    /// The HA pair's virtual routers (`[[vrrp]]`); empty = no HA.
    pub vrrp: Vec<Vrrp>,
    /// What steer does about IPv6 sources on the WANs (`[ipv6]`); `None`: nothing, the
    /// firewall's business as before.
    pub ipv6: Option<Ipv6>,
}

/// `[ipv6]`: how a LAN host's IPv6 source becomes one that the WAN carrying it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6 {
    pub mode: Ipv6Mode,
    /// The prefix LAN hosts use (`lan_prefix`); `mode = "npt"` needs it, and only it has one.
    pub lan_prefix: Option<Prefix>,
    /// npt: the ports new connections from the internet may reach LAN hosts on (through the
    /// firewall as well); every other inbound connection to a translated address is dropped.
    pub inbound_tcp: Vec<crate::model::ordered::PortRange>,
    pub inbound_udp: Vec<crate::model::ordered::PortRange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Mode {
    /// Stateless-style prefix translation (RFC 6296) between `lan_prefix` and each WAN's
    /// `prefix6`: any WAN carries any flow, inbound connections reach the hosts.
    Npt,
    /// NAT66 to the WAN's own address, as IPv4.
    Masquerade,
    /// No translation: LAN hosts hold an address of every WAN's prefix, a packet leaves by the
    /// WAN whose prefix its source is in, and a WAN that is down has its prefix deprecated on
    /// the LAN so hosts pick another source for new connections.
    Source,
}

impl Ipv6Mode {
    pub fn word(self) -> &'static str {
        match self {
            Ipv6Mode::Npt => "npt",
            Ipv6Mode::Masquerade => "masquerade",
            Ipv6Mode::Source => "source",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct General {
    /// Interfaces whose ingress is classified.
    pub lan: Vec<String>,
    /// Where each of `lan` is written, for notes about this machine's interfaces.
    pub lan_places: Vec<Written>,
    /// The skb->mark bits steer owns (nonzero).
    pub mark_mask: u32,
    /// Where `mark_mask` is written (nowhere: the default).
    pub mark_mask_place: Written,
    /// Also attach the XDP pre-classifier.
    pub xdp: bool,
    pub pin_dir: PathBuf,
    /// Where `pin_dir` is written (nowhere: the default), for the refusal of a reload that
    /// changes it.
    pub pin_dir_place: Written,
    /// The maps' capacities and `max_memory`.
    pub capacity: Capacity,
    /// Kernel-side per-packet logging (debug only).
    pub log_packets: bool,
    pub duplicates: DuplicatePolicy,
    /// Which destinations the router reaches without a WAN are never steered.
    pub local: LocalScope,
    /// More destinations that are never steered.
    pub local_prefixes: Vec<Prefix>,
}

/// What to do when two sets with the same `match` direction hold the same prefix (or domain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DuplicatePolicy {
    /// Refuse the configuration (`"error"`, the default).
    #[default]
    Error,
    /// The set that comes first in the file keeps it; later ones drop it with a warning
    /// (`"first-set-wins"`).
    FirstSetWins,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Wan {
    pub name: String,
    pub interface: String,
    /// Where `interface` is written, for notes about this machine's interfaces.
    pub interface_place: Written,
    /// The mark stamped for this WAN (nonzero, inside `mark_mask`, unique).
    pub mark: u32,
    /// The routing table steer keeps for this WAN (unique, not 0/253/254/255, < 2^31).
    pub table: u32,
    /// Where `mark` and `table` are written, for messages about what other software on the
    /// router does with them ([`crate::routing`]).
    pub mark_place: Written,
    pub table_place: Written,
    /// The IPv4 next hop (`gateway`).
    pub gateway: NextHop,
    /// The IPv6 next hop (`gateway6`).
    pub gateway6: NextHop,
    /// The prefix the ISP routes to this line (`prefix6`, a delegated prefix): IPv6 leaving
    /// by this WAN must have its source in it (or be the WAN's own address).
    pub prefix6: Option<Prefix6>,
    pub track: Track,
}

impl Wan {
    /// The next hop setting of `family`.
    pub fn next_hop(&self, family: crate::model::Family) -> NextHop {
        match family {
            crate::model::Family::V4 => self.gateway,
            crate::model::Family::V6 => self.gateway6,
        }
    }
}

/// Where a WAN's delegated IPv6 prefix comes from (`prefix6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix6 {
    /// Learned from the system (`"auto"`): see [`crate::wan_sources::learn`].
    Auto,
    /// This prefix.
    Fixed(Prefix),
}

impl Prefix6 {
    /// The configured prefix, if it is one.
    pub fn fixed(self) -> Option<Prefix> {
        match self {
            Prefix6::Fixed(p) => Some(p),
            Prefix6::Auto => None,
        }
    }
}

/// Where a WAN's default route of one family goes (`gateway`, `gateway6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NextHop {
    /// Learned from the system: the default route the DHCP client, PPP or router
    /// advertisements installed through the WAN's interface, or none on a point-to-point link
    /// (`"auto"`, and what leaving the key out means).
    #[default]
    Auto,
    /// No next hop: the route names the interface only (`"none"`, for point-to-point links).
    Direct,
    /// This address (of the key's family).
    Via(IpAddr),
}

/// Health tracking of one WAN.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    pub method: TrackMethod,
    /// Never empty; every target matches `method`.
    pub targets: Vec<ProbeTarget>,
    /// Where each of `targets` is written, for notes about this machine's addresses.
    pub target_places: Vec<Written>,
    pub interval_ms: u32,
    pub timeout_ms: u32,
    /// Targets that must answer for a round to pass (1..=targets.len()).
    pub reliability: u32,
    /// Consecutive failed rounds before down.
    pub down_after: u32,
    /// Consecutive passed rounds before up.
    pub up_after: u32,
    /// A round whose answers are slower than this fails.
    pub max_latency_ms: Option<u32>,
    /// Down when the loss over `loss_window` rounds exceeds this.
    pub max_loss_percent: Option<u32>,
    /// Latency needed to come back up (<= max_latency_ms).
    pub recover_latency_ms: Option<u32>,
    /// Loss needed to come back up (<= max_loss_percent).
    pub recover_loss_percent: Option<u32>,
    /// Rounds the loss is computed over.
    pub loss_window: u32,
    /// How fast probes go after a miss, while quiet, and what the traffic says.
    pub pace: Pacing,
}

/// The pace of a WAN's probes and its passive liveness (`failure_interval_ms`,
/// `quiet_interval_ms`, `passive`, `passive_window_ms` of `[wan.track]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Between rounds after a late or missed probe and while the traffic is suspect
    /// (<= interval_ms).
    pub failure_interval_ms: u32,
    /// Between rounds while the WAN's own traffic keeps being answered (>= interval_ms);
    /// `None`: never slower than interval_ms (`quiet_interval_ms = 0`).
    pub quiet_interval_ms: Option<u32>,
    /// Whether the WAN's traffic counters (packets out that expect an answer, answers in) may
    /// make it suspect and quiet its probes.
    pub passive: bool,
    /// Sent, and nothing back for this long: suspect (the effective window is never shorter
    /// than the line's round-trip bound).
    pub passive_window_ms: u32,
}

impl Pacing {
    pub const DEFAULT_QUIET_INTERVAL_MS: u32 = 2500;
    pub const DEFAULT_PASSIVE_WINDOW_MS: u32 = 50;
    /// The shortest fast pace an unwritten `failure_interval_ms` takes.
    pub const MIN_FAILURE_INTERVAL_MS: u32 = 10;

    /// An unwritten `failure_interval_ms`: a tenth of the interval (at least 10 ms, at most the
    /// interval), so that the `down_after` rounds that confirm a silent cut fit in about one
    /// normal interval and a timeout: with 100 ms rounds, an 80 ms timeout and `down_after = 3`,
    /// a cut is decided 100 to 195 ms after it happens, wherever it falls in the interval.
    pub fn default_failure_interval_ms(interval_ms: u32) -> u32 {
        (interval_ms / 10)
            .max(Self::MIN_FAILURE_INTERVAL_MS)
            .min(interval_ms)
    }

    /// Every key at its default for probes every `interval_ms`.
    pub fn defaults(interval_ms: u32) -> Pacing {
        Pacing {
            failure_interval_ms: Self::default_failure_interval_ms(interval_ms),
            quiet_interval_ms: Some(Self::DEFAULT_QUIET_INTERVAL_MS.max(interval_ms)),
            passive: true,
            passive_window_ms: Self::DEFAULT_PASSIVE_WINDOW_MS,
        }
    }
}

/// What a TCP probe counts a refused connection as (`tcp_refused`): the target answered the SYN
/// with a RST, or an ICMP port unreachable came back (the kernel reports both as "connection
/// refused").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TcpRefused {
    /// A failed probe (`"fail"`, the default). A refusal need not come from the target: a
    /// captive portal, an ISP's access router that lost its upstream, or a transparent proxy
    /// answers SYNs with RSTs or ICMP errors of its own, so it proves nothing about the way to
    /// the internet.
    #[default]
    Fail,
    /// An answer (`"pass"`): something beyond the WAN answered, which is enough when the
    /// target's port is known to be closed and only the path is in question.
    Pass,
}

impl TcpRefused {
    pub fn as_str(self) -> &'static str {
        match self {
            TcpRefused::Fail => "fail",
            TcpRefused::Pass => "pass",
        }
    }
}

/// The HTTP status codes that pass an http probe (`http_status`): inclusive ranges, in the
/// order written, never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCodes(Vec<RangeInclusive<u16>>);

impl StatusCodes {
    /// The lowest and highest status code a configuration may name (RFC 9110, section 15).
    pub const VALID: RangeInclusive<u16> = 100..=599;
    /// What an unwritten `http_status` accepts: success (2xx) only. A captive portal redirects
    /// (302) or serves its login page under another status; a redirect means the page was not
    /// the one asked for.
    pub const DEFAULT: RangeInclusive<u16> = 200..=299;

    /// The codes of `ranges`; `None` when there are none (no probe could ever pass).
    pub fn new(ranges: Vec<RangeInclusive<u16>>) -> Option<StatusCodes> {
        (!ranges.is_empty()).then_some(StatusCodes(ranges))
    }

    /// Whether `code` passes.
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|r| r.contains(&code))
    }
}

impl Default for StatusCodes {
    fn default() -> Self {
        StatusCodes(vec![StatusCodes::DEFAULT])
    }
}

impl fmt::Display for StatusCodes {
    /// As written in the configuration: `200-299`, or `200, 204, 300-399`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if r.start() == r.end() {
                write!(f, "{}", r.start())?;
            } else {
                write!(f, "{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

/// What an unwritten `[wan.track]` key means (also the documented defaults).
impl Track {
    pub const DEFAULT_METHOD: TrackMethod = TrackMethod::Icmp;
    pub const DEFAULT_INTERVAL_MS: u32 = 500;
    pub const DEFAULT_TIMEOUT_MS: u32 = 400;
    pub const DEFAULT_RELIABILITY: u32 = 1;
    pub const DEFAULT_DOWN_AFTER: u32 = 3;
    pub const DEFAULT_UP_AFTER: u32 = 5;
    pub const DEFAULT_LOSS_WINDOW: u32 = 10;
    pub const DEFAULT_TCP_REFUSED: TcpRefused = TcpRefused::Fail;

    /// Whether some target is of `family` (a family without targets follows the other).
    pub fn probes(&self, family: crate::model::Family) -> bool {
        self.targets
            .iter()
            .any(|t| crate::model::Family::of(&t.ip()) == family)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackMethod {
    Icmp,
    Tcp,
    Dns,
    Http,
}

impl TrackMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            TrackMethod::Icmp => "icmp",
            TrackMethod::Tcp => "tcp",
            TrackMethod::Dns => "dns",
            TrackMethod::Http => "http",
        }
    }
}

/// What one probe contacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeTarget {
    /// Echo request to this address.
    Icmp(IpAddr),
    /// TCP connect to this address and port; `refused` says what a refusal counts as.
    Tcp {
        addr: SocketAddr,
        refused: TcpRefused,
    },
    /// A DNS query (type NS) for `query` sent to `server` port 53.
    Dns { server: IpAddr, query: String },
    /// `GET path` to `addr` with `Host: host`; passes on a status in `status`.
    Http {
        addr: SocketAddr,
        host: String,
        path: String,
        status: StatusCodes,
    },
}

impl ProbeTarget {
    /// The address a probe of this target is sent to.
    pub fn ip(&self) -> IpAddr {
        match self {
            ProbeTarget::Icmp(a) | ProbeTarget::Dns { server: a, .. } => *a,
            ProbeTarget::Tcp { addr: a, .. } | ProbeTarget::Http { addr: a, .. } => a.ip(),
        }
    }
}

impl fmt::Display for ProbeTarget {
    /// The target as a configuration writes it: `1.1.1.1`, `1.1.1.1:443`,
    /// `http://[2001:db8::1]:8080/health`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeTarget::Icmp(a) | ProbeTarget::Dns { server: a, .. } => write!(f, "{a}"),
            ProbeTarget::Tcp { addr, .. } => write!(f, "{addr}"),
            ProbeTarget::Http { addr, path, .. } if addr.port() == 80 => match addr.ip() {
                IpAddr::V4(a) => write!(f, "http://{a}{path}"),
                IpAddr::V6(a) => write!(f, "http://[{a}]{path}"),
            },
            ProbeTarget::Http { addr, path, .. } => write!(f, "http://{addr}{path}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    /// Never empty; no WAN twice.
    pub members: Vec<Member>,
    pub last_resort: LastResort,
    /// What a balanced policy's slot is picked by.
    pub hash: HashBy,
    /// What happens to flows a failover moved when their WAN comes back.
    pub failback: Failback,
}

/// What a balanced policy spreads by (`hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashBy {
    /// Each flow (addresses, protocol, ports) on its own (`"flow"`, the default).
    #[default]
    Flow,
    /// Each LAN host on one WAN (`"src"`): for sites that bind a session to the address.
    Src,
}

/// What a policy does with the flows a failover moved, once their WAN is back (`failback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Failback {
    /// They stay where they are until they end; new flows use the WAN that is back
    /// (`"keep"`, the default: no connection is cut).
    #[default]
    Keep,
    /// They are cut (their connection entries deleted) so they start over on the WAN that is
    /// back (`"move"`).
    Move,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub wan: String,
    /// Lower is preferred (1..=255, default 1); members sharing the lowest metric of the
    /// WANs that are up share the traffic.
    pub metric: u32,
    /// Share among members of the same metric (1..=64, default 1).
    pub weight: u32,
}

/// What a policy does when none of its WANs is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LastResort {
    /// Leave the packet unmarked: the main routing table decides.
    #[default]
    Default,
    /// Reject (ICMP unreachable).
    Unreachable,
    /// Drop silently.
    Blackhole,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Set {
    pub name: String,
    pub policy: String,
    /// TOML key `match`: `"dst"` (default) or `"src"`.
    pub direction: Direction,
    /// The inline prefixes, each once, in order, with their places.
    pub prefixes: Vec<Entry>,
    /// The list files' prefixes that are not inline, each once, sorted (8 bytes an IPv4
    /// prefix; no line is kept: a message that needs one reads the list again,
    /// [`list_line_of`]). The daemon's compile takes a plain set's over
    /// ([`crate::sets::compile_taking_lists`]): its running configuration keeps none.
    pub listed: SortedPrefixes,
    /// The list files, resolved against the config file's directory.
    pub files: Vec<PathBuf>,
    /// Lowercase, no trailing dot, each once: inline ones first, then those of the domain
    /// list files.
    pub domains: Vec<String>,
    /// The domain list files, resolved against the config file's directory.
    pub domain_files: Vec<PathBuf>,
    /// Answer AAAA questions for the set's names with no address, learn no IPv6 address.
    pub filter_aaaa: bool,
    pub allow_default_route: bool,
    /// `Some` makes the set an ordered rule: tried before the prefix sets, first match in
    /// configuration order ([`crate::model::ordered`]).
    pub conditions: Option<crate::model::Conditions>,
}

impl Config {
    /// `[ipv6] mode`, if there is an `[ipv6]` section.
    pub fn ipv6_mode(&self) -> Option<Ipv6Mode> {
        self.ipv6.as_ref().map(|i| i.mode)
    }

    /// Whether a `[[vrrp]]` instance lists WAN `wan` as master-only.
    pub fn is_master_only(&self, wan: &str) -> bool {
        self.vrrp.iter().any(|v| v.holds_master_only(wan))
    }
}

impl Config {
    /// The kernel memory of the prefix sets ([`crate::model::footprint`]).
    pub fn set_footprint(&self) -> crate::model::footprint::Footprint {
        set::footprint(&self.sets)
    }
}

impl Set {
    /// Whether the set names addresses of its own (inline prefixes or list files). A set with
    /// conditions that names none matches every address; one whose list files came out empty
    /// matches none, never everything.
    pub fn names_addresses(&self) -> bool {
        !self.prefixes.is_empty() || !self.files.is_empty()
    }

    /// Every prefix: the inline ones, then the lists'.
    pub fn all_prefixes(&self) -> impl Iterator<Item = Prefix> + Clone + '_ {
        self.prefixes
            .iter()
            .map(|e| e.prefix)
            .chain(self.listed.iter())
    }

    /// How many prefixes [`Set::all_prefixes`] gives.
    pub fn prefix_count(&self) -> usize {
        self.prefixes.len() + self.listed.len()
    }

    /// The set as an ordered rule with id `rule`; `None` for a plain prefix set.
    pub fn ordered_rule(&self, rule: u32) -> Option<crate::model::OrderedRule> {
        // The conditions first: a plain set's prefixes (a million, maybe) are not collected.
        let conditions = self.conditions.clone()?;
        Some(crate::model::OrderedRule {
            rule,
            direction: self.direction,
            prefixes: self
                .names_addresses()
                .then(|| self.all_prefixes().collect()),
            conditions,
        })
    }
}

/// Where a value is written in the configuration file: 1-based line and column, when known.
/// No part of what the configuration says: any two are equal, so that a reload of a file whose
/// lines only moved changes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written(pub Option<(usize, usize)>);

impl PartialEq for Written {
    fn eq(&self, _: &Written) -> bool {
        true
    }
}

impl Eq for Written {}

impl fmt::Display for Written {
    /// `:line:column`, or nothing when unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((line, column)) => write!(f, ":{line}:{column}"),
            None => Ok(()),
        }
    }
}

/// A prefix and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub prefix: Prefix,
    pub origin: Origin,
}

/// Where an entry was written: the config file or a list file, and the 1-based line. Every
/// prefix of a set has one, so it is kept small: a thin shared pointer to the file's name (a
/// list's entries share one) and a 32-bit line (list files are capped far below 2^32 lines).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub file: Arc<PathBuf>,
    pub line: u32,
}

/// A 1-based line number as [`Origin`] keeps it.
pub fn line_number(line: usize) -> u32 {
    u32::try_from(line).unwrap_or(u32::MAX)
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRule {
    pub policy: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub socket: PathBuf,
    /// Prometheus metrics listener; `None` = off. A loopback address unless `metrics_public`.
    pub metrics: Option<SocketAddr>,
    /// Where `socket` and `metrics` are written (nowhere: the default), for the refusal of a
    /// reload that changes them.
    pub socket_place: Written,
    pub metrics_place: Written,
    /// The metrics may be served on an address other hosts reach (opted in, warned about).
    pub metrics_public: bool,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            socket: PathBuf::from(DEFAULT_SOCKET),
            metrics: None,
            socket_place: Written::default(),
            metrics_place: Written::default(),
            metrics_public: false,
        }
    }
}

impl Config {
    pub fn wan(&self, name: &str) -> Option<&Wan> {
        self.wans.iter().find(|w| w.name == name)
    }

    /// The WAN named `name`, or else the one WAN on interface `name` (what a DHCP client hook
    /// knows).
    pub fn wan_or_interface(&self, name: &str) -> Option<&Wan> {
        self.wan(name).or_else(|| {
            let mut on = self.wans.iter().filter(|w| w.interface == name);
            match (on.next(), on.next()) {
                (Some(w), None) => Some(w),
                _ => None,
            }
        })
    }

    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }

    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name)
    }
}

/// Reads and validates the configuration file at `path` and the list files it names.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    parse(&read_text(path)?, path)
}

/// [`load`], with every file it read stamped: a reload that finds them all unchanged
/// ([`Inputs::unchanged`]) need not parse anything.
pub fn load_stamped(path: &Path) -> Result<(Config, Inputs), ConfigErrors> {
    let (config, inputs) = Inputs::record(|| load(path));
    Ok((config?, inputs))
}

/// [`load_stamped`] by a daemon under a memory limit: each list is admitted by `budget`
/// before it is read and parsed, and one that would take the daemon over the limit is an
/// error of the configuration, where it is named ([`ListBudget`]).
pub fn load_stamped_within(
    path: &Path,
    budget: Option<ListBudget>,
) -> Result<(Config, Inputs), ConfigErrors> {
    list_budget::within(budget, || load_stamped(path))
}

/// Where the steer started from a configuration can be reached, and what it owns outside the
/// pin directory: for the CLI's `-c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub socket: PathBuf,
    pub pin_dir: PathBuf,
    /// The WANs' routing tables.
    pub tables: Vec<u32>,
}

/// Reads only `control.socket`, `general.pin_dir` and the WANs' `table`s of the configuration
/// at `path`, checked as [`load`] checks them. Nothing else is checked and list files are not
/// read, so `steer stop -c` still works when the rest of the file is broken.
pub fn load_endpoints(path: &Path) -> Result<Endpoints, ConfigErrors> {
    endpoints::read(&read_text(path)?, path)
}

/// The configuration file as text, or why it cannot be read.
fn read_text(path: &Path) -> Result<String, ConfigErrors> {
    let bytes = read_file(path, MAX_CONFIG_BYTES).map_err(|e| {
        let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        single(
            path,
            format!(
                "cannot read the configuration file {}: {e}",
                shown.display()
            ),
            match &e {
                ReadError::Io(_) => "check the path given with -c and the file's permissions",
                ReadError::TooBig { .. } => {
                    "a configuration this big should keep its prefixes in list files (a set's \
                     `files`)"
                }
                e => e.hint(),
            },
        )
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = String::from_utf8_lossy(&e.as_bytes()[..e.utf8_error().valid_up_to()]);
        let (line, column) = diag::Source::new(&valid).locate(valid.len());
        ConfigErrors {
            errors: vec![Diagnostic {
                file: path.to_path_buf(),
                line,
                column,
                field: String::new(),
                value: String::new(),
                message: "the configuration file is not valid UTF-8 text".into(),
                hint: "save it as UTF-8".into(),
            }],
            unshown: 0,
        }
    })
}

/// Validates configuration text. `path` is used in messages and to resolve relative list-file
/// paths (against its directory); list files are read.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    root::parse(text, path)
}

fn single(path: &Path, message: String, hint: &str) -> ConfigErrors {
    ConfigErrors {
        errors: vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            value: String::new(),
            message,
            hint: hint.into(),
        }],
        unshown: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Default column of the first row of a table in `doc` whose key is `key`.
    fn documented_default<'d>(doc: &'d str, key: &str) -> &'d str {
        let row = format!("| `{key}` |");
        let line = doc
            .lines()
            .find(|l| l.starts_with(&row))
            .unwrap_or_else(|| panic!("docs/configuration.md has no row for `{key}`"));
        line.split('|').nth(3).unwrap_or("").trim()
    }

    #[test]
    fn an_entry_takes_40_bytes() {
        // A million-line list keeps a million of them: 48 bytes each with a fat path pointer
        // and a 64-bit line.
        assert_eq!(std::mem::size_of::<Entry>(), 40);
    }

    #[test]
    fn a_config_file_that_is_not_utf8_is_refused_at_the_first_bad_byte() {
        let path = std::env::temp_dir().join(format!("steer-not-utf8-{}.toml", std::process::id()));
        std::fs::write(&path, b"[general]\nlan = [\"\xc3\xa7\xff\"]\n").unwrap();
        let result = load(&path);
        let _ = std::fs::remove_file(&path);
        let errors = result.unwrap_err().errors;
        assert_eq!(errors.len(), 1);
        let d = &errors[0];
        assert_eq!(
            (d.file.as_path(), d.line, d.column),
            (path.as_path(), 2, 10)
        );
        assert_eq!(d.message, "the configuration file is not valid UTF-8 text");
    }

    #[test]
    fn the_reference_documents_the_defaults_in_use() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
        let doc = std::fs::read_to_string(&path).expect("docs/configuration.md");
        let capacity = Capacity::default();
        let expected = [
            ("mark_mask", format!("`{DEFAULT_MARK_MASK:#x}`")),
            ("pin_dir", format!("`\"{DEFAULT_PIN_DIR}\"`")),
            ("dst_v4", format!("`{}`", capacity.dst_v4)),
            ("dst_v6", format!("`{}`", capacity.dst_v6)),
            ("src_v4", format!("`{}`", capacity.src_v4)),
            ("src_v6", format!("`{}`", capacity.src_v6)),
            (
                "method",
                format!("`\"{}\"`", Track::DEFAULT_METHOD.as_str()),
            ),
            ("interval_ms", format!("`{}`", Track::DEFAULT_INTERVAL_MS)),
            ("timeout_ms", format!("`{}`", Track::DEFAULT_TIMEOUT_MS)),
            ("reliability", format!("`{}`", Track::DEFAULT_RELIABILITY)),
            ("down_after", format!("`{}`", Track::DEFAULT_DOWN_AFTER)),
            ("up_after", format!("`{}`", Track::DEFAULT_UP_AFTER)),
            ("loss_window", format!("`{}`", Track::DEFAULT_LOSS_WINDOW)),
            ("passive", "`true`".to_owned()),
            (
                "passive_window_ms",
                format!("`{}`", Pacing::DEFAULT_PASSIVE_WINDOW_MS),
            ),
            (
                "tcp_refused",
                format!("`\"{}\"`", Track::DEFAULT_TCP_REFUSED.as_str()),
            ),
            ("http_status", format!("`[\"{}\"]`", StatusCodes::default())),
            ("socket", format!("`\"{DEFAULT_SOCKET}\"`")),
            ("engine", "`\"steer\"`".to_owned()),
            ("priority", format!("`{}`", Vrrp::DEFAULT_PRIORITY)),
            (
                "advert_interval_ms",
                format!("`{}`", Vrrp::DEFAULT_ADVERT_INTERVAL_MS),
            ),
            ("preempt", "`true`".to_owned()),
            ("preempt_delay_ms", "`0`".to_owned()),
            (
                "checksum",
                format!("`\"{}\"`", Checksum::default().as_str()),
            ),
            ("all_wans_down", "`\"fault\"`".to_owned()),
            (
                "step_timeout_ms",
                format!("`{}`", Vrrp::DEFAULT_STEP_TIMEOUT_MS),
            ),
            ("master_only", "`false`".to_owned()),
        ];
        for (key, value) in expected {
            assert_eq!(documented_default(&doc, key), value, "default of `{key}`");
        }
        let dns = &doc[doc.find("\n## [dns]").expect("a [dns] section")..];
        let bool_default = |b: bool| format!("`{b}`");
        for (key, value) in [
            ("forward", bool_default(true)),
            ("timeout_ms", format!("`{}`", Dns::DEFAULT_TIMEOUT_MS)),
            ("min_ttl", format!("`{}`", Dns::DEFAULT_MIN_TTL)),
            ("max_ttl", format!("`{}`", Dns::DEFAULT_MAX_TTL)),
            ("capacity_v4", format!("`{}`", Dns::DEFAULT_CAPACITY_V4)),
            ("capacity_v6", format!("`{}`", Dns::DEFAULT_CAPACITY_V6)),
            ("rebind_protection", bool_default(true)),
            ("block_application_dns", bool_default(true)),
            ("snoop", bool_default(false)),
            ("snoop_queue", format!("`{}`", Dns::DEFAULT_SNOOP_QUEUE)),
        ] {
            assert_eq!(
                documented_default(dns, key),
                value,
                "default of dns.`{key}`"
            );
        }
        let parsed = parse(
            &format!(
                "{}\n[dns]\nlisten = [\"192.0.2.1:53\"]\nupstreams = [\"127.0.0.1:5335\"]\n",
                testing::BASE
            ),
            Path::new("steer.toml"),
        )
        .expect("valid");
        let d = parsed.dns.expect("a [dns] section");
        assert!(d.forward && d.rebind_protection && d.block_application_dns && !d.snoop);
        assert_eq!(
            (
                d.timeout_ms,
                d.min_ttl,
                d.max_ttl,
                d.capacity_v4,
                d.capacity_v6,
                d.snoop_queue
            ),
            (
                Dns::DEFAULT_TIMEOUT_MS,
                Dns::DEFAULT_MIN_TTL,
                Dns::DEFAULT_MAX_TTL,
                Dns::DEFAULT_CAPACITY_V4,
                Dns::DEFAULT_CAPACITY_V6,
                Dns::DEFAULT_SNOOP_QUEUE
            ),
            "the defaults in use are the documented ones"
        );
        let advice = format!("below {}, set `timeout_ms` too", Track::DEFAULT_TIMEOUT_MS);
        assert!(
            doc.contains(&advice),
            "the timeout_ms advice names the default"
        );
    }
}
