//! The local destinations (never steered) the controller keeps in the kernel: what the
//! system's tables say, filtered by `general.local`, plus `general.local_prefixes`.
//!
//! A main-table route through a WAN's gateway (a DHCP option 121 route, a static route to the
//! ISP's DNS servers or IPTV network) is local only while that WAN's family is up. With the line
//! down, the main table would still send its packets into the dead line; they are steered like
//! any other destination until it comes back. A route through a WAN without a gateway (a
//! WireGuard or PPP device route) stays local whatever the WAN's state: steering it would send a
//! tunnel's private traffic out of another line.

use crate::{
    config,
    model::{Family, LocalKind, LocalScope, LocalSet, local_set},
    prefix::Prefix,
    routing::SystemView,
};

/// What the system's tables said at the last read, with the WAN each gateway route leaves by.
#[derive(Debug, Default)]
pub struct Found {
    routes: Vec<(Prefix, LocalKind)>,
    /// Main-table routes through a WAN's gateway: the prefix and the WAN's name.
    through_wans: Vec<(Prefix, String)>,
}

impl Found {
    /// The local routes of `system`, each gateway route matched to the WAN whose interface it
    /// leaves by.
    pub fn new(system: &SystemView, wans: &[config::Wan]) -> Found {
        let through_wans = system
            .through_gateways
            .iter()
            .filter_map(|(prefix, oif)| {
                let name = system.links.name(*oif)?;
                let wan = wans.iter().find(|w| w.interface == name)?;
                Some((*prefix, wan.name.clone()))
            })
            .collect();
        Found {
            routes: system.local.clone(),
            through_wans,
        }
    }

    /// The local set under `scope` and `configured`, without the gateway routes of WAN
    /// families that are not `usable` now.
    pub fn wanted(
        &self,
        scope: LocalScope,
        configured: &[Prefix],
        usable: impl Fn(&str, Family) -> bool,
    ) -> LocalSet {
        let down = self.steered(usable);
        let routes = self
            .routes
            .iter()
            .filter(|(prefix, kind)| {
                *kind != LocalKind::Route || !down.iter().any(|(p, _)| p == prefix)
            })
            .copied();
        local_set(scope, routes, configured)
    }

    /// Whether `addr` is one of the router's own addresses.
    pub fn is_own_address(&self, addr: std::net::IpAddr) -> bool {
        self.routes
            .iter()
            .any(|(p, kind)| *kind == LocalKind::Address && *p == Prefix::host(addr))
    }

    /// The connected IPv4 subnet (of two or more hosts) whose network or broadcast address
    /// `addr` is: never a host, so never a gateway, although the kernel takes a route via it.
    pub fn subnet_edge_of(&self, addr: std::net::IpAddr) -> Option<Prefix> {
        let std::net::IpAddr::V4(v4) = addr else {
            return None;
        };
        self.routes.iter().find_map(|(p, kind)| {
            let std::net::IpAddr::V4(net) = p.addr() else {
                return None;
            };
            let host_bits = 32 - u32::from(p.len());
            let broadcast = u32::from(net) | ((1u64 << host_bits) - 1) as u32;
            let edge = v4 == net || u32::from(v4) == broadcast;
            (*kind == LocalKind::Connected && p.len() <= 30 && edge).then_some(*p)
        })
    }

    /// The gateway routes of WAN families that are not `usable`, with their WANs: the ones
    /// steered now.
    pub fn steered(&self, usable: impl Fn(&str, Family) -> bool) -> Vec<(Prefix, &str)> {
        self.through_wans
            .iter()
            .filter(|(prefix, wan)| !usable(wan, family_of(prefix)))
            .map(|(prefix, wan)| (*prefix, wan.as_str()))
            .collect()
    }
}

fn family_of(prefix: &Prefix) -> Family {
    if prefix.is_v4() {
        Family::V4
    } else {
        Family::V6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        let (a, l) = s.split_once('/').unwrap();
        Prefix::new(a.parse().unwrap(), l.parse().unwrap()).unwrap()
    }

    fn found() -> Found {
        Found {
            routes: vec![
                (p("192.168.1.0/24"), LocalKind::Connected),
                (p("203.0.113.53/32"), LocalKind::Route),
                (p("10.8.0.0/24"), LocalKind::Route),
            ],
            through_wans: vec![(p("203.0.113.53/32"), "dsl".into())],
        }
    }

    #[test]
    fn a_gateway_route_is_local_only_while_its_wan_is_up() {
        let f = found();
        let up = f.wanted(LocalScope::Routes, &[], |_, _| true);
        assert!(up.contains_key(&p("203.0.113.53/32")));
        let down = f.wanted(LocalScope::Routes, &[], |w, _| w != "dsl");
        assert!(!down.contains_key(&p("203.0.113.53/32")));
        assert!(
            down.contains_key(&p("10.8.0.0/24")),
            "no gateway: stays local"
        );
        assert!(down.contains_key(&p("192.168.1.0/24")));
        assert_eq!(
            f.steered(|w, _| w != "dsl"),
            vec![(p("203.0.113.53/32"), "dsl")]
        );
    }

    #[test]
    fn a_configured_prefix_stays_local_whatever_the_wan() {
        let f = found();
        let down = f.wanted(LocalScope::Routes, &[p("203.0.113.53/32")], |_, _| false);
        assert_eq!(
            down.get(&p("203.0.113.53/32")),
            Some(&LocalKind::Configured)
        );
    }

    #[test]
    fn only_the_family_that_is_down_counts() {
        let f = found();
        let v6_down = f.wanted(LocalScope::Routes, &[], |_, family| family == Family::V4);
        assert!(v6_down.contains_key(&p("203.0.113.53/32")));
    }

    #[test]
    fn a_subnets_network_and_broadcast_addresses_are_its_edges() {
        let mut f = found();
        f.routes.push((p("100.64.0.0/31"), LocalKind::Connected));
        let edge = |a: &str| f.subnet_edge_of(a.parse().unwrap());
        assert_eq!(edge("192.168.1.0"), Some(p("192.168.1.0/24")));
        assert_eq!(edge("192.168.1.255"), Some(p("192.168.1.0/24")));
        assert_eq!(edge("192.168.1.1"), None);
        assert_eq!(edge("10.8.0.0"), None, "a route, not a connected subnet");
        assert_eq!(edge("100.64.0.0"), None, "a /31 has two hosts and no edges");
        assert_eq!(edge("2001:db8::"), None);
    }
}
