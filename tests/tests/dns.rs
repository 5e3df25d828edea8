//! Domain sets with real components: steer's forwarder in front of dnsmasq on the router,
//! clients in the client namespace (a stub that connects the moment its answer arrives, and
//! `dig`), first packets observed at the ISPs.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use steer::dns::wire::{self, rtype};
use steer_tests::{
    dns::{
        DnsScenario, Dnsmasq, FORWARDER, FirstPackets, UPSTREAM, addresses, ask, dig, exchange,
        host_v4, resolve_and_connect,
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
    let mut hosts = String::new();
    for i in 0..FRESH {
        hosts.push_str(&format!("{} n{i}.fresh.example\n", host_v4(256 + i)));
    }
    for i in 1..=40 {
        hosts.push_str(&format!("198.19.110.{i} big.video.example\n"));
    }
    let file = dir.join("hosts");
    std::fs::write(&file, hosts).unwrap();
    // dnsmasq reads it after dropping privileges.
    let _ = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir)
        .status();
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
        format!("--addn-hosts={}", file.display()),
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
