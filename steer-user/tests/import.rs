//! `steer import mwan3|omr-bypass` on the real binary, with UCI files written for the tests
//! (tests/import/): what each section becomes, what is reported with its file:line, errors in
//! malformed UCI, and that the output is a configuration `steer check` accepts as printed.

mod common;

use std::process::Command;

use common::TempDir;

const STEER: &str = env!("CARGO_BIN_EXE_steer");
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/import");

/// Runs `steer import ARGS`; returns (success, stdout, stderr).
fn import(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(STEER)
        .arg("import")
        .args(args)
        .output()
        .expect("run steer");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixture(name: &str) -> String {
    format!("{DIR}/{name}")
}

fn parse(toml_text: &str) -> toml::Table {
    toml_text
        .parse()
        .unwrap_or_else(|e| panic!("the output is not TOML: {e}\n{toml_text}"))
}

/// The sets (as tables) of an imported configuration.
fn sets(t: &toml::Table) -> Vec<toml::Table> {
    t.get("set")
        .and_then(|s| s.as_array())
        .map(|a| a.iter().map(|s| s.as_table().unwrap().clone()).collect())
        .unwrap_or_default()
}

fn strs(v: &toml::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// `steer check -c` on the imported configuration as printed; panics with check's output
/// when it fails.
fn check(toml_text: &str, tag: &str) {
    let dir = TempDir::new(tag);
    let path = dir.join("steer.toml");
    std::fs::write(&path, toml_text).unwrap();
    let out = Command::new(STEER)
        .args(["check", "-c", path.to_str().unwrap()])
        .output()
        .expect("run steer check");
    assert!(
        out.status.success(),
        "steer check refuses the import:\n{}{}\n{toml_text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

/// (name, interface, mark, table) of each WAN.
fn wans(t: &toml::Table) -> Vec<(String, String, i64, i64)> {
    t["wan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_owned(),
                w["interface"].as_str().unwrap().to_owned(),
                w["mark"].as_integer().unwrap(),
                w["table"].as_integer().unwrap(),
            )
        })
        .collect()
}

fn policy<'a>(t: &'a toml::Table, name: &str) -> &'a toml::Value {
    t["policy"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no policy {name}"))
}

/// (wan, metric, weight) of a policy's members.
fn members(t: &toml::Table, name: &str) -> Vec<(String, i64, i64)> {
    policy(t, name)["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["wan"].as_str().unwrap().to_owned(),
                m["metric"].as_integer().unwrap(),
                m["weight"].as_integer().unwrap(),
            )
        })
        .collect()
}

#[test]
fn mwan3_default_style_two_wans() {
    let file = fixture("mwan3-2wan");
    let (ok, out, err) = import(&["mwan3", &file, "--network", &fixture("network")]);
    assert!(ok, "{err}");
    let t = parse(&out);
    assert_eq!(t["general"]["mark_mask"].as_integer(), Some(0x3f00));
    // guest (static, br-guest) was steered by mwan3 too, which hooks every ingress
    // interface: it joins general.lan, with a note; lte (DHCP, not mwan3's) is only named.
    assert_eq!(strs(&t["general"]["lan"]), ["br-lan", "br-guest"]);
    let network = fixture("network");
    assert!(
        err.contains(&format!(
            "{network}:9: check: interface `guest` (br-guest) added to general.lan: mwan3 steered traffic coming in on it"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{network}:31: check: interface `lte` (wwan0, proto dhcp) is not in general.lan"
        )),
        "{err}"
    );
    assert!(
        !err.contains("`loopback`") && !err.contains("`wan6`"),
        "{err}"
    );
    // wan and wan6 share eth1: one WAN (table and mark of wan, interface 1); wanb is
    // interface 3 (the disabled wanb6 still counts, as in mwan3).
    assert_eq!(
        wans(&t),
        [
            ("wan".into(), "eth1".into(), 0x100, 1),
            ("wanb".into(), "eth2".into(), 0x300, 3)
        ]
    );
    let track = &t["wan"][0]["track"];
    assert_eq!(
        strs(&track["targets"]),
        [
            "1.0.0.1",
            "1.1.1.1",
            "208.67.222.222",
            "208.67.220.220",
            "2606:4700:4700::1001",
            "2606:4700:4700::1111"
        ]
    );
    assert_eq!(track["reliability"].as_integer(), Some(2));
    assert_eq!(track["interval_ms"].as_integer(), Some(10_000));
    assert_eq!(track["timeout_ms"].as_integer(), Some(4_000));
    assert_eq!(track["down_after"].as_integer(), Some(5));
    assert_eq!(
        members(&t, "balanced"),
        [("wan".into(), 1, 3), ("wanb".into(), 1, 3)]
    );
    assert_eq!(
        members(&t, "wanb_wan"),
        [("wan".into(), 2, 3), ("wanb".into(), 1, 2)]
    );
    assert_eq!(
        policy(&t, "wanb_wan")["last_resort"].as_str(),
        Some("default")
    );
    assert_eq!(
        policy(&t, "balanced")["last_resort"].as_str(),
        Some("unreachable")
    );
    // The https rule is an ordered rule; the two trailing catch-alls are the default.
    let s = sets(&t);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["name"].as_str(), Some("https"));
    assert_eq!(strs(&s[0]["proto"]), ["tcp"]);
    assert_eq!(strs(&s[0]["dports"]), ["443"]);
    assert_eq!(t["default"]["policy"].as_str(), Some("balanced"));
    assert!(
        err.contains(&format!("{file}:86: not imported: rule 'https': sticky")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}:32: not imported: interface 'wanb6' is not enabled"
        )),
        "{err}"
    );
    assert!(out.contains(&format!("# NOT IMPORTED: {file}:86: rule 'https': sticky")));
    check(&out, "mwan3-2wan");
}

