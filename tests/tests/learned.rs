//! Hosts learned from DNS answers in the classifier (BPF_PROG_TEST_RUN against real maps): the
//! lookup order is local destinations, source sets, learned hosts, destination prefixes, the
//! default rule — in TC and in XDP alike.

use steer::{dataplane::learned::entry, model::Family, packet::Frame};
use steer_common::DEFAULT_RULE;
use steer_tests::classifier::{Classifier, ip};

#[test]
fn learned_hosts_come_after_source_sets_and_before_destination_prefixes() {
    let mut c = Classifier::load();
    c.mark_rule(DEFAULT_RULE, 0x0100)
        .mark_rule(1, 0x0200)
        .mark_rule(2, 0x0300)
        .mark_rule(9, 0x0900)
        .dst("198.51.100.0/24", 1)
        .dst("198.51.100.7/32", 1)
        .dst("2001:db8::/32", 1)
        .src("10.10.0.0/28", 9)
        .local("192.0.2.0/24");
    let mut learned = c.dp.take_learned().expect("the learned-host maps");
    for addr in ["198.51.100.7", "2001:db8::7", "192.0.2.9", "203.0.113.1"] {
        learned
            .insert(ip(addr), &entry(2, Some(1), 0, "a.video.example"))
            .unwrap();
    }
    let cases = [
        (
            "192.168.1.5",
            "198.51.100.7",
            0x0300,
            "a learned host beats even a /32",
        ),
        (
            "192.168.1.5",
            "198.51.100.8",
            0x0200,
            "other hosts of the prefix",
        ),
        (
            "192.168.1.5",
            "203.0.113.1",
            0x0300,
            "a learned host outside any prefix",
        ),
        (
            "10.10.0.2",
            "198.51.100.7",
            0x0900,
            "a source set comes first",
        ),
        (
            "192.168.1.5",
            "192.0.2.9",
            0,
            "a local destination is never steered",
        ),
        ("fd00::5", "2001:db8::7", 0x0300, "IPv6"),
        ("fd00::5", "2001:db8::8", 0x0200, "IPv6 prefix"),
        ("192.168.1.5", "192.0.2.200", 0, "local"),
    ];
    for (src, dst, mark, why) in cases {
        assert_eq!(c.mark_of(src, dst), mark, "{src} -> {dst}: {why}");
        let frame = Frame::udp(ip(src), ip(dst)).build();
        let meta = c.xdp(&frame).meta.expect("XDP leaves its verdict");
        let xdp_mark = if meta.rule == steer_common::LOCAL_RULE {
            0
        } else {
            c.dp.maps()
                .policy(0, Family::of(&ip(dst)), meta.rule)
                .unwrap()
                .mark
        };
        assert_eq!(xdp_mark, mark, "XDP agrees for {src} -> {dst}");
    }
    // Gone from the map: back to the prefix at once.
    assert!(learned.remove(ip("198.51.100.7")).unwrap());
    assert_eq!(c.mark_of("192.168.1.5", "198.51.100.7"), 0x0200);
    assert!(!learned.remove(ip("198.51.100.7")).unwrap());
    let e = learned.get(ip("2001:db8::7")).unwrap().unwrap();
    assert_eq!((e.rule, e.also_rule), (2, 1));
    assert_eq!(learned.entries().unwrap().len(), 3);
}
