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
        if v.engine == "steer" {
            let drops: Vec<String> = v.dropped.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let _ = writeln!(
                out,
                "{:<15} adverts sent {}, received {}; transitions {}; dropped: {}",
                "",
                v.adverts_sent,
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
