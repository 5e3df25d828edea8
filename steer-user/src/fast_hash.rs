//! The hasher of the maps that hold every prefix of every set, a million for a million-line
//! list: the duplicates map of a configuration, and the prefix sets steer compiles and mirrors
//! ([`crate::model::PrefixSets`]).
//!
//! Why not std's SipHash: on that map alone, filled as a 1,000,000-line list fills it (1M
//! inserts of `(Direction, Prefix)`, best of 15 runs), this hasher takes about 71 ms and SipHash
//! 150 to 165 ms. End to end, the best `parse + validate` of `cargo xtask bench reload` (1M-line
//! list, 16 runs or more each on a shared 2-core machine) was 0.47 s with this hasher and 0.64 s
//! with SipHash. The keys come from the operator's own files, so hash flooding is not a concern.

use std::hash::{BuildHasher, Hasher};

/// Builds [`FxHasher`]s.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastHash;

impl BuildHasher for FastHash {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

/// The multiply-rotate hash of rustc (FxHash), one word at a time.
#[derive(Debug)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        // Spread the high bits down: hashbrown uses the top 7 bits and the low bits.
        self.0 ^ (self.0 >> 29)
    }
}
