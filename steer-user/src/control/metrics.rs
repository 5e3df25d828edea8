//! Prometheus metrics (`[control] metrics = "ADDR:PORT"`): a minimal HTTP endpoint serving
//! `GET /metrics` in the text exposition format. The numbers are the ones `steer status` shows:
//! the controller's status document, asked for through the same channel as the control socket
//! and rendered at most once per [`FRESH`] (scrapes in between get that snapshot). Slots are
//! few and a client that connects and sends nothing loses its slot to the next one.

mod dns;

use std::{
    collections::VecDeque,
    io::ErrorKind,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Mutex, mpsc},
    task::AbortHandle,
    time::Instant,
};

use super::{Call, ControlError, PeerCred, Request, server::ask};
use crate::status::{Status, WanState};

/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// A client must send its request head within this; one that does not loses its slot.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Answering (asking the controller and writing) takes at most this.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes served at once; a scraper is one Prometheus, so a few is plenty.
const MAX_SCRAPES: usize = 8;
/// A rendered answer is served again for this long: a hundred scrapes a second cost the
/// controller one status a second.
const FRESH: Duration = Duration::from_secs(1);

/// Binds `addr` and serves scrapes until the returned task is aborted.
pub async fn serve(
    addr: SocketAddr,
    calls: mpsc::Sender<Call>,
) -> Result<tokio::task::JoinHandle<()>, ControlError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ControlError::Io {
            op: "bind the metrics listener",
            path: addr.to_string().into(),
            source,
        })?;
    if addr.ip().is_loopback() {
        log::info!("metrics: serving http://{addr}/metrics");
    } else {
        log::warn!(
            "metrics: serving http://{addr}/metrics to every host that reaches {addr} \
             (metrics_public = true): firewall the port"
        );
    }
    Ok(tokio::spawn(accept_loop(listener, calls)))
}

/// A connection being served: whether its request head is in (then it is being answered, which
/// is bounded by [`TIMEOUT`]), and the task to abort to free its slot.
struct Slot {
    asked: Arc<AtomicBool>,
    task: AbortHandle,
}

/// The last rendered answer and when it was made.
type Snapshot = Arc<Mutex<Option<(Instant, String)>>>;

async fn accept_loop(listener: TcpListener, calls: mpsc::Sender<Call>) {
    let mut slots: VecDeque<Slot> = VecDeque::new();
    let snapshot: Snapshot = Arc::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                log::warn!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        slots.retain(|s| !s.task.is_finished());
        if slots.len() >= MAX_SCRAPES && !evict_idle(&mut slots) {
            // Every slot is answering a real request: this one waits for the next scrape.
            continue;
        }
        let asked = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(answer(
            stream,
            calls.clone(),
            asked.clone(),
            snapshot.clone(),
        ));
        slots.push_back(Slot {
            asked,
            task: task.abort_handle(),
        });
    }
}

/// Frees the slot of the oldest connection that has not sent its request yet: clients that
/// connect and say nothing cannot keep a scraper out. Returns whether one was freed.
fn evict_idle(slots: &mut VecDeque<Slot>) -> bool {
    let Some(i) = slots.iter().position(|s| !s.asked.load(Ordering::Relaxed)) else {
        return false;
    };
    if let Some(slot) = slots.remove(i) {
        slot.task.abort();
        log::debug!("metrics: dropped a client that sent no request, for a new one");
    }
    true
}

async fn answer(
    mut stream: TcpStream,
    calls: mpsc::Sender<Call>,
    asked: Arc<AtomicBool>,
    snapshot: Snapshot,
) {
    let Ok(head) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await else {
        log::debug!("metrics: a client sent no request within {HEAD_TIMEOUT:?}");
        return;
    };
    asked.store(true, Ordering::Relaxed);
    let respond = async {
        let line = String::from_utf8_lossy(&head);
        let response = if line.starts_with("GET /metrics ") || line.starts_with("GET /metrics?") {
            match rendered(&calls, &snapshot).await {
                Some(body) => http(200, "text/plain; version=0.0.4", &body),
                None => http(503, "text/plain", "the controller did not answer\n"),
            }
        } else {
            http(404, "text/plain", "only GET /metrics is served here\n")
        };
        let _ = stream.write_all(response.as_bytes()).await;
    };
    if tokio::time::timeout(TIMEOUT, respond).await.is_err() {
        log::debug!("metrics: slow client dropped");
    }
}

async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    head
}

/// The metrics text: the snapshot when it is fresh, else a new one from the controller's
/// status. Scrapes that come together wait for one status instead of asking one each.
async fn rendered(calls: &mpsc::Sender<Call>, snapshot: &Snapshot) -> Option<String> {
    let mut cached = snapshot.lock().await;
    if let Some((at, body)) = cached.as_ref()
        && at.elapsed() < FRESH
    {
        return Some(body.clone());
    }
    let body = render(&status(calls).await?);
    *cached = Some((Instant::now(), body.clone()));
    Some(body)
}

