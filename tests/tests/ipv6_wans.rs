//! IPv6 source handling per WAN (issue 21), with real traffic through the namespace lab in its
//! delegated-prefix form ([`Lab::with_delegated_prefixes`]): the lab does not translate IPv6,
//! ISP N routes 2001:db8:N::/56 to the router and drops what the router sends from anywhere else
//! (BCP38). steer's `[ipv6]` section does the translation: `npt` maps the LAN's fd10::/64 into
//! the prefix of the WAN a packet leaves by (and back for connections from the internet),
//! `masquerade` gives IPv6 the WAN's own address; in both modes a packet that would leave a WAN
//! with a source that WAN cannot carry is dropped and counted by the router itself
//! (`foreign_source_<wan>` in steer's table `inet steer`), so it never reaches an ISP.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use steer_tests::{
    ipv6::{
        self, N, SETTLE, a6, assert_all_from, assert_no_foreign_source_reached_an_isp,
        assert_udp_from, b6, client_in, prefix, router_foreign, router_state,
    },
    lab::{
        Arrival, Lab, Stream, Wan, nft_counter_packets,
        tcp::{Conversation, EchoServer},
        udp_arrivals, udp_arrivals_from, udp_via,
    },
    scenario::Scenario,
};

/// The one port npt lets connections from the internet reach LAN hosts on (`inbound_tcp`).
const INBOUND_PORT: u16 = 7241;
/// `npt` with the lab client's LAN prefix (fd10::2/64) and [`INBOUND_PORT`] open inbound.
const NPT: &str = "[ipv6]\nmode = \"npt\"\nlan_prefix = \"fd10::/64\"\ninbound_tcp = [\"7241\"]\n";
/// NAT66 to each WAN's address.
const MASQUERADE: &str = "[ipv6]\nmode = \"masquerade\"\n";

/// steer on the delegated-prefix lab in `mode`, each WAN's `prefix6` what its ISP delegates.
fn start(tag: &str, mode: &str) -> Scenario {
    let [d1, d2] = Wan::ALL.map(|w| Lab::initial_delegation(w).to_string());
    ipv6::start(tag, mode, [&d1, &d2])
}

#[test]
fn the_delegated_prefix_lab_routes_each_prefix_to_the_router_and_its_isps_drop_foreign_sources() {
    // The lab itself, without steer: what the tests below rely on to fail when steer is wrong.
    steer_tests::require_root();
    let lab = Lab::with_delegated_prefixes();
    lab.set_main_default(Wan::One);
    // IPv4 is still masqueraded by the lab.
    assert_eq!(udp_via(&lab, Lab::SERVER_A.into(), 7101, N), [N, 0]);
    // IPv6 is not: the client's fd10::2 is foreign to ISP 1, which drops and counts it.
    let got = udp_arrivals(&lab, a6(), 7102, N);
    assert!(got.is_empty(), "fd10::2 reached the internet: {got:?}");
    assert!(
        lab.isp_foreign_sources(Wan::One) >= N as u64,
        "ISP 1 counted {} foreign sources",
        lab.isp_foreign_sources(Wan::One)
    );
    assert_eq!(lab.isp_foreign_sources(Wan::Two), 0);

    // A client address in ISP 1's delegation passes and is routed back to the router.
    let p1 = lab.delegation(Wan::One);
    assert_eq!(p1, prefix("2001:db8:1::/56"));
    let inside = client_in(p1);
    let add_client_address = |addr: Ipv6Addr| {
        lab.client.run(&format!(
            "ip -6 addr add {addr}/64 dev {} nodad",
            Lab::CLIENT_IFACE
        ));
        lab.router.run(&format!(
            "ip -6 route add {addr}/128 dev {}",
            Lab::LAN_IFACE
        ));
    };
    add_client_address(inside);
    let got = udp_arrivals_from(&lab, inside.into(), a6(), 7103, N);
    assert_eq!(got.len(), N, "{got:?}");
    assert!(
        got.iter()
            .all(|a| a.link == Some(Wan::One) && a.from.ip() == IpAddr::V6(inside)),
        "{got:?}"
    );
    let ping = |target: Ipv6Addr| {
        lab.internet
            .try_run(&format!("ping -q -n -c 1 -w 2 {target}"))
            .status
            .success()
    };
    assert!(ping(inside), "the internet reaches {inside} through ISP 1");
    let before = lab.isp_foreign_sources(Wan::One);

    // Renumbered: the old prefix is foreign and routed nowhere, the new one works.
    let renumbered = prefix("2001:db8:11::/56");
    lab.delegate(Wan::One, renumbered);
    assert_eq!(lab.delegation(Wan::One), renumbered);
    let got = udp_arrivals_from(&lab, inside.into(), a6(), 7104, N);
    assert!(
        got.is_empty(),
        "the old prefix still reached the server: {got:?}"
    );
    assert!(lab.isp_foreign_sources(Wan::One) >= before + N as u64);
    assert!(!ping(inside), "{inside} is no longer routed to the router");
    let new = client_in(renumbered);
    add_client_address(new);
    let got = udp_arrivals_from(&lab, new.into(), a6(), 7105, N);
    assert_eq!(got.len(), N, "{got:?}");
    assert!(
        got.iter()
            .all(|a| a.from.ip() == IpAddr::V6(new) && a.link == Some(Wan::One)),
        "{got:?}"
    );
    assert!(ping(new), "the internet reaches {new} through ISP 1");
    assert_eq!(lab.isp_foreign_sources(Wan::Two), 0);
}

