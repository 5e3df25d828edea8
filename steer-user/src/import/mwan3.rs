//! `steer import mwan3`: `/etc/config/mwan3` as steer configuration.
//!
//! What maps to what, as mwan3's own scripts (`/lib/mwan3/mwan3.sh`, `mwan3track`) read it:
//! - `globals.mmx_mask` -> `general.mark_mask`.
//! - the n-th `interface` section (counting disabled ones, from 1) has table n and the mark
//!   made of n's bits spread over the mask's set bits (`mwan3_id2mask`); enabled ones become
//!   WANs. Interfaces on the same device (`wan` and `wan6`) are one steer WAN, since a steer
//!   WAN carries both families, each with its own health.
//! - tracking keys -> `[wan.track]` (seconds become milliseconds).
//! - a policy's members (metric, weight) and `last_resort` -> `[[policy]]`.
//! - every rule -> an ordered `[[set]]` (first match wins, in file order, as in mwan3's
//!   iptables chain); trailing catch-all rules -> `[default]`.

use std::collections::BTreeMap;

use super::{
    ImportError, Imported, NoteKind, Notes, Options, is_default_route, ports, prefix, proto_word,
    steer_name,
    uci::{self, Section},
    write::{Out, PolicyOut, SetOut, WanOut, list},
};

/// mwan3's default mask (`config_get MMX_MASK globals mmx_mask '0x3F00'`).
pub const DEFAULT_MMX_MASK: u32 = 0x3F00;
/// steer's limit on WANs.
const MAX_WANS: usize = 32;
/// steer's limit on ordered rules.
const MAX_ORDERED: usize = 64;

/// Imports `text`, an mwan3 configuration.
pub fn import(text: &str, opts: &Options) -> Result<Imported, ImportError> {
    let sections = uci::parse(text, &opts.file)?;
    let mut notes = Notes::new(&opts.file);
    let mut out = Out {
        source: opts.file.clone(),
        lan: opts.lan.clone(),
        ..Out::default()
    };
    let mask = globals(&sections, &mut notes);
    out.mark_mask = Some(mask);
    let wans = interfaces(&sections, mask, opts, &mut notes, &mut out);
    let members = members(&sections, &mut notes);
    let policies = policies(&sections, &members, &wans, &mut notes, &mut out);
    rules(&sections, &policies, opts, &mut notes, &mut out);
    for (i, s) in sections.iter().enumerate() {
        if !matches!(
            s.kind.as_str(),
            "globals" | "interface" | "member" | "policy" | "rule"
        ) {
            notes.add(
                NoteKind::Unknown,
                s.line,
                format!("section type `{}` ({})", s.kind, s.label(i)),
                "mwan3 reads globals, interface, member, policy and rule sections",
            );
        }
    }
    let notes = notes.into_vec();
    Ok(Imported {
        toml: out.render(&notes),
        notes,
    })
}

/// The mark of interface number `id`: its bits spread over the set bits of `mask`, lowest
/// first (mwan3's `mwan3_id2mask`).
pub fn id_to_mark(id: u32, mask: u32) -> u32 {
    let mut mark = 0;
    let mut bit = 0;
    for b in 0..32 {
        if mask >> b & 1 == 1 {
            if id >> bit & 1 == 1 {
                mark |= 1 << b;
            }
            bit += 1;
        }
    }
    mark
}

