//! The TC and XDP classifiers, run in the kernel through BPF_PROG_TEST_RUN against real maps.
//! Every case checks the verdict too: the TC program must always return "continue".

use steer::{
    model::Family,
    packet::{Frame, TPID_8021AD, TPID_8021Q, Transport, non_ip_frame},
};
use steer_common::{
    DEFAULT_RULE, LB_SLOTS, LbSlot, NO_WAN, PolicyEntry, XDP_META_MAGIC, action, path,
};
use steer_tests::classifier::{Classifier, MASK, ip};

const CLIENT: &str = "192.168.1.10";
const CLIENT6: &str = "fd00::10";
const DEFAULT_MARK: u32 = 0x0100;

/// Rules 1..=3 on nested IPv4 prefixes, each with its own mark, and a default rule.
fn nested_v4() -> Classifier {
    let mut c = Classifier::load();
    c.mark_rule(DEFAULT_RULE, DEFAULT_MARK)
        .mark_rule(1, 0x1100)
        .mark_rule(2, 0x1200)
        .mark_rule(3, 0x1300)
        .dst("10.0.0.0/16", 1)
        .dst("10.0.1.0/24", 2)
        .dst("10.0.1.7/32", 3);
    c
}

#[test]
fn longest_prefix_wins_and_misses_take_the_default_rule() {
    let c = nested_v4();
    for (dst, want) in [
        ("10.0.1.7", 0x1300),     // /32 beats /24 and /16
        ("10.0.1.8", 0x1200),     // /24 beats /16
        ("10.0.2.1", 0x1100),     // only the /16
        ("10.0.255.255", 0x1100), // last address of the /16
        ("10.1.0.0", DEFAULT_MARK),
        ("8.8.8.8", DEFAULT_MARK),
    ] {
        assert_eq!(c.mark_of(CLIENT, dst), want, "dst {dst}");
    }
}

#[test]
fn deleting_the_longer_prefix_falls_back_to_the_shorter_one() {
    let mut c = nested_v4();
    assert_eq!(c.mark_of(CLIENT, "10.0.1.7"), 0x1300);
    c.remove_dst("10.0.1.7/32");
    assert_eq!(c.mark_of(CLIENT, "10.0.1.7"), 0x1200);
    c.remove_dst("10.0.1.0/24");
    assert_eq!(c.mark_of(CLIENT, "10.0.1.7"), 0x1100);
    c.remove_dst("10.0.0.0/16");
    assert_eq!(c.mark_of(CLIENT, "10.0.1.7"), DEFAULT_MARK);
}

#[test]
fn ipv6_host_net_and_default_route_prefixes() {
    let mut c = Classifier::load();
    c.mark_rule(1, 0x1100)
        .mark_rule(2, 0x1200)
        .mark_rule(3, 0x1300)
        .dst("::/0", 1)
        .dst("2001:db8:1::/64", 2)
        .dst("2001:db8:1::7/128", 3);
    for (dst, want) in [
        ("2001:db8:1::7", 0x1300),
        ("2001:db8:1::8", 0x1200),
        ("2001:db8:1:0:ffff:ffff:ffff:ffff", 0x1200),
        ("2001:db8:1:1::", 0x1100),
        ("2606:4700::1111", 0x1100),
    ] {
        assert_eq!(c.mark_of(CLIENT6, dst), want, "dst {dst}");
    }
    // An IPv4 packet never matches an IPv6 prefix, not even ::/0; no default policy is set.
    assert_eq!(c.mark_of(CLIENT, "10.0.0.1"), 0);
}

#[test]
fn source_rules_beat_destination_rules() {
    let mut c = nested_v4();
    c.mark_rule(9, 0x1900)
        .src("192.168.1.0/28", 9)
        .src("fd00::/64", 9)
        .mark_rule(8, 0x1800)
        .dst("2001:db8::/32", 8);
    assert_eq!(
        c.mark_of("192.168.1.10", "10.0.1.7"),
        0x1900,
        "source /28 beats destination /32"
    );
    assert_eq!(
        c.mark_of("192.168.1.20", "10.0.1.7"),
        0x1300,
        "other sources still use destinations"
    );
    assert_eq!(c.mark_of("192.168.1.20", "1.1.1.1"), DEFAULT_MARK);
    assert_eq!(c.mark_of("fd00::10", "2001:db8::1"), 0x1900);
    assert_eq!(c.mark_of("fd00:1::10", "2001:db8::1"), 0x1800);
}

