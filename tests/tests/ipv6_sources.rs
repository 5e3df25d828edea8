//! Where each WAN's IPv6 prefix comes from, and source-specific routing (issue 21), with real
//! traffic through the namespace lab in its delegated-prefix form
//! ([`Lab::with_delegated_prefixes`]: ISP N routes 2001:db8:N::/56 to the router and drops,
//! and counts, what the router sends it from anywhere else).
//!
//! - `prefix6 = "auto"` (npt): the test installs in the router what a DHCPv6 client installs
//!   (`unreachable PREFIX dev lo proto dhcp`; netifd's source-specific default) or calls what
//!   its hook calls (`steer wan NAME prefix6 PREFIX`), and steer must follow: status, the
//!   translation, where traffic goes.
//! - `mode = "source"`: the router's LAN holds a /64 of each delegated prefix, as a DHCPv6-PD
//!   client adds them; dnsmasq advertises them (router advertisements built from the LAN's
//!   addresses); the client takes an address in each by SLAAC. Each source leaves by the WAN
//!   whose prefix holds it, and a dead WAN's prefix is deprecated on the LAN, so the client's
//!   new connections take the other prefix.

use std::{
    net::{IpAddr, Ipv6Addr},
    process::Output,
    time::{Duration, Instant},
};

use steer::{
    control::{Request, client},
    prefix::Prefix,
};
use steer_tests::{
    daemon::{Daemon, steer_in},
    dns::Dnsmasq,
    ipv6::{
        N, SETTLE, a6, assert_all_from, assert_no_foreign_source_reached_an_isp, assert_udp_from,
        b6, client_in, prefix, router_state, start, text,
    },
    lab::{ISP_DOWN, Lab, Wan, udp_arrivals, udp_arrivals_from},
    scenario::{Scenario, renamed},
    service::Service,
};

/// Bound on waiting for the client to act on a router advertisement: dnsmasq advertises
/// every [`RA_INTERVAL`] seconds at most, so this is several intervals.
const RA_WAIT: Duration = Duration::from_secs(30);
/// dnsmasq's interval between unsolicited router advertisements (`--ra-param`), seconds.
const RA_INTERVAL: u32 = 4;
/// The `[ipv6]` section of the npt tests (the client is fd10::2/64).
const NPT: &str = "[ipv6]\nmode = \"npt\"\nlan_prefix = \"fd10::/64\"\n";
/// The `[ipv6]` section of the source-specific routing tests.
const SOURCE: &str = "[ipv6]\nmode = \"source\"\n";

/// The first /64 of `p` (what a DHCPv6-PD client puts on the LAN), and the router's address
/// there (::1).
fn lan_net(p: Prefix) -> (Prefix, Ipv6Addr) {
    let IpAddr::V6(net) = p.addr() else {
        panic!("{p} is not IPv6")
    };
    let router = Ipv6Addr::from(u128::from(net) | 1);
    (Prefix::new(net.into(), 64).expect("a /64"), router)
}

/// `steer ARGS -c <config>` run in the router's namespace, as a DHCPv6 client's hook or the
/// administrator there runs it (the configuration names the daemon's socket and pins).
fn steer_on_router(s: &Scenario, args: &[&str]) -> Output {
    steer_in(&s.lab.router)
        .args(args)
        .arg("-c")
        .arg(s.work.config())
        .output()
        .expect("run steer")
}

/// `ipv6.wans[]` of `wan` in a status document.
fn source_status<'a>(st: &'a serde_json::Value, wan: &str) -> &'a serde_json::Value {
    st["ipv6"]["wans"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["wan"] == wan)
        .unwrap_or(&serde_json::Value::Null)
}

