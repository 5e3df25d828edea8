//! `[ipv6]`: what steer does about the source of IPv6 packets leaving a WAN — its keys, their
//! raw form and their checks. Each WAN's prefix (`prefix6`) is the `wan` module's key; the
//! checks that relate the two (every WAN needs one for NPTv6, prefixes do not overlap) are here.

use serde::Deserialize;

use super::{
    Ipv6, Ipv6Mode, Prefix6, Wan,
    check::{self, Choices},
    diag::Ctx,
    schema::{
        Field,
        Kind::{Str, StrList, Table},
        S, Strings, opt, req,
    },
    set::port_range,
};
use crate::{
    model::ordered::PortRange,
    prefix::Prefix,
    wan_sources::learn::{delegated_prefix, overlaps},
};

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawIpv6 {
    pub mode: Option<S<String>>,
    pub lan_prefix: Option<S<String>>,
    pub inbound_tcp: Option<Strings>,
    pub inbound_udp: Option<Strings>,
}

pub(super) const EXAMPLE: &str = "[ipv6] with mode = \"npt\" and lan_prefix = \"fd10::/64\"";

pub(super) const FIELD: Field = opt("ipv6", Table(FIELDS), EXAMPLE);

const FIELDS: &[Field] = &[
    req("mode", Str, "mode = \"npt\""),
    opt("lan_prefix", Str, "lan_prefix = \"fd10::/64\""),
    opt(
        "inbound_tcp",
        StrList,
        "inbound_tcp = [\"22\", \"8000-8100\"]",
    ),
    opt("inbound_udp", StrList, "inbound_udp = [\"51820\"]"),
];

const MODES: Choices<Option<Ipv6Mode>> = Choices {
    what: "IPv6 mode",
    words: &[
        ("npt", Some(Ipv6Mode::Npt)),
        ("masquerade", Some(Ipv6Mode::Masquerade)),
        ("source", Some(Ipv6Mode::Source)),
    ],
};

/// Where each WAN's `prefix6` is written (its own span when written, else the WAN's), so that
/// the checks across WANs point at the right line.
pub(super) type Prefix6Span = std::ops::Range<usize>;

/// The `[ipv6]` section, checked against the WANs' `prefix6` (`wans` as built, `spans` one
/// per WAN).
pub(super) fn build(
    cx: &mut Ctx<'_>,
    raw: Option<S<RawIpv6>>,
    wans: &[Wan],
    spans: &[Prefix6Span],
) -> Option<Ipv6> {
    let Some(raw) = raw else {
        overlapping_wan_prefixes(cx, wans, spans);
        return None;
    };
    let span = raw.span();
    let raw = raw.into_inner();
    let mode = check::choice(cx, &raw.mode, "ipv6.mode", &MODES, None);
    let lan_prefix = raw
        .lan_prefix
        .as_ref()
        .and_then(|v| ipv6_prefix(cx, v, "ipv6.lan_prefix"));
    overlapping_wan_prefixes(cx, wans, spans);
    let inbound_tcp = ports(cx, raw.inbound_tcp.as_ref(), "ipv6.inbound_tcp");
    let inbound_udp = ports(cx, raw.inbound_udp.as_ref(), "ipv6.inbound_udp");
    let mode = mode?;
    match mode {
        Ipv6Mode::Npt => npt_needs(cx, &span, lan_prefix, wans, spans),
        Ipv6Mode::Source => source_needs(cx, &span, raw.lan_prefix.as_ref(), wans),
        Ipv6Mode::Masquerade => {}
    }
    let inbound_keys = [
        ("ipv6.inbound_tcp", &raw.inbound_tcp),
        ("ipv6.inbound_udp", &raw.inbound_udp),
    ];
    let given = inbound_keys
        .into_iter()
        .find_map(|(key, v)| v.as_ref().map(|v| (key, v)));
    if mode != Ipv6Mode::Npt
        && let Some((key, v)) = given
    {
        cx.err(
            &v.span(),
            key,
            format!(
                "only mode \"npt\" translates inbound connections (mode is \"{}\")",
                mode.word()
            ),
            "remove inbound_tcp and inbound_udp: with masquerade use port forwards of your \
             firewall, with source the hosts' addresses are their own",
        );
    }
    Some(Ipv6 {
        mode,
        lan_prefix,
        inbound_tcp,
        inbound_udp,
    })
}

