//! WAN health, failover and routing end to end, observed where it matters: at the ISPs (which
//! NAT address reached the internet) and in the router's routing tables.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use steer::model::Family;
use steer_tests::{
    daemon::{Daemon, detected_ms},
    lab::{
        Lab, Stream, Wan,
        ping::{ClientPing, epoch_now},
        sock::{enable_recverr, unbound_udp},
        udp_via,
    },
    netns::Netns,
    scenario::{Options, Scenario},
};

const N: usize = 20;
const SETTLE: Duration = Duration::from_secs(5);

fn a() -> IpAddr {
    Lab::SERVER_A.into()
}
fn b() -> IpAddr {
    Lab::SERVER_B.into()
}

/// How long `rounds` probe rounds take at the scenario's interval.
fn probe_rounds(o: &Options, rounds: u32) -> Duration {
    Duration::from_millis(u64::from(o.interval_ms * rounds))
}

#[test]
fn default_leaves_by_wan1_and_bypass_by_wan2_v4_and_v6() {
    let s = Scenario::start("paths", &Options::default());
    assert_eq!(
        udp_via(&s.lab, a(), 6001, N),
        [N, 0],
        "default traffic via WAN 1"
    );
    assert_eq!(
        udp_via(&s.lab, b(), 6002, N),
        [0, N],
        "bypass traffic via WAN 2"
    );
    assert_eq!(
        udp_via(&s.lab, Lab::SERVER_A6.into(), 6003, N),
        [N, 0],
        "IPv6 default via WAN 1"
    );
    assert_eq!(
        udp_via(&s.lab, Lab::SERVER_B6.into(), 6004, N),
        [0, N],
        "IPv6 bypass via WAN 2"
    );
    let st = s.status();
    assert_eq!(st["routing"]["in_sync"], true, "{st}");
}

#[test]
fn carrier_loss_moves_traffic_to_wan2_at_once() {
    // Probes alone would need down_after failed rounds (10 s here): traffic that moves sooner
    // was moved by the carrier event itself.
    let options = Options {
        down_after: 100,
        ..Options::default()
    };
    let probes_would_take = probe_rounds(&options, options.down_after);
    let s = Scenario::start("carrier", &options);
    let stream = Stream::start(
        &s.lab,
        a(),
        6010,
        Duration::from_millis(1),
        probes_would_take,
    );
    stream.wait_first_via(Wan::One, stream.started_at(), SETTLE);
    let fault = Instant::now();
    s.lab.cut_carrier(Wan::One);
    // Half the probes' time leaves room for a loaded machine and still tells them apart.
    stream.wait_first_via(Wan::Two, fault, probes_would_take / 2);
    drop(stream);
    s.wait_wan("wan1", "down", SETTLE);
    let log = s.daemon.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("wan1 down (carrier lost)"))
        .unwrap_or_else(|| panic!("no failover line:\n{log}"));
    assert!(
        line.contains("wan1-first: wan1 -> wan2")
            && line.contains("detected by the event itself")
            && line.contains("switched in"),
        "{line}"
    );
    assert_eq!(udp_via(&s.lab, a(), 6011, N), [0, N]);
}

#[test]
fn silent_upstream_loss_is_found_by_probes_and_moves_traffic() {
    let options = Options::default();
    let s = Scenario::start("silent", &options);
    assert_eq!(udp_via(&s.lab, a(), 6020, N), [N, 0]);
    let fault = Instant::now();
    s.lab.blackhole_upstream(Wan::One);
    assert!(s.lab.carrier(Wan::One), "the link stays up");
    // down_after failed rounds, plus the round in flight at the fault, plus the last round's
    // timeout; five times that for a loaded machine running every test at once.
    let rounds = probe_rounds(&options, options.down_after + 1)
        + Duration::from_millis(options.timeout_ms.into());
    s.wait_wan("wan1", "down", rounds * 5);
    // And not before a round could have failed: rounds confirming a failure go fast and
    // overlap, but each one waits for its timeout.
    let took = fault.elapsed();
    let earliest = Duration::from_millis(options.timeout_ms.into());
    assert!(
        took >= earliest,
        "wan1 down {took:?} after the fault, before a round could time out"
    );
    let log = s.daemon.log_text();
    let line = format!("wan1 down ({} failed rounds in a row", options.down_after);
    assert!(log.contains(&line), "{log}");
    assert_eq!(udp_via(&s.lab, a(), 6021, N), [0, N]);
    assert_eq!(
        udp_via(&s.lab, b(), 6022, N),
        [0, N],
        "bypass traffic unaffected"
    );
}