async fn status(calls: &mpsc::Sender<Call>) -> Option<Status> {
    let deadline = Instant::now() + TIMEOUT;
    let response = ask(calls, Request::Status, PeerCred::own(), None, deadline)
        .await
        .ok()?
        .into_response()
        .ok()?;
    if !response.ok {
        return None;
    }
    serde_json::from_value(response.body).ok()
}

fn http(code: u16, kind: &str, body: &str) -> String {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The status document in the Prometheus text format.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in samples {
            out.push_str(&format!("{name}{labels} {value}\n"));
        }
    };
    let label = |k: &str, v: &str| format!("{{{k}=\"{}\"}}", escape(v));
    let per_wan = |value: &dyn Fn(&crate::status::WanStatus) -> String| {
        s.wans
            .iter()
            .map(|w| (label("wan", &w.name), value(w)))
            .collect::<Vec<_>>()
    };
    let per_set = |value: &dyn Fn(&crate::status::SetStatus) -> String| {
        s.sets
            .iter()
            .map(|r| (label("set", &r.name), value(r)))
            .collect::<Vec<_>>()
    };
    family(
        "steer_wan_up",
        "gauge",
        "1 when the WAN is up for every address family it has a gateway for, 0 when down or partial (see steer_wan_family_up).",
        per_wan(&|w| u8::from(w.state == WanState::Up).to_string()),
    );
    family(
        "steer_wan_family_up",
        "gauge",
        "Whether the WAN carries the address family's traffic (1) or not (0): down, or waiting for a gateway.",
        s.wans
            .iter()
            .flat_map(|w| {
                w.families.iter().map(|f| {
                    let labels = format!(
                        "{{wan=\"{}\",family=\"{}\"}}",
                        escape(&w.name),
                        f.family.to_lowercase()
                    );
                    (labels, u8::from(f.state == WanState::Up).to_string())
                })
            })
            .collect(),
    );
    family(
        "steer_wan_carrier",
        "gauge",
        "Whether the WAN's interface has carrier (1) or not, or is missing (0).",
        per_wan(&|w| u8::from(w.carrier).to_string()),
    );
    family(
        "steer_wan_transitions_total",
        "counter",
        "Health state changes of the WAN's address family since the daemon started, by the state it went to (to=\"up\"|\"down\").",
        s.wans
            .iter()
            .flat_map(|w| {
                w.families.iter().flat_map(|f| {
                    let family = f.family.to_lowercase();
                    [("up", f.went_up), ("down", f.went_down)].map(|(to, n)| {
                        (
                            format!(
                                "{{wan=\"{}\",family=\"{family}\",to=\"{to}\"}}",
                                escape(&w.name)
                            ),
                            n.to_string(),
                        )
                    })
                })
            })
            .collect(),
    );
    let per_probed = |value: &dyn Fn(&crate::status::ProbeStatus) -> Vec<(String, String)>| {
        s.wans
            .iter()
            .flat_map(|w| {
                w.families.iter().flat_map(move |f| {
                    let base = format!(
                        "wan=\"{}\",family=\"{}\"",
                        escape(&w.name),
                        f.family.to_lowercase()
                    );
                    f.probes
                        .iter()
                        .flat_map(value)
                        .map(move |(extra, v)| (format!("{{{base}{extra}}}"), v))
                        .collect::<Vec<_>>()
                })
            })
            .collect::<Vec<_>>()
    };
    family(
        "steer_probe_packets_total",
        "counter",
        "Probe packets the WAN family's probes put on the wire (estimated per method, IP headers included), by direction (out|in).",
        per_probed(&|p| {
            vec![
                (",direction=\"out\"".into(), p.packets_out.to_string()),
                (",direction=\"in\"".into(), p.packets_in.to_string()),
            ]
        }),
    );
    family(
        "steer_probe_bytes_total",
        "counter",
        "Probe bytes on the wire (estimated per method, IP headers included), by direction (out|in).",
        per_probed(&|p| {
            vec![
                (",direction=\"out\"".into(), p.bytes_out.to_string()),
                (",direction=\"in\"".into(), p.bytes_in.to_string()),
            ]
        }),
    );
    family(
        "steer_probe_rounds_total",
        "counter",
        "Probe rounds finished for the WAN family.",
        per_probed(&|p| vec![(String::new(), p.rounds.to_string())]),
    );
    family(
        "steer_probe_interval_seconds",
        "gauge",
        "Time between probe rounds at the pace of now (fast while confirming a failure, quiet while traffic proves the line).",
        per_probed(&|p| vec![(String::new(), (p.interval_ms as f64 / 1e3).to_string())]),
    );
    family(
        "steer_probe_bytes_per_day",
        "gauge",
        "Probe bytes a day at the pace of now, every probe answered.",
        per_probed(&|p| vec![(String::new(), p.bytes_per_day.to_string())]),
    );
    family(
        "steer_wan_suspect",
        "gauge",
        "1 while the WAN family's traffic went unanswered for the passive window (its probes go fast to confirm), else 0.",
        per_probed(&|p| vec![(String::new(), u8::from(p.suspect.is_some()).to_string())]),
    );
    family(
        "steer_wan_detections_total",
        "counter",
        "Changes of the WAN family to down, by what found them (path=\"probes\"|\"passive\"|\"carrier\"|\"event\").",
        s.wans
            .iter()
            .flat_map(|w| {
                w.families.iter().flat_map(|f| {
                    let family = f.family.to_lowercase();
                    ["probes", "passive", "carrier", "event"].map(|path| {
                        (
                            format!(
                                "{{wan=\"{}\",family=\"{family}\",path=\"{path}\"}}",
                                escape(&w.name)
                            ),
                            f.detected_by.get(path).copied().unwrap_or(0).to_string(),
                        )
                    })
                })
            })
            .collect(),
    );
    family(
        "steer_wan_packets_total",
        "counter",
        "Packets the classifier gave the WAN (a connection held to another WAN by steer's nftables table is counted where the classifier sent it).",
        per_wan(&|w| w.packets.to_string()),
    );
    family(
        "steer_wan_bytes_total",
        "counter",
        "Bytes steered to the WAN.",
        per_wan(&|w| w.bytes.to_string()),
    );
    if let Some(v6) = &s.ipv6 {
        family(
            "steer_foreign_source_drops_total",
            "counter",
            "IPv6 packets dropped on their way out of the WAN because their source is not one the WAN carries ([ipv6]).",
            v6.wans
                .iter()
                .filter_map(|w| {
                    let n = w.foreign_dropped?;
                    Some((format!("{{wan=\"{}\"}}", escape(&w.wan)), n.to_string()))
                })
                .collect(),
        );
    }
    family(
        "steer_set_packets_total",
        "counter",
        "Packets that matched the set (the default rule: set=\"default\").",
        per_set(&|r| r.packets.to_string()),
    );
    family(
        "steer_set_bytes_total",
        "counter",
        "Bytes that matched the set.",
        per_set(&|r| r.bytes.to_string()),
    );
    family(
        "steer_set_prefixes",
        "gauge",
        "Prefixes of the set in the kernel.",
        per_set(&|r| r.prefixes.to_string()),
    );
    family(
        "steer_set_runtime_entries",
        "gauge",
        "Prefixes of the set added at runtime (steer set), included in steer_set_prefixes.",
        per_set(&|r| r.runtime.to_string()),
    );
    family(
        "steer_policy_generation",
        "gauge",
        "The live generation of the policy table.",
        vec![(String::new(), s.generation.unwrap_or(0).to_string())],
    );
    family(
        "steer_routing_in_sync",
        "gauge",
        "Whether the routing rules and tables are as desired.",
        vec![(String::new(), u8::from(s.routing.in_sync).to_string())],
    );
    family(
        "steer_policy_in_sync",
        "gauge",
        "Whether the policy table in the kernel follows the WAN states (0 while a failed write is retried).",
        vec![(String::new(), u8::from(s.policy_in_sync).to_string())],
    );
    histogram(
        &mut out,
        "steer_failover_detection_seconds",
        "From the first sign of a WAN fault (or recovery) to the decision, for changes probes found; a carrier event or a command is its own detection and is not counted here.",
        &s.failover_times.detection,
    );
    histogram(
        &mut out,
        "steer_failover_switch_seconds",
        "From the decision on a WAN state change to the flipped policy generation.",
        &s.failover_times.switch,
    );
    if let Some(d) = &s.dns {
        dns::render(d, &mut out);
    }
    out.push_str(&crate::vrrp::metrics::render(&s.vrrp));
    out
}

