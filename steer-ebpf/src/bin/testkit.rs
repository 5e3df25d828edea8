//! Helper programs for steer's tests and benchmarks; never loaded by the daemon.
//!
//! - `testkit_tc_empty` / `testkit_xdp_empty`: do nothing, the floor every benchmark is
//!   measured against.
//! - `testkit_witness`: attached after `steer_tc`, counts the UDP packets it sees per skb->mark.
//!   That it sees packets at all proves the classifier returned "continue"; the marks it sees
//!   are the marks steer wrote.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{TC_ACT_UNSPEC, xdp_action::XDP_PASS},
    macros::{classifier, map, xdp},
    maps::HashMap,
    programs::{TcContext, XdpContext},
};
use steer_common::{
    ethertype::{ETH_P_IP, ETH_P_IPV6},
    ipproto::IPPROTO_UDP,
};

/// skb->mark -> packets seen by the witness.
#[map]
static WITNESS: HashMap<u32, u64> = HashMap::with_max_entries(1024, 0);

#[classifier]
pub fn testkit_tc_empty(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

#[xdp]
pub fn testkit_xdp_empty(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

#[classifier]
pub fn testkit_witness(ctx: TcContext) -> i32 {
    // SAFETY: `skb` is the context pointer of this program.
    let (mark, protocol) = unsafe { ((*ctx.skb.skb).mark, (*ctx.skb.skb).protocol) };
    // Only UDP: the tests' streams are UDP, while ARP, neighbour discovery and packets to the
    // router itself are never steered and would blur "unmarked". skb->protocol is in network
    // order; the offsets are those of an untagged frame.
    let transport = match u16::from_be(protocol as u16) {
        ETH_P_IP => ctx.load::<u8>(ETH_HLEN + 9),
        ETH_P_IPV6 => ctx.load::<u8>(ETH_HLEN + 6),
        _ => return TC_ACT_UNSPEC,
    };
    if transport != Ok(IPPROTO_UDP) {
        return TC_ACT_UNSPEC;
    }
    match WITNESS.get_ptr_mut(mark) {
        // SAFETY: the value pointer is valid while the program runs. The tests send from one
        // flow at a time, so increments do not race.
        Some(seen) => unsafe { *seen += 1 },
        None => {
            let _ = WITNESS.insert(mark, 1, 0);
        }
    }
    TC_ACT_UNSPEC
}

const ETH_HLEN: usize = 14;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
