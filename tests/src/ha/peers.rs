//! What runs on the HA lab's routers: `steer run` with a `[[vrrp]]` instance, keepalived 2.2.7
//! (Debian), conntrackd. Each is a child process in its router's namespace, killed and reaped
//! when dropped.

use std::{
    fs::File,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{HaLab, ISP, PROBE, Side, VIP, VIP6, VIP6_LINK_LOCAL, VRID, wait_for};
use crate::{
    daemon::{Daemon, Workdir},
    netns::Netns,
};

/// The knobs of a router's steer configuration.
#[derive(Clone, Debug)]
pub struct SteerOptions {
    pub priority: u8,
    pub interval_ms: u32,
    pub preempt: bool,
    /// The instance runs over IPv6 (VIP fd10::1/64) instead of IPv4.
    pub ipv6: bool,
    /// The `wans = [...]` of the instance.
    pub wans: String,
    /// More keys of the `[[vrrp]]` table.
    pub extra: String,
    /// Probe interval of wan1.
    pub probe_ms: u32,
    /// A `[[vrrp]]` table of its own instead of the one the other knobs make.
    pub instance: Option<String>,
}

impl Default for SteerOptions {
    fn default() -> Self {
        SteerOptions {
            priority: 100,
            interval_ms: 100,
            preempt: true,
            ipv6: false,
            wans: "wans = [{ wan = \"wan1\", weight = 60, master_only = true }]".into(),
            extra: String::new(),
            probe_ms: 100,
            instance: None,
        }
    }
}

/// The configuration of a router in the HA lab: one WAN (wan1, master-only), every flow on it,
/// one `[[vrrp]]` instance on lan0.
pub fn steer_config(work: &Workdir, o: &SteerOptions) -> String {
    let vips = if o.ipv6 {
        format!("[\"{VIP6_LINK_LOCAL}/64\", \"{VIP6}/64\"]")
    } else {
        format!("[\"{VIP}/24\"]")
    };
    format!(
        r#"[general]
lan = ["lan0"]
{pins}
[[wan]]
name = "wan1"
interface = "wan1"
mark = 0x100
table = 101
gateway = "{ISP}"
gateway6 = "fd64::1"
[wan.track]
targets = ["{PROBE}"]
interval_ms = {probe}
timeout_ms = {timeout}
down_after = 3
up_after = 3

[[policy]]
name = "out"
members = [{{ wan = "wan1" }}]

[default]
policy = "out"

{instance}

{control}"#,
        pins = work.private_paths(),
        probe = o.probe_ms,
        timeout = o.probe_ms * 4 / 5,
        instance = o.instance.clone().unwrap_or_else(|| format!(
            "[[vrrp]]\nname = \"lan\"\ninterface = \"lan0\"\nvrid = {VRID}\npriority = {}\n\
             advert_interval_ms = {}\npreempt = {}\nvips = {vips}\n{}\n{}\n",
            o.priority, o.interval_ms, o.preempt, o.wans, o.extra
        )),
        control = work.control_section(),
    )
}

/// `steer run` on one router.
#[derive(Debug)]
pub struct SteerRouter {
    pub side: Side,
    pub work: Workdir,
    pub daemon: Option<Daemon>,
    ns: String,
}

impl SteerRouter {
    /// Writes the configuration and starts the daemon on `side` (returns once it answers).
    pub fn start(lab: &HaLab, side: Side, o: &SteerOptions) -> SteerRouter {
        let work = Workdir::new(&format!("vrrp-{side:?}"));
        work.write("steer.toml", &steer_config(&work, o));
        let daemon = Daemon::start(lab.router(side), &work);
        SteerRouter {
            side,
            work,
            daemon: Some(daemon),
            ns: lab.router(side).name.clone(),
        }
    }

    /// Starts the daemon again (after [`SteerRouter::term`] or a kill).
    pub fn restart(&mut self, lab: &HaLab) {
        self.daemon = Some(Daemon::start(lab.router(self.side), &self.work));
    }

    /// Rewrites the configuration and reloads it.
    pub fn reconfigure(&self, o: &SteerOptions) {
        self.work.write("steer.toml", &steer_config(&self.work, o));
        self.work.steer_ok(&["reload"]);
    }

    /// The instance in `steer status --json`.
    pub fn vrrp(&self) -> serde_json::Value {
        let (ok, out, _) = self.work.steer(&["status", "--json"]);
        if !ok {
            return serde_json::Value::Null;
        }
        let st: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        st["vrrp"][0].clone()
    }

    /// The instance's state ("master", "backup", ...), or "" without an answer.
    pub fn state(&self) -> String {
        self.vrrp()["state"].as_str().unwrap_or("").to_owned()
    }

    /// Waits until the instance is in `state`; panics with the log after `within`.
    pub fn wait_state(&self, state: &str, within: Duration) -> Duration {
        wait_for(
            &format!("router {:?} {state}", self.side),
            within,
            || self.state() == state,
            || self.context(),
        )
    }

    /// Status and log, for failure messages.
    pub fn context(&self) -> String {
        format!(
            "router {:?} ({}) status: {}\nlog:\n{}",
            self.side,
            self.ns,
            serde_json::to_string_pretty(&self.vrrp()).unwrap_or_default(),
            self.log()
        )
    }

    pub fn log(&self) -> String {
        self.daemon
            .as_ref()
            .map(Daemon::log_text)
            .unwrap_or_default()
    }

    /// SIGTERM, waiting (bounded) for the daemon to end.
    pub fn term(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            assert!(
                d.signal_and_wait(libc::SIGTERM, Duration::from_secs(10)),
                "steer did not stop on SIGTERM:\n{}",
                d.log_text()
            );
            self.daemon = None;
            // Keep the log readable: the Daemon is gone, its file stays in the workdir.
        }
    }

    /// SIGKILL: a crash of steer alone.
    pub fn kill9(&mut self) {
        if let Some(d) = self.daemon.as_mut() {
            d.kill9();
        }
    }
}