#[test]
fn mwan3_three_wans_and_a_rule_list() {
    let file = fixture("mwan3-3wan");
    let (ok, out, err) = import(&["mwan3", &file, "--network", &fixture("network")]);
    assert!(ok, "{err}");
    let t = parse(&out);
    assert_eq!(
        wans(&t),
        [
            ("wan".into(), "eth1".into(), 0x100, 1),
            ("wanb".into(), "eth2".into(), 0x200, 2),
            ("lte".into(), "wwan0".into(), 0x300, 3)
        ]
    );
    let track = &t["wan"][0]["track"];
    for (key, want) in [
        ("interval_ms", 5000),
        ("timeout_ms", 2000),
        ("down_after", 3),
        ("up_after", 8),
        ("failure_interval_ms", 1000),
        ("max_latency_ms", 800),
        ("recover_latency_ms", 300),
        ("max_loss_percent", 20),
        ("recover_loss_percent", 5),
    ] {
        assert_eq!(track[key].as_integer(), Some(want), "{key}");
    }
    assert_eq!(t["wan"][1]["track"]["method"].as_str(), Some("http"));
    assert_eq!(strs(&t["wan"][1]["track"]["targets"]), ["http://1.1.1.1/"]);
    // Weights 300:100 fit steer's 1..=64 as 3:1.
    assert_eq!(
        members(&t, "balanced"),
        [("wan".into(), 1, 3), ("wanb".into(), 1, 1)]
    );
    assert_eq!(
        members(&t, "failover"),
        [
            ("wan".into(), 1, 1),
            ("wanb".into(), 2, 1),
            ("lte".into(), 3, 1)
        ]
    );
    // Every imported rule, in mwan3's order, with its conditions; the guest interface is a
    // LAN now; the ipset rule is written commented out, the long-named one left out (mwan3
    // ignores it too).
    let s = sets(&t);
    let names: Vec<&str> = s.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "voip",
            "ssh_office",
            "kids",
            "guest",
            "ping",
            "ntp_src",
            "bank",
            "default_rule"
        ]
    );
    let get = |n: &str| s.iter().find(|s| s["name"].as_str() == Some(n)).unwrap();
    assert_eq!(strs(&get("voip")["dports"]), ["5060", "10000-20000"]);
    assert_eq!(strs(&get("voip")["proto"]), ["udp"]);
    assert_eq!(strs(&get("ssh_office")["prefixes"]), ["198.51.100.0/24"]);
    assert_eq!(strs(&get("ssh_office")["src_prefixes"]), ["192.168.1.0/24"]);
    assert_eq!(get("kids")["match"].as_str(), Some("src"));
    assert_eq!(strs(&get("guest")["in"]), ["br-guest"]);
    assert_eq!(strs(&t["general"]["lan"]), ["br-lan", "br-guest"]);
    // mwan3 hands `-p icmp` to iptables and ip6tables alike: protocol 1 in both families,
    // where steer's `icmp` would be ICMPv6 for IPv6.
    assert_eq!(strs(&get("ping")["proto"]), ["1"]);
    assert_eq!(strs(&get("ntp_src")["sports"]), ["123"]);
    assert_eq!(get("bank")["policy"].as_str(), Some("main"));
    assert!(
        !get("bank").contains_key("dports"),
        "mwan3 ignores ports with proto all"
    );
    // An IPv4-only catch-all is not the default (IPv6 would not match it in mwan3).
    assert_eq!(strs(&get("default_rule")["prefixes"]), ["0.0.0.0/0"]);
    assert!(t.get("default").is_none());
    assert!(
        out.contains("# [[set]]\n# name = \"streaming\"\n# policy = \"failover\""),
        "{out}"
    );
    assert!(out.contains("# files = [\"streaming.txt\"]"), "{out}");
    for want in [
        format!(
            "{file}:96: not imported: rule 'streaming': ipset `streaming` is defined outside mwan3; export it with `ipset save streaming"
        ),
        format!("{file}:36: unknown option: `track_gateway` in interface 'lte'"),
        format!("{file}:28: not imported: count"),
        format!("{file}:114: not imported: rule 'a_name_too_long_for_mwan3'"),
        format!("{file}:111: check: rule 'bank': dest_port with proto `all`"),
    ] {
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    }
    check(&out, "mwan3-3wan");
}

#[test]
fn mwan3_without_network_keeps_logical_names_and_says_so() {
    let file = fixture("mwan3-2wan");
    let (ok, out, err) = import(&["mwan3", &file, "--lan", "lan0"]);
    assert!(ok, "{err}");
    let t = parse(&out);
    // Without devices, wan and wan6 cannot be known to share one: two WANs.
    let w: Vec<String> = wans(&t).into_iter().map(|w| w.1).collect();
    assert_eq!(w, ["wan", "wan6", "wanb"]);
    assert_eq!(strs(&t["general"]["lan"]), ["lan0"]);
    assert!(
        err.contains(&format!(
            "{file}:6: check: interface = \"wan\" is mwan3's logical name"
        )),
        "{err}"
    );
}

