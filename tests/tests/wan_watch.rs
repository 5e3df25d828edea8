//! The WAN traffic counters with the real daemon and real traffic: a router whose WANs are a
//! veth (Ethernet) and a tun device (L3, no link header), an ISP namespace behind both. Traffic
//! that expects answers makes both counters grow; a one-way UDP flood asks nothing; the
//! programs follow a device that is deleted and re-created, a WAN removed by a reload, a daemon
//! restart (adopted, never doubled) and `steer stop` (gone).

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use aya::programs::{SchedClassifier, TcAttachType};
use steer_common::program_names;
use steer_tests::{
    daemon::{Daemon, Workdir},
    lab::tcp::{Conversation, EchoServer},
    netns::Netns,
    tun::TunLink,
};

const ISP_V4: &str = "100.64.91.1";
const WAN_V4: &str = "100.64.91.2";
const ISP_V6: &str = "fd91::1";
const WAN_V6: &str = "fd91::2";
const TUN_ISP_V4: &str = "100.64.92.1";
const TUN_WAN_V4: &str = "100.64.92.2";
/// Bound on waiting for the daemon to follow a change.
const FOLLOW: Duration = Duration::from_secs(10);

struct Net {
    // Dropped in this order: the relay (and the tun devices) before the namespaces.
    _tun: TunLink,
    router: Netns,
    isp: Netns,
}

impl Net {
    fn new() -> Net {
        steer_tests::require_root();
        let router = Netns::new("wrtr");
        let isp = Netns::new("wisp");
        let tun = TunLink::new(&router, "tun9", &isp, "tunp");
        router.run("ip link add lan0 type veth peer name lanx && ip link set lan0 up && ip link set lanx up && ip addr add 10.91.0.1/24 dev lan0");
        let n = Net {
            _tun: tun,
            router,
            isp,
        };
        n.make_wan1();
        n.router.run(&format!(
            "ip link set tun9 up && ip addr add {TUN_WAN_V4} peer {TUN_ISP_V4} dev tun9"
        ));
        n.isp.run(&format!(
            "ip link set tunp up && ip addr add {TUN_ISP_V4} peer {TUN_WAN_V4} dev tunp"
        ));
        n.wait_reachable(ISP_V4);
        n.wait_reachable(ISP_V6);
        n.wait_reachable(TUN_ISP_V4);
        n
    }

    /// The veth WAN (created again after a test deleted it), with a shaping qdisc on its
    /// egress as a router often has (the counters must not disturb it).
    fn make_wan1(&self) {
        self.router.run(&format!(
            "ip link add wan1 type veth peer name down1 netns {} && ip link set wan1 up && \
             ip addr add {WAN_V4}/30 dev wan1 && ip addr add {WAN_V6}/64 dev wan1 nodad && \
             tc qdisc add dev wan1 root handle 1: htb default 10 && \
             tc class add dev wan1 parent 1: classid 1:10 htb rate 100mbit",
            self.isp.name
        ));
        self.isp.run(&format!(
            "ip link set down1 up && ip addr add {ISP_V4}/30 dev down1 && \
             ip addr add {ISP_V6}/64 dev down1 nodad"
        ));
    }

    fn wait_reachable(&self, addr: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self
            .router
            .try_run(&format!("ping -c 1 -W 1 {addr}"))
            .status
            .success()
        {
            assert!(
                Instant::now() < deadline,
                "{addr} unreachable from the router"
            );
        }
    }

    /// The programs on one tcx hook of a router interface, by (truncated) kernel name.
    fn tcx(&self, iface: &str, hook: TcAttachType) -> Vec<String> {
        let iface = iface.to_owned();
        self.router.enter(move || {
            match SchedClassifier::query_tcx(&iface, hook) {
                Ok((_, progs)) => progs
                    .iter()
                    .map(|p| p.name_as_str().unwrap_or("?").to_owned())
                    .collect(),
                // No such device, or nothing there.
                Err(_) => Vec::new(),
            }
        })
    }

    /// How many of the WAN programs are attached to `iface`: (egress, ingress).
    fn wan_programs(&self, iface: &str) -> (usize, usize) {
        let count = |hook, name: &str| {
            // The kernel keeps 15 bytes of a program's name.
            let short = &name[..name.len().min(15)];
            self.tcx(iface, hook).iter().filter(|p| *p == short).count()
        };
        (
            count(TcAttachType::Egress, program_names::WAN_EGRESS),
            count(TcAttachType::Ingress, program_names::WAN_INGRESS),
        )
    }

