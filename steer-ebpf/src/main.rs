//! steer kernel programs.
//!
//! `steer_tc` (TC ingress on LAN interfaces) classifies every packet and stamps the mark of the
//! WAN that should carry it; `steer_xdp` (optional, same interfaces) does the lookups earlier and
//! hands the rule (and a balanced rule's hash) to TC in the packet metadata. Both are fail-open: a packet
//! they cannot read passes unmarked, and TC always returns "continue" so programs after it still
//! run. A packet to a destination the router reaches without a WAN is never marked.
//! `steer_wan_egress` and `steer_wan_ingress` (TC on each WAN device, [`wan`]) only count what
//! a WAN's own traffic says about its line.
#![no_std]
#![no_main]

mod classify;
mod cond;
mod maps;
mod parse;
mod wan;

use aya_ebpf::{
    bindings::{TC_ACT_UNSPEC, xdp_action::XDP_PASS},
    helpers::{bpf_skb_pull_data, bpf_xdp_adjust_meta},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use aya_log_ebpf::info;
use steer_common::{
    FAMILY_V4, FAMILY_V6, LOCAL_RULE, MAX_RULES, NO_WAN, TC_CB_MAGIC, TC_CB_RULE, XDP_HASH_NONE,
    XDP_META_MAGIC, XdpMeta, action, lb_index, path, policy_flags, policy_index, rule_wan_index,
    settings_flags,
};

use crate::{
    classify::{hash_of, rule_of},
    cond::Input,
    maps::{
        ACTIVE, LB, POLICY, SETTINGS, STATS_PATH, STATS_RULE, STATS_RULE_WAN, STATS_WAN, count,
    },
    parse::{Kind, MAX_HEADERS, parse},
};

/// TC ingress classifier. The return value is always `TC_ACT_UNSPEC`, the "continue" verdict of
/// both tcx (`TCX_NEXT`) and cls_bpf direct-action: steer never ends the chain for others.
#[classifier]
pub fn steer_tc(ctx: TcContext) -> i32 {
    classify_tc(&ctx);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn classify_tc(ctx: &TcContext) {
    let len = ctx.len();
    let flags = settings();
    if let Some(meta) = xdp_verdict(ctx) {
        count(&STATS_PATH, path::XDP_META, len);
        note_rule(ctx, meta.rule);
        let hash = |by_source: bool| {
            let kind = if by_source { policy_flags::HASH_SRC } else { 0 };
            if meta.hash_kind == kind {
                meta.hash
            } else {
                // The generation flipped between XDP and TC: hash it here.
                hash_of(&parse(ctx.data(), ctx.data_end()), by_source)
            }
        };
        apply(ctx, meta.rule, meta.family, flags, hash);
        return;
    }
    let mut parsed = parse(ctx.data(), ctx.data_end());
    if parsed.wants_more() && pull_headers(ctx) {
        parsed = parse(ctx.data(), ctx.data_end());
    }
    match rule_of(&parsed, &tc_input(ctx), flags) {
        Some(LOCAL_RULE) => {
            note_rule(ctx, LOCAL_RULE);
            count(&STATS_PATH, path::LOCAL, len);
        }
        Some(rule) => {
            note_rule(ctx, rule);
            count(&STATS_PATH, path::CLASSIFIED, len);
            apply(ctx, rule, family_of(parsed.kind), flags, |by_source| {
                hash_of(&parsed, by_source)
            });
        }
        None if parsed.kind == Kind::NotIp => count(&STATS_PATH, path::NOT_IP, len),
        None => count(&STATS_PATH, path::TRUNCATED, len),
    }
}

/// What the TC program knows of a packet besides its headers: the device it came in on (at TC
/// ingress, the skb's device) and the source MAC.
#[inline(always)]
fn tc_input(ctx: &TcContext) -> Input {
    // SAFETY: `skb` is the context pointer of this program; `ifindex` is readable for tc.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    input_of(ctx.data(), ctx.data_end(), ifindex)
}

#[inline(always)]
fn input_of(data: usize, data_end: usize, ifindex: u32) -> Input {
    let mut mac = [0u8; 6];
    if data + 12 <= data_end {
        // SAFETY: bytes 6..12 of the frame (the Ethernet source) were checked to be readable.
        mac = unsafe { ((data + 6) as *const [u8; 6]).read_unaligned() };
    }
    Input {
        mac,
        _pad: [0; 2],
        ifindex,
    }
}

/// Leaves the rule in `cb`, where `steer explain` reads it back from a test run; the stack
/// overwrites `cb` after TC, so no one else ever sees it.
#[inline(always)]
fn note_rule(ctx: &TcContext, rule: u32) {
    // SAFETY: `skb` is the context pointer of this program; `cb` is writable for tc programs.
    unsafe {
        (*ctx.skb.skb).cb[TC_CB_MAGIC] = XDP_META_MAGIC;
        (*ctx.skb.skb).cb[TC_CB_RULE] = rule;
    }
}

/// Applies the verdict XDP left, or the one TC found; a local destination stays unmarked.
#[inline(always)]
fn apply(ctx: &TcContext, rule: u32, family: u32, flags: u32, hash: impl FnOnce(bool) -> u32) {
    if rule == LOCAL_RULE {
        count(&STATS_PATH, path::LOCAL, ctx.len());
    } else {
        apply_policy(ctx, rule, family, flags, hash);
    }
}

/// Headers of a non-linear skb may sit outside the directly readable part; pull them in once.
/// Returns whether anything changed, so a really cut packet is not parsed twice.
#[inline(always)]
fn pull_headers(ctx: &TcContext) -> bool {
    let linear = (ctx.data_end() - ctx.data()) as u32;
    let len = ctx.len();
    if len <= linear || linear >= MAX_HEADERS {
        return false;
    }
    let want = if len < MAX_HEADERS { len } else { MAX_HEADERS };
    // SAFETY: the helper only needs the skb the kernel gave this program.
    unsafe { bpf_skb_pull_data(ctx.skb.skb, want) == 0 }
}

/// The verdict steer's XDP program left in the metadata of this packet, if any.
#[inline(always)]
fn xdp_verdict(ctx: &TcContext) -> Option<XdpMeta> {
    // SAFETY: `skb` is the context pointer of this program.
    let meta = unsafe { (*ctx.skb.skb).data_meta } as usize;
    let data = ctx.data();
    if meta + core::mem::size_of::<XdpMeta>() > data {
        return None;
    }
    // SAFETY: [meta, meta + size_of::<XdpMeta>()) was checked to lie before the packet data.
    let verdict = unsafe { (meta as *const XdpMeta).read_unaligned() };
    let known = verdict.rule < MAX_RULES || verdict.rule == LOCAL_RULE;
    (verdict.magic == XDP_META_MAGIC && known).then_some(verdict)
}

/// Resolves `rule` in the live generation and writes the mark under the mask. `hash` gives the
/// packet's source hash (`true`) or flow hash, asked only for a balanced rule.
#[inline(always)]
fn apply_policy(
    ctx: &TcContext,
    rule: u32,
    family: u32,
    flags: u32,
    hash: impl FnOnce(bool) -> u32,
) {
    if rule >= MAX_RULES {
        return;
    }
    let generation = ACTIVE.get(0).copied().unwrap_or(0);
    let Some(policy) = POLICY.get(policy_index(generation, family, rule)) else {
        return;
    };
    let len = ctx.len();
    count(&STATS_RULE, rule, len);
    let (mark, wan) = match policy.action {
        action::MARK => (policy.mark, policy.wan),
        action::BALANCE => {
            let hash = hash(policy.flags & policy_flags::HASH_SRC != 0);
            // The block belongs to this generation's entry: read in the same pass, so a flip
            // between the two reads cannot mix generations.
            match LB.get(lb_index(policy.lb, hash)) {
                Some(slot) => (slot.mark, slot.wan),
                None => return,
            }
        }
        _ => return,
    };
    let skb = ctx.skb.skb;
    // SAFETY: `skb` is the context pointer of this program; `mark` is writable for tc programs.
    let new_mark = unsafe {
        let have = (*skb).mark;
        let merged = if flags & settings_flags::KEEP_MARK != 0 && have & policy.mask != 0 {
            have
        } else {
            (have & !policy.mask) | (mark & policy.mask)
        };
        (*skb).mark = merged;
        merged
    };
    if wan != NO_WAN {
        count(&STATS_WAN, wan, len);
        count(&STATS_RULE_WAN, rule_wan_index(rule, wan), len);
    }
    if flags & settings_flags::LOG_PACKETS != 0 {
        info!(ctx, "steer: rule {} mark {:x} wan {}", rule, new_mark, wan);
    }
}

/// The policy-table half for a parsed packet's family.
#[inline(always)]
fn family_of(kind: Kind) -> u32 {
    if kind == Kind::V6 {
        FAMILY_V6
    } else {
        FAMILY_V4
    }
}

/// `Settings::flags`, read once per packet (an array access the verifier inlines).
#[inline(always)]
fn settings() -> u32 {
    SETTINGS.get(0).map_or(0, |s| s.flags)
}

/// XDP pre-classifier: the same lookups, the rule handed to TC in the packet metadata. Always
/// passes the packet on; when the metadata cannot be written TC simply classifies by itself.
#[xdp]
pub fn steer_xdp(ctx: XdpContext) -> u32 {
    let parsed = parse(ctx.data(), ctx.data_end());
    // SAFETY: `ctx.ctx` is the context pointer of this program.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    let input = input_of(ctx.data(), ctx.data_end(), ifindex);
    if let Some(rule) = rule_of(&parsed, &input, settings()) {
        let family = family_of(parsed.kind);
        let (hash, hash_kind) = match balanced_by(rule, family) {
            Some(kind) => (hash_of(&parsed, kind != 0), kind),
            None => (0, XDP_HASH_NONE),
        };
        write_meta(
            &ctx,
            XdpMeta {
                magic: XDP_META_MAGIC,
                rule,
                hash,
                hash_kind,
                family,
            },
        );
    }
    XDP_PASS
}

/// For a rule the live generation balances: what it hashes by (`policy_flags::HASH_SRC` or 0),
/// so XDP computes only the hash TC will need.
#[inline(always)]
fn balanced_by(rule: u32, family: u32) -> Option<u32> {
    if rule >= MAX_RULES {
        return None;
    }
    let generation = ACTIVE.get(0).copied().unwrap_or(0);
    let policy = POLICY.get(policy_index(generation, family, rule))?;
    (policy.action == action::BALANCE).then_some(policy.flags & policy_flags::HASH_SRC)
}

#[inline(always)]
fn write_meta(ctx: &XdpContext, verdict: XdpMeta) {
    const META_LEN: usize = core::mem::size_of::<XdpMeta>();
    // SAFETY: the helper only needs the xdp_md the kernel gave this program.
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(META_LEN as i32)) } != 0 {
        return;
    }
    let meta = ctx.metadata();
    if meta + META_LEN > ctx.data() {
        return;
    }
    // SAFETY: [meta, meta + META_LEN) was checked to lie before the packet data.
    unsafe {
        (meta as *mut XdpMeta).write_unaligned(verdict);
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach this: it exists only to satisfy no_std.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
