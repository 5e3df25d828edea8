//! The Grafana dashboard (examples/grafana/steer-dashboard.json) only asks for metrics steer
//! exports: a real daemon in the namespace lab, with DNS and VRRP configured and one failover
//! found by its probes, is scraped, and every metric name in every PromQL expression of the
//! dashboard must be among the names the scrape carries (`# TYPE`/`# HELP` lines or samples).
//! The same scrape shows the failover in the transition counter and the detection and switch
//! histograms.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    path::Path,
    time::{Duration, Instant},
};

use steer_tests::{
    daemon::{Daemon, Workdir},
    lab::{Lab, Wan},
    scenario::lab_wans,
};

const METRICS: &str = "127.0.0.1:9464";

fn config(work: &Workdir) -> String {
    let track = |target: std::net::Ipv4Addr| {
        // Fast probes: the blackholed line is found down within a second.
        format!(
            "method = \"icmp\"\ntargets = [\"{target}\"]\ninterval_ms = 100\ntimeout_ms = 80\n\
             down_after = 3\nup_after = 3\n"
        )
    };
    format!(
        r#"
[general]
lan = ["{lan}"]
{pins}
{wans}
[[policy]]
name = "wan1-first"
members = [{{ wan = "wan1", metric = 1 }}, {{ wan = "wan2", metric = 2 }}]

[[set]]
name = "bypass"
policy = "wan1-first"
prefixes = ["203.0.113.0/24"]
domains = ["example.com"]

[default]
policy = "wan1-first"

[dns]
listen = ["{lan_addr}:5300"]
upstreams = ["127.0.0.1:5335"]

[[vrrp]]
name = "lan"
interface = "{lan}"
vrid = 51
advert_interval_ms = 100
vips = ["10.10.0.254/24"]
wans = [{{ wan = "wan1", weight = 20 }}]

{control}metrics = "{METRICS}"
"#,
        lan = Lab::LAN_IFACE,
        lan_addr = Lab::LAN_GATEWAY_V4,
        pins = work.private_paths(),
        wans = lab_wans(&track(Lab::PROBE_1), &track(Lab::PROBE_2)),
        control = work.control_section(),
    )
}

fn scrape(lab: &Lab) -> String {
    let text = lab.router.enter(|| {
        let mut s = std::net::TcpStream::connect(METRICS).expect("metrics listener");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    });
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    text
}

/// Every metric name the exposition text names: families in `# TYPE`/`# HELP` lines and the
/// series of the samples (`x_bucket`, `x_sum`, `x_count` of a histogram).
fn exported(text: &str) -> BTreeSet<String> {
    let body = text.split_once("\r\n\r\n").map_or(text, |(_, b)| b);
    let mut names = BTreeSet::new();
    for line in body.lines() {
        let name = match line.strip_prefix("# ") {
            Some(rest) => match rest.split_whitespace().collect::<Vec<_>>()[..] {
                ["TYPE" | "HELP", name, ..] => name,
                _ => continue,
            },
            None => line.split(['{', ' ']).next().unwrap_or_default(),
        };
        if !name.is_empty() {
            names.insert(name.to_owned());
        }
    }
    names
}

/// The value of the sample written exactly `series` (name and labels).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample `{series}` in\n{text}"))
        .parse()
        .unwrap()
}

/// PromQL words that are not metric names: aggregations, keywords and binary operators.
const NOT_METRICS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "inf",
    "nan",
    "atan2",
];

/// Words followed by a parenthesised list of labels.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression selects. Strings, label matchers (`{...}`) and range
/// or subquery brackets (`[...]`, where Grafana's `$__rate_interval` sits) are skipped; an
/// identifier followed by `(` is a function; label lists after `by`, `without`, `on`, ... are
/// labels.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |i: &mut usize, close: u8| {
        while *i < b.len() && b[*i] != close {
            if b[*i] == b'"' || b[*i] == b'\'' {
                let q = b[*i];
                *i += 1;
                while *i < b.len() && b[*i] != q {
                    *i += if b[*i] == b'\\' { 2 } else { 1 };
                }
            }
            *i += 1;
        }
        *i += 1;
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b'{' => skip_to(&mut i, b'}'),
            b'[' => skip_to(&mut i, b']'),
            b'"' | b'\'' => {
                i += 1;
                skip_to(&mut i, c);
            }
            b'0'..=b'9' | b'.' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                let mut j = i;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if LABEL_LISTS.contains(&word) {
                    if b.get(j) == Some(&b'(') {
                        i = j + 1;
                        skip_to(&mut i, b')');
                    }
                } else if b.get(j) != Some(&b'(') && !NOT_METRICS.contains(&word) {
                    names.insert(word.to_owned());
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn promql_names_are_extracted_from_expressions() {
    let names = metric_names(
        "histogram_quantile(0.95, sum by (le) (increase(a_bucket{job=~\"$job\", x=\"}\"}[$__range]))) \
         / on (wan) group_left (family) b_total offset 5m + sum(c) without (d) * 8 - 1e3",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["a_bucket", "b_total", "c"]
    );
}

/// Every PromQL expression of the dashboard: panel queries (rows' panels too) and the queries
/// of its template variables.
fn dashboard_queries(d: &serde_json::Value) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut panels: Vec<&serde_json::Value> = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        panels.push(p);
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().expect("expr").to_owned());
        }
    }
    for v in d["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = v["query"]["query"].as_str() {
            // label_values(METRIC_SELECTOR, label): the selector is PromQL.
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.rsplit_once(','))
                .map_or(q, |(sel, _)| sel);
            exprs.push(inner.to_owned());
        }
    }
    exprs
}

