//! An HA pair under faults and mistakes (two steer routers on one LAN, a shared master-only
//! line, 100 ms adverts), each in the HA lab (`steer_tests::ha`): adverts dropped for their
//! form or their addresses while they claim the virtual router, a thawed master taking its line
//! back from the modem, VIPs left behind or deleted by hand, instances that share a
//! master-only line split between the routers, and reloads that add or remove a sibling
//! instance without bouncing the line.

use std::time::{Duration, Instant};

use steer_tests::ha::{
    HaLab, Side, VIP, VIP6, VIP6_LINK_LOCAL, VRID, WAN_ADDR,
    peers::{SteerOptions, SteerRouter, steer_config},
    traffic::WanSampler,
    wait_for,
};

/// Bound on a daemon starting, a state settling at start.
const START: Duration = Duration::from_secs(20);
/// Bound on a takeover (many master-down intervals, for a loaded machine).
const TAKEOVER: Duration = Duration::from_secs(5);

/// The lab's single instance with `vips` (a TOML array) and more keys.
fn instance(priority: u8, vips: &str, extra: &str) -> SteerOptions {
    SteerOptions {
        instance: Some(format!(
            "[[vrrp]]\nname = \"lan\"\ninterface = \"lan0\"\nvrid = {VRID}\npriority = {priority}\n\
             advert_interval_ms = 100\nvips = {vips}\n\
             wans = [{{ wan = \"wan1\", weight = 60, master_only = true }}]\n{extra}\n"
        )),
        ..SteerOptions::default()
    }
}

/// An IPv4 (`lan`) and an IPv6 (`lan6`) instance that list one master-only line, wan1.
fn dual_stack(v4: u8, v6: u8) -> SteerOptions {
    let wans = "wans = [{ wan = \"wan1\", weight = 60, master_only = true }]";
    SteerOptions {
        instance: Some(format!(
            "[[vrrp]]\nname = \"lan\"\ninterface = \"lan0\"\nvrid = {VRID}\npriority = {v4}\n\
             advert_interval_ms = 100\nvips = [\"{VIP}/24\"]\n{wans}\n\n\
             [[vrrp]]\nname = \"lan6\"\ninterface = \"lan0\"\nvrid = {VRID}\npriority = {v6}\n\
             advert_interval_ms = 100\nvips = [\"{VIP6_LINK_LOCAL}/64\", \"{VIP6}/64\"]\n{wans}\n"
        )),
        ..SteerOptions::default()
    }
}

