//! The WAN states a restarted daemon adopts with the pinned state.
//!
//! A daemon that stops (SIGTERM, a crash) leaves its live policy generation in place: a WAN it
//! had taken down (a silent outage: carrier up, its upstream dead) steers no flow. Were the
//! new daemon to start that WAN up, as it starts a WAN with carrier, its first apply would send
//! new flows into the dead line until `down_after` rounds failed again (seconds at the default
//! interval), and under `[ipv6] mode = "source"` make its deprecated LAN prefix preferred again
//! meanwhile. The live table says what the old daemon had decided: a WAN family that the new
//! configuration's rules would send traffic through with every WAN up, and that the live table
//! sends none through, was down (its probes, its gateway or its prefix) or unused (the table
//! cannot tell which). It starts down and comes up by `up_after` good rounds, as a line found
//! dead does; so does a WAN new in the configuration that its rules send traffic through (the
//! adopted state says nothing of its line, and new flows would go into it at once). A WAN up
//! in the adopted state starts up as before.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Instant,
};

use steer_common::{DEFAULT_RULE, action};

use super::Health;
use crate::{
    config::Config,
    dataplane::Maps,
    model::{DEFAULT_RULE_NAME, Family, NameIds, PolicyTable, Rule, RuleKind},
    policy::{self, WanView},
    status::ReportLine,
};

/// Why a WAN family starts held down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// The adopted live table sent none of its traffic through it: it was down, or no policy
    /// used it.
    Unused,
    /// It is not in the adopted state: the restart's configuration added it.
    New,
}

impl Held {
    /// The state's reason (status, explain).
    pub fn reason(self) -> &'static str {
        match self {
            Held::Unused => {
                "held down at the restart: the adopted policy table sent none of this \
                 family's traffic through it (the WAN was down, or no policy used it): probes \
                 bring it up"
            }
            Held::New => {
                "held down at the restart: new in the configuration, and the adopted state \
                 says nothing of its line: probes bring it up"
            }
        }
    }

    /// Why, in the start's report.
    fn said(self) -> &'static str {
        match self {
            Held::Unused => {
                "the adopted policy table sent none of its traffic through it (it was down, or \
                 no policy used it, before the restart)"
            }
            Held::New => "new in the configuration, and its policies send traffic through it",
        }
    }
}

/// The WAN families to hold down: those `all_up` (the new rules with every WAN up, WANs in
/// `slots`) sends traffic through and that either `live` (the adopted live generation, WANs in
/// `adopted`) sends none through, or that `adopted` does not have (new WANs). A WAN of another
/// name whose mark (`mark_of`) the live table carries is an adopted WAN renamed (the mark is
/// what its connections and routes go by): it is judged as that one, not held as new, which
/// would send its flows to another line and flush its connections for a rename.
pub fn down_in(
    all_up: &PolicyTable,
    live: &PolicyTable,
    adopted: &NameIds,
    slots: &NameIds,
    mark_of: impl Fn(&str) -> Option<u32>,
) -> Vec<(String, Family, Held)> {
    let mut down = Vec::new();
    for family in Family::ALL {
        let wanted: BTreeSet<u32> = carried(all_up, family).map(|(slot, _)| slot).collect();
        let (carried_slots, carried_marks): (BTreeSet<u32>, BTreeSet<u32>) =
            carried(live, family).unzip();
        for (name, slot) in slots {
            if !wanted.contains(slot) {
                continue;
            }
            match adopted.get(name) {
                None if mark_of(name).is_some_and(|m| carried_marks.contains(&m)) => {}
                None => down.push((name.clone(), family, Held::New)),
                Some(old) if !carried_slots.contains(old) => {
                    down.push((name.clone(), family, Held::Unused));
                }
                Some(_) => {}
            }
        }
    }
    down
}

/// The WAN slots `family`'s half of `table` sends traffic through, each with the mark it
/// stamps.
fn carried(table: &PolicyTable, family: Family) -> impl Iterator<Item = (u32, u32)> + '_ {
    let half = table.family(family);
    let marked = half
        .entries
        .iter()
        .filter(|e| e.action == action::MARK)
        .map(|e| (e.wan, e.mark));
    let balanced = half
        .entries
        .iter()
        .zip(0u32..)
        .filter(|(e, _)| e.action == action::BALANCE)
        .filter_map(|(_, rule)| half.slots.get(&rule))
        .flat_map(|slots| slots.iter().map(|s| (s.wan, s.mark)));
    marked.chain(balanced)
}

