//! `[[wan]]`.

use super::*;

const CASES: &[Case] = &[
    // Names nftables would read as syntax (`"`) or a wildcard (a trailing `*`): refused in
    // check, not half-applied at a reload.
    case(
        "interface = \"eth2\"",
        "interface = \"t7\\\"}x\"",
        "\"t7",
        "wan[wan2].interface",
        "interface name contains '\"'",
    ),
    case(
        "interface = \"eth2\"",
        "interface = \"t7c*\"",
        "\"t7c*\"",
        "wan[wan2].interface",
        "not patterns",
    ),
    // Named like wan1's interface (the policy's `wan2` is then unknown too).
    Case {
        from: "name = \"wan2\"",
        to: "name = \"eth1\"",
        at: "\"eth1\"\ninterface = \"eth2\"",
        field: "wan[eth1].name",
        says: "is the interface of WAN `wan1`",
        count: 2,
    },
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\", \"eth2\"]",
        "\"eth2\"\nmark",
        "wan[wan2].interface",
        "also listed in general.lan",
    ),
    case(
        "interface = \"eth2\"",
        "interface = \"eth1\"",
        "\"eth1\"\nmark = 0x200",
        "wan[wan2].interface",
        "already the interface of WAN `wan1` (line 6)",
    ),
    case(
        "mark = 0x200",
        "mark = 0xff00",
        "0xff00",
        "wan[wan2].mark",
        "reserved for the `unreachable` last resort",
    ),
    case(
        "mark = 0x100",
        "mark = 0",
        "0\ntable = 101",
        "wan[wan1].mark",
        "means \"no WAN\"",
    ),
    case(
        "mark = 0x100",
        "mark = 0x10000",
        "0x10000",
        "wan[wan1].mark",
        "outside general.mark_mask (0xff00)",
    ),
    case(
        "mark = 0x100",
        "mark = 0x10000",
        "0x10000",
        "wan[wan1].mark",
        "such as 0x100 or 0x200",
    ),
    case(
        "mark = 0x200",
        "mark = 0x100",
        "0x100\ntable = 102",
        "wan[wan2].mark",
        "already used by WAN `wan1` (line 7)",
    ),
    case(
        "table = 101",
        "table = 254",
        "254",
        "wan[wan1].table",
        "reserved `main` table",
    ),
    case(
        "table = 101",
        "table = 253",
        "253",
        "wan[wan1].table",
        "reserved `default` table",
    ),
    case(
        "table = 101",
        "table = 255",
        "255",
        "wan[wan1].table",
        "reserved `local` table",
    ),
    case(
        "table = 101",
        "table = 0",
        "table = |0",
        "wan[wan1].table",
        "reserved `unspec` table",
    ),
    case(
        "table = 101",
        "table = 2147483648",
        "2147483648",
        "wan[wan1].table",
        "1 to 2147483647",
    ),
    case(
        "table = 102",
        "table = 101",
        "101\n[wan.track]\ntargets = [\"9",
        "wan[wan2].table",
        "already used by WAN `wan1` (line 8)",
    ),
    case(
        "interface = \"eth1\"",
        "interface = \"\"",
        "\"\"",
        "wan[wan1].interface",
        "empty",
    ),
    case(
        "table = 101",
        "table = 101\ngateway = \"fe80::1\"",
        "\"fe80::1\"",
        "wan[wan1].gateway",
        "put an IPv6 gateway in `gateway6`",
    ),
    case(
        "table = 101",
        "table = 101\ngateway = \"192.168.002.1\"",
        "\"192.168.002.1\"",
        "wan[wan1].gateway",
        "leading zero",
    ),
    case(
        "table = 101",
        "table = 101\ngateway6 = \"fe80::1%eth1\"",
        "\"fe80::1%eth1\"",
        "wan[wan1].gateway6",
        "zone id",
    ),
    case(
        "table = 101",
        "table = 101\ngateway = \"0.0.0.0\"",
        "\"0.0.0.0\"",
        "wan[wan1].gateway",
        "cannot be a gateway",
    ),
    case(
        "table = 101",
        "table = 101\ngateway = \"127.0.0.1\"",
        "\"127.0.0.1\"",
        "wan[wan1].gateway",
        "cannot be a gateway",
    ),
    case(
        "table = 101",
        "table = 101\ngateway = \"dhcp\"",
        "\"dhcp\"",
        "wan[wan1].gateway",
        "write \"auto\": the words are",
    ),
    case(
        "table = 101",
        "table = 101\ngateway = \"Auto\"",
        "\"Auto\"",
        "wan[wan1].gateway",
        "`Auto` is neither an address nor a known word",
    ),
    case(
        "table = 101",
        "table = 101\ngateway6 = \"fe80::1%eth1\"",
        "\"fe80::1%eth1\"",
        "wan[wan1].gateway6",
        "write `fe80::1`: the WAN's route names its interface already",
    ),
    Case {
        count: 2, // the policy's reference to wan1 breaks too
        ..case(
            "name = \"wan1\"",
            "name = \"wan 1\"",
            "\"wan 1\"",
            "wan[0].name",
            "invalid WAN name: the name contains ' '",
        )
    },
    Case {
        count: 2, // and wan1 is then twice in the policy
        ..case(
            "name = \"wan2\"",
            "name = \"wan1\"",
            "\"wan1\"\ninterface = \"eth2\"",
            "wan[wan1].name",
            "already used by the WAN at line 5",
        )
    },
];

#[test]
fn each_class_of_error_has_its_own_located_message() {
    check_cases(CASES);
}
