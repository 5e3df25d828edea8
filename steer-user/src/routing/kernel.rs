//! The kernel side: reading links, rules and routes over rtnetlink into plain descriptions,
//! building the messages that add and remove steer's items, and carrying out a plan.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use futures::TryStreamExt;
use netlink_packet_route::{
    AddressFamily,
    link::{
        InfoBridge, InfoData, InfoKind, LinkAttribute, LinkFlags, LinkInfo as LinkInfoAttr,
        LinkLayerType, LinkMessage,
    },
    route::{
        RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope,
        RouteType, RouteVia,
    },
    rule::{RuleAction as NlRuleAction, RuleAttribute, RuleFlags, RuleMessage},
};
use rtnetlink::{Handle, IpVersion};

use super::{
    Change, DefaultRoute, DelegatedRoute, Family, MAIN_TABLE, RTPROT_STEER, ReconcileReport,
    RefusedRoute, RouteSpec, RuleAction, RuleSpec,
};
use crate::{model::LocalKind, prefix::Prefix};

/// The metric the kernel gives a route that does not ask for one.
pub(crate) fn default_metric(family: &Family) -> u32 {
    match family {
        Family::V4 => 0,
        Family::V6 => 1024,
    }
}

/// One interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    /// IFF_LOWER_UP.
    pub carrier: bool,
    /// IFF_UP.
    pub admin_up: bool,
    /// IFF_POINTOPOINT or IFF_NOARP: PPP, WireGuard, a tun device, raw-IP LTE. Its default
    /// route needs no next hop.
    pub point_to_point: bool,
    /// A bridge (a LAN of several ports: br_netfilter may pass its packets through netfilter
    /// before steer's classifier sees them).
    pub bridge: bool,
    /// A bridge whose own `nf_call_iptables` or `nf_call_ip6tables` is on: br_netfilter
    /// passes its packets through netfilter whatever the namespace's sysctls say.
    pub bridge_nf_call: bool,
    /// A PPP device: its link-local IPv6 address comes from IPv6CP, so it says IPv6 is up.
    /// Other point-to-point devices (tun, raw-IP LTE) get one from the kernel whatever the
    /// line carries.
    pub ppp: bool,
    /// The device this one is a port of (IFLA_MASTER): a bridge, or a bond.
    pub master: Option<u32>,
}

impl LinkInfo {
    pub(crate) fn from_message(m: &LinkMessage) -> Option<LinkInfo> {
        let name = m.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })?;
        Some(LinkInfo {
            index: m.header.index,
            name,
            carrier: m.header.flags.contains(LinkFlags::LowerUp),
            admin_up: m.header.flags.contains(LinkFlags::Up),
            point_to_point: m.header.flags.contains(LinkFlags::Pointopoint)
                || m.header.flags.contains(LinkFlags::Noarp),
            ppp: m.header.link_layer_type == LinkLayerType::Ppp,
            master: m.attributes.iter().find_map(|a| match a {
                LinkAttribute::Controller(index) => Some(*index),
                _ => None,
            }),
            bridge: link_infos(m).any(|i| matches!(i, LinkInfoAttr::Kind(InfoKind::Bridge))),
            bridge_nf_call: link_infos(m).any(|i| match i {
                LinkInfoAttr::Data(InfoData::Bridge(options)) => options.iter().any(|o| {
                    matches!(
                        o,
                        InfoBridge::NfCallIpTables(true) | InfoBridge::NfCallIp6Tables(true)
                    )
                }),
                _ => false,
            }),
        })
    }
}

/// The IFLA_LINKINFO parts of a link message.
fn link_infos(m: &LinkMessage) -> impl Iterator<Item = &LinkInfoAttr> {
    m.attributes
        .iter()
        .filter_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => Some(infos),
            _ => None,
        })
        .flatten()
}

/// The interfaces, by name and by index.
#[derive(Debug, Clone, Default)]
pub struct Links {
    by_name: HashMap<String, LinkInfo>,
    names: HashMap<u32, String>,
}

impl Links {
    pub fn insert(&mut self, l: LinkInfo) {
        self.names.insert(l.index, l.name.clone());
        self.by_name.insert(l.name.clone(), l);
    }

    pub fn get(&self, name: &str) -> Option<&LinkInfo> {
        self.by_name.get(name)
    }

    pub(crate) fn name(&self, index: u32) -> Option<&str> {
        self.names.get(&index).map(String::as_str)
    }

    /// The name of interface `index`, or `if#<index>` for one that is gone.
    fn shown(&self, index: u32) -> String {
        self.name(index)
            .map_or_else(|| format!("if#{index}"), str::to_owned)
    }
}

/// A rule as found in the kernel.
#[derive(Debug, Clone)]
pub(crate) struct ActualRule {
    pub family: Family,
    pub protocol: u8,
    pub priority: u32,
    /// The rule as a [`RuleSpec`] when a spec says all there is to it.
    pub spec: Option<RuleSpec>,
    /// `ip rule`-like description.
    pub desc: String,
    /// What it selects and does, to tell whether it takes packets before steer's rules see
    /// them ([`ActualRule::catches`]).
    pub reach: RuleReach,
    pub msg: RuleMessage,
}

