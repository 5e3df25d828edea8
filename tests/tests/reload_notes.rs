//! What a reload tells, whichever path it takes (full, one changed list, nothing changed), with
//! the real daemon in the namespace lab: a list renamed into place is read at once and one
//! written in place waits and says so; files others may write are named; a set whose list
//! emptied is warned about; a runtime edit that races a list reload leaves every set's count
//! right. And a SIGHUP while the daemon starts does not kill it.

use std::{collections::BTreeMap, time::Duration};

use steer::{dataplane::Maps, model::PrefixMap};
use steer_tests::{
    daemon::{Daemon, Workdir, steer_in},
    lab::Lab,
    scenario::lab_wans,
};

/// Set `small` (inline 192.0.2.128/25) and the list-only set `big` (lists/big.txt), on wan2.
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

[[set]]
name = "small"
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

/// The list the tests start from: 2,000 IPv4 /24s.
fn list() -> String {
    let mut t = String::from("# a list\n");
    for i in 0..2000u32 {
        t.push_str(&format!("10.{}.{}.0/24\n", i / 256, i % 256));
    }
    t
}

fn setup(tag: &str) -> (Lab, Workdir, Daemon) {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new(tag);
    work.write("lists/big.txt", &list());
    work.write("steer.toml", &config(&work, ""));
    let daemon = Daemon::start(&lab.router, &work);
    (lab, work, daemon)
}

/// Writes `text` to a temporary file next to `rel` and renames it into place, as an update
/// script does; the rename comes a moment after the write, as after any download.
fn replace(work: &Workdir, rel: &str, text: &str) {
    let temp = work.write(&format!("{rel}.new"), text);
    std::thread::sleep(Duration::from_millis(30));
    std::fs::rename(&temp, work.dir.join(rel)).expect("rename into place");
}

