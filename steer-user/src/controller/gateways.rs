//! Where each WAN's default route of each family goes: the configured next hop, or with
//! `"auto"` what the system says — a gateway handed in by a DHCP client hook (`steer wan NAME
//! gateway ADDR`), none on a point-to-point link that has an address of the family, else the
//! default route that the DHCP client, pppd or the kernel's router-advertisement handling
//! installed through the WAN's interface.
//! Pure: the controller reads the system and calls [`resolve`] after every routing change.

use std::{collections::BTreeMap, net::IpAddr};

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
}