#[test]
fn omr_bypass_every_rule_type() {
    let file = fixture("omr-bypass");
    let (ok, out, err) = import(&["omr-bypass", &file]);
    assert!(ok, "{err}");
    let t = parse(&out);
    let w: Vec<(String, String)> = wans(&t).into_iter().map(|w| (w.0, w.1)).collect();
    assert_eq!(
        w,
        [
            ("eth2".into(), "eth2".into()),
            ("eth1".into(), "eth1".into())
        ]
    );
    // The ordered WAN list eth2, eth1, all: failover, then the master WAN's route (table
    // 991337), which without --network is taken to be the first WAN the rules name (eth2),
    // then the others; nothing is left to the main table (the tunnel).
    assert_eq!(
        members(&t, "via-eth2-eth1-then-master"),
        [("eth2".into(), 1, 1), ("eth1".into(), 2, 1)]
    );
    assert_eq!(
        members(&t, "via-master"),
        [("eth2".into(), 1, 1), ("eth1".into(), 2, 1)]
    );
    // A WAN group none of whose WANs is usable is `unreachable` in omr-bypass.
    for p in [
        "via-eth2-eth1-then-master",
        "via-master",
        "via-eth1",
        "via-eth2",
    ] {
        assert_eq!(
            policy(&t, p)["last_resort"].as_str(),
            Some("unreachable"),
            "{p}"
        );
    }
    let s = sets(&t);
    let summary: Vec<(String, String)> = s
        .iter()
        .map(|s| {
            let keys: Vec<&str> = ["prefixes", "sports", "dports", "src_macs", "domains"]
                .into_iter()
                .filter(|k| s.contains_key(*k))
                .collect();
            (s["policy"].as_str().unwrap().to_owned(), keys.join(","))
        })
        .collect();
    // Precedence as omr-bypass's chain gives it: destination addresses, source port,
    // destination port, LAN address, MAC; then the domain sets.
    assert_eq!(
        summary,
        [
            ("via-eth2".into(), "prefixes".into()),
            ("via-master".into(), "prefixes".into()),
            ("via-eth1".into(), "sports".into()),
            ("via-eth2".into(), "dports".into()),
            ("via-eth1".into(), "prefixes".into()),
            ("via-eth2".into(), "src_macs".into()),
            ("via-eth1".into(), "src_macs".into()),
            ("via-eth1".into(), "domains".into()),
            ("via-eth2-eth1-then-master".into(), "domains".into()),
            ("via-eth2".into(), "domains".into()),
        ]
    );
    assert_eq!(strs(&s[3]["dports"]), ["5060-5070"]);
    assert_eq!(s[4]["match"].as_str(), Some("src"));
    assert_eq!(strs(&s[7]["domains"]), ["netflix.com"]);
    assert_eq!(s[7]["filter_aaaa"].as_bool(), Some(true));
    assert_eq!(strs(&s[8]["domains"]), ["example.org"]);
    // Without noipv6, omr-bypass takes noipv6 '1' (no AAAA for the domain).
    assert_eq!(s[8]["filter_aaaa"].as_bool(), Some(true));
    assert_eq!(s[9]["filter_aaaa"].as_bool(), Some(true));
    for want in [
        format!(
            "{file}:10: check: domain rule without noipv6 (and 1 more domain rules): omr-bypass takes noipv6 '1'"
        ),
        format!(
            "{file}:26: check: @ips[1]: output `all` is omr-bypass's route of the master WAN (table 991337, not the tunnel): without --network the master WAN is not known: `eth2`, the first WAN the rules name, was taken, then eth1"
        ),
        format!(
            "{file}:12: check: @domains[1]: output `all` is omr-bypass's route of the master WAN"
        ),
    ] {
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
        let comment = want.replacen(": check: ", ": ", 1);
        assert!(
            out.contains(&format!("# CHECK: {comment}")),
            "missing `{comment}` in:\n{out}"
        );
    }
    for want in [
        format!("{file}:17: not imported: @domains[2]: `google.*`"),
        format!("{file}:50: not imported: @lan_ip[1] is disabled (enabled '0')"),
        format!("{file}:52: not imported: @asns[0] (ASN 2906)"),
        format!("{file}:56: not imported: @dpis[0] (nDPI protocol Skype)"),
        format!("{file}:62: not imported: @ips[2]: VPN on server (vpn = 1)"),
        format!("{file}:67: not imported: @macs[1]: DSCP marking"),
        format!("{file}:68: unknown option: `colour` in @macs[1]"),
        format!("{file}:73: not imported: @domains[3]: family ipv4 only"),
    ] {
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
        let comment = want.replacen(": not imported: ", ": ", 1);
        let comment = comment.replacen(": unknown option: ", ": ", 1);
        assert!(out.contains(&comment), "missing `{comment}` in:\n{out}");
    }
    // Its hint is the server's VPN, not a firewall rule (that is `none`'s).
    assert!(
        err.contains("VPN on server (vpn = 1); steer steers to this router's WANs only; left unsteered, this traffic keeps its normal path through the tunnel to the server: route it to the VPN on the server"),
        "{err}"
    );
    check(&out, "omr-bypass");
}

#[test]
fn omr_bypass_source_interface_policies_and_the_master_wan() {
    let file = fixture("omr-bypass-src");
    let network = fixture("network-omr");
    let (ok, out, err) = import(&[
        "omr-bypass",
        &file,
        "--network",
        &network,
        "--lan",
        "br-lan",
        "--lan",
        "br-guest",
    ]);
    assert!(ok, "{err}");
    let t = parse(&out);
    let w: Vec<(String, String)> = wans(&t).into_iter().map(|w| (w.0, w.1)).collect();
    assert_eq!(
        w,
        [
            ("wanb".into(), "eth2".into()),
            ("wan".into(), "eth1".into()),
            ("lte".into(), "wwan0".into())
        ]
    );
    // `all` (and `default`, and no interface at all) is table 991337: the master WAN (wanb,
    // multipath 'master'), then omr-tracker's failover to the other aggregated interfaces in
    // file order; the tunnel (omrvpn, multipath off) is not one of them.
    let master = [
        ("wanb".into(), 1, 1),
        ("wan".into(), 2, 1),
        ("lte".into(), 3, 1),
    ];
    assert_eq!(members(&t, "via-master"), master);
    assert_eq!(
        members(&t, "via-lte-then-master"),
        [
            ("lte".into(), 1, 1),
            ("wanb".into(), 2, 1),
            ("wan".into(), 3, 1)
        ]
    );
    assert_eq!(
        policy(&t, "via-lte-then-master")["last_resort"].as_str(),
        Some("unreachable")
    );
    // Source interface policies: their WAN list in order; fallback 'default' is the main
    // table, 'block' drops.
    assert_eq!(
        members(&t, "via-lte-wan-else-main"),
        [("lte".into(), 1, 1), ("wan".into(), 2, 1)]
    );
    assert_eq!(
        policy(&t, "via-lte-wan-else-main")["last_resort"].as_str(),
        Some("default")
    );
    assert_eq!(
        policy(&t, "via-wan-else-drop")["last_resort"].as_str(),
        Some("blackhole")
    );
    // They come after every other omr-bypass rule (which override their mark), before the
    // domain sets; the disabled one and the one without WANs are left out.
    let s = sets(&t);
    let names: Vec<&str> = s.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "ips0",
            "dest-port0",
            "dest-port1",
            "guests",
            "office",
            "iot",
            "domains0"
        ]
    );
    let get = |n: &str| s.iter().find(|s| s["name"].as_str() == Some(n)).unwrap();
    assert_eq!(get("dest-port1")["policy"].as_str(), Some("via-master"));
    let guests = get("guests");
    assert_eq!(strs(&guests["in"]), ["br-guest"]);
    assert_eq!(guests["policy"].as_str(), Some("via-lte-wan-else-main"));
    // ipv6 'default' (the default): IPv4 only, IPv6 keeps its normal path.
    assert_eq!(strs(&guests["prefixes"]), ["0.0.0.0/0"]);
    assert_eq!(guests["allow_default_route"].as_bool(), Some(true));
    // ipv6 'policy': both families.
    let office = get("office");
    assert_eq!(strs(&office["in"]), ["br-lan"]);
    assert!(!office.contains_key("prefixes"), "{office:?}");
    assert_eq!(strs(&get("iot")["in"]), ["br-iot"]);
    assert_eq!(strs(&get("iot")["prefixes"]), ["0.0.0.0/0"]);
    // br-iot was not given with --lan: it joins general.lan, with a note.
    assert_eq!(strs(&t["general"]["lan"]), ["br-lan", "br-guest", "br-iot"]);
    // noipv6 '0': IPv6 stays.
    assert!(!get("domains0").contains_key("filter_aaaa"));
    for want in [
        format!(
            "{file}:6: check: @ips[0]: output `all` is omr-bypass's route of the master WAN (table 991337, not the tunnel): `wanb` (multipath 'master' at {network}:24), then wan, lte (omr-tracker's failover)"
        ),
        format!(
            "{file}:11: check: @dest_port[0]: output `default` is omr-bypass's route of the master WAN"
        ),
        format!(
            "{file}:45: check: @dest_port[1]: no output interface (omr-bypass takes `all`) is omr-bypass's route of the master WAN"
        ),
        format!(
            "{file}:33: check: src_intf 'iot': source `iot` (br-iot) is not a LAN given with --lan (br-lan, br-guest); added to general.lan"
        ),
        format!("{file}:35: not imported: src_intf 'iot': ipv6 'block'"),
        format!("{file}:42: not imported: src_intf 'nowan' has no `wan`"),
        format!(
            "{file}:1: check: precedence: omr-bypass matches domains before port, address, MAC and source interface rules"
        ),
    ] {
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    }
    assert!(
        err.contains(&format!(
            "{file}:38: not imported: src_intf 'off' is disabled (enabled '0'); omr-bypass's wan-failover ignores it too"
        )),
        "a disabled policy is reported: {err}"
    );
    check(&out, "omr-bypass-src");
}

