//! Sets with conditions (ordered rules) on a running router, with real traffic through the
//! namespace lab: protocol and port, source MAC and input interface choose the WAN, an ordered
//! rule beats a prefix set, `steer explain` says which rule and why, and a reload that changes
//! the rules moves new traffic.

use std::{net::IpAddr, time::Duration};

use steer_tests::{
    daemon::{Daemon, Workdir, steer_in},
    lab::{Lab, NFT_TABLE, Wan, udp_via, udp_via_sized},
    scenario::{Options, Scenario, config_text},
};

const N: usize = 20;

/// The lab's default goes by wan1 and its bypass set (server B) by wan2.
fn rules(client_mac: &str) -> String {
    format!(
        r#"
[[set]]
name = "voip"
policy = "wan2-first"
proto = ["udp"]
dports = ["5060-5061", "10000-10010"]

[[set]]
name = "b-game"
policy = "wan1-first"
prefixes = ["{b}/32"]
proto = ["udp"]
dports = ["4433"]

[[set]]
name = "kid"
policy = "wan2-first"
src_macs = ["{client_mac}"]
dports = ["7000"]

[[set]]
name = "other-kid"
policy = "wan2-first"
src_macs = ["02:00:00:00:00:99"]
dports = ["7001"]

[[set]]
name = "from-lan"
policy = "wan2-first"
in = ["lan0"]
dports = ["7002"]

[[set]]
name = "sctp"
policy = "wan2-first"
proto = ["132"]
dports = ["9999"]

[[set]]
name = "lan-sip"
policy = "wan1-first"
in = ["lan0"]
dports = ["5060"]
"#,
        b = Lab::SERVER_B
    )
}

fn via(s: &Scenario, server: impl Into<IpAddr>, port: u16) -> Wan {
    let counts = udp_via(&s.lab, server.into(), port, N);
    match counts {
        [n, 0] if n >= N / 2 => Wan::One,
        [0, n] if n >= N / 2 => Wan::Two,
        other => panic!(
            "udp to port {port}: arrivals by wan1/wan2 {other:?}\ndaemon log:\n{}",
            s.daemon.log_text()
        ),
    }
}

/// IPv4 datagrams the router reassembled from fragments (`Ip: ReasmOKs`).
fn reassemblies(s: &Scenario) -> u64 {
    let snmp = s.lab.router.run("cat /proc/net/snmp");
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next().expect("header"), ip.next().expect("values"));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ReasmOKs")
        .and_then(|(_, v)| v.parse().ok())
        .expect("ReasmOKs")
}

/// `steer explain ARGS --json` in the router's namespace (where `--in` names its interfaces).
fn explain_in_router(s: &Scenario, args: &[&str]) -> serde_json::Value {
    in_router(s, "explain", args)
}

fn in_router(s: &Scenario, command: &str, args: &[&str]) -> serde_json::Value {
    let out = steer_in(&s.lab.router)
        .arg(command)
        .args(args)
        .args(["--json", "--socket"])
        .arg(&s.work.socket)
        .arg("--pin-dir")
        .arg(&s.work.pin_dir)
        .output()
        .expect("run steer explain");
    assert!(
        out.status.success(),
        "steer {command} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json")
}

