//! `steer import`: reads an mwan3 or omr-bypass configuration (UCI) and writes the steer
//! configuration that does the same. Pure: text in, TOML text and notes out; the CLI reads
//! the files and prints.
//!
//! Whatever steer cannot express is never dropped silently: each such item becomes a [`Note`]
//! with its file:line and what to do, printed on stderr and as `# NOT IMPORTED:` comments.

pub mod mwan3;
pub mod network;
pub mod omr_bypass;
pub mod uci;
mod write;

use std::fmt;

pub use network::Network;
pub use uci::{Section, UciError};

/// What an import produced.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The steer configuration.
    pub toml: String,
    /// What was not imported, or imported with a change worth knowing.
    pub notes: Vec<Note>,
}

/// How much a note matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    /// Left out: steer cannot express it (or mwan3 itself ignores it).
    NotImported,
    /// An option neither mwan3 nor omr-bypass reads here.
    Unknown,
    /// Imported, with an assumption or change to check.
    Check,
}

/// One thing the reader must know about the import, at `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub kind: NoteKind,
    pub file: String,
    pub line: usize,
    pub what: String,
    pub hint: String,
}

/// `text` with every character that would not print as itself written as `\u{1b}` (as
/// [`crate::shown::Shown`] writes it), at full length: for notes and the output's comments.
pub(crate) fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let mut buf = [0; 4];
        let one = crate::shown::shown(c.encode_utf8(&mut buf));
        out.push_str(&one);
    }
    out
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.kind {
            NoteKind::NotImported => "not imported",
            NoteKind::Unknown => "unknown option",
            NoteKind::Check => "check",
        };
        write!(f, "{}:{}: {tag}: {}", self.file, self.line, self.what)?;
        if !self.hint.is_empty() {
            write!(f, "; {}", self.hint)?;
        }
        Ok(())
    }
}

/// Options for both importers.
#[derive(Debug, Clone)]
pub struct Options {
    /// The file name notes point at.
    pub file: String,
    /// `/etc/config/network`, to turn logical interface names into devices.
    pub network: Option<Network>,
    /// `general.lan` of the output (more are added for rules that name a source interface).
    pub lan: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Uci(#[from] UciError),
    /// The file is the other importer's.
    #[error(
        "{file} is not {expected} file: its sections ({kinds}) are {actual}'s; import it with \
         `steer import {actual} {file}`"
    )]
    OtherFormat {
        file: String,
        expected: &'static str,
        actual: &'static str,
        kinds: String,
    },
    /// Nothing steer could run was found: its output would have no WAN, which `steer check`
    /// refuses. The notes say what was left out and why.
    #[error("{file}: nothing to import: {why}; {hint}")]
    NothingImported {
        file: String,
        why: String,
        hint: String,
        notes: Vec<Note>,
    },
}

impl ImportError {
    /// What was left out, for an import that found nothing to import (printed before the
    /// error, so the reader sees why).
    pub fn notes(&self) -> &[Note] {
        match self {
            ImportError::NothingImported { notes, .. } => notes,
            _ => &[],
        }
    }
}

/// Refuses a file given to the wrong importer: none of `expected`'s own section types, some
/// of the other's (every rule of it would be "unknown" and the output empty). `interface` is
/// both's.
pub(crate) fn refuse_other_format(
    sections: &[Section],
    file: &str,
    expected: &'static str,
) -> Result<(), ImportError> {
    let (own, other, actual) = match expected {
        "mwan3" => (mwan3::KINDS, omr_bypass::KINDS, "omr-bypass"),
        _ => (omr_bypass::KINDS, mwan3::KINDS, "mwan3"),
    };
    let kinds_in = |set: &[&str]| {
        let mut kinds: Vec<&str> = sections
            .iter()
            .map(|s| s.kind.as_str())
            .filter(|k| *k != "interface" && set.contains(k))
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds
    };
    let theirs = kinds_in(other);
    if !kinds_in(own).is_empty() || theirs.is_empty() {
        return Ok(());
    }
    Err(ImportError::OtherFormat {
        file: file.to_owned(),
        expected: if expected == "mwan3" {
            "an mwan3"
        } else {
            "an omr-bypass"
        },
        actual,
        kinds: theirs.join(", "),
    })
}

