//! mwan3's members and policies as steer policies.

use std::collections::BTreeMap;

use super::wans::count;
use crate::import::{
    NoteKind, Notes, steer_name,
    uci::Section,
    write::{Out, PolicyOut},
};

pub(super) struct Member {
    iface: String,
    metric: u32,
    weight: u32,
    line: usize,
}

pub(super) fn members(sections: &[Section], notes: &mut Notes) -> BTreeMap<String, Member> {
    let mut out = BTreeMap::new();
    for s in sections.iter().filter(|s| s.kind == "member") {
        notes.unknown_options(s, &["interface", "metric", "weight"]);
        let (Some(name), Some(iface)) = (&s.name, s.value("interface")) else {
            notes.add(
                NoteKind::NotImported,
                s.line,
                format!("{} has no name or no interface", s.label()),
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
pub(super) fn policies(
    sections: &[Section],
    members: &BTreeMap<String, Member>,
    wans: &BTreeMap<String, String>,
    notes: &mut Notes,
    out: &mut Out,
) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut taken = vec!["main".to_owned()];
    for s in sections.iter().filter(|s| s.kind == "policy") {
        notes.unknown_options(s, &["use_member", "last_resort"]);
        let label = s.label();
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
        let steer = steer_name(name, &format!("policy{}", s.index), &mut taken);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
