//! Names: the rules for object names, Linux interface names and domain names, and the check of
//! an object's name that every section with named items shares.

use super::{check::Claims, diag::Ctx, schema::S};
use crate::{
    prefix::{parse_addr, parse_prefix},
    shown::Shown,
};

/// Longest object (WAN, policy, set) name.
pub const MAX_NAME_LEN: usize = 47;
/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Whether `name` is a valid WAN/policy/set name: 1..=47 of `[A-Za-z0-9_.-]`.
pub fn valid_name(name: &str) -> bool {
    name_problem(name).is_none()
}

/// Why `name` is not a valid object name (for messages).
fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the name is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!(
            "the name is {} bytes long; the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        .map(|c| format!("the name contains {}", char_shown(c)))
}

/// Checks the name of an object of `kind` (`WAN`, `policy`, `set`) and that no other object of
/// its kind has it.
pub(super) fn check_object_name(
    cx: &mut Ctx<'_>,
    v: &S<String>,
    field: &str,
    kind: &str,
    names: &mut Claims<String, ()>,
) {
    let name = v.get_ref();
    if let Some(problem) = name_problem(name) {
        cx.err(
            &v.span(),
            field,
            format!("invalid {kind} name: {problem}"),
            "use 1 to 47 letters, digits, `_`, `.` or `-`",
        );
    }
    if let Err(((), other)) = names.claim(cx, name.clone(), (), &v.span()) {
        cx.err(
            &v.span(),
            field,
            format!(
                "{kind} name `{}` is already used by the {kind} at line {other}",
                escaped(name)
            ),
            format!("give each {kind} its own name"),
        );
    }
}

