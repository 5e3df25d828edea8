//! The network-namespace lab: a LAN client, the router steer runs on, two ISPs and an
//! "internet" with servers and probe targets. Reused by the end-to-end failover tests and by
//! `cargo xtask demo`.
//!
//! ```text
//!  client                router                       isp1                 internet
//!  eth0 ─────────── lan0        wan1 ─────────── down      up ─────────── isp1
//!  10.10.0.2/24     10.10.0.1/24  100.64.1.2/30   100.64.1.1  198.18.1.2  198.18.1.1/30
//!  fd10::2/64       fd10::1/64    fd64:1::2/64    fd64:1::1   fd98:1::2   fd98:1::1/64
//!                                 wan2 ─────────── down      up ─────────── isp2
//!                                 100.64.2.2/30   100.64.2.1  198.18.2.2  198.18.2.1/30
//!                                 fd64:2::2/64    fd64:2::1   fd98:2::2   fd98:2::1/64
//!                                                     isp2
//! ```
//!
//! - `client` has default routes via the router (10.10.0.1, fd10::1).
//! - `router` forwards IPv4 and IPv6 and masquerades (NAT44 and NAT66, nftables table
//!   `inet steer_lab`) everything leaving `wan1`/`wan2`, like a home router: the internet sees
//!   [`Lab::nat_addr_v4`]/[`Lab::nat_addr_v6`] of the WAN that carried a flow. Its main table has
//!   **no default route**: steer installs per-WAN tables and rules; a test that wants plain
//!   routing calls [`Lab::set_main_default`]. Conntrack is loaded (by the NAT rules).
//! - `isp1`/`isp2` forward between `down` (towards the router) and `up` (towards the internet),
//!   default route via the internet. Their nftables table `inet steer_lab` counts what they
//!   forward towards the internet ([`Lab::isp_forwarded_packets`]) and holds the
//!   `blackhole` chain that [`Lab::blackhole_upstream`] fills.
//! - `internet` owns the servers ([`Lab::SERVER_A`], ...) and probe targets ([`Lab::PROBE_1`],
//!   ...) on `lo`, and routes each WAN /30 (/64) back through its ISP.
//!
//! [`Lab::with_delegated_prefixes`] is the lab of IPv6 without NAT66 on the lab's side: the
//! router masquerades IPv4 only, each ISP routes a delegated prefix ([`Lab::delegation`]) to the
//! router and drops (and counts, [`Lab::isp_foreign_sources`]) what the router sends with a
//! source outside it and outside its link /64 (BCP38); [`Lab::delegate`] renumbers.
//!
//! [`Lab::with_faulty_line`] makes one WAN's link a [`line::Line`] (tun devices relayed by the
//! test, with delay, loss, bursts and cuts it sets while traffic runs): this kernel has no
//! `sch_netem`.
//!
//! Every namespace has loopback up, IPv6 DAD off, `keep_addr_on_down` on and `rp_filter` off.
//! Interface names are fixed (namespaces isolate them); namespace names are unique
//! ([`Netns::new`]), so labs run in parallel in one process and across processes, and are
//! removed when the [`Lab`] drops (also on panic).
//!
//! Beware: the ISP interfaces are literally called `down` and `up`, which are also keywords of
//! `ip link`: always name them with `dev` (`ip link set dev down up`), never positionally.

pub mod line;
pub mod ping;
pub mod sock;
pub mod tcp;
mod udp;

pub use udp::{Arrival, Stream, udp_arrivals, udp_arrivals_from, udp_via, udp_via_sized};

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    process::Command,
    time::{Duration, Instant},
};

use aya::programs::{SchedClassifier, TcAttachType};

use steer::prefix::Prefix;

use crate::{lab::line::Line, netns::Netns, tun::TunLink};

/// One of the lab's two uplinks. `Wan::One` is `wan1` via `isp1` (index 0 in arrays such as
/// [`udp_via`]'s result and [`Lab::isp`]), `Wan::Two` is `wan2` via `isp2` (index 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Wan {
    One,
    Two,
}

impl Wan {
    /// Both WANs, in order.
    pub const ALL: [Wan; 2] = [Wan::One, Wan::Two];

    /// 0 for `One`, 1 for `Two`: the position in `[_; 2]` arrays.
    pub const fn index(self) -> usize {
        match self {
            Wan::One => 0,
            Wan::Two => 1,
        }
    }

    /// 1 or 2: the number in the interface, namespace and address names.
    pub const fn number(self) -> u8 {
        match self {
            Wan::One => 1,
            Wan::Two => 2,
        }
    }

