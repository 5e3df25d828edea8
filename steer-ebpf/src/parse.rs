//! Header parsing shared by the TC and XDP programs: Ethernet, up to two VLAN tags
//! (802.1Q / 802.1ad), the IPv4 or IPv6 header (with up to four IPv6 extension headers), and
//! the ports of TCP, UDP, SCTP and UDP-Lite. That is all classifying and balancing need.
//!
//! Fragments: the first fragment of a datagram carries the ports; the ones after it carry
//! none, so they are reported with the datagram's identification and the classifier gives
//! them the rule and the hash their first fragment recorded (`crate::classify`).

use steer_common::{
    AddrV4, AddrV6,
    ethertype::{ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6},
    ipproto,
};

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
/// IPv6 extension headers walked before the transport header.
const MAX_EXT_HEADERS: usize = 4;

const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_DEST: u8 = 60;

/// Bytes of headers the classifier may need: Ethernet, two tags, an IPv6 header, extension
/// headers and the ports.
pub const MAX_HEADERS: u32 = 192;

/// Whether a packet is part of a fragmented datagram.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FragKind {
    /// A whole datagram.
    No,
    /// The first fragment (it has the ports).
    First,
    /// A later fragment (no ports).
    Later,
}

/// What is known above the IP header. `repr(C)` with explicit padding, like [`Parsed`]: no
/// byte of it is ever uninitialised.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Transport {
    pub proto: u8,
    pub frag: FragKind,
    /// The ports should be there but lie past the readable bytes (a non-linear skb).
    pub ports_cut: bool,
    pub _pad: u8,
    /// 0 when the protocol has no ports, or for a later fragment.
    pub sport: u16,
    pub dport: u16,
    /// The datagram's identification, for a fragment.
    pub frag_id: u32,
}

impl Transport {
    const NONE: Transport = Transport {
        proto: 0,
        frag: FragKind::No,
        ports_cut: false,
        _pad: 0,
        sport: 0,
        dport: 0,
        frag_id: 0,
    };
}

/// What kind of packet it is.
#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    V4,
    V6,
    NotIp,
    Truncated,
}

/// A parsed packet. A plain struct whose every field is always set, not an enum with payloads,
/// and `repr(C)` without padding: the compiler may read a payload before it checks which
/// variant it has, and copies padding as it likes; both are harmless in Rust and refused by the
/// verifier (a pointer read as a byte, a spilled register that holds nothing). Aligned to 8 so
/// that the addresses, at offsets 16 and 32, are written as whole words.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct Parsed {
    pub l4: Transport,
    pub kind: Kind,
    /// Source address; IPv4 in the first four bytes.
    pub src: AddrV6,
    pub dst: AddrV6,
}

const _: () = assert!(core::mem::size_of::<Transport>() == 12);
const _: () = assert!(core::mem::size_of::<Parsed>() == 48);

impl Parsed {
    const fn of(kind: Kind) -> Parsed {
        Parsed {
            kind,
            src: [0; 16],
            dst: [0; 16],
            l4: Transport::NONE,
        }
    }

    /// The packet should be parsed again with more of it readable.
    #[inline(always)]
    pub fn wants_more(&self) -> bool {
        match self.kind {
            Kind::Truncated => true,
            Kind::V4 | Kind::V6 => self.l4.ports_cut,
            Kind::NotIp => false,
        }
    }

    /// The IPv4 source address.
    #[inline(always)]
    pub fn src_v4(&self) -> AddrV4 {
        [self.src[0], self.src[1], self.src[2], self.src[3]]
    }

