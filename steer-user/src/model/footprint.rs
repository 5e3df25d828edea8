//! The kernel memory the prefix sets take, computed from their prefixes before anything is
//! written: what `steer check` reports and what `general.max_memory` is held against.
//!
//! - A map is a range table and a record (`dataplane/range_set.rs`). Both are arrays of
//!   256 KiB blocks whose size follows from the prefixes alone. An IPv4 table's ranges are
//!   counted by the builder's own sweep ([`range::table_blocks`]), its spare room and the
//!   record's size by the functions the writer uses; an IPv6 table is laid out by its own
//!   builder, counting without storing ([`RangeTable6::blocks_of`]). This is exact, not an
//!   estimate.
//! - A reload, or a change too big to write in place, builds a fresh table and record beside
//!   the live ones and frees the old after publishing: the peak holds one map twice. (A running daemon counts a change from what the kernel holds
//!   instead: `dataplane::sync`.)
//!
//! The values given to the sweep are the sets' own numbers; the daemon's rules can only merge
//! neighbouring ranges, so the count here is never below what it writes.

use std::fmt;

use super::{
    PrefixMap,
    range::{self, PrefixV4},
    range6::{PrefixV6, RangeTable6},
};
use crate::prefix::Prefix;

/// The memory of the four prefix maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    maps: [MapFootprint; PrefixMap::ALL.len()],
}

/// One prefix map's share.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapFootprint {
    pub prefixes: usize,
    /// Bytes in the kernel while the sets are in force.
    pub bytes: u64,
}

impl Footprint {
    /// The memory of the prefix maps holding `entries`: each prefix with the map it goes into
    /// and a number for its set (prefixes of one set share it).
    pub fn of(entries: impl IntoIterator<Item = (PrefixMap, Prefix, u32)>) -> Footprint {
        let mut v4: [Vec<u64>; PrefixMap::ALL.len()] = Default::default();
        let mut v6: [Vec<(PrefixV6, u32)>; PrefixMap::ALL.len()] = Default::default();
        for (map, prefix, set) in entries {
            match prefix {
                Prefix::V4 { addr, len } => {
                    v4[map.index()].push(steer_common::range::record_entry(addr.into(), len, set))
                }
                Prefix::V6 { addr, len } => v6[map.index()].push(((addr.into(), len), set)),
            }
        }
        let mut footprint = Footprint::default();
        for map in PrefixMap::ALL {
            // By address, then length: the order the builders need.
            footprint.maps[map.index()] = if map.is_v4() {
                let entries = &mut v4[map.index()];
                entries.sort_unstable();
                MapFootprint::v4(entries)
            } else {
                let entries = &mut v6[map.index()];
                entries.sort_unstable_by_key(|(p, _)| *p);
                MapFootprint::v6(entries)
            };
        }
        footprint
    }

    pub fn map(&self, map: PrefixMap) -> MapFootprint {
        self.maps[map.index()]
    }

    /// Bytes while the sets are in force.
    pub fn in_force(&self) -> u64 {
        self.maps.iter().map(|m| m.bytes).sum()
    }

    /// Bytes at the peak of a reload: the sets in force and the largest fresh build beside
    /// them (maps are rebuilt one after the other).
    pub fn peak(&self) -> u64 {
        let biggest = self.maps.iter().map(|m| m.bytes).max().unwrap_or(0);
        self.in_force() + biggest
    }

    /// What each map that holds prefixes takes: "IPv4 destination: 1000000 prefixes,
    /// 12.8 MiB; ...", or "no prefixes in prefix sets".
    pub fn breakdown(&self) -> String {
        let parts: Vec<String> = PrefixMap::ALL
            .into_iter()
            .filter(|m| self.map(*m).prefixes > 0)
            .map(|m| {
                let f = self.map(m);
                let noun = if f.prefixes == 1 {
                    "prefix"
                } else {
                    "prefixes"
                };
                format!(
                    "{}: {} {noun}, {}",
                    m.describe(),
                    f.prefixes,
                    Bytes(f.bytes)
                )
            })
            .collect();
        if parts.is_empty() {
            "no prefixes in prefix sets".into()
        } else {
            parts.join("; ")
        }
    }
}

