//! The WAN traffic counters (passive liveness), run in the kernel through BPF_PROG_TEST_RUN:
//! a table of packets, each run through the egress and the ingress program, with the exact
//! counter deltas it must cause. Every run also checks the return value: the programs only
//! count and always let the packet continue.

use std::net::IpAddr;

use steer::{
    dataplane::{
        Dataplane,
        run::{SkbMeta, run_tc_on, run_tc_with, time_per_run},
        wan_traffic::{TrafficSample, monotonic_now_ns},
    },
    model::Family,
};
use steer_common::{WanDevice, program_names, wan_device_flags};

/// `TC_ACT_UNSPEC`.
const TC_CONTINUE: i32 = -1;
/// Test runs see loopback unless told another device; it always exists.
const LO: u32 = 1;
const SLOT: u32 = 5;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_ARP: u16 = 0x0806;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// What a packet carries above IP.
#[derive(Clone, Copy, Debug)]
enum L4 {
    Tcp {
        flags: u8,
        payload: usize,
    },
    Udp {
        dport: u16,
    },
    /// ICMP or ICMPv6 (by the family) with this type and code.
    Icmp {
        kind: u8,
    },
}

/// Link layer of a test frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// Ethernet to loopback's own address (zero): `PACKET_HOST` on ingress.
    Ethernet,
    /// The same with one 802.1Q tag.
    Vlan,
    /// Ethernet broadcast: another host's business on a shared segment.
    Broadcast,
    /// No link header: the IP header first, as on ppp, wireguard or ipip.
    L3,
}

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The IP packet (header, transport header, payload). Checksums are left zero: the programs
/// never look at them.
fn ip_packet(src: IpAddr, dst: IpAddr, l4: L4) -> Vec<u8> {
    let six = src.is_ipv6();
    let (proto, mut body) = match l4 {
        L4::Tcp { flags, payload } => {
            let mut h = vec![0u8; 20 + payload];
            h[0..2].copy_from_slice(&40000u16.to_be_bytes());
            h[2..4].copy_from_slice(&443u16.to_be_bytes());
            h[12] = 5 << 4;
            h[13] = flags;
            (6, h)
        }
        L4::Udp { dport } => {
            let mut h = vec![0u8; 8 + 32];
            h[0..2].copy_from_slice(&40000u16.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
            h[4..6].copy_from_slice(&40u16.to_be_bytes());
            (17, h)
        }
        L4::Icmp { kind } => {
            let mut h = vec![0u8; 8 + 28];
            h[0] = kind;
            (if six { 58 } else { 1 }, h)
        }
    };
    let mut p = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = vec![0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&((20 + body.len()) as u16).to_be_bytes());
            h[8] = 64;
            h[9] = proto;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            h
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = vec![0u8; 40];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
            h[6] = proto;
            h[7] = 64;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            h
        }
        _ => panic!("one family"),
    };
    p.append(&mut body);
    p
}

/// The frame of a packet on `link`. On an L3 device test runs still take the first 14 bytes
/// for an Ethernet header to set `skb->protocol`: the source addresses of [`addresses`] put
/// the right EtherType there (IPv4 source 8.0.x.x, IPv6 source 2001:db8:86dd::), so the
/// program sees the protocol an L3 device would give it.
fn frame(family: Family, link: Link, l4: L4) -> Vec<u8> {
    let (src, dst) = addresses(family);
    let ip = ip_packet(src, dst, l4);
    if link == Link::L3 {
        return ip;
    }
    let dst_mac = if link == Link::Broadcast {
        [0xff; 6]
    } else {
        [0; 6]
    };
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    if link == Link::Vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&7u16.to_be_bytes());
    }
    let ethertype = if family == Family::V6 {
        ETH_P_IPV6
    } else {
        ETH_P_IP
    };
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(&ip);
    f
}

fn addresses(family: Family) -> (IpAddr, IpAddr) {
    match family {
        Family::V4 => (v4("8.0.113.7"), v4("198.51.100.9")),
        Family::V6 => (
            "2001:db8:86dd::7".parse().unwrap(),
            "2001:db8:ffff::9".parse().unwrap(),
        ),
    }
}

struct Fixture {
    dp: Dataplane,
}

impl Fixture {
    /// A fresh object with loopback as WAN slot `SLOT` of the given kind.
    fn new(flags: u32) -> Fixture {
        steer_tests::require_root();
        let mut dp = Dataplane::load().unwrap_or_else(|e| panic!("load: {e}"));
        dp.set_wan_device(
            LO,
            Some(WanDevice {
                slot: SLOT,
                flags,
                ..WanDevice::default()
            }),
        )
        .expect("write WAN_DEVICES");
        Fixture { dp }
    }

