//! The ordered rules (sets with conditions) in the kernel, through BPF_PROG_TEST_RUN: every
//! packet gets the rule a plain first-match walk of the rule list gives (as mwan3 would pick),
//! whatever mix of protocol, ports, source MAC, input interface and addresses the rules use;
//! then the prefix sets as before. Written through the controller's own bank writer.

use std::net::IpAddr;

use steer::{
    model::{Conditions, Direction, OrderedRule, PortRange, Proto},
    packet::{Frame, Transport},
    prefix::Prefix,
};
use steer_common::{DEFAULT_RULE, LOCAL_RULE};
use steer_tests::{
    classifier::{Classifier, ip, prefix_of},
    netns::Netns,
    rng::Rng,
};

/// Rule ids of the plain sets next to the ordered ones.
const PLAIN_DST: u32 = 200;
const PLAIN_SRC: u32 = 201;

/// A synthetic packet and where it came in.
#[derive(Clone, Debug)]
struct Packet {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
    mac: [u8; 6],
    /// Interface name (`lo`, `lana`, `lanb`).
    input: &'static str,
}

impl Packet {
    fn frame(&self) -> Vec<u8> {
        let transport = match self.proto {
            6 => Transport::Tcp {
                sport: self.sport,
                dport: self.dport,
            },
            17 => Transport::Udp {
                sport: self.sport,
                dport: self.dport,
            },
            p => Transport::Other(p),
        };
        Frame::udp(self.src, self.dst)
            .with_transport(transport)
            .with_src_mac(self.mac)
            .build()
    }

    fn has_ports(&self) -> bool {
        matches!(self.proto, 6 | 17)
    }
}

/// What the rule list says, the plain way: the first rule whose every condition holds.
fn first_match(rules: &[OrderedRule], p: &Packet) -> Option<u32> {
    let in_any = |list: &[Prefix], a: IpAddr| list.iter().any(|x| x.contains(a));
    let port_in = |ranges: &[PortRange], port: u16| {
        ranges.is_empty()
            || p.has_ports() && ranges.iter().any(|r| (r.first..=r.last).contains(&port))
    };
    let family = steer::model::Family::of(&p.dst);
    rules
        .iter()
        .find(|r| {
            let c = &r.conditions;
            let proto = c.protos.is_empty() || c.protos.iter().any(|x| x.number(family) == p.proto);
            let own = r.prefixes.as_ref().is_none_or(|own| {
                in_any(
                    own,
                    if r.direction == Direction::Src {
                        p.src
                    } else {
                        p.dst
                    },
                )
            });
            let src = c.src_prefixes.is_empty() || in_any(&c.src_prefixes, p.src);
            proto
                && own
                && src
                && port_in(&c.sports, p.sport)
                && port_in(&c.dports, p.dport)
                && (c.src_macs.is_empty() || c.src_macs.contains(&p.mac))
                && (c.ins.is_empty() || c.ins.iter().any(|i| i == p.input))
        })
        .map(|r| r.rule)
}

/// What the prefix sets give when no ordered rule matched (source sets come first).
fn plain(p: &Packet) -> u32 {
    if prefix_of("192.168.50.0/24").contains(p.src) {
        PLAIN_SRC
    } else if prefix_of("198.51.100.0/24").contains(p.dst)
        || prefix_of("2001:db8:f::/48").contains(p.dst)
    {
        PLAIN_DST
    } else {
        DEFAULT_RULE
    }
}

fn ports(list: &[(u16, u16)]) -> Vec<PortRange> {
    list.iter()
        .map(|(first, last)| PortRange {
            first: *first,
            last: *last,
        })
        .collect()
}

fn prefixes(list: &[&str]) -> Vec<Prefix> {
    list.iter().map(|s| prefix_of(s)).collect()
}

const MAC_A: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 2];
const MAC_C: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 3];

