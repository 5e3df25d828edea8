//! DNS rebinding protection: addresses a public name has no business resolving to are never
//! learned (the answer is still delivered unchanged): private, loopback, link-local, unique
//! local, unspecified, multicast and broadcast, IPv4-mapped IPv6, and the router's own subnets
//! and routes. Each refusal has a reason, counted by the daemon.

use std::net::IpAddr;

use crate::prefix::Prefix;

/// Why an address was not learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// RFC 1918 (10/8, 172.16/12, 192.168/16).
    Private,
    /// 127/8, ::1.
    Loopback,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// fc00::/7.
    UniqueLocal,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// 224/4, 255.255.255.255, ff00::/8.
    Multicast,
    /// ::ffff:0:0/96.
    V4Mapped,
    /// A destination the router reaches without a WAN (its addresses, connected subnets, main
    /// table routes): never steered anyway.
    OwnSubnet,
    /// The learned-host map of the family is full.
    Capacity,
}

impl Refusal {
    pub const ALL: [Refusal; 9] = [
        Refusal::Private,
        Refusal::Loopback,
        Refusal::LinkLocal,
        Refusal::UniqueLocal,
        Refusal::Unspecified,
        Refusal::Multicast,
        Refusal::V4Mapped,
        Refusal::OwnSubnet,
        Refusal::Capacity,
    ];

    /// The label in metrics and the status.
    pub const fn key(self) -> &'static str {
        match self {
            Refusal::Private => "private",
            Refusal::Loopback => "loopback",
            Refusal::LinkLocal => "link_local",
            Refusal::UniqueLocal => "unique_local",
            Refusal::Unspecified => "unspecified",
            Refusal::Multicast => "multicast",
            Refusal::V4Mapped => "ipv4_mapped",
            Refusal::OwnSubnet => "own_subnet",
            Refusal::Capacity => "capacity",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The class of `addr` that rebinding protection refuses, if any (own subnets aside).
pub fn class(addr: IpAddr) -> Option<Refusal> {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            if a.is_private() {
                Some(Refusal::Private)
            } else if a.is_loopback() {
                Some(Refusal::Loopback)
            } else if a.is_link_local() {
                Some(Refusal::LinkLocal)
            } else if o[0] == 0 {
                Some(Refusal::Unspecified)
            } else if a.is_multicast() || a.is_broadcast() {
                Some(Refusal::Multicast)
            } else {
                None
            }
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            if a.is_unspecified() {
                Some(Refusal::Unspecified)
            } else if a.is_loopback() {
                Some(Refusal::Loopback)
            } else if a.is_multicast() {
                Some(Refusal::Multicast)
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some(Refusal::LinkLocal)
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some(Refusal::UniqueLocal)
            } else if a.to_ipv4_mapped().is_some() {
                Some(Refusal::V4Mapped)
            } else {
                None
            }
        }
    }
}

/// The filter as configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rebind {
    /// `dns.rebind_protection`: when off, only the router's own destinations are refused.
    pub enabled: bool,
    /// `dns.rebind_allow`: learned even though a class above covers them.
    pub allow: Vec<Prefix>,
    /// The router's own addresses, subnets and routes (its local destinations).
    pub own: Vec<Prefix>,
}

impl Rebind {
    /// Why `addr` may not be learned, if it may not.
    pub fn check(&self, addr: IpAddr) -> Option<Refusal> {
        let allowed = self.allow.iter().any(|p| p.contains(addr));
        if self.enabled
            && !allowed
            && let Some(c) = class(addr)
        {
            return Some(c);
        }
        self.own
            .iter()
            .any(|p| p.contains(addr))
            .then_some(Refusal::OwnSubnet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_is_refused_with_its_reason() {
        let cases = [
            ("10.1.2.3", Some(Refusal::Private)),
            ("172.31.0.1", Some(Refusal::Private)),
            ("192.168.1.1", Some(Refusal::Private)),
            ("127.0.0.53", Some(Refusal::Loopback)),
            ("::1", Some(Refusal::Loopback)),
            ("169.254.1.1", Some(Refusal::LinkLocal)),
            ("fe80::1", Some(Refusal::LinkLocal)),
            ("fd00::1", Some(Refusal::UniqueLocal)),
            ("0.0.0.0", Some(Refusal::Unspecified)),
            ("::", Some(Refusal::Unspecified)),
            ("224.0.0.1", Some(Refusal::Multicast)),
            ("255.255.255.255", Some(Refusal::Multicast)),
            ("ff02::1", Some(Refusal::Multicast)),
            ("::ffff:198.51.100.1", Some(Refusal::V4Mapped)),
            ("198.51.100.1", None),
            ("2001:db8::1", None),
            ("172.32.0.1", None),
        ];
        let f = Rebind {
            enabled: true,
            ..Rebind::default()
        };
        for (a, want) in cases {
            assert_eq!(f.check(a.parse().unwrap()), want, "{a}");
        }
    }

    #[test]
    fn own_subnets_always_and_allowed_prefixes_pass() {
        let p = |s: &str| {
            let (a, l) = s.split_once('/').unwrap();
            Prefix::new(a.parse().unwrap(), l.parse().unwrap()).unwrap()
        };
        let f = Rebind {
            enabled: true,
            allow: vec![p("10.20.0.0/16")],
            own: vec![p("100.64.1.0/30")],
        };
        assert_eq!(f.check("10.20.1.1".parse().unwrap()), None);
        assert_eq!(
            f.check("10.21.1.1".parse().unwrap()),
            Some(Refusal::Private)
        );
        assert_eq!(
            f.check("100.64.1.1".parse().unwrap()),
            Some(Refusal::OwnSubnet)
        );
        let off = Rebind {
            enabled: false,
            ..f
        };
        assert_eq!(off.check("10.21.1.1".parse().unwrap()), None);
        assert_eq!(
            off.check("100.64.1.1".parse().unwrap()),
            Some(Refusal::OwnSubnet)
        );
    }
}