#[test]
fn omr_bypass_source_policy_without_network_names_the_interface_as_written() {
    // Without --network, `source 'guest'` cannot be turned into a device: it is written as
    // is, said so, and joins general.lan; `all` is the first WAN the rules name.
    let file = fixture("omr-bypass-src");
    let (ok, out, err) = import(&["omr-bypass", &file]);
    assert!(ok, "{err}");
    let t = parse(&out);
    assert_eq!(
        strs(&t["general"]["lan"]),
        ["br-lan", "guest", "lan", "iot"]
    );
    assert_eq!(
        members(&t, "via-master"),
        [
            ("lte".into(), 1, 1),
            ("wan".into(), 2, 1),
            ("wanb".into(), 3, 1)
        ]
    );
    for want in [
        format!(
            "{file}:6: check: @ips[0]: output `all` is omr-bypass's route of the master WAN (table 991337, not the tunnel): without --network the master WAN is not known: `lte`, the first WAN the rules name, was taken, then wan, wanb; policy `via-master` lists them in that order; pass --network /etc/config/network"
        ),
        format!("{file}:21: check: src_intf 'guests': source `guest` is a logical name"),
    ] {
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    }
}

/// The set `name` that the import wrote commented out, uncommented.
fn commented_set(out: &str, name: &str) -> toml::Table {
    let start = out
        .find(&format!("# [[set]]\n# name = \"{name}\"\n"))
        .unwrap_or_else(|| panic!("no commented set {name} in:\n{out}"));
    let block: String = out[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    parse(&block)
}

#[test]
fn mwan3_ipset_is_the_destination_and_other_conditions_still_apply() {
    let file = fixture("mwan3-ipset");
    let (ok, out, err) = import(&["mwan3", &file]);
    assert!(ok, "{err}");
    // `-m set --match-set video dst` with `-p tcp --dport 443`: the set's members are the
    // destinations, and the ports stay.
    let video = commented_set(&out, "video");
    assert_eq!(video["match"].as_str(), Some("dst"));
    assert_eq!(strs(&video["files"]), ["video.txt"]);
    assert_eq!(strs(&video["dports"]), ["443"]);
    assert!(!video.contains_key("prefixes"));
    // With src_ip: the set is still the destination side, src_ip a source condition.
    let kids = commented_set(&out, "kids_video");
    assert_eq!(kids["match"].as_str(), Some("dst"));
    assert_eq!(strs(&kids["files"]), ["video.txt"]);
    assert_eq!(strs(&kids["src_prefixes"]), ["192.168.1.64/27"]);
    assert!(!kids.contains_key("prefixes"), "{kids:?}");
    // With dest_ip: mwan3 wants both; steer's prefixes and files would be either. Left out,
    // without dest_ip, and said why.
    let cdn = commented_set(&out, "cdn_video");
    assert!(!cdn.contains_key("prefixes"), "{cdn:?}");
    assert!(
        out.contains(
            "# NOT IMPORTED (dest_ip and ipset video: steer cannot intersect two destination lists):\n# [[set]]\n# name = \"cdn_video\""
        ),
        "{out}"
    );
    assert!(
        err.contains(&format!(
            "{file}:33: check: rule 'cdn_video': dest_ip 198.51.100.0/24 and ipset `video` must both hold the destination in mwan3; steer's prefixes and files are one list (either one matches); the rule is written commented out, without dest_ip: put in video.txt only the members of `video` inside 198.51.100.0/24"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}:27: not imported: rule 'kids_video': ipset `video` is defined outside mwan3; export it"
        )),
        "{err}"
    );
    // Once video.txt is filled and the two sets are uncommented, steer takes them.
    let dir = TempDir::new("mwan3-ipset");
    std::fs::write(dir.join("video.txt"), "203.0.113.0/24\n").unwrap();
    let mut text = String::new();
    let mut uncomment = false;
    for line in out.lines() {
        if line.starts_with("# NOT IMPORTED (needs video.txt") {
            uncomment = true;
            continue;
        }
        if !line.starts_with("# ") {
            uncomment = false;
        }
        match line.strip_prefix("# ") {
            Some(l) if uncomment => text.push_str(l),
            _ => text.push_str(line),
        }
        text.push('\n');
    }
    let t = parse(&text);
    let names: Vec<String> = sets(&t)
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["video", "kids_video"]);
    let path = dir.join("steer.toml");
    std::fs::write(&path, &text).unwrap();
    let o = Command::new(STEER)
        .args(["check", "-c", path.to_str().unwrap()])
        .output()
        .expect("run steer check");
    assert!(
        o.status.success(),
        "{}{}\n{text}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn malformed_uci_is_refused_with_file_line_and_column() {
    let dir = TempDir::new("bad-uci");
    for (text, want) in [
        (
            "config globals 'globals'\n\toption mmx_mask '0x3F00\n",
            ":2:18: unterminated single quote; close the quote on the same line",
        ),
        (
            "# header\n\toption enabled '1'\nconfig interface 'wan'\n",
            ":2:2: `option` outside a section; put a `config TYPE 'NAME'` line before it",
        ),
        (
            "config interface 'wan'\n\tlist track_ip\n",
            ":2:6: `list track_ip` has no value",
        ),
    ] {
        let path = dir.join("mwan3");
        std::fs::write(&path, text).unwrap();
        let p = path.to_str().unwrap();
        let (ok, out, err) = import(&["mwan3", p]);
        assert!(!ok, "accepted:\n{out}");
        assert!(out.is_empty(), "nothing is printed on stdout: {out}");
        assert!(err.contains(&format!("{p}{want}")), "{err}");
    }
}

