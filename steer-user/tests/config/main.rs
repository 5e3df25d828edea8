//! Configuration loading and validation, without privileges, one module per section of the
//! file (one small broken config per class of error: line, column, field and message checked)
//! and per shared concern: the documented example, the file as a whole (syntax, unknown keys,
//! many errors at once), the address corpus, list files (with a timing run over a
//! 1,000,000-line list) and duplicates across sets.

#[path = "../common/mod.rs"]
mod common;

mod addresses;
mod conditions;
mod control;
mod default;
mod document;
mod duplicates;
mod example;
mod general;
mod list_files;
mod policy;
mod set;
mod track;
mod wan;

use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use steer::{
    config::{self, Config, ConfigErrors},
    model::{PortRange, Proto},
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

fn parse_in_fixtures(text: &str) -> Result<Config, ConfigErrors> {
    config::parse(text, &fixtures().join("case.toml"))
}

fn errors(text: &str) -> ConfigErrors {
    match parse_in_fixtures(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e,
    }
}

/// 1-based line and column of the first occurrence of `needle` in `text`; with a `|` in the
/// needle, of the place the `|` marks.
fn position(text: &str, needle: &str) -> (usize, usize) {
    let mark = needle.find('|').unwrap_or(0);
    let needle = needle.replace('|', "");
    let at = text
        .find(&needle)
        .unwrap_or_else(|| panic!("`{needle}` not in:\n{text}"))
        + mark;
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap().chars().count() + 1;
    (line, column)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// One broken config per class of error
// ---------------------------------------------------------------------------------------------

/// The smallest valid configuration; every case below breaks it in one way.
const MIN: &str = r#"[general]
lan = ["br-lan"]

[[wan]]
name = "wan1"
interface = "eth1"
mark = 0x100
table = 101
[wan.track]
targets = ["1.1.1.1"]

[[wan]]
name = "wan2"
interface = "eth2"
mark = 0x200
table = 102
[wan.track]
targets = ["9.9.9.9"]

[[policy]]
name = "p"
members = [{ wan = "wan1" }, { wan = "wan2", metric = 2 }]

[[set]]
name = "s"
policy = "p"
prefixes = ["10.0.0.0/8"]
"#;

struct Case {
    /// Replace the first `from` in MIN with `to` (`from` empty: append `to`).
    from: &'static str,
    to: &'static str,
    /// The error is located at the first occurrence of `at` in the changed text.
    at: &'static str,
    field: &'static str,
    /// Must appear in the message or hint.
    says: &'static str,
    /// How many errors the change causes in total.
    count: usize,
}

const fn case(
    from: &'static str,
    to: &'static str,
    at: &'static str,
    field: &'static str,
    says: &'static str,
) -> Case {
    Case {
        from,
        to,
        at,
        field,
        says,
        count: 1,
    }
}

/// Checks that each case causes its error, where it says, and no other errors than it counts.
fn check_cases(cases: &[Case]) {
    let mut failures = String::new();
    for (i, c) in cases.iter().enumerate() {
        let text = if c.from.is_empty() {
            format!("{MIN}\n{}", c.to)
        } else {
            assert!(MIN.contains(c.from), "case {i}: `{}` not in MIN", c.from);
            MIN.replacen(c.from, c.to, 1)
        };
        let (line, column) = position(&text, c.at);
        let errs = match parse_in_fixtures(&text) {
            Ok(_) => {
                let _ = writeln!(failures, "case {i} ({}): no error", c.says);
                continue;
            }
            Err(e) => e,
        };
        let found = errs.errors.iter().find(|d| {
            d.field == c.field && (d.message.contains(c.says) || d.hint.contains(c.says))
        });
        match found {
            None => {
                let _ = writeln!(
                    failures,
                    "case {i}: no error for field `{}` saying `{}`; got:\n{errs}",
                    c.field, c.says
                );
            }
            Some(d) => {
                if (d.line, d.column) != (line, column) {
                    let _ = writeln!(failures, "case {i}: {d}\n  expected at {line}:{column}",);
                }
                if d.file != fixtures().join("case.toml") {
                    let _ = writeln!(failures, "case {i}: wrong file in {d}");
                }
            }
        }
        if errs.errors.len() != c.count {
            let _ = writeln!(
                failures,
                "case {i}: expected {} error(s), got:\n{errs}",
                c.count
            );
        }
    }
    assert!(failures.is_empty(), "{failures}");
}
