//! mwan3's interfaces as WANs: numbering, marks and tables, devices, and tracking.

use std::collections::BTreeMap;

use super::{MAX_WANS, id_to_mark, is_true};
use crate::import::{
    NoteKind, Notes, Options, steer_name,
    uci::Section,
    write::{Out, WanOut, list},
};

const INTERFACE_KEYS: &[&str] = &[
    "enabled",
    "family",
    "track_ip",
    "track_method",
    "reliability",
    "count",
    "timeout",
    "interval",
    "failure_interval",
    "recovery_interval",
    "keep_failure_interval",
    "down",
    "up",
    "size",
    "max_ttl",
    "check_quality",
    "failure_latency",
    "failure_loss",
    "recovery_latency",
    "recovery_loss",
    "initial_state",
    "flush_conntrack",
    "httping_ssl",
];

/// A WAN being built: one device, from one or more mwan3 interfaces.
struct WanBuild {
    out: WanOut,
    method: &'static str,
    targets: Vec<String>,
    target_line: usize,
    reliability: Option<(u32, usize)>,
}

/// Enabled interfaces as WANs; returns mwan3 interface name -> steer WAN name.
pub(super) fn interfaces(
    sections: &[Section],
    mask: u32,
    opts: &Options,
    notes: &mut Notes,
    out: &mut Out,
) -> BTreeMap<String, String> {
    let max_id = (1u32 << mask.count_ones().min(31)) - 1 - 3;
    let mut by_iface = BTreeMap::new();
    let mut builds: Vec<WanBuild> = Vec::new();
    let mut taken = Vec::new();
    let mut id = 0u32;
    for s in sections {
        if s.kind != "interface" {
            continue;
        }
        id += 1;
        notes.unknown_options(s, INTERFACE_KEYS);
        let label = s.label();
        let Some(name) = s.name.clone() else {
            notes.add(
                NoteKind::NotImported,
                s.line,
                format!("{label} has no name"),
                "mwan3 interfaces are named after the network interface: config interface 'wan'",
            );
            continue;
        };
        if !is_true(s.value("enabled")) {
            notes.add(
                NoteKind::NotImported,
                s.line_of("enabled"),
                format!("{label} is not enabled"),
                "enable it in mwan3 (option enabled '1') and import again if it should carry traffic",
            );
            continue;
        }
        if (253..=255).contains(&id) {
            notes.add(
                NoteKind::NotImported,
                s.line,
                format!("{label} is interface number {id}, whose table is one of the kernel's reserved ones"),
                "steer cannot use tables 253-255: give it another table by hand",
            );
            continue;
        }
        if id > max_id {
            notes.add(
                NoteKind::NotImported,
                s.line,
                format!("{label} is interface number {id}, beyond the {max_id} the mask allows"),
                "widen globals.mmx_mask",
            );
            continue;
        }
        let device = device(s, &name, opts, notes);
        let method = method(s, notes);
        let targets = targets(s, method, notes);
        if let Some(b) = builds.iter_mut().find(|b| b.out.interface == device) {
            notes.add(
                NoteKind::Check,
                s.line,
                format!(
                    "{label} is on device {device}, as WAN `{}`: imported into it (its targets added; the timing and reliability of `{}` kept, applied to each family on its own)",
                    b.out.name, b.out.name
                ),
                "a steer WAN carries IPv4 and IPv6 with separate health per family",
            );
            for t in targets {
                if !b.targets.contains(&t) {
                    b.targets.push(t);
                }
            }
            by_iface.insert(name, b.out.name.clone());
            continue;
        }
        let wan_name = steer_name(&name, &format!("wan{id}"), &mut taken);
        let (track, reliability) = timing(s, notes);
        by_iface.insert(name.clone(), wan_name.clone());
        builds.push(WanBuild {
            out: WanOut {
                comment: format!("{}:{}: {label} (mwan3 table {id})", opts.file, s.line),
                name: wan_name,
                interface: device,
                mark: id_to_mark(id, mask),
                table: id,
                track,
            },
            method,
            targets,
            target_line: s.line_of("track_ip"),
            reliability,
        });
    }
    if builds.len() > MAX_WANS {
        notes.add(
            NoteKind::Check,
            builds[MAX_WANS].target_line,
            format!("{} WANs; steer takes at most {MAX_WANS}", builds.len()),
            "leave out the WANs no policy needs",
        );
    }
    for b in builds {
        out.wans.push(finish(b, notes));
    }
    by_iface
}

