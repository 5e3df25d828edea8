//! Rules: what a rule id in the kernel stands for.
//!
//! Every set is one rule; rule 0 ([`steer_common::DEFAULT_RULE`]) is the default rule, what a
//! packet that no set matches gets. The kernel keeps each rule's names and kind in `RULE_INFO`
//! so `steer dump` and a restarted daemon can read them back without the configuration.

use steer_common::{RuleInfo, name_from_bytes, name_to_bytes, rule_kind};

use super::Direction;

/// Name of the default rule in reports (`[default]` in the configuration).
pub const DEFAULT_RULE_NAME: &str = "default";

/// What a rule matches on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleKind {
    /// Rule 0: packets no set matched.
    Default,
    /// A set matching on this address of the packet.
    Set(Direction),
    /// A set with conditions (an ordered rule); its prefixes are this address of the packet.
    Ordered(Direction),
}

impl RuleKind {
    /// The `steer_common::rule_kind` number the kernel stores.
    pub const fn raw(self) -> u32 {
        match self {
            RuleKind::Default => rule_kind::DEFAULT,
            RuleKind::Set(Direction::Dst) => rule_kind::DST,
            RuleKind::Set(Direction::Src) => rule_kind::SRC,
            RuleKind::Ordered(Direction::Dst) => rule_kind::ORDERED_DST,
            RuleKind::Ordered(Direction::Src) => rule_kind::ORDERED_SRC,
        }
    }

    /// The kind a stored number means; `None` for an unused rule id (or a number this version
    /// does not know).
    pub const fn from_raw(raw: u32) -> Option<RuleKind> {
        match raw {
            rule_kind::DEFAULT => Some(RuleKind::Default),
            rule_kind::DST => Some(RuleKind::Set(Direction::Dst)),
            rule_kind::SRC => Some(RuleKind::Set(Direction::Src)),
            rule_kind::ORDERED_DST => Some(RuleKind::Ordered(Direction::Dst)),
            rule_kind::ORDERED_SRC => Some(RuleKind::Ordered(Direction::Src)),
            _ => None,
        }
    }

    /// The address the rule matches on; `None` for the default rule.
    pub const fn direction(self) -> Option<Direction> {
        match self {
            RuleKind::Default => None,
            RuleKind::Set(d) | RuleKind::Ordered(d) => Some(d),
        }
    }

    /// How users see it: "src", "dst" or "default".
    pub const fn name(self) -> &'static str {
        match self {
            RuleKind::Default => "default",
            RuleKind::Set(d) => d.as_str(),
            RuleKind::Ordered(_) => "ordered",
        }
    }
}

/// What one rule id stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub id: u32,
    /// Set name; [`DEFAULT_RULE_NAME`] for rule 0.
    pub name: String,
    /// The policy it follows; `None` leaves packets unmarked.
    pub policy: Option<String>,
    pub kind: RuleKind,
}

impl Rule {
    /// The names and kind as the kernel keeps them for `steer dump`.
    pub fn info(&self) -> RuleInfo {
        RuleInfo {
            set_name: name_to_bytes(&self.name),
            policy_name: name_to_bytes(self.policy.as_deref().unwrap_or("")),
            kind: self.kind.raw(),
            _pad: 0,
        }
    }

    /// The rule `id` as the kernel kept it; `None` when the id is unused.
    pub fn from_info(id: u32, info: &RuleInfo) -> Option<Rule> {
        let policy = name_from_bytes(&info.policy_name);
        Some(Rule {
            id,
            name: name_from_bytes(&info.set_name).to_owned(),
            policy: (!policy.is_empty()).then(|| policy.to_owned()),
            kind: RuleKind::from_raw(info.kind)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip_through_the_kernel_record() {
        for (kind, policy) in [
            (RuleKind::Default, None),
            (RuleKind::Set(Direction::Dst), Some("wan2-first".to_owned())),
            (RuleKind::Set(Direction::Src), Some("p".to_owned())),
            (RuleKind::Ordered(Direction::Dst), Some("p".to_owned())),
            (RuleKind::Ordered(Direction::Src), Some("p".to_owned())),
        ] {
            let rule = Rule {
                id: 7,
                name: "bypass".into(),
                policy,
                kind,
            };
            assert_eq!(Rule::from_info(7, &rule.info()), Some(rule));
            assert_eq!(RuleKind::from_raw(kind.raw()), Some(kind));
        }
        assert_eq!(Rule::from_info(3, &RuleInfo::default()), None, "unused id");
    }
}