/// Why `name` is not an interface name steer takes, if it is not.
///
/// Linux refuses only `/`, `:`, whitespace and `.`/`..`, but steer writes the names into its
/// nftables table (quoted), where `"` ends the string and a trailing `*` makes a wildcard that
/// matches other interfaces (nft then refuses the whole table, after the routes changed); and
/// into messages, where a control character would reach the terminal. So only the characters
/// of real interface names are taken: ASCII letters, digits, `-`, `_` and `.` (`eth0.100`,
/// `br-lan`, `pppoe-wan`, `lte_1`).
pub fn ifname_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the interface name is empty".into());
    }
    if name.len() > MAX_IFNAME_LEN {
        return Some(format!(
            "interface names are at most {MAX_IFNAME_LEN} bytes; this one has {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Some(format!("`{name}` cannot be an interface name"));
    }
    if let Some(c) = name.chars().find(|c| !ifname_char(*c)) {
        let why = match c {
            '@' => {
                "; `ip link` shows a VLAN or veth as NAME@PARENT: the interface's name is the \
                 part before `@`"
            }
            '*' | '+' => "; steer takes whole interface names, not patterns: list each interface",
            '"' | '\\' => "; nftables cannot take it in an interface name",
            _ => "",
        };
        return Some(format!(
            "interface name contains {}: steer takes letters, digits, `-`, `_` and `.` in \
             interface names{why}",
            char_shown(c)
        ));
    }
    None
}

/// Whether `c` may be in an interface name steer takes (see [`ifname_problem`]).
pub fn ifname_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// A character as a message shows it: quoted, and written as the file writes it (`'\u001b'`,
/// a TOML escape, as the value itself is shown) when it would not print as itself.
pub(crate) fn char_shown(c: char) -> String {
    if escaped(&c.to_string()) == c.to_string() {
        format!("{c:?}")
    } else {
        format!("'{}'", escaped(&c.to_string()))
    }
}

/// A value from the configuration as a message shows it: bounded as [`Shown`] bounds it, and a
/// character that would not print as itself written as the TOML escape the file has for it
/// (`\u001b`), so that the message and the value it quotes (`= "w\u001b[31m"`) agree.
pub(crate) fn escaped(value: &str) -> String {
    let mut out = String::new();
    let cut = value.chars().count() > crate::shown::SHOWN_CHARS;
    for c in value.chars().take(crate::shown::SHOWN_CHARS) {
        super::diag::push_toml_char(&mut out, c);
    }
    if cut {
        out.push_str(&format!("… ({} bytes)", value.len()));
    }
    out
}

/// A domain as steer stores it: lowercase, no trailing dot.
///
/// Refuses wildcards (a name already matches its subdomains), IP literals, empty labels, labels
/// over 63 bytes, names over 253 bytes and anything outside letters, digits and `-` (a label may
/// not start or end with `-`). The error is `(message, hint)`.
pub fn normalize_domain(text: &str) -> Result<String, (String, String)> {
    let t = text.trim();
    // The name as messages show it: it may be a 10 MB line with control characters in it.
    let q = Shown(t);
    if t.is_empty() {
        return Err((
            "empty domain".into(),
            "write a name such as example.com, or remove the entry".into(),
        ));
    }
    if let Some(rest) = t.strip_prefix("*.") {
        return Err((
            format!("`{q}` has a wildcard"),
            format!(
                "write `{}`: a name already matches itself and all its subdomains",
                Shown(rest)
            ),
        ));
    }
    if parse_addr(t).is_ok() || parse_prefix(t, true).is_ok() {
        return Err((
            format!("`{q}` is an IP address, not a domain name"),
            "put addresses and networks in the set's `prefixes` (or a list file)".into(),
        ));
    }
    if t.contains("://") || t.contains('/') {
        let host = t
            .split("://")
            .last()
            .unwrap_or(t)
            .split(['/', ':'])
            .next()
            .unwrap_or(t);
        return Err((
            format!("`{q}` is a URL, not a domain name"),
            format!("write only the host name: `{}`", Shown(host)),
        ));
    }
    let name = t.strip_suffix('.').unwrap_or(t).to_ascii_lowercase();
    if name.len() > 253 {
        return Err((
            format!(
                "`{q}` is {} bytes long; domain names are at most 253",
                name.len()
            ),
            "use a shorter name (a name also matches its subdomains)".into(),
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err((
                format!("`{q}` has an empty label (two dots in a row, or a leading dot)"),
                "write the name as labels separated by single dots, e.g. example.com".into(),
            ));
        }
        if label.len() > 63 {
            return Err((
                format!(
                    "label `{}` is {} bytes long; labels are at most 63",
                    Shown(label),
                    label.len()
                ),
                "check the name; DNS labels cannot be longer".into(),
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            let hint = if c.is_ascii() {
                "use only letters, digits and `-` in each label".to_string()
            } else {
                "write internationalized names in their ASCII (punycode) form, e.g. xn--bcher-kva.example".to_string()
            };
            return Err((format!("`{q}` contains {c:?}"), hint));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err((
                format!("label `{}` starts or ends with `-`", Shown(label)),
                "a label may contain `-` only between letters or digits".into(),
            ));
        }
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names() {
        assert!(valid_name("wan2-first"));
        assert!(valid_name("a.b_c-1"));
        assert!(!valid_name(""));
        assert!(!valid_name("has space"));
        assert!(!valid_name("wän1"));
        assert!(!valid_name(&"x".repeat(48)));
        assert!(valid_name(&"x".repeat(47)));
    }

    #[test]
    fn interface_names() {
        assert_eq!(ifname_problem("br-lan"), None);
        assert_eq!(ifname_problem("eth0.100"), None);
        assert!(ifname_problem("").is_some());
        assert!(ifname_problem("0123456789abcdef").is_some());
        assert!(ifname_problem("eth0:1").is_some());
        assert!(ifname_problem("a/b").is_some());
        assert!(ifname_problem("a b").is_some());
        assert!(ifname_problem("..").is_some());
        for real in [
            "eth0",
            "eth0.100",
            "wan-lte",
            "br-lan",
            "pppoe-wan",
            "wg0",
            "lte_1",
        ] {
            assert_eq!(ifname_problem(real), None, "{real}");
        }
    }

    #[test]
    fn interface_names_nftables_would_misread_are_refused() {
        // `"` ends nft's quoted string (syntax error), a trailing `*` is a wildcard
        // (conflicting intervals, or other interfaces matched); the rest never names a real
        // interface and may reach a terminal.
        for bad in [
            "t7\"}x",
            "t7c*",
            "t7\\",
            "a{b",
            "a;b",
            "a$b",
            "a@b",
            "a#b",
            "a'b",
            "ppp+",
            "w\u{1b}[31m",
            "wän",
        ] {
            let problem = ifname_problem(bad).unwrap_or_else(|| panic!("{bad:?} taken"));
            assert!(problem.contains("letters, digits"), "{problem}");
        }
        assert!(
            ifname_problem("eth0.100@eth0")
                .unwrap()
                .contains("before `@`")
        );
        assert!(ifname_problem("t7c*").unwrap().contains("not patterns"));
        assert!(
            ifname_problem("w\u{1b}x").unwrap().contains("'\\u001b'"),
            "{:?}",
            ifname_problem("w\u{1b}x")
        );
    }

    #[test]
    fn a_bad_domain_is_named_cut_and_escaped() {
        let huge = format!("{}\x1b[2J", "a.".repeat(5_000_000));
        let (message, hint) = normalize_domain(&huge).unwrap_err();
        assert!(message.len() < 300, "{}", message.len());
        assert!(
            message.contains(&format!("({} bytes)", huge.len())),
            "{message}"
        );
        let (message, _) = normalize_domain("ex\x1bample.com").unwrap_err();
        assert!(message.contains("ex\\u{1b}ample.com"), "{message}");
        assert!(!hint.contains('\x1b'));
    }

    #[test]
    fn domains() {
        assert_eq!(normalize_domain("Example.COM.").unwrap(), "example.com");
        assert_eq!(
            normalize_domain("xn--bcher-kva.de").unwrap(),
            "xn--bcher-kva.de"
        );
        assert!(
            normalize_domain("*.example.com")
                .unwrap_err()
                .1
                .contains("`example.com`")
        );
        assert!(
            normalize_domain("192.0.2.1")
                .unwrap_err()
                .1
                .contains("prefixes")
        );
        assert!(normalize_domain("2001:db8::1").is_err());
        assert!(normalize_domain("a..b").is_err());
        assert!(normalize_domain("-a.b").is_err());
        assert!(normalize_domain("a_b.c").is_err());
        assert!(normalize_domain(&format!("{}.com", "a".repeat(64))).is_err());
        assert!(normalize_domain(&["abc"; 70].join(".")).is_err());
        assert!(
            normalize_domain("https://example.com/x")
                .unwrap_err()
                .1
                .contains("`example.com`")
        );
    }
}
