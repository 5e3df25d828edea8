//! The HA lab: two routers that share a LAN (through a switch) and a modem-side segment (the
//! ISP's bridge), a LAN client, and the ISP with a server and a probe target. Used by the VRRP
//! tests (`tests/vrrp.rs`) and the `vrrp` benchmark.
//!
//! ```text
//!                 sw (bridge br0)                          isp (bridge br0 100.64.0.1/24,
//!  client eth0 ── p-cli                                         fd64::1/64; lo: SERVER, PROBE)
//!  10.10.0.2/24   p-a ── lan0  router A  wan1 ── w-a ──┐
//!  fd10::2/64     p-b ── lan0  router B  wan1 ── w-b ──┘
//!                     10.10.0.11 / .12     100.64.0.2/24 on both (the shared modem-side
//!                     fd10::11 / ::12      address: only the master's wan1 is up)
//! ```
//!
//! - The client's gateway is the virtual address [`VIP`] (and [`VIP6`]).
//! - The routers forward without NAT (the ISP routes 10.10.0.0/24 and fd10::/64 to
//!   100.64.0.2 / fd64::2); their firewall drops packets conntrack calls invalid, and
//!   `nf_conntrack_tcp_loose` is off, so a TCP connection survives a change of router only if
//!   the new one knows it (conntrackd).
//! - `arp_notify`/`ndisc_notify` are on, so a router whose wan1 comes up tells the ISP (the
//!   keepalived baseline relies on it; steer announces the WAN's addresses itself).
//! - Namespaces are unique and removed on drop (also on panic).

pub mod bench;
pub mod peers;
pub mod routed;
pub mod traffic;
pub mod wire;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use crate::netns::Netns;

/// The virtual address the routers share (the client's gateway).
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);
/// The virtual IPv6 address.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd10, 0, 0, 0, 0, 0, 0, 1);
/// The link-local virtual address an IPv6 instance lists first (RFC 9568).
pub const VIP6_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd10, 0, 0, 0, 0, 0, 0, 2);
/// The server in the ISP namespace.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// What the routers probe their WAN with.
pub const PROBE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The ISP's side of the modem segment (the routers' gateway).
pub const ISP: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
pub const ISP6: Ipv6Addr = Ipv6Addr::new(0xfd64, 0, 0, 0, 0, 0, 0, 1);
/// The routers' shared modem-side address.
pub const WAN_ADDR: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);
/// The VRID every test uses.
pub const VRID: u8 = 51;
/// Bound on links and neighbours settling.
const SETTLE: Duration = Duration::from_secs(5);

/// One of the two routers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub const fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    pub const fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// The router's own LAN address: 10.10.0.11 or .12.
    pub const fn lan(self) -> Ipv4Addr {
        Ipv4Addr::new(10, 10, 0, 11 + self.index() as u8)
    }

    pub const fn lan6(self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd10, 0, 0, 0, 0, 0, 0, 0x11 + self.index() as u16)
    }

    fn letter(self) -> char {
        match self {
            Side::A => 'a',
            Side::B => 'b',
        }
    }
}

/// The namespaces of the lab.
#[derive(Debug)]
pub struct HaLab {
    pub client: Netns,
    pub switch: Netns,
    pub routers: [Netns; 2],
    pub isp: Netns,
}

/// Only for clippy's `new_without_default`: a lab is namespaces, never a cheap value.
impl Default for HaLab {
    fn default() -> Self {
        HaLab::new()
    }
}

impl HaLab {
    pub fn new() -> HaLab {
        crate::require_root();
        let lab = HaLab {
            client: Netns::new("hcli"),
            switch: Netns::new("hsw"),
            routers: [Netns::new("hra"), Netns::new("hrb")],
            isp: Netns::new("hisp"),
        };
        lab.build();
        lab
    }

    pub fn router(&self, side: Side) -> &Netns {
        &self.routers[side.index()]
    }

