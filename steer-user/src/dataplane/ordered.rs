//! The condition maps of the ordered rules (`COND_*`), a bank at a time: a change is written
//! whole into the bank the classifier does not read, then `COND_ACTIVE` names it — one word,
//! so every packet sees the old rules or the new ones, never a mix. The layout is
//! `steer_common::cond`'s; what goes in is [`CondTables`], compiled by `model::ordered`.

use std::collections::BTreeMap;

use aya::maps::{Array, HashMap, LpmTrie, Map, MapData, lpm_trie::Key};
use steer_common::{
    CondAddrV4, CondAddrV6, CondBank, CondIfKey, CondMacKey, PortClasses, cond, map_names as names,
};

use super::{
    DataplaneError,
    maps::{map_err, take_as},
};
use crate::{
    model::{CondTables, Direction, Family, ordered::side_index},
    prefix::Prefix,
};

/// [`CondTables`] as the kernel holds them: the interface names resolved to ifindexes (an
/// interface that does not exist matches no packet, so it has no entry).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub tables: CondTables,
    pub ins: BTreeMap<u32, u64>,
}

impl Resolved {
    pub fn new(tables: &CondTables, ifindex: impl Fn(&str) -> Option<u32>) -> Resolved {
        let mut ins = BTreeMap::new();
        for (name, bits) in &tables.ins {
            if let Some(index) = ifindex(name) {
                *ins.entry(index).or_default() |= bits;
            }
        }
        Resolved {
            tables: tables.clone(),
            ins,
        }
    }
}

/// Handles on the `COND_*` maps.
pub struct CondMaps {
    active: Array<MapData, u32>,
    bank: Array<MapData, CondBank>,
    proto: Array<MapData, u64>,
    port_class: Array<MapData, PortClasses>,
    port_bits: Array<MapData, u64>,
    mac: HashMap<MapData, CondMacKey, u64>,
    ins: HashMap<MapData, CondIfKey, u64>,
    /// `[side][family]`, as `CondTables::addrs`.
    addrs_v4: [LpmTrie<MapData, CondAddrV4, u64>; 2],
    addrs_v6: [LpmTrie<MapData, CondAddrV6, u64>; 2],
}

impl std::fmt::Debug for CondMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CondMaps").finish_non_exhaustive()
    }
}

/// The trie names by side (`cond::SRC`, `cond::DST`) and family.
const ADDR_NAMES: [[&str; 2]; 2] = [
    [names::COND_SRC_V4, names::COND_SRC_V6],
    [names::COND_DST_V4, names::COND_DST_V6],
];