    fn wait_programs(&self, iface: &str, want: (usize, usize), daemon: &Daemon) {
        let deadline = Instant::now() + FOLLOW;
        loop {
            let got = self.wan_programs(iface);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{iface}: (egress, ingress) WAN programs {got:?}, want {want:?}\ndaemon log:\n{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn config(work: &Workdir, with_tun: bool) -> String {
    let tun = if with_tun {
        format!(
            r#"
[[wan]]
name = "wan9"
interface = "tun9"
mark = 0x900
table = 109
gateway = "none"
[wan.track]
method = "icmp"
targets = ["{TUN_ISP_V4}"]
interval_ms = 3600000
timeout_ms = 1000
"#
        )
    } else {
        String::new()
    };
    let members = if with_tun {
        r#"[{ wan = "wan1", metric = 1 }, { wan = "wan9", metric = 2 }]"#
    } else {
        r#"[{ wan = "wan1", metric = 1 }]"#
    };
    format!(
        r#"[general]
lan = ["lan0"]
mark_mask = 0xff00
{pins}
# Probes once an hour: the traffic counted below is the test's own.
[[wan]]
name = "wan1"
interface = "wan1"
mark = 0x100
table = 101
gateway = "{ISP_V4}"
[wan.track]
method = "icmp"
targets = ["{ISP_V4}"]
interval_ms = 3600000
timeout_ms = 1000
{tun}
[[policy]]
name = "out"
members = {members}

[default]
policy = "out"

{control}"#,
        pins = work.private_paths(),
        control = work.control_section(),
    )
}

/// (asked, answered) of IPv4 on `wan`, from `steer dump counters --json`.
fn traffic(work: &Workdir, wan: &str) -> (u64, u64) {
    traffic_of(work, wan, "ipv4")
}

/// (asked, answered) of `family` ("ipv4", "ipv6") on `wan`.
fn traffic_of(work: &Workdir, wan: &str, family: &str) -> (u64, u64) {
    let dump: serde_json::Value =
        serde_json::from_str(&work.steer_ok(&["dump", "counters", "--json"])).expect("json");
    let w = dump["counters"]["wans"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["wan"] == wan)
        .unwrap_or_else(|| panic!("{wan} not in {dump}"));
    let t = &w["traffic"][family];
    (
        t["asked"].as_u64().expect("asked"),
        t["answered"].as_u64().expect("answered"),
    )
}

/// Pings and a TCP conversation from the router to `addr` (through the WAN it routes to).
fn two_way_traffic(net: &Net, addr: &str) {
    net.router.run(&format!("ping -c 3 -i 0.05 -W 1 {addr}"));
    let server = EchoServer::start(&net.isp, SocketAddr::new(addr.parse().unwrap(), 7000));
    let mut talk = Conversation::open(&net.router, server.addr()).expect("connect");
    for _ in 0..5 {
        talk.exchange().expect("echo");
    }
}

fn grows(before: (u64, u64), after: (u64, u64), what: &str) {
    assert!(
        after.0 > before.0 && after.1 > before.1,
        "{what}: asked and answered must both grow: {before:?} -> {after:?}"
    );
}

#[test]
fn wan_traffic_counters_follow_real_traffic_and_the_wans_devices() {
    let net = Net::new();
    let work = Workdir::new("wanwatch");
    work.write("steer.toml", &config(&work, true));
    let mut daemon = Daemon::start(&net.router, &work);
    net.wait_programs("wan1", (1, 1), &daemon);
    net.wait_programs("tun9", (1, 1), &daemon);

    // Two-way traffic on the Ethernet WAN and on the L3 one.
    for (wan, addr) in [("wan1", ISP_V4), ("wan9", TUN_ISP_V4)] {
        let before = traffic(&work, wan);
        two_way_traffic(&net, addr);
        grows(before, traffic(&work, wan), wan);
    }

    // IPv6 counts apart.
    let before = (traffic(&work, "wan1"), traffic_of(&work, "wan1", "ipv6"));
    two_way_traffic(&net, ISP_V6);
    let after = (traffic(&work, "wan1"), traffic_of(&work, "wan1", "ipv6"));
    grows(before.1, after.1, "wan1 IPv6");
    assert_eq!(before.0.0, after.0.0, "IPv6 traffic asks nothing of IPv4");

    // A one-way UDP flood to a port nobody listens on asks nothing; the port-unreachable
    // errors the ISP sends back are no answer.
    let before = traffic(&work, "wan1");
    net.router.enter(|| {
        let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for _ in 0..1000 {
            let _ = sock.send_to(&[0u8; 64], (ISP_V4, 5000));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        traffic(&work, "wan1"),
        before,
        "a one-way UDP flood changes neither counter"
    );

    // The device deleted and re-created (a PPPoE or DHCP line coming back): programs again,
    // and counting on the new device.
    net.router.run("ip link del wan1");
    net.wait_programs("wan1", (0, 0), &daemon);
    net.make_wan1();
    net.wait_programs("wan1", (1, 1), &daemon);
    net.wait_reachable(ISP_V4);
    let before = traffic(&work, "wan1");
    two_way_traffic(&net, ISP_V4);
    grows(before, traffic(&work, "wan1"), "wan1 re-created");

    // A restart adopts the pinned links: still exactly one of each.
    assert!(daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(10)));
    assert_eq!(
        net.wan_programs("wan1"),
        (1, 1),
        "kept while no daemon runs"
    );
    let mut daemon = Daemon::start(&net.router, &work);
    std::thread::sleep(Duration::from_millis(500));
    net.wait_programs("wan1", (1, 1), &daemon);
    net.wait_programs("tun9", (1, 1), &daemon);
    let before = traffic(&work, "wan9");
    two_way_traffic(&net, TUN_ISP_V4);
    grows(before, traffic(&work, "wan9"), "wan9 after a restart");

    // A reload without the L3 WAN takes the programs off its device.
    work.write("steer.toml", &config(&work, false));
    work.steer_ok(&["reload"]);
    net.wait_programs("tun9", (0, 0), &daemon);
    assert_eq!(net.wan_programs("wan1"), (1, 1));

    // `steer stop` removes them everywhere.
    work.stop_in(&net.router);
    assert!(daemon.wait_exit(Duration::from_secs(10)).is_some());
    assert_eq!(net.wan_programs("wan1"), (0, 0), "gone after steer stop");
    assert_eq!(net.wan_programs("tun9"), (0, 0));
}
