//! `[general]`.

use super::*;

const CASES: &[Case] = &[
    // The mask is what is wrong, not the marks: one error, on it, with a mask that fits.
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\nmark_mask = 0x100",
        "0x100",
        "general.mark_mask",
        "leaves no room for any WAN mark; 2 WAN(s) need a mask of at least 3 bits",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\nmark_mask = 0x100",
        "0x100",
        "general.mark_mask",
        "e.g. mark_mask = 0x700",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\nmark_mask = 0x300",
        "0x300",
        "general.mark_mask",
        "leaves room for 1 WAN mark(s); 2 WAN(s) need a mask of at least 3 bits",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\", \"t7c*\"]",
        "\"t7c*\"",
        "general.lan[1]",
        "not patterns",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\", \"t7\\\"}x\"]",
        "\"t7",
        "general.lan[1]",
        "nftables cannot take it",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\nlocal = \"everything\"",
        "\"everything\"",
        "general.local",
        "use one of `routes`, `connected`, `off`",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\nlocal_prefixes = [\"172.16.0.1/12\"]",
        "\"172.16.0.1/12\"",
        "general.local_prefixes[0]",
        "172.16.0.0/12",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\nlocal_prefixes = [\"0.0.0.0/0\"]",
        "\"0.0.0.0/0\"",
        "general.local_prefixes[0]",
        "general.local_prefixes takes no /0",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = []",
        "[]",
        "general.lan",
        "no LAN interface",
    ),
    case(
        "\"br-lan\"",
        "\"br-lan-with-a-long-name\"",
        "\"br-lan-",
        "general.lan[0]",
        "at most 15 bytes",
    ),
    case(
        "\"br-lan\"",
        "\"br lan\"",
        "\"br lan\"",
        "general.lan[0]",
        "interface name contains ' '",
    ),
    case(
        "\"br-lan\"",
        "\"br-lan\", \"br-lan\"",
        "\"br-lan\"]",
        "general.lan[1]",
        "listed twice",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\nmark_mask = 0",
        "mark_mask = |0",
        "general.mark_mask",
        "would own no bits",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\nmark_mask = 0x1ffffffff",
        "0x1ff",
        "general.mark_mask",
        "32-bit",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\nduplicates = \"first_set_wins\"",
        "\"first_set_wins\"",
        "general.duplicates",
        "did you mean `first-set-wins`?",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\npin_dir = \"bpf/steer\"",
        "\"bpf/steer\"",
        "general.pin_dir",
        "absolute path",
    ),
    case(
        "",
        "[general.capacity]\nsrc_v6 = 0\n",
        "src_v6 = |0",
        "general.capacity.src_v6",
        "from 1 to 16777216",
    ),
    case(
        "",
        "[general.capacity]\ndst_v4 = 16777217\n",
        "16777217",
        "general.capacity.dst_v4",
        "from 1 to 16777216",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\nmax_memory = \"96X\"",
        "\"96X\"",
        "general.max_memory",
        "unknown unit `X`",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\nmax_memory = \"0\"",
        "\"0\"",
        "general.max_memory",
        "no room for any set",
    ),
    // The smallest IPv4 set is a table of three blocks and a record of one: 1 MiB, and as
    // much again while a reload builds it afresh.
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\nmax_memory = \"1M\"",
        "\"1M\"",
        "general.max_memory",
        "the sets need 2.0 MiB of kernel memory at the peak of a reload, more than the 1.0 MiB \
         max_memory allows (IPv4 destination: 1 prefix, 1.0 MiB, and 1.0 MiB for a fresh table \
         and record",
    ),
];

#[test]
fn each_class_of_error_has_its_own_located_message() {
    check_cases(CASES);
}