/// Waits until `steer status` gives `wan` the prefix `want` (`None`: none) with an origin
/// containing `origin`; returns that origin.
fn wait_prefix6(s: &Scenario, wan: &str, want: Option<Prefix>, origin: &str) -> String {
    let want = want.map_or(serde_json::Value::Null, |p| p.to_string().into());
    let what = format!("{wan}: prefix6 {want} with an origin that says `{origin}`");
    s.wait_until(&what, SETTLE, |st| {
        let w = source_status(st, wan);
        w["prefix6"] == want && w["origin"].as_str().is_some_and(|o| o.contains(origin))
    });
    source_status(&s.status(), wan)["origin"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Each WAN's flows leave in its own prefix: one to B by wan2 from `p2` (port `port`), one to A
/// by wan1 from `p1` (`port + 1`); and no foreign source reached an ISP.
fn assert_each_wan_in_its_prefix(s: &Scenario, (p1, p2): (Prefix, Prefix), port: u16, when: &str) {
    assert_udp_from(s, b6(), port, Wan::Two, client_in(p2));
    assert_udp_from(s, a6(), port + 1, Wan::One, client_in(p1));
    assert_no_foreign_source_reached_an_isp(s, when);
}

/// Adds (`add`) or deletes (`del`) the route a DHCPv6 client holds for a delegated prefix
/// (dhcpcd's and systemd-networkd's: `unreachable PREFIX dev lo proto dhcp`).
fn delegated_route(s: &Scenario, op: &str, p: Prefix) {
    s.lab.router.run(&format!(
        "ip -6 route {op} unreachable {p} dev lo proto dhcp"
    ));
}

#[test]
fn an_auto_prefix_is_the_only_delegated_one_left_and_follows_when_isp2_renumbers() {
    let s = start("auto-one", NPT, ["2001:db8:1::/56", "auto"]);
    let (p1, p2) = (s.lab.delegation(Wan::One), s.lab.delegation(Wan::Two));

    // No DHCPv6 lease yet: wan2 waits for its prefix and carries no IPv6, so what the bypass
    // set would send by wan2 leaves by wan1, in wan1's prefix.
    let origin = wait_prefix6(&s, "wan2", None, "waiting");
    assert!(origin.starts_with("waiting"), "{origin}");
    // `explain` says what wan2's IPv6 waits for: its prefix (its gateway is there).
    let explained = s.steer(&["explain", &b6().to_string()]);
    let health = explained
        .lines()
        .find(|l| l.contains("IPv6 wan2:"))
        .unwrap_or_else(|| panic!("no health line of wan2 in\n{explained}"));
    assert!(
        health.contains("no delegated prefix") && health.contains("(prefix6); gateway via"),
        "{explained}"
    );
    assert_udp_from(&s, b6(), 7301, Wan::One, client_in(p1));
    assert_no_foreign_source_reached_an_isp(&s, "while wan2 waits for its prefix");

    // The DHCPv6 client's lease: wan2's prefix is the only delegated one wan1 does not hold.
    delegated_route(&s, "add", p2);
    let origin = wait_prefix6(&s, "wan2", Some(p2), "only delegated prefix");
    assert!(origin.starts_with("learned"), "{origin}");
    assert_each_wan_in_its_prefix(&s, (p1, p2), 7302, "after wan2 learned its prefix");

    // ISP 2 renumbers; the DHCPv6 client replaces its route.
    let new = prefix("2001:db8:22::/56");
    s.lab.delegate(Wan::Two, new);
    delegated_route(&s, "del", p2);
    delegated_route(&s, "add", new);
    wait_prefix6(&s, "wan2", Some(new), "only delegated prefix");
    assert_each_wan_in_its_prefix(&s, (p1, new), 7304, "after ISP 2 renumbered");
}

#[test]
fn two_delegated_prefixes_wait_for_the_hook_which_names_one_and_the_other_is_left_for_wan1() {
    let s = start("auto-two", NPT, ["auto", "auto"]);
    let (p1, p2) = (s.lab.delegation(Wan::One), s.lab.delegation(Wan::Two));
    delegated_route(&s, "add", p1);
    delegated_route(&s, "add", p2);
    // Nothing says which line each came by.
    for wan in ["wan1", "wan2"] {
        let hint = format!("`steer wan {wan} prefix6 PREFIX`");
        wait_prefix6(&s, wan, None, &hint);
    }
    // Neither WAN carries IPv6 meanwhile: nothing leaves, and no untranslated source reaches
    // an ISP.
    for (server, port) in [(a6(), 7311), (b6(), 7312)] {
        let got = udp_arrivals(&s.lab, server, port, N);
        assert!(
            got.is_empty(),
            "IPv6 left while no WAN knows its prefix: {got:?}\n{}",
            router_state(&s)
        );
    }
    assert_no_foreign_source_reached_an_isp(&s, "while both WANs wait");

    // Not an IPv6 prefix: refused by the CLI, and by the daemon when asked directly.
    let out = steer_on_router(&s, &["wan", "wan2", "prefix6", "10.0.0.0/8"]);
    assert!(
        !out.status.success() && text(&out).contains("IPv4"),
        "steer wan wan2 prefix6 10.0.0.0/8: {:?}\n{}",
        out.status,
        text(&out)
    );
    let request = Request::Prefix6 {
        name: "wan2".into(),
        prefix: Some("10.0.0.0/8".into()),
    };
    let answer = client::call(&s.work.socket, &request, SETTLE).expect("the daemon answers");
    assert!(
        !answer.ok && answer.error.as_deref().is_some_and(|e| e.contains("IPv4")),
        "the daemon's answer to prefix6 10.0.0.0/8: {answer:?}"
    );
    for wan in ["wan1", "wan2"] {
        let st = s.status();
        let w = source_status(&st, wan);
        assert!(
            w["prefix6"].is_null()
                && w["origin"]
                    .as_str()
                    .is_some_and(|o| o.contains(&format!("`steer wan {wan} prefix6 PREFIX`"))),
            "{wan} after a refused prefix6: {w}"
        );
    }

    // The hook of wan2's DHCPv6 client.
    let out = steer_on_router(&s, &["wan", "wan2", "prefix6", &p2.to_string()]);
    assert!(out.status.success(), "{}\n{}", text(&out), router_state(&s));
    wait_prefix6(&s, "wan2", Some(p2), "set by `steer wan wan2 prefix6`");
    wait_prefix6(&s, "wan1", Some(p1), "only delegated prefix");
    assert_each_wan_in_its_prefix(&s, (p1, p2), 7314, "after the hook");
}

#[test]
fn a_netifd_source_specific_default_names_the_prefix_of_its_wan() {
    let s = start("auto-netifd", NPT, ["auto", "auto"]);
    let (p1, p2) = (s.lab.delegation(Wan::One), s.lab.delegation(Wan::Two));
    // wan1 by dhcpcd, wan2 by netifd: its delegated prefix and a default from it through
    // wan2. Without the default both would wait for a hook.
    delegated_route(&s, "add", p1);
    s.lab.router.run(&format!(
        "ip -6 route add unreachable {p2} dev lo proto static metric 2147483647 && \
         ip -6 route add default from {p2} via {gw} dev {dev} proto static metric 512",
        gw = Lab::gateway_v6(Wan::Two),
        dev = Lab::wan_iface(Wan::Two),
    ));
    let origin = wait_prefix6(
        &s,
        "wan2",
        Some(p2),
        &format!("learned: default from {p2} via"),
    );
    assert!(origin.contains(Lab::wan_iface(Wan::Two)), "{origin}");
    wait_prefix6(&s, "wan1", Some(p1), "only delegated prefix");
    assert_each_wan_in_its_prefix(&s, (p1, p2), 7321, "after learning both prefixes");
}

/// One global address of an interface (`ip -j -6 addr`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Addr6 {
    addr: Ipv6Addr,
    /// Seconds; `None`: forever.
    preferred: Option<u64>,
    deprecated: bool,
    /// Made by the kernel from a router advertisement (SLAAC).
    dynamic: bool,
}

/// The global IPv6 addresses of `dev` in `ns`.
fn addresses(ns: &steer_tests::netns::Netns, dev: &str) -> Vec<Addr6> {
    let out = ns.run(&format!("ip -j -6 addr show dev {dev} scope global"));
    let json: serde_json::Value = serde_json::from_str(&out).expect("ip -j");
    json.as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().into_iter().flatten())
        .filter_map(|i| {
            Some(Addr6 {
                addr: i["local"].as_str()?.parse().ok()?,
                preferred: i["preferred_life_time"]
                    .as_u64()
                    .filter(|&p| p < u64::from(u32::MAX)),
                deprecated: i["deprecated"].as_bool() == Some(true),
                dynamic: i["dynamic"].as_bool() == Some(true),
            })
        })
        .collect()
}