/// The rules of `config` (the default one and one per set, with the ids they will have after
/// `adopted`), without their prefixes: which WANs the policies use is all that is asked here,
/// and a million prefixes are not compiled twice at start for it.
fn rules_of(config: &Config, adopted: &BTreeMap<u32, Rule>) -> BTreeMap<u32, Rule> {
    let ids = crate::sets::rule_ids(config, &crate::controller::desired::rule_ids(adopted)).ids;
    let default = Rule {
        id: DEFAULT_RULE,
        name: DEFAULT_RULE_NAME.into(),
        policy: config.default.as_ref().map(|d| d.policy.clone()),
        kind: RuleKind::Default,
    };
    let sets = config.sets.iter().filter_map(|set| {
        let id = *ids.get(&set.name)?;
        let kind = match set.conditions {
            Some(_) => RuleKind::Ordered(set.direction),
            None => RuleKind::Set(set.direction),
        };
        Some(Rule {
            id,
            name: set.name.clone(),
            policy: Some(set.policy.clone()),
            kind,
        })
    });
    std::iter::once(default)
        .chain(sets)
        .map(|r| (r.id, r))
        .collect()
}

/// Takes down, in `health`, each WAN family to hold down at a restart over the pinned live
/// generation of `maps` (see the module): `rules` and `wan_slots` are the adopted ones,
/// `config` the one starting. Says which, one line each; a table that cannot be read is said
/// too, and the WANs then start as without adopted state.
pub fn hold_down(
    health: &mut Health,
    maps: &Maps,
    config: &Config,
    (rules, wan_slots): (&BTreeMap<u32, Rule>, &NameIds),
    now: Instant,
) -> Vec<ReportLine> {
    let live = match maps.active_generation().and_then(|g| maps.policy_table(g)) {
        Ok(t) => t,
        Err(e) => {
            return vec![ReportLine::warning(format!(
                "reading the adopted policy table: {e}; every WAN with carrier starts up \
                 until its probes say otherwise"
            ))];
        }
    };
    // The slots the first apply gives the WANs: the adopted ones keep theirs.
    let slots = crate::sets::wan_slots(config, wan_slots);
    let (all_up, _) = policy::table(config, &rules_of(config, rules), |name, _| {
        Some(WanView {
            slot: *slots.get(name)?,
            mark: config.wan(name)?.mark,
            up: true,
        })
    });
    let mut lines = Vec::new();
    let mark_of = |name: &str| config.wan(name).map(|w| w.mark);
    for (name, family, held) in down_in(&all_up, &live, wan_slots, &slots, mark_of) {
        if !health.down_at_restart(&name, family, held.reason(), now) {
            continue;
        }
        let up_after = health
            .deciding(&name, family)
            .map_or(0, |t| t.track().up_after);
        lines.push(ReportLine::info(format!(
            "{name} {}: {}: held down until {up_after} probe rounds in a row pass",
            family.name(),
            held.said()
        )));
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::controller::desired;

    fn config(sets: &str) -> Config {
        let text = format!(
            r#"
[general]
lan = ["lan0"]
{wans}[[policy]]
name = "wan1-first"
members = [{{ wan = "wan1" }}, {{ wan = "wan2", metric = 2 }}]
[[policy]]
name = "balanced"
members = [{{ wan = "wan1" }}, {{ wan = "wan2" }}]
[default]
policy = "wan1-first"
{sets}"#,
            wans = crate::config::testing::TWO_WANS
        );
        crate::config::parse(&text, Path::new("/nonexistent/steer.toml")).expect("valid")
    }

    const BALANCED_SET: &str = r#"
[[set]]
name = "bypass"
policy = "balanced"
prefixes = ["203.0.113.0/24"]
"#;

    /// The policy table of `cfg` with the WAN families `up` says, and the WAN slots.
    fn table(cfg: &Config, up: impl Fn(&str, Family) -> bool) -> (PolicyTable, NameIds) {
        let d = desired::desired(cfg, &NameIds::new(), &NameIds::new(), up);
        (d.contents.table, d.wan_slots)
    }

    #[test]
    fn a_wan_family_the_live_table_steers_nothing_through_was_down() {
        let cfg = config(BALANCED_SET);
        let (all_up, slots) = table(&cfg, |_, _| true);
        assert_eq!(down_in(&all_up, &all_up, &slots, &slots, no_marks), []);
        // wan1's IPv4 down: the default rule marks wan2, the balanced rule has wan2's slots
        // only; its IPv6 still goes by wan1.
        let (v4_down, _) = table(&cfg, |w, f| !(w == "wan1" && f == Family::V4));
        assert_eq!(
            down_in(&all_up, &v4_down, &slots, &slots, no_marks),
            [("wan1".to_owned(), Family::V4, Held::Unused)]
        );
        // wan2 carries only the balanced rule's share: that it has none is seen too.
        let (wan2_down, _) = table(&cfg, |w, _| w != "wan2");
        assert_eq!(
            down_in(&all_up, &wan2_down, &slots, &slots, no_marks),
            [
                ("wan2".to_owned(), Family::V4, Held::Unused),
                ("wan2".to_owned(), Family::V6, Held::Unused)
            ]
        );
    }

    #[test]
    fn a_wan_no_rule_would_send_traffic_through_is_not_taken_for_down() {
        // wan2 is wan1-first's fallback only: with wan1 up nothing goes through it, in the
        // live table as with every WAN up. It starts as without adopted state.
        let cfg = config("");
        let (all_up, slots) = table(&cfg, |_, _| true);
        assert_eq!(down_in(&all_up, &all_up, &slots, &slots, no_marks), []);
        // wan1 down: wan2 carries what wan1 did (not a sign of anything), wan1 was down.
        let (wan1_down, _) = table(&cfg, |w, _| w != "wan1");
        assert_eq!(
            down_in(&all_up, &wan1_down, &slots, &slots, no_marks),
            [
                ("wan1".to_owned(), Family::V4, Held::Unused),
                ("wan1".to_owned(), Family::V6, Held::Unused)
            ]
        );
    }

    /// No WAN renamed: the tests' WANs keep their names.
    fn no_marks(_: &str) -> Option<u32> {
        None
    }

    #[test]
    fn a_wan_renamed_keeps_the_adopted_state_of_its_mark() {
        // The adopted state knew wan2 as "lte"; the restart's configuration calls it wan2,
        // with the same mark. It carried traffic: it starts up, not held as new.
        let cfg = config(BALANCED_SET);
        let (all_up, slots) = table(&cfg, |_, _| true);
        let mut adopted = slots.clone();
        let slot = adopted.remove("wan2").expect("wan2 has a slot");
        adopted.insert("lte".to_owned(), slot);
        let mark_of = |name: &str| cfg.wan(name).map(|w| w.mark);
        assert_eq!(down_in(&all_up, &all_up, &adopted, &slots, mark_of), []);
        // Renamed while it carried nothing (it was down): held, as a WAN of no state.
        let (wan2_down, _) = table(&cfg, |w, _| w != "wan2");
        assert_eq!(
            down_in(&all_up, &wan2_down, &adopted, &slots, mark_of),
            [
                ("wan2".to_owned(), Family::V4, Held::New),
                ("wan2".to_owned(), Family::V6, Held::New)
            ]
        );
    }

    #[test]
    fn a_wan_new_in_the_configuration_that_its_policies_use_is_held_down() {
        // The adopted state had wan1 only: wan2 is new, and the balanced set sends traffic
        // through it. It was never in the live table, whatever that table says.
        let cfg = config(BALANCED_SET);
        let (all_up, slots) = table(&cfg, |_, _| true);
        let mut adopted = slots.clone();
        adopted.remove("wan2");
        assert_eq!(
            down_in(&all_up, &all_up, &adopted, &slots, no_marks),
            [
                ("wan2".to_owned(), Family::V4, Held::New),
                ("wan2".to_owned(), Family::V6, Held::New)
            ]
        );
        // A new WAN that is only a fallback carries nothing with every WAN up: not held.
        let cfg = config("");
        let (all_up, slots) = table(&cfg, |_, _| true);
        assert_eq!(down_in(&all_up, &all_up, &adopted, &slots, no_marks), []);
    }

    #[test]
    fn the_new_configurations_sets_judge_the_adopted_state() {
        // A set the adopted state did not have counts (the restart's configuration sends its
        // traffic through its WAN from the first apply on), with the ids the apply gives.
        let cfg = config(BALANCED_SET);
        let compiled = desired::desired(&cfg, &NameIds::new(), &NameIds::new(), |_, _| true);
        assert_eq!(rules_of(&cfg, &BTreeMap::new()), compiled.rules);
        let adopted = config("");
        let old = desired::desired(&adopted, &NameIds::new(), &NameIds::new(), |_, _| true);
        assert_eq!(rules_of(&adopted, &old.rules), old.rules);
    }

    #[test]
    fn a_wan_down_at_restart_needs_up_after_good_rounds_and_says_why() {
        use crate::health::RoundSummary;
        let t0 = Instant::now();
        let wan = |name: &str, iface: &str| crate::config::Wan {
            track: crate::config::testing::icmp_track(100, 80, 3, 2),
            ..crate::config::testing::wan(name, iface)
        };
        let mut health = Health::default();
        health.follow(
            &[wan("dsl", "eth1"), wan("lte", "eth2")],
            |i| i == "eth1",
            t0,
        );
        assert!(health.down_at_restart("dsl", Family::V4, Held::New.reason(), t0));
        assert!(
            !health.down_at_restart("lte", Family::V4, Held::New.reason(), t0),
            "without carrier it is down already"
        );
        assert!(!health.up("dsl", Family::V4));
        let said = health
            .deciding("dsl", Family::V4)
            .expect("tracked")
            .describe(t0);
        assert!(
            said.contains("held down at the restart: new in the"),
            "{said}"
        );
        assert!(said.contains("0/2 good rounds to come back"), "{said}");
        let good = |i: u64| RoundSummary {
            started: t0 + std::time::Duration::from_millis(100 * i),
            answers: vec![Some(std::time::Duration::from_millis(10))],
            targets: Vec::new(),
            failure: None,
        };
        let mut tracker = health.deciding("dsl", Family::V4).expect("tracked").clone();
        assert_eq!(tracker.round(&good(0), t0), None, "one round is not enough");
        assert!(tracker.round(&good(1), t0).expect("up after 2").up);
    }
}
