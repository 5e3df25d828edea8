//! The ordered rules — sets with conditions — and what the kernel's condition maps hold for
//! them ([`CondTables`]). The kernel side and the bit-per-rule scheme are described in
//! `steer_common::cond`; this module turns rules into it, and nothing else: no I/O.
//!
//! Precedence: local destinations are never steered; then the ordered rules, first match in
//! configuration order (as mwan3 and omr-bypass rules are); then the prefix sets, longest
//! match; then the default rule.

use std::collections::BTreeMap;

use steer_common::{CondBank, cond};

use super::{Direction, Family};
use crate::prefix::Prefix;

/// A transport protocol a rule names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// ICMP for IPv4, ICMPv6 for IPv6.
    Icmp,
    /// An IP protocol number (tcp is 6, udp 17).
    Number(u8),
}

impl Proto {
    pub const TCP: Proto = Proto::Number(6);
    pub const UDP: Proto = Proto::Number(17);

    /// The protocol number in a family's packets.
    pub fn number(self, family: Family) -> u8 {
        match (self, family) {
            (Proto::Icmp, Family::V4) => 1,
            (Proto::Icmp, Family::V6) => 58,
            (Proto::Number(n), _) => n,
        }
    }

    /// How the configuration and `explain` write it.
    pub fn name(self) -> String {
        match self {
            Proto::Icmp => "icmp".into(),
            Proto::Number(6) => "tcp".into(),
            Proto::Number(17) => "udp".into(),
            Proto::Number(n) => n.to_string(),
        }
    }
}

/// A MAC address written `aa:bb:cc:dd:ee:ff` (or with dashes).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    let mut out = [0u8; 6];
    for (o, p) in out.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    Some(out)
}

/// An inclusive range of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// What a set with conditions asks of a packet besides its own prefixes. An empty list does
/// not constrain; every non-empty one must be met (any of its values).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    /// Empty: any protocol.
    pub protos: Vec<Proto>,
    pub sports: Vec<PortRange>,
    pub dports: Vec<PortRange>,
    pub src_macs: Vec<[u8; 6]>,
    /// LAN interfaces the packet came in on.
    pub ins: Vec<String>,
    /// Source prefixes of a set that matches on destinations.
    pub src_prefixes: Vec<Prefix>,
}

/// One ordered rule: a set's rule id, its conditions and its own prefixes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderedRule {
    pub rule: u32,
    pub direction: Direction,
    /// `None`: every address (the set names no prefixes and no list file). `Some` with an
    /// empty list: no address (its list files came out empty), so the rule matches nothing
    /// rather than everything.
    pub prefixes: Option<Vec<Prefix>>,
    pub conditions: Conditions,
}

impl OrderedRule {
    /// The rule's prefixes on one side of the packet; `None` when it does not constrain it.
    pub fn prefixes_on(&self, side: Direction) -> Option<&[Prefix]> {
        if side == self.direction {
            self.prefixes.as_deref()
        } else if side == Direction::Src && !self.conditions.src_prefixes.is_empty() {
            Some(&self.conditions.src_prefixes)
        } else {
            None
        }
    }

    /// Whether a packet of `family` can meet the rule at all (its address conditions may
    /// name only the other family).
    pub fn fits(&self, family: Family) -> bool {
        [Direction::Src, Direction::Dst].iter().all(|side| {
            self.prefixes_on(*side)
                .is_none_or(|list| list.iter().any(|p| Family::of(&p.addr()) == family))
        })
    }
}

/// Distinct sets of rules the ports of one direction fall into: more than
/// [`cond::PORT_CLASSES`] cannot be kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the ordered rules' {side} ports fall into {classes} distinct groups; steer keeps at most \
     {max}: use fewer distinct port ranges across the rules"
)]
pub struct TooManyPortClasses {
    pub side: &'static str,
    pub classes: usize,
    pub max: u32,
}

