//! `[[vrrp]]`: the virtual routers of an HA pair — the keys of each instance, their raw form and
//! their checks, and the valid instance's types.
//!
//! An instance is spoken by steer itself (`engine = "steer"`, VRRPv3 on `interface`) or followed
//! from keepalived's `notify_fifo` (`engine = "keepalived"`). Either way its `wans` say which
//! WANs only the master brings up, and how much each lowers the priority while it is down.

use std::{collections::HashMap, net::IpAddr, path::PathBuf};

use serde::Deserialize;

use super::{
    check::{self, Bounds, Choices, Claims},
    diag::Ctx,
    names::{check_object_name, ifname_problem},
    references::{Defined, check_reference},
    schema::{
        Field,
        Kind::{Bool, Int, Str, StrList, TableList},
        S, Strings, item_label, opt, opt_int, req,
    },
};
use crate::prefix::{is_unicast, parse_addr};

/// One `[[vrrp]]` instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Vrrp {
    /// Unique among instances; with `engine = "keepalived"`, keepalived's `vrrp_instance` name.
    pub name: String,
    pub engine: Engine,
    /// The WANs this instance gates and weighs, each once.
    pub wans: Vec<VrrpWan>,
    pub all_wans_down: AllWansDown,
    /// conntrackd's configuration file: its caches are committed on becoming master.
    pub conntrackd: Option<PathBuf>,
    /// Bound on one takeover step (a WAN coming up, a command, conntrackd).
    pub step_timeout_ms: u32,
}

impl Vrrp {
    pub const DEFAULT_PRIORITY: u8 = 100;
    pub const DEFAULT_ADVERT_INTERVAL_MS: u32 = 1000;
    pub const DEFAULT_STEP_TIMEOUT_MS: u32 = 2000;
    pub const DEFAULT_CONNTRACKD: &str = "conntrackd";

    /// The speaker's settings, when steer speaks VRRP for this instance.
    pub fn speaker(&self) -> Option<&Speaker> {
        match &self.engine {
            Engine::Steer(s) => Some(s),
            Engine::Keepalived(_) => None,
        }
    }

    /// Whether this instance lists `wan` as master-only (up only while it is master).
    pub fn holds_master_only(&self, wan: &str) -> bool {
        self.wans.iter().any(|w| w.wan == wan && w.master_only)
    }

    /// The base priority (keepalived's own, unknown to steer, counts as the default).
    pub fn base_priority(&self) -> u8 {
        self.speaker()
            .map_or(Self::DEFAULT_PRIORITY, |s| s.priority)
    }
}

/// Who speaks VRRP for an instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Engine {
    /// steer's own VRRPv3 speaker.
    Steer(Speaker),
    /// keepalived speaks; steer follows its `notify_fifo`.
    Keepalived(Follow),
}

/// A VRRPv3 instance steer speaks.
#[derive(Debug, Clone, PartialEq)]
pub struct Speaker {
    pub interface: String,
    pub vrid: u8,
    /// 1..=255; 255 is the address owner.
    pub priority: u8,
    /// Centiseconds on the wire: 1..=4095.
    pub advert_interval_cs: u16,
    pub preempt: bool,
    pub preempt_delay_ms: u32,
    /// Never empty, one family.
    pub vips: Vec<Vip>,
    /// With `peers`: the source of unicast adverts (else the interface's primary address).
    pub unicast_src: Option<IpAddr>,
    /// Unicast peers; empty = multicast (224.0.0.18 / ff02::12).
    pub peers: Vec<IpAddr>,
    pub checksum: Checksum,
    /// Where the VIPs live: `interface` unless a routed VIP names another (holder) interface.
    pub holder: Option<String>,
    /// Where `interface` and each of `vips` are written, for checks against this machine's
    /// interfaces (the start, a reload, `steer check`).
    pub places: Places,
}

/// 1-based (line, column) of values in the configuration file. Where a value is written is no
/// part of the configuration: any two compare equal, so moving a line changes nothing.
#[derive(Debug, Clone, Default)]
pub struct Places {
    pub interface: Option<(usize, usize)>,
    pub holder: Option<(usize, usize)>,
    /// One per entry of `vips`.
    pub vips: Vec<(usize, usize)>,
}

impl PartialEq for Places {
    fn eq(&self, _: &Places) -> bool {
        true
    }
}

impl Places {
    /// `line:column` of VIP `index`, or "" when unknown.
    pub fn vip(&self, index: usize) -> String {
        self.vips
            .get(index)
            .map_or(String::new(), |(l, c)| format!(":{l}:{c}"))
    }

    /// `line:column` of `interface` (or `holder`), or "" when unknown.
    pub fn interface(&self, holder: bool) -> String {
        let at = if holder { self.holder } else { self.interface };
        at.map_or(String::new(), |(l, c)| format!(":{l}:{c}"))
    }
}

