//! steer's nftables table, `inet steer`: connection marks from the first packet (or from the
//! WAN a connection came in by), restored on every later packet from any interface but the
//! WANs (the LAN's, a DMZ's).

use std::process::Command;

use super::ConntrackError;

/// The nftables table steer owns (family inet).
pub const NFT_TABLE: &str = "steer";

/// A WAN as the ruleset needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkedWan {
    pub interface: String,
    pub mark: u32,
}

/// The ruleset of `inet steer` for WANs `wans` (see the module documentation of [`super`]).
pub fn ruleset(mask: u32, wans: &[MarkedWan]) -> String {
    ruleset_with(mask, wans, false, "")
}

/// Whether br_netfilter passes bridged IPv4 or IPv6 packets through netfilter in this network
/// namespace (`net.bridge.bridge-nf-call-iptables` or `-ip6tables` is 1; the files exist only
/// while br_netfilter is loaded). Docker loads it, and a new namespace then starts with both on.
pub fn bridge_netfilter() -> bool {
    ["iptables", "ip6tables"].iter().any(|t| {
        std::fs::read_to_string(format!("/proc/sys/net/bridge/bridge-nf-call-{t}"))
            .is_ok_and(|v| v.trim() == "1")
    })
}

/// [`ruleset`] with more chains of other parts of steer (snoop mode's) in the same table.
///
/// Every packet crosses this hook, so it takes few rules whatever the number of WANs. The
/// first is the common case: a packet whose mark already is its connection's (the classifier
/// gave it the WAN its connection is on) has nothing to do here, found by one lookup of the
/// pair of marks; it skips the interface name, whose copy and compare cost more than the rest
/// (the forwarding benchmark's variants: README, Benchmarks, stop 35). Then one branch on the
/// connection's state and a map lookup to the WAN's chain: a new connection by its packet mark
/// (the classifier's verdict; it wins over the input interface), else one coming in through a
/// WAN by that interface. A WAN's chain writes its mark under the mask; its name carries the
/// mark, so chains stay unique.
///
/// `bridged` ([`bridge_netfilter`]): prerouting then sees a bridged LAN packet before the
/// classifier on the bridge, so it still restores a marked connection's mark there (the
/// classifier keeps it: `settings_flags::KEEP_MARK`), but a new connection has no mark yet:
/// the forward hook, after the classifier and routing, gives it the packet's.
pub fn ruleset_with(mask: u32, wans: &[MarkedWan], bridged: bool, extra: &str) -> String {
    let keep = !mask;
    let mut chains = String::new();
    let mut by_interface = Vec::new();
    let mut by_mark = Vec::new();
    let mut settled = Vec::new();
    for w in wans {
        let (iface, mark) = (quoted(&w.interface), w.mark);
        by_interface.push(format!("{iface} : goto connection_{mark:#x}"));
        by_mark.push(format!("{mark:#x} : goto connection_{mark:#x}"));
        settled.push(format!("{mark:#x} . {mark:#x} : accept"));
        chains.push_str(&format!(
            "\tchain connection_{mark:#x} {{\n\t\tct mark set ct mark and {keep:#x} or {mark:#x}\n\t}}\n\
             \tchain restore_{mark:#x} {{\n\t\tmeta mark set meta mark and {keep:#x} or {mark:#x}\n\t}}\n"
        ));
    }
    let restore: String = wans
        .iter()
        .map(|w| format!("{mark:#x} : jump restore_{mark:#x}", mark = w.mark))
        .collect::<Vec<_>>()
        .join(", ");
    let mut rules = String::new();
    if !wans.is_empty() {
        // `accept` ends only this chain: the other chains of the table hook on their own.
        rules.push_str(&format!(
            "\t\tct mark and {mask:#x} . meta mark and {mask:#x} vmap {{ {} }}\n",
            settled.join(", ")
        ));
        // A connection is marked once, by its first packet: a later packet still in state
        // `new` (no reply yet) would otherwise write the mark again, and its NAT binding was
        // made by the first one anyway. Every packet from the LAN of a marked connection then
        // takes the connection's mark back, in any state: one without a reply yet (a retried
        // DNS query, one-way UDP) keeps the WAN its NAT binding is for.
        rules.push_str(&format!(
            "\t\tct state new ct mark and {mask:#x} == 0 jump new_connection\n"
        ));
        // From every interface but the WANs: the LAN's, and a DMZ's or a VPN's whose port
        // forwards came in through a WAN. A packet coming in from a WAN keeps no mark: routed
        // by its connection's it would turn back out.
        let wan_names: Vec<String> = wans.iter().map(|w| quoted(&w.interface)).collect();
        rules.push_str(&format!(
            "\t\tiifname != {{ {} }} ct mark and {mask:#x} vmap {{ {restore} }}\n",
            wan_names.join(", ")
        ));
        // The router's answers to a port forward to itself (`dnat to` its LAN address: the
        // answer's source is no WAN address, which the routing rules would place) leave by
        // the WAN the connection came in on: a route chain routes them again by the mark.
        // Only forwarded-to connections: a LAN client's connection to the router may carry a
        // mark (a classifier verdict while its address was not local yet), and its answers
        // must stay on the LAN.
        chains.push_str(&format!(
            "\tchain mark_forwarded_answers {{\n\
             \t\ttype route hook output priority mangle + 10; policy accept;\n\
             \t\tct status dnat ct direction reply ct mark and {mask:#x} vmap {{ {restore} }}\n\t}}\n"
        ));
        chains.push_str(&format!(
            "\tchain new_connection {{\n\
             \t\tmeta mark and {mask:#x} vmap {{ {} }}\n\
             \t\tiifname vmap {{ {} }}\n\t}}\n",
            by_mark.join(", "),
            by_interface.join(", ")
        ));
        if bridged {
            chains.push_str(&format!(
                "\tchain mark_bridged_connections {{\n\
                 \t\ttype filter hook forward priority mangle + 10; policy accept;\n\
                 \t\tct mark and {mask:#x} == 0 meta mark and {mask:#x} vmap {{ {} }}\n\t}}\n",
                by_mark.join(", ")
            ));
        }
    }
    format!(
        "table inet {NFT_TABLE} {{\n\tchain mark_connections {{\n\
         \t\ttype filter hook prerouting priority mangle + 10; policy accept;\n{rules}\t}}\n{chains}{extra}}}\n"
    )
}