/// The device of mwan3 interface `name`, from the network configuration; else the logical
/// name, reported. A name `steer check` would refuse is reported as well.
fn device(s: &Section, name: &str, opts: &Options, notes: &mut Notes) -> String {
    let device = device_of(s, name, opts, notes);
    if let Some(problem) = crate::config::ifname_problem(&device) {
        notes.add(
            NoteKind::Check,
            s.line,
            format!("interface = \"{device}\": {problem}"),
            "set the WAN's interface to the device `ip link` shows",
        );
    }
    device
}

fn device_of(s: &Section, name: &str, opts: &Options, notes: &mut Notes) -> String {
    let Some(network) = opts.network.as_ref() else {
        notes.add(
            NoteKind::Check,
            s.line,
            format!("interface = \"{name}\" is mwan3's logical name"),
            "steer needs the device (eth1, pppoe-wan): pass --network /etc/config/network or edit it",
        );
        return name.to_owned();
    };
    match network.device(name) {
        Some(d) => d.to_owned(),
        None => {
            notes.add(
                NoteKind::Check,
                s.line,
                format!("the network file has no device for interface `{name}`"),
                "set the WAN's interface to the device `ip link` shows",
            );
            name.to_owned()
        }
    }
}

/// The `[wan.track]` lines of a WAN, once all its interfaces are in.
fn finish(mut b: WanBuild, notes: &mut Notes) -> WanOut {
    if b.targets.is_empty() {
        notes.add(
            NoteKind::Check,
            b.target_line,
            format!(
                "WAN `{}` has no usable track_ip (mwan3 then never takes it down); steer needs probe targets",
                b.out.name
            ),
            "1.1.1.1 and 9.9.9.9 were put in: use addresses this line should reach",
        );
        b.targets = ["1.1.1.1", "9.9.9.9"]
            .iter()
            .map(|t| target_text(t, b.method))
            .collect();
    }
    let mut lines = vec![
        format!("method = \"{}\"", b.method),
        list("targets", &b.targets),
    ];
    if let Some((r, line)) = b.reliability {
        let max = b.targets.len() as u32;
        if r > max {
            notes.add(
                NoteKind::Check,
                line,
                format!("reliability {r} is more than the {max} targets"),
                format!("reliability = {max}"),
            );
        }
        lines.push(format!("reliability = {}", r.clamp(1, max)));
    }
    lines.append(&mut b.out.track);
    b.out.track = lines;
    b.out
}

fn method(s: &Section, notes: &mut Notes) -> &'static str {
    let v = s.value("track_method").unwrap_or("ping");
    let line = s.line_of("track_method");
    match v {
        "ping" | "nping-icmp" => "icmp",
        "httping" => {
            if is_true(s.value("httping_ssl")) {
                notes.add(
                    NoteKind::NotImported,
                    s.line_of("httping_ssl"),
                    "httping_ssl (HTTPS probes)",
                    "steer's http probes are plain HTTP: probe a URL that answers over http",
                );
            }
            "http"
        }
        "nping-tcp" => "tcp",
        other => {
            notes.add(
                NoteKind::NotImported,
                line,
                format!("track_method `{other}`"),
                "steer probes with icmp, tcp, dns or http: icmp was used",
            );
            "icmp"
        }
    }
}

fn target_text(addr: &str, method: &str) -> String {
    let host = if addr.contains(':') {
        format!("[{addr}]")
    } else {
        addr.to_owned()
    };
    match method {
        "http" => format!("http://{host}/"),
        // nping --tcp probes port 80.
        "tcp" => format!("{host}:80"),
        _ => addr.to_owned(),
    }
}

fn targets(s: &Section, method: &str, notes: &mut Notes) -> Vec<String> {
    let mut out = Vec::new();
    for t in s.items("track_ip") {
        match crate::prefix::parse_addr(&t) {
            Ok(a) if crate::prefix::is_unicast(a) => out.push(target_text(&a.to_string(), method)),
            _ => notes.add(
                NoteKind::NotImported,
                s.line_of("track_ip"),
                format!("track_ip `{t}` is not a unicast address"),
                "steer probes addresses, never names (resolving them needs the DNS that may be down)",
            ),
        }
    }
    out
}