/// The knobs of a keepalived instance in the lab.
#[derive(Clone, Debug)]
pub struct KeepalivedOptions {
    pub priority: u8,
    pub interval_ms: u32,
    pub nopreempt: bool,
    pub ipv6: bool,
    /// Bring wan1 up on MASTER and down otherwise with notify scripts (what users run today).
    pub scripts: bool,
    pub notify_fifo: Option<PathBuf>,
    /// `track_file` with weight -1.
    pub track_file: Option<PathBuf>,
}

impl Default for KeepalivedOptions {
    fn default() -> Self {
        KeepalivedOptions {
            priority: 100,
            interval_ms: 100,
            nopreempt: false,
            ipv6: false,
            scripts: true,
            notify_fifo: None,
            track_file: None,
        }
    }
}

/// keepalived 2.2.7 on one router (VRRP only), as Debian ships it.
#[derive(Debug)]
pub struct Keepalived {
    dir: PathBuf,
    child: Option<Child>,
}

impl Keepalived {
    pub fn start(ns: &Netns, o: &KeepalivedOptions) -> Keepalived {
        let dir = std::env::temp_dir().join(format!(
            "steer-test-{}-{}-keepalived",
            std::process::id(),
            crate::unique_tag()
        ));
        std::fs::create_dir_all(&dir).expect("keepalived dir");
        let script = |name: &str, body: &str| {
            let p = dir.join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("script");
            std::process::Command::new("chmod")
                .arg("755")
                .arg(&p)
                .status()
                .expect("chmod");
            p
        };
        let up = script(
            "up.sh",
            &format!("ip link set dev wan1 up\nip route replace default via {ISP} dev wan1"),
        );
        let down = script("down.sh", "ip link set dev wan1 down");
        let scripts = if o.scripts {
            format!(
                "  notify_master \"{}\"\n  notify_backup \"{}\"\n  notify_fault \"{}\"\n  notify_stop \"{}\"\n",
                up.display(),
                down.display(),
                down.display(),
                down.display()
            )
        } else {
            String::new()
        };
        let fifo = o
            .notify_fifo
            .as_ref()
            .map(|f| format!("  notify_fifo {}\n", f.display()))
            .unwrap_or_default();
        let (track_def, track_use) = match &o.track_file {
            Some(t) => (
                format!(
                    "track_file steer_health {{\n  file {}\n  weight -1\n}}\n",
                    t.display()
                ),
                "  track_file {\n    steer_health\n  }\n".to_owned(),
            ),
            None => (String::new(), String::new()),
        };
        let vip = if o.ipv6 {
            format!("{VIP6_LINK_LOCAL}/64\n    {VIP6}/64")
        } else {
            format!("{VIP}/24")
        };
        let conf = format!(
            "global_defs {{\n  script_user root\n  vrrp_version 3\n{fifo}}}\n{track_def}\
             vrrp_instance VI_1 {{\n  state BACKUP\n  interface lan0\n  virtual_router_id {VRID}\n  \
             version 3\n  priority {prio}\n  advert_int {int}\n{nopreempt}  virtual_ipaddress {{\n    {vip}\n  }}\n\
             {scripts}{track_use}}}\n",
            prio = o.priority,
            int = f64::from(o.interval_ms) / 1000.0,
            nopreempt = if o.nopreempt { "  nopreempt\n" } else { "" },
        );
        let conf_path = dir.join("keepalived.conf");
        std::fs::write(&conf_path, conf).expect("keepalived.conf");
        let mut k = Keepalived { dir, child: None };
        k.spawn(ns);
        k
    }

