//! IPv6 sources on the WANs (`[ipv6]`): each ISP drops packets whose source is not its own
//! prefix (BCP38), so a LAN host's address must become one the WAN carrying it accepts.
//!
//! - [`learn`]: each WAN's prefix — configured, handed in by a DHCPv6 client hook (`steer wan
//!   NAME prefix6 PREFIX`), or learned from the routes the client installs. Pure: the
//!   controller reads the system and calls it after every routing change.
//! - [`nft`]: the chains, computed from the mode and the WANs' prefixes; they live in steer's
//!   nftables table (`inet steer`, [`crate::conntrack::nft`]), so installing the table
//!   installs them, and the controller installs it again when a prefix changes.
//! - [`deprecate`]: `source` mode's deprecation of a dead WAN's prefix on the LAN.
//! - [`kept`]: what a restarted daemon takes back (hooked prefixes, saved lifetimes).
//!
//! What the chains do:
//! - `npt`: a packet from `lan_prefix` leaving WAN k gets its prefix replaced by WAN k's (host
//!   bits kept; nftables `snat ip6 prefix to`); a new connection coming in by WAN k to an
//!   address of its prefix is translated back (`dnat ip6 prefix to`) on the ports
//!   `inbound_tcp`/`inbound_udp` open (the others are dropped), and its connection mark sends
//!   the replies out by WAN k. The translation is bound when a
//!   connection starts: a flow that moves to another WAN starts over (steer deletes the
//!   conntrack entries of a WAN that goes down, and the IPv6 ones of a WAN whose prefix
//!   changes). A WAN whose prefix is not known yet carries no IPv6 (its IPv6 is unusable, as
//!   without a gateway), so policies send IPv6 elsewhere.
//! - `masquerade`: NAT66 to the address of the WAN the packet leaves by.
//! - `source`: no translation; hosts hold an address of each WAN's prefix, source rules send
//!   each prefix to its WAN, and a dead WAN's prefix is deprecated on the LAN ([`deprecate`]).
//! - In all three, after translation, the guard: an IPv6 packet leaving WAN k must come from WAN k's
//!   prefix, from an address of WAN k's own interface, or from `::`/link-local (neighbour
//!   discovery, DHCPv6). Anything else is dropped, and counted per WAN in the named counter
//!   [`nft::counter_name`], which `steer status` and the metrics read.

pub mod deprecate;
pub mod kept;
pub mod learn;
pub mod nft;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv6Addr},
};

pub use learn::{Hooked6, configured, resolve};
pub use nft::{chains, foreign_drops};

use crate::{
    config::{Ipv6, Ipv6Mode, Wan},
    prefix::{Prefix, parse_prefix},
    status::{Ipv6Status, WanSourceStatus},
};

