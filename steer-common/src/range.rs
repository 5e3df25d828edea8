//! The IPv4 range table: a longest-prefix-match set as a direct table and sorted ranges
//! (DXR, "D16R": Zec, Rizzo and Mikuc, 2012), in one BPF array whose value is a 256 KiB
//! [`Block`] of `u64`.
//!
//! A prefix set is a function from the address space to values (a rule, or [`NONE`]); it
//! changes value only at a prefix's first address or one past its last. So the set is stored
//! as that function, not as its prefixes:
//!
//! - **Direct entries**, the first [`DIRECT`] elements (blocks `0..DIRECT_BLOCKS`): one per /16
//!   *chunk* (the address's first [`DIRECT_BITS`] bits). A chunk whose addresses all share one
//!   value holds it (`count` 0); otherwise the entry names the chunk's ranges (`first`,
//!   `count`) and holds its *split*: where the ranges after the chunk's first cache line start
//!   ([`chunk`]).
//! - **Ranges**, two per element from block `DIRECT_BLOCKS` on (the even one in the low half):
//!   each a 16-bit offset in its chunk where a value starts, and the value. A chunk's ranges
//!   are sorted, its first one starts at offset 0, they never straddle two blocks, and they
//!   span no more 64-byte lines ([`LINE_RANGES`] ranges) than their count needs. A lookup
//!   compares the address with the split, then binary-searches one part for the last range
//!   that starts at or before the address.
//!
//! A lookup takes two blocks with one map lookup each and reads inside them with plain loads,
//! bounded by a mask: the direct entry (the direct table is 512 KiB), then one chunk's ranges.
//! At 1M prefixes of a real-looking mix a chunk has about 28 ranges, two lines; the split
//! picks the line before any range is read, so such a lookup reads one line of ranges, not two
//! or three (in the forwarding benchmark's profile, a quarter of the lookup's samples wait on
//! the direct entry and two fifths on the range line: two dependent misses). The cost does not
//! grow with the set; the memory is 512 KiB plus 4 bytes per range (about two per prefix, plus
//! one per /16 that has ranges, the padding to lines and at block ends), where an LPM trie
//! keeps a node per prefix and walks up to 32 of them. /16 chunks measured better than /18 ones
//! (`cargo xtask bench lookup`): more, shorter chunks need a 2 MiB direct table that leaves the
//! cache.
//!
//! An entry is one aligned `u64`, written with one store, and a chunk's new ranges are written
//! before the entry that names them: a lookup sees a chunk's old ranges or its new ones,
//! never a mix.

/// The layout of the range tables (IPv4 and IPv6), recorded beside the pinned maps
/// (`map_names::TABLE_FORMAT`): 2 since direct entries hold a split (1, never recorded, before).
pub const FORMAT: u32 = 2;

/// Bits of the address that index the direct table.
pub const DIRECT_BITS: u32 = 16;
/// Direct entries, at the start of the table.
pub const DIRECT: u32 = 1 << DIRECT_BITS;
/// Bits of the offset inside a chunk.
pub const OFFSET_BITS: u32 = 32 - DIRECT_BITS;
/// Addresses per chunk, and the most ranges one chunk can have.
pub const CHUNK: u32 = 1 << OFFSET_BITS;
/// Halvings a binary search over `CHUNK` ranges needs, and one more: the loop bound.
pub const SEARCH_STEPS: u32 = OFFSET_BITS + 1;
/// `u64` elements per block: the array's value is one block of 256 KiB, so a lookup takes a
/// block with one map lookup and reads inside it with plain loads (bounded by a mask).
pub const BLOCK_BITS: u32 = 15;
pub const BLOCK: u32 = 1 << BLOCK_BITS;
/// Ranges in one 64-byte cache line (a line starts at a multiple of this).
pub const LINE_RANGES: u32 = 16;
/// Bits of a chunk entry's `first`: enough, since the kernel keeps a BPF array under 4 GiB,
/// that is under 2^30 ranges.
pub const FIRST_BITS: u32 = 31;
/// Bits of a chunk entry's `count` (up to `CHUNK`).
pub const COUNT_BITS: u32 = OFFSET_BITS + 1;
/// Ranges per block (two per element).
pub const BLOCK_RANGES: u32 = 2 * BLOCK;
/// Blocks the direct table fills; the ranges start in the block after them.
pub const DIRECT_BLOCKS: u32 = DIRECT / BLOCK;
/// The value of addresses no prefix covers.
pub const NONE: u32 = 0xffff;
/// The largest value a range can carry (values are 16 bits; `NONE` is reserved).
pub const MAX_VALUE: u32 = NONE - 1;