impl CondMaps {
    pub(super) fn build(
        mut take: impl FnMut(&'static str) -> Result<Map, DataplaneError>,
    ) -> Result<Self, DataplaneError> {
        Ok(CondMaps {
            active: take_as(&mut take, names::COND_ACTIVE)?,
            bank: take_as(&mut take, names::COND_BANK)?,
            proto: take_as(&mut take, names::COND_PROTO)?,
            port_class: take_as(&mut take, names::COND_PORT_CLASS)?,
            port_bits: take_as(&mut take, names::COND_PORT_BITS)?,
            mac: take_as(&mut take, names::COND_MAC)?,
            ins: take_as(&mut take, names::COND_IN)?,
            addrs_v4: [
                take_as(&mut take, ADDR_NAMES[0][0])?,
                take_as(&mut take, ADDR_NAMES[1][0])?,
            ],
            addrs_v6: [
                take_as(&mut take, ADDR_NAMES[0][1])?,
                take_as(&mut take, ADDR_NAMES[1][1])?,
            ],
        })
    }

    /// The bank the classifier reads.
    pub fn live_bank(&self) -> Result<u32, DataplaneError> {
        self.active
            .get(&0, 0)
            .map(|b| b & 1)
            .map_err(map_err(names::COND_ACTIVE, "read"))
    }

    /// The live bank's header: its rules' bits, `any` bits, dimensions and rule ids.
    pub fn live(&self) -> Result<CondBank, DataplaneError> {
        Ok(self.live_view()?.header)
    }

    /// The live bank's number and header, read once for any number of [`CondMaps::met`].
    pub fn live_view(&self) -> Result<LiveBank, DataplaneError> {
        let no = self.live_bank()?;
        let header = self
            .bank
            .get(&no, 0)
            .map_err(map_err(names::COND_BANK, "read"))?;
        Ok(LiveBank { no, header })
    }

    /// Makes `bank` the one the classifier reads.
    pub(super) fn set_live_bank(&mut self, bank: u32) -> Result<(), DataplaneError> {
        self.active
            .set(0, bank & 1, 0)
            .map_err(map_err(names::COND_ACTIVE, "write"))
    }

    /// Writes `want` into `bank` (not the live one): its entries of every map, the header last.
    /// Returns the number of element writes and deletions.
    pub(super) fn write_bank(&mut self, bank: u32, want: &Resolved) -> Result<u64, DataplaneError> {
        let t = &want.tables;
        let mut writes = 0u64;
        if t.bank.dims & cond::dims::PROTO != 0 {
            for family in Family::ALL {
                for (proto, bits) in t.proto[family.index()].iter().enumerate() {
                    let index = cond::proto_index(bank, family.raw(), proto as u8);
                    set(&mut self.proto, names::COND_PROTO, index, *bits)?;
                }
            }
            writes += 512;
        }
        for side in [cond::SRC, cond::DST] {
            let classes = &t.port_class[side as usize];
            for (chunk, ports) in classes.chunks(cond::PORTS_PER_VALUE as usize).enumerate() {
                let mut value = PortClasses::default();
                value.class.copy_from_slice(ports);
                let index = cond::port_class_index(bank, side, (chunk as u32 * 64) as u16);
                set(&mut self.port_class, names::COND_PORT_CLASS, index, value)?;
                writes += 1;
            }
            for (class, bits) in t.port_bits[side as usize].iter().enumerate() {
                let index = cond::port_bits_index(bank, side, class as u8);
                set(&mut self.port_bits, names::COND_PORT_BITS, index, *bits)?;
                writes += 1;
            }
        }
        let macs = t.macs.iter().map(|(mac, bits)| {
            let key = CondMacKey {
                bank: bank as u8,
                _pad: 0,
                mac: *mac,
            };
            (key, *bits)
        });
        writes += replace_bank(&mut self.mac, names::COND_MAC, macs, |k| {
            u32::from(k.bank) == bank
        })?;
        let ins = want.ins.iter().map(|(ifindex, bits)| {
            let key = CondIfKey {
                bank,
                ifindex: *ifindex,
            };
            (key, *bits)
        });
        writes += replace_bank(&mut self.ins, names::COND_IN, ins, |k| k.bank == bank)?;
        for side in [Direction::Src, Direction::Dst] {
            let s = side_index(side);
            writes += self.write_addrs(bank, s, &t.addrs[s])?;
        }
        self.bank
            .set(bank, t.bank, 0)
            .map_err(map_err(names::COND_BANK, "write"))?;
        Ok(writes + 1)
    }

    fn write_addrs(
        &mut self,
        bank: u32,
        side: usize,
        want: &[Vec<(Prefix, u64)>; 2],
    ) -> Result<u64, DataplaneError> {
        let b = bank as u8;
        let v4 = want[Family::V4.index()]
            .iter()
            .filter_map(|(p, bits)| match p {
                Prefix::V4 { addr, len } => {
                    let o = addr.octets();
                    Some((
                        Key::new(8 + u32::from(*len), [b, o[0], o[1], o[2], o[3]]),
                        *bits,
                    ))
                }
                Prefix::V6 { .. } => None,
            });
        let mut n = replace_trie(&mut self.addrs_v4[side], ADDR_NAMES[side][0], v4, b)?;
        let v6 = want[Family::V6.index()]
            .iter()
            .filter_map(|(p, bits)| match p {
                Prefix::V6 { addr, len } => {
                    let mut k = [0u8; 17];
                    k[0] = b;
                    k[1..].copy_from_slice(&addr.octets());
                    Some((Key::new(8 + u32::from(*len), k), *bits))
                }
                Prefix::V4 { .. } => None,
            });
        n += replace_trie(&mut self.addrs_v6[side], ADDR_NAMES[side][1], v6, b)?;
        Ok(n)
    }

    /// The prefix on `side` that the rule of `bit` was given and that contains `addr`: the
    /// shortest such prefix of the live bank whose rules include `bit` (a prefix carries the
    /// bits of those containing it, so the shortest is the rule's own).
    pub fn prefix_of(
        &self,
        side: Direction,
        addr: std::net::IpAddr,
        bit: u64,
    ) -> Result<Option<Prefix>, DataplaneError> {
        let bank = self.live_bank()? as u8;
        let s = side_index(side);
        let found = match addr {
            std::net::IpAddr::V4(_) => {
                shortest(&self.addrs_v4[s], ADDR_NAMES[s][0], bank, addr, bit)?
            }
            std::net::IpAddr::V6(_) => {
                shortest(&self.addrs_v6[s], ADDR_NAMES[s][1], bank, addr, bit)?
            }
        };
        Ok(found)
    }
}

/// What the ordered rules look at in a packet, for [`CondMaps::met`].
#[derive(Clone, Copy, Debug)]
pub struct CondProbe {
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    pub proto: u8,
    /// `None` for a protocol without ports: no port rule meets it (nor, as in the classifier,
    /// ports that are both 0).
    pub ports: Option<(u16, u16)>,
    /// `None`: not known (a conntrack entry keeps neither): every rule on it may be met.
    pub mac: Option<[u8; 6]>,
    pub ifindex: Option<u32>,
}

impl CondMaps {
    /// The bits of the rules of `live` that `p` meets, every one of them, where the classifier
    /// keeps only the lowest (`steer-ebpf/src/cond.rs`, which this reads the maps as, looking up
    /// only the dimensions some rule constrains while a rule is left): `steer explain` names
    /// the later rules a packet also meets (and checks that the lowest bit is the rule the
    /// classifier itself picked); failback asks which rule a connection follows.
    pub fn met(&self, live: &LiveBank, p: &CondProbe) -> Result<u64, DataplaneError> {
        let (bank_no, bank) = (live.no, &live.header);
        let family = Family::of(&p.dst);
        let mut bits = bank.used[family.index()];
        let wanted = |bits: u64, dim: u32| bits != 0 && bank.dims & dim != 0;
        if wanted(bits, cond::dims::PROTO) {
            let hit = self
                .proto
                .get(&cond::proto_index(bank_no, family.raw(), p.proto), 0)
                .map_err(map_err(names::COND_PROTO, "read"))?;
            bits &= bank.any[cond::any::PROTO] | hit;
        }
        let ports = p.ports.filter(|&(s, d)| s != 0 || d != 0);
        for (side, dim, any, port) in [
            (
                cond::SRC,
                cond::dims::SPORT,
                cond::any::SPORT,
                ports.map(|p| p.0),
            ),
            (
                cond::DST,
                cond::dims::DPORT,
                cond::any::DPORT,
                ports.map(|p| p.1),
            ),
        ] {
            if wanted(bits, dim) {
                let hit = match port {
                    Some(port) => self.port_hit(bank_no, side, port)?,
                    None => 0,
                };
                bits &= bank.any[any] | hit;
            }
        }
        if let Some(mac) = p.mac.filter(|_| wanted(bits, cond::dims::MAC)) {
            let key = CondMacKey {
                bank: bank_no as u8,
                _pad: 0,
                mac,
            };
            let hit = bits_or_none(self.mac.get(&key, 0), names::COND_MAC)?;
            bits &= bank.any[cond::any::MAC] | hit;
        }
        if let Some(ifindex) = p.ifindex.filter(|_| wanted(bits, cond::dims::IN)) {
            let key = CondIfKey {
                bank: bank_no,
                ifindex,
            };
            let hit = bits_or_none(self.ins.get(&key, 0), names::COND_IN)?;
            bits &= bank.any[cond::any::IN] | hit;
        }
        for (side, dim, any, addr) in [
            (Direction::Src, cond::dims::SRC, cond::any::SRC_V4, p.src),
            (Direction::Dst, cond::dims::DST, cond::any::DST_V4, p.dst),
        ] {
            if wanted(bits, dim) {
                let hit = self.addr_hit(bank_no as u8, side, addr)?;
                bits &= bank.any[any + family.index()] | hit;
            }
        }
        Ok(bits)
    }

