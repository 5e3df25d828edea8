//! Real traffic: a client namespace sends UDP through a router namespace where steer is
//! attached for real, and policy routing there delivers marked packets to ISP 2 and the rest to
//! ISP 1. Which ISP receives what is observed by sockets in the ISP namespaces; the marks
//! themselves by the testkit witness attached after steer on the same hook.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::mpsc,
    time::Duration,
};

use steer::dataplane::{Capacities, Dataplane, Direction, XdpAttachMode};
use steer_common::{PolicyEntry, action, path};
use steer_tests::{
    classifier::prefix_of,
    netns::{Netns, veth},
    require_root,
    witness::Witness,
};

const PORT: u16 = 5555;
const PER_FLOW: usize = 25;
const BYPASS_MARK: u32 = 0x0200;
const MASK: u32 = 0xff00;

/// client -- router -- isp1, isp2. Both ISPs own the same "internet" addresses, so only the
/// router's routing decision tells where a packet ends up.
struct Lab {
    client: Netns,
    router: Netns,
    isp1: Netns,
    isp2: Netns,
}

impl Lab {
    fn new() -> Lab {
        let lab = Lab {
            client: Netns::new("cli"),
            router: Netns::new("rtr"),
            isp1: Netns::new("isp1"),
            isp2: Netns::new("isp2"),
        };
        veth(&lab.client, "eth0", &lab.router, "lan0");
        veth(&lab.router, "wan1", &lab.isp1, "eth0");
        veth(&lab.router, "wan2", &lab.isp2, "eth0");
        lab.client.run(
            "ip addr add 10.77.0.2/24 dev eth0 && ip -6 addr add fd77::2/64 dev eth0 nodad && \
             ip route add default via 10.77.0.1 && ip -6 route add default via fd77::1",
        );
        lab.router.run(
            "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 && \
             ip addr add 10.77.0.1/24 dev lan0 && ip -6 addr add fd77::1/64 dev lan0 nodad && \
             ip addr add 10.81.0.1/24 dev wan1 && ip -6 addr add fd81::1/64 dev wan1 nodad && \
             ip addr add 10.82.0.1/24 dev wan2 && ip -6 addr add fd82::1/64 dev wan2 nodad && \
             ip route add default via 10.81.0.2 && ip -6 route add default via fd81::2 && \
             ip route add default via 10.82.0.2 table 102 && ip -6 route add default via fd82::2 table 102 && \
             ip rule add fwmark 0x200/0xff00 lookup 102 pref 100 && \
             ip -6 rule add fwmark 0x200/0xff00 lookup 102 pref 100",
        );
        for (isp, n) in [(&lab.isp1, 1), (&lab.isp2, 2)] {
            isp.run(&format!(
                "ip addr add 10.8{n}.0.2/24 dev eth0 && ip -6 addr add fd8{n}::2/64 dev eth0 nodad && \
                 ip addr add 198.51.100.10/32 dev lo && ip addr add 198.51.100.20/32 dev lo && \
                 ip -6 addr add 2001:db8:100::10/128 dev lo && ip -6 addr add 2001:db8:100::20/128 dev lo && \
                 ip route add 10.77.0.0/24 via 10.8{n}.0.1 && ip -6 route add fd77::/64 via fd8{n}::1"
            ));
        }
        lab
    }
}

/// Counts datagrams per destination address until `idle` passes without one.
fn receive(isp: &Netns, ready: mpsc::Sender<()>) -> std::thread::JoinHandle<Vec<IpAddr>> {
    isp.spawn(move || {
        // Dual-stack: IPv4 datagrams arrive as mapped addresses on the same socket.
        let sock = UdpSocket::bind(("::", PORT)).expect("bind [::]");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        ready.send(()).unwrap();
        let mut got = Vec::new();
        let mut idle = 0;
        let mut buf = [0u8; 64];
        // Bounded: stop after 1.5 s without traffic.
        while idle < 30 {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    // The payload names the destination the client sent to.
                    got.push(std::str::from_utf8(&buf[..n]).unwrap().parse().unwrap());
                    idle = 0;
                }
                Err(_) => idle += 1,
            }
        }
        got
    })
}

fn count(got: &[IpAddr], dst: &str) -> usize {
    got.iter().filter(|a| a.to_string() == dst).count()
}

