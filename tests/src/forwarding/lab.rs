//! The forwarding lab: a generator, one router per contender, two sinks (the "WAN" sides).
//!
//! ```text
//!  gen                                         router k                      sink 1 / sink 2
//!  t<k> ──veth── x<k> ─XDP redirect─▶ g<k> ──veth── lan<k>   wan1 ──veth── w<k> (XDP drop)
//!  (trafgen)     (native XDP, CPU 0)         (threaded NAPI,   wan2 ──veth── w<k> (XDP drop)
//!                                             pinned to CPU 1)
//! ```
//!
//! Where the work runs, and why it is built this way:
//! - veth has no interrupts: a packet sent into a veth is received on the CPU that sent it
//!   (in the backlog, or in the peer's NAPI when the peer has XDP or GRO), so a generator and a
//!   router on two veth ends share one CPU whatever `taskset` says. Threaded NAPI on the
//!   router's `lan<k>` (GRO on, `/sys/class/net/lan<k>/threaded`) moves the router's whole
//!   receive path (its XDP, GRO, TC ingress, netfilter, routing, forwarding, the transmit to the
//!   WAN) into one kernel thread, `napi/lan<k>-<id>`, which the lab pins to CPU 1 and runs
//!   SCHED_FIFO, as softirq work would preempt tasks on a real router. Its CPU time is the
//!   router's cost.
//! - trafgen sends from a packet socket whose skbs stay charged to its send buffer until they
//!   are freed; with the router on the other CPU they are freed late and trafgen stalls with
//!   EAGAIN (it cannot raise net.core.wmem_default from a namespace). `x<k>` frees them at once
//!   on the generator's CPU: its native XDP copies each frame and redirects it into `g<k>`,
//!   whose peer (the router) receives XDP frames in its NAPI ring, as from a NIC's ring. When
//!   the router cannot keep up, that ring overflows and frames are dropped there, like a NIC's.
//! - The sinks drop in native XDP, in NAPI threads pinned to CPU 0, so receiving costs the
//!   router only the hand-off. `wan1`/`wan2` have TSO off: veth hands forwarded skbs to the
//!   peer's NAPI only then.

use std::{
    net::Ipv4Addr,
    process::Command,
    time::{Duration, Instant},
};

use super::{
    workload::{GEN_MAC, ROUTER_LAN_MAC},
    xdp::{self, XdpLink},
};
use crate::{
    lab::{host_ip_batch, step, veth_batch_line},
    netns::Netns,
};

/// The CPU every router's packet processing runs on.
pub const ROUTER_CPU: usize = 1;
/// The CPU of the generator and the sinks.
pub const GENERATOR_CPU: usize = 0;
/// The marks of the two WANs, under [`MARK_MASK`]: WAN 1 carries the default, WAN 2 the bypass.
pub const MARKS: [u32; 2] = [0x100, 0x200];
pub const MARK_MASK: u32 = 0xff00;
/// SCHED_FIFO priorities. The router's NAPI thread preempts tasks as softirq work does on a
/// router. On the generator CPU the sinks' threads (a quick XDP drop each) preempt trafgen,
/// which never sleeps; both preempt the builds and tests that share this machine, so those
/// neither slow the generator nor make the sinks drop. The kernel's RT throttling still leaves
/// them 5% of each CPU.
const ROUTER_PRIORITY: u32 = 50;
const SINK_PRIORITY: u32 = 60;
pub const GENERATOR_PRIORITY: u32 = 10;

/// One router: its namespace and the names the others use to reach it.
#[derive(Debug)]
pub struct Router {
    pub ns: Netns,
    pub index: usize,
    /// The LAN interface, where classifiers attach (`lan<k>`, unique across routers so that
    /// its NAPI thread can be told apart).
    pub lan: String,
    /// The generator interface whose frames reach this router (`t<k>`).
    pub gen_iface: String,
    /// Interface of this router in each sink (`w<k>`).
    pub sink_iface: String,
    /// The router's NAPI thread (its receive path).
    pub napi_tid: u32,
}

