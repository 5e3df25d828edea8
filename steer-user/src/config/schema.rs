//! The shape of the configuration file: which keys exist where, their TOML types, which are
//! required. One walk over the parsed document reports every unknown key (with a suggestion),
//! every value of the wrong type and every missing required key, and removes wrongly typed
//! values so that deserialization can go on and the remaining checks still run.

use std::ops::Range;

use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

use super::{
    DEFAULT_MARK_MASK, DEFAULT_PIN_DIR, DEFAULT_SOCKET, Track, diag::Ctx, names::valid_name,
};

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Str,
    Int,
    Bool,
    StrList,
    Table(&'static [Field]),
    TableList(&'static [Field]),
    /// A string that only names its table in messages, in a partial read: of another type it
    /// is dropped without a word (the full check reports it).
    Label,
}

pub(crate) struct Field {
    pub key: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// How the key is written, for hints.
    example: Example,
}

/// How a key is written, for hints. Defaults are shown from their constants, so a hint never
/// suggests a value that differs from what leaving the key out gives.
#[derive(Clone, Copy)]
enum Example {
    Text(&'static str),
    /// These pieces in a row (a `const` string cannot go into `concat!`).
    Pieces(&'static [&'static str]),
    /// `key = n`.
    Int(u32),
    /// `key = 0xn`.
    Hex(u32),
}

impl Field {
    fn example(&self) -> String {
        match self.example {
            Example::Text(t) => t.to_owned(),
            Example::Pieces(p) => p.concat(),
            Example::Int(n) => format!("{} = {n}", self.key),
            Example::Hex(n) => format!("{} = {n:#x}", self.key),
        }
    }
}

const fn opt(key: &'static str, kind: Kind, example: &'static str) -> Field {
    opt_shown(key, kind, Example::Text(example))
}

const fn opt_shown(key: &'static str, kind: Kind, example: Example) -> Field {
    Field {
        key,
        kind,
        required: false,
        example,
    }
}

/// An optional integer key, shown at its default.
const fn opt_int(key: &'static str, default: u32) -> Field {
    opt_shown(key, Kind::Int, Example::Int(default))
}

const fn req(key: &'static str, kind: Kind, example: &'static str) -> Field {
    Field {
        key,
        kind,
        required: true,
        example: Example::Text(example),
    }
}

use Kind::{Bool, Int, Str, StrList, Table, TableList};

pub(crate) const ROOT: &[Field] = &[
    req("general", Table(GENERAL), GENERAL_EXAMPLE),
    req("wan", TableList(WAN), WAN_EXAMPLE),
    opt(
        "policy",
        TableList(POLICY),
        "[[policy]] with name and members",
    ),
    opt(
        "set",
        TableList(SET),
        "[[set]] with name, policy and prefixes",
    ),
    opt(
        "default",
        Table(DEFAULT),
        "[default] with policy = \"balanced\"",
    ),
    opt_shown("control", Table(CONTROL), CONTROL_EXAMPLE),
];

const GENERAL_EXAMPLE: &str = "[general] with lan = [\"br-lan\"]";
const WAN_EXAMPLE: &str = "[[wan]] with name, interface, mark, table and [wan.track]";
const CONTROL_EXAMPLE: Example =
    Example::Pieces(&["[control] with socket = \"", DEFAULT_SOCKET, "\""]);

const GENERAL: &[Field] = &[
    req("lan", StrList, "lan = [\"br-lan\"]"),
    opt_shown("mark_mask", Int, Example::Hex(DEFAULT_MARK_MASK)),
    opt("xdp", Bool, "xdp = false"),
    PIN_DIR,
    opt(
        "capacity",
        Table(CAPACITY),
        "[general.capacity] with dst_v4 = 2097152",
    ),
    opt("log_packets", Bool, "log_packets = false"),
    opt("duplicates", Str, "duplicates = \"error\""),
];

const CAPACITY: &[Field] = &[
    opt_int("dst_v4", steer_common::DEFAULT_CAPACITY_DST_V4),
    opt_int("dst_v6", steer_common::DEFAULT_CAPACITY_DST_V6),
    opt_int("src_v4", steer_common::DEFAULT_CAPACITY_SRC_V4),
    opt_int("src_v6", steer_common::DEFAULT_CAPACITY_SRC_V6),
];

const WAN: &[Field] = &[
    req("name", Str, WAN_NAME),
    req("interface", Str, "interface = \"eth1\""),
    req("mark", Int, "mark = 0x100"),
    req("table", Int, WAN_TABLE),
    opt("gateway", Str, "gateway = \"192.168.2.1\""),
    opt("gateway6", Str, "gateway6 = \"fe80::1\""),
    req(
        "track",
        Table(TRACK),
        "[wan.track] with targets = [\"1.1.1.1\", \"9.9.9.9\"]",
    ),
];

const TRACK: &[Field] = &[
    opt("method", Str, "method = \"icmp\""),
    req("targets", StrList, "targets = [\"1.1.1.1\", \"9.9.9.9\"]"),
    opt("query", Str, "query = \"example.com\""),
    opt("host", Str, "host = \"example.com\""),
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
];

const POLICY: &[Field] = &[
    req("name", Str, "name = \"balanced\""),
    req(
        "members",
        TableList(MEMBER),
        "members = [{ wan = \"wan1\" }, { wan = \"wan2\", metric = 2 }]",
    ),
    opt("last_resort", Str, "last_resort = \"default\""),
];

const MEMBER: &[Field] = &[
    req("wan", Str, "{ wan = \"wan1\" }"),
    opt("metric", Int, "{ wan = \"wan1\", metric = 1 }"),
    opt("weight", Int, "{ wan = \"wan1\", weight = 1 }"),
];

const SET: &[Field] = &[
    req("name", Str, "name = \"bypass\""),
    req("policy", Str, "policy = \"wan2-first\""),
    opt("match", Str, "match = \"dst\""),
    opt("prefixes", StrList, "prefixes = [\"203.0.113.0/24\"]"),
    opt("files", StrList, "files = [\"lists/bypass.txt\"]"),
    opt("domains", StrList, "domains = [\"example.com\"]"),
    opt("allow_default_route", Bool, "allow_default_route = false"),
];

const DEFAULT: &[Field] = &[req("policy", Str, "policy = \"balanced\"")];

const CONTROL: &[Field] = &[SOCKET, opt("metrics", Str, "metrics = \"127.0.0.1:9464\"")];

const PIN_DIR: Field = opt_shown(
    "pin_dir",
    Str,
    Example::Pieces(&["pin_dir = \"", DEFAULT_PIN_DIR, "\""]),
);
const SOCKET: Field = opt_shown(
    "socket",
    Str,
    Example::Pieces(&["socket = \"", DEFAULT_SOCKET, "\""]),
);
const WAN_NAME: &str = "name = \"wan1\"";
const WAN_TABLE: &str = "table = 101";

/// The part of the file the CLI reads to find a running steer (see
/// [`super::load_endpoints`]); a WAN's name only labels its table in messages. Nothing here is
/// required: a missing key has its default, or is part of the rest, which is not checked.
pub(crate) const ENDPOINTS: &[Field] = &[
    opt("general", Table(&[PIN_DIR]), GENERAL_EXAMPLE),
    opt(
        "wan",
        TableList(&[
            opt("name", Kind::Label, WAN_NAME),
            opt("table", Int, WAN_TABLE),
        ]),
        WAN_EXAMPLE,
    ),
    opt_shown("control", Table(&[SOCKET]), CONTROL_EXAMPLE),
];

/// Removes every key that `fields` does not name, at every depth, so that a partial read
/// neither reports nor depends on the rest of the file.
pub(crate) fn retain_known(table: &mut DeTable<'_>, fields: &[Field]) {
    let unknown: Vec<String> = table
        .iter()
        .map(|(k, _)| k.get_ref().to_string())
        .filter(|k| !fields.iter().any(|f| f.key == k))
        .collect();
    for k in &unknown {
        table.remove(k.as_str());
    }
    for (key, value) in table.iter_mut() {
        let Some(field) = fields.iter().find(|f| f.key == key.get_ref()) else {
            continue;
        };
        match (field.kind, value.get_mut()) {
            (Kind::Table(sub), DeValue::Table(t)) => retain_known(t, sub),
            (Kind::TableList(sub), DeValue::Array(items)) => {
                for item in items.iter_mut() {
                    if let DeValue::Table(t) = item.get_mut() {
                        retain_known(t, sub);
                    }
                }
            }
            _ => {}
        }
    }
}

/// `parent.key` (or `key` at the top).
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The label of an element of an array of tables: `wan[wan1]` when it has a valid name,
/// else `wan[0]` (0-based position).
pub(crate) fn item_label(parent: &str, key: &str, index: usize, name: Option<&str>) -> String {
    match name.filter(|n| valid_name(n)) {
        Some(n) => format!("{}[{n}]", join(parent, key)),
        None => format!("{}[{index}]", join(parent, key)),
    }
}

fn a_type(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a decimal number",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date/time",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// Checks a table against its fields, reporting into `cx`, removing wrongly typed values.
pub(crate) fn check_table(
    cx: &mut Ctx<'_>,
    table: &mut DeTable<'_>,
    span: &Range<usize>,
    fields: &'static [Field],
    label: &str,
) {
    let mut drop: Vec<String> = Vec::new();
    for (key, value) in table.iter_mut() {
        let k: &str = key.get_ref().as_ref();
        let Some(field) = fields.iter().find(|f| f.key == k) else {
            let path = join(label, k);
            let hint = match super::diag::closest(k, fields.iter().map(|f| f.key)) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!(
                    "valid keys here are {}",
                    super::diag::list_names(fields.iter().map(|f| f.key))
                ),
            };
            let where_ = if label.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in {label}")
            };
            let value_text = cx.src.snippet(&value.span());
            cx.err_value(
                &key.span(),
                path,
                value_text,
                format!("unknown key `{k}` {where_}"),
                hint,
            );
            continue;
        };
        let path = join(label, k);
        if !check_value(cx, value, field, &path) {
            drop.push(k.to_owned());
            cx.removed.insert(path);
        }
    }
    for k in &drop {
        table.remove(k.as_str());
    }
    for f in fields.iter().filter(|f| f.required) {
        if table.contains_key(f.key) || drop.iter().any(|d| d == f.key) {
            continue;
        }
        let (what, hint) = missing_text(label, f);
        cx.err_value(span, join(label, f.key), "", what, hint);
    }
}

