//! The file as a whole: syntax, the shape of each section (unknown keys, types, required
//! keys), how diagnostics are shown and ordered, and what stops checking.

use super::*;

const CASES: &[Case] = &[
    case(
        "name = \"wan1\"",
        "name = wan1",
        "wan1\ninterface",
        "",
        "double quotes",
    ),
    case(
        "table = 101",
        "table = 101\ntable = 103",
        "table = 103",
        "",
        "duplicate key",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "targets = [\"1.1.1.1\"]\nintreval_ms = 500",
        "intreval_ms",
        "wan[wan1].track.intreval_ms",
        "did you mean `interval_ms`?",
    ),
    case(
        "",
        "[control]\nfoo = 1\n",
        "foo",
        "control.foo",
        "valid keys here are `socket`, `metrics`, `metrics_public`",
    ),
    case(
        "",
        "[vrrp]\nvrid = 1\n",
        "[vrrp]",
        "vrrp",
        "expected a list of tables, found a table",
    ),
    case(
        "mark = 0x100",
        "mark = \"0x100\"",
        "\"0x100\"",
        "wan[wan1].mark",
        "expected an integer, found a string",
    ),
    case(
        "lan = [\"br-lan\"]",
        "lan = \"br-lan\"",
        "\"br-lan\"",
        "general.lan",
        "a single entry still needs the brackets",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "prefixes = [\"10.0.0.0/8\", 10]",
        "10]",
        "set[s].prefixes[1]",
        "expected a string",
    ),
    case(
        "",
        "[general.capacity]\ndst_v4 = true\n",
        "true",
        "general.capacity.dst_v4",
        "expected an integer, found a boolean",
    ),
    case(
        "interface = \"eth1\"\n",
        "",
        "[[wan]]",
        "wan[wan1].interface",
        "required key `interface` is missing",
    ),
    case(
        "[wan.track]\ntargets = [\"1.1.1.1\"]\n",
        "",
        "[[wan]]",
        "wan[wan1].track",
        "no health tracking",
    ),
    case(
        "targets = [\"1.1.1.1\"]",
        "interval_ms = 500",
        "[wan.track]",
        "wan[wan1].track.targets",
        "required key `targets` is missing",
    ),
    case(
        "[general]\nlan = [\"br-lan\"]\n",
        "",
        "",
        "general",
        "[general] section is missing",
    ),
];

#[test]
fn each_class_of_error_has_its_own_located_message() {
    check_cases(CASES);
}

#[test]
fn display_has_file_line_column_field_value_message_and_hint() {
    let text = MIN.replacen("mark = 0x100", "mark = 0x10000", 1);
    let e = errors(&text);
    assert_eq!(
        e.to_string(),
        format!(
            "{}:7:8: wan[wan1].mark = 0x10000: mark 0x10000 is outside general.mark_mask (0xff00); use a mark made only of the mask's bits, such as 0x100 or 0x200",
            fixtures().join("case.toml").display()
        )
    );
}

#[test]
fn all_errors_are_reported_at_once_in_file_order() {
    let text = r#"[general]
lan = ["br-lan"]
mark_mask = 0xff00
dupilcates = "error"

[[wan]]
name = "wan1"
interface = "eth1"
mark = 0x100
table = 254
[wan.track]
targets = ["1.1.1.1"]
timeout_ms = 900

[[wan]]
name = "wan2"
interface = "eth2"
mark = 0x100
table = 102
[wan.track]
targets = ["9.9.9.9"]
bogus = true

[[policy]]
name = "p"
members = [{ wan = "wan1" }, { wan = "wan9" }]

[[set]]
name = "s"
policy = "p"
prefixes = ["10.1.0.0/8", "192.168.1.010"]
domains = ["*.example.com"]

[default]
policy = "nope"
"#;
    let e = errors(text);
    let got: Vec<(usize, usize, &str)> = e
        .errors
        .iter()
        .map(|d| (d.line, d.column, d.field.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (4, 1, "general.dupilcates"),
            (10, 9, "wan[wan1].table"),
            (13, 14, "wan[wan1].track.timeout_ms"),
            (18, 8, "wan[wan2].mark"),
            (22, 1, "wan[wan2].track.bogus"),
            (26, 38, "policy[p].members[1].wan"),
            (31, 13, "set[s].prefixes[0]"),
            (31, 27, "set[s].prefixes[1]"),
            (32, 12, "set[s].domains[0]"),
            (35, 10, "default.policy"),
        ],
        "{e}"
    );
    assert!(e.errors[0].hint.contains("did you mean `duplicates`?"));
    assert_eq!(e.to_string().lines().count(), 10);
}