/// A rule's selectors and action, as far as they decide which marked packets it takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RuleReach {
    /// `fwmark M/MASK`.
    pub fwmark: Option<(u32, u32)>,
    /// `not ...`.
    pub inverted: bool,
    /// Any selector but the mark (`from`, `to`, `iif`, `oif`, `tos`, others).
    pub other_selectors: bool,
    /// `suppress_prefixlength` or `suppress_ifgroup`: the table's default route is not taken
    /// from it.
    pub suppresses: bool,
    /// `lookup T`.
    pub table: Option<u32>,
    /// The packets it selects end here (`lookup`, `unreachable`, `blackhole`, `prohibit`), not
    /// at a `goto` or `nop`.
    pub terminal: bool,
}

impl ActualRule {
    /// Whether this rule takes (some of) the packets carrying `mark` under `mask`, so that a
    /// later rule for that mark does not see them: a rule for the mark (whatever its other
    /// selectors), or one that takes every packet (`from all lookup T`, but the kernel's
    /// `lookup local` at 0, which only delivers the router's own addresses). A rule that
    /// suppresses its table's default route lets a default through.
    pub(crate) fn catches(&self, mark: u32, mask: u32) -> bool {
        let r = &self.reach;
        if !r.terminal || r.suppresses || mask == 0 {
            return false;
        }
        match r.fwmark {
            Some((m, k)) => ((m ^ mark) & k == 0) != r.inverted,
            None => {
                let kernels_local = self.priority == 0 && r.table == Some(RT_TABLE_LOCAL);
                !(r.inverted || r.other_selectors || kernels_local)
            }
        }
    }
}

/// A route as found in the kernel.
#[derive(Debug, Clone)]
pub(crate) struct ActualRoute {
    pub family: Family,
    pub table: u32,
    pub protocol: u8,
    /// A default route with the default metric: what adding or replacing steer's default route
    /// would collide with.
    pub default_key: bool,
    /// The route as a [`RouteSpec`] when it is exactly one steer could have made (default,
    /// unicast, protocol 201, default metric, nothing else).
    pub spec: Option<RouteSpec>,
    /// RTNH_F_LINKDOWN.
    pub linkdown: bool,
    /// `ip route`-like description.
    pub desc: String,
    pub msg: RouteMessage,
}

/// What the kernel has: every interface, every rule, and the routes steer may own (those of the
/// owned tables and those with protocol 201 anywhere).
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub links: Links,
    pub rules: Vec<ActualRule>,
    pub routes: Vec<ActualRoute>,
}

impl Snapshot {
    pub(crate) async fn read(
        handle: &Handle,
        owned_tables: &[u32],
    ) -> Result<Snapshot, rtnetlink::Error> {
        let mut s = Snapshot::default();
        for l in dump_links(handle).await? {
            s.links.insert(l);
        }
        for family in Family::ALL {
            let version = match family {
                Family::V4 => IpVersion::V4,
                Family::V6 => IpVersion::V6,
            };
            let mut rules = std::pin::pin!(handle.rule().get(version).execute());
            while let Some(m) = rules.try_next().await? {
                if let Some(r) = parse_rule(m) {
                    s.rules.push(r);
                }
            }
        }
        for family in Family::ALL {
            for &table in owned_tables {
                for m in dump_routes(handle, &family, Some(table), None).await? {
                    // Filtered by the kernel already, unless it predates strict checking.
                    if let Some(r) = parse_route(m, &s.links)
                        && r.table == table
                        && r.family == family
                    {
                        s.routes.push(r);
                    }
                }
            }
            for m in dump_routes(handle, &family, None, Some(RTPROT_STEER)).await? {
                if let Some(r) = parse_route(m, &s.links)
                    && r.protocol == RTPROT_STEER
                    && r.family == family
                    && !owned_tables.contains(&r.table)
                {
                    s.routes.push(r);
                }
            }
        }
        Ok(s)
    }
}

