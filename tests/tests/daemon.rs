//! The `steer` binary end to end, in the namespace lab: the daemon, its pinned state and
//! restarts, the CLI (check, status, dump, explain, reload, stop) and the control socket.

use std::{
    io::{Read, Write},
    os::unix::{net::UnixStream, process::CommandExt},
    time::Duration,
};

use aya::programs::SchedClassifier;
use steer::{
    dataplane::{Maps, run::run_tc},
    model::{Direction, PrefixMap},
};
use steer_common::LB_SLOTS;
use steer_tests::{
    classifier::ip,
    daemon::{Daemon, Workdir, steer_in},
    lab::{Lab, Stream, udp_via},
    scenario::lab_wans,
    witness::Witness,
};

/// Two WANs of the lab, a bypass set (v4 and v6, inline and from a list) on wan2, a source set,
/// and the default rule balanced over both.
fn write_config(work: &Workdir, xdp: bool) {
    work.write(
        "lists/bypass.txt",
        "# bypass list\n203.0.113.0/24\n2001:db8:113::/48\n198.51.100.7\n",
    );
    work.write(
        "steer.toml",
        &format!(
            r#"
[general]
lan = ["lan0"]
xdp = {xdp}
{pins}
{wans}
[[policy]]
name = "wan2-first"
members = [{{ wan = "wan2", metric = 1 }}, {{ wan = "wan1", metric = 2 }}]

[[policy]]
name = "balanced"
members = [{{ wan = "wan1", weight = 3 }}, {{ wan = "wan2", weight = 1 }}]

[[set]]
name = "bypass"
policy = "wan2-first"
prefixes = ["192.0.2.128/25"]
files = ["lists/bypass.txt"]

[[set]]
name = "kids"
policy = "wan2-first"
match = "src"
prefixes = ["10.10.0.64/27", "fd10::40/122"]

[default]
policy = "balanced"
{control}"#,
            pins = work.private_paths(),
            wans = lab_wans("targets = [\"192.0.2.1\"]", "targets = [\"192.0.2.2\"]"),
            control = work.control_section()
        ),
    );
}

/// Replaces `from` with `to` in the test's configuration; returns the text before the change.
fn edit_config(work: &Workdir, from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(work.config()).unwrap();
    assert!(text.contains(from), "`{from}` is not in the configuration");
    work.write("steer.toml", &text.replace(from, to));
    text
}

fn setup(tag: &str) -> (Lab, Workdir) {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new(tag);
    write_config(&work, false);
    (lab, work)
}

/// An upgrade whose fragment table (`FRAGS`, a cache of datagrams in flight) has another
/// layout than the pinned one: the start replaced it and went on, instead of refusing until
/// `steer stop` (which pauses steering and forgets the learned hosts).
#[test]
fn a_pinned_fragment_table_of_another_layout_is_replaced_at_start() {
    let (lab, work) = setup("frags-layout");
    let mut daemon = Daemon::start(&lab.router, &work);
    daemon.kill9();
    // The table as the steer before this one made it: a 4-byte value (the flow hash alone).
    let frags = work.pin_dir.join("maps/FRAGS");
    std::fs::remove_file(&frags).expect("the daemon pinned FRAGS");
    let made = std::process::Command::new("bpftool")
        .args(["map", "create"])
        .arg(&frags)
        .args([
            "type", "lru_hash", "key", "40", "value", "4", "entries", "8192",
        ])
        .args(["name", "FRAGS"])
        .output()
        .expect("bpftool");
    assert!(made.status.success(), "{made:?}");
    let daemon = Daemon::start(&lab.router, &work);
    daemon.wait_log("a new one replaces it", Duration::from_secs(10));
    let shown = std::process::Command::new("bpftool")
        .args(["map", "show", "pinned"])
        .arg(&frags)
        .output()
        .expect("bpftool");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("value 8B"), "{shown}\n{}", daemon.log_text());
}

