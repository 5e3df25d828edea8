//! Prefixes and domains in more than one set, by `general.duplicates`.

use steer::{config::DuplicatePolicy, model::Direction};

use super::*;

const TWO_SETS: &str = r#"
[[set]]
name = "a"
policy = "p"
prefixes = ["198.51.100.0/24", "203.0.113.0/24"]

[[set]]
name = "b"
policy = "p"
files = ["lists/dup.txt"]
domains = ["example.com"]

[[set]]
name = "c"
policy = "p"
prefixes = ["203.0.113.0/24"]
domains = ["EXAMPLE.com"]
"#;

#[test]
fn the_same_prefix_in_two_sets_of_one_direction_is_an_error_naming_both() {
    let text = format!("{MIN}{TWO_SETS}");
    let e = errors(&text);
    let cfg = fixtures().join("case.toml");
    let list = fixtures().join("lists/dup.txt");
    let got: Vec<String> = e.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            format!(
                "{c}:43:13: set[c].prefixes[0] = \"203.0.113.0/24\": 203.0.113.0/24 is in set `c` ({c}:43) and also in set `a` ({c}:32); a destination prefix can belong to one set only; remove it from one of the sets, or set general.duplicates = \"first-set-wins\" to let the earlier set keep it",
                c = cfg.display()
            ),
            format!(
                "{c}:44:12: set[c].domains[0] = \"EXAMPLE.com\": domain `example.com` is also in set `b` ({c}:38); remove it from one of the sets, or set general.duplicates = \"first-set-wins\" to let the earlier set keep it",
                c = cfg.display()
            ),
            format!(
                "{l}:3:3: set[b].files[0] = 198.51.100.0/24: 198.51.100.0/24 is in set `b` ({l}:3) and also in set `a` ({c}:32); a destination prefix can belong to one set only; remove it from one of the sets, or set general.duplicates = \"first-set-wins\" to let the earlier set keep it",
                c = cfg.display(),
                l = list.display()
            ),
        ]
    );
}

#[test]
fn first_set_wins_keeps_the_earlier_set() {
    let text = format!("{MIN}{TWO_SETS}").replacen(
        "lan = [\"br-lan\"]",
        "lan = [\"br-lan\"]\nduplicates = \"first-set-wins\"",
        1,
    );
    let c = parse_in_fixtures(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.general.duplicates, DuplicatePolicy::FirstSetWins);
    let prefixes = |name: &str| -> Vec<String> {
        c.set(name)
            .unwrap()
            .all_prefixes()
            .map(|p| p.to_string())
            .collect()
    };
    assert_eq!(prefixes("a"), ["198.51.100.0/24", "203.0.113.0/24"]);
    // dup.txt: 192.0.2.0/24, 198.51.100.0/24 (in a), 192.0.2.0/24 again (same set: once).
    assert_eq!(prefixes("b"), ["192.0.2.0/24"]);
    assert!(prefixes("c").is_empty());
    assert_eq!(c.set("b").unwrap().domains, ["example.com"]);
    assert!(c.set("c").unwrap().domains.is_empty());
}

#[test]
fn a_prefix_may_be_in_a_dst_set_and_a_src_set() {
    let text = format!(
        "{MIN}\n[[set]]\nname = \"from\"\npolicy = \"p\"\nmatch = \"src\"\nprefixes = [\"10.0.0.0/8\"]\n"
    );
    let c = parse_in_fixtures(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.sets[0].prefixes[0].prefix, c.sets[1].prefixes[0].prefix);
    assert_eq!(c.sets[1].direction, Direction::Src);
}

#[test]
fn the_same_prefix_twice_in_one_set_is_kept_once_inline_first() {
    let text = MIN.replacen(
        "prefixes = [\"10.0.0.0/8\"]",
        "prefixes = [\"192.0.2.0/24\", \"10.0.0.0/8\", \"10.0.0.0/8\"]\nfiles = [\"lists/dup.txt\"]",
        1,
    );
    let c = parse_in_fixtures(&text).unwrap_or_else(|e| panic!("{e}"));
    let inline: Vec<String> = c.sets[0]
        .prefixes
        .iter()
        .map(|e| format!("{} {}", e.prefix, e.origin.line))
        .collect();
    assert_eq!(inline, ["192.0.2.0/24 27", "10.0.0.0/8 27"]);
    // dup.txt lists 192.0.2.0/24 (inline already), 198.51.100.0/24 and 192.0.2.0/24 again.
    let listed: Vec<String> = c.sets[0].listed.iter().map(|p| p.to_string()).collect();
    assert_eq!(listed, ["198.51.100.0/24"]);
}
