//! The vocabulary the other modules share, at the bottom of the crate: which address a set
//! matches ([`Direction`]), the four prefix maps ([`PrefixMap`]), their capacities
//! ([`Capacity`]), rules ([`Rule`]), the contents of the prefix maps ([`PrefixSets`]), the
//! policy table of one generation ([`PolicyTable`]) and the destinations that are never
//! steered ([`LocalSet`]).
//!
//! Everything here is plain data with no I/O. `config`, `sets`, `policy` and `dataplane` build
//! on it; it imports nothing from them (only [`crate::prefix`], the other bottom module), so the
//! modules above never need each other's types to talk about the kernel's state.

pub mod footprint;
mod local;
pub mod ordered;
mod prefix_rules;
mod prefixes;
pub mod range;
pub mod range6;
mod rules;
pub mod sorted;
mod table;

use std::collections::BTreeMap;

use steer_common::map_names;

pub use local::{LocalKind, LocalScope, LocalSet, local_set};
pub use ordered::{CondTables, Conditions, OrderedRule, PortRange, Proto};
pub use prefix_rules::PrefixRules;
pub use prefixes::PrefixSets;
pub use rules::{DEFAULT_RULE_NAME, Rule, RuleKind};
pub use table::{FamilyTable, PolicyTable, Slots, last_resort_marks};

/// An address family, where steer keeps the two apart: each WAN has an IPv4 and an IPv6 state,
/// and the policy table has a half for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Both families, IPv4 first.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// 0 for IPv4, 1 for IPv6: the position in arrays of two and in the kernel's tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The kernel's family index (`steer_common::FAMILY_V4` / `FAMILY_V6`).
    pub const fn raw(self) -> u32 {
        match self {
            Family::V4 => steer_common::FAMILY_V4,
            Family::V6 => steer_common::FAMILY_V6,
        }
    }

    pub const fn of(ip: &std::net::IpAddr) -> Family {
        match ip {
            std::net::IpAddr::V4(_) => Family::V4,
            std::net::IpAddr::V6(_) => Family::V6,
        }
    }

    /// "IPv4" or "IPv6", for messages.
    pub const fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    pub const fn other(self) -> Family {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        })
    }
}

/// Which address of a packet a set matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Src,
    Dst,
}

impl Direction {
    /// The word for it in config (`match = "src"`), `steer dump` and `steer explain`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Src => "src",
            Direction::Dst => "dst",
        }
    }

    /// The word for it in sentences ("destination", "source").
    pub const fn noun(self) -> &'static str {
        match self {
            Direction::Src => "source",
            Direction::Dst => "destination",
        }
    }
}

/// One of the four prefix maps: a direction and an address family. Every table about the
/// four maps (names, capacities, contents, messages) is indexed by this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrefixMap {
    DstV4,
    DstV6,
    SrcV4,
    SrcV6,
}

impl PrefixMap {
    /// The four maps in the order every listing of them uses.
    pub const ALL: [PrefixMap; 4] = [
        PrefixMap::DstV4,
        PrefixMap::DstV6,
        PrefixMap::SrcV4,
        PrefixMap::SrcV6,
    ];

    /// The IPv4 and the IPv6 map of `direction`.
    pub const fn of_direction(direction: Direction) -> [PrefixMap; 2] {
        [
            PrefixMap::new(direction, true),
            PrefixMap::new(direction, false),
        ]
    }

    pub const fn new(direction: Direction, v4: bool) -> PrefixMap {
        match (direction, v4) {
            (Direction::Dst, true) => PrefixMap::DstV4,
            (Direction::Dst, false) => PrefixMap::DstV6,
            (Direction::Src, true) => PrefixMap::SrcV4,
            (Direction::Src, false) => PrefixMap::SrcV6,
        }
    }

    /// The map a prefix of a set matching on `direction` lives in.
    pub fn of(direction: Direction, prefix: &crate::prefix::Prefix) -> PrefixMap {
        PrefixMap::new(direction, prefix.is_v4())
    }

    pub const fn direction(self) -> Direction {
        match self {
            PrefixMap::DstV4 | PrefixMap::DstV6 => Direction::Dst,
            PrefixMap::SrcV4 | PrefixMap::SrcV6 => Direction::Src,
        }
    }

    pub const fn is_v4(self) -> bool {
        matches!(self, PrefixMap::DstV4 | PrefixMap::SrcV4)
    }

    /// Position in [`PrefixMap::ALL`], for arrays of four.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Its key under `general.capacity` (`dst_v4`, ...).
    pub const fn key(self) -> &'static str {
        match self {
            PrefixMap::DstV4 => "dst_v4",
            PrefixMap::DstV6 => "dst_v6",
            PrefixMap::SrcV4 => "src_v4",
            PrefixMap::SrcV6 => "src_v6",
        }
    }

    /// "IPv4 destination", "IPv6 source", ... for messages.
    pub const fn describe(self) -> &'static str {
        match self {
            PrefixMap::DstV4 => "IPv4 destination",
            PrefixMap::DstV6 => "IPv6 destination",
            PrefixMap::SrcV4 => "IPv4 source",
            PrefixMap::SrcV6 => "IPv6 source",
        }
    }

    /// The kernel map holding it: the set's range table and record.
    pub const fn map_name(self) -> &'static str {
        match self {
            PrefixMap::DstV4 => map_names::DST_V4,
            PrefixMap::DstV6 => map_names::DST_V6,
            PrefixMap::SrcV4 => map_names::SRC_V4,
            PrefixMap::SrcV6 => map_names::SRC_V6,
        }
    }
}

/// How many prefixes each prefix map may hold (whole family), and
/// how much kernel memory they may take. Nothing is preallocated: steer enforces both before
/// it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub dst_v4: u32,
    pub dst_v6: u32,
    pub src_v4: u32,
    pub src_v6: u32,
    /// The most kernel memory the prefix maps may take at the peak of a reload, in bytes
    /// ([`footprint::Footprint::peak`]; `general.max_memory`); `None`: no limit.
    pub memory: Option<u64>,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            dst_v4: steer_common::DEFAULT_CAPACITY_DST_V4,
            dst_v6: steer_common::DEFAULT_CAPACITY_DST_V6,
            src_v4: steer_common::DEFAULT_CAPACITY_SRC_V4,
            src_v6: steer_common::DEFAULT_CAPACITY_SRC_V6,
            memory: None,
        }
    }
}

impl Capacity {
    pub const fn of(&self, map: PrefixMap) -> u32 {
        match map {
            PrefixMap::DstV4 => self.dst_v4,
            PrefixMap::DstV6 => self.dst_v6,
            PrefixMap::SrcV4 => self.src_v4,
            PrefixMap::SrcV6 => self.src_v6,
        }
    }
}

/// Names and the ids the kernel knows them by (rule ids of sets, slots of WANs).
pub type NameIds = BTreeMap<String, u32>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_maps_round_trip_through_direction_and_family() {
        for (i, map) in PrefixMap::ALL.into_iter().enumerate() {
            assert_eq!(map.index(), i);
            assert_eq!(PrefixMap::new(map.direction(), map.is_v4()), map);
            assert_eq!(map.map_name().to_lowercase(), map.key());
        }
        let c = Capacity {
            dst_v4: 1,
            dst_v6: 2,
            src_v4: 3,
            src_v6: 4,
            memory: None,
        };
        let per_map: Vec<u32> = PrefixMap::ALL.iter().map(|m| c.of(*m)).collect();
        assert_eq!(per_map, [1, 2, 3, 4]);
    }
}
