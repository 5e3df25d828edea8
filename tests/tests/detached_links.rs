//! Links someone else detaches under a running daemon (`bpftool link detach`): the LAN
//! classifier, the XDP pre-classifier and the WAN traffic counters. The kernel keeps a link
//! the daemon holds, attached to nothing, and says nothing; the daemon's periodic check and
//! `steer reload` find it so and attach it again, with a warning, and `steer status` and
//! `steer explain` say what the kernel holds meanwhile.

use std::{path::Path, process::Command, time::Duration};

use aya::programs::{SchedClassifier, TcAttachType};
use steer_common::program_names;

use steer_tests::{
    daemon::{Daemon, steer_in},
    lab::{Lab, udp_via},
    scenario::{Options, Scenario},
};

/// The periodic check runs every 10 s; a little more for a loaded machine.
const PERIODIC: Duration = Duration::from_secs(25);
const LAN_REATTACHED: &str = "lan0: its classifier's link was detached by someone else (e.g. `bpftool link detach`): \
     attached again";

/// Waits (bounded by [`PERIODIC`]) until the daemon has logged `needle` `n` times.
fn wait_log_count(s: &Scenario, needle: &str, n: usize) {
    let deadline = std::time::Instant::now() + PERIODIC;
    while s.daemon.log_text().matches(needle).count() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "`{needle}` not logged {n} times within {PERIODIC:?}:\n{}",
            s.daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `bpftool -j link show pinned PATH`.
fn link_json(pin: &Path) -> serde_json::Value {
    let out = Command::new("bpftool")
        .args(["-j", "link", "show", "pinned"])
        .arg(pin)
        .output()
        .expect("bpftool");
    assert!(out.status.success(), "bpftool link show {pin:?}: {out:?}");
    serde_json::from_slice(&out.stdout).expect("bpftool json")
}

/// Detaches the link pinned at `pin` as an operator would: `bpftool link detach id N`.
fn detach(pin: &Path) {
    let id = link_json(pin)["id"].as_u64().expect("link id");
    let out = Command::new("bpftool")
        .args(["link", "detach", "id", &id.to_string()])
        .output()
        .expect("bpftool");
    assert!(out.status.success(), "bpftool link detach {id}: {out:?}");
}

/// Whether an XDP program is on the router's LAN interface (`ip link` shows its id). What a
/// link is attached to is read from the interfaces: this bpftool shows no index for tcx and
/// XDP links.
fn xdp_on_lan0(s: &Scenario) -> bool {
    s.lab
        .router
        .run(&format!("ip -d link show dev {}", Lab::LAN_IFACE))
        .contains("prog/xdp id")
}

/// A program's name as the kernel keeps it (15 bytes).
fn kernel_name(name: &str) -> &str {
    &name[..name.len().min(15)]
}

/// The names of the programs in the tcx chain of the router's `iface` in `direction`.
fn tcx_programs(s: &Scenario, iface: &str, direction: TcAttachType) -> Vec<String> {
    s.lab.router.enter(|| {
        let (_, progs) = SchedClassifier::query_tcx(iface, direction).expect("query tcx");
        progs
            .iter()
            .map(|p| p.name_as_str().unwrap_or("?").to_owned())
            .collect()
    })
}

fn link_pin(s: &Scenario, name: &str) -> std::path::PathBuf {
    s.work.pin_dir.join("links").join(name)
}

fn lan0(status: &serde_json::Value) -> &serde_json::Value {
    &status["lan"][0]
}

/// The bypass set leaves by wan2 (the classifier marks it); unmarked, it would leave by wan1.
fn bypass_via(s: &Scenario, port: u16) -> [usize; 2] {
    udp_via(&s.lab, Lab::SERVER_B.into(), port, 5)
}

#[test]
fn a_detached_lan_classifier_is_seen_and_attached_again_by_the_periodic_check_and_by_reload() {
    let s = Scenario::start("detach-lan", &Options::default());
    assert_eq!(bypass_via(&s, 7601), [0, 5], "steered before");
    let tc = link_pin(&s, "tc-lan0");
    // First a repair by the periodic check, which tells when one ran: what is observed below
    // then happens within the 10 s before the next one (it would repair it meanwhile).
    detach(&tc);
    s.daemon.wait_log(LAN_REATTACHED, PERIODIC);
    detach(&tc);
    assert!(s.lab.lan_tcx_programs().is_empty(), "detached");

    // Not steered now: the bypass set does not leave by wan2, and status and explain say why.
    assert_eq!(bypass_via(&s, 7602)[1], 0, "not classified while detached");
    let st = s.status();
    let problem = lan0(&st)["problem"].as_str().unwrap_or_default().to_owned();
    assert!(
        problem.starts_with("not classified: its classifier's link was detached"),
        "status: {st}"
    );
    let text = s.steer(&["status"]);
    assert!(text.contains("LAN: lan0 (not classified"), "{text}");
    let out = steer_in(&s.lab.router)
        .args([
            "explain",
            &Lab::SERVER_B.to_string(),
            "--in",
            "lan0",
            "--socket",
        ])
        .arg(&s.work.socket)
        .arg("--pin-dir")
        .arg(&s.work.pin_dir)
        .output()
        .expect("steer explain");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is attached to no device"),
        "{out:?}"
    );

    // The periodic check attaches it again, with a warning naming the interface.
    wait_log_count(&s, LAN_REATTACHED, 2);
    assert!(tc.exists(), "a new link, pinned where the old one was");
    assert_eq!(bypass_via(&s, 7603), [0, 5], "steered again");
    assert_eq!(lan0(&s.status())["problem"], serde_json::Value::Null);
    assert_eq!(s.lab.lan_tcx_programs(), ["steer_tc"], "attached once");

    // `steer reload` repairs it at once (the periodic check just ran: not before the reload).
    detach(&tc);
    let out = s.steer(&["reload"]);
    assert!(out.contains(LAN_REATTACHED), "{out}");
    assert_eq!(bypass_via(&s, 7604), [0, 5], "steered after the reload");
    assert_eq!(s.lab.lan_tcx_programs(), ["steer_tc"], "attached once");
}