fn missing_text(label: &str, f: &Field) -> (String, String) {
    match (label, f.key) {
        ("", "general") => (
            "the [general] section is missing".into(),
            "add [general] with lan = [\"br-lan\"] (the interfaces whose traffic steer classifies)"
                .into(),
        ),
        ("", "wan") => (
            "no WAN is defined".into(),
            format!("add at least one {}", f.example()),
        ),
        (_, "track") => (
            "this WAN has no health tracking".into(),
            format!("add {} after the WAN's keys", f.example()),
        ),
        _ => (
            format!("required key `{}` is missing", f.key),
            format!(
                "add `{}`{}",
                f.example(),
                if label.is_empty() {
                    String::new()
                } else {
                    format!(" to {label}")
                }
            ),
        ),
    }
}

/// Replaces a list item of the wrong type (already reported) with an empty value of the right
/// type and records its path: removing it would shift the positions that the items after it
/// are reported at, and removing the whole list would hide the others (and, for `wan` or
/// `policy`, make every reference to them look undefined).
fn stand_in<'i>(
    cx: &mut Ctx<'_>,
    item: &mut Spanned<DeValue<'i>>,
    empty: DeValue<'i>,
    path: String,
) {
    *item.get_mut() = empty;
    cx.removed.insert(path);
}