#[test]
fn vlan_tagged_frames_single_and_double() {
    let c = nested_v4();
    let base = Frame::udp(ip(CLIENT), ip("10.0.1.7"));
    let cases = [
        ("802.1Q", base.clone().tagged(TPID_8021Q, 10)),
        ("802.1ad", base.clone().tagged(TPID_8021AD, 10)),
        (
            "QinQ 802.1ad+802.1Q",
            base.clone().tagged(TPID_8021AD, 100).tagged(TPID_8021Q, 10),
        ),
        (
            "double 802.1Q",
            base.clone().tagged(TPID_8021Q, 100).tagged(TPID_8021Q, 10),
        ),
    ];
    for (name, frame) in cases {
        assert_eq!(c.tc(&frame.build()).mark, 0x1300, "{name}");
    }
    let v6 = Frame::udp(ip(CLIENT6), ip("2001:db8::1"))
        .tagged(TPID_8021AD, 7)
        .tagged(TPID_8021Q, 8);
    let mut c6 = Classifier::load();
    c6.mark_rule(4, 0x1400).dst("2001:db8::/32", 4);
    assert_eq!(c6.tc(&v6.build()).mark, 0x1400, "QinQ IPv6");
    // A third tag is beyond what the classifier parses: fail-open, unmarked.
    let three = base
        .tagged(TPID_8021AD, 1)
        .tagged(TPID_8021Q, 2)
        .tagged(TPID_8021Q, 3);
    assert_eq!(c.tc(&three.build()).mark, 0, "three tags");
}

#[test]
fn non_ip_frames_pass_untouched() {
    let c = nested_v4();
    for (name, ethertype) in [
        ("ARP", 0x0806u16),
        ("LLDP", 0x88cc),
        ("MPLS", 0x8847),
        ("PPPoE discovery", 0x8863),
    ] {
        let out = c.tc_with_mark(&non_ip_frame(ethertype, 46), 0x00ab_0000);
        assert_eq!(out.mark, 0x00ab_0000, "{name}: mark untouched");
    }
    let before = c.dp.maps().path_counter(path::NOT_IP).unwrap().packets;
    assert_eq!(before, 4, "each non-IP frame counted once");
    assert_eq!(
        c.dp.maps().rule_counter(DEFAULT_RULE).unwrap().packets,
        0,
        "no rule counted"
    );
}

/// Byte offsets where a frame with `tags` VLAN tags gets cut: inside every tag, right after the
/// tags, and inside the IP header before, across and after its addresses.
fn cut_points(tags: usize, v4: bool) -> Vec<(String, usize)> {
    let mut cuts = Vec::new();
    for t in 0..tags {
        cuts.push((format!("inside VLAN tag {}", t + 1), 14 + 4 * t + 2));
    }
    let l3 = 14 + 4 * tags;
    cuts.push(("no IP header".into(), l3));
    let inside: &[usize] = if v4 {
        &[1, 11, 14, 18, 19]
    } else {
        &[1, 7, 20, 30, 39]
    };
    for n in inside {
        cuts.push((format!("{n} bytes into the IP header"), l3 + n));
    }
    cuts
}

#[test]
fn truncated_frames_pass_unmarked() {
    let mut c = nested_v4();
    c.mark_rule(4, 0x1400).dst("2001:db8::/32", 4);
    let frame = |v4: bool, tags: usize| {
        let mut f = if v4 {
            Frame::udp(ip(CLIENT), ip("10.0.1.7"))
        } else {
            Frame::udp(ip(CLIENT6), ip("2001:db8::1"))
        };
        for t in 0..tags {
            f = f.tagged(if t == 0 { TPID_8021AD } else { TPID_8021Q }, 10 + t as u16);
        }
        f.build()
    };
    // TC. The kernel's skb test run checks untagged IP headers itself and refuses short ones
    // (EINVAL) before the program runs, so TC gets its cut frames behind VLAN tags, where it
    // does not look.
    let mut tc_cases = 0;
    for v4 in [true, false] {
        for tags in [1, 2] {
            let whole = frame(v4, tags);
            assert_eq!(
                c.tc(&whole).mark,
                if v4 { 0x1300 } else { 0x1400 },
                "the whole frame is classified"
            );
            for (name, cut) in cut_points(tags, v4) {
                let out = c.tc_with_mark(&whole[..cut], 0x7);
                assert_eq!(
                    out.mark, 0x7,
                    "TC, v4={v4}, {tags} tag(s), {name}: mark untouched"
                );
                tc_cases += 1;
            }
        }
    }
    assert_eq!(
        c.dp.maps().path_counter(path::TRUNCATED).unwrap().packets,
        tc_cases
    );
    // XDP accepts any frame from an Ethernet header up: cut frames, tagged or not, leave no
    // verdict for TC.
    for v4 in [true, false] {
        for tags in [0, 1, 2] {
            let whole = frame(v4, tags);
            assert!(
                c.xdp(&whole).meta.is_some(),
                "XDP classifies the whole frame"
            );
            for (name, cut) in cut_points(tags, v4) {
                assert_eq!(
                    c.xdp(&whole[..cut]).meta,
                    None,
                    "XDP, v4={v4}, {tags} tag(s), {name}"
                );
            }
        }
    }
}

