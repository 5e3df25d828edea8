//! The address corpus: what an entry of a set turns into, or the error it gets.

use steer::prefix::{AddrError, Prefix, parse_prefix};

use super::*;

/// What an entry should turn into.
enum Want {
    Ok(&'static str),
    /// An error whose message or hint contains this.
    Err(&'static str),
}

#[test]
fn address_corpus() {
    use Want::{Err, Ok};
    let corpus: &[(&str, bool, Want)] = &[
        // plain hosts and networks
        ("192.0.2.1", false, Ok("192.0.2.1/32")),
        ("192.0.2.0/24", false, Ok("192.0.2.0/24")),
        ("0.0.0.0", false, Ok("0.0.0.0/32")),
        ("255.255.255.255/32", false, Ok("255.255.255.255/32")),
        ("2001:db8::1", false, Ok("2001:db8::1/128")),
        ("2001:DB8::/32", false, Ok("2001:db8::/32")),
        ("::/128", false, Ok("::/128")),
        ("64:ff9b::/96", false, Ok("64:ff9b::/96")),
        ("::fffe:0:0/95", false, Ok("::fffe:0:0/95")),
        // whitespace is trimmed, not tolerated inside
        ("  10.0.0.0/8\t", false, Ok("10.0.0.0/8")),
        ("10.0.0.0 /8", false, Err("contains whitespace")),
        (
            "10.0.0.1 10.0.0.2",
            false,
            Err("one address or network per entry"),
        ),
        ("", false, Err("empty entry")),
        ("   ", false, Err("empty entry")),
        // leading zeros
        (
            "010.1.1.1",
            false,
            Err("write `10.1.1.1` if decimal was meant, or `8.1.1.1` if octal"),
        ),
        ("10.01.1.1", false, Err("leading zero")),
        (
            "10.0.0.09",
            false,
            Err("write `10.0.0.9` (no leading zeros)"),
        ),
        ("01.1.1.1", false, Err("write `1.1.1.1` (no leading zeros)")),
        ("00.0.0.0/8", false, Err("leading zero")),
        // shorthand and other IPv4 spellings
        (
            "10.1",
            false,
            Err("`10.1.0.0/16` for the network, or `10.0.0.1`"),
        ),
        ("10/8", false, Err("write all four octets: `10.0.0.0/8`")),
        (
            "10.0.0/24",
            false,
            Err("write all four octets: `10.0.0.0/24`"),
        ),
        ("1.2.3.4.5", false, Err("more than four")),
        ("0x0a.0.0.1", false, Err("hexadecimal")),
        ("0xa000001", false, Err("hexadecimal")),
        ("167772161", false, Err("write it dotted: `10.0.0.1`")),
        ("167772160/8", false, Err("write it dotted: `10.0.0.0/8`")),
        ("256.0.0.1", false, Err("octet 256")),
        ("1.2.3.1000", false, Err("octet 1000")),
        ("1..2.3", false, Err("empty IPv4 octet")),
        ("1.2.3.4.", false, Err("empty IPv4 octet")),
        ("10.0.0.0,10.1.0.0", false, Err("unexpected ','")),
        ("example.com", false, Err("is a name")),
        // prefix lengths
        ("10.0.0.0/024", false, Err("write `10.0.0.0/24`")),
        ("10.0.0.0/+24", false, Err("not a plain number")),
        ("10.0.0.0/-1", false, Err("not a plain number")),
        ("10.0.0.0/255.0.0.0", false, Err("not a plain number")),
        ("10.0.0.0/", false, Err("no prefix length")),
        ("10.0.0.0/33", false, Err("the longest is /32")),
        ("10.0.0.0/4294967296", false, Err("the longest is /32")),
        ("2001:db8::/129", false, Err("the longest is /128")),
        ("2001:db8::/0128", false, Err("write `2001:db8::/128`")),
        // host bits
        (
            "10.1.2.3/16",
            false,
            Err("10.1.2.3/16` has host bits set; the network is 10.1.0.0/16"),
        ),
        (
            "10.1.2.3/16",
            false,
            Err("write `10.1.0.0/16` for the whole network, or `10.1.2.3` for just that address"),
        ),
        ("2001:db8::1/32", false, Err("the network is 2001:db8::/32")),
        // IPv4-mapped IPv6
        (
            "::ffff:192.0.2.1",
            false,
            Err("write the IPv4 address `192.0.2.1`"),
        ),
        (
            "::ffff:c000:201",
            false,
            Err("write the IPv4 address `192.0.2.1`"),
        ),
        (
            "::ffff:192.0.2.0/120",
            false,
            Err("write the IPv4 network `192.0.2.0/24`"),
        ),
        (
            "::ffff:0:0/96",
            true,
            Err("write the IPv4 network `0.0.0.0/0`"),
        ),
        ("::ffff:010.0.0.1", false, Err("not a valid IPv6 address")),
        // zone ids, brackets, broken IPv6
        (
            "fe80::1%eth0",
            false,
            Err("write `fe80::1` without the zone id"),
        ),
        ("fe80::%eth0/64", false, Err("zone id")),
        (
            "[2001:db8::1]",
            false,
            Err("write `2001:db8::1` without brackets"),
        ),
        ("2001:db8:::1", false, Err("not a valid IPv6 address")),
        ("2001:db8::1::2", false, Err("not a valid IPv6 address")),
        (
            "2001:db8:0:0:0:0:0:0:1",
            false,
            Err("not a valid IPv6 address"),
        ),
        ("2001:db8::12345", false, Err("not a valid IPv6 address")),
        // the default route
        ("0.0.0.0/0", false, Err("set `allow_default_route = true`")),
        ("::/0", false, Err("matches every IPv6 address")),
        ("0.0.0.0/0", true, Ok("0.0.0.0/0")),
        ("::/0", true, Ok("::/0")),
        ("0.0.0.1/0", true, Err("the network is 0.0.0.0/0")),
    ];
    let mut failures = String::new();
    for (text, allow, want) in corpus {
        let got = parse_prefix(text, *allow);
        match (want, &got) {
            (Want::Ok(s), Result::Ok(p)) if p.to_string() == *s => {}
            (Want::Err(s), Result::Err(e)) if e.message().contains(s) || e.hint().contains(s) => {}
            _ => {
                let want = match want {
                    Want::Ok(s) => format!("Ok({s})"),
                    Want::Err(s) => format!("error saying `{s}`"),
                };
                let got = match &got {
                    Result::Ok(p) => format!("Ok({p})"),
                    Result::Err(e) => format!("Err({e})"),
                };
                let _ = writeln!(
                    failures,
                    "{text:?} (allow /0: {allow}): want {want}, got {got}"
                );
            }
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn address_errors_are_typed() {
    assert!(matches!(
        parse_prefix("010.0.0.1", false),
        Err(AddrError::LeadingZero { .. })
    ));
    assert!(matches!(
        parse_prefix("10.1", false),
        Err(AddrError::Shorthand { .. })
    ));
    assert!(matches!(
        parse_prefix("10.0.0.0/024", false),
        Err(AddrError::LenLeadingZero { .. })
    ));
    assert!(matches!(
        parse_prefix("10.0.0.0/33", false),
        Err(AddrError::LenRange { .. })
    ));
    assert!(matches!(
        parse_prefix("10.1.0.0/8", false),
        Err(AddrError::HostBits { .. })
    ));
    assert!(matches!(
        parse_prefix("0.0.0.0/0", false),
        Err(AddrError::DefaultRoute { .. })
    ));
    assert!(matches!(
        parse_prefix("::ffff:1.2.3.4", false),
        Err(AddrError::Mapped { .. })
    ));
    assert!(matches!(
        parse_prefix("fe80::1%lo", false),
        Err(AddrError::ZoneId { .. })
    ));
    assert!(matches!(parse_prefix("", false), Err(AddrError::Empty)));
    assert_eq!(
        parse_prefix(" 10.1.0.0/16 ", false).unwrap(),
        Prefix::new("10.1.0.0".parse().unwrap(), 16).unwrap()
    );
}
