//! `[wan.track]`: how a WAN's health is probed and judged — its keys, their raw form and their
//! checks. Probe targets themselves are parsed by the `targets` module.

use std::ops::RangeInclusive;

use serde::Deserialize;

use super::{
    Pacing, ProbeTarget, StatusCodes, TcpRefused, Track, TrackMethod, Written,
    check::{self, Bounds, Choices},
    diag::Ctx,
    names::normalize_domain,
    schema::{
        Field, IntOrStr, IntsOrStrs,
        Kind::{Bool, Int, IntOrStrList, Str, StrList, Table},
        S, Strings, opt, opt_int, req,
    },
    targets::{TargetOptions, parse_target, target_example},
};

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawTrack {
    pub method: Option<S<String>>,
    pub targets: Option<Strings>,
    pub query: Option<S<String>>,
    pub host: Option<S<String>>,
    pub tcp_refused: Option<S<String>>,
    pub http_status: Option<IntsOrStrs>,
    pub interval_ms: Option<S<i64>>,
    pub timeout_ms: Option<S<i64>>,
    pub reliability: Option<S<i64>>,
    pub down_after: Option<S<i64>>,
    pub up_after: Option<S<i64>>,
    pub max_latency_ms: Option<S<i64>>,
    pub max_loss_percent: Option<S<i64>>,
    pub recover_latency_ms: Option<S<i64>>,
    pub recover_loss_percent: Option<S<i64>>,
    pub loss_window: Option<S<i64>>,
    pub failure_interval_ms: Option<S<i64>>,
    pub quiet_interval_ms: Option<S<i64>>,
    pub passive: Option<S<bool>>,
    pub passive_window_ms: Option<S<i64>>,
}

/// The `track` key of a WAN.
pub(super) const FIELD: Field = req(
    "track",
    Table(FIELDS),
    "[wan.track] with targets = [\"1.1.1.1\", \"9.9.9.9\"]",
)
.when_missing(
    "this WAN has no health tracking",
    "add ",
    " after the WAN's keys",
);

const FIELDS: &[Field] = &[
    opt("method", Str, "method = \"icmp\""),
    req("targets", StrList, "targets = [\"1.1.1.1\", \"9.9.9.9\"]"),
    opt("query", Str, "query = \"example.com\""),
    opt("host", Str, "host = \"example.com\""),
    opt("tcp_refused", Str, "tcp_refused = \"pass\""),
    opt("http_status", IntOrStrList, "http_status = [200, 204]"),
    opt_int("interval_ms", Track::DEFAULT_INTERVAL_MS),
    opt_int("timeout_ms", Track::DEFAULT_TIMEOUT_MS),
    opt_int("reliability", Track::DEFAULT_RELIABILITY),
    opt_int("down_after", Track::DEFAULT_DOWN_AFTER),
    opt_int("up_after", Track::DEFAULT_UP_AFTER),
    opt("max_latency_ms", Int, "max_latency_ms = 300"),
    opt("max_loss_percent", Int, "max_loss_percent = 20"),
    opt("recover_latency_ms", Int, "recover_latency_ms = 200"),
    opt("recover_loss_percent", Int, "recover_loss_percent = 5"),
    opt_int("loss_window", Track::DEFAULT_LOSS_WINDOW),
    opt("failure_interval_ms", Int, "failure_interval_ms = 100"),
    opt_int("quiet_interval_ms", Pacing::DEFAULT_QUIET_INTERVAL_MS),
    opt("passive", Bool, "passive = false"),
    opt_int("passive_window_ms", Pacing::DEFAULT_PASSIVE_WINDOW_MS),
];

const METHODS: Choices<TrackMethod> = Choices {
    what: "tracking method",
    words: &[
        ("icmp", TrackMethod::Icmp),
        ("tcp", TrackMethod::Tcp),
        ("dns", TrackMethod::Dns),
        ("http", TrackMethod::Http),
    ],
};

const REFUSED: Choices<TcpRefused> = Choices {
    what: "answer to a refused connection",
    words: &[("fail", TcpRefused::Fail), ("pass", TcpRefused::Pass)],
};