fn parse_int(v: &str) -> Option<u32> {
    let v = v.trim();
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// `config_get_bool`'s true words.
fn is_true(v: Option<&str>) -> bool {
    matches!(v, Some("1" | "on" | "true" | "yes" | "enabled"))
}

fn globals(sections: &[Section], notes: &mut Notes) -> u32 {
    let mut mask = DEFAULT_MMX_MASK;
    for (i, s) in sections
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind == "globals")
    {
        if let Some(v) = s.value("mmx_mask") {
            match parse_int(v).filter(|m| m.count_ones() >= 3) {
                Some(m) => mask = m,
                None => notes.add(
                    NoteKind::NotImported,
                    s.line_of("mmx_mask"),
                    format!("mmx_mask `{v}` is not a mask of at least 3 bits"),
                    format!("mwan3's default {DEFAULT_MMX_MASK:#x} is used"),
                ),
            }
        }
        for (key, hint) in [
            (
                "rt_table_lookup",
                "steer never steers destinations of the main table's routes (general.local = \"routes\"); add other tables' destinations to general.local_prefixes",
            ),
            (
                "logging",
                "use `steer explain` and `steer dump counters` to see what rules match",
            ),
            ("loglevel", ""),
            (
                "local_source",
                "steer classifies traffic from the LAN only; the router's own traffic follows the main table",
            ),
            (
                "source_routing",
                "steer's WAN tables hold plain default routes",
            ),
        ] {
            if s.get(key).is_some() {
                notes.add(
                    NoteKind::NotImported,
                    s.line_of(key),
                    format!("globals.{key}"),
                    hint,
                );
            }
        }
        notes.unknown_options(
            s,
            i,
            &[
                "mmx_mask",
                "rt_table_lookup",
                "logging",
                "loglevel",
                "local_source",
                "source_routing",
                "enabled",
            ],
        );
    }
    mask
}

const INTERFACE_KEYS: &[&str] = &[
    "enabled",
    "family",
    "track_ip",
    "track_method",
    "reliability",
    "count",
    "timeout",
    "interval",
    "failure_interval",
    "recovery_interval",
    "keep_failure_interval",
    "down",
    "up",
    "size",
    "max_ttl",
    "check_quality",
    "failure_latency",
    "failure_loss",
    "recovery_latency",
    "recovery_loss",
    "initial_state",
    "flush_conntrack",
    "httping_ssl",
];

/// A WAN being built: one device, from one or more mwan3 interfaces.
struct WanBuild {
    out: WanOut,
    method: &'static str,
    targets: Vec<String>,
    target_line: usize,
    reliability: Option<(u32, usize)>,
}

/// Enabled interfaces as WANs; returns mwan3 interface name -> steer WAN name.
fn interfaces(
    sections: &[Section],
    mask: u32,
    opts: &Options,
    notes: &mut Notes,
    out: &mut Out,
) -> BTreeMap<String, String> {
    let max_id = (1u32 << mask.count_ones().min(31)) - 1 - 3;
    let mut by_iface = BTreeMap::new();
    let mut builds: Vec<WanBuild> = Vec::new();
    let mut taken = Vec::new();
    let mut id = 0u32;
    for (i, s) in sections.iter().enumerate() {
        if s.kind != "interface" {
            continue;
        }
        id += 1;
        notes.unknown_options(s, i, INTERFACE_KEYS);
        let label = s.label(i);
        let Some(name) = s.name.clone() else {
            notes.add(
                NoteKind::NotImported,
                s.line,
                format!("{label} has no name"),
                "mwan3 interfaces are named after the network interface: config interface 'wan'",
            );
            continue;
        };
        if !is_true(s.value("enabled")) {
            notes.add(
                NoteKind::NotImported,
                s.line_of("enabled"),
                format!("{label} is not enabled"),
                "enable it in mwan3 (option enabled '1') and import again if it should carry traffic",
            );
            continue;
        }
        if (253..=255).contains(&id) {
            notes.add(
                NoteKind::NotImported,
                s.line,
                format!("{label} is interface number {id}, whose table is one of the kernel's reserved ones"),
                "steer cannot use tables 253-255: give it another table by hand",
            );
            continue;
        }
        if id > max_id {
            notes.add(
                NoteKind::NotImported,
                s.line,
                format!("{label} is interface number {id}, beyond the {max_id} the mask allows"),
                "widen globals.mmx_mask",
            );
            continue;
        }
        let device = match opts.network.as_ref() {
            Some(n) => match n.device(&name) {
                Some(d) => d.to_owned(),
                None => {
                    notes.add(
                        NoteKind::Check,
                        s.line,
                        format!("the network file has no device for interface `{name}`"),
                        "set the WAN's interface to the device `ip link` shows",
                    );
                    name.clone()
                }
            },
            None => {
                notes.add(
                    NoteKind::Check,
                    s.line,
                    format!("interface = \"{name}\" is mwan3's logical name"),
                    "steer needs the device (eth1, pppoe-wan): pass --network /etc/config/network or edit it",
                );
                name.clone()
            }
        };
        let method = method(s, notes);
        let targets = targets(s, method, notes);
        if let Some(b) = builds.iter_mut().find(|b| b.out.interface == device) {
            notes.add(
                NoteKind::Check,
                s.line,
                format!(
                    "{label} is on device {device}, as WAN `{}`: imported into it (its targets added; the timing of `{}` kept)",
                    b.out.name, b.out.name
                ),
                "a steer WAN carries IPv4 and IPv6 with separate health per family",
            );
            for t in targets {
                if !b.targets.contains(&t) {
                    b.targets.push(t);
                }
            }
            by_iface.insert(name, b.out.name.clone());
            continue;
        }
        let wan_name = steer_name(&name, &format!("wan{id}"), &mut taken);
        let (track, reliability) = timing(s, notes);
        by_iface.insert(name.clone(), wan_name.clone());
        builds.push(WanBuild {
            out: WanOut {
                comment: format!("{}:{}: {label} (mwan3 table {id})", opts.file, s.line),
                name: wan_name,
                interface: device,
                mark: id_to_mark(id, mask),
                table: id,
                track,
            },
            method,
            targets,
            target_line: s.line_of("track_ip"),
            reliability,
        });
    }
    if builds.len() > MAX_WANS {
        notes.add(
            NoteKind::Check,
            builds[MAX_WANS].target_line,
            format!("{} WANs; steer takes at most {MAX_WANS}", builds.len()),
            "leave out the WANs no policy needs",
        );
    }
    for b in builds {
        out.wans.push(finish(b, notes));
    }
    by_iface
}

