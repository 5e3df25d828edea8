//! Destinations the router reaches without a WAN: its own addresses, its connected subnets,
//! the other routes of its main table, and prefixes the configuration adds. A packet to one of
//! them is never steered (the classifier leaves it unmarked, so the main table routes it).

use std::collections::BTreeMap;

use steer_common::local_kind;

use crate::prefix::Prefix;

/// Why a destination is local.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LocalKind {
    /// An address of the router itself.
    Address,
    /// A subnet on one of its interfaces.
    Connected,
    /// Another route of the main table: a VPN, a static route, another site.
    Route,
    /// Listed in `general.local_prefixes`.
    Configured,
    /// Multicast (224.0.0.0/4, ff00::/8) or limited broadcast (255.255.255.255): never a WAN's.
    Multicast,
    /// Link-local (169.254.0.0/16, fe80::/10): a router never forwards it to another link.
    LinkLocal,
}

impl LocalKind {
    pub const fn raw(self) -> u32 {
        match self {
            LocalKind::Address => local_kind::ADDRESS,
            LocalKind::Connected => local_kind::CONNECTED,
            LocalKind::Route => local_kind::ROUTE,
            LocalKind::Configured => local_kind::CONFIGURED,
            LocalKind::Multicast => local_kind::MULTICAST,
            LocalKind::LinkLocal => local_kind::LINK_LOCAL,
        }
    }

    pub const fn from_raw(raw: u32) -> Option<LocalKind> {
        match raw {
            local_kind::ADDRESS => Some(LocalKind::Address),
            local_kind::CONNECTED => Some(LocalKind::Connected),
            local_kind::ROUTE => Some(LocalKind::Route),
            local_kind::CONFIGURED => Some(LocalKind::Configured),
            local_kind::MULTICAST => Some(LocalKind::Multicast),
            local_kind::LINK_LOCAL => Some(LocalKind::LinkLocal),
            _ => None,
        }
    }

    /// In words, for `explain` and `dump`.
    pub const fn describe(self) -> &'static str {
        match self {
            LocalKind::Address => "an address of this router",
            LocalKind::Connected => "a connected subnet",
            LocalKind::Route => "a route of the main table",
            LocalKind::Configured => "listed in general.local_prefixes",
            LocalKind::Multicast => "multicast or broadcast, delivered on the link",
            LocalKind::LinkLocal => "link-local, never forwarded to another link",
        }
    }
}

/// Which of the main table's routes count as local (`general.local`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LocalScope {
    /// Own addresses, connected subnets and every other non-default route of the main table.
    #[default]
    Routes,
    /// Own addresses and connected subnets only: other main-table routes are steered.
    Connected,
    /// Only `general.local_prefixes`: everything else is steered.
    Off,
}

impl LocalScope {
    /// Whether routes of this kind are local under this scope.
    pub const fn includes(self, kind: LocalKind) -> bool {
        match (self, kind) {
            (_, LocalKind::Configured | LocalKind::Multicast | LocalKind::LinkLocal) => true,
            (LocalScope::Off, _) => false,
            (LocalScope::Connected, LocalKind::Route) => false,
            _ => true,
        }
    }
}

/// Multicast and the limited broadcast, and link-local destinations: a LAN host's mDNS, SSDP
/// or DHCP, or a packet to a neighbour's fe80:: address, is never a WAN's, whatever the sets
/// say (the kernel delivers it on the link or refuses to forward it; a mark would only give
/// its connection entry a WAN, and `explain` would name one).
fn on_the_link() -> impl Iterator<Item = (Prefix, LocalKind)> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    [
        (Ipv4Addr::new(224, 0, 0, 0).into(), 4, LocalKind::Multicast),
        (Ipv4Addr::BROADCAST.into(), 32, LocalKind::Multicast),
        (
            Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0).into(),
            8,
            LocalKind::Multicast,
        ),
        (
            Ipv4Addr::new(169, 254, 0, 0).into(),
            16,
            LocalKind::LinkLocal,
        ),
        (
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0).into(),
            10,
            LocalKind::LinkLocal,
        ),
    ]
    .into_iter()
    .map(|(addr, len, kind)| (Prefix::new(addr, len).expect("a valid prefix"), kind))
}

/// Local destinations: prefix -> why.
pub type LocalSet = BTreeMap<Prefix, LocalKind>;

/// The local set for `scope`: what the kernel's tables say (`found`), filtered by the scope,
/// plus the configured prefixes. A prefix found twice keeps its most specific reason.
pub fn local_set(
    scope: LocalScope,
    found: impl IntoIterator<Item = (Prefix, LocalKind)>,
    configured: &[Prefix],
) -> LocalSet {
    let mut set = LocalSet::new();
    let all = found
        .into_iter()
        .chain(configured.iter().map(|p| (*p, LocalKind::Configured)))
        .chain(on_the_link());
    for (prefix, kind) in all.filter(|(_, k)| scope.includes(*k)) {
        set.entry(prefix)
            .and_modify(|k| *k = (*k).min(kind))
            .or_insert(kind);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        let (a, l) = s.split_once('/').unwrap();
        Prefix::new(a.parse().unwrap(), l.parse().unwrap()).unwrap()
    }

    #[test]
    fn the_scope_decides_which_routes_are_local() {
        let found = [
            (p("10.10.0.1/32"), LocalKind::Address),
            (p("10.10.0.0/24"), LocalKind::Connected),
            (p("10.9.0.0/24"), LocalKind::Connected),
            (p("172.20.0.0/16"), LocalKind::Route),
        ];
        let extra = [p("192.0.2.0/24")];
        // Multicast, the limited broadcast and link-local, under every scope.
        let always = 5;
        assert_eq!(
            local_set(LocalScope::Routes, found, &extra).len(),
            5 + always
        );
        let connected = local_set(LocalScope::Connected, found, &extra);
        assert!(!connected.contains_key(&p("172.20.0.0/16")));
        assert_eq!(connected.len(), 4 + always);
        let off = local_set(LocalScope::Off, found, &extra);
        assert_eq!(
            off.into_iter().collect::<Vec<_>>(),
            [
                (p("169.254.0.0/16"), LocalKind::LinkLocal),
                (p("192.0.2.0/24"), LocalKind::Configured),
                (p("224.0.0.0/4"), LocalKind::Multicast),
                (p("255.255.255.255/32"), LocalKind::Multicast),
                (p("fe80::/10"), LocalKind::LinkLocal),
                (p("ff00::/8"), LocalKind::Multicast),
            ]
        );
    }

    #[test]
    fn a_prefix_found_twice_keeps_its_most_specific_reason() {
        let found = [
            (p("10.0.0.0/8"), LocalKind::Route),
            (p("10.0.0.0/8"), LocalKind::Connected),
        ];
        let set = local_set(LocalScope::Routes, found, &[p("10.0.0.0/8")]);
        assert_eq!(set[&p("10.0.0.0/8")], LocalKind::Connected);
        for kind in [
            LocalKind::Address,
            LocalKind::Connected,
            LocalKind::Route,
            LocalKind::Configured,
            LocalKind::Multicast,
            LocalKind::LinkLocal,
        ] {
            assert_eq!(LocalKind::from_raw(kind.raw()), Some(kind));
        }
    }
}