impl Speaker {
    pub fn is_v6(&self) -> bool {
        self.vips.first().is_some_and(|v| v.addr.is_ipv6())
    }

    /// The interface that holds the VIPs.
    pub fn vip_interface(&self) -> &str {
        self.holder.as_deref().unwrap_or(&self.interface)
    }

    pub fn advert_interval_ms(&self) -> u32 {
        u32::from(self.advert_interval_cs) * 10
    }
}

/// A virtual address and the prefix length it is added with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vip {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl std::fmt::Display for Vip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// The IPv4 VRRPv3 checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checksum {
    /// Over an IPv4 pseudo-header and the message, as RFC 5798 was read by keepalived and FRR
    /// (`"pseudo-header"`, the default).
    #[default]
    PseudoHeader,
    /// Over the message alone, as RFC 9568 says (`"plain"`).
    Plain,
}

impl Checksum {
    pub fn as_str(self) -> &'static str {
        match self {
            Checksum::PseudoHeader => "pseudo-header",
            Checksum::Plain => "plain",
        }
    }
}

/// keepalived's side of an instance steer follows.
#[derive(Debug, Clone, PartialEq)]
pub struct Follow {
    /// keepalived's `notify_fifo` (global_defs): `INSTANCE "name" STATE priority` lines.
    pub notify_fifo: PathBuf,
    /// Where steer writes the priority penalty of its WAN health, for keepalived's
    /// `track_file` (with `weight -1`).
    pub track_file: Option<PathBuf>,
}

/// A WAN an instance gates or weighs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpWan {
    pub wan: String,
    /// Priority lost while the WAN is down (0..=254).
    pub weight: u8,
    /// Up on the master only: brought up on becoming master, down on leaving.
    pub master_only: bool,
    /// Brings the WAN up instead of setting its link up (run with `sh -c`).
    pub up_command: Option<String>,
    /// Takes it down instead of setting its link down.
    pub down_command: Option<String>,
}