#[test]
fn frames_shorter_than_an_ethernet_header_never_reach_the_programs() {
    // Neither test run accepts less than ETH_HLEN bytes, and the stack drops such frames before
    // TC or XDP (dev_validate_header): there is no way to hand the classifier one. This pins
    // that fact down; if a kernel ever starts delivering them, this test says so.
    let c = nested_v4();
    let v4 = Frame::udp(ip(CLIENT), ip("10.0.1.7")).build();
    for cut in [0usize, 6, 12, 13] {
        let tc = steer::dataplane::run::run_tc(c.dp.tc(), &v4[..cut], 0x5);
        let xdp = steer::dataplane::run::run_xdp(c.dp.xdp(), &v4[..cut]);
        assert!(
            tc.is_err() && xdp.is_err(),
            "{cut} bytes: the kernel ran a program on it"
        );
    }
}

#[test]
fn foreign_mark_bits_survive() {
    let c = nested_v4();
    let frame = Frame::udp(ip(CLIENT), ip("10.0.1.7")).build();
    for foreign in [
        0u32,
        0x1,
        0xdead_00ff,
        0xffff_00ff,
        0x0000_ff00, /* steer's own bits */
    ] {
        let want = (foreign & !MASK) | 0x1300;
        assert_eq!(
            c.tc_with_mark(&frame, foreign).mark,
            want,
            "incoming mark {foreign:#x}"
        );
    }
    // A policy mark with bits outside the mask cannot leak them.
    let mut c = Classifier::load();
    c.dp.maps_mut()
        .set_policy(
            0,
            Family::V4,
            DEFAULT_RULE,
            PolicyEntry {
                action: action::MARK,
                mark: 0xffff_ffff,
                mask: MASK,
                wan: NO_WAN,
                ..PolicyEntry::default()
            },
        )
        .unwrap();
    assert_eq!(c.tc_with_mark(&frame, 0x1234_0000).mark, 0x1234_ff00);
}

#[test]
fn flipping_the_generation_switches_every_rule_at_once() {
    let mut c = Classifier::load();
    let rules = [
        (DEFAULT_RULE, "8.8.8.8"),
        (1, "10.1.0.1"),
        (2, "10.2.0.1"),
        (3, "10.3.0.1"),
    ];
    for (rule, dst) in rules {
        c.set_policy(0, rule, 0x0100).set_policy(1, rule, 0x0200);
        if rule != DEFAULT_RULE {
            c.dst(&format!("{dst}/32"), rule);
        }
    }
    let marks = |c: &Classifier| rules.map(|(_, dst)| c.mark_of(CLIENT, dst));
    assert_eq!(c.dp.maps().active_generation().unwrap(), 0);
    assert_eq!(marks(&c), [0x0100; 4]);
    c.dp.maps_mut().set_active_generation(1).unwrap();
    assert_eq!(marks(&c), [0x0200; 4]);
    // Writing the standby generation changes nothing until the flip.
    for (rule, _) in rules {
        c.set_policy(0, rule, 0x0300);
    }
    assert_eq!(marks(&c), [0x0200; 4]);
    c.dp.maps_mut().set_active_generation(0).unwrap();
    assert_eq!(marks(&c), [0x0300; 4]);
}

#[test]
fn counters_count_exactly() {
    let mut c = nested_v4();
    c.dp.maps_mut()
        .set_policy(
            0,
            Family::V4,
            3,
            PolicyEntry {
                action: action::MARK,
                mark: 0x1300,
                mask: MASK,
                wan: 2,
                ..PolicyEntry::default()
            },
        )
        .unwrap();
    let small = Frame::udp(ip(CLIENT), ip("10.0.1.7")).build();
    let tcp = Frame::udp(ip(CLIENT), ip("10.0.1.7"))
        .with_transport(Transport::Tcp {
            sport: 1,
            dport: 443,
        })
        .build();
    let other = Frame::udp(ip(CLIENT), ip("10.0.1.8")).build();
    for _ in 0..7 {
        c.tc(&small);
    }
    for _ in 0..5 {
        c.tc(&tcp);
    }
    for _ in 0..3 {
        c.tc(&other);
    }
    let rule3 = c.dp.maps().rule_counter(3).unwrap();
    assert_eq!(rule3.packets, 12);
    assert_eq!(rule3.bytes, 7 * small.len() as u64 + 5 * tcp.len() as u64);
    let rule2 = c.dp.maps().rule_counter(2).unwrap();
    assert_eq!((rule2.packets, rule2.bytes), (3, 3 * other.len() as u64));
    assert_eq!(c.dp.maps().rule_counter(1).unwrap().packets, 0);
    assert_eq!(
        c.dp.maps().wan_counter(2).unwrap().packets,
        12,
        "only rule 3 names WAN slot 2"
    );
    assert_eq!(
        c.dp.maps().path_counter(path::CLASSIFIED).unwrap().packets,
        15
    );
    c.dp.maps_mut().reset_counters().unwrap();
    assert_eq!(c.dp.maps().rule_counter(3).unwrap(), Default::default());
}