impl MapFootprint {
    /// An IPv4 map holding `sorted` (record entries, in order).
    fn v4(sorted: &[u64]) -> MapFootprint {
        let parts = |e: &u64| {
            let (addr, len, set) = steer_common::range::record_parts(*e);
            ((addr, len) as PrefixV4, set)
        };
        if sorted.is_empty() {
            // The daemon writes no table for a map that never held a prefix.
            return MapFootprint::default();
        }
        let table = range::table_blocks(sorted.iter().map(parts));
        let blocks = table + range::spare_blocks(table) + range::record_blocks(sorted.len());
        MapFootprint {
            prefixes: sorted.len(),
            bytes: range::block_bytes(blocks),
        }
    }

    /// An IPv6 map holding `sorted` (in order): its table, laid out to be counted (nothing
    /// stored), with its spare room, and its record of three `u64`s a prefix.
    fn v6(sorted: &[(PrefixV6, u32)]) -> MapFootprint {
        if sorted.is_empty() {
            return MapFootprint::default();
        }
        let table = RangeTable6::blocks_of(sorted.iter().copied());
        let blocks = table + range::spare_blocks(table) + range::record_blocks(3 * sorted.len());
        MapFootprint {
            prefixes: sorted.len(),
            bytes: range::block_bytes(blocks),
        }
    }
}

/// Bytes as a person reads them, in binary units (as `max_memory` takes them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const KIB: f64 = 1024.0;
        let b = self.0 as f64;
        match self.0 {
            0..1024 => write!(f, "{} B", self.0),
            1024..1_048_576 => write!(f, "{:.1} KiB", b / KIB),
            1_048_576..1_073_741_824 => write!(f, "{:.1} MiB", b / (KIB * KIB)),
            _ => write!(f, "{:.2} GiB", b / (KIB * KIB * KIB)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::model::range::RangeTable;

    fn v4(a: u32, len: u8) -> Prefix {
        Prefix::new(IpAddr::V4(Ipv4Addr::from(a)), len.into()).unwrap()
    }

    #[test]
    fn an_ipv4_map_is_its_table_with_spare_room_and_its_record() {
        // 40k /24s over 4 /8s, and a /8 holding some of them, in two sets.
        let mut entries: Vec<(PrefixMap, Prefix, u32)> = (0..40_000u32)
            .map(|i| {
                let addr = ((i % 4 + 1) << 24) | ((i / 4) << 8);
                (PrefixMap::DstV4, v4(addr, 24), i % 2)
            })
            .collect();
        entries.push((PrefixMap::DstV4, v4(1 << 24, 8), 7));
        let built = RangeTable::build(
            &entries
                .iter()
                .map(|(_, p, set)| {
                    let Prefix::V4 { addr, len } = p else {
                        unreachable!()
                    };
                    ((u32::from(*addr), *len), *set)
                })
                .collect::<Vec<_>>(),
        );
        let f = Footprint::of(entries);
        let dst = f.map(PrefixMap::DstV4);
        let blocks =
            built.blocks() + range::spare_blocks(built.blocks()) + range::record_blocks(40_001);
        assert_eq!(dst.prefixes, 40_001);
        assert_eq!(dst.bytes, range::block_bytes(blocks));
        assert_eq!(f.in_force(), dst.bytes, "no other map holds anything");
        assert_eq!(
            f.peak(),
            2 * dst.bytes,
            "a reload builds the table beside the old"
        );
    }

    #[test]
    fn an_ipv6_map_is_its_built_table_and_record_and_is_rebuilt_beside_itself() {
        let p = Prefix::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 128).unwrap();
        let f = Footprint::of([(PrefixMap::SrcV6, p, 0), (PrefixMap::DstV6, p, 1)]);
        let built = RangeTable6::build(&[((1, 128), 0)]);
        let one = range::block_bytes(
            built.blocks() + range::spare_blocks(built.blocks()) + range::record_blocks(3),
        );
        assert_eq!(f.map(PrefixMap::DstV6).bytes, one);
        assert_eq!(f.in_force(), 2 * one);
        assert_eq!(
            f.peak(),
            3 * one,
            "a change builds one table beside the old"
        );
        assert_eq!(Footprint::of([]).peak(), 0);
    }

    #[test]
    fn bytes_read_in_binary_units() {
        assert_eq!(Bytes(512).to_string(), "512 B");
        assert_eq!(Bytes(3 << 19).to_string(), "1.5 MiB");
        assert_eq!(Bytes(96 << 20).to_string(), "96.0 MiB");
    }
}
