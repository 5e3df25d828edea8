//! State handed in for a WAN at run time is about its line, the interface, not its name: a
//! gateway a DHCP client hook hands in (`steer wan NAME gateway ADDR`, [`super::gateways`]),
//! a prefix a DHCPv6 client hook hands in (`steer wan NAME prefix6 PREFIX`,
//! [`super::wan_prefixes`]) and an override set by hand (`steer wan NAME up|down`, [`super::overrides`]). When the
//! configuration changes (a reload, or a restart with the file edited meanwhile), each follows
//! its line: a WAN renamed on the same interface keeps them under its new name, a WAN moved to
//! another interface (another line) loses them, and a WAN removed takes them along (no entry
//! stays under a dead name for a later WAN of that name to inherit). Reload and restart say
//! the same. Pure: the controller calls these and writes the files.

use std::{collections::BTreeMap, fmt::Display};

use super::gateways::Hooked;
use crate::{
    config::Wan, health::Override, model::Family, status::ReportLine, wan_sources::Hooked6,
};

/// A WAN's name and its interface.
pub type Line = (String, String);

/// The lines of `wans`.
pub fn lines_of(wans: &[Wan]) -> Vec<Line> {
    wans.iter()
        .map(|w| (w.name.clone(), w.interface.clone()))
        .collect()
}

/// What became of WAN `name` on `interface` of the old configuration (`old`) in the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// The same name on the same interface.
    Same,
    /// The same interface under this other name.
    Renamed(String),
    /// The same name on this other interface: another line.
    Moved(String),
    /// No WAN of that name, and the interface is not one renamed WAN's.
    Removed,
}

/// The fate of WAN `name` on `interface`. A rename is an old WAN on an interface that no new
/// WAN of its name is on, and a new WAN there that no old one of its name was on, each the only
/// one of its side there: anything less clear is a removal (state dropped, never given to
/// the wrong WAN).
pub fn fate(name: &str, interface: &str, old: &[Line], new: &[Line]) -> Fate {
    let on = |lines: &[Line], i: &str| -> Vec<Line> {
        lines.iter().filter(|(_, li)| li == i).cloned().collect()
    };
    let (old_here, new_here) = (on(old, interface), on(new, interface));
    if new_here.iter().any(|(n, _)| n == name) {
        return Fate::Same;
    }
    let left: Vec<&Line> = old_here.iter().filter(|l| !new_here.contains(l)).collect();
    let came: Vec<&Line> = new_here.iter().filter(|l| !old_here.contains(l)).collect();
    if let ([(gone, _)], [(renamed, _)]) = (left.as_slice(), came.as_slice())
        && gone == name
    {
        return Fate::Renamed(renamed.clone());
    }
    match new.iter().find(|(n, _)| n == name) {
        Some((_, elsewhere)) => Fate::Moved(elsewhere.clone()),
        None => Fate::Removed,
    }
}

/// The key of state handed in for a WAN: it names the WAN, and is given to another name when
/// the WAN is renamed on its line.
pub trait ForWan: Ord + Clone {
    /// The WAN it is for.
    fn wan(&self) -> &str;
    /// The same key for WAN `to`.
    fn renamed(&self, to: &str) -> Self;
}

/// A WAN's prefix (`steer wan NAME prefix6`).
impl ForWan for String {
    fn wan(&self) -> &str {
        self
    }
    fn renamed(&self, to: &str) -> Self {
        to.to_owned()
    }
}

/// A WAN's gateway of one family (`steer wan NAME gateway`).
impl ForWan for (String, Family) {
    fn wan(&self) -> &str {
        &self.0
    }
    fn renamed(&self, to: &str) -> Self {
        (to.to_owned(), self.1)
    }
}

/// What a hook hands in, as the notes name it.
pub struct Handed {
    /// What one of them is ("gateway").
    pub noun: &'static str,
    /// The `steer wan NAME ...` subcommand that hands it in.
    pub command: &'static str,
    /// What to do once WAN `wan` is on `now_on`, another line, and lost what was handed in.
    pub again: fn(wan: &str, now_on: &str) -> String,
}

/// The gateways a DHCP hook hands in.
pub const GATEWAYS: Handed = Handed {
    noun: "gateway",
    command: "gateway",
    again: |wan, now_on| {
        format!(
            "Its DHCP client hands a gateway in at its next renewal; to route it now, run \
             `steer wan {wan} gateway ADDR` with the router on {now_on}'s link"
        )
    },
};

