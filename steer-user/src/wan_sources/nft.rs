//! The chains of `[ipv6]` in steer's nftables table, and the guards' counters (see the parent
//! module for what they do).

use std::{collections::BTreeMap, process::Command};

use super::{Prefixes, prefix_of};
use crate::{
    config::{Ipv6, Ipv6Mode, Wan},
    conntrack::NFT_TABLE,
};

/// The nftables counter of WAN `wan`'s dropped foreign sources.
pub fn counter_name(wan: &str) -> String {
    format!("foreign_source_{wan}")
}

/// The chains for `ipv6` (nothing without an `[ipv6]` section) over `wans` and their resolved
/// `prefixes`, to go into steer's table.
pub fn chains(ipv6: Option<&Ipv6>, wans: &[Wan], prefixes: &Prefixes) -> String {
    let Some(ipv6) = ipv6 else {
        return String::new();
    };
    let mut out = String::new();
    for w in wans {
        out.push_str(&format!("\tcounter {} {{ }}\n", counter_name(&w.name)));
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
                incoming.push_str(&format!(
                    "\t\tmeta nfproto ipv6 iifname {iface} ip6 daddr {p} dnat ip6 prefix to {lan}\n"
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
    use crate::wan_sources::tests::{npt, prefixes, wans};

    #[test]
    fn npt_translates_each_way_by_wan_and_guards_each_wan() {
        let known = prefixes(Some("2001:db8:1::/56"), Some("2001:db8:2::/60"));
        let r = chains(Some(&npt()), &wans(), &known);
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
    fn a_wan_whose_prefix_is_not_known_is_guarded_but_not_translated() {
        let half = prefixes(Some("2001:db8:1::/56"), None);
        let r = chains(Some(&npt()), &wans(), &half);
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
            lan_prefix: None,
        };
        let none = prefixes(None, None);
        let r = chains(Some(&masquerade), &wans(), &none);
        assert!(
            r.contains("oifname { \"eth1\", \"wwan0\" } masquerade"),
            "{r}"
        );
        assert!(!r.contains("dnat"), "{r}");
        assert!(r.contains("chain foreign_sources"), "{r}");
        assert_eq!(chains(None, &wans(), &none), "");
    }
}
