//! The DNS parts of the CLI: `steer dump dns` (the learned hosts, from the pinned maps), what
//! `steer explain` says about a learned destination, and the `dns` section of `steer status`.

use std::{fmt::Write, net::IpAddr, path::Path};

use serde_json::{Value, json};

use super::{dump::Names, txt};
use crate::{
    dataplane::{
        DataplaneError,
        learned::{LearnedMaps, boottime_secs, claims},
    },
    status::DnsStatus,
};

/// What explain says about a destination learned from a DNS answer: the winning claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnedHost {
    pub name: String,
    /// Seconds until the claim expires (negative: expired, not yet removed).
    pub expires_in: i64,
    /// A later set that also claimed the address (and loses while this claim lives).
    pub also: Option<AlsoClaim>,
}

/// The runner-up's claim on a learned address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlsoClaim {
    pub set: String,
    pub name: String,
    /// Seconds until it expires.
    pub expires_in: i64,
}

/// The learned entry of `dst` for `rule`, if that is why the packet matched.
pub(crate) fn learned_host(
    pin_dir: &Path,
    dst: IpAddr,
    rule: u32,
    names: &Names,
) -> Result<Option<LearnedHost>, DataplaneError> {
    let Some(v) = LearnedMaps::from_pins(pin_dir)?.get(dst)? else {
        return Ok(None);
    };
    if v.rule != rule {
        return Ok(None);
    }
    let now = boottime_secs() as i64;
    let ((_, expires, name), also) = claims(&v);
    Ok(Some(LearnedHost {
        name,
        expires_in: expires as i64 - now,
        also: also.map(|(rule, expires, name)| AlsoClaim {
            set: names.set(rule),
            name,
            expires_in: expires as i64 - now,
        }),
    }))
}

/// The set (rule) whose claim on the learned host `dst` steers it, if `dst` is learned.
pub(crate) fn learned_rule(pin_dir: &Path, dst: IpAddr) -> Result<Option<u32>, DataplaneError> {
    Ok(LearnedMaps::from_pins(pin_dir)?.get(dst)?.map(|v| v.rule))
}

/// `steer dump dns` as JSON: one row per learned host, sorted by address.
pub(crate) fn learned_json(pin_dir: &Path, names: &Names) -> Result<Value, DataplaneError> {
    let mut entries = LearnedMaps::from_pins(pin_dir)?.entries()?;
    entries.sort_by_key(|(a, _)| *a);
    let now = boottime_secs() as i64;
    Ok(Value::Array(
        entries
            .into_iter()
            .map(|(addr, v)| {
                let ((rule, expires, name), also) = claims(&v);
                let also = also.as_ref();
                json!({
                    "address": addr.to_string(),
                    "set": names.set(rule),
                    "rule": rule,
                    "name": name,
                    "expires_in_s": expires as i64 - now,
                    "expires_boottime_s": expires,
                    "also_set": also.map(|(r, _, _)| names.set(*r)),
                    "also_rule": also.map(|(r, _, _)| r),
                    "also_name": also.map(|(_, _, n)| n),
                    "also_expires_in_s": also.map(|(_, e, _)| *e as i64 - now),
                    "also_expires_boottime_s": also.map(|(_, e, _)| e),
                })
            })
            .collect(),
    ))
}

/// "expires in N s", or for a claim past its expiry that the daemon has not removed yet (it
/// is down, or its next sweep is due) "expired N s ago; removed when the daemon runs": the
/// host still steers until then.
pub(crate) fn expiry(expires_in: i64) -> String {
    if expires_in >= 0 {
        format!("expires in {expires_in} s")
    } else {
        format!(
            "expired {} s ago; removed when the daemon runs",
            expires_in.unsigned_abs()
        )
    }
}

/// The table of `steer dump dns`, each column as wide as its widest value.
pub(crate) fn render_learned(v: &Value) -> String {
    let int = |v: &Value| v.as_i64().unwrap_or(0);
    let mut rows = vec![[
        "learned host".to_owned(),
        "set".to_owned(),
        "expiry".to_owned(),
        "name".to_owned(),
    ]];
    for r in v.as_array().into_iter().flatten() {
        let set = match r["also_set"].as_str() {
            Some(also) => format!("{} (also {also})", txt(&r["set"])),
            None => txt(&r["set"]),
        };
        let mut name = txt(&r["name"]);
        if let Some(also) = r["also_set"].as_str() {
            // The runner-up's own claim: it steers once the winner's has expired.
            let _ = write!(
                name,
                " ({also}: {}, {})",
                txt(&r["also_name"]),
                expiry(int(&r["also_expires_in_s"]))
            );
        }
        rows.push([
            txt(&r["address"]),
            set,
            expiry(int(&r["expires_in_s"])),
            name,
        ]);
    }
    let width = |c: usize| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let mut out = String::new();
    for [addr, set, expires, name] in &rows {
        let _ = writeln!(out, "{addr:<w0$}  {set:<w1$}  {expires:<w2$}  {name}");
    }
    out
}

