//! The shape of the configuration file, and one walk over the parsed document that checks it.
//!
//! Each section declares its keys as a table of [`Field`]s (in its own module); the root table
//! lists the sections. The walk reports every unknown key (with a suggestion), every value of
//! the wrong type and every missing required key, and removes wrongly typed values so that
//! deserialization can go on and the remaining checks still run.
//!
//! After the walk, each section deserializes into its raw struct: the file as written, every
//! key optional and spanned ([`S`]), every integer an `i64`, every enum a string. The types are
//! then known to be right; the sections' checks report everything else.

use std::ops::Range;

use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

use super::{diag::Ctx, names::valid_name, suggest};

/// A value as written, with its place in the file.
pub(super) type S<T> = Spanned<T>;
/// A list of strings as written.
pub(super) type Strings = S<Vec<S<String>>>;
/// A list whose items are integers or strings, as written.
pub(super) type IntsOrStrs = S<Vec<S<IntOrStr>>>;

/// An item of a list that takes both integers and strings (`http_status = [204, "300-399"]`).
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
pub(super) enum IntOrStr {
    Int(i64),
    Str(String),
}

#[derive(Clone, Copy)]
pub(super) enum Kind {
    Str,
    Int,
    Bool,
    StrList,
    /// A list of integers and strings, mixed (each item is checked by the section).
    IntOrStrList,
    Table(&'static [Field]),
    TableList(&'static [Field]),
    /// A string that only names its table in messages, in a partial read: of another type it
    /// is dropped without a word (the full check reports it).
    Label,
}

pub(super) struct Field {
    pub key: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// How the key is written, for hints.
    example: Example,
    /// What a missing required key is reported as, when "required key is missing" would say
    /// too little (a whole section).
    missing: Option<Missing>,
}

/// How a key is written, for hints. Defaults are shown from their constants, so a hint never
/// suggests a value that differs from what leaving the key out gives.
#[derive(Clone, Copy)]
pub(super) enum Example {
    Text(&'static str),
    /// These pieces in a row (a `const` string cannot go into `concat!`).
    Pieces(&'static [&'static str]),
    /// `key = n`.
    Int(u32),
    /// `key = 0xn`.
    Hex(u32),
}

/// The message for a missing required key, and its hint: the key's example between `before`
/// and `after`.
#[derive(Clone, Copy)]
struct Missing {
    message: &'static str,
    before: &'static str,
    after: &'static str,
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

    /// This field, reported as `message` when missing, with the hint `before`, its example,
    /// `after`.
    pub(super) const fn when_missing(
        self,
        message: &'static str,
        before: &'static str,
        after: &'static str,
    ) -> Field {
        Field {
            missing: Some(Missing {
                message,
                before,
                after,
            }),
            ..self
        }
    }
}

pub(super) const fn opt(key: &'static str, kind: Kind, example: &'static str) -> Field {
    opt_shown(key, kind, Example::Text(example))
}

pub(super) const fn opt_shown(key: &'static str, kind: Kind, example: Example) -> Field {
    Field {
        key,
        kind,
        required: false,
        example,
        missing: None,
    }
}

/// An optional integer key, shown at its default.
pub(super) const fn opt_int(key: &'static str, default: u32) -> Field {
    opt_shown(key, Kind::Int, Example::Int(default))
}

pub(super) const fn req(key: &'static str, kind: Kind, example: &'static str) -> Field {
    Field {
        key,
        kind,
        required: true,
        example: Example::Text(example),
        missing: None,
    }
}

/// Removes every key that `fields` does not name, at every depth, so that a partial read
/// neither reports nor depends on the rest of the file.
pub(super) fn retain_known(table: &mut DeTable<'_>, fields: &[Field]) {
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
pub(super) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The label of an element of an array of tables: `wan[wan1]` when it has a valid name,
/// else `wan[0]` (0-based position).
pub(super) fn item_label(parent: &str, key: &str, index: usize, name: Option<&str>) -> String {
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
pub(super) fn check_table(
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
            let hint = match suggest::closest(k, fields.iter().map(|f| f.key)) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!(
                    "valid keys here are {}",
                    suggest::list_names(fields.iter().map(|f| f.key))
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
        let (what, hint) = missing_text(label, f, &cx.policies);
        cx.err_value(span, join(label, f.key), "", what, hint);
    }
}

/// `policies`: the names the document's `[[policy]]` tables give; a missing `policy` key is
/// told one of them, not the schema's example, which may name none of the file's.
fn missing_text(label: &str, f: &Field, policies: &[String]) -> (String, String) {
    if let Some(m) = f.missing {
        let hint = format!("{}{}{}", m.before, f.example(), m.after);
        return (m.message.into(), hint);
    }
    let to = if label.is_empty() {
        String::new()
    } else {
        format!(" to {label}")
    };
    let hint = match (f.key, policies) {
        ("policy", []) => format!(
            "add `policy = \"NAME\"`{to}, NAME a [[policy]] of the file (it has none yet: \
             define one, e.g. [[policy]] name = \"wan2-first\")"
        ),
        ("policy", [only]) => format!("add `policy = \"{only}\"`{to}"),
        ("policy", [first, ..]) => format!(
            "add `policy = \"{first}\"`{to}, or another policy of the file: {}",
            policies.join(", ")
        ),
        _ => format!("add `{}`{to}", f.example()),
    };
    (format!("required key `{}` is missing", f.key), hint)
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

/// Why `item` cannot be an item of a [`Kind::IntOrStrList`], if it cannot.
fn not_int_or_str(item: &DeValue<'_>) -> Option<String> {
    match item {
        DeValue::String(_) => None,
        DeValue::Integer(i) if i64::from_str_radix(i.as_str(), i.radix()).is_ok() => None,
        DeValue::Integer(_) => Some("number is far too large".into()),
        other => Some(format!(
            "expected an integer or a string (in quotes), found {}",
            a_type(other)
        )),
    }
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
        (Kind::IntOrStrList, DeValue::Array(items)) => {
            for (i, item) in items.iter_mut().enumerate() {
                if let Some(problem) = not_int_or_str(item.get_ref()) {
                    let item_path = format!("{path}[{i}]");
                    cx.err(
                        &item.span(),
                        &item_path,
                        problem,
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
                Kind::IntOrStrList => (
                    "a list of integers or strings",
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

#[cfg(test)]
mod tests {

    #[test]
    fn a_missing_policy_is_told_a_policy_of_the_file() {
        let f = super::req("policy", super::Kind::Str, "policy = \"wan2-first\"");
        let hint = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            super::missing_text("set[s]", &f, &names).1
        };
        assert_eq!(hint(&["p"]), "add `policy = \"p\"` to set[s]");
        assert_eq!(
            hint(&["dsl-first", "lte"]),
            "add `policy = \"dsl-first\"` to set[s], or another policy of the file: dsl-first, lte"
        );
        assert!(hint(&[]).contains("it has none yet"), "{}", hint(&[]));
    }
    use crate::config::testing::{BASE, errors_in};

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
}
