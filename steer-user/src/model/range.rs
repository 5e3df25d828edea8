//! Building the IPv4 range table (`steer_common::range`) from a prefix set.
//!
//! The set is swept once in address order: a stack holds the prefixes that contain the current
//! address (innermost on top), so the value at every address is the top's, and it can change
//! only where a prefix starts or ends. Those points, with the value from each on, are the
//! set's *breakpoints*; cutting them at chunk boundaries gives each chunk its ranges. Sorting
//! the prefixes is the only step that is not linear.

use steer_common::range::{self, BLOCK, BLOCK_RANGES, Block, CHUNK, DIRECT, NONE, OFFSET_BITS};

/// An IPv4 prefix as the builder takes it: the address (host order, host bits clear) and the
/// length.
pub type PrefixV4 = (u32, u8);

/// A range table: the elements of the kernel's array, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeTable {
    elements: Vec<u64>,
    ranges: u32,
}

impl RangeTable {
    /// The table of `set`: each prefix with its value (at most `range::MAX_VALUE`). A prefix
    /// given twice keeps the value given last.
    pub fn build(set: &[(PrefixV4, u32)]) -> RangeTable {
        let mut sorted: Vec<(PrefixV4, u32)> = set.to_vec();
        // By first address, the containing prefix before the contained; equal prefixes keep
        // their order, so the last of them wins below.
        sorted.sort_by_key(|((addr, len), _)| (*addr, *len));
        RangeTable::of_sorted(sorted.into_iter())
    }

    /// The table of a set given in address order, a containing prefix before the prefixes it
    /// contains.
    pub fn of_sorted(sorted: impl Iterator<Item = (PrefixV4, u32)>) -> RangeTable {
        let mut table = InVectors {
            direct: vec![range::leaf(NONE); DIRECT as usize],
            ranges: Vec::new(),
        };
        lay_out(sorted, &mut table);
        let InVectors { direct, ranges } = table;
        let count = ranges.len() as u32;
        let mut elements = Vec::with_capacity(range::blocks(count) as usize * BLOCK as usize);
        elements.extend_from_slice(&direct);
        drop(direct);
        elements.extend(
            ranges
                .chunks(2)
                .map(|pair| pack(pair[0], pair.get(1).copied())),
        );
        elements.resize(range::blocks(count) as usize * BLOCK as usize, 0);
        RangeTable {
            elements,
            ranges: count,
        }
    }

    /// The array's elements: the direct table, then the ranges, in whole blocks.
    pub fn elements(&self) -> &[u64] {
        &self.elements
    }

    /// The array's values: the elements in blocks.
    pub fn blocks(&self) -> u32 {
        (self.elements.len() / BLOCK as usize) as u32
    }

    fn block(&self, index: u32) -> Option<&Block> {
        let start = index as usize * BLOCK as usize;
        self.elements
            .get(start..start + BLOCK as usize)?
            .try_into()
            .ok()
    }

    /// Ranges in the table, padding included (chunks with more than one value hold them).
    pub fn ranges(&self) -> u32 {
        self.ranges
    }

    /// Bytes the kernel's array holds (BPF arrays keep 8 bytes per `u64` element).
    pub fn bytes(&self) -> usize {
        self.elements.len() * 8
    }

    /// The value of `addr`, by the classifier's own lookup.
    pub fn lookup(&self, addr: u32) -> u32 {
        range::lookup(addr, |i| self.block(i))
    }
}

/// Blocks of room for changes that a fresh kernel table gets beside its own `blocks`: an
/// eighth of its ranges' blocks, at least one.
pub fn spare_blocks(blocks: u32) -> u32 {
    (blocks - range::DIRECT_BLOCKS) / 8 + 1
}

/// Blocks of a kernel record holding `entries` prefixes, with room for about an eighth more.
pub fn record_blocks(entries: usize) -> u32 {
    let elements = range::RECORD_HEADER + entries + entries / 8 + 1;
    elements.div_ceil(BLOCK as usize) as u32
}

