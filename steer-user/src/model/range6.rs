//! Building the IPv6 range table (`steer_common::range6`) from a prefix set.
//!
//! The set's breakpoints come from the same sweep as IPv4's ([`super::range`]). Each /16 of
//! the address space is then a region with the breakpoints inside it: one value makes a leaf,
//! a few make ranges, more make a split table over the region's next bits, whose regions are
//! built the same way, one level down.

use steer_common::{
    range::{BLOCK, Block, NONE},
    range6::{self, DIRECT, DIRECT_BITS, LEAF_RANGES, MAX_RANGES, MAX_SPLIT_BITS, MAX_SPLITS},
};

use super::range::{Space, sweep};

/// An IPv6 prefix as the builder takes it: the address (host bits clear) and the length.
pub type PrefixV6 = (u128, u8);

/// An IPv6 range table: the elements of the kernel's array, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeTable6 {
    elements: Vec<u64>,
    /// Elements in use: those after are the padding to a whole block.
    used: usize,
    ranges: u32,
}

/// IPv6: a position is an address, or the end of the space (`(true, 0)`).
struct V6;

impl Space for V6 {
    type Prefix = PrefixV6;
    type Position = (bool, u128);
    const START: (bool, u128) = (false, 0);
    const END: (bool, u128) = (true, 0);
    fn span(&(addr, len): &PrefixV6) -> ((bool, u128), (bool, u128)) {
        let end = 1u128
            .checked_shl(128 - u32::from(len))
            .and_then(|size| addr.checked_add(size))
            .map_or(V6::END, |end| (false, end));
        ((false, addr), end)
    }
}

impl RangeTable6 {
    /// The table of `set`: each prefix with its value (at most `range::MAX_VALUE`). A prefix
    /// given twice keeps the value given last.
    pub fn build(set: &[(PrefixV6, u32)]) -> RangeTable6 {
        let mut sorted = set.to_vec();
        // By first address, the containing prefix before the contained; equal prefixes keep
        // their order, so the last of them wins.
        sorted.sort_by_key(|((addr, len), _)| (*addr, *len));
        RangeTable6::of_sorted(sorted.into_iter())
    }

    /// The table of a set given in address order, a containing prefix before the prefixes it
    /// contains.
    pub fn of_sorted(sorted: impl Iterator<Item = (PrefixV6, u32)>) -> RangeTable6 {
        let builder = Builder::table(sorted, true);
        let mut elements = builder.elements;
        let used = elements.len();
        elements.resize(used.next_multiple_of(BLOCK as usize), 0);
        RangeTable6 {
            elements,
            used,
            ranges: builder.ranges,
        }
    }

    /// The blocks [`RangeTable6::of_sorted`] would give the same set, counted without storing
    /// the table.
    pub fn blocks_of(sorted: impl Iterator<Item = (PrefixV6, u32)>) -> u32 {
        Builder::table(sorted, false).len.div_ceil(BLOCK as usize) as u32
    }

    /// The array's elements: the direct table, then split tables and ranges, in whole blocks.
    pub fn elements(&self) -> &[u64] {
        &self.elements
    }

    /// The array's values: the elements in blocks.
    pub fn blocks(&self) -> u32 {
        (self.elements.len() / BLOCK as usize) as u32
    }

    /// Elements in use (the rest of the last block is free).
    pub fn used(&self) -> usize {
        self.used
    }

    /// Ranges in the table.
    pub fn ranges(&self) -> u32 {
        self.ranges
    }

    /// Bytes the kernel's array holds.
    pub fn bytes(&self) -> usize {
        self.elements.len() * 8
    }

    fn block(&self, index: u32) -> Option<&Block> {
        let start = index as usize * BLOCK as usize;
        self.elements
            .get(start..start + BLOCK as usize)?
            .try_into()
            .ok()
    }

    /// The value of `addr`, by the classifier's own lookup.
    pub fn lookup(&self, addr: u128) -> u32 {
        range6::lookup((addr >> 64) as u64, addr as u64, |i| self.block(i))
    }
}

