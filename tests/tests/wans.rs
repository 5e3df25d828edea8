//! WANs as they really come, with real peers in the namespace lab: a DHCP lease (dnsmasq as the
//! ISP's server, busybox udhcpc on the router) that moves into another subnet and is then lost;
//! a point-to-point link whose device comes and goes like a PPP session (socat TUN); IPv6
//! gateways from router advertisements (radvd) and a source-specific default as OpenWrt's
//! netifd installs it; the DHCP hooks of `contrib/dhcp` run by udhcpc, dhclient and dhcpcd;
//! health per address family; a LAN bridge that appears after the daemon started; devices
//! renamed away and back. Each test prints how long steer took from the
//! system's change to its routing and to traffic flowing.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use steer_tests::{
    daemon::{Daemon, Workdir},
    lab::{Arrival, Lab, NFT_TABLE, Wan, udp_arrivals},
    scenario::{lab_wans, renamed},
    service::Service,
};

/// Bound on every wait for the system or the daemon.
const SETTLE: Duration = Duration::from_secs(10);

/// The configuration of these tests: the lab's two WANs with `wan_tables` (their `[[wan]]`
/// tables, as written), default traffic preferring the first policy member.
fn config(work: &Workdir, lan: &str, wans: &str, default_members: &str, extra: &str) -> String {
    format!(
        "[general]\nlan = [\"{lan}\"]\n{pins}\n{wans}\n\
         [[policy]]\nname = \"first\"\nmembers = [{default_members}]\n\n\
         [[policy]]\nname = \"wan2-first\"\nmembers = [{{ wan = \"wan2\" }}, {{ wan = \"wan1\", metric = 2 }}]\n\n\
         [[set]]\nname = \"bypass\"\npolicy = \"wan2-first\"\nprefixes = [\"{b}\", \"{b6}\"]\n\n\
         {extra}\n[default]\npolicy = \"first\"\n\n{control}",
        pins = work.private_paths(),
        b = Lab::SERVER_B,
        b6 = Lab::SERVER_B6,
        control = work.control_section(),
    )
}

fn icmp(targets: &[String]) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "method = \"icmp\"\ntargets = [{}]\ninterval_ms = 100\ntimeout_ms = 80\ndown_after = 3\nup_after = 3\n",
        list.join(", ")
    )
}

/// The lab's wan1 with its `gateway = ...` line removed (so `auto`), wan2 as in the lab.
fn wans_with_auto_gateway(wan: Wan, family_key: &str, track1: &str, track2: &str) -> String {
    let text = lab_wans(track1, track2);
    let line = match (wan, family_key) {
        (w, "gateway") => format!("gateway = \"{}\"\n", Lab::gateway_v4(w)),
        (w, _) => format!("gateway6 = \"{}\"\n", Lab::gateway_v6(w)),
    };
    assert!(text.contains(&line), "{line} in {text}");
    text.replacen(&line, "", 1)
}

/// Waits until `steer status --json` satisfies `cond`; returns how long that took.
fn wait_status(
    work: &Workdir,
    daemon: &Daemon,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let (ok, out, _) = work.steer(&["status", "--json"]);
        if ok
            && let Ok(st) = serde_json::from_str::<serde_json::Value>(&out)
            && cond(&st)
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < SETTLE,
            "{what}: not within {SETTLE:?}\nstatus: {out}\ndaemon log:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The status line of `family` ("IPv4"/"IPv6") of WAN `wan`.
fn family_of<'s>(st: &'s serde_json::Value, wan: &str, family: &str) -> &'s serde_json::Value {
    st["wans"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["name"] == wan)
        .and_then(|w| w["families"].as_array())
        .into_iter()
        .flatten()
        .find(|f| f["family"] == family)
        .unwrap_or(&serde_json::Value::Null)
}

fn wan_of<'s>(st: &'s serde_json::Value, wan: &str) -> &'s serde_json::Value {
    st["wans"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["name"] == wan)
        .unwrap_or(&serde_json::Value::Null)
}

fn gateway_is(st: &serde_json::Value, wan: &str, family: &str, starts: &str) -> bool {
    family_of(st, wan, family)["gateway"]
        .as_str()
        .is_some_and(|g| g.starts_with(starts))
}

/// Sends datagrams to `server` until one arrives from `source` (the NAT address of the WAN
/// expected to carry it); returns how long that took.
fn wait_traffic_from(
    lab: &Lab,
    server: IpAddr,
    port: u16,
    source: IpAddr,
    daemon: &Daemon,
) -> Duration {
    let start = Instant::now();
    loop {
        let got: Vec<Arrival> = udp_arrivals(lab, server, port, 3);
        if got.iter().any(|a| a.from.ip() == source) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < SETTLE,
            "no datagram to {server} from {source} within {SETTLE:?}: {got:?}\n{}",
            daemon.log_text()
        );
    }
}

/// The udhcpc script a router's DHCP client runs: address and default route from the lease
/// (as OpenWrt's netifd and Debian's default script do), nothing on deconfig.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    for r in $router; do ip route replace default via "$r" dev "$interface" metric 10; break; done
    ;;
esac
exit 0
"#;

/// dnsmasq as the ISP's DHCP server on its `down` interface, handing out `addr` with router
/// `gateway`.
fn dhcp_server(lab: &Lab, work: &Workdir, addr: &str, gateway: &str) -> Service {
    let leases = work.dir.join(format!("leases-{addr}"));
    Service::start(
        lab.isp(Wan::One),
        &work.dir,
        "dnsmasq",
        &[
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--user=root",
            "--interface=down",
            "--bind-interfaces",
            &format!("--dhcp-range={addr},{addr},255.255.255.252,2m"),
            &format!("--dhcp-option=option:router,{gateway}"),
            &format!("--dhcp-leasefile={}", leases.display()),
            "--dhcp-authoritative",
            "--log-dhcp",
        ],
    )
}