/// `inbound_tcp`/`inbound_udp`: ports as in a set's `dports`.
fn ports(cx: &mut Ctx<'_>, list: Option<&Strings>, field: &str) -> Vec<PortRange> {
    let mut out = Vec::new();
    for (i, v) in list
        .map(|l| l.get_ref().as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match port_range(v.get_ref()) {
            Ok(p) => out.push(p),
            Err((message, hint)) => cx.err(&v.span(), format!("{field}[{i}]"), message, hint),
        }
    }
    out
}

/// A WAN's `prefix6`: `"auto"` or an IPv6 prefix of at most /64.
pub(super) fn wan_prefix(cx: &mut Ctx<'_>, v: &S<String>, field: &str) -> Option<Prefix6> {
    if v.get_ref() == "auto" {
        return Some(Prefix6::Auto);
    }
    ipv6_prefix(cx, v, field).map(Prefix6::Fixed)
}

fn ipv6_prefix(cx: &mut Ctx<'_>, v: &S<String>, field: &str) -> Option<Prefix> {
    delegated_prefix(v.get_ref())
        .map_err(|(message, hint)| cx.err(&v.span(), field, message, hint))
        .ok()
}

/// NPTv6 translates between `lan_prefix` and each WAN's prefix: all must be known and apart.
fn npt_needs(
    cx: &mut Ctx<'_>,
    span: &std::ops::Range<usize>,
    lan_prefix: Option<Prefix>,
    wans: &[Wan],
    spans: &[Prefix6Span],
) {
    some_wan_has_a_prefix(cx, span, "npt", wans);
    let Some(lan) = lan_prefix else {
        cx.err(
            span,
            "ipv6.lan_prefix",
            "mode \"npt\" needs the prefix LAN hosts use",
            "add lan_prefix = \"fd10::/64\" (a ULA, or the one GUA your LAN hosts hold) to [ipv6]",
        );
        return;
    };
    for (w, span) in wans.iter().zip(spans) {
        if let Some(Prefix6::Fixed(p)) = w.prefix6
            && overlaps(p, lan)
        {
            cx.err(
                span,
                field(w),
                format!("{p} overlaps ipv6.lan_prefix {lan}"),
                "the LAN's internal prefix and each WAN's prefix must be apart: use a ULA \
                 (fd00::/8) on the LAN",
            );
        }
    }
}

/// Source-specific routing sends each WAN's prefix out by it, and the LAN has no prefix of its
/// own.
fn source_needs(
    cx: &mut Ctx<'_>,
    span: &std::ops::Range<usize>,
    lan_prefix: Option<&S<String>>,
    wans: &[Wan],
) {
    some_wan_has_a_prefix(cx, span, "source", wans);
    if let Some(v) = lan_prefix {
        cx.err(
            &v.span(),
            "ipv6.lan_prefix",
            "mode \"source\" translates nothing: LAN hosts take an address of each WAN's prefix",
            "remove lan_prefix, or use mode = \"npt\" to translate one LAN prefix",
        );
    }
}

/// A WAN without `prefix6` carries no IPv6 under npt and source (an IPv4-only line); one at
/// least must have it.
fn some_wan_has_a_prefix(
    cx: &mut Ctx<'_>,
    span: &std::ops::Range<usize>,
    mode: &str,
    wans: &[Wan],
) {
    if !wans.is_empty() && wans.iter().all(|w| w.prefix6.is_none()) {
        cx.err(
            span,
            "ipv6.mode",
            format!("mode \"{mode}\" needs the prefix of a WAN, and no WAN has prefix6"),
            "add prefix6 = \"auto\" (learned from the DHCPv6 client) or the prefix the ISP \
             delegates, e.g. prefix6 = \"2001:db8:1::/56\", to each WAN that carries IPv6",
        );
    }
}

