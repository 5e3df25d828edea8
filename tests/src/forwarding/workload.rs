//! What every contender classifies and what the generator sends: a prefix set shaped like a
//! routing table, and flows whose destinations fall half inside it (the bypass WAN) and half
//! outside (the default WAN).

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use steer::{
    packet::{Frame, Transport},
    prefix::Prefix,
};

use crate::rng::Rng;

/// The bypass set and the frames of one scenario.
#[derive(Debug)]
pub struct Workload {
    pub label: String,
    pub v4: bool,
    pub prefixes: Vec<Prefix>,
    /// One frame per flow, alternating bypass and default destinations.
    pub frames: Vec<Vec<u8>>,
    /// Which frames go to a bypass destination (same order as `frames`).
    pub bypass: Vec<bool>,
}

/// Source MAC of the generated frames ([`Frame::build`]'s choice) and the MAC every router's
/// LAN interface gets, so one set of frames fits every router.
pub const GEN_MAC: &str = "02:00:00:00:00:01";
pub const ROUTER_LAN_MAC: &str = "02:00:00:00:00:02";

impl Workload {
    /// `count` prefixes and `flows` flows (even), reproducible from `seed`.
    pub fn new(label: &str, count: usize, v4: bool, flows: usize, seed: u64) -> Workload {
        let mut rng = Rng::new(seed);
        let prefixes = routing_table(&mut rng, count, v4);
        let covered = Intervals::of(&prefixes);
        let mut frames = Vec::with_capacity(flows);
        let mut bypass = Vec::with_capacity(flows);
        for i in 0..flows {
            let inside = i % 2 == 0;
            let dst = if inside {
                inside_destination(&mut rng, &prefixes)
            } else {
                outside_destination(&mut rng, &covered, v4)
            };
            frames.push(flow_frame(i, dst));
            bypass.push(inside);
        }
        Workload {
            label: label.to_owned(),
            v4,
            prefixes,
            frames,
            bypass,
        }
    }

    /// The frames as a trafgen configuration: one packet block per flow, sent round robin.
    pub fn trafgen_config(&self) -> String {
        let mut cfg = String::with_capacity(self.frames.len() * 64 * 5);
        for f in &self.frames {
            cfg.push('{');
            for (i, b) in f.iter().enumerate() {
                if i > 0 {
                    cfg.push(',');
                }
                cfg.push_str(&format!("{b:#04x}"));
            }
            cfg.push_str("}\n");
        }
        cfg
    }
}

/// Lengths as in a real table: mostly /24 (v4) or /48 (v6), a quarter between /16 and /23
/// (/32../47), host routes (DNS-learned addresses), and a rare short prefix (/8../15, /20../31)
/// that covers much address space.
fn routing_table(rng: &mut Rng, count: usize, v4: bool) -> Vec<Prefix> {
    let mut seen = HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let roll = rng.below(10_000);
        let (addr, len) = if v4 {
            let len = match roll {
                0..2 => 8 + rng.below(8) as u32,
                2..6000 => 24,
                6000..8500 => 16 + rng.below(8) as u32,
                _ => 32,
            };
            (IpAddr::V4(global_v4(rng)), len)
        } else {
            let len = match roll {
                0..2 => 20 + rng.below(12) as u32,
                2..6000 => 48,
                6000..8500 => 32 + rng.below(16) as u32,
                _ => 128,
            };
            (IpAddr::V6(global_v6(rng)), len)
        };
        let p = Prefix::truncating(addr, len).expect("valid length");
        if seen.insert(p) {
            out.push(p);
        }
    }
    out
}

/// A unicast address a router forwards: not 0/8, 10/8 (the lab's LAN), 100.64/10 (its WANs),
/// 127/8 or 224/3.
fn global_v4(rng: &mut Rng) -> Ipv4Addr {
    loop {
        let a = Ipv4Addr::from(rng.bytes::<4>());
        let first = a.octets()[0];
        let cgnat = first == 100 && (a.octets()[1] & 0xc0) == 64;
        if !(first == 0 || first == 10 || first == 127 || first >= 224 || cgnat) {
            return a;
        }
    }
}

