//! mwan3's rules as ordered sets, in file order; trailing catch-alls as the default.

use std::collections::BTreeMap;

use super::{MAX_ORDERED, is_true};
use crate::import::{
    NoteKind, Notes, Options, is_default_route, ports, prefix, proto_word, steer_name,
    uci::Section,
    write::{Out, SetOut, list},
};

const RULE_KEYS: &[&str] = &[
    "proto",
    "src_ip",
    "src_port",
    "dest_ip",
    "dest_port",
    "ipset",
    "use_policy",
    "family",
    "sticky",
    "timeout",
    "logging",
    "src_iface",
];

/// One mwan3 rule as steer sees it.
struct Rule {
    set: SetOut,
    /// No condition but a default route (or none) and proto all: a candidate for `[default]`.
    catch_all: Option<&'static str>,
    line: usize,
}

pub(super) fn rules(
    sections: &[Section],
    policies: &BTreeMap<String, String>,
    opts: &Options,
    notes: &mut Notes,
    out: &mut Out,
) {
    let mut taken = Vec::new();
    let mut rules = Vec::new();
    for s in sections.iter().filter(|s| s.kind == "rule") {
        notes.unknown_options(s, RULE_KEYS);
        if let Some(r) = rule(s, policies, opts, notes, out, &mut taken) {
            rules.push(r);
        }
    }
    // Trailing catch-alls with one policy covering both families are the default rule.
    let mut tail = rules.len();
    while tail > 0 && rules[tail - 1].catch_all.is_some() && rules[tail - 1].set.disabled.is_none()
    {
        tail -= 1;
    }
    let trailing = &rules[tail..];
    let families: Vec<&str> = trailing.iter().filter_map(|r| r.catch_all).collect();
    let covers_both =
        families.contains(&"any") || (families.contains(&"ipv4") && families.contains(&"ipv6"));
    let one_policy = trailing
        .windows(2)
        .all(|w| w[0].set.policy == w[1].set.policy);
    if !trailing.is_empty() && covers_both && one_policy {
        let policy = trailing[0].set.policy.clone();
        let lines: Vec<String> = trailing.iter().map(|r| r.line.to_string()).collect();
        if policy != "main" {
            out.default = Some((
                policy,
                format!(
                    "{}:{}: the catch-all rule(s) at the end",
                    opts.file,
                    lines.join(", ")
                ),
            ));
        } else {
            notes.add(
                NoteKind::Check,
                trailing[0].line,
                "the catch-all rule(s) at the end use the main table",
                "no [default]: traffic no rule matches is left unmarked and follows the main table",
            );
        }
        rules.truncate(tail);
    } else if !trailing.is_empty() && !families.contains(&"any") && one_policy_per_family(trailing)
    {
        // One family's catch-all and the other's, of different policies (mwan3's
        // default_rule_v4 and default_rule_v6): plain sets of 0.0.0.0/0 and ::/0, which every
        // longer prefix of a plain set wins over, as it did in mwan3 when written before them.
        // As ordered rules they would come before every plain set added later.
        for r in &mut rules[tail..] {
            r.set.lines.retain(|l| !l.starts_with("proto = "));
            notes.add(
                NoteKind::Check,
                r.line,
                format!(
                    "{}: a catch-all of one family, written as a plain set (not an ordered rule)",
                    r.set.name
                ),
                "every plain set's longer prefix wins over it, as rules written before it did in mwan3",
            );
        }
    }
    let ordered = rules
        .iter()
        .filter(|r| {
            r.set.disabled.is_none() && r.set.lines.iter().any(|l| l.starts_with("proto = "))
        })
        .count();
    if ordered > MAX_ORDERED {
        notes.add(
            NoteKind::Check,
            rules[MAX_ORDERED].line,
            format!("{ordered} rules; steer takes at most {MAX_ORDERED} ordered rules"),
            "merge rules that share a policy (prefixes and ports are lists)",
        );
    }
    out.sets.extend(rules.into_iter().map(|r| r.set));
}

/// Whether the catch-alls `trailing` give each family one policy.
fn one_policy_per_family(trailing: &[Rule]) -> bool {
    ["ipv4", "ipv6"].iter().all(|family| {
        let mut policies = trailing
            .iter()
            .filter(|r| r.catch_all == Some(family))
            .map(|r| &r.set.policy);
        let first = policies.next();
        policies.all(|p| Some(p) == first)
    })
}

