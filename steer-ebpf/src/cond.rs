//! The ordered rules (sets with conditions): one lookup per dimension some rule constrains,
//! the AND of their rule bits, the earliest rule left. See `steer_common::cond`.

use aya_ebpf::maps::{LpmTrie, lpm_trie::Key};
use steer_common::{CondBank, CondIfKey, CondMacKey, FAMILY_V4, FAMILY_V6, cond};

use crate::{
    maps::{
        COND_ACTIVE, COND_BANK, COND_DST_V4, COND_DST_V6, COND_IN, COND_MAC, COND_PORT_BITS,
        COND_PORT_CLASS, COND_PROTO, COND_SRC_V4, COND_SRC_V6,
    },
    parse::{FragKind, Kind, Parsed},
};

/// No ordered rule matched.
pub const NO_MATCH: u32 = u32::MAX;

/// What a packet carries besides its headers: where it came in and from which MAC.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Input {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    pub ifindex: u32,
}

/// The first ordered rule the packet meets, or [`NO_MATCH`].
#[inline(always)]
pub fn ordered_rule(parsed: &Parsed, input: &Input) -> u32 {
    match parsed.kind {
        Kind::V4 => ordered_v4(parsed, input),
        Kind::V6 => ordered_v6(parsed, input),
        Kind::NotIp | Kind::Truncated => NO_MATCH,
    }
}

// One function per family (a BPF-to-BPF call): the trie keys live in its frame.

#[inline(never)]
fn ordered_v4(parsed: &Parsed, input: &Input) -> u32 {
    let (bank_no, bank) = match live_bank() {
        Some(b) => b,
        None => return NO_MATCH,
    };
    let mut bits = common_bits(bank_no, bank, FAMILY_V4, parsed, input);
    let b = bank_no as u8;
    let key = |a: &[u8; 16]| Key::new(40, [b, a[0], a[1], a[2], a[3]]);
    bits = addr_bits(
        bits,
        bank,
        FAMILY_V4,
        cond::SRC,
        &COND_SRC_V4,
        &key(&parsed.src),
    );
    bits = addr_bits(
        bits,
        bank,
        FAMILY_V4,
        cond::DST,
        &COND_DST_V4,
        &key(&parsed.dst),
    );
    winner(bank, bits)
}

#[inline(never)]
fn ordered_v6(parsed: &Parsed, input: &Input) -> u32 {
    let (bank_no, bank) = match live_bank() {
        Some(b) => b,
        None => return NO_MATCH,
    };
    let mut bits = common_bits(bank_no, bank, FAMILY_V6, parsed, input);
    let key = |a: &[u8; 16]| {
        let mut k = [0u8; 17];
        k[0] = bank_no as u8;
        let mut i = 0;
        while i < 16 {
            k[i + 1] = a[i];
            i += 1;
        }
        Key::new(136, k)
    };
    bits = addr_bits(
        bits,
        bank,
        FAMILY_V6,
        cond::SRC,
        &COND_SRC_V6,
        &key(&parsed.src),
    );
    bits = addr_bits(
        bits,
        bank,
        FAMILY_V6,
        cond::DST,
        &COND_DST_V6,
        &key(&parsed.dst),
    );
    winner(bank, bits)
}

#[inline(always)]
fn live_bank() -> Option<(u32, &'static CondBank)> {
    let bank_no = COND_ACTIVE.get(0).copied().unwrap_or(0) & 1;
    COND_BANK.get(bank_no).map(|bank| (bank_no, bank))
}

