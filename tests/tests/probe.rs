//! Health probes in the namespace lab: every probe leaves through the WAN it tests (device
//! binding + mark), answers count only when they really come back, and no probe outlives its
//! round's timeout.
//!
//! The router gets the per-WAN tables and fwmark rules of the lab's WANs, v4 and v6, installed
//! by steer's own `Routing::reconcile`; its main table has no default route unless a test adds
//! one. Servers (HTTP, DNS) run on threads in the internet namespace for
//! the length of a test.
//!
//! What counts as an answer is tested against real peers too: a closed port's RST and an
//! nftables `reject` (ICMP port unreachable, administratively prohibited) in the internet
//! namespace, and HTTP servers that answer 204, 200, 404 or a captive portal's 302.

use std::{
    io::{ErrorKind, Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use steer::{
    config::{ProbeTarget, StatusCodes, TcpRefused, TrackMethod},
    health::probe::{
        Exchanged, ProbeOutcome, ProbeSpec, ProberEvent, Round, fixed_schedule, round, spawn_prober,
    },
};
use steer_tests::{
    daemon::{Daemon, Workdir},
    lab::{Lab, NFT_TABLE, Wan},
    routing,
    scenario::lab_wans,
};

/// The latest a round may return: its timeout plus half of it for the scheduling of a loaded
/// test machine. Probes that waited one after the other would take a multiple of the timeout.
fn latest_end(spec: &ProbeSpec) -> Duration {
    spec.timeout + spec.timeout / 2
}
const HTTP_PORT: u16 = 8080;
/// Nothing listens here: the internet answers a SYN with a RST.
const CLOSED_PORT: u16 = 8081;
/// The internet rejects SYNs to this port with an ICMP port unreachable ([`Rejects`]).
const PORT_UNREACHABLE: u16 = 8082;
/// The internet rejects SYNs to this port with an ICMP "administratively prohibited".
const PROHIBITED_PORT: u16 = 8083;
/// A captive portal: every request is redirected to its login page (302).
const PORTAL_PORT: u16 = 8090;
/// A server that answers 200 with a page.
const OK_PORT: u16 = 8091;
/// A server that answers 404.
const NOT_FOUND_PORT: u16 = 8092;

/// What the lab's HTTP servers answer, by port.
const NO_CONTENT: &str = "HTTP/1.1 204 No Content\r\n\r\n";
const PORTAL: &str =
    "HTTP/1.1 302 Found\r\nLocation: http://portal.example/login\r\nContent-Length: 0\r\n\r\n";
const PAGE: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const NOT_FOUND: &str = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";

fn spec(w: Wan, method: TrackMethod, targets: Vec<ProbeTarget>, timeout_ms: u64) -> ProbeSpec {
    ProbeSpec {
        interface: Lab::wan_iface(w).to_owned(),
        mark: w.mark(),
        method,
        targets,
        timeout: Duration::from_millis(timeout_ms),
        needed: 1,
    }
}

fn tcp(addr: IpAddr, port: u16, refused: TcpRefused) -> ProbeTarget {
    ProbeTarget::Tcp {
        addr: SocketAddr::new(addr, port),
        refused,
    }
}

fn http(addr: IpAddr, port: u16, status: &StatusCodes) -> ProbeTarget {
    ProbeTarget::Http {
        addr: SocketAddr::new(addr, port),
        host: "probe.test".into(),
        path: "/generate_204".into(),
        status: status.clone(),
    }
}

/// Server A's addresses, IPv4 and IPv6.
fn server_a() -> [IpAddr; 2] {
    [Lab::SERVER_A.into(), Lab::SERVER_A6.into()]
}

fn icmp_targets() -> Vec<ProbeTarget> {
    [
        IpAddr::from(Lab::PROBE_1),
        Lab::PROBE_2.into(),
        Lab::PROBE_1_6.into(),
        Lab::PROBE_2_6.into(),
    ]
    .into_iter()
    .map(ProbeTarget::Icmp)
    .collect()
}

/// One round through the router, with how long it took.
fn run_round(lab: &Lab, spec: &ProbeSpec) -> (Round, Duration) {
    lab.router.block_on(|| async {
        let r = round(spec).await;
        let took = r.started.elapsed();
        (r, took)
    })
}

fn assert_all_answered(r: &Round, spec: &ProbeSpec) {
    assert_eq!(r.outcomes.len(), spec.targets.len());
    for ((target, outcome), want) in r.outcomes.iter().zip(&spec.targets) {
        assert_eq!(target, want, "outcomes follow the targets' order");
        match outcome {
            ProbeOutcome::Answered(rtt) => assert!(*rtt <= spec.timeout, "{target:?}: {rtt:?}"),
            other => panic!("{target:?} via {}: {other:?}", spec.interface),
        }
    }
}

fn assert_all(r: &Round, spec: &ProbeSpec, want: &ProbeOutcome) {
    for (target, outcome) in &r.outcomes {
        assert_eq!(outcome, want, "{target:?} via {}", spec.interface);
    }
}

/// Asserts the round waited out its timeout, and not (much) longer.
fn assert_bounded_by_timeout(took: Duration, spec: &ProbeSpec) {
    assert!(
        took >= spec.timeout && took <= latest_end(spec),
        "round took {took:?} with timeout {:?}",
        spec.timeout
    );
}

/// HTTP (each listener with its own answer: 204 unless told) and DNS (a minimal response
/// echoing the query) servers on threads in the internet namespace, stopped and joined on drop
/// (or after `life`).
struct Servers {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The request line and Host header of every HTTP request served.
    requests: Arc<Mutex<Vec<String>>>,
}

impl Servers {
    /// HTTP servers answering 204 on `http`, DNS servers on `dns`.
    fn start(lab: &Lab, http: Vec<SocketAddr>, dns: Vec<SocketAddr>) -> Servers {
        let http = http.into_iter().map(|a| (a, NO_CONTENT)).collect();
        Servers::answering(lab, http, dns)
    }

    /// HTTP servers, each answering every request with its response; DNS servers on `dns`.
    fn answering(
        lab: &Lab,
        http: Vec<(SocketAddr, &'static str)>,
        dns: Vec<SocketAddr>,
    ) -> Servers {
        let life = Duration::from_secs(60);
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = lab.internet.spawn({
            let (stop, requests) = (stop.clone(), requests.clone());
            move || {
                let listeners: Vec<(TcpListener, &str)> = http
                    .iter()
                    .map(|&(a, answer)| {
                        let l = TcpListener::bind(a).unwrap_or_else(|e| panic!("bind {a}: {e}"));
                        (l, answer)
                    })
                    .collect();
                let udps: Vec<UdpSocket> = dns
                    .iter()
                    .map(|a| UdpSocket::bind(a).unwrap_or_else(|e| panic!("bind {a}: {e}")))
                    .collect();
                for (l, _) in &listeners {
                    l.set_nonblocking(true).unwrap();
                }
                for u in &udps {
                    u.set_nonblocking(true).unwrap();
                }
                ready_tx.send(()).unwrap();
                let deadline = Instant::now() + life;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let mut idle = true;
                    for &(ref l, answer) in &listeners {
                        if let Ok((stream, _)) = l.accept() {
                            idle = false;
                            serve_http(stream, answer, |head| {
                                requests
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push(head);
                            });
                        }
                    }
                    for u in &udps {
                        let mut buf = [0u8; 512];
                        if let Ok((n, from)) = u.recv_from(&mut buf) {
                            idle = false;
                            if n >= 12 {
                                let mut reply = buf[..n].to_vec();
                                reply[2] = 0x80 | (buf[2] & 0x01); // QR, RD copied
                                reply[3] = 0x80; // RA, NOERROR
                                let _ = u.send_to(&reply, from);
                            }
                        }
                    }
                    if idle {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(2))
            .expect("servers bound in the internet namespace");
        Servers {
            stop,
            thread: Some(thread),
            requests,
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request head, hands its request line and Host header to `record`
/// ("request line | host header"), then writes `answer`. Recording comes first: the prober's
/// round ends with the answer, and the test reads the record right after.
fn serve_http(mut stream: std::net::TcpStream, answer: &str, record: impl FnOnce(String)) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or_default().to_owned();
    let host = lines
        .find(|l| l.to_ascii_lowercase().starts_with("host:"))
        .unwrap_or_default()
        .to_owned();
    record(format!("{request} | {host}"));
    let _ = stream.write_all(answer.as_bytes());
}

/// nftables rules in the internet namespace that reject SYNs to [`PORT_UNREACHABLE`] with an
/// ICMP(v6) port unreachable and to [`PROHIBITED_PORT`] with "administratively prohibited",
/// each counted. The table goes with the lab's namespace.
///
/// The first SYN of every connection to those ports is dropped, so the error answers the
/// retransmission a second later. On the lab's veth links the round trip takes microseconds,
/// and an error that arrives while `connect()` still holds the socket's lock is only noted as
/// a soft error by the kernel (`TcpExtLockDroppedIcmps`), leaving the SYN to be retried: a
/// race no real WAN (a round trip of a millisecond or more) runs, which made the outcome a
/// coin toss.
struct Rejects<'l> {
    lab: &'l Lab,
}

impl<'l> Rejects<'l> {
    /// How long after the connect the error arrives: the kernel's first SYN retransmission.
    const DELAY: Duration = Duration::from_secs(1);

    fn install(lab: &'l Lab) -> Rejects<'l> {
        lab.internet.run(&format!(
            "nft -f - <<'EOF'\n\
             table inet {NFT_TABLE} {{\n\
               counter port_unreachable {{ }}\n\
               counter prohibited {{ }}\n\
               set first_syn {{ type inet_service; flags dynamic,timeout; timeout 1m; }}\n\
               chain input {{\n\
                 type filter hook input priority 0; policy accept;\n\
                 tcp dport {{ {PORT_UNREACHABLE}, {PROHIBITED_PORT} }} tcp sport != @first_syn \
                   update @first_syn {{ tcp sport }} drop\n\
                 tcp dport {PORT_UNREACHABLE} counter name \"port_unreachable\" \
                   reject with icmpx type port-unreachable\n\
                 tcp dport {PROHIBITED_PORT} counter name \"prohibited\" \
                   reject with icmpx type admin-prohibited\n\
               }}\n\
             }}\n\
             EOF"
        ));
        Rejects { lab }
    }

    /// SYNs rejected so far with `counter` (`port_unreachable` or `prohibited`).
    fn rejected(&self, counter: &str) -> u64 {
        let out = self
            .lab
            .internet
            .run(&format!("nft list counter inet {NFT_TABLE} {counter}"));
        out.split_whitespace()
            .skip_while(|t| *t != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no packet count in nft output: {out}"))
    }
}

#[test]
fn icmp_v4_v6_through_each_wan_and_timeout_when_blackholed() {
    let lab = Lab::new();
    routing::install(&lab);

    for w in Wan::ALL {
        let s = spec(w, TrackMethod::Icmp, icmp_targets(), 1000);
        let before = Wan::ALL.map(|x| lab.isp_forwarded_packets(x));
        let (r, _) = run_round(&lab, &s);
        assert_all_answered(&r, &s);
        let after = Wan::ALL.map(|x| lab.isp_forwarded_packets(x));
        assert!(
            after[w.index()] >= before[w.index()] + 4,
            "the echoes crossed ISP {w:?}"
        );
        assert_eq!(
            after[w.other().index()],
            before[w.other().index()],
            "nothing crossed the other ISP"
        );
    }

    lab.blackhole_upstream(Wan::One);
    let s1 = spec(Wan::One, TrackMethod::Icmp, icmp_targets(), 300);
    let s2 = spec(Wan::Two, TrackMethod::Icmp, icmp_targets(), 300);
    let ((r1, took1), (r2, _)) = lab.router.block_on(|| async {
        let (r1, r2) = tokio::join!(round(&s1), round(&s2));
        let took1 = r1.started.elapsed();
        ((r1, took1), (r2, ()))
    });
    assert_all(&r1, &s1, &ProbeOutcome::Timeout);
    assert_bounded_by_timeout(took1, &s1);
    assert_all_answered(&r2, &s2);

    lab.restore_upstream(Wan::One);
    let (r, _) = run_round(&lab, &s1);
    assert_all_answered(&r, &s1);
}

#[test]
fn failures_missing_interface_unreachable_and_carrier_loss() {
    let lab = Lab::new();
    routing::install(&lab);

    // An interface that does not exist: every kind of probe fails at once, naming it.
    let missing = ProbeSpec {
        interface: "nosuch0".into(),
        mark: Wan::One.mark(),
        method: TrackMethod::Icmp,
        targets: vec![
            ProbeTarget::Icmp(Lab::PROBE_1.into()),
            ProbeTarget::Icmp(Lab::PROBE_1_6.into()),
            tcp(Lab::SERVER_A.into(), HTTP_PORT, TcpRefused::Fail),
            ProbeTarget::Dns {
                server: Lab::PROBE_1.into(),
                query: "example.com".into(),
            },
            http(Lab::SERVER_A6.into(), HTTP_PORT, &StatusCodes::default()),
        ],
        timeout: Duration::from_millis(1000),
        needed: 1,
    };
    let (r, took) = run_round(&lab, &missing);
    // Failed at once, without waiting for any answer.
    assert!(took < missing.timeout / 4, "failed fast: {took:?}");
    assert_all(
        &r,
        &missing,
        &failed("bind to nosuch0: No such device".into(), Exchanged::Nothing),
    );

    // The ISP reports a destination as unreachable: ICMP probes fail at once, saying so. A TCP
    // SYN fails at once on an ICMPv4 host unreachable (a hard error); the kernel treats an
    // ICMPv6 "no route" as a soft error for a SYN and keeps trying, so that one times out.
    lab.isp(Wan::Two).run(
        "ip route add unreachable 198.51.100.0/24 && \
         ip -6 route add unreachable 2001:db8:dead::/48",
    );
    let v4 = IpAddr::from([198, 51, 100, 1]);
    let v6: IpAddr = "2001:db8:dead::1".parse().unwrap();
    let targets = vec![
        ProbeTarget::Icmp(v4),
        ProbeTarget::Icmp(v6),
        tcp(v4, 80, TcpRefused::Pass),
        tcp(v6, 80, TcpRefused::Pass),
    ];
    let s = spec(Wan::Two, TrackMethod::Icmp, targets, 300);
    let (r, took) = run_round(&lab, &s);
    assert!(took <= latest_end(&s), "round took {took:?}");
    let outcome = |i: usize| &r.outcomes[i].1;
    for (i, code, gw) in [
        (0, 1, IpAddr::from(Lab::gateway_v4(Wan::Two))),
        (1, 0, Lab::gateway_v6(Wan::Two).into()),
    ] {
        assert_eq!(
            outcome(i),
            &failed(
                format!("ICMP destination unreachable (code {code}) from {gw}"),
                Exchanged::Request
            ),
        );
    }
    assert_eq!(
        outcome(2),
        &failed(
            "connect to 198.51.100.1:80: No route to host".into(),
            Exchanged::Request
        )
    );
    assert!(
        matches!(
            outcome(3),
            ProbeOutcome::Timeout | ProbeOutcome::Failed { .. }
        ),
        "{:?}",
        outcome(3)
    );

    // Carrier loss on WAN 1: its probes get no answer (or fail), WAN 2's still answer.
    lab.cut_carrier(Wan::One);
    let s1 = spec(Wan::One, TrackMethod::Icmp, icmp_targets(), 300);
    let s2 = spec(Wan::Two, TrackMethod::Icmp, icmp_targets(), 300);
    let (r1, took1) = run_round(&lab, &s1);
    assert!(took1 <= latest_end(&s1), "round took {took1:?}");
    for (target, outcome) in &r1.outcomes {
        assert!(
            matches!(outcome, ProbeOutcome::Timeout | ProbeOutcome::Failed { .. }),
            "{target:?} via wan1 without carrier: {outcome:?}"
        );
    }
    let (r2, _) = run_round(&lab, &s2);
    assert_all_answered(&r2, &s2);

    lab.restore_carrier(Wan::One);
    let (r1, _) = run_round(&lab, &s1);
    assert_all_answered(&r1, &s1);
}

#[test]
fn tcp_connect_open_refused_and_blackholed() {
    let lab = Lab::new();
    routing::install(&lab);
    let _servers = Servers::start(
        &lab,
        server_a()
            .iter()
            .map(|&a| SocketAddr::new(a, HTTP_PORT))
            .collect(),
        vec![],
    );
    let targets = |port: u16, refused: TcpRefused| -> Vec<ProbeTarget> {
        server_a().iter().map(|&a| tcp(a, port, refused)).collect()
    };

    for w in Wan::ALL {
        // Open ports complete the handshake.
        let s = spec(
            w,
            TrackMethod::Tcp,
            targets(HTTP_PORT, TcpRefused::Fail),
            1000,
        );
        let (r, _) = run_round(&lab, &s);
        assert_all_answered(&r, &s);

        // A closed port answers the SYN with a RST: a failed probe by default, at once.
        let s = spec(
            w,
            TrackMethod::Tcp,
            targets(CLOSED_PORT, TcpRefused::Fail),
            1000,
        );
        let (r, took) = run_round(&lab, &s);
        assert_all(
            &r,
            &s,
            &failed(
                "connection refused (tcp_refused = \"fail\")".into(),
                Exchanged::Request,
            ),
        );
        assert!(took < s.timeout / 2, "refused before the timeout: {took:?}");

        // With tcp_refused = "pass" the RST is an answer: it crossed the WAN both ways.
        let s = spec(
            w,
            TrackMethod::Tcp,
            targets(CLOSED_PORT, TcpRefused::Pass),
            1000,
        );
        let (r, _) = run_round(&lab, &s);
        assert_all_answered(&r, &s);
    }

    lab.blackhole_upstream(Wan::One);
    let mut both = targets(HTTP_PORT, TcpRefused::Pass);
    both.extend(targets(CLOSED_PORT, TcpRefused::Pass));
    let s1 = spec(Wan::One, TrackMethod::Tcp, both.clone(), 300);
    let (r1, took1) = run_round(&lab, &s1);
    assert_all(&r1, &s1, &ProbeOutcome::Timeout);
    assert_bounded_by_timeout(took1, &s1);
    let s2 = spec(Wan::Two, TrackMethod::Tcp, both, 300);
    let (r2, _) = run_round(&lab, &s2);
    assert_all_answered(&r2, &s2);
}

/// The timeout of rounds against [`Rejects`]: the error comes with the SYN's retransmission.
const REJECTED_TIMEOUT_MS: u64 = 3000;

/// A round against [`Rejects`] ended with the errors, after the retransmission and well
/// before its timeout.
fn assert_rejected_in_time(took: Duration, spec: &ProbeSpec) {
    assert!(
        took >= Rejects::DELAY / 2 && took < Rejects::DELAY * 2 && took < spec.timeout,
        "ended by the ICMP errors that answered the retransmitted SYN: {took:?}"
    );
}

/// An ICMP port unreachable for the SYN is a refusal like a RST: it fails by default and
/// passes with `tcp_refused = "pass"`. An ICMP "administratively prohibited" always fails.
#[test]
fn tcp_rejected_with_icmp_fails_unless_refusals_pass() {
    let lab = Lab::new();
    routing::install(&lab);
    let rejects = Rejects::install(&lab);
    let targets = |port: u16, refused: TcpRefused| -> Vec<ProbeTarget> {
        server_a().iter().map(|&a| tcp(a, port, refused)).collect()
    };

    let s = spec(
        Wan::One,
        TrackMethod::Tcp,
        targets(PORT_UNREACHABLE, TcpRefused::Fail),
        REJECTED_TIMEOUT_MS,
    );
    let (r, took) = run_round(&lab, &s);
    assert_all(
        &r,
        &s,
        &failed(
            "connection refused (tcp_refused = \"fail\")".into(),
            Exchanged::Request,
        ),
    );
    assert_rejected_in_time(took, &s);
    assert!(
        rejects.rejected("port_unreachable") >= 2,
        "the internet sent ICMP port unreachables (v4 and v6), not RSTs"
    );

    let s = spec(
        Wan::One,
        TrackMethod::Tcp,
        targets(PORT_UNREACHABLE, TcpRefused::Pass),
        REJECTED_TIMEOUT_MS,
    );
    let (r, took) = run_round(&lab, &s);
    assert_all_answered(&r, &s);
    assert_rejected_in_time(took, &s);

    // Administratively prohibited: EHOSTUNREACH for IPv4, EACCES for IPv6; never an answer.
    for refused in [TcpRefused::Fail, TcpRefused::Pass] {
        let s = spec(
            Wan::One,
            TrackMethod::Tcp,
            targets(PROHIBITED_PORT, refused),
            REJECTED_TIMEOUT_MS,
        );
        let (r, took) = run_round(&lab, &s);
        assert_rejected_in_time(took, &s);
        let [(_, v4), (_, v6)] = &r.outcomes[..] else {
            panic!("two outcomes: {:?}", r.outcomes);
        };
        assert_eq!(
            v4,
            &failed(
                format!(
                    "connect to {}:{PROHIBITED_PORT}: No route to host",
                    Lab::SERVER_A
                ),
                Exchanged::Request
            ),
            "{refused:?}"
        );
        assert_eq!(
            v6,
            &failed(
                format!(
                    "connect to [{}]:{PROHIBITED_PORT}: Permission denied",
                    Lab::SERVER_A6
                ),
                Exchanged::Request
            ),
            "{refused:?}"
        );
    }
    assert!(rejects.rejected("prohibited") >= 4);
}

#[test]
fn dns_and_http_through_each_wan_and_timeout_when_blackholed() {
    let lab = Lab::new();
    routing::install(&lab);
    let servers = Servers::start(
        &lab,
        vec![
            SocketAddr::new(Lab::SERVER_A.into(), HTTP_PORT),
            SocketAddr::new(Lab::SERVER_A6.into(), HTTP_PORT),
        ],
        vec![
            SocketAddr::new(Lab::PROBE_1.into(), 53),
            SocketAddr::new(Lab::PROBE_1_6.into(), 53),
        ],
    );
    let dns: Vec<ProbeTarget> = [IpAddr::from(Lab::PROBE_1), Lab::PROBE_1_6.into()]
        .into_iter()
        .map(|server| ProbeTarget::Dns {
            server,
            query: "example.com".into(),
        })
        .collect();
    let http: Vec<ProbeTarget> = server_a()
        .into_iter()
        .map(|a| self::http(a, HTTP_PORT, &StatusCodes::default()))
        .collect();

    for w in Wan::ALL {
        let s = spec(w, TrackMethod::Dns, dns.clone(), 1000);
        assert_all_answered(&run_round(&lab, &s).0, &s);
        let s = spec(w, TrackMethod::Http, http.clone(), 1000);
        assert_all_answered(&run_round(&lab, &s).0, &s);
    }
    {
        let seen = servers.requests.lock().unwrap();
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert!(
            seen.iter()
                .all(|r| r == "GET /generate_204 HTTP/1.1 | Host: probe.test"),
            "{seen:?}"
        );
    }

    // A DNS server that is not there: the ICMP port unreachable comes back through the WAN.
    let s = spec(
        Wan::Two,
        TrackMethod::Dns,
        vec![ProbeTarget::Dns {
            server: Lab::PROBE_2.into(),
            query: "example.com".into(),
        }],
        1000,
    );
    let (r, took) = run_round(&lab, &s);
    assert_all(
        &r,
        &s,
        &failed("connection refused".into(), Exchanged::Request),
    );
    assert!(took < s.timeout / 2, "refused before the timeout: {took:?}");

    lab.blackhole_upstream(Wan::One);
    let both: Vec<ProbeTarget> = dns.iter().chain(&http).cloned().collect();
    let s1 = spec(Wan::One, TrackMethod::Dns, both.clone(), 300);
    let (r1, took1) = run_round(&lab, &s1);
    assert_all(&r1, &s1, &ProbeOutcome::Timeout);
    assert_bounded_by_timeout(took1, &s1);
    let s2 = spec(Wan::Two, TrackMethod::Dns, both, 300);
    assert_all_answered(&run_round(&lab, &s2).0, &s2);
}

/// A captive portal's 302 is not "up": only the listed status codes pass (by default 2xx),
/// and the failure names the status and what was wanted.
#[test]
fn http_passes_only_on_a_wanted_status() {
    let lab = Lab::new();
    routing::install(&lab);
    let answers = [
        (HTTP_PORT, NO_CONTENT),
        (PORTAL_PORT, PORTAL),
        (OK_PORT, PAGE),
        (NOT_FOUND_PORT, NOT_FOUND),
    ];
    let _servers = Servers::answering(
        &lab,
        server_a()
            .into_iter()
            .flat_map(|a| answers.map(|(port, answer)| (SocketAddr::new(a, port), answer)))
            .collect(),
        vec![],
    );
    let on_both = |port: u16, status: &StatusCodes| -> Vec<ProbeTarget> {
        server_a()
            .into_iter()
            .map(|a| http(a, port, status))
            .collect()
    };
    let round_of = |targets: Vec<ProbeTarget>| {
        let s = spec(Wan::Two, TrackMethod::Http, targets, 1000);
        let (r, _) = run_round(&lab, &s);
        (s, r)
    };

    // The default, 200-299: 204 and 200 pass; the portal's 302 and a 404 fail, saying why.
    let any_2xx = StatusCodes::default();
    for port in [HTTP_PORT, OK_PORT] {
        let (s, r) = round_of(on_both(port, &any_2xx));
        assert_all_answered(&r, &s);
    }
    for (port, code) in [(PORTAL_PORT, 302), (NOT_FOUND_PORT, 404)] {
        let (s, r) = round_of(on_both(port, &any_2xx));
        assert_all(
            &r,
            &s,
            &failed(
                format!("HTTP status {code} (wanted 200-299)"),
                Exchanged::All,
            ),
        );
        let failure = r.first_failure().expect("a failure to name");
        assert_eq!(
            failure,
            format!(
                "http://{}:{port}/generate_204: HTTP status {code} (wanted 200-299)",
                Lab::SERVER_A
            )
        );
    }

    // Exactly what a connectivity check answers: a page served with 200 fails too.
    let only_204 = StatusCodes::new(vec![204..=204]).unwrap();
    let (s, r) = round_of(on_both(HTTP_PORT, &only_204));
    assert_all_answered(&r, &s);
    let (s, r) = round_of(on_both(OK_PORT, &only_204));
    assert_all(
        &r,
        &s,
        &failed("HTTP status 200 (wanted 204)".into(), Exchanged::All),
    );

    // A configured set that takes redirects: the portal's 302 passes, a 404 still fails.
    let with_redirects = StatusCodes::new(vec![200..=200, 300..=399]).unwrap();
    let (s, r) = round_of(on_both(PORTAL_PORT, &with_redirects));
    assert_all_answered(&r, &s);
    let (s, r) = round_of(on_both(NOT_FOUND_PORT, &with_redirects));
    assert_all(
        &r,
        &s,
        &failed(
            "HTTP status 404 (wanted 200, 300-399)".into(),
            Exchanged::All,
        ),
    );
}

/// End to end: `steer run` with a WAN probed over HTTP behind a captive portal takes it down
/// and says why in its log and in `steer status`; a reload that lists 302 brings it back.
#[test]
fn the_daemon_takes_a_wan_behind_a_captive_portal_down_and_says_why() {
    let lab = Lab::new();
    let _servers = Servers::answering(
        &lab,
        vec![(SocketAddr::new(Lab::SERVER_A.into(), PORTAL_PORT), PORTAL)],
        vec![],
    );
    let work = Workdir::new("portal");
    let portal_track = |status: &str| {
        format!(
            "method = \"http\"\ntargets = [\"http://{}:{PORTAL_PORT}/generate_204\"]\n{status}\
             interval_ms = 100\ntimeout_ms = 80\ndown_after = 3\nup_after = 2\n",
            Lab::SERVER_A
        )
    };
    let config = |status: &str| {
        format!(
            "[general]\nlan = [\"{lan}\"]\n{pins}{wans}\n[[policy]]\nname = \"p\"\n\
             members = [{{ wan = \"wan2\" }}, {{ wan = \"wan1\", metric = 2 }}]\n\
             [default]\npolicy = \"p\"\n{control}",
            lan = Lab::LAN_IFACE,
            pins = work.private_paths(),
            wans = lab_wans(
                &format!(
                    "targets = [\"{}\"]\ninterval_ms = 100\ntimeout_ms = 80\n",
                    Lab::PROBE_1
                ),
                &portal_track(status),
            ),
            control = work.control_section(),
        )
    };
    work.write("steer.toml", &config(""));
    let daemon = Daemon::start(&lab.router, &work);

    let reason = format!(
        "wan2 down (3 failed rounds in a row (last: 0/1 targets answered; \
         http://{}:{PORTAL_PORT}/generate_204: HTTP status 302 (wanted 200-299)))",
        Lab::SERVER_A
    );
    daemon.wait_log(&reason, Duration::from_secs(10));
    let status = work.steer_ok(&["status"]);
    assert!(
        status.contains("HTTP status 302 (wanted 200-299)"),
        "steer status names the failure:\n{status}"
    );
    assert_eq!(work.wan_state("wan2"), "down");

    // The operator lists the portal's redirect as good: after a reload the prober asks with
    // the new set, and the WAN comes back after up_after good rounds.
    work.write("steer.toml", &config("http_status = [\"200-299\", 302]\n"));
    work.steer_ok(&["reload"]);
    daemon.wait_log("wan2 up (2 good rounds in a row", Duration::from_secs(10));
    assert_eq!(work.wan_state("wan2"), "up");
}

/// WAN 2's probes leave by WAN 2 even when the main table and a bypass rule send their target
/// to WAN 1.
#[test]
fn device_binding_beats_a_conflicting_rule() {
    let lab = Lab::new();
    routing::install(&lab);
    lab.set_main_default(Wan::One);
    lab.router.run(&format!(
        "ip rule add to {} lookup 101 pref 100 && ip -6 rule add to {} lookup 101 pref 100",
        Lab::PROBE_2,
        Lab::PROBE_2_6
    ));

    // Control: the rule works. Marked traffic that is not bound to a device goes to WAN 1.
    let before = Wan::ALL.map(|w| lab.isp_forwarded_packets(w));
    lab.router.run(&format!(
        "ping -q -n -c 1 -w 1 -m {m} {p} && ping -q -n -c 1 -w 1 -m {m} {p6}",
        m = Wan::Two.mark(),
        p = Lab::PROBE_2,
        p6 = Lab::PROBE_2_6
    ));
    let after = Wan::ALL.map(|w| lab.isp_forwarded_packets(w));
    assert!(after[0] >= before[0] + 2, "{before:?} -> {after:?}");
    assert_eq!(after[1], before[1], "{before:?} -> {after:?}");

    let targets = vec![
        ProbeTarget::Icmp(Lab::PROBE_2.into()),
        ProbeTarget::Icmp(Lab::PROBE_2_6.into()),
        tcp(Lab::PROBE_2.into(), CLOSED_PORT, TcpRefused::Pass),
        tcp(Lab::PROBE_2_6.into(), CLOSED_PORT, TcpRefused::Pass),
    ];
    let s = spec(Wan::Two, TrackMethod::Icmp, targets, 1000);
    let before = Wan::ALL.map(|w| lab.isp_forwarded_packets(w));
    let (r, _) = run_round(&lab, &s);
    assert_all_answered(&r, &s);
    let after = Wan::ALL.map(|w| lab.isp_forwarded_packets(w));
    assert!(
        after[1] >= before[1] + 4,
        "WAN 2's probes crossed ISP 2: {before:?} -> {after:?}"
    );
    assert_eq!(
        after[0], before[0],
        "none crossed ISP 1: {before:?} -> {after:?}"
    );

    // And with WAN 2 blackholed they do not sneak out through WAN 1.
    lab.blackhole_upstream(Wan::Two);
    let s = ProbeSpec {
        timeout: Duration::from_millis(300),
        ..s
    };
    let (r, _) = run_round(&lab, &s);
    assert_all(&r, &s, &ProbeOutcome::Timeout);
    assert_eq!(lab.isp_forwarded_packets(Wan::One), before[0]);
}

#[test]
fn prober_delivers_rounds_at_the_interval_and_stops() {
    let lab = Lab::new();
    routing::install(&lab);
    let s = spec(
        Wan::Two,
        TrackMethod::Icmp,
        vec![
            ProbeTarget::Icmp(Lab::PROBE_1.into()),
            ProbeTarget::Icmp(Lab::PROBE_1_6.into()),
        ],
        80,
    );
    let interval = Duration::from_millis(100);
    const ROUNDS: u32 = 6;
    lab.router.block_on(|| async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        // Taken before the prober's task runs: its first tick is no earlier, and tick k no
        // earlier than k intervals later (a late tick delays the ones after it).
        let t0 = Instant::now();
        let handle = spawn_prober(
            "wan2".to_owned(),
            s.clone(),
            fixed_schedule(interval, &s),
            tx,
        );
        // Generous: each round ends within its timeout, and a loaded machine may delay every
        // tick by as much again, several times over.
        let within = (interval + s.timeout) * ROUNDS * 4;
        let mut rounds = Vec::new();
        let collect = async {
            while rounds.len() < ROUNDS as usize {
                match rx.recv().await.expect("the prober runs") {
                    ProberEvent::Round(wan, r) => rounds.push((wan, r)),
                    ProberEvent::Late(..) => panic!("a fixed schedule is never late"),
                }
            }
        };
        let collected = tokio::time::timeout(within, collect).await;
        assert!(
            collected.is_ok(),
            "{} of {ROUNDS} rounds at {interval:?} within {within:?}",
            rounds.len()
        );
        for (wan, r) in &rounds {
            assert_eq!(wan, "wan2");
            assert_all_answered(r, &s);
            assert!(r.started >= t0);
        }
        // Never faster than the interval: the last of them started at least ROUNDS - 1
        // intervals after the first could (1 ms for the timer's granularity).
        let last = rounds.iter().map(|(_, r)| r.started).max().expect("rounds");
        assert!(
            last - t0 + Duration::from_millis(1) >= interval * (ROUNDS - 1),
            "{ROUNDS} rounds at {interval:?} started within {:?}",
            last - t0
        );
        // And not much slower: on average the rounds start an interval apart, not a multiple of
        // it (twice the interval on average leaves room for ticks a loaded machine delays).
        let first = rounds.iter().map(|(_, r)| r.started).min().expect("rounds");
        assert!(
            last - first <= interval * (ROUNDS - 1) * 2,
            "{ROUNDS} rounds at {interval:?} took {:?} from first to last",
            last - first
        );

        // Dropping the receiver stops the prober.
        drop(rx);
        tokio::time::timeout(interval * 5, handle)
            .await
            .expect("the prober stops when the receiver is gone")
            .expect("the prober did not panic");

        // Aborting the handle stops it too.
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let handle = spawn_prober(
            "wan2".to_owned(),
            s.clone(),
            fixed_schedule(interval, &s),
            tx,
        );
        assert!(rx.recv().await.is_some());
        handle.abort();
        assert!(handle.await.unwrap_err().is_cancelled());
        // The sender went with the task: the channel drains and closes.
        while rx.recv().await.is_some() {}
    });
}

/// A failed probe's outcome: its text, and what it exchanged with the network.
fn failed(why: String, exchanged: Exchanged) -> ProbeOutcome {
    ProbeOutcome::Failed { why, exchanged }
}
