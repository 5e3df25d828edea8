//! The contenders: what a router runs to classify LAN traffic into the two WAN marks. A
//! contender is a list of layers installed into its own router; a variant (a cost the
//! connection-aware steering issue wants to weigh, say) is one more [`Layer`] and one more line
//! in [`CONTENDERS`].
//!
//! Every classifier gives the same answer: destinations in the bypass set get WAN 2's mark,
//! everything else WAN 1's, written under the mask (`mark = (mark & !mask) | wan_mark`).

use std::{
    process::Command,
    time::{Duration, Instant},
};

use steer::{dataplane::Dataplane, model::Direction, prefix::Prefix};
use steer_common::{DEFAULT_RULE, PolicyEntry, action};

use super::{
    lab::{MARK_MASK, MARKS, Router},
    measure::{kernel_memory, settle_kernel_memory},
    workload::Workload,
};

/// One piece of a router's setup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// nftables: interval sets (v4, v6) and `meta mark set` in a prerouting chain (OpenWrt fw4,
    /// omr-bypass-nft).
    Nft,
    /// iptables (legacy x_tables) mangle PREROUTING + ipset `hash:net` + `MARK` (mwan3, the
    /// legacy omr-bypass).
    Iptables,
    /// steer's TC classifier on the LAN interface.
    SteerTc,
    /// steer's XDP pre-classifier and TC classifier.
    SteerXdp,
    /// Connection tracking on, as on any stateful router: an nftables forward chain that
    /// accepts established connections (fw4's first rule), which makes conntrack see every
    /// packet.
    Conntrack,
    /// steer's own nftables table as `steer run` installs it (`steer::conntrack::ruleset`):
    /// the packet mark copied into the connection mark when a connection starts.
    SteerCtMark,
}

/// A named router setup.
#[derive(Clone, Copy, Debug)]
pub struct Contender {
    pub name: &'static str,
    pub layers: &'static [Layer],
}

impl Contender {
    /// Whether it marks packets (the floor and conntrack alone do not).
    pub fn classifies(&self) -> bool {
        self.layers.iter().any(|l| {
            matches!(
                l,
                Layer::Nft | Layer::Iptables | Layer::SteerTc | Layer::SteerXdp
            )
        })
    }
}

/// The contenders of the forwarding benchmark, in the order of the table. The first is the
/// floor, the second the nftables reference the ratios are taken against.
pub const CONTENDERS: &[Contender] = &[
    Contender {
        name: "floor: no classification",
        layers: &[],
    },
    Contender {
        name: "nftables set + meta mark",
        layers: &[Layer::Nft],
    },
    Contender {
        name: "iptables + ipset hash:net",
        layers: &[Layer::Iptables],
    },
    Contender {
        name: "steer TC",
        layers: &[Layer::SteerTc],
    },
    Contender {
        name: "steer XDP+TC",
        layers: &[Layer::SteerXdp],
    },
    Contender {
        name: "floor + conntrack",
        layers: &[Layer::Conntrack],
    },
    Contender {
        name: "nftables + conntrack",
        layers: &[Layer::Nft, Layer::Conntrack],
    },
    Contender {
        name: "iptables+ipset + conntrack",
        layers: &[Layer::Iptables, Layer::Conntrack],
    },
    Contender {
        name: "steer TC + conntrack",
        layers: &[Layer::SteerTc, Layer::Conntrack],
    },
    Contender {
        name: "steer as deployed (TC+ct mark)",
        layers: &[Layer::SteerTc, Layer::SteerCtMark, Layer::Conntrack],
    },
];

/// What loading a prefix set into the kernel cost.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub what: &'static str,
    pub time: Duration,
    /// Kernel memory charged to this process's cgroup by the load (see
    /// [`measure::kernel_memory`](super::measure::kernel_memory)).
    pub kernel_memory: Option<i64>,
    /// The structure's own account, where it has one (ipset's memsize, the BPF maps' memlock).
    pub own_account: Option<u64>,
}

/// State shared by the contenders of one scenario: one steer dataplane serves every steer
/// router (the programs attach in each router's namespace; the maps are the same).
#[derive(Debug, Default)]
pub struct Shared {
    steer: Option<Dataplane>,
}