/// What an instance does when every WAN it weighs is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AllWansDown {
    /// Give up mastership at once (priority 0) and stay out (`"fault"`, the default).
    #[default]
    Fault,
    /// Only lower the priority by the weights (`"priority"`).
    Priority,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawVrrp {
    pub name: Option<S<String>>,
    pub engine: Option<S<String>>,
    pub interface: Option<S<String>>,
    pub vrid: Option<S<i64>>,
    pub priority: Option<S<i64>>,
    pub advert_interval_ms: Option<S<i64>>,
    pub preempt: Option<S<bool>>,
    pub preempt_delay_ms: Option<S<i64>>,
    pub vips: Option<Strings>,
    pub unicast_src: Option<S<String>>,
    pub peers: Option<Strings>,
    pub checksum: Option<S<String>>,
    pub holder: Option<S<String>>,
    pub notify_fifo: Option<S<String>>,
    pub track_file: Option<S<String>>,
    pub wans: Option<S<Vec<S<RawVrrpWan>>>>,
    pub all_wans_down: Option<S<String>>,
    pub conntrackd: Option<S<String>>,
    pub step_timeout_ms: Option<S<i64>>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawVrrpWan {
    pub wan: Option<S<String>>,
    pub weight: Option<S<i64>>,
    pub master_only: Option<S<bool>>,
    pub up_command: Option<S<String>>,
    pub down_command: Option<S<String>>,
}

pub(super) const FIELD: Field = opt(
    "vrrp",
    TableList(FIELDS),
    "[[vrrp]] with name, interface, vrid and vips",
);

const FIELDS: &[Field] = &[
    req("name", Str, "name = \"lan\""),
    opt("engine", Str, "engine = \"steer\""),
    opt("interface", Str, "interface = \"br-lan\""),
    opt("vrid", Int, "vrid = 51"),
    opt_int("priority", Vrrp::DEFAULT_PRIORITY as u32),
    opt_int("advert_interval_ms", Vrrp::DEFAULT_ADVERT_INTERVAL_MS),
    opt("preempt", Bool, "preempt = true"),
    opt_int("preempt_delay_ms", 0),
    opt("vips", StrList, "vips = [\"192.168.1.1/24\"]"),
    opt("unicast_src", Str, "unicast_src = \"10.0.1.2\""),
    opt("peers", StrList, "peers = [\"10.0.2.2\"]"),
    opt("checksum", Str, "checksum = \"pseudo-header\""),
    opt("holder", Str, "holder = \"vip0\""),
    opt(
        "notify_fifo",
        Str,
        "notify_fifo = \"/run/keepalived/steer.fifo\"",
    ),
    opt("track_file", Str, "track_file = \"/run/steer/lan.health\""),
    opt(
        "wans",
        TableList(WAN_FIELDS),
        "wans = [{ wan = \"wan1\", weight = 50, master_only = true }]",
    ),
    opt("all_wans_down", Str, "all_wans_down = \"fault\""),
    opt(
        "conntrackd",
        Str,
        "conntrackd = \"/etc/conntrackd/conntrackd.conf\"",
    ),
    opt_int("step_timeout_ms", Vrrp::DEFAULT_STEP_TIMEOUT_MS),
];

const WAN_FIELDS: &[Field] = &[
    req("wan", Str, "{ wan = \"wan1\" }"),
    opt("weight", Int, "{ wan = \"wan1\", weight = 50 }"),
    opt(
        "master_only",
        Bool,
        "{ wan = \"wan1\", master_only = true }",
    ),
    opt(
        "up_command",
        Str,
        "{ wan = \"wan1\", up_command = \"ifup wan1\", down_command = \"ifdown wan1\" }",
    ),
    opt(
        "down_command",
        Str,
        "{ wan = \"wan1\", up_command = \"ifup wan1\", down_command = \"ifdown wan1\" }",
    ),
];

/// The keys only steer's own speaker uses.
const SPEAKER_KEYS: &[&str] = &[
    "interface",
    "vrid",
    "priority",
    "advert_interval_ms",
    "preempt",
    "preempt_delay_ms",
    "vips",
    "unicast_src",
    "peers",
    "checksum",
    "holder",
];

/// Most virtual addresses in one instance (an IPv6 advert with 64 stays far below any MTU).
pub const MAX_VIPS: usize = 64;

const VRID: Bounds = Bounds {
    lo: 1,
    hi: 255,
    unit: "",
};
const PRIORITY: Bounds = Bounds {
    lo: 1,
    hi: 255,
    unit: "",
};
const INTERVAL: Bounds = Bounds {
    lo: 10,
    hi: 40950,
    unit: "ms",
};
const PREEMPT_DELAY: Bounds = Bounds {
    lo: 0,
    hi: 3_600_000,
    unit: "ms",
};
const WEIGHT: Bounds = Bounds {
    lo: 0,
    hi: 254,
    unit: "",
};
const STEP_TIMEOUT: Bounds = Bounds {
    lo: 10,
    hi: 600_000,
    unit: "ms",
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum EngineKind {
    Steer,
    Keepalived,
}

const ENGINES: Choices<EngineKind> = Choices {
    what: "engine",
    words: &[
        ("steer", EngineKind::Steer),
        ("keepalived", EngineKind::Keepalived),
    ],
};

const CHECKSUMS: Choices<Checksum> = Choices {
    what: "checksum",
    words: &[
        ("pseudo-header", Checksum::PseudoHeader),
        ("plain", Checksum::Plain),
    ],
};

const ALL_WANS_DOWN: Choices<AllWansDown> = Choices {
    what: "all_wans_down",
    words: &[
        ("fault", AllWansDown::Fault),
        ("priority", AllWansDown::Priority),
    ],
};

/// What instances must not share.
struct Taken {
    names: Claims<String, ()>,
    /// (interface, IPv6?, vrid) -> instance.
    routers: Claims<(String, bool, u8), String>,
    /// A virtual address (with its interface when link-local) -> instance.
    vips: Claims<(Option<String>, IpAddr), String>,
}

pub(super) fn build(
    cx: &mut Ctx<'_>,
    raw: Option<S<Vec<S<RawVrrp>>>>,
    wans: &Defined,
) -> Vec<Vrrp> {
    let Some(raw) = raw else { return Vec::new() };
    let mut taken = Taken {
        names: Claims::new(),
        routers: Claims::new(),
        vips: Claims::new(),
    };
    let mut out = Vec::new();
    for (i, v) in raw.into_inner().into_iter().enumerate() {
        let span = v.span();
        let v = v.into_inner();
        let name = v.name.as_ref().map(|n| n.get_ref().as_str());
        let label = item_label("", "vrrp", i, name);
        if cx.mistyped(&label) {
            continue;
        }
        out.push(instance(cx, v, &label, &span, wans, &mut taken));
    }
    out
}

fn instance(
    cx: &mut Ctx<'_>,
    v: RawVrrp,
    label: &str,
    span: &std::ops::Range<usize>,
    wans: &Defined,
    taken: &mut Taken,
) -> Vrrp {
    let f = |k: &str| format!("{label}.{k}");
    if let Some(n) = &v.name {
        check_object_name(cx, n, &f("name"), "VRRP instance", &mut taken.names);
    }
    let name = v
        .name
        .as_ref()
        .map(|n| n.get_ref().clone())
        .unwrap_or_default();
    let kind = check::choice(cx, &v.engine, &f("engine"), &ENGINES, EngineKind::Steer);
    let engine = match kind {
        EngineKind::Steer => Engine::Steer(speaker(cx, &v, label, span, &name, taken)),
        EngineKind::Keepalived => Engine::Keepalived(follow(cx, &v, label, span)),
    };
    let wans = vrrp_wans(cx, &v, label, wans);
    let all_wans_down = check::choice(
        cx,
        &v.all_wans_down,
        &f("all_wans_down"),
        &ALL_WANS_DOWN,
        AllWansDown::Fault,
    );
    let conntrackd = v.conntrackd.as_ref().map(|c| {
        check::absolute(
            cx,
            c,
            &f("conntrackd"),
            "e.g. /etc/conntrackd/conntrackd.conf",
        )
    });
    let step_timeout_ms = check::opt_ranged(
        cx,
        &v.step_timeout_ms,
        &f("step_timeout_ms"),
        STEP_TIMEOUT,
        Vrrp::DEFAULT_STEP_TIMEOUT_MS,
    );
    Vrrp {
        name,
        engine,
        wans,
        all_wans_down,
        conntrackd,
        step_timeout_ms,
    }
}

fn speaker(
    cx: &mut Ctx<'_>,
    v: &RawVrrp,
    label: &str,
    span: &std::ops::Range<usize>,
    name: &str,
    taken: &mut Taken,
) -> Speaker {
    let f = |k: &str| format!("{label}.{k}");
    for (key, written) in [
        ("notify_fifo", &v.notify_fifo),
        ("track_file", &v.track_file),
    ] {
        if let Some(w) = written {
            cx.err(
                &w.span(),
                f(key),
                format!("`{key}` is only for engine = \"keepalived\""),
                "remove it, or set engine = \"keepalived\" to follow keepalived instead of speaking VRRP",
            );
        }
    }
    let interface = match &v.interface {
        Some(i) => {
            if let Some(problem) = ifname_problem(i.get_ref()) {
                cx.err(
                    &i.span(),
                    f("interface"),
                    problem,
                    "use the LAN interface the virtual router lives on, e.g. br-lan",
                );
            }
            i.get_ref().clone()
        }
        None => {
            cx.err_value(
                span,
                f("interface"),
                "",
                "required key `interface` is missing",
                format!("add `interface = \"br-lan\"` to {label}: the link the adverts go on"),
            );
            String::new()
        }
    };
    let vrid = match &v.vrid {
        Some(n) => check::ranged(cx, n, &f("vrid"), VRID, "").unwrap_or(1) as u8,
        None => {
            cx.err_value(
                span,
                f("vrid"),
                "",
                "required key `vrid` is missing",
                format!("add `vrid = 51` to {label}: the virtual router id, 1 to 255, the same on both routers"),
            );
            1
        }
    };
    let priority = check::opt_ranged(
        cx,
        &v.priority,
        &f("priority"),
        PRIORITY,
        u32::from(Vrrp::DEFAULT_PRIORITY),
    ) as u8;
    let advert_interval_cs = advert_interval(cx, &v.advert_interval_ms, &f("advert_interval_ms"));
    let preempt_delay_ms = check::opt_ranged(
        cx,
        &v.preempt_delay_ms,
        &f("preempt_delay_ms"),
        PREEMPT_DELAY,
        0,
    );
    let (vips, vip_places) = vips(
        cx,
        &v.vips,
        (label, span),
        (name, &interface),
        &mut taken.vips,
    );
    let places = Places {
        interface: v.interface.as_ref().map(|i| cx.src.locate(i.span().start)),
        holder: v.holder.as_ref().map(|h| cx.src.locate(h.span().start)),
        vips: vip_places,
    };
    let family_v6 = vips.first().map(|v| v.addr.is_ipv6());
    let unicast_src = v
        .unicast_src
        .as_ref()
        .and_then(|a| unicast_addr(cx, a, &f("unicast_src"), family_v6));
    let peers = peers(cx, &v.peers, label, family_v6, unicast_src);
    if let (Some(src), true) = (&v.unicast_src, peers.is_empty()) {
        cx.err(
            &src.span(),
            f("unicast_src"),
            "`unicast_src` without `peers`",
            "list the other router's address in `peers` (unicast), or remove `unicast_src` (multicast)",
        );
    }
    let checksum = check::choice(
        cx,
        &v.checksum,
        &f("checksum"),
        &CHECKSUMS,
        Checksum::PseudoHeader,
    );
    if let (Some(c), Some(true)) = (&v.checksum, family_v6)
        && checksum == Checksum::Plain
    {
        cx.err(
            &c.span(),
            f("checksum"),
            "IPv6 adverts always carry the checksum with the IPv6 pseudo-header",
            "remove `checksum`: it only chooses between the two IPv4 forms",
        );
    }
    let holder = v.holder.as_ref().map(|h| {
        if let Some(problem) = ifname_problem(h.get_ref()) {
            cx.err(
                &h.span(),
                f("holder"),
                problem,
                "name the interface that holds the routed VIP subnet, e.g. vip0 (a dummy)",
            );
        }
        h.get_ref().clone()
    });
    if let (Some(v6), Some(n)) = (family_v6, &v.vrid)
        && !interface.is_empty()
        && let Err((other, line)) = taken.routers.claim(
            cx,
            (interface.clone(), v6, vrid),
            name.to_owned(),
            &n.span(),
        )
    {
        cx.err(
            &n.span(),
            f("vrid"),
            format!(
                "vrid {vrid} on {interface} ({}) is already instance `{other}` (line {line})",
                if v6 { "IPv6" } else { "IPv4" }
            ),
            "each virtual router on a link needs its own vrid per address family",
        );
    }
    Speaker {
        interface,
        vrid,
        priority,
        advert_interval_cs,
        preempt: v.preempt.as_ref().is_none_or(|p| *p.get_ref()),
        preempt_delay_ms,
        vips,
        unicast_src,
        peers,
        checksum,
        holder,
        places,
    }
}

/// The advert interval in centiseconds: the wire carries centiseconds, so the milliseconds must
/// be a multiple of 10.
fn advert_interval(cx: &mut Ctx<'_>, v: &Option<S<i64>>, field: &str) -> u16 {
    let default = (Vrrp::DEFAULT_ADVERT_INTERVAL_MS / 10) as u16;
    let Some(v) = v else { return default };
    let Some(ms) = check::ranged(cx, v, field, INTERVAL, "") else {
        return default;
    };
    if ms % 10 != 0 {
        cx.err(
            &v.span(),
            field,
            format!("{ms} ms is not a whole number of centiseconds, the unit adverts carry"),
            format!("use a multiple of 10, e.g. {}", ms / 10 * 10),
        );
        return default;
    }
    (ms / 10) as u16
}

fn vips(
    cx: &mut Ctx<'_>,
    list: &Option<Strings>,
    (label, span): (&str, &std::ops::Range<usize>),
    (name, interface): (&str, &str),
    claims: &mut Claims<(Option<String>, IpAddr), String>,
) -> (Vec<Vip>, Vec<(usize, usize)>) {
    let field = format!("{label}.vips");
    let Some(list) = list else {
        cx.err_value(
            span,
            &field,
            "",
            "required key `vips` is missing",
            format!("add the virtual addresses to {label}, e.g. vips = [\"192.168.1.1/24\"]"),
        );
        return (Vec::new(), Vec::new());
    };
    if list.get_ref().is_empty() {
        cx.err(
            &list.span(),
            &field,
            "no virtual address is listed",
            "list the addresses the master holds, e.g. vips = [\"192.168.1.1/24\"]",
        );
    }
    if list.get_ref().len() > MAX_VIPS {
        cx.err(
            &list.span(),
            &field,
            format!(
                "{} virtual addresses; one instance carries at most {MAX_VIPS}",
                list.get_ref().len()
            ),
            "split them over several instances",
        );
    }
    let mut out: Vec<Vip> = Vec::new();
    let mut places = Vec::new();
    let mut seen: HashMap<IpAddr, usize> = HashMap::new();
    for (i, v) in list.get_ref().iter().enumerate() {
        let item = format!("{field}[{i}]");
        if cx.mistyped(&item) {
            continue;
        }
        let Some(vip) = parse_vip(cx, v, &item) else {
            continue;
        };
        if let Some(first) = out.first()
            && first.addr.is_ipv6() != vip.addr.is_ipv6()
        {
            cx.err(
                &v.span(),
                &item,
                "IPv4 and IPv6 virtual addresses in one instance",
                "VRRP runs one instance per address family: put the IPv6 addresses in an instance of their own (its own vrid may be the same)",
            );
            continue;
        }
        if i == 0
            && let IpAddr::V6(a) = vip.addr
            && (a.segments()[0] & 0xffc0) != 0xfe80
        {
            cx.err(
                &v.span(),
                &item,
                "the first virtual address of an IPv6 instance must be link-local (RFC 9568; keepalived complains too)",
                format!("list a link-local address first, e.g. vips = [\"fe80::1/64\", \"{}\"]", v.get_ref()),
            );
        }
        if let Some(j) = seen.insert(vip.addr, i) {
            cx.err(
                &v.span(),
                &item,
                format!("{} is already listed (vips[{j}])", vip.addr),
                "list each address once",
            );
            continue;
        }
        // Each virtual address belongs to one instance (a link-local one, per link): two
        // that hold one would each remove it when leaving MASTER, from under the other.
        let link = match vip.addr {
            IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80 => Some(interface.to_owned()),
            _ => None,
        };
        if let Err((other, line)) = claims.claim(cx, (link, vip.addr), name.to_owned(), &v.span()) {
            cx.err(
                &v.span(),
                &item,
                format!(
                    "{} is already a virtual address of instance `{other}` (line {line})",
                    vip.addr
                ),
                "give each instance addresses of its own: the one leaving MASTER first would \
                 remove a shared one from under the other",
            );
            continue;
        }
        out.push(vip);
        places.push(cx.src.locate(v.span().start));
    }
    (out, places)
}

/// `address[/len]`: a host address, with the prefix length it is added with (the connected
/// subnet; /32 or /128 when left out). Host bits are the point here.
fn parse_vip(cx: &mut Ctx<'_>, v: &S<String>, field: &str) -> Option<Vip> {
    let text = v.get_ref().trim();
    let (addr_text, len_text) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let addr = match parse_addr(addr_text) {
        Ok(a) => a,
        Err(e) => {
            cx.err(&v.span(), field, e.message(), e.hint());
            return None;
        }
    };
    let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = match len_text {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if (1..=max).contains(&n) && !l.starts_with(['0', '+']) => n,
            _ => {
                cx.err(
                    &v.span(),
                    field,
                    format!("`/{l}` is not a prefix length from 1 to {max}"),
                    format!("write the subnet the address is added with, e.g. {addr_text}/24"),
                );
                return None;
            }
        },
    };
    if !is_unicast(addr) || addr.is_loopback() {
        cx.err(
            &v.span(),
            field,
            format!("{addr} cannot be a virtual address"),
            "use a unicast address of the LAN, e.g. 192.168.1.1/24",
        );
        return None;
    }
    Some(Vip { addr, prefix_len })
}

/// A unicast address of the instance's family (`v6`, when known).
fn unicast_addr(cx: &mut Ctx<'_>, v: &S<String>, field: &str, v6: Option<bool>) -> Option<IpAddr> {
    let a = match parse_addr(v.get_ref()) {
        Ok(a) => a,
        Err(e) => {
            cx.err(&v.span(), field, e.message(), e.hint());
            return None;
        }
    };
    if !is_unicast(a) || a.is_loopback() {
        cx.err(
            &v.span(),
            field,
            format!("{a} cannot send or receive unicast adverts"),
            "use a unicast address of the router",
        );
        return None;
    }
    if let Some(v6) = v6
        && a.is_ipv6() != v6
    {
        cx.err(
            &v.span(),
            field,
            format!(
                "{a} is {} but the instance's vips are {}",
                family(a.is_ipv6()),
                family(v6)
            ),
            "adverts travel in the family of the virtual addresses",
        );
        return None;
    }
    Some(a)
}

fn family(v6: bool) -> &'static str {
    if v6 { "IPv6" } else { "IPv4" }
}

