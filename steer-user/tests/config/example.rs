//! The documented example and the defaults of everything optional.

use steer::{
    config::{DuplicatePolicy, LastResort, Member, NextHop, ProbeTarget, StatusCodes, TrackMethod},
    model::Direction,
};

use super::*;

#[test]
fn the_documented_example_loads_with_the_expected_values() {
    let path = fixtures().join("steer.toml");
    let c = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.path, path);

    let g = &c.general;
    assert_eq!(g.lan, ["br-lan"]);
    assert_eq!(g.mark_mask, 0xff00);
    assert!(!g.xdp);
    assert_eq!(g.pin_dir, Path::new("/sys/fs/bpf/steer"));
    assert_eq!(g.capacity.dst_v4, 1_048_576);
    assert_eq!(g.capacity.dst_v6, steer_common::DEFAULT_CAPACITY_DST_V6);
    assert_eq!(g.capacity.src_v4, steer_common::DEFAULT_CAPACITY_SRC_V4);
    assert_eq!(g.capacity.src_v6, steer_common::DEFAULT_CAPACITY_SRC_V6);
    assert!(!g.log_packets);
    assert_eq!(g.duplicates, DuplicatePolicy::Error);

    assert_eq!(c.wans.len(), 2);
    let w1 = &c.wans[0];
    assert_eq!(
        (w1.name.as_str(), w1.interface.as_str(), w1.mark, w1.table),
        ("wan1", "eth1", 0x100, 101)
    );
    assert_eq!(w1.gateway, NextHop::Via(ip("192.168.2.1")));
    assert_eq!(
        w1.gateway6,
        NextHop::Auto,
        "left out: learned from the system"
    );
    let t = &w1.track;
    assert_eq!(t.method, TrackMethod::Icmp);
    assert_eq!(
        t.targets,
        [
            ProbeTarget::Icmp(ip("1.1.1.1")),
            ProbeTarget::Icmp(ip("9.9.9.9"))
        ]
    );
    assert_eq!(
        (
            t.interval_ms,
            t.timeout_ms,
            t.reliability,
            t.down_after,
            t.up_after
        ),
        (500, 400, 1, 3, 5)
    );
    assert_eq!(t.max_latency_ms, None);
    assert_eq!(t.loss_window, 10);

    let w2 = &c.wans[1];
    assert_eq!(
        (w2.name.as_str(), w2.interface.as_str(), w2.mark, w2.table),
        ("wan2", "pppoe-wan2", 0x200, 102)
    );
    assert_eq!(w2.gateway, NextHop::Auto);
    assert_eq!(w2.gateway6, NextHop::Via(ip("fe80::1")));
    let t = &w2.track;
    assert_eq!(t.method, TrackMethod::Http);
    assert_eq!(
        t.targets,
        [
            ProbeTarget::Http {
                addr: sock("1.1.1.1:80"),
                host: "connectivity.example.net".into(),
                path: "/generate_204".into(),
                status: StatusCodes::new(vec![204..=204]).unwrap(),
            },
            ProbeTarget::Http {
                addr: sock("[2606:4700:4700::1111]:80"),
                host: "connectivity.example.net".into(),
                path: "/generate_204".into(),
                status: StatusCodes::new(vec![204..=204]).unwrap(),
            }
        ]
    );
    assert_eq!(t.reliability, 2);
    assert_eq!(
        (
            t.max_latency_ms,
            t.recover_latency_ms,
            t.max_loss_percent,
            t.recover_loss_percent
        ),
        (Some(300), Some(150), Some(20), Some(5))
    );

    assert_eq!(c.policies.len(), 2);
    let p = c.policy("wan2-first").unwrap();
    assert_eq!(
        p.members,
        [
            Member {
                wan: "wan2".into(),
                metric: 1,
                weight: 1
            },
            Member {
                wan: "wan1".into(),
                metric: 2,
                weight: 1
            }
        ]
    );
    assert_eq!(p.last_resort, LastResort::Default);
    let p = c.policy("balanced").unwrap();
    assert_eq!(
        p.members,
        [
            Member {
                wan: "wan1".into(),
                metric: 1,
                weight: 3
            },
            Member {
                wan: "wan2".into(),
                metric: 1,
                weight: 1
            }
        ]
    );

    assert_eq!(c.sets.len(), 2);
    let s = c.set("bypass").unwrap();
    assert_eq!(s.policy, "wan2-first");
    assert_eq!(s.direction, Direction::Dst);
    assert!(!s.allow_default_route);
    let got: Vec<(String, String)> = s
        .prefixes
        .iter()
        .map(|e| (e.prefix.to_string(), e.origin.to_string()))
        .collect();
    let cfg = path.display().to_string();
    // 203.0.113.0/24 is also in the list file (line 6): kept once, inline.
    assert_eq!(
        got,
        [
            ("203.0.113.0/24".to_string(), format!("{cfg}:57")),
            ("2001:db8::/32".to_string(), format!("{cfg}:57")),
            ("198.51.100.7/32".to_string(), format!("{cfg}:57")),
        ]
    );
    let listed: Vec<String> = s.listed.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        listed,
        ["192.0.2.0/24", "198.51.100.0/25", "2001:db8:ffff::/48"]
    );
    assert_eq!(s.files, [fixtures().join("lists/bypass.txt")]);
    assert_eq!(s.domains, ["example.com", "video.example.org"]);

    let s = c.set("kids").unwrap();
    assert_eq!(s.direction, Direction::Src);
    let got: Vec<String> = s.prefixes.iter().map(|e| e.prefix.to_string()).collect();
    assert_eq!(got, ["192.168.1.64/27", "fd00:1::/64"]);
    assert!(s.domains.is_empty());

    assert_eq!(c.default.as_ref().unwrap().policy, "balanced");
    assert_eq!(c.control.socket, Path::new("/run/steer/steer.sock"));
    assert_eq!(c.control.metrics, Some(sock("127.0.0.1:9464")));
}