#[test]
fn xdp_metadata_gives_the_same_verdict_as_tc_alone() {
    let mut c = nested_v4();
    c.mark_rule(9, 0x1900)
        .src("192.168.1.0/28", 9)
        .mark_rule(4, 0x1400)
        .dst("2001:db8::/32", 4);
    let frames = [
        Frame::udp(ip(CLIENT), ip("10.0.1.7")),
        Frame::udp(ip(CLIENT), ip("10.0.1.8")),
        Frame::udp(ip(CLIENT), ip("10.0.9.9")),
        Frame::udp(ip(CLIENT), ip("1.1.1.1")),
        Frame::udp(ip("192.168.1.5"), ip("10.0.1.7")),
        Frame::udp(ip(CLIENT6), ip("2001:db8::1")),
        Frame::udp(ip(CLIENT6), ip("2001:db9::1")),
        Frame::udp(ip(CLIENT), ip("10.0.1.7"))
            .tagged(TPID_8021AD, 3)
            .tagged(TPID_8021Q, 4),
    ];
    for frame in frames {
        let bytes = frame.build();
        let meta = c
            .xdp(&bytes)
            .meta
            .unwrap_or_else(|| panic!("{frame:?}: XDP wrote no metadata"));
        assert_eq!(meta.magic, XDP_META_MAGIC);
        let family = if meta.family == steer_common::FAMILY_V6 {
            Family::V6
        } else {
            Family::V4
        };
        assert_eq!(
            family,
            Family::of(&frame.dst),
            "XDP names the packet's family"
        );
        let policy = c.dp.maps().policy(0, family, meta.rule).unwrap();
        assert_eq!(
            policy.mark,
            c.tc(&bytes).mark,
            "{frame:?}: XDP chose rule {}",
            meta.rule
        );
    }
    // Nothing to say about a non-IP frame: no metadata, TC classifies (and passes) by itself.
    assert_eq!(c.xdp(&non_ip_frame(0x0806, 46)).meta, None);
}

#[test]
fn balanced_rules_spread_flows_over_their_slots() {
    let mut c = Classifier::load();
    let mut slots = [LbSlot::default(); LB_SLOTS as usize];
    for (i, slot) in slots.iter_mut().enumerate() {
        *slot = if i % 4 == 0 {
            LbSlot {
                mark: 0x0200,
                wan: 1,
            }
        } else {
            LbSlot {
                mark: 0x0100,
                wan: 0,
            }
        };
    }
    c.dp.maps_mut().set_lb_block(0, &slots).unwrap();
    c.dp.maps_mut()
        .set_policy(
            0,
            Family::V4,
            DEFAULT_RULE,
            PolicyEntry {
                action: action::BALANCE,
                mark: 0,
                mask: MASK,
                wan: NO_WAN,
                ..PolicyEntry::default()
            },
        )
        .unwrap();
    let mut seen = std::collections::BTreeMap::<u32, u32>::new();
    for port in 0..400u16 {
        let frame = Frame::udp(ip(CLIENT), ip("93.184.216.34")).with_transport(Transport::Udp {
            sport: 20000 + port,
            dport: 443,
        });
        let bytes = frame.build();
        let mark = c.tc(&bytes).mark;
        assert_eq!(
            c.tc(&bytes).mark,
            mark,
            "one flow always takes the same slot"
        );
        *seen.entry(mark).or_default() += 1;
    }
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        vec![0x0100, 0x0200],
        "both WANs used"
    );
    let share = f64::from(seen[&0x0200]) / 400.0;
    assert!(
        (0.12..0.40).contains(&share),
        "WAN 2 has 1/4 of the slots and got {share:.2} of the flows"
    );
    assert_eq!(
        c.dp.maps().wan_counter(1).unwrap().packets,
        2 * u64::from(seen[&0x0200])
    );
}

#[test]
fn every_map_and_program_name_exists_in_the_object() {
    // Classifier::load opens every map and program by its steer-common name and fails on any
    // missing one; check the object itself too, so a renamed map cannot hide behind a loader.
    let _ = Classifier::load();
    let obj = aya::Ebpf::load(steer::objects::STEER).expect("object loads");
    let maps: Vec<&str> = obj.maps().map(|(n, _)| n).collect();
    for name in steer_common::map_names::ALL {
        assert!(
            maps.contains(&name),
            "map {name} missing from the object (has {maps:?})"
        );
    }
    for name in [
        steer_common::program_names::TC,
        steer_common::program_names::XDP,
    ] {
        assert!(obj.program(name).is_some(), "program {name} missing");
    }
}

