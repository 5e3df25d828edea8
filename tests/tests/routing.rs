//! `steer::routing` against the real kernel, in the lab's router namespace (never the host's):
//! reconciling rules and per-WAN tables, leaving foreign state alone, repairing drift, carrier
//! flaps, marked packets taking their WAN, netlink events and removal.

use std::{
    net::{IpAddr, UdpSocket},
    sync::mpsc,
    time::{Duration, Instant},
};

use steer::{
    model::Family,
    routing::{self, Change, Desired, NetEvent, ReconcileReport, Routing, futures::StreamExt},
};
use steer_tests::{
    daemon::{Daemon, Workdir, steer_in},
    lab::{
        Lab, Wan,
        sock::{enable_recverr, set_int_option, unbound_udp},
        udp_via,
    },
    netns::Netns,
    routing::{desired_from, lab_config, lab_desired, with_routing},
    scenario::{Options, Scenario, config_text},
};

/// How soon a carrier change reaches the watcher: netlink pushes it, nothing polls, so this only
/// bounds the wait on a loaded test machine.
const LINK_EVENT_WITHIN: Duration = Duration::from_secs(1);

/// A third WAN on an interface the lab does not have.
const WAN3: &str = r#"
[[wan]]
name = "wan3"
interface = "wan3"
mark = 0x300
table = 103
gateway = "100.64.3.1"
[wan.track]
targets = ["192.0.2.1"]
"#;

/// `ip -j <family> rule` entries with protocol 201, as `ip rule`-like lines.
fn steer_rules(ns: &Netns, family: &str) -> Vec<String> {
    let out = ns.run(&format!("ip -j {family} rule show"));
    let rules: serde_json::Value = serde_json::from_str(&out).expect("ip -j rule");
    let mut lines: Vec<String> = rules
        .as_array()
        .expect("an array")
        .iter()
        .filter(|r| r["protocol"].as_str() == Some("201") || r["protocol"].as_u64() == Some(201))
        .map(|r| {
            let prio = &r["priority"];
            let mark = r["fwmark"].as_str().unwrap_or("?");
            let mask = r["fwmask"].as_str().unwrap_or("?");
            let action = match r["action"].as_str() {
                Some(a) => a.to_owned(),
                None => format!("lookup {}", r["table"].as_str().unwrap_or("?")),
            };
            format!("{prio} fwmark {mark}/{mask} {action}")
        })
        .collect();
    lines.sort();
    lines
}

fn all_rules(ns: &Netns) -> String {
    ns.run("ip -4 rule show; ip -6 rule show")
}

const WANT_RULES: [&str; 4] = [
    "1090 fwmark 0xff00/0xff00 unreachable",
    "1091 fwmark 0xfe00/0xff00 blackhole",
    "1100 fwmark 0x100/0xff00 lookup 101",
    "1101 fwmark 0x200/0xff00 lookup 102",
];