#[test]
fn npt_gives_the_client_the_prefix_of_the_wan_that_carries_each_flow() {
    let s = start("npt", NPT);
    let (p1, p2) = (s.lab.delegation(Wan::One), s.lab.delegation(Wan::Two));
    // The default destination leaves by wan1, the bypass set's by wan2: each with the client's
    // address translated into that WAN's prefix, host bits kept.
    assert_udp_from(&s, a6(), 7201, Wan::One, client_in(p1));
    assert_udp_from(&s, b6(), 7202, Wan::Two, client_in(p2));
    assert_no_foreign_source_reached_an_isp(&s, "after steering");
    // The guard's counters exist for both WANs.
    for w in Wan::ALL {
        router_foreign(&s, w);
    }
    let status = s.steer(&["status"]);
    let line = status
        .lines()
        .find(|l| l.to_lowercase().contains("ipv6") && l.contains("npt"))
        .unwrap_or_else(|| panic!("no ipv6 line with the mode in steer status:\n{status}"));
    for p in [p1, p2] {
        assert!(
            status.contains(&p.to_string()),
            "{p} not in steer status ({line}):\n{status}"
        );
    }
}

#[test]
fn when_wan1_fails_npt_moves_ipv6_into_wan2s_prefix_and_no_stale_source_reaches_an_isp() {
    let s = start("npt-fail", NPT);
    let (p1, p2) = (s.lab.delegation(Wan::One), s.lab.delegation(Wan::Two));
    // One flow (one source port) across the failure.
    let stream = Stream::start(
        &s.lab,
        a6(),
        7211,
        Duration::from_millis(2),
        Duration::from_secs(30),
    );
    let first_via = |w: Wan, since: Instant| {
        let deadline = Instant::now() + SETTLE;
        loop {
            if let Some(a) = stream
                .received()
                .into_iter()
                .find(|a| a.link == Some(w) && a.at >= since)
            {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "no datagram over ISP {} within {SETTLE:?} ({} sent): {:?}\n{}",
                w.number(),
                stream.sent(),
                stream.received().last(),
                router_state(&s)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    first_via(Wan::One, stream.started_at());
    // Silent upstream loss: the link stays up, so ISP 1 still sees what the router sends it.
    let fault = Instant::now();
    s.lab.blackhole_upstream(Wan::One);
    s.wait_wan("wan1", "down", SETTLE);
    first_via(Wan::Two, fault);
    // A few more datagrams on the new path before stopping.
    std::thread::sleep(Duration::from_millis(100));
    let got = stream.stop();
    let wrong: Vec<&Arrival> = got
        .iter()
        .filter(|a| match a.link {
            Some(Wan::One) => a.from.ip() != IpAddr::V6(client_in(p1)),
            Some(Wan::Two) => a.from.ip() != IpAddr::V6(client_in(p2)),
            None => true,
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "datagrams whose source is not the client's address in the prefix of the ISP that \
         carried them: {wrong:?}\n{}",
        router_state(&s)
    );
    assert_no_foreign_source_reached_an_isp(&s, "across the failover");
    // New flows to the default destination: wan2's prefix.
    assert_udp_from(&s, a6(), 7212, Wan::Two, client_in(p2));
    assert_no_foreign_source_reached_an_isp(&s, "after the failover");
}

/// Receives what arrives on `server` until `n` datagrams came or a second passes without one.
fn receive(server: &UdpSocket, n: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    server
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < n {
        match server.recv_from(&mut buf) {
            Ok((len, from)) => got.push((buf[..len].to_vec(), from)),
            Err(_) => break,
        }
    }
    got
}

#[test]
fn after_isp2_renumbers_a_reload_moves_wan2_flows_into_the_new_prefix() {
    let s = start("npt-renum", NPT);
    let (p1, old) = (s.lab.delegation(Wan::One), s.lab.delegation(Wan::Two));
    let port = 7221;
    let to = SocketAddr::new(b6(), port);
    // One client socket (one flow in conntrack) before and after the renumbering.
    let server = s.lab.internet.enter(|| UdpSocket::bind(to).expect("bind"));
    let client = s
        .lab
        .client
        .enter(|| UdpSocket::bind("[::]:0").expect("bind"));
    let send = |what: &str| {
        for i in 0..N {
            client
                .send_to(format!("{what} {i}").as_bytes(), to)
                .expect("send");
            std::thread::sleep(Duration::from_millis(2));
        }
        receive(&server, N)
    };
    let before = send("before");
    assert!(
        before.len() == N
            && before
                .iter()
                .all(|(_, from)| from.ip() == IpAddr::V6(client_in(old))),
        "before: want {N} from {}: {before:?}\n{}",
        client_in(old),
        router_state(&s)
    );

    let new = prefix("2001:db8:22::/56");
    s.lab.delegate(Wan::Two, new);
    let path = s.work.config();
    let text = std::fs::read_to_string(&path).expect("config");
    let line = format!("prefix6 = \"{old}\"");
    assert!(text.contains(&line), "{line} in {text}");
    s.work.write(
        "steer.toml",
        &text.replace(&line, &format!("prefix6 = \"{new}\"")),
    );
    s.steer(&["reload"]);
    // For the failure message only: whether the daemon had flushed wan2's flows by the time
    // the reload returned.
    let flushed = "wan2: conntrack entries with mark 0x200/0xff00 flushed";
    let flushed_at_reply = s.daemon.log_text().contains(flushed);

    // The same flow starts over in the new prefix: every datagram sent after the reload
    // returned arrives, from there.
    let after = send("after");
    assert!(
        after.len() == N
            && after
                .iter()
                .all(|(_, from)| from.ip() == IpAddr::V6(client_in(new))),
        "after the reload: want {N} from {}: {after:?}\nrouter's foreign_source_wan2: {}; \
         `{flushed}` logged when the reload returned: {flushed_at_reply}\n{}",
        client_in(new),
        router_foreign(&s, Wan::Two),
        router_state(&s)
    );
    assert_udp_from(&s, b6(), 7222, Wan::Two, client_in(new));
    assert_udp_from(&s, a6(), 7223, Wan::One, client_in(p1));
    assert_no_foreign_source_reached_an_isp(&s, "after renumbering");
    let status = s.steer(&["status"]);
    assert!(
        status.contains(&new.to_string()) && !status.contains(&old.to_string()),
        "steer status after the reload:\n{status}"
    );
}

/// A reload that swaps the two WANs' marks: a connection keeps its mark and its NPT binding,
/// and the mark it carries now leads to the other WAN, whose guard drops its packets (wan1's
/// prefix leaving by wan2) for as long as the flow sends. Nothing was flushed, since a WAN of the
/// new file holds each mark; now a mark whose line changed is flushed, the flow starts over on
/// its policy's WAN in that WAN's prefix, and `steer explain` shows it held by that WAN.
#[test]
fn a_reload_that_swaps_the_wans_marks_restarts_their_flows_on_their_own_wan() {
    let s = start("npt-swap", NPT);
    let p1 = s.lab.delegation(Wan::One);
    let port = 7226;
    let to = SocketAddr::new(a6(), port);
    // One client socket (one flow in conntrack) before and after the swap, to A: by wan1.
    let server = s.lab.internet.enter(|| UdpSocket::bind(to).expect("bind"));
    let client = s
        .lab
        .client
        .enter(|| UdpSocket::bind(SocketAddr::new(Lab::CLIENT_V6.into(), 0)).expect("bind"));
    let sport = client.local_addr().expect("local address").port();
    let send = |what: &str| {
        for i in 0..N {
            client
                .send_to(format!("{what} {i}").as_bytes(), to)
                .expect("send");
            std::thread::sleep(Duration::from_millis(2));
        }
        receive(&server, N)
    };
    let from_wan1 = |got: &[(Vec<u8>, SocketAddr)]| {
        got.len() == N
            && got
                .iter()
                .all(|(_, from)| from.ip() == IpAddr::V6(client_in(p1)))
    };
    let before = send("before");
    assert!(
        from_wan1(&before),
        "before: want {N} from {}: {before:?}\n{}",
        client_in(p1),
        router_state(&s)
    );

    let path = s.work.config();
    let text = std::fs::read_to_string(&path).expect("config");
    for mark in ["mark = 0x100\n", "mark = 0x200\n"] {
        assert_eq!(text.matches(mark).count(), 1, "{mark} in {text}");
    }
    let swapped = text
        .replace("mark = 0x100\n", "mark = 0x999\n")
        .replace("mark = 0x200\n", "mark = 0x100\n")
        .replace("mark = 0x999\n", "mark = 0x200\n");
    s.work.write("steer.toml", &swapped);
    let foreign_before = router_foreign(&s, Wan::Two);
    let out = s.steer(&["reload"]);

    // The same flow starts over by wan1 (now 0x200), in wan1's prefix: every datagram arrives.
    let after = send("after");
    assert!(
        from_wan1(&after),
        "after the swap: want {N} from {}: {after:?}\nrouter's foreign_source_wan2: {} (was \
         {foreign_before})\n{}",
        client_in(p1),
        router_foreign(&s, Wan::Two),
        router_state(&s)
    );
    assert_eq!(router_foreign(&s, Wan::Two), foreign_before);
    assert!(
        out.contains("wan1 (its mark is now wan2's, on wan2): 1 conntrack entries with mark 0x100"),
        "{out}\n{}",
        router_state(&s)
    );
    assert_no_foreign_source_reached_an_isp(&s, "after the swap");

    let explained = steer_tests::daemon::steer_in(&s.lab.router)
        .args(["explain", &a6().to_string(), "--src"])
        .arg(Lab::CLIENT_V6.to_string())
        .args(["--sport", &sport.to_string(), "--dport", &port.to_string()])
        .args(["--json", "--socket"])
        .arg(&s.work.socket)
        .arg("--pin-dir")
        .arg(&s.work.pin_dir)
        .output()
        .expect("run steer explain");
    let json: serde_json::Value = serde_json::from_slice(&explained.stdout)
        .unwrap_or_else(|e| panic!("steer explain: {e}: {}", ipv6::text(&explained)));
    assert_eq!(
        json["held"]["connections"],
        serde_json::json!([{ "mark": "0x200", "wan": "wan1", "count": 1 }]),
        "{json:#}"
    );
}

#[test]
fn npt_lets_the_internet_reach_the_client_at_its_address_in_each_wan_prefix_and_the_answer_returns_by_that_wan()
 {
    let s = start("npt-in", NPT);
    let _server = {
        // Listening on its LAN address only: what reaches it was translated back.
        let addr = SocketAddr::new(Lab::CLIENT_V6.into(), INBOUND_PORT);
        EchoServer::start(&s.lab.client, addr)
    };
    // wan2 first: the default policy prefers wan1, so answers by wan2 are the connection's
    // own doing.
    for (w, name) in [(Wan::Two, "by_wan2"), (Wan::One, "by_wan1")] {
        let watch = |isp: Wan| format!("{name}_isp{}", isp.number());
        for isp in Wan::ALL {
            s.lab.isp_watch(
                isp,
                &watch(isp),
                &format!("meta l4proto tcp th sport {INBOUND_PORT}"),
            );
        }
        let target = SocketAddr::new(client_in(s.lab.delegation(w)).into(), INBOUND_PORT);
        let mut conversation = Conversation::open(&s.lab.internet, target).unwrap_or_else(|e| {
            panic!(
                "connect from the internet to {target}: {e}\n{}",
                router_state(&s)
            )
        });
        for i in 0..5 {
            conversation.exchange().unwrap_or_else(|e| {
                panic!("exchange {i} with {target}: {e}\n{}", router_state(&s))
            });
        }
        drop(conversation);
        let answers = Wan::ALL.map(|isp| s.lab.isp_counter(isp, &watch(isp)));
        // The SYN-ACK and five echoes at least.
        assert!(
            answers[w.index()] >= 6 && answers[w.other().index()] == 0,
            "the client's answers to the internet through [ISP 1, ISP 2]: {answers:?}, want all \
             through ISP {}\n{}",
            w.number(),
            router_state(&s)
        );
    }
    assert_no_foreign_source_reached_an_isp(&s, "after the inbound connections");
    // Any other port of the host stays closed, however the firewall treats port forwards:
    // the translation marks the connection as one, and steer drops it first.
    let closed = INBOUND_PORT + 1;
    let _other = EchoServer::start(
        &s.lab.client,
        SocketAddr::new(Lab::CLIENT_V6.into(), closed),
    );
    let refused_before = nft_counter_packets(&s.lab.router, "inet steer", "npt_inbound_refused");
    let target = SocketAddr::new(client_in(s.lab.delegation(Wan::One)).into(), closed);
    let opened = Conversation::open(&s.lab.internet, target);
    assert!(
        opened.is_err(),
        "a connection from the internet to {target}, a port not in inbound_tcp, was let in\n{}",
        router_state(&s)
    );
    let refused = nft_counter_packets(&s.lab.router, "inet steer", "npt_inbound_refused");
    assert!(
        refused > refused_before,
        "npt_inbound_refused did not count the SYNs to {target}: {refused_before} -> {refused}\n{}",
        router_state(&s)
    );
    // The router's own address inside a WAN's prefix (a PD-only line gives it no other) is
    // the router's: never translated to a LAN host, on any port.
    let IpAddr::V6(net) = s.lab.delegation(Wan::One).addr() else {
        unreachable!("an IPv6 delegation")
    };
    let own = Ipv6Addr::from(u128::from(net) | 0xff_0000_0000_0000_0001);
    s.lab.router.run(&format!(
        "ip -6 addr add {own}/128 dev {} nodad",
        Lab::wan_iface(Wan::One)
    ));
    for port in [INBOUND_PORT, closed] {
        let target = SocketAddr::new(own.into(), port);
        let _router_server = EchoServer::start(&s.lab.router, target);
        let mut conversation = Conversation::open(&s.lab.internet, target).unwrap_or_else(|e| {
            panic!(
                "connect from the internet to the router's own {target}: {e}\n{}",
                router_state(&s)
            )
        });
        conversation
            .exchange()
            .unwrap_or_else(|e| panic!("exchange with the router's {target}: {e}"));
    }
}

#[test]
fn masquerade_gives_ipv6_the_address_of_the_wan_that_carries_it_and_follows_a_failover() {
    let s = start("masq6", MASQUERADE);
    assert_udp_from(&s, b6(), 7251, Wan::Two, Lab::nat_addr_v6(Wan::Two));
    assert_udp_from(&s, a6(), 7252, Wan::One, Lab::nat_addr_v6(Wan::One));
    assert_no_foreign_source_reached_an_isp(&s, "after steering");
    s.lab.blackhole_upstream(Wan::One);
    s.wait_wan("wan1", "down", SETTLE);
    // The default destination now leaves by wan2, masqueraded to wan2's address.
    assert_udp_from(&s, a6(), 7253, Wan::Two, Lab::nat_addr_v6(Wan::Two));
    assert_no_foreign_source_reached_an_isp(&s, "after the failover");
}

#[test]
fn npt_drops_and_counts_a_lan_source_outside_lan_prefix_before_any_isp_sees_it() {
    let s = start("npt-guard", NPT);
    let foreign: Ipv6Addr = "fd11::2".parse().expect("address");
    s.lab.client.run(&format!(
        "ip -6 addr add {foreign}/64 dev {} nodad",
        Lab::CLIENT_IFACE
    ));
    s.lab.router.run(&format!(
        "ip -6 route add fd11::/64 via {} dev {}",
        Lab::CLIENT_V6,
        Lab::LAN_IFACE
    ));
    for (w, server, port) in [(Wan::One, a6(), 7261), (Wan::Two, b6(), 7262)] {
        let before = router_foreign(&s, w);
        let got = udp_arrivals_from(&s.lab, foreign.into(), server, port, N);
        assert!(
            got.is_empty(),
            "the internet got datagrams from {foreign}: {got:?}\n{}",
            router_state(&s)
        );
        let counted = router_foreign(&s, w) - before;
        assert!(
            counted >= N as u64,
            "foreign_source_{} counted {counted} of {N} datagrams from {foreign}\n{}",
            Lab::wan_iface(w),
            router_state(&s)
        );
        assert_no_foreign_source_reached_an_isp(&s, &format!("{foreign} to {server}"));
        // The same path from the client's LAN address works: the source was the reason. (Bound
        // explicitly: with two addresses the client's own choice could be either.)
        let got = udp_arrivals_from(&s.lab, Lab::CLIENT_V6.into(), server, port + 10, N);
        let source = client_in(s.lab.delegation(w));
        assert_all_from(&s, &got, w, source, "from the client's LAN address");
    }
}