#[test]
fn kill9_then_restart_adopts_with_no_unclassified_packet_and_one_attachment() {
    let (lab, work) = setup("restart");
    let mut daemon = Daemon::start(&lab.router, &work);
    assert_eq!(lab.lan_tcx_programs(), ["steer_tc"]);
    let mut witness = Witness::load();
    lab.router
        .enter(|| witness.attach(Lab::LAN_IFACE, aya::programs::LinkOrder::last()));

    // A continuous stream to a bypass address through the router's LAN interface.
    let stream = Stream::start(
        &lab,
        Lab::SERVER_A.into(),
        7001,
        Duration::from_millis(1),
        Duration::from_secs(8),
    );
    std::thread::sleep(Duration::from_millis(300));
    daemon.kill9();
    std::thread::sleep(Duration::from_millis(300)); // steering goes on without the daemon
    let pinned = work.pin_dir.join("links/tc-lan0");
    assert!(pinned.exists(), "the link stays pinned");
    let daemon2 = Daemon::start(&lab.router, &work);
    assert!(
        daemon2.log_text().contains("adopted the pinned TC link"),
        "{}",
        daemon2.log_text()
    );
    std::thread::sleep(Duration::from_millis(300));
    let sent = stream.sent();
    drop(stream);

    let seen = witness.all();
    assert_eq!(
        seen.get(&0),
        None,
        "UDP packets of the stream that left steer unclassified: {seen:x?}"
    );
    assert!(
        seen.get(&0x200).copied().unwrap_or(0) >= sent * 9 / 10,
        "bypass packets marked for wan2: {seen:x?}, sent {sent}"
    );
    assert_eq!(
        lab.lan_tcx_programs(),
        ["steer_tc", "testkit_witness"],
        "one steer program, still first"
    );
    // The classifier state survived: the set is still there, with the same rule id.
    let out = work.steer_ok(&["dump", "rules"]);
    assert!(out.contains("bypass") && out.contains("kids"), "{out}");
}

#[test]
fn sigterm_leaves_steering_running_and_stop_removes_it() {
    let (lab, work) = setup("stop");
    let mut daemon = Daemon::start(&lab.router, &work);
    assert!(
        daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(10)),
        "SIGTERM ends the daemon"
    );
    assert!(
        daemon.log_text().contains("keeps running"),
        "{}",
        daemon.log_text()
    );
    assert_eq!(
        lab.lan_tcx_programs(),
        ["steer_tc"],
        "the classifier stays attached"
    );
    let out = work.steer_ok(&["dump", "policies"]);
    assert!(
        out.contains("mark 0x200 -> wan2"),
        "dump works with the daemon down:\n{out}"
    );

    assert!(!steer_routing(&lab).is_empty(), "routing stays too");

    // stop without a daemon removes the pins, routing and nftables table itself; a second stop
    // has nothing to do.
    let out = work.stop_in(&lab.router);
    assert!(out.contains("steer stopped"), "{out}");
    assert!(lab.lan_tcx_programs().is_empty(), "detached");
    assert!(!work.pin_dir.exists(), "pin directory removed");
    assert_eq!(
        steer_routing(&lab),
        "",
        "rules, routes and nftables table removed"
    );
    let out = work.stop_in(&lab.router);
    assert!(out.contains("nothing to stop"), "{out}");

    // stop through a running daemon.
    stop_a_running_daemon(&lab, &work);
    assert!(!work.pin_dir.exists());
}

/// Starts the daemon, stops it with `steer stop` and checks that it exited and left no
/// classifier, rule, route or nftables table; returns its log.
fn stop_a_running_daemon(lab: &Lab, work: &Workdir) -> String {
    let mut daemon = Daemon::start(&lab.router, work);
    assert!(!steer_routing(lab).is_empty());
    let out = work.stop_in(&lab.router);
    assert!(out.contains("steer stopped"), "{out}");
    assert!(
        daemon.signal_and_wait(0, Duration::from_secs(10)),
        "the daemon exits after stop"
    );
    assert!(lab.lan_tcx_programs().is_empty(), "detached");
    assert_eq!(
        steer_routing(lab),
        "",
        "rules, routes and nftables table removed"
    );
    daemon.log_text()
}

