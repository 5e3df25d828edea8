//! Passive liveness: what a WAN's own traffic says about its line. `steer_wan_egress` counts
//! the packets leaving a WAN device that expect an answer soon, `steer_wan_ingress` the packets
//! arriving on it that are one (the rule is documented on [`steer_common::WanTraffic`]). Both
//! only count: they always return `TC_ACT_UNSPEC` ("continue") and never change, pull or drop
//! a packet, so they sit in front of whatever else runs there (cake, NAT, firewalls).
//!
//! Headers are read straight from the packet where they lie in its linear part (nearly always)
//! and with `bpf_skb_load_bytes` where they do not (the non-linear part of some skbs): never
//! by pulling them in, which would unclone TCP's retransmit copies.

use aya_ebpf::{
    bindings::TC_ACT_UNSPEC, helpers::bpf_ktime_get_ns, macros::classifier, programs::TcContext,
};
use steer_common::{
    FAMILY_V4, FAMILY_V6, WanDevice,
    ethertype::{ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6},
    ipproto::{IPPROTO_TCP, IPPROTO_UDP},
    wan_device_flags, wan_traffic_index,
};

use crate::maps::{WAN_DEVICES, WAN_TRAFFIC};

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

const ICMP_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;

const TCP_FIN_SYN_RST_ACK: u8 = 0x01 | 0x02 | 0x04 | 0x10;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;

/// `skb->pkt_type` of a frame addressed to this host (not broadcast, multicast, or another
/// host's on a shared segment).
const PACKET_HOST: u32 = 0;

/// UDP destination ports whose datagrams are answered: DNS and QUIC.
const UDP_ASKING_PORTS: [u16; 2] = [53, 443];

/// Counts the packets leaving a WAN that expect an answer.
#[classifier]
pub fn steer_wan_egress(ctx: TcContext) -> i32 {
    watch(&ctx, true);
    TC_ACT_UNSPEC
}

/// Counts the packets arriving on a WAN that are an answer.
#[classifier]
pub fn steer_wan_ingress(ctx: TcContext) -> i32 {
    watch(&ctx, false);
    TC_ACT_UNSPEC
}

/// Where a packet's IP header starts and its family (`FAMILY_V4`/`FAMILY_V6`).
#[derive(Clone, Copy)]
struct L3 {
    offset: usize,
    family: u32,
}

#[inline(always)]
fn watch(ctx: &TcContext, egress: bool) {
    let skb = ctx.skb.skb;
    // SAFETY: `skb` is the context pointer of this program; `ifindex` is readable.
    let ifindex = unsafe { (*skb).ifindex };
    // SAFETY: a plain lookup; the value is copied out at once.
    let Some(dev) = (unsafe { WAN_DEVICES.get(ifindex) }).copied() else {
        return;
    };
    if egress && is_probe(skb, &dev) {
        return;
    }
    let l3_device = dev.flags & wan_device_flags::L3 != 0;
    // An Ethernet segment also carries other hosts' frames and broadcasts, which say nothing
    // about this line.
    // SAFETY: as above; `pkt_type` is readable.
    if !egress && !l3_device && unsafe { (*skb).pkt_type } != PACKET_HOST {
        return;
    }
    let Some(l3) = l3_of(ctx, l3_device) else {
        return;
    };
    let counts = if egress {
        asks(ctx, l3)
    } else {
        answers(ctx, l3)
    };
    if counts {
        record(wan_traffic_index(dev.slot, l3.family), egress);
    }
}

/// A packet of this host (no input device) with the WAN's mark: one of steer's probes.
#[inline(always)]
fn is_probe(skb: *mut aya_ebpf::bindings::__sk_buff, dev: &WanDevice) -> bool {
    // SAFETY: `skb` is the context pointer of this program; both fields are readable.
    let (input, mark) = unsafe { ((*skb).ingress_ifindex, (*skb).mark) };
    dev.mark_mask != 0 && input == 0 && mark & dev.mark_mask == dev.probe_mark
}

#[inline(always)]
fn record(index: u32, egress: bool) {
    let Some(t) = WAN_TRAFFIC.get_ptr_mut(index) else {
        return;
    };
    // SAFETY: the helper has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: per-CPU slot, valid for the program's lifetime; preemption is off.
    unsafe {
        if egress {
            (*t).asked += 1;
            (*t).last_asked_ns = now;
        } else {
            (*t).answered += 1;
            (*t).last_answered_ns = now;
        }
    }
}

/// The IP header: after Ethernet and at most one VLAN tag, or first on an L3 device, whose
/// family only `skb->protocol` tells.
#[inline(always)]
fn l3_of(ctx: &TcContext, l3_device: bool) -> Option<L3> {
    let (ethertype, offset) = if l3_device {
        (u16::from_be(ctx.skb.protocol() as u16), 0)
    } else {
        let outer = u16::from_be(read::<u16>(ctx, ETH_HLEN - 2)?);
        if outer == ETH_P_8021Q || outer == ETH_P_8021AD {
            let inner = read::<u16>(ctx, ETH_HLEN + VLAN_HLEN - 2)?;
            (u16::from_be(inner), ETH_HLEN + VLAN_HLEN)
        } else {
            (outer, ETH_HLEN)
        }
    };
    let family = match ethertype {
        ETH_P_IP => FAMILY_V4,
        ETH_P_IPV6 => FAMILY_V6,
        _ => return None,
    };
    Some(L3 { offset, family })
}