#[test]
fn unreadable_and_malformed_input_files_are_named() {
    let (ok, out, err) = import(&["mwan3", "/nonexistent/mwan3"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains("cannot read /nonexistent/mwan3: No such file or directory"),
        "{err}"
    );
    let dir = TempDir::new("bad-network");
    let network = dir.join("network");
    std::fs::write(&network, "config interface 'wan'\n\toption device 'eth1\n").unwrap();
    let n = network.to_str().unwrap();
    let (ok, out, err) = import(&["mwan3", &fixture("mwan3-2wan"), "--network", n]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains(&format!("{n}:2:16: unterminated single quote")),
        "{err}"
    );
}

/// A rule with an address steer cannot take (a name, a negation, an invalid address) or of
/// the other family than its own is left out whole, with a note naming its line: keeping it
/// without that address made it a catch-all that sent every packet by its policy.
#[test]
fn mwan3_rules_with_an_address_steer_cannot_take_are_left_out_whole() {
    let dir = TempDir::new("mwan3-bad-address");
    let path = dir.join("mwan3");
    let mut text = String::from(
        "config interface 'wan'\n\toption enabled '1'\n\tlist track_ip '1.1.1.1'\n\
         config interface 'wanb'\n\toption enabled '1'\n\tlist track_ip '8.8.8.8'\n\
         config member 'a'\n\toption interface 'wan'\n\
         config member 'b'\n\toption interface 'wanb'\n\
         config policy 'wan_only'\n\tlist use_member 'a'\n\
         config policy 'wanb_only'\n\tlist use_member 'b'\n",
    );
    let bad = [
        ("r_name", "dest_ip 'vpn.example.com'", ""),
        ("r_invalid", "dest_ip '300.1.1.1'", ""),
        ("r_negated", "dest_ip '!10.0.0.0/8'", ""),
        (
            "r_src",
            "src_ip 'office.example.com'",
            "\toption proto 'tcp'\n",
        ),
        (
            "r_family",
            "dest_ip '2001:db8::/32'",
            "\toption family 'ipv4'\n",
        ),
    ];
    for (name, address, extra) in bad {
        text.push_str(&format!(
            "config rule '{name}'\n\toption {address}\n{extra}\toption use_policy 'wanb_only'\n"
        ));
    }
    text.push_str(
        "config rule 'kept'\n\toption dest_ip '192.0.2.0/24,vpn2.example.com'\n\
         \toption use_policy 'wanb_only'\n\
         config rule 'default_rule'\n\toption dest_ip '0.0.0.0/0'\n\toption use_policy 'wan_only'\n",
    );
    std::fs::write(&path, &text).unwrap();
    let p = path.to_str().unwrap();
    let (ok, out, err) = import(&["mwan3", p, "--lan", "lan0"]);
    assert!(ok, "{err}");
    let t = parse(&out);
    let names: Vec<String> = sets(&t)
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["default_rule"],
        "no rule with a bad address is kept:\n{out}"
    );
    for (name, ..) in bad {
        assert!(
            err.contains(&format!("not imported: rule '{name}': ")),
            "{name}: {err}"
        );
    }
    assert!(
        err.contains("not imported: rule 'kept': left out whole, for the dest_ip above"),
        "{err}"
    );
    assert!(
        err.contains("dest_ip 2001:db8::/32 is not of the rule's family ipv4"),
        "{err}"
    );
    check(&out, "mwan3-bad-address");
}

/// A closed stderr (a pipe whose reader is gone) does not make the import panic: it still
/// prints the configuration and succeeds (it exited 101 about half the time).
#[test]
fn a_closed_stderr_does_not_panic_the_import() {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(STEER)
        .args(["import", "mwan3", &fixture("mwan3-2wan")])
        .stderr(writer)
        .output()
        .expect("run steer");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("[[wan]]"));
}

