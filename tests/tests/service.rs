//! steer as a service: the readiness protocol systemd's `Type=notify` speaks (READY=1 only once
//! steering is in place, RELOADING=1/READY=1 around a reload, STOPPING=1), the unit's
//! least-privilege capability set measured by running the real daemon under `setpriv` with
//! exactly that set (and with one capability less), the unit checked by `systemd-analyze
//! verify`, its ExecStopPost= script's stop-versus-restart decision, the OpenWrt init script,
//! and `steer check --kernel`.

use std::{
    os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixDatagram},
    },
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use steer_tests::{
    daemon::{Daemon, Workdir, steer_bin, steer_in},
    lab::{Lab, Wan, udp_via},
    scenario::{Options, config_text},
};

/// The repository's root (tests/ is one below).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_owned()
}

fn unit_text() -> String {
    std::fs::read_to_string(repo().join("contrib/systemd/steer.service")).expect("the unit")
}

/// A datagram socket the daemon's `$NOTIFY_SOCKET` names, and the messages it received.
struct Notifications {
    socket: UnixDatagram,
    /// What `NOTIFY_SOCKET` is set to.
    address: String,
    /// A path to remove on drop.
    path: Option<PathBuf>,
}

impl Notifications {
    /// An abstract socket in `lab`'s router namespace: abstract names belong to a network
    /// namespace, so it is bound from a thread inside it.
    fn abstract_in(lab: &Lab) -> Notifications {
        let name = format!("steer-notify-{}", steer_tests::unique_tag());
        let socket = lab.router.enter(|| {
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap())
                .expect("bind the abstract notify socket")
        });
        Notifications::with(socket, format!("@{name}"), None)
    }

    /// A socket file (visible in every network namespace).
    fn path(work: &Workdir) -> Notifications {
        let path = work.dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        Notifications::with(socket, path.display().to_string(), Some(path))
    }

    fn with(socket: UnixDatagram, address: String, path: Option<PathBuf>) -> Notifications {
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Notifications {
            socket,
            address,
            path,
        }
    }

    /// The next message, if one arrives within `within`.
    fn next(&self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.socket.recv(&mut buf) {
                Ok(n) => return Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => panic!("notify socket: {e}"),
            }
        }
        None
    }

    /// Waits for a message with the line `line`; panics with what came instead.
    fn expect(&self, line: &str, within: Duration, daemon: &Daemon) -> String {
        let mut seen = Vec::new();
        let deadline = Instant::now() + within;
        while let Some(m) = self.next(deadline.saturating_duration_since(Instant::now())) {
            if m.lines().any(|l| l == line) {
                return m;
            }
            seen.push(m);
        }
        panic!(
            "no `{line}` within {within:?}; received {seen:?}\ndaemon log:\n{}",
            daemon.log_text()
        );
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// steer's fwmark rules in the router (priorities 1090.., protocol 201).
fn steer_rules(lab: &Lab) -> String {
    lab.router.run("ip rule show | grep fwmark || true")
}

fn status(work: &Workdir) -> serde_json::Value {
    serde_json::from_str(&work.steer_ok(&["status", "--json"])).expect("status --json")
}

/// The detail lines of every WAN family in a status document.
fn family_details(status: &serde_json::Value) -> Vec<String> {
    status["wans"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|w| w["families"].as_array().cloned().unwrap_or_default())
        .map(|f| f["detail"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Probes that answer fast on wan1 and never on wan2 (its upstream blackholed), with a long
/// timeout: the first round of wan2 takes `timeout_ms`.
fn slow_first_round() -> Options {
    Options {
        interval_ms: 2000,
        timeout_ms: 1500,
        ..Options::default()
    }
}

#[test]
fn ready_comes_only_once_classifier_routing_and_first_probe_rounds_are_in_place() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("ready");
    work.write("steer.toml", &config_text(&work, &slow_first_round()));
    lab.blackhole_upstream(Wan::Two);
    let notify = Notifications::abstract_in(&lab);

    let started = Instant::now();
    let mut cmd = steer_in(&lab.router);
    cmd.env("NOTIFY_SOCKET", &notify.address);
    let daemon = Daemon::spawn(&work, cmd);
    let ready = notify.expect("READY=1", Duration::from_secs(20), &daemon);
    let after = started.elapsed();

    // The kernel state is in place the moment READY=1 arrives.
    assert_eq!(lab.lan_tcx_programs(), ["steer_tc"], "classifier attached");
    let rules = steer_rules(&lab);
    assert!(
        rules.contains("lookup 101") && rules.contains("lookup 102"),
        "WAN rules installed:\n{rules}"
    );
    let st = status(&work);
    assert_eq!(st["routing"]["in_sync"], true, "routing reconciled: {st}");
    // Every WAN family had its first round: wan2's failed one took the whole timeout.
    let details = family_details(&st);
    assert!(
        details.iter().all(|d| !d.contains("over 0 rounds")),
        "a family without a probe round: {details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("1/3 failed rounds")),
        "wan2's first (failed) round is counted: {details:?}"
    );
    assert!(
        after >= Duration::from_millis(1400),
        "READY=1 after {after:?}: before wan2's first round could end"
    );
    // wan2 is up (one failed round is not enough) but the status says it is failing.
    assert!(
        ready.contains("STATUS=classifying lan0; WANs up: wan1; up, but failing probes: wan2"),
        "{ready:?}"
    );
    assert!(
        daemon.log_text().contains("ready: classifying lan0"),
        "{}",
        daemon.log_text()
    );
}

/// `STATUS=` follows every change of where traffic goes, not only failovers: a LAN interface
/// that appears after the start (its classifier attached) was missing from it.
#[test]
fn the_status_follows_a_lan_interface_that_appears_later() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("status-late-lan");
    let text = config_text(&work, &Options::default());
    let late = text.replace("lan = [\"lan0\"]", "lan = [\"lan0\", \"lanlate\"]");
    assert_ne!(late, text, "the test adds a LAN interface");
    work.write("steer.toml", &late);
    let notify = Notifications::path(&work);
    let mut cmd = steer_in(&lab.router);
    cmd.env("NOTIFY_SOCKET", &notify.address);
    let daemon = Daemon::spawn(&work, cmd);
    let ready = notify.expect("READY=1", Duration::from_secs(20), &daemon);
    assert!(ready.contains("STATUS=classifying lan0;"), "{ready:?}");
    lab.router
        .run("ip link add lanlate type bridge && ip link set lanlate up");
    notify.expect(
        "STATUS=classifying lan0, lanlate; WANs up: wan1, wan2; down: none",
        Duration::from_secs(5),
        &daemon,
    );
}

#[test]
fn reload_is_bracketed_by_reloading_and_ready_and_sigterm_says_stopping() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("reload-notify");
    work.write("steer.toml", &config_text(&work, &Options::default()));
    let notify = Notifications::path(&work);
    let mut cmd = steer_in(&lab.router);
    cmd.env("NOTIFY_SOCKET", &notify.address);
    let mut daemon = Daemon::spawn(&work, cmd);
    notify.expect("READY=1", Duration::from_secs(20), &daemon);

    let before = monotonic_usec();
    work.steer_ok(&["reload"]);
    // Both messages are in the socket by the time `steer reload` (ExecReload=) returns.
    let reloading = notify.expect("RELOADING=1", Duration::from_millis(100), &daemon);
    let stamp: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"))
        .parse()
        .expect("MONOTONIC_USEC is a number");
    assert!(
        (before..=monotonic_usec()).contains(&stamp),
        "MONOTONIC_USEC={stamp} is CLOCK_MONOTONIC of the reload (started at {before})"
    );
    let ready = notify.expect("READY=1", Duration::from_millis(100), &daemon);
    assert!(ready.contains("STATUS=classifying lan0"), "{ready:?}");

    // A refused reload still ends in READY=1: the previous configuration runs on.
    let text = std::fs::read_to_string(work.config()).unwrap();
    work.write("steer.toml", &text.replace("[default]", "[default\n"));
    let (ok, _, _) = work.steer(&["reload"]);
    assert!(!ok, "an invalid configuration is refused");
    notify.expect("RELOADING=1", Duration::from_millis(100), &daemon);
    let ready = notify.expect("READY=1", Duration::from_millis(100), &daemon);
    assert!(ready.contains("reload refused"), "{ready:?}");

    assert!(daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(10)));
    let stopping = notify.expect("STOPPING=1", Duration::from_secs(1), &daemon);
    assert!(stopping.contains("steering stays in place"), "{stopping:?}");
    assert_eq!(
        lab.lan_tcx_programs(),
        ["steer_tc"],
        "SIGTERM left steering"
    );
    work.write("steer.toml", &text);
    work.stop_in(&lab.router);
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// The unit's `CapabilityBoundingSet=`, as capability names without `CAP_` (`bpf`, ...).
fn unit_capabilities() -> Vec<String> {
    let text = unit_text();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit has a CapabilityBoundingSet=");
    let ambient = text
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("the unit has AmbientCapabilities=");
    assert_eq!(line, ambient, "ambient and bounding sets agree");
    line.split_whitespace()
        .map(|c| c.strip_prefix("CAP_").expect("CAP_ name").to_lowercase())
        .collect()
}

/// `setpriv` that leaves `caps` in the bounding set (root keeps exactly these), then steer.
fn capped(ns: &steer_tests::netns::Netns, caps: &[String]) -> Command {
    let set: String = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = ns.command(tool("setpriv"));
    cmd.args(["--bounding-set", &set, "--"]).arg(steer_bin());
    cmd
}

fn without(caps: &[String], drop: &str) -> Vec<String> {
    assert!(
        caps.iter().any(|c| c == drop),
        "{drop} is in the unit's set"
    );
    caps.iter().filter(|c| *c != drop).cloned().collect()
}

/// The effective capabilities of a process, as a bit mask.
fn cap_eff(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff line");
    u64::from_str_radix(hex.trim(), 16).expect("hex mask")
}

fn cap_bit(name: &str) -> u64 {
    let n = match name {
        "net_bind_service" => 10,
        "net_admin" => 12,
        "net_raw" => 13,
        "sys_admin" => 21,
        "perfmon" => 38,
        "bpf" => 39,
        other => panic!("no bit known for {other}"),
    };
    1 << n
}

#[test]
fn the_unit_s_capabilities_are_enough_to_steer_reload_and_adopt_after_a_restart() {
    steer_tests::require_root();
    let caps = unit_capabilities();
    let lab = Lab::new();
    let work = Workdir::new("caps");
    // With the XDP program too: its attachment is one more thing the set must allow.
    let config = config_text(&work, &Options::default());
    work.write(
        "steer.toml",
        &config.replacen("lan = [\"lan0\"]", "lan = [\"lan0\"]\nxdp = true", 1),
    );
    let mut daemon = Daemon::spawn(&work, capped(&lab.router, &caps)).wait_up(&work);
    let want: u64 = caps.iter().map(|c| cap_bit(c)).sum();
    assert_eq!(
        cap_eff(daemon.pid()),
        want,
        "the daemon runs with exactly the unit's capabilities"
    );

    // Steering: the bypass set leaves by wan2, the rest by wan1; probes keep both up.
    wait_in_sync(&work, &daemon);
    let lan = status(&work)["lan"].clone();
    assert!(
        lan[0]["interface"] == "lan0" && lan[0]["xdp"].is_string(),
        "TC and XDP attached: {lan}"
    );
    assert_eq!(udp_via(&lab, Lab::SERVER_B.into(), 7301, 5), [0, 5]);
    assert_eq!(udp_via(&lab, Lab::SERVER_A.into(), 7302, 5), [5, 0]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(work.wan_state("wan1"), "up", "{}", daemon.log_text());
    assert_eq!(work.wan_state("wan2"), "up", "{}", daemon.log_text());
    let out = work.steer_ok(&["reload"]);
    assert!(out.contains("prefix writes"), "{out}");
    // A runtime set entry (journal in the socket's directory) under the same set.
    work.steer_ok(&["set", "bypass", "add", &Lab::SERVER_A.to_string()]);
    assert_eq!(udp_via(&lab, Lab::SERVER_A.into(), 7304, 5), [0, 5]);

    // A crash and a restart under the same set adopt the pinned state and the runtime entry.
    daemon.kill9();
    let daemon = Daemon::spawn(&work, capped(&lab.router, &caps)).wait_up(&work);
    assert!(
        daemon.log_text().contains("adopted the pinned TC link"),
        "{}",
        daemon.log_text()
    );
    assert_eq!(udp_via(&lab, Lab::SERVER_B.into(), 7303, 5), [0, 5]);
    assert_eq!(udp_via(&lab, Lab::SERVER_A.into(), 7305, 5), [0, 5]);
    assert!(
        daemon
            .log_text()
            .contains("1 runtime set entries read back"),
        "{}",
        daemon.log_text()
    );

    // `steer stop` (ExecStopPost=) under the same set removes everything.
    let out = capped(&lab.router, &caps)
        .args(["stop", "-c"])
        .arg(work.config())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(lab.lan_tcx_programs().is_empty(), "detached");
    assert!(!work.pin_dir.exists(), "pins removed");
}

fn wait_in_sync(work: &Workdir, daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(work)["routing"]["in_sync"] != true {
        assert!(
            Instant::now() < deadline,
            "routing not in sync:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `steer run` with `caps` until it exits (it must, within 20 s): its log.
fn run_until_refused(lab: &Lab, work: &Workdir, caps: &[String]) -> String {
    let mut daemon = Daemon::spawn(work, capped(&lab.router, caps));
    let status = daemon.wait_exit(Duration::from_secs(20));
    let log = daemon.log_text();
    assert!(
        status.is_some_and(|s| !s.success()),
        "steer run must fail: {status:?}\n{log}"
    );
    log
}

/// A start without one of the unit's capabilities is refused before anything changes, naming
/// the capability and what it is for (it used to start and fail piece by piece: without
/// CAP_NET_ADMIN every rule, route and the nftables table were refused while it said it was
/// ready; without CAP_NET_RAW every probe failed and every WAN went down).
fn refused_without(cap: &str, named: &str) {
    steer_tests::require_root();
    let caps = without(&unit_capabilities(), cap);
    let lab = Lab::new();
    let work = Workdir::new(&format!("no-{}", cap.replace('_', "")));
    work.write("steer.toml", &config_text(&work, &Options::default()));
    let log = run_until_refused(&lab, &work, &caps);
    assert!(
        log.contains(&format!("steer run lacks capabilities it needs: {named}"))
            && log.contains("nothing was changed"),
        "{log}"
    );
    assert!(lab.lan_tcx_programs().is_empty(), "nothing attached");
    assert_eq!(steer_rules(&lab).trim(), "", "no rule added");
    assert!(!work.pin_dir.exists(), "nothing pinned");
}

#[test]
fn without_cap_net_admin_the_start_is_refused_naming_it() {
    refused_without(
        "net_admin",
        "CAP_NET_ADMIN (routes, rules, nftables, conntrack and the classifier's attachment)",
    );
}

#[test]
fn without_cap_net_raw_the_start_is_refused_naming_the_icmp_probes() {
    refused_without("net_raw", "CAP_NET_RAW (ICMP probes of wan1, wan2)");
}

/// CAP_BPF and CAP_PERFMON load the classifier, but only CAP_SYS_ADMIN reopens its maps by id,
/// which a restart's adoption does: a first start without it would work and the restart after
/// a crash fail. So it is asked for at every start; a refused restart leaves the old state
/// steering.
#[test]
fn without_cap_sys_admin_a_restart_is_refused_and_the_old_state_steers_on() {
    steer_tests::require_root();
    let caps = unit_capabilities();
    let lab = Lab::new();
    let work = Workdir::new("no-sysadmin");
    work.write("steer.toml", &config_text(&work, &Options::default()));
    let mut daemon = Daemon::spawn(&work, capped(&lab.router, &caps)).wait_up(&work);
    daemon.kill9();
    let log = run_until_refused(&lab, &work, &without(&caps, "sys_admin"));
    assert!(
        log.contains("lacks capabilities it needs: CAP_SYS_ADMIN (the classifier's maps"),
        "{log}"
    );
    assert_eq!(
        lab.lan_tcx_programs(),
        ["steer_tc"],
        "the old state still steers"
    );
    assert_eq!(udp_via(&lab, Lab::SERVER_B.into(), 7306, 5), [0, 5]);
    work.stop_in(&lab.router);
}

#[test]
fn without_cap_net_bind_service_a_dns_forwarder_on_port_53_is_refused() {
    steer_tests::require_root();
    let caps = without(&unit_capabilities(), "net_bind_service");
    let lab = Lab::new();
    let work = Workdir::new("no-bind");
    let dns = "\n[dns]\nlisten = [\"10.10.0.1:53\"]\nupstreams = [\"127.0.0.1:5335\"]\n";
    work.write(
        "steer.toml",
        &format!("{}{dns}", config_text(&work, &Options::default())),
    );
    let log = run_until_refused(&lab, &work, &caps);
    assert!(
        log.contains("CAP_NET_BIND_SERVICE (the DNS forwarder on 10.10.0.1:53)"),
        "{log}"
    );
    assert!(
        lab.lan_tcx_programs().is_empty(),
        "refused before any change"
    );
    // With the capability the same configuration starts.
    let daemon = Daemon::spawn(&work, capped(&lab.router, &unit_capabilities())).wait_up(&work);
    drop(daemon);
    work.stop_in(&lab.router);
}

/// A tool the tests need; its absence fails the test (with how to install it), never skips it.
fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is missing: install it with `cargo xtask setup`"))
}

/// `systemd-analyze verify` on a copy of the unit whose commands point at this build: it exits
/// 0 even for lines it ignores, so every line it says about the unit counts as a failure.
fn verify_unit(text: &str, dir: &Path) -> (bool, String) {
    let path = dir.join("steer.service");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(tool("systemd-analyze"))
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let said: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .chain(String::from_utf8_lossy(&out.stdout).lines())
        .filter(|l| l.contains("steer.service"))
        .map(str::to_owned)
        .collect();
    (out.status.success() && said.is_empty(), said.join("\n"))
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let work = Workdir::new("unit");
    let stop_post = repo().join("contrib/systemd/steer-stop-post");
    let unit = unit_text()
        .replace("/usr/bin/steer", steer_bin().to_str().unwrap())
        .replace(
            "/usr/lib/steer/steer-stop-post",
            stop_post.to_str().unwrap(),
        );
    let (ok, said) = verify_unit(&unit, &work.dir);
    assert!(ok, "systemd-analyze verify:\n{said}");
    for line in [
        "Type=notify",
        "ExecReload=",
        "Restart=on-failure",
        "ExecStopPost=",
    ] {
        assert!(unit.contains(line), "the unit has {line}");
    }
    // The check can fail: a typo in a value is reported (and would fail above).
    let (ok, said) = verify_unit(
        &unit.replace("Restart=on-failure", "Restart=on-falure"),
        &work.dir,
    );
    assert!(!ok && said.contains("on-falure"), "{said}");
}

/// Runs the unit's ExecStopPost= script in the router's namespace as systemd would after the
/// daemon ended: `job` is the type of the unit's job that `systemctl list-jobs` shows (none
/// without one), `result` is $SERVICE_RESULT. This container has no systemd as PID 1, so a
/// `systemctl` on PATH answers list-jobs with that job; the teardown the script runs is real.
fn stop_post(lab: &Lab, work: &Workdir, job: Option<&str>, result: &str) -> String {
    let stub = work.dir.join("bin");
    std::fs::create_dir_all(&stub).unwrap();
    let systemctl = stub.join("systemctl");
    std::fs::write(
        &systemctl,
        "#!/bin/sh\n[ \"$1\" = list-jobs ] || exit 1\n\
         echo \"7 other.service stop running\"\n\
         [ -n \"$JOB\" ] && echo \"9 steer.service $JOB running\"\nexit 0\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&systemctl)
        .status()
        .unwrap();
    let path = format!(
        "{}:{}",
        stub.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = lab
        .router
        .command("sh")
        .arg(repo().join("contrib/systemd/steer-stop-post"))
        .arg("steer.service")
        .arg(work.config())
        .env("PATH", path)
        .env("STEER", steer_bin())
        .env("JOB", job.unwrap_or(""))
        .env("SERVICE_RESULT", result)
        .env("EXIT_CODE", "killed")
        .env("EXIT_STATUS", "KILL")
        .output()
        .expect("run steer-stop-post");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "steer-stop-post failed:\n{text}");
    text
}

#[test]
fn exec_stop_post_keeps_steering_on_restart_and_crash_and_removes_it_on_stop() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("stoppost");
    work.write("steer.toml", &config_text(&work, &Options::default()));
    let mut daemon = Daemon::start(&lab.router, &work);
    assert!(daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(10)));

    // `systemctl restart`: the stop phase of a restart job.
    let out = stop_post(&lab, &work, Some("restart"), "success");
    assert!(out.contains("restarting"), "{out}");
    assert_eq!(lab.lan_tcx_programs(), ["steer_tc"], "kept on restart");
    // A crash, which Restart=on-failure answers.
    let out = stop_post(&lab, &work, None, "signal");
    assert!(out.contains("ended with signal"), "{out}");
    assert_eq!(lab.lan_tcx_programs(), ["steer_tc"], "kept after a crash");
    assert!(work.pin_dir.exists());
    // `systemctl stop`, even when the daemon had to be killed (a stop timeout).
    let out = stop_post(&lab, &work, Some("stop"), "timeout");
    assert!(out.contains("steer stopped"), "{out}");
    assert!(lab.lan_tcx_programs().is_empty(), "removed on stop");
    assert!(!work.pin_dir.exists());
    // The daemon ended by itself (after `steer stop`): nothing left, and it says so.
    let out = stop_post(&lab, &work, None, "success");
    assert!(out.contains("nothing to stop"), "{out}");
}

#[test]
fn the_openwrt_init_script_parses_in_sh_and_busybox_ash() {
    let script = repo().join("contrib/openwrt/steer.init");
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.starts_with("#!/bin/sh /etc/rc.common\n"));
    for needle in [
        "USE_PROCD=1",
        "procd_set_param respawn",
        "reload_service()",
        "\"$PROG\" reload -c",
        "service_stopped()",
        "restart()",
    ] {
        assert!(text.contains(needle), "the init script has {needle}");
    }
    for shell in [vec!["sh", "-n"], vec!["busybox", "ash", "-n"]] {
        let out = Command::new(tool(shell[0]))
            .args(&shell[1..])
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{shell:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let post = repo().join("contrib/systemd/steer-stop-post");
    let out = Command::new(tool("busybox"))
        .args(["ash", "-n"])
        .arg(&post)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn check_kernel_passes_here_and_names_what_is_missing_without_privilege() {
    steer_tests::require_root();
    let out = Command::new(steer_bin())
        .args(["check", "--kernel"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for feature in [
        "BPF LPM trie maps",
        "BPF array-of-maps",
        "tcx attachment",
        "BPF JIT",
        "BPF filesystem",
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(feature))
            .unwrap_or_else(|| panic!("no {feature} line:\n{text}"));
        assert!(line.trim_start().starts_with("ok"), "{line}");
    }
    // Without CAP_BPF (and CAP_SYS_ADMIN) the kernel refuses every map: each line says which
    // option the feature is, and what is missing.
    let out = Command::new(tool("setpriv"))
        .args(["--bounding-set", "-all,+net_admin", "--"])
        .arg(steer_bin())
        .args(["check", "--kernel"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    let lpm = text
        .lines()
        .find(|l| l.contains("BPF LPM trie maps"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        lpm.contains("MISSING") && lpm.contains("CONFIG_BPF_SYSCALL") && lpm.contains("CAP_BPF"),
        "{lpm}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MISSING"),
        "{out:?}"
    );
}

/// What OpenWrt's `/etc/rc.common` does with a procd init script, in the order it does it
/// (`start`: start_service, whose instance procd runs; `stop`: stop_service, procd kills the
/// instance with SIGTERM and waits, then service_stopped; `restart`: rc.common's default,
/// which the script may override; `reload`: reload_service). procd is not on this machine, so
/// this stand-in runs the instance's command in the background and kills it itself; the init
/// script and steer are the real ones. PROG and CONFIG are pointed at this build and test.
const RC_COMMON: &str = r#"
initscript=$1
action=$2
shift 2
restart() { trap '' TERM; stop "$@"; trap - TERM; start "$@"; }
start_service() { return 0; }
stop_service() { return 0; }
. "$initscript"
PROG=$STEER
CONFIG=$STEER_CONFIG
procd_open_instance() { :; }
procd_set_param() {
	case "$1" in
	command) shift; printf '%s\n' "$*" > "$STATE/command" ;;
	respawn) echo "$*" > "$STATE/respawn" ;;
	esac
}
procd_close_instance() {
	$(cat "$STATE/command") >> "$STATE/log" 2>&1 &
	echo $! > "$STATE/pid"
}
gone() { [ ! -d "/proc/$1" ] || grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat"; }
procd_kill() {
	pid=$(cat "$STATE/pid")
	kill -TERM "$pid"
	while ! gone "$pid"; do sleep 0.05; done
}
start() { start_service "$@"; }
stop() {
	stop_service "$@"
	procd_kill
	if type service_stopped >/dev/null 2>&1; then service_stopped; fi
}
reload() { reload_service "$@"; }
$action "$@"
"#;

/// The daemon the stand-in started, killed when the test ends (also on panic).
struct InitScript<'a> {
    lab: &'a Lab,
    work: &'a Workdir,
    state: PathBuf,
}

impl InitScript<'_> {
    fn run(&self, action: &str) -> String {
        let out = self
            .lab
            .router
            .command(tool("busybox"))
            .arg("ash")
            .arg(self.work.dir.join("rc.common"))
            .arg(repo().join("contrib/openwrt/steer.init"))
            .arg(action)
            .env("STEER", steer_bin())
            .env("STEER_CONFIG", self.work.config())
            .env("STATE", &self.state)
            .output()
            .expect("run the init script");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{action}: {text}");
        text
    }

    fn pid(&self) -> i32 {
        std::fs::read_to_string(self.state.join("pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state.join("log")).unwrap_or_default()
    }

    /// Waits until the daemon answers `status` (bounded).
    fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.work.steer(&["status"]).0 {
            assert!(Instant::now() < deadline, "not up:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for InitScript<'_> {
    fn drop(&mut self) {
        let pid = self.pid();
        if pid > 0 {
            // SAFETY: kill(2) on the daemon this test's stand-in started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn the_openwrt_init_script_keeps_steering_on_restart_and_removes_it_on_stop() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("procd");
    work.write("steer.toml", &config_text(&work, &Options::default()));
    work.write("rc.common", RC_COMMON);
    let state = work.dir.join("procd");
    std::fs::create_dir_all(&state).unwrap();
    let init = InitScript {
        lab: &lab,
        work: &work,
        state: state.clone(),
    };

    init.run("start");
    init.wait_up();
    let command = std::fs::read_to_string(state.join("command")).unwrap();
    assert!(command.contains(" run -c "), "{command}");
    assert!(
        std::fs::read_to_string(state.join("respawn"))
            .unwrap()
            .starts_with("respawn"),
        "respawned by procd"
    );
    assert_eq!(udp_via(&lab, Lab::SERVER_B.into(), 7401, 5), [0, 5]);

    let out = init.run("reload");
    assert!(
        out.contains("prefix writes"),
        "reload is `steer reload`: {out}"
    );

    let first = init.pid();
    init.run("restart");
    assert_ne!(init.pid(), first, "a new daemon");
    init.wait_up();
    assert!(
        init.log().contains("adopted the pinned TC link"),
        "{}",
        init.log()
    );
    assert_eq!(udp_via(&lab, Lab::SERVER_B.into(), 7402, 5), [0, 5]);

    let out = init.run("stop");
    assert!(out.contains("steer stopped"), "{out}");
    assert!(lab.lan_tcx_programs().is_empty(), "detached on stop");
    assert!(!work.pin_dir.exists(), "pins removed on stop");
}

/// A WAN whose device does not exist yet (a PPPoE session still to come) is waited for, not
/// out of place: readiness comes without waiting out the deadline, and says nothing is missing.
#[test]
fn a_wan_device_that_does_not_exist_yet_does_not_hold_up_readiness() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("ready-nodev");
    let config = config_text(&work, &Options::default());
    work.write(
        "steer.toml",
        &config.replace("interface = \"wan2\"", "interface = \"pppoe-wan\""),
    );
    let daemon = ready_without_waiting_for_wan2(&lab, &work, "waiting for a gateway: wan2");
    assert_eq!(lab.lan_tcx_programs(), ["steer_tc"]);
    drop(daemon);
    work.stop_in(&lab.router);
}

/// Nor does a WAN whose link is down at start: its routes wait for the link.
#[test]
fn a_wan_without_carrier_does_not_hold_up_readiness() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("ready-nocarrier");
    work.write("steer.toml", &config_text(&work, &Options::default()));
    lab.cut_carrier(Wan::Two);
    drop(ready_without_waiting_for_wan2(&lab, &work, "down: wan2"));
    work.stop_in(&lab.router);
}

/// Starts the daemon of `work` and checks that READY=1 comes well before the readiness
/// deadline, with everything in place and wan2 reported as `said` (down, or waiting for a
/// gateway when its device does not exist).
fn ready_without_waiting_for_wan2(lab: &Lab, work: &Workdir, said: &str) -> Daemon {
    let notify = Notifications::path(work);
    let mut cmd = steer_in(&lab.router);
    cmd.env("NOTIFY_SOCKET", &notify.address);
    let daemon = Daemon::spawn(work, cmd);
    let ready = notify.expect("READY=1", Duration::from_secs(20), &daemon);
    // Ready by the state, not by the deadline: a readiness that waited for wan2's first probe
    // round (none comes) says at the deadline which rounds it did not get. Not timed: the
    // start's wait for the kernel's verifier is what a loaded machine stretches.
    let log = daemon.log_text();
    assert!(!log.contains("ready, but"), "{log}");
    assert!(!ready.contains("NOT IN PLACE"), "{ready:?}");
    assert!(ready.contains(said), "{ready:?}");
    daemon
}
