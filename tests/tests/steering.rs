//! Steering that is safe on a real router, with real traffic through the namespace lab: traffic
//! the router delivers without a WAN stays local, a port forward is answered by its WAN, and
//! established connections keep their WAN when the verdict changes (a WAN's return, a reload)
//! unless their policy asks to move them back.

use std::{net::SocketAddr, process::Command, time::Duration};

use steer_tests::{
    daemon::steer_bin,
    lab::{
        Lab, Wan,
        tcp::{Conversation, EchoServer},
        udp_via,
    },
    netns::Netns,
    scenario::{Options, Scenario},
};

const SETTLE: Duration = Duration::from_secs(10);

/// Each ISP drops what the router sends it from the other ISP's addresses (BCP38, as real ISPs
/// do): a packet that leaves by the wrong WAN is lost, as it would be in the field.
fn enforce_source_addresses(lab: &Lab) {
    for w in Wan::ALL {
        let (other4, other6) = (Lab::nat_addr_v4(w.other()), Lab::nat_addr_v6(w.other()));
        lab.isp(w).run(&format!(
            "nft add rule inet {t} blackhole iifname down ip saddr {other4} drop && \
             nft add rule inet {t} blackhole iifname down ip6 saddr {other6} drop",
            t = steer_tests::lab::NFT_TABLE
        ));
    }
}

/// How the echo server's answer starts for a connection that left by `w`: its NAT address.
fn seen_via(w: Wan) -> String {
    format!("{}:", Lab::nat_addr_v4(w))
}

fn server_a(port: u16) -> SocketAddr {
    SocketAddr::new(Lab::SERVER_A.into(), port)
}

/// One exchange over `c`; panics with the daemon's log when it fails.
fn exchange(s: &Scenario, c: &mut Conversation, what: &str) -> String {
    c.exchange().unwrap_or_else(|e| {
        panic!(
            "{what}: the connection broke: {e}\ndaemon log:\n{}",
            s.daemon.log_text()
        )
    })
}

#[test]
fn a_second_lan_and_a_routed_subnet_stay_local() {
    let s = Scenario::start("local", &Options::default());
    // A second LAN on the router, with a host that also routes a "VPN" subnet behind it.
    let host = Netns::new("lan2");
    let (router_end, host_end) = (format!("l2r{}", std::process::id() % 10000), "eth0");
    let out = Command::new("ip")
        .args(["link", "add", &router_end, "netns", &s.lab.router.name])
        .args([
            "type", "veth", "peer", "name", host_end, "netns", &host.name,
        ])
        .output()
        .expect("ip");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.lab.router.run(&format!(
        "ip addr add 10.9.0.1/24 dev {router_end} && ip link set {router_end} up && \
         ip route add 172.30.0.0/16 via 10.9.0.10"
    ));
    host.run(
        "ip addr add 10.9.0.10/24 dev eth0 && ip link set eth0 up && \
         ip addr add 172.30.0.1/32 dev lo && ip route add default via 10.9.0.1",
    );
    // steer follows the kernel's routes without a reload.
    for dst in ["10.9.0.10", "172.30.0.1"] {
        wait_local(&s, dst, true);
        let ping = s
            .lab
            .client
            .try_run(&format!("ping -c 3 -i 0.2 -W 1 {dst}"));
        assert!(
            ping.status.success(),
            "ping {dst} from the LAN: {}",
            String::from_utf8_lossy(&ping.stdout)
        );
    }
    let dump = s.steer(&["dump", "local"]);
    assert!(
        dump.contains("10.9.0.0/24") && dump.contains("172.30.0.0/16"),
        "{dump}"
    );
    // The internet is still steered.
    let explained = s.steer(&["explain", &Lab::SERVER_A.to_string()]);
    assert!(explained.contains("wan      wan1"), "{explained}");

    // With `local = "connected"` the connected subnets alone stay local, IPv6 ones too (the
    // kernel gives an IPv6 prefix route universe scope, not link scope as IPv4's).
    s.lab
        .router
        .run(&format!("ip -6 addr add fd09::1/64 dev {router_end} nodad"));
    let text = std::fs::read_to_string(s.work.config()).expect("config");
    s.work.write(
        "steer.toml",
        &text.replacen("[general]\n", "[general]\nlocal = \"connected\"\n", 1),
    );
    s.steer(&["reload"]);
    for dst in ["10.9.0.10", "fd09::10", "fd10::99"] {
        let explained = wait_local(&s, dst, true);
        assert!(explained.contains("a connected subnet"), "{explained}");
    }
    wait_local(&s, "172.30.0.1", false);
    // mDNS, SSDP and DHCP to the limited broadcast are delivered on the link, never a WAN's,
    // whatever `local` says.
    for dst in [
        "224.0.0.251",
        "239.255.255.250",
        "255.255.255.255",
        "ff02::fb",
    ] {
        let explained = s.steer(&["explain", dst]);
        assert!(
            explained.contains("never steered") && explained.contains("multicast or broadcast"),
            "{explained}"
        );
    }
    // Link-local destinations beyond the link's own fe80::/64 route are never forwarded.
    for dst in ["febf::1", "fe80:0:0:1::1", "169.254.10.1"] {
        let explained = s.steer(&["explain", dst]);
        assert!(
            explained.contains("never steered") && explained.contains("link-local"),
            "{explained}"
        );
    }
}