/// The `[wan.track]` lines of a WAN, once all its interfaces are in.
fn finish(mut b: WanBuild, notes: &mut Notes) -> WanOut {
    if b.targets.is_empty() {
        notes.add(
            NoteKind::Check,
            b.target_line,
            format!(
                "WAN `{}` has no usable track_ip (mwan3 then never takes it down); steer needs probe targets",
                b.out.name
            ),
            "1.1.1.1 and 9.9.9.9 were put in: use addresses this line should reach",
        );
        b.targets = ["1.1.1.1", "9.9.9.9"]
            .iter()
            .map(|t| target_text(t, b.method))
            .collect();
    }
    let mut lines = vec![
        format!("method = \"{}\"", b.method),
        list("targets", &b.targets),
    ];
    if let Some((r, line)) = b.reliability {
        let max = b.targets.len() as u32;
        if r > max {
            notes.add(
                NoteKind::Check,
                line,
                format!("reliability {r} is more than the {max} targets"),
                format!("reliability = {max}"),
            );
        }
        lines.push(format!("reliability = {}", r.clamp(1, max)));
    }
    lines.append(&mut b.out.track);
    b.out.track = lines;
    b.out
}

fn method(s: &Section, notes: &mut Notes) -> &'static str {
    let v = s.value("track_method").unwrap_or("ping");
    let line = s.line_of("track_method");
    match v {
        "ping" | "nping-icmp" => "icmp",
        "httping" => {
            if is_true(s.value("httping_ssl")) {
                notes.add(
                    NoteKind::NotImported,
                    s.line_of("httping_ssl"),
                    "httping_ssl (HTTPS probes)",
                    "steer's http probes are plain HTTP: probe a URL that answers over http",
                );
            }
            "http"
        }
        "nping-tcp" => "tcp",
        other => {
            notes.add(
                NoteKind::NotImported,
                line,
                format!("track_method `{other}`"),
                "steer probes with icmp, tcp, dns or http: icmp was used",
            );
            "icmp"
        }
    }
}

fn target_text(addr: &str, method: &str) -> String {
    let host = if addr.contains(':') {
        format!("[{addr}]")
    } else {
        addr.to_owned()
    };
    match method {
        "http" => format!("http://{host}/"),
        // nping --tcp probes port 80.
        "tcp" => format!("{host}:80"),
        _ => addr.to_owned(),
    }
}

fn targets(s: &Section, method: &str, notes: &mut Notes) -> Vec<String> {
    let mut out = Vec::new();
    for t in s.items("track_ip") {
        match crate::prefix::parse_addr(&t) {
            Ok(a) if crate::prefix::is_unicast(a) => out.push(target_text(&a.to_string(), method)),
            _ => notes.add(
                NoteKind::NotImported,
                s.line_of("track_ip"),
                format!("track_ip `{t}` is not a unicast address"),
                "steer probes addresses, never names (resolving them needs the DNS that may be down)",
            ),
        }
    }
    out
}

