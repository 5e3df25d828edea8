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

mod policies;
mod rules;
mod wans;

use super::{
    ImportError, Imported, NoteKind, Notes, Options,
    uci::{self, Section},
    write::Out,
};
use policies::{members, policies};
use rules::rules;
use wans::interfaces;

/// mwan3's default mask (`config_get MMX_MASK globals mmx_mask '0x3F00'`).
pub const DEFAULT_MMX_MASK: u32 = 0x3F00;
/// steer's limit on WANs.
pub(super) const MAX_WANS: usize = 32;
/// steer's limit on ordered rules.
pub(super) const MAX_ORDERED: usize = 64;

/// Imports `text`, an mwan3 configuration.
/// The section types mwan3 reads.
pub(crate) const KINDS: &[&str] = &["globals", "interface", "member", "policy", "rule"];

pub fn import(text: &str, opts: &Options) -> Result<Imported, ImportError> {
    let sections = uci::parse(text, &opts.file)?;
    super::refuse_other_format(&sections, &opts.file, "mwan3")?;
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
    // mwan3's interfaces, enabled or not, are upstreams; so is what shares their device.
    let mwan3_ifaces: Vec<&str> = sections
        .iter()
        .filter(|s| s.kind == "interface")
        .filter_map(|s| s.name.as_deref())
        .collect();
    super::other_lans(
        opts,
        "mwan3",
        &|i| mwan3_ifaces.contains(&i.name.as_str()),
        &mut notes,
        &mut out,
    );
    for s in &sections {
        if !KINDS.contains(&s.kind.as_str()) {
            notes.add(
                NoteKind::Unknown,
                s.line,
                format!("section type `{}` ({})", s.kind, s.label()),
                "mwan3 reads globals, interface, member, policy and rule sections",
            );
        }
    }
    let notes = notes.into_vec();
    if out.wans.is_empty() {
        return Err(nothing_imported(&sections, opts, notes));
    }
    Ok(Imported {
        toml: out.render(&notes),
        notes,
    })
}

/// The error for a file without one WAN steer can use (a config without WANs is refused by
/// `steer check`), saying why.
fn nothing_imported(sections: &[Section], opts: &Options, notes: Vec<super::Note>) -> ImportError {
    let interfaces: Vec<&Section> = sections.iter().filter(|s| s.kind == "interface").collect();
    let disabled: Vec<String> = interfaces
        .iter()
        .filter(|s| !is_true(s.value("enabled")))
        .map(|s| format!("{} (line {})", s.label(), s.line_of("enabled")))
        .collect();
    let (why, hint) = if sections.is_empty() {
        (
            "the file has no section".to_owned(),
            "give the mwan3 configuration, /etc/config/mwan3".to_owned(),
        )
    } else if interfaces.is_empty() {
        (
            "the file has no `config interface` section, so no WAN".to_owned(),
            "mwan3's WANs are its interface sections: check that this is /etc/config/mwan3"
                .to_owned(),
        )
    } else if disabled.len() == interfaces.len() {
        (
            format!(
                "every interface is disabled: {} (mwan3 then steers nothing)",
                disabled.join(", ")
            ),
            "set option enabled '1' on the interfaces that carry traffic and import again"
                .to_owned(),
        )
    } else {
        (
            "none of its enabled interfaces could be imported as a WAN".to_owned(),
            "see the notes above for each interface".to_owned(),
        )
    };
    ImportError::NothingImported {
        file: opts.file.clone(),
        why,
        hint,
        notes,
    }
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
pub(super) fn is_true(v: Option<&str>) -> bool {
    matches!(v, Some("1" | "on" | "true" | "yes" | "enabled"))
}

fn globals(sections: &[Section], notes: &mut Notes) -> u32 {
    let mut mask = DEFAULT_MMX_MASK;
    for s in sections.iter().filter(|s| s.kind == "globals") {
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
    fn catch_alls_of_one_family_each_and_two_policies_are_plain_sets() {
        let i = run(
            "config rule 'ssh'\n option dest_port '22'\n option proto 'tcp'\n option use_policy 'pb'\n\
             config rule 'v4'\n option dest_ip '0.0.0.0/0'\n option use_policy 'pa'\n\
             config rule 'v6'\n option dest_ip '::/0'\n option use_policy 'pb'\n",
        );
        let t = table(&i);
        assert!(t.get("default").is_none());
        assert_eq!(set_names(&t), ["ssh", "v4", "v6"]);
        let sets = t["set"].as_array().unwrap();
        assert!(
            sets[0].get("proto").is_some(),
            "a rule with a condition stays ordered"
        );
        for set in &sets[1..] {
            assert!(set.get("proto").is_none(), "a plain set: {set:?}");
            assert_eq!(set["allow_default_route"].as_bool(), Some(true));
        }
    }

    #[test]
    fn catch_alls_of_two_policies_for_every_family_stay_ordered_rules() {
        let i = run("config rule 'a'\n option use_policy 'pa'\n\
             config rule 'b'\n option use_policy 'pb'\n");
        let t = table(&i);
        assert!(t.get("default").is_none());
        let sets = t["set"].as_array().unwrap();
        assert!(sets.iter().all(|s| s.get("proto").is_some()), "{sets:?}");
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
    fn marks_spread_over_the_mask_as_mwan3_does() {
        assert_eq!(id_to_mark(1, 0x3f00), 0x100);
        assert_eq!(id_to_mark(3, 0x3f00), 0x300);
        assert_eq!(id_to_mark(5, 0xaa), 0x22);
        assert_eq!(id_to_mark(0x3f, 0x3f00), 0x3f00);
    }
}