#[test]
fn unset_rules_leave_packets_unmarked() {
    // Fail-open: a fresh object has no policy; nothing is marked, whatever matches.
    let mut c = Classifier::load();
    c.dst("10.0.0.0/8", 5);
    assert_eq!(c.mark_of(CLIENT, "10.1.2.3"), 0);
    assert_eq!(c.mark_of(CLIENT, "1.2.3.4"), 0);
}

#[test]
fn prefixes_on_both_sides_of_a_direct_entry_keep_longest_match() {
    // The range tables index their direct table by the first 16 bits: a prefix shorter than
    // that covers many direct entries, a longer one lives in the ranges (or IPv6 split
    // regions) behind one. Where the longer ones miss, the shorter one answers.
    let mut c = Classifier::load();
    c.mark_rule(1, 0x1100)
        .mark_rule(2, 0x1200)
        .mark_rule(3, 0x1300)
        .mark_rule(4, 0x1400);
    c.dst("10.0.0.0/7", 1) // short: 10.0.0.0 - 11.255.255.255
        .dst("10.0.0.0/8", 2)
        .dst("11.1.0.0/16", 3) // one direct entry
        .dst("2000::/15", 1) // two direct entries: 2000:: - 2001:ffff::
        .dst("2001::/16", 4) // one direct entry
        .dst("2001:db9::/32", 3); // ranges behind it
    for (dst, want) in [
        ("10.9.9.9", 0x1200),
        ("11.1.2.3", 0x1300),
        ("11.2.0.1", 0x1100), // 11.1/16 misses: the /7 answers
        ("12.0.0.1", 0),
    ] {
        assert_eq!(c.mark_of(CLIENT, dst), want, "dst {dst}");
    }
    for (dst, want) in [
        ("2001:db8::1", 0x1400),
        ("2001:db9::1", 0x1300),
        ("2000:1::1", 0x1100), // only the /15 covers 2000::/16
        ("2002::1", 0),
    ] {
        assert_eq!(c.mark_of(CLIENT6, dst), want, "dst {dst}");
    }
    let mut c = Classifier::load();
    c.mark_rule(1, 0x1100)
        .mark_rule(3, 0x1300)
        .dst("2000::/15", 1)
        .dst("2001:db9:5::/48", 3);
    assert_eq!(
        c.mark_of(CLIENT6, "2001:db9:6::1"),
        0x1100,
        "where the /48 misses, the /15 answers"
    );
    assert_eq!(c.mark_of(CLIENT6, "2001:db9:5::1"), 0x1300);
}

#[test]
fn source_lookups_run_only_when_the_settings_say_there_are_source_prefixes() {
    // The controller sets HAS_SRC_V4/V6 before the first source prefix lands and clears it
    // after the last one left; without the flag the classifier skips the source tries.
    let mut c = nested_v4();
    c.mark_rule(9, 0x1900);
    c.dp.maps_mut()
        .set_prefix(
            steer::model::Direction::Src,
            steer_tests::classifier::prefix_of("192.168.1.0/28"),
            9,
        )
        .unwrap();
    assert_eq!(
        c.mark_of("192.168.1.10", "10.0.1.7"),
        0x1300,
        "flag off: destination rules decide"
    );
    c.with_source_lookups(true);
    assert_eq!(
        c.mark_of("192.168.1.10", "10.0.1.7"),
        0x1900,
        "flag on: the source rule wins"
    );
    assert_eq!(
        c.mark_of("fd00::10", "2001:db8::1"),
        DEFAULT_MARK,
        "the IPv6 flag is separate"
    );
}

#[test]
fn local_destinations_are_never_steered() {
    let mut c = Classifier::load();
    c.mark_rule(DEFAULT_RULE, 0x0100)
        .mark_rule(1, 0x0200)
        .mark_rule(9, 0x0900)
        .dst("10.0.0.0/8", 1)
        .src("10.10.0.0/24", 9)
        .local("10.9.0.0/24")
        .local("10.8.0.0/16")
        .local("fd09::/64");
    // A second LAN and a routed subnet, inside a destination set and from a source set's host,
    // and IPv6: unmarked.
    for (src, dst) in [
        ("10.10.0.2", "10.9.0.10"),
        ("192.168.7.1", "10.8.200.1"),
        ("fd10::2", "fd09::7"),
    ] {
        assert_eq!(c.mark_of(src, dst), 0, "{src} -> {dst} is local");
    }
    // Next to them, the sets and the default rule apply as before.
    assert_eq!(c.mark_of("10.10.0.2", "10.7.0.1"), 0x0900, "source set");
    assert_eq!(
        c.mark_of("192.168.7.1", "10.7.0.1"),
        0x0200,
        "destination set"
    );
    assert_eq!(c.mark_of("192.168.7.1", "192.0.2.1"), 0x0100, "default");
    assert_eq!(c.dp.maps().path_counter(path::LOCAL).unwrap().packets, 3);
    // XDP says "local" in its metadata (TC then leaves the packet alone).
    let frame = Frame::udp(ip("10.10.0.2"), ip("10.9.0.10")).build();
    let meta = c.xdp(&frame).meta.expect("XDP wrote its verdict");
    assert_eq!(meta.rule, steer_common::LOCAL_RULE);
}