/// The contents of one bank of the condition maps, interface names not yet resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CondTables {
    pub bank: CondBank,
    /// Per family, by protocol number: bits of the rules naming it.
    pub proto: [Box<[u64; 256]>; 2],
    /// Per direction (`cond::SRC`, `cond::DST`): every port's class, and each class's bits.
    pub port_class: [Vec<u8>; 2],
    pub port_bits: [Vec<u64>; 2],
    pub macs: BTreeMap<[u8; 6], u64>,
    /// By interface name (resolved to an ifindex when written).
    pub ins: BTreeMap<String, u64>,
    /// Per direction and family (`[dir][family]`): prefix -> bits of the rules whose prefixes
    /// contain it (its own and every shorter one's).
    pub addrs: [[Vec<(Prefix, u64)>; 2]; 2],
}

impl Default for CondTables {
    fn default() -> Self {
        CondTables {
            bank: CondBank::default(),
            proto: [Box::new([0; 256]), Box::new([0; 256])],
            port_class: [Vec::new(), Vec::new()],
            port_bits: [Vec::new(), Vec::new()],
            macs: BTreeMap::new(),
            ins: BTreeMap::new(),
            addrs: Default::default(),
        }
    }
}

impl CondTables {
    /// Whether the bank holds any rule (the classifier may skip the ordered rules).
    pub fn is_empty(&self) -> bool {
        self.bank.used == [0, 0]
    }

    /// The tables of `rules`, in order (the first is tried first). At most
    /// [`cond::MAX_RULES`] rules (the configuration checks it).
    pub fn compile(rules: &[OrderedRule]) -> Result<CondTables, TooManyPortClasses> {
        assert!(
            rules.len() <= cond::MAX_RULES as usize,
            "checked by the config"
        );
        let mut t = CondTables::default();
        let mut ports = [vec![0u64; 65536], vec![0u64; 65536]];
        let mut addrs: [[BTreeMap<Prefix, u64>; 2]; 2] = Default::default();
        for (i, r) in rules.iter().enumerate() {
            let bit = 1u64 << i;
            t.bank.rule[i] = r.rule as u16;
            for family in Family::ALL {
                if r.fits(family) {
                    t.bank.used[family.index()] |= bit;
                }
            }
            t.add_protos(&r.conditions.protos, bit);
            let sides = [
                (cond::SRC, &r.conditions.sports),
                (cond::DST, &r.conditions.dports),
            ];
            for (side, ranges) in sides {
                t.add_ports(&mut ports[side as usize], side, ranges, bit);
            }
            add_keys(
                &mut t,
                cond::any::MAC,
                cond::dims::MAC,
                &r.conditions.src_macs,
                bit,
                |t| &mut t.macs,
            );
            add_keys(
                &mut t,
                cond::any::IN,
                cond::dims::IN,
                &r.conditions.ins,
                bit,
                |t| &mut t.ins,
            );
            for side in [Direction::Src, Direction::Dst] {
                t.add_addrs(&mut addrs[side_index(side)], r, side, bit);
            }
        }
        for side in [cond::SRC, cond::DST] {
            if t.bank.dims & port_dim(side) != 0 {
                let (class, bits) = classes(&ports[side as usize], side)?;
                t.port_class[side as usize] = class;
                t.port_bits[side as usize] = bits;
            }
        }
        for (dir, per_family) in addrs.into_iter().enumerate() {
            for (family, prefixes) in per_family.into_iter().enumerate() {
                t.addrs[dir][family] = pushed_down(prefixes);
            }
        }
        Ok(t)
    }

    fn add_protos(&mut self, protos: &[Proto], bit: u64) {
        if protos.is_empty() {
            self.bank.any[cond::any::PROTO] |= bit;
            return;
        }
        self.bank.dims |= cond::dims::PROTO;
        for family in Family::ALL {
            for p in protos {
                self.proto[family.index()][p.number(family) as usize] |= bit;
            }
        }
    }

    fn add_ports(&mut self, ports: &mut [u64], side: u32, ranges: &[PortRange], bit: u64) {
        let any = if side == cond::SRC {
            cond::any::SPORT
        } else {
            cond::any::DPORT
        };
        if ranges.is_empty() {
            self.bank.any[any] |= bit;
            return;
        }
        self.bank.dims |= port_dim(side);
        for r in ranges {
            for port in r.first..=r.last {
                ports[port as usize] |= bit;
            }
        }
    }