/// The milliseconds a list reload's reply gives for checking the files.
fn checked_ms(reply: &str) -> f64 {
    reply
        .split("files checked in ")
        .nth(1)
        .and_then(|r| r.split(" ms").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no check time in:\n{reply}"))
}

/// Prefixes per set name the kernel holds (from the pinned maps).
fn kernel_counts(work: &Workdir) -> BTreeMap<String, u64> {
    let dump = work.steer_ok(&["dump", "rules", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&dump).expect("json");
    let names: BTreeMap<u32, String> = v["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            let id = r["rule"].as_u64().expect("id") as u32;
            (id, r["set"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    let maps = Maps::from_pins(&work.pin_dir).expect("pinned maps");
    let mut counts = BTreeMap::new();
    for m in PrefixMap::ALL {
        for (_, rule) in maps.prefixes(m).expect("read map") {
            *counts.entry(names[&rule].clone()).or_default() += 1;
        }
    }
    counts
}

/// Prefixes per set name `steer status` gives (sets that hold some).
fn status_counts(work: &Workdir) -> BTreeMap<String, u64> {
    let status = work.steer_ok(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status).expect("status json");
    v["sets"]
        .as_array()
        .expect("sets")
        .iter()
        .map(|s| {
            let name = s["name"].as_str().expect("name").to_owned();
            (name, s["prefixes"].as_u64().expect("prefixes"))
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[test]
fn a_renamed_list_is_read_at_once_and_one_written_in_place_waits_and_says_so() {
    let (_lab, work, _daemon) = setup("notes-settle");
    replace(&work, "lists/big.txt", &(list() + "198.19.77.0/24\n"));
    let out = work.steer_ok(&["reload"]);
    assert!(out.contains("only a list of set big changed"), "{out}");
    assert!(!out.contains("to settle"), "{out}");
    assert!(checked_ms(&out) < 1000.0, "{out}");

    // Written in place just now: it may still be being written, so the reload waits for it.
    work.write("lists/big.txt", &(list() + "198.19.78.0/24\n"));
    let out = work.steer_ok(&["reload"]);
    assert!(out.contains("only a list of set big changed"), "{out}");
    assert!(
        out.contains(&format!(
            "waited 1.0 s for {} to settle: it was written less than a second ago",
            work.dir.join("lists/big.txt").display()
        )),
        "{out}"
    );
    assert!(checked_ms(&out) >= 1000.0, "{out}");
}

#[test]
fn a_runtime_edit_that_races_a_list_reload_leaves_every_sets_count_right() {
    let (_lab, work, daemon) = setup("notes-race");
    // Written in place just now: the reload waits a second for it to settle, and a runtime
    // edit that comes meanwhile adds the prefix the list now takes to set small. The list
    // takes it over, and both sets are counted again.
    work.write("lists/big.txt", &(list() + "198.19.171.0/24\n"));
    let reload = {
        let socket = work.socket.clone();
        std::thread::spawn(move || {
            let out = std::process::Command::new(steer_tests::daemon::steer_bin())
                .args(["reload", "--socket"])
                .arg(&socket)
                .output()
                .expect("steer reload");
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    work.steer_ok(&["set", "small", "add", "198.19.171.0/24"]);
    let out = reload.join().expect("reload thread");
    assert!(out.contains("only a list of set big changed"), "{out}");
    assert!(
        out.contains(
            "set small: 1 runtime entries dropped (198.19.171.0/24): set big's configuration \
             holds them"
        ),
        "{out}"
    );
    assert_eq!(
        status_counts(&work),
        kernel_counts(&work),
        "{}",
        daemon.log_text()
    );
    assert_eq!(kernel_counts(&work)["small"], 1);
}

#[test]
fn files_others_may_write_are_named_at_every_reload() {
    let (_lab, work, daemon) = setup("notes-writable");
    let lists = work.dir.join("lists");
    std::fs::set_permissions(&lists, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    let named = format!("{} is writable by every user", lists.display());
    let out = work.steer_ok(&["reload"]);
    assert!(out.contains("are unchanged"), "{out}");
    assert!(out.contains(&named), "{out}");

    replace(&work, "lists/big.txt", &(list() + "198.19.77.0/24\n"));
    let out = work.steer_ok(&["reload"]);
    assert!(out.contains("only a list of set big changed"), "{out}");
    assert!(out.contains(&named), "{out}");
    assert_eq!(
        daemon.log_text().matches(&named).count(),
        2,
        "{}",
        daemon.log_text()
    );
}

#[test]
fn a_list_that_comes_out_empty_is_applied_with_a_warning_on_every_path() {
    let (_lab, work, daemon) = setup("notes-empty");
    let file = work.dir.join("lists/big.txt");
    let warning = format!(
        "set big holds no configured prefix now: its list files ({}) give it none: empty, or \
         comments only (a failed download?), and the 2000 it held were removed",
        file.display()
    );
    // The list path: a download that left a comment only.
    replace(&work, "lists/big.txt", "# downloaded list\n");
    let out = work.steer_ok(&["reload"]);
    assert!(out.contains("only a list of set big changed"), "{out}");
    assert!(out.contains("0 added, 0 changed, 2000 removed"), "{out}");
    assert!(out.contains(&warning), "{out}");
    daemon.wait_log(&warning, Duration::from_secs(5));
    assert_eq!(kernel_counts(&work).get("big"), None);

    // The full path (the configuration changed too): an empty file.
    replace(&work, "lists/big.txt", &list());
    let out = work.steer_ok(&["reload"]);
    assert!(!out.contains("holds no configured prefix"), "{out}");
    work.write("steer.toml", &config(&work, "# changed\n"));
    replace(&work, "lists/big.txt", "");
    let out = work.steer_ok(&["reload"]);
    assert!(!out.contains("only a list of set big changed"), "{out}");
    assert!(out.contains(&warning), "{out}");
    // A set that held nothing and still holds nothing is not warned about again.
    work.write("steer.toml", &config(&work, "# changed again\n"));
    let out = work.steer_ok(&["reload"]);
    assert!(!out.contains("holds no configured prefix"), "{out}");
}

#[test]
fn a_sighup_while_the_daemon_starts_reloads_once_it_runs() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("notes-hup");
    work.write("lists/big.txt", &list());
    // Written just now: the start waits a second for them to settle, so the signals below
    // come while it starts.
    work.write("steer.toml", &config(&work, ""));
    let daemon = Daemon::spawn(&work, steer_in(&lab.router));
    for after in [50, 300] {
        std::thread::sleep(Duration::from_millis(after));
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) };
    }
    let daemon = daemon.wait_up(&work);
    daemon.wait_log("SIGHUP: reloading", Duration::from_secs(10));
    assert!(work.steer_ok(&["status"]).contains("big"));
}

#[test]
fn steer_check_says_when_it_waited_for_a_file_to_settle() {
    let work = Workdir::new("notes-check");
    work.write("lists/big.txt", &list());
    work.write("steer.toml", &config(&work, ""));
    let (ok, _, err) = work.steer(&["check"]);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!(
            "note: waited 1.0 s for {} to settle: it was written less than a second ago",
            work.config().display()
        )),
        "{err}"
    );
    replace(
        &work,
        "steer.toml",
        &config(&work, "# renamed into place\n"),
    );
    replace(&work, "lists/big.txt", &list());
    let (ok, _, err) = work.steer(&["check"]);
    assert!(ok, "{err}");
    assert!(!err.contains("to settle"), "{err}");
}

/// What `steer check` notes is said at start and at a full reload too: here, a plain set that
/// holds nothing; and not of a set whose list holds prefixes.
#[test]
fn the_checks_notes_are_said_at_start_and_at_a_full_reload() {
    let (_lab, work, daemon) = setup("notes-at-reload");
    let note = "set `empty` holds no prefix and no domain";
    assert!(!daemon.log_text().contains(note));
    work.write("lists/empty.txt", "# nothing yet\n");
    let empty =
        "[[set]]\nname = \"empty\"\npolicy = \"wan2-first\"\nfiles = [\"lists/empty.txt\"]\n";
    work.write("steer.toml", &config(&work, empty));
    std::thread::sleep(Duration::from_millis(1100));
    let out = work.steer_ok(&["reload"]);
    assert!(out.contains(note), "the reload's reply: {out}");
    daemon.wait_log(note, Duration::from_secs(5));
    // Set `big` holds its list's 2,000 prefixes: a full reload (the compile moves them out of
    // the configuration it reads) does not call it empty, nor does the start.
    let false_note = "set `big` holds no prefix and no domain";
    assert!(!out.contains(false_note), "the reload's reply: {out}");
    work.write("steer.toml", &config(&work, &format!("{empty}# changed\n")));
    let out = work.steer_ok(&["reload"]);
    assert!(!out.contains("only a list"), "a full reload: {out}");
    assert!(out.contains(note), "the reload's reply: {out}");
    assert!(!out.contains(false_note), "the reload's reply: {out}");
    assert!(
        !daemon.log_text().contains(false_note),
        "{}",
        daemon.log_text()
    );
}