/// Whether `value` has the field's type (recursing into tables); reports when it does not.
fn check_value(
    cx: &mut Ctx<'_>,
    value: &mut Spanned<DeValue<'_>>,
    field: &Field,
    path: &str,
) -> bool {
    let span = value.span();
    let found = a_type(value.get_ref());
    match (field.kind, value.get_mut()) {
        (Kind::Str | Kind::Label, DeValue::String(_)) | (Kind::Bool, DeValue::Boolean(_)) => true,
        (Kind::Label, _) => false,
        (Kind::Int, DeValue::Integer(i)) => {
            if i64::from_str_radix(i.as_str(), i.radix()).is_ok() {
                true
            } else {
                cx.err(
                    &span,
                    path,
                    "number is far too large",
                    format!("write it like `{}`", field.example()),
                );
                false
            }
        }
        (Kind::StrList, DeValue::Array(items)) => {
            for (i, item) in items.iter_mut().enumerate() {
                if !matches!(item.get_ref(), DeValue::String(_)) {
                    let item_path = format!("{path}[{i}]");
                    cx.err(
                        &item.span(),
                        &item_path,
                        format!(
                            "expected a string (in quotes), found {}",
                            a_type(item.get_ref())
                        ),
                        format!("write it like `{}`", field.example()),
                    );
                    stand_in(cx, item, DeValue::String("".into()), item_path);
                }
            }
            true
        }
        (Kind::Table(sub), DeValue::Table(t)) => {
            check_table(cx, t, &span, sub, path);
            true
        }
        (Kind::TableList(sub), DeValue::Array(items)) => {
            let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
            for (i, item) in items.iter_mut().enumerate() {
                let item_span = item.span();
                match item.get_mut() {
                    DeValue::Table(t) => {
                        let name = t.get("name").and_then(|n| n.get_ref().as_str());
                        let label = item_label(parent, key, i, name);
                        check_table(cx, t, &item_span, sub, &label);
                    }
                    other => {
                        let found = a_type(other);
                        let item_path = format!("{path}[{i}]");
                        cx.err(
                            &item_span,
                            &item_path,
                            format!("expected a table, found {found}"),
                            format!("write it like `{}`", field.example()),
                        );
                        stand_in(cx, item, DeValue::Table(DeTable::new()), item_path);
                    }
                }
            }
            true
        }
        (kind, _) => {
            let (expected, hint) = match kind {
                Kind::Str | Kind::Label => (
                    "a string (in quotes)",
                    format!("write it like `{}`", field.example()),
                ),
                Kind::Int => ("an integer", format!("write it like `{}`", field.example())),
                Kind::Bool => (
                    "true or false (without quotes)",
                    format!("write it like `{}`", field.example()),
                ),
                Kind::StrList => (
                    "a list of strings",
                    format!(
                        "write it like `{}` (a single entry still needs the brackets)",
                        field.example()
                    ),
                ),
                Kind::Table(_) => ("a table", format!("write it as {}", field.example())),
                Kind::TableList(_) => (
                    "a list of tables",
                    format!("write it as {}", field.example()),
                ),
            };
            cx.err(
                &span,
                path,
                format!("expected {expected}, found {found}"),
                hint,
            );
            false
        }
    }
}