/// `ip route show table <t>` (or `ip -6 ...`), trimmed lines. A table that does not exist is
/// empty.
fn table(ns: &Netns, family: &str, t: u32) -> Vec<String> {
    let out = ns.try_run(&format!("ip {family} route show table {t}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// Asserts the kernel holds exactly the lab's desired rules and routes.
fn assert_exactly_desired(lab: &Lab) {
    let r = &lab.router;
    assert_eq!(steer_rules(r, "-4"), WANT_RULES, "{}", all_rules(r));
    assert_eq!(steer_rules(r, "-6"), WANT_RULES, "{}", all_rules(r));
    assert_eq!(
        table(r, "-4", 101),
        ["default via 100.64.1.1 dev wan1 proto 201"]
    );
    assert_eq!(
        table(r, "-4", 102),
        ["default via 100.64.2.1 dev wan2 proto 201"]
    );
    assert_eq!(
        table(r, "-6", 101),
        ["default via fd64:1::1 dev wan1 proto 201 metric 1024 pref medium"]
    );
    assert_eq!(
        table(r, "-6", 102),
        ["default via fd64:2::1 dev wan2 proto 201 metric 1024 pref medium"]
    );
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn lines(changes: &[Change]) -> Vec<String> {
    changes.iter().map(ToString::to_string).collect()
}

fn assert_quiet(report: &ReconcileReport, what: &str) {
    assert!(
        report.is_empty(),
        "{what}: expected no changes, got {:#?} {:#?}",
        report.changes,
        report.failures
    );
}

#[test]
fn fresh_reconcile_creates_exactly_the_desired_state_and_then_nothing() {
    let lab = Lab::new();
    let desired = lab_desired();
    assert_eq!(desired.rules.len(), 8);
    assert_eq!(desired.routes.len(), 4);
    assert_eq!(desired.tables, [101, 102]);

    let (first, second, status) = with_routing(&lab, async |rt| {
        let before = rt.status(&desired).await;
        assert!(!before.in_sync);
        assert!(
            before
                .items
                .contains(&"rule 1100 fwmark 0x100/0xff00 lookup 101 (v4): missing".to_owned()),
            "{:#?}",
            before.items
        );
        let first = rt.reconcile(&desired).await;
        let second = rt.reconcile(&desired).await;
        // Something steer had put in place goes: that is drift, repaired.
        lab.router
            .run("ip rule del pref 1100 fwmark 0x100/0xff00 lookup 101");
        let repair = rt.reconcile(&desired).await;
        assert_eq!(
            repair.changes,
            ["repaired: rule 1100 fwmark 0x100/0xff00 lookup 101 (v4) was missing"]
        );
        // An item no longer desired (its WAN removed by a reload) that comes back later is
        // new again, not drift.
        let mut without = desired.clone();
        without
            .rules
            .retain(|r| !(r.priority == 1100 && r.family == Family::V4));
        rt.reconcile(&without).await;
        let back = rt.reconcile(&desired).await;
        assert_eq!(
            back.changes,
            ["created: rule 1100 fwmark 0x100/0xff00 lookup 101 (v4)"]
        );
        (first, second, rt.status(&desired).await)
    });
    assert!(first.failures.is_empty(), "{:#?}", first.failures);
    assert_eq!(
        sorted(lines(&first.changes)),
        sorted(vec![
            "created: route default via 100.64.1.1 dev wan1 table 101 (v4)".into(),
            "created: route default via fd64:1::1 dev wan1 table 101 (v6)".into(),
            "created: route default via 100.64.2.1 dev wan2 table 102 (v4)".into(),
            "created: route default via fd64:2::1 dev wan2 table 102 (v6)".into(),
            "created: rule 1090 fwmark 0xff00/0xff00 unreachable (v4)".into(),
            "created: rule 1091 fwmark 0xfe00/0xff00 blackhole (v4)".into(),
            "created: rule 1100 fwmark 0x100/0xff00 lookup 101 (v4)".into(),
            "created: rule 1101 fwmark 0x200/0xff00 lookup 102 (v4)".into(),
            "created: rule 1090 fwmark 0xff00/0xff00 unreachable (v6)".into(),
            "created: rule 1091 fwmark 0xfe00/0xff00 blackhole (v6)".into(),
            "created: rule 1100 fwmark 0x100/0xff00 lookup 101 (v6)".into(),
            "created: rule 1101 fwmark 0x200/0xff00 lookup 102 (v6)".into(),
        ])
    );
    assert_quiet(&second, "second reconcile");
    assert!(status.in_sync, "{:#?}", status.items);
    assert_eq!(status.items.len(), 12);
    assert!(
        status.items.iter().all(|i| i.ends_with(": ok")),
        "{:#?}",
        status.items
    );
    assert_exactly_desired(&lab);
    // `ip rule` shows them with protocol 201.
    let rules = lab.router.run("ip rule show");
    assert!(
        rules.contains("1100:\tfrom all fwmark 0x100/0xff00 lookup 101 proto 201"),
        "{rules}"
    );
}

#[test]
fn foreign_rules_and_routes_are_never_touched() {
    let lab = Lab::new();
    let desired = lab_desired();
    let r = &lab.router;
    r.run(
        "ip rule add fwmark 0x5 lookup 200 pref 1100 && \
         ip -6 rule add fwmark 0x5 lookup 200 pref 1100 && \
         ip rule add fwmark 0x100/0xff00 lookup 101 pref 1095 && \
         ip route add 198.51.100.0/24 via 100.64.1.1 dev wan1 table 200 && \
         ip route add default via 100.64.2.1 dev wan2 table 200 && \
         ip route add 198.51.100.0/24 via 100.64.2.1 dev wan2 && \
         ip -6 route add 2001:db8:51::/48 via fd64:1::1 dev wan1",
    );
    let foreign_rules = |r: &Netns| {
        let all = all_rules(r);
        let lines: Vec<String> = all
            .lines()
            .filter(|l| !l.contains("proto 201"))
            .map(str::to_owned)
            .collect();
        lines
    };
    let rules_before = foreign_rules(r);
    assert_eq!(
        rules_before
            .iter()
            .filter(|l| l.contains("lookup 200"))
            .count(),
        2,
        "{rules_before:?}"
    );
    let main_before = (table(r, "-4", 254), table(r, "-6", 254));
    let t200_before = table(r, "-4", 200);
    assert_eq!(t200_before.len(), 2);

    let (first, second) = with_routing(&lab, async |rt| {
        (rt.reconcile(&desired).await, rt.reconcile(&desired).await)
    });
    assert!(first.failures.is_empty(), "{:#?}", first.failures);
    assert_eq!(first.changes.len(), 12, "{:#?}", first.changes);
    assert_quiet(&second, "second reconcile");
    assert_exactly_desired(&lab);
    assert_eq!(foreign_rules(r), rules_before);
    assert_eq!((table(r, "-4", 254), table(r, "-6", 254)), main_before);
    assert_eq!(table(r, "-4", 200), t200_before);

    // remove_all: nothing of steer's is left, everything else is.
    let removed = with_routing(&lab, async |rt| rt.remove_all(&desired.tables).await);
    assert!(removed.failures.is_empty(), "{:#?}", removed.failures);
    assert_eq!(removed.changes.len(), 12, "{:#?}", removed.changes);
    assert!(
        removed
            .changes
            .iter()
            .any(|c| c == "removed: route default via fd64:2::1 dev wan2 table 102 (v6)"),
        "{:#?}",
        removed.changes
    );
    assert!(steer_rules(r, "-4").is_empty(), "{}", all_rules(r));
    assert!(steer_rules(r, "-6").is_empty(), "{}", all_rules(r));
    for t in [101, 102] {
        assert!(table(r, "-4", t).is_empty());
        assert!(table(r, "-6", t).is_empty());
    }
    assert_eq!(foreign_rules(r), rules_before);
    assert_eq!((table(r, "-4", 254), table(r, "-6", 254)), main_before);
    assert_eq!(table(r, "-4", 200), t200_before);
    // And a second removal finds nothing.
    let again = with_routing(&lab, async |rt| rt.remove_all(&desired.tables).await);
    assert_quiet(&again, "second remove_all");
}

#[test]
fn drift_is_repaired_and_reported() {
    let lab = Lab::new();
    let desired = lab_desired();
    let r = &lab.router;
    let first = with_routing(&lab, async |rt| rt.reconcile(&desired).await);
    assert!(first.failures.is_empty(), "{:#?}", first.failures);

    // A rule deleted by hand.
    r.run("ip rule del pref 1101");
    // The route's gateway changed by hand (no gateway at all), and a second route.
    r.run("ip route replace default dev wan1 table 101");
    r.run("ip route add default via 100.64.2.1 dev wan2 table 101 metric 50");
    // IPv6: another gateway by hand, and a route deleted.
    r.run("ip -6 route replace default via fe80::1 dev wan1 table 101");
    r.run("ip -6 route del default table 102");
    // A stale steer rule (a WAN since removed from the config) and that WAN's route.
    r.run("ip rule add fwmark 0x300/0xff00 lookup 103 pref 1102 proto 201");
    r.run("ip route add default via 100.64.2.1 dev wan2 table 103 proto 201");
    let (status, report, again, after) = with_routing(&lab, async |rt| {
        let status = rt.status(&desired).await;
        let report = rt.reconcile(&desired).await;
        let again = rt.reconcile(&desired).await;
        (status, report, again, rt.status(&desired).await)
    });
    assert!(!status.in_sync);
    for item in [
        "rule 1101 fwmark 0x200/0xff00 lookup 102 (v4): missing",
        "route default via 100.64.1.1 dev wan1 table 101 (v4): differs: found route default dev wan1 scope link table 101 proto boot (v4)",
        "route default via fd64:1::1 dev wan1 table 101 (v6): differs: found route default via fe80::1 dev wan1 table 101 proto boot (v6)",
        "route default via fd64:2::1 dev wan2 table 102 (v6): missing",
        "stale: rule 1102 fwmark 0x300/0xff00 lookup 103 (v4)",
        "stale: route default via 100.64.2.1 dev wan2 table 101 proto boot metric 50 (v4)",
        "stale: route default via 100.64.2.1 dev wan2 table 103 (v4)",
    ] {
        assert!(
            status.items.contains(&item.to_owned()),
            "{item}\nin {:#?}",
            status.items
        );
    }
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert_eq!(
        sorted(lines(&report.changes)),
        sorted(vec![
            "created: rule 1101 fwmark 0x200/0xff00 lookup 102 (v4)".into(),
            "replaced: route default dev wan1 scope link table 101 proto boot (v4) with \
             route default via 100.64.1.1 dev wan1 table 101 (v4)"
                .into(),
            "replaced: route default via fe80::1 dev wan1 table 101 proto boot (v6) with \
             route default via fd64:1::1 dev wan1 table 101 (v6)"
                .into(),
            "created: route default via fd64:2::1 dev wan2 table 102 (v6)".into(),
            "removed stale: rule 1102 fwmark 0x300/0xff00 lookup 103 (v4)".into(),
            "removed stale: route default via 100.64.2.1 dev wan2 table 101 proto boot metric 50 (v4)"
                .into(),
            "removed stale: route default via 100.64.2.1 dev wan2 table 103 (v4)".into(),
        ])
    );
    assert_quiet(&again, "reconcile after the repair");
    assert!(after.in_sync, "{:#?}", after.items);
    assert_exactly_desired(&lab);
    assert!(table(r, "-4", 103).is_empty());
}

#[test]
fn missing_or_down_interfaces_fail_and_recover() {
    let lab = Lab::new();
    let desired = desired_from(&format!("{}{WAN3}", lab_config()));
    let r = &lab.router;
    let report = with_routing(&lab, async |rt| rt.reconcile(&desired).await);
    assert_eq!(
        report.failures,
        [
            "failed: route default via 100.64.3.1 dev wan3 table 103 (v4): interface wan3 does not \
          exist; retrying on the next link or address event and at every periodic check"
        ]
    );
    // Everything else is in place, the rule for wan3 included.
    assert_eq!(report.changes.len(), 14, "{:#?}", report.changes);

    r.run(
        "ip link add wan3 type veth peer name wan3p && ip addr add 100.64.3.2/30 dev wan3 && \
         ip link set wan3 up && ip link set wan3p up && ip link set wan2 down",
    );
    let (down, again, status) = with_routing(&lab, async |rt| {
        (
            rt.reconcile(&desired).await,
            rt.reconcile(&desired).await,
            rt.status(&desired).await,
        )
    });
    assert_eq!(
        down.changes,
        ["created: route default via 100.64.3.1 dev wan3 table 103 (v4)"]
    );
    // The kernel removed wan2's routes when it went down; they cannot come back yet. That is
    // not a failure: they wait for the link, said once, and are not tried again until it
    // changes (a periodic check said it as an error every 10 s).
    assert!(down.failures.is_empty(), "{:#?}", down.failures);
    assert_eq!(down.waiting.len(), 2, "{:#?}", down.waiting);
    assert!(
        down.waiting[0].starts_with(
            "route default via 100.64.2.1 dev wan2 table 102 (v4) waits for wan2 to come up \
             (wan2 is down; the kernel said: "
        ) && down.waiting[0].ends_with("): placed when it does"),
        "{:#?}",
        down.waiting
    );
    assert_quiet(&again, "a reconcile while wan2 is still down");
    assert!(
        status.items.contains(
            &"route default via 100.64.2.1 dev wan2 table 102 (v4): missing (interface wan2 is down)"
                .to_owned()
        ),
        "{:#?}",
        status.items
    );

    r.run("ip link set wan2 up");
    let up = with_routing(&lab, async |rt| {
        // IPv6 needs the link's address back before its gateway is reachable: retry like the
        // daemon does on the next events.
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut report = rt.reconcile(&desired).await;
        let mut changes = report.changes.clone();
        while !report.failures.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            report = rt.reconcile(&desired).await;
            changes.extend(report.changes.clone());
        }
        (report, changes)
    });
    assert!(up.0.failures.is_empty(), "{:#?}", up.0.failures);
    assert_eq!(
        sorted(lines(&up.1)),
        [
            "created: route default via 100.64.2.1 dev wan2 table 102 (v4)",
            "created: route default via fd64:2::1 dev wan2 table 102 (v6)",
        ]
    );
    assert_eq!(
        table(r, "-4", 103),
        ["default via 100.64.3.1 dev wan3 proto 201"]
    );
    assert_eq!(
        table(r, "-4", 102),
        ["default via 100.64.2.1 dev wan2 proto 201"]
    );
}

/// Runs a reconciler in the router namespace: it reconciles once, then after every event
/// `watch()` yields, until told to stop; returns the number of reconciles and every failure.
fn spawn_reconciler(
    lab: &Lab,
    desired: Desired,
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<(usize, Vec<String>)>,
) {
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel();
    let handle = lab.router.spawn_async(move || async move {
        let rt = Routing::new().expect("routing");
        let mut events = routing::watch().expect("watch");
        let mut failures = Vec::new();
        let report = rt.reconcile(&desired).await;
        failures.extend(report.failures);
        ready_tx.send(()).unwrap();
        let mut n = 1;
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                ev = events.next() => {
                    ev.expect("the event stream does not end");
                    let report = rt.reconcile(&desired).await;
                    for line in &report.changes {
                        eprintln!("reconcile {n}: {line}");
                    }
                    failures.extend(report.failures);
                    n += 1;
                }
            }
        }
        (n, failures)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("reconciler started");
    (stop_tx, handle)
}

#[test]
fn carrier_flaps_leave_no_linkdown_route() {
    let lab = Lab::new();
    let desired = lab_desired();
    let (stop, reconciler) = spawn_reconciler(&lab, desired.clone());
    let mut saw_linkdown = false;
    for _ in 0..20 {
        lab.cut_carrier(Wan::One);
        saw_linkdown |= table(&lab.router, "-4", 101)
            .iter()
            .any(|l| l.contains("linkdown"));
        lab.restore_carrier(Wan::One);
    }
    assert!(
        saw_linkdown,
        "the kernel flags routes linkdown while carrier is off"
    );
    // Let the last events be handled.
    std::thread::sleep(Duration::from_millis(300));
    stop.send(()).unwrap();
    let (reconciles, failures) = reconciler.join().unwrap();
    eprintln!("{reconciles} reconciles, failures while flapping: {failures:#?}");
    assert!(reconciles > 20, "reconciled on events: {reconciles}");

    let r = &lab.router;
    for (fam, t) in [("-4", 101), ("-6", 101), ("-4", 102), ("-6", 102)] {
        let routes = table(r, fam, t);
        assert!(
            routes.iter().all(|l| !l.contains("linkdown")),
            "table {t} {fam}: {routes:?}"
        );
    }
    assert_exactly_desired(&lab);
    let (report, status) = with_routing(&lab, async |rt| {
        (rt.reconcile(&desired).await, rt.status(&desired).await)
    });
    assert_quiet(&report, "reconcile after flapping");
    assert!(status.in_sync, "{:#?}", status.items);
}

/// Sends one UDP datagram with `mark` from the router to `server:port`.
fn send_marked(server: IpAddr, port: u16, mark: u32) -> std::io::Result<usize> {
    let sock = unbound_udp(server);
    set_int_option(&sock, libc::SOL_SOCKET, libc::SO_MARK, mark as libc::c_int)
        .unwrap_or_else(|e| panic!("SO_MARK {mark:#x}: {e}"));
    sock.send_to(b"steer routing test", (server, port))
}

/// The source address of the next datagram `sock` receives, if one comes within `wait`.
fn received_from(sock: &UdpSocket, wait: Duration) -> Option<IpAddr> {
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 64];
    sock.recv_from(&mut buf).ok().map(|(_, from)| from.ip())
}

#[test]
fn marked_packets_take_their_wan() {
    let lab = Lab::new();
    let desired = lab_desired();
    let report = with_routing(&lab, async |rt| rt.reconcile(&desired).await);
    assert!(report.failures.is_empty(), "{:#?}", report.failures);

    // Locally generated traffic from the router (the main table has no default route: only
    // steer's rules can send it anywhere).
    for (server, port) in [
        (IpAddr::from(Lab::SERVER_A), 7401),
        (Lab::SERVER_A6.into(), 7402),
    ] {
        let listener = lab
            .internet
            .enter(|| UdpSocket::bind((server, port)).expect("bind in the internet namespace"));
        for (mark, wan) in [
            (0x200, Wan::Two),
            (0x100, Wan::One),
            (0x0001_0207, Wan::Two),
        ] {
            let before = lab.isp_forwarded_packets(wan);
            lab.router
                .enter(|| send_marked(server, port, mark))
                .unwrap_or_else(|e| panic!("send with mark {mark:#x} to {server}: {e}"));
            let from = received_from(&listener, Duration::from_secs(2))
                .unwrap_or_else(|| panic!("mark {mark:#x} to {server}: nothing arrived"));
            assert_eq!(
                Lab::wan_of_nat_addr(from),
                Some(wan),
                "mark {mark:#x} to {server}: arrived from {from}"
            );
            assert_eq!(lab.isp_forwarded_packets(wan), before + 1);
        }
        // Unmarked: no route at all.
        let err = lab
            .router
            .enter(|| send_marked(server, port, 0))
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH), "{err}");
        // The unreachable mark is refused at once.
        let err = lab
            .router
            .enter(|| send_marked(server, port, 0xff00))
            .unwrap_err();
        assert!(
            matches!(
                err.raw_os_error(),
                Some(libc::ENETUNREACH | libc::EHOSTUNREACH)
            ),
            "unreachable mark: {err}"
        );
        // The blackhole mark goes nowhere (a local sender learns EINVAL from the lookup).
        let sent = lab.router.enter(|| send_marked(server, port, 0xfe00));
        assert!(
            sent.as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(libc::EINVAL)),
            "blackhole mark: {sent:?}"
        );
        assert_eq!(received_from(&listener, Duration::from_millis(300)), None);
    }

    // Forwarded traffic from the LAN client, marked by an nftables rule in the router's
    // prerouting hook (where the classifier would stamp it).
    let set_mark = |mark: u32| {
        lab.router.run(&format!(
            "nft delete table inet steer_routing_test 2>/dev/null; nft -f - <<'EOF'\n\
             table inet steer_routing_test {{\n\
               chain prerouting {{\n\
                 type filter hook prerouting priority mangle; policy accept;\n\
                 iifname \"lan0\" meta mark set {mark:#x}\n\
               }}\n\
             }}\n\
             EOF"
        ));
    };
    set_mark(0x200);
    assert_eq!(udp_via(&lab, Lab::SERVER_A.into(), 7403, 5), [0, 5]);
    assert_eq!(udp_via(&lab, Lab::SERVER_A6.into(), 7404, 5), [0, 5]);
    set_mark(0x100);
    assert_eq!(udp_via(&lab, Lab::SERVER_B.into(), 7405, 5), [5, 0]);
    assert_eq!(udp_via(&lab, Lab::SERVER_B6.into(), 7406, 5), [5, 0]);

    // Last resorts, forwarded: unreachable answers with ICMP, blackhole is silent.
    // The client learns about "network unreachable" (a soft ICMP error) with IP_RECVERR.
    let client_send = |server: IpAddr, port: u16| -> std::io::Result<()> {
        lab.client.enter(|| {
            let sock = unbound_udp(server);
            enable_recverr(&sock, server.is_ipv6()).expect("IP_RECVERR/IPV6_RECVERR");
            sock.connect((server, port))?;
            sock.set_read_timeout(Some(Duration::from_millis(500)))?;
            sock.send(b"x")?;
            let mut buf = [0u8; 16];
            sock.recv(&mut buf).map(|_| ())
        })
    };
    let forwarded = [
        lab.isp_forwarded_packets(Wan::One),
        lab.isp_forwarded_packets(Wan::Two),
    ];
    set_mark(0xff00);
    for (server, port) in [
        (IpAddr::from(Lab::SERVER_A), 7407),
        (Lab::SERVER_A6.into(), 7408),
    ] {
        let err = client_send(server, port).unwrap_err();
        assert!(
            matches!(
                err.raw_os_error(),
                Some(libc::ENETUNREACH | libc::EHOSTUNREACH)
            ),
            "unreachable mark, forwarded to {server}: {err}"
        );
    }
    set_mark(0xfe00);
    for (server, port) in [
        (IpAddr::from(Lab::SERVER_A), 7409),
        (Lab::SERVER_A6.into(), 7410),
    ] {
        let err = client_send(server, port).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "blackhole mark, forwarded to {server}: silence expected, got {err}"
        );
    }
    assert_eq!(
        [
            lab.isp_forwarded_packets(Wan::One),
            lab.isp_forwarded_packets(Wan::Two)
        ],
        forwarded,
        "nothing left through a WAN"
    );
}

