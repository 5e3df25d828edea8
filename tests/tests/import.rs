//! `steer import mwan3` round trip: the imported configuration, loaded by a real daemon in the
//! namespace lab, sends each packet of a table to the WAN mwan3's rule order gives it
//! (`steer explain` runs the real classifier on the live maps).

use steer_tests::{
    daemon::{Daemon, Workdir, steer_bin},
    lab::{Lab, Wan},
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../steer-user/tests/import");

/// The lab's mwan3 configuration (`mwan3-lab`: interfaces `wan` on wan1 and `wanb` on
/// wan2), imported, with the lab's gateways and this test's private paths.
fn imported_config(work: &Workdir) -> String {
    let out = std::process::Command::new(steer_bin())
        .args([
            "import",
            "mwan3",
            &format!("{FIXTURES}/mwan3-lab"),
            "--network",
            &format!("{FIXTURES}/network-lab"),
            "--lan",
            Lab::LAN_IFACE,
        ])
        .output()
        .expect("run steer import");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "import failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut text = stdout.replacen(
        "[general]\n",
        &format!("[general]\n{}", work.private_paths()),
        1,
    );
    for w in [Wan::One, Wan::Two] {
        let at = text
            .find(&format!("interface = \"{}\"", Lab::wan_iface(w)))
            .expect("the WAN on the lab's device");
        let auto = "gateway = \"auto\"\ngateway6 = \"auto\"";
        let gw = text[at..].find(auto).expect("gateways") + at;
        text.replace_range(
            gw..gw + auto.len(),
            &format!(
                "gateway = \"{}\"\ngateway6 = \"{}\"",
                Lab::gateway_v4(w),
                Lab::gateway_v6(w)
            ),
        );
    }
    text.push_str(&format!("\n{}", work.control_section()));
    text
}

/// One packet and what mwan3 does with it: the first of its rules that matches, in file
/// order (`mwan3-lab`), and the WAN that rule's policy picks with both WANs up.
struct Packet {
    src: &'static str,
    dst: &'static str,
    proto: &'static str,
    sport: u16,
    dport: u16,
    /// The rule (set) that matches first, or "default" for the trailing catch-alls.
    rule: &'static str,
    /// The WAN's name, or "" for the main table (`use_policy default`).
    wan: &'static str,
}

const fn p(
    src: &'static str,
    dst: &'static str,
    proto: &'static str,
    sport: u16,
    dport: u16,
    rule: &'static str,
    wan: &'static str,
) -> Packet {
    Packet {
        src,
        dst,
        proto,
        sport,
        dport,
        rule,
        wan,
    }
}

/// Worked out by hand from mwan3-lab's rules: voip, ssh_office, bank, kids, ntp, ping,
/// https_v6, then the v4 and v6 catch-alls (wan_wanb: wan first).
const PACKETS: &[Packet] = &[
    p("10.10.0.2", "8.8.8.8", "udp", 40000, 5060, "voip", "wanb"),
    p("10.10.0.2", "8.8.8.8", "udp", 40000, 15000, "voip", "wanb"),
    p(
        "10.10.0.2",
        "8.8.8.8",
        "udp",
        40000,
        20001,
        "default",
        "wan",
    ),
    // tcp 5060 is not voip (udp only).
    p("10.10.0.2", "8.8.8.8", "tcp", 40000, 5060, "default", "wan"),
    // ssh_office comes before bank, and needs all of its conditions.
    p(
        "10.10.0.2",
        "9.9.9.9",
        "tcp",
        40000,
        22,
        "ssh_office",
        "wanb",
    ),
    p("10.10.0.2", "9.9.9.9", "tcp", 40000, 443, "bank", ""),
    p("10.10.0.2", "9.9.9.10", "udp", 40000, 22, "default", "wan"),
    // 10.10.0.70 is outside ssh_office's 10.10.0.0/26 but inside kids' 10.10.0.64/27.
    p("10.10.0.70", "9.9.9.9", "tcp", 40000, 22, "bank", ""),
    p("10.10.0.70", "8.8.8.8", "tcp", 40000, 443, "kids", "wanb"),
    p("10.10.0.70", "8.8.8.8", "udp", 40000, 5060, "voip", "wanb"),
    p("10.10.0.2", "8.8.8.8", "udp", 123, 123, "ntp", "wanb"),
    p("10.10.0.2", "8.8.4.4", "tcp", 123, 80, "default", "wan"),
    p("10.10.0.2", "8.8.8.8", "icmp", 0, 0, "ping", "wanb"),
    p(
        "fd10::2",
        "2606:4700::1111",
        "tcp",
        40000,
        443,
        "https_v6",
        "wanb",
    ),
    p(
        "fd10::2",
        "2606:4700::1111",
        "tcp",
        40000,
        80,
        "default",
        "wan",
    ),
    p("10.10.0.2", "8.8.8.8", "tcp", 40000, 443, "default", "wan"),
];

#[test]
fn imported_mwan3_rules_pick_the_wan_mwan3_would() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("import-mwan3");
    work.write("steer.toml", &imported_config(&work));
    let check = work.steer(&["check"]);
    assert!(check.0, "steer check:\n{}{}", check.1, check.2);
    let _daemon = Daemon::start(&lab.router, &work);
    for k in PACKETS {
        let (sport, dport) = (k.sport.to_string(), k.dport.to_string());
        let mut args = vec!["explain", k.dst, "--src", k.src, "--proto", k.proto];
        if k.proto != "icmp" {
            args.extend(["--sport", &sport, "--dport", &dport]);
        }
        args.push("--json");
        let out = work.steer_ok(&args);
        let e: serde_json::Value = serde_json::from_str(&out).expect("explain --json");
        let what = format!(
            "{} {} -> {} sport {} dport {}",
            k.proto, k.src, k.dst, k.sport, k.dport
        );
        assert_eq!(e["set"], k.rule, "{what}: {e}");
        if k.wan.is_empty() {
            // use_policy 'default': unmarked, the main table routes it.
            assert_eq!(e["policy"], "main", "{what}: {e}");
            assert_eq!(e["mark"], "0x0", "{what}: {e}");
        } else {
            assert_eq!(e["wan"], k.wan, "{what}: {e}");
        }
    }
}
