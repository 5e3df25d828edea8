//! Where each WAN's default route of each family goes: the configured next hop, or with
//! `"auto"` what the system says — a gateway handed in by a DHCP client hook (`steer wan NAME
//! gateway ADDR`), none on a point-to-point link that has an address of the family, else the
//! default route that the DHCP client, pppd or the kernel's router-advertisement handling
//! installed through the WAN's interface.
//! Pure: the controller reads the system and calls [`resolve`] after every routing change.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
};

use crate::{
    config::{NextHop, Wan},
    model::Family,
    routing::{DefaultRoute, Gateway, MAIN_TABLE, SystemView},
};

/// Gateways handed in from outside (`steer wan NAME gateway ADDR`), by WAN and family. They
/// last until changed or the daemon stops: a DHCP client hook sets them again on every lease.
pub type Hooked = BTreeMap<(String, Family), IpAddr>;

/// A WAN family's next hop, or why there is none yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// `None`: waiting for a gateway (the family carries nothing until one is known).
    pub gateway: Option<Gateway>,
    /// Where it came from, or what it waits for, in words.
    pub source: String,
}

impl Resolved {
    fn known(gateway: Gateway, source: impl Into<String>) -> Resolved {
        Resolved {
            gateway: Some(gateway),
            source: source.into(),
        }
    }

    fn waiting(why: impl Into<String>) -> Resolved {
        Resolved {
            gateway: None,
            source: why.into(),
        }
    }

    /// "via 100.64.1.1 (learned: table main, proto dhcp)", "waiting for a gateway: ...".
    pub fn describe(&self) -> String {
        match self.gateway {
            Some(Gateway::Via(a)) => format!("via {a} ({})", self.source),
            Some(Gateway::Direct) => format!("direct ({})", self.source),
            None => format!("waiting for a gateway: {}", self.source),
        }
    }
}

/// The next hop of `family` of `wan`.
pub fn resolve(wan: &Wan, family: Family, system: &SystemView, hooked: &Hooked) -> Resolved {
    // No interface, no route through it: a PPP session that is down, a modem unplugged.
    let Some(link) = system.links.get(&wan.interface) else {
        return Resolved::waiting(format!("interface {} does not exist", wan.interface));
    };
    match wan.next_hop(family) {
        NextHop::Via(a) => return Resolved::known(Gateway::Via(a), "configured"),
        NextHop::Direct => return Resolved::known(Gateway::Direct, "configured: none"),
        NextHop::Auto => {}
    }
    if let Some(a) = hooked.get(&(wan.name.clone(), family)) {
        return Resolved::known(
            Gateway::Via(*a),
            format!("set by `steer wan {} gateway`", wan.name),
        );
    }
    if link.point_to_point {
        // A point-to-point link carries only the families it has addresses of: a 6in4 or
        // WireGuard tunnel for IPv6 alone, a PPP session whose IPv6CP did not come up. A route
        // into it for another family would black-hole that family's traffic.
        if !system.has_address(link.index, family, link.ppp) {
            return Resolved::waiting(format!(
                "the point-to-point link {} has no {} address, so it carries no {}",
                wan.interface,
                family.name(),
                family.name()
            ));
        }
        return Resolved::known(Gateway::Direct, "point-to-point link");
    }
    match best_default(system, &wan.interface, family) {
        Some(r) => {
            let gateway = r.gateway.map_or(Gateway::Direct, Gateway::Via);
            Resolved::known(gateway, format!("learned: {}", r.origin()))
        }
        None => Resolved::waiting(format!(
            "no {} default route through {} yet (DHCP, PPP or router advertisements install one)",
            family.name(),
            wan.interface
        )),
    }
}

/// The gateway of the main table's default route through `interface` (what a DHCP client, PPP
/// or a router advertisement installs), if it has one.
pub(crate) fn main_table_gateway(
    system: &SystemView,
    interface: &str,
    family: Family,
) -> Option<IpAddr> {
    best_default(system, interface, family)
        .filter(|r| r.table == MAIN_TABLE)?
        .gateway
}

