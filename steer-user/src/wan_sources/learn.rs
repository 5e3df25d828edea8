//! Where each WAN's delegated prefix comes from (`prefix6`): the configured one, or with
//! `"auto"`, in this order:
//!
//! 1. the prefix a DHCPv6 client hook handed in (`steer wan NAME prefix6 PREFIX`; the hooks in
//!    `contrib/dhcp/` call it on every lease);
//! 2. a source-specific default route through the WAN's interface whose source is a delegated
//!    prefix (`default from 2001:db8:1::/56 via fe80::1 dev wan`, as OpenWrt's netifd installs
//!    one for each delegated prefix);
//! 3. the only delegated prefix no other WAN holds, when this is the only WAN still without
//!    one. A delegated prefix is what DHCPv6 clients hold in the main table: a reject route
//!    for a global prefix of /64 or shorter (`unreachable 2001:db8:1::/56 dev lo proto dhcp`:
//!    dhcpcd and systemd-networkd; netifd's is `proto static` with metric 2^31 - 1). With
//!    two lines delegating, those routes do not say which line each came by: the hook does.
//!
//! Pure: the controller reads the system ([`SystemView`]) and calls [`resolve`] after every
//! routing change, so a renumbered prefix is followed as the client installs it.

use std::collections::BTreeMap;

use super::{Prefixes, WanPrefix};
use crate::{
    config::{Prefix6, Wan},
    model::Family,
    prefix::Prefix,
    routing::{DelegatedRoute, SystemView},
};

/// Prefixes handed in by DHCPv6 client hooks, by WAN name. They last until changed, and
/// across a restart of the daemon within this boot ([`super::kept`]); the hook hands the
/// prefix in again on every lease.
pub type Hooked6 = BTreeMap<String, Prefix>;

/// The longest prefix a WAN or the LAN may have: NPTv6 keeps the host bits, and hosts take
/// addresses by SLAAC from a /64 at most.
pub const LONGEST: u8 = 64;

/// `text` as a delegated prefix (`prefix6`, `lan_prefix`, a hook's): an IPv6 prefix of
/// [`LONGEST`] or shorter; else what is wrong and what to write, for the caller to say where.
pub fn delegated_prefix(text: &str) -> Result<Prefix, (String, String)> {
    use crate::prefix::AddrError;
    const EXAMPLE: &str = "write the prefix the ISP delegates, e.g. \"2001:db8:1::/56\"";
    let p = crate::prefix::parse_prefix(text, false).map_err(|e| match e {
        // The usual hint also offers the single address, which is no delegated prefix.
        AddrError::HostBits { network, .. } => (
            e.message(),
            format!("write `{network}`, the whole prefix the ISP delegates"),
        ),
        // The usual hints speak of sets (`allow_default_route`, the IPv4 network to write, a
        // set's `domains` for a name).
        AddrError::DefaultRoute { .. } | AddrError::Mapped { .. } => (e.message(), EXAMPLE.into()),
        AddrError::Name { .. } => (
            e.message(),
            "write the IPv6 prefix the ISP delegates, e.g. 2001:db8:1::/56, or `auto`".into(),
        ),
        e => (e.message(), e.hint()),
    })?;
    if p.is_v4() {
        return Err((
            format!("{p} is an IPv4 prefix"),
            "write an IPv6 prefix, e.g. \"2001:db8:1::/56\"".into(),
        ));
    }
    if let Some(kind) = never_delegated(p) {
        return Err((
            format!(
                "{p} is {kind}: no ISP delegates it, and LAN hosts cannot reach the internet from it"
            ),
            EXAMPLE.into(),
        ));
    }
    if p.len() > LONGEST {
        return Err((
            format!("{p} is longer than /{LONGEST}"),
            "write the whole prefix the ISP delegates (a /48, /56, /60 or /64): hosts take \
             addresses from a /64 and the translation keeps their last 64 bits"
                .into(),
        ));
    }
    Ok(p)
}