#[test]
fn watch_reports_carrier_and_routing_changes() {
    let lab = Lab::new();
    let (tx, rx) = mpsc::channel::<(Instant, NetEvent)>();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel();
    let watcher = lab.router.spawn_async(move || async move {
        let mut events = routing::watch().expect("watch");
        ready_tx.send(()).unwrap();
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                ev = events.next() => {
                    let ev = ev.expect("the event stream does not end");
                    if tx.send((Instant::now(), ev)).is_err() {
                        break;
                    }
                }
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let wan1 = with_routing(&lab, async |rt| rt.link_state("wan1").await).expect("wan1 exists");
    assert!(
        wan1.1 && wan1.2,
        "wan1 starts with carrier and up: {wan1:?}"
    );
    assert_eq!(
        with_routing(&lab, async |rt| rt.link_state("nosuchlink").await),
        None
    );

    let wait_for = |what: &str, pred: &dyn Fn(&NetEvent) -> bool, within: Duration| {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((at, ev)) if pred(&ev) => return at,
                Ok((_, ev)) => seen.push(ev),
                Err(_) => panic!("no {what} within {within:?}; saw {seen:?}"),
            }
        }
    };
    let is_wan1 = |carrier: bool| {
        move |ev: &NetEvent| {
            matches!(ev, NetEvent::Link { index, name, carrier: c, admin_up: true }
                if name == "wan1" && *index == wan1.0 && *c == carrier)
        }
    };

    while rx.try_recv().is_ok() {}
    lab.cut_carrier(Wan::One);
    let returned = Instant::now();
    let at = wait_for(
        "carrier-off event for wan1",
        &is_wan1(false),
        LINK_EVENT_WITHIN,
    );
    assert!(at <= returned + LINK_EVENT_WITHIN);
    assert_eq!(
        with_routing(&lab, async |rt| rt.link_state("wan1").await),
        Some((wan1.0, false, true))
    );

    lab.restore_carrier(Wan::One);
    let returned = Instant::now();
    let at = wait_for(
        "carrier-on event for wan1",
        &is_wan1(true),
        LINK_EVENT_WITHIN,
    );
    assert!(at <= returned + LINK_EVENT_WITHIN);

    while rx.try_recv().is_ok() {}
    lab.router
        .run("ip route add 198.51.100.0/24 via 100.64.1.1 dev wan1 table 200");
    wait_for(
        "Changed after a route was added",
        &|ev| *ev == NetEvent::Changed,
        Duration::from_millis(500),
    );
    lab.router
        .run("ip rule add fwmark 0x7 lookup 200 pref 3000");
    wait_for(
        "Changed after a rule was added",
        &|ev| *ev == NetEvent::Changed,
        Duration::from_millis(500),
    );

    lab.router.run("ip link add wanx type veth peer name wanxp");
    let index = with_routing(&lab, async |rt| rt.link_state("wanx").await)
        .expect("wanx")
        .0;
    lab.router.run("ip link del wanx");
    wait_for(
        "LinkGone for wanx",
        &|ev| {
            *ev == NetEvent::LinkGone {
                index,
                name: "wanx".into(),
            }
        },
        Duration::from_millis(500),
    );

    stop_tx.send(()).unwrap();
    watcher.join().unwrap();
}