/// An mwan3-like rule list: VoIP by port, a kid's device by MAC, a guest LAN by interface,
/// HTTPS to a bank by address and port, ICMP, a source subnet to a destination list, IPv6.
fn mwan3_like() -> Vec<OrderedRule> {
    let rule = |id, direction, own: &[&str], conditions| OrderedRule {
        rule: id,
        direction,
        prefixes: (!own.is_empty()).then(|| prefixes(own)),
        conditions,
    };
    // A rule whose list files came out empty: first in order, it must match nothing.
    let emptied = OrderedRule {
        rule: 9,
        direction: Direction::Dst,
        prefixes: Some(Vec::new()),
        conditions: Conditions {
            protos: vec![Proto::TCP, Proto::UDP],
            ..Conditions::default()
        },
    };
    vec![
        emptied,
        rule(
            1,
            Direction::Dst,
            &[],
            Conditions {
                protos: vec![Proto::UDP],
                dports: ports(&[(5060, 5061), (10000, 20000)]),
                ..Conditions::default()
            },
        ),
        rule(
            2,
            Direction::Dst,
            &[],
            Conditions {
                src_macs: vec![MAC_A],
                ..Conditions::default()
            },
        ),
        rule(
            3,
            Direction::Dst,
            &["203.0.113.0/24", "2001:db8:113::/48"],
            Conditions {
                protos: vec![Proto::TCP],
                dports: ports(&[(443, 443)]),
                ..Conditions::default()
            },
        ),
        rule(
            4,
            Direction::Dst,
            &[],
            Conditions {
                ins: vec!["lanb".into()],
                ..Conditions::default()
            },
        ),
        rule(
            5,
            Direction::Dst,
            &[],
            Conditions {
                protos: vec![Proto::Icmp],
                ..Conditions::default()
            },
        ),
        rule(
            6,
            Direction::Dst,
            &["203.0.113.128/25", "198.51.100.0/25"],
            Conditions {
                src_prefixes: prefixes(&["192.168.1.0/24"]),
                ..Conditions::default()
            },
        ),
        rule(
            7,
            Direction::Src,
            &["192.168.2.0/24"],
            Conditions {
                sports: ports(&[(1024, 2047)]),
                protos: vec![Proto::TCP, Proto::UDP],
                ..Conditions::default()
            },
        ),
        rule(
            8,
            Direction::Dst,
            &["203.0.113.0/24"],
            Conditions {
                protos: vec![Proto::Number(47)],
                src_macs: vec![MAC_B, MAC_C],
                ..Conditions::default()
            },
        ),
    ]
}

/// A random packet over the addresses, ports, MACs and interfaces the rules name (and others).
fn random_packet(rng: &mut Rng) -> Packet {
    let v6 = rng.chance(25);
    let pick = |rng: &mut Rng, list: &[&str]| ip(list[rng.below(list.len() as u64) as usize]);
    let (src, dst) = if v6 {
        (
            pick(rng, &["fd00::5", "fd00:1::7"]),
            pick(rng, &["2001:db8:113::9", "2001:db8:f::1", "2001:db8:99::1"]),
        )
    } else {
        (
            pick(
                rng,
                &["192.168.1.10", "192.168.2.20", "192.168.50.5", "10.9.9.9"],
            ),
            pick(
                rng,
                &[
                    "203.0.113.5",
                    "203.0.113.200",
                    "198.51.100.7",
                    "198.51.100.200",
                    "8.8.8.8",
                ],
            ),
        )
    };
    let proto = [6u8, 17, 1, 58, 47][rng.below(5) as usize];
    let proto = match (proto, v6) {
        (1, true) => 58,
        (58, false) => 1,
        (p, _) => p,
    };
    let port = |rng: &mut Rng| {
        [
            443u16, 80, 5060, 5061, 5062, 9999, 10000, 15000, 20000, 20001, 1024, 2047, 2048, 40000,
        ][rng.below(14) as usize]
    };
    let (sport, dport) = (port(rng), port(rng));
    Packet {
        src,
        dst,
        proto,
        sport,
        dport,
        mac: [MAC_A, MAC_B, MAC_C, [0x02, 0, 0, 0, 0, 9]][rng.below(4) as usize],
        input: ["lo", "lana", "lanb"][rng.below(3) as usize],
    }
}