/// The prefixes of `key` (iptables takes `a,b`), or `None` when one of them is not an
/// address (a name, a negation, a typo; each reported): the whole rule is then left out, since
/// dropping only that value would widen the rule, to every address when it was the only one.
fn prefixes(s: &Section, key: &str, notes: &mut Notes) -> Option<Vec<String>> {
    let values: Vec<String> = s
        .items(key)
        .iter()
        .flat_map(|v| v.split(',').map(str::to_owned).collect::<Vec<_>>())
        .filter(|v| !v.is_empty())
        .collect();
    let parsed: Vec<Option<String>> = values
        .iter()
        .map(|v| prefix(v, notes, s.line_of(key)))
        .collect();
    parsed.into_iter().collect()
}

/// The rule's prefixes of `key`, or why the rule is left out: an address steer cannot take,
/// or one of the other family than the rule's `family` (mwan3 then fails to install the rule
/// in iptables or ip6tables, so it never matched).
fn rule_prefixes(s: &Section, key: &str, label: &str, notes: &mut Notes) -> Option<Vec<String>> {
    let Some(prefixes) = prefixes(s, key, notes) else {
        notes.add(
            NoteKind::NotImported,
            s.line_of(key),
            format!("{label}: left out whole, for the {key} above"),
            "without that address the rule would match more than it did in mwan3; write it with addresses (a domain's in a set's domains)",
        );
        return None;
    };
    let other = match s.value("family") {
        Some("ipv4") => prefixes.iter().find(|p| p.contains(':')),
        Some("ipv6") => prefixes.iter().find(|p| !p.contains(':')),
        _ => None,
    };
    if let Some(other) = other {
        notes.add(
            NoteKind::NotImported,
            s.line_of(key),
            format!(
                "{label}: {key} {other} is not of the rule's family {}",
                s.value("family").unwrap_or_default()
            ),
            "mwan3 cannot install such a rule (iptables refuses it), so it never matched; fix the family or the address",
        );
        return None;
    }
    Some(prefixes)
}

/// A rule being built: its set's lines, whether it has conditions beyond its prefixes, and
/// why it is written commented out (if it is).
struct Draft {
    label: String,
    lines: Vec<String>,
    conditions: bool,
    disabled: Option<String>,
}

fn rule(
    s: &Section,
    policies: &BTreeMap<String, String>,
    opts: &Options,
    notes: &mut Notes,
    out: &mut Out,
    taken: &mut Vec<String>,
) -> Option<Rule> {
    let mut d = Draft {
        label: s.label(),
        lines: Vec::new(),
        conditions: false,
        disabled: None,
    };
    if !mwan3_uses(s, &d.label, notes) {
        return None;
    }
    let policy = target_policy(s, policies, &mut d, notes)?;
    let proto_raw = s.value("proto").unwrap_or("all");
    let Some(proto) = proto_word(proto_raw) else {
        notes.add(
            NoteKind::NotImported,
            s.line_of("proto"),
            format!("{}: proto `{proto_raw}`", d.label),
            "use tcp, udp, icmp, all or a protocol number",
        );
        return None;
    };
    let catch_all = addresses(s, &mut d, notes)?;
    let proto = if proto == "icmp" {
        // iptables and ip6tables both read `-p icmp` as protocol 1; steer's `icmp` would be
        // ICMPv6 for IPv6.
        d.lines.push(
            "# mwan3's proto 'icmp' is `-p icmp` in iptables and ip6tables: protocol 1 (not ICMPv6)"
                .to_owned(),
        );
        "1".to_owned()
    } else {
        proto
    };
    d.lines.push(list("proto", std::slice::from_ref(&proto)));
    d.conditions |= proto != "any";
    port_conditions(s, &proto, proto_raw, &mut d, notes);
    source_interface(s, opts, &mut d, notes, out);
    not_expressible(s, &policy, &mut d, notes);
    let catch_all = catch_all.filter(|_| !d.conditions && d.disabled.is_none());
    let name = steer_name(
        s.name.as_deref().unwrap_or(""),
        &format!("rule{}", s.index),
        taken,
    );
    Some(Rule {
        set: SetOut {
            comment: format!("{}:{}: {}", opts.file, s.line, d.label),
            disabled: d.disabled,
            name,
            policy,
            lines: d.lines,
        },
        catch_all,
        line: s.line,
    })
}