/// `[ipv6] mode = "source"`, appended to a configuration whose WANs carry their `prefix6`.
const SOURCE_MODE: &str = "\n[ipv6]\nmode = \"source\"\n";

#[test]
fn source_rules_send_each_prefix_to_its_wan_after_the_main_tables_specific_routes() {
    let lab = Lab::new();
    let config = lab_config()
        .replacen(
            "table = 101\n",
            "table = 101\nprefix6 = \"2001:db8:1::/56\"\n",
            1,
        )
        .replacen(
            "table = 102\n",
            "table = 102\nprefix6 = \"2001:db8:2::/60\"\n",
            1,
        );
    let desired = desired_from(&format!("{config}{SOURCE_MODE}"));
    let (first, second, after_drift) = with_routing(&lab, async |rt| {
        let first = rt.reconcile(&desired).await;
        let second = rt.reconcile(&desired).await;
        lab.router
            .run("ip -6 rule del pref 1052 from 2001:db8:2::/60 lookup 102");
        let repair = rt.reconcile(&desired).await;
        (first, second, repair)
    });
    assert!(first.failures.is_empty(), "{:#?}", first.failures);
    for created in [
        "created: rule 1050 lookup 254 suppress_prefixlength 0 (v6)",
        "created: rule 1051 from 2001:db8:1::/56 lookup 101 (v6)",
        "created: rule 1052 from 2001:db8:2::/60 lookup 102 (v6)",
    ] {
        assert!(
            first.changes.iter().any(|c| c == created),
            "{created} in {:#?}",
            first.changes
        );
    }
    assert_quiet(&second, "second reconcile");
    assert_eq!(
        after_drift.changes,
        ["repaired: rule 1052 from 2001:db8:2::/60 lookup 102 (v6) was missing"]
    );
    let rules = lab.router.run("ip -6 rule show");
    for line in [
        "1050:\tfrom all lookup main suppress_prefixlength 0 proto 201",
        "1051:\tfrom 2001:db8:1::/56 lookup 101 proto 201",
        "1052:\tfrom 2001:db8:2::/60 lookup 102 proto 201",
    ] {
        assert!(rules.contains(line), "{line} in\n{rules}");
    }
    // The kernel's routing decision: a wan1-prefix source to the internet takes wan1 however
    // it is marked; to the LAN it stays on the LAN.
    let get = |args: &str| lab.router.run(&format!("ip -6 route get {args}"));
    let out = get("2001:db8:ff::1 from 2001:db8:1::2 iif lan0 mark 0x200");
    assert!(
        out.contains("dev wan1") && out.contains("table 101"),
        "{out}"
    );
    let out = get("fd10::2 from 2001:db8:2::2 iif lan0");
    assert!(out.contains("dev lan0"), "{out}");
    // The IPv4 rules do not change.
    assert_eq!(steer_rules(&lab.router, "-4"), WANT_RULES);
}