/// Collects notes for one file.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    file: String,
    list: Vec<Note>,
}

impl Notes {
    pub(crate) fn new(file: &str) -> Notes {
        Notes {
            file: file.to_owned(),
            list: Vec::new(),
        }
    }

    pub(crate) fn add(
        &mut self,
        kind: NoteKind,
        line: usize,
        what: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let file = self.file.clone();
        self.add_in(&file, kind, line, what, hint);
    }

    /// A note about a line of another file (the network file).
    pub(crate) fn add_in(
        &mut self,
        file: &str,
        kind: NoteKind,
        line: usize,
        what: impl Into<String>,
        hint: impl Into<String>,
    ) {
        // Notes quote the UCI file's names and values, which may hold control characters:
        // they reach the terminal and the output's comments (where TOML takes none) escaped.
        self.list.push(Note {
            kind,
            file: visible(file),
            line,
            what: visible(&what.into()),
            hint: visible(&hint.into()),
        });
    }

    /// Reports a section with `enabled` off: left out, as the tool itself leaves it.
    pub(crate) fn disabled(&mut self, s: &Section, tool: &str) {
        self.add(
            NoteKind::NotImported,
            s.line_of("enabled"),
            format!(
                "{} is disabled (enabled '{}')",
                s.label(),
                s.value("enabled").unwrap_or_default()
            ),
            format!(
                "{tool} ignores it too; enable it (option enabled '1') and import again if it should be steered"
            ),
        );
    }

    /// Reports every option of `s` not in `known`.
    pub(crate) fn unknown_options(&mut self, s: &Section, known: &[&str]) {
        for o in &s.options {
            if !known.contains(&o.key.as_str()) {
                self.add(
                    NoteKind::Unknown,
                    o.line,
                    format!("`{}` in {}", o.key, s.label()),
                    "ignored: check its spelling, or whether it matters",
                );
            }
        }
    }

    pub(crate) fn into_vec(mut self) -> Vec<Note> {
        // This file's notes first, by line; then those about the network file.
        let own = self.file.clone();
        self.list.sort_by_key(|n| (n.file != own, n.line));
        self.list
    }
}

/// Adds to general.lan the LAN-side interfaces of the network file other than --lan's, which
/// `tool` steered too: mwan3 hooks mangle PREROUTING for every ingress interface, omr-bypass
/// every firewall zone whose name has no "wan". Leaving them out would move their traffic to
/// the main table unnoticed, so adding them keeps what the old tool did. Only an interface
/// with a static address (the router's address on a network it serves) is taken for a LAN;
/// any other one that is no WAN (`is_wan`, or on a WAN's device) and not loopback is named in
/// a note with what to add, since a DHCP or tunnel interface may be an upstream.
pub(crate) fn other_lans(
    opts: &Options,
    tool: &str,
    is_wan: &dyn Fn(&network::Interface) -> bool,
    notes: &mut Notes,
    out: &mut write::Out,
) {
    let Some(net) = &opts.network else {
        notes.add(
            NoteKind::Check,
            1,
            format!(
                "general.lan is what --lan gave ({}): {tool} steered traffic coming in on every LAN-side interface",
                out.lan.join(", ")
            ),
            "pass --network /etc/config/network to have the other LAN-side interfaces added, or name each with --lan",
        );
        return;
    };
    let mut wan_devices: Vec<&str> = out.wans.iter().map(|w| w.interface.as_str()).collect();
    wan_devices.extend(
        net.interfaces()
            .iter()
            .filter(|i| is_wan(i))
            .filter_map(|i| i.device.as_deref()),
    );
    let mut added = Vec::new();
    for i in net.interfaces() {
        if i.name == "loopback" || i.device.as_deref() == Some("lo") || is_wan(i) {
            continue;
        }
        let Some(dev) = i.device.as_deref() else {
            if i.proto == "static" {
                notes.add_in(
                    net.file(),
                    NoteKind::Check,
                    i.line,
                    format!(
                        "interface `{}` has no device in the network file: {tool} steered traffic coming in on it; steer leaves it to the main table",
                        i.name
                    ),
                    "a Wi-Fi network's device is set in /etc/config/wireless: add the device `ip link` shows (wlan0-1) to general.lan",
                );
            }
            continue;
        };
        if wan_devices.contains(&dev) || out.lan.iter().any(|l| l == dev) {
            continue;
        }
        if i.proto == "static" && !i.name.to_ascii_lowercase().contains("wan") {
            notes.add_in(
                net.file(),
                NoteKind::Check,
                i.line,
                format!(
                    "interface `{}` ({dev}) added to general.lan: {tool} steered traffic coming in on it, and its static address makes it a LAN-side network",
                    i.name
                ),
                format!("remove \"{dev}\" from general.lan if its traffic should follow the main table"),
            );
            added.push(dev.to_owned());
        } else {
            let proto = if i.proto.is_empty() {
                "none given"
            } else {
                &i.proto
            };
            notes.add_in(
                net.file(),
                NoteKind::Check,
                i.line,
                format!(
                    "interface `{}` ({dev}, proto {proto}) is not in general.lan: {tool} steered traffic coming in on it too; steer leaves it to the main table",
                    i.name
                ),
                format!("if it is a LAN-side network, add \"{dev}\" to general.lan (--lan {dev})"),
            );
        }
    }
    out.lan.extend(added);
}