const INTERVAL: Bounds = Bounds {
    lo: 10,
    hi: 3_600_000,
    unit: "ms",
};
const PASSIVE_WINDOW: Bounds = Bounds {
    lo: 1,
    hi: 60_000,
    unit: "ms",
};
const ROUNDS: Bounds = Bounds {
    lo: 1,
    hi: 1000,
    unit: "rounds",
};
const PERCENT: Bounds = Bounds {
    lo: 0,
    hi: 100,
    unit: "%",
};

/// The tracking of the WAN at `label` (`wan[wan1].track`); a missing table (reported by the
/// schema walk) stands in with every key at its default.
pub(super) fn build(cx: &mut Ctx<'_>, raw: Option<S<RawTrack>>, label: &str) -> Track {
    let Some(t) = raw else {
        return placeholder();
    };
    let t = t.into_inner();
    let f = |k: &str| format!("{label}.{k}");
    let method = check::choice(cx, &t.method, &f("method"), &METHODS, Track::DEFAULT_METHOD);
    let query = query(cx, &t.query, &f("query"), method);
    let host = host(cx, &t.host, &f("host"), method);
    let tcp_refused = tcp_refused(cx, &t.tcp_refused, &f("tcp_refused"), method);
    let http_status = http_status(cx, &t.http_status, &f("http_status"), method);
    let options = TargetOptions {
        query: &query,
        host: host.as_deref(),
        tcp_refused,
        http_status: &http_status,
    };
    let (targets, target_places) = targets(cx, &t.targets, label, method, &options);
    let interval_ms = check::opt_ranged(
        cx,
        &t.interval_ms,
        &f("interval_ms"),
        INTERVAL,
        Track::DEFAULT_INTERVAL_MS,
    );
    let timeout_ms = timeout(cx, &t, label, interval_ms);
    let reliability = reliability(cx, &t, &f("reliability"));
    let mut rounds = |v: &Option<S<i64>>, key: &str, default: u32| {
        check::opt_ranged(cx, v, &f(key), ROUNDS, default)
    };
    let down_after = rounds(&t.down_after, "down_after", Track::DEFAULT_DOWN_AFTER);
    let up_after = rounds(&t.up_after, "up_after", Track::DEFAULT_UP_AFTER);
    let loss_window = rounds(&t.loss_window, "loss_window", Track::DEFAULT_LOSS_WINDOW);
    let Thresholds {
        max_latency_ms,
        max_loss_percent,
        recover_latency_ms,
        recover_loss_percent,
    } = thresholds(cx, &t, label, timeout_ms);
    let pace = pacing(cx, &t, label, interval_ms);
    Track {
        method,
        targets,
        target_places,
        interval_ms,
        timeout_ms,
        reliability,
        down_after,
        up_after,
        max_latency_ms,
        max_loss_percent,
        recover_latency_ms,
        recover_loss_percent,
        loss_window,
        pace,
    }
}

/// Stands in for a missing `[wan.track]` (already reported): every key at its default.
fn placeholder() -> Track {
    Track {
        method: Track::DEFAULT_METHOD,
        targets: Vec::new(),
        target_places: Vec::new(),
        interval_ms: Track::DEFAULT_INTERVAL_MS,
        timeout_ms: Track::DEFAULT_TIMEOUT_MS,
        reliability: Track::DEFAULT_RELIABILITY,
        down_after: Track::DEFAULT_DOWN_AFTER,
        up_after: Track::DEFAULT_UP_AFTER,
        max_latency_ms: None,
        max_loss_percent: None,
        recover_latency_ms: None,
        recover_loss_percent: None,
        loss_window: Track::DEFAULT_LOSS_WINDOW,
        pace: Pacing::defaults(Track::DEFAULT_INTERVAL_MS),
    }
}

/// Whether `key`, written as `v`, applies to `method` (only to `needs`); reports when not.
fn applies(
    cx: &mut Ctx<'_>,
    v: &S<String>,
    field: &str,
    needs: TrackMethod,
    method: TrackMethod,
) -> bool {
    if method == needs {
        return true;
    }
    let key = field.rsplit('.').next().unwrap_or(field);
    let needs = needs.as_str();
    cx.err(
        &v.span(),
        field,
        format!(
            "`{key}` only applies to method = \"{needs}\" (this WAN uses \"{}\")",
            method.as_str()
        ),
        format!("remove it, or set method = \"{needs}\""),
    );
    false
}