/// A steer started with another pin directory than the one before it found the earlier
/// classifier still attached (kept by its pins) and ran beside it: the old one kept stamping
/// the marks of its own state, over this daemon's failovers. The start is refused, naming it.
#[test]
fn a_start_beside_a_classifier_another_pin_directory_holds_is_refused() {
    let (lab, old) = setup("foreign-old");
    let mut daemon = Daemon::start(&lab.router, &old);
    assert!(
        daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(10)),
        "SIGTERM ends the daemon"
    );
    assert_eq!(lab.lan_tcx_programs(), ["steer_tc"], "left attached");
    let new = Workdir::new("foreign-new");
    write_config(&new, false);
    let mut second = Daemon::spawn(&new, steer_in(&lab.router));
    let status = second
        .wait_exit(Duration::from_secs(20))
        .expect("the start is refused");
    assert!(!status.success());
    let log = second.log_text();
    assert!(
        log.contains("lan0: another steer classifier is attached (program"),
        "{log}"
    );
    assert_eq!(lab.lan_tcx_programs(), ["steer_tc"], "the old one alone");
    old.stop_in(&lab.router);
    assert!(lab.lan_tcx_programs().is_empty());
}

/// `steer stop` right after the daemon was told to stop (procd's SIGTERM, then the init
/// script's `steer stop`): the daemon dies holding the request, the CLI got "closed without
/// answering" and removed nothing. It waits for the daemon to be gone and tears down itself.
#[test]
fn stop_tears_down_when_the_daemon_dies_holding_the_request() {
    let (lab, work) = setup("stop-dying");
    let mut daemon = Daemon::start(&lab.router, &work);
    assert!(!steer_routing(&lab).is_empty());
    let pid = daemon.pid() as i32;
    // SAFETY: signals to the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let out = work.stop_in(&lab.router);
    killer.join().unwrap();
    assert!(out.contains("steer stopped"), "{out}");
    assert!(daemon.wait_exit(Duration::from_secs(5)).is_some());
    assert!(lab.lan_tcx_programs().is_empty(), "detached");
    assert_eq!(steer_routing(&lab), "", "rules, routes and table removed");
    assert!(!work.socket.exists(), "the dead daemon's socket is removed");
}

/// A request whose client gave up (the daemon was stopped, `kill -STOP`, past the client's
/// timeout) was carried out once the daemon went on: a `steer stop` that had reported failure
/// stopped steering later, a `wan down` took a WAN down. The daemon drops such requests.
#[test]
fn a_request_whose_client_gave_up_is_not_carried_out_later() {
    let (lab, work) = setup("gave-up");
    let mut daemon = Daemon::start(&lab.router, &work);
    let pid = daemon.pid() as i32;
    // SAFETY: signals to the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let ask = |request: steer::control::Request| {
        steer::control::client::call(&work.socket, &request, Duration::from_millis(500))
            .expect_err("a stopped daemon does not answer")
    };
    let e = ask(steer::control::Request::Wan {
        name: "wan2".into(),
        mode: steer::control::WanMode::Down,
    });
    let text = e.to_string();
    assert!(text.contains(&format!("(pid {pid})")), "{text}");
    assert!(text.contains("within 0.5 s,"), "{text}");
    assert!(text.contains("not carried out"), "{text}");
    ask(steer::control::Request::Stop);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    daemon.wait_log("control: dropped `steer stop`", Duration::from_secs(5));
    daemon.wait_log(
        "control: dropped `steer wan wan2 down`",
        Duration::from_secs(5),
    );
    assert!(
        daemon.wait_exit(Duration::from_secs(1)).is_none(),
        "the daemon still runs:\n{}",
        daemon.log_text()
    );
    assert_eq!(work.wan_state("wan2"), "up", "{}", daemon.log_text());
    assert_eq!(lab.lan_tcx_programs(), ["steer_tc"]);
    stop_a_running_daemon_already_started(&lab, &work, daemon);
}

/// Stops `daemon` with `steer stop` and checks that it exited.
fn stop_a_running_daemon_already_started(lab: &Lab, work: &Workdir, mut daemon: Daemon) {
    let out = work.stop_in(&lab.router);
    assert!(out.contains("steer stopped"), "{out}");
    assert!(daemon.signal_and_wait(0, Duration::from_secs(10)));
}