/// The default route through `interface` the system prefers: the main table's first, one for
/// every source before a source-specific one, then the lowest metric.
fn best_default<'v>(
    system: &'v SystemView,
    interface: &str,
    family: Family,
) -> Option<&'v DefaultRoute> {
    system
        .defaults
        .iter()
        .filter(|r| r.family == family && r.interface == interface)
        .min_by_key(|r| (r.table != MAIN_TABLE, r.source.is_some(), r.metric))
}

/// A configured gateway (`gateway`, `gateway6`) the WAN's table cannot take: what `steer wan
/// NAME gateway` refuses of one handed in. Checked at start and at every reload before anything
/// is written: the kernel would refuse the route (and steer retry it on every event), or take
/// it and send the WAN's traffic to the router itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{file}{place}: wan[{wan}].{field} = \"{gateway}\": {why}; give the ISP's router on \
     {interface}'s link (the lease's `router`), or \"auto\" to learn it. Nothing was changed",
    file = file.display()
)]
pub struct BadGateway {
    pub file: PathBuf,
    /// ":line" of the field in `file` ("" when not found).
    pub place: String,
    pub wan: String,
    /// `gateway` or `gateway6`.
    pub field: &'static str,
    pub gateway: IpAddr,
    pub interface: String,
    pub why: String,
}

impl BadGateway {
    /// What a start says of it: a start is not refused for the system as it is at boot (a
    /// modem's address before it syncs, a renumbered line): the other WANs must fail over.
    pub fn at_start(&self) -> String {
        format!(
            "{}{}: wan[{}].{} = \"{}\": {}; steer starts all the same, and this WAN's route is \
             retried at every link or address change: give the ISP's router on {}'s link (the \
             lease's `router`), or \"auto\" to learn it, and run `steer reload`",
            self.file.display(),
            self.place,
            self.wan,
            self.field,
            self.gateway,
            self.why,
            self.interface
        )
    }
}

/// Every configured gateway that is refused, refused together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct BadGateways(pub Vec<BadGateway>);

/// The configured gateways of `wans` that `system` shows the WAN's table cannot take: an
/// address of this router, a connected subnet's network or broadcast address, or (on a link
/// that is up and holds an address of the family, so its subnets are known) an address off the
/// link. A WAN whose interface is missing, down or without an address yet is not judged: its
/// route goes in when the link comes, as for a handed-in gateway. `text` is the configuration
/// file's, to name the line.
pub fn configured_faults(
    file: &Path,
    text: Option<&str>,
    wans: &[Wan],
    system: &SystemView,
) -> Vec<BadGateway> {
    let local = super::local::Found::new(system, wans);
    let mut out = Vec::new();
    for wan in wans {
        for (family, field) in [(Family::V4, "gateway"), (Family::V6, "gateway6")] {
            let NextHop::Via(a) = wan.next_hop(family) else {
                continue;
            };
            let Some(why) = fault(wan, a, family, system, &local) else {
                continue;
            };
            out.push(BadGateway {
                file: file.to_path_buf(),
                place: text
                    .and_then(|t| line_of(t, &wan.name, field, a))
                    .map_or(String::new(), |l| format!(":{l}")),
                wan: wan.name.clone(),
                field,
                gateway: a,
                interface: wan.interface.clone(),
                why,
            });
        }
    }
    out
}

/// Whether `a` is the router's own address where `wan`'s route would use it. A link-local
/// address belongs to one link: the router holding fe80::1 on its LAN (a VRRP VIP, often)
/// does not make the ISP's fe80::1 on the WAN its own.
pub fn is_own_next_hop(
    wan: &Wan,
    a: IpAddr,
    system: &SystemView,
    local: &super::local::Found,
) -> bool {
    if matches!(a, IpAddr::V6(v6) if v6.is_unicast_link_local()) {
        let link = system.links.get(&wan.interface).map(|l| l.index);
        return system
            .addresses
            .iter()
            .any(|(index, own)| *own == a && Some(*index) == link);
    }
    local.is_own_address(a) || system.addresses.iter().any(|(_, own)| *own == a)
}

