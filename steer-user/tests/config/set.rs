//! `[[set]]`: its keys, inline prefixes, and the capacity its prefixes need.

use super::*;

const CASES: &[Case] = &[
    // `proto = []` would mean "any", silently.
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "prefixes = [\"10.0.0.0/8\"]\nproto = []\ndports = [\"443\"]",
        "[]",
        "set[s].proto",
        "`proto` lists nothing",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "prefixes = [\"10.0.0.0/8\"]\nproto = [\"tcp\"]\ndports = []",
        "[]",
        "set[s].dports",
        "remove `dports` for no constraint",
    ),
    // ICMP has no ports: the rule could never match.
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "prefixes = [\"10.0.0.0/8\"]\nproto = [\"icmp\"]\ndports = [\"5060\"]",
        "[\"icmp\"]",
        "set[s].proto",
        "`dports` can never match",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "prefixes = [\"10.0.0.0/8\"]\nproto = [\"icmpv6\", \"47\"]\nsports = [\"5060\"]",
        "[\"icmpv6\"",
        "set[s].proto",
        "`sports` can never match",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "prefixes = [\"10.0.0.0/8\"]\nproto = [\"udp\"]\ndports = [\"+5060\"]",
        "\"+5060\"",
        "set[s].dports[0]",
        "without sign, spaces or leading zeros: \"5060\"",
    ),
    case(
        "name = \"s\"",
        "name = \"a-set-name-that-is-much-too-long-for-steer-to-accept\"",
        "\"a-set",
        "set[0].name",
        "the limit is 47",
    ),
    case(
        "policy = \"p\"",
        "policy = \"q\"",
        "\"q\"",
        "set[s].policy",
        "policy `q` is not defined",
    ),
    case(
        "policy = \"p\"",
        "policy = \"q\"",
        "\"q\"",
        "set[s].policy",
        "defined policies: `p`",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "prefixes = []",
        "[[set]]",
        "set[s]",
        "nothing to match",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "prefixes = [\"10.0.0.0/8\"]\nmatch = \"destination\"",
        "\"destination\"",
        "set[s].match",
        "use one of `dst`, `src`",
    ),
    case(
        "\"10.0.0.0/8\"",
        "\"10.1.2.3/8\"",
        "\"10.1.2.3/8\"",
        "set[s].prefixes[0]",
        "host bits set; the network is 10.0.0.0/8",
    ),
    case(
        "\"10.0.0.0/8\"",
        "\"10.0.0.0/8\", \"010.0.0.0/8\"",
        "\"010.",
        "set[s].prefixes[1]",
        "write `10.0.0.0/8` if decimal was meant, or `8.0.0.0/8` if octal was meant",
    ),
    case(
        "\"10.0.0.0/8\"",
        "\"0.0.0.0/0\"",
        "\"0.0.0.0/0\"",
        "set[s].prefixes[0]",
        "set `allow_default_route = true` in it",
    ),
    case(
        "\"10.0.0.0/8\"",
        "\"::ffff:10.0.0.0/104\"",
        "\"::ffff",
        "set[s].prefixes[0]",
        "write the IPv4 network `10.0.0.0/8`",
    ),
    case(
        "\"10.0.0.0/8\"",
        "\"example.com\"",
        "\"example.com\"",
        "set[s].prefixes[0]",
        "put domain names in the set's `domains`",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "domains = [\"*.example.com\"]",
        "\"*.",
        "set[s].domains[0]",
        "write `example.com`: a name already matches itself and all its subdomains",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "domains = [\"192.0.2.1\"]",
        "\"192.0.2.1\"",
        "set[s].domains[0]",
        "put addresses and networks in the set's `prefixes`",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "domains = [\"exa_mple.com\"]",
        "\"exa_mple",
        "set[s].domains[0]",
        "letters, digits and `-`",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "match = \"src\"\ndomains = [\"example.com\"]",
        "[\"example.com\"]",
        "set[s].domains",
        "only work in sets with match = \"dst\"",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "files = [\"lists/missing.txt\"]",
        "\"lists/missing.txt\"",
        "set[s].files[0]",
        "cannot read list file `lists/missing.txt` of set `s`",
    ),
    case(
        "prefixes = [\"10.0.0.0/8\"]",
        "files = [\"lists/missing.txt\"]",
        "\"lists/missing.txt\"",
        "set[s].files[0]",
        "relative to the config file's directory",
    ),
];

#[test]
fn each_class_of_error_has_its_own_located_message() {
    check_cases(CASES);
}

#[test]
fn default_route_in_a_set_needs_allow_default_route() {
    let text = MIN.replacen("\"10.0.0.0/8\"", "\"0.0.0.0/0\", \"::/0\"", 1);
    assert_eq!(errors(&text).errors.len(), 2);
    let text = text.replacen("prefixes =", "allow_default_route = true\nprefixes =", 1);
    let c = parse_in_fixtures(&text).unwrap();
    assert!(c.sets[0].allow_default_route);
    assert_eq!(c.sets[0].prefixes.len(), 2);
}

#[test]
fn sets_larger_than_a_capacity_are_refused_with_the_size_needed() {
    let text = MIN
        .replacen(
            "\"10.0.0.0/8\"",
            "\"10.0.0.0/8\", \"192.0.2.0/24\", \"2001:db8::/32\"",
            1,
        )
        .replacen(
            "lan = [\"br-lan\"]",
            "lan = [\"br-lan\"]\n[general.capacity]\ndst_v4 = 1",
            1,
        );
    let e = errors(&text);
    assert_eq!(e.errors.len(), 1, "{e}");
    let d = &e.errors[0];
    assert_eq!(d.field, "general.capacity.dst_v4");
    // Placed at the capacity's own value (`dst_v4 = 1`), not at the top of the file.
    assert_eq!((d.line, d.column), (4, 10));
    assert!(d.message.contains("2 IPv4 destination prefixes"), "{d}");
    assert!(d.hint.contains("at least 2"), "{d}");
}

/// 20,000 sets took 16 s (release) before the refusal: each set was still read and compared
/// with every earlier one. Refused at the first set over the limit, without reading the rest.
#[test]
fn too_many_sets_are_refused_at_once() {
    let mut text = MIN.to_string();
    for i in 0..20_000 {
        text.push_str(&format!(
            "\n[[set]]\nname = \"s{i}\"\npolicy = \"p\"\nprefixes = [\"10.{}.{}.0/24\"]\n",
            i / 256 % 256,
            i % 256
        ));
    }
    let started = std::time::Instant::now();
    let e = errors(&text);
    let took = started.elapsed();
    assert_eq!(e.errors.len(), 1, "{e}");
    assert!(
        e.errors[0]
            .message
            .contains("too many sets: steer supports at most 255"),
        "{e}"
    );
    // Unoptimized, on a shared machine: well over a minute before, under a second after.
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
}
