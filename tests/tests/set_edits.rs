//! Runtime set edits (`steer set NAME add|del|flush|list`, issue 15) with the real daemon in
//! the namespace lab: entries reach the kernel and move real traffic, are refused with the
//! list parser's words and nothing changed, expire, stream in whole or not at all, and live
//! beside the configured prefixes through reloads (full and one-list) and a daemon restart.
//! What the kernel holds is read from the pinned maps, not from the daemon's word.

use std::{
    collections::BTreeMap,
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use steer::{dataplane::Maps, model::PrefixMap, prefix::Prefix};
use steer_tests::{
    daemon::{Daemon, Workdir, steer_bin},
    lab::{Lab, udp_via},
    scenario::lab_wans,
};

/// Set `other` (inline 192.0.2.128/25) and the list-only set `big` (lists/big.txt) send to
/// wan2; everything else goes to wan1.
fn config(work: &Workdir, extra: &str) -> String {
    format!(
        r#"
[general]
lan = ["lan0"]
{pins}
{wans}
[[policy]]
name = "wan2-first"
members = [{{ wan = "wan2", metric = 1 }}, {{ wan = "wan1", metric = 2 }}]
[[policy]]
name = "wan1-first"
members = [{{ wan = "wan1", metric = 1 }}, {{ wan = "wan2", metric = 2 }}]
[default]
policy = "wan1-first"

[[set]]
name = "other"
policy = "wan2-first"
prefixes = ["192.0.2.128/25"]

[[set]]
name = "big"
policy = "wan2-first"
files = ["lists/big.txt"]
{extra}
{control}"#,
        pins = work.private_paths(),
        wans = lab_wans("targets = [\"192.0.2.1\"]", "targets = [\"192.0.2.2\"]"),
        control = work.control_section()
    )
}

fn setup(tag: &str) -> (Lab, Workdir, Daemon) {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new(tag);
    work.write(
        "lists/big.txt",
        "# big\n10.0.0.0/24\n10.0.1.0/24\n2001:db8:1::/48\n",
    );
    work.write("steer.toml", &config(&work, ""));
    let daemon = Daemon::start(&lab.router, &work);
    (lab, work, daemon)
}

fn p(s: &str) -> Prefix {
    steer::prefix::parse_prefix(s, true).unwrap()
}

/// Every prefix the kernel holds, with the name of its set.
fn kernel(work: &Workdir) -> BTreeMap<Prefix, String> {
    let maps = Maps::from_pins(&work.pin_dir).expect("pinned maps");
    let names = set_names(work);
    PrefixMap::ALL
        .iter()
        .flat_map(|m| maps.prefixes(*m).expect("read map"))
        .map(|(p, rule)| (p, names.get(&rule).cloned().unwrap_or_default()))
        .collect()
}

/// Rule id -> set name, from `steer dump rules --json`.
fn set_names(work: &Workdir) -> BTreeMap<u32, String> {
    let dump = work.steer_ok(&["dump", "rules", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&dump).expect("json");
    v["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            let id = r["rule"].as_u64().expect("id") as u32;
            (id, r["set"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

/// `steer set ARGS --file -` with `input` on standard input.
fn set_stdin(work: &Workdir, args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new(steer_bin())
        .arg("set")
        .args(args)
        .args(["--file", "-", "--socket"])
        .arg(&work.socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn steer set");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("steer set");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn status_sets(work: &Workdir) -> serde_json::Value {
    let status = work.steer_ok(&["status", "--json"]);
    serde_json::from_str::<serde_json::Value>(&status).expect("status json")["sets"].clone()
}

fn set_status<'a>(sets: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    sets.as_array()
        .expect("sets")
        .iter()
        .find(|s| s["name"] == name)
        .expect("set in status")
}

#[test]
fn an_added_prefix_moves_real_traffic_and_shows_in_explain_dump_and_status() {
    let (lab, work, daemon) = setup("set-add");
    let server = Lab::SERVER_B;
    assert_eq!(
        udp_via(&lab, server.into(), 7701, 5),
        [5, 0],
        "default: wan1"
    );
    let before = kernel(&work);

    let out = work.steer_ok(&["set", "big", "add", "203.0.113.20"]);
    assert!(out.contains("set big: 1 added"), "{out}");
    let after = kernel(&work);
    assert_eq!(
        after.get(&p("203.0.113.20/32")).map(String::as_str),
        Some("big")
    );
    assert_eq!(after.len(), before.len() + 1, "exactly one prefix written");
    assert_eq!(
        udp_via(&lab, server.into(), 7702, 5),
        [0, 5],
        "now the set's wan2"
    );

    let explain = work.steer_ok(&["explain", "203.0.113.20"]);
    assert!(explain.contains("set big"), "{explain}");
    assert!(explain.contains("runtime entry"), "{explain}");
    let configured = work.steer_ok(&["explain", "10.0.0.9"]);
    assert!(!configured.contains("runtime entry"), "{configured}");
    let dump = work.steer_ok(&["dump", "sets"]);
    let line = dump
        .lines()
        .find(|l| l.starts_with("203.0.113.20/32"))
        .unwrap_or_else(|| panic!("{dump}"));
    assert!(line.ends_with("runtime"), "{line}");
    // Read with another socket (no journal there), which entries are runtime ones is not
    // known: said, not guessed as "config".
    let out = std::process::Command::new(steer_tests::daemon::steer_bin())
        .args(["dump", "sets", "--pin-dir"])
        .arg(&work.pin_dir)
        .args(["--socket", "/nonexistent/steer.sock"])
        .output()
        .expect("steer runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("203.0.113.20/32"))
        .unwrap_or_else(|| panic!("{text}{}", String::from_utf8_lossy(&out.stderr)));
    assert!(line.contains("unknown"), "{line}");
    let sets = status_sets(&work);
    assert_eq!(set_status(&sets, "big")["runtime"], 1);
    assert_eq!(set_status(&sets, "big")["prefixes"], 4);
    assert_eq!(work.steer_ok(&["set", "big", "list"]), "203.0.113.20/32\n");

    let out = work.steer_ok(&["set", "big", "del", "203.0.113.20/32", "198.18.0.0/15"]);
    assert!(out.contains("1 removed, 1 were not there"), "{out}");
    assert_eq!(kernel(&work), before);

    // The LAN's own subnet is a local destination: added, and said to take no effect.
    let out = work.steer_ok(&["set", "big", "add", "10.10.0.128/25"]);
    assert!(
        out.contains("note: 10.10.0.128/25 lies in the local destination 10.10.0.0/24"),
        "{out}"
    );
    work.steer_ok(&["set", "big", "del", "10.10.0.128/25"]);
    assert_eq!(kernel(&work), before);
    assert_eq!(
        udp_via(&lab, server.into(), 7703, 5),
        [5, 0],
        "back to wan1"
    );

    // IPv6 the same way, with a timeout that `dump --json` reports.
    let server6 = Lab::SERVER_B6;
    assert_eq!(
        udp_via(&lab, server6.into(), 7704, 5),
        [5, 0],
        "default: wan1"
    );
    work.steer_ok(&["set", "big", "add", "2001:db8:113::/48", "--timeout", "1h"]);
    assert_eq!(udp_via(&lab, server6.into(), 7705, 5), [0, 5], "now wan2");
    let dump: serde_json::Value =
        serde_json::from_str(&work.steer_ok(&["dump", "sets", "--json"])).expect("json");
    let row = dump["sets"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["prefix"] == "2001:db8:113::/48")
        .unwrap_or_else(|| panic!("{dump}"));
    let left = row["origin"]["runtime"]["expires_in_s"]
        .as_u64()
        .expect("a timeout");
    assert!((3590..=3600).contains(&left), "{row}");
    drop(daemon);
}

#[test]
fn bad_or_conflicting_edits_are_refused_whole_with_their_reasons_and_change_nothing() {
    let (_lab, work, _daemon) = setup("set-bad");
    let before = kernel(&work);

    // A typo: the list parser's words, before anything is sent.
    let (ok, _, err) = work.steer(&["set", "big", "add", "198.51.100.0/24", "10.0.0.300"]);
    assert!(!ok);
    let list_error = steer::config::parse_list("10.0.0.1\n10.0.0.300\n", false).unwrap_err();
    assert!(err.contains("argument 2"), "{err}");
    assert!(err.contains(&list_error[0].message()), "{err}");
    // In a stream: its line and column.
    let (ok, _, err) = set_stdin(
        &work,
        &["big", "add"],
        "# x\n198.51.100.0/24\n  010.1.2.3\n",
    );
    assert!(!ok);
    assert!(err.contains("stdin:3:3"), "{err}");
    assert!(err.contains("leading zero"), "{err}");

    // Held by another set (configured there): the daemon names it and where it is written.
    let (ok, _, err) = work.steer(&["set", "big", "add", "198.51.100.0/24", "192.0.2.128/25"]);
    assert!(!ok);
    assert!(err.contains("is in set other"), "{err}");
    assert!(err.contains("steer.toml:"), "{err}");
    // The default route, unless the set allows it; a configured prefix cannot be deleted.
    let (ok, _, err) = work.steer(&["set", "big", "add", "0.0.0.0/0"]);
    assert!(!ok && err.contains("allow_default_route"), "{err}");
    let (ok, _, err) = work.steer(&["set", "big", "del", "10.0.1.0/24"]);
    assert!(!ok);
    assert!(err.contains("big.txt:3"), "{err}");
    let (ok, _, err) = work.steer(&["set", "nosuch", "add", "198.51.100.0/24"]);
    assert!(!ok && err.contains("other, big"), "{err}");
    let (ok, _, err) = work.steer(&["set", "big", "add", "198.51.100.0/24", "--timeout", "0"]);
    assert!(!ok && err.contains("--timeout"), "{err}");

    // The protocol refuses what the CLI never sends: a flush with prefixes.
    let flush = steer::control::Request::Set {
        name: "big".into(),
        op: steer::control::proto::SetOp::Flush,
        prefixes: vec!["10.0.0.0/24".into()],
        timeout: None,
        batch: None,
    };
    let answer = steer::control::call(&work.socket, &flush, Duration::from_secs(5)).unwrap();
    assert!(!answer.ok, "{answer:?}");

    assert_eq!(kernel(&work), before, "nothing refused reached the kernel");
    // An empty list says so, on stderr: stdout stays a valid (empty) list file.
    let (ok, out, err) = work.steer(&["set", "big", "list"]);
    assert!(ok && out.is_empty(), "{out}");
    assert!(err.contains("set big: no runtime entries"), "{err}");
}

#[test]
fn a_set_that_changes_direction_takes_its_runtime_entries_along() {
    let (_lab, work, daemon) = setup("set-direction");
    work.steer_ok(&["set", "big", "add", "192.168.1.64/27"]);
    work.write(
        "steer.toml",
        &config(&work, "").replace(
            "files = [\"lists/big.txt\"]",
            "files = [\"lists/big.txt\"]\nmatch = \"src\"",
        ),
    );
    work.steer_ok(&["reload"]);
    let maps = Maps::from_pins(&work.pin_dir).expect("pinned maps");
    let src: Vec<Prefix> = maps
        .prefixes(PrefixMap::SrcV4)
        .expect("read")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(
        src.contains(&p("192.168.1.64/27")),
        "{src:?}\n{}",
        daemon.log_text()
    );
    let dst = maps.prefixes(PrefixMap::DstV4).expect("read");
    assert!(
        dst.iter().all(|(q, _)| *q != p("192.168.1.64/27")),
        "{dst:?}"
    );
    let explain = work.steer_ok(&["explain", "203.0.113.20", "--src", "192.168.1.70"]);
    assert!(explain.contains("set big"), "{explain}");
    assert!(explain.contains("runtime entry"), "{explain}");
}

#[test]
fn a_long_stream_goes_in_whole_or_not_at_all() {
    let (_lab, work, _daemon) = setup("set-stream");
    let before = kernel(&work);
    let lines: Vec<String> = (0..20_000u32)
        .map(|i| format!("100.{}.{}.0/24", 64 + i / 256, i % 256))
        .collect();

    // The last prefix is held by set other: refused after every request came, nothing in.
    let mut bad = lines.join("\n");
    bad.push_str("\n192.0.2.128/25\n");
    let (ok, _, err) = set_stdin(&work, &["big", "add"], &bad);
    assert!(!ok, "refused");
    assert!(err.contains("is in set other"), "{err}");
    assert_eq!(kernel(&work), before, "no part of a refused stream is in");

    let (ok, out, err) = set_stdin(&work, &["big", "add", "--timeout", "1h"], &lines.join("\n"));
    assert!(ok, "{err}");
    assert!(out.contains("20000 added"), "{out}");
    let after = kernel(&work);
    assert_eq!(after.len(), before.len() + 20_000);
    assert_eq!(set_status(&status_sets(&work), "big")["runtime"], 20_000);
    let listed = work.steer_ok(&["set", "big", "list"]);
    assert_eq!(listed.lines().count(), 20_000);
    assert!(
        listed.lines().all(|l| l.contains("# expires in")),
        "timeouts shown"
    );

    let out = work.steer_ok(&["set", "big", "flush"]);
    assert!(out.contains("20000 removed"), "{out}");
    assert_eq!(kernel(&work), before);
}

#[test]
fn a_timed_entry_leaves_the_kernel_when_its_time_is_up() {
    let (_lab, work, daemon) = setup("set-timeout");
    work.steer_ok(&["set", "big", "add", "198.51.100.0/24", "--timeout", "2s"]);
    work.steer_ok(&["set", "big", "add", "198.51.101.0/24"]);
    assert!(kernel(&work).contains_key(&p("198.51.100.0/24")));
    let listed = work.steer_ok(&["set", "big", "list", "--json"]);
    assert!(listed.contains("expires_in"), "{listed}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while kernel(&work).contains_key(&p("198.51.100.0/24")) {
        assert!(
            Instant::now() < deadline,
            "not expired: {}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        kernel(&work).contains_key(&p("198.51.101.0/24")),
        "no timeout: stays"
    );
    assert_eq!(work.steer_ok(&["set", "big", "list"]), "198.51.101.0/24\n");
}

#[test]
fn runtime_entries_live_beside_the_configuration_through_reloads_and_a_restart() {
    let (lab, work, mut daemon) = setup("set-reload");
    work.steer_ok(&["set", "big", "add", "198.51.100.0/24", "10.9.0.0/16"]);
    work.steer_ok(&["set", "other", "add", "172.20.0.0/16"]);

    // One list changes (a line goes, a line comes): the runtime entries of its set stay.
    std::thread::sleep(Duration::from_millis(1100));
    work.write(
        "lists/big.txt",
        "# big\n10.0.0.0/24\n2001:db8:1::/48\n10.8.0.0/16\n",
    );
    std::thread::sleep(Duration::from_millis(1100));
    let out = work.steer_ok(&["reload"]);
    assert!(out.contains("only a list of set big changed"), "{out}");
    let k = kernel(&work);
    assert_eq!(k.get(&p("10.9.0.0/16")).map(String::as_str), Some("big"));
    assert!(!k.contains_key(&p("10.0.1.0/24")), "the dropped line went");

    // The list now holds a runtime entry: it becomes configured (deleting it is refused).
    std::thread::sleep(Duration::from_millis(1100));
    work.write(
        "lists/big.txt",
        "# big\n10.0.0.0/24\n2001:db8:1::/48\n10.8.0.0/16\n10.9.0.0/16\n",
    );
    std::thread::sleep(Duration::from_millis(1100));
    let out = work.steer_ok(&["reload"]);
    assert!(out.contains("its configuration now holds them"), "{out}");
    assert_eq!(work.steer_ok(&["set", "big", "list"]), "198.51.100.0/24\n");
    let (ok, _, err) = work.steer(&["set", "big", "del", "10.9.0.0/16"]);
    assert!(!ok && err.contains("big.txt:5"), "{err}");

    // A full reload (the configuration file changed) keeps them; a set that goes loses its.
    work.write(
        "steer.toml",
        &config(&work, "").replace(
            "[[set]]\nname = \"other\"\npolicy = \"wan2-first\"\nprefixes = [\"192.0.2.128/25\"]\n",
            "",
        ),
    );
    let out = work.steer_ok(&["reload"]);
    assert!(
        out.contains(
            "set other: 1 runtime entries dropped (172.20.0.0/16): the set is no longer configured"
        ),
        "{out}"
    );
    let k = kernel(&work);
    assert_eq!(
        k.get(&p("198.51.100.0/24")).map(String::as_str),
        Some("big")
    );
    assert!(!k.contains_key(&p("172.20.0.0/16")), "set other is gone");

    // A daemon restart (SIGTERM leaves steering in place) finds them in the journal.
    assert!(daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(10)));
    let daemon = Daemon::start(&lab.router, &work);
    assert_eq!(work.steer_ok(&["set", "big", "list"]), "198.51.100.0/24\n");
    assert_eq!(
        kernel(&work).get(&p("198.51.100.0/24")).map(String::as_str),
        Some("big"),
        "{}",
        daemon.log_text()
    );
    // `steer stop` ends them with the rest of steer's state.
    drop(daemon);
    let journal = work.socket.with_extension("sets");
    assert!(journal.exists());
    work.stop_in(&lab.router);
    assert!(!journal.exists(), "steer stop removes the journal");
}