/// A `T` at `offset` of the packet: from the linear part when it lies there, else through the
/// helper (which reads the paged part too).
#[inline(always)]
fn read<T: Copy>(ctx: &TcContext, offset: usize) -> Option<T> {
    let at = ctx.data() + offset;
    if at + core::mem::size_of::<T>() <= ctx.data_end() {
        // SAFETY: [at, at + size_of::<T>()) was checked to lie inside the linear packet data.
        return Some(unsafe { (at as *const T).read_unaligned() });
    }
    ctx.load::<T>(offset).ok()
}

/// What lies above the IP header: the protocol, where its header starts, how many bytes
/// follow the IP header (`u32::MAX` when the header says 0: a BIG TCP super-packet) and
/// whether it is a later fragment (no transport header).
#[derive(Clone, Copy)]
struct L4 {
    proto: u8,
    later_fragment: bool,
    offset: usize,
    len: u32,
}

#[inline(always)]
fn l4_of(ctx: &TcContext, l3: L3) -> Option<L4> {
    if l3.family == FAMILY_V4 {
        let h = read::<[u8; IPV4_MIN_HLEN]>(ctx, l3.offset)?;
        let ihl = usize::from(h[0] & 0x0f) * 4;
        if h[0] >> 4 != 4 || ihl < IPV4_MIN_HLEN {
            return None;
        }
        let total = u32::from(u16::from_be_bytes([h[2], h[3]]));
        Some(L4 {
            proto: h[9],
            later_fragment: u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0,
            offset: l3.offset + ihl,
            len: if total == 0 {
                u32::MAX
            } else {
                total.saturating_sub(ihl as u32)
            },
        })
    } else {
        // Extension headers are not walked: the next header is taken as is (an extension
        // header is no transport protocol this program knows).
        let h = read::<[u8; 8]>(ctx, l3.offset)?;
        if h[0] >> 4 != 6 {
            return None;
        }
        let payload = u32::from(u16::from_be_bytes([h[4], h[5]]));
        Some(L4 {
            proto: h[6],
            later_fragment: false,
            offset: l3.offset + IPV6_HLEN,
            len: if payload == 0 { u32::MAX } else { payload },
        })
    }
}

/// Whether an outgoing packet expects an answer soon.
#[inline(always)]
fn asks(ctx: &TcContext, l3: L3) -> bool {
    let Some(l4) = l4_of(ctx, l3) else {
        return false;
    };
    if l4.later_fragment {
        return false;
    }
    match l4.proto {
        IPPROTO_TCP => read::<[u8; 14]>(ctx, l4.offset)
            .is_some_and(|t| tcp_asks(t[13], usize::from(t[12] >> 4) * 4, l4.len)),
        IPPROTO_UDP => read::<[u8; 4]>(ctx, l4.offset)
            .is_some_and(|p| UDP_ASKING_PORTS.contains(&u16::from_be_bytes([p[2], p[3]]))),
        IPPROTO_ICMP => icmp_type(ctx, l4) == Some(ICMP_ECHO_REQUEST),
        IPPROTO_ICMPV6 => icmp_type(ctx, l4) == Some(ICMPV6_ECHO_REQUEST),
        _ => false,
    }
}

/// A SYN without ACK opens a connection; a segment with payload is acknowledged. A RST is
/// never answered; a bare ACK or FIN may go unanswered for long (delayed ACKs, a half-closed
/// connection).
#[inline(always)]
fn tcp_asks(flags: u8, header_len: usize, len: u32) -> bool {
    if flags & TCP_RST != 0 {
        return false;
    }
    flags & TCP_FIN_SYN_RST_ACK == TCP_SYN || len > header_len as u32
}

/// Whether an incoming packet is an answer: anything but an ICMP error (sent by a router of
/// the ISP even when its upstream is dead) or ICMPv6 control traffic of the link (errors,
/// neighbour discovery, router advertisements, multicast listeners).
#[inline(always)]
fn answers(ctx: &TcContext, l3: L3) -> bool {
    let Some(l4) = l4_of(ctx, l3) else {
        return false;
    };
    if l4.later_fragment {
        return true;
    }
    match l4.proto {
        IPPROTO_ICMP => icmp_type(ctx, l4).is_some_and(|t| !icmp_v4_error(t)),
        IPPROTO_ICMPV6 => {
            matches!(
                icmp_type(ctx, l4),
                Some(ICMPV6_ECHO_REQUEST | ICMPV6_ECHO_REPLY)
            )
        }
        _ => true,
    }
}

/// ICMP errors: destination unreachable, source quench, redirect, time exceeded, parameter
/// problem.
#[inline(always)]
fn icmp_v4_error(kind: u8) -> bool {
    matches!(kind, 3 | 4 | 5 | 11 | 12)
}

#[inline(always)]
fn icmp_type(ctx: &TcContext, l4: L4) -> Option<u8> {
    // Four bytes: type, code, checksum.
    read::<[u8; 4]>(ctx, l4.offset).map(|h| h[0])
}
