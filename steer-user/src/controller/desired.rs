//! The kernel state a configuration asks for, given the WAN states and the ids the kernel
//! already uses: pure, so it is tested without a kernel. The controller computes it, then hands
//! its [`MapContents`] to the dataplane's sync.

use std::collections::BTreeMap;

use steer_common::DEFAULT_RULE;

use crate::{
    config::Config,
    dataplane::{MapContents, WanName},
    model::Family,
    model::{CondTables, NameIds, Rule},
    policy::{self, Outcomes, WanView},
    sets,
};

/// The kernel state one configuration asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// By rule id; always holds rule 0.
    pub rules: BTreeMap<u32, Rule>,
    pub wan_slots: NameIds,
    pub contents: MapContents,
    /// Policy name -> where it sends each family's traffic now.
    pub outcomes: BTreeMap<String, Outcomes>,
}

impl Desired {
    /// Set name -> rule id.
    pub fn rule_ids(&self) -> NameIds {
        rule_ids(&self.rules)
    }
}

/// Set name -> rule id of `rules` (the default rule has no set name).
pub fn rule_ids(rules: &BTreeMap<u32, Rule>) -> NameIds {
    rules
        .values()
        .filter(|r| r.id != DEFAULT_RULE)
        .map(|r| (r.name.clone(), r.id))
        .collect()
}

/// One step towards a configuration: the configuration it applies and what it asks of the
/// kernel.
#[derive(Clone, Debug)]
pub struct Step {
    /// `None`: the whole configuration being applied (not copied: it may hold a million
    /// prefixes); a part of it otherwise.
    pub config: Option<Config>,
    pub desired: Desired,
}

/// The steps that bring the kernel from `rule_ids`/`wan_slots` to `config`: usually one. When a
/// new set has to take the id of a set removed in the same change (every other id is taken)
/// while that set's prefixes are still in the maps, the old sets are removed first (a step
/// without the new sets), then the new ones added.
pub fn steps(
    config: &mut Config,
    rule_ids: &NameIds,
    wan_slots: &NameIds,
    up: impl Fn(&str, Family) -> bool,
) -> Vec<Step> {
    // Only the ids decide whether one step does: no second compilation of every prefix.
    let recycled = sets::rule_ids(config, rule_ids).recycled;
    if recycled.is_empty() {
        return vec![Step {
            config: None,
            desired: desired_taking_lists(config, rule_ids, wan_slots, &up),
        }];
    }
    let mut first = config.clone();
    first.sets.retain(|s| !recycled.contains(&s.name));
    let before = desired_taking_lists(&mut first, rule_ids, wan_slots, &up);
    let after = desired_taking_lists(config, &before.rule_ids(), &before.wan_slots, &up);
    vec![
        Step {
            config: Some(first),
            desired: before,
        },
        Step {
            config: None,
            desired: after,
        },
    ]
}

/// Computes the desired state of `config`, keeping earlier rule ids and WAN slots, with each
/// WAN's families up or down as `up` says.
pub fn desired(
    config: &Config,
    rule_ids: &NameIds,
    wan_slots: &NameIds,
    up: impl Fn(&str, Family) -> bool,
) -> Desired {
    desired_of(config, sets::compile(config, rule_ids), wan_slots, up)
}

/// [`desired`], taking the lists' prefixes out of `config` ([`sets::compile_taking_lists`]).
fn desired_taking_lists(
    config: &mut Config,
    rule_ids: &NameIds,
    wan_slots: &NameIds,
    up: impl Fn(&str, Family) -> bool,
) -> Desired {
    let compiled = sets::compile_taking_lists(config, rule_ids);
    desired_of(config, compiled, wan_slots, up)
}

/// The desired state of `config`, its sets compiled.
fn desired_of(
    config: &Config,
    compiled: sets::Compiled,
    wan_slots: &NameIds,
    up: impl Fn(&str, Family) -> bool,
) -> Desired {
    let wan_slots = sets::wan_slots(config, wan_slots);
    let (table, outcomes) = policy_table(config, &compiled.rules, &wan_slots, up);
    let wans = config
        .wans
        .iter()
        .filter_map(|w| {
            let slot = *wan_slots.get(&w.name)?;
            let name = WanName {
                name: w.name.clone(),
                mark: w.mark,
                table: w.table,
            };
            Some((slot, name))
        })
        .collect();
    Desired {
        rules: compiled.rules,
        wan_slots,
        contents: MapContents {
            prefixes: compiled.prefixes,
            table,
            wans,
            capacity: config.general.capacity,
            log_packets: config.general.log_packets,
            ordered: CondTables::compile(&compiled.ordered)
                .expect("the configuration checks the ordered rules' port groups"),
        },
        outcomes,
    }
}

