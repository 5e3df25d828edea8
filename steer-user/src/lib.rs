//! steer: eBPF fast-path traffic steering for multi-WAN Linux routers.
//!
//! One module per concern: `dataplane` (kernel programs and maps), `prefix` (networks),
//! `packet` (synthetic frames for explain, tests and benchmarks), `objects` (the embedded
//! eBPF objects).
pub mod cli;
pub mod config;
pub mod conntrack;
pub mod control;
pub mod controller;
pub mod daemon;
pub mod dataplane;
pub mod health;
pub mod objects;
pub mod packet;
pub mod policy;
pub mod prefix;
pub mod routing;
pub mod sets;