    fn build(&self) {
        let (sw, isp) = (&self.switch.name, &self.isp.name);
        let mut batch = format!(
            "link add name eth0 netns {} type veth peer name p-cli netns {sw}\n",
            self.client.name
        );
        for side in [Side::A, Side::B] {
            let r = &self.router(side).name;
            let l = side.letter();
            batch.push_str(&format!(
                "link add name lan0 netns {r} type veth peer name p-{l} netns {sw}\n\
                 link add name wan1 netns {r} type veth peer name w-{l} netns {isp}\n"
            ));
        }
        crate::lab::host_ip_batch("create the HA lab's links", &batch);
        self.switch.run(
            "ip link add br0 type bridge && ip link set br0 up && \
             for p in p-cli p-a p-b; do ip link set $p master br0 && ip link set $p up; done",
        );
        self.isp.run(&format!(
            "ip link add br0 type bridge && ip link set br0 up && \
             for p in w-a w-b; do ip link set $p master br0 && ip link set $p up; done && \
             ip addr add {ISP}/24 dev br0 && ip -6 addr add {ISP6}/64 dev br0 nodad && \
             ip addr add {SERVER}/32 dev lo && ip addr add {PROBE}/32 dev lo && \
             ip route add 10.10.0.0/24 via {WAN_ADDR} && ip -6 route add fd10::/64 via fd64::2 && \
             sysctl -qw net.ipv4.ip_forward=1"
        ));
        self.client.run(&format!(
            "ip link set eth0 up && ip addr add {CLIENT}/24 dev eth0 && \
             ip -6 addr add {CLIENT6}/64 dev eth0 nodad && \
             ip route add default via {VIP} && ip -6 route add default via {VIP6}"
        ));
        for side in [Side::A, Side::B] {
            self.router(side).run(&format!(
                "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
                   net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
                   net.ipv4.conf.all.arp_notify=1 net.ipv4.conf.default.arp_notify=1 \
                   net.ipv6.conf.all.ndisc_notify=1 net.ipv6.conf.default.ndisc_notify=1 \
                   net.ipv6.conf.all.keep_addr_on_down=1 net.ipv6.conf.default.keep_addr_on_down=1 && \
                 ip link set lan0 up && ip addr add {lan}/24 dev lan0 && \
                 ip -6 addr add {lan6}/64 dev lan0 nodad && \
                 ip addr add {WAN_ADDR}/24 dev wan1 && ip -6 addr add fd64::2/64 dev wan1 nodad && \
                 modprobe nf_conntrack 2>/dev/null; \
                 sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0 && \
                 nft -f - <<'EOF'\n\
                 table inet ha_lab {{\n\
                   chain forward {{\n\
                     type filter hook forward priority 0; policy accept;\n\
                     ct state invalid drop\n\
                   }}\n\
                 }}\n\
                 EOF",
                lan = side.lan(),
                lan6 = side.lan6(),
            ));
        }
        let unreachable = crate::lab::ping_all(
            &self.client,
            &[&Side::A.lan().to_string(), &Side::B.lan().to_string()],
            SETTLE,
        );
        assert!(
            unreachable.is_empty(),
            "HA lab: the client does not reach {}",
            unreachable.join(", ")
        );
    }

    /// Whether `side` holds `addr` (as `ip addr` writes it, e.g. "10.10.0.1/24") on `dev`.
    pub fn has_addr(&self, side: Side, dev: &str, addr: &str) -> bool {
        let out = self
            .router(side)
            .try_run(&format!("ip -o addr show dev {dev}"));
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {addr} "))
    }

    /// Whether `side` holds the virtual IPv4 address on lan0.
    pub fn has_vip(&self, side: Side) -> bool {
        self.has_addr(side, "lan0", &format!("{VIP}/24"))
    }

    /// Whether `side`'s wan1 is administratively up.
    pub fn wan_up(&self, side: Side) -> bool {
        let out = self.router(side).try_run("ip -o link show dev wan1");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_once('<')
            .and_then(|(_, r)| r.split_once('>'))
            .is_some_and(|(flags, _)| flags.split(',').any(|f| f == "UP"))
    }

    /// A dead router: both of `side`'s links go down (what a crash or power loss looks like
    /// from the LAN and the modem).
    pub fn kill_links(&self, side: Side) {
        self.router(side)
            .run("ip link set dev lan0 down; ip link set dev wan1 down");
    }

    /// `side`'s LAN link down (`up` false) or up again.
    pub fn set_lan(&self, side: Side, up: bool) {
        self.router(side).run(&format!(
            "ip link set dev lan0 {}",
            if up { "up" } else { "down" }
        ));
    }

    /// The MAC address of `side`'s lan0.
    pub fn lan_mac(&self, side: Side) -> String {
        self.router(side)
            .run("cat /sys/class/net/lan0/address 2>/dev/null || ip -o link show dev lan0")
            .trim()
            .to_owned()
    }

    /// Cuts the routers' adverts to each other in the switch (both still reach the client): a
    /// split brain, until [`HaLab::heal_adverts`].
    pub fn cut_adverts(&self) {
        self.switch.run(
            "nft -f - <<'EOF'\n\
             table bridge cut {\n\
               chain forward {\n\
                 type filter hook forward priority 0; policy accept;\n\
                 iifname \"p-a\" oifname \"p-b\" ether type ip ip protocol 112 drop\n\
                 iifname \"p-b\" oifname \"p-a\" ether type ip ip protocol 112 drop\n\
               }\n\
             }\n\
             EOF",
        );
    }

    /// Undoes [`HaLab::cut_adverts`].
    pub fn heal_adverts(&self) {
        self.switch.run("nft delete table bridge cut");
    }

    /// The MAC address the client's neighbour table has for the virtual address.
    pub fn client_neighbour(&self) -> Option<String> {
        let out = self
            .client
            .try_run(&format!("ip neigh show {VIP} dev eth0"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_owned)
    }
}

/// Polls `cond` every 5 ms until it holds; panics naming `what` (with `context()`) after
/// `within`. Returns how long it took.
pub fn wait_for(
    what: &str,
    within: Duration,
    mut cond: impl FnMut() -> bool,
    context: impl Fn() -> String,
) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{what}: not within {within:?}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
