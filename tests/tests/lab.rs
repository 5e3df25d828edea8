//! The namespace lab itself, without steer: topology, NAT, faults, traffic helpers, parallel
//! labs and cleanup. The failover tests and `cargo xtask demo` rely on all of it.

use std::{
    net::IpAddr,
    process::Command,
    time::{Duration, Instant},
};

use steer_tests::lab::{Lab, Stream, Wan, udp_arrivals, udp_via};

const N: usize = 20;
/// A stream that would run far longer than the test: stopping or dropping it must not wait it
/// out (the bounds below are a tenth of it, not a timing target).
const LONG: Duration = Duration::from_secs(30);

fn link_flags(lab: &Lab, w: Wan) -> String {
    lab.router
        .run(&format!("ip -o link show dev {}", Lab::wan_iface(w)))
}

fn netns_list() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn router_pings(lab: &Lab, target: impl std::fmt::Display) -> bool {
    lab.router
        .try_run(&format!("ping -q -n -c 1 -w 1 {target}"))
        .status
        .success()
}

#[test]
fn main_default_route_decides_the_wan_v4_and_v6() {
    let t = Instant::now();
    let lab = Lab::new();
    eprintln!("lab setup: {:?}", t.elapsed());

    // No main default: nothing leaves the LAN.
    assert_eq!(udp_via(&lab, Lab::SERVER_A.into(), 7001, 3), [0, 0]);

    lab.set_main_default(Wan::One);
    let before = lab.isp_forwarded_packets(Wan::One);
    for server in [IpAddr::from(Lab::SERVER_A), IpAddr::from(Lab::SERVER_A6)] {
        let got = udp_arrivals(&lab, server, 7002, N);
        assert_eq!(got.len(), N, "{server} via ISP 1: {got:?}");
        for a in &got {
            assert_eq!(a.via, Some(Wan::One), "{a:?}");
            assert_eq!(a.link, Some(Wan::One), "{a:?}");
            let nat = if server.is_ipv4() {
                IpAddr::from(Lab::nat_addr_v4(Wan::One))
            } else {
                IpAddr::from(Lab::nat_addr_v6(Wan::One))
            };
            assert_eq!(
                a.from.ip(),
                nat,
                "the internet sees the router's WAN address"
            );
        }
    }
    assert!(lab.isp_forwarded_packets(Wan::One) >= before + 2 * N as u64);
    assert_eq!(lab.isp_forwarded_packets(Wan::Two), 0);
    // The NAT flows are in the router's conntrack table.
    let ct = lab
        .router
        .run("conntrack -L -p udp --dport 7002 2>/dev/null");
    assert!(ct.contains("100.64.1.2"), "conntrack: {ct}");
    assert!(ct.contains("fd64:1::2"), "conntrack: {ct}");
    lab.flush_conntrack();

    lab.set_main_default(Wan::Two);
    for server in [IpAddr::from(Lab::SERVER_A), IpAddr::from(Lab::SERVER_A6)] {
        assert_eq!(udp_via(&lab, server, 7003, N), [0, N], "{server} via ISP 2");
    }
    assert!(lab.isp_forwarded_packets(Wan::Two) >= 2 * N as u64);
    // Probe targets answer through the chosen WAN.
    assert!(router_pings(&lab, Lab::PROBE_1));
    assert!(router_pings(&lab, Lab::PROBE_2_6));

    lab.clear_main_default();
    assert_eq!(udp_via(&lab, Lab::SERVER_B.into(), 7004, 3), [0, 0]);
}