    fn run(&self, program: &'static str, frame: &[u8]) {
        let prog = self.dp.wan_program(program).expect("loaded");
        let rc = run_tc_on(prog, frame, LO).unwrap_or_else(|e| panic!("test run: {e}"));
        assert_eq!(
            rc, TC_CONTINUE,
            "{program} must always let the packet go on"
        );
    }

    fn sample(&self) -> [TrafficSample; 2] {
        self.dp.wan_traffic(SLOT).expect("read WAN_TRAFFIC")
    }

    /// (asked, answered) deltas of each family after running `frame` out and then in.
    fn deltas(&self, frame: &[u8]) -> [(u64, u64); 2] {
        let before = self.sample();
        self.run(program_names::WAN_EGRESS, frame);
        let mid = self.sample();
        self.run(program_names::WAN_INGRESS, frame);
        let after = self.sample();
        std::array::from_fn(|f| {
            // The egress program never answers and the ingress one never asks.
            assert_eq!(mid[f].answered, before[f].answered);
            assert_eq!(after[f].asked, mid[f].asked);
            (
                mid[f].asked - before[f].asked,
                after[f].answered - mid[f].answered,
            )
        })
    }
}

/// (name, transport, asks when sent, answers when received).
fn table() -> Vec<(&'static str, L4, bool, bool)> {
    let tcp = |flags, payload| L4::Tcp { flags, payload };
    vec![
        ("TCP SYN", tcp(SYN, 0), true, true),
        ("TCP SYN-ACK", tcp(SYN | ACK, 0), false, true),
        ("TCP pure ACK", tcp(ACK, 0), false, true),
        ("TCP ACK with payload", tcp(ACK | PSH, 100), true, true),
        ("TCP FIN", tcp(FIN | ACK, 0), false, true),
        ("TCP FIN with payload", tcp(FIN | ACK, 10), true, true),
        ("TCP RST", tcp(RST | ACK, 0), false, true),
        ("UDP 53 (DNS)", L4::Udp { dport: 53 }, true, true),
        ("UDP 443 (QUIC)", L4::Udp { dport: 443 }, true, true),
        ("UDP 5000", L4::Udp { dport: 5000 }, false, true),
    ]
}

/// ICMP rows differ by family: (name, v4 type, v6 type, asks, answers).
const ICMP: [(&str, u8, u8, bool, bool); 5] = [
    ("echo request", 8, 128, true, true),
    ("echo reply", 0, 129, false, true),
    ("destination unreachable", 3, 1, false, false),
    ("time exceeded", 11, 3, false, false),
    ("packet too big / source quench", 4, 2, false, false),
];

fn expect(family: Family, asks: bool, answers: bool) -> [(u64, u64); 2] {
    let mut want = [(0, 0); 2];
    want[family.index()] = (u64::from(asks), u64::from(answers));
    want
}

fn check_table(fx: &Fixture, link: Link) {
    for family in Family::ALL {
        for (name, l4, asks, answers) in table() {
            let got = fx.deltas(&frame(family, link, l4));
            assert_eq!(
                got,
                expect(family, asks, answers),
                "{name} {family:?} {link:?}: (asked, answered) per family"
            );
        }
        for (name, t4, t6, asks, answers) in ICMP {
            let kind = if family == Family::V6 { t6 } else { t4 };
            let got = fx.deltas(&frame(family, link, L4::Icmp { kind }));
            assert_eq!(
                got,
                expect(family, asks, answers),
                "ICMP {name} {family:?} {link:?}"
            );
        }
    }
}

#[test]
fn ethernet_wan_counts_asks_out_and_answers_in_exactly() {
    check_table(&Fixture::new(0), Link::Ethernet);
}

#[test]
fn a_vlan_tagged_frame_is_read_past_its_tag() {
    check_table(&Fixture::new(0), Link::Vlan);
}

#[test]
fn an_l3_wan_reads_the_ip_header_first() {
    check_table(&Fixture::new(wan_device_flags::L3), Link::L3);
}

#[test]
fn steers_own_probes_ask_nothing_and_their_answers_count() {
    const MARK: u32 = 0x100;
    const MASK: u32 = 0xff00;
    let mut fx = Fixture::new(0);
    fx.dp
        .set_wan_device(
            LO,
            Some(WanDevice {
                slot: SLOT,
                probe_mark: MARK,
                mark_mask: MASK,
                ..WanDevice::default()
            }),
        )
        .expect("write WAN_DEVICES");
    let prog = fx
        .dp
        .wan_program(program_names::WAN_EGRESS)
        .expect("loaded");
    for family in [Family::V4, Family::V6] {
        let kind = if family == Family::V4 { 8 } else { 128 };
        let echo = frame(family, Link::Ethernet, L4::Icmp { kind });
        let asked = |meta: SkbMeta| {
            let before = fx.sample()[family.index()].asked;
            assert_eq!(run_tc_with(prog, &echo, meta).expect("run"), TC_CONTINUE);
            fx.sample()[family.index()].asked - before
        };
        let sent = |ingress_ifindex, mark| SkbMeta {
            ifindex: LO,
            ingress_ifindex,
            mark,
        };
        assert_eq!(asked(sent(0, MARK)), 0, "a probe of this host, {family:?}");
        assert_eq!(
            asked(sent(0, MARK | 0x1)),
            0,
            "bits outside mark_mask do not matter"
        );
        assert_eq!(asked(sent(7, MARK)), 1, "steered from the LAN, {family:?}");
        assert_eq!(asked(sent(0, 0)), 1, "this host's own unmarked traffic");
        assert_eq!(asked(sent(0, 0x200)), 1, "another WAN's mark");
        let answered = fx.sample()[family.index()].answered;
        fx.run(program_names::WAN_INGRESS, &echo);
        assert_eq!(fx.sample()[family.index()].answered, answered + 1);
    }
}

