//! Hardening (issue 10), end to end: pinned state that only root can touch, a second instance
//! that changes nothing before it is refused, hostile files and slow clients.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    process::Command,
    time::{Duration, Instant},
};

use steer_tests::{
    daemon::{Daemon, Workdir, steer_bin, steer_in},
    lab::Lab,
    scenario::{Options, config_text},
};

const NOBODY: u32 = 65534;

/// A lab and a work directory with the lab's standard configuration written.
fn setup(tag: &str) -> (Lab, Workdir) {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new(tag);
    work.write("steer.toml", &config_text(&work, &Options::default()));
    (lab, work)
}

/// `steer run` in the lab's router namespace, expected to refuse to start: its stderr.
fn run_refused(lab: &Lab, work: &Workdir) -> String {
    let out = steer_in(&lab.router)
        .args(["run", "-c"])
        .arg(work.config())
        .output()
        .expect("run steer");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "steer run must refuse: {err}");
    err
}

/// Whatever steer would have changed in the router's namespace: its rules, its nftables table,
/// programs on the LAN interface.
fn steer_traces(lab: &Lab) -> Vec<String> {
    let rules = lab.router.run("ip rule show; ip -6 rule show");
    let mut traces: Vec<String> = rules
        .lines()
        .filter(|l| l.contains("proto 201"))
        .map(str::to_owned)
        .collect();
    if lab
        .router
        .run("nft list tables")
        .lines()
        .any(|l| l.trim() == "table inet steer")
    {
        traces.push("nftables table inet steer".into());
    }
    let tcx = lab.router.run("bpftool net show dev lan0");
    if tcx.contains("steer") {
        traces.push(format!("programs on lan0: {tcx}"));
    }
    traces
}

#[test]
fn a_pin_directory_of_another_user_is_refused_before_anything_changes() {
    let (lab, work) = setup("pinowner");
    std::fs::create_dir(&work.pin_dir).unwrap();
    std::os::unix::fs::chown(&work.pin_dir, Some(NOBODY), Some(NOBODY)).unwrap();
    let err = run_refused(&lab, &work);
    assert!(
        err.contains(&format!(
            "{} belongs to uid {NOBODY}, not to the user steer runs as (uid 0)",
            work.pin_dir.display()
        )),
        "{err}"
    );
    assert_eq!(steer_traces(&lab), Vec::<String>::new());
    assert_eq!(
        std::fs::read_dir(&work.pin_dir).unwrap().count(),
        0,
        "nothing was pinned"
    );
    std::fs::remove_dir(&work.pin_dir).unwrap();
}

#[test]
fn the_pin_directory_is_root_only_and_nobody_else_can_take_its_lock() {
    let (lab, work) = setup("pinmode");
    // As an older steer left it: 0755.
    std::fs::create_dir(&work.pin_dir).unwrap();
    std::fs::set_permissions(&work.pin_dir, PermissionsExt::from_mode(0o755)).unwrap();
    let daemon = Daemon::start(&lab.router, &work);
    for sub in ["", "maps", "progs", "links"] {
        let dir = work.pin_dir.join(sub);
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid()),
            (0o700, 0),
            "{}",
            dir.display()
        );
    }
    // nobody can neither open the directory to lock it nor list it.
    let flock = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "flock",
            "--nonblock",
            "--conflict-exit-code",
            "3",
        ])
        .arg(&work.pin_dir)
        .arg("true")
        .output()
        .expect("run flock");
    // 66: flock(1) could not open the file (3 would be: opened, but the lock was taken).
    assert_eq!(
        flock.status.code(),
        Some(66),
        "flock as nobody: {}",
        String::from_utf8_lossy(&flock.stderr)
    );
    assert!(
        String::from_utf8_lossy(&flock.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&flock.stderr)
    );
    drop(daemon);
}

