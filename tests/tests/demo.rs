//! `cargo xtask demo` (the steer-demo binary, run as the README says): each section shows the
//! event it caused, measured on its own traffic, and the README's sample output is what it
//! prints; Ctrl-C cleans up without a false lab failure.

use std::{
    os::unix::process::{CommandExt, ExitStatusExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use steer_tests::scenario::Options;

/// Far longer than the demo takes (about 10 s).
const DEMO_BOUND: Duration = Duration::from_secs(120);

/// The steer-demo binary of this build; it runs the `steer` beside it (target/<profile>/).
fn demo() -> Command {
    steer_tests::require_root();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_steer-demo"));
    cmd.stdin(Stdio::null());
    cmd
}

/// A fresh directory for one demo's output.
fn out_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("steer-demo-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The lines of section `title` (from its `=== title` heading to the next heading).
fn section<'a>(out: &'a str, title: &str) -> Vec<&'a str> {
    out.lines()
        .skip_while(|l| !l.starts_with(&format!("=== {title}")))
        .skip(1)
        .take_while(|l| !l.starts_with("==="))
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// The number right before `unit` in `line` (`... 158 ms after the fault` -> 158).
fn number_before(line: &str, unit: &str) -> f64 {
    line.split(unit)
        .next()
        .and_then(|head| head.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before `{unit}` in {line}"))
}

fn one_line<'a>(lines: &[&'a str], starts: &str) -> &'a str {
    let found: Vec<&&str> = lines.iter().filter(|l| l.starts_with(starts)).collect();
    assert_eq!(found.len(), 1, "one line `{starts}…` in {lines:#?}");
    found[0]
}

/// A line with its numbers masked, and a daemon line cut before its switch time (whose unit
/// and standby path vary), for comparing a run with the README's sample.
fn shape(line: &str) -> String {
    let line = match line.split_once(", switched in") {
        Some((head, _)) if line.starts_with("daemon:") => head,
        _ => line,
    };
    let mut out = String::new();
    let mut in_number = false;
    for c in line.chars() {
        if c.is_ascii_digit() || (in_number && c == '.') {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

/// The README's sample of what the demo prints (from `=== steering` to the last daemon line).
fn readme_sample() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let from = readme
        .find("### What the demo prints")
        .expect("the README's demo section");
    let block = &readme[from..];
    let start = block.find("```text\n").expect("its sample") + "```text\n".len();
    let end = start + block[start..].find("```").expect("closed sample");
    block[start..end]
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(shape)
        .collect()
}

#[test]
fn the_demo_shows_each_event_as_the_readme_says() {
    let out = demo().output().expect("run steer-demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "steer-demo failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let o = Options::default();

    let failover = section(&stdout, "failover");
    assert!(
        one_line(&failover, "daemon: wan1 down (").starts_with("daemon: wan1 down (carrier lost)"),
        "{failover:#?}"
    );
    one_line(&failover, "daemon: wan1: conntrack entries");

    // WAN 1 carries new flows only after up_after good rounds; the flow the failover moved
    // stays on ISP 2 (failback = "keep").
    let recovery = section(&stdout, "recovery");
    assert!(
        one_line(&recovery, "daemon: wan1 up (")
            .starts_with(&format!("daemon: wan1 up ({} good rounds", o.up_after)),
        "{recovery:#?}"
    );
    let back = number_before(one_line(&recovery, "new flows to server A on ISP 1"), " ms");
    assert!(
        back >= f64::from((o.up_after - 1) * o.interval_ms),
        "new flows back on ISP 1 after {back} ms, faster than {} probe rounds",
        o.up_after
    );
    assert!(
        one_line(&recovery, "the stream that failed over stays on ISP 2").contains(": 0 of its"),
        "{recovery:#?}"
    );

    // The silent failure is found by probe rounds, which cannot take less than one timeout:
    // its own down line, flush and up line, not the carrier cut's.
    let silent = section(&stdout, "silent failure");
    assert!(
        one_line(&silent, "daemon: wan1 down (").starts_with(&format!(
            "daemon: wan1 down ({} failed rounds in a row",
            o.down_after
        )),
        "{silent:#?}"
    );
    one_line(&silent, "daemon: wan1: conntrack entries");
    one_line(&silent, "daemon: wan1 up (");
    let moved = number_before(one_line(&silent, "probes every"), " ms after the fault");
    assert!(
        moved >= f64::from(o.timeout_ms),
        "the stream on ISP 2 {moved} ms after a silent fault, faster than a probe timeout"
    );

    // The README's sample is this output, numbers aside.
    let printed: Vec<String> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("=== steering"))
        .take_while(|l| !l.starts_with("=== steer status"))
        .filter(|l| !l.trim().is_empty())
        .map(shape)
        .collect();
    assert_eq!(
        readme_sample(),
        printed,
        "README.md's \"What the demo prints\" differs from the demo's output:\n{stdout}"
    );
}

/// Ctrl-C in a terminal: SIGINT to the demo's whole process group, its `ping` and `steer`
/// children included, here while the recovery waits for ISP 1's gateway.
#[test]
fn ctrl_c_cleans_up_without_a_false_failure() {
    let dir = out_dir("ctrl-c");
    let (stdout, stderr) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = demo()
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .process_group(0)
        .spawn()
        .expect("start steer-demo");
    let pid = child.id();
    let deadline = Instant::now() + DEMO_BOUND;
    while !std::fs::read_to_string(&stdout)
        .unwrap_or_default()
        .contains("=== recovery")
    {
        assert!(
            child.try_wait().unwrap().is_none() && Instant::now() < deadline,
            "the demo ended or never reached the recovery:\n{}",
            std::fs::read_to_string(&stdout).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: kill(2) on the process group of our own child (process_group(0) made it).
    assert_eq!(unsafe { libc::kill(-(pid as i32), libc::SIGINT) }, 0);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not end after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(
        (status.code(), status.signal()),
        (Some(130), None),
        "exit status after Ctrl-C:\n{err}"
    );
    assert!(err.contains("interrupted, cleaning up"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "a Ctrl-C is not a lab failure:\n{err}"
    );
    // Its namespaces and pins are gone (both are named after its pid).
    for (root, prefix) in [
        ("/run/netns", format!("st-{pid}-")),
        ("/sys/fs/bpf", format!("steer-test-{pid}-")),
    ] {
        let left: Vec<String> = std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        assert!(left.is_empty(), "left behind in {root}: {left:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