/// Whether mwan3 itself sets this rule up (it skips names over 15 characters and rules
/// without a policy); reports the ones it does not.
fn mwan3_uses(s: &Section, label: &str, notes: &mut Notes) -> bool {
    if s.name.as_ref().is_some_and(|n| n.len() > 15) {
        notes.add(
            NoteKind::NotImported,
            s.line,
            format!("{label}: mwan3 ignores rules with names over 15 characters"),
            "shorten the name in mwan3 if the rule was meant to work",
        );
        return false;
    }
    if s.value("use_policy").is_none() {
        notes.add(
            NoteKind::NotImported,
            s.line,
            format!("{label} has no use_policy (mwan3 ignores it)"),
            "",
        );
        return false;
    }
    true
}

/// The steer policy of `use_policy`: `default` is the main table; `unreachable`,
/// `blackhole` and policies that were not imported leave the rule commented out.
fn target_policy(
    s: &Section,
    policies: &BTreeMap<String, String>,
    d: &mut Draft,
    notes: &mut Notes,
) -> Option<String> {
    let use_policy = s.value("use_policy")?;
    let label = &d.label;
    Some(match use_policy {
        "default" => "main".to_owned(),
        "unreachable" | "blackhole" => {
            notes.add(
                NoteKind::NotImported,
                s.line_of("use_policy"),
                format!("{label}: use_policy `{use_policy}`"),
                format!(
                    "steer rejects or drops traffic only as a policy's last_resort: use a firewall rule, or a policy whose last_resort = \"{use_policy}\""
                ),
            );
            d.disabled = Some(format!("use_policy {use_policy}"));
            use_policy.to_owned()
        }
        p => match policies.get(p) {
            Some(steer) => steer.clone(),
            None => {
                notes.add(
                    NoteKind::NotImported,
                    s.line_of("use_policy"),
                    format!("{label}: policy `{p}` is not imported"),
                    "",
                );
                d.disabled = Some(format!("policy {p} not imported"));
                p.to_owned()
            }
        },
    })
}

/// `match`, `prefixes`, `files` and `src_prefixes` from `dest_ip`, `src_ip`, `ipset` and
/// `family`, or `None` when the rule is left out (see [`rule_prefixes`]). Otherwise, the
/// family the rule would catch whole ("ipv4", "ipv6", "any") if its addresses are default
/// routes or absent.
fn addresses(s: &Section, d: &mut Draft, notes: &mut Notes) -> Option<Option<&'static str>> {
    let family = s.value("family").unwrap_or("any");
    let dst = rule_prefixes(s, "dest_ip", &d.label, notes)?;
    let src = rule_prefixes(s, "src_ip", &d.label, notes)?;
    if let Some(set) = s.value("ipset") {
        ipset_addresses(s, set, &dst, &src, d, notes);
        return Some(None);
    }
    if !dst.is_empty() {
        d.lines.push("match = \"dst\"".to_owned());
        d.lines.push(list("prefixes", &dst));
        if !src.is_empty() {
            d.lines.push(list("src_prefixes", &src));
            d.conditions = true;
        }
    } else if !src.is_empty() {
        d.lines.push("match = \"src\"".to_owned());
        d.lines.push(list("prefixes", &src));
        d.conditions = true;
    } else if family == "ipv4" || family == "ipv6" {
        // A family of its own: the default route of that family is what selects it.
        let all = if family == "ipv4" {
            "0.0.0.0/0"
        } else {
            "::/0"
        };
        d.lines.push("match = \"dst\"".to_owned());
        d.lines.push(list("prefixes", &[all.to_owned()]));
    }
    if dst.iter().chain(&src).any(|p| is_default_route(p))
        || (dst.is_empty() && src.is_empty() && family != "any")
    {
        d.lines.push("allow_default_route = true".to_owned());
    }
    if !(src.is_empty() && dst.iter().all(|p| is_default_route(p))) {
        return Some(None);
    }
    let has = |p: &str| dst.iter().any(|x| x == p);
    Some(Some(
        match (dst.is_empty(), has("0.0.0.0/0"), has("::/0")) {
            (false, true, true) => "any",
            (false, true, false) => "ipv4",
            (false, false, _) => "ipv6",
            (true, ..) => match family {
                "ipv4" => "ipv4",
                "ipv6" => "ipv6",
                _ => "any",
            },
        },
    ))
}