#[test]
fn a_flow_keeps_its_slot_when_the_ipv6_flow_label_changes() {
    let mut c = Classifier::load();
    c.balance_rule(DEFAULT_RULE, &[0x0100, 0x0200], false);
    let mut moved = 0;
    for sport in 0..200u16 {
        let base = Frame::udp(ip("fd10::2"), ip("2001:db8::80")).with_transport(Transport::Udp {
            sport: 30000 + sport,
            dport: 443,
        });
        let first = c.tc(&base.clone().with_flow_label(1).build()).mark;
        for label in [0x12345, 0xfffff, 7] {
            if c.tc(&base.clone().with_flow_label(label).build()).mark != first {
                moved += 1;
            }
        }
    }
    assert_eq!(moved, 0, "flows that changed WAN with their flow label");
}

#[test]
fn every_fragment_of_a_datagram_leaves_with_its_flow() {
    use steer::packet::Fragment;
    let mut c = Classifier::load();
    c.balance_rule(DEFAULT_RULE, &[0x0100, 0x0200], false);
    let mut marks_seen = std::collections::BTreeSet::new();
    for (i, (src, dst)) in [("10.10.0.2", "198.51.100.9"), ("fd10::2", "2001:db8::9")]
        .iter()
        .cycle()
        .take(200)
        .enumerate()
    {
        let flow = Frame::udp(ip(src), ip(dst)).with_transport(Transport::Udp {
            sport: 20000 + i as u16,
            dport: 4500,
        });
        let whole = c.tc(&flow.build()).mark;
        let id = 1000 + i as u32;
        let first = flow.clone().fragment(Fragment {
            id,
            offset: 0,
            more: true,
        });
        let later = flow.clone().fragment(Fragment {
            id,
            offset: 185,
            more: false,
        });
        assert_eq!(
            c.tc(&first.build()).mark,
            whole,
            "first fragment of flow {i}"
        );
        assert_eq!(
            c.tc(&later.build()).mark,
            whole,
            "later fragment of flow {i}"
        );
        marks_seen.insert(whole);
    }
    assert_eq!(marks_seen.len(), 2, "the flows used both WANs");
}

#[test]
fn two_thousand_flows_split_one_to_one_within_three_sigma() {
    let mut c = Classifier::load();
    c.balance_rule(DEFAULT_RULE, &[0x0100, 0x0200], false);
    let mut rng = steer_tests::rng::Rng::new(0x5eed_2000);
    let mut on_first = 0;
    for _ in 0..2000 {
        let src = std::net::Ipv4Addr::from(rng.bytes::<4>());
        let dst = std::net::Ipv4Addr::from(rng.bytes::<4>());
        let sport = u16::from_be_bytes(rng.bytes::<2>());
        let frame = Frame::udp(src.into(), dst.into())
            .with_transport(Transport::Tcp { sport, dport: 443 })
            .build();
        if c.tc(&frame).mark == 0x0100 {
            on_first += 1;
        }
    }
    // Binomial(2000, 1/2): sigma = sqrt(500) = 22.4.
    assert!(
        (1000 - 67..=1000 + 67).contains(&on_first),
        "{on_first} of 2000 on the first WAN"
    );
}

#[test]
fn a_source_hashed_policy_keeps_each_host_on_one_wan() {
    let mut c = Classifier::load();
    c.balance_rule(DEFAULT_RULE, &[0x0100, 0x0200], true);
    let mut per_host = std::collections::BTreeMap::<u8, std::collections::BTreeSet<u32>>::new();
    for host in 1..=40u8 {
        for sport in 0..20u16 {
            let frame = Frame::udp(ip(&format!("10.10.0.{host}")), ip("198.51.100.9"))
                .with_transport(Transport::Udp {
                    sport: 1024 + sport,
                    dport: 443,
                })
                .build();
            per_host.entry(host).or_default().insert(c.tc(&frame).mark);
        }
    }
    assert!(per_host.values().all(|m| m.len() == 1), "{per_host:?}");
    let wans: std::collections::BTreeSet<u32> = per_host.values().flatten().copied().collect();
    assert_eq!(wans.len(), 2, "the hosts are spread over both WANs");
}