/// SIGTERM or SIGINT early in the start killed the daemon by the signal's default action: no
/// log line, and maps pinned with no link. The daemon handles them from its first moment: it
/// stops before changing anything, or finishes the start and leaves steering running.
#[test]
fn a_stop_signal_during_the_start_ends_the_daemon_cleanly() {
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let (lab, work) = setup("early-term");
        let mut daemon = Daemon::spawn(&work, steer_in(&lab.router));
        std::thread::sleep(Duration::from_millis(150));
        assert!(
            daemon.signal_and_wait(sig, Duration::from_secs(20)),
            "{name} ends the daemon"
        );
        let log = daemon.log_text();
        assert!(log.contains(name), "no log line for {name}:\n{log}");
        // Either nothing was made, or the whole start was, links included.
        let links = work.pin_dir.join("links/tc-lan0");
        let maps = std::fs::read_dir(work.pin_dir.join("maps")).map_or(0, |d| d.count());
        assert!(
            maps == 0 || links.exists(),
            "maps pinned with no link after {name}:\n{log}"
        );
        if work.pin_dir.exists() {
            work.stop_in(&lab.router);
        }
    }
}

/// `steer stop` pointed at another socket (another configuration's) while a daemon runs in
/// the namespace: it found "no daemon" and tore down the running one's rules, table and VIPs
/// from under it. It is refused, naming the daemon.
#[test]
fn stop_at_another_socket_leaves_a_running_daemon_alone() {
    let (lab, work) = setup("stop-elsewhere");
    let _daemon = Daemon::start(&lab.router, &work);
    let before = steer_routing(&lab);
    let out = steer_in(&lab.router)
        .args(["stop", "--socket"])
        .arg(work.dir.join("other.sock"))
        .arg("--pin-dir")
        .arg(format!("{}-other", work.pin_dir.display()))
        .output()
        .expect("run steer stop");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("runs in this network namespace but not on") && err.contains("pid"),
        "{err}"
    );
    assert_eq!(steer_routing(&lab), before, "nothing removed");
    assert_eq!(lab.lan_tcx_programs(), ["steer_tc"]);
}

/// A pin directory that is itself a bpffs mount point: `steer stop` failed on removing it
/// (EBUSY) and left the routing rules, the WAN tables and the nftables table behind, while the
/// daemon logged that it had stopped cleanly.
#[test]
fn stop_works_with_the_pin_directory_at_the_root_of_a_bpffs_mount() {
    let (lab, work) = setup("stop-mount");
    std::fs::create_dir_all(&work.pin_dir).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "bpf", "bpf"])
        .arg(&work.pin_dir)
        .status()
        .expect("run mount");
    assert!(
        mounted.success(),
        "mount a bpffs on {}",
        work.pin_dir.display()
    );
    let _unmount = steer_tests::Unmount(work.pin_dir.clone());
    let log = stop_a_running_daemon(&lab, &work);
    assert!(log.contains("stopped: classifier detached"), "{log}");
    // A new bpffs holds the kernel's own `maps.debug` and `progs.debug`.
    let left: Vec<_> = std::fs::read_dir(&work.pin_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".debug"))
        .collect();
    assert!(left.is_empty(), "nothing of steer's is left: {left:?}");
}

/// What steer owns in the router's routing and nftables: its rules (all but the kernel's own
/// local, main and default rules: the lab adds none), the routes
/// of the WAN tables 101 and 102, and the `inet steer` table. Empty when none is there.
fn steer_routing(lab: &Lab) -> String {
    let out = lab
        .router
        .try_run(
            "{ ip rule show; ip -6 rule show; } | grep -v -E 'lookup (local|main|default)$'; \
             ip route show table 101; ip route show table 102; \
             ip -6 route show table 101; ip -6 route show table 102; \
             nft list table inet steer 2>/dev/null",
        )
        .stdout;
    String::from_utf8_lossy(&out).trim().to_owned()
}

