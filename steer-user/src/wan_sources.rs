//! IPv6 sources on the WANs (`[ipv6]`): each ISP drops packets whose source is not its own
//! prefix (BCP38), so a LAN host's address must become one the WAN carrying it accepts.
//!
//! The chains live in steer's nftables table (`inet steer`, [`crate::conntrack::nft`]) and are
//! computed from the configuration alone, so installing the table installs them:
//!
//! - `npt`: a packet from `lan_prefix` leaving WAN k gets its prefix replaced by WAN k's
//!   `prefix6` (host bits kept; nftables `snat ip6 prefix to`); a new connection coming in by
//!   WAN k to an address of its prefix is translated back (`dnat ip6 prefix to`), so port
//!   forwards work, and its connection mark sends the replies out by WAN k. The translation is
//!   bound when a connection starts: a flow that moves to another WAN starts over (steer
//!   deletes the conntrack entries of a WAN that goes down, and of a WAN whose prefix changes).
//! - `masquerade`: NAT66 to the address of the WAN the packet leaves by.
//! - In both, after translation, the guard: an IPv6 packet leaving WAN k must come from WAN k's
//!   prefix, from an address of WAN k's own interface, or from `::`/link-local (neighbour
//!   discovery, DHCPv6). Anything else is dropped, and counted per WAN in the named counter
//!   [`counter_name`], which `steer status` and the metrics read.

use std::{collections::BTreeMap, process::Command};

use crate::{
    config::{Ipv6, Ipv6Mode, Wan},
    conntrack::NFT_TABLE,
    prefix::{Prefix, parse_prefix},
    status::{Ipv6Status, WanSourceStatus},
};

/// The nftables counter of WAN `wan`'s dropped foreign sources.
pub fn counter_name(wan: &str) -> String {
    format!("foreign_source_{wan}")
}

/// The chains for `ipv6` (nothing without an `[ipv6]` section), to go into steer's table.
pub fn chains(ipv6: Option<&Ipv6>, wans: &[Wan]) -> String {
    let Some(ipv6) = ipv6 else {
        return String::new();
    };
    let mut out = String::new();
    for w in wans {
        out.push_str(&format!("\tcounter {} {{ }}\n", counter_name(&w.name)));
    }
    out.push_str(&translation(ipv6, wans));
    out.push_str(&guard(wans));
    out
}

/// The translation chains of the mode: outgoing sources, and for `npt` incoming destinations.
fn translation(ipv6: &Ipv6, wans: &[Wan]) -> String {
    let mut outgoing = String::new();
    let mut incoming = String::new();
    match (ipv6.mode, ipv6.lan_prefix) {
        (Ipv6Mode::Npt, Some(lan)) => {
            for w in wans {
                let Some(p) = w.prefix6 else { continue };
                let iface = quoted(&w.interface);
                outgoing.push_str(&format!(
                    "\t\tmeta nfproto ipv6 oifname {iface} ip6 saddr {lan} snat ip6 prefix to {p}\n"
                ));
                incoming.push_str(&format!(
                    "\t\tmeta nfproto ipv6 iifname {iface} ip6 daddr {p} dnat ip6 prefix to {lan}\n"
                ));
            }
        }
        // The configuration refuses npt without a LAN prefix.
        (Ipv6Mode::Npt, None) => {}
        (Ipv6Mode::Masquerade, _) => {
            let ifaces: Vec<String> = wans.iter().map(|w| quoted(&w.interface)).collect();
            outgoing.push_str(&format!(
                "\t\tmeta nfproto ipv6 oifname {{ {} }} masquerade\n",
                ifaces.join(", ")
            ));
        }
    }
    let mut out = format!(
        "\tchain wan_sources {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         {outgoing}\t}}\n"
    );
    if !incoming.is_empty() {
        out.push_str(&format!(
            "\tchain wan_destinations {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\
             {incoming}\t}}\n"
        ));
    }
    out
}

/// The guard, after every source translation (steer's and the firewall's).
fn guard(wans: &[Wan]) -> String {
    let mut dispatch = Vec::new();
    let mut chains = String::new();
    for w in wans {
        // The mark keeps chain names unique whatever the WAN's name.
        let chain = format!("from_wan_{:#x}", w.mark);
        dispatch.push(format!("{} : jump {chain}", quoted(&w.interface)));
        let mut own = vec!["::".to_owned(), "fe80::/10".to_owned()];
        own.extend(w.prefix6.map(|p| p.to_string()));
        chains.push_str(&format!(
            "\tchain {chain} {{\n\
             \t\tip6 saddr {{ {} }} return\n\
             \t\tfib saddr . oif type local return\n\
             \t\tcounter name {} drop\n\t}}\n",
            own.join(", "),
            quoted(&counter_name(&w.name)),
        ));
    }
    format!(
        "\tchain foreign_sources {{\n\
         \t\ttype filter hook postrouting priority srcnat + 10; policy accept;\n\
         \t\tmeta nfproto ipv6 oifname vmap {{ {} }}\n\t}}\n{chains}",
        dispatch.join(", ")
    )
}