    /// The fwmark of this WAN in the lab's steer configuration
    /// ([`crate::scenario::lab_wans`]): 0x100 or 0x200, under the mask 0xff00.
    pub const fn mark(self) -> u32 {
        (self.number() as u32) << 8
    }

    /// The routing table of this WAN in the lab's steer configuration: 101 or 102.
    pub const fn table(self) -> u32 {
        100 + self.number() as u32
    }

    /// The other WAN.
    pub const fn other(self) -> Wan {
        match self {
            Wan::One => Wan::Two,
            Wan::Two => Wan::One,
        }
    }
}

/// The five namespaces of the lab; see the [module documentation](self) for the topology.
#[derive(Debug)]
pub struct Lab {
    /// A WAN whose link to its ISP is a faulty line ([`Lab::with_faulty_line`]). First, so the
    /// relay stops and its tun devices go before the namespaces.
    faulty: Option<(Wan, TunLink)>,
    pub client: Netns,
    pub router: Netns,
    /// `isp[0]` is ISP 1 (behind `wan1`), `isp[1]` is ISP 2. See also [`Lab::isp`].
    pub isp: [Netns; 2],
    pub internet: Netns,
    /// The prefix each ISP delegates to the router now, in a lab made by
    /// [`Lab::with_delegated_prefixes`] (`None` in the others).
    delegated: std::sync::Mutex<[Option<Prefix>; 2]>,
}

/// What [`Lab::build_with`] builds besides the common topology.
#[derive(Clone, Copy, Debug, Default)]
struct Build {
    faulty: Option<(Wan, u64)>,
    delegated: bool,
}

/// nftables table the lab uses in the router and the ISPs (family `inet`).
pub const NFT_TABLE: &str = "steer_lab";
/// An ISP's interface towards the router (an `ip` keyword: always after `dev`).
pub const ISP_DOWN: &str = "down";
/// An ISP's interface towards the internet (an `ip` keyword: always after `dev`).
const ISP_UP: &str = "up";
/// The named counter of an ISP's BCP38 drops ([`Lab::isp_foreign_sources`]).
const FOREIGN_SOURCE: &str = "foreign_source";
/// The set of the IPv6 sources an ISP forwards in a lab with delegated prefixes: its delegated
/// prefix and its link /64.
const OWN_SOURCES: &str = "own_sources6";
/// Bound on waiting for links, neighbours and carrier changes.
const SETTLE: Duration = Duration::from_secs(3);