/// Seconds as steer's milliseconds, within `lo..=hi`.
fn ms(s: &Section, key: &str, default_s: u32, lo: u32, hi: u32, notes: &mut Notes) -> u32 {
    let Some(v) = s.value(key) else {
        return (default_s * 1000).clamp(lo, hi);
    };
    match v.trim().parse::<u32>() {
        Ok(secs) => {
            let m = secs.saturating_mul(1000);
            if !(lo..=hi).contains(&m) {
                notes.add(
                    NoteKind::Check,
                    s.line_of(key),
                    format!("{key} {secs} s is out of steer's range"),
                    format!("{} ms was used", m.clamp(lo, hi)),
                );
            }
            m.clamp(lo, hi)
        }
        Err(_) => {
            notes.add(
                NoteKind::NotImported,
                s.line_of(key),
                format!("{key} `{v}` is not a number of seconds"),
                format!("mwan3's default {default_s} s was used"),
            );
            (default_s * 1000).clamp(lo, hi)
        }
    }
}

fn count(s: &Section, key: &str, default: u32, notes: &mut Notes) -> u32 {
    match s.value(key).map(|v| (v, v.trim().parse::<u32>())) {
        None => default,
        Some((_, Ok(n))) => n,
        Some((v, Err(_))) => {
            notes.add(
                NoteKind::NotImported,
                s.line_of(key),
                format!("{key} `{v}` is not a number"),
                format!("mwan3's default {default} was used"),
            );
            default
        }
    }
}

/// Timing, rounds and quality lines (mwan3track's defaults: interval 10 s, timeout 4 s,
/// down 5, up 5); also the reliability and its line.
fn timing(s: &Section, notes: &mut Notes) -> (Vec<String>, Option<(u32, usize)>) {
    let interval = ms(s, "interval", 10, 10, 3_600_000, notes);
    let timeout = ms(s, "timeout", 4, 1, interval, notes);
    let mut lines = vec![
        format!("interval_ms = {interval}"),
        format!("timeout_ms = {timeout}"),
    ];
    let rounds = |key: &str, default: u32, notes: &mut Notes| {
        let n = count(s, key, default, notes);
        if !(1..=1000).contains(&n) {
            notes.add(
                NoteKind::Check,
                s.line_of(key),
                format!("{key} {n} is out of steer's range 1..=1000"),
                "clamped",
            );
        }
        n.clamp(1, 1000)
    };
    lines.push(format!("down_after = {}", rounds("down", 5, notes)));
    lines.push(format!("up_after = {}", rounds("up", 5, notes)));
    if s.get("failure_interval").is_some() {
        let fi = ms(s, "failure_interval", 5, 10, interval, notes);
        lines.push(format!("failure_interval_ms = {fi}"));
    }
    if is_true(s.value("check_quality")) {
        let lat = count(s, "failure_latency", 1000, notes).clamp(1, timeout);
        let loss = count(s, "failure_loss", 40, notes).min(100);
        let rlat = count(s, "recovery_latency", 500, notes).min(lat);
        let rloss = count(s, "recovery_loss", 10, notes).min(loss);
        lines.push(format!("max_latency_ms = {lat}"));
        lines.push(format!("recover_latency_ms = {rlat}"));
        lines.push(format!("max_loss_percent = {loss}"));
        lines.push(format!("recover_loss_percent = {rloss}"));
        notes.add(
            NoteKind::Check,
            s.line_of("check_quality"),
            "check_quality: mwan3 judges loss per round of `count` pings; steer judges it over the last loss_window (10) rounds",
            "tune loss_window if the line should be judged faster",
        );
    }
    let reliability = s
        .get("reliability")
        .map(|o| (count(s, "reliability", 1, notes), o.line));
    let not_imported: [(&str, &str); 7] = [
        (
            "recovery_interval",
            "steer probes a down WAN every interval_ms",
        ),
        (
            "keep_failure_interval",
            "steer goes back to interval_ms once a failure is decided",
        ),
        ("size", "steer's ICMP probes have a fixed size"),
        ("max_ttl", "steer's probes use the system's TTL"),
        (
            "initial_state",
            "steer starts every WAN up and lets the probes decide",
        ),
        (
            "flush_conntrack",
            "steer flushes exactly the connections of a WAN that goes down (and, with failback = \"move\", those moved when it comes back)",
        ),
        ("", ""),
    ];
    for (key, hint) in not_imported.iter().filter(|(k, _)| !k.is_empty()) {
        if s.get(key).is_some() {
            notes.add(
                NoteKind::NotImported,
                s.line_of(key),
                (*key).to_owned(),
                *hint,
            );
        }
    }
    if count(s, "count", 1, notes) != 1 {
        notes.add(
            NoteKind::NotImported,
            s.line_of("count"),
            "count (pings per target and round)",
            "steer sends one probe per target and round: list more targets and raise reliability, or lower interval_ms",
        );
    }
    (lines, reliability)
}