/// The name dns probes ask for: `.` (the root) unless written.
fn query(cx: &mut Ctx<'_>, query: &Option<S<String>>, field: &str, method: TrackMethod) -> String {
    let Some(q) = query else {
        return ".".to_owned();
    };
    if !applies(cx, q, field, TrackMethod::Dns, method) {
        return String::new();
    }
    if q.get_ref() == "." {
        return ".".to_owned();
    }
    normalize_domain(q.get_ref()).unwrap_or_else(|(m, h)| {
        cx.err(&q.span(), field, m, h);
        String::new()
    })
}

/// The Host header of http probes, when written.
fn host(
    cx: &mut Ctx<'_>,
    host: &Option<S<String>>,
    field: &str,
    method: TrackMethod,
) -> Option<String> {
    let h = host.as_ref()?;
    if !applies(cx, h, field, TrackMethod::Http, method) {
        return None;
    }
    let s = h.get_ref();
    if s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        cx.err(
            &h.span(),
            field,
            "not a valid HTTP Host header value",
            "write a host name such as example.com (optionally with :port)",
        );
    }
    Some(s.clone())
}

/// What a refused connection counts as for tcp probes: a failure unless written.
fn tcp_refused(
    cx: &mut Ctx<'_>,
    v: &Option<S<String>>,
    field: &str,
    method: TrackMethod,
) -> TcpRefused {
    match v {
        Some(w) if applies(cx, w, field, TrackMethod::Tcp, method) => {
            check::choice(cx, v, field, &REFUSED, Track::DEFAULT_TCP_REFUSED)
        }
        _ => Track::DEFAULT_TCP_REFUSED,
    }
}

/// The status codes that pass http probes: success (2xx) unless written.
fn http_status(
    cx: &mut Ctx<'_>,
    v: &Option<IntsOrStrs>,
    field: &str,
    method: TrackMethod,
) -> StatusCodes {
    let Some(list) = v else {
        return StatusCodes::default();
    };
    if method != TrackMethod::Http {
        let written = S::new(list.span(), String::new());
        applies(cx, &written, field, TrackMethod::Http, method);
        return StatusCodes::default();
    }
    let mut ranges: Vec<RangeInclusive<u16>> = Vec::new();
    for (i, item) in list.get_ref().iter().enumerate() {
        let item_field = format!("{field}[{i}]");
        if cx.mistyped(&item_field) {
            continue;
        }
        let range = match status_range(item.get_ref()) {
            Ok(r) => r,
            Err((m, h)) => {
                cx.err(&item.span(), &item_field, m, h);
                continue;
            }
        };
        match ranges.iter().position(|r| overlap(r, &range)) {
            Some(j) => cx.err(
                &item.span(),
                &item_field,
                format!(
                    "{} is already accepted by http_status[{j}] ({})",
                    range_text(&range),
                    range_text(&ranges[j])
                ),
                "list each status code once",
            ),
            None => ranges.push(range),
        }
    }
    StatusCodes::new(ranges).unwrap_or_else(|| {
        if list.get_ref().is_empty() {
            cx.err(
                &list.span(),
                field,
                "no status code is listed, so every http probe would fail",
                "list the codes that mean the server was reached, e.g. http_status = [200, 204], or leave the key out for any 2xx",
            );
        }
        StatusCodes::default()
    })
}

/// One item of `http_status`: a code (`204`, `"204"`) or an inclusive range (`"200-299"`).
/// Errors are `(message, hint)`.
fn status_range(item: &IntOrStr) -> Result<RangeInclusive<u16>, (String, String)> {
    let hint = || "write a code such as 204, or a range such as \"200-299\"".to_owned();
    let range = match item {
        IntOrStr::Int(n) => {
            let code = status_code(*n).ok_or_else(|| not_a_status(&n.to_string()))?;
            code..=code
        }
        IntOrStr::Str(s) => {
            let s = s.trim();
            if let Some(hundreds) = s.strip_suffix("xx").filter(|h| h.len() == 1) {
                return Err((
                    format!("`{s}` is not a range steer reads"),
                    format!("write \"{hundreds}00-{hundreds}99\""),
                ));
            }
            let (lo, hi) = s.split_once('-').unwrap_or((s, s));
            let code = |t: &str| {
                decimal(t.trim()).and_then(status_code).ok_or_else(|| {
                    (
                        format!("`{s}` is not a status code or a range of them"),
                        hint(),
                    )
                })
            };
            let (lo, hi) = (code(lo)?, code(hi)?);
            if lo > hi {
                return Err((
                    format!("the range `{s}` runs backwards"),
                    format!("write the lower code first: \"{hi}-{lo}\""),
                ));
            }
            lo..=hi
        }
    };
    Ok(range)
}

