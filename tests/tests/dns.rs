//! Domain sets with real components: steer's forwarder in front of dnsmasq on the router,
//! clients in the client namespace (a stub that connects the moment its answer arrives, and
//! `dig`), first packets observed at the ISPs.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use steer::{
    dataplane::learned::LearnedMaps,
    dns::wire::{self, rtype},
};
use steer_tests::{
    dns::{
        DnsScenario, Dnsmasq, FORWARDER, FirstPackets, UPSTREAM, addresses, ask, dig, exchange,
        host_v4, hosts_file, resolve_and_connect,
    },
    lab::{Lab, Wan},
    rng::Rng,
};

/// Names n0.fresh.example ... in the hosts file, each its own address (from host 256 on).
const FRESH: usize = 2000;

fn forwarder() -> SocketAddr {
    FORWARDER.parse().unwrap()
}

/// The records of the tests: fresh names, CNAME chains, every rebinding class, dual-stack,
/// HTTPS hints, a name too big for 512 bytes, two sets sharing an address, two TTLs of one
/// address.
fn records(dir: &std::path::Path) -> Vec<String> {
    let hosts = hosts_file(
        dir,
        "hosts",
        (0..FRESH)
            .map(|i| format!("{} n{i}.fresh.example", host_v4(256 + i)))
            .chain((1..=40).map(|i| format!("198.19.110.{i} big.video.example"))),
    );
    // Priority 1, target ".", ipv4hint 198.19.103.1, ipv6hint 2001:db8:53::2.
    let https = [
        "0001",
        "00",
        "0004",
        "0004",
        "c6136701",
        "0006",
        "0010",
        "20010db8005300000000000000000002",
    ]
    .concat();
    [
        hosts,
        "--cname=www.video.example,edge.cdn.test".into(),
        "--host-record=edge.cdn.test,198.19.101.1".into(),
        "--cname=a.video.example,b.cdn.test".into(),
        "--cname=b.cdn.test,c.cdn.test".into(),
        "--host-record=c.cdn.test,198.19.101.2".into(),
        "--host-record=private.video.example,10.1.2.3".into(),
        "--host-record=loop.video.example,127.0.0.2".into(),
        "--host-record=ll.video.example,169.254.1.1".into(),
        "--host-record=ula.video.example,fd00::1".into(),
        "--host-record=zero.video.example,0.0.0.0".into(),
        "--host-record=mc.video.example,224.0.0.5".into(),
        "--host-record=mapped.video.example,::ffff:198.19.1.1".into(),
        "--host-record=own.video.example,100.64.1.2".into(),
        "--host-record=dual.video.example,198.19.102.1,2001:db8:53::1".into(),
        "--host-record=dual.v4only.example,198.19.102.2,2001:db8:53::3".into(),
        "--cname=alias.unlisted.example,dual.v4only.example".into(),
        format!("--dns-rr=hints.video.example,65,{https}"),
        "--host-record=shared.video.example,198.19.104.1".into(),
        "--host-record=x.other.example,198.19.104.1".into(),
        "--host-record=y.other.example,198.19.104.2".into(),
        "--host-record=long.video.example,198.19.105.1,3600".into(),
        "--host-record=short.video.example,198.19.105.1,5".into(),
    ]
    .to_vec()
}

#[test]
fn fresh_names_are_steered_from_their_first_packet() {
    let t = DnsScenario::start("dns-fresh", "", records);
    let lab = &t.s.lab;
    let rx = FirstPackets::start(lab, 9999);
    // 1,000 names one after the other, each connected to the moment its answer arrives.
    lab.client.enter(|| {
        for i in 0..1000 {
            let addrs =
                resolve_and_connect(forwarder(), &format!("n{i}.fresh.example"), i as u64, 9999);
            assert_eq!(addrs, [host_v4(256 + i)], "answer for n{i}");
        }
    });
    // 50 clients at once, 20 fresh names each.
    std::thread::scope(|s| {
        for c in 0..50u64 {
            s.spawn(move || {
                lab.client.enter(|| {
                    for k in 0..20u64 {
                        let i = 1000 + c * 20 + k;
                        let addrs = resolve_and_connect(
                            forwarder(),
                            &format!("N{i}.Fresh.Example."),
                            i,
                            9999,
                        );
                        assert_eq!(addrs.len(), 1, "answer for n{i}");
                    }
                })
            });
        }
    });
    let seen = rx.wait(2000, Duration::from_secs(5));
    let missed: Vec<u64> = seen
        .iter()
        .filter(|(_, w)| **w != Some(Wan::Two))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(seen.len(), 2000, "every first packet arrived");
    assert!(
        missed.is_empty(),
        "first packets not on the set's WAN: {missed:?}\n{}",
        t.s.daemon.log_text()
    );
    assert_eq!(t.counter("learned"), 2000);
    assert_eq!(t.learned().len(), 2000);
}