#[test]
fn a_dhcp_wan_follows_its_lease_into_another_subnet_and_waits_when_it_is_lost() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("dhcp");
    lab.router.run("ip -4 addr flush dev wan1");
    let script = work.write("udhcpc.sh", UDHCPC_SCRIPT);
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut server = dhcp_server(&lab, &work, "100.64.1.2", "100.64.1.1");
    let client = Service::start(
        &lab.router,
        &work.dir,
        "udhcpc",
        &[
            "busybox",
            "udhcpc",
            "-f",
            "-i",
            "wan1",
            "-s",
            &script.display().to_string(),
            "-t",
            "10",
            "-T",
            "1",
            "-A",
            "1",
        ],
    );
    let track = icmp(&[Lab::PROBE_1.to_string()]);
    let wans = wans_with_auto_gateway(
        Wan::One,
        "gateway",
        &track,
        &icmp(&[Lab::PROBE_2.to_string()]),
    );
    let members = "{ wan = \"wan1\" }, { wan = \"wan2\", metric = 2 }";
    work.write("steer.toml", &config(&work, "lan0", &wans, members, ""));
    let daemon = Daemon::start(&lab.router, &work);
    wait_status(&work, &daemon, "the first lease's gateway", |st| {
        gateway_is(
            st,
            "wan1",
            "IPv4",
            "via 100.64.1.1 (learned: table main, proto",
        )
    });
    let a: IpAddr = Lab::SERVER_A.into();
    wait_traffic_from(&lab, a, 7101, "100.64.1.2".parse().unwrap(), &daemon);

    // The ISP renumbers: another subnet, another gateway. The client renews, is refused, and
    // takes the new lease.
    server.stop();
    lab.isp(Wan::One)
        .run("ip addr del 100.64.1.1/30 dev down && ip addr add 100.64.11.1/30 dev down");
    lab.internet
        .run("ip route add 100.64.11.0/30 via 198.18.1.2 dev isp1");
    let _renumbered = dhcp_server(&lab, &work, "100.64.11.2", "100.64.11.1");
    client.signal(libc::SIGUSR1);
    let lease = Instant::now();
    loop {
        let addrs = lab.router.run("ip -4 -o addr show dev wan1");
        if addrs.contains("100.64.11.2") {
            break;
        }
        assert!(
            lease.elapsed() < SETTLE,
            "no new lease: {}",
            client.log_text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let leased = lease.elapsed();
    let table = wait_status(&work, &daemon, "the new gateway", |st| {
        gateway_is(st, "wan1", "IPv4", "via 100.64.11.1")
    });
    let traffic = wait_traffic_from(&lab, a, 7102, "100.64.11.2".parse().unwrap(), &daemon);
    eprintln!(
        "renumbered lease: address after {leased:?}; steer's routing followed {table:?} after it, \
         traffic via the new gateway {:?} after that",
        traffic
    );
    let routes = lab.router.run("ip -4 route show table 101");
    assert!(
        routes.contains("default via 100.64.11.1 dev wan1"),
        "{routes}"
    );

    // The lease is lost: wan1 waits for a gateway (not "down"), traffic moves to wan2.
    client.signal(libc::SIGUSR2);
    wait_status(&work, &daemon, "waiting for a gateway", |st| {
        gateway_is(st, "wan1", "IPv4", "waiting for a gateway")
    });
    wait_traffic_from(&lab, a, 7103, Lab::nat_addr_v4(Wan::Two).into(), &daemon);
    // The log says so too: the line stops carrying and waits; it is not "down".
    daemon.wait_log(
        "wan1 IPv4 stops carrying, waiting (gateway: waiting for a gateway",
        SETTLE,
    );
    drop(client);
}

/// The lab with wan1's IPv4 gateway (and with `v6_too` its IPv6 one) left to the system, which
/// has none: a DHCP hook must hand it in. The default policy prefers wan1.
fn hand_in_lab(tag: &str, v6_too: bool) -> (Lab, Workdir, Daemon) {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new(tag);
    let mut wans = wans_with_auto_gateway(
        Wan::One,
        "gateway",
        &icmp(&[Lab::PROBE_1.to_string()]),
        &icmp(&[Lab::PROBE_2.to_string()]),
    );
    if v6_too {
        let v6 = format!("gateway6 = \"{}\"\n", Lab::gateway_v6(Wan::One));
        wans = wans.replacen(&v6, "", 1);
    }
    let members = "{ wan = \"wan1\" }, { wan = \"wan2\", metric = 2 }";
    work.write("steer.toml", &config(&work, "lan0", &wans, members, ""));
    let daemon = Daemon::start(&lab.router, &work);
    (lab, work, daemon)
}

/// A family waiting for its gateway is not probed (its probes have no way out): the status
/// and the metrics said it was, at the pace of before (fast every 20 ms, 1.31 GB a day) with
/// a frozen round count, and showed its health as if it were current.
#[test]
fn a_family_waiting_for_its_gateway_is_not_probed_and_says_so() {
    let (_lab, work, daemon) = hand_in_lab("unprobed", true);
    // Neither family of wan1 has a gateway, so IPv6 (no probes of its own, it follows IPv4)
    // does not need IPv4's rounds either.
    let not_probed = |st: &serde_json::Value| {
        let v4 = family_of(st, "wan1", "IPv4");
        gateway_is(st, "wan1", "IPv6", "waiting for a gateway")
            && v4["probes"]["pace"] == "waiting"
            && v4["probes"]["interval_ms"] == 0
            && v4["probes"]["bytes_per_day"] == 0
            && v4["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("for a gateway; not probed meanwhile"))
    };
    wait_status(&work, &daemon, "wan1 IPv4 waits, not probed", not_probed);
    let text = work.steer_ok(&["status"]);
    assert!(
        text.contains("not probed while waiting for a gateway"),
        "{text}"
    );
    let gw4 = Lab::gateway_v4(Wan::One).to_string();
    work.steer_ok(&["wan", "wan1", "gateway", &gw4]);
    wait_status(&work, &daemon, "probed with its gateway", |st| {
        let probes = &family_of(st, "wan1", "IPv4")["probes"];
        probes["pace"] != "waiting" && probes["interval_ms"].as_u64().is_some_and(|i| i > 0)
    });
}

/// A line that probes found dead keeps its state through a lease rebound (the gateway goes
/// and comes back, as a modem whose DHCP server still answers gives it): it comes back only
/// after `up_after` passed rounds, not with the gateway. It was put back in service at once,
/// and the LAN's flows went into the dead line.
#[test]
fn a_wan_found_dead_stays_down_when_its_gateway_comes_back() {
    let (lab, work, daemon) = hand_in_lab("rebind", false);
    let hand_in = |gateway: &str| work.steer_ok(&["wan", "wan1", "gateway", gateway]);
    hand_in(&Lab::gateway_v4(Wan::One).to_string());
    wait_status(&work, &daemon, "the handed-in gateway", |st| {
        gateway_is(st, "wan1", "IPv4", "via 100.64.1.1 (set by")
    });
    let a: IpAddr = Lab::SERVER_A.into();
    wait_traffic_from(&lab, a, 7301, Lab::nat_addr_v4(Wan::One).into(), &daemon);

    lab.blackhole_upstream(Wan::One);
    wait_status(&work, &daemon, "probes find wan1 dead", |st| {
        family_of(st, "wan1", "IPv4")["state"] == "down"
    });
    // The lease is rebound: the gateway goes away and comes back.
    hand_in("auto");
    wait_status(&work, &daemon, "waiting", |st| {
        gateway_is(st, "wan1", "IPv4", "waiting for a gateway")
    });
    let back = hand_in(&Lab::gateway_v4(Wan::One).to_string());
    assert!(
        back.contains("wan1 IPv4: gateway: via 100.64.1.1")
            && back.contains("still down until probes pass"),
        "{back}"
    );
    wait_status(&work, &daemon, "the gateway is back", |st| {
        gateway_is(st, "wan1", "IPv4", "via 100.64.1.1 (set by")
    });
    for i in 0..10 {
        assert_eq!(
            work.wan_state("wan1"),
            "down",
            "{i}: a dead line stays down with its gateway back\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_traffic_from(&lab, a, 7302, Lab::nat_addr_v4(Wan::Two).into(), &daemon);

    lab.restore_upstream(Wan::One);
    wait_status(&work, &daemon, "probes bring it back", |st| {
        family_of(st, "wan1", "IPv4")["state"] == "up"
    });
    wait_traffic_from(&lab, a, 7303, Lab::nat_addr_v4(Wan::One).into(), &daemon);
}

/// A configured gateway is checked as a handed-in one is, before anything is written: one off
/// the WAN's link, or the router's own address, refuses the reload (naming the file's line and
/// the field) and the start, and the running gateway stays. It was accepted: the kernel refused
/// the route at every event (the old one left in the table), or took the router's own address.
/// A hand-in for a WAN whose configuration pins the gateway says it is ignored, and how to let
/// hooks hand it in (it said "no change").
#[test]
fn a_configured_gateway_is_checked_at_reload_and_start_and_pins_hand_ins() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("gw-configured");
    let gw4 = Lab::gateway_v4(Wan::One);
    let wans = lab_wans(
        &icmp(&[Lab::PROBE_1.to_string()]),
        &icmp(&[Lab::PROBE_2.to_string()]),
    );
    let members = "{ wan = \"wan1\" }, { wan = \"wan2\", metric = 2 }";
    let with_gateway = |gateway: &str| {
        let wans = wans.replacen(
            &format!("gateway = \"{gw4}\""),
            &format!("gateway = \"{gateway}\""),
            1,
        );
        config(&work, "lan0", &wans, members, "")
    };
    work.write("steer.toml", &with_gateway(&gw4.to_string()));
    let mut daemon = Daemon::start(&lab.router, &work);
    let configured =
        |st: &serde_json::Value| gateway_is(st, "wan1", "IPv4", &format!("via {gw4} (configured)"));
    wait_status(&work, &daemon, "the configured gateway", configured);

    let (ok, out, err) = work.steer(&["wan", "wan1", "gateway", "10.9.9.9"]);
    assert!(ok, "{out}{err}");
    let said = out + &err;
    assert!(
        said.contains(&format!(
            "wan1 IPv4: the configuration pins the gateway ({}: wan[wan1].gateway = \"{gw4}\"), \
             so 10.9.9.9 handed in is ignored",
            work.config().display()
        )) && said.contains("set gateway = \"auto\""),
        "{said}"
    );

    let line = |text: &str, needle: &str| {
        1 + text
            .lines()
            .position(|l| l.contains(needle))
            .expect("the gateway's line")
    };
    for (bad, why) in [
        (
            "10.99.99.1".to_owned(),
            "10.99.99.1 is not on the link of wan1",
        ),
        (
            Lab::nat_addr_v4(Wan::One).to_string(),
            "is an address of this router",
        ),
    ] {
        let text = with_gateway(&bad);
        work.write("steer.toml", &text);
        let (ok, out, err) = work.steer(&["reload"]);
        let field = format!("wan[wan1].gateway = \"{bad}\"");
        assert!(!ok, "refused: {out}{err}");
        assert!(
            err.contains(&format!(
                "{}:{}: {field}: ",
                work.config().display(),
                line(&text, &format!("gateway = \"{bad}\""))
            )) && err.contains(why)
                && err.contains("Nothing was changed"),
            "{err}"
        );
        wait_status(&work, &daemon, "the gateway stays", configured);
        let table = lab.router.run("ip -4 route show table 101");
        assert!(
            table.contains(&format!("default via {gw4} dev wan1")),
            "{table}"
        );
    }
    assert!(
        !daemon.log_text().contains("routing (reload): failed"),
        "{}",
        daemon.log_text()
    );

    // At start: said as an error, but the daemon starts (the system at boot may not be what
    // it becomes, and the other WAN must carry the traffic meanwhile).
    assert!(
        daemon.signal_and_wait(libc::SIGTERM, SETTLE),
        "the daemon stops"
    );
    work.write("steer.toml", &with_gateway("10.99.99.1"));
    let started = Daemon::start(&lab.router, &work);
    let log = started.log_text();
    assert!(
        log.contains("wan[wan1].gateway = \"10.99.99.1\": 10.99.99.1 is not on the link of wan1")
            && log.contains("steer starts all the same"),
        "{log}"
    );
}

/// What a DHCP hook hands in is checked and kept: a gateway not on the WAN's link, or the
/// router's own address or its subnet's network or broadcast address, is refused with exit
/// status 1 and the one before stays (it was
/// accepted, with the route failing and the old one left in the table); `auto4` gives back
/// IPv4's alone (`auto` took IPv6's hand-in too); and a restarted daemon keeps the hand-ins
/// (the WAN waited for the client's next renewal).
#[test]
fn handed_in_gateways_are_checked_kept_per_family_and_across_a_restart() {
    let (lab, work, mut daemon) = hand_in_lab("hand-in", true);
    let (gw4, gw6) = (Lab::gateway_v4(Wan::One), Lab::gateway_v6(Wan::One));
    work.steer_ok(&["wan", "wan1", "gateway", &gw4.to_string()]);
    work.steer_ok(&["wan", "wan1", "gateway", &gw6.to_string()]);
    let handed_in = |st: &serde_json::Value| {
        gateway_is(st, "wan1", "IPv4", &format!("via {gw4} (set by"))
            && gateway_is(st, "wan1", "IPv6", &format!("via {gw6} (set by"))
    };
    wait_status(&work, &daemon, "both hand-ins", handed_in);

    let (ok, _, err) = work.steer(&["wan", "wan1", "gateway", "10.9.9.9"]);
    assert!(!ok, "an address off the WAN's link is refused: {err}");
    assert!(
        err.contains("10.9.9.9 cannot be the gateway of wan1")
            && err.contains(&format!("it stays via {gw4}")),
        "{err}"
    );
    let own = Lab::nat_addr_v4(Wan::One).to_string();
    let (ok, _, err) = work.steer(&["wan", "wan1", "gateway", &own]);
    assert!(
        !ok && err.contains(&format!("{own} is an address of this router")),
        "{err}"
    );
    // The kernel takes a route via the network or broadcast address of the WAN's /30.
    for edge in ["100.64.1.0", "100.64.1.3"] {
        let (ok, _, err) = work.steer(&["wan", "wan1", "gateway", edge]);
        assert!(
            !ok && err.contains(&format!(
                "{edge} is the network or broadcast address of 100.64.1.0/30"
            )),
            "{err}"
        );
    }
    let table = lab.router.run("ip -4 route show table 101");
    assert!(
        table.contains(&format!("default via {gw4} dev wan1")),
        "{table}"
    );
    assert!(!table.contains("10.9.9.9"), "{table}");
    wait_status(&work, &daemon, "both hand-ins stay", handed_in);

    work.steer_ok(&["wan", "wan1", "gateway", "auto4"]);
    wait_status(&work, &daemon, "IPv4's alone given back", |st| {
        gateway_is(st, "wan1", "IPv4", "waiting for a gateway")
            && gateway_is(st, "wan1", "IPv6", &format!("via {gw6} (set by"))
    });

    work.steer_ok(&["wan", "wan1", "gateway", &gw4.to_string()]);
    wait_status(&work, &daemon, "handed in again", handed_in);
    let again = work.steer_ok(&["wan", "wan1", "gateway", &gw4.to_string()]);
    assert!(again.contains("no change"), "{again}");
    assert!(
        daemon.signal_and_wait(libc::SIGTERM, SETTLE),
        "the daemon stops"
    );
    let mut daemon = Daemon::start(&lab.router, &work);
    wait_status(&work, &daemon, "kept across the restart", handed_in);
    let a: IpAddr = Lab::SERVER_A.into();
    wait_traffic_from(&lab, a, 7311, Lab::nat_addr_v4(Wan::One).into(), &daemon);

    // Renumbered while no daemon ran: the kept gateway is off the new subnet. Dropped at
    // start, not kept as a route that cannot be.
    assert!(
        daemon.signal_and_wait(libc::SIGTERM, SETTLE),
        "the daemon stops"
    );
    lab.router
        .run("ip -4 addr flush dev wan1 && ip addr add 100.64.21.2/24 dev wan1");
    let daemon = Daemon::start(&lab.router, &work);
    daemon.wait_log(
        &format!("wan1: the gateway {gw4} handed in to the daemon before is not on its link"),
        SETTLE,
    );
    wait_status(&work, &daemon, "IPv4 waits; IPv6's hand-in stays", |st| {
        gateway_is(st, "wan1", "IPv4", "waiting for a gateway")
            && gateway_is(st, "wan1", "IPv6", &format!("via {gw6} (set by"))
    });

    // The lease expired while no daemon ran (the hook's `auto4` found none to tell): the
    // kept gateway was put back, its route refused at every reconcile, readiness held up.
    lab.router.run(&format!(
        "ip -4 addr flush dev wan1 && ip addr add {}/30 dev wan1",
        Lab::nat_addr_v4(Wan::One)
    ));
    work.steer_ok(&["wan", "wan1", "gateway", &gw4.to_string()]);
    wait_status(&work, &daemon, "handed in once more", handed_in);
    let mut daemon = daemon;
    assert!(
        daemon.signal_and_wait(libc::SIGTERM, SETTLE),
        "the daemon stops"
    );
    lab.router.run("ip -4 addr flush dev wan1");
    let daemon = Daemon::start(&lab.router, &work);
    daemon.wait_log("wan1 has no IPv4 address: its lease is gone", SETTLE);
    wait_status(&work, &daemon, "IPv4 waits for the next lease", |st| {
        gateway_is(st, "wan1", "IPv4", "waiting for a gateway")
    });

    // The DHCP client moved to another router of the same subnet while no daemon ran (its
    // hook could not tell): the main table's default route is newer than the kept hand-in,
    // which gave way to it, not kept the WAN on a router that no longer answers.
    lab.router.run(&format!(
        "ip -4 addr add {}/24 dev wan1",
        Lab::nat_addr_v4(Wan::One)
    ));
    work.steer_ok(&["wan", "wan1", "gateway", &gw4.to_string()]);
    wait_status(&work, &daemon, "handed in on the /24", handed_in);
    let mut daemon = daemon;
    assert!(
        daemon.signal_and_wait(libc::SIGTERM, SETTLE),
        "the daemon stops"
    );
    lab.router
        .run("ip -4 route add default via 100.64.1.254 dev wan1 metric 4000");
    let daemon = Daemon::start(&lab.router, &work);
    daemon.wait_log(
        &format!(
            "wan1: the gateway {gw4} handed in to the daemon before is not the main table's \
             any more: its default route through wan1 goes via 100.64.1.254 now (the lease may \
             have moved"
        ),
        SETTLE,
    );
    wait_status(&work, &daemon, "IPv4 follows the main table", |st| {
        gateway_is(st, "wan1", "IPv4", "via 100.64.1.254 (learned")
            && gateway_is(st, "wan1", "IPv6", &format!("via {gw6} (set by"))
    });
}

/// A DHCP client on the router that installs the lease's address but no route, and hands the
/// router to steer through the hook in `contrib/dhcp/` (what a router owner copies).
#[derive(Clone, Copy, Debug)]
enum HookedClient {
    Udhcpc,
    Dhclient,
    Dhcpcd,
}

impl HookedClient {
    /// The client's script: the address of the lease, then the hook with udhcpc's arguments or
    /// dhclient's and dhcpcd's variables.
    fn script(self, work: &Workdir) -> String {
        let hook = |name: &str| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../contrib/dhcp")
                .join(name)
                .display()
                .to_string()
        };
        let steer = format!(
            "export STEER={} STEER_ARGS=\"--socket {}\"\n",
            steer_tests::daemon::steer_bin().display(),
            work.socket.display()
        );
        let body = match self {
            HookedClient::Udhcpc => format!(
                "case \"$1\" in\n\
                 deconfig) ip -4 addr flush dev \"$interface\" ;;\n\
                 bound|renew) ip -4 addr flush dev \"$interface\"; ip addr add \"$ip/$mask\" dev \"$interface\" ;;\n\
                 esac\n. {} \"$@\"\n",
                hook("udhcpc.user")
            ),
            HookedClient::Dhclient => format!(
                "case \"$reason\" in\n\
                 PREINIT) ip link set \"$interface\" up ;;\n\
                 BOUND|RENEW|REBIND|REBOOT) ip -4 addr flush dev \"$interface\"; ip addr add \"$new_ip_address/$new_subnet_mask\" dev \"$interface\" ;;\n\
                 EXPIRE|FAIL|RELEASE|STOP) ip -4 addr flush dev \"$interface\" ;;\n\
                 esac\n. {}\n",
                hook("dhclient-exit-hook")
            ),
            // dhcpcd configures the address itself (`nogateway`: no route).
            HookedClient::Dhcpcd => format!(". {}\n", hook("dhcpcd-hook")),
        };
        format!("#!/bin/sh\n{steer}{body}exit 0\n")
    }

    fn start(self, lab: &Lab, work: &Workdir) -> Service {
        let script = work.write(&format!("{self:?}.sh"), &self.script(work));
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let script = script.display().to_string();
        let file = |name: &str| work.dir.join(name).display().to_string();
        let args: Vec<String> = match self {
            HookedClient::Udhcpc => ["busybox", "udhcpc", "-f", "-i", "wan1", "-s", &script]
                .into_iter()
                .map(String::from)
                .chain(["-t", "10", "-T", "1", "-A", "1"].map(String::from))
                .collect(),
            HookedClient::Dhclient => [
                "dhclient",
                "-4",
                "-d",
                "-sf",
                &script,
                "-lf",
                &file("dhclient.leases"),
                "-pf",
                &file("dhclient.pid"),
                "wan1",
            ]
            .map(String::from)
            .to_vec(),
            HookedClient::Dhcpcd => [
                "dhcpcd",
                "-B",
                "-4",
                "-G",
                "-f",
                "/dev/null",
                "-c",
                &script,
                "--noipv4ll",
                "wan1",
            ]
            .map(String::from)
            .to_vec(),
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Service::start(&lab.router, &work.dir, &format!("{self:?}"), &args)
    }

    /// Gives the lease back, as on shutdown or a lost line.
    fn release(self, lab: &Lab, work: &Workdir, client: &mut Service) {
        let file = |name: &str| work.dir.join(name).display().to_string();
        match self {
            HookedClient::Udhcpc => client.signal(libc::SIGUSR2),
            HookedClient::Dhclient => {
                let script = work.dir.join(format!("{self:?}.sh")).display().to_string();
                lab.router.run(&format!(
                    "dhclient -4 -r -sf {script} -lf {} -pf {} wan1",
                    file("dhclient.leases"),
                    file("dhclient.pid")
                ));
            }
            HookedClient::Dhcpcd => {
                lab.router.run("dhcpcd -4 -k wan1");
            }
        }
    }
}

/// Each client's hook hands the lease's router to steer and takes it back with the lease.
fn a_dhcp_hook_hands_in_the_gateway(kind: HookedClient) {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new(&format!("hook-{kind:?}"));
    lab.router.run("ip -4 addr flush dev wan1");
    let _server = dhcp_server(&lab, &work, "100.64.1.2", "100.64.1.1");
    let track = icmp(&[Lab::PROBE_1.to_string()]);
    let wans = wans_with_auto_gateway(
        Wan::One,
        "gateway",
        &track,
        &icmp(&[Lab::PROBE_2.to_string()]),
    );
    let members = "{ wan = \"wan1\" }, { wan = \"wan2\", metric = 2 }";
    work.write("steer.toml", &config(&work, "lan0", &wans, members, ""));
    let daemon = Daemon::start(&lab.router, &work);
    let mut client = kind.start(&lab, &work);
    let handed = |st: &serde_json::Value| {
        gateway_is(
            st,
            "wan1",
            "IPv4",
            "via 100.64.1.1 (set by `steer wan wan1 gateway`)",
        )
    };
    let start = Instant::now();
    while !work
        .steer(&["status", "--json"])
        .1
        .parse::<serde_json::Value>()
        .is_ok_and(|st| handed(&st))
    {
        assert!(
            start.elapsed() < SETTLE * 2,
            "{kind:?}: the hook did not hand in the gateway\nclient log:\n{}\ndaemon log:\n{}",
            client.log_text(),
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let main = lab.router.run("ip -4 route show default");
    assert!(!main.contains("wan1"), "{kind:?} installed a route: {main}");
    let a: IpAddr = Lab::SERVER_A.into();
    wait_traffic_from(&lab, a, 7151, "100.64.1.2".parse().unwrap(), &daemon);

    kind.release(&lab, &work, &mut client);
    wait_status(&work, &daemon, "the released lease", |st| {
        gateway_is(st, "wan1", "IPv4", "waiting for a gateway")
    });
    wait_traffic_from(&lab, a, 7152, Lab::nat_addr_v4(Wan::Two).into(), &daemon);
}

#[test]
fn the_udhcpc_hook_hands_in_the_gateway() {
    a_dhcp_hook_hands_in_the_gateway(HookedClient::Udhcpc);
}

#[test]
fn the_dhclient_hook_hands_in_the_gateway() {
    a_dhcp_hook_hands_in_the_gateway(HookedClient::Dhclient);
}

#[test]
fn the_dhcpcd_hook_hands_in_the_gateway() {
    a_dhcp_hook_hands_in_the_gateway(HookedClient::Dhcpcd);
}

/// A point-to-point link between ISP 1 and the router, carried by two socat processes over a
/// UNIX socket: the router's device (`pppoe-wan`) exists while both run, as a PPP session's.
struct Session {
    _isp: Service,
    router: Service,
}

fn session(lab: &Lab, work: &Workdir, subnet: u8) -> Session {
    session_with(lab, work, subnet, true)
}

/// [`session`]; without `router_address` the router's device has no IPv4 address, as an IPv6
/// tunnel's or a PPP session's without IPCP.
fn session_with(lab: &Lab, work: &Workdir, subnet: u8, router_address: bool) -> Session {
    let sock = work.dir.join(format!("ppp-{subnet}.sock"));
    let (peer, local) = (
        format!("10.99.0.{}", subnet + 1),
        format!("10.99.0.{}", subnet + 2),
    );
    let isp = Service::start(
        lab.isp(Wan::One),
        &work.dir,
        "socat-isp",
        &[
            "socat",
            &format!("UNIX-LISTEN:{}", sock.display()),
            &format!("TUN:{peer}/30,tun-name=ppps,iff-up"),
        ],
    );
    let deadline = Instant::now() + SETTLE;
    while !sock.exists() {
        assert!(Instant::now() < deadline, "socat did not listen");
        std::thread::sleep(Duration::from_millis(5));
    }
    let router = Service::start(
        &lab.router,
        &work.dir,
        "socat-router",
        &[
            "socat",
            &format!("UNIX-CONNECT:{}", sock.display()),
            &if router_address {
                format!("TUN:{local}/30,tun-name=pppoe-wan,iff-up")
            } else {
                "TUN,tun-name=pppoe-wan,iff-up".to_owned()
            },
        ],
    );
    // The session is up when its device is: what the tests time from here is steer's part,
    // not socat's start on a loaded machine (or a name a closing session still holds).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lab
        .router
        .try_run("ip link show dev pppoe-wan")
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the point-to-point session did not come up: pppoe-wan is missing\n\
             socat (ISP): {}\nsocat (router): {}",
            isp.log_text(),
            router.log_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Session { _isp: isp, router }
}

/// The lab with a third WAN, `ppp` on the device `pppoe-wan` ([`session`] makes it), which
/// the default policy prefers, NATed by the router and routed back by the internet.
fn ppp_lab(tag: &str) -> (Lab, Workdir) {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new(tag);
    lab.router.run(&format!(
        "nft add rule inet {NFT_TABLE} postrouting oifname pppoe-wan masquerade"
    ));
    lab.internet
        .run("ip route add 10.99.0.0/24 via 198.18.1.2 dev isp1");
    let track1 = icmp(&[Lab::PROBE_1.to_string()]);
    let track2 = icmp(&[Lab::PROBE_2.to_string()]);
    let ppp = format!(
        "[[wan]]\nname = \"ppp\"\ninterface = \"pppoe-wan\"\nmark = 0x300\ntable = 103\n[wan.track]\n{}",
        icmp(&[Lab::PROBE_1.to_string()])
    );
    let wans = format!("{}{ppp}", lab_wans(&track1, &track2));
    let members = "{ wan = \"ppp\" }, { wan = \"wan1\", metric = 2 }";
    work.write("steer.toml", &config(&work, "lan0", &wans, members, ""));
    (lab, work)
}

#[test]
fn a_point_to_point_wan_comes_goes_and_comes_back_as_a_new_device() {
    let (lab, work) = ppp_lab("ppp");
    // The daemon starts before the line is up: the WAN waits for its device.
    let daemon = Daemon::start(&lab.router, &work);
    wait_status(&work, &daemon, "no device at start", |st| {
        gateway_is(
            st,
            "ppp",
            "IPv4",
            "waiting for a gateway: interface pppoe-wan does not exist",
        )
    });
    assert!(
        daemon
            .log_text()
            .contains("WANs up: wan1, wan2; down: none; waiting for a gateway: ppp"),
        "the ready line: {}",
        daemon.log_text()
    );
    let mut first = session(&lab, &work, 0);
    wait_status(
        &work,
        &daemon,
        "a direct route on the point-to-point link",
        |st| gateway_is(st, "ppp", "IPv4", "direct (point-to-point link)"),
    );
    let a: IpAddr = Lab::SERVER_A.into();
    wait_traffic_from(&lab, a, 7201, "10.99.0.2".parse().unwrap(), &daemon);

    // The session drops: the device is gone, traffic takes wan1.
    first.router.stop();
    wait_status(&work, &daemon, "the gone device waits", |st| {
        gateway_is(
            st,
            "ppp",
            "IPv4",
            "waiting for a gateway: interface pppoe-wan does not exist",
        )
    });
    wait_traffic_from(&lab, a, 7202, Lab::nat_addr_v4(Wan::One).into(), &daemon);
    drop(first);
    // One event, said once: the carrier going and the gateway going with the device are one
    // outage, with one down line and one flush (the second used to move nothing, flush again
    // and log a second "down").
    let log = daemon.log_text();
    let downs: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ppp down") || l.contains("ppp IPv4 down"))
        .collect();
    assert_eq!(downs.len(), 1, "{log}");
    let since_up = &log[log.find("ppp IPv4 up").expect("the session came up")..];
    let flushes = since_up.matches("ppp: conntrack").count();
    assert_eq!(flushes, 1, "{log}");
    // ... and the gateway that went with the device once, in the line that says what it
    // moved (or that it was down already, when the carrier went first): not in a line of its
    // own as well, nor for IPv6, which it never had (trial t9b).
    let gone: Vec<&str> = since_up
        .lines()
        .filter(|l| l.contains("pppoe-wan does not exist"))
        .collect();
    assert!(gone.len() == 1 && gone[0].contains("ppp IPv4"), "{log}");

    // A new session: a new device, a new index, a new address.
    let up = Instant::now();
    let _second = session(&lab, &work, 4);
    let routed = wait_status(&work, &daemon, "the new device", |st| {
        gateway_is(st, "ppp", "IPv4", "direct")
    });
    let traffic = wait_traffic_from(&lab, a, 7203, "10.99.0.6".parse().unwrap(), &daemon);
    eprintln!(
        "reconnected session: steer routed it {routed:?} after the new device came up, traffic \
         flowed {:?} after that (from the socat start {:?})",
        traffic,
        up.elapsed()
    );
}

/// A point-to-point WAN whose device has no IPv4 address (an IPv6 tunnel such as 6in4, a PPP
/// session without IPCP) carries no IPv4: the family waits and says why, steer's table of it
/// holds no IPv4 route, and IPv4 traffic its policy prefers it for takes the next WAN (it went
/// into the device and was lost). An address given to the device brings IPv4 in.
#[test]
fn a_point_to_point_wan_without_an_ipv4_address_carries_no_ipv4_until_it_has_one() {
    let (lab, work) = ppp_lab("ppp-noaddr");
    let daemon = Daemon::start(&lab.router, &work);
    let _session = session_with(&lab, &work, 0, false);
    wait_status(&work, &daemon, "IPv4 waits for an address", |st| {
        gateway_is(
            st,
            "ppp",
            "IPv4",
            "waiting for a gateway: the point-to-point link pppoe-wan has no IPv4 address, so \
             it carries no IPv4",
        )
    });
    // Its state says what it waits for before what its probes say (when they go out at all),
    // which decides nothing yet.
    wait_status(&work, &daemon, "the waiting family's detail", |st| {
        family_of(st, "ppp", "IPv4")["detail"]
            .as_str()
            .is_some_and(|d| {
                d.starts_with("for a gateway; the line's health meanwhile: ")
                    || d.starts_with("for a gateway; not probed meanwhile")
            })
    });
    let routes = lab.router.run("ip -4 route show table all");
    assert!(
        !routes.lines().any(|l| l.contains("table 103")),
        "no IPv4 route of the WAN without an IPv4 address: {routes}"
    );
    let a: IpAddr = Lab::SERVER_A.into();
    wait_traffic_from(&lab, a, 7211, Lab::nat_addr_v4(Wan::One).into(), &daemon);

    lab.router.run("ip addr add 10.99.0.2/30 dev pppoe-wan");
    wait_status(&work, &daemon, "the address brings IPv4 in", |st| {
        gateway_is(st, "ppp", "IPv4", "direct (point-to-point link)")
    });
    wait_traffic_from(&lab, a, 7212, "10.99.0.2".parse().unwrap(), &daemon);
}

#[test]
fn router_advertisements_give_the_ipv6_gateway_and_steer_follows_a_new_router() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("ra");
    lab.router.run("sysctl -qw net.ipv6.conf.wan2.accept_ra=2");
    let radvd_conf = work.write(
        "radvd.conf",
        "interface down {\n AdvSendAdvert on;\n MinRtrAdvInterval 3;\n MaxRtrAdvInterval 4;\n \
         AdvDefaultLifetime 30;\n prefix fd64:2::/64 { AdvAutonomous off; };\n};\n",
    );
    let radvd = |tag: &str| {
        Service::start(
            lab.isp(Wan::Two),
            &work.dir,
            "radvd",
            &[
                "radvd",
                "-n",
                "-m",
                "stderr",
                "-C",
                &radvd_conf.display().to_string(),
                "-p",
                &work
                    .dir
                    .join(format!("radvd-{tag}.pid"))
                    .display()
                    .to_string(),
            ],
        )
    };
    let mut first = radvd("first");
    let track1 = icmp(&[Lab::PROBE_1.to_string(), Lab::PROBE_1_6.to_string()]);
    let track2 = icmp(&[Lab::PROBE_2.to_string(), Lab::PROBE_2_6.to_string()]);
    let wans = wans_with_auto_gateway(Wan::Two, "gateway6", &track1, &track2);
    let members = "{ wan = \"wan1\" }, { wan = \"wan2\", metric = 2 }";
    work.write("steer.toml", &config(&work, "lan0", &wans, members, ""));
    let daemon = Daemon::start(&lab.router, &work);
    wait_status(&work, &daemon, "the advertised router", |st| {
        gateway_is(st, "wan2", "IPv6", "via fe80::")
            && family_of(st, "wan2", "IPv6")["gateway"]
                .as_str()
                .is_some_and(|g| g.contains("proto ra"))
    });
    let b6: IpAddr = Lab::SERVER_B6.into();
    wait_traffic_from(&lab, b6, 7301, Lab::nat_addr_v6(Wan::Two).into(), &daemon);

    // The router goes away (radvd says so as it stops): IPv6 waits, IPv4 is untouched. A
    // family waiting for its gateway has failed nothing: the line is up on IPv4, not partial.
    first.stop();
    wait_status(&work, &daemon, "no IPv6 router", |st| {
        gateway_is(st, "wan2", "IPv6", "waiting for a gateway")
            && gateway_is(st, "wan2", "IPv4", "via")
            && family_of(st, "wan2", "IPv6")["state"] == "waiting"
            && wan_of(st, "wan2")["state"] == "up"
    });
    wait_traffic_from(&lab, b6, 7302, Lab::nat_addr_v6(Wan::One).into(), &daemon);
    let b: IpAddr = Lab::SERVER_B.into();
    wait_traffic_from(&lab, b, 7303, Lab::nat_addr_v4(Wan::Two).into(), &daemon);

    // Another router on the link: another link-local address.
    lab.isp(Wan::Two)
        .run("ip -6 addr flush dev down scope link && ip -6 addr add fe80::99/64 dev down nodad");
    let _second = radvd("second");
    let learned = wait_status(&work, &daemon, "the new router", |st| {
        gateway_is(st, "wan2", "IPv6", "via fe80::99")
    });
    eprintln!("a new IPv6 router: steer's routing followed {learned:?} after radvd started");
    let routes = lab.router.run("ip -6 route show table 102");
    assert!(routes.contains("default via fe80::99 dev wan2"), "{routes}");
    wait_traffic_from(&lab, b6, 7304, Lab::nat_addr_v6(Wan::Two).into(), &daemon);
}

/// OpenWrt's netifd installs a line's IPv6 default only for the prefixes delegated by it
/// (`default from PREFIX via ROUTER`): steer takes the line's next hop from it all the same.
#[test]
fn a_source_specific_ipv6_default_as_netifd_installs_it_gives_the_gateway() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("from");
    let track1 = icmp(&[Lab::PROBE_1.to_string(), Lab::PROBE_1_6.to_string()]);
    let track2 = icmp(&[Lab::PROBE_2.to_string(), Lab::PROBE_2_6.to_string()]);
    let wans = wans_with_auto_gateway(Wan::Two, "gateway6", &track1, &track2);
    let members = "{ wan = \"wan1\" }, { wan = \"wan2\", metric = 2 }";
    work.write("steer.toml", &config(&work, "lan0", &wans, members, ""));
    let daemon = Daemon::start(&lab.router, &work);
    wait_status(&work, &daemon, "no IPv6 gateway yet", |st| {
        gateway_is(st, "wan2", "IPv6", "waiting for a gateway")
    });
    lab.router.run(&format!(
        "ip -6 route add default from fd64:2::/64 via {} dev wan2 proto static metric 512",
        Lab::gateway_v6(Wan::Two)
    ));
    let learned = wait_status(&work, &daemon, "the netifd route's next hop", |st| {
        gateway_is(
            st,
            "wan2",
            "IPv6",
            &format!(
                "via {} (learned: table main, proto static, from fd64:2::/64)",
                Lab::gateway_v6(Wan::Two)
            ),
        )
    });
    eprintln!("a source-specific IPv6 default: steer's routing followed {learned:?} after it");
    let b6: IpAddr = Lab::SERVER_B6.into();
    wait_traffic_from(&lab, b6, 7351, Lab::nat_addr_v6(Wan::Two).into(), &daemon);
}

#[test]
fn an_outage_of_one_family_moves_only_that_family() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("family");
    let track1 = icmp(&[Lab::PROBE_1.to_string(), Lab::PROBE_1_6.to_string()]);
    let track2 = icmp(&[Lab::PROBE_2.to_string(), Lab::PROBE_2_6.to_string()]);
    let members = "{ wan = \"wan1\" }, { wan = \"wan2\", metric = 2 }";
    work.write(
        "steer.toml",
        &config(&work, "lan0", &lab_wans(&track1, &track2), members, ""),
    );
    let daemon = Daemon::start(&lab.router, &work);
    let (a, a6): (IpAddr, IpAddr) = (Lab::SERVER_A.into(), Lab::SERVER_A6.into());
    for (nfproto, down, up) in [("ipv4", "IPv4", "IPv6"), ("ipv6", "IPv6", "IPv4")] {
        lab.isp(Wan::One).run(&format!(
            "nft add rule inet {NFT_TABLE} blackhole meta nfproto {nfproto} drop"
        ));
        wait_status(&work, &daemon, &format!("{down} of wan1 down"), |st| {
            family_of(st, "wan1", down)["state"] == "down"
                && family_of(st, "wan1", up)["state"] == "up"
        });
        let (moved, stays) = if down == "IPv4" { (a, a6) } else { (a6, a) };
        let other = |ip: IpAddr, w: Wan| -> IpAddr {
            if ip.is_ipv4() {
                Lab::nat_addr_v4(w).into()
            } else {
                Lab::nat_addr_v6(w).into()
            }
        };
        wait_traffic_from(&lab, moved, 7401, other(moved, Wan::Two), &daemon);
        wait_traffic_from(&lab, stays, 7402, other(stays, Wan::One), &daemon);
        // `explain` says where each family goes and the states it was decided from.
        for (ip, wan, wan1_state) in [(moved, "wan2", "down"), (stays, "wan1", "up")] {
            let (ok, out, err) = work.steer(&["explain", &ip.to_string(), "--json"]);
            assert!(ok, "{err}");
            let e: serde_json::Value = serde_json::from_str(&out).expect("explain --json");
            let wan1 = e["health"]
                .as_array()
                .and_then(|h| h.iter().find(|w| w["wan"] == "wan1"))
                .unwrap_or_else(|| panic!("no wan1 health in {out}"));
            assert!(
                e["wan"].as_str().is_some_and(|w| w.contains(wan)) && wan1["state"] == wan1_state,
                "{ip} while {down} of wan1 is down: {out}"
            );
        }
        lab.restore_upstream(Wan::One);
        wait_status(&work, &daemon, "wan1 back", |st| {
            family_of(st, "wan1", down)["state"] == "up"
        });
    }
    assert!(
        daemon.log_text().contains("wan1 IPv4 down")
            && daemon.log_text().contains("wan1 IPv6 down"),
        "{}",
        daemon.log_text()
    );
}

#[test]
fn a_lan_bridge_created_after_the_daemon_started_gets_the_classifier() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("latelan");
    let track1 = icmp(&[Lab::PROBE_1.to_string()]);
    let track2 = icmp(&[Lab::PROBE_2.to_string()]);
    let members = "{ wan = \"wan1\" }, { wan = \"wan2\", metric = 2 }";
    work.write(
        "steer.toml",
        &config(&work, "br-late", &lab_wans(&track1, &track2), members, ""),
    );
    let daemon = Daemon::start(&lab.router, &work);
    daemon.wait_log("br-late: LAN interface does not exist yet", SETTLE);
    std::thread::sleep(Duration::from_secs(1));
    let created = Instant::now();
    lab.router.run(&format!(
        "ip link add br-late type bridge && ip link set br-late up && \
         ip addr flush dev lan0 && ip link set lan0 master br-late && \
         ip addr add {}/24 dev br-late && ip -6 addr add {}/64 dev br-late nodad",
        Lab::LAN_GATEWAY_V4,
        Lab::LAN_GATEWAY_V6
    ));
    let attached = wait_status(&work, &daemon, "the bridge attached", |st| {
        st["lan"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|l| l["interface"] == "br-late" && l["problem"].is_null())
    });
    eprintln!(
        "a late LAN bridge: classifier attached {attached:?} after it was created ({:?} in all)",
        created.elapsed()
    );
    // Steering works through it: the bypass set leaves by wan2.
    let b: IpAddr = Lab::SERVER_B.into();
    wait_traffic_from(&lab, b, 7501, Lab::nat_addr_v4(Wan::Two).into(), &daemon);
}

/// A device renamed away is gone for steer (no classifier on a LAN interface that is not
/// `lan0` any more, a WAN waits for its device) until its name comes back.
#[test]
fn a_device_renamed_away_is_gone_until_its_name_returns() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("rename");
    let track1 = icmp(&[Lab::PROBE_1.to_string()]);
    let track2 = icmp(&[Lab::PROBE_2.to_string()]);
    let members = "{ wan = \"wan1\" }, { wan = \"wan2\", metric = 2 }";
    work.write(
        "steer.toml",
        &config(&work, "lan0", &lab_wans(&track1, &track2), members, ""),
    );
    // Unsteered traffic leaves by wan1, steered bypass traffic by wan2.
    lab.set_main_default(Wan::One);
    let daemon = Daemon::start(&lab.router, &work);
    let b: IpAddr = Lab::SERVER_B.into();
    let (via1, via2): (IpAddr, IpAddr) = (
        Lab::nat_addr_v4(Wan::One).into(),
        Lab::nat_addr_v4(Wan::Two).into(),
    );
    wait_traffic_from(&lab, b, 7601, via2, &daemon);
    let rename = |from: &str, to: &str| {
        lab.router.run(&format!(
            "ip link set {from} down && ip link set {from} name {to} && ip link set {to} up"
        ));
    };
    let lan_attached = |st: &serde_json::Value, name: &str| {
        st["lan"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|l| l["interface"] == name && l["problem"].is_null())
    };

    rename("lan0", "lan0x");
    wait_status(&work, &daemon, "lan0 gone", |st| !lan_attached(st, "lan0"));
    wait_traffic_from(&lab, b, 7602, via1, &daemon);
    rename("lan0x", "lan0");
    wait_status(&work, &daemon, "lan0 back", |st| lan_attached(st, "lan0"));
    wait_traffic_from(&lab, b, 7603, via2, &daemon);

    rename("wan2", "wan2x");
    wait_status(&work, &daemon, "wan2 gone", |st| {
        gateway_is(
            st,
            "wan2",
            "IPv4",
            "waiting for a gateway: interface wan2 does not exist",
        )
    });
    wait_traffic_from(&lab, b, 7604, via1, &daemon);
    assert!(
        !lab.router.run("ip route show table 102").contains("wan2x"),
        "steer's table of wan2 points at the renamed device"
    );
    rename("wan2x", "wan2");
    wait_status(&work, &daemon, "wan2 back", |st| {
        family_of(st, "wan2", "IPv4")["state"] == "up"
    });
    wait_traffic_from(&lab, b, 7605, via2, &daemon);
}