/// omr-bypass values steer cannot take are reported and left out, so the output passes
/// `steer check` as printed: a MAC that is none, a URL where a domain goes; a `*.` wildcard is
/// the domain itself (it matches its subdomains), not "every top-level domain".
#[test]
fn omr_bypass_values_steer_cannot_take_are_left_out_and_wildcards_become_the_domain() {
    let dir = TempDir::new("omr-bad-values");
    let path = dir.join("omr-bypass");
    std::fs::write(
        &path,
        "config interface 'all'\n\n\
         config macs\n\toption mac 'not-a-mac'\n\toption interface 'eth2'\n\n\
         config macs\n\tlist mac 'aa:bb:cc:dd:ee:02'\n\tlist mac 'zz:zz'\n\toption interface 'eth2'\n\n\
         config domains\n\toption name 'http://example.org/path'\n\toption interface 'eth2'\n\n\
         config domains\n\toption name '*.bank.example'\n\toption interface 'eth1'\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let (ok, out, err) = import(&["omr-bypass", p]);
    assert!(ok, "{err}");
    assert!(err.contains("`not-a-mac` is not a MAC address"), "{err}");
    assert!(err.contains("`zz:zz` is not a MAC address"), "{err}");
    assert!(
        err.contains("`*.bank.example` written as `bank.example`"),
        "{err}"
    );
    assert!(!err.contains("every top-level domain"), "{err}");
    let t = parse(&out);
    let macs: Vec<Vec<String>> = sets(&t)
        .iter()
        .filter_map(|s| s.get("src_macs").map(strs))
        .collect();
    assert_eq!(macs, [["aa:bb:cc:dd:ee:02"]], "{out}");
    let domains: Vec<Vec<String>> = sets(&t)
        .iter()
        .filter_map(|s| s.get("domains").map(strs))
        .collect();
    assert!(domains.contains(&vec!["bank.example".to_owned()]), "{out}");
    assert!(domains.iter().flatten().all(|d| !d.contains('/')), "{out}");
    check(&out, "omr-bad-values");
}

/// A domain in two omr-bypass domain rules (same or another output) stays in the first one:
/// steer refuses a domain in two sets, dnsmasq puts its addresses in one ipset only. The note
/// names both rules' file:line and which one applies; the output passes `steer check`.
#[test]
fn omr_bypass_domain_in_two_rules_stays_in_the_first_with_a_note() {
    let dir = TempDir::new("omr-dup-domains");
    let path = dir.join("omr-bypass");
    std::fs::write(
        &path,
        "config interface 'all'\n\n\
         config domains\n\toption name 'a.com'\n\toption interface 'eth1'\n\n\
         config domains\n\tlist name 'a.com'\n\tlist name 'b.com'\n\toption interface 'eth2'\n\n\
         config domains\n\toption name 'A.com'\n\toption interface 'eth1'\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let (ok, out, err) = import(&["omr-bypass", p]);
    assert!(ok, "{err}");
    for line in [8, 13] {
        assert!(
            err.contains(&format!(
                "{p}:{line}: check: @domains[{}]: domain `a.com` is also in @domains[0] ({p}:4); the rule at {p}:4 applies to it, this one does not",
                if line == 8 { 1 } else { 2 }
            )),
            "{err}"
        );
    }
    let t = parse(&out);
    let domains: Vec<Vec<String>> = sets(&t)
        .iter()
        .filter_map(|s| s.get("domains").map(strs))
        .collect();
    assert_eq!(domains, [vec!["a.com"], vec!["b.com"]], "{out}");
    check(&out, "omr-dup-domains");
}

/// Service names iptables takes for ports (`https`, `domain`) are imported as their numbers
/// (they were refused, and the rule left out); a name steer does not know says what to write.
#[test]
fn service_names_for_ports_are_imported_as_numbers() {
    let dir = TempDir::new("omr-services");
    let path = dir.join("omr-bypass");
    std::fs::write(
        &path,
        "config interface 'all'\n\n\
         config dest_port\n\tlist dport 'https'\n\tlist dport 'domain'\n\tlist dport 'gopher'\n\
         \toption proto 'tcp'\n\toption interface 'eth2'\n",
    )
    .unwrap();
    let (ok, out, err) = import(&["omr-bypass", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        err.contains("`gopher` is not a port or range") && err.contains("its number"),
        "{err}"
    );
    let dports: Vec<Vec<String>> = sets(&parse(&out))
        .iter()
        .filter_map(|s| s.get("dports").map(strs))
        .collect();
    assert_eq!(dports, [["443", "53"]], "{out}");
    check(&out, "omr-services");
}

/// A file given to the other importer is refused with the command to use (it was imported as
/// an empty configuration with a note per section).
#[test]
fn a_file_of_the_other_format_is_refused_with_the_right_command() {
    for (importer, fixture_name, other) in [
        ("omr-bypass", "mwan3-2wan", "steer import mwan3"),
        ("mwan3", "omr-bypass", "steer import omr-bypass"),
    ] {
        let path = fixture(fixture_name);
        let (ok, out, err) = import(&[importer, &path]);
        assert!(!ok && out.is_empty(), "{importer} {fixture_name}: {out}");
        assert!(
            err.contains(&format!("{other} {path}")),
            "{importer} {fixture_name}: {err}"
        );
    }
}

/// Writes `files` (name, text) into a fresh directory; returns their paths.
fn write_files(tag: &str, files: &[(&str, &str)]) -> (TempDir, Vec<String>) {
    let dir = TempDir::new(tag);
    let paths = files
        .iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_owned()
        })
        .collect();
    (dir, paths)
}

/// Two mwan3 WANs; 172.16.0.0/12 goes to wanb.
const MWAN3_TWO: &str = "config interface 'wan'\n\toption enabled '1'\n\tlist track_ip '192.0.2.1'\n\
config interface 'wanb'\n\toption enabled '1'\n\tlist track_ip '192.0.2.2'\n\
config member 'wan_m1'\n\toption interface 'wan'\n\
config member 'wanb_m1'\n\toption interface 'wanb'\n\
config policy 'wan_only'\n\tlist use_member 'wan_m1'\n\
config policy 'wanb_only'\n\tlist use_member 'wanb_m1'\n\
config rule 'private'\n\toption dest_ip '172.16.0.0/12'\n\toption use_policy 'wanb_only'\n\
config rule 'lan_in'\n\toption src_iface 'lan'\n\toption proto 'tcp'\n\toption dest_port '22'\n\toption use_policy 'wanb_only'\n\
config rule 'default_rule'\n\toption dest_ip '0.0.0.0/0'\n\toption use_policy 'wan_only'\n";

#[test]
fn lan_side_interfaces_mwan3_steered_join_general_lan() {
    // mwan3 marks packets from every ingress interface: the guest network, which --lan does
    // not name, was steered too and must stay so.
    let network = "config interface 'loopback'\n\toption device 'lo'\n\toption proto 'static'\n\
config interface 'lan'\n\toption device 'm5-br'\n\toption proto 'static'\n\
config interface 'guest'\n\toption device 'm5-gst'\n\toption proto 'static'\n\
\toption ipaddr '192.168.2.1'\n\
config interface 'wan'\n\toption device 'eth1'\n\toption proto 'dhcp'\n\
config interface 'wan6'\n\toption device '@wan'\n\toption proto 'dhcpv6'\n\
config interface 'wanb'\n\toption device 'eth2'\n\toption proto 'static'\n\
config interface 'vpn'\n\toption proto 'wireguard'\n";
    let (_dir, p) = write_files("lan-side", &[("mwan3", MWAN3_TWO), ("network", network)]);
    let (ok, out, err) = import(&["mwan3", &p[0], "--network", &p[1], "--lan", "m5-br"]);
    assert!(ok, "{err}");
    let t = parse(&out);
    assert_eq!(strs(&t["general"]["lan"]), ["m5-br", "m5-gst"]);
    let net = &p[1];
    for want in [
        format!(
            "{net}:7: check: interface `guest` (m5-gst) added to general.lan: mwan3 steered traffic coming in on it"
        ),
        format!(
            "{net}:20: check: interface `vpn` (vpn, proto wireguard) is not in general.lan: mwan3 steered traffic coming in on it too; steer leaves it to the main table; if it is a LAN-side network, add \"vpn\" to general.lan (--lan vpn)"
        ),
    ] {
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
        let comment = want.replacen(": check: ", ": ", 1);
        let comment = comment.split("; ").next().unwrap();
        assert!(out.contains(comment), "missing `{comment}` in:\n{out}");
    }
    // WANs (a static one too), their aliases and loopback are not LANs.
    for not in ["`wanb`", "`wan6`", "`loopback`", "`lan`"] {
        assert!(!err.contains(not), "{not} in:\n{err}");
    }
    check(&out, "lan-side");
}

#[test]
fn without_network_the_lans_left_out_are_flagged() {
    let (_dir, p) = write_files("lan-side-nonet", &[("mwan3", MWAN3_TWO)]);
    let (ok, _, err) = import(&["mwan3", &p[0], "--lan", "m5-br"]);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!(
            "{}:1: check: general.lan is what --lan gave (m5-br, lan): mwan3 steered traffic coming in on every LAN-side interface",
            p[0]
        )),
        "{err}"
    );
}