/// The delegated prefixes a DHCPv6 hook hands in.
pub const PREFIXES: Handed = Handed {
    noun: "prefix",
    command: "prefix6",
    again: |wan, now_on| {
        format!(
            "Its DHCPv6 client hands a prefix in at its next renewal; to use one now, run \
             `steer wan {wan} prefix6 PREFIX` with the prefix delegated on {now_on}"
        )
    },
};

/// The handed-in gateways `hooked` after the WANs changed from `old` to `new`, and what to say
/// of those that moved or went ([`carry`]).
pub fn carry_gateways(
    hooked: &Hooked,
    was_on: impl Fn(&str) -> Option<String>,
    old: &[Line],
    new: &[Line],
) -> (Hooked, Vec<ReportLine>) {
    carry(&GATEWAYS, hooked, was_on, old, new)
}

/// The prefixes DHCPv6 hooks handed in (`hooked`) after the WANs changed from `old` to `new`,
/// and what to say of those that moved or went ([`carry`]).
pub fn carry_prefixes(
    hooked: &Hooked6,
    was_on: impl Fn(&str) -> Option<String>,
    old: &[Line],
    new: &[Line],
) -> (Hooked6, Vec<ReportLine>) {
    carry(&PREFIXES, hooked, was_on, old, new)
}

/// What was handed in (`handed`, of kind `kind`) after the WANs changed from `old` to `new`:
/// under the new name of a WAN renamed on its interface, gone for one moved or removed; and
/// what to say of those, one line a WAN. `was_on` is the interface each WAN's state was handed
/// in for (`None`: not known, a file from an older steer; then only the name decides).
pub fn carry<K: ForWan, V: Clone + Display>(
    kind: &Handed,
    handed: &BTreeMap<K, V>,
    was_on: impl Fn(&str) -> Option<String>,
    old: &[Line],
    new: &[Line],
) -> (BTreeMap<K, V>, Vec<ReportLine>) {
    let mut carried = BTreeMap::new();
    // Per WAN, what was handed in and its fate: one line per WAN.
    let mut by_wan: BTreeMap<&str, (Vec<String>, Option<String>, Fate)> = BTreeMap::new();
    for (key, value) in handed {
        let wan = key.wan();
        let interface = was_on(wan);
        let fate = match &interface {
            Some(i) => fate(wan, i, old, new),
            None if new.iter().any(|(n, _)| n == wan) => Fate::Same,
            None => Fate::Removed,
        };
        match &fate {
            Fate::Same => {
                carried.insert(key.clone(), value.clone());
                continue;
            }
            Fate::Renamed(to) => {
                carried.insert(key.renamed(to), value.clone());
            }
            Fate::Moved(_) | Fate::Removed => {}
        }
        by_wan
            .entry(wan)
            .or_insert_with(|| (Vec::new(), interface, fate))
            .0
            .push(value.to_string());
    }
    let lines = by_wan
        .into_iter()
        .filter_map(|(wan, (values, interface, fate))| {
            handed_note(kind, wan, &values, interface, &fate)
        })
        .collect();
    (carried, lines)
}

/// What is said of `values` (of kind `kind`) handed in for WAN `wan` (on `interface`), now
/// that its fate is `fate` (none for [`Fate::Same`]: nothing changed).
fn handed_note(
    kind: &Handed,
    wan: &str,
    values: &[String],
    interface: Option<String>,
    fate: &Fate,
) -> Option<ReportLine> {
    let (them, it, is) = match values {
        [one] => (format!("the {} {one}", kind.noun), "it", "is"),
        _ => (
            format!("the {} {}", plural(kind.noun), values.join(" and ")),
            "them",
            "are",
        ),
    };
    let on = interface.map_or(String::new(), |i| format!(" for {i}"));
    Some(match fate {
        Fate::Same => return None,
        Fate::Renamed(to) => ReportLine::info(format!(
            "{to}: {them} handed in{on} (`steer wan {wan} {}`) {is} kept: {wan} is named {to} \
             now, on the same interface",
            kind.command
        )),
        Fate::Moved(now_on) => ReportLine::warning(format!(
            "{wan}: {them} handed in{on} {is} dropped: {wan} is on {now_on} now, another line. {}",
            (kind.again)(wan, now_on)
        )),
        Fate::Removed => ReportLine::info(format!(
            "{wan}: {them} handed in{on} {is} dropped: the configuration has no WAN `{wan}` now \
             (a WAN given that name later does not inherit {it})"
        )),
    })
}

/// The plural of `noun` ("gateway", "prefix").
fn plural(noun: &str) -> String {
    if noun.ends_with('x') {
        format!("{noun}es")
    } else {
        format!("{noun}s")
    }
}

