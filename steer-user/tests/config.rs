//! Configuration loading and validation, without privileges: the documented example, one small
//! broken config per class of error (line, column, field and message checked), many errors at
//! once, unknown keys, the address corpus, list files, duplicates across sets, and a timing run
//! over a 1,000,000-line list.

mod common;

use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Instant,
};

use common::TempDir;
use steer::{
    config::{
        self, Config, ConfigErrors, DuplicatePolicy, LastResort, Member, ProbeTarget, TrackMethod,
    },
    model::Direction,
    prefix::{AddrError, Prefix, parse_prefix},
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

fn parse_in_fixtures(text: &str) -> Result<Config, ConfigErrors> {
    config::parse(text, &fixtures().join("case.toml"))
}

fn errors(text: &str) -> ConfigErrors {
    match parse_in_fixtures(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e,
    }
}

/// 1-based line and column of the first occurrence of `needle` in `text`; with a `|` in the
/// needle, of the place the `|` marks.
fn position(text: &str, needle: &str) -> (usize, usize) {
    let mark = needle.find('|').unwrap_or(0);
    let needle = needle.replace('|', "");
    let at = text
        .find(&needle)
        .unwrap_or_else(|| panic!("`{needle}` not in:\n{text}"))
        + mark;
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap().chars().count() + 1;
    (line, column)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The documented example
// ---------------------------------------------------------------------------------------------

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
    assert_eq!(w1.gateway, Some("192.168.2.1".parse().unwrap()));
    assert_eq!(w1.gateway6, None);
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
    assert_eq!(w2.gateway, None);
    assert_eq!(w2.gateway6, Some("fe80::1".parse().unwrap()));
    let t = &w2.track;
    assert_eq!(t.method, TrackMethod::Http);
    assert_eq!(
        t.targets,
        [
            ProbeTarget::Http {
                addr: sock("1.1.1.1:80"),
                host: "connectivity.example.net".into(),
                path: "/generate_204".into()
            },
            ProbeTarget::Http {
                addr: sock("[2606:4700:4700::1111]:80"),
                host: "connectivity.example.net".into(),
                path: "/generate_204".into()
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
    let list = fixtures().join("lists/bypass.txt").display().to_string();
    // 203.0.113.0/24 is also in the list file (line 6): kept once, with its first origin.
    assert_eq!(
        got,
        [
            ("203.0.113.0/24".to_string(), format!("{cfg}:56")),
            ("2001:db8::/32".to_string(), format!("{cfg}:56")),
            ("198.51.100.7/32".to_string(), format!("{cfg}:56")),
            ("192.0.2.0/24".to_string(), format!("{list}:2")),
            ("198.51.100.0/25".to_string(), format!("{list}:4")),
            ("2001:db8:ffff::/48".to_string(), format!("{list}:5")),
        ]
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

#[test]
fn track_methods_parse_their_targets() {
    let text = MIN.replace(
        "targets = [\"9.9.9.9\"]",
        "method = \"dns\"\ntargets = [\"9.9.9.9\", \"2620:fe::fe\"]\nquery = \"Example.com\"",
    );
    let c = parse_in_fixtures(&text).unwrap();
    assert_eq!(
        c.wans[1].track.targets,
        [
            ProbeTarget::Dns {
                server: ip("9.9.9.9"),
                query: "example.com".into()
            },
            ProbeTarget::Dns {
                server: ip("2620:fe::fe"),
                query: "example.com".into()
            }
        ]
    );
    let text = MIN.replace(
        "targets = [\"9.9.9.9\"]",
        "method = \"dns\"\ntargets = [\"9.9.9.9\"]",
    );
    let c = parse_in_fixtures(&text).unwrap();
    assert_eq!(
        c.wans[1].track.targets,
        [ProbeTarget::Dns {
            server: ip("9.9.9.9"),
            query: ".".into()
        }]
    );
    let text = MIN.replace(
        "targets = [\"9.9.9.9\"]",
        "method = \"tcp\"\ntargets = [\"9.9.9.9:443\", \"[2620:fe::fe]:53\"]",
    );
    let c = parse_in_fixtures(&text).unwrap();
    assert_eq!(
        c.wans[1].track.targets,
        [
            ProbeTarget::Tcp(sock("9.9.9.9:443")),
            ProbeTarget::Tcp(sock("[2620:fe::fe]:53"))
        ]
    );
    let text = MIN.replace(
        "targets = [\"9.9.9.9\"]",
        "method = \"http\"\ntargets = [\"http://192.0.2.1:8080/health\"]",
    );
    let c = parse_in_fixtures(&text).unwrap();
    assert_eq!(
        c.wans[1].track.targets,
        [ProbeTarget::Http {
            addr: sock("192.0.2.1:8080"),
            host: "192.0.2.1:8080".into(),
            path: "/health".into()
        }]
    );
}

// ---------------------------------------------------------------------------------------------
// One broken config per class of error
// ---------------------------------------------------------------------------------------------

/// The smallest valid configuration; every case below breaks it in one way.
const MIN: &str = r#"[general]
lan = ["br-lan"]

[[wan]]
name = "wan1"
interface = "eth1"
mark = 0x100
table = 101
[wan.track]
targets = ["1.1.1.1"]

[[wan]]
name = "wan2"
interface = "eth2"
mark = 0x200
table = 102
[wan.track]
targets = ["9.9.9.9"]

[[policy]]
name = "p"
members = [{ wan = "wan1" }, { wan = "wan2", metric = 2 }]

[[set]]
name = "s"
policy = "p"
prefixes = ["10.0.0.0/8"]
"#;

struct Case {
    /// Replace the first `from` in MIN with `to` (`from` empty: append `to`).
    from: &'static str,
    to: &'static str,
    /// The error is located at the first occurrence of `at` in the changed text.
    at: &'static str,
    field: &'static str,
    /// Must appear in the message or hint.
    says: &'static str,
    /// How many errors the change causes in total.
    count: usize,
}

const fn case(
    from: &'static str,
    to: &'static str,
    at: &'static str,
    field: &'static str,
    says: &'static str,
) -> Case {
    Case {
        from,
        to,
        at,
        field,
        says,
        count: 1,
    }
}

const CASES: &[Case] = &[
    // syntax and shape
    case(
        "name = \"wan1\"",
        "name = wan1",
        "wan1\ninterface",
        "",
        "double quotes",
    ),
    case(
        "table = 101",
        "table = 101\ntable = 103",
        "table = 103",
        "",
        "duplicate key",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\"]\nintreval_ms = 500",
        "intreval_ms",
        "wan[wan1].track.intreval_ms",
        "did you mean `interval_ms`?",
    ),
    case(
        "",
        "[control]\nfoo = 1\n",
        "foo",
        "control.foo",
        "valid keys here are `socket`, `metrics`",
    ),
    case(
        "",
        "[vrrp]\nvrid = 1\n",
        "vrrp",
        "vrrp",
        "unknown key `vrrp` at the top level",
    ),
    case(
        "mark = 0x100",
        "mark = \"0x100\"",
        "\"0x100\"",
        "wan[wan1].mark",
        "expected an integer, found a string",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = \"br-lan\"",
        "\"br-lan\"",
        "general.lan",
        "a single entry still needs the brackets",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "prefixes = [\"10.0.0.0/8\", 10]",
        "10]",
        "set[s].prefixes[1]",
        "expected a string",
    ),
    case(
        "",
        "[general.capacity]\ndst_v4 = true\n",
        "true",
        "general.capacity.dst_v4",
        "expected an integer, found a boolean",
    ),
    case(
        "interface = \"eth1\"\n",
        "",
        "[[wan]]",
        "wan[wan1].interface",
        "required key `interface` is missing",
    ),
    case(
        "[wan.track]\ntargets = [\"1.1.1.1\"]\n",
        "",
        "[[wan]]",
        "wan[wan1].track",
        "no health tracking",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "interval_ms = 500",
        "[wan.track]",
        "wan[wan1].track.targets",
        "required key `targets` is missing",
    ),
    case(
        "[general]\nlan = [\"br-lan\"]\n",
        "",
        "",
        "general",
        "[general] section is missing",
    ),
    // [general]
    case(
        "lan = [\"br-lan\"]",
        "lan = []",
        "[]",
        "general.lan",
        "no LAN interface",
    ),
    case(
        "\"br-lan\"",
        "\"br-lan-with-a-long-name\"",
        "\"br-lan-",
        "general.lan[0]",
        "at most 15 bytes",
    ),
    case(
        "\"br-lan\"",
        "\"br lan\"",
        "\"br lan\"",
        "general.lan[0]",
        "cannot contain ' '",
    ),
    case(
        "\"br-lan\"",
        "\"br-lan\", \"br-lan\"",
        "\"br-lan\"]",
        "general.lan[1]",
        "listed twice",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\", \"eth2\"]",
        "\"eth2\"\nmark",
        "wan[wan2].interface",
        "also listed in general.lan",
    ),
    case(
        "interface = \"eth2\"",
        "interface = \"eth1\"",
        "\"eth1\"\nmark = 0x200",
        "wan[wan2].interface",
        "already the interface of WAN `wan1` (line 6)",
    ),
    case(
        "mark = 0x200",
        "mark = 0xff00",
        "0xff00",
        "wan[wan2].mark",
        "reserved for the `unreachable` last resort",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\nmark_mask = 0",
        "mark_mask = |0",
        "general.mark_mask",
        "would own no bits",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\nmark_mask = 0x1ffffffff",
        "0x1ff",
        "general.mark_mask",
        "32-bit",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\nduplicates = \"first_set_wins\"",
        "\"first_set_wins\"",
        "general.duplicates",
        "did you mean `first-set-wins`?",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\npin_dir = \"bpf/steer\"",
        "\"bpf/steer\"",
        "general.pin_dir",
        "absolute path",
    ),
    case(
        "",
        "[general.capacity]\nsrc_v6 = 0\n",
        "src_v6 = |0",
        "general.capacity.src_v6",
        "from 1 to 16777216",
    ),
    case(
        "",
        "[general.capacity]\ndst_v4 = 16777217\n",
        "16777217",
        "general.capacity.dst_v4",
        "from 1 to 16777216",
    ),
    // [[wan]]
    case(
        "mark = 0x100",
        "mark = 0",
        "0\ntable = 101",
        "wan[wan1].mark",
        "means \"no WAN\"",
    ),
    case(
        "mark = 0x100",
        "mark = 0x10000",
        "0x10000",
        "wan[wan1].mark",
        "outside general.mark_mask (0xff00)",
    ),
    case(
        "mark = 0x100",
        "mark = 0x10000",
        "0x10000",
        "wan[wan1].mark",
        "such as 0x100 or 0x200",
    ),
    case(
        "mark = 0x200",
        "mark = 0x100",
        "0x100\ntable = 102",
        "wan[wan2].mark",
        "already used by WAN `wan1` (line 7)",
    ),
    case(
        "table = 101",
        "table = 254",
        "254",
        "wan[wan1].table",
        "reserved `main` table",
    ),
    case(
        "table = 101",
        "table = 253",
        "253",
        "wan[wan1].table",
        "reserved `default` table",
    ),
    case(
        "table = 101",
        "table = 255",
        "255",
        "wan[wan1].table",
        "reserved `local` table",
    ),
    case(
        "table = 101",
        "table = 0",
        "table = |0",
        "wan[wan1].table",
        "reserved `unspec` table",
    ),
    case(
        "table = 101",
        "table = 2147483648",
        "2147483648",
        "wan[wan1].table",
        "1 to 2147483647",
    ),
    case(
        "table = 102",
        "table = 101",
        "101\n[wan.track]\ntargets = [\"9",
        "wan[wan2].table",
        "already used by WAN `wan1` (line 8)",
    ),
    case(
        "interface = \"eth1\"",
        "interface = \"\"",
        "\"\"",
        "wan[wan1].interface",
        "empty",
    ),
    case(
        "table = 101",
        "table = 101\ngateway = \"fe80::1\"",
        "\"fe80::1\"",
        "wan[wan1].gateway",
        "put an IPv6 gateway in `gateway6`",
    ),
    case(
        "table = 101",
        "table = 101\ngateway = \"192.168.002.1\"",
        "\"192.168.002.1\"",
        "wan[wan1].gateway",
        "leading zero",
    ),
    case(
        "table = 101",
        "table = 101\ngateway6 = \"fe80::1%eth1\"",
        "\"fe80::1%eth1\"",
        "wan[wan1].gateway6",
        "zone id",
    ),
    case(
        "table = 101",
        "table = 101\ngateway = \"0.0.0.0\"",
        "\"0.0.0.0\"",
        "wan[wan1].gateway",
        "cannot be a gateway",
    ),
    // [wan.track]
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = []",
        "[]",
        "wan[wan1].track.targets",
        "no probe targets",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\"]\nmethod = \"ping\"",
        "\"ping\"",
        "wan[wan1].track.method",
        "use one of `icmp`, `tcp`, `dns`, `http`",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\"]\nmethod = \"ICMP\"",
        "\"ICMP\"",
        "wan[wan1].track.method",
        "did you mean `icmp` (lowercase)?",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\", \"1.1.1.1\"]",
        "\"1.1.1.1\"]",
        "wan[wan1].track.targets[1]",
        "already listed (targets[0])",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1:53\"]",
        "\"1.1.1.1:53\"",
        "wan[wan1].track.targets[0]",
        "icmp targets are plain addresses",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"one.one.one.one\"]",
        "\"one.one",
        "wan[wan1].track.targets[0]",
        "is a name, not an IP address",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "method = \"tcp\"\ntargets = [\"1.1.1.1\"]",
        "\"1.1.1.1\"",
        "wan[wan1].track.targets[0]",
        "add the port, e.g. 1.1.1.1:443",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "method = \"tcp\"\ntargets = [\"2606:4700::1111:443\"]",
        "\"2606",
        "wan[wan1].track.targets[0]",
        "[2001:db8::1]:443",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "method = \"http\"\ntargets = [\"https://1.1.1.1/\"]",
        "\"https",
        "wan[wan1].track.targets[0]",
        "https probes are not supported",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "method = \"http\"\ntargets = [\"http://example.com/\"]",
        "\"http:",
        "wan[wan1].track.targets[0]",
        "set host = \"example.com\"",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "method = \"dns\"\ntargets = [\"1.1.1.1:53\"]",
        "\"1.1.1.1:53\"",
        "wan[wan1].track.targets[0]",
        "queries go to port 53",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\"]\nquery = \"example.com\"",
        "\"example.com\"",
        "wan[wan1].track.query",
        "only applies to method = \"dns\"",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\"]\nhost = \"example.com\"",
        "\"example.com\"",
        "wan[wan1].track.host",
        "only applies to method = \"http\"",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\"]\ninterval_ms = 5\ntimeout_ms = 4",
        "interval_ms = |5",
        "wan[wan1].track.interval_ms",
        "from 10 to 3600000 ms",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\"]\ntimeout_ms = 600",
        "600",
        "wan[wan1].track.timeout_ms",
        "from 1 to interval_ms (500)",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\"]\ninterval_ms = 200",
        "200",
        "wan[wan1].track.interval_ms",
        "also set timeout_ms to at most 200",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\"]\nreliability = 2",
        "reliability = |2",
        "wan[wan1].track.reliability",
        "number of targets (1)",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\"]\ndown_after = 0",
        "down_after = |0",
        "wan[wan1].track.down_after",
        "from 1 to 1000 rounds",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\"]\nup_after = 1001",
        "1001",
        "wan[wan1].track.up_after",
        "from 1 to 1000 rounds",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\"]\nmax_loss_percent = 101",
        "max_loss_percent = |101",
        "wan[wan1].track.max_loss_percent",
        "from 0 to 100",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\"]\nmax_latency_ms = 500",
        "500",
        "wan[wan1].track.max_latency_ms",
        "at most timeout_ms",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\"]\nrecover_latency_ms = 100",
        "recover_latency_ms = |100",
        "wan[wan1].track.recover_latency_ms",
        "needs `max_latency_ms`",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\"]\nmax_loss_percent = 10\nrecover_loss_percent = 20",
        "20",
        "wan[wan1].track.recover_loss_percent",
        "looser than max_loss_percent (10%)",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\"]\nloss_window = 0",
        "loss_window = |0",
        "wan[wan1].track.loss_window",
        "from 1 to 1000",
    ),
    // names
    Case {
        count: 2, // the policy's reference to wan1 breaks too
        ..case(
            "name = \"wan1\"",
            "name = \"wan 1\"",
            "\"wan 1\"",
            "wan[0].name",
            "invalid WAN name: the name contains ' '",
        )
    },
    case(
        "name = \"s\"",
        "name = \"a-set-name-that-is-much-too-long-for-steer-to-accept\"",
        "\"a-set",
        "set[0].name",
        "the limit is 47",
    ),
    Case {
        count: 2, // and wan1 is then twice in the policy
        ..case(
            "name = \"wan2\"",
            "name = \"wan1\"",
            "\"wan1\"\ninterface = \"eth2\"",
            "wan[wan1].name",
            "already used by the WAN at line 5",
        )
    },
    case(
        "[[set]]",
        "[[policy]]\nname = \"p\"\nmembers = [{ wan = \"wan1\" }]\n\n[[set]]",
        "\"p\"\nmembers = [{ wan = \"wan1\" }]\n\n",
        "policy[p].name",
        "already used by the policy at line 21",
    ),
    // [[policy]]
    case(
        "{ wan = \"wan2\", metric = 2 }",
        "{ wan = \"wan3\", metric = 2 }",
        "\"wan3\"",
        "policy[p].members[1].wan",
        "WAN `wan3` is not defined",
    ),
    case(
        "{ wan = \"wan2\", metric = 2 }",
        "{ wan = \"wan3\", metric = 2 }",
        "\"wan3\"",
        "policy[p].members[1].wan",
        "defined WANs: `wan1`, `wan2`",
    ),
    case(
        "{ wan = \"wan2\", metric = 2 }",
        "{ wan = \"wan1\", metric = 2 }",
        "\"wan1\", metric",
        "policy[p].members[1].wan",
        "already a member of this policy (members[0])",
    ),
    case(
        "members = [{ wan = \"wan1\" }, { wan = \"wan2\", metric = 2 }]",
        "members = []",
        "[]",
        "policy[p].members",
        "no members",
    ),
    case(
        "metric = 2",
        "metric = 256",
        "256",
        "policy[p].members[1].metric",
        "from 1 to 255",
    ),
    case(
        "metric = 2",
        "weight = 0",
        "0 }",
        "policy[p].members[1].weight",
        "from 1 to 64",
    ),
    case(
        "{ wan = \"wan1\" }",
        "{ wan = \"wan1\", weigth = 2 }",
        "weigth",
        "policy[p].members[0].weigth",
        "did you mean `weight`?",
    ),
    case(
        "{ wan = \"wan1\" }",
        "{ metric = 1 }",
        "{ metric",
        "policy[p].members[0].wan",
        "required key `wan` is missing",
    ),
    case(
        "metric = 2 }]",
        "metric = 2 }]\nlast_resort = \"drop\"",
        "\"drop\"",
        "policy[p].last_resort",
        "use one of `default`, `unreachable`, `blackhole`",
    ),
    // [[set]]
    case(
        "policy = \"p\"",
        "policy = \"q\"",
        "\"q\"",
        "set[s].policy",
        "policy `q` is not defined",
    ),
    case(
        "policy = \"p\"",
        "policy = \"q\"",
        "\"q\"",
        "set[s].policy",
        "defined policies: `p`",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "prefixes = []",
        "[[set]]",
        "set[s]",
        "nothing to match",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "prefixes = [\"10.0.0.0/8\"]\nmatch = \"destination\"",
        "\"destination\"",
        "set[s].match",
        "use one of `dst`, `src`",
    ),
    case(
        "\"10.0.0.0/8\"",
        "\"10.1.2.3/8\"",
        "\"10.1.2.3/8\"",
        "set[s].prefixes[0]",
        "host bits set; the network is 10.0.0.0/8",
    ),
    case(
        "\"10.0.0.0/8\"",
        "\"10.0.0.0/8\", \"010.0.0.0/8\"",
        "\"010.",
        "set[s].prefixes[1]",
        "write `10.0.0.0/8` if decimal was meant, or `8.0.0.0/8` if octal was meant",
    ),
    case(
        "\"10.0.0.0/8\"",
        "\"0.0.0.0/0\"",
        "\"0.0.0.0/0\"",
        "set[s].prefixes[0]",
        "set `allow_default_route = true` in it",
    ),
    case(
        "\"10.0.0.0/8\"",
        "\"::ffff:10.0.0.0/104\"",
        "\"::ffff",
        "set[s].prefixes[0]",
        "write the IPv4 network `10.0.0.0/8`",
    ),
    case(
        "\"10.0.0.0/8\"",
        "\"example.com\"",
        "\"example.com\"",
        "set[s].prefixes[0]",
        "put domain names in the set's `domains`",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "domains = [\"*.example.com\"]",
        "\"*.",
        "set[s].domains[0]",
        "write `example.com`: a name already matches itself and all its subdomains",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "domains = [\"192.0.2.1\"]",
        "\"192.0.2.1\"",
        "set[s].domains[0]",
        "put addresses and networks in the set's `prefixes`",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "domains = [\"exa_mple.com\"]",
        "\"exa_mple",
        "set[s].domains[0]",
        "letters, digits and `-`",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "match = \"src\"\ndomains = [\"example.com\"]",
        "[\"example.com\"]",
        "set[s].domains",
        "only work in sets with match = \"dst\"",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "files = [\"lists/missing.txt\"]",
        "\"lists/missing.txt\"",
        "set[s].files[0]",
        "cannot read list file `lists/missing.txt` of set `s`",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "files = [\"lists/missing.txt\"]",
        "\"lists/missing.txt\"",
        "set[s].files[0]",
        "relative to the config file's directory",
    ),
    // [default] and [control]
    case(
        "",
        "[default]\npolicy = \"balanced\"\n",
        "\"balanced\"",
        "default.policy",
        "policy `balanced` is not defined",
    ),
    case(
        "",
        "[default]\n",
        "[default]",
        "default.policy",
        "required key `policy` is missing",
    ),
    case(
        "",
        "[control]\nsocket = \"steer.sock\"\n",
        "\"steer.sock\"",
        "control.socket",
        "absolute path",
    ),
    case(
        "",
        "[control]\nmetrics = \"127.0.0.1\"\n",
        "\"127.0.0.1\"",
        "control.metrics",
        "add the port, e.g. 127.0.0.1:443",
    ),
    case(
        "",
        "[control]\nmetrics = \"[::1]:0\"\n",
        "\"[::1]:0\"",
        "control.metrics",
        "not a valid port",
    ),
];

#[test]
fn each_class_of_error_has_its_own_located_message() {
    let mut failures = String::new();
    for (i, c) in CASES.iter().enumerate() {
        let text = if c.from.is_empty() {
            format!("{MIN}\n{}", c.to)
        } else {
            assert!(MIN.contains(c.from), "case {i}: `{}` not in MIN", c.from);
            MIN.replacen(c.from, c.to, 1)
        };
        let (line, column) = position(&text, c.at);
        let errs = match parse_in_fixtures(&text) {
            Ok(_) => {
                let _ = writeln!(failures, "case {i} ({}): no error", c.says);
                continue;
            }
            Err(e) => e,
        };
        let found = errs.errors.iter().find(|d| {
            d.field == c.field && (d.message.contains(c.says) || d.hint.contains(c.says))
        });
        match found {
            None => {
                let _ = writeln!(
                    failures,
                    "case {i}: no error for field `{}` saying `{}`; got:\n{errs}",
                    c.field, c.says
                );
            }
            Some(d) => {
                if (d.line, d.column) != (line, column) {
                    let _ = writeln!(failures, "case {i}: {d}\n  expected at {line}:{column}",);
                }
                if d.file != fixtures().join("case.toml") {
                    let _ = writeln!(failures, "case {i}: wrong file in {d}");
                }
            }
        }
        if errs.errors.len() != c.count {
            let _ = writeln!(
                failures,
                "case {i}: expected {} error(s), got:\n{errs}",
                c.count
            );
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn display_has_file_line_column_field_value_message_and_hint() {
    let text = MIN.replacen("mark = 0x100", "mark = 0x10000", 1);
    let e = errors(&text);
    assert_eq!(
        e.to_string(),
        format!(
            "{}:7:8: wan[wan1].mark = 0x10000: mark 0x10000 is outside general.mark_mask (0xff00); use a mark made only of the mask's bits, such as 0x100 or 0x200",
            fixtures().join("case.toml").display()
        )
    );
}

#[test]
fn all_errors_are_reported_at_once_in_file_order() {
    let text = r#"[general]
lan = ["br-lan"]
mark_mask = 0xff00
dupilcates = "error"

[[wan]]
name = "wan1"
interface = "eth1"
mark = 0x100
table = 254
[wan.track]
targets = ["1.1.1.1"]
timeout_ms = 900

[[wan]]
name = "wan2"
interface = "eth2"
mark = 0x100
table = 102
[wan.track]
targets = ["9.9.9.9"]
bogus = true

[[policy]]
name = "p"
members = [{ wan = "wan1" }, { wan = "wan9" }]

[[set]]
name = "s"
policy = "p"
prefixes = ["10.1.0.0/8", "192.168.1.010"]
domains = ["*.example.com"]

[default]
policy = "nope"
"#;
    let e = errors(text);
    let got: Vec<(usize, usize, &str)> = e
        .errors
        .iter()
        .map(|d| (d.line, d.column, d.field.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (4, 1, "general.dupilcates"),
            (10, 9, "wan[wan1].table"),
            (13, 14, "wan[wan1].track.timeout_ms"),
            (18, 8, "wan[wan2].mark"),
            (22, 1, "wan[wan2].track.bogus"),
            (26, 38, "policy[p].members[1].wan"),
            (31, 13, "set[s].prefixes[0]"),
            (31, 27, "set[s].prefixes[1]"),
            (32, 12, "set[s].domains[0]"),
            (35, 10, "default.policy"),
        ],
        "{e}"
    );
    assert!(e.errors[0].hint.contains("did you mean `duplicates`?"));
    assert_eq!(e.to_string().lines().count(), 10);
}

#[test]
fn every_unknown_key_is_reported_with_a_suggestion_when_one_is_close() {
    let text = MIN
        .replacen(
            "lan = [\"br-lan\"]",
            "lan = [\"br-lan\"]\nmarkmask = 0xff00\nxpd = true",
            1,
        )
        .replacen("table = 101", "table = 101\ngatway = \"192.0.2.1\"", 1)
        .replacen(
            "targets = [\"9.9.9.9\"]",
            "targets = [\"9.9.9.9\"]\nup_afer = 2\nflap_guard = 3",
            1,
        )
        .replacen("prefixes =", "prefix = [\"10.0.0.0/8\"]\nprefixes =", 1)
        + "\n[contrl]\nsocket = \"/run/steer.sock\"\n";
    let e = errors(&text);
    let got: Vec<(&str, &str)> = e
        .errors
        .iter()
        .map(|d| (d.field.as_str(), d.hint.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("general.markmask", "did you mean `mark_mask`?"),
            ("general.xpd", "did you mean `xdp`?"),
            ("wan[wan1].gatway", "did you mean `gateway`?"),
            ("wan[wan2].track.up_afer", "did you mean `up_after`?"),
            (
                "wan[wan2].track.flap_guard",
                "valid keys here are `method`, `targets`, `query`, `host`, `interval_ms`, `timeout_ms`, `reliability`, `down_after`, `up_after`, `max_latency_ms`, `max_loss_percent`, `recover_latency_ms`, `recover_loss_percent`, `loss_window`"
            ),
            ("set[s].prefix", "did you mean `prefixes`?"),
            ("contrl", "did you mean `control`?"),
        ],
        "{e}"
    );
    // Each is located at its key.
    for d in &e.errors {
        let key = d.field.rsplit('.').next().unwrap();
        assert_eq!((d.line, d.column), position(&text, key), "{d}");
    }
}

#[test]
fn unreadable_files_are_errors_without_a_position() {
    let missing = fixtures().join("does-not-exist.toml");
    let e = config::load(&missing).unwrap_err();
    assert_eq!(e.errors.len(), 1);
    let d = &e.errors[0];
    assert_eq!((d.line, d.column), (0, 0));
    assert!(
        d.message.contains("cannot read the configuration file"),
        "{d}"
    );
    assert!(d.message.contains("No such file"), "{d}");
    assert!(!e.to_string().contains(":0:0"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------------------------

/// What an entry should turn into.
enum Want {
    Ok(&'static str),
    /// An error whose message or hint contains this.
    Err(&'static str),
}

#[test]
fn address_corpus() {
    use Want::{Err, Ok};
    let corpus: &[(&str, bool, Want)] = &[
        // plain hosts and networks
        ("192.0.2.1", false, Ok("192.0.2.1/32")),
        ("192.0.2.0/24", false, Ok("192.0.2.0/24")),
        ("0.0.0.0", false, Ok("0.0.0.0/32")),
        ("255.255.255.255/32", false, Ok("255.255.255.255/32")),
        ("2001:db8::1", false, Ok("2001:db8::1/128")),
        ("2001:DB8::/32", false, Ok("2001:db8::/32")),
        ("::/128", false, Ok("::/128")),
        ("64:ff9b::/96", false, Ok("64:ff9b::/96")),
        ("::fffe:0:0/95", false, Ok("::fffe:0:0/95")),
        // whitespace is trimmed, not tolerated inside
        ("  10.0.0.0/8\t", false, Ok("10.0.0.0/8")),
        ("10.0.0.0 /8", false, Err("contains whitespace")),
        (
            "10.0.0.1 10.0.0.2",
            false,
            Err("one address or network per entry"),
        ),
        ("", false, Err("empty entry")),
        ("   ", false, Err("empty entry")),
        // leading zeros
        (
            "010.1.1.1",
            false,
            Err("write `10.1.1.1` if decimal was meant, or `8.1.1.1` if octal"),
        ),
        ("10.01.1.1", false, Err("leading zero")),
        (
            "10.0.0.09",
            false,
            Err("write `10.0.0.9` (no leading zeros)"),
        ),
        ("01.1.1.1", false, Err("write `1.1.1.1` (no leading zeros)")),
        ("00.0.0.0/8", false, Err("leading zero")),
        // shorthand and other IPv4 spellings
        (
            "10.1",
            false,
            Err("`10.1.0.0/16` for the network, or `10.0.0.1`"),
        ),
        ("10/8", false, Err("write all four octets: `10.0.0.0/8`")),
        (
            "10.0.0/24",
            false,
            Err("write all four octets: `10.0.0.0/24`"),
        ),
        ("1.2.3.4.5", false, Err("more than four")),
        ("0x0a.0.0.1", false, Err("hexadecimal")),
        ("0xa000001", false, Err("hexadecimal")),
        ("167772161", false, Err("write it dotted: `10.0.0.1`")),
        ("167772160/8", false, Err("write it dotted: `10.0.0.0/8`")),
        ("256.0.0.1", false, Err("octet 256")),
        ("1.2.3.1000", false, Err("octet 1000")),
        ("1..2.3", false, Err("empty IPv4 octet")),
        ("1.2.3.4.", false, Err("empty IPv4 octet")),
        ("10.0.0.0,10.1.0.0", false, Err("unexpected ','")),
        ("example.com", false, Err("is a name")),
        // prefix lengths
        ("10.0.0.0/024", false, Err("write `10.0.0.0/24`")),
        ("10.0.0.0/+24", false, Err("not a plain number")),
        ("10.0.0.0/-1", false, Err("not a plain number")),
        ("10.0.0.0/255.0.0.0", false, Err("not a plain number")),
        ("10.0.0.0/", false, Err("no prefix length")),
        ("10.0.0.0/33", false, Err("the longest is /32")),
        ("10.0.0.0/4294967296", false, Err("the longest is /32")),
        ("2001:db8::/129", false, Err("the longest is /128")),
        ("2001:db8::/0128", false, Err("write `2001:db8::/128`")),
        // host bits
        (
            "10.1.2.3/16",
            false,
            Err("10.1.2.3/16` has host bits set; the network is 10.1.0.0/16"),
        ),
        (
            "10.1.2.3/16",
            false,
            Err("write `10.1.0.0/16` for the whole network, or `10.1.2.3` for just that address"),
        ),
        ("2001:db8::1/32", false, Err("the network is 2001:db8::/32")),
        // IPv4-mapped IPv6
        (
            "::ffff:192.0.2.1",
            false,
            Err("write the IPv4 address `192.0.2.1`"),
        ),
        (
            "::ffff:c000:201",
            false,
            Err("write the IPv4 address `192.0.2.1`"),
        ),
        (
            "::ffff:192.0.2.0/120",
            false,
            Err("write the IPv4 network `192.0.2.0/24`"),
        ),
        (
            "::ffff:0:0/96",
            true,
            Err("write the IPv4 network `0.0.0.0/0`"),
        ),
        ("::ffff:010.0.0.1", false, Err("not a valid IPv6 address")),
        // zone ids, brackets, broken IPv6
        (
            "fe80::1%eth0",
            false,
            Err("write `fe80::1` without the zone id"),
        ),
        ("fe80::%eth0/64", false, Err("zone id")),
        (
            "[2001:db8::1]",
            false,
            Err("write `2001:db8::1` without brackets"),
        ),
        ("2001:db8:::1", false, Err("not a valid IPv6 address")),
        ("2001:db8::1::2", false, Err("not a valid IPv6 address")),
        (
            "2001:db8:0:0:0:0:0:0:1",
            false,
            Err("not a valid IPv6 address"),
        ),
        ("2001:db8::12345", false, Err("not a valid IPv6 address")),
        // the default route
        ("0.0.0.0/0", false, Err("set `allow_default_route = true`")),
        ("::/0", false, Err("matches every IPv6 address")),
        ("0.0.0.0/0", true, Ok("0.0.0.0/0")),
        ("::/0", true, Ok("::/0")),
        ("0.0.0.1/0", true, Err("the network is 0.0.0.0/0")),
    ];
    let mut failures = String::new();
    for (text, allow, want) in corpus {
        let got = parse_prefix(text, *allow);
        match (want, &got) {
            (Want::Ok(s), Result::Ok(p)) if p.to_string() == *s => {}
            (Want::Err(s), Result::Err(e)) if e.message().contains(s) || e.hint().contains(s) => {}
            _ => {
                let want = match want {
                    Want::Ok(s) => format!("Ok({s})"),
                    Want::Err(s) => format!("error saying `{s}`"),
                };
                let got = match &got {
                    Result::Ok(p) => format!("Ok({p})"),
                    Result::Err(e) => format!("Err({e})"),
                };
                let _ = writeln!(
                    failures,
                    "{text:?} (allow /0: {allow}): want {want}, got {got}"
                );
            }
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn address_errors_are_typed() {
    assert!(matches!(
        parse_prefix("010.0.0.1", false),
        Err(AddrError::LeadingZero { .. })
    ));
    assert!(matches!(
        parse_prefix("10.1", false),
        Err(AddrError::Shorthand { .. })
    ));
    assert!(matches!(
        parse_prefix("10.0.0.0/024", false),
        Err(AddrError::LenLeadingZero { .. })
    ));
    assert!(matches!(
        parse_prefix("10.0.0.0/33", false),
        Err(AddrError::LenRange { .. })
    ));
    assert!(matches!(
        parse_prefix("10.1.0.0/8", false),
        Err(AddrError::HostBits { .. })
    ));
    assert!(matches!(
        parse_prefix("0.0.0.0/0", false),
        Err(AddrError::DefaultRoute { .. })
    ));
    assert!(matches!(
        parse_prefix("::ffff:1.2.3.4", false),
        Err(AddrError::Mapped { .. })
    ));
    assert!(matches!(
        parse_prefix("fe80::1%lo", false),
        Err(AddrError::ZoneId { .. })
    ));
    assert!(matches!(parse_prefix("", false), Err(AddrError::Empty)));
    assert_eq!(
        parse_prefix(" 10.1.0.0/16 ", false).unwrap(),
        Prefix::new("10.1.0.0".parse().unwrap(), 16).unwrap()
    );
}

#[test]
fn default_route_in_a_set_needs_allow_default_route() {
    let text = MIN.replacen("\"10.0.0.0/8\"", "\"0.0.0.0/0\", \"::/0\"", 1);
    assert_eq!(errors(&text).errors.len(), 2);
    let text = text.replacen("prefixes =", "allow_default_route = true\nprefixes =", 1);
    let c = parse_in_fixtures(&text).unwrap();
    assert!(c.sets[0].allow_default_route);
    assert_eq!(c.sets[0].prefixes.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// List files
// ---------------------------------------------------------------------------------------------

#[test]
fn list_file_format_comments_crlf_and_bom() {
    let text = MIN.replacen(
        "prefixes = [\"10.0.0.0/8\"]",
        "files = [\"lists/bom-crlf.txt\"]",
        1,
    );
    let c = parse_in_fixtures(&text).unwrap();
    let got: Vec<(String, usize)> = c.sets[0]
        .prefixes
        .iter()
        .map(|e| (e.prefix.to_string(), e.origin.line))
        .collect();
    assert_eq!(
        got,
        [
            ("192.0.2.0/24".to_string(), 2),
            ("198.51.100.1/32".to_string(), 4),
            ("2001:db8::/48".to_string(), 6),
        ]
    );
}

#[test]
fn list_file_errors_name_file_line_and_column() {
    let text = MIN.replacen(
        "prefixes = [\"10.0.0.0/8\"]",
        "files = [\"lists/bad.txt\"]",
        1,
    );
    let e = errors(&text);
    let list = fixtures().join("lists/bad.txt");
    let got: Vec<(PathBuf, usize, usize, String)> = e
        .errors
        .iter()
        .map(|d| (d.file.clone(), d.line, d.column, d.value.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (list.clone(), 3, 1, "010.0.0.0/8".to_string()),
            (list.clone(), 4, 3, "10.1.2.3/16".to_string()),
            (list.clone(), 6, 1, "10/8".to_string()),
            (list.clone(), 7, 1, "::ffff:192.0.2.1".to_string()),
            (list.clone(), 8, 1, "fe80::1%eth0".to_string()),
            (list.clone(), 9, 1, "0.0.0.0/0".to_string()),
        ],
        "{e}"
    );
    let shown = e.to_string();
    let first = shown.lines().nth(1).unwrap();
    assert_eq!(
        first,
        format!(
            "{}:4:3: set[s].files[0] = 10.1.2.3/16: `10.1.2.3/16` has host bits set; the network is 10.1.0.0/16; write `10.1.0.0/16` for the whole network, or `10.1.2.3` for just that address",
            list.display()
        )
    );
    assert!(
        e.errors[5]
            .hint
            .contains("if set[s] really should take all such traffic"),
        "{e}"
    );
}

#[test]
fn non_utf8_list_lines_are_reported() {
    let dir = TempDir::new("non-utf8");
    std::fs::write(dir.join("l.txt"), b"10.0.0.0/8\n10.\xff.0.0/16\n").unwrap();
    let cfg = dir.join("steer.toml");
    let text = MIN.replacen("prefixes = [\"10.0.0.0/8\"]", "files = [\"l.txt\"]", 1);
    std::fs::write(&cfg, &text).unwrap();
    let e = config::load(&cfg).unwrap_err();
    assert_eq!(e.errors.len(), 1, "{e}");
    let d = &e.errors[0];
    assert_eq!(
        (d.file.clone(), d.line, d.column),
        (dir.join("l.txt"), 2, 4)
    );
    assert!(d.message.contains("not valid UTF-8"), "{d}");
}

#[test]
fn a_missing_list_file_names_the_set_and_both_paths() {
    let text = MIN.replacen(
        "prefixes = [\"10.0.0.0/8\"]",
        "files = [\"lists/missing.txt\"]",
        1,
    );
    let e = errors(&text);
    assert_eq!(e.errors.len(), 1);
    let m = &e.errors[0].message;
    assert!(m.contains("`lists/missing.txt`"), "{m}");
    assert!(m.contains("set `s`"), "{m}");
    assert!(
        m.contains(&fixtures().join("lists/missing.txt").display().to_string()),
        "{m}"
    );
    assert!(m.contains("No such file or directory"), "{m}");
}

// ---------------------------------------------------------------------------------------------
// Duplicates
// ---------------------------------------------------------------------------------------------

const TWO_SETS: &str = r#"
[[set]]
name = "a"
policy = "p"
prefixes = ["198.51.100.0/24", "203.0.113.0/24"]

[[set]]
name = "b"
policy = "p"
files = ["lists/dup.txt"]
domains = ["example.com"]

[[set]]
name = "c"
policy = "p"
prefixes = ["203.0.113.0/24"]
domains = ["EXAMPLE.com"]
"#;

#[test]
fn the_same_prefix_in_two_sets_of_one_direction_is_an_error_naming_both() {
    let text = format!("{MIN}{TWO_SETS}");
    let e = errors(&text);
    let cfg = fixtures().join("case.toml");
    let list = fixtures().join("lists/dup.txt");
    let got: Vec<String> = e.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            format!(
                "{c}:43:13: set[c].prefixes[0] = \"203.0.113.0/24\": 203.0.113.0/24 is in set `c` ({c}:43) and also in set `a` ({c}:32); a destination prefix can belong to one set only; remove it from one of the sets, or set general.duplicates = \"first-set-wins\" to let the earlier set keep it",
                c = cfg.display()
            ),
            format!(
                "{c}:44:12: set[c].domains[0] = \"EXAMPLE.com\": domain `example.com` is also in set `b` ({c}:38); remove it from one of the sets, or set general.duplicates = \"first-set-wins\" to let the earlier set keep it",
                c = cfg.display()
            ),
            format!(
                "{l}:3:3: set[b].files[0] = 198.51.100.0/24: 198.51.100.0/24 is in set `b` ({l}:3) and also in set `a` ({c}:32); a destination prefix can belong to one set only; remove it from one of the sets, or set general.duplicates = \"first-set-wins\" to let the earlier set keep it",
                c = cfg.display(),
                l = list.display()
            ),
        ]
    );
}

#[test]
fn first_set_wins_keeps_the_earlier_set() {
    let text = format!("{MIN}{TWO_SETS}").replacen(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\nduplicates = \"first-set-wins\"",
        1,
    );
    let c = parse_in_fixtures(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.general.duplicates, DuplicatePolicy::FirstSetWins);
    let prefixes = |name: &str| -> Vec<String> {
        c.set(name)
            .unwrap()
            .prefixes
            .iter()
            .map(|e| e.prefix.to_string())
            .collect()
    };
    assert_eq!(prefixes("a"), ["198.51.100.0/24", "203.0.113.0/24"]);
    // dup.txt: 192.0.2.0/24, 198.51.100.0/24 (in a), 192.0.2.0/24 again (same set: once).
    assert_eq!(prefixes("b"), ["192.0.2.0/24"]);
    assert!(prefixes("c").is_empty());
    assert_eq!(c.set("b").unwrap().domains, ["example.com"]);
    assert!(c.set("c").unwrap().domains.is_empty());
}

#[test]
fn a_prefix_may_be_in_a_dst_set_and_a_src_set() {
    let text = format!(
        "{MIN}\n[[set]]\nname = \"from\"\npolicy = \"p\"\nmatch = \"src\"\nprefixes = [\"10.0.0.0/8\"]\n"
    );
    let c = parse_in_fixtures(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.sets[0].prefixes[0].prefix, c.sets[1].prefixes[0].prefix);
    assert_eq!(c.sets[1].direction, Direction::Src);
}

#[test]
fn the_same_prefix_twice_in_one_set_is_kept_once_with_its_first_origin() {
    let text = MIN.replacen(
        "prefixes = [\"10.0.0.0/8\"]",
        "prefixes = [\"192.0.2.0/24\", \"10.0.0.0/8\", \"10.0.0.0/8\"]\nfiles = [\"lists/dup.txt\"]",
        1,
    );
    let c = parse_in_fixtures(&text).unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<String> = c.sets[0]
        .prefixes
        .iter()
        .map(|e| format!("{} {}", e.prefix, e.origin.line))
        .collect();
    assert_eq!(
        got,
        ["192.0.2.0/24 27", "10.0.0.0/8 27", "198.51.100.0/24 3"]
    );
}

// ---------------------------------------------------------------------------------------------
// Scale
// ---------------------------------------------------------------------------------------------

#[test]
fn a_million_line_list_parses_and_loads() {
    const LINES: u32 = 1_000_000;
    let dir = TempDir::new("million");
    let mut text = String::with_capacity(LINES as usize * 20);
    text.push_str("# generated\n");
    for i in 0..LINES {
        if i % 4 == 3 {
            let _ = writeln!(text, "2001:db8:{:x}:{:x}::/64", i >> 16, i & 0xffff);
        } else if i % 100 == 0 {
            let _ = writeln!(
                text,
                "{}/32   # host {i}",
                std::net::Ipv4Addr::from(0x0a00_0000 + i)
            );
        } else {
            let _ = writeln!(text, "{}", std::net::Ipv4Addr::from(0x0a00_0000 + i));
        }
    }
    std::fs::write(dir.join("big.txt"), &text).unwrap();
    let cfg = dir.join("steer.toml");
    std::fs::write(
        &cfg,
        MIN.replacen("prefixes = [\"10.0.0.0/8\"]", "files = [\"big.txt\"]", 1),
    )
    .unwrap();

    let start = Instant::now();
    let parsed = config::parse_list(&text, false).unwrap();
    let list_time = start.elapsed();
    assert_eq!(parsed.len(), LINES as usize);

    let start = Instant::now();
    let c = config::load(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let load_time = start.elapsed();
    assert_eq!(c.sets[0].prefixes.len(), LINES as usize);
    println!(
        "{LINES} lines ({} MB): parse_list {list_time:?}, full config::load {load_time:?} ({} build)",
        text.len() / 1_000_000,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
}

#[test]
fn sets_larger_than_a_capacity_are_refused_with_the_size_needed() {
    let text = MIN
        .replacen(
            "\"10.0.0.0/8\"",
            "\"10.0.0.0/8\", \"192.0.2.0/24\", \"2001:db8::/32\"",
            1,
        )
        .replacen(
            "lan = [\"br-lan\"]",
            "lan = [\"br-lan\"]\n[general.capacity]\ndst_v4 = 1",
            1,
        );
    let e = errors(&text);
    assert_eq!(e.errors.len(), 1, "{e}");
    let d = &e.errors[0];
    assert_eq!(d.field, "general.capacity.dst_v4");
    assert_eq!((d.line, d.column), (1, 1));
    assert!(d.message.contains("2 IPv4 destination prefixes"), "{d}");
    assert!(d.hint.contains("at least 2"), "{d}");
}

#[test]
fn a_value_of_the_wrong_type_is_reported_once_and_the_rest_still_checked() {
    // Each of these would otherwise cause a second, misleading error.
    let text = MIN
        .replacen("name = \"wan2\"", "name = 2", 1)
        .replacen(
            "targets = [\"1.1.1.1\"]",
            "targets = \"1.1.1.1\"\nreliability = 1",
            1,
        )
        .replacen(
            "lan = [\"br-lan\"]",
            "lan = [\"br-lan\"]\nmark_mask = \"0xff00\"",
            1,
        )
        .replacen("prefixes = [\"10.0.0.0/8\"]", "prefixes = [10]", 1)
        .replacen("table = 101", "table = 254", 1);
    let e = errors(&text);
    let got: Vec<&str> = e.errors.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(
        got,
        [
            "general.mark_mask",
            "wan[wan1].table",
            "wan[wan1].track.targets",
            "wan[1].name",
            "set[s].prefixes[0]",
        ],
        "{e}"
    );
}

#[test]
fn a_syntax_error_is_located_and_stops_checking() {
    // An unterminated string on line 21, and a bad mark (never reached) on line 7.
    let text = MIN
        .replacen("name = \"p\"", "name = \"p", 1)
        .replacen("0x100", "0", 1);
    let e = errors(&text);
    assert_eq!(e.errors.len(), 1, "{e}");
    let d = &e.errors[0];
    assert!(d.message.starts_with("invalid TOML:"), "{e}");
    assert_eq!(d.line, 21, "{e}");
    assert!(d.hint.contains("close the string"), "{e}");
}

#[test]
fn a_utf8_bom_and_crlf_in_the_config_file_are_accepted() {
    let text = format!("\u{feff}{}", MIN.replace('\n', "\r\n"));
    let c = parse_in_fixtures(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.wans.len(), 2);
    let e = errors(&text.replacen("0x100", "0", 1));
    assert_eq!((e.errors[0].line, e.errors[0].column), (7, 8), "{e}");
}