/// Why `a` cannot be `wan`'s `family` next hop, if `system` shows it cannot.
fn fault(
    wan: &Wan,
    a: IpAddr,
    family: Family,
    system: &SystemView,
    local: &super::local::Found,
) -> Option<String> {
    if is_own_next_hop(wan, a, system, local) {
        return Some(format!(
            "{a} is an address of this router, not the next hop of {}: the WAN's traffic would \
             be sent to the router itself",
            wan.name
        ));
    }
    if let Some(subnet) = local.subnet_edge_of(a) {
        return Some(format!(
            "{a} is the network or broadcast address of {subnet}, not a host"
        ));
    }
    // A link-local IPv6 next hop is on every link.
    if matches!(a, IpAddr::V6(v6) if v6.is_unicast_link_local()) {
        return None;
    }
    let link = system.links.get(&wan.interface)?;
    if !link.admin_up || !system.has_address(link.index, family, false) {
        return None;
    }
    let subnets: Vec<String> = system
        .on_link
        .iter()
        .filter(|(p, oif)| *oif == link.index && Family::of(&p.addr()) == family)
        .map(|(p, _)| p.to_string())
        .collect();
    let on_link = system
        .on_link
        .iter()
        .any(|(p, oif)| *oif == link.index && p.contains(a));
    (!on_link).then(|| {
        format!(
            "{a} is not on the link of {} (its interface {} reaches {} directly), so the kernel \
             refuses a route via it",
            wan.name,
            wan.interface,
            if subnets.is_empty() {
                "no subnet".to_owned()
            } else {
                subnets.join(", ")
            }
        )
    })
}

