//! Hosts learned from DNS answers in the classifier (BPF_PROG_TEST_RUN against real maps): the
//! lookup order is local destinations, source sets, learned hosts, destination prefixes, the
//! default rule — in TC and in XDP alike. A family's hosts are looked up only while its
//! settings flag is on, which the controller's learner keeps: on before the first host lands,
//! off after the last one left, and at start as the maps it adopts say.

use std::{collections::BTreeMap, net::IpAddr, path::Path};

use steer::{
    controller::dns::Learner,
    dataplane::{
        learned::{LearnedMaps, boottime_secs, entry},
        sync::SYNC_FLAGS,
    },
    dns::{Learn, answer::Learnable},
    model::{Direction, Family, Rule, RuleKind},
    packet::Frame,
};
use steer_common::{DEFAULT_RULE, LOCAL_RULE};
use steer_tests::classifier::{Classifier, ip};

/// The mark TC stamps on `src -> dst`, after checking that XDP picks the same rule.
fn mark(c: &Classifier, src: &str, dst: &str) -> u32 {
    let mark = c.mark_of(src, dst);
    let frame = Frame::udp(ip(src), ip(dst)).build();
    let meta = c.xdp(&frame).meta.expect("XDP leaves its verdict");
    let xdp_mark = if meta.rule == LOCAL_RULE {
        0
    } else {
        c.dp.maps()
            .policy(0, Family::of(&ip(dst)), meta.rule)
            .unwrap()
            .mark
    };
    assert_eq!(xdp_mark, mark, "XDP agrees for {src} -> {dst}");
    mark
}

/// `HAS_LEARNED_V4` and `HAS_LEARNED_V6` as the classifier reads them.
fn lookups(c: &Classifier) -> [bool; 2] {
    let flags = c.dp.maps().settings().unwrap().flags;
    [
        steer_common::settings_flags::HAS_LEARNED_V4,
        steer_common::settings_flags::HAS_LEARNED_V6,
    ]
    .map(|f| flags & f != 0)
}

/// Rule 1: prefixes 198.51.100.0/24 and 2001:db8::/32 (mark 0x200); rule 2: the learned hosts
/// of set `video` (mark 0x300); the default rule marks 0x100.
fn with_prefixes() -> Classifier {
    let mut c = Classifier::load();
    c.mark_rule(DEFAULT_RULE, 0x0100)
        .mark_rule(1, 0x0200)
        .mark_rule(2, 0x0300)
        .dst("198.51.100.0/24", 1)
        .dst("2001:db8::/32", 1);
    c
}

/// A learner configured with set `video` (rule 2, domain video.example), no minimum lifetime.
fn learner(maps: Option<LearnedMaps>) -> (Learner, usize) {
    let text = r#"
[general]
lan = ["br-lan"]

[[wan]]
name = "wan1"
interface = "eth1"
mark = 0x100
table = 101
[wan.track]
targets = ["192.0.2.3"]

[[policy]]
name = "p"
members = [{ wan = "wan1" }]

[[set]]
name = "video"
policy = "p"
domains = ["video.example"]

[dns]
listen = ["192.0.2.1:53"]
upstreams = ["192.0.2.2:53"]
min_ttl = 0
"#;
    let config = steer::config::parse(text, Path::new("/nonexistent/steer.toml")).expect("valid");
    let rules = BTreeMap::from([(
        2,
        Rule {
            id: 2,
            name: "video".into(),
            policy: Some("p".into()),
            kind: RuleKind::Set(Direction::Dst),
        },
    )]);
    let (learner, found) = Learner::new(maps);
    learner.configure(&config, &rules);
    (learner, found)
}

/// What an answer for `name` teaches set `video`: `addr`, for `ttl` seconds.
fn answer(name: &str, addr: IpAddr, ttl: u32) -> Learnable {
    Learnable {
        rule: 2,
        rank: 0,
        set: "video".into(),
        name: name.into(),
        addrs: vec![(addr, ttl)],
        filtered_v6: 0,
    }
}

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
    // What the learner does before a host lands (next test).
    learned.set_lookups([true, true]).unwrap();
    for addr in ["198.51.100.7", "2001:db8::7", "192.0.2.9", "203.0.113.1"] {
        learned
            .insert(
                ip(addr),
                &entry((2, 0, "a.video.example"), Some((1, 0, "a.other.example"))),
            )
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
    for (src, dst, want, why) in cases {
        assert_eq!(mark(&c, src, dst), want, "{src} -> {dst}: {why}");
    }
    // With a family's flag off its hosts are not looked up: the classifier goes by prefix.
    learned.set_lookups([false, true]).unwrap();
    assert_eq!(mark(&c, "192.168.1.5", "198.51.100.7"), 0x0200);
    assert_eq!(mark(&c, "192.168.1.5", "203.0.113.1"), 0x0100);
    assert_eq!(mark(&c, "fd00::5", "2001:db8::7"), 0x0300);
    learned.set_lookups([true, false]).unwrap();
    assert_eq!(mark(&c, "192.168.1.5", "198.51.100.7"), 0x0300);
    assert_eq!(mark(&c, "fd00::5", "2001:db8::7"), 0x0200);
    learned.set_lookups([true, true]).unwrap();
    // Gone from the map: back to the prefix at once.
    assert!(learned.remove(ip("198.51.100.7")).unwrap());
    assert_eq!(c.mark_of("192.168.1.5", "198.51.100.7"), 0x0200);
    assert!(!learned.remove(ip("198.51.100.7")).unwrap());
    let e = learned.get(ip("2001:db8::7")).unwrap().unwrap();
    assert_eq!((e.rule, e.also_rule), (2, 1));
    assert_eq!(learned.entries().unwrap().len(), 3);
}