#[test]
fn every_unknown_key_is_reported_with_a_suggestion_when_one_is_close() {
    let text = MIN
        .replacen(
            "lan = [\"br-lan\"]",
            "lan = [\"br-lan\"]\nmarkmask = 0xff00\nxpd = true",
            1,
        )
        .replacen("table = 101", "table = 101\ngatway = \"192.0.2.1\"", 1)
        .replacen(
            "targets = [\"9.9.9.9\"]",
            "targets = [\"9.9.9.9\"]\nup_afer = 2\nflap_guard = 3",
            1,
        )
        .replacen("prefixes =", "prefix = [\"10.0.0.0/8\"]\nprefixes =", 1)
        + "\n[contrl]\nsocket = \"/run/steer.sock\"\n";
    let e = errors(&text);
    let got: Vec<(&str, &str)> = e
        .errors
        .iter()
        .map(|d| (d.field.as_str(), d.hint.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("general.markmask", "did you mean `mark_mask`?"),
            ("general.xpd", "did you mean `xdp`?"),
            ("wan[wan1].gatway", "did you mean `gateway`?"),
            ("wan[wan2].track.up_afer", "did you mean `up_after`?"),
            (
                "wan[wan2].track.flap_guard",
                "valid keys here are `method`, `targets`, `query`, `host`, `tcp_refused`, `http_status`, `interval_ms`, `timeout_ms`, `reliability`, `down_after`, `up_after`, `max_latency_ms`, `max_loss_percent`, `recover_latency_ms`, `recover_loss_percent`, `loss_window`, `failure_interval_ms`, `quiet_interval_ms`, `passive`, `passive_window_ms`"
            ),
            ("set[s].prefix", "did you mean `prefixes`?"),
            ("contrl", "did you mean `control`?"),
        ],
        "{e}"
    );
    // Each is located at its key.
    for d in &e.errors {
        let key = d.field.rsplit('.').next().unwrap();
        assert_eq!((d.line, d.column), position(&text, key), "{d}");
    }
}

#[test]
fn unreadable_files_are_errors_without_a_position() {
    let missing = fixtures().join("does-not-exist.toml");
    let e = config::load(&missing).unwrap_err();
    assert_eq!(e.errors.len(), 1);
    let d = &e.errors[0];
    assert_eq!((d.line, d.column), (0, 0));
    assert!(
        d.message.contains("cannot read the configuration file"),
        "{d}"
    );
    assert!(d.message.contains("No such file"), "{d}");
    assert!(!e.to_string().contains(":0:0"), "{e}");
}

#[test]
fn a_value_of_the_wrong_type_is_reported_once_and_the_rest_still_checked() {
    // Each of these would otherwise cause a second, misleading error.
    let text = MIN
        .replacen("name = \"wan2\"", "name = 2", 1)
        .replacen(
            "targets = [\"1.1.1.1\"]",
            "targets = \"1.1.1.1\"\nreliability = 1",
            1,
        )
        .replacen(
            "lan = [\"br-lan\"]",
            "lan = [\"br-lan\"]\nmark_mask = \"0xff00\"",
            1,
        )
        .replacen("prefixes = [\"10.0.0.0/8\"]", "prefixes = [10]", 1)
        .replacen("table = 101", "table = 254", 1);
    let e = errors(&text);
    let got: Vec<&str> = e.errors.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(
        got,
        [
            "general.mark_mask",
            "wan[wan1].table",
            "wan[wan1].track.targets",
            "wan[1].name",
            "set[s].prefixes[0]",
        ],
        "{e}"
    );
}

#[test]
fn a_syntax_error_is_located_and_stops_checking() {
    // An unterminated string on line 21, and a bad mark (never reached) on line 7.
    let text = MIN
        .replacen("name = \"p\"", "name = \"p", 1)
        .replacen("0x100", "0", 1);
    let e = errors(&text);
    assert_eq!(e.errors.len(), 1, "{e}");
    let d = &e.errors[0];
    assert!(d.message.starts_with("invalid TOML:"), "{e}");
    assert_eq!(d.line, 21, "{e}");
    assert!(d.hint.contains("close the string"), "{e}");
}

#[test]
fn a_utf8_bom_and_crlf_in_the_config_file_are_accepted() {
    let text = format!("\u{feff}{}", MIN.replace('\n', "\r\n"));
    let c = parse_in_fixtures(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.wans.len(), 2);
    let e = errors(&text.replacen("0x100", "0", 1));
    assert_eq!((e.errors[0].line, e.errors[0].column), (7, 8), "{e}");
}
