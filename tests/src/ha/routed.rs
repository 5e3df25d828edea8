//! The routed lab: two routers in different subnets, an upstream router between them, BIRD's
//! OSPF on all three. The routers run VRRP with unicast peers across the upstream router, and
//! their virtual address lives on a holder interface (a veth end: this kernel has no `dummy`),
//! so the master's connected route to the VIP subnet is what BIRD advertises.
//!
//! ```text
//!  router A  eth0 10.0.1.2/24 ── u-a 10.0.1.1  upstream  u-b 10.0.2.1 ── eth0 10.0.2.2/24  router B
//!  vip0 (holder; 10.99.0.1/24 on the master)                         vip0 (holder)
//! ```

use std::{
    fs::File,
    net::Ipv4Addr,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::{Side, wait_for};
use crate::{daemon::Workdir, netns::Netns};

/// The virtual address and the subnet BIRD advertises from the master.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
pub const SUBNET: &str = "10.99.0.0/24";

/// A router's address towards the upstream router.
pub const fn addr(side: Side) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1 + side.index() as u8, 2)
}

/// The upstream router's address towards `side`.
pub const fn upstream(side: Side) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1 + side.index() as u8, 1)
}

#[derive(Debug)]
pub struct RoutedLab {
    pub routers: [Netns; 2],
    pub upstream: Netns,
}

/// Only for clippy's `new_without_default`: a lab is namespaces, never a cheap value.
impl Default for RoutedLab {
    fn default() -> Self {
        RoutedLab::new()
    }
}

impl RoutedLab {
    pub fn new() -> RoutedLab {
        crate::require_root();
        let lab = RoutedLab {
            routers: [Netns::new("rra"), Netns::new("rrb")],
            upstream: Netns::new("rup"),
        };
        let up = &lab.upstream.name;
        let mut batch = String::new();
        for side in [Side::A, Side::B] {
            let r = &lab.router(side).name;
            let port = if side == Side::A { "u-a" } else { "u-b" };
            batch.push_str(&format!(
                "link add name eth0 netns {r} type veth peer name {port} netns {up}\n\
                 link add name vip0 netns {r} type veth peer name vip0p netns {r}\n"
            ));
        }
        crate::lab::host_ip_batch("create the routed lab's links", &batch);
        lab.upstream.run(&format!(
            "sysctl -qw net.ipv4.ip_forward=1 && \
             ip link set u-a up && ip addr add {}/24 dev u-a && \
             ip link set u-b up && ip addr add {}/24 dev u-b",
            upstream(Side::A),
            upstream(Side::B)
        ));
        for side in [Side::A, Side::B] {
            lab.router(side).run(&format!(
                "sysctl -qw net.ipv4.ip_forward=1 && \
                 ip link set eth0 up && ip addr add {}/24 dev eth0 && \
                 ip link set vip0 up && ip link set vip0p up && \
                 ip route add 10.0.0.0/16 via {}",
                addr(side),
                upstream(side)
            ));
        }
        let unreachable = crate::lab::ping_all(
            lab.router(Side::A),
            &[&addr(Side::B).to_string()],
            Duration::from_secs(5),
        );
        assert!(unreachable.is_empty(), "routed lab: A does not reach B");
        lab
    }

    pub fn router(&self, side: Side) -> &Netns {
        &self.routers[side.index()]
    }

    /// The upstream router's route to the VIP subnet: the next hop, if any.
    pub fn upstream_next_hop(&self) -> Option<String> {
        let out = self.upstream.try_run(&format!("ip -4 route show {SUBNET}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace()
            .skip_while(|w| *w != "via")
            .nth(1)
            .map(str::to_owned)
    }
}

/// The steer configuration of a routed router: no WAN gating, the VIP on `vip0`, unicast
/// adverts to the other router.
pub fn steer_config(work: &Workdir, side: Side, priority: u8) -> String {
    format!(
        r#"[general]
lan = ["eth0"]
{pins}
[[wan]]
name = "up"
interface = "vip0p"
mark = 0x100
table = 101
[wan.track]
# Never answers (TEST-NET-1): the WAN is not what these tests watch.
targets = ["192.0.2.1"]
interval_ms = 1000

[[vrrp]]
name = "routed"
interface = "eth0"
vrid = 51
priority = {priority}
advert_interval_ms = 100
vips = ["{VIP}/24"]
holder = "vip0"
unicast_src = "{src}"
peers = ["{peer}"]

{control}"#,
        pins = work.private_paths(),
        src = addr(side),
        peer = addr(side.other()),
        control = work.control_section(),
    )
}

/// BIRD 2 in a namespace, in the foreground with its own control socket.
#[derive(Debug)]
pub struct Bird {
    dir: PathBuf,
    child: Option<Child>,
}

impl Bird {
    /// On a router: OSPF on eth0, exporting the connected route of the holder (`protocol
    /// direct`, the snippet the README documents).
    pub fn router(ns: &Netns, side: Side) -> Bird {
        let conf = format!(
            "router id {id};\n\
             protocol device {{ scan time 1; }}\n\
             protocol direct {{ ipv4; interface \"vip0\"; }}\n\
             protocol ospf v2 {{\n  ipv4 {{ import none; export where source = RTS_DEVICE; }};\n  \
             area 0 {{ interface \"eth0\" {{ type ptp; hello 1; dead 3; }}; }};\n}}\n",
            id = addr(side)
        );
        Bird::start(ns, &conf)
    }

    /// On the upstream router: OSPF on both links, its routes into the kernel.
    pub fn upstream(ns: &Netns) -> Bird {
        let conf = format!(
            "router id {id};\n\
             protocol device {{ scan time 1; }}\n\
             protocol kernel {{ ipv4 {{ import none; export all; }}; }}\n\
             protocol ospf v2 {{\n  ipv4 {{ import all; export none; }};\n  \
             area 0 {{ interface \"u-a\", \"u-b\" {{ type ptp; hello 1; dead 3; }}; }};\n}}\n",
            id = upstream(Side::A)
        );
        Bird::start(ns, &conf)
    }

    fn start(ns: &Netns, conf: &str) -> Bird {
        let dir = std::env::temp_dir().join(format!(
            "steer-test-{}-{}-bird",
            std::process::id(),
            crate::unique_tag()
        ));
        std::fs::create_dir_all(&dir).expect("bird dir");
        std::fs::write(dir.join("bird.conf"), conf).expect("bird.conf");
        let log = File::create(dir.join("bird.log")).expect("log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name, "bird", "-f", "-c"])
            .arg(dir.join("bird.conf"))
            .arg("-s")
            .arg(dir.join("bird.ctl"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log);
        // SAFETY: only prctl between fork and exec: bird dies with the test process.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("bird runs (apt-get install bird2)");
        let b = Bird {
            dir,
            child: Some(child),
        };
        wait_for(
            "bird's control socket",
            Duration::from_secs(10),
            || b.dir.join("bird.ctl").exists(),
            || b.log(),
        );
        b
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bird.log")).unwrap_or_default()
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