/// The whole lab; namespaces and XDP links go away when it drops (also on panic).
#[derive(Debug)]
pub struct ForwardingLab {
    pub routers: Vec<Router>,
    pub generator: Netns,
    pub sinks: [Netns; 2],
    /// Processes parked in the generator and the sinks, whose `/proc/<pid>/net/dev` shows
    /// those namespaces' counters without starting a process per reading (readings happen
    /// while both CPUs are busy with real-time threads).
    anchors: [Anchor; 3],
    _plumbing: Vec<XdpLink>,
}

/// A `sleep` in a namespace, killed on drop and when this process dies.
#[derive(Debug)]
struct Anchor(std::process::Child);

impl Anchor {
    fn new(ns: &Netns) -> Anchor {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name, "sleep", "infinity"]);
        // SAFETY: prctl only sets a flag of the child; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let anchor = Anchor(cmd.spawn().expect("iproute2 `ip` is installed"));
        // Until `ip netns exec` has switched namespaces, the counters would be the host's.
        let own = std::fs::read_link("/proc/self/ns/net").ok();
        let deadline = Instant::now() + Duration::from_secs(2);
        while std::fs::read_link(format!("/proc/{}/ns/net", anchor.0.id())).ok() == own
            || std::fs::read_to_string(format!("/proc/{}/comm", anchor.0.id()))
                .is_ok_and(|c| c.trim() != "sleep")
        {
            assert!(
                Instant::now() < deadline,
                "anchor in {} did not start",
                ns.name
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        anchor
    }

    /// Received packets of `iface` in the anchor's namespace (for veth with NAPI: the packets
    /// its XDP saw).
    fn rx_packets(&self, iface: &str) -> u64 {
        let dev = std::fs::read_to_string(format!("/proc/{}/net/dev", self.0.id()))
            .expect("the anchor is alive");
        dev.lines()
            .find_map(|l| {
                let (name, counters) = l.split_once(':')?;
                (name.trim() == iface).then(|| counters.split_whitespace().nth(1)?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no {iface} in /proc/{}/net/dev", self.0.id()))
    }
}

impl Drop for Anchor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ForwardingLab {
    /// A generator, `routers` identical routers and two sinks, wired and pinned.
    pub fn new(routers: usize) -> ForwardingLab {
        crate::require_root();
        assert!(
            num_cpus() >= 2,
            "the forwarding lab needs two CPUs (generator and router)"
        );
        let generator = Netns::new("fgen");
        let sinks = [Netns::new("fsk1"), Netns::new("fsk2")];
        let routers: Vec<Router> = (0..routers)
            .map(|k| Router {
                ns: Netns::new(&format!("frt{k}")),
                index: k,
                lan: format!("lan{k}"),
                gen_iface: format!("t{k}"),
                sink_iface: format!("w{k}"),
                napi_tid: 0,
            })
            .collect();
        let anchors = [
            Anchor::new(&generator),
            Anchor::new(&sinks[0]),
            Anchor::new(&sinks[1]),
        ];
        let mut lab = ForwardingLab {
            routers,
            generator,
            sinks,
            anchors,
            _plumbing: Vec::new(),
        };
        lab.wire();
        lab
    }

    fn wire(&mut self) {
        let mut batch = String::new();
        for r in &self.routers {
            let k = r.index;
            batch += &veth_batch_line(
                &self.generator,
                &r.gen_iface,
                &self.generator,
                &format!("x{k}"),
            );
            batch += &veth_batch_line(&self.generator, &format!("g{k}"), &r.ns, &r.lan);
            for (w, sink) in self.sinks.iter().enumerate() {
                batch += &veth_batch_line(&r.ns, &format!("wan{}", w + 1), sink, &r.sink_iface);
            }
        }
        host_ip_batch("create the forwarding lab's links", &batch);
        for sink in &self.sinks {
            self.configure_sink(sink);
        }
        self.configure_generator();
        for k in 0..self.routers.len() {
            self.configure_router(k);
            let tid = self.start_router_napi(k);
            self.routers[k].napi_tid = tid;
        }
        let mut links = Vec::new();
        for r in &self.routers {
            let (x, g) = (format!("x{}", r.index), format!("g{}", r.index));
            links.push(self.generator.enter(|| {
                let to = steer::dataplane::ifindex(&g).expect("g<k> exists");
                xdp::attach_redirect(&x, to).expect("native XDP redirect on the generator's veth")
            }));
        }
        for sink in &self.sinks {
            for r in &self.routers {
                links.push(
                    sink.enter(|| xdp::attach_drop(&r.sink_iface))
                        .expect("native XDP drop in the sink"),
                );
            }
        }
        self._plumbing = links;
        for sink in &self.sinks {
            pin_new_napi_threads(
                sink,
                |comm| comm.starts_with("napi/w"),
                GENERATOR_CPU,
                SINK_PRIORITY,
            );
        }
    }

    fn configure_generator(&self) {
        let mut cmd = String::new();
        for r in &self.routers {
            let k = r.index;
            // TSO off: veth hands a packet to the peer's NAPI (where x<k>'s XDP runs) only
            // from a device without TSO.
            cmd += &format!(
                "ip link set dev {t} address {GEN_MAC} up && ip link set dev x{k} up && \
                 ip link set dev g{k} address {GEN_MAC} up && \
                 ethtool -K {t} tso off gso off >/dev/null && ",
                t = r.gen_iface
            );
        }
        cmd += "true";
        step(&self.generator, "configure the generator", &cmd);
    }

    fn configure_sink(&self, sink: &Netns) {
        let mut cmd = String::new();
        for r in &self.routers {
            cmd += &format!("ip link set dev {} up && ", r.sink_iface);
        }
        cmd += "true";
        step(sink, "configure a sink", &cmd);
    }

    /// Addresses, forwarding, and policy routing by mark as steer sets it up on a real router:
    /// `fwmark <mark>/<mask> lookup <table>` per WAN, the default route in the main table via
    /// WAN 1 (what unmarked traffic takes).
    fn configure_router(&self, k: usize) {
        let r = &self.routers[k];
        let lan = &r.lan;
        let mut cmd = format!(
            "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
             net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 && \
             ip link set dev {lan} address {ROUTER_LAN_MAC} up && \
             ip addr add 10.0.0.1/8 dev {lan} && ip -6 addr add fd00::1/16 dev {lan} nodad && \
             sysctl -qw net.ipv4.conf.{lan}.rp_filter=0 && "
        );
        for w in 1..=2u8 {
            let mac = sink_mac(&self.sinks[usize::from(w - 1)], &r.sink_iface);
            let (gw4, gw6) = (gateway_v4(w), format!("fd64:{w}::1"));
            let (mark, table) = (MARKS[usize::from(w - 1)], 100 + u32::from(w));
            cmd += &format!(
                "ip link set dev wan{w} up && ethtool -K wan{w} tso off gso off >/dev/null && \
                 ip addr add 100.64.{w}.2/30 dev wan{w} && \
                 ip -6 addr add fd64:{w}::2/64 dev wan{w} nodad && \
                 ip neigh replace {gw4} lladdr {mac} dev wan{w} nud permanent && \
                 ip -6 neigh replace {gw6} lladdr {mac} dev wan{w} nud permanent && \
                 ip route add default via {gw4} dev wan{w} table {table} && \
                 ip -6 route add default via {gw6} dev wan{w} table {table} && \
                 ip rule add fwmark {mark:#x}/{MARK_MASK:#x} lookup {table} pref {pref} && \
                 ip -6 rule add fwmark {mark:#x}/{MARK_MASK:#x} lookup {table} pref {pref} && ",
                pref = 1099 + u32::from(w),
            );
        }
        cmd += &format!(
            "ip route add default via {} dev wan1 && ip -6 route add default via fd64:1::1 dev wan1",
            gateway_v4(1)
        );
        step(&r.ns, "configure a router", &cmd);
    }

    /// GRO on gives the LAN veth a NAPI instance (and lets the generator redirect XDP frames
    /// into it); threaded NAPI gives that instance a thread, which is pinned to the router CPU.
    fn start_router_napi(&self, k: usize) -> u32 {
        let r = &self.routers[k];
        step(
            &r.ns,
            "threaded NAPI on the router's LAN side",
            &format!(
                "ethtool -K {lan} gro on >/dev/null && echo 1 > /sys/class/net/{lan}/threaded",
                lan = r.lan
            ),
        );
        let prefix = format!("napi/{}-", r.lan);
        let tids = pin_new_napi_threads(
            &r.ns,
            |comm| comm.starts_with(&prefix),
            ROUTER_CPU,
            ROUTER_PRIORITY,
        );
        assert_eq!(
            tids.len(),
            1,
            "one NAPI thread for {} (found {tids:?})",
            r.lan
        );
        tids[0]
    }

    /// Frames the generator offered router `k` (seen by the redirect on `x<k>`).
    pub fn offered(&self, k: usize) -> u64 {
        self.anchors[0].rx_packets(&format!("x{k}"))
    }

    /// Packets router `k` delivered to sink `w` (0 or 1).
    pub fn delivered(&self, k: usize, w: usize) -> u64 {
        self.anchors[1 + w].rx_packets(&self.routers[k].sink_iface)
    }
}

fn gateway_v4(w: u8) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, w, 1)
}

fn sink_mac(sink: &Netns, iface: &str) -> String {
    sink.run(&format!("cat /sys/class/net/{iface}/address"))
        .trim()
        .to_owned()
}

/// Threads named `napi/...` that have a NAPI instance of `ns` (made threaded just before):
/// found as the `napi/` threads whose name `select` accepts and that are not pinned yet, then
/// pinned to `cpu` and made SCHED_FIFO at `priority`. Returns their thread ids.
fn pin_new_napi_threads(
    ns: &Netns,
    select: impl Fn(&str) -> bool,
    cpu: usize,
    priority: u32,
) -> Vec<u32> {
    // Threaded mode on every device of the namespace that has NAPI (the sinks' XDP made it).
    ns.run("for d in /sys/class/net/*/threaded; do echo 1 > $d 2>/dev/null; done; true");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let tids: Vec<u32> = napi_threads()
            .into_iter()
            .filter(|(_, comm)| select(comm))
            .filter(|(tid, _)| allowed_cpus(*tid).is_some_and(|c| c.len() > 1))
            .map(|(tid, _)| tid)
            .collect();
        if !tids.is_empty() || Instant::now() > deadline {
            for &tid in &tids {
                pin(tid, cpu, priority);
            }
            return tids;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn napi_threads() -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            comm.starts_with("napi/")
                .then(|| (pid, comm.trim().to_owned()))
        })
        .collect()
}