impl Lab {
    /// Server A in the internet namespace.
    pub const SERVER_A: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
    /// Server B in the internet namespace.
    pub const SERVER_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
    /// Server A, IPv6.
    pub const SERVER_A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 0x10);
    /// Server B, IPv6.
    pub const SERVER_B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 0x20);
    /// First health-probe target in the internet namespace (answers ping).
    pub const PROBE_1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    /// Second health-probe target.
    pub const PROBE_2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    /// First probe target, IPv6.
    pub const PROBE_1_6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
    /// Second probe target, IPv6.
    pub const PROBE_2_6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);

    /// The client's address on the LAN.
    pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
    /// The client's IPv6 address on the LAN.
    pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd10, 0, 0, 0, 0, 0, 0, 2);
    /// The router's LAN address (the client's gateway).
    pub const LAN_GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);
    /// The router's LAN IPv6 address (the client's gateway).
    pub const LAN_GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfd10, 0, 0, 0, 0, 0, 0, 1);
    /// The router's LAN interface (where steer classifies).
    pub const LAN_IFACE: &str = "lan0";

    /// The names of the programs on the tcx ingress chain of the router's LAN interface, in
    /// order: what classifies traffic from the LAN right now.
    pub fn lan_tcx_programs(&self) -> Vec<String> {
        self.router.enter(|| {
            let (_, progs) = SchedClassifier::query_tcx(Self::LAN_IFACE, TcAttachType::Ingress)
                .expect("query tcx");
            progs
                .iter()
                .map(|p| p.name_as_str().unwrap_or("?").to_owned())
                .collect()
        })
    }

    /// What steer changes in the router's namespace beside its pins: its routing rules
    /// (protocol 201), its nftables table, the programs on the LAN interface. Empty where steer
    /// changed nothing.
    pub fn steer_traces(&self) -> Vec<String> {
        let rules = self.router.run("ip rule show; ip -6 rule show");
        let mut traces: Vec<String> = rules
            .lines()
            .filter(|l| l.contains("proto 201"))
            .map(str::to_owned)
            .collect();
        if self
            .router
            .run("nft list tables")
            .lines()
            .any(|l| l.trim() == "table inet steer")
        {
            traces.push("nftables table inet steer".into());
        }
        traces.extend(self.lan_tcx_programs());
        traces
    }

    /// The client's interface.
    pub const CLIENT_IFACE: &str = "eth0";

    /// Builds the lab: namespaces, links, addresses, routes, forwarding, NAT, ISP counters.
    /// Returns once every link is up and its neighbours answer (bounded by 3 s). Panics naming
    /// the step that failed and the command output.
    pub fn new() -> Lab {
        Lab::build_with(Build::default())
    }

    /// As [`Lab::new`], but IPv6 is routed, not translated, by the lab: the router masquerades
    /// IPv4 only (IPv6 leaves `wanN` with whatever source it has); ISP N routes its delegated
    /// prefix [`Lab::initial_delegation`] (2001:db8:N::/56) to the router's WAN address
    /// fd64:N::2 and the internet routes it through ISP N; each ISP drops, and counts in
    /// [`Lab::isp_foreign_sources`], every IPv6 packet from the router towards the internet
    /// whose source is neither in its delegated prefix nor in its link fd64:N::/64 (BCP38,
    /// before the blackhole chain, so it counts while the upstream is blackholed too).
    ///
    /// The internet has no IPv6 probe targets in this lab: [`Lab::PROBE_1_6`] and
    /// [`Lab::PROBE_2_6`] lie inside ISP 2's delegated prefix 2001:db8:2::/56.
    pub fn with_delegated_prefixes() -> Lab {
        Lab::build_with(Build {
            delegated: true,
            ..Build::default()
        })
    }

    /// As [`Lab::new`], but `w`'s link to its ISP is a [`Line`] whose faults the test sets
    /// ([`Lab::line`]) instead of a veth pair: `wanN` in the router and `down` in the ISP are
    /// tun devices (L3, no Ethernet header, like a PPPoE or LTE WAN; same addresses, routes and
    /// NAT), relayed by a thread of the test; the line's loss is drawn from `seed`. The carrier
    /// of a tun WAN stays up whatever the line does: [`Lab::cut_carrier`] does not apply to it.
    pub fn with_faulty_line(w: Wan, seed: u64) -> Lab {
        Lab::build_with(Build {
            faulty: Some((w, seed)),
            ..Build::default()
        })
    }

    /// The faulty line of [`Lab::with_faulty_line`]; direction a → b is from the router
    /// towards the ISP ([`line::Way::AToB`]), b → a the ISP's answers.
    pub fn line(&self) -> &Line {
        self.faulty
            .as_ref()
            .map(|(_, link)| link.line())
            .expect("a lab made by Lab::with_faulty_line")
    }

    fn build_with(build: Build) -> Lab {
        crate::require_root();
        let client = Netns::new("cli");
        let router = Netns::new("rtr");
        let isp = [Netns::new("isp1"), Netns::new("isp2")];
        let internet = Netns::new("inet");
        let mut lab = Lab {
            faulty: None,
            client,
            router,
            isp,
            internet,
            delegated: std::sync::Mutex::new(if build.delegated {
                Wan::ALL.map(|w| Some(Self::initial_delegation(w)))
            } else {
                [None, None]
            }),
        };
        lab.build(build);
        lab
    }

    fn build(&mut self, build: Build) {
        let (faulty, delegated) = (build.faulty, build.delegated);
        // Before any link exists, so that every interface inherits these defaults.
        for ns in self.all() {
            step(
                ns,
                "sysctl defaults",
                "sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
                 net.ipv6.conf.all.keep_addr_on_down=1 net.ipv6.conf.default.keep_addr_on_down=1",
            );
        }
        for ns in [&self.router, &self.isp[0], &self.isp[1]] {
            step(
                ns,
                "enable forwarding",
                "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
                 net.ipv6.conf.default.forwarding=1",
            );
        }

        // All links in one `ip` process.
        let links = [
            (
                &self.client,
                Self::CLIENT_IFACE,
                &self.router,
                Self::LAN_IFACE,
            ),
            (
                &self.router,
                Self::wan_iface(Wan::One),
                &self.isp[0],
                ISP_DOWN,
            ),
            (
                &self.router,
                Self::wan_iface(Wan::Two),
                &self.isp[1],
                ISP_DOWN,
            ),
            (&self.isp[0], ISP_UP, &self.internet, "isp1"),
            (&self.isp[1], ISP_UP, &self.internet, "isp2"),
        ];
        let faulty_wan = faulty.map(|(w, _)| Self::wan_iface(w));
        let batch: String = links
            .iter()
            .filter(|&&(_, a_if, _, _)| Some(a_if) != faulty_wan)
            .map(|&(a, a_if, b, b_if)| veth_batch_line(a, a_if, b, b_if))
            .collect();
        host_ip_batch("create links", &batch);
        // After the sysctl defaults, so that the tun devices inherit them too.
        self.faulty = faulty.map(|(w, seed)| {
            let link = TunLink::with_seed(
                &self.router,
                Self::wan_iface(w),
                self.isp(w),
                ISP_DOWN,
                seed,
            );
            (w, link)
        });

        self.configure_lan();
        let mut wans = String::new();
        for w in Wan::ALL {
            let (dev, nat4, nat6) = (
                Self::wan_iface(w),
                Self::nat_addr_v4(w),
                Self::nat_addr_v6(w),
            );
            wans.push_str(&format!(
                "ip link set dev {dev} up && ip addr add {nat4}/30 dev {dev} && \
                 ip -6 addr add {nat6}/64 dev {dev} nodad && "
            ));
        }
        wans.push_str("true");
        step(&self.router, "configure the router's WAN side", &wans);
        step(
            &self.router,
            "router NAT (nftables masquerade on wan1/wan2)",
            &format!(
                "nft -f - <<'EOF'\n\
                 table inet {NFT_TABLE} {{\n\
                   chain postrouting {{\n\
                     type nat hook postrouting priority srcnat; policy accept;\n\
                     {family}oifname {{ \"{}\", \"{}\" }} masquerade\n\
                   }}\n\
                 }}\n\
                 EOF",
                Self::wan_iface(Wan::One),
                Self::wan_iface(Wan::Two),
                family = if delegated { "meta nfproto ipv4 " } else { "" },
            ),
        );
        for w in Wan::ALL {
            let n = w.number();
            let isp = self.isp(w);
            let (gw4, gw6) = (Self::gateway_v4(w), Self::gateway_v6(w));
            step(
                isp,
                "configure ISP",
                &format!(
                    "ip link set dev {ISP_DOWN} up && ip link set dev {ISP_UP} up && \
                     ip addr add {gw4}/30 dev {ISP_DOWN} && \
                     ip -6 addr add {gw6}/64 dev {ISP_DOWN} nodad && \
                     ip addr add 198.18.{n}.2/30 dev {ISP_UP} && \
                     ip -6 addr add fd98:{n}::2/64 dev {ISP_UP} nodad && \
                     ip route add default via 198.18.{n}.1 dev {ISP_UP} && \
                     ip -6 route add default via fd98:{n}::1 dev {ISP_UP}"
                ),
            );
            let bcp38 = if delegated {
                let (prefix, link) = (Self::initial_delegation(w), Self::link_prefix_v6(w));
                let router = Self::nat_addr_v6(w);
                step(
                    isp,
                    "ISP route to the delegated prefix",
                    &format!("ip -6 route add {prefix} via {router} dev {ISP_DOWN}"),
                );
                format!(
                    "counter {FOREIGN_SOURCE} {{ }}\n\
                     set {OWN_SOURCES} {{ type ipv6_addr; flags interval; \
                       elements = {{ {prefix}, {link} }}; }}\n\
                     chain bcp38 {{\n\
                       type filter hook forward priority -20; policy accept;\n\
                       iifname \"{ISP_DOWN}\" oifname \"{ISP_UP}\" ip6 saddr != @{OWN_SOURCES} \
                         counter name \"{FOREIGN_SOURCE}\" drop\n\
                     }}\n"
                )
            } else {
                String::new()
            };
            step(
                isp,
                "ISP nftables (forward counter, blackhole chain)",
                &format!(
                    "nft -f - <<'EOF'\n\
                     table inet {NFT_TABLE} {{\n\
                       counter towards_internet {{ }}\n\
                       {bcp38}\
                       chain blackhole {{\n\
                         type filter hook forward priority -10; policy accept;\n\
                       }}\n\
                       chain forward {{\n\
                         type filter hook forward priority 0; policy accept;\n\
                         iifname \"{ISP_DOWN}\" oifname \"{ISP_UP}\" counter name \"towards_internet\"\n\
                       }}\n\
                     }}\n\
                     EOF"
                ),
            );
        }
        let mut inet = String::from(
            "ip link set dev isp1 up && ip link set dev isp2 up && \
             ip addr add 198.18.1.1/30 dev isp1 && ip -6 addr add fd98:1::1/64 dev isp1 nodad && \
             ip addr add 198.18.2.1/30 dev isp2 && ip -6 addr add fd98:2::1/64 dev isp2 nodad && \
             ip route add 100.64.1.0/30 via 198.18.1.2 dev isp1 && \
             ip route add 100.64.2.0/30 via 198.18.2.2 dev isp2 && \
             ip -6 route add fd64:1::/64 via fd98:1::2 dev isp1 && \
             ip -6 route add fd64:2::/64 via fd98:2::2 dev isp2",
        );
        for a in [Self::SERVER_A, Self::SERVER_B, Self::PROBE_1, Self::PROBE_2] {
            inet.push_str(&format!(" && ip addr add {a}/32 dev lo"));
        }
        let v6_on_lo: &[Ipv6Addr] = if delegated {
            // The v6 probe targets are in 2001:db8:2::/56, ISP 2's delegated prefix.
            &[Self::SERVER_A6, Self::SERVER_B6]
        } else {
            &[
                Self::SERVER_A6,
                Self::SERVER_B6,
                Self::PROBE_1_6,
                Self::PROBE_2_6,
            ]
        };
        for a in v6_on_lo {
            inet.push_str(&format!(" && ip -6 addr add {a}/128 dev lo nodad"));
        }
        if delegated {
            for w in Wan::ALL {
                let n = w.number();
                let prefix = Self::initial_delegation(w);
                inet.push_str(&format!(
                    " && ip -6 route add {prefix} via fd98:{n}::2 dev isp{n}"
                ));
            }
        }
        step(&self.internet, "configure internet", &inet);

        self.wait_ready();
    }

    /// Addresses and routes of both ends of the LAN link (client and router).
    fn configure_lan(&self) {
        let (cli, lan) = (Self::CLIENT_IFACE, Self::LAN_IFACE);
        let (c4, c6) = (Self::CLIENT_V4, Self::CLIENT_V6);
        let (g4, g6) = (Self::LAN_GATEWAY_V4, Self::LAN_GATEWAY_V6);
        step(
            &self.client,
            "configure client",
            &format!(
                "ip link set dev {cli} up && \
                 ip addr add {c4}/24 dev {cli} && ip -6 addr add {c6}/64 dev {cli} nodad && \
                 ip route add default via {g4} dev {cli} && \
                 ip -6 route add default via {g6} dev {cli}"
            ),
        );
        step(
            &self.router,
            "configure the router's LAN side",
            &format!(
                "ip link set dev {lan} up && \
                 ip addr add {g4}/24 dev {lan} && ip -6 addr add {g6}/64 dev {lan} nodad"
            ),
        );
    }

    /// Puts the router's LAN side behind a bridge called `bridge`, as on most routers: `lan0`
    /// becomes its port and the LAN addresses move to it. Returns once the client reaches the
    /// router through it.
    pub fn bridge_lan(&self, bridge: &str) {
        let lan = Self::LAN_IFACE;
        let (g4, g6) = (Self::LAN_GATEWAY_V4, Self::LAN_GATEWAY_V6);
        step(
            &self.router,
            "bridge the LAN",
            &format!(
                "ip link add {bridge} type bridge && ip addr flush dev {lan} && \
                 ip link set {lan} master {bridge} && ip link set {bridge} up && \
                 ip addr add {g4}/24 dev {bridge} && ip -6 addr add {g6}/64 dev {bridge} nodad"
            ),
        );
        let unreachable = ping_all(&self.client, &[&g4.to_string(), &g6.to_string()], SETTLE);
        assert!(
            unreachable.is_empty(),
            "bridge_lan: no answer from {}\n{}",
            unreachable.join(", "),
            diagnostics(&self.client)
        );
    }

    /// Creates the LAN link again, configured as [`Lab::new`] does, after a test deleted it
    /// (`ip link del dev lan0` in the router takes both ends): a new `lan0` with a new ifindex,
    /// as netifd makes when it recreates a bridge. Returns once the client reaches the router.
    pub fn connect_lan(&self) {
        host_ip_batch(
            "create the LAN link",
            &veth_batch_line(
                &self.client,
                Self::CLIENT_IFACE,
                &self.router,
                Self::LAN_IFACE,
            ),
        );
        self.configure_lan();
        let gw = [
            Self::LAN_GATEWAY_V4.to_string(),
            Self::LAN_GATEWAY_V6.to_string(),
        ];
        let unreachable = ping_all(&self.client, &[&gw[0], &gw[1]], SETTLE);
        assert!(
            unreachable.is_empty(),
            "connect_lan: no answer from {}\n{}",
            unreachable.join(", "),
            diagnostics(&self.client)
        );
    }

    /// Pings across every link, from all namespaces at once, until each answers (bounded).
    fn wait_ready(&self) {
        let lan_gw = [
            Self::LAN_GATEWAY_V4.to_string(),
            Self::LAN_GATEWAY_V6.to_string(),
        ];
        let checks: [(&Netns, &[&str]); 5] = [
            (&self.client, &[&lan_gw[0], &lan_gw[1]]),
            (
                &self.router,
                &["100.64.1.1", "fd64:1::1", "100.64.2.1", "fd64:2::1"],
            ),
            (&self.isp[0], &["198.18.1.1", "fd98:1::1"]),
            (&self.isp[1], &["198.18.2.1", "fd98:2::1"]),
            // Through each ISP (forwarding and routes back) to its router-facing address.
            (
                &self.internet,
                &["100.64.1.1", "fd64:1::1", "100.64.2.1", "fd64:2::1"],
            ),
        ];
        std::thread::scope(|s| {
            for (ns, targets) in checks {
                s.spawn(move || {
                    let unreachable = ping_all(ns, targets, SETTLE);
                    assert!(
                        unreachable.is_empty(),
                        "lab setup: wait for links: from {} no answer from {} within {SETTLE:?}\n{}",
                        ns.name,
                        unreachable.join(", "),
                        diagnostics(ns)
                    );
                });
            }
        });
    }

    fn all(&self) -> [&Netns; 5] {
        [
            &self.client,
            &self.router,
            &self.isp[0],
            &self.isp[1],
            &self.internet,
        ]
    }

    /// The namespace of the ISP behind `w`.
    pub fn isp(&self, w: Wan) -> &Netns {
        &self.isp[w.index()]
    }

    /// The router's interface towards `w`: `"wan1"` or `"wan2"`.
    pub fn wan_iface(w: Wan) -> &'static str {
        match w {
            Wan::One => "wan1",
            Wan::Two => "wan2",
        }
    }

    /// The ISP gateway of `w` as the router sees it: 100.64.N.1.
    pub fn gateway_v4(w: Wan) -> Ipv4Addr {
        Ipv4Addr::new(100, 64, w.number(), 1)
    }

    /// The ISP gateway of `w`, IPv6: fd64:N::1.
    pub fn gateway_v6(w: Wan) -> Ipv6Addr {
        Ipv6Addr::new(0xfd64, w.number().into(), 0, 0, 0, 0, 0, 1)
    }

    /// The router's address on `w` (100.64.N.2): the source the internet sees after NAT.
    pub fn nat_addr_v4(w: Wan) -> Ipv4Addr {
        Ipv4Addr::new(100, 64, w.number(), 2)
    }

    /// The router's IPv6 address on `w` (fd64:N::2): the source the internet sees after NAT66.
    pub fn nat_addr_v6(w: Wan) -> Ipv6Addr {
        Ipv6Addr::new(0xfd64, w.number().into(), 0, 0, 0, 0, 0, 2)
    }

    /// Which WAN's NAT address `addr` is, if any (v4 or v6; IPv4-mapped IPv6 counts as v4).
    pub fn wan_of_nat_addr(addr: std::net::IpAddr) -> Option<Wan> {
        let addr = addr.to_canonical();
        Wan::ALL.into_iter().find(|&w| {
            addr == Self::nat_addr_v4(w) || addr == std::net::IpAddr::V6(Self::nat_addr_v6(w))
        })
    }

    /// Adds (or replaces) the router's main-table default routes, v4 and v6, via `w`'s
    /// gateway. The lab has none until this is called.
    pub fn set_main_default(&self, w: Wan) {
        let (iface, gw4, gw6) = (Self::wan_iface(w), Self::gateway_v4(w), Self::gateway_v6(w));
        self.router.run(&format!(
            "ip route replace default via {gw4} dev {iface} && \
             ip -6 route replace default via {gw6} dev {iface}"
        ));
    }

    /// Removes the router's main-table default routes (v4 and v6), if any.
    pub fn clear_main_default(&self) {
        self.router.run(
            "while ip route del default 2>/dev/null; do :; done; \
             while ip -6 route del default 2>/dev/null; do :; done; true",
        );
    }

    /// Flushes the router's conntrack table (NAT bindings included). Not needed for a flow to
    /// follow its route to another WAN (masquerade re-binds by itself, dropping one packet).
    pub fn flush_conntrack(&self) {
        let out = self.router.try_run("conntrack -F");
        // conntrack -F reports on stderr and exits 0 even on an empty table.
        assert!(
            out.status.success(),
            "conntrack -F in {}: {}",
            self.router.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Whether the router's interface towards `w` has carrier (IFF_LOWER_UP), read from
    /// `/sys/class/net/wanN/carrier` in the router namespace.
    pub fn carrier(&self, w: Wan) -> bool {
        let out = self.router.run(&format!(
            "cat /sys/class/net/{}/carrier 2>/dev/null || echo 0",
            Self::wan_iface(w)
        ));
        out.trim() == "1"
    }

    /// Carrier loss on `w`: the ISP takes its side of the link down, so the router's `wanN`
    /// reports NO-CARRIER (IFF_LOWER_UP off) while staying administratively up. Returns once
    /// the router sees it (bounded).
    pub fn cut_carrier(&self, w: Wan) {
        assert!(
            self.faulty.as_ref().is_none_or(|(f, _)| *f != w),
            "cut_carrier({w:?}): a faulty line keeps its carrier; use Lab::line().cut()"
        );
        self.isp(w).run(&format!("ip link set dev {ISP_DOWN} down"));
        self.wait_carrier(w, false);
    }

    /// Undoes [`Lab::cut_carrier`]: the ISP side comes back up and the router's `wanN` regains
    /// carrier (LOWER_UP). Returns once the router sees carrier and the gateway answers
    /// (bounded).
    pub fn restore_carrier(&self, w: Wan) {
        self.isp(w).run(&format!("ip link set dev {ISP_DOWN} up"));
        self.wait_carrier(w, true);
        let gws = [
            Self::gateway_v4(w).to_string(),
            Self::gateway_v6(w).to_string(),
        ];
        let unreachable = ping_all(&self.router, &[&gws[0], &gws[1]], SETTLE);
        assert!(
            unreachable.is_empty(),
            "restore_carrier({w:?}): gateway {} does not answer\n{}",
            unreachable.join(", "),
            diagnostics(&self.router)
        );
    }

    fn wait_carrier(&self, w: Wan, want: bool) {
        let deadline = Instant::now() + SETTLE;
        while self.carrier(w) != want {
            assert!(
                Instant::now() < deadline,
                "router {} carrier did not become {want} within {SETTLE:?}\n{}",
                Self::wan_iface(w),
                diagnostics(&self.router)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Silent upstream loss on `w`: the ISP keeps its link to the router up (carrier stays, its
    /// gateway address still answers the router) but drops everything it would forward, to and
    /// from the internet (an nftables `drop` in its forward hook). Only probes notice.
    pub fn blackhole_upstream(&self, w: Wan) {
        self.isp(w).run(&format!(
            "printf 'flush chain inet {NFT_TABLE} blackhole\\n\
             add rule inet {NFT_TABLE} blackhole drop\\n' | nft -f -"
        ));
    }

    /// Undoes [`Lab::blackhole_upstream`].
    pub fn restore_upstream(&self, w: Wan) {
        self.isp(w)
            .run(&format!("nft flush chain inet {NFT_TABLE} blackhole"));
    }

    /// Packets (IPv4 and IPv6) ISP `w` has forwarded from the router towards the internet so
    /// far (an nftables counter after the blackhole, so dropped packets do not count).
    pub fn isp_forwarded_packets(&self, w: Wan) -> u64 {
        nft_counter_packets(
            self.isp(w),
            &format!("inet {NFT_TABLE}"),
            "towards_internet",
        )
    }

    /// The prefix ISP `w` delegates when a lab with delegated prefixes is built:
    /// 2001:db8:N::/56.
    pub fn initial_delegation(w: Wan) -> Prefix {
        let addr = Ipv6Addr::new(0x2001, 0xdb8, w.number().into(), 0, 0, 0, 0, 0);
        Prefix::new(addr.into(), 56).expect("a /56")
    }

    /// The /64 of the link between the router's `wanN` and ISP N: fd64:N::/64.
    pub fn link_prefix_v6(w: Wan) -> Prefix {
        let addr = Ipv6Addr::new(0xfd64, w.number().into(), 0, 0, 0, 0, 0, 0);
        Prefix::new(addr.into(), 64).expect("a /64")
    }

    /// The prefix ISP `w` delegates to the router now ([`Lab::with_delegated_prefixes`]).
    pub fn delegation(&self, w: Wan) -> Prefix {
        self.delegated.lock().expect("lock")[w.index()]
            .expect("a lab made by Lab::with_delegated_prefixes")
    }

    /// ISP `w` renumbers the router: it delegates `prefix` instead of its current prefix. The
    /// ISP's route and BCP38 set and the internet's route move to `prefix` (the old prefix is
    /// routed nowhere any more and is foreign to the ISP). The router is not touched.
    pub fn delegate(&self, w: Wan, prefix: Prefix) {
        assert!(!prefix.is_v4(), "delegate an IPv6 prefix, not {prefix}");
        let old = self.delegation(w);
        let (n, router, link) = (w.number(), Self::nat_addr_v6(w), Self::link_prefix_v6(w));
        step(
            self.isp(w),
            "renumber: the ISP's route and BCP38 set",
            &format!(
                "ip -6 route del {old} via {router} dev {ISP_DOWN} && \
                 ip -6 route add {prefix} via {router} dev {ISP_DOWN} && \
                 printf 'flush set inet {NFT_TABLE} {OWN_SOURCES}\\n\
                 add element inet {NFT_TABLE} {OWN_SOURCES} {{ {prefix}, {link} }}\\n' | nft -f -"
            ),
        );
        step(
            &self.internet,
            "renumber: the internet's route",
            &format!(
                "ip -6 route del {old} via fd98:{n}::2 dev isp{n} && \
                 ip -6 route add {prefix} via fd98:{n}::2 dev isp{n}"
            ),
        );
        self.delegated.lock().expect("lock")[w.index()] = Some(prefix);
    }

    /// IPv6 packets ISP `w` dropped so far because their source was neither in the prefix it
    /// delegates nor in its link /64 ([`Lab::with_delegated_prefixes`]).
    pub fn isp_foreign_sources(&self, w: Wan) -> u64 {
        nft_counter_packets(self.isp(w), &format!("inet {NFT_TABLE}"), FOREIGN_SOURCE)
    }

    /// Adds a named counter `name` to ISP `w` that counts the packets it forwards from the
    /// router towards the internet (after BCP38 and the blackhole) that match `matcher`, an
    /// nftables match such as `meta l4proto tcp th sport 7000`. Read it with
    /// [`Lab::isp_counter`].
    pub fn isp_watch(&self, w: Wan, name: &str, matcher: &str) {
        step(
            self.isp(w),
            "ISP watch counter",
            &format!(
                "printf '%s\\n' 'add counter inet {NFT_TABLE} {name}' \
                 'add rule inet {NFT_TABLE} forward iifname \"{ISP_DOWN}\" oifname \"{ISP_UP}\" \
                 {matcher} counter name \"{name}\"' | nft -f -"
            ),
        );
    }

    /// Packets counted so far by [`Lab::isp_watch`]'s counter `name` in ISP `w`.
    pub fn isp_counter(&self, w: Wan, name: &str) -> u64 {
        nft_counter_packets(self.isp(w), &format!("inet {NFT_TABLE}"), name)
    }

    /// Names of the lab's namespaces (to check they are gone after drop, or for logs).
    pub fn namespace_names(&self) -> Vec<String> {
        self.all().iter().map(|ns| ns.name.clone()).collect()
    }
}

/// Only for clippy's `new_without_default`: a lab is five namespaces, never a cheap value.
impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

/// The packets of the nftables named counter `counter` of `table` (family and name, e.g.
/// `inet steer`) in `ns`; panics with nft's output if there is no such counter.
pub fn nft_counter_packets(ns: &Netns, table: &str, counter: &str) -> u64 {
    let out = ns.run(&format!("nft list counter {table} {counter}"));
    out.split_whitespace()
        .skip_while(|t| *t != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in nft output: {out}"))
}

/// Runs a setup step; panics naming the step, the namespace, the command and its output.
pub(crate) fn step(ns: &Netns, what: &str, cmd: &str) {
    let out = ns.try_run(cmd);
    assert!(
        out.status.success(),
        "lab setup: {what} in {} failed:\n`{cmd}`\n{}{}",
        ns.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `ip -batch` line that creates a veth pair with each end directly in its namespace (never
/// in the host's). `name` is explicit because `up`/`down` are `ip` keywords.
pub(crate) fn veth_batch_line(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> String {
    format!(
        "link add name {a_if} netns {} type veth peer name {b_if} netns {}\n",
        a.name, b.name
    )
}

/// `ip -batch -` in the host namespace; only for commands that create devices directly in
/// other namespaces.
pub(crate) fn host_ip_batch(what: &str, batch: &str) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("iproute2 `ip` is installed");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(batch.as_bytes())
        .expect("write to ip -batch");
    let out = child.wait_with_output().expect("ip -batch runs");
    assert!(
        out.status.success(),
        "lab setup: {what} failed:\n{batch}{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pings every target from `ns` in parallel until each answers once or `within` passes;
/// returns the targets that never answered.
pub fn ping_all(ns: &Netns, targets: &[&str], within: Duration) -> Vec<String> {
    let secs = within.as_secs().max(1);
    let script: String = targets
        .iter()
        .map(|t| format!("(ping -q -n -c 1 -i 0.05 -w {secs} {t} >/dev/null 2>&1 || echo {t}) & "))
        .chain(std::iter::once("wait".to_owned()))
        .collect();
    let out = ns.try_run(&script);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Links, addresses, routes and neighbours of `ns`, for failure messages.
fn diagnostics(ns: &Netns) -> String {
    let out = ns.try_run(
        "ip -br link; ip -br addr; ip route; ip -6 route; ip neigh; ip -6 neigh; \
         nft list ruleset 2>&1",
    );
    format!(
        "state of {}:\n{}{}",
        ns.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