#[test]
fn protocol_ports_mac_and_interface_choose_the_wan_first_match_before_prefix_sets() {
    // The client's MAC is only known once the lab exists: start, then reload with the rules.
    let mut s = Scenario::start("cond", &Options::default());
    let client_mac = s
        .lab
        .client
        .run("cat /sys/class/net/eth0/address")
        .trim()
        .to_owned();
    let config = s.work.dir.join("steer.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replace("[default]", &format!("{}\n[default]", rules(&client_mac)));
    s.work.write("steer.toml", &text);
    s.steer(&["reload"]);

    let a = Lab::SERVER_A;
    assert_eq!(via(&s, a, 5060), Wan::Two, "udp 5060: voip");
    assert_eq!(
        via(&s, a, 10005),
        Wan::Two,
        "udp 10005: voip's second range"
    );
    assert_eq!(via(&s, a, 5059), Wan::One, "udp 5059: no rule, the default");
    assert_eq!(
        via(&s, Lab::SERVER_B, 4433),
        Wan::One,
        "an ordered rule beats the bypass set"
    );
    assert_eq!(
        via(&s, Lab::SERVER_B, 4434),
        Wan::Two,
        "the bypass set, no rule"
    );
    assert_eq!(via(&s, a, 7000), Wan::Two, "the client's MAC");
    assert_eq!(via(&s, a, 7001), Wan::One, "another MAC's rule");
    assert_eq!(via(&s, a, 7002), Wan::Two, "came in on lan0");
    // A datagram larger than the MTU leaves the client in fragments, and only the first one
    // carries the ports: the whole datagram still goes where its port rule says.
    // (The router reassembles each datagram before routing it, as conntrack does, with the
    // first fragment's mark; the count shows the datagrams really came in fragments.)
    for (port, want, what) in [(5060, Wan::Two, "voip"), (5059, Wan::One, "no rule")] {
        let reassembled = reassemblies(&s);
        let got = udp_via_sized(&s.lab, a.into(), port, N, 3000);
        assert!(
            reassemblies(&s) >= reassembled + got.iter().sum::<usize>() as u64,
            "the router saw fragments"
        );
        let n = got[want.index()];
        assert!(
            n >= N / 2 && n == got.iter().sum::<usize>(),
            "fragmented datagrams to udp {port} ({what}) by wan1/wan2: {got:?}"
        );
    }

    let e = explain_in_router(&s, &[&a.to_string(), "--proto", "udp", "--dport", "5060"]);
    assert_eq!(e["set"], "voip", "{e}");
    assert_eq!(e["ordered"]["position"], 1, "{e}");
    assert_eq!(
        e["wan"].as_str().map(|w| w.starts_with("wan2")),
        Some(true),
        "{e}"
    );
    assert_eq!(
        e["ordered"]["later"],
        serde_json::json!([]),
        "not in on lan0: {e}"
    );
    // A later rule the packet also meets is named with its place: it loses to the first.
    let a_text = a.to_string();
    let sip_in_lan0 = [&a_text, "--proto", "udp", "--dport", "5060", "--in", "lan0"];
    let e = explain_in_router(&s, &sip_in_lan0);
    assert_eq!(e["set"], "voip", "{e}");
    assert_eq!(
        e["ordered"]["later"],
        serde_json::json!([{ "position": 7, "set": "lan-sip" }]),
        "{e}"
    );
    let out = steer_in(&s.lab.router)
        .arg("explain")
        .args(sip_in_lan0)
        .arg("--pin-dir")
        .arg(&s.work.pin_dir)
        .output()
        .expect("run steer explain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("also meets set lan-sip (set with conditions #7: later, so it loses)"),
        "{text}"
    );
    let b = Lab::SERVER_B.to_string();
    let e = explain_in_router(&s, &[&b, "--proto", "udp", "--dport", "4433"]);
    assert_eq!(e["set"], "b-game", "{e}");
    assert_eq!(e["prefix"], format!("{b}/32"), "{e}");
    assert_eq!(
        e["shadowed"][0]["set"], "bypass",
        "the prefix set it beat: {e}"
    );
    // `steer dump sets` lists the ordered rules' prefixes too, with their place.
    let sets = in_router(&s, "dump", &["sets"]);
    let row = sets["sets"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["set"] == "b-game"))
        .unwrap_or_else(|| panic!("b-game's prefix in {sets}"));
    assert_eq!(row["prefix"], format!("{b}/32"), "{row}");
    assert!(row["ordered"].is_u64(), "{row}");
    let e = explain_in_router(
        &s,
        &[&a.to_string(), "--dport", "7000", "--src-mac", &client_mac],
    );
    assert_eq!(e["set"], "kid", "{e}");
    let e = explain_in_router(&s, &[&a.to_string(), "--dport", "7002"]);
    assert_eq!(e["set"], "default", "not from lan0: {e}");
    // Without --in, --src-mac and --src, the sets that look at them are named, with what to give.
    let notes = e["host"].to_string();
    assert!(
        notes.contains("input interface (from-lan, lan-sip) were judged against no LAN interface")
            && notes.contains("give --in")
            && notes.contains("source MAC (kid, other-kid) were judged against the placeholder")
            && notes.contains("give --src-mac"),
        "{e}"
    );
    // With the source of a host on the LAN, its interface and MAC come from the kernel (the
    // route to it, the neighbour table), and the verdict is the real packet's.
    let client = Lab::CLIENT_V4.to_string();
    s.lab.router.run(&format!("ping -c 1 -W 2 {client}"));
    let e = explain_in_router(&s, &[&a.to_string(), "--dport", "7002", "--src", &client]);
    assert_eq!(
        (&e["set"], &e["in"]),
        (&"from-lan".into(), &"lan0".into()),
        "{e}"
    );
    assert!(
        e["host"].to_string().contains(&format!(
            "in lan0 (the interface of this router's route to {client}"
        )),
        "{e}"
    );
    let e = explain_in_router(&s, &[&a.to_string(), "--dport", "7000", "--src", &client]);
    assert_eq!(e["set"], "kid", "{e}");
    assert_eq!(e["src_mac"], client_mac.as_str(), "{e}");
    let e = explain_in_router(&s, &[&a.to_string(), "--dport", "7002", "--in", "lan0"]);
    assert_eq!(e["set"], "from-lan", "{e}");
    // A WAN is an interface the classifier is not on: no answer, what to give instead.
    let out = steer_in(&s.lab.router)
        .args(["explain", &a.to_string(), "--in", "wan1", "--pin-dir"])
        .arg(&s.work.pin_dir)
        .output()
        .expect("run steer explain");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "steer does not classify packets coming in on wan1 (its classifier is on lan0)"
        ),
        "{err}"
    );
    // SCTP's header starts with its ports, as the classifier reads them.
    let sctp =
        |port: &str| explain_in_router(&s, &[&a.to_string(), "--proto", "132", "--dport", port]);
    assert_eq!(sctp("9999")["set"], "sctp", "{}", sctp("9999"));
    assert_eq!(sctp("9998")["set"], "default", "{}", sctp("9998"));

    let dump = in_router(&s, "dump", &["rules"]);
    let rule = |name: &str| {
        dump["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["set"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no rule {name} in {dump}"))
    };
    let voip = rule("voip");
    assert_eq!(voip["order"], 1, "{voip}");
    assert_eq!(
        voip["conditions"],
        serde_json::json!(["proto udp", "dport 5060-5061,10000-10010"])
    );
    let kid = rule("kid");
    assert_eq!(
        kid["conditions"],
        serde_json::json!(["dport 7000", format!("src-mac {client_mac}")])
    );
    assert_eq!(rule("b-game")["conditions"][2], "dst in 1 prefixes");
    assert_eq!(rule("from-lan")["conditions"][1], "in lan0");

    // `steer set` edits sets without conditions: an unknown name lists those only.
    let (ok, _, err) = s.work.steer(&["set", "nope", "add", "192.0.2.1"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("`steer set` edits configured sets (bypass")
            && !err.contains("voip")
            && !err.contains("kid"),
        "{err}"
    );

    // A reload that moves voip to other ports moves new traffic with it.
    let text = std::fs::read_to_string(&config).expect("config");
    s.work
        .write("steer.toml", &text.replace("\"5060-5061\", ", "\"5070\", "));
    s.steer(&["reload"]);
    s.lab.flush_conntrack();
    assert_eq!(via(&s, a, 5070), Wan::Two, "udp 5070 after the reload");
    assert_eq!(via(&s, a, 5061), Wan::One, "udp 5061 after the reload");

    // lan0 deleted and made again (a new ifindex), as netifd does with br-lan: the rule that
    // names it follows.
    s.lab
        .router
        .run(&format!("ip link del dev {}", Lab::LAN_IFACE));
    s.lab.connect_lan();
    s.daemon.wait_log(
        "lan0: LAN interface (re)appeared: classifier attached",
        std::time::Duration::from_secs(5),
    );
    assert_eq!(via(&s, a, 7002), Wan::Two, "came in on the new lan0");
    assert_eq!(via(&s, a, 7003), Wan::One, "no rule");

    // A crash: the rules stay in force without the daemon. The next one adopts the pinned
    // maps and brings them to the file as edited meanwhile.
    s.daemon.kill9();
    s.lab.flush_conntrack();
    assert_eq!(
        via(&s, a, 5070),
        Wan::Two,
        "no daemon: the rules still apply"
    );
    let text = std::fs::read_to_string(&config).expect("config");
    s.work.write("steer.toml", &text.replace("\"5070\", ", ""));
    s.daemon = Daemon::start(&s.lab.router, &s.work);
    s.wait_until(
        "routing in sync",
        std::time::Duration::from_secs(10),
        |st| st["routing"]["in_sync"] == true,
    );
    s.lab.flush_conntrack();
    assert_eq!(via(&s, a, 5070), Wan::One, "the restart applied the edit");
    assert_eq!(via(&s, a, 10005), Wan::Two, "voip's other range kept");
    assert_eq!(
        via(&s, a, 7002),
        Wan::Two,
        "`in` resolved by the new daemon"
    );
}

