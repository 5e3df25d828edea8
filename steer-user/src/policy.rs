//! From a policy and the state of its WANs to what the classifier stamps.
//!
//! A policy's members are tried by tier: the lowest metric among the WANs that are up wins;
//! members sharing that metric split the traffic by weight through a consistent-hash table of
//! `LB_SLOTS` slots; when no member is up, the policy's `last_resort` applies. Pure functions:
//! the controller feeds them the current WAN states and writes the result to the standby
//! generation before flipping.

use std::collections::BTreeMap;

use steer_common::{LB_SLOTS, LbSlot, NO_WAN, PolicyEntry, action};

use crate::{
    config::{Config, LastResort, Policy},
    model::{PolicyTable, Rule, last_resort_marks},
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
    let up: Vec<(&str, WanView, u32, u32)> = policy
        .members
        .iter()
        .filter_map(|m| {
            wan(&m.wan)
                .filter(|v| v.up)
                .map(|v| (m.wan.as_str(), v, m.metric, m.weight))
        })
        .collect();
    let Some(best) = up.iter().map(|(_, _, metric, _)| *metric).min() else {
        return last_resort(policy.last_resort, mask);
    };
    let tier: Vec<_> = up
        .into_iter()
        .filter(|(_, _, metric, _)| *metric == best)
        .collect();
    if let [(name, view, _, _)] = tier.as_slice() {
        return Resolution {
            entry: PolicyEntry {
                action: action::MARK,
                mark: view.mark,
                mask,
                wan: view.slot,
            },
            slots: None,
            outcome: Outcome::Wan((*name).to_owned()),
        };
    }
    let members: Vec<(&str, LbSlot, u32)> = tier
        .iter()
        .map(|(name, view, _, weight)| {
            (
                *name,
                LbSlot {
                    mark: view.mark,
                    wan: view.slot,
                },
                *weight,
            )
        })
        .collect();
    Resolution {
        entry: PolicyEntry {
            action: action::BALANCE,
            mark: 0,
            mask,
            wan: NO_WAN,
        },
        slots: Some(Box::new(weighted_slots(&members))),
        outcome: Outcome::Balanced(tier.iter().map(|(n, ..)| (*n).to_owned()).collect()),
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
        },
        LastResort::Unreachable => PolicyEntry {
            action: action::MARK,
            mark: unreachable,
            mask,
            wan: NO_WAN,
        },
        LastResort::Blackhole => PolicyEntry {
            action: action::MARK,
            mark: blackhole,
            mask,
            wan: NO_WAN,
        },
    };
    Resolution {
        entry,
        slots: None,
        outcome: Outcome::LastResort(lr),
    }
}

/// Fills the consistent-hash table by weighted rendezvous hashing: every slot goes to the
/// member with the highest `-weight / ln(u)`, `u` a hash of (slot, member name) in (0, 1).
/// A slot only ever moves when its winner leaves or a new member outbids it, so when a WAN
/// fails only its own flows move, and they come back when it returns.
pub fn weighted_slots(members: &[(&str, LbSlot, u32)]) -> [LbSlot; LB_SLOTS as usize] {
    let mut slots = [LbSlot::default(); LB_SLOTS as usize];
    for (i, slot) in slots.iter_mut().enumerate() {
        let winner = members.iter().max_by(|a, b| {
            score(i as u64, a.0, a.2)
                .total_cmp(&score(i as u64, b.0, b.2))
                .then_with(|| b.0.cmp(a.0))
        });
        if let Some((_, s, _)) = winner {
            *slot = *s;
        }
    }
    slots
}

fn score(slot: u64, name: &str, weight: u32) -> f64 {
    let h = mix(fnv1a(name.as_bytes()) ^ mix(slot.wrapping_add(0x5eed)));
    // 53 random bits, shifted off zero so ln() stays finite and negative.
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(weight) / u.ln()
}

/// FNV-1a: stable across Rust versions and platforms (std's hasher is not).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// SplitMix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The policy table of a compiled configuration: for every rule, what its policy resolves to
/// with the WANs as `wan` reports them, plus the names `steer dump` shows.
pub fn table(
    config: &Config,
    rules: &BTreeMap<u32, Rule>,
    wan: impl Fn(&str) -> Option<WanView>,
) -> (PolicyTable, BTreeMap<String, Outcome>) {
    let mask = config.general.mark_mask;
    let resolved: BTreeMap<String, Resolution> = config
        .policies
        .iter()
        .map(|p| (p.name.clone(), resolve(p, &wan, mask)))
        .collect();
    let mut t = PolicyTable::default();
    for (id, rule) in rules {
        let i = *id as usize;
        t.info[i] = rule.info();
        let Some(r) = rule.policy.as_ref().and_then(|p| resolved.get(p)) else {
            t.entries[i] = PolicyEntry {
                action: action::NONE,
                mark: 0,
                mask,
                wan: NO_WAN,
            };
            continue;
        };
        t.entries[i] = r.entry;
        if let Some(slots) = &r.slots {
            t.slots.insert(*id, slots.clone());
        }
    }
    let outcomes = resolved
        .into_iter()
        .map(|(name, r)| (name, r.outcome))
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
        let wan1 = slots.iter().filter(|s| s.mark == 0x100).count();
        let wan2 = slots.iter().filter(|s| s.mark == 0x200).count();
        assert_eq!(
            wan1 + wan2,
            LB_SLOTS as usize,
            "the metric-2 member gets nothing"
        );
        assert!(
            (36..=60).contains(&wan1),
            "3:1 by weight, got {wan1}:{wan2}"
        );
    }

    #[test]
    fn a_failing_member_only_moves_its_own_slots() {
        let both: Vec<(&str, LbSlot, u32)> = vec![
            (
                "wan1",
                LbSlot {
                    mark: 0x100,
                    wan: 0,
                },
                1,
            ),
            (
                "wan2",
                LbSlot {
                    mark: 0x200,
                    wan: 1,
                },
                1,
            ),
            (
                "wan3",
                LbSlot {
                    mark: 0x300,
                    wan: 2,
                },
                1,
            ),
        ];
        let before = weighted_slots(&both);
        let after = weighted_slots(&both[..2]);
        for (b, a) in before.iter().zip(&after) {
            if b.mark != 0x300 {
                assert_eq!(b, a, "slots of surviving members stay put");
            }
        }
        assert!(after.iter().all(|s| s.mark != 0x300));
        assert_eq!(weighted_slots(&both), before, "deterministic");
    }
}
