//! `[wan.track]`.

use steer::config::{ProbeTarget, StatusCodes, TcpRefused};

use super::*;

const CASES: &[Case] = &[
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
        "targets = [\"1.1.1.1\"]\ntcp_refused = \"pass\"",
        "\"pass\"",
        "wan[wan1].track.tcp_refused",
        "only applies to method = \"tcp\"",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "method = \"tcp\"\ntargets = [\"1.1.1.1:443\"]\ntcp_refused = \"up\"",
        "\"up\"",
        "wan[wan1].track.tcp_refused",
        "use one of `fail`, `pass`",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "method = \"tcp\"\ntargets = [\"1.1.1.1:443\"]\ntcp_refused = true",
        "true",
        "wan[wan1].track.tcp_refused",
        "expected a string (in quotes), found a boolean",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\"]\nhttp_status = [204]",
        "[204]",
        "wan[wan1].track.http_status",
        "only applies to method = \"http\"",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "method = \"http\"\ntargets = [\"http://1.1.1.1/\"]\nhttp_status = []",
        "[]",
        "wan[wan1].track.http_status",
        "no status code is listed, so every http probe would fail",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "method = \"http\"\ntargets = [\"http://1.1.1.1/\"]\nhttp_status = [204, 600]",
        "600",
        "wan[wan1].track.http_status[1]",
        "600 is not an HTTP status code: they run from 100 to 599",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "method = \"http\"\ntargets = [\"http://1.1.1.1/\"]\nhttp_status = [\"2xx\"]",
        "\"2xx\"",
        "wan[wan1].track.http_status[0]",
        "write \"200-299\"",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "method = \"http\"\ntargets = [\"http://1.1.1.1/\"]\nhttp_status = [\"299-200\"]",
        "\"299-200\"",
        "wan[wan1].track.http_status[0]",
        "write the lower code first: \"200-299\"",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "method = \"http\"\ntargets = [\"http://1.1.1.1/\"]\nhttp_status = [\"20O\"]",
        "\"20O\"",
        "wan[wan1].track.http_status[0]",
        "`20O` is not a status code or a range of them",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "method = \"http\"\ntargets = [\"http://1.1.1.1/\"]\nhttp_status = [204, \"200-299\"]",
        "\"200-299\"",
        "wan[wan1].track.http_status[1]",
        "200-299 is already accepted by http_status[0] (204)",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "method = \"http\"\ntargets = [\"http://1.1.1.1/\"]\nhttp_status = [204, true]",
        "true",
        "wan[wan1].track.http_status[1]",
        "expected an integer or a string (in quotes), found a boolean",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "method = \"http\"\ntargets = [\"http://1.1.1.1/\"]\nhttp_status = 204",
        "http_status = |204",
        "wan[wan1].track.http_status",
        "write it like `http_status = [200, 204]` (a single entry still needs the brackets)",
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
];

#[test]
fn each_class_of_error_has_its_own_located_message() {
    check_cases(CASES);
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
            ProbeTarget::Tcp {
                addr: sock("9.9.9.9:443"),
                refused: TcpRefused::Fail
            },
            ProbeTarget::Tcp {
                addr: sock("[2620:fe::fe]:53"),
                refused: TcpRefused::Fail
            }
        ],
        "a refused connection is a failed probe unless the file says otherwise"
    );
    let text = MIN.replace(
        "targets = [\"9.9.9.9\"]",
        "method = \"tcp\"\ntargets = [\"9.9.9.9:443\"]\ntcp_refused = \"pass\"",
    );
    let c = parse_in_fixtures(&text).unwrap();
    assert_eq!(
        c.wans[1].track.targets,
        [ProbeTarget::Tcp {
            addr: sock("9.9.9.9:443"),
            refused: TcpRefused::Pass
        }]
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
            path: "/health".into(),
            status: StatusCodes::new(vec![200..=299]).unwrap(),
        }],
        "any 2xx passes unless the file says otherwise"
    );
}

#[test]
fn http_status_takes_codes_and_ranges_in_the_order_written() {
    let text = MIN.replace(
        "targets = [\"9.9.9.9\"]",
        "method = \"http\"\ntargets = [\"http://192.0.2.1/\"]\n\
         http_status = [204, \" 300 - 399 \", \"200\", \"302-302\"]",
    );
    let err = errors(&text);
    assert_eq!(err.errors.len(), 1, "{err}");
    assert!(
        err.errors[0]
            .message
            .contains("302 is already accepted by http_status[1] (300-399)"),
        "{err}"
    );
    let text = text.replace(", \"302-302\"", "");
    let c = parse_in_fixtures(&text).unwrap();
    let ProbeTarget::Http { status, .. } = &c.wans[1].track.targets[0] else {
        panic!("an http target: {:?}", c.wans[1].track.targets);
    };
    assert_eq!(
        status,
        &StatusCodes::new(vec![204..=204, 300..=399, 200..=200]).unwrap()
    );
    assert_eq!(status.to_string(), "204, 300-399, 200");
    for (code, passes) in [
        (204, true),
        (200, true),
        (302, true),
        (201, false),
        (404, false),
    ] {
        assert_eq!(status.contains(code), passes, "{code}");
    }
    assert_eq!(StatusCodes::default().to_string(), "200-299");
    assert!(
        !StatusCodes::default().contains(302),
        "a captive portal's redirect fails"
    );
}
