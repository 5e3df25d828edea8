//! Workloads shared by the benchmarks, and the benchmark groups that live in modules of their
//! own ([`dns`], [`memory`]).

pub mod dns;
pub mod memory;

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use steer::prefix::Prefix;

use crate::rng::Rng;

/// `count` distinct prefixes shaped like a routing table: IPv4 mostly /24 with /16../23 and
/// host routes mixed in; IPv6 mostly /48 with /32../64 and hosts.
pub fn prefixes(rng: &mut Rng, count: usize, v4: bool) -> Vec<Prefix> {
    let mut seen = HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let roll = rng.below(100);
        let (addr, len) = if v4 {
            let len = match roll {
                0..60 => 24,
                60..85 => 16 + rng.below(8) as u32,
                _ => 32,
            };
            (IpAddr::V4(Ipv4Addr::from(rng.bytes::<4>())), len)
        } else {
            let len = match roll {
                0..60 => 48,
                60..85 => 32 + rng.below(33) as u32,
                _ => 128,
            };
            (IpAddr::V6(Ipv6Addr::from(rng.bytes::<16>())), len)
        };
        let p = Prefix::truncating(addr, len).expect("valid length");
        if seen.insert(p) {
            out.push(p);
        }
    }
    out
}
