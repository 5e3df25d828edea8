//! From text to a valid [`Config`]: syntax, schema, then every value and cross-field rule.
//! Everything is checked before returning; placeholders stand in for bad values so the rest
//! can still be checked, and never leave this module (any diagnostic means `Err`).

use std::{
    collections::{HashMap, HashSet, hash_map},
    net::IpAddr,
    ops::Range,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::Deserialize;
use toml::de::DeTable;

use super::{
    Capacity, Config, Control, DEFAULT_MARK_MASK, DEFAULT_PIN_DIR, DEFAULT_SOCKET, DefaultRule,
    DuplicatePolicy, Endpoints, Entry, General, LastResort, MAX_CAPACITY, Member, Origin, Policy,
    Set, Track, TrackMethod, Wan,
    diag::{ConfigErrors, Ctx, Diagnostic, Place, Source, did_you_mean, list_names, shorten},
    list::parse_list_bytes,
    names::{ifname_problem, name_problem, normalize_domain},
    raw::{RawGeneral, RawPolicy, RawRoot, RawSet, RawTrack, RawWan, S, Strings},
    schema::{self, item_label},
    targets::{parse_socket_addr, parse_target, target_example},
};
use crate::{
    model::Direction,
    prefix::{AddrError, Prefix, is_unicast, parse_addr, parse_prefix},
};

/// Diagnostics reported per list file (and per pair of sets for duplicates) before summarizing.
const REPORT_LIMIT: usize = 50;
/// Individual first-set-wins warnings logged per set before summarizing.
const WARN_LIMIT: usize = 10;

pub(super) fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    check(text, path, Scope::Whole, |builder, raw| builder.build(raw))
}

/// Reads only [`schema::ENDPOINTS`]; the rest of the file is neither checked nor used.
pub(super) fn endpoints(text: &str, path: &Path) -> Result<Endpoints, ConfigErrors> {
    check(text, path, Scope::Endpoints, |mut builder, raw| {
        builder.endpoints(raw)
    })
}

/// How much of the file to read.
#[derive(Clone, Copy)]
enum Scope {
    Whole,
    Endpoints,
}

/// Syntax, then the schema of `scope`, then `build`; any diagnostic means `Err`.
fn check<T>(
    text: &str,
    path: &Path,
    scope: Scope,
    build: impl FnOnce(Builder<'_, '_>, RawRoot) -> T,
) -> Result<T, ConfigErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let src = Source::new(text);
    let mut cx = Ctx::new(&src, path);
    let (mut doc, errors) = DeTable::parse_recoverable(text);
    if let Some(e) = errors.first() {
        // Later syntax errors are mostly echoes of the first one; report only that.
        let span = e.span().unwrap_or(0..0);
        let message = e.message().replace('\n', " ");
        let hint = syntax_hint(&message);
        let at = src.snippet(&span);
        let message = if at.is_empty() {
            format!("invalid TOML: {message}")
        } else {
            format!("invalid TOML at `{at}`: {message}")
        };
        cx.err_value(&span, "", "", message, hint);
        return Err(finish(cx.diags, path));
    }
    let span = doc.span();
    let fields = match scope {
        Scope::Whole => schema::ROOT,
        Scope::Endpoints => {
            schema::retain_known(doc.get_mut(), schema::ENDPOINTS);
            schema::ENDPOINTS
        }
    };
    schema::check_table(&mut cx, doc.get_mut(), &span, fields, "");
    let raw = match RawRoot::deserialize(toml::de::Deserializer::from(doc)) {
        Ok(raw) => raw,
        Err(e) => {
            // The schema walk should have caught this; report it anyway.
            let span = e.span().unwrap_or(0..0);
            cx.err(
                &span,
                "",
                e.message().replace('\n', " "),
                "fix this value's type",
            );
            return Err(finish(cx.diags, path));
        }
    };
    let result = build(Builder::new(&mut cx, path), raw);
    if cx.diags.is_empty() {
        Ok(result)
    } else {
        Err(finish(cx.diags, path))
    }
}

fn syntax_hint(message: &str) -> String {
    if message.contains("must be quoted") {
        "put text values in double quotes, e.g. name = \"wan1\"".into()
    } else if message.contains("duplicate key") {
        "each key may appear only once per table, and each [table] only once; merge or remove the repeated one".into()
    } else if message.contains("unclosed array") {
        "close the list with `]`".into()
    } else if message.contains("unclosed") || message.contains("string") {
        "close the string with the same quote it starts with".into()
    } else {
        "fix the TOML syntax here (nothing else was checked yet)".into()
    }
}

/// Orders diagnostics: the config file first, by position; then list files, by position.
fn finish(mut diags: Vec<Diagnostic>, config_file: &Path) -> ConfigErrors {
    diags.sort_by(|a, b| {
        let ka = (a.file != config_file, &a.file, a.line, a.column);
        let kb = (b.file != config_file, &b.file, b.line, b.column);
        ka.cmp(&kb)
    });
    diags.dedup();
    ConfigErrors { errors: diags }
}

/// Where a prefix of a set came from, to place diagnostics about it (kept small: there is one
/// per entry, and list files can have millions).
#[derive(Clone, Copy)]
enum Written {
    /// `prefixes[i]` (its span is `PendingSet::inline_spans[i]`).
    Inline(u32),
    /// `files[index]`, at this column of its line.
    File { index: u32, column: u32 },
}

/// The names of one kind of object, to check references to them.
struct Defined {
    /// How messages name one: `WAN`, `policy`.
    kind: &'static str,
    plural: &'static str,
    /// Its key in the file: `wan`, `policy`.
    key: &'static str,
    names: Vec<String>,
}

struct PendingSet {
    name: String,
    label: String,
    span: Range<usize>,
    policy: String,
    direction: Direction,
    allow_default_route: bool,
    entries: Vec<(Prefix, Origin, Written)>,
    /// Spans of the `prefixes` strings, by index.
    inline_spans: Vec<Range<usize>>,
    files: Vec<PathBuf>,
    domains: Vec<(String, Range<usize>, usize)>,
}

struct Builder<'c, 'a> {
    cx: &'c mut Ctx<'a>,
    config_file: Arc<Path>,
    base_dir: PathBuf,
}

