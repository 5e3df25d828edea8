//! The compiled kernel programs, embedded at build time (see build.rs).

use aya::include_bytes_aligned;

/// The classifier object: `steer_tc`, `steer_xdp` and their maps. Empty in a fuzzing build
/// (`--cfg fuzzing`), which never loads a program.
pub static STEER: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer"));

/// Helper programs for tests and benchmarks (the empty floor programs and the tc witness).
pub static TESTKIT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer-testkit"));