    /// The IPv4 destination address.
    #[inline(always)]
    pub fn dst_v4(&self) -> AddrV4 {
        [self.dst[0], self.dst[1], self.dst[2], self.dst[3]]
    }
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

// Not inlined: one copy for every caller, and the verifier sees the parse as a subprogram
// whose locals cannot mix with the caller's (LLVM merges dead values across paths otherwise,
// spilling registers that hold nothing).
#[inline(never)]
pub fn parse(start: usize, end: usize) -> Parsed {
    let Some(mut proto) = read::<u16>(start, end, ETH_HLEN - 2) else {
        return Parsed::of(Kind::Truncated);
    };
    let mut l3 = ETH_HLEN;
    // Two tags at most: an 802.1ad outer tag and an 802.1Q inner one (or two 802.1Q).
    for _ in 0..2 {
        let ethertype = u16::from_be(proto);
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let Some(inner) = read::<u16>(start, end, l3 + 2) else {
            return Parsed::of(Kind::Truncated);
        };
        proto = inner;
        l3 += VLAN_HLEN;
    }
    match u16::from_be(proto) {
        ETH_P_IP => parse_v4(start, end, l3),
        ETH_P_IPV6 => parse_v6(start, end, l3),
        _ => Parsed::of(Kind::NotIp),
    }
}

// Every read below is of 4 bytes or more: a one-byte check `at + 1 > end` is compiled to
// `at >= end`, which the verifier cannot turn into a readable range for a variable offset.

#[inline(always)]
fn parse_v4(start: usize, end: usize, l3: usize) -> Parsed {
    // The whole fixed header must be there, not only the addresses: a packet cut inside its IP
    // header is malformed and passes untouched.
    let Some(h) = read::<[u8; IPV4_MIN_HLEN]>(start, end, l3) else {
        return Parsed::of(Kind::Truncated);
    };
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let id = u32::from(u16::from_be_bytes([h[4], h[5]]));
    let frag_off = u16::from_be_bytes([h[6], h[7]]);
    let frag = frag_kind(frag_off & 0x1fff, frag_off & 0x2000 != 0);
    Parsed {
        l4: transport(start, end, l3 + ihl.max(IPV4_MIN_HLEN), h[9], frag, id),
        kind: Kind::V4,
        src: widened([h[12], h[13], h[14], h[15]]),
        dst: widened([h[16], h[17], h[18], h[19]]),
    }
}

/// An IPv4 address in the first four bytes of a 16-byte one, the rest zero. Built as one
/// integer so that the compiler writes whole words: zeroing the tail of a byte array was a
/// call to a byte-at-a-time `memset` for each address of every IPv4 packet.
#[inline(always)]
fn widened(v4: [u8; 4]) -> AddrV6 {
    u128::from(u32::from_le_bytes(v4)).to_le_bytes()
}

#[inline(always)]
fn parse_v6(start: usize, end: usize, l3: usize) -> Parsed {
    let (Some(src), Some(dst), Some(fixed)) = (
        read::<AddrV6>(start, end, l3 + 8),
        read::<AddrV6>(start, end, l3 + 24),
        read::<[u8; 8]>(start, end, l3),
    ) else {
        return Parsed::of(Kind::Truncated);
    };
    Parsed {
        l4: transport_v6(start, end, l3 + IPV6_HLEN, fixed[6]),
        kind: Kind::V6,
        src,
        dst,
    }
}

/// What follows the extension headers that start at `at` with `next`. Built whole and stored
/// once: a `Parsed` first filled with zeros and then given its transport had the zeros written
/// by a byte-at-a-time `memset` call on every IPv6 packet.
#[inline(always)]
fn transport_v6(start: usize, end: usize, mut at: usize, mut next: u8) -> Transport {
    let (mut frag, mut frag_id) = (FragKind::No, 0);
    for _ in 0..MAX_EXT_HEADERS {
        let is_ext = matches!(
            next,
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_FRAGMENT
        );
        if !is_ext {
            break;
        }
        // Every extension header is at least 8 bytes.
        let Some(h) = read::<[u8; 8]>(start, end, at) else {
            return Transport {
                proto: next,
                frag,
                ports_cut: true,
                frag_id,
                ..Transport::NONE
            };
        };
        if next == NEXTHDR_FRAGMENT {
            let off = u16::from_be_bytes([h[2], h[3]]);
            frag_id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
            frag = frag_kind(off >> 3, off & 1 != 0);
            at += 8;
        } else {
            at += (usize::from(h[1]) + 1) * 8;
        }
        next = h[0];
    }
    transport(start, end, at, next, frag, frag_id)
}

#[inline(always)]
fn frag_kind(offset: u16, more: bool) -> FragKind {
    match (offset, more) {
        (0, false) => FragKind::No,
        (0, true) => FragKind::First,
        _ => FragKind::Later,
    }
}

#[inline(always)]
fn transport(start: usize, end: usize, at: usize, proto: u8, frag: FragKind, id: u32) -> Transport {
    let has_ports = ipproto::has_ports(proto) && frag != FragKind::Later;
    let ports = if has_ports {
        read::<[u16; 2]>(start, end, at)
    } else {
        None
    };
    Transport {
        proto,
        frag,
        ports_cut: has_ports && ports.is_none(),
        _pad: 0,
        sport: ports.map_or(0, |p| u16::from_be(p[0])),
        dport: ports.map_or(0, |p| u16::from_be(p[1])),
        frag_id: id,
    }
}