    fn add_addrs(
        &mut self,
        by_family: &mut [BTreeMap<Prefix, u64>; 2],
        rule: &OrderedRule,
        side: Direction,
        bit: u64,
    ) {
        let (dim, any) = match side {
            Direction::Src => (cond::dims::SRC, cond::any::SRC_V4),
            Direction::Dst => (cond::dims::DST, cond::any::DST_V4),
        };
        let Some(prefixes) = rule.prefixes_on(side) else {
            self.bank.any[any + Family::V4.index()] |= bit;
            self.bank.any[any + Family::V6.index()] |= bit;
            return;
        };
        self.bank.dims |= dim;
        for p in prefixes {
            *by_family[Family::of(&p.addr()).index()]
                .entry(*p)
                .or_default() |= bit;
        }
    }
}

/// Index of a side in `CondTables::addrs` (the kernel's `cond::SRC` / `cond::DST`).
pub const fn side_index(side: Direction) -> usize {
    match side {
        Direction::Src => cond::SRC as usize,
        Direction::Dst => cond::DST as usize,
    }
}

const fn port_dim(side: u32) -> u32 {
    if side == cond::SRC {
        cond::dims::SPORT
    } else {
        cond::dims::DPORT
    }
}

/// Adds `bit` for each key of a map dimension, or to its `any` bits when the rule names none.
fn add_keys<K: Ord + Clone>(
    t: &mut CondTables,
    any: usize,
    dim: u32,
    keys: &[K],
    bit: u64,
    map: impl Fn(&mut CondTables) -> &mut BTreeMap<K, u64>,
) {
    if keys.is_empty() {
        t.bank.any[any] |= bit;
        return;
    }
    t.bank.dims |= dim;
    for k in keys {
        *map(t).entry(k.clone()).or_default() |= bit;
    }
}

/// Every port's class and every class's bits; class 0 is "no rule names this port".
fn classes(ports: &[u64], side: u32) -> Result<(Vec<u8>, Vec<u64>), TooManyPortClasses> {
    let mut bits = vec![0u64];
    let mut index: BTreeMap<u64, u8> = BTreeMap::from([(0, 0)]);
    let mut class = Vec::with_capacity(ports.len());
    for &b in ports {
        let next = index.len();
        let c = *index.entry(b).or_insert_with(|| {
            bits.push(b);
            next.min(255) as u8
        });
        class.push(c);
    }
    if index.len() > cond::PORT_CLASSES as usize {
        return Err(TooManyPortClasses {
            side: if side == cond::SRC {
                "source"
            } else {
                "destination"
            },
            classes: index.len(),
            max: cond::PORT_CLASSES,
        });
    }
    Ok((class, bits))
}

/// Each prefix with the bits of every prefix containing it (itself included): what a longest
/// match must answer, since the prefixes containing an address are exactly the ancestors of
/// its longest match. In order; an ancestor comes before what it contains.
fn pushed_down(prefixes: BTreeMap<Prefix, u64>) -> Vec<(Prefix, u64)> {
    let mut out = Vec::with_capacity(prefixes.len());
    let mut stack: Vec<(Prefix, u64)> = Vec::new();
    for (p, bits) in prefixes {
        while stack.last().is_some_and(|(top, _)| !contains(top, &p)) {
            stack.pop();
        }
        let all = bits | stack.last().map_or(0, |(_, b)| *b);
        stack.push((p, all));
        out.push((p, all));
    }
    out
}

