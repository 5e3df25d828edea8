//! `steer import omr-bypass`: OpenMPTCProuter's `/etc/config/omr-bypass` as steer
//! configuration.
//!
//! omr-bypass sends chosen traffic straight out of a WAN instead of through the aggregation
//! tunnel. Its sections (as its init script reads them): `domains` (`name`), `ips` (`ip`),
//! `dest_port` (`dport`, `proto`), `src_port` (`sport`, `proto`), `macs` (`mac`), `lan_ip`
//! (`ip`), `asns` (`asn`) and `dpis` (nDPI `proto`); each with `interface` (the output WAN,
//! or an ordered list of them; empty or `all`: the default route), `enabled`, `note`.
//!
//! Precedence, as its iptables chain gives it: destination addresses and domains (one ipset
//! per WAN, matched first, RETURN), then the source port, destination port, source address
//! and MAC rules, the last match's MARK winning. In steer: destination `ips` and the port,
//! address and MAC rules become ordered rules in that order of precedence; domains stay plain
//! (domain) sets, which steer consults after the ordered rules.

use super::{
    ImportError, Imported, NoteKind, Notes, Options, ports, prefix, proto_word, steer_name,
    uci::{self, Section},
    write::{Out, PolicyOut, SetOut, WanOut, list},
};

const KINDS: &[&str] = &[
    "domains",
    "ips",
    "dest_port",
    "src_port",
    "macs",
    "lan_ip",
    "asns",
    "dpis",
    "interface",
    "bypass",
    "global",
    "server",
];

const COMMON: &[&str] = &[
    "interface",
    "enabled",
    "note",
    "vpn",
    "dscp",
    "family",
    "noipv6",
];

/// Imports `text`, an omr-bypass configuration.
pub fn import(text: &str, opts: &Options) -> Result<Imported, ImportError> {
    let sections = uci::parse(text, &opts.file)?;
    let mut notes = Notes::new(&opts.file);
    let mut b = Builder {
        out: Out {
            source: opts.file.clone(),
            lan: opts.lan.clone(),
            mark_mask: Some(0xff00),
            ..Out::default()
        },
        opts,
        wan_names: Vec::new(),
        set_names: Vec::new(),
    };
    for s in &sections {
        if !KINDS.contains(&s.kind.as_str()) {
            notes.add(
                NoteKind::Unknown,
                s.line,
                format!("section type `{}` ({})", s.kind, s.label()),
                "not read",
            );
        }
    }
    // Ordered rules, highest precedence first; then the plain (domain) sets.
    let mut ordered = Vec::new();
    let mut plain = Vec::new();
    for kind in ["ips", "src_port", "dest_port", "lan_ip", "macs"] {
        for s in sections.iter().filter(|s| s.kind == kind) {
            if let Some(set) = b.rule(s, &mut notes) {
                ordered.push(set);
            }
        }
    }
    for s in sections.iter().filter(|s| s.kind == "domains") {
        if let Some(set) = b.rule(s, &mut notes) {
            plain.push(set);
        }
    }
    for s in &sections {
        let what = match s.kind.as_str() {
            "asns" => format!("ASN {}", s.value("asn").unwrap_or("?")),
            "dpis" => format!("nDPI protocol {}", s.value("proto").unwrap_or("?")),
            _ => continue,
        };
        if s.value("enabled") == Some("0") {
            continue;
        }
        let hint = if s.kind == "asns" {
            "steer does not fetch prefixes: save the AS's announced prefixes (stat.ripe.net announced-prefixes) to a list file and add a set with files = [...]"
        } else {
            "steer does not inspect payloads: list the service's domains in a set with domains = [...]"
        };
        notes.add(
            NoteKind::NotImported,
            s.line,
            format!("{} ({what})", s.label()),
            hint,
        );
    }
    if !plain.is_empty() && !ordered.is_empty() {
        notes.add(
            NoteKind::Check,
            1,
            "precedence: omr-bypass matches domains before port, address and MAC rules; steer consults domain sets after its ordered rules",
            "a packet to a bypassed domain that also matches a port, address or MAC rule follows that rule",
        );
    }
    b.out.dns_needed = !plain.is_empty();
    b.out.sets.extend(ordered);
    b.out.sets.extend(plain);
    if b.out.wans.is_empty() {
        notes.add(
            NoteKind::Check,
            1,
            "no rule names an output WAN",
            "add [[wan]] sections for the lines you want to steer to",
        );
    }
    let notes = notes.into_vec();
    let toml = b.out.render(&notes);
    Ok(Imported { toml, notes })
}

struct Builder<'a> {
    out: Out,
    opts: &'a Options,
    wan_names: Vec<String>,
    set_names: Vec<String>,
}

/// What an omr-bypass output list says.
enum Output {
    /// The default route (`all`, empty): the main table, never steered.
    Main,
    Policy(String),
}

