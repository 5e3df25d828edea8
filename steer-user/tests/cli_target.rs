//! `-c` for the commands that reach a running steer (status, dump, explain, reload, wan, stop)
//! reads only the control socket, the pin directory and the WANs' tables: a broken list file or
//! a mistake elsewhere in the file must not keep `steer stop` from stopping. The real binary
//! runs; `stop` runs in a network namespace of its own (`unshare --net`, needs root), so the
//! routing and conntrack clean-up it does cannot touch the host's.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::TempDir;

const STEER: &str = env!("CARGO_BIN_EXE_steer");

/// A configuration whose list file has a bad line; the socket and pin directory are inside
/// `dir` and do not exist.
fn broken_list_config(dir: &TempDir, pin_dir: &str) -> PathBuf {
    std::fs::write(dir.join("bad.txt"), "10.0.0.0/8\nnot-an-address\n").unwrap();
    let config = dir.join("steer.toml");
    let text = format!(
        r#"
[general]
lan = ["br-lan"]
pin_dir = "{pin_dir}"

[[wan]]
name = "wan1"
interface = "eth1"
mark = 0x100
table = 101
[wan.track]
targets = ["1.1.1.1"]

[[policy]]
name = "p"
members = [{{ wan = "wan1" }}]

[[set]]
name = "s"
policy = "p"
files = ["bad.txt"]

[control]
socket = "{}"
"#,
        dir.join("steer.sock").display()
    );
    std::fs::write(&config, text).unwrap();
    config
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `steer stop -c config` in a fresh network namespace.
fn stop_isolated(config: &Path) -> Output {
    let out = Command::new("unshare")
        .arg("--net")
        .arg(STEER)
        .arg("stop")
        .arg("-c")
        .arg(config)
        .output()
        .expect("run unshare");
    assert!(
        !text(&out.stderr).contains("unshare failed"),
        "unshare --net needs root: {}",
        text(&out.stderr)
    );
    out
}

#[test]
#[cfg_attr(
    not(feature = "privileged-tests"),
    ignore = "needs root: `cargo xtask test` runs it"
)]
fn stop_with_a_broken_list_file_still_stops() {
    let dir = TempDir::new("stop");
    let pins = dir.join("pins");
    let config = broken_list_config(&dir, &pins.display().to_string());

    let check = Command::new(STEER)
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!check.status.success(), "the list file is broken");
    assert!(
        text(&check.stderr).contains("bad.txt:2:1"),
        "{}",
        text(&check.stderr)
    );

    let out = stop_isolated(&config);
    assert!(out.status.success(), "stop failed: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "nothing to stop: no daemon, nothing pinned at {}, no steer routing\n",
            pins.display()
        ),
        "stop used the configuration's pin directory"
    );
}

#[test]
fn status_with_a_broken_list_file_asks_the_configured_socket() {
    let dir = TempDir::new("status");
    let config = broken_list_config(&dir, "/sys/fs/bpf/steer-cli-target");
    let out = Command::new(STEER)
        .args(["status", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "steer is not running at {} (the socket {} gives",
            dir.join("steer.sock").display(),
            config.display()
        )),
        "{err}"
    );
    assert!(!err.contains("bad.txt"), "{err}");
}

#[test]
#[cfg_attr(
    not(feature = "privileged-tests"),
    ignore = "needs root: `cargo xtask test` runs it"
)]
fn stop_refuses_a_bad_pin_dir_before_doing_anything() {
    let dir = TempDir::new("bad-pin-dir");
    let config = broken_list_config(&dir, "pins");
    let out = stop_isolated(&config);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:4:11: general.pin_dir = \"pins\": must be an absolute path",
            config.display()
        )),
        "{err}"
    );
    assert!(text(&out.stdout).is_empty(), "nothing was done");
    assert!(!err.contains("bad.txt"), "{err}");
}

/// `steer explain` reads its addresses as list files do, with their messages: an IPv4-mapped
/// IPv6 address (answered as the default rule before), a network, a bad octet.
#[test]
fn explain_refuses_addresses_a_packet_never_carries_and_says_what_to_write() {
    for (arg, says) in [
        ("::ffff:10.0.0.1", "write the IPv4 address `10.0.0.1`"),
        (
            "10.0.0.0/8",
            "is a network, but a single address is needed here",
        ),
        ("300.1.1.1", "has octet 300"),
    ] {
        let out = Command::new(STEER)
            .args(["explain", arg, "--pin-dir", "/nonexistent/steer"])
            .output()
            .expect("run steer");
        let err = text(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{arg}: {err}");
    }
}

/// A port given with a protocol that has none is refused (it was left out of the packet
/// without a word, so the answer was for a packet the user did not ask about).
#[test]
fn explain_refuses_a_port_for_a_protocol_without_ports() {
    for args in [
        &["--proto", "icmp", "--dport", "53"][..],
        &["--proto", "47", "--sport", "1000"][..],
    ] {
        let out = Command::new(STEER)
            .args(["explain", "10.0.0.1", "--pin-dir", "/nonexistent/steer"])
            .args(args)
            .output()
            .expect("run steer");
        let err = text(&out.stderr);
        assert!(
            !out.status.success() && err.contains("has no ports"),
            "{args:?}: {err}"
        );
    }
}

/// What `steer COMMAND -c FILE` prints on stderr when FILE is not valid TOML; the command
/// must fail.
fn with_a_broken_file(command: &str) -> String {
    let dir = TempDir::new(&format!("{command}-broken"));
    let config = dir.join("steer.toml");
    std::fs::write(&config, "[general]\nlan = [\"br-lan\"\n").unwrap();
    let out = Command::new(STEER)
        .args([command, "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "steer {command} succeeded");
    text(&out.stderr)
}

/// `steer reload -c` with a file that cannot be read says nothing was reloaded (it printed the
/// parse error alone, which reads as if the daemon took a broken file).
#[test]
fn reload_with_a_broken_file_says_nothing_was_reloaded() {
    let err = with_a_broken_file("reload");
    assert!(
        err.contains("steer.toml:2:") && err.contains("nothing was reloaded"),
        "{err}"
    );
}

/// `steer stop -c` with a file that cannot be read says nothing was stopped and how to stop
/// without it (systemd's stop ended failed with the parse error alone).
#[test]
fn stop_with_a_broken_file_says_how_to_stop_without_it() {
    let err = with_a_broken_file("stop");
    assert!(
        err.contains("nothing was stopped") && err.contains("--pin-dir and --socket"),
        "{err}"
    );
}