/// A WAN interface set down by hand (`ip link set dev wan2 down`): the kernel removes its
/// routes and refuses them back, which is no error. Each route says once that it waits for the
/// link, is not tried again at the periodic checks (they logged two ERROR lines every 10 s),
/// and goes back in when the link comes up.
#[test]
fn routes_of_an_interface_set_down_wait_for_it_quietly_and_come_back() {
    let s = steer_tests::scenario::Scenario::start(
        "admin-down",
        &steer_tests::scenario::Options::default(),
    );
    s.lab.router.run("ip link set dev wan2 down");
    let waits = |log: &str| {
        log.lines()
            .filter(|l| l.contains("waits for wan2 to come up (wan2 is down"))
            .count()
    };
    let deadline = Instant::now() + SETTLE;
    while waits(&s.daemon.log_text()) < 2 {
        assert!(
            Instant::now() < deadline,
            "no line that wan2's routes wait:\n{}",
            s.daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Past a periodic check (every 10 s): said once, and no error.
    std::thread::sleep(Duration::from_secs(11));
    let log = s.daemon.log_text();
    assert_eq!(waits(&log), 2, "one line per family, once:\n{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("ERROR") && l.contains("routing")),
        "{log}"
    );
    let st = s.status();
    let items = st["routing"]["items"].to_string();
    assert!(
        items.contains("dev wan2 table 102 (v4): missing (interface wan2 is down)"),
        "{items}"
    );
    s.lab.router.run("ip link set dev wan2 up");
    s.wait_until("routing in sync with wan2 up", SETTLE, |st| {
        st["routing"]["in_sync"] == true
    });
}

/// A reload that removes a WAN: its connections keep its mark, which no rule routes any more
/// (they would leave by the main table's default). They are flushed once the new policy is
/// live, as when a WAN goes down, and the log says how many; the other WAN's stay. They used
/// to stay (idle entries with `mark=512`, no flush logged).
#[test]
fn a_reload_that_removes_a_wan_flushes_its_connections() {
    let s = steer_tests::scenario::Scenario::start(
        "remove-wan",
        &steer_tests::scenario::Options::default(),
    );
    let count = |mark: &str, port: &str| {
        let out = s
            .lab
            .router
            .try_run(&format!("conntrack -L -m {mark}/0xff00 2>/dev/null"));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&format!("dport={port}")))
            .count()
    };
    // The bypass destination by wan2, the default one by wan1.
    assert_eq!(
        steer_tests::lab::udp_via(&s.lab, Lab::SERVER_B.into(), 6201, 5),
        [0, 5]
    );
    assert_eq!(
        steer_tests::lab::udp_via(&s.lab, Lab::SERVER_A.into(), 6202, 5),
        [5, 0]
    );
    assert_eq!(
        count("0x200", "6201"),
        1,
        "wan2's connection carries its mark"
    );
    assert_eq!(
        count("0x100", "6202"),
        1,
        "wan1's connection carries its mark"
    );
    // The same configuration without wan2.
    let wans = lab_wans(
        &icmp(&[Lab::PROBE_1.to_string()]),
        &icmp(&[Lab::PROBE_2.to_string()]),
    );
    let wan1 = &wans[..wans.rfind("[[wan]]").expect("two WANs")];
    s.work.write(
        "steer.toml",
        &format!(
            "[general]\nlan = [\"{lan}\"]\nmark_mask = 0xff00\n{pins}\n{wan1}\n\
             [[policy]]\nname = \"wan1-first\"\nmembers = [{{ wan = \"wan1\" }}]\n\n\
             [default]\npolicy = \"wan1-first\"\n\n{control}",
            lan = Lab::LAN_IFACE,
            pins = s.work.private_paths(),
            control = s.work.control_section(),
        ),
    );
    let out = s.steer(&["reload"]);
    assert!(
        out.contains(
            "wan2 (removed by the reload): 1 conntrack entries with mark 0x200/0xff00 flushed"
        ),
        "{out}\n{}",
        s.daemon.log_text()
    );
    assert_eq!(count("0x200", "6201"), 0, "wan2's connection is gone");
    assert_eq!(count("0x100", "6202"), 1, "wan1's connection stays");
    assert!(
        s.daemon
            .log_text()
            .contains("wan2 (removed by the reload): 1 conntrack entries"),
        "{}",
        s.daemon.log_text()
    );
}