/// An interface name as an nftables string. nft has no escape inside a quoted string (a `"`
/// ends it) and reads a trailing `*` as a wildcard, so only names the configuration takes
/// (letters, digits, `-`, `_`, `.`: [`crate::config::ifname_problem`]) may go in; anything else
/// would change the ruleset's syntax. [`install_with`] refuses such names before rendering.
fn quoted(name: &str) -> String {
    assert!(
        crate::config::ifname_problem(name).is_none(),
        "interface name {:?} reached the nftables ruleset unchecked",
        crate::shown::shown(name)
    );
    format!("\"{name}\"")
}

/// The first WAN interface name of `wans` that cannot go into the ruleset, with why.
fn unquotable(wans: &[MarkedWan]) -> Option<ConntrackError> {
    wans.iter().find_map(|w| {
        crate::config::ifname_problem(&w.interface).map(|problem| {
            ConntrackError::Nft(format!(
                "not sent to nft: WAN interface `{}`: {problem}",
                crate::shown::shown(&w.interface)
            ))
        })
    })
}

/// Installs (or replaces, in one transaction) steer's nftables table.
pub fn install(mask: u32, wans: &[MarkedWan]) -> Result<(), ConntrackError> {
    install_with(mask, wans, false, "")
}

/// [`install`] with `extra` chains in the table (see [`ruleset_with`]).
pub fn install_with(
    mask: u32,
    wans: &[MarkedWan],
    bridged: bool,
    extra: &str,
) -> Result<(), ConntrackError> {
    if let Some(e) = unquotable(wans) {
        return Err(e);
    }
    // Declaring the table first makes the delete succeed when it does not exist yet.
    let script = format!(
        "table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n{}",
        ruleset_with(mask, wans, bridged, extra)
    );
    nft(&["-f", "-"], Some(&script))
}

