//! Running the real `steer` binary inside a test's network namespace, with its own pin directory
//! and control socket. The process enters the namespace with `setns` only (not `ip netns exec`,
//! which would also give it a private mount namespace and hide its bpffs pins from the test).

use std::{
    ffi::OsStr,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::netns::Netns;

/// How long a daemon's start may take before a test gives up on it, in seconds.
const START_BOUND_S: u64 = 60;

/// The `steer` binary of this build (`cargo build -p steer-user` puts it next to the test
/// binaries' directory; `STEER_BIN` overrides).
pub fn steer_bin() -> PathBuf {
    if let Ok(p) = std::env::var("STEER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("own binary path");
    // Binaries: target/<profile>/<bin>; tests: target/<profile>/deps/<test>. Both next to
    // target/<profile>/steer.
    let dir = exe.parent().expect("target/<profile>");
    let bin = [
        dir.join("steer"),
        dir.parent().map(|p| p.join("steer")).unwrap_or_default(),
    ]
    .into_iter()
    .find(|b| b.is_file())
    .unwrap_or_else(|| dir.join("steer"));
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p steer-user`; `cargo xtask test` does)",
        bin.display()
    );
    bin
}

/// A `steer` command that runs inside `ns`'s network namespace.
pub fn steer_in(ns: &Netns) -> Command {
    ns.command(steer_bin())
}

/// Scratch space of one test: a directory for the config, lists and the socket, and a pin
/// directory on bpffs. Both are removed on drop (after `steer stop`).
#[derive(Debug)]
pub struct Workdir {
    pub dir: PathBuf,
    pub pin_dir: PathBuf,
    pub socket: PathBuf,
}

impl Workdir {
    pub fn new(tag: &str) -> Workdir {
        sweep_stale();
        let id = format!("{}-{}-{tag}", std::process::id(), crate::unique_tag());
        let dir = std::env::temp_dir().join(format!("steer-test-{id}"));
        std::fs::create_dir_all(dir.join("lists")).expect("create test dir");
        Workdir {
            socket: dir.join("steer.sock"),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/steer-test-{id}")),
            dir,
        }
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.dir.join(rel);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("steer.toml")
    }

    /// Writes `text` as the configuration and loads it as steer would; panics with steer's
    /// error (file:line:col, field, hint) if it is not valid.
    pub fn load_config(&self, text: &str) -> steer::config::Config {
        let path = self.write("steer.toml", text);
        steer::config::load(&path)
            .unwrap_or_else(|e| panic!("test configuration {}:\n{e}", path.display()))
    }

    /// `[general]` and `[control]` lines that keep this test's state apart from every other.
    pub fn private_paths(&self) -> String {
        format!("pin_dir = \"{}\"\n", self.pin_dir.display())
    }

    pub fn control_section(&self) -> String {
        format!("[control]\nsocket = \"{}\"\n", self.socket.display())
    }

    /// Runs the `steer` CLI against this test's daemon, pins and configuration, never the
    /// host's defaults: commands that talk to the daemon get `--socket`, those that read the
    /// pins `--pin-dir`, `check` gets `-c` with the configuration. The CLI runs in the host
    /// namespace: these commands only need the socket and the pins. `stop` acts on the routing
    /// and nftables of the namespace it runs in, so it goes through [`Workdir::stop_in`].
    /// Returns (success, stdout, stderr).
    pub fn steer(&self, args: &[&str]) -> (bool, String, String) {
        let command = args.first().copied().unwrap_or_default();
        assert_ne!(
            command, "stop",
            "run stop with Workdir::stop_in, in the router's namespace"
        );
        let config = self.config();
        let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        if matches!(
            command,
            "status" | "reload" | "wan" | "explain" | "set" | "dump"
        ) {
            all.extend([OsStr::new("--socket"), self.socket.as_os_str()]);
        }
        if matches!(command, "dump" | "explain") {
            all.extend([OsStr::new("--pin-dir"), self.pin_dir.as_os_str()]);
        }
        if command == "check" {
            all.extend([OsStr::new("-c"), config.as_os_str()]);
        }
        output(Command::new(steer_bin()).args(&all))
    }

    /// Like [`Workdir::steer`]; panics with the output unless the command succeeds.
    pub fn steer_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.steer(args);
        assert!(ok, "steer {args:?} failed:\n{out}{err}");
        out
    }

    /// The state ("up"/"down") of WAN `wan` in `steer status`.
    pub fn wan_state(&self, wan: &str) -> String {
        let status = self.steer_ok(&["status", "--json"]);
        wan_state_in(&serde_json::from_str(&status).expect("status --json"), wan)
    }

    /// `steer stop -c <config>` in `ns` (the router's namespace: without a daemon the CLI removes
    /// the routing and the nftables table there itself). Panics with the output on failure.
    pub fn stop_in(&self, ns: &Netns) -> String {
        let (ok, out, err) = output(steer_in(ns).arg("stop").arg("-c").arg(self.config()));
        assert!(ok, "steer stop failed:\n{out}{err}");
        out
    }
}

/// The state ("up"/"down") of WAN `wan` in a `steer status --json` document; empty if the WAN
/// is not there.
pub fn wan_state_in(status: &serde_json::Value, wan: &str) -> String {
    wan_in(status, wan)
        .map(|w| w["state"].as_str().unwrap_or("?").to_owned())
        .unwrap_or_default()
}

/// WAN `wan`'s entry in a `steer status --json` document.
pub fn wan_in<'s>(status: &'s serde_json::Value, wan: &str) -> Option<&'s serde_json::Value> {
    status["wans"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["name"] == wan)
}

/// Runs `cmd` to completion: (success, stdout, stderr).
fn output(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("run steer");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Removes the pin directories and scratch directories of test processes that no longer exist
/// (a crashed or killed run).
fn sweep_stale() {
    let dead = |name: &str| {
        name.strip_prefix("steer-test-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    for (root, pins) in [
        (Path::new("/sys/fs/bpf"), true),
        (std::env::temp_dir().as_path(), false),
    ] {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if dead(&name) {
                if pins {
                    let _ = steer::dataplane::remove_pinned(&entry.path());
                } else {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        // Only the pins: routing and the nftables table live in the test's namespaces, which go
        // with them. (`steer stop` here would act on the host namespace's routing.)
        let _ = steer::dataplane::remove_pinned(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `steer run`. Dropping it kills the process (SIGKILL) and reaps it; pins stay
/// until the Workdir is dropped.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `steer run -c <config>` in `ns` and waits (bounded) until it answers `status`.
    pub fn start(ns: &Netns, work: &Workdir) -> Daemon {
        Daemon::spawn(work, steer_in(ns)).wait_up(work)
    }

    /// Starts `cmd run -c <config>` (`cmd` is steer, or a wrapper such as `setpriv ... --
    /// steer` that ends with it; already placed in its namespace) and returns at once. Its
    /// output goes to the log.
    pub fn spawn(work: &Workdir, mut cmd: Command) -> Daemon {
        let log = work.dir.join(format!("steer-{}.log", crate::unique_tag()));
        let out = File::create(&log).expect("log file");
        let child = cmd
            .args(["run", "-c"])
            .arg(work.config())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup log"))
            .stderr(out)
            .spawn()
            .expect("spawn steer run");
        Daemon {
            child: Some(child),
            log,
        }
    }

    /// Waits (bounded) until the daemon answers `status` and `steer status` succeeds; panics
    /// with its log if it exits. The first answer is awaited on the socket in this process (a
    /// request sent during the start is answered as soon as the daemon serves), so the wait
    /// neither lags the daemon nor takes CPU from it by starting a CLI every few milliseconds.
    ///
    /// The bound is generous: a start verifies every program, which takes 1.5 s on an idle
    /// 2-core machine and took over 20 s once while four builds shared it with the tests.
    pub fn wait_up(mut self, work: &Workdir) -> Daemon {
        let deadline = Instant::now() + Duration::from_secs(START_BOUND_S);
        loop {
            if self.exited() {
                panic!("steer run exited during start:\n{}", self.log_text());
            }
            let answered = steer::control::client::call(
                &work.socket,
                &steer::control::Request::Status,
                Duration::from_secs(1),
            )
            .is_ok();
            if answered && work.steer(&["status"]).0 {
                return self;
            }
            assert!(
                Instant::now() < deadline,
                "steer run did not come up in {START_BOUND_S} s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) for the process to end by itself; its exit status, None if it still
    /// runs after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut()?.try_wait().ok().flatten() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; panics with the log after `within`.
    pub fn wait_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log_text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "the daemon did not log `{needle}` within {within:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal and waits (bounded) for the process to end; returns whether it did.
    pub fn signal_and_wait(&mut self, sig: i32, within: Duration) -> bool {
        let Some(c) = self.child.as_mut() else {
            return true;
        };
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(c.id() as i32, sig) };
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if c.try_wait().ok().flatten().is_some() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The detection time (ms) a failover log line gives: the number after `detected in `.
pub fn detected_ms(failover_line: &str) -> f64 {
    failover_line
        .split("detected in ")
        .nth(1)
        .and_then(|r| r.split(" ms").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no detection time in {failover_line}"))
}