/// Waits until `steer explain dst` says (or, with `local` false, no longer says) that `dst` is
/// never steered; returns the explanation.
fn wait_local(s: &Scenario, dst: &str, local: bool) -> String {
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        let explained = s.steer(&["explain", dst]);
        if explained.contains("never steered") == local {
            return explained;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{dst} local: wanted {local}:\n{explained}\n{}",
            s.daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_main_table_route_through_a_wans_gateway_is_steered_while_that_wan_is_down() {
    let s = Scenario::start("gwroute", &Options::default());
    enforce_source_addresses(&s.lab);
    let server = EchoServer::start(&s.lab.internet, SocketAddr::new(Lab::SERVER_B.into(), 8004));
    // A route the ISP pushed (DHCP option 121) or the owner added: SERVER_B, which the bypass
    // set sends to WAN 2, through WAN 1's gateway. While WAN 1 is up the route is obeyed.
    s.lab.router.run(&format!(
        "ip route add {}/32 via {} dev {}",
        Lab::SERVER_B,
        Lab::gateway_v4(Wan::One),
        Lab::wan_iface(Wan::One)
    ));
    let dst = Lab::SERVER_B.to_string();
    wait_local(&s, &dst, true);
    // Local, never steered: explain names the route the main table takes and its WAN.
    let explained = explain_on_router(&s, &[&dst]);
    assert!(
        explained.contains(&format!(
            "route    main table: {dst} via {} dev {}: WAN wan1 (up)",
            Lab::gateway_v4(Wan::One),
            Lab::wan_iface(Wan::One)
        )),
        "{explained}"
    );
    let mut before = Conversation::open(&s.lab.client, server.addr()).expect("connect");
    assert!(exchange(&s, &mut before, "through the route").starts_with(&seen_via(Wan::One)));
    // The line dies silently: the route stays in the main table, but following it would send
    // the packets into the dead line. They are steered by the set instead.
    s.lab.blackhole_upstream(Wan::One);
    s.wait_wan("wan1", "down", SETTLE);
    let explained = wait_local(&s, &dst, false);
    assert!(explained.contains("wan      wan2"), "{explained}");
    let mut during = Conversation::open(&s.lab.client, server.addr()).expect("connect");
    assert!(exchange(&s, &mut during, "during the outage").starts_with(&seen_via(Wan::Two)));
    assert!(
        s.daemon
            .log_text()
            .contains("main-table routes steered while their WAN is down: 203.0.113.20/32 (wan1)"),
        "{}",
        s.daemon.log_text()
    );
    assert!(
        s.daemon
            .log_text()
            .contains("] wan1: local destinations (never steered): "),
        "{}",
        s.daemon.log_text()
    );
    // Back up: the route is obeyed again.
    s.lab.restore_upstream(Wan::One);
    s.wait_wan("wan1", "up", SETTLE);
    wait_local(&s, &dst, true);
    let mut after = Conversation::open(&s.lab.client, server.addr()).expect("connect");
    assert!(exchange(&s, &mut after, "after the return").starts_with(&seen_via(Wan::One)));
    // A route through a WAN without a gateway (a tunnel's device route) is left local.
    s.lab.router.run(&format!(
        "ip route add 198.18.0.0/24 dev {}",
        Lab::wan_iface(Wan::One)
    ));
    wait_local(&s, "198.18.0.1", true);
    s.lab.blackhole_upstream(Wan::One);
    s.wait_wan("wan1", "down", SETTLE);
    wait_local(&s, &dst, false);
    let explained = s.steer(&["explain", "198.18.0.1"]);
    assert!(explained.contains("never steered"), "{explained}");
}

/// WAN 2's `port` forwarded to `to` (a DNAT rule on the router), and a connection to it from
/// the internet.
fn port_forward_on_wan2(s: &Scenario, port: u16, to: SocketAddr) -> Conversation {
    s.lab.router.run(&format!(
        "nft add table ip pf && \
         nft 'add chain ip pf pre {{ type nat hook prerouting priority dstnat; }}' && \
         nft add rule ip pf pre iifname {} tcp dport {port} dnat to {to}",
        Lab::wan_iface(Wan::Two)
    ));
    let wan2 = SocketAddr::new(Lab::nat_addr_v4(Wan::Two).into(), port);
    Conversation::open(&s.lab.internet, wan2).unwrap_or_else(|e| {
        panic!(
            "connecting to the port forward on WAN 2 port {port}: {e}\n{}",
            s.daemon.log_text()
        )
    })
}

#[test]
fn a_port_forward_on_wan2_is_answered_via_wan2() {
    let s = Scenario::start("portfwd", &Options::default());
    enforce_source_addresses(&s.lab);
    // The LAN client is a server; the router forwards WAN 2's port 8080 to it.
    let at = SocketAddr::new(Lab::CLIENT_V4.into(), 8080);
    let lan_server = EchoServer::start(&s.lab.client, at);
    // Default traffic prefers WAN 1: the replies must still leave by WAN 2.
    let mut c = port_forward_on_wan2(&s, 8080, at);
    for _ in 0..20 {
        exchange(&s, &mut c, "port forward");
    }
    assert_eq!(lan_server.peers().len(), 1);
    // `explain` of a reply names the WAN the connection came in on, beside the verdict a
    // connection the LAN host started would get.
    let peer = lan_server.peers()[0];
    let explained = explain_on_router(&s, &tcp_explain_args(at, peer));
    assert!(
        explained.contains("wan      wan1")
            && explained.contains(
                "this packet answers a connection that came in by wan2 (marked 0x200): its \
                 replies leave by wan2"
            ),
        "{explained}"
    );
    // Without ports: the connections from that host that came in by a WAN, counted.
    let explained = explain_on_router(
        &s,
        &[
            &peer.ip().to_string(),
            "--src",
            &at.ip().to_string(),
            "--proto",
            "tcp",
        ],
    );
    assert!(
        explained.contains("1 connection(s) from") && explained.contains("1 by wan2 (0x200)"),
        "{explained}"
    );
}

/// The LAN behind a bridge with br_netfilter passing bridged packets through netfilter (Docker
/// loads it, and a namespace then starts with `net.bridge.bridge-nf-call-iptables = 1`):
/// netfilter's prerouting sees a LAN packet at the bridge port, before the classifier on the
/// bridge. A port forward on WAN 2 is still answered by WAN 2 (the classifier prefers WAN 1),
/// and a connection made during an outage keeps its WAN when the WAN returns.
#[test]
fn on_a_bridged_lan_with_br_netfilter_connections_keep_their_wan() {
    let brnf = std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables");
    if !brnf.exists() {
        // Built in on some kernels, a module on others.
        let _ = Command::new("modprobe").arg("br_netfilter").status();
    }
    assert!(
        brnf.exists(),
        "this test needs br_netfilter (built in, or modprobe br_netfilter)"
    );
    let s = Scenario::start_on("brnf", &Options::default(), "br-lan", |lab| {
        lab.bridge_lan("br-lan");
        lab.router.run(
            "sysctl -qw net.bridge.bridge-nf-call-iptables=1 \
             net.bridge.bridge-nf-call-ip6tables=1",
        );
    });
    enforce_source_addresses(&s.lab);
    let at = SocketAddr::new(Lab::CLIENT_V4.into(), 8080);
    let _lan_server = EchoServer::start(&s.lab.client, at);
    let mut forwarded = port_forward_on_wan2(&s, 8080, at);
    for _ in 0..10 {
        exchange(&s, &mut forwarded, "port forward");
    }

    connection_made_during_an_outage_keeps_its_wan(&s, 8011);
    let log = s.daemon.log_text();
    assert!(
        log.contains("br_netfilter passes bridged packets through netfilter")
            && !log.contains("cannot tell the classifier"),
        "the daemon says what it does about it:\n{log}"
    );
}

/// Connections that come in through WAN 2 to the router itself (its SSH, its WireGuard
/// server; a port forward to its LAN address) or to a host behind an interface steer does not
/// classify on (a DMZ, forwarded to) are answered by WAN 2, though the main table's default
/// route is WAN 1's: the answers took the main table into the wrong line.
/// The same with the namespace's sysctls off and the bridge's own `nf_call_iptables` on
/// (`ip link set br-lan type bridge nf_call_iptables 1`), which br_netfilter obeys as well.
#[test]
fn a_bridge_with_its_own_nf_call_iptables_is_seen_too() {
    let brnf = std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables");
    assert!(brnf.exists(), "this test needs br_netfilter");
    let s = Scenario::start_on("brnf-own", &Options::default(), "br-lan", |lab| {
        lab.bridge_lan("br-lan");
        lab.router.run(
            "sysctl -qw net.bridge.bridge-nf-call-iptables=0 \
             net.bridge.bridge-nf-call-ip6tables=0 && \
             ip link set br-lan type bridge nf_call_iptables 1",
        );
    });
    enforce_source_addresses(&s.lab);
    s.daemon.wait_log(
        "br_netfilter passes bridged packets through netfilter",
        SETTLE,
    );
    let at = SocketAddr::new(Lab::CLIENT_V4.into(), 8080);
    let _lan_server = EchoServer::start(&s.lab.client, at);
    let mut forwarded = port_forward_on_wan2(&s, 8080, at);
    for _ in 0..10 {
        exchange(&s, &mut forwarded, "port forward");
    }
}

/// `general.lan` listing a bridge and one of its ports: the port's packets would be classified
/// twice (the bridge's answer replacing the port's, so a set with `in` by port does not
/// apply) and counted twice. The daemon says so, status marks the port, and a listed LAN
/// interface that does not exist is shown, not left out; the warning is taken back when the
/// port leaves the bridge.
#[test]
fn a_bridge_listed_with_its_port_is_warned_of_and_a_missing_lan_shown() {
    let lan = Lab::LAN_IFACE;
    let listed = format!("br-lan\", \"{lan}\", \"nolan0");
    let s = Scenario::start_on("brport", &Options::default(), &listed, |lab| {
        lab.bridge_lan("br-lan");
    });
    s.daemon
        .wait_log(&format!("general.lan lists {lan} and br-lan"), SETTLE);
    let status = s.steer(&["status"]);
    assert!(
        status.contains(&format!("{lan} (a port of br-lan, listed too"))
            && status.contains("nolan0 (not classified: no such interface")
            && status.contains("br-lan (tc)"),
        "{status}"
    );
    s.lab.router.run(&format!("ip link set {lan} nomaster"));
    s.daemon
        .wait_log(&format!("{lan}: classified once again"), SETTLE);
    let status = s.steer(&["status"]);
    assert!(status.contains(&format!("{lan} (tc)")), "{status}");
}

#[test]
fn connections_into_wan2_to_the_router_or_a_dmz_are_answered_via_wan2() {
    let s = Scenario::start("own-answers", &Options::default());
    enforce_source_addresses(&s.lab);
    s.lab.set_main_default(Wan::One);
    let wan2_addr = Lab::nat_addr_v4(Wan::Two);
    let own = EchoServer::start(&s.lab.router, SocketAddr::new(wan2_addr.into(), 9000));
    let mut to_router = Conversation::open(&s.lab.internet, own.addr()).unwrap_or_else(|e| {
        panic!(
            "connecting to the router's own service on WAN 2: {e}\n{}",
            s.daemon.log_text()
        )
    });
    for _ in 0..5 {
        exchange(&s, &mut to_router, "the router's own service");
    }
    // A port forward to the router's own LAN address (its answers come from no WAN address).
    let lan_side = SocketAddr::new(Lab::LAN_GATEWAY_V4.into(), 9001);
    let _lan_side_server = EchoServer::start(&s.lab.router, lan_side);
    let mut forwarded_to_router = port_forward_on_wan2(&s, 9002, lan_side);
    for _ in 0..5 {
        exchange(&s, &mut forwarded_to_router, "a port forward to the router");
    }

    let dmz = Netns::new("dmz");
    s.lab.router.run(&format!(
        "ip link add dmz0 type veth peer name dmz1 netns {} && \
         ip addr add 10.77.0.1/24 dev dmz0 && ip link set dmz0 up",
        dmz.name
    ));
    dmz.run(
        "ip addr add 10.77.0.2/24 dev dmz1 && ip link set dmz1 up && \
         ip route add default via 10.77.0.1",
    );
    let at = SocketAddr::new([10, 77, 0, 2].into(), 8081);
    let _dmz_server = EchoServer::start(&dmz, at);
    let mut to_dmz = port_forward_on_wan2(&s, 8081, at);
    for _ in 0..5 {
        exchange(&s, &mut to_dmz, "the DMZ's port forward");
    }
}

/// Strict reverse-path filtering on a WAN drops its answers (its probes fail, it goes down
/// without a word of why): the daemon names the interface and the sysctl to set, at start and
/// at a reload.
#[test]
fn strict_reverse_path_filtering_on_a_wan_is_named() {
    let s = Scenario::start_on("rp-filter", &Options::default(), Lab::LAN_IFACE, |lab| {
        lab.router.run("sysctl -qw net.ipv4.conf.wan2.rp_filter=1");
    });
    let warning = "wan2: strict reverse-path filtering (rp_filter = 1)";
    s.daemon.wait_log(warning, SETTLE);
    assert!(
        !s.daemon.log_text().contains("wan1: strict"),
        "{}",
        s.daemon.log_text()
    );
    let reload = s.steer(&["reload"]);
    assert!(
        reload.contains(warning) && reload.contains("net.ipv4.conf.wan2.rp_filter"),
        "{reload}"
    );
}

#[test]
fn a_connection_made_during_an_outage_keeps_its_wan_when_the_wan_returns() {
    let s = Scenario::start("sticky", &Options::default());
    enforce_source_addresses(&s.lab);
    connection_made_during_an_outage_keeps_its_wan(&s, 8001);
}

/// A connection made while WAN 1 is cut leaves by WAN 2 and stays there when WAN 1 returns
/// (its address unchanged), while new connections take WAN 1 again.
fn connection_made_during_an_outage_keeps_its_wan(s: &Scenario, port: u16) {
    let server = EchoServer::start(&s.lab.internet, server_a(port));
    s.lab.cut_carrier(Wan::One);
    s.wait_wan("wan1", "down", SETTLE);
    let mut during = Conversation::open(&s.lab.client, server.addr()).expect("connect");
    assert!(exchange(s, &mut during, "during the outage").starts_with(&seen_via(Wan::Two)));
    s.lab.restore_carrier(Wan::One);
    s.wait_wan("wan1", "up", SETTLE);
    let mut after = Conversation::open(&s.lab.client, server.addr()).expect("connect");
    assert!(exchange(s, &mut after, "new connection").starts_with(&seen_via(Wan::One)));
    for _ in 0..20 {
        let seen = exchange(s, &mut during, "after the return");
        assert!(seen.starts_with(&seen_via(Wan::Two)), "{seen}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.peers().len(), 2, "no connection was made again");
    // `explain` of that connection's packets names the WAN they keep, beside the new verdict.
    let (client, server) = (during.local_addr(), server.addr());
    let explained = explain_on_router(s, &tcp_explain_args(client, server));
    assert!(
        explained.contains("wan      wan1")
            && explained.contains("an existing connection is marked 0x200 (wan2)"),
        "{explained}"
    );
    // From another namespace than the daemon's, its conntrack cannot be read: said, with how.
    let args = tcp_explain_args(client, server);
    let mut explain = vec!["explain"];
    explain.extend(args.iter().map(String::as_str));
    let elsewhere = s.steer(&explain);
    assert!(
        elsewhere.contains("held     connections were not checked: explain runs in another")
            && elsewhere.contains(&format!(
                "`ip netns exec {} steer explain",
                s.lab.router.name
            ))
            && !elsewhere.contains("existing connection"),
        "{elsewhere}"
    );
    let new_one = after.local_addr();
    let explained = explain_on_router(s, &tcp_explain_args(new_one, server));
    assert!(
        explained.contains("an existing connection, marked 0x100 (wan1) as this verdict"),
        "{explained}"
    );
}

/// `steer explain ARGS` run where the daemon runs, as on a router: it reads that namespace's
/// connection tracking.
fn explain_on_router<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(
    s: &Scenario,
    args: &[S],
) -> String {
    let out = steer_tests::daemon::steer_in(&s.lab.router)
        .arg("explain")
        .args(args)
        .arg("-c")
        .arg(s.work.config())
        .output()
        .expect("run steer");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "steer explain {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn a_reload_that_moves_a_destination_moves_no_live_connection() {
    let s = Scenario::start("reload-sticky", &Options::default());
    enforce_source_addresses(&s.lab);
    let server = EchoServer::start(&s.lab.internet, server_a(8002));
    let mut live = Conversation::open(&s.lab.client, server.addr()).expect("connect");
    assert!(exchange(&s, &mut live, "before").starts_with(&seen_via(Wan::One)));
    // A new set sends server A to WAN 2.
    let config = std::fs::read_to_string(s.work.config()).expect("config");
    let moved = config.replace(
        "[default]",
        &format!(
            "[[set]]\nname = \"moved\"\npolicy = \"wan2-first\"\nprefixes = [\"{}/32\"]\n\n[default]",
            Lab::SERVER_A
        ),
    );
    s.work.write("steer.toml", &moved);
    s.steer(&["reload"]);
    let mut fresh = Conversation::open(&s.lab.client, server.addr()).expect("connect");
    assert!(exchange(&s, &mut fresh, "new connection").starts_with(&seen_via(Wan::Two)));
    for _ in 0..20 {
        let seen = exchange(&s, &mut live, "after the reload");
        assert!(seen.starts_with(&seen_via(Wan::One)), "{seen}");
    }
}

/// A connection that started on the main table (a set with `policy = "main"`) stays there when
/// a reload gives its destination a WAN: its connection mark says so, and its packets lose the
/// WAN mark the classifier gives them now. A new connection takes the WAN.
#[test]
fn a_connection_that_started_on_the_main_table_keeps_it_through_a_reload() {
    let unsteered = format!(
        "[[set]]\nname = \"unsteered\"\npolicy = \"main\"\nprefixes = [\"{}/32\"]\n",
        Lab::SERVER_A
    );
    let o = Options {
        extra_sets: unsteered.clone(),
        ..Options::default()
    };
    let s = Scenario::start("main-kept", &o);
    enforce_source_addresses(&s.lab);
    // The main table leaves by WAN 2; the default policy prefers WAN 1.
    s.lab.set_main_default(Wan::Two);
    let server = EchoServer::start(&s.lab.internet, server_a(8005));
    let mut live = Conversation::open(&s.lab.client, server.addr()).expect("connect");
    assert!(exchange(&s, &mut live, "before").starts_with(&seen_via(Wan::Two)));
    // A one-way UDP flow too (its entry never sees a reply): its NAT binding is WAN 2's.
    let flow = OneWayUdp::open(&s.lab, server_a(8008));
    assert_eq!(flow.sent_via(), Lab::nat_addr_v4(Wan::Two), "before");
    let explained = explain_on_router(&s, &explain_args(&live, server.addr()));
    assert!(
        explained.contains("held     an existing connection, on the main table as this verdict"),
        "{explained}"
    );

    let config = std::fs::read_to_string(s.work.config()).expect("config");
    s.work.write("steer.toml", &config.replace(&unsteered, ""));
    s.steer(&["reload"]);
    let mut fresh = Conversation::open(&s.lab.client, server.addr()).expect("connect");
    assert!(exchange(&s, &mut fresh, "new connection").starts_with(&seen_via(Wan::One)));
    for _ in 0..20 {
        let seen = exchange(&s, &mut live, "after the reload");
        assert!(seen.starts_with(&seen_via(Wan::Two)), "{seen}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.peers().len(), 2, "no connection was made again");
    for _ in 0..5 {
        assert_eq!(
            flow.sent_via(),
            Lab::nat_addr_v4(Wan::Two),
            "after the reload"
        );
    }
    let explained = explain_on_router(&s, &explain_args(&live, server.addr()));
    assert!(
        explained.contains("wan      wan1")
            && explained.contains("an existing connection started on the main table"),
        "{explained}"
    );
}

/// A UDP flow from the client that the server never answers: one socket each side.
struct OneWayUdp {
    client: std::net::UdpSocket,
    server: std::net::UdpSocket,
}

impl OneWayUdp {
    fn open(lab: &Lab, to: SocketAddr) -> OneWayUdp {
        let server = lab
            .internet
            .enter(|| std::net::UdpSocket::bind(to).expect("bind"));
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let client = lab.client.enter(|| {
            let c = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
            c.connect(to).expect("connect");
            c
        });
        OneWayUdp { client, server }
    }

    /// Sends one datagram; the address it reached the server from (the WAN's NAT address).
    fn sent_via(&self) -> std::net::IpAddr {
        self.client.send(b"x").expect("send");
        let mut buf = [0u8; 16];
        let (_, from) = self
            .server
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("the datagram did not arrive: {e}"));
        from.ip()
    }
}

/// A policy whose only WAN is down sends new connections to the main table
/// (`last_resort = "default"`). When the WAN returns, such a connection stays on the main table
/// with `failback = "keep"`, and is cut (so it starts over on the WAN) with `"move"`.
#[test]
fn a_connection_sent_to_the_main_table_by_an_outage_keeps_it_unless_failback_moves_it() {
    let sets = format!(
        "[[policy]]\nname = \"wan1-else-main\"\nmembers = [{{ wan = \"wan1\" }}]\n\
         last_resort = \"default\"\n\n\
         [[policy]]\nname = \"wan1-else-main-move\"\nmembers = [{{ wan = \"wan1\" }}]\n\
         last_resort = \"default\"\nfailback = \"move\"\n\n\
         [[set]]\nname = \"moving\"\npolicy = \"wan1-else-main-move\"\nproto = [\"tcp\"]\n\
         dports = [\"8007\"]\n\n\
         [[set]]\nname = \"kept\"\npolicy = \"wan1-else-main\"\nprefixes = [\"{}/32\"]\n",
        Lab::SERVER_A
    );
    let o = Options {
        extra_sets: sets,
        ..Options::default()
    };
    let s = Scenario::start("main-outage", &o);
    enforce_source_addresses(&s.lab);
    // A connection whose entry is cut dies (see the failback = "move" test).
    s.lab
        .router
        .run("sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0");
    s.lab.set_main_default(Wan::Two);
    let (kept_server, moved_server) = (
        EchoServer::start(&s.lab.internet, server_a(8006)),
        EchoServer::start(&s.lab.internet, server_a(8007)),
    );
    s.lab.cut_carrier(Wan::One);
    s.wait_wan("wan1", "down", SETTLE);
    let mut kept = Conversation::open(&s.lab.client, kept_server.addr()).expect("connect");
    assert!(exchange(&s, &mut kept, "during").starts_with(&seen_via(Wan::Two)));
    let mut moved = Conversation::open(&s.lab.client, moved_server.addr()).expect("connect");
    assert!(exchange(&s, &mut moved, "during").starts_with(&seen_via(Wan::Two)));
    s.lab.restore_carrier(Wan::One);
    s.wait_wan("wan1", "up", SETTLE);
    let mut after = Conversation::open(&s.lab.client, kept_server.addr()).expect("connect");
    assert!(exchange(&s, &mut after, "new connection").starts_with(&seen_via(Wan::One)));
    for _ in 0..20 {
        let seen = exchange(&s, &mut kept, "after the return");
        assert!(seen.starts_with(&seen_via(Wan::Two)), "{seen}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(kept_server.peers().len(), 2, "no connection was made again");
    let explained = explain_on_router(&s, &explain_args(&kept, kept_server.addr()));
    assert!(
        explained.contains("an existing connection started on the main table"),
        "{explained}"
    );

    // The one of the policy that moves flows back is cut within a few exchanges.
    let broke = leaves_wan2_within(&mut moved, SETTLE);
    assert!(
        broke,
        "the connection failback = \"move\" should cut survived:\n{}",
        s.daemon.log_text()
    );
    s.daemon.wait_log("failback = \"move\" cut", SETTLE);
    let mut again = Conversation::open(&s.lab.client, moved_server.addr()).expect("connect");
    assert!(exchange(&s, &mut again, "reconnected").starts_with(&seen_via(Wan::One)));
}

/// Whether `c` breaks or its exchanges stop going by WAN 2 within `within` (a connection
/// being cut: its entry gone, the next segment leaves by another WAN and is reset).
fn leaves_wan2_within(c: &mut Conversation, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        match c.exchange() {
            Err(_) => return true,
            Ok(seen) if !seen.starts_with(&seen_via(Wan::Two)) => return true,
            Ok(_) if std::time::Instant::now() > deadline => return false,
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// `steer explain`'s arguments for the TCP packets of `c` to `server`.
fn explain_args(c: &Conversation, server: SocketAddr) -> Vec<String> {
    tcp_explain_args(c.local_addr(), server)
}

/// `steer explain`'s arguments for a TCP packet from `client` to `server`.
fn tcp_explain_args(client: SocketAddr, server: SocketAddr) -> Vec<String> {
    [
        server.ip().to_string(),
        "--src".into(),
        client.ip().to_string(),
        "--proto".into(),
        "tcp".into(),
        "--sport".into(),
        client.port().to_string(),
        "--dport".into(),
        server.port().to_string(),
    ]
    .into()
}

#[test]
fn failback_move_cuts_the_moved_connections_when_the_wan_returns() {
    let s = Scenario::start("failback-move", &Options::default());
    enforce_source_addresses(&s.lab);
    // A connection whose entry is cut dies (with the default, conntrack would take it up
    // again mid-stream and hide a wrong cut).
    s.lab
        .router
        .run("sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0");
    let config = std::fs::read_to_string(s.work.config()).expect("config");
    // A port rule sends port 8004 to wan2 whatever the default says.
    let port_rule = "[[set]]\nname = \"port-8004\"\npolicy = \"wan2-first\"\nproto = [\"tcp\"]\ndports = [\"8004\"]\n\n[default]";
    let moving = config
        .replace(
            "name = \"wan1-first\"\n",
            "name = \"wan1-first\"\nfailback = \"move\"\n",
        )
        .replacen("[default]", port_rule, 1);
    assert_ne!(moving, config);
    s.work.write("steer.toml", &moving);
    s.steer(&["reload"]);
    let server = EchoServer::start(&s.lab.internet, server_a(8003));
    // On wan2 from its first packet, by its own rule: the outage never moved it, so the
    // failback leaves it alone.
    let ruled_server = EchoServer::start(&s.lab.internet, server_a(8004));
    let mut ruled = Conversation::open(&s.lab.client, ruled_server.addr()).expect("connect");
    assert!(exchange(&s, &mut ruled, "port rule").starts_with(&seen_via(Wan::Two)));
    s.lab.cut_carrier(Wan::One);
    s.wait_wan("wan1", "down", SETTLE);
    let mut during = Conversation::open(&s.lab.client, server.addr()).expect("connect");
    assert!(exchange(&s, &mut during, "during").starts_with(&seen_via(Wan::Two)));
    s.lab.restore_carrier(Wan::One);
    s.wait_wan("wan1", "up", SETTLE);
    // The moved connection is cut: within a few exchanges it breaks (its entry is gone, the
    // next segment leaves by WAN 1 and the server resets it).
    let broke = leaves_wan2_within(&mut during, SETTLE);
    assert!(
        broke,
        "the moved connection survived:\n{}",
        s.daemon.log_text()
    );
    // The connection can break (a reset) a moment before the daemon's log line is written.
    s.daemon.wait_log("failback = \"move\" cut", SETTLE);
    let mut again = Conversation::open(&s.lab.client, server.addr()).expect("connect");
    assert!(exchange(&s, &mut again, "reconnected").starts_with(&seen_via(Wan::One)));
    for i in 0..5 {
        let seen = ruled.exchange().unwrap_or_else(|e| {
            panic!(
                "the port rule's connection, exchange {i}: {e}\n{}",
                s.daemon.log_text()
            )
        });
        assert!(seen.starts_with(&seen_via(Wan::Two)), "{seen}");
    }
}

#[test]
fn explain_names_the_local_reason_the_balanced_share_and_what_a_source_set_beats() {
    let extra = "[[policy]]\nname = \"even\"\nmembers = [{ wan = \"wan1\" }, { wan = \"wan2\" }]\n";
    let kids = format!(
        "[[set]]\nname = \"kids\"\npolicy = \"wan1-first\"\nmatch = \"src\"\nprefixes = [\"{}/32\"]\n",
        Lab::CLIENT_V4
    );
    let o = Options {
        extra_sets: format!(
            "{extra}\n[[set]]\nname = \"spread\"\npolicy = \"even\"\nprefixes = [\"198.51.100.0/24\"]\n{kids}"
        ),
        ..Options::default()
    };
    let s = Scenario::start("shares", &o);
    let status = s.steer(&["status"]);
    assert!(
        status.contains("target  50.0%"),
        "a 1:1 policy shows its target shares:\n{status}"
    );
    // Measured shares count the policy's packets since its WANs last changed: 400 flows to
    // the balanced set split about evenly, and a WAN's outage and return start them over.
    let shares = |s: &Scenario| -> Vec<(u64, u64, f64)> {
        let st = s.status();
        let even = st["policies"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == "even"))
            .unwrap_or_else(|| panic!("policy even in {st}"))
            .clone();
        even["shares"]
            .as_array()
            .expect("shares")
            .iter()
            .map(|sh| {
                (
                    sh["measured_packets"].as_u64().expect("packets"),
                    sh["since_seconds"].as_u64().expect("seconds"),
                    sh["measured_percent"].as_f64().expect("percent"),
                )
            })
            .collect()
    };
    // From a second address of the client: its first is in the source set `kids`.
    s.lab.client.run(&format!(
        "ip addr add 10.10.0.3/24 dev {}",
        Lab::CLIENT_IFACE
    ));
    s.lab.client.enter(|| {
        let sock = std::net::UdpSocket::bind("10.10.0.3:0").expect("bind");
        for i in 0..400u16 {
            let _ = sock.send_to(b"x", ("198.51.100.7", 20000 + i));
        }
    });
    let before = shares(&s);
    let total: u64 = before.iter().map(|(p, _, _)| p).sum();
    assert!(
        total >= 400,
        "{before:?}\n{}",
        s.steer(&["dump", "counters"])
    );
    assert!(
        before.iter().all(|(_, _, pct)| (25.0..=75.0).contains(pct)),
        "a 1:1 policy's 400 flows: {before:?}"
    );
    s.steer(&["wan", "wan2", "down"]);
    s.steer(&["wan", "wan2", "auto"]);
    let deadline = std::time::Instant::now() + SETTLE;
    let after = loop {
        let now = shares(&s);
        if now.len() == 2 || std::time::Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(after.len(), 2, "balanced again: {after:?}");
    assert!(
        after.iter().all(|(p, secs, _)| *p == 0 && *secs <= 10),
        "counted from the return: {after:?}"
    );
    // explain names the balanced table's slot a flow's hash picked: the slot's WAN is the
    // one the classifier's mark says (the same hash in userspace as in the kernel), and
    // flows land on both WANs.
    let mut seen = std::collections::BTreeSet::new();
    for sport in 41000..41012u16 {
        let e: serde_json::Value = serde_json::from_str(&s.steer(&[
            "explain",
            "198.51.100.7",
            "--src",
            "10.10.0.3",
            "--sport",
            &sport.to_string(),
            "--json",
        ]))
        .expect("explain --json");
        let (slot_wan, wan) = (e["balance"]["wan"].as_str(), e["wan"].as_str());
        assert!(slot_wan.is_some() && slot_wan == wan, "{e}");
        seen.insert(wan.unwrap_or_default().to_owned());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    let own = s.steer(&["explain", &Lab::LAN_GATEWAY_V4.to_string()]);
    assert!(own.contains("an address of this router"), "{own}");
    let out = Command::new(steer_bin())
        .args(["explain", "10.10.0.99", "--pin-dir"])
        .arg(&s.work.pin_dir)
        .output()
        .expect("steer explain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("a connected subnet"), "{text}");

    // The client's source set decides before the bypass set holding the destination: explain
    // names the bypass set and why it lost, and a real packet goes where explain says.
    let (b, client) = (Lab::SERVER_B.to_string(), Lab::CLIENT_V4.to_string());
    let text = s.steer(&["explain", &b, "--src", &client]);
    assert!(text.contains("matched  rule"), "{text}");
    assert!(
        text.contains(&format!(
            "also in {b}/32 of set bypass (source sets come first)"
        )),
        "{text}"
    );
    let e: serde_json::Value =
        serde_json::from_str(&s.steer(&["explain", &b, "--src", &client, "--json"]))
            .expect("explain --json");
    assert_eq!(e["set"], "kids", "{e}");
    assert_eq!(e["shadowed"][0]["set"], "bypass", "{e}");
    assert_eq!(e["shadowed"][0]["reason"], "source first", "{e}");
    assert_eq!(
        e["wan"].as_str().map(|w| w.starts_with("wan1")),
        Some(true),
        "{e}"
    );
    let got = udp_via(&s.lab, Lab::SERVER_B.into(), 7301, 20);
    assert!(got[0] >= 10 && got[1] == 0, "by wan1/wan2: {got:?}");
    // A local destination is never steered, whatever source set the sender is in: said.
    let local = s.steer(&["explain", "10.10.0.99", "--src", &client]);
    assert!(
        local.contains(&format!(
            "also in {client}/32 of set kids (a local destination is never steered)"
        )),
        "{local}"
    );
    // Another LAN host is in no source set: the bypass set decides, and nothing is beaten.
    let e: serde_json::Value =
        serde_json::from_str(&s.steer(&["explain", &b, "--src", "10.10.0.3", "--json"]))
            .expect("explain --json");
    assert_eq!(e["set"], "bypass", "{e}");
    assert_eq!(e["shadowed"], serde_json::json!([]), "{e}");
}