    /// The first rule of `live` that `p` meets, if it can be told.
    pub fn first_met(&self, live: &LiveBank, p: &CondProbe) -> FirstMet {
        let bank = &live.header;
        let met = match self.met(live, p) {
            Ok(0) => return FirstMet::None,
            Ok(met) => met,
            Err(_) => return FirstMet::Unknown,
        };
        let first = met.trailing_zeros() as usize;
        let bit = 1u64 << first;
        let known = |any: usize, given: bool| given || bank.any[any] & bit != 0;
        if known(cond::any::MAC, p.mac.is_some()) && known(cond::any::IN, p.ifindex.is_some()) {
            FirstMet::Rule(u32::from(bank.rule[first]))
        } else {
            FirstMet::Unknown
        }
    }

    fn port_hit(&self, bank: u32, side: u32, port: u16) -> Result<u64, DataplaneError> {
        let classes = self
            .port_class
            .get(&cond::port_class_index(bank, side, port), 0)
            .map_err(map_err(names::COND_PORT_CLASS, "read"))?;
        let class = classes.class[(u32::from(port) % cond::PORTS_PER_VALUE) as usize];
        self.port_bits
            .get(&cond::port_bits_index(bank, side, class), 0)
            .map_err(map_err(names::COND_PORT_BITS, "read"))
    }

