//! steer: eBPF fast-path traffic steering for multi-WAN Linux routers.
//!
//! One module per concern: `dataplane` (kernel programs and maps), `prefix` (networks),
//! `packet` (synthetic frames for explain, tests and benchmarks), `objects` (the embedded
//! eBPF objects).
pub mod config;
pub mod control;
pub mod dataplane;
pub mod objects;
pub mod packet;
pub mod prefix;