/// One histogram family (`_bucket` with cumulative counts, `_sum`, `_count`) in seconds.
fn histogram(out: &mut String, name: &str, help: &str, h: &crate::status::Histogram) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
    let mut cumulative = 0;
    for (i, c) in h.counts.iter().enumerate() {
        cumulative += c;
        let le = h
            .bounds_us
            .get(i)
            .map_or("+Inf".to_owned(), |us| format!("{}", *us as f64 / 1e6));
        out.push_str(&format!("{name}_bucket{{le=\"{le}\"}} {cumulative}\n"));
    }
    out.push_str(&format!("{name}_sum {}\n", h.sum_us as f64 / 1e6));
    out.push_str(&format!("{name}_count {}\n", h.count));
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_foreign_source_guards_are_counted_per_wan() {
        let mut s: Status = serde_json::from_value(serde_json::json!({
            "config": "/etc/steer/steer.toml", "pin_dir": "/sys/fs/bpf/steer", "uptime_s": 1,
            "generation": 1, "adopted": false, "policy_in_sync": true, "lan": [], "wans": [],
            "policies": [], "sets": [], "routing": { "items": [], "in_sync": true },
            "last_failover": null, "last_apply": null,
        }))
        .expect("a status document");
        assert!(!render(&s).contains("steer_foreign_source_drops_total"));
        let wan = |name: &str, dropped| crate::status::WanSourceStatus {
            wan: name.into(),
            prefix6: None,
            origin: "configured".into(),
            translation: String::new(),
            foreign_dropped: dropped,
        };
        s.ipv6 = Some(crate::status::Ipv6Status {
            mode: "npt".into(),
            lan_prefix: Some("fd10::/64".into()),
            wans: vec![wan("wan1", Some(4)), wan("wan2", None)],
            counters_error: None,
        });
        let text = render(&s);
        assert!(
            text.contains("# TYPE steer_foreign_source_drops_total counter"),
            "{text}"
        );
        assert!(
            text.contains("steer_foreign_source_drops_total{wan=\"wan1\"} 4"),
            "{text}"
        );
        assert!(!text.contains("{wan=\"wan2\"} "), "{text}");
    }

    #[test]
    fn renders_prometheus_text() {
        let s: Status = serde_json::from_value(serde_json::json!({
            "config": "/etc/steer/steer.toml", "pin_dir": "/sys/fs/bpf/steer", "uptime_s": 1,
            "generation": 1, "adopted": false, "policy_in_sync": true, "lan": [],
            "wans": [
                { "name": "wan1", "interface": "eth1", "mark": "0x100", "table": 101, "state": "up",
                  "detail": "", "carrier": true, "packets": 5, "bytes": 300,
                  "families": [
                    { "family": "IPv4", "state": "up", "detail": "", "went_up": 0, "went_down": 2 },
                    { "family": "IPv6", "state": "down", "detail": "" } ] },
                { "name": "wan2", "interface": "eth2", "mark": "0x200", "table": 102, "state": "down",
                  "detail": "", "carrier": false, "packets": 0, "bytes": 0 },
            ],
            "policies": [],
            "sets": [{ "name": "by\"pass", "rule": 1, "match": "dst", "policy": "p", "packets": 2, "bytes": 80, "prefixes": 3 }],
            "routing": { "items": [], "in_sync": true },
            "last_failover": null, "last_apply": null,
        }))
        .expect("a status document");
        let mut s = s;
        s.failover_times.record(
            Some(std::time::Duration::from_millis(300)),
            std::time::Duration::from_micros(400),
        );
        s.failover_times
            .record(None, std::time::Duration::from_micros(30));
        let text = render(&s);
        for line in [
            "steer_wan_up{wan=\"wan1\"} 1",
            "steer_wan_up{wan=\"wan2\"} 0",
            "steer_wan_family_up{wan=\"wan1\",family=\"ipv4\"} 1",
            "steer_wan_family_up{wan=\"wan1\",family=\"ipv6\"} 0",
            "steer_wan_bytes_total{wan=\"wan1\"} 300",
            "steer_set_prefixes{set=\"by\\\"pass\"} 3",
            "steer_policy_generation 1",
            "steer_routing_in_sync 1",
            "# TYPE steer_wan_packets_total counter",
            "steer_wan_carrier{wan=\"wan2\"} 0",
            "steer_wan_transitions_total{wan=\"wan1\",family=\"ipv4\",to=\"down\"} 2",
            "steer_wan_transitions_total{wan=\"wan1\",family=\"ipv6\",to=\"up\"} 0",
            "steer_policy_in_sync 1",
            "# TYPE steer_failover_detection_seconds histogram",
            "steer_failover_detection_seconds_bucket{le=\"0.25\"} 0",
            "steer_failover_detection_seconds_bucket{le=\"0.5\"} 1",
            "steer_failover_detection_seconds_bucket{le=\"+Inf\"} 1",
            "steer_failover_detection_seconds_sum 0.3",
            "steer_failover_detection_seconds_count 1",
            "steer_failover_switch_seconds_bucket{le=\"0.00005\"} 1",
            "steer_failover_switch_seconds_bucket{le=\"0.0005\"} 2",
            "steer_failover_switch_seconds_count 2",
        ] {
            assert!(text.contains(line), "missing `{line}` in\n{text}");
        }
    }
}