/// The routes of one family, filtered by table and protocol (kernel-side with strict checking).
/// A table that does not exist (yet) has no routes.
async fn dump_routes(
    handle: &Handle,
    family: &Family,
    table: Option<u32>,
    protocol: Option<u8>,
) -> Result<Vec<RouteMessage>, rtnetlink::Error> {
    let mut req = RouteMessage::default();
    req.header.address_family = address_family(family);
    if let Some(t) = table {
        req.header.table = u8::try_from(t).unwrap_or(0);
        req.attributes.push(RouteAttribute::Table(t));
    }
    if let Some(p) = protocol {
        req.header.protocol = RouteProtocol::from(p);
    }
    let mut out = Vec::new();
    let mut routes = std::pin::pin!(handle.route().get(req).execute());
    loop {
        match routes.try_next().await {
            Ok(Some(m)) => out.push(m),
            Ok(None) => break,
            Err(e) if errno(&e) == Some(libc::ENOENT) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The local table's id (the router's own addresses).
const RT_TABLE_LOCAL: u32 = 255;

/// What the local and main tables say about destinations reached without a WAN.
#[derive(Debug, Default)]
pub(crate) struct FoundLocal {
    /// Own addresses, connected subnets and every other non-default route of the main table.
    pub local: Vec<(Prefix, LocalKind)>,
    /// The main-table routes among them through a gateway, and the interface each leaves by.
    pub through_gateways: Vec<(Prefix, u32)>,
    /// Reject routes holding delegated IPv6 prefixes.
    pub delegated: Vec<DelegatedRoute>,
    /// The router's own addresses, with the interface (by index) holding each.
    pub addresses: Vec<(u32, IpAddr)>,
    /// The main table's unicast routes but the default, each with the one interface it leaves
    /// by (connected subnets and routes through a gateway; not multipath ones).
    pub routes_out: Vec<(Prefix, u32)>,
    /// The ones among them without a gateway (connected subnets, `dev X scope link` routes, a
    /// point-to-point peer): what is on each interface's link, where the kernel takes a
    /// gateway.
    pub on_link: Vec<(Prefix, u32)>,
}

/// The destinations the router reaches without a WAN, from its local and main tables.
pub(crate) async fn local_routes(handle: &Handle) -> Result<FoundLocal, rtnetlink::Error> {
    let mut found = FoundLocal::default();
    for family in Family::ALL {
        for table in [RT_TABLE_LOCAL, MAIN_TABLE] {
            for m in dump_routes(handle, &family, Some(table), None).await? {
                if table == MAIN_TABLE {
                    found.delegated.extend(delegated_route(&m));
                } else {
                    found.addresses.extend(own_address(&m));
                }
                let Some((prefix, kind)) = local_route(&m, table) else {
                    continue;
                };
                found.local.push((prefix, kind));
                if table == MAIN_TABLE
                    && let Some(oif) = unicast_interface(&m)
                {
                    found.routes_out.push((prefix, oif));
                    if gateway_interface(&m).is_none() {
                        found.on_link.push((prefix, oif));
                    }
                }
                if kind == LocalKind::Route
                    && let Some(oif) = gateway_interface(&m)
                {
                    found.through_gateways.push((prefix, oif));
                }
            }
        }
    }
    Ok(found)
}

/// The address of a local-table route (`local ADDR dev IF`: one a device holds, its
/// link-local IPv6 addresses too) and the interface holding it.
fn own_address(m: &RouteMessage) -> Option<(u32, IpAddr)> {
    let host = match m.header.address_family {
        AddressFamily::Inet => 32,
        _ => 128,
    };
    // A local route of a whole network (AnyIP: `local 203.0.113.0/24 dev X`) is no address.
    if m.header.kind != RouteType::Local || m.header.destination_prefix_length != host {
        return None;
    }
    let index = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(index) => Some(*index),
        _ => None,
    })?;
    let addr = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(d) => route_ip(d),
        _ => None,
    })?;
    Some((index, addr))
}

/// The interface a route through a gateway (one next hop) leaves by; `None` for a device
/// route or a multipath one.
fn gateway_interface(m: &RouteMessage) -> Option<u32> {
    let through_gateway = m
        .attributes
        .iter()
        .any(|a| matches!(a, RouteAttribute::Gateway(_) | RouteAttribute::Via(_)));
    if !through_gateway {
        return None;
    }
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(index) => Some(*index),
        _ => None,
    })
}

/// The interface a unicast route with one next hop leaves by.
fn unicast_interface(m: &RouteMessage) -> Option<u32> {
    if m.header.kind != RouteType::Unicast
        || m.attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::MultiPath(_)))
    {
        return None;
    }
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(index) => Some(*index),
        _ => None,
    })
}

/// A reject route for a global IPv6 prefix of /64 or shorter: a delegated prefix held.
fn delegated_route(m: &RouteMessage) -> Option<DelegatedRoute> {
    let h = &m.header;
    let rejects = matches!(
        h.kind,
        RouteType::Unreachable | RouteType::BlackHole | RouteType::Prohibit
    );
    if !rejects
        || family_of(h.address_family)? != Family::V6
        || h.source_prefix_length != 0
        || !(1..=64).contains(&h.destination_prefix_length)
    {
        return None;
    }
    let mut route = DelegatedRoute {
        prefix: Prefix::truncating(
            m.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(d) => route_ip(d),
                _ => None,
            })?,
            u32::from(h.destination_prefix_length),
        )
        .ok()?,
        protocol: u8::from(h.protocol),
        metric: 0,
    };
    // Global unicast only (2000::/3): not a ULA the router holds for its LAN.
    let Prefix::V6 { addr, .. } = route.prefix else {
        return None;
    };
    if addr.segments()[0] & 0xe000 != 0x2000 {
        return None;
    }
    for a in &m.attributes {
        if let RouteAttribute::Priority(p) = a {
            route.metric = *p;
        }
    }
    Some(route)
}

/// What one route of the local or main table says about local destinations.
fn local_route(m: &RouteMessage, wanted_table: u32) -> Option<(Prefix, LocalKind)> {
    let h = &m.header;
    let table = m
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(h.table));
    if table != wanted_table || h.source_prefix_length != 0 {
        return None;
    }
    let family = family_of(h.address_family)?;
    let dst = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(d) => route_ip(d),
        _ => None,
    });
    let kind = match (table, h.kind) {
        (RT_TABLE_LOCAL, RouteType::Local) => LocalKind::Address,
        (RT_TABLE_LOCAL, _) => return None,
        // The default route is what steering replaces.
        (_, _) if h.destination_prefix_length == 0 => return None,
        (_, RouteType::Unicast) if connected(m, family) => LocalKind::Connected,
        (_, RouteType::Unicast | RouteType::Unreachable | RouteType::BlackHole)
        | (_, RouteType::Prohibit) => LocalKind::Route,
        _ => return None,
    };
    let addr = dst.unwrap_or(match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let prefix = Prefix::truncating(addr, u32::from(h.destination_prefix_length)).ok()?;
    Some((prefix, kind))
}