/// A second daemon in another network namespace (another router's) on the same pin
/// directory: refused by the pin directory's lock before it changes anything there.
#[test]
fn a_second_daemon_on_the_same_pin_directory_is_refused() {
    let (lab, work) = setup("lock");
    let _daemon = Daemon::start(&lab.router, &work);
    let second_router = Lab::new();
    let other = Workdir::new("lock2");
    std::fs::copy(
        work.dir.join("lists/bypass.txt"),
        other.dir.join("lists/bypass.txt"),
    )
    .unwrap();
    std::fs::write(
        other.config(),
        std::fs::read_to_string(work.config()).unwrap().replace(
            work.socket.to_str().unwrap(),
            other.socket.to_str().unwrap(),
        ),
    )
    .unwrap();
    let out = steer_tests::daemon::steer_in(&second_router.router)
        .args(["run", "-c"])
        .arg(other.config())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second daemon must not start");
    assert!(
        err.contains("another steer process holds") && err.contains(work.pin_dir.to_str().unwrap()),
        "{err}"
    );
    assert_eq!(lab.lan_tcx_programs(), ["steer_tc"]);
    assert_eq!(second_router.lan_tcx_programs(), Vec::<String>::new());
    assert_eq!(steer_routing(&second_router), "", "nothing changed there");
}

#[test]
fn a_wan_moved_to_another_interface_follows_that_interface_s_carrier() {
    let (lab, work) = setup("moved");
    // wan2 on an interface that does not exist: down from the start, so the bypass set's
    // traffic falls back to WAN 1.
    edit_config(&work, "interface = \"wan2\"", "interface = \"wan9\"");
    let daemon = Daemon::start(&lab.router, &work);
    assert_eq!(work.wan_state("wan2"), "down", "{}", daemon.log_text());
    assert_eq!(udp_via(&lab, Lab::SERVER_B.into(), 7601, 5), [5, 0]);

    // Fixed to the real interface, whose link has carrier and does not change: no link event
    // will come, so the reload itself must take the new interface's carrier.
    edit_config(&work, "interface = \"wan9\"", "interface = \"wan2\"");
    work.steer_ok(&["reload"]);
    assert_eq!(work.wan_state("wan2"), "up", "{}", daemon.log_text());
    assert_eq!(udp_via(&lab, Lab::SERVER_B.into(), 7602, 5), [0, 5]);
}

#[test]
fn reload_applies_the_difference_and_an_invalid_config_keeps_the_running_one() {
    let (lab, work) = setup("reload");
    let daemon = Daemon::start(&lab.router, &work);
    work.write(
        "lists/bypass.txt",
        "# bypass list\n203.0.113.0/24\n2001:db8:113::/48\n198.51.100.8\n",
    );
    let out = work.steer_ok(&["reload"]);
    assert!(
        out.contains("set bypass: 1 added, 0 changed, 1 removed"),
        "{out}"
    );
    assert!(out.contains("2 prefix writes, 0 policy writes"), "{out}");

    // A broken line: refused with file:line, nothing applied, the daemon keeps going.
    work.write(
        "lists/bypass.txt",
        "# bypass list\n203.0.113.0/24\n010.1.2.3\n",
    );
    let (success, _, err) = work.steer(&["reload"]);
    assert!(!success);
    assert!(
        err.contains("reload refused") && err.contains("bypass.txt:3:"),
        "{err}"
    );
    let dump = work.steer_ok(&["dump", "sets", "--json"]);
    assert!(
        dump.contains("198.51.100.8/32") && dump.contains("2001:db8:113::/48"),
        "previous state kept:\n{dump}"
    );
    let status = work.steer_ok(&["status"]);
    assert!(status.contains("bypass"), "{status}");
    assert!(
        daemon.log_text().contains("reload refused"),
        "{}",
        daemon.log_text()
    );

    // SIGHUP reloads too.
    work.write("lists/bypass.txt", "203.0.113.0/24\n");
    // SAFETY: kill(2) on the daemon we started.
    unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) };
    daemon.wait_log(
        "set bypass: 0 added, 0 changed, 2 removed",
        Duration::from_secs(10),
    );
}