#[test]
fn carrier_cut_keeps_the_router_side_admin_up() {
    let lab = Lab::new();
    lab.set_main_default(Wan::One);
    assert!(lab.carrier(Wan::One));

    lab.cut_carrier(Wan::One);
    assert!(!lab.carrier(Wan::One));
    let sys = lab.router.run("cat /sys/class/net/wan1/carrier");
    assert_eq!(sys.trim(), "0");
    let flags = link_flags(&lab, Wan::One);
    assert!(flags.contains("NO-CARRIER"), "{flags}");
    assert!(flags.contains(",UP") || flags.contains("<UP"), "{flags}");
    assert!(!flags.contains("LOWER_UP"), "{flags}");
    assert!(lab.carrier(Wan::Two), "only wan1 lost carrier");
    assert_eq!(udp_via(&lab, Lab::SERVER_A.into(), 7101, 5), [0, 0]);

    lab.restore_carrier(Wan::One);
    let flags = link_flags(&lab, Wan::One);
    assert!(flags.contains("LOWER_UP"), "{flags}");
    assert!(!flags.contains("NO-CARRIER"), "{flags}");
    for server in [IpAddr::from(Lab::SERVER_A), IpAddr::from(Lab::SERVER_A6)] {
        assert_eq!(
            udp_via(&lab, server, 7102, N),
            [N, 0],
            "{server} after restore"
        );
    }
}

#[test]
fn blackhole_upstream_is_silent_to_the_link() {
    let lab = Lab::new();
    lab.set_main_default(Wan::One);
    assert!(router_pings(&lab, Lab::PROBE_1));

    lab.blackhole_upstream(Wan::One);
    let before = lab.isp_forwarded_packets(Wan::One);
    assert!(lab.carrier(Wan::One), "carrier stays");
    for server in [IpAddr::from(Lab::SERVER_A), IpAddr::from(Lab::SERVER_A6)] {
        assert_eq!(
            udp_via(&lab, server, 7201, N),
            [0, 0],
            "{server} blackholed"
        );
    }
    assert_eq!(lab.isp_forwarded_packets(Wan::One), before);
    // The gateway still answers; only what lies beyond it is gone.
    assert!(router_pings(&lab, Lab::gateway_v4(Wan::One)));
    assert!(router_pings(&lab, Lab::gateway_v6(Wan::One)));
    assert!(!router_pings(&lab, Lab::PROBE_1));
    assert!(!router_pings(&lab, Lab::PROBE_1_6));
    // ISP 2 is untouched.
    lab.set_main_default(Wan::Two);
    assert_eq!(udp_via(&lab, Lab::SERVER_A.into(), 7202, N), [0, N]);
    lab.set_main_default(Wan::One);

    lab.restore_upstream(Wan::One);
    for server in [IpAddr::from(Lab::SERVER_A), IpAddr::from(Lab::SERVER_A6)] {
        assert_eq!(udp_via(&lab, server, 7203, N), [N, 0], "{server} restored");
    }
    assert!(lab.isp_forwarded_packets(Wan::One) >= before + 2 * N as u64);
}

fn assert_complete_in_order(got: &[steer_tests::lab::Arrival], sent: u64, w: Wan) {
    assert!(sent > 0);
    assert_eq!(got.len() as u64, sent, "no loss on a quiet lab");
    for (i, a) in got.iter().enumerate() {
        assert_eq!(a.seq, i as u64, "in order: {a:?}");
        assert_eq!((a.via, a.link), (Some(w), Some(w)), "{a:?}");
    }
    assert!(got.windows(2).all(|p| p[0].at <= p[1].at));
}