/// Whether a main-table route is a connected subnet: the one the kernel adds for an address.
/// IPv4 gives it link scope; IPv6 gives every route universe scope, so there it is the
/// kernel's route without a gateway (an address's prefix, `fe80::/64`).
fn connected(m: &RouteMessage, family: Family) -> bool {
    if u8::from(m.header.protocol) != RTPROT_KERNEL {
        return false;
    }
    match family {
        Family::V4 => m.header.scope == RouteScope::Link,
        Family::V6 => !m.attributes.iter().any(|a| {
            matches!(
                a,
                RouteAttribute::Gateway(_) | RouteAttribute::Via(_) | RouteAttribute::MultiPath(_)
            )
        }),
    }
}

/// The default routes outside steer's tables and protocol: what DHCP clients, PPP and router
/// advertisements installed, each with the interface it leaves by.
pub(crate) async fn default_routes(
    handle: &Handle,
    owned_tables: &[u32],
    links: &Links,
) -> Result<Vec<DefaultRoute>, rtnetlink::Error> {
    let mut out = Vec::new();
    for family in Family::ALL {
        for m in dump_routes(handle, &family, None, None).await? {
            if let Some(r) = default_route(&m, links)
                && r.family == family
                && !owned_tables.contains(&r.table)
            {
                out.push(r);
            }
        }
    }
    Ok(out)
}

fn default_route(m: &RouteMessage, links: &Links) -> Option<DefaultRoute> {
    let h = &m.header;
    let protocol = u8::from(h.protocol);
    if h.destination_prefix_length != 0 || h.kind != RouteType::Unicast || protocol == RTPROT_STEER
    {
        return None;
    }
    let mut route = DefaultRoute {
        family: family_of(h.address_family)?,
        interface: String::new(),
        gateway: None,
        table: u32::from(h.table),
        protocol,
        metric: 0,
        source: None,
    };
    let mut oif = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => route.table = *t,
            RouteAttribute::Gateway(g) => route.gateway = route_ip(g),
            RouteAttribute::Via(v) => route.gateway = via_ip(v),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => route.metric = *p,
            RouteAttribute::Source(a) if h.source_prefix_length != 0 => {
                route.source = route_ip(a)
                    .and_then(|a| Prefix::truncating(a, u32::from(h.source_prefix_length)).ok());
            }
            RouteAttribute::MultiPath(hops) => {
                // The first next hop stands for the route.
                if let Some(nh) = hops.first() {
                    oif = Some(nh.interface_index);
                    route.gateway = nh.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(g) => route_ip(g),
                        RouteAttribute::Via(v) => via_ip(v),
                        _ => None,
                    });
                }
            }
            _ => {}
        }
    }
    route.interface = links.name(oif?)?.to_owned();
    Some(route)
}

/// `RTPROT_KERNEL`: routes the kernel adds for an address (connected subnets).
const RTPROT_KERNEL: u8 = 2;

/// Every interface, in one dump.
pub(crate) async fn dump_links(handle: &Handle) -> Result<Vec<LinkInfo>, rtnetlink::Error> {
    let mut out = Vec::new();
    let mut links = std::pin::pin!(handle.link().get().execute());
    while let Some(m) = links.try_next().await? {
        out.extend(LinkInfo::from_message(&m));
    }
    Ok(out)
}

/// The interface called `name`, if there is one.
pub(crate) async fn link_by_name(handle: &Handle, name: &str) -> Option<LinkInfo> {
    let mut links = std::pin::pin!(handle.link().get().match_name(name).execute());
    match links.try_next().await {
        Ok(Some(m)) => LinkInfo::from_message(&m),
        _ => None,
    }
}

fn address_family(family: &Family) -> AddressFamily {
    match family {
        Family::V4 => AddressFamily::Inet,
        Family::V6 => AddressFamily::Inet6,
    }
}

fn family_of(af: AddressFamily) -> Option<Family> {
    match af {
        AddressFamily::Inet => Some(Family::V4),
        AddressFamily::Inet6 => Some(Family::V6),
        _ => None,
    }
}

/// The errno of a netlink error answer.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| c.get().abs()),
        _ => None,
    }
}

/// An error in words: the OS error for a netlink error answer ("Network is down (os error
/// 100)").
pub(crate) fn describe_error(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    }
}

pub(crate) fn protocol_name(p: u8) -> String {
    match p {
        1 => "redirect".into(),
        2 => "kernel".into(),
        3 => "boot".into(),
        4 => "static".into(),
        9 => "ra".into(),
        16 => "dhcp".into(),
        n => n.to_string(),
    }
}