fn peers(
    cx: &mut Ctx<'_>,
    list: &Option<Strings>,
    label: &str,
    v6: Option<bool>,
    src: Option<IpAddr>,
) -> Vec<IpAddr> {
    let Some(list) = list else { return Vec::new() };
    let mut out = Vec::new();
    for (i, p) in list.get_ref().iter().enumerate() {
        let field = format!("{label}.peers[{i}]");
        if cx.mistyped(&field) {
            continue;
        }
        let Some(a) = unicast_addr(cx, p, &field, v6) else {
            continue;
        };
        if Some(a) == src || out.contains(&a) {
            cx.err(
                &p.span(),
                &field,
                if Some(a) == src {
                    format!("{a} is this router's own unicast_src")
                } else {
                    format!("{a} is already listed")
                },
                "list each other router once",
            );
            continue;
        }
        out.push(a);
    }
    out
}

fn follow(cx: &mut Ctx<'_>, v: &RawVrrp, label: &str, span: &std::ops::Range<usize>) -> Follow {
    let f = |k: &str| format!("{label}.{k}");
    let spoken = [
        v.interface.as_ref().map(S::span),
        v.vrid.as_ref().map(S::span),
        v.priority.as_ref().map(S::span),
        v.advert_interval_ms.as_ref().map(S::span),
        v.preempt.as_ref().map(S::span),
        v.preempt_delay_ms.as_ref().map(S::span),
        v.vips.as_ref().map(S::span),
        v.unicast_src.as_ref().map(S::span),
        v.peers.as_ref().map(S::span),
        v.checksum.as_ref().map(S::span),
        v.holder.as_ref().map(S::span),
    ];
    for (key, at) in SPEAKER_KEYS.iter().zip(spoken) {
        if let Some(at) = at {
            cx.err(
                &at,
                f(key),
                format!("`{key}` is keepalived's to set with engine = \"keepalived\""),
                "set it in keepalived.conf and remove it here",
            );
        }
    }
    let notify_fifo = match &v.notify_fifo {
        Some(p) => check::absolute(cx, p, &f("notify_fifo"), "e.g. /run/keepalived/steer.fifo"),
        None => {
            cx.err_value(
                span,
                f("notify_fifo"),
                "",
                "engine = \"keepalived\" needs `notify_fifo`",
                "add notify_fifo = \"/run/keepalived/steer.fifo\" and the same path as `notify_fifo` in keepalived's global_defs",
            );
            PathBuf::new()
        }
    };
    let track_file = v
        .track_file
        .as_ref()
        .map(|p| check::absolute(cx, p, &f("track_file"), "e.g. /run/steer/lan.health"));
    Follow {
        notify_fifo,
        track_file,
    }
}