/// A reload that turns XDP on or off says so in its answer and in `steer status`'s last change,
/// as it does for a LAN classifier: it used to be in the log only.
#[test]
fn a_reload_that_turns_xdp_on_or_off_says_so_in_its_answer_and_status() {
    let s = Scenario::start("xdp-toggle", &Options::default());
    let config = std::fs::read_to_string(s.work.config()).unwrap();
    let last_change = |s: &Scenario| s.status()["last_apply"]["changes"].to_string();
    s.work.write(
        "steer.toml",
        &config.replace("lan = [\"lan0\"]", "lan = [\"lan0\"]\nxdp = true"),
    );
    let out = s.steer(&["reload"]);
    assert!(xdp_on_lan0(&s));
    let mode = lan0(&s.status())["xdp"]
        .as_str()
        .expect("XDP attached")
        .to_owned();
    let attached = format!("lan0: XDP pre-classifier attached ({mode})");
    assert!(out.contains(&attached), "missing `{attached}` in:\n{out}");
    let status = last_change(&s);
    assert!(
        status.contains(&attached),
        "missing `{attached}` in:\n{status}"
    );

    s.work.write("steer.toml", &config);
    let out = s.steer(&["reload"]);
    assert!(!xdp_on_lan0(&s));
    let detached = "lan0: XDP pre-classifier detached (xdp is off); TC classifies alone";
    assert!(out.contains(detached), "missing `{detached}` in:\n{out}");
    let status = last_change(&s);
    assert!(
        status.contains(detached),
        "missing `{detached}` in:\n{status}"
    );
    assert_eq!(
        s.daemon.log_text().matches(detached).count(),
        1,
        "logged once:\n{}",
        s.daemon.log_text()
    );
}

#[test]
fn detached_xdp_and_wan_counter_links_are_attached_again_and_a_restart_names_the_cause() {
    let mut s = Scenario::start("detach-wan", &Options::default());
    // XDP on: the pre-classifier's link too.
    let config = std::fs::read_to_string(s.work.config()).unwrap();
    s.work.write(
        "steer.toml",
        &config.replace("lan = [\"lan0\"]", "lan = [\"lan0\"]\nxdp = true"),
    );
    s.steer(&["reload"]);
    assert!(xdp_on_lan0(&s));
    let mode = lan0(&s.status())["xdp"]
        .as_str()
        .expect("XDP attached")
        .to_owned();
    let xdp = link_pin(&s, &format!("xdp-{mode}-lan0"));
    let egress = link_pin(&s, "wan-egress-wan1");
    let ingress = link_pin(&s, "wan-ingress-wan2");

    // The periodic check repairs the WAN counters as well; and its repair tells when one
    // ran, so that the next one does not repair what is observed below before the reload.
    detach(&ingress);
    assert!(tcx_programs(&s, "wan2", TcAttachType::Ingress).is_empty());
    s.daemon.wait_log(
        "wan2: a WAN traffic counter link was detached by someone else",
        PERIODIC,
    );
    assert_eq!(
        tcx_programs(&s, "wan2", TcAttachType::Ingress),
        [kernel_name(program_names::WAN_INGRESS)]
    );

    for pin in [&xdp, &egress] {
        detach(pin);
    }
    assert!(!xdp_on_lan0(&s), "XDP detached");
    assert!(tcx_programs(&s, "wan1", TcAttachType::Egress).is_empty());
    let st = s.status();
    assert_eq!(lan0(&st)["xdp"], serde_json::Value::Null, "status: {st}");
    assert!(
        lan0(&st)["problem"]
            .as_str()
            .is_some_and(|p| p.starts_with("TC classifies alone")),
        "status: {st}"
    );
    let out = s.steer(&["reload"]);
    for line in [
        "lan0: its XDP pre-classifier's link was detached by someone else (e.g. `bpftool link \
         detach`): attached again",
        "wan1: a WAN traffic counter link was detached by someone else (e.g. `bpftool link \
         detach`): attached again",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
    assert!(xdp_on_lan0(&s), "XDP attached again");
    assert!(xdp.exists());
    assert!(egress.exists());
    assert_eq!(
        tcx_programs(&s, "wan1", TcAttachType::Egress),
        [kernel_name(program_names::WAN_EGRESS)]
    );
    assert_eq!(lan0(&s.status())["xdp"], mode.as_str());
    assert_eq!(bypass_via(&s, 7611), [0, 5], "steered");

    // Detached while no daemon runs: the next start says so (the XDP link, still on lan0,
    // tells it was not a new device of the same name) and attaches anew.
    s.daemon.kill9();
    detach(&link_pin(&s, "tc-lan0"));
    s.daemon = Daemon::start(&s.lab.router, &s.work);
    s.daemon.wait_log(
        "it was detached by someone else (e.g. `bpftool link detach`) while no daemon ran; \
         lan0",
        Duration::from_secs(10),
    );
    assert!(
        !s.daemon.log_text().contains("was deleted"),
        "{}",
        s.daemon.log_text()
    );
    assert_eq!(s.lab.lan_tcx_programs(), ["steer_tc"]);
    assert_eq!(bypass_via(&s, 7612), [0, 5], "steered after the restart");
}
