//! Network namespaces for tests: created with unique names, removed on drop (also when the test
//! panics), and swept when a crashed run left some behind.

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::{Command, Output},
};

/// Prefix of every namespace a steer test creates: `st-<pid>-<tag>`.
const PREFIX: &str = "st-";

/// A network namespace owned by a test.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `st-<pid>-<tag>-<role>` with loopback up. Panics with the reason if it cannot.
    pub fn new(role: &str) -> Netns {
        sweep_stale();
        let name = format!(
            "{PREFIX}{}-{}-{role}",
            std::process::id(),
            crate::unique_tag()
        );
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        // No duplicate address detection: a tentative link-local address blocks neighbour
        // discovery (and so all IPv6 forwarding) for the first second or two of every test.
        ns.run(
            "ip link set lo up && \
             sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0",
        );
        ns
    }

    /// Runs a shell command inside the namespace; panics with its output if it fails.
    pub fn run(&self, cmd: &str) -> String {
        let out = self.try_run(cmd);
        assert!(
            out.status.success(),
            "in {}: `{cmd}` failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a shell command inside the namespace and returns whatever happened.
    pub fn try_run(&self, cmd: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", cmd])
            .output()
            .expect("iproute2 `ip` is installed")
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it opens, interfaces it
    /// resolves and programs it attaches live there.
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                enter_path(&path);
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Netns {
    /// A command whose process runs in this namespace and dies with the test process (no
    /// orphan after a crashed run).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(program);
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: between fork and exec only async-signal-safe calls: setns on an inherited fd,
        // and prctl so the process dies with the test process.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Like [`Netns::enter`] but returns at once: `f` runs on its own thread in the namespace.
    pub fn spawn<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> std::thread::JoinHandle<R> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            enter_path(&path);
            f()
        })
    }

    /// Runs the future `f` makes to completion on a current-thread tokio runtime, on a thread
    /// in this namespace (netlink sockets, probes and timers of steer's async code live there).
    /// `f` builds the future on that thread, so the future itself need not be `Send`.
    pub fn block_on<R: Send, F: Future<Output = R>>(&self, f: impl FnOnce() -> F + Send) -> R {
        self.enter(|| current_thread_runtime().block_on(f()))
    }

    /// Like [`Netns::block_on`] but returns at once, for async code that runs alongside the
    /// test (an event watcher, a reconciler) until the test tells it to stop.
    pub fn spawn_async<R: Send + 'static, F: Future<Output = R>>(
        &self,
        f: impl FnOnce() -> F + Send + 'static,
    ) -> std::thread::JoinHandle<R> {
        self.spawn(|| current_thread_runtime().block_on(f()))
    }
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime")
}

fn enter_path(path: &str) {
    let ns = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: `ns` is an open namespace file; setns only changes the calling thread.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 `ip` is installed");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes namespaces left by test processes that no longer exist (a crashed or killed run).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
        }
    }
}