fn prefix(addr: Option<IpAddr>, len: u8, family: &Family) -> String {
    let addr = addr.unwrap_or(match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    format!("{addr}/{len}")
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

fn via_ip(v: &RouteVia) -> Option<IpAddr> {
    match v {
        RouteVia::Inet(a) => Some(IpAddr::V4(*a)),
        RouteVia::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// Reads a rule of the kernel's dump; `None` for families other than IPv4 and IPv6.
pub(crate) fn parse_rule(msg: RuleMessage) -> Option<ActualRule> {
    let family = family_of(msg.header.family)?;
    let h = &msg.header;
    let mut priority = 0;
    let mut fwmark = None;
    let mut mask = None;
    let mut table = u32::from(h.table);
    let mut protocol = 0;
    let mut selectors = String::new();
    let mut other = false;
    if h.flags.contains(RuleFlags::Invert) {
        selectors.push_str(" not");
    }
    let (mut src, mut dst) = (None, None);
    let mut suppress = None;
    let mut suppresses_ifgroup = false;
    for a in &msg.attributes {
        match a {
            RuleAttribute::Priority(p) => priority = *p,
            RuleAttribute::FwMark(m) => fwmark = Some(*m),
            RuleAttribute::FwMask(m) => mask = Some(*m),
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::Protocol(p) => protocol = u8::from(*p),
            RuleAttribute::Source(a) => src = Some(*a),
            RuleAttribute::Destination(a) => dst = Some(*a),
            RuleAttribute::Iifname(n) => {
                let _ = write!(selectors, " iif {n}");
            }
            RuleAttribute::Oifname(n) => {
                let _ = write!(selectors, " oif {n}");
            }
            RuleAttribute::L3MDev(false) => {}
            // The kernel reports "no suppression" as -1.
            RuleAttribute::SuppressPrefixLen(u32::MAX)
            | RuleAttribute::SuppressIfGroup(u32::MAX)
            | RuleAttribute::Goto(_) => {}
            RuleAttribute::SuppressPrefixLen(n) => suppress = u8::try_from(*n).ok(),
            // Not one of steer's forms either (`other`).
            RuleAttribute::SuppressIfGroup(_) => {
                suppresses_ifgroup = true;
                other = true;
            }
            _ => other = true,
        }
    }
    let mut desc = format!("rule {priority}");
    if h.src_len > 0 || src.is_some() {
        let _ = write!(desc, " from {}", prefix(src, h.src_len, &family));
    }
    if h.dst_len > 0 || dst.is_some() {
        let _ = write!(desc, " to {}", prefix(dst, h.dst_len, &family));
    }
    desc.push_str(&selectors);
    if h.tos != 0 {
        let _ = write!(desc, " tos {:#x}", h.tos);
    }
    if let Some(m) = fwmark {
        let _ = write!(desc, " fwmark {m:#x}/{:#x}", mask.unwrap_or(u32::MAX));
    }
    if other {
        desc.push_str(" (and other selectors)");
    }
    let action = match h.action {
        NlRuleAction::ToTable => {
            let _ = write!(desc, " lookup {table}");
            Some(RuleAction::Lookup(table))
        }
        NlRuleAction::Unreachable => {
            desc.push_str(" unreachable");
            Some(RuleAction::Unreachable)
        }
        NlRuleAction::Blackhole => {
            desc.push_str(" blackhole");
            Some(RuleAction::Blackhole)
        }
        NlRuleAction::Prohibit => {
            desc.push_str(" prohibit");
            None
        }
        NlRuleAction::Goto => {
            let target = msg.attributes.iter().find_map(|a| match a {
                RuleAttribute::Goto(g) => Some(*g),
                _ => None,
            });
            let _ = write!(desc, " goto {}", target.unwrap_or(0));
            None
        }
        NlRuleAction::Nop => {
            desc.push_str(" nop");
            None
        }
        a => {
            let _ = write!(desc, " action {}", u8::from(a));
            None
        }
    };
    // After the action, as `ip rule` prints it and as steer describes the rules it places: a
    // rule changed from one form to the other reads the same in both.
    if let Some(n) = suppress {
        let _ = write!(desc, " suppress_prefixlength {n}");
    }
    if protocol != RTPROT_STEER {
        let _ = write!(desc, " proto {}", protocol_name(protocol));
    }
    let _ = write!(desc, " ({family})");
    let from = src
        .filter(|_| h.src_len > 0)
        .and_then(|a| Prefix::new(a, u32::from(h.src_len)).ok());
    let plain = selectors.is_empty()
        && !other
        && h.dst_len == 0
        && dst.is_none()
        && h.tos == 0
        && (h.src_len == 0 || from.is_some());
    // A rule with no selector at all is someone else's catch-all, never one of steer's.
    let selected = fwmark.is_some() || from.is_some() || suppress.is_some();
    let spec = match action {
        Some(action) if plain && selected => Some(RuleSpec {
            family,
            priority,
            fwmark: fwmark.unwrap_or(0),
            mask: mask.unwrap_or(if fwmark.is_some() { u32::MAX } else { 0 }),
            from,
            action,
            suppress_prefixlength: suppress,
        }),
        _ => None,
    };
    let reach = RuleReach {
        fwmark: fwmark.map(|m| (m, mask.unwrap_or(u32::MAX))),
        inverted: h.flags.contains(RuleFlags::Invert),
        other_selectors: !selectors.trim_start_matches(" not").is_empty()
            || other
            || h.src_len > 0
            || h.dst_len > 0
            || h.tos != 0,
        suppresses: suppress.is_some() || suppresses_ifgroup,
        table: matches!(h.action, NlRuleAction::ToTable).then_some(table),
        terminal: matches!(
            h.action,
            NlRuleAction::ToTable
                | NlRuleAction::Unreachable
                | NlRuleAction::Blackhole
                | NlRuleAction::Prohibit
        ),
    };
    Some(ActualRule {
        family,
        protocol,
        priority,
        spec,
        desc,
        reach,
        msg,
    })
}

/// Reads a route of the kernel's dump; `None` for families other than IPv4 and IPv6.
pub(crate) fn parse_route(msg: RouteMessage, links: &Links) -> Option<ActualRoute> {
    let family = family_of(msg.header.address_family)?;
    let h = &msg.header;
    let mut table = u32::from(h.table);
    let mut gateway = None;
    let mut oif = None;
    let mut metric = 0;
    let (mut dst, mut src, mut prefsrc) = (None, None, None);
    let mut nexthops = Vec::new();
    let mut other = false;
    for a in &msg.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Gateway(g) => gateway = route_ip(g),
            RouteAttribute::Via(v) => gateway = via_ip(v),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Source(s) => src = route_ip(s),
            RouteAttribute::PrefSource(s) => prefsrc = route_ip(s),
            RouteAttribute::MultiPath(hops) => {
                nexthops = hops
                    .iter()
                    .map(|nh| {
                        let gw = nh.attributes.iter().find_map(|a| match a {
                            RouteAttribute::Gateway(g) => route_ip(g),
                            RouteAttribute::Via(v) => via_ip(v),
                            _ => None,
                        });
                        (gw, nh.interface_index)
                    })
                    .collect();
            }
            RouteAttribute::Metrics(m) if m.is_empty() => {}
            RouteAttribute::Metrics(_)
            | RouteAttribute::NhId(_)
            | RouteAttribute::Encap(_)
            | RouteAttribute::EncapType(_)
            | RouteAttribute::Iif(_)
            | RouteAttribute::Mark(_) => other = true,
            _ => {}
        }
    }
    let protocol = u8::from(h.protocol);
    let linkdown = h.flags.contains(RouteFlags::Linkdown);
    let is_default = h.destination_prefix_length == 0 && h.source_prefix_length == 0 && h.tos == 0;
    let default_key = is_default && metric == default_metric(&family);

    let mut desc = String::from("route ");
    match h.kind {
        RouteType::Unicast => {}
        RouteType::Unreachable => desc.push_str("unreachable "),
        RouteType::BlackHole => desc.push_str("blackhole "),
        RouteType::Prohibit => desc.push_str("prohibit "),
        RouteType::Throw => desc.push_str("throw "),
        RouteType::Local => desc.push_str("local "),
        RouteType::Broadcast => desc.push_str("broadcast "),
        RouteType::Anycast => desc.push_str("anycast "),
        RouteType::Multicast => desc.push_str("multicast "),
        k => {
            let _ = write!(desc, "type {} ", u8::from(k));
        }
    }
    if h.destination_prefix_length == 0 {
        desc.push_str("default");
    } else {
        desc.push_str(&prefix(dst, h.destination_prefix_length, &family));
    }
    if h.source_prefix_length > 0 {
        let _ = write!(
            desc,
            " from {}",
            prefix(src, h.source_prefix_length, &family)
        );
    }
    if h.tos != 0 {
        let _ = write!(desc, " tos {:#x}", h.tos);
    }
    if let Some(gw) = gateway {
        let _ = write!(desc, " via {gw}");
    }
    if let Some(i) = oif {
        let _ = write!(desc, " dev {}", links.shown(i));
    }
    for (gw, i) in &nexthops {
        desc.push_str(" nexthop");
        if let Some(gw) = gw {
            let _ = write!(desc, " via {gw}");
        }
        let _ = write!(desc, " dev {}", links.shown(*i));
    }
    let scope_ok = match (&family, h.scope) {
        (Family::V6, _) => true,
        (Family::V4, RouteScope::Universe) => gateway.is_some(),
        (Family::V4, RouteScope::Link) => gateway.is_none(),
        _ => false,
    };
    match h.scope {
        RouteScope::Universe => {}
        RouteScope::Link => desc.push_str(" scope link"),
        RouteScope::Host => desc.push_str(" scope host"),
        RouteScope::Site => desc.push_str(" scope site"),
        s => {
            let _ = write!(desc, " scope {}", u8::from(s));
        }
    }
    let _ = write!(desc, " table {table}");
    if protocol != RTPROT_STEER {
        let _ = write!(desc, " proto {}", protocol_name(protocol));
    }
    if metric != default_metric(&family) {
        let _ = write!(desc, " metric {metric}");
    }
    if let Some(s) = prefsrc {
        let _ = write!(desc, " src {s}");
    }
    if linkdown {
        desc.push_str(" linkdown");
    }
    if other {
        desc.push_str(" (and other attributes)");
    }
    let _ = write!(desc, " ({family})");

    let interface = oif.and_then(|i| links.name(i)).map(str::to_owned);
    let plain = default_key
        && h.kind == RouteType::Unicast
        && protocol == RTPROT_STEER
        && scope_ok
        && nexthops.is_empty()
        && prefsrc.is_none()
        && !other;
    let spec = match interface {
        Some(interface) if plain => Some(RouteSpec {
            family,
            table,
            gateway,
            interface,
        }),
        _ => None,
    };
    Some(ActualRoute {
        family,
        table,
        protocol,
        default_key,
        spec,
        linkdown,
        desc,
        msg,
    })
}

/// The message that adds rule `spec` with protocol 201.
fn rule_message(spec: &RuleSpec) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = address_family(&spec.family);
    match spec.action {
        RuleAction::Lookup(t) => {
            m.header.action = NlRuleAction::ToTable;
            m.header.table = u8::try_from(t).unwrap_or(0);
            m.attributes.push(RuleAttribute::Table(t));
        }
        RuleAction::Unreachable => m.header.action = NlRuleAction::Unreachable,
        RuleAction::Blackhole => m.header.action = NlRuleAction::Blackhole,
    }
    m.attributes.push(RuleAttribute::Priority(spec.priority));
    if spec.fwmark != 0 || spec.mask != 0 {
        m.attributes.push(RuleAttribute::FwMark(spec.fwmark));
        m.attributes.push(RuleAttribute::FwMask(spec.mask));
    }
    if let Some(from) = spec.from {
        m.header.src_len = from.len();
        m.attributes.push(RuleAttribute::Source(from.addr()));
    }
    if let Some(n) = spec.suppress_prefixlength {
        m.attributes
            .push(RuleAttribute::SuppressPrefixLen(u32::from(n)));
    }
    m.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::from(RTPROT_STEER)));
    m
}

