//! The chains of `[ipv6]` in steer's nftables table, and the guards' counters (see the parent
//! module for what they do).

use std::collections::BTreeMap;

use super::{Prefixes, ToolError, prefix_of, run};
use crate::{
    config::{Ipv6, Ipv6Mode, Wan},
    conntrack::NFT_TABLE,
};

/// The nftables counter of WAN `wan`'s dropped foreign sources.
pub fn counter_name(wan: &str) -> String {
    format!("foreign_source_{wan}")
}

/// The nftables counter of new inbound connections to translated addresses that `npt` refused
/// (a port not in `inbound_tcp`/`inbound_udp`).
pub const INBOUND_REFUSED: &str = "npt_inbound_refused";

/// Packets and bytes of a counter.
pub type Counts = BTreeMap<String, (u64, u64)>;

/// The chains for `ipv6` (nothing without an `[ipv6]` section) over `wans` and their resolved
/// `prefixes`, to go into steer's table. `kept`: the guards' counts so far, by WAN name, so
/// that installing the table again does not reset them.
pub fn chains(ipv6: Option<&Ipv6>, wans: &[Wan], prefixes: &Prefixes, kept: &Counts) -> String {
    let Some(ipv6) = ipv6 else {
        return String::new();
    };
    let mut out = String::new();
    for w in wans {
        let (packets, bytes) = kept.get(&w.name).copied().unwrap_or_default();
        out.push_str(&format!(
            "\tcounter {} {{ packets {packets} bytes {bytes} }}\n",
            counter_name(&w.name)
        ));
    }
    out.push_str(&translation(ipv6, wans, prefixes));
    out.push_str(&guard(wans, prefixes));
    out
}

/// The translation chains of the mode: outgoing sources, and for `npt` incoming destinations.
fn translation(ipv6: &Ipv6, wans: &[Wan], prefixes: &Prefixes) -> String {
    let mut outgoing = String::new();
    let mut incoming = String::new();
    match (ipv6.mode, ipv6.lan_prefix) {
        (Ipv6Mode::Npt, Some(lan)) => {
            for w in wans {
                let Some(p) = prefix_of(prefixes, &w.name) else {
                    continue;
                };
                let iface = quoted(&w.interface);
                outgoing.push_str(&format!(
                    "\t\tmeta nfproto ipv6 oifname {iface} ip6 saddr {lan} snat ip6 prefix to {p}\n"
                ));
                // The router's own addresses inside the prefix (a PD-only line gives it no
                // other) stay the router's.
                incoming.push_str(&format!(
                    "\t\tmeta nfproto ipv6 iifname {iface} ip6 daddr {p} fib daddr type != local dnat ip6 prefix to {lan}\n"
                ));
            }
        }
        // The configuration refuses npt without a LAN prefix; source translates nothing.
        (Ipv6Mode::Npt, None) | (Ipv6Mode::Source, _) => {}
        (Ipv6Mode::Masquerade, _) => {
            let ifaces: Vec<String> = wans.iter().map(|w| quoted(&w.interface)).collect();
            outgoing.push_str(&format!(
                "\t\tmeta nfproto ipv6 oifname {{ {} }} masquerade\n",
                ifaces.join(", ")
            ));
        }
    }
    // A nat chain that translates nothing is left out: it would turn NAT on for nothing.
    let mut out = String::new();
    if !outgoing.is_empty() {
        out.push_str(&format!(
            "\tchain wan_sources {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             {outgoing}\t}}\n"
        ));
    }
    if !incoming.is_empty() {
        out.push_str(&format!(
            "\tchain wan_destinations {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\
             {incoming}\t}}\n"
        ));
        out.push_str(&inbound_ports(ipv6, wans, prefixes));
    }
    out
}

/// npt: a new connection from the internet to a translated address reaches its LAN host only
/// on the ports `[ipv6]` opens. The translation marks it as port-forwarded (`ct status dnat`),
/// which firewalls accept as such (OpenWrt fw4's "accept port forwards", iptables' `--ctstate
/// DNAT`): without this chain every host would be open on every port. It runs before the
/// firewall's forward chain, which still filters what passes here.
fn inbound_ports(ipv6: &Ipv6, wans: &[Wan], prefixes: &Prefixes) -> String {
    let translated: Vec<String> = wans
        .iter()
        .filter_map(|w| prefix_of(prefixes, &w.name))
        .map(|p| p.to_string())
        .collect();
    let mut open = String::new();
    for (proto, ports) in [("tcp", &ipv6.inbound_tcp), ("udp", &ipv6.inbound_udp)] {
        if !ports.is_empty() {
            let list: Vec<String> = ports.iter().map(ToString::to_string).collect();
            open.push_str(&format!(
                "\t\t{proto} dport {{ {} }} return\n",
                list.join(", ")
            ));
        }
    }
    format!(
        "\tcounter {INBOUND_REFUSED} {{ }}\n\
         \tchain npt_inbound {{\n\
         \t\ttype filter hook forward priority filter - 1; policy accept;\n\
         \t\tmeta nfproto ipv6 ct state new ct status dnat ct original ip6 daddr {{ {} }} jump npt_inbound_new\n\t}}\n\
         \tchain npt_inbound_new {{\n{open}\t\tcounter name {INBOUND_REFUSED} drop\n\t}}\n",
        translated.join(", ")
    )
}

