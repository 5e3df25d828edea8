//! From a policy and the state of its WANs to what the classifier stamps.
//!
//! A policy's members are tried by tier: the lowest metric among the WANs that are up wins;
//! members sharing that metric split the traffic by weight through a table of `LB_SLOTS`
//! slots ([`slots`]: exact shares, only a failed member's slots move); when no member is up,
//! the policy's `last_resort` applies. Pure functions: the controller feeds them the current
//! WAN states and writes the result to the standby generation before flipping.

pub mod slots;

use std::collections::BTreeMap;

use steer_common::{LB_SLOTS, LbSlot, NO_WAN, PolicyEntry, action, policy_flags};

use crate::{
    config::{Config, HashBy, LastResort, Policy},
    model::{Family, PolicyTable, Rule, last_resort_marks},
};

/// What the controller knows about one WAN when it resolves policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WanView {
    /// WAN slot (per-WAN counters and names).
    pub slot: u32,
    pub mark: u32,
    pub up: bool,
}

/// Where a policy sends traffic right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// One WAN.
    Wan(String),
    /// Several WANs of the same metric, by weight.
    Balanced(Vec<String>),
    /// No member is up.
    LastResort(LastResort),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Wan(w) => write!(f, "{w}"),
            Outcome::Balanced(ws) => write!(f, "balanced over {}", ws.join("+")),
            Outcome::LastResort(LastResort::Default) => write!(f, "last resort: main table"),
            Outcome::LastResort(LastResort::Unreachable) => write!(f, "last resort: unreachable"),
            Outcome::LastResort(LastResort::Blackhole) => write!(f, "last resort: blackhole"),
        }
    }
}

/// A resolved policy: the entry for the policy table, the slots of a balanced one, and the
/// outcome in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub entry: PolicyEntry,
    pub slots: Option<Box<[LbSlot; LB_SLOTS as usize]>>,
    pub outcome: Outcome,
}

/// Resolves `policy` against the WANs as `wan` reports them (by name).
pub fn resolve(policy: &Policy, wan: impl Fn(&str) -> Option<WanView>, mask: u32) -> Resolution {
    let known: Vec<(&str, WanView, u32, u32)> = policy
        .members
        .iter()
        .filter_map(|m| wan(&m.wan).map(|v| (m.wan.as_str(), v, m.metric, m.weight)))
        .collect();
    let Some(best) = known
        .iter()
        .filter(|(_, v, ..)| v.up)
        .map(|(_, _, metric, _)| *metric)
        .min()
    else {
        return last_resort(policy.last_resort, mask);
    };
    // The whole tier, down members included: the slot table keeps their places for them.
    let tier: Vec<_> = known.into_iter().filter(|m| m.2 == best).collect();
    let up: Vec<&(&str, WanView, u32, u32)> = tier.iter().filter(|m| m.1.up).collect();
    let flags = match policy.hash {
        HashBy::Flow => 0,
        HashBy::Src => policy_flags::HASH_SRC,
    };
    if let [(name, view, _, _)] = up.as_slice() {
        return Resolution {
            entry: PolicyEntry {
                action: action::MARK,
                mark: view.mark,
                mask,
                wan: view.slot,
                ..PolicyEntry::default()
            },
            slots: None,
            outcome: Outcome::Wan((*name).to_owned()),
        };
    }
    let weights: Vec<u32> = tier.iter().map(|m| m.3).collect();
    let states: Vec<bool> = tier.iter().map(|m| m.1.up).collect();
    let owners = slots::owners(&weights, &states).expect("a member is up");
    let table = owners.map(|m| LbSlot {
        mark: tier[m].1.mark,
        wan: tier[m].1.slot,
    });
    Resolution {
        entry: PolicyEntry {
            action: action::BALANCE,
            mark: 0,
            mask,
            wan: NO_WAN,
            flags,
            lb: 0,
        },
        slots: Some(Box::new(table)),
        outcome: Outcome::Balanced(up.iter().map(|(n, ..)| (*n).to_owned()).collect()),
    }
}