/// A rule of someone else's that the kernel reaches before steer's rule for a WAN's mark (a
/// leftover of mwan3 at the same priority, added first) takes that WAN's packets: `steer
/// status` warns about it (it said `ok`), the log says it once, `steer explain` notes it
/// under the WAN it names, and steer leaves the rule alone. Once it is deleted, the warnings go.
#[test]
fn a_foreign_rule_before_steers_mark_rule_is_warned_about_not_removed() {
    let leftover = "ip rule add fwmark 0x100/0xff00 lookup 99 pref 1100";
    let s = steer_tests::scenario::Scenario::start_on(
        "shadowed",
        &steer_tests::scenario::Options::default(),
        Lab::LAN_IFACE,
        |lab| {
            lab.router.run(&format!(
                "{leftover} && ip route add default via {} dev wan2 table 99",
                Lab::gateway_v4(Wan::Two)
            ));
        },
    );
    let warning = "rule 1100 fwmark 0x100/0xff00 lookup 99 proto 0 (v4) is not steer's and \
                   comes before steer's rule 1100 fwmark 0x100/0xff00 lookup 101 (v4): packets \
                   with mark 0x100 are routed by it";
    let status = s.steer(&["status"]);
    assert!(
        status.contains(&format!("warning: {warning}")),
        "{status}\n{}",
        s.daemon.log_text()
    );
    s.daemon.wait_log(warning, Duration::from_secs(5));
    let explain = s.steer(&["explain", "8.8.8.8", "--src", "10.10.0.2"]);
    assert!(
        explain.contains("wan      wan1\n         but rule 1100 fwmark 0x100/0xff00 lookup 99 proto 0 (v4), not steer's, comes before steer's rule for mark 0x100"),
        "{explain}"
    );
    // Not wan2's packets: its rule comes first.
    let explain2 = s.steer(&[
        "explain",
        Lab::SERVER_B.to_string().as_str(),
        "--src",
        "10.10.0.2",
    ]);
    assert!(explain2.contains("wan      wan2"), "{explain2}");
    assert!(!explain2.contains("but rule"), "{explain2}");
    // A reconcile at every event: said once.
    s.lab
        .router
        .run("ip rule add fwmark 0x7 lookup 98 pref 3000 && ip rule del pref 3000");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        s.daemon.log_text().matches(warning).count(),
        1,
        "{}",
        s.daemon.log_text()
    );
    assert!(
        all_rules(&s.lab.router).contains("1100:\tfrom all fwmark 0x100/0xff00 lookup 99"),
        "{}",
        all_rules(&s.lab.router)
    );

    s.lab
        .router
        .run("ip rule del pref 1100 fwmark 0x100/0xff00 lookup 99");
    let status = s.steer(&["status"]);
    assert!(!status.contains("warning: rule 1100"), "{status}");
    let explain = s.steer(&["explain", "8.8.8.8", "--src", "10.10.0.2"]);
    assert!(!explain.contains("but rule"), "{explain}");
}

