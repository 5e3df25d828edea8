//! The steer TOML an import prints: sections in the order of the configuration reference,
//! each with a comment naming the UCI line it came from.

use std::fmt::Write;

use super::{Note, NoteKind, visible};

/// A TOML basic string.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `key = ["a", "b"]`.
pub(crate) fn list(key: &str, items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("{key} = [{}]", items.join(", "))
}

#[derive(Debug, Default)]
pub(crate) struct Out {
    pub source: String,
    pub lan: Vec<String>,
    pub mark_mask: Option<u32>,
    pub wans: Vec<WanOut>,
    pub policies: Vec<PolicyOut>,
    pub sets: Vec<SetOut>,
    pub default: Option<(String, String)>,
    pub dns_needed: bool,
}

#[derive(Debug)]
pub(crate) struct WanOut {
    pub comment: String,
    pub name: String,
    pub interface: String,
    pub mark: u32,
    pub table: u32,
    /// `[wan.track]` lines.
    pub track: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct PolicyOut {
    pub comment: String,
    pub name: String,
    /// (WAN, metric, weight).
    pub members: Vec<(String, u32, u32)>,
    pub last_resort: Option<String>,
}

#[derive(Debug)]
pub(crate) struct SetOut {
    pub comment: String,
    /// Written commented out (with this reason above it): what it needs is not in steer's
    /// hands yet (an ipset to export, a policy steer cannot express).
    pub disabled: Option<String>,
    pub name: String,
    pub policy: String,
    /// Every other line (`match = "dst"`, `proto = [...]`).
    pub lines: Vec<String>,
}

impl Out {
    pub(crate) fn render(&self, notes: &[Note]) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "# steer configuration imported from {} by `steer import`.",
            visible(&self.source)
        );
        t.push_str(
            "# Check it with `steer check -c FILE`; every key is in docs/configuration.md.\n",
        );
        for n in notes {
            let tag = match n.kind {
                NoteKind::NotImported => "# NOT IMPORTED: ",
                NoteKind::Unknown => "# UNKNOWN OPTION: ",
                NoteKind::Check => "# CHECK: ",
            };
            let _ = writeln!(t, "{tag}{}:{}: {}", n.file, n.line, n.what);
            if !n.hint.is_empty() {
                let _ = writeln!(t, "#   -> {}", n.hint);
            }
        }
        t.push_str("\n[general]\n");
        let _ = writeln!(t, "{}", list("lan", &self.lan));
        if let Some(m) = self.mark_mask {
            let _ = writeln!(t, "mark_mask = {m:#x}");
        }
        for w in &self.wans {
            let _ = writeln!(t, "\n# {}", visible(&w.comment));
            let _ = writeln!(
                t,
                "[[wan]]\nname = {}\ninterface = {}\nmark = {:#x}\ntable = {}\ngateway = \"auto\"\ngateway6 = \"auto\"\n[wan.track]",
                quote(&w.name),
                quote(&w.interface),
                w.mark,
                w.table
            );
            for l in &w.track {
                let _ = writeln!(t, "{l}");
            }
        }
        for p in &self.policies {
            let _ = writeln!(t, "\n# {}", visible(&p.comment));
            let members: Vec<String> = p
                .members
                .iter()
                .map(|(w, m, wt)| format!("{{ wan = {}, metric = {m}, weight = {wt} }}", quote(w)))
                .collect();
            let _ = writeln!(
                t,
                "[[policy]]\nname = {}\nmembers = [{}]",
                quote(&p.name),
                members.join(", ")
            );
            if let Some(lr) = &p.last_resort {
                let _ = writeln!(t, "last_resort = {}", quote(lr));
            }
        }
        for s in &self.sets {
            let mut block = format!(
                "[[set]]\nname = {}\npolicy = {}\n",
                quote(&s.name),
                quote(&s.policy)
            );
            for l in &s.lines {
                block.push_str(l);
                block.push('\n');
            }
            let _ = writeln!(t, "\n# {}", visible(&s.comment));
            match &s.disabled {
                Some(why) => {
                    let _ = writeln!(t, "# NOT IMPORTED ({}):", visible(why));
                    for l in block.lines() {
                        let _ = writeln!(t, "# {l}");
                    }
                }
                None => t.push_str(&block),
            }
        }
        if let Some((policy, comment)) = &self.default {
            let _ = writeln!(
                t,
                "\n# {}\n[default]\npolicy = {}",
                visible(comment),
                quote(policy)
            );
        }
        if self.dns_needed {
            t.push_str(
                "\n# Domain sets learn their addresses from DNS answers: steer's forwarder in front of\n\
                 # dnsmasq (move dnsmasq to port 5335), see README \"Domain sets\".\n\
                 # [dns]\n# listen = [\"192.168.1.1:53\"]\n# upstreams = [\"127.0.0.1:5335\"]\n",
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote("x\ty"), "\"x\\u0009y\"");
        assert_eq!(list("k", &["a".into(), "b".into()]), "k = [\"a\", \"b\"]");
    }
}