    /// The bits of the longest prefix on `side` containing `addr`: it holds the bits of every
    /// prefix containing it.
    fn addr_hit(
        &self,
        bank: u8,
        side: Direction,
        addr: std::net::IpAddr,
    ) -> Result<u64, DataplaneError> {
        let s = side_index(side);
        match addr {
            std::net::IpAddr::V4(a) => {
                let o = a.octets();
                let key = Key::new(40, [bank, o[0], o[1], o[2], o[3]]);
                bits_or_none(self.addrs_v4[s].get(&key, 0), ADDR_NAMES[s][0])
            }
            std::net::IpAddr::V6(a) => {
                let mut k = [0u8; 17];
                k[0] = bank;
                k[1..].copy_from_slice(&a.octets());
                bits_or_none(self.addrs_v6[s].get(&Key::new(136, k), 0), ADDR_NAMES[s][1])
            }
        }
    }
}

/// A lookup's bits: none when the key is absent.
fn bits_or_none(
    found: Result<u64, aya::maps::MapError>,
    name: &'static str,
) -> Result<u64, DataplaneError> {
    match found {
        Ok(bits) => Ok(bits),
        Err(aya::maps::MapError::KeyNotFound) => Ok(0),
        Err(e) => Err(map_err(name, "read")(e)),
    }
}

/// The live bank as read once: its number and header.
#[derive(Clone, Copy, Debug)]
pub struct LiveBank {
    pub no: u32,
    pub header: CondBank,
}

/// What [`CondMaps::first_met`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstMet {
    /// No ordered rule: the plain sets decide.
    None,
    /// This rule (its `POLICY` row).
    Rule(u32),
    /// It depends on what the probe does not know (its MAC or input interface), or the maps
    /// could not be read.
    Unknown,
}

/// One ordered rule as the live bank holds it, for `steer dump rules`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderedView {
    pub rule: u32,
    /// 1 for the first.
    pub position: usize,
    /// Each condition the rule has, in words ("proto tcp,udp", "dport 443,1000-2000").
    pub conditions: Vec<String>,
}

impl CondMaps {
    /// The live bank's rules in order, each with its conditions read back from the maps.
    pub fn describe(&self) -> Result<Vec<OrderedView>, DataplaneError> {
        let bank_no = self.live_bank()?;
        let bank = self.live()?;
        let used = bank.used[0] | bank.used[1];
        let mut out = Vec::new();
        for i in (0..cond::MAX_RULES as usize).filter(|i| used >> i & 1 == 1) {
            let bit = 1u64 << i;
            let constrains = |any: usize| bank.any[any] & bit == 0;
            let mut c = Vec::new();
            if constrains(cond::any::PROTO) {
                c.push(format!("proto {}", self.protos(bank_no, bit)?.join(",")));
            }
            for (any, side, word) in [
                (cond::any::SPORT, cond::SRC, "sport"),
                (cond::any::DPORT, cond::DST, "dport"),
            ] {
                if constrains(any) {
                    c.push(format!(
                        "{word} {}",
                        self.ports(bank_no, side, bit)?.join(",")
                    ));
                }
            }
            if constrains(cond::any::MAC) {
                let macs: Vec<String> = self
                    .mac
                    .iter()
                    .filter_map(Result::ok)
                    .filter(|(k, b)| u32::from(k.bank) == bank_no && b & bit != 0)
                    .map(|(k, _)| k.mac.map(|b| format!("{b:02x}")).join(":"))
                    .collect();
                c.push(format!("src-mac {}", macs.join(",")));
            }
            if constrains(cond::any::IN) {
                let ins: Vec<String> = self
                    .ins
                    .iter()
                    .filter_map(Result::ok)
                    .filter(|(k, b)| k.bank == bank_no && b & bit != 0)
                    .map(|(k, _)| interface_name(k.ifindex))
                    .collect();
                c.push(format!("in {}", ins.join(",")));
            }
            for (side, word) in [(Direction::Src, "src"), (Direction::Dst, "dst")] {
                let any = if side == Direction::Src {
                    cond::any::SRC_V4
                } else {
                    cond::any::DST_V4
                };
                if constrains(any) || constrains(any + 1) {
                    let n = self.own_prefixes(bank_no as u8, side, bit)?;
                    c.push(format!("{word} in {n} prefixes"));
                }
            }
            out.push(OrderedView {
                rule: u32::from(bank.rule[i]),
                position: i + 1,
                conditions: c,
            });
        }
        Ok(out)
    }

