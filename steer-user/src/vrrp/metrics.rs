//! The `[[vrrp]]` instances in the Prometheus text format, for the metrics endpoint.

use std::fmt::Write;

use crate::status::VrrpStatus;

const STATES: [&str; 4] = ["initialize", "backup", "master", "fault"];

/// `steer_vrrp_*` families: state (one gauge per state, 1 for the current one), priorities,
/// transitions, adverts sent and received, and dropped packets by reason. The instance's name is
/// the `vrrp_instance` label: Prometheus gives every scraped series an `instance` label of its
/// own (the target) and would rename ours to `exported_instance`.
pub fn render(instances: &[VrrpStatus]) -> String {
    let mut out = String::new();
    if instances.is_empty() {
        return out;
    }
    let esc = |v: &str| {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    };
    let inst = |v: &VrrpStatus| format!("vrrp_instance=\"{}\"", esc(&v.name));
    family(
        "steer_vrrp_state",
        "gauge",
        "1 for the state the instance is in.",
        instances
            .iter()
            .flat_map(|v| {
                STATES.iter().map(move |s| {
                    (
                        format!("{},state=\"{s}\"", inst(v)),
                        u64::from(v.state == *s),
                    )
                })
            })
            .collect(),
    );
    family(
        "steer_vrrp_priority",
        "gauge",
        "The configured (kind=\"base\") and advertised (kind=\"effective\") priority.",
        instances
            .iter()
            .flat_map(|v| {
                [
                    (
                        format!("{},kind=\"base\"", inst(v)),
                        u64::from(v.base_priority),
                    ),
                    (
                        format!("{},kind=\"effective\"", inst(v)),
                        u64::from(v.effective_priority),
                    ),
                ]
            })
            .collect(),
    );
    let counter = |f: fn(&VrrpStatus) -> u64| {
        instances
            .iter()
            .map(|v| (inst(v), f(v)))
            .collect::<Vec<_>>()
    };
    family(
        "steer_vrrp_transitions_total",
        "counter",
        "State changes.",
        counter(|v| v.transitions),
    );
    family(
        "steer_vrrp_adverts_sent_total",
        "counter",
        "Adverts sent.",
        counter(|v| v.adverts_sent),
    );
    family(
        "steer_vrrp_advert_send_errors_total",
        "counter",
        "Adverts the kernel would not send.",
        counter(|v| v.send_errors),
    );
    family(
        "steer_vrrp_adverts_received_total",
        "counter",
        "Valid adverts received.",
        counter(|v| v.adverts_received),
    );
    family(
        "steer_vrrp_dropped_total",
        "counter",
        "Received packets dropped, by reason.",
        instances
            .iter()
            .flat_map(|v| {
                v.dropped
                    .iter()
                    .map(move |(r, n)| (format!("{},reason=\"{}\"", inst(v), esc(r)), *n))
            })
            .collect(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_instance_in_prometheus_text() {
        let v = VrrpStatus {
            name: "lan".into(),
            engine: "steer".into(),
            interface: Some("br-lan".into()),
            vrid: Some(51),
            state: "master".into(),
            base_priority: 150,
            effective_priority: 100,
            priority_why: String::new(),
            fault: None,
            master: Some("10.0.0.11".into()),
            vips: vec!["10.0.0.1/24".into()],
            last_transition: None,
            transitions: 2,
            adverts_sent: 40,
            send_errors: 2,
            adverts_received: 3,
            dropped: [("ttl".to_owned(), 7)].into_iter().collect(),
            wans: vec![],
            notes: vec![],
        };
        let text = render(&[v]);
        for line in [
            "steer_vrrp_state{vrrp_instance=\"lan\",state=\"master\"} 1",
            "steer_vrrp_state{vrrp_instance=\"lan\",state=\"backup\"} 0",
            "steer_vrrp_priority{vrrp_instance=\"lan\",kind=\"effective\"} 100",
            "steer_vrrp_adverts_sent_total{vrrp_instance=\"lan\"} 40",
            "steer_vrrp_advert_send_errors_total{vrrp_instance=\"lan\"} 2",
            "steer_vrrp_dropped_total{vrrp_instance=\"lan\",reason=\"ttl\"} 7",
        ] {
            assert!(text.contains(line), "missing `{line}` in\n{text}");
        }
        assert_eq!(render(&[]), "");
    }
}