#[test]
fn the_kernel_hashes_as_userspace_does_and_xdp_hands_the_hash_to_tc() {
    use steer_common::{flow_hash, src_hash, words_v4, words_v6};
    for by_source in [false, true] {
        let mut c = Classifier::load();
        let marks = [0x0100, 0x0200, 0x0300];
        c.balance_rule(DEFAULT_RULE, &marks, by_source);
        for i in 0..100u16 {
            let (src, dst) = if i % 2 == 0 {
                (
                    ip(&format!("10.10.{}.{}", i % 7, i % 250)),
                    ip("198.51.100.9"),
                )
            } else {
                (ip(&format!("fd10::{i:x}")), ip("2001:db8::9"))
            };
            let (sport, dport) = (30000 + i, 443 + i % 3);
            let frame = Frame::udp(src, dst)
                .with_transport(Transport::Tcp { sport, dport })
                .build();
            let words = |a: std::net::IpAddr| match a {
                std::net::IpAddr::V4(a) => words_v4(&a.octets()),
                std::net::IpAddr::V6(a) => words_v6(&a.octets()),
            };
            let want = if by_source {
                src_hash(&words(src))
            } else {
                flow_hash(&words(src), &words(dst), 6, sport, dport)
            };
            let slot = (want & (LB_SLOTS - 1)) as usize;
            assert_eq!(c.tc(&frame).mark, marks[slot % marks.len()], "flow {i}");
            let meta = c.xdp(&frame).meta.expect("XDP wrote its verdict");
            assert_eq!(meta.hash, want, "flow {i}: the hash XDP hands to TC");
            let kind = if by_source {
                steer_common::policy_flags::HASH_SRC
            } else {
                0
            };
            assert_eq!(meta.hash_kind, kind);
        }
    }
    // A rule that is not balanced gets no hash from XDP.
    let c = nested_v4();
    let meta = c
        .xdp(&Frame::udp(ip(CLIENT), ip("10.0.1.7")).build())
        .meta
        .unwrap();
    assert_eq!(meta.hash_kind, steer_common::XDP_HASH_NONE);
}

/// A port rule on a router that does not reassemble (no connection tracking in its namespace):
/// only the first fragment of a datagram has the ports, yet every fragment must get its rule,
/// its mark and its counters.
mod fragments_of_a_port_rule {
    use steer::{
        model::{Conditions, Direction, OrderedRule, PortRange, Proto},
        packet::Fragment,
    };
    use steer_common::GENERATIONS;

    use super::*;

    const PORT_RULE: u32 = 1;
    const BALANCED_RULE: u32 = 2;
    const PORT: u16 = 5001;
    const BALANCED_PORT: u16 = 5002;
    /// WAN slots: the default policy's and the port rule's.
    const WAN1: u32 = 0;
    const WAN2: u32 = 1;
    const PORT_MARK: u32 = 0x0200;
    /// A datagram of 3000 bytes at an MTU of 1500: three fragments.
    const OFFSETS: [u16; 3] = [0, 185, 370];

    fn mark_to(c: &mut Classifier, generation: u32, rule: u32, mark: u32, wan: u32) {
        let entry = PolicyEntry {
            action: action::MARK,
            mark,
            mask: MASK,
            wan,
            ..PolicyEntry::default()
        };
        for family in Family::ALL {
            c.dp.maps_mut()
                .set_policy(generation, family, rule, entry)
                .unwrap();
        }
    }

    fn udp_to(port: u16, rule: u32) -> OrderedRule {
        OrderedRule {
            rule,
            direction: Direction::Dst,
            prefixes: None,
            conditions: Conditions {
                protos: vec![Proto::UDP],
                dports: vec![PortRange {
                    first: port,
                    last: port,
                }],
                ..Conditions::default()
            },
        }
    }

    /// Default policy by wan1, udp 5001 by wan2, udp 5002 balanced over two marks.
    fn loaded() -> Classifier {
        let mut c = Classifier::load();
        for generation in 0..GENERATIONS {
            mark_to(&mut c, generation, DEFAULT_RULE, DEFAULT_MARK, WAN1);
            mark_to(&mut c, generation, PORT_RULE, PORT_MARK, WAN2);
        }
        c.balance_rule(BALANCED_RULE, &[0x0300, 0x0400], false);
        c.ordered(&[
            udp_to(PORT, PORT_RULE),
            udp_to(BALANCED_PORT, BALANCED_RULE),
        ]);
        c
    }

    fn fragments(src: &str, dst: &str, sport: u16, dport: u16, id: u32) -> Vec<Vec<u8>> {
        let flow = Frame::udp(ip(src), ip(dst)).with_transport(Transport::Udp { sport, dport });
        OFFSETS
            .iter()
            .map(|&offset| {
                flow.clone()
                    .fragment(Fragment {
                        id,
                        offset,
                        more: offset != OFFSETS[OFFSETS.len() - 1],
                    })
                    .build()
            })
            .collect()
    }