impl<'c, 'a> Builder<'c, 'a> {
    fn new(cx: &'c mut Ctx<'a>, path: &Path) -> Self {
        let base_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::new(),
        };
        Builder {
            cx,
            config_file: Arc::from(path),
            base_dir,
        }
    }

    fn err(
        &mut self,
        span: &Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.cx.err(span, field, message, hint);
    }

    fn line(&self, span: &Range<usize>) -> usize {
        self.cx.line_of(span.start)
    }

    /// An integer in `lo..=hi`, or `None` after reporting.
    fn ranged(
        &mut self,
        v: &S<i64>,
        field: &str,
        lo: i64,
        hi: i64,
        unit: &str,
        hint: &str,
    ) -> Option<u32> {
        let n = *v.get_ref();
        if (lo..=hi).contains(&n) {
            u32::try_from(n).ok()
        } else {
            let unit = if unit.is_empty() {
                String::new()
            } else {
                format!(" {unit}")
            };
            let hint = if hint.is_empty() {
                format!("use a value from {lo} to {hi}")
            } else {
                hint.to_owned()
            };
            self.err(
                &v.span(),
                field,
                format!("{n} is out of range: it must be from {lo} to {hi}{unit}"),
                hint,
            );
            None
        }
    }

    fn opt_ranged(
        &mut self,
        v: &Option<S<i64>>,
        field: &str,
        default: u32,
        lo: i64,
        hi: i64,
        unit: &str,
    ) -> u32 {
        match v {
            Some(v) => self.ranged(v, field, lo, hi, unit, "").unwrap_or(default),
            None => default,
        }
    }

    /// One of a fixed set of words.
    fn choice<T: Copy>(
        &mut self,
        v: &Option<S<String>>,
        field: &str,
        choices: &[(&'static str, T)],
        default: T,
        what: &str,
    ) -> T {
        let Some(v) = v else { return default };
        let s = v.get_ref().as_str();
        if let Some((_, t)) = choices.iter().find(|(k, _)| *k == s) {
            return *t;
        }
        let words: Vec<&str> = choices.iter().map(|(k, _)| *k).collect();
        let lower = s.to_ascii_lowercase();
        let dym = if words.contains(&lower.as_str()) {
            format!("did you mean `{lower}` (lowercase)? ")
        } else {
            did_you_mean(s, words.iter().copied())
        };
        self.err(
            &v.span(),
            field,
            format!("unknown {what} `{s}`"),
            format!("{dym}use one of {}", list_names(words.iter().copied())),
        );
        default
    }

    fn build(mut self, raw: RawRoot) -> Config {
        let general_span = raw.general.as_ref().map_or(0..0, |g| g.span());
        let (general, mask_ok) = self.general(raw.general.map(|g| g.into_inner()));
        let wans = self.wans(raw.wan, &general, mask_ok);
        let wan_names = Defined {
            kind: "WAN",
            plural: "WANs",
            key: "wan",
            names: wans.iter().map(|w| w.name.clone()).collect(),
        };
        let policies = self.policies(raw.policy, &wan_names);
        let policy_names = Defined {
            kind: "policy",
            plural: "policies",
            key: "policy",
            names: policies.iter().map(|p| p.name.clone()).collect(),
        };
        let sets = self.sets(raw.set, &policy_names, &general, &general_span);
        let default = raw.default.and_then(|d| {
            let d = d.into_inner();
            let p = d.policy?;
            self.reference(&p, "default.policy", &policy_names);
            Some(DefaultRule {
                policy: p.into_inner(),
            })
        });
        let control = self.control(raw.control.map(|c| c.into_inner()));
        Config {
            path: self.config_file.to_path_buf(),
            general,
            wans,
            policies,
            sets,
            default,
            control,
        }
    }

    /// The socket, pin directory and WAN tables of a document cut to [`schema::ENDPOINTS`].
    fn endpoints(&mut self, raw: RawRoot) -> Endpoints {
        let general = raw.general.map(|g| g.into_inner()).unwrap_or_default();
        let pin_dir = self.pin_dir(&general);
        let mut seen = HashMap::new();
        let mut tables = Vec::new();
        let wans = raw.wan.map(|w| w.into_inner()).unwrap_or_default();
        for (i, w) in wans.iter().enumerate() {
            let w = w.get_ref();
            let name = w.name.as_ref().map(|n| n.get_ref().as_str());
            let label = item_label("", "wan", i, name);
            let Some(table) = w.table.as_ref().filter(|_| !self.stand_in(&label)) else {
                continue;
            };
            let table = self.wan_table(
                table,
                &format!("{label}.table"),
                name.unwrap_or_default(),
                &mut seen,
            );
            tables.push(table);
        }
        let control = self.control(raw.control.map(|c| c.into_inner()));
        Endpoints {
            socket: control.socket,
            pin_dir,
            tables,
        }
    }

    /// Reports a reference to an undefined object.
    fn reference(&mut self, v: &S<String>, field: &str, defined: &Defined) {
        let name = v.get_ref().as_str();
        if defined.names.iter().any(|d| d == name) {
            return;
        }
        if self.definition_removed(defined.key) {
            return; // it may be the one written with the wrong type, reported already
        }
        let Defined {
            kind, plural, key, ..
        } = defined;
        let names = || defined.names.iter().map(String::as_str);
        let hint = if defined.names.is_empty() {
            format!("no {plural} are defined; define one with [[{key}]] first")
        } else {
            format!(
                "{}defined {plural}: {}",
                did_you_mean(name, names()),
                list_names(names())
            )
        };
        self.err(
            &v.span(),
            field,
            format!("{kind} `{name}` is not defined"),
            hint,
        );
    }

    /// Whether a definition under `key` (`wan`, `policy`) was removed for its type: the whole
    /// list, one item, or an item's name. Its name is then unknown.
    fn definition_removed(&self, key: &str) -> bool {
        self.cx.removed.iter().any(|path| {
            let Some(rest) = path.strip_prefix(key) else {
                return false;
            };
            let item = rest
                .strip_prefix('[')
                .and_then(|r| r.split_once(']'))
                .map(|(_, after)| after);
            rest.is_empty() || matches!(item, Some("" | ".name"))
        })
    }

    /// Whether the item at `field` was written with the wrong type: the schema walk reported
    /// it and left a stand-in so that the positions of the others hold.
    fn stand_in(&self, field: &str) -> bool {
        self.cx.removed.contains(field)
    }

    /// Checks an object name and its uniqueness among `seen` (name -> line).
    fn object_name(
        &mut self,
        v: &S<String>,
        field: &str,
        kind: &str,
        seen: &mut HashMap<String, usize>,
    ) {
        let name = v.get_ref();
        if let Some(problem) = name_problem(name) {
            self.err(
                &v.span(),
                field,
                format!("invalid {kind} name: {problem}"),
                "use 1 to 47 letters, digits, `_`, `.` or `-`",
            );
        }
        let line = self.line(&v.span());
        match seen.entry(name.clone()) {
            hash_map::Entry::Occupied(o) => {
                let other = *o.get();
                self.err(
                    &v.span(),
                    field,
                    format!("{kind} name `{name}` is already used by the {kind} at line {other}"),
                    format!("give each {kind} its own name"),
                );
            }
            hash_map::Entry::Vacant(e) => {
                e.insert(line);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // [general]
    // -----------------------------------------------------------------------------------------

    /// The general section, and whether mark_mask is usable for the WAN mark checks.
    fn general(&mut self, g: Option<RawGeneral>) -> (General, bool) {
        let g = g.unwrap_or_default();
        let mut lan = Vec::new();
        if let Some(list) = &g.lan {
            if list.get_ref().is_empty() {
                self.err(
                    &list.span(),
                    "general.lan",
                    "no LAN interface is listed",
                    "list the interfaces whose incoming traffic steer should classify, e.g. lan = [\"br-lan\"]",
                );
            }
            let mut seen = HashSet::new();
            for (i, v) in list.get_ref().iter().enumerate() {
                let field = format!("general.lan[{i}]");
                if self.stand_in(&field) {
                    continue;
                }
                if let Some(problem) = ifname_problem(v.get_ref()) {
                    self.err(
                        &v.span(),
                        &field,
                        problem,
                        "use the interface name as `ip link` shows it, e.g. br-lan",
                    );
                } else if !seen.insert(v.get_ref().clone()) {
                    self.err(
                        &v.span(),
                        &field,
                        format!("interface `{}` is listed twice", v.get_ref()),
                        "list each interface once",
                    );
                }
                lan.push(v.get_ref().clone());
            }
        }
        let mut mask_ok = !self.cx.removed.contains("general.mark_mask");
        let mark_mask = match &g.mark_mask {
            None => DEFAULT_MARK_MASK,
            Some(v) => {
                let n = *v.get_ref();
                if n == 0 {
                    self.err(
                        &v.span(),
                        "general.mark_mask",
                        "mark_mask is 0, so steer would own no bits of the packet mark",
                        "set the bits steer may use, e.g. mark_mask = 0xff00",
                    );
                    mask_ok = false;
                    0
                } else if !(1..=i64::from(u32::MAX)).contains(&n) {
                    self.err(
                        &v.span(),
                        "general.mark_mask",
                        "mark_mask must fit in the 32-bit packet mark",
                        "use a value from 0x1 to 0xffffffff, e.g. 0xff00",
                    );
                    mask_ok = false;
                    0
                } else {
                    n as u32
                }
            }
        };
        let pin_dir = self.pin_dir(&g);
        let capacity = self.capacity(&g);
        let duplicates = self.choice(
            &g.duplicates,
            "general.duplicates",
            &[
                ("error", DuplicatePolicy::Error),
                ("first-set-wins", DuplicatePolicy::FirstSetWins),
            ],
            DuplicatePolicy::Error,
            "duplicates policy",
        );
        let general = General {
            lan,
            mark_mask,
            xdp: g.xdp.map(|v| v.into_inner()).unwrap_or(false),
            pin_dir,
            capacity,
            log_packets: g.log_packets.map(|v| v.into_inner()).unwrap_or(false),
            duplicates,
        };
        (general, mask_ok)
    }

    fn pin_dir(&mut self, g: &RawGeneral) -> PathBuf {
        match &g.pin_dir {
            None => PathBuf::from(DEFAULT_PIN_DIR),
            Some(v) => self.absolute(
                v,
                "general.pin_dir",
                &format!("e.g. {DEFAULT_PIN_DIR} (on a bpf filesystem)"),
            ),
        }
    }

    fn capacity(&mut self, g: &RawGeneral) -> Capacity {
        let d = Capacity::default();
        let Some(c) = &g.capacity else { return d };
        let c = c.get_ref();
        let max = i64::from(MAX_CAPACITY);
        Capacity {
            dst_v4: self.opt_ranged(
                &c.dst_v4,
                "general.capacity.dst_v4",
                d.dst_v4,
                1,
                max,
                "entries",
            ),
            dst_v6: self.opt_ranged(
                &c.dst_v6,
                "general.capacity.dst_v6",
                d.dst_v6,
                1,
                max,
                "entries",
            ),
            src_v4: self.opt_ranged(
                &c.src_v4,
                "general.capacity.src_v4",
                d.src_v4,
                1,
                max,
                "entries",
            ),
            src_v6: self.opt_ranged(
                &c.src_v6,
                "general.capacity.src_v6",
                d.src_v6,
                1,
                max,
                "entries",
            ),
        }
    }

    fn absolute(&mut self, v: &S<String>, field: &str, example: &str) -> PathBuf {
        let p = PathBuf::from(v.get_ref());
        if !p.is_absolute() {
            self.err(
                &v.span(),
                field,
                "must be an absolute path",
                format!("write the full path, {example}"),
            );
        }
        p
    }

    // -----------------------------------------------------------------------------------------
    // [[wan]]
    // -----------------------------------------------------------------------------------------

    fn wans(
        &mut self,
        raw: Option<S<Vec<S<RawWan>>>>,
        general: &General,
        mask_ok: bool,
    ) -> Vec<Wan> {
        let Some(raw) = raw else { return Vec::new() };
        let list_span = raw.span();
        let raw = raw.into_inner();
        if raw.is_empty() {
            self.err(
                &list_span,
                "wan",
                "no WAN is defined",
                "add at least one [[wan]] with name, interface, mark, table and [wan.track]",
            );
        }
        let mut names = HashMap::new();
        let mut marks: HashMap<u32, (String, usize)> = HashMap::new();
        let mut tables: HashMap<u32, (String, usize)> = HashMap::new();
        let mut out = Vec::new();
        let mut interfaces: HashMap<String, (String, usize)> = HashMap::new();
        for (i, w) in raw.into_iter().enumerate() {
            let span = w.span();
            let w = w.into_inner();
            let label = item_label("", "wan", i, w.name.as_ref().map(|n| n.get_ref().as_str()));
            let f = |k: &str| format!("{label}.{k}");
            if i == steer_common::MAX_WANS as usize {
                self.err(
                    &span,
                    &label,
                    format!(
                        "too many WANs: steer supports at most {}",
                        steer_common::MAX_WANS
                    ),
                    "remove WANs you do not need",
                );
            }
            if self.stand_in(&label) {
                continue;
            }
            if let Some(n) = &w.name {
                self.object_name(n, &f("name"), "WAN", &mut names);
            }
            let name = w
                .name
                .as_ref()
                .map(|n| n.get_ref().clone())
                .unwrap_or_default();
            if let Some(v) = &w.interface {
                if let Some(problem) = ifname_problem(v.get_ref()) {
                    self.err(
                        &v.span(),
                        f("interface"),
                        problem,
                        "use the interface name as `ip link` shows it, e.g. eth1 or pppoe-wan",
                    );
                } else if general.lan.iter().any(|l| l == v.get_ref()) {
                    self.err(
                        &v.span(),
                        f("interface"),
                        format!("`{}` is also listed in general.lan", v.get_ref()),
                        "a WAN interface carries traffic to the internet; list only LAN-side interfaces in general.lan",
                    );
                } else if let Some((other, line)) = interfaces.get(v.get_ref()) {
                    self.err(
                        &v.span(),
                        f("interface"),
                        format!("`{}` is already the interface of WAN `{other}` (line {line})", v.get_ref()),
                        "each WAN needs its own interface: its carrier and probes tell about that line only",
                    );
                } else {
                    let line = self.line(&v.span());
                    interfaces.insert(v.get_ref().clone(), (name.clone(), line));
                }
            }
            let mark = w.mark.as_ref().map_or(0, |v| {
                self.wan_mark(v, &f("mark"), &name, general.mark_mask, mask_ok, &mut marks)
            });
            let table = w
                .table
                .as_ref()
                .map_or(0, |v| self.wan_table(v, &f("table"), &name, &mut tables));
            let gateway = w.gateway.as_ref().and_then(|v| {
                let a = self.gateway(v, &f("gateway"), true)?;
                match a {
                    IpAddr::V4(a) => Some(a),
                    IpAddr::V6(_) => None,
                }
            });
            let gateway6 = w.gateway6.as_ref().and_then(|v| {
                let a = self.gateway(v, &f("gateway6"), false)?;
                match a {
                    IpAddr::V6(a) => Some(a),
                    IpAddr::V4(_) => None,
                }
            });
            let track = match w.track {
                Some(t) => self.track(t, &format!("{label}.track")),
                None => placeholder_track(),
            };
            out.push(Wan {
                name,
                interface: w.interface.map(|v| v.into_inner()).unwrap_or_default(),
                mark,
                table,
                gateway,
                gateway6,
                track,
            });
        }
        out
    }

    fn wan_mark(
        &mut self,
        v: &S<i64>,
        field: &str,
        name: &str,
        mask: u32,
        mask_ok: bool,
        marks: &mut HashMap<u32, (String, usize)>,
    ) -> u32 {
        let n = *v.get_ref();
        let low = mask & mask.wrapping_neg();
        let examples = if mask_ok && low != 0 {
            let mut e = vec![format!("{low:#x}")];
            if let Some(two) = low.checked_mul(2).filter(|t| t & !mask == 0) {
                e.push(format!("{two:#x}"));
            }
            format!(", such as {}", e.join(" or "))
        } else {
            String::new()
        };
        if n == 0 {
            self.err(
                &v.span(),
                field,
                "mark is 0, which means \"no WAN\"",
                format!("give each WAN its own nonzero mark inside general.mark_mask{examples}"),
            );
            return 0;
        }
        let Ok(mark) = u32::try_from(n) else {
            self.err(
                &v.span(),
                field,
                "marks are 32-bit",
                format!("use a mark inside general.mark_mask{examples}"),
            );
            return 0;
        };
        if mask_ok && mark & !mask != 0 {
            self.err(
                &v.span(),
                field,
                if mark & mask == 0 {
                    format!("mark {mark:#x} is outside general.mark_mask ({mask:#x})")
                } else {
                    format!(
                        "mark {mark:#x} has bits outside general.mark_mask ({mask:#x}): {:#x}",
                        mark & !mask
                    )
                },
                format!("use a mark made only of the mask's bits{examples}"),
            );
        }
        let (unreachable, blackhole) = crate::model::last_resort_marks(mask);
        if mask_ok && (mark == unreachable || mark == blackhole) {
            let what = if mark == unreachable {
                "unreachable"
            } else {
                "blackhole"
            };
            self.err(
                &v.span(),
                field,
                format!(
                    "mark {mark:#x} is reserved for the `{what}` last resort (the two highest \
                     marks inside mark_mask, {unreachable:#x} and {blackhole:#x}, are)"
                ),
                format!("use a lower mark inside general.mark_mask{examples}"),
            );
        }
        let line = self.line(&v.span());
        match marks.entry(mark) {
            hash_map::Entry::Occupied(o) => {
                let (other, other_line) = o.get().clone();
                self.err(
                    &v.span(),
                    field,
                    format!("mark {mark:#x} is already used by WAN `{other}` (line {other_line})"),
                    "each WAN needs its own mark, so packets for different WANs can be told apart",
                );
            }
            hash_map::Entry::Vacant(e) => {
                e.insert((name.to_owned(), line));
            }
        }
        mark
    }

    fn wan_table(
        &mut self,
        v: &S<i64>,
        field: &str,
        name: &str,
        tables: &mut HashMap<u32, (String, usize)>,
    ) -> u32 {
        let n = *v.get_ref();
        let reserved = match n {
            0 => Some("unspec"),
            253 => Some("default"),
            254 => Some("main"),
            255 => Some("local"),
            _ => None,
        };
        if let Some(r) = reserved {
            self.err(
                &v.span(),
                field,
                format!("table {n} is the kernel's reserved `{r}` table"),
                "steer owns and rewrites this WAN's table; pick an unused number such as 101",
            );
            return 0;
        }
        if !(1..(1i64 << 31)).contains(&n) {
            self.err(
                &v.span(),
                field,
                format!("{n} is out of range: routing tables here are 1 to 2147483647"),
                "pick an unused table number such as 101",
            );
            return 0;
        }
        let table = n as u32;
        let line = self.line(&v.span());
        match tables.entry(table) {
            hash_map::Entry::Occupied(o) => {
                let (other, other_line) = o.get().clone();
                self.err(
                    &v.span(),
                    field,
                    format!("table {table} is already used by WAN `{other}` (line {other_line})"),
                    "each WAN needs its own routing table",
                );
            }
            hash_map::Entry::Vacant(e) => {
                e.insert((name.to_owned(), line));
            }
        }
        table
    }

    fn gateway(&mut self, v: &S<String>, field: &str, v4: bool) -> Option<IpAddr> {
        let a = match parse_addr(v.get_ref()) {
            Ok(a) => a,
            Err(e) => {
                self.err(&v.span(), field, e.message(), e.hint());
                return None;
            }
        };
        if a.is_ipv4() != v4 {
            let (msg, hint) = if v4 {
                (
                    "`gateway` is the IPv4 next hop",
                    "put an IPv6 gateway in `gateway6`",
                )
            } else {
                (
                    "`gateway6` is the IPv6 next hop",
                    "put an IPv4 gateway in `gateway`",
                )
            };
            self.err(&v.span(), field, msg, hint);
            return None;
        }
        if !is_unicast(a) {
            self.err(
                &v.span(),
                field,
                format!("{a} cannot be a gateway"),
                "write the address of the next-hop router on this WAN",
            );
            return None;
        }
        Some(a)
    }

    // -----------------------------------------------------------------------------------------
    // [wan.track]
    // -----------------------------------------------------------------------------------------

    fn track(&mut self, t: S<RawTrack>, label: &str) -> Track {
        let t = t.into_inner();
        let f = |k: &str| format!("{label}.{k}");
        let method = self.choice(
            &t.method,
            &f("method"),
            &[
                ("icmp", TrackMethod::Icmp),
                ("tcp", TrackMethod::Tcp),
                ("dns", TrackMethod::Dns),
                ("http", TrackMethod::Http),
            ],
            Track::DEFAULT_METHOD,
            "tracking method",
        );
        let query = match &t.query {
            Some(q) if method != TrackMethod::Dns => {
                self.err(
                    &q.span(),
                    f("query"),
                    format!(
                        "`query` only applies to method = \"dns\" (this WAN uses \"{}\")",
                        method.as_str()
                    ),
                    "remove it, or set method = \"dns\"",
                );
                String::new()
            }
            Some(q) if q.get_ref() == "." => ".".to_owned(),
            Some(q) => match normalize_domain(q.get_ref()) {
                Ok(n) => n,
                Err((m, h)) => {
                    self.err(&q.span(), f("query"), m, h);
                    String::new()
                }
            },
            None => ".".to_owned(),
        };
        let host = match &t.host {
            Some(h) if method != TrackMethod::Http => {
                self.err(
                    &h.span(),
                    f("host"),
                    format!(
                        "`host` only applies to method = \"http\" (this WAN uses \"{}\")",
                        method.as_str()
                    ),
                    "remove it, or set method = \"http\"",
                );
                None
            }
            Some(h) => {
                let s = h.get_ref();
                if s.is_empty()
                    || s.chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
                {
                    self.err(
                        &h.span(),
                        f("host"),
                        "not a valid HTTP Host header value",
                        "write a host name such as example.com (optionally with :port)",
                    );
                }
                Some(s.clone())
            }
            None => None,
        };
        let mut targets = Vec::new();
        if let Some(list) = &t.targets {
            if list.get_ref().is_empty() {
                self.err(
                    &list.span(),
                    f("targets"),
                    "no probe targets are listed",
                    target_example(method),
                );
            }
            for (i, v) in list.get_ref().iter().enumerate() {
                let field = format!("{label}.targets[{i}]");
                if self.stand_in(&field) {
                    continue;
                }
                match parse_target(method, v.get_ref(), &query, host.as_deref()) {
                    Ok(target) => {
                        if let Some(j) = targets.iter().position(|x| *x == target) {
                            self.err(
                                &v.span(),
                                &field,
                                format!("this target is already listed (targets[{j}])"),
                                "list each target once; use reliability to require several answers",
                            );
                        } else {
                            targets.push(target);
                        }
                    }
                    Err((m, h)) => self.err(&v.span(), &field, m, h),
                }
            }
        }
        let interval_ms = self.opt_ranged(
            &t.interval_ms,
            &f("interval_ms"),
            Track::DEFAULT_INTERVAL_MS,
            10,
            3_600_000,
            "ms",
        );
        let timeout_ms = match &t.timeout_ms {
            Some(v) => {
                let n = *v.get_ref();
                if (1..=i64::from(interval_ms)).contains(&n) {
                    n as u32
                } else {
                    self.err(
                        &v.span(),
                        f("timeout_ms"),
                        format!("{n} is out of range: it must be from 1 to interval_ms ({interval_ms}) ms"),
                        "a probe must time out before the next round starts",
                    );
                    interval_ms
                }
            }
            None if interval_ms < Track::DEFAULT_TIMEOUT_MS
                && !self.cx.removed.contains(&f("timeout_ms")) =>
            {
                let span = t.interval_ms.as_ref().map_or(0..0, |v| v.span());
                self.err(
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
        };
        let reliability = match &t.reliability {
            Some(v) => {
                let n = *v.get_ref();
                // Count the targets as written: bad ones are reported on their own.
                let written = t.targets.as_ref().map_or(0, |l| l.get_ref().len());
                let max = written.max(1) as i64;
                if (1..=max).contains(&n) || t.targets.is_none() {
                    n as u32
                } else {
                    self.err(
                        &v.span(),
                        f("reliability"),
                        format!(
                            "reliability {n} must be from 1 to the number of targets ({written})"
                        ),
                        "reliability is how many targets must answer for a round to pass",
                    );
                    Track::DEFAULT_RELIABILITY
                }
            }
            None => Track::DEFAULT_RELIABILITY,
        };
        let rounds = |this: &mut Self, v: &Option<S<i64>>, key: &str, default: u32| {
            this.opt_ranged(v, &f(key), default, 1, 1000, "rounds")
        };
        let down_after = rounds(self, &t.down_after, "down_after", Track::DEFAULT_DOWN_AFTER);
        let up_after = rounds(self, &t.up_after, "up_after", Track::DEFAULT_UP_AFTER);
        let loss_window = rounds(
            self,
            &t.loss_window,
            "loss_window",
            Track::DEFAULT_LOSS_WINDOW,
        );
        let max_latency_ms = t.max_latency_ms.as_ref().and_then(|v| {
            self.ranged(
                v,
                &f("max_latency_ms"),
                1,
                i64::from(timeout_ms),
                "ms",
                "it must be at most timeout_ms, since a slower answer already counts as lost",
            )
        });
        let max_loss_percent = t
            .max_loss_percent
            .as_ref()
            .and_then(|v| self.ranged(v, &f("max_loss_percent"), 0, 100, "%", ""));
        let recover_latency_ms = self.recover(
            &t.recover_latency_ms,
            &f("recover_latency_ms"),
            t.max_latency_ms.is_some() || self.cx.removed.contains(&f("max_latency_ms")),
            max_latency_ms,
            "max_latency_ms",
            "ms",
        );
        let recover_loss_percent = self.recover(
            &t.recover_loss_percent,
            &f("recover_loss_percent"),
            t.max_loss_percent.is_some() || self.cx.removed.contains(&f("max_loss_percent")),
            max_loss_percent,
            "max_loss_percent",
            "%",
        );
        Track {
            method,
            targets,
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
        }
    }

    /// A recover_* threshold: needs its max_* and must not be looser than it.
    fn recover(
        &mut self,
        v: &Option<S<i64>>,
        field: &str,
        max_written: bool,
        max: Option<u32>,
        max_key: &str,
        unit: &str,
    ) -> Option<u32> {
        let v = v.as_ref()?;
        if !max_written {
            self.err(
                &v.span(),
                field,
                format!("this recovery threshold needs `{max_key}`"),
                format!("set `{max_key}` (the limit that takes the WAN down) too, or remove this"),
            );
            return None;
        }
        let max = max?;
        let n = *v.get_ref();
        if (0..=i64::from(max)).contains(&n) {
            Some(n as u32)
        } else {
            self.err(
                &v.span(),
                field,
                format!("{n} is looser than {max_key} ({max}{unit})"),
                format!("a WAN should come back only when it is at least as good as the limit: use 0 to {max}"),
            );
            None
        }
    }

    // -----------------------------------------------------------------------------------------
    // [[policy]]
    // -----------------------------------------------------------------------------------------

    fn policies(&mut self, raw: Option<S<Vec<S<RawPolicy>>>>, wans: &Defined) -> Vec<Policy> {
        let Some(raw) = raw else { return Vec::new() };
        let mut names = HashMap::new();
        let mut out = Vec::new();
        for (i, p) in raw.into_inner().into_iter().enumerate() {
            let p = p.into_inner();
            let label = item_label(
                "",
                "policy",
                i,
                p.name.as_ref().map(|n| n.get_ref().as_str()),
            );
            if self.stand_in(&label) {
                continue;
            }
            if let Some(n) = &p.name {
                self.object_name(n, &format!("{label}.name"), "policy", &mut names);
            }
            let mut members: Vec<Member> = Vec::new();
            if let Some(list) = &p.members {
                if list.get_ref().is_empty() {
                    self.err(
                        &list.span(),
                        format!("{label}.members"),
                        "this policy has no members",
                        "list at least one WAN, e.g. members = [{ wan = \"wan1\" }]",
                    );
                }
                let mut seen: HashMap<String, usize> = HashMap::new();
                for (j, m) in list.get_ref().iter().enumerate() {
                    let m = m.get_ref();
                    let ml = format!("{label}.members[{j}]");
                    let Some(w) = &m.wan else { continue };
                    self.reference(w, &format!("{ml}.wan"), wans);
                    if let Some(first) = seen.get(w.get_ref()) {
                        self.err(
                            &w.span(),
                            format!("{ml}.wan"),
                            format!("WAN `{}` is already a member of this policy (members[{first}])", w.get_ref()),
                            "list each WAN once; use metric (preference) and weight (share) instead",
                        );
                    } else {
                        seen.insert(w.get_ref().clone(), j);
                    }
                    let metric = self.opt_ranged(&m.metric, &format!("{ml}.metric"), 1, 1, 255, "");
                    let weight = self.opt_ranged(&m.weight, &format!("{ml}.weight"), 1, 1, 64, "");
                    members.push(Member {
                        wan: w.get_ref().clone(),
                        metric,
                        weight,
                    });
                }
            }
            let last_resort = self.choice(
                &p.last_resort,
                &format!("{label}.last_resort"),
                &[
                    ("default", LastResort::Default),
                    ("unreachable", LastResort::Unreachable),
                    ("blackhole", LastResort::Blackhole),
                ],
                LastResort::Default,
                "last_resort",
            );
            out.push(Policy {
                name: p.name.map(|n| n.into_inner()).unwrap_or_default(),
                members,
                last_resort,
            });
        }
        out
    }

    // -----------------------------------------------------------------------------------------
    // [[set]]
    // -----------------------------------------------------------------------------------------

    fn sets(
        &mut self,
        raw: Option<S<Vec<S<RawSet>>>>,
        policies: &Defined,
        general: &General,
        general_span: &Range<usize>,
    ) -> Vec<Set> {
        let Some(raw) = raw else { return Vec::new() };
        let mut names = HashMap::new();
        let mut pending = Vec::new();
        let max_sets = (steer_common::MAX_RULES - 1) as usize;
        for (i, s) in raw.into_inner().into_iter().enumerate() {
            let span = s.span();
            let s = s.into_inner();
            let label = item_label("", "set", i, s.name.as_ref().map(|n| n.get_ref().as_str()));
            if i == max_sets {
                self.err(
                    &span,
                    &label,
                    format!("too many sets: steer supports at most {max_sets}"),
                    "merge sets that use the same policy and match",
                );
            }
            if self.stand_in(&label) {
                continue;
            }
            if let Some(n) = &s.name {
                self.object_name(n, &format!("{label}.name"), "set", &mut names);
            }
            pending.push(self.set(s, span, label, policies));
        }
        let sets = self.resolve_duplicates(pending, general.duplicates);
        self.check_capacity(&sets, general, general_span);
        sets
    }

    fn set(
        &mut self,
        s: RawSet,
        span: Range<usize>,
        label: String,
        policies: &Defined,
    ) -> PendingSet {
        let f = |k: &str| format!("{label}.{k}");
        if let Some(p) = &s.policy {
            self.reference(p, &f("policy"), policies);
        }
        let direction = self.choice(
            &s.direction,
            &f("match"),
            &[("dst", Direction::Dst), ("src", Direction::Src)],
            Direction::Dst,
            "match direction",
        );
        let allow = s.allow_default_route.as_ref().is_some_and(|v| *v.get_ref());
        let name = s
            .name
            .as_ref()
            .map(|n| n.get_ref().clone())
            .unwrap_or_default();
        let empty = |l: &Option<Strings>| l.as_ref().is_none_or(|l| l.get_ref().is_empty());
        let removed = ["prefixes", "files", "domains"]
            .iter()
            .any(|k| self.cx.removed.contains(&f(k)));
        if empty(&s.prefixes) && empty(&s.files) && empty(&s.domains) && !removed {
            self.cx.err_value(
                &span,
                &label,
                "",
                "this set has nothing to match",
                "add prefixes = [...], files = [...] or domains = [...]",
            );
        }
        let mut set = PendingSet {
            name,
            label: label.clone(),
            span,
            policy: s
                .policy
                .as_ref()
                .map(|p| p.get_ref().clone())
                .unwrap_or_default(),
            direction,
            allow_default_route: allow,
            entries: Vec::new(),
            inline_spans: Vec::new(),
            files: Vec::new(),
            domains: Vec::new(),
        };
        if let Some(list) = &s.prefixes {
            set.inline_spans = list.get_ref().iter().map(|v| v.span()).collect();
            for (i, v) in list.get_ref().iter().enumerate() {
                let field = format!("{label}.prefixes[{i}]");
                if self.stand_in(&field) {
                    continue;
                }
                match parse_prefix(v.get_ref(), allow) {
                    Ok(p) => {
                        let origin = Origin {
                            file: self.config_file.clone(),
                            line: self.line(&v.span()),
                        };
                        set.entries.push((p, origin, Written::Inline(i as u32)));
                    }
                    Err(e) => self.addr_err(&v.span(), &field, &e, &label),
                }
            }
        }
        if let Some(list) = &s.files {
            for (i, v) in list.get_ref().iter().enumerate() {
                self.list_file(&mut set, i, v);
            }
        }
        if let Some(list) = &s.domains {
            if direction == Direction::Src && !list.get_ref().is_empty() {
                self.err(
                    &list.span(),
                    f("domains"),
                    "domains only work in sets with match = \"dst\"",
                    "steer learns a domain's addresses from DNS answers, which are destinations; move the domains to a dst set",
                );
            }
            for (i, v) in list.get_ref().iter().enumerate() {
                let field = format!("{label}.domains[{i}]");
                if self.stand_in(&field) {
                    continue;
                }
                match normalize_domain(v.get_ref()) {
                    Ok(d) => {
                        if !set.domains.iter().any(|(x, _, _)| *x == d) {
                            set.domains.push((d, v.span(), i));
                        }
                    }
                    Err((m, h)) => self.err(&v.span(), field, m, h),
                }
            }
        }
        set
    }

    fn addr_err(&mut self, span: &Range<usize>, field: &str, e: &AddrError, label: &str) {
        self.err(span, field, e.message(), addr_hint(e, label));
    }

    fn list_file(&mut self, set: &mut PendingSet, index: usize, v: &S<String>) {
        let field = format!("{}.files[{index}]", set.label);
        if self.stand_in(&field) {
            return;
        }
        let written = v.get_ref();
        if written.trim().is_empty() {
            self.err(
                &v.span(),
                &field,
                "empty file name",
                "write the path of a list file, e.g. \"lists/bypass.txt\"",
            );
            return;
        }
        let path = self.base_dir.join(written);
        let shown: Arc<Path> = Arc::from(path.as_path());
        let absolute = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
        set.files.push(absolute.clone());
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                let set_name = &set.name;
                self.err(
                    &v.span(),
                    &field,
                    format!("cannot read list file `{written}` of set `{set_name}` (resolved to {}): {e}", absolute.display()),
                    format!(
                        "relative paths are relative to the config file's directory ({}); fix the path or create the file",
                        std::path::absolute(self.base_dir.join(".")).unwrap_or_else(|_| self.base_dir.clone()).display()
                    ),
                );
                return;
            }
        };
        match parse_list_bytes(&bytes, set.allow_default_route) {
            Ok(entries) => {
                set.entries.reserve(entries.len());
                for listed in entries {
                    let origin = Origin {
                        file: shown.clone(),
                        line: listed.line,
                    };
                    let written = Written::File {
                        index: index as u32,
                        column: u32::try_from(listed.column).unwrap_or(u32::MAX),
                    };
                    set.entries.push((listed.prefix, origin, written));
                }
            }
            Err(errors) => {
                let total = errors.len();
                let place = |e: &super::ListError| Place {
                    file: &shown,
                    line: e.line,
                    column: e.column,
                };
                for e in errors.iter().take(REPORT_LIMIT) {
                    let hint = match &e.kind {
                        super::ListErrorKind::Addr(a) => addr_hint(a, &set.label),
                        _ => e.hint(),
                    };
                    self.cx
                        .err_in(place(e), &field, shorten(&e.text), e.message(), hint);
                }
                if let Some(first_unshown) = errors.get(REPORT_LIMIT) {
                    self.cx.err_in(
                        place(first_unshown),
                        &field,
                        "",
                        format!(
                            "{} more bad lines in this file are not shown",
                            total - REPORT_LIMIT
                        ),
                        "is this really a list of addresses?",
                    );
                }
            }
        }
    }

    /// Reports a problem with a pending entry where it was written: the config file's
    /// `prefixes` or a line of a list file.
    fn entry_err(
        &mut self,
        set: &PendingSet,
        entry: (&Prefix, &Origin, Written),
        message: String,
        hint: &str,
    ) {
        let (prefix, origin, written) = entry;
        match written {
            Written::Inline(index) => {
                let field = format!("{}.prefixes[{index}]", set.label);
                self.err(&set.inline_spans[index as usize], field, message, hint);
            }
            Written::File { index, column } => {
                let place = Place {
                    file: &origin.file,
                    line: origin.line,
                    column: column as usize,
                };
                let field = format!("{}.files[{index}]", set.label);
                self.cx
                    .err_in(place, field, prefix.to_string(), message, hint);
            }
        }
    }

    /// Drops repeats inside a set, and resolves prefixes (and domains) claimed by two sets of
    /// the same direction according to `general.duplicates`.
    fn resolve_duplicates(
        &mut self,
        pending: Vec<PendingSet>,
        policy: DuplicatePolicy,
    ) -> Vec<Set> {
        let total: usize = pending.iter().map(|s| s.entries.len()).sum();
        let mut owner: HashMap<(Direction, Prefix), (u32, u32), FastHash> =
            HashMap::with_capacity_and_hasher(total, FastHash);
        let mut domain_owner: HashMap<String, (usize, usize)> = HashMap::new();
        let mut out: Vec<Set> = Vec::with_capacity(pending.len());
        for (si, mut set) in pending.into_iter().enumerate() {
            let entries = std::mem::take(&mut set.entries);
            let mut kept: Vec<Entry> = Vec::with_capacity(entries.len());
            let mut clashes: HashMap<usize, usize> = HashMap::new();
            let mut warned = 0usize;
            for (prefix, origin, written) in entries {
                match owner.entry((set.direction, prefix)) {
                    hash_map::Entry::Vacant(v) => {
                        v.insert((si as u32, kept.len() as u32));
                        kept.push(Entry { prefix, origin });
                    }
                    hash_map::Entry::Occupied(o) => {
                        let (other, idx) = *o.get();
                        let other = other as usize;
                        if other == si {
                            continue; // the same prefix twice in one set: keep the first
                        }
                        let first = &out[other];
                        let first_origin = &first.prefixes[idx as usize].origin;
                        let first_name = &first.name;
                        let count = clashes.entry(other).or_insert(0);
                        *count += 1;
                        match policy {
                            DuplicatePolicy::Error => {
                                if *count <= REPORT_LIMIT {
                                    let message = format!(
                                        "{prefix} is in set `{}` ({origin}) and also in set `{first_name}` ({first_origin}); a {} prefix can belong to one set only",
                                        set.name,
                                        dir_word(set.direction)
                                    );
                                    self.entry_err(
                                        &set,
                                        (&prefix, &origin, written),
                                        message,
                                        "remove it from one of the sets, or set general.duplicates = \"first-set-wins\" to let the earlier set keep it",
                                    );
                                }
                            }
                            DuplicatePolicy::FirstSetWins => {
                                warned += 1;
                                if warned <= WARN_LIMIT {
                                    log::warn!(
                                        "set `{}`: {prefix} ({origin}) is already in set `{first_name}` ({first_origin}); dropped from `{}` (general.duplicates = \"first-set-wins\")",
                                        set.name,
                                        set.name
                                    );
                                }
                            }
                        }
                    }
                }
            }
            if warned > WARN_LIMIT {
                log::warn!(
                    "set `{}`: {} more prefixes already in earlier sets were dropped (general.duplicates = \"first-set-wins\")",
                    set.name,
                    warned - WARN_LIMIT
                );
            }
            let mut clashes: Vec<(usize, usize)> = clashes.into_iter().collect();
            clashes.sort_unstable();
            for (other, count) in clashes {
                if policy == DuplicatePolicy::Error && count > REPORT_LIMIT {
                    let other_name = out[other].name.clone();
                    self.cx.err_value(
                        &set.span,
                        &set.label,
                        "",
                        format!(
                            "{} more prefixes of set `{}` are also in set `{other_name}` (not shown)",
                            count - REPORT_LIMIT,
                            set.name
                        ),
                        "remove them from one of the sets, or set general.duplicates = \"first-set-wins\"",
                    );
                }
            }
            let mut domains = Vec::with_capacity(set.domains.len());
            for (d, span, i) in std::mem::take(&mut set.domains) {
                if set.direction != Direction::Dst {
                    continue; // already reported
                }
                match domain_owner.get(&d) {
                    Some(&(other, line)) if other != si => {
                        let other_name = out[other].name.clone();
                        match policy {
                            DuplicatePolicy::Error => self.err(
                                &span,
                                format!("{}.domains[{i}]", set.label),
                                format!(
                                    "domain `{d}` is also in set `{other_name}` ({}:{line})",
                                    self.config_file.display()
                                ),
                                "remove it from one of the sets, or set general.duplicates = \"first-set-wins\" to let the earlier set keep it",
                            ),
                            DuplicatePolicy::FirstSetWins => log::warn!(
                                "set `{}`: domain `{d}` is already in set `{other_name}` ({}:{line}); dropped (general.duplicates = \"first-set-wins\")",
                                set.name,
                                self.config_file.display()
                            ),
                        }
                    }
                    _ => {
                        let line = self.line(&span);
                        domain_owner.entry(d.clone()).or_insert((si, line));
                        domains.push(d);
                    }
                }
            }
            out.push(Set {
                name: set.name,
                policy: set.policy,
                direction: set.direction,
                prefixes: kept,
                files: set.files,
                domains,
                allow_default_route: set.allow_default_route,
            });
        }
        out
    }

    fn check_capacity(&mut self, sets: &[Set], general: &General, general_span: &Range<usize>) {
        let c = general.capacity;
        let checks = [
            (Direction::Dst, true, c.dst_v4, "dst_v4", "IPv4 destination"),
            (
                Direction::Dst,
                false,
                c.dst_v6,
                "dst_v6",
                "IPv6 destination",
            ),
            (Direction::Src, true, c.src_v4, "src_v4", "IPv4 source"),
            (Direction::Src, false, c.src_v6, "src_v6", "IPv6 source"),
        ];
        for (dir, v4, cap, key, what) in checks {
            let n: usize = sets
                .iter()
                .filter(|s| s.direction == dir)
                .map(|s| s.prefixes.iter().filter(|e| e.prefix.is_v4() == v4).count())
                .sum();
            if n > cap as usize {
                let hint = if n <= MAX_CAPACITY as usize {
                    format!(
                        "raise general.capacity.{key} to at least {n} (kernel memory grows with it)"
                    )
                } else {
                    format!(
                        "steer's limit is {MAX_CAPACITY}; aggregate the lists (fewer, shorter prefixes)"
                    )
                };
                self.cx.err_value(
                    general_span,
                    format!("general.capacity.{key}"),
                    cap.to_string(),
                    format!("the sets hold {n} {what} prefixes, more than the capacity of {cap}"),
                    hint,
                );
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // [control]
    // -----------------------------------------------------------------------------------------

    fn control(&mut self, c: Option<super::raw::RawControl>) -> Control {
        let Some(c) = c else {
            return Control::default();
        };
        let socket = match &c.socket {
            Some(v) => self.absolute(v, "control.socket", &format!("e.g. {DEFAULT_SOCKET}")),
            None => PathBuf::from(DEFAULT_SOCKET),
        };
        let metrics = c
            .metrics
            .as_ref()
            .and_then(|v| match parse_socket_addr(v.get_ref()) {
                Ok(a) => Some(a),
                Err((m, h)) => {
                    self.err(&v.span(), "control.metrics", m, h);
                    None
                }
            });
        Control { socket, metrics }
    }
}

/// A fast, non-cryptographic hasher for the duplicate map (the keys come from the operator's
/// own files, so hash flooding is not a concern; SipHash would dominate large lists).
#[derive(Clone, Copy, Default)]
struct FastHash;

impl std::hash::BuildHasher for FastHash {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        // Spread the high bits down: hashbrown uses the top 7 bits and the low bits.
        self.0 ^ (self.0 >> 29)
    }
}

/// The hint for a bad address in set `label`: a default route names the set's switch for it.
fn addr_hint(e: &AddrError, label: &str) -> String {
    match e {
        AddrError::DefaultRoute { .. } => format!(
            "if {label} really should take all such traffic, set `allow_default_route = true` in it; for traffic that no set matches, use [default] instead"
        ),
        _ => e.hint(),
    }
}

fn dir_word(d: Direction) -> &'static str {
    match d {
        Direction::Dst => "destination",
        Direction::Src => "source",
    }
}

/// Stands in for a missing `[wan.track]` (already reported): every key at its default.
fn placeholder_track() -> Track {
    Track {
        method: Track::DEFAULT_METHOD,
        targets: Vec::new(),
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own for one test's config and list files, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("steer-validate-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const BASE: &str = r#"
[general]
lan = ["br-lan"]

[[wan]]
name = "wan1"
interface = "eth1"
mark = 0x100
table = 101
[wan.track]
targets = ["1.1.1.1"]

[[policy]]
name = "p"
members = [{ wan = "wan1" }]
"#;

    fn errors_of(config: &Path) -> Vec<Diagnostic> {
        let text = std::fs::read_to_string(config).unwrap();
        match parse(&text, config) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(e) => e.errors,
        }
    }

    /// The errors of a config without list files, as `field: message` lines.
    fn errors_in(text: &str) -> Vec<String> {
        match parse(text, Path::new("steer.toml")) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(e) => e
                .errors
                .iter()
                .map(|d| format!("{}: {}", d.field, d.message))
                .collect(),
        }
    }

    #[test]
    fn a_mistyped_wan_item_is_the_only_error_and_the_other_wans_are_still_checked() {
        let text = r#"
wan = [
  { name = "wan1", interface = "eth1", mark = 0, table = 101, track = { targets = ["1.1.1.1"] } },
  "wan2",
]

[general]
lan = ["br-lan"]

[[policy]]
name = "p"
members = [{ wan = "wan1" }, { wan = "wan2" }]
"#;
        assert_eq!(
            errors_in(text),
            [
                "wan[wan1].mark: mark is 0, which means \"no WAN\"",
                "wan[1]: expected a table, found a string",
            ]
        );
    }

    #[test]
    fn a_mistyped_list_of_definitions_is_not_echoed_by_its_references() {
        let text = r#"
wan = "wan1"
policy = 5

[general]
lan = ["br-lan"]

[[set]]
name = "s"
policy = "p"
prefixes = ["192.0.2.0/24"]

[default]
policy = "p"
"#;
        assert_eq!(
            errors_in(text),
            [
                "wan: expected a list of tables, found a string",
                "policy: expected a list of tables, found an integer",
            ]
        );
    }

    #[test]
    fn a_mistyped_string_item_keeps_the_positions_of_the_others() {
        let text = BASE.replacen(
            "targets = [\"1.1.1.1\"]",
            "targets = [\"1.1.1.1\", 5, \"1.1.1.1\"]",
            1,
        ) + "\n[[set]]\nname = \"s\"\npolicy = \"p\"\nprefixes = [true, \"10.0.0.1/8\"]\n";
        assert_eq!(
            errors_in(&text),
            [
                "wan[wan1].track.targets[1]: expected a string (in quotes), found an integer",
                "wan[wan1].track.targets[2]: this target is already listed (targets[0])",
                "set[s].prefixes[0]: expected a string (in quotes), found a boolean",
                "set[s].prefixes[1]: `10.0.0.1/8` has host bits set; the network is 10.0.0.0/8",
            ]
        );
    }

    /// A configuration broken everywhere except in what the CLI reads from it.
    const BROKEN_ELSEWHERE: &str = r#"
[general]
xdp = "yes"
lann = ["br-lan"]
pin_dir = "/sys/fs/bpf/steer-test"

[[wan]]
name = "wan1"
interface = "br-lan"
mark = 0
table = 101

[[wan]]
name = 7
table = 102
[wan.track]
method = "carrier-pigeon"

[[set]]
name = "s"
policy = "nowhere"
files = ["missing.txt"]

[control]
socket = "/run/steer-test/steer.sock"
metrics = "localhost"
"#;

    #[test]
    fn the_endpoints_are_read_from_a_file_that_is_broken_elsewhere() {
        let path = Path::new("/nonexistent/steer.toml");
        assert!(parse(BROKEN_ELSEWHERE, path).is_err());
        let found = endpoints(BROKEN_ELSEWHERE, path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            found,
            Endpoints {
                socket: "/run/steer-test/steer.sock".into(),
                pin_dir: "/sys/fs/bpf/steer-test".into(),
                tables: vec![101, 102],
            }
        );
        let defaults = endpoints("", path).unwrap();
        assert_eq!(defaults.socket, Path::new(DEFAULT_SOCKET));
        assert_eq!(defaults.pin_dir, Path::new(DEFAULT_PIN_DIR));
        assert!(defaults.tables.is_empty());
    }

    #[test]
    fn the_endpoints_themselves_are_checked_as_a_full_load_checks_them() {
        let path = Path::new("/nonexistent/steer.toml");
        let text = BROKEN_ELSEWHERE
            .replacen("\"/sys/fs/bpf/steer-test\"", "\"steer-test\"", 1)
            .replacen("table = 102", "table = 254", 1)
            .replacen("socket = \"/run/steer-test/steer.sock\"", "socket = 5", 1);
        let errors: Vec<String> = match endpoints(&text, path) {
            Ok(found) => panic!("accepted: {found:?}"),
            Err(e) => e
                .errors
                .iter()
                .map(|d| format!("{}: {}", d.field, d.message))
                .collect(),
        };
        assert_eq!(
            errors,
            [
                "general.pin_dir: must be an absolute path",
                "wan[1].table: table 254 is the kernel's reserved `main` table",
                "control.socket: expected a string (in quotes), found an integer",
            ]
        );
        let full = errors_in(&text);
        for e in &errors {
            assert!(full.contains(e), "a full load words `{e}` the same");
        }
        let syntax = endpoints("[general\n", path).unwrap_err();
        assert!(
            syntax.errors[0].message.starts_with("invalid TOML"),
            "{syntax}"
        );
    }

    #[test]
    fn list_file_errors_are_placed_in_the_list_file_and_summarized_past_the_limit() {
        let dir = Scratch::new("list-errors");
        let mut list = "0.0.0.0/0\n".to_owned();
        for _ in 0..REPORT_LIMIT + 1 {
            list.push_str("  010.0.0.1\n");
        }
        let list_path = dir.write("list.txt", &list);
        let config = dir.write(
            "steer.toml",
            &format!("{BASE}\n[[set]]\nname = \"s\"\npolicy = \"p\"\nfiles = [\"list.txt\"]\n"),
        );
        let errors = errors_of(&config);
        assert_eq!(errors.len(), REPORT_LIMIT + 1, "{errors:#?}");
        assert!(
            errors
                .iter()
                .all(|d| d.file == list_path && d.field == "set[s].files[0]")
        );
        let first = &errors[0];
        assert_eq!((first.line, first.column), (1, 1));
        assert_eq!(first.value, "0.0.0.0/0");
        assert!(
            first
                .hint
                .starts_with("if set[s] really should take all such traffic, set `allow_default_route = true` in it"),
            "{}",
            first.hint
        );
        assert_eq!((errors[1].line, errors[1].column), (2, 3));
        let summary = &errors[REPORT_LIMIT];
        assert_eq!((summary.line, summary.column), (REPORT_LIMIT + 1, 3));
        assert_eq!(
            summary.message,
            "2 more bad lines in this file are not shown"
        );
        assert_eq!(summary.value, "");
    }

    #[test]
    fn a_listed_duplicate_names_the_files_entry_it_came_from() {
        let dir = Scratch::new("dup-field");
        let list_path = dir.write("l.txt", "# x\n198.51.100.0/24\n");
        let config = dir.write(
            "steer.toml",
            &format!(
                "{BASE}\n[[set]]\nname = \"a\"\npolicy = \"p\"\nprefixes = [\"198.51.100.0/24\"]\n\
                 \n[[set]]\nname = \"b\"\npolicy = \"p\"\nfiles = [\"\", \"l.txt\"]\n"
            ),
        );
        let errors = errors_of(&config);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_eq!(errors[0].field, "set[b].files[0]");
        assert_eq!(errors[0].message, "empty file name");
        let dup = &errors[1];
        assert_eq!(
            (dup.file.as_path(), dup.line, dup.column),
            (list_path.as_path(), 2, 1)
        );
        assert_eq!(dup.field, "set[b].files[1]");
        assert!(dup.message.contains("also in set `a`"), "{}", dup.message);
    }
}