impl Builder<'_> {
    /// The WAN for an omr-bypass interface value (a device, or a logical name with
    /// --network); created on first use.
    fn wan(&mut self, value: &str, line: usize, notes: &mut Notes) -> String {
        let device = self
            .opts
            .network
            .as_ref()
            .and_then(|n| n.device(value))
            .unwrap_or(value)
            .to_owned();
        if let Some(w) = self.out.wans.iter().find(|w| w.interface == device) {
            return w.name.clone();
        }
        let n = self.out.wans.len() as u32 + 1;
        let name = steer_name(value, &format!("wan{n}"), &mut self.wan_names);
        notes.add(
            NoteKind::Check,
            line,
            format!("WAN `{name}` (interface {device}): its tracking is omr-tracker's, which is not in this file"),
            "probe targets 1.1.1.1 and 9.9.9.9 were put in; mark and table were chosen: check both",
        );
        self.out.wans.push(WanOut {
            comment: format!("{}:{line}: output interface {value}", self.opts.file),
            name: name.clone(),
            interface: device,
            mark: n << 8,
            table: 100 + n,
            track: vec![
                "method = \"icmp\"".to_owned(),
                list("targets", &["1.1.1.1".to_owned(), "9.9.9.9".to_owned()]),
            ],
        });
        name
    }

    /// The policy for a rule's ordered output list.
    fn output(&mut self, s: &Section, label: &str, notes: &mut Notes) -> Result<Output, String> {
        if s.value("vpn") == Some("1") {
            return Err("VPN on server (vpn = 1)".to_owned());
        }
        let line = s.line_of("interface");
        let items = s.items("interface");
        let mut wans = Vec::new();
        let mut last_resort = "blackhole";
        for item in &items {
            match item.to_ascii_lowercase().as_str() {
                "all" | "default" | "" => {
                    last_resort = "default";
                    break;
                }
                "none" => break,
                v if v.starts_with("srv_vpn") => {
                    return Err(format!("output `{item}` (the server's VPN)"));
                }
                _ => {
                    let w = self.wan(item, line, notes);
                    if !wans.contains(&w) {
                        wans.push(w);
                    }
                }
            }
        }
        if wans.is_empty() {
            if items
                .first()
                .is_some_and(|i| i.eq_ignore_ascii_case("none"))
            {
                return Err("output None (block)".to_owned());
            }
            return Ok(Output::Main);
        }
        let mut name = format!("via-{}", wans.join("-"));
        if last_resort == "default" {
            name.push_str("-then-default");
        }
        // Sanitized only: one policy per distinct list, shared by the rules that use it.
        let steer = steer_name(&name, "policy", &mut Vec::new());
        if self.out.policies.iter().any(|p| p.name == steer) {
            return Ok(Output::Policy(steer));
        }
        if last_resort == "blackhole" {
            notes.add(
                NoteKind::Check,
                line,
                format!("{label}: when none of its WANs is up omr-bypass blocks the traffic"),
                "policy last_resort = \"blackhole\"; list `all` last to fall back on the default route",
            );
        }
        let then = if last_resort == "default" {
            "then the default route"
        } else {
            "blocked when none is up"
        };
        self.out.policies.push(PolicyOut {
            comment: format!(
                "{}:{line}: the output list {}, {then}",
                self.opts.file,
                wans.join(", ")
            ),
            name: steer.clone(),
            members: wans
                .iter()
                .enumerate()
                .map(|(i, w)| (w.clone(), i as u32 + 1, 1))
                .collect(),
            last_resort: Some(last_resort.to_owned()),
        });
        Ok(Output::Policy(steer))
    }

    fn rule(&mut self, s: &Section, notes: &mut Notes) -> Option<SetOut> {
        let label = s.label();
        let key = match s.kind.as_str() {
            "domains" => "name",
            "ips" | "lan_ip" => "ip",
            "dest_port" => "dport",
            "src_port" => "sport",
            "macs" => "mac",
            _ => return None,
        };
        let mut known = COMMON.to_vec();
        known.extend(["name", "domain", "ip", "dport", "sport", "mac", "proto"]);
        notes.unknown_options(s, &known);
        if s.value("enabled") == Some("0") {
            return None;
        }
        // The LuCI view of some versions writes `domain`.
        let items = if s.kind == "domains" && s.get("name").is_none() {
            s.items("domain")
        } else {
            s.items(key)
        };
        if items.is_empty() {
            notes.add(
                NoteKind::NotImported,
                s.line,
                format!("{label} has no `{key}`"),
                "omr-bypass skips it too",
            );
            return None;
        }
        let policy = match self.output(s, &label, notes) {
            Ok(Output::Main) => "main".to_owned(),
            Ok(Output::Policy(p)) => p,
            Err(what) => {
                notes.add(
                    NoteKind::NotImported,
                    s.line_of("interface"),
                    format!("{label}: {what}"),
                    "steer steers to this router's WANs only; block with a firewall rule",
                );
                return None;
            }
        };
        if s.get("dscp").is_some() {
            notes.add(
                NoteKind::NotImported,
                s.line_of("dscp"),
                format!("{label}: DSCP marking"),
                "steer only chooses the WAN; mark DSCP with a firewall rule",
            );
        }
        let rule = Rule {
            s,
            label: &label,
            line: s.line_of(key),
            items: &items,
        };
        let lines = match s.kind.as_str() {
            "domains" => rule.domains(notes),
            "ips" | "lan_ip" => rule.addresses(notes),
            "macs" => Some(vec![
                list("src_macs", &items),
                list("proto", &["any".to_owned()]),
            ]),
            _ => rule.ports(notes),
        }?;
        let note = s.value("note").unwrap_or("");
        let comment = format!(
            "{}:{}: {label}{}",
            self.opts.file,
            s.line,
            if note.is_empty() {
                String::new()
            } else {
                format!(" ({note})")
            }
        );
        let name = steer_name(
            s.name.as_deref().unwrap_or(""),
            &format!("{}{}", s.kind.replace('_', "-"), s.index),
            &mut self.set_names,
        );
        Some(SetOut {
            comment,
            disabled: None,
            name,
            policy,
            lines,
        })
    }
}

