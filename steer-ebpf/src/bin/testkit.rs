//! Helper programs for steer's tests and benchmarks; never loaded by the daemon.
//!
//! - `testkit_tc_empty` / `testkit_xdp_empty`: do nothing, the floor every benchmark is
//!   measured against.
//! - `testkit_witness`: attached after `steer_tc`, counts the UDP packets it sees per skb->mark.
//!   That it sees packets at all proves the classifier returned "continue"; the marks it sees
//!   are the marks steer wrote.
//! - `testkit_ranges_v4` / `testkit_lpm_v4` / `testkit_echo_v4`: answer a batch of IPv4
//!   addresses from a range table (`steer_common::range`), from a kernel LPM trie (the oracle
//!   of the range table's tests), or not at all (the benchmark floor). The frame is a `u32`
//!   count (native order, at most `BATCH`) and then the addresses (network order); each address
//!   is overwritten by its answer (native order).
//! - `testkit_ranges_v6` / `testkit_lpm_v6` / `testkit_echo_v6`: the same for IPv6 and its
//!   range table (`steer_common::range6`): the frame is the count and then 16-byte addresses,
//!   at most `BATCH_V6`; the first four bytes of each are overwritten by its answer.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{TC_ACT_UNSPEC, xdp_action::XDP_PASS},
    btf_maps::{Array, ArrayOfMaps},
    macros::{btf_map, classifier, map, xdp},
    maps::{HashMap, LpmTrie, lpm_trie::Key},
    programs::{TcContext, XdpContext},
};
use steer_common::{
    AddrV4, AddrV6, MAP_F_INNER_MAP, MAP_F_MMAPABLE, MAP_F_NO_PREALLOC,
    ethertype::{ETH_P_IP, ETH_P_IPV6},
    ipproto::IPPROTO_UDP,
    range, range6,
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

/// A range table, in slot 0 (created and filled by the test).
#[btf_map]
static TESTKIT_RANGES_V4: ArrayOfMaps<
    Array<range::Block, 1, { (MAP_F_INNER_MAP | MAP_F_MMAPABLE) as usize }>,
    1,
> = ArrayOfMaps::new();

/// The same set as a kernel LPM trie: prefix -> value.
#[map]
static TESTKIT_LPM_V4: LpmTrie<AddrV4, u32> = LpmTrie::with_max_entries(1 << 24, MAP_F_NO_PREALLOC);

/// Addresses one run answers at most.
const BATCH: usize = 64;

/// An IPv6 range table, in slot 0 (created and filled by the test).
#[btf_map]
static TESTKIT_RANGES_V6: ArrayOfMaps<
    Array<range::Block, 1, { (MAP_F_INNER_MAP | MAP_F_MMAPABLE) as usize }>,
    1,
> = ArrayOfMaps::new();

/// The same IPv6 set as a kernel LPM trie: prefix -> value.
#[map]
static TESTKIT_LPM_V6: LpmTrie<AddrV6, u32> = LpmTrie::with_max_entries(1 << 22, MAP_F_NO_PREALLOC);

/// IPv6 addresses one run answers at most.
const BATCH_V6: usize = 32;

#[xdp]
pub fn testkit_ranges_v6(ctx: XdpContext) -> u32 {
    let Some(table) = TESTKIT_RANGES_V6.get(0) else {
        return 0;
    };
    answer_each(&ctx, BATCH_V6, |addr| {
        let (hi, lo) = range6::halves(addr);
        range6::lookup(hi, lo, |index| table.get(index))
    })
}

#[xdp]
pub fn testkit_lpm_v6(ctx: XdpContext) -> u32 {
    answer_each(&ctx, BATCH_V6, |addr| {
        match TESTKIT_LPM_V6.get(Key::new(128, *addr)) {
            Some(value) => *value,
            None => range::NONE,
        }
    })
}

#[xdp]
pub fn testkit_echo_v6(ctx: XdpContext) -> u32 {
    answer_each(&ctx, BATCH_V6, |addr: &AddrV6| {
        range6::halves(addr).0 as u32
    })
}

#[xdp]
pub fn testkit_ranges_v4(ctx: XdpContext) -> u32 {
    let Some(table) = TESTKIT_RANGES_V4.get(0) else {
        return 0;
    };
    answer_each(&ctx, BATCH, |addr| {
        range::lookup(u32::from_be_bytes(*addr), |index| table.get(index))
    })
}

#[xdp]
pub fn testkit_lpm_v4(ctx: XdpContext) -> u32 {
    answer_each(&ctx, BATCH, |addr| {
        match TESTKIT_LPM_V4.get(Key::new(32, *addr)) {
            Some(value) => *value,
            None => range::NONE,
        }
    })
}

#[xdp]
pub fn testkit_echo_v4(ctx: XdpContext) -> u32 {
    answer_each(&ctx, BATCH, |addr: &AddrV4| u32::from_be_bytes(*addr))
}

/// Answers each `N`-byte address of the frame, at most `batch`: its first four bytes become
/// `answer(address)`. Returns how many it answered.
#[inline(always)]
fn answer_each<const N: usize>(
    ctx: &XdpContext,
    batch: usize,
    answer: impl Fn(&[u8; N]) -> u32,
) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + 4 > end {
        return 0;
    }
    // SAFETY: the four bytes at `start` are inside the frame (checked above).
    let count = unsafe { *(start as *const u32) } as usize;
    let mut i = 0;
    while i < batch && i < count {
        let at = start + 4 + N * i;
        if at + N > end {
            break;
        }
        // SAFETY: `at..at + N` is inside the frame (checked above); the frame is the test's
        // own buffer, read and written by this program alone.
        unsafe {
            let addr = *(at as *const [u8; N]);
            *(at as *mut [u8; 4]) = answer(&addr).to_ne_bytes();
        }
        i += 1;
    }
    i as u32
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
