//! `cargo xtask demo`: steer live in a namespace lab. A LAN client sends traffic through a
//! router running `steer run`; the router has two ISPs. The demo shows which ISP carries what,
//! cuts WAN 1 and measures the failover, brings it back, has ISP 1 fail silently, then prints
//! `steer status`, `steer dump` and one `steer explain`, and cleans up (also on Ctrl-C).
//!
//! Each section starts from the state it needs (WAN 1 up, its stream on ISP 1), times only
//! datagrams its own stream sent after the fault, and prints the daemon's log line for the
//! event it caused (a new line, never an earlier one).

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use steer_tests::{
    lab::{Arrival, Lab, Stream, Wan, udp_arrivals, udp_via},
    scenario::{Options, Scenario, config_text},
};

const N: usize = 20;
/// Bound on waiting for traffic to move to a WAN, or for the daemon to log an event.
const WAIT: Duration = Duration::from_secs(10);
/// The server port of each section's traffic (one receiver per port).
const STEERING_PORT: u16 = 7000;
const FAILOVER_PORT: u16 = 7100;
const NEW_FLOWS_PORT: u16 = 7150;
const SILENT_PORT: u16 = 7200;
/// How long a section's stream may run: longer than any section takes.
const STREAM_FOR: Duration = Duration::from_secs(30);