/// Where the value of a sorted set changes (see `range::sweep`).
fn breakpoints(sorted: impl Iterator<Item = (PrefixV6, u32)>) -> Vec<(u128, u32)> {
    let mut points = Vec::new();
    sweep::<V6>(sorted, |((_, position), value)| {
        points.push((position, value))
    });
    points
}

/// The region of direct entry `chunk`.
fn chunk_region(chunk: u32) -> Region {
    Region {
        start: u128::from(chunk) << (128 - DIRECT_BITS),
        len: DIRECT_BITS,
    }
}

/// One region of a table laid out alone, to be written into spare room of a live table: the
/// region's entry and the elements it names, which go at element `origin` on.
#[derive(Debug)]
pub struct RegionLayout {
    pub entry: u64,
    pub elements: Vec<u64>,
}

impl RegionLayout {
    /// The layout of the region `start/len`, `depth` splits below the direct table, for the
    /// prefixes bearing on it (those containing it, then those inside it, in address order).
    /// `None` when the region is too deep for its ranges (its parents were cut for fewer):
    /// the table is then built afresh.
    pub fn of(
        (start, len): PrefixV6,
        depth: u32,
        origin: usize,
        bearing: impl Iterator<Item = (PrefixV6, u32)>,
    ) -> Option<RegionLayout> {
        let region = Region {
            start,
            len: u32::from(len),
        };
        let points = breakpoints(bearing);
        let before = points.partition_point(|(p, _)| *p < region.start);
        let mut value = points[..before].last().map_or(NONE, |(_, v)| *v);
        let inside = &points[before..];
        let inside = &inside[..inside.partition_point(|(p, _)| region.contains(*p))];
        let mut builder = Builder::new(origin, true);
        let entry = builder.lay(region, &mut value, inside, depth)?;
        Some(RegionLayout {
            entry,
            elements: builder.elements,
        })
    }
}

/// Elements an entry names (its split tables and ranges, all the way down), read through
/// `element`: what a chunk rewritten in place leaves unused.
pub fn named_elements(entry: u64, element: &impl Fn(u32) -> u64) -> usize {
    match range6::entry_kind(entry) {
        range6::Entry::Leaf(_) => 0,
        range6::Entry::Ranges { count, .. } => 2 * count as usize,
        range6::Entry::Split { first, bits, .. } => {
            (0..1u32 << bits)
                .map(|i| named_elements(element(first + i), element))
                .sum::<usize>()
                + (1 << bits)
        }
    }
}

/// A region of the address space: a prefix.
#[derive(Clone, Copy)]
struct Region {
    start: u128,
    len: u32,
}

/// Where a live table's entry for the smallest region holding `first..=last` is (the direct
/// entry of their chunk, or a split table's entry below it), read through `element`: the
/// entry's index, its region and its depth below the direct table. `None` when they are in
/// different chunks.
pub fn locate(first: u128, last: u128, element: impl Fn(usize) -> u64) -> Option<Located> {
    let chunk = (first >> (128 - DIRECT_BITS)) as u32;
    if (last >> (128 - DIRECT_BITS)) as u32 != chunk {
        return None;
    }
    let mut at = Located {
        index: chunk as usize,
        region: (u128::from(chunk) << (128 - DIRECT_BITS), DIRECT_BITS as u8),
        depth: 0,
    };
    while at.depth < MAX_SPLITS
        && let range6::Entry::Split {
            first: table, bits, ..
        } = range6::entry_kind(element(at.index))
    {
        let region = Region {
            start: at.region.0,
            len: u32::from(at.region.1),
        };
        let part = |addr: u128| ((addr - region.start) >> (128 - region.len - bits)) as u32;
        if part(first) != part(last) {
            break;
        }
        let inner = region.part(part(first), bits);
        at = Located {
            index: table as usize + part(first) as usize,
            region: (inner.start, inner.len as u8),
            depth: at.depth + 1,
        };
    }
    Some(at)
}

/// An entry of a live table found by [`locate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located {
    /// The entry's element.
    pub index: usize,
    /// Its region.
    pub region: PrefixV6,
    /// Splits above it.
    pub depth: u32,
}