/// mwan3 matches `-m set --match-set NAME dst` and `-s src_ip` and `-d dest_ip`, all of them:
/// the set's members are the rule's destinations (`files`, read from the exported set) and
/// `src_ip` its sources. A `dest_ip` too would need both destination lists to hold the
/// address, which steer's single destination list (`prefixes` and `files` together) cannot
/// say: that rule is written commented out.
fn ipset_addresses(
    s: &Section,
    set: &str,
    dst: &[String],
    src: &[String],
    d: &mut Draft,
    notes: &mut Notes,
) {
    d.lines.push("match = \"dst\"".to_owned());
    d.lines.push(list("files", &[format!("{set}.txt")]));
    if !src.is_empty() {
        d.lines.push(list("src_prefixes", src));
        if src.iter().any(|p| is_default_route(p)) {
            d.lines.push("allow_default_route = true".to_owned());
        }
    }
    d.conditions = true;
    if !dst.is_empty() {
        notes.add(
            NoteKind::Check,
            s.line_of("dest_ip"),
            format!(
                "{}: dest_ip {} and ipset `{set}` must both hold the destination in mwan3; steer's prefixes and files are one list (either one matches)",
                d.label,
                dst.join(",")
            ),
            format!(
                "the rule is written commented out, without dest_ip: put in {set}.txt only the members of `{set}` inside {}, then uncomment it",
                dst.join(", ")
            ),
        );
        d.disabled = Some(format!(
            "dest_ip and ipset {set}: steer cannot intersect two destination lists"
        ));
    }
}

/// `dports` and `sports` from `dest_port` and `src_port`, which mwan3 only applies to tcp and
/// udp.
fn port_conditions(s: &Section, proto: &str, proto_raw: &str, d: &mut Draft, notes: &mut Notes) {
    for (key, steer_key) in [("dest_port", "dports"), ("src_port", "sports")] {
        let Some(v) = s.value(key) else { continue };
        if proto != "tcp" && proto != "udp" {
            notes.add(
                NoteKind::Check,
                s.line_of(key),
                format!("{}: {key} with proto `{proto_raw}`", d.label),
                "mwan3 ignores ports unless proto is tcp or udp; left out",
            );
            continue;
        }
        match ports(v) {
            Ok(p) => {
                d.lines.push(list(steer_key, &p));
                d.conditions = true;
            }
            Err(bad) => {
                notes.add(
                    NoteKind::NotImported,
                    s.line_of(key),
                    format!("{}: {key} `{bad}` is not a port or range", d.label),
                    "write ports as 80,443 or 1000:2000 (a service name steer does not know: \
                     its number)",
                );
                d.disabled = Some(format!("bad {key}"));
            }
        }
    }
}

/// `in` from `src_iface` (its device joins general.lan, which `in` must name).
fn source_interface(s: &Section, opts: &Options, d: &mut Draft, notes: &mut Notes, out: &mut Out) {
    let Some(iface) = s.value("src_iface") else {
        return;
    };
    let dev = opts
        .network
        .as_ref()
        .and_then(|n| n.device(iface))
        .unwrap_or(iface)
        .to_owned();
    if opts.network.is_none() {
        notes.add(
            NoteKind::Check,
            s.line_of("src_iface"),
            format!("{}: src_iface `{iface}` is a logical name", d.label),
            "steer needs the device (br-lan): pass --network /etc/config/network or edit `in`",
        );
    }
    if !out.lan.contains(&dev) {
        out.lan.push(dev.clone());
    }
    d.lines.push(list("in", &[dev]));
    d.conditions = true;
}

/// `ipset` (the rule is written commented out until the set is exported to the file it
/// reads), `sticky` and `logging`: reported with what to do instead.
fn not_expressible(s: &Section, policy: &str, d: &mut Draft, notes: &mut Notes) {
    let label = &d.label;
    if let Some(set) = s.value("ipset") {
        notes.add(
            NoteKind::NotImported,
            s.line_of("ipset"),
            format!("{label}: ipset `{set}` is defined outside mwan3"),
            format!(
                "export it with `ipset save {set} | awk '$1 == \"add\" {{print $3}}' > {set}.txt`, then uncomment the set, which reads it with files = [\"{set}.txt\"]"
            ),
        );
        d.disabled = d
            .disabled
            .take()
            .or(Some(format!("needs {set}.txt exported from ipset {set}")));
    }
    if is_true(s.value("sticky")) {
        notes.add(
            NoteKind::NotImported,
            s.line_of("sticky"),
            format!("{label}: sticky (and its timeout)"),
            format!(
                "steer keeps every connection on its WAN for its whole life; to keep each LAN host on one WAN across connections set hash = \"src\" on policy `{policy}`"
            ),
        );
    }
    if is_true(s.value("logging")) {
        notes.add(
            NoteKind::NotImported,
            s.line_of("logging"),
            format!("{label}: logging"),
            "`steer explain` shows which rule a packet matches; `steer dump counters` counts them",
        );
    }
}