#[test]
fn an_old_style_bridge_is_the_lan_not_its_port() {
    // OpenWrt 19.07: `type bridge` on the interface; netifd's device is br-lan.
    let network = "config interface 'lan'\n\toption type 'bridge'\n\toption ifname 'eth0.1'\n\
\toption proto 'static'\n\
config interface 'wan'\n\toption ifname 'eth0.2'\n\toption proto 'dhcp'\n\
config interface 'wanb'\n\toption ifname 'eth0.3'\n\toption proto 'dhcp'\n";
    let (_dir, p) = write_files("old-bridge", &[("mwan3", MWAN3_TWO), ("network", network)]);
    let (ok, out, err) = import(&["mwan3", &p[0], "--network", &p[1]]);
    assert!(ok, "{err}");
    let t = parse(&out);
    assert_eq!(strs(&t["general"]["lan"]), ["br-lan"]);
    let lan_in = sets(&t)
        .into_iter()
        .find(|s| s["name"].as_str() == Some("lan_in"))
        .expect("rule lan_in");
    assert_eq!(strs(&lan_in["in"]), ["br-lan"]);
    assert!(!out.contains("eth0.1"), "{out}");
    check(&out, "old-bridge");
}

#[test]
fn a_21_02_bridge_device_is_the_lan() {
    let network = "config device\n\toption name 'br-lan'\n\toption type 'bridge'\n\
\tlist ports 'lan1'\n\tlist ports 'lan2'\n\
config interface 'lan'\n\toption device 'br-lan'\n\toption proto 'static'\n\
config interface 'wan'\n\toption device 'wan'\n\toption proto 'dhcp'\n\
config interface 'wanb'\n\toption device 'lan4'\n\toption proto 'dhcp'\n";
    let (_dir, p) = write_files("new-bridge", &[("mwan3", MWAN3_TWO), ("network", network)]);
    let (ok, out, err) = import(&["mwan3", &p[0], "--network", &p[1], "--lan", "lan1"]);
    assert!(ok, "{err}");
    let t = parse(&out);
    // A port given as --lan stays (the user said so); the bridge, the interface's device,
    // is what mwan3 steered.
    assert_eq!(strs(&t["general"]["lan"]), ["lan1", "br-lan"]);
    let lan_in = sets(&t)
        .into_iter()
        .find(|s| s["name"].as_str() == Some("lan_in"))
        .expect("rule lan_in");
    assert_eq!(strs(&lan_in["in"]), ["br-lan"]);
}

#[test]
fn omr_bypass_names_an_output_interface_the_network_file_lacks() {
    let omr = "config ips\n\toption ip '198.51.100.0/24'\n\toption interface 'wan9'\n\
config ips\n\toption ip '198.51.101.0/24'\n\toption interface 'eth2'\n\
config ips\n\toption ip '198.51.102.0/24'\n\toption interface 'wan1'\n\
config ips\n\toption ip '198.51.103.0/24'\n\toption interface 'none'\n";
    let network = "config interface 'lan'\n\toption device 'br-lan'\n\toption proto 'static'\n\
config interface 'wan1'\n\toption device 'eth1'\n\toption proto 'dhcp'\n\toption multipath 'master'\n\
config interface 'wan2'\n\toption device 'eth2'\n\toption proto 'dhcp'\n\toption multipath 'on'\n";
    let (_dir, p) = write_files("omr-wan9", &[("omr-bypass", omr), ("network", network)]);
    let (ok, out, err) = import(&["omr-bypass", &p[0], "--network", &p[1]]);
    assert!(ok, "{err}");
    let f = &p[0];
    assert!(
        err.contains(&format!(
            "{f}:3: check: the network file has no device for interface `wan9`"
        )),
        "{err}"
    );
    // A device (eth2) or an interface (wan1) of the network file is no surprise.
    assert_eq!(
        err.matches("the network file has no device").count(),
        1,
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{f}:12: not imported: @ips[3]: output None (block); omr-bypass drops this traffic: drop it with a firewall rule"
        )),
        "{err}"
    );
    check(&out, "omr-wan9");
}