impl Shared {
    /// Installs `layer` in `router`; returns the prefix load it did, if it loaded prefixes.
    pub fn install(&mut self, layer: Layer, router: &Router, w: &Workload) -> Option<Loaded> {
        match layer {
            Layer::Nft => Some(install_nft(router, w)),
            Layer::Iptables => Some(install_iptables(router, w)),
            Layer::SteerTc | Layer::SteerXdp => {
                let loaded = if self.steer.is_none() {
                    let (dp, loaded) = load_steer(w);
                    self.steer = Some(dp);
                    Some(loaded)
                } else {
                    None
                };
                let dp = self.steer.as_mut().expect("loaded above");
                let xdp = layer == Layer::SteerXdp;
                let report = router
                    .ns
                    .enter(|| dp.attach(&router.lan, xdp))
                    .expect("attach steer");
                assert!(
                    !xdp || report.xdp.is_some(),
                    "steer XDP did not attach: {:?}",
                    report.xdp_error
                );
                loaded
            }
            Layer::Conntrack => {
                nft(
                    router,
                    "table inet fwbench_ct {\n\
                     \tchain forward {\n\
                     \t\ttype filter hook forward priority filter; policy accept;\n\
                     \t\tct state established,related accept\n\
                     \t}\n}\n",
                );
                None
            }
            Layer::SteerCtMark => {
                let wans: Vec<steer::conntrack::MarkedWan> = MARKS
                    .iter()
                    .enumerate()
                    .map(|(i, mark)| steer::conntrack::MarkedWan {
                        interface: format!("wan{}", i + 1),
                        mark: *mark,
                    })
                    .collect();
                nft(router, &steer::conntrack::ruleset(MARK_MASK, &wans));
                None
            }
        }
    }

    /// Total run time and run count of steer's (TC, XDP) programs, as the kernel counts them
    /// while BPF statistics are enabled.
    pub fn steer_program_stats(&self) -> Option<[(Duration, u64); 2]> {
        let dp = self.steer.as_ref()?;
        let tc = dp.tc().info().ok()?;
        let xdp = dp.xdp().info().ok()?;
        Some([
            (tc.run_time(), tc.run_count()),
            (xdp.run_time(), xdp.run_count()),
        ])
    }

    /// Packets steer's TC took the XDP verdict for (metadata), and packets TC classified itself.
    pub fn steer_paths(&self) -> Option<(u64, u64)> {
        let dp = self.steer.as_ref()?;
        let meta = dp
            .maps()
            .path_counter(steer_common::path::XDP_META)
            .ok()?
            .packets;
        let tc = dp
            .maps()
            .path_counter(steer_common::path::CLASSIFIED)
            .ok()?
            .packets;
        Some((meta, tc))
    }
}

fn mark_expr(mark: u32) -> String {
    format!("meta mark set meta mark and {:#x} or {mark:#x}", !MARK_MASK)
}

/// The nftables ruleset of the nftables contender. `auto-merge` because an interval set refuses
/// overlapping prefixes otherwise; every element has the same verdict, so merging changes no
/// answer.
pub fn nft_ruleset(w: &Workload, lan: &str) -> String {
    let (bypass, default) = (mark_expr(MARKS[1]), mark_expr(MARKS[0]));
    let mut s = format!(
        "table inet fwbench {{\n\
         \tset bypass4 {{ type ipv4_addr; flags interval; auto-merge; }}\n\
         \tset bypass6 {{ type ipv6_addr; flags interval; auto-merge; }}\n\
         \tchain classify {{\n\
         \t\ttype filter hook prerouting priority mangle; policy accept;\n\
         \t\tiifname \"{lan}\" ip daddr @bypass4 {bypass} accept\n\
         \t\tiifname \"{lan}\" ip6 daddr @bypass6 {bypass} accept\n\
         \t\tiifname \"{lan}\" {default}\n\
         \t}}\n}}\n"
    );
    let set = if w.v4 { "bypass4" } else { "bypass6" };
    for chunk in w.prefixes.chunks(10_000) {
        s.push_str(&format!("add element inet fwbench {set} {{ "));
        push_joined(&mut s, chunk, ", ");
        s.push_str(" }\n");
    }
    s
}

fn push_joined(s: &mut String, prefixes: &[Prefix], sep: &str) {
    for (i, p) in prefixes.iter().enumerate() {
        if i > 0 {
            s.push_str(sep);
        }
        s.push_str(&p.to_string());
    }
}

fn install_nft(router: &Router, w: &Workload) -> Loaded {
    let script = nft_ruleset(w, &router.lan);
    settle_kernel_memory();
    let mem = kernel_memory();
    let start = Instant::now();
    nft(router, &script);
    let time = start.elapsed();
    Loaded {
        what: "nftables interval set (nft -f)",
        time,
        kernel_memory: growth(mem),
        own_account: None,
    }
}

fn nft(router: &Router, script: &str) {
    let file = ScratchFile::new("nft", script);
    router.ns.run(&format!("nft -f {}", file.path.display()));
}