/// A query with a random ID, random case and, every other time, an EDNS OPT record.
fn mangled_query(rng: &mut Rng, name: &str, qtype: u16) -> Vec<u8> {
    let cased: String = name
        .chars()
        .map(|c| {
            if rng.below(2) == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    let mut q = wire::query(rng.below(65536) as u16, &cased, qtype);
    if rng.below(2) == 0 {
        q[11] = 1; // ARCOUNT
        q.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    }
    q
}

#[test]
fn answers_pass_unchanged_and_teach_exactly_their_chain() {
    let t = DnsScenario::start("dns-answers", "min_ttl = 1\nmax_ttl = 86400", records);
    let lab = &t.s.lab;
    let upstream: SocketAddr = UPSTREAM.parse().unwrap();

    // Byte for byte what dnsmasq answers, but for the ID, over 1,000 queries (EDNS or not,
    // random case, answers, NXDOMAIN, CNAMEs, HTTPS, AAAA).
    let names = [
        ("n1.fresh.example", rtype::A),
        ("www.video.example", rtype::A),
        ("a.video.example", rtype::A),
        ("dual.video.example", rtype::AAAA),
        ("hints.video.example", rtype::HTTPS),
        ("nothing.example", rtype::A),
        ("private.video.example", rtype::A),
        ("x.other.example", 16),
        ("dual.video.example", 15),
    ];
    let mut rng = Rng::new(0xd45);
    lab.router.enter(|| {
        for i in 0..1000 {
            let (name, qtype) = names[i % names.len()];
            let q = mangled_query(&mut rng, name, qtype);
            let direct = exchange(upstream, &q, Duration::from_secs(2)).expect("dnsmasq answers");
            let via = exchange(forwarder(), &q, Duration::from_secs(2)).expect("steer answers");
            assert_eq!(
                via, direct,
                "query {i} ({name}, type {qtype}): steer's answer differs from dnsmasq's"
            );
        }
    });

    // Case and a trailing dot do not matter; a CNAME chain teaches its end.
    let out = dig(
        &lab.client,
        &format!("@{} +short WWW.Video.EXAMPLE.", Lab::LAN_GATEWAY_V4),
    );
    assert!(out.contains("198.19.101.1"), "{out}");
    let out = dig(
        &lab.client,
        &format!("@{} +short a.video.example", Lab::LAN_GATEWAY_V4),
    );
    assert!(out.contains("198.19.101.2"), "{out}");
    let learned = t.learned();
    assert_eq!(learned["198.19.101.1"]["name"], "www.video.example");
    assert_eq!(learned["198.19.101.1"]["set"], "video");
    assert_eq!(learned["198.19.101.2"]["name"], "a.video.example");

    // AAAA and HTTPS hints are learned; a set that filters AAAA gets no IPv6 address.
    dig(
        &lab.client,
        &format!("@{} AAAA dual.video.example", Lab::LAN_GATEWAY_V4),
    );
    dig(
        &lab.client,
        &format!("@{} TYPE65 hints.video.example", Lab::LAN_GATEWAY_V4),
    );
    let learned = t.learned();
    for a in ["2001:db8:53::1", "198.19.103.1", "2001:db8:53::2"] {
        assert_eq!(
            learned.get(a).map(|e| e["set"].clone()),
            Some("video".into()),
            "{a}"
        );
    }
    let aaaa = ask(&lab.client, forwarder(), "dual.v4only.example", rtype::AAAA).unwrap();
    assert!(addresses(&aaaa).is_empty(), "AAAA filtered for v4only");
    let a = ask(&lab.client, forwarder(), "dual.v4only.example", rtype::A).unwrap();
    assert_eq!(addresses(&a), ["198.19.102.2".parse::<IpAddr>().unwrap()]);
    assert!(t.learned().contains_key("198.19.102.2"));
    assert!(!t.learned().contains_key("2001:db8:53::3"));
    // The same through a name of no set whose CNAME leads into the set.
    let aaaa = ask(
        &lab.client,
        forwarder(),
        "alias.unlisted.example",
        rtype::AAAA,
    )
    .unwrap();
    assert!(
        addresses(&aaaa).is_empty(),
        "AAAA filtered through the CNAME"
    );
    assert_eq!(rcode_of(&aaaa), wire::rcode::NOERROR);
    let a = ask(&lab.client, forwarder(), "alias.unlisted.example", rtype::A).unwrap();
    assert_eq!(addresses(&a), ["198.19.102.2".parse::<IpAddr>().unwrap()]);
    assert!(!t.learned().contains_key("2001:db8:53::3"));
    // ANY brings the A record and not the AAAA one (dnsmasq answers it over TCP), also
    // through the CNAME: the client's IPv6 does not leave by the default WAN.
    for name in ["dual.v4only.example", "alias.unlisted.example"] {
        let out = dig(&lab.client, &format!("@{} {name} ANY", Lab::LAN_GATEWAY_V4));
        assert!(out.contains("198.19.102.2"), "{name}: {out}");
        assert!(!out.contains("2001:db8:53::3"), "{name}: {out}");
        assert!(!out.contains("AAAA"), "{name}: {out}");
    }
    assert!(!t.learned().contains_key("2001:db8:53::3"));
    // The canary: browsers keep the router's DNS.
    let out = dig(
        &lab.client,
        &format!("@{} use-application-dns.net", Lab::LAN_GATEWAY_V4),
    );
    assert!(out.contains("NXDOMAIN"), "{out}");

    // Every rebinding class is refused, and the answer still delivered.
    for (name, addr, reason) in [
        ("private", "10.1.2.3", "private"),
        ("loop", "127.0.0.2", "loopback"),
        ("ll", "169.254.1.1", "link_local"),
        ("zero", "0.0.0.0", "unspecified"),
        ("mc", "224.0.0.5", "multicast"),
        ("own", "100.64.1.2", "own_subnet"),
    ] {
        let before = t.refused(reason);
        let out = dig(
            &lab.client,
            &format!("@{} +short {name}.video.example", Lab::LAN_GATEWAY_V4),
        );
        assert_eq!(out.trim(), addr, "{name}: the answer is delivered");
        assert_eq!(t.refused(reason), before + 1, "{name}: refused as {reason}");
    }
    for (name, addr, reason) in [
        ("ula", "fd00::1", "unique_local"),
        ("mapped", "::ffff:198.19.1.1", "ipv4_mapped"),
    ] {
        let before = t.refused(reason);
        let out = dig(
            &lab.client,
            &format!("@{} +short AAAA {name}.video.example", Lab::LAN_GATEWAY_V4),
        );
        assert_eq!(out.trim(), addr, "{name}: the answer is delivered");
        assert_eq!(t.refused(reason), before + 1, "{name}: refused as {reason}");
    }
    let learned = t.learned();
    for a in [
        "10.1.2.3",
        "127.0.0.2",
        "169.254.1.1",
        "0.0.0.0",
        "224.0.0.5",
        "100.64.1.2",
        "fd00::1",
        "::ffff:198.19.1.1",
    ] {
        assert!(!learned.contains_key(a), "{a} must not be learned");
    }

    // Truncated over UDP, the client asks again over TCP, and that answer teaches all 40.
    let out = dig(
        &lab.client,
        &format!("@{} +noedns big.video.example", Lab::LAN_GATEWAY_V4),
    );
    assert!(
        out.contains("Truncated, retrying in TCP mode") || out.contains("ANSWER: 40"),
        "{out}"
    );
    assert!(out.contains("ANSWER: 40"), "{out}");
    let learned = t.learned();
    assert!((1..=40).all(|i| learned.contains_key(&format!("198.19.110.{i}"))));
    assert!(t.counter("queries_tcp") >= 1);

    // A TTL never shortens an expiry.
    dig(
        &lab.client,
        &format!("@{} long.video.example", Lab::LAN_GATEWAY_V4),
    );
    let long = t.learned()["198.19.105.1"]["expires_boottime_s"]
        .as_u64()
        .unwrap();
    dig(
        &lab.client,
        &format!("@{} short.video.example", Lab::LAN_GATEWAY_V4),
    );
    let after = &t.learned()["198.19.105.1"];
    assert_eq!(
        after["expires_boottime_s"].as_u64().unwrap(),
        long,
        "not shortened"
    );
    assert!(after["expires_in_s"].as_i64().unwrap() > 3000);

    // Two sets claim one address: the first in the configuration wins, whatever the order of
    // the answers, and explain names both.
    dig(
        &lab.client,
        &format!("@{} x.other.example", Lab::LAN_GATEWAY_V4),
    );
    assert_eq!(t.learned()["198.19.104.1"]["set"], "second");
    dig(
        &lab.client,
        &format!("@{} shared.video.example", Lab::LAN_GATEWAY_V4),
    );
    let e = &t.learned()["198.19.104.1"];
    assert_eq!(
        (e["set"].as_str(), e["also_set"].as_str()),
        (Some("video"), Some("second"))
    );
    let explained = t.s.steer(&["explain", "198.19.104.1"]);
    assert!(
        explained.contains("set video (dst 198.19.104.1 learned from the answer for shared.video.example, expires in"),
        "{explained}"
    );
    assert!(
        explained.contains("also claimed by set second"),
        "{explained}"
    );
    assert!(explained.contains("wan      wan2"), "{explained}");
    let text = t.s.steer(&["dump", "dns"]);
    assert!(
        text.contains("198.19.104.1") && text.contains("video (also second)"),
        "{text}"
    );
    let status = t.s.steer(&["status"]);
    assert!(
        status.contains("learned     ") && status.contains("insert"),
        "{status}"
    );
}

/// The authoritative side in the internet namespace, for the tests that need a real cache in
/// the router's dnsmasq (or clients asking a resolver on the internet).
const INTERNET_DNS: &str = "203.0.113.53:53";

fn internet_dnsmasq(t: &DnsScenario, records: &[String]) -> Dnsmasq {
    t.s.lab.internet.run("ip addr add 203.0.113.53/32 dev lo");
    Dnsmasq::start(
        &t.s.lab.internet,
        &t.s.work.dir,
        INTERNET_DNS.parse().unwrap(),
        records,
    )
}

fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_dnsmasq_cache_hit_relearns_an_expired_host() {
    // dnsmasq on the router forwards to the internet and caches (TTL 60); steer keeps hosts 2 s.
    let t = DnsScenario::start("dns-cache", "min_ttl = 1\nmax_ttl = 2", |_| {
        vec!["--server=203.0.113.53".into()]
    });
    t.s.lab.set_main_default(Wan::One);
    let auth = internet_dnsmasq(
        &t,
        &["--host-record=cached.video.example,198.19.120.1,60".into()],
    );
    let ask_it = || {
        dig(
            &t.s.lab.client,
            &format!("@{} +short cached.video.example", Lab::LAN_GATEWAY_V4),
        )
    };
    assert_eq!(ask_it().trim(), "198.19.120.1");
    assert!(t.learned().contains_key("198.19.120.1"));
    wait_for("the host expires", Duration::from_secs(5), || {
        !t.learned().contains_key("198.19.120.1")
    });
    assert!(t.counter("expired") >= 1);
    // Asked again: dnsmasq answers from its cache, and steer learns the host again.
    assert_eq!(ask_it().trim(), "198.19.120.1");
    let e = &t.learned()["198.19.120.1"];
    assert!(e["expires_in_s"].as_i64().unwrap() >= 1, "{e}");
    assert!(
        t.dnsmasq
            .log_text()
            .contains("cached cached.video.example is 198.19.120.1"),
        "the second answer came from dnsmasq's cache:\n{}",
        t.dnsmasq.log_text()
    );
    let asked = auth
        .log_text()
        .matches("query[A] cached.video.example")
        .count();
    assert_eq!(
        asked,
        1,
        "the authoritative server was asked once:\n{}",
        auth.log_text()
    );
}

#[test]
fn learned_hosts_survive_kill9_a_reload_removes_its_domains_and_stop_removes_all() {
    let mut t = DnsScenario::start("dns-restart", "", records);
    let lab = &t.s.lab;
    for name in [
        "n1.fresh.example",
        "n2.fresh.example",
        "x.other.example",
        "y.other.example",
    ] {
        assert_eq!(
            addresses(&ask(&lab.client, forwarder(), name, rtype::A).unwrap()).len(),
            1
        );
    }
    let before = t.learned();
    assert_eq!(before.len(), 4);
    // The classifier looks up learned IPv4 hosts, and no IPv6 ones: none was learned.
    let lookups = || {
        LearnedMaps::from_pins(&t.s.work.pin_dir)
            .and_then(|m| m.lookups())
            .expect("the pinned settings")
    };
    assert_eq!(lookups(), [true, false]);
    t.s.daemon.kill9();
    // The pins keep them, with their expiries, while no daemon runs...
    let during = t.learned();
    // ...with their flag switched off behind its back (as a daemon from before the flag left
    // it)...
    LearnedMaps::from_pins(&t.s.work.pin_dir)
        .and_then(|mut m| m.set_lookups([false, false]))
        .expect("the pinned settings");
    // ...and a new daemon adopts them as they are, looking up the families the maps hold.
    t.s.daemon = steer_tests::daemon::Daemon::start(&lab.router, &t.s.work);
    assert_eq!(lookups(), [true, false]);
    let after = t.learned();
    for (addr, e) in &before {
        for (when, map) in [("while down", &during), ("after the restart", &after)] {
            assert_eq!(
                map[addr]["expires_boottime_s"], e["expires_boottime_s"],
                "{addr} {when}"
            );
            assert_eq!(map[addr]["set"], e["set"], "{addr} {when}");
        }
    }
    assert_eq!(t.s.status()["dns"]["entries_v4"], 4);
    let explained = t.s.steer(&["explain", &host_v4(257).to_string()]);
    assert!(
        explained.contains("learned from the answer for n1.fresh.example"),
        "{explained}"
    );
    // A packet to a learned host still leaves by the set's WAN.
    let rx = FirstPackets::start(lab, 9998);
    let send = |tag: u64, to| {
        lab.client.enter(|| {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.send_to(&tag.to_be_bytes(), (to, 9998)).unwrap();
        })
    };
    // The configuration with one domain replaced, reloaded.
    let reload_replacing = |domain: &str, by: &str| {
        let config = std::fs::read_to_string(t.s.work.config()).unwrap();
        t.s.work.write("steer.toml", &config.replace(domain, by));
        t.s.steer(&["reload"]);
    };
    send(7, host_v4(257));
    assert_eq!(
        rx.wait(1, Duration::from_secs(3)).get(&7),
        Some(&Some(Wan::Two))
    );

    // A reload without other.example removes what it taught, and only that.
    reload_replacing("\"other.example\"", "\"else.example\"");
    let reloaded = t.learned();
    assert_eq!(reloaded.len(), 2, "{reloaded:?}");
    assert!(reloaded.values().all(|e| e["set"] == "video"));
    assert_eq!(t.counter("removed"), 2);
    // The reload wrote the settings (its own flags): the learned hosts' flag stays, and a
    // host left is still steered.
    assert_eq!(lookups(), [true, false]);
    send(8, host_v4(258));
    assert_eq!(
        rx.wait(2, Duration::from_secs(3)).get(&8),
        Some(&Some(Wan::Two))
    );
    // A reload that drops the last domain removes the last host, and the flag with it.
    reload_replacing("\"Fresh.Example.\"", "\"stale.example\"");
    assert!(t.learned().is_empty());
    assert_eq!(lookups(), [false, false]);

    // `steer stop` removes everything.
    t.s.work.stop_in(&lab.router);
    let (ok, _, err) = t.s.work.steer(&["dump", "dns"]);
    assert!(!ok && err.contains("nothing is pinned"), "{err}");
}

#[test]
fn the_capacity_limit_refuses_new_hosts_and_counts_them() {
    let t = DnsScenario::start("dns-capacity", "capacity_v4 = 10", records);
    for i in 0..15 {
        let a = ask(
            &t.s.lab.client,
            forwarder(),
            &format!("n{i}.fresh.example"),
            rtype::A,
        );
        assert_eq!(
            addresses(&a.expect("answered")).len(),
            1,
            "n{i} is still answered"
        );
    }
    assert_eq!(t.learned().len(), 10);
    assert_eq!(t.refused("capacity"), 5);
    assert_eq!(t.s.status()["dns"]["entries_v4"], 10);
    // A known host is still refreshed at capacity.
    let a = ask(&t.s.lab.client, forwarder(), "n3.fresh.example", rtype::A);
    assert!(a.is_some());
    assert_eq!(t.refused("capacity"), 5);
    assert!(t.s.daemon.log_text().contains("at capacity"), "logged once");
    // A reload that lowers the capacity under what is held says so (it took it without a word).
    let config = std::fs::read_to_string(t.s.work.config()).unwrap();
    t.s.work.write(
        "steer.toml",
        &config.replace("capacity_v4 = 10", "capacity_v4 = 4"),
    );
    let out = t.s.steer(&["reload"]);
    assert!(
        out.contains("10 learned IPv4 hosts are held, over capacity_v4 = 4"),
        "{out}"
    );
}

/// A fake upstream in the router namespace that answers every query with `answer(query)`.
fn bad_upstream(
    lab: &Lab,
    addr: &'static str,
    answer: fn(&[u8]) -> Option<Vec<u8>>,
) -> std::thread::JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = lab.router.spawn(move || {
        let s = UdpSocket::bind(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            if let Some(a) = answer(&buf[..n]) {
                let _ = s.send_to(&a, from);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(3)).unwrap();
    h
}

/// Points the forwarder at `upstream` (a reload).
fn reload_upstream(t: &DnsScenario, upstream: &str) {
    let config = std::fs::read_to_string(t.s.work.config()).unwrap();
    let start = config.find("upstreams = ").unwrap();
    let end = start + config[start..].find('\n').unwrap();
    let mut next = config.clone();
    next.replace_range(start..end, &format!("upstreams = [\"{upstream}\"]"));
    t.s.work.write("steer.toml", &next);
    t.s.steer(&["reload"]);
}

fn rcode_of(answer: &[u8]) -> u8 {
    wire::Header::parse(answer).unwrap().rcode()
}

#[test]
fn a_failing_upstream_gives_servfail_promptly_and_bad_input_never_stalls() {
    let mut t = DnsScenario::start("dns-failures", "timeout_ms = 300", records);
    let lab = &t.s.lab;
    // The upstream answers, then its port is closed: SERVFAIL at once.
    let a = ask(&lab.client, forwarder(), "n0.fresh.example", rtype::A).expect("an answer");
    assert_eq!(addresses(&a), [host_v4(256)]);
    t.dnsmasq.kill();
    let started = Instant::now();
    let a = ask(&lab.client, forwarder(), "n1.fresh.example", rtype::A).expect("an answer");
    assert_eq!(rcode_of(&a), wire::rcode::SERVFAIL);
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    // The log says which upstream fails at once (the LAN lost DNS without a line before, and
    // for up to a minute when the upstream had answered just before).
    let log = t.s.daemon.log_text();
    assert!(
        log.contains(&format!("upstream {UPSTREAM} refuses queries")),
        "{log}"
    );

    // An upstream that never answers: SERVFAIL after timeout_ms, and other queries are served
    // meanwhile.
    let _silent = bad_upstream(lab, "127.0.0.1:5998", |_| None);
    reload_upstream(&t, "127.0.0.1:5998");
    let slow = lab.client.spawn(|| {
        let started = Instant::now();
        let q = wire::query(1, "n2.fresh.example", rtype::A);
        let a = exchange(FORWARDER.parse().unwrap(), &q, Duration::from_secs(3));
        (a, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    let canary = ask(
        &lab.client,
        forwarder(),
        "use-application-dns.net",
        rtype::A,
    )
    .unwrap();
    assert_eq!(rcode_of(&canary), wire::rcode::NXDOMAIN);
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "not stalled: {:?}",
        started.elapsed()
    );
    let (a, took) = slow.join().unwrap();
    assert_eq!(rcode_of(&a.expect("an answer")), wire::rcode::SERVFAIL);
    let log = t.s.daemon.log_text();
    assert!(
        log.contains("upstream 127.0.0.1:5998 does not answer in time"),
        "{log}"
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1000),
        "{took:?}"
    );

    // Malformed answers (a bogus record, a compression loop, a cut record): SERVFAIL, nothing
    // learned, nothing stalls.
    let _bad = bad_upstream(lab, "127.0.0.1:5997", |q| {
        let mut a = wire::reply(q, 0);
        a[7] = 1; // one answer...
        match q[1] % 3 {
            0 => a.extend_from_slice(&[0xc0, 0xff, 0, 1]),
            1 => {
                let here = a.len() as u8;
                a.extend_from_slice(&[0xc0, here, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 198, 19, 9, 9]);
            }
            _ => a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 9, 0, 40, 198, 19]),
        }
        Some(a)
    });
    reload_upstream(&t, "127.0.0.1:5997");
    for id in 0..30u16 {
        let q = wire::query(id << 8 | id, "n3.fresh.example", rtype::A);
        let a = lab
            .client
            .enter(|| exchange(forwarder(), &q, Duration::from_secs(2)));
        assert_eq!(
            rcode_of(&a.expect("an answer")),
            wire::rcode::SERVFAIL,
            "answer {id}"
        );
    }
    let learned: Vec<String> = t.learned().into_keys().collect();
    assert_eq!(
        learned,
        [host_v4(256).to_string()],
        "n0's alone, from the first answer"
    );
    assert!(t.counter("malformed_answers") >= 30);

    // Malformed queries: random bytes over UDP, and TCP clients sending junk or half a
    // message and holding on; the forwarder keeps answering.
    t.dnsmasq = Dnsmasq::start(
        &lab.router,
        &t.s.work.dir,
        UPSTREAM.parse().unwrap(),
        &records(&t.s.work.dir),
    );
    reload_upstream(&t, UPSTREAM);
    let mut rng = Rng::new(0xbad);
    let held = lab.client.enter(|| {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..3000 {
            let len = rng.below(80) as usize;
            let junk: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
            let _ = s.send_to(&junk, forwarder());
        }
        let mut held = Vec::new();
        for junk in [
            &[0u8, 0][..],
            &[0, 40, 1, 2, 3],
            &[0xff, 0xff, 9],
            &[0, 5, 0, 0, 0, 0, 0],
        ] {
            if let Ok(mut c) = std::net::TcpStream::connect(forwarder()) {
                use std::io::Write;
                let _ = c.write_all(junk);
                held.push(c);
            }
        }
        held
    });
    let started = Instant::now();
    let out = dig(
        &lab.client,
        &format!("@{} +tcp +short n4.fresh.example", Lab::LAN_GATEWAY_V4),
    );
    assert_eq!(out.trim(), host_v4(260).to_string());
    let a = ask(&lab.client, forwarder(), "n5.fresh.example", rtype::A).unwrap();
    assert_eq!(addresses(&a), [host_v4(261)]);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(t.counter("malformed_queries") > 0);
    drop(held);
}

#[test]
fn snoop_mode_learns_answers_crossing_the_router_and_fails_open() {
    let tail = format!(
        "{}\n[dns]\nforward = false\nsnoop = true\n",
        steer_tests::dns::SETS
    );
    let mut t = DnsScenario::start_with("dns-snoop", &tail, |lab, dir| {
        lab.internet.run("ip addr add 203.0.113.53/32 dev lo");
        let hosts = hosts_file(
            dir,
            "snoop-hosts",
            (0..300).map(|i| format!("{} s{i}.fresh.example", host_v4(4096 + i))),
        );
        Dnsmasq::start(&lab.internet, dir, INTERNET_DNS.parse().unwrap(), &[hosts])
    });
    let lab = &t.s.lab;
    let server: SocketAddr = INTERNET_DNS.parse().unwrap();
    let rx = FirstPackets::start(lab, 9997);
    lab.client.enter(|| {
        for i in 0..300u64 {
            let addrs = resolve_and_connect(server, &format!("s{i}.fresh.example"), i, 9997);
            assert_eq!(addrs, [host_v4(4096 + i as usize)], "answer for s{i}");
        }
    });
    let seen = rx.wait(300, Duration::from_secs(5));
    let missed = seen.values().filter(|w| **w != Some(Wan::Two)).count();
    assert_eq!((seen.len(), missed), (300, 0), "{}", t.s.daemon.log_text());
    assert!(t.counter("snoop_learned") >= 300);
    let snoop = &t.s.status()["dns"]["latency"]["snoop"];
    assert!(snoop["count"].as_u64().unwrap() >= 300, "{snoop}");
    // An answer nobody asked for, sent from the WAN side to a LAN host (from port 53), is not
    // read: it planted addresses in the sets before the firewall could drop it.
    lab.isp[0].run(&format!(
        "ip route replace {}/32 via {}",
        Lab::CLIENT_V4,
        Lab::nat_addr_v4(Wan::One)
    ));
    let q = wire::query(7, "evil.fresh.example", rtype::A);
    let mut forged = wire::reply(&q, 0);
    forged[7] = 1;
    forged.extend_from_slice(&[
        0xc0, 12, 0, 1, 0, 1, 0, 1, 0x51, 0x80, 0, 4, 198, 51, 100, 77,
    ]);
    lab.isp[0].enter(|| {
        let s = UdpSocket::bind("0.0.0.0:53").expect("port 53 in the ISP");
        s.send_to(&forged, (Lab::CLIENT_V4, 40000)).expect("send");
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !t.learned().contains_key("198.51.100.77"),
        "{:?}",
        t.learned()
            .keys()
            .filter(|a| a.starts_with("198.51"))
            .collect::<Vec<_>>()
    );
    // No daemon: the queue has no listener and the answers pass unseen (fail-open).
    t.s.daemon.kill9();
    let out = dig(&lab.client, "@203.0.113.53 +short s7.fresh.example");
    assert_eq!(out.trim(), host_v4(4103).to_string());
}

/// Snoop mode learns from an answer only when it replies to a query it saw on its way out:
/// the same client address and port, server, DNS ID and question, once. Answers forged onto
/// the open connection (another ID, a question never asked, a second answer) pass to the
/// client but teach nothing.
#[test]
fn snoop_mode_learns_only_the_answer_to_a_query_it_saw() {
    let tail = format!(
        "{}\n[dns]\nforward = false\nsnoop = true\n",
        steer_tests::dns::SETS
    );
    let t = DnsScenario::start_with("dns-snoop-ask", &tail, |lab, dir| {
        lab.internet
            .run("ip addr add 203.0.113.53/32 dev lo && ip addr add 203.0.113.54/32 dev lo");
        let hosts = hosts_file(
            dir,
            "ask-hosts",
            std::iter::once("198.19.140.1 real.video.example".to_owned()),
        );
        Dnsmasq::start(&lab.internet, dir, INTERNET_DNS.parse().unwrap(), &[hosts])
    });
    let lab = &t.s.lab;
    // A resolver on the internet that answers as the test says.
    let server = lab
        .internet
        .enter(|| UdpSocket::bind("203.0.113.54:53").expect("the test's resolver"));
    let client = lab
        .client
        .enter(|| UdpSocket::bind("0.0.0.0:5555").expect("the client's port"));
    for s in [&server, &client] {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    }
    let answer = |id: u16, name: &str, last: u8| {
        let mut a = wire::reply(&wire::query(id, name, rtype::A), 0);
        a[7] = 1;
        a.extend_from_slice(&[
            0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4, 198, 51, 100, last,
        ]);
        a
    };
    let query = wire::query(77, "plain.video.example", rtype::A);
    client.send_to(&query, "203.0.113.54:53").unwrap();
    let mut buf = [0u8; 512];
    let (n, peer) = server.recv_from(&mut buf).expect("the query arrives");
    assert_eq!(&buf[..n], &query[..]);
    let sent = [
        answer(78, "plain.video.example", 161), // another ID
        answer(77, "evil.video.example", 162),  // a question never asked
        answer(77, "plain.video.example", 163), // the answer
        answer(77, "plain.video.example", 164), // a second answer
    ];
    for a in &sent {
        server.send_to(a, peer).unwrap();
    }
    // Each is held until it is read: once the client has all four, snoop read them.
    for a in &sent {
        let (n, _) = client.recv_from(&mut buf).expect("every answer passes");
        assert_eq!(&buf[..n], &a[..]);
    }
    let learned = t.learned();
    assert_eq!(
        learned.get("198.51.100.163").map(|e| e["name"].clone()),
        Some("plain.video.example".into()),
        "the answer to the query teaches: {:?}",
        learned.keys().collect::<Vec<_>>()
    );
    for forged in ["198.51.100.161", "198.51.100.162", "198.51.100.164"] {
        assert!(
            !learned.contains_key(forged),
            "{forged} learned from an answer to no query: {:?}",
            learned.keys().collect::<Vec<_>>()
        );
    }
    // A real resolver's answer, through dig, still teaches.
    let out = dig(&lab.client, "@203.0.113.53 +short real.video.example");
    assert_eq!(out.trim(), "198.19.140.1");
    assert!(t.learned().contains_key("198.19.140.1"));
}

/// While no daemon runs, a learned host past its expiry still steers: `dump dns` and `explain`
/// say it expired and is removed when the daemon runs (not "expires in -3 s"). A restart with a
/// domain dropped logs the learned hosts it removes, as a reload does; a reload that lowers the
/// capacity under the hosts held says what becomes of them, and so does `steer status` (not a
/// bare "10 IPv4 (of 5)").
#[test]
fn expired_hosts_removals_at_restart_and_capacity_are_told() {
    let mut t = DnsScenario::start("dns-told", "min_ttl = 1", records);
    let lab = &t.s.lab;
    for name in [
        "short.video.example",
        "n1.fresh.example",
        "n2.fresh.example",
    ] {
        let a = ask(&lab.client, forwarder(), name, rtype::A).expect("answered");
        assert_eq!(addresses(&a).len(), 1, "{name}");
    }
    let short = "198.19.105.1";
    assert!(t.learned()[short]["expires_in_s"].as_i64().unwrap() <= 5);
    t.s.daemon.kill9();
    std::thread::sleep(Duration::from_secs(7));
    let dump = t.s.steer(&["dump", "dns"]);
    let row = dump
        .lines()
        .find(|l| l.starts_with(short))
        .unwrap_or_else(|| panic!("{dump}"));
    assert!(
        row.contains("expired ") && row.contains(" s ago; removed when the daemon runs"),
        "{dump}"
    );
    assert!(!row.contains(" -"), "{dump}");
    let explained = t.s.steer(&["explain", short]);
    assert!(
        explained.contains("learned from the answer for short.video.example, expired ")
            && explained.contains(" s ago; removed when the daemon runs)"),
        "{explained}"
    );

    // A restart without fresh.example: its two hosts go, and the log says so.
    let original = std::fs::read_to_string(t.s.work.config()).unwrap();
    let without_fresh = original.replace(", \"Fresh.Example.\"", "");
    assert_ne!(without_fresh, original);
    t.s.work.write("steer.toml", &without_fresh);
    t.s.daemon = steer_tests::daemon::Daemon::start(&t.s.lab.router, &t.s.work);
    let learned = t.learned();
    assert!(
        !learned.contains_key(&host_v4(257).to_string()),
        "{learned:?}"
    );
    let log = t.s.daemon.log_text();
    assert!(
        log.contains("dns: 2 learned hosts removed (no configured set claims them any more)"),
        "{log}"
    );

    // Two IPv4 hosts held, a reload to a capacity of one.
    for name in ["n3.fresh.example", "long.video.example"] {
        ask(&t.s.lab.client, forwarder(), name, rtype::A).expect("answered");
    }
    t.s.work.write("steer.toml", &original);
    t.s.steer(&["reload"]);
    for name in ["n3.fresh.example", "n4.fresh.example"] {
        ask(&t.s.lab.client, forwarder(), name, rtype::A).expect("answered");
    }
    let held = t.learned().keys().filter(|a| !a.contains(':')).count();
    assert!(held >= 2, "{held}");
    t.s.work.write(
        "steer.toml",
        &original.replace("min_ttl = 1", "min_ttl = 1\ncapacity_v4 = 1"),
    );
    let out = t.s.steer(&["reload"]);
    assert!(
        out.contains(&format!(
            "dns: {held} learned IPv4 hosts are held, over capacity_v4 = 1: they stay until they expire"
        )),
        "{out}"
    );
    let status = t.s.steer(&["status"]);
    assert!(
        status.contains(&format!(
            "learned     {held} IPv4 (of 1: over capacity_v4, kept until they expire; none learned meanwhile)"
        )),
        "{status}"
    );
}

/// A reload whose new listen address is taken is refused, as a start is: the CLI fails with
/// the reason, the running forwarder keeps its addresses and upstream, and the status says so.
#[test]
fn a_reload_onto_a_taken_listen_address_is_refused_and_changes_nothing() {
    let t = DnsScenario::start("dns-taken", "", records);
    let lab = &t.s.lab;
    // Something else holds 10.10.0.1:5353 in the router (UDP and TCP).
    let taken = "10.10.0.1:5353";
    let (hold, held) = std::sync::mpsc::channel::<()>();
    let (ready, bound) = std::sync::mpsc::channel();
    let holder = lab.router.spawn(move || {
        let udp = UdpSocket::bind(taken).expect("bind UDP");
        let tcp = std::net::TcpListener::bind(taken).expect("bind TCP");
        ready.send(()).unwrap();
        let _ = held.recv_timeout(Duration::from_secs(60));
        drop((udp, tcp));
    });
    bound.recv_timeout(Duration::from_secs(5)).unwrap();
    let config = std::fs::read_to_string(t.s.work.config()).unwrap();
    let next = config
        .replace(
            &format!("listen = [\"{FORWARDER}\", \"[fd10::1]:53\"]"),
            &format!("listen = [\"{taken}\", \"[fd10::1]:53\"]"),
        )
        .replace(
            &format!("upstreams = [\"{UPSTREAM}\"]"),
            "upstreams = [\"127.0.0.1:5999\"]",
        );
    assert_ne!(next, config, "the test edits the listen and upstream lines");
    t.s.work.write("steer.toml", &next);
    let (ok, out, err) = t.s.work.steer(&["reload"]);
    assert!(!ok, "the reload was refused: {out}{err}");
    assert!(
        err.contains("reload refused") && err.contains(&format!("bind UDP {taken}")),
        "{out}{err}"
    );
    let dns = &t.s.status()["dns"];
    assert_eq!(dns["listen"][0], FORWARDER, "{dns}");
    assert_eq!(dns["upstreams"][0], UPSTREAM, "{dns}");
    // Still served, by the old upstream.
    let a = ask(&lab.client, forwarder(), "n1.fresh.example", rtype::A).expect("an answer");
    assert_eq!(rcode_of(&a), wire::rcode::NOERROR);
    // Once the address is free the same file loads.
    hold.send(()).unwrap();
    holder.join().unwrap();
    t.s.steer(&["reload"]);
    assert_eq!(t.s.status()["dns"]["listen"][0], taken);
}

/// Set `second`'s block in [`steer_tests::dns::SETS`], to move it in front of `video`.
const SECOND: &str =
    "[[set]]\nname = \"second\"\npolicy = \"wan1-first\"\ndomains = [\"other.example\"]\n";

#[test]
fn shared_hosts_keep_each_sets_claim_across_expiry_reloads_and_restarts() {
    let mut t = DnsScenario::start("dns-claims", "min_ttl = 1\nmax_ttl = 86400", |_| {
        [
            "--host-record=sh1.video.example,198.19.130.1,3000",
            "--host-record=sh1.other.example,198.19.130.1,3000",
            "--host-record=sh3.video.example,198.19.130.3,3000",
            "--host-record=sh3.other.example,198.19.130.3,3000",
            "--host-record=sh4.other.example,198.19.130.4,3000",
            "--host-record=sh4.video.example,198.19.130.4,6",
        ]
        .map(String::from)
        .to_vec()
    });
    let ask_a = |t: &DnsScenario, name: &str| {
        let a = ask(&t.s.lab.client, forwarder(), name, rtype::A).expect("answered");
        assert_eq!(addresses(&a).len(), 1, "{name}");
    };
    let claims = |t: &DnsScenario, addr: &str| {
        let e = t.learned()[addr].clone();
        (
            e["set"].as_str().map(str::to_owned),
            e["also_set"].as_str().map(str::to_owned),
        )
    };
    let pair = |set: &str, also: Option<&str>| (Some(set.to_owned()), also.map(str::to_owned));
    let rx = FirstPackets::start(&t.s.lab, 9996);
    let mut tag = 0u64;
    let mut wan_of = |t: &DnsScenario, to: &str| {
        tag += 1;
        let to: IpAddr = to.parse().unwrap();
        t.s.lab.client.enter(|| {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.send_to(&tag.to_be_bytes(), (to, 9996)).unwrap();
        });
        rx.wait(tag as usize, Duration::from_secs(3))
            .get(&tag)
            .copied()
            .flatten()
    };

    // D2: the winner's 6 s claim is not stretched to the runner-up's 3000 s: when it expires,
    // set second owns the address for what is left of its own claim.
    ask_a(&t, "sh4.other.example");
    ask_a(&t, "sh4.video.example");
    let e = t.learned()["198.19.130.4"].clone();
    assert_eq!(
        (e["set"].as_str(), e["also_set"].as_str()),
        (Some("video"), Some("second"))
    );
    assert!(e["expires_in_s"].as_i64().unwrap() <= 6, "{e}");
    assert!(e["also_expires_in_s"].as_i64().unwrap() > 2900, "{e}");
    assert_eq!(e["also_name"], "sh4.other.example");
    let explained = t.s.steer(&["explain", "198.19.130.4"]);
    assert!(
        explained.contains("learned from the answer for sh4.video.example, expires in")
            && explained.contains("also claimed by set second")
            && explained.contains("from the answer for sh4.other.example"),
        "{explained}"
    );
    assert_eq!(wan_of(&t, "198.19.130.4"), Some(Wan::Two));
    wait_for(
        "the winner's claim expires",
        Duration::from_secs(10),
        || claims(&t, "198.19.130.4") == pair("second", None),
    );
    let e = t.learned()["198.19.130.4"].clone();
    assert!(e["expires_in_s"].as_i64().unwrap() > 2900, "{e}");
    assert_eq!(e["name"], "sh4.other.example");
    assert_eq!(
        wan_of(&t, "198.19.130.4"),
        Some(Wan::One),
        "now set second's"
    );
    assert_eq!(t.counter("expired"), 0, "the address stayed");

    // D3: a reload that puts set second first re-ranks the addresses already learned.
    for name in [
        "sh1.video.example",
        "sh1.other.example",
        "sh3.video.example",
        "sh3.other.example",
    ] {
        ask_a(&t, name);
    }
    for a in ["198.19.130.1", "198.19.130.3"] {
        assert_eq!(claims(&t, a), pair("video", Some("second")), "{a}");
    }
    assert_eq!(wan_of(&t, "198.19.130.3"), Some(Wan::Two));
    let original = std::fs::read_to_string(t.s.work.config()).unwrap();
    assert!(original.contains(SECOND), "{original}");
    let second_first = original.replace(SECOND, "").replacen(
        "[[set]]\nname = \"video\"",
        &format!("{SECOND}\n[[set]]\nname = \"video\""),
        1,
    );
    t.s.work.write("steer.toml", &second_first);
    t.s.steer(&["reload"]);
    for a in ["198.19.130.1", "198.19.130.3"] {
        assert_eq!(claims(&t, a), pair("second", Some("video")), "{a}");
    }
    assert_eq!(wan_of(&t, "198.19.130.3"), Some(Wan::One));
    let explained = t.s.steer(&["explain", "198.19.130.3"]);
    assert!(
        explained
            .contains("set second (dst 198.19.130.3 learned from the answer for sh3.other.example")
            && explained.contains("also claimed by set video"),
        "{explained}"
    );

    // D1: back in the first order, a reload that removes video.example keeps the hosts set
    // second still claims, now second's alone.
    t.s.work.write("steer.toml", &original);
    t.s.steer(&["reload"]);
    assert_eq!(claims(&t, "198.19.130.1"), pair("video", Some("second")));
    let without_video = original.replace("\"video.example\", ", "");
    assert_ne!(without_video, original);
    t.s.work.write("steer.toml", &without_video);
    let out = t.s.steer(&["reload"]);
    assert!(!out.contains("learned hosts removed"), "{out}");
    for a in ["198.19.130.1", "198.19.130.3", "198.19.130.4"] {
        assert_eq!(claims(&t, a), pair("second", None), "{a}");
    }
    assert_eq!(t.counter("removed"), 0);
    assert_eq!(wan_of(&t, "198.19.130.1"), Some(Wan::One));

    // The same at a restart with the domain removed: the claims come back from the maps.
    t.s.work.write("steer.toml", &original);
    t.s.steer(&["reload"]);
    ask_a(&t, "sh1.video.example");
    assert_eq!(claims(&t, "198.19.130.1"), pair("video", Some("second")));
    t.s.daemon.kill9();
    t.s.work.write("steer.toml", &without_video);
    t.s.daemon = steer_tests::daemon::Daemon::start(&t.s.lab.router, &t.s.work);
    assert_eq!(claims(&t, "198.19.130.1"), pair("second", None));
    let e = t.learned()["198.19.130.1"].clone();
    assert_eq!(e["name"], "sh1.other.example");
    assert!(e["expires_in_s"].as_i64().unwrap() > 2900, "{e}");
    assert_eq!(wan_of(&t, "198.19.130.1"), Some(Wan::One));
}

/// One LAN host that holds TCP connections open (idle, or a flood of them) gets its share of
/// the forwarder's TCP slots, not all of them: another client's TCP query is answered at once.
#[test]
fn one_client_holding_idle_tcp_connections_does_not_starve_the_others() {
    let t = DnsScenario::start("dns-tcp-share", "", records);
    let lab = &t.s.lab;
    let (hold, held) = std::sync::mpsc::channel::<()>();
    let (ready, opened) = std::sync::mpsc::channel();
    let holder = lab.client.spawn(move || {
        let to = forwarder();
        let conns: Vec<std::net::TcpStream> = (0..300)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&to, Duration::from_millis(500)).ok()
            })
            .collect();
        ready.send(conns.len()).unwrap();
        let _ = held.recv_timeout(Duration::from_secs(60));
        drop(conns);
    });
    let opened = opened.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(
        opened > 256,
        "the client opened more connections than there are slots ({opened})"
    );
    // Another client on the LAN, through the same listener: answered over TCP at once.
    lab.client.run(&format!(
        "ip addr add 10.10.0.99/24 dev {}",
        Lab::CLIENT_IFACE
    ));
    let started = Instant::now();
    let out = dig(
        &lab.client,
        "-b 10.10.0.99 @10.10.0.1 +tcp +short n1.fresh.example",
    );
    assert_eq!(out.trim(), host_v4(257).to_string(), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        t.counter("tcp_refused") >= 200,
        "the flood's connections beyond its share were closed: {}",
        t.counter("tcp_refused")
    );
    hold.send(()).unwrap();
    holder.join().unwrap();
}

/// The forwarder answered (and learned from) anyone, WAN hosts too, and dnsmasq behind it saw
/// them all from the loopback. Now: the LAN, the router itself and `dns.clients`; a query from
/// anyone else is dropped unanswered, counted and logged.
#[test]
fn only_clients_are_answered_and_dns_clients_adds_more() {
    let t = DnsScenario::start("dns-clients", "", records);
    let lab = &t.s.lab;
    let isp = lab.isp(Wan::One);
    // The ISP routes the LAN's subnet to the router's WAN address.
    isp.run(&format!(
        "ip route add 10.10.0.0/24 via {}",
        Lab::nat_addr_v4(Wan::One)
    ));
    assert_eq!(ask(isp, forwarder(), "n7.fresh.example", rtype::A), None);
    let tcp = dig(
        isp,
        &format!("@{} +tcp +short n8.fresh.example", Lab::LAN_GATEWAY_V4),
    );
    assert!(!tcp.contains("198.19."), "{tcp}");
    let learned = t.learned();
    for i in [7, 8] {
        assert!(!learned.contains_key(&host_v4(256 + i).to_string()), "n{i}");
        assert!(
            !t.dnsmasq
                .log_text()
                .contains(&format!("n{i}.fresh.example")),
            "n{i} reached dnsmasq:\n{}",
            t.dnsmasq.log_text()
        );
    }
    assert!(t.counter("dropped_clients") >= 2);
    let log = t.s.daemon.log_text();
    assert!(
        log.contains(&format!(
            "dropped a query from {}: it is no client",
            Lab::gateway_v4(Wan::One)
        )) && log.contains("add its network to dns.clients"),
        "{log}"
    );
    // The LAN (IPv4 and IPv6) and the router itself are answered.
    let a = ask(&lab.client, forwarder(), "n9.fresh.example", rtype::A).unwrap();
    assert_eq!(addresses(&a), [host_v4(265)]);
    let v6: SocketAddr = "[fd10::1]:53".parse().unwrap();
    let a = ask(&lab.client, v6, "n10.fresh.example", rtype::A).unwrap();
    assert_eq!(addresses(&a), [host_v4(266)]);
    let a = ask(&lab.router, forwarder(), "n11.fresh.example", rtype::A).unwrap();
    assert_eq!(addresses(&a), [host_v4(267)]);

    // dns.clients lets the WAN's subnet in (a VPN's, say).
    let config = std::fs::read_to_string(t.s.work.config()).unwrap();
    let upstreams = format!("upstreams = [\"{UPSTREAM}\"]");
    t.s.work.write(
        "steer.toml",
        &config.replace(
            &upstreams,
            &format!("{upstreams}\nclients = [\"100.64.1.0/30\"]"),
        ),
    );
    t.s.steer(&["reload"]);
    let a = ask(isp, forwarder(), "n12.fresh.example", rtype::A).expect("answered now");
    assert_eq!(addresses(&a), [host_v4(268)]);
}

/// A 512-byte client (no EDNS) got a 6,434-byte UDP answer: the router was an amplifier. A UDP
/// answer longer than the client takes (512 bytes, or its EDNS size) goes back as its header
/// and question with TC set, whatever the upstream sent.
#[test]
fn udp_answers_never_exceed_what_the_client_takes() {
    let t = DnsScenario::start("dns-udp-size", "", records);
    let lab = &t.s.lab;
    // An upstream that answers every query with 200 A records (3,200 bytes and more).
    let _big = bad_upstream(lab, "127.0.0.1:5996", |q| {
        let mut a = wire::reply(q, 0);
        a[6..8].copy_from_slice(&200u16.to_be_bytes());
        for i in 0..200u8 {
            a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 19, 111, i]);
        }
        Some(a)
    });
    reload_upstream(&t, "127.0.0.1:5996");
    let with_edns = |size: u16| {
        let mut q = wire::query(0x5151, "big.example", rtype::A);
        q[11] = 1; // ARCOUNT
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&size.to_be_bytes());
        q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        q
    };
    for (query, limit) in [
        (wire::query(0x5151, "big.example", rtype::A), 512),
        (with_edns(100), 512),
        (with_edns(1232), 1232),
    ] {
        let a = lab
            .client
            .enter(|| exchange(forwarder(), &query, Duration::from_secs(2)))
            .expect("an answer");
        assert!(a.len() <= limit, "{} bytes for a limit of {limit}", a.len());
        let h = wire::Header::parse(&a).unwrap();
        assert!(h.truncated(), "TC set");
        assert_eq!((h.id, h.qdcount, h.ancount), (0x5151, 1, 0));
        assert_eq!(wire::question(&a).unwrap().name, "big.example");
    }
    let a = lab
        .client
        .enter(|| exchange(forwarder(), &with_edns(4096), Duration::from_secs(2)))
        .expect("an answer");
    assert_eq!(addresses(&a).len(), 200, "it fits in 4,096 bytes");
    assert!(!wire::Header::parse(&a).unwrap().truncated());
}