/// A steer name (`A-Z a-z 0-9 _ . -`, at most 47) made from a UCI name; unique among `taken`.
pub(crate) fn steer_name(raw: &str, fallback: &str, taken: &mut Vec<String>) -> String {
    let mut base: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if base.is_empty() {
        base = fallback.to_owned();
    }
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    taken.push(name.clone());
    name
}

/// A transport protocol as UCI writes it (`tcp`, `all`, `17`, `icmp`) in steer's words.
pub(crate) fn proto_word(raw: &str) -> Option<String> {
    let lower = raw.trim().to_ascii_lowercase();
    let word = match lower.as_str() {
        "all" | "any" | "" => "any",
        "tcp" | "udp" | "icmp" => lower.as_str(),
        "icmpv6" | "ipv6-icmp" => "58",
        "igmp" => "2",
        "gre" => "47",
        "esp" => "50",
        "ah" => "51",
        "sctp" => "132",
        "udplite" => "136",
        n => return n.parse::<u8>().ok().map(|v| v.to_string()),
    };
    Some(word.to_owned())
}

/// Ports as mwan3 (`80,443`, `1000:2000`) and omr-bypass (`1000-2000`) write them, as steer's
/// `"80"` / `"1000-2000"` items; `Err` names the bad part.
pub(crate) fn ports(raw: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for part in raw.split([',', ' ']).filter(|p| !p.is_empty()) {
        // A service name may have a hyphen (`http-alt`): the whole part first.
        let (lo, hi) = if service_port(part).is_some() {
            (part, part)
        } else {
            part.split_once([':', '-']).unwrap_or((part, part))
        };
        let num = |t: &str| {
            t.parse::<u16>()
                .ok()
                .or_else(|| service_port(t))
                .filter(|&p| p > 0)
        };
        match (num(lo), num(hi)) {
            (Some(a), Some(b)) if a == b => out.push(a.to_string()),
            (Some(a), Some(b)) if a < b => out.push(format!("{a}-{b}")),
            _ => return Err(part.to_owned()),
        }
    }
    if out.is_empty() {
        return Err(raw.to_owned());
    }
    Ok(out)
}

/// The port of a service name iptables takes in place of a number (it reads `/etc/services`;
/// these are the names that file has on OpenWrt and Debian for what people steer), so an
/// import does not depend on the services file of the machine it runs on.
fn service_port(name: &str) -> Option<u16> {
    const SERVICES: &[(&str, u16)] = &[
        ("ftp-data", 20),
        ("ftp", 21),
        ("ssh", 22),
        ("telnet", 23),
        ("smtp", 25),
        ("domain", 53),
        ("http", 80),
        ("www", 80),
        ("pop3", 110),
        ("ntp", 123),
        ("imap", 143),
        ("imap2", 143),
        ("snmp", 161),
        ("ldap", 389),
        ("https", 443),
        ("isakmp", 500),
        ("submissions", 465),
        ("smtps", 465),
        ("submission", 587),
        ("ldaps", 636),
        ("imaps", 993),
        ("pop3s", 995),
        ("openvpn", 1194),
        ("pptp", 1723),
        ("ipsec-nat-t", 4500),
        ("sip", 5060),
        ("sip-tls", 5061),
        ("xmpp-client", 5222),
        ("http-alt", 8080),
    ];
    SERVICES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, port)| port)
}

