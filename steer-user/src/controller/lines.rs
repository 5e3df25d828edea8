//! State handed in for a WAN at run time is about its line, the interface, not its name: a
//! gateway a DHCP client hook hands in (`steer wan NAME gateway ADDR`, [`super::gateways`])
//! and an override set by hand (`steer wan NAME up|down`, [`super::overrides`]). When the
//! configuration changes (a reload, or a restart with the file edited meanwhile), each follows
//! its line: a WAN renamed on the same interface keeps them under its new name, a WAN moved to
//! another interface (another line) loses them, and a WAN removed takes them along (no entry
//! stays under a dead name for a later WAN of that name to inherit). Reload and restart say
//! the same. Pure: the controller calls these and writes the files.

use std::{collections::BTreeMap, net::IpAddr};

use super::gateways::Hooked;
use crate::{config::Wan, health::Override, status::ReportLine};

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

/// The handed-in gateways `hooked` after the WANs changed from `old` to `new`, and what to say
/// of those that moved or went. `was_on` is the interface each WAN's gateway was handed in
/// for (`None`: not known, a file from an older steer; then only the name decides).
pub fn carry_gateways(
    hooked: &Hooked,
    was_on: impl Fn(&str) -> Option<String>,
    old: &[Line],
    new: &[Line],
) -> (Hooked, Vec<ReportLine>) {
    let mut carried = Hooked::new();
    // Per WAN, its gateways and their fate: one line per WAN.
    let mut by_wan: BTreeMap<&str, (Vec<IpAddr>, Option<String>, Fate)> = BTreeMap::new();
    for ((wan, family), a) in hooked {
        let interface = was_on(wan);
        let fate = match &interface {
            Some(i) => fate(wan, i, old, new),
            None if new.iter().any(|(n, _)| n == wan) => Fate::Same,
            None => Fate::Removed,
        };
        match &fate {
            Fate::Same => {
                carried.insert((wan.clone(), *family), *a);
                continue;
            }
            Fate::Renamed(to) => {
                carried.insert((to.clone(), *family), *a);
            }
            Fate::Moved(_) | Fate::Removed => {}
        }
        by_wan
            .entry(wan)
            .or_insert_with(|| (Vec::new(), interface, fate))
            .0
            .push(*a);
    }
    let lines = by_wan
        .into_iter()
        .filter_map(|(wan, (gateways, interface, fate))| {
            gateway_note(wan, &gateways, interface, &fate)
        })
        .collect();
    (carried, lines)
}

/// What is said of `gateways` handed in for WAN `wan` (on `interface`), now that its fate is
/// `fate` (none for [`Fate::Same`]: nothing changed).
fn gateway_note(
    wan: &str,
    gateways: &[IpAddr],
    interface: Option<String>,
    fate: &Fate,
) -> Option<ReportLine> {
    let list: Vec<String> = gateways.iter().map(ToString::to_string).collect();
    let (them, it) = match list.len() {
        1 => (format!("the gateway {}", list[0]), "it"),
        _ => (format!("the gateways {}", list.join(" and ")), "them"),
    };
    let on = interface.map_or(String::new(), |i| format!(" for {i}"));
    Some(match fate {
        Fate::Same => return None,
        Fate::Renamed(to) => ReportLine::info(format!(
            "{to}: {them} handed in{on} (`steer wan {wan} gateway`) {} kept: {wan} is named \
             {to} now, on the same interface",
            if gateways.len() == 1 { "is" } else { "are" }
        )),
        Fate::Moved(now_on) => ReportLine::warning(format!(
            "{wan}: {them} handed in{on} {} dropped: {wan} is on {now_on} now, another line. \
             Its DHCP client hands a gateway in at its next renewal; to route it now, run \
             `steer wan {wan} gateway ADDR` with the router on {now_on}'s link",
            if gateways.len() == 1 { "is" } else { "are" }
        )),
        Fate::Removed => ReportLine::info(format!(
            "{wan}: {them} handed in{on} {} dropped: the configuration has no WAN `{wan}` now \
             (a WAN given that name later does not inherit {it})",
            if gateways.len() == 1 { "is" } else { "are" }
        )),
    })
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
    hooked
        .keys()
        .filter_map(|(wan, _)| {
            let w = wans.iter().find(|w| w.name == *wan)?;
            Some((wan.clone(), w.interface.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Family;

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