fn contains(outer: &Prefix, inner: &Prefix) -> bool {
    outer.len() <= inner.len() && outer.contains(inner.addr())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        crate::prefix::parse_prefix(s, true).unwrap()
    }

    fn rule(id: u32, prefixes: &[&str], conditions: Conditions) -> OrderedRule {
        OrderedRule {
            rule: id,
            direction: Direction::Dst,
            prefixes: (!prefixes.is_empty()).then(|| prefixes.iter().map(|s| p(s)).collect()),
            conditions,
        }
    }

    #[test]
    fn a_prefix_carries_the_bits_of_every_prefix_that_contains_it() {
        let t = CondTables::compile(&[
            rule(5, &["10.0.0.0/8"], Conditions::default()),
            rule(6, &["10.1.0.0/16", "192.0.2.0/24"], Conditions::default()),
            rule(7, &["10.1.2.0/24", "10.2.0.0/16"], Conditions::default()),
        ])
        .unwrap();
        let dst_v4 = &t.addrs[side_index(Direction::Dst)][Family::V4.index()];
        let got: Vec<(String, u64)> = dst_v4.iter().map(|(p, b)| (p.to_string(), *b)).collect();
        let want = [
            ("10.0.0.0/8", 0b001),
            ("10.1.0.0/16", 0b011),
            ("10.1.2.0/24", 0b111),
            ("10.2.0.0/16", 0b101),
            ("192.0.2.0/24", 0b010),
        ];
        let want: Vec<(String, u64)> = want.iter().map(|(p, b)| (p.to_string(), *b)).collect();
        assert_eq!(got, want);
        assert_eq!(t.bank.rule[..3], [5, 6, 7]);
        assert_eq!(
            t.bank.used,
            [0b111, 0],
            "IPv4 prefixes only: no IPv6 packet fits"
        );
        assert_eq!(t.bank.dims, cond::dims::DST);
    }

    #[test]
    fn ports_fall_into_classes_of_equal_rule_sets() {
        let range = |first, last| PortRange { first, last };
        let t = CondTables::compile(&[
            rule(
                1,
                &[],
                Conditions {
                    dports: vec![range(80, 80), range(443, 443)],
                    ..Conditions::default()
                },
            ),
            rule(
                2,
                &[],
                Conditions {
                    dports: vec![range(400, 500)],
                    protos: vec![Proto::TCP],
                    ..Conditions::default()
                },
            ),
        ])
        .unwrap();
        let class = &t.port_class[cond::DST as usize];
        let bits = &t.port_bits[cond::DST as usize];
        let of = |port: usize| bits[class[port] as usize];
        assert_eq!((of(80), of(443), of(450), of(22)), (0b01, 0b11, 0b10, 0));
        assert_eq!(bits.len(), 4, "none, {{1}}, {{1,2}}, {{2}}");
        assert!(
            t.port_class[cond::SRC as usize].is_empty(),
            "no rule names source ports"
        );
        assert_eq!(t.bank.any[cond::any::SPORT], 0b11);
        assert_eq!(t.bank.any[cond::any::PROTO], 0b01);
        assert_eq!(t.proto[Family::V4.index()][6], 0b10);
    }

    #[test]
    fn a_rule_whose_lists_came_out_empty_matches_nothing_not_everything() {
        let emptied = OrderedRule {
            prefixes: Some(Vec::new()),
            ..rule(4, &[], Conditions::default())
        };
        let open = rule(5, &[], Conditions::default());
        assert!(!emptied.fits(Family::V4) && !emptied.fits(Family::V6));
        let t = CondTables::compile(&[emptied, open]).unwrap();
        assert_eq!(t.bank.used, [0b10, 0b10], "only the open rule can match");
        assert_eq!(t.bank.any[cond::any::DST_V4] & 1, 0);
        assert_eq!(t.bank.dims & cond::dims::DST, cond::dims::DST);
    }

    #[test]
    fn icmp_is_protocol_1_in_ipv4_and_58_in_ipv6() {
        let t = CondTables::compile(&[rule(
            1,
            &[],
            Conditions {
                protos: vec![Proto::Icmp],
                ..Conditions::default()
            },
        )])
        .unwrap();
        assert_eq!(t.proto[Family::V4.index()][1], 1);
        assert_eq!(t.proto[Family::V6.index()][58], 1);
        assert_eq!(t.proto[Family::V6.index()][1], 0);
    }

    #[test]
    fn too_many_distinct_port_groups_are_refused() {
        // Rule i names the ports 1000 + k whose bit i is set: 512 distinct rule sets.
        let rules: Vec<OrderedRule> = (0..9u32)
            .map(|i| {
                let dports = (1..512u16)
                    .filter(|k| k >> i & 1 == 1)
                    .map(|k| PortRange {
                        first: 1000 + k,
                        last: 1000 + k,
                    })
                    .collect();
                rule(
                    i + 1,
                    &[],
                    Conditions {
                        dports,
                        ..Conditions::default()
                    },
                )
            })
            .collect();
        let e = CondTables::compile(&rules).unwrap_err();
        assert_eq!((e.side, e.classes), ("destination", 512));
    }
}