/// What is said of override `manual` set by hand for WAN `wan` on `interface`, now that its
/// fate is `fate` (none for [`Fate::Same`]: nothing changed).
pub fn override_note(
    wan: &str,
    manual: Override,
    interface: &str,
    fate: &Fate,
) -> Option<ReportLine> {
    let how = match manual {
        Override::Up => "up",
        Override::Down => "down",
    };
    Some(match fate {
        Fate::Same => return None,
        Fate::Renamed(to) => ReportLine::info(format!(
            "{to}: `steer wan {wan} {how}` is kept: {wan} is named {to} now, on the same \
             interface {interface}; it stays forced {how} until `steer wan {to} auto`"
        )),
        Fate::Moved(now_on) => ReportLine::warning(format!(
            "{wan}: `steer wan {wan} {how}` is dropped: it was set while {wan} was on \
             {interface}, and {wan} is on {now_on} now, another line, which probes judge; run \
             `steer wan {wan} {how}` again to force it"
        )),
        Fate::Removed => ReportLine::info(format!(
            "{wan}: `steer wan {wan} {how}` is dropped: the configuration has no WAN `{wan}` \
             now (a WAN given that name later does not inherit it)"
        )),
    })
}

/// The interface of each WAN of `hooked` by `wans` (what the gateways file keeps with them).
pub fn interfaces_of(hooked: &Hooked, wans: &[Wan]) -> BTreeMap<String, String> {
    interfaces_on(hooked, &lines_of(wans))
}