    fn protos(&self, bank: u32, bit: u64) -> Result<Vec<String>, DataplaneError> {
        let mut found = Vec::new();
        for family in Family::ALL {
            for proto in 0..=255u8 {
                let index = cond::proto_index(bank, family.raw(), proto);
                let bits = self
                    .proto
                    .get(&index, 0)
                    .map_err(map_err(names::COND_PROTO, "read"))?;
                if bits & bit != 0 {
                    let name = match (family, proto) {
                        (_, 6) => "tcp".to_string(),
                        (_, 17) => "udp".to_string(),
                        (Family::V4, 1) | (Family::V6, 58) => "icmp".to_string(),
                        (_, p) => p.to_string(),
                    };
                    if !found.contains(&name) {
                        found.push(name);
                    }
                }
            }
        }
        Ok(found)
    }

    /// The port ranges of the rule of `bit` on one side, read back from the classes.
    fn ports(&self, bank: u32, side: u32, bit: u64) -> Result<Vec<String>, DataplaneError> {
        let mut class_has = [false; cond::PORT_CLASSES as usize];
        for (class, has) in class_has.iter_mut().enumerate() {
            let index = cond::port_bits_index(bank, side, class as u8);
            let bits = self
                .port_bits
                .get(&index, 0)
                .map_err(map_err(names::COND_PORT_BITS, "read"))?;
            *has = bits & bit != 0;
        }
        let mut ranges: Vec<String> = Vec::new();
        let mut start: Option<u32> = None;
        for value in 0..cond::PORT_VALUES {
            let index = cond::port_class_index(bank, side, (value * cond::PORTS_PER_VALUE) as u16);
            let classes = self
                .port_class
                .get(&index, 0)
                .map_err(map_err(names::COND_PORT_CLASS, "read"))?;
            for (k, class) in classes.class.iter().enumerate() {
                let port = value * cond::PORTS_PER_VALUE + k as u32;
                match (class_has[*class as usize], start) {
                    (true, None) => start = Some(port),
                    (false, Some(first)) => {
                        ranges.push(range_text(first, port - 1));
                        start = None;
                    }
                    _ => {}
                }
            }
        }
        if let Some(first) = start {
            ranges.push(range_text(first, 65535));
        }
        Ok(ranges)
    }

    /// How many prefixes on `side` are the rule's own (not carried down from a shorter one).
    fn own_prefixes(&self, bank: u8, side: Direction, bit: u64) -> Result<usize, DataplaneError> {
        Ok(self.prefixes_of(bank, side, bit)?.len())
    }

    /// The prefixes of the rule with `bit` on `side`: the outermost of them. The tries also
    /// hold, under each, the longer prefixes of other rules carrying its bit, and they cannot
    /// be told from the rule's own longer prefixes inside it, so neither is listed (a prefix
    /// inside another of the same rule changes nothing it matches).
    pub fn prefixes_of(
        &self,
        bank: u8,
        side: Direction,
        bit: u64,
    ) -> Result<Vec<Prefix>, DataplaneError> {
        let s = side_index(side);
        let mut held: Vec<Prefix> = Vec::new();
        collect(&self.addrs_v4[s], ADDR_NAMES[s][0], bank, bit, &mut held)?;
        collect(&self.addrs_v6[s], ADDR_NAMES[s][1], bank, bit, &mut held)?;
        held.sort_unstable();
        let mut own = Vec::new();
        let mut stack: Vec<Prefix> = Vec::new();
        for p in held {
            while stack
                .last()
                .is_some_and(|top| !(top.len() <= p.len() && top.contains(p.addr())))
            {
                stack.pop();
            }
            if stack.is_empty() {
                own.push(p);
            }
            stack.push(p);
        }
        Ok(own)
    }
}