/// An address in 2000::/3 (global unicast), away from the lab's fd00::/8.
fn global_v6(rng: &mut Rng) -> Ipv6Addr {
    let mut b = rng.bytes::<16>();
    b[0] = 0x20 | (b[0] & 0x1f);
    Ipv6Addr::from(b)
}

/// A random address inside a random prefix of the set, among those whose addresses are global
/// (a short v4 prefix may start in a range the router would not forward).
fn inside_destination(rng: &mut Rng, prefixes: &[Prefix]) -> IpAddr {
    loop {
        let p = prefixes[rng.below(prefixes.len() as u64) as usize];
        let addr = match p.addr() {
            IpAddr::V4(a) => {
                let host = u32::from_be_bytes(rng.bytes::<4>()) >> p.len().min(31);
                let host = if p.len() == 32 { 0 } else { host };
                IpAddr::V4(Ipv4Addr::from(u32::from(a) | host))
            }
            IpAddr::V6(a) => {
                let host = u128::from_be_bytes(rng.bytes::<16>()) >> u32::from(p.len()).min(127);
                let host = if p.len() == 128 { 0 } else { host };
                IpAddr::V6(Ipv6Addr::from(u128::from(a) | host))
            }
        };
        if forwardable(addr) {
            return addr;
        }
    }
}

fn forwardable(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(o[0] == 0
                || o[0] == 10
                || o[0] == 127
                || o[0] >= 224
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(a) => (a.octets()[0] & 0xe0) == 0x20,
    }
}

/// A global address no prefix of the set covers.
fn outside_destination(rng: &mut Rng, covered: &Intervals, v4: bool) -> IpAddr {
    for _ in 0..1_000_000 {
        let addr = if v4 {
            IpAddr::V4(global_v4(rng))
        } else {
            IpAddr::V6(global_v6(rng))
        };
        if !covered.contains(addr) {
            return addr;
        }
    }
    panic!("the prefix set covers (nearly) all of the address space");
}

/// The address ranges a prefix set covers, merged and sorted, for membership tests.
struct Intervals(Vec<(u128, u128)>);

impl Intervals {
    fn of(prefixes: &[Prefix]) -> Intervals {
        let mut v: Vec<(u128, u128)> = prefixes.iter().map(|p| range(*p)).collect();
        v.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        Intervals(merged)
    }

    fn contains(&self, addr: IpAddr) -> bool {
        let a = as_u128(addr);
        let i = self.0.partition_point(|&(lo, _)| lo <= a);
        i > 0 && self.0[i - 1].1 >= a
    }
}

fn as_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn range(p: Prefix) -> (u128, u128) {
    let bits = if p.is_v4() { 32 } else { 128 };
    let host_bits = bits - u32::from(p.len());
    let lo = as_u128(p.addr());
    let span = if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    (lo, lo | span)
}

/// Flow `i`: a source of its own on the LAN (10.1.0.0/16 or fd00:1::/64) and its own ports, so
/// every flow hashes differently (GRO, conntrack, flow dissector).
fn flow_frame(i: usize, dst: IpAddr) -> Vec<u8> {
    let n = i as u32;
    let src = match dst {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(10, 1, (n >> 8) as u8, n as u8)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            1,
            0,
            0,
            0,
            0,
            (n >> 16) as u16,
            n as u16,
        )),
    };
    Frame::udp(src, dst)
        .with_transport(Transport::Udp {
            sport: 1024 + (n % 60_000) as u16,
            dport: 443 + (n % 7) as u16,
        })
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_the_flows_hit_the_set_and_half_miss_it() {
        for v4 in [true, false] {
            let w = Workload::new("t", 2_000, v4, 64, 7);
            assert_eq!(w.prefixes.len(), 2_000);
            for (f, inside) in w.frames.iter().zip(&w.bypass) {
                let dst = dst_of(f);
                assert!(forwardable(dst), "{dst}");
                assert_eq!(
                    w.prefixes.iter().any(|p| p.contains(dst)),
                    *inside,
                    "{dst} (v4={v4})"
                );
            }
        }
    }

    fn dst_of(frame: &[u8]) -> IpAddr {
        match u16::from_be_bytes([frame[12], frame[13]]) {
            0x0800 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&frame[30..34]).unwrap())),
            _ => IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&frame[38..54]).unwrap(),
            )),
        }
    }
}