#[test]
fn dump_and_explain_agree_with_the_kernel_v4_and_v6() {
    let (lab, work) = setup("explain");
    let _daemon = Daemon::start(&lab.router, &work);
    let maps = Maps::from_pins(&work.pin_dir).expect("pinned maps");
    let prog = SchedClassifier::from_pin(work.pin_dir.join("progs/steer_tc"))
        .expect("the daemon's pinned program");
    for (src, dst, want_set, want_wan) in [
        ("10.10.0.2", "203.0.113.99", "bypass", "wan2"),
        ("10.10.0.2", "198.51.100.7", "bypass", "wan2"),
        ("10.10.0.2", "192.0.2.200", "bypass", "wan2"),
        ("10.10.0.70", "8.8.8.8", "kids", "wan2"),
        ("fd10::2", "2001:db8:113::1", "bypass", "wan2"),
        ("fd10::41", "2606:4700::1111", "kids", "wan2"),
        ("10.10.0.2", "8.8.8.8", "default", ""),
        ("fd10::2", "2606:4700::1111", "default", ""),
    ] {
        let out = work.steer_ok(&["explain", dst, "--src", src, "--json"]);
        let e: serde_json::Value = serde_json::from_str(&out).expect("explain --json");
        assert_eq!(e["set"], want_set, "{src} -> {dst}: {e}");
        if !want_wan.is_empty() {
            assert_eq!(e["wan"], want_wan, "{src} -> {dst}: {e}");
        }
        // The daemon's own program, on the same packet, stamps the same mark.
        let frame = steer::packet::Frame::udp(ip(src), ip(dst))
            .with_transport(steer::packet::Transport::Udp {
                sport: 40000,
                dport: 443,
            })
            .build();
        let mark = run_tc(&prog, &frame, 0).expect("test run").mark;
        assert_eq!(e["mark"], format!("{mark:#x}"), "{src} -> {dst}");
        if want_set != "default" {
            let addr = if e["matched_on"] == "src" {
                ip(src)
            } else {
                ip(dst)
            };
            let prefix = e["prefix"].as_str().expect("matched prefix");
            let dir = if e["matched_on"] == "src" {
                Direction::Src
            } else {
                Direction::Dst
            };
            let hit = maps.containing(dir, addr).unwrap();
            assert_eq!(
                hit.first().map(|(p, _)| p.to_string()).as_deref(),
                Some(prefix),
                "{addr}: longest prefix in the kernel"
            );
        }
    }
    // The dump lists exactly the kernel's prefixes, with set and policy names.
    let dump: serde_json::Value =
        serde_json::from_str(&work.steer_ok(&["dump", "sets", "--json"])).unwrap();
    let rows = dump["sets"].as_array().expect("rows");
    let kernel: usize = PrefixMap::ALL
        .iter()
        .map(|m| maps.prefixes(*m).unwrap().len())
        .sum();
    assert_eq!(rows.len(), kernel);
    assert_eq!(
        rows.len(),
        6,
        "1 inline and 3 listed bypass prefixes, 2 kids prefixes"
    );
    for row in rows {
        let set = row["set"].as_str().unwrap();
        assert!(set == "bypass" || set == "kids", "{row}");
        assert_eq!(row["policy"], "wan2-first");
    }
    let text = work.steer_ok(&["dump"]);
    // The default rule balances 3:1 (weights 3 and 1) over the slots.
    let balance = format!(
        "balance: wan1 {}/{LB_SLOTS}, wan2 {}/{LB_SLOTS}",
        LB_SLOTS / 4 * 3,
        LB_SLOTS / 4
    );
    for needle in [&balance, "mark 0x200 -> wan2", "kids", "2001:db8:113::/48"] {
        assert!(text.contains(needle), "dump lacks `{needle}`:\n{text}");
    }
    // `steer dump | head -1`: the reader is gone before steer writes; steer ends quietly.
    let mut dump = std::process::Command::new(steer_tests::daemon::steer_bin())
        .args(["dump", "--pin-dir"])
        .arg(&work.pin_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run steer dump");
    drop(dump.stdout.take());
    let out = dump.wait_with_output().expect("steer dump ends");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "steer dump into a closed pipe: {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_control_socket_refuses_strangers_and_survives_garbage() {
    let (lab, work) = setup("socket");
    let _daemon = Daemon::start(&lab.router, &work);
    // A non-root user cannot even open the socket (0600, root).
    let out = std::process::Command::new(steer_tests::daemon::steer_bin())
        .args(["status", "--socket"])
        .arg(&work.socket)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Malformed and oversized requests get an error; the daemon keeps answering.
    for raw in [
        b"garbage\n".to_vec(),
        b"{\"cmd\":\"nope\"}\n".to_vec(),
        vec![b'x'; 200_000],
    ] {
        let mut s = UnixStream::connect(&work.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(&raw);
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.contains("\"ok\":false"), "{answer}");
    }
    let status = work.steer_ok(&["status", "--json"]);
    assert!(status.contains("\"sets\""), "{status}");
    // Clients that connect and say nothing, more than there are slots: each new client takes
    // the slot of the oldest silent one, so `steer` is answered at once, not after their
    // timeouts.
    let silent: Vec<UnixStream> = (0..300)
        .map(|_| UnixStream::connect(&work.socket).unwrap())
        .collect();
    let started = std::time::Instant::now();
    let status = work.steer_ok(&["status", "--json"]);
    assert!(status.contains("\"sets\""), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "steer status waited {:?} behind silent clients",
        started.elapsed()
    );
    drop(silent);
}

#[test]
fn check_lists_every_error_and_exits_1() {
    steer_tests::require_root();
    let work = Workdir::new("check");
    write_config(&work, false);
    let good = work.steer_ok(&["check"]);
    assert!(good.contains("OK: 2 WAN(s)"), "{good}");
    let text = std::fs::read_to_string(work.config())
        .unwrap()
        .replace("mark = 0x200", "mark = 0x10000")
        .replace("table = 102", "table = 254");
    work.write("steer.toml", &text);
    let (success, _, err) = work.steer(&["check"]);
    assert!(!success);
    assert!(
        err.contains("0x10000") && err.contains("main") && err.contains("2 error(s)"),
        "{err}"
    );
}

#[test]
fn a_pinned_map_that_does_not_fit_is_refused_with_the_reason() {
    steer_tests::require_root();
    let work = Workdir::new("compat");
    // A POLICY map of another shape, pinned where steer keeps its own.
    std::fs::create_dir_all(work.pin_dir.join("maps")).unwrap();
    let bogus = aya::maps::Array::<aya::maps::MapData, u64>::create(512, 0).expect("create a map");
    bogus.pin(work.pin_dir.join("maps/POLICY")).expect("pin it");
    let err =
        steer::dataplane::Dataplane::open_pinned(&work.pin_dir).expect_err("must not adopt it");
    let msg = err.to_string();
    let needs = format!(
        "value size is 8, this steer needs {}",
        size_of::<steer_common::PolicyEntry>()
    );
    assert!(
        msg.contains("maps/POLICY") && msg.contains(&needs) && msg.contains("steer stop"),
        "{msg}"
    );
    // Nothing else was created or attached.
    assert!(!work.pin_dir.join("maps/DST_V4").exists());
    assert!(!work.pin_dir.join("progs/steer_tc").exists());
}

#[test]
fn range_tables_pinned_in_another_layout_are_refused_with_the_reason() {
    steer_tests::require_root();
    let work = Workdir::new("layout");
    let format_pin = work.pin_dir.join("maps/TABLE_FORMAT");
    // A first daemon's state: the maps pinned, and the layout of its tables beside them.
    drop(steer::dataplane::Dataplane::open_pinned(&work.pin_dir).expect("fresh pins"));
    assert!(format_pin.exists(), "the layout is recorded");
    steer::dataplane::Dataplane::open_pinned(&work.pin_dir).expect("its own layout is adopted");
    // An earlier steer's state: the same maps, no layout recorded (as before there was one).
    std::fs::remove_file(&format_pin).unwrap();
    let refused = |what: &str| {
        let err = steer::dataplane::Dataplane::open_pinned(&work.pin_dir)
            .expect_err("must not adopt tables it would misread");
        let msg = err.to_string();
        let needs = format!("this steer reads layout {}", steer_common::range::FORMAT);
        assert!(
            msg.contains("maps/DST_V4") && msg.contains(what) && msg.contains(&needs),
            "{msg}"
        );
        assert!(msg.contains("steer stop"), "{msg}");
        let beside = steer::dataplane::Dataplane::load_beside(&work.pin_dir)
            .expect_err("`steer explain` must not read them either");
        assert!(beside.to_string().contains(&needs), "{beside}");
    };
    refused("an earlier layout (none recorded beside them)");
    assert!(!format_pin.exists(), "a refused start records nothing");
    // Another layout recorded.
    let mut other = aya::maps::Array::<aya::maps::MapData, u32>::create(1, 0).unwrap();
    other.set(0, steer_common::range::FORMAT + 1, 0).unwrap();
    other.pin(&format_pin).unwrap();
    refused(&format!("layout {}", steer_common::range::FORMAT + 1));
}

#[test]
fn packet_logging_reaches_the_daemon_log_only_when_switched_on() {
    let (lab, work) = setup("log");
    let text = edit_config(&work, "xdp = false", "xdp = false\nlog_packets = true");
    let daemon = Daemon::start(&lab.router, &work);
    // SERVER_B is in the bypass list: set bypass, policy wan2-first.
    assert_eq!(udp_via(&lab, Lab::SERVER_B.into(), 7401, 5), [0, 5]);
    daemon.wait_log("steer: rule 1 mark 200", Duration::from_secs(5));
    // Switched off by a reload: the kernel stops logging.
    work.write("steer.toml", &text);
    work.steer_ok(&["reload"]);
    let before = daemon.log_text().matches("steer: rule").count();
    assert_eq!(
        udp_via(&lab, Lab::SERVER_B.into(), 7402, 5),
        [0, 5],
        "the packets that are not logged flowed"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        daemon.log_text().matches("steer: rule").count(),
        before,
        "no packet logged once switched off"
    );
}

#[test]
fn a_recreated_lan_interface_gets_the_classifier_again() {
    let (lab, work) = setup("relan");
    let daemon = Daemon::start(&lab.router, &work);
    assert_eq!(lab.lan_tcx_programs(), ["steer_tc"]);
    const REATTACHED: &str = "lan0: LAN interface (re)appeared: classifier attached";
    assert!(
        !daemon.log_text().contains(REATTACHED),
        "{}",
        daemon.log_text()
    );
    // Delete the LAN link (both veth ends go) and make it again, as netifd does with br-lan.
    lab.router
        .run(&format!("ip link del dev {}", Lab::LAN_IFACE));
    lab.connect_lan();
    // The daemon logs the line once the new link is attached.
    daemon.wait_log(REATTACHED, Duration::from_secs(5));
    assert_eq!(lab.lan_tcx_programs(), ["steer_tc"], "attached once, again");
}

#[test]
fn a_stranger_that_reaches_the_socket_is_refused_by_its_credentials() {
    let (lab, work) = setup("peercred");
    let _daemon = Daemon::start(&lab.router, &work);
    // Open the socket file and its directory to everyone: only SO_PEERCRED stands in the way.
    std::fs::set_permissions(
        &work.dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(
        &work.socket,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let out = std::process::Command::new(steer_tests::daemon::steer_bin())
        .args(["wan", "wan1", "down", "--socket"])
        .arg(&work.socket)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("permission denied: uid 65534 may not control steer"),
        "{err}"
    );
    let status = work.steer_ok(&["status", "--json"]);
    assert!(
        status.contains("\"state\": \"up\""),
        "the request had no effect: {status}"
    );
}

#[test]
fn prometheus_metrics_show_wans_and_sets() {
    let (lab, work) = setup("metrics");
    edit_config(
        &work,
        "[control]\n",
        "[control]\nmetrics = \"127.0.0.1:9464\"\n",
    );
    let _daemon = Daemon::start(&lab.router, &work);
    assert_eq!(udp_via(&lab, Lab::SERVER_B.into(), 7501, 5), [0, 5]);
    let scrape = lab.router.enter(|| {
        let mut s = std::net::TcpStream::connect("127.0.0.1:9464").expect("metrics listener");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    });
    assert!(scrape.starts_with("HTTP/1.1 200 OK"), "{scrape}");
    for line in [
        "steer_wan_up{wan=\"wan1\"} 1",
        "steer_wan_up{wan=\"wan2\"} 1",
        "steer_set_prefixes{set=\"bypass\"} 4",
        "steer_routing_in_sync 1",
    ] {
        assert!(scrape.contains(line), "missing `{line}`:\n{scrape}");
    }
    let bypass = scrape
        .lines()
        .find(|l| l.starts_with("steer_set_packets_total{set=\"bypass\"}"))
        .expect("bypass packets");
    let n: u64 = bypass.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 5, "{bypass}");
}
