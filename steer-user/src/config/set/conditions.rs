//! A set's conditions — `proto`, `sports`, `dports`, `src_macs`, `in`, `src_prefixes` — which
//! make it an ordered rule (tried before the prefix sets, first match in file order). Each
//! value is checked where it is written.

use super::RawSet;
use crate::{
    config::{diag::Ctx, schema::Strings},
    model::{Conditions, Direction, PortRange, Proto},
    prefix::parse_prefix,
};

/// The condition keys: any of them makes a set an ordered rule.
pub(super) const KEYS: [&str; 6] = [
    "proto",
    "sports",
    "dports",
    "src_macs",
    "in",
    "src_prefixes",
];

/// The set's conditions, `None` when it has none (a plain prefix set). Every bad value is
/// reported; what is left is what was valid.
pub(super) fn read(
    cx: &mut Ctx<'_>,
    s: &RawSet,
    label: &str,
    direction: Direction,
    lan: &[String],
) -> Option<Conditions> {
    let lists = [
        &s.proto,
        &s.sports,
        &s.dports,
        &s.src_macs,
        &s.in_interfaces,
        &s.src_prefixes,
    ];
    if lists.iter().all(|l| l.is_none()) {
        return None;
    }
    let f = |k: &str| format!("{label}.{k}");
    // An empty list would silently mean "any" (no constraint), as leaving the key out does:
    // `proto = []` reads as "no protocol", and a list emptied by an edit or a generator turns
    // a narrow rule into one that takes everything.
    for (key, list) in KEYS.iter().zip(lists) {
        if let Some(list) = list.as_ref().filter(|l| l.get_ref().is_empty()) {
            cx.err(
                &list.span(),
                f(key),
                format!("`{key}` lists nothing"),
                format!(
                    "list at least one value, or remove `{key}` for no constraint on it{}",
                    if *key == "proto" {
                        " (or write proto = [\"any\"] to make the set an ordered rule for every \
                         protocol)"
                    } else {
                        ""
                    }
                ),
            );
        }
    }
    let mut c = Conditions::default();
    let mut any_proto = false;
    each(cx, &s.proto, &f("proto"), |v| {
        proto(v).map(|p| match p {
            Some(p) => c.protos.push(p),
            None => any_proto = true,
        })
    });
    each(cx, &s.sports, &f("sports"), |v| {
        ports(v).map(|r| c.sports.push(r))
    });
    each(cx, &s.dports, &f("dports"), |v| {
        ports(v).map(|r| c.dports.push(r))
    });
    each(cx, &s.src_macs, &f("src_macs"), |v| {
        mac(v).map(|m| c.src_macs.push(m))
    });
    each(cx, &s.in_interfaces, &f("in"), |v| {
        lan_interface(v, lan).map(|n| c.ins.push(n))
    });
    if direction == Direction::Src
        && let Some(list) = &s.src_prefixes
    {
        cx.err(
            &list.span(),
            f("src_prefixes"),
            "src_prefixes only work in sets with match = \"dst\"",
            "this set already matches on sources: put the source prefixes in `prefixes`",
        );
    } else {
        each(cx, &s.src_prefixes, &f("src_prefixes"), |v| {
            parse_prefix(v, false)
                .map(|p| c.src_prefixes.push(p))
                .map_err(|e| (e.message(), e.hint()))
        });
    }
    for (key, list) in [("domains", &s.domains), ("domain_files", &s.domain_files)] {
        if let Some(list) = list.as_ref().filter(|l| !l.get_ref().is_empty()) {
            cx.err(
                &list.span(),
                f(key),
                "a set with conditions cannot have domains",
                "keep the domains in a set of their own (without proto, ports, MACs or `in`)",
            );
        }
    }
    if any_proto {
        c.protos.clear();
    }
    // Only TCP, UDP, SCTP and UDP-Lite have ports: a rule of other protocols with a port
    // condition can never match (`steer explain` refuses a port for them as well).
    let portless = !c.protos.is_empty()
        && c.protos.iter().all(|p| match p {
            Proto::Icmp => true,
            Proto::Number(n) => !steer_common::ipproto::has_ports(*n),
        });
    if portless && let Some(proto) = &s.proto {
        for (key, list) in [("sports", &s.sports), ("dports", &s.dports)] {
            if list.as_ref().is_some_and(|l| !l.get_ref().is_empty()) {
                cx.err(
                    &proto.span(),
                    f("proto"),
                    format!(
                        "none of these protocols has ports, so `{key}` can never match and \
                         the set matches no packet"
                    ),
                    format!(
                        "remove `{key}`, or list a protocol with ports: tcp, udp, sctp (132), \
                         udp-lite (136)"
                    ),
                );
            }
        }
    }
    c.protos.sort_unstable();
    c.protos.dedup();
    Some(c)
}

/// Reads every string of a list with `parse`, reporting the bad ones at their place.
fn each(
    cx: &mut Ctx<'_>,
    list: &Option<Strings>,
    field: &str,
    mut parse: impl FnMut(&str) -> Result<(), (String, String)>,
) {
    let Some(list) = list else { return };
    for (i, v) in list.get_ref().iter().enumerate() {
        let field = format!("{field}[{i}]");
        if cx.mistyped(&field) {
            continue;
        }
        if let Err((message, hint)) = parse(v.get_ref()) {
            cx.err(&v.span(), field, message, hint);
        }
    }
}

