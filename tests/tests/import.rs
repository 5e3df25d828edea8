//! `steer import` round trips: the imported configuration, loaded by a real daemon in the
//! namespace lab, sends each packet of a table where the original rules would (mwan3's rule
//! order; omr-bypass's precedence). `steer explain` runs the real classifier on the live maps.

use steer_tests::{
    daemon::{Daemon, Workdir, steer_bin, steer_in},
    lab::{Lab, Wan},
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../steer-user/tests/import");

/// `steer import ARGS` (fixture names relative to the fixtures) for the lab's LAN.
fn import(args: &[&str]) -> String {
    let args: Vec<String> = args
        .iter()
        .map(|a| match a.strip_prefix('@') {
            Some(f) => format!("{FIXTURES}/{f}"),
            None => (*a).to_owned(),
        })
        .collect();
    let out = std::process::Command::new(steer_bin())
        .arg("import")
        .args(&args)
        .args(["--lan", Lab::LAN_IFACE])
        .output()
        .expect("run steer import");
    assert!(
        out.status.success(),
        "import failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `text` made to run in the lab: this test's pin directory and socket, the lab's gateways
/// and (for WANs whose targets the import had to make up) the lab's probe targets.
fn for_the_lab(mut text: String, work: &Workdir) -> String {
    text = text.replacen(
        "[general]\n",
        &format!("[general]\n{}", work.private_paths()),
        1,
    );
    for w in [Wan::One, Wan::Two] {
        let at = text
            .find(&format!("interface = \"{}\"", Lab::wan_iface(w)))
            .expect("the WAN on the lab's device");
        let mut replace = |from: &str, to: String| {
            if let Some(i) = text[at..].find(from) {
                let i = i + at;
                text.replace_range(i..i + from.len(), &to);
            }
        };
        replace(
            "gateway = \"auto\"\ngateway6 = \"auto\"",
            format!(
                "gateway = \"{}\"\ngateway6 = \"{}\"",
                Lab::gateway_v4(w),
                Lab::gateway_v6(w)
            ),
        );
        let probe = match w {
            Wan::One => Lab::PROBE_1,
            Wan::Two => Lab::PROBE_2,
        };
        replace(
            "targets = [\"1.1.1.1\", \"9.9.9.9\"]",
            format!("targets = [\"{probe}\"]"),
        );
    }
    text.push_str(&format!("\n{}", work.control_section()));
    text
}

/// One packet and where the original configuration sends it.
struct Packet {
    src: &'static str,
    dst: &'static str,
    proto: &'static str,
    sport: u16,
    dport: u16,
    src_mac: Option<&'static str>,
    /// The rule (set) that decides, or "default" for the default rule.
    rule: &'static str,
    /// The WAN's name, or "" for the main table (unmarked).
    wan: &'static str,
}

const fn p(
    src: &'static str,
    dst: &'static str,
    proto: &'static str,
    (sport, dport): (u16, u16),
    rule: &'static str,
    wan: &'static str,
) -> Packet {
    Packet {
        src,
        dst,
        proto,
        sport,
        dport,
        src_mac: None,
        rule,
        wan,
    }
}

const fn from_mac(mac: &'static str, packet: Packet) -> Packet {
    Packet {
        src_mac: Some(mac),
        ..packet
    }
}

/// Loads `config` into a daemon in a fresh lab and checks every packet with `steer explain`,
/// run in the router's namespace as coming in on the lab's LAN interface (`in` conditions).
fn explain_all(tag: &str, config: impl Fn(&Workdir) -> String, packets: &[Packet]) {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new(tag);
    work.write("steer.toml", &config(&work));
    explain_in(&lab, &work, Lab::LAN_IFACE, packets);
}

/// Starts a daemon on the configuration `work` holds and checks every packet with `steer
/// explain` as coming in on `iface` of the router.
fn explain_in(lab: &Lab, work: &Workdir, iface: &str, packets: &[Packet]) {
    let check = work.steer(&["check"]);
    assert!(check.0, "steer check:\n{}{}", check.1, check.2);
    let _daemon = Daemon::start(&lab.router, work);
    for k in packets {
        let (sport, dport) = (k.sport.to_string(), k.dport.to_string());
        let mut args = vec![k.dst, "--src", k.src, "--proto", k.proto];
        if k.proto != "icmp" {
            args.extend(["--sport", &sport, "--dport", &dport]);
        }
        if let Some(mac) = k.src_mac {
            args.extend(["--src-mac", mac]);
        }
        args.extend(["--in", iface, "--json"]);
        let out = steer_in(&lab.router)
            .arg("explain")
            .args(&args)
            .arg("--socket")
            .arg(&work.socket)
            .arg("--pin-dir")
            .arg(&work.pin_dir)
            .output()
            .expect("run steer explain");
        assert!(
            out.status.success(),
            "steer explain {args:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let e: serde_json::Value = serde_json::from_slice(&out.stdout).expect("explain --json");
        let what = format!(
            "{} {} -> {} sport {} dport {} mac {:?}",
            k.proto, k.src, k.dst, k.sport, k.dport, k.src_mac
        );
        assert_eq!(e["set"], k.rule, "{what}: {e}");
        if k.wan.is_empty() {
            // Unmarked: the main table routes it.
            assert_eq!(e["mark"], "0x0", "{what}: {e}");
        } else {
            assert_eq!(e["wan"], k.wan, "{what}: {e}");
        }
    }
}

/// Worked out by hand from mwan3-lab's rules, first match wins: voip, ssh_office, bank,
/// kids, ntp, ping, https_v6, then the v4 and v6 catch-alls (wan_wanb: wan first).
const MWAN3_PACKETS: &[Packet] = &[
    p("10.10.0.2", "8.8.8.8", "udp", (40000, 5060), "voip", "wanb"),
    p(
        "10.10.0.2",
        "8.8.8.8",
        "udp",
        (40000, 15000),
        "voip",
        "wanb",
    ),
    p(
        "10.10.0.2",
        "8.8.8.8",
        "udp",
        (40000, 20001),
        "default",
        "wan",
    ),
    // tcp 5060 is not voip (udp only).
    p(
        "10.10.0.2",
        "8.8.8.8",
        "tcp",
        (40000, 5060),
        "default",
        "wan",
    ),
    // ssh_office comes before bank, and needs all of its conditions.
    p(
        "10.10.0.2",
        "9.9.9.9",
        "tcp",
        (40000, 22),
        "ssh_office",
        "wanb",
    ),
    p("10.10.0.2", "9.9.9.9", "tcp", (40000, 443), "bank", ""),
    p(
        "10.10.0.2",
        "9.9.9.10",
        "udp",
        (40000, 22),
        "default",
        "wan",
    ),
    // 10.10.0.70 is outside ssh_office's 10.10.0.0/26 but inside kids' 10.10.0.64/27.
    p("10.10.0.70", "9.9.9.9", "tcp", (40000, 22), "bank", ""),
    p("10.10.0.70", "8.8.8.8", "tcp", (40000, 443), "kids", "wanb"),
    p(
        "10.10.0.70",
        "8.8.8.8",
        "udp",
        (40000, 5060),
        "voip",
        "wanb",
    ),
    p("10.10.0.2", "8.8.8.8", "udp", (123, 123), "ntp", "wanb"),
    p("10.10.0.2", "8.8.4.4", "tcp", (123, 80), "default", "wan"),
    p("10.10.0.2", "8.8.8.8", "icmp", (0, 0), "ping", "wanb"),
    // mwan3's proto 'icmp' is `-p icmp` in ip6tables too: protocol 1, so ICMPv6 is not
    // `ping`'s.
    p(
        "fd10::2",
        "2606:4700::1111",
        "icmp",
        (0, 0),
        "default",
        "wan",
    ),
    p(
        "fd10::2",
        "2606:4700::1111",
        "tcp",
        (40000, 443),
        "https_v6",
        "wanb",
    ),
    p(
        "fd10::2",
        "2606:4700::1111",
        "tcp",
        (40000, 80),
        "default",
        "wan",
    ),
    p(
        "10.10.0.2",
        "8.8.8.8",
        "tcp",
        (40000, 443),
        "default",
        "wan",
    ),
];

#[test]
fn imported_mwan3_rules_pick_the_wan_mwan3_would() {
    let config = |work: &Workdir| {
        for_the_lab(
            import(&["mwan3", "@mwan3-lab", "--network", "@network-lab"]),
            work,
        )
    };
    explain_all("import-mwan3", config, MWAN3_PACKETS);
}

/// A guest network of the router that --lan does not name: mwan3 steered it (its rules
/// apply to every ingress interface), and so must the import.
#[test]
fn imported_mwan3_rules_steer_the_other_lans_of_the_network_file() {
    steer_tests::require_root();
    let lab = Lab::new();
    let guest = format!("gst{}", std::process::id() % 100_000);
    lab.router.run(&format!(
        "ip link add {guest} type veth peer name {guest}p && \
         ip addr add 10.11.0.1/24 dev {guest} && ip link set {guest}p up && ip link set {guest} up"
    ));
    let work = Workdir::new("import-guest");
    let network = std::fs::read_to_string(format!("{FIXTURES}/network-lab")).unwrap()
        + &format!(
            "\nconfig interface 'guest'\n\toption device '{guest}'\n\toption proto 'static'\n\
             \toption ipaddr '10.11.0.1'\n"
        );
    let network = work.write("network", &network);
    let text = import(&[
        "mwan3",
        "@mwan3-lab",
        "--network",
        network.to_str().unwrap(),
    ]);
    let lan = format!("lan = [\"{}\", \"{guest}\"]", Lab::LAN_IFACE);
    work.write("steer.toml", &for_the_lab(text.clone(), &work));
    explain_in(
        &lab,
        &work,
        &guest,
        &[
            p("10.11.0.5", "8.8.8.8", "udp", (40000, 5060), "voip", "wanb"),
            p(
                "10.11.0.5",
                "8.8.8.8",
                "tcp",
                (40000, 443),
                "default",
                "wan",
            ),
            p("10.11.0.5", "8.8.8.8", "icmp", (0, 0), "ping", "wanb"),
        ],
    );
    assert!(text.contains(&lan), "{text}");
}

const MAC: &str = "02:00:00:00:00:aa";

/// Worked out by hand from omr-bypass-lab and omr-bypass's chain: destination addresses
/// first (matched, then RETURN), then MAC, LAN address, destination port and source port
/// rules, each MARK overriding the one before (so the last match wins); the source interface
/// policy (lan: wanb, then wan; IPv4 only) marks what none of them does. `all` is table
/// 991337, the master WAN's (network-lab: wan is multipath 'master'), not the main table.
const OMR_PACKETS: &[Packet] = &[
    // The address rule wins over the source port rule (which says wan).
    p("10.10.0.2", "9.9.9.9", "udp", (51820, 5060), "ips0", "wanb"),
    // `all`: the master WAN.
    p("10.10.0.2", "8.8.4.4", "tcp", (40000, 443), "ips1", "wan"),
    // Source port over destination port.
    p(
        "10.10.0.2",
        "8.8.8.8",
        "udp",
        (51820, 5060),
        "src-port0",
        "wan",
    ),
    p(
        "10.10.0.2",
        "8.8.8.8",
        "udp",
        (40000, 5065),
        "dest-port0",
        "wanb",
    ),
    // No rule: the LAN's source interface policy.
    p(
        "10.10.0.2",
        "8.8.8.8",
        "tcp",
        (40000, 5065),
        "src-intf0",
        "wanb",
    ),
    // LAN address over MAC; the MAC alone.
    from_mac(
        MAC,
        p(
            "10.10.0.50",
            "8.8.8.8",
            "tcp",
            (40000, 443),
            "lan-ip0",
            "wanb",
        ),
    ),
    from_mac(
        MAC,
        p("10.10.0.2", "8.8.8.8", "tcp", (40000, 443), "macs0", "wan"),
    ),
    // Destination port over MAC.
    from_mac(
        MAC,
        p(
            "10.10.0.2",
            "8.8.8.8",
            "udp",
            (40000, 5060),
            "dest-port0",
            "wanb",
        ),
    ),
    p(
        "10.10.0.2",
        "8.8.8.8",
        "tcp",
        (40000, 443),
        "src-intf0",
        "wanb",
    ),
    // The source policy's ipv6 'default': IPv6 keeps its normal path (the main table).
    p(
        "fd10::2",
        "2606:4700::1111",
        "tcp",
        (40000, 443),
        "default",
        "",
    ),
];

#[test]
fn imported_omr_bypass_rules_pick_the_wan_omr_bypass_would() {
    let config = |work: &Workdir| {
        for_the_lab(
            import(&["omr-bypass", "@omr-bypass-lab", "--network", "@network-lab"]),
            work,
        )
    };
    explain_all("import-omr", config, OMR_PACKETS);
}