/// A gateway handed in while the socket's filesystem is full was answered as a plain success
/// (only the daemon's log said it was not saved, so a restarted daemon waits for the hook
/// again), and a 0-byte `steer.gateways.tmp` stayed. The hook is told, as `steer set` is.
#[test]
fn a_gateway_that_cannot_be_saved_is_said_to_the_client() {
    steer_tests::require_root();
    let lab = Lab::new();
    let mut work = Workdir::new("gw-full");
    let full = work.dir.join("full");
    std::fs::create_dir(&full).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
        .arg(&full)
        .status()
        .unwrap();
    assert!(status.success(), "mount tmpfs");
    let _unmount = steer_tests::Unmount(full.clone());
    work.socket = full.join("steer.sock");
    let wans = wans_with_auto_gateway(
        Wan::One,
        "gateway",
        &icmp(&[Lab::PROBE_1.to_string()]),
        &icmp(&[Lab::PROBE_2.to_string()]),
    );
    let members = "{ wan = \"wan1\" }, { wan = \"wan2\", metric = 2 }";
    work.write("steer.toml", &config(&work, "lan0", &wans, members, ""));
    let mut daemon = Daemon::start(&lab.router, &work);
    // Fill the filesystem (dd ends with "No space left on device").
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=4k", "status=none"])
        .arg(format!("of={}", full.join("fill").display()))
        .status();
    let out = work.steer_ok(&[
        "wan",
        "wan1",
        "gateway",
        &Lab::gateway_v4(Wan::One).to_string(),
    ]);
    assert!(
        out.contains("in use but not saved")
            && out.contains("steer.gateways")
            && out.contains("No space left on device"),
        "{out}"
    );
    assert!(
        !full.join("steer.gateways.tmp").exists(),
        "a temporary file was left"
    );
    std::fs::remove_file(full.join("fill")).unwrap();
    let out = work.stop_in(&lab.router);
    assert!(out.contains("steer stopped"), "{out}");
    assert!(daemon.signal_and_wait(0, Duration::from_secs(10)));
}