    fn spawn(&mut self, ns: &Netns) {
        let log = File::create(self.dir.join("keepalived.log")).expect("log");
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &ns.name,
            "keepalived",
            "-n",
            "-l",
            "-D",
            "-G",
            "-P",
            "-f",
        ])
        .arg(self.dir.join("keepalived.conf"))
        .arg("-p")
        .arg(self.dir.join("keepalived.pid"))
        .arg("-r")
        .arg(self.dir.join("vrrp.pid"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log);
        // SAFETY: only prctl between fork and exec: keepalived dies with the test process.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.child = Some(
            cmd.spawn()
                .expect("keepalived runs (apt-get install keepalived)"),
        );
    }

    /// Starts keepalived again with the same configuration.
    pub fn restart(&mut self, ns: &Netns) {
        self.stop_all(libc::SIGKILL);
        self.spawn(ns);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("keepalived.log")).unwrap_or_default()
    }

    /// Waits until keepalived logs `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> Duration {
        wait_for(
            &format!("keepalived logs `{needle}`"),
            within,
            || self.log().contains(needle),
            || self.log(),
        )
    }

    fn pid(&self, file: &str) -> Option<i32> {
        std::fs::read_to_string(self.dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGKILL to both processes (the parent alone is no crash: its VRRP child would resign).
    pub fn kill9(&mut self) {
        self.stop_all(libc::SIGKILL);
    }

    /// SIGTERM: keepalived resigns with priority 0 and exits.
    pub fn term(&mut self) {
        if let Some(p) = self.pid("keepalived.pid") {
            // SAFETY: kill(2) on the keepalived we started.
            unsafe { libc::kill(p, libc::SIGTERM) };
        }
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn stop_all(&mut self, sig: i32) {
        for f in ["vrrp.pid", "keepalived.pid"] {
            if let Some(p) = self.pid(f) {
                // SAFETY: kill(2) on the processes of the keepalived we started.
                unsafe { libc::kill(p, sig) };
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("keepalived.pid"));
        let _ = std::fs::remove_file(self.dir.join("vrrp.pid"));
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.stop_all(libc::SIGKILL);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// conntrackd (FT-FW, UDP over the LAN) on one router, in the foreground.
#[derive(Debug)]
pub struct Conntrackd {
    dir: PathBuf,
    child: Option<Child>,
}

impl Conntrackd {
    pub fn start(ns: &Netns, side: Side) -> Conntrackd {
        let dir = std::env::temp_dir().join(format!(
            "steer-test-{}-{}-conntrackd",
            std::process::id(),
            crate::unique_tag()
        ));
        std::fs::create_dir_all(&dir).expect("conntrackd dir");
        let conf = format!(
            "Sync {{\n  Mode FTFW {{\n    DisableExternalCache Off\n  }}\n  UDP {{\n    \
             IPv4_address {me}\n    IPv4_Destination_Address {peer}\n    Port 3780\n    \
             Interface lan0\n    Checksum on\n  }}\n}}\n\
             General {{\n  HashSize 8192\n  HashLimit 65536\n  LogFile {dir}/conntrackd.log\n  \
             Syslog off\n  LockFile {dir}/conntrackd.lock\n  UNIX {{\n    Path {dir}/conntrackd.ctl\n  }}\n  \
             NetlinkBufferSize 2097152\n  NetlinkBufferSizeMaxGrowth 8388608\n  \
             Filter From Userspace {{\n    Protocol Accept {{\n      TCP\n      UDP\n    }}\n    \
             Address Ignore {{\n      IPv4_address 127.0.0.1\n      IPv4_address {me}\n      \
             IPv4_address {peer}\n      IPv4_address {VIP}\n    }}\n  }}\n}}\n",
            me = side.lan(),
            peer = side.other().lan(),
            dir = dir.display(),
        );
        std::fs::write(dir.join("conntrackd.conf"), conf).expect("conntrackd.conf");
        let log = File::create(dir.join("stdout.log")).expect("log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name, "conntrackd", "-C"])
            .arg(dir.join("conntrackd.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log);
        // SAFETY: only prctl between fork and exec: conntrackd dies with the test process.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .expect("conntrackd runs (apt-get install conntrackd)");
        let c = Conntrackd {
            dir,
            child: Some(child),
        };
        wait_for(
            "conntrackd's control socket",
            Duration::from_secs(10),
            || c.dir.join("conntrackd.ctl").exists(),
            || c.log(),
        );
        c
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.join("conntrackd.conf")
    }

    pub fn log(&self) -> String {
        let a = std::fs::read_to_string(self.dir.join("conntrackd.log")).unwrap_or_default();
        let b = std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default();
        format!("{a}{b}")
    }
}

impl Drop for Conntrackd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