/// Bytes of `blocks` blocks of a kernel array.
pub const fn block_bytes(blocks: u32) -> u64 {
    blocks as u64 * BLOCK as u64 * 8
}

/// Two ranges in one element, the even one in the low half.
pub fn pack(even: u32, odd: Option<u32>) -> u64 {
    u64::from(even) | u64::from(odd.unwrap_or(0)) << 32
}

/// The ranges of `chunk` (`range::range` values; one range: the whole chunk has its value)
/// from the prefixes that bear on it, in address order: those containing the chunk and those
/// inside it.
pub fn chunk_ranges(chunk: u32, prefixes: impl Iterator<Item = (PrefixV4, u32)>) -> Vec<u32> {
    let points = breakpoints(prefixes);
    let mut out = Vec::new();
    Cutter::new(&points).cut(chunk, &mut out);
    out
}

/// Where a table's layout goes: its direct entries and its ranges, as they are placed.
pub trait Layout {
    /// Chunk `chunk`'s direct entry.
    fn direct(&mut self, chunk: u32, entry: u64);
    /// Ranges (`range::range` values) from range index `first` on; padding before them is
    /// left as it is (zero).
    fn ranges(&mut self, first: u32, ranges: &[u32]);
}

/// A table laid out in vectors ([`RangeTable::of_sorted`]).
struct InVectors {
    direct: Vec<u64>,
    ranges: Vec<u32>,
}

impl Layout for InVectors {
    fn direct(&mut self, chunk: u32, entry: u64) {
        self.direct[chunk as usize] = entry;
    }
    fn ranges(&mut self, first: u32, ranges: &[u32]) {
        self.ranges.resize(first as usize, 0);
        self.ranges.extend_from_slice(ranges);
    }
}

/// Lays out the table of a set given in address order into `out`, chunk by chunk as the
/// sweep gives its breakpoints: nothing of the set's size is collected (a million prefixes
/// have two million breakpoints, 32 MB had they been). Returns the ranges placed, padding
/// included ([`table_ranges`] counts the same without laying out).
pub fn lay_out(sorted: impl Iterator<Item = (PrefixV4, u32)>, out: &mut impl Layout) -> u32 {
    let mut chunks = Chunks {
        out,
        placed: 0,
        current: 0,
        pending: vec![range::range(0, NONE)],
        value: NONE,
    };
    sweep::<V4>(sorted, |point| chunks.point(point));
    chunks.finish()
}

/// Lays out a set's breakpoints chunk by chunk as the sweep gives them (in address order): a
/// chunk with one range is a leaf of the direct table, one with more names its ranges.
struct Chunks<'o, O> {
    out: &'o mut O,
    /// Ranges placed so far, padding included.
    placed: u32,
    /// The chunk the last breakpoint fell in, and its ranges so far (the first at its start).
    current: u32,
    pending: Vec<u32>,
    /// The value from the last breakpoint on.
    value: u32,
}

impl<O: Layout> Chunks<'_, O> {
    fn point(&mut self, (position, value): (u64, u32)) {
        let chunk = (position >> OFFSET_BITS) as u32;
        while self.current < chunk {
            self.close();
            self.current += 1;
            self.pending.push(range::range(0, self.value));
        }
        let offset = (position as u32) & (CHUNK - 1);
        // A breakpoint at a chunk's start is that chunk's first range, not one more.
        if offset == 0 {
            self.pending[0] = range::range(0, value);
        } else {
            self.pending.push(range::range(offset, value));
        }
        self.value = value;
    }

    /// Places the current chunk's ranges and starts none.
    fn close(&mut self) {
        if let [only] = self.pending[..] {
            self.out.direct(self.current, range::leaf(only & NONE));
        } else {
            let count = self.pending.len() as u32;
            let first = self.placed + padding_before(self.placed, count);
            self.out
                .direct(self.current, range::chunk(first, &self.pending));
            self.out.ranges(first, &self.pending);
            self.placed = first + count;
        }
        self.pending.clear();
    }

    fn finish(mut self) -> u32 {
        while self.current < DIRECT - 1 {
            self.close();
            self.current += 1;
            self.pending.push(range::range(0, self.value));
        }
        self.close();
        self.placed
    }
}