/// An upstream reply that is no DNS message (2 bytes; the query's ID and then 0xff bytes)
/// gets the client SERVFAIL at once, and the log says the upstream answered with a malformed
/// reply: the client got nothing for `timeout_ms`, then SERVFAIL (often after its own
/// timeout), and the log said the upstream did not answer in time. A reply with no query's ID
/// (all 0xff) is named too, and so are the timeouts it leaves. Malformed queries are counted
/// in `steer status` (they were counted, and shown nowhere).
#[test]
fn a_malformed_upstream_reply_is_named_and_malformed_queries_are_shown() {
    let t = DnsScenario::start("dns-malformed", "timeout_ms = 1500", records);
    let lab = &t.s.lab;
    // A reply that carries a waiting query's ID but not its question does not fail the query
    // (anyone who can spoof the upstream's address and guess the ID could): the query waits
    // for a readable answer, gets SERVFAIL at its timeout, and the log names the replies.
    let servfail = |name: &str| {
        let a = ask(&lab.client, forwarder(), name, rtype::A).expect("an answer");
        assert_eq!(rcode_of(&a), wire::rcode::SERVFAIL, "{name}");
    };

    let _short = bad_upstream(lab, "127.0.0.1:5996", |q| Some(q[..2].to_vec()));
    reload_upstream(&t, "127.0.0.1:5996");
    servfail("n10.fresh.example");
    t.s.daemon.wait_log(
        "upstream 127.0.0.1:5996 answered with a malformed reply (2 bytes: shorter than a DNS \
         header); dropped; the query with its ID waits for a readable answer",
        Duration::from_secs(3),
    );

    let _garbage = bad_upstream(lab, "127.0.0.1:5995", |q| {
        let mut a = vec![0xff; q.len()];
        a[..2].copy_from_slice(&q[..2]);
        Some(a)
    });
    reload_upstream(&t, "127.0.0.1:5995");
    servfail("n11.fresh.example");
    t.s.daemon.wait_log(
        "upstream 127.0.0.1:5995 does not answer in time: it sent 1 malformed replies",
        Duration::from_secs(3),
    );

    let _no_id = bad_upstream(lab, "127.0.0.1:5994", |q| Some(vec![0xff; q.len()]));
    reload_upstream(&t, "127.0.0.1:5994");
    let a = ask(&lab.client, forwarder(), "n12.fresh.example", rtype::A).expect("an answer");
    assert_eq!(rcode_of(&a), wire::rcode::SERVFAIL);
    let log = t.s.daemon.log_text();
    assert!(
        log.contains(&format!(
            "upstream 127.0.0.1:5994 answered with a malformed reply ({} bytes: its question \
             cannot be read",
            wire::query(0x4242, "n12.fresh.example", rtype::A).len()
        )) && log.contains("it carries the ID of no query waiting for it, so it is dropped")
            && log.contains(
                "upstream 127.0.0.1:5994 does not answer in time: it sent 1 malformed replies \
                 since its last good answer"
            ),
        "{log}"
    );
    assert!(t.counter("malformed_answers") >= 3);

    // Queries that cannot be read: empty, short, a response, a question cut short (FORMERR).
    let before = t.counter("malformed_queries");
    let mut cut = wire::query(7, "n13.fresh.example", rtype::A);
    cut.truncate(20);
    let mut response = wire::query(8, "n13.fresh.example", rtype::A);
    response[2] |= 0x80;
    lab.client.enter(|| {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for junk in [&[][..], &[1, 2, 3, 4, 5], &response, &cut] {
            s.send_to(junk, forwarder()).unwrap();
        }
    });
    wait_for(
        "the malformed queries counted",
        Duration::from_secs(3),
        || t.counter("malformed_queries") == before + 4,
    );
    let status = t.s.steer(&["status"]);
    assert!(
        status.contains(&format!(
            "{} unreadable (dropped, or answered FORMERR)",
            before + 4
        )),
        "{status}"
    );
}

