//! The policy table of one generation: per address family and rule id, what the classifier
//! stamps (a [`PolicyEntry`]) and the slots of a balanced rule; per rule id, the names `steer
//! dump` shows. The kernel holds `GENERATIONS` of them (the live one, the previous one and
//! standbys, see `dataplane::generations`) and reads the one the generation word names.

use std::collections::BTreeMap;

use steer_common::{LB_SLOTS, LbSlot, MAX_RULES, PolicyEntry, RuleInfo, rule_kind};

use super::Family;

/// The slot table of one balanced rule.
pub type Slots = Box<[LbSlot; LB_SLOTS as usize]>;

/// One family's half of a generation: entries by rule id, and the slots of balanced rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyTable {
    pub entries: Vec<PolicyEntry>,
    pub slots: BTreeMap<u32, Slots>,
}

impl Default for FamilyTable {
    fn default() -> Self {
        FamilyTable {
            entries: vec![PolicyEntry::default(); MAX_RULES as usize],
            slots: BTreeMap::new(),
        }
    }
}

/// One generation's policy table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyTable {
    /// By [`Family::index`].
    pub families: [FamilyTable; 2],
    pub info: Vec<RuleInfo>,
}

impl Default for PolicyTable {
    fn default() -> Self {
        PolicyTable {
            families: Default::default(),
            info: vec![RuleInfo::default(); MAX_RULES as usize],
        }
    }
}

impl PolicyTable {
    /// Whether rule id `rule` means something in this table.
    pub fn in_use(&self, rule: u32) -> bool {
        self.info[rule as usize].kind != rule_kind::UNUSED
    }

    pub fn family(&self, family: Family) -> &FamilyTable {
        &self.families[family.index()]
    }

    pub fn family_mut(&mut self, family: Family) -> &mut FamilyTable {
        &mut self.families[family.index()]
    }

    /// What rule `rule` stamps for packets of `family`.
    pub fn entry(&self, family: Family, rule: u32) -> PolicyEntry {
        self.family(family).entries[rule as usize]
    }

    /// Takes rule `rule` (entries, slots, names) over from `from`.
    pub fn copy_rule(&mut self, from: &PolicyTable, rule: u32) {
        let r = rule as usize;
        self.info[r] = from.info[r];
        for (to, from) in self.families.iter_mut().zip(&from.families) {
            to.entries[r] = from.entries[r];
            match from.slots.get(&rule) {
                Some(s) => to.slots.insert(rule, s.clone()),
                None => to.slots.remove(&rule),
            };
        }
    }
}

/// The marks of the two last-resort verdicts that need routing help: the highest two values
/// inside the mask (0xff00 -> unreachable 0xff00, blackhole 0xfe00). Routing sends them to
/// `unreachable` and `blackhole` rules; WAN marks may not use them (config validation).
pub fn last_resort_marks(mask: u32) -> (u32, u32) {
    let lowest = mask & mask.wrapping_neg();
    (mask, mask & !lowest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_resort_marks_are_the_top_two_values_of_the_mask() {
        assert_eq!(last_resort_marks(0xff00), (0xff00, 0xfe00));
        assert_eq!(last_resort_marks(0x00f0_0000), (0x00f0_0000, 0x00e0_0000));
    }
}