fn steer_real_traffic(with_xdp: bool) {
    require_root();
    let lab = Lab::new();
    let mut dp = Dataplane::load(Capacities::default()).expect("load steer");
    // Bypass set (rule 1): one IPv4 and one IPv6 destination go to ISP 2. Everything else keeps
    // the default rule, which has no policy: unmarked, main table, ISP 1.
    let bypass = PolicyEntry {
        action: action::MARK,
        mark: BYPASS_MARK,
        mask: MASK,
        wan: 1,
    };
    dp.maps.set_policy(0, 1, bypass).unwrap();
    dp.maps
        .set_prefix(Direction::Dst, prefix_of("198.51.100.20/32"), 1)
        .unwrap();
    dp.maps
        .set_prefix(Direction::Dst, prefix_of("2001:db8:100::20/128"), 1)
        .unwrap();

    let mut witness = Witness::load();
    let mode = lab.router.enter(|| {
        let mode = dp.attach("lan0", with_xdp).expect("attach steer").xdp;
        witness.attach(
            "lan0",
            aya::programs::LinkOrder::after_program(dp.tc()).expect("steer is loaded"),
        );
        mode
    });
    if with_xdp {
        assert_eq!(mode, Some(XdpAttachMode::Native), "veth has native XDP");
    }

    let (tx, rx) = mpsc::channel();
    let isp1 = receive(&lab.isp1, tx.clone());
    let isp2 = receive(&lab.isp2, tx);
    rx.recv().unwrap();
    rx.recv().unwrap();
    let flows = [
        "198.51.100.10",
        "198.51.100.20",
        "2001:db8:100::10",
        "2001:db8:100::20",
    ];
    lab.client.enter(|| {
        let v4 = UdpSocket::bind("0.0.0.0:0").unwrap();
        let v6 = UdpSocket::bind("[::]:0").unwrap();
        for dst in flows {
            let addr: IpAddr = dst.parse().unwrap();
            let sock = if addr.is_ipv4() { &v4 } else { &v6 };
            for _ in 0..PER_FLOW {
                sock.send_to(dst.as_bytes(), SocketAddr::new(addr, PORT))
                    .expect("send");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let (at_isp1, at_isp2) = (isp1.join().unwrap(), isp2.join().unwrap());

    for (dst, isp1_wants, isp2_wants) in [
        ("198.51.100.10", PER_FLOW, 0),
        ("198.51.100.20", 0, PER_FLOW),
        ("2001:db8:100::10", PER_FLOW, 0),
        ("2001:db8:100::20", 0, PER_FLOW),
    ] {
        assert_eq!(
            count(&at_isp1, dst),
            isp1_wants,
            "{dst} at ISP 1 (xdp={with_xdp})"
        );
        assert_eq!(
            count(&at_isp2, dst),
            isp2_wants,
            "{dst} at ISP 2 (xdp={with_xdp})"
        );
    }
    // The witness runs after steer: it saw every bypass packet with steer's mark.
    assert_eq!(
        witness.seen(BYPASS_MARK),
        2 * PER_FLOW as u64,
        "witness saw the bypass marks"
    );
    assert!(
        witness.seen(0) >= 2 * PER_FLOW as u64,
        "witness saw the unmarked default traffic"
    );
    assert_eq!(
        dp.maps.rule_counter(1).unwrap().packets,
        2 * PER_FLOW as u64
    );
    assert_eq!(dp.maps.wan_counter(1).unwrap().packets, 2 * PER_FLOW as u64);
    let via_meta = dp.maps.path_counter(path::XDP_META).unwrap().packets;
    let by_tc = dp.maps.path_counter(path::CLASSIFIED).unwrap().packets;
    if with_xdp {
        // Every IP packet was classified in XDP and TC took the verdict from the metadata.
        assert!(
            via_meta >= 4 * PER_FLOW as u64,
            "XDP verdicts used: {via_meta}"
        );
        assert_eq!(by_tc, 0, "TC never had to classify by itself");
    } else {
        assert_eq!(via_meta, 0);
        assert!(by_tc >= 4 * PER_FLOW as u64, "TC classified: {by_tc}");
    }
    drop(lab);
}

#[test]
fn tc_marks_steer_real_traffic() {
    steer_real_traffic(false);
}

#[test]
fn xdp_verdicts_reach_tc_through_metadata_in_real_traffic() {
    steer_real_traffic(true);
}

#[test]
fn xdp_falls_back_to_generic_where_the_driver_has_none_and_the_pin_remembers_it() {
    require_root();
    // A macvlan has no native XDP: steer attaches generic XDP, says so, and a new daemon
    // adopting the pinned link reports the same mode.
    let ns = Netns::new("xdpgen");
    ns.run("ip link add base0 type veth peer name base1 && ip link set base0 up && ip link set base1 up && \
            ip link add mv0 link base0 type macvlan mode bridge && ip link set mv0 up");
    let work = steer_tests::daemon::Workdir::new("xdpgen");
    let mode = ns.enter(|| {
        let (mut dp, _) =
            Dataplane::open_pinned(&work.pin_dir, Capacities::default()).expect("open pinned");
        let r = dp.attach("mv0", true).expect("attach");
        assert!(r.xdp_error.is_none(), "{:?}", r.xdp_error);
        r.xdp
    });
    assert_eq!(mode, Some(XdpAttachMode::Generic));
    assert!(work.pin_dir.join("links/xdp-generic-mv0").exists());
    let adopted = ns.enter(|| {
        let (mut dp, adopted) =
            Dataplane::open_pinned(&work.pin_dir, Capacities::default()).expect("reopen");
        assert_eq!(adopted.xdp_links, ["mv0"]);
        let r = dp.attach("mv0", true).expect("adopt");
        assert!(r.adopted, "the TC link was adopted");
        // Switching XDP off keeps the TC link (no moment without a classifier).
        let r2 = dp.attach("mv0", false).expect("xdp off");
        assert!(!r2.tc_attached && r2.xdp.is_none());
        r.xdp
    });
    assert_eq!(adopted, Some(XdpAttachMode::Generic));
    assert!(
        !work.pin_dir.join("links/xdp-generic-mv0").exists(),
        "xdp pin removed"
    );
    assert!(work.pin_dir.join("links/tc-mv0").exists(), "tc pin kept");
}