/// The ipset restore file of the iptables contender: both families' sets, the workload's
/// prefixes in one of them.
pub fn ipset_restore(w: &Workload) -> String {
    let max = w.prefixes.len().max(65_536);
    let mut s = format!(
        "create fwb4 hash:net family inet maxelem {max}\n\
         create fwb6 hash:net family inet6 maxelem {max}\n"
    );
    let set = if w.v4 { "fwb4" } else { "fwb6" };
    for p in &w.prefixes {
        s.push_str(&format!("add {set} {p}\n"));
    }
    s
}

fn install_iptables(router: &Router, w: &Workload) -> Loaded {
    let file = ScratchFile::new("ipset", &ipset_restore(w));
    settle_kernel_memory();
    let mem = kernel_memory();
    let start = Instant::now();
    router
        .ns
        .run(&format!("ipset restore -f {}", file.path.display()));
    let time = start.elapsed();
    let kernel = growth(mem);
    let set = if w.v4 { "fwb4" } else { "fwb6" };
    let memsize = router
        .ns
        .run(&format!("ipset list -t {set}"))
        .lines()
        .find_map(|l| l.strip_prefix("Size in memory:"))
        .and_then(|n| n.trim().parse().ok());
    let lan = &router.lan;
    let mut rules = String::new();
    for (tool, set) in [("iptables-legacy", "fwb4"), ("ip6tables-legacy", "fwb6")] {
        rules += &format!(
            "{tool} -t mangle -A PREROUTING -i {lan} -j MARK --set-xmark {d:#x}/{MARK_MASK:#x} && \
             {tool} -t mangle -A PREROUTING -i {lan} -m set --match-set {set} dst \
             -j MARK --set-xmark {b:#x}/{MARK_MASK:#x} && ",
            d = MARKS[0],
            b = MARKS[1]
        );
    }
    rules += "true";
    router.ns.run(&rules);
    Loaded {
        what: "ipset hash:net (ipset restore)",
        time,
        kernel_memory: kernel,
        own_account: memsize,
    }
}

/// steer's dataplane with the bypass set as rule 1 (WAN 2's mark) and the default rule on WAN
/// 1's mark, loaded with batched writes as the controller does.
fn load_steer(w: &Workload) -> (Dataplane, Loaded) {
    settle_kernel_memory();
    let mem = kernel_memory();
    let memlock = own_map_memlock();
    let mut dp = Dataplane::load().expect("steer loads");
    for (rule, wan) in [(DEFAULT_RULE, 0usize), (1, 1)] {
        let policy = PolicyEntry {
            action: action::MARK,
            mark: MARKS[wan],
            mask: MARK_MASK,
            wan: wan as u32,
            ..PolicyEntry::default()
        };
        for family in steer::model::Family::ALL {
            dp.maps_mut()
                .set_policy(0, family, rule, policy)
                .expect("policy");
        }
    }
    let entries: Vec<(Prefix, u32)> = w.prefixes.iter().map(|p| (*p, 1)).collect();
    // The set load alone, as for the others (the programs and empty maps exist before any set).
    let start = Instant::now();
    dp.maps_mut()
        .set_prefixes(Direction::Dst, &entries)
        .expect("load the bypass set");
    let time = start.elapsed();
    let loaded = Loaded {
        what: "steer range table + record",
        time,
        kernel_memory: growth(mem),
        own_account: Some(own_map_memlock().saturating_sub(memlock)),
    };
    (dp, loaded)
}

fn growth(before: Option<u64>) -> Option<i64> {
    Some(kernel_memory()? as i64 - before? as i64)
}

/// The memlock the kernel accounts to the BPF maps this process holds (`/proc/self/fdinfo`).
fn own_map_memlock() -> u64 {
    let Ok(fds) = std::fs::read_dir("/proc/self/fdinfo") else {
        return 0;
    };
    fds.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|info| info.contains("map_type:"))
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .sum()
}

/// A temporary file for a tool's input; removed on drop.
struct ScratchFile {
    path: std::path::PathBuf,
}

impl ScratchFile {
    fn new(what: &str, text: &str) -> ScratchFile {
        let path = std::env::temp_dir().join(format!("steer-fwd-{what}-{}", crate::unique_tag()));
        std::fs::write(&path, text).expect("write a scratch file");
        ScratchFile { path }
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the tools every contender needs are there (`cargo xtask setup` installs them).
pub fn missing_tools() -> Vec<&'static str> {
    [
        "trafgen",
        "nft",
        "ipset",
        "iptables-legacy",
        "ethtool",
        "taskset",
        "chrt",
    ]
    .into_iter()
    .filter(|t| {
        !Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
    .collect()
}