fn allowed_cpus(tid: u32) -> Option<Vec<usize>> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim()
        .to_owned();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().ok()?..=b.parse::<usize>().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

fn pin(tid: u32, cpu: usize, priority: u32) {
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("util-linux is installed");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("taskset").args(["-pc", &cpu.to_string(), &tid.to_string()]));
    run(Command::new("chrt").args(["-f", "-p", &priority.to_string(), &tid.to_string()]));
}

/// Makes the calling thread SCHED_FIFO at `priority` (0: back to SCHED_OTHER).
pub fn set_own_priority(priority: u32) {
    let param = libc::sched_param {
        sched_priority: priority as i32,
    };
    let policy = if priority == 0 {
        libc::SCHED_OTHER
    } else {
        libc::SCHED_FIFO
    };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
    let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
    assert_eq!(
        rc,
        0,
        "sched_setscheduler: {}",
        std::io::Error::last_os_error()
    );
}

/// Thread ids' CPU-time: the scheduler's nanoseconds (`/proc/<tid>/schedstat`, first field).
pub fn thread_runtime_ns(tid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no schedstat for thread {tid}"))
}

/// The CPU a thread last ran on (field 39 of `/proc/<tid>/stat`).
pub fn last_cpu(tid: u32) -> Option<usize> {
    let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).ok()?;
    let after_comm = stat.rsplit_once(')')?.1;
    after_comm.split_whitespace().nth(36)?.parse().ok()
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