impl Region {
    /// Whether `position` lies inside the region (at its start or after, before its end).
    fn contains(self, position: u128) -> bool {
        position >= self.start && (position - self.start) >> (128 - self.len) == 0
    }

    /// The `index`-th of the `2^bits` regions the region is cut into.
    fn part(self, index: u32, bits: u32) -> Region {
        let len = self.len + bits;
        Region {
            start: self.start | u128::from(index) << (128 - len),
            len,
        }
    }
}

/// Lays out regions into `elements` (or only counts them), whose first is element `origin` of
/// the table.
struct Builder {
    origin: usize,
    /// Whether to store the elements, or only count them in `len`.
    keep: bool,
    elements: Vec<u64>,
    len: usize,
    ranges: u32,
}

impl Builder {
    fn new(origin: usize, keep: bool) -> Builder {
        Builder {
            origin,
            keep,
            elements: Vec::new(),
            len: 0,
            ranges: 0,
        }
    }

    /// A whole table: the direct entries, then everything they name.
    fn table(sorted: impl Iterator<Item = (PrefixV6, u32)>, keep: bool) -> Builder {
        let points = breakpoints(sorted);
        let mut builder = Builder::new(0, keep);
        let direct = builder.reserve(DIRECT as usize);
        let mut value = NONE;
        let mut next = 0;
        for chunk in 0..DIRECT {
            let region = chunk_region(chunk);
            let inside = points[next..].partition_point(|(p, _)| region.contains(*p));
            let here = &points[next..next + inside];
            let entry = builder
                .lay(region, &mut value, here, 0)
                .expect("a table laid out from its direct entries never runs out of levels");
            builder.set(direct + chunk as usize, entry);
            next += inside;
        }
        builder
    }

    /// Appends `n` elements (zero) at an absolute index at least `at`; returns where they
    /// start, relative to `origin`.
    fn reserve_at(&mut self, at: usize, n: usize) -> usize {
        let start = at - self.origin;
        self.len = start + n;
        if self.keep {
            self.elements.resize(self.len, 0);
        }
        start
    }

    fn reserve(&mut self, n: usize) -> usize {
        self.reserve_at(self.origin + self.len, n)
    }

    fn set(&mut self, index: usize, value: u64) {
        if self.keep {
            self.elements[index] = value;
        }
    }

    /// Lays out a region whose value is `value` where it starts, unless a breakpoint of
    /// `here` (all inside it) is at its start, `depth` splits below the direct table; leaves
    /// `value` as it is at the region's end. Returns the region's entry.
    fn lay(
        &mut self,
        region: Region,
        value: &mut u32,
        mut here: &[(u128, u32)],
        depth: u32,
    ) -> Option<u64> {
        if let Some(((p, v), rest)) = here.split_first()
            && *p == region.start
        {
            *value = *v;
            here = rest;
        }
        let entry = self.region(region, *value, here, depth)?;
        if let Some((_, last)) = here.last() {
            *value = *last;
        }
        Some(entry)
    }

    /// Lays out `region`, whose value is `value` at its start and changes at the `inside`
    /// breakpoints (all after its start); returns its entry, or `None` when it is at the last
    /// level with more than `MAX_RANGES` ranges.
    fn region(
        &mut self,
        region: Region,
        value: u32,
        inside: &[(u128, u32)],
        depth: u32,
    ) -> Option<u64> {
        let count = inside.len() as u32 + 1;
        if count == 1 {
            return Some(range6::leaf(value));
        }
        let bits = match split_bits(region, inside) {
            Some(bits) if depth < MAX_SPLITS => bits,
            _ if count <= MAX_RANGES => return Some(self.ranges(region.start, value, inside)),
            _ => return None,
        };
        let first = self.reserve(1 << bits);
        let (mut value, mut rest) = (value, inside);
        for index in 0..1u32 << bits {
            let part = region.part(index, bits);
            let within = rest.partition_point(|(p, _)| part.contains(*p));
            let entry = self.lay(part, &mut value, &rest[..within], depth + 1)?;
            self.set(first + index as usize, entry);
            rest = &rest[within..];
        }
        Some(range6::split(
            (self.origin + first) as u32,
            region.len,
            bits,
        ))
    }