/// A line already dead (silently) when steer starts is up until its failed rounds add up: the
/// ready line said "WANs up: wan1, wan2" and wan1 went down a second later. It says that wan1
/// is failing its probes.
#[test]
fn the_ready_line_names_a_wan_failing_its_first_probes() {
    let options = Options::default();
    let s = Scenario::start_on("ready-failing", &options, Lab::LAN_IFACE, |lab| {
        lab.blackhole_upstream(Wan::One)
    });
    let started = Instant::now();
    let ready = loop {
        let log = s.daemon.log_text();
        if let Some(line) = log.lines().find(|l| l.contains("ready: ")) {
            break line.to_owned();
        }
        assert!(started.elapsed() < SETTLE, "no ready line:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        ready.contains("WANs up: wan2; up, but failing probes: wan1"),
        "{ready}"
    );
}

#[test]
fn recovery_needs_up_after_good_rounds_and_one_good_probe_does_not_re_promote() {
    let options = Options {
        up_after: 5,
        ..Options::default()
    };
    let s = Scenario::start("recover", &options);
    s.lab.blackhole_upstream(Wan::One);
    s.wait_wan("wan1", "down", SETTLE);
    // The line works again for about one probe round only.
    s.lab.restore_upstream(Wan::One);
    std::thread::sleep(Duration::from_millis(130));
    s.lab.blackhole_upstream(Wan::One);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        s.wan_state("wan1"),
        "down",
        "one good round must not re-promote:\n{}",
        s.daemon.log_text()
    );
    assert!(
        !s.daemon.log_text().contains("wan1 up"),
        "{}",
        s.daemon.log_text()
    );
    // Now for good: up only after up_after (5) consecutive good rounds of 100 ms.
    let restored = Instant::now();
    s.lab.restore_upstream(Wan::One);
    s.wait_wan("wan1", "up", SETTLE);
    let took = restored.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "came back after {took:?}, before 5 rounds could pass"
    );
    let log = s.daemon.log_text();
    assert!(log.contains("wan1 up (5 good rounds in a row"), "{log}");
    assert_eq!(
        udp_via(&s.lab, a(), 6030, N),
        [N, 0],
        "traffic back on WAN 1"
    );
}

#[test]
fn twenty_quick_flaps_leave_no_stale_state() {
    let s = Scenario::start("flap", &Options::default());
    for _ in 0..20 {
        s.lab.router.run("ip link set dev wan1 down");
        std::thread::sleep(Duration::from_millis(15));
        s.lab.router.run("ip link set dev wan1 up");
        std::thread::sleep(Duration::from_millis(15));
        s.lab.cut_carrier(Wan::One);
        s.lab.restore_carrier(Wan::One);
    }
    s.wait_wan("wan1", "up", SETTLE);
    s.wait_until("routing in sync", SETTLE, |st| {
        st["routing"]["in_sync"] == true
    });
    for (family, table, want) in [
        ("-4", "101", "default via 100.64.1.1 dev wan1"),
        ("-6", "101", "default via fd64:1::1 dev wan1"),
        ("-4", "102", "default via 100.64.2.1 dev wan2"),
        ("-6", "102", "default via fd64:2::1 dev wan2"),
    ] {
        let routes = s
            .lab
            .router
            .run(&format!("ip {family} route show table {table}"));
        let lines: Vec<&str> = routes.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "table {table} {family}: exactly one route, got:\n{routes}"
        );
        assert!(
            lines[0].starts_with(want),
            "table {table} {family}: {routes}"
        );
        assert!(
            !routes.contains("linkdown"),
            "no linkdown route left: {routes}"
        );
    }
    for family in ["-4", "-6"] {
        let rules = s.lab.router.run(&format!("ip {family} rule show"));
        let marked: Vec<&str> = rules
            .lines()
            .filter(|l| {
                l.contains("fwmark")
                    && (l.contains("proto 201")
                        || ["1090", "1091", "1100", "1101"]
                            .iter()
                            .any(|p| l.starts_with(p)))
            })
            .collect();
        assert_eq!(
            marked.len(),
            4,
            "exactly steer's four mark rules ({family}):\n{rules}"
        );
        // Two rules for each WAN's own address (its main-table and its table lookup), once.
        let own: Vec<&str> = rules
            .lines()
            .filter(|l| l.contains("proto 201") && !l.contains("fwmark"))
            .collect();
        assert_eq!(
            own.len(),
            4,
            "two WANs, two rules each ({family}):\n{rules}"
        );
    }
    assert_eq!(udp_via(&s.lab, a(), 6040, N), [N, 0]);
}

