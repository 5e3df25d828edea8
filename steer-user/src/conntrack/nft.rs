//! steer's nftables table, `inet steer`: connection marks from the first packet (or from the
//! WAN a connection came in by), restored on every later packet from any interface but the
//! WANs (the LAN's, a DMZ's).

use std::process::Command;

use super::ConntrackError;
use crate::shown::first_few;

/// The nftables table steer owns (family inet).
pub const NFT_TABLE: &str = "steer";

/// The connection mark (under the mask) of a connection that started on the main table: its
/// first packet, from the LAN, carried no WAN mark (a set with `policy = "main"`, a policy
/// whose WANs were all down with `last_resort = "default"`, the default rule sending there).
/// Its later packets from the LAN lose the mark bits the classifier gave them, so they keep
/// leaving by the main table after a reload, a set edit or a WAN's return. It is the
/// unreachable last-resort value ([`crate::model::last_resort_marks`]): no WAN may use it, and
/// no ct mark held it before, since only WAN marks are copied into ct marks. It lives in
/// connection marks only: no packet carries it to routing (which would make it unreachable).
pub fn main_table_mark(mask: u32) -> u32 {
    crate::model::last_resort_marks(mask).0
}

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
/// A new connection from the LAN whose first packet has no mark under the mask (the main
/// table routes it) takes [`main_table_mark`]; its later packets from the LAN have their mark
/// bits cleared, so they stay on the main table whatever the classifier says by then.
///
/// `bridged` ([`bridge_netfilter`]): prerouting then sees a bridged LAN packet before the
/// classifier on the bridge, so it still restores a marked connection's mark there (the
/// classifier keeps it: `settings_flags::KEEP_MARK`), but a new connection has no mark yet:
/// the forward hook, after the classifier and routing, gives it the packet's. A connection
/// that started on the main table is not kept there then: prerouting cannot tell the
/// classifier so (a cleared mark is classified again, and no packet mark routes by the main
/// table), so it keeps ct mark 0 and moves to the WAN of the first WAN verdict its packets get.
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
    // Connections that started on the main table (not on a bridged LAN: see above). Not in the
    // output chain's map: that one sends the router's answers to a port forward by the WAN it
    // came in on, and such a connection came in by none.
    let main = main_table_mark(mask);
    let (mut restore_lan, mut main_rule) = (restore.clone(), String::new());
    if !bridged && !wans.is_empty() {
        settled.push(format!("{main:#x} . 0x0 : accept"));
        restore_lan.push_str(&format!(", {main:#x} : jump restore_main"));
        chains.push_str(&format!(
            "\tchain restore_main {{\n\t\tmeta mark set meta mark and {keep:#x}\n\t}}\n"
        ));
        // Reached by a packet from the LAN whose mark is no WAN's (those took their `goto`).
        // A last-resort mark (unreachable, blackhole) is no path to keep.
        main_rule = format!(
            "\t\tmeta mark and {mask:#x} == 0 ct mark set ct mark and {keep:#x} or {main:#x}\n"
        );
    }
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
            "\t\tiifname != {{ {} }} ct mark and {mask:#x} vmap {{ {restore_lan} }}\n",
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
             \t\tiifname vmap {{ {} }}\n{main_rule}\t}}\n",
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
    nft(&["-f", "-"], Some(&script)).map(drop)
}

/// Whether steer's table is there.
pub fn installed() -> bool {
    matches!(listing(), Ok(Some(_)))
}

/// Whether steer's table is there; an error when `nft` cannot be run at all, which installing
/// again would not mend.
pub fn table_present() -> Result<bool, ConntrackError> {
    listing().map(|l| l.is_some())
}