/// One value of the array.
pub type Block = [u64; BLOCK as usize];

/// Slots of a prefix map's outer array: the table the classifier reads, and the record.
pub const SLOTS: u32 = 2;
/// The slot of the range table.
pub const TABLE: u32 = 0;
/// The slot of the record: the set's prefixes themselves, sorted, for userspace (`steer
/// dump`, `explain`, a restarted daemon); the classifier never reads it. Element
/// [`RECORD_COUNT`] holds how many `u64` elements of entries there are (one an IPv4 entry,
/// [`record_entry`]; three an IPv6 one, see `map_names::DST_V6`), [`RECORD_SEQ`] a sequence
/// number (odd while the record is being written: a reader that saw it odd, or saw it change,
/// reads again), and the entries follow from [`RECORD_HEADER`] on.
pub const RECORD: u32 = 1;
pub const RECORD_COUNT: usize = 0;
pub const RECORD_SEQ: usize = 1;
pub const RECORD_HEADER: usize = 2;

/// A record entry: the prefix's address (host order) and length, and its value; entries sort
/// by address, then length (a prefix before the prefixes it contains).
#[inline(always)]
pub const fn record_entry(addr: u32, len: u8, value: u32) -> u64 {
    (addr as u64) << 32 | (len as u64) << 16 | (value & 0xffff) as u64
}

/// The address, length and value of a record entry.
#[inline(always)]
pub const fn record_parts(entry: u64) -> (u32, u8, u32) {
    (
        (entry >> 32) as u32,
        (entry >> 16) as u8,
        entry as u32 & 0xffff,
    )
}

/// A direct entry: a chunk with one value throughout.
#[inline(always)]
pub const fn leaf(value: u32) -> u64 {
    value as u64
}

/// A direct entry: a chunk of `ranges` (≥ 2, `range` values) starting at range `first`. A
/// chunk's ranges never straddle two blocks.
///
/// The entry also holds the *split*: the offset where the chunk's ranges after its first cache
/// line start (0 when they all lie in one line). The lookup compares it before it reads a
/// range, so a chunk of up to two lines (the usual size: about 28 ranges at 1M prefixes of the
/// lookup benchmark's mix) costs one read of one line, not a search across both.
#[inline(always)]
pub fn chunk(first: u32, ranges: &[u32]) -> u64 {
    debug_assert!(first < 1 << FIRST_BITS && ranges.len() <= CHUNK as usize);
    let count = ranges.len() as u32;
    let lower = in_first_line(first);
    let split = if count > lower {
        ranges[lower as usize] >> 16
    } else {
        0
    };
    (split as u64) << (FIRST_BITS + COUNT_BITS) | (count as u64) << FIRST_BITS | first as u64
}

/// The first range, count and split of a direct entry (count 0: a leaf, whose value is
/// `first & NONE`).
#[inline(always)]
pub const fn chunk_parts(entry: u64) -> (u32, u32, u32) {
    (
        entry as u32 & ((1 << FIRST_BITS) - 1),
        (entry >> FIRST_BITS) as u32 & ((1 << COUNT_BITS) - 1),
        (entry >> (FIRST_BITS + COUNT_BITS)) as u32,
    )
}

/// Ranges from range `first` to the end of its cache line.
#[inline(always)]
pub const fn in_first_line(first: u32) -> u32 {
    LINE_RANGES - first % LINE_RANGES
}

/// A range: `value` from `offset` in its chunk on.
#[inline(always)]
pub const fn range(offset: u32, value: u32) -> u32 {
    offset << 16 | value
}