/// A plain decimal number (digits only, no sign).
fn decimal(t: &str) -> Option<i64> {
    if t.is_empty() || t.len() > 9 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// `n` as an HTTP status code, if it is one.
fn status_code(n: i64) -> Option<u16> {
    u16::try_from(n)
        .ok()
        .filter(|c| StatusCodes::VALID.contains(c))
}

fn not_a_status(written: &str) -> (String, String) {
    let (lo, hi) = (StatusCodes::VALID.start(), StatusCodes::VALID.end());
    (
        format!("{written} is not an HTTP status code: they run from {lo} to {hi}"),
        "write a code such as 204, or a range such as \"200-299\"".into(),
    )
}

fn overlap(a: &RangeInclusive<u16>, b: &RangeInclusive<u16>) -> bool {
    a.start() <= b.end() && b.start() <= a.end()
}

/// A range as `http_status` writes it: `204` or `200-299`.
fn range_text(r: &RangeInclusive<u16>) -> String {
    if r.start() == r.end() {
        r.start().to_string()
    } else {
        format!("{}-{}", r.start(), r.end())
    }
}

fn targets(
    cx: &mut Ctx<'_>,
    list: &Option<Strings>,
    label: &str,
    method: TrackMethod,
    options: &TargetOptions<'_>,
) -> (Vec<ProbeTarget>, Vec<Written>) {
    let mut targets = Vec::new();
    let mut places = Vec::new();
    let Some(list) = list else {
        return (targets, places);
    };
    if list.get_ref().is_empty() {
        cx.err(
            &list.span(),
            format!("{label}.targets"),
            "no probe targets are listed",
            target_example(method),
        );
    }
    for (i, v) in list.get_ref().iter().enumerate() {
        let field = format!("{label}.targets[{i}]");
        if cx.mistyped(&field) {
            continue;
        }
        match parse_target(method, v.get_ref(), options) {
            Ok(target) => {
                if let Some(j) = targets.iter().position(|x| *x == target) {
                    cx.err(
                        &v.span(),
                        &field,
                        format!("this target is already listed (targets[{j}])"),
                        "list each target once; use reliability to require several answers",
                    );
                } else {
                    targets.push(target);
                    places.push(Written(Some(cx.src.locate(v.span().start))));
                }
            }
            Err((m, h)) => cx.err(&v.span(), &field, m, h),
        }
    }
    (targets, places)
}

/// `failure_interval_ms` (10..=interval_ms), `quiet_interval_ms` (0: off, else
/// interval_ms..=1 h), `passive` and `passive_window_ms` (1..=60000).
fn pacing(cx: &mut Ctx<'_>, t: &RawTrack, label: &str, interval_ms: u32) -> Pacing {
    let f = |k: &str| format!("{label}.{k}");
    let defaults = Pacing::defaults(interval_ms);
    let failure_interval_ms = match &t.failure_interval_ms {
        Some(v) => check::ranged(
            cx,
            v,
            &f("failure_interval_ms"),
            Bounds {
                lo: INTERVAL.lo,
                hi: i64::from(interval_ms).max(INTERVAL.lo),
                unit: "ms",
            },
            &format!(
                "use a value from {} to interval_ms ({interval_ms}): the fast pace after a \
                 missed probe must not be slower than the normal one",
                INTERVAL.lo
            ),
        )
        .unwrap_or(defaults.failure_interval_ms),
        None => defaults.failure_interval_ms,
    };
    let quiet_interval_ms = match &t.quiet_interval_ms {
        Some(v) if *v.get_ref() == 0 => None,
        Some(v) => Some(
            check::ranged(
                cx,
                v,
                &f("quiet_interval_ms"),
                Bounds {
                    lo: i64::from(interval_ms),
                    hi: INTERVAL.hi,
                    unit: "ms",
                },
                &format!(
                    "use a value from interval_ms ({interval_ms}) to {}, or 0 to keep probes at \
                     interval_ms while traffic flows",
                    INTERVAL.hi
                ),
            )
            .unwrap_or(interval_ms),
        ),
        None => defaults.quiet_interval_ms,
    };
    let passive = t
        .passive
        .as_ref()
        .map_or(defaults.passive, |v| *v.get_ref());
    let passive_window_ms = check::opt_ranged(
        cx,
        &t.passive_window_ms,
        &f("passive_window_ms"),
        PASSIVE_WINDOW,
        defaults.passive_window_ms,
    );
    Pacing {
        failure_interval_ms,
        quiet_interval_ms,
        passive,
        passive_window_ms,
    }
}

/// The probe timeout: at most the interval, which is also what stands in for a refused one.
fn timeout(cx: &mut Ctx<'_>, t: &RawTrack, label: &str, interval_ms: u32) -> u32 {
    let f = |k: &str| format!("{label}.{k}");
    match &t.timeout_ms {
        Some(v) => {
            let n = *v.get_ref();
            if (1..=i64::from(interval_ms)).contains(&n) {
                n as u32
            } else {
                cx.err(
                    &v.span(),
                    f("timeout_ms"),
                    format!(
                        "{n} is out of range: it must be from 1 to interval_ms ({interval_ms}) ms"
                    ),
                    "a probe must time out before the next round starts",
                );
                interval_ms
            }
        }
        None if interval_ms < Track::DEFAULT_TIMEOUT_MS && !cx.mistyped(&f("timeout_ms")) => {
            let span = t.interval_ms.as_ref().map_or(0..0, |v| v.span());
            cx.err(
                &span,
                f("interval_ms"),
                format!(
                    "interval_ms {interval_ms} is shorter than the default timeout_ms ({})",
                    Track::DEFAULT_TIMEOUT_MS
                ),
                format!("also set timeout_ms to at most {interval_ms}"),
            );
            interval_ms
        }
        None => Track::DEFAULT_TIMEOUT_MS,
    }
}

fn reliability(cx: &mut Ctx<'_>, t: &RawTrack, field: &str) -> u32 {
    let Some(v) = &t.reliability else {
        return Track::DEFAULT_RELIABILITY;
    };
    let n = *v.get_ref();
    // Count the targets as written: bad ones are reported on their own.
    let written = t.targets.as_ref().map_or(0, |l| l.get_ref().len());
    let max = written.max(1) as i64;
    if (1..=max).contains(&n) || t.targets.is_none() {
        return n as u32;
    }
    cx.err(
        &v.span(),
        field,
        format!("reliability {n} must be from 1 to the number of targets ({written})"),
        "reliability is how many targets must answer for a round to pass",
    );
    Track::DEFAULT_RELIABILITY
}

/// What takes a WAN down (`max_*`) and what brings it back (`recover_*`), beyond rounds.
struct Thresholds {
    max_latency_ms: Option<u32>,
    max_loss_percent: Option<u32>,
    recover_latency_ms: Option<u32>,
    recover_loss_percent: Option<u32>,
}

fn thresholds(cx: &mut Ctx<'_>, t: &RawTrack, label: &str, timeout_ms: u32) -> Thresholds {
    let f = |k: &str| format!("{label}.{k}");
    let latency = Bounds {
        lo: 1,
        hi: i64::from(timeout_ms),
        unit: "ms",
    };
    let max_latency_ms = t.max_latency_ms.as_ref().and_then(|v| {
        check::ranged(
            cx,
            v,
            &f("max_latency_ms"),
            latency,
            "it must be at most timeout_ms, since a slower answer already counts as lost",
        )
    });
    let max_loss_percent = t
        .max_loss_percent
        .as_ref()
        .and_then(|v| check::ranged(cx, v, &f("max_loss_percent"), PERCENT, ""));
    let latency = Limit::new(
        cx,
        label,
        "max_latency_ms",
        &t.max_latency_ms,
        max_latency_ms,
        "ms",
    );
    let loss = Limit::new(
        cx,
        label,
        "max_loss_percent",
        &t.max_loss_percent,
        max_loss_percent,
        "%",
    );
    Thresholds {
        max_latency_ms,
        max_loss_percent,
        recover_latency_ms: recover(cx, &t.recover_latency_ms, &f("recover_latency_ms"), latency),
        recover_loss_percent: recover(
            cx,
            &t.recover_loss_percent,
            &f("recover_loss_percent"),
            loss,
        ),
    }
}

/// A limit that takes a WAN down (`max_*`), as its recovery threshold sees it.
struct Limit {
    key: &'static str,
    /// Written at all (even if refused): a threshold without its limit is reported, one whose
    /// limit was refused is not.
    written: bool,
    value: Option<u32>,
    unit: &'static str,
}

impl Limit {
    /// The limit `key` of the tracking at `label`, written as `raw`, accepted as `value`.
    fn new(
        cx: &Ctx<'_>,
        label: &str,
        key: &'static str,
        raw: &Option<S<i64>>,
        value: Option<u32>,
        unit: &'static str,
    ) -> Self {
        Limit {
            key,
            written: raw.is_some() || cx.mistyped(&format!("{label}.{key}")),
            value,
            unit,
        }
    }
}

/// A recover_* threshold: needs its max_* and must not be looser than it.
fn recover(cx: &mut Ctx<'_>, v: &Option<S<i64>>, field: &str, limit: Limit) -> Option<u32> {
    let v = v.as_ref()?;
    let Limit {
        key,
        written,
        value,
        unit,
    } = limit;
    if !written {
        cx.err(
            &v.span(),
            field,
            format!("this recovery threshold needs `{key}`"),
            format!("set `{key}` (the limit that takes the WAN down) too, or remove this"),
        );
        return None;
    }
    let max = value?;
    let n = *v.get_ref();
    if (0..=i64::from(max)).contains(&n) {
        Some(n as u32)
    } else {
        cx.err(
            &v.span(),
            field,
            format!("{n} is looser than {key} ({max}{unit})"),
            format!(
                "a WAN should come back only when it is at least as good as the limit: use 0 to {max}"
            ),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{
        Pacing, parse,
        testing::{BASE, errors_in},
    };

    fn with_track(keys: &str) -> String {
        BASE.replace(
            "targets = [\"1.1.1.1\"]",
            &format!("targets = [\"1.1.1.1\"]\n{keys}"),
        )
    }

    #[test]
    fn pacing_defaults_follow_the_interval() {
        let config = parse(
            &with_track("interval_ms = 100\ntimeout_ms = 80"),
            Path::new("s"),
        )
        .expect("valid");
        let pace = config.wans[0].track.pace;
        assert_eq!(
            pace,
            Pacing {
                failure_interval_ms: 10,
                quiet_interval_ms: Some(Pacing::DEFAULT_QUIET_INTERVAL_MS),
                passive: true,
                passive_window_ms: Pacing::DEFAULT_PASSIVE_WINDOW_MS,
            }
        );
        let config = parse(
            &with_track(
                "failure_interval_ms = 100\nquiet_interval_ms = 0\npassive = false\n\
                 passive_window_ms = 120",
            ),
            Path::new("s"),
        )
        .expect("valid");
        let pace = config.wans[0].track.pace;
        assert_eq!(
            (
                pace.failure_interval_ms,
                pace.quiet_interval_ms,
                pace.passive,
                pace.passive_window_ms
            ),
            (100, None, false, 120)
        );
    }

    #[test]
    fn pacing_out_of_range_names_the_field_and_the_bound() {
        assert_eq!(
            errors_in(&with_track(
                "interval_ms = 100\ntimeout_ms = 80\nfailure_interval_ms = 200\n\
                 quiet_interval_ms = 50\npassive_window_ms = 0\npassive = \"yes\""
            )),
            [
                "wan[wan1].track.failure_interval_ms: 200 is out of range: it must be from 10 to 100 ms",
                "wan[wan1].track.quiet_interval_ms: 50 is out of range: it must be from 100 to 3600000 ms",
                "wan[wan1].track.passive_window_ms: 0 is out of range: it must be from 1 to 60000 ms",
                "wan[wan1].track.passive: expected true or false (without quotes), found a string",
            ]
        );
    }
}