struct Member {
    iface: String,
    metric: u32,
    weight: u32,
    line: usize,
}

fn members(sections: &[Section], notes: &mut Notes) -> BTreeMap<String, Member> {
    let mut out = BTreeMap::new();
    for (i, s) in sections
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind == "member")
    {
        notes.unknown_options(s, i, &["interface", "metric", "weight"]);
        let (Some(name), Some(iface)) = (&s.name, s.value("interface")) else {
            notes.add(
                NoteKind::NotImported,
                s.line,
                format!("{} has no name or no interface", s.label(i)),
                "a member needs both to be used by a policy",
            );
            continue;
        };
        out.insert(
            name.clone(),
            Member {
                iface: iface.to_owned(),
                metric: count(s, "metric", 1, notes),
                weight: count(s, "weight", 1, notes),
                line: s.line,
            },
        );
    }
    out
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Policies; returns mwan3 policy name -> steer policy name (only those imported).
fn policies(
    sections: &[Section],
    members: &BTreeMap<String, Member>,
    wans: &BTreeMap<String, String>,
    notes: &mut Notes,
    out: &mut Out,
) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut taken = vec!["main".to_owned()];
    for (i, s) in sections
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind == "policy")
    {
        notes.unknown_options(s, i, &["use_member", "last_resort"]);
        let label = s.label(i);
        let Some(name) = &s.name else {
            notes.add(
                NoteKind::NotImported,
                s.line,
                format!("{label} has no name"),
                "rules refer to policies by name",
            );
            continue;
        };
        if name.len() > 15 {
            notes.add(
                NoteKind::NotImported,
                s.line,
                format!("{label}: mwan3 ignores policies with names over 15 characters"),
                "",
            );
            continue;
        }
        let mut list: Vec<(String, u32, u32)> = Vec::new();
        for m in s.items("use_member") {
            let line = s.line_of("use_member");
            let Some(member) = members.get(&m) else {
                notes.add(
                    NoteKind::NotImported,
                    line,
                    format!("{label}: member `{m}` is not defined"),
                    "",
                );
                continue;
            };
            let Some(wan) = wans.get(&member.iface) else {
                notes.add(
                    NoteKind::NotImported,
                    member.line,
                    format!(
                        "{label}: member `{m}` is on interface `{}`, which is not imported",
                        member.iface
                    ),
                    "",
                );
                continue;
            };
            if let Some(first) = list.iter().find(|(w, ..)| w == wan) {
                if (first.1, first.2) == (member.metric, member.weight) {
                    continue;
                }
                notes.add(
                    NoteKind::Check,
                    member.line,
                    format!(
                        "{label}: member `{m}` is WAN `{wan}` again (its other family); the first member's metric and weight are kept"
                    ),
                    "",
                );
                continue;
            }
            if !(1..=255).contains(&member.metric) {
                notes.add(
                    NoteKind::Check,
                    member.line,
                    format!(
                        "metric {} of member `{m}` is out of steer's range 1..=255",
                        member.metric
                    ),
                    "clamped",
                );
            }
            list.push((
                wan.clone(),
                member.metric.clamp(1, 255),
                member.weight.max(1),
            ));
        }
        if list.is_empty() {
            notes.add(
                NoteKind::NotImported,
                s.line,
                format!("{label} has no imported member"),
                "rules that use it are left out",
            );
            continue;
        }
        fit_weights(&mut list, &label, s.line, notes);
        let last_resort = s.value("last_resort").unwrap_or("unreachable");
        let last_resort = match last_resort {
            "default" | "unreachable" | "blackhole" => last_resort,
            other => {
                notes.add(
                    NoteKind::Check,
                    s.line_of("last_resort"),
                    format!("last_resort `{other}`"),
                    "mwan3 reads anything else as unreachable",
                );
                "unreachable"
            }
        };
        let steer = steer_name(name, &format!("policy{i}"), &mut taken);
        map.insert(name.clone(), steer.clone());
        out.policies.push(PolicyOut {
            comment: format!("{}:{}: {label}", notes.file, s.line),
            name: steer,
            members: list,
            last_resort: Some(last_resort.to_owned()),
        });
    }
    map
}