/// The message that adds route `spec` through interface `oif` with protocol 201.
fn route_message(spec: &RouteSpec, oif: u32) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = address_family(&spec.family);
    m.header.table = u8::try_from(spec.table).unwrap_or(0);
    m.header.protocol = RouteProtocol::from(RTPROT_STEER);
    m.header.kind = RouteType::Unicast;
    m.header.scope = match (&spec.family, spec.gateway) {
        (Family::V4, None) => RouteScope::Link,
        _ => RouteScope::Universe,
    };
    m.attributes.push(RouteAttribute::Table(spec.table));
    m.attributes.push(RouteAttribute::Oif(oif));
    if let Some(gw) = spec.gateway {
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    }
    m
}

/// One change to make.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    AddRule(RuleSpec),
    DelRule(Box<RuleMessage>),
    /// Add (`replace: false`, fails if a route with the same key exists) or replace in place.
    AddRoute {
        spec: RouteSpec,
        replace: bool,
    },
    /// Replace steer's own `old` (another gateway or interface) with `spec` in place; when the
    /// kernel refuses `spec`, delete `old` all the same: a route steer no longer wants (to an
    /// interface that may not be this WAN's any more) is worse than none, with which the WAN's
    /// marked packets fall through to the main table's rules.
    ReplaceOwnRoute {
        old: Box<RouteMessage>,
        /// `old` as reports name it.
        old_desc: String,
        spec: RouteSpec,
    },
    /// Delete `old` (the same route, but stale in the kernel) and add `spec` afresh.
    RecreateRoute {
        old: Box<RouteMessage>,
        spec: RouteSpec,
    },
    DelRoute(Box<RouteMessage>),
}