type Checked<T> = Result<T, (String, String)>;

/// `tcp`, `udp`, `icmp` (ICMP in IPv4, ICMPv6 in IPv6), `icmpv6`, `any` (no constraint:
/// nothing is added) or a protocol number.
fn proto(v: &str) -> Checked<Option<Proto>> {
    match v.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Some(Proto::TCP)),
        "udp" => Ok(Some(Proto::UDP)),
        "icmp" => Ok(Some(Proto::Icmp)),
        // ICMPv6 only (protocol 58): `icmp` is the one that means both.
        "icmpv6" | "ipv6-icmp" => Ok(Some(Proto::Number(58))),
        "any" | "all" => Ok(None),
        other => other
            .parse::<u8>()
            .map(|n| Some(Proto::Number(n)))
            .map_err(|_| {
                (
                    format!("unknown protocol {v:?}"),
                    "use tcp, udp, icmp, any, or an IP protocol number 0-255".into(),
                )
            }),
    }
}

/// `"443"` or `"10000-20000"`.
pub(in crate::config) fn ports(v: &str) -> Checked<PortRange> {
    // Digits only, as addresses refuse `/+24` and leading zeros: `+5060`, `05060` or ` 5060 `
    // read as 5060 by a lenient parse would hide what the writer may have meant.
    let port = |s: &str| -> Checked<u16> {
        let plain = !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && !(s.len() > 1 && s.starts_with('0'));
        match s.parse::<u16>() {
            Ok(p) if plain && p > 0 => Ok(p),
            _ => {
                let meant = s
                    .trim()
                    .trim_start_matches('+')
                    .trim_start_matches('0')
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0);
                Err((
                    format!("{s:?} is not a port"),
                    match meant {
                        Some(p) => format!(
                            "write ports as plain digits, without sign, spaces or leading \
                             zeros: \"{p}\"; a range is written \"1000-2000\""
                        ),
                        None => "ports are 1-65535; a range is written \"1000-2000\"".into(),
                    },
                ))
            }
        }
    };
    let (first, last) = match v.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(v)?;
            (p, p)
        }
    };
    if first > last {
        return Err((
            format!("the range {v:?} ends before it starts"),
            format!("write it \"{last}-{first}\""),
        ));
    }
    Ok(PortRange { first, last })
}

/// `aa:bb:cc:dd:ee:ff` (or with dashes).
fn mac(v: &str) -> Checked<[u8; 6]> {
    crate::model::ordered::parse_mac(v).ok_or_else(|| {
        (
            format!("{v:?} is not a MAC address"),
            "write six hex bytes: \"aa:bb:cc:dd:ee:ff\"".to_string(),
        )
    })
}

/// An interface of `[general] lan`: steer sees only packets that come in on those.
fn lan_interface(v: &str, lan: &[String]) -> Checked<String> {
    if lan.iter().any(|l| l == v) {
        return Ok(v.to_owned());
    }
    Err((
        format!("{v:?} is not one of the LAN interfaces steer classifies on"),
        format!(
            "`in` names an interface of [general] lan ({}); add it there first (for a port \
             of a bridge: list the bridge's ports instead of the bridge, since a listed bridge \
             classifies its ports' packets again)",
            lan.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_or_refused_with_a_way_out() {
        assert_eq!(
            ports("10000-20000").unwrap(),
            PortRange {
                first: 10000,
                last: 20000
            }
        );
        assert_eq!(
            ports("443").unwrap(),
            PortRange {
                first: 443,
                last: 443
            }
        );
        assert!(ports("0").unwrap_err().1.contains("1-65535"));
        assert!(ports("20-10").unwrap_err().1.contains("10-20"));
        assert!(ports("http").is_err());
        for sloppy in [
            "+5060",
            "05060",
            " 5060 ",
            "5060 ",
            "+5060-5061",
            "5060-05061",
        ] {
            let (message, hint) = ports(sloppy).unwrap_err();
            assert!(message.contains("is not a port"), "{sloppy:?}: {message}");
            assert!(hint.contains("plain digits"), "{sloppy:?}: {hint}");
        }
        assert_eq!(
            mac("AA-bb-cc-dd-ee-0F").unwrap(),
            [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x0f]
        );
        assert!(mac("aa:bb:cc:dd:ee").is_err());
        assert_eq!(proto("TCP").unwrap(), Some(Proto::TCP));
        assert_eq!(proto("47").unwrap(), Some(Proto::Number(47)));
        assert_eq!(proto("icmp").unwrap(), Some(Proto::Icmp));
        assert_eq!(proto("ICMPv6").unwrap(), Some(Proto::Number(58)));
        assert_eq!(proto("any").unwrap(), None);
        assert!(proto("facebook").unwrap_err().1.contains("tcp, udp, icmp"));
        let lan = ["br-lan".to_string()];
        assert!(
            lan_interface("eth9", &lan)
                .unwrap_err()
                .1
                .contains("br-lan")
        );
    }
}