/// Seconds as steer's milliseconds, within `lo..=hi`.
fn ms(s: &Section, key: &str, default_s: u32, lo: u32, hi: u32, notes: &mut Notes) -> u32 {
    let Some(v) = s.value(key) else {
        return (default_s * 1000).clamp(lo, hi);
    };
    match v.trim().parse::<u32>() {
        Ok(secs) => {
            let m = secs.saturating_mul(1000);
            if !(lo..=hi).contains(&m) {
                notes.add(
                    NoteKind::Check,
                    s.line_of(key),
                    format!("{key} {secs} s is out of steer's range"),
                    format!("{} ms was used", m.clamp(lo, hi)),
                );
            }
            m.clamp(lo, hi)
        }
        Err(_) => {
            notes.add(
                NoteKind::NotImported,
                s.line_of(key),
                format!("{key} `{v}` is not a number of seconds"),
                format!("mwan3's default {default_s} s was used"),
            );
            (default_s * 1000).clamp(lo, hi)
        }
    }
}

pub(super) fn count(s: &Section, key: &str, default: u32, notes: &mut Notes) -> u32 {
    match s.value(key).map(|v| (v, v.trim().parse::<u32>())) {
        None => default,
        Some((_, Ok(n))) => n,
        Some((v, Err(_))) => {
            notes.add(
                NoteKind::NotImported,
                s.line_of(key),
                format!("{key} `{v}` is not a number"),
                format!("mwan3's default {default} was used"),
            );
            default
        }
    }
}

/// Timing, rounds and quality lines (mwan3track's defaults: interval 10 s, timeout 4 s,
/// down 5, up 5); also the reliability and its line.
fn timing(s: &Section, notes: &mut Notes) -> (Vec<String>, Option<(u32, usize)>) {
    let interval = ms(s, "interval", 10, 10, 3_600_000, notes);
    let timeout = ms(s, "timeout", 4, 1, interval, notes);
    let mut lines = vec![
        format!("interval_ms = {interval}"),
        format!("timeout_ms = {timeout}"),
    ];
    let rounds = |key: &str, default: u32, notes: &mut Notes| {
        let n = count(s, key, default, notes);
        if !(1..=1000).contains(&n) {
            notes.add(
                NoteKind::Check,
                s.line_of(key),
                format!("{key} {n} is out of steer's range 1..=1000"),
                "clamped",
            );
        }
        n.clamp(1, 1000)
    };
    lines.push(format!("down_after = {}", rounds("down", 5, notes)));
    lines.push(format!("up_after = {}", rounds("up", 5, notes)));
    if s.get("failure_interval").is_some() {
        let fi = ms(s, "failure_interval", 5, 10, interval, notes);
        lines.push(format!("failure_interval_ms = {fi}"));
    }
    if is_true(s.value("check_quality")) {
        let lat = count(s, "failure_latency", 1000, notes).clamp(1, timeout);
        let loss = count(s, "failure_loss", 40, notes).min(100);
        let rlat = count(s, "recovery_latency", 500, notes).min(lat);
        let rloss = count(s, "recovery_loss", 10, notes).min(loss);
        lines.push(format!("max_latency_ms = {lat}"));
        lines.push(format!("recover_latency_ms = {rlat}"));
        lines.push(format!("max_loss_percent = {loss}"));
        lines.push(format!("recover_loss_percent = {rloss}"));
        notes.add(
            NoteKind::Check,
            s.line_of("check_quality"),
            "check_quality: mwan3 judges loss per round of `count` pings; steer judges it over the last loss_window (10) rounds",
            "tune loss_window if the line should be judged faster",
        );
    }
    let reliability = s
        .get("reliability")
        .map(|o| (count(s, "reliability", 1, notes), o.line));
    let not_imported: [(&str, &str); 7] = [
        (
            "recovery_interval",
            "steer probes a down WAN every interval_ms",
        ),
        (
            "keep_failure_interval",
            "steer goes back to interval_ms once a failure is decided",
        ),
        ("size", "steer's ICMP probes have a fixed size"),
        ("max_ttl", "steer's probes use the system's TTL"),
        (
            "initial_state",
            "steer starts every WAN up and lets the probes decide",
        ),
        (
            "flush_conntrack",
            "steer flushes exactly the connections of a WAN that goes down (and, with failback = \"move\", those moved when it comes back)",
        ),
        ("", ""),
    ];
    for (key, hint) in not_imported.iter().filter(|(k, _)| !k.is_empty()) {
        if s.get(key).is_some() {
            notes.add(
                NoteKind::NotImported,
                s.line_of(key),
                (*key).to_owned(),
                *hint,
            );
        }
    }
    if count(s, "count", 1, notes) != 1 {
        notes.add(
            NoteKind::NotImported,
            s.line_of("count"),
            "count (pings per target and round)",
            "steer sends one probe per target and round: list more targets and raise reliability, or lower interval_ms",
        );
    }
    (lines, reliability)
}
