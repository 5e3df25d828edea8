//! The `[[vrrp]]` part of `steer status`.

use std::fmt::Write;

use crate::status::VrrpStatus;

/// One block per instance: state, priorities, master, last transition, adverts, drops, WANs.
pub fn render(instances: &[VrrpStatus]) -> String {
    let mut out = String::new();
    if instances.is_empty() {
        return out;
    }
    let _ = writeln!(out, "\nvrrp");
    for v in instances {
        let link = match (&v.interface, v.vrid) {
            (Some(i), Some(id)) => format!("{i} vrid {id}"),
            _ => "followed from keepalived".into(),
        };
        let _ = writeln!(
            out,
            "{:<15} {:<7} priority {} (base {}; {})  {link}",
            v.name, v.state, v.effective_priority, v.base_priority, v.priority_why
        );
        if let Some(f) = &v.fault {
            let _ = writeln!(out, "{:<15} fault: {f}", "");
        }
        let _ = writeln!(
            out,
            "{:<15} master {}; vips {}",
            "",
            v.master.as_deref().unwrap_or("-"),
            if v.vips.is_empty() {
                "-".into()
            } else {
                v.vips.join(", ")
            }
        );
        if let Some(t) = &v.last_transition {
            let _ = writeln!(
                out,
                "{:<15} {} for {} s: {}",
                "", t.to, t.seconds_ago, t.why
            );
        }
        for n in &v.notes {
            let _ = writeln!(out, "{:<15} {n}", "");
        }
        if v.engine == "steer" {
            let drops: Vec<String> = v.dropped.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let _ = writeln!(
                out,
                "{:<15} adverts sent {}{}, received {}; transitions {}; dropped: {}",
                "",
                v.adverts_sent,
                if v.send_errors > 0 {
                    format!(
                        " (and {} that could not be sent: see the log)",
                        v.send_errors
                    )
                } else {
                    String::new()
                },
                v.adverts_received,
                v.transitions,
                if drops.is_empty() {
                    "none".into()
                } else {
                    drops.join(", ")
                }
            );
        }
        for w in &v.wans {
            let _ = writeln!(
                out,
                "{:<15}   {:<10} {}{} weight {}",
                "",
                w.wan,
                w.state,
                if w.master_only { ", master-only," } else { "," },
                w.weight
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{VrrpTransition, VrrpWanStatus};

    #[test]
    fn status_shows_state_priorities_master_transition_counters_and_wans() {
        let v = VrrpStatus {
            name: "lan".into(),
            engine: "steer".into(),
            interface: Some("br-lan".into()),
            vrid: Some(51),
            state: "master".into(),
            base_priority: 150,
            effective_priority: 130,
            priority_why: "150 - 20 (wan2 down)".into(),
            fault: None,
            master: Some("10.10.0.11".into()),
            vips: vec!["10.10.0.1/24".into()],
            last_transition: Some(VrrpTransition {
                seconds_ago: 7,
                to: "master".into(),
                why: "no advert for the master-down interval".into(),
            }),
            transitions: 3,
            adverts_sent: 40,
            send_errors: 0,
            adverts_received: 12,
            dropped: [("ttl".to_owned(), 5)].into_iter().collect(),
            wans: vec![VrrpWanStatus {
                wan: "wan1".into(),
                master_only: true,
                weight: 50,
                state: "up".into(),
            }],
            notes: vec!["following master 10.10.0.12 (priority 200)".into()],
        };
        let out = render(std::slice::from_ref(&v));
        for words in [
            "lan             master  priority 130 (base 150; 150 - 20 (wan2 down))  br-lan vrid 51",
            "master 10.10.0.11; vips 10.10.0.1/24",
            "master for 7 s: no advert for the master-down interval",
            "adverts sent 40, received 12; transitions 3; dropped: ttl 5",
            "wan1       up, master-only, weight 50",
            "                following master 10.10.0.12 (priority 200)",
        ] {
            assert!(out.contains(words), "`{words}` in\n{out}");
        }
        assert_eq!(render(&[]), "", "nothing without [[vrrp]]");
        let failing = VrrpStatus {
            send_errors: 7,
            ..v.clone()
        };
        let out = render(&[failing]);
        assert!(
            out.contains("adverts sent 40 (and 7 that could not be sent: see the log)"),
            "{out}"
        );
        let followed = VrrpStatus {
            engine: "keepalived".into(),
            interface: None,
            vrid: None,
            fault: Some("every WAN is down".into()),
            ..v
        };
        let out = render(&[followed]);
        assert!(out.contains("followed from keepalived"), "{out}");
        assert!(out.contains("fault: every WAN is down"), "{out}");
        assert!(!out.contains("adverts sent"), "{out}");
    }
}
