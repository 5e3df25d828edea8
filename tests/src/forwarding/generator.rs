//! trafgen (netsniff-ng) as the generator: a kernel packet socket with a TX ring, pinned to the
//! generator CPU, sending the workload's frames round robin into one router's link.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::lab::{ForwardingLab, GENERATOR_CPU, GENERATOR_PRIORITY, Router};

/// Upper bounds of one run: trafgen stops by itself after this many packets, and `timeout`
/// kills its process group after this long, even if nobody stops it.
const MAX_PACKETS: u64 = 40_000_000;
const MAX_SECONDS: u32 = 90;

/// A trafgen configuration written to a file that is removed on drop.
#[derive(Debug)]
pub struct TrafgenConfig {
    pub path: PathBuf,
}

impl TrafgenConfig {
    pub fn write(text: &str) -> TrafgenConfig {
        let path = std::env::temp_dir().join(format!("steer-fwd-{}.cfg", crate::unique_tag()));
        std::fs::write(&path, text).expect("write the trafgen configuration");
        TrafgenConfig { path }
    }
}

impl Drop for TrafgenConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A running trafgen; killed when dropped. trafgen forks its sender, so everything runs
/// under `timeout` in a process group of its own: dropping signals the group; if this process
/// dies, `timeout` gets SIGTERM (parent-death signal) and passes it to the group; and it kills
/// the group after [`MAX_SECONDS`] in any case.
#[derive(Debug)]
pub struct Generator {
    child: Child,
    log: PathBuf,
}

/// How much to send.
#[derive(Clone, Copy, Debug)]
pub enum Load {
    /// As fast as trafgen can, until stopped.
    Flood,
    /// `packets` packets at about one per `gap_us` microseconds, then exit (tests).
    Paced { packets: u64, gap_us: u32 },
}

impl Generator {
    pub fn start(lab: &ForwardingLab, router: &Router, config: &Path, load: Load) -> Generator {
        let log = std::env::temp_dir().join(format!("steer-fwd-{}.log", crate::unique_tag()));
        let log_file = std::fs::File::create(&log).expect("trafgen log file");
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &lab.generator.name,
            "timeout",
            "-s",
            "KILL",
        ])
        .arg(MAX_SECONDS.to_string())
        .args(["chrt", "-f"])
        .arg(GENERATOR_PRIORITY.to_string())
        .args(["taskset", "-c"])
        .arg(GENERATOR_CPU.to_string())
        .args(["trafgen", "-C", "-P", "1", "-i"])
        .arg(config)
        .args(["-o", &router.gen_iface]);
        match load {
            Load::Flood => cmd.args(["-n", &MAX_PACKETS.to_string()]),
            Load::Paced { packets, gap_us } => cmd.args([
                "-n".to_owned(),
                packets.to_string(),
                "-t".to_owned(),
                format!("{gap_us}us"),
            ]),
        };
        cmd.stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup log"))
            .stderr(log_file);
        // SAFETY: prctl only sets a flag of the child; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("trafgen (netsniff-ng) is installed");
        Generator { child, log }
    }

    /// Waits until `flowing` says packets arrive (trafgen parses its configuration first),
    /// bounded; panics with trafgen's output when they never do.
    pub fn wait_flowing(&mut self, mut flowing: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !flowing() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("trafgen exited ({status}): {}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "no packets from trafgen within 60 s: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded) until trafgen has exited by itself, as it does after a paced load.
    pub fn wait_done(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while matches!(self.child.try_wait(), Ok(None)) {
            assert!(
                Instant::now() < deadline,
                "trafgen still running after {within:?}: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        // `timeout` made itself a process-group leader: its pid is the group's id. SIGINT lets
        // trafgen print and exit; whatever of the group is left after a second (a forked sender)
        // gets SIGKILL.
        let group = -(self.child.id() as i32);
        // SAFETY: signals to the process group of our own child, which is not reaped yet.
        unsafe { libc::kill(group, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: as above; an empty group is ESRCH, which is fine.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