/// Every policy resolved with the WANs' families as `up` says: the policy table and the
/// outcomes.
pub fn policy_table(
    config: &Config,
    rules: &BTreeMap<u32, Rule>,
    wan_slots: &NameIds,
    up: impl Fn(&str, Family) -> bool,
) -> (crate::model::PolicyTable, BTreeMap<String, Outcomes>) {
    policy::table(config, rules, |name, family| {
        Some(WanView {
            slot: *wan_slots.get(name)?,
            mark: config.wan(name)?.mark,
            up: up(name, family),
        })
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use steer_common::{LB_SLOTS, MAX_RULES, action};

    use super::*;
    use crate::model::{PrefixMap, RuleKind};
    use crate::policy::Outcome;

    fn config(sets: &str) -> Config {
        let text = format!(
            r#"
[general]
lan = ["lan0"]
{wans}[[policy]]
name = "wan2-first"
members = [{{ wan = "wan2" }}, {{ wan = "wan1", metric = 2 }}]
[[policy]]
name = "balanced"
members = [{{ wan = "wan1" }}, {{ wan = "wan2" }}]
[default]
policy = "balanced"
{sets}"#,
            wans = crate::config::testing::TWO_WANS
        );
        crate::config::parse(&text, Path::new("/nonexistent/steer.toml")).expect("valid")
    }

    const BYPASS: &str = r#"
[[set]]
name = "bypass"
policy = "wan2-first"
prefixes = ["203.0.113.0/24", "2001:db8::/32"]
[[set]]
name = "kids"
policy = "wan2-first"
match = "src"
prefixes = ["192.168.1.64/27"]
"#;

    #[test]
    fn a_configuration_becomes_rules_prefixes_wan_names_and_a_policy_table() {
        let d = desired(&config(BYPASS), &NameIds::new(), &NameIds::new(), |_, _| {
            true
        });
        let kinds: Vec<(u32, &str, RuleKind)> = d
            .rules
            .values()
            .map(|r| (r.id, r.name.as_str(), r.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                (0, "default", RuleKind::Default),
                (1, "bypass", RuleKind::Set(crate::model::Direction::Dst)),
                (2, "kids", RuleKind::Set(crate::model::Direction::Src)),
            ]
        );
        let p = &d.contents.prefixes;
        assert_eq!(
            (
                p.map(PrefixMap::DstV4).len(),
                p.map(PrefixMap::DstV6).len(),
                p.map(PrefixMap::SrcV4).len(),
                p.map(PrefixMap::SrcV6).len()
            ),
            (1, 1, 1, 0)
        );
        assert_eq!(d.wan_slots["wan1"], 0);
        assert_eq!(d.contents.wans[&1].name, "wan2");
        let t = &d.contents.table;
        for family in Family::ALL {
            let half = t.family(family);
            assert_eq!(
                half.entries[0].action,
                action::BALANCE,
                "default rule balanced"
            );
            assert_eq!(half.slots[&0].len(), LB_SLOTS as usize);
            assert_eq!(
                (half.entries[1].action, half.entries[1].mark),
                (action::MARK, 0x200)
            );
        }
        assert!((3..MAX_RULES).all(|r| !t.in_use(r)));
        assert_eq!(
            d.outcomes["wan2-first"].0,
            [Outcome::Wan("wan2".into()), Outcome::Wan("wan2".into())]
        );
    }

    #[test]
    fn wan_states_move_policies_and_ids_stay_put() {
        let cfg = config(BYPASS);
        let up = desired(&cfg, &NameIds::new(), &NameIds::new(), |_, _| true);
        let wan2_down = desired(&cfg, &up.rule_ids(), &up.wan_slots, |w, _| w != "wan2");
        assert_eq!(wan2_down.rules, up.rules);
        assert_eq!(wan2_down.contents.prefixes, up.contents.prefixes);
        assert_eq!(wan2_down.outcomes["wan2-first"].to_string(), "wan1");
        let t = &wan2_down.contents.table;
        assert_eq!(t.entry(Family::V4, 1).mark, 0x100);
        assert_eq!(t.entry(Family::V6, 0).action, action::MARK);
        // wan2 down for IPv6 only: only IPv6 moves.
        let v6_down = desired(&cfg, &up.rule_ids(), &up.wan_slots, |w, f| {
            !(w == "wan2" && f == Family::V6)
        });
        let t = &v6_down.contents.table;
        assert_eq!(
            (t.entry(Family::V4, 1).mark, t.entry(Family::V6, 1).mark),
            (0x200, 0x100)
        );
        assert_eq!(
            v6_down.outcomes["wan2-first"].to_string(),
            "IPv4: wan2; IPv6: wan1"
        );
    }

    #[test]
    fn a_set_that_needs_a_freed_id_is_added_in_a_second_step() {
        // Every id but the default rule's is held: a new set must reuse the id of one that goes.
        let mut previous: NameIds = (1..MAX_RULES).map(|id| (format!("old{id}"), id)).collect();
        let mut cfg = config(BYPASS);
        previous.insert("kids".into(), 9);
        previous.remove("old9");
        let steps = steps(&mut cfg, &previous, &NameIds::new(), |_, _| true);
        assert_eq!(steps.len(), 2);
        let first: Vec<&str> = steps[0]
            .config
            .as_ref()
            .expect("a part of the configuration")
            .sets
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(first, ["kids"], "the first step only removes and keeps");
        assert_eq!(steps[0].desired.rules.len(), 2);
        let last = &steps[1].desired;
        assert_eq!(last.rule_ids()["kids"], 9);
        assert!(last.rule_ids().contains_key("bypass"));
        let one = self::steps(&mut cfg, &NameIds::new(), &NameIds::new(), |_, _| true);
        assert_eq!(one.len(), 1, "with free ids one step does it");
    }
}