/// The gateways file and the overrides file next to the control socket, as text ("" when
/// there is none).
fn kept_files(work: &Workdir) -> (String, String) {
    let read = |ext: &str| std::fs::read_to_string(work.socket.with_extension(ext));
    (
        read("gateways").unwrap_or_default(),
        read("overrides").unwrap_or_default(),
    )
}

/// State handed in for a line follows the line across a reload that renames its WAN on the
/// same interface: the gateway a DHCP hook handed in for wan1 stays (its route stayed out
/// of table 101, traffic moved to wan2 until the next renewal, and the gateways file kept the
/// dead name for a later WAN of that name to inherit), and `steer wan wan2 down` stays (it
/// ended silently). The reload says so; the files hold the new names only. Removing the WAN
/// then drops its entries at once, and a WAN given the old name later inherits nothing.
#[test]
fn a_reload_that_renames_a_wan_keeps_its_handed_in_gateway_and_override() {
    let (lab, work, daemon) = hand_in_lab("rename-line", false);
    let gw4 = Lab::gateway_v4(Wan::One);
    work.steer_ok(&["wan", "wan1", "gateway", &gw4.to_string()]);
    work.steer_ok(&["wan", "wan2", "down"]);
    wait_status(&work, &daemon, "the hand-in, wan2 forced down", |st| {
        gateway_is(st, "wan1", "IPv4", &format!("via {gw4} (set by"))
            && wan_of(st, "wan2")["state"] == "down"
    });
    let text = std::fs::read_to_string(work.config()).unwrap();
    let text = renamed(&renamed(&text, "wan1", "isp1"), "wan2", "isp2");
    work.write("steer.toml", &text);
    let out = work.steer_ok(&["reload"]);
    assert!(
        out.contains(&format!(
            "isp1: the gateway {gw4} handed in for wan1 (`steer wan wan1 gateway`) is kept: \
             wan1 is named isp1 now, on the same interface"
        )) && out.contains(
            "isp2: `steer wan wan2 down` is kept: wan2 is named isp2 now, on the same interface \
             wan2; it stays forced down until `steer wan isp2 auto`"
        ),
        "{out}"
    );
    wait_status(
        &work,
        &daemon,
        "the renamed WANs keep what was handed in",
        |st| {
            gateway_is(st, "isp1", "IPv4", &format!("via {gw4} (set by"))
                && wan_of(st, "isp1")["state"] == "up"
                && wan_of(st, "isp2")["state"] == "down"
        },
    );
    let table = lab.router.run("ip -4 route show table 101");
    assert!(
        table.contains(&format!("default via {gw4} dev wan1")),
        "{table}"
    );
    let a: IpAddr = Lab::SERVER_A.into();
    wait_traffic_from(&lab, a, 7321, Lab::nat_addr_v4(Wan::One).into(), &daemon);
    let (gateways, overrides) = kept_files(&work);
    assert!(
        gateways.contains("isp1") && !gateways.contains("\"wan1\",\""),
        "{gateways}"
    );
    assert!(
        overrides.contains("isp2 down wan2") && !overrides.contains("\nwan2 "),
        "{overrides}"
    );

    // isp2 removed: its override goes at once, and a WAN later given that name (here the
    // same line under its old name) starts under health tracking.
    let without = text
        .replace("{ wan = \"isp2\", metric = 2 }", "")
        .replace("{ wan = \"isp2\" }, ", "");
    let start = without
        .find("[[wan]]\nname = \"isp2\"")
        .expect("isp2's table");
    let end = start + without[start..].find("[[policy]]").expect("after the WANs");
    let without = format!("{}{}", &without[..start], &without[end..]);
    work.write("steer.toml", &without);
    let out = work.steer_ok(&["reload"]);
    assert!(
        out.contains("isp2: `steer wan isp2 down` is dropped: the configuration has no WAN `isp2`"),
        "{out}"
    );
    assert_eq!(kept_files(&work).1, "", "no override under a dead name");
    work.write("steer.toml", &text);
    work.steer_ok(&["reload"]);
    wait_status(&work, &daemon, "a new isp2 inherits nothing", |st| {
        wan_of(st, "isp2")["state"] == "up"
    });

    // A restart over a file renamed meanwhile says and does the same as the reload.
    work.steer_ok(&["wan", "isp2", "down"]);
    let mut daemon = daemon;
    assert!(
        daemon.signal_and_wait(libc::SIGTERM, SETTLE),
        "the daemon stops"
    );
    let back = renamed(&renamed(&text, "isp1", "wan1"), "isp2", "wan2");
    work.write("steer.toml", &back);
    let daemon = Daemon::start(&lab.router, &work);
    daemon.wait_log(
        &format!(
            "wan1: the gateway {gw4} handed in for wan1 (`steer wan isp1 gateway`) is kept: \
             isp1 is named wan1 now, on the same interface"
        ),
        SETTLE,
    );
    daemon.wait_log(
        "wan2: `steer wan isp2 down` is kept: isp2 is named wan2 now, on the same interface",
        SETTLE,
    );
    wait_status(&work, &daemon, "kept across the restart", |st| {
        gateway_is(st, "wan1", "IPv4", &format!("via {gw4} (set by"))
            && wan_of(st, "wan2")["state"] == "down"
    });
}