    const FLOWS: [(&str, &str); 2] = [
        ("10.10.0.2", "198.51.100.10"),
        ("fd10::2", "2001:db8:ee::10"),
    ];

    #[test]
    fn every_fragment_takes_the_rule_and_the_counters_of_the_first() {
        let c = loaded();
        let datagrams = 10u32;
        for (src, dst) in FLOWS {
            for d in 0..datagrams {
                for (i, frame) in fragments(src, dst, 47486, PORT, 100 + d).iter().enumerate() {
                    let out = c.tc(frame);
                    assert_eq!(
                        (out.rule, out.mark),
                        (Some(PORT_RULE), PORT_MARK),
                        "{src} -> {dst}: fragment {i} of datagram {d}"
                    );
                }
            }
        }
        let fragments = u64::from(datagrams) * OFFSETS.len() as u64 * FLOWS.len() as u64;
        let maps = c.dp.maps();
        assert_eq!(maps.rule_counter(PORT_RULE).unwrap().packets, fragments);
        assert_eq!(maps.rule_counter(DEFAULT_RULE).unwrap().packets, 0);
        assert_eq!(maps.wan_counter(WAN2).unwrap().packets, fragments);
        assert_eq!(maps.wan_counter(WAN1).unwrap().packets, 0);
        assert_eq!(
            maps.rule_wan_counter(PORT_RULE, WAN2).unwrap().packets,
            fragments
        );
        assert_eq!(
            maps.rule_wan_counter(DEFAULT_RULE, WAN1).unwrap().packets,
            0
        );
    }

    #[test]
    fn a_balanced_port_rule_keeps_a_datagram_on_one_slot() {
        let c = loaded();
        let mut marks_seen = std::collections::BTreeSet::new();
        for (n, (src, dst)) in FLOWS.iter().cycle().take(100).enumerate() {
            let frames = fragments(src, dst, 20000 + n as u16, BALANCED_PORT, 1000 + n as u32);
            let marks: Vec<_> = frames.iter().map(|f| c.tc(f)).collect();
            assert!(
                marks
                    .iter()
                    .all(|o| o.rule == Some(BALANCED_RULE) && o.mark == marks[0].mark),
                "{src} -> {dst}, datagram {n}: {marks:?}"
            );
            marks_seen.insert(marks[0].mark);
        }
        assert_eq!(marks_seen.len(), 2, "the datagrams used both slots");
    }

    /// The rule is remembered, not the mark: a failover between the fragments of a datagram
    /// moves the rest of it with the rule.
    #[test]
    fn later_fragments_follow_a_generation_flip() {
        let mut c = loaded();
        for (n, (src, dst)) in FLOWS.into_iter().enumerate() {
            let frames = fragments(src, dst, 47486, PORT, 7 + n as u32);
            assert_eq!(c.tc(&frames[0]).mark, PORT_MARK);
            let live = c.dp.maps().active_generation().unwrap();
            let standby = (live + 1) % GENERATIONS;
            mark_to(&mut c, standby, PORT_RULE, 0x0500, WAN1);
            c.dp.maps_mut().set_active_generation(standby).unwrap();
            for frame in &frames[1..] {
                let out = c.tc(frame);
                assert_eq!((out.rule, out.mark), (Some(PORT_RULE), 0x0500), "{src}");
            }
            mark_to(&mut c, live, PORT_RULE, PORT_MARK, WAN2);
            c.dp.maps_mut().set_active_generation(live).unwrap();
        }
    }

    #[test]
    fn xdp_hands_tc_the_first_fragments_rule() {
        let c = loaded();
        for (n, (src, dst)) in FLOWS.into_iter().enumerate() {
            for (i, frame) in fragments(src, dst, 47486, PORT, 300 + n as u32)
                .iter()
                .enumerate()
            {
                let meta = c.xdp(frame).meta.expect("XDP wrote its verdict");
                assert_eq!(meta.rule, PORT_RULE, "{src} -> {dst}: fragment {i}");
            }
        }
    }

    /// A later fragment that comes before its first one (or after its entry was evicted) has
    /// nothing to go by but its addresses: it is classified without ports, as it always was.
    #[test]
    fn a_later_fragment_before_its_first_is_classified_without_ports() {
        let c = loaded();
        for (n, (src, dst)) in FLOWS.into_iter().enumerate() {
            let frames = fragments(src, dst, 47486, PORT, 500 + n as u32);
            let out = c.tc(&frames[2]);
            assert_eq!((out.rule, out.mark), (Some(DEFAULT_RULE), DEFAULT_MARK));
            assert_eq!(c.tc(&frames[0]).mark, PORT_MARK);
            assert_eq!(c.tc(&frames[1]).mark, PORT_MARK);
        }
    }
}