/// When steer mounts bpffs itself (nothing mounted on /sys/fs/bpf yet) it mounts it root-only.
/// Run in a mount namespace of its own, where /sys/fs/bpf is unmounted first.
#[test]
fn bpffs_mounted_by_steer_is_root_only() {
    let (lab, work) = setup("mount");
    let script = format!(
        "umount /sys/fs/bpf 2>/dev/null; umount /sys/fs/bpf 2>/dev/null; \
         {steer} run -c {config} & pid=$!; \
         for i in $(seq 1 200); do [ -S {socket} ] && break; sleep 0.05; done; \
         stat -c '%a' /sys/fs/bpf; kill $pid; wait $pid",
        steer = steer_bin().display(),
        config = work.config().display(),
        socket = work.socket.display(),
    );
    let out = lab
        .router
        .command("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The kernel adds the sticky bit to a bpffs root whatever the mode says.
    assert_eq!(
        stdout.trim(),
        "1700",
        "mode of /sys/fs/bpf as steer mounted it; stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `steer check` on the test's configuration, bounded: (success, stdout, stderr). A check that
/// hangs (a FIFO read forever) fails the test instead of hanging it.
fn check_bounded(work: &Workdir) -> (bool, String, String) {
    let mut child = Command::new(steer_bin())
        .args(["check", "-c"])
        .arg(work.config())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run steer check");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("steer check did not finish within 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The lab's configuration with one more set reading `files`.
fn with_list_set(work: &Workdir, files: &str) {
    let text = config_text(
        work,
        &Options {
            extra_sets: format!(
                "\n[[set]]\nname = \"listed\"\npolicy = \"wan2-first\"\nfiles = [{files}]\n"
            ),
            ..Options::default()
        },
    );
    work.write("steer.toml", &text);
}

#[test]
fn list_files_that_are_devices_fifos_or_untrusted_links_are_refused() {
    steer_tests::require_root();
    let work = Workdir::new("hostile-lists");
    let fifo = work.dir.join("lists/fifo.txt");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // A link another user planted in the lists directory, to a file that user may not read.
    let planted = work.dir.join("lists/planted.txt");
    std::os::unix::fs::symlink("/etc/shadow", &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(NOBODY), Some(NOBODY)).unwrap();
    for (file, says) in [
        ("/dev/zero", "it is a device, not a regular file"),
        (
            "lists/fifo.txt",
            "it is a FIFO (named pipe), not a regular file",
        ),
        (
            "lists/planted.txt",
            &format!(
                "the symbolic link {} belongs to uid {NOBODY}",
                planted.display()
            ),
        ),
    ] {
        with_list_set(&work, &format!("\"{file}\""));
        let (ok, _, err) = check_bounded(&work);
        assert!(!ok && err.contains(says), "{file}: {err}");
        assert!(
            !err.contains("root:"),
            "{file}: a line of /etc/shadow shown: {err}"
        );
    }
    // root's own link to the same file: followed, and the file is no list; none of its lines
    // is shown.
    std::fs::remove_file(&planted).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", &planted).unwrap();
    with_list_set(&work, "\"lists/planted.txt\"");
    let (ok, _, err) = check_bounded(&work);
    assert!(!ok && err.contains("this is not a list file"), "{err}");
    assert!(!err.contains("root:"), "a line of /etc/shadow shown: {err}");
}

/// A writer rewrites a list in place (truncate, then the lines in many small writes) between
/// two versions of the same length while `steer check` reads it: every check that passes saw
/// one whole version.
#[test]
fn a_list_rewritten_in_place_while_it_is_read_is_never_taken_half_written() {
    steer_tests::require_root();
    let work = Workdir::new("rewrite");
    let version = |third: u8| -> String {
        (0..2000)
            .map(|i| format!("10.{third}.{}.{}/32\n", i / 250, i % 250))
            .collect()
    };
    let (a, b) = (version(1), version(2));
    let list = work.write("lists/moving.txt", &a);
    with_list_set(&work, "\"lists/moving.txt\"");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, list) = (stop.clone(), list.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let text = if n.is_multiple_of(2) { &b } else { &a };
                let mut f = std::fs::File::create(&list).unwrap();
                for chunk in text.as_bytes().chunks(4096) {
                    f.write_all(chunk).unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                }
                drop(f);
                // Now and then quiet long enough for a check to take the file.
                let pause = if n % 4 == 3 { 1500 } else { 30 };
                std::thread::sleep(Duration::from_millis(pause));
                n += 1;
            }
        })
    };
    let (mut whole, mut refused) = (0, 0);
    for _ in 0..12 {
        let (ok, out, err) = check_bounded(&work);
        if ok {
            // Both versions hold 2000 prefixes; the lab's bypass set adds 2.
            assert!(
                out.contains("with 2002 prefixes"),
                "a partial list was taken: {out}"
            );
            whole += 1;
        } else {
            assert!(
                err.contains("it changed while it was read"),
                "a partial list was taken: {err}"
            );
            refused += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    eprintln!("in-place rewrites: {whole} checks read a whole version, {refused} were refused");
}

#[test]
fn a_control_socket_directory_of_another_user_is_refused_before_anything_changes() {
    let (lab, work) = setup("sockowner");
    let dir = work.dir.join("sock");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    let text = std::fs::read_to_string(work.config()).unwrap().replace(
        &work.socket.display().to_string(),
        &dir.join("steer.sock").display().to_string(),
    );
    work.write("steer.toml", &text);
    let err = run_refused(&lab, &work);
    assert!(
        err.contains("the directory belongs to another user"),
        "{err}"
    );
    assert_eq!(steer_traces(&lab), Vec::<String>::new());
    assert!(!work.pin_dir.exists(), "nothing was pinned");
}

/// The lab's configuration for another daemon: its own pin directory and socket.
fn second_workdir(work: &Workdir, tag: &str) -> Workdir {
    let other = Workdir::new(tag);
    let text = std::fs::read_to_string(work.config())
        .unwrap()
        .replace(
            &work.socket.display().to_string(),
            &other.socket.display().to_string(),
        )
        .replace(
            &work.pin_dir.display().to_string(),
            &other.pin_dir.display().to_string(),
        );
    other.write("steer.toml", &text);
    other
}

#[test]
fn a_second_daemon_in_the_same_namespace_changes_nothing_before_it_is_refused() {
    let (lab, work) = setup("second");
    let daemon = Daemon::start(&lab.router, &work);
    let before = (
        steer_traces(&lab),
        lab.router.run("nft list table inet steer"),
    );
    let other = second_workdir(&work, "second2");
    let err = run_refused(&lab, &other);
    assert!(
        err.contains(&format!(
            "another steer daemon (pid {}) runs in this network namespace",
            daemon.pid()
        )),
        "{err}"
    );
    assert_eq!(
        (
            steer_traces(&lab),
            lab.router.run("nft list table inet steer")
        ),
        before,
        "the first daemon's rules and nftables table are untouched"
    );
    assert!(!other.pin_dir.exists(), "the second pinned nothing");
    assert!(!other.socket.exists(), "the second left no socket");
    assert!(work.steer(&["status"]).0, "the first still answers");
}

#[test]
fn a_reload_that_moves_the_pin_directory_or_the_socket_is_refused() {
    let (lab, work) = setup("moving");
    let daemon = Daemon::start(&lab.router, &work);
    let original = std::fs::read_to_string(work.config()).unwrap();
    let elsewhere = work.dir.join("elsewhere.sock");
    for (from, to, says) in [
        (
            work.pin_dir.display().to_string(),
            format!("{}-new", work.pin_dir.display()),
            "general.pin_dir changed from",
        ),
        (
            work.socket.display().to_string(),
            elsewhere.display().to_string(),
            "control.socket changed from",
        ),
    ] {
        work.write("steer.toml", &original.replace(&from, &to));
        let (ok, _, err) = work.steer(&["reload"]);
        assert!(!ok, "{err}");
        assert!(
            err.contains(says) && err.contains("a reload cannot apply this: restart steer"),
            "{err}"
        );
    }
    assert!(!std::path::Path::new(&format!("{}-new", work.pin_dir.display())).exists());
    assert!(!elsewhere.exists());
    work.write("steer.toml", &original);
    assert!(work.steer(&["reload"]).0, "{}", daemon.log_text());
}