/// The kind of address block `p` lies in or covers that is never a delegated (or a LAN's
/// global) prefix: hosts would take, and the translation would write, source addresses no
/// router forwards to or from the internet.
fn never_delegated(p: Prefix) -> Option<&'static str> {
    use std::net::Ipv6Addr;
    [
        (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
        (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local"),
        (
            Ipv6Addr::UNSPECIFIED,
            96,
            "in the unspecified, loopback and IPv4-compatible block ::/96",
        ),
    ]
    .into_iter()
    .find(|(addr, len, _)| Prefix::new((*addr).into(), *len).is_ok_and(|block| overlaps(p, block)))
    .map(|(_, _, kind)| kind)
}

/// Why a prefix a hook hands in is no delegated prefix ([`delegated_prefix`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("prefix6 `{text}`: {message}; {hint}")]
pub struct HookedPrefixError {
    pub text: String,
    pub message: String,
    pub hint: String,
}

/// A prefix a hook hands in (`steer wan NAME prefix6 PREFIX`, the control socket's
/// `prefix6`).
pub fn parse_hooked(text: &str) -> Result<Prefix, HookedPrefixError> {
    delegated_prefix(text).map_err(|(message, hint)| HookedPrefixError {
        text: text.to_owned(),
        message,
        hint,
    })
}

/// Each WAN's prefix (every WAN of `wans` has an entry).
pub fn resolve(wans: &[Wan], system: &SystemView, hooked: &Hooked6) -> Prefixes {
    let mut out = Prefixes::new();
    let mut open = Vec::new();
    for w in wans {
        let resolved = match w.prefix6 {
            None => waiting("no prefix6 configured"),
            Some(Prefix6::Fixed(p)) => known(p, "configured".into()),
            Some(Prefix6::Auto) => match hooked_or_routed(w, system, hooked) {
                Some(r) => r,
                None => {
                    open.push(w);
                    continue;
                }
            },
        };
        out.insert(w.name.clone(), resolved);
    }
    let held: Vec<Prefix> = out.values().filter_map(|r| r.prefix).collect();
    let mut free: Vec<_> = system
        .delegated
        .iter()
        .filter(|d| is_delegation(d) && !held.iter().any(|h| overlaps(*h, d.prefix)))
        .collect();
    free.dedup_by_key(|d| d.prefix);
    for w in &open {
        let resolved = match free.as_slice() {
            [only] if open.len() == 1 => known(
                only.prefix,
                format!(
                    "learned: the only delegated prefix no other WAN holds ({})",
                    only.origin()
                ),
            ),
            [] => waiting(format!(
                "no delegated prefix in the routing table yet (dhcpcd, odhcp6c and \
                 systemd-networkd install an unreachable route for the prefix the ISP \
                 delegates; dhclient installs none: its hook hands it in with `steer wan {} \
                 prefix6 PREFIX`)",
                w.name
            )),
            many => waiting(format!(
                "{} delegated prefixes ({}) and nothing says which came by {}: hand it in from \
                 the DHCPv6 client's hook with `steer wan {} prefix6 PREFIX`",
                many.len(),
                many.iter()
                    .map(|d| d.prefix.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                w.interface,
                w.name
            )),
        };
        out.insert(w.name.clone(), resolved);
    }
    out
}

/// The prefixes as the configuration alone gives them (`steer check`): `"auto"` ones are
/// learned when steer runs.
pub fn configured(wans: &[Wan]) -> Prefixes {
    wans.iter()
        .map(|w| {
            let r = match w.prefix6 {
                None => waiting("no prefix6 configured"),
                Some(Prefix6::Fixed(p)) => known(p, "configured".into()),
                Some(Prefix6::Auto) => WanPrefix {
                    prefix: None,
                    origin: "auto: learned from the DHCPv6 client when steer runs".into(),
                },
            };
            (w.name.clone(), r)
        })
        .collect()
}

/// Steps 1 and 2 of the module documentation.
fn hooked_or_routed(w: &Wan, system: &SystemView, hooked: &Hooked6) -> Option<WanPrefix> {
    if let Some(p) = hooked.get(&w.name) {
        return Some(known(*p, format!("set by `steer wan {} prefix6`", w.name)));
    }
    system
        .defaults
        .iter()
        .filter(|d| d.family == Family::V6 && d.interface == w.interface)
        .find_map(|d| {
            let source = d.source?;
            let held = system.delegated.iter().find(|h| h.prefix == source)?;
            Some(known(
                source,
                format!(
                    "learned: default from {source} via {} ({}), the prefix held by an {}",
                    w.interface,
                    d.protocol_text(),
                    held.origin()
                ),
            ))
        })
}

/// A DHCPv6 client's hold on a delegated prefix, not a reject route of the administrator's (a
/// blackholed bogon): `proto dhcp` (dhcpcd, systemd-networkd), or netifd's `proto static` with
/// metric 2^31 - 1.
fn is_delegation(d: &DelegatedRoute) -> bool {
    const RTPROT_STATIC: u8 = 4;
    const RTPROT_DHCP: u8 = 16;
    const NETIFD_METRIC: u32 = 2_147_483_647;
    d.protocol == RTPROT_DHCP || (d.protocol == RTPROT_STATIC && d.metric == NETIFD_METRIC)
}

fn known(prefix: Prefix, origin: String) -> WanPrefix {
    WanPrefix {
        prefix: Some(prefix),
        origin,
    }
}

fn waiting(why: impl Into<String>) -> WanPrefix {
    WanPrefix {
        prefix: None,
        origin: format!("waiting: {}", why.into()),
    }
}

pub(crate) fn overlaps(a: Prefix, b: Prefix) -> bool {
    a.contains(b.addr()) || b.contains(a.addr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        routing::DefaultRoute,
        wan_sources::tests::{p, wans},
    };

    const DHCP: u8 = 16;

    fn delegated(prefix: &str) -> DelegatedRoute {
        DelegatedRoute {
            prefix: p(prefix),
            protocol: DHCP,
            metric: 1024,
        }
    }

    fn auto_wans() -> Vec<Wan> {
        let mut w = wans();
        for w in &mut w {
            w.prefix6 = Some(Prefix6::Auto);
        }
        w
    }

    fn prefix(r: &Prefixes, wan: &str) -> Option<String> {
        r[wan].prefix.map(|p| p.to_string())
    }

    #[test]
    fn multicast_link_local_loopback_and_the_default_route_are_no_delegated_prefix() {
        for (text, says) in [
            ("ff00::/8", "multicast"),
            ("ff02::/64", "multicast"),
            ("fe80::/64", "link-local"),
            ("febf::/16", "link-local"),
            ("::/64", "::/96"),
            ("::/0", "default"),
            ("::ffff:0:0/96", "IPv4"),
        ] {
            let e = parse_hooked(text).unwrap_err();
            assert!(e.message.contains(says), "{text}: {e}");
            assert!(
                !e.hint.contains("allow_default_route") && !e.hint.contains("IPv4 network"),
                "{text}: a set's hint: {e}"
            );
        }
        for ok in ["2001:db8:1::/56", "fd10::/64", "2a00:1::/48"] {
            assert!(parse_hooked(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn a_prefix_with_host_bits_is_told_the_whole_prefix_only() {
        let e = parse_hooked("2001:db8:2:100::1/56").unwrap_err();
        assert_eq!(
            e.hint,
            "write `2001:db8:2:100::/56`, the whole prefix the ISP delegates"
        );
        assert!(parse_hooked("2001:db8:2:100::/56").is_ok());
    }

    #[test]
    fn the_only_delegated_prefix_goes_to_the_only_wan_waiting_for_one() {
        let mut w = auto_wans();
        w[0].prefix6 = Some(Prefix6::Fixed(p("2001:db8:1::/56")));
        let system = SystemView {
            delegated: vec![delegated("2001:db8:1::/56"), delegated("2001:db8:2::/60")],
            ..SystemView::default()
        };
        let r = resolve(&w, &system, &Hooked6::new());
        assert_eq!(prefix(&r, "wan1").as_deref(), Some("2001:db8:1::/56"));
        assert_eq!(r["wan1"].origin, "configured");
        assert_eq!(prefix(&r, "wan2").as_deref(), Some("2001:db8:2::/60"));
        assert!(r["wan2"].origin.contains("proto dhcp"), "{r:?}");
    }

    #[test]
    fn two_delegated_prefixes_for_two_wans_wait_for_the_hook_which_decides() {
        let system = SystemView {
            delegated: vec![delegated("2001:db8:1::/56"), delegated("2001:db8:2::/60")],
            ..SystemView::default()
        };
        let r = resolve(&auto_wans(), &system, &Hooked6::new());
        assert_eq!(prefix(&r, "wan1"), None);
        assert!(
            r["wan2"].origin.contains("`steer wan wan2 prefix6 PREFIX`"),
            "{r:?}"
        );
        let hooked = Hooked6::from([("wan2".to_owned(), p("2001:db8:2::/60"))]);
        let r = resolve(&auto_wans(), &system, &hooked);
        assert_eq!(prefix(&r, "wan2").as_deref(), Some("2001:db8:2::/60"));
        assert_eq!(r["wan2"].origin, "set by `steer wan wan2 prefix6`");
        // The hook's prefix is held: the other one is the only one left for wan1.
        assert_eq!(prefix(&r, "wan1").as_deref(), Some("2001:db8:1::/56"));
    }

    #[test]
    fn a_source_specific_default_through_the_wan_names_its_delegated_prefix() {
        let from = |source: &str, iface: &str| DefaultRoute {
            family: Family::V6,
            interface: iface.into(),
            gateway: Some("fe80::1".parse().unwrap()),
            table: 254,
            protocol: 4,
            metric: 512,
            source: Some(p(source)),
        };
        let system = SystemView {
            // netifd's: one per delegated prefix, and one for the WAN's own /64.
            defaults: vec![
                from("2001:db8:ffff:1::/64", "eth1"),
                from("2001:db8:1::/56", "eth1"),
                from("2001:db8:2::/60", "wwan0"),
            ],
            delegated: vec![delegated("2001:db8:1::/56"), delegated("2001:db8:2::/60")],
            ..SystemView::default()
        };
        let r = resolve(&auto_wans(), &system, &Hooked6::new());
        assert_eq!(prefix(&r, "wan1").as_deref(), Some("2001:db8:1::/56"));
        assert_eq!(prefix(&r, "wan2").as_deref(), Some("2001:db8:2::/60"));
        // Each route in its own words: the default route's installer, then the reject route
        // that holds the prefix.
        let origin = &r["wan1"].origin;
        assert!(
            origin.starts_with("learned: default from 2001:db8:1::/56 via eth1 (proto ")
                && origin.contains("), the prefix held by an unreachable route, proto "),
            "{origin}"
        );
    }

    #[test]
    fn a_blackholed_bogon_is_no_delegation() {
        let bogon = DelegatedRoute {
            protocol: 3,
            ..delegated("2001:db8::/32")
        };
        let netifd = DelegatedRoute {
            protocol: 4,
            metric: 2_147_483_647,
            ..delegated("2001:db8:2::/60")
        };
        let system = SystemView {
            delegated: vec![bogon, netifd],
            ..SystemView::default()
        };
        let mut w = auto_wans();
        w[0].prefix6 = None;
        let r = resolve(&w, &system, &Hooked6::new());
        assert_eq!(prefix(&r, "wan2").as_deref(), Some("2001:db8:2::/60"));
    }

    #[test]
    fn nothing_delegated_yet_is_waiting_and_no_key_is_none() {
        let mut w = auto_wans();
        w[1].prefix6 = None;
        let r = resolve(&w, &SystemView::default(), &Hooked6::new());
        assert!(
            r["wan1"].origin.starts_with("waiting: no delegated prefix"),
            "{r:?}"
        );
        assert_eq!(r["wan2"].origin, "waiting: no prefix6 configured");
    }
}