#[test]
fn timestamps_follow_the_last_ask_and_answer() {
    let fx = Fixture::new(0);
    assert_eq!(fx.sample(), [TrafficSample::default(); 2]);
    let syn = frame(
        Family::V4,
        Link::Ethernet,
        L4::Tcp {
            flags: SYN,
            payload: 0,
        },
    );
    let before = monotonic_now_ns();
    fx.run(program_names::WAN_EGRESS, &syn);
    let after = monotonic_now_ns();
    let asked = fx.sample()[0];
    assert_eq!(asked.last_answered_ns, 0, "{asked:?}");
    // The kernel's clock is the one userspace reads as CLOCK_MONOTONIC.
    assert!(
        (before..=after).contains(&asked.last_asked_ns),
        "{before} <= {} <= {after}",
        asked.last_asked_ns
    );
    fx.run(program_names::WAN_INGRESS, &syn);
    let answered = fx.sample()[0];
    assert!(
        answered.last_answered_ns >= asked.last_asked_ns,
        "{answered:?}"
    );
    assert_eq!(answered.last_asked_ns, asked.last_asked_ns);
    assert_eq!(fx.sample()[1], TrafficSample::default(), "IPv6 untouched");
}

#[test]
fn broadcasts_ndp_and_non_ip_frames_are_no_answer() {
    let fx = Fixture::new(0);
    for family in Family::ALL {
        let syn = L4::Tcp {
            flags: SYN,
            payload: 0,
        };
        let got = fx.deltas(&frame(family, Link::Broadcast, syn));
        // Out, a broadcast frame is the router's own (it asks); in, it is not for this host.
        assert_eq!(got, expect(family, true, false), "broadcast {family:?}");
    }
    // Neighbour solicitation and router advertisement: the next router, not the line.
    for kind in [133, 134, 135, 136] {
        let got = fx.deltas(&frame(Family::V6, Link::Ethernet, L4::Icmp { kind }));
        assert_eq!(got, [(0, 0); 2], "ICMPv6 type {kind}");
    }
    let mut arp = vec![0u8; 12];
    arp.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    arp.resize(60, 0);
    assert_eq!(fx.deltas(&arp), [(0, 0); 2], "ARP");
}

#[test]
fn an_unknown_device_counts_nothing() {
    let mut fx = Fixture::new(0);
    // Another device is a WAN; loopback, which the runs pass, is not.
    fx.dp.set_wan_device(LO, None).expect("remove");
    fx.dp
        .set_wan_device(
            999,
            Some(WanDevice {
                slot: SLOT,
                ..WanDevice::default()
            }),
        )
        .expect("write");
    for family in Family::ALL {
        for (name, l4, _, _) in table() {
            assert_eq!(
                fx.deltas(&frame(family, Link::Ethernet, l4)),
                [(0, 0); 2],
                "{name} {family:?}"
            );
        }
    }
    assert_eq!(fx.sample(), [TrafficSample::default(); 2]);
}

#[test]
fn truncated_headers_count_nothing() {
    let fx = Fixture::new(0);
    let syn = L4::Tcp {
        flags: SYN,
        payload: 0,
    };
    // Cut inside the TCP header. The kernel's test run refuses an untagged frame cut inside its
    // IP header before the program runs, so those cuts are behind a VLAN tag.
    let untagged = frame(Family::V4, Link::Ethernet, syn);
    let tagged = frame(Family::V4, Link::Vlan, syn);
    let tagged6 = frame(Family::V6, Link::Vlan, syn);
    for (what, cut) in [
        ("TCP header", &untagged[..14 + 20 + 10]),
        ("IPv4 header", &tagged[..18 + 12]),
        ("IPv6 header", &tagged6[..18 + 6]),
        ("VLAN tag", &tagged[..16]),
    ] {
        assert_eq!(fx.deltas(cut)[0].0, 0, "cut in the {what}: no ask");
        assert_eq!(fx.deltas(cut)[1].0, 0, "cut in the {what}: no ask");
    }
    // The tagged frames cut in their IP headers are no answer either.
    assert_eq!(fx.deltas(&tagged[..18 + 12]), [(0, 0); 2]);
    assert_eq!(fx.deltas(&tagged6[..18 + 6]), [(0, 0); 2]);
}