/// The interface of each WAN `handed` has something for, by `lines` (what a file keeps with
/// it, for a restart to know the line).
pub fn interfaces_on<K: ForWan, V>(
    handed: &BTreeMap<K, V>,
    lines: &[Line],
) -> BTreeMap<String, String> {
    handed
        .keys()
        .filter_map(|key| {
            let (wan, interface) = lines.iter().find(|(n, _)| n == key.wan())?;
            Some((wan.clone(), interface.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::wan_sources::tests::p;

    fn holds(hooked: &Hooked, wan: &str, family: Family) -> bool {
        hooked.contains_key(&(wan.to_owned(), family))
    }

    fn lines(l: &[(&str, &str)]) -> Vec<Line> {
        l.iter()
            .map(|(n, i)| ((*n).to_owned(), (*i).to_owned()))
            .collect()
    }

    #[test]
    fn a_wan_follows_its_interface() {
        let old = lines(&[("wan1", "eth1"), ("wan2", "eth2"), ("wan3", "eth3")]);
        let new = lines(&[("wan1", "eth1"), ("isp2", "eth2"), ("wan3", "eth4")]);
        assert_eq!(fate("wan1", "eth1", &old, &new), Fate::Same);
        assert_eq!(
            fate("wan2", "eth2", &old, &new),
            Fate::Renamed("isp2".into())
        );
        assert_eq!(fate("wan3", "eth3", &old, &new), Fate::Moved("eth4".into()));
        assert_eq!(fate("gone", "eth9", &old, &new), Fate::Removed);
        let fewer = lines(&[("wan1", "eth1")]);
        assert_eq!(fate("wan2", "eth2", &old, &fewer), Fate::Removed);
        // Two WANs swap interfaces: each line keeps what was handed in for it.
        let swapped = lines(&[("wan1", "eth2"), ("wan2", "eth1")]);
        let before = lines(&[("wan1", "eth1"), ("wan2", "eth2")]);
        assert_eq!(
            fate("wan1", "eth1", &before, &swapped),
            Fate::Renamed("wan2".into())
        );
        // Not clear which new WAN took the line: nobody inherits.
        let two = lines(&[("a", "eth2"), ("b", "eth2")]);
        assert_eq!(fate("wan2", "eth2", &before, &two), Fate::Removed);
    }

    #[test]
    fn handed_in_gateways_follow_a_rename_and_go_with_a_move_or_a_removal() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        let hooked: Hooked = [
            (("wan2".to_owned(), Family::V4), a("10.102.0.1")),
            (("wan2".to_owned(), Family::V6), a("fe80::1")),
            (("isp9".to_owned(), Family::V4), a("10.109.0.1")),
            (("gone".to_owned(), Family::V4), a("10.99.0.1")),
        ]
        .into();
        let old = lines(&[("wan2", "eth2"), ("isp9", "eth9"), ("gone", "eth7")]);
        let new = lines(&[("isp2", "eth2"), ("isp9", "eth4")]);
        let was_on = |w: &str| old.iter().find(|(n, _)| n == w).map(|(_, i)| i.clone());
        let (carried, notes) = carry_gateways(&hooked, was_on, &old, &new);
        assert!(holds(&carried, "isp2", Family::V4) && holds(&carried, "isp2", Family::V6));
        assert_eq!(carried.len(), 2, "{carried:?}");
        let said: Vec<&str> = notes.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(said.len(), 3, "{said:?}");
        assert!(said[0].starts_with("gone: the gateway 10.99.0.1 handed in for eth7 is dropped: the configuration has no WAN `gone` now"), "{said:?}");
        assert!(said[1].starts_with("isp9: the gateway 10.109.0.1 handed in for eth9 is dropped: isp9 is on eth4 now, another line"), "{said:?}");
        assert!(
            said[1].contains("run `steer wan isp9 gateway ADDR`"),
            "{said:?}"
        );
        assert!(said[2].starts_with("isp2: the gateways 10.102.0.1 and fe80::1 handed in for eth2 (`steer wan wan2 gateway`) are kept: wan2 is named isp2 now"), "{said:?}");
        // A file from an older steer: no interface, the name alone decides.
        let (carried, notes) = carry_gateways(&hooked, |_| None, &old, &new);
        assert_eq!(
            carried.keys().map(|k| k.0.as_str()).collect::<Vec<_>>(),
            ["isp9"]
        );
        assert_eq!(notes.len(), 2, "wan2 and gone: dropped");
    }

    /// A prefix a DHCPv6 hook handed in stayed under a renamed WAN's old name (a later WAN of
    /// that name inherited it) and went with a WAN moved to another line.
    #[test]
    fn handed_in_prefixes_follow_a_rename_and_go_with_a_move_or_a_removal() {
        let hooked = Hooked6::from([
            ("wan2".to_owned(), p("2001:db8:2::/56")),
            ("isp9".to_owned(), p("2001:db8:9::/56")),
            ("gone".to_owned(), p("2001:db8:7::/56")),
            ("wan1".to_owned(), p("2001:db8:1::/56")),
        ]);
        let old = lines(&[
            ("wan1", "eth1"),
            ("wan2", "eth2"),
            ("isp9", "eth9"),
            ("gone", "eth7"),
        ]);
        let new = lines(&[("wan1", "eth1"), ("isp2", "eth2"), ("isp9", "eth4")]);
        let was_on = |w: &str| old.iter().find(|(n, _)| n == w).map(|(_, i)| i.clone());
        let (carried, notes) = carry_prefixes(&hooked, was_on, &old, &new);
        assert_eq!(
            carried,
            Hooked6::from([
                ("isp2".to_owned(), p("2001:db8:2::/56")),
                ("wan1".to_owned(), p("2001:db8:1::/56")),
            ])
        );
        let said: Vec<&str> = notes.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(
            said,
            [
                "gone: the prefix 2001:db8:7::/56 handed in for eth7 is dropped: the \
                 configuration has no WAN `gone` now (a WAN given that name later does not \
                 inherit it)",
                "isp9: the prefix 2001:db8:9::/56 handed in for eth9 is dropped: isp9 is on eth4 \
                 now, another line. Its DHCPv6 client hands a prefix in at its next renewal; to \
                 use one now, run `steer wan isp9 prefix6 PREFIX` with the prefix delegated on \
                 eth4",
                "isp2: the prefix 2001:db8:2::/56 handed in for eth2 (`steer wan wan2 prefix6`) \
                 is kept: wan2 is named isp2 now, on the same interface",
            ]
        );
        assert_eq!(
            interfaces_on(&carried, &new),
            BTreeMap::from([
                ("isp2".to_owned(), "eth2".to_owned()),
                ("wan1".to_owned(), "eth1".to_owned()),
            ])
        );
        // A file from an older steer: no interface, the name alone decides.
        let (carried, notes) = carry_prefixes(&hooked, |_| None, &old, &new);
        assert_eq!(carried.keys().collect::<Vec<_>>(), ["isp9", "wan1"]);
        assert_eq!(notes.len(), 2, "wan2 and gone: dropped");
    }

    #[test]
    fn an_override_note_names_what_to_do() {
        assert_eq!(
            override_note("wan3", Override::Down, "eth3", &Fate::Same),
            None
        );
        let renamed = override_note(
            "wan3",
            Override::Down,
            "eth3",
            &Fate::Renamed("isp3".into()),
        )
        .unwrap();
        assert!(
            renamed
                .text
                .starts_with("isp3: `steer wan wan3 down` is kept: wan3 is named isp3 now"),
            "{}",
            renamed.text
        );
        let moved =
            override_note("wan3", Override::Up, "eth3", &Fate::Moved("eth4".into())).unwrap();
        assert!(
            moved
                .text
                .ends_with("run `steer wan wan3 up` again to force it"),
            "{}",
            moved.text
        );
    }
}