/// "of CAPACITY", and when a reload lowered the capacity under the hosts held, what becomes of
/// them (the learner keeps them until they expire and learns no new one meanwhile).
fn of_capacity(held: usize, capacity: usize, family: &str) -> String {
    if held > capacity {
        format!(
            "of {capacity}: over capacity_{family}, kept until they expire; none learned meanwhile"
        )
    } else {
        format!("of {capacity}")
    }
}

/// The `dns` section of `steer status`.
pub(crate) fn render_status(d: &DnsStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\ndns");
    if d.listen.is_empty() {
        let _ = writeln!(out, "  forwarder   off");
    } else {
        let _ = writeln!(
            out,
            "  forwarder   {} -> {}",
            d.listen.join(", "),
            d.upstreams.join(", ")
        );
    }
    if let Some(q) = d.snoop_queue {
        let _ = writeln!(
            out,
            "  snoop       NFQUEUE {q} (answers), NFLOG group {q} (queries)"
        );
    }
    let _ = writeln!(
        out,
        "  learned     {} IPv4 ({}), {} IPv6 ({})",
        d.entries_v4,
        of_capacity(d.entries_v4, d.capacity_v4, "v4"),
        d.entries_v6,
        of_capacity(d.entries_v6, d.capacity_v6, "v6")
    );
    let c = |k: &str| d.counters.get(k).copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "  queries     {} UDP, {} TCP; {} answered, {} SERVFAIL, {} answered by steer, {} \
         unreadable (dropped, or answered FORMERR)",
        c("queries_udp"),
        c("queries_tcp"),
        c("answered"),
        c("servfail"),
        c("local_answers"),
        c("malformed_queries")
    );
    let _ = writeln!(
        out,
        "  hosts       {} learned, {} refreshed, {} expired, {} removed, {} failed writes",
        c("learned"),
        c("refreshed"),
        c("expired"),
        c("removed"),
        c("insert_failed")
    );
    let failures: Vec<String> = [
        ("upstream_timeouts", "upstream timeouts"),
        ("upstream_refused", "upstream refused"),
        ("malformed_answers", "malformed answers"),
        ("tcp_refused", "TCP connections refused"),
        (
            "dropped_clients",
            "queries dropped (not a client: dns.clients)",
        ),
    ]
    .iter()
    .filter(|(k, _)| c(k) > 0)
    .map(|(k, what)| format!("{} {what}", c(k)))
    .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "  failures    {}", failures.join(", "));
    }
    let refused: Vec<String> = d
        .refused
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if !refused.is_empty() {
        let _ = writeln!(out, "  refused     {}", refused.join(", "));
    }
    for (name, h) in &d.latency {
        if h.count == 0 {
            continue;
        }
        let q = |p: f64| {
            h.quantile_us(p)
                .map_or("> 5 s".to_owned(), |us| format!("<= {us} us"))
        };
        let _ = writeln!(
            out,
            "  {name:<11} p50 {}, p99 {} ({} samples)",
            q(0.5),
            q(0.99),
            h.count
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_to_its_widest_values_and_says_what_expired() {
        let rows = json!([
            {"address": "198.51.100.30", "set": "video", "also_set": "second",
             "name": "shared.example", "expires_in_s": 60,
             "also_name": "x.other.example", "also_expires_in_s": -2},
            {"address": "2001:db8::1", "set": "v", "also_set": null, "name": "a.example",
             "expires_in_s": -3},
            {"address": "198.51.100.31", "set": "video", "also_set": null, "name": "b.example",
             "expires_in_s": 5},
        ]);
        let text = render_learned(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        // Every column starts where its header does.
        for header in ["set", "expiry", "name"] {
            let at = lines[0].find(header).unwrap();
            for l in &lines[1..] {
                assert!(
                    l[..at].ends_with("  ") && !l[at..].starts_with(' '),
                    "column {header} misaligned:\n{text}"
                );
            }
        }
        assert!(
            lines[1].contains("video (also second)  expires in 60 s"),
            "{text}"
        );
        assert!(
            lines[1].ends_with(
                "shared.example (second: x.other.example, expired 2 s ago; removed when the daemon runs)"
            ),
            "{text}"
        );
        assert!(
            lines[2].contains("expired 3 s ago; removed when the daemon runs"),
            "{text}"
        );
        assert!(!text.contains("-3"), "{text}");
    }

    #[test]
    fn status_names_the_forwarders_failures_when_there_are_any() {
        let mut d = DnsStatus {
            listen: vec!["192.168.1.1:53".into()],
            ..DnsStatus::default()
        };
        assert!(!render_status(&d).contains("failures"));
        d.counters.insert("upstream_refused".into(), 3);
        d.counters.insert("dropped_clients".into(), 7);
        let text = render_status(&d);
        assert!(
            text.contains(
                "failures    3 upstream refused, 7 queries dropped (not a client: dns.clients)"
            ),
            "{text}"
        );
    }

    #[test]
    fn status_says_what_becomes_of_hosts_over_a_lowered_capacity() {
        assert_eq!(of_capacity(3, 5, "v4"), "of 5");
        assert_eq!(
            of_capacity(10, 5, "v4"),
            "of 5: over capacity_v4, kept until they expire; none learned meanwhile"
        );
    }
}