/// Tailscale's routing as it sets it up on a router: its route in table 52, its bypass mark
/// (0x80000/0xff0000) to the main and default tables (else unreachable), and `from all lookup
/// 52` for everything else.
fn tailscale(lab: &Lab) {
    lab.router.run(
        "ip link add ts0 type veth peer name ts0p && ip link set ts0 up && ip link set ts0p up && \
         ip route add 100.100.100.100 dev ts0 table 52 && \
         ip rule add pref 5210 fwmark 0x80000/0xff0000 lookup main && \
         ip rule add pref 5230 fwmark 0x80000/0xff0000 lookup default && \
         ip rule add pref 5250 fwmark 0x80000/0xff0000 unreachable && \
         ip rule add pref 5270 lookup 52",
    );
}

/// `steer check -c <the scenario's configuration>` on the router: (success, stdout + stderr).
fn check_on_router(s: &Scenario) -> (bool, String) {
    let out = steer_in(&s.lab.router)
        .args(["check", "-c"])
        .arg(s.work.config())
        .output()
        .expect("run steer check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A WAN given the table of another tool (Tailscale's 52: its rule looks it up, its route is
/// there) is refused by `steer check` on the router and by a reload, which changes nothing. A
/// start with it goes on (the other WAN must fail over) but leaves that table alone, says so in
/// the log once and in `steer status`: steer's default route never lands where that tool's
/// rule finds it, and the tool's route is never removed, even while the tool replaces it.
#[test]
fn a_wan_table_another_tool_uses_is_refused_and_never_taken_over() {
    let mut s = Scenario::start_on(
        "table-in-use",
        &Options::default(),
        Lab::LAN_IFACE,
        tailscale,
    );
    let theirs = table(&s.lab.router, "-4", 52);
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    let text = config_text(&s.work, &Options::default()).replace("table = 102", "table = 52");
    s.work.write("steer.toml", &text);

    let (ok, out) = check_on_router(&s);
    assert!(!ok, "{out}");
    for needle in [
        "wan[wan2].table = 52: table 52 is used by another tool: rule 5270 lookup 52 proto",
        "not steer's, looks it up, and it holds routes steer did not make: route \
         100.100.100.100/32 dev ts0 scope link table 52 proto boot (v4)",
        "pick another `table` number for WAN wan2",
        "1 error(s)",
    ] {
        assert!(out.contains(needle), "{needle}\nin:\n{out}");
    }

    let rules_before = all_rules(&s.lab.router);
    let (ok, out, err) = s.work.steer(&["reload"]);
    assert!(!ok, "{out}{err}");
    assert!(
        err.contains("wan[wan2].table = 52: table 52 is used by another tool"),
        "{err}"
    );
    assert_eq!(all_rules(&s.lab.router), rules_before);
    assert_eq!(table(&s.lab.router, "-4", 52), theirs);
    assert_eq!(
        table(&s.lab.router, "-4", 102),
        ["default via 100.64.2.1 dev wan2 proto 201"]
    );

    // A start with that file (after a crash: steer's old rules and routes are still there).
    s.daemon.kill9();
    s.daemon = Daemon::start(&s.lab.router, &s.work);
    let warning = "wan[wan2].table = 52: table 52 is used by another tool";
    s.daemon
        .wait_log("steer leaves table 52 alone", Duration::from_secs(10));
    let status = s.steer(&["status"]);
    for needle in [
        "warning: ",
        "steer leaves table 52 alone",
        "rule 1101 fwmark 0x200/0xff00 lookup 52 (v4): withheld: table 52 is another tool's",
    ] {
        assert!(status.contains(needle), "{needle}\nin:\n{status}");
    }
    let r = &s.lab.router;
    assert_eq!(table(r, "-4", 52), theirs);
    assert!(table(r, "-6", 52).is_empty());
    assert!(
        table(r, "-4", 102).is_empty(),
        "steer's old table is cleaned up"
    );
    assert!(
        !all_rules(r).contains("lookup 52 proto 201"),
        "{}",
        all_rules(r)
    );
    let got = r.try_run("ip route get 8.8.8.8");
    let got = String::from_utf8_lossy(&got.stdout);
    assert!(
        !got.contains("wan2"),
        "unmarked traffic must not go by wan2: {got}"
    );

    // The tool replaces its route (a moment without it): steer never touches it.
    r.run(
        "ip route del 100.100.100.100 dev ts0 table 52 && \
         ip route add 100.100.100.100 dev ts0 table 52",
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(table(r, "-4", 52), theirs);
    let log = s.daemon.log_text();
    assert!(
        !log.contains("removed stale: route 100.100.100.100"),
        "{log}"
    );
    // Nor when it adds one (a peer joining): the warning lists it, and is not said again.
    r.run("ip route add 100.100.100.101 dev ts0 table 52");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(table(r, "-4", 52).len(), 2, "{:?}", table(r, "-4", 52));
    let status = s.steer(&["status"]);
    assert!(
        status.contains("route 100.100.100.101/32 dev ts0"),
        "{status}"
    );
    let log = s.daemon.log_text();
    assert_eq!(log.matches(warning).count(), 1, "said once:\n{log}");

    // A reload of another change while steer leaves the table alone is not refused (the
    // review: every reload failed, OpenWrt's reload_service included): it changes nothing there.
    let edited = "[default]\npolicy = \"wan2-first\"";
    s.work.write(
        "steer.toml",
        &text.replace("[default]\npolicy = \"wan1-first\"", edited),
    );
    assert!(
        std::fs::read_to_string(s.work.config())
            .unwrap()
            .contains(edited)
    );
    let (ok, out, err) = s.work.steer(&["reload"]);
    assert!(ok, "{out}{err}");
    assert_eq!(table(r, "-4", 52).len(), 2, "{:?}", table(r, "-4", 52));
    assert!(!all_rules(r).contains("lookup 52 proto 201"));
}

/// A route steer did not make in a WAN table that no other rule looks up is a leftover: removed
/// once, with a warning. When it comes back, another tool keeps it there: steer leaves it alone
/// and says so once (and in `steer status`) instead of deleting it for ever.
#[test]
fn a_foreign_route_that_comes_back_to_a_wan_table_is_left_alone() {
    let s = Scenario::start("route-back", &Options::default());
    let r = &s.lab.router;
    let add = "ip route add 198.51.100.7 dev wan2 table 102";
    r.run(add);
    let route = "route 198.51.100.7/32 dev wan2 scope link table 102 proto boot (v4)";
    let removed = format!("removed stale: {route}");
    s.daemon.wait_log(&removed, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(100));
    r.run(add);
    let back = format!("{route} came back after steer removed it");
    s.daemon.wait_log(&back, Duration::from_secs(5));
    // A reconcile at every event: said once, never removed again.
    r.run("ip rule add fwmark 0x7 lookup 98 pref 3000 && ip rule del pref 3000");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        table(r, "-4", 102)
            .iter()
            .any(|l| l.starts_with("198.51.100.7 dev wan2")),
        "{:?}",
        table(r, "-4", 102)
    );
    let log = s.daemon.log_text();
    assert_eq!(log.matches(&removed).count(), 1, "{log}");
    assert_eq!(log.matches(&back).count(), 1, "{log}");
    let status = s.steer(&["status"]);
    assert!(
        status.contains("warning: ")
            && status.contains(&format!(
                "wan[wan2].table = 102: {back}: another tool keeps it"
            )),
        "{status}"
    );
}

/// Another tool's rules on the mark bits steer is given (Tailscale's bypass mark under
/// `mark_mask = 0xff0000`, and that very mark for wan2) are named by `steer check` on the
/// router, at start and in `steer status`, with the bits that are free.
#[test]
fn rules_of_another_tool_on_steers_mark_bits_are_named() {
    steer_tests::require_root();
    let lab = Lab::new();
    tailscale(&lab);
    let work = Workdir::new("mark-overlap");
    let text = config_text(&work, &Options::default())
        .replace("mark_mask = 0xff00", "mark_mask = 0xff0000")
        .replace("mark = 0x100", "mark = 0x10000")
        .replace("mark = 0x200", "mark = 0x80000");
    work.write("steer.toml", &text);
    let warning = "rule 5210 fwmark 0x80000/0xff0000 lookup 254 proto";
    let wan2 = "under those bits it is WAN wan2's mark";
    let free = "e.g. general.mark_mask = 0xff00 with WAN marks 0x100, 0x200";

    let out = steer_in(&lab.router)
        .args(["check", "-c"])
        .arg(work.config())
        .output()
        .expect("steer check");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for needle in [warning, wan2, free, "general.mark_mask = 0xff0000"] {
        assert!(text.contains(needle), "{needle}\nin:\n{text}");
    }

    let daemon = Daemon::start(&lab.router, &work);
    daemon.wait_log(wan2, Duration::from_secs(10));
    assert!(daemon.log_text().contains(warning), "{}", daemon.log_text());
    let status = work.steer_ok(&["status"]);
    assert!(status.contains(&format!("warning: {warning}")), "{status}");
    assert!(status.contains(free), "{status}");
}

/// `ip rule flush` takes the kernel's `lookup main` rule with it: steer puts back only its own
/// rules, and warns (log once, status) that nothing looks up the main table, saying what to
/// run; when the rule is back, it says so and the warning goes.
#[test]
fn a_main_table_no_rule_looks_up_is_warned_about_not_added() {
    let s = Scenario::start("main-flushed", &Options::default());
    let r = &s.lab.router;
    r.run("ip rule flush");
    let warning = "no ip rule looks up the main table for IPv4";
    s.daemon.wait_log(warning, Duration::from_secs(5));
    s.wait_until("steer's rules back", Duration::from_secs(5), |st| {
        st["routing"]["in_sync"] == true
    });
    let status = s.steer(&["status"]);
    assert!(
        status.contains(&format!("warning: {warning}"))
            && status.contains("run `ip rule add pref 32766 lookup main`"),
        "{status}"
    );
    let v4 = r.run("ip -4 rule show");
    assert!(!v4.contains("32766"), "{v4}");
    assert!(
        !status.contains("for IPv6"),
        "IPv6 was not flushed: {status}"
    );

    r.run("ip rule add pref 32766 lookup main");
    s.daemon.wait_log(
        "a rule looks up the main table for IPv4 again",
        Duration::from_secs(5),
    );
    let status = s.steer(&["status"]);
    assert!(!status.contains(warning), "{status}");
    assert_eq!(s.daemon.log_text().matches(warning).count(), 1);
}