/// steer's weights run 1..=64: larger mwan3 weights are divided by their common divisor,
/// then scaled down (with a note) if that is not enough.
fn fit_weights(list: &mut [(String, u32, u32)], label: &str, line: usize, notes: &mut Notes) {
    if list.iter().all(|m| m.2 <= 64) {
        return;
    }
    let g = list.iter().fold(0, |g, m| gcd(g, m.2));
    for m in list.iter_mut() {
        m.2 /= g.max(1);
    }
    let max = list.iter().map(|m| m.2).max().unwrap_or(1);
    if max > 64 {
        for m in list.iter_mut() {
            m.2 = (m.2 * 64).div_ceil(max).max(1);
        }
        notes.add(
            NoteKind::Check,
            line,
            format!("{label}: weights scaled to steer's 1..=64"),
            "the shares are kept to within a few percent",
        );
    }
}

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

fn rules(
    sections: &[Section],
    policies: &BTreeMap<String, String>,
    opts: &Options,
    notes: &mut Notes,
    out: &mut Out,
) {
    let mut taken = Vec::new();
    let mut rules = Vec::new();
    for (i, s) in sections
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind == "rule")
    {
        notes.unknown_options(s, i, RULE_KEYS);
        if let Some(r) = rule(s, i, policies, opts, notes, out, &mut taken) {
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
    }
    let ordered = rules.iter().filter(|r| r.set.disabled.is_none()).count();
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

/// The prefixes of `key` (iptables takes `a,b`).
fn prefixes(s: &Section, key: &str, notes: &mut Notes) -> Vec<String> {
    s.items(key)
        .iter()
        .flat_map(|v| v.split(',').map(str::to_owned).collect::<Vec<_>>())
        .filter(|v| !v.is_empty())
        .filter_map(|v| prefix(&v, notes, s.line_of(key)))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn rule(
    s: &Section,
    index: usize,
    policies: &BTreeMap<String, String>,
    opts: &Options,
    notes: &mut Notes,
    out: &mut Out,
    taken: &mut Vec<String>,
) -> Option<Rule> {
    let label = s.label(index);
    if s.name.as_ref().is_some_and(|n| n.len() > 15) {
        notes.add(
            NoteKind::NotImported,
            s.line,
            format!("{label}: mwan3 ignores rules with names over 15 characters"),
            "shorten the name in mwan3 if the rule was meant to work",
        );
        return None;
    }
    let Some(use_policy) = s.value("use_policy") else {
        notes.add(
            NoteKind::NotImported,
            s.line,
            format!("{label} has no use_policy (mwan3 ignores it)"),
            "",
        );
        return None;
    };
    let mut disabled = None;
    let policy = match use_policy {
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
            disabled = Some(format!("use_policy {use_policy}"));
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
                disabled = Some(format!("policy {p} not imported"));
                p.to_owned()
            }
        },
    };
    let proto_raw = s.value("proto").unwrap_or("all");
    let Some(proto) = proto_word(proto_raw) else {
        notes.add(
            NoteKind::NotImported,
            s.line_of("proto"),
            format!("{label}: proto `{proto_raw}`"),
            "use tcp, udp, icmp, all or a protocol number",
        );
        return None;
    };
    let family = s.value("family").unwrap_or("any");
    let dst = prefixes(s, "dest_ip", notes);
    let src = prefixes(s, "src_ip", notes);
    let mut lines = Vec::new();
    let mut conditions = false;
    if !dst.is_empty() {
        lines.push("match = \"dst\"".to_owned());
        lines.push(list("prefixes", &dst));
        if !src.is_empty() {
            lines.push(list("src_prefixes", &src));
            conditions = true;
        }
    } else if !src.is_empty() {
        lines.push("match = \"src\"".to_owned());
        lines.push(list("prefixes", &src));
        conditions = true;
    } else if family == "ipv4" || family == "ipv6" {
        // A family of its own: the default route of that family is what selects it.
        let all = if family == "ipv4" {
            "0.0.0.0/0"
        } else {
            "::/0"
        };
        lines.push("match = \"dst\"".to_owned());
        lines.push(list("prefixes", &[all.to_owned()]));
    }
    let all_default = dst.iter().all(|p| is_default_route(p)) && src.is_empty();
    if dst.iter().chain(&src).any(|p| is_default_route(p))
        || (dst.is_empty() && src.is_empty() && family != "any")
    {
        lines.push("allow_default_route = true".to_owned());
    }
    lines.push(list("proto", std::slice::from_ref(&proto)));
    if proto != "any" {
        conditions = true;
    }
    for (key, steer_key) in [("dest_port", "dports"), ("src_port", "sports")] {
        let Some(v) = s.value(key) else { continue };
        if proto != "tcp" && proto != "udp" {
            notes.add(
                NoteKind::Check,
                s.line_of(key),
                format!("{label}: {key} with proto `{proto_raw}`"),
                "mwan3 ignores ports unless proto is tcp or udp; left out",
            );
            continue;
        }
        match ports(v) {
            Ok(p) => {
                lines.push(list(steer_key, &p));
                conditions = true;
            }
            Err(bad) => {
                notes.add(
                    NoteKind::NotImported,
                    s.line_of(key),
                    format!("{label}: {key} `{bad}` is not a port or range"),
                    "write ports as 80,443 or 1000:2000",
                );
                disabled = Some(format!("bad {key}"));
            }
        }
    }
    if let Some(iface) = s.value("src_iface") {
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
                format!("{label}: src_iface `{iface}` is a logical name"),
                "steer needs the device (br-lan): pass --network /etc/config/network or edit `in`",
            );
        }
        if !out.lan.contains(&dev) {
            out.lan.push(dev.clone());
        }
        lines.push(list("in", &[dev]));
        conditions = true;
    }
    if let Some(set) = s.value("ipset") {
        notes.add(
            NoteKind::NotImported,
            s.line_of("ipset"),
            format!("{label}: ipset `{set}` is defined outside mwan3"),
            format!(
                "export it with `ipset save {set} | awk '$1 == \"add\" {{print $3}}' > {set}.txt`, then uncomment the set, which reads it with files = [\"{set}.txt\"]"
            ),
        );
        lines.push(list("files", &[format!("{set}.txt")]));
        disabled = disabled.or(Some(format!("needs {set}.txt exported from ipset {set}")));
        conditions = true;
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
    let catch_all = (!conditions && all_default && disabled.is_none()).then(|| {
        if !dst.is_empty() {
            if dst.iter().any(|p| p == "0.0.0.0/0") && dst.iter().any(|p| p == "::/0") {
                "any"
            } else if dst[0] == "0.0.0.0/0" {
                "ipv4"
            } else {
                "ipv6"
            }
        } else {
            match family {
                "ipv4" => "ipv4",
                "ipv6" => "ipv6",
                _ => "any",
            }
        }
    });
    let name = steer_name(
        s.name.as_deref().unwrap_or(""),
        &format!("rule{index}"),
        taken,
    );
    Some(Rule {
        set: SetOut {
            comment: format!("{}:{}: {label}", opts.file, s.line),
            disabled,
            name,
            policy,
            lines,
        },
        catch_all,
        line: s.line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "config interface 'a'\n option enabled 1\n list track_ip '192.0.2.1'\n\
                        config interface 'b'\n option enabled 1\n list track_ip '192.0.2.2'\n\
                        config member 'a1'\n option interface 'a'\n\
                        config member 'b1'\n option interface 'b'\n\
                        config policy 'pa'\n list use_member 'a1'\n\
                        config policy 'pb'\n list use_member 'b1'\n";

    fn run(rules: &str) -> Imported {
        let opts = Options {
            file: "mwan3".into(),
            network: None,
            lan: vec!["br-lan".into()],
        };
        import(&format!("{HEAD}{rules}"), &opts).unwrap()
    }

    fn table(i: &Imported) -> toml::Table {
        i.toml.parse().unwrap()
    }

    fn set_names(t: &toml::Table) -> Vec<String> {
        t.get("set")
            .and_then(|s| s.as_array())
            .map(|a| {
                a.iter()
                    .map(|s| s["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn catch_alls_of_two_policies_stay_ordered_rules() {
        let i = run(
            "config rule 'v4'\n option dest_ip '0.0.0.0/0'\n option use_policy 'pa'\n\
                     config rule 'v6'\n option dest_ip '::/0'\n option use_policy 'pb'\n",
        );
        let t = table(&i);
        assert!(t.get("default").is_none());
        assert_eq!(set_names(&t), ["v4", "v6"]);
    }

    #[test]
    fn a_rule_with_no_condition_is_the_default() {
        let i = run(
            "config rule 'x'\n option dest_port '22'\n option proto 'tcp'\n option use_policy 'pb'\n\
                     config rule 'all'\n option use_policy 'pa'\n",
        );
        let t = table(&i);
        assert_eq!(t["default"]["policy"].as_str(), Some("pa"));
        assert_eq!(set_names(&t), ["x"]);
    }

    #[test]
    fn a_main_table_catch_all_leaves_no_default() {
        let i = run("config rule 'all'\n option use_policy 'default'\n");
        let t = table(&i);
        assert!(
            t.get("default").is_none() && t.get("set").is_none(),
            "{}",
            i.toml
        );
        assert!(i.notes.iter().any(|n| n.what.contains("main table")));
    }

    #[test]
    fn unreachable_and_unknown_policies_are_commented_out_in_place() {
        let i = run(
            "config rule 'drop'\n option dest_ip '198.51.100.0/24'\n option use_policy 'blackhole'\n\
                     config rule 'gone'\n option src_ip '10.0.0.0/8'\n option use_policy 'nope'\n\
                     config rule 'kept'\n option src_ip '10.0.0.0/8'\n option use_policy 'pa'\n",
        );
        assert_eq!(set_names(&table(&i)), ["kept"]);
        let drop = i.toml.find("# name = \"drop\"").expect("commented out");
        let gone = i.toml.find("# name = \"gone\"").expect("commented out");
        let kept = i.toml.find("name = \"kept\"").unwrap();
        assert!(drop < gone && gone < kept, "{}", i.toml);
        let lines: Vec<(usize, NoteKind)> = i
            .notes
            .iter()
            .filter(|n| n.what.contains("use_policy `blackhole`") || n.what.contains("`nope`"))
            .map(|n| (n.line, n.kind))
            .collect();
        assert_eq!(
            lines,
            [(17, NoteKind::NotImported), (20, NoteKind::NotImported)]
        );
    }

    #[test]
    fn big_weights_keep_their_ratio() {
        let mut list = vec![("a".to_owned(), 1, 1000), ("b".to_owned(), 1, 250)];
        let mut notes = Notes::new("f");
        fit_weights(&mut list, "p", 1, &mut notes);
        assert_eq!((list[0].2, list[1].2), (4, 1));
        assert!(notes.into_vec().is_empty());
        let mut list = vec![("a".to_owned(), 1, 997), ("b".to_owned(), 1, 500)];
        let mut notes = Notes::new("f");
        fit_weights(&mut list, "p", 1, &mut notes);
        assert_eq!((list[0].2, list[1].2), (64, 33));
        assert_eq!(notes.into_vec().len(), 1);
    }

    #[test]
    fn marks_spread_over_the_mask_as_mwan3_does() {
        assert_eq!(id_to_mark(1, 0x3f00), 0x100);
        assert_eq!(id_to_mark(3, 0x3f00), 0x300);
        assert_eq!(id_to_mark(5, 0xaa), 0x22);
        assert_eq!(id_to_mark(0x3f, 0x3f00), 0x3f00);
    }
}