/// The line (1-based) of `field = "a"` in the `[[wan]]` table named `wan` of the
/// configuration's `text`; failing that, of the only such line in any table.
fn line_of(text: &str, wan: &str, field: &str, a: IpAddr) -> Option<usize> {
    let value = |line: &str, key: &str| -> Option<String> {
        let (k, v) = line.split_once('=')?;
        if k.trim() != key {
            return None;
        }
        let v = v.split('#').next()?.trim();
        Some(v.trim_matches(|c| c == '"' || c == '\'').to_owned())
    };
    // Per table: its name, and the line of the field holding `a`.
    let mut tables: Vec<(Option<String>, Option<usize>)> = vec![(None, None)];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            tables.push((None, None));
            continue;
        }
        let Some(table) = tables.last_mut() else {
            continue;
        };
        if let Some(name) = value(line, "name") {
            table.0 = Some(name);
        } else if value(line, field).and_then(|v| v.parse::<IpAddr>().ok()) == Some(a) {
            table.1 = Some(i + 1);
        }
    }
    let named = tables
        .iter()
        .find(|(name, line)| name.as_deref() == Some(wan) && line.is_some());
    if let Some((_, line)) = named {
        return *line;
    }
    let mut any = tables.iter().filter_map(|(_, line)| *line);
    let first = any.next();
    first.filter(|_| any.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::LinkInfo;

    fn wan(gateway: NextHop, gateway6: NextHop) -> Wan {
        Wan {
            gateway,
            gateway6,
            ..crate::config::testing::wan("wan1", "eth1")
        }
    }

    fn view(point_to_point: bool, defaults: Vec<DefaultRoute>) -> SystemView {
        let mut v = SystemView {
            defaults,
            ..SystemView::default()
        };
        v.links.insert(LinkInfo {
            index: 7,
            name: "eth1".into(),
            carrier: true,
            admin_up: true,
            point_to_point,
            bridge: false,
            bridge_nf_call: false,
            ppp: false,
            master: None,
        });
        v
    }

    fn default(family: Family, gw: &str, table: u32, metric: u32) -> DefaultRoute {
        DefaultRoute {
            family,
            interface: "eth1".into(),
            gateway: Some(gw.parse().unwrap()),
            table,
            protocol: 16,
            metric,
            source: None,
        }
    }

    #[test]
    fn auto_learns_the_main_tables_default_route_through_the_interface() {
        let w = wan(NextHop::Auto, NextHop::Auto);
        let v = view(
            false,
            vec![
                default(Family::V4, "100.64.9.1", 100, 0),
                default(Family::V4, "100.64.1.1", 254, 10),
                default(Family::V6, "fe80::1", 254, 1024),
            ],
        );
        let r = resolve(&w, Family::V4, &v, &Hooked::new());
        assert_eq!(r.gateway, Some(Gateway::Via("100.64.1.1".parse().unwrap())));
        assert_eq!(
            r.describe(),
            "via 100.64.1.1 (learned: table main, proto dhcp)"
        );
        let r6 = resolve(&w, Family::V6, &v, &Hooked::new());
        assert_eq!(r6.gateway, Some(Gateway::Via("fe80::1".parse().unwrap())));
    }

    #[test]
    fn a_source_specific_default_gives_the_next_hop_when_there_is_no_plain_one() {
        let w = wan(NextHop::Auto, NextHop::Auto);
        let from = |gw: &str, metric| DefaultRoute {
            source: Some(crate::prefix::parse_prefix("2001:db8:1::/56", false).unwrap()),
            ..default(Family::V6, gw, 254, metric)
        };
        // OpenWrt's netifd: `default from 2001:db8:1::/56 via fe80::1 dev eth1 metric 512`.
        let v = view(false, vec![from("fe80::1", 512)]);
        let r = resolve(&w, Family::V6, &v, &Hooked::new());
        assert_eq!(r.gateway, Some(Gateway::Via("fe80::1".parse().unwrap())));
        assert!(
            r.describe().ends_with("from 2001:db8:1::/56)"),
            "{}",
            r.describe()
        );
        let v = view(
            false,
            vec![
                from("fe80::1", 1),
                default(Family::V6, "fe80::2", 254, 1024),
            ],
        );
        let r = resolve(&w, Family::V6, &v, &Hooked::new());
        assert_eq!(r.gateway, Some(Gateway::Via("fe80::2".parse().unwrap())));
    }

    #[test]
    fn without_a_route_it_waits_and_a_hook_or_a_point_to_point_link_needs_none() {
        let w = wan(NextHop::Auto, NextHop::Auto);
        let r = resolve(&w, Family::V4, &view(false, vec![]), &Hooked::new());
        assert_eq!(r.gateway, None);
        assert!(
            r.describe()
                .starts_with("waiting for a gateway: no IPv4 default route through eth1")
        );
        let hooked: Hooked =
            [(("wan1".to_owned(), Family::V4), "10.1.1.1".parse().unwrap())].into();
        let r = resolve(&w, Family::V4, &view(false, vec![]), &hooked);
        assert_eq!(r.gateway, Some(Gateway::Via("10.1.1.1".parse().unwrap())));
        let mut p2p = view(true, vec![]);
        let r = resolve(&w, Family::V6, &p2p, &Hooked::new());
        assert_eq!(r.gateway, None, "no IPv6 address: no IPv6 through it");
        assert_eq!(
            r.describe(),
            "waiting for a gateway: the point-to-point link eth1 has no IPv6 address, so it \
             carries no IPv6"
        );
        p2p.addresses.push((7, "fe80::1".parse().unwrap()));
        let r = resolve(&w, Family::V6, &p2p, &Hooked::new());
        assert_eq!(
            r.gateway, None,
            "a tun device's own link-local says nothing"
        );
        p2p.addresses.push((7, "2001:db8::2".parse().unwrap()));
        let r = resolve(&w, Family::V6, &p2p, &Hooked::new());
        assert_eq!(r.gateway, Some(Gateway::Direct));
        let r = resolve(&w, Family::V4, &p2p, &Hooked::new());
        assert_eq!(r.gateway, None, "an IPv6 tunnel carries no IPv4");
        let gone = resolve(&w, Family::V4, &SystemView::default(), &Hooked::new());
        assert!(gone.describe().contains("interface eth1 does not exist"));
    }

    #[test]
    fn a_configured_next_hop_wins_over_everything() {
        let w = wan(NextHop::Via("192.0.2.1".parse().unwrap()), NextHop::Direct);
        let v = view(false, vec![default(Family::V4, "100.64.1.1", 254, 0)]);
        let r = resolve(&w, Family::V4, &v, &Hooked::new());
        assert_eq!(r.gateway, Some(Gateway::Via("192.0.2.1".parse().unwrap())));
        let r6 = resolve(&w, Family::V6, &v, &Hooked::new());
        assert_eq!(r6.gateway, Some(Gateway::Direct), "none: no next hop");
        let gone = resolve(&w, Family::V4, &SystemView::default(), &Hooked::new());
        assert_eq!(
            gone.gateway, None,
            "no route through an interface that is not there"
        );
    }
    #[test]
    fn a_configured_gateway_off_the_link_or_of_the_router_is_refused_where_it_is_written() {
        let prefix = |s: &str| crate::prefix::parse_prefix(s, false).unwrap();
        let mut v = view(false, vec![]);
        v.addresses.push((7, "10.71.1.2".parse().unwrap()));
        v.local
            .push((prefix("10.71.1.2/32"), crate::model::LocalKind::Address));
        v.local
            .push((prefix("10.71.1.0/24"), crate::model::LocalKind::Connected));
        v.on_link.push((prefix("10.71.1.0/24"), 7));
        let text = "[general]\nlan = [\"lan0\"]\n\n[[wan]]\nname = \"wan0\"\ngateway = \"10.99.99.1\"\n\n\
                    [[wan]]\ngateway = \"10.99.99.1\" # the same\nname = \"wan1\"\n";
        let faults_in = |v: &SystemView, gateway: &str| {
            let w = Wan {
                gateway: NextHop::Via(gateway.parse().unwrap()),
                ..crate::config::testing::wan("wan1", "eth1")
            };
            configured_faults(Path::new("/etc/steer.toml"), Some(text), &[w], v)
        };
        let faults = |gateway: &str| faults_in(&v, gateway);
        let off = faults("10.99.99.1");
        assert_eq!(off.len(), 1);
        assert_eq!(
            off[0].to_string(),
            "/etc/steer.toml:9: wan[wan1].gateway = \"10.99.99.1\": 10.99.99.1 is not on the link \
             of wan1 (its interface eth1 reaches 10.71.1.0/24 directly), so the kernel refuses a \
             route via it; give the ISP's router on eth1's link (the lease's `router`), or \
             \"auto\" to learn it. Nothing was changed"
        );
        let own = faults("10.71.1.2");
        assert!(
            own[0]
                .why
                .starts_with("10.71.1.2 is an address of this router"),
            "{}",
            own[0]
        );
        assert_eq!(own[0].place, "", "no such line in the file");
        assert!(
            faults("10.71.1.255")[0]
                .why
                .contains("broadcast address of 10.71.1.0/24")
        );
        assert!(faults("10.71.1.1").is_empty(), "on the link");
        // Not judged without an address of the family (a DHCP lease to come) or a link.
        v.addresses.clear();
        v.local.clear();
        assert!(faults_in(&v, "10.99.99.1").is_empty());
        assert!(configured_faults(Path::new("f"), None, &[], &SystemView::default()).is_empty());
    }

    #[test]
    fn a_link_local_gateway_is_the_routers_own_only_on_the_wans_link() {
        let fe80 = "fe80::1";
        let faults_with = |index: u32| {
            let mut v = view(false, vec![]);
            // fe80::1 held on link `index`: the LAN's (a VRRP VIP), or the WAN's own (7).
            v.addresses.push((index, fe80.parse().unwrap()));
            let w = Wan {
                gateway6: NextHop::Via(fe80.parse().unwrap()),
                ..crate::config::testing::wan("wan1", "eth1")
            };
            configured_faults(Path::new("/etc/steer.toml"), None, &[w], &v)
        };
        assert!(faults_with(9).is_empty(), "the ISP's fe80::1 on eth1");
        let own = faults_with(7);
        assert!(
            own.len() == 1
                && own[0]
                    .why
                    .starts_with("fe80::1 is an address of this router"),
            "{own:?}"
        );
    }
}