/// A change and how to report it.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub op: Op,
    /// The item, as failures name it.
    pub item: String,
    /// The report line when it worked (`None`: part of a change reported by another step).
    pub change: Option<Change>,
    /// Failures end with [`RETRYING`]: the daemon reconciles again then.
    pub retry: bool,
    /// The route that is not steer's that this step removes or replaces, as its description
    /// (in the report's `taken` once done).
    pub taken: Option<String>,
}

/// How a failure that is tried again ends: every link or address event reconciles, and so does
/// the daemon's periodic check.
pub(crate) const RETRYING: &str = "; retrying on the next link or address event and at every \
                                   periodic check";

/// Routes that could not be placed because their interface is set down (the
/// kernel removes a downed link's routes and refuses new ones): that is said once, as a route
/// that waits, not as a failure, and the route is not tried again (not at the periodic check
/// either) until its interface changes (comes up, gains carrier, is created again).
#[derive(Debug, Clone, Default)]
pub(crate) struct Waits {
    /// By item (the route as reports name it): its interface's state when it was refused.
    routes: HashMap<String, LinkState>,
}

/// What decides whether a route through a link can be placed: its index (a device created
/// again), admin state and carrier.
type LinkState = (u32, bool, bool);

fn link_state(l: &LinkInfo) -> LinkState {
    (l.index, l.admin_up, l.carrier)
}

impl Waits {
    /// Whether the route `item` through `link` was refused for `link`'s state, and that state
    /// has not changed since.
    fn still(&self, item: &str, link: &LinkInfo) -> bool {
        self.routes.get(item) == Some(&link_state(link))
    }