/// Cuts one chunk's ranges out of a set's breakpoints (a change rewritten in place:
/// [`chunk_ranges`]).
struct Cutter<'a> {
    points: &'a [(u64, u32)],
    /// The first breakpoint past the last chunk's start.
    next: usize,
    /// The value at that chunk's start.
    value: u32,
}

impl<'a> Cutter<'a> {
    fn new(points: &'a [(u64, u32)]) -> Cutter<'a> {
        Cutter {
            points,
            next: 0,
            value: NONE,
        }
    }

    /// The ranges of `chunk` (chunks come in increasing order) into `out`.
    fn cut(&mut self, chunk: u32, out: &mut Vec<u32>) {
        out.clear();
        let start = u64::from(chunk) << OFFSET_BITS;
        let end = start + u64::from(CHUNK);
        let points = self.points;
        while self.next < points.len() && points[self.next].0 <= start {
            self.value = points[self.next].1;
            self.next += 1;
        }
        out.push(range::range(0, self.value));
        while self.next < points.len() && points[self.next].0 < end {
            self.value = points[self.next].1;
            out.push(range::range(
                (points[self.next].0 - start) as u32,
                self.value,
            ));
            self.next += 1;
        }
    }
}

/// Where the value of a sorted set changes: `(first address, value from there on)`, in
/// address order, starting at 0; a value never repeats its predecessor's.
fn breakpoints(sorted: impl Iterator<Item = (PrefixV4, u32)>) -> Vec<(u64, u32)> {
    let mut points = Vec::new();
    sweep::<V4>(sorted, |point| points.push(point));
    points
}

/// An address space the sweep walks: where a prefix starts and where it ends (one past its
/// last address), as positions that can also name the end of the space.
pub(super) trait Space {
    type Prefix;
    type Position: Copy + Ord;
    const START: Self::Position;
    const END: Self::Position;
    fn span(prefix: &Self::Prefix) -> (Self::Position, Self::Position);
}

/// IPv4: positions are 33 bits wide.
struct V4;

impl Space for V4 {
    type Prefix = PrefixV4;
    type Position = u64;
    const START: u64 = 0;
    const END: u64 = 1 << 32;
    fn span(&(addr, len): &PrefixV4) -> (u64, u64) {
        let start = u64::from(addr);
        (start, start + (1u64 << (32 - u32::from(len))))
    }
}

/// Sweeps a sorted set, giving each of its breakpoints to `emit`, in order.
pub(super) fn sweep<S: Space>(
    sorted: impl Iterator<Item = (S::Prefix, u32)>,
    emit: impl FnMut((S::Position, u32)),
) {
    let mut points = Breakpoints::<S, _> {
        emit,
        held: None,
        last_value: NONE,
    };
    points.push(S::START, NONE);
    // Prefixes containing the sweep's position: (one past the last address, value).
    let mut open: Vec<(S::Position, u32)> = Vec::new();
    for (prefix, value) in sorted {
        let (start, end) = S::span(&prefix);
        close_until(&mut open, &mut points, start);
        // A prefix given again is opened again, inside the first: the value given last holds
        // throughout, and both close at the same point.
        open.push((end, value));
        points.push(start, value);
    }
    close_until(&mut open, &mut points, S::END);
    points.finish();
}

/// Ends the open prefixes that end at or before `position`, innermost first: from each end on,
/// the next enclosing prefix's value holds (or none).
fn close_until<S: Space, F: FnMut((S::Position, u32))>(
    open: &mut Vec<(S::Position, u32)>,
    points: &mut Breakpoints<S, F>,
    position: S::Position,
) {
    while let Some(&(end, _)) = open.last() {
        if end > position {
            break;
        }
        open.pop();
        let value = open.last().map_or(NONE, |&(_, v)| v);
        points.push(end, value);
    }
}

/// The breakpoints as the sweep finds them, one held back: a later one at the same position
/// replaces it.
struct Breakpoints<S: Space, F> {
    emit: F,
    held: Option<(S::Position, u32)>,
    /// The value of the last breakpoint given to `emit`.
    last_value: u32,
}

impl<S: Space, F: FnMut((S::Position, u32))> Breakpoints<S, F> {
    /// Records that `value` holds from `position` on (positions come in order).
    fn push(&mut self, position: S::Position, value: u32) {
        if position >= S::END {
            return;
        }
        if self.held.is_some_and(|(p, _)| p == position) {
            self.held = None;
        }
        let before = self.held.map_or(self.last_value, |(_, v)| v);
        if before == value && (self.held.is_some() || position > S::START) {
            return;
        }
        self.release();
        self.held = Some((position, value));
    }