/// The states of every instance of `r` ("master", "backup", ...), in configuration order.
fn states(r: &SteerRouter) -> Vec<String> {
    let (ok, out, _) = r.work.steer(&["status", "--json"]);
    if !ok {
        return Vec::new();
    }
    let st: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    st["vrrp"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v["state"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The notes of every instance of `r`, as one string.
fn notes(r: &SteerRouter) -> String {
    let (_, out, _) = r.work.steer(&["status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    st["vrrp"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v["notes"].to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Asserts that `bad` never holds for `span` (checked every 10 ms).
fn never(what: &str, span: Duration, mut bad: impl FnMut() -> bool, context: impl Fn() -> String) {
    let end = Instant::now() + span;
    while Instant::now() < end {
        assert!(!bad(), "{what}\n{}", context());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Lines of `log` that are warnings and contain `words`.
fn warned(log: &str, words: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("WARN") && l.contains(words))
        .count()
}

/// B lists one more VIP than A (the VIPs being changed one router at a time): each drops the
/// other's adverts, so both are master. They were dropped silently (a counter), and B brought
/// the shared line up next to A's. Now B holds it down while A claims the virtual router,
/// and both routers say why.
#[test]
fn a_peer_listing_other_vips_holds_the_second_masters_line_and_is_named() {
    let lab = HaLab::new();
    let a = SteerRouter::start(
        &lab,
        Side::A,
        &instance(200, &format!("[\"{VIP}/24\"]"), ""),
    );
    a.wait_state("master", START);
    wait_for("A's line up", START, || lab.wan_up(Side::A), || a.context());
    let b = SteerRouter::start(
        &lab,
        Side::B,
        &instance(100, &format!("[\"{VIP}/24\", \"10.10.0.5/24\"]"), ""),
    );
    let ctx = || format!("{}\n{}", a.context(), b.context());
    b.wait_state("master", START);
    never(
        "B brought the shared line up while A claims the virtual router",
        Duration::from_secs(3),
        || lab.wan_up(Side::B),
        ctx,
    );
    let words =
        "with other virtual addresses (10.10.0.1, 10.10.0.5) than this instance (10.10.0.1)";
    assert!(notes(&a).contains(words), "{}", ctx());
    assert_eq!(warned(&a.log(), words), 1, "warned once\n{}", ctx());
    let words =
        "with other virtual addresses (10.10.0.1) than this instance (10.10.0.1, 10.10.0.5)";
    assert!(notes(&b).contains(words), "{}", ctx());
    assert!(
        b.log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains(words) && l.contains("list the same `vips`")),
        "{}",
        ctx()
    );
    assert!(lab.wan_up(Side::A), "{}", ctx());
}

/// A sends unicast adverts (`peers`), B multicast: B dropped A's as "unicast" and A never saw
/// B's at all (its socket had not joined the group); both were master with the line up on
/// both. Now B holds its line, and both routers name the mismatch.
#[test]
fn unicast_on_one_router_and_multicast_on_the_other_is_named_on_both() {
    let lab = HaLab::new();
    let vips = format!("[\"{VIP}/24\"]");
    let a = SteerRouter::start(
        &lab,
        Side::A,
        &instance(200, &vips, &format!("peers = [\"{}\"]", Side::B.lan())),
    );
    a.wait_state("master", START);
    wait_for("A's line up", START, || lab.wan_up(Side::A), || a.context());
    let b = SteerRouter::start(&lab, Side::B, &instance(100, &vips, ""));
    let ctx = || format!("{}\n{}", a.context(), b.context());
    b.wait_state("master", START);
    never(
        "B brought the shared line up while A claims the virtual router",
        Duration::from_secs(3),
        || lab.wan_up(Side::B),
        ctx,
    );
    assert!(
        notes(&b).contains("by unicast to 10.10.0.12 (it has `peers`)"),
        "{}",
        ctx()
    );
    assert_eq!(
        warned(&b.log(), "configure `peers` on both routers or on neither"),
        1,
        "{}",
        ctx()
    );
    assert!(
        a.vrrp()["dropped"]["multicast"].as_u64().unwrap_or(0) > 0,
        "A sees B's multicast adverts\n{}",
        ctx()
    );
    assert!(
        notes(&a).contains("to the VRRP group (it has no `peers`)"),
        "{}",
        ctx()
    );
}

/// The master frozen for 2 s (SIGSTOP): the backup takes over and brings the shared line up,
/// so the modem learns its MAC for the line's address. Thawed, the master wins back the VIP
/// and re-announced it, but not the line's address: the modem kept sending to the other
/// router, the master's probes failed, its priority fell under the other's and it handed
/// over for good. It also logged (and sent) one announcement per stale advert queued while
/// frozen.
#[test]
fn a_thawed_master_takes_its_shared_line_back_from_the_modem() {
    let lab = HaLab::new();
    let a = SteerRouter::start(
        &lab,
        Side::A,
        &SteerOptions {
            priority: 150,
            ..SteerOptions::default()
        },
    );
    a.wait_state("master", START);
    let b = SteerRouter::start(&lab, Side::B, &SteerOptions::default());
    b.wait_state("backup", START);
    let ctx = || format!("{}\n{}", a.context(), b.context());
    let mac = |side: Side| {
        lab.router(side)
            .run("cat /sys/class/net/wan1/address")
            .trim()
            .to_owned()
    };
    let (mac_a, mac_b) = (mac(Side::A), mac(Side::B));
    let modem = || {
        let out = lab
            .isp
            .try_run(&format!("ip neigh show {WAN_ADDR} dev br0"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    lab.isp
        .run(&format!("ping -c 1 -W 2 {WAN_ADDR} >/dev/null"));
    wait_for(
        "A's line up, the modem on A",
        START,
        || lab.wan_up(Side::A) && modem().contains(&mac_a),
        ctx,
    );
    let pid = a.daemon.as_ref().expect("A runs").pid() as i32;
    // SAFETY: kill(2) on the steer daemon this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let frozen = Instant::now();
    wait_for(
        "B master with its line up, the modem on B",
        TAKEOVER,
        || lab.wan_up(Side::B) && modem().contains(&mac_b),
        || format!("modem: {}\n{}", modem(), b.context()),
    );
    std::thread::sleep(Duration::from_secs(2).saturating_sub(frozen.elapsed()));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    b.wait_state("backup", TAKEOVER);
    wait_for(
        "the modem back on A",
        Duration::from_secs(2),
        || modem().contains(&mac_a),
        || format!("modem: {}\n{}", modem(), ctx()),
    );
    never(
        "A handed over after the thaw",
        Duration::from_secs(5),
        || a.state() != "master",
        || format!("modem: {}\n{}", modem(), ctx()),
    );
    assert!(lab.wan_up(Side::A) && !lab.wan_up(Side::B), "{}", ctx());
    let log = a.log();
    assert!(log.contains("wan1's addresses announced again"), "{log}");
    let again = log
        .lines()
        .filter(|l| l.contains("addresses announced again (another router had claimed them)"))
        .count();
    assert!(again <= 4, "{again} announcements after one thaw\n{log}");
}

/// A VIP dropped from the configuration stayed on the interface through the reload, SIGTERM
/// and a restart: the backup answered ARP for it. steer's own addresses (proto 201) that no
/// configured master holds are removed at reload and at start.
#[test]
fn a_vip_dropped_from_the_configuration_is_removed_at_reload_and_at_start() {
    let lab = HaLab::new();
    let extra = "10.10.0.5/24";
    let mut a = SteerRouter::start(
        &lab,
        Side::A,
        &instance(200, &format!("[\"{VIP}/24\", \"{extra}\"]"), ""),
    );
    a.wait_state("master", START);
    wait_for(
        "both VIPs on A",
        START,
        || lab.has_addr(Side::A, "lan0", extra),
        || a.context(),
    );
    a.reconfigure(&instance(200, &format!("[\"{VIP}/24\"]"), ""));
    wait_for(
        "the dropped VIP gone",
        Duration::from_secs(5),
        || !lab.has_addr(Side::A, "lan0", extra) && lab.has_vip(Side::A),
        || a.context(),
    );
    assert!(
        a.log().contains("removed 10.10.0.5/24 on lan0"),
        "{}",
        a.context()
    );
    // One left by an earlier run: killed with it configured, restarted without it.
    let both = instance(200, &format!("[\"{VIP}/24\", \"{extra}\"]"), "");
    a.reconfigure(&both);
    wait_for(
        "both VIPs on A again",
        START,
        || lab.has_addr(Side::A, "lan0", extra),
        || a.context(),
    );
    a.kill9();
    a.work.write(
        "steer.toml",
        &steer_config(&a.work, &instance(200, &format!("[\"{VIP}/24\"]"), "")),
    );
    a.restart(&lab);
    wait_for(
        "the VIP of the earlier run gone at start",
        Duration::from_secs(5),
        || !lab.has_addr(Side::A, "lan0", extra),
        || a.context(),
    );
    a.wait_state("master", START);
    wait_for(
        "the VIP on A",
        TAKEOVER,
        || lab.has_vip(Side::A),
        || a.context(),
    );
}

/// A VIP deleted from the master by hand was neither noticed nor put back: the master went on
/// advertising it, and no host reached it.
#[test]
fn a_vip_deleted_on_the_master_is_put_back_with_a_warning() {
    let lab = HaLab::new();
    let a = SteerRouter::start(
        &lab,
        Side::A,
        &instance(200, &format!("[\"{VIP}/24\"]"), ""),
    );
    a.wait_state("master", START);
    wait_for(
        "the VIP on A",
        START,
        || lab.has_vip(Side::A),
        || a.context(),
    );
    lab.router(Side::A)
        .run(&format!("ip addr del {VIP}/24 dev lan0"));
    // At the netlink event (the periodic check, every 10 s, is the fallback).
    wait_for(
        "the VIP back on A",
        Duration::from_secs(3),
        || lab.has_vip(Side::A),
        || a.context(),
    );
    let words = "10.10.0.1/24 went missing from lan0 while this router is master";
    assert_eq!(warned(&a.log(), words), 1, "{}", a.context());
    assert!(notes(&a).contains(words), "{}", a.context());
}

/// Cuts every advert (IPv4 and IPv6) between the routers in the switch.
fn cut_all_adverts(lab: &HaLab) {
    lab.switch.run(
        "nft -f - <<'EOF'\n\
         table bridge cutall {\n\
           chain forward {\n\
             type filter hook forward priority 0; policy accept;\n\
             iifname { \"p-a\", \"p-b\" } oifname { \"p-a\", \"p-b\" } ether type ip ip protocol 112 drop\n\
             iifname { \"p-a\", \"p-b\" } oifname { \"p-a\", \"p-b\" } ether type ip6 ip6 nexthdr 112 drop\n\
           }\n\
         }\n\
         EOF",
    );
}

/// Equal priorities, an IPv4 and an IPv6 instance sharing the master-only line: after both
/// were master (adverts cut, then healed) the ties broke each by its own family's address,
/// IPv4 to B and IPv6 to A, and the line stayed down on both routers for good, silently. Now
/// the instances move together: one router holds both, with the line up.
#[test]
fn instances_sharing_a_line_end_on_one_router_after_equal_ties_break_apart() {
    let lab = HaLab::new();
    // IPv4: B's 10.10.0.12 beats A's .11; IPv6: A's link-local beats B's.
    for (side, ll) in [(Side::A, "fe80::ff"), (Side::B, "fe80::ee")] {
        lab.router(side).run(&format!(
            "ip -6 addr flush dev lan0 scope link && ip -6 addr add {ll}/64 dev lan0 nodad"
        ));
    }
    let a = SteerRouter::start(&lab, Side::A, &dual_stack(100, 100));
    let b = SteerRouter::start(&lab, Side::B, &dual_stack(100, 100));
    let ctx = || {
        format!(
            "A {:?} B {:?}\n{}\n{}",
            states(&a),
            states(&b),
            a.context(),
            b.context()
        )
    };
    let one_holds_both = || {
        let (sa, sb) = (states(&a), states(&b));
        let m = vec!["master".to_owned(); 2];
        let k = vec!["backup".to_owned(); 2];
        (sa == m && sb == k && lab.wan_up(Side::A) && !lab.wan_up(Side::B))
            || (sb == m && sa == k && lab.wan_up(Side::B) && !lab.wan_up(Side::A))
    };
    wait_for("one router master of both", START, one_holds_both, ctx);
    cut_all_adverts(&lab);
    wait_for(
        "both master of both",
        TAKEOVER,
        || states(&a) == ["master", "master"] && states(&b) == ["master", "master"],
        ctx,
    );
    lab.switch.run("nft delete table bridge cutall");
    wait_for(
        "one router master of both again",
        TAKEOVER,
        one_holds_both,
        ctx,
    );
    never(
        "the instances split again",
        Duration::from_secs(3),
        || !one_holds_both(),
        ctx,
    );
    // B held both: its IPv4 instance won; A's IPv6 one stepped down with A's IPv4 one.
    assert_eq!(states(&b), ["master", "master"], "{}", ctx());
    assert!(
        a.log()
            .contains("vrrp lan6: lan follows 10.10.0.12 and shares the master-only WAN wan1"),
        "{}",
        ctx()
    );
}

/// A split that the priorities make (B prefers IPv6, A IPv4) leaves the line down on both
/// routers: said in the log and the status, instead of nothing.
#[test]
fn instances_split_by_their_priorities_are_warned_of_and_shown() {
    let lab = HaLab::new();
    let a = SteerRouter::start(&lab, Side::A, &dual_stack(200, 200));
    wait_for(
        "A master of both",
        START,
        || states(&a) == ["master", "master"],
        || a.context(),
    );
    let b = SteerRouter::start(&lab, Side::B, &dual_stack(100, 250));
    let ctx = || format!("{}\n{}", a.context(), b.context());
    wait_for(
        "the line down on both",
        START,
        || !lab.wan_up(Side::A) && !lab.wan_up(Side::B) && states(&b) == ["backup", "master"],
        ctx,
    );
    let words =
        "wan1 is up on neither router: this router is master of lan, another router of lan6";
    wait_for(
        "A shows the split",
        Duration::from_secs(5),
        || notes(&a).contains(words),
        ctx,
    );
    wait_for(
        "A warns of the split",
        Duration::from_secs(30),
        || warned(&a.log(), words) == 1,
        ctx,
    );
    // The instance that lost the line names itself.
    assert!(a.log().contains("vrrp lan6: wan1 down in"), "{}", ctx());
}

/// A reload that removes the IPv6 instance of a healthy master (the IPv4 one, still master,
/// lists the same line) lowered and raised the line: its connections flushed, its health
/// counted down, the router demoted. A line every instance listing it is still master of is
/// left alone.
#[test]
fn a_reload_removing_a_sibling_instance_leaves_the_shared_line_up() {
    let lab = HaLab::new();
    let a = SteerRouter::start(&lab, Side::A, &dual_stack(150, 150));
    wait_for(
        "A master of both with its line up and probed",
        START,
        || {
            states(&a) == ["master", "master"]
                && lab.wan_up(Side::A)
                && a.work.wan_state("wan1") == "up"
        },
        || a.context(),
    );
    let sampler = WanSampler::start(&lab, Duration::from_millis(5));
    a.reconfigure(&SteerOptions {
        priority: 150,
        ..SteerOptions::default()
    });
    wait_for(
        "one instance left",
        Duration::from_secs(5),
        || states(&a) == ["master"],
        || a.context(),
    );
    std::thread::sleep(Duration::from_secs(2));
    let downs = sampler.samples().iter().filter(|s| !s.1[0]).count();
    drop(sampler);
    assert_eq!(
        downs,
        0,
        "the line went down at the reload\n{}",
        a.context()
    );
    assert!(!a.log().contains("wan1 down in"), "{}", a.context());
    assert_eq!(a.vrrp()["effective_priority"], 150, "{}", a.context());
}

/// A reload that adds the IPv6 instance next to a healthy IPv4 master bounced the shared line
/// (down at the reload, up again once the new instance was master). The line now waits for
/// the new instance: up all along when it becomes master here...
#[test]
fn a_reload_adding_a_sibling_instance_leaves_the_shared_line_up() {
    let lab = HaLab::new();
    let a = SteerRouter::start(
        &lab,
        Side::A,
        &SteerOptions {
            priority: 150,
            ..SteerOptions::default()
        },
    );
    wait_for(
        "A master with its line up and probed",
        START,
        || a.state() == "master" && lab.wan_up(Side::A) && a.work.wan_state("wan1") == "up",
        || a.context(),
    );
    let sampler = WanSampler::start(&lab, Duration::from_millis(5));
    a.reconfigure(&dual_stack(150, 150));
    wait_for(
        "A master of both",
        TAKEOVER,
        || states(&a) == ["master", "master"],
        || a.context(),
    );
    std::thread::sleep(Duration::from_secs(2));
    let downs = sampler.samples().iter().filter(|s| !s.1[0]).count();
    drop(sampler);
    assert_eq!(
        downs,
        0,
        "the line went down at the reload\n{}",
        a.context()
    );
    assert!(!a.log().contains("wan1 down in"), "{}", a.context());
    assert_eq!(a.work.wan_state("wan1"), "up", "{}", a.context());
}

/// ... and down as soon as the new instance follows another router (which is master of it):
/// the line is up only where every instance listing it is master.
#[test]
fn a_sibling_instance_added_by_reload_that_follows_the_other_router_takes_the_line_down() {
    let lab = HaLab::new();
    let a = SteerRouter::start(
        &lab,
        Side::A,
        &SteerOptions {
            priority: 200,
            ..SteerOptions::default()
        },
    );
    wait_for(
        "A master with its line up",
        START,
        || a.state() == "master" && lab.wan_up(Side::A),
        || a.context(),
    );
    // B: backup of the IPv4 instance, master of the IPv6 one A does not run yet.
    let b = SteerRouter::start(&lab, Side::B, &dual_stack(100, 250));
    let ctx = || format!("{}\n{}", a.context(), b.context());
    wait_for(
        "B master of lan6 only",
        START,
        || states(&b) == ["backup", "master"],
        ctx,
    );
    assert!(lab.wan_up(Side::A) && !lab.wan_up(Side::B), "{}", ctx());
    a.reconfigure(&dual_stack(200, 200));
    wait_for(
        "the line down on both",
        TAKEOVER,
        || states(&a) == ["master", "backup"] && !lab.wan_up(Side::A) && !lab.wan_up(Side::B),
        ctx,
    );
    assert!(a.log().contains("vrrp lan6: wan1 down in"), "{}", ctx());
}