#[test]
fn the_docs_show_the_tested_example() {
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .unwrap();
    let example = std::fs::read_to_string(fixtures().join("steer.toml")).unwrap();
    assert!(
        docs.contains(&format!("```toml\n{example}```")),
        "docs/configuration.md must show tests/fixtures/config/steer.toml verbatim"
    );
    let list = std::fs::read_to_string(fixtures().join("lists/bypass.txt")).unwrap();
    assert!(
        docs.contains(&list.replace("\r\n", "\n")),
        "docs/configuration.md must show tests/fixtures/config/lists/bypass.txt"
    );
}

#[test]
fn the_docs_show_real_error_output() {
    let dir = fixtures().join("broken");
    let e = config::load(&dir.join("steer.toml")).unwrap_err();
    let prefix = format!("{}/", dir.display());
    let shown: String = e
        .to_string()
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix(&prefix).unwrap_or(l)))
        .collect();
    assert_eq!(e.errors.len(), 7, "{e}");
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .unwrap();
    let broken = std::fs::read_to_string(dir.join("steer.toml")).unwrap();
    assert!(
        docs.contains(&format!("```toml\n{broken}```")),
        "docs must show broken/steer.toml"
    );
    assert!(
        docs.contains(&format!("```text\n{shown}```")),
        "docs/configuration.md must show this output:\n{shown}"
    );
}

#[test]
fn defaults_fill_everything_optional() {
    let c = parse_in_fixtures(MIN).unwrap();
    assert_eq!(c.general.mark_mask, 0xff00);
    assert_eq!(c.general.pin_dir, Path::new("/sys/fs/bpf/steer"));
    assert_eq!(c.general.capacity, config::Capacity::default());
    assert!(!c.general.xdp && !c.general.log_packets);
    assert_eq!(c.general.duplicates, DuplicatePolicy::Error);
    assert_eq!(c.control, config::Control::default());
    assert_eq!(c.control.metrics, None);
    assert_eq!(c.default, None);
    assert_eq!(c.sets[0].direction, Direction::Dst);
    assert_eq!(c.policies[0].last_resort, LastResort::Default);
    assert_eq!(c.policies[0].members[0].metric, 1);
    assert_eq!(c.policies[0].members[0].weight, 1);
    let t = &c.wans[0].track;
    assert_eq!(t.method, TrackMethod::Icmp);
    assert_eq!(
        (
            t.interval_ms,
            t.timeout_ms,
            t.reliability,
            t.down_after,
            t.up_after,
            t.loss_window
        ),
        (500, 400, 1, 3, 5, 10)
    );
}
