//! `cargo xtask demo`: steer live in a namespace lab. A LAN client sends traffic through a
//! router running `steer run`; the router has two ISPs. The demo shows which ISP carries what,
//! cuts WAN 1 and measures the failover, brings it back, then prints `steer status`,
//! `steer dump` and one `steer explain`, and cleans up.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use steer_tests::{
    lab::{Lab, Stream, Wan, udp_via},
    scenario::{Options, Scenario, config_text},
};

const N: usize = 20;
/// Bound on waiting for traffic to move to a WAN.
const WAIT: Duration = Duration::from_secs(10);

fn main() {
    steer_tests::require_root();
    let started = Instant::now();
    section("the lab");
    println!(
        "client 10.10.0.2 --- lan0 [router: steer] wan1 --- ISP 1 ---+\n\
         \x20                                        wan2 --- ISP 2 ---+--- internet: servers A {} and B {}",
        Lab::SERVER_A,
        Lab::SERVER_B
    );
    let options = Options::default();
    let s = Scenario::start("demo", &options);
    println!(
        "\nsteer run -c {} (in the router namespace), with:",
        s.work.config().display()
    );
    for line in config_text(&s.work, &options).lines().filter(|l| {
        !l.trim().is_empty()
            && !l.starts_with("pin_dir")
            && !l.starts_with("socket")
            && !l.starts_with("[control]")
    }) {
        println!("    {line}");
    }

    section("steering: which ISP carries what");
    for (name, addr) in [
        (
            "server A (default policy wan1-first)",
            IpAddr::from(Lab::SERVER_A),
        ),
        ("server B (set bypass -> wan2-first)", Lab::SERVER_B.into()),
        ("server A over IPv6", Lab::SERVER_A6.into()),
        ("server B over IPv6", Lab::SERVER_B6.into()),
    ] {
        let [one, two] = udp_via(&s.lab, addr, 7000, N);
        println!("{name:<40} ISP 1: {one:>2}/{N}   ISP 2: {two:>2}/{N}");
    }

    section("failover: WAN 1 loses carrier");
    let stream = Stream::start(
        &s.lab,
        Lab::SERVER_A.into(),
        7100,
        Duration::from_millis(1),
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(500));
    let cut = Instant::now();
    s.lab.cut_carrier(Wan::One);
    let moved = stream.wait_first_via(Wan::Two, cut, WAIT);
    println!(
        "a 1 ms UDP stream to server A: first packet on ISP 2 {:.1} ms after the cut",
        ms(moved.at - cut)
    );
    if let Some(last_one) = stream.last_via_before(Wan::One, moved.at) {
        println!(
            "datagrams lost in the switch: {}",
            moved.seq.saturating_sub(last_one.seq + 1)
        );
    }
    s.wait_wan("wan1", "down", Duration::from_secs(5));
    print_log_lines(&s, "wan1 down");
    print_last_log_line(&s, "wan1: conntrack entries");

    section(
        "recovery: carrier back, WAN 1 must pass 5 probe rounds before it carries traffic again",
    );
    let back = Instant::now();
    s.lab.restore_carrier(Wan::One);
    let returned = stream.wait_first_via(Wan::One, back, WAIT).at;
    println!(
        "first packet on ISP 1 again {:.0} ms after the carrier came back",
        ms(returned - back)
    );
    print_log_lines(&s, "wan1 up");
    drop(stream);

    section("silent failure: ISP 1 drops everything upstream, the link stays up");
    let stream = Stream::start(
        &s.lab,
        Lab::SERVER_A.into(),
        7200,
        Duration::from_millis(1),
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(300));
    let hole = Instant::now();
    s.lab.blackhole_upstream(Wan::One);
    let moved = stream.wait_first_via(Wan::Two, hole, WAIT).at;
    println!(
        "probes every {} ms, down after {} failed rounds: traffic on ISP 2 {:.0} ms after the fault",
        options.interval_ms,
        options.down_after,
        ms(moved - hole)
    );
    print_log_lines(&s, "failed rounds");
    print_last_log_line(&s, "wan1: conntrack entries");
    s.lab.restore_upstream(Wan::One);
    s.wait_wan("wan1", "up", Duration::from_secs(5));
    drop(stream);

    section("steer status");
    print!("{}", s.steer(&["status"]));
    section("steer dump");
    print!("{}", s.steer(&["dump", "all"]));
    section(&format!(
        "steer explain {} --src {}",
        Lab::SERVER_B,
        Lab::CLIENT_V4
    ));
    print!(
        "{}",
        s.steer(&[
            "explain",
            &Lab::SERVER_B.to_string(),
            "--src",
            &Lab::CLIENT_V4.to_string()
        ])
    );

    section("cleaning up");
    drop(s);
    println!(
        "steer stopped, namespaces removed; the demo took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn section(title: &str) {
    println!("\n=== {title}");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_log_lines(s: &Scenario, needle: &str) {
    for line in s.daemon.log_text().lines().filter(|l| l.contains(needle)) {
        print_log_line(line);
    }
}

/// The last line with `needle` (the conntrack flush of the latest failover, which the daemon
/// logs once it is done, off its event loop).
fn print_last_log_line(s: &Scenario, needle: &str) {
    if let Some(line) = s.daemon.log_text().lines().rfind(|l| l.contains(needle)) {
        print_log_line(line);
    }
}

fn print_log_line(line: &str) {
    println!(
        "daemon: {}",
        line.split_once("] ").map(|(_, rest)| rest).unwrap_or(line)
    );
}