fn vrrp_wans(cx: &mut Ctx<'_>, v: &RawVrrp, label: &str, defined: &Defined) -> Vec<VrrpWan> {
    let Some(list) = &v.wans else {
        return Vec::new();
    };
    let mut out: Vec<VrrpWan> = Vec::new();
    for (j, w) in list.get_ref().iter().enumerate() {
        let w = w.get_ref();
        let wl = format!("{label}.wans[{j}]");
        let Some(name) = &w.wan else { continue };
        check_reference(cx, name, &format!("{wl}.wan"), defined);
        if let Some(k) = out.iter().position(|o| o.wan == *name.get_ref()) {
            cx.err(
                &name.span(),
                format!("{wl}.wan"),
                format!("WAN `{}` is already listed (wans[{k}])", name.get_ref()),
                "list each WAN once",
            );
            continue;
        }
        let command = |c: &Option<S<String>>, key: &str, cx: &mut Ctx<'_>| {
            c.as_ref().map(|c| {
                if c.get_ref().trim().is_empty() {
                    cx.err(
                        &c.span(),
                        format!("{wl}.{key}"),
                        "the command is empty",
                        "write a shell command, or remove the key to set the link state instead",
                    );
                }
                c.get_ref().clone()
            })
        };
        let up_command = command(&w.up_command, "up_command", cx);
        let down_command = command(&w.down_command, "down_command", cx);
        let master_only = w.master_only.as_ref().is_some_and(|m| *m.get_ref());
        for (key, this, other) in [
            ("up_command", &w.up_command, &w.down_command),
            ("down_command", &w.down_command, &w.up_command),
        ] {
            let Some(this) = this else { continue };
            if other.is_none() {
                cx.err(
                    &this.span(),
                    format!("{wl}.{key}"),
                    "up_command and down_command come in pairs",
                    "write both, or neither (steer then sets the interface's link up and down)",
                );
            } else if !master_only {
                cx.err(
                    &this.span(),
                    format!("{wl}.{key}"),
                    "commands only gate a master-only WAN",
                    "add master_only = true, or remove the commands",
                );
            }
        }
        out.push(VrrpWan {
            wan: name.get_ref().clone(),
            weight: check::opt_ranged(cx, &w.weight, &format!("{wl}.weight"), WEIGHT, 0) as u8,
            master_only,
            up_command,
            down_command,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::testing::{BASE, errors_in};

    fn parse(vrrp: &str) -> Vec<Vrrp> {
        let text = format!("{BASE}\n{vrrp}");
        crate::config::parse(&text, Path::new("/nonexistent/steer.toml"))
            .unwrap_or_else(|e| panic!("{e}"))
            .vrrp
    }

    #[test]
    fn an_instance_with_only_the_required_keys_takes_the_defaults() {
        let v = parse(
            "[[vrrp]]\nname = \"lan\"\ninterface = \"br-lan\"\nvrid = 51\nvips = [\"192.168.1.1/24\"]\n",
        );
        let s = v[0].speaker().expect("steer speaks");
        assert_eq!(s.priority, 100);
        assert_eq!(s.advert_interval_cs, 100);
        assert!(s.preempt);
        assert_eq!(s.checksum, Checksum::PseudoHeader);
        assert_eq!(
            s.vips,
            [Vip {
                addr: "192.168.1.1".parse().unwrap(),
                prefix_len: 24
            }]
        );
        assert!(s.peers.is_empty() && s.holder.is_none());
        assert_eq!(v[0].all_wans_down, AllWansDown::Fault);
        assert_eq!(v[0].step_timeout_ms, 2000);
    }

    #[test]
    fn every_mistake_is_located_and_named() {
        let text = format!(
            "{BASE}\n[[vrrp]]\nname = \"lan\"\ninterface = \"br-lan\"\nvrid = 0\npriority = 256\n\
             advert_interval_ms = 15\nvips = [\"192.168.1.1/24\", \"fd00::1/64\", \"192.168.1.1\"]\n\
             unicast_src = \"10.0.0.1\"\nchecksum = \"rfc\"\nwans = [{{ wan = \"wan9\" }}, \
             {{ wan = \"wan1\", up_command = \"ifup\" }}]\nnotify_fifo = \"/x\"\n\
             [[vrrp]]\nname = \"ka\"\nengine = \"keepalived\"\nvrid = 5\n"
        );
        assert_eq!(
            errors_in(&text),
            [
                "vrrp[lan].vrid: 0 is out of range: it must be from 1 to 255",
                "vrrp[lan].priority: 256 is out of range: it must be from 1 to 255",
                "vrrp[lan].advert_interval_ms: 15 ms is not a whole number of centiseconds, the unit adverts carry",
                "vrrp[lan].vips[1]: IPv4 and IPv6 virtual addresses in one instance",
                "vrrp[lan].vips[2]: 192.168.1.1 is already listed (vips[0])",
                "vrrp[lan].unicast_src: `unicast_src` without `peers`",
                "vrrp[lan].checksum: unknown checksum `rfc`",
                "vrrp[lan].wans[0].wan: WAN `wan9` is not defined",
                "vrrp[lan].wans[1].up_command: up_command and down_command come in pairs",
                "vrrp[lan].notify_fifo: `notify_fifo` is only for engine = \"keepalived\"",
                "vrrp[ka].notify_fifo: engine = \"keepalived\" needs `notify_fifo`",
                "vrrp[ka].vrid: `vrid` is keepalived's to set with engine = \"keepalived\"",
            ]
        );
    }

    #[test]
    fn unicast_peers_of_the_instance_family_and_a_holder() {
        let v = parse(
            "[[vrrp]]\nname = \"up\"\ninterface = \"eth0\"\nvrid = 7\nvips = [\"10.99.0.1/24\"]\n\
             unicast_src = \"10.0.1.2\"\npeers = [\"10.0.2.2\"]\nholder = \"vip0\"\nchecksum = \"plain\"\n\
             wans = [{ wan = \"wan1\", weight = 60, master_only = true }]\n",
        );
        let s = v[0].speaker().unwrap();
        assert_eq!(s.peers, ["10.0.2.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(s.vip_interface(), "vip0");
        assert_eq!(s.checksum, Checksum::Plain);
        assert_eq!(
            v[0].wans,
            [VrrpWan {
                wan: "wan1".into(),
                weight: 60,
                master_only: true,
                up_command: None,
                down_command: None
            }]
        );
        let text = format!(
            "{BASE}\n[[vrrp]]\nname = \"up\"\ninterface = \"eth0\"\nvrid = 7\nvips = [\"fe80::1\", \"fd00::1\"]\n\
             peers = [\"10.0.2.2\"]\n[[vrrp]]\nname = \"up2\"\ninterface = \"eth0\"\nvrid = 7\nvips = [\"fe80::2\"]\n"
        );
        assert_eq!(
            errors_in(&text),
            [
                "vrrp[up].peers[0]: 10.0.2.2 is IPv4 but the instance's vips are IPv6",
                "vrrp[up2].vrid: vrid 7 on eth0 (IPv6) is already instance `up` (line 20)",
            ]
        );
    }

    /// Two instances holding one address each removed it when leaving MASTER, from under the
    /// other; a link-local one is the same only on the same link.
    #[test]
    fn a_virtual_address_belongs_to_one_instance() {
        let instance = |name: &str, interface: &str, vrid: u8, vips: &str| {
            format!(
                "[[vrrp]]\nname = \"{name}\"\ninterface = \"{interface}\"\nvrid = {vrid}\n\
                 vips = [{vips}]\n"
            )
        };
        let text = format!(
            "{BASE}\n{}{}{}",
            instance("a", "eth0", 1, "\"192.0.2.1/24\""),
            instance("b", "eth0", 2, "\"192.0.2.1/24\""),
            instance("c", "eth1", 3, "\"fe80::1/64\", \"fd00::1/64\""),
        );
        let errors = errors_in(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "vrrp[b].vips[0]: 192.0.2.1 is already a virtual address of instance `a`"
            ),
            "{errors:?}"
        );
        let other_link = parse(&format!(
            "{}{}",
            instance("c", "eth1", 3, "\"fe80::1/64\""),
            instance("d", "eth0", 3, "\"fe80::1/64\""),
        ));
        assert_eq!(other_link.len(), 2);
    }

    #[test]
    fn a_keepalived_instance_needs_only_its_fifo() {
        let v = parse(
            "[[vrrp]]\nname = \"VI_1\"\nengine = \"keepalived\"\nnotify_fifo = \"/run/k.fifo\"\n\
             track_file = \"/run/steer/VI_1\"\nwans = [{ wan = \"wan1\", master_only = true }]\n",
        );
        assert_eq!(
            v[0].engine,
            Engine::Keepalived(Follow {
                notify_fifo: "/run/k.fifo".into(),
                track_file: Some("/run/steer/VI_1".into()),
            })
        );
        assert_eq!(v[0].base_priority(), 100);
    }
}