/// An address or network as steer writes it. iptables takes `10.1.2.3/16` (the network
/// 10.1.0.0/16); steer wants the network written, so host bits are cleared with a note.
pub(crate) fn prefix(raw: &str, notes: &mut Notes, line: usize) -> Option<String> {
    match crate::prefix::parse_prefix(raw, true) {
        Ok(p) => Some(p.to_string()),
        Err(e) => {
            if let Some(net) = network_of(raw) {
                notes.add(
                    NoteKind::Check,
                    line,
                    format!("`{raw}` has host bits set"),
                    format!("written as the network {net}, which is what iptables matches"),
                );
                return Some(net);
            }
            notes.add(
                NoteKind::NotImported,
                line,
                format!("`{raw}`: {}", e.message()),
                e.hint(),
            );
            None
        }
    }
}

/// `10.1.2.3/16` -> `10.1.0.0/16`, when that is all that is wrong.
fn network_of(raw: &str) -> Option<String> {
    let (addr, len) = raw.trim().split_once('/')?;
    let len: u8 = len.parse().ok()?;
    let addr: std::net::IpAddr = addr.parse().ok()?;
    let net = match addr {
        std::net::IpAddr::V4(a) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            std::net::IpAddr::V4((u32::from(a) & mask).into())
        }
        std::net::IpAddr::V6(a) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            std::net::IpAddr::V6((u128::from(a) & mask).into())
        }
        _ => return None,
    };
    let text = format!("{net}/{len}");
    crate::prefix::parse_prefix(&text, true)
        .ok()
        .map(|p| p.to_string())
}

/// Whether `prefix` (as steer writes it) is a default route.
pub(crate) fn is_default_route(prefix: &str) -> bool {
    prefix == "0.0.0.0/0" || prefix == "::/0"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_protocols() {
        assert_eq!(ports("80,443").unwrap(), ["80", "443"]);
        assert_eq!(ports("1000:2000").unwrap(), ["1000-2000"]);
        assert_eq!(ports("1000-2000").unwrap(), ["1000-2000"]);
        assert_eq!(ports("5:5").unwrap(), ["5"]);
        assert_eq!(ports("2000:1000").unwrap_err(), "2000:1000");
        assert_eq!(ports("http,https").unwrap(), ["80", "443"]);
        assert_eq!(ports("ssh:telnet").unwrap(), ["22-23"]);
        assert_eq!(ports("http-alt,ftp-data").unwrap(), ["8080", "20"]);
        assert_eq!(ports("gopher").unwrap_err(), "gopher");
        assert_eq!(proto_word("all").as_deref(), Some("any"));
        assert_eq!(proto_word("TCP").as_deref(), Some("tcp"));
        assert_eq!(proto_word("gre").as_deref(), Some("47"));
        assert_eq!(proto_word("300"), None);
    }

    #[test]
    fn host_bits_are_cleared_with_a_note() {
        let mut n = Notes::new("f");
        assert_eq!(
            prefix("10.1.2.3/16", &mut n, 4).as_deref(),
            Some("10.1.0.0/16")
        );
        assert_eq!(prefix("0.0.0.0/0", &mut n, 4).as_deref(), Some("0.0.0.0/0"));
        assert_eq!(prefix("nonsense", &mut n, 5), None);
        let notes = n.into_vec();
        assert_eq!(notes.len(), 2);
        assert_eq!(notes[0].kind, NoteKind::Check);
        assert_eq!(notes[1].kind, NoteKind::NotImported);
    }

    #[test]
    fn names_are_steer_names_and_unique() {
        let mut taken = Vec::new();
        assert_eq!(steer_name("wan", "x", &mut taken), "wan");
        assert_eq!(steer_name("wan", "x", &mut taken), "wan-2");
        assert_eq!(steer_name("a b/c", "x", &mut taken), "a_b_c");
        assert_eq!(steer_name("", "rule3", &mut taken), "rule3");
    }
}