    /// Lays out the ranges of a region (its start with `value`, then the `inside` breakpoints).
    fn ranges(&mut self, start: u128, value: u32, inside: &[(u128, u32)]) -> u64 {
        let count = inside.len() as u32 + 1;
        // A range is two elements, at an even index; a region's ranges stay inside one block.
        let mut at = (self.origin + self.len).next_multiple_of(2);
        let room = BLOCK as usize - at % BLOCK as usize;
        if 2 * count as usize > room {
            at += room;
        }
        let first = self.reserve_at(at, 2 * count as usize);
        for (i, &(point, value)) in std::iter::once(&(start, value)).chain(inside).enumerate() {
            let [upper, lower] = range6::range_key(point, value);
            self.set(first + 2 * i, upper);
            self.set(first + 2 * i + 1, lower);
        }
        self.ranges += count;
        range6::ranges((at / 2) as u32, count)
    }
}

/// The bits to split a region of more than `LEAF_RANGES` ranges by (`None`: keep them as
/// ranges): about one entry per leaf's worth of ranges, or up to 2 bits more, the first cut
/// that separates them (no part keeps more than half); none while they fit a leaf. A region of more than MAX_RANGES is
/// always cut, by 10 bits or more (`range6` asserts that this reaches single addresses within
/// `MAX_SPLITS` levels).
fn split_bits(region: Region, inside: &[(u128, u32)]) -> Option<u32> {
    let count = inside.len() as u32 + 1;
    if count <= LEAF_RANGES {
        return None;
    }
    let bits = (count / LEAF_RANGES)
        .next_power_of_two()
        .ilog2()
        .clamp(1, MAX_SPLIT_BITS.min(128 - region.len));
    if count > MAX_RANGES {
        return Some(bits);
    }
    // Ranges clustered in one part of that cut may separate in a cut a bit or two wider (a
    // table at most as big as the ranges' own count: 4 bits wider made tables bigger and
    // lookups no faster, `cargo xtask bench lookup`).
    let widest = (bits + 2).min(MAX_SPLIT_BITS.min(128 - region.len));
    (bits..=widest).find(|&bits| busiest_part(region, inside, bits) <= count / 2)
}