#[test]
fn stream_is_complete_in_order_and_bounded() {
    let lab = Lab::new();
    lab.set_main_default(Wan::One);

    // Bounded by max_duration: it stops by itself.
    let bound = Duration::from_millis(300);
    let s = Stream::start(
        &lab,
        Lab::SERVER_B.into(),
        7301,
        Duration::from_millis(1),
        bound,
    );
    let t = Instant::now();
    while !s.is_finished() {
        assert!(t.elapsed() < bound + Duration::from_secs(1), "stream bound");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = s.sent();
    assert!((100..=320).contains(&sent), "1 ms for 300 ms: sent {sent}");
    let first = s
        .first_via_after(Wan::One, s.started_at())
        .expect("arrivals");
    assert_eq!(first.seq, 0);
    assert!(s.first_via_after(Wan::Two, s.started_at()).is_none());
    assert!(s.last_via_before(Wan::One, Instant::now()).is_some());
    let got = s.stop();
    assert_complete_in_order(&got, sent, Wan::One);

    // stop() ends a long stream promptly; IPv6 through WAN 2.
    lab.set_main_default(Wan::Two);
    let s = Stream::start(
        &lab,
        Lab::SERVER_B6.into(),
        7302,
        Duration::from_millis(1),
        LONG,
    );
    std::thread::sleep(Duration::from_millis(150));
    let t = Instant::now();
    let sent_before_stop = s.sent();
    let got = s.stop();
    assert!(t.elapsed() < LONG / 10, "stop took {:?}", t.elapsed());
    assert!(got.len() as u64 >= sent_before_stop);
    let sent = got.len() as u64;
    assert_complete_in_order(&got, sent, Wan::Two);

    // Dropping a running stream joins its threads (bounded too).
    let s = Stream::start(
        &lab,
        Lab::SERVER_A.into(),
        7303,
        Duration::from_millis(1),
        LONG,
    );
    std::thread::sleep(Duration::from_millis(20));
    let t = Instant::now();
    drop(s);
    assert!(t.elapsed() < LONG / 10, "drop took {:?}", t.elapsed());
}

#[test]
fn labs_run_in_parallel_and_leave_nothing_behind() {
    let names: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = Wan::ALL
            .into_iter()
            .map(|w| {
                s.spawn(move || {
                    let lab = Lab::new();
                    lab.set_main_default(w);
                    let mut want = [0; 2];
                    want[w.index()] = N;
                    assert_eq!(udp_via(&lab, Lab::SERVER_A.into(), 7401, N), want);
                    assert_eq!(udp_via(&lab, Lab::SERVER_B6.into(), 7401, N), want);
                    let names = lab.namespace_names();
                    let listed = netns_list();
                    for n in &names {
                        assert!(
                            listed.contains(n.as_str()),
                            "{n} exists while the lab lives"
                        );
                    }
                    names
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(names.iter().flatten().count(), 10);
    let listed = netns_list();
    for n in names.iter().flatten() {
        assert!(
            !listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(n)),
            "{n} still listed after drop:\n{listed}"
        );
    }
}

#[test]
fn masquerade_moves_a_flow_with_its_route() {
    let lab = Lab::new();
    lab.set_main_default(Wan::One);
    let s = Stream::start(
        &lab,
        Lab::SERVER_A.into(),
        7501,
        Duration::from_millis(1),
        Duration::from_secs(5),
    );
    std::thread::sleep(Duration::from_millis(50));
    lab.set_main_default(Wan::Two);
    std::thread::sleep(Duration::from_millis(50));
    let got = s.stop();
    // The NAT binding follows the new output interface (masquerade drops the packet that
    // changed interface and kills its conntrack entry): no packet leaves with a stale address.
    assert!(
        got.iter().all(|a| a.via.is_some() && a.via == a.link),
        "{got:?}"
    );
    let before = got.iter().filter(|a| a.via == Some(Wan::One)).count();
    let after = got.iter().filter(|a| a.via == Some(Wan::Two)).count();
    assert!(before > 20 && after > 20, "{before} then {after}");
    // The flow moves once, in sending order: nothing sent after the first datagram via WAN 2
    // goes out WAN 1 again. (Ordered by sequence, not by clock: how long the route change
    // takes depends on the machine's load.)
    let last_via_one = got
        .iter()
        .filter(|a| a.via == Some(Wan::One))
        .map(|a| a.seq)
        .max();
    let first_via_two = got
        .iter()
        .filter(|a| a.via == Some(Wan::Two))
        .map(|a| a.seq)
        .min();
    assert!(last_via_one < first_via_two, "{got:?}");
    let lost = got.last().unwrap().seq + 1 - got.len() as u64;
    assert!(lost <= 2, "lost {lost} datagrams when the route moved");
}