/// The rules of the family that the protocol, ports, MAC and input interface allow.
#[inline(always)]
fn common_bits(bank_no: u32, bank: &CondBank, family: u32, parsed: &Parsed, input: &Input) -> u64 {
    let mut bits = bank.used[(family & 1) as usize];
    let dims = bank.dims;
    let l4 = &parsed.l4;
    if bits != 0 && dims & cond::dims::PROTO != 0 {
        let hit = COND_PROTO.get(cond::proto_index(bank_no, family, l4.proto));
        bits &= bank.any[cond::any::PROTO] | hit.copied().unwrap_or(0);
    }
    // A later fragment has no ports, and neither has a protocol without them: no port rule.
    // (A later fragment comes here only when its first fragment recorded no rule for it,
    // `crate::classify::rule_of`: it overtook it, or the record was evicted.)
    let ports = l4.frag != FragKind::Later && (l4.sport != 0 || l4.dport != 0);
    if bits != 0 && dims & cond::dims::SPORT != 0 {
        let hit = if ports {
            port_bits(bank_no, cond::SRC, l4.sport)
        } else {
            0
        };
        bits &= bank.any[cond::any::SPORT] | hit;
    }
    if bits != 0 && dims & cond::dims::DPORT != 0 {
        let hit = if ports {
            port_bits(bank_no, cond::DST, l4.dport)
        } else {
            0
        };
        bits &= bank.any[cond::any::DPORT] | hit;
    }
    if bits != 0 && dims & cond::dims::MAC != 0 {
        let key = CondMacKey {
            bank: bank_no as u8,
            _pad: 0,
            mac: input.mac,
        };
        // SAFETY: the value is a plain u64 copied out at once.
        let hit = unsafe { COND_MAC.get(key) }.copied().unwrap_or(0);
        bits &= bank.any[cond::any::MAC] | hit;
    }
    if bits != 0 && dims & cond::dims::IN != 0 {
        let key = CondIfKey {
            bank: bank_no,
            ifindex: input.ifindex,
        };
        // SAFETY: as above.
        let hit = unsafe { COND_IN.get(key) }.copied().unwrap_or(0);
        bits &= bank.any[cond::any::IN] | hit;
    }
    bits
}

#[inline(always)]
fn port_bits(bank_no: u32, direction: u32, port: u16) -> u64 {
    let Some(classes) = COND_PORT_CLASS.get(cond::port_class_index(bank_no, direction, port))
    else {
        return 0;
    };
    let class = classes.class[(port as u32 % cond::PORTS_PER_VALUE) as usize];
    COND_PORT_BITS
        .get(cond::port_bits_index(bank_no, direction, class))
        .copied()
        .unwrap_or(0)
}

/// `bits` narrowed by one address dimension: the rules that do not constrain it, and those
/// whose prefixes contain the address (the longest match holds them all).
#[inline(always)]
fn addr_bits<K>(
    bits: u64,
    bank: &CondBank,
    family: u32,
    direction: u32,
    trie: &LpmTrie<K, u64>,
    key: &Key<K>,
) -> u64 {
    let dim = if direction == cond::SRC {
        cond::dims::SRC
    } else {
        cond::dims::DST
    };
    if bits == 0 || bank.dims & dim == 0 {
        return bits;
    }
    let any = if direction == cond::SRC {
        cond::any::SRC_V4
    } else {
        cond::any::DST_V4
    };
    let hit = trie.get(key).copied().unwrap_or(0);
    bits & (bank.any[any + (family & 1) as usize] | hit)
}

/// The rule of the lowest bit left, or [`NO_MATCH`].
#[inline(always)]
fn winner(bank: &CondBank, bits: u64) -> u32 {
    if bits == 0 {
        return NO_MATCH;
    }
    u32::from(bank.rule[(lowest_bit(bits) & (cond::MAX_RULES - 1)) as usize])
}

/// Index of the lowest set bit of a non-zero word, without a loop or a table.
#[inline(always)]
fn lowest_bit(bits: u64) -> u32 {
    let low = bits & bits.wrapping_neg();
    let mut n = 0;
    if low & 0x0000_0000_FFFF_FFFF == 0 {
        n += 32;
    }
    if low & 0x0000_FFFF_0000_FFFF == 0 {
        n += 16;
    }
    if low & 0x00FF_00FF_00FF_00FF == 0 {
        n += 8;
    }
    if low & 0x0F0F_0F0F_0F0F_0F0F == 0 {
        n += 4;
    }
    if low & 0x3333_3333_3333_3333 == 0 {
        n += 2;
    }
    if low & 0x5555_5555_5555_5555 == 0 {
        n += 1;
    }
    n
}