fn range_text(first: u32, last: u32) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

/// The name of interface `ifindex` here, or its number.
fn interface_name(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has room for IF_NAMESIZE bytes, what if_indextoname writes at most.
    let name = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if name.is_null() {
        return format!("ifindex {ifindex}");
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// The prefixes of `bank` in `trie` whose bits include `bit`.
fn collect<const N: usize>(
    trie: &LpmTrie<MapData, [u8; N], u64>,
    name: &'static str,
    bank: u8,
    bit: u64,
    out: &mut Vec<Prefix>,
) -> Result<(), DataplaneError> {
    for entry in trie.iter() {
        let (key, bits) = entry.map_err(map_err(name, "read"))?;
        if key.data()[0] == bank && bits & bit != 0 {
            out.extend(prefix_of_key(&key));
        }
    }
    Ok(())
}

/// The prefix a trie key stands for (its bank byte and length dropped).
fn prefix_of_key<const N: usize>(key: &Key<[u8; N]>) -> Option<Prefix> {
    let data = key.data();
    let ip = if N == 5 {
        std::net::IpAddr::from([data[1], data[2], data[3], data[4]])
    } else {
        let mut o = [0u8; 16];
        o.copy_from_slice(&data[1..17]);
        std::net::IpAddr::from(o)
    };
    Prefix::new(ip, key.prefix_len().checked_sub(8)?).ok()
}

/// The shortest prefix of `bank` in `trie` containing `addr` whose bits include `bit`.
fn shortest<const N: usize>(
    trie: &LpmTrie<MapData, [u8; N], u64>,
    name: &'static str,
    bank: u8,
    addr: std::net::IpAddr,
    bit: u64,
) -> Result<Option<Prefix>, DataplaneError> {
    let mut best: Option<Prefix> = None;
    for entry in trie.iter() {
        let (key, bits) = entry.map_err(map_err(name, "read"))?;
        if key.data()[0] != bank || bits & bit == 0 {
            continue;
        }
        let Some(p) = prefix_of_key(&key) else {
            continue;
        };
        if p.contains(addr) && best.is_none_or(|b| p.len() < b.len()) {
            best = Some(p);
        }
    }
    Ok(best)
}

fn set<V: aya::Pod>(
    map: &mut Array<MapData, V>,
    name: &'static str,
    index: u32,
    value: V,
) -> Result<(), DataplaneError> {
    map.set(index, value, 0).map_err(map_err(name, "write"))
}

/// Brings one bank of a hash map to `want`: its other keys deleted, `want` written.
fn replace_bank<K: aya::Pod + Ord>(
    map: &mut HashMap<MapData, K, u64>,
    name: &'static str,
    want: impl Iterator<Item = (K, u64)>,
    in_bank: impl Fn(&K) -> bool,
) -> Result<u64, DataplaneError> {
    let want: BTreeMap<K, u64> = want.collect();
    let stale: Vec<K> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| in_bank(k) && !want.contains_key(k))
        .collect();
    for k in &stale {
        map.remove(k).map_err(map_err(name, "delete"))?;
    }
    for (k, v) in &want {
        map.insert(k, v, 0).map_err(map_err(name, "write"))?;
    }
    Ok((stale.len() + want.len()) as u64)
}

/// Brings one bank of an address trie to `want` (keys carry the bank in their first byte).
fn replace_trie<const N: usize>(
    trie: &mut LpmTrie<MapData, [u8; N], u64>,
    name: &'static str,
    want: impl Iterator<Item = (Key<[u8; N]>, u64)>,
    bank: u8,
) -> Result<u64, DataplaneError> {
    let want: BTreeMap<(u32, [u8; N]), u64> =
        want.map(|(k, v)| ((k.prefix_len(), k.data()), v)).collect();
    let stale: Vec<Key<[u8; N]>> = trie
        .keys()
        .filter_map(Result::ok)
        .filter(|k| k.data()[0] == bank && !want.contains_key(&(k.prefix_len(), k.data())))
        .collect();
    for k in &stale {
        trie.remove(k).map_err(map_err(name, "delete"))?;
    }
    for ((len, data), v) in &want {
        trie.insert(&Key::new(*len, *data), v, 0)
            .map_err(map_err(name, "write"))?;
    }
    Ok((stale.len() + want.len()) as u64)
}