/// One rule's section, its label, and the values of its matching key (at `line`).
struct Rule<'a> {
    s: &'a Section,
    label: &'a str,
    line: usize,
    items: &'a [String],
}

impl Rule<'_> {
    /// `domains` (and `filter_aaaa` for `noipv6`); TLD wildcards, a family or a protocol
    /// are reported.
    fn domains(&self, notes: &mut Notes) -> Option<Vec<String>> {
        let (s, label) = (self.s, self.label);
        let domains: Vec<String> = self
            .items
            .iter()
            .map(|d| d.trim_start_matches('.').to_owned())
            .filter(|d| {
                let wild = d.contains('*') || d.ends_with('.');
                if wild {
                    notes.add(
                        NoteKind::NotImported,
                        self.line,
                        format!("{label}: `{d}` (every top-level domain)"),
                        "steer matches a domain and its subdomains: list each domain",
                    );
                }
                !wild
            })
            .collect();
        if domains.is_empty() {
            return None;
        }
        let mut lines = vec![list("domains", &domains)];
        if s.value("noipv6") == Some("1") {
            lines.push("filter_aaaa = true".to_owned());
        }
        if let Some(f @ ("ipv4" | "ipv6")) = s.value("family") {
            notes.add(
                NoteKind::NotImported,
                s.line_of("family"),
                format!("{label}: family {f} only"),
                "steer steers both families of a domain's addresses; filter_aaaa = true keeps its clients on IPv4",
            );
        }
        if s.get("proto").is_some() && s.value("proto") != Some("all") {
            notes.add(
                NoteKind::NotImported,
                s.line_of("proto"),
                format!("{label}: protocol of a domain rule"),
                "domain sets cannot carry conditions in steer: every protocol is steered",
            );
        }
        Some(lines)
    }

    /// Destination (`ips`) or source (`lan_ip`) addresses, as an ordered rule.
    fn addresses(&self, notes: &mut Notes) -> Option<Vec<String>> {
        let p: Vec<String> = self
            .items
            .iter()
            .filter_map(|v| prefix(v, notes, self.line))
            .collect();
        if p.is_empty() {
            return None;
        }
        let m = if self.s.kind == "ips" { "dst" } else { "src" };
        Some(vec![
            format!("match = \"{m}\""),
            list("prefixes", &p),
            list("proto", &["any".to_owned()]),
        ])
    }

    /// `dports` or `sports` with their protocols (tcp, udp; omr-bypass skips a rule without).
    fn ports(&self, notes: &mut Notes) -> Option<Vec<String>> {
        let (s, label) = (self.s, self.label);
        let mut protos = Vec::new();
        for p in s.items("proto") {
            match proto_word(&p) {
                Some(w) if w == "tcp" || w == "udp" => protos.push(w),
                _ => notes.add(
                    NoteKind::NotImported,
                    s.line_of("proto"),
                    format!("{label}: protocol `{p}` with ports"),
                    "ports exist for tcp and udp only",
                ),
            }
        }
        if protos.is_empty() {
            notes.add(
                NoteKind::NotImported,
                s.line,
                format!("{label} has no tcp or udp proto (omr-bypass skips it)"),
                "",
            );
            return None;
        }
        let mut all = Vec::new();
        for v in self.items {
            match ports(v) {
                Ok(mut p) => all.append(&mut p),
                Err(bad) => notes.add(
                    NoteKind::NotImported,
                    self.line,
                    format!("{label}: `{bad}` is not a port or range"),
                    "",
                ),
            }
        }
        if all.is_empty() {
            return None;
        }
        let k = if s.kind == "dest_port" {
            "dports"
        } else {
            "sports"
        };
        Some(vec![list("proto", &protos), list(k, &all)])
    }
}
