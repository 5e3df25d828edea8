//! The IPv6 range table: a longest-prefix-match set as a multibit tree whose leaves are
//! sorted ranges, in one BPF array of [`Block`]s like the IPv4 table ([`crate::range`]).
//!
//! As for IPv4 the set is stored as the function it is, address -> value, which changes only
//! where a prefix starts or ends. IPv6 sets differ in two ways that shape the layout:
//!
//! - **They are concentrated.** Real sets sit in a few dozen /16s (2001::/16, 2a00::/12, ...),
//!   so a direct table over the first 16 bits alone leaves thousands of ranges under one entry,
//!   and a binary search over them is as deep as a trie. A region with more than
//!   [`LEAF_RANGES`] ranges is therefore *split* by its next bits, into a table sized to it
//!   (about one entry per [`LEAF_RANGES`] ranges, at most 2^[`MAX_SPLIT_BITS`]), and so on
//!   down, as long as the cut separates its ranges (ranges too close together for that stay
//!   ranges, up to [`MAX_RANGES`]): a lookup reads the direct entry, one entry per split level
//!   (at most [`MAX_SPLITS`]), then searches the region's ranges (for real sets a handful, in
//!   one or two cache lines).
//! - **Their ranges are wide.** A range holds its first address below the first 16 bits
//!   (112 bits) and its value: two elements ([`range_key`]).
//!
//! Elements, in order:
//!
//! - **Direct entries**, the first [`DIRECT`] elements: one per /16.
//! - Then split tables and ranges, as the builder lays them out. An *entry* (direct or in a
//!   split table) is one of:
//!   - a leaf ([`leaf`]): one value for the whole region;
//!   - ranges ([`ranges`]): `count` ranges from range `first` on (range `i` is elements `2i`
//!     and `2i + 1`), sorted, the first starting at the region's first address;
//!   - a split ([`split`]): the region is cut by the `bits` address bits from bit `at` on,
//!     into `2^bits` entries from element `first` on.
//!
//! A split entry is read through its block (one map lookup each), so a split table may straddle
//! two blocks; an entry's ranges stay inside one, which the search reads with plain loads. An
//! entry is one aligned `u64`, written with one store after everything it
//! names: a lookup sees a region before a change or after it, never a mix.

use crate::range::{BLOCK, Block, NONE};

/// Bits of the address that index the direct table.
pub const DIRECT_BITS: u32 = 16;
/// Direct entries, at the start of the table.
pub const DIRECT: u32 = 1 << DIRECT_BITS;
/// Ranges a leaf region holds at most before the builder splits it (four ranges fill one
/// cache line).
pub const LEAF_RANGES: u32 = 4;
/// The widest split: 2^16 entries, 512 KiB.
pub const MAX_SPLIT_BITS: u32 = 16;
/// Split levels below the direct entry, at most: the lookup's first loop bound. A region at
/// that depth is ranges, however many (see [`MAX_RANGES`]).
pub const MAX_SPLITS: u32 = 12;
/// Ranges one entry names at most. The builder cuts a region of more by at least
/// `log2(MAX_RANGES / LEAF_RANGES)` bits, so that after [`MAX_SPLITS`] levels every region is
/// small enough (or one address). An entry's ranges stay inside one block, which the search
/// reads with plain loads.
pub const MAX_RANGES: u32 = 1 << 12;
/// Halvings of the binary search over at most [`MAX_RANGES`] ranges, and one more: the loop
/// bound.
pub const SEARCH_STEPS: u32 = 13;

const TAG_SHIFT: u32 = 62;
const TAG_LEAF: u64 = 0;
const TAG_RANGES: u64 = 1;
const TAG_SPLIT: u64 = 2;

/// An entry: one value throughout its region.
#[inline(always)]
pub const fn leaf(value: u32) -> u64 {
    (value & NONE) as u64
}

/// An entry: `count` (1..=[`MAX_RANGES`]) ranges from range `first` on (elements `2·first`
/// on).
#[inline(always)]
pub const fn ranges(first: u32, count: u32) -> u64 {
    TAG_RANGES << TAG_SHIFT | ((count as u64) << 32) | first as u64
}

/// An entry: the region is cut by address bits `at..at + bits` (`bits` 1..=16) into the
/// `2^bits` entries from element `first` on.
#[inline(always)]
pub const fn split(first: u32, at: u32, bits: u32) -> u64 {
    TAG_SPLIT << TAG_SHIFT | ((at as u64) << 40) | ((bits as u64) << 32) | first as u64
}

/// What an entry is, decoded (for userspace: the lookup reads the bits directly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Leaf(u32),
    Ranges { first: u32, count: u32 },
    Split { first: u32, at: u32, bits: u32 },
}

/// Decodes an entry.
pub const fn entry_kind(entry: u64) -> Entry {
    match entry >> TAG_SHIFT {
        TAG_RANGES => {
            let (first, count) = ranges_fields(entry);
            Entry::Ranges { first, count }
        }
        TAG_SPLIT => {
            let (first, at, bits) = split_fields(entry);
            Entry::Split { first, at, bits }
        }
        _ => Entry::Leaf(entry as u32 & NONE),
    }
}

/// A ranges entry's first range and count (the fields [`ranges`] packs).
#[inline(always)]
const fn ranges_fields(entry: u64) -> (u32, u32) {
    (entry as u32, (entry >> 32) as u32 & (2 * MAX_RANGES - 1))
}