fn last_resort(lr: LastResort, mask: u32) -> Resolution {
    let (unreachable, blackhole) = last_resort_marks(mask);
    let entry = match lr {
        LastResort::Default => PolicyEntry {
            action: action::NONE,
            mark: 0,
            mask,
            wan: NO_WAN,
            ..PolicyEntry::default()
        },
        LastResort::Unreachable => PolicyEntry {
            action: action::MARK,
            mark: unreachable,
            mask,
            wan: NO_WAN,
            ..PolicyEntry::default()
        },
        LastResort::Blackhole => PolicyEntry {
            action: action::MARK,
            mark: blackhole,
            mask,
            wan: NO_WAN,
            ..PolicyEntry::default()
        },
    };
    Resolution {
        entry,
        slots: None,
        outcome: Outcome::LastResort(lr),
    }
}

/// Where a policy sends each address family's traffic now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcomes(pub [Outcome; 2]);

impl Outcomes {
    pub fn family(&self, family: Family) -> &Outcome {
        &self.0[family.index()]
    }
}

impl std::fmt::Display for Outcomes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [v4, v6] = &self.0;
        if v4 == v6 {
            write!(f, "{v4}")
        } else {
            write!(f, "IPv4: {v4}; IPv6: {v6}")
        }
    }
}

/// The policy table of a compiled configuration: for every rule and address family, what its
/// policy resolves to with the WANs as `wan` reports them for that family, plus the names
/// `steer dump` shows.
pub fn table(
    config: &Config,
    rules: &BTreeMap<u32, Rule>,
    wan: impl Fn(&str, Family) -> Option<WanView>,
) -> (PolicyTable, BTreeMap<String, Outcomes>) {
    let mask = config.general.mark_mask;
    let mut t = PolicyTable::default();
    for (id, rule) in rules {
        t.info[*id as usize] = rule.info();
    }
    let mut outcomes: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
    for family in Family::ALL {
        let resolved: BTreeMap<&str, Resolution> = config
            .policies
            .iter()
            .map(|p| (p.name.as_str(), resolve(p, |w| wan(w, family), mask)))
            .collect();
        let half = t.family_mut(family);
        for (id, rule) in rules {
            let i = *id as usize;
            let Some(r) = rule.policy.as_deref().and_then(|p| resolved.get(p)) else {
                half.entries[i] = PolicyEntry {
                    action: action::NONE,
                    mark: 0,
                    mask,
                    wan: NO_WAN,
                    ..PolicyEntry::default()
                };
                continue;
            };
            half.entries[i] = r.entry;
            if let Some(slots) = &r.slots {
                half.slots.insert(*id, slots.clone());
            }
        }
        for (name, r) in resolved {
            outcomes.entry(name.to_owned()).or_default().push(r.outcome);
        }
    }
    let outcomes = outcomes
        .into_iter()
        .map(|(name, o)| {
            let [v4, v6]: [Outcome; 2] = o.try_into().expect("one outcome per family");
            (name, Outcomes([v4, v6]))
        })
        .collect();
    (t, outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Member;

    fn policy(members: &[(&str, u32, u32)], lr: LastResort) -> Policy {
        Policy {
            name: "p".into(),
            members: members
                .iter()
                .map(|(w, metric, weight)| Member {
                    wan: (*w).into(),
                    metric: *metric,
                    weight: *weight,
                })
                .collect(),
            last_resort: lr,
            hash: HashBy::Flow,
            failback: crate::config::Failback::Keep,
        }
    }

    fn wans<'a>(up: &'a [&'a str]) -> impl Fn(&str) -> Option<WanView> + 'a {
        move |name| {
            let (slot, mark) = match name {
                "wan1" => (0, 0x100),
                "wan2" => (1, 0x200),
                "wan3" => (2, 0x300),
                _ => return None,
            };
            Some(WanView {
                slot,
                mark,
                up: up.contains(&name),
            })
        }
    }

    #[test]
    fn lowest_metric_of_the_up_members_wins() {
        let p = policy(&[("wan2", 1, 1), ("wan1", 2, 1)], LastResort::Default);
        let r = resolve(&p, wans(&["wan1", "wan2"]), 0xff00);
        assert_eq!(
            (r.entry.action, r.entry.mark, r.entry.wan),
            (action::MARK, 0x200, 1)
        );
        let r = resolve(&p, wans(&["wan1"]), 0xff00);
        assert_eq!(
            (r.entry.mark, r.outcome),
            (0x100, Outcome::Wan("wan1".into()))
        );
    }

    #[test]
    fn last_resort_when_nothing_is_up() {
        let (u, b) = last_resort_marks(0xff00);
        for (lr, want) in [
            (LastResort::Default, (action::NONE, 0)),
            (LastResort::Unreachable, (action::MARK, u)),
            (LastResort::Blackhole, (action::MARK, b)),
        ] {
            let r = resolve(&policy(&[("wan1", 1, 1)], lr), wans(&[]), 0xff00);
            assert_eq!((r.entry.action, r.entry.mark), want, "{lr:?}");
            assert_eq!(r.outcome, Outcome::LastResort(lr));
        }
    }

    #[test]
    fn equal_metrics_balance_by_weight() {
        let p = policy(
            &[("wan1", 1, 3), ("wan2", 1, 1), ("wan3", 2, 1)],
            LastResort::Default,
        );
        let r = resolve(&p, wans(&["wan1", "wan2", "wan3"]), 0xff00);
        assert_eq!(r.entry.action, action::BALANCE);
        let slots = r.slots.expect("balanced");
        let share = |mark| slots.iter().filter(|s| s.mark == mark).count();
        assert_eq!(
            (share(0x100), share(0x200), share(0x300)),
            (192, 64, 0),
            "3:1 exactly; the metric-2 member gets nothing"
        );
    }

    #[test]
    fn a_failing_member_only_moves_its_own_slots_and_its_return_restores_them() {
        let p = policy(
            &[("wan1", 1, 1), ("wan2", 1, 1), ("wan3", 1, 1)],
            LastResort::Default,
        );
        let all = resolve(&p, wans(&["wan1", "wan2", "wan3"]), 0xff00)
            .slots
            .unwrap();
        let without3 = resolve(&p, wans(&["wan1", "wan2"]), 0xff00).slots.unwrap();
        for (b, a) in all.iter().zip(without3.iter()) {
            if b.mark != 0x300 {
                assert_eq!(b, a, "slots of surviving members stay put");
            }
        }
        assert!(without3.iter().all(|s| s.mark != 0x300));
        let back = resolve(&p, wans(&["wan1", "wan2", "wan3"]), 0xff00)
            .slots
            .unwrap();
        assert_eq!(back, all, "identical after the return");
        let share = |t: &[LbSlot], mark| t.iter().filter(|s| s.mark == mark).count();
        assert_eq!(share(&without3[..], 0x100), 128);
        assert_eq!(share(&without3[..], 0x200), 128);
    }

    #[test]
    fn the_names_do_not_change_the_shares() {
        for (a, b) in [("eth1", "eth2"), ("wan", "wanb"), ("dsl", "lte")] {
            let p = policy(&[(a, 1, 1), (b, 1, 1)], LastResort::Default);
            let view = |name: &str| {
                Some(WanView {
                    slot: u32::from(name == b),
                    mark: if name == a { 0x100 } else { 0x200 },
                    up: true,
                })
            };
            let slots = resolve(&p, view, 0xff00).slots.unwrap();
            let first = slots.iter().filter(|s| s.mark == 0x100).count();
            assert_eq!(first, 128, "{a}/{b}");
        }
    }
}