/// A loaded classifier inside `ns` (which has `lana` and `lanb`), with plain sets and a local
/// prefix beside the ordered rules.
fn loaded(rules: &[OrderedRule]) -> Classifier {
    let mut c = Classifier::load();
    c.dst("198.51.100.0/24", PLAIN_DST)
        .dst("2001:db8:f::/48", PLAIN_DST)
        .src("192.168.50.0/24", PLAIN_SRC)
        .local("203.0.113.250/32")
        .ordered(rules);
    c
}

fn lab_namespace() -> Netns {
    let ns = Netns::new("ordered");
    ns.run(
        "ip link add lana type veth peer name lanb && ip link set lana up && ip link set lanb up",
    );
    ns
}

fn verdict(c: &Classifier, p: &Packet) -> Option<u32> {
    let index = steer::dataplane::ifindex(p.input).expect("interface in the namespace");
    c.tc_from(&p.frame(), index).rule
}

#[test]
fn every_packet_gets_the_first_rule_it_meets_then_the_prefix_sets() {
    let ns = lab_namespace();
    ns.enter(|| {
        let rules = mwan3_like();
        let c = loaded(&rules);
        let mut rng = Rng::from_env_or_time("ordered");
        let mut matched = vec![0usize; 9];
        for i in 0..3000 {
            let p = random_packet(&mut rng);
            let want = first_match(&rules, &p).unwrap_or_else(|| plain(&p));
            assert_eq!(verdict(&c, &p), Some(want), "packet {i}: {p:?}");
            if (want as usize) < matched.len() {
                matched[want as usize] += 1;
            }
            // XDP sees every packet as coming in on loopback in a test run: compare those.
            if p.input == "lo" {
                let meta = c.xdp(&p.frame()).meta.expect("xdp verdict");
                assert_eq!(meta.rule, want, "xdp, packet {i}: {p:?}");
            }
        }
        // The draw reaches every rule (else the test says less than it seems to).
        for (rule, n) in matched.iter().enumerate().skip(1) {
            assert!(*n > 0, "no packet matched rule {rule}: {matched:?}");
        }
    });
}

#[test]
fn a_local_destination_is_never_steered_whatever_the_rules_say() {
    let ns = lab_namespace();
    ns.enter(|| {
        let c = loaded(&mwan3_like());
        let p = Packet {
            src: ip("192.168.1.10"),
            dst: ip("203.0.113.250"),
            proto: 6,
            sport: 40000,
            dport: 443,
            mac: MAC_A,
            input: "lanb",
        };
        assert_eq!(
            first_match(&mwan3_like(), &p),
            Some(2),
            "the rules would match"
        );
        assert_eq!(verdict(&c, &p), Some(LOCAL_RULE));
    });
}

#[test]
fn a_new_rule_list_replaces_the_old_whole_and_an_empty_one_hands_back_to_the_sets() {
    let ns = lab_namespace();
    ns.enter(|| {
        let first = mwan3_like();
        let mut c = loaded(&first);
        // Reversed order and other ids: the rules that overlap now pick the other way.
        let second: Vec<OrderedRule> = first
            .iter()
            .rev()
            .map(|r| OrderedRule {
                rule: r.rule + 10,
                ..r.clone()
            })
            .collect();
        let mut rng = Rng::from_env_or_time("ordered-swap");
        let packets: Vec<Packet> = (0..600).map(|_| random_packet(&mut rng)).collect();
        for (rules, name) in [
            (&second, "second"),
            (&first, "first again"),
            (&Vec::new(), "none"),
        ] {
            c.ordered(rules);
            let mut differ = 0;
            for p in &packets {
                let want = first_match(rules, p).unwrap_or_else(|| plain(p));
                assert_eq!(verdict(&c, p), Some(want), "{name}: {p:?}");
                differ += usize::from(first_match(&first, p) != first_match(&second, p));
            }
            assert!(
                differ > 0,
                "the two lists must disagree somewhere for this to test anything"
            );
        }
    });
}