/// Waits until the address of `dev` in `ns` that `pick` finds satisfies `cond`; returns it.
fn wait_address(
    s: &Scenario,
    ns: &steer_tests::netns::Netns,
    dev: &str,
    what: &str,
    within: Duration,
    pick: impl Fn(&Addr6) -> bool,
    cond: impl Fn(&Addr6) -> bool,
) -> Addr6 {
    let deadline = Instant::now() + within;
    loop {
        let all = addresses(ns, dev);
        if let Some(a) = all.iter().find(|a| pick(a) && cond(a)) {
            return a.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}; {dev} in {} has {all:?}\n{}",
            ns.name,
            router_state(s)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `a` is deprecated: preferred lifetime 0, flagged so.
fn deprecated(a: &Addr6) -> bool {
    a.preferred == Some(0) && a.deprecated
}

/// The source-specific routing lab: steer with `mode = "source"` and each WAN's delegated
/// prefix, the router's LAN holding a /64 of each (with the lifetimes of a lease) and dnsmasq
/// advertising them, and the client's SLAAC address in each, in WAN order.
struct SourceLab {
    s: Scenario,
    _ra: Dnsmasq,
    slaac: [Ipv6Addr; 2],
}

fn start_source(tag: &str) -> SourceLab {
    let (d1, d2) = (
        Lab::initial_delegation(Wan::One),
        Lab::initial_delegation(Wan::Two),
    );
    let s = start(tag, SOURCE, [&d1.to_string(), &d2.to_string()]);
    let lan = Lab::LAN_IFACE;
    for w in Wan::ALL {
        let (_, router) = lan_net(s.lab.delegation(w));
        s.lab.router.run(&format!(
            "ip -6 addr add {router}/64 dev {lan} valid_lft 7200 preferred_lft 3600 nodad"
        ));
    }
    let cli = Lab::CLIENT_IFACE;
    s.lab.client.run(&format!(
        "sysctl -qw net.ipv6.conf.{cli}.forwarding=0 net.ipv6.conf.{cli}.accept_ra=1 \
         net.ipv6.conf.{cli}.autoconf=1"
    ));
    // Router advertisements of the prefixes of lan0's addresses, with their lifetimes; DNS
    // only on a loopback port nobody asks.
    let ra = Dnsmasq::start(
        &s.lab.router,
        &s.work.dir,
        "127.0.0.1:5399".parse().expect("address"),
        &[
            format!("--interface={lan}"),
            "--enable-ra".into(),
            format!("--dhcp-range=::,constructor:{lan},ra-only,64"),
            format!("--ra-param={lan},{RA_INTERVAL},600"),
        ],
    );
    let slaac = Wan::ALL.map(|w| {
        let (net, _) = lan_net(s.lab.delegation(w));
        wait_address(
            &s,
            &s.lab.client,
            cli,
            &format!("the client's SLAAC address in {net}"),
            RA_WAIT,
            |a| net.contains(a.addr.into()) && a.dynamic,
            |a| !deprecated(a),
        )
        .addr
    });
    SourceLab { s, _ra: ra, slaac }
}

#[test]
fn source_specific_routing_sends_each_source_by_the_wan_whose_prefix_holds_it() {
    let SourceLab { s, _ra, slaac } = start_source("source");
    // The default destination (wan1's) from the address in wan2's prefix: by wan2.
    let got = udp_arrivals_from(&s.lab, slaac[1].into(), a6(), 7401, N);
    assert_all_from(
        &s,
        &got,
        Wan::Two,
        slaac[1],
        "from wan2's prefix to wan1's destination",
    );
    // The bypass destination (wan2's) from the address in wan1's prefix: by wan1.
    let got = udp_arrivals_from(&s.lab, slaac[0].into(), b6(), 7402, N);
    assert_all_from(
        &s,
        &got,
        Wan::One,
        slaac[0],
        "from wan1's prefix to wan2's destination",
    );
    // And each where the set sends it, from the WAN's own prefix.
    let got = udp_arrivals_from(&s.lab, slaac[0].into(), a6(), 7403, N);
    assert_all_from(
        &s,
        &got,
        Wan::One,
        slaac[0],
        "from wan1's prefix to wan1's destination",
    );
    let got = udp_arrivals_from(&s.lab, slaac[1].into(), b6(), 7404, N);
    assert_all_from(
        &s,
        &got,
        Wan::Two,
        slaac[1],
        "from wan2's prefix to wan2's destination",
    );
    assert_no_foreign_source_reached_an_isp(&s, "after source-specific routing");

    let out = steer_on_router(
        &s,
        &["explain", "--src", &slaac[0].to_string(), &b6().to_string()],
    );
    let explained = text(&out);
    let line = explained
        .lines()
        .find(|l| l.starts_with("source"))
        .unwrap_or_else(|| panic!("no source line in steer explain:\n{explained}"));
    assert!(
        out.status.success()
            && line.contains("source-specific routing sends it out by wan1")
            && line.contains(&slaac[0].to_string()),
        "steer explain --src {} {}:\n{explained}",
        slaac[0],
        b6()
    );
}

#[test]
fn a_dead_wans_prefix_is_deprecated_on_the_lan_so_new_flows_take_the_other_and_it_comes_back() {
    let SourceLab { s, _ra, slaac } = start_source("source-fail");
    let (net1, router1) = lan_net(s.lab.delegation(Wan::One));
    let router_addr = |what: &str, cond: &dyn Fn(&Addr6) -> bool| {
        wait_address(
            &s,
            &s.lab.router,
            Lab::LAN_IFACE,
            what,
            SETTLE,
            |a| a.addr == router1,
            cond,
        )
    };
    let client_addr = |what: &str, cond: &dyn Fn(&Addr6) -> bool| {
        wait_address(
            &s,
            &s.lab.client,
            Lab::CLIENT_IFACE,
            what,
            RA_WAIT,
            |a| a.addr == slaac[0],
            cond,
        )
    };
    let before = router_addr("the router's address in wan1's /64", &|a| {
        !deprecated(a) && a.preferred.is_some_and(|p| p > 0)
    });

    // Silent upstream loss on wan1: steer's probes find it.
    s.lab.blackhole_upstream(Wan::One);
    s.wait_until("wan1's IPv6 down", SETTLE, |st| {
        st["wans"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|w| w["name"] == "wan1")
            .flat_map(|w| w["families"].as_array().into_iter().flatten())
            .any(|f| f["family"] == "IPv6" && f["state"] == "down")
    });
    router_addr("the router's address in wan1's /64 deprecated", &deprecated);
    client_addr(
        &format!("the client's SLAAC address in {net1} deprecated"),
        &deprecated,
    );
    // A new socket, bound to nothing: the client's source selection avoids the deprecated
    // address, so the flow is wan2's and leaves by wan2.
    assert_udp_from(&s, a6(), 7411, Wan::Two, slaac[1]);
    assert_no_foreign_source_reached_an_isp(&s, "after wan1 failed");

    // Back: the router's address is preferred again, the client's follows with the next
    // advertisement.
    s.lab.restore_upstream(Wan::One);
    s.wait_wan("wan1", "up", SETTLE);
    let after = router_addr("the router's address in wan1's /64 preferred again", &|a| {
        !a.deprecated && a.preferred.is_some_and(|p| p > 0)
    });
    assert!(
        after.preferred <= before.preferred,
        "the preferred lifetime came back longer than it was: {before:?} -> {after:?}"
    );
    client_addr(
        &format!("the client's SLAAC address in {net1} preferred again"),
        &|a| !a.deprecated && a.preferred.is_some_and(|p| p > 0),
    );
    let got = udp_arrivals_from(&s.lab, slaac[0].into(), a6(), 7412, N);
    assert_all_from(
        &s,
        &got,
        Wan::One,
        slaac[0],
        "from wan1's prefix after it came back",
    );
    assert_no_foreign_source_reached_an_isp(&s, "after wan1 came back");
}

/// A daemon restarted (SIGTERM leaves steering in place) while wan1 is down keeps wan1's
/// prefix deprecated: it used to start wan1 up and make the router's address there preferred
/// again until its probes failed again (`preferred again (1995s)`, then `deprecated`), so hosts
/// could pick the dead prefix meanwhile.
#[test]
fn a_restart_while_a_wan_is_down_keeps_its_prefix_deprecated() {
    let SourceLab { mut s, _ra, .. } = start_source("source-restart");
    let (_, router1) = lan_net(s.lab.delegation(Wan::One));
    s.lab.blackhole_upstream(Wan::One);
    s.wait_wan("wan1", "down", SETTLE);
    wait_address(
        &s,
        &s.lab.router,
        Lab::LAN_IFACE,
        "the router's address in wan1's /64 deprecated",
        SETTLE,
        |a| a.addr == router1,
        deprecated,
    );
    assert!(
        s.daemon
            .signal_and_wait(libc::SIGTERM, Duration::from_secs(10)),
        "steer run did not stop on SIGTERM"
    );
    s.daemon = Daemon::start(&s.lab.router, &s.work);
    s.daemon.wait_log("ready: ", SETTLE);
    let log = s.daemon.log_text();
    assert!(!log.contains("preferred again"), "{log}");
    assert!(
        addresses(&s.lab.router, Lab::LAN_IFACE)
            .iter()
            .any(|a| a.addr == router1 && deprecated(a)),
        "the router's address in wan1's /64 is deprecated still\n{}",
        router_state(&s)
    );
    assert_eq!(s.wan_state("wan1"), "down", "{log}");
}

#[test]
fn after_isp2_renumbers_source_routing_sends_the_new_prefix_by_wan2() {
    let SourceLab { s, _ra, slaac: _ } = start_source("source-renumber");
    let (old, new) = (s.lab.delegation(Wan::Two), prefix("2001:db8:22::/56"));
    s.lab.delegate(Wan::Two, new);
    // What the DHCPv6 client does with a new delegation: the LAN's /64 of the old prefix
    // goes, one of the new prefix comes.
    let ((_, old_router), (new_net, new_router)) = (lan_net(old), lan_net(new));
    let lan = Lab::LAN_IFACE;
    s.lab.router.run(&format!(
        "ip -6 addr del {old_router}/64 dev {lan} && \
         ip -6 addr add {new_router}/64 dev {lan} valid_lft 7200 preferred_lft 3600 nodad"
    ));
    let text = std::fs::read_to_string(s.work.config()).expect("config");
    let renumbered = text.replacen(&format!("\"{old}\""), &format!("\"{new}\""), 1);
    assert_ne!(text, renumbered, "{old} in the configuration");
    s.work.write("steer.toml", &renumbered);
    s.steer(&["reload"]);
    let rules = s.lab.router.run("ip -6 rule show");
    assert!(
        rules.contains(&format!("from {new} lookup 102")) && !rules.contains(&old.to_string()),
        "{rules}"
    );
    let slaac = wait_address(
        &s,
        &s.lab.client,
        Lab::CLIENT_IFACE,
        &format!("the client's SLAAC address in {new_net}"),
        RA_WAIT,
        |a| new_net.contains(a.addr.into()) && a.dynamic,
        |a| !deprecated(a),
    );
    // wan1's destination from the new prefix: by wan2, accepted by ISP 2.
    let got = udp_arrivals_from(&s.lab, slaac.addr.into(), a6(), 7421, N);
    assert_all_from(&s, &got, Wan::Two, slaac.addr, "from the renumbered prefix");
    assert_no_foreign_source_reached_an_isp(&s, "after ISP 2 renumbered");
}

/// ISP `w` delegates its prefix by DHCPv6: `dhcpd -6` (ISC) on its link to the router.
fn dhcpd6(s: &Scenario, w: Wan) -> Service {
    let (p, link) = (s.lab.delegation(w), Lab::link_prefix_v6(w));
    let net = p.addr();
    let n = w.number();
    let conf = s.work.write(
        &format!("dhcpd6-{n}.conf"),
        &format!(
            "default-lease-time 600;\nmax-lease-time 7200;\n\
             subnet6 {link} {{\n  prefix6 {net} {net} /{};\n}}\n",
            p.len()
        ),
    );
    let leases = s.work.write(&format!("dhcpd6-{n}.leases"), "");
    let pid = s.work.dir.join(format!("dhcpd6-{n}.pid"));
    let [conf, leases, pid] = [conf, leases, pid].map(|p| p.display().to_string());
    let args = [
        "dhcpd", "-6", "-f", "-cf", &conf, "-lf", &leases, "-pf", &pid, ISP_DOWN,
    ];
    Service::start(s.lab.isp(w), &s.work.dir, &format!("dhcpd6-{n}"), &args)
}

/// The router's dhcpcd asking WAN `w`'s ISP for a prefix (`ia_pd`, a /64 of it on the LAN),
/// with steer's hook from `contrib/dhcp/dhcpcd-hook` as its script.
fn dhcpcd6(s: &Scenario, w: Wan) -> Service {
    let n = w.number();
    let (wan, lan) = (Lab::wan_iface(w), Lab::LAN_IFACE);
    let conf = s.work.write(
        &format!("dhcpcd-{n}.conf"),
        &format!(
            "ipv6only\nnoipv6rs\nduid\nnohook resolv.conf\n\
             interface {wan}\n  ia_pd {n} {lan}/{n}/64/1\n"
        ),
    );
    let hook = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/dhcp/dhcpcd-hook");
    let script = s.work.write(
        &format!("dhcpcd-{n}.sh"),
        &format!(
            "#!/bin/sh\nexport STEER={} STEER_ARGS=\"--socket {}\"\n. {}\nexit 0\n",
            steer_tests::daemon::steer_bin().display(),
            s.work.socket.display(),
            hook.display()
        ),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let [conf, script] = [conf, script].map(|p| p.display().to_string());
    let args = ["dhcpcd", "-B", "-6", "-f", &conf, "-c", &script, wan];
    Service::start(&s.lab.router, &s.work.dir, &format!("dhcpcd-{n}"), &args)
}

/// The router's ISC dhclient asking WAN `w`'s ISP for a prefix only (`-P`, ifupdown's
/// `request_prefix 1`), with steer's hook from `contrib/dhcp/dhclient-exit-hook` sourced by its
/// script, as dhclient-script sources `/etc/dhcp/dhclient-exit-hooks.d/`. dhclient installs no
/// route for the prefix, so the hook is the only way steer learns it.
fn dhclient6(s: &Scenario, w: Wan) -> Service {
    let n = w.number();
    let wan = Lab::wan_iface(w);
    let hook =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/dhcp/dhclient-exit-hook");
    let script = s.work.write(
        &format!("dhclient6-{n}.sh"),
        &format!(
            "#!/bin/sh
export STEER={} STEER_ARGS=\"--socket {}\"\n. {}\nexit 0\n",
            steer_tests::daemon::steer_bin().display(),
            s.work.socket.display(),
            hook.display()
        ),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let file = |name: &str| s.work.dir.join(name).display().to_string();
    let script = script.display().to_string();
    let (leases, pid) = (
        file(&format!("dhclient6-{n}.leases")),
        file(&format!("dhclient6-{n}.pid")),
    );
    let args = [
        "dhclient", "-6", "-P", "-d", "-sf", &script, "-lf", &leases, "-pf", &pid, wan,
    ];
    Service::start(&s.lab.router, &s.work.dir, &format!("dhclient6-{n}"), &args)
}

#[test]
fn a_prefix_delegated_to_dhclient_is_handed_in_by_its_hook_and_back_on_release() {
    let s = start("pd-dhclient", NPT, ["auto", "auto"]);
    let _server = dhcpd6(&s, Wan::Two);
    let _client = dhclient6(&s, Wan::Two);
    let name = Lab::wan_iface(Wan::Two);
    let p2 = s.lab.delegation(Wan::Two);
    wait_prefix6(
        &s,
        name,
        Some(p2),
        &format!("set by `steer wan {name} prefix6`"),
    );
    // Released (`dhclient -r`, ifdown): the hook hands the choice back, and with nothing
    // delegated in the routing table wan2 waits again.
    let n = Wan::Two.number();
    let file = |name: &str| s.work.dir.join(name).display().to_string();
    s.lab.router.run(&format!(
        "dhclient -6 -P -r -sf {} -lf {} -pf {} {name}",
        file(&format!("dhclient6-{n}.sh")),
        file(&format!("dhclient6-{n}.leases")),
        file(&format!("dhclient6-{n}.pid")),
    ));
    wait_prefix6(&s, name, None, "waiting");
}

#[test]
fn two_lines_delegating_by_dhcpv6_each_get_their_prefix_through_dhcpcds_hook() {
    let mut s = start("pd-dhcpcd", NPT, ["auto", "auto"]);
    let _servers = Wan::ALL.map(|w| dhcpd6(&s, w));
    let _clients = Wan::ALL.map(|w| dhcpcd6(&s, w));
    for w in Wan::ALL {
        let name = Lab::wan_iface(w);
        wait_prefix6(
            &s,
            name,
            Some(s.lab.delegation(w)),
            &format!("set by `steer wan {name} prefix6`"),
        );
    }
    // dhcpcd holds each prefix as it does on a router: a reject route for the whole prefix.
    let routes = s.lab.router.run("ip -6 route show proto dhcp");
    for w in Wan::ALL {
        let held = format!("unreachable {} dev lo", s.lab.delegation(w));
        assert!(routes.contains(&held), "{held} in\n{routes}");
    }
    let (p1, p2) = (s.lab.delegation(Wan::One), s.lab.delegation(Wan::Two));
    assert_each_wan_in_its_prefix(&s, (p1, p2), 7431, "with the delegated prefixes");

    // A crash: dhcpcd calls its hook again only at its next renewal, minutes away. The new
    // daemon takes the hooked prefixes back from what the one before kept.
    s.daemon.kill9();
    s.daemon = Daemon::start(&s.lab.router, &s.work);
    for w in Wan::ALL {
        let name = Lab::wan_iface(w);
        wait_prefix6(
            &s,
            name,
            Some(s.lab.delegation(w)),
            &format!("set by `steer wan {name} prefix6`"),
        );
    }
    assert_each_wan_in_its_prefix(&s, (p1, p2), 7433, "after a restart");
    // `steer stop` forgets them.
    let kept = steer::wan_sources::kept::path_for(&s.work.socket);
    assert!(kept.exists(), "{}", kept.display());
    s.work.stop_in(&s.lab.router);
    assert!(!kept.exists(), "{} after steer stop", kept.display());
}

#[test]
fn npt_onto_the_subnet_of_the_wans_own_link_is_warned_about() {
    // An RA-only line's /64 given as wan2's prefix: the ISP's router would look the translated
    // addresses up by neighbour discovery on that link, where nobody answers for them.
    let on_link = Lab::link_prefix_v6(Wan::Two);
    let s = start(
        "npt-on-link",
        NPT,
        [
            &Lab::initial_delegation(Wan::One).to_string(),
            &on_link.to_string(),
        ],
    );
    s.daemon.wait_log(
        &format!("wan2 ipv6: prefix {on_link} is the subnet on wan2's own link"),
        Duration::from_secs(10),
    );
    let log = s.daemon.log_text();
    assert!(
        !log.contains("is the subnet on wan1"),
        "wan1's delegated prefix is not on its link:\n{log}"
    );
}

/// The file where the daemon keeps hooked prefixes across restarts, as text ("" when there
/// is none).
fn kept_prefixes(s: &Scenario) -> String {
    std::fs::read_to_string(steer::wan_sources::kept::path_for(&s.work.socket)).unwrap_or_default()
}

/// A prefix a DHCPv6 hook handed in is about the line, the interface: a reload that renamed
/// wan2 on the same interface lost it (wan2 had no prefix, IPv6 waited for the next renewal,
/// and the file kept it under the dead name for a later WAN of that name), and a reload that
/// moved wan2 to another interface kept the old line's prefix. Now the rename keeps it under
/// the new name, a restart over a renamed file does the same, and the move drops it, saying
/// what to do.
#[test]
fn a_hooked_prefix_follows_a_rename_and_goes_with_a_move_to_another_interface() {
    let mut s = start("pd-line", NPT, ["auto", "auto"]);
    let p2 = s.lab.delegation(Wan::Two);
    s.steer(&["wan", "wan2", "prefix6", &p2.to_string()]);
    wait_prefix6(&s, "wan2", Some(p2), "set by `steer wan wan2 prefix6`");

    let text = std::fs::read_to_string(s.work.config()).unwrap();
    let text = renamed(&text, "wan2", "isp2");
    s.work.write("steer.toml", &text);
    let out = s.steer(&["reload"]);
    assert!(
        out.contains(&format!(
            "isp2: the prefix {p2} handed in for wan2 (`steer wan wan2 prefix6`) is kept: wan2 \
             is named isp2 now, on the same interface"
        )),
        "{out}"
    );
    wait_prefix6(&s, "isp2", Some(p2), "set by `steer wan isp2 prefix6`");
    let kept = kept_prefixes(&s);
    assert!(
        kept.contains("[\"isp2\",") && !kept.contains("[\"wan2\","),
        "no prefix under a dead name: {kept}"
    );

    // A restart over a file renamed meanwhile says and does the same as the reload.
    assert!(
        s.daemon.signal_and_wait(libc::SIGTERM, SETTLE),
        "the daemon stops"
    );
    let text = renamed(&text, "isp2", "wan2");
    s.work.write("steer.toml", &text);
    s.daemon = Daemon::start(&s.lab.router, &s.work);
    s.daemon.wait_log(
        &format!(
            "wan2: the prefix {p2} handed in for wan2 (`steer wan isp2 prefix6`) is kept: isp2 \
             is named wan2 now, on the same interface"
        ),
        SETTLE,
    );
    wait_prefix6(&s, "wan2", Some(p2), "set by `steer wan wan2 prefix6`");

    // wan2 moved to another interface (down: its subnets are not known, nothing is judged at
    // reload): another line, whose prefix is not wan2's old one.
    s.lab
        .router
        .run("ip link add mv6 type veth peer name mv6p && ip link set mv6p up");
    let moved = text.replacen("interface = \"wan2\"", "interface = \"mv6\"", 1);
    s.work.write("steer.toml", &moved);
    let out = s.steer(&["reload"]);
    assert!(
        out.contains(&format!(
            "wan2: the prefix {p2} handed in for wan2 is dropped: wan2 is on mv6 now, another \
             line. Its DHCPv6 client hands a prefix in at its next renewal; to use one now, run \
             `steer wan wan2 prefix6 PREFIX`"
        )),
        "{out}"
    );
    wait_prefix6(&s, "wan2", None, "");
    assert!(
        !kept_prefixes(&s).contains(&p2.to_string()),
        "{}",
        kept_prefixes(&s)
    );
}
