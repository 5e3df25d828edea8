//! Header parsing shared by the TC and XDP programs: Ethernet, up to two VLAN tags
//! (802.1Q / 802.1ad), then the IPv4 or IPv6 addresses. Nothing else is needed to classify.

use steer_common::{
    AddrV4, AddrV6,
    ethertype::{ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6},
};

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;

/// Bytes of headers the classifier may need: Ethernet, two tags, an IPv6 header.
pub const MAX_HEADERS: u32 = (ETH_HLEN + 2 * VLAN_HLEN + IPV6_HLEN) as u32;

pub enum Parsed {
    V4 { src: AddrV4, dst: AddrV4 },
    V6 { src: AddrV6, dst: AddrV6 },
    NotIp,
    Truncated,
}

/// Reads a `T` at `start + offset` if it lies before `end`; the bounds check is what the verifier
/// needs to allow the access.
#[inline(always)]
fn read<T: Copy>(start: usize, end: usize, offset: usize) -> Option<T> {
    let at = start + offset;
    if at + core::mem::size_of::<T>() > end {
        return None;
    }
    // SAFETY: the range [at, at + size_of::<T>()) was checked to lie inside the packet.
    Some(unsafe { (at as *const T).read_unaligned() })
}

#[inline(always)]
pub fn parse(start: usize, end: usize) -> Parsed {
    let Some(mut proto) = read::<u16>(start, end, ETH_HLEN - 2) else {
        return Parsed::Truncated;
    };
    let mut l3 = ETH_HLEN;
    // Two tags at most: an 802.1ad outer tag and an 802.1Q inner one (or two 802.1Q).
    for _ in 0..2 {
        let ethertype = u16::from_be(proto);
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let Some(inner) = read::<u16>(start, end, l3 + 2) else {
            return Parsed::Truncated;
        };
        proto = inner;
        l3 += VLAN_HLEN;
    }
    match u16::from_be(proto) {
        ETH_P_IP => parse_v4(start, end, l3),
        ETH_P_IPV6 => parse_v6(start, end, l3),
        _ => Parsed::NotIp,
    }
}

#[inline(always)]
fn parse_v4(start: usize, end: usize, l3: usize) -> Parsed {
    // The whole fixed header must be there, not only the addresses: a packet cut inside its IP
    // header is malformed and passes untouched.
    if start + l3 + IPV4_MIN_HLEN > end {
        return Parsed::Truncated;
    }
    match (read(start, end, l3 + 12), read(start, end, l3 + 16)) {
        (Some(src), Some(dst)) => Parsed::V4 { src, dst },
        _ => Parsed::Truncated,
    }
}

#[inline(always)]
fn parse_v6(start: usize, end: usize, l3: usize) -> Parsed {
    if start + l3 + IPV6_HLEN > end {
        return Parsed::Truncated;
    }
    match (read(start, end, l3 + 8), read(start, end, l3 + 24)) {
        (Some(src), Some(dst)) => Parsed::V6 { src, dst },
        _ => Parsed::Truncated,
    }
}