#[test]
fn every_dashboard_query_names_a_metric_the_daemon_exports() {
    steer_tests::require_root();
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/grafana/steer-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the dashboard"))
            .expect("dashboard JSON");

    let lab = Lab::new();
    let work = Workdir::new("dashboard");
    work.write("steer.toml", &config(&work));
    let daemon = Daemon::start(&lab.router, &work);

    // One failover the probes find: the ISP of wan1 drops everything, the carrier stays.
    let cut = Instant::now();
    lab.blackhole_upstream(Wan::One);
    while work.wan_state("wan1") != "down" {
        assert!(
            cut.elapsed() < Duration::from_secs(10),
            "wan1 did not go down:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Metrics are a snapshot up to 1 s old.
    std::thread::sleep(Duration::from_millis(1100));
    let text = scrape(&lab);

    assert_eq!(
        sample(
            &text,
            "steer_wan_transitions_total{wan=\"wan1\",family=\"ipv4\",to=\"down\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "steer_wan_transitions_total{wan=\"wan2\",family=\"ipv4\",to=\"down\"}"
        ),
        0.0
    );
    assert_eq!(sample(&text, "steer_wan_carrier{wan=\"wan1\"}"), 1.0);
    assert!(sample(&text, "steer_failover_detection_seconds_count") >= 1.0);
    let detection = sample(&text, "steer_failover_detection_seconds_sum");
    // From the start of the first failed round to the decision: more than nothing, bounded by
    // the time the test waited. (Not at least a probe timeout: a round whose probes are
    // answered with an error at once fails at once; one CI run measured 16 ms.)
    assert!(
        detection > 0.0 && detection <= cut.elapsed().as_secs_f64(),
        "detection {detection} s"
    );
    assert_eq!(
        sample(
            &text,
            "steer_wan_detections_total{wan=\"wan1\",family=\"ipv4\",path=\"probes\"}"
        ),
        1.0
    );
    // The probes' own cost is exported per WAN family and direction.
    let out = sample(
        &text,
        "steer_probe_packets_total{wan=\"wan1\",family=\"ipv4\",direction=\"out\"}",
    );
    let back = sample(
        &text,
        "steer_probe_packets_total{wan=\"wan1\",family=\"ipv4\",direction=\"in\"}",
    );
    assert!(
        out > back && back > 0.0,
        "probe packets out {out}, in {back}"
    );
    assert!(
        sample(
            &text,
            "steer_probe_bytes_total{wan=\"wan2\",family=\"ipv4\",direction=\"out\"}"
        ) > 0.0
    );
    assert_eq!(
        sample(&text, "steer_wan_suspect{wan=\"wan2\",family=\"ipv4\"}"),
        0.0
    );
    assert!(sample(&text, "steer_failover_switch_seconds_count") >= 1.0);
    assert!(sample(&text, "steer_failover_switch_seconds_bucket{le=\"+Inf\"}") >= 1.0);

    let exported = exported(&text);
    for family in [
        "steer_dns_events_total",
        "steer_dns_upstream_latency_seconds_bucket",
        "steer_vrrp_state",
        "steer_vrrp_adverts_sent_total",
    ] {
        assert!(
            exported.contains(family),
            "DNS and VRRP are configured: `{family}` is exported"
        );
    }
    let mut used = BTreeSet::new();
    let mut missing = Vec::new();
    for expr in dashboard_queries(&dashboard) {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "no metric in `{expr}`");
        for name in names {
            if !exported.contains(&name) {
                missing.push(format!("{name} (in `{expr}`)"));
            }
            used.insert(name);
        }
    }
    assert!(
        missing.is_empty(),
        "the dashboard asks for metrics steer does not export:\n{}\n\nexported: {exported:?}",
        missing.join("\n")
    );
    // The dashboard covers each area: WANs, traffic, sets, failover, routing, DNS, VRRP.
    for name in [
        "steer_wan_up",
        "steer_wan_family_up",
        "steer_wan_transitions_total",
        "steer_wan_bytes_total",
        "steer_set_bytes_total",
        "steer_failover_detection_seconds_bucket",
        "steer_failover_switch_seconds_bucket",
        "steer_routing_in_sync",
        "steer_dns_learned_hosts",
        "steer_vrrp_state",
        "steer_vrrp_priority",
    ] {
        assert!(used.contains(name), "the dashboard shows {name}");
    }
    lab.restore_upstream(Wan::One);
    drop(daemon);
    work.stop_in(&lab.router);
}