    /// Whether route `item` waits for its interface.
    pub(crate) fn waits(&self, item: &str) -> bool {
        self.routes.contains_key(item)
    }
}

/// Carries out `steps` in order; one failing does not stop the others. A route that cannot
/// be placed because its interface is set down waits ([`Waits`]): reported once
/// in `waiting`, then skipped until that interface changes.
pub(crate) async fn execute(
    handle: &Handle,
    links: &Links,
    steps: Vec<Step>,
    waits: &mut Waits,
) -> ReconcileReport {
    let mut report = ReconcileReport::default();
    // Routes no longer in a plan (placed by someone else, no longer wanted) wait no more.
    let mut planned = HashSet::new();
    for step in steps {
        let route = match &step.op {
            Op::AddRoute { spec, .. }
            | Op::RecreateRoute { spec, .. }
            | Op::ReplaceOwnRoute { spec, .. } => Some(spec),
            _ => None,
        };
        let link = route.and_then(|spec| links.get(&spec.interface));
        if route.is_some() {
            planned.insert(step.item.clone());
        }
        if link.is_some_and(|l| waits.still(&step.item, l)) {
            continue;
        }
        match run(handle, links, &step.op).await {
            Ok(()) => {
                waits.routes.remove(&step.item);
                report.changes.extend(step.change);
                report.taken.extend(step.taken);
            }
            Err(failed) => {
                // Only a link set down refuses every route; one without carrier takes them
                // (linkdown), so a failure there has another cause and is retried as such.
                if let Some(link) = link.filter(|l| !l.admin_up) {
                    report.waiting.push(format!(
                        "{} waits for {} to come up ({} is down; the kernel said: {}): placed \
                         when it does",
                        step.item, link.name, link.name, failed.why
                    ));
                    waits.routes.insert(step.item.clone(), link_state(link));
                    continue;
                }
                waits.routes.remove(&step.item);
                let mut line = format!("failed: {}: {}", step.item, failed.why);
                if step.retry {
                    line.push_str(RETRYING);
                }
                report.failures.push(line);
                if let Op::AddRoute { spec, .. }
                | Op::RecreateRoute { spec, .. }
                | Op::ReplaceOwnRoute { spec, .. } = step.op
                {
                    report.refused_routes.push(RefusedRoute {
                        spec,
                        errno: failed.errno,
                        why: failed.why,
                    });
                }
            }
        }
    }
    waits.routes.retain(|item, _| planned.contains(item));
    report
}

/// Why a change failed: in words, and the kernel's error number when it answered.
struct Failed {
    why: String,
    errno: Option<i32>,
}

impl From<rtnetlink::Error> for Failed {
    fn from(e: rtnetlink::Error) -> Failed {
        Failed {
            why: describe_error(&e),
            errno: errno(&e),
        }
    }
}

async fn run(handle: &Handle, links: &Links, op: &Op) -> Result<(), Failed> {
    match op {
        Op::AddRule(spec) => {
            let mut req = handle.rule().add();
            *req.message_mut() = rule_message(spec);
            Ok(req.execute().await?)
        }
        Op::DelRule(msg) => gone_is_fine(handle.rule().del((**msg).clone()).execute().await),
        Op::AddRoute { spec, replace } => add_route(handle, links, spec, *replace).await,
        Op::RecreateRoute { old, spec } => {
            gone_is_fine(handle.route().del(sanitized(old)).execute().await)?;
            add_route(handle, links, spec, false).await
        }
        Op::ReplaceOwnRoute {
            old,
            old_desc,
            spec,
        } => {
            let Err(mut refused) = add_route(handle, links, spec, true).await else {
                return Ok(());
            };
            refused.why = match gone_is_fine(handle.route().del(sanitized(old)).execute().await) {
                Ok(()) => format!(
                    "{}; the route it was to replace, {old_desc}, was removed rather than \
                     kept (steer no longer wants it)",
                    refused.why
                ),
                Err(e) => format!(
                    "{}; removing the route it was to replace, {old_desc}, failed too: {}",
                    refused.why, e.why
                ),
            };
            Err(refused)
        }
        Op::DelRoute(msg) => gone_is_fine(handle.route().del(sanitized(msg)).execute().await),
    }
}

async fn add_route(
    handle: &Handle,
    links: &Links,
    spec: &RouteSpec,
    replace: bool,
) -> Result<(), Failed> {
    let Some(link) = links.get(&spec.interface) else {
        return Err(Failed {
            why: format!("interface {} does not exist", spec.interface),
            errno: None,
        });
    };
    let mut req = handle.route().add(route_message(spec, link.index));
    if replace {
        req = req.replace();
    }
    Ok(req.execute().await?)
}

/// A dumped route ready to be sent back as a deletion: only the flags a request may carry.
fn sanitized(msg: &RouteMessage) -> RouteMessage {
    let mut m = msg.clone();
    m.header.flags &= RouteFlags::Onlink;
    m
}

/// A deletion of something that is already gone did its job.
fn gone_is_fine(r: Result<(), rtnetlink::Error>) -> Result<(), Failed> {
    match r {
        Err(e) if matches!(errno(&e), Some(libc::ESRCH | libc::ENOENT)) => Ok(()),
        other => Ok(other?),
    }
}
