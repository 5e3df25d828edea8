//! The part of the file the CLI reads to find a running steer (see [`super::load_endpoints`]):
//! the control socket, the pin directory and the WANs' routing tables, checked as a full load
//! checks them. The rest of the file is neither checked nor used, so `steer stop -c` still
//! works when it is broken.

use std::path::Path;

use super::{
    Endpoints,
    check::Claims,
    control,
    diag::{ConfigErrors, Ctx},
    document::{self, Keys},
    general,
    root::RawRoot,
    schema::{
        Field,
        Kind::{Int, Label, Table, TableList},
        S, item_label, opt, opt_shown,
    },
    wan,
};

/// A WAN's name only labels its table in messages. Nothing here is required: a missing key has
/// its default, or is part of the rest, which is not checked.
const ENDPOINTS: &[Field] = &[
    opt("general", Table(&[general::PIN_DIR]), general::EXAMPLE),
    opt(
        "wan",
        TableList(&[
            opt("name", Label, wan::NAME_EXAMPLE),
            opt("table", Int, wan::TABLE_EXAMPLE),
        ]),
        wan::EXAMPLE,
    ),
    opt_shown("control", Table(&[control::SOCKET]), control::EXAMPLE),
];

pub(super) fn read(text: &str, path: &Path) -> Result<Endpoints, ConfigErrors> {
    document::check(text, path, Keys::Only(ENDPOINTS), build)
}

fn build(cx: &mut Ctx<'_>, raw: RawRoot) -> Endpoints {
    let general = raw.general.map(S::into_inner).unwrap_or_default();
    let pin_dir = general::pin_dir(cx, &general);
    let mut claims = Claims::new();
    let mut tables = Vec::new();
    let wans = raw.wan.map(S::into_inner).unwrap_or_default();
    for (i, w) in wans.iter().enumerate() {
        let w = w.get_ref();
        let name = w.name.as_ref().map(|n| n.get_ref().as_str());
        let label = item_label("", "wan", i, name);
        let Some(table) = w.table.as_ref().filter(|_| !cx.mistyped(&label)) else {
            continue;
        };
        let field = format!("{label}.table");
        tables.push(wan::table(
            cx,
            table,
            &field,
            name.unwrap_or_default(),
            &mut claims,
        ));
    }
    let control = control::build(cx, raw.control);
    Endpoints {
        socket: control.socket,
        pin_dir,
        tables,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::read;
    use crate::config::{
        DEFAULT_PIN_DIR, DEFAULT_SOCKET, Endpoints, parse,
        testing::{errors_in, field_messages},
    };

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
        let found = read(BROKEN_ELSEWHERE, path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            found,
            Endpoints {
                socket: "/run/steer-test/steer.sock".into(),
                pin_dir: "/sys/fs/bpf/steer-test".into(),
                tables: vec![101, 102],
            }
        );
        let defaults = read("", path).unwrap();
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
        let errors: Vec<String> = match read(&text, path) {
            Ok(found) => panic!("accepted: {found:?}"),
            Err(e) => field_messages(&e),
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
        let syntax = read("[general\n", path).unwrap_err();
        assert!(
            syntax.errors[0].message.starts_with("invalid TOML"),
            "{syntax}"
        );
    }
}