/// Whether steer's table is there.
pub fn installed() -> bool {
    matches!(table_present(), Ok(true))
}

/// Whether steer's table is there (drift check); an error when `nft` cannot be run at all,
/// which installing again would not mend.
pub fn table_present() -> Result<bool, ConntrackError> {
    match nft(&["list", "table", "inet", NFT_TABLE], None) {
        Ok(()) => Ok(true),
        Err(ConntrackError::Nft(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes steer's table (`steer stop`); fine when it is not there.
pub fn uninstall() -> Result<(), ConntrackError> {
    let script = format!("table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n");
    nft(&["-f", "-"], Some(&script))
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<(), ConntrackError> {
    let mut command = Command::new("nft");
    command.args(args);
    let ran = crate::tool::run(command, stdin.map(str::as_bytes)).map_err(ConntrackError::NoNft)?;
    let Some(ran) = ran else {
        return Err(ConntrackError::Nft(format!(
            "nft did not finish within {} s and was killed",
            crate::tool::TIMEOUT.as_secs()
        )));
    };
    if ran.status.success() {
        return Ok(());
    }
    Err(ConntrackError::Nft(
        String::from_utf8_lossy(&ran.stderr).trim().to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interface_name_that_would_change_the_syntax_is_never_rendered() {
        for bad in ["t7\"}x", "t7c*", "a\\"] {
            let wans = [MarkedWan {
                interface: bad.into(),
                mark: 0x100,
            }];
            let e = install(0xff00, &wans).unwrap_err();
            assert!(e.to_string().contains("not sent to nft"), "{e}");
            let rendered = std::panic::catch_unwind(|| ruleset(0xff00, &wans));
            assert!(rendered.is_err(), "{bad:?} rendered");
        }
    }

    #[test]
    fn the_ruleset_marks_new_connections_and_restores_established_ones() {
        let wans = [
            MarkedWan {
                interface: "eth1".into(),
                mark: 0x100,
            },
            MarkedWan {
                interface: "wwan0".into(),
                mark: 0x200,
            },
        ];
        let r = ruleset(0xff00, &wans);
        for line in [
            "type filter hook prerouting priority mangle + 10; policy accept;\n\t\tct mark and 0xff00 . meta mark and 0xff00 vmap { 0x100 . 0x100 : accept, 0x200 . 0x200 : accept }\n\t\tct state new",
            "ct state new ct mark and 0xff00 == 0 jump new_connection",
            "\t\tiifname != { \"eth1\", \"wwan0\" } ct mark and 0xff00 vmap { 0x100 : jump restore_0x100, 0x200 : jump restore_0x200 }",
            "type route hook output priority mangle + 10; policy accept;\n\t\tct status dnat ct direction reply ct mark and 0xff00 vmap { 0x100 : jump restore_0x100, 0x200 : jump restore_0x200 }",
            "meta mark and 0xff00 vmap { 0x100 : goto connection_0x100, 0x200 : goto connection_0x200 }\n\t\tiifname vmap { \"eth1\" : goto connection_0x100, \"wwan0\" : goto connection_0x200 }",
            "chain connection_0x200 {\n\t\tct mark set ct mark and 0xffff00ff or 0x200",
            "chain restore_0x100 {\n\t\tmeta mark set meta mark and 0xffff00ff or 0x100",
        ] {
            assert!(r.contains(line), "missing `{line}` in\n{r}");
        }
        assert!(r.contains("hook prerouting priority mangle + 10"));
    }
}
