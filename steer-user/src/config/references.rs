//! References between sections: the names one section defines (WANs, policies), checked where
//! another section names them.

use super::{
    diag::Ctx,
    names::{escaped, valid_name},
    schema::S,
    suggest::{did_you_mean, list_names},
};

/// The names of one kind of object, to check references to them.
pub(super) struct Defined {
    /// How messages name one: `WAN`, `policy`.
    pub kind: &'static str,
    pub plural: &'static str,
    /// Its key in the file: `wan`, `policy`.
    pub key: &'static str,
    pub names: Vec<String>,
    /// A name that needs no definition (the `main` policy).
    pub built_in: Option<&'static str>,
}

impl Defined {
    pub fn new<'n>(
        kind: &'static str,
        plural: &'static str,
        key: &'static str,
        names: impl Iterator<Item = &'n String>,
    ) -> Self {
        Defined {
            kind,
            plural,
            key,
            names: names.cloned().collect(),
            built_in: None,
        }
    }
}

/// Reports a reference to an undefined object.
pub(super) fn check_reference(cx: &mut Ctx<'_>, v: &S<String>, field: &str, defined: &Defined) {
    let name = v.get_ref().as_str();
    if defined.names.iter().any(|d| d == name) || defined.built_in == Some(name) {
        return;
    }
    if definition_mistyped(cx, defined.key) {
        return; // it may be the one written with the wrong type, reported already
    }
    let Defined {
        kind, plural, key, ..
    } = defined;
    // Suggested and listed: the names that were taken, each once. An invalid name or a
    // duplicate was refused where it is defined; repeating it here would offer a name that
    // cannot be used (and print its control characters raw).
    let mut listed: Vec<&str> = Vec::new();
    for n in &defined.names {
        if valid_name(n) && !listed.contains(&n.as_str()) {
            listed.push(n);
        }
    }
    let names = || listed.iter().copied();
    let hint = if listed.is_empty() {
        format!("no {plural} are defined; define one with [[{key}]] first")
    } else {
        format!(
            "{}defined {plural}: {}",
            did_you_mean(name, names()),
            list_names(names())
        )
    };
    cx.err(
        &v.span(),
        field,
        format!("{kind} `{}` is not defined", escaped(name)),
        hint,
    );
}

/// Whether a definition under `key` (`wan`, `policy`) was removed for its type: the whole
/// list, one item, or an item's name. Its name is then unknown.
fn definition_mistyped(cx: &Ctx<'_>, key: &str) -> bool {
    cx.removed.iter().any(|path| {
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

#[cfg(test)]
mod tests {
    use crate::config::testing::errors_in;

    #[test]
    fn a_reference_to_an_undefined_name_escapes_it_and_offers_only_names_taken() {
        let text = r#"
[general]
lan = ["br-lan"]

[[wan]]
name = "w\u001b[31mred"
interface = "eth1"
mark = 0x100
table = 101
[wan.track]
targets = ["1.1.1.1"]

[[wan]]
name = "wan1"
interface = "eth2"
mark = 0x200
table = 102
[wan.track]
targets = ["1.1.1.1"]

[[wan]]
name = "wan1"
interface = "eth1"
mark = 0x300
table = 103
[wan.track]
targets = ["1.1.1.1"]

[[policy]]
name = "p"
members = [{ wan = "w\u001b[31mrex" }]
"#;
        let errors: Vec<String> = crate::config::parse(text, std::path::Path::new("steer.toml"))
            .unwrap_err()
            .errors
            .iter()
            .map(|d| format!("{}: {}; {}", d.field, d.message, d.hint))
            .collect();
        assert!(errors.iter().all(|e| !e.contains('\x1b')), "{errors:#?}");
        let reference = errors
            .iter()
            .find(|e| e.starts_with("policy[p].members[0].wan"))
            .expect("the reference is refused");
        assert!(
            reference.contains("WAN `w\\u001b[31mrex` is not defined"),
            "{reference}"
        );
        assert!(reference.contains("defined WANs: `wan1`"), "{reference}");
        assert!(!reference.contains("`wan1`, `wan1`"), "{reference}");
        assert!(!reference.contains("did you mean"), "{reference}");
        let invalid = errors
            .iter()
            .find(|e| e.starts_with("wan[0].name"))
            .expect("the invalid name is refused");
        assert!(invalid.contains("contains '\\u001b'"), "{invalid}");
        // Any message that names the refused WAN (here: whose interface another takes).
        assert!(
            errors
                .iter()
                .any(|e| e.contains("interface of WAN `w\\u001b[31mred`")),
            "{errors:#?}"
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
}
