//! From a valid configuration to the desired contents of the prefix maps and the rule table.
//!
//! Every set is one rule. Rule ids are stable across reloads (a set keeps its id while its name
//! stays), so a reload that leaves a set's prefixes alone writes none of them. Rule 0 is the
//! default rule: what a packet no set matches gets.

use std::collections::BTreeMap;

use steer_common::{DEFAULT_RULE, MAX_RULES, MAX_WANS};

use crate::{
    config::Config,
    model::{DEFAULT_RULE_NAME, NameIds, OrderedRule, PrefixSets, Rule, RuleKind},
};

/// Everything the sets of a configuration ask of the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compiled {
    /// By rule id; always holds rule 0.
    pub rules: BTreeMap<u32, Rule>,
    pub prefixes: PrefixSets,
    /// The sets with conditions, in configuration order (their prefixes are not in
    /// `prefixes`: the condition maps hold them).
    pub ordered: Vec<OrderedRule>,
    /// New sets that had to take the id of a set removed in this same compilation (every other
    /// id was taken); the controller removes the old sets first, then adds these.
    pub recycled: Vec<String>,
}

/// Ids for names: the result, and the new names that got an id `previous` gave to a name that
/// is gone.
#[derive(Debug)]
pub struct Ids {
    pub ids: NameIds,
    pub recycled: Vec<String>,
}

/// Gives every name an id in `first..limit`: names in `previous` keep theirs; new names take the
/// lowest id nobody in `previous` had, so an id whose old owner's entries may still be in the
/// kernel is not handed out in the same step. Only when no such id is left does a new name
/// take one that was freed (reported in `recycled`). `wanted` must fit in the range (the
/// configuration checks the limits).
pub fn stable_ids(wanted: &[&str], previous: &NameIds, first: u32, limit: u32) -> Ids {
    let mut ids: BTreeMap<String, u32> = wanted
        .iter()
        .filter_map(|n| {
            previous
                .get(*n)
                .filter(|id| (first..limit).contains(*id))
                .map(|id| ((*n).to_owned(), *id))
        })
        .collect();
    let mut kept = vec![false; limit as usize];
    let mut held_before = vec![false; limit as usize];
    for id in ids.values() {
        kept[*id as usize] = true;
    }
    for id in previous.values().filter(|id| (first..limit).contains(*id)) {
        held_before[*id as usize] = true;
    }
    let mut recycled = Vec::new();
    for name in wanted {
        if ids.contains_key(*name) {
            continue;
        }
        let fresh = (first..limit).find(|id| !kept[*id as usize] && !held_before[*id as usize]);
        let id = fresh.unwrap_or_else(|| {
            recycled.push((*name).to_owned());
            (first..limit)
                .find(|id| !kept[*id as usize])
                .expect("the configuration limits the number of names")
        });
        kept[id as usize] = true;
        ids.insert((*name).to_owned(), id);
    }
    Ids { ids, recycled }
}

/// The rule ids of `config`'s sets, keeping those of `previous` (set name -> id).
pub fn rule_ids(config: &Config, previous: &NameIds) -> Ids {
    let names: Vec<&str> = config.sets.iter().map(|s| s.name.as_str()).collect();
    stable_ids(&names, previous, DEFAULT_RULE + 1, MAX_RULES)
}

/// Compiles the sets of `config`, keeping the rule ids of `previous` (set name -> id).
pub fn compile(config: &Config, previous: &NameIds) -> Compiled {
    let Ids { ids, recycled } = rule_ids(config, previous);
    let mut rules = BTreeMap::new();
    rules.insert(
        DEFAULT_RULE,
        Rule {
            id: DEFAULT_RULE,
            name: DEFAULT_RULE_NAME.into(),
            policy: config.default.as_ref().map(|d| d.policy.clone()),
            kind: RuleKind::Default,
        },
    );
    let mut prefixes = PrefixSets::default();
    let mut ordered = Vec::new();
    for set in &config.sets {
        let id = ids[&set.name];
        let kind = match set.conditions {
            Some(_) => RuleKind::Ordered(set.direction),
            None => RuleKind::Set(set.direction),
        };
        rules.insert(
            id,
            Rule {
                id,
                name: set.name.clone(),
                policy: Some(set.policy.clone()),
                kind,
            },
        );
        match set.ordered_rule(id) {
            Some(rule) => ordered.push(rule),
            None => {
                prefixes.insert_all(set.direction, set.all_prefixes(), id);
            }
        }
    }
    Compiled {
        rules,
        prefixes,
        ordered,
        recycled,
    }
}

/// [`compile`], taking the plain sets' list prefixes out of `config` into the desired state
/// instead of copying them: the peak of a load holds them once, and the daemon's running
/// configuration keeps none (the kernel's record has them; a message that needs a list's line
/// reads the list again).
pub fn compile_taking_lists(config: &mut Config, previous: &NameIds) -> Compiled {
    let lists: Vec<_> = config
        .sets
        .iter_mut()
        .filter(|s| s.conditions.is_none())
        .map(|s| (s.name.clone(), s.direction, std::mem::take(&mut s.listed)))
        .collect();
    let mut compiled = compile(config, previous);
    let ids = rule_ids(config, previous).ids;
    for (name, direction, listed) in lists {
        compiled
            .prefixes
            .insert_sorted(direction, listed, ids[&name]);
    }
    compiled
}

/// WAN slots (per-WAN counters and names in the kernel), stable across reloads like rule ids.
pub fn wan_slots(config: &Config, previous: &NameIds) -> NameIds {
    let names: Vec<&str> = config.wans.iter().map(|w| w.name.as_str()).collect();
    stable_ids(&names, previous, 0, MAX_WANS).ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_freed_ids_wait_a_step() {
        let prev: BTreeMap<String, u32> = [
            ("a".to_owned(), 1),
            ("b".to_owned(), 2),
            ("c".to_owned(), 3),
        ]
        .into();
        let r = stable_ids(&["c", "new", "a"], &prev, 1, 10);
        assert_eq!((r.ids["a"], r.ids["c"]), (1, 3));
        assert_eq!(
            r.ids["new"], 4,
            "b's id 2 may still be in the kernel: not reused yet"
        );
        assert!(r.recycled.is_empty());
        let fresh = stable_ids(&["x", "y"], &BTreeMap::new(), 1, 10);
        assert_eq!((fresh.ids["x"], fresh.ids["y"]), (1, 2));
        let out_of_range: BTreeMap<String, u32> = [("x".to_owned(), 0)].into();
        assert_eq!(stable_ids(&["x"], &out_of_range, 1, 10).ids["x"], 1);
        // All ids taken before: a new name has to take a freed one, and says so.
        let full: BTreeMap<String, u32> = [("a".to_owned(), 1), ("b".to_owned(), 2)].into();
        let r = stable_ids(&["a", "z"], &full, 1, 3);
        assert_eq!(r.ids["z"], 2);
        assert_eq!(r.recycled, vec!["z".to_owned()]);
    }
}