/// A reload that moves a WAN to another interface (another line) drops the gateway a DHCP
/// hook handed in for the old one and its `steer wan NAME down`, and says so with what to do:
/// the gateway was tried on the new interface ("Network is unreachable"), and the route via
/// the old interface stayed in the WAN's table through every periodic check, so a flow held to
/// the WAN's mark kept leaving by an interface that was no longer a WAN. A fresh start with
/// the same file leaves the table empty; so does the reload now.
#[test]
fn a_reload_that_moves_a_wan_drops_its_handed_in_gateway_and_override() {
    let (lab, work, daemon) = hand_in_lab("move-line", false);
    lab.router.run(
        "ip link add mv9 type veth peer name mv9p && ip link set mv9p up && \
         ip addr add 10.104.0.2/24 dev mv9 && ip link set mv9 up",
    );
    let gw4 = Lab::gateway_v4(Wan::One);
    work.steer_ok(&["wan", "wan1", "gateway", &gw4.to_string()]);
    work.steer_ok(&["wan", "wan1", "down"]);
    wait_status(&work, &daemon, "the hand-in", |st| {
        gateway_is(st, "wan1", "IPv4", &format!("via {gw4} (set by"))
    });
    let text = std::fs::read_to_string(work.config()).unwrap();
    work.write(
        "steer.toml",
        &text.replacen("interface = \"wan1\"", "interface = \"mv9\"", 1),
    );
    let out = work.steer_ok(&["reload"]);
    assert!(
        out.contains(&format!(
            "wan1: the gateway {gw4} handed in for wan1 is dropped: wan1 is on mv9 now, another \
             line. Its DHCP client hands a gateway in at its next renewal; to route it now, run \
             `steer wan wan1 gateway ADDR`"
        )) && out.contains(
            "wan1: `steer wan wan1 down` is dropped: it was set while wan1 was on wan1, and wan1 \
             is on mv9 now"
        ),
        "{out}"
    );
    assert!(!out.contains("Network is unreachable"), "{out}");
    wait_status(&work, &daemon, "wan1 waits on mv9", |st| {
        gateway_is(st, "wan1", "IPv4", "waiting for a gateway")
    });
    let table = lab.router.run("ip -4 route show table 101");
    assert_eq!(table.trim(), "", "nothing via the old interface: {table}");
    assert_eq!(kept_files(&work), (String::new(), String::new()));
}