#[test]
fn the_learner_switches_a_familys_lookup_on_before_its_first_host_and_off_after_its_last() {
    let mut c = with_prefixes();
    let (learner, found) = learner(c.dp.take_learned());
    assert_eq!(found, 0);
    assert_eq!(lookups(&c), [false, false], "no host, no lookup");
    let now = boottime_secs();
    let (v4, v6) = (ip("198.51.100.7"), ip("2001:db8::7"));
    // The first IPv4 host is steered the moment learning it returned (the forwarder relays the
    // answer then): its family's lookup went on with it.
    assert_eq!(learner.learn(&answer("a.video.example", v4, 60)).written, 1);
    assert_eq!(lookups(&c), [true, false]);
    assert_eq!(mark(&c, "192.168.1.5", "198.51.100.7"), 0x0300);
    assert_eq!(mark(&c, "192.168.1.5", "198.51.100.8"), 0x0200);
    assert_eq!(mark(&c, "fd00::5", "2001:db8::7"), 0x0200);
    assert_eq!(
        learner.learn(&answer("b.video.example", v6, 3600)).written,
        1
    );
    assert_eq!(lookups(&c), [true, true]);
    assert_eq!(mark(&c, "fd00::5", "2001:db8::7"), 0x0300);
    // A write of the map sync's flags leaves the learner's alone.
    c.dp.maps_mut().set_flags(SYNC_FLAGS, 0).unwrap();
    assert_eq!(lookups(&c), [true, true]);
    assert_eq!(mark(&c, "192.168.1.5", "198.51.100.7"), 0x0300);

    // The IPv4 host expires: its family's lookup goes off, IPv6 keeps its own, and the packets
    // go by prefix again.
    assert_eq!(learner.expire(now + 600), 1);
    assert!(learner.entry(&v4).is_none());
    assert_eq!(lookups(&c), [false, true]);
    assert_eq!(mark(&c, "192.168.1.5", "198.51.100.7"), 0x0200);
    assert_eq!(mark(&c, "192.168.1.5", "203.0.113.1"), 0x0100);
    assert_eq!(mark(&c, "fd00::5", "2001:db8::7"), 0x0300);
    // A host learned again turns it back on; the last host of each family going turns both off.
    assert_eq!(learner.learn(&answer("a.video.example", v4, 60)).written, 1);
    assert_eq!(lookups(&c), [true, true]);
    assert_eq!(mark(&c, "192.168.1.5", "198.51.100.7"), 0x0300);
    assert_eq!(learner.expire(now + 86_400), 2);
    assert_eq!(lookups(&c), [false, false]);
    assert_eq!(mark(&c, "192.168.1.5", "198.51.100.7"), 0x0200);
    assert_eq!(mark(&c, "fd00::5", "2001:db8::7"), 0x0200);
    assert_eq!(mark(&c, "fd00::5", "2001:db8:1::1"), 0x0200);
}

#[test]
fn a_learner_adopting_maps_looks_up_exactly_the_families_they_hold() {
    let mut c = with_prefixes();
    let mut maps = c.dp.take_learned().expect("the learned-host maps");
    // What a daemon from before the flags leaves behind: hosts, and no flag for them (and an
    // IPv6 flag without a host, as one stopped between a removal and the flag would).
    let expires = boottime_secs() + 3600;
    maps.insert(
        ip("198.51.100.7"),
        &entry((2, expires, "a.video.example"), None),
    )
    .unwrap();
    maps.set_lookups([false, true]).unwrap();
    assert_eq!(mark(&c, "192.168.1.5", "198.51.100.7"), 0x0200);
    let (learner, found) = learner(Some(maps));
    assert_eq!(found, 1);
    assert_eq!(lookups(&c), [true, false]);
    assert_eq!(mark(&c, "192.168.1.5", "198.51.100.7"), 0x0300);
    // It goes like any other host.
    assert_eq!(learner.expire(expires + 1), 1);
    assert_eq!(lookups(&c), [false, false]);
    assert_eq!(mark(&c, "192.168.1.5", "198.51.100.7"), 0x0200);
}