/// `Ip: ReasmOKs` and `Ip6ReasmOKs` of the router: datagrams it reassembled, for routing
/// (connection tracking's defragmentation) or for itself.
fn reassemblies_both(lab: &Lab) -> (u64, u64) {
    let snmp6 = lab.router.run("cat /proc/net/snmp6");
    let v6 = snmp6
        .lines()
        .find_map(|l| l.strip_prefix("Ip6ReasmOKs"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Ip6ReasmOKs");
    let snmp = lab.router.run("cat /proc/net/snmp");
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next().expect("header"), ip.next().expect("values"));
    let v4 = names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ReasmOKs")
        .and_then(|(_, v)| v.parse().ok())
        .expect("ReasmOKs");
    (v4, v6)
}

/// A router where nothing uses connection tracking (no nftables: neither steer's table nor
/// the lab's NAT) routes each fragment of a datagram on its own. Only the first fragment has
/// the ports, yet every fragment must leave by the WAN of the port rule, and count there.
#[test]
fn fragments_follow_their_port_rule_where_nothing_reassembles() {
    const PORT: u16 = 5001;
    const DATAGRAMS: u64 = 10;
    // 3000 bytes of payload at an MTU of 1500: three fragments, IPv4 and IPv6.
    const FRAGMENTS: u64 = 3;
    let s = {
        let lab = Lab::new();
        // The lab's NAT is what loads connection tracking in the router's namespace.
        lab.router
            .run(&format!("nft delete table inet {NFT_TABLE}"));
        let work = Workdir::new("frag");
        let options = Options {
            extra_sets: format!(
                "[[set]]\nname = \"udp{PORT}\"\npolicy = \"wan2-first\"\nproto = [\"udp\"]\n\
                 dports = [\"{PORT}\"]\n"
            ),
            ..Options::default()
        };
        work.write("steer.toml", &config_text(&work, &options));
        // No `nft` to run: steer's connection marking (and its conntrack) stays out.
        let no_tools = work.dir.join("no-tools");
        std::fs::create_dir_all(&no_tools).expect("empty PATH directory");
        let mut cmd = steer_in(&lab.router);
        cmd.env("PATH", &no_tools);
        let daemon = Daemon::spawn(&work, cmd).wait_up(&work);
        Scenario { daemon, work, lab }
    };
    s.wait_until("routing in sync", Duration::from_secs(10), |st| {
        st["routing"]["in_sync"] == true
    });
    s.wait_wan("wan2", "up", Duration::from_secs(10));
    assert!(
        s.daemon.log_text().contains("cannot run `nft`"),
        "the daemon ran without nft:\n{}",
        s.daemon.log_text()
    );
    let servers: [IpAddr; 2] = [Lab::SERVER_A.into(), Lab::SERVER_A6.into()];
    for (i, server) in servers.iter().enumerate() {
        let daddr = if server.is_ipv4() { "ip" } else { "ip6" };
        for w in Wan::ALL {
            s.lab.isp_watch(
                w,
                &format!("to_server_{i}"),
                &format!("{daddr} daddr {server}"),
            );
        }
    }
    let reassembled = reassemblies_both(&s.lab);
    s.lab.client.enter(|| {
        for server in servers {
            let sock = std::net::UdpSocket::bind(if server.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            })
            .expect("a UDP socket in the client");
            for _ in 0..DATAGRAMS {
                sock.send_to(&[7u8; 3000], (server, PORT))
                    .expect("send a datagram");
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    let want = DATAGRAMS * FRAGMENTS;
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let count = |w: Wan, i: usize| s.lab.isp_counter(w, &format!("to_server_{i}"));
    for (i, server) in servers.iter().enumerate() {
        while count(Wan::Two, i) + count(Wan::One, i) < want && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            [count(Wan::One, i), count(Wan::Two, i)],
            [0, want],
            "fragments of {DATAGRAMS} datagrams to {server} udp {PORT} by wan1/wan2"
        );
    }
    assert_eq!(
        reassemblies_both(&s.lab),
        reassembled,
        "the router reassembled nothing (IPv4, IPv6): each fragment was routed on its own"
    );
    // `steer status` counts every fragment under the port rule's set and WAN.
    let st = s.status();
    let packets = |list: &str, name: &str| {
        st[list]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == name))
            .and_then(|r| r["packets"].as_u64())
            .unwrap_or_else(|| panic!("no {list} row {name} with packets in {st}"))
    };
    let all = want * servers.len() as u64;
    assert_eq!(
        [
            packets("sets", &format!("udp{PORT}")),
            packets("sets", "default"),
            packets("wans", "wan2"),
            packets("wans", "wan1"),
        ],
        [all, 0, all, 0],
        "set udp{PORT}, default, wan2, wan1 packets"
    );
}