/// Where range `index` lives: its block, its element in the block, and its shift there (the
/// even range of a pair in the low half).
#[inline(always)]
pub const fn range_place(index: u32) -> (u32, u32, u32) {
    (
        DIRECT_BLOCKS + index / BLOCK_RANGES,
        (index % BLOCK_RANGES) >> 1,
        (index & 1) * 32,
    )
}

/// 1 when a range starting at `start` starts at or before `offset` (both 16 bits), else 0,
/// computed without a comparison that the compiler would turn into a branch: bit 16 of
/// `offset + CHUNK - start`.
#[inline(always)]
const fn at_or_before(start: u32, offset: u32) -> u32 {
    ((offset + CHUNK - start) >> OFFSET_BITS) & 1
}

/// Blocks a table of `ranges` ranges (padding included) needs.
pub const fn blocks(ranges: u32) -> u32 {
    DIRECT_BLOCKS + ranges.div_ceil(BLOCK_RANGES)
}

/// The value of `addr` (host order) in the table read through `block`, which returns the
/// table's block at an index, or `None` past its end (then the answer is [`NONE`]). The one
/// lookup: the classifier and userspace (tests, `explain`) run this code.
#[inline(always)]
pub fn lookup<'a>(addr: u32, block: impl Fn(u32) -> Option<&'a Block>) -> u32 {
    let chunk_index = addr >> OFFSET_BITS;
    let Some(direct) = block(chunk_index / BLOCK) else {
        return NONE;
    };
    // Volatile, so that the compiler keeps each read a single 64-bit load: userspace swaps an
    // entry with one store while this runs, and `first`, `count` and the split must come from
    // one entry.
    // SAFETY: a reference into a live block, aligned and in bounds.
    let entry = unsafe { core::ptr::read_volatile(&direct[(chunk_index % BLOCK) as usize]) };
    let (first, count, split) = chunk_parts(entry);
    if count == 0 {
        return first & NONE;
    }
    let (block_index, _, _) = range_place(first);
    let Some(ranges) = block(block_index) else {
        return NONE;
    };
    let offset = addr & (CHUNK - 1);
    // The split picks the part to search, the chunk's first line or the rest, before any range
    // is read. Without branches here and in the search: for spread addresses each comparison
    // is a coin toss, and a mispredicted branch costs as much as a cache hit. Masks come from
    // the signs of differences (all values below 2^17).
    let line = in_first_line(first);
    let beyond_line = 0u32.wrapping_sub(line.wrapping_sub(count) >> 31);
    let past_split = 0u32.wrapping_sub(at_or_before(split, offset)) & beyond_line;
    let in_line = count ^ ((count ^ line) & beyond_line);
    // The last range starting at or before `offset`: `lo` always starts at or before it (the
    // chunk's first range starts at 0, the rest at the split), and the answer lies in
    // `lo..lo + n`.
    let mut lo = first + (line & past_split);
    let mut n = in_line ^ ((in_line ^ count.wrapping_sub(line)) & past_split);
    let mut step = 0;
    while step < SEARCH_STEPS {
        if n <= 1 {
            break;
        }
        let half = n / 2;
        let step_up = at_or_before(range_at(ranges, lo + half) >> 16, offset);
        lo += half & 0u32.wrapping_sub(step_up);
        n -= half;
        step += 1;
    }
    range_at(ranges, lo) & NONE
}

/// Range `index` of the block holding it.
#[inline(always)]
fn range_at(ranges: &Block, index: u32) -> u32 {
    let (_, element, shift) = range_place(index);
    // SAFETY: a reference into a live block, aligned and in bounds (the mask).
    (unsafe { core::ptr::read_volatile(&ranges[(element % BLOCK) as usize]) } >> shift) as u32
}

const _: () = assert!(OFFSET_BITS <= 16); // range(): 16-bit offsets
const _: () = assert!(CHUNK <= BLOCK_RANGES && DIRECT.is_multiple_of(BLOCK));
const _: () = assert!(BLOCK_RANGES.is_multiple_of(LINE_RANGES));
const _: () = assert!(FIRST_BITS + COUNT_BITS + OFFSET_BITS == 64); // chunk(): one u64
const _: () = assert!(crate::MAX_RULES <= MAX_VALUE);