fn main() {
    steer_tests::require_root();
    interrupt::install();
    let outcome = std::panic::catch_unwind(demo);
    if interrupt::happened() {
        // The lab, the daemon and the pins were dropped while the demo unwound.
        interrupt::announce();
        eprintln!("steer stopped, namespaces removed");
        std::process::exit(130);
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn demo() {
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
    interrupt::check();
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
        interrupt::check();
        let [one, two] = udp_via(&s.lab, addr, STEERING_PORT, N);
        println!("{name:<40} ISP 1: {one:>2}/{N}   ISP 2: {two:>2}/{N}");
    }

    failover_and_recovery(&s, &options);
    silent_failure(&s, &options);

    interrupt::check();
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

/// Carrier loss on WAN 1: an existing flow moves to ISP 2 at once (the link event). Carrier
/// back: WAN 1 carries new flows again once it passed `up_after` probe rounds, while the flow
/// that moved stays on ISP 2 (the lab's policies keep connections where they are,
/// `failback = "keep"`).
fn failover_and_recovery(s: &Scenario, options: &Options) {
    section("failover: WAN 1 loses carrier");
    let stream = Stream::start(
        &s.lab,
        Lab::SERVER_A.into(),
        FAILOVER_PORT,
        Duration::from_millis(1),
        STREAM_FOR,
    );
    // The stream must be on ISP 1 before the cut, or the cut would not move it.
    wait_arrival(&stream, Wan::One, 0);
    let log = Log::mark(s);
    let first_after = stream.sent();
    let cut = Instant::now();
    s.lab.cut_carrier(Wan::One);
    let moved = wait_arrival(&stream, Wan::Two, first_after);
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
    print_log_line(&log.wait_new(s, DOWN));
    print_log_line(&log.wait_new(s, FLUSHED));
    s.wait_wan("wan1", "down", WAIT);

    section(&format!(
        "recovery: carrier back, WAN 1 must pass {} probe rounds before it carries traffic again",
        options.up_after
    ));
    let log = Log::mark(s);
    let first_after = stream.sent();
    let back = Instant::now();
    // New flows are tried from before the carrier comes back (restoring it waits for the
    // gateway to answer, which takes about a second of ARP retries).
    let (gateway, returned) = std::thread::scope(|scope| {
        let new_flows = scope.spawn(|| first_new_flow_via(&s.lab, Wan::One));
        s.lab.restore_carrier(Wan::One);
        let gateway = back.elapsed();
        let returned = new_flows
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (gateway, returned)
    });
    println!(
        "ISP 1's gateway answers again {:.0} ms after the carrier came back",
        ms(gateway)
    );
    print_log_line(&log.wait_new(s, UP));
    println!(
        "new flows to server A on ISP 1 again {:.0} ms after the carrier came back",
        ms(returned.at - back)
    );
    s.wait_wan("wan1", "up", WAIT);
    // Only the datagrams sent since the carrier came back: ones the kernel queued on wan1
    // while it was cut (waiting for the gateway's ARP answer) leave when it answers again.
    let since: Vec<Arrival> = stream
        .received()
        .into_iter()
        .filter(|a| a.seq >= first_after)
        .collect();
    println!(
        "the stream that failed over stays on ISP 2 (failback = \"keep\"): {} of its {} datagrams since went by ISP 1",
        since.iter().filter(|a| a.via == Some(Wan::One)).count(),
        since.len()
    );
}

/// ISP 1 drops everything while its link stays up: only the probes notice. The daemon marks
/// WAN 1 down after `down_after` failed rounds and flushes its connections, so the stream
/// starts over on ISP 2.
fn silent_failure(s: &Scenario, options: &Options) {
    section("silent failure: ISP 1 drops everything upstream, the link stays up");
    let stream = Stream::start(
        &s.lab,
        Lab::SERVER_A.into(),
        SILENT_PORT,
        Duration::from_millis(1),
        STREAM_FOR,
    );
    // WAN 1 is up (the recovery waited for it), so this new flow starts on ISP 1.
    wait_arrival(&stream, Wan::One, 0);
    let log = Log::mark(s);
    let first_after = stream.sent();
    let hole = Instant::now();
    s.lab.blackhole_upstream(Wan::One);
    let moved = wait_arrival(&stream, Wan::Two, first_after);
    println!(
        "probes every {} ms (every {} ms once one is late), down after {} failed rounds: \
         the stream is on ISP 2 {:.0} ms after the fault",
        options.interval_ms,
        steer::config::Pacing::default_failure_interval_ms(options.interval_ms),
        options.down_after,
        ms(moved.at - hole)
    );
    print_log_line(&log.wait_new(s, DOWN));
    print_log_line(&log.wait_new(s, FLUSHED));
    s.wait_wan("wan1", "down", WAIT);
    let log = Log::mark(s);
    s.lab.restore_upstream(Wan::One);
    print_log_line(&log.wait_new(s, UP));
    s.wait_wan("wan1", "up", WAIT);
}

/// Waits for the first datagram of `stream` numbered `from_seq` or later that arrived by `w`
/// (datagrams sent before a fault do not count); panics after [`WAIT`].
fn wait_arrival(stream: &Stream, w: Wan, from_seq: u64) -> Arrival {
    let deadline = Instant::now() + WAIT;
    loop {
        interrupt::check();
        if let Some(a) = stream
            .received()
            .into_iter()
            .find(|a| a.seq >= from_seq && a.via == Some(w))
        {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "no datagram numbered {from_seq} or later via {w:?} within {WAIT:?} ({} sent)",
            stream.sent()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Opens one new flow after another to server A (each from a new socket: a new source port,
/// so a new connection entry that the classifier steers) until one arrives by `w`; panics
/// after [`WAIT`].
fn first_new_flow_via(lab: &Lab, w: Wan) -> Arrival {
    let deadline = Instant::now() + WAIT;
    loop {
        interrupt::check();
        if let Some(a) = udp_arrivals(lab, Lab::SERVER_A.into(), NEW_FLOWS_PORT, 1)
            .into_iter()
            .find(|a| a.via == Some(w))
        {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "no new flow to server A via {w:?} within {WAIT:?}"
        );
    }
}

/// The daemon's log lines of the events the demo causes.
const DOWN: &str = "wan1 down (";
const UP: &str = "wan1 up (";
const FLUSHED: &str = "wan1: conntrack entries";

/// How many lines of each kind the daemon had logged before an event, so that the line the
/// event causes is told from earlier ones.
struct Log {
    seen: Vec<(&'static str, usize)>,
}

impl Log {
    fn mark(s: &Scenario) -> Log {
        let text = s.daemon.log_text();
        Log {
            seen: [DOWN, UP, FLUSHED]
                .into_iter()
                .map(|needle| (needle, lines_with(&text, needle).count()))
                .collect(),
        }
    }

    /// Waits for the first line with `needle` logged after the mark; panics with the log after
    /// [`WAIT`].
    fn wait_new(&self, s: &Scenario, needle: &'static str) -> String {
        let seen = self
            .seen
            .iter()
            .find(|(n, _)| *n == needle)
            .map_or(0, |(_, count)| *count);
        let deadline = Instant::now() + WAIT;
        loop {
            interrupt::check();
            let text = s.daemon.log_text();
            if let Some(line) = lines_with(&text, needle).nth(seen) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not log a new `{needle}` line within {WAIT:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn lines_with<'a>(text: &'a str, needle: &'a str) -> impl Iterator<Item = &'a str> {
    text.lines().filter(move |l| l.contains(needle))
}

fn section(title: &str) {
    println!("\n=== {title}");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_log_line(line: &str) {
    println!(
        "daemon: {}",
        line.split_once("] ").map(|(_, rest)| rest).unwrap_or(line)
    );
}

/// Ctrl-C (SIGINT, or SIGTERM): the demo stops at its next step and unwinds, which drops the
/// lab, the daemon and the pins. A terminal's Ctrl-C also reaches the demo's children (the
/// `ping` of a lab step, the `steer` CLI), whose failure then says nothing about the lab: after
/// an interrupt, a panic prints "interrupted, cleaning up" instead of its message.
mod interrupt {
    use std::sync::atomic::{AtomicBool, Ordering};

    static INTERRUPTED: AtomicBool = AtomicBool::new(false);
    static ANNOUNCED: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_signal(_: libc::c_int) {
        // Only an atomic store: async-signal-safe.
        INTERRUPTED.store(true, Ordering::SeqCst);
    }

    pub fn install() {
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: the handler only stores to an atomic.
            unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
        }
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if happened() {
                announce();
            } else {
                default(info);
            }
        }));
    }

    pub fn happened() -> bool {
        INTERRUPTED.load(Ordering::SeqCst)
    }

    /// Prints "interrupted, cleaning up" once.
    pub fn announce() {
        if !ANNOUNCED.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted, cleaning up");
        }
    }

    /// Unwinds (and so cleans up) if the demo was interrupted.
    pub fn check() {
        if happened() {
            panic!("interrupted");
        }
    }
}