/// The cost per packet against the empty tc program (the floor of a test run), with loopback
/// as a WAN: printed with `--nocapture`, not asserted (timings).
#[test]
fn per_packet_cost_is_reported() {
    let fx = Fixture::new(0);
    let mut testkit = aya::Ebpf::load(steer::objects::TESTKIT).expect("testkit loads");
    let empty: &mut aya::programs::SchedClassifier = testkit
        .program_mut("testkit_tc_empty")
        .expect("empty program")
        .try_into()
        .expect("tc program");
    empty.load().expect("load the empty program");
    let data = frame(
        Family::V4,
        Link::Ethernet,
        L4::Tcp {
            flags: ACK,
            payload: 1200,
        },
    );
    let floor = time_per_run(&*empty, &data, 1_000_000).expect("timed run");
    eprintln!("empty tc program: {} ns per packet", floor.as_nanos());
    for name in [program_names::WAN_EGRESS, program_names::WAN_INGRESS] {
        let prog = fx.dp.wan_program(name).expect("loaded");
        let t = time_per_run(prog, &data, 1_000_000).expect("timed run");
        eprintln!(
            "{name}: {} ns per packet (TCP data, IPv4), {} ns over the empty program",
            t.as_nanos(),
            t.as_nanos() as i128 - floor.as_nanos() as i128
        );
    }
}

/// The reconcile is idempotent and exact: the same list twice changes nothing the second
/// time, a new index (a re-created device) re-attaches, an empty list detaches everything and
/// empties `WAN_DEVICES`. Unpinned programs, in a namespace of the test's own.
#[test]
fn reconciling_the_watched_devices_is_idempotent_and_exact() {
    use steer::dataplane::wan_traffic::{WatchedWan, device_flags, watched};
    steer_tests::require_root();
    let ns = steer_tests::netns::Netns::new("wrec");
    ns.run("ip link add wa type veth peer name wb && ip link set wa up && ip link set wb up");
    ns.enter(|| {
        let count = |iface: &str| {
            let n = |hook| {
                aya::programs::SchedClassifier::query_tcx(iface, hook)
                    .map(|(_, p)| p.len())
                    .unwrap_or(0)
            };
            (
                n(aya::programs::TcAttachType::Egress),
                n(aya::programs::TcAttachType::Ingress),
            )
        };
        let mut dp = Dataplane::load().expect("load");
        assert_eq!(device_flags("wa").expect("type"), 0, "a veth is Ethernet");
        assert_eq!(
            device_flags("lo").expect("type"),
            wan_device_flags::L3,
            "loopback is not"
        );
        let want: Vec<WatchedWan> = vec![watched(3, "wa").expect("wa")];
        let first = dp.reconcile_wan_traffic(&want);
        assert_eq!(first.attached, ["wa"]);
        assert!(first.failed.is_empty(), "{:?}", first.failed);
        assert_eq!(count("wa"), (1, 1));
        let index = want[0].ifindex;
        assert_eq!(
            dp.wan_devices().into_iter().collect::<Vec<_>>(),
            [(
                index,
                WanDevice {
                    slot: 3,
                    ..WanDevice::default()
                }
            )]
        );

        let again = dp.reconcile_wan_traffic(&want);
        assert!(
            again.attached.is_empty() && again.detached.is_empty(),
            "{again:?}"
        );
        assert_eq!(count("wa"), (1, 1), "never two");

        // Another slot for the same device: the map follows, the links stay.
        let moved = [WatchedWan {
            slot: 4,
            ..want[0].clone()
        }];
        let r = dp.reconcile_wan_traffic(&moved);
        assert!(r.attached.is_empty() && r.detached.is_empty(), "{r:?}");
        assert_eq!(dp.wan_devices()[&index].slot, 4);

        // Re-created: a new index, new links.
        let recreated = [WatchedWan {
            ifindex: index + 1000,
            ..moved[0].clone()
        }];
        let r = dp.reconcile_wan_traffic(&recreated);
        assert_eq!(
            (r.detached.as_slice(), r.attached.as_slice()),
            (&["wa".to_owned()][..], &["wa".to_owned()][..])
        );
        assert_eq!(
            dp.wan_devices().keys().copied().collect::<Vec<_>>(),
            [index + 1000]
        );

        let none = dp.reconcile_wan_traffic(&[]);
        assert_eq!(none.detached, ["wa"]);
        assert_eq!(count("wa"), (0, 0));
        assert!(dp.wan_devices().is_empty());
    });
}
