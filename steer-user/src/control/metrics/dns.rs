//! The DNS metrics: queries and answers, learned hosts by family, refusals by reason,
//! expirations, and the insert, upstream and snoop latencies as histograms.

use crate::status::DnsStatus;

/// The DNS families in the Prometheus text format.
pub(super) fn render(d: &DnsStatus, out: &mut String) {
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in samples {
            out.push_str(&format!("{name}{labels} {value}\n"));
        }
    };
    family(
        "steer_dns_events_total",
        "counter",
        "DNS events by kind: queries (udp, tcp), answers, SERVFAIL, hosts learned, refreshed, expired, removed, failed kernel writes, snooped answers.",
        d.counters
            .iter()
            .map(|(k, v)| (format!("{{event=\"{k}\"}}"), v.to_string()))
            .collect(),
    );
    family(
        "steer_dns_refused_total",
        "counter",
        "Addresses from answers that were not learned, by reason.",
        d.refused
            .iter()
            .map(|(k, v)| (format!("{{reason=\"{k}\"}}"), v.to_string()))
            .collect(),
    );
    family(
        "steer_dns_learned_hosts",
        "gauge",
        "Hosts learned from DNS answers in the kernel, by family.",
        vec![
            ("{family=\"ipv4\"}".into(), d.entries_v4.to_string()),
            ("{family=\"ipv6\"}".into(), d.entries_v6.to_string()),
        ],
    );
    for (name, h) in &d.latency {
        super::histogram(
            out,
            &format!("steer_dns_{name}_latency_seconds"),
            &format!("DNS {name} latency."),
            h,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Histogram;

    #[test]
    fn dns_families_are_rendered_with_cumulative_buckets() {
        let d = DnsStatus {
            entries_v4: 3,
            counters: [("learned".to_owned(), 5)].into(),
            refused: [("private".to_owned(), 2)].into(),
            latency: [(
                "insert".to_owned(),
                Histogram {
                    bounds_us: vec![10, 100],
                    counts: vec![1, 2, 1],
                    count: 4,
                    sum_us: 500,
                },
            )]
            .into(),
            ..DnsStatus::default()
        };
        let mut out = String::new();
        render(&d, &mut out);
        for line in [
            "steer_dns_events_total{event=\"learned\"} 5",
            "steer_dns_refused_total{reason=\"private\"} 2",
            "steer_dns_learned_hosts{family=\"ipv4\"} 3",
            "steer_dns_insert_latency_seconds_bucket{le=\"0.0001\"} 3",
            "steer_dns_insert_latency_seconds_bucket{le=\"+Inf\"} 4",
            "steer_dns_insert_latency_seconds_count 4",
        ] {
            assert!(out.contains(line), "missing `{line}` in\n{out}");
        }
    }
}