/// The guard, after every source translation (steer's and the firewall's).
fn guard(wans: &[Wan], prefixes: &Prefixes) -> String {
    let mut dispatch = Vec::new();
    let mut chains = String::new();
    for w in wans {
        // The mark keeps chain names unique whatever the WAN's name.
        let chain = format!("from_wan_{:#x}", w.mark);
        dispatch.push(format!("{} : jump {chain}", quoted(&w.interface)));
        let mut own = vec!["::".to_owned(), "fe80::/10".to_owned()];
        own.extend(prefix_of(prefixes, &w.name).map(|p| p.to_string()));
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

fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

/// Packets and bytes each WAN's guard dropped, by WAN name, read from the kernel (`nft`);
/// empty when steer's table holds no guard.
pub fn foreign_drops() -> Result<Counts, ToolError> {
    let args = ["-j", "list", "counters", "table", "inet", NFT_TABLE].map(str::to_owned);
    let out = run("nft", &args)?;
    let json: serde_json::Value =
        serde_json::from_slice(&out).map_err(|source| ToolError::Output {
            tool: "nft",
            source,
        })?;
    let mut drops = BTreeMap::new();
    let items = json["nftables"].as_array().into_iter().flatten();
    for counter in items.filter_map(|i| i.get("counter")) {
        let (Some(name), Some(packets)) = (counter["name"].as_str(), counter["packets"].as_u64())
        else {
            continue;
        };
        if let Some(wan) = name.strip_prefix("foreign_source_") {
            let bytes = counter["bytes"].as_u64().unwrap_or_default();
            drops.insert(wan.to_owned(), (packets, bytes));
        }
    }
    Ok(drops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wan_sources::tests::{npt, prefixes, wans};

    #[test]
    fn npt_translates_each_way_by_wan_and_guards_each_wan() {
        let known = prefixes(Some("2001:db8:1::/56"), Some("2001:db8:2::/60"));
        let kept = Counts::from([("wan1".to_owned(), (7, 560))]);
        let r = chains(Some(&npt()), &wans(), &known, &kept);
        for line in [
            "counter foreign_source_wan1 { packets 7 bytes 560 }",
            "counter foreign_source_wan2 { packets 0 bytes 0 }",
            "ct state new ct status dnat ct original ip6 daddr { 2001:db8:1::/56, 2001:db8:2::/60 } jump npt_inbound_new",
            "chain npt_inbound_new {\n\t\ttcp dport { 22, 8000-8100 } return\n\t\tcounter name npt_inbound_refused drop",
            "oifname \"eth1\" ip6 saddr fd10::/64 snat ip6 prefix to 2001:db8:1::/56",
            "oifname \"wwan0\" ip6 saddr fd10::/64 snat ip6 prefix to 2001:db8:2::/60",
            "iifname \"wwan0\" ip6 daddr 2001:db8:2::/60 fib daddr type != local dnat ip6 prefix to fd10::/64",
            "type nat hook prerouting priority dstnat",
            "oifname vmap { \"eth1\" : jump from_wan_0x100, \"wwan0\" : jump from_wan_0x200 }",
            "chain from_wan_0x200 {\n\t\tip6 saddr { ::, fe80::/10, 2001:db8:2::/60 } return\n\t\tfib saddr . oif type local return\n\t\tcounter name \"foreign_source_wan2\" drop",
            "type filter hook postrouting priority srcnat + 10",
        ] {
            assert!(r.contains(line), "missing `{line}` in\n{r}");
        }
    }

    #[test]
    fn a_wan_whose_prefix_is_not_known_is_guarded_but_not_translated() {
        let half = prefixes(Some("2001:db8:1::/56"), None);
        let r = chains(Some(&npt()), &wans(), &half, &Counts::new());
        assert!(!r.contains("oifname \"wwan0\" ip6 saddr fd10::/64"), "{r}");
        assert!(
            r.contains("chain from_wan_0x200 {\n\t\tip6 saddr { ::, fe80::/10 } return"),
            "{r}"
        );
    }

    #[test]
    fn masquerade_translates_every_wan_and_no_section_adds_nothing() {
        let masquerade = Ipv6 {
            mode: Ipv6Mode::Masquerade,
            ..npt()
        };
        let none = prefixes(None, None);
        let r = chains(Some(&masquerade), &wans(), &none, &Counts::new());
        assert!(
            r.contains("oifname { \"eth1\", \"wwan0\" } masquerade"),
            "{r}"
        );
        assert!(!r.contains("dnat"), "{r}");
        assert!(r.contains("chain foreign_sources"), "{r}");
        assert_eq!(chains(None, &wans(), &none, &Counts::new()), "");
        // Source-specific routing translates nothing: no nat chain at all.
        let source = Ipv6 {
            mode: Ipv6Mode::Source,
            ..npt()
        };
        let r = chains(Some(&source), &wans(), &none, &Counts::new());
        assert!(!r.contains("type nat"), "{r}");
        assert!(r.contains("chain foreign_sources"), "{r}");
    }
}