/// What went wrong running a tool (`nft`, `ip`) for `[ipv6]`.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot run {tool} ({source}); install it (nftables, iproute2)")]
    Spawn {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{tool} {args} failed: {stderr}")]
    Failed {
        tool: &'static str,
        args: String,
        stderr: String,
    },
    #[error("{tool} {args} did not finish within {} s and was killed", crate::tool::TIMEOUT.as_secs())]
    Stuck { tool: &'static str, args: String },
    #[error("{tool} printed JSON steer cannot read: {source}")]
    Output {
        tool: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Runs `tool` with `args`; its standard output, or why not. Bounded ([`crate::tool`]): some
/// run on the daemon's event loop.
pub(crate) fn run(tool: &'static str, args: &[String]) -> Result<Vec<u8>, ToolError> {
    let mut command = std::process::Command::new(tool);
    command.args(args);
    let ran =
        crate::tool::run(command, None).map_err(|source| ToolError::Spawn { tool, source })?;
    let Some(ran) = ran else {
        return Err(ToolError::Stuck {
            tool,
            args: args.join(" "),
        });
    };
    if !ran.status.success() {
        return Err(ToolError::Failed {
            tool,
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&ran.stderr).trim().to_owned(),
        });
    }
    Ok(ran.stdout)
}

/// One WAN's prefix as resolved, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WanPrefix {
    pub prefix: Option<Prefix>,
    /// Where it came from, or what it waits for, in words.
    pub origin: String,
}

/// Each WAN's prefix, by WAN name.
pub type Prefixes = BTreeMap<String, WanPrefix>;

/// The prefix of `wan` in `prefixes`, if known.
pub fn prefix_of(prefixes: &Prefixes, wan: &str) -> Option<Prefix> {
    prefixes.get(wan).and_then(|p| p.prefix)
}

/// Whether `wan` can carry IPv6 under `ipv6`: NPTv6 needs the WAN's prefix to translate into,
/// source-specific routing for hosts to hold an address of it.
pub fn carries_ipv6(ipv6: Option<&Ipv6>, prefixes: &Prefixes, wan: &str) -> bool {
    match ipv6.map(|i| i.mode) {
        Some(Ipv6Mode::Npt | Ipv6Mode::Source) => prefix_of(prefixes, wan).is_some(),
        Some(Ipv6Mode::Masquerade) | None => true,
    }
}

/// Where `wan`'s prefix comes from under `ipv6`, in words, for the log, a reload's answer and
/// `steer status` alike. Masquerade translates to the WAN's own address: a WAN without
/// `prefix6` neither needs a prefix nor waits for one.
pub fn origin(ipv6: &Ipv6, wan: &Wan, resolved: Option<&WanPrefix>) -> String {
    match (ipv6.mode, resolved) {
        (Ipv6Mode::Masquerade, _) if wan.prefix6.is_none() => "not needed".to_owned(),
        (_, Some(r)) => r.origin.clone(),
        (_, None) => "not resolved yet".to_owned(),
    }
}

/// The status of `ipv6` over `wans` and their `prefixes`, with the guards' `counters`
/// ([`foreign_drops`]).
pub fn status(
    ipv6: &Ipv6,
    wans: &[Wan],
    prefixes: &Prefixes,
    deprecated: &[Prefix],
    counters: Result<nft::Counts, ToolError>,
) -> Ipv6Status {
    let (drops, counters_error) = match counters {
        Ok(d) => (d, None),
        Err(e) => (BTreeMap::new(), Some(e.to_string())),
    };
    let wans = wans
        .iter()
        .map(|w| {
            let resolved = prefixes.get(&w.name);
            let prefix = resolved.and_then(|r| r.prefix);
            let origin = origin(ipv6, w, resolved);
            WanSourceStatus {
                wan: w.name.clone(),
                prefix6: prefix.map(|p| p.to_string()),
                origin,
                translation: match (ipv6.mode, ipv6.lan_prefix, prefix) {
                    (Ipv6Mode::Npt, Some(lan), Some(p)) => format!("{lan} <-> {p} (NPTv6)"),
                    (Ipv6Mode::Npt | Ipv6Mode::Source, _, None) if w.prefix6.is_none() => {
                        format!(
                            "none: carries no IPv6, having no prefix6 ({} mode needs one: give \
                             the WAN prefix6 = \"auto\" or its prefix)",
                            ipv6.mode.word()
                        )
                    }
                    (Ipv6Mode::Npt | Ipv6Mode::Source, _, None) => {
                        "none: carries no IPv6 until its prefix is known".into()
                    }
                    (Ipv6Mode::Npt, None, Some(_)) => "none".into(),
                    (Ipv6Mode::Source, _, Some(p)) if deprecated.contains(&p) => format!(
                        "sources in {p} leave by it, kept (source-specific routing); deprecated \
                         on the LAN while the WAN carries no IPv6"
                    ),
                    (Ipv6Mode::Source, _, Some(p)) => {
                        format!("sources in {p} leave by it, kept (source-specific routing)")
                    }
                    (Ipv6Mode::Masquerade, _, _) => {
                        format!("masqueraded to {}'s address", w.interface)
                    }
                },
                foreign_dropped: drops.get(&w.name).map(|&(packets, _)| packets),
            }
        })
        .collect();
    Ipv6Status {
        mode: ipv6.mode.word().to_owned(),
        lan_prefix: ipv6.lan_prefix.map(|p| p.to_string()),
        wans,
        counters_error,
    }
}

/// What becomes of the IPv6 source `src` on WAN `wan` of `status` (`steer explain`), in
/// words; `None` for IPv4, or a WAN the status does not know.
pub fn fate_of(status: &Ipv6Status, wan: &str, src: IpAddr) -> Option<String> {
    let IpAddr::V6(src6) = src else {
        return None;
    };
    let w = status.wans.iter().find(|w| w.wan == wan)?;
    let parse = |p: &Option<String>| p.as_deref().and_then(|t| parse_prefix(t, true).ok());
    let (lan, own) = (parse(&status.lan_prefix), parse(&w.prefix6));
    // Source-specific routing: the WAN whose prefix holds the source carries it, whatever
    // the set chose.
    let owner = status
        .wans
        .iter()
        .find(|o| parse(&o.prefix6).is_some_and(|p| p.contains(src)));
    Some(match status.mode.as_str() {
        "masquerade" => format!("{src} is masqueraded to {wan}'s address (NAT66)"),
        _ if own.is_some_and(|p| p.contains(src)) => format!("{src} is {wan}'s own: kept"),
        "source" => match owner {
            Some(o) => format!(
                "{src} is in {}'s prefix {}: source-specific routing sends it out by {}, not \
                 {wan} (the policy chooses among the WANs a source allows)",
                o.wan,
                o.prefix6.as_deref().unwrap_or_default(),
                o.wan
            ),
            None => format!(
                "{src} is in no WAN's prefix: steer's guard drops it on {wan} (counted in \
                 foreign sources dropped)"
            ),
        },
        _ => match (lan, own) {
            (Some(lan), Some(own)) if lan.contains(src) => {
                let to = prefix_translated(src6, own);
                format!("{src} becomes {to} on {wan} (NPTv6 {lan} -> {own})")
            }
            _ => format!(
                "{src} is not a source {wan} carries (its prefix: {}): steer's guard drops it \
                 there (counted in foreign sources dropped)",
                w.prefix6.as_deref().unwrap_or("none")
            ),
        },
    })
}

/// `addr` with its first `to.len()` bits replaced by `to`'s, as nftables' prefix NAT does.
fn prefix_translated(addr: Ipv6Addr, to: Prefix) -> Ipv6Addr {
    let IpAddr::V6(net) = to.addr() else {
        return addr;
    };
    let host_mask = u128::MAX.checked_shr(u32::from(to.len())).unwrap_or(0);
    Ipv6Addr::from((u128::from(net) & !host_mask) | (u128::from(addr) & host_mask))
}

/// The WANs whose IPv6 flows were translated otherwise before (`old`) than now (`new`): the
/// mode or the LAN prefix changed, or their own prefix. Their conntrack entries hold bindings
/// to an address the WAN no longer carries, so steer deletes them and the flows start over.
/// A WAN only in `new` has no flows yet.
pub fn retranslated(
    old: (Option<&Ipv6>, &Prefixes),
    new: (Option<&Ipv6>, &Prefixes),
) -> Vec<String> {
    if old.0.is_none() && new.0.is_none() {
        return Vec::new();
    }
    // The translation alone: the inbound ports only filter new connections from outside.
    let translation = |ipv6: Option<&Ipv6>| ipv6.map(|v| (v.mode, v.lan_prefix));
    let changed = translation(old.0) != translation(new.0);
    new.1
        .iter()
        .filter(|(name, p)| {
            old.1
                .get(*name)
                .is_some_and(|o| changed || o.prefix != p.prefix)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::testing::wan;

    pub(crate) fn p(text: &str) -> Prefix {
        parse_prefix(text, false).unwrap()
    }

    pub(crate) fn wans() -> Vec<Wan> {
        let w1 = wan("wan1", "eth1");
        let mut w2 = wan("wan2", "wwan0");
        w2.mark = 0x200;
        vec![w1, w2]
    }

    pub(crate) fn prefixes(p1: Option<&str>, p2: Option<&str>) -> Prefixes {
        [("wan1", p1), ("wan2", p2)]
            .into_iter()
            .map(|(w, t)| {
                let prefix = t.map(p);
                (
                    w.to_owned(),
                    WanPrefix {
                        prefix,
                        origin: "configured".into(),
                    },
                )
            })
            .collect()
    }

    /// npt with fd10::/64 and TCP 22 and 8000-8100 open inbound.
    pub(crate) fn npt() -> Ipv6 {
        use crate::model::ordered::PortRange;
        Ipv6 {
            mode: Ipv6Mode::Npt,
            lan_prefix: Some(p("fd10::/64")),
            inbound_tcp: vec![
                PortRange {
                    first: 22,
                    last: 22,
                },
                PortRange {
                    first: 8000,
                    last: 8100,
                },
            ],
            inbound_udp: Vec::new(),
        }
    }

    #[test]
    fn explain_says_what_a_source_becomes_on_each_wan() {
        let known = prefixes(Some("2001:db8:1::/56"), Some("2001:db8:2::/60"));
        let st = status(&npt(), &wans(), &known, &[], Ok(BTreeMap::new()));
        let fate = |wan: &str, src: &str| fate_of(&st, wan, src.parse().unwrap()).unwrap();
        assert_eq!(
            fate("wan1", "fd10::1234:5678"),
            "fd10::1234:5678 becomes 2001:db8:1::1234:5678 on wan1 (NPTv6 fd10::/64 -> 2001:db8:1::/56)"
        );
        assert!(fate("wan2", "2001:db8:2:3::9").ends_with("is wan2's own: kept"));
        let foreign = fate("wan2", "2001:db8:1::9");
        assert!(
            foreign.contains("steer's guard drops it there"),
            "{foreign}"
        );
        assert_eq!(fate_of(&st, "wan1", "10.0.0.1".parse().unwrap()), None);
        assert_eq!(
            prefix_translated("fd10::ab:1".parse().unwrap(), p("2001:db8:2:40::/58")),
            "2001:db8:2:40::ab:1".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn a_wan_without_its_prefix_carries_no_ipv6_under_npt_only() {
        let half = prefixes(Some("2001:db8:1::/56"), None);
        assert!(carries_ipv6(Some(&npt()), &half, "wan1"));
        assert!(!carries_ipv6(Some(&npt()), &half, "wan2"));
        let masquerade = Ipv6 {
            mode: Ipv6Mode::Masquerade,
            ..npt()
        };
        assert!(carries_ipv6(Some(&masquerade), &half, "wan2"));
        assert!(carries_ipv6(None, &half, "wan2"));
        let no_nft = ToolError::Failed {
            tool: "nft",
            args: "-j list counters".into(),
            stderr: "no such table".into(),
        };
        let st = status(&npt(), &wans(), &half, &[], Err(no_nft));
        assert!(st.wans[1].translation.starts_with("none"), "{st:?}");
        // The test WANs have no prefix6: npt says it needs one, masquerade that it needs none.
        assert!(
            st.wans[1]
                .translation
                .starts_with("none: carries no IPv6, having no prefix6 (npt mode needs one"),
            "{st:?}"
        );
        let masq = status(&masquerade, &wans(), &half, &[], Ok(BTreeMap::new()));
        assert_eq!(masq.wans[1].origin, "not needed", "{masq:?}");
        assert_eq!(
            st.counters_error.as_deref(),
            Some("nft -j list counters failed: no such table")
        );
    }

    #[test]
    fn a_wan_whose_prefix_or_mode_changes_is_retranslated() {
        let masquerade = Ipv6 {
            mode: Ipv6Mode::Masquerade,
            ..npt()
        };
        let old = prefixes(Some("2001:db8:1::/56"), Some("2001:db8:2::/56"));
        let new = prefixes(Some("2001:db8:1::/56"), Some("2001:db8:22::/56"));
        let m = Some(&masquerade);
        assert!(retranslated((m, &old), (m, &old)).is_empty());
        assert!(retranslated((None, &old), (None, &new)).is_empty());
        assert_eq!(retranslated((m, &old), (m, &new)), ["wan2"]);
        assert_eq!(retranslated((None, &old), (m, &old)), ["wan1", "wan2"]);
        let only_one: Prefixes = old.clone().into_iter().take(1).collect();
        assert!(retranslated((m, &only_one), (m, &new)).is_empty());
    }

    /// The inbound ports filter new connections from outside; the flows going out keep their
    /// translation (a reload that changed them reset every IPv6 connection).
    #[test]
    fn other_inbound_ports_translate_nothing_otherwise() {
        let before = npt();
        let mut after = npt();
        after.inbound_tcp.clear();
        after.inbound_udp.clear();
        assert_ne!(before, after, "the test changes something");
        let old = prefixes(Some("2001:db8:1::/56"), Some("2001:db8:2::/56"));
        assert!(retranslated((Some(&before), &old), (Some(&after), &old)).is_empty());
        let mut other_lan = npt();
        other_lan.lan_prefix = Some(p("fd00:9::/64"));
        assert_eq!(
            retranslated((Some(&before), &old), (Some(&other_lan), &old)),
            ["wan1", "wan2"]
        );
    }
}