#[test]
fn all_wans_down_applies_the_last_resort() {
    let s = Scenario::start("allgone", &Options::default());
    s.lab.cut_carrier(Wan::One);
    s.lab.cut_carrier(Wan::Two);
    s.wait_wan("wan1", "down", SETTLE);
    s.wait_wan("wan2", "down", SETTLE);
    let st = s.status();
    let now = |p: &str| {
        st["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == p)
            .unwrap()["now"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(now("wan1-first"), "last resort: unreachable");
    assert_eq!(now("wan2-first"), "last resort: main table");
    let e = s.steer(&[
        "explain",
        &Lab::SERVER_A.to_string(),
        "--src",
        &Lab::CLIENT_V4.to_string(),
    ]);
    assert!(
        e.contains("mark     0xff00") && e.contains("last resort: unreachable"),
        "{e}"
    );
    // Unmarked (the bypass set's last resort is the main table): `explain`, run where the
    // daemon runs, names the main table's default route and the WAN it leaves by, or says
    // there is none.
    let explain_b = || {
        let out = steer_tests::daemon::steer_in(&s.lab.router)
            .args(["explain", &Lab::SERVER_B.to_string(), "-c"])
            .arg(s.work.config())
            .output()
            .expect("run steer");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let e = explain_b();
    assert!(
        e.contains("route    the main table has no IPv4 default route"),
        "{e}"
    );
    s.lab.set_main_default(Wan::One);
    let e = explain_b();
    let want = format!(
        "route    main table: default via {} dev {}: WAN wan1 (down)",
        Lab::gateway_v4(Wan::One),
        Lab::wan_iface(Wan::One)
    );
    assert!(e.contains(&want), "{want} in\n{e}");
    s.lab.clear_main_default();
    // The router answers default traffic with ICMP unreachable: the client's connected
    // socket sees the error.
    let refused = s.lab.client.enter(|| {
        let sock = unbound_udp(a());
        enable_recverr(&sock, false).expect("IP_RECVERR");
        sock.connect((Lab::SERVER_A, 6050)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut errors = Vec::new();
        for _ in 0..5 {
            let _ = sock.send(b"x");
            let mut buf = [0u8; 16];
            if let Err(e) = sock.recv(&mut buf) {
                errors.push(e.raw_os_error());
            }
        }
        errors
    });
    assert!(
        refused
            .iter()
            .any(|e| matches!(*e, Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH))),
        "ICMP unreachable reached the client: {refused:?}"
    );
    assert_eq!(
        udp_via(&s.lab, a(), 6051, N),
        [0, 0],
        "nothing left the router"
    );
}

#[test]
fn wan2_probes_leave_by_wan2_even_when_a_bypass_sends_their_target_to_wan1() {
    // A set steers LAN traffic for WAN 2's probe target to WAN 1 only.
    let extra = format!(
        "[[policy]]\nname = \"wan1-only\"\nmembers = [{{ wan = \"wan1\" }}]\n\n\
         [[set]]\nname = \"probe-target\"\npolicy = \"wan1-only\"\nprefixes = [\"{}\"]\n",
        Lab::PROBE_2
    );
    let s = Scenario::start(
        "probepath",
        &Options {
            extra_sets: extra,
            ..Options::default()
        },
    );
    assert_eq!(
        udp_via(&s.lab, Lab::PROBE_2.into(), 6060, N),
        [N, 0],
        "LAN traffic to the probe target goes via WAN 1"
    );
    // WAN 2 only carries its own probes now: its ISP keeps forwarding, and WAN 2 stays up.
    let before = s.lab.isp_forwarded_packets(Wan::Two);
    let deadline = Instant::now() + SETTLE;
    while s.lab.isp_forwarded_packets(Wan::Two) < before + 4 {
        assert!(
            Instant::now() < deadline,
            "WAN 2's ISP forwarded {} probe packets in {SETTLE:?}",
            s.lab.isp_forwarded_packets(Wan::Two) - before
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.wan_state("wan2"), "up");
    // And they really depend on WAN 2: blackholing it takes WAN 2 down although WAN 1 still
    // reaches the same target.
    s.lab.blackhole_upstream(Wan::Two);
    s.wait_wan("wan2", "down", SETTLE);
    assert_eq!(s.wan_state("wan1"), "up");
}

#[test]
fn a_rule_or_route_deleted_by_hand_is_restored() {
    let s = Scenario::start("drift", &Options::default());
    s.lab.router.run("ip rule del pref 1100");
    s.lab.router.run("ip route del default table 102");
    s.lab.router.run("ip -6 route del default table 101");
    s.wait_until("routing repaired", SETTLE, |st| {
        st["routing"]["in_sync"] == true
    });
    assert!(s.lab.router.run("ip rule show").contains("lookup 101"));
    assert!(
        s.lab
            .router
            .run("ip route show table 102")
            .contains("default via 100.64.2.1")
    );
    assert!(
        s.lab
            .router
            .run("ip -6 route show table 101")
            .contains("default via fd64:1::1")
    );
    let log = s.daemon.log_text();
    assert!(
        log.contains("routing (netlink event)") || log.contains("routing (periodic check)"),
        "{log}"
    );
    assert_eq!(udp_via(&s.lab, a(), 6070, N), [N, 0]);
    assert_eq!(udp_via(&s.lab, b(), 6071, N), [0, N]);
}

#[test]
fn flows_of_a_dead_wan_lose_their_conntrack_entries_and_only_they() {
    let s = Scenario::start(
        "conntrack",
        &Options {
            down_after: 100,
            ..Options::default()
        },
    );
    assert_eq!(udp_via(&s.lab, a(), 6080, N), [N, 0]);
    assert_eq!(udp_via(&s.lab, b(), 6081, N), [0, N]);
    let count = |mark: &str| {
        let out = s
            .lab
            .router
            .try_run(&format!("conntrack -L -m {mark}/0xff00 2>/dev/null"));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("dport=608"))
            .count()
    };
    assert!(
        count("0x100") >= 1 && count("0x200") >= 1,
        "connections carry the WAN mark"
    );
    // `steer wan wan1 down`: a manual failover flushes WAN 1's entries.
    let out = s.steer(&["wan", "wan1", "down"]);
    assert!(
        out.contains("wan1 down (set by hand)") && out.contains("flushed"),
        "{out}"
    );
    assert_eq!(count("0x100"), 0, "WAN 1's connections are gone");
    assert!(count("0x200") >= 1, "WAN 2's connections are untouched");
    assert_eq!(udp_via(&s.lab, a(), 6082, N), [0, N], "moved to WAN 2");
    let out = s.steer(&["wan", "wan1", "auto"]);
    assert!(out.contains("wan1 up"), "{out}");
    assert_eq!(udp_via(&s.lab, a(), 6083, N), [N, 0], "back on WAN 1");
}

/// A WAN that lost its line while the daemon was down: the restarted daemon finds it down
/// with no transition to report, and still cuts the connections that keep its mark (they
/// would follow its dead route for as long as they send).
#[test]
fn a_wan_found_down_at_start_loses_its_connections() {
    let mut s = Scenario::start("ct-start", &Options::default());
    assert_eq!(udp_via(&s.lab, a(), 6095, N), [N, 0]);
    let on_wan1 = |s: &Scenario| {
        let out = s
            .lab
            .router
            .try_run("conntrack -L -m 0x100/0xff00 2>/dev/null");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("dport=6095"))
            .count()
    };
    assert!(
        on_wan1(&s) >= 1,
        "the flow's connection carries wan1's mark"
    );
    s.daemon.kill9();
    s.lab.cut_carrier(Wan::One);
    s.daemon = Daemon::start(&s.lab.router, &s.work);
    let start = Instant::now();
    while on_wan1(&s) > 0 {
        assert!(
            start.elapsed() < SETTLE,
            "wan1's connection outlived the restart: {}",
            s.daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        s.daemon
            .log_text()
            .contains("wan1: conntrack entries with mark 0x100")
    );
    assert_eq!(
        udp_via(&s.lab, a(), 6095, N),
        [0, N],
        "the flow goes on by wan2"
    );
}

/// A daemon restarted during a silent outage (SIGTERM leaves steering in place, the line
/// found dead is still silent) keeps that WAN down from its first apply on: new flows never go
/// into the dead line, and probes bring it back. It used to start it up ("started with
/// carrier") and send new flows by wan1 until down_after rounds failed again.
#[test]
fn a_restart_during_a_silent_outage_keeps_the_dead_wan_down() {
    // Enough failed rounds that a WAN started up would still carry the flows sent below.
    let options = Options {
        down_after: 30,
        ..Options::default()
    };
    let mut s = Scenario::start("restart-dead", &options);
    s.lab.blackhole_upstream(Wan::One);
    s.wait_wan(
        "wan1",
        "down",
        probe_rounds(&options, options.down_after + 1) * 5,
    );
    assert!(
        s.daemon
            .signal_and_wait(libc::SIGTERM, Duration::from_secs(10)),
        "steer run did not stop on SIGTERM"
    );
    assert_eq!(
        udp_via(&s.lab, a(), 6096, N),
        [0, N],
        "steering stays while the daemon is stopped"
    );
    s.daemon = Daemon::start(&s.lab.router, &s.work);
    assert_eq!(
        udp_via(&s.lab, a(), 6097, N),
        [0, N],
        "new flows right after the restart leave by wan2, none into the dead line:\n{}",
        s.daemon.log_text()
    );
    assert_down_because(
        &s.status(),
        "wan1",
        "held down at the restart: the adopted policy table",
    );
    // Ready once the first probe rounds are in.
    s.daemon.wait_log("ready: ", SETTLE);
    let log = s.daemon.log_text();
    assert!(
        log.contains(
            "wan1 IPv4: the adopted policy table sent none of its traffic through it (it was \
             down, or no policy used it, before the restart): held down until 5 probe rounds"
        ),
        "{log}"
    );
    let ready = log
        .lines()
        .find(|l| l.contains("ready: "))
        .unwrap_or_else(|| panic!("no ready line:\n{log}"));
    assert!(ready.contains("WANs up: wan2; down: wan1"), "{ready}");
    assert!(!log.contains("failed rounds in a row"), "{log}");
    // The line works again: up_after good rounds bring it back.
    s.lab.restore_upstream(Wan::One);
    s.wait_wan("wan1", "up", SETTLE);
    let log = s.daemon.log_text();
    assert!(log.contains("wan1 up (5 good rounds in a row"), "{log}");
    assert_eq!(
        udp_via(&s.lab, a(), 6098, N),
        [N, 0],
        "traffic back on WAN 1"
    );
}

/// `steer wan NAME down` holds until `steer wan NAME auto`, across daemon restarts (a crash,
/// SIGTERM as `systemctl restart` sends): the forced-down WAN carries no new flow from the
/// restarted daemon's first apply on. It used to be kept in memory only: the restarted daemon
/// held it down for `up_after` probe rounds, then brought it up and sent traffic through it.
#[test]
fn a_wan_forced_down_by_hand_stays_down_across_restarts_until_auto() {
    let options = Options::default();
    let mut s = Scenario::start("restart-manual", &options);
    s.steer(&["wan", "wan2", "down"]);
    assert_eq!(
        udp_via(&s.lab, b(), 6101, N),
        [N, 0],
        "forced down: bypass by wan1"
    );
    let after_probes = probe_rounds(&options, options.up_after * 3);
    for (restart, port) in [("kill -9", 6102), ("SIGTERM", 6104)] {
        if restart == "kill -9" {
            s.daemon.kill9();
        } else {
            assert!(
                s.daemon
                    .signal_and_wait(libc::SIGTERM, Duration::from_secs(10)),
                "steer run did not stop on SIGTERM"
            );
        }
        s.daemon = Daemon::start(&s.lab.router, &s.work);
        assert_eq!(
            udp_via(&s.lab, b(), port, N),
            [N, 0],
            "after {restart}: the first flows keep off wan2:\n{}",
            s.daemon.log_text()
        );
        // Its line is fine: probes pass, and the override still holds.
        std::thread::sleep(after_probes);
        assert_eq!(
            udp_via(&s.lab, b(), port + 1, N),
            [N, 0],
            "after {restart} and {after_probes:?} of good probes: still off wan2:\n{}",
            s.daemon.log_text()
        );
        assert_down_because(&s.status(), "wan2", "forced down by `steer wan`");
        let log = s.daemon.log_text();
        assert!(
            log.contains("wan2: forced down by `steer wan wan2 down` before the restart"),
            "{log}"
        );
    }
    // `auto` gives it back to health tracking, and a restart then forces nothing.
    s.steer(&["wan", "wan2", "auto"]);
    s.wait_wan("wan2", "up", SETTLE);
    assert_eq!(udp_via(&s.lab, b(), 6106, N), [0, N], "bypass back on wan2");
    s.daemon.kill9();
    s.daemon = Daemon::start(&s.lab.router, &s.work);
    assert_eq!(
        udp_via(&s.lab, b(), 6107, N),
        [0, N],
        "no override after auto:\n{}",
        s.daemon.log_text()
    );
    assert!(!s.daemon.log_text().contains("forced down"));
}

/// An override that cannot be kept for a restarted daemon (its file cannot be written) is in
/// force, and the client is told a restart would lose it: not only the daemon's log.
#[test]
fn an_override_that_cannot_be_kept_says_so_to_the_client() {
    let s = Scenario::start("manual-unkept", &Options::default());
    // A directory where the file goes: the rename over it fails.
    let path = s.work.dir.join("steer.overrides");
    std::fs::create_dir(&path).expect("mkdir");
    let out = s.steer(&["wan", "wan2", "down"]);
    assert!(
        out.contains(&format!("writing {} failed", path.display()))
            && out.contains("a restarted daemon would not know it"),
        "{out}"
    );
    assert_eq!(s.wan_state("wan2"), "down", "in force all the same");
}

/// A restart whose configuration adds a WAN and sends traffic through it holds that WAN down
/// until `up_after` probe rounds pass, as a WAN the adopted state had down: the adopted state
/// says nothing of its line, and new flows must not go into a dead one. It used to start up
/// ("started with carrier") and take the flows until `down_after` rounds failed.
#[test]
fn a_restart_that_adds_a_wan_holds_it_down_until_its_probes_pass() {
    // Enough failed rounds that a WAN started up would still carry the flows sent below.
    let options = Options {
        down_after: 30,
        ..Options::default()
    };
    steer_tests::require_root();
    let lab = Lab::new();
    let work = steer_tests::daemon::Workdir::new("restart-new-wan");
    // The first daemon knows wan1 only.
    let full = steer_tests::scenario::config_text(&work, &options);
    let wan2_at = full
        .match_indices("[[wan]]")
        .nth(1)
        .map(|(i, _)| i)
        .expect("two WANs");
    let one_wan = format!(
        "{}\n[[policy]]\nname = \"wan1-first\"\nmembers = [{{ wan = \"wan1\" }}]\n\
         [default]\npolicy = \"wan1-first\"\n\n{}",
        &full[..wan2_at],
        work.control_section()
    );
    work.write("steer.toml", &one_wan);
    let daemon = Daemon::start(&lab.router, &work);
    let mut s = Scenario { daemon, work, lab };
    s.wait_until("routing in sync", SETTLE, |st| {
        st["routing"]["in_sync"] == true
    });
    s.daemon.kill9();
    // wan2's line is dead (carrier up), and the new configuration sends the bypass set by it.
    s.lab.blackhole_upstream(Wan::Two);
    s.work.write("steer.toml", &full);
    s.daemon = Daemon::start(&s.lab.router, &s.work);
    assert_eq!(
        udp_via(&s.lab, b(), 6111, N),
        [N, 0],
        "new flows right after the restart leave by wan1, none into the new, dead wan2:\n{}",
        s.daemon.log_text()
    );
    assert_down_because(
        &s.status(),
        "wan2",
        "held down at the restart: new in the configuration",
    );
    s.daemon.wait_log("ready: ", SETTLE);
    let log = s.daemon.log_text();
    assert!(
        log.contains(
            "wan2 IPv4: new in the configuration, and its policies send traffic through it: \
             held down until 5 probe rounds in a row pass"
        ),
        "{log}"
    );
    assert!(!log.contains("down when the daemon restarted"), "{log}");
    // The line works: up_after good rounds bring it up.
    s.lab.restore_upstream(Wan::Two);
    s.wait_wan("wan2", "up", SETTLE);
    assert_eq!(udp_via(&s.lab, b(), 6112, N), [0, N], "bypass on wan2");
}

/// A WAN whose one family went down loses that family's connections only: the kernel's delete
/// by mark ignores the family asked for, so one family is deleted entry by entry.
#[test]
fn a_flush_of_one_family_keeps_the_other_familys_connections() {
    steer_tests::require_root();
    let ns = Netns::new("ct-family");
    for (src, dst, mark) in [
        ("10.0.0.1", "10.0.0.2", 0x300),
        ("fd00::1", "fd00::2", 0x300),
        ("10.0.0.3", "10.0.0.4", 0x400),
        ("fd00::3", "fd00::4", 0x400),
    ] {
        ns.run(&format!(
            "conntrack -I -s {src} -d {dst} -p udp --sport 1 --dport 2 -t 100 -m {mark:#x}"
        ));
    }
    // Enough IPv6 entries of the WAN for several datagrams of deletes.
    let many = 300;
    ns.run(&format!(
        "for p in $(seq 10 {}); do conntrack -I -s fd00::1 -d fd00::2 -p udp --sport $p \
         --dport 2 -t 100 -m 0x300 2>/dev/null; done",
        9 + many
    ));
    let marked = |family: &str, mark: &str| {
        ns.run(&format!(
            "conntrack -L -f {family} -m {mark}/0xff00 2>/dev/null"
        ))
        .lines()
        .count()
    };
    let flush = |families: &[Family]| {
        ns.enter(|| steer::conntrack::flush_mark(0x300, 0xff00, families))
            .expect("flush")
    };
    assert_eq!(
        flush(&[Family::V6]),
        Some(1 + many),
        "every one went, and how many is told"
    );
    assert_eq!(marked("ipv6", "0x300"), 0, "the IPv6 connections went");
    assert_eq!(
        marked("ipv4", "0x300"),
        1,
        "the IPv4 one of the same WAN stays"
    );
    flush(&[Family::V4, Family::V6]);
    assert_eq!(
        marked("ipv4", "0x300"),
        0,
        "both families: everything of the WAN"
    );
    assert_eq!(
        (marked("ipv4", "0x400"), marked("ipv6", "0x400")),
        (1, 1),
        "another WAN's connections are untouched"
    );
}

/// The echo requests the router's probes send through ISP 1 to PROBE_1, captured in the ISP's
/// namespace with their time (seconds since the epoch); the capture stops on drop.
struct ProbeCapture {
    child: std::process::Child,
    file: std::path::PathBuf,
}

impl ProbeCapture {
    /// The probes of `wan` (to its target: WAN 1 probes PROBE_1, WAN 2 PROBE_2), captured at
    /// its ISP.
    fn start(s: &Scenario, wan: Wan) -> ProbeCapture {
        let (target, name) = match wan {
            Wan::One => (Lab::PROBE_1, "probes-wan1.txt"),
            Wan::Two => (Lab::PROBE_2, "probes-wan2.txt"),
        };
        let file = s.work.dir.join(name);
        let out = std::fs::File::create(&file).expect("capture file");
        let child = s
            .lab
            .isp(wan)
            .command("tcpdump")
            .args([
                "-i",
                "down",
                "-n",
                "-tt",
                "-l",
                "-U",
                // Each packet as it comes (not in blocks of the capture ring).
                "--immediate-mode",
                &format!("icmp and icmp[icmptype] == icmp-echo and dst host {target}"),
            ])
            .stdout(out)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tcpdump is installed");
        let c = ProbeCapture { child, file };
        // Capturing once probes show up (bounded).
        let start = Instant::now();
        while c.times().len() < 3 {
            assert!(start.elapsed() < SETTLE, "tcpdump captured no probes");
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    fn times(&self) -> Vec<f64> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }
}

impl Drop for ProbeCapture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Gaps (ms) between the requests sent within [from, to) (epoch seconds).
fn gaps_ms(times: &[f64], from: f64, to: f64) -> Vec<u64> {
    let inside: Vec<f64> = times
        .iter()
        .copied()
        .filter(|t| *t >= from && *t < to)
        .collect();
    inside
        .windows(2)
        .map(|w| ((w[1] - w[0]) * 1e3).round() as u64)
        .collect()
}

#[test]
fn idle_silent_cut_is_confirmed_by_fast_probes_and_recovery_keeps_up_after() {
    let options = Options::default();
    let s = Scenario::start("pace", &options);
    let capture = ProbeCapture::start(&s, Wan::One);
    std::thread::sleep(Duration::from_millis(1_500));
    let cut = epoch_now();
    s.lab.blackhole_upstream(Wan::One);
    s.wait_wan("wan1", "down", SETTLE);
    let down_seen = epoch_now();
    // While down, the normal pace (recovery): a second of it.
    std::thread::sleep(Duration::from_millis(1_000));
    let restored = epoch_now();
    s.lab.restore_upstream(Wan::One);
    s.wait_wan("wan1", "up", SETTLE);
    let up_seen = epoch_now();
    // What was captured until then has been written by now.
    std::thread::sleep(Duration::from_millis(300));
    let times = capture.times();
    drop(capture);
    let log = s.daemon.log_text();
    let fast = |gaps: &[u64]| gaps.iter().filter(|g| **g < 50).count();

    // Before the cut: the normal pace (100 ms). An answer a loaded machine delays past the
    // 10 ms lateness floor may hasten a round now and then, not more.
    let before = gaps_ms(&times, cut - 1.2, cut);
    assert!(before.len() >= 8, "probes before the cut: {before:?}");
    let normal = before.iter().filter(|g| **g >= 90).count();
    assert!(
        normal * 4 >= before.len() * 3,
        "gaps before the cut (ms): {before:?}"
    );
    // After the cut: the first round is late, the next ones go at failure_interval (10 ms):
    // at least down_after - 1 fast gaps before the WAN was seen down.
    let after = gaps_ms(&times, cut, down_seen);
    assert!(
        fast(&after) >= (options.down_after - 1) as usize,
        "gaps from the cut to down (ms): {after:?}\n{log}"
    );
    // The decision came sooner than down_after rounds at the normal pace could give it
    // (down_after - 1 intervals and a timeout from the first failed round).
    let line = log
        .lines()
        .find(|l| l.contains("wan1 down (3 failed rounds in a row"))
        .unwrap_or_else(|| panic!("no failover line:\n{log}"));
    let detected = detected_ms(line);
    let normal_pace_floor =
        f64::from((options.down_after - 1) * options.interval_ms + options.timeout_ms);
    assert!(
        detected < normal_pace_floor,
        "detected in {detected} ms, not below the {normal_pace_floor} ms of the normal pace: {line}"
    );
    assert!(line.contains("by probes"), "{line}");
    eprintln!(
        "idle silent cut: detected in {detected} ms; seen down in status {:.0} ms after the cut; \
         gaps from the cut (ms): {after:?}",
        (down_seen - cut) * 1e3
    );
    // Down: back to the normal pace (from 50 ms after it was seen down, to the restore).
    let down = gaps_ms(&times, down_seen + 0.05, restored);
    assert!(down.len() >= 5, "probes while down: {down:?}");
    assert_eq!(fast(&down), 0, "gaps while down (ms): {down:?}");
    // Recovery keeps up_after: that many rounds at least between the restore and up.
    let rounds_to_up = times
        .iter()
        .filter(|t| **t >= restored && **t < up_seen)
        .count();
    let around: Vec<i64> = times
        .iter()
        .map(|t| ((t - restored) * 1e3).round() as i64)
        .filter(|ms| (-300..2_000).contains(ms))
        .collect();
    assert!(
        rounds_to_up >= options.up_after as usize,
        "{rounds_to_up} probes between the restore and up ({} ms later); sent at (ms from the \
         restore): {around:?}\n{log}",
        ((up_seen - restored) * 1e3).round()
    );
    assert!(
        log.contains(&format!(
            "wan1 up ({} good rounds in a row",
            options.up_after
        )),
        "{log}"
    );
    // Status: the pace and what the probes cost.
    let st = s.status();
    let probes = &st["wans"][0]["families"][0]["probes"];
    assert_eq!(probes["pace"], "normal", "{st}");
    assert!(probes["packets_out"].as_u64().unwrap_or(0) > 20, "{st}");
    assert_eq!(
        probes["probes_per_day"].as_u64(),
        Some(864_000),
        "one target every 100 ms: {st}"
    );
    let text = s.steer(&["status"]);
    assert!(
        text.contains("probes normal every 100 ms") && text.contains("864000 probes"),
        "{text}"
    );
    // The text shows the last failover too (only the JSON did: "last change" was the start).
    let failover = st["last_failover"]["line"].as_str().unwrap_or_default();
    assert!(!failover.is_empty(), "{st}");
    assert!(
        text.contains("last failover (") && text.contains(failover),
        "{text}"
    );
}

#[test]
fn busy_silent_cut_is_suspected_by_the_traffic_and_the_client_moves() {
    let options = Options::default();
    let s = Scenario::start("passive", &options);
    let ping = ClientPing::start(&s.lab, &s.work.dir, Lab::SERVER_A.into(), 5, 8);
    // The traffic's answers arm the detector; the probes go quiet.
    std::thread::sleep(Duration::from_millis(2_000));
    let before = ping.replies().len();
    assert!(
        before > 100,
        "{before} replies in 2 s: the client's ping runs"
    );
    let cut = epoch_now();
    s.lab.blackhole_upstream(Wan::One);
    s.wait_wan("wan1", "down", SETTLE);
    // The client's traffic moves to WAN 2 and is answered again.
    std::thread::sleep(Duration::from_millis(1_000));
    let replies = ping.replies();
    let log = s.daemon.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("wan1 down ("))
        .unwrap_or_else(|| panic!("no failover line:\n{log}"));
    assert!(
        line.contains("passive: ") && line.contains("by passive"),
        "the traffic's silence is the first sign: {line}\n{log}"
    );
    let detected = detected_ms(line);
    assert!(
        replies.iter().filter(|t| **t > cut).count() > 50,
        "the client is answered again after the failover"
    );
    let outage_ms = ping
        .longest_gap_ms(cut - 0.2)
        .expect("replies around the cut");
    // Detection by the traffic, confirmed by fast probes, beats waiting for down_after rounds
    // at the normal pace (the idle path's floor).
    let normal_pace_floor =
        f64::from((options.down_after - 1) * options.interval_ms + options.timeout_ms);
    assert!(
        detected < normal_pace_floor,
        "detected in {detected} ms: {line}"
    );
    eprintln!(
        "busy silent cut: detected in {detected} ms (by the traffic), client-seen outage {outage_ms:.0} ms: {line}"
    );
}

#[test]
fn busy_two_way_traffic_quiets_the_probes() {
    // The 60 s, idle and busy at once: the client's ping goes by WAN 1 (its default
    // policy), nothing by WAN 2; both WANs are probed the same way.
    const SECS: f64 = 60.0;
    let s = Scenario::start("quiet", &Options::default());
    let busy_capture = ProbeCapture::start(&s, Wan::One);
    let idle_capture = ProbeCapture::start(&s, Wan::Two);
    let ping = ClientPing::start(&s.lab, &s.work.dir, Lab::SERVER_A.into(), 5, 62);
    // The pace follows the traffic within a normal interval; a probe already scheduled at the
    // normal pace may still go.
    std::thread::sleep(Duration::from_millis(500));
    let from = epoch_now();
    std::thread::sleep(Duration::from_secs_f64(SECS));
    let st = s.status();
    std::thread::sleep(Duration::from_millis(300));
    let count = |capture: &ProbeCapture| {
        capture
            .times()
            .iter()
            .filter(|t| **t >= from && **t < from + SECS)
            .count()
    };
    let (busy, idle) = (count(&busy_capture), count(&idle_capture));
    assert!(ping.replies().len() > 6_000, "the client's ping runs");
    assert!(
        idle >= 500,
        "{idle} probes in {SECS} s idle: the normal pace"
    );
    assert!(
        busy * 10 <= idle,
        "{busy} probes in {SECS} s of answered traffic against {idle} idle"
    );
    let wan = |name: &str| {
        st["wans"]
            .as_array()
            .and_then(|w| w.iter().find(|w| w["name"] == name))
            .unwrap_or_else(|| panic!("no {name} in {st}"))
            .to_string()
    };
    assert!(
        wan("wan1").contains("\"quiet\""),
        "status shows the quiet pace: {}",
        wan("wan1")
    );
    assert!(
        wan("wan2").contains("\"normal\""),
        "and the normal pace where nothing asks: {}",
        wan("wan2")
    );
    eprintln!("probes in {SECS} s: idle {idle} (wan2), with answered traffic {busy} (wan1)");
}

#[test]
fn one_way_asks_never_take_a_wan_down() {
    let s = Scenario::start("oneway", &Options::default());
    // 1,000 datagrams/s to UDP 443 (QUIC's port: they ask), nobody answers; healthy probes.
    let stream = Stream::start(
        &s.lab,
        Lab::SERVER_A.into(),
        443,
        Duration::from_millis(1),
        Duration::from_secs(30),
    );
    while !stream.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(stream.sent() > 15_000, "the stream ran: {}", stream.sent());
    let log = s.daemon.log_text();
    assert!(!log.contains("wan1 down"), "no false down:\n{log}");
    s.wait_wan("wan1", "up", Duration::from_secs(1));
}

/// One of two probe targets dead via one WAN (a resolver that stops answering pings from
/// that ISP), with loss limits on: every round still passes, and the line loses nothing, so the
/// WAN stays up. The old count of lost probes over both targets read 50% loss and took it down
/// for good (it never fell under `recover_loss_percent`). The status names the dead target.
#[test]
fn a_dead_probe_target_is_not_line_loss_and_status_names_it() {
    let options = Options::default();
    steer_tests::require_root();
    let lab = Lab::new();
    let work = steer_tests::daemon::Workdir::new("dead-target");
    let one = format!("targets = [\"{}\"]", Lab::PROBE_1);
    let config = steer_tests::scenario::config_text(&work, &options).replacen(
        &one,
        &format!(
            "targets = [\"{}\", \"{}\"]\nmax_loss_percent = 20\nrecover_loss_percent = 5\n\
             loss_window = 20",
            Lab::PROBE_1,
            Lab::PROBE_2
        ),
        1,
    );
    assert!(config.contains("loss_window = 20"), "{config}");
    work.write("steer.toml", &config);
    let daemon = Daemon::start(&lab.router, &work);
    let s = Scenario { daemon, work, lab };
    s.wait_wan("wan1", "up", SETTLE);
    // Only ISP 1 drops what goes to PROBE_2: via wan2 it answers.
    s.lab.isp(Wan::One).run(&format!(
        "nft add rule inet {} blackhole ip daddr {} drop",
        steer_tests::lab::NFT_TABLE,
        Lab::PROBE_2
    ));
    // Three windows of 20 rounds of 100 ms: the old count took it down after one.
    let until = Instant::now() + probe_rounds(&options, 60);
    while Instant::now() < until {
        assert_eq!(
            s.wan_state("wan1"),
            "up",
            "a dead target is not line loss:\n{}",
            s.daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = s.status();
    let wan1 = steer_tests::daemon::wan_in(&st, "wan1").expect("wan1");
    let v4 = wan1["families"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["family"] == "IPv4"))
        .expect("IPv4 of wan1");
    let detail = v4["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("loss 0% over 20 rounds"), "{detail}");
    let named = format!("{} has not answered via wan1 for ", Lab::PROBE_2);
    assert!(detail.contains(&named), "{detail}");
    let targets = v4["targets"].as_array().expect("targets in --json");
    let dead = targets
        .iter()
        .find(|t| t["target"] == Lab::PROBE_2.to_string())
        .expect("PROBE_2 listed");
    assert_eq!(
        (&dead["answered"], &dead["sent"]),
        (&0.into(), &20.into()),
        "{v4}"
    );
    let text = s.steer(&["status"]);
    assert!(text.contains(&named), "{text}");
    // wan2 probes PROBE_2 itself, which answers via ISP 2.
    assert_eq!(s.wan_state("wan2"), "up");
}

/// Asserts that WAN `wan` is down in the status document `st`, with `why` in its detail.
fn assert_down_because(st: &serde_json::Value, wan: &str, why: &str) {
    let entry = steer_tests::daemon::wan_in(st, wan).unwrap_or_else(|| panic!("no {wan} in {st}"));
    assert_eq!(entry["state"], "down", "{st}");
    assert!(
        entry["detail"].as_str().is_some_and(|d| d.contains(why)),
        "{wan} down because of {why:?}: {st}"
    );
}