#[test]
fn omr_bypass_disabled_sections_are_each_reported() {
    let omr = "config ips\n\toption ip '198.51.100.0/24'\n\toption interface 'eth1'\n\
config ips\n\toption enabled '0'\n\toption ip '198.51.101.0/24'\n\toption interface 'eth1'\n\
config domains\n\toption name 'example.com'\n\toption interface 'eth1'\n\toption enabled '0'\n\
config macs\n\toption enabled '0'\n\toption mac 'aa:bb:cc:dd:ee:01'\n\
config dpis\n\toption enabled '0'\n\toption proto 'Skype'\n\
config asns\n\toption enabled '0'\n\toption asn '2906'\n\
config src_intf 'guests'\n\toption enabled '0'\n\tlist source 'guest'\n\tlist wan 'eth1'\n";
    let (_dir, p) = write_files("omr-disabled", &[("omr-bypass", omr)]);
    let (ok, out, err) = import(&["omr-bypass", &p[0]]);
    assert!(ok, "{err}");
    let f = &p[0];
    for want in [
        format!(
            "{f}:5: not imported: @ips[1] is disabled (enabled '0'); omr-bypass ignores it too"
        ),
        format!("{f}:11: not imported: @domains[0] is disabled (enabled '0')"),
        format!("{f}:13: not imported: @macs[0] is disabled (enabled '0')"),
        format!("{f}:16: not imported: @dpis[0] is disabled (enabled '0')"),
        format!("{f}:19: not imported: @asns[0] is disabled (enabled '0')"),
        format!("{f}:22: not imported: src_intf 'guests' is disabled (enabled '0')"),
    ] {
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
        let comment = want.replacen(": not imported: ", ": ", 1);
        let comment = comment.split("; ").next().unwrap();
        assert!(out.contains(comment), "missing `{comment}` in:\n{out}");
    }
    assert_eq!(sets(&parse(&out)).len(), 1, "{out}");
}

#[test]
fn an_import_with_nothing_to_import_fails_and_says_why() {
    let disabled = "config interface 'wan'\n\toption enabled '0'\n\
config interface 'wanb'\n\toption enabled '0'\n\
config member 'm'\n\toption interface 'wan'\n";
    let omr_off =
        "config ips\n\toption enabled '0'\n\toption ip '192.0.2.0/24'\n\toption interface 'eth1'\n";
    let (_dir, p) = write_files(
        "nothing",
        &[("mwan3", disabled), ("empty", ""), ("omr-bypass", omr_off)],
    );
    for (from, file, want) in [
        (
            "mwan3",
            &p[0],
            format!(
                "{}: nothing to import: every interface is disabled: interface 'wan' (line 2), interface 'wanb' (line 4) (mwan3 then steers nothing); set option enabled '1' on the interfaces that carry traffic and import again",
                p[0]
            ),
        ),
        (
            "mwan3",
            &p[1],
            format!("{}: nothing to import: the file has no section", p[1]),
        ),
        (
            "omr-bypass",
            &p[1],
            format!("{}: nothing to import: the file has no section", p[1]),
        ),
        (
            "omr-bypass",
            &p[2],
            format!(
                "{}: nothing to import: no enabled rule sends traffic out of a WAN of this router",
                p[2]
            ),
        ),
    ] {
        let (ok, out, err) = import(&[from, file]);
        assert!(!ok, "{from} {file} accepted:\n{out}");
        assert!(out.is_empty(), "nothing on stdout: {out}");
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    }
    // What was left out is still listed before the error.
    let (_, _, err) = import(&["omr-bypass", &p[2]]);
    assert!(
        err.contains(&format!("{}:2: not imported: @ips[0] is disabled", p[2])),
        "{err}"
    );
}

/// Runs `steer import ARGS`, killed after a few seconds (a read without bound of `/dev/zero`
/// would fill memory, one of a FIFO block forever); None when it had to be killed.
fn import_bounded(args: &[&str]) -> Option<(bool, String)> {
    let mut child = Command::new(STEER)
        .arg("import")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run steer");
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(10) {
        if child.try_wait().expect("wait").is_some() {
            let out = child.wait_with_output().expect("output");
            return Some((
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn a_device_or_fifo_is_refused_at_once_not_read_without_end() {
    let dir = TempDir::new("import-fifo");
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let fifo = fifo.to_str().unwrap();
    let mwan3 = fixture("mwan3-2wan");
    for (args, says) in [
        (vec!["mwan3", "/dev/zero"], "/dev/zero: it is a device"),
        (vec!["mwan3", fifo], "it is a FIFO (named pipe)"),
        (vec!["omr-bypass", "/dev/zero"], "/dev/zero: it is a device"),
        (
            vec!["mwan3", &mwan3, "--network", "/dev/zero"],
            "/dev/zero: it is a device",
        ),
    ] {
        let Some((ok, err)) = import_bounded(&args) else {
            panic!("steer import {args:?} still reading after 10 s");
        };
        assert!(!ok, "{args:?} accepted");
        assert!(err.contains(says), "{args:?}: missing `{says}` in:\n{err}");
        assert!(err.contains("give the path of a regular file"), "{err}");
    }
}

#[test]
fn a_file_too_big_for_a_uci_file_is_refused_with_what_to_give() {
    let dir = TempDir::new("import-big");
    let big = dir.join("big");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(17 << 20).unwrap(); // sparse: no 17 MB written
    let (ok, _, err) = import(&["mwan3", big.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("it is larger than the 16777216 bytes"),
        "{err}"
    );
    assert!(err.contains("give the UCI file itself"), "{err}");
}

#[test]
fn control_characters_of_the_uci_file_are_escaped_in_notes_and_comments() {
    let dir = TempDir::new("import-escape");
    let file = dir.join("mwan3");
    std::fs::write(
        &file,
        "config interface 'w\x1b[31mred'\n\toption enabled '1'\n\tlist track_ip '1.1.1.1'\n\n\
         config member 'm1'\n\toption interface 'w\x1b[31mred'\n\toption metric '1'\n\n\
         config policy 'p'\n\tlist use_member 'm1'\n\n\
         config rule 'r'\n\toption dest_ip '10.0.0.0/8'\n\toption use_policy 'p'\n",
    )
    .unwrap();
    let (ok, out, err) = import(&["mwan3", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(!err.contains('\x1b'), "raw ESC on stderr:\n{err}");
    assert!(!out.contains('\x1b'), "raw ESC in the output:\n{out}");
    assert!(err.contains("w\\u{1b}[31mred"), "{err}");
    // The name steer check would refuse is said at once.
    assert!(err.contains("interface name contains"), "{err}");
    parse(&out);
}