/// The most ranges one part of `region` cut by `bits` gets (the region's start counts in the
/// first part).
fn busiest_part(region: Region, inside: &[(u128, u32)], bits: u32) -> u32 {
    let part = |p: u128| (p - region.start) >> (128 - region.len - bits);
    let mut busiest = 1;
    let mut run = (0, 1);
    for &(p, _) in inside {
        run = if part(p) == run.0 {
            (run.0, run.1 + 1)
        } else {
            (part(p), 1)
        };
        busiest = busiest.max(run.1);
    }
    busiest
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The longest match by brute force: the oracle of these tests.
    fn longest(set: &[(PrefixV6, u32)], addr: u128) -> u32 {
        let mut best: Option<(u8, u32)> = None;
        for &((p, len), value) in set {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            if addr & mask == p && best.is_none_or(|(l, _)| len >= l) {
                best = Some((len, value));
            }
        }
        best.map_or(NONE, |(_, v)| v)
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn addr(&mut self) -> u128 {
            u128::from(self.next()) << 64 | u128::from(self.next())
        }
    }

    fn prefix(addr: u128, len: u8) -> PrefixV6 {
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        (addr & mask, len)
    }

    /// A concentrated set: prefixes of many lengths under a few /16s and /32s, nested.
    fn clustered(rng: &mut Rng, count: usize) -> Vec<(PrefixV6, u32)> {
        let roots: Vec<u128> = (0..4).map(|_| rng.addr()).collect();
        (0..count)
            .map(|_| {
                let root = roots[rng.below(4) as usize];
                let noise = rng.addr() >> (16 + rng.below(24));
                let len = [20, 32, 40, 48, 48, 56, 64, 96, 127, 128][rng.below(10) as usize];
                let addr = (root & !(u128::MAX >> 16)) | noise;
                (prefix(addr, len), rng.below(200) as u32)
            })
            .collect()
    }

    /// Every prefix's first and last address and their neighbours, and random addresses.
    fn probes(rng: &mut Rng, set: &[(PrefixV6, u32)], random: usize) -> Vec<u128> {
        let mut out: Vec<u128> = (0..random).map(|_| rng.addr()).collect();
        for &((addr, len), _) in set {
            let last = addr | u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
            out.extend([
                addr,
                addr.wrapping_sub(1),
                last,
                last.wrapping_add(1),
                addr | (rng.addr() & (last - addr)),
            ]);
        }
        out
    }

    fn assert_answers(set: &[(PrefixV6, u32)], probes: &[u128]) {
        let table = RangeTable6::build(set);
        for &addr in probes {
            assert_eq!(
                table.lookup(addr),
                longest(set, addr),
                "{:x} in a set of {}",
                addr,
                set.len()
            );
        }
    }

    #[test]
    fn an_empty_set_answers_none_and_a_default_route_everything() {
        assert_answers(&[], &[0, 1, u128::MAX]);
        assert_answers(&[((0, 0), 7)], &[0, 1, u128::MAX, 1 << 100]);
        let edges = [((0, 0), 1), ((u128::MAX, 128), 2), ((0, 128), 3)];
        assert_answers(&edges, &[0, 1, 2, u128::MAX, u128::MAX - 1]);
    }

    #[test]
    fn a_chain_of_every_length_answers_each_level() {
        let mut rng = Rng(0x6a09_e667_f3bc_c908);
        let base = rng.addr();
        let set: Vec<_> = (0..=128u8)
            .map(|len| (prefix(base, len), u32::from(len)))
            .collect();
        let probes = probes(&mut rng, &set, 1000);
        assert_answers(&set, &probes);
    }

    #[test]
    fn random_clustered_sets_answer_as_the_longest_match() {
        let mut rng = Rng(0xbb67_ae85_84ca_a73b);
        for round in 0..40 {
            let count = [1, 3, 10, 60, 400, 3000][round % 6];
            let mut set = clustered(&mut rng, count);
            if round % 3 == 0 {
                set.push(((0, 0), 5));
            }
            let probes = probes(&mut rng, &set, 200);
            assert_answers(&set, &probes);
        }
    }

    #[test]
    fn a_prefix_given_twice_keeps_its_last_value() {
        let p = prefix(0x2001_0db8 << 96, 32);
        assert_answers(&[(p, 1), (p, 2)], &[p.0, p.0 + 5]);
        assert_eq!(RangeTable6::build(&[(p, 1), (p, 2)]).lookup(p.0), 2);
    }

    #[test]
    fn a_chunk_laid_out_alone_and_spliced_in_answers_as_the_whole_changed_set() {
        let mut rng = Rng(0x5be0_cd19_137e_2179);
        let mut set = clustered(&mut rng, 3000);
        let table = RangeTable6::build(&set);
        let chunk = (set[0].0.0 >> 112) as u32;
        let base = u128::from(chunk) << 112;
        // Changes inside the chunk: new nested prefixes, and one covering it.
        for _ in 0..200 {
            let len = 17 + rng.below(112) as u8;
            set.push((
                prefix(base | (rng.addr() >> 16), len),
                rng.below(200) as u32,
            ));
        }
        set.push((prefix(base, 8), 7));
        set.sort_by_key(|(p, _)| *p);
        set.dedup_by_key(|(p, _)| *p);
        // Those containing the chunk, and those inside it.
        let bearing = set.iter().copied().filter(|((addr, len), _)| {
            if *len <= 16 {
                (base ^ addr)
                    .checked_shr(128 - u32::from(*len))
                    .unwrap_or(0)
                    == 0
            } else {
                addr >> 112 == base >> 112
            }
        });
        let origin = table.elements().len() + 1;
        let layout = RegionLayout::of((base, 16), 0, origin, bearing).expect("a layout");
        let mut elements = table.elements().to_vec();
        elements.resize(origin, 0);
        elements.extend(&layout.elements);
        elements[chunk as usize] = layout.entry;
        let padded = elements.len().next_multiple_of(BLOCK as usize);
        elements.resize(padded, 0);
        let spliced = RangeTable6 {
            elements,
            used: 0,
            ranges: 0,
        };
        let element = |i: u32| spliced.elements[i as usize];
        let named = named_elements(layout.entry, &element);
        assert!(
            named > 0 && named <= layout.elements.len(),
            "{named} of {}",
            layout.elements.len()
        );
        for _ in 0..20_000 {
            let addr = base | (rng.addr() >> 16);
            assert_eq!(spliced.lookup(addr), longest(&set, addr), "{addr:x}");
        }
        for &((addr, len), _) in set.iter().filter(|((a, _), _)| a >> 112 == base >> 112) {
            let last = addr | u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
            for probe in [addr, last, last.wrapping_add(1), addr.wrapping_sub(1)] {
                if probe >> 112 == base >> 112 {
                    assert_eq!(spliced.lookup(probe), longest(&set, probe), "{probe:x}");
                }
            }
        }
    }

    #[test]
    fn counting_a_table_gives_the_blocks_of_building_it() {
        let mut rng = Rng(0x1f83_d9ab_fb41_bd6b);
        for count in [0, 1, 50, 3000, 40_000] {
            let mut set = clustered(&mut rng, count);
            set.sort_by_key(|(p, _)| *p);
            let built = RangeTable6::of_sorted(set.iter().copied());
            assert_eq!(RangeTable6::blocks_of(set.iter().copied()), built.blocks());
        }
    }

    #[test]
    fn a_few_close_prefixes_stay_ranges_behind_their_direct_entry() {
        // Three hosts of one /64: a cut of the /16 by its next bits would keep them together
        // level after level; they stay seven ranges behind the direct entry.
        let base = 0x2001_0db8_u128 << 96;
        let set = [
            ((base | 1, 128), 1),
            ((base | 3, 128), 2),
            ((base | 5, 128), 3),
        ];
        let table = RangeTable6::build(&set);
        let entry = table.elements()[(base >> 112) as usize];
        assert_eq!(
            range6::entry_kind(entry),
            range6::Entry::Ranges {
                first: DIRECT / 2,
                count: 7
            }
        );
        assert_answers(&set, &[base, base | 1, base | 2, base | 5, base | 6]);
    }

    #[test]
    fn a_region_at_the_last_level_with_more_ranges_than_a_leaf_holds_has_no_layout() {
        let base = 0x2001_0db8_u128 << 96;
        let hosts = (0..MAX_RANGES as u128).map(|i| ((base | (2 * i + 1), 128), 1));
        let region = (base, 100);
        assert!(RegionLayout::of(region, MAX_SPLITS, 0, hosts.clone()).is_none());
        assert!(RegionLayout::of(region, 0, 0, hosts).is_some());
    }

    #[test]
    fn dense_regions_are_split_and_leaves_stay_small() {
        let mut rng = Rng(0x3c6e_f372_fe94_f82b);
        let set = clustered(&mut rng, 20_000);
        let table = RangeTable6::build(&set);
        // Every lookup ends in at most LEAF_RANGES ranges unless MAX_SPLITS was reached: count
        // the ranges behind every entry the lookups of the set's own starts reach.
        let probes = probes(&mut rng, &set, 0);
        for &addr in probes.iter().step_by(7) {
            assert_eq!(table.lookup(addr), longest(&set, addr));
        }
        let direct_splits = table.elements()[..DIRECT as usize]
            .iter()
            .filter(|e| *e >> 62 == 2)
            .count();
        assert!(direct_splits >= 4, "the four dense /16s are split");
        assert!(
            table.bytes() < DIRECT as usize * 8 + 20_000 * 2 * 40,
            "{} bytes for 20k prefixes",
            table.bytes()
        );
    }
}