/// steer's table as `nft` lists it now, without handles and without the counters' values
/// (`-s`: they change with the traffic); `None` when it is not there. The drift check compares
/// it with the listing taken right after installing ([`drift`]): both come from the same `nft`
/// and the same kernel, so no rendering of ours has to match how an nft version prints a rule
/// back (`ct mark and 0xff00` comes back as `ct mark & 0x0000ff00`).
pub fn listing() -> Result<Option<String>, ConntrackError> {
    match nft(&["-s", "list", "table", "inet", NFT_TABLE], None) {
        Ok(listed) => Ok(Some(listed)),
        Err(ConntrackError::Nft(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What differs between steer's table as installed (`expected`, a [`listing`]) and as listed
/// now (`actual`); `None` when nothing does. Says it per object of the table (chain, counter,
/// set): an emptied chain (`nft flush table`, `nft flush chain`), one missing, one whose rules
/// changed, one added.
pub fn drift(expected: &str, actual: &str) -> Option<String> {
    if expected == actual {
        return None;
    }
    let described = differences(&objects(expected), &objects(actual), |a, b| a == b);
    Some(described.unwrap_or_else(|| {
        // The same objects with the same bodies in another order, or a change outside them.
        "its listing differs from what steer installed".to_owned()
    }))
}

/// What differs in the chains and their numbers of rules between the ruleset steer sent
/// (`rendered`, [`ruleset_with`]'s text) and a [`listing`]: nft prints rules back in its own
/// words, but one line per rule, in the same chains. The listing taken right after installing
/// must pass this before the drift check takes it as its reference: something that emptied the
/// table between the install and the listing (a firewall's next command) would otherwise be
/// what the check holds as right.
pub fn shape_drift(rendered: &str, listed: &str) -> Option<String> {
    let chains = |text| -> Vec<(String, Vec<&str>)> {
        objects(text)
            .into_iter()
            .filter(|(name, _)| name.starts_with("chain "))
            .collect()
    };
    let (want, have) = (chains(rendered), chains(listed));
    differences(&want, &have, |a, b| rule_count(a) == rule_count(b))
}

/// The objects of `want` missing, emptied or otherwise not `same` in `have`, and those added;
/// `None` when there are none.
fn differences(
    want: &[(String, Vec<&str>)],
    have: &[(String, Vec<&str>)],
    same: impl Fn(&[&str], &[&str]) -> bool,
) -> Option<String> {
    let mut found = Vec::new();
    let mut emptied = Vec::new();
    for (name, body) in want {
        match have.iter().find(|(n, _)| n == name) {
            None => found.push(format!("{name} is missing")),
            Some((_, now)) if same(body, now) => {}
            Some((_, now)) => {
                let (rules, left) = (rule_count(body), rule_count(now));
                if rules > 0 && left == 0 {
                    emptied.push(format!("{name} ({})", rules_text(rules)));
                } else {
                    found.push(format!(
                        "{name} has other rules ({left} where steer put {})",
                        rules_text(rules)
                    ));
                }
            }
        }
    }
    let with_rules = want.iter().filter(|(_, body)| rule_count(body) > 0).count();
    if !emptied.is_empty() && emptied.len() == with_rules {
        // `nft flush table`: every chain is there, and empty.
        let rules: usize = want.iter().map(|(_, body)| rule_count(body)).sum();
        found.insert(
            0,
            format!(
                "all its {} were removed, its chains left empty",
                rules_text(rules)
            ),
        );
    } else if !emptied.is_empty() {
        found.insert(0, format!("emptied: {}", first_few(&emptied, 3, ", ")));
    }
    for (name, _) in have {
        if !want.iter().any(|(n, _)| n == name) {
            found.push(format!("{name} was added"));
        }
    }
    if found.is_empty() {
        return None;
    }
    Some(first_few(&found, 4, "; "))
}

/// The objects of a table listing (`chain mark_connections`, `counter npt_inbound_refused`),
/// each with its body: the lines between its opening line (one tab in) and its closing brace.
fn objects(listing: &str) -> Vec<(String, Vec<&str>)> {
    let mut out: Vec<(String, Vec<&str>)> = Vec::new();
    let mut open = false;
    for line in listing.lines() {
        let depth = line.len() - line.trim_start_matches('\t').len();
        let text = line.trim();
        if depth == 1 && text.ends_with('{') {
            let name = text.trim_end_matches('{').trim();
            out.push((name.to_owned(), Vec::new()));
            open = true;
        } else if depth == 1 && text == "}" {
            open = false;
        } else if open
            && !text.is_empty()
            && let Some((_, body)) = out.last_mut()
        {
            body.push(line);
        }
    }
    out
}

fn rules_text(n: usize) -> String {
    format!("{n} rule{}", if n == 1 { "" } else { "s" })
}

/// The rules in a chain's body: its lines one level in, but the hook declaration (`type filter
/// hook prerouting ...`). A rule is one line.
fn rule_count(body: &[&str]) -> usize {
    body.iter()
        .filter(|l| {
            let depth = l.len() - l.trim_start_matches('\t').len();
            depth == 2 && !l.trim_start().starts_with("type ")
        })
        .count()
}

/// Removes steer's table (`steer stop`); fine when it is not there.
pub fn uninstall() -> Result<(), ConntrackError> {
    let script = format!("table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n");
    nft(&["-f", "-"], Some(&script)).map(drop)
}

/// Runs `nft`; its standard output.
fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, ConntrackError> {
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
        return Ok(String::from_utf8_lossy(&ran.stdout).into_owned());
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

    /// `nft -s list table inet steer` after installing (abridged; nft 1.0.6 prints it so).
    const LISTED: &str = "table inet steer {
\tcounter foreign_source_wan1 {
\t}

\tchain mark_connections {
\t\ttype filter hook prerouting priority mangle + 10; policy accept;
\t\tct mark & 0x0000ff00 . meta mark & 0x0000ff00 vmap { 0x00000100 . 0x00000100 : accept }
\t\tct state new ct mark & 0x0000ff00 == 0x00000000 jump new_connection
\t\tiifname != { \"eth1\" } ct mark & 0x0000ff00 vmap { 0x00000100 : jump restore_0x100 }
\t}

\tchain restore_0x100 {
\t\tmeta mark set meta mark & 0xffff01ff | 0x00000100
\t}
}
";

    #[test]
    fn the_same_listing_is_no_drift() {
        assert_eq!(drift(LISTED, LISTED), None);
    }

    /// `nft flush table inet steer` keeps the chains and removes every rule: the table is
    /// there, and marks nothing.
    #[test]
    fn a_flushed_table_is_drift_that_says_its_rules_went() {
        let flushed: String = LISTED
            .lines()
            .filter(|l| !l.starts_with("\t\t") || l.contains(" hook "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            drift(LISTED, &flushed).as_deref(),
            Some("all its 4 rules were removed, its chains left empty")
        );
        // `nft flush chain`: that chain is named.
        let one = LISTED.replace(
            "\t\tmeta mark set meta mark & 0xffff01ff | 0x00000100\n",
            "",
        );
        assert_eq!(
            drift(LISTED, &one).as_deref(),
            Some("emptied: chain restore_0x100 (1 rule)")
        );
    }

    #[test]
    fn a_rule_added_or_a_chain_deleted_is_drift() {
        let added = LISTED.replace(
            "\t\tmeta mark set",
            "\t\tip saddr 10.0.0.1 accept\n\t\tmeta mark set",
        );
        assert_eq!(
            drift(LISTED, &added).as_deref(),
            Some("chain restore_0x100 has other rules (2 where steer put 1 rule)")
        );
        let start = LISTED.find("\n\tchain restore_0x100").unwrap();
        let end = LISTED.rfind("\t}\n").unwrap() + 3;
        let deleted = format!("{}{}", &LISTED[..start], &LISTED[end..]);
        assert_eq!(
            drift(LISTED, &deleted).as_deref(),
            Some("chain restore_0x100 is missing")
        );
        let extra = LISTED.replace(
            "}\n\n\tchain mark",
            "}\n\n\tchain mine {\n\t}\n\n\tchain mark",
        );
        assert_eq!(
            drift(LISTED, &extra).as_deref(),
            Some("chain mine was added")
        );
    }

    /// The ruleset steer sends and nft's listing of it have the same chains and rules, in other
    /// words; a listing taken after something emptied the table does not.
    #[test]
    fn the_rendered_ruleset_and_its_listing_have_the_same_shape() {
        let wans = [MarkedWan {
            interface: "eth1".into(),
            mark: 0x100,
        }];
        let rendered = ruleset_with(0xff00, &wans, false, "\tcounter foreign_source_wan1 { }\n");
        let listed = "table inet steer {
\tcounter foreign_source_wan1 {
\t}

\tchain mark_connections {
\t\ttype filter hook prerouting priority mangle + 10; policy accept;
\t\tct mark & 0x0000ff00 . meta mark & 0x0000ff00 vmap { 0x0000ff00 . 0x00000000 : accept, 0x00000100 . 0x00000100 : accept }
\t\tct state new ct mark & 0x0000ff00 == 0x00000000 jump new_connection
\t\tiifname != { \"eth1\" } ct mark & 0x0000ff00 vmap { 0x00000100 : jump restore_0x100, 0x0000ff00 : jump restore_main }
\t}

\tchain connection_0x100 {
\t\tct mark set ct mark & 0xffff00ff | 0x00000100
\t}

\tchain restore_0x100 {
\t\tmeta mark set meta mark & 0xffff00ff | 0x00000100
\t}

\tchain restore_main {
\t\tmeta mark set meta mark & 0xffff00ff
\t}

\tchain mark_forwarded_answers {
\t\ttype route hook output priority mangle + 10; policy accept;
\t\tct status dnat ct direction reply ct mark & 0x0000ff00 vmap { 0x00000100 : jump restore_0x100 }
\t}

\tchain new_connection {
\t\tmeta mark & 0x0000ff00 vmap { 0x00000100 : goto connection_0x100 }
\t\tiifname vmap { \"eth1\" : goto connection_0x100 }
\t\tmeta mark & 0x0000ff00 == 0x00000000 ct mark set ct mark | 0x0000ff00
\t}
}
";
        assert_eq!(shape_drift(&rendered, listed), None);
        let flushed: String = listed
            .lines()
            .filter(|l| !l.starts_with("\t\t") || l.contains(" hook "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            shape_drift(&rendered, &flushed).as_deref(),
            Some("all its 10 rules were removed, its chains left empty")
        );
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
            "type filter hook prerouting priority mangle + 10; policy accept;\n\t\tct mark and 0xff00 . meta mark and 0xff00 vmap { 0x100 . 0x100 : accept, 0x200 . 0x200 : accept, 0xff00 . 0x0 : accept }\n\t\tct state new",
            "ct state new ct mark and 0xff00 == 0 jump new_connection",
            "\t\tiifname != { \"eth1\", \"wwan0\" } ct mark and 0xff00 vmap { 0x100 : jump restore_0x100, 0x200 : jump restore_0x200, 0xff00 : jump restore_main }",
            "type route hook output priority mangle + 10; policy accept;\n\t\tct status dnat ct direction reply ct mark and 0xff00 vmap { 0x100 : jump restore_0x100, 0x200 : jump restore_0x200 }",
            "meta mark and 0xff00 vmap { 0x100 : goto connection_0x100, 0x200 : goto connection_0x200 }\n\t\tiifname vmap { \"eth1\" : goto connection_0x100, \"wwan0\" : goto connection_0x200 }",
            "chain connection_0x200 {\n\t\tct mark set ct mark and 0xffff00ff or 0x200",
            "chain restore_0x100 {\n\t\tmeta mark set meta mark and 0xffff00ff or 0x100",
        ] {
            assert!(r.contains(line), "missing `{line}` in\n{r}");
        }
        assert!(r.contains("hook prerouting priority mangle + 10"));
    }

    /// A connection whose first packet from the LAN had no WAN mark (the main table routed it)
    /// takes the unreachable value in its connection mark, and its later LAN packets lose the
    /// mark bits the classifier gives them: it stays on the main table. Only connection marks
    /// hold that value: no rule writes it into a packet mark, which routing would drop.
    #[test]
    fn a_connection_that_started_on_the_main_table_is_kept_there() {
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
        assert_eq!(main_table_mark(0xff00), 0xff00);
        for line in [
            // Settled: an unsteered connection's packet the classifier also left unmarked.
            "vmap { 0x100 . 0x100 : accept, 0x200 . 0x200 : accept, 0xff00 . 0x0 : accept }",
            // After the WAN marks and the WAN interfaces took theirs: an unmarked first packet.
            "iifname vmap { \"eth1\" : goto connection_0x100, \"wwan0\" : goto connection_0x200 }\n\t\tmeta mark and 0xff00 == 0 ct mark set ct mark and 0xffff00ff or 0xff00\n\t}",
            "ct mark and 0xff00 vmap { 0x100 : jump restore_0x100, 0x200 : jump restore_0x200, 0xff00 : jump restore_main }",
            "chain restore_main {\n\t\tmeta mark set meta mark and 0xffff00ff\n\t}",
        ] {
            assert!(r.contains(line), "missing `{line}` in\n{r}");
        }
        // The router's answers to a port forward: WAN marks only.
        let output = r.find("chain mark_forwarded_answers").unwrap();
        let output = &r[output..r[output..].find("\t}\n").unwrap() + output];
        assert!(!output.contains("restore_main"), "{output}");
        // No packet mark is ever set to it.
        assert!(!r.contains("meta mark set meta mark and 0xffff00ff or 0xff00"));
        // On a bridged LAN prerouting runs before the classifier: nothing is kept on the main
        // table there (see `ruleset_with`).
        let bridged = ruleset_with(0xff00, &wans, true, "");
        assert!(!bridged.contains("0xff00 . 0x0") && !bridged.contains("restore_main"));
        assert!(!bridged.contains("or 0xff00"), "{bridged}");
    }
}
