//! References between sections: the names one section defines (WANs, policies), checked where
//! another section names them.

use super::{
    diag::Ctx,
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
    cx.err(
        &v.span(),
        field,
        format!("{kind} `{name}` is not defined"),
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