/// A split entry's first element, first bit and bits (the fields [`split`] packs).
#[inline(always)]
const fn split_fields(entry: u64) -> (u32, u32, u32) {
    (
        entry as u32,
        (entry >> 40) as u32 & 0x7f,
        (entry >> 32) as u32 & 0x1f,
    )
}

/// A range's two elements: the first address below the first 16 bits (bits 16..80, then bits
/// 80..128 shifted up beside the value) and the value from there on.
#[inline(always)]
pub const fn range_key(addr: u128, value: u32) -> [u64; 2] {
    [
        (addr >> 48) as u64,
        ((addr as u64) << 16) | (value & NONE) as u64,
    ]
}

/// An address (network order) as its upper and lower 64 bits, the halves [`lookup`] takes.
#[inline(always)]
pub const fn halves(addr: &[u8; 16]) -> (u64, u64) {
    let mut hi = 0u64;
    let mut lo = 0u64;
    let mut i = 0;
    while i < 8 {
        hi = hi << 8 | addr[i] as u64;
        lo = lo << 8 | addr[i + 8] as u64;
        i += 1;
    }
    (hi, lo)
}

/// The 64 address bits from bit `at` (0..128) on, zeros past the end.
#[inline(always)]
pub const fn window(hi: u64, lo: u64, at: u32) -> u64 {
    if at == 0 {
        hi
    } else if at < 64 {
        hi << at | lo >> (64 - at)
    } else if at < 128 {
        lo << (at - 64)
    } else {
        0
    }
}

/// The value of the address `hi:lo` (its upper and lower 64 bits) in the table read through
/// `block`, which returns the table's block at an index, or `None` past its end (then the
/// answer is [`NONE`]). The one lookup: the classifier and userspace run this code.
#[inline(always)]
pub fn lookup<'a>(hi: u64, lo: u64, block: impl Fn(u32) -> Option<&'a Block>) -> u32 {
    let element = |index: u32| -> Option<u64> {
        let block = block(index / BLOCK)?;
        Some(read(block, index))
    };
    let Some(mut entry) = element((hi >> (64 - DIRECT_BITS)) as u32) else {
        return NONE;
    };
    let mut level = 0;
    while level < MAX_SPLITS && entry >> TAG_SHIFT == TAG_SPLIT {
        let (first, at, bits) = split_fields(entry);
        let index = (window(hi, lo, at) >> (64 - bits)) as u32;
        let Some(next) = element(first.wrapping_add(index)) else {
            return NONE;
        };
        entry = next;
        level += 1;
    }
    match entry >> TAG_SHIFT {
        TAG_LEAF => entry as u32 & NONE,
        TAG_RANGES => {
            let (first, count) = ranges_fields(entry);
            let Some(ranges) = block(first.wrapping_mul(2) / BLOCK) else {
                return NONE;
            };
            search(
                ranges,
                first,
                count,
                (window(hi, lo, DIRECT_BITS), lo << 16 >> 16),
            )
        }
        _ => NONE,
    }
}

/// Element `index` of the table, read from its block.
#[inline(always)]
fn read(block: &Block, index: u32) -> u64 {
    // Volatile, so that each read stays one 64-bit load: userspace swaps an entry with one
    // store while this runs.
    // SAFETY: a reference into a live block, aligned and in bounds (masked).
    unsafe { core::ptr::read_volatile(&block[(index % BLOCK) as usize]) }
}

/// The value of the last of the `count` ranges from range `first` on (all in `ranges`, their
/// block) that starts at or before `key` (an address's bits 16..80 and 80..128).
#[inline(always)]
fn search(ranges: &Block, first: u32, count: u32, (upper, lower): (u64, u64)) -> u32 {
    // `lo` always starts at or before the key (a region's first range starts at its first
    // address), and the answer lies in `lo..lo + n`. `lo` is the range's index in the table,
    // not an offset from `first`: starting from a value the verifier does not know (rather
    // than 0) lets it treat the paths of each halving as one, which took the classifier's
    // load from 1.9 s to 0.7 s.
    let mut lo = first;
    let mut n = count;
    let mut step = 0;
    while step < SEARCH_STEPS {
        if n <= 1 {
            break;
        }
        let half = n / 2;
        let probe = lo.wrapping_add(half).wrapping_mul(2);
        let (start_upper, start_lower) = (read(ranges, probe), read(ranges, probe + 1) >> 16);
        if start_upper < upper || (start_upper == upper && start_lower <= lower) {
            lo += half;
            n -= half;
        } else {
            n = half;
        }
        step += 1;
    }
    read(ranges, lo.wrapping_mul(2).wrapping_add(1)) as u32 & NONE
}

const _: () = assert!(DIRECT.is_multiple_of(BLOCK));
const _: () = assert!(MAX_RANGES.ilog2() < SEARCH_STEPS && 2 * MAX_RANGES <= BLOCK);
// A region of more than MAX_RANGES is cut by this many bits or more: after MAX_SPLITS such
// cuts it is one address.
const _: () = assert!(DIRECT_BITS + MAX_SPLITS * (MAX_RANGES / LEAF_RANGES).ilog2() >= 128);
const _: () = assert!(crate::MAX_RULES <= crate::range::MAX_VALUE);