/// Snoop mode's iptables fallback (kernels without nftables' `queue` expression) left the
/// `ip mangle` and `ip6 mangle` tables it made, with their hooked base chains, after `steer
/// stop`. The tables steer made go with its chain; tables that were there before stay, and so
/// does one another's rule went into meanwhile.
#[test]
fn the_snoop_fallback_removes_the_mangle_tables_it_made_and_only_those() {
    steer_tests::require_root();
    let ns = steer_tests::netns::Netns::new("snoop-fb");
    let lan = vec!["lan0".to_owned()];
    let tables = || ns.run("nft list tables");
    ns.enter(|| steer::dns::snoop::install_fallback(&lan, 7))
        .unwrap();
    assert!(tables().contains("table ip mangle"), "{}", tables());
    // Installed again (a reload, a restarted daemon), the tables are still known as steer's.
    ns.enter(|| steer::dns::snoop::install_fallback(&lan, 7))
        .unwrap();
    ns.enter(steer::dns::snoop::remove_fallback);
    assert!(!tables().contains("mangle"), "left behind:\n{}", tables());

    // Made by steer, but another rule went in meanwhile: it stays, with that rule.
    ns.enter(|| steer::dns::snoop::install_fallback(&lan, 7))
        .unwrap();
    ns.run("iptables -w -t mangle -A PREROUTING -j MARK --set-mark 1");
    ns.enter(steer::dns::snoop::remove_fallback);
    let left = ns.run("iptables -w -t mangle -S");
    assert!(left.contains("--set-xmark 0x1"), "{left}");
    assert!(!left.contains("STEER_DNS_SNOOP"), "{left}");
    assert!(!tables().contains("ip6 mangle"), "{}", tables());
    ns.run("nft delete table ip mangle");

    // There before steer (empty): it stays.
    ns.run("nft add table ip mangle");
    ns.enter(|| steer::dns::snoop::install_fallback(&lan, 7))
        .unwrap();
    ns.enter(steer::dns::snoop::remove_fallback);
    assert!(tables().contains("table ip mangle"), "{}", tables());
    assert!(!tables().contains("ip6 mangle"), "{}", tables());
    let left = ns.run("iptables -w -t mangle -S");
    assert!(!left.contains("STEER_DNS_SNOOP"), "{left}");
}