/// A route steer placed whose replacement the kernel refuses goes all the same: moving a WAN
/// with a configured gateway to an interface that is down (not judged at reload: its subnets
/// are not known) left `default via GW dev wan1` in the WAN's table, through every
/// reconcile, for an interface that is no longer the WAN's.
#[test]
fn a_route_whose_replacement_is_refused_does_not_stay() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("refused-replace");
    let wans = lab_wans(
        &icmp(&[Lab::PROBE_1.to_string()]),
        &icmp(&[Lab::PROBE_2.to_string()]),
    );
    let members = "{ wan = \"wan1\" }, { wan = \"wan2\", metric = 2 }";
    let text = config(&work, "lan0", &wans, members, "");
    work.write("steer.toml", &text);
    let daemon = Daemon::start(&lab.router, &work);
    let gw4 = Lab::gateway_v4(Wan::One);
    wait_status(&work, &daemon, "the configured gateway", |st| {
        gateway_is(st, "wan1", "IPv4", &format!("via {gw4}"))
    });
    lab.router
        .run("ip link add mv8 type veth peer name mv8p && ip link set mv8p up");
    work.write(
        "steer.toml",
        &text.replacen("interface = \"wan1\"", "interface = \"mv8\"", 1),
    );
    work.steer_ok(&["reload"]);
    let table = lab.router.run("ip -4 route show table 101");
    assert!(!table.contains("dev wan1"), "the old route stayed: {table}");
    // Up, with a subnet the gateway is not on: refused at every reconcile, nothing stays.
    lab.router
        .run("ip addr add 10.108.0.2/24 dev mv8 && ip link set mv8 up");
    work.steer(&["status"]);
    let table = lab.router.run("ip -4 route show table 101");
    assert!(!table.contains("dev wan1"), "{table}");
}