fn overlapping_wan_prefixes(cx: &mut Ctx<'_>, wans: &[Wan], spans: &[Prefix6Span]) {
    for (i, (w, span)) in wans.iter().zip(spans).enumerate() {
        let Some(p) = w.prefix6.and_then(Prefix6::fixed) else {
            continue;
        };
        let fixed = |o: &Wan| o.prefix6.and_then(Prefix6::fixed);
        if let Some((other, q)) = wans[..i]
            .iter()
            .find_map(|o| fixed(o).filter(|q| overlaps(p, *q)).map(|q| (o, q)))
        {
            cx.err(
                span,
                field(w),
                format!("{p} overlaps WAN `{}`'s prefix6 {q}", other.name),
                "each ISP delegates its own prefix: write the one this line's ISP routes to it",
            );
        }
    }
}

fn field(w: &Wan) -> String {
    format!("wan[{}].prefix6", w.name)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{
        Ipv6Mode, Prefix6, parse,
        testing::{TWO_WANS, errors_in},
    };

    const LAN: &str = "[general]\nlan = [\"br-lan\"]\n";

    /// TWO_WANS with `prefix6` lines after each WAN's `table` (`None`: no key).
    fn wans(p1: Option<&str>, p2: Option<&str>) -> String {
        let mut out = String::new();
        let mut prefixes = [p1, p2].into_iter();
        for line in TWO_WANS.lines() {
            out.push_str(line);
            out.push('\n');
            if line.starts_with("table")
                && let Some(Some(p)) = prefixes.next()
            {
                out.push_str(&format!("prefix6 = \"{p}\"\n"));
            }
        }
        out
    }

    fn text(ipv6: &str, p1: Option<&str>, p2: Option<&str>) -> String {
        format!("{LAN}{ipv6}\n{}", wans(p1, p2))
    }

    #[test]
    fn npt_takes_the_lan_prefix_and_each_wans_prefix() {
        let t = text(
            "[ipv6]\nmode = \"npt\"\nlan_prefix = \"fd10::/64\"\n",
            Some("2001:db8:1::/56"),
            Some("2001:db8:2::/60"),
        );
        let c = parse(&t, Path::new("steer.toml")).unwrap();
        let ipv6 = c.ipv6.unwrap();
        assert_eq!(ipv6.mode, Ipv6Mode::Npt);
        assert_eq!(ipv6.lan_prefix.unwrap().to_string(), "fd10::/64");
        let p: Vec<String> = c
            .wans
            .iter()
            .map(|w| w.prefix6.and_then(Prefix6::fixed).unwrap().to_string())
            .collect();
        assert_eq!(p, ["2001:db8:1::/56", "2001:db8:2::/60"]);
        let t = text(
            "[ipv6]\nmode = \"npt\"\nlan_prefix = \"fd10::/64\"\n",
            Some("auto"),
            Some("2001:db8:2::/60"),
        );
        let c = parse(&t, Path::new("steer.toml")).unwrap();
        assert_eq!(c.wans[0].prefix6, Some(Prefix6::Auto));
    }

    #[test]
    fn npt_opens_only_the_inbound_ports_listed() {
        let t = text(
            "[ipv6]\nmode = \"npt\"\nlan_prefix = \"fd10::/64\"\ninbound_tcp = [\"22\", \"8000-8100\"]\ninbound_udp = [\"51820\"]\n",
            Some("2001:db8:1::/56"),
            None,
        );
        let ipv6 = parse(&t, Path::new("steer.toml")).unwrap().ipv6.unwrap();
        let shown = |p: &[crate::model::ordered::PortRange]| {
            p.iter().map(|r| r.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(shown(&ipv6.inbound_tcp), ["22", "8000-8100"]);
        assert_eq!(shown(&ipv6.inbound_udp), ["51820"]);
        let e = errors_in(&text(
            "[ipv6]\nmode = \"npt\"\nlan_prefix = \"fd10::/64\"\ninbound_udp = [\"0\"]\n",
            Some("2001:db8:1::/56"),
            None,
        ));
        assert_eq!(e, ["ipv6.inbound_udp[0]: \"0\" is not a port"]);
    }

    #[test]
    fn masquerade_needs_no_prefix_and_no_section_means_none() {
        let t = text("[ipv6]\nmode = \"masquerade\"\n", None, None);
        let c = parse(&t, Path::new("steer.toml")).unwrap();
        assert_eq!(c.ipv6.unwrap().mode, Ipv6Mode::Masquerade);
        let c = parse(&text("", None, None), Path::new("steer.toml")).unwrap();
        assert_eq!(c.ipv6, None);
    }

    #[test]
    fn npt_without_its_prefixes_is_refused_naming_what_is_missing() {
        let e = errors_in(&text(
            "[ipv6]\nmode = \"npt\"\n",
            Some("2001:db8:1::/56"),
            None,
        ));
        assert!(
            e.iter()
                .any(|l| l.starts_with("ipv6.lan_prefix: mode \"npt\" needs")),
            "{e:?}"
        );
        // wan2 without a prefix is an IPv4-only line; with no prefix at all, npt has nothing.
        let t = text(
            "[ipv6]\nmode = \"npt\"\nlan_prefix = \"fd10::/64\"\n",
            Some("2001:db8:1::/56"),
            None,
        );
        assert_eq!(
            parse(&t, Path::new("steer.toml")).unwrap().wans[1].prefix6,
            None
        );
        let e = errors_in(&text(
            "[ipv6]\nmode = \"npt\"\nlan_prefix = \"fd10::/64\"\n",
            None,
            None,
        ));
        assert_eq!(
            e,
            ["ipv6.mode: mode \"npt\" needs the prefix of a WAN, and no WAN has prefix6"]
        );
    }

    #[test]
    fn prefixes_that_cannot_work_are_refused_with_their_value() {
        let cases = [
            (
                Some("2001:db8:1::/56"),
                Some("2001:db8:1:10::/60"),
                "wan[wan2].prefix6: 2001:db8:1:10::/60 overlaps WAN `wan1`'s prefix6 2001:db8:1::/56",
            ),
            (
                Some("2001:db8:1::/80"),
                None,
                "wan[wan1].prefix6: 2001:db8:1::/80 is longer than /64",
            ),
            (
                Some("100.64.0.0/10"),
                None,
                "wan[wan1].prefix6: 100.64.0.0/10 is an IPv4 prefix",
            ),
        ];
        for (p1, p2, want) in cases {
            let e = errors_in(&text("[ipv6]\nmode = \"masquerade\"\n", p1, p2));
            assert_eq!(e, [want]);
        }
        let e = errors_in(&text(
            "[ipv6]\nmode = \"npt\"\nlan_prefix = \"2001:db8::/32\"\n",
            Some("2001:db8:1::/56"),
            Some("2001:db9::/56"),
        ));
        assert_eq!(
            e,
            ["wan[wan1].prefix6: 2001:db8:1::/56 overlaps ipv6.lan_prefix 2001:db8::/32"]
        );
    }

    #[test]
    fn source_mode_needs_every_prefix_and_no_lan_prefix() {
        let t = text(
            "[ipv6]\nmode = \"source\"\n",
            Some("auto"),
            Some("2001:db8:2::/56"),
        );
        let c = parse(&t, Path::new("steer.toml")).unwrap();
        assert_eq!(c.ipv6.unwrap().mode, Ipv6Mode::Source);
        let e = errors_in(&text(
            "[ipv6]\nmode = \"source\"\nlan_prefix = \"fd10::/64\"\ninbound_tcp = [\"22\"]\n",
            Some("auto"),
            None,
        ));
        assert_eq!(
            e,
            [
                "ipv6.lan_prefix: mode \"source\" translates nothing: LAN hosts take an address of each WAN's prefix",
                "ipv6.inbound_tcp: only mode \"npt\" translates inbound connections (mode is \"source\")",
            ]
        );
        let e = errors_in(&text("[ipv6]\nmode = \"nat66\"\n", None, None));
        assert_eq!(e, ["ipv6.mode: unknown IPv6 mode `nat66`"]);
    }
}