/// The status of `ipv6` over `wans`, with the guards' `counters` ([`foreign_drops`]).
pub fn status(
    ipv6: &Ipv6,
    wans: &[Wan],
    counters: Result<BTreeMap<String, u64>, String>,
) -> Ipv6Status {
    let (drops, counters_error) = match counters {
        Ok(d) => (d, None),
        Err(e) => (BTreeMap::new(), Some(e)),
    };
    let wans = wans
        .iter()
        .map(|w| WanSourceStatus {
            wan: w.name.clone(),
            prefix6: w.prefix6.map(|p| p.to_string()),
            origin: if w.prefix6.is_some() {
                "configured"
            } else {
                "none"
            }
            .to_owned(),
            translation: match (ipv6.mode, ipv6.lan_prefix, w.prefix6) {
                (Ipv6Mode::Npt, Some(lan), Some(p)) => format!("{lan} <-> {p} (NPTv6)"),
                (Ipv6Mode::Npt, _, _) => "none".to_owned(),
                (Ipv6Mode::Masquerade, _, _) => {
                    format!("masqueraded to {}'s address", w.interface)
                }
            },
            foreign_dropped: drops.get(&w.name).copied(),
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
pub fn fate_of(status: &Ipv6Status, wan: &str, src: std::net::IpAddr) -> Option<String> {
    let std::net::IpAddr::V6(src6) = src else {
        return None;
    };
    let w = status.wans.iter().find(|w| w.wan == wan)?;
    let parse = |p: &Option<String>| p.as_deref().and_then(|t| parse_prefix(t, true).ok());
    let (lan, own) = (parse(&status.lan_prefix), parse(&w.prefix6));
    let guarded = || {
        format!(
            "{src} is not a source {wan} carries (its prefix: {}): steer's guard drops it there              (counted in foreign sources dropped)",
            w.prefix6.as_deref().unwrap_or("none")
        )
    };
    Some(match status.mode.as_str() {
        "masquerade" => format!("{src} is masqueraded to {wan}'s address (NAT66)"),
        _ if own.is_some_and(|p| p.contains(src)) => format!("{src} is {wan}'s own: kept"),
        _ => match (lan, own) {
            (Some(lan), Some(own)) if lan.contains(src) => {
                let to = prefix_translated(src6, own);
                format!("{src} becomes {to} on {wan} (NPTv6 {lan} -> {own})")
            }
            _ => guarded(),
        },
    })
}

/// `addr` with its first `to.len()` bits replaced by `to`'s, as nftables' prefix NAT does.
fn prefix_translated(addr: std::net::Ipv6Addr, to: Prefix) -> std::net::Ipv6Addr {
    let std::net::IpAddr::V6(net) = to.addr() else {
        return addr;
    };
    let len = u32::from(to.len());
    let host_mask = u128::MAX.checked_shr(len).unwrap_or(0);
    std::net::Ipv6Addr::from((u128::from(net) & !host_mask) | (u128::from(addr) & host_mask))
}

/// The WANs of `new` whose IPv6 flows were translated otherwise under `old` (the mode, the LAN
/// prefix or their own prefix changed): their conntrack entries hold bindings to an address
/// the WAN no longer carries, so steer deletes them and the flows start over.
pub fn retranslated(old: (Option<&Ipv6>, &[Wan]), new: (Option<&Ipv6>, &[Wan])) -> Vec<String> {
    let prefix = |wans: &[Wan], name: &str| wans.iter().find(|w| w.name == name).map(|w| w.prefix6);
    new.1
        .iter()
        .filter(|w| old.1.iter().any(|o| o.name == w.name))
        .filter(|w| old.0 != new.0 || prefix(old.1, &w.name) != Some(w.prefix6))
        .filter(|_| old.0.is_some() || new.0.is_some())
        .map(|w| w.name.clone())
        .collect()
}

fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

/// Packets each WAN's guard dropped, by WAN name, read from the kernel (`nft`); empty when
/// steer's table holds no guard.
pub fn foreign_drops() -> Result<BTreeMap<String, u64>, String> {
    let out = Command::new("nft")
        .args(["-j", "list", "counters", "table", "inet", NFT_TABLE])
        .output()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("nft -j: {e}"))?;
    let mut drops = BTreeMap::new();
    let items = json["nftables"].as_array().into_iter().flatten();
    for counter in items.filter_map(|i| i.get("counter")) {
        let (Some(name), Some(packets)) = (counter["name"].as_str(), counter["packets"].as_u64())
        else {
            continue;
        };
        if let Some(wan) = name.strip_prefix("foreign_source_") {
            drops.insert(wan.to_owned(), packets);
        }
    }
    Ok(drops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::wan;

    fn wans() -> Vec<Wan> {
        let mut w1 = wan("wan1", "eth1");
        w1.prefix6 = Some(parse_prefix("2001:db8:1::/56", false).unwrap());
        let mut w2 = wan("wan2", "wwan0");
        w2.mark = 0x200;
        w2.prefix6 = Some(parse_prefix("2001:db8:2::/60", false).unwrap());
        vec![w1, w2]
    }

    #[test]
    fn npt_translates_each_way_by_wan_and_guards_each_wan() {
        let ipv6 = Ipv6 {
            mode: Ipv6Mode::Npt,
            lan_prefix: Some(parse_prefix("fd10::/64", false).unwrap()),
        };
        let r = chains(Some(&ipv6), &wans());
        for line in [
            "counter foreign_source_wan1 { }",
            "oifname \"eth1\" ip6 saddr fd10::/64 snat ip6 prefix to 2001:db8:1::/56",
            "oifname \"wwan0\" ip6 saddr fd10::/64 snat ip6 prefix to 2001:db8:2::/60",
            "iifname \"wwan0\" ip6 daddr 2001:db8:2::/60 dnat ip6 prefix to fd10::/64",
            "type nat hook prerouting priority dstnat",
            "oifname vmap { \"eth1\" : jump from_wan_0x100, \"wwan0\" : jump from_wan_0x200 }",
            "chain from_wan_0x200 {\n\t\tip6 saddr { ::, fe80::/10, 2001:db8:2::/60 } return\n\t\tfib saddr . oif type local return\n\t\tcounter name \"foreign_source_wan2\" drop",
            "type filter hook postrouting priority srcnat + 10",
        ] {
            assert!(r.contains(line), "missing `{line}` in\n{r}");
        }
    }

    #[test]
    fn masquerade_translates_every_wan_and_no_section_adds_nothing() {
        let ipv6 = Ipv6 {
            mode: Ipv6Mode::Masquerade,
            lan_prefix: None,
        };
        let r = chains(Some(&ipv6), &wans());
        assert!(
            r.contains("oifname { \"eth1\", \"wwan0\" } masquerade"),
            "{r}"
        );
        assert!(!r.contains("dnat"), "{r}");
        assert!(r.contains("chain foreign_sources"), "{r}");
        assert_eq!(chains(None, &wans()), "");
    }

    #[test]
    fn explain_says_what_a_source_becomes_on_each_wan() {
        let ipv6 = Ipv6 {
            mode: Ipv6Mode::Npt,
            lan_prefix: Some(parse_prefix("fd10::/64", false).unwrap()),
        };
        let st = status(&ipv6, &wans(), Ok(BTreeMap::new()));
        let fate = |wan: &str, src: &str| fate_of(&st, wan, src.parse().unwrap()).unwrap();
        assert_eq!(
            fate("wan1", "fd10::1234:5678"),
            "fd10::1234:5678 becomes 2001:db8:1::1234:5678 on wan1 (NPTv6 fd10::/64 -> 2001:db8:1::/56)"
        );
        assert!(fate("wan2", "2001:db8:2:3::9").ends_with("is wan2's own: kept"));
        assert!(
            fate("wan2", "2001:db8:1::9").contains("steer's guard drops it there"),
            "{}",
            fate("wan2", "2001:db8:1::9")
        );
        assert_eq!(fate_of(&st, "wan1", "10.0.0.1".parse().unwrap()), None);
        assert_eq!(
            prefix_translated(
                "fd10::ab:1".parse().unwrap(),
                parse_prefix("2001:db8:2:40::/58", false).unwrap()
            ),
            "2001:db8:2:40::ab:1".parse::<std::net::Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn a_wan_whose_prefix_or_mode_changes_is_retranslated() {
        let ipv6 = Ipv6 {
            mode: Ipv6Mode::Masquerade,
            lan_prefix: None,
        };
        let old = wans();
        let mut new = wans();
        assert!(retranslated((Some(&ipv6), &old), (Some(&ipv6), &new)).is_empty());
        assert!(retranslated((None, &old), (None, &new)).is_empty());
        new[1].prefix6 = Some(parse_prefix("2001:db8:22::/56", false).unwrap());
        assert_eq!(
            retranslated((Some(&ipv6), &old), (Some(&ipv6), &new)),
            ["wan2"]
        );
        assert_eq!(
            retranslated((None, &old), (Some(&ipv6), &old)),
            ["wan1", "wan2"]
        );
    }
}
