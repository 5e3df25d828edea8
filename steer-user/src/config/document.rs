//! From text to a checked result: TOML syntax, then the schema walk, then deserialization into
//! the raw structs, then the sections' checks; and the order diagnostics are reported in.
//!
//! Everything is checked before returning; placeholders stand in for bad values so the rest
//! can still be checked, and never leave the checks (any diagnostic means `Err`).

use std::path::Path;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use super::{
    diag::{ConfigErrors, Ctx, Diagnostic, Source},
    schema::{self, Field},
};

/// Which keys of the file to read.
pub(super) enum Keys {
    /// Every key, against this table: an unknown one is an error.
    All(&'static [Field]),
    /// Only the keys this table names; the rest is dropped unread and unchecked.
    Only(&'static [Field]),
}

/// Syntax, then the schema of `keys`, then `build` from the raw document; any diagnostic
/// means `Err`.
pub(super) fn check<R: DeserializeOwned, T>(
    text: &str,
    path: &Path,
    keys: Keys,
    build: impl FnOnce(&mut Ctx<'_>, R) -> T,
) -> Result<T, ConfigErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let src = Source::new(text);
    let mut cx = Ctx::new(&src, path);
    let (mut doc, errors) = DeTable::parse_recoverable(text);
    if let Some(e) = errors.first() {
        // Later syntax errors are mostly echoes of the first one; report only that.
        let span = e.span().unwrap_or(0..0);
        let message = e.message().replace('\n', " ");
        let at = src.snippet(&span);
        let hint = sub_table_first(&message, &at).unwrap_or_else(|| syntax_hint(&message));
        let message = if at.is_empty() {
            format!("invalid TOML: {message}")
        } else {
            format!("invalid TOML at `{at}`: {message}")
        };
        cx.err_value(&span, "", "", message, hint);
        return Err(finish(cx.diags, cx.unshown, path));
    }
    let span = doc.span();
    let fields = match keys {
        Keys::All(fields) => fields,
        Keys::Only(fields) => {
            schema::retain_known(doc.get_mut(), fields);
            fields
        }
    };
    cx.policies = policy_names(doc.get_ref());
    schema::check_table(&mut cx, doc.get_mut(), &span, fields, "");
    let raw = match R::deserialize(toml::de::Deserializer::from(doc)) {
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
            return Err(finish(cx.diags, cx.unshown, path));
        }
    };
    let result = build(&mut cx, raw);
    if cx.diags.is_empty() {
        Ok(result)
    } else {
        Err(finish(cx.diags, cx.unshown, path))
    }
}

/// The names the document's `[[policy]]` tables give, for hints that name a policy.
fn policy_names(doc: &DeTable<'_>) -> Vec<String> {
    let Some(DeValue::Array(items)) = doc.get("policy").map(|v| v.get_ref()) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item.get_ref() {
            DeValue::Table(t) => match t.get("name").map(|n| n.get_ref()) {
                Some(DeValue::String(name)) => Some(name.to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The hint for `[wan.track]` (or another section's sub-table) written before the first
/// `[[wan]]`: TOML then reads `wan` as a table, and the `[[wan]]` after it as a duplicate.
fn sub_table_first(message: &str, at: &str) -> Option<String> {
    let arrays = ["wan", "policy", "set", "vrrp"];
    (message.contains("duplicate key") && arrays.contains(&at)).then(|| {
        format!(
            "a [{at}.…] table describes the [[{at}]] above it: move it below that [[{at}]]'s \
             keys (written before the first [[{at}]], it makes `{at}` a table, and the \
             [[{at}]] a duplicate)"
        )
    })
}

/// What to do about a TOML syntax error, by the words of the parser's message. The first
/// match wins, so the more specific words come first (`unclosed array table` before
/// `unclosed array`); a table header left open is not a string left open.
const SYNTAX_HINTS: &[(&str, &str)] = &[
    (
        "must be quoted",
        "put text values in double quotes, e.g. name = \"wan1\"",
    ),
    (
        "duplicate key",
        "each key may appear only once per table, and each [table] only once; merge or remove \
         the repeated one",
    ),
    (
        "unclosed array table",
        "close the table header with `]]` on the same line, e.g. [[set]]",
    ),
    (
        "unclosed table",
        "close the table header with `]` on the same line, e.g. [default]",
    ),
    (
        "unclosed inline table",
        "close the inline table with `}` on the same line it starts on",
    ),
    ("unclosed array", "close the list with `]`"),
    (
        "string",
        "close the string with the same quote it starts with",
    ),
];

fn syntax_hint(message: &str) -> String {
    SYNTAX_HINTS
        .iter()
        .find(|(words, _)| message.contains(words))
        .map_or(
            "fix the TOML syntax here (nothing else was checked yet)",
            |(_, hint)| hint,
        )
        .into()
}

/// Orders diagnostics: the config file first, by position; then list files, by position.
fn finish(mut diags: Vec<Diagnostic>, unshown: usize, config_file: &Path) -> ConfigErrors {
    diags.sort_by(|a, b| {
        let ka = (a.file != config_file, &a.file, a.line, a.column);
        let kb = (b.file != config_file, &b.file, b.line, b.column);
        ka.cmp(&kb)
    });
    diags.dedup();
    ConfigErrors {
        errors: diags,
        unshown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hint for the first syntax error of `text`.
    fn hint_of(text: &str) -> String {
        let (_, errors) = DeTable::parse_recoverable(text);
        syntax_hint(
            &errors
                .first()
                .expect("a syntax error")
                .message()
                .replace('\n', " "),
        )
    }

    #[test]
    fn a_syntax_hint_speaks_of_what_is_left_open() {
        assert!(hint_of("[default\nx = 1\n").contains("table header with `]`"));
        assert!(hint_of("[[set\n").contains("table header with `]]`"));
        assert!(hint_of("a = {b = 1\n").contains("inline table with `}`"));
        assert_eq!(hint_of("a = [1, 2\n"), "close the list with `]`");
        for open_string in ["a = \"x\n", "a = 'x\n", "a = \"\"\"x\n"] {
            assert!(
                hint_of(open_string).starts_with("close the string"),
                "{open_string}"
            );
        }
        assert!(hint_of("a = 1 2\n").starts_with("put text values in double quotes"));
    }

    #[test]
    fn a_wan_track_before_its_wan_is_told_to_move_below_it() {
        let text = "[wan.track]\ntargets = [\"192.0.2.1\"]\n[[wan]]\nname = \"a\"\n";
        let errors = crate::config::parse(text, Path::new("steer.toml")).unwrap_err();
        let e = errors.to_string();
        assert!(
            e.contains("a [wan.…] table describes the [[wan]] above it: move it below"),
            "{e}"
        );
    }
}