    fn release(&mut self) {
        if let Some(point) = self.held.take() {
            self.last_value = point.1;
            (self.emit)(point);
        }
    }

    fn finish(mut self) {
        self.release();
    }
}

/// The blocks of the table of a set given in address order (as [`RangeTable::of_sorted`]
/// builds it, without building it): what the kernel's array needs before spare room.
pub fn table_blocks(sorted: impl Iterator<Item = (PrefixV4, u32)>) -> u32 {
    range::blocks(table_ranges(sorted))
}

/// The ranges of that table, padding included.
pub fn table_ranges(sorted: impl Iterator<Item = (PrefixV4, u32)>) -> u32 {
    let mut placed = Placed::default();
    // The chunk being counted and its ranges so far (a chunk has one range at its start).
    let mut current = (0u32, 1u32);
    sweep::<V4>(sorted, |(position, _)| {
        let (chunk, offset) = (
            (position >> OFFSET_BITS) as u32,
            position as u32 & (CHUNK - 1),
        );
        if chunk != current.0 {
            placed.chunk(current.1);
            current = (chunk, 1);
        }
        // A breakpoint at a chunk's start is that chunk's first range, not one more.
        if offset != 0 {
            current.1 += 1;
        }
    });
    placed.chunk(current.1);
    placed.ranges
}

/// The ranges of a table as its chunks are laid out, padding included.
#[derive(Default)]
struct Placed {
    ranges: u32,
}

impl Placed {
    /// Lays out a chunk of `count` ranges: one is a leaf of the direct table; more stay inside
    /// one block.
    fn chunk(&mut self, count: u32) {
        if count < 2 {
            return;
        }
        self.ranges += padding_before(self.ranges, count) + count;
    }
}

/// The unused ranges to leave after `used` ranges before a chunk of `count`:
///
/// - a chunk's ranges stay inside one block (the lookup reads them from one), so one that does
///   not fit in what is left of the block starts the next;
/// - a chunk spans no more cache lines than its size needs, so that the split of its entry
///   (`range::chunk`) leaves at most a line on each side when it has two lines or fewer.
pub fn padding_before(used: u32, count: u32) -> u32 {
    let room = BLOCK_RANGES - used % BLOCK_RANGES;
    let into_line = used % range::LINE_RANGES;
    let lines = count.div_ceil(range::LINE_RANGES);
    let padding = if into_line + count > lines * range::LINE_RANGES {
        range::LINE_RANGES - into_line
    } else {
        0
    };
    if count > room - padding {
        room
    } else {
        padding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The longest match by brute force: the oracle of these tests.
    fn longest(set: &[(PrefixV4, u32)], addr: u32) -> u32 {
        let mut best: Option<(u8, u32)> = None;
        for &((p, len), value) in set {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
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
    }

    fn prefix(addr: u32, len: u8) -> PrefixV4 {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        (addr & mask, len)
    }

    /// Addresses worth asking about: each prefix's first and last address and their
    /// neighbours, chunk edges, and random ones.
    fn probes(set: &[(PrefixV4, u32)], rng: &mut Rng) -> Vec<u32> {
        let mut out = vec![0, u32::MAX, 0xffff, 0x1_0000];
        for &((p, len), _) in set {
            let last = p | u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
            out.extend([p, last, p.wrapping_sub(1), last.wrapping_add(1)]);
        }
        out.extend((0..2000).map(|_| rng.next() as u32));
        out
    }

    fn check(set: &[(PrefixV4, u32)], rng: &mut Rng) {
        let table = RangeTable::build(set);
        let mut sorted = set.to_vec();
        sorted.sort_by_key(|(p, _)| *p);
        assert_eq!(
            table_ranges(sorted.into_iter()),
            table.ranges(),
            "counted without building, {set:?}"
        );
        for addr in probes(set, rng) {
            assert_eq!(
                table.lookup(addr),
                longest(set, addr),
                "address {addr:#010x} of {set:?}"
            );
        }
    }

    #[test]
    fn an_empty_set_answers_none_everywhere() {
        let table = RangeTable::build(&[]);
        assert_eq!(table.ranges(), 0);
        assert_eq!(table.lookup(0x0a00_0001), NONE);
        assert_eq!(table.bytes(), DIRECT as usize * 8);
        assert_eq!(table.blocks(), range::DIRECT_BLOCKS);
    }

    #[test]
    fn the_default_route_and_host_routes() {
        let mut rng = Rng(7);
        check(&[((0, 0), 1)], &mut rng);
        check(&[((0, 0), 1), ((0x0a00_0001, 32), 2)], &mut rng);
        check(&[((u32::MAX, 32), 3), ((0, 32), 4)], &mut rng);
        check(&[((0x0a00_0000, 8), 1), ((0x0a00_0000, 16), 1)], &mut rng);
    }

    #[test]
    fn a_prefix_given_twice_keeps_the_last_value() {
        let table = RangeTable::build(&[((0x0a00_0000, 8), 1), ((0x0a00_0000, 8), 2)]);
        assert_eq!(table.lookup(0x0a01_0203), 2);
    }

    #[test]
    fn a_chunk_that_would_straddle_two_blocks_starts_the_next() {
        // Three chunks of 40,001 ranges each: the second does not fit after the first.
        let hosts: Vec<(PrefixV4, u32)> = (1..=3u32)
            .flat_map(|c| (0..20_000).map(move |k| (((c << 16) | (2 * k), 32), c)))
            .collect();
        let table = RangeTable::build(&hosts);
        assert!(table.ranges() > 3 * 40_001, "padding between the chunks");
        assert_eq!(table_ranges(hosts.iter().copied()), table.ranges());
        assert_eq!(table_blocks(hosts.iter().copied()), table.blocks());
        for c in 1..=3u32 {
            for k in 0..20_000 {
                assert_eq!(table.lookup((c << 16) | (2 * k)), c);
                assert_eq!(table.lookup((c << 16) | (2 * k + 1)), NONE);
            }
            assert_eq!(table.lookup((c << 16) | 0xffff), NONE);
        }
    }

    #[test]
    fn one_chunk_rebuilt_from_the_prefixes_bearing_on_it_answers_as_the_whole_set() {
        let mut rng = Rng(0xc4);
        for _ in 0..200 {
            let base = rng.next() as u32 & 0xffff_0000;
            let mut set: Vec<(PrefixV4, u32)> = (0..40)
                .map(|_| {
                    let len = (rng.next() % 33) as u8;
                    (
                        prefix(base | (rng.next() as u32 & 0x0003_ffff), len),
                        (rng.next() % 5) as u32,
                    )
                })
                .collect();
            set.sort_by_key(|(p, _)| *p);
            set.dedup_by_key(|(p, _)| *p);
            for chunk in [base >> 16, (base >> 16) + 1, (base >> 16) + 3] {
                let (start, end) = (u64::from(chunk) << 16, (u64::from(chunk) + 1) << 16);
                let bearing = set.iter().copied().filter(|((a, l), _)| {
                    let first = u64::from(*a);
                    let last = first + (1u64 << (32 - u32::from(*l))) - 1;
                    first < end && last >= start
                });
                let ranges = chunk_ranges(chunk, bearing);
                assert_eq!(ranges[0] >> 16, 0, "a chunk's first range starts at 0");
                for _ in 0..200 {
                    let offset = rng.next() as u32 & 0xffff;
                    let at = ranges.partition_point(|r| r >> 16 <= offset) - 1;
                    let addr = (chunk << 16) | offset;
                    assert_eq!(ranges[at] & NONE, longest(&set, addr), "{addr:#x}");
                }
            }
        }
    }

    /// Every chunk's entry and ranges as built: (first, count, split, the ranges).
    fn chunks_of(table: &RangeTable) -> Vec<(u32, u32, u32, Vec<u32>)> {
        let elements = table.elements();
        let range_at = |index: u32| {
            let (block, element, shift) = range::range_place(index);
            (elements[(block * BLOCK + element) as usize] >> shift) as u32
        };
        elements[..DIRECT as usize]
            .iter()
            .map(|entry| range::chunk_parts(*entry))
            .filter(|(_, count, _)| *count > 0)
            .map(|(first, count, split)| {
                let ranges = (first..first + count).map(range_at).collect();
                (first, count, split, ranges)
            })
            .collect()
    }

    #[test]
    fn a_chunk_spans_the_fewest_lines_and_its_split_starts_its_second_line() {
        let mut rng = Rng(0x11e5);
        // About 28 ranges a chunk, as at 1M prefixes of the benchmark's mix, over 64 chunks,
        // and a few chunks of hundreds.
        let mut set: Vec<(PrefixV4, u32)> = Vec::new();
        for k in 0..1500 {
            let (addr, len) = if k < 900 {
                (rng.next() as u32 & 0x003f_ffff, 24 + rng.next() % 9)
            } else {
                (0x0a00_0000 | (rng.next() as u32 & 0x3_ffff), 32)
            };
            set.push((prefix(addr, len as u8), (rng.next() % 7) as u32));
        }
        set.sort_by_key(|(p, _)| *p);
        set.dedup_by_key(|(p, _)| *p);
        let table = RangeTable::build(&set);
        let chunks = chunks_of(&table);
        assert!(chunks.iter().any(|c| c.1 > 2 * range::LINE_RANGES));
        assert!(chunks.iter().any(|c| c.1 > range::LINE_RANGES));
        for (first, count, split, ranges) in chunks {
            let lines = (first + count - 1) / range::LINE_RANGES - first / range::LINE_RANGES + 1;
            assert_eq!(
                lines,
                count.div_ceil(range::LINE_RANGES),
                "chunk at {first}+{count}"
            );
            let in_line = range::in_first_line(first);
            let expected = if count > in_line {
                ranges[in_line as usize] >> 16
            } else {
                0
            };
            assert_eq!(split, expected, "split of the chunk at {first}+{count}");
        }
        check(&set, &mut rng);
    }

    #[test]
    fn random_nested_sets_match_the_longest_prefix() {
        let mut rng = Rng(0x5eed);
        for round in 0..300 {
            let size = 1 + (rng.next() % 60) as usize;
            // Prefixes drawn around a few bases, so that they nest and share chunks.
            let bases: Vec<u32> = (0..3).map(|_| rng.next() as u32).collect();
            let set: Vec<(PrefixV4, u32)> = (0..size)
                .map(|_| {
                    let base = bases[(rng.next() % 3) as usize] ^ (rng.next() as u32 & 0x3ff);
                    let len = match rng.next() % 8 {
                        0 => 0,
                        1 => 32,
                        _ => (rng.next() % 33) as u8,
                    };
                    (
                        prefix(base, len),
                        (rng.next() % 4) as u32 + u32::from(round % 2 == 0),
                    )
                })
                .collect();
            let mut unique = set.clone();
            unique.sort_by_key(|(p, _)| *p);
            unique.dedup_by_key(|(p, _)| *p);
            check(&unique, &mut rng);
        }
    }
}
