//! The policy table of one generation: per rule id, what the classifier stamps (a
//! [`PolicyEntry`]), the consistent-hash slots of a balanced rule, and the names `steer dump`
//! shows. The kernel holds two generations and reads the one the generation word names.

use std::collections::BTreeMap;

use steer_common::{LB_SLOTS, LbSlot, MAX_RULES, PolicyEntry, RuleInfo, rule_kind};

/// One generation's policy table, indexed by rule id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyTable {
    pub entries: Vec<PolicyEntry>,
    /// The slots of every balanced rule.
    pub slots: BTreeMap<u32, Box<[LbSlot; LB_SLOTS as usize]>>,
    pub info: Vec<RuleInfo>,
}

impl Default for PolicyTable {
    fn default() -> Self {
        PolicyTable {
            entries: vec![PolicyEntry::default(); MAX_RULES as usize],
            slots: BTreeMap::new(),
            info: vec![RuleInfo::default(); MAX_RULES as usize],
        }
    }
}

impl PolicyTable {
    /// Whether rule id `rule` means something in this table.
    pub fn in_use(&self, rule: u32) -> bool {
        self.info[rule as usize].kind != rule_kind::UNUSED
    }

    /// Takes rule `rule` (entry, slots, names) over from `from`.
    pub fn copy_rule(&mut self, from: &PolicyTable, rule: u32) {
        let r = rule as usize;
        self.entries[r] = from.entries[r];
        self.info[r] = from.info[r];
        match from.slots.get(&rule) {
            Some(s) => self.slots.insert(rule, s.clone()),
            None => self.slots.remove(&rule),
        };
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
